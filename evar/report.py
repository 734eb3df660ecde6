"""Reports of a results file: a self-contained HTML page with plots, and a JSON file of every number in it.

    python summarize.py [filter] [--html report.html] [--json scores.json]
    evar report [filter] [--results results/scores.csv,results/ft-scores.csv] [--html ...] [--json ...]

The page has the models x tasks table (mean ± sample std over seeds, in percent), heatmaps of the scores and of the
ranks per task, per-domain means (unweighted and weighted by test clips, both named), the ranks and mean ranks, a
bar chart per task with error bars, and the validation curves of fine-tuning runs (`metrics-fold<f>.csv` in the log
folder that a fine-tuning row's report names). Images are PNGs embedded as base64, so the file stands alone.
Plots need matplotlib (`pip install -e '.[report]'`).

A task's test size (the weight of the weighted means) is the number of test clips its rows' reports record; for
rows that record none (EVAR's, fine-tuning's) it is counted from the task's metadata CSV under the work root
(test-split clips, or every clip of a k-fold task, each tested once); where neither exists it is unknown and the
weighted means that need it are left empty, saying so.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from .errors import EvarError
from .fileio import atomic_write_text
from .results.aggregate import (OVERALL, WEIGHTING_NOTE, domain_scores, mean_ranks, task_ranks, task_test_sizes)
from .summarize import CI_NOTE, STD_NOTE, TIE_NOTE, Summary, interval_cell_text, show, summarize

_LOG_DIR = re.compile(r'; log (\S.*?)\s*$')


@dataclass
class Report:
    """Everything a report shows, computed from a `Summary`.

    Attributes:
        summary: the models x tasks table.
        domains: task -> its domain (None: not a built-in task; it counts in 'overall' only).
        test_sizes: task -> number of test clips (absent: unknown).
        size_sources: task -> where its test size came from ('results' or the metadata CSV's path).
        domain_scores: model label -> its `DomainScore`s (per domain, then 'overall').
        ranks: task -> {model label: rank} (1 = best; ties share the mean rank).
        mean_ranks: model label -> (mean rank, number of tasks ranked).
        curves: model label -> {task: {fold: (epochs list, validation scores list, column name)}} of fine-tuning runs.
    """
    summary: Summary
    domains: dict
    test_sizes: dict
    size_sources: dict
    domain_scores: dict
    ranks: dict
    mean_ranks: dict
    curves: dict = field(default_factory=dict)


def _metadata_test_size(task: str, work_root: Optional[Path]) -> tuple:
    """(test clips, metadata path) of a built-in task from its metadata CSV under `work_root`, or (None, None)."""
    from .data import read_metadata
    from .tasks import BUILTIN_TASKS

    if work_root is None or task not in BUILTIN_TASKS:
        return None, None
    path = BUILTIN_TASKS[task].metadata_path(work_root)
    if not path.is_file():
        return None, None
    metadata = read_metadata(path, multi_label=BUILTIN_TASKS[task].metric == 'mAP')
    n = len(metadata) if metadata.splits is None else sum(s == 'test' for s in metadata.splits)
    return (n or None), path


def read_curves(log_dir: Path) -> dict:
    """{fold: (epochs, validation scores, column name)} from the `metrics-fold<f>.csv` files of a fine-tuning log
    folder; {} when there are none. The validation column is the one named `valid_<metric>` (or `test_<metric>` for
    runs that selected on test)."""
    curves = {}
    for path in sorted(Path(log_dir).glob('metrics-fold*.csv')):
        with open(path, newline='') as f:
            rows = list(csv.DictReader(f))
        if not rows:
            continue
        column = next((c for c in rows[0] if c.startswith(('valid_', 'test_'))), None)
        if column is None:
            raise EvarError(f'{path}: no valid_<metric> column (expected epoch,lr,train_loss,valid_<metric>,... as '
                            'fine-tuning writes).')
        suffix = path.stem[len('metrics-fold'):]
        fold = int(suffix) if suffix.isdigit() else suffix
        curves[fold] = ([int(float(r['epoch'])) for r in rows], [float(r[column]) for r in rows], column)
    return curves


def build_report(summary: Summary, work_root: Optional[Path] = None, logs_root: Optional[Path] = None) -> Report:
    """The report of `summary`: domains, test sizes, per-domain means, ranks and fine-tuning curves.

    Args:
        summary: from `evar.summarize.summarize`.
        work_root: where built-in tasks' metadata CSVs are, for test sizes the rows do not record (None: not read).
        logs_root: a folder that relative log paths in fine-tuning rows' reports are read from (default: as written).
    """
    from .tasks import BUILTIN_TASKS

    rows = [r for model in summary.rows for task_rows in model.sources.values() for r in task_rows]
    domains = {t: (BUILTIN_TASKS[t].domain if t in BUILTIN_TASKS else None) for t in summary.tasks}
    sizes = task_test_sizes(rows)
    sources = {t: 'results' for t in sizes}
    for task in summary.tasks:
        if task not in sizes:
            n, path = _metadata_test_size(task, work_root)
            if n is not None:
                sizes[task], sources[task] = n, str(path)
    means = {m.label: {t: c.mean for t, c in m.cells.items()} for m in summary.rows}
    ranks = task_ranks(means)
    curves = {}
    for model in summary.rows:
        for task, task_rows in model.sources.items():
            for row in task_rows:
                match = _LOG_DIR.search(row.report) if row.mode == 'finetune' else None
                if match:
                    log_dir = Path(match.group(1))
                    if logs_root is not None and not log_dir.is_absolute():
                        log_dir = Path(logs_root) / log_dir
                    found = read_curves(log_dir)
                    if found:
                        curves.setdefault(model.label, {})[task] = found
    return Report(summary=summary, domains=domains, test_sizes=sizes, size_sources=sources,
                  domain_scores={label: domain_scores(m, domains, sizes) for label, m in means.items()},
                  ranks=ranks, mean_ranks=mean_ranks(ranks), curves=curves)


def report_json(report: Report) -> dict:
    """Every number of the page as a JSON-ready dict; scores are fractions (the page shows them in percent)."""
    s = report.summary
    models = []
    for m in s.rows:
        rank, n_ranked = report.mean_ranks.get(m.label, (None, 0))
        models.append({
            'label': m.label, 'representation': m.representation, 'head': m.head, 'settings': m.settings,
            'tasks': {t: {**asdict(c), 'rank': report.ranks[t][m.label]} for t, c in m.cells.items()},
            'average': m.average, 'n_tasks': len(m.cells), 'mean_rank': rank, 'n_ranked': n_ranked,
            'domains': [asdict(d) for d in report.domain_scores[m.label]],
            'curves': {t: {str(f): {'epoch': e, 'valid': v, 'column': c} for f, (e, v, c) in folds.items()}
                       for t, folds in report.curves.get(m.label, {}).items()}})
    return {'results': [str(p) for p in (s.sources or [s.results])], 'filter': s.filter_terms,
            'std': STD_NOTE, 'weighting': WEIGHTING_NOTE, 'units': 'fractions (0.9 = 90 %)',
            'tasks': [{'name': t, 'domain': report.domains[t], 'test_clips': report.test_sizes.get(t),
                       'test_clips_from': report.size_sources.get(t)} for t in s.tasks],
            'models': models}


# --- plots ----------------------------------------------------------------------------------------------------------

def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise EvarError("The HTML report draws its plots with matplotlib: pip install -e '.[report]' "
                        '(or pip install matplotlib).') from None
    matplotlib.use('Agg')  # no display: render to files only
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    """The figure as a base64 PNG data URI; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=110, bbox_inches='tight')
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)
    return 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode('ascii')


