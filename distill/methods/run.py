"""The distillation runner: config -> data, teacher, method -> steps with checkpoints -> set file."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..config import DistillConfig, to_dict
from ..data import load_dataset
from ..distilled import DistilledSet
from ..engine import (MetricLogger, get_rng_state, load_checkpoint, progress, resolve_device, save_checkpoint,
                      seed_everything, set_rng_state)
from ..errors import ConfigError, NumericalError, UserError
from ..ssl.teacher import Teacher
from .base import DistillContext, get_method, method_config


@dataclass
class DistillResult:
    set: DistilledSet
    path: Path | None          # None for in-memory runs (output: null)
    steps: int
    seconds: float
    history: list[dict]


def checkpoint_path(output: str | Path) -> Path:
    out = Path(output)
    return out.with_name(out.stem + ".ckpt.safetensors")


def run_distillation(cfg: DistillConfig, resume: bool = False, stop_after: int | None = None,
                     teacher: Teacher | None = None, source=None) -> DistillResult:
    """Distil as ``cfg`` says and write the set to ``cfg.output``.

    resume: continue from the checkpoint beside the output. stop_after: stop after this step,
    leaving a checkpoint (to split a long run; used by the resume tests). teacher / source:
    already-loaded objects to use instead of ``cfg.teacher`` / ``cfg.data`` (the Python API).
    """
    t0 = time.time()
    method_cls = get_method(cfg.method)
    params = method_config(method_cls, cfg.params)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    d = cfg.data
    src = source if source is not None else load_dataset(d.name, d.root, d.split, d.image_size,
                                                         download=d.download, cache=d.cache)
    src = src.to(device)
    if teacher is None and method_cls.needs_teacher:
        if not cfg.teacher:
            raise ConfigError(f"method '{cfg.method}' needs a teacher", fix="pass teacher=path/to/teacher.safetensors "
                                                                            "(made by `ssdd teacher`)")
        teacher = Teacher.load(cfg.teacher)
    if teacher is not None:
        teacher.to(device)
        teacher.check_images(src.channels, src.image_size, f"{src.name}/{src.split}")
    steps = method_cls.default_steps if cfg.steps is None else cfg.steps
    ctx = DistillContext(source=src, teacher=teacher, budget=cfg.budget, steps=steps, device=device,
                         seed=cfg.seed, amp=cfg.amp, class_conditional=cfg.class_conditional)
    method = method_cls(params, ctx)
    in_memory = not cfg.output
    out = Path(cfg.output or "in-memory.safetensors")
    ckpt = checkpoint_path(out)
    start = 0
    if resume and in_memory:
        raise UserError("--resume needs an output file (its checkpoint sits beside it)")
    if resume:
        if not ckpt.exists():
            raise UserError(f"--resume: no checkpoint at {ckpt}", fix="run without --resume to start fresh")
        state = load_checkpoint(ckpt, device="cpu")
        if state["__meta__"].get("method") != cfg.method:
            raise UserError(f"{ckpt} belongs to method '{state['__meta__'].get('method')}', not '{cfg.method}'")
        method.setup(fresh=False)
        method.load_state_dict(state["method"])
        set_rng_state(state["rng"])
        start = int(state["step"])
        print(f"resumed {cfg.method} from {ckpt} at step {start}/{steps}")
    else:
        method.setup(fresh=True)

    def write_checkpoint(step):
        save_checkpoint(ckpt, {"method": method.state_dict(), "rng": get_rng_state(), "step": step},
                        meta={"method": cfg.method, "config": to_dict(cfg)})

    def export(step) -> DistilledSet:
        ds = method.export()
        ds.meta = {**ds.meta, "method": cfg.method, "source": src.name, "split": src.split,
                   "image_size": src.image_size, "channels": src.channels, "mean": list(src.mean),
                   "std": list(src.std), "seed": cfg.seed, "steps": step, "budget": cfg.budget,
                   "class_conditional": cfg.class_conditional, "config": to_dict(cfg)}
        if teacher is not None:
            ds.meta.update(teacher=teacher.id, teacher_backbone=teacher.meta.get("backbone"),
                           teacher_knn_top1=teacher.meta.get("knn_top1"))
        if cfg.class_conditional or ds.labels is not None:
            ds.meta.update(num_classes=src.num_classes, classes=list(src.classes))
        return ds

    log = MetricLogger(out.with_suffix(".metrics.jsonl") if steps and not in_memory else None,
                       out.parent / "tb" if cfg.tensorboard else None, append=resume)
    end = steps if stop_after is None else min(steps, stop_after)
    bar = progress(total=steps, initial=start, desc=f"distill {cfg.method}")
    running, count = None, 0
    for step in range(start, end):
        metrics = method.step(step)
        loss = metrics["loss"]
        running = loss if running is None else running + loss
        count += 1
        bar.update(1)
        done = step + 1
        if done % cfg.log_every == 0 or done == end:
            mean_loss = (running / count).item()  # one device sync per log interval
            if mean_loss != mean_loss or mean_loss in (float("inf"), float("-inf")):
                raise NumericalError(f"{cfg.method}: the outer loss became {mean_loss} at step {done}",
                                     fix="lower params.lr_images / lr_targets")
            log.log(done, loss=mean_loss, **{k: v.item() for k, v in metrics.items() if k != "loss"})
            bar.set_postfix(loss=f"{mean_loss:.4g}")
            running, count = None, 0
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < steps and not in_memory:
            write_checkpoint(done)
        if cfg.save_every and done % cfg.save_every == 0 and done < steps and not in_memory:
            export(done).save(out.with_name(f"{out.stem}.step{done}.safetensors"))
    bar.close()
    if end < steps and not in_memory:  # stopped early on request: leave a checkpoint to resume from
        write_checkpoint(end)
        log.close()
        return DistillResult(export(end), ckpt, end, time.time() - t0, log.history)
    ds = export(steps)
    ds.meta["distill_seconds"] = round(time.time() - t0, 1)
    if in_memory:
        log.close()
        return DistillResult(ds.validate("distilled set"), None, steps, time.time() - t0, log.history)
    path = ds.save(out)
    log.close()
    if ckpt.exists():
        ckpt.unlink()
    return DistillResult(ds, path, steps, time.time() - t0, log.history)


__all__ = ["DistillResult", "checkpoint_path", "run_distillation"]
