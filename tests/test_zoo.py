"""The teacher zoo: shipped teachers load by name and match their index, card and recorded k-NN; a damaged
or substituted file is refused by name; a zoo name works wherever a config takes ``teacher:``."""
import json
import shutil

import pytest

from distill import zoo
from distill.errors import FileFormatError, UserError
from distill.evaluate.knn import sample_knn
from distill.ssl.teacher import Teacher

from .helpers import TINY, tiny_teacher

def test_the_cpu_teachers_are_shipped_and_match_their_index_card_and_recorded_knn():
    entries = zoo.index()
    assert "cifar10-convnet-simclr" in entries          # what the CPU presets name
    for name in entries:
        e = entries[name]
        path = zoo.file_of(name, e)
        assert path.stat().st_size == e["bytes"] <= 2_000_000           # a CPU teacher stays under 2 MB
        assert zoo.sha256(path) == e["sha256"]
        t = Teacher.load(name)
        assert t.meta["id"] == e["teacher_id"] and t.meta["source"] == e["source"] and t.meta["arch"] == e["backbone"]
        assert t.meta["knn_top1"] == e["knn_top1"] and t.meta["epochs"] == e["epochs"]
        card = zoo.card(name)
        assert e["sha256"] in card and f"{e['linear_top1']} %" in card and e["command"] in card
        # fp32 k-NN on the fixed sample slice: the value recorded when the teacher was added. fp32 convolutions
        # may round differently on another CPU, so a flip of one query (0.2 points of 500) is tolerated.
        assert abs(sample_knn(t) - e["sample_knn"]["value"]) <= 100 / e["sample_knn"]["queries"] + 1e-9


@pytest.fixture()
def fake_zoo(tmp_path, monkeypatch):
    """A zoo in a temporary folder holding one tiny teacher, ``tiny-zoo``."""
    folder = tmp_path / "zoo"
    folder.mkdir()
    t = tiny_teacher(TINY)
    t.save(folder / "tiny-zoo.safetensors")
    path = folder / "tiny-zoo.safetensors"
    entry = {"file": path.name, "sha256": zoo.sha256(path), "bytes": path.stat().st_size, "source": "sample",
             "backbone": TINY, "ssl": "none", "epochs": 0, "card": "tiny-zoo.md", "command": "tests"}
    (folder / "teachers.json").write_text(json.dumps({"tiny-zoo": entry}))
    monkeypatch.setattr(zoo, "ZOO_DIR", folder)
    monkeypatch.setattr(zoo, "INDEX", folder / "teachers.json")
    return folder


def test_a_damaged_or_substituted_zoo_file_is_refused_by_name(fake_zoo):
    assert Teacher.load("tiny-zoo").meta["arch"] == TINY
    path = fake_zoo / "tiny-zoo.safetensors"
    good = path.read_bytes()
    bad = bytearray(good)
    bad[-5] ^= 0xFF                                  # one flipped bit in the weights: same size, other hash
    path.write_bytes(bytes(bad))
    with pytest.raises(FileFormatError, match="zoo teacher 'tiny-zoo'.*tiny-zoo.safetensors.*does not match"):
        Teacher.load("tiny-zoo")
    other = fake_zoo / "other.safetensors"           # a valid teacher file put in its place
    tiny_teacher(TINY, seed=1).save(other)
    shutil.copyfile(other, path)
    with pytest.raises(FileFormatError, match="tiny-zoo"):
        Teacher.load("tiny-zoo")
    path.unlink()
    with pytest.raises(UserError, match="tiny-zoo.*missing"):
        Teacher.load("tiny-zoo")


def test_an_unknown_name_lists_the_valid_ones_and_a_missing_file_says_how_to_get_a_teacher(fake_zoo, tmp_path):
    with pytest.raises(UserError) as e:
        Teacher.load("cifar11-convnet")
    assert "unknown teacher 'cifar11-convnet'" in str(e.value) and "tiny-zoo" in e.value.fix
    with pytest.raises(UserError) as e:
        Teacher.load(str(tmp_path / "runs" / "teacher_cpu.safetensors"))
    assert "no such teacher file" in str(e.value) and "tiny-zoo" in e.value.fix and "ssdd teacher" in e.value.fix


def test_a_zoo_name_works_in_distill_experts_squeeze_leaderboard_and_continual(fake_zoo, tmp_path):
    from distill.config import load_config
    from distill.methods.mkdt.experts import ExpertsConfig, train_experts
    from distill.leaderboard import LeaderboardConfig, run_leaderboard
    from distill.methods import DistillConfig, run_distillation
    from distill.methods.scdd.squeeze import SqueezeConfig, run_squeeze

    tid = Teacher.load("tiny-zoo").id
    res = run_distillation(DistillConfig(teacher="tiny-zoo", method="random", budget=10, output=None, device="cpu"),
                           quiet=True)
    assert tid in json.dumps(res.set.meta["teacher"])
    ex = train_experts(ExpertsConfig(teacher="tiny-zoo", train_per_class=5, arch=TINY, experts=1, epochs=1,
                                     output=str(tmp_path / "experts"), device="cpu"), quiet=True)
    assert len(ex.paths) == 1
    sq = run_squeeze(SqueezeConfig(teacher="tiny-zoo", train_per_class=5, epochs=1, test_split=None, output=None,
                                   device="cpu"))
    assert sq is not None
    cfg = load_config(LeaderboardConfig, extra={
        "name": "z", "sources": [{"data": {"name": "sample"}, "teacher": "tiny-zoo", "train_per_class": 5,
                                  "budgets": [10]}],
        "rows": [{"method": "random"}], "baselines": ["random"], "full_source": False, "no_pretrain": False, "arch": TINY,
        "protocols": [{"name": "mkdt", "overrides": {"pretrain": {"epochs": 1}, "linear": {"steps": 2}}}],
        "targets": [{"name": "sample", "train_per_class": 5, "test_per_class": 2}], "seeds": [0],
        "output": str(tmp_path / "lb")})
    rep = run_leaderboard(cfg, log=lambda *_: None)
    assert rep["rows"] and tid in (tmp_path / "lb" / "results.md").read_text()
    pytest.importorskip("avalanche")
    from applications.continual import ContinualConfig, run_continual
    from applications.continual.config import BufferSpec, DistillSpec
    params = {"pool_arch": TINY, "pool_size": 2, "pool_steps": 2, "real_batch": 16}
    out = run_continual(ContinualConfig(benchmark="sample", n_experiences=2, train_per_class=5, test_per_class=2,
                                        arch=TINY, epochs=1, batch_size=16, memory_per_class=1, retrain_epochs=1,
                                        seeds=[0], buffers=[BufferSpec("distilled", "retrain")], device="cpu",
                                        distill=DistillSpec(steps=1, teacher="tiny-zoo", params=params),
                                        output=str(tmp_path / "cl")))
    assert len(out["runs"]) == 1
