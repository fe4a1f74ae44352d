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
view_w1, view_b1, view_w2,       K x H x P, K x H,       Boost's approximation networks: one MLP per
view_b2                          K x P x H, K x P        predefined view (format version 2)
view_codes                       K x N x P               per-view target codes, stored (version 2)
lr                               scalar                  MKDT's learned learning rate
===============================  ======================  ==========================================

Version 2 adds **predefined views** (Boost): the header key ``views`` =
``{"transforms": ["rot90", "rot180", "rot270"], "targets": "network" | "stored", "activation": "relu"}``
declares K deterministic transforms (``data.transforms.fixed_transform``) applied to every stored image.
Each view has its own target. A target *code* is the coefficient vector when the targets are
factorised (P = V) and the target itself otherwise (P = D); view k's code is either stored
(``view_codes[k]``) or predicted from the base code by a two-layer MLP, the shift

    code_k = code + W2_k act(W1_k code + b1_k) + b2_k

and decoded like the base code (``code_k @ target_bases``). The file holds tensors and this
description only, never code. Version-1 files load unchanged.

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

from .data.transforms import FIXED_TRANSFORMS, fixed_transform
from .engine.record import Record, register_record, validate_image_spec
from .errors import FileFormatError

FORMAT = "ssdd.distilled"
VERSION = 2
TENSOR_FIELDS = ("images", "targets", "labels", "soft_labels", "image_bases", "image_coeffs", "target_bases",
                 "target_coeffs", "view_w1", "view_b1", "view_w2", "view_b2", "view_codes", "lr")
VIEW_NET_FIELDS = ("view_w1", "view_b1", "view_w2", "view_b2")
VIEW_TARGETS = ("network", "stored")
#: transforms a view may declare: every fixed transform but the identity (which is the stored image itself)
VIEW_TRANSFORMS = tuple(t for t in FIXED_TRANSFORMS if t != "identity")
#: activations an approximation network may declare (the header names one; no code is stored)
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh, "identity": lambda x: x}
MAX_CLASSES = 1_000_000


def max_materialize_bytes() -> int:
    """The most bytes a factorised set may expand to (``SSDD_MAX_SET_GB``, default 32 GiB)."""
    try:
        return int(float(os.environ.get("SSDD_MAX_SET_GB", "32")) * 2**30)
    except ValueError:
        return 32 * 2**30


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def apply_view_networks(code: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
                        activation: str = "relu") -> torch.Tensor:
    """Every view's target code from the base codes: K x N x P from N x P, with K stacked MLPs
    ``code + W2_k act(W1_k code + b1_k) + b2_k`` (W1: K x H x P, b1: K x H, W2: K x P x H, b2: K x P)."""
    act = ACTIVATIONS[activation]
    hidden = act(torch.einsum("khp,np->knh", w1, code) + b1[:, None, :])
    return code[None] + torch.einsum("kph,knh->knp", w2, hidden) + b2[:, None, :]


