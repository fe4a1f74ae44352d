"""Running on many processes: ``torch.distributed`` set up from ``torchrun``'s environment.

Every helper is a no-op (or the identity) in a single process, so code written with them runs
unchanged under ``python -m distill ...`` and under ``torchrun --nproc_per_node N -m distill ...``.

The toolkit's one rule for many processes: **every random stream is replicated**. All ranks seed
the same way and draw the same global batch, the same augmentation and the same samples; each rank
then works on its *shard* of what was drawn (:func:`shard`), and the pieces are combined by
collectives. This is what makes N processes compute the same step as one process with the same
global batch (up to floating-point reduction order), and what lets a checkpoint written by rank 0
resume every rank exactly. The price is that each rank draws (and augments) the whole global batch
(on the 2-core CPU, 0.1 s of a 1.1 s teacher step; docs/SCALING.md). Work that is split rather than
sharded seeds by its unit, not by the rank (expert k: ``seed + k``; SC-DD batch b: from ``seed`` and
b), so its files are the same whatever the number of processes.

- :func:`init_distributed`: join the process group that ``torchrun`` describes (``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``); NCCL on CUDA, gloo on CPU.
- :func:`rank`, :func:`world_size`, :func:`is_main`, :func:`barrier`.
- :func:`shard`: this rank's contiguous part of a global batch.
- :func:`all_reduce_mean`, :func:`all_reduce_sum` (optionally differentiable: the backward of a
  sum over ranks is a sum over ranks), :func:`all_gather` (differentiable: each rank gets the
  gradient of its own rows, summed over ranks); :func:`row_counts` and :func:`rank0_says` (small
  tensors, cheap enough for every step); :func:`all_gather_objects` (pickled, once per run).
- :func:`sync_grads`: average the ``.grad`` of tensors across ranks in one flat buffer (what DDP
  does for a module, for tensors that are not in a module: synthetic images and targets).
- :func:`convert_sync_batchnorm`: BatchNorm with statistics over the global batch (torch's
  SyncBatchNorm on CUDA; :class:`GlobalBatchNorm` elsewhere, e.g. gloo on CPU).

Gradient convention (the same as DDP's): each rank's loss is its share such that the *mean* over
ranks is the global loss, and gradients are averaged over ranks.
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UserError


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _env_world() -> int:
    return _env_int("WORLD_SIZE", 1)


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def launched() -> bool:
    """True when ``torchrun`` (or an equivalent launcher) started this process as one of several."""
    return _env_world() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return _env_int("LOCAL_RANK", 0)


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes files, logs and progress bars."""
    return rank() == 0


def init_distributed(device: str = "auto", timeout_s: int = 1800) -> bool:
    """Join the process group ``torchrun`` describes, once; return whether this run is distributed.

    Nothing happens in a plain single process (``WORLD_SIZE`` unset or 1). Under ``torchrun`` the
    backend is NCCL when the run uses CUDA and gloo otherwise, and each rank takes the GPU
    ``LOCAL_RANK``.
    """
    if not launched():
        return False
    if dist.is_initialized():
        return is_distributed()
    if not dist.is_available():   # pragma: no cover - every supported build has it
        raise UserError("this torch build has no torch.distributed", fix="run with one process")
    spec = (device or "auto").strip().lower()
    use_cuda = torch.cuda.is_available() and spec != "cpu"
    if use_cuda:
        if local_rank() >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {local_rank()} but this machine has {torch.cuda.device_count()} GPU(s)",
                            fix="use --nproc_per_node at most the number of GPUs")
        torch.cuda.set_device(local_rank())
    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK"):
        if key not in os.environ:
            raise UserError(f"WORLD_SIZE is {_env_world()} but {key} is not set",
                            fix="start the run with torchrun --nproc_per_node N ... (it sets them)")
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return is_distributed()


def shutdown(clean: bool = True) -> None:
    """Leave the process group (a barrier first when ``clean``, so no rank exits while another still
    needs it); a process that exits with the group alive may abort in its communication threads."""
    if dist.is_available() and dist.is_initialized():
        if clean and is_distributed():
            dist.barrier()
        dist.destroy_process_group()


def device_for_rank(device: torch.device) -> torch.device:
    """``cuda`` (no index) becomes this rank's GPU under a launcher; everything else is unchanged."""
    if device.type == "cuda" and device.index is None and launched():
        return torch.device("cuda", local_rank())
    return device


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shard(n: int) -> slice:
    """This rank's contiguous part of ``n`` rows (the first ``n % world`` ranks get one more)."""
    w, r = world_size(), rank()
    base, extra = divmod(n, w)
    start = r * base + min(r, extra)
    return slice(start, start + base + (1 if r < extra else 0))


def shards(n: int) -> list[slice]:
    """Every rank's :func:`shard` of ``n`` rows, in rank order."""
    w = world_size()
    base, extra = divmod(n, w)
    out, start = [], 0
    for r in range(w):
        size = base + (1 if r < extra else 0)
        out.append(slice(start, start + size))
        start += size
    return out


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        g = grad.clone()
        dist.all_reduce(g)     # the adjoint of a sum over ranks is a sum over ranks
        return g


def all_reduce_sum(x: torch.Tensor, grad: bool = False) -> torch.Tensor:
    """The sum of ``x`` over ranks (a new tensor); ``grad=True`` back-propagates through it."""
    if not is_distributed():
        return x
    if grad:
        return _AllReduceSum.apply(x)
    y = x.detach().clone()
    dist.all_reduce(y)
    return y


