"""Boost: the factorised / multi-view set format (v2), byte accounting, the method, and its consumers."""
import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from distill.cli import cli
from distill.config import TargetConfig
from distill.data.config import DataConfig
from distill.distilled import DistilledSet
from distill.errors import ConfigError, FileFormatError
from distill.evaluate import evaluate_sets
from distill.evaluate.config import EvalConfig, FinetuneConfig, LinearConfig, PretrainConfig
from distill.methods import DistillConfig, run_distillation
from distill.methods.boost import Config, plan_storage
from distill.methods.krr_st import KRRST

from .helpers import TINY, small_npz, small_source, tiny_teacher

META = dict(method="boost", source="sample", image_size=8, channels=3, mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2])


def hand_set(views=("rot90", "hflip"), targets="network", factorised_targets=True, n=5):
    g = torch.Generator().manual_seed(0)
    kw = dict(image_bases=torch.randn(4, 3, 4, 4, generator=g), image_coeffs=torch.randn(n, 4, generator=g),
              labels=torch.arange(n) % 3)
    p = 6 if factorised_targets else 7
    if factorised_targets:
        kw.update(target_bases=torch.randn(6, 7, generator=g), target_coeffs=torch.randn(n, 6, generator=g))
    else:
        kw["targets"] = torch.randn(n, 7, generator=g)
    k = len(views)
    if targets == "network":
        kw.update(view_w1=torch.randn(k, 2, p, generator=g), view_b1=torch.randn(k, 2, generator=g),
                  view_w2=torch.randn(k, p, 2, generator=g), view_b2=torch.randn(k, p, generator=g))
    else:
        kw["view_codes"] = torch.randn(k, n, p, generator=g)
    meta = dict(META, num_classes=3, views={"transforms": list(views), "targets": targets, "activation": "relu"})
    return DistilledSet(**kw, meta=meta)


@pytest.mark.parametrize("targets,factorised", [("network", True), ("stored", True), ("network", False)])
def test_materialize_equals_the_explicit_computation(targets, factorised):
    ds = hand_set(targets=targets, factorised_targets=factorised)
    m = ds.materialize()
    n = 5
    # images: bilinear upsampling of the combination, then each exact transform, view-major
    low = torch.stack([sum(ds.image_coeffs[i, u] * ds.image_bases[u] for u in range(4)) for i in range(n)])
    base = F.interpolate(low, size=(8, 8), mode="bilinear", align_corners=False)
    want_x = torch.cat([base, torch.rot90(base, 1, (2, 3)), base.flip(-1)])
    assert m.images.shape == (3 * n, 3, 8, 8) and torch.allclose(m.images, want_x, atol=1e-5)
    # targets: the base code decoded, then each view's code (MLP shift, written out per example, or stored)
    code = ds.target_coeffs if factorised else ds.targets
    dec = (lambda c: c @ ds.target_bases) if factorised else (lambda c: c)
    rows = [dec(code)]
    for k in range(2):
        if targets == "stored":
            ck = ds.view_codes[k]
        else:
            ck = torch.stack([c + ds.view_w2[k] @ torch.relu(ds.view_w1[k] @ c + ds.view_b1[k]) + ds.view_b2[k]
                              for c in code])
        rows.append(dec(ck))
    assert torch.allclose(m.targets, torch.cat(rows), atol=1e-4)
    assert torch.equal(m.labels, ds.labels.repeat(3))


def test_approximation_networks_reach_the_materialised_targets():
    ds = hand_set()
    before = ds.materialize().targets
    ds.view_b2[1] += 1.0                          # shift view 2's (hflip's) code by one in every coefficient
    after = ds.materialize().targets
    n = 5
    assert torch.equal(after[: 2 * n], before[: 2 * n])            # identity and rot90 rows untouched
    assert torch.allclose(after[2 * n:] - before[2 * n:], torch.ones(6) @ ds.target_bases.expand(n, 6, 7)[0], atol=1e-4)


