"""Frozen-embedding evaluation: embed a task once with a frozen model (cached), fit a head per (seed, fold), record
the test score. The heads are the linear probe and logistic regression (mode `linear`) and weighted kNN (mode
`knn`).

Steps (EVAR's `--step`): '1pass' embeds (or reuses the cache) and evaluates; '2pass_1_precompute_only' only fills
the cache (the embedding step alone); '2pass_2_train_test' evaluates from the cache and fails if it is missing.
Several seeds run in one process on the same embeddings (2pass_lineareval.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..errors import EvarError
from ..heads.base import HeadOptions

log = logging.getLogger('evar')
STEPS = ('1pass', '2pass_1_precompute_only', '2pass_2_train_test')


@dataclass
class FoldResult:
    """The test score of one fold, what validation selected (`selection`: the head's own words), and the split
    sizes."""
    fold: int
    score: float
    best_valid: float
    n_train: int
    n_valid: int
    n_test: int
    selection: str = ''


@dataclass
class RunResult:
    """One seed's score: the mean over folds."""
    seed: int
    score: float
    folds: list = field(default_factory=list)
    log_dir: Optional[Path] = None


@dataclass
class PreparedRun:
    """What a frozen-embedding run has checked before embedding anything: the config, the task, its split plans and
    where its audio is."""
    cfg: object
    task: object
    metadata: object
    folds: list
    plans: dict  # (seed, fold) -> SplitPlan
    source: object  # evar.embed.source.TaskEmbeddings
    work_root: Path


def prepare_run(config_file, task, options: str = '', seeds: Sequence[int] = (42,), valid_fraction: float = 0.1,
                unit_sec: Optional[float] = None, work_root: Optional[Path] = None, device: Optional[str] = None,
                bf16: bool = False, progress: bool = True, check_audio: bool = True,
                allow_split_overlap: bool = False) -> PreparedRun:
    """Loads and checks everything cheap (config, task, metadata, folds, split plans, audio files) so that bad input
    stops the run before any embedding.

    Raises:
        EvarError: any bad input, naming the file, key or flag.
    """
    from ..config import load_config
    from ..data import read_metadata
    from ..embed.source import TaskEmbeddings, pick_device
    from ..paths import default_work_root
    from ..splits import is_multi_label, plan_splits, task_folds
    from ..tasks import get_task

    cfg = load_config(config_file, options)
    task_def = get_task(str(task), unit_sec=unit_sec)
    work_root = Path(work_root) if work_root is not None else default_work_root()
    if task_def.name == 'demo' and task_def.metadata is None:
        from ..demo import ensure_demo

        ensure_demo(work_root)
    metadata = read_metadata(task_def.metadata_path(work_root), multi_label=is_multi_label(task_def))
    folds = task_folds(metadata, task_def)
    source = TaskEmbeddings(cfg, task_def, metadata, work_root, pick_device(device), bf16=bf16, progress=progress)
    source.data_root()
    plans = plan_splits(metadata, task_def, seeds, valid_fraction, allow_split_overlap, folds)
    if check_audio:
        source.check_audio_files()
    return PreparedRun(cfg=cfg, task=task_def, metadata=metadata, folds=folds, plans=plans, source=source,
                       work_root=work_root)


def setup_logging(log_dir: Optional[Path]) -> None:
    """Logs of the 'evar' logger to stderr, and to `log_dir`/run.log when given."""
    log.setLevel(logging.INFO)
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter('%(asctime)s %(message)s', '%H:%M:%S'))
    log.addHandler(console)
    file_only = logging.getLogger('evar.runlog')  # lines for run.log alone
    for h in list(file_only.handlers):
        file_only.removeHandler(h)
    file_only.propagate = False
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_dir / 'run.log')
        fh.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(message)s'))
        log.addHandler(fh)
        file_only.addHandler(fh)
    log.propagate = False


def embed_task(prepared: PreparedRun, allow_compute: bool = True, recompute: bool = False) -> dict:
    """The clip embeddings of every fold, {fold: [N, D]}, from the cache or computed (the embedding step alone)."""
    from ..splits import training_rows

    return {fold: prepared.source.embeddings(fold, training_rows(prepared.metadata, fold), allow_compute=allow_compute,
                                             recompute=recompute)
            for fold in prepared.folds}


