"""Metric logs: one JSON object per line (JSONL), optionally mirrored to TensorBoard."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path


class MetricLogger:
    """``log(step, loss=..., lr=...)`` appends ``{"step":..., "time":..., ...}`` to a JSONL file.

    ``path=None`` keeps metrics in memory only (``.history``). ``tensorboard`` names a log folder
    (needs the ``tensorboard`` package). Values may be floats, ints or 0-d tensors.
    """

    def __init__(self, path: str | Path | None = None, tensorboard: str | Path | None = None,
                 append: bool = False):
        self.path = Path(path) if path else None
        self.history: list[dict] = []
        self._t0 = time.time()
        self._fh = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if append:   # a resumed run continues the time axis where the log stopped
                self._t0 -= self._last_time(self.path)
            self._fh = open(self.path, "a" if append else "w", buffering=1)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:  # pragma: no cover - depends on the install
                from ..errors import UserError
                raise UserError("TensorBoard logging needs the 'tensorboard' package",
                                fix="pip install 'ssdd[tensorboard]' or drop the tensorboard option") from e
            self._tb = SummaryWriter(str(tensorboard))

    @staticmethod
    def _last_time(path: Path) -> float:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            return 0.0
        for line in reversed(lines):
            try:
                return float(json.loads(line).get("time", 0.0))
            except (ValueError, AttributeError, TypeError):
                continue
        return 0.0

    def log(self, step: int, **metrics) -> dict:
        row = {"step": int(step), "time": round(time.time() - self._t0, 3)}
        for k, v in metrics.items():
            if hasattr(v, "item"):
                v = v.item()
            row[k] = v
        self.history.append(row)
        if self._fh is not None:
            self._fh.write(json.dumps(row, allow_nan=True) + "\n")
        if self._tb is not None:
            for k, v in row.items():
                if k not in ("step", "time") and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)
        return row

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def emit_row(row: dict, path: str | Path | None = None) -> dict:
    """Print ``row`` as one JSON line and, with ``path``, append it to that JSONL file (the benchmark
    scripts' output)."""
    line = json.dumps(row)
    print(line)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
    return row
