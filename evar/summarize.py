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

Statistics (`evar.stats`): every cell also gets the Student-t 95 % confidence interval of its mean over seeds (over
every seed x fold score where the task has folds) and its number of test clips, shown in a second table and written
as extra CSV columns. Where the runs' per-clip test predictions are found (`predictions-seed<s>-fold<f>.csv` in the
log folder each row's report names), the best model of each task and every model not significantly different from
it at 5 % are marked in **bold**: McNemar's exact test (accuracy) or a paired bootstrap over test clips (mAP),
Holm-corrected across the tasks of each model line.

    python summarize.py --compare MODEL_A MODEL_B [--task fsdd,ravdess] [--out compare.csv]

compares two models on every task both have (see `compare`): a paired bootstrap of the score difference with its
95 % interval, McNemar's p (accuracy), the number of clips and the seeds paired, printed and written as CSV.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import EvarError, did_you_mean
from .fileio import atomic_write_text
from .results import ResultRow, read_table, settings_variant
from .results.aggregate import TaskScore, report_test_clips, task_score

REQUIRED = ('representation', 'task', 'score')
EVAR_COLUMNS = ('representation', 'task', 'score', 'run_id', 'report')
STD_NOTE = 'sample std over runs (ddof=1)'
AGG_MARK = '†'  # a cell computed from aggregate rows only
ALPHA = 0.05  # significance level of the best-or-tied marks
CI_NOTE = ("Student's t 95 % confidence interval of the mean over seeds (over every seed x fold score where the task "
           'has folds; clipped to [0, 100]); it reflects training randomness on a fixed test set')
TIE_NOTE = ('**bold**: the best mean on the task and every model not significantly different from it at 5 % '
            "(McNemar's exact test for accuracy, paired bootstrap over test clips for mAP; Holm-corrected across the "
            "tasks of each line); only where the runs' per-clip predictions are found")
LOG_DIR = re.compile(r'; log (\S.*?)\s*$')  # the log folder a row's report names (linear, knn, finetune)


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
    intervals: dict = field(default_factory=dict)  # task -> `evar.stats.Interval` of the mean (None: one run)
    test_clips: dict = field(default_factory=dict)  # task -> number of test clips (absent: unknown)
    best_or_tied: dict = field(default_factory=dict)  # task -> True (best, or not significantly worse), False
    p_values: dict = field(default_factory=dict)  # task -> Holm-adjusted p-value of the difference from the best

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
    stat_notes: list = field(default_factory=list)  # why a comparison with the best was left out

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


