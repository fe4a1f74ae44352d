"""``ssdd leaderboard``: every method against every baseline, under each paper's protocol, same seeds.

For each source x budget, every row (a registered method plus params; by default one row per
registered method) is distilled once into a set file, or its file is reused when it exists and was
made by the same config. Each set, plus the "full source" and "no pre-training" references, is then
evaluated under each protocol on each target for each seed. Every (protocol, set, seed) cell is a
JSON file written as soon as it is done, so a killed run continues where it stopped. The report
holds one table per protocol (mean ± std), each method's gain over each baseline with a paired
t-test over seeds, distillation time and storage per row, and a bar chart.

YAML (configs/leaderboard/*.yaml)::

    sources:
      - data: {name: cifar10, root: data}
        teacher: runs/cifar10/teacher_cpu.safetensors
        train_per_class: 500            # a class-balanced subset of the source (CPU presets)
        budgets: [100]
    rows: []                            # empty: one row per registered method
        experts: {arch: convnet-32-64-128-in, experts: 4}   # MKDT's trajectories (made once, reused)
    method_params: {krr_st: {pool_arch: convnet-32-64-128-bn}}
    method_steps: {krr_st: 300}
    variants:                           # extra rows: a method plus params under its own label
      - {label: "krr_st (legacy pool)", method: krr_st, params: {legacy_pool_reset: true}}
    baselines: [random, random_labelled]
    protocols: [{name: krrst}, {name: mkdt}]
    targets: [{name: cifar10, root: data}]
    seeds: [0, 1, 2]
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import time
from pathlib import Path
from typing import Any

from .config import load_config, to_dict
from .data import load_source
from .data.config import DataConfig
from .distilled import DistilledSet
from .engine import resolve_device
from .engine.files import write_block, write_json, write_text
from .engine.safefile import read_header
from .engine.stage import checkpoint_path, config_differences
from .errors import ConfigError
from .evaluate import NO_PRETRAIN, evaluate_sets, load_targets
from .evaluate.config import EvalConfig, TargetConfig, protocol_preset
from .evaluate.report import aggregate, fmt
from .methods import METHODS, DistillConfig, get_method, method_config, run_distillation
from .ssl import Teacher

FULL_SOURCE = "full source"


@dataclasses.dataclass
class RowSpec:
    """One row: a method with params. ``label`` defaults to the method's name."""

    method: str = "random"
    label: str = ""
    steps: int | None = None
    class_conditional: bool = False
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class SourceSpec:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    teacher: str = ""                     # teacher file (ssdd teacher)
    train_per_class: int | None = None    # a seeded class-balanced subset of the source split
    budgets: list[int] = dataclasses.field(default_factory=lambda: [100])
    # MKDT's expert trajectories for this source: keys of ExpertsConfig (arch, experts, epochs, ...); data,
    # teacher and train_per_class come from the source. Empty: rows that need experts are skipped.
    experts: dict[str, Any] = dataclasses.field(default_factory=dict)
    # SC-DD's classifier (the recover model and the relabel teacher of the `scdd` protocol): a file made by
    # `ssdd squeeze`, or `squeeze:` keys of SqueezeConfig (epochs, lr, ...) to make it here from the teacher
    classifier: str = ""
    squeeze: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ProtocolSpec:
    name: str = "krrst"                   # a registered protocol (distill/evaluate/protocols)
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)   # EvalConfig keys on top of its preset


