"""The statistics of a leaderboard table: paired gains over seeds and verdicts."""
from __future__ import annotations

import functools
import math

from ..evaluate import NO_PRETRAIN
from .config import FULL_SOURCE, LeaderboardConfig, all_baselines


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment over one family: the i-th smallest p (i = 1..m) becomes
    max_{j <= i} min(1, (m - j + 1) p_(j)); ``None`` entries (no test) stay None and are not counted in m.
    Written out (four lines of numpy) rather than calling statsmodels' ``multipletests(method="holm")``, which
    runs ``gc.collect()`` on every call (0.4 s each in a process holding models); tests check it against
    statsmodels on fixed and random inputs."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    if not idx:
        return out
    import numpy as np
    p = np.asarray([pvalues[i] for i in idx], dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adj = np.empty(m)
    adj[order] = adj_sorted
    for i, a in zip(idx, adj):
        out[i] = float(a)
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
    # statsmodels' TTestPower.solve_power gives the same effect where its root finder converges (tested); at 2-3
    # pairs and a Holm level it stops at its bound (10.0 instead of 18.5 at n = 3, alpha = 0.05 / 32), so the
    # noncentral t is integrated here
    """The smallest true mean difference a two-sided paired t-test at level ``alpha`` detects with probability
    ``power``, given the standard deviation ``sd`` of the paired differences over ``n`` pairs: the delta with
    P(|T| > t_{1-alpha/2, n-1}) = power for T ~ noncentral t(n - 1, delta sqrt(n) / sd). None below 2 pairs.
    The noncentrality is delta / sd, so delta is ``sd`` times the effect size solved once per (n, alpha, power)."""
    if n < 2:
        return None
    if sd == 0:
        return None       # no spread: no power computation
    return sd * _detectable_effect(n, round(alpha, 12), power)


def seeds_needed(sd: float, target: float, alpha: float, power: float = 0.8, most: int = 1000) -> int | None:
    """The smallest number of paired units (set seeds) at which a true gain of ``target`` is detected with
    ``power`` by a two-sided paired t-test at ``alpha``, given the standard deviation ``sd`` of the paired
    differences: the least n with detectable_gain(sd, n, alpha, power) <= target (the detectable gain falls
    with n). None when even ``most`` units do not reach it; 2 when there is no spread."""
    if sd <= 0:
        return 2
    ok = lambda n: detectable_gain(sd, n, alpha, power) <= target      # noqa: E731
    lo, hi = 1, 2                          # ok(hi) after the doubling; not ok(lo) (1 unit: no test at all)
    while not ok(hi):
        if hi >= most:
            return None
        lo, hi = hi, min(2 * hi, most)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


@functools.lru_cache(maxsize=None)
def _detectable_effect(n: int, alpha: float, power: float) -> float:
    """The standardised effect (delta / sd) of :func:`detectable_gain`."""
    from scipy import integrate, optimize, stats
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)

    def achieved(effect: float) -> float:
        # P(|Z + nc| > crit sqrt(V / df)), V ~ chi2(df): the noncentral t's two tails, integrated over V
        # (scipy's nct.sf returns nan far in the tail, e.g. df = 2 at a Holm-corrected alpha)
        nc = effect * math.sqrt(n)
        tails = stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
        if math.isfinite(tails) and 1e-12 < tails < 1:
            return float(tails) - power

        def f(v):
            c = crit * math.sqrt(v / df)
            return stats.chi2.pdf(v, df) * (stats.norm.sf(c - nc) + stats.norm.cdf(-c - nc))
        return integrate.quad(f, 0, math.inf, limit=200)[0] - power

    hi = 1.0
    while achieved(hi) < 0:
        hi *= 2
    return float(optimize.brentq(achieved, 0.0, hi, xtol=1e-12))


def paired_test(a: list[float], b: list[float]) -> tuple[float, float, float | None]:
    """(mean difference a - b, std of the differences, two-sided paired t-test p; None below 2 pairs, and None
    when every pair differs by the same amount: the t statistic is then 0/0 or infinite, which says more about
    a pipeline that ignores the set (or a coarse test split) than about the methods)."""
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    if n < 2:
        return mean, 0.0, None
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    if sd <= 1e-9 * max(1.0, abs(mean)):     # zero up to float rounding (47.23 - 46.63 is not exactly 0.6)
        return mean, 0.0, None
    from scipy import stats
    t = mean / (sd / math.sqrt(n))
    return mean, sd, float(2 * stats.t.sf(abs(t), n - 1))