def summarize(filter=None, results='results/scores.csv', significance: bool = True, logs_root=None) -> Summary:
    """Reads the scores file(s) and builds the models x tasks summary (rows matching `filter`, if given).

    filter: a substring, or several comma-separated (a list also works); a row is kept when its representation
    or task contains any of them (case-insensitive).
    results: a scores CSV, or several (comma-separated or a list: e.g. scores.csv and fine-tuning's ft-scores.csv),
    read in order as one table.
    significance: read the runs' per-clip predictions and mark the best model of each task and the models not
    significantly different from it (`ModelRow.best_or_tied`); False skips that (intervals are always computed).
    logs_root: the folder relative log paths in the rows' reports are relative to (default: the current folder,
    then the folder above the first scores file's).

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
    # A task scored by several metrics (an app's weighted accuracy and UAR) gets a column per metric, 'task [metric]':
    # scores of different metrics are never averaged together (rows without a metric, EVAR's, go with the only one).
    metrics_of = {}
    for _, _, row in rows:
        metrics_of.setdefault(row.get('task', ''), set()).update({row.get('metric', '')} - {''})
    for path, line, row in rows:
        rep, task = row.get('representation', ''), row.get('task', '')
        if not rep or not task:
            raise EvarError(f'Scores file {path}, line {line}: representation and task must not be empty.')
        if terms and not any(t in rep.lower() or t in task.lower() for t in terms):
            continue
        if len(metrics_of.get(task, ())) > 1:
            task = f'{task} [{row.get("metric", "") or "no metric"}]'
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
    for model in summary.rows:
        for task, cell in model.cells.items():
            model.intervals[task] = cell_interval(cell)
            sizes = Counter(n for n in (report_test_clips(r.report) for r in model.sources[task]) if n is not None)
            if sizes:
                model.test_clips[task] = max(sizes.items(), key=lambda kv: (kv[1], kv[0]))[0]
    if significance:
        mark_best_and_tied(summary, log_roots(paths[0], logs_root))
    return summary


def cell_interval(cell: Cell):
    """The Student-t 95 % interval (`evar.stats.Interval`, fractions) of a cell's mean: over its seeds' scores, or
    over every (seed, fold) score where the rows record fold scores, clipped to [0, 1] (the range of every metric
    evar records); None for a single score."""
    from .stats import Interval, t_interval_from_summary

    if cell.folds and cell.fold_std is not None:
        ci = t_interval_from_summary(cell.mean, cell.fold_std, cell.runs * cell.folds)
    else:
        ci = t_interval_from_summary(cell.mean, cell.std, cell.runs)
    return None if ci is None else Interval(max(ci.low, 0.0), min(ci.high, 1.0), ci.level)


# --- per-clip predictions and paired comparisons -------------------------------------------------------------------

@dataclass(frozen=True)
class ClipPredictions:
    """One run's (one seed's) test predictions on a task, every fold's clips together, sorted by file name.

    Attributes:
        files: `[N]` file names (each clip once).
        multi_label: True for a multi-label task (per-class scores), False for a single-label one.
        correct: `[N]` bool, True where the predicted class is the label (single-label; None otherwise).
        y_true: `[N, C]` 0/1 targets (multi-label; None otherwise).
        scores: `[N, C]` per-class scores (multi-label; None otherwise).
        classes: the C class names of a multi-label task's columns (() for single-label).
        paths: the prediction files read.
    """
    files: tuple
    multi_label: bool
    correct: Optional[np.ndarray] = None
    y_true: Optional[np.ndarray] = None
    scores: Optional[np.ndarray] = None
    classes: tuple = ()
    paths: tuple = ()


def read_predictions(paths) -> ClipPredictions:
    """Reads the `predictions-seed<s>-fold<f>.csv` files of one run (as `evar.modes.linear.write_predictions` writes
    them: `file_name,label,prediction,<score>` for single-label tasks, `file_name,label,<class>...` for multi-label
    ones) into one `ClipPredictions`.

    Raises:
        EvarError: an unreadable file, an unexpected header, files of different kinds or classes, or a clip listed
            twice (naming the file).
    """
    files, correct, labels, scores, classes, multi = [], [], [], [], None, None
    for path in paths:
        try:
            with open(path, newline='', encoding='utf-8') as f:
                reader = csv.reader(f)
                header = next(reader, None)
                rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise EvarError(f'Predictions file {path} is not readable ({e}).') from None
        if not header or header[:2] != ['file_name', 'label'] or len(header) < 3:
            raise EvarError(f'Predictions file {path}: header {header!r} is not file_name,label,prediction,<score> '
                            'nor file_name,label,<class>... (as evar writes them).')
        is_multi = header[2] != 'prediction'
        if multi is not None and (is_multi != multi or (is_multi and tuple(header[2:]) != classes)):
            raise EvarError(f'Predictions file {path}: its columns differ from those of {paths[0]}.')
        multi, classes = is_multi, tuple(header[2:]) if is_multi else ()
        for values in rows:
            if len(values) != len(header):
                raise EvarError(f'Predictions file {path}: row {values[:3]!r} has {len(values)} fields, expected '
                                f'{len(header)}.')
            files.append(values[0])
            if multi:
                labels.append(set(values[1].split(',')) if values[1] else set())
                try:
                    scores.append([float(v) for v in values[2:]])
                except ValueError:
                    raise EvarError(f'Predictions file {path}: clip {values[0]} has a non-numeric score.') from None
            else:
                correct.append(values[1] == values[2])
    if len(set(files)) != len(files):
        twice = next(f for f, n in Counter(files).items() if n > 1)
        raise EvarError(f'Predictions files {", ".join(map(str, paths))} list clip {twice} more than once.')
    order = np.argsort(np.array(files, dtype=object), kind='stable')
    ordered = tuple(files[i] for i in order)
    if multi:
        y_true = np.array([[c in labels[i] for c in classes] for i in order], dtype=np.int64).reshape(len(order), -1)
        return ClipPredictions(ordered, True, y_true=y_true, scores=np.asarray(scores, dtype=np.float64)[order],
                               classes=classes, paths=tuple(paths))
    return ClipPredictions(ordered, False, correct=np.asarray(correct, dtype=bool)[order], paths=tuple(paths))


def log_roots(results: Path, logs_root=None) -> list:
    """Folders that relative log paths are tried against: `logs_root` when given, else the current folder and the
    folder above the scores file's (runs write `logs/...` relative to where they ran, beside `results/`)."""
    if logs_root:
        return [Path(logs_root)]
    return list(dict.fromkeys([Path('.'), Path(results).resolve().parent.parent]))