@dataclasses.dataclass
class LeaderboardConfig:
    """``ssdd leaderboard``: see the module docstring."""

    name: str = "leaderboard"
    sources: list[SourceSpec] = dataclasses.field(default_factory=lambda: [SourceSpec()])
    rows: list[RowSpec] = dataclasses.field(default_factory=list)      # empty: every registered method
    method_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    method_steps: dict[str, int] = dataclasses.field(default_factory=dict)
    variants: list[RowSpec] = dataclasses.field(default_factory=list)
    baselines: list[str] = dataclasses.field(default_factory=lambda: ["random", "random_labelled"])
    full_source: bool = True              # a row pre-trained on the whole source with teacher targets
    full_source_epochs: int | None = None  # its pre-training epochs (None: the protocol's)
    no_pretrain: bool = True
    protocols: list[ProtocolSpec] = dataclasses.field(default_factory=lambda: [ProtocolSpec("krrst"),
                                                                                ProtocolSpec("mkdt")])
    arch: str = "convnet-128-256-512-bn"
    targets: list[TargetConfig] = dataclasses.field(default_factory=lambda: [TargetConfig()])
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    alpha: float = 0.05                   # significance level of the paired test
    device: str = "auto"
    amp: str = "auto"
    output: str = "reports/leaderboard"

    def validate(self):
        for r in self.all_rows():
            get_method(r.method)
        labels = [row_label(r) for r in self.all_rows()]
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise ConfigError(f"two rows share the label {twice}", fix="give variants a distinct `label:`")
        missing = [b for b in self.baselines if b not in labels]
        if missing:
            raise ConfigError(f"baselines {missing} are not rows", fix=f"rows are: {', '.join(labels)}")
        for p in self.protocols:
            protocol_preset(p.name)
        if not self.seeds:
            raise ConfigError("a leaderboard needs at least one seed")

    def all_rows(self) -> list[RowSpec]:
        rows = list(self.rows) or [RowSpec(method=m, steps=self.method_steps.get(m),
                                           params=dict(self.method_params.get(m, {}))) for m in sorted(METHODS)]
        return rows + list(self.variants)


def row_label(r: RowSpec) -> str:
    return r.label or r.method


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def eval_config(cfg: LeaderboardConfig, p: ProtocolSpec, seed: int) -> EvalConfig:
    extra = {"protocol": p.name, "arch": cfg.arch, "seeds": [seed], "device": cfg.device, "amp": cfg.amp,
             "targets": [to_dict(t) for t in cfg.targets], "no_pretrain_baseline": False,
             "output": str(Path(cfg.output) / "unused")}
    return load_config(EvalConfig, None, extra={**extra, **p.overrides}, preset=protocol_preset(p.name))


def _source(spec: SourceSpec, device):
    return load_source(spec.data, spec.train_per_class, device)


def source_key(spec: SourceSpec, teacher) -> str:
    """The folder name of a source's sets: its data, subset and teacher. The experts and the classifier are
    not part of it, so adding them to a source keeps every finished set and cell."""
    ident = {k: v for k, v in to_dict(spec).items() if k not in ("experts", "classifier", "squeeze")}
    return f"{spec.data.name}-{_digest([ident, teacher.id if teacher else None])}"


def make_experts(cfg: LeaderboardConfig, spec: SourceSpec, src, teacher, folder: Path, log) -> str | None:
    """The source's expert trajectories (``spec.experts``), made or finished when missing; their folder."""
    if not spec.experts:
        return None
    from .experts import ExpertsConfig, train_experts
    keys = {"device": cfg.device, "amp": cfg.amp, "output": str(folder), **spec.experts}
    ecfg = load_config(ExpertsConfig, None, extra={"data": to_dict(spec.data), "teacher": spec.teacher,
                                                   "train_per_class": spec.train_per_class, **keys})
    res = train_experts(ecfg, source=src, teacher=teacher, quiet=False)
    log(f"  experts: {len(res.skipped)} reused, {len(res.trained)} trained -> {ecfg.output}")
    return ecfg.output


