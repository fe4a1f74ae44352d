import pytest
import torch
from click.testing import CliRunner

from applications.kd import Classifier, KDConfig, noise_images, run_kd, train_classifier
from distill.cli import cli
from distill.config import TargetConfig
from distill.distilled import DistilledSet
from distill.errors import ConfigError, FileFormatError

from .helpers import TINY, small_npz, small_source, tiny_teacher


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("kd")
    torch.manual_seed(0)
    train, test = small_source(40), small_source(20, split="test")
    clf = train_classifier("convnet-d2-w16-bn", train, test, iterations=150, lr=0.05, batch_size=64)
    clf.save(d / "teacher.safetensors")
    src = small_source(30)  # a "source" set: other images of the sample, teacher targets
    rep = tiny_teacher(source=src)
    idx = torch.arange(0, 300, 3)
    x = src.float(idx)
    meta = dict(method="random", source="sample", image_size=32, channels=3, mean=list(src.mean), std=list(src.std))
    DistilledSet(images=x, targets=rep.encode(x), meta=meta).save(d / "set.safetensors")
    x2 = src.float(idx + 1)
    DistilledSet(images=x2, targets=rep.encode(x2), meta=meta).save(d / "random.safetensors")
    return d, clf


def test_classifier_file_roundtrip(files, tmp_path):
    d, clf = files
    back = Classifier.load(d / "teacher.safetensors")
    x = torch.rand(3, 3, 32, 32)
    clf.model.eval()
    assert torch.allclose(back.model.eval()(x), clf.model(x), atol=1e-6)
    assert back.meta["test_acc"] == clf.meta["test_acc"] > 15  # learned something on 10 classes
    torch.save({"w": 1}, tmp_path / "bad.safetensors")
    with pytest.raises(FileFormatError):
        Classifier.load(tmp_path / "bad.safetensors")


def test_kd_improves_the_student_over_its_start(files, tmp_path):
    d, clf = files
    cfg = KDConfig(teacher=str(d / "teacher.safetensors"), set=str(d / "set.safetensors"),
                   random_set=str(d / "random.safetensors"), students=[TINY], iterations=80, batch_size=64,
                   lr=3e-3, target=TargetConfig(name="sample"), device="cpu", output=str(tmp_path))
    res = run_kd(cfg)
    rows = {r["source"]: r for r in res["rows"]}
    assert set(rows) == {"set", "noise", "random"}
    start = rows["set"]["start_acc"]
    assert rows["set"]["acc"] > start + 5, rows  # the student learns the teacher's task from the set's images
    assert (tmp_path / "results.md").exists() and "| student |" in res["table"]


def test_noise_images_follow_the_source_statistics():
    s = DistilledSet(images=torch.rand(4, 3, 8, 8), targets=torch.zeros(4, 2),
                     meta=dict(method="x", image_size=8, channels=3, mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2]))
    z = noise_images(2000, s, torch.Generator().manual_seed(0))
    assert z.shape == (2000, 3, 8, 8)
    assert torch.allclose(z.mean((0, 2, 3)), torch.tensor([0.5, 0.4, 0.3]), atol=0.01)
    assert torch.allclose(z.std((0, 2, 3)), torch.tensor([0.2, 0.2, 0.2]), atol=0.01)


