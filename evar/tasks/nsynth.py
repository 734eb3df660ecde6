"""NSynth (Engel et al. 2017): 305,979 four-second musical notes; instrument family, pitch and velocity tasks."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Optional

from ..errors import EvarError
from ..split_names import SPLITS
from .base import Row, Task, task_table
from .layout import need, resolve

HELP = """\
  nsynth          nsynth-{train,valid,test}/examples.json, nsynth-*/audio/ -> instrument_family_str; the folders
  nspitch         same -> pitch (MIDI number)
  nsvelocity      same -> velocity. Like EVAR, all 305,979 notes are kept: no pitch-range or other filtering.
"""


def nsynth(root: Path, split_file: Optional[Path] = None, column: str = 'instrument_family_str') -> list[Row]:
    """NSynth with EVAR's label choice `column`; all notes kept (EVAR filters none, pitch included)."""
    entries = []
    for split in SPLITS:
        path = need(root, f'nsynth-{split}/examples.json', f'NSynth\'s {split} note list (examples.json)')
        for note_id, note in json.loads(path.read_text()).items():
            if column not in note:
                raise EvarError(f'{path}: note {note_id} has no {column!r} field.')
            entries.append((f'nsynth-{split}/audio/{note_id}.wav', str(note[column]), split))
    return resolve(root, entries, 'nsynth-{train,valid,test}/examples.json')


TASKS = task_table(
    Task('nsynth', 4.0, domain='music', build=partial(nsynth, column='instrument_family_str')),
    Task('nspitch', 4.0, data_folder='nsynth', domain='music', build=partial(nsynth, column='pitch')),
    Task('nsvelocity', 4.0, data_folder='nsynth', domain='music', build=partial(nsynth, column='velocity')),
)
