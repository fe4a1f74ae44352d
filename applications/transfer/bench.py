"""Transfer as a leaderboard protocol: each set pre-trains every architecture, then probe / fine-tune.

YAML (a leaderboard protocol)::

    - name: transfer
      overrides:
        archs: [convnet, resnet18, vgg11, mobilenetv2, "timm:vit_tiny_patch16_224"]
        protocol: krrst                  # the evaluation protocol each architecture runs (its preset)
        eval: {pretrain: {epochs: 200}, finetune: {iterations: 200}}   # EvalConfig keys on top of it

A cell is one set x evaluation seed, all architectures; its rows' metric is ``<arch> <metric>`` (linear,
finetune). The rows `random` and `random_labelled` are the real-image baselines.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distill.evaluate import evaluate_sets
from distill.leaderboard.apps import Application
from distill.leaderboard.cells import eval_config
from distill.leaderboard.config import ProtocolSpec


@dataclass
class TransferBenchConfig:
    archs: list[str] = field(default_factory=lambda: ["convnet", "resnet18", "vgg11", "mobilenetv2", "vit-tiny"])
    protocol: str = "krrst"              # the evaluation protocol each architecture runs
    eval: dict[str, Any] = field(default_factory=dict)   # EvalConfig keys on top of its preset


class TransferApp(Application):
    name = "transfer"
    Config = TransferBenchConfig

    def prepare(self) -> str:
        return (f"Transfer: each set pre-trains {', '.join(f'`{a}`' for a in self.p.archs)} under the "
                f"`{self.p.protocol}` protocol{' with ' + str(self.p.eval) if self.p.eval else ''}, then each is "
                "probed / fine-tuned on the target.")

    def cell(self, label, s, seed, set_seed, row) -> list[dict]:
        rows = []
        for arch in self.p.archs:
            ecfg = eval_config(self.ctx.cfg, ProtocolSpec(self.p.protocol, {**self.p.eval, "arch": arch}), seed)
            rep = evaluate_sets({label: s}, ecfg, targets=self.ctx.targets, write=False, verbose=False)
            rows += [{"target": r["target"], "metric": f"{arch} {r['metric']}", "acc": r["acc"], "arch": arch}
                     for r in rep.rows]
        return rows


APPLICATION = TransferApp
