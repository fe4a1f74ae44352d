"""The statistics of a leaderboard table: paired gains over seeds and verdicts."""
from __future__ import annotations

import math

from ..evaluate import NO_PRETRAIN
from .config import FULL_SOURCE, LeaderboardConfig

def paired_test(a: list[float], b: list[float]) -> tuple[float, float, float | None]:
    """(mean difference a - b, std of the differences, two-sided paired t-test p; None below 2 pairs)."""
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    if n < 2:
        return mean, 0.0, None
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    if sd == 0:
        return mean, 0.0, 0.0 if mean != 0 else 1.0
    from scipy import stats
    t = mean / (sd / math.sqrt(n))
    return mean, sd, float(2 * stats.t.sf(abs(t), n - 1))


def verdict(mean: float, p: float | None, alpha: float) -> str:
    if p is None:
        return "one seed: no test"
    if p >= alpha:
        return "within noise"
    return "**beats**" if mean > 0 else "**loses**"


def gains(cfg: LeaderboardConfig, rows: list[dict]) -> list[dict]:
    """Each row's gain over each baseline, per (protocol, source, budget, target, metric), paired by seed."""
    by = {}
    for r in rows:
        by.setdefault((r["protocol"], r["source"], r["budget"], r["target"], r["metric"], r["set"]), {})[r["seed"]] = r["acc"]
    out = []
    for (proto, src, n, tgt, metric, label), accs in by.items():
        if label in cfg.baselines or label == NO_PRETRAIN or label.startswith(FULL_SOURCE):
            continue
        for base in cfg.baselines:
            ref = by.get((proto, src, n, tgt, metric, base))
            if not ref:
                continue
            seeds = sorted(set(accs) & set(ref))
            mean, sd, p = paired_test([accs[s] for s in seeds], [ref[s] for s in seeds])
            out.append({"protocol": proto, "source": src, "budget": n, "target": tgt, "metric": metric, "set": label,
                        "baseline": base, "gain": mean, "gain_std": sd, "p": p, "n": len(seeds),
                        "verdict": verdict(mean, p, cfg.alpha)})
    return out