def all_reduce_mean(x: torch.Tensor, grad: bool = False) -> torch.Tensor:
    """The mean of ``x`` over ranks (a new tensor); ``grad=True`` back-propagates through it."""
    if not is_distributed():
        return x
    return all_reduce_sum(x, grad) / world_size()


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, sizes):
        ctx.sizes = sizes
        parts = [x.new_empty((s, *x.shape[1:])) for s in sizes]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        g = grad.contiguous().clone()
        dist.all_reduce(g)      # every rank's loss may read every row: sum the gradients, keep our rows
        r = rank()
        start = sum(ctx.sizes[:r])
        return g[start:start + ctx.sizes[r]], None


def _small(values: list[float], device: torch.device) -> torch.Tensor:
    """A small float64 tensor where the backend can reduce it (the GPU under NCCL)."""
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    return torch.tensor(values, dtype=torch.float64, device=device)


def row_counts(n: int, device: torch.device = torch.device("cpu")) -> list[int]:
    """Every rank's ``n``, in rank order (one all-reduce of a W-vector; ``[n]`` in one process)."""
    if not is_distributed():
        return [n]
    v = _small([0.0] * world_size(), device)
    v[rank()] = n
    dist.all_reduce(v)
    return [int(c) for c in v.tolist()]


def rank0_says(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank (a one-element broadcast; ``flag`` in one process)."""
    if not is_distributed():
        return flag
    v = _small([float(flag)], torch.device("cpu"))
    dist.broadcast(v, src=0)
    return bool(v.item())


def all_gather(x: torch.Tensor, grad: bool = False, total: int | None = None) -> torch.Tensor:
    """The rows of every rank, concatenated in rank order. ``grad=True``: each rank's rows get the
    gradient summed over ranks. ``total``: the rows are :func:`shard` s of ``total`` rows (their sizes
    are then known without asking the other ranks); else shards may have any size."""
    if not is_distributed():
        return x
    sizes = [sl.stop - sl.start for sl in shards(total)] if total is not None else row_counts(len(x), x.device)
    if grad:
        return _AllGather.apply(x, sizes)
    x = x.detach().contiguous()
    parts = [x.new_empty((s, *x.shape[1:])) for s in sizes]
    dist.all_gather(parts, x)
    return torch.cat(parts)


def all_gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in a single process."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


@torch.no_grad()
def sync_grads(tensors, op: str = "mean") -> None:
    """Average (or sum) the ``.grad`` of ``tensors`` over ranks, in one flat buffer (one collective)."""
    if not is_distributed():
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        if t.grad is not None:
            by_dtype.setdefault(t.grad.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.grad.reshape(-1) for t in group])
        dist.all_reduce(flat)
        if op == "mean":
            flat /= world_size()
        k = 0
        for t in group:
            n = t.grad.numel()
            t.grad.copy_(flat[k:k + n].view_as(t.grad))
            k += n


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are over the global batch (every rank's rows), for any
    backend (gloo on CPU included): each rank's mean, variance and row count are gathered in one
    collective that gradients flow through, and combined exactly (the parallel-variance formula), so
    N processes with SyncBN compute what one process computes on the whole batch.
    In eval mode (or outside a process group) it is plain BatchNorm."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-d input, got {x.dim()}-d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        c = xf.shape[1]
        rows = xf.numel() // c
        if rows:
            local = torch.cat([xf.mean(dims), xf.var(dims, unbiased=False)])
        else:                       # an empty shard weighs nothing below
            local = xf.new_zeros(2 * c) + 0 * xf.sum()
        # one collective: every rank's (mean, variance, rows), combined exactly (the parallel-variance formula)
        stats = all_gather(torch.cat([local, xf.new_tensor([float(rows)])])[None], grad=True, total=world_size())
        n = stats[:, -1:].detach()
        count = n.sum()
        mean = (n * stats[:, :c]).sum(0) / count
        var = (n * (stats[:, c:2 * c] + (stats[:, :c] - mean).pow(2))).sum(0) / count
        centred = xf - mean.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                n = float(count)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / max(1.0, n - 1), alpha=m)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``module`` computes its statistics over the global batch (a no-op in one
    process): torch's SyncBatchNorm on CUDA, :class:`GlobalBatchNorm` elsewhere."""
    if not is_distributed():
        return module
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _to_global_bn(module)


def _to_global_bn(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                out.weight.copy_(module.weight)
                out.bias.copy_(module.bias)
        if module.track_running_stats:
            out.running_mean.copy_(module.running_mean)
            out.running_var.copy_(module.running_var)
            out.num_batches_tracked.copy_(module.num_batches_tracked)
        out.train(module.training)
        out.to(next(iter(module.buffers()), torch.empty(0)).device)
    for name, child in module.named_children():
        out.add_module(name, _to_global_bn(child))
    return out


def wrap_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel when distributed (gradients averaged over ranks in
    buckets that overlap the backward pass), else ``module`` itself."""
    if not is_distributed():
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP
    ids = [device.index if device.index is not None else local_rank()] if device.type == "cuda" else None
    return DDP(module, device_ids=ids)


__all__ = ["GlobalBatchNorm", "all_gather", "all_gather_objects", "all_reduce_mean", "all_reduce_sum", "barrier",
           "convert_sync_batchnorm", "device_for_rank", "init_distributed", "is_distributed",
           "is_main", "launched", "local_rank", "rank", "rank0_says", "row_counts", "shard", "shards", "shutdown",
           "sync_grads", "world_size", "wrap_ddp"]