def run_log_dir(row: ResultRow, roots: list) -> Optional[Path]:
    """The log folder a row's report names, found under one of `roots` (absolute paths as written); None when the
    report names none or it does not exist."""
    match = LOG_DIR.search(row.report or '')
    if not match:
        return None
    path = Path(match.group(1))
    for candidate in ([path] if path.is_absolute() else [root / path for root in roots]):
        if candidate.is_dir():
            return candidate
    return None


def cell_predictions(rows: list, roots: list) -> dict:
    """seed -> `ClipPredictions` of a cell's individual runs (`ModelRow.sources`), the last row of a seed counting;
    seeds whose prediction files are not found are absent ({} when none are)."""
    found = {}
    for row in rows:
        if row.runs != 1 or not row.seed:
            continue
        log_dir = run_log_dir(row, roots)
        paths = sorted(log_dir.glob(f'predictions-seed{row.seed}-fold*.csv')) if log_dir else []
        if paths:
            found[row.seed] = read_predictions(paths)
        else:
            found.pop(row.seed, None)
    return found


@dataclass(frozen=True)
class PairedRuns:
    """Two models' predictions on the same test clips, paired seed by seed.

    Attributes:
        seeds: (seed of A, seed of B) per pair: equal seeds where both ran them, else paired in sorted order.
        same_seeds: True when the pairs are equal seeds.
        files: `[N]` the shared clips' file names.
        a, b: the `ClipPredictions` of each pair, in `seeds` order.
    """
    seeds: tuple
    same_seeds: bool
    files: tuple
    a: tuple
    b: tuple

    @property
    def multi_label(self) -> bool:
        """True for a multi-label task."""
        return self.a[0].multi_label


def _seed_key(seed: str):
    return (0, int(seed), '') if seed.lstrip('-').isdigit() else (1, 0, seed)


