"""WavCaps (Mei et al., IEEE/ACM TASLP 2024, arXiv:2303.17395): the audio-language retrieval models trained on
WavCaps, HTS-AT or CNN14 audio encoder + BERT text encoder, loaded from the publisher's checkpoint files
(`HTSAT-BERT-PT.pt`, `HTSAT-BERT-FT-AudioCaps.pt`, `HTSAT-BERT-FT-Clotho.pt`, and the `CNN14-BERT-*.pt` siblings;
`RELEASES` lists them; the encoder is recognised from the file's keys).

Recipe (XinhaoMei/WavCaps, retrieval/models/ase_model.py `ASE`, audio_encoder.py, htsat.py, feature_extractor.py,
text_encoder.py; settings/inference.yaml; zero_shot_classification.py):
- Audio: 32 kHz waves, cut into 10 s chunks from the clip's start; each chunk shorter than 10 s (a short clip, or
  the tail of a long one) is zero-padded to 10 s, as the official zero-shot script pads a clip and as EVAR's wrapper
  `ar_wavcaps.py` pads each chunk. Front end per chunk (torchlibrosa in the official code): |STFT|^2 with n_fft 1024,
  hop 320 (10 ms), periodic Hann window, centred with reflect padding, 64 Slaney mel filters (librosa, 50-14000 Hz),
  10 log10(max(mel, 1e-10)) dB: 1001 frames. Then HTS-AT (Swin: spec_size 256, patches 4x4, width 96, depths 2-2-6-2,
  heads 4-8-16-32, window 8, the checkpoint's BatchNorm over mel bins, 1001 frames stretched to 1024 by bicubic
  interpolation): the mean of the last stage's tokens (`latent_output`, 768-d), then `audio_proj` (Linear 768->1024,
  ReLU, Linear 1024->1024) and L2 normalisation. CNN14 releases (retrieval/models/cnns.py `Cnn14`): the same log-mel,
  bn0, six PANNs conv blocks (64 ... 2048 channels), each followed by 2x2 average pooling (block 6 too, unlike the
  PANNs tagger), mean over frequency, max + mean over time (2048-d), then `audio_proj` from 2048. The clip
  embedding is the mean over its chunks of those unit vectors (EVAR's `AR_WavCaps.forward`); the zero-shot and
  retrieval modes normalise it again.
- Text: the text encoder's tokenizer (`bert-base-uncased` in the releases) pads to the longest caption and truncates
  at 30 tokens; BERT without its pooler; the output at the first ([CLS]) position through `text_proj` (Linear
  768->1024, ReLU, Linear 1024->1024), L2-normalised.

Frames: one per 10 s chunk (its joint-space embedding), so `frame_hop_sec` is `clip_sec` and mean pooling gives
EVAR's embedding exactly. Zero padding does enter a short chunk's embedding (the network sees 10 s); that is the
model's input convention (official code and EVAR alike), not padding in pooling: no padded chunk is ever added.

The checkpoint is {'model': state dict, 'config': the training settings, ...}. Every tensor is checked in the
official names: `audio_encoder.audio_enc.*` (HTS-AT's official keys; evar.models.htsat maps them onto transformers'
ClapAudioModel; torchlibrosa's constants under `audio_feats_extractor.`, the unused AudioSet head `tscam_conv`/`head`
and the attention masks are dropped, the file's mel filters must equal ours), `audio_proj.*`, `text_proj.*`,
`text_encoder.text_encoder.*` (BERT; `embeddings.position_ids`, which older transformers saved, is dropped) and
`temp` (the contrastive temperature, unused). The file's `config.audio_args` must match the front-end keys. The text
tower is built from `text_model` (a hub id or a local `save_pretrained` folder with config.json and the tokenizer;
default: the checkpoint's `text_encoder_args.type`) on the first `encode_text`, so audio-only runs never need it.
Like the hf family's CLAP route, the text tower is kept outside the registered modules: fine-tuning trains the audio
tower only, as EVAR's fine-tuning does.

Tokenizer: AutoTokenizer of `text_model` (the fast BERT tokenizer for bert-base-uncased; the official code calls the
Python BertTokenizer, which gives the same ids for ordinary captions; not compared here, no hub access).

Checked on 2026-12-06 with `python benchmarks/parity_wavcaps.py --wavcaps <WavCaps export> --evar_ref <EVAR 88ba772>
--ref_python /tmp/venv_evarref/bin/python`: the official `ASE` (settings/inference.yaml sizes, seeded random weights,
its own state_dict saved as train.py saves it and loaded strictly here; a 2-layer BERT of width 768 with a local
character tokenizer) and EVAR's `AR_WavCaps` on real clips of 5.0, 3.3, 1.0 and 20.5 s: audio embeddings within
3.3e-07 relative (max; median 2.5e-07) of both, text embeddings identical (0.0) for 5 captions. EVAR's wrapper and
the official code compute the same embedding, so config/wavcaps.yaml (EVAR's name) is both. With `--encoder cnn14`
(the official `Cnn14`, every BatchNorm's statistics random): audio within 3.5e-07 (median 2.6e-07) of both, text 0.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Optional

import torch
from torch import nn

from ..errors import EvarError
from ..frontend import slaney_mel_filterbank
from .base import AudioRepr, Frames, load_strict, read_tensors, require_file
from .htsat import HTSAT, HTSATParams, build_swin, frames_from_pieces, load_official, run_in_groups, swin_tokens
from .panns import CHANNELS, ConvBlock

WEIGHTS_URL = ('https://drive.google.com/drive/folders/1pFr8IRY3E1FAtc2zjYmeuSVY3M5a-Kdj (the "Pretrained models" '
               'link of github.com/XinhaoMei/WavCaps/tree/master/retrieval; the dataset is at '
               'huggingface.co/datasets/cvssp/WavCaps)')

AUDIO_PREFIX = 'audio_encoder.audio_enc.'
TEXT_PREFIX = 'text_encoder.text_encoder.'
# Official HTS-AT tensors the embedding does not use: torchlibrosa's constants and the AudioSet classifier.
AUDIO_IGNORED = ('audio_feats_extractor.', 'tscam_conv.', 'head.')
UNUSED_TOP = ('temp',)  # the contrastive temperature scales similarities in training only
# The released checkpoints (file name -> audio encoder, text tower); the encoder is also recognised by its keys.
RELEASES = MappingProxyType({
    'HTSAT-BERT-PT.pt': ('htsat', 'bert-base-uncased'),
    'HTSAT-BERT-FT-AudioCaps.pt': ('htsat', 'bert-base-uncased'),
    'HTSAT-BERT-FT-Clotho.pt': ('htsat', 'bert-base-uncased'),
    'CNN14-BERT-PT.pt': ('cnn14', 'bert-base-uncased'),
    'CNN14-BERT-FT-AudioCaps.pt': ('cnn14', 'bert-base-uncased'),
    'CNN14-BERT-FT-Clotho.pt': ('cnn14', 'bert-base-uncased'),
})
# config.audio_args key in the checkpoint -> the Params field it must equal.
AUDIO_ARGS = {'sr': 'sample_rate', 'n_fft': 'n_fft', 'hop_length': 'hop_size', 'n_mels': 'n_mels', 'f_min': 'f_min',
              'f_max': 'f_max'}


@dataclass(frozen=True)
class WavCapsParams(HTSATParams):
    """YAML keys of `wavcaps` (EVAR's config/wavcaps.yaml loads unchanged): HTSATParams' keys (the same HTS-AT sizes
    and front end; `clip_sec` chunks shorter than it are zero-padded to it here, not tiled) and:

    Keys:
        text_model: the text tower's hub id or a local save_pretrained folder holding its config.json and tokenizer;
            None takes the checkpoint's config.text_encoder_args.type ('bert-base-uncased').
        text_max_length: tokens per caption after truncation (30, the official tokenizer call).
        feature_d: not used (EVAR's YAML says 768; the embedding is the checkpoint's embed_size, 1024).
    """
    text_model: Optional[str] = None
    text_max_length: int = 30
    feature_d: int = 1024  # informational (EVAR's YAML carries 768)


@dataclass
class TextTower:
    """The text side: `text_proj` (loaded with the model) and the tokenizer and transformers encoder (no pooler),
    None until the first `encode_text` builds them."""
    projection: nn.Module
    tokenizer: object = None
    encoder: Optional[nn.Module] = None


def projection_head(state: dict, prefix: str, source: str) -> nn.Sequential:
    """WavCaps' projection head (Linear, ReLU, Linear) loaded strictly from `state[prefix + '0.weight']` etc.:
    [N, in] -> [N, embed_size].

    Raises:
        EvarError: the file lacks the head or its tensors do not fit.
    """
    weight = state.get(prefix + '0.weight')
    if weight is None or weight.ndim != 2:
        raise EvarError(f'WavCaps: weight file {source} has no {prefix}0.weight (a 2-d projection); expected an '
                        'official WavCaps checkpoint.')
    out_d, in_d = weight.shape
    head = nn.Sequential(nn.Linear(in_d, out_d), nn.ReLU(), nn.Linear(out_d, out_d))
    load_strict(head, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, f'{source} ({prefix}*)')
    return head.eval()


def cnn14_body(audio: dict, n_mels: int, source: str) -> nn.Module:
    """WavCaps' CNN14 (retrieval/models/cnns.py `Cnn14`: bn0 and six PANNs conv blocks, no fc1) loaded strictly from
    the official keys (prefix stripped), channels read from the file (64 ... 2048 in the releases); torchlibrosa's
    front-end constants are dropped (the front end is HTS-AT's, identical settings)."""
    body = nn.Module()
    body.bn0 = nn.BatchNorm2d(n_mels)
    channels = [audio[f'conv_block{i}.conv1.weight'].shape[0] if f'conv_block{i}.conv1.weight' in audio else cout
                for i, cout in enumerate(CHANNELS, 1)]
    cin = 1
    for i, cout in enumerate(channels, 1):
        setattr(body, f'conv_block{i}', ConvBlock(cin, cout))
        cin = cout
    load_strict(body, {k: v for k, v in audio.items() if not k.startswith('audio_feats_extractor.')}, source)
    return body.eval()


def cnn14_latent(body: nn.Module, mels: torch.Tensor) -> torch.Tensor:
    """dB log-mel [N, T, n_mels] -> [N, 2048]: bn0 over mel bins, six conv blocks each followed by 2x2 average
    pooling (block 6 too, unlike PANNs' tagger), mean over frequency, then max + mean over time (WavCaps `Cnn14`)."""
    x = body.bn0(mels.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2).unsqueeze(1)  # [N, 1, T, F]
    for i in range(1, len(CHANNELS) + 1):
        x = nn.functional.avg_pool2d(getattr(body, f'conv_block{i}')(x, None), 2)
        x = nn.functional.dropout(x, 0.2, body.training)  # the official dropout (training only)
    x = x.mean(dim=3)  # [N, C, T']
    return x.amax(dim=2) + x.mean(dim=2)


class WavCaps(HTSAT):
    """WavCaps HTSAT-BERT / CNN14-BERT (XinhaoMei/WavCaps, retrieval `ASE`): waves [B, N] float32 at 32 kHz ->
    Frames [B, chunks, 1024], one L2-normalised joint-space embedding per 10 s chunk; `encode_text(list[str])` ->
    [N, 1024]. HTS-AT's front end (`features`, the log-mel of each chunk; the CNN14 releases use the same) is
    inherited; chunks are zero-padded (`_chunks`), and `encode` gives one joint-space frame per chunk. `encoder` is
    'htsat' or 'cnn14', as the file holds.

    Raises:
        EvarError: a window other than Hann, a spec_size that does not fit n_mels and clip_sec, a missing or mismatched
            weight file, a file named as a release of the other encoder, or front-end keys differing from the file's
            (at construction).
    """
    Params = WavCapsParams

    def __init__(self, params: WavCapsParams):
        AudioRepr.__init__(self, params)  # HTSAT.__init__ reads the HTS-AT lightning file; this file differs
        p = params
        if p.window not in ('hanning', 'hann'):
            raise EvarError(f'WavCaps: window {p.window!r} is not supported; the model was trained with a Hann window.')
        self.clip_samples = int(round(p.clip_sec * p.sample_rate))
        self.chunk_frames = self._chunk_frames(p)  # 1001 log-mel frames per chunk at the defaults
        if p.spec_size % p.n_mels or p.spec_size * (p.spec_size // p.n_mels) < self.chunk_frames:
            raise EvarError(f'WavCaps: spec_size {p.spec_size} does not fit {p.n_mels} mels and {p.clip_sec} s chunks.')
        path = require_file(p.weight_file, 'WavCaps', WEIGHTS_URL)
        raw = read_tensors(path, 'WavCaps')
        if not isinstance(raw, dict) or not isinstance(raw.get('model'), dict):
            raise EvarError(f'WavCaps: weight file {path} is not a WavCaps checkpoint (a dict with a "model" state '
                            'dict, as the publisher saves it).')
        state, config = raw['model'], raw.get('config') or {}
        self._check_config(config, path)
        self._check_prefixes(state, path)
        self.encoder = 'cnn14' if AUDIO_PREFIX + 'conv_block1.conv1.weight' in state else 'htsat'
        release = RELEASES.get(path.name)
        if release and release[0] != self.encoder:
            raise EvarError(f'WavCaps: {path.name} is a {release[0]} release, but the file holds a {self.encoder} '
                            'audio encoder; is the file complete and correctly named?')
        self.register_buffer('mel_fb', slaney_mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.f_min, p.f_max),
                             persistent=False)
        audio = {k[len(AUDIO_PREFIX):]: v for k, v in state.items() if k.startswith(AUDIO_PREFIX)}
        self._check_front_end({'logmel_extractor.melW': audio.get('audio_feats_extractor.log_trans.melW')}, path)
        if self.encoder == 'htsat':
            self.swin = build_swin(p.spec_size, p.n_mels, p.patch_size, p.patch_stride, p.embed_dim, p.depths,
                                   p.num_heads, p.swin_window).eval()
            load_official(self.swin, audio, str(path), AUDIO_IGNORED)
            width = p.embed_dim * 2 ** (len(p.depths) - 1)
        else:
            self.cnn = cnn14_body(audio, p.n_mels, str(path))
            width = self.cnn.conv_block6.conv2.out_channels
        self.audio_proj = projection_head(state, 'audio_proj.', str(path))
        if self.audio_proj[0].in_features != width:
            raise EvarError(f'WavCaps: audio_proj in {path} takes {self.audio_proj[0].in_features}-d input, the '
                            f'{self.encoder} encoder gives {width}-d.')
        # The text side stays outside the registered modules (see the module docstring); built on first use.
        self._text_state = {k[len(TEXT_PREFIX):]: v for k, v in state.items() if k.startswith(TEXT_PREFIX)}
        self._text = TextTower(projection_head(state, 'text_proj.', str(path)))
        self._text_model = (p.text_model or (config.get('text_encoder_args') or {}).get('type')
                            or (release[1] if release else None))
        self._source = str(path)

    def _check_config(self, config: dict, path: Path) -> None:
        """The checkpoint's `config.audio_args` (when saved) must equal the front-end keys."""
        args = config.get('audio_args') or {}
        for key, field in AUDIO_ARGS.items():
            if key in args and float(args[key]) != float(getattr(self.params, field)):
                raise EvarError(f'WavCaps: {field} is {getattr(self.params, field)} but {path} was trained with '
                                f'audio_args.{key} = {args[key]}; set {field}: {args[key]}.')

    @staticmethod
    def _check_prefixes(state: dict, path: Path) -> None:
        known = (AUDIO_PREFIX, TEXT_PREFIX, 'audio_proj.', 'text_proj.')
        unexpected = sorted(k for k in state if not k.startswith(known) and k not in UNUSED_TOP)
        if unexpected:
            raise EvarError(f'WavCaps: weight file {path} has tensors outside the WavCaps model: {unexpected[:8]}; '
                            f'expected only names under {", ".join(known)} and {", ".join(UNUSED_TOP)}.')
        if not any(k.startswith(TEXT_PREFIX) for k in state):
            raise EvarError(f'WavCaps: weight file {path} has no text encoder ({TEXT_PREFIX}*).')

    @property
    def frame_hop_sec(self) -> float:
        """One frame per `clip_sec` chunk."""
        return float(self.params.clip_sec)

    @property
    def embedding_dim(self) -> int:
        """The joint space's size (the checkpoint's embed_size: 1024 in the releases)."""
        return self.audio_proj[-1].out_features

    def _chunks(self, wave: torch.Tensor) -> list:
        """`clip_sec` pieces of a clip from its start, the last one zero-padded to `clip_sec` (official and EVAR)."""
        return [nn.functional.pad(c, (0, self.clip_samples - c.shape[0])) for c in torch.split(wave, self.clip_samples)]

    def encode(self, feats: torch.Tensor, feat_lengths: torch.Tensor) -> Frames:
        """Frames [B, chunks, embed_size] from `features`' log-mel [B, n_mels, T]: each chunk's HTS-AT latent_output
        through audio_proj, L2-normalised; every chunk of a clip is a valid frame."""
        feats = self.augment_input(feats)
        pieces, counts = [], []
        for i, n in enumerate(feat_lengths.tolist()):
            parts = torch.split(feats[i, :, :int(n)].T, self.chunk_frames)  # [1001, n_mels] each
            pieces += parts
            counts.append(len(parts))
        tokens = run_in_groups(self._joint, pieces, self.params.chunk_batch)
        return frames_from_pieces([t[None] for t in tokens], counts)

    def _joint(self, mels: torch.Tensor) -> torch.Tensor:
        """Chunks' dB log-mel [N, 1001, n_mels] -> unit joint-space embeddings [N, embed_size] (ASE.encode_audio):
        HTS-AT's latent_output (the mean of its last time tokens), or CNN14's max + mean over time."""
        if self.encoder == 'htsat':
            latent = swin_tokens(self.swin, mels).mean(1)
        else:
            latent = cnn14_latent(self.cnn, mels)
        return nn.functional.normalize(self.audio_proj(latent), dim=-1)

    def patch_embedding(self) -> nn.Module:
        """The patch embedding (HTS-AT) or the first convolutional block (CNN14)."""
        return self.swin.audio_encoder.patch_embed if self.encoder == 'htsat' else self.cnn.conv_block1

    def _text_tower(self) -> TextTower:
        if self._text.encoder is not None:
            return self._text
        if not self._text_model:
            raise EvarError(f'WavCaps: set text_model (e.g. bert-base-uncased, or a local save_pretrained folder); '
                            f'{self._source} does not name its text encoder.')
        import transformers

        try:
            config = transformers.AutoConfig.from_pretrained(self._text_model)
            tokenizer = transformers.AutoTokenizer.from_pretrained(self._text_model)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise EvarError(f'WavCaps: cannot load the config and tokenizer of text_model {self._text_model!r} (a hub '
                            f'id such as bert-base-uncased, or a folder with config.json and tokenizer files). '
                            f'Cause: {e}') from e
        encoder = transformers.AutoModel.from_config(config, add_pooling_layer=False)
        state = dict(self._text_state)
        if 'embeddings.position_ids' not in encoder.state_dict():
            state.pop('embeddings.position_ids', None)  # a buffer older transformers versions saved
        load_strict(encoder, state, f'{self._source} (text encoder {self._text_model})')
        self._text.tokenizer, self._text.encoder = tokenizer, encoder.eval()
        return self._text

    def encode_text(self, texts: list) -> torch.Tensor:
        """Text embeddings [len(texts), embed_size], L2-normalised, in the clip embeddings' space, on the audio
        tower's device (the audio-text contract, evar.models.audio_text).

        Raises:
            EvarError: the text tower's config/tokenizer cannot be loaded or its tensors do not fit it.
        """
        tower = self._text_tower()
        weight = self.audio_proj[0].weight
        tower.encoder.to(device=weight.device, dtype=weight.dtype)
        tower.projection.to(device=weight.device, dtype=weight.dtype)
        tokens = tower.tokenizer(list(texts), padding='longest', truncation=True,
                                 max_length=self.params.text_max_length, return_tensors='pt').to(weight.device)
        hidden = tower.encoder(input_ids=tokens['input_ids'], attention_mask=tokens['attention_mask'])[0]
        return nn.functional.normalize(tower.projection(hidden[:, 0]).float(), dim=-1)
