"""The HTML report and its JSON: every plot present and embedded, every number on the page equal to the JSON's."""

import base64
import json
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from evar.cli import main as evar_main
from evar.results import ResultRow, append_rows

from helpers import ROOT

pytest.importorskip('matplotlib', reason="the report's plots need matplotlib (pip install -e '.[test]')")

MODELS = {'byol': 0.80, 'm2d': 0.85, 'cnn14': 0.75}
# task -> (domain, folds, test clips, per-model offset added to the model's base score)
TASKS = {'esc50': ('environmental', 5, 2000, {'byol': 0.05, 'm2d': 0.08, 'cnn14': 0.1}),
         'us8k': ('environmental', 10, 8732, {'byol': 0.0, 'm2d': 0.02, 'cnn14': 0.04}),
         'spcv2': ('speech', 1, 11005, {'byol': 0.1, 'm2d': 0.1, 'cnn14': -0.2}),
         'nsynth': ('music', 1, 4096, {'byol': -0.1, 'm2d': -0.05, 'cnn14': -0.05})}
SEEDS = (42, 43, 44)


def seed_score(model, task, seed):
    return MODELS[model] + TASKS[task][3][model] + 0.01 * (seed - 43) * (1 + len(model) % 2)


def write_results(tmp_path):
    rows = []
    for model in MODELS:
        for task, (_, folds, clips, _) in TASKS.items():
            settings = json.dumps({'model': model, 'task': task, 'head': 'linear'})
            for seed in SEEDS:
                score = seed_score(model, task, seed)
                fold_text = (', folds: [' + ', '.join(f'{score + d:.5f}' for d in
                                                       [0.02 * (k - (folds - 1) / 2) for k in range(folds)]) + ']'
                             if folds > 1 else '')
                rows.append(ResultRow(representation=model, task=task, score=score, run_id='r', seed=str(seed),
                                      metric='accuracy', head='linear', settings=settings,
                                      report=f'linear evaluation: {model} {task} -> {score:.5f}{fold_text}, test clips '
                                             f'{clips}; config c; log logs/x'))
    append_rows(tmp_path / 'results' / 'scores.csv', rows)
    log_dir = tmp_path / 'logs' / 'm2d-esc50-ft-abc'
    log_dir.mkdir(parents=True)
    for fold in (1, 2):
        (log_dir / f'metrics-fold{fold}.csv').write_text('epoch,lr,train_loss,valid_accuracy,sec\n' + ''.join(
            f'{e},0.01,{1 / (e + 1):.4f},{0.5 + 0.04 * e + 0.01 * fold:.4f},1.0\n' for e in range(10)))
    append_rows(tmp_path / 'results' / 'ft-scores.csv', [ResultRow(
        representation='m2d', task='esc50', score=0.95, run_id='ft', seed='42', metric='accuracy', mode='finetune',
        head='linear', settings='{"ft": 1}',
        report=f'Fine-tuning m2d on esc50 seed 42 -> 0.95000; selection=valid; config c; log {log_dir}')])
    return tmp_path / 'results'


class Page(HTMLParser):
    """The tables (id -> rows of cell texts) and images (id -> src) of a page, and every external reference."""

    def __init__(self, text):
        super().__init__()
        self.tables, self.images, self.external, self._table, self._cell = {}, {}, [], None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == 'table':
            self._table = self.tables.setdefault(attrs['id'], [])
        elif tag == 'tr' and self._table is not None:
            self._table.append([])
        elif tag in ('td', 'th') and self._table is not None:
            self._cell = ''
        elif tag == 'img':
            self.images[attrs['id']] = attrs['src']
        for key in ('src', 'href'):
            if key in attrs and not attrs[key].startswith('data:'):
                self.external.append(attrs[key])

    def handle_endtag(self, tag):
        if tag in ('td', 'th') and self._cell is not None:
            self._table[-1].append(self._cell)
            self._cell = None
        elif tag == 'table':
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def pct(x):
    return '' if x is None else f'{100 * x:.2f}'