def make_classifier(cfg: LeaderboardConfig, spec: SourceSpec, src, teacher, path: Path, log) -> str | None:
    """The source's SC-DD classifier: ``spec.classifier``, or squeezed from the teacher (``spec.squeeze``)
    when its file is missing or was made by another config; None when the source has neither."""
    if spec.classifier:
        return spec.classifier
    if not spec.squeeze:
        return None
    from .squeeze import SqueezeConfig, run_squeeze
    scfg = load_config(SqueezeConfig, None, extra={"data": to_dict(spec.data), "teacher": spec.teacher,
                                                   "train_per_class": spec.train_per_class, "device": cfg.device,
                                                   "amp": cfg.amp, "output": str(path), **spec.squeeze})
    if path.exists():
        header, _ = read_header(path)
        if isinstance(header.get("config"), dict) and not config_differences(header["config"], to_dict(scfg)):
            log(f"  reuse {path}")
            return str(path)
    log(f"  squeeze a linear head on the teacher -> {path}")
    res = run_squeeze(scfg, resume=checkpoint_path(path).exists(), source=src, teacher=teacher, overwrite=True)
    log(f"  classifier: train top-1 {res.record.meta['train_acc']:.2f} %")
    return str(path)


class OutOfTime(Exception):
    """A leaderboard run reached its time limit; what it finished is kept (run it again to continue)."""


