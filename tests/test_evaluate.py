import statistics

import pytest
import torch

from distill.config import (EvalConfig, FinetuneConfig, LinearConfig, PretrainConfig, TargetConfig,
                            load_eval_config)
from distill.distilled import DistilledSet, Materialized
from distill.evaluate import NO_PRETRAIN, aggregate, evaluate_sets, fit_linear, pretrain_on_set
from distill.models import create_model

from .helpers import TINY, small_source, tiny_teacher


def test_lbfgs_linear_probe_separates_separable_data():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 8, generator=g) * 4
    y = torch.arange(400) % 4
    x = centers[y] + 0.3 * torch.randn(400, 8, generator=g)
    for solver in ("lbfgs", "sgd"):
        lin = fit_linear(x, y, 4, LinearConfig(solver=solver, steps=30, l2=1e-4, lr=0.1, batch_size=64))
        assert (lin(x).argmax(1) == y).float().mean() > 0.98


def test_pretraining_lowers_the_loss():
    src = small_source(5)
    teacher = tiny_teacher(source=src)
    x = src.float()
    m = Materialized(images=x, targets=teacher.encode(x))
    net = create_model(TINY, image_size=32, mean=src.mean, std=src.std)
    out = pretrain_on_set(net, m, PretrainConfig(epochs=60, batch_size=25), torch.device("cpu"))
    h = out["history"]
    assert out["loss_kind"] == "mse" and h[-1]["loss"] < 0.5 * h[0]["loss"]
    ce = pretrain_on_set(net, Materialized(images=x, labels=src.labels), PretrainConfig(epochs=5), torch.device("cpu"))
    assert ce["loss_kind"] == "ce" and net.head.out_features == 10


def test_evaluate_sets_writes_a_complete_table(tmp_path):
    src = small_source(10)
    teacher = tiny_teacher(source=src)
    x = src.float()
    meta = dict(method="random", source="sample", image_size=32, channels=3, mean=list(src.mean), std=list(src.std))
    s = DistilledSet(images=x[:20], targets=teacher.encode(x[:20]), meta=meta)
    train, test = small_source(20), small_source(10, split="test")
    cfg = EvalConfig(arch=TINY, pretrain=PretrainConfig(epochs=3), finetune=FinetuneConfig(iterations=5, batch_size=32),
                     linear=LinearConfig(steps=10, label_fractions=[1.0, 0.1]), seeds=[0, 1], output=str(tmp_path))
    rep = evaluate_sets({"a set": s, NO_PRETRAIN: None}, cfg, targets={"sample": (train, test, TargetConfig())},
                        verbose=False)
    assert len(rep.rows) == 2 * 2 * 3  # sets x seeds x (linear, linear@10%, finetune)
    assert {r["metric"] for r in rep.rows} == {"linear", "linear@10%", "finetune"}
    for f in ("results.md", "results.csv", "results.json"):
        assert (tmp_path / f).exists()
    md = (tmp_path / "results.md").read_text()
    assert "| a set |" in md and "| no pre-training |" in md and "sample finetune" in md
    assert all(0 <= r["acc"] <= 100 for r in rep.rows)



def test_no_pretraining_alone_builds_networks_at_the_size_it_is_given(tmp_path, monkeypatch):
    """With no set to say it (the transfer floor), the networks' input size is the caller's, not a 32 px default."""
    import distill.evaluate as ev
    made, real = [], ev.create_model
    monkeypatch.setattr(ev, "create_model", lambda *a, **k: (made.append((k["image_size"], k["in_chans"])),
                                                              real(*a, **k))[1])
    train, test = small_source(10).resized(16), small_source(5, split="test").resized(16)
    cfg = EvalConfig(arch=TINY, finetune=FinetuneConfig(enabled=False), linear=LinearConfig(steps=5), seeds=[0],
                     output=str(tmp_path))
    rep = evaluate_sets({NO_PRETRAIN: None}, cfg, targets={"sample": (train, test, TargetConfig())}, write=False,
                        verbose=False, image_size=16, channels=3)
    assert made == [(16, 3)] and rep.rows and all(0 <= r["acc"] <= 100 for r in rep.rows)

def test_aggregate_mean_and_sample_std():
    rows = [{"set": "a", "acc": v} for v in (1.0, 2.0, 4.0)] + [{"set": "b", "acc": 5.0}]
    agg = aggregate(rows, ("set",))
    assert agg[0]["mean"] == pytest.approx(7 / 3) and agg[0]["std"] == pytest.approx(statistics.stdev([1, 2, 4]))
    assert agg[1]["std"] == 0.0 and agg[1]["n"] == 1


