"""Fine-tuning input augmentations, EVAR's recipe (nttcslab/eval-audio-repr, finetune.py).

SpecAugment and the random resize crop act on a model's *normalised* network input [B, F, T] (F frequency bins
by T frames), in training only: each spectrogram model passes that input through `AudioRepr.augment_input`
right after its normalisation. Mixup acts on the batch's waves and targets before the model.

Every random draw comes from torch's global CPU generator (no numpy, no Python `random`), so saving and restoring
`torch.get_rng_state()` replays the same augmentations (what `--resume` needs for a bit-identical run).
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

from ..errors import EvarError


def _uniform(n: int, low: float, high: float) -> torch.Tensor:
    """[n] float64 draws uniform in [low, high) from torch's global CPU generator."""
    return low + (high - low) * torch.rand(n, dtype=torch.float64)


def _axis_masks(batch: int, size: int, max_width: int) -> torch.Tensor:
    """[batch, size] bool, True inside one band per example of integer width uniform in [0, max_width) (capped at
    `size`) at a uniformly random start, as torchaudio's `mask_along_axis` draws them."""
    width = torch.floor(_uniform(batch, 0.0, 1.0) * min(max_width, size + 1)).long()
    start = torch.floor(_uniform(batch, 0.0, 1.0) * (size - width + 1).double()).long()
    pos = torch.arange(size)[None, :]
    return (pos >= start[:, None]) & (pos < (start + width)[:, None])


class SpecAugment:
    """SpecAugment's frequency then time masking (Park et al., Interspeech 2019), as EVAR applies it with
    torchaudio's FrequencyMasking(freq_mask) and TimeMasking(time_mask), with one mask drawn per example.

    Each example gets one band of frequency bins and one band of frames set to 0 (the mean of a normalised
    input); a band's width is uniform in [0, param) and its position uniform over the axis.

    Args:
        freq_mask: the frequency masks' width bound in bins (0: none).
        time_mask: the time masks' width bound in frames (0: none).

    Raises:
        EvarError: a negative bound.
    """

    def __init__(self, freq_mask: int, time_mask: int):
        if int(freq_mask) < 0 or int(time_mask) < 0:
            raise EvarError(f'SpecAugment: freq_mask and time_mask must be >= 0 (bins / frames), '
                            f'got freq_mask={freq_mask}, time_mask={time_mask}.')
        self.freq_mask, self.time_mask = int(freq_mask), int(time_mask)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, F, T] with its frequency and time bands zeroed; a new tensor (gradients flow through the rest)."""
        batch, n_freq, n_time = x.shape
        if self.freq_mask > 0:
            band = _axis_masks(batch, n_freq, self.freq_mask).to(x.device)
            x = x.masked_fill(band[:, :, None], 0.0)
        if self.time_mask > 0:
            band = _axis_masks(batch, n_time, self.time_mask).to(x.device)
            x = x.masked_fill(band[:, None, :], 0.0)
        return x

    def __repr__(self) -> str:
        return f'SpecAugment(freq_mask={self.freq_mask}, time_mask={self.time_mask})'


class RandomResizeCrop:
    """BYOL-A's random resize crop (Niizumi et al., IJCNN 2021; EVAR's finetune.py uses it as `--rrc`).

    Each example [F, T] is placed at the centre of a zero canvas of int(F * virtual_crop_scale[0]) by
    int(T * virtual_crop_scale[1]); a random area of int(F * u) by int(T * v) (u uniform in `freq_scale`, v in
    `time_scale`, clipped to [1, canvas]) at a uniformly random position is cropped and resized back to [F, T]
    by bicubic interpolation (align_corners=True). Zooming in stretches the sound along frequency and time;
    zooming out adds zero (mean) margins, so the model sees shifted and stretched versions of each clip.

    Args:
        virtual_crop_scale: (frequency, time) canvas size as a ratio of the input's (each >= 1).
        freq_scale: (min, max) crop height as a ratio of F.
        time_scale: (min, max) crop width as a ratio of T.

    Raises:
        EvarError: a canvas smaller than the input, or a scale range with min > max or min <= 0.
    """

    def __init__(self, virtual_crop_scale=(1.0, 1.5), freq_scale=(0.6, 1.5), time_scale=(0.6, 1.5)):
        for name, value in (('freq_scale', freq_scale), ('time_scale', time_scale)):
            if len(value) != 2 or not 0 < float(value[0]) <= float(value[1]):
                raise EvarError(f'RandomResizeCrop: {name} must be (min, max) with 0 < min <= max, got {value}.')
        if len(virtual_crop_scale) != 2 or min(float(s) for s in virtual_crop_scale) < 1.0:
            raise EvarError(f'RandomResizeCrop: virtual_crop_scale must be >= 1 in both axes (the canvas holds the '
                            f'input), got {virtual_crop_scale}.')
        self.virtual_crop_scale = tuple(float(s) for s in virtual_crop_scale)
        self.freq_scale = tuple(float(s) for s in freq_scale)
        self.time_scale = tuple(float(s) for s in time_scale)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, F, T] -> [B, F, T], each example cropped and resized independently."""
        batch, n_freq, n_time = x.shape
        canvas_f, canvas_t = int(n_freq * self.virtual_crop_scale[0]), int(n_time * self.virtual_crop_scale[1])
        top, left = (canvas_f - n_freq) // 2, (canvas_t - n_time) // 2
        canvas = x.new_zeros(batch, canvas_f, canvas_t)
        canvas[:, top:top + n_freq, left:left + n_time] = x
        # All draws at once on the CPU generator; crop sizes truncate as int() does in BYOL-A.
        heights = (_uniform(batch, *self.freq_scale) * n_freq).long().clamp(1, canvas_f)
        widths = (_uniform(batch, *self.time_scale) * n_time).long().clamp(1, canvas_t)
        rows = torch.floor(_uniform(batch, 0.0, 1.0) * (canvas_f - heights + 1).double()).long()
        cols = torch.floor(_uniform(batch, 0.0, 1.0) * (canvas_t - widths + 1).double()).long()
        # One interpolate per example: crops differ in size, and bicubic clamps at each crop's own border.
        out = [F.interpolate(canvas[b, r:r + h, c:c + w][None, None], size=(n_freq, n_time), mode='bicubic',
                             align_corners=True)[0, 0]
               for b, (r, c, h, w) in enumerate(zip(rows.tolist(), cols.tolist(), heights.tolist(), widths.tolist()))]
        return torch.stack(out)

    def __repr__(self) -> str:
        return (f'RandomResizeCrop(virtual_crop_scale={self.virtual_crop_scale}, freq_scale={self.freq_scale}, '
                f'time_scale={self.time_scale})')


