"""evar.stats against values worked out by hand or with scipy in the test, and the summary / compare that use it:
marks of the best and tied models, intervals and test clips in the CSV, and a compare of real runs on FSDD clips."""

import csv
import math
import statistics
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as sps

from evar.errors import EvarError
from evar.metrics import mean_average_precision
from evar.stats import (Interval, holm, mcnemar_exact, mcnemar_from_counts, paired_bootstrap_accuracy,
                        paired_bootstrap_map, resample_indices, resample_weights, t_interval,
                        t_interval_from_summary, weighted_mean_average_precision)
from helpers import BYOLA_D512, ROOT, SHARED, needs_byola, needs_shared


def test_t_interval_by_hand():
    values = [0.80, 0.82, 0.85]
    mean, sd = statistics.mean(values), statistics.stdev(values)
    half = 4.3026527297 * sd / math.sqrt(3)  # t_{0.975, 2} from a table
    ci = t_interval(values)
    assert ci.low == pytest.approx(mean - half, abs=1e-9) and ci.high == pytest.approx(mean + half, abs=1e-9)
    assert sps.t.ppf(0.975, 2) == pytest.approx(4.3026527297, abs=1e-9)
    assert ci.half_width == pytest.approx(half) and ci.level == 0.95
    ci5 = t_interval_from_summary(0.5, 0.1, 5)  # from mean, sample std and n: t_{0.975, 4} = 2.776445
    assert (ci5.low, ci5.high) == pytest.approx((0.5 - 2.776445105 * 0.1 / math.sqrt(5),
                                                 0.5 + 2.776445105 * 0.1 / math.sqrt(5)), abs=1e-9)
    assert t_interval([0.7]) is None and t_interval_from_summary(0.7, None, 3) is None
    assert t_interval([0.6, 0.6]) == Interval(0.6, 0.6)


def test_mcnemar_on_a_two_by_two_table_by_hand():
    # Table: both right 5, only A right 1, only B right 6, both wrong 3. Under H0 the 7 discordant clips split as a
    # fair coin: p = 2 * P(X <= 1) = 2 * (1 + 7) / 2**7 = 0.125.
    a = np.array([1] * 5 + [1] * 1 + [0] * 6 + [0] * 3, dtype=bool)
    b = np.array([1] * 5 + [0] * 1 + [1] * 6 + [0] * 3, dtype=bool)
    result = mcnemar_exact(a, b)
    assert (result.a_only, result.b_only) == (1, 6) and result.p_value == pytest.approx(16 / 128)
    assert mcnemar_from_counts(0, 5).p_value == pytest.approx(2 / 32)  # 2 * 0.5**5
    assert mcnemar_from_counts(3, 3).p_value == 1.0 and mcnemar_from_counts(0, 0).p_value == 1.0
    with pytest.raises(EvarError, match='McNemar'):
        mcnemar_exact(a, b[:-1])


def test_holm_by_hand():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> kept non-decreasing: 0.06
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.01, float('nan'), 0.04]), [0.02, np.nan, 0.04])  # NaN is not a test
    assert holm([]).shape == (0,)


def test_identical_predictions_give_a_zero_width_interval_at_zero():
    rng = np.random.default_rng(0)
    correct = rng.random((2, 80)) < 0.7
    boot = paired_bootstrap_accuracy(correct, correct.copy(), n_resamples=2000)
    assert boot.difference == 0 and (boot.interval.low, boot.interval.high) == (0.0, 0.0) and boot.p_value == 1.0
    y = (rng.random((40, 4)) < 0.3).astype(int)
    s = rng.random((40, 4))
    boot = paired_bootstrap_map(y, s, s.copy(), n_resamples=500)
    assert boot.difference == 0 and (boot.interval.low, boot.interval.high) == (0.0, 0.0)


