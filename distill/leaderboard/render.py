"""The report: Markdown tables per protocol, the compact summary, the bar chart, the docs blocks."""
from __future__ import annotations

from pathlib import Path

from ..config import to_dict
from ..engine.files import write_block, write_json, write_text
from ..evaluate.report import aggregate, fmt
from .config import EQUAL_BYTES, LeaderboardConfig, all_baselines
from .stats import gains, headroom

def write_leaderboard(cfg: LeaderboardConfig, rows: list[dict], info: dict, seconds: float) -> dict:
    out = Path(cfg.output)
    by_set = len(cfg.distill_seeds) > 1
    unit = (f"distillation seed (sets made with seeds {list(cfg.distill_seeds)}, each evaluated with seeds "
            f"{list(cfg.seeds)}, averaged inside a set seed)") if by_set else \
        f"evaluation seed (seeds {list(cfg.seeds)}; every set made once, distillation seed {cfg.distill_seeds[0]})"
    keys = ("protocol", "source", "budget", "set", "target", "metric")
    agg = aggregate(rows, keys)
    g = gains(cfg, rows)
    room = headroom(cfg, rows, g)
    not_percent = {(r["protocol"], r["metric"]) for r in rows if r.get("percent") is False}
    md = [f"### Leaderboard `{cfg.name}`\n"]
    blind = [h for h in room if h["separates"] is False]
    if blind:
        worst = max(h["detectable"] for h in blind)
        md.append(f"**This setting cannot separate methods closer than {worst:.1f} points**: in "
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
              f"p, Holm-adjusted over the table's comparisons; the verdict reads the adjusted p at alpha {cfg.alpha}. "
              f"\"det.\" is the smallest true gain that comparison would detect with 80 % power at Holm's strictest "
              f"level (alpha / comparisons), given its observed spread.\n")
    for group, gi in info.items():
        cells_s = gi.get("cell_seconds") or []
        dist_s = sum((r.get("seconds") or 0) * (r.get("sets") or 1) for r in gi.get("rows", {}).values())
        if cells_s:
            md.append(f"Compute for {group}, summed over every sitting (what a rerun from scratch costs on this "
                      f"machine): making the sets {_duration(dist_s)}, evaluating {len(cells_s)} cells "
                      f"{_duration(sum(cells_s))}" + (" (experts and classifiers: in their lines below)"
                                                       if gi.get("experts") or gi.get("classifier") else "") + ".\n")
    for group, gi in info.items():
        for p in cfg.protocols:
            sub = [a for a in agg if a["protocol"] == p.title and f"{a['source']} N={a['budget']}" == group]
            if not sub:
                continue
            cols = list(dict.fromkeys((a["target"], a["metric"]) for a in sub))
            labels = list(dict.fromkeys(a["set"] for a in sub))
            cell = {(a["set"], a["target"], a["metric"]): a for a in sub}
            md.append(f"#### {group}, protocol `{p.title}`\n")
            md.append(f"Source: {gi['source']} ({gi['source_images']} training images); {gi['teacher']}"
                      + (f"; {gi['experts']}" if gi.get("experts") else "")
                      + (f"; {gi['classifier']}" if gi.get("classifier") else "") + ".\n")
            if gi.get("apps", {}).get(p.title):
                md.append(gi["apps"][p.title] + "\n")
            pct = [a for a in sub if (p.title, a["metric"]) not in not_percent]
            if pct:            # (a rank correlation or a speed-up has no binomial test error)
                md.append(test_note(gi.get("tests", {}), pct))
            # an application that does not use the sets (continual distils per experience) has no such columns
            own = p.title in gi.get("own_memory", ())
            head = ["set"] + [f"{t} {m}" for t, m in cols] + ([] if own else ["distill time", "storage (images)"])
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for label in labels:
                vals = [fmt(c["mean"], c["std"], c["n"]) if (c := cell.get((label, t, m))) else "–" for t, m in cols]
                r = gi["rows"].get(label, {})
                secs = f"{r['seconds']:.0f} s" if r.get("seconds") is not None else "–"
                store = f"{r['image_equivalents']:.1f}" if r.get("image_equivalents") is not None else "–"
                lines.append("| " + " | ".join([label] + vals + ([] if own else [secs, store])) + " |")
            md.append("\n".join(lines) + "\n")
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
    text = "\n".join(md) + "\n"
    summary = summary_markdown(cfg, agg, g)
    real = {(r["protocol"], r["set"]) for r in rows if r.get("real")}
    plot = _plot(cfg, agg, out / "leaderboard.png", not_percent, real)
    paths = {"md": write_text(out / "results.md", f"# Leaderboard {cfg.name}\n\n" + text + f"\n![plot]({plot.name})\n"),
             "json": write_json(out / "results.json", {"rows": rows, "aggregate": agg, "gains": g, "headroom": room,
                                                      "info": info,
                                                      "config": to_dict(cfg), "seconds": round(seconds, 1)}),
             "plot": plot}
    return {"markdown": text, "summary": summary, "rows": rows, "gains": g, "headroom": room, "aggregate": agg,
            "paths": paths,
            "seconds": seconds}


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


def summary_markdown(cfg: LeaderboardConfig, agg: list[dict], g: list[dict]) -> str:
    """One compact table per source x budget: each row's mean under every (protocol, target, metric),
    with its paired verdict against each baseline (+ beats, − loses, = within noise)."""
    base_short = {b: "".join(w[0] for w in b.split("_")) for b in cfg.baselines}
    base_short.update({b + EQUAL_BYTES: k + "=B" for b, k in list(base_short.items()) if b + EQUAL_BYTES in all_baselines(cfg)})
    if any(x.get("best_real") for x in g):
        base_short["best real"] = "br"
    used = {"best real" if x.get("best_real") else x["baseline"] for x in g}
    base_short = {b: k for b, k in base_short.items() if b in used or b in cfg.baselines}
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
    return "\n".join(out)


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


