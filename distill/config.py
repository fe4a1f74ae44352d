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
    if overrides:
        layers.append(("overrides", OmegaConf.from_dotlist(list(overrides))))
    cfg = OmegaConf.structured(schema)
    for where, layer in layers:
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as e:
            raise _friendly(e, schema, where) from None
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


def to_dict(cfg) -> dict:
    """A plain dict of a config dataclass (for file headers and reports)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def to_yaml(cfg) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


# --------------------------------------------------------------------------- shared sections


@dataclasses.dataclass
class DataConfig:
    """Where a dataset comes from. ``name`` is a source of :func:`distill.data.load_dataset`."""

    name: str = "sample"
    root: str | None = None
    split: str = "train"
    image_size: int | None = None
    download: bool = False
    cache: bool = True


@dataclasses.dataclass
class ViewsConfig:
    """The two-view SSL augmentation (per-view blur / solarisation probabilities)."""

    crop_min_scale: float = 0.08
    jitter: list[float] = dataclasses.field(default_factory=lambda: [0.4, 0.4, 0.2, 0.1])
    p_jitter: float = 0.8
    p_gray: float = 0.2
    p_blur: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.0])
    p_solarize: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.2])


@dataclasses.dataclass
class TeacherConfig:
    """``ssdd teacher``: self-supervised pre-training of a backbone (Barlow Twins or SimCLR)."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    test_split: str | None = "test"      # k-NN check at the end; null to skip
    backbone: str = "resnet18"
    ssl: str = "barlow_twins"             # barlow_twins | simclr
    projector_hidden: int = 2048
    projector_dim: int = 2048
    projector_layers: int = 0             # 0: 3 for Barlow Twins, 2 for SimCLR
    lambd: float = 5e-3                   # Barlow Twins off-diagonal weight
    temperature: float = 0.5              # SimCLR
    loss_scale: float = 1.0
    views: ViewsConfig = dataclasses.field(default_factory=ViewsConfig)
    epochs: int = 200
    batch_size: int = 256
    optimizer: str = "lars"
    lr: float = 0.3                       # at batch 256; scaled linearly with the batch size
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: int = 10
    knn_k: int = 200
    seed: int = 0
    device: str = "auto"
    amp: bool = True                      # bf16 autocast on CUDA
    output: str = "runs/teacher/teacher.safetensors"
    checkpoint_every: int = 10            # epochs; 0 = only at the end
    tensorboard: bool = False

    def validate(self):
        if self.ssl not in ("barlow_twins", "simclr"):
            raise ConfigError(f"unknown ssl method '{self.ssl}'", fix="use barlow_twins or simclr")
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError("epochs must be >= 1 and batch_size >= 2")
        if not self.output.endswith(".safetensors"):
            raise ConfigError(f"output '{self.output}' must end in .safetensors")


@dataclasses.dataclass
class DistillConfig:
    """``ssdd distill``: distil ``data`` with ``method`` into ``budget`` examples.

    ``params`` holds the method's own settings; they are checked against the method's config
    dataclass (``distill.methods.<method>.Config``), so a mistyped key is an error there too.
    """

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    teacher: str | None = None            # teacher file (ssdd teacher); needed by every method here
    method: str = "krr_st"
    budget: int = 100
    class_conditional: bool = False       # budget split evenly over classes, images labelled
    steps: int | None = None              # None: the method's default
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    output: str | None = "runs/distill/set.safetensors"   # null: keep the set in memory (Python API)
    checkpoint_every: int = 500           # steps; 0 = never
    save_every: int = 0                   # also write the set every k steps; 0 = only at the end
    log_every: int = 10
    tensorboard: bool = False
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def validate(self):
        if self.budget < 1:
            raise ConfigError(f"budget must be >= 1, got {self.budget}")
        if self.output is not None and not self.output.endswith(".safetensors"):
            raise ConfigError(f"output '{self.output}' must end in .safetensors")
        if self.steps is not None and self.steps < 0:
            raise ConfigError("steps must be >= 0")


@dataclasses.dataclass
class PretrainConfig:
    """Pre-training a fresh model on a set: MSE to its targets (CE on labels, KL on soft labels)."""

    epochs: int = 1000
    batch_size: int = 256
    lr: float | None = 0.1                # null: the set's learned lr (MKDT), else 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-3
    schedule: str = "cosine"              # cosine | constant
    loss: str = "auto"                    # auto | mse | ce | kl
    augment: bool = False


