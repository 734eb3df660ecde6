"""HTS-AT (Chen et al., ICASSP 2022): the hierarchical token-semantic audio transformer, AudioSet checkpoint.

The network is `transformers`' CLAP audio tower (`ClapAudioModel`), which is HTS-AT's Swin encoder: the official
checkpoint's tensors are renamed onto it (the fused `qkv` projection is split into query/key/value) and checked
strictly in the official key names. Tensors the embedding does not use are dropped by name: the torchlibrosa
front-end constants (recomputed here; the mel filters are compared with the file's), the AudioSet classifier
(`tscam_conv`, `head`) and the shifted-window attention masks (constants that transformers rebuilds).

Front end (official config.py): 32 kHz, |STFT|^2 with n_fft 1024, hop 320, periodic Hann, centred with reflect
padding, 64 Slaney mel filters (librosa's `filters.mel`, 50-14000 Hz), 10 log10(max(mel, 1e-10)), then the
checkpoint's BatchNorm over mel bins.

Inputs: HTS-AT takes 10 s (1001 frames, stretched to 1024). A clip is cut into 10 s chunks from its start, as EVAR's
wrapper does, and each chunk is embedded alone, so a clip never sees the other clips of a batch or their padding.
A chunk shorter than 10 s (a short clip, or the tail of a long one) is treated as the official `infer_mode`, which
EVAR uses: its log-mel frames are tiled floor(1024 / frames) times and the result is stretched to 1024 frames by
bicubic interpolation. A 3 s clip (301 frames) is thus 3 copies of itself (903 frames) stretched by 1.13; a 0.2 s
clip is 51 copies. EVAR zero-pads clips to the task's unit length before this; here the clip's own samples are
used (padding never enters). Two corner cases the official code cannot run (reflect padding needs more than
n_fft / 2 samples): a tail of 512 samples or fewer after a full chunk is dropped (16 ms), and a clip that short is
tiled in time until it is longer.

Output frames: per chunk, the 32 time tokens of the last stage (LayerNorm-ed), each the mean of its two frequency
tokens: 768-d, one per 32 stretched frames (~0.31 s of a full chunk). All 32 tokens of every chunk are valid, so
mean pooling gives the mean over chunks of the official `latent_output`, which is exactly EVAR's embedding.

Checked against the official code (RetroCirce/HTS-Audio-Transformer `HTSAT_Swin_Transformer` with torchlibrosa
0.1.0, random init, strict load into this model) on real clips of 1.0, 3.3, 5.0 and 14.5 s:
`python benchmarks/parity_htsat.py --official <repo> --audio_glob '<clips>'`: embeddings (latent_output averaged over
chunks) within 2.7e-7 relative; log-mel within 5.6e-4 dB, the largest gaps in bins ~100 dB below a frame's peak,
where torchlibrosa's float32 DFT-by-convolution itself is 5.6e-4 dB off a float64 reference (ours: 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Optional

import torch
from torch import nn

from ..errors import EvarError
from ..frontend import slaney_mel_filterbank
from .base import AudioRepr, Frames, lengths_to_mask, load_checkpoint, load_strict

WEIGHTS_URL = ('https://drive.google.com/drive/folders/1f5VYMk0uos_YnuBshgmaTVioXbs7Kmz6 (linked from '
               'https://github.com/RetroCirce/HTS-Audio-Transformer)')


# ----------------------------------------------------------------------------------------------------------------
# Front-end pieces (plain torch).

def power_mel(waves: torch.Tensor, win_length: int, mel_fb: torch.Tensor, n_fft: int, hop: int,
              pad_mode: str) -> torch.Tensor:
    """Centred |STFT|^2 through mel filters: waves [N, L] -> [N, T, n_mels], T = 1 + L // hop.

    Periodic Hann window. Computed in float64: in float32 the FFT's rounding and the window's own rounding (its
    leakage floor) reached 4e-3 dB in bins 100 dB below a frame's loudest one, against 6e-4 dB for torchlibrosa's
    DFT-by-convolution; the cost is small next to the network.
    """
    window = torch.hann_window(win_length, periodic=True, dtype=torch.float64, device=waves.device)
    spec = torch.stft(waves.double(), n_fft, hop_length=hop, win_length=win_length, window=window,
                      center=True, pad_mode=pad_mode, return_complex=True)
    return torch.matmul((spec.real ** 2 + spec.imag ** 2).transpose(1, 2), mel_fb.double()).float()


# ----------------------------------------------------------------------------------------------------------------
# The Swin encoder: transformers' ClapAudioModel holding the official HTS-AT tensors.

def build_swin(spec_size: int, n_mels: int, patch_size: int, patch_stride: int, embed_dim: int, depths, num_heads,
               window_size: int) -> nn.Module:
    """transformers' ClapAudioModel configured as HTS-AT's Swin encoder (no fusion, no dropout, exact GELU, LayerNorm
    eps 1e-5), randomly initialised: input_features [N, 1, T, n_mels] with T <= spec_size^2 / n_mels frames.
    `window_size` is the Swin attention window in tokens. Imports transformers (ImportError when absent)."""
    from transformers import ClapAudioConfig, ClapAudioModel

    config = ClapAudioConfig(spec_size=spec_size, num_mel_bins=n_mels, patch_size=patch_size,
                             patch_stride=[patch_stride, patch_stride], patch_embeds_hidden_size=embed_dim,
                             depths=list(depths), num_attention_heads=list(num_heads), window_size=window_size,
                             enable_fusion=False, drop_path_rate=0.0, hidden_dropout_prob=0.0,
                             attention_probs_dropout_prob=0.0, hidden_act='gelu', layer_norm_eps=1e-5,
                             mlp_ratio=4.0, qkv_bias=True)
    return ClapAudioModel(config)


# Official name suffix inside a Swin block -> transformers' name (qkv is handled apart: it is split in three).
_BLOCK_NAMES = {
    'norm1': 'layernorm_before',
    'attn.relative_position_bias_table': 'attention.self.relative_position_bias_table',
    'attn.relative_position_index': 'attention.self.relative_position_index',
    'attn.proj': 'attention.output.dense',
    'norm2': 'layernorm_after',
    'mlp.fc1': 'intermediate.dense',
    'mlp.fc2': 'output.dense',
}
_TOP_NAMES = {'bn0': 'batch_norm', 'patch_embed': 'patch_embed', 'norm': 'norm'}
_QKV = ('query', 'key', 'value')


def _official_name(hf_key: str) -> str:
    """transformers' key -> the official HTS-AT key (query/key/value all name the fused qkv)."""
    key = hf_key[len('audio_encoder.'):]
    parts = key.split('.')
    if parts[0] == 'layers' and parts[2] == 'blocks':
        head, rest = '.'.join(parts[:4]), '.'.join(parts[4:])
        if rest.startswith('attention.self.') and parts[6] in _QKV:
            return f'{head}.attn.qkv.{parts[-1]}'
        for official, ours in _BLOCK_NAMES.items():
            if rest.startswith(ours + '.') or rest == ours:
                return f'{head}.{official}{rest[len(ours):]}'
        raise KeyError(hf_key)
    if parts[0] == 'layers':
        return key  # downsample.reduction / downsample.norm keep their names
    for official, ours in _TOP_NAMES.items():
        if parts[0] == ours:
            return official + key[len(ours):]
    raise KeyError(hf_key)


