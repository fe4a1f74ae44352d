"""Expert trajectories for MKDT: students trained by MSE onto the teacher's representations.

``ssdd experts -c configs/mkdt/experts_<source>.yaml`` trains ``experts`` networks, each on the
whole source (no augmentation; SGD lr 0.1, momentum 0.9, wd 1e-4, batch 256, 20 epochs in the
paper) to regress the cached teacher representation of every image, and writes one
:class:`Trajectory` file per expert: its flat parameters after every epoch, epoch 0 (the random
initialisation) included. Each expert is a resumable stage (:func:`~distill.engine.stage.run_stage`),
so a killed run continues inside the expert it stopped in, finished experts are skipped, and
``worker``/``workers`` split the experts over processes or GPUs (worker w trains the experts k with
``k % workers == w``).

The trajectory's parameters are those of a registry model built without input normalisation: MKDT
unrolls it on images in normalised space, as the paper's code does.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ...config import resolved, to_dict
from ...data import ImageSet, load_source
from ...data.config import DataConfig
from ...engine import channels_last, dist, resolve_device, seed_everything
from ...engine.device import autocast
from ...engine.loop import epoch_batches, update
from ...engine.record import Record, register_record
from ...engine.configdiff import config_differences
from ...engine.stage import Stage, checkpoint_path, run_stage
from ...errors import ConfigError, DataError, FileFormatError, UserError
from ...models import check_model, create_model
from ...ssl.teacher import Teacher


# --------------------------------------------------------------------------- the record


@register_record
class Trajectory(Record):
    """One expert's flat parameters after each epoch: ``params`` is (epochs + 1) x P (fp32 or fp16).

    Header: ``arch``, ``out_dim``, ``image_size``/``channels``/``mean``/``std`` (of the source),
    ``names``/``shapes`` (the parameters in ``named_parameters`` order), ``epochs``, ``expert``
    (its index), ``losses`` (mean MSE of each epoch), ``teacher`` (id), ``source``/``source_images``/
    ``source_fingerprint`` (which images, in which order, it was trained on), ``config``.
    """

    KIND = "ssdd.trajectory"
    NOUN = "expert trajectory"
    VERSION = 1

    def __init__(self, params: torch.Tensor, meta: dict):
        self.params = params
        self.meta = meta

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"params": self.params.contiguous()}

    @classmethod
    def from_file(cls, tensors, meta, where, device="cpu") -> "Trajectory":
        if set(tensors) != {"params"}:
            raise FileFormatError(f"{where}: an expert trajectory holds one tensor 'params', found {sorted(tensors)}")
        return cls(tensors["params"], meta)

    def validate(self, where: str = "") -> "Trajectory":
        where = where or self.NOUN
        super().validate(where)
        m, p = self.meta, self.params
        for key in ("arch", "out_dim", "names", "shapes", "epochs", "image_size", "channels", "mean", "std"):
            if key not in m:
                raise FileFormatError(f"{where}: header lacks '{key}'")
        if not isinstance(m["arch"], str):
            raise FileFormatError(f"{where}: 'arch' must be a model name, got {m['arch']!r}")
        for key in ("out_dim", "epochs"):
            if not (isinstance(m[key], int) and not isinstance(m[key], bool) and 0 < m[key] < 10**7):
                raise FileFormatError(f"{where}: '{key}' must be a positive integer, got {m[key]!r}")
        if p.dim() != 2 or p.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise FileFormatError(f"{where}: 'params' must be a 2-D float tensor (epochs + 1 x parameters), "
                                  f"got {p.dtype} of shape {tuple(p.shape)}")
        if p.shape[0] != m["epochs"] + 1:
            raise FileFormatError(f"{where}: 'params' has {p.shape[0]} rows but epochs={m['epochs']} needs "
                                  f"{m['epochs'] + 1} (epoch 0 included)")
        names, shapes = m["names"], m["shapes"]
        if (not isinstance(names, list) or not isinstance(shapes, list) or len(names) != len(shapes)
                or not all(isinstance(n, str) for n in names)
                or not all(isinstance(s, list) and all(isinstance(d, int) and not isinstance(d, bool) and 0 < d < 10**9
                                                       for d in s) for s in shapes)):
            raise FileFormatError(f"{where}: 'names'/'shapes' must be lists of equal length (names, lists of "
                                  "positive integers)")
        total = sum(math.prod(s) for s in shapes)
        if total != p.shape[1]:
            raise FileFormatError(f"{where}: the shapes add up to {total} parameters but 'params' has {p.shape[1]}")
        if not torch.isfinite(p).all():
            raise FileFormatError(f"{where}: 'params' holds NaN or inf", fix="re-create the expert")
        return self

    # ------------------------------------------------------------------ use
    @property
    def epochs(self) -> int:
        return int(self.meta["epochs"])

    @property
    def num_params(self) -> int:
        return int(self.params.shape[1])

    def at(self, epoch: int, device="cpu") -> torch.Tensor:
        """The flat fp32 parameters after ``epoch`` epochs (0: the initialisation)."""
        return self.params[epoch].to(device=device, dtype=torch.float32)

    def template(self, device="cpu"):
        """A registry model with this trajectory's architecture, without input normalisation (the
        trajectory was trained on normalised images); its parameters are to be set functionally."""
        m = self.meta
        model = create_model(m["arch"], out_dim=m["out_dim"], image_size=m["image_size"], in_chans=m["channels"])
        names = [n for n, _ in model.named_parameters()]
        shapes = [list(q.shape) for _, q in model.named_parameters()]
        if names != m["names"] or shapes != m["shapes"]:
            raise FileFormatError(f"{m.get('arch')}: this toolkit builds other parameters than the trajectory holds",
                                  fix="re-create the experts with this release")
        return model.to(device)

    def summary(self) -> str:
        m = self.meta
        losses = m.get("losses") or []
        last = f", last epoch MSE {losses[-1]:.4g}" if losses else ""
        return (f"expert trajectory #{m.get('expert', '?')}: {m['arch']} -> {m['out_dim']}-d, {self.epochs} epochs "
                f"x {self.num_params:,} parameters ({str(self.params.dtype).replace('torch.', '')}), "
                f"{m.get('source', '?')} ({m.get('source_images', '?')} images), teacher {m.get('teacher', '?')}{last}")


def source_fingerprint(src: ImageSet) -> str:
    """Which images, in which order: a hash of every 64th image and of the labels."""
    h = hashlib.sha1(src.images[::64].cpu().numpy().tobytes())
    h.update(src.labels.cpu().numpy().tobytes())
    h.update(str(len(src)).encode())
    return h.hexdigest()[:16]


def flat_names_shapes(model: torch.nn.Module) -> tuple[list[str], list[list[int]]]:
    named = list(model.named_parameters())
    return [n for n, _ in named], [list(p.shape) for _, p in named]


def flat_params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).float().cpu()


# --------------------------------------------------------------------------- the stage


@dataclasses.dataclass
class ExpertsConfig:
    """``ssdd experts``: MKDT's expert trajectories.

    YAML (configs/mkdt/experts_<source>.yaml)::

        data: {name: cifar100, root: /data}
        teacher: runs/cifar100/teacher.safetensors
        arch: convnet              # 3 x 128, instance norm (4 blocks at 64 px: convnet-d4)
        experts: 100
        epochs: 20
        output: runs/cifar100/experts
    """

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train_per_class: int | None = None    # a seeded class-balanced subset (the leaderboard's CPU sources)
    teacher: str = ""
    arch: str = "convnet"
    experts: int = 100
    epochs: int = 20
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    dtype: str = "fp32"                   # fp32 | fp16: how the parameters are stored
    seed: int = 0                         # expert k starts from seed + k
    worker: int = 0                       # this process trains experts k with k % workers == worker
    workers: int = 1
    device: str = "auto"
    amp: str = "auto"
    output: str = "runs/${.data.name}/experts"   # a folder: expert_000.safetensors, ...
    checkpoint_every: int = 1             # epochs
    log_every: int = 10

    def validate(self):
        from ...engine.device import amp_mode
        if not self.teacher:
            raise ConfigError("experts need a teacher", fix="pass teacher=path/to/teacher.safetensors (ssdd teacher)")
        if self.experts < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("experts, epochs and batch_size must be >= 1")
        if self.dtype not in ("fp32", "fp16"):
            raise ConfigError(f"dtype '{self.dtype}' is not supported", fix="use fp32 or fp16")
        if not (self.workers >= 1 and 0 <= self.worker < self.workers):
            raise ConfigError(f"worker {self.worker} of {self.workers}: need 0 <= worker < workers")
        amp_mode(self.amp)
        check_model(self.arch, "arch")


def expert_path(output: str | Path, k: int) -> Path:
    return Path(output) / f"expert_{k:03d}.safetensors"


class ExpertStage(Stage):
    """One expert: one SGD step per stage step; the flat parameters kept after every epoch."""

    name = "experts"

    def __init__(self, cfg: ExpertsConfig, k: int, src: ImageSet, targets: torch.Tensor, teacher: Teacher, device):
        self.cfg, self.k, self.src, self.targets, self.teacher, self.device = cfg, k, src, targets, teacher, device
        self.batches = epoch_batches(len(src), cfg.batch_size, device, drop_last=False, cpu_perm=True)
        self.steps_per_epoch = self.batches.steps_per_epoch
        self.steps = self.steps_per_epoch * cfg.epochs
        self.t0 = time.time()

    def setup(self, fresh: bool = True) -> None:
        cfg, src = self.cfg, self.src
        model = create_model(cfg.arch, out_dim=self.targets.shape[1], image_size=src.image_size, in_chans=src.channels,
                             mean=src.mean, std=src.std)
        self.model = channels_last(model.to(self.device), self.device, cfg.amp)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
        self.snapshots = [flat_params(self.model)]
        self.losses: list[float] = []
        self.epoch_loss = torch.zeros((), device=self.device)

    def step(self, i: int):
        self.model.train()
        idx = self.batches(i)
        with autocast(self.device, self.cfg.amp):
            out = self.model(self.src.float(idx))
        loss = F.mse_loss(out.float(), self.targets[idx])
        update(loss, self.opt)
        self.epoch_loss += loss.detach() * len(idx)
        if (i + 1) % self.steps_per_epoch == 0:      # an epoch ends: keep where the parameters are
            self.snapshots.append(flat_params(self.model))
            self.losses.append(round(float(self.epoch_loss) / len(self.src), 6))
            self.epoch_loss.zero_()
        return {"loss": loss.detach()}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "batches": self.batches.state_dict(),
                "snapshots": torch.stack(self.snapshots), "losses": torch.tensor(self.losses, dtype=torch.float64),
                "epoch_loss": self.epoch_loss}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.batches.load_state_dict(state["batches"])
        self.snapshots = list(state["snapshots"].cpu().unbind(0))
        self.losses = [float(v) for v in state["losses"]]
        self.epoch_loss = state["epoch_loss"].to(self.device)

    def finish(self) -> Trajectory:
        cfg, src = self.cfg, self.src
        params = torch.stack(self.snapshots)
        if cfg.dtype == "fp16":
            params = params.half()
        names, shapes = flat_names_shapes(self.model)
        meta = {"arch": cfg.arch, "out_dim": int(self.targets.shape[1]), "image_size": src.image_size,
                "channels": src.channels, "mean": list(src.mean), "std": list(src.std), "names": names,
                "shapes": shapes, "epochs": cfg.epochs, "expert": self.k, "seed": cfg.seed + self.k,
                "losses": self.losses, "teacher": self.teacher.id, "source": src.name, "split": src.split,
                "source_images": len(src), "source_fingerprint": source_fingerprint(src),
                "train_seconds": round(time.time() - self.t0, 1), "config": to_dict(cfg)}
        return Trajectory(params, meta).validate("expert trajectory")


@dataclasses.dataclass
class ExpertsResult:
    paths: list[Path]          # every expert file of this worker (under torchrun: of every rank), trained now or before
    trained: list[int]
    skipped: list[int]
    seconds: float


def train_experts(cfg: ExpertsConfig, resume: bool = True, stop_after: int | None = None, quiet: bool = False,
                  source: ImageSet | None = None, teacher: Teacher | None = None) -> ExpertsResult:
    """Train this worker's experts (see the module docstring). Finished experts made by the same config
    are skipped; an expert with a checkpoint continues from it (``resume``). ``stop_after``: stop the
    expert in progress after that many steps of it (to split a run). ``source`` / ``teacher``: loaded
    objects to use instead of ``cfg.data`` / ``cfg.teacher`` (the Python API, the leaderboard)."""
    t0 = time.time()
    cfg = resolved(cfg)
    dist.init_distributed(cfg.device)
    if dist.is_distributed() and cfg.workers == 1:   # torchrun: rank r of N trains the experts k % N == r
        cfg.worker, cfg.workers = dist.rank(), dist.world_size()
    device = resolve_device(cfg.device)
    src = (source if source is not None else load_source(cfg.data, cfg.train_per_class, device)).to(device)
    teacher = (teacher if teacher is not None else Teacher.load(cfg.teacher)).to(device)
    teacher.check_images(src.channels, src.image_size, f"{src.name}/{src.split}")
    mine = [k for k in range(cfg.experts) if k % cfg.workers == cfg.worker]
    config = to_dict(cfg)
    mutable = ("worker", "workers", "experts")   # which experts a process trains does not change any expert
    paths, trained, skipped = [], [], []
    targets = None
    for k in mine:
        out = expert_path(cfg.output, k)
        paths.append(out)
        if out.exists():
            try:
                done = Trajectory.load(out)
            except UserError:
                done = None
            if done is not None and not config_differences(done.meta.get("config"), config, mutable):
                skipped.append(k)
                continue
        if targets is None:
            if not quiet:
                print(f"experts: teacher representations of {src.name}/{src.split} ({len(src)} images)", flush=True)
            targets = teacher.represent_cached(src)
        ckpt = checkpoint_path(out)
        seed_everything(cfg.seed + k)
        stage = ExpertStage(cfg, k, src, targets, teacher, device)
        if not quiet:
            print(f"expert {k} ({len(trained) + len(skipped) + 1}/{len(mine)} of worker {cfg.worker}): {cfg.arch}, "
                  f"{cfg.epochs} epochs x {stage.steps_per_epoch} steps{' (resuming)' if resume and ckpt.exists() else ''}",
                  flush=True)
        res = run_stage(stage, stage.steps, output=out, config=config, resume=resume and ckpt.exists(),
                        stop_after=stop_after, checkpoint_every=cfg.checkpoint_every * stage.steps_per_epoch,
                        log_every=cfg.log_every, mutable=mutable, desc=f"expert {k}", what="expert MSE",
                        fix="lower lr", lines=not quiet, device=device, overwrite=True, collective=False)
        if not res.finished:
            break
        trained.append(k)
    if dist.is_distributed():      # every rank's experts are there (or stopped) when the command returns
        parts = dist.all_gather_objects((paths, trained, skipped))
        paths, trained, skipped = ([x for part in parts for x in part[i]] for i in range(3))
        order = sorted(range(len(paths)), key=lambda j: str(paths[j]))
        paths, trained, skipped = [paths[j] for j in order], sorted(trained), sorted(skipped)
    return ExpertsResult(paths, trained, skipped, time.time() - t0)


# --------------------------------------------------------------------------- reading a set of experts


def expert_files(where: str | Path) -> list[Path]:
    """The trajectory files of a folder (or one file), in order; a clear error when there are none."""
    p = Path(where)
    files = [p] if p.is_file() else sorted(p.glob("expert_*.safetensors")) if p.is_dir() else []
    files = [f for f in files if not f.name.endswith(".ckpt.safetensors")]
    if not files:
        raise DataError(f"no expert trajectories at {where}",
                        fix="make them with `ssdd experts -c configs/mkdt/experts_<source>.yaml` and point "
                            "params.experts at its output folder")
    return files


def load_experts(where: str | Path, src: ImageSet | None = None, teacher: Teacher | None = None,
                 keep_epochs: int | None = None) -> list[Trajectory]:
    """Every trajectory at ``where``, checked against each other and (when given) against the source
    and teacher being distilled: same images in the same order, same teacher. ``keep_epochs``: keep
    only epochs 0..keep_epochs of each in memory (files are read one at a time, so 100 experts of
    20 epochs never sit in memory at once); the header still describes the whole file."""
    trajs = []
    for f in expert_files(where):
        t = Trajectory.load(f)
        if keep_epochs is not None and keep_epochs < t.epochs:
            t.params = t.params[: keep_epochs + 1].clone()
        trajs.append(t)
    first = trajs[0].meta
    for t, f in zip(trajs, expert_files(where)):
        for key in ("arch", "out_dim", "epochs", "names", "shapes", "source_fingerprint", "teacher"):
            if t.meta.get(key) != first.get(key):
                raise DataError(f"{f} differs from the other experts in '{key}'",
                                fix="keep one run of `ssdd experts` per folder")
    if src is not None and first.get("source_fingerprint") != source_fingerprint(src):
        raise DataError(f"the experts at {where} were trained on other images than {src.name}/{src.split} "
                        f"({first.get('source_images')} vs {len(src)} images)",
                        fix="train experts on the source being distilled (same data, split and train_per_class)")
    if teacher is not None and first.get("teacher") != teacher.id:
        raise DataError(f"the experts at {where} regress teacher {first.get('teacher')}, not {teacher.id}",
                        fix="train experts with the teacher being distilled with")
    return trajs


__all__ = ["ExpertStage", "ExpertsConfig", "ExpertsResult", "Trajectory", "expert_files", "expert_path",
           "flat_params", "load_experts", "source_fingerprint", "train_experts"]