def lineareval(config_file, task, options: str = '', seeds: Sequence[int] = (42,), head: Optional[HeadOptions] = None,
               unit_sec: Optional[float] = None, step: str = '1pass', work_root: Optional[Path] = None,
               results_dir: Path = Path('results'), logs_dir: Path = Path('logs'), device: Optional[str] = None,
               bf16: bool = False, progress: bool = True, recompute: bool = False,
               allow_split_overlap: bool = False) -> list:
    """Runs one frozen-embedding evaluation and appends one row per seed to `results_dir`/scores.csv (plus a mean
    row for several seeds).

    Args:
        config_file: the model YAML.
        task: a built-in task name or a task YAML path.
        options: config overrides 'key=value,+key=value'.
        seeds: the heads' seeds (also the validation carve's).
        head: the head and its settings (default: the EVAR-protocol linear probe).
        unit_sec: overrides the task's clip length in seconds.
        step: one of STEPS.
        work_root: metadata, audio and cache folder (default $EVAR_WORK or ./work).
        results_dir, logs_dir: where scores.csv and the run's log folder go.
        device: 'cpu' / 'cuda' (default: cuda when available).
        bf16: bf16 autocast for the model on GPU.
        progress: progress bars.
        recompute: ignore cached embeddings and overwrite them.
        allow_split_overlap: accept files listed in more than one split (an error otherwise).

    Returns:
        A `RunResult` per seed ([] for the precompute step).

    Raises:
        EvarError: bad input, before anything is embedded.
    """
    from ..heads import head_class

    head = head or HeadOptions()
    t_start = time.perf_counter()
    if step not in STEPS:
        raise EvarError(f'Unknown step {step!r}; expected one of {list(STEPS)}.')
    cls = head_class(head.head)
    prepared = prepare_run(config_file, task, options, seeds, head.valid_fraction, unit_sec, work_root, device, bf16,
                           progress, check_audio=(step != '2pass_2_train_test'),
                           allow_split_overlap=allow_split_overlap)
    cfg, task_def, source = prepared.cfg, prepared.task, prepared.source
    head = selecting_on_task_metric(head, task_def.metric)
    probe = cls.from_options(head, cfg.run, seeds[0], source.device)
    head_name = probe.name
    settings = run_settings(prepared, probe, head, unit_sec)
    run_id = settings_id(settings)
    log_dir = Path(logs_dir) / f'{cfg.name}-{task_def.name}-{head_name}-{run_id}'
    setup_logging(log_dir if step != '2pass_1_precompute_only' else None)
    log.info(f'{cfg.name} ({cfg.audio_repr}) on {task_def.name}: {len(prepared.metadata)} clips, folds '
             f'{prepared.folds}, device {source.device}, step {step}')

    try:
        embeddings = embed_task(prepared, allow_compute=(step != '2pass_2_train_test'), recompute=recompute)
        if step == '2pass_1_precompute_only':
            log.info('embeddings are cached; run --step=2pass_2_train_test to train and test')
            return []

        results = []
        for seed in seeds:
            run = RunResult(seed=seed, score=0.0, log_dir=log_dir)
            for fold in prepared.folds:
                clf = cls.from_options(head, cfg.run, seed, source.device)
                run.folds.append(fit_and_test(clf, prepared.plans[seed, fold], embeddings[fold], prepared.metadata,
                                              task_def.metric, log_dir))
            run.score = float(np.mean([f.score for f in run.folds]))
            log.info(f'seed {seed}: {task_def.metric} {run.score:.5f}' +
                     (f' (folds: {", ".join(f"{f.score:.4f}" for f in run.folds)})' if len(prepared.folds) > 1 else ''))
            results.append(run)

        settings['embedding_dim'] = int(np.asarray(embeddings[prepared.folds[0]]).shape[1])  # what actually ran
        record(prepared, cls.mode, head_name, results, Path(results_dir), log_dir, time.perf_counter() - t_start,
               run_id, settings)
    except BaseException as e:  # the log folder keeps the reason a run ended; the console gets it from the CLI
        logging.getLogger('evar.runlog').error(f'run failed ({type(e).__name__}) {e}')
        raise
    log.info(f'done in {time.perf_counter() - t_start:.1f}s, peak memory {peak_memory_mb():.0f} MB')
    return results


