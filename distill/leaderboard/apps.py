"""Application protocols: every row's set through an application (transfer, data-free KD, continual replay,
NAS proxy) on the leaderboard's sets, seeds, cells and statistics.

A protocol whose name is not an evaluation protocol (``krrst``, ``mkdt``, ``scdd``, ...) names an
application: a subclass of :class:`Application` registered in the ``ssdd.applications`` entry-point group
(pyproject.toml), or, where the package is not installed (a bare checkout run with ``python -m distill``),
found as ``applications.<name>.bench``. ``distill`` never imports ``applications`` by name otherwise.

YAML: the protocol's ``overrides`` are the application's own keys (its ``Config`` dataclass)::

    protocols:
      - name: kd
        overrides: {students: [convnet-32-64-128-bn], iterations: 2000}

Each (application, set, distillation seed, evaluation seed) is one cell, a JSON file written when done. An
application may add reference rows of its own (Gaussian noise for KD, reservoir / herding buffers for replay,
random initialisation for transfer); rows flagged ``real`` are real-image baselines, and each method is compared
with the best of them per column (paired, Holm-corrected over the table, as every leaderboard table).
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from pathlib import Path
from typing import Any, Callable

from ..config import load_config, to_dict
from ..distilled import DistilledSet
from ..errors import ConfigError

GROUP = "ssdd.applications"


@dataclasses.dataclass
class AppContext:
    """What an application sees of the leaderboard: the source, its teacher, the targets, where to cache."""

    cfg: Any                                   # LeaderboardConfig
    spec: Any                                  # SourceSpec
    src: Any                                   # the source ImageSet
    teacher: Any                               # Teacher or None
    targets: dict                              # name -> (train ImageSet, test ImageSet, TargetConfig)
    device: Any
    folder: Path                               # cache folder of this application and source (ground truth, teachers)
    budget: int
    log: Callable[[str], None] = print


class Application:
    """The contract. Subclasses set ``name`` and ``Config`` (a dataclass: the YAML keys, documented there),
    and implement :meth:`cell`; :meth:`prepare` makes what every cell shares (cached in ``ctx.folder``)."""

    name: str = ""
    Config: type = type(None)
    #: metrics where lower is better (forgetting, regret): their gains are baseline - method
    lower_better: tuple[str, ...] = ()
    #: metrics reported but not compared (costs such as a speed-up)
    info_metrics: tuple[str, ...] = ()
    #: False when the application makes its own memory from each row's method instead of using the row's set
    #: (continual replay); the table then leaves out the sets' distill time and storage
    uses_sets: bool = True

    def __init__(self, ctx: AppContext, params: dict):
        self.ctx = ctx
        self.p = load_config(self.Config, None, extra=params)

    def prepare(self) -> str:
        """Make what the cells share; return one sentence for the table header."""
        return ""

    def references(self) -> dict[str, bool]:
        """Reference rows this application adds: label -> whether it is a real-image baseline."""
        return {}

    def key(self) -> dict:
        """What identifies a cell besides its set: the application's config (and what ``prepare`` made)."""
        return to_dict(self.p)

    def row_key(self, row) -> Any:
        """What identifies a row's cells besides :meth:`key`, its label and its set (None: nothing): an application
        that makes its own memory from the row's method (``uses_sets = False``) names what it makes it with."""
        return None

    @classmethod
    def render(cls, rows: list[dict], folder: Path, title: str) -> list[str]:
        """Markdown lines the application adds under its table (pictures written into ``folder``), from its cells'
        rows alone, so that ``--render-only`` draws them from committed results too."""
        return []

    @classmethod
    def columns_for(cls, rows: list[dict]) -> dict[str, dict[str, str]]:
        """Columns this application lends to the other tables of the same source and budget, from its cells' rows:
        {set label: {column title: text}} (the privacy audit's leakage beside KD's or a probe's accuracy)."""
        return {}

    def cell(self, label: str, s: DistilledSet | None, seed: int, set_seed: int | None, row) -> list[dict]:
        """One cell's rows: dicts with ``target``, ``metric`` and ``acc`` (the value), plus anything else.
        ``s`` is None for a reference row (``label`` in :meth:`references`); ``row`` is the leaderboard's
        RowSpec of ``label`` (None for references)."""
        raise NotImplementedError


def _entry_points() -> dict:
    from importlib.metadata import entry_points
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def application_names() -> list[str]:
    names = set(_entry_points())
    spec = importlib.util.find_spec("applications")    # a bare checkout: applications/<name>/bench.py, found by
    if spec is not None and spec.submodule_search_locations:      # name (plugins are loaded, never imported here)
        for root in spec.submodule_search_locations:
            names |= {p.parent.name for p in Path(root).glob("*/bench.py")}
    return sorted(names)


def settings_digest(p) -> str:
    """A digest of an application protocol's settings as resolved (its ``Config`` with the protocol's overrides,
    defaults filled in): written into each of its cells, so that tables rendered from committed results leave out
    cells made under other settings (a campaign spans sittings; its preset must not change under it)."""
    import hashlib
    import json
    cls = get_application(p.name)
    resolved = to_dict(load_config(cls.Config, None, extra=p.overrides))
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:12]


def get_application(name: str) -> type[Application]:
    eps = _entry_points()
    try:
        cls = eps[name].load() if name in eps else importlib.import_module(f"applications.{name}.bench").APPLICATION
    except ModuleNotFoundError as e:
        if e.name and (e.name == "applications" or e.name.startswith(f"applications.{name}")):
            from ..evaluate.config import list_protocols
            raise ConfigError(f"unknown protocol '{name}'",
                              fix=f"evaluation protocols: {', '.join(list_protocols())}; applications: "
                                  f"{', '.join(application_names()) or 'none installed'}") from None
        raise ConfigError(f"the application '{name}' needs a package that is not installed ({e.name})",
                          fix="pip install 'ssdd[all]'") from None
    return cls


def is_application(name: str) -> bool:
    from ..evaluate.config import list_protocols
    return name not in list_protocols()


def check_params(name: str, params: dict) -> None:
    """Refuse unknown keys of an application protocol before anything runs."""
    cls = get_application(name)
    try:
        load_config(cls.Config, None, extra=params)
    except ConfigError as e:
        raise ConfigError(f"protocol `{name}`, overrides: {e.what.replace(' (in command-line options)', '')}",
                          fix=e.fix) from None


__all__ = ["AppContext", "Application", "GROUP", "application_names", "check_params", "get_application",
           "is_application"]
