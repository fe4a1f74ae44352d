"""Transfer as a leaderboard protocol: each set pre-trains every architecture, then probe / fine-tune.

YAML (a leaderboard protocol)::

    - name: transfer
      overrides:
        archs: [convnet, resnet18, vgg11, mobilenetv2, "timm:vit_tiny_patch16_224"]
        protocol: krrst                  # the evaluation protocol each architecture runs (its preset)
        eval: {pretrain: {epochs: 200}, finetune: {iterations: 200}}   # EvalConfig keys on top of it

A cell is one set x evaluation seed, all architectures; its rows' metric is ``<arch> <metric>`` (linear,
finetune). The rows `random` and `random_labelled` are the real-image baselines. The reference row
``random init (no pre-training)`` is each architecture as initialised (per distillation seed, so that it pairs
with the rows), probed / fine-tuned the same way: the floor that pre-training on a set has to lift, compared with
the best real-image set like every other row.
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


#: the reference row: every architecture as initialised, probed / fine-tuned like the pre-trained ones
NO_PRETRAIN_ROW = "random init (no pre-training)"


class TransferApp(Application):
    name = "transfer"
    Config = TransferBenchConfig

    def prepare(self) -> str:
        return (f"Transfer: each set pre-trains {', '.join(f'`{a}`' for a in self.p.archs)} under the "
                f"`{self.p.protocol}` protocol{' with ' + str(self.p.eval) if self.p.eval else ''}, then each is "
                f"probed / fine-tuned on the target; `{NO_PRETRAIN_ROW}`: the same architectures as initialised, "
                "the floor that pre-training has to lift.")

    def references(self) -> dict[str, bool]:
        return {NO_PRETRAIN_ROW: False}

    def cell(self, label, s, seed, set_seed, row) -> list[dict]:
        rows = []
        size, chans = self.ctx.src.image_size, self.ctx.src.channels   # of the networks when no set says it
        for arch in self.p.archs:
            ecfg = eval_config(self.ctx.cfg, ProtocolSpec(self.p.protocol, {**self.p.eval, "arch": arch}), seed)
            rep = evaluate_sets({label: s}, ecfg, targets=self.ctx.targets, write=False, verbose=False,
                                image_size=size, channels=chans)
            rows += [{"target": r["target"], "metric": f"{arch} {r['metric']}", "acc": r["acc"], "arch": arch}
                     for r in rep.rows]
        return rows


APPLICATION = TransferApp