def pair_runs(task: str, preds_a: dict, preds_b: dict, label_a: str, label_b: str) -> PairedRuns:
    """Pairs two models' runs on `task`: the seeds both ran (else the seeds in sorted order, as many as the model
    with fewer has), on clips matched by file name.

    Raises:
        EvarError: a model without predictions, runs of one model on different clips, or the two models' test clips
            (or multi-label classes) differing.
    """
    for label, preds in ((label_a, preds_a), (label_b, preds_b)):
        if not preds:
            raise EvarError(f'{label} has no per-clip test predictions on {task} (predictions-seed<s>-fold<f>.csv in '
                            "the log folder its rows' reports name); pass --logs_root if the logs were moved.")
        first = next(iter(preds.values()))
        for seed, p in preds.items():
            if p.files != first.files or p.multi_label != first.multi_label:
                raise EvarError(f'{label} on {task}: seed {seed} was tested on other clips than seed '
                                f'{next(iter(preds))} ({len(p.files)} vs {len(first.files)} clips).')
    pa, pb = next(iter(preds_a.values())), next(iter(preds_b.values()))
    if pa.files != pb.files:
        only_a, only_b = sorted(set(pa.files) - set(pb.files)), sorted(set(pb.files) - set(pa.files))
        raise EvarError(f'{task}: {label_a} and {label_b} were tested on different clips ({len(pa.files)} vs '
                        f'{len(pb.files)}; e.g. only {label_a}: {only_a[:3]}, only {label_b}: {only_b[:3]}); a paired '
                        'comparison needs the same test clips (same metadata and folds).')
    if pa.multi_label != pb.multi_label or pa.classes != pb.classes:
        raise EvarError(f'{task}: {label_a} and {label_b} predicted different classes; cannot compare them.')
    shared = sorted(set(preds_a) & set(preds_b), key=_seed_key)
    if shared:
        seeds = tuple((s, s) for s in shared)
    else:
        seeds = tuple(zip(sorted(preds_a, key=_seed_key), sorted(preds_b, key=_seed_key)))
    return PairedRuns(seeds=seeds, same_seeds=bool(shared), files=pa.files,
                      a=tuple(preds_a[s] for s, _ in seeds), b=tuple(preds_b[s] for _, s in seeds))


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of model A with model B on one task (scores as fractions; difference = A - B).

    Attributes:
        task, metric: the task and its metric (accuracy or mAP).
        score_a, score_b: each model's score on all clips, the mean over the paired seeds.
        bootstrap: the paired bootstrap over test clips (`evar.stats.Bootstrap`): difference, 95 % interval,
            bootstrap p-value.
        mcnemar: McNemar's exact test (accuracy only; with several paired seeds, the seed with the largest p-value,
            so the test is significant only where every seed's is), else None.
        p_value: the test used for significance: McNemar's p for accuracy, the bootstrap p for mAP.
        p_holm: `p_value` Holm-adjusted across the tasks compared (NaN until set).
        n_clips: the number of test clips.
        seeds: the (A seed, B seed) pairs; `same_seeds` False when they were paired by order.
    """
    task: str
    metric: str
    score_a: float
    score_b: float
    bootstrap: object
    mcnemar: object
    p_value: float
    p_holm: float
    n_clips: int
    seeds: tuple
    same_seeds: bool

    @property
    def seeds_text(self) -> str:
        """The seeds paired: '42;43', or '42~1;43~2' (A's seed ~ B's) when paired by order."""
        return ';'.join(a if a == b and self.same_seeds else f'{a}~{b}' for a, b in self.seeds)


SUPPORTED_METRICS = ('accuracy', 'mAP')


def compare_runs(task: str, metric: str, paired: PairedRuns, n_resamples: Optional[int] = None,
                 seed: Optional[int] = None) -> Comparison:
    """The paired comparison (bootstrap, and McNemar for accuracy) of `paired` runs on `task`.

    Raises:
        EvarError: a metric other than accuracy or mAP, or one that does not fit the predictions' kind.
    """
    from . import stats

    n_resamples = stats.N_RESAMPLES if n_resamples is None else n_resamples
    seed = stats.BOOTSTRAP_SEED if seed is None else seed
    if metric not in SUPPORTED_METRICS or (metric == 'mAP') != paired.multi_label:
        raise EvarError(f'{task}: paired comparison supports accuracy (single-label) and mAP (multi-label) tasks, got '
                        f'metric {metric!r} on {"multi" if paired.multi_label else "single"}-label predictions.')
    mcnemar = None
    if metric == 'accuracy':
        ca = np.stack([p.correct for p in paired.a])
        cb = np.stack([p.correct for p in paired.b])
        boot = stats.paired_bootstrap_accuracy(ca, cb, n_resamples, seed)
        mcnemar = max((stats.mcnemar_exact(x, y) for x, y in zip(ca, cb)), key=lambda m: m.p_value)
        p_value, score_a, score_b = mcnemar.p_value, float(ca.mean()), float(cb.mean())
    else:
        from .metrics import mean_average_precision

        y_true = paired.a[0].y_true
        sa, sb = np.stack([p.scores for p in paired.a]), np.stack([p.scores for p in paired.b])
        boot = stats.paired_bootstrap_map(y_true, sa, sb, n_resamples, seed)
        p_value = boot.p_value
        score_a = float(np.mean([mean_average_precision(y_true, s) for s in sa]))
        score_b = float(np.mean([mean_average_precision(y_true, s) for s in sb]))
    return Comparison(task=task, metric=metric, score_a=score_a, score_b=score_b, bootstrap=boot, mcnemar=mcnemar,
                      p_value=float(p_value), p_holm=float('nan'), n_clips=len(paired.files), seeds=paired.seeds,
                      same_seeds=paired.same_seeds)


def _task_metric(rows: list) -> str:
    return next((r.metric for r in rows if r.metric), 'accuracy')


def mark_best_and_tied(summary: Summary, roots: list, alpha: float = ALPHA) -> None:
    """Fills each line's `best_or_tied` and `p_values`: per task, the line with the best mean is True, and every
    other line with predictions on the same clips is True when its difference from the best is not significant
    at `alpha` after Holm's correction over that line's tasks (False otherwise). Tasks where the best line or every
    other line lacks per-clip predictions are left unmarked; reasons go to `summary.stat_notes`."""
    from .stats import holm

    raw = {}  # (line index, task) -> p-value against the best
    for task in summary.tasks:
        lines = [(i, m) for i, m in enumerate(summary.rows) if task in m.cells]
        if len(lines) < 2:
            continue
        best_i, best = max(lines, key=lambda im: im[1].cells[task].mean)
        best_preds = cell_predictions(best.sources[task], roots)
        if not best_preds:
            continue
        best.test_clips.setdefault(task, len(next(iter(best_preds.values())).files))
        metric = _task_metric(best.sources[task])
        for i, model in lines:
            if i == best_i:
                continue
            preds = cell_predictions(model.sources[task], roots)
            if not preds:
                continue
            model.test_clips.setdefault(task, len(next(iter(preds.values())).files))
            try:
                paired = pair_runs(task, best_preds, preds, best.label, model.label)
                raw[i, task] = compare_runs(task, metric, paired).p_value
            except EvarError as e:
                summary.stat_notes.append(f'{task}: {model.label} not tested against {best.label}: {e}')
        if any(t == task for _, t in raw):
            best.best_or_tied[task] = True
    for i, model in enumerate(summary.rows):
        tasks = [t for (j, t) in raw if j == i]
        for task, p in zip(tasks, holm([raw[i, t] for t in tasks])):
            model.p_values[task] = float(p)
            model.best_or_tied[task] = bool(p > alpha)


def _pct(x: float) -> str:
    return f'{100 * x:.2f}'


def _md_escape(text: str) -> str:
    return text.replace('|', '\\|')


def _table_head(tasks: list, extra: tuple = ()) -> list:
    """The header and alignment lines of a markdown table: model, the tasks, then `extra` columns."""
    columns = [_md_escape(t) for t in tasks] + list(extra)
    return ['| model | ' + ' | '.join(columns) + ' |', '|---|' + '---:|' * len(columns)]


def _cell_texts(model: ModelRow, tasks: list, text) -> list:
    """`text(model, task, cell)` for each task the line has a cell on, '-' for the others."""
    return [text(model, t, model.cells[t]) if t in model.cells else '-' for t in tasks]


def to_markdown(summary: Summary) -> str:
    """A markdown table of `summary`: mean ± std in percent per cell, an average column, notes below."""
    n_tasks = len(summary.tasks)
    sources = ', '.join(map(str, summary.sources or [summary.results]))
    lines = [f'Scores in % from {sources}: mean ± {STD_NOTE}; a single run shows the mean only.'
             + (f' Filter: {",".join(summary.filter_terms)}.' if summary.filter_terms else ''), '']
    lines += _table_head(summary.tasks, ['average'])

    def cell_text(model, task, c):
        text = _pct(c.mean) + (f' ± {_pct(c.std)}' if c.std is not None else '')
        if model.best_or_tied.get(task):
            text = f'**{text}**'
        return text + (f' {AGG_MARK}' if c.from_aggregate else '')

    any_partial = False
    any_agg = any(c.from_aggregate for m in summary.rows for c in m.cells.values())
    any_tie = any(m.best_or_tied.get(t) for m in summary.rows for t in m.cells)
    for model in summary.rows:
        cells = _cell_texts(model, summary.tasks, cell_text)
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
    if any_tie:
        notes.append(TIE_NOTE + '.')
    for line, reason in summary.skipped_rows:
        notes.append(f'Left out line {line}: {reason}.')
    notes += summary.stat_notes
    if notes:
        lines += [''] + notes
    return '\n'.join(lines + [''] + interval_markdown(summary))


def _interval_text(interval) -> str:
    return '' if interval is None else f'[{_pct(interval.low)}, {_pct(interval.high)}]'


def interval_cell_text(model: ModelRow, task: str, cell: Cell) -> str:
    """A cell of the interval table: 'mean [low, high], n=clips' in percent ('(1 run)' where no interval exists)."""
    ci = _interval_text(model.intervals.get(task)) or f'({cell.runs} run{"s" if cell.runs > 1 else ""})'
    n = model.test_clips.get(task)
    return f'{_pct(cell.mean)} {ci}' + (f', n={n}' if n is not None else '')


def interval_markdown(summary: Summary) -> list:
    """The lines of the second table: per cell the mean in percent with its 95 % interval and the test clips."""
    lines = [f'Mean in % with its {CI_NOTE}; n: test clips (summed over folds).', '',
             *_table_head(summary.tasks)]
    for model in summary.rows:
        cells = _cell_texts(model, summary.tasks, interval_cell_text)
        lines.append(f'| {_md_escape(model.label)} | ' + ' | '.join(cells) + ' |')
    return lines


def _num(x: Optional[float]) -> str:
    return '' if x is None else repr(round(100 * x, 6))


def to_csv_text(summary: Summary) -> str:
    """Numbers in percent: `<task>_mean`, `<task>_std` (sample std; empty for one run), `<task>_runs` per task, then
    average, n_tasks, complete, and per task `<task>_ci_low`, `<task>_ci_high` (Student-t 95 % interval of the mean;
    empty for one run), `<task>_test_clips` (empty: unknown), `<task>_best_or_tied` (True: the best mean or not
    significantly different from it; False: significantly worse; empty: not tested) and `<task>_p_holm`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    header = ['model', 'representation', 'head']
    for task in summary.tasks:
        header += [f'{task}_mean', f'{task}_std', f'{task}_runs']
    extra = [f'{task}_{name}' for task in summary.tasks
             for name in ('ci_low', 'ci_high', 'test_clips', 'best_or_tied', 'p_holm')]
    writer.writerow(header + ['average', 'n_tasks', 'complete'] + extra)
    for model in summary.rows:
        row = [model.label, model.representation, model.head]
        for task in summary.tasks:
            c = model.cells.get(task)
            row += ['', '', ''] if c is None else [_num(c.mean), _num(c.std), str(c.runs)]
        row += [_num(model.average), str(len(model.cells)), str(len(model.cells) == len(summary.tasks))]
        for task in summary.tasks:
            ci, n, tie = model.intervals.get(task), model.test_clips.get(task), model.best_or_tied.get(task)
            p = model.p_values.get(task)
            row += ['', ''] if ci is None else [_num(ci.low), _num(ci.high)]
            row += ['' if n is None else str(n), '' if tie is None else str(tie), '' if p is None else f'{p:.6g}']
        writer.writerow(row)
    return buf.getvalue()


