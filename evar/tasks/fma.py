"""FMA (Defferrard et al., ISMIR 2017), its `small` subset: 8,000 30-second track clips, 8 balanced top-level
genres, with the publisher's artist-aware training / validation / test split; X-ARES's genre task."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

from ..errors import EvarError
from .base import Row, Task, task_table
from .layout import need, resolve

HELP = """\
  fma_small       fma_metadata/tracks.csv, fma_small/<ddd>/<dddddd>.mp3 -> the track's genre_top (8 genres), for
                  the tracks whose set.subset is small; set.split training / validation / test = train / valid / test
"""
FMA_SPLITS = {'training': 'train', 'validation': 'valid', 'test': 'test'}
# tracks.csv has a two-level header (then a `track_id` row): the (level 0, level 1) names of the columns used.
FMA_COLUMNS = {'split': ('set', 'split'), 'subset': ('set', 'subset'), 'genre': ('track', 'genre_top')}


def fma_tracks(path: Path) -> list[tuple[int, str, str, str]]:
    """(track id, split, subset, top genre) of every track in FMA's tracks.csv.

    Raises:
        EvarError: a header without the set/split, set/subset and track/genre_top columns, or a track id that is
            not an integer (file named).
    """
    with open(path, newline='', encoding='utf-8') as f:
        reader = csv.reader(f)
        top, sub = next(reader, []), next(reader, [])
        next(reader, None)  # the `track_id` row
        pairs = list(zip(top, sub))
        missing = [p for p in FMA_COLUMNS.values() if p not in pairs]
        if missing:
            raise EvarError(f'{path} lacks the column(s) {missing}: expected FMA\'s tracks.csv with a two-level '
                            'header (e.g. set,split) followed by a track_id row.')
        at = {key: pairs.index(pair) for key, pair in FMA_COLUMNS.items()}
        tracks = []
        for row in reader:
            if not row:
                continue
            try:
                track = int(row[0])
            except ValueError:
                raise EvarError(f'{path}: expected an integer track id, got {row[0]!r}.') from None
            tracks.append((track, row[at['split']], row[at['subset']], row[at['genre']]))
    return tracks


def fma_small(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """Rows (fma_small/<ddd>/<dddddd>.mp3, genre_top, split) for the small subset's tracks (`root` holds
    fma_metadata/ and fma_small/); the folder is the first three digits of the six-digit track id."""
    path = need(root, 'fma_metadata/tracks.csv', 'FMA\'s track metadata (fma_metadata.zip)')
    entries = []
    for track, split, subset, genre in fma_tracks(path):
        if subset != 'small':
            continue
        if split not in FMA_SPLITS:
            raise EvarError(f'{path}: track {track} has split {split!r}; expected one of {list(FMA_SPLITS)}.')
        name = f'{track:06d}'
        entries.append((f'fma_small/{name[:3]}/{name}.mp3', genre, FMA_SPLITS[split]))
    return resolve(root, entries, path)


TASKS = task_table(
    Task('fma_small', 30.0, domain='music', build=fma_small),
)
