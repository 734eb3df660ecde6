"""Convert a dataset folder to mono audio at one sample rate, keeping the relative paths.

    python prepare_wav.py SRC DST SAMPLE_RATE [--workers N] [--quality VHQ] [--subtype PCM_16] [--suffixes wav,flac]

- Output path = DST / (path relative to SRC). `.wav` and `.flac` files keep their name; every other input
  (ogg, mp3, aiff, ...) is written as `.flac`, so lossy inputs are not re-encoded lossy. The evar loader finds a
  file whose extension changed.
- Channels are averaged to mono, resampled with soxr, clipped to [-1, 1] and written with soundfile.
- Resumable: an output that exists is finished (every write goes to a temporary file beside it, renamed on
  success), so it is skipped; temporary files left by a killed run are removed at the start.
- A file that cannot be decoded is reported with its reason at the end; the others are still converted.
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Union

from .audio import AUDIO_SUFFIXES, load_audio
from .errors import EvarError
from .fileio import atomic_path

KEPT_SUFFIXES = {'.wav': 'WAV', '.flac': 'FLAC'}  # written in their own format; all others become FLAC
QUALITIES = ('QQ', 'LQ', 'MQ', 'HQ', 'VHQ')  # soxr's quality recipes, quick to very high
# Tail of this tool's temporary file names: `.<name>.<random>` + TMP_TAG (see fileio.atomic_path).
_TMP_SUFFIX = '.prepare_wav.part'
TMP_TAG = _TMP_SUFFIX + '.tmp'


@dataclass
class PrepareSummary:
    """What one run did. `failed` lists (source path, reason)."""
    src: Path
    dst: Path
    sample_rate: int
    converted: int = 0
    skipped: int = 0
    failed: list = field(default_factory=list)
    stale_removed: int = 0  # temporary files of an interrupted earlier run, removed

    @property
    def ok(self) -> bool:
        """Whether every file was converted or skipped (none failed)."""
        return not self.failed

    def report(self) -> str:
        """The run's summary for people: each failure with its reason, stale files removed, the counts."""
        lines = []
        if self.failed:
            lines.append(f'{len(self.failed)} file(s) could not be converted:')
            lines += [f'  {path}: {reason}' for path, reason in self.failed]
        if self.stale_removed:
            lines.append(f'Removed {self.stale_removed} temporary file(s) left by an interrupted run.')
        lines.append(f'converted {self.converted}, skipped {self.skipped} (already done), failed {len(self.failed)}'
                     f' -> {self.dst} at {self.sample_rate} Hz')
        return '\n'.join(lines)


def output_relpath(rel: Path) -> Path:
    """The output's path relative to DST: `.wav`/`.flac` are kept, any other suffix becomes `.flac`."""
    return rel if rel.suffix.lower() in KEPT_SUFFIXES else rel.with_suffix('.flac')


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool):
        raise EvarError(f'{what} must be a positive integer, got {value!r}.')
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or value <= 0:
        raise EvarError(f'{what} must be a positive integer, got {value!r}.')
    return value


def _suffix_set(suffixes) -> tuple:
    if suffixes is None:
        return AUDIO_SUFFIXES
    items = suffixes.split(',') if isinstance(suffixes, str) else list(suffixes)
    out = tuple(sorted({'.' + str(s).strip().lstrip('.').lower() for s in items if str(s).strip().lstrip('.')}))
    if not out:
        raise EvarError(f'--suffixes must name at least one file suffix (e.g. wav,flac), got {suffixes!r}.')
    unreadable = [s for s in out if s not in AUDIO_SUFFIXES]
    if unreadable:
        raise EvarError(f'--suffixes: evar cannot read {", ".join(unreadable)} files; audio suffixes are '
                        f'{", ".join(AUDIO_SUFFIXES)}.')
    return out


