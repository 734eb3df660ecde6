"""Split plans: which rows of a task train, select and test a head, computed once per (fold, seed).

This module is the only place where a validation split is carved. Every evaluation mode gets its rows from a
`SplitPlan`; the test rows are only ever scored, never used to select a checkpoint, an epoch, a regularisation
strength or a `k`, because a plan hands the selecting code its `valid` rows and nothing else.

- Tasks with a `split` column use its train / valid / test rows; when the valid split is empty, a stratified,
  seeded fraction of the training rows is carved out.
- K-fold tasks (a `fold` column) test on one fold and train on the others, with validation carved the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .errors import EvarError

from .split_names import SPLITS as SPLIT_NAMES


@dataclass(frozen=True)
class SplitPlan:
    """The rows and encoded labels of one (fold, seed) of a task.

    Attributes:
        fold: the test fold (1 for tasks with a split column).
        seed: the seed of the validation carve (it does not matter when the task has its own valid split).
        rows: split name -> row indices into the task's metadata, int64 [n_split].
        classes: the class names, sorted; a label's index is its position here. Only classes with training
            examples exist, so every valid/test label is one of them.
        multi_label: True when targets are 0/1 matrices [n, C] (mAP tasks), False for class indices [n].
        targets: split name -> encoded labels, int64 [n] (single-label) or float32 [n, C] (multi-label).
        valid_carved: True when the valid rows were carved from the training rows.
    """
    fold: int
    seed: int
    rows: dict
    classes: tuple
    multi_label: bool
    targets: dict
    valid_carved: bool

    def __post_init__(self):
        for split in SPLIT_NAMES:
            if len(self.rows[split]) != len(self.targets[split]):
                raise ValueError(f'split {split}: {len(self.rows[split])} rows but {len(self.targets[split])} targets')

    @property
    def sizes(self) -> dict:
        """split name -> number of rows."""
        return {s: len(self.rows[s]) for s in SPLIT_NAMES}


def encode_labels(metadata, rows: np.ndarray, classes: Sequence, multi_label: bool, split: str) -> np.ndarray:
    """Encoded targets of metadata `rows`: class indices int64 [n], or a 0/1 float32 matrix [n, C] when
    `multi_label`; a label's index is its position in `classes`.

    Raises:
        EvarError: a label that is not one of `classes` (it has no training example), naming the file and `split`.
    """
    index = {c: i for i, c in enumerate(classes)}
    for r in rows:
        for label in metadata.labels[r]:
            if label not in index:
                raise EvarError(f'Metadata file {metadata.path}: label {label!r} of {metadata.file_names[r]} ({split} '
                                f'split) never occurs in the training split; every label must have training examples.')
    if not multi_label:
        return np.array([index[metadata.labels[r][0]] for r in rows], dtype=np.int64)
    y = np.zeros((len(rows), len(classes)), dtype=np.float32)
    for i, r in enumerate(rows):
        y[i, [index[label] for label in metadata.labels[r]]] = 1.0
    return y


def carve_validation(train_rows: np.ndarray, labels: Sequence, fraction: float, seed: int,
                     multi_label: bool = False):
    """A seeded validation subset of the training rows, stratified by label.

    Single-label: each class contributes round(n * fraction) of its n rows, at least one and at most n - 1; classes
    with one row stay in training. Multi-label: iterative stratification over the individual labels (Sechidis,
    Tsoumakas and Vlahavas, "On the stratification of multi-label data", ECML PKDD 2011), since whole label
    combinations are often unique and could not be stratified on.

    Args:
        train_rows: row indices, int [n].
        labels: per metadata row, a tuple of label strings.
        fraction: the share to carve, in (0, 1).
        seed: seeds numpy's default_rng.
        multi_label: the task's kind.

    Returns:
        (train, valid): two sorted int64 arrays of row indices that partition `train_rows` (valid may be empty when
        no class has two rows; `make_plan` then stops with an error).
    """
    rng = np.random.default_rng(seed)
    if multi_label:
        valid = _iterative_stratification(np.asarray(train_rows), labels, fraction, rng)
    else:
        by_label: dict = {}
        for r in train_rows:
            by_label.setdefault(labels[r], []).append(r)
        valid = []
        for key in sorted(by_label):
            rows = np.array(by_label[key])
            n = int(round(len(rows) * fraction))
            n = min(max(n, 1), len(rows) - 1) if len(rows) >= 2 else 0
            valid.extend(rng.choice(rows, size=n, replace=False).tolist())
    valid_set = set(valid)
    return (np.array([r for r in train_rows if r not in valid_set], dtype=np.int64),
            np.sort(np.array(valid, dtype=np.int64)))


def _iterative_stratification(rows: np.ndarray, labels: Sequence, fraction: float, rng) -> list:
    """The rows assigned to the validation side by iterative stratification (two subsets, shares 1 - fraction and
    fraction): labels are taken rarest first, and each row of the current label goes to the subset that still
    wants most of that label (ties: the subset that wants most rows, then at random)."""
    shares = np.array([1.0 - fraction, fraction])
    rows = rows[rng.permutation(len(rows))]
    names = sorted({lab for r in rows for lab in labels[r]})
    index = {lab: i for i, lab in enumerate(names)}
    counts = np.zeros(len(names))
    for r in rows:
        counts[[index[lab] for lab in labels[r]]] += 1
    wanted_label = shares[:, None] * counts[None, :]  # [2, L]
    wanted_rows = shares * len(rows)
    remaining = {int(r) for r in rows}
    left = counts.copy()
    valid = []
    while remaining:  # every row has at least one label (read_metadata refuses empty labels)
        lab = min((i for i in range(len(names)) if left[i] > 0), key=lambda i: (left[i], i))
        for r in [r for r in rows.tolist() if r in remaining and names[lab] in labels[r]]:
            score = np.stack([wanted_label[:, lab], wanted_rows], 1)
            best = [s for s in (0, 1) if tuple(score[s]) == max(map(tuple, score))]
            side = best[0] if len(best) == 1 else int(rng.integers(2))
            if side == 1:
                valid.append(r)
            ids = [index[x] for x in labels[r]]
            wanted_label[side, ids] -= 1
            wanted_rows[side] -= 1
            left[ids] -= 1
            remaining.discard(r)
    return valid


def task_folds(metadata, task) -> list:
    """The test folds of `task`: [1] for a split column, [1..K] for a K-fold task, or the folds present (at least
    two, with a warning) when some of a K-fold task's folds are absent.

    Raises:
        EvarError: the metadata's columns or folds do not match what the task declares.
    """
    if task.folds == 1:
        if metadata.splits is None:
            raise EvarError(f'Metadata file {metadata.path} has a fold column but task {task.name} has folds: 1; '
                            'give the task `folds: K` or use a split column (train/valid/test).')
        return [1]
    if metadata.folds is None:
        raise EvarError(f'Task {task.name} is {task.folds}-fold but metadata file {metadata.path} has no fold column.')
    present = sorted(set(metadata.folds))
    expected = list(range(1, task.folds + 1))
    if present != expected:
        if not set(present) < set(expected) or len(present) < 2:
            raise EvarError(f'Metadata file {metadata.path}: folds {present}, expected {expected} for task '
                            f'{task.name} (or at least two of them, for a leave-one-fold-out over the folds present).')
        import logging

        logging.getLogger('evar').warning(
            f'{metadata.path}: folds {sorted(set(expected) - set(present))} of task {task.name} are absent (a partial '
            f'download?); evaluating leave-one-fold-out over folds {present} only, which results record. Scores are '
            'not comparable with the full protocol.')
    return present


def is_multi_label(task) -> bool:
    """Whether the task declares label sets (its metric takes 0/1 target matrices, e.g. mAP) rather than one class
    per clip. The task declares it; the label text never decides it."""
    from .metrics import get_metric

    return get_metric(task.metric).multi_label


def make_plan(metadata, task, fold: int, seed: int, valid_fraction: float = 0.1,
              allow_overlap: bool = False) -> SplitPlan:
    """The `SplitPlan` of one (fold, seed).

    Raises:
        EvarError: an empty training or test split; a file listed in more than one split (or in a training fold and
            the test fold) unless `allow_overlap`; no validation split and none can be carved; a valid/test label
            without training examples.
    """
    rows = metadata.split_indices(fold)
    if len(rows['train']) == 0 or len(rows['test']) == 0:
        raise EvarError(f'Metadata file {metadata.path}: fold/split {fold} leaves {len(rows["train"])} training and '
                        f'{len(rows["test"])} test rows; both must be non-empty.')
    if not allow_overlap:
        _refuse_overlap(metadata, rows, fold)
    multi_label = is_multi_label(task)
    carved = len(rows['valid']) == 0
    if carved:
        rows['train'], rows['valid'] = carve_validation(rows['train'], metadata.labels, valid_fraction, seed,
                                                        multi_label)
        if len(rows['valid']) == 0:
            raise EvarError(f'Metadata file {metadata.path}: fold/split {fold} has no validation rows and none can be '
                            f'carved from its {len(rows["train"])} training rows (every class has a single training '
                            'clip). Give the task a valid split (split column) so that heads can select on it.')
    classes = tuple(sorted({label for r in rows['train'] for label in metadata.labels[r]}))
    targets = {s: encode_labels(metadata, rows[s], classes, multi_label, s) for s in SPLIT_NAMES}
    return SplitPlan(fold=fold, seed=seed, rows=rows, classes=classes, multi_label=multi_label, targets=targets,
                     valid_carved=carved)


def _refuse_overlap(metadata, rows: dict, fold: int) -> None:
    """EvarError naming files that appear in more than one of the train / valid / test rows."""
    names = {s: {metadata.file_names[r] for r in rows[s]} for s in SPLIT_NAMES}
    for a, b in (('train', 'test'), ('valid', 'test'), ('train', 'valid')):
        shared = sorted(names[a] & names[b])
        if shared:
            where = f'training folds and test fold {fold}' if metadata.folds is not None else f'{a} and {b} splits'
            raise EvarError(f'Metadata file {metadata.path}: {len(shared)} file(s) are in both the {where}, e.g. '
                            f'{shared[:5]}; a clip scored on its own training data inflates the score. Fix the CSV, '
                            'or pass --allow_split_overlap if this is intended.')


def plan_splits(metadata, task, seeds: Sequence[int], valid_fraction: float = 0.1,
                allow_overlap: bool = False, folds: Optional[Sequence[int]] = None) -> dict:
    """Every plan a run needs, {(seed, fold): SplitPlan}, computed up front so bad labels or splits stop the run
    before any audio is embedded; `folds`: the task's test folds when the caller has them (`task_folds`, which
    warns of absent folds: once per run)."""
    folds = task_folds(metadata, task) if folds is None else folds
    return {(seed, fold): make_plan(metadata, task, fold, seed, valid_fraction, allow_overlap)
            for seed in seeds for fold in folds}


def training_rows(metadata, fold: int) -> np.ndarray:
    """All rows of the training split (before any validation carve) of `fold`: the rows whose audio may set a
    model's normalisation statistics."""
    return metadata.split_indices(fold)['train']
