"""Model zoo: ``create_model(name, out_dim, image_size)`` for every architecture of the papers."""
from . import classic, convnet, resnet, timm_models  # noqa: F401  (register the builders)
from .convnet import ConvNetSpec
from .registry import Net, check_model, count_parameters, create_model, describe_models, list_models, register_model

__all__ = ["ConvNetSpec", "Net", "check_model", "count_parameters", "create_model", "describe_models", "list_models",
           "register_model"]