def _colors(n: int) -> list:
    plt = _pyplot()
    cmap = plt.get_cmap('tab10' if n <= 10 else 'tab20')
    return [cmap(i % cmap.N) for i in range(n)]


def task_bars(report: Report, task: str) -> str:
    """A bar per model of its mean score on `task` (percent) with sample-std error bars; a PNG data URI."""
    plt = _pyplot()
    models = [m for m in report.summary.rows if task in m.cells]
    colors = _colors(len(report.summary.rows))
    index = {m.label: i for i, m in enumerate(report.summary.rows)}
    fig, ax = plt.subplots(figsize=(max(3.2, 0.7 * len(models) + 1.5), 2.8))
    means = [100 * m.cells[task].mean for m in models]
    errs = [100 * (m.cells[task].std or 0.0) for m in models]
    ax.bar(range(len(models)), means, color=[colors[index[m.label]] for m in models])
    spread = [i for i, m in enumerate(models) if m.cells[task].std is not None]  # one run: no error bar
    ax.errorbar(spread, [means[i] for i in spread], yerr=[errs[i] for i in spread], fmt='none', ecolor='black',
                capsize=4)
    ax.set_xticks(range(len(models)), [m.label for m in models], rotation=30, ha='right', fontsize=8)
    ax.set_ylabel(f'{_metric(report, task)} (%)')
    ax.set_title(task, fontsize=10)
    low = min(m - e for m, e in zip(means, errs))
    ax.set_ylim(max(0.0, low - 0.15 * (max(means) - low + 1)), min(100.0, max(m + e for m, e in zip(means, errs)) + 2))
    ax.grid(axis='y', alpha=0.3)
    return _png(fig)


