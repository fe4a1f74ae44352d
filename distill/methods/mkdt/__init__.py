"""MKDT: matching knowledge-distillation trajectories (Joshi, Ni, Mirzasoleiman, ICLR 2025).

Learnable: synthetic images X_s (normalised space), target representations Y_s and one learning
rate alpha. Expert trajectories theta*_0..theta*_E come from ``ssdd experts`` (students trained by
MSE onto the teacher's representations of the whole source).

Each iteration picks an expert uniformly and a start epoch t ~ U{0..max_start_epoch-1}, starts a
student at theta_0 = theta*_t and unrolls ``syn_steps`` SGD steps on synthetic minibatches
(``batch_syn``, drawn from a fresh permutation of the set, as the reference does)::

    theta_{i+1} = theta_i - alpha * grad_theta MSE(f(X_b; theta_i), Y_b)      (graph kept)
    loss = ||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2,        M = expert_epochs

and SGD with momentum 0.5 updates X_s, Y_s and alpha by the gradient of that loss (second order,
through every unrolled step). The unroll is functional (``torch.func.functional_call`` on one flat
parameter vector: no module copies). ``checkpoint_unroll`` keeps only the N flat parameter vectors
and recomputes each step's graph in the backward pass (memory of one step instead of N, about twice
the compute, same values). ``unroll_amp: bf16`` runs the unrolled forward passes in bf16.

Initialisation (``init``): ``high_loss`` takes the source examples with the largest MSE under the
experts' epoch-1 parameters (averaged over experts; per class when class-conditional); ``random``
takes a random subset. The learned alpha is written into the set (``lr``); the ``mkdt`` protocol
pre-trains at it.

``high_loss`` is also a baseline of its own: the same selection with the teacher's
representations as targets and no distillation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ...distilled import DistilledSet
from ...engine import dist
from ...engine.device import autocast
from ...errors import ConfigError, NumericalError
from ..base import DistillContext, Method, register_method
from ..baselines import _Subset


# --------------------------------------------------------------------------- functional unroll


class FlatParams:
    """Views of one flat vector as a module's named parameters (no copies)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [p.shape for _, p in model.named_parameters()]
        self.sizes = [p.numel() for _, p in model.named_parameters()]

    def __call__(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, torch.split(flat, self.sizes), self.shapes)}

    def forward(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, self(flat), (x,))


def unroll_step(fp: FlatParams, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor,
                create_graph: bool = True, amp: str = "off") -> torch.Tensor:
    """One SGD step ``theta - lr * grad MSE(f(x; theta), y)`` (graph kept when ``create_graph``)."""
    with torch.enable_grad():
        if not theta.requires_grad:
            theta = theta.detach().requires_grad_(True)
        with autocast(x.device, amp):
            out = fp.forward(theta, x)
        loss = F.mse_loss(out.float(), y)
        (g,) = torch.autograd.grad(loss, theta, create_graph=create_graph)
    return theta - lr * g


def minibatches(n: int, batch: int | None, steps: int, generator: torch.Generator) -> list[torch.Tensor]:
    """``steps`` index batches: chunks of a random permutation, a new permutation when one is used up."""
    b = n if not batch else min(batch, n)
    out: list[torch.Tensor] = []
    while len(out) < steps:
        out.extend(torch.split(torch.randperm(n, generator=generator), b))
    return out[:steps]


