"""M2D-CLAP: the audio-language side of M2D (Niizumi et al., "M2D-CLAP: Masked Modeling Duo Meets CLAP for Learning
General-purpose Audio-Language Representation", Interspeech 2024, arXiv:2406.02032; github.com/nttcslab/m2d, its
clap/README.md and examples/portable_m2d.py), loading the publisher's checkpoints strictly.

Recipe. The audio tower is M2D's ViT (evar.models.m2d.M2D: the same front end, windows and padding rules, reused
here, not copied): 16 kHz (32 kHz for `p32k` folders), 80 Slaney mels 50-8000 Hz, n_fft = window 400, hop 160
samples (10 ms), log(mel power + float32 eps), standardised by the checkpoint's norm_stats, cut into windows of the
training width (608 frames = 6.08 s for 80x608 weights, 1001 for 80x1001). Beside the encoder the checkpoint holds
the CLAP heads, trained against offline sentence embeddings of captions:
- `audio_proj`: Linear(768, 768) - ReLU - Linear(768, 768) on the mean of all the clip's patch tokens (training:
  `drop_cls_token(latent).mean(1)`, then `audio_proj`; inference, the official `encode_clap_audio`: the mean over all
  windows' tokens of the whole clip, then `audio_proj`).
- `text_proj`: none (Identity) for the 2024 release, whose text tower is GTE-base (768-d); a Linear or an MLP where
  the checkpoint has `text_proj.weight` or `text_proj.{0,2}.weight`.
- The text tower, chosen by the folder name's tag after the rate, as the official `parse_clap_type`: none or `A`:
  GTE-base (`thenlper/gte-base`, a BERT, mean of the last hidden states over the attention mask); `B`: BERT base
  uncased (`google-bert/bert-base-uncased`, the [CLS] hidden state); `N` (NV-Embed-v2) is refused. A further `TI`
  tag means the checkpoint carries the fine-tuned text tower under `text_encoder.`: it is loaded strictly into the
  hub model's architecture.
The 2025 releases (e.g. m2d_clap_vit_base-80x1001p16x16p16kpBpTI-2025) may instead have a "semantic token" audio_proj
(`audio_proj.sem_token`, `audio_proj.sem_blocks.*`, `audio_proj.norm`; the official AudioToSemantic): a learned token
prepended to all of the clip's patch tokens (no positional embedding), 1-4 pre-norm blocks of one head (LayerNorm
eps 1e-5), the token's output LayerNorm'd. Attention has no positions there, so only the set of the clip's tokens
matters; padding tokens of a batch are masked out of it.

Which embedding. As EVAR's `config/m2d_clap.yaml` (ar_m2d.AR_M2D_CLAP) does: linear evaluation (`output:
backbone`, the default) uses the backbone's features with `flat_features: true` (AR_M2D.forward: the 768-d mean of
all patch tokens, i.e. M2D's frequency-averaged frames mean-pooled); zero-shot and retrieval (EVAR's zeroshot.py and
retr_a2t_t2a.py call `encode_audio` / `encode_text`) use the joint space: `output: audio_embeds` gives one embedding
per clip, `audio_proj` of the mean over the clip's valid patch tokens (padding never enters it), and `encode_text`
(GTE/BERT -> text_proj, L2-normalised). The class declares `TEXT_MODE_OPTIONS` (output audio_embeds), which
zeroshot.py and retr_a2t_t2a.py apply before the user's options, so `config/m2d_clap.yaml` works in every script
as EVAR's does (config/m2d_clap_zs.yaml sets the joint space for any other use); with `output: backbone` the model
itself has no `encode_text`.

Checked against the official code (examples/portable_m2d.py of nttcslab/m2d f0c4128: PortableM2D with
flat_features, encode_clap_audio, encode_clap_text with its GTETextEncoder / BertXEncoder classes on a local random
BERT; timm 1.0.31, nnAudio 0.3.4, transformers 4.46.3) on seeded random weights in the official container and 4 real
clips embedded as one padded batch (ESC-50 5 s, RAVDESS, a speech command, a 14.5 s concatenation):
    /tmp/venv_evarref/bin/python benchmarks/parity_m2d_clap.py --m2d_examples <folder with portable_m2d.py>
max relative difference: 80x608 (2024 layout, GTE pooling, no text_proj) joint-space audio 4.2e-07, text 0,
backbone 3.0e-07; 80x1001 tagged B (BERT [CLS], Linear text_proj) audio 3.2e-07, text 0, backbone 3.0e-07;
80x1001 tagged BpTI (2025 layout: semantic-token audio_proj, MLP text_proj, text tower in the checkpoint) audio
7.5e-07, text 0, backbone 3.0e-07.
EVAR's own M2D-CLAP wrappers (eval-audio-repr 88ba772) cannot run against any nttcslab/m2d commit (30, to f0c4128):
AR_M2D_CLAP calls `RuntimeM2D.project_audio` and AR_M2D_CLAP_PORTABLE passes `cfg=` to PortableM2D; neither exists.
Their text side is the official `encode_clap_text` (checked above) and their linear-evaluation side AR_M2D's with
flat_features (benchmarks/parity_evar.py `m2d_flat`: 2.2e-07 against evar's M2D, whose frames this model reuses).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Optional

import torch
from torch import nn

from ..errors import EvarError
from .base import Frames, load_strict, pool
from .m2d import M2D, M2DParams
from .vit import Block

M2D_CLAP_WEIGHTS_URL = ('https://github.com/nttcslab/m2d/releases (the M2D-CLAP archives listed in the nttcslab/m2d '
                        'README, e.g. v0.1.0: m2d_clap_vit_base-80x608p16x16-240128.zip at 16 kHz; keep the archive\'s '
                        'folder name, which names the rate, e.g. p32k)')
OUTPUTS = ('backbone', 'audio_embeds')
# Text towers by the folder name's tag (the official parse_clap_type): hub id and pooling of the last hidden states.
TEXT_TOWERS = {'A': ('thenlper/gte-base', 'mean'), 'B': ('google-bert/bert-base-uncased', 'cls')}
HEAD_PREFIXES = ('audio_proj.', 'text_proj.', 'text_encoder.')


@dataclass(frozen=True)
class M2DCLAPParams(M2DParams):
    """YAML keys of `m2d_clap`: M2DParams' (front end, weight_file, norm_stats, output_layers, ...) with
    flat_features true by default (EVAR's m2d_clap.yaml: 768-d), and:

    Keys:
        output: 'backbone' (EVAR's linear-evaluation features) or 'audio_embeds' (the joint audio-text space of
            `audio_proj`, with `encode_text`; one embedding per clip).
        text_model: the text tower, a Hugging Face hub id or a local `save_pretrained` folder holding the model and
            its tokenizer; None: the tower the folder name's tag names (GTE-base unless tagged `B`).
        text_pooling: 'mean' (GTE: mean of the last hidden states over the attention mask) or 'cls' (BERT: the
            [CLS] state); None: the tag's.
        text_max_length: tokens a caption is cut to (the official 512).
    """
    flat_features: bool = True  # EVAR's m2d_clap.yaml: 768-d backbone features
    output: str = 'backbone'
    text_model: Optional[str] = None
    text_pooling: Optional[str] = None
    text_max_length: int = 512


def clap_tags(weight_file: str) -> list:
    """The tags after the rate in the weight folder's name ('m2d_clap_vit_base-80x1001p16x16p16kpBpTI-2025' ->
    ['B', 'TI']; the 2024 'm2d_clap_vit_base-80x608p16x16-240128' -> []), the file's stem when the folder has none."""
    path = Path(weight_file)
    for name in (path.parent.name, path.stem):
        parts = name.split('-')
        if len(parts) > 1 and 'x' in parts[1]:
            return parts[1].split('p')[3:]
    return []