def test_transfer_command_table_for_two_archs(files, tmp_path):
    d, _ = files
    npz = small_npz(tmp_path / "t.npz", 20, 10)
    r = CliRunner().invoke(cli, ["transfer", f"sets=[{{label: krr, path: {d / 'set.safetensors'}}}, "
                                             f"{{label: random, path: {d / 'random.safetensors'}}}]",
                                 f"archs=[{TINY}, convnet-d2-w16-in]", f"targets=[{{name: npz, root: {npz}}}]",
                                 "pretrain.epochs=2", "finetune.iterations=5", "finetune.batch_size=32",
                                 "linear.steps=5", "seeds=[0]", "device=cpu", f"output={tmp_path / 'out'}"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    md = (tmp_path / "out" / "results.md").read_text()
    header = md.split("\n| ")[0]
    for arch in (TINY, "convnet-d2-w16-in"):
        assert f"| {arch} |" in md
    # every (target, metric, set) column is filled for every architecture: no "–" cells
    table_rows = [line for line in md.splitlines() if line.startswith("| convnet")]
    assert len(table_rows) == 2 and all("–" not in line for line in table_rows)
    assert table_rows[0].count("|") == 2 + 2 * 3  # arch + {linear, finetune} x {krr, random, no pre-training}
    assert (tmp_path / "out" / "transfer.png").exists() and header


def test_kd_iterations_are_chosen_on_held_out_training_images_and_the_test_split_is_never_read(tmp_path, monkeypatch):
    """schedule_grid: each count trains the student on a random source draw, the accuracy on held-out *training*
    images picks the smallest count within the tolerance of the best; the choice is cached, in the cells' key,
    and the cells train for it."""
    from applications.kd import bench as kdb
    from distill.config import load_config
    from distill.data import load_dataset
    from distill.evaluate.config import TargetConfig
    from distill.leaderboard import LeaderboardConfig
    from distill.leaderboard.apps import AppContext
    assert kdb.choose_schedule({(1e-3, 100): 20.0, (1e-3, 200): 24.6, (1e-3, 400): 25.0, (1e-3, 800): 24.8}, 0.5) \
        == (1e-3, 200)
    assert kdb.choose_schedule({(1e-3, 100): 20.0, (1e-3, 200): 24.0, (1e-3, 400): 25.0}, 0.0) == (1e-3, 400)
    train, test = load_dataset("sample", split="train"), load_dataset("sample", split="test")
    cfg = load_config(LeaderboardConfig, extra={"name": "x", "rows": [{"method": "random"}], "baselines": ["random"],
                                                "protocols": [{"name": "krrst"}], "amp": "off"})
    seen_eval, seen_iters = [], []
    real_acc, real_kd = kdb.accuracy, kdb.kd_train
    monkeypatch.setattr(kdb, "accuracy", lambda m, data, **kw: (seen_eval.append(len(data)), real_acc(m, data, **kw))[1])
    monkeypatch.setattr(kdb, "kd_train", lambda st, t, x, c, d, desc="": (seen_iters.append((desc, c.iterations)),
                                                                          real_kd(st, t, x, c, d, desc))[1])
    ctx = AppContext(cfg=cfg, spec=None, src=train, teacher=None,
                     targets={"sample": (train, test, TargetConfig(name="sample"))}, device=torch.device("cpu"),
                     folder=tmp_path,
                     budget=10, log=lambda *_: None)
    params = {"students": ["convnet-d2-w8-bn"], "teacher": {"arch": "convnet-d2-w8-bn", "iterations": 5}, "dsa": "",
              "batch_size": 8, "schedule_grid": [3, 6], "schedule_per_class": 2, "schedule_tolerance": 100.0}
    app = kdb.KDApp(ctx, params)
    text = app.prepare()
    held = 2 * train.num_classes
    assert seen_eval[-2:] == [held, held]                      # the grid read held-out training images only
    assert [n for d, n in seen_iters if d.startswith("kd schedule")] == [3, 6]
    assert app.iterations == {"convnet-d2-w8-bn": 3}           # a huge tolerance: the smallest count
    assert "chosen per student on held-out training images" in text and app.key()["iterations_chosen"] == app.iterations
    assert "widen the grid" not in text                       # 3 is not the grid's largest count
    assert len(list(tmp_path.glob("kd-schedule-*.json"))) == 1
    seen_iters.clear()
    again = kdb.KDApp(ctx, params)
    again.prepare()                                            # cached: no schedule run
    assert not seen_iters and again.iterations == app.iterations
    rows = again.cell("noise", None, 0, 0, None)               # a cell trains for the chosen count
    assert seen_iters == [("kd convnet-d2-w8-bn <- noise", 3)] and rows[0]["metric"] == "kd convnet-d2-w8-bn"
    # schedule_lrs: every (lr, count) pair is tried; the cheapest pair within the tolerance of the best wins, its lr
    # goes into the cells' key and their training
    assert kdb.choose_schedule({(1e-3, 100): 20.0, (1e-3, 200): 25.0, (3e-3, 100): 24.8, (3e-3, 200): 25.2}, 0.5) \
        == (3e-3, 100)
    assert kdb.choose_schedule({(1e-3, 100): 25.0, (3e-3, 100): 25.2, (1e-3, 200): 30.0}, 0.0) == (1e-3, 200)
    assert kdb.choose_schedule({(1e-3, 100): 25.0, (3e-3, 100): 25.2}, 1.0) == (3e-3, 100)   # a tie: the better one
    seen_lrs = []
    monkeypatch.setattr(kdb, "kd_train", lambda st, t, x, c, d, desc="": (seen_iters.append((desc, c.iterations)),
                                                                          seen_lrs.append(c.lr),
                                                                          real_kd(st, t, x, c, d, desc))[2])
    seen_iters.clear()
    two = kdb.KDApp(ctx, {**params, "schedule_lrs": [0.5, 1e-3]})
    text = two.prepare()
    assert sorted(zip(seen_lrs, [n for _, n in seen_iters])) == [(1e-3, 3), (1e-3, 6), (0.5, 3), (0.5, 6)]
    assert two.iterations == {"convnet-d2-w8-bn": 3} and two.lrs["convnet-d2-w8-bn"] in (0.5, 1e-3)
    assert two.key()["lr_chosen"] == two.lrs and "lr 0.5:" in text
    assert len(list(tmp_path.glob("kd-schedule-*.json"))) == 2                 # its own cache entry
    seen_lrs.clear()
    two.cell("noise", None, 0, 0, None)
    assert seen_lrs == [two.lrs["convnet-d2-w8-bn"]]
    with pytest.raises(ConfigError, match="schedule_lrs must be distinct positive"):
        kdb.KDBenchConfig(schedule_grid=[3], schedule_lrs=[0.0]).validate()
    with pytest.raises(ConfigError, match="schedule_lrs needs a schedule_grid"):
        kdb.KDBenchConfig(schedule_lrs=[1e-3]).validate()
