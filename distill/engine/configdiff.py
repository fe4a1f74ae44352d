"""Comparing two configs: the flattened keys that differ, and the keys a resumed or reused run may change.
Used by stages (resume), provenance (stale docs) and the leaderboard (reusing sets); imports only ``device``."""
from __future__ import annotations

from .device import amp_mode

#: config keys that may differ between a checkpoint and the run that resumes it (where the data lives,
#: how often to log or checkpoint, the device): they do not change what the stage computes
ALWAYS_MUTABLE = ("checkpoint_every", "log_every", "save_every", "tensorboard", "device", "data.root",
                  "data.cache", "data.download")


def flatten(d, prefix: str = "") -> dict:
    """A nested config as one level of dotted keys ({"data": {"name": x}} -> {"data.name": x})."""
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def config_differences(old: dict, new: dict, mutable=()) -> list[tuple[str, object, object]]:
    """(key, old value, new value) for every flattened key that differs, except ``mutable`` keys and
    their sub-keys."""
    a, b = _normalise(flatten(old or {})), _normalise(flatten(new or {}))
    allowed = tuple(ALWAYS_MUTABLE) + tuple(mutable)

    def free(k):
        return any(k == m or k.startswith(m + ".") for m in allowed)
    return [(k, a.get(k, "<absent>"), b.get(k, "<absent>")) for k in sorted(set(a) | set(b))
            if not free(k) and a.get(k, "<absent>") != b.get(k, "<absent>")]


def _normalise(flat: dict) -> dict:
    out = dict(flat)
    for k, v in flat.items():
        if k == "amp" or k.endswith(".amp"):
            try:
                out[k] = amp_mode(v)
            except Exception:
                pass
    return out
