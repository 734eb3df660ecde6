"""Sanity checks of a model wrapper (the AR interface) before spending hours of evaluation on it.

    python -m evar.check config/<model>.yaml [--options 'key=value,...'] [--device cpu] [--long_sec 600]

Checks, one table row each (exit status 1 when any fails):
  shapes        frames [B, T, D], mask [B, T] (bool, >= 1 valid frame per clip), pooled [B, D], all finite, and D
                equal to the model's declared `embedding_dim`
  silence       silent clips (all zeros) of 0.2 s, 1 s and 10 s give finite frames and pooled embeddings (a model
                that divides a clip by its own standard deviation gives NaN here)
  frame_rate    frames added by k more hops of input (from a clip of at least 10 s and one window plus two hops to
                one k * frame_hop_sec longer, k >= 4 and k hops >= 10 s; within `crop_sec` for models that crop their
                input) equal k within 1 frame + 2%, and the count at the shorter clip agrees with the declared
                `frame_hop_sec` and `frame_window_sec` within 2 frames + 2%; skipped with a note when the model declares no hop
                (None)
  length <s>    one clip each of 0.2 s, 1 s, 10 s and `long_sec` (default 10 min) runs, with its time. Long inputs
                are run as the model runs them (models with chunking bound their own memory); peak memory is shown
  batch_single  clips of different lengths embedded as one padded batch and one by one agree within 1e-4
                relative (padding never leaks into a clip's embedding)
  deterministic two runs of the same batch, and of one clip longer than the model's window or chunk
                (`long_clip_sec`: 2.5x the longest of 10 s, `frame_window_sec` and the model's `*_sec` Params such
                as chunk_sec), give identical frames and pooled embeddings (no random crop of long inputs)
  device        every parameter and buffer, and the outputs, are on the requested device

Models that normalise their front end with training-split statistics (BYOL-A) and have no `norm_stats` in the
config get statistics of the check's own test signal (noted under the table). A model that cannot be built (e.g.
its weight file is absent) ends with the model's own message and exit status 1, without a traceback.

Python API: `check_model(config path, options, device, long_sec)` builds the model of a YAML; `check_ar(model,
device, long_sec)` checks a model already built (`create_model(...)`); both return a `CheckReport`.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from .errors import EvarError

LENGTHS_SEC = (0.2, 1.0, 10.0)
BATCH_LENGTHS_SEC = (0.2, 1.0, 3.3, 10.0)
SILENCE_SEC = (0.2, 1.0, 10.0)
REL_TOL = 1e-4
RATE_SPAN_SEC = 10.0  # the frame-rate check adds at least this much input (and at least RATE_MIN_HOPS hops)
RATE_MIN_HOPS = 4


@dataclass
class CheckResult:
    """One check's outcome: passed (True also when skipped), and what was measured or what went wrong."""
    name: str
    passed: bool
    detail: str = ''
    skipped: bool = False

    @property
    def status(self) -> str:
        """'PASS', 'FAIL' or 'SKIP', as the table shows it."""
        return 'SKIP' if self.skipped else ('PASS' if self.passed else 'FAIL')


@dataclass
class CheckReport:
    """Every check of one model (`checks`, in order; `report['shapes']` picks one by name) and notes."""
    config: str
    device: str
    checks: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no check failed (skipped checks count as passed)."""
        return all(c.passed for c in self.checks)

    def __getitem__(self, name: str) -> CheckResult:
        """The check called `name` ('shapes', 'length 10s', ...); KeyError when there is none."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def table(self) -> str:
        """The report as printed by `python -m evar.check`: one row per check, the notes, and a verdict line."""
        width = max([len(c.name) for c in self.checks] + [5])
        lines = [f'{self.config} on {self.device}', f'{"check":<{width}}  stat  detail']
        lines += [f'{c.name:<{width}}  {c.status}  {c.detail}' for c in self.checks]
        lines += [f'note: {n}' for n in self.notes]
        failed = [c.name for c in self.checks if not c.passed]
        lines.append(f'FAILED: {", ".join(failed)}' if failed else 'all checks passed')
        return '\n'.join(lines)


def test_signal(seconds: float, sample_rate: int, seed: int) -> torch.Tensor:
    """Seeded noise plus a tone sweep (structure for the model to respond to), amplitude ~0.1."""
    n = max(1, int(round(seconds * sample_rate)))
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    f0 = 200.0 + 100.0 * seed
    sweep = torch.sin(2 * math.pi * (f0 * t + 40.0 * t * t)).float()
    return 0.05 * torch.randn(n, generator=g) + 0.05 * sweep


