"""FSDKaggle2018 (Fonseca et al., DCASE 2018 task 2): 11,073 Freesound clips of 41 AudioSet-ontology classes
(sound events, human sounds, musical instruments), one label each."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .base import Row, Task, task_table
from .layout import need, read_csv, resolve

HELP = """\
  fsdkaggle2018   FSDKaggle2018.meta/{train_post_competition.csv, test_post_competition_scoring_clips.csv}
                  (columns fname, label), FSDKaggle2018.audio_{train,test}/ -> label (41 classes); train / test
                  (the 1,600 scored test clips; valid is carved from train)
"""
FSDKAGGLE2018_LISTS = (('train', 'train_post_competition.csv', 'FSDKaggle2018.audio_train'),
                       ('test', 'test_post_competition_scoring_clips.csv', 'FSDKaggle2018.audio_test'))


def fsdkaggle2018(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """Rows (FSDKaggle2018.audio_<split>/<fname>, label, split) from the post-competition lists.

    X-ARES tests on the scored test clips and also selects on them; evar tests on them only (the heads carve
    validation data from train). Both manually verified and unverified training labels are kept, as in X-ARES."""
    entries = []
    for split, name, folder in FSDKAGGLE2018_LISTS:
        what = f'FSDKaggle2018\'s {split} list'
        path = need(root, f'FSDKaggle2018.meta/{name}', what)
        entries += [(f'{folder}/{r["fname"]}', r['label'], split) for r in read_csv(path, ('fname', 'label'), what)]
    return resolve(root, entries, 'FSDKaggle2018.meta/*.csv')


TASKS = task_table(
    # Clips last 0.3 to 30 s; 10 s, AudioSet's clip length, holds most of them whole.
    Task('fsdkaggle2018', 10.0, domain='general', build=fsdkaggle2018),
)