class InputAugment:
    """EVAR's fine-tuning input augmentation (its `AudioFineuneAug`): SpecAugment, then the random resize crop.

    Set as a model's `input_augment`; the model applies it to its normalised input [B, F, T] in training only.

    Args:
        freq_mask, time_mask: SpecAugment's width bounds in bins / frames (0: that mask off).
        rrc: apply `RandomResizeCrop` with BYOL-A's default scales.
    """

    def __init__(self, freq_mask: int = 0, time_mask: int = 0, rrc: bool = False):
        self.spec_augment = SpecAugment(freq_mask, time_mask) if (freq_mask or time_mask) else None
        self.rrc = RandomResizeCrop() if rrc else None

    @property
    def active(self) -> bool:
        """False when the augmentation leaves every input unchanged (no mask and no crop)."""
        return self.spec_augment is not None or self.rrc is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, F, T] augmented (the same tensor when not `active`)."""
        if self.spec_augment is not None:
            x = self.spec_augment(x)
        if self.rrc is not None:
            x = self.rrc(x)
        return x

    def __repr__(self) -> str:
        parts = [repr(p) for p in (self.spec_augment, self.rrc) if p is not None]
        return f'InputAugment({", ".join(parts) if parts else "none"})'


def mixup(wav: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor, alpha: float) -> Tuple[torch.Tensor, ...]:
    """EVAR's mixup (Zhang et al., ICLR 2018; EVAR's finetune.py `Mixup`) of a batch of waves and their targets.

    Each example i is mixed with a partner perm[i] (one random permutation of the batch) with its own
    lam_i ~ Beta(alpha, alpha): wav_i * lam_i + wav_perm[i] * (1 - lam_i), and the same for the targets. Samples
    past each clip's length are zeroed first, so padding never enters a mixed clip.

    Args:
        wav: [B, N] waves, anything past each clip's length.
        lengths: [B] int64 valid samples per clip.
        targets: [B, C] float targets (one-hot or multi-hot, or already soft).
        alpha: Beta's concentration; <= 0 turns mixup off.

    Returns:
        (mixed waves [B, N], lengths [B] = the longer of each pair, mixed targets [B, C]); the inputs themselves
        when alpha <= 0.

    Raises:
        EvarError: targets that are not floating point, or shapes that do not share B.
    """
    if not targets.is_floating_point():
        raise EvarError(f'mixup: targets must be float one-hot / multi-hot [B, C], got dtype {targets.dtype}.')
    if not (wav.shape[0] == lengths.shape[0] == targets.shape[0]):
        raise EvarError(f'mixup: wav {tuple(wav.shape)}, lengths {tuple(lengths.shape)} and targets '
                        f'{tuple(targets.shape)} must share the batch size.')
    if alpha <= 0:
        return wav, lengths, targets
    batch = wav.shape[0]
    concentration = torch.full((batch,), float(alpha), dtype=torch.float64)
    lam = torch.distributions.Beta(concentration, concentration).sample()
    perm = torch.randperm(batch)
    lam_w, perm_d = lam.to(wav.device, wav.dtype), perm.to(wav.device)
    valid = torch.arange(wav.shape[1], device=wav.device)[None, :] < lengths.to(wav.device)[:, None]
    clean = wav * valid
    mixed = clean * lam_w[:, None] + clean[perm_d] * (1 - lam_w[:, None])
    lam_t = lam.to(targets.device, targets.dtype)[:, None]
    mixed_targets = targets * lam_t + targets[perm.to(targets.device)] * (1 - lam_t)
    return mixed, torch.maximum(lengths, lengths[perm.to(lengths.device)]), mixed_targets
