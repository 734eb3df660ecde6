"""Spectrogram front ends in plain torch (no torchaudio), computed clip by clip so padding never changes a frame."""

from __future__ import annotations

import math

import torch
from torch import nn


def hz_to_mel_htk(f):
    return 2595.0 * math.log10(1.0 + f / 700.0) if isinstance(f, (int, float)) else 2595.0 * torch.log10(1.0 + f / 700.0)


def mel_to_hz_htk(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """Triangular HTK-scale filters over the rFFT bins, unnormalised: [n_freqs, n_mels]."""
    n_freqs = n_fft // 2 + 1
    bin_hz = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)
    edges_hz = mel_to_hz_htk(torch.linspace(hz_to_mel_htk(float(f_min)), hz_to_mel_htk(float(f_max)), n_mels + 2,
                                            dtype=torch.float64))
    lower, centre, upper = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]
    rising = (bin_hz[:, None] - lower[None]) / (centre - lower)[None]
    falling = (upper[None] - bin_hz[:, None]) / (upper - centre)[None]
    return torch.clamp(torch.minimum(rising, falling), min=0.0).to(torch.float32)


def hz_to_mel_slaney(hz: torch.Tensor) -> torch.Tensor:
    """Slaney's Auditory Toolbox mel scale (librosa's default, htk=False): linear to 1 kHz, logarithmic above."""
    linear = hz / (200.0 / 3)
    log = 15.0 + torch.log(hz.clamp(min=1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return torch.where(hz >= 1000.0, log, linear)


def mel_to_hz_slaney(mel: torch.Tensor) -> torch.Tensor:
    linear = mel * (200.0 / 3)
    log = 1000.0 * torch.exp((math.log(6.4) / 27.0) * (mel - 15.0))
    return torch.where(mel >= 15.0, log, linear)


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """Triangular filters on the Slaney scale, each scaled by 2 / bandwidth (area normalisation): librosa's
    `filters.mel` defaults (htk=False, norm='slaney'), which nnAudio, torchlibrosa and the HTS-AT / PANNs / BYOL-A v2
    releases use. [n_freqs, n_mels]."""
    bin_hz = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_range = hz_to_mel_slaney(torch.tensor([float(f_min), float(f_max)], dtype=torch.float64))
    edges_hz = mel_to_hz_slaney(torch.linspace(float(mel_range[0]), float(mel_range[1]), n_mels + 2,
                                               dtype=torch.float64))
    lower, centre, upper = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]
    rising = (bin_hz[:, None] - lower[None]) / (centre - lower)[None]
    falling = (upper[None] - bin_hz[:, None]) / (upper - centre)[None]
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return (weights * (2.0 / (upper - lower))[None]).to(torch.float32)


class Spectrogram(nn.Module):
    """log(|STFT|^power [@ mel filters] + eps): [B, N] waves with lengths -> [B, F, T] and valid frame counts.

    Centred frames with reflect padding and a periodic Hann window; a clip of L samples has 1 + L // hop frames.
    """

    def __init__(self, sample_rate: int, n_fft: int, win_length: int, hop_length: int, n_mels: int = 0,
                 f_min: float = 0.0, f_max: float = None, power: float = 2.0, log: bool = True):
        super().__init__()
        self.n_fft, self.win_length, self.hop_length, self.power, self.log = n_fft, win_length, hop_length, power, log
        self.register_buffer('window', torch.hann_window(win_length, periodic=True), persistent=False)
        fb = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max or sample_rate / 2) if n_mels else None
        self.register_buffer('mel_fb', fb, persistent=False)
        self.eps = torch.finfo(torch.float32).eps

    @property
    def n_bins(self) -> int:
        return self.mel_fb.shape[1] if self.mel_fb is not None else self.n_fft // 2 + 1

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return 1 + torch.div(lengths, self.hop_length, rounding_mode='floor')

    def _one(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.shape[-1] <= self.n_fft // 2:  # reflect padding needs more samples than half a window
            wav = nn.functional.pad(wav, (0, self.n_fft // 2 + 1 - wav.shape[-1]))
        spec = torch.stft(wav, self.n_fft, self.hop_length, self.win_length, self.window, center=True,
                          pad_mode='reflect', return_complex=True)
        if self.power == 2:  # |X|^2 without the square root; a sum over view_as_real's last axis was 6x slower
            spec = spec.real.square() + spec.imag.square()
        else:
            spec = spec.abs().pow(self.power)
        if self.mel_fb is not None:
            spec = torch.matmul(spec.transpose(-1, -2), self.mel_fb).transpose(-1, -2)
        return (spec + self.eps).log() if self.log else spec

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor):
        frames = self.frame_lengths(lengths)
        if bool((lengths == wav.shape[-1]).all()):
            return self._one(wav)[..., :int(frames.max())], frames
        out = wav.new_zeros(wav.shape[0], self.n_bins, int(frames.max()))
        for i, n in enumerate(lengths.tolist()):
            out[i, :, :int(frames[i])] = self._one(wav[i, :n])[..., :int(frames[i])]
        return out, frames
