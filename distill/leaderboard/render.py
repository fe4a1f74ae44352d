"""The report: Markdown tables per protocol, the compact summary, the bar chart, the docs blocks."""
from __future__ import annotations

from pathlib import Path

from ..config import to_dict
from ..engine.files import write_block, write_json, write_text
from ..evaluate.report import aggregate, fmt
from .apps import get_application, is_application
from .config import EQUAL_BYTES, LeaderboardConfig, _slug, all_baselines
from .stats import compute_axis, declared_primary, gains, headroom, plan

def write_leaderboard(cfg: LeaderboardConfig, rows: list[dict], info: dict, seconds: float) -> dict:
    out = Path(cfg.output)
    by_set = len(cfg.distill_seeds) > 1
    more = [d for d in cfg.all_seeds() if d not in cfg.distill_seeds]
    own = ("; " + ", ".join(f"{c.set} vs {c.vs} under `{c.protocol}` at set seeds {_seed_list(cfg.comparison_seeds(c))}"
                            for c in cfg.primary if c.seeds) + ", their own") if more else ""
    unit = (f"distillation seed (sets made with seeds {list(cfg.distill_seeds)}{own}, each evaluated with seeds "
            f"{list(cfg.seeds)}, averaged inside a set seed)") if by_set else \
        f"evaluation seed (seeds {list(cfg.seeds)}; every set made once, distillation seed {cfg.distill_seeds[0]})"
    keys = ("protocol", "source", "budget", "set", "target", "metric")
    agg = aggregate(rows, keys)
    g = gains(cfg, rows)
    room = headroom(cfg, rows, g)
    not_percent = {(r["protocol"], r["metric"]) for r in rows if r.get("percent") is False}
    md = [f"### Leaderboard `{cfg.name}`\n"]
    planned = plan(cfg, rows) if cfg.primary else []
    if cfg.primary:
        md.extend(primary_markdown(cfg, planned, declared_primary(cfg, rows)))
    blind = [h for h in room if h["separates"] is False]
    if blind:
        worst = max(h["detectable"] for h in blind)
        md.append(f"**{'Secondary comparisons: this' if cfg.primary else 'This'} setting cannot separate methods closer "
                  f"than {worst:.1f} points**: in "
                  f"{len(blind)} of {len(room)} protocol x metric columns the headroom (full source minus "
                  f"`{cfg.baselines[0]}`) is under twice the smallest detectable gain (below).\n")
    dets = sorted(x["detectable"] for x in g if x.get("detectable") is not None
                  and (x["protocol"], x["metric"]) not in not_percent)
    if not room and dets:      # no full-source row: the resolution is all the table can say about itself
        md.append(f"**No full-source row, so no headroom is measured; the comparisons below could detect true gains "
                  f"of {dets[0]:.1f}-{dets[-1]:.1f} points (median {dets[len(dets) // 2]:.1f}) with 80 % power, and "
                  f"nothing smaller.**\n")
    md.append(f"Architecture `{cfg.arch}`; test top-1 (%), mean ± sample std over every cell of a row; no checkpoint "
              f"selection. Paired unit: the {unit}. Each gain has its 95 % interval and its two-sided paired t-test "
              f"p, Holm-adjusted over " + ("its family (the primary family, or the table's secondary comparisons)"
                                           if cfg.primary else "the table's comparisons") +
              f"; the verdict reads the adjusted p at alpha {cfg.alpha}. "
              f"\"det.\" is the smallest true gain that comparison would detect with {_pct(cfg.power)} power at Holm's "
              f"strictest level (alpha / comparisons in its family), given its observed spread.\n")
    if cfg.secondary_seeds:
        md.append(f"Rows outside the primary family were made with set seeds {list(cfg.secondary_seeds)} only; their "
                  "comparisons pair the set seeds both rows have.\n")
    stamps = [(gname, gi["stamps"]) for gname, gi in info.items() if gi.get("stamps")]
    for gname, gi in info.items():
        if gi.get("commits"):
            md.append(f"Result files ({gname}): {sum(gi['commits'].values())} cells in the config's `results:` folder, "
                      "made at commit " + ", ".join(f"{c} ({n})" for c, n in gi["commits"].items())
                      + "; this table is rendered from them alone.\n")
    for gname, st in stamps:
        md.append(f"Machines ({gname}): " + "; ".join(f"{_units(seeds)} on {kind}" for seeds, kind in st)
                  + (" (**a mix**: each set seed on one machine, so pairs are never split across them)"
                     if len(st) > 1 else "") + ".\n")
    for group, gi in info.items():
        if line := compute_line(cfg, group, gi):
            md.append(line)
    for group, gi in info.items():
        for p in cfg.protocols:
            sub = [a for a in agg if a["protocol"] == p.title and f"{a['source']} N={a['budget']}" == group]
            if not sub:
                continue
            cols = list(dict.fromkeys((a["target"], a["metric"]) for a in sub))
            labels = list(dict.fromkeys(a["set"] for a in sub))
            cell = {(a["set"], a["target"], a["metric"]): a for a in sub}
            md.append(f"#### {group}, protocol `{p.title}`\n")
            # an application that does not use the sets (continual distils per experience) reads no experts,
            # classifier or set columns
            own = p.title in gi.get("own_memory", ())
            md.append(f"Source: {gi['source']} ({gi['source_images']} training images); {gi['teacher']}"
                      + (f"; {gi['experts']}" if gi.get("experts") and not own else "")
                      + (f"; {gi['classifier']}" if gi.get("classifier") and not own else "") + ".\n")
            if gi.get("apps", {}).get(p.title):
                md.append(gi["apps"][p.title] + "\n")
            pct = [a for a in sub if (p.title, a["metric"]) not in not_percent]
            if pct:            # (a rank correlation or a speed-up has no binomial test error)
                md.append(test_note(gi.get("tests", {}), pct))
            lent = {} if own else _lent_columns(cfg, rows, p.title, group)
            lcols = list(dict.fromkeys(c for v in lent.values() for c in v if c != "_from"))
            head = (["set"] + [f"{t} {m}" for t, m in cols] + ([] if own else ["distill time", "storage (images)"])
                    + lcols)
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for label in labels:
                vals = [fmt(c["mean"], c["std"], c["n"]) if (c := cell.get((label, t, m))) else "–" for t, m in cols]
                r = gi["rows"].get(label, {})
                secs = f"{r['seconds']:.0f} s" if r.get("seconds") is not None else "–"
                store = f"{r['image_equivalents']:.1f}" if r.get("image_equivalents") is not None else "–"
                lines.append("| " + " | ".join([label] + vals + ([] if own else [secs, store])
                                               + [lent.get(label, {}).get(c, "–") for c in lcols]) + " |")
            md.append("\n".join(lines) + "\n")
            if lcols:
                md.append("The last column(s) come from the " + ", ".join(
                    f"`{q}`" for q in dict.fromkeys(q for v in lent.values() for q in v.get("_from", ())))
                    + " protocol's cells for the same sets.\n")
            hsub = [h for h in room if h["protocol"] == p.title and f"{h['source']} N={h['budget']}" == group]
            for h in hsub:
                ci = f" [{h['ci'][0]:+.2f}, {h['ci'][1]:+.2f}]" if h["ci"] else ""
                det = "–" if h["detectable"] is None else f"{h['detectable']:.2f}"
                md.append(f"- {h['target']} {h['metric']}: headroom ({h['full']} − {h['baseline']}) "
                          f"**{h['headroom']:+.2f}**{ci} over {h['n']} pair(s); smallest detectable gain {det}"
                          + ("" if h["separates"] is not False else
                             f"; **this setting cannot separate methods closer than {det} points**"))
            if hsub:
                md.append("")
            gsub = [x for x in g if x["protocol"] == p.title and f"{x['source']} N={x['budget']}" == group]
            if not hsub and any(x.get("best_real") for x in gsub):
                # an application has no full-source ceiling: state what each column can resolve
                for t, m in cols:
                    dets = sorted(x["detectable"] for x in gsub if (x["target"], x["metric"]) == (t, m)
                                  and x.get("detectable") is not None)
                    if dets:
                        md.append(f"- {t} {m}: smallest detectable gain over the best real-image baseline "
                                  f"{dets[len(dets) // 2]:.2f} (median of {len(dets)} comparisons)")
                md.append("")
            if cfg.primary and any(not x.get("primary") for x in gsub):
                md.append("Secondary comparisons (**exploratory**: not declared before the run; Holm within this "
                          "table):\n")
            gsub = [x for x in gsub if not x.get("primary")] if cfg.primary else gsub
            if gsub:
                md.append("| set | vs | " + " | ".join(f"{t} {m}" for t, m in cols) + " |")
                md.append("|---|---|" + "---|" * len(cols))
                best = any(x.get("best_real") for x in gsub)
                for label in dict.fromkeys(x["set"] for x in gsub):
                    for base in (["best real"] if best else all_baselines(cfg)):
                        vals = []
                        for t, m in cols:
                            x = next((x for x in gsub if (x["set"], x["target"], x["metric"]) == (label, t, m)
                                      and (x["baseline"] == base or best)), None)
                            vals.append("–" if x is None else gain_cell(x) + (f" vs {x['baseline']}" if best else ""))
                        md.append(f"| {label} | {base} | " + " | ".join(vals) + " |")
                md.append("")
            if is_application(p.name):
                own_rows = [r for r in rows if r["protocol"] == p.title and f"{r['source']} N={r['budget']}" == group]
                md.extend(get_application(p.name).render(own_rows, out, f"{group}, protocol `{p.title}`"))
    axis = compute_axis(cfg, rows, info)
    if axis:
        md.extend(compute_markdown(axis, out / "compute.png"))
    text = "\n".join(md) + "\n"
    summary = summary_markdown(cfg, agg, g, planned)
    real = {(r["protocol"], r["set"]) for r in rows if r.get("real")}
    plot = _plot(cfg, agg, out / "leaderboard.png", not_percent, real)
    paths = {"md": write_text(out / "results.md", f"# Leaderboard {cfg.name}\n\n" + text + f"\n![plot]({plot.name})\n"),
             "json": write_json(out / "results.json", {"rows": rows, "aggregate": agg, "gains": g, "headroom": room,
                                                      "compute": axis,
                                                      "info": info,
                                                      "config": to_dict(cfg), "seconds": round(seconds, 1)}),
             "plot": plot}
    return {"markdown": text, "summary": summary, "rows": rows, "gains": g, "headroom": room, "aggregate": agg,
            "paths": paths,
            "seconds": seconds}


