"""ResNets from torchvision, with the CIFAR stem for small images.

``resnet10`` / ``resnet18`` / ``resnet34`` / ``resnet50``: the stem follows the image size (CIFAR
stem below 64 px: 3x3 conv, stride 1, no max-pool; the standard 7x7/2 + max-pool stem at 64 px and
above). Force one with ``-cifar`` or ``-imagenet`` (``resnet18-cifar``). The head (``fc``) is
removed: features are the global-average-pooled output (512-d, 2048-d for ResNet-50).
"""
from __future__ import annotations

from torch import nn
from ..errors import UserError
from .registry import register_model

# block kind and layers; torchvision.models is imported when a ResNet is built (importing it loads every model
# family: seconds on every CLI start)
LAYERS = {"resnet10": ("basic", [1, 1, 1, 1]), "resnet18": ("basic", [2, 2, 2, 2]),
          "resnet34": ("basic", [3, 4, 6, 3]), "resnet50": ("bottleneck", [3, 4, 6, 3])}


class ResNetBody(nn.Module):
    def __init__(self, depth_name: str, image_size: int, in_chans: int, stem: str = "auto"):
        super().__init__()
        from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
        kind, layers = LAYERS[depth_name]
        block = BasicBlock if kind == "basic" else Bottleneck
        net = ResNet(block, layers, num_classes=1)
        if stem == "auto":
            stem = "cifar" if image_size < 64 else "imagenet"
        if stem == "cifar":
            net.conv1 = nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_chans != 3:
            net.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        net.fc = nn.Identity()
        self.net = net
        self.stem = stem
        self.feature_dim = 512 * block.expansion

    def forward(self, x):
        return self.net(x)


def _build(name, image_size, in_chans, **kw):
    parts = name.lower().split("-")
    base = parts[0]
    stem = parts[1] if len(parts) > 1 else "auto"
    if base not in LAYERS or stem not in ("auto", "cifar", "imagenet") or len(parts) > 2:
        raise UserError(f"unknown ResNet '{name}'", fix="use resnet10/18/34/50, optionally with -cifar or -imagenet")
    body = ResNetBody(base, image_size, in_chans, stem)
    return body, body.feature_dim


for _n in LAYERS:
    register_model(_n, help=f"{_n}, CIFAR stem below 64 px")(_build)
    register_model(f"{_n}-cifar", help=f"{_n} with the CIFAR stem", listed=False)(_build)
    register_model(f"{_n}-imagenet", help=f"{_n} with the ImageNet stem", listed=False)(_build)
