"""NNI 3.0 model spaces: the DD ConvNet family and a NAS-Bench-201-style cell space.

Each space registers its choices as NNI mutables (``nni.choice`` + ``add_mutable``) and reads them
with ``ensure_frozen`` in ``__init__``, so under a sample it builds one concrete network, a
:class:`distill.models.Net` in ``self.net`` (normalise -> features -> replaceable head), and records
the sample in ``self.arch``. :func:`build` makes the network of a given architecture dict without
running a search.
"""
from __future__ import annotations

import json
import warnings

import nni

with warnings.catch_warnings():  # NNI 3.0 warns about torch classes newer than itself; harmless here
    warnings.simplefilter("ignore", RuntimeWarning)
    import nni.nas.nn.pytorch as nas_nn
from nni.mutable import ensure_frozen
from nni.nas.space import model_context
from torch import nn

from distill.errors import UserError
from distill.models import Net
from distill.models.convnet import ConvNetBody, ConvNetSpec


class _Space(nas_nn.ModelSpace):
    """Shared plumbing: choices -> concrete values, freeze by re-instantiation, forward to ``net``."""

    space_name = ""

    def _choose(self, label: str, values):
        return ensure_frozen(self.add_mutable(nni.choice(label, list(values))))

    def freeze(self, sample: dict):
        with model_context(sample):
            return self.__class__(*self.trace_args, **self.trace_kwargs)

    def forward(self, x):
        return self.net(x)

    @classmethod
    def choices(cls, **kwargs) -> dict[str, list]:
        space = cls(**kwargs)
        return {k: list(v.values) for k, v in space.simplify().items()}


class ConvNetSpace(_Space):
    """The dataset-distillation ConvNet family: depth, width, norm, activation, pooling."""

    space_name = "convnet"

    def __init__(self, image_size: int = 32, in_chans: int = 3, depths=(2, 3, 4, 5), widths=(32, 64, 128),
                 norms=("bn", "in", "none"), acts=("relu", "gelu", "lrelu"), pools=("avg", "max")):
        super().__init__()
        depths = [d for d in depths if image_size // 2 ** d >= 1]
        if not depths:
            raise UserError(f"no ConvNet depth fits {image_size} px images")
        depth = self._choose("depth", depths)
        width = self._choose("width", widths)
        norm = self._choose("norm", norms)
        act = self._choose("act", acts)
        pool = self._choose("pool", pools)
        self.arch = {"depth": depth, "width": width, "norm": norm, "act": act, "pool": pool}
        body = ConvNetBody(ConvNetSpec(widths=[width] * depth, norm=norm, act=act, pool=pool), image_size, in_chans)
        self.net = Net(body, body.feature_dim, 0, in_chans, name=f"convnet-d{depth}-w{width}-{norm}-{act}-{pool}",
                       image_size=image_size)


NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_EDGES = [(j, i) for j in range(1, 4) for i in range(j)]  # (to, from): 6 edges of the 4-node cell


class _ReLUConvBN(nn.Sequential):
    def __init__(self, c: int, k: int):
        super().__init__(nn.ReLU(inplace=False), nn.Conv2d(c, c, k, padding=k // 2, bias=False), nn.BatchNorm2d(c))


class _Zero(nn.Module):
    def forward(self, x):
        return x.mul(0.0)


def nb201_op(name: str, c: int) -> nn.Module:
    return {"none": lambda: _Zero(), "skip_connect": lambda: nn.Identity(),
            "nor_conv_1x1": lambda: _ReLUConvBN(c, 1), "nor_conv_3x3": lambda: _ReLUConvBN(c, 3),
            "avg_pool_3x3": lambda: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)}[name]()


class NB201Cell(nn.Module):
    """Node j = sum over i < j of op_(j,i)(node i); the cell's output is node 3."""

    def __init__(self, c: int, ops: dict[tuple[int, int], str]):
        super().__init__()
        self.edges = nn.ModuleDict({f"{j}_{i}": nb201_op(ops[(j, i)], c) for j, i in NB201_EDGES})

    def forward(self, x):
        nodes = [x]
        for j in range(1, 4):
            nodes.append(sum(self.edges[f"{j}_{i}"](nodes[i]) for i in range(j)))
        return nodes[3]


class _Reduction(nn.Module):
    """The NAS-Bench-201 residual reduction block (stride 2, channels x 2)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.a = nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False), nn.BatchNorm2d(c_out))
        self.b = nn.Sequential(nn.ReLU(), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.short = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x):
        return self.b(self.a(x)) + self.short(x)


class _NB201Body(nn.Module):
    def __init__(self, ops, in_chans: int, channels: int, cells_per_stage: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_chans, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)]
        c = channels
        for stage in range(3):
            if stage > 0:
                layers.append(_Reduction(c, 2 * c))
                c *= 2
            layers += [NB201Cell(c, ops) for _ in range(cells_per_stage)]
        layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.layers = nn.Sequential(*layers)
        self.feature_dim = c

    def forward(self, x):
        return self.layers(x)


class NB201Space(_Space):
    """A NAS-Bench-201-style space: one cell genotype (6 edges x 5 ops) in a 3-stage network.

    NAS-Bench-201 itself uses 16 channels and 5 cells per stage; ``cells_per_stage`` defaults to 1
    here so CPU runs stay small (set 5 for the benchmark's macro skeleton).
    """

    space_name = "nb201"

    def __init__(self, image_size: int = 32, in_chans: int = 3, channels: int = 16, cells_per_stage: int = 1,
                 ops=NB201_OPS):
        super().__init__()
        chosen = {(j, i): self._choose(f"edge_{j}_{i}", ops) for j, i in NB201_EDGES}
        self.arch = {f"edge_{j}_{i}": chosen[(j, i)] for j, i in NB201_EDGES}
        body = _NB201Body(chosen, in_chans, channels, cells_per_stage)
        genotype = "|".join(f"{chosen[(j, i)]}~{i}" for j, i in NB201_EDGES)
        self.net = Net(body, body.feature_dim, 0, in_chans, name=f"nb201[{genotype}]", image_size=image_size)


SPACES = {"convnet": ConvNetSpace, "nb201": NB201Space}


def get_space(name: str):
    if name not in SPACES:
        raise UserError(f"unknown search space '{name}'", fix=f"use one of: {', '.join(SPACES)}")
    return SPACES[name]


def build(space: str, arch: dict, **kwargs) -> Net:
    """The concrete network of ``arch`` in ``space`` (kwargs: the space's constructor arguments)."""
    cls = get_space(space)
    with model_context(dict(arch)):
        model = cls(**kwargs)
    return model.net


def sample_architectures(space: str, k: int, seed: int = 0, **kwargs) -> list[dict]:
    """``k`` distinct architectures drawn uniformly (seeded) from the space's choices."""
    import numpy as np
    inst = get_space(space)(**kwargs)
    mutables = inst.simplify()
    total = 1
    for m in mutables.values():
        total *= len(m.values)
    if k > total:
        raise UserError(f"space '{space}' has only {total} architectures; asked for {k}")
    rng = np.random.RandomState(seed)
    out, seen = [], set()
    while len(out) < k:
        arch = {label: m.values[rng.randint(len(m.values))] for label, m in mutables.items()}
        key = arch_key(space, arch)
        if key not in seen:
            seen.add(key)
            out.append(arch)
    return out


def arch_key(space: str, arch: dict) -> str:
    return json.dumps({"space": space, **{k: arch[k] for k in sorted(arch)}}, sort_keys=False)


__all__ = ["ConvNetSpace", "NB201Space", "SPACES", "arch_key", "build", "get_space", "sample_architectures"]
