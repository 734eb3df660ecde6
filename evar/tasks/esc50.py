"""ESC-50 (Piczak 2015): 2,000 five-second environmental recordings, 50 classes, 5 folds."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .base import Row, Task, task_table
from .layout import need, read_csv, resolve, to_int

HELP = """\
  esc50           meta/esc50.csv, audio/ -> category; fold 1..5
"""


def esc50(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """Rows (audio/<clip>, category, fold) from meta/esc50.csv."""
    path = need(root, 'meta/esc50.csv', 'the ESC-50 metadata CSV')
    rows = read_csv(path, ('filename', 'fold', 'category'), 'the ESC-50 metadata CSV')
    return resolve(root, [(f'audio/{r["filename"]}', r['category'], to_int(r['fold'], path)) for r in rows], path)


TASKS = task_table(
    Task('esc50', 5.0, folds=5, domain='environmental', build=esc50),
)
