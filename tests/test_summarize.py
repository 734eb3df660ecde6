"""summarize: models x tasks table of mean ± std from results/scores.csv (individual rows win over aggregates)."""

import csv
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from evar.errors import EvarError
from evar.summarize import main, summarize

ROOT = Path(__file__).resolve().parents[1]
FULL = ['representation', 'task', 'score', 'run_id', 'report', 'std', 'runs', 'seed', 'metric', 'head',
        'config_hash', 'weight_hash', 'elapsed_sec', 'timestamp', 'some_future_column']

# (representation, task, score, std, runs, seed, head); runs > 1 marks an aggregate row.
ROWS = [
    ('byol', 'esc50', 0.851, '', '1', '0', 'linear'),
    ('byol', 'esc50', 0.873, '', '1', '1', 'linear'),
    ('byol', 'esc50', 0.862, '', '1', '2', 'linear'),
    ('byol', 'esc50', 0.862, '0.011', '3', '', 'linear'),  # aggregate of the three above: must not count
    ('byol', 'us8k', 0.801, '', '1', '0', 'linear'),
    ('byol', 'us8k', 0.7905, '0.0123', '4', '', 'linear'),  # aggregate next to one individual run: ignored
    ('byol', 'cremad', 0.65, '0.02', '5', '', 'linear'),  # only an aggregate: used as is
    ('byol', 'esc50', 0.70, '', '', '', 'mlp'),  # runs empty = individual
    ('byol', 'esc50', 0.74, '', '', '', 'mlp'),
]
OLD_EVAR_ROWS = [('atst', 'esc50', 0.90), ('atst', 'us8k', 0.80), ('atst', 'us8k', 0.84)]


def pct(x):
    return f'{100 * x:.2f}'


def cell(values):
    return pct(statistics.mean(values)) + (f' ± {pct(statistics.stdev(values))}' if len(values) > 1 else '')


@pytest.fixture
def scores(tmp_path):
    path = tmp_path / 'results' / 'scores.csv'
    path.parent.mkdir()
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(FULL)
        for i, (rep, task, score, std, runs, seed, head) in enumerate(ROWS):
            w.writerow([rep, task, score, f'run{i}', 'report, with a comma', std, runs, seed, 'accuracy', head,
                        'c0ffee', 'beef', '12.5', '2024-01-01T00:00:00', 'x'])
        for i, (rep, task, score) in enumerate(OLD_EVAR_ROWS):
            w.writerow([rep, task, score, f'old{i}', 'evar report'])  # EVAR's five columns only
    return path


def expected_cells():
    esc_lin = [0.851, 0.873, 0.862]
    return {
        ('byol [linear]', 'esc50'): esc_lin,
        ('byol [linear]', 'us8k'): [0.801],
        ('byol [mlp]', 'esc50'): [0.70, 0.74],
        ('atst', 'esc50'): [0.90],
        ('atst', 'us8k'): [0.80, 0.84],
    }


def test_markdown_numbers(scores):
    s = summarize(results=scores)
    assert s.tasks == ['us8k', 'esc50', 'cremad']  # EVAR's task order
    md = s.markdown()
    lines = md.splitlines()
    assert 'sample std' in lines[0]
    assert lines[2] == '| model | us8k | esc50 | cremad | average |'
    exp = expected_cells()
    lin_avg = statistics.mean([statistics.mean(exp[('byol [linear]', 'us8k')]),
                               statistics.mean(exp[('byol [linear]', 'esc50')]), 0.65])
    assert lines[4] == (f'| byol [linear] | {cell(exp[("byol [linear]", "us8k")])} | '
                        f'{cell(exp[("byol [linear]", "esc50")])} | 65.00 ± 2.00 † | {pct(lin_avg)} |')
    mlp = exp[('byol [mlp]', 'esc50')]
    assert lines[5] == f'| byol [mlp] | - | {cell(mlp)} | - | {pct(statistics.mean(mlp))} (1/3) |'
    atst_avg = statistics.mean([0.90, statistics.mean([0.80, 0.84])])
    assert lines[6] == f'| atst | {cell([0.80, 0.84])} | 90.00 | - | {pct(atst_avg)} (2/3) |'
    assert '(k/n)' in md and '†' in md
    # esc50 linear: 86.20 ± 1.10 (three seeds, not four values)
    assert cell(exp[('byol [linear]', 'esc50')]) == '86.20 ± 1.10'


