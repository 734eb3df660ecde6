"""Scores: accuracy, mean average precision (macro, over classes with a positive), class-wise accuracy."""

from __future__ import annotations

import numpy as np


def accuracy(y_true: np.ndarray, scores: np.ndarray) -> float:
    return float(np.mean(np.asarray(scores).argmax(1) == np.asarray(y_true)))


def average_precision(y_true: np.ndarray, score: np.ndarray) -> float:
    """AP of one class: mean of precision at the rank of each positive (ties ranked pessimistically)."""
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
    aps = [average_precision(y_true[:, c], scores[:, c]) for c in range(y_true.shape[1])]
    aps = [a for a in aps if not np.isnan(a)]
    return float(np.mean(aps)) if aps else float('nan')


def score(metric: str, y_true: np.ndarray, scores: np.ndarray) -> float:
    return mean_average_precision(y_true, scores) if metric == 'mAP' else accuracy(y_true, scores)


def classwise_accuracy(y_true: np.ndarray, y_pred: np.ndarray, classes) -> list:
    """[(class, accuracy, count)] for single-label tasks."""
    rows = []
    for c, name in enumerate(classes):
        sel = np.asarray(y_true) == c
        if sel.any():
            rows.append((name, float(np.mean(np.asarray(y_pred)[sel] == c)), int(sel.sum())))
    return rows
