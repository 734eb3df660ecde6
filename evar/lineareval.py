"""Linear evaluation: embed a task's clips with a frozen model (cached), train a probe head, record the score.

Steps (EVAR's `--step`): '1pass' embeds (or reuses the cache) and evaluates; '2pass_1_precompute_only' only fills
the cache; '2pass_2_train_test' evaluates from the cache and fails if it is missing. Several seeds run in one
process on the same embeddings (2pass_lineareval.py).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .config import ModelConfig, load_config
from .data import Metadata, read_metadata
from .errors import EvarError
from .tasks import Task, get_task

log = logging.getLogger('evar')
STEPS = ('1pass', '2pass_1_precompute_only', '2pass_2_train_test')


@dataclass(frozen=True)
class HeadOptions:
    head: str = 'probe'  # 'probe' (EVAR protocol) or 'logreg'
    lr: Optional[float] = None  # None: the config's lr_lineareval
    hidden: tuple = ()
    standard_scaler: bool = True
    mixup: float = 0.0
    epochs: int = 200
    early_stop_epochs: Optional[int] = None  # None: the config's early_stop_epochs
    valid_fraction: float = 0.1  # carved from train (stratified, seeded) when the task has no validation split


@dataclass
class FoldResult:
    fold: int
    score: float
    best_valid: float
    n_train: int
    n_valid: int
    n_test: int


@dataclass
class RunResult:
    seed: int
    score: float  # mean over folds
    folds: list = field(default_factory=list)
    log_dir: Optional[Path] = None


def default_work_root() -> Path:
    return Path(os.environ.get('EVAR_WORK', 'work'))


def pick_device(device: Optional[str] = None) -> str:
    import torch

    return device or ('cuda' if torch.cuda.is_available() else 'cpu')


# --- labels and splits -------------------------------------------------------------------------------------------

def encode_labels(metadata: Metadata, rows: np.ndarray, classes: list, multi_label: bool, split: str) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    for r in rows:
        for label in metadata.labels[r]:
            if label not in index:
                raise EvarError(f'Metadata file {metadata.path}: label {label!r} of {metadata.file_names[r]} ({split} '
                                f'split) never occurs in the training split; every label must have training examples.')
    if not multi_label:
        return np.array([index[metadata.labels[r][0]] for r in rows], dtype=np.int64)
    y = np.zeros((len(rows), len(classes)), dtype=np.float32)
    for i, r in enumerate(rows):
        y[i, [index[label] for label in metadata.labels[r]]] = 1.0
    return y


def carve_validation(train_rows: np.ndarray, labels: Sequence, fraction: float, seed: int):
    """A stratified, seeded validation subset of the training rows: (train, valid)."""
    rng = np.random.default_rng(seed)
    by_label: dict = {}
    for r in train_rows:
        by_label.setdefault(labels[r], []).append(r)
    valid = []
    for key in sorted(by_label):
        rows = np.array(by_label[key])
        n = int(round(len(rows) * fraction))
        n = min(max(n, 1), len(rows) - 1) if len(rows) >= 2 else 0
        valid.extend(rng.choice(rows, size=n, replace=False).tolist())
    valid_set = set(valid)
    return np.array([r for r in train_rows if r not in valid_set], dtype=np.int64), np.sort(np.array(valid, dtype=np.int64))


def fold_splits(metadata: Metadata, task: Task, fold: int, seed: int, valid_fraction: float) -> dict:
    splits = metadata.split_indices(fold)
    if len(splits['train']) == 0 or len(splits['test']) == 0:
        raise EvarError(f'Metadata file {metadata.path}: fold/split {fold} leaves {len(splits["train"])} training and '
                        f'{len(splits["test"])} test rows; both must be non-empty.')
    if len(splits['valid']) == 0:
        splits['train'], splits['valid'] = carve_validation(splits['train'], metadata.labels, valid_fraction, seed)
    return splits


def check_folds(metadata: Metadata, task: Task) -> list:
    if task.folds == 1:
        if metadata.splits is None:
            raise EvarError(f'Metadata file {metadata.path} has a fold column but task {task.name} has folds: 1; '
                            'give the task `folds: K` or use a split column (train/valid/test).')
        return [1]
    if metadata.folds is None:
        raise EvarError(f'Task {task.name} is {task.folds}-fold but metadata file {metadata.path} has no fold column.')
    present = sorted(set(metadata.folds))
    expected = list(range(1, task.folds + 1))
    if present != expected:
        raise EvarError(f'Metadata file {metadata.path}: folds {present}, expected {expected} for task {task.name}.')
    return expected


# --- embeddings --------------------------------------------------------------------------------------------------

@dataclass
class EmbeddingSource:
    """Everything needed to get a task's embeddings, built once per run."""
    cfg: ModelConfig
    task: Task
    metadata: Metadata
    work_root: Path
    device: str
    bf16: bool = False
    progress: bool = True
    _model: object = None
    _weights: Optional[list] = None
    _warned: set = field(default_factory=set)

    @property
    def sample_rate(self) -> int:
        return int(self.cfg.model_params['sample_rate'])

    @property
    def extract_batch_size(self) -> int:
        return self.cfg.run.extract_batch_size or (self.cfg.run.batch_size if self.device.startswith('cuda') else 16)

    def data_root(self):
        root, rate = self.task.data_root(self.work_root, self.sample_rate)
        if not root.is_dir():
            raise EvarError(f'Audio folder {root} for task {self.task.name} does not exist. Build it with '
                            f'`python -m evar.metadata {self.task.name} <dataset_root>` (links the dataset) or '
                            f'`python prepare_wav.py <dataset_root> {root} {self.sample_rate}`.')
        return root, rate

    def weight_hashes(self) -> list:
        from .cache import weight_hash
        from .models import model_class

        if self._weights is None:
            cls = model_class(self.cfg.audio_repr)
            paths = cls.weight_paths(self.cfg.params)
            if any(not p.is_file() for p in paths):
                self.model()  # the model's own loader gives the message saying where to get the file
            memo = self.work_root / 'cache' / 'weight-hashes'
            self._weights = [weight_hash(p, memo) for p in paths]
        return self._weights

    def model(self):
        if self._model is None:
            from .models import create_model

            log.info(f'building model {self.cfg.audio_repr} from {self.cfg.path}')
            self._model = create_model(self.cfg.audio_repr, self.cfg.params).to(self.device)
        return self._model

    def stats_scope(self, fold: int) -> Optional[str]:
        """Which training rows the normalisation statistics come from, or None when embeddings don't depend on it."""
        from .models import model_class

        cls = model_class(self.cfg.audio_repr)
        if not cls.needs_norm_stats or self.cfg.model_params.get('norm_stats') is not None:
            return None
        return f'fold{fold}' if self.task.folds > 1 else 'train'

    def key_fields(self, scope: Optional[str]) -> dict:
        root, rate = self.data_root()
        params = {k: v for k, v in self.cfg.model_params.items() if k not in ('weight_file', 'feature_d')}
        from .models import model_class

        return {'audio_repr': self.cfg.audio_repr, 'model_version': model_class(self.cfg.audio_repr).cache_version,
                'params': params, 'weights': self.weight_hashes(),
                'metadata_sha256': self.metadata.content_hash, 'data_folder': self.task.folder,
                'source_rate': rate, 'unit_sec': self.task.unit_sec, 'crop': self.cfg.run.crop,
                'norm_stats_scope': scope, 'dtype': self.cfg.run.cache_dtype}

    def embeddings(self, fold: int, train_rows: np.ndarray, allow_compute: bool = True) -> np.ndarray:
        from .cache import EmbeddingCache, cache_key

        scope = self.stats_scope(fold)
        fields = self.key_fields(scope)
        key = cache_key(fields)
        cache = EmbeddingCache(self.work_root / 'cache')
        cached = cache.load(key)
        if cached is not None and cached.shape[0] == len(self.metadata):
            log.info(f'using cached embeddings {cache.path(key).name}')
            return cached
        if not allow_compute:
            raise EvarError(f'No cached embeddings for {self.cfg.path} on task {self.task.name} (key {key}); run '
                            'with --step=2pass_1_precompute_only first.')
        embs = self.compute(train_rows if scope else np.arange(0))
        embs = embs.astype(np.float16) if self.cfg.run.cache_dtype == 'float16' else embs
        cache.save(key, embs, {**fields, 'config': str(self.cfg.path), 'task': self.task.name})
        log.info(f'saved embeddings {embs.shape} to {cache.path(key)}')
        return embs

    def compute(self, train_rows: np.ndarray) -> np.ndarray:
        from .data import ClipDataset
        from .embed import ExtractSettings, extract_embeddings

        root, _ = self.data_root()
        model = self.model()
        if train_rows.size:
            model.norm_mean = model.norm_std = None  # per fold: statistics of this fold's training rows
        dataset = ClipDataset(root, self.metadata.file_names, self.sample_rate, self.task.unit_sec, self.cfg.run.crop)
        settings = ExtractSettings(batch_size=self.extract_batch_size, num_workers=self.cfg.run.num_workers,
                                   device=self.device, bf16=self.bf16, progress=self.progress)
        t0 = time.perf_counter()
        embs = extract_embeddings(model, dataset, train_rows, settings, self._warned)
        log.info(f'embedded {len(dataset)} clips in {time.perf_counter() - t0:.1f}s')
        return embs