def peak_memory_mb() -> float:
    """This process's peak resident memory in MiB (VmHWM; unlike ru_maxrss it does not count the parent's pages)."""
    from ..fileio import proc_status_field

    peak_kb = proc_status_field('VmHWM')
    if peak_kb is not None:
        return int(peak_kb) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fit_and_test(clf, plan, embs: np.ndarray, metadata, metric: str, log_dir: Path) -> FoldResult:
    """Fits `clf` on the plan's train rows (selecting on its valid rows), scores the test rows once, and writes the
    test predictions and class-wise accuracies under `log_dir`."""
    import torch

    from ..metrics import classwise_accuracy
    from ..metrics import score as metric_score

    torch.manual_seed(plan.seed)
    np.random.seed(plan.seed)
    X = {s: np.asarray(embs[plan.rows[s]], dtype=np.float32) for s in ('train', 'valid', 'test')}
    ys = dict(plan.targets)
    merged = plan.valid_carved and not clf.needs_validation
    if merged:  # nothing to select: the whole training split trains
        X['train'] = np.concatenate([X['train'], X['valid']])
        ys['train'] = np.concatenate([ys['train'], ys['valid']])
    t0 = time.perf_counter()
    clf.fit(X['train'], ys['train'], X['valid'], ys['valid'])
    fit_sec = time.perf_counter() - t0
    scores = clf.predict_scores(X['test'])
    test = metric_score(metric, ys['test'], scores)
    valid = (f'valid 0 (the carved rows train: {clf.selection() or "nothing"} is fixed)' if merged else
             f'valid {len(X["valid"])}')
    chosen = (f'; valid {clf.best_valid_:.5f} ({clf.selection() or "nothing selected"})'
              if clf.needs_validation else '')
    log.info(f'seed {plan.seed} fold {plan.fold}: train {len(X["train"])}, {valid}, test {len(X["test"])}{chosen}, '
             f'test {metric} {test:.5f}, head fit {fit_sec:.2f}s')
    suffix = f'seed{plan.seed}-fold{plan.fold}'
    write_predictions(log_dir / f'predictions-{suffix}.csv', metadata, plan.rows['test'], plan.classes, scores,
                      ys['test'])
    if ys['test'].ndim == 1:
        rows = classwise_accuracy(ys['test'], scores.argmax(1), plan.classes)
        write_csv(log_dir / f'classwise-{suffix}.csv', ['class', 'accuracy', 'count'], rows)
        log.info('class-wise accuracy: ' + ', '.join(f'{c} {a:.3f}' for c, a, _ in rows))
    return FoldResult(fold=plan.fold, score=test, best_valid=float(clf.best_valid_), n_train=len(X['train']),
                      n_valid=len(X['valid']), n_test=len(X['test']), selection=clf.selection())


def write_csv(path: Path, header: list, rows: list) -> None:
    """Writes a CSV atomically."""
    import csv
    import io

    from ..fileio import atomic_write_text

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def write_predictions(path: Path, metadata, rows, classes, scores: np.ndarray, y_true: np.ndarray,
                      score_name: str = 'probability') -> None:
    """Per test clip: file, label, prediction and its score (single-label; the column named `score_name`), or every
    class's score."""
    if y_true.ndim == 1:
        table = [(metadata.file_names[r], classes[t], classes[int(s.argmax())], f'{float(s.max()):.5f}')
                 for r, t, s in zip(rows, y_true, scores)]
        write_csv(path, ['file_name', 'label', 'prediction', score_name], table)
    else:
        table = [(metadata.file_names[r], ','.join(metadata.labels[r]), *(f'{v:.5f}' for v in s))
                 for r, s in zip(rows, scores)]
        write_csv(path, ['file_name', 'label', *classes], table)