def official_shapes(swin: nn.Module) -> dict:
    """{official key: shape} of every tensor the encoder needs."""
    shapes = {}
    for key, value in swin.state_dict().items():
        name = _official_name(key)
        shape = tuple(value.shape)
        if name.rsplit('.', 2)[-2] == 'qkv':
            shape = (3 * shape[0],) + shape[1:]
        shapes[name] = shape
    return shapes


def load_official(swin: nn.Module, state: dict, source: str, ignored_prefixes: tuple,
                  ignored_suffixes: tuple = ('.attn_mask',)) -> None:
    """Loads official HTS-AT tensors (prefix already stripped) into `swin`, strictly in the official names: every
    tensor the encoder needs must be present with its shape; besides those, only names under `ignored_prefixes` or
    ending in `ignored_suffixes` may appear (they are dropped)."""
    expected = official_shapes(swin)
    kept = {k: v for k, v in state.items()
            if k in expected or not (k.startswith(ignored_prefixes) or k.endswith(ignored_suffixes))}
    missing = sorted(set(expected) - set(kept))
    unexpected = sorted(set(kept) - set(expected))
    shapes = [f'{k}: file {tuple(kept[k].shape)} vs model {expected[k]}'
              for k in sorted(set(expected) & set(kept)) if tuple(kept[k].shape) != expected[k]]
    if missing or unexpected or shapes:
        raise EvarError(f'Weight file {source} does not match the architecture. Missing: {missing[:8]}; '
                        f'unexpected: {unexpected[:8]}; shape mismatches: {shapes[:8]}.')
    converted = {}
    for key in swin.state_dict():
        name = _official_name(key)
        value = kept[name]
        if name.rsplit('.', 2)[-2] == 'qkv':
            value = value.chunk(3, dim=0)[_QKV.index(key.split('.')[-2])]
        converted[key] = value
    load_strict(swin, converted, source)


