"""VGG11-BN, AlexNet and MobileNetV2 in the small-image variants used by the distillation papers."""
from __future__ import annotations

from torch import nn

from .registry import register_model

VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


class VGGBody(nn.Module):
    """VGG-11 with batch norm after every conv; global average pooling gives 512-d features."""

    def __init__(self, cfg, in_chans: int = 3, norm: str = "bn"):
        super().__init__()
        layers, c = [], in_chans
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                norm_layer = nn.BatchNorm2d(v) if norm == "bn" else nn.GroupNorm(v, v, affine=True)
                layers += [nn.Conv2d(c, v, 3, padding=1), norm_layer, nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = c

    def forward(self, x):
        return self.pool(self.features(x)).flatten(1)


@register_model("vgg11", help="VGG-11 with batch norm (alias of vgg11-bn)")
@register_model("vgg11-bn", help="VGG-11 with batch norm, 512-d pooled features")
def _vgg11(name, image_size, in_chans, **kw):
    body = VGGBody(VGG11, in_chans, "bn")
    return body, body.feature_dim


class AlexNetBody(nn.Module):
    """The small-image AlexNet of the dataset-condensation benchmarks: five convs, three max-pools.

    Features are the flattened last block: 192 x (s/8)^2 (3072-d at 32 px).
    """

    def __init__(self, image_size: int, in_chans: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 128, 5, padding=4 if in_chans == 1 else 2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(128, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(192, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 192, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(192, 192, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        s = image_size + (4 if in_chans == 1 else 0)
        s = s // 8
        self.feature_dim = 192 * s * s

    def forward(self, x):
        return self.features(x).flatten(1)


@register_model("alexnet", help="small-image AlexNet (5 convs), flattened features")
def _alexnet(name, image_size, in_chans, **kw):
    body = AlexNetBody(image_size, in_chans)
    return body, body.feature_dim


class MobileNetV2Body(nn.Module):
    """torchvision's MobileNetV2 with the CIFAR adaptation: stride-1 stem below 128 px and a stride-1
    second stage below 64 px, so 32 px inputs end at 2 x 2 before pooling. 1280-d features."""

    def __init__(self, image_size: int, in_chans: int = 3, width_mult: float = 1.0):
        super().__init__()
        # imported here: torchvision.models imports every model family (seconds), for one class
        from torchvision.models.mobilenetv2 import MobileNetV2
        setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
                   [6, 320, 1, 1]]
        if image_size < 64:
            setting[1][3] = 1
        net = MobileNetV2(num_classes=1, width_mult=width_mult, inverted_residual_setting=setting)
        first = net.features[0][0]
        stride = 1 if image_size < 128 else 2
        net.features[0][0] = nn.Conv2d(in_chans, first.out_channels, 3, stride=stride, padding=1, bias=False)
        self.features = net.features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = net.last_channel

    def forward(self, x):
        return self.pool(self.features(x)).flatten(1)


@register_model("mobilenetv2", help="MobileNetV2 (CIFAR strides below 64 px), 1280-d features")
def _mobilenetv2(name, image_size, in_chans, **kw):
    body = MobileNetV2Body(image_size, in_chans)
    return body, body.feature_dim
