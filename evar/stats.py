"""Statistics for comparing models: confidence intervals over seeds, paired tests over test clips, Holm's correction.

Pure functions over arrays; nothing here reads files (`evar.summarize` gathers the scores and per-clip predictions).

- `t_interval`, `t_interval_from_summary`: the Student-t 95 % confidence interval of a mean score over repeated
  runs (seeds, and the folds of a k-fold task). What varies is the training randomness (and the fold); the test clips
  are held fixed, so it says how far another seed's score may fall, not how well the test set represents the task.
- `paired_bootstrap`: resamples the *test clips* with replacement (the same resample for both models and every
  seed), recomputes each model's score on the resample and takes the difference; the 2.5 and 97.5 percentiles of
  10,000 such differences are a 95 % percentile interval of the score difference that another draw of test clips
  from the same population could give (Efron & Tibshirani, An Introduction to the Bootstrap, 1993, ch. 13 and 16).
  Accuracy and mAP are supported; mAP skips, in each resample, the classes without a positive clip, as
  `evar.metrics.mean_average_precision` does.
- `mcnemar_exact`: McNemar's exact test of two classifiers on the same clips: under equal accuracy, the clips where
  exactly one of them is right split 50/50 between them (a two-sided binomial test, `scipy.stats.binomtest`).
- `holm`: Holm's step-down adjustment of p-values for a family of tests (Holm, Scand. J. Statist. 6, 1979).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np

from .errors import EvarError

LEVEL = 0.95
N_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval [low, high] at `level` (0.95 = 95 %), in the unit of the values (fractions
    for scores)."""
    low: float
    high: float
    level: float = LEVEL

    @property
    def half_width(self) -> float:
        """Half the interval's width."""
        return (self.high - self.low) / 2


def t_interval_from_summary(mean: float, std: Optional[float], n: int, level: float = LEVEL) -> Optional[Interval]:
    """The Student-t interval `mean ± t_{(1+level)/2, n-1} · std / sqrt(n)` of a mean of `n` values.

    Args:
        mean: the sample mean.
        std: the sample standard deviation (ddof=1); None when unknown.
        n: the number of values (seeds, or seeds × folds).
        level: the coverage, e.g. 0.95.

    Returns:
        the interval, or None when it is undefined (fewer than 2 values, or std unknown).
    """
    from scipy import stats

    if n < 2 or std is None or not math.isfinite(std):
        return None
    if std == 0:
        return Interval(mean, mean, level)
    low, high = stats.t.interval(level, df=n - 1, loc=mean, scale=std / math.sqrt(n))
    return Interval(float(low), float(high), level)


def t_interval(values: Sequence[float], level: float = LEVEL) -> Optional[Interval]:
    """The Student-t confidence interval of the mean of `values` (e.g. one model's test scores over seeds): under
    normally distributed run-to-run variation, it covers the mean over all seeds with probability `level`.

    Returns:
        the interval, or None for fewer than 2 values.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return None
    return t_interval_from_summary(float(values.mean()), float(values.std(ddof=1)), int(values.size), level)


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test of two classifiers on the same clips.

    Attributes:
        a_only: clips model A gets right and model B wrong.
        b_only: clips model B gets right and model A wrong.
        p_value: two-sided exact p-value (1.0 when no clip is discordant).
    """
    a_only: int
    b_only: int
    p_value: float


def mcnemar_from_counts(a_only: int, b_only: int) -> McNemar:
    """McNemar's exact test from the discordant counts of the 2×2 table: the p-value of `a_only` successes in
    `a_only + b_only` trials of a fair coin (`scipy.stats.binomtest`, two-sided)."""
    from scipy import stats

    if a_only < 0 or b_only < 0:
        raise EvarError(f'McNemar: discordant counts must be >= 0, got {a_only} and {b_only}.')
    n = a_only + b_only
    p = 1.0 if n == 0 else float(stats.binomtest(a_only, n, 0.5, alternative='two-sided').pvalue)
    return McNemar(int(a_only), int(b_only), min(p, 1.0))


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """McNemar's exact test of two classifiers from their per-clip correctness.

    Args:
        correct_a, correct_b: `[N]` bool, True where the model's prediction of clip i is right (same clip order).

    Raises:
        EvarError: arrays of different shapes, or not 1-D.
    """
    correct_a, correct_b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape or correct_a.ndim != 1:
        raise EvarError(f'McNemar: per-clip correctness must be two [N] arrays, got {correct_a.shape} and '
                        f'{correct_b.shape}.')
    return mcnemar_from_counts(int(np.sum(correct_a & ~correct_b)), int(np.sum(~correct_a & correct_b)))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values: sorted ascending, the k-th (0-based) of m is multiplied by m - k, made
    non-decreasing, capped at 1. A hypothesis is rejected at level α when its adjusted p-value is <= α; this
    controls the family-wise error rate at α for any dependence between the tests.

    Args:
        p_values: `[m]` p-values (NaN: no test; kept NaN and not counted in m).

    Returns:
        `[m]` adjusted p-values, in the input order.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    m = len(tested)
    if m == 0:
        return out
    order = tested[np.argsort(p[tested], kind='stable')]
    adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(adjusted, 1.0)
    return out