def verdict(mean: float, p: float | None, alpha: float, n: int = 1) -> str:
    if p is None:
        return "no spread: no test" if n > 1 else "one seed: no test"
    if p >= alpha:
        return "within noise"
    return "**beats**" if mean > 0 else "**loses**"


def is_reference(label: str) -> bool:
    """The rows that are not compared with the baselines: full source (either kind) and no pre-training."""
    return label == NO_PRETRAIN or label.startswith(FULL_SOURCE)


def unit_values(rows: list[dict], by_set_seed: bool) -> dict[tuple, dict]:
    """Per (protocol, source, budget, target, metric, set): the value of each paired unit. With several
    distillation seeds the unit is the set seed (its evaluation seeds averaged), so a verdict is about the
    method, not one set; with one, the unit is the evaluation seed. Rows that do not depend on the set seed
    (full source, no pre-training) are keyed ``"*"`` and pair with every unit."""
    acc: dict[tuple, dict] = {}
    for r in rows:
        key = (r["protocol"], r["source"], r["budget"], r["target"], r["metric"], r["set"])
        if by_set_seed:
            unit = "*" if r.get("set_seed") is None else r["set_seed"]
        else:
            unit = r["seed"]
        acc.setdefault(key, {}).setdefault(unit, []).append(r["acc"])
    return {k: {u: sum(v) / len(v) for u, v in units.items()} for k, units in acc.items()}


def _pair(a: dict, b: dict) -> tuple[list, list]:
    if "*" in a and "*" in b:
        return [a["*"]], [b["*"]]
    if "*" in b:
        units = sorted(u for u in a if u != "*")
        return [a[u] for u in units], [b["*"]] * len(units)
    if "*" in a:
        units = sorted(u for u in b if u != "*")
        return [a["*"]] * len(units), [b[u] for u in units]
    units = sorted(set(a) & set(b))
    return [a[u] for u in units], [b[u] for u in units]


def compare(a: list[float], b: list[float]) -> dict:
    """The paired comparison of a with b: gain, sd of the differences, 95 % interval, two-sided p."""
    mean, sd, p = paired_test(a, b)
    ci = paired_ci([x - y for x, y in zip(a, b)]) if len(a) > 1 else None
    return {"gain": mean, "gain_std": sd, "ci": list(ci) if ci else None, "p": p, "n": len(a)}


def gains(cfg: LeaderboardConfig, rows: list[dict]) -> list[dict]:
    """Each row's gain over each baseline, and each pre-declared primary comparison (``cfg.primary``: any two rows),
    per (protocol, source, budget, target, metric), paired by unit (:func:`unit_values`).

    Two kinds of family. The primary comparisons form one family across the whole leaderboard, declared before the
    run and Holm-adjusted among themselves only. Every other comparison is secondary (exploratory): one table
    (protocol, source, budget) is one family, Holm-adjusted together. A comparison is in exactly one family. The
    verdict reads the adjusted p, and each comparison states the smallest gain it could detect with ``cfg.power``
    at Holm's strictest level of its family (alpha / the family's size) given its observed spread; primary ones
    also the number of units (set seeds) that would bring that down to ``cfg.target_gain``."""
    by_set = len(getattr(cfg, "distill_seeds", [0])) > 1
    vals = unit_values([r for r in rows if not r.get("application")], by_set)
    bases = all_baselines(cfg)
    prim = list(getattr(cfg, "primary", []) or [])
    app_rows = [r for r in rows if r.get("application") and not r.get("info")]
    apps = app_protocols(rows, cfg)
    out = app_gains(app_rows, by_set, [c for c in prim if c.protocol in apps])
    for (proto, src, n, tgt, metric, label), accs in vals.items():
        if is_reference(label):
            continue
        against = {} if label in bases else {b: False for b in bases}
        for c in prim:
            if c.set == label and c.protocol == proto and (not c.metrics or metric in c.metrics):
                against[c.vs] = True
        for base, primary in against.items():
            ref = vals.get((proto, src, n, tgt, metric, base))
            if not ref:
                continue
            a, b = _pair(accs, ref)
            out.append({"protocol": proto, "source": src, "budget": n, "target": tgt, "metric": metric, "set": label,
                        "baseline": base, "primary": primary, **compare(a, b)})
    families: dict[tuple, list[dict]] = {}
    for x in out:
        fam = ("primary", primary_family(x["protocol"], apps)) if x.get("primary") else \
            (x["protocol"], x["source"], x["budget"])
        if x.get("primary"):
            x["family_name"] = fam[1]
        families.setdefault(fam, []).append(x)
    power = getattr(cfg, "power", 0.8)
    for name, fam in families.items():
        # the primary family is as large as it was declared, whether or not its cells exist yet: the comparisons
        # still missing count as p = 1 in Holm's adjustment, and in the level the detectable gain is read at
        size = max(len(fam), declared_primary(cfg, rows, name[1])) if name[0] == "primary" else len(fam)
        adj = holm([x["p"] for x in fam] + [1.0] * (size - len(fam)))[: len(fam)]
        level = cfg.alpha / size
        for x, pa in zip(fam, adj):
            x["p_adj"], x["family"] = pa, size
            x["detectable"] = detectable_gain(x["gain_std"], x["n"], level, power)
            x["verdict"] = verdict(x["gain"], pa, cfg.alpha, x["n"])
            if name[0] == "primary":
                x["seeds_needed"] = seeds_needed(x["gain_std"], getattr(cfg, "target_gain", 2.0), level, power) \
                    if x["n"] > 1 else None
    return out