def test_report_plots_and_numbers_match_json(tmp_path):
    results = write_results(tmp_path)
    html_path, json_path = tmp_path / 'report.html', tmp_path / 'scores.json'
    rc = evar_main(['report', '--results', f'{results / "scores.csv"},{results / "ft-scores.csv"}', '--html',
                    str(html_path), '--json', str(json_path), '--work_root', str(tmp_path / 'nowork')])
    assert rc == 0
    data = json.loads(json_path.read_text())
    page = Page(html_path.read_text())
    assert page.external == []  # self-contained

    tasks = list(TASKS)
    assert [t['name'] for t in data['tasks']] == ['us8k', 'esc50', 'nsynth', 'spcv2']  # EVAR's task order
    assert set(page.images) == {'plot-heatmap-scores', 'plot-heatmap-ranks', 'plot-domains',
                                'plot-curve-m2d [finetune linear]-esc50', *(f'plot-task-{t}' for t in tasks)}
    for uri in page.images.values():
        assert uri.startswith('data:image/png;base64,')
        png = base64.b64decode(uri.split(',', 1)[1])
        assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 3000  # a real picture, not an empty canvas

    models = {m['label']: m for m in data['models']}
    order = [t['name'] for t in data['tasks']]
    # the scores table: every cell is the JSON's mean ± std in percent
    header, *rows = page.tables['scores']
    assert header == ['model', *order, 'average', 'mean rank']
    assert [r[0] for r in rows] == list(models)
    for r in rows:
        m = models[r[0]]
        for task, text in zip(order, r[1:-2]):
            c = m['tasks'].get(task)
            assert text == ('-' if c is None else pct(c['mean']) + (f' ± {pct(c["std"])}' if c['std'] is not None else ''))
        assert r[-2] == pct(m['average']) and r[-1] == f'{m["mean_rank"]:.2f}'
    # hand-worked: byol on spcv2 over seeds 42..44: 0.9 - 0.01, 0.9, 0.9 + 0.01 (len('byol') is even)
    byol = models['byol [linear]']['tasks']['spcv2']
    assert byol['mean'] == pytest.approx(0.9, abs=1e-12) and byol['std'] == pytest.approx(0.01, abs=1e-12)
    assert byol['runs'] == 3 and byol['folds'] == 0 and models['byol [linear]']['tasks']['esc50']['folds'] == 5

    # the domains table: both means, named, equal to the JSON and to a hand computation for m2d
    header, *rows = page.tables['domains']
    assert header[2:4] == ['mean (unweighted)', 'mean (weighted by test clips)']
    seen = 0
    for r in rows:
        d = next(d for d in models[r[0]]['domains'] if d['domain'] == r[1])
        assert r[2] == pct(d['mean']) and r[3] == (pct(d['weighted_mean']) or 'unknown size')
        seen += 1
    assert seen == sum(len(m['domains']) for m in models.values())
    assert list(models) == ['byol [linear]', 'm2d [linear]', 'm2d [finetune linear]', 'cnn14 [linear]']
    env = next(d for d in models['byol [linear]']['domains'] if d['domain'] == 'environmental')
    esc, us = 0.85, 0.80  # byol's seed means on esc50 and us8k
    assert env['mean'] == pytest.approx((esc + us) / 2, abs=1e-12)
    assert env['weighted_mean'] == pytest.approx((esc * 2000 + us * 8732) / 10732, abs=1e-12)
    assert 'weighted by the number of test clips' in data['weighting']

    # ranks and tasks tables
    header, *rows = page.tables['ranks']
    for r in rows:
        m = models[r[0]]
        for task, text in zip(order, r[1:-2]):
            assert text == ('-' if task not in m['tasks'] else f'{m["tasks"][task]["rank"]:g}')
        assert r[-2] == f'{m["mean_rank"]:.2f}' and int(r[-1]) == m['n_ranked']
    header, *rows = page.tables['tasks']
    for r, t in zip(rows, data['tasks']):
        assert r[:3] == [t['name'], t['domain'], str(t['test_clips'])] and t['test_clips_from'] == 'results'
    # the fine-tuning row is its own line, with its curves in the JSON
    ft = models['m2d [finetune linear]']
    assert ft['tasks']['esc50']['mean'] == 0.95 and set(ft['curves']['esc50']) == {'1', '2'}
    assert ft['curves']['esc50']['2']['valid'][:2] == [0.52, 0.56] and ft['curves']['esc50']['1']['epoch'] == list(range(10))


def test_summarize_script_writes_report_and_keeps_its_table(tmp_path):
    results = write_results(tmp_path)
    html_path, json_path = tmp_path / 'r.html', tmp_path / 's.json'
    proc = subprocess.run([sys.executable, 'summarize.py', 'esc50', '--results', str(results / 'scores.csv'), '--out',
                           str(tmp_path / 'sum.csv'), '--html', str(html_path), '--json', str(json_path)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r'^\| m2d \| 93\.00 ± 2\.00 \| 93\.00 \|$', proc.stdout, re.M), proc.stdout  # console table as before
    data = json.loads(json_path.read_text())
    assert data['filter'] == ['esc50'] and [t['name'] for t in data['tasks']] == ['esc50']
    assert 'plot-task-esc50' in Page(html_path.read_text()).images
