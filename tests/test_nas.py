import json
import math

import pytest
import torch

nni = pytest.importorskip("nni")

from applications.nas import NASConfig, build, evaluate_proxy, kendall_tau_b, run_search, sample_architectures, spearman  # noqa: E402
from applications.nas.config import GroundTruthConfig, ProxyConfig, ScoreConfig  # noqa: E402
from applications.nas.spaces import ConvNetSpace, NB201Space  # noqa: E402
from distill.config import LinearConfig, PretrainConfig, TargetConfig  # noqa: E402
from distill.distilled import DistilledSet  # noqa: E402

from .helpers import small_npz, small_source, tiny_teacher  # noqa: E402


@pytest.mark.parametrize("space", ["convnet", "nb201"])
def test_spaces_sample_valid_runnable_models(space):
    cls = ConvNetSpace if space == "convnet" else NB201Space
    choices = cls.choices()
    archs = sample_architectures(space, 4, seed=1)
    assert len({json.dumps(a, sort_keys=True) for a in archs}) == 4
    assert archs == sample_architectures(space, 4, seed=1)  # seeded
    for arch in archs:
        assert set(arch) == set(choices) and all(arch[k] in choices[k] for k in arch)
        net = build(space, arch)
        x = torch.rand(2, 3, 32, 32, requires_grad=True)
        f = net.embed(x)
        assert f.shape == (2, net.feature_dim)
        net.reset_head(5)
        net(x).sum().backward()
        assert x.grad is not None
    # an all-"none" cell still builds and runs (its features are constant)
    if space == "nb201":
        net = build("nb201", {k: "none" for k in choices})
        assert torch.isfinite(net.embed(torch.rand(2, 3, 32, 32))).all()
    else:
        assert choices["depth"] == [2, 3, 4, 5]
        assert ConvNetSpace.choices(image_size=16)["depth"] == [2, 3, 4]