def app_protocols(rows: list[dict], cfg=None) -> set[str]:
    """The protocols (titles) that are applications: those of the rows that are application cells, and those the
    config names (so that a declared comparison without cells yet is placed in its family too)."""
    from .apps import is_application
    return ({r["protocol"] for r in rows if r.get("application")}
            | {p.title for p in getattr(cfg, "protocols", []) if is_application(p.name)})


def primary_family(protocol: str, apps: set[str]) -> str:
    """The primary family a comparison under ``protocol`` belongs to: each application protocol is a family of
    its own (an application preset answers its own question; issue 37), the evaluation protocols share one
    (``""``), as the leaderboard's pre-declared claims about the methods."""
    return protocol if protocol in apps else ""


def declared_primary(cfg: LeaderboardConfig, rows: list[dict], family: str | None = None) -> int:
    """How many comparisons a primary family holds by its declaration (``family``: :func:`primary_family`'s name;
    None: every family): each entry's metrics (those the protocol's cells report, info metrics aside, when it
    names none) times the targets and the source x budget groups."""
    groups = sum(len(s.budgets) for s in getattr(cfg, "sources", [])) or 1
    targets = len(getattr(cfg, "targets", [])) or 1
    apps = app_protocols(rows, cfg)
    n = 0
    for c in getattr(cfg, "primary", []) or []:
        if family is not None and primary_family(c.protocol, apps) != family:
            continue
        metrics = c.metrics or sorted({r["metric"] for r in rows if r.get("protocol") == c.protocol
                                       and not r.get("info")}) or [None]
        n += len(metrics) * groups * targets
    return n


def plan(cfg: LeaderboardConfig, rows: list[dict]) -> list[dict]:
    """Per primary comparison, from the cells that exist: the units it has, the spread of its paired differences,
    the gain it detects now, and the set seeds it needs for ``cfg.target_gain`` at ``cfg.power`` under the
    primary family's Holm correction (its strictest level, alpha / the family's size). A declared comparison
    with no cells yet is listed with ``n`` 0."""
    g = [x for x in gains(cfg, rows) if x.get("primary")]
    apps = app_protocols(rows, cfg)
    out = []
    for c in cfg.primary:
        found = [x for x in g if (x["protocol"], x["set"], x["baseline"]) == (c.protocol, c.set, c.vs)
                 and (not c.metrics or x["metric"] in c.metrics)]
        k = len(cfg.comparison_seeds(c)) if hasattr(cfg, "comparison_seeds") else len(cfg.distill_seeds)
        if not found:
            fam = primary_family(c.protocol, apps)
            out.append({"protocol": c.protocol, "set": c.set, "baseline": c.vs, "metric": ", ".join(c.metrics) or "*",
                        "target": "", "n": 0, "gain_std": None, "detectable": None, "seeds_needed": None,
                        "configured_seeds": k, "family_name": fam, "family": declared_primary(cfg, rows, fam)})
        out.extend({**x, "configured_seeds": k, **spread_inside_units(rows, x)} for x in found)
    return out


