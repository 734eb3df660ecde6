"""VocalImitationSet v1.1.3 (Kim et al., DCASE 2018): crowd-sourced vocal imitations of 302 reference recordings
from Freesound, curated on the AudioSet ontology; the task names the reference an imitation imitates (302 classes),
as HEAR and X-ARES evaluate it (3-fold cross-validation)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import EvarError
from .base import Row, Task, task_table
from .layout import Finder, apply_splits, need, report_missing, stem
from .libricount import read_fold_file

HELP = """\
  vocal_imitation vocal_imitations.txt (tab-separated: imitation_filename, reference_filename, included),
                  vocal_imitations/included/<imitation> -> the imitated reference recording (its file name
                  without extension; 302 classes); included imitations only. NEEDS --split_file: file_name,fold
                  (1..3), as below
"""
VOCAL_IMITATION_FOLDS = 3
VOCAL_IMITATION_NEED = ('VocalImitationSet publishes no split. Pass a CSV with columns file_name,fold (fold 1..3, '
                        'one row per included imitation) as --split_file. The suites\' folds exist only inside their '
                        'preprocessed archives: X-ARES\'s are the members of vocal_imitations_fold00..02 (Zenodo '
                        'record 14862060; fold00 = fold 1), HEAR 2021\'s the fold00..fold02 lists of its '
                        'vocal_imitation-v1.1.3 task (file names slugified).')
_TRUE = ('1', 'true', 'yes')


def vocal_imitation(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """Rows (vocal_imitations/included/<imitation>, reference name, fold) for the included imitations that the
    fold file lists; the label is `reference_filename` without its extension.

    Raises:
        EvarError: no split file; a missing vocal_imitations.txt or one without the three columns (named).
    """
    if split_file is None:
        raise EvarError(f'vocal_imitation needs --split_file: {VOCAL_IMITATION_NEED}')
    path = need(root, 'vocal_imitations.txt', 'VocalImitationSet\'s imitation list (tab-separated, columns '
                'imitation_filename, reference_filename, included)')
    lines = [line.split('\t') for line in path.read_text(encoding='utf-8-sig').splitlines() if line.strip()]
    header = [c.strip() for c in lines[0]] if lines else []
    columns = ('imitation_filename', 'reference_filename', 'included')
    missing = [c for c in columns if c not in header]
    if missing:
        raise EvarError(f'{path} lacks the column(s) {missing}: expected VocalImitationSet\'s tab-separated '
                        f'imitation list with columns {list(columns)} (found {header}).')
    at = {c: header.index(c) for c in columns}
    finder = Finder(root)
    labeled, absent = [], []
    for fields in lines[1:]:
        fields = [f.strip() for f in fields] + [''] * (len(header) - len(fields))
        if fields[at['included']].lower() not in _TRUE:
            continue
        rel = f'vocal_imitations/included/{fields[at["imitation_filename"]]}'
        found = finder.find(rel)
        if found is None:
            absent.append(rel)
        else:
            labeled.append((found, stem(fields[at['reference_filename']])))
    labeled = report_missing(labeled, absent, path, root)
    return apply_splits(labeled, read_fold_file(split_file, VOCAL_IMITATION_FOLDS))


TASKS = task_table(
    Task('vocal_imitation', 11.26, folds=VOCAL_IMITATION_FOLDS, domain='speech', build=vocal_imitation,
         split_file='required', split_file_help=VOCAL_IMITATION_NEED),
)
