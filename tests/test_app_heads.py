"""app.heads: class weights, frame pooling and SpecAugment masks by hand; the heads learn a separable toy set and
select their epoch on the validation score they are given."""

import numpy as np
import pytest
import torch

from app.heads import ClipHead, FrameHead, TrainSettings, balanced_class_weights, pool_frames, spec_augment
from evar.errors import EvarError


def test_balanced_class_weights_by_hand():
    # counts 6, 2, 0, 4 of n = 12 over C = 4 classes: n / (C * n_c) = 0.5, 1.5, (absent) 0, 0.75
    y = [0] * 6 + [1] * 2 + [3] * 4
    np.testing.assert_allclose(balanced_class_weights(y, 4), [0.5, 1.5, 0.0, 0.75])


def test_pool_frames_averages_valid_frames_only():
    x = np.arange(5, dtype=np.float32).reshape(1, 5, 1)  # frames 0..4, the last two padding
    mask = np.array([[True, True, True, False, False]])
    px, pm = pool_frames(x, mask, 2)
    assert px[0, :, 0].tolist() == [0.5, 2.0, 0.0] and pm.tolist() == [[True, True, False]]
    same = pool_frames(x, mask, 1)
    assert same[0] is x and same[1] is mask


def test_spec_augment_masks_within_valid_frames():
    gen = torch.Generator().manual_seed(0)
    x = torch.ones(8, 10, 6)
    mask = torch.zeros(8, 10, dtype=torch.bool)
    mask[:, :4] = True
    out = spec_augment(x, mask, time_width=3, feature_width=2, gen=gen)
    assert torch.equal(x, torch.ones(8, 10, 6))  # a copy
    assert (out[:, 4:, :] == 1).sum() >= 8 * 6 * 4  # padding is never time-masked (only feature-masked)
    zero_frames = (out == 0).all(2).sum(1)
    assert (zero_frames <= 3).all()
    assert torch.equal(spec_augment(x, mask, 0, 0, gen), x)


def _toy(n, d, seed):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return (rng.normal(size=(n, d)) + 6 * np.eye(3, d)[y]).astype(np.float32), y


def test_clip_head_learns_and_selects_on_given_score():
    X, y = _toy(60, 8, 0)
    Xv, yv = _toy(30, 8, 1)
    seen = []

    def score(probs):
        seen.append(float((probs.argmax(1) == yv).mean()))
        return seen[-1]

    settings = TrainSettings(hidden=(), lr=1e-2, batch_size=10, epochs=15, early_stop_epochs=0, seed=3)
    head = ClipHead(3, settings).fit(X, y, Xv, score)
    assert len(seen) == 15 and head.best_valid_ == max(seen) > 0.9
    assert head.best_epoch_ == max(i for i, v in enumerate(seen) if v == max(seen)) + 1  # ties: the later epoch
    probs = head.predict_proba(Xv)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
    with pytest.raises(EvarError, match='never finite'):
        ClipHead(3, TrainSettings(epochs=2, seed=0)).fit(X, y, Xv, lambda p: float('nan'))


@pytest.mark.parametrize('kind', ['transformer', 'mlp'])
def test_frame_head_learns_toy_frames(kind):
    X, y = _toy(36, 8, 0)
    Xv, yv = _toy(24, 8, 1)
    frames = lambda A: (np.repeat(A[:, None], 4, 1), np.ones((len(A), 4), bool))  # noqa: E731
    head = FrameHead(3, TrainSettings(hidden=(16,), lr=1e-2, batch_size=12, epochs=8, early_stop_epochs=0, seed=0), kind=kind,
                     time_mask=2, feature_mask=1)
    head.fit(frames(X), y, frames(Xv), lambda p: float((p.argmax(1) == yv).mean()))
    assert head.best_valid_ > 0.8
    assert head.predict_proba(frames(Xv)).shape == (24, 3)
    with pytest.raises(EvarError, match='--head'):
        FrameHead(3, TrainSettings(), kind='lstm')


def test_head_inputs_pool_clip_by_clip_as_the_padded_pool():
    from app.runner import EmbeddedTask, SplitRows, head_inputs
    from evar.embed.extract import FrameEmbeddings

    rng = np.random.default_rng(0)
    lengths = [5, 2, 7]
    frames = FrameEmbeddings(values=rng.normal(size=(sum(lengths), 3)).astype(np.float32),
                             offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    rows = np.array([2, 0, 1])
    split = SplitRows(rows=rows, y=np.zeros(3, np.int64), patients=np.array(['a'] * 3), recordings=np.array(['r'] * 3))
    task = EmbeddedTask(task=None, prepared=None, splits={'test': split}, embeddings=frames)
    x, mask = head_inputs(task, 'test', frame_pool=3)
    ref_x, ref_mask = pool_frames(*frames.padded(rows), 3)
    assert mask.tolist() == ref_mask.tolist() == [[True] * 3, [True, True, False], [True, False, False]]
    np.testing.assert_allclose(x, ref_x, rtol=1e-6)
    np.testing.assert_allclose(x[1, 0], frames.clip(0)[:3].mean(0), rtol=1e-6)  # clip 0's first three frames
    x1, m1 = head_inputs(task, 'test')
    assert x1.shape == (3, 7, 3) and m1.sum() == 14
