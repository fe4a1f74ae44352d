"""One door to every architecture: :func:`create_model`.

Every model is a :class:`Net`: input normalisation (pixel space in) -> ``body`` (features,
N x ``feature_dim``) -> replaceable ``head``. ``embed(x)`` gives the features, ``forward(x)`` the
head's output. Builders register by exact name, or by prefix for families (``convnet-...``,
``timm:<name>``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import UserError


class Net(nn.Module):
    """normalise -> body -> head; the common shape of every registry model."""

    def __init__(self, body: nn.Module, feature_dim: int, out_dim: int = 0, in_chans: int = 3,
                 mean=None, std=None, name: str = "", image_size: int | None = None):
        super().__init__()
        self.name = name
        self.image_size = image_size
        self.in_chans = in_chans
        self.feature_dim = int(feature_dim)
        mean = torch.zeros(in_chans) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        std = torch.ones(in_chans) if std is None else torch.as_tensor(std, dtype=torch.float32)
        if mean.numel() != in_chans or std.numel() != in_chans:
            raise UserError(f"normalisation has {mean.numel()} channel(s) but the model takes {in_chans}")
        self.register_buffer("mean", mean.view(1, -1, 1, 1).clone())
        self.register_buffer("std", std.view(1, -1, 1, 1).clone())
        self.body = body
        self.head: nn.Module = nn.Identity()
        self.out_dim = self.feature_dim
        self.reset_head(out_dim)

    def reset_head(self, out_dim: int, bias: bool = True) -> nn.Module:
        """A fresh linear head to ``out_dim`` outputs (0 -> identity: forward returns features)."""
        if out_dim and out_dim > 0:
            self.head = nn.Linear(self.feature_dim, out_dim, bias=bias).to(self.mean.device)
            self.out_dim = out_dim
        else:
            self.head = nn.Identity()
            self.out_dim = self.feature_dim
        return self.head

    def set_normalization(self, mean, std) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype).view_as(self.mean))
        self.std.copy_(torch.as_tensor(std, dtype=self.std.dtype).view_as(self.std))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise UserError(f"model '{self.name}' takes N x {self.in_chans} x H x W images, got {tuple(x.shape)}")
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features of pixel-space images: N x feature_dim."""
        return self.body(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


Builder = Callable[..., tuple[nn.Module, int]]  # (image_size, in_chans, **kw) -> (body, feature_dim)


@dataclass
class ModelEntry:
    name: str
    build: Builder
    help: str = ""
    listed: bool = True


_EXACT: dict[str, ModelEntry] = {}
_PREFIX: dict[str, ModelEntry] = {}


def register_model(name: str, help: str = "", prefix: bool = False, listed: bool = True):
    """Register ``build(name, image_size, in_chans, **kw) -> (body, feature_dim)``."""
    def deco(fn: Builder) -> Builder:
        (_PREFIX if prefix else _EXACT)[name] = ModelEntry(name, fn, help, listed)
        return fn
    return deco


def list_models() -> list[str]:
    """Registered names (families are listed through their canonical members)."""
    return sorted(k for k, e in _EXACT.items() if e.listed)


def describe_models() -> dict[str, str]:
    out = {k: e.help for k, e in sorted(_EXACT.items()) if e.listed}
    out.update({f"{k}...": e.help for k, e in sorted(_PREFIX.items())})
    return out


def _lookup(name: str) -> ModelEntry:
    key = name.strip().lower() if not name.startswith("timm:") else name.strip()
    if key in _EXACT:
        return _EXACT[key]
    for prefix, entry in sorted(_PREFIX.items(), key=lambda kv: -len(kv[0])):
        if key.startswith(prefix):
            return entry
    raise UserError(f"unknown model '{name}'",
                    fix=f"use one of: {', '.join(list_models())}, a ConvNet spec like convnet-64-128-bn, "
                        "or timm:<timm model name>")


def create_model(name: str, out_dim: int = 0, image_size: int = 32, in_chans: int = 3, mean=None, std=None,
                 **kwargs) -> Net:
    """Build a registry model for ``image_size`` px, ``in_chans`` channels, with a head to ``out_dim``.

    ``out_dim=0`` gives a headless model whose ``forward`` returns ``embed`` features. ``mean``/``std``
    set the input normalisation (identity when omitted).
    """
    if int(image_size) != image_size or image_size < 8:
        raise UserError(f"image size {image_size} is not supported (need an integer >= 8)")
    entry = _lookup(name)
    body, feature_dim = entry.build(name, int(image_size), int(in_chans), **kwargs)
    return Net(body, feature_dim, out_dim, in_chans, mean, std, name=name, image_size=int(image_size))


def check_model(name: str, key: str = "arch", image_size: int = 32) -> None:
    """Raise a ConfigError naming ``key`` unless ``name`` builds (on the meta device: no memory, no time)."""
    from ..errors import ConfigError
    try:
        with torch.device("meta"):
            create_model(name, image_size=image_size)
    except UserError as e:
        raise ConfigError(f"{key}: {e.what}", fix=e.fix) from None
    except Exception as e:  # a builder that cannot parse its name
        raise ConfigError(f"{key}: model '{name}' cannot be built ({type(e).__name__}: {e})",
                          fix="see `ssdd models` for the names") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
