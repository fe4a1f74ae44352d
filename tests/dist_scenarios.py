"""Scenarios that tests/test_distributed.py runs in one process and under ``torchrun`` (gloo, CPU).

    python tests/dist_scenarios.py SCENARIO OUT             # one process
    torchrun --nproc_per_node 2 tests/dist_scenarios.py SCENARIO OUT

Each scenario takes a few steps of a real stage on a tiny problem and rank 0 writes the tensors it
ended with to OUT (safetensors); every rank also appends the files it renamed into place (atomic
writes) to OUT.rank<r>.writes, so a test can check who wrote what.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distill.engine import dist  # noqa: E402
from tests.helpers import small_source, tiny_teacher  # noqa: E402


def _record_writes(out: Path) -> None:
    """Log every atomic rename (the toolkit writes files only through them) to a per-rank file."""
    real = os.replace
    log = Path(f"{out}.rank{dist.rank()}.writes")

    def replace(src, dst, *a, **k):
        with open(log, "a") as f:
            f.write(f"{dst}\n")
        return real(src, dst, *a, **k)
    os.replace = replace


def teacher_step(out: Path, ssl: str, steps: int = 2) -> dict:
    from distill.data.config import DataConfig
    from distill.engine import seed_everything
    from distill.ssl.train import TeacherConfig, TeacherStage
    seed_everything(0)
    src = small_source(8)                       # 80 images
    cfg = TeacherConfig(data=DataConfig(name="sample"), backbone="convnet-d2-w8-bn", ssl=ssl, projector_hidden=32,
                        projector_dim=16, batch_size=16, epochs=1, warmup_epochs=0, device="cpu", amp="off",
                        optimizer="sgd", lr=0.5)
    stage = TeacherStage(cfg, src, torch.device("cpu"))
    stage.setup()
    losses = [float(stage.step(i)["loss"]) for i in range(steps)]
    tensors = {f"backbone.{k}": v for k, v in stage.backbone.state_dict().items()}
    tensors.update({f"proj.{k}": v for k, v in stage.proj.state_dict().items()})
    tensors["losses"] = torch.tensor(losses)
    return tensors


def krrst_step(out: Path, method: str = "krr_st", steps: int = 3) -> dict:
    from distill.engine import seed_everything
    from distill.methods.base import DistillContext, get_method, method_config
    seed_everything(0)
    src = small_source(10)
    teacher = tiny_teacher(source=src)
    cls = get_method(method)
    params = {**cls.tiny_params, "real_batch": 30, "augment_real": True}
    ctx = DistillContext(source=src, teacher=teacher, budget=10, steps=steps, device=torch.device("cpu"), seed=0,
                         amp="off")
    m = cls(method_config(cls, params), ctx)
    m.setup()
    losses = [float(m.step(i)["loss"]) for i in range(steps)]
    tensors = {k: v.detach().clone() for k, v in m.learnables().items()}
    tensors["losses"] = torch.tensor(losses)
    return tensors


def gather_grads(out: Path) -> dict:
    """Differentiable all_gather / all_reduce: gradients equal those of the whole batch in one process."""
    torch.manual_seed(0)
    x = torch.randn(10, 4, dtype=torch.float64)
    w = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    part = dist.shard(len(x))
    z = x[part] @ w
    everyone = dist.all_gather(z, grad=True)
    loss = (everyone.sin().sum() * dist.all_reduce_sum(z.pow(2).sum(), grad=True)) / dist.world_size()
    loss.backward()
    dist.sync_grads([w], op="sum")
    return {"grad": w.grad, "loss": dist.all_reduce_sum(loss.detach())}


def mkdt_step(out: Path, ranks: int = 2) -> dict:
    """One MKDT iteration. Under torchrun each rank unrolls its own (expert, start epoch) draw and the
    gradients are averaged; in one process the same ``ranks`` draws are unrolled one after the other and
    their gradients averaged by hand (what the ranks must compute together)."""
    from distill.engine import seed_everything
    from distill.methods.base import DistillContext, get_method, method_config
    from distill.methods.mkdt import matching_backward
    seed_everything(0)
    src = small_source(10)
    teacher = tiny_teacher(source=src)
    cls = get_method("mkdt")
    extra = cls.tiny_setup(Path(f"{out}.mkdt"), src, teacher)     # two experts (one per rank under torchrun)
    ctx = DistillContext(source=src, teacher=teacher, budget=10, steps=1, device=torch.device("cpu"), seed=0, amp="off")
    m = cls(method_config(cls, {**cls.tiny_params, "max_start_epoch": 2, **extra}), ctx)
    m.setup()
    leaves = (m.x, m.y, m.lr)
    if dist.is_distributed():
        assert dist.world_size() == ranks
        m.step(0)
    else:
        grads = []
        for k, t, batches in [m.draw() for _ in range(ranks)]:
            for o in m.opts:
                o.zero_grad(set_to_none=True)
            matching_backward(m.fp, m.rows[k, t].float(), m.rows[k, t + m.cfg.expert_epochs].float(), m.x, m.y, m.lr,
                              batches, checkpoint=m.cfg.checkpoint_unroll, amp=m.cfg.unroll_amp)
            grads.append([p.grad.clone() for p in leaves])
        for p, *g in zip(leaves, *grads):
            p.grad = sum(g) / ranks
        for o in m.opts:
            o.step()
    return {"x": m.x.detach().clone(), "y": m.y.detach().clone(), "lr": m.lr.detach().reshape(1).clone()}


def finetune_step(out: Path) -> dict:
    """Evaluation's fine-tuning with ``parallel: data`` (DDP, SyncBatchNorm, each rank a shard of every batch)."""
    from distill.engine import seed_everything
    from distill.evaluate.config import FinetuneConfig
    from distill.evaluate.train import finetune
    from distill.models import create_model
    seed_everything(0)
    train, test = small_source(10), small_source(5, split="test")
    model = create_model("convnet-d2-w8-bn", out_dim=0, image_size=32, mean=train.mean, std=train.std)
    acc = finetune(model, train, test, FinetuneConfig(iterations=3, batch_size=32, lr=0.05), amp="off",
                   data_parallel=True)
    return {**{k: v.clone() for k, v in model.state_dict().items() if v.dtype.is_floating_point},
            "acc": torch.tensor([acc], dtype=torch.float64)}