def find_audio(src: Path, suffixes: Iterable[str], exclude: Optional[Path] = None) -> list:
    """Audio files under `src` (relative paths, sorted). Hidden files and `exclude` (a folder) are left out."""
    suffixes = tuple(suffixes)
    found, seen = [], set()
    for root, dirs, files in os.walk(src, followlinks=True):
        real = os.path.realpath(root)
        if real in seen or (exclude is not None and Path(real) == exclude):
            dirs[:] = []  # a symlink loop, or the destination inside the source
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        for name in files:
            if not name.startswith('.') and name.lower().endswith(suffixes):
                found.append((Path(root) / name).relative_to(src))
    return sorted(found)


def _remove_stale_temps(dst: Path) -> int:
    removed = 0
    if not dst.is_dir():
        return 0
    for root, _, files in os.walk(dst):
        for name in files:
            if name.startswith('.') and name.endswith(TMP_TAG):
                try:
                    os.unlink(os.path.join(root, name))
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def convert_file(src: Path, out: Path, sample_rate: int, quality: str = 'VHQ', subtype: str = 'PCM_16') -> None:
    """Reads `src` with evar's audio reader, writes mono audio at `sample_rate` Hz (soxr recipe `quality`,
    clipped to [-1, 1], soundfile `subtype`) to `out` atomically (never a partial `out`). An unreadable, empty or
    non-finite input raises EvarError naming it."""
    import numpy as np
    import soundfile as sf

    x, _ = load_audio(src, sample_rate, quality=quality)
    x = np.clip(x, -1.0, 1.0).astype(np.float32, copy=False)
    fmt = KEPT_SUFFIXES.get(out.suffix.lower(), 'FLAC')
    with atomic_path(out, suffix=_TMP_SUFFIX) as tmp:
        sf.write(str(tmp), x, sample_rate, subtype=subtype, format=fmt)


def _job(args) -> Optional[str]:
    """Worker: converts one file; returns None, or the reason it failed."""
    src, out, sample_rate, quality, subtype = args
    try:
        convert_file(src, out, sample_rate, quality, subtype)
        return None
    except EvarError as e:  # the reader's message names the file and the fault
        return str(e)
    except Exception as e:  # any write problem is reported per file, the run goes on
        reason = str(e).strip() or type(e).__name__
        return f'{type(e).__name__}: {reason}' if type(e).__name__ not in reason else reason


