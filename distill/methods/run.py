"""The distillation runner: config -> data, teacher, method -> a resumable stage -> set file."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import resolved, to_dict
from ..data import load_dataset
from ..data.config import DataConfig
from ..distilled import DistilledSet
from ..engine import dist, resolve_device, seed_everything
from ..engine.device import amp_mode, describe_precision
from ..engine.stage import Stage, checkpoint_path, run_stage
from ..errors import ConfigError
from ..ssl.teacher import Teacher
from .base import DistillContext, Method, get_method, method_config


@dataclasses.dataclass
class DistillConfig:
    """``ssdd distill``: distil ``data`` with ``method`` into ``budget`` examples.

    ``params`` holds the method's own settings; they are checked against the method's config
    dataclass (``distill.methods.<method>.Config``), so a mistyped key is an error there too.

    YAML (configs/<method>/<dataset>.yaml)::

        data: {name: cifar100, root: /data}
        teacher: runs/cifar100/teacher.safetensors
        method: krr_st
        budget: 100
        steps: 160000
        params: {pool_arch: convnet-128-256-512-bn, lr_images: 1.0e-4}
        output: runs/cifar100/krr_st_n100.safetensors
    """

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    teacher: str | None = None            # teacher file (ssdd teacher); needed by every method here
    method: str = "krr_st"
    budget: int = 100
    class_conditional: bool = False       # budget split evenly over classes, images labelled
    steps: int | None = None              # None: the method's default
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"                     # auto | bf16 | off
    # null: keep the set in memory (Python API); ${...} are other keys of this config
    output: str | None = "runs/${.data.name}/${.method}_n${.budget}.safetensors"
    checkpoint_every: int = 500           # steps; 0 = never
    save_every: int = 0                   # also write the set every k steps; 0 = only at the end
    log_every: int = 10
    tensorboard: bool = False
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def validate(self):
        if self.budget < 1:
            raise ConfigError(f"budget must be >= 1, got {self.budget}")
        if self.output is not None and not self.output.endswith(".safetensors"):
            raise ConfigError(f"output '{self.output}' must end in .safetensors")
        if self.steps is not None and self.steps < 0:
            raise ConfigError("steps must be >= 0")
        amp_mode(self.amp)


@dataclass
class DistillResult:
    set: DistilledSet | None       # None when stopped early (stop_after)
    path: Path | None              # the set file; the checkpoint when stopped early; None in memory
    steps: int
    seconds: float
    history: list[dict]


class MethodStage(Stage):
    """A registered :class:`Method` as a resumable stage; ``finish`` fills in the set's header."""

    def __init__(self, method: Method, cfg: DistillConfig, teacher: Teacher | None):
        self.method, self.cfg, self.teacher = method, cfg, teacher
        self.name = f"distill/{cfg.method}"
        self.t0 = time.time()

    def setup(self, fresh: bool = True) -> None:
        self.method.setup(fresh=fresh)

    def step(self, i: int):
        return self.method.step(i)

    def state_dict(self) -> dict:
        return self.method.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.method.load_state_dict(state)

    def snapshot(self, step: int) -> DistilledSet:
        cfg, src, teacher = self.cfg, self.method.ctx.source, self.teacher
        ds = self.method.export()
        ds.meta = {**ds.meta, "method": cfg.method, "source": src.name, "split": src.split,
                   "image_size": src.image_size, "channels": src.channels, "mean": list(src.mean),
                   "std": list(src.std), "seed": cfg.seed, "steps": step, "budget": cfg.budget,
                   "class_conditional": cfg.class_conditional, "config": to_dict(cfg)}
        if step < self.method.ctx.steps and hasattr(self, "t0"):   # a save_every snapshot: seconds so far
            ds.meta["distill_seconds"] = round(time.time() - self.t0, 1)
        if teacher is not None:
            ds.meta.update(teacher=teacher.id, teacher_arch=teacher.meta.get("arch"),
                           teacher_knn_top1=teacher.meta.get("knn_top1"))
        if cfg.class_conditional or ds.labels is not None:
            ds.meta.update(num_classes=src.num_classes, classes=list(src.classes))
        return ds

    def finish(self) -> DistilledSet:
        ds = self.snapshot(self.method.ctx.steps)
        ds.meta["distill_seconds"] = round(time.time() - self.t0, 1)
        return ds.validate("distilled set")


