"""The statistics of a leaderboard table: paired gains over seeds and verdicts."""
from __future__ import annotations

import math

from ..evaluate import NO_PRETRAIN
from .config import FULL_SOURCE, LeaderboardConfig


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment over one family: the i-th smallest p (i = 1..m) becomes
    max_{j <= i} min(1, (m - j + 1) p_(j)); ``None`` entries (no test) stay None and are not counted."""
    idx = sorted((i for i, p in enumerate(pvalues) if p is not None), key=lambda i: pvalues[i])
    m = len(idx)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def paired_ci(d: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """The ``level`` confidence interval of the mean paired difference (Student t; None below 2 pairs)."""
    n = len(d)
    if n < 2:
        return None
    from scipy import stats
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def detectable_gain(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest true mean difference a two-sided paired t-test at level ``alpha`` detects with probability
    ``power``, given the standard deviation ``sd`` of the paired differences over ``n`` pairs: the delta with
    P(|T| > t_{1-alpha/2, n-1}) = power for T ~ noncentral t(n - 1, delta sqrt(n) / sd). None below 2 pairs."""
    if n < 2:
        return None
    if sd == 0:
        return 0.0
    from scipy import integrate, optimize, stats
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)

    def achieved(delta: float) -> float:
        # P(|Z + nc| > crit sqrt(V / df)), V ~ chi2(df): the noncentral t's two tails, integrated over V
        # (scipy's nct.sf returns nan far in the tail, e.g. df = 2 at a Holm-corrected alpha)
        nc = delta * math.sqrt(n) / sd

        def f(v):
            c = crit * math.sqrt(v / df)
            return stats.chi2.pdf(v, df) * (stats.norm.sf(c - nc) + stats.norm.cdf(-c - nc))
        return integrate.quad(f, 0, math.inf, limit=200)[0] - power

    hi = sd
    while achieved(hi) < 0:
        hi *= 2
    return float(optimize.brentq(achieved, 0.0, hi, xtol=1e-10))


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


