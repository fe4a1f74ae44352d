"""Where a generated number came from: commit, date, machine, torch, precision, command, config.

Every generated docs block (:func:`distill.engine.files.write_block` with ``provenance=``) ends with a
visible line and a machine-readable comment::

    *Provenance:* commit 1a2b3c4, 2026-12-03, AMD EPYC (2 threads, AVX512-BF16), torch 2.14.1, bf16 autocast
    + channels_last (CPU bf16 units), `ssdd leaderboard -c configs/leaderboard/cpu.yaml ...`
    <!-- provenance {"commit": ..., "config_file": ..., "overrides": [...], "config": {...}} -->

:func:`stale_blocks` re-reads each block's config file with its recorded overrides and names the blocks
whose config no longer matches (``ssdd leaderboard --check-docs``), so a stale table cannot stay silently.
"""
from __future__ import annotations

import json
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Callable

import torch

MARK = re.compile(r"<!-- provenance (\{.*?\}) -->", re.S)
BLOCK = re.compile(r"<!-- ([^/\s][^\s]*) -->(.*?)<!-- /\1 -->", re.S)


def git_commit(cwd: str | Path | None = None) -> str:
    """The short commit of the checkout (``+dirty`` with uncommitted changes to tracked files), or "unknown"."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        # Markdown files are left out: a run that writes its block into the docs would otherwise call the next
        # block of the same sitting dirty; code, configs and result files count
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", ":(top,exclude)*.md"],
                               cwd=cwd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("+dirty" if dirty else "")) if sha else "unknown"


def machine(device: torch.device | str = "cpu") -> str:
    """The GPU's name, or the CPU model with its thread count and whether it has bf16 units."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    from .device import cpu_has_bf16_units
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model} ({torch.get_num_threads()} threads, {'AVX512-BF16/AMX' if cpu_has_bf16_units() else 'no bf16 units'})"


def provenance(command: str, device: torch.device | str = "cpu", amp: str = "auto", config: dict | None = None,
               config_file: str | None = None, overrides: list[str] | tuple = (), kind: str | None = None,
               commit: str | None = None) -> dict:
    """What made a generated block. ``commit``: the checkout's commit when the run started (the code it ran; a
    long run may end after later commits); default: now."""
    from .device import describe_precision
    p = {"commit": commit or git_commit(), "date": time.strftime("%Y-%m-%d"), "machine": machine(device),
         "torch": torch.__version__, "precision": describe_precision(torch.device(device), amp), "command": command}
    if config is not None:
        p.update(kind=kind, config_file=config_file, overrides=list(overrides), config=config)
    return p


def provenance_markdown(p: dict) -> str:
    line = (f"*Provenance:* commit {p['commit']}, {p['date']}, {p['machine']}, torch {p['torch']}, "
            f"{p['precision']}, `{p['command']}`")
    return line + "\n<!-- provenance " + json.dumps(p, sort_keys=True, separators=(",", ":")) + " -->"


def blocks(doc: str | Path, with_text: bool = False) -> dict:
    """Each generated block of a Markdown file by tag: its recorded provenance (None when it has none), or
    with ``with_text`` (provenance, the block's text)."""
    text = Path(doc).read_text()
    out = {}
    for m in BLOCK.finditer(text):
        pm = MARK.search(m.group(2))
        prov = json.loads(pm.group(1)) if pm else None
        out[m.group(1)] = (prov, m.group(2)) if with_text else prov
    return out


def stale_blocks(doc: str | Path, loaders: dict[str, Callable[[str | None, list[str]], dict]]) -> list[str]:
    """Blocks of ``doc`` whose recorded config differs from what its config file gives today (with the
    recorded overrides), one line each naming the block and the keys that changed. ``loaders`` maps a
    provenance ``kind`` to a function (config_file, overrides) -> resolved config dict, or (that dict, the
    schema's defaults): a key absent from the record and at its default today is not a change."""
    from .configdiff import config_differences, flatten
    problems = []
    for tag, p in blocks(doc).items():
        if not p or p.get("kind") not in loaders:
            continue
        try:
            now = loaders[p["kind"]](p.get("config_file"), p.get("overrides", []))
        except Exception as e:  # noqa: BLE001  (a config file that no longer loads is stale too)
            problems.append(f"{tag}: its config {p.get('config_file')} no longer loads ({str(e).splitlines()[0]})")
            continue
        defaults = {}
        if isinstance(now, tuple):      # (resolved config, the schema's defaults)
            now, defaults = now
        now = _drop_new_item_defaults(p["config"], now, defaults)
        flat_defaults = flatten({k: v for k, v in defaults.items() if not k.endswith("[]")})
        # a key added to the schema after the block was made, at its default, changes nothing the block shows
        diff = [d for d in config_differences(p["config"], now)
                if not (d[1] == "<absent>" and d[0] in flat_defaults and flat_defaults[d[0]] == d[2])]
        if diff:
            keys = ", ".join(f"{k} ({old!r} -> {new!r})" for k, old, new in diff[:5])
            problems.append(f"{tag}: made with another config than {p.get('config_file')} gives now: {keys}"
                            + (f" and {len(diff) - 5} more" if len(diff) > 5 else ""))
    return problems


def _drop_new_item_defaults(old: dict, new: dict, defaults: dict) -> dict:
    """``new`` without the keys of list items (``defaults["FIELD[]"]``: an item's defaults) that the recorded
    item lacks and that are at their default today: a key added to a list item's schema changes nothing."""
    out = dict(new)
    for k, item_default in defaults.items():
        field = k[:-2]
        if not k.endswith("[]") or not isinstance(out.get(field), list) or not isinstance(old.get(field), list):
            continue
        items = []
        for i, n in enumerate(out[field]):
            o = old[field][i] if i < len(old[field]) else None
            if isinstance(n, dict) and isinstance(o, dict):
                n = {x: v for x, v in n.items() if x in o or x not in item_default or item_default[x] != v}
            items.append(n)
        out[field] = items
    return out
