"""VoxCeleb1 (Nagrani et al. 2017): utterances of 1,251 celebrities from YouTube; speaker identification."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import EvarError
from ..split_names import SPLITS
from .base import Row, Task, task_table
from .layout import first_existing, resolve

HELP = """\
  vc1             wav/<id>/<video>/<n>.wav, iden_split.txt (in the root or meta/, or given as --split_file) ->
                  speaker id; 1/2/3 = train/valid/test
"""


def vc1(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """Rows ([wav/]<id>/<video>/<n>.wav, speaker id, split) from iden_split.txt (1/2/3 = train/valid/test)."""
    if split_file is not None:
        path = split_file / 'iden_split.txt' if split_file.is_dir() else split_file
        if not path.is_file():
            raise EvarError(f'Missing {path}: expected VoxCeleb1\'s iden_split.txt.')
    else:
        path = first_existing(root, ('iden_split.txt', 'meta/iden_split.txt'),
                              'VoxCeleb1\'s identification split iden_split.txt ("1|2|3 idNNNNN/<video>/<n>.wav" '
                              'a line; https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/iden_split.txt); '
                              'or give its path with --split_file')
    prefix = 'wav/' if (root / 'wav').is_dir() else ''
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[0] not in ('1', '2', '3'):
            raise EvarError(f'{path} line {number}: expected "<1|2|3> <id>/<video>/<n>.wav", got {line!r}.')
        entries.append((prefix + parts[1], parts[1].split('/')[0], SPLITS[int(parts[0]) - 1]))
    return resolve(root, entries, path)


TASKS = task_table(
    Task('vc1', 8.2, domain='speech', build=vc1, split_file='optional'),
)
