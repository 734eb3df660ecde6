"""Task metadata (CSV) and the audio dataset that feeds the models."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .audio import crop, load_audio, resolve_audio_path
from .errors import EvarError
from .split_names import SPLIT_ALIASES, SPLITS


@dataclass(frozen=True)
class Metadata:
    """A task's rows: file names, label lists, and either a split or a fold per row."""
    path: Path
    file_names: tuple
    labels: tuple  # each a tuple of label strings (one for single-label tasks)
    splits: Optional[tuple]  # 'train'/'valid'/'test' per row, or None for fold-based tasks
    folds: Optional[tuple]  # int per row, or None
    content_hash: str

    @property
    def multi_label(self) -> bool:
        """Whether any row lists more than one label."""
        return any(len(ls) > 1 for ls in self.labels)

    def __len__(self):
        return len(self.file_names)

    def split_indices(self, fold: int = 1) -> dict:
        """Row indices of train/valid/test. With folds, `fold` is the test fold and the rest is train."""
        if self.splits is not None:
            return {s: np.array([i for i, x in enumerate(self.splits) if x == s], dtype=np.int64) for s in SPLITS}
        folds = np.asarray(self.folds)
        return {'train': np.flatnonzero(folds != fold), 'valid': np.array([], dtype=np.int64),
                'test': np.flatnonzero(folds == fold)}


def read_csv_rows(path: Path, what: str, alternative: str) -> tuple:
    """(rows as dicts of the header's columns, sha256 hex of the file's bytes) of a UTF-8 CSV (BOM allowed).

    Raises:
        EvarError: the file is missing (`what` names it; the message says how to build it with `evar.metadata`,
            then `alternative`) or not a readable CSV.
    """
    if not path.is_file():
        raise EvarError(f'{what} {path} does not exist. Build it with `python -m evar.metadata <task> '
                        f'<dataset_root>`, {alternative}')
    raw = path.read_bytes()
    try:
        rows = list(csv.DictReader(raw.decode('utf-8-sig').splitlines()))
    except (UnicodeDecodeError, csv.Error) as e:
        raise EvarError(f'{what} {path} is not a readable CSV: {e}') from e
    return rows, hashlib.sha256(raw).hexdigest()


def read_metadata(path: Path, multi_label: bool = False) -> Metadata:
    """Reads a `file_name,label,split|fold` CSV.

    Args:
        path: the CSV.
        multi_label: the task's declared kind. True: a label field is a comma-separated list of labels. False: the
            field is one label, taken whole, commas included (AudioSet has "Child speech, kid speaking").

    Raises:
        EvarError: a missing or malformed file, and, for a single-label task, a field that lists labels that other
            rows use alone ("dog,cat" beside "dog" and "cat" rows): such a CSV is multi-label, and the task must
            declare it (metric: mAP) before anything is embedded.
    """
    path = Path(path)
    rows, content_hash = read_csv_rows(path, 'Metadata file', 'or point the task YAML at your CSV.')
    columns = set(rows[0].keys()) if rows else set()
    if not rows:
        raise EvarError(f'Metadata file {path} has no rows (expected columns file_name,label and split or fold).')
    missing = [c for c in ('file_name', 'label') if c not in columns]
    if missing or not ({'split', 'fold'} & columns):
        raise EvarError(f'Metadata file {path} has columns {sorted(c for c in columns if c)}; expected file_name, label '
                        'and either split (train/valid/test) or fold.')
    file_names, labels, splits, folds = [], [], [], []
    for line, row in enumerate(rows, start=2):
        name, label = (row.get('file_name') or '').strip(), (row.get('label') or '').strip()
        if not name or not label:
            raise EvarError(f'Metadata file {path}, line {line}: empty file_name or label.')
        file_names.append(name)
        labels.append(tuple(sorted({x.strip() for x in label.split(',') if x.strip()})) if multi_label else (label,))
        if 'split' in columns:
            split = SPLIT_ALIASES.get((row.get('split') or '').strip().lower())
            if split is None:
                raise EvarError(f'Metadata file {path}, line {line}: split {row.get("split")!r}; expected train, valid or test.')
            splits.append(split)
        else:
            try:
                folds.append(int(str(row.get('fold')).strip()))
            except ValueError:
                raise EvarError(f'Metadata file {path}, line {line}: fold {row.get("fold")!r} is not an integer.') from None
    if not multi_label:
        _refuse_label_lists(path, [lab for (lab,) in labels])
    return Metadata(path=path, file_names=tuple(file_names), labels=tuple(labels),
                    splits=tuple(splits) if 'split' in columns else None,
                    folds=None if 'split' in columns else tuple(folds),
                    content_hash=content_hash)


def _refuse_label_lists(path: Path, labels: list) -> None:
    """EvarError when a single-label CSV has a label made of other labels joined by commas."""
    whole = set(labels)
    lists = sorted({lab for lab in labels if ',' in lab
                    and all(part.strip() in whole for part in lab.split(',') if part.strip())})
    if lists:
        raise EvarError(f'Metadata file {path}: label(s) {lists[:3]} list labels that other rows use alone, as a '
                        'multi-label CSV does, but the task is single-label (metric accuracy). Declare the task '
                        'multi-label (metric: mAP in its YAML) or quote the labels as single classes.')


class ClipDataset:
    """Decoded, resampled, cropped clips of some metadata rows; used by DataLoader workers."""

    def __init__(self, root: Path, file_names, sample_rate: int, unit_sec: float, crop_policy: str):
        self.root = Path(root)
        self.file_names = list(file_names)
        self.sample_rate = int(sample_rate)
        self.unit_samples = int(round(unit_sec * sample_rate))
        self.crop_policy = crop_policy

    def __len__(self):
        return len(self.file_names)

    def __getitem__(self, i):
        try:
            path = resolve_audio_path(self.root, self.file_names[i])
            head = self.unit_samples / self.sample_rate if self.crop_policy == 'head' else None
            wav, rate = load_audio(path, self.sample_rate, max_sec=head)
        except EvarError as e:  # carried to the main process as a message, not a worker traceback
            return None, str(e)
        return crop(wav, self.unit_samples, self.crop_policy), rate


def collate_clips(items, pad_to: int = 0):
    """Pads clips to the longest in the batch (or `pad_to`, so that batches share one shape and the CPU kernels
    chosen for it are reused); returns (waves [B, N], lengths [B], source rates).

    A clip that failed to load makes the batch (None, None, message); the consumer raises it as EvarError.
    """
    import torch

    for wav, info in items:
        if wav is None:
            return None, None, info
    lengths = [len(w) for w, _ in items]
    batch = np.zeros((len(items), max(max(lengths), pad_to)), dtype=np.float32)
    for row, (wav, _) in zip(batch, items):
        row[:len(wav)] = wav
    return torch.from_numpy(batch), torch.tensor(lengths, dtype=torch.long), [r for _, r in items]


def warn_resampling(rates, sample_rate: int, source: str, already: set) -> None:
    """Logs one line per (source, rate) the first time files are resampled on load."""
    import logging

    for rate in set(rates) - already - {sample_rate}:
        logging.getLogger('evar').info(f'{source}: audio at {rate} Hz is resampled to the model\'s {sample_rate} Hz '
                                       'on load (run prepare_wav.py once to skip this)')
        already.add(rate)
