"""COALA (Favory et al., 2020, "COALA: Co-aligned autoencoders for learning semantically enriched audio
representations"): the audio encoder of the dual autoencoder `dual_ae_c`, loading the official checkpoint strictly.

Architecture (from the paper and the official `AudioEncoder`): 5 x [Conv2d 4x4 stride 2 pad 1 (128 channels) ->
BatchNorm -> ReLU -> Dropout] take a 96 x 96 patch to 128 x 3 x 3, flattened channel-first to 1152-d; a bias-free
Linear(1152, 1152) maps that into the space aligned with the tag encoder. EVAR's embedding is the flattened conv
output (`output_layers: 0`); `1` gives the aligned projection.

Front end, as the release computes it at 22 kHz: the clip zero-padded to 10 s with uniform noise of amplitude 5e-4
added over the whole 10 s (clips longer than 10 s are used as they are, without noise), a magnitude STFT (n_fft 1024,
hop 512, periodic Hann, centred), 96 Slaney mel filters with area normalisation over 0-11 kHz (librosa's defaults),
log(x + eps); the log-mel is cut into non-overlapping chunks of 96 frames (2.23 s; the remainder is dropped) and each
chunk is min-max scaled with the release's `scaler_top_1000.pkl`. That scaler has one (scale, offset) pair per
column, and the release applies it to [mel, time] chunks, so it scales by time position within the chunk: kept as
it is. Each chunk is one output frame.

Differences from the release, both deliberate: the padding noise is drawn from a fixed seed (numpy RandomState(0))
so a clip always gives the same embedding (the release draws it from the unseeded global generator); and the STFT
pads the clip's edges by reflection as librosa 0.7.2, the version the release pins and trained with, did (librosa
>= 0.10, which EVAR runs today, pads with zeros: `stft_pad_mode: constant` gives that).

Checked against the official code (xavierfav/coala `models_t1000.AudioEncoder` and `utils.compute_spectrogram`
with librosa 0.11, the release's scaler, random weights with randomised BatchNorm statistics loaded strictly here)
on 6 real clips of 0.3 s to 25.8 s, the same padding noise on both sides: chunk embeddings within 1.6e-5 relative
(conv output) and 9.9e-6 (projection); log-mel within 3.6e-4 where the mel magnitude exceeds 1e-4, up to 6.9e-2 in
near-silent bins (~1e-8, float32 FFT rounding magnified by the log). Re-check with
`python benchmarks/parity_coala.py --coala <coala checkout> --audio <clips>` (its docstring has the exact command).
The real weights were not available here, so they were not run.

Padding never changes a clip's output: each clip's spectrogram and chunks are computed from its own samples only,
and every chunk is encoded on its own.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from ..errors import EvarError
from .base import (AudioRepr, Frames, lengths_to_mask, load_checkpoint, load_strict, require_file, select_layers,
                   selected_width)
from ..frontend import slaney_mel_filterbank

WEIGHTS_URL = 'https://github.com/xavierfav/coala/tree/master/saved_models/dual_ae_c'
SCALER_URL = 'https://github.com/xavierfav/coala/blob/master/scaler_top_1000.pkl'
CHUNK_FRAMES = 96
CHUNKS_PER_PASS = 64  # chunks encoded together, which bounds memory on long clips


@dataclass(frozen=True)
class COALAParams:
    """YAML keys of `coala` (defaults: the release's front end).

    Keys:
        weight_file: the audio encoder checkpoint (audio_encoder_epoch_200.pt of dual_ae_c; see WEIGHTS_URL).
        scaler_file: the release's scaler_top_1000.pkl (a pickled MinMaxScaler, read without sklearn).
        sample_rate: Hz of the input waves (22000, the release's rate).
        n_fft, hop_size: FFT size (= periodic Hann window) and hop in samples (1024, 512).
        n_mels: Slaney mel bins over 0 Hz to Nyquist (96, the encoder's input height).
        pad_sec: seconds; clips up to this long are zero-padded to it, with noise, as the release does.
        pad_noise: amplitude of the uniform [0, pad_noise) noise added to padded clips.
        stft_pad_mode: 'reflect' (librosa 0.7.2, the release) or 'constant' (librosa >= 0.10).
        output_layers: 0 the flattened conv output (1152-d, EVAR's embedding), 1 the aligned projection, a list,
            or 'all'.
        layer_average: with several output_layers, average them instead of concatenating.
        temporal_pooling_type: 'mean', 'max' or 'mean_max'.
        feature_d: not used (EVAR configs carry it).
    """
    weight_file: Optional[str] = None  # audio_encoder_epoch_200.pt
    scaler_file: Optional[str] = None  # scaler_top_1000.pkl (EVAR's re-pickled copy holds the same numbers)
    sample_rate: int = 22000
    n_fft: int = 1024
    hop_size: int = 512
    n_mels: int = 96
    pad_sec: float = 10.0  # clips up to this long are zero-padded to it, with noise, as the release does
    pad_noise: float = 5e-4  # amplitude of the uniform noise added to padded clips
    stft_pad_mode: str = 'reflect'  # 'reflect' (librosa 0.7.2, the release) or 'constant' (librosa >= 0.10)
    output_layers: Any = 0  # 0: flattened conv output (1152-d, EVAR's embedding), 1: the aligned projection
    layer_average: bool = False
    temporal_pooling_type: str = 'mean_max'
    feature_d: Optional[int] = None  # informational (EVAR configs carry it)


def conv_block(cin: int, cout: int) -> list:
    """[Conv2d 4x4 stride 2 pad 1, BatchNorm2d, ReLU, Dropout 0.25]: [N, cin, H, W] -> [N, cout, H // 2, W // 2]."""
    return [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.Dropout(0.25)]


class AudioEncoder(nn.Module):
    """The official AudioEncoder's layers and state-dict keys (audio_encoder.*, fc_audio.0.weight)."""

    def __init__(self, channels: int = 128, blocks: int = 5, d: int = 1152):
        super().__init__()
        layers = conv_block(1, channels)
        for _ in range(blocks - 1):
            layers += conv_block(channels, channels)
        self.audio_encoder = nn.Sequential(*layers, nn.Flatten())
        self.fc_audio = nn.Sequential(nn.Linear(d, d, bias=False), nn.Dropout(0.25))

    def forward(self, x: torch.Tensor) -> list:
        """x: [N, 1, 96 mel, 96 time] scaled chunks -> [flattened conv output, aligned projection], each [N, 1152]."""
        z = self.audio_encoder(x)
        return [z, self.fc_audio(z)]


class _ScalerState:
    """Stands in for sklearn's MinMaxScaler while unpickling: keeps its attributes, runs nothing."""

    def __setstate__(self, state):
        self.__dict__.update(state)


def _numpy_reconstructor(submodule: str, name: str):
    """numpy's array/scalar reconstructor from where this numpy keeps it (numpy 2 moved numpy.core to numpy._core)."""
    import importlib

    for where in (f'numpy._core.{submodule}', f'numpy.core.{submodule}'):
        try:
            return getattr(importlib.import_module(where), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f'numpy has no {name}')


class _ScalerUnpickler(pickle.Unpickler):
    """Reads a pickled MinMaxScaler without sklearn and without running any other pickled callable."""
    SCALERS = {('sklearn.preprocessing._data', 'MinMaxScaler'), ('sklearn.preprocessing.data', 'MinMaxScaler')}
    NUMPY = {('numpy', 'ndarray'): lambda: np.ndarray, ('numpy', 'dtype'): lambda: np.dtype}
    RECONSTRUCTORS = {('multiarray', '_reconstruct'), ('multiarray', 'scalar'), ('numeric', '_frombuffer')}

    def find_class(self, module, name):
        if (module, name) in self.SCALERS:
            return _ScalerState
        if (module, name) in self.NUMPY:
            return self.NUMPY[(module, name)]()
        package, _, submodule = module.rpartition('.')
        if package in ('numpy.core', 'numpy._core') and (submodule, name) in self.RECONSTRUCTORS:
            return _numpy_reconstructor(submodule, name)
        raise pickle.UnpicklingError(f'{module}.{name} is not allowed in a scaler file')


def load_scaler(path: Optional[str]) -> tuple:
    """(scale, offset) per column of the release's MinMaxScaler pickle: x * scale + offset."""
    path = require_file(path, 'COALA', SCALER_URL, key='scaler_file', what='scaler_top_1000.pkl',
                        folder='external/coala/')
    try:
        with open(path, 'rb') as f:
            state = _ScalerUnpickler(f).load()
        scale, offset = np.asarray(state.scale_, np.float32), np.asarray(state.min_, np.float32)
    except Exception as e:
        raise EvarError(f'COALA: cannot read scaler file {path} (expected the release\'s pickled MinMaxScaler with '
                        f'scale_ and min_): {e}') from e
    if scale.shape != (CHUNK_FRAMES,) or offset.shape != (CHUNK_FRAMES,):
        raise EvarError(f'COALA: scaler file {path} has {scale.shape} scales, expected ({CHUNK_FRAMES},).')
    return torch.from_numpy(scale.copy()), torch.from_numpy(offset.copy())


class COALA(AudioRepr):
    """COALA (Favory et al., 2020; xavierfav/coala dual_ae_c): waves [B, N] float32 at 22 kHz -> Frames [B, T, 1152],
    one per 96-frame chunk of log-mel (96 x 512 samples, 2.23 s).

    Raises:
        EvarError: stft_pad_mode not reflect / constant, or a missing or unreadable weight or scaler file (at
            construction).
    """
    Params = COALAParams
    augment_point = 'spectrogram'  # fine-tuning's augmentations act on the log-mel at `encode`'s start

    def __init__(self, params: COALAParams):
        super().__init__(params)
        p = params
        if p.stft_pad_mode not in ('reflect', 'constant'):
            raise EvarError(f'COALA: stft_pad_mode must be reflect or constant, got {p.stft_pad_mode!r}.')
        state = load_checkpoint(p.weight_file, 'COALA', WEIGHTS_URL)
        self.body = AudioEncoder()
        load_strict(self.body, state, p.weight_file)
        scale, offset = load_scaler(p.scaler_file)
        self.register_buffer('scale', scale, persistent=False)
        self.register_buffer('offset', offset, persistent=False)
        self.register_buffer('window', torch.hann_window(p.n_fft, periodic=True), persistent=False)
        self.register_buffer('mel_fb', slaney_mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, 0.0, p.sample_rate / 2),
                             persistent=False)
        # At least one chunk's worth of samples, so every clip gives a frame.
        self.pad_samples = max(int(round(p.pad_sec * p.sample_rate)), (CHUNK_FRAMES - 1) * p.hop_size)
        noise = np.random.RandomState(0).rand(self.pad_samples).astype(np.float32)
        self.register_buffer('noise', torch.from_numpy(noise) * np.float32(p.pad_noise), persistent=False)

    @property
    def frame_hop_sec(self) -> float:
        """One frame per chunk of 96 mel frames."""
        return CHUNK_FRAMES * self.params.hop_size / self.params.sample_rate

    @property
    def embedding_dim(self) -> int:
        """1152 (conv output or projection), 2304 for both concatenated."""
        d = self.body.fc_audio[0].out_features  # 1152, as the flattened conv output
        return selected_width([d, d], self.params.output_layers, self.params.layer_average)

    @classmethod
    def weight_paths(cls, params) -> list:
        """The weight file and the scaler file (both decide the outputs)."""
        return [Path(f).expanduser() for f in (params.weight_file, params.scaler_file) if f]

    def padded(self, wav: torch.Tensor) -> torch.Tensor:
        """One clip as the release feeds it: up to `pad_sec`, zero-padded to it plus the fixed noise."""
        if wav.shape[-1] > self.pad_samples:
            return wav
        return nn.functional.pad(wav, (0, self.pad_samples - wav.shape[-1])) + self.noise

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """One clip [N] -> [n_mels, 1 + N // hop_size]: natural log of Slaney mel magnitude (not power) + float32
        eps, from a centred STFT padded by stft_pad_mode."""
        p = self.params
        spec = torch.stft(wav, p.n_fft, p.hop_size, p.n_fft, self.window, center=True, pad_mode=p.stft_pad_mode,
                          return_complex=True).abs()
        return (self.mel_fb.T @ spec + torch.finfo(torch.float32).eps).log()  # [mel, time]

    def features(self, wav, lengths):
        """[B, 96 mel, chunks x 96] scaled log-mel chunks side by side (zero past each clip's chunks)."""
        specs = []
        for i, n in enumerate(lengths.tolist()):
            spec = self.log_mel(self.padded(wav[i, :n]))
            chunks = spec.shape[-1] // CHUNK_FRAMES
            spec = spec[:, :chunks * CHUNK_FRAMES].reshape(spec.shape[0], chunks, CHUNK_FRAMES)
            specs.append((spec * self.scale + self.offset).reshape(spec.shape[0], -1))
        frames = torch.tensor([s.shape[-1] for s in specs], device=wav.device)
        out = wav.new_zeros(len(specs), self.params.n_mels, int(frames.max()))
        for i, s in enumerate(specs):
            out[i, :, :s.shape[-1]] = s
        return out, frames

    def encode(self, feats, feat_lengths) -> Frames:
        """Frames of scaled chunks [B, 96, C x 96] with `feat_lengths` [B] (multiples of 96): embeddings [B, C, D],
        each chunk encoded alone, zero and masked False past each clip's chunks.

        Raises:
            EvarError: output_layers out of range.
        """
        feats = self.augment_input(feats)  # already scaled by the official scaler in `features`
        b, f, _ = feats.shape
        n_chunks = torch.div(feat_lengths, CHUNK_FRAMES, rounding_mode='floor')
        mask = lengths_to_mask(n_chunks, int(n_chunks.max()))
        chunks = feats[:, :, :mask.shape[1] * CHUNK_FRAMES].reshape(b, f, mask.shape[1], CHUNK_FRAMES)
        chunks = chunks.permute(0, 2, 1, 3)[mask].unsqueeze(1)  # valid chunks only: [N, 1, mel, time]
        outputs = [self.body(chunks[i:i + CHUNKS_PER_PASS]) for i in range(0, chunks.shape[0], CHUNKS_PER_PASS)]
        layers = [torch.cat(parts) for parts in zip(*outputs)]
        x = select_layers(layers, self.params.output_layers, self.params.layer_average)
        out = x.new_zeros(b, mask.shape[1], x.shape[-1])
        out[mask] = x
        return Frames(out, mask)