def test_bootstrap_with_a_known_answer():
    """A is right on k clips where B is wrong and equal elsewhere: a resample's difference is (draws among those k)
    / N ~ Binomial(N, k/N) / N, so the 95 % interval is that binomial's 2.5 and 97.5 percentiles over N."""
    n, k = 200, 30
    a = np.ones(n, dtype=bool)
    b = np.r_[np.zeros(k, dtype=bool), np.ones(n - k, dtype=bool)]
    boot = paired_bootstrap_accuracy(a, b, n_resamples=10000, seed=1)
    assert boot.difference == pytest.approx(k / n)
    low, high = sps.binom.ppf([0.025, 0.975], n, k / n) / n
    assert boot.interval.low == pytest.approx(low, abs=1.01 / n) and boot.interval.high == pytest.approx(high, abs=1.01 / n)
    assert boot.p_value == 0.0  # no resample reaches 0 (P = 0.85**200)
    again = paired_bootstrap_accuracy(a, b, n_resamples=10000, seed=1)
    assert again == boot  # seeded


def test_resampled_map_equals_the_metric_on_each_resample():
    """The vectorised mAP equals evar.metrics on the materialised resample, classes without a positive skipped."""
    rng = np.random.default_rng(3)
    y = (rng.random((30, 5)) < 0.15).astype(int)
    s = np.round(rng.random((30, 5)), 1)  # ties between clips
    weights = next(resample_weights(30, n_resamples=40, seed=7))
    idx = next(resample_indices(30, n_resamples=40, seed=7))
    got = weighted_mean_average_precision(y, s, weights)
    for r in range(40):
        assert np.bincount(idx[r], minlength=30).tolist() == weights[r].tolist()
        yr, sr = y[idx[r]], s[idx[r]]
        expected = mean_average_precision(yr, sr) if yr.any() else np.nan
        np.testing.assert_allclose(got[r], expected, atol=1e-12)


# --- the summary's marks and intervals, and compare, on hand-made runs -------------------------------------------

HEADER = 'representation,task,score,run_id,report,std,runs,seed,metric,mode,head,settings\n'


def _run(tmp_path, model, task, seed, labels, preds, metric='accuracy'):
    """One scores row and its predictions file (single-label: `preds` are predicted labels)."""
    log = tmp_path / 'logs' / f'{model}-{task}'
    log.mkdir(parents=True, exist_ok=True)
    files = [f'c{i:03d}.wav' for i in range(len(labels))]
    with open(log / f'predictions-seed{seed}-fold1.csv', 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['file_name', 'label', 'prediction', 'probability'])
        w.writerows([(fn, lab, p, '0.9') for fn, lab, p in zip(files, labels, preds)])
    score = float(np.mean(np.array(labels) == np.array(preds)))
    settings = '{"m":"' + model + '"}'
    return (f'{model},{task},{score:.5f},x,"linear evaluation: seed {seed}, test clips {len(labels)}; log '
            f'logs/{model}-{task}",,1,{seed},{metric},linear,linear,"{settings.replace(chr(34), chr(34) * 2)}"\n')


def _predictions(n, n_right, rng):
    labels = rng.integers(0, 3, n).astype(str)
    preds = labels.copy()
    wrong = rng.permutation(n)[:n - n_right]
    preds[wrong] = np.char.add(labels[wrong], 'x')
    return list(labels), list(preds)


@pytest.fixture
def hand_runs(tmp_path):
    """Three models on two tasks, two seeds each: on t1 'good' 90 % and 'close' 88 % right (not significant on 200
    clips), 'poor' 60 %; on t2 all 150 clips, 'good' 80 %, 'close' 50 %, poor has no t2."""
    rng = np.random.default_rng(0)
    text = HEADER
    for task, n, rights in (('t1', 200, {'good': 180, 'close': 176, 'poor': 120}), ('t2', 150, {'good': 120, 'close': 75})):
        labels, _ = _predictions(n, n, rng)
        for model, right in rights.items():
            for seed in (42, 43):
                preds = list(labels)
                for i in rng.permutation(n)[:n - right]:
                    preds[i] = labels[i] + 'x'
                text += _run(tmp_path, model, task, seed, labels, preds)
    (tmp_path / 'results').mkdir()
    path = tmp_path / 'results' / 'scores.csv'
    path.write_text(text)
    return path