def spread_inside_units(rows: list[dict], x: dict) -> dict:
    """Where a comparison's spread comes from, when its units hold several evaluation seeds (students, probes:
    their initialisation and data order): the paired difference per (set seed, evaluation seed), split as a
    one-way random-effects ANOVA into the spread *inside* a unit (``sd_within``, pooled over units) and the spread
    of the set seed's own effect (``sd_between`` = sqrt(max(0, var(unit means) - sd_within^2 / k))), with ``k``
    the evaluation seeds per unit. The unit stays the set seed: averaging k students inside it shrinks only the
    sd_within^2 / k part of the variance its test sees. Empty when no unit has two evaluation seeds."""
    import numpy as np
    sign = -1.0 if any(r.get("lower_better") for r in rows if r.get("protocol") == x["protocol"]
                       and r.get("metric") == x["metric"]) else 1.0
    col = (x["protocol"], x["source"], x["budget"], x["target"], x["metric"])
    per: dict[str, dict] = {x["set"]: {}, x["baseline"]: {}}
    for r in rows:
        if (r.get("protocol"), r.get("source"), r.get("budget"), r.get("target"), r.get("metric")) == col \
                and r.get("set") in per and r.get("set_seed") is not None:
            per[r["set"]].setdefault(r["set_seed"], {}).setdefault(r["seed"], []).append(r["acc"])
    a, b = per[x["set"]], per[x["baseline"]]
    diffs = []
    for u in sorted(set(a) & set(b)):
        seeds = sorted(set(a[u]) & set(b[u]))
        diffs.append([sign * (float(np.mean(a[u][e])) - float(np.mean(b[u][e]))) for e in seeds])
    multi = [d for d in diffs if len(d) > 1]
    if not multi:
        return {}
    dof = sum(len(d) - 1 for d in multi)
    within = sum(float(np.sum((np.asarray(d) - np.mean(d)) ** 2)) for d in multi) / dof
    k = float(np.mean([len(d) for d in diffs]))
    means = [float(np.mean(d)) for d in diffs]
    total = float(np.var(means, ddof=1)) if len(means) > 1 else 0.0
    return {"sd_within": math.sqrt(within), "students": k,
            "sd_between": math.sqrt(max(0.0, total - within / k)),
            "students_share": None if total <= 0 else min(1.0, (within / k) / total)}


def app_gains(rows: list[dict], by_set_seed: bool, primary: list | None = None) -> list[dict]:
    """Application tables: each row that is not a real-image baseline against the best real-image baseline of
    its column (highest mean; lowest where the metric is lower-better, whose gains are then baseline - row,
    so that a positive gain is always an improvement), paired by unit as :func:`gains` pairs; and each
    pre-declared ``primary`` comparison of these protocols (``set`` against the named row ``vs``, which may be an
    application's reference such as ``reservoir (real)``), marked primary. A comparison is in one family only:
    where the best real row of a column is a primary comparison's ``vs``, that pair is read as primary alone."""
    vals = unit_values(rows, by_set_seed)
    real = {(r["protocol"], r["set"]) for r in rows if r.get("real")}
    lower = {(r["protocol"], r["metric"]) for r in rows if r.get("lower_better")}
    out = []
    for col in dict.fromkeys(k[:5] for k in vals):
        sign = -1.0 if (col[0], col[4]) in lower else 1.0
        keys = [k for k in vals if k[:5] == col]
        declared = [c for c in primary or [] if c.protocol == col[0] and (not c.metrics or col[4] in c.metrics)]
        taken = set()
        for c in declared:
            mine, ref = vals.get((*col, c.set)), vals.get((*col, c.vs))
            if not mine or not ref:
                continue
            a, b = _pair(mine, ref)
            taken.add((c.set, c.vs))
            out.append({"protocol": col[0], "source": col[1], "budget": col[2], "target": col[3], "metric": col[4],
                        "set": c.set, "baseline": c.vs, "primary": True,
                        **compare([sign * x for x in a], [sign * x for x in b])})
        bases = [k for k in keys if (col[0], k[5]) in real]
        if not bases:
            continue
        best = max(bases, key=lambda k: sign * sum(vals[k].values()) / len(vals[k]))
        for k in keys:
            if (col[0], k[5]) in real or (k[5], best[5]) in taken:
                continue
            a, b = _pair(vals[k], vals[best])
            out.append({"protocol": col[0], "source": col[1], "budget": col[2], "target": col[3], "metric": col[4],
                        "set": k[5], "baseline": best[5], "best_real": True,
                        **compare([sign * x for x in a], [sign * x for x in b])})
    return out


