"""Resumable stages: one driver for every long computation that ends in a file.

A :class:`Stage` is anything with ``setup(fresh)``, ``step(i) -> loss or {"loss": ..., ...}``,
``state_dict()`` / ``load_state_dict()`` and ``finish() -> Record``: teacher training,
distillation (every registered method), and the coming expert trajectories and SC-DD squeeze.
:func:`run_stage` gives each of them, in one place:

- the loop (:func:`~.loop.fit`: NaN guard, progress bar or log lines, metric log);
- a checkpoint beside the output every ``checkpoint_every`` steps (atomic; stage state + RNG state
  + config), ``resume`` from it, and ``stop_after`` to split a run; a resumed run ends
  bit-identical to an uninterrupted one on the same device;
- a refusal to resume from a checkpoint whose config differs in a key that matters (the message
  names the key, the old and the new value; keys in ``mutable`` may change);
- the output written atomically at the end, the checkpoint removed.

    class MyStage(Stage):
        name = "my-stage"
        def setup(self, fresh): ...
        def step(self, i): ...; return {"loss": loss}
        def state_dict(self): ...
        def load_state_dict(self, state): ...
        def finish(self): return SomeRecord(...)

    result = run_stage(MyStage(...), steps=1000, output="out.safetensors", config=to_dict(cfg))
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from . import dist
from .checkpoint import load_checkpoint, save_checkpoint
from .configdiff import ALWAYS_MUTABLE, config_differences  # (both re-exported: older imports)
from .files import remove_stale_temps
from .logging import MetricLogger
from .loop import fit
from .seed import get_rng_state, set_rng_state

class Stage:
    """The contract of a resumable stage (see the module docstring)."""

    name: str = ""

    def setup(self, fresh: bool = True) -> None:
        """Build the initial state; ``fresh=False`` when a checkpoint is loaded right after."""

    def step(self, step: int):
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def finish(self):
        """The stage's output record (a :class:`~.record.Record`)."""
        raise NotImplementedError

    def upgrade_checkpoint(self, state: dict, path: Path) -> dict:
        """Map a checkpoint of an older release to ``{"stage", "rng", "step"}``."""
        if "method" in state and "step" in state:      # distillation checkpoints of release 0.1
            return {**state, "stage": state["method"]}
        raise UserError(f"{path} is a checkpoint of an older release that '{self.name}' cannot resume",
                        fix=f"delete {path.name} and start the run again")

    def snapshot(self, step: int):
        """The output as it stands at ``step`` (``save_every``); default: :meth:`finish`."""
        return self.finish()


@dataclass
class StageResult:
    record: object | None          # the output record; None when stopped early (stop_after)
    path: Path | None              # the output file, or the checkpoint when stopped early, or None (in memory)
    steps: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    finished: bool = True


def checkpoint_path(output: str | Path) -> Path:
    """Where a stage writing ``output`` keeps its checkpoint."""
    out = Path(output)
    return out.with_name(out.stem + ".ckpt.safetensors")


def check_resumable(ckpt: Path, meta: dict, stage_name: str, config: dict, mutable=()) -> None:
    found = meta.get("stage") or (f"distill/{meta['method']}" if meta.get("method") else None)
    if found is not None and found != stage_name:
        raise UserError(f"{ckpt} is a checkpoint of '{found}', not of '{stage_name}'",
                        fix=f"delete {ckpt.name} or give another output")
    diff = config_differences(meta.get("config", {}), config, mutable)
    if diff:
        k, a, b = diff[0]
        more = f" (and {len(diff) - 1} more: {', '.join(d[0] for d in diff[1:6])})" if len(diff) > 1 else ""
        raise UserError(f"cannot resume from {ckpt}: it was made with {k}={a!r}, this run asks for {k}={b!r}{more}",
                        fix=f"resume with the checkpoint's settings (`{k}={a}`), or delete {ckpt.name} to start over")


def _gpu_hint(seconds: float, device, hint: str, what: str) -> None:
    """On a CPU, say so when a run will take hours: the presets in configs/ are sized for a GPU."""
    if device is None or getattr(device, "type", str(device)) != "cpu" or seconds < 3600 or not dist.is_main():
        return
    from .loop import format_seconds
    print(f"note: {what} will take about {format_seconds(seconds)} on this CPU; the settings look sized for a "
          f"GPU. {hint or 'Lower steps/epochs, or use a *_cpu.yaml preset from configs/.'}", flush=True)


def refuse_foreign_output(out: Path, config: dict, mutable=()) -> None:
    """An existing output made from another config is not silently replaced (the same config may be)."""
    from .safefile import read_header
    try:
        header, _ = read_header(out)
    except UserError:
        header = {}
    old = header.get("config")
    diff = config_differences(old, config, mutable) if isinstance(old, dict) else [("config", "<unreadable>", "")]
    if diff:
        k, a, b = diff[0]
        raise UserError(f"{out} exists and was made by another config ({k}={a!r}; this run: {k}={b!r})",
                        fix="give another output=..., or pass --overwrite to replace it")


