"""The distilled-set file: one ``*.safetensors`` with a versioned JSON header.

A :class:`DistilledSet` holds whichever of these a method produces (DESIGN.md section 4):

===============================  ======================  ==========================================
field                            shape                   written by
===============================  ======================  ==========================================
images                           N x C x H x W float     every image-space method (pixel space)
targets                          N x D float             KRR-ST, MKDT, Boost, subset baselines
labels                           N int64                 SC-DD, class-conditional / labelled sets
soft_labels                      N x K float             SC-DD (teacher logits)
image_bases, image_coeffs        U x C x h x w, N x U    factorised images (Boost)
target_bases, target_coeffs      V x D, N x V            factorised targets (Boost)
lr                               scalar                  MKDT's learned learning rate
===============================  ======================  ==========================================

Images are stored unnormalised in [0, 1] pixel space (values outside are allowed: methods optimise
pixels freely); the header records the mean/std consumers must normalise with. ``materialize()``
returns the plain view every consumer uses; ``storage_bytes()`` / ``image_equivalents()`` count
everything stored, honestly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace

import torch
import torch.nn.functional as F

from .engine.record import Record, register_record, validate_image_spec
from .errors import FileFormatError

FORMAT = "ssdd.distilled"
VERSION = 1
TENSOR_FIELDS = ("images", "targets", "labels", "soft_labels", "image_bases", "image_coeffs", "target_bases",
                 "target_coeffs", "lr")
MAX_CLASSES = 1_000_000


def max_materialize_bytes() -> int:
    """The most bytes a factorised set may expand to (``SSDD_MAX_SET_GB``, default 32 GiB)."""
    try:
        return int(float(os.environ.get("SSDD_MAX_SET_GB", "32")) * 2**30)
    except ValueError:
        return 32 * 2**30


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass
class Materialized:
    """The plain view of a set: what pre-training, replay and KD consume."""

    images: torch.Tensor
    targets: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    soft_labels: torch.Tensor | None = None
    lr: float | None = None

    def __len__(self) -> int:
        return self.images.shape[0]


@register_record
@dataclass
class DistilledSet(Record):
    """A distilled (or baseline) set and its metadata; see the module docstring for the fields."""

    KIND = FORMAT
    NOUN = "distilled set"
    VERSION = VERSION

    images: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    soft_labels: torch.Tensor | None = None
    image_bases: torch.Tensor | None = None
    image_coeffs: torch.Tensor | None = None
    target_bases: torch.Tensor | None = None
    target_coeffs: torch.Tensor | None = None
    lr: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ shape facts

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name in TENSOR_FIELDS and getattr(self, f.name) is not None}

    def __len__(self) -> int:
        ref = self.images if self.images is not None else self.image_coeffs
        return int(ref.shape[0]) if ref is not None and ref.dim() > 0 else 0

    @property
    def method(self) -> str:
        return str(self.meta.get("method", "?"))

    @property
    def num_classes(self) -> int | None:
        k = self.meta.get("num_classes")
        if _is_int(k):
            return int(k)
        if self.soft_labels is not None and self.soft_labels.dim() == 2:
            return int(self.soft_labels.shape[1])
        return None

    def to(self, device) -> "DistilledSet":
        return replace(self, **{k: v.to(device) for k, v in self.tensors().items()})

    # ------------------------------------------------------------------ validation

    def validate(self, where: str = "distilled set") -> "DistilledSet":
        """Check the header and every tensor's shape, dtype and finiteness; raise FileFormatError."""
        def bad(msg, fix=None):
            raise FileFormatError(f"{where}: {msg}", fix=fix)

        if not isinstance(self.meta.get("method"), str):
            bad("header lacks method (a string)")
        validate_image_spec(self.meta, where, required=True)
        c, s = self.meta["channels"], self.meta["image_size"]
        k = self.meta.get("num_classes")
        if k is not None and not (_is_int(k) and 1 <= k <= MAX_CLASSES):
            bad(f"header 'num_classes' must be an integer in [1, {MAX_CLASSES}], got {str(k)[:40]!r}")
        if self.labels is not None and k is None:
            bad("holds labels but its header has no 'num_classes'")
        for name, t in self.tensors().items():
            if not isinstance(t, torch.Tensor):
                bad(f"'{name}' is not a tensor")
            if name != "labels" and not t.is_floating_point():
                bad(f"'{name}' must be floating point, got {t.dtype}")
            if t.is_floating_point() and not torch.isfinite(t).all():
                bad(f"'{name}' contains NaN or inf values")
        for name, want in (("images", 4), ("image_bases", 4), ("image_coeffs", 2), ("targets", 2), ("target_bases", 2),
                           ("target_coeffs", 2), ("labels", 1), ("soft_labels", 2)):
            t = getattr(self, name)
            if t is not None and t.dim() != want:
                bad(f"'{name}' must have {want} dimensions, got shape {tuple(t.shape)}")
        if self.images is None and (self.image_bases is None or self.image_coeffs is None):
            bad("holds no images (neither 'images' nor 'image_bases' + 'image_coeffs')")
        if self.images is not None and (self.image_bases is not None or self.image_coeffs is not None):
            bad("holds both 'images' and image bases; keep one parameterisation")
        n = len(self)
        if self.images is not None:
            if self.images.dim() != 4:
                bad(f"'images' must be N x C x H x W, got shape {tuple(self.images.shape)}")
            if tuple(self.images.shape[1:]) != (c, s, s):
                bad(f"'images' are {tuple(self.images.shape[1:])} but the header says {c} x {s} x {s}")
        else:
            b, k = self.image_bases, self.image_coeffs
            if b.dim() != 4 or b.shape[1] != c:
                bad(f"'image_bases' must be U x {c} x h x w, got {tuple(b.shape)}")
            if k.dim() != 2 or k.shape[1] != b.shape[0]:
                bad(f"'image_coeffs' must be N x {b.shape[0]}, got {tuple(k.shape)}")
        if n == 0:
            bad("holds zero examples")
        if (self.target_bases is None) != (self.target_coeffs is None):
            bad("'target_bases' and 'target_coeffs' come together")
        if self.targets is not None and self.target_bases is not None:
            bad("holds both 'targets' and target bases; keep one parameterisation")
        if self.targets is not None and (self.targets.dim() != 2 or self.targets.shape[0] != n):
            bad(f"'targets' must be {n} x D, got {tuple(self.targets.shape)}")
        if self.target_bases is not None:
            tb, tk = self.target_bases, self.target_coeffs
            if tb.dim() != 2 or tk.dim() != 2 or tk.shape != (n, tb.shape[0]):
                bad(f"'target_bases' {tuple(tb.shape)} / 'target_coeffs' {tuple(tk.shape)} must be V x D / {n} x V")
        if self.labels is not None:
            if self.labels.dtype != torch.int64 or self.labels.shape != (n,):
                bad(f"'labels' must be {n} int64 values, got {self.labels.dtype} {tuple(self.labels.shape)}")
            k = self.num_classes
            if (self.labels < 0).any() or (k is not None and (self.labels >= k).any()):
                bad(f"'labels' out of range [0, {k})")
        if self.soft_labels is not None and (self.soft_labels.shape[0] != n
                                             or (k is not None and self.soft_labels.shape[1] != k)):
            bad(f"'soft_labels' must be {n} x {k or 'K'}, got {tuple(self.soft_labels.shape)}")
        if self.image_bases is not None:
            need = n * c * s * s * 4
            if need > max_materialize_bytes():
                bad(f"expands to {need / 2**30:.1f} GiB of images ({n} x {c} x {s} x {s}), more than the "
                    f"{max_materialize_bytes() / 2**30:.0f} GiB allowed", fix="set SSDD_MAX_SET_GB to allow more")
            if not torch.isfinite(self.image_coeffs @ self.image_bases.flatten(1)).all():
                bad("its factorised images expand to NaN or inf values (coefficients or bases too large)")
        if self.target_bases is not None and not torch.isfinite(self.target_coeffs @ self.target_bases).all():
            bad("its factorised targets expand to NaN or inf values (coefficients or bases too large)")
        if self.lr is not None and self.lr.numel() != 1:
            bad(f"'lr' must be a scalar, got shape {tuple(self.lr.shape)}")
        if self.targets is None and self.target_bases is None and self.labels is None and self.soft_labels is None:
            bad("holds no targets, labels or soft labels: nothing to train on")
        return self

    # ------------------------------------------------------------------ budget

    def storage_bytes(self) -> int:
        """Bytes of every stored tensor (images or bases + coefficients, targets, labels, ...)."""
        return int(sum(t.numel() * t.element_size() for t in self.tensors().values()))

    def image_bytes(self) -> int:
        """Bytes of one image at the stored image precision (float32 for factorised images)."""
        ref = self.images if self.images is not None else self.image_bases
        return self.channels * self.image_size ** 2 * ref.element_size()

    def image_equivalents(self) -> float:
        """Storage in units of one stored image: the honest budget (targets, bases and all count)."""
        return self.storage_bytes() / self.image_bytes()

    # ------------------------------------------------------------------ views

    def materialize(self) -> Materialized:
        """(images, targets, labels, soft_labels, lr) with factorisations expanded."""
        images = self.images
        if images is None:
            b, k = self.image_bases, self.image_coeffs
            low = (k @ b.flatten(1)).view(k.shape[0], *b.shape[1:])
            images = low if low.shape[-1] == self.image_size else F.interpolate(
                low, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        targets = self.targets
        if targets is None and self.target_bases is not None:
            targets = self.target_coeffs @ self.target_bases
        lr = float(self.lr.reshape(-1)[0]) if self.lr is not None else None
        return Materialized(images, targets, self.labels, self.soft_labels, lr)

    # ------------------------------------------------------------------ files

    def header(self) -> dict:
        header = super().header()
        header.update(num_examples=len(self), storage_bytes=self.storage_bytes(),
                      image_equivalents=round(self.image_equivalents(), 4))
        return header

    @classmethod
    def from_file(cls, tensors, meta, where, device="cpu") -> "DistilledSet":
        unknown = sorted(set(tensors) - set(TENSOR_FIELDS))
        if unknown:
            raise FileFormatError(f"{where}: unknown tensor(s) {', '.join(unknown)} in a version-{cls.VERSION} set")
        stored = meta.pop("storage_bytes", None)
        for k in ("num_examples", "image_equivalents"):
            meta.pop(k, None)
        ds = cls(**tensors, meta=meta)
        ds.validate(where)
        if stored is not None and stored != ds.storage_bytes():
            raise FileFormatError(f"{where}: header says {stored} bytes of tensors, the file holds "
                                  f"{ds.storage_bytes()}; the file is inconsistent")
        return ds

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "DistilledSet":
        """Read and validate a set; pickles, foreign, truncated or inconsistent files raise FileFormatError."""
        return super().load(path, device)

    # ------------------------------------------------------------------ text

    def summary(self) -> str:
        lines = [f"method           {self.method}",
                 f"examples         {len(self)}",
                 f"resolution       {self.channels} x {self.image_size} x {self.image_size}"]
        for key in ("source", "teacher", "seed", "created", "code_version"):
            if key in self.meta:
                lines.append(f"{key:<16} {self.meta[key]}")
        lines.append(f"mean / std       {fmt_floats(self.mean)} / {fmt_floats(self.std)}")
        if self.num_classes is not None:
            lines.append(f"classes          {self.num_classes}")
        lines.append("tensors:")
        for k, t in self.tensors().items():
            lines.append(f"  {k:<14} {str(tuple(t.shape)):<20} {str(t.dtype).replace('torch.', ''):<9} "
                         f"{human_bytes(t.numel() * t.element_size())}")
        lines.append(f"storage          {human_bytes(self.storage_bytes())} "
                     f"= {self.image_equivalents():.1f} image-equivalents "
                     f"({human_bytes(self.image_bytes())} per image)")
        return "\n".join(lines)


def fmt_floats(v) -> str:
    return "(" + ", ".join(f"{a:.4f}" for a in v) + ")"


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


def bytes_per_image(channels: int, image_size: int, dtype=torch.float32) -> int:
    return channels * image_size * image_size * torch.tensor([], dtype=dtype).element_size()


__all__ = ["DistilledSet", "Materialized", "FORMAT", "VERSION", "bytes_per_image", "human_bytes"]