def padded_batch(lengths: list, sample_rate: int, device) -> tuple:
    """(waves [B, max length] zero-padded, lengths [B]) of `test_signal` clips of `lengths` samples (seeds 0, 1, ...)."""
    clips = [test_signal(n / sample_rate, sample_rate, seed=i) for i, n in enumerate(lengths)]
    wav = torch.zeros(len(clips), max(lengths))
    for i, c in enumerate(clips):
        wav[i, :len(c)] = c
    return wav.to(device), torch.tensor(lengths, device=device)


def declared_hop_sec(model) -> Optional[float]:
    """Seconds between output frames as the model declares it (`frame_hop_sec`), or None."""
    hop = model.frame_hop_sec
    return float(hop) if hop else None


def long_clip_sec(model) -> float:
    """Seconds of the determinism check's long clip: 2.5x the longest of 10 s, the model's `frame_window_sec` and
    every numeric `*_sec` field of its Params other than hops (chunk_sec, clip_sec, crop_sec, input_sec, ...), so
    the clip spans more than one window or chunk and a random crop of long inputs shows."""
    spans = [10.0, float(model.frame_window_sec or 0.0)]
    params = getattr(model, 'params', None)
    if dataclasses.is_dataclass(params):
        for f in dataclasses.fields(params):
            value = getattr(params, f.name)
            if f.name.endswith('_sec') and 'hop' not in f.name and isinstance(value, (int, float)) \
                    and not isinstance(value, bool):
                spans.append(float(value))
    return 2.5 * max(spans)


def _peak_memory(device: str) -> str:
    if str(device).startswith('cuda'):
        return f'peak GPU {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB'
    try:
        import resource

        return f'peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB'
    except ImportError:  # not on POSIX
        return ''


def _frames_problems(frames, batch: int) -> list:
    x, mask = frames.embeddings, frames.mask
    problems = []
    if x.dim() != 3 or x.shape[0] != batch:
        problems.append(f'embeddings shape {tuple(x.shape)}, expected [{batch}, T, D]')
    if tuple(mask.shape) != tuple(x.shape[:2]):
        problems.append(f'mask shape {tuple(mask.shape)} != embeddings [B, T] {tuple(x.shape[:2])}')
    if mask.dtype != torch.bool:
        problems.append(f'mask dtype {mask.dtype}, expected torch.bool')
    elif mask.dim() == 2 and not bool(mask.any(1).all()):
        problems.append('a clip has no valid frame')
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        problems.append('non-finite values in embeddings')
    return problems


def _check(report: CheckReport, name: str, fn: Callable) -> None:
    """Runs one check; an exception is that check's failure, and the other checks still run."""
    try:
        result = fn()
    except EvarError as e:
        result = CheckResult(name, False, f'EvarError: {e}')
    except Exception as e:  # a broken model must not stop the report
        result = CheckResult(name, False, f'{type(e).__name__}: {str(e)[:300]}')
    result.name = name
    report.checks.append(result)


def check_model(cfg_path, options: str = '', device: Optional[str] = None, long_sec: float = 600.0,
                progress: bool = False) -> CheckReport:
    """Builds the model of the YAML `cfg_path` (with `options`, 'key=value,...') and runs every check (`check_ar`).

    Raises:
        EvarError: the model cannot be built (bad config, absent weights).
    """
    from .config import load_config
    from .models import create_model

    cfg = load_config(cfg_path, options)
    return check_ar(create_model(cfg.audio_repr, cfg.params), device=device, long_sec=long_sec, label=str(cfg_path),
                    progress=progress)


