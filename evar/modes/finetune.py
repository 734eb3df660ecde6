"""Fine-tuning (mode `finetune`): the audio representation and a classifier head trained together on a task, as
EVAR's finetune.py (nttcslab/eval-audio-repr), with the checkpoint chosen on validation only.

Per (seed, fold): the split plan gives train / valid / test rows (valid carved from training when the task has
none); the network (`evar.training.network.TaskNetwork`) trains with EVAR's loss, optimiser, cosine schedule and
augmentations; after every epoch the validation score is measured, the best epoch's weights are kept, and the test
split is scored once with them. `--select_on_test` reproduces EVAR's own selection on the test split for tasks
without a validation split (a warning, and `selection=test` in the row).

Checkpoints `best-fold<f>.pt` and `last-fold<f>.pt` go to `logs/<run>/`; `last` holds the optimiser, schedule and RNG
state, so `--resume` continues a killed run and ends with the same score. `torchrun --nproc_per_node N finetune.py
...` runs DistributedDataParallel (the global batch size is split over the processes; rank 0 writes).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import EvarError

log = logging.getLogger('evar')


@dataclass(frozen=True)
class FinetuneOptions:
    """Every setting of a fine-tuning run (defaults from the model YAML's EVAR keys, overridden by flags).

    Attributes:
        lr: base learning rate (EVAR's ft_lr); the single-label loss is averaged over N x C as EVAR's, so EVAR's
            published learning rates mean the same here.
        epochs, warmup_epochs: schedule length and linear warm-up from 0, in epochs (fractional steps per iteration).
        batch_size: clips per optimiser step over all processes (before accumulation).
        mixup: Beta(alpha, alpha) mixup of waves and targets; 0 is off.
        freq_mask, time_mask: SpecAugment's widest masks in bins / frames; 0 is off.
        rrc: BYOL-A's random resize crop.
        training_mask: M2D's masking ratio of patches while training; 0 is off.
        optim: sgd | adamw | lars | lamb.
        early_stop_epochs: stop when this many epochs pass without a better validation score; -1 is off.
        hidden: hidden layer sizes of the head; () is linear.
        freeze_ar: train the head only (the AR stays in eval mode).
        freeze_embed: freeze the AR's patch embedding.
        balanced: class-balanced sampling (multi-label tasks).
        weighted_ce: class-weighted cross-entropy, weights n / (C n_c) from the training split.
        layer_decay: layer-wise learning-rate decay for transformer ARs (e.g. 0.65); None is off.
        lora: LoRA rank on the attention projections (0: full fine-tuning).
        accum_steps: micro-batches per optimiser step.
        clip_grad: gradient-norm clipping; None is off.
        select_on_test: choose the epoch on the test split (EVAR's recipe on tasks without validation).
        valid_fraction: share of training carved as validation when the task has none.
    """
    lr: float = 0.001
    epochs: int = 200
    warmup_epochs: float = 5
    batch_size: int = 256
    mixup: float = 0.5
    freq_mask: int = 30
    time_mask: int = 100
    rrc: bool = True
    training_mask: float = 0.0
    optim: str = 'sgd'
    early_stop_epochs: int = -1
    hidden: tuple = ()
    freeze_ar: bool = False
    freeze_embed: bool = False
    balanced: bool = False
    weighted_ce: bool = False
    layer_decay: Optional[float] = None
    lora: int = 0
    accum_steps: int = 1
    clip_grad: Optional[float] = None
    select_on_test: bool = False
    valid_fraction: float = 0.1

    def check(self) -> None:
        """Raises EvarError naming the flag of a value out of range."""
        from ..training.optim import OPTIMIZERS

        if self.optim not in OPTIMIZERS:
            raise EvarError(f'--optim {self.optim!r}: expected one of {list(OPTIMIZERS)}.')
        for name in ('epochs', 'batch_size', 'accum_steps'):
            if getattr(self, name) < 1:
                raise EvarError(f'--{name} must be >= 1, got {getattr(self, name)}.')
        for name in ('lr', 'warmup_epochs', 'mixup', 'freq_mask', 'time_mask', 'training_mask', 'lora'):
            if getattr(self, name) < 0:
                raise EvarError(f'--{name} must be >= 0, got {getattr(self, name)}.')
        if self.training_mask >= 1:
            raise EvarError(f'--training_mask is a ratio in [0, 1), got {self.training_mask}.')
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise EvarError(f'--layer_decay must be in (0, 1], got {self.layer_decay}.')
        if not 0 < self.valid_fraction < 1:
            raise EvarError(f'--valid_fraction must be in (0, 1), got {self.valid_fraction}.')

    @property
    def head_name(self) -> str:
        """'linear' or 'mlp<sizes>' (the result row's head)."""
        return 'linear' if not self.hidden else 'mlp' + '-'.join(str(h) for h in self.hidden)


@dataclass
class FoldOutcome:
    """One fold's test score, the selected epoch and its validation score."""
    fold: int
    score: float
    best_epoch: int
    best_valid: float
    n_train: int
    n_valid: int
    n_test: int


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """True on the process that writes checkpoints, logs and results."""
        return self.rank == 0


def distributed_from_env() -> Distributed:
    """torchrun's RANK / WORLD_SIZE / LOCAL_RANK, or a single process."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world <= 1:
        return Distributed()
    return Distributed(int(os.environ['RANK']), world, int(os.environ.get('LOCAL_RANK', '0')))


# --- losses --------------------------------------------------------------------------------------------------------

def soft_cross_entropy(logits, targets, class_weights=None):
    """EVAR's single-label loss: -mean over N x C of targets * log_softmax(logits) (soft targets after mixup), i.e.
    the cross-entropy divided by C; `class_weights` [C] scale each class's terms.

    Args:
        logits, targets: [N, C]; targets rows sum to 1.
    """
    import torch.nn.functional as F

    terms = targets * F.log_softmax(logits.float(), dim=-1)
    if class_weights is not None:
        terms = terms * class_weights
    return -terms.mean()


def bce_loss(logits, targets, class_weights=None):
    """Multi-label loss: binary cross-entropy with logits, mean over N x C ([N, C] both)."""
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(logits.float(), targets, weight=class_weights)


def balanced_class_weights(targets: np.ndarray) -> np.ndarray:
    """float32 [C] weights n / (C n_c) of the training targets [n, C] (scikit-learn's 'balanced'); classes without
    examples get 0."""
    counts = targets.sum(0)
    n, c = targets.shape
    return np.where(counts > 0, n / (c * np.maximum(counts, 1e-12)), 0.0).astype(np.float32)


# --- the run -------------------------------------------------------------------------------------------------------

def options_from(cfg_run, lr=None, epochs=None, warmup_epochs=None, batch_size=None, mixup=None, freq_mask=None,
                 time_mask=None, rrc=None, training_mask=None, optim=None, early_stop_epochs=None, hidden=(),
                 freeze_ar=False, freeze_embed=None, balanced=False, weighted_ce=False, layer_decay=None, lora=0,
                 accum_steps=1, clip_grad=None, select_on_test=False, valid_fraction=0.1) -> FinetuneOptions:
    """FinetuneOptions from flags, a flag left None taking the YAML's EVAR key (ft_lr, ft_epochs, warmup_epochs,
    ft_bs, mixup, ft_freq_mask, ft_time_mask, ft_rrc, training_mask, optim, ft_early_stop_epochs, freeze_embed).

    Raises:
        EvarError: a malformed --hidden or a value out of range.
    """
    from .linear import head_options

    def pick(flag, key, default=None):
        return flag if flag is not None else getattr(cfg_run, key, default)

    opts = FinetuneOptions(
        lr=float(pick(lr, 'ft_lr')), epochs=int(pick(epochs, 'ft_epochs')),
        warmup_epochs=float(pick(warmup_epochs, 'warmup_epochs')), batch_size=int(pick(batch_size, 'ft_bs')),
        mixup=float(pick(mixup, 'mixup') or 0.0), freq_mask=int(pick(freq_mask, 'ft_freq_mask')),
        time_mask=int(pick(time_mask, 'ft_time_mask')), rrc=bool(pick(rrc, 'ft_rrc')),
        training_mask=float(pick(training_mask, 'training_mask') or 0.0), optim=str(pick(optim, 'optim', 'sgd')),
        early_stop_epochs=int(pick(early_stop_epochs, 'ft_early_stop_epochs')),
        hidden=head_options(hidden=hidden).hidden, freeze_ar=bool(freeze_ar),
        freeze_embed=bool(pick(freeze_embed, 'freeze_embed') or False), balanced=bool(balanced),
        weighted_ce=bool(weighted_ce), layer_decay=None if layer_decay is None else float(layer_decay),
        lora=int(lora), accum_steps=int(accum_steps), clip_grad=None if clip_grad is None else float(clip_grad),
        select_on_test=bool(select_on_test), valid_fraction=float(valid_fraction))
    opts.check()
    return opts


def finetune(config_file, task, options: str = '', opts: Optional[FinetuneOptions] = None, seed: int = 42,
             unit_sec: Optional[float] = None, work_root=None, results_dir: Path = Path('results'),
             logs_dir: Path = Path('logs'), device: Optional[str] = None, bf16: bool = False, progress: bool = True,
             resume: bool = False, allow_split_overlap: bool = False, run_options: Optional[dict] = None,
             workers: Optional[int] = None) -> float:
    """Fine-tunes the model of `config_file` on `task` over every fold and appends one row to
    `results_dir`/ft-scores.csv (rank 0 only under torchrun).

    Args:
        config_file, task, options, unit_sec, work_root, device, bf16, progress, allow_split_overlap: as
            `evar.modes.linear.lineareval`.
        opts: the fine-tuning settings (None: from the YAML's keys alone, see `options_from`).
        run_options: flag values for `options_from` (used when `opts` is None).
        seed: seeds the head's initialisation, the data order, the crops and the augmentations.
        results_dir, logs_dir: where ft-scores.csv and the run's folder (checkpoints, metrics.csv, run.log) go.
        resume: continue from the run folder's `last` checkpoints (same settings: same folder).
        workers: DataLoader processes that decode and crop clips beyond the in-memory budget (None: the cores less
            one, at most 8); the score does not depend on it.

    Returns:
        The mean test score over folds.

    Raises:
        EvarError: bad input, before any training.
    """
    import torch

    from ..training.data import default_workers
    from .linear import peak_memory_mb, prepare_run, settings_id, setup_logging

    t_start = time.perf_counter()
    dist = distributed_from_env()
    valid_fraction = opts.valid_fraction if opts else (run_options or {}).get('valid_fraction', 0.1)
    if dist.world > 1:  # rank 0 prepares first (it may write the demo task's files), the others then read them
        from ..embed.source import pick_device

        _init_process_group(dist, pick_device(device))
        if not dist.main:
            _barrier(dist)
    prepared = prepare_run(config_file, task, options, (seed,), valid_fraction, unit_sec, work_root, device, bf16,
                           progress, allow_split_overlap=allow_split_overlap)
    if dist.world > 1 and dist.main:
        _barrier(dist)
    cfg, task_def = prepared.cfg, prepared.task
    if cfg.run.evar_protocol:  # its crops and statistics belong to frozen-embedding evaluation; a row would claim them
        raise EvarError(f'evar_protocol ({cfg.path}) applies to frozen-embedding evaluation (evar linear / knn), '
                        'not to fine-tuning: remove it from the options or the YAML.')
    opts = opts or options_from(cfg.run, **(run_options or {}))
    settings = run_settings(prepared, opts, unit_sec)
    run_id = settings_id(settings)
    log_dir = Path(logs_dir) / f'{cfg.name}-{task_def.name}-ft-{run_id}'
    setup_logging(log_dir if dist.main else None)
    device = _rank_device(prepared.source.device, dist)
    log.info(f'fine-tuning {cfg.name} ({cfg.audio_repr}) on {task_def.name}: {len(prepared.metadata)} clips, folds '
             f'{prepared.folds}, device {device}, {dist.world} process(es), global batch {opts.batch_size} x '
             f'{opts.accum_steps} accumulation = {opts.batch_size * opts.accum_steps} clips per step; {opts}')
    if getattr(cfg.run, 'ft_noise', 0.0):
        log.warning(f'ft_noise={cfg.run.ft_noise} is not used (EVAR reads the key but never applies it either)')
    try:
        outcomes = []
        for fold in prepared.folds:
            plan = prepared.plans[seed, fold]
            outcomes.append(train_fold(prepared, plan, opts, device, log_dir, dist, resume, bf16, progress,
                                       default_workers() if workers is None else int(workers)))
        score = float(np.mean([o.score for o in outcomes]))
        if dist.main:
            record(prepared, opts, seed, outcomes, score, Path(results_dir), log_dir, time.perf_counter() - t_start,
                   run_id, settings)
    except BaseException as e:
        logging.getLogger('evar.runlog').error(f'run failed ({type(e).__name__}) {e}')
        raise
    finally:
        if dist.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    log.info(f'done in {time.perf_counter() - t_start:.1f}s, peak memory {peak_memory_mb():.0f} MB')
    return score


def _init_process_group(dist: Distributed, device: str) -> None:
    import torch.distributed

    backend = 'nccl' if str(device).startswith('cuda') else 'gloo'
    torch.distributed.init_process_group(backend=backend, rank=dist.rank, world_size=dist.world)


def _rank_device(device: str, dist: Distributed) -> str:
    """cuda:LOCAL_RANK for a multi-GPU job, else the run's device."""
    if dist.world > 1 and str(device).startswith('cuda'):
        import torch

        torch.cuda.set_device(dist.local_rank)
        return f'cuda:{dist.local_rank}'
    return device


def run_settings(prepared, opts: FinetuneOptions, unit_sec_option=None) -> dict:
    """Every setting that changes a fine-tuned score (the seed is not one: runs differing by seed are repeats)."""
    from .linear import common_settings

    return {**common_settings(prepared, unit_sec_option), 'finetune': dataclasses.asdict(opts),
            'selection': 'test' if opts.select_on_test else 'valid'}


def build_network(prepared, opts: FinetuneOptions, n_classes: int, device: str):
    """A fresh AR (weights loaded again) and a new head, with the freezing, LoRA and training-mask settings applied.

    Raises:
        EvarError: a setting the model does not support (freeze_embed without a patch embedding, LoRA without
            attention projections, training_mask outside the M2D family).
    """
    from ..models import create_model
    from ..training.network import TaskNetwork, set_trainable

    cfg = prepared.cfg
    ar = create_model(cfg.audio_repr, cfg.params)
    if opts.lora:
        from ..training.optim import add_lora

        ar = add_lora(ar, opts.lora)
    if opts.freeze_ar:
        set_trainable(ar, False)
    if opts.freeze_embed:
        embedding = ar.patch_embedding()
        if embedding is None:
            raise EvarError(f'--freeze_embed: {type(ar).__name__} ({cfg.path}) has no patch embedding to freeze.')
        set_trainable(embedding, False)
    if opts.training_mask:
        ar.set_training_mask(opts.training_mask)
    return TaskNetwork(ar, n_classes, opts.hidden).to(device)


def train_fold(prepared, plan, opts: FinetuneOptions, device: str, log_dir: Path, dist: Distributed,
               resume: bool = False, bf16: bool = False, progress: bool = True, workers: int = 0) -> FoldOutcome:
    """Trains one fold, selects its epoch on validation (or on test with `select_on_test`), scores the test rows
    once with the selected weights, and writes metrics-fold<f>.csv, the checkpoints, the test predictions and the
    class-wise report. `workers`: DataLoader processes for clips that do not fit in memory (0: this process)."""
    import torch
    from tqdm import tqdm

    from ..embed.extract import ExtractSettings, compute_norm_stats
    from ..data import ClipDataset
    from ..metrics import get_metric
    from ..training.augment import InputAugment, mixup
    from ..training.data import ClipBatches, ClipStore, TrainCrop, batch_loader, epoch_order, one_hot
    from ..training.network import trainable_summary
    from ..training.optim import cosine_schedule, make_optimizer, param_groups

    cfg, task_def, source = prepared.cfg, prepared.task, prepared.source
    metric = get_metric(task_def.metric)
    n_classes = len(plan.classes)
    targets = {s: one_hot(plan.targets[s], n_classes) for s in ('train', 'valid', 'test')}
    select_split = 'test' if opts.select_on_test else 'valid'
    if opts.select_on_test:
        log.warning('--select_on_test: the epoch is chosen on the TEST split (EVAR\'s recipe for tasks without '
                    'validation); the score is optimistic and the row says selection=test')
    torch.manual_seed(plan.seed)
    network = build_network(prepared, opts, n_classes, device)
    ar = network.ar
    root, _ = source.data_root()
    unit = int(round(task_def.unit_sec * source.sample_rate))
    store = ClipStore(root, prepared.metadata.file_names, source.sample_rate)
    store.preload(np.concatenate([plan.rows[s] for s in ('train', 'valid', 'test')]), workers)
    stats = compute_norm_stats(ar, ClipDataset(root, prepared.metadata.file_names, source.sample_rate,
                                               task_def.unit_sec, cfg.run.crop), plan.rows['train'],
                               ExtractSettings(batch_size=source.extract_batch_size, device=device, progress=progress))
    augment = InputAugment(opts.freq_mask, opts.time_mask, opts.rrc)
    if augment.active:
        if ar.augment_point == 'spectrogram':
            ar.input_augment = augment
        else:
            log.warning(f'{type(ar).__name__} takes waves: {augment} does not apply (mixup does)')
    log.info(f'fold {plan.fold}: train {len(plan.rows["train"])}, valid {len(plan.rows["valid"])}'
             f'{" (carved from training)" if plan.valid_carved else ""}, test {len(plan.rows["test"])}; '
             f'{trainable_summary(network)}')

    module = network
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        module = DistributedDataParallel(network, device_ids=[dist.local_rank] if device.startswith('cuda') else None)
    groups = param_groups(network, weight_decay=1e-4 if opts.optim in ('adamw', 'lamb') else 0.0,
                          layer_decay=opts.layer_decay)
    optimizer = make_optimizer(opts.optim, groups, opts.lr)
    n_train = len(plan.rows['train'])
    batches_per_epoch = len(epoch_order(n_train, opts.batch_size, plan.seed, 0, targets['train'], opts.balanced,
                                        dist.rank, dist.world))
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / opts.accum_steps))
    scheduler = cosine_schedule(optimizer, opts.epochs, opts.warmup_epochs, steps_per_epoch)
    class_weights = None
    if opts.weighted_ce:
        class_weights = torch.from_numpy(balanced_class_weights(targets['train'])).to(device)
    loss_fn = bce_loss if plan.multi_label else soft_cross_entropy

    paths = {k: log_dir / f'{k}-fold{plan.fold}.pt' for k in ('best', 'last')}
    state = {'epoch': -1, 'best_valid': None, 'best_epoch': -1, 'history': [], 'finished': False}
    if resume and paths['last'].is_file():
        state = _restore(paths['last'], network, optimizer, scheduler, plan)
        log.info(f'fold {plan.fold}: resumed after epoch {state["epoch"]} from {paths["last"]}')
    elif resume:
        log.info(f'fold {plan.fold}: nothing to resume in {log_dir}; starting from epoch 0')

    better = (lambda a, b: b is None or a > b) if metric.higher_is_better else (lambda a, b: b is None or a < b)
    wav_rows = plan.rows['train']
    for epoch in range(state['epoch'] + 1, opts.epochs):
        if state['finished']:
            break
        t0 = time.perf_counter()
        module.train()
        if opts.freeze_ar:
            ar.eval()
        seed_epoch(plan.seed, epoch)
        order = epoch_order(n_train, opts.batch_size, plan.seed, epoch, targets['train'], opts.balanced, dist.rank,
                            dist.world)
        losses = []
        optimizer.zero_grad(set_to_none=True)
        loader = batch_loader(ClipBatches(store, wav_rows, targets['train'], order, TrainCrop(unit, plan.seed, epoch)),
                              workers, pin_memory=device.startswith('cuda'))
        bar = tqdm(loader, total=len(order), desc=f'fold {plan.fold} epoch {epoch}', unit='batch', leave=False,
                   disable=not (progress and dist.main))
        for i, (wav, lengths, y) in enumerate(bar):
            wav, lengths, y = (t.to(device, non_blocking=True) for t in (wav, lengths, y))
            if opts.mixup > 0:
                wav, lengths, y = mixup(wav, lengths, y, opts.mixup)
            with _autocast(device, bf16):
                logits = module(wav, lengths)
            loss = loss_fn(logits, y, class_weights) / opts.accum_steps
            loss.backward()
            losses.append(float(loss.detach()) * opts.accum_steps)
            bar.set_postfix_str(f'loss {losses[-1]:.4f}', refresh=False)
            if (i + 1) % opts.accum_steps == 0 or i + 1 == len(order):
                if opts.clip_grad:
                    torch.nn.utils.clip_grad_norm_(network.parameters(), opts.clip_grad)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
        valid_rows = plan.rows[select_split]
        scores = predict(network, store, valid_rows, unit, cfg.run.crop, opts.batch_size, device, bf16,
                         plan.multi_label, workers)
        valid = float(metric.function(plan.targets[select_split], scores))
        lr_now = optimizer.param_groups[0]['lr']
        state['history'].append({'epoch': epoch, 'lr': lr_now, 'train_loss': float(np.mean(losses)),
                                 f'{select_split}_{metric.name}': valid, 'sec': time.perf_counter() - t0})
        if better(valid, state['best_valid']):
            state['best_valid'], state['best_epoch'] = valid, epoch
            if dist.main:
                _save(paths['best'], {'network': network.state_dict(), 'epoch': epoch, 'valid': valid,
                                      'classes': plan.classes, 'fold': plan.fold, 'seed': plan.seed,
                                      'norm_stats': stats,
                                      'options': dataclasses.asdict(opts), 'config': str(cfg.path),
                                      'task': task_def.name, 'multi_label': plan.multi_label})
        log.info(f'fold {plan.fold} epoch {epoch}: lr {lr_now:.3g}, train loss {np.mean(losses):.5f}, {select_split} '
                 f'{metric.name} {valid:.5f}, best {state["best_valid"]:.5f}@{state["best_epoch"]}, '
                 f'{time.perf_counter() - t0:.1f}s')
        stop = opts.early_stop_epochs >= 0 and epoch > state['best_epoch'] + opts.early_stop_epochs
        state['epoch'], state['finished'] = epoch, stop or epoch + 1 == opts.epochs
        if dist.main:
            _write_metrics(log_dir / f'metrics-fold{plan.fold}.csv', state['history'])
            _save_last(paths['last'], network, optimizer, scheduler, state)
        _barrier(dist)
        if stop:
            log.info(f'fold {plan.fold}: early stop, no better {select_split} score for {opts.early_stop_epochs} epochs')
            break

    best = _load(paths['best'])
    network.load_state_dict(best['network'])
    test_scores = predict(network, store, plan.rows['test'], unit, cfg.run.crop, opts.batch_size, device, bf16,
                          plan.multi_label, workers)
    test = float(metric.function(plan.targets['test'], test_scores))
    log.info(f'fold {plan.fold}: test {metric.name} {test:.5f} with the weights of epoch {best["epoch"]} '
             f'({select_split} {best["valid"]:.5f})')
    if dist.main:
        from .linear import write_predictions

        suffix = f'seed{plan.seed}-fold{plan.fold}'
        write_predictions(log_dir / f'predictions-{suffix}.csv', prepared.metadata, plan.rows['test'], plan.classes,
                          test_scores, plan.targets['test'])
        write_classwise(log_dir / f'classwise-{suffix}.csv', plan.targets['test'], test_scores, plan.classes)
    return FoldOutcome(fold=plan.fold, score=float(test), best_epoch=int(best['epoch']), best_valid=float(best['valid']),
                       n_train=n_train, n_valid=len(plan.rows['valid']), n_test=len(plan.rows['test']))


def predict(network, store, rows, unit: int, crop_policy: str, batch_size: int, device: str, bf16: bool,
            multi_label: bool, workers: int = 0) -> np.ndarray:
    """Class scores float32 [n, C] of metadata `rows` (softmax, or sigmoid for multi-label) in eval mode, clips
    cropped deterministically by the run's crop policy (`workers`: as `evar.training.data.batch_loader`)."""
    import torch

    from ..training.data import ClipBatches, EvalCrop, batch_loader

    network.eval()
    out = []
    batches = [list(range(start, min(start + batch_size, len(rows)))) for start in range(0, len(rows), batch_size)]
    loader = batch_loader(ClipBatches(store, rows, np.zeros((len(rows), 1), dtype=np.float32), batches,
                                      EvalCrop(unit, crop_policy)), workers)
    with torch.inference_mode():
        for wav, lengths, _ in loader:
            with _autocast(device, bf16):
                logits = network(wav.to(device), lengths.to(device)).float()
            out.append((torch.sigmoid(logits) if multi_label else torch.softmax(logits, -1)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, network.head.mlp[-1].out_features), dtype=np.float32)


def seed_epoch(seed: int, epoch: int) -> None:
    """Seeds torch's, NumPy's and Python's global generators from (seed, epoch) at the start of an epoch: dropout,
    SpecAugment and mixup draw from torch's, and model code may draw from the others (transformers' wav2vec 2.0 family
    masks time steps and drops layers with NumPy's). An epoch's draws then depend on (seed, epoch) alone, so a run
    resumed at an epoch boundary repeats an uninterrupted one exactly."""
    import random

    import torch

    state = int(np.random.SeedSequence([int(seed), int(epoch), 104729]).generate_state(1)[0])
    torch.manual_seed(state)
    np.random.seed(state)
    random.seed(state)


def _autocast(device: str, bf16: bool):
    import torch

    return torch.autocast('cuda', dtype=torch.bfloat16) if bf16 and str(device).startswith('cuda') else nullcontext()


def _barrier(dist: Distributed) -> None:
    if dist.world > 1:
        import torch.distributed

        torch.distributed.barrier()


def _save(path: Path, obj: dict) -> None:
    """torch.save to a temporary file, then renamed: a kill never leaves a half-written checkpoint."""
    import torch

    tmp = path.with_name(path.name + '.tmp')
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load(path: Path) -> dict:
    import torch

    if not Path(path).is_file():
        raise EvarError(f'Checkpoint {path} does not exist.')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise EvarError(f'Checkpoint {path} cannot be read: {e}') from e


def _save_last(path: Path, network, optimizer, scheduler, state: dict) -> None:
    """The `last` checkpoint: weights, optimiser, schedule and the epoch log (what `--resume` needs; the random
    generators are seeded per epoch by `seed_epoch`)."""
    _save(path, {'network': network.state_dict(), 'optimizer': optimizer.state_dict(),
                 'scheduler': scheduler.state_dict(), 'state': json.dumps(state, default=float)})


def _restore(path: Path, network, optimizer, scheduler, plan) -> dict:
    saved = _load(path)
    network.load_state_dict(saved['network'])
    optimizer.load_state_dict(saved['optimizer'])
    scheduler.load_state_dict(saved['scheduler'])
    return json.loads(saved['state'])


def _write_metrics(path: Path, history: list) -> None:
    from .linear import write_csv

    header = list(history[0])
    write_csv(path, header, [[f'{row[k]:.6g}' if isinstance(row[k], float) else row[k] for k in header]
                             for row in history])


def write_classwise(path: Path, y_true: np.ndarray, scores: np.ndarray, classes) -> None:
    """The class-wise report of a test split: accuracy per class (single-label `y_true` [n]) or average precision per
    class (multi-label [n, C]), with each class's number of test clips, as CSV at `path`."""
    from ..metrics import classwise_accuracy, classwise_average_precision
    from .linear import write_csv

    if np.asarray(y_true).ndim == 1:
        write_csv(path, ['class', 'accuracy', 'count'], classwise_accuracy(y_true, scores.argmax(1), classes))
    else:
        write_csv(path, ['class', 'average_precision', 'count'], classwise_average_precision(y_true, scores, classes))


def record(prepared, opts: FinetuneOptions, seed: int, outcomes: list, score: float, results_dir: Path, log_dir: Path,
           elapsed: float, run_id: str, settings: dict) -> None:
    """Appends one `ResultRow` (mode finetune) to `results_dir`/ft-scores.csv."""
    from ..results import ResultRow, append_rows

    cfg, task = prepared.cfg, prepared.task
    selection = settings['selection']
    folds = (', folds: [' + ', '.join(f'{o.score:.5f}' for o in outcomes) + ']') if len(outcomes) > 1 else ''
    epochs = ', '.join(f'fold {o.fold} epoch {o.best_epoch}' for o in outcomes)
    row = ResultRow(representation=cfg.name, task=task.name, score=score, run_id=run_id, metric=task.metric,
                    mode='finetune', head=opts.head_name, seed=str(seed), config_hash=cfg.model_hash()[:16],
                    weight_hash=prepared.source.weight_digest(), elapsed_sec=elapsed,
                    timestamp=time.strftime('%Y-%m-%dT%H:%M:%S'),
                    settings=json.dumps(settings, sort_keys=True, default=str, separators=(',', ':')),
                    report=(f'Fine-tuning {cfg.name} on {task.name} seed {seed} -> {score:.5f}{folds}; '
                            f'selection={selection} ({epochs}); config {cfg.path}; log {log_dir}'))
    append_rows(results_dir / 'ft-scores.csv', [row])
    log.info(f'test {task.metric} {score:.5f}{folds} -> {results_dir / "ft-scores.csv"}')


def evaluate_checkpoint(config_file, task, checkpoint, options: str = '', unit_sec: Optional[float] = None,
                        work_root=None, device: Optional[str] = None, bf16: bool = False) -> float:
    """The test score of a saved `best-fold<f>.pt` on its fold's test split (EVAR's --eval_only); writes nothing.

    Raises:
        EvarError: a checkpoint of another task, or one that does not match the model.
    """
    from ..metrics import get_metric
    from ..training.data import ClipStore
    from .linear import prepare_run

    saved = _load(Path(checkpoint))
    opts = FinetuneOptions(**{**saved['options'], 'hidden': tuple(saved['options']['hidden'])})
    seed = int(saved.get('seed', 42))
    prepared = prepare_run(config_file, task, options, (seed,), opts.valid_fraction, unit_sec, work_root, device, bf16,
                           False)
    if saved['task'] != prepared.task.name:
        raise EvarError(f'Checkpoint {checkpoint} was trained on task {saved["task"]}, not {prepared.task.name}.')
    plan = prepared.plans[seed, int(saved['fold'])]
    if tuple(saved['classes']) != tuple(plan.classes):
        raise EvarError(f'Checkpoint {checkpoint}: its classes differ from the task\'s ({len(saved["classes"])} vs '
                        f'{len(plan.classes)}).')
    device = prepared.source.device
    network = build_network(prepared, dataclasses.replace(opts, training_mask=0.0), len(plan.classes), device)
    if saved['norm_stats'] is not None:
        network.ar.set_norm_stats(*saved['norm_stats'])
    try:
        network.load_state_dict(saved['network'])
    except RuntimeError as e:
        raise EvarError(f'Checkpoint {checkpoint} does not match {config_file}: {e}') from None
    root, _ = prepared.source.data_root()
    store = ClipStore(root, prepared.metadata.file_names, prepared.source.sample_rate)
    unit = int(round(prepared.task.unit_sec * prepared.source.sample_rate))
    scores = predict(network, store, plan.rows['test'], unit, prepared.cfg.run.crop, opts.batch_size, device, bf16,
                     plan.multi_label)
    return float(get_metric(prepared.task.metric).function(plan.targets['test'], scores))


def finetune_command(config_file: str, task: str, options: str = '', seed: int = 42, lr: Optional[float] = None,
                     epochs: Optional[int] = None, warmup_epochs: Optional[float] = None,
                     batch_size: Optional[int] = None, mixup: Optional[float] = None, freq_mask: Optional[int] = None,
                     time_mask: Optional[int] = None, rrc: Optional[bool] = None,
                     training_mask: Optional[float] = None, optim: Optional[str] = None,
                     early_stop_epochs: Optional[int] = None, hidden: Union[tuple, str] = (),
                     freeze_ar: bool = False, freeze_embed: Optional[bool] = None, balanced: bool = False,
                     weighted_ce: bool = False, layer_decay: Optional[float] = None, lora: int = 0,
                     accum_steps: int = 1, clip_grad: Optional[float] = None, select_on_test: bool = False,
                     valid_fraction: float = 0.1, unit_sec: Optional[float] = None, eval_only: Optional[str] = None,
                     resume: bool = False, work_root: Optional[str] = None, results_dir: str = 'results',
                     logs_dir: str = 'logs', device: Optional[str] = None, bf16: bool = False,
                     progress: bool = True, allow_split_overlap: bool = False, workers: Optional[int] = None) -> None:
    """Fine-tunes the model of CONFIG_FILE on TASK (EVAR's finetune.py recipe) and appends the test score to
    results/ft-scores.csv; the epoch is selected on validation (carved from training when the task has none).

    Args:
        config_file: model YAML; its ft_lr, ft_bs, ft_epochs, ft_early_stop_epochs, warmup_epochs, mixup,
            ft_freq_mask, ft_time_mask, ft_rrc, training_mask, optim keys are the defaults of the flags below.
        task: a built-in task name or a task YAML.
        options: config overrides 'key=value,+new_key=value'.
        seed: seeds the head, the data order, crops and augmentations.
        lr, epochs, warmup_epochs, batch_size: the schedule (cosine with linear warm-up, stepped per iteration).
        mixup: Beta(alpha, alpha) mixup alpha (0: off); freq_mask, time_mask: SpecAugment widths; rrc: random resize
            crop; training_mask: M2D's training mask ratio.
        optim: sgd | adamw | lars | lamb.
        early_stop_epochs: epochs without a better validation score before stopping (-1: off).
        hidden: head hidden sizes, e.g. '(128,)'.
        freeze_ar: train the head only; freeze_embed: freeze the patch embedding.
        balanced: class-balanced sampling (multi-label tasks); weighted_ce: class-weighted loss.
        layer_decay: layer-wise lr decay (transformers), e.g. 0.65; lora: LoRA rank (0: off).
        accum_steps: gradient accumulation; clip_grad: max gradient norm.
        select_on_test: choose the epoch on the test split as EVAR does on tasks without validation (warned).
        valid_fraction: share of training carved as validation when the task has none.
        unit_sec: clip length in seconds (default: the task's).
        eval_only: a best-fold<f>.pt checkpoint to score on its test split (nothing is trained or written).
        resume: continue a killed run with the same settings from its last checkpoints.
        work_root, results_dir, logs_dir, device, bf16, progress, allow_split_overlap: as `evar linear`.
        workers: DataLoader processes decoding clips that do not fit in memory (default: cores less one, at most 8).
    """
    if eval_only:
        score = evaluate_checkpoint(config_file, task, eval_only, options, unit_sec, work_root, device, bf16)
        print(f'{eval_only}: test score {score:.5f}')
        return
    flags = dict(lr=lr, epochs=epochs, warmup_epochs=warmup_epochs, batch_size=batch_size, mixup=mixup,
                 freq_mask=freq_mask, time_mask=time_mask, rrc=rrc, training_mask=training_mask, optim=optim,
                 early_stop_epochs=early_stop_epochs, hidden=hidden, freeze_ar=freeze_ar, freeze_embed=freeze_embed,
                 balanced=balanced, weighted_ce=weighted_ce, layer_decay=layer_decay, lora=lora,
                 accum_steps=accum_steps, clip_grad=clip_grad, select_on_test=select_on_test,
                 valid_fraction=valid_fraction)
    finetune(config_file, task, options, seed=seed, unit_sec=unit_sec, work_root=work_root,
             results_dir=Path(results_dir), logs_dir=Path(logs_dir), device=device, bf16=bf16, progress=progress,
             resume=resume, allow_split_overlap=allow_split_overlap, run_options=flags, workers=workers)
