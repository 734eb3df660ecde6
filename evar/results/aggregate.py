"""Aggregate scores: per task mean ± std over seeds (and folds), per domain and overall means, ranks.

Pure functions over `ResultRow`s and the per-task scores built from them; nothing here reads files.

- Per task (`task_score`): the mean over seeds of each seed's score (a seed's score is the mean over its folds), the
  sample std over seeds (ddof=1), and, where the rows record per-fold scores (`folds: [...]` in the report, written
  by the linear heads and by fine-tuning), the sample std over every (seed, fold) score.
- Per domain and overall (`domain_scores`): two means of the task means, always both and always named: `mean`, the
  unweighted mean (each task counts once), and `weighted_mean`, the mean weighted by each task's number of test
  clips (a k-fold task counts every clip once, as each is tested once). The weights are returned with the means.
- Ranks (`task_ranks`, `mean_ranks`): rank 1 is the best mean on a task; tied models share the mean of their ranks;
  a model's mean rank is over the tasks it has scores for.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from . import ResultRow

OVERALL = 'overall'
WEIGHTING_NOTE = ('mean: unweighted mean of the task means (each task counts once); weighted: mean weighted by '
                  'the number of test clips of each task')
_FOLDS = re.compile(r'folds: \[([^\]]*)\]')
_TEST_CLIPS = re.compile(r'test clips (\d+)')


@dataclass(frozen=True)
class TaskScore:
    """One model's score on one task, as fractions (0.9 = 90 %).

    Attributes:
        mean: mean over seeds of the seeds' scores.
        std: sample std (ddof=1) over seeds; None for one seed.
        runs: the number of seeds.
        from_aggregate: True when only aggregate rows (runs > 1, a mean of seeds) existed; `mean` and `std` are
            then pooled from them.
        folds: folds per seed whose scores the rows record (0 when they record none).
        fold_std: sample std over every (seed, fold) score; None without fold scores or with one score.
    """
    mean: float
    std: Optional[float]
    runs: int
    from_aggregate: bool = False
    folds: int = 0
    fold_std: Optional[float] = None


@dataclass(frozen=True)
class DomainScore:
    """One model's aggregate over the tasks of one domain (or of all tasks: `domain` 'overall').

    Attributes:
        domain: a `evar.tasks.DOMAINS` name, or 'overall'.
        tasks: the tasks averaged (those of the domain the model has scores for).
        mean: unweighted mean of the task means (fraction).
        weighted_mean: mean of the task means weighted by `weights`; None when a task's test size is unknown.
        weights: the number of test clips of each task in `tasks` (None where unknown).
        missing: tasks of the domain that the model has no score for (left out of both means).
    """
    domain: str
    tasks: tuple
    mean: float
    weighted_mean: Optional[float]
    weights: tuple
    missing: tuple = ()


def mean_std(values: Sequence[float]) -> tuple:
    """(mean, sample std with ddof=1 or None for one value) of a non-empty sequence."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return mean, std


def report_fold_scores(report: str) -> tuple:
    """The per-fold test scores a row's report records ('folds: [0.81, 0.86]'), or () when it records none."""
    match = _FOLDS.search(report or '')
    if not match:
        return ()
    return tuple(float(v) for v in match.group(1).split(',') if v.strip())


def report_test_clips(report: str) -> Optional[int]:
    """The number of test clips a row's report records ('test clips 2000', summed over folds), or None."""
    match = _TEST_CLIPS.search(report or '')
    return int(match.group(1)) if match else None


def _pool_aggregates(rows: Sequence[ResultRow]) -> TaskScore:
    """A score from aggregate rows only (each a mean, sample std or None, and its number of seeds): the exact pooled
    mean and std when every std is known."""
    total = sum(r.runs for r in rows)
    mean = sum(r.score * r.runs for r in rows) / total
    if len(rows) == 1:
        std = rows[0].std
    elif all(r.std is not None for r in rows):
        ss = sum((r.runs - 1) * r.std ** 2 + r.runs * (r.score - mean) ** 2 for r in rows)
        std = math.sqrt(ss / (total - 1))
    else:
        std = None
    return TaskScore(mean=mean, std=std if total > 1 else None, runs=total, from_aggregate=True)


