"""``run_continual``: strategies x buffers x seeds on a class-incremental benchmark, at equal memory."""
from __future__ import annotations

import copy
import hashlib
import json
import re
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from distill.config import to_dict
from distill.engine import accuracy, epoch_batches, fit, progress, resolve_device, seed_everything
from distill.engine.files import write_json, write_text
from distill.evaluate.report import aggregate, fmt
from distill.models import create_model
from distill.ssl import Teacher
from distill.viz import matplotlib_pyplot, save_figure

from .benchmarks import ContinualBenchmark, split_benchmark
from .buffers import DistilledBuffer, real_buffer_size, real_item_bytes
from .compat import dataset_tensors
from .config import BufferSpec, ContinualConfig, buffer_label
from .plugin import DistilledReplayPlugin


def experience_accuracies(model, bench: ContinualBenchmark, device, batch: int = 1000) -> list[float]:
    """Top-1 (%) of ``model`` on each test experience (pixel-space inputs, eval mode)."""
    return [accuracy(model, x.to(device), y.to(device), batch_size=batch) for x, y in bench.test_sets]


def summarize(matrix: list[list[float]]) -> dict:
    """Final average accuracy, average forgetting, and the average over seen experiences after each one.

    ``matrix[i][j]``: accuracy on experience j after training on experience i. Forgetting of j is
    the best accuracy it had before the last experience minus its final accuracy (Chaudhry et al.).
    """
    t = len(matrix)
    final = matrix[-1]
    forget = [max(matrix[i][j] for i in range(j, t - 1)) - final[j] for j in range(t - 1)]
    return {"final_avg_acc": sum(final) / t, "avg_forgetting": sum(forget) / len(forget) if forget else 0.0,
            "seen_avg_acc": [sum(matrix[i][: i + 1]) / (i + 1) for i in range(t)]}


def _make_model(cfg: ContinualConfig, bench: ContinualBenchmark, device):
    # inputs are pixel space; the model normalises with the benchmark's statistics
    return create_model(cfg.arch, out_dim=bench.num_classes, image_size=bench.image_size,
                        in_chans=bench.channels, mean=bench.mean, std=bench.std).to(device)


def memory_tensors(buffer, device):
    """(pixel-space images, labels, targets or None) of any buffer, on ``device``."""
    if isinstance(buffer, DistilledBuffer):
        return buffer.tensors(device=device)
    x, y = dataset_tensors(buffer.buffer.eval())
    return x.to(device), y.to(device), None


