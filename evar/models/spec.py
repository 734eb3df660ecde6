"""Spectrogram baselines: the log-mel / log-linear spectrogram frames themselves, pooled over time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..frontend import Spectrogram
from .base import AudioRepr, Frames, lengths_to_mask


@dataclass(frozen=True)
class SpecParams:
    """YAML keys of `melspec` / `linspec`.

    Keys:
        sample_rate: Hz of the input waves.
        n_fft: FFT size in samples.
        window_size: periodic Hann window length in samples (at most n_fft).
        hop_size: samples between frames (160 at 16 kHz: 10 ms).
        n_mels: HTK mel filters (unnormalised); `melspec` only, `linspec` keeps the n_fft // 2 + 1 rFFT bins.
        f_min, f_max: Hz, the mel filters' range.
        temporal_pooling_type: 'mean', 'max' or 'mean_max' (see `AudioRepr.pooling`).
        feature_d: not used (EVAR configs carry it).
    """
    sample_rate: int = 16000
    n_fft: int = 1024
    window_size: int = 1024
    hop_size: int = 160
    n_mels: int = 64
    f_min: float = 60.0
    f_max: float = 7800.0
    temporal_pooling_type: str = 'mean_max'
    feature_d: Optional[int] = None  # informational (EVAR configs carry it)


class MelSpec(AudioRepr):
    """Log-mel spectrogram frames: D = n_mels."""
    Params = SpecParams
    mel = True

    def __init__(self, params: SpecParams):
        super().__init__(params)
        p = params
        self.spec = Spectrogram(p.sample_rate, p.n_fft, p.window_size, p.hop_size, n_mels=p.n_mels if self.mel else 0,
                                f_min=p.f_min, f_max=p.f_max)

    @property
    def frame_hop_sec(self) -> float:
        """One frame per spectrogram hop."""
        return self.params.hop_size / self.params.sample_rate

    @property
    def embedding_dim(self) -> int:
        """D = the spectrogram's F: n_mels (MelSpec) or n_fft // 2 + 1 (LinSpec)."""
        return self.params.n_mels if self.mel else self.params.n_fft // 2 + 1

    def features(self, wav, lengths):
        """Log spectrogram [B, F, T] (T = 1 + n // hop_size per clip) and its frame counts."""
        return self.spec(wav, lengths)

    def encode(self, feats, feat_lengths) -> Frames:
        """The spectrogram frames themselves: [B, T, F]."""
        return Frames(feats.transpose(1, 2), lengths_to_mask(feat_lengths, feats.shape[-1]))


class LinSpec(MelSpec):
    """Log-linear-frequency spectrogram frames: D = n_fft // 2 + 1."""
    mel = False
