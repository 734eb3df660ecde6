"""The metric registry: a task's `metric` names a `Metric` here, and `score` computes it on a head's test scores.

Every metric takes the true targets and the head's scores `[N, C]` (class probabilities, or per-class sigmoid
scores for multi-label tasks) and returns one float. A metric declares which targets it takes: single-label metrics
take class indices `[N]` (ints in [0, C)); multi-label metrics take a 0/1 matrix `[N, C]`. Each is checked against
scikit-learn's reference in tests/test_metrics.py; where evar deliberately differs, its docstring says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable

import numpy as np

from .errors import EvarError


@dataclass(frozen=True)
class Metric:
    """One registered metric.

    Attributes:
        name: the registry name, as written in a task's `metric` and in `results/scores.csv`.
        function: `(y_true, scores) -> float`; `scores` is `[N, C]`, `y_true` is `[N]` class indices when
            `multi_label` is False and `[N, C]` 0/1 otherwise.
        higher_is_better: True when a larger value is a better result (for choosing on validation).
        multi_label: which targets it takes: False for class indices `[N]`, True for a 0/1 matrix `[N, C]`.
        description: one line for listings and error messages.
    """
    name: str
    function: Callable[[np.ndarray, np.ndarray], float]
    higher_is_better: bool
    multi_label: bool
    description: str


def _checked(metric: str, y_true, scores, multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """`(y_true, scores)` as arrays after checking their shapes and values; an `EvarError` names the metric."""
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    if y_true.dtype.kind not in 'biuf' or scores.dtype.kind not in 'biuf':
        raise EvarError(f'{metric}: targets and scores must be numbers, got dtypes {y_true.dtype} and {scores.dtype}.')
    if scores.ndim != 2:
        raise EvarError(f'{metric}: scores must be [N, C] (one column per class), got shape {scores.shape}.')
    n, n_classes = scores.shape
    if n == 0:
        raise EvarError(f'{metric}: no clips to score (empty split).')
    if not np.isfinite(scores).all():
        raise EvarError(f'{metric}: scores contain NaN or infinity '
                        f'({int((~np.isfinite(scores)).any(1).sum())} of {n} clips).')
    if multi_label:
        if y_true.shape != scores.shape:
            raise EvarError(f'{metric} is a multi-label metric: targets must be a 0/1 matrix [N, C] of the scores\' '
                            f'shape {scores.shape}, got shape {y_true.shape}.')
        if not np.isin(y_true, (0, 1)).all():
            raise EvarError(f'{metric}: multi-label targets must be 0 or 1.')
        return y_true.astype(bool), scores
    if y_true.ndim != 1:
        raise EvarError(f'{metric} is a single-label metric: targets must be class indices [N], got shape '
                        f'{y_true.shape}; a multi-label task takes a multi-label metric such as mAP.')
    if len(y_true) != n:
        raise EvarError(f'{metric}: {len(y_true)} targets for {n} rows of scores.')
    if not (np.all(y_true == np.round(y_true)) and y_true.min() >= 0 and y_true.max() < n_classes):
        raise EvarError(f'{metric}: targets must be class indices in [0, {n_classes}), got values from '
                        f'{y_true.min()} to {y_true.max()}.')
    return y_true.astype(np.int64), scores


def accuracy(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Fraction of clips whose highest-scoring class is the true class.

    Args:
        y_true: `[N]` class indices.
        scores: `[N, C]`; a tie for the highest score goes to the lowest class index (numpy's argmax).

    Returns:
        accuracy in [0, 1]: scikit-learn's `accuracy_score(y_true, scores.argmax(1))`.

    Raises:
        EvarError: a 2-D (multi-label) target, mismatched lengths, indices outside [0, C), non-finite scores.
    """
    y_true, scores = _checked('accuracy', y_true, scores, multi_label=False)
    return float(np.mean(scores.argmax(1) == y_true))


