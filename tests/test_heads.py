import numpy as np
import pytest

from evar.heads.logreg import LogisticRegressionHead
from evar.heads.probe import ProbeHead
from evar.splits import carve_validation


def blobs(n_classes, n=60, d=8, seed=0, spread=3.0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, d)) * spread
    y = np.repeat(np.arange(n_classes), n)
    return (centres[y] + rng.standard_normal((len(y), d))).astype(np.float32), y


@pytest.mark.parametrize('make', [lambda: ProbeHead(lr=1e-2, epochs=50), lambda: LogisticRegressionHead()])
def test_binary_task_has_two_outputs_and_learns(make):
    X, y = blobs(2)
    head = make().fit(X[::2], y[::2], X[1::2], y[1::2])
    assert head.model_(head._tensor_x(X[:3])).shape == (3, 2)
    assert head.score(X[1::2], y[1::2]) > 0.9
    assert head.predict(X).shape == (len(X),) and set(np.unique(head.predict(X))) <= {0, 1}


def test_mlp_head_and_early_stopping_restores_best():
    X, y = blobs(4, spread=0.4)  # overlapping classes: validation accuracy plateaus and wobbles
    head = ProbeHead(hidden=(16,), lr=1e-2, epochs=200, early_stop_epochs=5).fit(X[::2], y[::2], X[1::2], y[1::2])
    vals = [v for _, _, v in head.history_]
    last_best = max(i for i, v in enumerate(vals) if v == max(vals))  # ties count as improvements (EVAR)
    assert head.name == 'mlp16' and head.epochs_run_ < 200
    assert head.epochs_run_ == last_best + 1 + 5
    assert head.score(X[1::2], y[1::2]) == pytest.approx(max(vals))


def test_multilabel_uses_sigmoid_and_map():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 6)).astype(np.float32)
    Y = np.stack([X[:, 0] > 0, X[:, 1] > 0.5, X[:, 0] + X[:, 2] > 0], 1).astype(np.float32)
    for head in (ProbeHead(lr=1e-2, epochs=100), LogisticRegressionHead()):
        head.fit(X[:200], Y[:200], X[200:250], Y[200:250])
        scores = head.predict_scores(X[250:])
        assert scores.shape == (50, 3) and head.metric_ == 'mAP'
        assert head.score(X[250:], Y[250:]) > 0.85


def test_logreg_picks_strength_on_validation():
    X, y = blobs(3, d=40, spread=0.6, seed=3)
    head = LogisticRegressionHead().fit(X[::3], y[::3], X[1::3], y[1::3])
    assert head.l2_ in head.l2_grid and len(head.history_) == len(head.l2_grid)
    assert head.best_valid_ == max(v for _, v in head.history_)


def test_seed_reproducibility():
    X, y = blobs(3)
    a = ProbeHead(seed=5, lr=1e-2, epochs=20).fit(X, y, X, y).predict_scores(X)
    b = ProbeHead(seed=5, lr=1e-2, epochs=20).fit(X, y, X, y).predict_scores(X)
    np.testing.assert_array_equal(a, b)


def test_carved_validation_is_stratified_and_seeded():
    labels = [('a',)] * 50 + [('b',)] * 10
    rows = np.arange(60)
    train, valid = carve_validation(rows, labels, 0.1, seed=1)
    assert len(valid) == 6 and sum(labels[r] == ('b',) for r in valid) == 1
    assert not set(train) & set(valid) and len(train) + len(valid) == 60
    assert np.array_equal(valid, carve_validation(rows, labels, 0.1, seed=1)[1])


def test_adam_matches_torch_optim():
    import torch

    from evar.heads.base import Adam

    torch.manual_seed(0)
    a, b = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    ours, ref = Adam(a.parameters(), lr=1e-2, weight_decay=1e-3), torch.optim.Adam(b.parameters(), lr=1e-2,
                                                                                      weight_decay=1e-3)
    x, y = torch.randn(20, 5), torch.randint(0, 3, (20,))
    for _ in range(30):
        for model, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('make', [lambda: ProbeHead(lr=1e-2, epochs=5, early_stop_epochs=0),
                                  lambda: LogisticRegressionHead(l2_grid=(1e-2, 1e-3))])
def test_refit_resets_learned_state(make):
    X, y = blobs(3)
    head = make().fit(X[::2], y[::2], X[1::2], y[1::2])
    first = (len(head.history_), head.best_valid_)
    head.fit(X[1::2], y[1::2], X[::2], y[::2])
    assert len(head.history_) == first[0]  # scikit-learn convention: fit starts from scratch
    if isinstance(head, ProbeHead):
        assert head.epochs_run_ == 5