def test_summary_marks_best_and_tied_and_writes_intervals(hand_runs, tmp_path, monkeypatch):
    from evar.summarize import main, summarize

    monkeypatch.chdir(tmp_path)
    s = summarize(results=hand_runs)
    rows = {m.label: m for m in s.rows}
    assert rows['good'].best_or_tied == {'t1': True, 't2': True}
    assert rows['close'].best_or_tied == {'t1': True, 't2': False}  # 2 points on 200 clips is a tie; 30 is not
    assert rows['poor'].best_or_tied == {'t1': False} and rows['poor'].p_values['t1'] < 1e-6
    assert rows['good'].test_clips == {'t1': 200, 't2': 150}
    ci = rows['close'].intervals['t1']
    assert ci == t_interval([r.score for r in rows['close'].sources['t1']])  # over the two seeds
    md = s.markdown()
    assert '**' in md.splitlines()[4] and 'Holm' in md and 'n=200' in md
    main(results=str(hand_runs), out=str(tmp_path / 'summary.csv'))
    out = {r['model']: r for r in csv.DictReader(open(tmp_path / 'summary.csv'))}
    assert out['close']['t1_best_or_tied'] == 'True' and out['close']['t2_best_or_tied'] == 'False'
    assert out['poor']['t2_best_or_tied'] == '' and out['good']['t1_test_clips'] == '200'
    assert float(out['close']['t1_ci_low']) == pytest.approx(100 * ci.low, abs=1e-4)
    pytest.importorskip('matplotlib')
    from evar.report import build_report, render_html

    page = render_html(build_report(s))  # the HTML report's interval table carries the same marks
    table = page.split('id="intervals"', 1)[1].split('</table>', 1)[0]
    assert table.count('◆') == 3 and 'n=200' in table


def test_compare_reports_and_refuses_other_clips(hand_runs, tmp_path, monkeypatch):
    from evar.cli import main
    from evar.summarize import compare

    monkeypatch.chdir(tmp_path)
    result = compare('good', 'close', results=hand_runs, n_resamples=2000)
    assert [c.task for c in result] == ['t1', 't2']
    t1, t2 = result
    assert t1.n_clips == 200 and t1.seeds_text == '42;43' and t1.same_seeds
    assert t1.bootstrap.interval.low < 0 < t1.bootstrap.interval.high  # a tie
    assert t2.bootstrap.difference == pytest.approx(0.30) and t2.bootstrap.interval.low > 0.2
    assert [c.p_holm for c in result] == pytest.approx(list(holm([t1.p_value, t2.p_value])))
    from evar.summarize import summarize  # the table's marks: the same tests, Holm over the line's tasks
    close = next(m for m in summarize(results=hand_runs).rows if m.label == 'close')
    assert close.p_values == pytest.approx({'t1': t1.p_holm, 't2': t2.p_holm})
    assert main(['compare', 'good', 'close', '--results', str(hand_runs), '--out', 'cmp.csv', '--n_resamples', '500']) == 0
    rows = list(csv.DictReader(open(tmp_path / 'cmp.csv')))
    assert [r['task'] for r in rows] == ['t1', 't2'] and rows[1]['n_clips'] == '150' and rows[0]['p_mcnemar']
    # another model's test clips differ: refused
    text = hand_runs.read_text()
    rng = np.random.default_rng(1)
    labels, preds = _predictions(199, 150, rng)
    hand_runs.write_text(text + _run(tmp_path, 'other', 't1', 42, labels, preds))
    with pytest.raises(EvarError, match='different clips'):
        compare('good', 'other', results=hand_runs, n_resamples=200)
    with pytest.raises(EvarError, match='not in'):
        compare('good', 'nobody', results=hand_runs)
    with pytest.raises(EvarError, match=r"Did you mean close\?"):
        compare('good', 'clsoe', results=hand_runs)


