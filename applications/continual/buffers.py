"""Replay memories measured in bytes: the distilled buffer, and real-image buffers of equal size.

A real CIFAR image costs C*H*W bytes (uint8) plus its label; a distilled example costs its image at
the storage precision, its label and, for representation replay, its feature target. Comparisons
are made at equal bytes, not equal counts.
"""
from __future__ import annotations

import copy
import dataclasses
import tempfile
from dataclasses import dataclass, field

import torch
from avalanche.training.storage_policy import ExemplarsBuffer

from distill.data.config import DataConfig
from distill.methods import DistillConfig
from distill.data import ImageSet
from distill.errors import UserError
from distill.methods import get_method, run_distillation
from distill.models import Net
from distill.ssl import Teacher

from .compat import concat, dataset_tensors, make_tensor_dataset

LABEL_BYTES = 8
#: per-experience experts of a method that reads trajectories (MKDT): the CPU presets' size (paper: 100 x 20 epochs)
EXPERTS = {"arch": "convnet", "experts": 4, "epochs": 6, "batch_size": 256}
#: ExpertsConfig keys the buffer sets itself
EXPERTS_OWN = ("teacher", "data", "train_per_class", "output", "device", "seed", "worker", "workers")
DTYPE_BYTES = {"uint8": 1, "float16": 2, "float32": 4}


def expert_settings() -> list[str]:
    """The ``ssdd experts`` settings a per-experience ``experts:`` may hold (the rest the buffer sets itself)."""
    from distill.methods.mkdt.experts import ExpertsConfig
    return sorted({f.name for f in dataclasses.fields(ExpertsConfig)} - set(EXPERTS_OWN))


def real_item_bytes(channels: int, image_size: int) -> int:
    """One real image as stored by a dataset (uint8) plus its label."""
    return channels * image_size * image_size + LABEL_BYTES


def real_buffer_size(memory_bytes: int, channels: int, image_size: int) -> int:
    """How many real images fit in ``memory_bytes``."""
    return memory_bytes // real_item_bytes(channels, image_size)


def _quantize(x: torch.Tensor, dtype: str) -> torch.Tensor:
    if dtype == "uint8":
        return x.clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.to(torch.float16 if dtype == "float16" else torch.float32)


