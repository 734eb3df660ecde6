"""Summarise results/scores.csv as a models x tasks table of `mean ± std` over runs.

    python summarize.py [filter] [--results results/scores.csv] [--out results/summary.csv] [--html report.html]
        [--json scores.json]

Input columns: EVAR's `representation,task,score,run_id,report`, optionally followed by
`std,runs,seed,metric,head,config_hash,weight_hash,elapsed_sec,timestamp`; other columns are ignored.
A row with `runs` > 1 is an aggregate (mean of several seeds) written next to the individual runs (`runs` 1 or
empty): cells are computed from the individual rows, and from aggregate rows only where a
(representation, head, task) has no individual row. Rows with the same settings and seed are reruns: the last
one counts, once.

Rows whose `settings` differ in more than the task (another learning rate, hidden layers, unit length, weights ...)
are different evaluations: they get lines of their own, labelled with an 8-digit settings tag, and are never
averaged together as if they were seeds.

The std is the sample standard deviation over runs (ddof=1); a cell with one run shows the mean only.
Scores are shown in percent. The markdown table goes to stdout; the same numbers are written as CSV.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .errors import EvarError
from .fileio import atomic_write_text
from .results import ResultRow, read_table, settings_variant
from .results.aggregate import TaskScore, task_score

REQUIRED = ('representation', 'task', 'score')
EVAR_COLUMNS = ('representation', 'task', 'score', 'run_id', 'report')
STD_NOTE = 'sample std over runs (ddof=1)'
AGG_MARK = '†'  # a cell computed from aggregate rows only


# One (model, task) of the table: mean and std over runs (fractions), see `evar.results.aggregate.TaskScore`.
Cell = TaskScore


@dataclass
class ModelRow:
    """One line of the table: a representation evaluated one way (head and settings), its cells per task."""
    label: str
    representation: str
    head: str
    settings: str = ''  # `evar.results.settings_variant` of its rows ('' for rows without settings)
    cells: dict = field(default_factory=dict)  # task -> Cell
    sources: dict = field(default_factory=dict)  # task -> the `ResultRow`s its cell was computed from

    @property
    def average(self) -> float:
        """Mean of the cells' means over the tasks this line has (a fraction)."""
        return sum(c.mean for c in self.cells.values()) / len(self.cells)


@dataclass
class Summary:
    """The models x tasks table: task columns in order, one `ModelRow` per line, the file read, the filter used,
    and the (line, reason) of rows left out."""
    tasks: list
    rows: list
    results: Path
    filter_terms: list = field(default_factory=list)
    skipped_rows: list = field(default_factory=list)  # (line, reason) of rows left out (non-finite score)
    sources: list = field(default_factory=list)  # every scores file read, in order (`results` is the first)

    def markdown(self) -> str:
        """The table as markdown, scores in percent."""
        return to_markdown(self)

    def csv_text(self) -> str:
        """The table as CSV: per task mean, std and runs (fractions), then average, task count, completeness."""
        return to_csv_text(self)


def _filter_terms(filter) -> list:
    if filter is None:
        return []
    items = filter.split(',') if isinstance(filter, str) else [str(f) for f in (
        filter if isinstance(filter, (list, tuple)) else [filter])]
    return [t.strip().lower() for t in items if t.strip()]