def test_v2_roundtrip_and_v1_files_still_load(tmp_path):
    ds = hand_set()
    back = DistilledSet.load(ds.save(tmp_path / "v2.safetensors"))
    assert all(torch.equal(back.tensors()[k], t) for k, t in ds.tensors().items()) and back.views == ["rot90", "hflip"]
    assert torch.equal(back.materialize().targets, ds.materialize().targets)
    from safetensors.torch import load_file, safe_open, save_file
    with safe_open(str(tmp_path / "v2.safetensors"), "pt") as f:
        header = json.loads(f.metadata()["ssdd"])
    assert header["version"] == 2
    # a version-1 file (no views) as release 0.1 wrote it
    plain = DistilledSet(images=torch.rand(3, 3, 8, 8), targets=torch.randn(3, 4), meta=dict(META, method="krr_st"))
    tensors = plain.tensors()
    header = {"format": "ssdd.distilled", "version": 1, **plain.meta}
    save_file(tensors, str(tmp_path / "v1.safetensors"), metadata={"ssdd": json.dumps(header)})
    v1 = DistilledSet.load(tmp_path / "v1.safetensors")
    assert torch.equal(v1.images, tensors["images"]) and v1.views == [] and len(v1.materialize()) == 3
    assert load_file(str(tmp_path / "v1.safetensors")).keys() == tensors.keys()


def test_inconsistent_views_are_refused(tmp_path):
    ds = hand_set()
    with pytest.raises(FileFormatError, match="view_w1"):
        DistilledSet(**{**ds.tensors(), "view_w1": torch.randn(2, 2, 5)}, meta=ds.meta).validate()
    with pytest.raises(FileFormatError, match="declares no 'views'"):
        DistilledSet(**ds.tensors(), meta=dict(META, num_classes=3)).validate()
    with pytest.raises(FileFormatError, match="transforms"):
        DistilledSet(**ds.tensors(), meta=dict(ds.meta, views=dict(ds.meta["views"], transforms=["spin"]))).validate()
    with pytest.raises(FileFormatError, match="stored view targets"):
        DistilledSet(**ds.tensors(), meta=dict(ds.meta, views=dict(ds.meta["views"], targets="stored"))).validate()


PLANS = [dict(), dict(view_targets="stored"), dict(views=[]), dict(factorize_images=False, images=8),
         dict(image_bases=20, target_bases=5, images=30), dict(factorize_targets=False, views=[], images=12)]


@pytest.mark.parametrize("labelled", [False, True])
def test_byte_accounting_counts_every_stored_tensor_once(labelled):
    for kw in PLANS:
        cfg = Config(**kw)
        plan = plan_storage(cfg, budget=25, channels=3, size=32, dim=512, labelled=labelled)
        m, u, v, k = plan.images, plan.image_bases, plan.target_bases, len(cfg.views)
        p = v or 512
        floats = (u * 3 * 16 * 16 + m * u if u else m * 3072) + (v * 512 + m * v if v else m * 512)
        floats += (k * (2 * 4 * p + 4 + p) if cfg.view_targets == "network" else k * m * p)
        assert plan.total == 4 * floats + (8 * m if labelled else 0), kw
        assert plan.total <= 25 * 3072 * 4, kw


def test_a_setting_over_the_budget_is_refused_with_the_numbers(tmp_path):
    with pytest.raises(ConfigError, match=r"stores 3[0-9.]+ image-equivalents, more than the budget N=25.*images 30"):
        plan_storage(Config(factorize_images=False, images=30, views=[]), budget=25, channels=3, size=32, dim=64)
    with pytest.raises(ConfigError, match="image bases 1.00"):   # 4 x 768 floats of bases = 1 image-equivalent
        plan_storage(Config(image_bases=4, target_bases=2, images=3000), budget=2, channels=3, size=32, dim=64)
    tiny_teacher().save(tmp_path / "teacher.safetensors")
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["distill", "data.name=sample", "method=boost", "budget=5", "params.images=500",
                                 "params.factorize_images=false", f"teacher={tmp_path / 'teacher.safetensors'}",
                                 f"output={out / 'b.safetensors'}"])
    assert r.exit_code == 2 and "more than the budget N=5" in r.output and "Traceback" not in r.output
    assert not out.exists() or not list(out.iterdir())


def _boost_cfg(tmp_path, **kw):
    params = dict(Boost_TINY, **kw.pop("params", {}))
    base = dict(data=DataConfig(name="sample"), method="boost", budget=10, steps=30, output=str(tmp_path / "b.safetensors"),
                checkpoint_every=0, log_every=1, params=params)
    base.update(kw)
    return DistillConfig(**base)


Boost_TINY = dict(pool_arch=TINY, pool_size=2, pool_steps=6, real_batch=128, lr_images=1e-2, lr_targets=1e-2,
                  lr_nets=1e-2, basis_size=8, pca_images=256, net_init_steps=50)


