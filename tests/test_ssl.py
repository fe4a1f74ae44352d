import itertools
import math

import numpy as np
import pytest
import torch

from distill.config import DataConfig, TeacherConfig
from distill.errors import UserError
from distill.ssl import Teacher, barlow_twins_loss, nt_xent_loss, train_teacher

from .helpers import small_npz


def bt_reference(z1, z2, lambd):
    """Barlow Twins by the paper's equation, with explicit sums (float64)."""
    z1, z2 = np.asarray(z1, np.float64), np.asarray(z2, np.float64)
    n, d = z1.shape
    a = (z1 - z1.mean(0)) / z1.std(0)
    b = (z2 - z2.mean(0)) / z2.std(0)
    loss = 0.0
    for i, j in itertools.product(range(d), range(d)):
        c = sum(a[k, i] * b[k, j] for k in range(n)) / n
        loss += (1 - c) ** 2 if i == j else lambd * c ** 2
    return loss


def ntxent_reference(z1, z2, t):
    z = np.concatenate([z1, z2]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        num = math.exp(z[i] @ z[pos] / t)
        den = sum(math.exp(z[i] @ z[k] / t) for k in range(2 * n) if k != i)
        total += -math.log(num / den)
    return total / (2 * n)


def test_barlow_twins_matches_equation():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    got = barlow_twins_loss(z1, z2, lambd=0.3, eps=0.0).item()
    assert got == pytest.approx(bt_reference(z1, z2, 0.3), rel=1e-9)
    # identical views with decorrelated dimensions: C = I, loss 0
    z = torch.tensor([[1., 1.], [1., -1.], [-1., 1.], [-1., -1.]], dtype=torch.float64)
    assert barlow_twins_loss(z, z, lambd=1.0, eps=0.0).item() == pytest.approx(0.0, abs=1e-12)


def test_nt_xent_matches_equation():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    assert nt_xent_loss(z1, z2, 0.5).item() == pytest.approx(ntxent_reference(z1.numpy(), z2.numpy(), 0.5), rel=1e-9)
    # one pair: the positive is the only other sample, so the loss is exactly 0
    assert nt_xent_loss(z1[:1], z2[:1], 0.5).item() == pytest.approx(0.0, abs=1e-12)


def _cfg(tmp_path, **kw):
    data = small_npz(tmp_path.parent / "small.npz") if not (tmp_path.parent / "small.npz").exists() else tmp_path.parent / "small.npz"
    base = dict(data=DataConfig(name="npz", root=str(data)), backbone="convnet-d2-w8-bn", epochs=2, batch_size=100,
                projector_hidden=64, projector_dim=64, warmup_epochs=1, output=str(tmp_path / "t.safetensors"),
                knn_k=20)
    base.update(kw)
    return TeacherConfig(**base)


@pytest.mark.parametrize("ssl", ["barlow_twins", "simclr"])
def test_teacher_trains_saves_and_reloads(tmp_path, ssl):
    res = train_teacher(_cfg(tmp_path, ssl=ssl, epochs=3))
    losses = [h["loss"] for h in res.history if "loss" in h]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert 10.0 < res.knn_top1 <= 100.0  # a 10-class problem: better than chance
    t = Teacher.load(res.path)
    assert t.meta["knn_top1"] == round(res.knn_top1, 2) and t.meta["ssl"] == ssl and t.dim == res.teacher.dim
    x = torch.rand(4, 3, 32, 32)
    assert torch.allclose(t.encode(x), res.teacher.encode(x), atol=1e-6)
    assert (tmp_path / "t.json").exists() and (tmp_path / "t.metrics.jsonl").exists()


def test_teacher_resume_matches_uninterrupted(tmp_path):
    full = train_teacher(_cfg(tmp_path / "a", checkpoint_every=1))
    assert train_teacher(_cfg(tmp_path / "b"), stop_after=1) is None
    resumed = train_teacher(_cfg(tmp_path / "b"), resume=True)
    for (k, a), b in zip(full.teacher.model.state_dict().items(), resumed.teacher.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_teacher_errors(tmp_path):
    with pytest.raises(UserError, match="no checkpoint"):
        train_teacher(_cfg(tmp_path), resume=True)
    with pytest.raises(UserError, match="fewer than batch_size"):
        train_teacher(_cfg(tmp_path, batch_size=600))


def test_holdout_keeps_validation_images_out_and_the_knn_curve_survives_a_resume(tmp_path):
    from distill.data import load_dataset
    from distill.ssl.train import holdout_split
    data = load_dataset("sample", split="train")
    rest, val = holdout_split(data, 200)
    assert len(rest) + len(val) == len(data) and torch.bincount(val.labels).tolist() == [20] * 10
    again, val2 = holdout_split(data, 200)
    assert torch.equal(val.images, val2.images)                        # a fixed draw, whatever the run's seed
    full = train_teacher(_cfg(tmp_path / "a", holdout=100, knn_every=1, epochs=2, checkpoint_every=1))
    curve = full.teacher.meta["knn_curve"]
    assert [r["epoch"] for r in curve] == [1, 2] and all("val" in r and "test" in r for r in curve)
    assert full.teacher.meta["val_knn_top1"] == curve[-1]["val"] and full.teacher.meta["holdout"] == 100
    assert train_teacher(_cfg(tmp_path / "b", holdout=100, knn_every=1, epochs=2), stop_after=1) is None
    resumed = train_teacher(_cfg(tmp_path / "b", holdout=100, knn_every=1, epochs=2), resume=True)
    assert resumed.teacher.meta["knn_curve"] == curve                 # epoch 1's point came back from the checkpoint


def test_compiled_falls_back_to_eager_with_a_note(monkeypatch, capsys):
    from distill.engine.device import Compiled

    def broken(module):
        def run(*a, **k):
            raise RuntimeError("no C++ compiler")
        return run
    monkeypatch.setattr(torch, "compile", broken)
    net = torch.nn.Linear(3, 2)
    c = Compiled(net, True, "test net")
    x = torch.randn(4, 3)
    assert torch.equal(c(x), net(x)) and torch.equal(c(x), net(x))
    err = capsys.readouterr().err
    assert err.count("torch.compile of the test net failed") == 1 and "running eager" in err
    assert torch.equal(Compiled(net, False)(x), net(x))