def check_ar(model, device: Optional[str] = None, long_sec: float = 600.0, label: str = '',
             progress: bool = False) -> CheckReport:
    """Runs every check on a built model, moved to `device` (None: cuda when available) in eval mode.

    Args:
        model: an `AudioRepr`.
        device: 'cpu', 'cuda', ... or None.
        long_sec: length in seconds of the longest input (the `length <s>` check).
        progress: print each check's name to stderr as it starts.
        label: what the report's first line names (default: the model's class).

    Returns:
        The CheckReport; a check that raises is that check's failure, and the others still run.
    """
    from .embed.source import pick_device
    from .models.base import Frames, pool

    device = pick_device(device)
    model = model.to(device).eval()
    sr = model.sample_rate
    report = CheckReport(config=label or type(model).__name__, device=device)

    if model.needs_norm_stats and model.norm_mean is None:
        with torch.inference_mode():
            wav, lengths = padded_batch([int(10 * sr)], sr, device)
            mean, std = _stats(model, wav, lengths)
        model.set_norm_stats(mean, std)
        report.notes.append(f'norm_stats not in the config: using the test signal\'s ({mean:.3f}, {std:.3f})')

    def run(wav, lengths):
        with torch.inference_mode():
            frames = model(wav, lengths)
            if not isinstance(frames, Frames):
                raise TypeError(f'forward returned {type(frames).__name__}, expected Frames')
            return frames, pool(frames, model.pooling)

    def shapes():
        lens = [int(s * sr) for s in (1.0, 2.5, 1.7)]
        frames, pooled = run(*padded_batch(lens, sr, device))
        problems = _frames_problems(frames, len(lens))
        d = frames.embeddings.shape[-1]
        if tuple(pooled.shape) != (len(lens), d):
            problems.append(f'pooled shape {tuple(pooled.shape)}, expected [{len(lens)}, {d}]')
        if model.embedding_dim != d:
            problems.append(f'D {d} differs from the declared embedding_dim {model.embedding_dim}')
        detail = (f'frames {tuple(frames.embeddings.shape)}, mask {tuple(frames.mask.shape)}, pooled '
                  f'{tuple(pooled.shape)} ({model.pooling})')
        return CheckResult('', not problems, '; '.join(problems) or detail)

    def silence():
        lens = [max(1, int(round(s * sr))) for s in SILENCE_SEC]
        wav = torch.zeros(len(lens), max(lens), device=device)
        frames, pooled = run(wav, torch.tensor(lens, device=device))
        problems = _frames_problems(frames, len(lens))
        if not bool(torch.isfinite(pooled).all()):
            bad = [f'{s:g} s' for s, row in zip(SILENCE_SEC, pooled) if not bool(torch.isfinite(row).all())]
            problems.append(f'non-finite pooled embeddings of the silent clips of {", ".join(bad)}')
        return CheckResult('', not problems, '; '.join(problems) or
                           f'finite frames and pooled embeddings for silent clips of {list(SILENCE_SEC)} s')

    def frame_rate():
        hop = declared_hop_sec(model)
        if hop is None:
            return CheckResult('', True, 'skipped: the model declares no hop (set frame_hop_sec to check it)',
                               skipped=True)
        # Models whose frames are windows that must fit in the clip declare the window's span (OpenL3).
        window = float(model.frame_window_sec or 0.0)
        base_sec = max(10.0, window + 2 * hop)
        # The frames that k more hops of input add do not depend on how a model counts its first and last frames,
        # so this holds models of any hop to their declaration (a 10 s clip alone cannot tell a 30 s hop from 10 s).
        k = max(RATE_MIN_HOPS, math.ceil(RATE_SPAN_SEC / hop - 1e-9))
        crop = getattr(getattr(model, 'params', None), 'crop_sec', None)
        if crop:  # the model sees at most crop_sec of a clip (ATST's official central crop): measure within it
            base_sec = min(base_sec, crop / 2)
            k = min(k, int((crop - base_sec) / hop + 1e-9))
        n1 = int(round(base_sec * sr))
        n2 = n1 + int(round(k * hop * sr))
        counts = [int(run(*padded_batch([n], sr, device))[0].mask[0].sum()) for n in ((n1, n2) if k else (n1,))]
        expected = (base_sec - window) / hop + 1 if window else base_sec / hop
        count_ok = abs(counts[0] - expected) <= max(2.0, 0.02 * expected)
        if k:
            added = counts[1] - counts[0]
            rate_ok = abs(added - k) <= 1 + 0.02 * k
            detail = f'{added / ((n2 - n1) / sr):.2f} frames/s ({added} frames added by {(n2 - n1) / sr:g} s, '
        else:
            rate_ok = True
            detail = f'{counts[0] / base_sec:.2f} frames/s (input cropped to crop_sec {crop:g} s: count only, '
        detail += (f'{counts[0]} frames from {n1 / sr:g} s); declared hop {hop * 1000:g} ms -> {1 / hop:.2f} '
                   'frames/s')
        if not rate_ok:
            detail += f'; FAIL: expected {k} +- {1 + 0.02 * k:.2f} frames added'
        if not count_ok:
            detail += f'; FAIL: expected {expected:.1f} frames from {n1 / sr:g} s'
        return CheckResult('', rate_ok and count_ok, detail)

    def length(seconds):
        def fn():
            wav, lengths = padded_batch([max(1, int(round(seconds * sr)))], sr, device)
            if str(device).startswith('cuda'):
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            frames, pooled = run(wav, lengths)
            if str(device).startswith('cuda'):
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - t0
            problems = _frames_problems(frames, 1)
            if pooled.dim() != 2 or not bool(torch.isfinite(pooled).all()):
                problems.append(f'pooled {tuple(pooled.shape)} not [1, D] or not finite')
            detail = (f'{int(frames.mask.sum())} valid of {frames.embeddings.shape[1]} frames, D '
                      f'{frames.embeddings.shape[-1]}, {elapsed:.2f} s')
            if seconds > 10:
                detail += f', {seconds / max(elapsed, 1e-9):.0f}x real time, {_peak_memory(device)}'
            return CheckResult('', not problems, '; '.join(problems + [detail]))
        return fn

    batch_lens = [max(1, int(round(s * sr))) for s in BATCH_LENGTHS_SEC]

    def batch_single():
        wav, lengths = padded_batch(batch_lens, sr, device)
        _, batch = run(wav, lengths)
        worst, where = 0.0, ''
        for i, n in enumerate(batch_lens):
            _, single = run(wav[i:i + 1, :n], lengths[i:i + 1])
            err = float((batch[i] - single[0]).abs().max()) / max(float(single[0].abs().max()), 1e-8)
            if err > worst:
                worst, where = err, f' (clip of {n / sr:g} s)'
        return CheckResult('', worst <= REL_TOL, f'max relative difference {worst:.2e}{where}, tolerance {REL_TOL:g}; '
                                                 f'lengths {list(BATCH_LENGTHS_SEC)} s')

    def deterministic():
        clip_sec = long_clip_sec(model)
        batches = {f'batch of {list(BATCH_LENGTHS_SEC)} s': padded_batch(batch_lens, sr, device),
                   f'one clip of {clip_sec:g} s': padded_batch([int(round(clip_sec * sr))], sr, device)}
        differ = []
        for what, (wav, lengths) in batches.items():
            (fa, pa), (fb, pb) = run(wav, lengths), run(wav, lengths)
            same = (torch.equal(fa.embeddings, fb.embeddings) and torch.equal(fa.mask, fb.mask)
                    and torch.equal(pa, pb))
            if not same:
                diff = float((pa - pb).abs().max()) if pa.shape == pb.shape else float('nan')
                differ.append(f'{what}: two runs differ (pooled max difference {diff:.2e})')
        return CheckResult('', not differ, '; '.join(differ) or
                           f'identical frames and pooled embeddings: {", ".join(batches)}')

    def placement():
        want = torch.device(device)
        misplaced = [f'{kind} {name} on {t.device}'
                     for kind, items in (('parameter', model.named_parameters()), ('buffer', model.named_buffers()))
                     for name, t in items if not _same_device(t.device, want)]
        frames, pooled = run(*padded_batch(batch_lens[:2], sr, device))
        for name, t in (('embeddings', frames.embeddings), ('mask', frames.mask), ('pooled', pooled)):
            if not _same_device(t.device, want):
                misplaced.append(f'output {name} on {t.device}')
        n = sum(1 for _ in model.parameters()) + sum(1 for _ in model.buffers())
        more = f' (+{len(misplaced) - 6} more)' if len(misplaced) > 6 else ''
        return CheckResult('', not misplaced, '; '.join(misplaced[:6]) + more
                           if misplaced else f'{n} parameters/buffers and outputs on {device}')

    checks = [('shapes', shapes), ('silence', silence), ('frame_rate', frame_rate),
              *((f'length {seconds:g}s', length(seconds)) for seconds in (*LENGTHS_SEC, float(long_sec))),
              ('batch_single', batch_single), ('deterministic', deterministic), ('device', placement)]
    for i, (name, fn) in enumerate(checks, start=1):
        if progress:  # the long input can take minutes: say what runs
            print(f'[{i}/{len(checks)}] {name} ...', file=sys.stderr, flush=True)
        _check(report, name, fn)
    return report


