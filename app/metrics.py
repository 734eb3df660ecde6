"""Patient-level decision rules and the challenge metrics of the heart- and respiratory-sound applications.

Every function here is pure (numpy in, numbers out) so that each rule and metric is tested against hand-worked
values. Class predictions are integer indices; probabilities are float arrays [n, C] whose rows sum to 1.

Sources:
- CirCor / PhysioNet Challenge 2022 murmur metric: Reyna et al., "Heart Murmur Detection from Phonocardiogram
  Recordings: The George B. Moody PhysioNet Challenge 2022", PLOS Digital Health 2023 (weighted accuracy with
  weights 5, 3, 1 for Present, Unknown, Absent).
- Patient rule Present > Unknown > Absent: Panah et al., "Exploring Wav2vec 2.0 Model for Heart Murmur Detection",
  EUSIPCO 2023.
- ICBHI score: Rocha et al., "An open access database for the evaluation of respiratory sound classification
  algorithms", Physiological Measurement 2019 (Se over the abnormal classes, Sp on the normal class, score their
  mean); the BMD-HS paper (Ali et al., arXiv:2409.00724) reports the same (Se + Sp) / 2 for murmur vs normal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evar.errors import EvarError

MURMUR_CLASSES = ('Present', 'Unknown', 'Absent')  # the challenge's order, most to least urgent
MURMUR_WEIGHTS = (5.0, 3.0, 1.0)


def _ratio(num: float, den: float) -> float:
    """num / den, or NaN when den is 0 (a rate over an empty set is undefined, not 0)."""
    return float(num) / float(den) if den else float('nan')


def _labels(y, name: str, n_classes: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or (y.size and (y.min() < 0 or y.max() >= n_classes)):
        raise EvarError(f'{name} must be class indices in [0, {n_classes}) of shape [n], got shape {y.shape}.')
    return y.astype(np.int64)


def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Confusion counts int64 [C, C]: entry [t, p] counts items of true class t predicted as p.

    Raises:
        EvarError: inputs that are not 1-D class indices in [0, n_classes) of equal length.
    """
    t, p = _labels(y_true, 'y_true', n_classes), _labels(y_pred, 'y_pred', n_classes)
    if len(t) != len(p):
        raise EvarError(f'y_true has {len(t)} items but y_pred has {len(p)}.')
    out = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(out, (t, p), 1)
    return out


def weighted_accuracy(y_true, y_pred, weights: Sequence[float] = MURMUR_WEIGHTS) -> float:
    """The Challenge 2022 weighted accuracy: sum_k w_k * correct_k / sum_k w_k * n_k, where n_k counts items of
    true class k and correct_k those of them predicted k. With the default weights (5, 3, 1) classes are indexed
    as MURMUR_CLASSES (Present, Unknown, Absent). NaN when no item has a positive weight."""
    w = np.asarray(weights, dtype=np.float64)
    cm = confusion(y_true, y_pred, len(w))
    return _ratio(float((w * np.diag(cm)).sum()), float((w * cm.sum(1)).sum()))


def unweighted_average_recall(y_true, y_pred, n_classes: int) -> float:
    """UAR: the mean over the classes that occur in `y_true` of each one's recall (NaN for empty input)."""
    cm = confusion(y_true, y_pred, n_classes)
    present = cm.sum(1) > 0
    return float(np.mean(np.diag(cm)[present] / cm.sum(1)[present])) if present.any() else float('nan')


def priority_rule(recording_probs, priority: Sequence[int] = (0, 1)) -> int:
    """A patient's class from its recordings: each recording votes its argmax class; the first class of `priority`
    that any recording votes wins, else the remaining class with the most votes (ties: the lower index).

    With classes (Present, Unknown, Absent) and priority (0, 1) this is the published murmur rule: Present if any
    recording is Present, else Unknown if any is Unknown, else Absent.

    Args:
        recording_probs: float [R, C], one row per recording (R >= 1).
    """
    probs = np.asarray(recording_probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) == 0:
        raise EvarError(f'recording_probs must be [R >= 1, C], got shape {probs.shape}.')
    votes = probs.argmax(1)
    for cls in priority:
        if (votes == cls).any():
            return int(cls)
    counts = np.bincount(votes, minlength=probs.shape[1])
    return int(counts.argmax())


def argmax_of_mean(recording_probs) -> int:
    """A patient's class as the argmax of the mean of its recordings' probabilities [R, C] (ties: lower index)."""
    probs = np.asarray(recording_probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) == 0:
        raise EvarError(f'recording_probs must be [R >= 1, C], got shape {probs.shape}.')
    return int(probs.mean(0).argmax())


