"""Result rows -> mean +- std tables (Markdown, CSV) and JSON, written atomically."""
from __future__ import annotations

import csv
import io
import statistics
from collections import OrderedDict
from pathlib import Path
from typing import Iterable

from ..engine.files import write_json, write_text


def aggregate(rows: Iterable[dict], keys: tuple[str, ...], value: str = "acc") -> list[dict]:
    """Group rows by ``keys``; mean, sample std (n - 1; 0 for one seed), n and the values, in first-seen order."""
    groups: "OrderedDict[tuple, list[float]]" = OrderedDict()
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(float(r[value]))
    out = []
    for k, vals in groups.items():
        out.append({**dict(zip(keys, k)), "mean": statistics.fmean(vals),
                    "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals), "values": vals})
    return out


def fmt(mean: float, std: float, n: int) -> str:
    return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"


def pivot_markdown(agg: list[dict], row_key: str, col_keys: tuple[str, ...], row_title: str | None = None) -> str:
    """A Markdown table: one row per ``row_key`` value, one column per combination of ``col_keys``."""
    rows = list(OrderedDict.fromkeys(a[row_key] for a in agg))
    cols = list(OrderedDict.fromkeys(tuple(a[k] for k in col_keys) for a in agg))
    cell = {(a[row_key], tuple(a[k] for k in col_keys)): a for a in agg}
    head = [row_title or row_key] + [" ".join(str(c) for c in col) for col in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        vals = []
        for c in cols:
            a = cell.get((r, c))
            vals.append(fmt(a["mean"], a["std"], a["n"]) if a else "–")
        lines.append("| " + " | ".join([str(r)] + vals) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: str | Path, agg: list[dict], keys: tuple[str, ...]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([*keys, "mean", "std", "n", "values"])
    for a in agg:
        w.writerow([*(a[k] for k in keys), f"{a['mean']:.4f}", f"{a['std']:.4f}", a["n"],
                    " ".join(f"{v:.4f}" for v in a["values"])])
    return write_text(path, buf.getvalue())


def write_report(folder: str | Path, rows: list[dict], keys: tuple[str, ...], row_key: str,
                 col_keys: tuple[str, ...], title: str, notes: list[str] = (), extra: dict | None = None) -> dict:
    """results.md / results.csv / results.json in ``folder``; returns the paths and the table text."""
    folder = Path(folder)
    agg = aggregate(rows, keys)
    table = pivot_markdown(agg, row_key, col_keys)
    md = f"# {title}\n\n" + "".join(f"{n}\n\n" for n in notes) + table
    paths = {"md": write_text(folder / "results.md", md), "csv": write_csv(folder / "results.csv", agg, keys),
             "json": write_json(folder / "results.json", {"title": title, "notes": list(notes), "rows": rows,
                                                         "aggregate": agg, **(extra or {})})}
    return {"paths": paths, "table": table, "aggregate": agg, "markdown": md}
