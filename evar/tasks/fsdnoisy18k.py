"""FSDnoisy18k (Fonseca et al. 2019): 18,532 Freesound clips, 20 classes, mostly noisy labels."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

from .base import Row, Task, task_table
from .layout import need, read_csv, resolve

HELP = """\
  fsdnoisy18k     FSDnoisy18k.meta/{train,test}.csv, FSDnoisy18k.audio_{train,test}/ -> label; valid = a fixed
                  10% of train picked by a stable hash of the file name (EVAR draws a random 10%), test = test
"""


def fsdnoisy18k(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """Rows (FSDnoisy18k.audio_<train|test>/<fname>, label, split); valid is a fixed 10% of train."""
    meta = {}
    for name in ('train', 'test'):
        path = need(root, f'FSDnoisy18k.meta/{name}.csv', f'FSDnoisy18k\'s {name} metadata')
        meta[name] = read_csv(path, ('fname', 'label'), f'FSDnoisy18k\'s {name} metadata')
    # EVAR moves a random 10% of train to valid; a hash order makes the same choice on every run.
    ranked = sorted((r['fname'] for r in meta['train']), key=lambda n: (hashlib.sha1(n.encode()).hexdigest(), n))
    valid = set(ranked[:int(len(ranked) * 0.1)])
    entries = [(f'FSDnoisy18k.audio_train/{r["fname"]}', r['label'], 'valid' if r['fname'] in valid else 'train')
               for r in meta['train']]
    entries += [(f'FSDnoisy18k.audio_test/{r["fname"]}', r['label'], 'test') for r in meta['test']]
    return resolve(root, entries, 'FSDnoisy18k.meta/{train,test}.csv')


TASKS = task_table(
    Task('fsdnoisy18k', 8.25, domain='environmental', build=fsdnoisy18k),
)