def check_audio_exists(metadata: Metadata, root: Path) -> None:
    from .audio import resolve_audio_path

    for name in metadata.file_names:
        resolve_audio_path(root, name)


# --- the run -----------------------------------------------------------------------------------------------------

def setup_logging(log_dir: Optional[Path]) -> None:
    log.setLevel(logging.INFO)
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter('%(asctime)s %(message)s', '%H:%M:%S'))
    log.addHandler(console)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_dir / 'run.log')
        fh.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(message)s'))
        log.addHandler(fh)
    log.propagate = False


def lineareval(config_file, task, options: str = '', seeds: Sequence[int] = (42,), head: HeadOptions = HeadOptions(),
               unit_sec: Optional[float] = None, step: str = '1pass', work_root: Optional[Path] = None,
               results_dir: Path = Path('results'), logs_dir: Path = Path('logs'), device: Optional[str] = None,
               bf16: bool = False, progress: bool = True) -> list:
    """Runs one linear evaluation (one row per seed in results/scores.csv, plus a mean row for several seeds)."""
    t_start = time.perf_counter()
    if step not in STEPS:
        raise EvarError(f'Unknown step {step!r}; expected one of {list(STEPS)}.')
    if head.head not in ('probe', 'logreg'):
        raise EvarError(f'Unknown head {head.head!r}: expected probe (EVAR protocol) or logreg.')
    cfg = load_config(config_file, options)
    task_def = get_task(str(task), unit_sec=unit_sec)
    work_root = Path(work_root) if work_root is not None else default_work_root()
    if task_def.name == 'demo' and task_def.metadata is None:
        from .demo import ensure_demo

        ensure_demo(work_root)
    metadata = read_metadata(task_def.metadata_path(work_root))
    folds = check_folds(metadata, task_def)
    source = EmbeddingSource(cfg, task_def, metadata, work_root, pick_device(device), bf16=bf16, progress=progress)
    root, _ = source.data_root()
    multi_label = metadata.multi_label or task_def.metric == 'mAP'
    # Validate everything cheap before spending time on embeddings: labels, splits, files.
    plans = {}
    for seed in seeds:
        for fold in folds:
            splits = fold_splits(metadata, task_def, fold, seed, head.valid_fraction)
            classes = sorted({lab for r in splits['train'] for lab in metadata.labels[r]})
            ys = {s: encode_labels(metadata, splits[s], classes, multi_label, s) for s in ('train', 'valid', 'test')}
            plans[seed, fold] = (splits, classes, ys)
    if step != '2pass_2_train_test':
        check_audio_exists(metadata, root)

    run_id = cfg.full_hash()
    from .heads import probe_name

    head_name = head.head if head.head == 'logreg' else probe_name(head.hidden)
    log_dir = Path(logs_dir) / f'{cfg.name}-{task_def.name}-{head_name}-{run_id}'
    setup_logging(log_dir if step != '2pass_1_precompute_only' else None)
    log.info(f'{cfg.name} ({cfg.audio_repr}) on {task_def.name}: {len(metadata)} clips, folds {folds}, '
             f'device {source.device}, step {step}')

    embeddings = {}
    for fold in folds:
        train_rows = metadata.split_indices(fold)['train']
        embeddings[fold] = source.embeddings(fold, train_rows, allow_compute=(step != '2pass_2_train_test'))
    if step == '2pass_1_precompute_only':
        log.info('embeddings are cached; run --step=2pass_2_train_test to train and test')
        return []

    results = []
    for seed in seeds:
        run = RunResult(seed=seed, score=0.0, log_dir=log_dir)
        for fold in folds:
            splits, classes, ys = plans[seed, fold]
            run.folds.append(_fit_and_test(cfg, task_def, head, seed, fold, embeddings[fold], splits, classes, ys,
                                           source.device, metadata, log_dir))
        run.score = float(np.mean([f.score for f in run.folds]))
        log.info(f'seed {seed}: {task_def.metric} {run.score:.5f}' +
                 (f' (folds: {", ".join(f"{f.score:.4f}" for f in run.folds)})' if len(folds) > 1 else ''))
        results.append(run)

    _record(cfg, task_def, head_name, results, source, Path(results_dir), log_dir, time.perf_counter() - t_start)
    log.info(f'done in {time.perf_counter() - t_start:.1f}s, peak memory {peak_memory_mb():.0f} MB')
    return results


