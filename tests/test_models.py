import pytest
import torch

from distill.errors import UserError
from distill.models import create_model, list_models

EXPECTED_DIMS = {  # (32 px, 64 px)
    "convnet": (2048, 8192), "convnet-bn": (2048, 8192), "convnet-d4": (512, 2048),
    "convnet-128-256-512-bn": (8192, 32768), "convnet-64-128-256-512-bn": (2048, 8192),
    "resnet10": (512, 512), "resnet18": (512, 512), "resnet34": (512, 512), "resnet50": (2048, 2048),
    "vgg11": (512, 512), "vgg11-bn": (512, 512), "alexnet": (3072, 12288), "mobilenetv2": (1280, 1280),
    "vit-tiny": (192, 192), "vit-small": (384, 384),
}


def test_every_registered_model_is_covered():
    assert set(list_models()) == set(EXPECTED_DIMS)


@pytest.mark.parametrize("name", sorted(EXPECTED_DIMS) + ["timm:resnet18"])
@pytest.mark.parametrize("size", [32, 64])
def test_forward_backward_feature_dim(name, size):
    torch.manual_seed(0)
    m = create_model(name, out_dim=5, image_size=size)
    x = torch.rand(2, 3, size, size, requires_grad=True)
    f = m.embed(x)
    want = EXPECTED_DIMS.get(name, (512, 512))[0 if size == 32 else 1]
    assert m.feature_dim == want and tuple(f.shape) == (2, want)
    out = m(x)
    assert tuple(out.shape) == (2, 5)
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in m.head.parameters())


def test_head_and_normalization():
    m = create_model("convnet-bn", out_dim=0, image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)).eval()
    x = torch.rand(3, 3, 32, 32)
    assert torch.allclose(m(x), m.embed(x))
    assert torch.allclose(m.embed(x), m.body((x - 0.5) / 0.25))
    m.reset_head(7)
    assert tuple(m(x).shape) == (3, 7)


def test_convnet_spec_and_errors():
    m = create_model("convnet-d2-w16-none-gelu-max", image_size=32)
    assert m.feature_dim == 16 * 8 * 8
    with pytest.raises(UserError, match="unknown model"):
        create_model("resnet7")
    with pytest.raises(UserError, match="cannot read 'zz'"):
        create_model("convnet-zz")
    with pytest.raises(UserError, match="at least 64 px"):
        create_model("convnet-d6", image_size=32)
    with pytest.raises(UserError, match="takes N x 3"):
        create_model("convnet", image_size=32)(torch.rand(2, 1, 32, 32))