def test_protocol_presets():
    mk = load_eval_config(protocol="mkdt")
    assert mk.pretrain.epochs == 20 and mk.pretrain.lr is None and mk.linear.label_fractions == [0.01, 0.05]
    assert mk.linear.steps >= 1000 and mk.linear.tolerance <= 1e-4 and mk.linear.l2 == 1e-3 and not mk.finetune.enabled
    kr = load_eval_config(protocol="krrst", overrides=["pretrain.epochs=7"])
    assert kr.pretrain.epochs == 7 and kr.finetune.iterations == 10_000 and kr.pretrain.weight_decay == 1e-3


def test_load_targets_class_balanced_subsets():
    from distill.evaluate import load_targets
    t = load_targets([TargetConfig("sample", train_per_class=7, test_per_class=3)], 32, 3, torch.device("cpu"))
    train, test, _ = t["sample"]
    assert len(train) == 70 and len(test) == 30
    assert torch.bincount(train.labels).tolist() == [7] * 10 and torch.bincount(test.labels).tolist() == [3] * 10
    with pytest.raises(Exception, match="channel"):
        load_targets([TargetConfig("sample")], 32, 1, torch.device("cpu"))


def test_the_linear_probe_reaches_its_tolerance_and_an_early_stop_is_flagged():
    from distill.evaluate.config import LinearConfig
    from distill.evaluate.train import fit_linear
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 32, generator=g)
    w = torch.randn(32, 5, generator=g)
    y = (x @ w + 0.5 * torch.randn(400, 5, generator=g)).argmax(1)
    info = {}
    lin = fit_linear(x, y, 5, LinearConfig(l2=1e-3, tolerance=1e-5, steps=5000), info=info)
    assert info["probe_converged"] and info["probe_grad"] <= 1e-5 and 0 < info["probe_iters"] < 5000
    # the gradient really is (close to) zero at the solution: the optimality condition of the penalised objective
    assert lin.weight.dtype == x.dtype                  # solved in float64, handed back in the features' dtype
    lin = lin.double()
    (torch.nn.functional.cross_entropy(lin(x.double()), y) + 1e-3 * lin.weight.pow(2).sum()).backward()
    assert lin.weight.grad.abs().max() <= 1.1e-5
    short = {}
    fit_linear(x, y, 5, LinearConfig(l2=1e-3, tolerance=1e-5, steps=3), info=short)
    assert short["probe_iters"] == 3 and not short["probe_converged"] and short["probe_grad"] > 1e-5


class _Scaled(torch.nn.Module):
    """Features = the class-dependent mean colour of an image, times ``scale``; counts the images it embeds."""

    def __init__(self, scale):
        super().__init__()
        self.scale, self.seen = scale, 0

    def embed(self, x):
        self.seen += len(x)
        return x.mean((2, 3)) * self.scale


def _colour_classes(n, seed):
    g = torch.Generator().manual_seed(seed)
    from distill.data import ImageSet
    y = torch.arange(n) % 3
    base = torch.tensor([[200, 40, 40], [40, 200, 40], [40, 40, 200]])[y]
    img = (base[:, :, None, None] + torch.randint(-30, 30, (n, 3, 8, 8), generator=g)).clamp(0, 255).to(torch.uint8)
    return ImageSet(img, y, ["r", "g", "b"])


def test_the_probe_reads_only_the_labelled_images_and_tiny_features_are_not_erased():
    from distill.evaluate.train import linear_probe
    train, test = _colour_classes(300, 0), _colour_classes(90, 1)
    cfg = LinearConfig(label_fractions=[0.1, 1.0])
    big = _Scaled(1.0)
    ref = linear_probe(big, train, test, cfg)
    assert ref[1.0] == 100.0 and ref[0.1] == 100.0
    small = _Scaled(1.0)
    linear_probe(small, train, test, LinearConfig(label_fractions=[0.1]))
    assert small.seen == 30 + len(test)             # 10 % of the training images, then the test split
    # features at 1e-10 of the scale (a freshly initialised MobileNetV2 in eval mode): standardised, not floored to
    # nothing; an absolute floor on the std made this probe chance-level
    assert linear_probe(_Scaled(1e-10), train, test, cfg) == ref


def test_recalibrate_bn_sets_the_running_statistics_to_the_sets_own():
    from distill.evaluate.train import recalibrate_bn
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    bn = net[1]
    bn.running_mean.fill_(5.0)
    bn.running_var.fill_(9.0)
    weights = [p.detach().clone() for p in net.parameters()]
    net.eval()
    x = torch.randn(20, 3, 8, 8) * 2 + 1
    assert recalibrate_bn(net, x, batch_size=64) == 1
    with torch.no_grad():
        h = net[0](x)
    # one batch: exactly the set's per-channel mean and unbiased variance of the layer's input
    assert torch.allclose(bn.running_mean, h.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, h.transpose(0, 1).reshape(4, -1).var(1), rtol=1e-4)
    assert bn.momentum == 0.1 and not net.training                      # settings restored
    assert all(torch.equal(a, b) for a, b in zip(weights, net.parameters()))   # no weight changed
    assert recalibrate_bn(torch.nn.Linear(2, 2), x) == 0