def too_few_images(out: Path) -> dict:
    """A KRR-ST run whose synthetic set (1 image) cannot be shared by the ranks is refused with a fix."""
    from distill.errors import ConfigError
    from distill.methods.base import DistillContext, get_method, method_config
    src = small_source(2)
    cls = get_method("krr_st")
    ctx = DistillContext(source=src, teacher=tiny_teacher(source=src), budget=1, steps=1, device=torch.device("cpu"))
    try:
        cls(method_config(cls, cls.tiny_params), ctx).setup()
    except ConfigError as e:
        return {"refused": torch.tensor([1.0 if "use at most 1 processes" in str(e) else -1.0])}
    return {"refused": torch.tensor([0.0])}


def equivalence(out: Path) -> dict:
    """One optimizer step's worth of each stage whose step is split over ranks (for the 2 == 1 test)."""
    tensors = {}
    for name, fn in (("simclr", lambda: teacher_step(out, "simclr")), ("barlow", lambda: teacher_step(out, "barlow_twins")),
                     ("krrst", lambda: krrst_step(out, "krr_st")), ("boost", lambda: krrst_step(out, "boost")),
                     ("gather", lambda: gather_grads(out)), ("mkdt", lambda: mkdt_step(out)),
                     ("finetune", lambda: finetune_step(out)), ("refusal", lambda: too_few_images(out))):
        tensors.update({f"{name}.{k}": v for k, v in fn().items()})
    return tensors


def _distill_cfg(folder: Path, name: str, method: str = "krr_st", steps: int = 6, **params):
    from distill.methods.base import get_method
    from distill.methods.run import DistillConfig
    cls = get_method(method)
    return DistillConfig(method=method, budget=10, steps=steps, seed=0, device="cpu", amp="off", checkpoint_every=2,
                         output=str(folder / name), params={**cls.tiny_params, **params})