def _metric(report: Report, task: str) -> str:
    metrics = {r.metric for m in report.summary.rows for r in m.sources.get(task, []) if r.metric}
    return metrics.pop() if len(metrics) == 1 else 'score'


def heatmap(report: Report, ranks: bool = False) -> str:
    """Models x tasks heatmap of the mean scores (percent), or of the ranks per task (1 = best); a PNG data URI."""
    import numpy as np

    plt = _pyplot()
    s = report.summary
    values = np.full((len(s.rows), len(s.tasks)), np.nan)
    for i, m in enumerate(s.rows):
        for j, t in enumerate(s.tasks):
            if t in m.cells:
                values[i, j] = report.ranks[t][m.label] if ranks else 100 * m.cells[t].mean
    fig, ax = plt.subplots(figsize=(1.2 + 0.85 * len(s.tasks), 0.8 + 0.45 * len(s.rows)))
    cmap = plt.get_cmap('viridis_r' if ranks else 'viridis').with_extremes(bad='#dddddd')  # grey: no score
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect='auto')
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if not np.isnan(values[i, j]):
                norm = image.norm(values[i, j])
                text = f'{values[i, j]:g}' if ranks else f'{values[i, j]:.2f}'
                ax.text(j, i, text, ha='center', va='center', fontsize=8,
                        color='white' if (norm < 0.5) != ranks else 'black')
    ax.set_xticks(range(len(s.tasks)), s.tasks, rotation=30, ha='right', fontsize=8)
    ax.set_yticks(range(len(s.rows)), [m.label for m in s.rows], fontsize=8)
    ax.set_title('rank per task (1 = best)' if ranks else 'mean score (%)', fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    return _png(fig)


def domain_bars(report: Report) -> str:
    """Per domain (and overall), a bar per model: the unweighted mean (solid) and the test-size weighted mean
    (hatched), in percent; a PNG data URI."""
    plt = _pyplot()
    s = report.summary
    domains = list(dict.fromkeys(d.domain for m in s.rows for d in report.domain_scores[m.label]))
    domains = [d for d in domains if d != OVERALL] + [OVERALL]
    colors = _colors(len(s.rows))
    width = 0.8 / (2 * len(s.rows))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(domains) + 1.5), 3.0))
    for i, m in enumerate(s.rows):
        by_domain = {d.domain: d for d in report.domain_scores[m.label]}
        for k, weighted in enumerate((False, True)):
            xs, ys = [], []
            for j, domain in enumerate(domains):
                d = by_domain.get(domain)
                value = None if d is None else (d.weighted_mean if weighted else d.mean)
                if value is not None:
                    xs.append(j - 0.4 + width * (2 * i + k + 0.5))
                    ys.append(100 * value)
            ax.bar(xs, ys, width, color=colors[i], hatch='///' if weighted else None, edgecolor='white',
                   label=f'{m.label} ({"weighted by test clips" if weighted else "unweighted"})')
    ax.set_xticks(range(len(domains)), domains, fontsize=9)
    ax.set_ylabel('mean score (%)')
    ax.set_title('per-domain means: solid = unweighted, hatched = weighted by test clips', fontsize=10)
    ax.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis='y', alpha=0.3)
    return _png(fig)