def peak_memory_mb() -> float:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it does not count the parent's pages)."""
    try:
        for line in open('/proc/self/status'):
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fit_and_test(cfg, task, head: HeadOptions, seed, fold, embs, splits, classes, ys, device, metadata, log_dir):
    import torch

    from .heads import LogisticRegressionHead, ProbeHead
    from .metrics import classwise_accuracy
    from .metrics import score as metric_score

    torch.manual_seed(seed)
    np.random.seed(seed)
    X = {s: np.asarray(embs[splits[s]], dtype=np.float32) for s in ('train', 'valid', 'test')}
    if head.head == 'logreg':
        clf = LogisticRegressionHead(standard_scaler=head.standard_scaler, seed=seed, device=device)
    else:
        clf = ProbeHead(hidden=tuple(head.hidden), lr=head.lr or cfg.run.lr_lineareval, epochs=head.epochs,
                        early_stop_epochs=(head.early_stop_epochs if head.early_stop_epochs is not None
                                           else cfg.run.early_stop_epochs),
                        standard_scaler=head.standard_scaler, mixup=head.mixup, seed=seed, device=device)
    t0 = time.perf_counter()
    clf.fit(X['train'], ys['train'], X['valid'], ys['valid'])
    fit_sec = time.perf_counter() - t0
    scores = clf.predict_scores(X['test'])
    test = metric_score(task.metric, ys['test'], scores)
    log.info(f'seed {seed} fold {fold}: train {len(X["train"])}, valid {len(X["valid"])}, test {len(X["test"])}; '
             f'best valid {clf.best_valid:.5f}, test {task.metric} {test:.5f}, head fit {fit_sec:.2f}s')
    _write_predictions(log_dir / f'predictions-seed{seed}-fold{fold}.csv', metadata, splits['test'], classes, scores,
                       ys['test'])
    if ys['test'].ndim == 1:
        rows = classwise_accuracy(ys['test'], scores.argmax(1), classes)
        _write_csv(log_dir / f'classwise-seed{seed}-fold{fold}.csv', ['class', 'accuracy', 'count'], rows)
        log.info('class-wise accuracy: ' + ', '.join(f'{c} {a:.3f}' for c, a, _ in rows))
    return FoldResult(fold=fold, score=test, best_valid=float(clf.best_valid), n_train=len(X['train']),
                      n_valid=len(X['valid']), n_test=len(X['test']))


