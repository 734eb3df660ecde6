"""CREMA-D (Cao et al. 2014): 7,442 acted sentences by 91 actors, six emotions; the actors' sex."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

from ..errors import EvarError
from .base import Row, Task, task_table
from .layout import apply_splits, audio_files, load_split_file, need, read_csv, stem

HELP = """\
  cremad          <actor>_<sentence>_<EMO>_<level>.<ext> anywhere below -> emotion code (ANG DIS FEA HAP NEU SAD).
                  NEEDS --split_file: EVAR's evar/metadata/cremad.csv (speaker-disjoint 70/10/20) or any
                  file_name,split CSV
  cremad_gender   same, plus VideoDemographics.csv (CREMA-D repository; in the root or its parent) -> Sex of the
                  actor. NEEDS --split_file as cremad
"""
_CREMAD = re.compile(r'(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$')
CREMAD_NEED = ('CREMA-D publishes no split. Pass a CSV with columns file_name,split, e.g. EVAR\'s '
               'evar/metadata/cremad.csv (speaker-disjoint 70/10/20 split following NOSS), as --split_file.')


def _cremad_sexes(root: Path) -> dict[str, str]:
    for folder in (root, root.parent):
        if (folder / 'VideoDemographics.csv').is_file():
            path = folder / 'VideoDemographics.csv'
            return {r['ActorID']: r['Sex'] for r in read_csv(path, ('ActorID', 'Sex'), 'CREMA-D\'s demographics')}
    need(root, 'VideoDemographics.csv', 'CREMA-D\'s actor demographics (columns ActorID,Sex), published in '
         'https://github.com/CheyneyComputerScience/CREMA-D beside AudioWAV/')
    return {}


def cremad(root: Path, split_file: Path, gender: bool = False) -> list[Row]:
    """Rows (clip, emotion code or the actor's Sex when `gender`, split from the split file)."""
    splits = load_split_file(split_file)
    clips = [(f, m) for f in audio_files(root) for m in [_CREMAD.match(stem(f))] if m]
    if not gender:
        return apply_splits(((f, m[3]) for f, m in clips), splits)
    sexes = _cremad_sexes(root)
    unknown = sorted({m[1] for _, m in clips} - set(sexes))
    if unknown:
        raise EvarError(f'VideoDemographics.csv has no Sex for actor(s) {unknown[:5]}.')
    return apply_splits(((f, sexes[m[1]]) for f, m in clips), splits)


TASKS = task_table(
    Task('cremad', 2.5, domain='speech', build=cremad, split_file='required', split_file_help=CREMAD_NEED),
    Task('cremad_gender', 2.5, data_folder='cremad', domain='speech', build=partial(cremad, gender=True),
         split_file='required', split_file_help=CREMAD_NEED),
)
