"""RAVDESS speech (Livingstone and Russo 2018): 1,440 sentences by 24 actors in 8 emotions; emotion and gender."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Optional

from ..errors import EvarError
from .base import Row, Task, task_table
from .layout import audio_files, stem

HELP = """\
  ravdess         Actor_NN/03-01-EE-II-SS-RR-AA.<ext> (audio-only speech) -> emotion name; actor-independent:
                  actors paired (1,2),(3,4),...; with P pairs, test = the last max(1, round(P/6)) pairs, valid =
                  as many pairs before them, train = the rest
  ravdess_gender  same -> male (odd actor) / female (even); 12-fold actor-independent cross-validation: fold k
                  = actors 2k-1 (male) and 2k (female), each fold tested once and trained on the others (10 %
                  carved for validation, stratified and seeded); the score is the mean over folds
"""
_RAVDESS = re.compile(r'(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$')
RAVDESS_EMOTIONS = {'01': 'neutral', '02': 'calm', '03': 'happy', '04': 'sad', '05': 'angry', '06': 'fearful',
                    '07': 'disgust', '08': 'surprised'}
RAVDESS_ACTORS = 24  # actors 01-24; odd numbers are male, even female


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


def actor_pair_folds(actors: Iterable[int], root: Path) -> dict[int, int]:
    """Actor -> fold of an actor-independent cross-validation: fold k holds actors 2k-1 (male) and 2k (female), so
    each fold's test side has one speaker of each gender and no actor is in two folds; folds 1..12 for the full
    dataset, the pairs present for a partial copy.

    Raises:
        EvarError: naming `root`, an actor number outside 1-24, a pair with only one of its actors (its fold would
            test one gender only), or fewer than two pairs (nothing left to train on).
    """
    actors = sorted(set(actors))
    outside = [a for a in actors if not 1 <= a <= RAVDESS_ACTORS]
    if outside:
        raise EvarError(f'RAVDESS under {root}: actor number(s) {outside} are not RAVDESS actors (01-{RAVDESS_ACTORS}).')
    lone = [a for a in actors if (a + 1 if a % 2 else a - 1) not in actors]
    if lone:
        raise EvarError(f'RAVDESS under {root}: actor(s) {lone} lack their pair partner (actors 2k-1 and 2k form fold '
                        'k, one male and one female); add the missing actor folder(s) or remove the lone one(s).')
    if len(actors) < 4:
        raise EvarError(f'RAVDESS under {root}: cross-validation over actor pairs needs at least 2 pairs; found actors '
                        f'{actors}.')
    return {a: (a + 1) // 2 for a in actors}


def _speech_clips(root: Path) -> list[tuple[str, str, int]]:
    """(file, emotion name, actor) of each audio-only speech clip (modality 03, vocal channel 01) under `root`."""
    return [(f, RAVDESS_EMOTIONS[m[3]], int(m[7])) for f in audio_files(root) for m in [_RAVDESS.match(stem(f))]
            if m and m[1] == '03' and m[2] == '01' and m[3] in RAVDESS_EMOTIONS]


def ravdess(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """RAVDESS speech `03-01-EE-II-SS-RR-AA` -> emotion, actor-independent train/valid/test (`actor_pair_splits`)."""
    clips = _speech_clips(root)
    if not clips:
        return []
    splits = actor_pair_splits({actor for _, _, actor in clips})
    return [(f, emotion, splits[actor]) for f, emotion, actor in clips]


def ravdess_gender(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """RAVDESS speech `03-01-EE-II-SS-RR-AA` -> 'male' (odd actor) / 'female' (even actor), with a `fold` per clip:
    fold k = actors 2k-1 and 2k (`actor_pair_folds`). A fixed split would test on one actor per class, whose voice
    alone would set the score; cross-validation tests every actor once and reports the mean over folds."""
    clips = _speech_clips(root)
    if not clips:
        return []
    folds = actor_pair_folds({actor for _, _, actor in clips}, root)
    return [(f, 'male' if actor % 2 else 'female', folds[actor]) for f, _, actor in clips]


TASKS = task_table(
    Task('ravdess', 4.0, domain='speech', build=ravdess),  # emotion
    # Leave-one-actor-pair-out over the 12 pairs of the full dataset (see ravdess_gender).
    Task('ravdess_gender', 4.0, folds=RAVDESS_ACTORS // 2, data_folder='ravdess', domain='speech',
         build=ravdess_gender),
)
