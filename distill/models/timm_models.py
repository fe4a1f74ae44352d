"""Vision Transformers and any timm model (``timm:<name>``), never with pretrained weights.

``vit-tiny`` / ``vit-small``: timm's ViT with the patch size scaled to the image (patch 4 at 32 px,
8 at 64 px, 16 from 128 px), class-token features (192-d / 384-d).
"""
from __future__ import annotations

from torch import nn

from ..errors import UserError
from .registry import register_model


class TimmBody(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.feature_dim = int(model.num_features)

    def forward(self, x):
        return self.model(x)


def _timm_create(name: str, image_size: int, in_chans: int, **kw) -> nn.Module:
    import timm
    if name not in timm.list_models():
        raise UserError(f"timm has no model '{name}'", fix="see timm.list_models() for the names")
    kwargs = dict(pretrained=False, num_classes=0, in_chans=in_chans, **kw)
    try:  # transformers take the image size; convnets do not accept the argument
        return timm.create_model(name, img_size=image_size, **kwargs)
    except TypeError:
        return timm.create_model(name, **kwargs)


def _patch(image_size: int) -> int:
    return 4 if image_size <= 32 else 8 if image_size <= 64 else 16


def _vit(timm_name: str, label: str):
    def build(name, image_size, in_chans, **kw):
        patch = _patch(image_size)
        if image_size % patch:
            raise UserError(f"{label} needs an image size divisible by {patch}, got {image_size}")
        body = TimmBody(_timm_create(timm_name, image_size, in_chans, patch_size=patch))
        return body, body.feature_dim
    return build


register_model("vit-tiny", help="ViT-Tiny (timm), patch scaled to the image, 192-d")(
    _vit("vit_tiny_patch16_224", "vit-tiny"))
register_model("vit-small", help="ViT-Small (timm), patch scaled to the image, 384-d")(
    _vit("vit_small_patch16_224", "vit-small"))


@register_model("timm:", prefix=True, help="any timm model by name, e.g. timm:resnet26d (no weights)")
def _timm_any(name, image_size, in_chans, **kw):
    timm_name = name.split(":", 1)[1]
    if not timm_name:
        raise UserError("'timm:' needs a model name, e.g. timm:resnet18")
    m = _timm_create(timm_name, image_size, in_chans)
    body = TimmBody(m)
    return body, body.feature_dim

