"""VGGish (Hershey et al., ICASSP 2017): the AudioSet VGG-like embedding net, from its PyTorch state dict.

Weights: Google's TensorFlow VGGish checkpoint converted to PyTorch, as `vggish-10086976.pth` (+ PCA parameters
`vggish_pca_params-970ea276.pth`) from github.com/harritaylor/torchvggish releases, or as `pytorch_vggish.pth` from
github.com/tcvrick/audioset-vggish-tensorflow-to-pytorch releases (the file EVAR loads). Both hold the same
tensors; the first names the fully connected layers `embeddings.*`, the second `fc.*` (renamed here on loading).

Front end (the official `mel_features` / `vggish_input`): 16 kHz; frames of 400 samples (25 ms) every 160 (10 ms),
only complete frames (no padding); periodic Hann; |rFFT| with 512 points (the power of two above the window;
magnitude, not power); 64 HTK-mel bands 125-7500 Hz with triangles laid out in the mel domain and the DC bin
zeroed; log(mel + 0.01); cut into patches of 96 frames (0.96 s) every 96 frames, incomplete patches dropped.
Computed in float64 as the numpy original does.
Network: conv 64 -> pool -> conv 128 -> pool -> conv 256 x 2 -> pool -> conv 512 x 2 -> pool (3x3 convs, ReLU, 2x2
max pools), flattened in (time, frequency, channel) order as TensorFlow's NHWC, then Linear 12288 -> 4096 -> 4096
-> 128 each followed by ReLU, as both PyTorch ports (the current TensorFlow code has no ReLU on the last layer:
`final_relu: false`). One embedding per patch: frames every 0.96 s.

Embeddings (`output_layers`): 0 = first 4096-d FC (EVAR's vggish_4k), 1 = second 4096-d FC, 2 / -1 = the 128-d
embedding (EVAR's vggish). `postprocess: true` applies the AudioSet release's PCA whitening and 8-bit quantisation
(values 0-255) from `pca_file` to the 128-d embedding; EVAR does not.

Clips shorter than one patch (15600 samples, 0.975 s) are extended with digital silence to one patch (the official
code returns no patch for them). Patches are independent, so padding never changes a clip's patches: only patches
that lie wholly inside a clip are computed.

Checked against the official code (the `mel_features` front end and harritaylor/torchvggish's VGG, which is
tcvrick's architecture too; seeded random init, state dict loaded strictly here) on real clips: see
`python benchmarks/parity_vggish.py --torchvggish_repo <checkout> --tcvrick_repo <checkout>`: on 5 ESC-50 /
RAVDESS clips of 0.99-12 s, log-mel patches, fc1 and embeddings identical (max diff 0.0), PCA + quantised values
identical; our padded batch vs single clips 5.2e-07 relative. Not checked against the TensorFlow graph itself
(TensorFlow is not installed here); the ports' authors report their converted weights match it closely.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import EvarError
from .base import AudioRepr, Frames, load_checkpoint, load_strict, select_layers, selected_width

WEIGHTS_URL = ('https://github.com/harritaylor/torchvggish/releases (vggish-10086976.pth, '
               'vggish_pca_params-970ea276.pth) or https://github.com/tcvrick/audioset-vggish-tensorflow-to-pytorch/'
               'releases (pytorch_vggish.pth, as EVAR uses)')
CONV_PLAN = (64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M')
QUANTIZE_RANGE = (-2.0, 2.0)


@dataclass(frozen=True)
class VGGishParams:
    """YAML keys of `vggish` (defaults: the official front end).

    Keys:
        weight_file: vggish-10086976.pth (harritaylor) or pytorch_vggish.pth (tcvrick, as EVAR loads).
        pca_file: vggish_pca_params-970ea276.pth; read only when postprocess is true.
        postprocess: apply the AudioSet release's PCA whitening and 8-bit quantisation (0-255) to the 128-d output.
        final_relu: ReLU after the 128-d layer, as both PyTorch ports (false: as the current TensorFlow code).
        sample_rate: Hz of the input waves (16000).
        window_size, hop_size: frame length and hop in samples (400, 160: 25 ms, 10 ms); the FFT is the power of two
            at or above the window (512).
        n_fft: not used (EVAR's vggish.yaml names it).
        n_mels: HTK mel bands (64); f_min, f_max: Hz, the bands' range (125-7500).
        log_offset: added to the mel magnitude before the natural log (0.01).
        patch_frames: log-mel frames per patch and between patches (96: 0.96 s).
        output_layers: 0 fc1 (4096-d, EVAR's vggish_4k), 1 fc2 (4096-d), 2 / -1 the 128-d embedding, a list, or
            'all'.
        layer_average: with several output_layers, average them instead of concatenating (equal widths only).
        temporal_pooling_type: 'mean', 'max' or 'mean_max'.
        feature_d: not used (EVAR configs carry it).
    """
    weight_file: Optional[str] = None
    pca_file: Optional[str] = None  # only read when postprocess is true
    postprocess: bool = False
    final_relu: bool = True
    sample_rate: int = 16000
    window_size: int = 400
    hop_size: int = 160
    n_fft: Optional[int] = None  # not used: the FFT length is the power of two above the window (512), as the
    # official mel_features; EVAR's vggish.yaml names n_fft 400 (the window), and loads unchanged
    n_mels: int = 64
    f_min: float = 125.0
    f_max: float = 7500.0
    log_offset: float = 0.01
    patch_frames: int = 96
    output_layers: Any = -1  # 0: fc1 (4096), 1: fc2 (4096), 2 / -1: embedding (128)
    layer_average: bool = False
    temporal_pooling_type: str = 'mean_max'
    feature_d: Optional[int] = None  # informational (EVAR configs carry it)


def vggish_mel_matrix(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """[n_fft // 2 + 1, n_mels] float64: triangles with edges evenly spaced on the HTK mel scale (1127 ln(1 + f /
    700)) and slopes computed in mel, DC bin zeroed, unnormalised (the official `spectrogram_to_mel_matrix`)."""
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise EvarError(f'VGGish: mel edges must satisfy 0 <= f_min < f_max <= {sample_rate / 2}; got {f_min}, {f_max}.')

    def mel(f):
        return 1127.0 * torch.log1p(torch.as_tensor(f, dtype=torch.float64) / 700.0)

    bins_mel = mel(torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64))
    edges = torch.linspace(float(mel(f_min)), float(mel(f_max)), n_mels + 2, dtype=torch.float64)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (centre - lower)
    falling = (upper - bins_mel[:, None]) / (upper - centre)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    weights[0] = 0.0
    return weights


class VGGishNet(nn.Module):
    """Module names as harritaylor/torchvggish: `features` (convs at 0, 3, 6, 8, 11, 13) and `embeddings`."""

    def __init__(self, final_relu: bool = True):
        super().__init__()
        layers, cin = [], 1
        for v in CONV_PLAN:
            if v == 'M':
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(nn.Linear(512 * 6 * 4, 4096), nn.ReLU(inplace=True), nn.Linear(4096, 4096),
                                        nn.ReLU(inplace=True), nn.Linear(4096, 128),
                                        nn.ReLU(inplace=True) if final_relu else nn.Identity())

    def forward(self, patches: torch.Tensor) -> list:
        """patches [N, 96, 64] log-mel -> [fc1 [N, 4096], fc2 [N, 4096], embedding [N, 128]]."""
        x = self.features(patches[:, None])  # [N, 512, 6, 4]
        x = x.permute(0, 2, 3, 1).flatten(1)  # TensorFlow's NHWC flattening order
        outs = []
        for i in (0, 2, 4):
            x = self.embeddings[i + 1](self.embeddings[i](x))
            outs.append(x)
        return outs


def read_pca(path: str) -> tuple:
    """(eigenvectors [128, 128], means [128]) from harritaylor's vggish_pca_params file (numpy arrays inside)."""
    import numpy as np

    path = Path(path).expanduser()
    if not path.is_file():
        raise EvarError(f'VGGish: postprocess needs pca_file; {path} does not exist. Put '
                        f'vggish_pca_params-970ea276.pth under external/; it is distributed at {WEIGHTS_URL}.')
    reconstruct = (getattr(np, '_core', None) or np.core).multiarray._reconstruct
    # The released file was pickled under numpy 1 (numpy.core.*); numpy 2 calls the same function numpy._core.*.
    safe = [reconstruct, (reconstruct, 'numpy.core.multiarray._reconstruct'), np.ndarray, np.dtype,
            *(type(np.dtype(t)) for t in ('float64', 'float32'))]
    try:
        with torch.serialization.safe_globals(safe):
            state = torch.load(path, map_location='cpu', weights_only=True)
        vectors = torch.as_tensor(state['pca_eigen_vectors'], dtype=torch.float32)
        means = torch.as_tensor(state['pca_means'], dtype=torch.float32).reshape(-1)
    except Exception as e:
        raise EvarError(f'VGGish: cannot read PCA parameters from {path} (expected pca_eigen_vectors and '
                        f'pca_means): {e}') from e
    if tuple(vectors.shape) != (128, 128) or tuple(means.shape) != (128,):
        raise EvarError(f'VGGish: {path}: PCA shapes {tuple(vectors.shape)}, {tuple(means.shape)}; expected '
                        f'(128, 128) and (128,).')
    return vectors, means


class VGGish(AudioRepr):
    """VGGish (Hershey et al., ICASSP 2017; Google's AudioSet release via the harritaylor/torchvggish or tcvrick
    PyTorch ports): waves [B, N] float32 at 16 kHz -> Frames [B, P, D], one per non-overlapping 0.96 s patch.

    Raises:
        EvarError: a missing or mismatched weight file, bad mel edges, or with postprocess a missing or malformed
            pca_file (at construction).
    """
    Params = VGGishParams

    @classmethod
    def weight_paths(cls, params) -> list:
        """The weight file, and the pca_file when postprocess is set."""
        paths = super().weight_paths(params)
        return paths + [Path(params.pca_file).expanduser()] if params.postprocess and params.pca_file else paths

    def __init__(self, params: VGGishParams):
        super().__init__(params)
        state = load_checkpoint(params.weight_file, 'VGGish', WEIGHTS_URL)
        state = {('embeddings.' + k[3:] if k.startswith('fc.') else k): v for k, v in state.items()}  # tcvrick names
        self.body = VGGishNet(params.final_relu)
        load_strict(self.body, state, params.weight_file)
        if params.postprocess:
            vectors, means = read_pca(params.pca_file or '')
            self.register_buffer('pca_vectors', vectors)
            self.register_buffer('pca_means', means)
        self.fft_length = 2 ** math.ceil(math.log2(params.window_size))
        self.register_buffer('mel_matrix', vggish_mel_matrix(params.sample_rate, self.fft_length, params.n_mels,
                                                             params.f_min, params.f_max), persistent=False)
        self.register_buffer('window', torch.hann_window(params.window_size, periodic=True, dtype=torch.float64),
                             persistent=False)
        self.patch_hop = params.patch_frames  # patches do not overlap (EXAMPLE_HOP_SECONDS = window)
        self.min_samples = params.window_size + (params.patch_frames - 1) * params.hop_size

    @property
    def frame_hop_sec(self) -> float:
        """One frame per 0.96 s patch (`patch_frames` log-mel frames; patches do not overlap)."""
        return self.patch_hop * self.params.hop_size / self.params.sample_rate

    @property
    def embedding_dim(self) -> int:
        """fc1, fc2 (4096) or the 128-d embedding (also after the PCA postprocessing)."""
        fc = self.body.embeddings
        widths = [fc[0].out_features, fc[2].out_features, fc[4].out_features]
        return selected_width(widths, self.params.output_layers, self.params.layer_average)

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, N] -> [B, frames, n_mels] float64, frames = 1 + (N - window) // hop (complete frames only)."""
        p = self.params
        frames = wav.double().unfold(-1, p.window_size, p.hop_size) * self.window
        magnitude = torch.fft.rfft(frames, n=self.fft_length).abs()
        return torch.log(magnitude @ self.mel_matrix + p.log_offset)

    def features(self, wav, lengths):
        """Patches [B, n_mels * 96, P] (each column one 0.96 s patch, flattened time-major) and patch counts."""
        p = self.params
        if wav.shape[-1] < self.min_samples:
            wav = F.pad(wav, (0, self.min_samples - wav.shape[-1]))
        wav = wav * (torch.arange(wav.shape[-1], device=wav.device)[None] < lengths[:, None])
        lengths = lengths.clamp(min=self.min_samples)  # shorter clips: extended with digital silence
        n_frames = 1 + torch.div(lengths - p.window_size, p.hop_size, rounding_mode='floor')
        n_patches = 1 + torch.div(n_frames - p.patch_frames, self.patch_hop, rounding_mode='floor')
        spec = self.log_mel(wav[:, :p.window_size + (int(n_frames.max()) - 1) * p.hop_size]).float()
        patches = spec.unfold(1, p.patch_frames, self.patch_hop)  # [B, P, n_mels, 96]
        patches = patches[:, :int(n_patches.max())].transpose(2, 3).flatten(2)  # [B, P, 96 * n_mels]
        return patches.transpose(1, 2), n_patches

    def encode(self, feats, feat_lengths) -> Frames:
        """Frames of patches [B, 96 n_mels, P] with `feat_lengths` [B] patches: embeddings [B, P, D] (4096, 4096 or
        128 per output_layers; 128-d values 0-255 with postprocess), only valid patches run, zero and masked False
        past them.

        Raises:
            EvarError: output_layers out of range.
        """
        b, _, t = feats.shape
        mask = torch.arange(t, device=feats.device)[None, :] < feat_lengths[:, None]
        patches = feats.transpose(1, 2)[mask].reshape(-1, self.params.patch_frames, self.params.n_mels)
        layers = self.body(patches)  # only patches from real audio go through the network
        if self.params.postprocess:
            layers[-1] = self.quantised_pca(layers[-1])
        chosen = select_layers(layers, self.params.output_layers, self.params.layer_average)
        x = chosen.new_zeros(b, t, chosen.shape[-1])
        x[mask] = chosen
        return Frames(x, mask)

    def quantised_pca(self, emb: torch.Tensor) -> torch.Tensor:
        """The AudioSet release's postprocessing: PCA (whitening included), clip to [-2, 2], 8-bit levels 0-255."""
        lo, hi = QUANTIZE_RANGE
        x = (emb - self.pca_means) @ self.pca_vectors.T
        return torch.round((x.clamp(lo, hi) - lo) * (255.0 / (hi - lo)))