def _dequantize(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(255) if x.dtype == torch.uint8 else x.float()


@dataclass
class Share:
    """One experience's part of the memory."""

    images: torch.Tensor            # stored dtype, pixel space
    labels: torch.Tensor            # benchmark labels
    targets: torch.Tensor | None = None   # feature targets (representation replay), float16
    info: dict = field(default_factory=dict)


class DistilledBuffer(ExemplarsBuffer):
    """An Avalanche ``ExemplarsBuffer`` whose ``post_adapt`` distils the experience just seen.

    The budget is ``max_bytes``; after experience t it is split evenly over the t experiences seen
    so far (older shares are shrunk class-balanced by :meth:`resize`, the new one is distilled at
    its share). Distillation is any method of the registry (KRR-ST, class-conditional, by
    default); its teacher is a frozen SSL ``Teacher`` or, with ``teacher="model"``, a frozen copy
    of the continually trained model's own backbone. Images are kept in pixel space at
    ``storage_dtype`` (the model normalises, as everywhere in the toolkit); labels are the
    benchmark's (already mapped) labels. With ``store_targets`` each example also keeps the
    model's features at storage time (float16), the target of representation replay.

    A method that reads expert trajectories (MKDT, high-loss) gets its experts trained on the experience
    just seen, regressing the same teacher (``experts``: ``ssdd experts`` settings: arch, experts, epochs,
    batch_size, lr), in a temporary folder that is deleted after the distillation. A method that reads a
    classifier (SC-DD) squeezes one from the teacher on the experience in memory (a classifier file trained
    on every class is dropped: it would know classes the stream has not shown yet).

    A factorised method (``Method.factorised``: Boost) gets a fixed ``max_bytes / n_experiences`` per
    experience instead, distils into that many float32 image-equivalents of stored parts, and keeps every
    image its set materialises; the share counts the stored bytes (``storage_bytes``) and is never cut,
    since part of a basis is no smaller set.
    """

    def __init__(self, max_bytes: int, *, mean, std, image_size: int, channels: int = 3,
                 teacher: Teacher | str = "model", method: str = "krr_st", steps: int = 200,
                 params: dict | None = None, storage_dtype: str = "uint8", store_targets: bool = False,
                 feature_dim: int | None = None, device: str = "auto", seed: int = 0,
                 n_experiences: int | None = None, experts: dict | None = None):
        if storage_dtype not in DTYPE_BYTES:
            raise UserError(f"storage_dtype must be one of {list(DTYPE_BYTES)}, got '{storage_dtype}'")
        if store_targets and not feature_dim:
            raise UserError("store_targets needs feature_dim (the model's feature size)")
        self.max_bytes = int(max_bytes)
        self.mean, self.std = tuple(mean), tuple(std)
        self.image_size, self.channels = image_size, channels
        self.teacher, self.method, self.steps, self.params = teacher, method, steps, dict(params or {})
        self.storage_dtype, self.store_targets, self.feature_dim = storage_dtype, store_targets, feature_dim
        self.device, self.seed = device, seed
        self.n_experiences = n_experiences
        m = get_method(method)
        self.experts = {**EXPERTS, **(experts or {})} if m.uses_experts else None
        bad = sorted(set(self.experts or {}) - set(expert_settings()))
        if bad:
            raise UserError(f"experts: {bad} are not settings of per-experience experts",
                            fix=f"use {expert_settings()}")
        if m.uses_classifier:
            self.params.pop("classifier", None)   # a file trained on every class; squeezed per experience instead
        self.factorised = bool(getattr(m, "factorised", False))
        if self.factorised and not n_experiences:
            raise UserError(f"a {method} memory keeps each experience's stored parts whole, so it needs the number "
                            "of experiences up front", fix="pass n_experiences= (the benchmark's)")
        self.shares: list[Share] = []
        super().__init__(self.max_bytes // self.item_bytes())
        if self.max_size < 1:
            raise UserError(f"a memory of {max_bytes} bytes holds no example of {self.item_bytes()} bytes")

    # ------------------------------------------------------------------ accounting
    def item_bytes(self) -> int:
        b = self.channels * self.image_size ** 2 * DTYPE_BYTES[self.storage_dtype] + LABEL_BYTES
        return b + (2 * self.feature_dim if self.store_targets else 0)

    def bytes_used(self) -> int:
        """Bytes actually held (images at storage dtype, labels as int64, targets as float16)."""
        total = 0
        for s in self.shares:
            if "stored_bytes" in s.info:      # a factorised share: what it stores, not what it expands into
                total += s.info["stored_bytes"]
                if s.targets is not None:
                    total += s.targets.numel() * s.targets.element_size()
                continue
            total += s.images.numel() * s.images.element_size() + s.labels.numel() * LABEL_BYTES
            if s.targets is not None:
                total += s.targets.numel() * s.targets.element_size()
        return total

    def __len__(self) -> int:
        return sum(len(s.labels) for s in self.shares)

    # ------------------------------------------------------------------ views
    def tensors(self, device=None):
        """(pixel-space images, labels, feature targets or None) of the whole memory."""
        if not self.shares:
            return None
        x = torch.cat([_dequantize(s.images) for s in self.shares])
        y = torch.cat([s.labels for s in self.shares])
        t = torch.cat([s.targets for s in self.shares]).float() if self.store_targets else None
        if device is not None:
            x, y = x.to(device), y.to(device)
            t = t.to(device) if t is not None else None
        return x, y, t

    def _rebuild(self):
        if not self.shares:
            self.buffer = concat([])
            return
        x = torch.cat([_dequantize(s.images) for s in self.shares])
        y = torch.cat([s.labels for s in self.shares])
        self.buffer = make_tensor_dataset(x, y)   # pixel space: the model normalises

    # ------------------------------------------------------------------ Avalanche hooks
    @staticmethod
    def _shrink(share: Share, n: int) -> Share:
        """Keep ``n`` examples, as balanced over the share's classes as possible (first ones of each class)."""
        if len(share.labels) <= n or "stored_bytes" in share.info:   # factorised shares are kept whole
            return share
        classes = share.labels.unique()
        base, extra = divmod(n, len(classes))
        keep = []
        for i, c in enumerate(classes):
            idx = torch.nonzero(share.labels == c).flatten()
            keep.append(idx[: base + (1 if i < extra else 0)])
        keep = torch.cat(keep).sort().values
        return Share(share.images[keep], share.labels[keep],
                     share.targets[keep] if share.targets is not None else None, share.info)

    def resize(self, strategy, new_size: int):
        """Shrink to ``new_size`` examples in all, evenly over the experiences' shares."""
        self.max_size = int(new_size)
        if self.shares:
            per = self.max_size // len(self.shares)
            self.shares = [self._shrink(s, per) for s in self.shares]
        self._rebuild()

    def post_adapt(self, agent, exp):
        """Shrink the old shares, distil ``exp`` into its share, rebuild ``self.buffer``."""
        n_exp = len(self.shares) + 1
        quota = self.max_size // n_exp
        self.shares = [self._shrink(s, quota) for s in self.shares]
        source = self._experience_images(exp)
        counts = source.labels.bincount()[source.labels.unique()]
        k = len(counts)
        quota = min(quota, int(counts.min()) * k)  # never more than the experience holds
        quota = max(k, quota - quota % k)  # class-balanced: a multiple of the experience's classes
        budget = quota
        if self.factorised:
            # a fixed share of the bytes per experience, known up front (its stored parts cannot be cut later),
            # in the method's image-equivalents: float32 images
            allowance = self.max_bytes // self.n_experiences
            budget = allowance // (self.channels * self.image_size ** 2 * 4)
            if budget < 1:
                raise UserError(f"a {self.method} share of {allowance} bytes holds no float32 image-equivalent",
                                fix="give the memory more bytes (memory_per_class)")
        model = getattr(agent, "model", None)
        teacher = self._teacher(model)
        seed = self.seed + len(self.shares)
        cfg = DistillConfig(data=DataConfig(name=source.name), method=self.method, budget=budget, class_conditional=True,
                            steps=self.steps, seed=seed, device=self.device, output=None,
                            checkpoint_every=0, log_every=max(1, self.steps // 5) if self.steps else 10,
                            params=self.params)
        with tempfile.TemporaryDirectory(prefix="ssdd-experts-") as tmp:
            if self.experts is not None and not self.params.get("experts"):
                from distill.methods.mkdt.experts import ExpertsConfig, train_experts
                ecfg = ExpertsConfig(teacher="<in memory>", device=self.device, seed=seed, output=tmp, **self.experts)
                train_experts(ecfg, source=source, teacher=teacher, quiet=True)
                cfg = dataclasses.replace(cfg, params={**self.params, "experts": tmp})
            res = run_distillation(cfg, teacher=teacher, source=source)
        # the buffer keeps plain pixels: a factorised set (Boost) is expanded, views included, and cut to the quota
        s = res.set.materialize()
        classes = torch.tensor([int(c) for c in source.classes])    # the experience's labels, compact -> benchmark
        share = Share(_quantize(s.images.cpu(), self.storage_dtype), classes[s.labels.cpu()],
                      info={"experience": exp.current_experience, "steps": res.steps, "seconds": res.seconds,
                            "loss": res.history[-1]["loss"] if res.history else None})
        if self.factorised:
            share.info["stored_bytes"] = res.set.storage_bytes()   # every materialised image is kept
        else:
            share = self._shrink(share, quota)
        if self.store_targets:
            share.targets = self._features(model, _dequantize(share.images)).to(torch.float16)
        self.shares.append(share)
        self._rebuild()

    # ------------------------------------------------------------------ helpers
    def _experience_images(self, exp) -> ImageSet:
        """The experience's images as a uint8 pixel-space ImageSet (the datasets hold pixel space), its labels made
        compact (0..k-1 over the k classes it shows; ``classes`` holds the benchmark labels), so that a method sees
        only the classes the experience has."""
        x, labels = dataset_tensors(exp.dataset.eval())
        pix = x.clamp(0, 1).mul(255).round().to(torch.uint8)
        classes, local = labels.unique(return_inverse=True)
        return ImageSet(pix, local, [str(int(c)) for c in classes], name=f"experience{exp.current_experience}",
                        split="train", mean=self.mean, std=self.std)

    def _teacher(self, model) -> Teacher:
        if isinstance(self.teacher, Teacher):
            return self.teacher
        if not isinstance(model, Net):
            raise UserError("teacher='model' needs the strategy's model to be a registry model (distill.models.Net)",
                            fix="pass a frozen SSL Teacher to the buffer instead")
        net = copy.deepcopy(model).eval()   # normalises with the benchmark's statistics, like the model
        return Teacher(net, {"arch": model.name, "image_size": self.image_size, "channels": self.channels,
                             "mean": list(self.mean), "std": list(self.std), "source": "continual model"})

    @torch.no_grad()
    def _features(self, model, pixels: torch.Tensor) -> torch.Tensor:
        if not isinstance(model, Net):
            raise UserError("representation replay needs a registry model (distill.models.Net)")
        dev = next(model.parameters()).device
        was = model.training
        model.eval()
        f = model.embed(pixels.to(dev)).float().cpu()
        model.train(was)
        return f