def task_score(rows: Sequence[ResultRow]) -> TaskScore:
    """The score of one model evaluated one way on one task, from its rows (in file order).

    Individual rows (runs 1) are the samples; a row with settings and a seed replaces an earlier one with the same
    seed (a rerun is not another sample). Aggregate rows (runs > 1) are used only when no individual row exists.
    Fold scores count where every individual row records the same number of them.

    Raises:
        ValueError: no rows.
    """
    if not rows:
        raise ValueError('task_score needs at least one row.')
    samples = {}
    for i, row in enumerate(rows):
        if row.runs == 1:
            samples[f'seed {row.seed}' if row.settings and row.seed else f'row {i}'] = row
    if not samples:
        return _pool_aggregates(rows)
    chosen = list(samples.values())
    mean, std = mean_std([r.score for r in chosen])
    folds = [report_fold_scores(r.report) for r in chosen]
    n_folds = len(folds[0]) if len({len(f) for f in folds}) == 1 else 0
    fold_std = mean_std([s for f in folds for s in f])[1] if n_folds else None
    return TaskScore(mean=mean, std=std, runs=len(chosen), folds=n_folds, fold_std=fold_std)


def task_test_sizes(rows: Sequence[ResultRow]) -> dict:
    """task -> the number of test clips its rows' reports record (the most common value; the larger on a tie);
    tasks whose rows record none are absent."""
    counts = {}
    for row in rows:
        n = report_test_clips(row.report)
        if n is not None:
            counts.setdefault(row.task, Counter())[n] += 1
    return {task: max(c.items(), key=lambda kv: (kv[1], kv[0]))[0] for task, c in counts.items()}


def domain_scores(means: Mapping[str, float], domains: Mapping[str, Optional[str]],
                  test_sizes: Mapping[str, int]) -> list:
    """A model's `DomainScore` per domain (in `domains`' order of first appearance), then 'overall'.

    Args:
        means: task -> the model's mean score on it (fraction); tasks it lacks are absent.
        domains: task -> its domain, for every task of the report (None: unknown; such a task counts in 'overall'
            only).
        test_sizes: task -> number of test clips (a task absent here makes the weighted means that include it None).
    """
    groups = {}
    for task, domain in domains.items():
        if domain is not None:
            groups.setdefault(domain, []).append(task)
    groups[OVERALL] = list(domains)
    out = []
    for domain, tasks in groups.items():
        have = tuple(t for t in tasks if t in means)
        if not have:
            continue
        weights = tuple(test_sizes.get(t) for t in have)
        known = all(w is not None and w > 0 for w in weights)
        weighted = sum(means[t] * w for t, w in zip(have, weights)) / sum(weights) if known else None
        out.append(DomainScore(domain=domain, tasks=have, mean=sum(means[t] for t in have) / len(have),
                               weighted_mean=weighted, weights=weights,
                               missing=tuple(t for t in tasks if t not in means)))
    return out


def task_ranks(means: Mapping[str, Mapping[str, float]]) -> dict:
    """task -> {model: rank}: rank 1 is the highest mean; tied models share the mean of the ranks they span.

    Args:
        means: model -> {task: mean score}.
    """
    tasks = list(dict.fromkeys(t for per_task in means.values() for t in per_task))
    ranks = {}
    for task in tasks:
        scored = sorted(((m, s[task]) for m, s in means.items() if task in s), key=lambda ms: -ms[1])
        ranks[task] = {}
        i = 0
        while i < len(scored):
            j = i
            while j + 1 < len(scored) and scored[j + 1][1] == scored[i][1]:
                j += 1
            for k in range(i, j + 1):
                ranks[task][scored[k][0]] = (i + j) / 2 + 1  # ranks i+1 .. j+1 shared
            i = j + 1
    return ranks


def mean_ranks(ranks: Mapping[str, Mapping[str, float]]) -> dict:
    """model -> (mean rank over the tasks it has a rank on, the number of those tasks), from `task_ranks`."""
    per_model = {}
    for per_task in ranks.values():
        for model, rank in per_task.items():
            per_model.setdefault(model, []).append(rank)
    return {model: (sum(r) / len(r), len(r)) for model, r in per_model.items()}
