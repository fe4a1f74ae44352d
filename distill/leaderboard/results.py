"""Results that outlive a machine: every cell's small result file, the sets' and sources' facts a table
prints, and the tables rendered from those files alone.

Layout of a results folder (``results:`` in the config, committed as ``docs/results/<name>``; default the
run's output folder)::

    cells/<protocol>/<source>-n<budget>-<row>[-d<set seed>]-s<seed>-<key>.json   rows, seconds, stamp, ekey
    sets/<source>-n<budget>/<row>[-d<set seed>].json                              distill seconds, storage, stamp
    info/<source>-n<budget>.json                                                   teacher, experts, tests

A stamp is (machine, precision, torch): the CPU model with its bf16 units or the GPU, and the precision
policy. All cells of one set seed must share machine and precision (``check_unit_machines``): a set seed is
the unit of every paired test, and a unit whose cells came from an AVX2 CPU in fp32 and an AVX512-BF16 CPU
in bf16 would pair numbers that differ for reasons other than the method. Reference rows (full source, no
pre-training) pair with every unit and are stamped too; the table states the mix.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

from ..engine.files import write_json
from ..errors import UserError
from .config import LeaderboardConfig, _slug
from .keys import expected_cells

CELL_NAME = re.compile(r"^(?P<group>.+?-n\d+)-(?P<row>.+?)(?:-d(?P<dseed>\d+))?-s(?P<seed>\d+)-(?P<key>[0-9a-f]{12})\.json$")


def results_root(cfg: LeaderboardConfig) -> Path:
    return Path(cfg.results) if cfg.results else Path(cfg.output)


def stamp(device, amp: str) -> dict:
    """What a number depends on besides the code and the seed: the machine and the precision it ran in."""
    import torch

    from ..engine.device import describe_precision
    from ..engine.provenance import machine
    return {"machine": machine(device), "precision": describe_precision(torch.device(device), amp),
            "torch": torch.__version__}


def _same(a: dict, b: dict) -> bool:
    return (a.get("machine"), a.get("precision")) == (b.get("machine"), b.get("precision"))


def describe_stamp(s: dict) -> str:
    return f"{s.get('machine', '?')}, {s.get('precision', '?')}"


def write_cell(file: Path, rows: list[dict], seconds: float, set_path: str | None, st: dict, ekey: str,
               commit: str, settings: str | None = None) -> list[Path]:
    """Write a cell's result file and remove the files it supersedes (the same cell, i.e. protocol, row, set seed
    and seed, under another key: a remade set, a changed evaluation); returns those removed. ``settings``: an
    application's :func:`~distill.leaderboard.apps.settings_digest`."""
    write_json(file, {"rows": rows, "seconds": round(seconds, 1), "set": Path(set_path).name if set_path else None,
                      "stamp": st, "ekey": ekey, "commit": commit, "date": time.strftime("%Y-%m-%d"),
                      "written": round(time.time(), 3), **({"settings": settings} if settings else {})})
    prefix = file.name[: -len("0123456789ab.json")]
    gone = []
    for old in file.parent.glob(prefix + "*.json"):
        if old != file and CELL_NAME.match(old.name) and old.name[: len(prefix)] == prefix \
                and len(old.name) == len(file.name):
            old.unlink()
            gone.append(old)
    return gone


def cell_files(root: Path, protocol: str | None = None) -> list[Path]:
    base = root / "cells"
    if protocol is not None:
        base = base / protocol
    return sorted(base.rglob("*.json")) if base.exists() else []


def unit_stamps(root: Path, group: str, dseed: int, protocols: set[str] | None = None) -> dict[Path, dict]:
    """The stamps of every cell file of set seed ``dseed`` of ``group`` (any protocol, or only ``protocols``)."""
    out = {}
    files = cell_files(root) if protocols is None else [f for p in sorted(protocols) for f in cell_files(root, p)]
    for f in files:
        m = CELL_NAME.match(f.name)
        if m and m["group"] == group and m["dseed"] is not None and int(m["dseed"]) == dseed:
            st = json.loads(f.read_text()).get("stamp")
            if st:
                out[f] = st
    return out


