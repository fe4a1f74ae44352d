import pytest
import torch

pytest.importorskip("avalanche")

from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin  # noqa: E402
from avalanche.training.supervised import Naive  # noqa: E402

from applications.continual import (ContinualConfig, DistilledBuffer, DistilledReplayPlugin, real_buffer_size,  # noqa: E402
                                     real_item_bytes, run_continual, split_benchmark, summarize)
from applications.continual.config import BufferSpec, DistillSpec  # noqa: E402
from applications.continual.run import experience_accuracies  # noqa: E402
from distill.models import create_model  # noqa: E402

TINY = "convnet-d2-w8-bn"
PARAMS = {"pool_arch": TINY, "pool_size": 2, "pool_steps": 3, "real_batch": 32, "lr_images": 1e-2, "lr_targets": 1e-2}


@pytest.fixture(scope="module")
def bench():
    return split_benchmark("sample", n_experiences=5, train_per_class=12, test_per_class=6)


class Recorder(SupervisedPlugin):
    """Records the labels of every training batch and the loss as it reaches backward."""

    def __init__(self):
        super().__init__()
        self.labels, self.extra = [], []

    def before_backward(self, strategy, **kw):
        self.labels.append(strategy.mb_y.detach().cpu())
        ce = torch.nn.functional.cross_entropy(strategy.mb_output, strategy.mb_y)
        self.extra.append(float((strategy.loss - ce).detach()))


def _strategy(model, plugins):
    return Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01), criterion=torch.nn.CrossEntropyLoss(),
                 train_mb_size=16, train_epochs=1, eval_mb_size=64, device="cpu", plugins=plugins,
                 evaluator=EvaluationPlugin(loggers=[]))


def _buffer(bench, model, store_targets=False, memory_per_class=4, dtype="uint8"):
    mem = memory_per_class * bench.num_classes * real_item_bytes(3, 32)
    return DistilledBuffer(mem, mean=bench.mean, std=bench.std, image_size=32, teacher="model", steps=2, params=PARAMS,
                           storage_dtype=dtype, store_targets=store_targets, feature_dim=model.feature_dim,
                           device="cpu")


def test_buffer_budget_class_mapping_and_experience_replay(bench):
    torch.manual_seed(0)
    model = create_model(TINY, out_dim=10, image_size=32)
    buf = _buffer(bench, model)
    assert buf.item_bytes() == real_item_bytes(3, 32) and buf.max_size == real_buffer_size(buf.max_bytes, 3, 32) == 40
    rec = Recorder()
    strategy = _strategy(model, [DistilledReplayPlugin(buf, "experience", batch_size_mem=8), rec])
    stream = list(bench.scenario.train_stream)[:3]
    seen = set()
    for i, exp in enumerate(stream):
        rec.labels.clear()
        strategy.train(exp)
        seen |= set(exp.classes_in_this_experience)
        assert buf.bytes_used() <= buf.max_bytes
        assert len(buf.buffer) == len(buf) and len(buf.shares) == i + 1
        for share, e in zip(buf.shares, stream):
            # each share holds exactly its experience's (mapped) classes, balanced
            assert set(share.labels.tolist()) == set(e.classes_in_this_experience)
            counts = share.labels.bincount()[share.labels.unique()]
            assert counts.max() - counts.min() <= 1
        if i > 0:  # replayed synthetic images of earlier experiences appear in the training batches
            batch_labels = set(torch.cat(rec.labels).tolist())
            assert batch_labels - set(exp.classes_in_this_experience), "no replay in the batches"
            assert batch_labels <= seen
    assert sum(len(s.labels) for s in buf.shares) <= 40
    # the mapping: benchmark label k is original class class_order[k]
    orig = torch.tensor(bench.class_order)
    assert torch.equal(bench.remap(orig), torch.arange(10))


def test_representation_replay_adds_the_feature_term(bench):
    torch.manual_seed(0)
    model = create_model(TINY, out_dim=10, image_size=32)
    buf = _buffer(bench, model, store_targets=True)
    assert buf.item_bytes() == real_item_bytes(3, 32) + 2 * model.feature_dim
    rec = Recorder()
    strategy = _strategy(model, [DistilledReplayPlugin(buf, "representation", batch_size_mem=8, weight=5.0), rec])
    stream = list(bench.scenario.train_stream)
    strategy.train(stream[0])
    assert all(abs(e) < 1e-6 for e in rec.extra)  # empty memory: plain cross-entropy
    assert buf.shares[0].targets is not None and buf.shares[0].targets.dtype == torch.float16
    rec.extra.clear()
    strategy.train(stream[1])
    assert rec.extra and all(e > 0 for e in rec.extra)  # the MSE term to stored features is added


