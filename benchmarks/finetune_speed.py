"""Speed and memory of the fine-tuning loop (`evar.modes.finetune.train_fold`), measured side by side in one run on
the same batches.

Prints:
1. one training epoch's wall time inside `train_fold` (its second epoch: clips already decoded, caches warm), with and
   without the validation pass that closes each epoch, against the model's pure forward + backward + optimiser step
   over the same batches (the very batches `train_fold` makes for that epoch: same order, same crops, already
   collated in memory and on the device); target: train loop / pure at most 1.2x;
2. peak memory of each phase: resident memory of this process (VmHWM, reset between phases where the kernel allows
   it), and torch.cuda.max_memory_allocated on a GPU.

The pure loop runs the same network (`build_network` with the same options), the same SpecAugment / random resize
crop inside the model, the same loss, optimiser and schedule; it leaves out only the data side (cropping, collating,
host-to-device copies) and mixup, which `train_fold` pays for in its loop. The faster of two runs after `train_fold`
is the reference (this VM's speed drifts).

    python benchmarks/finetune_speed.py                      # BYOL-A d512 (../shared weights) on FSDD (../shared data)
    python benchmarks/finetune_speed.py --task demo --device cuda --bf16
    python benchmarks/finetune_speed.py --config config/m2d.yaml --options weight_file=/path/m2d.pth --task demo

Without ../shared/weights/AudioNTT2020-BYOLA-64x96d512.pth the same network gets random weights (speed does not
depend on them); without ../shared/data/fsdd the task falls back to the generated `demo`.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / 'shared'
BYOLA_D512 = SHARED / 'weights' / 'AudioNTT2020-BYOLA-64x96d512.pth'


def reset_peak_rss() -> bool:
    """Resets this process's VmHWM to its current RSS (Linux clear_refs 5); False where that is not allowed."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak resident memory (MiB) and, on CUDA, peak allocated GPU memory (MiB) of the code run inside `with`."""

    def __init__(self, device: str):
        self.cuda = str(device).startswith('cuda')
        self.rss_mb = self.gpu_mb = float('nan')
        self.rss_is_phase = False

    def __enter__(self):
        import torch

        self.rss_is_phase = reset_peak_rss()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc):
        import torch

        from evar.modes.linear import peak_memory_mb

        if self.cuda:
            torch.cuda.synchronize()
            self.gpu_mb = torch.cuda.max_memory_allocated() / 2 ** 20
        self.rss_mb = peak_memory_mb()
        return False

    def __str__(self) -> str:
        rss = f'peak RSS {self.rss_mb:.0f} MiB' + ('' if self.rss_is_phase else ' (process peak so far)')
        return rss + (f', peak GPU allocated {self.gpu_mb:.0f} MiB' if self.cuda else '')


def epoch_batches(prepared, plan, opts, epoch: int, device: str) -> list:
    """The training batches `train_fold` makes in `epoch` (same order, same crops), collated: a list of
    (waves [B, N], lengths [B], one-hot targets [B, C]) on `device`."""
    import numpy as np

    from evar.training.data import ClipStore, collate, epoch_order, one_hot, random_crop

    source, task = prepared.source, prepared.task
    root, _ = source.data_root()
    store = ClipStore(root, prepared.metadata.file_names, source.sample_rate)
    unit = int(round(task.unit_sec * source.sample_rate))
    rows = plan.rows['train']
    targets = one_hot(plan.targets['train'], len(plan.classes))
    batches = []
    for batch in epoch_order(len(rows), opts.batch_size, plan.seed, epoch, targets, opts.balanced):
        waves = [random_crop(store.wave(int(rows[p])), unit, np.random.default_rng([plan.seed, epoch, int(rows[p])]))
                 for p in batch]
        batches.append(tuple(t.to(device) for t in collate(waves, targets[batch])))
    return batches


