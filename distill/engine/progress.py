"""tqdm progress bars with one switch (``SSDD_PROGRESS=0`` turns them off, e.g. in CI logs)."""
from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress_enabled() -> bool:
    from .dist import is_main
    if not is_main():          # one bar per run, from rank 0
        return False
    flag = os.environ.get("SSDD_PROGRESS")
    if flag is not None:
        return flag not in ("0", "false", "no", "off")
    return sys.stderr.isatty()


def progress(iterable=None, total: int | None = None, desc: str | None = None, **kw):
    """A tqdm bar on stderr; disabled when stderr is not a terminal unless SSDD_PROGRESS=1."""
    kw.setdefault("disable", not progress_enabled())
    kw.setdefault("dynamic_ncols", True)
    kw.setdefault("mininterval", 0.5)
    kw.setdefault("leave", False)
    return tqdm(iterable, total=total, desc=desc, **kw)
