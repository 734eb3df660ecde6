"""Fluent Speech Commands (Lugosch et al., Interspeech 2019): 30,043 English spoken commands to a smart-home
assistant by 97 speakers; X-ARES's task predicts the command's transcription (248 phrasings)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..split_names import SPLITS
from .base import Row, Task, task_table
from .layout import need, read_csv, resolve

HELP = """\
  fsc             data/{train,valid,test}_data.csv (columns path, transcription),
                  wavs/speakers/<speaker>/<clip>.wav -> transcription (248 phrases, X-ARES's label); the
                  publisher's speaker-disjoint CSVs give the split (77 / 10 / 10 speakers)
"""


def fluent_speech_commands(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """Rows (wavs/speakers/<speaker>/<clip>.wav, transcription, split) from data/<split>_data.csv.

    `root` is `fluent_speech_commands_dataset/`. The label is the whole transcription, as X-ARES uses it (the
    action/object/location slots are not used)."""
    entries = []
    for split in SPLITS:
        what = f'Fluent Speech Commands\' {split} list'
        path = need(root, f'data/{split}_data.csv', what)
        entries += [(r['path'], r['transcription'], split)
                    for r in read_csv(path, ('path', 'transcription'), what)]
    return resolve(root, entries, 'data/{train,valid,test}_data.csv')


TASKS = task_table(
    Task('fsc', 4.0, domain='speech', build=fluent_speech_commands),
)
