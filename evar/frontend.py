"""Spectrogram front ends in plain torch (no torchaudio), computed clip by clip so padding never changes a frame:
HTK and Slaney mel filters, a centred STFT (`Spectrogram`) and Kaldi's filterbank (`KaldiFbank`)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .models.base import lengths_to_mask


def hz_to_mel_htk(f):
    """HTK mel of `f` Hz, 2595 log10(1 + f / 700): a float for a Python number, else a tensor of the same shape."""
    return 2595.0 * math.log10(1.0 + f / 700.0) if isinstance(f, (int, float)) else 2595.0 * torch.log10(1.0 + f / 700.0)


def mel_to_hz_htk(m):
    """Hz of HTK mel `m` (a number or a tensor), the inverse of `hz_to_mel_htk`: 700 (10^(m / 2595) - 1)."""
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Triangular HTK-scale filters over the rFFT bins, unnormalised: [n_freqs, n_mels] float32.

    dtype float64 (default): the triangles computed in double and rounded once. float32: torchaudio's
    `melscale_fbanks(norm=None, mel_scale='htk')` bit for bit (every step in float32, the top bin at the integer
    part of Nyquist); the two differ by up to 5e-6 near the triangles' feet, which moves quiet bands of a log-mel
    by about 2e-4 dB, so front ends that must equal torchaudio's (CED, Dasheng) ask for float32."""
    nyquist = sample_rate // 2 if dtype == torch.float32 else sample_rate / 2
    bin_hz = torch.linspace(0, nyquist, n_fft // 2 + 1, dtype=dtype)
    edges_hz = mel_to_hz_htk(torch.linspace(hz_to_mel_htk(float(f_min)), hz_to_mel_htk(float(f_max)), n_mels + 2,
                                            dtype=dtype))
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
    """Hz of Slaney mels (a tensor, elementwise), the inverse of `hz_to_mel_slaney`: linear below 15 mel (1 kHz)."""
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
        """F of the output: n_mels with mel filters, else the n_fft // 2 + 1 rFFT bins."""
        return self.mel_fb.shape[1] if self.mel_fb is not None else self.n_fft // 2 + 1

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """[B] int64 frames of clips of `lengths` [B] samples: 1 + length // hop_length (centred frames)."""
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
        """(spec, frames) of waves [B, N] with `lengths` [B] valid samples: spec [B, F, T] (F = `n_bins`, T the most
        frames of any clip; log of power + float32 eps when `log`), each clip framed on its own samples only and zero
        past its frame count; frames [B] int64 from `frame_lengths`."""
        frames = self.frame_lengths(lengths)
        if bool((lengths == wav.shape[-1]).all()):
            return self._one(wav)[..., :int(frames.max())], frames
        out = wav.new_zeros(wav.shape[0], self.n_bins, int(frames.max()))
        for i, n in enumerate(lengths.tolist()):
            out[i, :, :int(frames[i])] = self._one(wav[i, :n])[..., :int(frames[i])]
        return out, frames


def kaldi_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, low_hz: float, high_hz: float) -> torch.Tensor:
    """Kaldi's triangular mel filters (mel = 1127 ln(1 + f / 700), equal spacing on that scale, no area
    normalisation) over the rFFT bins, evaluated at the bins' mels, the Nyquist bin weighted 0: [n_fft // 2 + 1,
    n_mels]. In float32 in Kaldi's and torchaudio's order (edges from double scalars, slopes in float): float64
    slopes differ by up to 1.4e-5, which moves a faint bin's log energy by up to 3e-4."""
    low, high = (1127.0 * math.log(1.0 + hz / 700.0) for hz in (low_hz, high_hz))
    delta = (high - low) / (n_mels + 1)
    index = torch.arange(n_mels, dtype=torch.float32)[:, None]
    left, centre, right = low + index * delta, low + (index + 1.0) * delta, low + (index + 2.0) * delta
    bin_hz = sample_rate / n_fft * torch.arange(n_fft // 2, dtype=torch.float32)
    bin_mel = (1127.0 * (1.0 + bin_hz / 700.0).log())[None]
    rising = (bin_mel - left) / (centre - left)
    falling = (right - bin_mel) / (right - centre)
    banks = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return nn.functional.pad(banks, (0, 1)).T.contiguous()


# Kaldi's window functions (torchaudio.compliance.kaldi's names), float32 as torchaudio computes them.
KALDI_WINDOWS = {
    'povey': lambda length: torch.hann_window(length, periodic=False).pow(0.85),  # Kaldi's default
    'hanning': lambda length: torch.hann_window(length, periodic=False),
}


class KaldiFbank(nn.Module):
    """torchaudio.compliance.kaldi.fbank (no dither, no energy) in plain torch, clip by clip: [B, N] waves with
    lengths -> [B, n_mels, T] log mel energies, zero past each clip's frame count, and the frame counts.

    Frames lie wholly inside the clip (snip_edges: 1 + (L - win) // hop of them); each has its DC offset removed,
    pre-emphasis (the first sample its own predecessor), the window, an rFFT of the window length rounded up to a
    power of two, power, the mel filters and a log floored at float32 eps. Samples past a clip's length are zeroed
    first, and a clip too short for `min_frames` frames is zero-extended to give that many (Kaldi would give none
    for a clip shorter than one window; a patch model needs a patch's worth), so a clip's frames never depend on
    its batch.

    remove_clip_mean: subtract the mean of the clip's own samples first (EAT's front end does, before calling Kaldi).
    """

    def __init__(self, sample_rate: int = 16000, n_mels: int = 128, frame_ms: float = 25.0, shift_ms: float = 10.0,
                 low_hz: float = 20.0, window: str = 'povey', preemphasis: float = 0.97, remove_clip_mean: bool = False,
                 min_frames: int = 1):
        super().__init__()
        self.win_length = int(sample_rate * frame_ms / 1000)
        self.hop_length = int(sample_rate * shift_ms / 1000)
        self.n_fft = 1 << (self.win_length - 1).bit_length()  # Kaldi rounds the window up to a power of two
        self.preemphasis, self.remove_clip_mean = preemphasis, remove_clip_mean
        self.min_samples = self.win_length + (max(min_frames, 1) - 1) * self.hop_length
        self.register_buffer('window', KALDI_WINDOWS[window](self.win_length), persistent=False)
        self.register_buffer('mel_fb', kaldi_mel_filterbank(sample_rate, self.n_fft, n_mels, low_hz, sample_rate / 2),
                             persistent=False)
        self.eps = torch.finfo(torch.float32).eps

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """[B] int64 frames of clips of `lengths` [B] samples: 1 + (length - win_length) // hop_length, a clip
        shorter than `min_samples` counting as that long (at least `min_frames`)."""
        return 1 + torch.div(lengths.clamp(min=self.min_samples) - self.win_length, self.hop_length,
                             rounding_mode='floor')

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, N] -> [B, T, n_mels]: every frame that lies inside the wave."""
        frames = wav.unfold(-1, self.win_length, self.hop_length)  # [B, T, win]
        frames = frames - frames.mean(-1, keepdim=True)  # DC offset per frame
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # Kaldi repeats the first sample
        frames = (frames - self.preemphasis * previous) * self.window
        spec = torch.fft.rfft(frames, n=self.n_fft)
        power = spec.abs().pow(2)  # |X| squared, as torchaudio computes it: bit-identical to kaldi.fbank
        return torch.matmul(power, self.mel_fb).clamp(min=self.eps).log()

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor):
        """(fbank, frames) of waves [B, N] (float, at `sample_rate` Hz) with `lengths` [B] valid samples: fbank
        [B, n_mels, T] natural-log mel energies (T the most frames of any clip), zero past each clip's count; frames
        [B] int64 from `frame_lengths`."""
        lengths = lengths.to(wav.device)
        valid = lengths_to_mask(lengths, wav.shape[-1]).to(wav.dtype)
        if self.remove_clip_mean:
            wav = wav - (wav * valid).sum(-1, keepdim=True) / lengths.clamp(min=1)[:, None].to(wav.dtype)
        wav = wav * valid
        if wav.shape[-1] < self.min_samples:
            wav = nn.functional.pad(wav, (0, self.min_samples - wav.shape[-1]))
        counts = self.frame_lengths(lengths)
        fbank = self.log_mel(wav)
        fbank = fbank * lengths_to_mask(counts, fbank.shape[1]).unsqueeze(-1).to(fbank.dtype)
        return fbank.transpose(1, 2)[..., :int(counts.max())], counts