def run_stage(stage: Stage, steps: int, *, output: str | Path | None, config: dict, resume: bool = False,
              stop_after: int | None = None, checkpoint_every: int = 0, log_every: int = 10, save_every: int = 0,
              tensorboard: bool = False, mutable=(), desc: str | None = None, what: str = "loss",
              fix: str = "lower the learning rate", lines: bool = True, log_extra: dict | None = None,
              device=None, cpu_hint: str = "", overwrite: bool = False, collective: bool = True,
              time_limit: float | None = None) -> StageResult:
    """Run ``stage`` for ``steps`` steps (see the module docstring).

    output None keeps everything in memory (no checkpoint, no log file). stop_after: stop after
    that many steps (0 included: right after setup), leaving a checkpoint to resume from.
    time_limit: seconds from the call; the run stops after the step that crosses it, leaving a
    checkpoint (to fit a long run into calls of a fixed length, e.g. on a lent GPU).

    Under ``torchrun`` (:mod:`.dist`) a ``collective`` stage runs on every rank in lockstep with
    replicated random streams: only rank 0 writes the checkpoint, the metric log and the output,
    every rank waits at a barrier after each checkpoint (so a kill never leaves ranks at different
    checkpoints), and every rank resumes from rank 0's checkpoint. ``collective=False``: this
    rank's own stage with its own output (an expert, a part of an SC-DD run); every rank writes.
    """
    t0 = time.time()
    in_memory = output is None
    out = Path(output) if output is not None else None
    ckpt = checkpoint_path(out) if out is not None else None
    writes = not collective or dist.is_main()
    if out is not None and writes:   # temp files of a write that a kill interrupted (e.g. a 126 MB checkpoint)
        for p in remove_stale_temps(out) + remove_stale_temps(ckpt):
            print(f"removed {p.name}, left by an interrupted write", flush=True)
    start = 0
    if out is not None and out.exists() and not resume and not overwrite:
        refuse_foreign_output(out, config, mutable)
    if resume:
        if in_memory:
            raise UserError("--resume needs an output file (its checkpoint sits beside it)")
        if not ckpt.exists():
            raise UserError(f"--resume: no checkpoint at {ckpt}", fix="run without --resume to start fresh")
        state = load_checkpoint(ckpt, device="cpu")
        check_resumable(ckpt, state["__meta__"], stage.name, config, mutable)
        stage.setup(fresh=False)
        if "step" not in state or "stage" not in state:
            state = stage.upgrade_checkpoint(state, ckpt)
        stage.load_state_dict(state["stage"])
        set_rng_state(state["rng"])
        start = int(state["step"])
        if writes:
            print(f"resumed {stage.name} from {ckpt} at step {start}/{steps}", flush=True)
    else:
        stage.setup(fresh=True)

    def write_checkpoint(step: int) -> None:
        state = stage.state_dict()     # every rank: a stage may gather its state with a collective
        if writes:
            save_checkpoint(ckpt, {"stage": state, "rng": get_rng_state(), "step": step},
                            meta={"stage": stage.name, "config": config, "steps": steps, **(log_extra or {})})
        if collective:
            dist.barrier()

    def on_step(done: int, row) -> None:
        if in_memory or done >= steps:
            return
        if checkpoint_every and done % checkpoint_every == 0:
            write_checkpoint(done)
        if save_every and done % save_every == 0:
            snap = stage.snapshot(done)
            if writes:
                snap.save(out.with_name(f"{out.stem}.step{done}.safetensors"))

    end = steps if stop_after is None else max(start, min(steps, stop_after))
    log = MetricLogger(out.with_suffix(".metrics.jsonl") if steps and not in_memory and writes else None,
                       out.parent / "tb" if tensorboard and not in_memory and writes else None, append=resume)
    try:
        res = fit(stage.step, steps, start=start, stop=end, desc=desc or stage.name, what=what, fix=fix, log=log,
                  log_every=log_every, on_step=on_step, lines=lines and not in_memory and writes,
                  estimate_after=0 if in_memory else min(5, max(1, (end - start) // 20)),
                  on_estimate=lambda secs: _gpu_hint(secs, device, cpu_hint, desc or stage.name),
                  deadline=None if time_limit is None or in_memory else t0 + time_limit, collective=collective)
    finally:
        log.close()
    if res.steps < end:
        end = res.steps
        if writes:
            print(f"{desc or stage.name}: time limit of {time_limit:g} s reached at step {end}/{steps}; continue with "
                  f"--resume", flush=True)
    if end < steps:
        if in_memory:
            raise UserError("stop_after needs an output file (the checkpoint sits beside it)")
        write_checkpoint(end)
        return StageResult(None, ckpt, end, time.time() - t0, res.history, finished=False)
    record = stage.finish()
    path = None
    if not in_memory:
        if writes:
            record.save(out)
            if ckpt.exists():
                ckpt.unlink()
        if collective:
            dist.barrier()      # the output exists for every rank once run_stage returns
        path = out
    return StageResult(record, path, steps, time.time() - t0, res.history)


__all__ = ["ALWAYS_MUTABLE", "Stage", "StageResult", "check_resumable", "checkpoint_path", "config_differences",
           "run_stage"]