def run_distillation(cfg: DistillConfig, resume: bool = False, stop_after: int | None = None,
                     teacher: Teacher | None = None, source=None, quiet: bool = False,
                     overwrite: bool = False, time_limit: float | None = None) -> DistillResult:
    """Distil as ``cfg`` says and write the set to ``cfg.output``.

    resume: continue from the checkpoint beside the output. stop_after: stop after this step,
    leaving a checkpoint (to split a long run). teacher / source: already-loaded objects to use
    instead of ``cfg.teacher`` / ``cfg.data`` (the Python API). overwrite: replace an existing
    output that another config made (by default that is refused). time_limit: seconds; stop after the
    step that crosses it, leaving a checkpoint.
    """
    t0 = time.time()
    cfg = resolved(cfg)
    dist.init_distributed(cfg.device)
    method_cls = get_method(cfg.method)
    split = method_cls.splits_work and dist.is_distributed()
    if split and int(cfg.params.get("workers", 1)) == 1:   # torchrun: rank r of N recovers the batches b % N == r
        cfg.params = {**cfg.params, "worker": dist.rank(), "workers": dist.world_size()}
    params = method_config(method_cls, cfg.params)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    d = cfg.data
    src = source if source is not None else load_dataset(d.name, d.root, d.split, d.image_size,
                                                         download=d.download, cache=d.cache)
    src = src.to(device)
    if teacher is None and cfg.teacher:
        teacher = Teacher.load(cfg.teacher)
    if teacher is None and method_cls.needs_teacher:
        raise ConfigError(f"method '{cfg.method}' needs a teacher", fix="pass teacher=path/to/teacher.safetensors "
                                                                        "(made by `ssdd teacher`)")
    if teacher is not None:
        teacher.to(device)
        teacher.check_images(src.channels, src.image_size, f"{src.name}/{src.split}")
    steps = method_cls.default_steps if cfg.steps is None else cfg.steps
    verbose = not quiet and bool(cfg.output) and (split or dist.is_main())
    ctx = DistillContext(source=src, teacher=teacher, budget=cfg.budget, steps=steps, device=device,
                         seed=cfg.seed, amp=cfg.amp, class_conditional=cfg.class_conditional, verbose=verbose)
    stage = MethodStage(method_cls(params, ctx), cfg, teacher)
    total = stage.method.total_steps()
    if verbose:
        print(f"distill: {cfg.method} on {src.name}/{src.split} ({len(src)} images), budget {cfg.budget}, "
              f"{steps} steps{f' ({total} in all)' if total != steps else ''}, device {device}, "
              f"{describe_precision(device, cfg.amp)}", flush=True)
    output = cfg.output or None
    if split and output:
        output = str(part_path(output, dist.rank(), dist.world_size()))
        if resume and Path(output).exists() and not checkpoint_path(output).exists():
            resume = False      # this rank's part was finished before the interruption: it is made again
    res = run_stage(stage, total, output=output, config=to_dict(cfg), resume=resume, stop_after=stop_after,
                    checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every, save_every=cfg.save_every,
                    tensorboard=cfg.tensorboard, mutable=tuple("params." + k for k in method_cls.resume_mutable),
                    desc=f"distill {cfg.method}", what="outer loss", fix="lower params.lr_images / lr_targets",
                    device=device, overwrite=overwrite or split, collective=not split, time_limit=time_limit,
                    cpu_hint="For a CPU run use a *_cpu.yaml preset (e.g. configs/krr_st/cifar100_cpu.yaml) or "
                             "lower steps= and params.* (see `ssdd distill --print-config`).")
    if split:
        return _merge_split(method_cls, cfg, res, t0)
    return DistillResult(res.record, res.path, res.steps, time.time() - t0, res.history)


def part_path(output: str | Path, rank: int, world: int) -> Path:
    """Where rank ``rank`` of a split run (SC-DD under torchrun) writes its part."""
    out = Path(output)
    return out.with_name(f"{out.stem}.part{rank}of{world}.safetensors")


def _merge_split(method_cls, cfg: DistillConfig, res, t0: float) -> DistillResult:
    """Every rank has written its part (or stopped early); rank 0 joins them into ``cfg.output``."""
    finished = all(dist.all_gather_objects(res.finished))
    dist.barrier()
    if not finished or not cfg.output:
        return DistillResult(None, res.path, res.steps, time.time() - t0, res.history)
    merged = None
    if dist.is_main():
        paths = [part_path(cfg.output, r, dist.world_size()) for r in range(dist.world_size())]
        merged = method_cls.merge([DistilledSet.load(p) for p in paths], [str(p) for p in paths])
        merged.validate("merged set").save(cfg.output)
        for p in paths:
            p.unlink()
        print(f"merged {len(paths)} parts into {cfg.output}", flush=True)
    dist.barrier()
    return DistillResult(merged, Path(cfg.output), res.steps, time.time() - t0, res.history)


__all__ = ["DistillConfig", "DistillResult", "MethodStage", "checkpoint_path", "run_distillation"]