def matching_loss(theta_n: torch.Tensor, start: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2."""
    return (theta_n - target).pow(2).sum() / (start - target).pow(2).sum()


def unroll(fp: FlatParams, theta0: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor,
           batches: list[torch.Tensor], amp: str = "off") -> torch.Tensor:
    """theta_N after ``len(batches)`` SGD steps from ``theta0``, differentiable in x, y and lr."""
    theta = theta0
    for idx in batches:
        theta = unroll_step(fp, theta, x[idx], y[idx], lr, True, amp)
    return theta


def matching_backward(fp: FlatParams, start: torch.Tensor, target: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                      lr: torch.Tensor, batches: list[torch.Tensor], checkpoint: bool = False,
                      amp: str = "off") -> torch.Tensor:
    """The matching loss; its gradients are accumulated into ``x.grad``, ``y.grad``, ``lr.grad``.

    ``checkpoint``: run the unroll without a graph, keep theta_0..theta_N, then walk back one step
    at a time, rebuilding that step's graph and passing the vector-Jacobian product on (memory of
    one step instead of N; the same values up to floating-point summation order)."""
    if not checkpoint:
        loss = matching_loss(unroll(fp, start, x, y, lr, batches, amp), start, target)
        torch.autograd.backward(loss, inputs=[t for t in (x, y, lr) if t.requires_grad])
        return loss.detach()
    thetas = [start.detach()]
    for idx in batches:
        thetas.append(unroll_step(fp, thetas[-1], x[idx].detach(), y[idx].detach(), lr.detach(), False, amp).detach())
    theta_n = thetas[-1].requires_grad_(True)
    with torch.enable_grad():
        loss = matching_loss(theta_n, start, target)
        (g,) = torch.autograd.grad(loss, theta_n)
    leaves = [t for t in (x, y, lr) if t.requires_grad]
    for i in range(len(batches) - 1, -1, -1):
        theta_i = thetas[i].detach().requires_grad_(i > 0)
        with torch.enable_grad():
            nxt = unroll_step(fp, theta_i, x[batches[i]], y[batches[i]], lr, True, amp)
            grads = torch.autograd.grad(nxt, ([theta_i] if i > 0 else []) + leaves, grad_outputs=g)
        if i > 0:
            g, grads = grads[0], grads[1:]
        for leaf, gr in zip(leaves, grads):
            leaf.grad = gr if leaf.grad is None else leaf.grad + gr
    return loss.detach()


# --------------------------------------------------------------------------- high-loss selection


@torch.no_grad()
def high_loss_scores(trajs, src, targets: torch.Tensor, epoch: int = 1, batch_size: int = 512) -> torch.Tensor:
    """Each source example's MSE under the experts' ``epoch`` parameters, averaged over experts."""
    device = src.device
    model = trajs[0].template(device).train()
    fp = FlatParams(model)
    mean = torch.tensor(src.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(src.std, device=device).view(1, -1, 1, 1)
    scores = torch.zeros(len(src), device=device)
    for t in trajs:
        theta = t.at(epoch, device)
        for i in range(0, len(src), batch_size):
            idx = torch.arange(i, min(i + batch_size, len(src)), device=device)
            out = fp.forward(theta, (src.float(idx) - mean) / std)
            scores[idx] += (out.float() - targets[idx]).pow(2).mean(1)
    return scores / len(trajs)


def top_by_score(scores: torch.Tensor, budget: int, labels: torch.Tensor | None = None,
                 counts: torch.Tensor | None = None) -> torch.Tensor:
    """The ``budget`` highest-scoring indices; per class (``counts[c]`` of class c) when given."""
    if labels is None or counts is None:
        return torch.topk(scores, budget).indices
    out = []
    for c in range(len(counts)):
        members = torch.nonzero(labels == c).flatten()
        if counts[c]:
            out.append(members[torch.topk(scores[members], int(counts[c])).indices])
    return torch.cat(out)


# --------------------------------------------------------------------------- the method


@dataclass
class Config:
    experts: str = ""                  # folder of expert trajectories (``ssdd experts``)
    syn_steps: int = 40                # N: unrolled SGD steps per iteration
    expert_epochs: int = 2             # M: the target is M epochs after the start
    max_start_epoch: int = 2           # t ~ U{0..max_start_epoch-1} (2 at a 2 % budget, 5 at 5 %)
    batch_syn: int | None = 256        # synthetic minibatch of each unrolled step (null: the whole set)
    lr_images: float = 1000.0          # 1e3 at 2 %, 1e4 at 5 % (CIFAR); 1e5 at 64 px
    lr_targets: float = 1.0
    lr_lr: float = 1e-4
    lr_init: float = 0.1               # alpha's initial value
    momentum: float = 0.5
    init: str = "high_loss"            # high_loss | random
    high_loss_epoch: int = 1
    single_expert: bool = False        # the reference's behaviour: every iteration matches one expert
    checkpoint_unroll: bool = False    # recompute each unrolled step in the backward pass (less memory)
    unroll_amp: str = "off"            # off | bf16 | auto: precision of the unrolled forward passes

    def validate(self):
        from ...engine.device import amp_mode
        if self.syn_steps < 1 or self.expert_epochs < 1 or self.max_start_epoch < 1:
            raise ConfigError("syn_steps, expert_epochs and max_start_epoch must be >= 1")
        if self.batch_syn is not None and self.batch_syn < 1:
            raise ConfigError("batch_syn must be >= 1 (or null for the whole set)")
        if self.init not in ("high_loss", "random"):
            raise ConfigError(f"init '{self.init}' is not known", fix="use high_loss or random")
        if self.lr_init <= 0:
            raise ConfigError("lr_init must be positive")
        amp_mode(self.unroll_amp)


def _tiny_experts(folder, source, teacher, epochs: int = 3) -> dict:
    """Two tiny experts on ``source`` (the resume-contract test and the sample presets)."""
    from .experts import ExpertsConfig, train_experts
    cfg = ExpertsConfig(teacher="<in memory>", arch="convnet-d2-w8-in", experts=2, epochs=epochs, batch_size=16,
                        device="cpu", output=str(folder / "experts"))
    train_experts(cfg, source=source, teacher=teacher, quiet=True)
    return {"experts": cfg.output}


class _UsesExperts:
    """Methods that read expert trajectories: ``params.experts``; the leaderboard fills it in."""

    uses_experts = True

    def trajectories(self, keep_epochs: int):
        """The experts, with epochs 0..keep_epochs of each in memory."""
        from .experts import load_experts
        if not self.cfg.experts:
            raise ConfigError(f"method '{self.name}' needs expert trajectories",
                              fix="set params.experts to the output folder of `ssdd experts`")
        return load_experts(self.cfg.experts, self.ctx.source, self.ctx.teacher, keep_epochs=keep_epochs)

    def high_loss_indices(self, trajs, epoch: int) -> torch.Tensor:
        ctx = self.ctx
        if epoch > trajs[0].epochs:
            raise ConfigError(f"high_loss_epoch {epoch} is beyond the experts' {trajs[0].epochs} epochs")
        scores = high_loss_scores(trajs, ctx.source, ctx.teacher.represent_cached(ctx.source), epoch)
        if not ctx.class_conditional:
            return top_by_score(scores, ctx.budget)
        counts = ctx.source.labels[ctx.initial_indices(self.gen)].bincount(minlength=ctx.source.num_classes)
        return top_by_score(scores, ctx.budget, ctx.source.labels, counts)

    @classmethod
    def tiny_setup(cls, folder, source, teacher) -> dict:
        return _tiny_experts(folder, source, teacher)


@dataclass
class HighLossConfig:
    experts: str = ""
    high_loss_epoch: int = 1


@register_method
class HighLoss(_UsesExperts, _Subset):
    """The source examples the experts fit worst after ``high_loss_epoch`` epochs, with the teacher's
    representations: MKDT's initialisation as a baseline."""

    name = "high_loss"
    Config = HighLossConfig

    def select(self) -> torch.Tensor:
        return self.high_loss_indices(self.trajectories(self.cfg.high_loss_epoch), self.cfg.high_loss_epoch)


