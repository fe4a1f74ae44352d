"""Issue 34's design: matched starts, the primary family and its power plan against statsmodels, result files
that render the same tables from a clone, and one machine per set seed."""
import json
import math
import shutil

import numpy as np
import pytest
import torch

from distill.config import load_config
from distill.config import DataConfig, DistillConfig
from distill.errors import UserError
from distill.leaderboard import LeaderboardConfig, run_leaderboard
from distill.leaderboard.stats import detectable_gain, gains, holm, seeds_needed
from distill.methods import get_method, run_distillation

from .helpers import sample_leaderboard, small_source, tiny_teacher


# ---------------------------------------------------------------- matched starts
@pytest.mark.parametrize("method,seed", [("krr_st", 3), ("boost", 0), ("mkdt", 3)])
def test_a_method_at_0_steps_starts_from_the_random_rows_images_of_the_same_set_seed(tmp_path, method, seed):
    src = small_source(20)
    teacher = tiny_teacher(source=src)
    rnd = run_distillation(DistillConfig(data=DataConfig(name="sample"), method="random", budget=12, seed=seed,
                                         output=str(tmp_path / "r.safetensors")), teacher=teacher, source=src).set
    m = get_method(method)
    params = dict(m.tiny_params)
    if getattr(m, "uses_experts", False):
        params.update(m.tiny_setup(tmp_path / "experts", src, teacher))
        params["init"] = "random"          # MKDT's paper init is the high-loss selection (matched to that row)
    n = 12
    if method == "boost":                  # M images stored as pixels (no bases), so the start is exact; with its
        n = 6                              # targets under the same budget M < N: a prefix of the same draw
        params.update({"factorize_images": False, "images": n, "views": []})
    res = run_distillation(DistillConfig(data=DataConfig(name="sample"), method=method, budget=12, seed=seed, steps=0,
                                         output=str(tmp_path / "m.safetensors"), params=params),
                           teacher=teacher, source=src)
    s = res.set.materialize()
    x = s[0] if isinstance(s, tuple) else res.set.images
    assert x.shape == rnd.images[:n].shape
    torch.testing.assert_close(x, rnd.images[:n], atol=2e-6, rtol=0)
    assert res.set.meta["init_indices"] == rnd.meta["source_indices"][:n]       # the start is recorded
    other = run_distillation(DistillConfig(data=DataConfig(name="sample"), method="random", budget=12, seed=seed + 1,
                                           output=str(tmp_path / "r2.safetensors")), teacher=teacher, source=src).set
    assert not torch.equal(other.images, rnd.images)      # the match is the seed's draw, not any draw


def test_boost_and_a_smaller_krr_st_start_from_a_prefix_of_the_random_draw(tmp_path):
    """Sets of other sizes (Boost's M images, KRR-ST at Boost's bytes) draw the same permutation: the first
    min(M, N) images are the random row's."""
    src = small_source(20)
    teacher = tiny_teacher(source=src)
    rnd = run_distillation(DistillConfig(data=DataConfig(name="sample"), method="random", budget=12, seed=5,
                                         output=str(tmp_path / "r.safetensors")), teacher=teacher, source=src).set
    small = run_distillation(DistillConfig(data=DataConfig(name="sample"), method="krr_st", budget=7, seed=5, steps=0,
                                           params=get_method("krr_st").tiny_params,
                                           output=str(tmp_path / "k.safetensors")), teacher=teacher, source=src).set
    torch.testing.assert_close(small.images, rnd.images[:7], atol=2e-6, rtol=0)


# ---------------------------------------------------------------- statistics against statsmodels
def test_holm_matches_statsmodels_and_skips_missing_tests():
    from statsmodels.stats.multitest import multipletests
    ps = [0.01, 0.04, 0.03, 0.2, 0.001, 0.049]
    ref = multipletests(ps, method="holm")[1]
    assert holm(ps) == pytest.approx(list(ref))
    assert holm([0.01, None, 0.04]) == pytest.approx([0.02, None, 0.04])
    rng = np.random.default_rng(3)
    for m in (1, 2, 7, 40):                     # random families, with ties
        ps = list(np.round(rng.uniform(0, 0.2, m), 3))
        assert holm(ps) == pytest.approx(list(multipletests(ps, method="holm")[1]))


@pytest.mark.parametrize("n,alpha", [(3, 0.05), (5, 0.01), (10, 0.05 / 6), (12, 0.05 / 8), (30, 0.001)])
def test_detectable_gain_matches_statsmodels_ttest_power(n, alpha):
    from statsmodels.stats.power import TTestPower
    eff = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=0.8, alternative="two-sided")
    assert detectable_gain(2.0, n, alpha, 0.8) == pytest.approx(2.0 * eff, rel=1e-5)
    # and the power statsmodels computes at our detectable gain is the requested 80 %
    assert TTestPower().power(detectable_gain(1.0, n, alpha, 0.8), n, alpha) == pytest.approx(0.8, abs=1e-5)


