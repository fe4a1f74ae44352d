"""The evaluation building blocks: pre-train on a set, fine-tune, linear probe, supervised training.

Every loop is :func:`distill.engine.fit` over GPU-resident tensors (no DataLoader); none looks at a
test split before the end: there is no checkpoint selection on test accuracy.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F

from ..data import ImageSet, label_subset
from ..data.augment import DSA, CropFlip
from ..distilled import Materialized
from ..engine import dist
from ..engine.device import autocast, full_precision
from ..engine.loop import accuracy, epoch_batches, fit
from ..engine.optim import param_groups, warmup_cosine
from ..engine.progress import progress
from ..errors import ConfigError
from ..models import Net
from .config import FinetuneConfig, LinearConfig, PretrainConfig


def pretrain_loss_kind(cfg: PretrainConfig, m: Materialized) -> str:
    kind = cfg.loss
    if kind == "auto":
        kind = "mse" if m.targets is not None else "ce" if m.labels is not None else "kl"
    need = {"mse": m.targets, "ce": m.labels, "kl": m.soft_labels}[kind]
    if need is None:
        what = {"mse": "targets", "ce": "labels"}.get(kind, "soft labels")
        raise ConfigError(f"pre-training loss '{kind}' needs {what}, "
                          "which this set does not have")
    return kind


def set_loss(kind: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The pre-training loss a set calls for: MSE to targets, CE on labels, KL to soft labels (fp32)."""
    out = out.float()
    if kind == "mse":
        return F.mse_loss(out, y.float())
    if kind == "ce":
        return F.cross_entropy(out, y)
    return F.kl_div(F.log_softmax(out, 1), F.softmax(y.float(), 1), reduction="batchmean")