def _stats(model, wav, lengths):
    from .models.base import stats_from_sums

    feats, feat_lengths = model.features(wav, lengths)
    return stats_from_sums(model.stat_sums(feats, feat_lengths).cpu())


def _same_device(have: torch.device, want: torch.device) -> bool:
    if have.type != want.type:
        return False
    if want.type == 'cuda':
        return (have.index or 0) == (want.index if want.index is not None else torch.cuda.current_device())
    return True


def main(argv=None) -> int:
    """The command line (see the module docstring); returns the exit status: 0 all passed, 1 a check failed.

    Raises:
        EvarError: bad arguments, or a model that cannot be built (one `Error:` line, exit status 1).
    """
    from .cli import ArgumentParser

    parser = ArgumentParser(prog='python -m evar.check', description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='model YAML, e.g. config/melspec.yaml')
    parser.add_argument('--options', default='', help="config overrides 'key=value,+new_key=value'")
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda when available)')
    parser.add_argument('--long_sec', type=float, default=600.0, help='length of the long input (default 600 s)')
    args = parser.parse_args(argv)
    report = check_model(args.config, args.options, args.device, args.long_sec, progress=True)
    print(report.table())
    return 0 if report.passed else 1


if __name__ == '__main__':
    from .cli import module_main

    module_main(main)