def curve_plot(label: str, task: str, folds: dict) -> str:
    """A fine-tuning run's validation score per epoch, one line per fold; a PNG data URI."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 2.8))
    for fold, (epochs, valid, _) in folds.items():
        ax.plot(epochs, [100 * v for v in valid], marker='.', label=f'fold {fold}')
    ax.set_xlabel('epoch')
    ax.set_ylabel(f'{next(iter(folds.values()))[2]} (%)')
    ax.set_title(f'{label} on {task}', fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


# --- HTML -----------------------------------------------------------------------------------------------------------

def _pct(x: Optional[float]) -> str:
    return '' if x is None else f'{100 * x:.2f}'


def _table(header: list, rows: list, table_id: str) -> str:
    esc = html.escape
    head = ''.join(f'<th>{esc(str(h))}</th>' for h in header)
    body = ''.join('<tr>' + ''.join(f'<td>{esc(str(c))}</td>' for c in r) + '</tr>' for r in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _img(uri: str, plot_id: str, alt: str) -> str:
    return f'<figure><img id="{plot_id}" class="plot" src="{uri}" alt="{html.escape(alt)}"></figure>'


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page (tables, and plots as embedded PNGs)."""
    s, esc = report.summary, html.escape

    def cell(m, t):
        c = m.cells.get(t)
        return '-' if c is None else _pct(c.mean) + (f' ± {_pct(c.std)}' if c.std is not None else '')

    scores = _table(['model', *s.tasks, 'average', 'mean rank'],
                    [[m.label, *(cell(m, t) for t in s.tasks), _pct(m.average),
                      f'{report.mean_ranks[m.label][0]:.2f}'] for m in s.rows], 'scores')
    runs = _table(['model', *s.tasks], [[m.label, *(f'{m.cells[t].runs} seed{"s" * (m.cells[t].runs > 1)}' + (
        f' x {m.cells[t].folds} folds, ± {_pct(m.cells[t].fold_std)} over all' if m.cells[t].folds else '')
        if t in m.cells else '-' for t in s.tasks)] for m in s.rows], 'runs')
    intervals = _table(['model', *s.tasks], [[m.label, *(
        interval_cell_text(m, t, m.cells[t]) + (' ◆' if m.best_or_tied.get(t) else '') if t in m.cells else '-'
        for t in s.tasks)] for m in s.rows], 'intervals')
    tasks = _table(['task', 'domain', 'test clips', 'test clips from'],
                   [[t, report.domains[t] or '(none: overall only)', report.test_sizes.get(t, 'unknown'),
                     report.size_sources.get(t, '-')] for t in s.tasks], 'tasks')
    domain_rows = []
    for m in s.rows:
        for d in report.domain_scores[m.label]:
            domain_rows.append([m.label, d.domain, _pct(d.mean), _pct(d.weighted_mean) or 'unknown size',
                                ', '.join(f'{t} ({w if w is not None else "?"})' for t, w in zip(d.tasks, d.weights)),
                                ', '.join(d.missing) or '-'])
    domains = _table(['model', 'domain', 'mean (unweighted)', 'mean (weighted by test clips)', 'tasks (test clips)',
                      'tasks missing'], domain_rows, 'domains')
    ranks = _table(['model', *s.tasks, 'mean rank', 'tasks ranked'],
                   [[m.label, *(f'{report.ranks[t][m.label]:g}' if t in m.cells else '-' for t in s.tasks),
                     f'{report.mean_ranks[m.label][0]:.2f}', report.mean_ranks[m.label][1]] for m in s.rows], 'ranks')
    bars = ''.join(_img(task_bars(report, t), f'plot-task-{t}', f'bar chart of {t}') for t in s.tasks)
    curves = ''.join(_img(curve_plot(label, t, folds), f'plot-curve-{label}-{t}', f'validation curve {label} {t}')
                     for label, per_task in report.curves.items() for t, folds in per_task.items())
    sources = ', '.join(map(str, s.sources or [s.results]))
    filt = f' Filter: {esc(",".join(s.filter_terms))}.' if s.filter_terms else ''
    return f'''<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>evar report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
thead th {{ background: #f0f0f0; }}
.note {{ color: #555; font-size: 0.9em; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 0.5em; }}
figure {{ margin: 0.3em; }}
img.plot {{ max-width: 100%; }}
</style></head><body>
<h1>evar report</h1>
<p class="note">From {esc(sources)}.{filt} Scores in %: mean ± {esc(STD_NOTE)}; a single run shows the mean only.</p>
<h2>Scores</h2>{scores}
<h3>Runs behind each cell</h3>{runs}
<h3>95 % confidence intervals and ties</h3><p class="note">Mean in % with its {esc(CI_NOTE)}; n: test clips.
{esc(TIE_NOTE.replace('**bold**', '◆'))}.</p>{intervals}
<h2>Heatmaps</h2><div class="grid">{_img(heatmap(report), 'plot-heatmap-scores', 'heatmap of scores')}
{_img(heatmap(report, ranks=True), 'plot-heatmap-ranks', 'heatmap of ranks')}</div>
<h2>Domains</h2>
<p class="note">Weighting: {esc(WEIGHTING_NOTE)}. A task's clips count once however many folds test them. Tasks a
model lacks are left out of its means (listed as missing), so compare models on the same tasks.</p>
{_img(domain_bars(report), 'plot-domains', 'per-domain bars')}{domains}
<h3>Tasks</h3>{tasks}
<h2>Ranks</h2><p class="note">Rank 1 is the best mean on a task; tied models share the mean of their ranks; the mean
rank is over the tasks a model was ranked on.</p>{ranks}
<h2>Per task</h2><p class="note">Error bars: {esc(STD_NOTE)}; none for a single run. Each chart's score axis is
zoomed to its bars.</p><div class="grid">{bars}</div>
<h2>Fine-tuning validation curves</h2>
{f'<div class="grid">{curves}</div>' if curves else '<p class="note">No fine-tuning rows with metrics files.</p>'}
</body></html>
'''


