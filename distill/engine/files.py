"""Atomic file output: write to a temporary file beside the target, fsync, rename.

Nothing half-written is left behind: if the body raises, the temporary file is removed and the
target is untouched.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from ..errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, make_parents: bool = True):
    """Yield a temporary path in the target's folder; rename it over ``path`` on success."""
    path = Path(path)
    if make_parents:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create folder {path.parent}: {e.strerror}") from None
    elif not path.parent.is_dir():
        raise UserError(f"folder {path.parent} does not exist")
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())   # the user's normal mode, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete temporary files that an interrupted atomic write of ``path`` left beside it
    (``.NAME.*.tmp``); returns what was removed. Call it when a run that writes ``path`` starts."""
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for p in path.parent.glob(f".{path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_block(doc: str | os.PathLike, tag: str, markdown: str, provenance: dict | None = None) -> Path:
    """Replace the block between ``<!-- TAG -->`` and ``<!-- /TAG -->`` in the Markdown file ``doc``
    (appended when absent), atomically: docs tables are generated, never retyped. ``provenance`` (from
    :func:`.provenance.provenance`) is appended to the block as a line and a machine-readable comment."""
    if provenance is not None:
        from .provenance import provenance_markdown
        markdown = markdown.rstrip() + "\n\n" + provenance_markdown(provenance)
    doc = Path(doc)
    text = doc.read_text() if doc.exists() else ""
    start, end = f"<!-- {tag} -->", f"<!-- /{tag} -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    return write_text(doc, text)


def _json_default(o):
    try:
        import numpy as np
        import torch
    except ImportError:  # pragma: no cover
        raise TypeError(type(o)) from None
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")
