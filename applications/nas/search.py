"""Architecture search with NNI (the in-process sequential engine, or NNI's local training service with
trials in parallel processes) and the proxy-quality study."""
from __future__ import annotations

import csv
import io
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from distill.config import to_dict
from distill.engine import progress
from distill.engine.files import write_json, write_text
from distill.errors import UserError
from distill.viz import matplotlib_pyplot, save_figure

from .config import NASConfig
from .evaluator import GroundTruth, ProxyEvaluator, load_proxies, load_target, split_for_scoring
from .spaces import arch_key, build, get_space, sample_architectures
from .stats import kendall_tau_b, spearman


def _strategy(name: str, seed: int):
    import nni.nas.strategy as strategy
    if name == "random":
        return strategy.Random(dedup=True, seed=seed)
    if name == "evolution":
        return strategy.RegularizedEvolution(population_size=4, sample_size=2, seed=seed)
    return strategy.TPE(seed=seed) if "seed" in strategy.TPE.__init__.__code__.co_varnames else strategy.TPE()


def _quiet_nni():
    for name in ("nni", "nni.nas", "nni.runtime", "nni.experiment"):
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass
class SearchResult:
    trials: list[dict]
    best: dict
    paths: dict = field(default_factory=dict)


def _setup(cfg: NASConfig):
    sets = load_proxies(cfg)
    ref = next(iter(sets.values()))
    train, test = load_target(cfg, ref.image_size, ref.channels)
    fit, val = split_for_scoring(train, cfg.score, cfg.seed)
    return sets, train, test, fit, val


def run_search(cfg: NASConfig) -> dict[str, SearchResult]:
    """For each proxy, an NNI search of ``cfg.trials`` trials with ``cfg.strategy``; exports JSON/CSV."""
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperiment, NasExperimentConfig
    _quiet_nni()
    sets, train, test, fit, val = _setup(cfg)
    ref = next(iter(sets.values()))
    out = Path(cfg.output)
    results = {}
    print(f"nas: {cfg.strategy} search, {cfg.trials} trials per proxy, proxies {', '.join(sets)}, space {cfg.space}",
          flush=True)
    for label, s in sets.items():
        space = get_space(cfg.space)(image_size=ref.image_size, in_chans=ref.channels, **cfg.space_args)
        strategy = _strategy(cfg.strategy, cfg.seed)
        with tempfile.TemporaryDirectory(prefix="ssdd-nni-") as work:
            if cfg.engine == "local":      # NNI's local training service: trials are processes NNI starts
                ncfg = NasExperimentConfig("ts", "simplified", "local")
                ncfg.trial_code_directory = str(Path.cwd())
                ncfg.training_service.use_active_gpu = True
                gpus = _gpu_count()
                ncfg.trial_gpu_number = 1 if gpus else 0
                if gpus:
                    ncfg.training_service.max_trial_number_per_gpu = 1
                evaluator = FunctionalEvaluator(_trial, config=to_dict(cfg), label=label, log_dir=str(Path(work) / "log"))
            else:
                ncfg = NasExperimentConfig("sequential", "simplified")
                ev = ProxyEvaluator(cfg, label, s, fit, val)
                evaluator = FunctionalEvaluator(ev)
            ncfg.max_trial_number = cfg.trials
            ncfg.trial_concurrency = cfg.concurrency
            ncfg.experiment_working_directory = work
            exp = NasExperiment(space, evaluator, strategy, config=ncfg)
            t0 = time.time()
            exp.run(port=_free_port()) if cfg.engine == "local" else exp.run()
            seconds = time.time() - t0
            exp.stop()
            log = ev.log if cfg.engine == "sequential" else _trial_logs(Path(work) / "log")
        if cfg.engine == "local" and len(log) < cfg.trials:
            raise UserError(f"NNI's local training service finished {len(log)} of {cfg.trials} trials for proxy "
                            f"'{label}'", fix="run with engine=sequential, or look for errors in the trial output")
        trials = [{"trial": i + 1, "proxy": label, "arch": r["arch"], "score": r["score"], "seconds": r["seconds"]}
                  for i, r in enumerate(log)]
        best = max(trials, key=lambda t: t["score"])
        stem = f"search_{label}"
        write_json(out / f"{stem}.json", {"proxy": label, "strategy": cfg.strategy, "space": cfg.space,
                                          "trials": trials, "best": best, "seconds": seconds, "config": to_dict(cfg)})
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["trial", "proxy", "arch", "score", "seconds"])
        for t in trials:
            w.writerow([t["trial"], label, json.dumps(t["arch"]), f"{t['score']:.2f}", f"{t['seconds']:.1f}"])
        write_text(out / f"{stem}.csv", buf.getvalue())
        results[label] = SearchResult(trials, best, {"json": out / f"{stem}.json", "csv": out / f"{stem}.csv"})
    return results