class M2DCLAP(M2D):
    """M2D-CLAP (Niizumi et al., Interspeech 2024; nttcslab/m2d): waves [B, N] float32 at 16 kHz (32 kHz for p32k
    weights) -> with `output: backbone`, M2D's Frames [B, T, 768] (one per patch column, 160 ms); with
    `output: audio_embeds`, one joint-space frame per clip [B, 1, D] (D = audio_proj's output, 768), and
    `encode_text(list[str]) -> [N, D]` L2-normalised.

    Raises:
        EvarError: everything M2D raises; an unknown `output` or text_pooling; for audio_embeds, a checkpoint without
            `audio_proj` (encode-only or fine-tuned files), a semantic-token audio_proj (2025), flat_features false,
            other output_layers than -1 or pooling other than mean, a text tower that cannot be loaded or whose
            width does not fit text_proj, an NV-Embed (`N`) tag, or `TI` text weights that do not match it.
    """
    # EVAR's m2d_clap.yaml: backbone features in lineareval.py, the joint space in zeroshot.py / retr_a2t_t2a.py
    TEXT_MODE_OPTIONS = MappingProxyType({'output': 'audio_embeds'})
    Params = M2DCLAPParams
    model_name = 'M2D-CLAP'
    weights_url = M2D_CLAP_WEIGHTS_URL
    cache_version = 1

    def __init__(self, params: M2DCLAPParams):
        if params.output not in OUTPUTS:
            raise EvarError(f'M2D-CLAP: output must be one of {list(OUTPUTS)}, got {params.output!r}.')
        if params.text_pooling not in (None, 'mean', 'cls'):
            raise EvarError(f"M2D-CLAP: text_pooling must be 'mean', 'cls' or unset, got {params.text_pooling!r}.")
        super().__init__(params)  # M2D's encoder; _encoder_state sets the CLAP heads' tensors aside in _heads
        self.audio_proj = None
        self._text = None  # (tokenizer, text model, text_proj, pooling): outside the module tree, never fine-tuned
        if params.output == 'audio_embeds':
            self._check_joint_settings()
            self.audio_proj = SemanticToken.from_state(self._heads, 'audio_proj.') \
                if 'audio_proj.sem_token' in self._heads else self._mlp('audio_proj', self._heads)
            load_strict(self.audio_proj, _under(self._heads, 'audio_proj.'), f'{params.weight_file} (audio_proj.*)')
            self._text = self._text_tower()
            self.encode_text = self._encode_text  # the audio-text contract (evar.models.audio_text)
        self._heads = {}

    # -- construction -------------------------------------------------------------------------------------------
    def _encoder_state(self, state: dict) -> dict:
        """M2D's unwrapping, with the CLAP heads set aside (M2D's loader drops every non-encoder key)."""
        state = super()._encoder_state(state)
        self._heads = {k: v for k, v in state.items() if k.startswith(HEAD_PREFIXES)}
        return state

    def _check_joint_settings(self) -> None:
        p, name = self.params, self.model_name
        if 'audio_proj.0.weight' not in self._heads and 'audio_proj.sem_token' not in self._heads:
            raise EvarError(f'{name}: {p.weight_file} has no audio_proj.* tensors, so no joint audio-text space '
                            '(encoder-only and AudioSet fine-tuned files, e.g. ..._AS-FT_enconly, lack it); use '
                            'output: backbone, or the CLAP checkpoint m2d_clap_vit_base-80x608p16x16-240128.')
        wrong = {k: v for k, v in (('flat_features', p.flat_features), ('output_layers', p.output_layers),
                                   ('temporal_pooling_type', p.temporal_pooling_type))
                 if v not in {'flat_features': (True,), 'output_layers': (-1, [-1]),
                              'temporal_pooling_type': ('mean',)}[k]}
        if wrong:
            raise EvarError(f'{name}: output audio_embeds projects the mean of the last layer\'s patch tokens, as the '
                            f'official encode_clap_audio; it needs flat_features true, output_layers -1 and '
                            f'temporal_pooling_type mean, got {wrong}.')

    @staticmethod
    def _mlp(prefix: str, state: dict) -> nn.Module:
        """Linear-ReLU-Linear sized by `<prefix>.0.weight` and `<prefix>.2.weight` (the official projector)."""
        first, second = state.get(f'{prefix}.0.weight'), state.get(f'{prefix}.2.weight')
        if first is None or second is None:
            raise EvarError(f'M2D-CLAP: the checkpoint\'s {prefix} is not Linear-ReLU-Linear ({prefix}.0.weight and '
                            f'{prefix}.2.weight); keys seen: {sorted(k for k in state if k.startswith(prefix))[:6]}.')
        return nn.Sequential(nn.Linear(first.shape[1], first.shape[0]), nn.ReLU(),
                             nn.Linear(second.shape[1], second.shape[0])).eval()

    def _text_proj(self) -> nn.Module:
        if 'text_proj.weight' in self._heads:
            w = self._heads['text_proj.weight']
            proj = nn.Linear(w.shape[1], w.shape[0])
        elif 'text_proj.0.weight' in self._heads:
            proj = self._mlp('text_proj', self._heads)
        else:
            return nn.Identity()
        load_strict(proj, _under(self._heads, 'text_proj.'), f'{self.params.weight_file} (text_proj.*)')
        return proj.eval()

    def _text_tower(self) -> tuple:
        """(tokenizer, text model, text_proj, pooling) as the folder name's tag and the config say."""
        p, name = self.params, self.model_name
        tags = clap_tags(p.weight_file)
        kind = tags[0] if tags else 'A'
        if kind not in TEXT_TOWERS:
            raise EvarError(f'{name}: the weight folder\'s text-encoder tag p{kind} is not supported (A: GTE-base, '
                            'B: BERT base; N, NV-Embed-v2, is not).')
        model_id = p.text_model or TEXT_TOWERS[kind][0]
        pooling = p.text_pooling or TEXT_TOWERS[kind][1]
        import transformers

        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(model_id)
            text_model = transformers.AutoModel.from_pretrained(model_id)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise EvarError(f'{name}: cannot load the text tower text_model={model_id!r} (a hub id such as '
                            f'{TEXT_TOWERS[kind][0]} or a local save_pretrained folder with the model and its '
                            f'tokenizer). Cause: {e}') from e
        if tags[1:2] == ['TI']:
            weights = _under(self._heads, 'text_encoder.')
            inner = 'model.' if kind == 'A' else 'text_encoder.'  # the official wrapper's attribute name
            load_strict(text_model, _under(weights, inner) if any(k.startswith(inner) for k in weights) else weights,
                        f'{p.weight_file} (text_encoder.*)')
        elif tags[1:]:
            raise EvarError(f'{name}: unknown tags {tags[1:]} after the text-encoder tag in the weight folder name '
                            '(the official runtime knows TI: text tower included).')
        proj = self._text_proj()
        width = int(text_model.config.hidden_size)
        needs = proj.in_features if isinstance(proj, nn.Linear) else \
            proj[0].in_features if isinstance(proj, nn.Sequential) else self.embedding_dim
        if width != needs:
            raise EvarError(f'{name}: text_model {model_id!r} gives {width}-d states, the checkpoint\'s text_proj '
                            f'takes {needs}-d.')
        return tokenizer, text_model.eval(), proj, pooling

    # -- audio --------------------------------------------------------------------------------------------------
    @property
    def frame_hop_sec(self) -> Optional[float]:
        """M2D's patch-column hop with output backbone; None with audio_embeds (one embedding per clip)."""
        return super().frame_hop_sec if self.audio_proj is None else None

    @property
    def embedding_dim(self) -> int:
        """M2D's frame width (768 with flat_features), or audio_proj's output width with audio_embeds."""
        proj = getattr(self, 'audio_proj', None)
        if isinstance(proj, SemanticToken):
            return int(proj.sem_token.shape[-1])
        return super().embedding_dim if proj is None else int(proj[2].out_features)

    def encode(self, feats, feat_lengths) -> Frames:
        """M2D's frames [B, T, 768] of log-mels [B, 80, T'] (see M2D.encode); with audio_embeds, one frame
        [B, 1, D] per clip: audio_proj of the mean of the valid frames (= of all the clip's patch tokens), or the
        semantic-token audio_proj over all the clip's valid patch tokens."""
        frames = super().encode(feats, feat_lengths)
        if self.audio_proj is None:
            return frames
        if isinstance(self.audio_proj, SemanticToken):  # frames hold each column's F' tokens stacked (_frames_of)
            b, t, _ = frames.embeddings.shape
            rows = self.encoder.grid[0]
            tokens = frames.embeddings.reshape(b, t * rows, -1)
            joint = self.audio_proj(tokens, frames.mask[:, :, None].expand(-1, -1, rows).reshape(b, t * rows))
        else:
            joint = self.audio_proj(pool(frames, 'mean'))
        return Frames(joint[:, None, :], torch.ones(len(joint), 1, dtype=torch.bool, device=joint.device))

    def _frames_of(self, tokens: torch.Tensor) -> torch.Tensor:
        """M2D's (frequency stacked or averaged), always stacked for a semantic-token audio_proj, which takes every
        patch token."""
        if isinstance(getattr(self, 'audio_proj', None), SemanticToken):
            rows = self.encoder.grid[0]
            grid = tokens.reshape(len(tokens), rows, tokens.shape[1] // rows, -1)
            return grid.permute(0, 2, 1, 3).reshape(len(tokens), grid.shape[2], -1)
        return super()._frames_of(tokens)

    # -- text ---------------------------------------------------------------------------------------------------
    def _encode_text(self, texts: list) -> torch.Tensor:
        """Text embeddings [len(texts), D] float32, L2-normalised, in the joint space of the audio_embeds clip
        embedding, on the audio tower's device: tokenised (padded to the longest, cut at text_max_length), the text
        tower's last hidden states pooled ('mean' over the attention mask, or the [CLS] state), then text_proj."""
        tokenizer, text_model, proj, pooling = self._text
        device = self.encoder.pos_embed.device
        text_model.to(device)
        proj.to(device)
        tokens = tokenizer(list(texts), padding=True, truncation=True, max_length=self.params.text_max_length,
                           return_tensors='pt').to(device)
        hidden = text_model(**tokens).last_hidden_state
        if pooling == 'cls':
            emb = hidden[:, 0]
        else:
            mask = tokens['attention_mask'][..., None].to(hidden.dtype)
            emb = (hidden * mask).sum(1) / mask.sum(1)
        return nn.functional.normalize(proj(emb).float(), dim=-1)


class SemanticToken(nn.Module):
    """The 2025 M2D-CLAP audio_proj (portable_m2d's AudioToSemantic): patch tokens [B, N, D] with a key mask [B, N]
    (True: a token of the clip) -> [B, D], the output of a learned token prepended to them (no positional
    embedding) after `depth` pre-norm blocks of one head (LayerNorm eps 1e-5), LayerNorm'd."""

    def __init__(self, dim: int, depth: int, mlp_ratio: float):
        super().__init__()
        self.sem_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.sem_blocks = nn.ModuleList(Block(dim, 1, mlp_ratio, eps=1e-5) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    @classmethod
    def from_state(cls, state: dict, prefix: str) -> 'SemanticToken':
        """An untrained module sized by the checkpoint's tensors under `prefix` (depth from the block indices, MLP
        ratio from fc1); the caller loads them strictly.

        Raises:
            EvarError: no sem_blocks beside the sem_token.
        """
        own = _under(state, prefix)
        dim = int(own['sem_token'].shape[-1])
        blocks = {int(k.split('.')[1]) for k in own if k.startswith('sem_blocks.')}
        fc1 = own.get('sem_blocks.0.mlp.fc1.weight')
        if not blocks or fc1 is None:
            raise EvarError(f'M2D-CLAP: the checkpoint\'s {prefix}sem_token comes without {prefix}sem_blocks.0.*.')
        return cls(dim, max(blocks) + 1, fc1.shape[0] / dim).eval()

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """tokens [B, N, D], mask [B, N] bool -> [B, D]."""
        x = torch.cat([self.sem_token.expand(len(tokens), -1, -1), tokens], dim=1)
        key_mask = torch.cat([mask.new_ones(len(mask), 1), mask], dim=1)
        for block in self.sem_blocks:
            x = block(x, key_mask)
        return self.norm(x[:, 0])


def _under(state: dict, prefix: str) -> dict:
    """The tensors of `state` under `prefix`, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