def to_official_state(swin: nn.Module) -> dict:
    """The encoder's tensors under the official names (query/key/value fused back into qkv): the inverse of
    `load_official`, for writing test checkpoints."""
    state, fused = {}, {}
    for key, value in swin.state_dict().items():
        name = _official_name(key)
        if name.rsplit('.', 2)[-2] == 'qkv':
            fused.setdefault(name, {})[key.split('.')[-2]] = value
        else:
            state[name] = value.clone()
    for name, parts in fused.items():
        state[name] = torch.cat([parts[q] for q in _QKV], 0)
    return state


def swin_tokens(swin: nn.Module, mels: torch.Tensor) -> torch.Tensor:
    """mels [N, T, n_mels] (T <= 1024; shorter is stretched by the encoder) -> time tokens [N, 32, D], each the
    mean over the final feature map's frequency tokens; their mean is the official `latent_output`."""
    out = swin(input_features=mels.unsqueeze(1))
    return out.last_hidden_state.mean(2).transpose(1, 2)  # [N, D, F', T'] -> [N, T', D]


def run_in_groups(forward, pieces: list, chunk_batch: int) -> list:
    """forward(stacked pieces)[k] for each piece (a wave [N_i] or a log-mel [T_i, n_mels]); pieces of equal length
    share forward passes (the encoder's stretch to 1024 frames is per length), and a piece's result never depends on
    the others."""
    out = [None] * len(pieces)
    by_length = {}
    for i, piece in enumerate(pieces):
        by_length.setdefault(piece.shape[0], []).append(i)
    for indices in by_length.values():
        for start in range(0, len(indices), chunk_batch):
            part = indices[start:start + chunk_batch]
            for i, result in zip(part, forward(torch.stack([pieces[i] for i in part]))):
                out[i] = result
    return out