def _trial(model, config: dict, label: str, log_dir: str) -> None:
    """One trial in a process that NNI's local training service started: load the proxy and the target,
    score the candidate, report it to NNI and leave a record for the experiment to collect."""
    import os
    import uuid

    import nni

    from distill.config import load_config
    cfg = load_config(NASConfig, extra=config)
    sets = load_proxies(cfg)
    s = sets[label]
    train, _ = load_target(cfg, s.image_size, s.channels)
    fit, val = split_for_scoring(train, cfg.score, cfg.seed)
    ev = ProxyEvaluator(cfg, label, s, fit, val)
    score = ev.score(model.net, dict(model.arch))
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(log_dir) / f"trial-{uuid.uuid4().hex}.json", {**ev.log[-1], "finished": time.time(),
                                                                   "pid": os.getpid()})
    nni.report_final_result(score)


def _trial_logs(folder: Path) -> list[dict]:
    """The records the trial processes left, in the order they finished."""
    rows = [json.loads(p.read_text()) for p in folder.glob("trial-*.json")] if folder.is_dir() else []
    return sorted(rows, key=lambda r: r["finished"])


def _gpu_count() -> int:
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def evaluate_proxy(cfg: NASConfig) -> dict:
    """Proxy quality over ``cfg.num_archs`` sampled architectures: rank correlation with ground
    truth, the ground truth of each proxy's pick versus the best, costs, and a scatter plot."""
    sets, train, test, fit, val = _setup(cfg)
    ref = next(iter(sets.values()))
    kw = dict(image_size=ref.image_size, in_chans=ref.channels, **cfg.space_args)
    archs = sample_architectures(cfg.space, cfg.num_archs, cfg.seed, **kw)
    gt = GroundTruth(cfg, train, test)
    print(f"nas proxy quality: {len(archs)} architectures of {cfg.space}, ground truth + proxies {', '.join(sets)}; "
          "a line per architecture as it ends", flush=True)
    rows = []
    evaluators = {label: ProxyEvaluator(cfg, label, s, fit, val) for label, s in sets.items()}
    for arch in progress(archs, desc="architectures"):
        g = gt(arch)
        row = {"arch": arch, "key": arch_key(cfg.space, arch), "gt_acc": g["test_acc"], "gt_seconds": g["seconds"],
               "gt_cached": g["cached"]}
        for label, ev in evaluators.items():
            t0 = time.time()
            row[f"proxy:{label}"] = ev.score(build(cfg.space, arch, **kw), arch)
            row[f"seconds:{label}"] = time.time() - t0
        rows.append(row)
        print(f"  {json.dumps(arch)}: ground truth {g['test_acc']:.2f}"
              + "".join(f", {lb} {row[f'proxy:{lb}']:.2f}" for lb in sets), flush=True)
    best_gt = max(r["gt_acc"] for r in rows)
    summary = {}
    for label in sets:
        scores = [r[f"proxy:{label}"] for r in rows]
        gts = [r["gt_acc"] for r in rows]
        pick = max(rows, key=lambda r: r[f"proxy:{label}"])
        summary[label] = {"spearman": spearman(scores, gts), "kendall": kendall_tau_b(scores, gts),
                          "picked_gt_acc": pick["gt_acc"], "best_gt_acc": best_gt,
                          "regret": best_gt - pick["gt_acc"], "picked_arch": pick["arch"],
                          "proxy_seconds_mean": sum(r[f"seconds:{label}"] for r in rows) / len(rows)}
    gt_sec = [r["gt_seconds"] for r in rows]
    gt_mean = sum(gt_sec) / len(gt_sec)
    for s in summary.values():
        s["gt_seconds_mean"] = gt_mean
        s["speedup"] = gt_mean / max(1e-9, s["proxy_seconds_mean"])
    out = Path(cfg.output)
    plot = _scatter(rows, list(sets), summary, out / "proxy_vs_ground_truth.png", cfg)
    md = _markdown(cfg, rows, summary, plot)
    paths = {"md": write_text(out / "proxy_quality.md", md), "plot": plot,
             "json": write_json(out / "proxy_quality.json", {"rows": rows, "summary": summary, "config": to_dict(cfg)})}
    return {"rows": rows, "summary": summary, "paths": paths, "markdown": md}