def check_unit_machine(root: Path, group: str, dseed: int, here: dict, protocols: set[str] | None = None) -> None:
    """Refuse to add a cell to set seed ``dseed`` when that set seed already holds cells from another machine or
    precision (the message names one and the fix). ``protocols``: only their cells count (the application presets
    share a results folder, and each application's table pairs only its own cells)."""
    for f, st in unit_stamps(root, group, dseed, protocols).items():
        if not _same(st, here):
            raise UserError(f"set seed {dseed} of {group} already has results from another machine: {f} was made on "
                            f"{describe_stamp(st)}, this run is on {describe_stamp(here)}; the cells of one set seed "
                            "must come from one machine and precision",
                            fix=f"finish set seed {dseed} on a machine like the one that started it, or remove its "
                                f"result files (git rm {f.parent.parent}/*/{group}-*-d{dseed}-*.json) to redo it here")


def image_change(s, src) -> float | None:
    """How far a set's images moved from the source images its method started from (``init_indices``): the
    root-mean-square per-pixel change in [0, 1] pixel space over the stored images (the identity block of a set
    with views). None for a set that records no start (selections, SC-DD's noise start)."""
    idx = s.meta.get("init_indices")
    if not idx:
        return None
    import torch
    x = s.images if s.images is not None else s.materialize().images[: len(idx)]
    start = src.float(torch.as_tensor(idx, device=src.images.device)).to(x.device)
    return float((x.float() - start.float()).pow(2).mean().sqrt())


def write_set_info(root: Path, group: str, label: str, dseed: int | None, s, st: dict, src=None) -> None:
    name = _slug(label) + ("" if dseed is None else f"-d{dseed}")
    moved = image_change(s, src) if src is not None else None
    write_json(root / "sets" / group / f"{name}.json",
               {"label": label, "set_seed": dseed, "seconds": s.meta.get("distill_seconds"),
                "steps": s.meta.get("steps"), "image_equivalents": round(s.image_equivalents(), 1),
                "examples": len(s), "moved": None if moved is None else round(moved, 5), "stamp": st})


def write_group_info(root: Path, group: str, info: dict) -> None:
    """The source group's facts; what each application protocol said of itself is merged with the file's (the
    presets of one application each share a results folder: a KD sitting keeps the NAS sitting's header, a continual
    sitting, which makes no experts, the experts' line)."""
    keep = {k: v for k, v in info.items() if k not in ("cell_seconds", "rows")}
    file = root / "info" / f"{group}.json"
    if file.exists():
        old = json.loads(file.read_text())
        keep["apps"] = {**old.get("apps", {}), **keep.get("apps", {})}
        keep["own_memory"] = list(dict.fromkeys(old.get("own_memory", []) + keep.get("own_memory", [])))
        # a sitting that made no experts or classifier (continual replay alone makes none) keeps the file's line
        for k in ("experts", "classifier"):
            keep[k] = keep.get(k) or old.get(k, "")
        keep = {k: v for k, v in keep.items() if v or k not in ("apps", "own_memory")}
    write_json(file, keep)


def _row_info(files: list[Path]) -> dict:
    """Per row label: distillation seconds and storage, the mean over its set seeds (as during the run)."""
    by: dict[str, list[dict]] = {}
    for f in files:
        d = json.loads(f.read_text())
        by.setdefault(d["label"], []).append(d)
    out = {}
    for label, ds in by.items():
        secs = [d["seconds"] for d in ds if d.get("seconds") is not None]
        moved = [d["moved"] for d in ds if d.get("moved") is not None]
        out[label] = {"seconds": sum(secs) / len(secs) if secs else None,
                      "image_equivalents": ds[0].get("image_equivalents"), "examples": ds[0].get("examples"),
                      "sets": len(ds), "steps": ds[0].get("steps"),
                      "moved": sum(moved) / len(moved) if moved else None}
    return out


