"""Fine-tuning augmentations (evar.training.augment): SpecAugment's masks, the random resize crop, mixup."""

import pytest
import torch

from evar.errors import EvarError
from evar.training.augment import InputAugment, RandomResizeCrop, SpecAugment, mixup


def _bands(zeroed: torch.Tensor) -> list:
    """Indices where a bool vector is True."""
    return torch.nonzero(zeroed).flatten().tolist()


def test_specaugment_masks_are_contiguous_bands_of_bounded_width_filled_with_zero():
    torch.manual_seed(0)
    x = torch.randn(64, 20, 40) + 10  # no zeros of its own
    y = SpecAugment(freq_mask=6, time_mask=9)(x)
    zero = y == 0
    freq_rows = zero.all(2)  # [B, F]: whole rows zeroed by the frequency mask
    time_cols = zero.all(1)  # [B, T]
    freq_widths, time_widths = [], []
    for b in range(len(x)):
        rows, cols = _bands(freq_rows[b]), _bands(time_cols[b])
        for idx in (rows, cols):
            assert idx == list(range(idx[0], idx[0] + len(idx))) if idx else True  # one contiguous band
        freq_widths.append(len(rows))
        time_widths.append(len(cols))
        # Every zero is in one of the two bands; everything else is untouched.
        expected = torch.zeros(20, 40, dtype=torch.bool)
        expected[rows, :] = True
        expected[:, cols] = True
        assert torch.equal(zero[b], expected)
        assert torch.equal(y[b][~expected], x[b][~expected])
    assert max(freq_widths) <= 5 and max(time_widths) <= 8  # width in [0, param)
    assert min(freq_widths) == 0 and max(freq_widths) >= 4  # the whole range is drawn over 64 examples
    assert len(set(time_widths)) > 3  # examples get independent masks


def test_specaugment_examples_masked_independently():
    torch.manual_seed(1)
    x = torch.ones(32, 30, 30)
    zero = SpecAugment(10, 10)(x) == 0
    assert len({tuple(z.all(0).tolist()) for z in zero}) > 10  # the time bands differ


def test_specaugment_off_and_bad_bounds():
    x = torch.randn(2, 5, 7)
    assert torch.equal(SpecAugment(0, 0)(x), x)
    with pytest.raises(EvarError, match='freq_mask'):
        SpecAugment(-1, 3)


def test_rrc_shape_and_identity_at_unit_scale():
    torch.manual_seed(2)
    x = torch.randn(3, 16, 50)
    assert RandomResizeCrop()(x).shape == x.shape
    identity = RandomResizeCrop(virtual_crop_scale=(1.0, 1.0), freq_scale=(1.0, 1.0), time_scale=(1.0, 1.0))
    # Bicubic weights at the input's own grid points are exactly (0, 1, 0, 0): the crop is the input itself.
    assert torch.equal(identity(x), x)


def test_rrc_zoom_out_shows_the_zero_canvas_and_zoom_in_stretches():
    torch.manual_seed(3)
    x = torch.ones(4, 10, 20)
    # Crop the whole 1.0 x 2.0 canvas: the time axis shows zero margins a quarter wide on each side.
    out = RandomResizeCrop(virtual_crop_scale=(1.0, 2.0), freq_scale=(1.0, 1.0), time_scale=(2.0, 2.0))(x)
    assert out[:, :, 0].abs().max() < 1e-6 and out[:, :, -1].abs().max() < 1e-6
    assert torch.allclose(out[:, :, 9:11], torch.ones(4, 10, 2), atol=1e-5)
    ramp = torch.arange(20.0).expand(1, 10, 20)
    # A half-width crop resized back: the ramp's slope halves (bicubic is exact on linear data inside the crop).
    zoom = RandomResizeCrop(virtual_crop_scale=(1.0, 1.0), freq_scale=(1.0, 1.0), time_scale=(0.5, 0.5))(ramp)
    slope = (zoom[0, 0, -1] - zoom[0, 0, 0]) / 19
    assert slope == pytest.approx(9 / 19, abs=1e-5)  # float32 interpolation error on values up to 20


def test_rrc_bad_scales():
    with pytest.raises(EvarError, match='virtual_crop_scale'):
        RandomResizeCrop(virtual_crop_scale=(0.5, 1.5))
    with pytest.raises(EvarError, match='time_scale'):
        RandomResizeCrop(time_scale=(1.5, 0.6))


def test_augment_replays_under_manual_seed_and_saved_rng_state():
    x = torch.randn(4, 16, 40)
    aug = InputAugment(freq_mask=5, time_mask=8, rrc=True)
    torch.manual_seed(7)
    a = aug(x)
    torch.manual_seed(7)
    b = aug(x)
    state = torch.get_rng_state()
    c = aug(x)
    torch.set_rng_state(state)
    assert torch.equal(a, b) and torch.equal(aug(x), c)
    assert not torch.equal(a, c)


def test_input_augment_active_and_repr():
    x = torch.randn(2, 8, 12)
    off = InputAugment()
    assert not off.active and off(x) is x and 'none' in repr(off)
    on = InputAugment(freq_mask=3, rrc=True)
    assert on.active and 'SpecAugment(freq_mask=3' in repr(on) and 'RandomResizeCrop' in repr(on)


def test_mixup_is_a_convex_combination_of_pairs():
    torch.manual_seed(4)
    wav = torch.randn(6, 100, dtype=torch.float64)
    lengths = torch.tensor([100, 80, 60, 40, 30, 10])
    wav[1, 80:] = 99.0  # padding that must not enter a mixed clip
    targets = torch.eye(6, dtype=torch.float64)
    mixed, mixed_len, mixed_t = mixup(wav, lengths, targets, alpha=0.4)
    clean = wav * (torch.arange(100)[None, :] < lengths[:, None])
    # Each mixed target row is lam * e_i + (1 - lam) * e_j: read lam and the partner j back from it.
    for i in range(6):
        lam = float(mixed_t[i, i]) if mixed_t[i].count_nonzero() > 1 else 1.0
        partner = int(torch.argmax(torch.where(torch.arange(6) == i, -1.0, mixed_t[i]))) if lam < 1 else i
        assert mixed_t[i].sum() == pytest.approx(1.0)
        assert 0 <= lam <= 1
        assert torch.allclose(mixed[i], lam * clean[i] + (1 - lam) * clean[partner])
        assert mixed_len[i] == max(lengths[i], lengths[partner])
    assert (mixed.abs() < 50).all()


def test_mixup_off_and_errors():
    wav, lengths, targets = torch.randn(3, 10), torch.tensor([10, 5, 2]), torch.eye(3)
    out = mixup(wav, lengths, targets, alpha=0.0)
    assert out[0] is wav and out[1] is lengths and out[2] is targets
    with pytest.raises(EvarError, match='float'):
        mixup(wav, lengths, torch.tensor([0, 1, 2]), alpha=0.2)
    torch.manual_seed(5)
    a = mixup(wav, lengths, targets, alpha=0.2)
    torch.manual_seed(5)
    assert all(torch.equal(u, v) for u, v in zip(a, mixup(wav, lengths, targets, alpha=0.2)))