def show(summary: Summary, out: str = '') -> None:
    """Prints `summary` as markdown and, when `out` is given (not '' or '-', as compare's), writes it as CSV there
    (atomically)."""
    print(summary.markdown())
    if out and out != '-':
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


def find_line(summary: Summary, name: str):
    """The `ModelRow` named `name`: its label exactly, else the one line of that representation.

    Raises:
        EvarError: no such line, or a representation with several lines (listing their labels).
    """
    exact = [m for m in summary.rows if m.label == name]
    if exact:
        return exact[0]
    by_rep = [m for m in summary.rows if m.representation == name]
    if len(by_rep) == 1:
        return by_rep[0]
    if by_rep:
        raise EvarError(f'Model {name!r} has several lines ({"; ".join(m.label for m in by_rep)}); name one by its '
                        'label, in quotes.')
    names = {m.label for m in summary.rows} | {m.representation for m in summary.rows}
    raise EvarError(f'Model {name!r} is not in {", ".join(map(str, summary.sources))}.{did_you_mean(name, names)} '
                    f'Models: {"; ".join(m.label for m in summary.rows)}.')


def compare(model_a: str, model_b: str, tasks=None, results='results/scores.csv', logs_root=None,
            n_resamples: Optional[int] = None, seed: Optional[int] = None) -> list:
    """Paired comparisons (`Comparison`, difference A - B) of two models on every task both have (or on `tasks`),
    with `p_holm` adjusted across those tasks.

    Args:
        model_a, model_b: line labels or representation names of the summary table.
        tasks: task names (comma-separated or a list) to compare; default every task both models have.
        results: the scores CSV(s), as for `summarize`.
        logs_root: where relative log paths are read from (see `summarize`).
        n_resamples, seed: the bootstrap's (default `evar.stats.N_RESAMPLES`, `evar.stats.BOOTSTRAP_SEED`).

    Raises:
        EvarError: an unknown model or task, no shared task, a task without predictions of both models, the two
            models tested on different clips, or a metric other than accuracy and mAP.
    """
    from .stats import holm

    summary = summarize(results=results, significance=False)
    a, b = find_line(summary, str(model_a)), find_line(summary, str(model_b))
    if a is b:
        raise EvarError(f'--compare needs two different models, got {model_a!r} twice.')
    shared = [t for t in summary.tasks if t in a.cells and t in b.cells]
    wanted = _filter_terms(tasks)
    if wanted:
        unknown = [t for t in wanted if t not in [s.lower() for s in shared]]
        if unknown:
            raise EvarError(f'--task {",".join(unknown)}: not a task both {a.label} and {b.label} have; shared tasks: '
                            f'{", ".join(shared) or "none"}.')
        shared = [t for t in shared if t.lower() in wanted]
    if not shared:
        raise EvarError(f'{a.label} and {b.label} share no task in {", ".join(map(str, summary.sources))}.')
    roots = log_roots(summary.results, logs_root)
    out = []
    for task in shared:
        paired = pair_runs(task, cell_predictions(a.sources[task], roots), cell_predictions(b.sources[task], roots),
                           a.label, b.label)
        out.append(compare_runs(task, _task_metric(a.sources[task]), paired, n_resamples, seed))
    adjusted = holm([c.p_value for c in out])
    return [dataclasses.replace(c, p_holm=float(p)) for c, p in zip(out, adjusted)]


