"""How well a proxy ranks architectures: rank correlations from scipy, bootstrap intervals over
architectures, top-k overlap and regret."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho (ties share their average rank): ``scipy.stats.spearmanr``."""
    from scipy import stats
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("spearman needs two sequences of equal length >= 2")
    return float(stats.spearmanr(a, b).statistic)


def kendall_tau_b(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either sequence corrected): ``scipy.stats.kendalltau``."""
    from scipy import stats
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("kendall needs two sequences of equal length >= 2")
    return float(stats.kendalltau(a, b, variant="b").statistic)


def top_k_overlap(a: Sequence[float], b: Sequence[float], k: int = 5) -> float:
    """The fraction of ``b``'s k best items that are among ``a``'s k best (ties broken by position)."""
    k = min(k, len(a))
    top = lambda x: set(sorted(range(len(x)), key=lambda i: (-x[i], i))[:k])  # noqa: E731
    return len(top(a) & top(b)) / k


def regret(scores: Sequence[float], truth: Sequence[float]) -> float:
    """The best ground truth minus the ground truth of the item the scores rank first."""
    pick = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return max(truth) - truth[pick]


def bootstrap_ci(stat, a: Sequence[float], b: Sequence[float], reps: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``stat(a, b)`` over ``reps`` resamples of the items (pairs kept together);
    resamples where the statistic is undefined (all ties) are dropped."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a, float), np.asarray(b, float)
    vals = []
    for _ in range(reps):
        idx = rng.integers(0, len(a), len(a))
        v = stat(a[idx], b[idx])
        if not math.isnan(v):
            vals.append(v)
    lo, hi = np.quantile(vals, [(1 - level) / 2, (1 + level) / 2]) if vals else (math.nan, math.nan)
    return float(lo), float(hi)


__all__ = ["bootstrap_ci", "kendall_tau_b", "regret", "spearman", "top_k_overlap"]