def test_compare_multilabel_runs_over_folds(tmp_path, monkeypatch):
    """mAP: each seed's fold files are read together, clips sorted by file name; the observed difference is the
    metric's on all clips, and the bootstrap skips classes without positives."""
    from evar.summarize import compare

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(5)
    classes = ['dog', 'cat', 'rain']
    y = (rng.random((60, 3)) < 0.3).astype(int)
    y[0] = [1, 1, 1]
    text, scores = HEADER, {}
    for model, noise in (('a', 0.3), ('b', 1.0)):
        log = tmp_path / 'logs' / model
        log.mkdir(parents=True)
        scores[model] = np.clip(y + noise * rng.standard_normal((60, 3)), 0, None).round(5)
        for fold, clips in ((1, range(0, 30)), (2, range(30, 60))):
            with open(log / f'predictions-seed7-fold{fold}.csv', 'w', newline='') as f:
                w = csv.writer(f)
                w.writerow(['file_name', 'label'] + classes)
                for i in reversed(clips):  # not in file-name order
                    w.writerow([f'clip{i:02d}.wav', ','.join(c for c, v in zip(classes, y[i]) if v),
                                *(f'{v:.5f}' for v in scores[model][i])])
        text += f'{model},tags,0.5,x,"seed 7; log logs/{model}",,1,7,mAP,linear,linear,\n'
    (tmp_path / 'scores.csv').write_text(text)
    (result,) = compare('a', 'b', results=tmp_path / 'scores.csv', n_resamples=500)
    assert result.metric == 'mAP' and result.n_clips == 60 and result.mcnemar is None
    assert result.score_a == pytest.approx(mean_average_precision(y, scores['a']))
    assert result.bootstrap.difference == pytest.approx(result.score_a - result.score_b)
    assert result.p_value == result.bootstrap.p_value and result.bootstrap.interval.low > 0  # a clearly better


# --- end to end on real runs ----------------------------------------------------------------------------------------

@needs_shared
@needs_byola
@pytest.mark.slow
def test_compare_real_runs_on_fsdd_clips(tmp_path):
    """melspec and BYOL-A, two seeds each, on 240 real FSDD clips (80 tested), then summarize.py --compare."""
    from evar.modes.linear import HeadOptions, lineareval

    rows = ['file_name,label,split']
    for digit in range(10):
        for speaker in ('george', 'jackson', 'lucas', 'theo'):  # FSDD's official split: indices 0-4 test
            rows += [f'{digit}_{speaker}_{i}.flac,{digit},{"test" if i < 2 else "train"}' for i in range(6)]
    (tmp_path / 'digits.csv').write_text('\n'.join(rows) + '\n')
    (tmp_path / 'digits.yaml').write_text(f'metadata: digits.csv\ndata: {SHARED / "data" / "fsdd" / "recordings"}\n'
                                          'unit_sec: 1.0\nname: digits\n')
    for config, options in ((ROOT / 'config/melspec.yaml', ''),
                            (ROOT / 'config/byola_d512.yaml', f'weight_file={BYOLA_D512}')):
        lineareval(config, tmp_path / 'digits.yaml', options=options, seeds=(42, 43), work_root=tmp_path / 'work',
                   progress=False, results_dir=tmp_path / 'results', logs_dir=tmp_path / 'logs',
                   head=HeadOptions(head='logreg'))
    proc = subprocess.run([sys.executable, str(ROOT / 'summarize.py'), '--compare', 'byola_d512', 'melspec'],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)
    row = next(csv.DictReader(open(tmp_path / 'results' / 'compare-byola_d512-vs-melspec.csv')))
    assert row['task'] == 'digits' and row['n_clips'] == '80' and row['seeds_paired'] == '42;43'
    # McNemar by hand from the prediction files of the paired seed with the larger p
    ps = []
    for seed in (42, 43):
        right = {}
        for model in ('byola_d512', 'melspec'):
            path = next((tmp_path / 'logs').glob(f'{model}-digits-*/predictions-seed{seed}-fold1.csv'))
            right[model] = {r['file_name']: r['label'] == r['prediction'] for r in csv.DictReader(open(path))}
        b = sum(right['byola_d512'][f] and not right['melspec'][f] for f in right['melspec'])
        c = sum(right['melspec'][f] and not right['byola_d512'][f] for f in right['melspec'])
        ps.append(sps.binomtest(b, b + c).pvalue if b + c else 1.0)
    assert float(row['p_mcnemar']) == pytest.approx(max(ps), rel=1e-5)
    low, high, diff = float(row['ci_low']), float(row['ci_high']), float(row['difference'])
    assert low <= diff <= high
    summary = subprocess.run([sys.executable, str(ROOT / 'summarize.py')], cwd=tmp_path, capture_output=True,
                             text=True, timeout=300)
    assert summary.returncode == 0 and 'n=80' in summary.stdout, summary.stderr