def prepare_wav(src: Union[str, Path], dst: Union[str, Path], sample_rate, workers: Optional[int] = None,
                quality: str = 'VHQ', subtype: str = 'PCM_16', suffixes=None, progress: bool = True
                ) -> PrepareSummary:
    """Converts every audio file under `src` to mono `sample_rate` audio under `dst` (same relative paths).

    workers: processes (default os.cpu_count(); 1 converts in this process). quality: soxr recipe, one of
    QQ/LQ/MQ/HQ/VHQ. subtype: soundfile subtype, PCM_16 (default), PCM_24 or FLOAT (FLOAT only for .wav
    outputs: FLAC stores integers). suffixes: which files count as audio (default AUDIO_SUFFIXES).
    """
    import soundfile as sf
    from tqdm import tqdm

    sample_rate = _positive_int(sample_rate, 'SAMPLE_RATE')
    workers = _positive_int(workers if workers is not None else (os.cpu_count() or 1), '--workers')
    quality = str(quality).upper()
    if quality not in QUALITIES:
        raise EvarError(f'--quality must be one of {", ".join(QUALITIES)}, got {quality!r}.')
    subtype = str(subtype).upper()
    if subtype not in sf.available_subtypes('WAV'):
        raise EvarError(f'--subtype {subtype!r} is not a soundfile subtype; use PCM_16, PCM_24 or FLOAT.')
    suffixes = _suffix_set(suffixes)

    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if not src.is_dir():
        raise EvarError(f'Source folder {src} does not exist (expected a folder of audio files).')
    src_real, dst_real = src.resolve(), dst.resolve()
    if src_real == dst_real:
        raise EvarError(f'Destination {dst} is the source folder; choose another folder (inputs are never '
                        'overwritten).')
    files = find_audio(src, suffixes, exclude=dst_real)
    if not files:
        raise EvarError(f'No audio files under {src} (looked for {", ".join(suffixes)}).')

    summary = PrepareSummary(src=src, dst=dst, sample_rate=sample_rate)
    # Several inputs that would land on one output (a.ogg and a.mp3 -> a.flac): none of them is converted.
    by_out = {}
    for rel in files:
        by_out.setdefault(output_relpath(rel), []).append(rel)
    for out_rel, rels in by_out.items():
        if len(rels) > 1:
            for rel in rels:
                others = ', '.join(str(r) for r in rels if r != rel)
                summary.failed.append((str(src / rel), f'its output {out_rel} would also be written from {others}'))
    plan = [(rels[0], out_rel) for out_rel, rels in by_out.items() if len(rels) == 1]

    formats = {KEPT_SUFFIXES.get(out_rel.suffix.lower(), 'FLAC') for _, out_rel in plan}
    for fmt in sorted(formats):
        if not sf.check_format(fmt, subtype):
            raise EvarError(f'--subtype {subtype} cannot be written to {fmt} files (outputs of .{fmt.lower()} '
                            + ('and all non-wav inputs' if fmt == 'FLAC' else 'inputs') + '); use PCM_16 or PCM_24.')

    summary.stale_removed = _remove_stale_temps(dst)
    jobs = []
    for rel, out_rel in plan:
        out = dst / out_rel
        if out.exists():
            summary.skipped += 1
        else:
            jobs.append((src / rel, out, sample_rate, quality, subtype))

    bar = tqdm(total=len(jobs), desc='prepare_wav', unit='file', disable=not progress or not jobs)

    def done(job, error):
        if error is None:
            summary.converted += 1
        else:
            summary.failed.append((str(job[0]), error))
        bar.update(1)

    try:
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                done(job, _job(job))
        else:
            _run_pool(jobs, min(workers, len(jobs)), done)
    finally:
        bar.close()
    summary.failed.sort()
    return summary


def _run_pool(jobs: list, workers: int, done) -> None:
    """Runs `_job` over `jobs` in processes, keeping a bounded number in flight (cheap on huge datasets)."""
    pending = {}
    it = iter(jobs)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        try:
            while True:
                while len(pending) < workers * 4:
                    job = next(it, None)
                    if job is None:
                        break
                    pending[pool.submit(_job, job)] = job
                if not pending:
                    break
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    done(pending.pop(fut), fut.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def main(src, dst, sample_rate, workers=None, quality='VHQ', subtype='PCM_16', suffixes=None) -> None:
    """Converts the audio files under SRC to mono SAMPLE_RATE audio under DST, keeping relative paths.

    Args:
        src: source dataset folder.
        dst: destination folder (created); files already there are skipped, so a run can be resumed.
        sample_rate: output sample rate in Hz, e.g. 16000.
        workers: parallel processes (default: the number of CPUs).
        quality: soxr resampling quality, QQ/LQ/MQ/HQ/VHQ.
        subtype: PCM_16 (default), PCM_24, or FLOAT (only when every output is .wav).
        suffixes: comma-separated audio suffixes to convert (default: wav,flac,ogg,mp3,aiff,...).
    """
    import sys

    summary = prepare_wav(src, dst, sample_rate, workers=workers, quality=quality, subtype=subtype,
                          suffixes=suffixes)
    lines = summary.report().splitlines()
    if summary.failed:  # failures on stderr, the counts on stdout
        print('\n'.join(lines[:len(summary.failed) + 1]), file=sys.stderr)
        lines = lines[len(summary.failed) + 1:]
    print('\n'.join(lines))
    if not summary.ok:
        raise SystemExit(1)