@dataclasses.dataclass
class FinetuneConfig:
    """Full fine-tuning on a target's labelled training split (SGD, cosine, crop + flip)."""

    enabled: bool = True
    iterations: int = 10_000
    batch_size: int = 256
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True


@dataclasses.dataclass
class LinearConfig:
    """Linear probe on frozen features: L-BFGS (full batch) or SGD, on label fractions."""

    enabled: bool = True
    solver: str = "lbfgs"                 # lbfgs | sgd
    steps: int = 100                      # L-BFGS iterations, or SGD epochs
    l2: float = 1e-4                      # L2 penalty on the weights (x ||W||^2)
    lr: float = 0.1                       # SGD only
    batch_size: int = 1024                # SGD only
    label_fractions: list[float] = dataclasses.field(default_factory=lambda: [1.0])
    standardize: bool = True              # z-score features with training-split statistics


@dataclasses.dataclass
class TargetConfig:
    """A target task; images are resized to the set's resolution unless image_size is given."""

    name: str = "sample"
    root: str | None = None
    train_split: str = "train"
    test_split: str = "test"
    finetune_iterations: int | None = None  # overrides finetune.iterations (e.g. 5k for fine-grained sets)
    train_per_class: int | None = None    # a seeded class-balanced subset of the training split (CPU budgets)
    test_per_class: int | None = None     # likewise for the test split (a smaller, noisier test: CPU budgets only)


@dataclasses.dataclass
class EvalConfig:
    """``ssdd evaluate``: pre-train on each set, then fine-tune and/or linear-probe on each target."""

    protocol: str = "krrst"
    arch: str = "convnet-128-256-512-bn"
    targets: list[TargetConfig] = dataclasses.field(default_factory=lambda: [TargetConfig()])
    pretrain: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = dataclasses.field(default_factory=FinetuneConfig)
    linear: LinearConfig = dataclasses.field(default_factory=LinearConfig)
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    no_pretrain_baseline: bool = True     # also report a randomly initialised model
    device: str = "auto"
    amp: bool = True
    output: str = "reports/eval"

    def validate(self):
        if not self.targets:
            raise ConfigError("evaluation needs at least one target", fix="targets=[{name: cifar10, root: /data}]")
        if not self.seeds:
            raise ConfigError("evaluation needs at least one seed")
        if self.linear.solver not in ("lbfgs", "sgd"):
            raise ConfigError(f"linear.solver must be lbfgs or sgd, got '{self.linear.solver}'")
        if self.pretrain.loss not in ("auto", "mse", "ce", "kl"):
            raise ConfigError(f"pretrain.loss must be auto, mse, ce or kl, got '{self.pretrain.loss}'")
        if any(not 0 < f <= 1 for f in self.linear.label_fractions):
            raise ConfigError("linear.label_fractions must lie in (0, 1]")


#: evaluation protocols of the papers (DESIGN.md section 5), applied before the YAML file
EVAL_PROTOCOLS: dict[str, dict] = {
    # KRR-ST: 1000 epochs of MSE pre-training, then fine-tune (10k iterations) and linear probe
    "krrst": {},
    # MKDT: 20 epochs at the set's learned lr, wd 1e-4; L-BFGS probe (20 steps, L2 1e-3) on 1 % and 5 % labels
    "mkdt": {"pretrain": {"epochs": 20, "lr": None, "weight_decay": 1e-4},
             "finetune": {"enabled": False},
             "linear": {"solver": "lbfgs", "steps": 20, "l2": 1e-3, "label_fractions": [0.01, 0.05]}},
}


def load_eval_config(path=None, overrides: Sequence[str] = (), protocol: str | None = None,
                     extra: dict | None = None) -> EvalConfig:
    """EvalConfig with the protocol preset under the YAML file and overrides."""
    if protocol is None:
        protocol = next((o.split("=", 1)[1] for o in overrides if o.startswith("protocol=")), None)
    if protocol is None and path is not None:
        protocol = OmegaConf.load(resolve_config_path(path)).get("protocol")
    protocol = protocol or "krrst"
    if protocol not in EVAL_PROTOCOLS:
        raise ConfigError(f"unknown evaluation protocol '{protocol}'", fix=f"use one of {', '.join(EVAL_PROTOCOLS)}")
    extra = {**(extra or {}), "protocol": protocol}
    return load_config(EvalConfig, path, overrides, extra=extra, preset=EVAL_PROTOCOLS[protocol])
