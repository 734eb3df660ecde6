"""--head mlp_search: a grid of probes (linear included) chosen on the validation split only; the row records the choice."""

import json
import re

import numpy as np
import pytest

from evar.errors import EvarError
from evar.heads import head_class
from evar.heads.base import HeadOptions
from evar.heads.mlp_search import MLPSearchHead
from evar.heads.probe import ProbeHead
from evar.modes.linear import lineareval
from evar.results import read_rows

from helpers import ROOT


def xor(n, rng, flip=False):
    """2-D XOR classes (a hidden layer separates them, a linear layer cannot) plus 4 noise dimensions."""
    X = rng.uniform(-1, 1, size=(n, 6)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    return X, (1 - y) if flip else y


def test_selects_on_validation_even_where_test_prefers_another_point():
    rng = np.random.default_rng(0)
    (X, y), (Xv, yv) = xor(400, rng), xor(200, rng)
    Xt, yt = xor(200, rng, flip=True)  # test labels inverted: the point best on validation is worst on test
    head = MLPSearchHead(lrs=(1e-3, 1e-2), hiddens=((), (64,)), epochs=60, early_stop_epochs=0, seed=1).fit(X, y, Xv, yv)
    assert [(lr, h) for lr, h, _, _ in head.history_] == [(1e-3, ()), (1e-2, ()), (1e-3, (64,)), (1e-2, (64,))]
    valid = [v for _, _, v, _ in head.history_]
    assert (head.lr_, head.hidden_) == head.grid()[int(np.argmax(valid))] and head.best_valid_ == max(valid)
    assert head.hidden_ == (64,) and head.best_valid_ > 0.85  # a hidden layer reads XOR; measured 0.985 (linear 0.54)
    test = [ProbeHead(hidden=h, lr=lr, epochs=60, early_stop_epochs=0, seed=1).fit(X, y, Xv, yv).score(Xt, yt)
            for lr, h in head.grid()]
    assert head.score(Xt, yt) == test[head.grid().index((head.lr_, head.hidden_))]  # the chosen probe itself scores
    assert max(test) > head.score(Xt, yt) + 0.3  # test would choose another point (measured 0.525 vs 0.02)
    assert re.fullmatch(r'lr 0\.01? mlp64, valid 0\.\d{4}, best epoch \d+ of 60', head.selection())


def test_linear_probe_is_in_the_grid_and_kept_on_a_tie():
    rng = np.random.default_rng(1)

    def blobs(n):  # three well separated clusters: every point of the grid reaches validation accuracy 1
        y = rng.integers(0, 3, n)
        X = rng.normal(scale=0.1, size=(n, 6)).astype(np.float32)
        X[np.arange(n), y] += 3
        return X, y

    head = MLPSearchHead(lrs=(0.1,), hiddens=((), (1024,)), epochs=40, early_stop_epochs=0).fit(*blobs(150), *blobs(60))
    assert [v for _, _, v, _ in head.history_] == [1.0, 1.0]
    assert head.hidden_ == () and head.selection().startswith('lr 0.1 linear, valid 1.0000')  # the simpler point
    default = MLPSearchHead().grid()
    assert default == [(1e-4, ()), (1e-3, ()), (1e-2, ()), (1e-4, (1024,)), (1e-3, (1024,)), (1e-2, (1024,))]


def test_options_and_registry():
    assert head_class('mlp_search') is MLPSearchHead

    class Run:
        early_stop_epochs = 7

    head = MLPSearchHead.from_options(HeadOptions(head='mlp_search', epochs=9), Run, seed=3, device='cpu')
    assert (head.epochs, head.early_stop_epochs, head.seed, head.name) == (9, 7, 3, 'mlp_search')
    with pytest.raises(EvarError, match='chooses the learning rate and hidden layers itself; drop --lr'):
        MLPSearchHead.from_options(HeadOptions(head='mlp_search', lr=0.1), Run, seed=3, device='cpu')
    with pytest.raises(EvarError, match='at least one learning rate'):
        MLPSearchHead(lrs=())


def test_row_records_the_chosen_point(tmp_path, work):
    results = lineareval(ROOT / 'config' / 'melspec.yaml', 'demo', head=HeadOptions(head='mlp_search', epochs=5),
                         work_root=work, results_dir=tmp_path / 'results', logs_dir=tmp_path / 'logs', progress=False)
    row, = read_rows(tmp_path / 'results' / 'scores.csv')
    assert (row.head, row.mode, row.score) == ('mlp_search', 'linear', pytest.approx(results[0].score, abs=1e-5))
    chosen = re.search(r'selected: fold 1 lr (\S+) (linear|mlp1024), valid 0\.\d{4}, best epoch \d+ of 5\)', row.report)
    assert chosen and float(chosen.group(1)) in (1e-4, 1e-3, 1e-2), row.report
    assert results[0].folds[0].selection in row.report and ', test clips 60' in row.report
    params = json.loads(row.settings)['head_params']
    assert params['lrs'] == [1e-4, 1e-3, 1e-2] and params['hiddens'] == [[], [1024]] and params['epochs'] == 5
