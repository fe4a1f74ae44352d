"""Rank correlations, written out (tie-aware) so the numbers do not depend on a SciPy version."""
from __future__ import annotations

import math
from typing import Sequence


def average_ranks(x: Sequence[float]) -> list[float]:
    """Ranks 1..n, ties sharing the mean of their positions."""
    order = sorted(range(len(x)), key=lambda i: x[i])
    ranks = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(a: Sequence[float], b: Sequence[float]) -> float:
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    return float("nan") if va == 0 or vb == 0 else cov / math.sqrt(va * vb)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of the average ranks."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("spearman needs two sequences of equal length >= 2")
    return pearson(average_ranks(a), average_ranks(b))


def kendall_tau_b(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either sequence corrected), O(n^2)."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("kendall needs two sequences of equal length >= 2")
    conc = disc = ties_a = ties_b = 0
    n = len(a)
    for i in range(n):
        for j in range(i + 1, n):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif (da > 0) == (db > 0):
                conc += 1
            else:
                disc += 1
    denom = math.sqrt((conc + disc + ties_a) * (conc + disc + ties_b))
    return float("nan") if denom == 0 else (conc - disc) / denom
