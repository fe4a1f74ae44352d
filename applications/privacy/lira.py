"""Membership inference by the likelihood-ratio attack (LiRA; Carlini et al., "Membership Inference Attacks From
First Principles", S&P 2022), read at low false-positive rates.

Inputs are the shadow runs of a whole pipeline: ``scores`` (R runs x M audit points) holds a statistic of each
run's student on each audit point, larger for points the student fits better (``logit_confidence`` for a
classifier; the arctanh of the student-teacher cosine for a representation student), and ``keep`` (R x M) says
which audit points were in that run's private source. Each run in turn is the target; the others are its shadows
(leave-one-out), so every (run, point) pair is one attack decision and the ROC pools them all.

- **online**: per point, Gaussians fitted to the shadows' IN and OUT scores; the decision is the log-likelihood
  ratio log N(s; mu_in, sd_in) - log N(s; mu_out, sd_out);
- **offline**: the OUT Gaussian alone, one-sided: log P(S_out <= s).

With few shadows per point, the standard deviations are global (pooled over points, one for IN and one for OUT),
as Carlini et al. recommend below 64 shadows (``global_variance``).
"""
from __future__ import annotations

import math

import numpy as np

FPRS = (0.01, 0.001)


def logit_confidence(logits, labels):
    """log(p_y / (1 - p_y)) of the softmax, computed stably from the logits (LiRA's statistic): N x K, N -> N."""
    import torch
    logits = logits.double()
    y = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, labels.view(-1, 1), float("-inf")).logsumexp(1)
    return (y - others).float()


