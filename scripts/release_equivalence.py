#!/usr/bin/env python
"""Run one small teacher -> KRR-ST -> pre-train + fine-tune + probe pipeline with whichever `distill`
is first on PYTHONPATH, and save the teacher weights, the set and the accuracies, so that two
releases can be compared bit for bit on one machine:

    git worktree add /tmp/old 860e55b
    PYTHONPATH=/tmp/old python scripts/release_equivalence.py /tmp/eq/old
    PYTHONPATH=$PWD     python scripts/release_equivalence.py /tmp/eq/new
    python scripts/release_equivalence.py --compare /tmp/eq/old /tmp/eq/new
"""
from __future__ import annotations

import json
import sys

import torch


def compare(a_dir: str, b_dir: str) -> int:
    a, b = (torch.load(f"{d}/res.pt") for d in (a_dir, b_dir))
    same = {"teacher": all(torch.equal(a["teacher"][k], b["teacher"][k]) for k in a["teacher"]),
            "images": torch.equal(a["images"], b["images"]), "targets": torch.equal(a["targets"], b["targets"]),
            "accuracies": [round(x, 4) for x in a["acc"]] == [round(x, 4) for x in b["acc"]]}
    print(json.dumps(same))
    return 0 if all(same.values()) else 1


def run(out: str) -> None:
    import distill
    from distill import DistilledSet
    from distill.config import DataConfig
    try:   # this release: schemas beside their code
        from distill.evaluate.config import EvalConfig, FinetuneConfig, LinearConfig, PretrainConfig, TargetConfig
        from distill.methods.run import DistillConfig
        from distill.ssl.train import TeacherConfig
    except ImportError:   # release 0.1
        from distill.config import (DistillConfig, EvalConfig, FinetuneConfig, LinearConfig, PretrainConfig,
                                    TargetConfig, TeacherConfig)
    from distill.evaluate import evaluate_sets
    from distill.methods import run_distillation
    from distill.ssl import train_teacher
    print(distill.__file__)
    t = train_teacher(TeacherConfig(data=DataConfig(name="sample"), backbone="convnet-d2-w16-bn", ssl="simclr", epochs=2,
                                    batch_size=256, projector_hidden=64, projector_dim=32, projector_layers=2,
                                    warmup_epochs=1, output=f"{out}/t.safetensors", knn_k=20))
    params = {"pool_arch": "convnet-d2-w8-bn", "pool_size": 2, "pool_steps": 5, "real_batch": 64}
    r = run_distillation(DistillConfig(data=DataConfig(name="sample"), teacher=str(t.path), budget=20, steps=10,
                                       params=params, output=f"{out}/k.safetensors"))
    s = DistilledSet.load(r.path)
    ecfg = EvalConfig(arch="convnet-d2-w8-bn", targets=[TargetConfig(name="sample", train_per_class=50, test_per_class=20)],
                      pretrain=PretrainConfig(epochs=5, batch_size=16), finetune=FinetuneConfig(iterations=30, batch_size=32),
                      linear=LinearConfig(steps=20, label_fractions=[1.0, 0.1]), seeds=[0], output=f"{out}/eval")
    rep = evaluate_sets({"k": s, "none": None}, ecfg, write=False, verbose=False)
    rows = [(x["set"], x["metric"], round(x["acc"], 4)) for x in rep.rows]
    print(json.dumps({"knn": t.knn_top1, "loss": [h["loss"] for h in r.history], "rows": rows}))
    torch.save({"teacher": t.teacher.model.state_dict(), "images": s.images, "targets": s.targets,
                "acc": [x["acc"] for x in rep.rows]}, f"{out}/res.pt")


if __name__ == "__main__":
    sys.exit(compare(sys.argv[2], sys.argv[3]) if sys.argv[1] == "--compare" else run(sys.argv[1]))
