"""Clotho (Drossos et al., ICASSP 2020): 15-30 s Freesound clips with five captions each, for audio-text retrieval."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .base import Row, Task, task_table
from .layout import need, read_csv, resolve

HELP = """\
  clotho          clotho_captions_{development,validation,evaluation}.csv, {development,validation,evaluation}/
                  -> one row per caption (caption_1..caption_5); train/valid/test
"""
# Clotho's subsets, their audio folders and evar's split names.
CLOTHO_SPLITS = (('development', 'train'), ('validation', 'valid'), ('evaluation', 'test'))


def clotho(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """Rows (<subset>/<file_name>, caption, split), one per caption, from the three caption CSVs (columns file_name,
    caption_1..caption_5); empty captions are left out. Every subset's CSV must be there."""
    rows = []
    for subset, split in CLOTHO_SPLITS:
        path = need(root, f'clotho_captions_{subset}.csv', f'the Clotho {subset} caption CSV')
        columns = ('file_name', *(f'caption_{i}' for i in range(1, 6)))
        entries = [(f'{subset}/{r["file_name"]}', r[c], split) for r in read_csv(path, columns, 'a Clotho caption CSV')
                   for c in columns[1:] if r[c]]
        rows += resolve(root, entries, path)
    return rows


TASKS = task_table(
    Task('clotho', 30.0, domain='general', build=clotho, captions=True),
)