def group_mean(probs, groups) -> tuple:
    """Mean of the rows of `probs` [n, C] per group (e.g. segments -> recordings, recordings -> patients).

    Returns:
        (group keys sorted, float64 [G, C] mean rows in that order).
    """
    probs = np.asarray(probs, dtype=np.float64)
    groups = np.asarray(groups)
    if len(groups) != len(probs):
        raise EvarError(f'{len(probs)} probability rows but {len(groups)} group keys.')
    keys, inverse = np.unique(groups, return_inverse=True)
    sums = np.zeros((len(keys), probs.shape[1]))
    np.add.at(sums, inverse, probs)
    return keys, sums / np.bincount(inverse, minlength=len(keys))[:, None]


@dataclass(frozen=True)
class CirCorScores:
    """Patient-level murmur scores: the Challenge's weighted accuracy and the unweighted average recall."""
    weighted_accuracy: float
    uar: float


def circor_scores(y_true, y_pred) -> CirCorScores:
    """`CirCorScores` of patient classes indexed as MURMUR_CLASSES."""
    return CirCorScores(weighted_accuracy=weighted_accuracy(y_true, y_pred),
                        uar=unweighted_average_recall(y_true, y_pred, len(MURMUR_CLASSES)))


@dataclass(frozen=True)
class BinaryScores:
    """Scores of a positive (abnormal) vs negative (normal) decision.

    Attributes:
        accuracy: (TP + TN) / n.
        sensitivity: TP / (TP + FN), the positives' recall.
        specificity: TN / (TN + FP), the negatives' recall.
        f1: 2 TP / (2 TP + FP + FN).
        icbhi_score: (sensitivity + specificity) / 2.
    Any rate whose denominator is 0 is NaN.
    """
    accuracy: float
    sensitivity: float
    specificity: float
    f1: float
    icbhi_score: float


def binary_scores(y_true, y_pred) -> BinaryScores:
    """`BinaryScores` of 0/1 labels (1 = positive, e.g. murmur)."""
    cm = confusion(y_true, y_pred, 2)
    tn, fp, fn, tp = (float(v) for v in cm.ravel())
    se, sp = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    return BinaryScores(accuracy=_ratio(tp + tn, cm.sum()), sensitivity=se, specificity=sp,
                        f1=_ratio(2 * tp, 2 * tp + fp + fn), icbhi_score=(se + sp) / 2)


@dataclass(frozen=True)
class IcbhiScores:
    """The ICBHI challenge's scores over classes with one normal class.

    Attributes:
        sensitivity: abnormal items predicted as their own abnormal class / abnormal items.
        specificity: normal items predicted normal / normal items.
        score: (sensitivity + specificity) / 2.
        accuracy: correct items / items (not a challenge score; for reference).
    """
    sensitivity: float
    specificity: float
    score: float
    accuracy: float


def icbhi_scores(y_true, y_pred, n_classes: int, normal: int = 0) -> IcbhiScores:
    """`IcbhiScores` of class indices; `normal` is the normal class's index (ICBHI: normal, crackle, wheeze,
    both; SPRSound events: Normal and six adventitious types)."""
    cm = confusion(y_true, y_pred, n_classes)
    abnormal = [k for k in range(n_classes) if k != normal]
    se = _ratio(cm[abnormal, abnormal].sum(), cm[abnormal].sum())
    sp = _ratio(cm[normal, normal], cm[normal].sum())
    return IcbhiScores(sensitivity=se, specificity=sp, score=(se + sp) / 2, accuracy=_ratio(np.trace(cm), cm.sum()))


def patient_decisions(segment_probs, recordings, patients, decide) -> tuple:
    """Patient-level classes from segment probabilities: segments are averaged per recording (`group_mean`), then
    each patient's recording probabilities [R, C] go to `decide` (`priority_rule`, `argmax_of_mean`, ...).

    Args:
        segment_probs: float [n, C].
        recordings, patients: keys [n] of each segment's recording and patient (a recording belongs to one patient).

    Returns:
        (patient keys sorted, int64 [P] decided classes).
    """
    rec_keys, rec_probs = group_mean(segment_probs, recordings)
    owner = dict(zip(np.asarray(recordings).tolist(), np.asarray(patients).tolist()))
    rec_patients = np.array([owner[k] for k in rec_keys.tolist()])
    keys = np.unique(rec_patients)
    return keys, np.array([decide(rec_probs[rec_patients == p]) for p in keys], dtype=np.int64)


def patient_labels(y, patients) -> tuple:
    """(patient keys sorted, int64 [P] each patient's class) from per-item classes y [n].

    Raises:
        EvarError: a patient whose items carry different classes.
    """
    y, patients = np.asarray(y), np.asarray(patients)
    keys = np.unique(patients)
    out = []
    for p in keys:
        values = np.unique(y[patients == p])
        if len(values) != 1:
            raise EvarError(f'Patient {p} has items of classes {values.tolist()}; a patient-level label needs one.')
        out.append(int(values[0]))
    return keys, np.array(out, dtype=np.int64)
