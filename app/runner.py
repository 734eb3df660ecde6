"""The run every application shares, on evar's own path: each built task (one per split) is prepared and embedded by
`evar.modes.linear.prepare_run` and `TaskEmbeddings` (the content-addressed cache, normalisation statistics from
the training rows), a head is trained per seed on the train rows and selected on the (patient-disjoint) valid rows
by the application's validation score, the test rows are scored once, and every score goes to
`results/<app>-scores.csv` as evar `ResultRow`s: one row per (task, seed, metric) and, per metric, the mean and
sample std over all seeds and splits.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from evar.errors import EvarError

from .layout import BuiltTask, read_groups

log = logging.getLogger('evar')


@dataclass(frozen=True)
class SplitRows:
    """The rows of one split of an embedded task and what the patient-level rules need.

    Attributes:
        rows: metadata row indices int64 [n].
        y: class indices int64 [n] in the application's class order.
        patients, recordings: string arrays [n], each row's patient and recording.
    """
    rows: np.ndarray
    y: np.ndarray
    patients: np.ndarray
    recordings: np.ndarray


@dataclass
class EmbeddedTask:
    """One built task, prepared and embedded by evar: its `PreparedRun`, its train/valid/test `SplitRows`, and
    its embeddings (clip float [N, D], or an `evar.embed.extract.FrameEmbeddings`)."""
    task: BuiltTask
    prepared: object
    splits: dict
    embeddings: object


@dataclass(frozen=True)
class AppSpec:
    """What an application adds to the shared run.

    Attributes:
        name: the application's name; results go to `<results_dir>/<name>-scores.csv`.
        classes: class names in the order its metrics index them.
        level: 'clip' (clip embeddings [N, D]) or 'frame' (frame embeddings).
        make_head: seed -> an unfitted head (`app.heads.ClipHead` / `FrameHead`).
        valid_score: (probabilities [n, C], valid `SplitRows`) -> the score the head selects on (higher is better).
        test_scores: (probabilities [n, C], test `SplitRows`) -> {metric name: value}.
        head_name: the head's name in results.
        options: the application's settings, recorded in every row's settings JSON.
        frame_pool: frames averaged per head input frame (frame level only).
    """
    name: str
    classes: tuple
    level: str
    make_head: Callable
    valid_score: Callable
    test_scores: Callable
    head_name: str
    options: dict
    frame_pool: int = 1


def encode(labels: Sequence[str], classes: Sequence[str], where: str) -> np.ndarray:
    """Class indices int64 [n] of `labels` in `classes` order.

    Raises:
        EvarError: a label outside `classes`, naming `where`.
    """
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({lab for lab in labels if lab not in index})
    if unknown:
        raise EvarError(f'{where}: label(s) {unknown[:5]} are not among the classes {list(classes)}.')
    return np.array([index[lab] for lab in labels], dtype=np.int64)


def embed_built_task(config_file, task: BuiltTask, classes: Sequence[str], level: str = 'clip', options: str = '',
                     work_root: Optional[Path] = None, device: Optional[str] = None,
                     progress: bool = False) -> EmbeddedTask:
    """Prepares (checks) and embeds `task` with evar (cached); its metadata must hold train, valid and test rows.

    Raises:
        EvarError: bad input (config, task files, audio, labels), before anything is embedded.
    """
    from evar.modes.linear import prepare_run
    from evar.splits import training_rows

    prepared = prepare_run(config_file, str(task.yaml), options, seeds=(0,), work_root=work_root, device=device,
                           progress=progress)
    plan = prepared.plans[0, 1]
    if plan.valid_carved:
        raise EvarError(f'{task.metadata}: no valid rows; application tasks carry a patient-disjoint valid split '
                        '(build the folder again with the application\'s build command).')
    meta = prepared.metadata
    patients, recordings = read_groups(task.groups, meta.file_names)
    y = encode([lab for (lab,) in meta.labels], classes, str(task.metadata))
    splits = {s: SplitRows(rows=plan.rows[s], y=y[plan.rows[s]], patients=patients[plan.rows[s]],
                           recordings=recordings[plan.rows[s]]) for s in ('train', 'valid', 'test')}
    embeddings = prepared.source.embeddings(1, training_rows(meta, 1), level=level)
    return EmbeddedTask(task=task, prepared=prepared, splits=splits, embeddings=embeddings)


def head_inputs(embedded: EmbeddedTask, split: str, frame_pool: int = 1):
    """A split's head input: clip embeddings float32 [n, D], or (frames [n, T, D], mask [n, T]) for frame
    embeddings (averaged over `frame_pool` frames)."""
    from .heads import pool_frames

    rows = embedded.splits[split].rows
    if isinstance(embedded.embeddings, np.ndarray):
        return np.asarray(embedded.embeddings[rows], dtype=np.float32)
    frames = embedded.embeddings
    if frame_pool <= 1:
        return frames.padded(rows)
    # pooled clip by clip, then padded: memory for ceil(T / frame_pool) frames per clip, not T
    clips = [pool_frames(frames.clip(int(r))[None].astype(np.float32), np.ones((1, frames.lengths[int(r)]), bool),
                         frame_pool)[0][0] for r in rows]
    t_max = max((len(c) for c in clips), default=0)
    x = np.zeros((len(clips), t_max, frames.values.shape[1]), dtype=np.float32)
    for i, c in enumerate(clips):
        x[i, :len(c)] = c
    return x, np.arange(t_max)[None, :] < np.array([len(c) for c in clips])[:, None]


@dataclass(frozen=True)
class RunScore:
    """The test scores of one (task, seed): {metric name: value}, plus the selected epoch and validation score."""
    task: str
    seed: int
    scores: dict
    best_valid: float
    best_epoch: int


def run_app(spec: AppSpec, config_file, tasks: Sequence[BuiltTask], seeds: Sequence[int] = (42,),
            options: str = '', work_root: Optional[Path] = None, device: Optional[str] = None,
            results_dir: Path = Path('results'), progress: bool = False) -> list:
    """Embeds each task, trains and scores a head per seed, and appends the rows to `<results_dir>/<name>-scores.csv`.

    Returns:
        The `RunScore` of every (task, seed), tasks outer.

    Raises:
        EvarError: no task, or bad input in any task (all tasks are checked before the first is embedded).
    """
    from evar.modes.linear import prepare_run

    if not tasks:
        raise EvarError(f'{spec.name}: no built task to run; run the application\'s build command first.')
    if not seeds:
        raise EvarError(f'{spec.name}: give at least one seed.')
    t0 = time.perf_counter()
    for task in tasks:  # every task's files and audio are checked before anything is embedded
        prepare_run(config_file, str(task.yaml), options, seeds=(0,), work_root=work_root, device=device,
                    progress=progress)
    runs, embedded_tasks = [], []
    for task in tasks:
        embedded = embed_built_task(config_file, task, spec.classes, spec.level, options, work_root, device, progress)
        embedded_tasks.append(embedded)
        inputs = {s: head_inputs(embedded, s, spec.frame_pool) for s in ('train', 'valid', 'test')}
        for seed in seeds:
            head = spec.make_head(seed)
            valid = embedded.splits['valid']
            head.fit(inputs['train'], embedded.splits['train'].y, inputs['valid'],
                     lambda probs, valid=valid: spec.valid_score(probs, valid))
            scores = spec.test_scores(head.predict_proba(inputs['test']), embedded.splits['test'])
            runs.append(RunScore(task=task.name, seed=int(seed), scores=scores, best_valid=head.best_valid_,
                                 best_epoch=head.best_epoch_))
            log.info(f'{spec.name} {task.name} seed {seed}: ' + ', '.join(f'{k} {v:.4f}' for k, v in scores.items()))
    record(spec, embedded_tasks, runs, Path(results_dir), time.perf_counter() - t0)
    return runs


def mean_group(task: str) -> str:
    """The task whose mean a run joins: the task's name without its split number (circor2 -> circor, sprs_intra ->
    sprs_intra): the splits of one test set are averaged, different test sets never."""
    return task.rstrip('0123456789') or task


def record(spec: AppSpec, embedded_tasks: list, runs: list, results_dir: Path, elapsed: float) -> Path:
    """Appends one `ResultRow` per (task, seed, metric) and, per `mean_group` of several runs and per metric, one row
    with the mean and sample std over its seeds and splits to `<results_dir>/<name>-scores.csv`; returns that
    path."""
    from evar.modes.linear import settings_id
    from evar.results import ResultRow, append_rows

    first = embedded_tasks[0].prepared
    cfg = first.cfg
    settings = {'model': cfg.model_hash()[:16], 'weights': first.source.weight_digest(),
                'run': dataclasses.asdict(cfg.run), 'app': spec.name, 'head': spec.head_name,
                'options': spec.options, 'frame_pool': spec.frame_pool,
                'tasks': {e.task.name: e.prepared.metadata.content_hash[:16] for e in embedded_tasks},
                'unit_sec': first.task.unit_sec}
    run_id = settings_id(settings)
    base = dict(representation=cfg.name, run_id=run_id, mode='linear', head=spec.head_name,
                config_hash=cfg.model_hash()[:16], weight_hash=first.source.weight_digest(), elapsed_sec=elapsed,
                timestamp=time.strftime('%Y-%m-%dT%H:%M:%S'),
                settings=json.dumps(settings, sort_keys=True, default=str, separators=(',', ':')))
    rows = []
    for run in runs:
        for metric, value in run.scores.items():
            rows.append(ResultRow(**base, task=run.task, score=float(value), seed=str(run.seed), metric=metric,
                                  report=(f'{spec.name} {spec.head_name}: {cfg.name} {run.task} seed {run.seed} -> '
                                          f'{metric} {value:.5f} (valid {run.best_valid:.5f} at epoch '
                                          f'{run.best_epoch}); config {cfg.path}')))
    groups: dict = {}
    for run in runs:
        groups.setdefault(mean_group(run.task), []).append(run)
    for group, members in groups.items():
        if len(members) < 2:  # one run: its own rows say it all (as evar's linear mode)
            continue
        tasks, seeds = sorted({r.task for r in members}), sorted({r.seed for r in members})
        for metric in members[0].scores:
            values = np.array([r.scores[metric] for r in members], dtype=np.float64)
            std = float(values.std(ddof=1)) if len(values) > 1 else None
            rows.append(ResultRow(**base, task=group, score=float(values.mean()), std=std, runs=len(values),
                                  seed=';'.join(map(str, seeds)), metric=metric,
                                  report=(f'{spec.name} {spec.head_name}: {cfg.name} mean of {len(values)} runs '
                                          f'(tasks {tasks} x seeds {seeds}) -> {metric} {values.mean():.5f} +- '
                                          f'{0.0 if std is None else std:.5f}; config {cfg.path}')))
    path = results_dir / f'{spec.name}-scores.csv'
    append_rows(path, rows)
    log.info(f'-> {path}')
    return path


def built_tasks(data_dir: Path, prefix: str) -> list:
    """The `BuiltTask`s of an application folder whose names start with `prefix`, sorted by name.

    Raises:
        EvarError: a missing folder or no `<prefix>*.yaml` in it, saying to run the build command.
    """
    data_dir = Path(data_dir)
    found = sorted(data_dir.glob(f'{prefix}*.yaml')) if data_dir.is_dir() else []
    if not found:
        raise EvarError(f'{data_dir}: no built {prefix}*.yaml task; run the application\'s build command with this '
                        'folder as --out first.')
    return [BuiltTask(name=p.stem, yaml=p, metadata=p.with_suffix('.csv'), groups=p.parent / f'{p.stem}-groups.csv')
            for p in found]


def parse_seeds(seeds) -> tuple:
    """Seeds from the command line: an int, '42,43' or a sequence -> a tuple of ints.

    Raises:
        EvarError: anything else.
    """
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return (seeds,)
    try:
        items = seeds.split(',') if isinstance(seeds, str) else list(seeds)
        return tuple(int(s) for s in items if str(s).strip())
    except (TypeError, ValueError):
        raise EvarError(f'--seeds must be integers such as 42,43,44, got {seeds!r}.') from None


def parse_hidden(hidden) -> tuple:
    """Hidden layer sizes from the command line: 128, (128,), [256, 128] or () -> a tuple of positive ints.

    Raises:
        EvarError: anything else.
    """
    items = tuple(hidden) if isinstance(hidden, (list, tuple)) else (hidden,)
    if not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in items):
        raise EvarError(f'--hidden must be positive layer sizes such as (128,), got {hidden!r}.')
    return items


def run_folder(make_spec: Callable, name: str, config_file, data, seeds, options: str = '',
               work_root: Optional[str] = None, results_dir: str = 'results', device: Optional[str] = None,
               progress: bool = False) -> list:
    """An application's `run` command: the device picked (`evar.embed.source.pick_device`), then `run_app` with
    `make_spec(device)` on the tasks `<data>/<name>*.yaml`."""
    from evar.embed.source import pick_device

    dev = pick_device(device)
    return run_app(make_spec(dev), config_file, built_tasks(Path(data), name), parse_seeds(seeds), options,
                   None if work_root is None else Path(work_root), dev, Path(results_dir), progress)
