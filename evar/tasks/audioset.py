"""AudioSet (Gemmeke et al. 2017): ten-second YouTube segments, 527 classes, multi-label; as20k and the full set."""

from __future__ import annotations

import csv
from functools import partial
from pathlib import Path
from typing import Optional

from ..errors import EvarError
from .base import Row, Task, task_table
from .layout import audio_files, join_labels, need, stem, warn

HELP = """\
  as20k           balanced_train_segments/, eval_segments/ and AudioSet's segment lists balanced_train_segments.csv,
                  eval_segments.csv in the root -> positive mids (comma-separated); train/test as in EVAR (no
                  valid). Only clips on disk are listed (files named <YTID>... or Y<YTID>...)
  as              as20k's, plus unbalanced_train_segments/ and unbalanced_train_segments.csv (-> train)
"""
AUDIOSET_CSV_URL = 'http://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/'
AUDIOSET_SPLITS = {'balanced_train_segments': 'train', 'unbalanced_train_segments': 'train', 'eval_segments': 'test'}


def _audioset_labels(path: Path) -> dict[str, str]:
    """YTID -> comma-separated mids, from a segment list (`# ` comment lines, then `YTID, start, end, "mids"`)."""
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith('#')]
    labels = {}
    for row in csv.reader(lines, skipinitialspace=True):
        if len(row) < 4:
            raise EvarError(f'{path}: expected rows "YTID, start_seconds, end_seconds, positive_labels", got {row}.')
        labels[row[0]] = join_labels(row[3])
    return labels


def audioset(root: Path, split_file: Optional[Path] = None, subsets: tuple = ()) -> list[Row]:
    """AudioSet clips present on disk, as in EVAR: `<subset>/.../<YTID>...` (or `Y<YTID>...`) files matched to
    the subset's segment list; balanced/unbalanced train -> train, eval -> test."""
    rows = []
    for subset in subsets:
        need(root, subset, f'the folder of AudioSet\'s {subset} clips')
        path = need(root, f'{subset}.csv', f'AudioSet\'s segment list ({AUDIOSET_CSV_URL}{subset}.csv)')
        labels = _audioset_labels(path)
        unlisted = []
        for f in audio_files(root, subset):
            name = stem(f)
            ytid = name[:11] if name[:11] in labels else name[1:12] if name.startswith('Y') else None
            if ytid in labels:
                rows.append((f, labels[ytid], AUDIOSET_SPLITS[subset]))
            else:
                unlisted.append(f)
        if unlisted:
            warn(f'{len(unlisted)} files under {subset}/ are not in {path.name} and were left out '
                 f'(first: {unlisted[0]}).')
    return rows


TASKS = task_table(
    Task('as20k', 10.0, data_folder='as', metric='mAP', domain='general',
         build=partial(audioset, subsets=('balanced_train_segments', 'eval_segments'))),
    Task('as', 10.0, data_folder='as', metric='mAP', balanced=True, domain='general',
         build=partial(audioset, subsets=('balanced_train_segments', 'unbalanced_train_segments', 'eval_segments'))),
)