def test_our_accuracy_matches_avalanche(bench):
    from avalanche.evaluation.metrics import accuracy_metrics
    torch.manual_seed(0)
    model = create_model(TINY, out_dim=10, image_size=32)
    s = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.05), criterion=torch.nn.CrossEntropyLoss(),
              train_mb_size=16, train_epochs=1, eval_mb_size=64, device="cpu",
              evaluator=EvaluationPlugin(accuracy_metrics(experience=True), loggers=[]))
    s.train(next(iter(bench.scenario.train_stream)))
    res = s.eval(bench.scenario.test_stream)
    ours = experience_accuracies(model, bench, torch.device("cpu"))
    theirs = [100 * v for k, v in sorted(res.items()) if k.startswith("Top1_Acc_Exp")]
    assert ours == pytest.approx(theirs, abs=1e-6)


def test_summarize_closed_form():
    m = [[90.0, 0.0, 0.0], [60.0, 80.0, 0.0], [50.0, 70.0, 85.0]]
    s = summarize(m)
    assert s["final_avg_acc"] == pytest.approx((50 + 70 + 85) / 3)
    assert s["avg_forgetting"] == pytest.approx(((90 - 50) + (80 - 70)) / 2)
    assert s["seen_avg_acc"] == pytest.approx([90.0, 70.0, (50 + 70 + 85) / 3])


def test_two_experience_run_completes(tmp_path, monkeypatch):
    cfg = ContinualConfig(benchmark="sample", n_experiences=2, train_per_class=10, test_per_class=5, arch=TINY,
                          epochs=1, batch_size=16, memory_per_class=2, retrain_epochs=2, seeds=[0],
                          buffers=[BufferSpec("none"), BufferSpec("reservoir"), BufferSpec("class_balanced", "retrain"),
                                   BufferSpec("distilled", "retrain")],
                          distill=DistillSpec(steps=2, params=PARAMS), device="cpu", output=str(tmp_path))
    res = run_continual(cfg)
    assert len(res["runs"]) == 4
    for r in res["runs"]:
        assert len(r["matrix"]) == 2 and all(len(row) == 2 for row in r["matrix"])
        assert r["sizes"][-1]["bytes"] <= (r["memory_bytes"] or 0) or r["kind"] == "none"
    assert (tmp_path / "results.md").exists() and (tmp_path / "accuracy.png").exists()
    assert "| distilled (retrain) |" in res["table"] and "| class-balanced (real), retrain |" in res["table"]
    assert len(list((tmp_path / "runs").glob("*.json"))) == 4
    assert f"= {res['runs'][1]['memory_bytes']} bytes for every buffer" in res["markdown"]  # not naive's 0
    r = res["runs"][1]   # the reservoir's row states what it holds against its budget
    assert f"| {r['buffer']} | {r['sizes'][-1]['bytes'] / 1024:.0f} / {r['memory_bytes'] / 1024:.0f} KiB |" in res["table"]

    # started again with the same settings, the finished runs are reused, not recomputed
    import applications.continual.run as run_mod

    def boom(*a, **k):
        raise AssertionError("a finished run was recomputed")
    monkeypatch.setattr(run_mod, "run_one", boom)
    again = run_continual(cfg)
    assert [r["matrix"] for r in again["runs"]] == [r["matrix"] for r in res["runs"]]
    # a changed setting invalidates them
    cfg.epochs = 2
    with pytest.raises(AssertionError, match="recomputed"):
        run_continual(cfg)


def test_buffers_with_one_name_are_refused():
    from distill.config import load_config
    from distill.errors import ConfigError
    with pytest.raises(ConfigError, match="share the name"):
        load_config(ContinualConfig, None, ["buffers=[{kind: reservoir}, {kind: reservoir}]"])
    cfg = load_config(ContinualConfig, None, ["buffers=[{kind: reservoir}, {kind: reservoir, label: second}]"])
    assert [b.label for b in cfg.buffers] == ["", "second"]