def strip_prefix(state: dict, prefix: str) -> dict:
    """The entries under `prefix` with it removed, when any key has it (others dropped); else `state` unchanged."""
    if any(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def frames_from_pieces(tokens: list, counts: list) -> Frames:
    """Per-clip concatenation of consecutive pieces' token frames, padded into [B, T, D] with a mask."""
    clips, start = [], 0
    for n in counts:
        clips.append(torch.cat(tokens[start:start + n], 0))
        start += n
    longest = max(c.shape[0] for c in clips)
    x = clips[0].new_zeros(len(clips), longest, clips[0].shape[-1])
    for i, c in enumerate(clips):
        x[i, :c.shape[0]] = c
    lengths = torch.tensor([c.shape[0] for c in clips], device=x.device)
    return Frames(x, lengths_to_mask(lengths, longest))


# ----------------------------------------------------------------------------------------------------------------
# The AR.

@dataclass(frozen=True)
class SwinArch:
    """HTS-AT's Swin encoder sizes (official config.py: htsat_spec_size, htsat_patch_size, htsat_stride, htsat_dim,
    htsat_depth, htsat_num_head, htsat_window_size); OPERA-CT uses the same."""
    spec_size: int = 256
    patch_size: int = 4
    patch_stride: int = 4
    embed_dim: int = 96
    depths: tuple = (2, 2, 6, 2)
    num_heads: tuple = (4, 8, 16, 32)
    swin_window: int = 8


@dataclass(frozen=True)
class HTSATParams(SwinArch):
    """YAML keys of `htsat`: SwinArch's encoder sizes (which must be the checkpoint's) and:

    Keys:
        weight_file: the official AudioSet checkpoint (a lightning file; 'sed_model.' prefixes are stripped).
        feature_d: not used (EVAR configs carry it; the width is embed_dim * 8).
        sample_rate: Hz of the input waves (32000, the training rate).
        n_fft, window_size, hop_size: FFT size, periodic Hann window and hop in samples (1024, 1024, 320: 10 ms).
        n_mels: Slaney mel bins (64); f_min, f_max: Hz, the mel filters' range (50-14000); the filters must equal
            the checkpoint's stored ones.
        window: 'hanning' or 'hann' (EVAR's key; nothing else is accepted).
        temporal_pooling_type: 'mean' (EVAR's: the mean of latent_output over chunks), 'max' or 'mean_max'.
        clip_sec: seconds per chunk (10, HTS-AT's input length); longer clips are cut into chunks from the start.
        chunk_batch: chunks per forward pass (bounds memory; embeddings do not depend on it).
    """
    weight_file: Optional[str] = None
    feature_d: int = 768  # informational (EVAR configs carry it)
    sample_rate: int = 32000
    n_fft: int = 1024
    window_size: int = 1024
    hop_size: int = 320
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 14000.0
    window: str = 'hanning'  # EVAR's key; HTS-AT uses a periodic Hann window
    temporal_pooling_type: str = 'mean'
    clip_sec: float = 10.0  # HTS-AT's input length: longer clips are cut into chunks of this many seconds
    chunk_batch: int = 16  # chunks per forward pass (memory bound; embeddings do not depend on it)


# Official tensors the embedding does not use: torchlibrosa's front-end constants and the AudioSet classifier.
HTSAT_IGNORED = ('spectrogram_extractor.', 'logmel_extractor.', 'tscam_conv.', 'head.')


class HTSAT(AudioRepr):
    """HTS-AT (Chen et al., ICASSP 2022; RetroCirce/HTS-Audio-Transformer), AudioSet checkpoint on transformers'
    ClapAudioModel: waves [B, N] float32 at 32 kHz -> Frames [B, T, 768], 32 time tokens per 10 s chunk.

    Raises:
        EvarError: a window other than Hann, a spec_size that does not fit n_mels and clip_sec, a missing or
            mismatched weight file, or mel filters differing from the checkpoint's (at construction).
    """
    Params = HTSATParams
    augment_point = 'spectrogram'  # fine-tuning's augmentations act on the log-mel at `encode`'s start

    def __init__(self, params: HTSATParams):
        super().__init__(params)
        p = params
        if p.window not in ('hanning', 'hann'):
            raise EvarError(f'HTS-AT: window {p.window!r} is not supported; the model was trained with a Hann window.')
        if p.spec_size % p.n_mels or p.spec_size * (p.spec_size // p.n_mels) < self._chunk_frames(p):
            raise EvarError(f'HTS-AT: spec_size {p.spec_size} does not fit {p.n_mels} mels and {p.clip_sec} s chunks.')
        self.swin = build_swin(p.spec_size, p.n_mels, p.patch_size, p.patch_stride, p.embed_dim, p.depths,
                               p.num_heads, p.swin_window).eval()
        self.register_buffer('mel_fb', slaney_mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.f_min, p.f_max),
                             persistent=False)
        state = strip_prefix(load_checkpoint(p.weight_file, 'HTS-AT', WEIGHTS_URL), 'sed_model.')
        self._check_front_end(state, p.weight_file)
        load_official(self.swin, state, p.weight_file, HTSAT_IGNORED)
        self.clip_samples = int(round(p.clip_sec * p.sample_rate))
        self.min_samples = p.n_fft // 2 + 1  # reflect padding needs more samples than n_fft / 2
        self.image_frames = p.spec_size * (p.spec_size // p.n_mels)  # 1024: the Swin image holds this many frames
        self.tokens_per_chunk = p.spec_size // p.patch_stride // 2 ** (len(p.depths) - 1) * (p.spec_size // p.n_mels)

    def patch_embedding(self) -> nn.Module:
        """The Swin transformer's patch embedding (a strided convolution over the log-mel image)."""
        return self.swin.audio_encoder.patch_embed

    @property
    def frame_hop_sec(self) -> float:
        """`clip_sec` / time tokens per chunk: exact for full chunks (32 tokens per 10 s); a shorter last chunk is
        tiled and stretched, so its tokens are closer together."""
        return self.params.clip_sec / self.tokens_per_chunk

    @property
    def embedding_dim(self) -> int:
        """The Swin's final width: embed_dim doubled at each of the stages after the first."""
        return self.params.embed_dim * 2 ** (len(self.params.depths) - 1)

    @staticmethod
    def _chunk_frames(p) -> int:
        return int(round(p.clip_sec * p.sample_rate)) // p.hop_size + 1

    def _check_front_end(self, state: dict, source) -> None:
        """The file's torchlibrosa mel filters, when present, must be the ones computed here (same settings)."""
        stored = state.get('logmel_extractor.melW')
        if stored is not None and (tuple(stored.shape) != tuple(self.mel_fb.shape)
                                   or float((stored.float() - self.mel_fb).abs().max()) > 1e-5):
            raise EvarError(f'HTS-AT: the mel filters in {source} differ from the configured front end '
                            f'(sample_rate, n_fft, n_mels, f_min, f_max); use the official settings.')

    def _chunks(self, wave: torch.Tensor) -> list:
        pieces = list(torch.split(wave, self.clip_samples))
        if len(pieces) > 1 and pieces[-1].shape[0] < self.min_samples:
            pieces = pieces[:-1]  # a tail too short for the STFT's reflect padding (<= n_fft / 2 samples)
        if pieces[0].shape[0] < self.min_samples:
            pieces[0] = pieces[0].repeat(-(-self.min_samples // pieces[0].shape[0]))
        return pieces

    def features(self, wav: torch.Tensor, lengths: torch.Tensor):
        """Log-mel [B, n_mels, T] of each clip's 10 s chunks, computed chunk by chunk and concatenated in time
        (a full chunk has 1001 frames, so `encode` can split them again)."""
        p = self.params
        chunks, per_clip = [], []
        for i, n in enumerate(lengths.tolist()):
            pieces = self._chunks(wav[i, :int(n)])
            chunks += pieces
            per_clip.append(len(pieces))
        mels = run_in_groups(self._log_mel, chunks, p.chunk_batch)
        frames = frames_from_pieces(mels, per_clip)  # [B, T, n_mels]
        return frames.embeddings.transpose(1, 2), frames.mask.sum(1)

    def _log_mel(self, waves: torch.Tensor) -> torch.Tensor:
        p = self.params
        power = power_mel(waves, p.window_size, self.mel_fb, p.n_fft, p.hop_size, 'reflect')
        return 10.0 * torch.log10(power.clamp(min=1e-10))

    def encode(self, feats: torch.Tensor, feat_lengths: torch.Tensor) -> Frames:
        """Frames of `features`' log-mel [B, n_mels, T] with `feat_lengths` [B] frames: each clip split again into
        its chunks (1001 frames each at the defaults), each chunk tiled as the official infer_mode and run alone;
        embeddings [B, 32 x chunks, 768], all tokens of a clip's chunks valid."""
        feats = self.augment_input(feats)  # dB log-mel: the network's own BatchNorm standardises it
        chunk_frames = self._chunk_frames(self.params)
        pieces, counts = [], []
        for i, n in enumerate(feat_lengths.tolist()):
            clip = feats[i, :, :int(n)].T  # [T, n_mels]
            parts = list(torch.split(clip, chunk_frames))
            # Official infer_mode: tile a short chunk as many whole times as fit in the Swin image; the encoder
            # then stretches it to 1024 frames (bicubic).
            pieces += [part.repeat(max(1, self.image_frames // part.shape[0]), 1) for part in parts]
            counts.append(len(parts))
        tokens = run_in_groups(partial(swin_tokens, self.swin), pieces, self.params.chunk_batch)
        return frames_from_pieces(tokens, counts)
