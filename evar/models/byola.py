"""BYOL-A (Niizumi et al., IJCNN 2021): the AudioNTT2020 encoder, loading the official checkpoints strictly.

Architecture (from the paper and the official d512/d1024/d2048 checkpoints): 3 x [Conv2d 3x3 pad 1 -> BatchNorm ->
ReLU -> MaxPool 2], frames flattened as (time, mel x channel), then Linear -> ReLU -> Dropout -> Linear -> ReLU.
The embedding size is read from the checkpoint. Front end: log(mel + eps), 16 kHz, n_fft 1024, hop 160, 64 HTK
mels from 60 to 7800 Hz, standardised by statistics of the task's training split (EVAR) or fixed `norm_stats`.

Checked against the official code (nttcslab/byol-a AudioNTT2020 + torchaudio MelSpectrogram) on real clips with
the real d512 weights: log-mel within 1.2e-4, embeddings within 1.6e-6 relative. Re-check with
`python benchmarks/parity_byola.py --byol_a_parent <dir> --weights <pth> --audio_glob '<clips>'`.

Padding never changes a valid frame: the time frames past each clip's end are zeroed before every convolution,
which is what the convolution's own zero padding sees when a clip is run alone.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from ..errors import EvarError
from .base import Frames, lengths_to_mask, load_checkpoint, load_strict, select_layers
from .spec import MelSpec, SpecParams

WEIGHTS_URL = 'https://github.com/nttcslab/byol-a/tree/master/pretrained_weights'
MIN_FRAMES = 8  # three 2x poolings need at least 8 input frames to give one output frame


@dataclass(frozen=True)
class BYOLAParams(SpecParams):
    weight_file: Optional[str] = None
    norm_stats: Optional[list] = None  # [mean, std] of log-mel; None: computed on the task's training split
    output_layers: Any = -1  # 0: last conv block (512-d frames), 1 / -1: the projection MLP (embedding)
    layer_average: bool = False


def conv_block(cin: int, cout: int) -> list:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2, stride=2)]


def fold_batchnorm(features: nn.Sequential) -> nn.Sequential:
    """An inference copy of conv blocks with each BatchNorm folded into the convolution before it (exact in eval
    mode; BN and the extra pass over the activations took a third of BYOL-A's CPU time)."""
    layers, out = list(features), []
    for layer in layers:
        if isinstance(layer, nn.BatchNorm2d) and out and isinstance(out[-1], nn.Conv2d):
            conv = out[-1]
            scale = layer.weight / torch.sqrt(layer.running_var + layer.eps)
            conv.weight.data = conv.weight.data * scale[:, None, None, None]
            conv.bias.data = (conv.bias.data - layer.running_mean) * scale + layer.bias.data
        elif isinstance(layer, nn.Conv2d):
            out.append(copy.deepcopy(layer))
        else:
            out.append(nn.ReLU(inplace=True) if isinstance(layer, nn.ReLU) else layer)
    return nn.Sequential(*out).to(memory_format=torch.channels_last)


class AudioNTT2020(nn.Module):
    def __init__(self, n_mels: int = 64, d: int = 512):
        super().__init__()
        self.features = nn.Sequential(*conv_block(1, 64), *conv_block(64, 64), *conv_block(64, 64))
        self.fc = nn.Sequential(nn.Linear(64 * (n_mels // 8), d), nn.ReLU(), nn.Dropout(p=0.3), nn.Linear(d, d),
                                nn.ReLU())
        self._folded = None  # inference copy of `features`, rebuilt after any training

    def train(self, mode: bool = True):
        self._folded = None
        return super().train(mode)

    def forward(self, x: torch.Tensor, frame_lengths: torch.Tensor):
        """x: [B, F, T] normalised log-mel, zero past each clip's end -> ([conv frames, embedding], lengths)."""
        if self.training:
            features = self.features
        else:
            if self._folded is None:
                self._folded = fold_batchnorm(self.features)
            features = self._folded
        # channels_last lets oneDNN run these small convolutions faster on CPU.
        x = x.unsqueeze(1).contiguous(memory_format=torch.channels_last)
        padded = bool((frame_lengths < x.shape[-1]).any())
        for layer in features:
            x = layer(x)
            if isinstance(layer, nn.MaxPool2d):
                frame_lengths = torch.div(frame_lengths, 2, rounding_mode='floor')
                # Zero the padding before the next convolution. After the pooling, not before: with an odd number of
                # valid frames the pooled frame just past the end mixes the last valid frame with padding, and the
                # next convolution would see it where a clip run alone sees zero padding (found by evar.check).
                if padded:
                    x = x.mul_(lengths_to_mask(frame_lengths, x.shape[-1])[:, None, None, :])
        b, c, f, t = x.shape
        conv_frames = x.permute(0, 3, 2, 1).reshape(b, t, f * c)  # (time, mel, channel) as the official model
        return [conv_frames, self.fc(conv_frames)], frame_lengths


class BYOLA(MelSpec):
    Params = BYOLAParams
    needs_norm_stats = True
    cache_version = 2  # 2: padding zeroed after each pooling (odd-length clips no longer see it)

    def __init__(self, params: BYOLAParams):
        super().__init__(params)
        state = load_checkpoint(params.weight_file, 'BYOL-A', WEIGHTS_URL)
        state = {k: v for k, v in state.items() if k.startswith(('features.', 'fc.'))} or state
        if 'fc.3.weight' not in state:
            raise EvarError(f'BYOL-A: weight file {params.weight_file} has no fc.3.weight; expected an AudioNTT2020 '
                            f'checkpoint (keys features.*, fc.*).')
        d = int(state['fc.3.weight'].shape[0])
        if params.feature_d is not None and params.feature_d != d:
            warnings.warn(f'BYOL-A: feature_d {params.feature_d} in the config differs from the checkpoint\'s {d}; '
                          f'using {d}.', stacklevel=2)
        self.body = AudioNTT2020(n_mels=params.n_mels, d=d)
        load_strict(self.body, state, params.weight_file)
        self.feature_d = d
        if params.norm_stats is not None:
            self.set_norm_stats(*params.norm_stats)

    def features(self, wav, lengths):
        spec, frames = self.spec(wav, lengths)
        short = frames < MIN_FRAMES
        if bool(short.any()):  # very short clips: extend with digital-silence frames up to one output frame
            if spec.shape[-1] < MIN_FRAMES:
                spec = nn.functional.pad(spec, (0, MIN_FRAMES - spec.shape[-1]))
            silence = lengths_to_mask(frames, spec.shape[-1]).logical_not() & short[:, None]
            silence[:, MIN_FRAMES:] = False
            spec = spec.masked_fill(silence[:, None, :], float(torch.log(torch.tensor(self.spec.eps))))
        return spec, frames.clamp(min=MIN_FRAMES)

    def encode(self, feats, feat_lengths) -> Frames:
        layers, frame_lengths = self.body(self.normalize(feats, feat_lengths), feat_lengths)
        x = select_layers(layers, self.params.output_layers, self.params.layer_average)
        return Frames(x, lengths_to_mask(frame_lengths, x.shape[1]))
