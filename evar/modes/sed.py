"""Frame-level sound event detection (`evar sed CONFIG TASK`): a frozen model's frame embeddings at its own hop, a
frame-level head trained with binary cross-entropy, events decoded with a threshold, a median filter and a minimum
duration, scored by sed_eval.

Protocol (as HEAR's event tasks, Turian et al. 2022, with selection on the validation split only):
- Frames: every clip is embedded whole (`crop: full`) through the shared embedding path; its valid frames are
  cached by content (`evar.embed`, level 'frame'). Models whose frames are not evenly spaced in time
  (`frame_hop_sec` None) are refused before anything is embedded.
- Targets: a frame is positive for a class when its centre lies inside one of the class's events (`evar.sed`).
- Head: frames standardised with the training frames' mean and std, then a linear layer or an MLP (`hidden`),
  trained with Adam on the training split's frames, BCE loss; the epoch with the lowest validation BCE is kept
  (early stop after `patience` epochs without improvement). The test split is never looked at until the end.
- Post-processing: every `PostProcessing` of the task's grid (`evar.sed.SedProtocol`; default HEAR's: median
  filter 250 ms, minimum duration 125 or 250 ms, threshold 0.5) is decoded on the validation split; the one with
  the best primary score (default the event-based onset F1 with a 200 ms collar) is applied to the test split.
- Scores (sed_eval, test split): event-based onset F1 at 200 and 50 ms, onset+offset F1 (50 ms, 20 % of length),
  segment-based F1 and error rate at 1 s, the class-averaged event F1 (200 ms, 20 %) of DCASE task 4; PSDS1
  (psds_eval, 50 thresholds) where the task's protocol asks for it (desed). The row's score is the task's primary
  score: onset F1 at 200 ms (HEAR's DCASE 2016 task 2 score; sed_words, user tasks), onset F1 at 50 ms (maestro),
  event macro F1 (desed).
- Cross-validated tasks (an events CSV whose split column holds fold numbers, HEAR's maestro): each fold is tested
  with the next as validation and the others for training (hear-eval-kit's `data_splits_from_folds`); the row
  holds the means over the folds.

Rows go to `results/sed_scores.csv` (the figures, then the shared `evar.results.ResultRow` columns, mode `sed`);
the test split's decoded events go to the run's log folder (`events-test.csv`).

A task's strong labels are an events CSV (`evar.sed`): for a built-in task with `events` (sed_words,
dcase2016_task2, maestro, desed) the one its builder wrote beside the audio (`<audio folder>/events.csv`), else
`--events PATH`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import EvarError
from ..sed import PostProcessing, SedProtocol, SedScores

log = logging.getLogger('evar')
SED_COLUMNS = ['model', 'task', 'onset_f1_200ms', 'onset_f1_50ms', 'onset_offset_f1_50ms', 'segment_f1_1s',
               'segment_er_1s', 'event_macro_f1_200ms', 'psds1', 'valid_score', 'postprocessing', 'epochs',
               'hop_sec']


@dataclass(frozen=True)
class SedHeadOptions:
    """The frame-level head's settings.

    Attributes:
        hidden: hidden layer widths of the MLP; () for a linear head.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        batch_frames: frames per optimisation step.
        max_epochs: at most this many passes over the training frames.
        patience: stop after this many epochs without a lower validation BCE.
        dropout: dropout after each hidden layer.
        seed: seeds the head's initialisation and the frame order.
    """
    hidden: tuple = (256,)
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_frames: int = 1024
    max_epochs: int = 100
    patience: int = 10
    dropout: float = 0.1
    seed: int = 42

    def check(self) -> 'SedHeadOptions':
        """Itself when valid; else EvarError naming the flag."""
        if any(int(h) < 1 for h in self.hidden):
            raise EvarError(f'--hidden must list positive widths (e.g. (256,) or () for linear), got {self.hidden!r}.')
        if not (self.lr > 0 and self.batch_frames >= 1 and self.max_epochs >= 1 and self.patience >= 1
                and 0 <= self.dropout < 1 and self.weight_decay >= 0):
            raise EvarError('--lr must be > 0, --batch_frames, --max_epochs and --patience >= 1, --dropout in [0, 1) '
                            f'and --weight_decay >= 0; got {self}.')
        return self


@dataclass
class FrameSet:
    """The frames of a set of clips, concatenated: x float32 [F, D], targets float32 [F, C], and the offsets [n + 1]
    of each clip's frames."""
    x: np.ndarray
    y: np.ndarray
    offsets: np.ndarray


