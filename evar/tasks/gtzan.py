"""GTZAN (Tzanetakis and Cook 2002): 1,000 thirty-second music excerpts, 10 genres; the fault-filtered split."""

from __future__ import annotations

from pathlib import Path

from .base import Row, Task, task_table
from .layout import apply_splits, audio_files, load_split_file

HELP = """\
  gtzan           <genre>/<clip> -> genre. NEEDS --split_file: a folder holding the fault-filtered lists
                  train_filtered.txt, valid_filtered.txt, test_filtered.txt, published in
                  https://github.com/jongpillee/music_dataset_split (GTZAN_split/); unlisted clips are left out
"""
GTZAN_NEED = ('GTZAN\'s standard fault-filtered split is published only on the web: download train_filtered.txt, '
              'valid_filtered.txt and test_filtered.txt from https://github.com/jongpillee/music_dataset_split '
              '(folder GTZAN_split/) into one folder and pass that folder as --split_file.')


def gtzan(root: Path, split_file: Path) -> list[Row]:
    """Rows (<genre>/<clip>, genre, split) for the clips the split folder lists."""
    splits = load_split_file(split_file)
    files = [f for f in audio_files(root) if '/' in f]
    return apply_splits(((f, f.split('/')[-2]) for f in files), splits)


TASKS = task_table(
    Task('gtzan', 30.0, domain='music', build=gtzan, split_file='required', split_file_help=GTZAN_NEED),
)