@pytest.fixture(scope="module")
def boost_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("boost")
    src = small_source(40)
    teacher = tiny_teacher(source=src)
    torch.manual_seed(0)
    res = run_distillation(_boost_cfg(d, steps=40), teacher=teacher, source=src)
    return d, res, teacher


def test_short_run_lowers_the_outer_loss_and_round_trips(boost_run):
    d, res, teacher = boost_run
    losses = torch.tensor([h["loss"] for h in res.history])
    assert len(losses) == 40 and losses[-8:].mean() < 0.9 * losses[:8].mean(), losses
    ds = res.set
    plan = plan_storage(Config(**{k: v for k, v in Boost_TINY.items()}), 10, 3, 32, teacher.dim)
    assert dict(ds.budget_breakdown()) == {k: v for k, v in plan.parts.items() if v}
    assert ds.storage_bytes() == plan.total and ds.image_equivalents() <= 10
    back = DistilledSet.load(res.path)
    assert set(back.tensors()) == set(ds.tensors()) == {"image_bases", "image_coeffs", "target_bases", "target_coeffs",
                                                        "view_w1", "view_b1", "view_w2", "view_b2"}
    assert all(torch.equal(back.tensors()[k], t) for k, t in ds.tensors().items())
    m = back.materialize()
    assert m.images.shape == (4 * plan.images, 3, 32, 32) and m.targets.shape == (4 * plan.images, teacher.dim)
    r = CliRunner().invoke(cli, ["info", str(res.path)])
    assert r.exit_code == 0 and "approximation networks" in r.output and "budget N" in r.output
    assert f"materialises to {4 * plan.images} examples" in r.output


@pytest.mark.parametrize("view_targets", ["network", "stored"])
def test_what_the_method_trains_on_is_what_the_file_materialises(view_targets):
    from distill.methods import DistillContext
    from distill.methods.boost import Boost
    src = small_source(10)
    teacher = tiny_teacher(source=src)
    cfg = Config(**{**Boost_TINY, "net_init_steps": 3, "view_targets": view_targets})
    m = Boost(cfg, DistillContext(source=src, teacher=teacher, budget=10, steps=2, device=torch.device("cpu")))
    m.setup()
    m.step(0)
    with torch.no_grad():
        x_s, y_s = m.synthetic()
    ds = m.export()
    ds.meta.update(method="boost", image_size=32, channels=3, mean=list(src.mean), std=list(src.std))
    mat = ds.validate().materialize()
    assert torch.allclose(x_s * m.std + m.mean, mat.images, atol=1e-5)
    assert torch.allclose(y_s, mat.targets, atol=1e-5)


def test_the_ablation_variants_run(tmp_path):
    src = small_source(20)
    teacher = tiny_teacher(source=src)
    for name, params in {"bases": dict(views=[]), "stored": dict(view_targets="stored"),
                         "plain": dict(factorize_images=False, factorize_targets=False, views=[], images=6)}.items():
        res = run_distillation(_boost_cfg(tmp_path / name, steps=3, params=params), teacher=teacher, source=src)
        assert res.set.image_equivalents() <= 10
        if name == "plain":   # Boost without its additions stores what KRR-ST stores
            assert set(res.set.tensors()) == {"images", "targets"}
        if name == "stored":
            assert res.set.view_codes.shape[:2] == (3, res.set.meta["boost"]["images"])


def test_boost_is_krr_st_with_another_parameterisation():
    from distill.methods.boost import Boost
    assert issubclass(Boost, KRRST) and Boost.step is KRRST.step and Boost._pool_step is KRRST._pool_step