def frame_set(frames, rows: np.ndarray, table, labels, hop: float, window: float) -> FrameSet:
    """The frames of clips `rows` of a `FrameEmbeddings` with their targets from `table` (an `evar.sed.EventTable`)."""
    from ..sed import frame_targets

    xs = [np.asarray(frames.clip(int(r)), dtype=np.float32) for r in rows]
    ys = [frame_targets(table.events[int(r)], labels, len(x), hop, window) for r, x in zip(rows, xs)]
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in xs])]).astype(np.int64)
    return FrameSet(np.concatenate(xs), np.concatenate(ys), offsets)


def train_head(train: FrameSet, valid: FrameSet, options: SedHeadOptions, device: str = 'cpu'):
    """A frame-level head trained with BCE on `train`, early-stopped on `valid`'s BCE.

    Returns:
        (predict, epochs): `predict(x [F, D]) -> probabilities float32 [F, C]` with the best epoch's weights, and
        the number of epochs that epoch was.
    """
    import torch
    from torch import nn

    torch.manual_seed(options.seed)
    mean = train.x.mean(0)
    std = train.x.std(0) + 1e-5
    d, c = train.x.shape[1], train.y.shape[1]
    layers, width = [], d
    for h in options.hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU(), nn.Dropout(options.dropout)]
        width = int(h)
    net = nn.Sequential(*layers, nn.Linear(width, c)).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()

    def tensor(a):
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    xt, yt = tensor((train.x - mean) / std), tensor(train.y)
    xv, yv = tensor((valid.x - mean) / std), tensor(valid.y)
    gen = torch.Generator().manual_seed(options.seed)
    best, best_state, best_epoch, waited = float('inf'), None, 0, 0
    for epoch in range(1, options.max_epochs + 1):
        net.train()
        for idx in torch.randperm(len(xt), generator=gen).split(options.batch_frames):
            opt.zero_grad()
            loss_fn(net(xt[idx]), yt[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            v = float(loss_fn(net(xv), yv))
        if v < best - 1e-6:
            best, best_epoch, waited = v, epoch, 0
            best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
        else:
            waited += 1
            if waited >= options.patience:
                break
    net.load_state_dict(best_state)
    net.eval()
    log.info(f'SED head: best validation BCE {best:.5f} at epoch {best_epoch}')

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(net(tensor((np.asarray(x, dtype=np.float32) - mean) / std))).cpu().numpy()

    return predict, best_epoch


def decode_set(probs: np.ndarray, frames: FrameSet, names: list, labels, hop: float, window: float,
               post: PostProcessing) -> list:
    """The decoded `Event`s of every clip of a `FrameSet`, from its frame probabilities [F, C]."""
    from ..sed import decode_events

    return [e for i, name in enumerate(names)
            for e in decode_events(probs[frames.offsets[i]:frames.offsets[i + 1]], labels, name, hop, post, window)]


def choose_postprocessing(probs: np.ndarray, frames: FrameSet, names: list, table, labels, hop: float,
                          window: float, grid, primary: str = 'onset_f1_200ms') -> tuple:
    """(the `PostProcessing` of `grid` with the best validation `primary` score (a `SedScores` field), that score);
    ties keep the first."""
    from ..sed import sed_scores

    reference = [e for name in names for e in table.events[table.file_names.index(name)]]
    scored = [(getattr(sed_scores(reference, decode_set(probs, frames, names, labels, hop, window, p), labels,
                                  names), primary), p) for p in grid]
    for value, p in scored:
        log.info(f'validation {primary} {value:.4f} with {p.describe()}')
    best = max(range(len(scored)), key=lambda k: (np.nan_to_num(scored[k][0], nan=-1.0), -k))
    return scored[best][1], scored[best][0]


def split_psds1(probs: np.ndarray, frames: FrameSet, names: list, reference: list, labels, hop: float,
               window: float, post: PostProcessing) -> float:
    """PSDS scenario 1 (`evar.sed.psds1`) of a test set: one operating point per threshold of
    `evar.sed.PSDS_THRESHOLDS`, decoded with `post`'s median filter and minimum duration; each clip's duration is
    its frame count times the hop."""
    from ..sed import PSDS_THRESHOLDS, psds1

    durations = {n: float(frames.offsets[i + 1] - frames.offsets[i]) * hop for i, n in enumerate(names)}
    detections = {t: decode_set(probs, frames, names, labels, hop, window, replace(post, threshold=t))
                  for t in PSDS_THRESHOLDS}
    return psds1(reference, detections, durations)


def sed_metadata(table):
    """An `evar.data.Metadata` of an event table's clips (labels: each clip's event classes), so the shared embedding
    path embeds and caches them; its content hash is the events CSV's."""
    from ..data import Metadata

    labels = tuple(tuple(sorted({e.label for e in events})) or ('',) for events in table.events)
    return Metadata(path=table.path, file_names=table.file_names, labels=labels, splits=table.splits, folds=None,
                    content_hash=table.content_hash)


def task_protocol(spec) -> SedProtocol:
    """The `SedProtocol` of a task: for a built-in task its family module's `SED_PROTOCOLS` entry (the module of its
    builder), else the default (HEAR's DCASE 2016 task 2 protocol: onset F1 at 200 ms, HEAR's grid)."""
    import sys

    build = getattr(spec.build, 'func', spec.build)
    module = sys.modules.get(getattr(build, '__module__', None) or '')
    return getattr(module, 'SED_PROTOCOLS', {}).get(spec.name, SedProtocol())


def sed_task(task: str, events: Optional[str], work_root: Path, sample_rate: int) -> tuple:
    """(the `Task`, the events CSV path) of a run.

    Raises:
        EvarError: a built-in task that is not an SED task, or no events CSV.
    """
    from ..tasks import BUILTIN_TASKS, get_task

    spec = get_task(str(task))
    if events is not None:
        return spec, Path(events).expanduser()
    if not spec.events:
        sed = [n for n, t in BUILTIN_TASKS.items() if t.events]
        raise EvarError(f'Task {spec.name} has no event annotations; evar sed takes an SED task ({", ".join(sed)}) '
                        'or a task YAML with --events PATH (a file_name,onset_sec,offset_sec,label,split CSV).')
    root, _ = spec.data_root(work_root, sample_rate)
    from ..tasks.sed_words import EVENTS_FILE

    return spec, root / EVENTS_FILE


@dataclass(frozen=True)
class SedRound:
    """One train/valid/test round's outcome (the only one, or one fold of a cross-validated task)."""
    name: str  # '' or 'fold<i>'
    scores: SedScores
    post: PostProcessing
    valid_score: float
    epochs: int


def mean_scores(rounds: list) -> SedScores:
    """The field-wise mean of the rounds' `SedScores` (a field None in any round stays None)."""
    values = {}
    for key in rounds[0].scores.as_dict():
        column = [r.scores.as_dict()[key] for r in rounds]
        values[key] = None if any(v is None for v in column) else float(np.mean(column))
    return SedScores(**values)


def sed(config_file, task, options: str = '', events: Optional[str] = None, head: Optional[SedHeadOptions] = None,
        grid=None, work_root: Optional[Path] = None, results_dir: Path = Path('results'),
        logs_dir: Path = Path('logs'), device: Optional[str] = None, bf16: bool = False, progress: bool = True,
        recompute: bool = False) -> tuple:
    """Runs frame-level SED on `task` and appends a row to `results_dir`/sed_scores.csv.

    Args:
        config_file: the model YAML.
        task: an SED task (sed_words, dcase2016_task2, maestro, desed) or a task YAML with `events`.
        options: config overrides (`crop` is always `full`).
        events: the events CSV (default: the built-in task's `<audio folder>/events.csv`).
        head: the frame head's settings.
        grid: the `PostProcessing`s chosen among on the validation split (default: the task's `SedProtocol`).
        work_root, results_dir, logs_dir, device, bf16, progress, recompute: as `evar.modes.linear.lineareval`.

    Returns:
        (test `SedScores`, the chosen `PostProcessing`): for a cross-validated task (fold numbers in the events CSV)
        the mean over the folds, each tested with the next fold for validation, and the last fold's choice.

    Raises:
        EvarError: bad input (before any embedding): no events, a split with no clip, a model without a frame hop.
    """
    from ..config import load_config
    from ..embed.source import TaskEmbeddings, pick_device
    from ..models import model_class
    from ..paths import default_work_root
    from ..sed import read_events, sed_scores, write_events
    from .linear import PreparedRun, common_settings, settings_id, setup_logging

    t_start = time.perf_counter()
    head = (head or SedHeadOptions()).check()
    cfg = load_config(config_file, f'{options},crop=full' if options else 'crop=full')
    work_root = Path(work_root) if work_root is not None else default_work_root()
    task_def, events_path = sed_task(task, events, work_root, int(cfg.params.sample_rate))
    protocol = task_protocol(task_def)
    grid = tuple(grid) if grid is not None else protocol.grid
    if not grid:
        raise EvarError('The post-processing grid is empty.')
    table = read_events(events_path)
    rounds = table.fold_splits()
    for name, rows in rounds:
        empty = [s for s, r in rows.items() if not len(r)]
        if empty:
            raise EvarError(f'Events CSV {events_path} has no clip in split(s) {empty}{" of " + name if name else ""}; '
                            'SED needs train, valid and test.')
    metadata = sed_metadata(table)
    source = TaskEmbeddings(cfg, task_def, metadata, work_root, pick_device(device), bf16=bf16, progress=progress)
    source.check_audio_files()
    model = source.model()
    hop, window = model.frame_hop_sec, model.frame_window_sec
    if hop is None:
        raise EvarError(f'{cfg.path}: {model_class(cfg.audio_repr).__name__} gives no evenly spaced frames '
                        '(frame_hop_sec is None); frame-level SED needs a model with a frame hop.')
    prepared = PreparedRun(cfg=cfg, task=task_def, metadata=metadata, folds=[1], plans={}, source=source,
                           work_root=work_root)
    settings = {**common_settings(prepared), 'mode': 'sed', 'head': json.loads(json.dumps(head.__dict__)),
                'grid': [p.__dict__ for p in grid], 'primary': protocol.primary, 'psds': protocol.psds}
    run_id = settings_id(settings)
    head_name = 'mlp' + '-'.join(map(str, head.hidden)) if head.hidden else 'linear'
    log_dir = Path(logs_dir) / f'{cfg.name}-{task_def.name}-sed-{run_id}'
    setup_logging(log_dir)
    log.info(f'sed {cfg.name} ({cfg.audio_repr}) on {task_def.name}: {len(metadata)} clips, {len(table.labels)} '
             f'classes, hop {hop * 1000:.1f} ms' + (f', {len(rounds)} folds' if len(rounds) > 1 else ''))
    try:
        done, estimated_all = [], []
        for k, (name, rows) in enumerate(rounds, start=1):
            fold = int(name[4:]) if name else 1
            frames = source.embeddings(fold, rows['train'], level='frame',
                                       recompute=recompute and (k == 1 or source.stats_scope(fold) is not None))
            sets = {s: frame_set(frames, r, table, table.labels, hop, window) for s, r in rows.items()}
            names = {s: [table.file_names[int(i)] for i in r] for s, r in rows.items()}
            predict, epochs = train_head(sets['train'], sets['valid'], head, source.device)
            post, valid_score = choose_postprocessing(predict(sets['valid'].x), sets['valid'], names['valid'], table,
                                                      table.labels, hop, window, grid, protocol.primary)
            test_probs = predict(sets['test'].x)
            estimated = decode_set(test_probs, sets['test'], names['test'], table.labels, hop, window, post)
            reference = [e for i in rows['test'] for e in table.events[int(i)]]
            scores = sed_scores(reference, estimated, table.labels, names['test'])
            if protocol.psds:
                scores = replace(scores, psds1=split_psds1(test_probs, sets['test'], names['test'], reference,
                                                           table.labels, hop, window, post))
            log.info(f'test{" " + name if name else ""} ({post.describe()}): '
                     + ', '.join(f'{key} {v:.4f}' for key, v in scores.as_dict().items() if v is not None))
            done.append(SedRound(name, scores, post, valid_score, epochs))
            estimated_all += [(n, name[4:] if name else 'test', [e for e in estimated if e.file_name == n])
                              for n in names['test']]
        write_events(log_dir / 'events-test.csv', estimated_all)
        scores = mean_scores(done) if len(done) > 1 else done[0].scores
        if len(done) > 1:
            log.info(f'mean over {len(done)} folds: ' + ', '.join(f'{k} {v:.4f}' for k, v in scores.as_dict().items()
                                                                if v is not None))
        _record(prepared, scores, done, protocol.primary, hop, head_name, run_id, settings, Path(results_dir),
                log_dir, time.perf_counter() - t_start)
    except BaseException as e:  # the log folder keeps the reason a run ended
        logging.getLogger('evar.runlog').error(f'run failed ({type(e).__name__}) {e}')
        raise
    return scores, done[-1].post


def _record(prepared, scores: SedScores, rounds: list, primary: str, hop: float, head_name: str, run_id: str,
            settings: dict, results_dir: Path, log_dir: Path, elapsed: float) -> None:
    """Appends the run's row to results_dir/sed_scores.csv (the SED figures, then the shared columns); the row's
    score is the task's primary score (the mean over folds for a cross-validated task)."""
    from ..results import COLUMNS, ResultRow, append_rows

    cfg = prepared.cfg
    posts = '; '.join(dict.fromkeys(r.post.describe() for r in rounds))
    valid = float(np.mean([r.valid_score for r in rounds]))
    value = getattr(scores, primary)
    folds = f' (mean of {len(rounds)} folds)' if len(rounds) > 1 else ''
    shared = ResultRow(representation=cfg.name, task=prepared.task.name, score=value, run_id=run_id,
                       metric=primary, mode='sed', head=head_name, seed=str(settings['head']['seed']),
                       config_hash=cfg.model_hash()[:16], weight_hash=prepared.source.weight_digest(),
                       elapsed_sec=elapsed, timestamp=time.strftime('%Y-%m-%dT%H:%M:%S'),
                       settings=json.dumps(settings, sort_keys=True, default=str, separators=(',', ':')),
                       report=(f'SED: {cfg.name} {prepared.task.name} {primary} {value:.4f}{folds}, segment F1 (1 s) '
                               f'{scores.segment_f1_1s:.4f}; {posts}; log {log_dir}'))
    row = {'model': cfg.name, 'task': prepared.task.name,
           **{k: '' if v is None else f'{v:.5f}' for k, v in scores.as_dict().items()},
           'valid_score': f'{valid:.5f}', 'postprocessing': posts, 'epochs': ' '.join(str(r.epochs) for r in rounds),
           'hop_sec': f'{hop:.5f}', **shared.to_csv()}
    append_rows(results_dir / 'sed_scores.csv', [row], columns=SED_COLUMNS + [c for c in COLUMNS if c != 'task'])
    log.info(f'-> {results_dir / "sed_scores.csv"}')


def sed_command(config_file: str, task: str, options: str = '', events: Optional[str] = None,
                hidden: tuple = (256,), lr: float = 1e-3, max_epochs: int = 100, patience: int = 10,
                seed: int = 42, work_root: Optional[str] = None, results_dir: str = 'results', logs_dir: str = 'logs',
                device: Optional[str] = None, bf16: bool = False, progress: bool = True,
                recompute: bool = False) -> None:
    """Frame-level sound event detection on TASK with the frozen model of CONFIG_FILE: a BCE-trained frame head
    (early-stopped on the validation split), events decoded with the task's post-processing grid (HEAR's) chosen on
    the validation split, scored on the test split by sed_eval (onset F1 at 200/50 ms, onset+offset F1, segment F1
    and error rate at 1 s, DCASE task 4's event macro F1) and for desed PSDS1, appended to results/sed_scores.csv;
    a cross-validated task (maestro) runs every fold and reports the means.

    Args:
        config_file: model YAML (a model with a frame hop).
        task: sed_words (metadata from `evar metadata sed_words ../shared/data/speech_commands_v2_test_a`),
            dcase2016_task2, maestro, desed, or a task YAML with --events.
        options: config overrides 'key=value,+new_key=value'.
        events: events CSV file_name,onset_sec,offset_sec,label,split (default: the task's events.csv).
        hidden: the MLP head's hidden widths; () for a linear head.
        lr, max_epochs, patience, seed: the head's training (Adam, early stop on validation BCE).
        work_root, results_dir, logs_dir, device, bf16, progress, recompute: as `evar linear`.
    """
    head = replace(SedHeadOptions(), hidden=tuple(hidden), lr=lr, max_epochs=max_epochs, patience=patience, seed=seed)
    sed(config_file, task, options=options, events=events, head=head, work_root=work_root,
        results_dir=Path(results_dir), logs_dir=Path(logs_dir), device=device, bf16=bf16, progress=progress,
        recompute=recompute)
