"""The one base of every file the toolkit writes: distilled sets, teachers, classifiers,
checkpoints (and, later, expert trajectories).

A record is a safetensors file whose ``ssdd`` header is a JSON object with shared keys:

==============  ==================================================================
format          the record kind, e.g. ``ssdd.teacher`` (a registered :class:`Record` subclass)
version         the kind's format version
created         UTC time of writing; code_version: the toolkit's version
arch            model records: the registry architecture (old files: ``backbone``)
image_size      the input resolution; channels: its channel count (old files: ``in_chans``)
mean, std       the normalisation the images / model were made with
source, seed    what it was made from; config: the full config that made it
==============  ==================================================================

:meth:`Record.save` validates and writes atomically; :meth:`Record.load` refuses a file of another
kind with a message that names both kinds, reads files of older releases (renamed keys are mapped
by ``ALIASES``) and validates. :func:`load_record` opens any kind (``ssdd info`` uses it).
"""
from __future__ import annotations

import datetime as _dt
import math
import os
from pathlib import Path
from typing import ClassVar

import torch

from ..errors import FileFormatError, UserError
from .safefile import KIND_NOUNS, load_tensors, read_header, save_tensors

#: kind -> Record subclass
RECORD_KINDS: dict[str, type["Record"]] = {}

#: header keys renamed since the first release: old -> new
ALIASES = {"backbone": "arch", "in_chans": "channels"}

#: keys the writer computes; not part of ``meta``
COMPUTED = ("format", "version")


def code_version() -> str:
    from .._version import __version__
    return __version__


def register_record(cls):
    RECORD_KINDS[cls.KIND] = cls
    KIND_NOUNS[cls.KIND] = cls.NOUN
    return cls


class Record:
    """Tensors + a header. Subclasses set ``KIND``, ``NOUN``, ``VERSION`` and implement
    :meth:`tensors` and :meth:`from_file`; they add checks in :meth:`validate`."""

    KIND: ClassVar[str] = ""
    NOUN: ClassVar[str] = "file"
    VERSION: ClassVar[int] = 1
    MADE_BY: ClassVar[str] = "this toolkit"
    COMPUTED_META: ClassVar[tuple] = ()       # header keys the class recomputes at every save

    meta: dict

    # ------------------------------------------------------------------ contract
    def tensors(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @classmethod
    def from_file(cls, tensors: dict[str, torch.Tensor], meta: dict, where: str, device="cpu") -> "Record":
        raise NotImplementedError

    def validate(self, where: str = "") -> "Record":
        validate_image_spec(self.meta, where or self.NOUN, required=False)
        return self

    # ------------------------------------------------------------------ shared header facts
    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def channels(self) -> int:
        return int(self.meta.get("channels", 3))

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.meta["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.meta["std"])

    # ------------------------------------------------------------------ files
    def header(self) -> dict:
        meta = dict(self.meta)
        meta.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        meta.setdefault("code_version", code_version())
        return {"format": self.KIND, "version": self.VERSION, **meta}

    def save(self, path: str | os.PathLike) -> Path:
        """Validate, then write atomically (temp file, fsync, rename): no partial file on failure."""
        path = Path(path)
        if path.suffix != ".safetensors":
            raise UserError(f"{path}: a {self.NOUN} is written as a .safetensors file",
                            fix=f"use {path.with_suffix('.safetensors').name}")
        self.validate(str(path))
        header = self.header()
        self.meta.update({k: header[k] for k in ("created", "code_version")})
        return save_tensors(path, self.tensors(), header)

    @classmethod
    def read(cls, path: str | os.PathLike, device="cpu") -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, meta) of a file of this kind, version-checked, old key names mapped."""
        tensors, header = load_tensors(path, cls.KIND, device=device)
        version = header.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= cls.VERSION:
            raise FileFormatError(f"{path}: {cls.NOUN} format version {version!r} is not supported "
                                  f"(this toolkit reads versions 1 to {cls.VERSION})", fix="upgrade the toolkit")
        return tensors, upgrade_meta(header)

    @classmethod
    def load(cls, path: str | os.PathLike, device="cpu"):
        """Read, build and validate. Whatever a hand-edited header holds, the outcome is a valid
        object or a :class:`FileFormatError` that names the file (never a bare TypeError & co.)."""
        tensors, meta = cls.read(path, device)
        try:
            obj = cls.from_file(tensors, meta, str(path), device)
            obj.validate(str(path))
        except (UserError, MemoryError):
            raise
        except (TypeError, ValueError, KeyError, IndexError, OverflowError, RecursionError, AttributeError,
                RuntimeError) as e:
            raise FileFormatError(f"{path}: malformed {cls.NOUN} ({type(e).__name__}: {str(e).splitlines()[0][:120]})",
                                  fix="the file is damaged or hand-edited; re-create it") from None
        return obj


def upgrade_meta(header: dict) -> dict:
    """The header without computed keys, with keys of older releases renamed (``ALIASES``)."""
    meta = {k: v for k, v in header.items() if k not in COMPUTED}
    for old, new in ALIASES.items():
        if old in meta:
            meta.setdefault(new, meta.pop(old))
    return meta


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_image_spec(meta: dict, where: str, required: bool = True) -> None:
    """Shared checks of ``image_size``, ``channels``, ``mean``, ``std``; raise FileFormatError."""
    keys = ("image_size", "channels", "mean", "std")
    missing = [k for k in keys if k not in meta]
    if missing:
        if required or len(missing) < len(keys):
            raise FileFormatError(f"{where}: header lacks {', '.join(missing)}")
        return
    c, s = meta["channels"], meta["image_size"]
    if not (_is_int(c) and 0 < c <= 64 and _is_int(s) and 0 < s <= 8192):
        raise FileFormatError(f"{where}: header has channels={c!r}, image_size={s!r}; expected positive integers "
                              "(at most 64 channels, 8192 px)")
    for key in ("mean", "std"):
        v = meta[key]
        if (not isinstance(v, (list, tuple)) or len(v) != c
                or not all(isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) for a in v)):
            raise FileFormatError(f"{where}: header '{key}' must be {c} finite numbers, got {v!r}")
    if any(a <= 0 for a in meta["std"]):
        raise FileFormatError(f"{where}: header 'std' must be positive")


#: the modules that define the toolkit's record kinds (imported on demand by :func:`load_record`)
RECORD_MODULES = ("distill.distilled", "distill.ssl.teacher", "distill.classifier", "distill.methods.mkdt.experts",
                  "distill.engine.checkpoint")


def load_record(path: str | os.PathLike, device="cpu") -> Record:
    """Open a file of any registered kind."""
    import importlib
    for name in RECORD_MODULES:
        importlib.import_module(name)
    header, _ = read_header(path)
    kind = header.get("format")
    cls = RECORD_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise FileFormatError(f"{path}: unknown ssdd file kind {kind!r}",
                              fix=f"this toolkit reads {', '.join(sorted(RECORD_KINDS))}")
    return cls.load(path, device)


__all__ = ["ALIASES", "RECORD_KINDS", "Record", "load_record", "register_record", "upgrade_meta",
           "validate_image_spec"]
