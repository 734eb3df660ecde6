"""UrbanSound8K (Salamon et al. 2014): 8,732 urban sound excerpts of at most 4 s, 10 classes, 10 folds."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .base import Row, Task, task_table
from .layout import need, read_csv, resolve, to_int

HELP = """\
  us8k            metadata/UrbanSound8K.csv, audio/fold<k>/ -> class; fold 1..10
"""


def us8k(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """Rows (audio/fold<k>/<clip>, class, fold k) from metadata/UrbanSound8K.csv."""
    path = need(root, 'metadata/UrbanSound8K.csv', 'the UrbanSound8K metadata CSV')
    rows = read_csv(path, ('slice_file_name', 'fold', 'class'), 'the UrbanSound8K metadata CSV')
    return resolve(root, [(f'audio/fold{to_int(r["fold"], path)}/{r["slice_file_name"]}', r['class'],
                           to_int(r['fold'], path)) for r in rows], path)


TASKS = task_table(
    Task('us8k', 4.0, folds=10, domain='environmental', build=us8k),
)