def pure_seconds(prepared, plan, opts, batches: list, norm_stats, device: str, bf16: bool) -> float:
    """Wall time of forward + loss + backward + optimiser and schedule step over `batches` on a fresh network built
    as `train_fold` builds it (same options, augmentation in the model, optimiser, schedule), in train mode."""
    import torch

    from evar.modes.finetune import _autocast, bce_loss, build_network, soft_cross_entropy
    from evar.training.augment import InputAugment
    from evar.training.optim import cosine_schedule, make_optimizer, param_groups

    torch.manual_seed(plan.seed)
    network = build_network(prepared, opts, len(plan.classes), device)
    if norm_stats is not None:
        network.ar.set_norm_stats(*norm_stats)
    augment = InputAugment(opts.freq_mask, opts.time_mask, opts.rrc)
    if augment.active and network.ar.augment_point == 'spectrogram':
        network.ar.input_augment = augment
    groups = param_groups(network, weight_decay=1e-4 if opts.optim in ('adamw', 'lamb') else 0.0,
                          layer_decay=opts.layer_decay)
    optimizer = make_optimizer(opts.optim, groups, opts.lr)
    scheduler = cosine_schedule(optimizer, opts.epochs, opts.warmup_epochs, len(batches))
    loss_fn = bce_loss if plan.multi_label else soft_cross_entropy
    network.train()
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for wav, lengths, y in batches:
        with _autocast(device, bf16):
            logits = network(wav, lengths)
        loss_fn(logits, y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def timed_train_fold(prepared, plan, opts, device: str, log_dir: Path, bf16: bool) -> tuple:
    """Runs `train_fold` for opts.epochs epochs with its `predict` timed.

    Returns (per-epoch seconds of training + validation from its metrics-fold<f>.csv, per-call seconds of predict:
    one validation per epoch, then the test pass, the saved best-fold<f>.pt's norm_stats).
    """
    import torch

    import evar.modes.finetune as finetune

    predict_times = []
    predict = finetune.predict

    def timed_predict(*args, **kwargs):
        t0 = time.perf_counter()
        out = predict(*args, **kwargs)
        predict_times.append(time.perf_counter() - t0)
        return out

    finetune.predict = timed_predict  # train_fold calls the module's global: its validation and test passes
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        finetune.train_fold(prepared, plan, opts, device, log_dir, finetune.Distributed(), bf16=bf16, progress=False)
    finally:
        finetune.predict = predict
    with open(log_dir / f'metrics-fold{plan.fold}.csv') as f:
        epoch_sec = [float(row['sec']) for row in csv.DictReader(f)]
    stats = torch.load(log_dir / f'best-fold{plan.fold}.pt', map_location='cpu', weights_only=True)['norm_stats']
    return epoch_sec, predict_times, stats


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', default=str(ROOT / 'config' / 'byola_d512.yaml'))
    parser.add_argument('--options', default=None, help="config overrides (default: the shared BYOL-A d512 weights)")
    parser.add_argument('--task', default=None, help='default: fsdd with ../shared/data/fsdd, else demo')
    parser.add_argument('--dataset', default=None, help="the task's audio folder (metadata made with evar metadata)")
    parser.add_argument('--batch_size', type=int, default=64)
    parser.add_argument('--lr', type=float, default=None, help="default: the config's ft_lr")
    parser.add_argument('--mixup', type=float, default=None)
    parser.add_argument('--freq_mask', type=int, default=None)
    parser.add_argument('--time_mask', type=int, default=None)
    parser.add_argument('--rrc', type=lambda s: s.lower() in ('1', 'true', 'yes'), default=None)
    parser.add_argument('--device', default=None)
    parser.add_argument('--bf16', action='store_true')
    parser.add_argument('--seed', type=int, default=42)
    args = parser.parse_args(argv)

    import torch

    from evar.metadata import main as metadata_main
    from evar.modes.finetune import options_from
    from evar.modes.linear import prepare_run

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        options = args.options
        if options is None:
            weights = BYOLA_D512
            if not weights.is_file():  # same architecture, random weights: the speed is the same
                from evar.models.byola import AudioNTT2020

                weights = tmp / 'random-byola-d512.pth'
                torch.save(AudioNTT2020(n_mels=64, d=512).state_dict(), weights)
            options = f'weight_file={weights}'
        task, dataset = args.task, args.dataset
        if task is None:
            task, dataset = ('fsdd', SHARED / 'data' / 'fsdd') if (SHARED / 'data' / 'fsdd').is_dir() else ('demo', None)
        work = tmp / 'work'
        if dataset is not None and metadata_main([task, str(dataset), '--work_root', str(work)]) != 0:
            raise SystemExit(f'evar metadata {task} {dataset} failed')
        prepared = prepare_run(args.config, task, options, (args.seed,), 0.1, None, work, args.device, args.bf16,
                               False)
        device = prepared.source.device
        opts = options_from(prepared.cfg.run, lr=args.lr, epochs=2, warmup_epochs=1, batch_size=args.batch_size,
                            mixup=args.mixup, freq_mask=args.freq_mask, time_mask=args.time_mask, rrc=args.rrc,
                            early_stop_epochs=-1)
        plan = prepared.plans[args.seed, prepared.folds[0]]
        print(f'{prepared.cfg.name} ({options}) on {prepared.task.name}: train {len(plan.rows["train"])}, valid '
              f'{len(plan.rows["valid"])} clips of {prepared.task.unit_sec:g} s; device {device}, bf16 {args.bf16}, '
              f'torch {torch.__version__}, {torch.get_num_threads()} threads')
        print(f'options: {dataclasses.asdict(opts)}')

        batches = epoch_batches(prepared, plan, opts, 1, device)  # the batches of train_fold's second epoch
        print(f'{len(batches)} batches of up to {opts.batch_size} clips per epoch')
        with PeakMemory(device) as fold_mem:
            epoch_sec, predict_sec, stats = timed_train_fold(prepared, plan, opts, device, tmp / 'logs', args.bf16)
        pure_seconds(prepared, plan, opts, batches[:2], stats, device, args.bf16)  # warm-up, as train_fold's epoch 1
        pure, pure_mem = [], []
        for _ in range(2):
            with PeakMemory(device) as mem:
                pure.append(pure_seconds(prepared, plan, opts, batches, stats, device, args.bf16))
            pure_mem.append(mem)

    train_loop = epoch_sec[1] - predict_sec[1]
    reference = min(pure)
    print(f'train_fold epoch 2: {epoch_sec[1]:.2f} s = training loop {train_loop:.2f} s + validation pass '
          f'{predict_sec[1]:.2f} s  (epoch 1, decoding included: {epoch_sec[0]:.2f} s)')
    print(f'pure forward + backward + step, same {len(batches)} batches: {pure[0]:.2f} s, {pure[1]:.2f} s '
          f'(reference: the faster)')
    print(f'ratio training loop / pure: {train_loop / reference:.3f}x (target <= 1.2x)')
    print(f'ratio training + validation / pure: {epoch_sec[1] / reference:.3f}x')
    print(f'memory: train_fold (2 epochs + test): {fold_mem}; pure loop: {pure_mem[0]}')


if __name__ == '__main__':
    main()