def _earlier_snapshots(cfg: LeaderboardConfig) -> set[str]:
    """The labels of snapshot rows that another row of the same run (a later ``at``) includes."""
    from .config import row_label, run_identity
    last: dict[str, int] = {}
    for r in cfg.all_rows():
        if r.at is not None:
            last[run_identity(r, None)] = max(last.get(run_identity(r, None), 0), r.at)
    return {row_label(r) for r in cfg.all_rows() if r.at is not None and r.at < last[run_identity(r, None)]}


def _lent_columns(cfg, rows: list[dict], title: str, group: str) -> dict[str, dict[str, str]]:
    """Columns other application protocols of the same source and budget lend to this table (by set label)."""
    out: dict[str, dict] = {}
    for q in cfg.protocols:
        if q.title == title or not is_application(q.name):
            continue
        qrows = [r for r in rows if r["protocol"] == q.title and f"{r['source']} N={r['budget']}" == group]
        for label, c in get_application(q.name).columns_for(qrows).items():
            d = out.setdefault(label, {"_from": []})
            d.update(c)
            d["_from"].append(q.title)
    return out


UNIT_NOTE = ("The unit of every test is the set seed: a set seed draws its own subset, initialisation and "
             "distillation randomness, which is the variation a user meets when making a set. Evaluation seeds inside "
             "a set seed re-evaluate the same images, so they measure the evaluation's noise around one set, not the "
             "method's spread over sets; they are averaged into one value per set seed and never counted as extra "
             "samples (counting them would shrink the interval without adding what a claim about the method needs).")


