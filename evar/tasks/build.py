"""Writing a built-in task's metadata CSV with its builder, and making its audio usable under the work root."""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from pathlib import Path
from typing import Optional, Union

from ..audio import audio_sample_rate
from ..errors import EvarError
from ..fileio import atomic_write_text
from ..paths import default_work_root
from ..split_names import SPLITS
from . import BUILTIN_TASKS, families, family_module
from .base import Row, Task, rate_folder
from .layout import audio_files, warn


def buildable_tasks() -> list[str]:
    """The names of the built-in tasks that have a metadata builder, in registry order (imports every family)."""
    return [name for name, task in BUILTIN_TASKS.items() if task.build is not None]


def builders_help() -> str:
    """Each builder's layout help (what it reads under the dataset root -> label; split), in registry order."""
    return ''.join(getattr(family_module(family), 'HELP', '') for family in families())


def csv_text(rows: list[Row], third: str, second: str = 'label') -> str:
    """The metadata CSV text: header `file_name,<second>,<third>` and `rows`, '\\n' line ends, fields quoted as
    needed."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(['file_name', second, third])
    writer.writerows(rows)
    return out.getvalue()


def _rate_folder(root: Path, first: str) -> str:
    try:
        rate = audio_sample_rate(root / first)
    except EvarError as e:
        raise EvarError(f'{e} Pass --no_link and put the audio under <work_root>/<rate>/<folder> yourself.') from e
    return rate_folder(rate)


def link_audio(root: Path, dest: Path) -> str:
    """Makes `dest` a symlink to `root` unless something is already there; says what happened."""
    target = root.resolve()
    if os.path.lexists(dest):
        if dest.is_symlink() and Path(os.path.realpath(dest)) != target:
            return f'Kept existing {dest} -> {os.readlink(dest)} (not {target}: file names may not match)'
        return f'Kept existing {dest}'
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, dest, target_is_directory=True)
    return f'Linked {dest} -> {target}'


def _builtin_with_builder(task: str) -> Task:
    spec = BUILTIN_TASKS.get(task)
    if spec is None or spec.build is None:
        raise EvarError(f'No metadata builder for task {task!r}. Known builders: {", ".join(sorted(buildable_tasks()))}.')
    return spec


def _check_split_file(spec: Task, split_file: Optional[Path]) -> None:
    if split_file is None:
        if spec.split_file == 'required':
            raise EvarError(f'This task needs --split_file: {spec.split_file_help}')
        return
    if spec.split_file == 'none':
        takes = sorted(name for name, t in BUILTIN_TASKS.items() if t.split_file != 'none')
        raise EvarError(f'Task {spec.name} takes its split from the dataset\'s own files; --split_file is only for '
                        f'{", ".join(takes)}.')
    if not split_file.exists():
        raise EvarError(f'Split file {split_file} does not exist.')


def _warn_missing_folds(spec: Task, rows: list[Row], root: Path) -> None:
    """A cross-validated task whose dataset lacks whole folds (a partial download) says which."""
    present = sorted({r[2] for r in rows})
    missing = [k for k in range(1, spec.folds + 1) if k not in present]
    if missing:
        warn(f'{spec.name} has {spec.folds} folds but no clip under {root} is in fold(s) '
             f'{", ".join(map(str, missing))} (a partial download?); the CSV holds fold(s) '
             f'{", ".join(map(str, present))} only.')


def make_metadata(task: str, dataset_root: Union[str, Path], work_root: Optional[Union[str, Path]] = None,
                  out: Optional[Union[str, Path]] = None, split_file: Optional[Union[str, Path]] = None,
                  link: bool = True) -> Path:
    """Writes `task`'s metadata CSV from `dataset_root`, links the audio under the work root; returns the CSV path.

    work_root: default `$EVAR_WORK` or `work`. out: the CSV path (default `<work_root>/metadata/<task>.csv`).
    split_file: for the tasks whose split the publisher does not ship. link: symlink
    `<work_root>/<rate>/<folder>` to the dataset root unless something is there. Bad input (unknown task, no
    dataset folder, a split file the task does not take or needs, nothing found) raises EvarError before
    anything is written.
    """
    spec = _builtin_with_builder(task)
    work_root = Path(work_root) if work_root is not None else default_work_root()
    root = Path(dataset_root).expanduser()
    if not root.is_dir():
        raise EvarError(f'Dataset root {root} is not a folder.')
    split_file = Path(split_file).expanduser() if split_file is not None else None
    _check_split_file(spec, split_file)
    if spec.writes_audio:
        first = next(iter(audio_files(root)), None)
        if first is None:
            raise EvarError(f'No {task} audio found under {root}.')
        out_dir = work_root / _rate_folder(root, first) / spec.folder
        if out_dir.is_symlink():
            raise EvarError(f'{out_dir} is a symlink; {task} writes its segments there. Remove it first.')
        rows = sorted(spec.build(root, split_file, out_dir=out_dir), key=lambda r: r[0])
        link = False
        print(f'Wrote {len(rows)} segments to {out_dir}')
    else:
        rows = sorted(spec.build(root, split_file), key=lambda r: r[0])
    if not rows:
        raise EvarError(f'No {task} audio found under {root}; see `python -m evar.metadata --help` for the '
                        'layout each task expects.')
    duplicated = [name for name, n in Counter(r[0] for r in rows).items() if n > 1]
    if duplicated and not spec.captions:  # a retrieval task lists a clip once per caption
        raise EvarError(f'{len(duplicated)} files appear twice in the {task} lists (first: {duplicated[0]}).')
    third = 'fold' if spec.folds > 1 else 'split'
    if spec.folds > 1:
        _warn_missing_folds(spec, rows, root)
    dest = work_root / _rate_folder(root, rows[0][0]) / spec.folder if link else None
    path = Path(out) if out is not None else spec.metadata_path(work_root)
    atomic_write_text(path, csv_text(rows, third, 'caption' if spec.captions else 'label'))
    counts = Counter(r[2] for r in rows)
    order = sorted(counts, key=lambda k: (SPLITS.index(k) if k in SPLITS else len(SPLITS), k))
    parts = ', '.join(f'{third} {k}: {counts[k]}' for k in order)
    print(f'Wrote {path}: {len(rows)} clips, {len({r[1] for r in rows})} labels ({parts})')
    if dest is not None:
        print(link_audio(root, dest))
    return path