def headroom(cfg: LeaderboardConfig, rows: list[dict], g: list[dict]) -> list[dict]:
    """Per (protocol, source, budget, target, metric): full source (converged, else the equal-compute row)
    minus the first baseline, paired as the gains are; and the table's smallest detectable gain (the median
    over its comparisons; the headroom comparison's own when the table has none). ``separates`` is False when
    the headroom is under twice the detectable gain: such a setting cannot rank methods."""
    by_set = len(getattr(cfg, "distill_seeds", [0])) > 1
    vals = unit_values(rows, by_set)
    base = cfg.baselines[0] if cfg.baselines else None
    out = []
    for key in dict.fromkeys(k[:5] for k in vals):
        fulls = [k for k in vals if k[:5] == key and k[5].startswith(FULL_SOURCE)]
        conv = [k for k in fulls if "converged" in k[5]]
        ref = vals.get((*key, base))
        if not fulls or ref is None:
            continue
        full_key = (conv or fulls)[0]
        a, b = _pair(vals[full_key], ref)
        h = compare(a, b)
        fam = [x for x in g if (x["protocol"], x["source"], x["budget"], x["target"], x["metric"]) == key]
        m = max(1, len(fam) or 1)
        dets = sorted(x["detectable"] for x in fam if x.get("detectable") is not None)
        det = dets[len(dets) // 2] if dets else detectable_gain(h["gain_std"], h["n"], cfg.alpha / m)
        out.append({"protocol": key[0], "source": key[1], "budget": key[2], "target": key[3], "metric": key[4],
                    "full": full_key[5], "baseline": base, "headroom": h["gain"], "ci": h["ci"], "n": h["n"],
                    "detectable": det, "separates": None if det is None else bool(h["gain"] > 0 and h["gain"] >= 2 * det)})
    return out


def compute_axis(cfg: LeaderboardConfig, rows: list[dict], info: dict) -> list[dict]:
    """Quality against distillation compute (issue 34): the rows that are snapshots of one run (``at``) of the same
    method, per (protocol, source, budget, target, metric) and baseline: each snapshot's gain over the baseline,
    paired by set seed, with its interval; and the gain's growth per doubling of the steps. The growth is
    estimated per set seed (the least-squares slope of that unit's gains on log2(steps)) and averaged over set
    seeds with a t interval: the unit stays the set seed."""
    import numpy as np
    from .config import row_label
    snaps: dict[tuple, list] = {}
    for r in cfg.all_rows():
        if r.at is not None:
            snaps.setdefault((r.method, r.steps, json_key(r.params), r.budget), []).append(r)
    if not snaps:
        return []
    by_set = len(cfg.distill_seeds) > 1
    vals = unit_values([r for r in rows if not r.get("application")], by_set)
    out = []
    for (method, steps, _, _), members in snaps.items():
        members = sorted(members, key=lambda r: r.at)
        labels = [row_label(r) for r in members]
        for col in dict.fromkeys(k[:5] for k in vals if k[5] in labels):
            for base in cfg.baselines:
                ref = vals.get((*col, base))
                if not ref:
                    continue
                levels, per_unit = [], {}
                for r, label in zip(members, labels):
                    mine = vals.get((*col, label))
                    if not mine:
                        continue
                    a, b = _pair(mine, ref)
                    units = sorted(u for u in mine if u != "*" and u in ref) or ["*"]
                    for u, x, y in zip(units, a, b):
                        per_unit.setdefault(u, {})[r.at] = x - y
                    ri = next((gi["rows"].get(label) for name, gi in info.items()
                               if name == f"{col[1]} N={col[2]}"), None) or {}
                    levels.append({"label": label, "at": r.at, "seconds": ri.get("seconds"), "moved": ri.get("moved"),
                                   **compare(a, b)})
                slopes = [np.polyfit(np.log2(list(d)), list(d.values()), 1)[0]
                          for d in per_unit.values() if len(d) >= 2]
                ci = paired_ci(slopes) if len(slopes) > 1 else None
                out.append({"protocol": col[0], "source": col[1], "budget": col[2], "target": col[3], "metric": col[4],
                            "method": method, "steps": steps, "baseline": base, "levels": levels,
                            "slope": float(np.mean(slopes)) if slopes else None,
                            "slope_ci": list(ci) if ci else None, "n": len(slopes)})
    return out


def json_key(obj) -> str:
    import json
    return json.dumps(obj, sort_keys=True, default=str)