COMPARE_COLUMNS = ('task', 'metric', 'score_a', 'score_b', 'difference', 'ci_low', 'ci_high', 'p_bootstrap',
                   'p_mcnemar', 'a_only_right', 'b_only_right', 'p_holm', 'n_clips', 'seeds_paired', 'same_seeds')


def _comparison_values(c: Comparison) -> list:
    m = c.mcnemar
    return [c.task, c.metric, _num(c.score_a), _num(c.score_b), _num(c.bootstrap.difference),
            _num(c.bootstrap.interval.low), _num(c.bootstrap.interval.high), f'{c.bootstrap.p_value:.6g}',
            '' if m is None else f'{m.p_value:.6g}', '' if m is None else str(m.a_only),
            '' if m is None else str(m.b_only), f'{c.p_holm:.6g}', str(c.n_clips), c.seeds_text, str(c.same_seeds)]


def comparison_csv_text(comparisons: list, label_a: str, label_b: str) -> str:
    """The comparisons as CSV: `model_a`, `model_b`, then `COMPARE_COLUMNS`; scores, difference and interval in
    percent; p-values as fractions."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(['model_a', 'model_b', *COMPARE_COLUMNS])
    for c in comparisons:
        writer.writerow([label_a, label_b, *_comparison_values(c)])
    return buf.getvalue()


def _p_text(p: float) -> str:
    return f'{p:.2g}' if p >= 0.001 else '<0.001'


def comparison_markdown(comparisons: list, label_a: str, label_b: str, n_resamples: int, seed: int) -> str:
    """The comparisons as a markdown table (scores and differences in percent) with what each column means."""
    lines = [f'{_md_escape(label_a)} (A) vs {_md_escape(label_b)} (B): difference A - B in % points; 95 % interval '
             f'of a paired bootstrap over test clips ({n_resamples} resamples, seed {seed}); McNemar: exact test '
             '(accuracy; the largest p over paired seeds), A/B only right: discordant clips; Holm: the significance '
             'test (McNemar, else bootstrap) adjusted across these tasks.', '',
             '| task | metric | A | B | difference | 95 % interval | p bootstrap | p McNemar | A/B only right '
             '| p Holm | clips | seeds paired |', '|---|---|' + '---:|' * 10]
    for c in comparisons:
        m = c.mcnemar
        lines.append(f'| {_md_escape(c.task)} | {c.metric} | {_pct(c.score_a)} | {_pct(c.score_b)} | '
                     f'{100 * c.bootstrap.difference:+.2f} | {_interval_text(c.bootstrap.interval)} | '
                     f'{_p_text(c.bootstrap.p_value)} | {"-" if m is None else _p_text(m.p_value)} | '
                     f'{"-" if m is None else f"{m.a_only}/{m.b_only}"} | {_p_text(c.p_holm)} | {c.n_clips} | '
                     f'{c.seeds_text}{"" if c.same_seeds else " (by order)"} |')
    return '\n'.join(lines)


def _slug(text: str) -> str:
    return re.sub(r'[^A-Za-z0-9_.-]+', '_', text).strip('_') or 'model'


def compare_command(model_a: str, model_b: str, task: Optional[str] = None, results: str = 'results/scores.csv',
                    out: str = '', logs_root: Optional[str] = None, n_resamples: int = 10000, seed: int = 0) -> None:
    """Compares MODEL_A with MODEL_B on every task both have: a paired bootstrap over test clips of the score
    difference with its 95 % interval, McNemar's exact test (accuracy), the clips and seeds paired; prints a markdown
    table and writes it as CSV (`evar compare`, `python summarize.py --compare A B`).

    Args:
        model_a, model_b: model lines of the summary table: a representation name, or a line label such as
            'byola [logreg]'.
        task: only these tasks (comma-separated).
        results: the scores CSV(s), comma-separated.
        out: where to write the CSV (default: compare-<A>-vs-<B>.csv beside the first scores file; '-' to skip).
        logs_root: the folder the rows' relative log paths are relative to (default: the current folder, then the
            folder above the scores file's).
        n_resamples: bootstrap resamples; seed: their random seed.
    """
    if n_resamples < 100:
        raise EvarError(f'--n_resamples must be at least 100 for a 95 % interval, got {n_resamples}.')
    comparisons = compare(model_a, model_b, tasks=task, results=results, logs_root=logs_root,
                          n_resamples=n_resamples, seed=seed)
    summary_paths = result_paths(results)
    print(comparison_markdown(comparisons, str(model_a), str(model_b), n_resamples, seed))
    if out != '-':
        path = Path(out) if out else summary_paths[0].parent / f'compare-{_slug(str(model_a))}-vs-{_slug(str(model_b))}.csv'
        atomic_write_text(path, comparison_csv_text(comparisons, str(model_a), str(model_b)))
        print(f'\nWrote {path}', file=sys.stderr)