def write_report(summary: Summary, html_path: Optional[str] = None, json_path: Optional[str] = None,
                 work_root: Optional[Path] = None, logs_root: Optional[Path] = None) -> Report:
    """Builds the report of `summary` and writes the HTML page and/or the JSON (atomically); returns the report."""
    report = build_report(summary, work_root, logs_root)
    if html_path:
        atomic_write_text(html_path, render_html(report))
        print(f'Wrote {html_path}', file=sys.stderr)
    if json_path:
        atomic_write_text(json_path, json.dumps(report_json(report), indent=1) + '\n')
        print(f'Wrote {json_path}', file=sys.stderr)
    return report


def main(filter=None, results: str = 'results/scores.csv', html: str = 'results/report.html',
         json: str = 'results/report.json', work_root: Optional[str] = None) -> None:
    """Writes an HTML report with plots and a JSON of every number in it from the scores file(s), and prints the
    markdown table (`evar report`).

    Args:
        filter: substring(s), comma-separated, that the representation or task must contain.
        results: the scores CSV, or several comma-separated (e.g. results/scores.csv,results/ft-scores.csv for
            fine-tuning's validation curves).
        html: where to write the page (empty to skip).
        json: where to write the numbers (empty to skip).
        work_root: where built-in tasks' metadata are, for test sizes the rows lack (default $EVAR_WORK or work).
    """
    summarize_command(filter, results, out='', html=html, json=json, work_root=work_root)


def summarize_command(filter=None, results: str = 'results/scores.csv', out: str = 'results/summary.csv',
                      html: str = '', json: str = '', work_root: Optional[str] = None) -> None:
    """Prints a models x tasks markdown table of mean ± std (percent) from the scores file(s) and writes it as CSV;
    with --html and/or --json also the report (`python summarize.py`, `evar summarize`). Each cell also gets its 95 %
    confidence interval and test clips, and the best-or-tied models are marked. `summarize.py --compare A B
    [--task ...]` compares two models clip by clip instead (= `evar compare`; its flags: `evar compare --help`).

    Args:
        filter: substring(s), comma-separated, that the representation or task must contain.
        results: the scores CSV to read, or several comma-separated.
        out: where to write the CSV summary ('' or '-' to skip writing).
        html: where to write the HTML report with plots (empty: none).
        json: where to write every number of the report as JSON (empty: none).
        work_root: where built-in tasks' metadata are, for the report's test sizes (default $EVAR_WORK or work).
    """
    from .paths import default_work_root

    summary = summarize(filter=filter, results=results)
    show(summary, out)
    if html or json:
        write_report(summary, html, json, Path(work_root) if work_root else default_work_root())
