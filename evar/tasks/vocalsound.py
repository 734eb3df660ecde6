"""VocalSound (Gong et al. 2022): 21,024 recordings of laughter, sighs, coughs, throat clearing, sneezes, sniffs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from ..errors import EvarError
from .base import Row, Task, task_table
from .layout import audio_files, first_existing, need, read_csv, report_missing, stem

HELP = """\
  vocalsound      datafiles/{tr,val,te}.json (or *_rev.json), class_labels_indices_vs.csv, audio anywhere below
                  -> display_name of the clip's mid; the json files give the split
"""


def vocalsound(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """Rows (clip, display name of its class, split) from datafiles/{tr,val,te}.json."""
    classes = need(root, 'class_labels_indices_vs.csv', 'VocalSound\'s class list (columns mid,display_name)')
    names = {r['mid']: r['display_name'] for r in read_csv(classes, ('mid', 'display_name'), 'VocalSound\'s class list')}
    by_stem: dict[str, str] = {}
    for f in audio_files(root):
        by_stem.setdefault(stem(f), f)
    rows, missing = [], []
    for split, short in (('train', 'tr'), ('valid', 'val'), ('test', 'te')):
        path = first_existing(root, (f'datafiles/{short}.json', f'datafiles/{short}_rev.json'),
                              f'VocalSound\'s {split} list ({{"data": [{{"wav", "labels"}}...]}})')
        for item in json.loads(path.read_text())['data']:
            if item['labels'] not in names:
                raise EvarError(f'{path}: label {item["labels"]!r} is not in {classes}.')
            clip = by_stem.get(stem(item['wav']))
            if clip is None:
                missing.append(item['wav'])
            else:
                rows.append((clip, names[item['labels']], split))
    return report_missing(rows, missing, 'datafiles/*.json', root)


TASKS = task_table(
    Task('vocalsound', 4.18, domain='speech', build=vocalsound),
)