def _units(seeds: list) -> str:
    """``set seeds 0-9``, ``set seed 3 and the references``, ``the references``."""
    nums = [x for x in seeds if x != "references"]
    head = f"set seed{'s' if len(nums) > 1 else ''} {_seed_list(nums)}" if nums else ""
    tail = "the references" if "references" in seeds else ""
    return " and ".join(x for x in (head, tail) if x)


def _seed_list(seeds: list) -> str:
    """``0-9`` or ``0, 2, 5`` (and "the references" for the unit of the rows without a set seed)."""
    refs = "references" in seeds
    seeds = sorted(x for x in seeds if x != "references")
    if refs:
        return (_seed_list(seeds) + " and " if seeds else "") + "the references"
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _pct(power: float) -> str:
    return f"{power * 100:.0f} %"


def _families(planned: list[dict]) -> dict[str, tuple[list[dict], int]]:
    """The primary comparisons by family (``family_name``: an application protocol, or "" for the evaluation
    protocols), each with its size as declared (the largest ``family`` of its entries; else how many it lists)."""
    out: dict[str, list[dict]] = {}
    for x in planned:
        out.setdefault(x.get("family_name", ""), []).append(x)
    return {f: (xs, max((x.get("family") or 0 for x in xs), default=0) or len(xs)) for f, xs in out.items()}


def _family_title(name: str) -> str:
    return f"`{name}`" if name else "the evaluation protocols"


#: primary metrics whose gains are not percentage points (a rank correlation, an overlap fraction)
_UNITLESS = ("kendall tau", "spearman", "top-5 overlap")


def _unit(planned: list[dict]) -> str:
    """What a gain of these comparisons is measured in: "points" (accuracies), else "in <metric>" (NAS's Kendall
    tau), so that a goal of 0.10 in tau is not printed as 0.10 points."""
    ms = {str(x.get("metric", "")) for x in planned}
    if ms and all(m.endswith(_UNITLESS) for m in ms):
        return "in " + " / ".join(sorted(m.replace("kendall", "Kendall") for m in ms))
    return "points"


def _column_unit(planned: list[dict]) -> str:
    """The unit in a column head: "pts", or the metric's name ("Kendall tau")."""
    unit = _unit(planned)
    return "pts" if unit == "points" else unit.removeprefix("in ")


def _goal(target: float, unit: str) -> str:
    """"the 2-point goal" (accuracies, as the tables have always said) or "the goal of 0.1 in Kendall tau"."""
    return f"the {target:g}-point goal" if unit == "points" else f"the goal of {target:g} {unit}"


