"""Free Spoken Digit Dataset (Jackson et al.): 3,000 recordings of the digits 0-9 by 6 speakers, at 8 kHz."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Optional

from .base import Row, Task, task_table
from .layout import audio_files, stem

HELP = """\
  fsdd            {digit}_{speaker}_{index}.<ext> (root: the fsdd folder or its recordings/) -> digit; official
                  split: index 0-4 test, the rest train
  fsdd_speaker    same -> speaker; same split
"""
_FSDD = re.compile(r'(\d)_([^_]+)_(\d+)$')


def fsdd(root: Path, split_file: Optional[Path] = None, label: str = 'digit') -> list[Row]:
    """Free Spoken Digit Dataset `{digit}_{speaker}_{index}`: official split, index 0-4 test, the rest train."""
    rows = []
    for f in audio_files(root):
        m = _FSDD.match(stem(f))
        if m:
            rows.append((f, m[1] if label == 'digit' else m[2], 'test' if int(m[3]) < 5 else 'train'))
    return rows


TASKS = task_table(
    Task('fsdd', 1.0, domain='speech', build=fsdd),  # digit
    Task('fsdd_speaker', 1.0, data_folder='fsdd', domain='speech', build=partial(fsdd, label='speaker')),
)