def _scatter(rows, labels, summary, path: Path, cfg: NASConfig) -> Path:
    plt = matplotlib_pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, label in enumerate(labels):
        s = summary[label]
        ax.scatter([r[f"proxy:{label}"] for r in rows], [r["gt_acc"] for r in rows], color=colors[i % len(colors)],
                   label=f"{label} (Spearman {s['spearman']:.2f}, Kendall {s['kendall']:.2f})", alpha=0.8)
    ax.set_xlabel("proxy score: validation accuracy after pre-training on the set (%)")
    ax.set_ylabel(f"ground truth: test accuracy trained on {cfg.target.name} (%)")
    ax.set_title(f"{cfg.space} space, {len(rows)} architectures")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path)


def _markdown(cfg: NASConfig, rows, summary, plot: Path) -> str:
    lines = [f"# Proxy quality: {cfg.space} space on {cfg.target.name}", "",
             f"{len(rows)} architectures sampled uniformly (seed {cfg.seed}). Proxy: pre-train "
             f"{cfg.pretrain.epochs} epochs on the set, then {cfg.score.method} on {cfg.score.train_per_class} labelled "
             f"images per class, scored on {cfg.score.val_per_class} held-out training images per class. Ground truth: "
             f"{cfg.ground_truth.epochs} epochs from scratch on the training split"
             f"{' (' + str(cfg.ground_truth.train_per_class) + ' per class)' if cfg.ground_truth.train_per_class else ''}, "
             f"test accuracy.", "",
             "| proxy | Spearman | Kendall tau-b | GT acc of its pick | best GT of K | regret | proxy s/arch | GT s/arch | speed-up |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, s in summary.items():
        lines.append(f"| {label} | {s['spearman']:.3f} | {s['kendall']:.3f} | {s['picked_gt_acc']:.2f} | "
                     f"{s['best_gt_acc']:.2f} | {s['regret']:.2f} | {s['proxy_seconds_mean']:.1f} | "
                     f"{s['gt_seconds_mean']:.1f} | {s['speedup']:.1f}x |")
    lines += ["", f"![scatter]({plot.name})", "", "| architecture | ground truth | "
              + " | ".join(summary) + " |", "|---|---|" + "---|" * len(summary)]
    for r in sorted(rows, key=lambda r: -r["gt_acc"]):
        lines.append(f"| `{json.dumps(r['arch'])}` | {r['gt_acc']:.2f} | "
                     + " | ".join(f"{r[f'proxy:{lb}']:.2f}" for lb in summary) + " |")
    return "\n".join(lines) + "\n"