def test_rank_statistics_against_closed_forms():
    from applications.nas.stats import bootstrap_ci, regret, top_k_overlap
    # one discordant pair of six: tau = (5 - 1) / 6; rho = 1 - 6 * sum d^2 / (n (n^2 - 1)) = 1 - 12 / 60
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # ties: pairs (1,2) tied in a only, (1,3) and (2,3) concordant: tau-b = 2 / sqrt(3 * 2)
    assert kendall_tau_b([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    # ties share their average rank: ranks of a = (1.5, 1.5, 3), Pearson with (1, 2, 3) = sqrt(3) / 2
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(math.sqrt(3) / 2)
    assert top_k_overlap([5, 4, 3, 2, 1], [1, 4, 3, 2, 5], k=2) == 0.5      # {0, 1} vs {4, 1}
    assert regret([0.1, 0.9, 0.5], [70.0, 60.0, 75.0]) == pytest.approx(15.0)  # picks item 1 (60), best 75
    a = list(range(30))
    lo, hi = bootstrap_ci(kendall_tau_b, a, a)                # a perfect ranking stays perfect under resampling
    assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0)
    noisy = [x + 8 * ((x * 7) % 5 - 2) for x in a]
    t = kendall_tau_b(noisy, a)
    lo, hi = bootstrap_ci(kendall_tau_b, noisy, a)
    assert lo < t < hi and hi - lo > 0.05


def test_a_proxy_that_ties_every_architecture_ranks_nothing():
    from applications.nas.bench import correlations
    assert correlations([5.0, 5.0, 5.0], [1.0, 2.0, 3.0]) == (0.0, 0.0, (0.0, 0.0), True)
    tau, rho, (lo, hi), tied = correlations([1.0, 3.0, 2.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert not tied and tau == pytest.approx(2 / 3) and rho == pytest.approx(0.8) and lo <= tau <= hi


@pytest.fixture(scope="module")
def nas_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("nas")
    src = small_source(10)
    teacher = tiny_teacher(source=src)
    x = src.float()[:20]
    meta = dict(method="random", source="sample", image_size=32, channels=3, mean=list(src.mean), std=list(src.std))
    DistilledSet(images=x, targets=teacher.encode(x), meta=meta).save(d / "a.safetensors")
    DistilledSet(images=x.flip(-1), targets=teacher.encode(x.flip(-1)), meta=meta).save(d / "b.safetensors")
    return d, small_npz(d / "target.npz", 30, 10)


def _cfg(d, npz, **kw):
    base = dict(space="convnet", space_args={"depths": [2], "widths": [8, 16]},
                proxies=[ProxyConfig("a", str(d / "a.safetensors")), ProxyConfig("b", str(d / "b.safetensors"))],
                target=TargetConfig(name="npz", root=str(npz)), pretrain=PretrainConfig(epochs=2),
                score=ScoreConfig(train_per_class=20, val_per_class=10, linear=LinearConfig(steps=5)),
                ground_truth=GroundTruthConfig(epochs=1, batch_size=64, cache_dir=str(d / "gt")),
                trials=3, num_archs=3, output=str(d / "out"), device="cpu")
    base.update(kw)
    return NASConfig(**base)


@pytest.mark.parametrize("strategy", ["random", "evolution", pytest.param("tpe", marks=pytest.mark.slow)])
def test_in_process_search_completes_and_exports(nas_files, strategy):
    d, npz = nas_files
    res = run_search(_cfg(d, npz, strategy=strategy, output=str(d / f"out-{strategy}")))
    assert set(res) == {"a", "b"}
    for label, r in res.items():
        assert len(r.trials) == 3 and all(0 <= t["score"] <= 100 for t in r.trials)
        data = json.loads(r.paths["json"].read_text())
        assert data["best"]["score"] == max(t["score"] for t in data["trials"])
        assert len(r.paths["csv"].read_text().strip().splitlines()) == 4


def test_evaluate_proxy_report_and_ground_truth_cache(nas_files, monkeypatch):
    d, npz = nas_files
    res = evaluate_proxy(_cfg(d, npz))
    assert len(res["rows"]) == 3 and set(res["summary"]) == {"a", "b"}
    for s in res["summary"].values():
        assert -1 <= s["spearman"] <= 1 and s["best_gt_acc"] >= s["picked_gt_acc"]
    assert res["paths"]["plot"].exists() and "Spearman" in res["markdown"]
    # the second time, ground truth comes from the cache: training must not run
    import applications.nas.evaluator as ev
    monkeypatch.setattr(ev, "finetune", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    again = evaluate_proxy(_cfg(d, npz))
    assert all(r["gt_cached"] for r in again["rows"])
    assert [r["gt_acc"] for r in again["rows"]] == [r["gt_acc"] for r in res["rows"]]


def test_parallel_trials_need_the_local_engine(nas_files):
    from distill.errors import ConfigError
    d, npz = nas_files
    with pytest.raises(ConfigError, match="concurrency 2 needs engine=local"):
        _cfg(d, npz, concurrency=2).validate()
    with pytest.raises(ConfigError, match="unknown engine"):
        _cfg(d, npz, engine="remote").validate()


@pytest.mark.slow
def test_local_training_service_runs_trials_in_parallel_processes(nas_files, monkeypatch):
    """NNI's local training service (engine=local, 2 trials at once): every trial's score equals the one
    this process computes for the same architecture (the same seeded pre-training and probe)."""
    from applications.nas.evaluator import ProxyEvaluator, load_proxies, load_target, split_for_scoring
    d, npz = nas_files
    monkeypatch.chdir(d)
    cfg = _cfg(d, npz, engine="local", concurrency=2, proxies=[ProxyConfig("a", str(d / "a.safetensors"))],
               output=str(d / "out-local"))
    res = run_search(cfg)
    trials = res["a"].trials
    assert len(trials) == 3
    sets = load_proxies(cfg)
    train, _ = load_target(cfg, 32, 3)
    fit, val = split_for_scoring(train, cfg.score, cfg.seed)
    ev = ProxyEvaluator(cfg, "a", sets["a"], fit, val)
    for t in trials:
        net = build("convnet", t["arch"], image_size=32, in_chans=3, **cfg.space_args)
        assert ev.score(net, t["arch"]) == pytest.approx(t["score"])


def test_a_capped_ground_truth_trains_every_seed_on_the_same_images(nas_files):
    """The seed-to-seed spread of the ground truth is the training's: seeds 0 and 1 fit the same capped
    subset (drawn by ``subset_seed``), and another subset_seed draws other images."""
    from applications.nas.evaluator import GroundTruth, load_target
    d, npz = nas_files

    def train_of(seed, subset_seed=0):
        cfg = _cfg(d, npz, seed=seed, ground_truth=GroundTruthConfig(epochs=1, train_per_class=5,
                                                                     subset_seed=subset_seed, cache_dir=str(d / "gt")))
        train, test = load_target(cfg, 32, 3)
        return GroundTruth(cfg, train, test).train.images

    a, b, c = train_of(0), train_of(1), train_of(0, subset_seed=1)
    assert len(a) == 50 and torch.equal(a, b) and not torch.equal(a, c)
