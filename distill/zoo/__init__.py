"""The teacher zoo: self-supervised teachers shipped with the package, loadable by name offline.

Every ``teacher:`` key of a config (distill, experts, squeeze, the leaderboard's sources, the
applications) accepts a zoo name such as ``cifar10-convnet-simclr`` as well as a path:
:meth:`distill.ssl.Teacher.load` passes its argument through :func:`resolve`.

The zoo is an index (``teachers.json`` in this folder) of entries::

    {"cifar10-convnet-simclr": {"file": "cifar10-convnet-simclr.safetensors", "sha256": "...",
                                "bytes": 372000, "source": "cifar10", "backbone": "convnet-32-64-128-bn",
                                "ssl": "simclr", "epochs": 40, "knn_top1": 70.1, "linear_top1": 72.3,
                                "sample_knn": {...}, "command": "ssdd teacher -c ...", "card": "....md"}}

A file lives either in the package (CPU teachers, small) or in the repository beside the package
(``location: repo``; GPU teachers, kept out of the wheel). Each file is checked against its sha256 on
every load: a damaged or substituted file is refused with its name. ``scripts/teacher_zoo.py add``
writes an entry (and its card) from a teacher made by ``ssdd teacher``; nothing here is typed by hand.

This module is in the bottom layer: it knows files and hashes, not models.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ..errors import FileFormatError, UserError

ZOO_DIR = Path(__file__).resolve().parent
INDEX = ZOO_DIR / "teachers.json"
#: where ``location: repo`` files live (the repository's zoo folder; absent from an installed wheel)
REPO_ZOO_DIR = ZOO_DIR.parent.parent / "zoo"
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")

#: columns of ``ssdd teachers`` (key, title)
COLUMNS = (("name", "name"), ("source", "source"), ("backbone", "backbone"), ("ssl", "SSL"), ("epochs", "epochs"),
           ("knn_top1", "k-NN top-1 (test)"), ("linear_top1", "linear top-1 (test)"), ("bytes", "size"),
           ("sha256", "sha256"))


def index(path: Path | None = None) -> dict[str, dict]:
    """The zoo's entries by name (an empty dict when nothing has been added)."""
    path = path or INDEX
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def names() -> list[str]:
    return sorted(index())


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def looks_like_name(spec: str) -> bool:
    """A bare word (no folder, no ``.safetensors``) that is not a file: meant as a zoo name."""
    s = str(spec)
    return bool(NAME.match(s)) and "/" not in s and not s.endswith(".safetensors") and not Path(s).exists()


def file_of(name: str, entry: dict) -> Path:
    folder = REPO_ZOO_DIR if entry.get("location") == "repo" else ZOO_DIR
    return folder / entry["file"]


def entry(name: str) -> dict:
    """The index entry of ``name``, or a UserError listing the valid names."""
    entries = index()
    if name not in entries:
        valid = ", ".join(sorted(entries)) or "(none shipped)"
        raise UserError(f"unknown teacher '{name}': not a file and not a zoo name",
                        fix=f"use a path to a teacher .safetensors, or one of the shipped teachers: {valid} "
                            "(`ssdd teachers` lists them)")
    return entries[name]


def verify(name: str, entry_: dict | None = None) -> Path:
    """The path of zoo teacher ``name`` after checking its size and sha256 against the index."""
    e = entry_ or entry(name)
    path = file_of(name, e)
    if not path.is_file():
        where = "the repository's zoo/ folder (not part of an installed wheel)" if e.get("location") == "repo" \
            else "the installed package"
        raise UserError(f"zoo teacher '{name}': its file {path} is missing", fix=f"it ships in {where}; reinstall ssdd "
                        "from a checkout of the repository")
    digest = sha256(path)
    if digest != e["sha256"] or path.stat().st_size != e["bytes"]:
        raise FileFormatError(f"zoo teacher '{name}': {path} does not match the zoo index (sha256 {digest[:16]}..., "
                              f"expected {e['sha256'][:16]}...; {path.stat().st_size} bytes, expected {e['bytes']})",
                              fix="the file is damaged or was replaced; reinstall ssdd or restore the file from git")
    return path


def resolve(spec: str | Path) -> str | Path:
    """A teacher spec as a path: zoo names become their verified file; anything else is returned as is."""
    if isinstance(spec, str) and looks_like_name(spec):
        return verify(spec)
    return spec


def card(name: str) -> str:
    e = entry(name)
    path = ZOO_DIR / e["card"]
    return path.read_text() if path.exists() else ""


def table(entries: dict[str, dict] | None = None) -> str:
    """The zoo as a Markdown table (what ``ssdd teachers`` prints)."""
    entries = index() if entries is None else entries
    head = "| " + " | ".join(t for _, t in COLUMNS) + " |"
    rows = [head, "|" + "---|" * len(COLUMNS)]
    for name in sorted(entries):
        e = {"name": name, **entries[name]}
        cells = []
        for key, _ in COLUMNS:
            v = e.get(key)
            if key == "bytes":
                v = f"{v / 1e6:.2f} MB"
            elif key == "sha256":
                v = f"`{v[:12]}`"
            elif isinstance(v, float):
                v = f"{v:.2f} %"
            cells.append("–" if v is None else str(v))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
