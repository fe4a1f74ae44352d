"""Cross-architecture transfer: pre-train each architecture on each set, then fine-tune / probe.

One table, architectures x (target, metric, set), with the no-pre-training reference, and a grouped
bar chart. The per-architecture work is :func:`distill.evaluate.evaluate_sets`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from distill import DistilledSet
from distill.config import to_dict
from distill.evaluate.config import EvalConfig, FinetuneConfig, LinearConfig, PretrainConfig, TargetConfig
from distill.engine import resolve_device
from distill.errors import ConfigError
from distill.evaluate import NO_PRETRAIN, evaluate_sets, load_targets
from distill.evaluate.report import aggregate, write_report
from distill.viz import matplotlib_pyplot, save_figure

DEFAULT_ARCHS = ["convnet", "vgg11", "resnet18", "alexnet", "mobilenetv2", "vit-tiny"]


@dataclass
class SetSpec:
    label: str = ""
    path: str = ""


@dataclass
class TransferConfig:
    sets: list[SetSpec] = field(default_factory=list)       # e.g. the distilled set and a random subset
    archs: list[str] = field(default_factory=lambda: list(DEFAULT_ARCHS))   # registry names or timm:<name>
    targets: list[TargetConfig] = field(default_factory=lambda: [TargetConfig()])
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)
    no_pretrain_baseline: bool = True
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    device: str = "auto"
    amp: str = "auto"                     # auto | bf16 | off
    output: str = "reports/transfer"

    def validate(self):
        if not self.sets:
            raise ConfigError("transfer needs at least one set", fix="sets=[{label: krr_st, path: set.safetensors}]")
        if not self.archs:
            raise ConfigError("transfer needs at least one architecture")


def run_transfer(cfg: TransferConfig) -> dict:
    t0 = time.time()
    sets: dict = {(s.label or Path(s.path).stem): DistilledSet.load(s.path) for s in cfg.sets}
    if cfg.no_pretrain_baseline:
        sets[NO_PRETRAIN] = None
    ref = next(s for s in sets.values() if s is not None)
    device = resolve_device(cfg.device)
    targets = load_targets(cfg.targets, ref.image_size, ref.channels, device)
    rows = []
    for arch in cfg.archs:
        print(f"[{arch}]", flush=True)
        ecfg = EvalConfig(protocol="transfer", arch=arch, targets=cfg.targets, pretrain=cfg.pretrain,
                          finetune=cfg.finetune, linear=cfg.linear, seeds=cfg.seeds, no_pretrain_baseline=False,
                          device=cfg.device, amp=cfg.amp, output=cfg.output)
        rows += evaluate_sets(sets, ecfg, targets=targets, write=False).rows
    keys = ("arch", "target", "metric", "set")
    notes = [f"Each architecture pre-trained on each set ({cfg.pretrain.epochs} epochs, MSE to its targets), then "
             f"{'fine-tuned (' + str(cfg.finetune.iterations) + ' iterations)' if cfg.finetune.enabled else ''}"
             f"{' and ' if cfg.finetune.enabled and cfg.linear.enabled else ''}"
             f"{'linear-probed (' + cfg.linear.solver + ')' if cfg.linear.enabled else ''} on each target; seeds "
             f"{list(cfg.seeds)}; test top-1 (%), mean ± sample std."]
    rep = write_report(cfg.output, rows, keys, "arch", ("target", "metric", "set"), "Cross-architecture transfer", notes,
                       {"config": to_dict(cfg), "seconds": round(time.time() - t0, 1)})
    plot = _bars(aggregate(rows, keys), Path(cfg.output) / "transfer.png")
    return {"rows": rows, "table": rep["table"], "paths": {**rep["paths"], "plot": plot}}


def _bars(agg: list[dict], path: Path) -> Path:
    plt = matplotlib_pyplot()
    panels = list(dict.fromkeys((a["target"], a["metric"]) for a in agg))
    archs = list(dict.fromkeys(a["arch"] for a in agg))
    labels = list(dict.fromkeys(a["set"] for a in agg))
    fig, axes = plt.subplots(1, len(panels), figsize=(max(5, 1.2 * len(archs) * len(labels) / 2) * len(panels), 3.8),
                             squeeze=False)
    width = 0.8 / len(labels)
    cell = {(a["arch"], a["target"], a["metric"], a["set"]): a for a in agg}
    for ax, (target, metric) in zip(axes[0], panels):
        for k, lab in enumerate(labels):
            vals = [cell.get((ar, target, metric, lab)) for ar in archs]
            xs = [i + (k - (len(labels) - 1) / 2) * width for i in range(len(archs))]
            spread = any(v and v["n"] > 1 for v in vals)  # no error bars from a single seed
            ax.bar(xs, [v["mean"] if v else 0 for v in vals], width, label=lab, capsize=2,
                   yerr=[v["std"] if v and v["n"] > 1 else 0 for v in vals] if spread else None)
        ax.set_xticks(range(len(archs)))
        ax.set_xticklabels(archs, rotation=20)
        ax.set_ylabel("test top-1 (%)")
        ax.set_title(f"{target} {metric}" + ("" if max(a["n"] for a in agg) > 1 else " (one seed)"))
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


__all__ = ["DEFAULT_ARCHS", "SetSpec", "TransferConfig", "run_transfer"]