def pretrain_on_set(model: Net, m: Materialized, cfg: PretrainConfig, device: torch.device, amp="auto",
                    desc: str = "pre-train") -> dict:
    """Train ``model`` on the set; its head is replaced to fit the targets. Returns loss history."""
    kind = pretrain_loss_kind(cfg, m)
    x = m.images.to(device).float()
    y = {"mse": m.targets, "ce": m.labels, "kl": m.soft_labels}[kind].to(device)
    out_dim = y.shape[1] if kind in ("mse", "kl") else int(y.max()) + 1
    model.reset_head(out_dim)
    model.to(device).train()
    lr = cfg.lr if cfg.lr is not None else (m.lr if m.lr is not None else 0.1)
    aug = CropFlip(x.shape[-1]) if cfg.augment else None
    if kind == "ce":   # a labelled set: the supervised recipe of the KRR-ST paper's "random" row
        lr = cfg.ce_lr if cfg.ce_lr is not None else lr
        aug = {"dsa": lambda: DSA(x.shape[-1]), "crop_flip": lambda: CropFlip(x.shape[-1]),
               "none": lambda: None}[cfg.ce_augment]()
    batches = epoch_batches(len(x), cfg.batch_size, device)
    spe = batches.steps_per_epoch
    total = spe * cfg.epochs
    opt = torch.optim.SGD(param_groups([model], cfg.weight_decay), lr=lr, momentum=cfg.momentum)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total) if cfg.schedule == "cosine" else (lambda s: 1.0))

    def step(i):
        idx = batches(i)
        xb = x[idx] if aug is None else aug(x[idx])
        out = model(xb)
        with full_precision(device):
            return set_loss(kind, out, y[idx])

    res = fit(step, total, optimizer=opt, scheduler=sched, device=device, amp=amp, desc=desc,
              what=f"pre-training loss ({kind})", fix="lower pretrain.lr",
              log_every=lambda done: done % spe == 0 and (done // spe - 1) % 50 == 0)   # epochs 1, 51, 101, ...
    history = [{"epoch": r["step"] // spe, "loss": r["loss"]} for r in res.history]
    if cfg.recalibrate_bn:
        recalibrate_bn(model, x, cfg.batch_size)
    return {"loss_kind": kind, "history": history, "lr": lr}


@torch.no_grad()
def recalibrate_bn(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 256) -> int:
    """Set every BatchNorm's running mean and variance to their cumulative average over ``x`` (the batch
    statistics of each batch of ``batch_size``, averaged), in one pass in train mode; no weight changes.
    Returns the number of BatchNorm layers reset."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    saved = [(m, m.momentum) for m in bns]
    was_training = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None                 # cumulative moving average over this pass
    model.train()
    try:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
    finally:
        for m, mom in saved:
            m.momentum = mom
        model.train(was_training)
    return len(bns)


def finetune(model: Net, train: ImageSet, test: ImageSet, cfg: FinetuneConfig, iterations: int | None = None,
             amp="auto", desc: str = "fine-tune", data_parallel: bool = False) -> float:
    """Fine-tune all of ``model`` with a fresh head; return test top-1 (%) at the end of training.

    ``data_parallel`` (under torchrun): every rank draws the same batch and trains on its shard of it,
    the model in DDP with SyncBatchNorm, so N processes take the step one process takes."""
    device = train.device
    iters = iterations or cfg.iterations
    model.reset_head(train.num_classes)
    model.to(device).train()
    parallel = data_parallel and dist.is_distributed()
    if parallel and min(cfg.batch_size, len(train)) < dist.world_size():
        raise ConfigError(f"a fine-tuning batch of {min(cfg.batch_size, len(train))} cannot be split over "
                          f"{dist.world_size()} processes", fix="raise finetune.batch_size, or use parallel=jobs")
    net = dist.wrap_ddp(dist.convert_sync_batchnorm(model, device), device) if parallel else model
    opt = torch.optim.SGD(param_groups([model], cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(iters))
    aug = CropFlip(train.image_size) if cfg.augment else None
    bs = min(cfg.batch_size, len(train))

    def step(i):
        idx = torch.randint(0, len(train), (bs,), device=device)
        x = train.float(idx)
        if aug is not None:
            x = aug(x)
        part = dist.shard(bs) if parallel else slice(None)
        out = net(x[part])
        with full_precision(device):
            loss = F.cross_entropy(out.float(), train.labels[idx][part])
        return loss * (len(out) * dist.world_size() / bs) if parallel else loss

    fit(step, iters, optimizer=opt, scheduler=sched, device=device, amp=amp, desc=desc, what="fine-tuning loss",
        fix="lower finetune.lr", log_every=100)
    return accuracy(model, test, amp=amp)


def train_classifier(arch: str, train: ImageSet, test: ImageSet, iterations: int, lr: float = 0.05,
                     batch_size: int = 128, weight_decay: float = 5e-4, seed: int = 0, amp="auto"):
    """Supervised training from scratch (SGD, cosine, crop + flip); a Classifier record whose header
    holds the test accuracy at the end of training."""
    from ..classifier import Classifier
    from ..engine import seed_everything
    from ..models import create_model
    seed_everything(seed)
    model = create_model(arch, out_dim=train.num_classes, image_size=train.image_size, in_chans=train.channels,
                         mean=train.mean, std=train.std).to(train.device)
    acc = finetune(model, train, test, FinetuneConfig(iterations=iterations, lr=lr, batch_size=batch_size,
                                                      weight_decay=weight_decay), amp=amp, desc=f"train {arch}")
    meta = {"arch": arch, "num_classes": train.num_classes, "image_size": train.image_size, "channels": train.channels,
            "mean": list(train.mean), "std": list(train.std), "source": train.name, "iterations": iterations,
            "test_acc": round(acc, 2), "seed": seed, "classes": list(train.classes)}
    return Classifier(model, meta)


@torch.no_grad()
def extract_features(model: Net, ds: ImageSet, batch_size: int = 1024, amp="auto",
                     desc: str = "features") -> torch.Tensor:
    model.eval()
    out = []
    for i in progress(range(0, len(ds), batch_size), desc=desc):
        idx = torch.arange(i, min(i + batch_size, len(ds)), device=ds.device)
        with autocast(ds.device, amp):
            out.append(model.embed(ds.float(idx)).float())
    return torch.cat(out)


def fit_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: LinearConfig,
               info: dict | None = None) -> torch.nn.Linear:
    """A linear classifier on features: full-batch L-BFGS (strong Wolfe) run until the objective's gradient
    has no entry above ``cfg.tolerance`` (at most ``cfg.steps`` iterations), or mini-batch SGD, with
    ``l2 * ||W||^2`` added to the mean cross-entropy. ``info`` (a dict) receives the iterations, the final
    gradient's largest entry and whether the tolerance was reached.

    L-BFGS solves in float64 (the classifier is returned in the features' dtype): in float32 the objective
    stops changing before a gradient tolerance of 1e-5 is reached on some draws, and where that happens
    depends on the machine's BLAS."""
    out_dtype = x.dtype
    if cfg.solver == "lbfgs":
        x = x.double()
    lin = torch.nn.Linear(x.shape[1], num_classes).to(device=x.device, dtype=x.dtype)
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)

    def objective(idx=None):
        xb, yb = (x, y) if idx is None else (x[idx], y[idx])
        return F.cross_entropy(lin(xb), yb) + cfg.l2 * lin.weight.pow(2).sum()

    if cfg.solver == "lbfgs":
        opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=cfg.steps, max_eval=2 * cfg.steps,
                                history_size=20, line_search_fn="strong_wolfe", tolerance_grad=cfg.tolerance,
                                tolerance_change=1e-14)

        def closure():
            opt.zero_grad()
            loss = objective()
            loss.backward()
            return loss
        opt.step(closure)
        iterations = int(opt.state[opt._params[0]].get("n_iter", 0))
    else:
        opt = torch.optim.SGD(lin.parameters(), lr=cfg.lr, momentum=0.9)
        batches = epoch_batches(len(x), cfg.batch_size, x.device)
        total = cfg.steps * batches.steps_per_epoch
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total))
        fit(lambda i: objective(batches(i)), total, optimizer=opt, scheduler=sched, desc="linear probe (SGD)",
            what="probe loss", fix="lower linear.lr", log_every=max(1, total // 10))
        iterations = total
    if info is not None:
        lin.zero_grad()
        objective().backward()
        grad = max(float(p.grad.abs().max()) for p in lin.parameters())
        lin.zero_grad()
        info.update(probe_iters=iterations, probe_grad=grad,
                    probe_converged=bool(cfg.solver != "lbfgs" or grad <= cfg.tolerance))
    return lin.to(out_dtype)


def linear_probe(model: Net, train: ImageSet, test: ImageSet, cfg: LinearConfig, seed: int = 0,
                 amp="auto", info: dict | None = None) -> dict[float, float]:
    """Test top-1 (%) of linear classifiers on frozen features, one per label fraction; ``info[frac]`` gets
    each probe's solver record (iterations, final gradient, converged)."""
    subsets = {frac: (torch.arange(len(train)) if frac >= 1 else label_subset(train.labels.cpu(), fraction=frac,
                                                                              seed=seed))
               for frac in cfg.label_fractions}
    # features of the labelled images only (a 1 % probe reads 1 % of the training split, not all of it)
    used = torch.unique(torch.cat(list(subsets.values())))
    f_used = extract_features(model, train if len(used) == len(train) else train.subset(used), amp=amp,
                              desc="probe features (train)")
    row = torch.full((len(train),), -1, dtype=torch.long)
    row[used] = torch.arange(len(used))
    f_te = extract_features(model, test, amp=amp, desc="probe features (test)")
    results = {}
    for frac, idx in subsets.items():
        xs, ys = f_used[row[idx].to(f_used.device)], train.labels[idx.to(train.labels.device)]
        xt = f_te
        if cfg.standardize:
            # the floor is relative to the features' scale: an absolute one erased features that are small but
            # informative (a freshly initialised MobileNetV2 in eval mode: about 1e-10; its probe on 1,000 CIFAR-10
            # images went from 7.9 % to 28.2 % with the relative floor)
            mu, sd = xs.mean(0, keepdim=True), xs.std(0, keepdim=True)
            sd = sd.clamp_min(1e-6 * float(sd.max()) + torch.finfo(sd.dtype).tiny)
            xs, xt = (xs - mu) / sd, (f_te - mu) / sd
        rec: dict = {}
        with torch.enable_grad():
            lin = fit_linear(xs, ys, train.num_classes, cfg, info=rec)
        if info is not None:
            info[frac] = rec
        with torch.no_grad():
            results[frac] = accuracy(lin, xt, test.labels)
    return results


__all__ = ["accuracy", "extract_features", "finetune", "fit_linear", "linear_probe", "pretrain_loss_kind",
           "pretrain_on_set", "recalibrate_bn", "set_loss", "train_classifier"]