def load_results(cfg: LeaderboardConfig, wanted: dict[str, set] | None = None) -> tuple[list[dict], dict, list[str]]:
    """(cell rows, per-group info, notes) from the results folder alone: the cells of the config's protocols,
    rows and seeds (``wanted``: protocol -> the cell keys the run used; None: every file that fits the config,
    the newest where two files hold the same cell). Refuses a set seed whose cells came from two machines."""
    from .apps import is_application, settings_digest
    root = results_root(cfg)
    rows: list[dict] = []
    info: dict[str, dict] = {}
    notes: list[str] = []
    exp = expected_cells(cfg)            # (protocol, group, row slug, dseed, seed) -> accepted ekeys (None: any)
    chosen: dict[tuple, tuple[Path, dict]] = {}
    for p in cfg.protocols:
        # an application's cells hold the digest of the settings they were made under (those written before it
        # was stored hold none and are read): cells of other settings are left out, and said
        settings = settings_digest(p) if is_application(p.name) and wanted is None else None
        other = 0
        for f in cell_files(root, p.title):
            m = CELL_NAME.match(f.name)
            if not m:
                continue
            ident = (p.title, m["group"], m["row"], None if m["dseed"] is None else int(m["dseed"]), int(m["seed"]))
            if m["row"].startswith("full-source"):     # the label holds the source's size: see expected_cells
                ident = (*ident[:2], "*full", *ident[3:])
            if is_application(p.name) and ident[4] not in cfg.seeds:
                continue     # an application's cell of an evaluation seed the preset does not ask for
            if wanted is not None:
                if m["key"] not in wanted.get(p.title, ()):
                    continue
            elif not is_application(p.name) and ident not in exp:
                continue
            d = json.loads(f.read_text())
            if settings and d.get("settings") not in (None, settings):
                other += 1
                continue
            keys = exp.get(ident)
            if wanted is None and keys is not None and d.get("ekey") not in keys:
                continue     # made under another evaluation config
            old = chosen.get(ident)
            if ident[2] == "*full":       # two full-source rows (equal compute, converged) share the ident
                ident = (*ident, f.name.rsplit("-s", 1)[0])
                old = chosen.get(ident)
            if old is None or (d.get("written") or 0, f.name) > (old[1].get("written") or 0, old[0].name):
                if old is not None:
                    notes.append(f"{old[0].name} and {f.name} hold the same cell; the newer is used")
                chosen[ident] = (f, d)
        if other:
            notes.append(f"{other} cell file(s) of `{p.title}` were made under other settings of the application "
                         f"than the preset's (digest {settings}) and are left out")
    by_unit: dict[tuple, dict[Path, dict]] = {}
    from ..evaluate import NO_PRETRAIN
    from .config import EQUAL_BYTES, row_label
    order = [_slug(row_label(r)) for r in cfg.all_rows()] + [_slug(b + EQUAL_BYTES) for b in cfg.baselines] + \
        ["*full", _slug(NO_PRETRAIN)]
    ptitles = [p.title for p in cfg.protocols]

    def sort_key(kv):
        i = kv[0]
        return (ptitles.index(i[0]), i[1], order.index(i[2]) if i[2] in order else len(order), i[2],
                -1 if i[3] is None else i[3], i[4], str(i[5:]))
    for ident, (f, d) in sorted(chosen.items(), key=sort_key):
        rows.extend(d["rows"])
        if d.get("stamp"):        # references (no set seed) are listed under the unit "references"
            by_unit.setdefault((ident[1], "references" if ident[3] is None else ident[3]), {})[f] = d["stamp"]
        g = info.setdefault(ident[1], {"cell_seconds": [], "commits": {}, "cell_seconds_by": {}})
        g["cell_seconds"].append(d.get("seconds") or 0.0)
        if d["rows"]:                 # per protocol and row, what `--plan` prices a set seed with
            g["cell_seconds_by"].setdefault(f"{ident[0]}|{d['rows'][0]['set']}", []).append(d.get("seconds") or 0.0)
        if d.get("commit"):
            g["commits"][d["commit"]] = g["commits"].get(d["commit"], 0) + 1
    for (group, dseed), stamps in by_unit.items():
        kinds = {(s["machine"], s["precision"]) for s in stamps.values()}
        if len(kinds) > 1 and dseed != "references":
            a, b = list(stamps.items())[:1][0], next((f, s) for f, s in stamps.items()
                                                      if not _same(s, list(stamps.values())[0]))
            raise UserError(f"set seed {dseed} of {group} mixes machines: {a[0]} ({describe_stamp(a[1])}) and "
                            f"{b[0]} ({describe_stamp(b[1])})",
                            fix=f"remove the cells of set seed {dseed} from one of them and rerun it on the other")
    out: dict[str, dict] = {}
    for group, g in info.items():
        gfile = root / "info" / f"{group}.json"
        base = json.loads(gfile.read_text()) if gfile.exists() else {}
        name = f"{base.get('source', group)} N={base.get('budget', '?')}"
        labels = {r["set"] for r in rows if f"{_slug(r['source'])}-n{r['budget']}" == group}
        files = [f for f in sorted((root / "sets" / group).glob("*.json")) if _wanted_set(cfg, json.loads(f.read_text()))]
        out[name] = {**base, "cell_seconds": g["cell_seconds"], "commits": g["commits"],
                     "cell_seconds_by": g["cell_seconds_by"],
                     "rows": {k: v for k, v in _row_info(files).items() if k in labels},
                     "stamps": _stamp_summary({k: v for k, v in by_unit.items() if k[0] == group})}
    return rows, out, notes