@register_method
class MKDT(_UsesExperts, Method):
    name = "mkdt"
    Config = Config
    default_steps = 5000
    paper_scale_params = ("syn_steps", "batch_syn")
    tiny_params = {"syn_steps": 3, "batch_syn": 5, "max_start_epoch": 1, "expert_epochs": 1, "lr_images": 10.0}

    def __init__(self, cfg: Config, ctx: DistillContext):
        super().__init__(cfg, ctx)
        src = ctx.source
        self.mean = torch.tensor(src.mean, device=ctx.device).view(1, -1, 1, 1)
        self.std = torch.tensor(src.std, device=ctx.device).view(1, -1, 1, 1)
        self.gen = torch.Generator().manual_seed(ctx.seed)   # init, expert and start-epoch draws, minibatches

    def setup(self, fresh: bool = True) -> None:
        cfg, ctx = self.cfg, self.ctx
        # the epochs an iteration can read (and the high-loss epoch); the rest of each trajectory is never loaded
        last = cfg.max_start_epoch - 1 + cfg.expert_epochs
        trajs = self.trajectories(max(last, cfg.high_loss_epoch))
        if last > trajs[0].epochs:
            raise ConfigError(f"max_start_epoch {cfg.max_start_epoch} + expert_epochs {cfg.expert_epochs} reach epoch "
                              f"{last}, but the experts have {trajs[0].epochs} epochs",
                              fix="lower max_start_epoch / expert_epochs, or train longer experts")
        self.rows = torch.stack([t.params[: last + 1] for t in trajs])      # K x (last + 1) x P, stored dtype
        self.fp = FlatParams(trajs[0].template(ctx.device).train())
        if cfg.init == "high_loss":
            idx = self.high_loss_indices(trajs, cfg.high_loss_epoch)
        else:
            idx = ctx.initial_indices(self.gen)
        self.init_indices = idx.cpu().tolist()     # the source images it starts from (matched starts, audits)
        self.labels = ctx.source.labels[idx].clone() if ctx.class_conditional else None
        x0 = ctx.source.float(idx)
        self.x = ((x0 - self.mean) / self.std).clone().requires_grad_(True)
        self.y = ctx.teacher.encode(x0).clone().requires_grad_(True)
        self.lr = torch.tensor(float(cfg.lr_init), device=ctx.device).requires_grad_(True)
        self.opts = [torch.optim.SGD([self.x], lr=cfg.lr_images, momentum=cfg.momentum),
                     torch.optim.SGD([self.y], lr=cfg.lr_targets, momentum=cfg.momentum),
                     torch.optim.SGD([self.lr], lr=cfg.lr_lr, momentum=cfg.momentum)]
        self.expert = int(torch.randint(0, len(trajs), (1,), generator=self.gen)) if cfg.single_expert else -1

    def draw(self) -> tuple[int, int, list[torch.Tensor]]:
        """One iteration's expert, start epoch and synthetic minibatches (from the method's generator)."""
        cfg = self.cfg
        k = self.expert if cfg.single_expert else int(torch.randint(0, len(self.rows), (1,), generator=self.gen))
        t = int(torch.randint(0, cfg.max_start_epoch, (1,), generator=self.gen))
        return k, t, minibatches(len(self.x), cfg.batch_syn, cfg.syn_steps, self.gen)

    def step(self, step: int) -> dict[str, torch.Tensor]:
        cfg, dev = self.cfg, self.ctx.device
        # under torchrun every rank draws one (expert, start epoch, minibatches) per rank, alike, and unrolls its
        # own; the gradients are averaged over ranks, so an iteration matches N trajectories at once
        draws = [self.draw() for _ in range(dist.world_size())]
        k, t, batches = draws[dist.rank()]
        start = self.rows[k, t].to(device=dev, dtype=torch.float32)
        target = self.rows[k, t + cfg.expert_epochs].to(device=dev, dtype=torch.float32)
        batches = [b.to(dev) for b in batches]
        for o in self.opts:
            o.zero_grad(set_to_none=True)
        loss = matching_backward(self.fp, start, target, self.x, self.y, self.lr, batches,
                                 checkpoint=cfg.checkpoint_unroll, amp=cfg.unroll_amp)
        dist.sync_grads([self.x, self.y, self.lr])
        loss = dist.all_reduce_mean(loss)
        if not torch.isfinite(loss):
            raise NumericalError(f"MKDT matching loss is {float(loss)} at iteration {step}",
                                 fix="lower params.lr_images / lr_targets / lr_lr")
        for o in self.opts:
            o.step()
        if float(self.lr.detach()) <= 0:
            raise NumericalError(f"MKDT's learned learning rate became {float(self.lr.detach()):.3g} at iteration {step}",
                                 fix="lower params.lr_lr")
        return {"loss": loss, "lr": self.lr.detach().clone(), "start_epoch": torch.tensor(float(t))}

    def export(self) -> DistilledSet:
        images = (self.x.detach() * self.std + self.mean).float()
        return DistilledSet(images=images, targets=self.y.detach().float(), labels=self.labels,
                            lr=self.lr.detach().float().reshape(()).clone(), meta={"init_indices": self.init_indices})

    def state_dict(self) -> dict:
        return {"x": self.x.detach(), "y": self.y.detach(), "lr": self.lr.detach(), "labels": self.labels,
                "opts": [o.state_dict() for o in self.opts], "gen": self.gen.get_state(),
                "expert": torch.tensor(self.expert)}

    def load_state_dict(self, state: dict) -> None:
        dev = self.ctx.device
        with torch.no_grad():
            self.x.copy_(state["x"].to(dev))
            self.y.copy_(state["y"].to(dev))
            self.lr.copy_(state["lr"].to(dev))
        self.labels = state["labels"].to(dev) if state.get("labels") is not None else None
        for o, s in zip(self.opts, state["opts"]):
            o.load_state_dict(s)
        self.gen.set_state(state["gen"])
        self.expert = int(state["expert"])