def test_a_boost_set_loads_in_every_application(boost_run, tmp_path):
    d, res, teacher = boost_run
    path = res.path
    ds = DistilledSet.load(path)
    # evaluation (the KRR-ST protocol's pre-training on the materialised views)
    train, test = small_source(10), small_source(5, split="test")
    cfg = EvalConfig(arch=TINY, pretrain=PretrainConfig(epochs=1), finetune=FinetuneConfig(iterations=2, batch_size=32),
                     linear=LinearConfig(steps=3, label_fractions=[1.0]), seeds=[0], output=str(tmp_path / "eval"))
    rep = evaluate_sets({"boost": ds}, cfg, targets={"sample": (train, test, TargetConfig())}, verbose=False)
    assert {r["metric"] for r in rep.rows} == {"linear", "finetune"}
    # transfer
    npz = small_npz(tmp_path / "t.npz", 10, 5)
    r = CliRunner().invoke(cli, ["transfer", f"sets=[{{label: boost, path: {path}}}]", f"archs=[{TINY}]",
                                 f"targets=[{{name: npz, root: {npz}}}]", "pretrain.epochs=1", "finetune.iterations=2",
                                 "finetune.batch_size=32", "linear.steps=2", "seeds=[0]", "device=cpu",
                                 f"output={tmp_path / 'tr'}"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    # knowledge distillation: the materialised views are the transfer images
    from applications.kd import KDConfig, run_kd, train_classifier
    clf = train_classifier(TINY, small_source(10), test, iterations=5, lr=0.05, batch_size=32)
    clf.save(tmp_path / "clf.safetensors")
    kd = run_kd(KDConfig(teacher=str(tmp_path / "clf.safetensors"), set=str(path), students=[TINY], iterations=3,
                         sources=["set", "noise"],
                         batch_size=32, target=TargetConfig(name="sample"), device="cpu", output=str(tmp_path / "kd")))
    assert {r["source"] for r in kd["rows"]} >= {"set"}


def test_a_boost_buffer_in_continual_learning():
    from distill.errors import UserError
    pytest.importorskip("avalanche")
    from applications.continual import DistilledBuffer, real_item_bytes, split_benchmark
    from distill.models import create_model
    bench = split_benchmark("sample", n_experiences=5, train_per_class=12, test_per_class=6)
    model = create_model(TINY, out_dim=10, image_size=32)
    memory = 20 * 10 * real_item_bytes(3, 32)
    with pytest.raises(UserError, match="n_experiences"):
        DistilledBuffer(memory, mean=bench.mean, std=bench.std, image_size=32, method="boost")
    buf = DistilledBuffer(memory, mean=bench.mean, std=bench.std, image_size=32,
                          teacher="model", method="boost", steps=2, device="cpu", n_experiences=5,
                          params=dict(Boost_TINY, pool_steps=3, net_init_steps=2, images_ratio=1.0))
    stream = list(bench.scenario.train_stream)
    agent = type("A", (), {"model": model})()
    buf.post_adapt(agent, stream[0])
    share = buf.shares[0]
    # the experience's fixed share: memory / 5 bytes = 10 float32 image-equivalents (of 3072 x 4 bytes), and the
    # share counts what the set stores, not the images it expands into (kept whole: 1 + 3 views of each image)
    n_eq = (memory // 5) // (3 * 32 * 32 * 4)
    assert n_eq == 10 and share.info["stored_bytes"] <= n_eq * 3 * 32 * 32 * 4
    assert buf.bytes_used() == share.info["stored_bytes"] <= memory // 5
    assert len(buf) == len(share.labels) and len(buf) % 4 == 0
    assert len(buf) > share.info["stored_bytes"] // real_item_bytes(3, 32)   # more images than plain bytes allow
    assert set(share.labels.tolist()) == set(exp_classes := stream[0].classes_in_this_experience)
    buf.post_adapt(agent, stream[1])           # the first share is not cut when the second arrives
    assert buf.shares[0] is share and buf.bytes_used() <= 2 * (memory // 5) and exp_classes


def test_pixel_lr_scale_divides_by_the_terms_of_each_product():
    from distill.methods import DistillContext
    from distill.methods.boost import Boost
    src = small_source(10)
    teacher = tiny_teacher(source=src)
    lrs = {}
    for scale in ("parameter", "pixel"):
        cfg = Config(**{**Boost_TINY, "net_init_steps": 0, "lr_scale": scale, "views": []})
        m = Boost(cfg, DistillContext(source=src, teacher=teacher, budget=10, steps=1, device=torch.device("cpu")))
        m.setup(fresh=False)
        lrs[scale] = [g["lr"] for g in m.opt.param_groups]
    assert lrs["parameter"] == [1e-2] * 4
    u, v = m.plan.image_bases, m.plan.target_bases
    mass_a, mass_c = float(m.a_img.abs().sum(1).mean()), float(m.t_c.abs().sum(1).mean())
    unit = float(m.std.mean())
    want = [1e-2 * unit / mass_a, 1e-2 * unit / u, 1e-2 / mass_c, 1e-2 / v]
    assert lrs["pixel"] == pytest.approx(want, rel=1e-5)