def _left(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.time()
    if left <= 0:
        raise OutOfTime()
    return left


def make_set(cfg: LeaderboardConfig, spec: SourceSpec, src, teacher, row: RowSpec, budget: int,
             folder: Path, log, experts: str | None = None,
             classifier: str | None = None, deadline: float | None = None) -> tuple[str | None, DistilledSet | None]:
    """The row's set at ``budget``: reused when its file was made by the same config, else (re)made.
    (None, None) for a row that needs expert trajectories the source does not have."""
    out = folder / f"{_slug(row_label(row))}.safetensors"
    params = dict(row.params)
    if get_method(row.method).uses_experts and not params.get("experts"):
        if experts is None:
            log(f"  skip {row_label(row)}: it needs expert trajectories; give this source `experts: {{experts: 4}}` "
                "(or params.experts)")
            return None, None
        params["experts"] = experts
    if get_method(row.method).uses_classifier and not params.get("classifier") and classifier:
        params["classifier"] = classifier
    dcfg = DistillConfig(data=spec.data, teacher=spec.teacher or None, method=row.method, budget=budget,
                         class_conditional=row.class_conditional, steps=row.steps, seed=0, device=cfg.device,
                         amp=cfg.amp, output=str(out), checkpoint_every=max(1, (row.steps or 0) // 10),
                         params=params)
    method_config(get_method(row.method), dcfg.params)
    if out.exists():
        header, _ = read_header(out)
        # the file's own path may differ (a leaderboard folder moved, or a set made on another machine)
        if isinstance(header.get("config"), dict) and not config_differences(header["config"], to_dict(dcfg),
                                                                             mutable=("output",)):
            log(f"  reuse {out}")
            return str(out), DistilledSet.load(out)
    resume = checkpoint_path(out).exists()
    log(f"  make {row_label(row)} (N = {budget}){' (resuming)' if resume else ''} -> {out}")
    res = run_distillation(dcfg, resume=resume, teacher=teacher, source=src, overwrite=True,
                           time_limit=_left(deadline))
    if res.set is None:
        raise OutOfTime()
    return str(out), res.set


def _say(msg: str) -> None:
    print(msg, flush=True)


def run_leaderboard(cfg: LeaderboardConfig, log=_say, time_limit: float | None = None) -> dict | None:
    """Make the sets, evaluate every cell (reusing finished ones), write the report; return it.

    time_limit: seconds; past it, the set in progress stops at a checkpoint and no new cell starts, and
    None is returned (run again to continue: finished sets and cells are reused)."""
    t0 = time.time()
    deadline = None if time_limit is None else t0 + time_limit
    try:
        return _run_leaderboard(cfg, log, t0, deadline)
    except OutOfTime:
        log(f"time limit of {time_limit:g} s reached; run the same command again to continue")
        return None


def _run_leaderboard(cfg: LeaderboardConfig, log, t0: float, deadline: float | None) -> dict:
    device = resolve_device(cfg.device)
    out = Path(cfg.output)
    cells: list[dict] = []
    info: dict[str, dict] = {}
    for spec in cfg.sources:
        src = _source(spec, device)
        teacher = Teacher.load(spec.teacher).to(device) if spec.teacher else None
        tinfo = (f"teacher {teacher.describe()}, k-NN top-1 {teacher.meta.get('knn_top1', '?')} %" if teacher
                 else "no teacher")
        skey = source_key(spec, teacher)
        log(f"source {spec.data.name}/{spec.data.split}: {len(src)} images; {tinfo}")
        targets = load_targets(cfg.targets, src.image_size, src.channels, device)
        experts = make_experts(cfg, spec, src, teacher, out / "experts" / skey, log)
        classifier = make_classifier(cfg, spec, src, teacher, out / "classifiers" / f"{skey}.safetensors", log)
        for budget in spec.budgets:
            folder = out / "sets" / f"{skey}-n{budget}"
            sets: dict[str, tuple[str | None, DistilledSet | None, dict]] = {}
            for row in cfg.all_rows():
                path, s = make_set(cfg, spec, src, teacher, row, budget, folder, log, experts, classifier, deadline)
                if path is not None:
                    sets[row_label(row)] = (path, s, {"method": row.method})
            if cfg.full_source:
                row = RowSpec(method="random", label=FULL_SOURCE)
                path, s = make_set(cfg, spec, src, teacher, row, len(src), out / "sets" / f"{skey}-full", log,
                                   deadline=deadline)
                sets[f"{FULL_SOURCE} ({len(src)})"] = (path, s, {"method": "random", "full": True})
            if cfg.no_pretrain:
                sets[NO_PRETRAIN] = (None, None, {"method": None})
            group = {"source": spec.data.name, "budget": budget, "teacher": tinfo, "source_images": len(src),
                     "experts": _experts_info(experts), "classifier": _classifier_info(classifier)}
            info[f"{spec.data.name} N={budget}"] = {**group, "rows": {
                label: {"seconds": s.meta.get("distill_seconds") if s is not None else None,
                        "image_equivalents": round(s.image_equivalents(), 1) if s is not None else None,
                        "examples": len(s) if s is not None else None}
                for label, (_, s, _) in sets.items()}}
            for p in cfg.protocols:
                for label, (path, s, extra) in sets.items():
                    for seed in cfg.seeds:
                        _left(deadline)
                        cells.extend(_cell(cfg, p, label, path, s, extra, seed, group, targets, out, log, classifier))
    return write_leaderboard(cfg, cells, info, time.time() - t0)


def _experts_info(folder: str | None) -> str:
    if folder is None:
        return ""
    from .experts import expert_files
    from .engine.safefile import read_header
    heads = [read_header(f)[0] for f in expert_files(folder)]
    h = heads[0]
    secs = sum(x.get("train_seconds") or 0 for x in heads)
    return (f"MKDT's {len(heads)} experts: {h.get('arch')}, {h.get('epochs')} epochs each, {secs:.0f} s to train "
            "(not in the rows' distill time)")


def _classifier_info(path: str | None) -> str:
    if path is None:
        return ""
    h, _ = read_header(path)
    test = f", test top-1 {h['test_acc']} % on {h.get('test_split')}" if "test_acc" in h else ""
    return (f"SC-DD classifier: linear head on the frozen {h.get('arch')} ({h.get('epochs', '?')} epochs), "
            f"train top-1 {h.get('train_acc', '?')} %{test}")


def _cell(cfg, p: ProtocolSpec, label, path, s, extra, seed, group, targets, out: Path, log,
          classifier: str | None = None) -> list[dict]:
    ecfg = eval_config(cfg, p, seed)
    if ecfg.relabel.enabled:
        if s is None:                # nothing to train a student on
            return []
        if not ecfg.relabel.classifier:
            ecfg.relabel.classifier = classifier
    if extra.get("full") and cfg.full_source_epochs:
        ecfg.pretrain.epochs = cfg.full_source_epochs
    set_id = None if s is None else _digest([s.meta.get("config"), s.meta.get("created"), s.storage_bytes()])
    key = _digest([to_dict(ecfg), set_id, label, group["source"], group["budget"]])
    file = out / "cells" / p.name / f"{_slug(group['source'])}-n{group['budget']}-{_slug(label)}-s{seed}-{key}.json"
    if file.exists():
        return json.loads(file.read_text())["rows"]
    t = time.time()
    rep = evaluate_sets({label: s}, ecfg, targets=targets, write=False, verbose=False)
    rows = [{**r, **{k: v for k, v in group.items() if k not in ("teacher", "experts", "classifier")}, "protocol": p.name,
             "method": extra.get("method")} for r in rep.rows]
    write_json(file, {"rows": rows, "seconds": round(time.time() - t, 1), "set": path})
    accs = ", ".join(f"{r['target']} {r['metric']} {r['acc']:.2f}" for r in rows)
    log(f"  [{p.name}] {label} seed {seed}: {accs} ({time.time() - t:.0f}s)")
    return rows


# --------------------------------------------------------------------------- the report


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


def write_leaderboard(cfg: LeaderboardConfig, rows: list[dict], info: dict, seconds: float) -> dict:
    out = Path(cfg.output)
    md = [f"### Leaderboard `{cfg.name}`\n",
          f"Architecture `{cfg.arch}`; seeds {list(cfg.seeds)} (the same for every row); test top-1 (%), mean ± "
          f"sample std over seeds; no checkpoint selection. Gains are paired by seed (two-sided paired t-test, "
          f"alpha {cfg.alpha}); \"within noise\" means the test does not separate them. Sets are made once "
          f"(seed 0) and evaluated with every seed.\n"]
    keys = ("protocol", "source", "budget", "set", "target", "metric")
    agg = aggregate(rows, keys)
    g = gains(cfg, rows)
    for group, gi in info.items():
        for p in cfg.protocols:
            sub = [a for a in agg if a["protocol"] == p.name and f"{a['source']} N={a['budget']}" == group]
            if not sub:
                continue
            cols = list(dict.fromkeys((a["target"], a["metric"]) for a in sub))
            labels = list(dict.fromkeys(a["set"] for a in sub))
            cell = {(a["set"], a["target"], a["metric"]): a for a in sub}
            md.append(f"#### {group}, protocol `{p.name}`\n")
            md.append(f"Source: {gi['source']} ({gi['source_images']} training images); {gi['teacher']}"
                      + (f"; {gi['experts']}" if gi.get("experts") else "")
                      + (f"; {gi['classifier']}" if gi.get("classifier") else "") + ".\n")
            head = ["set"] + [f"{t} {m}" for t, m in cols] + ["distill time", "storage (images)"]
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for label in labels:
                vals = [fmt(c["mean"], c["std"], c["n"]) if (c := cell.get((label, t, m))) else "–" for t, m in cols]
                r = gi["rows"].get(label, {})
                secs = f"{r['seconds']:.0f} s" if r.get("seconds") is not None else "–"
                store = f"{r['image_equivalents']:.1f}" if r.get("image_equivalents") is not None else "–"
                lines.append("| " + " | ".join([label] + vals + [secs, store]) + " |")
            md.append("\n".join(lines) + "\n")
            gsub = [x for x in g if x["protocol"] == p.name and f"{x['source']} N={x['budget']}" == group]
            if gsub:
                md.append("| set | vs | " + " | ".join(f"{t} {m}" for t, m in cols) + " |")
                md.append("|---|---|" + "---|" * len(cols))
                for label in dict.fromkeys(x["set"] for x in gsub):
                    for base in cfg.baselines:
                        vals = []
                        for t, m in cols:
                            x = next((x for x in gsub if (x["set"], x["baseline"], x["target"], x["metric"]) ==
                                      (label, base, t, m)), None)
                            vals.append("–" if x is None else f"{x['gain']:+.2f}" + (
                                f" (p={x['p']:.3f}, {x['verdict']})" if x["p"] is not None else f" ({x['verdict']})"))
                        md.append(f"| {label} | {base} | " + " | ".join(vals) + " |")
                md.append("")
    text = "\n".join(md) + "\n"
    summary = summary_markdown(cfg, agg, g)
    plot = _plot(cfg, agg, out / "leaderboard.png")
    paths = {"md": write_text(out / "results.md", f"# Leaderboard {cfg.name}\n\n" + text + f"\n![plot]({plot.name})\n"),
             "json": write_json(out / "results.json", {"rows": rows, "aggregate": agg, "gains": g, "info": info,
                                                      "config": to_dict(cfg), "seconds": round(seconds, 1)}),
             "plot": plot}
    return {"markdown": text, "summary": summary, "rows": rows, "gains": g, "aggregate": agg, "paths": paths,
            "seconds": seconds}


_MARK = {"**beats**": "+", "**loses**": "−", "within noise": "=", "one seed: no test": "?"}


def summary_markdown(cfg: LeaderboardConfig, agg: list[dict], g: list[dict]) -> str:
    """One compact table per source x budget: each row's mean under every (protocol, target, metric),
    with its paired verdict against each baseline (+ beats, − loses, = within noise)."""
    base_short = {b: "".join(w[0] for w in b.split("_")) for b in cfg.baselines}
    out = []
    for src, n in dict.fromkeys((a["source"], a["budget"]) for a in agg):
        sub = [a for a in agg if (a["source"], a["budget"]) == (src, n)]
        cols = list(dict.fromkeys((a["protocol"], a["target"], a["metric"]) for a in sub))
        cell = {(a["set"], a["protocol"], a["target"], a["metric"]): a for a in sub}
        verdicts = {(x["set"], x["baseline"], x["protocol"], x["target"], x["metric"]): _MARK.get(x["verdict"], "?")
                    for x in g if (x["source"], x["budget"]) == (src, n)}
        out.append(f"**{src}, N = {n}** (test top-1 %, mean of {len(cfg.seeds)} seeds; after each number its paired "
                   "verdict against " + ", ".join(f"`{b}` ({k})" for b, k in base_short.items())
                   + ": + beats, − loses, = within noise, p < " + f"{cfg.alpha})\n")
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


def _plot(cfg, agg, path: Path) -> Path:
    from .viz import matplotlib_pyplot, save_figure
    plt = matplotlib_pyplot()
    panels = list(dict.fromkeys((a["protocol"], a["source"], a["budget"], a["target"], a["metric"]) for a in agg))
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.5 * max(1, len(panels)), 3.8), squeeze=False)
    for ax, key in zip(axes[0], panels):
        sub = [a for a in agg if (a["protocol"], a["source"], a["budget"], a["target"], a["metric"]) == key]
        ax.bar(range(len(sub)), [a["mean"] for a in sub], yerr=[a["std"] for a in sub], capsize=3,
               color=["tab:gray" if a["set"] in cfg.baselines else "tab:blue" for a in sub])
        ax.set_xticks(range(len(sub)), [a["set"] for a in sub], rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{key[0]}: {key[1]} N={key[2]} -> {key[3]} {key[4]}", fontsize=8)
        ax.set_ylabel("test top-1 (%)")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def update_docs(doc: str | Path, name: str, markdown: str) -> Path:
    """Replace the block between ``<!-- leaderboard:NAME -->`` and ``<!-- /leaderboard:NAME -->`` in ``doc``
    (appended when absent)."""
    return write_block(doc, f"leaderboard:{name}", markdown)


__all__ = ["LeaderboardConfig", "ProtocolSpec", "RowSpec", "SourceSpec", "gains", "paired_test", "run_leaderboard",
           "summary_markdown", "update_docs"]
