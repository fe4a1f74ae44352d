"""Safetensors files with a JSON header, checked before anything is loaded.

Every file the toolkit writes (distilled sets, teachers, checkpoints) is a safetensors file whose
metadata holds one entry, ``"ssdd"``: a JSON object with at least ``format`` (what kind of file)
and ``version``. Loading never unpickles anything, so a file someone sent cannot run code; files
that are pickles, zip archives (``torch.save``), truncated or of another kind fail with one clear
message.
"""
from __future__ import annotations

import json
import os
import stat
import struct
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import FileFormatError, UserError
from .files import atomic_path

HEADER_KEY = "ssdd"
#: record kind -> what to call it in messages (filled by ``engine.record.register_record``)
KIND_NOUNS: dict[str, str] = {"ssdd.representations": "representation cache"}
_MAX_HEADER = 100 * 1024 * 1024
# opcodes that follow the PROTO opcode at the start of a pickle (FRAME, EMPTY_DICT/LIST, MARK, GLOBAL, ...)
_PICKLE_OPS = {bytes([c]) for c in b"\x95}](cXK\x8cqNU)J"}


def _describe_foreign(head: bytes) -> str | None:
    if len(head) >= 3 and head[0] == 0x80 and 2 <= head[1] <= 5 and head[2:3] in _PICKLE_OPS:
        return "a Python pickle (loading it could run arbitrary code)"
    if head[:4] == b"PK\x03\x04":
        return "a zip archive, probably a torch.save()/pickle checkpoint (loading it could run arbitrary code)"
    if head[:6] == b"\x93NUMPY":
        return "a numpy .npy array"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "a PNG image"
    if head[:2] == b"\xff\xd8":
        return "a JPEG image"
    if head[:5] == b"%PDF-":
        return "a PDF document"
    return None


def read_header(path: str | os.PathLike, kind: str | None = None) -> tuple[dict, dict]:
    """Validate the file's structure; return (ssdd header, raw safetensors tensor index).

    Raises :class:`FileFormatError` for anything that is not a complete safetensors file with an
    ``ssdd`` header of the given ``kind`` (e.g. ``"ssdd.distilled"``).
    """
    path = Path(path)
    what = KIND_NOUNS.get(kind, kind.split(".")[-1].replace("_", " ") + " file") if kind else "file"
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{path} is a folder, expected a {what}")
    if not stat.S_ISREG(st.st_mode):   # a FIFO, socket or device would block or never end
        raise UserError(f"{path} is not a regular file (a pipe, socket or device), expected a {what}")
    size = st.st_size
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            n = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else 0
            looks_safetensors = len(head) == 9 and head[8:9] == b"{" and 2 <= n <= _MAX_HEADER
            if not looks_safetensors:
                foreign = _describe_foreign(head)
                if foreign:
                    raise FileFormatError(f"{path} is {foreign}, not an ssdd {what}; refusing to load it",
                                          fix="ssdd files are safetensors; re-create the file with this toolkit")
                if len(head) < 9:
                    raise FileFormatError(f"{path} is empty or truncated ({size} bytes); not an ssdd {what}")
                raise FileFormatError(f"{path} is not a safetensors file: unrecognised content",
                                      fix=f"expected an ssdd {what} written by this toolkit")
            if 8 + n > size:
                raise FileFormatError(f"{path} is truncated: its header alone needs {8 + n} bytes, the file has {size}",
                                      fix="copy or re-create the file")
            f.seek(8)
            raw = f.read(n)
    except PermissionError:
        raise UserError(f"{path}: permission denied") from None
    index = _json(raw, path, "its header")
    if not isinstance(index, dict):
        raise FileFormatError(f"{path} is not a safetensors file: its header is not a JSON object")
    meta = index.pop("__metadata__", None)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise FileFormatError(f"{path}: corrupt safetensors metadata (must map names to strings)")
    spans = []
    for name, entry in index.items():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        ok = (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) and o >= 0 for o in offsets)
              and offsets[0] <= offsets[1] and isinstance(entry.get("dtype"), str)
              and isinstance(entry.get("shape"), list) and all(_is_int(d) and d >= 0 for d in entry["shape"]))
        if not ok:
            raise FileFormatError(f"{path}: corrupt tensor entry '{str(name)[:60]}' in the header",
                                  fix="the file is damaged; copy or re-create it")
        spans.append(offsets)
    end = max((stop for _, stop in spans), default=0)
    if 8 + n + end != size:
        raise FileFormatError(f"{path} is truncated or corrupt: the header promises {8 + n + end} bytes, "
                              f"the file has {size}", fix="copy or re-create the file")
    if HEADER_KEY not in meta:
        raise FileFormatError(f"{path} is a safetensors file but not an ssdd {what} (no '{HEADER_KEY}' metadata)",
                              fix="only files written by this toolkit carry the metadata it needs")
    header = _json(meta[HEADER_KEY].encode("utf-8", "surrogatepass"), path, f"the '{HEADER_KEY}' metadata")
    if not isinstance(header, dict) or not isinstance(header.get("format"), str):
        raise FileFormatError(f"{path}: the '{HEADER_KEY}' metadata has no 'format' field")
    if kind is not None and header["format"] != kind:
        found = header["format"]
        noun = KIND_NOUNS.get(found, repr(found))
        raise FileFormatError(f"{path} is a {noun} ('{found}'), not a {what} ('{kind}')",
                              fix=f"give a {what}; `ssdd info {path.name}` shows what a file holds")
    return header, index


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _json(raw: bytes, path: Path, what: str):
    """JSON that a hostile file cannot turn into a crash: deep nesting, huge integers, bad bytes."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_constant)
    except (UnicodeDecodeError, ValueError, RecursionError, TypeError):   # ValueError: also 5000-digit ints
        raise FileFormatError(f"{path}: {what} is not valid JSON (or is nested or sized beyond reason)",
                              fix="the file is damaged; copy or re-create it") from None


def _constant(name: str) -> float:
    return float(name)   # NaN / Infinity load as floats; the validators refuse them where numbers must be finite


def load_tensors(path: str | os.PathLike, kind: str | None = None,
                 device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Validated load: (tensors, header)."""
    header, _ = read_header(path, kind)
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as e:  # safetensors raises its own error types
        raise FileFormatError(f"{path}: cannot read tensors ({e})", fix="the file is corrupt; re-create it") from None
    return tensors, header


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], header: dict) -> Path:
    """Atomic write of ``tensors`` with ``header`` (must contain ``format``) as JSON metadata."""
    if "format" not in header:
        raise ValueError("header needs a 'format' field")
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    text = json.dumps(header, default=_jsonable)
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata={HEADER_KEY: text})
    return Path(path)


def _jsonable(o):
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")