def run_settings(prepared: PreparedRun, head, options: HeadOptions, unit_sec_option: Optional[float] = None) -> dict:
    """Every setting that changes a frozen-embedding score, resolved (defaults filled in from the config): the
    model's parameters and weights, the run settings, the task's metadata and clip length, the validation carve,
    and the head's hyper-parameters. Seeds are not settings: runs that differ only by seed are repeats."""
    import dataclasses

    hyper = {f.name: getattr(head, f.name) for f in dataclasses.fields(head) if f.name not in ('seed', 'device', 'report_every')}
    if hyper.get('selection_metric', '') is None:  # the default: run ids stay those of runs from before the setting
        del hyper['selection_metric']
    return {**common_settings(prepared, unit_sec_option), 'valid_fraction': options.valid_fraction, 'head': head.name,
            'head_params': hyper}


def common_settings(prepared: PreparedRun, unit_sec_option: Optional[float] = None) -> dict:
    """The settings every mode's score depends on: the model's parameters and weights, the run settings, the task,
    its metadata, clip length and folds (each mode adds its own)."""
    import dataclasses

    cfg = prepared.cfg
    run = dataclasses.asdict(cfg.run)
    if not run['evar_protocol']:  # off: run ids stay those of runs from before the setting existed
        del run['evar_protocol']
    return {'model': cfg.model_hash()[:16], 'weights': prepared.source.weight_digest(),
            'run': run, 'task': prepared.task.name,
            'metadata': prepared.metadata.content_hash[:16], 'unit_sec': prepared.task.unit_sec,
            'unit_sec_option': unit_sec_option, 'folds': prepared.folds}