def retrain_on_memory(model, memory, cfg: ContinualConfig, device):
    """The GDumb-like protocol: a freshly initialised ``model`` trained only on the memory."""
    x, y, _ = memory
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    batches = epoch_batches(len(x), cfg.batch_size, device)
    total = cfg.retrain_epochs * batches.steps_per_epoch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)

    def step(i):
        idx = batches(i)
        return F.cross_entropy(model(x[idx]), y[idx])

    fit(step, total, optimizer=opt, scheduler=sched, device=device, desc="retrain on memory",
        what="retraining loss", fix="lower lr", log_every=max(1, total // 10))
    return model


# --------------------------------------------------------------------------- buffers, by kind


def _real_buffer(kind):
    def make(cfg, bench, spec, seed, teacher, model, memory_bytes):
        from avalanche.training.plugins import ReplayPlugin
        from avalanche.training.storage_policy import ClassBalancedBuffer, ReservoirSamplingBuffer
        n = real_buffer_size(memory_bytes, bench.channels, bench.image_size)
        buffer = ReservoirSamplingBuffer(n) if kind == "reservoir" else ClassBalancedBuffer(n, adaptive_size=True)
        plugin = None
        if spec.mode != "retrain":
            plugin = _replay_plugin(ReplayPlugin)(mem_size=n, batch_size_mem=cfg.batch_size_mem, storage_policy=buffer)
        return buffer, plugin
    return make


def _distilled_buffer(cfg, bench, spec, seed, teacher, model, memory_bytes):
    buffer = DistilledBuffer(memory_bytes, mean=bench.mean, std=bench.std, image_size=bench.image_size,
                             channels=bench.channels, teacher=teacher or "model", method=cfg.distill.method,
                             steps=cfg.distill.steps, params=cfg.distill.params,
                             storage_dtype=cfg.distill.storage_dtype,
                             store_targets=spec.mode in ("representation", "both"),
                             feature_dim=model.feature_dim, device=cfg.device, seed=seed,
                             n_experiences=bench.n_experiences, experts=cfg.distill.experts)
    plugin = None if spec.mode == "retrain" else DistilledReplayPlugin(buffer, spec.mode, cfg.batch_size_mem,
                                                                       cfg.repr_weight)
    return buffer, plugin


#: buffer kind -> factory(cfg, bench, spec, seed, teacher, model, memory_bytes) -> (buffer or None, plugin or None)
BUFFERS = {
    "none": lambda *a: (None, None),
    "reservoir": _real_buffer("reservoir"),
    "class_balanced": _real_buffer("class_balanced"),
    "distilled": _distilled_buffer,
}


def run_one(cfg: ContinualConfig, bench: ContinualBenchmark, spec: BufferSpec, seed: int, teacher) -> dict:
    from avalanche.training.supervised import Naive
    device = resolve_device(cfg.device)
    seed_everything(seed)
    model = _make_model(cfg, bench, device)
    init_state = copy.deepcopy(model.state_dict())
    memory_bytes = cfg.memory_per_class * bench.num_classes * real_item_bytes(bench.channels, bench.image_size)
    retrain = spec.mode == "retrain"
    buffer, plugin = BUFFERS[spec.kind](cfg, bench, spec, seed, teacher, model, memory_bytes)
    plugins = [plugin] if plugin is not None else []
    strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                                            weight_decay=cfg.weight_decay),
                     criterion=torch.nn.CrossEntropyLoss(), train_mb_size=cfg.batch_size, train_epochs=cfg.epochs,
                     eval_mb_size=512, device=device, plugins=plugins, evaluator=_silent_evaluator())
    matrix, sizes = [], []
    t0 = time.time()
    for exp in bench.scenario.train_stream:
        strategy.train(exp, num_workers=0)
        eval_model = model
        if retrain and buffer is not None:
            buffer.post_adapt(strategy, exp)  # (a distilled memory is built with the stream model's features)
            fresh = _make_model(cfg, bench, device)
            fresh.load_state_dict(init_state)
            eval_model = retrain_on_memory(fresh, memory_tensors(buffer, device), cfg, device)
        matrix.append(experience_accuracies(eval_model, bench, device))
        used = (buffer.bytes_used() if isinstance(buffer, DistilledBuffer)
                else len(buffer.buffer) * real_item_bytes(bench.channels, bench.image_size) if buffer is not None else 0)
        sizes.append({"items": len(buffer) if isinstance(buffer, DistilledBuffer) else
                      (len(buffer.buffer) if buffer is not None else 0), "bytes": used})
    res = {"buffer": buffer_label(spec), "kind": spec.kind, "mode": spec.mode, "seed": seed, "matrix": matrix,
           "memory_bytes": memory_bytes if spec.kind != "none" else 0, "sizes": sizes, "seconds": time.time() - t0,
           **summarize(matrix)}
    return res


def _replay_plugin(base):
    """Avalanche's ReplayPlugin, updating its buffer through ``post_adapt`` (0.6's ``update()`` is deprecated
    and resets the warning filters on every call)."""
    class Replay(base):
        def after_training_exp(self, strategy, **kwargs):
            self.storage_policy.post_adapt(strategy, strategy.experience)
    return Replay


def _silent_evaluator():
    from avalanche.training.plugins import EvaluationPlugin
    return EvaluationPlugin(loggers=[])


def _run_key(cfg: ContinualConfig, spec: BufferSpec, seed: int) -> str:
    """What a finished run depends on: the whole config except the run list, output and device."""
    d = {k: v for k, v in to_dict(cfg).items() if k not in ("buffers", "seeds", "output", "device")}
    d.update(spec=to_dict(spec), seed=seed)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _run_file(out: Path, spec: BufferSpec, seed: int) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", buffer_label(spec).lower()).strip("-")
    return out / "runs" / f"{slug}-seed{seed}.json"


def run_continual(cfg: ContinualConfig, resume: bool = True) -> dict:
    """Every (buffer, seed) run is written to ``output/runs/`` as it finishes and the report is rewritten,
    so a long benchmark shows partial results and, when started again with the same settings, skips
    the runs already done (``resume=False`` recomputes them)."""
    t0 = time.time()
    bench = split_benchmark(cfg.benchmark, cfg.root, cfg.n_experiences, seed=0, train_per_class=cfg.train_per_class,
                            test_per_class=cfg.test_per_class)
    teacher = None if cfg.distill.teacher == "model" else Teacher.load(cfg.distill.teacher)
    out = Path(cfg.output)
    print(f"continual: split {bench.name}, {bench.n_experiences} experiences, {len(cfg.buffers)} buffer(s) x "
          f"{len(cfg.seeds)} seed(s), {cfg.arch}, {cfg.epochs} epoch(s) per experience, device "
          f"{resolve_device(cfg.device)}; each run's result is printed when it ends", flush=True)
    runs, report = [], None
    for spec in progress(cfg.buffers, desc="buffers"):
        for seed in cfg.seeds:
            key, path = _run_key(cfg, spec, seed), _run_file(out, spec, seed)
            r = json.loads(path.read_text()) if resume and path.exists() else None
            cached = r is not None and r.get("key") == key
            if not cached:
                r = dict(run_one(cfg, bench, spec, seed, teacher), key=key)
                write_json(path, r)
            runs.append(r)
            print(f"  {r['buffer']:<28} seed {seed}: final avg acc {r['final_avg_acc']:.2f}, forgetting "
                  f"{r['avg_forgetting']:.2f}, memory {r['sizes'][-1]['bytes'] / 1024:.0f} KiB "
                  f"({r['sizes'][-1]['items']} items), {r['seconds']:.0f}s{' (done before)' if cached else ''}",
                  flush=True)
            report = _write_report(cfg, bench, runs, out, time.time() - t0)
    return report or _write_report(cfg, bench, runs, out, time.time() - t0)