@pytest.mark.parametrize("method,params", [
    ("mkdt", {"syn_steps": 2, "batch_syn": 4, "max_start_epoch": 1, "expert_epochs": 1}),
    ("scdd", {"squeeze_epochs": 2, "lr": 0.1, "classifier": "trained-on-every-class.safetensors"}),
])
def test_methods_that_read_experts_or_a_classifier_fill_each_experience_from_it(bench, method, params, monkeypatch):
    """MKDT trains experts on each experience (regressing the same teacher) in a folder deleted afterwards; SC-DD
    squeezes a head over the experience's classes (the all-class classifier file is dropped). Each share holds
    its experience's benchmark classes, balanced, within the bytes."""
    import distill.methods.mkdt.experts as experts_mod
    trained = []
    real_train = experts_mod.train_experts

    def spy(cfg, **kw):
        trained.append((cfg.arch, cfg.experts, cfg.epochs, cfg.output, len(kw["source"]),
                        sorted(set(kw["source"].labels.tolist()))))
        return real_train(cfg, **kw)
    monkeypatch.setattr(experts_mod, "train_experts", spy)
    torch.manual_seed(0)
    model = create_model(TINY, out_dim=10, image_size=32)
    mem = 4 * bench.num_classes * real_item_bytes(3, 32)
    buf = DistilledBuffer(mem, mean=bench.mean, std=bench.std, image_size=32, teacher="model", method=method, steps=2,
                          params=params, device="cpu", experts={"arch": "convnet-d2-w8-in", "experts": 2, "epochs": 2,
                                                                 "batch_size": 8})
    assert "classifier" not in buf.params
    strategy = _strategy(model, [DistilledReplayPlugin(buf, "experience", batch_size_mem=8)])
    stream = list(bench.scenario.train_stream)[:2]
    for exp in stream:
        strategy.train(exp)
    assert len(buf.shares) == 2 and buf.bytes_used() <= buf.max_bytes
    for share, e in zip(buf.shares, stream):
        assert set(share.labels.tolist()) == set(e.classes_in_this_experience)
        counts = share.labels.bincount()[share.labels.unique()]
        assert counts.max() - counts.min() <= 1
    if method == "mkdt":
        # one expert run per experience, on that experience's images only (compact labels), in a temporary folder
        assert [t[:3] for t in trained] == [("convnet-d2-w8-in", 2, 2)] * 2
        assert [t[5] for t in trained] == [[0, 1], [0, 1]]
        assert all(not __import__("os").path.exists(t[3]) for t in trained)
    else:
        assert not trained


def test_per_experience_experts_refuse_settings_the_buffer_makes_itself(bench):
    from distill.errors import UserError
    with pytest.raises(UserError, match=r"\['output'\]"):
        DistilledBuffer(10 ** 5, mean=bench.mean, std=bench.std, image_size=32, method="mkdt",
                        experts={"output": "somewhere", "epochs": 2})


def test_split_cifar100_is_ten_experiences_of_ten_disjoint_classes_and_a_memory_holds_its_bytes(monkeypatch):
    """Split CIFAR-100's stream (the loader swapped for a 100-class stand-in of CIFAR-100's shape, so the test needs
    no data): 10 experiences of 10 classes, disjoint, covering all 100, train and test alike; a distilled memory
    filled experience by experience ends holding its byte budget within one image, as a real buffer does."""
    import applications.continual.benchmarks as benchmarks_mod
    from distill.data import ImageSet

    def fake(name, root=None, split="train", *a, **kw):
        per = 3 if split == "train" else 2
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        labels = torch.arange(100).repeat_interleave(per)
        images = torch.randint(0, 256, (len(labels), 3, 32, 32), dtype=torch.uint8, generator=g)
        return ImageSet(images, labels, [f"c{i}" for i in range(100)], name=name, split=split,
                        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    monkeypatch.setattr(benchmarks_mod, "load_dataset", fake)
    bench = benchmarks_mod.split_benchmark("cifar100")              # its default: 10 experiences
    assert bench.n_experiences == 10 and bench.num_classes == 100
    stream = list(bench.scenario.train_stream)
    classes = [set(e.classes_in_this_experience) for e in stream]
    assert len(stream) == 10 and all(len(c) == 10 for c in classes)
    assert set().union(*classes) == set(range(100)) and sum(len(c) for c in classes) == 100      # disjoint
    assert [set(y.tolist()) for _, y in bench.test_sets] == classes
    # the memory: 2 images per class in bytes, filled after each of the 10 experiences (random real images)
    torch.manual_seed(0)
    model = create_model(TINY, out_dim=100, image_size=32)
    mem = 2 * 100 * real_item_bytes(3, 32)
    buf = DistilledBuffer(mem, mean=bench.mean, std=bench.std, image_size=32, teacher="model", method="random_labelled",
                          steps=0, params={}, device="cpu", n_experiences=10)

    class Agent:                        # what post_adapt reads of the strategy
        pass
    agent = Agent()
    agent.model = model
    for e in stream:
        buf.post_adapt(agent, e)
        assert buf.bytes_used() <= buf.max_bytes
    assert buf.max_bytes - buf.bytes_used() < real_item_bytes(3, 32)          # the budget, within one image
    assert [set(s.labels.tolist()) for s in buf.shares] == classes              # each share its experience's classes
    n = real_buffer_size(mem, 3, 32)                                            # a real buffer of the same bytes
    assert n * real_item_bytes(3, 32) <= mem < (n + 1) * real_item_bytes(3, 32) and n == len(buf)
