"""RAVDESS speech (Livingstone and Russo 2018): 1,440 sentences by 24 actors in 8 emotions; emotion and gender."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Iterable, Optional

from ..errors import EvarError
from .base import Row, Task, task_table
from .layout import audio_files, stem

HELP = """\
  ravdess         Actor_NN/03-01-EE-II-SS-RR-AA.<ext> (audio-only speech) -> emotion name; actor-independent:
                  actors paired (1,2),(3,4),...; with P pairs, test = the last max(1, round(P/6)) pairs, valid =
                  as many pairs before them, train = the rest
  ravdess_gender  same -> male (odd actor) / female; same split
"""
_RAVDESS = re.compile(r'(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$')
RAVDESS_EMOTIONS = {'01': 'neutral', '02': 'calm', '03': 'happy', '04': 'sad', '05': 'angry', '06': 'fearful',
                    '07': 'disgust', '08': 'surprised'}


def actor_pair_splits(actors: Iterable[int]) -> dict[int, str]:
    """Actor -> split: pairs (1,2),(3,4),...; with P pairs, test = last max(1, round(P/6)) pairs, valid = as
    many before them, train = the rest. Fewer than 3 pairs raise EvarError."""
    pairs = sorted({(a + 1) // 2 for a in actors})
    n = max(1, round(len(pairs) / 6))
    if len(pairs) < 2 * n + 1:
        raise EvarError(f'An actor-independent split needs at least 3 actor pairs; found actors {sorted(actors)}.')
    split_of_pair = {p: 'test' if i >= len(pairs) - n else 'valid' if i >= len(pairs) - 2 * n else 'train'
                     for i, p in enumerate(pairs)}
    return {a: split_of_pair[(a + 1) // 2] for a in actors}


def ravdess(root: Path, split_file: Optional[Path] = None, gender: bool = False) -> list[Row]:
    """RAVDESS speech (audio-only modality 03, vocal channel 01) `03-01-EE-II-SS-RR-AA`, actor-independent split."""
    clips = [(f, m) for f in audio_files(root) for m in [_RAVDESS.match(stem(f))]
             if m and m[1] == '03' and m[2] == '01' and m[3] in RAVDESS_EMOTIONS]
    if not clips:
        return []
    splits = actor_pair_splits({int(m[7]) for _, m in clips})
    return [(f, ('male' if int(m[7]) % 2 else 'female') if gender else RAVDESS_EMOTIONS[m[3]], splits[int(m[7])])
            for f, m in clips]


TASKS = task_table(
    Task('ravdess', 4.0, domain='speech', build=ravdess),  # emotion
    Task('ravdess_gender', 4.0, data_folder='ravdess', domain='speech', build=partial(ravdess, gender=True)),
)