def expand_bases(coeffs: torch.Tensor, bases: torch.Tensor, size: int) -> torch.Tensor:
    """Images from factorised form: ``coeffs @ bases`` (N x U times U x C x h x w), upsampled bilinearly to
    ``size`` (bilinear upsampling is linear, so this is the combination of the upsampled bases)."""
    low = (coeffs @ bases.flatten(1)).view(coeffs.shape[0], *bases.shape[1:])
    return low if low.shape[-1] == size else F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def view_images(images: torch.Tensor, transforms) -> torch.Tensor:
    """The images followed by each transform of them: (K + 1) N x C x H x W, view-major."""
    return torch.cat([images] + [fixed_transform(images, t) for t in transforms])


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
    view_w1: torch.Tensor | None = None
    view_b1: torch.Tensor | None = None
    view_w2: torch.Tensor | None = None
    view_b2: torch.Tensor | None = None
    view_codes: torch.Tensor | None = None
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
    def views(self) -> list[str]:
        """The predefined transforms besides the identity (empty for a set without views)."""
        v = self.meta.get("views")
        return list(v["transforms"]) if isinstance(v, dict) else []

    @property
    def num_views(self) -> int:
        """Examples per stored image after materialising: 1 + the predefined views."""
        return 1 + len(self.views)

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
        if self.image_bases is not None or self.views:
            need = n * self.num_views * c * s * s * 4
            if need > max_materialize_bytes():
                bad(f"expands to {need / 2**30:.1f} GiB of images ({n * self.num_views} x {c} x {s} x {s}), more than the "
                    f"{max_materialize_bytes() / 2**30:.0f} GiB allowed", fix="set SSDD_MAX_SET_GB to allow more")
        if self.image_bases is not None:
            if not torch.isfinite(self.image_coeffs @ self.image_bases.flatten(1)).all():
                bad("its factorised images expand to NaN or inf values (coefficients or bases too large)")
        if self.target_bases is not None and not torch.isfinite(self.target_coeffs @ self.target_bases).all():
            bad("its factorised targets expand to NaN or inf values (coefficients or bases too large)")
        self._validate_views(bad, n)
        if self.lr is not None and self.lr.numel() != 1:
            bad(f"'lr' must be a scalar, got shape {tuple(self.lr.shape)}")
        if self.targets is None and self.target_bases is None and self.labels is None and self.soft_labels is None:
            bad("holds no targets, labels or soft labels: nothing to train on")
        return self

    def _validate_views(self, bad, n: int) -> None:
        spec = self.meta.get("views")
        present = [k for k in (*VIEW_NET_FIELDS, "view_codes") if getattr(self, k) is not None]
        if spec is None:
            if present:
                bad(f"holds {', '.join(present)} but its header declares no 'views'")
            return
        if not isinstance(spec, dict) or set(spec) - {"transforms", "targets", "activation"}:
            bad("header 'views' must be {transforms: [...], targets: network|stored, activation: ...}")
        ts = spec.get("transforms")
        if (not isinstance(ts, list) or not ts or len(set(map(str, ts))) != len(ts)
                or not all(isinstance(t, str) and t in VIEW_TRANSFORMS for t in ts)):
            bad(f"header 'views.transforms' must be distinct names from {list(VIEW_TRANSFORMS)}, got {str(ts)[:80]}")
        kind = spec.get("targets")
        if kind not in VIEW_TARGETS:
            bad(f"header 'views.targets' must be one of {list(VIEW_TARGETS)}, got {str(kind)[:40]!r}")
        if self.targets is None and self.target_bases is None:
            bad("declares views but holds no targets to give them")
        k = len(ts)
        p = self.target_coeffs.shape[1] if self.target_coeffs is not None else self.targets.shape[1]
        if kind == "stored":
            if present != ["view_codes"]:
                bad(f"stored view targets are 'view_codes' alone, the file holds {present}")
            if tuple(self.view_codes.shape) != (k, n, p):
                bad(f"'view_codes' must be {k} x {n} x {p}, got {tuple(self.view_codes.shape)}")
        else:
            if present != list(VIEW_NET_FIELDS):
                bad(f"approximation networks are {', '.join(VIEW_NET_FIELDS)}, the file holds {present}")
            if spec.get("activation", "relu") not in ACTIVATIONS:
                bad(f"header 'views.activation' must be one of {sorted(ACTIVATIONS)}")
            h = self.view_w1.shape[1] if self.view_w1.dim() == 3 else -1
            want = {"view_w1": (k, h, p), "view_b1": (k, h), "view_w2": (k, p, h), "view_b2": (k, p)}
            for name, shape in want.items():
                if tuple(getattr(self, name).shape) != shape or h < 1:
                    bad(f"'{name}' must be {' x '.join(map(str, shape))} (K views, H hidden, P code), "
                        f"got {tuple(getattr(self, name).shape)}")
        if not torch.isfinite(self._view_codes()).all():
            bad("its view targets expand to NaN or inf values")

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

    def budget_breakdown(self) -> list[tuple[str, int]]:
        """(part, bytes) of everything stored, each tensor in exactly one part; sums to storage_bytes()."""
        parts = [("images", ("images",)), ("image bases", ("image_bases",)), ("image coefficients", ("image_coeffs",)),
                 ("targets", ("targets",)), ("representation bases", ("target_bases",)),
                 ("representation coefficients", ("target_coeffs",)),
                 ("approximation networks", VIEW_NET_FIELDS), ("view targets (stored)", ("view_codes",)),
                 ("labels", ("labels",)), ("soft labels", ("soft_labels",)), ("learned lr", ("lr",))]
        t = self.tensors()
        out = [(label, sum(t[k].numel() * t[k].element_size() for k in keys if k in t)) for label, keys in parts]
        return [(label, b) for (label, keys), (_, b) in zip(parts, out) if any(k in t for k in keys)]

    # ------------------------------------------------------------------ views

    def materialize(self) -> Materialized:
        """(images, targets, labels, soft_labels, lr) with factorisations expanded."""
        images = self.images
        if images is None:
            images = expand_bases(self.image_coeffs, self.image_bases, self.image_size)
        targets = self._decode(self._base_code())
        labels, soft = self.labels, self.soft_labels
        if self.views:
            images = view_images(images, self.views)
            targets = torch.cat([targets] + [self._decode(c) for c in self._view_codes()])
            k = self.num_views
            labels = labels.repeat(k) if labels is not None else None
            soft = soft.repeat(k, 1) if soft is not None else None
        lr = float(self.lr.reshape(-1)[0]) if self.lr is not None else None
        return Materialized(images, targets, labels, soft, lr)

    def _base_code(self) -> torch.Tensor | None:
        return self.target_coeffs if self.target_coeffs is not None else self.targets

    def _decode(self, code: torch.Tensor | None) -> torch.Tensor | None:
        return code @ self.target_bases if code is not None and self.target_bases is not None else code

    def _view_codes(self) -> torch.Tensor:
        """K x N x P: each view's target code (stored, or from the approximation networks)."""
        if self.view_codes is not None:
            return self.view_codes
        act = self.meta["views"].get("activation", "relu")
        return apply_view_networks(self._base_code(), self.view_w1, self.view_b1, self.view_w2, self.view_b2, act)

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
        if self.views:
            v = self.meta["views"]
            lines.append(f"views            identity + {', '.join(self.views)} ({v['targets']} targets): "
                         f"materialises to {len(self) * self.num_views} examples")
        per = self.image_bytes()
        lines.append(f"budget           (image-equivalents of {human_bytes(per)}: one stored image)")
        for part, b in self.budget_breakdown():
            lines.append(f"  {part:<30} {human_bytes(b):>10} {b / per:10.2f}")
        lines.append(f"  {'total':<30} {human_bytes(self.storage_bytes()):>10} {self.image_equivalents():10.2f}")
        budget = self.meta.get("budget")
        if self.method == "boost" and _is_int(budget):
            lines.append(f"  {'budget N':<30} {'':>10} {budget:10d}")
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