def _write_report(cfg, bench, runs, out: Path, seconds: float) -> dict:
    table = _table(cfg, bench, runs)
    plot = _plot(cfg, bench, runs, out / "accuracy.png")
    md = (f"# Continual learning: split {bench.name}, {bench.n_experiences} experiences\n\n"
          f"Naive fine-tuning of `{cfg.arch}` ({cfg.epochs} epoch(s) per experience, batch {cfg.batch_size}); memory "
          f"{cfg.memory_per_class} real images per class = {max((r['memory_bytes'] for r in runs), default=0)} bytes "
          f"for every buffer; distilled buffer: {cfg.distill.method}, {cfg.distill.steps} steps per experience, teacher "
          f"`{cfg.distill.teacher}`, images stored as {cfg.distill.storage_dtype}. Seeds {list(cfg.seeds)}; "
          f"mean ± sample std.\n\n{table}\n![accuracy]({plot.name})\n")
    paths = {"md": write_text(out / "results.md", md), "plot": plot,
             "json": write_json(out / "results.json", {"runs": runs, "config": to_dict(cfg), "class_order": bench.class_order,
                                                      "seconds": seconds})}
    return {"runs": runs, "table": table, "markdown": md, "paths": paths}


def _table(cfg, bench, runs) -> str:
    rows = [{"buffer": r["buffer"], "metric": m, "acc": r[m]} for r in runs for m in ("final_avg_acc", "avg_forgetting")]
    agg = {(a["buffer"], a["metric"]): a for a in aggregate(rows, ("buffer", "metric"))}
    per_exp = aggregate([{"buffer": r["buffer"], "i": i, "acc": v} for r in runs for i, v in enumerate(r["seen_avg_acc"])],
                        ("buffer", "i"))
    lines = ["| buffer | memory used / budget | final avg acc | avg forgetting | " + " | ".join(
        f"after exp {i + 1}" for i in range(bench.n_experiences)) + " |",
        "|---|---|---|---|" + "---|" * bench.n_experiences]
    for name in dict.fromkeys(r["buffer"] for r in runs):
        run = next(r for r in runs if r["buffer"] == name)
        mem = (f"{run['sizes'][-1]['bytes'] / 1024:.0f} / {run['memory_bytes'] / 1024:.0f} KiB"   # a buffer may hold
               if run["memory_bytes"] else "–")                                                  # less than its budget
        a, f = agg[(name, "final_avg_acc")], agg[(name, "avg_forgetting")]
        seen = [fmt(p["mean"], p["std"], p["n"]) for p in per_exp if p["buffer"] == name]
        lines.append(f"| {name} | {mem} | {fmt(a['mean'], a['std'], a['n'])} | {fmt(f['mean'], f['std'], f['n'])} | "
                     + " | ".join(seen) + " |")
    return "\n".join(lines) + "\n"


def _plot(cfg, bench, runs, path: Path) -> Path:
    plt = matplotlib_pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = list(range(1, bench.n_experiences + 1))
    for name in dict.fromkeys(r["buffer"] for r in runs):
        curves = torch.tensor([r["seen_avg_acc"] for r in runs if r["buffer"] == name])
        mean = curves.mean(0)
        ax.plot(xs, mean.tolist(), marker="o", label=name)
        if len(curves) > 1:
            sd = curves.std(0)
            ax.fill_between(xs, (mean - sd).tolist(), (mean + sd).tolist(), alpha=0.15)
    ax.set_xlabel("experiences trained")
    ax.set_ylabel("average accuracy on the experiences seen (%)")
    ax.set_title(f"split {bench.name}: equal memory ({cfg.memory_per_class} real images / class)")
    ax.set_xticks(xs)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
