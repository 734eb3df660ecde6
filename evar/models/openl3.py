"""OpenL3 (Cramer, Wu, Salamon, Bello, ICASSP 2019): the L3-Net audio sub-network trained on AudioSet (music or
environmental videos), loading torchopenl3's PyTorch conversion of the official Keras weights strictly.

Weights: `torchopenl3_{mel256,mel128,linear}_{music,env}_{6144,512}.pth.tar` from
github.com/torchopenl3/torchopenl3-models (what EVAR's AR_OpenL3 loads through torchopenl3; the official Keras
.h5 files are downloaded by the `openl3` package's setup.py from GitHub, not shipped on PyPI). The file holds the
front end's fixed tensors too, loaded strictly with the rest: `speclayer.dft_{real,imag}_kernels` [F, 1, n_dft]
(periodic-Hann-windowed DFT rows) and, for mel inputs, `speclayer.mel_basis` [n_mels, F]. The input
representation is read from them (mel_basis rows; none = linear); channel widths from the conv shapes.

Framing (official `_preprocess_audio_batch`, hop `hop_sec`, default 0.1 s): 48 kHz audio, 0.5 s of zeros before
the clip (`center`), 1 s windows every hop; the clip is zero-padded at the end to complete the last window, so a clip
of n samples has 1 + ceil(max(0, n + 24000 - 48000) / hop) windows (the last window starts before the clip's end
minus 0.5 s). Per window, as kapre 0.1.4 (the Keras front end the weights were trained with): mel inputs are
zero-padded 'same'-style (982 samples each side for 1 s), STFT by the stored kernels with hop 242 (199 frames),
power -> mel basis -> square root (magnitude mel); linear inputs: no padding, 197 frames, magnitude; then
10 log10(max(x, 1e-10)), minus the window's maximum, floored at -80 dB.
Network: BN -> 4 x [3x3 conv -> BN -> ReLU -> 3x3 conv -> BN -> ReLU] (64, 128, 256, 512 channels; 2x2 max pool
after the first three) -> 3x3 `audio_embedding_layer` conv (512) -> max pool to 4 x 3 (6144-d) or 1 x 1 (512-d),
flattened (frequency, time, channel) as Keras; every BN has eps 1e-3. One embedding per window: frames every hop.

Padding never changes a clip's windows: samples past each clip's end are zeroed, which is what the official
end padding puts there, and only each clip's own windows go through the network. Frames are `hop_sec` apart
(`frame_hop_sec`), and a clip of n seconds has (n - 0.5) / hop_sec + 1 of them: `frame_window_sec` = 0.5 tells
evar.check so.

The openl3 package's current release (0.4, kapre 0.3) computes a different front end (power mel, Slaney filters)
for its v0_4_0 weights; torchopenl3 and this port follow the original kapre 0.1.4 one.

Checked against torchopenl3 1.0.1 (`PYTHONPATH=<site with torchopenl3, julius, six> python
benchmarks/parity_openl3.py`: the same seeded random weights, BN statistics included, loaded strictly here; its
own framing vs ours on real ESC-50 / RAVDESS clips of 0.3, 1.2 and 3.3 s at 48 kHz): mel256/6144, mel128/512 and
linear/6144 embeddings within 4.6e-07 relative, decibel spectrograms within 1.5e-05 dB, padded batch = single
clips exactly. Not checked against the Keras model: no Keras weights can be obtained here (the openl3 package
downloads them from GitHub while it builds) and TensorFlow is not installed.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import EvarError
from .base import AudioRepr, Frames, lengths_to_mask, load_checkpoint, load_strict

WEIGHTS_URL = ('https://github.com/torchopenl3/torchopenl3-models (torchopenl3_<input_repr>_<content_type>_'
               '<embedding size>.pth.tar)')
SAMPLE_RATE = 48000
WINDOW = SAMPLE_RATE  # 1 s
STFT_HOP = 242
DB_RANGE = 80.0
BN_EPS = 1e-3
POOLING = {'linear': {6144: (8, 8), 512: (32, 24)}, 'mel128': {6144: (4, 8), 512: (16, 24)},
           'mel256': {6144: (8, 8), 512: (32, 24)}}
CONVS = ('conv2d_1', 'conv2d_2', 'conv2d_3', 'conv2d_4', 'conv2d_5', 'conv2d_6', 'conv2d_7', 'audio_embedding_layer')
POOL_AFTER = {'conv2d_2', 'conv2d_4', 'conv2d_6'}


@dataclass(frozen=True)
class OpenL3Params:
    """YAML keys of `openl3`.

    Keys:
        weight_file: a torchopenl3 checkpoint (torchopenl3_<input_repr>_<content_type>_<size>.pth.tar).
        openl3_input_repr: 'mel256', 'mel128' or 'linear'; the checkpoint's front-end tensors decide (a warning
            when they differ).
        openl3_content_type: 'music' or 'env', not used (which training subset the weight file comes from).
        feature_d: the embedding size, 6144 or 512; it decides the final max pooling.
        sample_rate: Hz; must be 48000.
        hop_sec: seconds between the starts of consecutive 1 s windows (> 0; int(hop_sec * 48000) samples).
        center: put 0.5 s of zeros before the clip, so the first window is centred at 0 s.
        window_batch: windows per network call (bounds memory, not the outputs).
        temporal_pooling_type: 'mean', 'max' or 'mean_max'.
    """
    weight_file: Optional[str] = None
    openl3_input_repr: str = 'mel256'  # checked against the checkpoint's front-end tensors
    openl3_content_type: str = 'music'  # informational: which training subset the weight file comes from
    feature_d: int = 6144  # embedding size: 6144 or 512 (decides the final pooling)
    sample_rate: int = SAMPLE_RATE
    hop_sec: float = 0.1
    center: bool = True
    window_batch: int = 16  # windows per network call (memory: ~15 MB of activations per window at full width)
    temporal_pooling_type: str = 'mean_max'


def openl3_dft_kernels(n_dft: int) -> tuple:
    """kapre 0.1.4's STFT kernels: (real, imaginary) [n_dft // 2 + 1, 1, n_dft], periodic Hann window."""
    k = torch.arange(n_dft // 2 + 1, dtype=torch.float64)[:, None]
    n = torch.arange(n_dft, dtype=torch.float64)[None, :]
    window = torch.hann_window(n_dft, periodic=True, dtype=torch.float32).double()
    phase = 2 * math.pi * k * n / n_dft
    return (torch.cos(phase) * window)[:, None].float(), (-torch.sin(phase) * window)[:, None].float()


def openl3_mel_basis(n_mels: int, n_dft: int = 2048, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """[n_mels, n_dft // 2 + 1]: HTK-scale triangles over 0 Hz - Nyquist, each scaled to unit sum (librosa's
    `mel(htk=True, norm=1)` as torchopenl3 builds it; the checkpoint's stored basis is what the model uses)."""
    fft_hz = torch.linspace(0, sample_rate / 2, n_dft // 2 + 1, dtype=torch.float64)
    top = 2595.0 * math.log10(1.0 + (sample_rate / 2) / 700.0)
    edges = 700.0 * (10.0 ** (torch.linspace(0.0, top, n_mels + 2, dtype=torch.float64) / 2595.0) - 1.0)
    widths = edges.diff()
    ramps = edges[:, None] - fft_hz[None, :]
    weights = torch.clamp(torch.minimum(-ramps[:-2] / widths[:-1, None], ramps[2:] / widths[1:, None]), min=0.0)
    return (weights / weights.sum(1, keepdim=True).clamp(min=1e-30)).float()


class SpecLayer(nn.Module):
    """Holds the checkpoint's front-end tensors under torchopenl3's names."""

    def __init__(self, n_dft: int, n_mels: int):
        super().__init__()
        real, imag = openl3_dft_kernels(n_dft)
        self.register_buffer('dft_real_kernels', real)
        self.register_buffer('dft_imag_kernels', imag)
        self.n_dft, self.n_mels = n_dft, n_mels
        if n_mels:
            self.register_buffer('mel_basis', openl3_mel_basis(n_mels, n_dft))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """windows [N, 48000] -> decibel spectrogram [N, 1, F, T], 0 dB at each window's maximum."""
        x = windows[:, None]
        if self.n_mels:  # kapre's 'same' padding for a 1 s input
            rest = WINDOW % STFT_HOP
            total = max(self.n_dft - (rest or STFT_HOP), 0)
            x = F.pad(x, (total // 2, total - total // 2))
        kernels = torch.cat([self.dft_real_kernels, self.dft_imag_kernels])
        real, imag = F.conv1d(x, kernels, stride=STFT_HOP).chunk(2, dim=1)
        spec = real.square() + imag.square()  # [N, F, T] power
        if self.n_mels:
            spec = torch.matmul(self.mel_basis, spec)
        db = 10.0 * torch.log10(spec.sqrt().clamp(min=1e-10))  # magnitude in dB
        db = db - db.amax(dim=(1, 2), keepdim=True)
        return db.clamp(min=-DB_RANGE).unsqueeze(1)


class OpenL3Net(nn.Module):
    """L3-Net's audio sub-network with torchopenl3's names: the kapre front end (`speclayer`), an input BatchNorm,
    seven conv / BN / ReLU layers of `widths` (2x2 max pooling after the 2nd, 4th and 6th), the embedding conv and
    a final max pooling by `pool`."""
    def __init__(self, widths: list, n_dft: int, n_mels: int, pool: tuple):
        super().__init__()
        self.speclayer = SpecLayer(n_dft, n_mels)
        self.batch_normalization_1 = nn.BatchNorm2d(1, eps=BN_EPS)
        cin = 1
        for i, (name, cout) in enumerate(zip(CONVS, widths), 2):
            setattr(self, name, nn.Conv2d(cin, cout, 3, padding=1))
            if name != 'audio_embedding_layer':
                setattr(self, f'batch_normalization_{i}', nn.BatchNorm2d(cout, eps=BN_EPS))
            cin = cout
        self.pool = pool

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """windows [N, 48000] -> embeddings [N, D]."""
        x = self.batch_normalization_1(self.speclayer(windows))
        for i, name in enumerate(CONVS, 2):
            x = getattr(self, name)(x)
            if name == 'audio_embedding_layer':
                break
            x = F.relu(getattr(self, f'batch_normalization_{i}')(x))
            if name in POOL_AFTER:
                x = F.max_pool2d(x, 2)
        x = F.max_pool2d(x, self.pool)
        return x.permute(0, 2, 3, 1).flatten(1)  # Keras order: frequency, time, channel


def _front_end_of(state: dict, source: str) -> tuple:
    real = state.get('speclayer.dft_real_kernels')
    if real is None or real.dim() != 3:
        raise EvarError(f'OpenL3: weight file {source} has no speclayer.dft_real_kernels; expected a torchopenl3 '
                        f'checkpoint (keys speclayer.*, batch_normalization_*, conv2d_*, audio_embedding_layer.*).')
    n_dft = int(real.shape[-1])
    mel = state.get('speclayer.mel_basis')
    n_mels = int(mel.shape[0]) if mel is not None else 0
    return n_dft, n_mels, (f'mel{n_mels}' if n_mels else 'linear')


class OpenL3(AudioRepr):
    """OpenL3 (Cramer et al., ICASSP 2019; torchopenl3's conversion of the official weights): waves [B, N] float32
    at 48 kHz -> Frames [B, T, feature_d], one per 1 s window every hop_sec.

    Raises:
        EvarError: sample_rate not 48000, hop_sec not positive, feature_d not 6144 / 512, or a missing or
            mismatched torchopenl3 checkpoint (at construction).
    """
    Params = OpenL3Params

    def __init__(self, params: OpenL3Params):
        super().__init__(params)
        if int(params.sample_rate) != SAMPLE_RATE:
            raise EvarError(f'OpenL3 works at {SAMPLE_RATE} Hz; sample_rate is {params.sample_rate}.')
        if params.hop_sec <= 0:
            raise EvarError(f'OpenL3: hop_sec must be positive, got {params.hop_sec}.')
        state = load_checkpoint(params.weight_file, 'OpenL3', WEIGHTS_URL)
        n_dft, n_mels, input_repr = _front_end_of(state, params.weight_file)
        if input_repr != params.openl3_input_repr:
            warnings.warn(f'OpenL3: openl3_input_repr {params.openl3_input_repr} in the config differs from the '
                          f'checkpoint\'s {input_repr}; using {input_repr}.', stacklevel=2)
        if params.feature_d not in POOLING[input_repr]:
            raise EvarError(f'OpenL3: feature_d (embedding size) must be 6144 or 512, got {params.feature_d}.')
        widths = []
        for name in CONVS:
            w = state.get(f'{name}.weight')
            if w is None or w.dim() != 4:
                raise EvarError(f'OpenL3: weight file {params.weight_file} has no {name}.weight; expected a '
                                f'torchopenl3 checkpoint.')
            widths.append(int(w.shape[0]))
        self.body = OpenL3Net(widths, n_dft, n_mels, POOLING[input_repr][params.feature_d])
        load_strict(self.body, state, params.weight_file)
        self.input_repr = input_repr
        self.hop = max(1, int(params.hop_sec * SAMPLE_RATE))  # int() as the official code

    @property
    def frame_hop_sec(self) -> float:
        """One frame per window, `hop_sec` apart."""
        return float(self.params.hop_sec)

    @property
    def frame_window_sec(self) -> float:
        """Windows are 1 s, centred from 0 s: the first needs 0.5 s of the clip."""
        return 0.5

    @property
    def embedding_dim(self) -> int:
        """The last conv's channels times the pooled positions (4 x 3 for 6144, 1 x 1 for 512)."""
        return self.body.audio_embedding_layer.out_channels * (12 if self.params.feature_d == 6144 else 1)

    def window_counts(self, lengths: torch.Tensor) -> torch.Tensor:
        """[B] windows of clips of `lengths` [B] samples: 1 + ceil(max(0, n + 24000 - 48000) / hop) with center
        (24000 = the 0.5 s lead), 1 + ceil(max(0, n - 48000) / hop) without."""
        span = lengths + (WINDOW // 2 if self.params.center else 0)
        extra = (span - WINDOW).clamp(min=0)
        return 1 + torch.div(extra + self.hop - 1, self.hop, rounding_mode='floor')

    def encode(self, feats, feat_lengths) -> Frames:
        """Frames of waves [B, N] (the front end runs per window, inside the network call) with `feat_lengths` [B]
        samples: embeddings [B, T, feature_d], T from `window_counts`, only each clip's own windows run, zero and
        masked False past them."""
        b = feats.shape[0]
        counts = self.window_counts(feat_lengths)
        t = int(counts.max())
        wav = feats * lengths_to_mask(feat_lengths, feats.shape[-1])
        lead = WINDOW // 2 if self.params.center else 0
        total = (t - 1) * self.hop + WINDOW
        wav = F.pad(wav, (lead, max(0, total - lead - wav.shape[-1])))[:, :total]
        windows = wav.unfold(-1, WINDOW, self.hop)  # a view [B, t, 48000]; windows are copied chunk by chunk
        mask = lengths_to_mask(counts, t)
        rows, cols = mask.nonzero(as_tuple=True)
        step = max(1, int(self.params.window_batch))
        outs = [self.body(windows[rows[i:i + step], cols[i:i + step]]) for i in range(0, len(rows), step)]
        x = feats.new_zeros(b, t, self.embedding_dim)
        x[rows, cols] = torch.cat(outs)
        return Frames(x, mask)