@pytest.mark.parametrize("sd,m", [(1.5, 8), (3.0, 8), (0.8, 1), (2.2, 5)])
def test_the_planned_number_of_set_seeds_gives_the_target_gain_when_fed_back(sd, m):
    alpha = 0.05 / m
    n = seeds_needed(sd, 2.0, alpha, 0.8)
    assert n is not None and n >= 2
    assert detectable_gain(sd, n, alpha) <= 2.0
    if n > 2:
        assert detectable_gain(sd, n - 1, alpha) > 2.0        # the least such n
    assert seeds_needed(sd, 2.0, alpha, 0.8, most=n - 1 if n > 2 else 1) is None or n == 2


def _rows(values: dict) -> list[dict]:
    """Cell rows: {(protocol, set): [acc per set seed]}."""
    out = []
    for (proto, label), accs in values.items():
        for d, a in enumerate(accs):
            out.append({"protocol": proto, "source": "s", "budget": 10, "target": "t", "metric": "linear", "set": label,
                        "seed": 0, "set_seed": d, "acc": a})
    return out


def test_primary_and_secondary_families_are_corrected_separately():
    rows = _rows({("krrst", "random"): [50, 51, 49, 50.5], ("krrst", "random_labelled"): [48, 49, 47.5, 48.2],
                  ("krrst", "krr_st"): [51, 52.5, 50, 51.8], ("krrst", "herding"): [50.2, 51.4, 48.6, 50.1],
                  ("krrst", "kcenter"): [49.8, 51.3, 49.9, 50.0]})
    base = {"name": "x", "rows": [{"method": m} for m in ("random", "random_labelled", "krr_st", "herding",
                                                           "kcenter")],
            "protocols": [{"name": "krrst"}], "distill_seeds": [0, 1, 2, 3], "seeds": [0]}
    none = load_config(LeaderboardConfig, extra=base)
    one = load_config(LeaderboardConfig, extra={**base, "primary": [{"set": "krr_st", "vs": "random",
                                                                      "protocol": "krrst"}]})
    g0 = {(x["set"], x["baseline"]): x for x in gains(none, rows)}
    g1 = {(x["set"], x["baseline"]): x for x in gains(one, rows)}
    k = ("krr_st", "random")
    assert g1[k]["primary"] and g1[k]["family"] == 1
    assert g1[k]["p_adj"] == pytest.approx(g1[k]["p"])                 # a family of one: no correction
    assert g0[k]["family"] == 6 and g0[k]["p_adj"] > g0[k]["p"]          # inside the table's family of 6
    sec0 = [v for kk, v in g0.items() if kk != k]
    sec1 = [v for kk, v in g1.items() if kk != k]
    ref = holm([x["p"] for x in sec1])                                 # the other 5, among themselves
    assert [x["p_adj"] for x in sec1] == pytest.approx(ref) and all(x["family"] == 5 for x in sec1)
    assert any(a["p_adj"] < b["p_adj"] for a, b in zip(sec1, sec0))    # one member fewer: smaller adjustments
    # a declared comparison whose cells do not exist yet still counts in the family (as p = 1): no optimism
    pend = load_config(LeaderboardConfig, extra={**base, "primary": [
        {"set": "krr_st", "vs": "random", "protocol": "krrst"},
        {"set": "kcenter", "vs": "random", "protocol": "krrst", "metrics": ["finetune"]}]})
    x = next(x for x in gains(pend, rows) if x.get("primary"))
    assert x["family"] == 2 and x["p_adj"] == pytest.approx(min(1.0, 2 * x["p"]))
    # a primary comparison need not involve a baseline, and it states the set seeds it needs for 2 points
    two = load_config(LeaderboardConfig, extra={**base, "primary": [{"set": "krr_st", "vs": "herding",
                                                                      "protocol": "krrst"}]})
    x = next(x for x in gains(two, rows) if x.get("primary"))
    assert (x["set"], x["baseline"], x["n"]) == ("krr_st", "herding", 4)
    assert x["seeds_needed"] == seeds_needed(x["gain_std"], 2.0, 0.05, 0.8)


def test_primary_comparisons_must_name_rows_and_protocols_of_the_leaderboard():
    base = {"name": "x", "rows": [{"method": "random"}, {"method": "krr_st"}], "baselines": ["random"],
            "protocols": [{"name": "krrst"}]}
    with pytest.raises(UserError, match="not rows"):
        load_config(LeaderboardConfig, extra={**base, "primary": [{"set": "mkdt", "vs": "random",
                                                                    "protocol": "krrst"}]}).validate()
    with pytest.raises(UserError, match="not a protocol"):
        load_config(LeaderboardConfig, extra={**base, "primary": [{"set": "krr_st", "vs": "random",
                                                                    "protocol": "mkdt"}]}).validate()
    with pytest.raises(UserError, match="secondary_seeds"):
        load_config(LeaderboardConfig, extra={**base, "distill_seeds": [0, 1], "secondary_seeds": [5]}).validate()


# ---------------------------------------------------------------- results that outlive a machine
def _lb(tmp_path, **kw):
    """The sample leaderboard with a primary family, secondary seeds and a results folder."""
    return sample_leaderboard(tmp_path, **{
        "distill_seeds": [0, 1, 2], "secondary_seeds": [0, 1], "baselines": ["random"],
        "primary": [{"set": "random_labelled", "vs": "random", "protocol": "mkdt"}],
        "results": str(tmp_path / "results"), **kw})


