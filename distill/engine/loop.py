"""The one training loop (:func:`fit`) and the one accuracy loop (:func:`accuracy`).

Every loop of the toolkit runs through :func:`fit`: teacher training and distillation (through the
stage driver, :mod:`.stage`), pre-training, fine-tuning and SGD probes in evaluation, knowledge
distillation, continual retraining. It owns what they must all get right the same way:

- mixed precision (the ``amp`` policy of :mod:`.device`: the step function runs under autocast);
- the NaN guard: the running loss is checked at every log point (one device sync per interval) and
  a non-finite value stops the run with a :class:`~distill.errors.NumericalError` that names the
  loss, the step and the fix;
- the progress bar (with the loss), or plain log lines when bars are off and ``lines`` is set;
- metric logging (a :class:`~.logging.MetricLogger`) and a per-step hook (checkpoints, snapshots).

Under ``torchrun`` (:mod:`.dist`) it runs on every rank in lockstep; step functions return a
loss that is already the same on every rank (e.g. all-reduced), so the NaN guard stops every rank
at the same step, and only rank 0 shows a bar or log lines.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import NumericalError
from .device import autocast
from .progress import progress, progress_enabled


@dataclass
class FitResult:
    steps: int                                   # the step count reached (``stop``)
    history: list[dict] = field(default_factory=list)   # one row per log point: step, loss, extras
    seconds: float = 0.0

    @property
    def last_loss(self) -> float | None:
        return self.history[-1]["loss"] if self.history else None


def _as_metrics(out) -> dict[str, torch.Tensor]:
    if isinstance(out, dict):
        if "loss" not in out:
            raise TypeError("a step function's dict must hold 'loss'")
        return out
    return {"loss": out}


def fit(step_fn: Callable[[int], torch.Tensor | dict], steps: int, *, optimizer=None, scheduler=None,
        device: torch.device | None = None, amp="off", start: int = 0, stop: int | None = None,
        desc: str = "train", what: str = "training loss", fix: str = "lower the learning rate",
        log=None, log_every: int | Callable[[int], bool] = 50, on_step: Callable[[int, dict | None], None] | None = None,
        lines: bool = False, backward_inputs: Callable[[], list] | None = None,
        estimate_after: int = 0, on_estimate: Callable[[float], None] | None = None,
        deadline: float | None = None, collective: bool = True) -> FitResult:
    """Run steps ``start .. stop-1`` of a ``steps``-step loop.

    step_fn(i) returns the loss (a 0-d tensor) or a dict with ``loss`` and other 0-d metrics.

    - With an ``optimizer``, ``fit`` owns the update: zero the gradients, run ``step_fn`` under
      autocast, back-propagate (only into ``backward_inputs()`` when given), step the optimizer and
      the ``scheduler``.
    - Without one, ``step_fn`` makes its own update (a distillation method's outer step) and ``fit``
      only drives, checks, logs and reports.

    ``estimate_after``: after that many steps, print (with ``lines``) the measured time per step and
    the time to go, and pass the seconds to go to ``on_estimate``.

    ``deadline`` (a ``time.time()`` value): stop after the first step that ends past it (in a
    ``collective`` run under torchrun, rank 0's clock decides for every rank); ``FitResult.steps``
    says where the loop stopped.

    ``log`` (a MetricLogger) gets a row every ``log_every`` steps (or where ``log_every(done)`` is true)
    and at ``stop``, with the means since the previous row; ``on_step(done,
    row)`` runs after every step (``row`` is the logged row at log points, else None).
    """
    stop = steps if stop is None else min(stop, steps)
    t0 = time.time()
    res = FitResult(start)
    bar = progress(total=steps, initial=start, desc=desc) if stop > start else None
    show_lines = lines and not progress_enabled()
    last_line = time.time()
    running, count = None, 0
    for i in range(start, stop):
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, amp) if device is not None else _null():
                metrics = _as_metrics(step_fn(i))
            update(metrics["loss"], optimizer, scheduler, backward_inputs() if backward_inputs else None,
                   zero_grad=False)
        else:
            metrics = _as_metrics(step_fn(i))
        detached = {k: v.detach().float() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                    for k, v in metrics.items()}
        running = detached if running is None else {k: running[k] + v for k, v in detached.items()}
        count += 1
        done = i + 1
        if bar is not None:
            bar.update(1)
        row = None
        if (log_every(done) if callable(log_every) else done % max(1, log_every) == 0) or done == stop:
            values = {k: (v / count).item() for k, v in running.items()}   # one device sync per interval
            running, count = None, 0
            if not math.isfinite(values["loss"]):
                if bar is not None:
                    bar.close()
                raise NumericalError(f"{desc}: the {what} became {values['loss']} at step {done}", fix=fix)
            if scheduler is not None:
                values.setdefault("lr", scheduler.get_last_lr()[0])
            row = {"step": done, **values}
            res.history.append(row)
            if log is not None:
                log.log(done, **values)
            if bar is not None:
                bar.set_postfix(loss=f"{values['loss']:.4g}")
            if show_lines and (time.time() - last_line >= 10 or done == stop):
                last_line = time.time()
                rate = (done - start) / max(1e-9, time.time() - t0)
                eta = (steps - done) / rate if rate > 0 else float("inf")
                print(f"  {desc}: step {done}/{steps}, loss {values['loss']:.4g}, {rate:.2f} steps/s, "
                      f"ETA {format_seconds(eta)}", file=sys.stdout, flush=True)
        if estimate_after and done == min(stop, start + estimate_after):
            per_step = (time.time() - t0) / max(1, done - start)
            remaining = per_step * (stop - done)
            if lines:
                print(f"  {desc}: {per_step:.3g} s/step after {done - start} steps; about "
                      f"{format_seconds(remaining)} to go ({stop - done} steps)", flush=True)
            if on_estimate is not None:
                on_estimate(remaining)
        if on_step is not None:
            on_step(done, row)
        if deadline is not None and done < stop and _past(deadline, collective):
            stop = done
            if row is None and running is not None:     # the last row of a run cut by its deadline
                values = {k: (v / count).item() for k, v in running.items()}
                res.history.append({"step": done, **values})
                if log is not None:
                    log.log(done, **values)
            break
    if bar is not None:
        bar.close()
    res.steps = stop
    res.seconds = time.time() - t0
    return res


def _past(deadline: float, collective: bool) -> bool:
    from .dist import rank0_says
    past = time.time() > deadline
    return rank0_says(past) if collective else past


def update(loss: torch.Tensor, optimizer, scheduler=None, inputs: list | None = None, zero_grad: bool = True,
           sync: list | None = None) -> None:
    """One optimisation step: (zero the gradients,) back-propagate ``loss`` (into ``inputs`` only,
    when given), step the optimizer and the scheduler. ``fit`` uses it; so do step functions that
    update inside a larger step (teacher training, a method's inner models).

    ``sync``: tensors whose gradients are averaged over ranks before the step (a no-op in one
    process; :func:`~.dist.sync_grads`): the synthetic set of a method whose real batch is sharded."""
    if zero_grad:
        optimizer.zero_grad(set_to_none=True)
    if inputs is not None:
        loss.backward(inputs=inputs)
    else:
        loss.backward()
    if sync:
        from .dist import sync_grads
        sync_grads(sync)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()


def _null():
    import contextlib
    return contextlib.nullcontext()


def format_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def epoch_batches(n: int, batch_size: int, device, drop_last: bool = False, cpu_perm: bool = False):
    """Index batches for ``fit``: ``batch(i)`` returns the indices of step i, drawing a new
    permutation at the start of each epoch (the same random stream as an epoch loop), and
    ``steps_per_epoch`` says how many steps make an epoch. Its state (the current permutation)
    is part of :meth:`state_dict`, so a stage may checkpoint mid-epoch."""
    return EpochBatches(n, batch_size, device, drop_last, cpu_perm)


class EpochBatches:
    """See :func:`epoch_batches`. ``cpu_perm`` draws permutations from the CPU generator (then moves
    them to ``device``), as ``ImageSet.batches`` does; else from ``device``'s generator."""

    def __init__(self, n: int, batch_size: int, device, drop_last: bool = False, cpu_perm: bool = False):
        self.n, self.bs, self.device, self.cpu_perm = n, min(batch_size, n), device, cpu_perm
        self.drop_last = drop_last
        self.steps_per_epoch = n // self.bs if drop_last else math.ceil(n / self.bs)
        self.perm: torch.Tensor | None = None

    def __call__(self, i: int) -> torch.Tensor:
        j = i % self.steps_per_epoch
        if j == 0 or self.perm is None:
            self.perm = (torch.randperm(self.n).to(self.device) if self.cpu_perm
                         else torch.randperm(self.n, device=self.device))
        return self.perm[j * self.bs:(j + 1) * self.bs]

    def state_dict(self) -> dict:
        return {"perm": self.perm}

    def load_state_dict(self, state: dict) -> None:
        self.perm = state["perm"].to(self.device) if state.get("perm") is not None else None


@torch.no_grad()
def batched_forward(model: torch.nn.Module, x: torch.Tensor, amp="auto", batch_size: int = 512) -> torch.Tensor:
    """``model(x)`` in eval mode, without gradients, ``batch_size`` rows at a time, as fp32 (mode restored)."""
    was = model.training
    model.eval()
    with autocast(x.device, amp):
        out = torch.cat([model(x[k:k + batch_size]).float() for k in range(0, len(x), batch_size)])
    model.train(was)
    return out


@torch.no_grad()
def accuracy(model: torch.nn.Module, data, labels: torch.Tensor | None = None, batch_size: int = 1024, amp="off",
             train_mode: bool = False) -> float:
    """Top-1 (%) of ``model`` on ``data``: an ImageSet-like object (``float(idx)``, ``labels``) or a
    float pixel-space tensor with ``labels``. Eval mode unless ``train_mode`` (BatchNorm in train
    mode, as some reference code evaluates)."""
    was = model.training
    model.train(train_mode)
    if labels is None:
        labels = data.labels
        fetch = data.float
    else:
        fetch = data.__getitem__
    n = len(labels)
    dev = labels.device
    correct = torch.zeros((), dtype=torch.long, device=dev)
    for i in range(0, n, batch_size):
        idx = torch.arange(i, min(i + batch_size, n), device=dev)
        x = fetch(idx)
        with autocast(x.device, amp):
            pred = model(x).argmax(1)
        correct += (pred.to(dev) == labels[idx]).sum()
    model.train(was)
    return 100.0 * int(correct) / max(1, n)
