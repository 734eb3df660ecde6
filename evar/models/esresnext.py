"""ESResNeXt-fbsp (Guzhov et al., ICPR 2020, "ESResNe(X)t-fbsp: Learning Robust Time-Frequency Transformation of
Audio"; the audio tower of AudioCLIP): a ResNeXt-50 (32x4d) with attention over a trainable-STFT spectrogram,
loading the official AudioSet checkpoint (ESResNeXtFBSP_AudioSet.pt) strictly. Written here in plain torch with the
official state-dict keys; the official code subclasses torchvision's ResNet, which evar does not depend on.

Front end ("fbsp", a Fourier basis with trainable parameters per output bin): EVAR feeds the wave times 32767 and
the model maps [-32768, 32767] back to [-1, 1]; the clip is cut into frames of `window_size` samples every
`hop_size` (zero-padded around the clip, half before and half after, so the frames cover it exactly), each frame
multiplied by the window (Blackman-Harris, stored in the checkpoint) and zero-padded to n_fft. Each of the
n_fft / 2 + 1 output bins k is a complex filter built from three learned numbers (m_k, fb_k, fc_k): a carrier
exp(-i fc_k t) over t in [-pi, pi], tapered by sinc(fb_k t / m_k) raised to the power m_k (a negative taper
value has phase pi, so the power makes it complex), scaled by sqrt(fb_k), and divided by sqrt(n_fft) when
`normalized`. The bins' power |X|^2 is split into three frequency bands of (n_fft / 2 + 1) // 3 bins that become
the image's three channels, and 10 log10(power) (non-positive power replaced by 1e-18) is the network's input.

Network: ResNeXt-50 32x4d (torchvision's layout and key names: conv1, bn1, layer1..4 of Bottleneck blocks) with an
attention branch after each stage (att1..att4: adaptive max pooling to the stage's output size, depthwise conv,
pointwise conv, BatchNorm, sigmoid, multiplied in), and att5 on the global average pool. EVAR's embedding is the
pooled 2048-d vector (`output_layers: 0`), one per clip; `1` gives the 527 AudioSet logits.

The network pools over the whole clip (global average pooling, adaptive max pooling in the attention branches),
so padding cannot be masked exactly: clips of different lengths are run one length at a time (clips of the same
length together). Long clips are run whole, as EVAR does (the official code has no chunking).

Checked against the official code (model.esresnet_fbsp.ESResNeXtFBSP with EVAR's settings, random weights with
randomised BatchNorm statistics and fbsp parameters, loaded strictly here) on 4 real clips of 0.3 s to 6.35 s at
44.1 kHz: the dB band images, the 2048-d embeddings and the logits are bit-identical (max difference 0.0). Re-check
with `python benchmarks/parity_esresnext.py --esresnext <checkout> --audio <clips>` (its docstring has the exact
command). The real AudioSet weights were not available here, so they were not run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import EvarError
from .base import AudioRepr, Frames, load_checkpoint, load_strict, select_layers, selected_width

WEIGHTS_URL = 'https://github.com/AndreyGuzhov/ESResNeXt-fbsp/releases/download/v0.1/ESResNeXtFBSP_AudioSet.pt'
LOG10_FLOOR = 1e-18  # power at or below zero is replaced by this before the log, as the official code does
WINDOWS = ('blackmanharris', 'hann', 'boxcar')


@dataclass(frozen=True)
class ESResNeXtParams:
    """YAML keys of `esresnext_fbsp` (defaults: the official AudioSet release, as EVAR runs it).

    Keys:
        weight_file: ESResNeXtFBSP_AudioSet.pt (see WEIGHTS_URL).
        sample_rate: Hz of the input waves (44100, the release's rate).
        n_fft: Fourier basis size in samples (n_fft // 2 + 1 output bins).
        hop_size, window_size: samples between frames and per frame (561 and 1654 at 44.1 kHz: 12.7 ms, 37.5 ms).
        window: the initial window (one of WINDOWS); the checkpoint's stored window replaces it.
        normalized: divide the basis by sqrt(n_fft).
        spec_height, spec_width: > 0: the band images are resized (bilinear) to this many bins / frames.
        input_gain: factor from [-1, 1] waves to the 16-bit range the model maps back (32767, as EVAR feeds it).
        blocks, groups, width_per_group: ResNeXt stages (4 Bottleneck counts), cardinality and width per group.
        apply_attention: the att1..att5 branches (the release has them).
        num_classes: the classifier's outputs (527 AudioSet classes).
        output_layers: 0 the pooled 2048-d features (EVAR's embedding), 1 the logits, a list, or 'all'.
        layer_average: with several output_layers, average them instead of concatenating (same widths only).
        temporal_pooling_type: any; one frame per clip is left as it is.
        feature_d: not used (EVAR configs carry it).
    """
    weight_file: Optional[str] = None
    sample_rate: int = 44100
    n_fft: int = 2048
    hop_size: int = 561
    window_size: int = 1654
    window: str = 'blackmanharris'  # the initial window; the checkpoint's stored window replaces it
    normalized: bool = True
    spec_height: int = -1  # > 0: the band images are resized (bilinear) to this height, as the official option does
    spec_width: int = -1
    input_gain: float = 32767.0  # EVAR scales [-1, 1] audio to the 16-bit range the model maps back to [-1, 1]
    blocks: Any = (3, 4, 6, 3)  # Bottleneck blocks per stage (ResNeXt-50)
    groups: int = 32
    width_per_group: int = 4
    apply_attention: bool = True
    num_classes: int = 527
    output_layers: Any = 0  # 0: pooled 2048-d features (EVAR's embedding), 1: classifier logits
    layer_average: bool = False
    temporal_pooling_type: str = 'mean'  # one frame per clip: pooling leaves it as it is
    feature_d: Optional[int] = None  # informational (EVAR configs carry it)


def periodic_window(name: str, length: int) -> torch.Tensor:
    """scipy.signal.get_window(name, length, fftbins=True) for the windows the release uses."""
    n = torch.arange(length, dtype=torch.float64) * (2 * math.pi / length)
    if name == 'blackmanharris':
        w = 0.35875 - 0.48829 * torch.cos(n) + 0.14128 * torch.cos(2 * n) - 0.01168 * torch.cos(3 * n)
    elif name == 'hann':
        w = 0.5 - 0.5 * torch.cos(n)
    elif name == 'boxcar':
        w = torch.ones(length, dtype=torch.float64)
    else:
        raise EvarError(f'ESResNeXt-fbsp: window must be one of {list(WINDOWS)}, got {name!r}.')
    return w.to(torch.float32)


class LinearFBSP(nn.Module):
    """The trainable Fourier basis: parameters m, fb, fc per output bin (and the release's empty `bias`)."""

    def __init__(self, out_features: int, normalized: bool):
        super().__init__()
        self.normalized = normalized
        self.eps = 1e-8
        self.m = nn.Parameter(torch.zeros(out_features))
        self.fb = nn.Parameter(torch.ones(out_features))
        self.fc = nn.Parameter(torch.arange(out_features, dtype=torch.float32))
        self.bias = nn.Parameter(torch.empty(0))  # the release builds its bias-free layer with an empty parameter

    def weights(self, in_features: int, dtype, device) -> tuple:
        """(real, imaginary) filter weights [out_features, in_features], computed as the release does."""
        t = math.pi * torch.linspace(-1.0, 1.0, in_features, dtype=dtype, device=device).reshape(1, -1) + self.eps
        m, fb, fc = (p.reshape(-1, 1) for p in (self.m, self.fb, self.fc))
        carrier_re, carrier_im = torch.cos(fc * t), -torch.sin(fc * t)
        arg = fb * t / (m + self.eps)
        taper = torch.where(arg == 0, torch.ones_like(arg), torch.sin(arg) / arg)
        # taper ** m for a real taper: |taper| ** m with phase m * angle(taper) (angle 0 or pi).
        magnitude = (taper ** 2 + 0.0 ** 2) ** 0.5
        phase = torch.zeros_like(taper).atan2(taper)
        tapered = (magnitude ** 2) ** (0.5 * m) * torch.exp(-0.0 * phase)
        angle = m * phase + 0.5 * 0.0 * (magnitude ** 2).log()
        win_re, win_im = tapered * angle.cos(), tapered * angle.sin()
        scale = fb.sqrt()
        w_re = scale * (win_re * carrier_re - win_im * carrier_im)
        w_im = scale * (win_re * carrier_im + win_im * carrier_re)
        if self.normalized:
            w_re, w_im = w_re / in_features ** 0.5, w_im / in_features ** 0.5
        return w_re, w_im

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [..., in_features] (real) -> power [..., out_features]."""
        w_re, w_im = self.weights(frames.shape[-1], frames.dtype, frames.device)
        return F.linear(frames, w_re) ** 2 + F.linear(frames, w_im) ** 2


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """Pointwise Conv2d cin -> cout channels without bias (torchvision's ResNet helper)."""
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class Bottleneck(nn.Module):
    """torchvision's ResNeXt Bottleneck: 1x1 -> grouped 3x3 (stride here) -> 1x1 to 4 planes channels, BatchNorms,
    ReLU, and a projected shortcut where the stride or width changes."""
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, groups: int, width_per_group: int):
        super().__init__()
        width = int(planes * (width_per_group / 64.0)) * groups
        self.conv1 = conv1x1(cin, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or cin != planes * self.expansion:
            self.downsample = nn.Sequential(conv1x1(cin, planes * self.expansion, stride),
                                            nn.BatchNorm2d(planes * self.expansion))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, cin, H, W] -> [B, 4 planes, ceil(H / stride), ceil(W / stride)]."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Attention2d(nn.Module):
    """The release's attention branch: adaptive max pooling, depthwise conv, pointwise conv to cout, BatchNorm,
    sigmoid; the caller multiplies a stage's output by it."""
    def __init__(self, cin: int, cout: int, kernel: tuple, padding: tuple):
        super().__init__()
        self.conv_depth = nn.Conv2d(cin, cin, kernel, padding=padding, groups=cin)
        self.conv_point = nn.Conv2d(cin, cout, 1)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        """[B, cin, H, W] and the target (h, w) -> weights [B, cout, h, w] in (0, 1) (kernels keep the size)."""
        x = F.adaptive_max_pool2d(x, size)
        return torch.sigmoid(self.bn(self.conv_point(self.conv_depth(x))))


# (kernel, padding) of the attention branch after each stage and after the global pooling, as in the release.
ATTENTION_SHAPES = (((3, 1), (1, 0)), ((1, 5), (0, 2)), ((3, 1), (1, 0)), ((1, 5), (0, 2)), ((3, 5), (1, 2)))


class ESResNeXtFBSPNet(nn.Module):
    """The network and its trainable front end with the official key names."""

    def __init__(self, p: ESResNeXtParams):
        super().__init__()
        self.p = p
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin, widths = 64, []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), p.blocks)):
            stage = [Bottleneck(cin if j == 0 else planes * 4, planes, 2 if (i > 0 and j == 0) else 1, p.groups,
                                p.width_per_group) for j in range(int(n))]
            self.add_module(f'layer{i + 1}', nn.Sequential(*stage))
            widths.append((cin, planes * 4))
            cin = planes * 4
        if p.apply_attention:
            widths.append((cin, cin))
            for i, ((a, b), (kernel, padding)) in enumerate(zip(widths, ATTENTION_SHAPES)):
                self.add_module(f'att{i + 1}', Attention2d(a, b, kernel, padding))
        self.fc = nn.Linear(cin, p.num_classes)
        self.fbsp = LinearFBSP(p.n_fft // 2 + 1, p.normalized)
        self.register_buffer('window', periodic_window(p.window, p.window_size))

    def frames(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, N] clips of one length -> [B, frames, n_fft] windowed frames, as the release frames them."""
        p, n = self.p, wav.shape[-1]
        count = 1 if n <= p.window_size else 1 + math.ceil((n - p.window_size) / p.hop_size)
        extra = (count - 1) * p.hop_size + p.window_size - n
        if extra > 0:
            wav = F.pad(wav, (extra // 2, extra - extra // 2))
        frames = wav.unfold(-1, p.window_size, p.hop_size) * self.window
        if p.n_fft > p.window_size:
            pad = p.n_fft - p.window_size
            frames = F.pad(frames, (pad // 2, pad - pad // 2))
        return frames

    def log_power_bands(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, N] waves in [-1, 1] -> [B, 3, bins // 3, frames] dB power of three frequency bands."""
        power = self.fbsp(self.frames(wav)).transpose(-1, -2)  # [B, bins, frames]
        band = power.shape[-2] // 3
        power = power[:, :3 * band].reshape(power.shape[0], 3, band, power.shape[-1])
        height = band if self.p.spec_height < 1 else self.p.spec_height
        width = power.shape[-1] if self.p.spec_width < 1 else self.p.spec_width
        if (height, width) != tuple(power.shape[-2:]):
            power = F.interpolate(power, size=(height, width), mode='bilinear', align_corners=True)
        power = torch.where(power > 0.0, power, torch.full_like(power, LOG10_FLOOR))
        return torch.log10(power).mul(10.0)

    def forward(self, x_db: torch.Tensor) -> list:
        """[B, 3, H, W] dB bands -> [pooled features [B, 2048], logits [B, classes]]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x_db))))
        for i in range(1, 5):
            y = getattr(self, f'layer{i}')(x)
            x = y * getattr(self, f'att{i}')(x, y.shape[-2:]) if self.p.apply_attention else y
        pooled = F.adaptive_avg_pool2d(x, 1)
        if self.p.apply_attention:
            pooled = pooled * self.att5(x, pooled.shape[-2:])
        pooled = torch.flatten(pooled, 1)
        return [pooled, self.fc(pooled)]


class ESResNeXtFBSP(AudioRepr):
    """ESResNeXt-fbsp (Guzhov et al., ICPR 2020; AndreyGuzhov/ESResNeXt-fbsp, AudioCLIP's audio tower): waves
    [B, N] float32 at 44.1 kHz -> one frame per clip [B, 1, D] (D = 2048 pooled features by default).

    Raises:
        EvarError: blocks not 4 stages, or a missing or mismatched weight file (at construction).
    """
    Params = ESResNeXtParams

    def __init__(self, params: ESResNeXtParams):
        super().__init__(params)
        p = params
        if len(p.blocks) != 4:
            raise EvarError(f'ESResNeXt-fbsp: blocks must give 4 stages, got {p.blocks!r}.')
        state = load_checkpoint(p.weight_file, 'ESResNeXt-fbsp', WEIGHTS_URL)
        self.body = ESResNeXtFBSPNet(p)
        load_strict(self.body, state, p.weight_file)

    @property
    def frame_hop_sec(self) -> None:
        """None: one embedding per clip (the network pools over the whole clip)."""
        return None

    @property
    def embedding_dim(self) -> int:
        """2048 for output_layers 0, num_classes for 1, their sum for [0, 1] concatenated."""
        fc = self.body.fc
        return selected_width([fc.in_features, fc.out_features], self.params.output_layers, self.params.layer_average)

    def features(self, wav, lengths):
        """The waves [B, N] scaled by input_gain and mapped from [-32768, 32767] to [-1, 1] as the release does
        (the trainable front end runs in `encode`), and the lengths unchanged."""
        p = self.params
        # As the release's scale(x, -32768, 32767, -1, 1) applied to EVAR's wave * 32767, in the same order.
        x = wav * p.input_gain
        x = ((x - (-32768.0)) * 2.0) / 65535.0 + (-1.0)
        return x, lengths

    def encode(self, feats, feat_lengths) -> Frames:
        """One frame per clip: embeddings [B, 1, D], mask all True; each clip runs on its own feat_lengths samples
        (clips of equal length together). In training mode (fine-tuning) the batch runs at once, shorter clips
        zero-padded as EVAR pads them: BatchNorm needs the whole batch, and a length held by one clip alone would
        fail it.

        Raises:
            EvarError: output_layers out of range.
        """
        if self.training:
            layers = self.body(self.body.log_power_bands(feats[:, :int(feat_lengths.max())]))
            x = select_layers(layers, self.params.output_layers, self.params.layer_average)
            return Frames(x[:, None], torch.ones(feats.shape[0], 1, dtype=torch.bool, device=feats.device))
        out = None
        for n in torch.unique(feat_lengths).tolist():  # clips of one length at a time: see the module docstring
            rows = (feat_lengths == n).nonzero().flatten()
            layers = self.body(self.body.log_power_bands(feats[rows, :n]))
            x = select_layers(layers, self.params.output_layers, self.params.layer_average)
            if out is None:
                out = x.new_zeros(feats.shape[0], 1, x.shape[-1])
            out[rows, 0] = x
        return Frames(out, torch.ones(feats.shape[0], 1, dtype=torch.bool, device=feats.device))
