"""LAION-CLAP (Wu, Chen et al., ICASSP 2023, arXiv 2211.06687) from the `laion_clap` package's own checkpoint files:
`630k-best.pt`, `630k-audioset-best.pt` (HTS-AT tiny, no fusion), `630k-fusion-best.pt`,
`630k-audioset-fusion-best.pt` (HTS-AT tiny with feature fusion), `music_speech_audioset_epoch_15_esc_89.98.pt` and
its siblings (HTS-AT base), all with RoBERTa-base as the text tower (github.com/LAION-AI/CLAP; files at
huggingface.co/lukewys/laion_clap).

Network: transformers' `ClapModel`, the same architecture (transformers ships a converter from these files). The
file's tensors are checked strictly in their official names and renamed onto it: `audio_branch.*` (HTS-AT's Swin
encoder, through evar.models.htsat's official-name mapping; the fused `qkv` split in three), `text_branch.*`
(RoBERTa), `audio_projection.{0,2}` / `text_projection.{0,2}` (Linear-ReLU-Linear into the 512-d joint space),
`logit_scale_a/t`. Dropped by name: the torchlibrosa front-end constants (the mel filters are compared with the ones
computed here), the AudioSet head (`tscam_conv`, `head`), Swin attention masks, the training-only `audio_transform`
/ `text_transform` MLPs and RoBERTa's position / token-type id constants. The Swin sizes are read from the file
(patch-embedding width, blocks per stage, heads from the relative-position tables, fusion from its convolution);
`amodel` (laion_clap's name), when set, must agree. The text tower's configuration and tokenizer come from
`text_model` (roberta-base, as laion_clap loads them; a hub id or a local save_pretrained folder).

Front end, as `laion_clap.CLAP_Module.get_audio_embedding_from_data(x, use_tensor=True)` (what EVAR's
ar_laionclap.py calls) computes it, on 48 kHz waves, in float64 here:
- a clip shorter than 10 s (480,000 samples) is repeated floor(480000 / n) times and zero-padded to 10 s
  ('repeatpad'); use_tensor=True skips the int16 quantisation of the numpy path, as EVAR does, and so does evar.
- no fusion: |STFT|^2 (n_fft 1024, periodic Hann, hop 480 = 10 ms, centred, reflect padding), 64 Slaney mel
  filters 50-14000 Hz (torchlibrosa's LogmelFilterBank), 10 log10(max(mel, 1e-10)): 1001 frames per 10 s.
- fusion: the same STFT through 64 HTK-scale unnormalised filters (torchaudio's MelSpectrogram in laion_clap's
  get_mel; filters and STFT in float32 as torchaudio computes them: in float64 the log-mel of the ESC-50 clip
  differed from torchaudio's by up to 3.2 dB in 4 % of its bins, all in digital silence, where float32 rounding
  lifts the power above the 1e-10 floor), 10 log10(max(mel, 1e-10)). A clip of at most 10 s (1001 frames) gives
  four copies of its log-mel, of which the network uses the first. A longer one gives four views: the whole
  log-mel shrunk to 1001 frames (bilinear with antialiasing: torchvision's Resize on a tensor) and three 1001-frame
  chunks, one from each third of the possible start frames (np.array_split).
Then the checkpoint's BatchNorm over mel bins, the bicubic stretch to 1024 frames, the Swin encoder, the mean of its
last tokens, the audio projection and L2 normalisation: the 512-d clip embedding of the joint space.

Long clips (laion_clap, and so EVAR's wrapper, draw at random: a non-determinism fault; evar is deterministic):
- no fusion: laion_clap's `rand_trunc` keeps one random 10 s crop. Here a clip is cut into 10 s pieces from its
  start (the last one repeat-padded like a short clip) and each piece is one frame: mean pooling averages their
  unit embeddings (the modes re-normalise).
- fusion: laion_clap draws each chunk's start at random within its third; here each chunk starts at the middle
  element of its third.
Measured on the parity script's 20.5 s clip with random weights (where two different clips' embeddings have cosine
0.976): evar's unfused clip embedding has cosine 0.993-0.995 (mean 0.995) with 8 seeded random crops of laion_clap,
whose crops have 0.998-0.999 among themselves; fused, 0.995-0.998 (mean 0.998) against 0.994-0.997 among the
random draws, so the deterministic chunks sit inside the spread of laion_clap's own draws.

Checked against laion_clap 1.1.7 (PyPI; `get_audio_embedding_from_data(use_tensor=True)`, `get_text_embedding`)
and EVAR's wrapper (ar_laionclap.py at 88ba772) on seeded random weights in laion_clap's layout (real HTSAT-tiny,
a 2-layer RoBERTa of width 768) and real clips (ESC-50 5 s, RAVDESS, a speech command, a 20.5 s concatenation),
with `python benchmarks/parity_laionclap.py` (2026-12-06; max / median relative difference):
- unfused, each 10 s piece: 3.1e-7 / 2.8e-7 against both laion_clap and EVAR's wrapper (which is laion_clap's
  default model; for clips up to 10 s EVAR and evar give the same embedding);
- text: 4.0e-7 / 3.5e-7 against both (captions up to 77 tokens and one truncated at 77);
- fused, whole clips (laion_clap's chunk draw set to the middle element): 3.5e-7 / 3.1e-7.
EVAR differences kept: EVAR ignores `weight_file` (its wrapper always downloads 630k-audioset-best.pt; here the
file is the config's), its YAML says feature_d 768 (the embedding is 512-d), and it zero-pads clips to the task's
unit length before laion_clap's repeatpad (here the clip's own samples are repeated).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import torch
from torch import nn

from ..errors import EvarError
from ..frontend import mel_filterbank, slaney_mel_filterbank
from .base import AudioRepr, Frames, load_checkpoint, load_strict
from .htsat import HTSAT, frames_from_pieces, load_official, power_mel, run_in_groups

WEIGHTS_URL = 'https://huggingface.co/lukewys/laion_clap (the laion_clap package, github.com/LAION-AI/CLAP)'

# laion_clap's audio models (clap_module/htsat.py create_htsat_model): Swin patch width, blocks and heads per stage.
AMODELS = {
    'HTSAT-tiny': (96, (2, 2, 6, 2), (4, 8, 16, 32)),
    'HTSAT-base': (128, (2, 2, 12, 2), (4, 8, 16, 32)),
    'HTSAT-large': (256, (2, 2, 12, 2), (4, 8, 16, 32)),
}
# Official tensors no embedding uses (dropped by name).
AUDIO_IGNORED = ('spectrogram_extractor.', 'logmel_extractor.', 'tscam_conv.', 'head.')
TOP_IGNORED = ('audio_transform.', 'text_transform.')
TEXT_CONSTANTS = ('embeddings.position_ids', 'embeddings.token_type_ids')
PROJECTION_LAYERS = {'0': 'linear1', '2': 'linear2'}  # laion_clap's nn.Sequential indices -> ClapProjectionLayer
SPEC_SIZE, PATCH = 256, 4  # every laion_clap HTS-AT: a 256 x 256 Swin image of 4 x 4 patches


@dataclass(frozen=True)
class LaionCLAPParams:
    """YAML keys of `laionclap`.

    Keys:
        weight_file: a laion_clap checkpoint (.pt; {'state_dict': ...} with 'module.' prefixes, as published).
        amodel: laion_clap's audio model name (HTSAT-tiny, HTSAT-base, HTSAT-large), checked against the file's
            shapes; None: read from the file only.
        enable_fusion: None (from the file: fused checkpoints hold the fusion convolution), or True / False,
            checked against the file.
        text_model: where RoBERTa's configuration and tokenizer come from: a hub id (roberta-base, what laion_clap
            loads) or a local save_pretrained folder; the weights are the checkpoint's.
        sample_rate: Hz (48000, the training rate).
        feature_d: not used (EVAR's YAML carries 768; the joint-space embedding is 512-d).
        temporal_pooling_type: pooling over a clip's 10 s pieces ('mean').
        chunk_batch: pieces per forward pass (memory bound; embeddings do not depend on it).
    """
    weight_file: Optional[str] = None
    amodel: Optional[str] = None
    enable_fusion: Optional[bool] = None
    text_model: str = 'roberta-base'
    sample_rate: int = 48000
    feature_d: int = 512  # informational
    temporal_pooling_type: str = 'mean'
    chunk_batch: int = 16


# ----------------------------------------------------------------------------------------------------------------
# Front-end pieces.

def repeat_pad(wave: torch.Tensor, n: int) -> torch.Tensor:
    """laion_clap's 'repeatpad' of a 1-D wave of at most n samples: floor(n / len) copies, then zeros up to n."""
    if wave.shape[0] < n:
        wave = wave.repeat(n // wave.shape[0])
    return nn.functional.pad(wave, (0, n - wave.shape[0]))


def fusion_views(mel: torch.Tensor, chunk_frames: int) -> tuple:
    """laion_clap's fusion input of one log-mel [T, n_mels] (T >= chunk_frames): (views [4, chunk_frames, n_mels],
    longer). T == chunk_frames: four copies, not longer. Else the whole log-mel shrunk to chunk_frames (bilinear,
    antialiased) and three chunks, the i-th starting at the middle of the i-th of np.array_split(range(0, T -
    chunk_frames + 1), 3) (0 where that part is empty); laion_clap draws these starts at random."""
    frames = mel.shape[0]
    if frames == chunk_frames:
        return mel.expand(4, -1, -1), False
    starts = list(range(frames - chunk_frames + 1))
    size, extra = divmod(len(starts), 3)
    bounds = [0]
    for i in range(3):  # np.array_split: the first `extra` parts get one more
        bounds.append(bounds[-1] + size + (i < extra))
    parts = [starts[bounds[i]:bounds[i + 1]] or [0] for i in range(3)]
    chunks = [mel[p[len(p) // 2]:p[len(p) // 2] + chunk_frames] for p in parts]
    shrunk = nn.functional.interpolate(mel[None, None], size=(chunk_frames, mel.shape[1]), mode='bilinear',
                                       align_corners=False, antialias=True)[0, 0]
    return torch.stack([shrunk] + chunks), True


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint layout.

def read_architecture(audio: dict, source: str) -> tuple:
    """(embed_dim, depths, num_heads, window, fusion) of the HTS-AT tensors `audio` (official names)."""
    try:
        embed_dim = int(audio['patch_embed.proj.weight'].shape[0])
        n_layers = 1 + max(int(m.group(1)) for m in map(re.compile(r'layers\.(\d+)\.').match, audio) if m)
        depths, heads = [], []
        for i in range(n_layers):
            blocks = {int(m.group(1)) for m in map(re.compile(rf'layers\.{i}\.blocks\.(\d+)\.').match, audio) if m}
            depths.append(len(blocks))
            heads.append(int(audio[f'layers.{i}.blocks.0.attn.relative_position_bias_table'].shape[1]))
        window = (int(round(audio['layers.0.blocks.0.attn.relative_position_bias_table'].shape[0] ** 0.5)) + 1) // 2
    except (KeyError, ValueError) as e:
        raise EvarError(f'laionclap: {source} does not hold laion_clap HTS-AT tensors under audio_branch. '
                        f'(missing {e}).') from None
    return embed_dim, tuple(depths), tuple(heads), window, 'patch_embed.mel_conv2d.weight' in audio


def build_clap(audio_arch: tuple, text_config, projection_dim: int) -> nn.Module:
    """transformers' ClapModel (eval, no dropout) with laion_clap's HTS-AT (`read_architecture`'s tuple) and the
    RoBERTa `text_config` (a transformers config whose sizes are copied)."""
    from transformers import ClapAudioConfig, ClapConfig, ClapModel, ClapTextConfig

    embed_dim, depths, heads, window, fusion = audio_arch
    audio = ClapAudioConfig(spec_size=SPEC_SIZE, num_mel_bins=64, patch_size=PATCH, patch_stride=[PATCH, PATCH],
                            patch_embeds_hidden_size=embed_dim, hidden_size=embed_dim * 2 ** (len(depths) - 1),
                            depths=list(depths), num_attention_heads=list(heads), window_size=window,
                            enable_fusion=fusion, fusion_type='aff_2d' if fusion else None, drop_path_rate=0.0,
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, hidden_act='gelu',
                            layer_norm_eps=1e-5, mlp_ratio=4.0, qkv_bias=True, projection_dim=projection_dim)
    keys = ('vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size',
            'hidden_act', 'max_position_embeddings', 'type_vocab_size', 'layer_norm_eps', 'pad_token_id',
            'bos_token_id', 'eos_token_id')
    text = ClapTextConfig(**{k: getattr(text_config, k) for k in keys}, hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0, projection_dim=projection_dim)
    config = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=projection_dim,
                        projection_hidden_act='relu')
    return ClapModel(config).eval()


def _ours(official: str) -> str:
    """The ClapModel key of an official non-audio key (text_branch., *_projection.{0,2}., logit scales)."""
    if official.startswith('text_branch.'):
        return 'text_model.' + official[len('text_branch.'):]
    for side in ('audio_projection.', 'text_projection.'):
        if official.startswith(side):
            index, rest = official[len(side):].split('.', 1)
            return side + PROJECTION_LAYERS.get(index, index) + '.' + rest
    return official


def load_laion_state(clap: nn.Module, state: dict, source: str) -> None:
    """Loads a laion_clap state dict ('module.' already stripped) into `clap` strictly in the official names (see the
    module docstring for what is dropped)."""
    audio = {k[len('audio_branch.'):]: v for k, v in state.items() if k.startswith('audio_branch.')}
    load_official(clap.audio_model, audio, source, AUDIO_IGNORED)
    rest = {k: v for k, v in state.items() if not k.startswith(('audio_branch.',) + TOP_IGNORED)
            and k not in {f'text_branch.{c}' for c in TEXT_CONSTANTS}}
    own = {k: v for k, v in clap.state_dict().items() if not k.startswith('audio_model.')}
    constants = {f'text_model.{c}' for c in TEXT_CONSTANTS}
    wanted = {k for k in own if k not in constants}
    converted = {_ours(k): v for k, v in rest.items()}
    missing = sorted(wanted - set(converted))
    unexpected = sorted(k for k in rest if _ours(k) not in wanted)
    if missing or unexpected:
        raise EvarError(f'Weight file {source} does not match laion_clap CLAP. Missing (transformers names): '
                        f'{missing[:8]}; unexpected: {unexpected[:8]}.')
    full = {**{f'audio_model.{k}': v for k, v in clap.audio_model.state_dict().items()},
            **{k: own[k] for k in constants if k in own}, **converted}
    load_strict(clap, full, source)


# ----------------------------------------------------------------------------------------------------------------
# The AR.

class LaionCLAP(AudioRepr):
    """LAION-CLAP from a laion_clap checkpoint: waves [B, N] float32 at 48 kHz -> Frames [B, pieces, 512] of unit
    joint-space embeddings, one per 10 s piece (fusion: one per clip); `encode_text(list[str]) -> [N, 512]`.

    Raises:
        EvarError: a missing or mismatched weight file, an amodel / enable_fusion that disagrees with it, a
            sample_rate other than 48000, mel filters differing from the file's, or an unloadable text_model.
    """
    Params = LaionCLAPParams
    augment_point = 'spectrogram'  # fine-tuning's augmentations act on the dB log-mel at `encode`'s start
    clip_samples = 480000  # 10 s at 48 kHz: laion_clap's max_len
    n_fft, hop = 1024, 480

    def __init__(self, params: LaionCLAPParams):
        super().__init__(params)
        p = params
        if int(p.sample_rate) != 48000:
            raise EvarError(f'laionclap: sample_rate must be 48000 (the rate laion_clap was trained at), got '
                            f'{p.sample_rate}.')
        if p.amodel is not None and p.amodel not in AMODELS:
            raise EvarError(f'laionclap: amodel {p.amodel!r} is not a laion_clap HTS-AT; expected one of '
                            f'{sorted(AMODELS)}.')
        state = load_checkpoint(p.weight_file, 'laionclap', WEIGHTS_URL)
        if next(iter(state), '').startswith('module.'):
            state = {k[len('module.'):]: v for k, v in state.items()}
        audio = {k[len('audio_branch.'):]: v for k, v in state.items() if k.startswith('audio_branch.')}
        arch = read_architecture(audio, p.weight_file)
        if p.amodel is not None and AMODELS[p.amodel] != arch[:3]:
            raise EvarError(f'laionclap: {p.weight_file} holds an HTS-AT of width {arch[0]}, depths {arch[1]}, not '
                            f'{p.amodel}; set amodel to the file\'s model (or leave it unset).')
        if p.enable_fusion is not None and p.enable_fusion != arch[4]:
            raise EvarError(f'laionclap: {p.weight_file} is a {"fused" if arch[4] else "non-fused"} checkpoint; set '
                            f'enable_fusion: {arch[4]} (or leave it unset).')
        self.fusion = arch[4]
        self.register_buffer('slaney_fb', slaney_mel_filterbank(48000, self.n_fft, 64, 50.0, 14000.0),
                             persistent=False)
        # torchaudio's filters bit for bit (float32 steps), as laion_clap's get_mel uses them
        self.register_buffer('htk_fb', mel_filterbank(48000, self.n_fft, 64, 50.0, 14000.0, dtype=torch.float32),
                             persistent=False)
        # The file's torchlibrosa filters must be the ones computed here (HTS-AT's check, on these filters).
        HTSAT._check_front_end(SimpleNamespace(mel_fb=self.slaney_fb), audio, p.weight_file)
        text_config, self.tokenizer_source = self._text_config(p.text_model), p.text_model
        try:
            projection_dim = int(state['audio_projection.2.weight'].shape[0])
        except KeyError:
            raise EvarError(f'laionclap: {p.weight_file} has no audio_projection.2.weight (not a laion_clap CLAP '
                            'checkpoint).') from None
        clap = build_clap(arch, text_config, projection_dim)
        load_laion_state(clap, state, p.weight_file)
        self.audio_model, self.audio_projection = clap.audio_model, clap.audio_projection
        # The text tower stays outside the registered modules: fine-tuning trains the audio tower only (as EVAR's
        # finetune does); `encode_text` moves it to the audio tower's device when it runs.
        self._text = (clap.text_model, clap.text_projection)
        self._tokenizer = None
        self.projection_dim = projection_dim
        self.chunk_frames = self.clip_samples // self.hop + 1

    @staticmethod
    def _text_config(text_model: str):
        import transformers

        try:
            return transformers.AutoConfig.from_pretrained(text_model)
        except (OSError, ValueError, KeyError) as e:
            raise EvarError(f'laionclap: cannot load the text tower configuration {text_model!r} (text_model: a hub '
                            'id such as roberta-base, what laion_clap uses, or a local save_pretrained folder with '
                            f'config.json and the tokenizer files). Cause: {e}') from e

    @classmethod
    def weight_paths(cls, params) -> list:
        """The checkpoint, and the text_model folder's files when it is a local folder."""
        paths = super().weight_paths(params)
        folder = Path(params.text_model).expanduser()
        if folder.is_dir():
            paths += sorted(f for f in folder.rglob('*') if f.is_file())
        return paths

    def patch_embedding(self) -> nn.Module:
        """The Swin transformer's patch embedding (with the fusion convolution in fused models)."""
        return self.audio_model.audio_encoder.patch_embed

    @property
    def frame_hop_sec(self) -> Optional[float]:
        """10 s (one embedding per 10 s piece); None for fused models (one embedding per clip)."""
        return None if self.fusion else self.clip_samples / self.sample_rate

    @property
    def embedding_dim(self) -> int:
        """The joint space's width (the projection's output, 512 in the published files)."""
        return self.projection_dim

    def _log_mel(self, waves: torch.Tensor) -> torch.Tensor:
        if self.fusion:  # torchaudio's MelSpectrogram steps, in float32 as laion_clap's get_mel runs them
            window = torch.hann_window(self.n_fft, dtype=torch.float32, device=waves.device)
            spec = torch.stft(waves.float(), self.n_fft, hop_length=self.hop, win_length=self.n_fft, window=window,
                              center=True, pad_mode='reflect', return_complex=True)
            power = torch.matmul(spec.abs().pow(2.0).transpose(1, 2), self.htk_fb)
        else:
            power = power_mel(waves, self.n_fft, self.slaney_fb, self.n_fft, self.hop, 'reflect')
        return 10.0 * torch.log10(power.clamp(min=1e-10))

    def features(self, wav: torch.Tensor, lengths: torch.Tensor):
        """dB log-mel [B, 64, T] at 10 ms: no fusion, of each 10 s piece (repeat-padded) concatenated, 1001 frames
        a piece; fusion, of the whole clip (repeat-padded to 10 s when shorter)."""
        pieces, per_clip = [], []
        for i, n in enumerate(lengths.tolist()):
            wave = wav[i, :max(1, int(n))]
            parts = [wave] if self.fusion else list(torch.split(wave, self.clip_samples))
            pieces += [repeat_pad(x, self.clip_samples) if x.shape[0] < self.clip_samples else x for x in parts]
            per_clip.append(len(parts))
        mels = run_in_groups(self._log_mel, pieces, self.params.chunk_batch)
        frames = frames_from_pieces(mels, per_clip)
        return frames.embeddings.transpose(1, 2), frames.mask.sum(1)

    def _embed(self, x: torch.Tensor, longer: torch.Tensor) -> torch.Tensor:
        x = x.to(next(self.audio_model.parameters()).dtype)
        out = self.audio_model(input_features=x, is_longer=longer[:, None])
        return nn.functional.normalize(self.audio_projection(out.pooler_output), dim=-1)

    def encode(self, feats: torch.Tensor, feat_lengths: torch.Tensor) -> Frames:
        """Unit joint-space embeddings: [B, pieces, D] (no fusion: a frame per 1001-frame piece) or [B, 1, D]
        (fusion: the clip's four views, `fusion_views`), all frames valid."""
        feats = self.augment_input(feats)
        inputs, longer, counts = [], [], []
        for i, n in enumerate(feat_lengths.tolist()):
            mel = feats[i, :, :int(n)].T  # [T, 64]
            if self.fusion:
                views, is_longer = fusion_views(mel, self.chunk_frames)
                inputs.append(views)
                longer.append(is_longer)
                counts.append(1)
            else:
                parts = list(torch.split(mel, self.chunk_frames))
                inputs += [part[None] for part in parts]
                longer += [False] * len(parts)
                counts.append(len(parts))
        flags = torch.tensor(longer, device=feats.device)
        out = [None] * len(inputs)
        for start in range(0, len(inputs), self.params.chunk_batch):
            stop = start + self.params.chunk_batch
            emb = self._embed(torch.stack(inputs[start:stop]), flags[start:stop])
            for k, e in enumerate(emb):
                out[start + k] = e[None]
        return frames_from_pieces(out, counts)

    def encode_text(self, texts: list) -> torch.Tensor:
        """Text embeddings [len(texts), D], L2-normalised, in the joint space of the clip embeddings (the audio-text
        contract, evar.models.audio_text), on the audio tower's device: text_model's tokenizer padding and
        truncating to 77 tokens (laion_clap's tokenizer call), RoBERTa's pooled output, the text projection.

        Raises:
            EvarError: text_model has no loadable tokenizer.
        """
        text_model, projection = self._text
        if self._tokenizer is None:
            import transformers

            try:
                self._tokenizer = transformers.AutoTokenizer.from_pretrained(self.tokenizer_source)
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise EvarError(f'laionclap: cannot load the tokenizer of text_model {self.tokenizer_source!r} '
                                f'(roberta-base, or a folder with its tokenizer files). Cause: {e}') from e
        p = next(self.audio_model.parameters())
        text_model.to(device=p.device, dtype=p.dtype)
        projection.to(device=p.device, dtype=p.dtype)
        tokens = self._tokenizer(list(texts), padding='max_length', truncation=True, max_length=77,
                                 return_tensors='pt').to(p.device)
        pooled = text_model(input_ids=tokens['input_ids'], attention_mask=tokens['attention_mask']).pooler_output
        return nn.functional.normalize(projection(pooled).float(), dim=-1)