def lira_scores(scores: np.ndarray, keep: np.ndarray, online: bool = True, global_variance: bool = True,
                min_shadows: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out LiRA over R shadow runs: (decision scores, membership truth), both R x M.

    For each target run and point, the shadows are the other runs, equalised: random runs of the larger of the
    point's IN and OUT groups are set aside until both have the same count. Without that, leaving out a member
    target leaves one IN shadow fewer than OUT ones (and the reverse for a non-member), and the noisier mean of
    the smaller group lowers members' and raises non-members' decisions: an attack biased towards chance.
    NaN where a group has fewer than ``min_shadows`` runs after equalising (the same count whatever the target's
    membership, so no membership-dependent gaps). ``global_variance``: one standard deviation per group pooled
    over points with their degrees of freedom (sum of squared residuals / sum of (n - 1)); else per point."""
    from scipy.stats import norm
    s = np.asarray(scores, dtype=np.float64)
    k = np.asarray(keep, dtype=bool)
    if s.shape != k.shape or s.ndim != 2:
        raise ValueError(f"scores {s.shape} and keep {k.shape} must both be runs x points")
    r_count, m = s.shape
    if r_count < 3:
        raise ValueError(f"LiRA needs at least 3 shadow runs (got {r_count})")
    rng = np.random.default_rng(seed)
    out = np.full(s.shape, np.nan)
    for r in range(r_count):
        use = np.ones((r_count, m), dtype=bool)
        use[r] = False
        for j in range(m):                  # equalise the IN and OUT shadows of point j
            ins = np.flatnonzero(use[:, j] & k[:, j])
            outs = np.flatnonzero(use[:, j] & ~k[:, j])
            big, small = (ins, outs) if len(ins) > len(outs) else (outs, ins)
            if len(big) > len(small):
                use[rng.choice(big, len(big) - len(small), replace=False), j] = False
        win, wout = use & k, use & ~k
        n_in, n_out = win.sum(0), wout.sum(0)
        mu_in = (s * win).sum(0) / np.maximum(n_in, 1)
        mu_out = (s * wout).sum(0) / np.maximum(n_out, 1)
        rin, rout = ((s - mu_in) ** 2 * win).sum(0), ((s - mu_out) ** 2 * wout).sum(0)
        if global_variance:
            sd_in = np.full(m, np.sqrt(rin.sum() / max((n_in - 1).clip(0).sum(), 1)))
            sd_out = np.full(m, np.sqrt(rout.sum() / max((n_out - 1).clip(0).sum(), 1)))
        else:
            sd_in = np.sqrt(np.where(n_in > 1, rin / np.maximum(n_in - 1, 1), np.nan))
            sd_out = np.sqrt(np.where(n_out > 1, rout / np.maximum(n_out - 1, 1), np.nan))
        sd_in, sd_out = sd_in + 1e-12, sd_out + 1e-12
        x = s[r]
        if online:
            dec = norm.logpdf(x, mu_in, sd_in) - norm.logpdf(x, mu_out, sd_out)
            ok = (n_in >= min_shadows) & (n_out >= min_shadows)
        else:
            dec = norm.logcdf(x, mu_out, sd_out)
            ok = n_out >= min_shadows
        if not global_variance:
            ok &= ~np.isnan(sd_in if online else sd_out)
        out[r] = np.where(ok, dec, np.nan)
    return out, k.copy()


def tpr_at(fpr: np.ndarray, tpr: np.ndarray, at: float) -> float:
    """The largest TPR whose FPR does not exceed ``at`` (the ROC read as Carlini et al. read it)."""
    ok = fpr <= at
    return float(tpr[ok].max()) if ok.any() else 0.0


def attack_metrics(decision: np.ndarray, member: np.ndarray) -> dict:
    """AUC and TPR at 1 % and 0.1 % FPR of the pooled decisions (sklearn's ROC), in %."""
    from sklearn.metrics import roc_auc_score, roc_curve
    d, m = np.asarray(decision).ravel(), np.asarray(member).ravel().astype(bool)
    ok = ~np.isnan(d)
    d, m = d[ok], m[ok]
    if m.all() or (~m).all():
        raise ValueError("the attack needs both members and non-members among its decisions")
    fpr, tpr, _ = roc_curve(m, d, drop_intermediate=False)
    out = {"auc": 100.0 * float(roc_auc_score(m, d))}
    for f in FPRS:
        out[f"tpr@{f * 100:g}%"] = 100.0 * tpr_at(fpr, tpr, f)
    out["decisions"] = int(ok.sum())
    return out


def bootstrap_metrics(decision: np.ndarray, member: np.ndarray, n_resamples: int = 300, seed: int = 0,
                      level: float = 0.95) -> dict:
    """:func:`attack_metrics` with percentile intervals (scipy.stats.bootstrap) from a two-way bootstrap: the target
    runs (rows) and the audit points (columns) are resampled independently, each as one unit, since one run's
    student shifts all its points' decisions together and one point's decisions across runs are not independent
    either. Resampling the points alone would hold the runs fixed: intervals conditional on these runs, too narrow.
    Returns {metric: (value, lo, hi)} and the number of decisions."""
    from scipy.stats import bootstrap
    d, m = np.asarray(decision), np.asarray(member)
    base = attack_metrics(d, m)
    keys = [k for k in base if k != "decisions"]

    def stat(i, j):
        r = attack_metrics(d[np.ix_(i, j)], m[np.ix_(i, j)])
        return np.array([r[k] for k in keys])

    res = bootstrap((np.arange(d.shape[0]), np.arange(d.shape[1])), stat, paired=False, vectorized=False,
                    n_resamples=n_resamples, confidence_level=level, method="percentile",
                    rng=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    return {k: (base[k], float(lo[i]), float(hi[i])) for i, k in enumerate(keys)} | {"decisions": base["decisions"]}


def resolution(n_members: int, n_nonmembers: int, fpr: float, alpha: float = 0.05, power: float = 0.8) -> dict:
    """What an attack with these decision counts can resolve at one FPR.

    ``lowest_fpr``: 1 / non-members (below that the FPR cannot be read at all); ``detectable_tpr``: the smallest
    TPR (%) told apart from chance (TPR = FPR) with ``power`` at one-sided ``alpha`` (the attack is tested for doing
    better than chance), by statsmodels' power of two independent proportions (Cohen's h), with decisions treated
    as independent: optimistic, since one point's runs are not."""
    from statsmodels.stats.power import NormalIndPower
    lowest = 1.0 / max(n_nonmembers, 1)
    if fpr < lowest:
        return {"fpr": fpr, "lowest_fpr": lowest, "readable": False, "detectable_tpr": None}
    h = NormalIndPower().solve_power(effect_size=None, nobs1=n_members, alpha=alpha, power=power,
                                     ratio=n_nonmembers / n_members, alternative="larger")
    base = 2 * math.asin(math.sqrt(fpr))
    p = math.sin(min(base + h, math.pi) / 2) ** 2
    return {"fpr": fpr, "lowest_fpr": lowest, "readable": True, "detectable_tpr": 100.0 * p}


__all__ = ["FPRS", "attack_metrics", "bootstrap_metrics", "lira_scores", "logit_confidence", "resolution",
           "tpr_at"]
