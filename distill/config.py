"""Typed configs: dataclasses, YAML files in configs/, dotted ``key=value`` overrides.

Merging and type checking are OmegaConf's (structured configs); this module turns its errors into
one-line messages that name the key, where it came from and the valid keys::

    cfg = load_config(TeacherConfig, "configs/teacher/sample.yaml", ["epochs=5", "data.root=/data"])

A YAML file may start from another one with ``base: other.yaml`` (a path relative to the file).
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any, Sequence, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from .errors import ConfigError

T = TypeVar("T")

#: configs/ of a source checkout; installed packages fall back to the working directory
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def resolve_config_path(path: str | os.PathLike) -> Path:
    """``path`` as given, else relative to the repository's configs/ folder."""
    p = Path(path)
    if p.exists():
        return p
    for cand in (CONFIG_DIR / p, CONFIG_DIR / f"{p}.yaml", Path("configs") / p):
        if cand.exists():
            return cand
    raise ConfigError(f"config file '{path}' not found", fix=f"give a path, or a name under {CONFIG_DIR}")


def load_yaml_chain(path: str | os.PathLike) -> DictConfig:
    """A YAML config with its ``base:`` chain merged (the file's own keys win)."""
    return _load_yaml(resolve_config_path(path))


def _load_yaml(path: Path, seen: tuple = ()) -> DictConfig:
    if path.resolve() in seen:
        raise ConfigError(f"{path}: 'base' chain loops back onto itself")
    try:
        node = OmegaConf.load(path)
    except Exception as e:  # yaml errors, permissions
        raise ConfigError(f"cannot read config {path}: {e}") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path}: a config file must be a YAML mapping")
    base = node.pop("base", None)
    if base is not None:
        parent = _load_yaml((path.parent / str(base)), seen + (path.resolve(),))
        node = OmegaConf.merge(parent, node)
    return node


def _valid_keys(schema: type, dotted: str) -> list[str]:
    """Field names of the dataclass reached by the dotted path's parent."""
    cls = schema
    for part in dotted.split(".")[:-1]:
        fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        f = fields.get(part)
        if f is None:
            return []
        typ = f.type if not isinstance(f.type, str) else _resolve_type(cls, f.type)
        if not dataclasses.is_dataclass(typ):
            return []
        cls = typ
    return [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []


def _resolve_type(owner: type, name: str):
    import sys
    mod = sys.modules.get(owner.__module__)
    return getattr(mod, name, None)


def load_config(schema: type[T], path: str | os.PathLike | None = None,
                overrides: Sequence[str] = (), extra: dict | None = None, preset: dict | None = None) -> T:
    """Defaults of ``schema`` <- ``preset`` dict <- YAML ``path`` <- ``extra`` dict <- ``key=value`` overrides.

    Raises :class:`ConfigError` for unknown keys (naming the valid ones), wrongly typed values,
    malformed overrides and missing files.
    """
    layers: list[tuple[str, Any]] = []
    if preset:
        layers.append(("preset", OmegaConf.create(preset)))
    if path is not None:
        p = resolve_config_path(path)
        layers.append((str(p), _load_yaml(p)))
    if extra:
        layers.append(("command-line options", OmegaConf.create(extra)))
    bad = [o for o in overrides if "=" not in o or o.startswith("=")]
    if bad:
        raise ConfigError(f"override '{bad[0]}' is not of the form key=value",
                          fix="write e.g. epochs=10 or data.root=/path/to/data")
    # keys with a list index (sources.0.data.root=...) are set in place after the merge
    indexed = [o for o in overrides if any(part.isdigit() for part in o.split("=", 1)[0].split("."))]
    plain = [o for o in overrides if o not in indexed]
    if plain:
        layers.append(("overrides", OmegaConf.from_dotlist(plain)))
    cfg = OmegaConf.structured(schema)
    for where, layer in layers:
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as e:
            raise _friendly(e, schema, where) from None
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config error (in {where}): {e}",
                              fix="a list is set whole (key=[...]) or by index (key.0.field=...)") from None
    for o in indexed:
        key, value = o.split("=", 1)
        try:
            if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
                raise ConfigError(f"override '{o}': there is no '{key}' (the list may be shorter)",
                                  fix="check the index; `--print-config` shows the lists")
            OmegaConf.update(cfg, key, OmegaConf.from_dotlist([f"v={value}"])["v"], merge=True)
        except OmegaConfBaseException as e:
            raise _friendly(e, schema, "overrides") from None
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise _friendly(e, schema, "config") from None
    check = getattr(obj, "validate", None)
    if callable(check):
        check()
    return obj


def _friendly(e: OmegaConfBaseException, schema: type, where: str) -> ConfigError:
    key = str(getattr(e, "full_key", "") or getattr(e, "key", "") or "?")
    if isinstance(e, ConfigKeyError) or "not in" in str(e):
        valid = _valid_keys(schema, key)
        leaf = key.split(".")[-1]
        hint = difflib.get_close_matches(leaf, valid, n=1)
        msg = f"unknown config key '{key}' (in {where})"
        if valid:
            msg += f"; valid keys{' under ' + key.rsplit('.', 1)[0] if '.' in key else ''}: {', '.join(valid)}"
        return ConfigError(msg, fix=f"did you mean '{hint[0]}'?" if hint else None)
    if isinstance(e, ValidationError):
        first = str(getattr(e, "msg", e)).splitlines()[0]
        return ConfigError(f"bad value for config key '{key}' (in {where}): {first}")
    first = str(getattr(e, "msg", e)).splitlines()[0]
    return ConfigError(f"config error at '{key}' (in {where}): {first}")


def resolved(cfg):
    """``cfg`` with its ``${...}`` interpolations (e.g. in default output names) resolved: for configs
    built in Python rather than through :func:`load_config`."""
    try:
        return OmegaConf.to_object(OmegaConf.structured(cfg))
    except OmegaConfBaseException as e:
        raise _friendly(e, type(cfg), "config") from None


def to_dict(cfg) -> dict:
    """A plain dict of a config dataclass (for file headers and reports)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def to_yaml(cfg) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


# --------------------------------------------------------------------------- where the schemas live

#: each schema lives beside the function that uses it; ``distill.config.<Name>`` still finds it
_SCHEMAS = {
    "DataConfig": "distill.data.config",
    "ViewsConfig": "distill.ssl.train", "TeacherConfig": "distill.ssl.train",
    "DistillConfig": "distill.methods.run",
    "PretrainConfig": "distill.evaluate.config", "FinetuneConfig": "distill.evaluate.config",
    "LinearConfig": "distill.evaluate.config", "TargetConfig": "distill.evaluate.config",
    "EvalConfig": "distill.evaluate.config", "load_eval_config": "distill.evaluate.config",
}


def __getattr__(name: str):
    if name in _SCHEMAS:
        import importlib
        return getattr(importlib.import_module(_SCHEMAS[name]), name)
    raise AttributeError(f"module 'distill.config' has no attribute '{name}'")