def balanced_accuracy(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Unweighted mean over classes of recall (the fraction of a class's clips predicted as that class).

    Args:
        y_true: `[N]` class indices.
        scores: `[N, C]`; the prediction is `scores.argmax(1)`.

    Returns:
        the mean recall over the classes present in `y_true` (classes with no test clip have no recall and are
        left out, as scikit-learn's `balanced_accuracy_score` does).

    Raises:
        EvarError: as `accuracy`.
    """
    y_true, scores = _checked('balanced_accuracy', y_true, scores, multi_label=False)
    n_classes = scores.shape[1]
    hits = np.bincount(y_true, weights=scores.argmax(1) == y_true, minlength=n_classes)
    counts = np.bincount(y_true, minlength=n_classes)
    present = counts > 0
    return float(np.mean(hits[present] / counts[present]))


def average_precision(y_true: np.ndarray, score: np.ndarray) -> float:
    """AP of one class: the area under its precision-recall curve as a step function (not interpolated).

    The sum over score thresholds (distinct values, highest first) of (recall gained) x (precision at the
    threshold); clips with tied scores pass a threshold together, so ties are neither optimistic nor pessimistic
    about order. This is scikit-learn's `average_precision_score` for one class.

    Args:
        y_true: `[N]` 0/1 (or bool) targets of one class.
        score: `[N]` scores of that class.

    Returns:
        AP in [0, 1], or NaN when the class has no positive clip (AP is undefined then).
    """
    y_true = np.asarray(y_true).astype(bool)
    n_pos = int(y_true.sum())
    if n_pos == 0:
        return float('nan')
    order = np.argsort(-np.asarray(score), kind='stable')
    s_sorted, hits = np.asarray(score)[order], y_true[order]
    # Group tied scores: precision is evaluated at the end of each group of equal scores.
    ends = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), len(s_sorted) - 1]
    tp = np.cumsum(hits)[ends]
    counts = ends + 1
    new_tp = np.diff(np.r_[0, tp])
    return float(np.sum(new_tp * tp / counts) / n_pos)


def mean_average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """mAP: the unweighted mean over classes of `average_precision`, over the classes with a positive test clip.

    Differs from scikit-learn on purpose: classes with no positive clip in `y_true` are left out, as AudioSet
    evaluations do, where `average_precision_score(..., average='macro')` would count such a class as AP 0 (with
    a warning) and lower the mean. On the classes with a positive, the two agree.

    Args:
        y_true: `[N, C]` 0/1 targets.
        scores: `[N, C]` per-class scores.

    Raises:
        EvarError: targets not a 0/1 matrix of the scores' shape, non-finite scores, or no class with a positive.
    """
    y_true, scores = _checked('mAP', y_true, scores, multi_label=True)
    aps = [average_precision(y_true[:, c], scores[:, c]) for c in np.flatnonzero(y_true.any(0))]
    if not aps:
        raise EvarError('mAP: no class has a positive clip among the targets; mAP is undefined.')
    return float(np.mean(aps))


def _binary_roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of one class with both positives and negatives: the Mann-Whitney U statistic, ties counted half."""
    order = np.argsort(score, kind='stable')
    s_sorted = score[order]
    # Average 1-based ranks over groups of tied scores.
    starts = np.r_[0, np.flatnonzero(np.diff(s_sorted) != 0) + 1]
    ends = np.r_[starts[1:], len(s_sorted)]
    group_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(len(score))
    ranks[order] = np.repeat(group_rank, ends - starts)
    n_pos = int(y_true.sum())
    n_neg = len(y_true) - n_pos
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Macro ROC AUC: the unweighted mean over classes of the area under the ROC curve, ties counted half.

    Averaged over the classes that have both positive and negative clips in `y_true`; AUC is undefined for the
    others, where scikit-learn's `roc_auc_score(..., average='macro')` warns and returns NaN for the whole mean.
    On those classes, the two agree.

    Args:
        y_true: `[N, C]` 0/1 targets.
        scores: `[N, C]` per-class scores.

    Raises:
        EvarError: targets not a 0/1 matrix of the scores' shape, non-finite scores, or no class with both.
    """
    y_true, scores = _checked('roc_auc', y_true, scores, multi_label=True)
    n_pos = y_true.sum(0)
    defined = np.flatnonzero((n_pos > 0) & (n_pos < len(y_true)))
    if not len(defined):
        raise EvarError('roc_auc: no class has both positive and negative clips among the targets; AUC is undefined.')
    return float(np.mean([_binary_roc_auc(y_true[:, c], scores[:, c]) for c in defined]))


def roc_auc_ovr(y_true: np.ndarray, scores: np.ndarray) -> float:
    """One-vs-rest macro ROC AUC of a single-label task: HEAR's `aucroc` (hear-eval-kit `heareval/score.py`, the
    primary score of its Beehive tasks): scikit-learn's `roc_auc_score(one_hot(y_true), scores, average='macro')`,
    the unweighted mean over classes of the AUC of the class's score column against the clips of that class.

    For a binary task with two outputs that sum to one (a softmax head), both columns give the same AUC, so this is
    the binary AUC of the positive class's probability, `roc_auc_score(y_true, scores[:, 1])`.

    Args:
        y_true: `[N]` class indices.
        scores: `[N, C]` class scores (C >= 2).

    Returns:
        AUC in [0, 1], ties counted half, averaged over the classes with both clips and non-clips in `y_true`
        (a class absent from the targets has no AUC; scikit-learn would fail on it).

    Raises:
        EvarError: targets not class indices for the scores, non-finite scores, fewer than 2 classes, or only one
            class among the targets.
    """
    y_true, scores = _checked('roc_auc_ovr', y_true, scores, multi_label=False)
    if scores.shape[1] < 2:
        raise EvarError(f'roc_auc_ovr: scores must have a column per class, at least 2, got shape {scores.shape}.')
    one_hot = np.eye(scores.shape[1], dtype=bool)[y_true]
    present = np.flatnonzero(one_hot.any(0) & ~one_hot.all(0))
    if not len(present):
        raise EvarError('roc_auc_ovr: the targets hold one class only; AUC needs clips of two classes.')
    return float(np.mean([_binary_roc_auc(one_hot[:, c], scores[:, c]) for c in present]))


METRICS = MappingProxyType({m.name: m for m in (
    Metric('accuracy', accuracy, higher_is_better=True, multi_label=False,
           description='fraction of clips whose top-scoring class is the true class'),
    Metric('balanced_accuracy', balanced_accuracy, higher_is_better=True, multi_label=False,
           description='unweighted mean over the classes present of recall'),
    Metric('mAP', mean_average_precision, higher_is_better=True, multi_label=True,
           description='mean over classes with a positive clip of average precision'),
    Metric('roc_auc', roc_auc, higher_is_better=True, multi_label=True,
           description='mean over classes with positive and negative clips of ROC AUC'),
    Metric('roc_auc_ovr', roc_auc_ovr, higher_is_better=True, multi_label=False,
           description="one-vs-rest macro ROC AUC of a single-label task (HEAR's aucroc; binary AUC for 2 classes)"),
)})


def get_metric(name: str) -> Metric:
    """The registered metric `name`.

    Raises:
        EvarError: an unknown name; the message lists the registered names.
    """
    try:
        return METRICS[name]
    except KeyError:
        raise EvarError(f'Unknown metric {name!r}. Registered metrics: {", ".join(METRICS)}.') from None


def score(metric_name: str, y_true: np.ndarray, scores: np.ndarray) -> float:
    """The metric `metric_name` of `scores` `[N, C]` against `y_true` (`[N]` or `[N, C]`, as the metric declares).

    Raises:
        EvarError: an unknown metric, or targets and scores the metric does not take (see `Metric.multi_label`).
    """
    return get_metric(metric_name).function(y_true, scores)


def classwise_accuracy(y_true: np.ndarray, y_pred: np.ndarray, classes) -> list:
    """Per-class accuracy of a single-label task: `[(class name, accuracy, number of clips)]`.

    Args:
        y_true: `[N]` class indices.
        y_pred: `[N]` predicted class indices.
        classes: class names, indexed by class index; classes with no clip in `y_true` are left out.
    """
    rows = []
    for c, name in enumerate(classes):
        sel = np.asarray(y_true) == c
        if sel.any():
            rows.append((name, float(np.mean(np.asarray(y_pred)[sel] == c)), int(sel.sum())))
    return rows


def classwise_average_precision(y_true: np.ndarray, scores: np.ndarray, classes) -> list:
    """Per-class AP of a multi-label task: `[(class name, AP, number of positive clips)]`.

    Args:
        y_true: `[N, C]` 0/1 targets.
        scores: `[N, C]` class scores.
        classes: C class names; classes with no positive clip are left out (their AP is undefined).
    """
    y_true = np.asarray(y_true)
    return [(name, average_precision(y_true[:, c], scores[:, c]), int(y_true[:, c].sum()))
            for c, name in enumerate(classes) if y_true[:, c].any()]


# --- audio-text retrieval -------------------------------------------------------------------------------------------

RECALL_AT = (1, 5, 10, 50)


@dataclass(frozen=True)
class RetrievalScores:
    """Retrieval figures of one direction (audio->text or text->audio), EVAR's (WavCaps') units.

    Attributes:
        recall: K -> R@K in percent: the share of queries whose best-ranked relevant item is within the top K.
        map10: mAP@10 in percent (see `retrieval_scores`).
        median_rank, mean_rank: of the best-ranked relevant item, 1-based (the median is numpy's, .5 for an even
            count where the middle two differ; WavCaps floors it).
        ranks: int64 [Q], each query's 1-based rank of its best-ranked relevant item.
    """
    recall: dict
    map10: float
    median_rank: float
    mean_rank: float
    ranks: np.ndarray


def relevant_positions(similarity: np.ndarray, relevant: np.ndarray) -> list:
    """Per query, the 1-based positions int64 [n_relevant] of its relevant items in the ranking by similarity
    (highest first), sorted. Ties are broken against the query: an irrelevant item scoring the same as a relevant
    one is ranked before it, so a tie never improves a figure (a constant model gets the worst ranks, not the best).

    Args:
        similarity: [Q, K] scores of K items per query.
        relevant: [Q, K] bool, True where the item is relevant to the query; each query has at least one.

    Raises:
        EvarError: shapes that differ, or a query with no relevant item.
    """
    similarity, relevant = np.asarray(similarity, dtype=np.float64), np.asarray(relevant, dtype=bool)
    if similarity.shape != relevant.shape or similarity.ndim != 2:
        raise EvarError(f'retrieval: similarity {similarity.shape} and relevance {relevant.shape} must be the same '
                        '[queries, items] shape.')
    if not relevant.any(1).all():
        raise EvarError(f'retrieval: {int((~relevant.any(1)).sum())} queries have no relevant item.')
    out = []
    for sim, rel in zip(similarity, relevant):
        order = np.lexsort((rel, -sim))  # highest similarity first; among equal ones, irrelevant (False) first
        out.append(np.flatnonzero(rel[order]) + 1)
    return out


def retrieval_scores(similarity: np.ndarray, relevant: np.ndarray, k_map: int = 10) -> RetrievalScores:
    """R@1/5/10/50, mAP@k_map, median and mean rank of one direction.

    A query's rank is that of its best-ranked relevant item (`relevant_positions`, ties against the query). Its
    AP@k is sum over its relevant items within the top k of (their count up to and including that item) /
    (position), divided by min(n_relevant, k): WavCaps' figure where every query has five relevant captions or
    one relevant clip (it divides by 5), and at most 1 for any number of captions.

    Args:
        similarity: [Q, K] scores (e.g. cosine similarities) of K items per query.
        relevant: [Q, K] bool relevance.
        k_map: the cut-off of mAP.
    """
    positions = relevant_positions(similarity, relevant)
    ranks = np.array([p[0] for p in positions], dtype=np.int64)
    ap = [float(np.sum(np.arange(1, (p <= k_map).sum() + 1) / p[p <= k_map])) / min(len(p), k_map)
          for p in positions]
    return RetrievalScores(recall={k: 100.0 * float(np.mean(ranks <= k)) for k in RECALL_AT},
                           map10=100.0 * float(np.mean(ap)), median_rank=float(np.median(ranks)),
                           mean_rank=float(np.mean(ranks)), ranks=ranks)


def audio_text_retrieval(audio_embs: np.ndarray, text_embs: np.ndarray, owner: np.ndarray) -> tuple:
    """(audio->text, text->audio) `RetrievalScores` by cosine similarity (float64).

    Audio->text: each clip queries every caption; its captions are relevant (any number per clip). Text->audio:
    each caption queries every clip; its own clip is relevant.

    Args:
        audio_embs: [A, D] clip embeddings.
        text_embs: [M, D] caption embeddings.
        owner: int [M], the clip index (into audio_embs) of each caption; every clip needs at least one.
    """
    a = np.asarray(audio_embs, dtype=np.float64)
    t = np.asarray(text_embs, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True).clip(min=1e-12)
    t = t / np.linalg.norm(t, axis=1, keepdims=True).clip(min=1e-12)
    owner = np.asarray(owner, dtype=np.int64)
    sim = a @ t.T  # [A, M]
    relevant = owner[None, :] == np.arange(len(a))[:, None]
    return retrieval_scores(sim, relevant), retrieval_scores(sim.T, relevant.T)
