"""Small shared builders for the tests (tiny teachers and sets on the embedded sample)."""
from __future__ import annotations

import torch

from distill.data import load_dataset
from distill.models import create_model
from distill.ssl.teacher import Teacher

TINY = "convnet-d2-w8-bn"


def tiny_teacher(arch: str = "convnet-d2-w16-bn", seed: int = 0, source=None) -> Teacher:
    """A randomly initialised teacher: a fixed, deterministic feature map is all the methods need."""
    src = source if source is not None else load_dataset("sample")
    torch.manual_seed(seed)
    m = create_model(arch, out_dim=0, image_size=src.image_size, mean=src.mean, std=src.std)
    return Teacher(m, {"arch": arch, "image_size": src.image_size, "channels": src.channels,
                       "mean": list(src.mean), "std": list(src.std), "source": src.name})


def small_source(per_class: int = 30, split: str = "train"):
    ds = load_dataset("sample", split=split)
    idx = torch.cat([torch.nonzero(ds.labels == c).flatten()[:per_class] for c in range(10)])
    return ds.subset(idx)


def small_npz(path, train_per_class: int = 50, test_per_class: int = 20):
    """A small labelled .npz dataset cut from the sample (for fast teacher/CLI runs)."""
    import numpy as np
    tr, te = small_source(train_per_class), small_source(test_per_class, split="test")
    np.savez(path, x_train=tr.images.permute(0, 2, 3, 1).numpy(), y_train=tr.labels.numpy(),
             x_test=te.images.permute(0, 2, 3, 1).numpy(), y_test=te.labels.numpy(), classes=np.array(tr.classes))
    return path


def sample_leaderboard(tmp_path, **kw):
    """A leaderboard on the embedded sample: a tiny teacher, 3 cheap rows, the `mkdt` protocol cut to seconds;
    ``kw`` overrides any key."""
    from distill.config import load_config
    from distill.leaderboard import LeaderboardConfig
    teacher = tmp_path / "teacher.safetensors"
    if not teacher.exists():
        tiny_teacher().save(teacher)
    base = {"name": "t", "sources": [{"data": {"name": "sample"}, "teacher": str(teacher), "train_per_class": 10,
                                      "budgets": [10]}],
            "rows": [{"method": "random"}, {"method": "random_labelled"}, {"method": "herding"}],
            "full_source_epochs": 1, "arch": "convnet-d2-w8-bn",
            "protocols": [{"name": "mkdt", "overrides": {"pretrain": {"epochs": 2}, "linear": {"steps": 5}}}],
            "targets": [{"name": "sample", "train_per_class": 10, "test_per_class": 5}], "seeds": [0],
            "output": str(tmp_path / "lb")}
    base.update(kw)
    return load_config(LeaderboardConfig, extra=base)
