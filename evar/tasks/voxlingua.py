"""VoxLingua107 (Valk & Alumäe, SLT 2021): YouTube speech segments in 107 languages; X-ARES's VoxLingua33 task
identifies the language among the 33 that the dataset's development set covers."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import EvarError
from .base import Row, Task, task_table
from .layout import apply_splits, audio_files, load_split_file, need, warn

HELP = """\
  voxlingua33     <lang>/<clip>.wav (VoxLingua107's per-language training zips, unpacked side by side),
                  dev/<lang>/<clip>.wav (its development set) -> language code, for the development set's 33
                  languages; training clips = train, development set = test (valid is carved from train).
                  Optional --split_file (file_name,split CSV): only the clips it lists, in its splits (e.g. a
                  training subset: VoxLingua107's training data totals 6,628 hours over its 107 languages)
"""
VOXLINGUA_DEV_LANGUAGES = 33  # the published development set: 1,609 segments in 33 languages


def voxlingua33(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """Rows (<lang>/<clip>.wav, lang, 'train') for the training clips of the languages present in dev/, and
    (dev/<lang>/<clip>.wav, lang, 'test') for the development set; with `split_file` (a file_name,split CSV or a
    folder of {train,valid,test}.txt lists), only the clips it lists, in its splits.

    X-ARES trains on a subset of these training clips and uses the development set as both its validation and its
    test set; evar keeps the development set for testing only (the heads carve validation data from train), so no
    choice is made on the test clips.

    Raises:
        EvarError: a missing dev/ folder, or no training clip for one of its languages (named).
    """
    dev = need(root, 'dev', 'VoxLingua107\'s development set (dev/<lang>/<clip>.wav)')
    languages = sorted(p.name for p in dev.iterdir() if p.is_dir() and not p.name.startswith('.'))
    if len(languages) != VOXLINGUA_DEV_LANGUAGES:
        warn(f'{dev} holds {len(languages)} language folders; the published development set has '
             f'{VOXLINGUA_DEV_LANGUAGES} (the task is defined on those).')
    rows = []
    for lang in languages:
        train = audio_files(root, lang)
        if not train:
            raise EvarError(f'Missing {root / lang}: expected VoxLingua107\'s training clips of language {lang!r} '
                            f'(its {lang}.zip unpacked under {root}), as dev/{lang}/ is present.')
        rows += [(rel, lang, 'train') for rel in train]
        rows += [(rel, lang, 'test') for rel in audio_files(root, f'dev/{lang}')]
    if split_file is not None:
        return apply_splits([(rel, lang) for rel, lang, _ in rows], load_split_file(split_file))
    return rows


TASKS = task_table(
    Task('voxlingua33', 10.0, domain='speech', build=voxlingua33, split_file='optional'),
)
