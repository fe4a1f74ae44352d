"""SC-DD: squeeze, BatchNorm-matching recover, worker split + merge, and the relabel protocol."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distill.classifier import Classifier
from distill.data.config import DataConfig
from distill.distilled import DistilledSet
from distill.engine import load_record
from distill.errors import ConfigError, DataError
from distill.evaluate import evaluate_sets, load_eval_config
from distill.evaluate.relabel import RelabelConfig, mix, relabel_train
from distill.methods import DistillConfig, run_distillation
from distill.methods.scdd import BNStatsLoss, jitter, merge_parts
from distill.models import create_model
from distill.methods.scdd.squeeze import SqueezeConfig, run_squeeze, squeeze_in_memory

from .helpers import small_source, tiny_teacher


def _trained_bn_teacher(src):
    """A tiny teacher whose BatchNorm layers hold non-trivial running statistics."""
    t = tiny_teacher(source=src)
    t.model.train()
    with torch.no_grad():
        for k in range(0, len(src), 50):
            t.model(src.float(torch.arange(k, min(k + 50, len(src)))))
    t.model.eval()
    return t


def _scdd_cfg(out=None, budget=20, **params):
    return DistillConfig(data=DataConfig(name="sample"), method="scdd", budget=budget, steps=6, seed=1,
                         checkpoint_every=2, log_every=1, output=str(out) if out else None,
                         params={"lr": 0.1, "squeeze_epochs": 3, **params})


def test_bn_loss_matches_a_hand_computation():
    torch.manual_seed(0)
    net = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)).eval()
    for bn in (net[0], net[2]):
        bn.running_mean.copy_(torch.randn(bn.num_features))
        bn.running_var.copy_(torch.rand(bn.num_features) + 0.5)
    x = torch.randn(5, 3, 6, 6, requires_grad=True)
    hooks = BNStatsLoss(net, first_multiplier=10.0)
    net(x)
    got = hooks.loss()

    def term(h, bn):
        per = h.permute(1, 0, 2, 3).reshape(h.shape[1], -1)
        mu = per.sum(1) / per.shape[1]
        var = ((per - mu[:, None]) ** 2).sum(1) / per.shape[1]
        return ((mu - bn.running_mean) ** 2).sum().sqrt() + ((var - bn.running_var) ** 2).sum().sqrt()
    h1 = (x - net[0].running_mean.view(1, -1, 1, 1)) / (net[0].running_var.view(1, -1, 1, 1) + net[0].eps).sqrt()
    h1 = h1 * net[0].weight.view(1, -1, 1, 1) + net[0].bias.view(1, -1, 1, 1)
    h2 = F.conv2d(h1, net[1].weight, padding=1)
    want = 10.0 * term(x, net[0]) + term(h2, net[2])
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
    got.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0      # the gradient reaches the images
    hooks.remove()
    with pytest.raises(ConfigError, match="no BatchNorm"):
        BNStatsLoss(nn.Sequential(nn.Conv2d(3, 3, 1)))


def test_jitter_is_the_roll_it_draws():
    z = torch.randn(2, 3, 8, 8)
    shifts = set()
    for s in range(20):
        g1, g2 = torch.Generator().manual_seed(s), torch.Generator().manual_seed(s)
        dy, dx = (int(v) for v in torch.randint(0, 5, (2,), generator=g2))
        assert 0 <= dy <= 4 and 0 <= dx <= 4
        assert torch.equal(jitter(z, g1, 4, False, None), torch.roll(z, (dy, dx), dims=(2, 3)))
        shifts.add((dy, dx))
    assert len(shifts) > 5                     # it moves, and not always the same way
    out = jitter(z, torch.Generator().manual_seed(0), 4, True, [0.3, 0.6])
    assert out.shape == z.shape and not torch.equal(out, z)


def test_squeeze_leaves_the_backbone_bit_identical_and_resumes(tmp_path):
    src = small_source(20)
    teacher = _trained_bn_teacher(src)
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    assert any(k.endswith("running_mean") and v.abs().sum() > 0 for k, v in before.items())   # buffers with content
    base = dict(teacher="<in memory>", epochs=4, batch_size=32, lr=0.1, checkpoint_every=2, log_every=1,
                test_split=None)
    full = run_squeeze(SqueezeConfig(**base, output=str(tmp_path / "full.safetensors")), source=src, teacher=teacher,
                       quiet=True).record
    after = teacher.model.state_dict()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k                  # weights and BatchNorm buffers untouched
    clf = full.model.state_dict()
    for k, v in before.items():
        assert torch.equal(v, clf[k]), k                    # the classifier carries the same backbone
    assert full.meta["teacher"] == teacher.id and full.num_classes == 10
    # stopped after 3 steps and resumed: bit-identical head
    cfg = SqueezeConfig(**base, output=str(tmp_path / "split.safetensors"))
    assert run_squeeze(cfg, source=src, teacher=teacher, stop_after=3, quiet=True).record is None
    resumed = run_squeeze(cfg, source=src, teacher=teacher, resume=True, quiet=True).record
    assert torch.equal(resumed.model.head.weight, full.model.head.weight)
    back = load_record(tmp_path / "full.safetensors")
    assert isinstance(back, Classifier) and back.meta["train_acc"] == full.meta["train_acc"]


def test_squeeze_learns_the_labels():
    src = small_source(20)
    teacher = _trained_bn_teacher(src)
    clf = squeeze_in_memory(teacher, src, epochs=30, lr=0.1)
    assert clf.meta["train_acc"] > 30.0                  # chance is 10 %


def test_recover_lowers_its_loss_and_writes_a_labelled_set(tmp_path):
    src = small_source(20)
    teacher = _trained_bn_teacher(src)
    out = tmp_path / "scdd.safetensors"
    res = run_distillation(_scdd_cfg(out, squeeze_epochs=10), teacher=teacher, source=src)
    loss = [h["loss"] for h in res.history]
    assert len(loss) == 12                                 # IPC 2 -> two batches of 6 iterations
    assert loss[5] < loss[0] and loss[11] < loss[6]        # each batch's loss goes down
    ds = DistilledSet.load(out)
    assert len(ds) == 20 and ds.labels.tolist() == sorted(list(range(10)) * 2)
    assert ds.soft_labels.shape == (20, 10) and ds.targets is None
    assert 0 <= float(ds.images.min()) and float(ds.images.max()) <= 1
    assert ds.meta["ipc"] == 2 and ds.meta["method"] == "scdd"


def test_recover_refuses_bad_budgets_and_classifiers(tmp_path):
    src = small_source(10)
    teacher = _trained_bn_teacher(src)
    with pytest.raises(ConfigError, match="multiple of the 10 classes"):
        run_distillation(_scdd_cfg(budget=15), teacher=teacher, source=src)
    clf = squeeze_in_memory(teacher, src, epochs=1)
    clf.model.reset_head(5)                                 # a classifier of another source (5 classes)
    clf.meta.update(num_classes=5, classes=clf.meta["classes"][:5])
    clf.save(tmp_path / "c5.safetensors")
    with pytest.raises(DataError, match="5 classes"):
        run_distillation(_scdd_cfg(classifier=str(tmp_path / "c5.safetensors")), source=src)
    with pytest.raises(ConfigError, match="classifier"):
        run_distillation(_scdd_cfg(), source=src)           # neither a classifier nor a teacher


def test_workers_merge_into_the_single_process_set(tmp_path):
    src = small_source(10)
    teacher = _trained_bn_teacher(src)
    clf = squeeze_in_memory(teacher, src, epochs=3)
    clf.save(tmp_path / "clf.safetensors")
    p = {"classifier": str(tmp_path / "clf.safetensors"), "class_batch": 4}
    one = run_distillation(_scdd_cfg(tmp_path / "one.safetensors", **p), source=src).set
    parts = [run_distillation(_scdd_cfg(tmp_path / f"w{w}.safetensors", **p, worker=w, workers=2), source=src).set
             for w in (0, 1)]
    assert sum(len(x) for x in parts) == 20 and all(0 < len(x) < 20 for x in parts)
    merged = merge_parts([DistilledSet.load(tmp_path / f"w{w}.safetensors") for w in (0, 1)])
    assert torch.equal(merged.images, one.images) and torch.equal(merged.labels, one.labels)
    assert torch.allclose(merged.soft_labels, one.soft_labels)
    with pytest.raises(DataError, match="workers"):
        merge_parts([parts[0]])
    with pytest.raises(DataError, match="not a part"):
        merge_parts([one, parts[1]])


def test_mix_keeps_lambda_honest():
    torch.manual_seed(0)
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 10, 10).clone()     # image i is the constant i
    mixed, perm, lam = mix(x, 0.0, 1.0)                    # cutmix: lambda = share of the own image kept
    moved = [i for i in range(4) if int(perm[i]) != i]
    assert moved and 0 < lam < 1                           # this seed pairs images with others and cuts a box
    for i in moved:
        own = (mixed[i] == x[i]).float().mean()
        assert abs(float(own) - lam) < 1e-6
    m2, perm2, lam2 = mix(x, 0.8, 0.0)
    assert torch.allclose(m2, lam2 * x + (1 - lam2) * x[perm2])


def test_relabel_trains_a_student_above_its_start():
    torch.manual_seed(0)
    src = small_source(20)
    test = small_source(30, split="test")
    teacher = _trained_bn_teacher(src)
    clf = squeeze_in_memory(teacher, src, epochs=40, lr=0.1)
    images, labels = src.float(torch.arange(len(src))), src.labels
    student = create_model("convnet-d2-w16-bn", out_dim=10, image_size=32, mean=src.mean, std=src.std)
    from distill.engine.loop import accuracy
    start = accuracy(student, test)
    cfg = RelabelConfig(enabled=True, epochs=12, batch_size=40, lr=3e-3, temperature=4.0)
    acc = relabel_train(student, images, clf.model, "teacher", cfg, test, labels=labels)
    assert acc > start + 5
    # stored soft labels only: the teacher never runs while the student trains
    student2 = create_model("convnet-d2-w16-bn", out_dim=10, image_size=32, mean=src.mean, std=src.std)
    soft = clf.model.eval()(images).detach()
    acc2 = relabel_train(student2, images, None, "stored", cfg, test, soft_labels=soft)
    assert acc2 > start + 5


def test_scdd_protocol_rows(tmp_path):
    src = small_source(10)
    test = small_source(5, split="test")
    teacher = _trained_bn_teacher(src)
    clf = squeeze_in_memory(teacher, src, epochs=3)
    clf.save(tmp_path / "clf.safetensors")
    s = run_distillation(_scdd_cfg(classifier=str(tmp_path / "clf.safetensors")), source=src).set
    plain = DistilledSet(images=s.images, labels=s.labels, meta=dict(s.meta))
    plain.meta["classifier"] = None
    cfg = load_eval_config(protocol="scdd", overrides=["arch=convnet-d2-w8-bn", "relabel.epochs=1", "seeds=[0]"])
    targets = {"sample": (src, test, None)}
    rep = evaluate_sets({"scdd": s}, cfg, targets=targets, write=False, verbose=False)
    assert sorted(r["metric"] for r in rep.rows) == ["relabel:hard", "relabel:stored", "relabel:teacher"]
    with pytest.raises(ConfigError, match="relabel.classifier"):
        evaluate_sets({"plain": plain}, cfg, targets=targets, write=False, verbose=False)


def test_cli_squeeze_distill_merge_and_errors(tmp_path):
    from click.testing import CliRunner

    from distill.cli import cli

    def run(*args):
        return CliRunner().invoke(cli, [str(a) for a in args])
    src = load_dataset_sample()
    teacher = _trained_bn_teacher(src)
    teacher.save(tmp_path / "teacher.safetensors")
    clf = tmp_path / "clf.safetensors"
    r = run("squeeze", "-c", "configs/scdd/squeeze_sample.yaml", f"teacher={tmp_path / 'teacher.safetensors'}",
            "epochs=2", f"output={clf}")
    assert r.exit_code == 0, r.output
    assert "test top-1" in r.output and "sample/test" in r.output
    assert Classifier.load(clf).meta["test_acc"] >= 0
    r = run("info", clf)
    assert r.exit_code == 0 and "test accuracy" in r.output
    parts = []
    for w in (0, 1):
        out = tmp_path / f"w{w}.safetensors"
        r = run("distill", "-c", "configs/scdd/sample.yaml", f"params.classifier={clf}", "steps=2", "budget=10",
                "params.workers=2", f"params.worker={w}", "params.class_batch=5", f"output={out}")
        assert r.exit_code == 0, r.output
        parts.append(out)
    r = run("merge", *parts, "-o", tmp_path / "merged.safetensors")
    assert r.exit_code == 0, r.output
    assert len(DistilledSet.load(tmp_path / "merged.safetensors")) == 10
    r = run("merge", parts[0], "-o", tmp_path / "bad.safetensors")        # one worker missing: refused, nothing written
    assert r.exit_code == 2 and "workers" in r.output and not (tmp_path / "bad.safetensors").exists()
    r = run("distill", "-c", "configs/scdd/sample.yaml", f"params.classifier={clf}", "budget=10", "params.workers=2",
            "params.worker=1", f"output={tmp_path / 'x.safetensors'}")
    assert r.exit_code == 2 and "no batch to recover" in r.output
    r = run("distill", "-c", "configs/scdd/sample.yaml", f"params.classifier={clf}", "budget=15",
            f"output={tmp_path / 'x.safetensors'}")
    assert r.exit_code == 2 and "multiple of the 10 classes" in r.output and "Traceback" not in r.output


def load_dataset_sample():
    from distill.data import load_dataset
    ds = load_dataset("sample")
    return ds.subset(torch.arange(0, len(ds), 10))


def test_imagenet_relabel_preset_uses_resized_crops_and_cutmix():
    cfg = load_eval_config(protocol="scdd_imagenet")
    assert cfg.relabel.crop_scale == [0.08, 1.0] and cfg.relabel.cutmix == 1.0 and cfg.relabel.temperature == 20
    from distill.data.augment import ResizedCropFlip
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16)
    out = ResizedCropFlip(16, [0.2, 0.5])(x)
    assert out.shape == x.shape and not torch.allclose(out, x)
    with pytest.raises(ConfigError, match="crop_scale"):
        load_eval_config(protocol="scdd", overrides=["relabel.crop_scale=[0.5, 2.0]"]).validate()
