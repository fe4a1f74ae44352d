"""The leaderboard on the embedded sample: tiny budgets, one seed; resumable cell by cell; a newly
registered method gets its row with no other change; the paired test against a closed form."""
import math

import pytest
import torch

import distill.leaderboard as lb
from distill.config import load_config
from distill.leaderboard import LeaderboardConfig, paired_test, run_leaderboard, update_docs
from distill.methods import METHODS
from distill.methods.baselines import RandomSubset

from .helpers import sample_leaderboard, tiny_teacher


def _cfg(tmp_path, **kw):
    return sample_leaderboard(tmp_path, **kw)


def test_small_leaderboard_runs_and_reuses_finished_cells(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)
    calls = []
    real = lb.cells.evaluate_sets

    def counting(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)
    monkeypatch.setattr(lb.cells, "evaluate_sets", counting)
    with pytest.raises(KeyboardInterrupt):
        run_leaderboard(cfg, log=lambda *_: None)
    assert len(list((tmp_path / "lb" / "cells").rglob("*.json"))) == 2     # two cells were done before the kill
    calls.clear()
    monkeypatch.setattr(lb.cells, "evaluate_sets", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    rep = run_leaderboard(cfg, log=lambda *_: None)
    # 3 rows + full source + no pre-training = 5 cells; the restart evaluated only the 3 missing ones
    assert len(calls) == 3 and len(list((tmp_path / "lb" / "cells").rglob("*.json"))) == 5
    labels = {r["set"] for r in rep["rows"]}
    assert {"random", "random_labelled", "herding", "no pre-training"} <= labels
    assert any(x.startswith("full source (100)") for x in labels)
    assert {(g["set"], g["baseline"]) for g in rep["gains"]} == {("herding", "random"), ("herding", "random_labelled")}
    md = (tmp_path / "lb" / "results.md").read_text()
    assert "protocol `mkdt`" in md and "| herding | random |" in md and "k-NN" in md
    assert "evaluating 5 cells" in md                              # compute summed over both sittings
    assert "50 test images only" in md and "standard error" in md   # test_per_class is flagged
    assert (tmp_path / "lb" / "leaderboard.png").stat().st_size > 0
    summ = rep["summary"]            # the compact table: a mean and a verdict mark per baseline
    assert "| herding |" in summ and "(r" in summ and "rl" in summ
    assert "r?" in summ            # one seed: no paired test, said so
    calls.clear()   # a third run reuses every set and every cell
    run_leaderboard(cfg, log=lambda *_: None)
    assert calls == []


def test_a_registered_method_gets_its_row_without_other_changes(tmp_path):
    class Dummy(RandomSubset):
        name = "dummy_for_test"
    METHODS["dummy_for_test"] = Dummy
    try:
        cfg = _cfg(tmp_path, rows=[])
        assert "dummy_for_test" in [r.method for r in cfg.all_rows()]
        assert set(METHODS) == {r.method for r in cfg.all_rows()}
    finally:
        del METHODS["dummy_for_test"]


def test_variants_and_config_errors(tmp_path):
    from distill.errors import ConfigError
    cfg = _cfg(tmp_path, variants=[{"label": "krr_st (legacy pool)", "method": "krr_st",
                                    "params": {"legacy_pool_reset": True}}])
    assert [lb.row_label(r) for r in cfg.all_rows()][-1] == "krr_st (legacy pool)"
    with pytest.raises(ConfigError, match="share the label"):
        _cfg(tmp_path, variants=[{"method": "random"}])
    with pytest.raises(ConfigError, match="baselines"):
        _cfg(tmp_path, baselines=["nope"])


def test_paired_test_against_a_closed_form():
    mean, sd, p = paired_test([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    # d = 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.464, df 2 -> p = 0.0742 (t-table)
    assert mean == 2.0 and sd == 1.0 and math.isclose(p, 0.07418, abs_tol=1e-4)
    assert paired_test([1.0], [0.0])[2] is None
    assert lb.verdict(2.0, 0.07, 0.05) == "within noise" and lb.verdict(-1, 0.01, 0.05) == "**loses**"
    # every pair differs by the same 0.6: no spread, so no t-test (it is not a "beats" at p = 0)
    mean, sd, p = paired_test([10.6, 20.6, 30.6], [10.0, 20.0, 30.0])
    assert math.isclose(mean, 0.6) and sd == 0.0
    assert p is None and lb.verdict(mean, p, 0.05, n=3) == "no spread: no test"
    assert lb.verdict(mean, None, 0.05) == "one seed: no test"


def test_docs_block_is_replaced_not_appended_twice(tmp_path):
    doc = tmp_path / "B.md"
    doc.write_text("# B\n\ntext\n")
    update_docs(doc, "x", "| a |\n")
    update_docs(doc, "x", "| b |\n")
    text = doc.read_text()
    assert text.count("<!-- leaderboard:x -->") == 1 and "| b |" in text and "| a |" not in text and "text" in text


def test_rows_that_need_experts_run_when_the_source_has_them_and_are_skipped_otherwise(tmp_path):
    rows = [{"method": "random"}, {"method": "random_labelled"}, {"method": "high_loss"},
            {"method": "mkdt", "steps": 2, "params": {"syn_steps": 2, "batch_syn": 5, "max_start_epoch": 1,
                                                      "expert_epochs": 1, "lr_images": 10.0}}]
    said = []
    rep = run_leaderboard(_cfg(tmp_path, rows=rows, full_source=False, no_pretrain=False), log=said.append)
    assert {r["set"] for r in rep["rows"]} == {"random", "random_labelled"}
    assert any("skip mkdt" in s and "experts" in s for s in said)
    cfg = _cfg(tmp_path, rows=rows, full_source=False, no_pretrain=False)
    cfg.sources[0].experts = {"arch": "convnet-d2-w8-in", "experts": 2, "epochs": 2, "batch_size": 16}
    rep = run_leaderboard(cfg, log=said.append)
    assert {r["set"] for r in rep["rows"]} == {"random", "random_labelled", "high_loss", "mkdt"}
    assert len(list((tmp_path / "lb" / "experts").rglob("expert_*.safetensors"))) == 2
    mk = [r for r in rep["rows"] if r["set"] == "mkdt"]
    assert mk and all(math.isfinite(r["acc"]) for r in mk)
    assert "MKDT's 2 experts" in (tmp_path / "lb" / "results.md").read_text()


def test_scdd_rows_and_protocol_get_the_sources_classifier(tmp_path):
    """A source with `squeeze:` makes its classifier once; the scdd row recovers with it and the `scdd`
    protocol relabels every row with it (hard labels only where a set has labels)."""
    cfg = _cfg(tmp_path, rows=[{"method": "scdd", "steps": 3, "params": {"lr": 0.1}}, {"method": "random_labelled"}],
               baselines=["random_labelled"], full_source=False, no_pretrain=False,
               protocols=[{"name": "scdd", "overrides": {"arch": "convnet-d2-w8-bn", "relabel": {"epochs": 1}}}])
    cfg.sources[0].squeeze = {"epochs": 2}
    rep = run_leaderboard(cfg, log=lambda *_: None)
    clf = list((tmp_path / "lb" / "classifiers").glob("*.safetensors"))
    assert len(clf) == 1
    from distill.distilled import DistilledSet
    scdd = DistilledSet.load(next((tmp_path / "lb" / "sets").rglob("scdd.safetensors")))
    assert scdd.meta["config"]["params"]["classifier"] == str(clf[0])
    metrics = {(r["set"], r["metric"]) for r in rep["rows"]}
    assert metrics == {(s, f"relabel:{k}") for s in ("scdd", "random_labelled") for k in ("teacher", "stored", "hard")}
    assert "SC-DD classifier" in (tmp_path / "lb" / "results.md").read_text()


def test_a_protocol_listed_twice_needs_a_label_and_then_gets_its_own_table_and_cells(tmp_path):
    """The same protocol at two settings (e.g. SC-DD's relabel at 50 and 200 epochs) over the same sets."""
    mk = {"name": "mkdt", "overrides": {"pretrain": {"epochs": 1}, "linear": {"steps": 5}}}
    from distill.errors import ConfigError
    with pytest.raises(ConfigError, match="listed twice"):
        _cfg(tmp_path, protocols=[mk, mk])
    cfg = _cfg(tmp_path, rows=[{"method": "random"}], baselines=["random"], full_source=False, no_pretrain=False,
               protocols=[mk, {**mk, "overrides": {"pretrain": {"epochs": 3}, "linear": {"steps": 5}},
                                "label": "mkdt e3"}])
    rep = run_leaderboard(cfg, log=lambda *_: None)
    assert {r["protocol"] for r in rep["rows"]} == {"mkdt", "mkdt e3"}
    assert {d.name for d in (tmp_path / "lb" / "cells").iterdir()} == {"mkdt", "mkdt e3"}
    md = (tmp_path / "lb" / "results.md").read_text()
    assert "protocol `mkdt`" in md and "protocol `mkdt e3`" in md
    # `only:` keeps one of them (a preset that runs one application of a shared base)
    assert [p.title for p in _cfg(tmp_path, protocols=cfg.protocols, only=["mkdt e3"]).protocols] == ["mkdt e3"]
    with pytest.raises(ConfigError, match="not protocols"):
        _cfg(tmp_path, protocols=[mk], only=["kd"])


def _rows(label_values: dict, metric="linear"):
    """Leaderboard rows (one protocol / source / target) from {label: [acc per evaluation seed]}."""
    return [{"protocol": "krrst", "source": "s", "budget": 10, "target": "t", "metric": metric, "set": label,
             "seed": i, "acc": v, "set_seed": None if label.startswith("full source") else 0}
            for label, vals in label_values.items() for i, v in enumerate(vals)]


def test_the_headroom_sentence_appears_exactly_when_headroom_is_under_twice_the_detectable_gain(tmp_path):
    from distill.leaderboard.stats import gains, headroom
    cfg = load_config(LeaderboardConfig, extra={"rows": [{"method": "random"}, {"method": "herding"}],
                                                "baselines": ["random"], "output": str(tmp_path)})
    base = {"random": [50.0, 51.0, 49.5], "herding": [50.5, 50.0, 50.9]}
    for full, separates in (([60.0, 61.0, 59.0], True), ([50.2, 51.5, 49.9], False)):
        rows = _rows({**base, "full source (100, converged: 5 epochs)": full})
        g = gains(cfg, rows)
        (h,) = headroom(cfg, rows, g)
        assert h["detectable"] == g[0]["detectable"] > 0      # one comparison: its detectable gain is the table's
        assert h["headroom"] == pytest.approx(sum(full) / 3 - sum(base["random"]) / 3)
        assert h["separates"] is separates and separates == (h["headroom"] >= 2 * h["detectable"])
        md = lb.write_leaderboard(cfg, rows, {"s N=10": {"source": "s", "source_images": 100, "teacher": "t",
                                                        "rows": {}}}, 1.0)["markdown"]
        assert ("cannot separate methods closer than" in md) is (not separates)
        if not separates:   # and then it is the table's first line
            assert md.splitlines()[2].startswith("**This setting cannot separate methods closer than")
        assert "No full-source row" not in md
    # without a full-source row the first line states the table's resolution instead
    rows = _rows(base)
    g = gains(cfg, rows)
    md = lb.write_leaderboard(cfg, rows, {"s N=10": {"source": "s", "source_images": 100, "teacher": "t", "rows": {}}},
                              1.0)["markdown"]
    assert md.splitlines()[2].startswith(f"**No full-source row, so no headroom is measured; the comparisons below "
                                         f"could detect true gains of {g[0]['detectable']:.1f}-")


def test_distillation_seeds_make_different_sets_and_cells_are_reused_per_set_and_evaluation_seed(tmp_path, monkeypatch):
    from distill.distilled import DistilledSet
    from distill.methods.krr_st import KRRST
    cfg = _cfg(tmp_path, rows=[{"method": "random"}, {"method": "krr_st", "steps": 2, "params": KRRST.tiny_params},
                               {"method": "herding"}],
               baselines=["random"], distill_seeds=[0, 1], seeds=[0, 1], full_source=False, no_pretrain=False)
    rep = run_leaderboard(cfg, log=lambda *_: None)
    sets = tmp_path / "lb" / "sets"
    for name in ("random", "krr-st"):
        a = DistilledSet.load(next(sets.rglob(f"{name}.safetensors")))
        b = DistilledSet.load(next(sets.rglob(f"{name}-d1.safetensors")))
        assert not torch.equal(a.images, b.images)
    assert len(list((tmp_path / "lb" / "cells").rglob("*-d1-s1-*.json"))) == 3     # 3 rows x 1 protocol
    assert len(list((tmp_path / "lb" / "cells").rglob("*.json"))) == 12           # 3 rows x 2 set seeds x 2 seeds
    assert rep["gains"] and all(x["n"] == 2 for x in rep["gains"])   # paired over the 2 set seeds, eval seeds averaged
    # each unit runs with its own seed (evaluation seed + 1000 x set seed), recorded beside the evaluation seed
    assert {(r["set_seed"], r["seed"], r["run_seed"]) for r in rep["rows"]} == {(0, 0, 0), (0, 1, 1), (1, 0, 1000),
                                                                               (1, 1, 1001)}
    # herding picks the same images for every distillation seed, yet its units differ: each is evaluated with its
    # own seed (else the paired test would see none of its evaluation noise)
    a = DistilledSet.load(next(sets.rglob("herding.safetensors")))
    b = DistilledSet.load(next(sets.rglob("herding-d1.safetensors")))
    assert torch.equal(a.images, b.images)
    accs = {(r["set_seed"], r["seed"]): r["acc"] for r in rep["rows"] if r["set"] == "herding"}
    assert accs[(0, 0)] != accs[(1, 0)]
    calls = []
    monkeypatch.setattr(lb.cells, "evaluate_sets", lambda *a, **k: calls.append(1))
    run_leaderboard(cfg, log=lambda *_: None)
    assert calls == []


def test_a_leaderboard_block_records_the_commit_its_run_started_at(tmp_path, monkeypatch):
    """A run of hours may end after later commits: its block names the code it ran, not the checkout at the end."""
    from pathlib import Path

    from click.testing import CliRunner

    import distill.engine.provenance as prov_mod
    from distill.cli import cli
    head = ["abc1234"]
    monkeypatch.setattr(prov_mod, "git_commit", lambda cwd=None: head[0])
    rep = {"markdown": "| a table |", "summary": "", "seconds": 1.0,
           "paths": {"md": Path("r.md"), "json": Path("r.json"), "plot": Path("r.png")}}

    def run(cfg, time_limit=None):
        head[0] = "def5678"            # committed while the run was going
        return rep
    monkeypatch.setattr(lb, "run_leaderboard", run)
    conf = tmp_path / "lb.yaml"
    conf.write_text("name: t\nrows: [{method: random}]\nbaselines: [random]\n")
    doc = tmp_path / "DOC.md"
    r = CliRunner().invoke(cli, ["leaderboard", "-c", str(conf), "--docs", str(doc)])
    assert r.exit_code == 0, r.output
    assert "*Provenance:* commit abc1234," in doc.read_text()


def test_the_provenance_check_fails_after_a_config_edit_and_passes_after_regeneration(tmp_path):
    from click.testing import CliRunner

    from distill.cli import cli
    from distill.config import to_dict
    from distill.engine.provenance import provenance
    conf = tmp_path / "lb.yaml"
    conf.write_text("name: t\nrows: [{method: random}]\nbaselines: [random]\nseeds: [0, 1]\n")
    doc = tmp_path / "DOC.md"

    def regenerate():
        cfg = load_config(LeaderboardConfig, conf, ["arch=convnet-d2-w8-bn"])
        prov = provenance("ssdd leaderboard -c lb.yaml arch=convnet-d2-w8-bn", "cpu", cfg.amp, to_dict(cfg), str(conf),
                          ["arch=convnet-d2-w8-bn"], kind="leaderboard")
        update_docs(doc, "t", "| a table |", prov)

    def check():
        return CliRunner().invoke(cli, ["leaderboard", "--check-docs", str(doc)])
    regenerate()
    text = doc.read_text()
    assert "*Provenance:* commit" in text and "torch" in text and "ssdd leaderboard -c lb.yaml" in text
    assert check().exit_code == 0
    conf.write_text(conf.read_text().replace("seeds: [0, 1]", "seeds: [0, 1, 2]"))
    r = check()
    assert r.exit_code == 1 and "stale: leaderboard:t" in r.output and "seeds" in r.output
    regenerate()
    assert check().exit_code == 0
    # a block made before a key was added to the schema: at the key's default it is not stale, else it is
    import json
    import re
    text = doc.read_text()
    rec = json.loads(re.search(r"<!-- provenance (\{.*\}) -->", text).group(1))
    del rec["config"]["sets_dir"]
    doc.write_text(text.replace(re.search(r"<!-- provenance (\{.*\}) -->", text).group(1),
                                json.dumps(rec, separators=(",", ":"))))
    assert check().exit_code == 0
    conf.write_text(conf.read_text() + "sets_dir: elsewhere\n")
    r = check()
    assert r.exit_code == 1 and "sets_dir ('<absent>' -> 'elsewhere')" in r.output
    # the same inside a list item: a protocol recorded before `label` existed
    conf.write_text(conf.read_text().replace("sets_dir: elsewhere\n", "") + "protocols: [{name: mkdt}]\n")
    regenerate()
    text = doc.read_text()
    rec = json.loads(re.search(r"<!-- provenance (\{.*\}) -->", text).group(1))
    del rec["config"]["protocols"][0]["label"]
    doc.write_text(text.replace(re.search(r"<!-- provenance (\{.*\}) -->", text).group(1),
                                json.dumps(rec, separators=(",", ":"))))
    assert check().exit_code == 0
    conf.write_text(conf.read_text().replace("{name: mkdt}", "{name: mkdt, label: other}"))
    r = check()
    assert r.exit_code == 1 and "protocols" in r.output


@pytest.mark.slow
def test_the_sample_preset_runs_whole_with_every_method_at_its_stated_scale(tmp_path):
    teacher = tmp_path / "teacher.safetensors"
    tiny_teacher().save(teacher)
    cfg = load_config(LeaderboardConfig, "configs/leaderboard/sample.yaml",
                      [f"sources.0.teacher={teacher}", f"output={tmp_path / 'lb'}"])
    assert cfg.paper_scale_rows() == []
    rep = run_leaderboard(cfg, log=lambda *_: None)
    labels = {r["set"] for r in rep["rows"]}
    assert set(METHODS) <= labels                         # every registered method got its row, none skipped
    assert any("converged" in x for x in labels) and "no pre-training" in labels
    assert rep["headroom"] and all(h["detectable"] is not None for h in rep["headroom"])


def test_rows_inherit_the_presets_method_settings_and_paper_scale_rows_are_refused_on_a_cpu(tmp_path):
    from distill.errors import ConfigError
    cfg = _cfg(tmp_path, rows=[{"method": "krr_st"}, {"method": "krr_st", "label": "k2", "steps": 7,
                                                      "params": {"pool_size": 3}}],
               baselines=[], method_steps={"krr_st": 5}, method_params={"krr_st": {"pool_arch": "convnet-d2-w8-bn",
                                                                                  "pool_size": 2}})
    a, b = cfg.all_rows()
    assert (a.steps, a.params) == (5, {"pool_arch": "convnet-d2-w8-bn", "pool_size": 2})
    assert (b.steps, b.params) == (7, {"pool_arch": "convnet-d2-w8-bn", "pool_size": 3})
    assert "pool_steps" in cfg.paper_scale_rows()[0] and "real_batch" in cfg.paper_scale_rows()[0]
    with pytest.raises(ConfigError, match="paper's scale on a CPU") as e:
        cfg.check_scale("cpu")
    assert "scale: paper" in e.value.fix
    cfg.check_scale("cuda")                                # a GPU runs the paper's defaults
    with pytest.raises(ConfigError, match="scale: cpu"):
        _cfg(tmp_path, rows=[{"method": "boost"}], baselines=[], scale="cpu")
    _cfg(tmp_path, rows=[{"method": "boost"}], baselines=[], scale="paper").check_scale("cpu")   # the explicit opt-in


def test_application_protocols_run_on_the_sample_over_two_sets_and_compare_with_the_best_real_baseline(tmp_path):
    """kd and transfer as leaderboard protocols: every row and the application's own reference through it,
    cells reused, gains against the best real-image baseline (Holm-adjusted over the table)."""
    apps = [{"name": "kd", "overrides": {"students": ["convnet-d2-w8-bn"], "iterations": 20, "batch_size": 16,
                                         "teacher": {"arch": "convnet-d2-w8-bn", "iterations": 30}, "dsa": ""}},
            {"name": "transfer", "overrides": {"archs": ["convnet-d2-w8-bn", "convnet-d2-w8-in"], "protocol": "mkdt",
                                               "eval": {"pretrain": {"epochs": 1}, "linear": {"steps": 5}}}}]
    cfg = _cfg(tmp_path, rows=[{"method": "random"}, {"method": "herding"}], baselines=["random"],
               protocols=apps, full_source=False, no_pretrain=False, distill_seeds=[0, 1])
    from applications.kd.bench import KDApp
    real_cell, calls = KDApp.cell, []

    def killed_at_the_third(self, *a):
        calls.append(a[0])
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real_cell(self, *a)
    KDApp.cell = killed_at_the_third
    try:
        with pytest.raises(KeyboardInterrupt):
            run_leaderboard(cfg, log=lambda *_: None)
        calls.clear()
        KDApp.cell = lambda self, *a: (calls.append(a[0]), real_cell(self, *a))[1]
        rep = run_leaderboard(cfg, log=lambda *_: None)
    finally:
        KDApp.cell = real_cell
    assert len(calls) == 6 - 2                 # the restart ran only the kd cells the killed run had not finished
    kd = [r for r in rep["rows"] if r["protocol"] == "kd"]
    # 2 rows x 2 set seeds + noise x 2 set seeds, one evaluation seed, one student
    assert sorted({(r["set"], r["set_seed"]) for r in kd}) == sorted(
        (x, d) for x in ("herding", "noise", "random") for d in (0, 1))
    assert {r["metric"] for r in kd} == {"kd convnet-d2-w8-bn"} and all(0 <= r["acc"] <= 100 for r in kd)
    assert {r["set"] for r in kd if r["real"]} == {"random"}
    tr = [r for r in rep["rows"] if r["protocol"] == "transfer"]
    assert {r["metric"].split(" ")[0] for r in tr} == {"convnet-d2-w8-bn", "convnet-d2-w8-in"}
    # the floor: each architecture as initialised, per set seed, not a real-image baseline but compared with the best
    from applications.transfer.bench import NO_PRETRAIN_ROW
    floor = [r for r in tr if r["set"] == NO_PRETRAIN_ROW]
    assert {(r["metric"], r["set_seed"]) for r in floor} == {(r["metric"], d) for r in tr for d in (0, 1)}
    assert not any(r["real"] for r in floor) and all(0 <= r["acc"] <= 100 for r in floor)
    assert {x["set"] for x in rep["gains"] if x["protocol"] == "transfer"} == {"herding", NO_PRETRAIN_ROW}
    # each non-real row against the best real baseline of its column, paired by set seed
    g = [x for x in rep["gains"] if x["protocol"] == "kd"]
    assert {x["set"] for x in g} == {"herding", "noise"} and all(x["best_real"] for x in g)
    herd = next(x for x in g if x["set"] == "herding")
    h = {d: next(r["acc"] for r in kd if (r["set"], r["set_seed"]) == ("herding", d)) for d in (0, 1)}
    b = {d: next(r["acc"] for r in kd if (r["set"], r["set_seed"]) == ("random", d)) for d in (0, 1)}
    assert herd["baseline"] == "random" and math.isclose(herd["gain"], (h[0] - b[0] + h[1] - b[1]) / 2, abs_tol=1e-9)
    assert herd["family"] == 2 and herd["p_adj"] >= herd["p"]
    md = (tmp_path / "lb" / "results.md").read_text()
    assert "protocol `kd`" in md and "Data-free KD" in md and "| herding | best real |" in md
    assert "kd convnet-d2-w8-bn: smallest detectable gain over the best real-image baseline" in md
    # the same cells with a pre-declared primary comparison under `kd` (issue 37): its own family, first line and
    # row, taken out of the secondary table; the transfer comparisons stay secondary
    cfg2 = _cfg(tmp_path, rows=[{"method": "random"}, {"method": "herding"}], baselines=["random"],
                protocols=apps, full_source=False, no_pretrain=False, distill_seeds=[0, 1],
                primary=[{"set": "herding", "vs": "random", "protocol": "kd"},
                         {"set": "noise", "vs": "random", "protocol": "kd"}])
    rep2 = run_leaderboard(cfg2, log=lambda *_: None)
    prim = [x for x in rep2["gains"] if x.get("primary")]
    assert {(x["set"], x["baseline"], x["protocol"]) for x in prim} == {("herding", "random", "kd"),
                                                                        ("noise", "random", "kd")}
    assert all(x["family"] == 2 and x["family_name"] == "kd" for x in prim)
    assert not any(x["protocol"] == "kd" and not x.get("primary") for x in rep2["gains"])
    md2 = rep2["markdown"]
    assert "**Primary family of `kd` (2 pre-declared comparisons" in md2 and "| herding vs random | kd |" in md2
    # a second run reuses every cell and the KD teacher
    assert len(list((tmp_path / "lb" / "cells").rglob("*.json"))) == 6 + 6
    again = run_leaderboard(cfg, log=lambda m: (_ for _ in ()).throw(AssertionError(m)) if "train the" in m else None)
    assert again["rows"] == rep["rows"]
    # each application cell holds the digest of the settings it was made under: tables rendered from the results
    # folder leave out cells of other settings (a campaign's preset edited between sittings) and say so
    import json
    from distill.leaderboard.apps import settings_digest
    from distill.leaderboard.results import load_results
    files = list((tmp_path / "lb" / "cells" / "kd").glob("*.json"))
    assert {json.loads(f.read_text())["settings"] for f in files} == {settings_digest(cfg.protocols[0])}
    rows, _, notes = load_results(cfg)
    assert len([r for r in rows if r["protocol"] == "kd"]) == 6 and not any("other settings" in n for n in notes)
    edited = _cfg(tmp_path, rows=[{"method": "random"}, {"method": "herding"}], baselines=["random"],
                  protocols=[{**apps[0], "overrides": {**apps[0]["overrides"], "iterations": 21}}, apps[1]],
                  full_source=False, no_pretrain=False, distill_seeds=[0, 1])
    assert settings_digest(edited.protocols[0]) != settings_digest(cfg.protocols[0])
    rows, _, notes = load_results(edited)
    assert not [r for r in rows if r["protocol"] == "kd"] and [r for r in rows if r["protocol"] == "transfer"]
    assert any("6 cell file(s) of `kd` were made under other settings" in n for n in notes)
    # and only the cells of the preset's evaluation seeds are read (a campaign may train more students per unit in its
    # pilot than after it)
    extra = files[0].with_name(files[0].name.replace("-s0-", "-s1-"))
    d = json.loads(files[0].read_text())
    extra.write_text(json.dumps({**d, "rows": [{**r, "seed": 1} for r in d["rows"]]}))
    assert len([r for r in load_results(cfg)[0] if r["protocol"] == "kd"]) == 6
    both = _cfg(tmp_path, rows=[{"method": "random"}, {"method": "herding"}], baselines=["random"], protocols=apps,
                full_source=False, no_pretrain=False, distill_seeds=[0, 1], seeds=[0, 1])
    assert [r["seed"] for r in load_results(both)[0] if r["protocol"] == "kd"].count(1) == 1


def test_an_unknown_protocol_names_the_evaluation_protocols_and_the_applications(tmp_path):
    from distill.errors import ConfigError
    with pytest.raises(ConfigError, match="unknown protocol 'nope'") as e:
        _cfg(tmp_path, protocols=[{"name": "nope"}])
    assert "krrst" in e.value.fix and "kd" in e.value.fix and "transfer" in e.value.fix
    with pytest.raises(ConfigError, match="studentz"):
        _cfg(tmp_path, protocols=[{"name": "kd", "overrides": {"studentz": ["x"]}}])
    with pytest.raises(ConfigError, match="memory_per_clas"):       # continual's run keys are ContinualConfig's
        _cfg(tmp_path, protocols=[{"name": "continual", "overrides": {"run": {"memory_per_clas": 2}}}])
    with pytest.raises(ConfigError, match="set by the leaderboard"):
        _cfg(tmp_path, protocols=[{"name": "continual", "overrides": {"run": {"seeds": [0]}}}])
    with pytest.raises(ConfigError, match=r"experts: \['output'\] are not settings of per-experience experts"):
        _cfg(tmp_path, protocols=[{"name": "continual", "overrides": {"experts": {"output": "x"}}}])
    with pytest.raises(ConfigError, match=r"protocol `kd`, overrides: unknown teacher key\(s\) \['iteration'\]"):
        _cfg(tmp_path, protocols=[{"name": "kd", "overrides": {"teacher": {"iteration": 3}}}])


def test_continual_protocol_fills_equal_byte_buffers_with_each_row_and_the_real_references(tmp_path, monkeypatch):
    cont = {"name": "continual", "overrides": {"modes": ["experience", "retrain"],
                                               "references": ["reservoir", "class_balanced", "herding", "naive"],
                                               "run": {"arch": "convnet-d2-w8-bn", "batch_size": 16, "memory_per_class": 2, "retrain_epochs": 2,
                                                       "train_per_class": 6, "test_per_class": 4}}}
    cfg = _cfg(tmp_path, rows=[{"method": "random"}, {"method": "random_labelled"}, {"method": "krr_st", "steps": 2,
                                                                                    "params": {"pool_size": 1}},
                                {"method": "mkdt", "steps": 1}],
               protocols=[cont], full_source=False, no_pretrain=False, baselines=["random", "random_labelled"],
               method_params={"krr_st": {"pool_arch": "convnet-d2-w8-bn", "pool_steps": 2, "real_batch": 16},
                              "mkdt": {"syn_steps": 1, "batch_syn": 2, "max_start_epoch": 1, "expert_epochs": 1}},
               scale="paper")
    cfg.sources[0].experts = {"arch": "convnet-d2-w8-in", "experts": 1, "epochs": 2, "batch_size": 8,
                              "output": str(tmp_path / "experts")}
    rep = run_leaderboard(cfg, log=lambda *_: None)
    rows = rep["rows"]
    labels = {r["set"] for r in rows}
    # mkdt trains its experts on each experience (the source's settings, not its folder), and the header says so
    assert labels == {"random", "random_labelled", "krr_st", "mkdt", "reservoir (real)", "class-balanced (real)",
                      "herding (real)", "naive (no replay)"}
    assert not (tmp_path / "experts").exists()
    assert {r["metric"] for r in rows} == {"ER final acc", "ER forgetting", "retrain final acc", "retrain forgetting"}
    # naive: no memory, experience replay only, and not a real-image baseline
    naive = [r for r in rows if r["set"] == "naive (no replay)"]
    assert {r["metric"] for r in naive} == {"ER final acc", "ER forgetting"}
    assert not any(r["real"] for r in naive) and all(r["bytes"] == 0 for r in naive)
    rows = [r for r in rows if r["metric"].startswith("ER") and r["set"] != "naive (no replay)"]
    # every buffer held at most the same bytes: 2 uint8 images per class of the sample (10 classes, 3x32x32)
    limit = 2 * 10 * 3 * 32 * 32 + 2 * 10 * 8
    assert all(0 < r["bytes"] <= limit for r in rows)
    assert all(r["lower_better"] == (r["metric"] == "ER forgetting") for r in rows)
    # continual makes its own memory from each row's method: no set, expert or classifier was made for it
    assert not list((tmp_path / "lb").rglob("*.safetensors"))
    md = (tmp_path / "lb" / "results.md").read_text()
    assert "mkdt: experts trained on each experience (1 x 2 epochs of `convnet-d2-w8-in`)" in md
    table = md[md.index("protocol `continual`"):]
    # no set columns (not its sets); the retrain columns beside experience replay's
    assert ("| set | sample ER final acc | sample ER forgetting | sample retrain final acc | sample retrain forgetting |\n"
            in table)
    g = {(x["set"], x["metric"]): x for x in rep["gains"]}
    assert {k for k in g if k[0] == "krr_st"} == {("krr_st", m) for m in ("ER final acc", "ER forgetting",
                                                                           "retrain final acc", "retrain forgetting")}
    assert all(x["baseline"] != "naive (no replay)" for x in rep["gains"])
    # forgetting: the best real buffer is the one that forgets least, and a gain is baseline - row
    fr = [r for r in rows if r["metric"] == "ER forgetting"]
    real = {r["set"]: r["acc"] for r in fr if r["real"]}
    best = min(real, key=real.get)
    k = next(r["acc"] for r in fr if r["set"] == "krr_st")
    assert g[("krr_st", "ER forgetting")]["baseline"] == best
    assert math.isclose(g[("krr_st", "ER forgetting")]["gain"], real[best] - k, abs_tol=1e-9)
    # the per-experience experts are part of the identity of mkdt's cells alone: changing them reruns those only
    import applications.continual.bench as cbench
    rerun = []

    def fake(ccfg, bench, spec, seed, _):
        rerun.append((spec.label, ccfg.distill.experts.get("epochs")))
        return {"final_avg_acc": 0.0, "avg_forgetting": 0.0, "sizes": [{"bytes": 0}], "memory_bytes": 0}
    monkeypatch.setattr(cbench, "run_one", fake)
    cfg.protocols[0].overrides["experts"] = {"epochs": 3}
    run_leaderboard(cfg, log=lambda *_: None)
    assert rerun == [("mkdt", 3), ("mkdt", 3)]          # two modes, one seed


def test_nas_protocol_ranks_architectures_with_a_cached_ground_truth(tmp_path):
    nas = {"name": "nas", "overrides": {"space_args": {"depths": [1, 2], "widths": [8, 16], "norms": ["bn"],
                                                       "acts": ["relu"], "pools": ["avg"]},
                                        "num_archs": 4, "pretrain": {"epochs": 1},
                                        "score": {"train_per_class": 4, "val_per_class": 3, "linear": {"steps": 5}},
                                        "ground_truth": {"epochs": 1, "batch_size": 32, "train_per_class": 6},
                                        # tau 1.01 is unreachable: the ground truth is trained again at 2 epochs, once
                                        "gt_seeds": [0, 1], "min_gt_tau": 1.01, "gt_max_epochs": 2}}
    cfg = _cfg(tmp_path, rows=[{"method": "random"}, {"method": "herding"}], baselines=["random"], protocols=[nas],
               full_source=False, no_pretrain=False)
    logs = []
    rep = run_leaderboard(cfg, log=logs.append)
    assert sum("ground truth, seed" in m for m in logs) == 4          # both ground-truth seeds, at 1 and 2 epochs
    gt_files = list((tmp_path / "lb" / "apps" / "nas").rglob("ground_truth/*/*/*.json"))
    assert len(gt_files) == 16                                       # 4 architectures x 2 seeds x 2 lengths
    rows = rep["rows"]
    assert {r["metric"] for r in rows} == {"kendall tau", "spearman", "top-5 overlap", "regret", "speed-up"}
    tau = next(r for r in rows if r["metric"] == "kendall tau" and r["set"] == "herding")
    assert -1 <= tau["acc"] <= 1 and tau["tau_ci"][0] <= tau["acc"] <= tau["tau_ci"][1] and len(tau["scores"]) == 4
    assert {x["metric"] for x in rep["gains"]} == {"kendall tau", "spearman", "top-5 overlap", "regret"}
    md = (tmp_path / "lb" / "results.md").read_text()
    assert "seed-to-seed Kendall tau" in md and "4 architectures" in md and "after 1 epochs: tau" in md
    assert "trained from scratch 2 epochs" in md and "not stable enough" in md
    # the ground truth is paid once: a new leaderboard on the same cache folder trains nothing
    logs.clear()
    for f in (tmp_path / "lb" / "cells").rglob("*.json"):
        f.unlink()
    run_leaderboard(cfg, log=logs.append)
    assert not any("ground truth, seed" in m for m in logs)


def test_equal_bytes_baselines_fill_the_largest_sets_storage_and_are_compared_as_baselines(tmp_path):
    from distill.distilled import DistilledSet
    cfg = _cfg(tmp_path, rows=[{"method": "random_labelled"}, {"method": "random"}], baselines=["random_labelled"],
               equal_bytes=True, full_source=False, no_pretrain=False)
    rep = run_leaderboard(cfg, log=lambda *_: None)
    folder = next((tmp_path / "lb" / "sets").glob("sample-*-n10"))
    rl, rnd = DistilledSet.load(folder / "random-labelled.safetensors"), DistilledSet.load(folder / "random.safetensors")
    eq = DistilledSet.load(folder / "random-labelled-equal-bytes.safetensors")
    # a labelled example costs less than one with the teacher's representation: the twin holds as many labelled
    # examples as the random set's bytes pay for (closed form), and no more
    per = rl.storage_bytes() / len(rl)
    assert rnd.storage_bytes() > rl.storage_bytes()
    assert len(eq) == int(rnd.storage_bytes() // per) > len(rl) and eq.storage_bytes() <= rnd.storage_bytes()
    assert {r["set"] for r in rep["rows"]} == {"random_labelled", "random", "random_labelled (equal bytes)"}
    assert {(g["set"], g["baseline"]) for g in rep["gains"]} == {("random", "random_labelled"),
                                                                   ("random", "random_labelled (equal bytes)")}
    assert "(rl" in rep["summary"] and "rl=B" in rep["summary"]


def test_a_leaderboard_stopped_at_its_time_limit_exits_3_and_the_same_command_finishes_it(tmp_path):
    from click.testing import CliRunner

    from distill.cli import cli
    teacher = tmp_path / "teacher.safetensors"
    tiny_teacher().save(teacher)
    conf = tmp_path / "lb.yaml"
    conf.write_text(f"name: t\nsources: [{{data: {{name: sample}}, teacher: {teacher}, train_per_class: 10, "
                    "budgets: [10]}]\nrows: [{method: random}]\nbaselines: [random]\nfull_source: false\n"
                    "arch: convnet-d2-w8-bn\nprotocols: [{name: mkdt, overrides: {pretrain: {epochs: 1}}}]\n"
                    "targets: [{name: sample, train_per_class: 10, test_per_class: 5}]\nseeds: [0]\n"
                    f"output: {tmp_path / 'lb'}\n")
    r = CliRunner().invoke(cli, ["leaderboard", "-c", str(conf), "--time-limit", "0"])
    assert r.exit_code == 3 and "run the same command again" in r.output
    assert not (tmp_path / "lb" / "results.md").exists()
    r = CliRunner().invoke(cli, ["leaderboard", "-c", str(conf)])
    assert r.exit_code == 0 and (tmp_path / "lb" / "results.md").exists()
    # a method set of the baseline's own size (herding stores what random stores): no twin
    cfg = _cfg(tmp_path, rows=[{"method": "random"}, {"method": "herding"}], baselines=["random"], equal_bytes=True,
               full_source=False, no_pretrain=False, output=str(tmp_path / "lb2"))
    assert {r["set"] for r in run_leaderboard(cfg, log=lambda *_: None)["rows"]} == {"random", "herding"}


def test_a_primary_family_states_its_goal_in_its_metrics_unit():
    """NAS's primary family compares Kendall tau: its first line, column and plan say "0.1 in Kendall tau", never
    "0.1 points"; an accuracy family keeps its points."""
    from distill.config import load_config
    from distill.leaderboard import LeaderboardConfig
    from distill.leaderboard.render import plan_markdown, primary_markdown
    cfg = load_config(LeaderboardConfig, "configs/leaderboard/apps_nas_cifar10_cpu.yaml")
    x = {"set": "mkdt", "baseline": "random_labelled (equal bytes)", "protocol": "nas", "target": "cifar10",
         "metric": "kendall tau", "n": 3, "gain": 0.05, "ci": [-0.1, 0.2], "p": 0.3, "p_adj": 0.6,
         "verdict": "within noise", "detectable": 0.4, "seeds_needed": 7, "family": 4, "family_name": "nas",
         "gain_std": 0.05}
    md = "\n".join(primary_markdown(cfg, [x]))
    assert "resolves true gains of 0.40-0.40 in Kendall tau" in md and "the goal of 0.1 in Kendall tau" in md
    assert "set seeds for 0.1 Kendall tau |" in md and "points" not in md.split("\n")[0]
    assert "true gain of 0.1 in Kendall tau" in plan_markdown(cfg, [x])
    acc = {**x, "metric": "kd convnet-32-64-128-bn", "protocol": "kd", "family_name": "kd"}
    md = "\n".join(primary_markdown(cfg, [acc]))
    assert "resolves true gains of 0.40-0.40 points" in md and "the 0.1-point goal" in md and "0.1 pts |" in md
