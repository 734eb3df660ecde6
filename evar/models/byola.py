"""BYOL-A (Niizumi et al., IJCNN 2021): the AudioNTT2020 encoder, loading the official checkpoints strictly; and
BYOL-A v2 (Niizumi et al., TASLP 2023, `byola2`): the AudioNTT2022 encoder and the v2 front end.

Architecture (from the paper and the official d512/d1024/d2048 checkpoints): 3 x [Conv2d 3x3 pad 1 -> BatchNorm ->
ReLU -> MaxPool 2], frames flattened as (time, mel x channel), then Linear -> ReLU -> Dropout -> Linear -> ReLU.
The embedding size is read from the checkpoint. Front end: log(mel + eps), 16 kHz, n_fft 1024, hop 160, 64 mels
from 60 to 7800 Hz, standardised by statistics of the task's training split (EVAR) or fixed `norm_stats`.

Two sets of mel filters (`mel_scale`), which change the embeddings by about 18 % (median relative L2 on Speech
Commands clips):
- 'slaney' (default): Slaney-scale filters scaled to unit area, as EVAR's wrapper (`ar_byola.AR_BYOLA`) computes
  its log-mel with nnAudio's MelSpectrogram defaults; the same front end as BYOL-A v2 below. Checked against EVAR's
  wrapper (nttcslab/eval-audio-repr 88ba772, nnAudio 0.3.4) with the real d512 weights on real Speech Commands
  clips: see `benchmarks/parity_evar_byola.py` and tests/test_byola_evar.py.
- 'htk': HTK-scale filters without normalisation, as the official byol-a code (torchaudio's MelSpectrogram)
  computes it (config/byola_official.yaml). Checked against the official code (nttcslab/byol-a AudioNTT2020 +
  torchaudio MelSpectrogram) on real clips with the real d512 weights: log-mel within 1.2e-4, embeddings within
  1.6e-6 relative. Re-check with `python benchmarks/parity_byola.py --byol_a_parent <dir> --weights <pth>
  --audio_glob '<clips>'`.

v2 (AudioNTT2022, official checkpoint AudioNTT2022-BYOLA-64x96d2048.pth): 2 x [Conv2d 3x3 -> BN -> ReLU ->
MaxPool 2], frames flattened to 64 x 16 = 1024-d, MLP Linear(1024, 2048) -> ReLU -> Dropout -> Linear(2048, 2048)
-> ReLU, and each frame's output is the conv frame and the MLP output stacked: 3072-d every 40 ms. The v2 release
computes its log-mel with nnAudio instead of torchaudio: the same STFT (centred, reflect padding, periodic Hann) but
Slaney-scale mel filters scaled to unit area (librosa's defaults), log(mel + eps), then standardised like v1.

Checked against the official v2 code (byol_a2.models.AudioNTT2022Encoder + nnAudio 0.3.4 MelSpectrogram, random
weights with randomised BatchNorm statistics, loaded strictly here) on 7 real clips of 0.3 s to 25.8 s: log-mel
within 8.5e-5, frame embeddings within 1.8e-6 relative, pooled 7.6e-7. Re-check with
`python benchmarks/parity_byola2.py --byol_a_v2 <byol-a/v2> --audio <clips>` (its docstring has the exact command).
The real v2 weights were not available here, so they were not run.

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
from ..frontend import slaney_mel_filterbank
from .base import Frames, lengths_to_mask, load_checkpoint, load_strict, select_layers, selected_width
from .spec import MelSpec, SpecParams

WEIGHTS_URL = 'https://github.com/nttcslab/byol-a/tree/master/pretrained_weights'
MIN_FRAMES = 8  # three 2x poolings need at least 8 input frames to give one output frame
MEL_SCALES = ('slaney', 'htk')  # BYOLAParams.mel_scale


@dataclass(frozen=True)
class BYOLAParams(SpecParams):
    """YAML keys of `byola`: SpecParams' front-end keys (16 kHz, n_fft / window 1024, hop 160 samples, 64 mels,
    60-7800 Hz) and:

    Keys:
        weight_file: an official AudioNTT2020 checkpoint (d512 / d1024 / d2048; the width is read from it).
        mel_scale: 'slaney' (default): Slaney-scale mel filters normalised to unit area (nnAudio's and librosa's
            defaults), as EVAR's wrapper computes BYOL-A's log-mel; 'htk': HTK-scale filters without normalisation,
            as the official byol-a code (torchaudio) does. Any other value is an EvarError.
        norm_stats: [mean, std] of the log-mel (natural log of mel power); None: computed on the task's training
            split.
        output_layers: 0 the last conv block's frames (64 x n_mels / 8 = 512-d), 1 / -1 the MLP (the embedding), a
            list, or 'all'.
        layer_average: with several output_layers, average them instead of concatenating (equal widths only).
    """
    weight_file: Optional[str] = None
    mel_scale: str = 'slaney'  # 'slaney' as EVAR's wrapper (nnAudio), 'htk' as the official byol-a code
    norm_stats: Optional[list] = None  # [mean, std] of log-mel; None: computed on the task's training split
    output_layers: Any = -1  # 0: last conv block (512-d frames), 1 / -1: the projection MLP (embedding)
    layer_average: bool = False


def conv_block(cin: int, cout: int) -> list:
    """[Conv2d 3x3 pad 1, BatchNorm2d, ReLU, MaxPool2d 2]: [B, cin, F, T] -> [B, cout, F // 2, T // 2]."""
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


class ConvFrameEncoder(nn.Module):
    """Conv blocks over a log-mel [B, F, T] whose output frames are flattened as (time, mel x channel); the base of
    AudioNTT2020 (v1) and AudioNTT2022 (v2). Subclasses set `features` and `fc`."""

    def folded_features(self) -> nn.Sequential:
        """`features` with each BatchNorm folded into its convolution, for inference; rebuilt whenever a weight or
        statistic has changed (a fine-tuning step, load_state_dict, a move to another device). Kept outside the
        module's parameters and state dict, so an optimiser or a saved state never sees the copy."""
        # Inference tensors (a model built under inference_mode) have no version counter and cannot be trained.
        key = tuple((t.data_ptr(), 0 if t.is_inference() else t._version)
                    for t in (*self.features.parameters(), *self.features.buffers()))
        cached = self.__dict__.get('_folded')
        if cached is None or cached[0] != key:
            cached = self.__dict__['_folded'] = (key, fold_batchnorm(self.features))
        return cached[1]

    def conv_frames(self, x: torch.Tensor, frame_lengths: torch.Tensor):
        """x: [B, F, T] normalised log-mel, zero past each clip's end -> ([B, T', F' x C] frames, lengths)."""
        # The folded copy only where no gradient is wanted: gradients must reach `features` itself.
        features = self.features if self.training or torch.is_grad_enabled() else self.folded_features()
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
        return x.permute(0, 3, 2, 1).reshape(b, t, f * c), frame_lengths  # (time, mel, channel) as the official


class AudioNTT2020(ConvFrameEncoder):
    """BYOL-A v1's encoder (nttcslab/byol-a): three conv blocks, then an MLP of width d on each flattened frame
    (Linear, ReLU, Dropout 0.3, Linear, ReLU); official key names features.* and fc.*."""
    def __init__(self, n_mels: int = 64, d: int = 512):
        super().__init__()
        self.features = nn.Sequential(*conv_block(1, 64), *conv_block(64, 64), *conv_block(64, 64))
        self.fc = nn.Sequential(nn.Linear(64 * (n_mels // 8), d), nn.ReLU(), nn.Dropout(p=0.3), nn.Linear(d, d),
                                nn.ReLU())

    @property
    def widths(self) -> list:
        """D of each output layer: [conv frames, embedding]."""
        return [self.fc[0].in_features, self.fc[3].out_features]

    def forward(self, x: torch.Tensor, frame_lengths: torch.Tensor):
        """x: [B, F, T] normalised log-mel, zero past each clip's end -> ([conv frames, embedding], lengths)."""
        conv_frames, frame_lengths = self.conv_frames(x, frame_lengths)
        return [conv_frames, self.fc(conv_frames)], frame_lengths


class BYOLA(MelSpec):
    """BYOL-A v1 (AudioNTT2020): frames every 80 ms (three 2x poolings of 10 ms log-mel frames)."""
    Params = BYOLAParams
    augment_point = 'spectrogram'  # fine-tuning's augmentations act on the normalised input in `encode`
    needs_norm_stats = True
    # 2: padding zeroed after each pooling (odd-length clips no longer see it); 3: mel_scale, Slaney by default
    cache_version = 3
    min_frames = MIN_FRAMES  # input frames that give one output frame

    def __init__(self, params: BYOLAParams):
        """Builds the front end and loads the encoder.

        Raises:
            EvarError: `mel_scale` is not 'slaney' or 'htk' (checked before the weights are read), or the weight
                file is missing or does not fit (see `load_encoder`).
        """
        if params.mel_scale not in MEL_SCALES:
            raise EvarError(f'{type(self).__name__}: mel_scale {params.mel_scale!r} is not one of {MEL_SCALES}: '
                            "'slaney' (EVAR's wrapper, nnAudio) or 'htk' (the official byol-a code, torchaudio).")
        super().__init__(params)
        p = params
        if p.mel_scale == 'slaney':  # MelSpec's front end has HTK filters; same STFT, so only the filters change
            self.spec.mel_fb = slaney_mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.f_min, p.f_max)
        self.body = self.load_encoder(params)
        self.reset_norm_stats()

    @property
    def frame_hop_sec(self) -> float:
        """A frame per `min_frames` log-mel frames (the poolings' total stride)."""
        return self.min_frames * self.params.hop_size / self.params.sample_rate

    @property
    def embedding_dim(self) -> int:
        """The width of the chosen output_layers (`body.widths`), summed when concatenated."""
        return selected_width(self.body.widths, self.params.output_layers, self.params.layer_average)

    def load_encoder(self, params) -> nn.Module:
        """The AudioNTT2020 encoder with the checkpoint's weights (its width d from fc.3.weight).

        Raises:
            EvarError: a missing file, or one without fc.3.weight or whose tensors do not match.
        """
        state = load_checkpoint(params.weight_file, 'BYOL-A', WEIGHTS_URL)
        state = {k: v for k, v in state.items() if k.startswith(('features.', 'fc.'))} or state
        if 'fc.3.weight' not in state:
            raise EvarError(f'BYOL-A: weight file {params.weight_file} has no fc.3.weight; expected an AudioNTT2020 '
                            f'checkpoint (keys features.*, fc.*).')
        d = int(state['fc.3.weight'].shape[0])
        warn_feature_d('BYOL-A', params.feature_d, d)
        body = AudioNTT2020(n_mels=params.n_mels, d=d)
        load_strict(body, state, params.weight_file)
        return body

    def features(self, wav, lengths):
        """Log-mel [B, n_mels, T] (not yet standardised) and frame counts; clips shorter than `min_frames` frames are
        extended with digital-silence frames to one output frame."""
        spec, frames = self.spec(wav, lengths)
        n = self.min_frames
        short = frames < n
        if bool(short.any()):  # very short clips: extend with digital-silence frames up to one output frame
            if spec.shape[-1] < n:
                spec = nn.functional.pad(spec, (0, n - spec.shape[-1]))
            silence = lengths_to_mask(frames, spec.shape[-1]).logical_not() & short[:, None]
            silence[:, n:] = False
            spec = spec.masked_fill(silence[:, None, :], float(torch.log(torch.tensor(self.spec.eps))))
        return spec, frames.clamp(min=n)

    def encode(self, feats, feat_lengths) -> Frames:
        """Standardised log-mel through the encoder; frames of the chosen `output_layers`."""
        layers, frame_lengths = self.body(self.augment_input(self.normalize(feats, feat_lengths)), feat_lengths)
        x = select_layers(layers, self.params.output_layers, self.params.layer_average)
        return Frames(x, lengths_to_mask(frame_lengths, x.shape[1]))


def warn_feature_d(model_name: str, configured: Optional[int], d: int) -> None:
    """A UserWarning when the config's feature_d is set and differs from the checkpoint's width d (d is used)."""
    if configured is not None and configured != d:
        warnings.warn(f'{model_name}: feature_d {configured} in the config differs from the checkpoint\'s {d}; '
                      f'using {d}.', stacklevel=4)


# BYOL-A v2 (Niizumi et al., TASLP 2023): AudioNTT2022 encoder, nnAudio (Slaney) log-mel front end.

V2_WEIGHTS_URL = 'https://github.com/nttcslab/byol-a/tree/master/v2'


@dataclass(frozen=True)
class BYOLA2Params(BYOLAParams):
    """YAML keys of `byola2`: BYOLAParams' (mel_scale 'slaney' by default, the v2 release's nnAudio front end),
    weight_file an AudioNTT2022 checkpoint, and output_layers 0 the conv frames (1024-d), 1 the MLP (2048-d), 2 / -1
    both stacked (3072-d, the official v2 output)."""
    # 0: conv frames (1024-d), 1: the MLP (2048-d), 2 / -1: both stacked (3072-d, the official v2 output)
    output_layers: Any = -1


class AudioNTT2022(ConvFrameEncoder):
    """The v2 encoder: `conv_layers` conv blocks, an MLP on the flattened conv frames, and the conv frames and MLP
    output concatenated per frame (d = conv_d + the MLP's output size)."""

    def __init__(self, n_mels: int = 64, d: int = 3072, base_d: int = 64, mlp_hidden_d: int = 2048,
                 conv_layers: int = 2):
        super().__init__()
        blocks = conv_block(1, base_d)
        for _ in range(conv_layers - 1):
            blocks += conv_block(base_d, base_d)
        self.features = nn.Sequential(*blocks)
        conv_d = base_d * (n_mels // 2 ** conv_layers)
        self.fc = nn.Sequential(nn.Linear(conv_d, mlp_hidden_d), nn.ReLU(), nn.Dropout(p=0.3),
                                nn.Linear(mlp_hidden_d, d - conv_d), nn.ReLU())

    @property
    def widths(self) -> list:
        """D of each output layer: [conv frames, MLP output, both stacked]."""
        conv_d, mlp_d = self.fc[0].in_features, self.fc[3].out_features
        return [conv_d, mlp_d, conv_d + mlp_d]

    def forward(self, x: torch.Tensor, frame_lengths: torch.Tensor):
        """x: [B, F, T] normalised log-mel -> ([conv frames, MLP output, both stacked], lengths)."""
        conv_frames, frame_lengths = self.conv_frames(x, frame_lengths)
        mlp = self.fc(conv_frames)
        return [conv_frames, mlp, torch.cat([conv_frames, mlp], dim=-1)], frame_lengths


def v2_encoder_state(state: dict) -> dict:
    """The encoder's tensors, as the official loader picks them: a 'body.' (EVAR) or 'model.' prefix dropped, then
    only features.* and fc.* kept."""
    out = {}
    for key, value in state.items():
        for prefix in ('body.', 'model.'):
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        if key.startswith(('features.', 'fc.')):
            out[key] = value
    return out or state


class BYOLA2(BYOLA):
    """BYOL-A v2. The encoder's size (conv blocks, channels, MLP widths) is read from the checkpoint's shapes."""
    Params = BYOLA2Params
    cache_version = 1

    def load_encoder(self, params) -> nn.Module:
        """The AudioNTT2022 encoder sized from the checkpoint's shapes, loaded strictly; sets min_frames to the
        poolings' total stride (2 ** conv blocks).

        Raises:
            EvarError: a missing file, or one without the AudioNTT2022 tensors.
        """
        state = v2_encoder_state(load_checkpoint(params.weight_file, 'BYOL-A v2', V2_WEIGHTS_URL))
        if not {'features.0.weight', 'fc.0.weight', 'fc.3.weight'} <= set(state):
            raise EvarError(f'BYOL-A v2: weight file {params.weight_file} lacks features.0.weight, fc.0.weight or '
                            f'fc.3.weight; expected an AudioNTT2022 checkpoint (keys features.*, fc.*).')
        conv_layers = sum(1 for k, v in state.items() if k.startswith('features.') and k.endswith('.weight')
                          and v.dim() == 4)
        base_d = int(state['features.0.weight'].shape[0])
        mlp_hidden_d, conv_d = (int(n) for n in state['fc.0.weight'].shape)
        d = conv_d + int(state['fc.3.weight'].shape[0])
        warn_feature_d('BYOL-A v2', params.feature_d, d)
        body = AudioNTT2022(n_mels=params.n_mels, d=d, base_d=base_d, mlp_hidden_d=mlp_hidden_d,
                            conv_layers=conv_layers)
        load_strict(body, state, params.weight_file)
        self.min_frames = 2 ** conv_layers
        return body