def test_csv_numbers(scores, tmp_path, capsys):
    out = tmp_path / 'results' / 'summary.csv'
    main(results=str(scores), out=str(out))
    printed = capsys.readouterr().out
    assert '| byol [linear] |' in printed
    rows = {r['model']: r for r in csv.DictReader(open(out))}
    assert list(rows) == ['byol [linear]', 'byol [mlp]', 'atst']
    for (model, task), values in expected_cells().items():
        r = rows[model]
        assert float(r[f'{task}_mean']) == pytest.approx(100 * statistics.mean(values), abs=1e-6)
        if len(values) > 1:
            assert float(r[f'{task}_std']) == pytest.approx(100 * statistics.stdev(values), abs=1e-6)
        else:
            assert r[f'{task}_std'] == ''
        assert int(r[f'{task}_runs']) == len(values)
    lin = rows['byol [linear]']
    assert (float(lin['cremad_mean']), float(lin['cremad_std']), lin['cremad_runs']) == (65.0, 2.0, '5')
    assert lin['head'] == 'linear' and lin['n_tasks'] == '3' and lin['complete'] == 'True'
    assert rows['atst']['cremad_mean'] == '' and rows['atst']['n_tasks'] == '2'
    assert float(rows['atst']['average']) == pytest.approx(100 * statistics.mean([0.90, 0.82]), abs=1e-6)
    assert not list(out.parent.glob('.*tmp'))  # atomic write leaves no temp file


def test_filter(scores):
    s = summarize('mlp_not_a_name,atst', results=scores)  # comma-separated: any may match
    assert [r.label for r in s.rows] == ['atst'] and s.tasks == ['us8k', 'esc50']
    s = summarize(['cremad'], results=scores)  # fire passes `a,b` as a tuple/list
    assert [r.label for r in s.rows] == ['byol'] and s.tasks == ['cremad']  # one head: no [head]
    s = summarize('ESC', results=scores)  # case-insensitive, task names too
    assert s.tasks == ['esc50'] and len(s.rows) == 3
    assert s.markdown().splitlines()[4].endswith('| 86.20 |')  # complete: no (k/n) mark
    with pytest.raises(EvarError, match='match filter'):
        summarize('nothing_like_this', results=scores)


def test_one_head_and_evar_only_file(tmp_path):
    path = tmp_path / 'scores.csv'
    path.write_text('representation,task,score,run_id,report\n'
                    'cnn14,esc50,0.9,a,r\ncnn14,esc50,0.8,b,r\ncnn14,spcv2,0.5,c,r\n')
    md = summarize(results=path).markdown().splitlines()
    assert md[4] == f'| cnn14 | {cell([0.9, 0.8])} | 50.00 | {pct((0.85 + 0.5) / 2)} |'


def test_errors(tmp_path, scores):
    with pytest.raises(EvarError, match='not found'):
        summarize(results=tmp_path / 'missing.csv')
    bad = tmp_path / 'bad.csv'
    bad.write_text('model,accuracy\nx,1\n')
    with pytest.raises(EvarError, match=r'bad\.csv.*representation, task, score'):
        summarize(results=bad)
    bad.write_text('')
    with pytest.raises(EvarError, match='empty'):
        summarize(results=bad)
    bad.write_text('representation,task,score\nx,esc50,high\n')
    with pytest.raises(EvarError, match='line 2.*score'):
        summarize(results=bad)
    bad.write_text('representation,task,score,runs\nx,esc50,0.5,two\n')
    with pytest.raises(EvarError, match='line 2.*runs'):
        summarize(results=bad)


def test_cli(tmp_path, scores):
    out = tmp_path / 'sum.csv'
    r = subprocess.run([sys.executable, 'summarize.py', 'byol', '--results', str(scores), '--out', str(out)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert '| byol [mlp] |' in r.stdout and 'atst' not in r.stdout and out.is_file()
    r = subprocess.run([sys.executable, 'summarize.py', '--results', str(tmp_path / 'nope.csv')],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and 'nope.csv' in r.stderr and 'Traceback' not in r.stderr


def test_reruns_of_one_seed_count_once(tmp_path):
    settings = '"{""head"":""logreg""}"'
    rows = [f'm,esc50,{s},r1,x,,1,{seed},accuracy,linear,logreg,,,0,t,{settings}'
            for s, seed in ((0.5, 42), (0.7, 42), (0.9, 43))]
    path = tmp_path / 'scores.csv'
    path.write_text('representation,task,score,run_id,report,std,runs,seed,metric,mode,head,config_hash,weight_hash,'
                    'elapsed_sec,timestamp,settings\n' + '\n'.join(rows) + '\n')
    cell = summarize(results=path).rows[0].cells['esc50']
    assert cell.runs == 2 and cell.mean == pytest.approx(0.8)  # seed 42's rerun (0.7) replaces its first run


def test_a_task_scored_by_two_metrics_gets_a_column_per_metric(tmp_path):
    """An app writes weighted accuracy and UAR rows for one task: they are never averaged together."""
    from evar.results import ResultRow, append_rows

    append_rows(tmp_path / 'scores.csv', [
        ResultRow(representation='m', task='circor1', score=value, run_id='r', report='x', seed=str(seed), metric=metric)
        for seed in (1, 2) for metric, value in (('weighted_accuracy', 0.9 + seed / 100), ('uar', 0.6))])
    (model,) = summarize(results=tmp_path / 'scores.csv').rows
    assert model.cells['circor1 [weighted_accuracy]'].mean == pytest.approx(0.915)
    assert model.cells['circor1 [uar]'].mean == pytest.approx(0.6)
    assert 'circor1' not in model.cells
