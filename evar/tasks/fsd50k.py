"""FSD50K (Fonseca et al. 2022): 51,197 Freesound clips, 200 AudioSet classes, multi-label."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .base import Row, Task, task_table
from .layout import join_labels, need, norm_split, read_csv, resolve

HELP = """\
  fsd50k          FSD50K.ground_truth/{dev,eval}.csv, FSD50K.{dev,eval}_audio/ -> labels (comma-separated);
                  dev.csv's train/val, eval = test
"""


def fsd50k(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """Rows (FSD50K.<dev|eval>_audio/<fname>, comma-separated labels, split): dev.csv's train/val, eval = test."""
    entries = []
    for name, audio in (('dev', 'FSD50K.dev_audio'), ('eval', 'FSD50K.eval_audio')):
        path = need(root, f'FSD50K.ground_truth/{name}.csv', f'FSD50K\'s {name} ground truth')
        columns = ('fname', 'labels', 'split') if name == 'dev' else ('fname', 'labels')
        for r in read_csv(path, columns, f'FSD50K\'s {name} ground truth'):
            split = norm_split(r['split'], path) if name == 'dev' else 'test'
            entries.append((f'{audio}/{r["fname"]}.wav', join_labels(r['labels']), split))
    return resolve(root, entries, 'FSD50K.ground_truth/{dev,eval}.csv')


TASKS = task_table(
    Task('fsd50k', 7.6358, metric='mAP', domain='general', build=fsd50k),
)
