"""Spectrogram baselines: the log-mel / log-linear spectrogram frames themselves, pooled over time.

EVAR's baselines (`ar_spec.AR_MelSpec`, `AR_LinSpec` of nttcslab/eval-audio-repr) compute their spectrograms with
nnAudio: `MelSpectrogram` with its defaults (Slaney-scale filters of unit area, power 2) and `STFT` with
output_format 'Magnitude' (|X|, power 1), then log(x + float32 eps), and standardise the result with one mean and
one std of the task's training split. `melspec` and `linspec` do all three by default (`mel_scale: slaney`;
`power` 2 and 1; statistics of the training split's valid frames, as BYOL-A's, or fixed `norm_stats: [mean,
std]`), so they give EVAR's embeddings (benchmarks/parity_evar.py, tests/test_spec_evar.py). `norm_stats: [0.0,
1.0]` leaves the spectrogram unstandardised: a clip's `mean_max` embedding is then EVAR's times std plus 2 mean
(`mean` or `max` pooling: plus mean), one affine map for every clip of a task. `mel_scale: htk` and `power: 2`
give the HTK-filter log-mel and log power spectrum these baselines had before. Measured on spcv2_12 (../shared,
seed 42, 271 test clips): logreg 0.4576 and probe 0.4465 standardised or not alike (both heads standardise each
dimension with training statistics; kNN's cosine does not), and 0.4465 / 0.3542 with `mel_scale: htk`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..errors import EvarError
from ..frontend import Spectrogram, slaney_mel_filterbank
from .base import AudioRepr, Frames, lengths_to_mask


@dataclass(frozen=True)
class SpecParams:
    """Front-end keys of the spectrogram baselines (see BaselineSpecParams) and of the models built on them.

    Keys:
        sample_rate: Hz of the input waves.
        n_fft: FFT size in samples.
        window_size: periodic Hann window length in samples (at most n_fft).
        hop_size: samples between frames (160 at 16 kHz: 10 ms).
        n_mels: mel filters; `melspec` only, `linspec` keeps the n_fft // 2 + 1 rFFT bins.
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


MEL_SCALES = ('htk', 'slaney')  # BaselineSpecParams.mel_scale


@dataclass(frozen=True)
class BaselineSpecParams(SpecParams):
    """YAML keys of `melspec` / `linspec`: SpecParams' and

    Keys:
        mel_scale: 'slaney' (default): Slaney-scale filters scaled to unit area (librosa's and nnAudio's defaults),
            as EVAR's melspec; 'htk': HTK-scale filters, unnormalised (torchaudio's MelSpectrogram defaults). Any other
            value is an EvarError. `melspec` only.
        power: exponent of |STFT| before the filters and the log: None (default): EVAR's, 2 (power) for `melspec`
            and 1 (magnitude: nnAudio's STFT 'Magnitude') for `linspec`. Must be positive.
        norm_stats: [mean, std] in the log spectrogram's units: every frame becomes (x - mean) / std; None
            (default): the mean and std of the task's training split, as EVAR standardises its baselines;
            [0.0, 1.0]: not standardised.
    """
    mel_scale: str = 'slaney'
    power: Optional[float] = None  # EVAR's: 2 for melspec, 1 for linspec
    norm_stats: Optional[list] = None


class MelSpec(AudioRepr):
    """Log-mel spectrogram frames: D = n_mels. Subclasses whose params lack `power` (BYOL-A) get `default_power`,
    and those without `mel_scale`, HTK filters."""
    Params = BaselineSpecParams
    mel = True
    default_power = 2.0  # EVAR's melspec: nnAudio's MelSpectrogram of the power spectrum
    needs_norm_stats = True  # EVAR standardises with the training split's statistics (unless norm_stats is set)
    # 2: EVAR's front ends by default (Slaney filters; linspec's magnitude); 3: training-split standardisation
    cache_version = 3

    def __init__(self, params: SpecParams):
        """Builds the front end.

        Raises:
            EvarError: `mel_scale` not in MEL_SCALES, or `power` not positive, or `norm_stats` not [mean, std > 0].
        """
        super().__init__(params)
        p = params
        power = getattr(p, 'power', None)
        power = self.default_power if power is None else power
        if not power > 0:
            raise EvarError(f'{type(self).__name__}: power must be positive (2: power, 1: magnitude); got {power!r}.')
        mel_scale = getattr(p, 'mel_scale', 'htk')
        if mel_scale not in MEL_SCALES:
            raise EvarError(f'{type(self).__name__}: mel_scale {mel_scale!r} is not one of {MEL_SCALES}.')
        stats = getattr(p, 'norm_stats', None)
        if stats is not None and (len(stats) != 2 or not float(stats[1]) > 0):
            raise EvarError(f'{type(self).__name__}: norm_stats must be [mean, std] with std > 0; got {stats!r}.')
        self.spec = Spectrogram(p.sample_rate, p.n_fft, p.window_size, p.hop_size, n_mels=p.n_mels if self.mel else 0,
                                f_min=p.f_min, f_max=p.f_max, power=power)
        if self.mel and mel_scale == 'slaney':  # same STFT: only the filters change
            self.spec.mel_fb = slaney_mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.f_min, p.f_max)
        self.reset_norm_stats()

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
        """The spectrogram frames themselves, standardised: [B, T, F].

        Raises:
            EvarError: the statistics are not set (neither `norm_stats` nor the training split's yet).
        """
        feats = self.normalize(feats, feat_lengths)
        return Frames(feats.transpose(1, 2), lengths_to_mask(feat_lengths, feats.shape[-1]))


class LinSpec(MelSpec):
    """Log-linear-frequency spectrogram frames: D = n_fft // 2 + 1."""
    mel = False
    default_power = 1.0  # EVAR's linspec: nnAudio's STFT 'Magnitude'