def resample_indices(n: int, n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                     chunk: int = 1000) -> Iterator[np.ndarray]:
    """Bootstrap resamples of `n` clips: yields int64 `[b, n]` arrays of clip indices drawn with replacement
    (b <= `chunk`; `n_resamples` rows in all). Rows are drawn in order from `numpy.random.default_rng(seed)`, so the
    same seed gives the same resamples whatever the chunk size (chunks only bound memory: `chunk` x `n` at a time)."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_resamples:
        b = min(chunk, n_resamples - done)
        yield rng.integers(0, n, size=(b, n))
        done += b


def resample_weights(n: int, n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                     chunk: int = 1000) -> Iterator[np.ndarray]:
    """The resamples of `resample_indices` as multiplicities: int64 `[b, n]`, row r counting how often each clip is
    drawn in resample r (each row sums to n)."""
    for idx in resample_indices(n, n_resamples, seed, chunk):
        b = len(idx)
        yield np.bincount((idx + n * np.arange(b)[:, None]).ravel(), minlength=b * n).reshape(b, n)


def weighted_mean_average_precision(y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """mAP of one model on many resamples at once: resample r counts clip i `weights[r, i]` times.

    Equals `evar.metrics.mean_average_precision` on the resampled clips (a clip drawn k times ties with its copies,
    and AP groups tied scores), averaged over the classes with a positive clip in that resample.

    Args:
        y_true: `[N, C]` 0/1 targets.
        scores: `[N, C]` per-class scores.
        weights: `[B, N]` non-negative clip multiplicities.

    Returns:
        `[B]` mAP per resample (NaN for a resample with no positive at all).
    """
    y_true = np.asarray(y_true).astype(bool)
    weights = np.asarray(weights)
    n_b, n = weights.shape
    clips_first = np.ascontiguousarray(weights.T)  # [N, B]: gathering and summing whole rows is fast
    ap_sum, n_classes = np.zeros(n_b), np.zeros(n_b)
    for c in np.flatnonzero(y_true.any(0)):
        order = np.argsort(-scores[:, c], kind='stable')  # rank positions, best first
        s_sorted = scores[order, c]
        ends = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), n - 1]  # last position of each group of tied scores
        pos = np.flatnonzero(y_true[order, c])  # positions of the positive clips
        pos_end = ends[np.searchsorted(ends, pos)]  # the end of each positive's group
        last = np.r_[np.flatnonzero(np.diff(pos_end) != 0), len(pos) - 1]  # last positive of each such group
        # Precision only matters at the groups holding positives: the weighted clips ranked at or above such a group,
        # and the weighted positives among them (segment sums between those groups' ends, then running totals).
        group_ends = pos_end[last]
        count = np.cumsum(np.add.reduceat(clips_first[order[:group_ends[-1] + 1]], np.r_[0, group_ends[:-1] + 1],
                                          axis=0), axis=0, dtype=np.float64).T
        tp = np.cumsum(np.add.reduceat(clips_first[order[pos]], np.r_[0, last[:-1] + 1], axis=0), axis=0,
                       dtype=np.float64).T
        new_tp = np.diff(tp, axis=1, prepend=0.0)
        precision = np.divide(tp, count, out=np.zeros_like(tp), where=count > 0)
        n_pos = tp[:, -1]
        has = n_pos > 0  # a class without a positive in the resample has no AP: left out of that resample's mean
        ap_sum[has] += (new_tp * precision).sum(1)[has] / n_pos[has]
        n_classes += has
    with np.errstate(invalid='ignore', divide='ignore'):
        return ap_sum / n_classes


@dataclass(frozen=True)
class Bootstrap:
    """A paired bootstrap of the score difference A - B over test clips.

    Attributes:
        difference: the observed difference (fraction): mean over paired seeds of A's score minus B's, on all clips.
        interval: the 95 % percentile interval of the resampled differences.
        p_value: two-sided bootstrap p-value, 2 · min(share of resampled differences <= 0, share >= 0), capped at 1:
            the smallest level at which the percentile interval excludes 0 (0.0: below 1 / n_resamples).
        n_resamples: the number of resamples.
        seed: the random seed of the resamples.
    """
    difference: float
    interval: Interval
    p_value: float
    n_resamples: int
    seed: int


def _summarise(observed: float, diffs: np.ndarray, n_resamples: int, seed: int, level: float) -> Bootstrap:
    diffs = diffs[~np.isnan(diffs)]
    if diffs.size == 0:
        raise EvarError('paired bootstrap: no resample had a defined score (no positive clip?).')
    tail = (1 - level) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    p = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)))
    return Bootstrap(float(observed), Interval(float(low), float(high), level), float(p), n_resamples, seed)


def paired_bootstrap_accuracy(correct_a: np.ndarray, correct_b: np.ndarray, n_resamples: int = N_RESAMPLES,
                              seed: int = BOOTSTRAP_SEED, level: float = LEVEL) -> Bootstrap:
    """Paired bootstrap of an accuracy difference over test clips.

    Each resample draws N clips with replacement; both models (and all their seeds) are scored on the same draw.
    A model's score is its accuracy averaged over its seeds, so the statistic is the mean over the drawn clips of
    d_i = (share of A's seeds right on clip i) - (share of B's seeds right on clip i).

    Args:
        correct_a, correct_b: `[S, N]` (or `[N]`) bool, per paired seed and clip, True where the prediction is
            right; the same clip order in both.
        n_resamples, seed: the number of resamples and their random seed.
        level: the interval's coverage.

    Raises:
        EvarError: shapes that differ or no clip.
    """
    a, b = np.atleast_2d(np.asarray(correct_a, dtype=np.float64)), np.atleast_2d(np.asarray(correct_b, dtype=np.float64))
    if a.shape[1:] != b.shape[1:] or a.shape[1] == 0:
        raise EvarError(f'paired bootstrap: per-clip correctness of A {a.shape} and B {b.shape} must cover the same '
                        'clips (seeds x clips).')
    d = a.mean(0) - b.mean(0)
    n = len(d)
    diffs = np.concatenate([d[idx].mean(1) for idx in resample_indices(n, n_resamples, seed)])
    return _summarise(float(d.mean()), diffs, n_resamples, seed, level)


def paired_bootstrap_map(y_true: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray,
                         n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = LEVEL) -> Bootstrap:
    """Paired bootstrap of an mAP difference over test clips (see `paired_bootstrap_accuracy`): a model's score on a
    resample is the mean over its seeds of mAP over the classes with a positive clip in that resample.

    Args:
        y_true: `[N, C]` 0/1 targets.
        scores_a, scores_b: `[S, N, C]` (or `[N, C]`) per paired seed, per-class scores of each clip.

    Raises:
        EvarError: shapes that differ from the targets', or no class with a positive clip.
    """
    from .metrics import mean_average_precision

    y_true = np.asarray(y_true)
    sa, sb = (np.asarray(s, dtype=np.float64) for s in (scores_a, scores_b))
    sa, sb = (s[None] if s.ndim == 2 else s for s in (sa, sb))
    if sa.shape[1:] != y_true.shape or sb.shape[1:] != y_true.shape:
        raise EvarError(f'paired bootstrap: scores of A {sa.shape} and B {sb.shape} must be [seeds, N, C] over the '
                        f'targets\' {y_true.shape}.')
    observed = (np.mean([mean_average_precision(y_true, s) for s in sa])
                - np.mean([mean_average_precision(y_true, s) for s in sb]))
    diffs = []
    for w in resample_weights(len(y_true), n_resamples, seed, chunk=250):
        w = w.astype(np.int32)  # counts <= N: exact, and half the memory traffic of int64
        diffs.append(np.mean([weighted_mean_average_precision(y_true, s, w) for s in sa], 0)
                     - np.mean([weighted_mean_average_precision(y_true, s, w) for s in sb], 0))
    return _summarise(float(observed), np.concatenate(diffs), n_resamples, seed, level)
