"""LibriCount (Stöter et al. 2018, LibriCount10-0dB): 5,720 five-second mixtures of 0 to 10 LibriSpeech talkers;
speaker-count estimation as an 11-class task, as HEAR and X-ARES evaluate it (5-fold cross-validation)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from ..errors import EvarError
from .base import Row, Task, task_table
from .layout import SplitFile, apply_splits, audio_files, read_csv, stem, to_int

HELP = """\
  libricount      <count>_<id>.wav anywhere below (LibriCount10-0dB's test/) -> number of talkers 0..10 (the file
                  name's prefix). NEEDS --split_file: a CSV file_name,fold (1..5), as below
"""
LIBRICOUNT_FOLDS = 5
LIBRICOUNT_NEED = ('LibriCount publishes no split. Pass a CSV with columns file_name,fold (fold 1..5, one row per '
                   'clip) as --split_file. The suites\' folds exist only inside their preprocessed archives: X-ARES\'s '
                   'are the members of libricount_fold00..04.tar (Zenodo record 14722478; fold00 = fold 1), HEAR '
                   '2021\'s the fold00..fold04 lists of its libricount-v1.0.0 task (file names slugified).')
_COUNT = re.compile(r'(\d+)_')


def read_fold_file(path: Path, folds: int) -> SplitFile:
    """A user's fold file: a CSV with columns file_name,fold (fold 1..`folds`); clips match by relative path or
    bare name, with or without their audio extension.

    Raises:
        EvarError: a missing column, or a fold that is not an integer in 1..`folds` (file and value named).
    """
    if path.is_dir():
        raise EvarError(f'Split file {path} is a folder: expected a CSV with columns file_name,fold.')
    entries = []
    for row in read_csv(path, ('file_name', 'fold'), 'a fold file'):
        fold = to_int(row['fold'], path)
        if not 1 <= fold <= folds:
            raise EvarError(f'{path}: fold must be 1..{folds}, got {fold} for {row["file_name"]!r}.')
        entries.append((row['file_name'], None, fold))
    return SplitFile(entries, path)


def libricount(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """Rows (<clip>.wav, talker count, fold) for the clips the fold file lists; the count is the file name's
    prefix (`3_<id>.wav` holds 3 talkers); each clip's JSON annotation is not needed.

    Raises:
        EvarError: no split file, no `<count>_<id>` audio under `root`, or a count outside 0..10 (file named).
    """
    if split_file is None:
        raise EvarError(f'libricount needs --split_file: {LIBRICOUNT_NEED}')
    labeled = []
    for rel in audio_files(root):
        match = _COUNT.match(stem(rel))
        if match is None:
            continue
        count = int(match.group(1))
        if count > 10:
            raise EvarError(f'{root / rel}: LibriCount10 mixes 0..10 talkers, the file name says {count}.')
        labeled.append((rel, str(count)))
    if not labeled:
        raise EvarError(f'No LibriCount audio (<count>_<id>.wav) under {root}: expected LibriCount10-0dB\'s '
                        'test/ folder or its parent.')
    return apply_splits(labeled, read_fold_file(split_file, LIBRICOUNT_FOLDS))


TASKS = task_table(
    Task('libricount', 5.0, folds=LIBRICOUNT_FOLDS, domain='speech', build=libricount, split_file='required',
         split_file_help=LIBRICOUNT_NEED),
)
