"""Heads select on the task's metric when it is not accuracy or mAP (HEAR's Beehive tasks score AUC-ROC): what is
selected on validation is what the test split is scored by; the default leaves run ids unchanged."""

import csv

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from evar.heads.base import HeadOptions
from evar.heads.knn import KNNHead
from evar.heads.logreg import LogisticRegressionHead
from evar.heads.mlp_search import MLPSearchHead
from evar.heads.probe import ProbeHead
from evar.metrics import roc_auc_ovr
from evar.modes.linear import lineareval, selecting_on_task_metric
from evar.tasks import BUILTIN_TASKS

from helpers import ROOT


def test_beehive_records_score_hears_primary_auc():
    assert {BUILTIN_TASKS[f'beehive_fold{i}'].metric for i in (0, 1)} == {'roc_auc_ovr'}
    options = HeadOptions(head='logreg')
    assert selecting_on_task_metric(options, 'accuracy') is options and selecting_on_task_metric(options, 'mAP') is options
    assert selecting_on_task_metric(options, 'roc_auc_ovr').selection_metric == 'roc_auc_ovr'


@pytest.mark.parametrize('head', [
    ProbeHead(epochs=6, early_stop_epochs=0, selection_metric='roc_auc_ovr'),
    LogisticRegressionHead(l2_grid=(1.0, 1e-2), selection_metric='roc_auc_ovr'),
    KNNHead(k='auto', k_grid=(1, 5), selection_metric='roc_auc_ovr'),
    MLPSearchHead(lrs=(1e-3,), hiddens=((), (8,)), epochs=3, early_stop_epochs=0, selection_metric='roc_auc_ovr'),
], ids=lambda h: type(h).__name__)
def test_heads_select_and_report_on_the_given_metric(head):
    rng = np.random.default_rng(0)
    y, y_val = rng.integers(0, 2, 80), rng.integers(0, 2, 40)
    X = rng.normal(size=(80, 6)).astype(np.float32) + y[:, None] * 0.7
    X_val = rng.normal(size=(40, 6)).astype(np.float32) + y_val[:, None] * 0.7
    head.fit(X, y, X_val, y_val)
    assert head.metric_ == 'roc_auc_ovr'
    # the kept validation score is the AUC of what was kept (not its accuracy)
    assert head.best_valid_ == pytest.approx(roc_auc_ovr(y_val, head.predict_scores(X_val)), abs=1e-6)
    # HEAR's aucroc: scikit-learn's macro AUC over the one-hot columns
    assert head.best_valid_ == pytest.approx(roc_auc_score(np.eye(2)[y_val], head.predict_scores(X_val)), abs=1e-6)


def test_a_task_scored_by_auc_records_it_and_selects_on_it(tmp_path, demo_root):
    """A binary user task (demo clips: tonal or not) with `metric: roc_auc_ovr`, through evar linear with logreg."""
    lines = (demo_root / 'metadata' / 'demo.csv').read_text().splitlines()[1:]
    rows = []
    for line in lines:
        name, label, split = line.split(',')
        rows.append(f'{name},{"tonal" if label in {"hum", "whistle", "beeps", "sweep"} else "other"},{split}')
    (tmp_path / 'bin.csv').write_text('file_name,label,split\n' + '\n'.join(rows) + '\n')
    for metric in ('roc_auc_ovr', 'accuracy'):
        (tmp_path / f'bin_{metric}.yaml').write_text(f'metadata: bin.csv\ndata: {demo_root / "16k" / "demo"}\n'
                                                     f'unit_sec: 1\nmetric: {metric}\n')
    # one mel bin (loudness only) so the AUC is not 1 and the check below has something to check
    run = dict(work_root=tmp_path / 'work', results_dir=tmp_path / 'results', logs_dir=tmp_path / 'logs',
               progress=False, head=HeadOptions(head='logreg'), options='n_mels=1')
    (auc,) = lineareval(ROOT / 'config' / 'melspec.yaml', str(tmp_path / 'bin_roc_auc_ovr.yaml'), **run)
    (acc,) = lineareval(ROOT / 'config' / 'melspec.yaml', str(tmp_path / 'bin_accuracy.yaml'), **run)
    with open(tmp_path / 'results' / 'scores.csv', newline='') as f:
        recorded = list(csv.DictReader(f))
    assert [r['metric'] for r in recorded] == ['roc_auc_ovr', 'accuracy']
    assert recorded[0]['run_id'] != recorded[1]['run_id']  # the selection metric is a setting of the run
    with open(auc.log_dir / 'predictions-seed42-fold1.csv', newline='') as f:
        preds = list(csv.DictReader(f))
    truth = np.array([p['label'] == 'tonal' for p in preds])
    p_tonal = np.array([float(p['probability']) if p['prediction'] == 'tonal' else 1 - float(p['probability'])
                        for p in preds])
    assert 0.5 < auc.score < 1
    assert auc.score == pytest.approx(roc_auc_score(truth, p_tonal), abs=2e-3)  # probabilities kept to 5 decimals
    assert 'valid' in (auc.log_dir / 'run.log').read_text()
    assert acc.score == pytest.approx(float(recorded[1]['score']), abs=1e-5)