def primary_markdown(cfg: LeaderboardConfig, planned: list[dict], declared: int = 0) -> list[str]:
    """The primary family first: what it can resolve (its first line), then each comparison with its interval,
    Holm-adjusted p (within the family, counted as declared), verdict, detectable gain and the set seeds it would
    need; a declared comparison without cells yet is listed as such. Each application protocol is a family of its
    own (one first line each); the evaluation protocols share one."""
    target = cfg.target_gain
    fams = _families(planned) or {"": ([], 0)}
    out = []
    for fam_name, (mine, size) in fams.items():
        size = max(size, declared) if len(fams) == 1 else size
        out.append(_family_head(cfg, mine, size, f" of `{fam_name}`" if fam_name else "") + "\n")
    out.append(UNIT_NOTE + "\n")
    short = _column_unit(planned)
    out.append("| primary comparison | protocol | metric | set seeds | gain [95 % CI] | p / Holm | verdict | "
               f"det. | set seeds for {target:g} {short} |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for x in planned:
        if x["n"] == 0:
            out.append(f"| {x['set']} vs {x['baseline']} | {x['protocol']} | {x['metric']} | 0 | not measured yet "
                       "| – | – | – | – |")
            continue
        ci = f" [{x['ci'][0]:+.2f}, {x['ci'][1]:+.2f}]" if x.get("ci") else ""
        p = "–" if x["p"] is None else f"{x['p']:.4f} / {x['p_adj']:.4f}"
        det = "–" if x.get("detectable") is None else f"{x['detectable']:.2f}"
        need = x.get("seeds_needed")
        need_s = "–" if x["n"] < 2 else (">1000" if need is None else str(need))
        out.append(f"| {x['set']} vs {x['baseline']} | {x['protocol']} | {x['target']} {x['metric']} | {x['n']} | "
                   f"{x['gain']:+.2f}{ci} | {p} | {x['verdict']} | {det} | {need_s} |")
    out.append("")
    return out


def _family_head(cfg: LeaderboardConfig, planned: list[dict], size: int, which: str = "") -> str:
    """One primary family's first line: what it resolves, or how many set seeds it would need."""
    target = cfg.target_gain
    prim = [x for x in planned if x["n"] > 0]
    missing = [x for x in planned if x["n"] == 0]
    dets = [x["detectable"] for x in prim if x.get("detectable") is not None]
    ns = sorted({x["n"] for x in prim})
    short = [x for x in prim if x.get("detectable") is None or x["detectable"] > target]
    fam = f"Primary family{which} ({size} pre-declared comparisons, Holm among themselves"
    unit = _unit(planned)
    if not prim:
        return f"**{fam}): no cells yet, so nothing is resolved.**"
    if not short and not missing:
        return (f"**{fam}, {_seed_list(ns)} set seeds): resolves true gains of {max(dets):.2f} {unit} or more in "
                f"every comparison ({min(dets):.2f}-{max(dets):.2f}, {_pct(cfg.power)} power), within "
                f"{_goal(target, unit)}.**")
    need = [x.get("seeds_needed") for x in short]
    need_s = ""
    if short:
        need_s = ("; it would need " + (f"up to {max(n for n in need if n)} set seeds" if any(need) else
                                        "more than 1000 set seeds") + f" to resolve {target:g} {unit}"
                  + (" (some never at this spread)" if any(n is None for n in need) and any(need) else ""))
    miss_s = f"; {len(missing)} not measured yet" if missing else ""
    rng = f"{min(dets):.2f}-{max(dets):.2f}" if dets else "no"
    return (f"**{fam}, {_seed_list(ns)} set seeds so far): resolves true gains of {rng} {unit} "
            f"({_pct(cfg.power)} power); {len(short)} of {size} comparisons cannot resolve {_goal(target, unit)} "
            f"yet{need_s}{miss_s}.**")


def compute_markdown(axis: list[dict], png: Path) -> list[str]:
    """The compute section: per method and column, each snapshot's gain over each baseline (paired by set seed),
    its distillation seconds and how far its images moved from their start; the growth per doubling of the steps;
    and a two-panel plot (gain against seconds; pixel change against seconds)."""
    out = ["#### Quality against distillation compute\n",
           "Each method's run is snapshotted at 1x, 3x, ... its CPU preset's steps (one run per set seed, so the "
           "snapshots of a set seed share their start and their randomness); each snapshot is evaluated like any row "
           "and paired with the baseline by set seed. \"per doubling\" is the mean over set seeds of each unit's "
           "least-squares slope of gain on log2(steps), with its 95 % t interval over set seeds. \"moved\" is the "
           "RMS per-pixel change (pixel values in [0, 1]) from the real images the run started from.\n",
           "| method | column | vs | " + "snapshots: steps, seconds, gain [95 % CI], moved | per doubling |",
           "|---|---|---|---|---|"]
    for a in axis:
        snaps = "; ".join(
            f"{lv['at']}: {_secs(lv['seconds'])}, {lv['gain']:+.2f}"
            + (f" [{lv['ci'][0]:+.2f}, {lv['ci'][1]:+.2f}]" if lv.get("ci") else "")
            + ("" if lv.get("moved") is None else f", {lv['moved']:.3f}") for lv in a["levels"])
        slope = "–" if a["slope"] is None else f"{a['slope']:+.2f}" + (
            f" [{a['slope_ci'][0]:+.2f}, {a['slope_ci'][1]:+.2f}]" if a.get("slope_ci") else "") + f" (n {a['n']})"
        out.append(f"| {a['method']} ({a['steps']} steps) | {a['protocol']} {a['target']} {a['metric']} | "
                   f"{a['baseline']} | {snaps} | {slope} |")
    out.append("")
    _compute_plot(axis, png)
    out.append(f"![quality against compute]({png.name})\n")
    return out


def _secs(v) -> str:
    return "–" if v is None else f"{v:.0f} s"


def _compute_plot(axis: list[dict], path: Path) -> Path:
    from ..viz import matplotlib_pyplot, save_figure
    plt = matplotlib_pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    for a in axis:
        lv = [x for x in a["levels"] if x.get("seconds")]
        if not lv:
            continue
        name = f"{a['method']} vs {a['baseline']}: {a['protocol']} {a['metric']}"
        secs = [x["seconds"] for x in lv]
        lo = [x["gain"] - x["ci"][0] if x.get("ci") else 0 for x in lv]
        hi = [x["ci"][1] - x["gain"] if x.get("ci") else 0 for x in lv]
        ax.errorbar(secs, [x["gain"] for x in lv], yerr=[lo, hi], marker="o", capsize=3, label=name)
        if any(x.get("moved") is not None for x in lv):
            bx.plot(secs, [x.get("moved") for x in lv], marker="o", label=a["method"])
    ax.axhline(0, color="k", lw=0.8)
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    for x in (ax, bx):
        x.set_xscale("log")
        x.xaxis.set_major_formatter(ScalarFormatter())
        x.xaxis.set_minor_formatter(NullFormatter())
        x.set_xlabel("distillation seconds (log)")
        x.grid(alpha=0.3)
    ax.set_ylabel("gain over the baseline (points, 95 % CI)")
    ax.set_title("gain against distillation compute", fontsize=9)
    bx.set_ylabel("RMS pixel change from the start")
    bx.set_title("how far the images moved", fontsize=9)
    ax.legend(fontsize=6)
    handles, labels = bx.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    if uniq:
        bx.legend(uniq.values(), uniq.keys(), fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def compute_line(cfg: LeaderboardConfig, group: str, gi: dict) -> str:
    """What a rerun of the table's cells and sets from scratch costs, summed over every sitting's result files."""
    cells_s = gi.get("cell_seconds") or []
    if not cells_s:
        return ""
    # snapshots of one run (rows with `at`) cost their run once: only the latest snapshot's seconds count
    early = _earlier_snapshots(cfg)
    dist_s = sum((r.get("seconds") or 0) * (r.get("sets") or 1) for label, r in gi.get("rows", {}).items()
                 if label not in early)
    # protocols that make their own memory (continual replay distils inside each cell) read no sets, experts or
    # classifier: the shared results folder's lines for those belong to the other applications
    own_all = _own_memory_only(cfg, gi)
    return (f"Compute for {group}, summed over every sitting (what a rerun from scratch costs on this machine): "
            + ("no sets made (each method distils inside its cells)" if own_all
               else f"making the sets {_duration(dist_s)}")
            + f", evaluating {len(cells_s)} cells {_duration(sum(cells_s))}"
            + (" (experts and classifiers: in their lines below)"
               if (gi.get("experts") or gi.get("classifier")) and not own_all else "") + ".\n")


def _own_memory_only(cfg: LeaderboardConfig, gi: dict) -> bool:
    """Every protocol of the table makes its own memory (reads none of the rows' sets)."""
    own = set(gi.get("own_memory") or ())
    return bool(own) and all(p.title in own for p in cfg.protocols)


def plan_cost(cfg: LeaderboardConfig, planned: list[dict], info: dict) -> list[str]:
    """What one more set seed of each primary family costs on the machines of its result files so far: the mean
    seconds of a cell of each row a comparison reads, times the evaluation seeds, plus the mean distillation seconds
    of the rows' sets (not for an application that makes its own memory), and what the set seeds the family still
    needs for the goal would cost at that rate."""
    out = []
    for group, gi in info.items():
        by = gi.get("cell_seconds_by") or {}
        for fam, (mine, _) in _families(planned).items():
            protos = sorted({x["protocol"] for x in mine})
            labels = {(x["protocol"], lab) for x in mine for lab in (x["set"], x["baseline"])}
            cells = [sum(v) / len(v) * len(cfg.seeds) for (pr, lab) in labels if (v := by.get(f"{pr}|{lab}"))]
            own = set(gi.get("own_memory") or ())
            sets = [r["seconds"] for lab, r in (gi.get("rows") or {}).items()
                    if r.get("seconds") and any((pr, lab) in labels for pr in protos if pr not in own)]
            if not cells:
                continue
            per = sum(cells) + sum(sets)
            have = max((x["n"] for x in mine), default=0)
            need = [x.get("seeds_needed") for x in mine if x["n"] > 1]
            more = (max(n for n in need if n) - have) if any(need) else None
            line = (f"- {group}, {_family_title(fam)}: one more set seed of its rows costs about {_duration(per)} "
                    f"({_duration(sum(cells))} of cells for {len(cells)} rows x {len(cfg.seeds)} evaluation seed(s)"
                    + (f", {_duration(sum(sets))} of distillation" if sets else "") + ")")
            if more is not None and more > 0:
                line += f"; the {more} more the goal needs, about {_duration(more * per)}"
            out.append(line + ".")
    if out:
        out = ["", "Cost, from the result files' own seconds (the machines they ran on):"] + out
    return out


def plan_markdown(cfg: LeaderboardConfig, planned: list[dict], info: dict | None = None) -> str:
    """``ssdd leaderboard --plan``: per primary comparison, the spread observed so far and the set seeds needed;
    where units hold several evaluation seeds, how much of the spread is the students' (inside a unit) and how
    much the set seed's own."""
    from .stats import detectable_gain, seeds_needed
    sizes = {f: size for f, (_, size) in _families(planned).items()}
    fam_text = "; ".join(f"{_family_title(f)}: {n} comparisons, strictest level alpha / {n} = "
                         f"{cfg.alpha / max(1, n):.4f}" for f, n in sizes.items())
    inside = any(x.get("sd_within") is not None for x in planned)
    lines = [f"Power plan for `{cfg.name}`: {len(planned)} primary comparison(s), Holm within each family ({fam_text}); "
             f"goal: detect a true gain of {cfg.target_gain:g} {_unit(planned)} with {_pct(cfg.power)} power; "
             f"configured set seeds: {len(cfg.distill_seeds)}"
             + (" (more where a comparison states its own `seeds`)" if any(c.seeds for c in cfg.primary) else "")
             + f"; evaluation seeds per set seed: {len(cfg.seeds)}.", "", UNIT_NOTE, ""]
    short = _column_unit(planned)
    head = (f"| comparison | protocol | metric | set seeds so far | sd of paired differences | det. now | "
            f"configured set seeds | det. at those | set seeds for {cfg.target_gain:g} {short} |")
    rule = "|---|---|---|---|---|---|---|---|---|"
    if inside:
        head += (" students per unit | sd inside a unit | sd of the set seed's effect | students' share | "
                 f"set seeds for {cfg.target_gain:g} {short}, students averaged away |")
        rule += "---|---|---|---|---|"
    lines += [head, rule]
    f = (lambda v: "–" if v is None else f"{v:.2f}")
    for x in planned:
        level = cfg.alpha / max(1, sizes.get(x.get("family_name", ""), 1))
        sd = x.get("gain_std") if x["n"] > 1 else None       # one unit has no spread to plan from
        k = x.get("configured_seeds") or len(cfg.distill_seeds)
        at_cfg = None if not sd else detectable_gain(sd, k, level, cfg.power)
        need = x.get("seeds_needed")
        line = (f"| {x['set']} vs {x['baseline']} | {x['protocol']} | {x.get('target', '')} {x['metric']} | "
                f"{x['n']} | {f(sd)} | {f(x.get('detectable'))} | {k} | {f(at_cfg)} | "
                f"{'–' if x['n'] < 2 else ('>1000' if need is None else need)} |")
        if inside:
            if x.get("sd_within") is None:
                line += " – | – | – | – | – |"
            else:
                floor = seeds_needed(x["sd_between"], cfg.target_gain, level, cfg.power)
                share = x.get("students_share")
                line += (f" {x['students']:g} | {f(x['sd_within'])} | {f(x['sd_between'])} | "
                         f"{'–' if share is None else f'{100 * share:.0f} %'} | "
                         f"{'>1000' if floor is None else floor} |")
        lines.append(line)
    lines += ["", "The spread is that of the paired differences over set seeds observed so far; with few set seeds it "
              "is itself uncertain, so plan with margin and re-plan as units arrive."]
    lines += plan_cost(cfg, planned, info or {})
    if inside:
        lines.append("The students' share is the part of a unit's variance that averaging more evaluation seeds "
                     "(students, probes) inside it would remove (sd inside a unit squared over the students per "
                     "unit, against the variance of the unit means); the last column is the set seeds needed if it "
                     "were all removed: the floor that more students per unit cannot lower.")
    return "\n".join(lines) + "\n"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def test_note(tests: dict, sub: list[dict]) -> str:
    """What each target was tested on; a ``test_per_class`` shortcut is flagged with its binomial standard
    error at the table's mean accuracy (sqrt(p (1 - p) / n))."""
    import math
    parts = []
    for name, (n, per_class) in tests.items():
        if per_class:
            accs = [a["mean"] for a in sub if a["target"] == name]
            p = (sum(accs) / len(accs) / 100) if accs else 0.5
            se = 100 * math.sqrt(max(p * (1 - p), 1e-9) / n)
            parts.append(f"{name}: **{n} test images only** (test_per_class {per_class}, a shortcut): binomial "
                         f"standard error {se:.2f} points at {100 * p:.0f} %")
        else:
            parts.append(f"{name}: the whole test split ({n} images)")
    return ("Test: " + "; ".join(parts) + ".\n") if parts else ""


def gain_cell(x: dict) -> str:
    """``+1.20 [-0.50, +2.90] p 0.040 / Holm 0.310, within noise; det. 3.10``"""
    if x["p"] is None:
        return f"{x['gain']:+.2f} ({x['verdict']})"
    ci = f" [{x['ci'][0]:+.2f}, {x['ci'][1]:+.2f}]" if x.get("ci") else ""
    det = f"; det. {x['detectable']:.2f}" if x.get("detectable") is not None else ""
    return f"{x['gain']:+.2f}{ci} p {x['p']:.3f} / Holm {x['p_adj']:.3f}, {x['verdict']}{det}"


_MARK = {"**beats**": "+", "**loses**": "−", "within noise": "=", "one seed: no test": "?", "no spread: no test": "?"}


def primary_words(planned: list[dict]) -> str:
    """The primary family in one paragraph of words: each comparison's verdict with its gain, interval and Holm p,
    what it can resolve, and the headline (how many beat their baseline)."""
    done = [x for x in planned if x["n"] > 0]
    if not done:
        return ""
    said = []
    for x in done:
        ci = f" [{x['ci'][0]:+.2f}, {x['ci'][1]:+.2f}]" if x.get("ci") else ""
        p = "" if x.get("p_adj") is None else f", Holm p {x['p_adj']:.3g}"
        what = f"{x['set']} vs {x['baseline']} ({x['protocol']} {x['metric']}, {x['n']} set seeds)"
        said.append(f"{what}: {x['verdict']}, {x['gain']:+.2f}{ci}{p}")
    beats = sorted({f"{x['set']} over {x['baseline']}" for x in done if x["verdict"] == "**beats**"})
    loses = sorted({f"{x['set']} to {x['baseline']}" for x in done if x["verdict"] == "**loses**"})
    dets = [x["detectable"] for x in done if x.get("detectable") is not None]
    fams = _families(planned)
    holm_s = (f"Holm among its {next(iter(fams.values()))[1]} comparisons" if len(fams) == 1 else
              "Holm within each family: " + ", ".join(f"{_family_title(f)} {n}" for f, (_, n) in fams.items()))
    head = (f"**In words** (the pre-declared primary family, {holm_s}; each resolves a "
            f"true gain of {min(dets):.2f}-{max(dets):.2f} {_unit(done)}): " if dets else "**In words** (the primary family): ")
    head += ("a gain that survives: " + "; ".join(beats) + ". " if beats else "no comparison shows a gain. ")
    head += ("Losses: " + "; ".join(loses) + ". " if loses else "")
    unbeaten = [b for b in dict.fromkeys(x["baseline"] for x in done)
                if not any(x["baseline"] == b and x["verdict"] == "**beats**" for x in done)]
    head += ("Nothing beats " + " or ".join(f"`{b}`" for b in unbeaten) + " in its primary comparisons. " if unbeaten
             else "")
    return head + "Each: " + "; ".join(said) + ".\n"


def summary_markdown(cfg: LeaderboardConfig, agg: list[dict], g: list[dict], planned: list[dict] | None = None) -> str:
    """One compact table per source x budget: each row's mean under every (protocol, target, metric),
    with its paired verdict against each baseline (+ beats, − loses, = within noise); first, when the config
    declares a primary family, its verdicts in words (:func:`primary_words`)."""
    base_short = {b: "".join(w[0] for w in b.split("_")) for b in cfg.baselines}
    base_short.update({b + EQUAL_BYTES: k + "=B" for b, k in list(base_short.items()) if b + EQUAL_BYTES in all_baselines(cfg)})
    if any(x.get("best_real") for x in g):
        base_short["best real"] = "br"
    used = {"best real" if x.get("best_real") else x["baseline"] for x in g}
    base_short = {b: k for b, k in base_short.items() if b in used or b in cfg.baselines}
    for i, b in enumerate(sorted(b for b in used if b not in base_short)):    # a primary comparison's named row
        base_short[b] = f"p{i + 1}"                                           # (an application's reference)
    out = []
    for src, n in dict.fromkeys((a["source"], a["budget"]) for a in agg):
        sub = [a for a in agg if (a["source"], a["budget"]) == (src, n)]
        cols = list(dict.fromkeys((a["protocol"], a["target"], a["metric"]) for a in sub))
        cell = {(a["set"], a["protocol"], a["target"], a["metric"]): a for a in sub}
        verdicts = {(x["set"], "best real" if x.get("best_real") else x["baseline"], x["protocol"], x["target"],
                     x["metric"]): _MARK.get(x["verdict"], "?")
                    for x in g if (x["source"], x["budget"]) == (src, n)}
        seeds = (f"{len(cfg.distill_seeds)} distillation seeds x {len(cfg.seeds)} evaluation seed(s)"
                 if len(cfg.distill_seeds) > 1 else f"{len(cfg.seeds)} seeds")
        if len(cfg.distill_seeds) > 1 and (cfg.secondary_seeds or any(c.seeds for c in cfg.primary)):
            have = max((a["n"] for a in sub), default=0) // max(1, len(cfg.seeds))     # set seeds with cells so far
            seeds = (f"each row's distillation seeds x {len(cfg.seeds)} evaluation seed(s): {len(cfg.distill_seeds)} "
                     "for the rows the primary family reads"
                     + (f" ({have} so far)" if have < len(cfg.distill_seeds) else "")
                     + (f", {len(cfg.secondary_seeds)} for the others" if cfg.secondary_seeds else "")
                     + "".join(f", {len(c.seeds)} for {c.set} vs {c.vs} under `{c.protocol}`"
                               for c in cfg.primary if c.seeds))
        out.append(f"**{src}, N = {n}** (test top-1 %, mean of {seeds}; after each number its paired "
                   "verdict against " + ", ".join(f"`{b}` ({k})" for b, k in base_short.items())
                   + ": + beats, − loses, = within noise, Holm-adjusted p < " + f"{cfg.alpha})\n")
        head = ["set"] + [f"{p} {t} {m}" for p, t, m in cols]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for label in dict.fromkeys(a["set"] for a in sub):
            vals = []
            for p, t, m in cols:
                a = cell.get((label, p, t, m))
                if a is None:
                    vals.append("–")
                    continue
                marks = " ".join(f"{k}{verdicts[(label, b, p, t, m)]}" for b, k in base_short.items()
                                 if (label, b, p, t, m) in verdicts)
                vals.append(f"{a['mean']:.2f}" + (f" ({marks})" if marks else ""))
            lines.append("| " + " | ".join([label] + vals) + " |")
        out.append("\n".join(lines) + "\n")
    words = primary_words(planned or [])
    return "\n".join(([words] if words else []) + out)


def _plot(cfg, agg, path: Path, not_percent: set | frozenset = frozenset(), real: set | frozenset = frozenset()) -> Path:
    """One bar panel per (protocol, source, budget, target, metric), at most four to a row; baselines and
    real-image references grey, methods blue; a rank or cost metric is labelled by its name, not as accuracy."""
    import math

    from ..viz import matplotlib_pyplot, save_figure
    plt = matplotlib_pyplot()
    panels = list(dict.fromkeys((a["protocol"], a["source"], a["budget"], a["target"], a["metric"]) for a in agg))
    cols = min(4, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 4.0 * rows), squeeze=False)
    bases = set(all_baselines(cfg))
    for ax, key in zip(axes.flat, panels):
        sub = [a for a in agg if (a["protocol"], a["source"], a["budget"], a["target"], a["metric"]) == key]
        ax.bar(range(len(sub)), [a["mean"] for a in sub], yerr=[a["std"] for a in sub], capsize=3,
               color=["tab:gray" if a["set"] in bases or (key[0], a["set"]) in real else "tab:blue" for a in sub])
        ax.set_xticks(range(len(sub)), [a["set"] for a in sub], rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{key[0]}: {key[1]} N={key[2]} -> {key[3]} {key[4]}", fontsize=8)
        ax.set_ylabel(key[4] if (key[0], key[4]) in not_percent else
                      ("points" if "forgetting" in key[4] or key[4] == "regret" else "test top-1 (%)"))
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def with_pictures(markdown: str, out: str | Path, doc: str | Path, name: str) -> str:
    """``markdown`` for a docs file: each picture it links by a bare name (``![..](compute.png)``, written beside the
    report in ``out``) is copied next to ``doc`` under ``bench/leaderboard/<name>/`` and the link rewritten, so
    that the docs show it."""
    import re
    import shutil
    out, doc = Path(out), Path(doc)

    def move(m):
        src = out / m.group(2)
        if "/" in m.group(2) or not src.is_file():
            return m.group(0)
        rel = Path("bench") / "leaderboard" / _slug(name) / m.group(2)
        (doc.parent / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, doc.parent / rel)
        return f"![{m.group(1)}]({rel.as_posix()})"
    return re.sub(r"!\[([^\]]*)\]\(([^)\s]+\.png)\)", move, markdown)


def update_docs(doc: str | Path, name: str, markdown: str, provenance: dict | None = None) -> Path:
    """Replace the block between ``<!-- leaderboard:NAME -->`` and ``<!-- /leaderboard:NAME -->`` in ``doc``
    (appended when absent), with its provenance when given."""
    return write_block(doc, f"leaderboard:{name}", markdown, provenance)


def load_for_check(config_file: str | None, overrides: list[str]) -> tuple[dict, dict]:
    """The resolved config a leaderboard block's provenance is compared with (``--check-docs``), and the
    schema's defaults (a key added since, at its default, is no change)."""
    import dataclasses
    import typing

    from ..config import load_config
    defaults = to_dict(LeaderboardConfig())
    for f, hint in typing.get_type_hints(LeaderboardConfig).items():   # list[Spec] fields: an item's defaults too
        args = typing.get_args(hint)
        if typing.get_origin(hint) is list and args and dataclasses.is_dataclass(args[0]):
            defaults[f + "[]"] = to_dict(args[0]())
    return to_dict(load_config(LeaderboardConfig, config_file, overrides)), defaults