def _wanted_set(cfg: LeaderboardConfig, d: dict) -> bool:
    """A set's info file belongs to this config: a reference, or a row's set at one of that row's set seeds."""
    return d.get("set_seed") is None or d["set_seed"] in cfg.row_seeds(d.get("label", ""))


def _stamp_summary(by_unit: dict[tuple, dict[Path, dict]]) -> list[tuple[list, str]]:
    """[(set seeds, "machine, precision")] for the table's statement of where its units ran; the reference rows
    (no set seed) as the unit "references", each of their stamps listed."""
    kinds: dict[str, list] = {}
    for (_, dseed), stamps in sorted(by_unit.items(), key=lambda kv: (isinstance(kv[0][1], str), str(kv[0][1]).zfill(6))):
        for st in ({describe_stamp(s) for s in stamps.values()} if dseed == "references"
                   else {describe_stamp(next(iter(stamps.values())))}):
            kinds.setdefault(st, []).append(dseed)
    return [(seeds, kind) for kind, seeds in kinds.items()]


def result_index(cfg: LeaderboardConfig, root: Path) -> dict[tuple, tuple[Path, dict]]:
    """(cell identity, ekey) -> (file, contents) of every result file of the config's evaluation protocols (the
    newest written where two files share both)."""
    from .apps import is_application
    out: dict[tuple, tuple[Path, dict]] = {}
    for p in cfg.protocols:
        if is_application(p.name):
            continue
        for f in cell_files(root, p.title):
            m = CELL_NAME.match(f.name)
            if not m:
                continue
            row = "*full" if m["row"].startswith("full-source") else m["row"]
            ident = (p.title, m["group"], row, None if m["dseed"] is None else int(m["dseed"]), int(m["seed"]))
            d = json.loads(f.read_text())
            k = (ident, d.get("ekey"))
            if k not in out or (d.get("written") or 0) > (out[k][1].get("written") or 0):
                out[k] = (f, d)
    return out


def finished_unit(cfg: LeaderboardConfig, index: dict, expected: dict, group: str,
                  dseed: int | None) -> list[tuple[Path, dict]] | None:
    """Every cell the config asks of set seed ``dseed`` of ``group`` (None: the reference rows), when the results
    folder holds them all under the config's evaluation keys; else None. A campaign continued on another machine
    then neither remakes that set seed's sets nor evaluates its cells again: its committed results stand."""
    need = [(ident, keys) for ident, keys in expected.items() if ident[1] == group and ident[3] == dseed]
    if not need:
        return None
    found = []
    for ident, keys in need:
        for k in sorted(keys) if keys else [None]:
            hit = index.get((ident, k)) if k is not None else next((v for (i, _), v in index.items() if i == ident), None)
            if hit is None:
                return None
            found.append(hit)
    return found
