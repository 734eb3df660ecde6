"""evar.results.aggregate against hand-worked values.

The functions do plain Python float64 arithmetic (no BLAS, no vector units), so results are the same on every CPU up
to the rounding of the decimal inputs; the tolerance 1e-12 covers that rounding only.
"""

import json

import pytest

from evar.results import ResultRow
from evar.results.aggregate import (OVERALL, domain_scores, mean_ranks, report_fold_scores, report_test_clips, task_ranks,
                                    task_score, task_test_sizes)

TOL = 1e-12
SETTINGS = json.dumps({'head': 'linear', 'lr': 0.001})


def row(score, seed='', runs=1, std=None, report='', settings=SETTINGS, task='esc50'):
    return ResultRow(representation='m', task=task, score=score, run_id='r', report=report, std=std, runs=runs,
                     seed=str(seed), settings=settings)


def test_mean_and_std_over_seeds_and_folds():
    rows = [row(0.5, 42, report='folds: [0.40000, 0.60000], test clips 400'),  # rerun below replaces it
            row(0.85, 42, report='x -> 0.85, folds: [0.80000, 0.90000], test clips 400; log l'),
            row(0.80, 43, report='folds: [0.70000, 0.90000], test clips 400'),
            row(0.90, 44, report='folds: [0.90000, 0.90000], test clips 400'),
            row(0.85, '42;43;44', runs=3, std=0.05)]  # the mean row of the three seeds: not another sample
    s = task_score(rows)
    # seeds 0.85, 0.80, 0.90: mean 0.85, deviations 0, -0.05, 0.05 -> sum of squares 0.005 / 2 -> std 0.05
    assert (s.runs, s.folds, s.from_aggregate) == (3, 2, False)
    assert s.mean == pytest.approx(0.85, abs=TOL) and s.std == pytest.approx(0.05, abs=TOL)
    # six (seed, fold) scores 0.8 0.9 0.7 0.9 0.9 0.9: mean 0.85, squares 5 x 0.0025 + 0.0225 = 0.035 / 5 = 0.007
    assert s.fold_std == pytest.approx(0.007 ** 0.5, abs=TOL)


def test_rows_without_settings_are_all_samples_and_one_seed_has_no_std():
    s = task_score([row(0.9, settings=''), row(0.8, settings='')])  # EVAR's own rows: no settings, no seed
    # 0.9, 0.8: deviations +-0.05, sum of squares 0.005 / (2 - 1)
    assert s.runs == 2 and s.mean == pytest.approx(0.85, abs=TOL) and s.std == pytest.approx(0.005 ** 0.5, abs=TOL)
    one = task_score([row(0.7, 42, report='folds: [0.60000, 0.80000]')])
    assert one.std is None and one.folds == 2 and one.fold_std == pytest.approx(0.02 ** 0.5, abs=TOL)
    mixed = task_score([row(0.7, 42, report='folds: [0.6, 0.8]'), row(0.9, 43)])  # one row lacks fold scores
    assert mixed.folds == 0 and mixed.fold_std is None
    with pytest.raises(ValueError, match='at least one row'):
        task_score([])


def test_aggregate_rows_pool_when_alone():
    # (0.8, std 0.1, 2 seeds) and (0.9, std 0.1, 3 seeds): mean (1.6 + 2.7) / 5 = 0.86;
    # sum of squares (1 x 0.01 + 2 x 0.06^2) + (2 x 0.01 + 3 x 0.04^2) = 0.042, / 4 -> std sqrt(0.0105)
    s = task_score([row(0.8, runs=2, std=0.1), row(0.9, runs=3, std=0.1)])
    assert s.from_aggregate and s.runs == 5
    assert s.mean == pytest.approx(0.86, abs=TOL) and s.std == pytest.approx(0.0105 ** 0.5, abs=TOL)
    assert task_score([row(0.8, runs=2, std=0.1), row(0.9, runs=3)]).std is None  # a std unknown: not poolable


def test_report_parsing_and_test_sizes():
    assert report_fold_scores('probe: m t seed 42 -> 0.8, folds: [0.70000, 0.90000], test clips 12; log x') == (0.7, 0.9)
    assert report_fold_scores('Fine-tuning m on t seed 42 -> 0.5; selection=valid') == ()
    assert report_test_clips('..., test clips 2000 (selected: fold 1 l2 0.01)') == 2000
    assert report_test_clips('an EVAR row') is None
    rows = [row(0.5, 1, report='test clips 400'), row(0.5, 2, report='test clips 400'),
            row(0.5, 3, report='test clips 390'), row(0.5, 4, task='us8k', report='none'),
            row(0.5, 5, task='fsdd', report='test clips 300'), row(0.5, 6, task='fsdd', report='test clips 500')]
    assert task_test_sizes(rows) == {'esc50': 400, 'fsdd': 500}  # most common; the larger on a tie


def test_domain_means_unweighted_and_weighted():
    domains = {'esc50': 'environmental', 'us8k': 'environmental', 'spcv2': 'speech', 'nsynth': 'music'}
    sizes = {'esc50': 1000, 'us8k': 3000, 'spcv2': 1000, 'nsynth': 4096}
    out = {d.domain: d for d in domain_scores({'esc50': 0.9, 'us8k': 0.8, 'spcv2': 0.6}, domains, sizes)}
    assert list(out) == ['environmental', 'speech', OVERALL]  # music: the model has no task of it
    env = out['environmental']
    assert env.tasks == ('esc50', 'us8k') and env.weights == (1000, 3000) and env.missing == ()
    assert env.mean == pytest.approx(0.85, abs=TOL)
    assert env.weighted_mean == pytest.approx((900 + 2400) / 4000, abs=TOL)  # 0.825
    assert out['speech'].mean == out['speech'].weighted_mean == 0.6
    overall = out[OVERALL]
    assert overall.mean == pytest.approx((0.9 + 0.8 + 0.6) / 3, abs=TOL) and overall.missing == ('nsynth',)
    assert overall.weighted_mean == pytest.approx((900 + 2400 + 600) / 5000, abs=TOL)  # 0.78
    unknown = {d.domain: d for d in domain_scores({'esc50': 0.9, 'us8k': 0.8}, domains, {'esc50': 1000})}
    assert unknown['environmental'].weighted_mean is None and unknown['environmental'].weights == (1000, None)
    assert unknown['environmental'].mean == pytest.approx(0.85, abs=TOL)
    no_domain = domain_scores({'mine': 0.5}, {'mine': None}, {'mine': 10})
    assert [d.domain for d in no_domain] == [OVERALL]  # a user task without a domain counts in overall only


def test_ranks_share_ties_and_mean_rank():
    means = {'m1': {'a': 0.9, 'b': 0.5}, 'm2': {'a': 0.8}, 'm3': {'a': 0.8, 'b': 0.7}}
    ranks = task_ranks(means)
    assert ranks == {'a': {'m1': 1.0, 'm2': 2.5, 'm3': 2.5}, 'b': {'m3': 1.0, 'm1': 2.0}}
    assert mean_ranks(ranks) == {'m1': (1.5, 2), 'm2': (2.5, 1), 'm3': (1.75, 2)}