def run_resume(out: Path) -> dict:
    """KRR-ST through the stage driver: uninterrupted (a), stopped at step 3 then resumed (b), stopped by a
    time limit then resumed (c)."""
    from distill.methods.run import run_distillation
    folder = Path(f"{out}.d")
    src = small_source(10)
    teacher = tiny_teacher(source=src)
    kw = dict(teacher=teacher, source=src, quiet=True)
    a = run_distillation(_distill_cfg(folder, "a.safetensors", real_batch=30), **kw)
    stopped = run_distillation(_distill_cfg(folder, "b.safetensors", real_batch=30), stop_after=3, **kw)
    assert stopped.set is None and stopped.steps == 3
    b = run_distillation(_distill_cfg(folder, "b.safetensors", real_batch=30), resume=True, **kw)
    # a time limit of 0 s: rank 0's clock stops every rank after the first step, with a checkpoint
    cut = run_distillation(_distill_cfg(folder, "c.safetensors", real_batch=30), time_limit=0, **kw)
    assert cut.set is None and cut.steps == 1, cut.steps
    c = run_distillation(_distill_cfg(folder, "c.safetensors", real_batch=30), resume=True, **kw)
    return {f"{k}.{f}": getattr(r.set, f) for k, r in (("a", a), ("b", b), ("c", c)) for f in ("images", "targets")}


def split_work(out: Path) -> dict:
    """The stages that split work over ranks: SC-DD recover (parts merged), experts, evaluation jobs."""
    from distill.evaluate import evaluate_sets
    from distill.evaluate.config import EvalConfig, FinetuneConfig, LinearConfig, PretrainConfig, TargetConfig
    from distill.methods.mkdt.experts import ExpertsConfig, Trajectory, expert_path, train_experts
    from distill.methods.run import run_distillation
    folder = Path(f"{out}.d")
    src = small_source(10)
    teacher = tiny_teacher(source=src)
    scdd = run_distillation(_distill_cfg(folder, "scdd.safetensors", "scdd", steps=3), teacher=teacher, source=src,
                            quiet=True)
    ecfg = ExpertsConfig(teacher="<in memory>", arch="convnet-d2-w8-in", experts=2, epochs=2, batch_size=16,
                         device="cpu", output=str(folder / "experts"))
    train_experts(ecfg, source=src, teacher=teacher, quiet=True)
    experts = torch.stack([Trajectory.load(expert_path(ecfg.output, k)).params for k in range(2)])
    train, test = small_source(5), small_source(3, split="test")
    ecfg = EvalConfig(arch="convnet-d2-w8-bn", pretrain=PretrainConfig(epochs=1),
                      finetune=FinetuneConfig(iterations=2, batch_size=16), linear=LinearConfig(steps=3),
                      seeds=[0, 1], output=str(folder / "eval"), device="cpu", amp="off")
    from distill.distilled import DistilledSet
    x = src.float()[:10]
    meta = dict(method="random", source="sample", image_size=32, channels=3, mean=list(src.mean), std=list(src.std))
    s = DistilledSet(images=x, targets=teacher.encode(x), meta=meta)
    rep = evaluate_sets({"a": s, "none": None}, ecfg, targets={"sample": (train, test, TargetConfig())}, verbose=False)
    accs = torch.tensor([r["acc"] for r in rep.rows], dtype=torch.float64)
    return {"scdd.images": scdd.set.images if scdd.set is not None else DistilledSet.load(scdd.path).images,
            "experts": experts, "eval.acc": accs, "eval.seeds": torch.tensor([r["seed"] for r in rep.rows])}


SCENARIOS = {
    "equivalence": equivalence,
    "run_resume": run_resume,
    "split_work": split_work,
    "teacher_simclr": lambda out: teacher_step(out, "simclr"),
    "teacher_barlow": lambda out: teacher_step(out, "barlow_twins"),
    "krrst": lambda out: krrst_step(out, "krr_st"),
    "boost": lambda out: krrst_step(out, "boost"),
    "gather_grads": gather_grads,
}


def main() -> None:
    name, out = sys.argv[1], Path(sys.argv[2])
    os.environ.setdefault("SSDD_PROGRESS", "0")
    torch.set_num_threads(1)
    dist.init_distributed("cpu")
    _record_writes(out)
    tensors = SCENARIOS[name](out)
    if dist.is_main():
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(out))
    dist.barrier()


if __name__ == "__main__":
    main()