def _number(text: str, path: Path, line: int, column: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise EvarError(f'Scores file {path}, line {line}: column {column} must be a number, got {text!r}.') from None


def _runs(text: str, path: Path, line: int) -> int:
    if text == '':
        return 1
    value = _number(text, path, line, 'runs')
    if not value.is_integer() or value < 1:
        raise EvarError(f'Scores file {path}, line {line}: column runs must be a positive integer, got {text!r}.')
    return int(value)


def _task_order(tasks_seen: list) -> list:
    """Built-in tasks in EVAR's table order, then the others in order of first appearance."""
    from .tasks import BUILTIN_TASKS

    builtin = [t for t in BUILTIN_TASKS if t in tasks_seen]
    return builtin + [t for t in tasks_seen if t not in BUILTIN_TASKS]


def result_paths(results) -> list:
    """The scores files named by `results`: a path, several comma-separated, or a list of paths."""
    items = results.split(',') if isinstance(results, str) else (
        list(results) if isinstance(results, (list, tuple)) else [results])
    paths = [Path(str(p).strip()) for p in items if str(p).strip()]
    if not paths:
        raise EvarError(f'--results names no file (got {results!r}); expected a scores CSV path such as '
                        'results/scores.csv, or several separated by commas.')
    return paths


def summarize(filter=None, results='results/scores.csv') -> Summary:
    """Reads the scores file(s) and builds the models x tasks summary (rows matching `filter`, if given).

    filter: a substring, or several comma-separated (a list also works); a row is kept when its representation
    or task contains any of them (case-insensitive).
    results: a scores CSV, or several (comma-separated or a list: e.g. scores.csv and fine-tuning's ft-scores.csv),
    read in order as one table.

    Raises:
        EvarError: a missing or malformed file, a bad row (naming its file and line), or no row matching `filter`.
    """
    paths = result_paths(results)
    rows = []
    for path in paths:
        _, file_rows = read_table(path, required=REQUIRED)
        if not file_rows:
            raise EvarError(f'Scores file {path} has a header but no result rows.')
        rows += [(path, line, row) for line, row in file_rows]
    terms = _filter_terms(filter)
    summary = Summary(tasks=[], rows=[], results=paths[0], filter_terms=terms, sources=paths)

    by_key = {}  # (representation, (head, settings variant), task) -> its ResultRows in file order
    order, tasks_seen = {}, {}  # first appearance (dicts keep insertion order)
    for path, line, row in rows:
        rep, task = row.get('representation', ''), row.get('task', '')
        if not rep or not task:
            raise EvarError(f'Scores file {path}, line {line}: representation and task must not be empty.')
        if terms and not any(t in rep.lower() or t in task.lower() for t in terms):
            continue
        score = _number(row.get('score', ''), path, line, 'score')
        if not math.isfinite(score):
            summary.skipped_rows.append((line if len(paths) == 1 else f'{line} of {path}', f'score is {row["score"]}'))
            continue
        head, mode = row.get('head', ''), row.get('mode', '') or 'linear'
        if mode not in ('linear', head):  # a fine-tuned 'linear' head is another evaluation than a linear probe
            head = f'{mode} {head}'.strip()
        try:  # runs with other settings are other rows of the table, never averaged as if they were seeds
            variant = settings_variant(row.get('settings', ''))
        except EvarError as e:
            raise EvarError(f'Scores file {path}, line {line}: {e}') from None
        _runs(row.get('runs', ''), path, line)
        if row.get('std', ''):
            _number(row['std'], path, line, 'std')
        key = (rep, (head, variant), task)
        order.setdefault((rep, (head, variant)), len(order))
        tasks_seen.setdefault(task, None)
        by_key.setdefault(key, []).append(ResultRow.from_csv(row, where=f'Scores file {path}, line {line}'))
    if not order:
        raise EvarError(f'No rows of {", ".join(map(str, paths))} match filter {",".join(terms)!r} (it must be part of a '
                        'representation or task name).')

    summary.tasks = _task_order(list(tasks_seen))
    several_heads = len({head for _, (head, _) in order}) > 1
    variants = {}
    for rep, (head, variant) in order:
        variants.setdefault((rep, head), set()).add(variant)
    first_rep = {}
    for rep, _ in order:
        first_rep.setdefault(rep, len(first_rep))
    by_model = {}
    for rep, (head, variant) in sorted(order, key=lambda k: (first_rep[k[0]], order[k])):  # a model's heads together
        tags = ([head] if several_heads and head else []) + ([variant or 'no settings']
                                                             if len(variants[rep, head]) > 1 else [])
        label = f'{rep} [{", ".join(tags)}]' if tags else rep
        by_model[(rep, (head, variant))] = ModelRow(label=label, representation=rep, head=head, settings=variant)
    for (rep, head, task), rows_of_cell in by_key.items():  # reruns of one seed count once (see task_score)
        by_model[(rep, head)].cells[task] = task_score(rows_of_cell)
        by_model[(rep, head)].sources[task] = rows_of_cell
    for model in by_model.values():
        model.cells = {t: model.cells[t] for t in summary.tasks if t in model.cells}
    summary.rows = list(by_model.values())
    return summary


def _pct(x: float) -> str:
    return f'{100 * x:.2f}'


def _md_escape(text: str) -> str:
    return text.replace('|', '\\|')


def to_markdown(summary: Summary) -> str:
    """A markdown table of `summary`: mean ± std in percent per cell, an average column, notes below."""
    n_tasks = len(summary.tasks)
    sources = ', '.join(map(str, summary.sources or [summary.results]))
    lines = [f'Scores in % from {sources}: mean ± {STD_NOTE}; a single run shows the mean only.'
             + (f' Filter: {",".join(summary.filter_terms)}.' if summary.filter_terms else ''), '']
    lines.append('| model | ' + ' | '.join(_md_escape(t) for t in summary.tasks) + ' | average |')
    lines.append('|---|' + '---:|' * (n_tasks + 1))
    any_agg = any_partial = False
    for model in summary.rows:
        cells = []
        for task in summary.tasks:
            c = model.cells.get(task)
            if c is None:
                cells.append('-')
                continue
            text = _pct(c.mean) + (f' ± {_pct(c.std)}' if c.std is not None else '')
            if c.from_aggregate:
                text += f' {AGG_MARK}'
                any_agg = True
            cells.append(text)
        avg = _pct(model.average)
        if len(model.cells) < n_tasks:
            avg += f' ({len(model.cells)}/{n_tasks})'
            any_partial = True
        lines.append(f'| {_md_escape(model.label)} | ' + ' | '.join(cells) + f' | {avg} |')
    notes = []
    if any_partial:
        notes.append('(k/n): average over the k of n tasks the model has results for; `-`: no result.')
    if any_agg:
        notes.append(f'{AGG_MARK}: only aggregate rows (runs > 1) exist for this cell; their mean and std are used.')
    for line, reason in summary.skipped_rows:
        notes.append(f'Left out line {line}: {reason}.')
    if notes:
        lines += [''] + notes
    return '\n'.join(lines)


def _num(x: Optional[float]) -> str:
    return '' if x is None else repr(round(100 * x, 6))


def to_csv_text(summary: Summary) -> str:
    """Numbers in percent: `<task>_mean`, `<task>_std` (sample std; empty for one run), `<task>_runs` per task."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    header = ['model', 'representation', 'head']
    for task in summary.tasks:
        header += [f'{task}_mean', f'{task}_std', f'{task}_runs']
    writer.writerow(header + ['average', 'n_tasks', 'complete'])
    for model in summary.rows:
        row = [model.label, model.representation, model.head]
        for task in summary.tasks:
            c = model.cells.get(task)
            row += ['', '', ''] if c is None else [_num(c.mean), _num(c.std), str(c.runs)]
        row += [_num(model.average), str(len(model.cells)), str(len(model.cells) == len(summary.tasks))]
        writer.writerow(row)
    return buf.getvalue()


def show(summary: Summary, out: str = '') -> None:
    """Prints `summary` as markdown and, when `out` is given, writes it as CSV there (atomically)."""
    print(summary.markdown())
    if out:
        atomic_write_text(out, summary.csv_text())
        print(f'\nWrote {out}', file=sys.stderr)


def main(filter=None, results='results/scores.csv', out='results/summary.csv') -> None:
    """Prints a models x tasks markdown table of mean ± std (percent) from the scores file and writes it as CSV
    (`evar summarize`, which adds --html and --json: see `evar.report.summarize_command`).

    Args:
        filter: substring(s), comma-separated, that the representation or task must contain.
        results: the scores CSV to read, or several comma-separated.
        out: where to write the CSV summary (empty to skip writing).
    """
    show(summarize(filter=filter, results=results), out)