def settings_id(settings: dict) -> str:
    """Eight hex digits over `settings` (EVAR's run_id length): equal only for runs with the same settings."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]


def record(prepared: PreparedRun, mode: str, head_name: str, results: list, results_dir: Path, log_dir: Path,
           elapsed: float, run_id: str, settings: dict) -> None:
    """Appends a `ResultRow` per seed, and one with the mean and sample std when there are several seeds; each row
    carries `run_id` and the `settings` (JSON) it ran with."""
    import json

    from ..results import ResultRow, append_rows

    cfg, task = prepared.cfg, prepared.task
    partial = task.folds > 1 and len(prepared.folds) < task.folds
    notes = f'folds {prepared.folds} of {task.folds} only; ' if partial else ''
    if cfg.run.evar_protocol:
        notes += f'EVAR protocol {"+".join(cfg.run.evar_protocol)}; '
    base = dict(representation=cfg.name, task=task.name, run_id=run_id, metric=task.metric, mode=mode,
                head=head_name, config_hash=cfg.model_hash()[:16], weight_hash=prepared.source.weight_digest(),
                elapsed_sec=elapsed, timestamp=time.strftime('%Y-%m-%dT%H:%M:%S'),
                settings=json.dumps(settings, sort_keys=True, default=str, separators=(',', ':')))
    rows = [ResultRow(**base, score=r.score, seed=str(r.seed), runs=1,
                      report=(f'{head_name} evaluation: {cfg.name} {task.name} seed {r.seed} -> {r.score:.5f}'
                              f'{fold_notes(r.folds)}; {notes}config {cfg.path}; log {log_dir}'))
            for r in results]
    if len(results) > 1:
        values = np.array([r.score for r in results])
        mean, std = float(values.mean()), float(values.std(ddof=1))
        rows.append(ResultRow(**base, score=mean, std=std, runs=len(results),
                              seed=';'.join(str(r.seed) for r in results),
                              report=(f'{head_name} evaluation: {cfg.name} {task.name} mean of seeds '
                                      f'{[r.seed for r in results]} -> {mean:.5f} +- {std:.5f}; {notes}'
                                      f'config {cfg.path}; log {log_dir}')))
        log.info(f'mean over {len(results)} seeds: {mean:.5f} +- {std:.5f} (sample std)')
    append_rows(results_dir / 'scores.csv', rows)
    log.info(f'-> {results_dir / "scores.csv"}')


def fold_notes(folds: list) -> str:
    """The report's account of a seed's `FoldResult`s: ', folds: [s1, s2, ...]' (several folds, as fine-tuning
    writes it), ', test clips N' (summed over folds; reports weight by it) and what validation selected per fold.
    `evar.results.aggregate` reads the first two back."""
    text = (', folds: [' + ', '.join(f'{f.score:.5f}' for f in folds) + ']') if len(folds) > 1 else ''
    text += f', test clips {sum(f.n_test for f in folds)}'
    chosen = [f'fold {f.fold} {f.selection}' for f in folds if f.selection]
    return text + (f' (selected: {"; ".join(chosen)})' if chosen else '')


def head_options(lr=None, hidden=(), standard_scaler=True, mixup=False, epochs=None, early_stop_epochs=None,
                 head='probe', valid_fraction=0.1, k=10, temperature=0.07) -> HeadOptions:
    """HeadOptions from command-line values ('(512,)' or a tuple for hidden; True or an alpha for mixup).

    Raises:
        EvarError: a malformed --hidden.
    """
    if isinstance(hidden, str):
        from ..params import parse_value

        text = hidden.strip()
        hidden = parse_value('[' + text.strip('()[]') + ']', 'hidden') if text.strip('()[] ') else []
    if isinstance(hidden, int) and not isinstance(hidden, bool):
        hidden = (hidden,)
    if not isinstance(hidden, (list, tuple)) or not all(isinstance(h, int) and h > 0 for h in hidden):
        raise EvarError(f'--hidden must be a tuple of positive layer sizes such as (512,), got {hidden!r}.')
    alpha = 0.1 if mixup is True else float(mixup or 0.0)  # EVAR: Beta(0.1, 0.1) when mixup is on
    return HeadOptions(head=str(head), lr=None if lr is None else float(lr), hidden=tuple(int(h) for h in hidden),
                       standard_scaler=bool(standard_scaler), mixup=alpha, epochs=int(epochs or 200),
                       early_stop_epochs=None if early_stop_epochs is None else int(early_stop_epochs),
                       valid_fraction=float(valid_fraction), k=k, temperature=float(temperature))


def selecting_on_task_metric(options: HeadOptions, metric: str) -> HeadOptions:
    """`options` with the head selecting on the task's `metric` when it is not the default of its targets (accuracy
    for single-label, mAP for multi-label), e.g. roc_auc_ovr for HEAR's Beehive tasks: what is selected on the
    validation split is then what is scored on the test split."""
    import dataclasses

    return options if metric in ('accuracy', 'mAP') else dataclasses.replace(options, selection_metric=metric)


# --- command lines -------------------------------------------------------------------------------------------------

def linear_command(config_file: str, task: str, options: str = '', seed: int = 42, repeat: int = 1,
                   lr: Optional[float] = None, hidden: Union[tuple, str] = (), standard_scaler: bool = True,
                   mixup: Union[bool, float] = False, epochs: Optional[int] = None,
                   early_stop_epochs: Optional[int] = None, unit_sec: Optional[float] = None, step: str = '1pass',
                   head: str = 'probe', k: Union[int, str] = 10, temperature: float = 0.07,
                   work_root: Optional[str] = None, results_dir: str = 'results', logs_dir: str = 'logs',
                   device: Optional[str] = None, bf16: bool = False, progress: bool = True,
                   recompute: bool = False, allow_split_overlap: bool = False) -> None:
    """Embeds TASK's clips with the model of CONFIG_FILE (cached), trains a head and appends the score to
    results/scores.csv.

    Args:
        config_file: model YAML (config/<model>.yaml).
        task: a built-in task name (esc50, fsdd, demo, ...) or a task YAML (keys metadata, data, unit_sec, ...).
        options: config overrides 'key=value,+new_key=value' (values parsed as YAML scalars or lists).
        seed: random seed of the head's training; with --repeat N, seeds SEED .. SEED+N-1.
        repeat: runs with consecutive seeds on the same embeddings, recorded with their mean and sample std.
        lr: probe learning rate (default: the config's lr_lineareval).
        hidden: hidden layer sizes, e.g. '(512,)' for an MLP probe; () is a linear probe.
        standard_scaler: standardise embeddings with training statistics (probe, logreg).
        mixup: True (alpha 0.1, as EVAR) or an alpha for the probe's mixup.
        epochs, early_stop_epochs: the probe's budget (default 200 and the config's early_stop_epochs).
        unit_sec: clip length in seconds (default: the task's).
        step: 1pass | 2pass_1_precompute_only | 2pass_2_train_test.
        head: probe (EVAR protocol), logreg (L2 logistic regression, strength chosen on validation), knn, or
            mlp_search (MLP probes over a small grid of sizes and learning rates, chosen on validation).
        k, temperature: the kNN head's neighbours ('auto': chosen on validation) and softmax temperature.
        work_root: folder with metadata/, <16k|...>/ audio and cache/ (default $EVAR_WORK or work).
        results_dir, logs_dir: where scores.csv and the run logs go.
        device: cpu or cuda (default: cuda when available); bf16: bf16 autocast for the model on GPU.
        progress: progress bars.
        recompute: ignore cached embeddings (and overwrite them).
        allow_split_overlap: accept a metadata file that lists a clip in more than one split.
    """
    if repeat < 1:
        raise EvarError(f'--repeat must be >= 1, got {repeat}.')
    lineareval(config_file, task, options=options, seeds=tuple(seed + i for i in range(repeat)),
               head=head_options(lr, hidden, standard_scaler, mixup, epochs, early_stop_epochs, head, k=k,
                                 temperature=temperature),
               unit_sec=unit_sec, step=step, work_root=work_root, results_dir=Path(results_dir),
               logs_dir=Path(logs_dir), device=device, bf16=bf16, progress=progress, recompute=recompute,
               allow_split_overlap=allow_split_overlap)


def knn_command(config_file: str, task: str, options: str = '', k: Union[int, str] = 10, temperature: float = 0.07,
                valid_fraction: float = 0.1, unit_sec: Optional[float] = None, step: str = '1pass',
                work_root: Optional[str] = None, results_dir: str = 'results', logs_dir: str = 'logs',
                device: Optional[str] = None, bf16: bool = False, progress: bool = True,
                recompute: bool = False, allow_split_overlap: bool = False) -> None:
    """Scores TASK with weighted kNN on the frozen embeddings of CONFIG_FILE (X-ARES's protocol): L2-normalised
    clip embeddings, cosine similarity to every training clip, the K nearest vote with weights
    softmax(similarity / TEMPERATURE). Appends a row with mode and head `knn` to results/scores.csv.

    Args:
        config_file: model YAML.
        task: a built-in task name or a task YAML.
        options: config overrides 'key=value,+new_key=value'.
        k: neighbours (default 10), or auto to choose among 1, 3, 5, 10, 20, 50 on the validation split.
        temperature: softmax temperature over cosine similarities (default 0.07).
        valid_fraction: share of training carved as validation when the task has none (used by k=auto).
        unit_sec, step, work_root, results_dir, logs_dir, device, bf16, progress, recompute, allow_split_overlap:
            as `evar linear`.
    """
    lineareval(config_file, task, options=options, seeds=(42,),
               head=HeadOptions(head='knn', k=k, temperature=temperature, valid_fraction=valid_fraction),
               unit_sec=unit_sec, step=step, work_root=work_root, results_dir=Path(results_dir),
               logs_dir=Path(logs_dir), device=device, bf16=bf16, progress=progress, recompute=recompute,
               allow_split_overlap=allow_split_overlap)


def embed_command(config_file: str, task: str, options: str = '', unit_sec: Optional[float] = None,
                  work_root: Optional[str] = None, device: Optional[str] = None, bf16: bool = False,
                  progress: bool = True, recompute: bool = False) -> None:
    """Embeds TASK's clips with the model of CONFIG_FILE into the embedding cache, and nothing else (EVAR's
    --step=2pass_1_precompute_only). Later runs of any frozen-embedding head read the cache.

    Args:
        config_file, task, options, unit_sec, work_root, device, bf16, progress: as `evar linear`.
        recompute: embed again even when the cache has the embeddings.
    """
    lineareval(config_file, task, options=options, unit_sec=unit_sec, step='2pass_1_precompute_only',
               work_root=work_root, device=device, bf16=bf16, progress=progress, recompute=recompute)