def test_tables_render_from_the_result_files_alone_and_one_set_seed_holds_one_machine(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from distill.cli import cli
    from distill.leaderboard.results import load_results
    cfg = _lb(tmp_path)
    rep = run_leaderboard(cfg, log=lambda *_: None)
    res = tmp_path / "results"
    files = sorted(res.rglob("*.json"))
    # herding is secondary: 2 set seeds; the primary rows 3; + full source + no pre-training
    assert len(list((res / "cells").rglob("*.json"))) == 3 + 3 + 2 + 2
    d = json.loads(next((res / "cells").rglob("*-herding-d1-*.json")).read_text())
    assert {"machine", "precision", "torch"} <= set(d["stamp"]) and d["ekey"] and d["commit"] and d["date"]
    assert not any(f.suffix == ".safetensors" for f in res.rglob("*"))      # no weights, no sets
    assert "Primary family (2 pre-declared comparisons" in rep["markdown"].splitlines()[2]
    assert "**exploratory**" in rep["markdown"] and "Machines (sample N=10): set seeds 0-2 and the references on" in rep["markdown"]
    # the campaign continued elsewhere (no sets, another output folder): finished units are neither made nor evaluated
    import distill.leaderboard.cells as cells_mod

    def never(*a, **k):
        raise AssertionError("a finished unit was made or evaluated again")
    monkeypatch.setattr(cells_mod, "make_set", never)
    monkeypatch.setattr(cells_mod, "evaluate_sets", never)
    again = run_leaderboard(_lb(tmp_path, output=str(tmp_path / "elsewhere")), log=lambda *_: None)
    assert again["markdown"] == rep["markdown"]
    monkeypatch.undo()
    # a clone: the result folder alone (no sets, no output folder), rendered by the CLI
    clone = tmp_path / "clone"
    shutil.copytree(res, clone)
    shutil.rmtree(res)
    cfile = tmp_path / "cfg.yaml"
    # ... read with another data root, output folder and device: nothing machine-local is part of a result's identity
    plain = _plain(cfg)
    plain["targets"][0]["root"] = "/elsewhere/data"
    cfile.write_text(json.dumps({**plain, "results": str(clone), "output": str(tmp_path / "out2"), "device": "cpu"}))
    r = CliRunner().invoke(cli, ["leaderboard", "-c", str(cfile), "--render-only"])
    assert r.exit_code == 0, r.output
    rendered = (tmp_path / "out2" / "results.md").read_text()
    assert rendered == f"# Leaderboard t\n\n{rep['markdown']}\n![plot](leaderboard.png)\n"
    r = CliRunner().invoke(cli, ["leaderboard", "-c", str(cfile), "--plan"])
    assert r.exit_code == 0 and "| random_labelled vs random | mkdt |" in r.output and "set seeds for 2 pts" in r.output
    assert len(files) == len(list(clone.rglob("*.json")))
    # a result file from another machine in set seed 1: refused, by the renderer and by a run that would add to it
    f = next((clone / "cells").rglob("*-herding-d1-*.json"))
    d = json.loads(f.read_text())
    d["stamp"] = {**d["stamp"], "machine": "Other CPU (2 threads, no bf16 units)", "precision": "fp32"}
    f.write_text(json.dumps(d))
    cfg.results = str(clone)
    with pytest.raises(UserError, match="set seed 1 of sample-n10 mixes machines"):
        load_results(cfg)
    r = CliRunner().invoke(cli, ["leaderboard", "-c", str(cfile), "--render-only"])
    assert r.exit_code == 2 and "mixes machines" in r.output and "Traceback" not in r.output
    for g in (clone / "cells").rglob("*-random-d1-*.json"):
        g.unlink()
    with pytest.raises(UserError, match="set seed 1 of sample-n10 already has results from another machine"):
        run_leaderboard(cfg, log=lambda *_: None)


def test_a_cell_written_again_under_another_key_replaces_the_older_file(tmp_path):
    from distill.leaderboard.results import write_cell
    st = {"machine": "m", "precision": "p", "torch": "t"}
    a = tmp_path / "cifar10-n100-krr-st-d3-s0-aaaaaaaaaaaa.json"
    other = tmp_path / "cifar10-n100-krr-st-boost-s-bytes-d3-s0-cccccccccccc.json"    # another row: kept
    write_cell(a, [], 1.0, None, st, "e", "c")
    write_cell(other, [], 1.0, None, st, "e", "c")
    gone = write_cell(tmp_path / "cifar10-n100-krr-st-d3-s0-bbbbbbbbbbbb.json", [], 1.0, None, st, "e", "c")
    assert gone == [a] and not a.exists() and other.exists()


def _plain(cfg):
    from distill.config import to_dict
    return to_dict(cfg)


def test_snapshots_of_one_run_give_the_compute_axis_with_growth_per_doubling(tmp_path):
    from distill.methods.krr_st import KRRST
    rows = [{"method": "random"}]
    rows += [{"label": f"krr_st x{k}", "method": "krr_st", "steps": 4, "at": k, "params": KRRST.tiny_params}
             for k in (1, 2, 4)]
    cfg = _lb(tmp_path, rows=rows, primary=[], secondary_seeds=[], full_source=False, no_pretrain=False,
              full_source_epochs=None, distill_seeds=[0, 1])
    logs = []
    rep = run_leaderboard(cfg, log=logs.append)
    made = [l for l in logs if "make krr_st" in l]
    assert len(made) == 2                              # one 4-step run per set seed serves the three rows
    sets = list((tmp_path / "lb" / "sets").rglob("krr-st-4steps-*.step2.safetensors"))
    assert len(sets) == 2
    info = [json.loads(f.read_text()) for f in (tmp_path / "results" / "sets").rglob("krr-st-x*.json")]
    assert {i["steps"] for i in info} == {1, 2, 4} and all(i["moved"] > 0 for i in info)
    axis = json.loads(rep["paths"]["json"].read_text())["compute"]
    assert {a["metric"] for a in axis} == {"linear@1%", "linear@5%"}
    a = axis[0]
    assert [lv["at"] for lv in a["levels"]] == [1, 2, 4] and a["n"] == 2 and a["slope_ci"] is not None
    # the slope is the mean of the per-set-seed least-squares slopes of gain on log2(steps)
    import numpy as np
    units = {}
    for r in rep["rows"]:
        if r["metric"] == a["metric"]:
            units.setdefault(r["set_seed"], {})[r["set"]] = r["acc"]
    slopes = [np.polyfit([0, 1, 2], [u[f"krr_st x{k}"] - u["random"] for k in (1, 2, 4)], 1)[0] for u in units.values()]
    assert a["slope"] == pytest.approx(float(np.mean(slopes)))
    assert "Quality against distillation compute" in rep["markdown"] and (tmp_path / "lb" / "compute.png").exists()


def test_how_far_a_factorised_set_moved_is_measured_on_its_expanded_images(tmp_path):
    from distill.leaderboard.results import image_change
    src = small_source(20)
    teacher = tiny_teacher(source=src)
    params = {**get_method("boost").tiny_params, "views": []}
    s = run_distillation(DistillConfig(data=DataConfig(name="sample"), method="boost", budget=12, seed=1, steps=0,
                                       output=str(tmp_path / "b.safetensors"), params=params),
                         teacher=teacher, source=src).set
    assert s.images is None                          # stored as bases and coefficients
    moved = image_change(s, src)
    # at 0 steps only the low-rank projection separates the images from their start: small, but not zero
    assert 0 < moved < 0.5
    x = s.materialize().images[: len(s.meta["init_indices"])]
    start = src.float(torch.tensor(s.meta["init_indices"]))
    assert moved == pytest.approx(float((x - start).pow(2).mean().sqrt()))


def test_a_comparison_with_its_own_seeds_adds_set_seeds_to_its_rows_under_its_protocol_only(tmp_path):
    """SC-DD's relabel comparison is cheap and wide: its own `seeds` give its two rows more set seeds under its
    protocol, while every other row and protocol keeps the leaderboard's."""
    cfg = sample_leaderboard(tmp_path, distill_seeds=[0, 1], secondary_seeds=[0], baselines=["random"],
                             protocols=[{"name": "mkdt", "overrides": {"pretrain": {"epochs": 1}, "linear": {"steps": 3}}},
                                        {"name": "krrst", "label": "other",
                                         "overrides": {"pretrain": {"epochs": 1}, "linear": {"steps": 3},
                                                       "finetune": {"enabled": False}}}],
                             primary=[{"set": "random_labelled", "vs": "random", "protocol": "mkdt", "seeds": [0, 1, 2, 3]},
                                      {"set": "herding", "vs": "random", "protocol": "other"}],
                             full_source=False, no_pretrain=False, results=str(tmp_path / "results"))
    assert cfg.all_seeds() == [0, 1, 2, 3]
    assert cfg.row_seeds("random", "mkdt") == [0, 1, 2, 3] and cfg.row_seeds("random", "other") == [0, 1]
    assert cfg.row_seeds("herding", "mkdt") == [0] and cfg.row_seeds("herding", "other") == [0, 1]
    rep = run_leaderboard(cfg, log=lambda *_: None)
    units = {(r["protocol"], r["set"], r["set_seed"]) for r in rep["rows"]}
    assert ("mkdt", "random_labelled", 3) in units and ("other", "random", 3) not in units
    assert ("other", "random", 1) in units and ("mkdt", "herding", 1) not in units
    planned = {(x["protocol"], x["set"]): x for x in rep_plan(cfg, rep)}
    assert planned[("mkdt", "random_labelled")]["n"] == 4 and planned[("mkdt", "random_labelled")]["configured_seeds"] == 4
    assert planned[("other", "herding")]["configured_seeds"] == 2


def test_only_seeds_runs_a_part_of_the_set_seeds_under_the_same_cell_keys(tmp_path):
    """A sitting runs the set seeds it can finish on one machine (`only_seeds`): the rows keep their own seeds
    among those, every cell keeps the key it has in the whole campaign, and a seed the campaign lacks is refused."""
    from distill.leaderboard.keys import expected_cells
    kw = {"distill_seeds": [0, 1, 2, 3], "secondary_seeds": [0, 1], "baselines": ["random"],
          "primary": [{"set": "random_labelled", "vs": "random", "protocol": "mkdt"}]}
    whole, part = sample_leaderboard(tmp_path, **kw), sample_leaderboard(tmp_path, only_seeds=[1, 3], **kw)
    assert whole.all_seeds() == [0, 1, 2, 3] and part.all_seeds() == [1, 3]
    assert part.row_seeds("random", "mkdt") == [1, 3] and part.row_seeds("herding", "mkdt") == [1]
    assert part.comparison_seeds(part.primary[0]) == [1, 3]
    cells_whole, cells_part = expected_cells(whole), expected_cells(part)
    assert set(cells_part) == {k for k in cells_whole if k[3] in (None, 1, 3)}
    assert any(k[3] == 3 for k in cells_part) and not any(k[3] in (0, 2) for k in cells_part)
    assert all(cells_part[k] == cells_whole[k] for k in cells_part)
    with pytest.raises(UserError, match="only_seeds"):
        sample_leaderboard(tmp_path, only_seeds=[7], **kw)


def test_a_primary_comparison_with_an_equal_bytes_baseline_runs_beyond_the_secondary_seeds(tmp_path):
    """Issue 37's application presets compare each method with `random_labelled (equal bytes)` at 10 set seeds
    while the baselines keep 3: at set seed 3 the method and the equal-bytes row are evaluated, the baseline's set is
    made (the equal-bytes set is sized from it) but not evaluated, and `only_rows` naming the methods alone keeps
    the comparison (a sitting once ran set seeds 3-4 of NAS and made nothing)."""
    kw = {"distill_seeds": [0, 1, 2, 3], "secondary_seeds": [0, 1], "baselines": ["random", "random_labelled"],
          "equal_bytes": True, "full_source": False, "no_pretrain": False, "results": str(tmp_path / "results"),
          "protocols": [{"name": "mkdt", "overrides": {"pretrain": {"epochs": 1}, "linear": {"steps": 3}}}],
          "primary": [{"set": "herding", "vs": "random_labelled (equal bytes)", "protocol": "mkdt"}]}
    cfg = sample_leaderboard(tmp_path, only_rows=["herding"], only_seeds=[3], **kw)
    assert len(cfg.primary) == 1
    eq = "random_labelled (equal bytes)"
    assert cfg.row_seeds("herding", "mkdt") == [3] and cfg.row_seeds(eq, "mkdt") == [3]
    assert cfg.row_seeds("random_labelled", "mkdt") == [] and cfg.row_seeds("random_labelled") == [3]
    assert cfg.row_seeds("random") == [] and cfg.row_seeds("random", "mkdt") == []
    whole = sample_leaderboard(tmp_path, **kw)
    assert whole.row_seeds(eq, "mkdt") == [0, 1, 2, 3] and whole.row_seeds("random_labelled", "mkdt") == [0, 1]


def rep_plan(cfg, rep):
    from distill.leaderboard.stats import plan
    return plan(cfg, rep["rows"])


def test_cached_evaluation_configs_and_keys_equal_a_fresh_resolution(tmp_path):
    """eval_config and eval_key reuse one resolved config per protocol; each must equal resolving it afresh (a
    result file's ekey must not depend on what was asked before)."""
    from pathlib import Path

    from distill.config import to_dict
    from distill.evaluate.config import EvalConfig, protocol_preset
    from distill.leaderboard.config import _digest, row_label
    from distill.leaderboard.keys import eval_config, eval_identity, eval_key, unit_seed
    cfg = _lb(tmp_path, protocols=[{"name": "mkdt", "overrides": {"pretrain": {"epochs": 2}}},
                                   {"name": "krrst", "label": "fixed", "overrides": {"seeds": [7]}}])

    def fresh(p, seed):
        extra = {"protocol": p.name, "arch": cfg.arch, "seeds": [seed], "device": cfg.device, "amp": cfg.amp,
                 "targets": [to_dict(t) for t in cfg.targets], "no_pretrain_baseline": False,
                 "output": str(Path(cfg.output) / "unused")}
        return load_config(EvalConfig, None, extra={**extra, **p.overrides}, preset=protocol_preset(p.name))
    for p in cfg.protocols:
        for seed in (0, 3, 2001):
            got = eval_config(cfg, p, seed)
            assert to_dict(got) == to_dict(fresh(p, seed))
            got.pretrain.epochs = 99                        # a caller's change stays its own
            assert eval_config(cfg, p, seed).pretrain.epochs != 99
        for label in ("random", "herding"):
            row = to_dict(next(r for r in cfg.all_rows() if row_label(r) == label))
            want = _digest([eval_identity(fresh(p, unit_seed(0, 2))), label, row, "sample", 10])
            assert eval_key(cfg, p, label, "sample", 10, 0, 2, {}) == want
        full = fresh(p, 0)
        full.pretrain.epochs = 5
        assert eval_key(cfg, p, None, "sample", 10, 0, None, {"full": True, "epochs": 5}) == \
            _digest([eval_identity(full), None, None, "sample", 10])
    assert eval_config(cfg, cfg.protocols[1], 3).seeds == [7]      # a protocol's own seeds win


def test_the_summary_says_the_primary_family_in_words():
    from distill.leaderboard.render import primary_words
    planned = [{"set": "a", "baseline": "random", "protocol": "krrst", "metric": "linear", "n": 10, "gain": 1.6,
                "ci": (0.7, 2.5), "p_adj": 0.01, "verdict": "**beats**", "detectable": 1.2},
               {"set": "b", "baseline": "random", "protocol": "mkdt", "metric": "linear@1%", "n": 10, "gain": -2.0,
                "ci": (-2.8, -1.2), "p_adj": 0.002, "verdict": "**loses**", "detectable": 0.9},
               {"set": "c", "baseline": "labelled", "protocol": "krrst", "metric": "linear", "n": 10, "gain": 0.3,
                "ci": (-0.5, 1.1), "p_adj": 0.4, "verdict": "within noise", "detectable": 1.1},
               {"set": "d", "baseline": "random", "protocol": "krrst", "metric": "linear", "n": 0}]
    words = primary_words(planned)
    assert "Holm among its 4 comparisons" in words and "resolves a true gain of 0.90-1.20 points" in words
    assert "a gain that survives: a over random." in words and "Losses: b to random." in words
    assert "Nothing beats `labelled`" in words and "`random`" not in words.split("Nothing beats")[1].split(".")[0]
    assert "c vs labelled (krrst linear, 10 set seeds): within noise, +0.30 [-0.50, +1.10], Holm p 0.4" in words
    assert primary_words([]) == "" and primary_words(planned[3:]) == ""


def test_docs_get_the_pictures_their_blocks_link(tmp_path):
    from distill.leaderboard.render import with_pictures
    out, doc = tmp_path / "report", tmp_path / "docs" / "B.md"
    out.mkdir()
    (out / "compute.png").write_bytes(b"png")
    md = "a\n![quality](compute.png)\n![gone](missing.png)\n![kept](bench/x.png)\n"
    got = with_pictures(md, out, doc, "compute_cifar10_cpu")
    assert "![quality](bench/leaderboard/compute-cifar10-cpu/compute.png)" in got
    assert (doc.parent / "bench/leaderboard/compute-cifar10-cpu/compute.png").read_bytes() == b"png"
    assert "![gone](missing.png)" in got and "![kept](bench/x.png)" in got     # only pictures the report wrote


# ---------------------------------------------------------------- application presets (issue 37)
def _app_rows(values: dict, protocol="kd", evals=1, real=("reservoir (real)",), metric="student") -> list[dict]:
    """Application cell rows: {set: [acc per set seed]} (or [[acc per evaluation seed] per set seed])."""
    out = []
    for label, per_unit in values.items():
        for d, v in enumerate(per_unit):
            vs = v if isinstance(v, list) else [v] * evals
            for e, a in enumerate(vs):
                out.append({"protocol": protocol, "source": "s", "budget": 10, "target": "t", "metric": metric,
                            "set": label, "seed": e, "set_seed": d, "acc": a, "application": True,
                            "real": label in real})
    return out


def _app_cfg(primary, protocol="kd", **kw):
    return load_config(LeaderboardConfig, extra={
        "name": "x", "rows": [{"method": m} for m in ("random", "random_labelled", "krr_st", "mkdt")],
        "protocols": [{"name": "krrst"}, {"name": protocol}], "distill_seeds": list(range(6)), "seeds": [0],
        "primary": primary, **kw})


def test_an_application_presets_primary_family_is_corrected_on_its_own():
    kd = {"random_labelled": [20, 21, 19.5, 20.4, 20.9, 19.8], "reservoir (real)": [20.5, 21.4, 19.0, 20.0, 21.2, 20.1],
          "krr_st": [21.0, 22.6, 20.4, 21.9, 21.5, 21.0], "mkdt": [19.0, 20.1, 19.2, 19.9, 20.3, 18.8]}
    prim = [{"set": "krr_st", "vs": "random_labelled", "protocol": "kd"},
            {"set": "mkdt", "vs": "random_labelled", "protocol": "kd"}]
    ev = _rows({("krrst", "random"): [50, 51, 49, 50.5, 50.2, 49.9], ("krrst", "krr_st"): [51, 52.5, 50, 51.8, 50, 52]})
    for r in ev:
        r["set_seed"] = r["set_seed"] % 6
    cfg = _app_cfg(prim + [{"set": "krr_st", "vs": "random", "protocol": "krrst"}])
    g = gains(cfg, _app_rows(kd, real=("random_labelled", "reservoir (real)")) + ev)
    mine = {(x["set"], x["baseline"]): x for x in g if x.get("primary") and x["protocol"] == "kd"}
    assert set(mine) == {("krr_st", "random_labelled"), ("mkdt", "random_labelled")}
    ref = holm([mine[k]["p"] for k in sorted(mine)])
    assert [mine[k]["p_adj"] for k in sorted(mine)] == pytest.approx(ref)      # Holm over its own 2 alone
    assert all(x["family"] == 2 and x["family_name"] == "kd" for x in mine.values())
    ev_prim = next(x for x in g if x.get("primary") and x["protocol"] == "krrst")
    assert ev_prim["family"] == 1 and ev_prim["p_adj"] == pytest.approx(ev_prim["p"])   # its own family
    # a secondary row more (another method against the best real row) changes no primary adjusted p
    more = {**kd, "herding": [20.1, 20.9, 19.4, 20.3, 20.6, 19.9]}
    g2 = gains(cfg, _app_rows(more, real=("random_labelled", "reservoir (real)")) + ev)
    mine2 = {(x["set"], x["baseline"]): x for x in g2 if x.get("primary") and x["protocol"] == "kd"}
    assert {k: x["p_adj"] for k, x in mine2.items()} == pytest.approx({k: x["p_adj"] for k, x in mine.items()})
    sec = [x for x in g2 if x["protocol"] == "kd" and not x.get("primary")]
    assert sec and all(x.get("best_real") for x in sec)
    # the pair the primary family reads is not also a secondary comparison (one family per comparison)
    assert not any((x["set"], x["baseline"]) in mine for x in sec)


def test_a_primary_comparison_may_name_an_applications_reference_row_and_only_under_that_protocol():
    cont = {"overrides": {"references": ["reservoir", "herding"]}}
    ok = load_config(LeaderboardConfig, extra={
        "name": "x", "rows": [{"method": "random"}, {"method": "random_labelled"}, {"method": "krr_st"}],
        "protocols": [{"name": "continual", **cont}, {"name": "krrst"}],
        "primary": [{"set": "krr_st", "vs": "reservoir (real)", "protocol": "continual"}]})
    ok.validate()
    assert ok.reference_rows("continual") == ["reservoir (real)", "herding (real)"]
    with pytest.raises(UserError, match="not rows"):
        load_config(LeaderboardConfig, extra={
            "name": "x", "rows": [{"method": "random"}, {"method": "random_labelled"}, {"method": "krr_st"}],
            "protocols": [{"name": "continual", **cont}, {"name": "krrst"}],
            "primary": [{"set": "krr_st", "vs": "reservoir (real)", "protocol": "krrst"}]}).validate()


def test_averaging_students_inside_a_unit_keeps_the_unit_count_and_splits_the_spread():
    from distill.leaderboard.stats import plan
    rng = np.random.default_rng(0)
    units, k = 8, 4
    effect = rng.normal(1.0, 0.7, units)               # the set seed's own effect on the paired difference
    base = [[20.0 + rng.normal(0, 0.1) for _ in range(k)] for _ in range(units)]
    meth = [[b + effect[u] + rng.normal(0, 1.5) for b in base[u]] for u in range(units)]
    rows = _app_rows({"krr_st": meth, "random_labelled": base}, real=("random_labelled",))
    cfg = _app_cfg([{"set": "krr_st", "vs": "random_labelled", "protocol": "kd"}], distill_seeds=list(range(units)),
                   seeds=list(range(k)))
    x = next(x for x in plan(cfg, rows) if x["n"])
    assert x["n"] == units                              # k students per unit are not k times the samples
    d = np.asarray(meth) - np.asarray(base)
    means = d.mean(axis=1)
    assert x["gain_std"] == pytest.approx(np.std(means, ddof=1))
    assert x["detectable"] == pytest.approx(detectable_gain(np.std(means, ddof=1), units, 0.05, 0.8))
    # one-way random-effects ANOVA, by its textbook mean squares
    msw = ((d - means[:, None]) ** 2).sum() / (units * (k - 1))
    msb = k * ((means - means.mean()) ** 2).sum() / (units - 1)
    assert x["sd_within"] == pytest.approx(math.sqrt(msw)) and x["students"] == k
    assert x["sd_between"] == pytest.approx(math.sqrt(max(0.0, (msb - msw) / k)))
    assert x["students_share"] == pytest.approx((msw / k) / (msb / k))
    # the same cells with one student per unit: no decomposition, the same unit count
    one = [r for r in rows if r["seed"] == 0]
    y = next(y for y in plan(_app_cfg([{"set": "krr_st", "vs": "random_labelled", "protocol": "kd"}],
                                      distill_seeds=list(range(units))), one) if y["n"])
    assert y["n"] == units and "sd_within" not in y


def test_application_presets_sharing_a_results_folder_keep_each_others_headers(tmp_path):
    from distill.leaderboard.results import write_group_info
    write_group_info(tmp_path, "cifar10-n100", {"teacher": "t", "apps": {"nas": "NAS proxy: ..."}, "rows": {"x": 1},
                                                "experts": "MKDT's 4 experts"})
    # a continual sitting makes no experts: its empty line must not wipe the NAS sitting's
    write_group_info(tmp_path, "cifar10-n100", {"teacher": "t", "apps": {"kd": "Data-free KD: ..."},
                                                "own_memory": ["continual"], "experts": "", "classifier": ""})
    info = json.loads((tmp_path / "info" / "cifar10-n100.json").read_text())
    assert info["apps"] == {"nas": "NAS proxy: ...", "kd": "Data-free KD: ..."}
    assert info["own_memory"] == ["continual"] and "rows" not in info
    assert info["experts"] == "MKDT's 4 experts" and info["classifier"] == ""


def test_the_plan_prices_one_more_set_seed_from_the_result_files_seconds():
    from distill.leaderboard.render import plan_markdown
    from distill.leaderboard.stats import plan
    kd = {"random_labelled (equal bytes)": [20, 21, 19.5, 20.4], "krr_st": [21.0, 22.6, 20.4, 21.9]}
    cfg = _app_cfg([{"set": "krr_st", "vs": "random_labelled (equal bytes)", "protocol": "kd"}],
                   distill_seeds=[0, 1, 2, 3], seeds=[0, 1])
    rows = _app_rows(kd, real=("random_labelled (equal bytes)",))
    info = {"s N=10": {"cell_seconds_by": {"kd|krr_st": [10.0, 14.0], "kd|random_labelled (equal bytes)": [6.0]},
                       "rows": {"krr_st": {"seconds": 8.0}, "random_labelled (equal bytes)": {"seconds": 0.0},
                                "mkdt": {"seconds": 999.0}}}}
    text = plan_markdown(cfg, plan(cfg, rows), info)
    # (12 + 6) s per cell x 2 evaluation seeds + 8 s of KRR-ST's set; mkdt's set is not read by the family
    assert "one more set seed of its rows costs about 44 s (36 s of cells for 2 rows x 2 evaluation seed(s), 8 s " \
           "of distillation)" in text
    info["s N=10"]["own_memory"] = ["kd"]           # an application that makes its own memory: no set to make
    assert "44 s" not in plan_markdown(cfg, plan(cfg, rows), info) and "costs about 36 s (36 s of cells" in \
        plan_markdown(cfg, plan(cfg, rows), info)


def test_the_compute_line_counts_a_snapshotted_run_once():
    from distill.leaderboard.render import _earlier_snapshots
    cfg = load_config(LeaderboardConfig, "configs/leaderboard/compute_boost_cifar10_cpu.yaml")
    assert _earlier_snapshots(cfg) == {"boost x1", "boost x3"}        # boost x10 is the run; the others its steps
    assert _earlier_snapshots(load_config(LeaderboardConfig, "configs/leaderboard/cpu.yaml")) == set()


def test_a_table_of_protocols_that_make_their_own_memory_charges_no_sets():
    from distill.leaderboard.render import compute_line
    cfg = load_config(LeaderboardConfig, "configs/leaderboard/apps_continual_cifar10_cpu.yaml")
    gi = {"cell_seconds": [60.0, 60.0], "rows": {"krr_st": {"seconds": 600.0}}, "experts": "MKDT's 4 experts"}
    # the shared folder's sets (made for NAS or KD) are charged while continual is not known to make its own memory
    line = compute_line(cfg, "g", gi)
    assert "making the sets 10 min" in line and "experts and classifiers" in line
    gi["own_memory"] = ["continual"]
    line = compute_line(cfg, "g", gi)
    assert "no sets made" in line and "making the sets" not in line and "experts" not in line
    assert "evaluating 2 cells 2 min" in line
    # a table that also reads sets (the whole application preset) still charges them
    both = load_config(LeaderboardConfig, "configs/leaderboard/apps_cifar10_cpu.yaml")
    assert "making the sets 10 min" in compute_line(both, "g", gi)


def test_an_application_refuses_a_set_seed_its_own_cells_began_on_another_machine(tmp_path):
    from distill.leaderboard.results import check_unit_machine
    intel = {"machine": "Intel Xeon (2 threads, AVX512-BF16/AMX)", "precision": "bf16", "torch": "2.14"}
    amd = {"machine": "AMD EPYC (2 threads, AVX512-BF16/AMX)", "precision": "bf16", "torch": "2.14"}
    cell = tmp_path / "cells" / "nas" / "cifar10-n100-krr-st-d3-s0-0123456789ab.json"
    cell.parent.mkdir(parents=True)
    cell.write_text(json.dumps({"rows": [], "stamp": intel}))
    # transfer's table pairs only transfer's cells: NAS's set seed 3 on another machine does not bind it
    check_unit_machine(tmp_path, "cifar10-n100", 3, amd, protocols={"transfer"})
    check_unit_machine(tmp_path, "cifar10-n100", 3, intel, protocols={"nas"})
    with pytest.raises(UserError, match="set seed 3 of cifar10-n100 already has results from another machine"):
        check_unit_machine(tmp_path, "cifar10-n100", 3, amd, protocols={"nas"})
    with pytest.raises(UserError):          # an evaluation leaderboard counts every protocol's cells
        check_unit_machine(tmp_path, "cifar10-n100", 3, amd)
