"""Surge synthesizer notes (HEAR 2021's pitch set, as EVAR uses it): one note per clip, many presets; the note."""

from __future__ import annotations

from pathlib import Path

from .base import Row, Task, task_table
from .layout import apply_splits, audio_files, load_split_file, stem

HELP = """\
  surge           <tone>/<note>.ogg -> note (file stem). NEEDS --split_file: EVAR's
                  evar/predefined/dataset_surge_tone_splits.csv (tone,split) or a file_name,split CSV
"""
SURGE_NEED = ('the Surge dataset publishes no split. Pass EVAR\'s evar/predefined/dataset_surge_tone_splits.csv '
              '(columns tone,split) or a CSV with columns file_name,split as --split_file.')


def surge(root: Path, split_file: Path) -> list[Row]:
    """Rows (<tone>/<note>.<ext>, note, split of the clip or of its tone in the split file)."""
    splits = load_split_file(split_file, keys=('tone', 'file_name'))
    files = [f for f in audio_files(root) if f.count('/') == 1]
    return apply_splits(((f, stem(f)) for f in files), splits,
                        lookup=lambda f: splits.get(f) or splits.get(f.split('/')[0]))


TASKS = task_table(
    Task('surge', 4.0, domain='music', build=surge, split_file='required', split_file_help=SURGE_NEED),
)
