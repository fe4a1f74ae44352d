"""The dataset-distillation ConvNet family (Gidaris & Komodakis 2018; Zhao et al. 2021).

Blocks of conv3x3 -> norm -> activation -> 2x2 pool; the features are the flattened output of
the last block. Names: ``convnet`` (3 x 128, instance norm, ReLU, average pooling: the DD default),
or ``convnet-<w1>-<w2>-...-<norm>-<act>-<pool>`` with any of: widths (one per block) or ``d<depth>``
and ``w<width>``; norm ``bn|in|ln|gn|none``; act ``relu|gelu|lrelu|silu|tanh|sigmoid``;
pool ``avg|max|none``. E.g. ``convnet-128-256-512-bn`` (KRR-ST's CIFAR pool),
``convnet-64-128-256-512-bn`` (its 64 px pool), ``convnet-d4`` (4 x 128, instance norm).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..errors import UserError
from .registry import register_model

NORMS = ("bn", "in", "ln", "gn", "none")
ACTS = {"relu": nn.ReLU, "gelu": nn.GELU, "lrelu": lambda: nn.LeakyReLU(0.01), "silu": nn.SiLU,
        "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
POOLS = ("avg", "max", "none")


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "in":  # instance norm with affine parameters, as GroupNorm(C, C) in the DD code bases
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "ln":
        return nn.GroupNorm(1, channels, affine=True)
    if kind == "gn":
        return nn.GroupNorm(min(32, channels), channels, affine=True) if channels % min(32, channels) == 0 \
            else nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise UserError(f"unknown norm '{kind}'", fix=f"use one of {NORMS}")


def make_act(kind: str) -> nn.Module:
    if kind not in ACTS:
        raise UserError(f"unknown activation '{kind}'", fix=f"use one of {tuple(ACTS)}")
    return ACTS[kind]()


def make_pool(kind: str) -> nn.Module:
    if kind == "avg":
        return nn.AvgPool2d(2, 2)
    if kind == "max":
        return nn.MaxPool2d(2, 2)
    if kind == "none":
        return nn.Identity()
    raise UserError(f"unknown pooling '{kind}'", fix=f"use one of {POOLS}")


@dataclass
class ConvNetSpec:
    widths: list[int] = field(default_factory=lambda: [128, 128, 128])
    norm: str = "in"
    act: str = "relu"
    pool: str = "avg"

    @classmethod
    def parse(cls, name: str) -> "ConvNetSpec":
        parts = name.lower().split("-")
        if parts[0] != "convnet":
            raise UserError(f"'{name}' is not a ConvNet spec")
        widths: list[int] = []
        depth, width = 3, 128
        spec = cls()
        for tok in parts[1:]:
            if tok.isdigit():
                widths.append(int(tok))
            elif tok.startswith("d") and tok[1:].isdigit():
                depth = int(tok[1:])
            elif tok.startswith("w") and tok[1:].isdigit():
                width = int(tok[1:])
            elif tok in NORMS or tok in ("nonorm",):
                spec.norm = "none" if tok == "nonorm" else tok
            elif tok in ACTS:
                spec.act = tok
            elif tok in ("avgpool", "maxpool", "nopool") or tok in ("avg", "max"):
                spec.pool = {"avgpool": "avg", "maxpool": "max", "nopool": "none"}.get(tok, tok)
            else:
                raise UserError(f"cannot read '{tok}' in ConvNet spec '{name}'",
                                fix="write e.g. convnet-128-256-512-bn, convnet-d4-w64-in-relu-avg")
        spec.widths = widths or [width] * depth
        if not spec.widths or any(w < 1 for w in spec.widths):
            raise UserError(f"ConvNet spec '{name}' needs at least one positive width")
        return spec


class ConvNetBody(nn.Module):
    def __init__(self, spec: ConvNetSpec, image_size: int, in_chans: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        c, s = in_chans, image_size
        for w in spec.widths:
            layers += [nn.Conv2d(c, w, 3, padding=1), make_norm(spec.norm, w), make_act(spec.act), make_pool(spec.pool)]
            c = w
            if spec.pool != "none":
                if s < 2:
                    raise UserError(f"a ConvNet with {len(spec.widths)} pooling blocks needs images of at least "
                                    f"{2 ** len(spec.widths)} px, got {image_size}")
                s //= 2
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.feature_dim = c * s * s

    def forward(self, x):
        return self.flatten(self.features(x))


@register_model("convnet", prefix=True, help="DD ConvNet family, e.g. convnet-128-256-512-bn")
def build_convnet(name, image_size, in_chans, **kw):
    spec = ConvNetSpec.parse(name)
    body = ConvNetBody(spec, image_size, in_chans)
    return body, body.feature_dim


# canonical members, so they are listed and tested
for _n, _h in [("convnet", "3 x 128, instance norm (the DD default)"),
               ("convnet-bn", "3 x 128, batch norm"),
               ("convnet-d4", "4 x 128, instance norm (64 px)"),
               ("convnet-128-256-512-bn", "KRR-ST pool / eval net at 32 px"),
               ("convnet-64-128-256-512-bn", "KRR-ST pool at 64 px")]:
    register_model(_n, help=_h)(build_convnet)