def _write_csv(path: Path, header: list, rows: list) -> None:
    import csv
    import io

    from .fileio import atomic_write_text

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _write_predictions(path, metadata, rows, classes, scores, y_true):
    if y_true.ndim == 1:
        table = [(metadata.file_names[r], classes[t], classes[int(s.argmax())], f'{float(s.max()):.5f}')
                 for r, t, s in zip(rows, y_true, scores)]
        _write_csv(path, ['file_name', 'label', 'prediction', 'probability'], table)
    else:
        table = [(metadata.file_names[r], ','.join(metadata.labels[r]), *(f'{v:.5f}' for v in s))
                 for r, s in zip(rows, scores)]
        _write_csv(path, ['file_name', 'label', *classes], table)


def _record(cfg, task, head_name, results, source, results_dir, log_dir, elapsed):
    from .results import append_scores

    import hashlib

    hashes = source.weight_hashes()  # one short digest for all weight files (a hub model may have many)
    weights = hashlib.sha256(';'.join(hashes).encode()).hexdigest()[:16] if hashes else ''
    stamp = time.strftime('%Y-%m-%dT%H:%M:%S')
    run_id = cfg.full_hash()
    base = {'representation': cfg.name, 'task': task.name, 'run_id': run_id, 'metric': task.metric,
            'head': head_name, 'config_hash': cfg.model_hash()[:16], 'weight_hash': weights,
            'elapsed_sec': f'{elapsed:.1f}', 'timestamp': stamp}
    rows = []
    for r in results:
        report = (f'{head_name} evaluation: {cfg.name} {task.name} seed {r.seed} -> {r.score:.5f}; '
                  f'config {cfg.path}; log {log_dir}')
        rows.append({**base, 'score': f'{r.score:.5f}', 'report': report, 'runs': 1, 'seed': r.seed, 'std': ''})
    if len(results) > 1:
        values = np.array([r.score for r in results])
        mean, std = float(values.mean()), float(values.std(ddof=1))
        report = (f'{head_name} evaluation: {cfg.name} {task.name} mean of seeds {[r.seed for r in results]} -> '
                  f'{mean:.5f} +- {std:.5f}; config {cfg.path}; log {log_dir}')
        rows.append({**base, 'score': f'{mean:.5f}', 'std': f'{std:.5f}', 'runs': len(results),
                     'seed': ';'.join(str(r.seed) for r in results), 'report': report})
        log.info(f'mean over {len(results)} seeds: {mean:.5f} +- {std:.5f} (sample std)')
    append_scores(results_dir / 'scores.csv', rows)
    log.info(f'-> {results_dir / "scores.csv"}')


def head_options(lr=None, hidden=(), standard_scaler=True, mixup=False, epochs=None, early_stop_epochs=None,
                 head='probe', valid_fraction=0.1) -> HeadOptions:
    """HeadOptions from CLI values (fire passes tuples for '(512,)' and bools for flags)."""
    if isinstance(hidden, str):
        from .params import parse_value

        text = hidden.strip()
        hidden = parse_value('[' + text.strip('()[]') + ']', 'hidden') if text.strip('()[] ') else []
    if not isinstance(hidden, (list, tuple)) or not all(isinstance(h, int) and h > 0 for h in hidden):
        raise EvarError(f'--hidden must be a tuple of positive layer sizes such as (512,), got {hidden!r}.')
    alpha = 0.1 if mixup is True else float(mixup or 0.0)  # EVAR: Beta(0.1, 0.1) when mixup is on
    return HeadOptions(head=str(head), lr=None if lr is None else float(lr), hidden=tuple(int(h) for h in hidden),
                       standard_scaler=bool(standard_scaler), mixup=alpha, epochs=int(epochs or 200),
                       early_stop_epochs=None if early_stop_epochs is None else int(early_stop_epochs),
                       valid_fraction=float(valid_fraction))
