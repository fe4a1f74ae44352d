"""Privacy audit (issue 35): nearest copies and re-identification calibrated on their two ends, LiRA on a toy
problem with and without memorisation, the DP-SGD reference's epsilon against opacus' accountant, and the CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from applications.privacy.copies import audit_copies, nearest
from applications.privacy.lira import attack_metrics, bootstrap_metrics, lira_scores, logit_confidence, resolution


def _images(n, seed, size=8):
    g = torch.Generator().manual_seed(seed)
    # smooth random images (low-frequency blobs), so that neighbours are meaningful
    low = torch.rand(n, 3, 4, 4, generator=g)
    return torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False)


def test_exact_search_matches_brute_force():
    q, k = _images(7, 0), _images(50, 1)
    d, i = nearest(q, k, 2)
    full = torch.cdist(q.reshape(7, -1).double(), k.reshape(50, -1).double())
    ref = full.topk(2, largest=False)
    assert torch.equal(i, ref.indices)
    assert torch.allclose(d.double(), ref.values, atol=1e-5)
    dc, ic = nearest(q, k, 1, "cosine")
    qn = torch.nn.functional.normalize(q.reshape(7, -1).double(), dim=1)
    kn = torch.nn.functional.normalize(k.reshape(50, -1).double(), dim=1)
    assert torch.equal(ic[:, 0], (qn @ kn.T).argmax(1))


def test_copies_calibrated_on_both_ends():
    source, held = _images(400, 2), _images(200, 3)
    idx = torch.randperm(400, generator=torch.Generator().manual_seed(0))[:40]
    enc = lambda x: torch.nn.functional.avg_pool2d(x, 2).flatten(1)      # noqa: E731  a stand-in teacher
    subset = audit_copies(source[idx], source, held, encode=enc, starts=idx.tolist())
    assert subset.summary["reidentified"] == 100.0
    assert subset.summary["pixel_near_copy_1"] == 100.0 and subset.summary["pixel_nearest_is_start"] == 100.0
    noise = torch.rand(40, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    nz = audit_copies(noise, source, held, encode=enc)
    assert nz.summary["reidentified"] == 0.0 and nz.summary["pixel_near_copy_5"] == 0.0
    # source images with small added noise are still singled out (no starts given: the attacker's rule alone)
    noisy = (source[idx] + 0.02 * torch.randn(40, 3, 8, 8, generator=torch.Generator().manual_seed(6))).clamp(0, 1)
    nn_ = audit_copies(noisy, source, held)
    assert nn_.summary["pixel_singled_out"] >= 90.0
    # the rule's false-positive rate on real non-members is what it was calibrated to (about 1 %)
    assert nz.summary["held_out_singled_out"] <= 2.5


def _toy_runs(runs, points, memorise, seed=0):
    """Shadow runs of a toy pipeline: an MLP trained on random-label data that holds a random half of the audit
    points (memorise=True) or never sees them (its training data is disjoint; the masks are drawn all the same)."""
    g = torch.Generator().manual_seed(seed)
    d, k = 20, 4
    audit_x = torch.randn(points, d, generator=g)
    audit_y = torch.randint(0, k, (points,), generator=g)
    keep = torch.rand(runs, points, generator=g) < 0.5
    scores = torch.zeros(runs, points)
    for r in range(runs):
        other_x = torch.randn(30, d, generator=g)
        other_y = torch.randint(0, k, (30,), generator=g)
        x = torch.cat([other_x, audit_x[keep[r]]]) if memorise else other_x
        y = torch.cat([other_y, audit_y[keep[r]]]) if memorise else other_y
        torch.manual_seed(seed * 1000 + r)
        net = torch.nn.Sequential(torch.nn.Linear(d, 64), torch.nn.ReLU(), torch.nn.Linear(64, k))
        opt = torch.optim.Adam(net.parameters(), lr=2e-2)
        for _ in range(150):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        with torch.no_grad():
            scores[r] = logit_confidence(net(audit_x), audit_y)
    return scores.numpy(), keep.numpy()


def test_logit_confidence_closed_form():
    logits = torch.tensor([[2.0, 0.5, -1.0]])
    p = torch.softmax(logits.double(), 1)[0, 0]
    assert abs(float(logit_confidence(logits, torch.tensor([0]))) - float(torch.log(p / (1 - p)))) < 1e-6


def test_lira_separates_memorised_members_and_not_unseen_points():
    s, k = _toy_runs(16, 40, memorise=True)
    on = attack_metrics(*lira_scores(s, k, online=True))
    off = attack_metrics(*lira_scores(s, k, online=False))
    assert on["auc"] > 85 and off["auc"] > 75
    s0, k0 = _toy_runs(16, 40, memorise=False, seed=1)
    none = bootstrap_metrics(*lira_scores(s0, k0), n_resamples=100)
    lo, hi = none["auc"][1], none["auc"][2]
    assert lo <= 50.0 <= hi + 1.0 and abs(none["auc"][0] - 50) < 12


def test_lira_is_unbiased_at_chance_with_balanced_shadows():
    """No signal at all, 8 balanced shadow runs: leave-one-out without equalising the IN and OUT shadows reads
    about 47 % AUC and a TPR @ 1 % FPR below chance; equalised, both sit at chance."""
    from applications.privacy.shadow import shadow_masks
    rng = np.random.default_rng(0)
    keep = shadow_masks(8, 3000, seed=1)
    scores = rng.normal(size=keep.shape) + rng.normal(size=(1, keep.shape[1]))     # per-point offsets, no membership
    for online in (True, False):
        m = attack_metrics(*lira_scores(scores, keep, online=online))
        assert abs(m["auc"] - 50) < 1.0 and 0.6 < m["tpr@1%"] < 1.5, (online, m)
    # with a real effect the equalised attack sees it
    m = attack_metrics(*lira_scores(scores + 1.5 * keep, keep))
    assert m["auc"] > 75


def _rare_entry_runs(runs=8, points=1000, starts=0.02, boost=4.0, seed=0):
    """The privacy preset's regime: a point in a run's private source rarely enters its set (``starts`` of the IN
    cases), and only then does the student fit it better (``boost`` sd); per-point and per-run offsets on top."""
    from applications.privacy.shadow import shadow_masks
    rng = np.random.default_rng(seed)
    keep = shadow_masks(runs, points, seed=seed + 1)
    entered = keep & (rng.random(keep.shape) < starts)
    scores = (rng.normal(size=keep.shape) + rng.normal(size=(1, points)) + 0.5 * rng.normal(size=(runs, 1))
              + boost * entered)
    return scores, keep, entered


def test_offline_lira_reads_the_few_points_that_entered_a_set_where_online_reads_noise():
    """Why the CPU presets attack offline: with 8 runs the online ratio of two Gaussians whose means differ only
    through the rare entries is mostly noise for the entered points themselves."""
    tprs = {}
    for online in (True, False):
        dec, member = lira_scores(*_rare_entry_runs()[:2], online=online)
        _, _, entered = _rare_entry_runs()
        thr = np.quantile(dec[~member], 0.99)
        tprs[online] = float((dec[entered] > thr).mean())
    assert tprs[False] > 0.6 and tprs[False] > tprs[True] + 0.3, tprs      # measured: 0.77 against 0.31


def test_the_two_way_bootstrap_holds_the_runs_variation_and_covers_chance():
    """A run's student shifts all its points together: resampling the audit points alone holds that fixed. The
    two-way interval (runs and points) is wider, and under no membership signal it still covers chance."""
    from scipy.stats import bootstrap

    from applications.privacy.shadow import shadow_masks
    rng = np.random.default_rng(3)
    keep = shadow_masks(8, 400, seed=4)
    scores = rng.normal(size=keep.shape) + rng.normal(size=(1, 400)) + 2.0 * rng.normal(size=(8, 1)) + 0.4 * keep
    dec, member = lira_scores(scores, keep, online=False)
    two = bootstrap_metrics(dec, member, n_resamples=200)

    def points_only(j):
        return attack_metrics(dec[:, j], member[:, j])["auc"]
    one = bootstrap((np.arange(400),), points_only, vectorized=False, n_resamples=200, method="percentile",
                    rng=np.random.default_rng(0)).confidence_interval
    assert two["auc"][2] - two["auc"][1] > 1.2 * (one.high - one.low)
    assert two["auc"][1] <= two["auc"][0] <= two["auc"][2]
    s0, k0 = _toy_runs(16, 40, memorise=False, seed=2)
    null = bootstrap_metrics(*lira_scores(s0, k0, online=False), n_resamples=100)
    assert null["auc"][1] <= 50.0 <= null["auc"][2]


def test_masks_starts_and_scores_index_the_right_points():
    from distill.data import ImageSet

    from applications.privacy.shadow import private_source, shadow_masks, start_points, student_scores
    keep = shadow_masks(6, 50, seed=0)
    assert (keep.sum(0) == 3).all()                             # every point in exactly half of the runs
    base = ImageSet(images=torch.zeros(10, 3, 4, 4, dtype=torch.uint8), labels=torch.zeros(10, dtype=torch.long))
    audit = ImageSet(images=torch.arange(50).view(50, 1, 1, 1).expand(50, 3, 4, 4).to(torch.uint8),
                     labels=torch.arange(50) % 10)
    priv = private_source(base, audit, keep[0])
    kept = np.flatnonzero(keep[0])
    assert len(priv) == 10 + len(kept) and int(priv.images[10, 0, 0, 0]) == kept[0]

    class Meta:                                                 # a set that started from private images 3, 11, 12
        meta = {"init_indices": [3, 11, 12]}
    assert start_points(Meta(), 10, keep[0]) == sorted({int(kept[1]), int(kept[2])})
    # the statistic is the mean over the image and its mirror image (a student that is not flip-invariant)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    x = torch.rand(7, 3, 4, 4)
    reps = torch.randn(7, 5)
    one = lambda v: torch.atanh(torch.nn.functional.cosine_similarity(net(v), reps, dim=1))   # noqa: E731
    want = ((one(x) + one(x.flip(-1))) / 2).detach().numpy()
    got = student_scores(net, "mse", x, torch.zeros(7, dtype=torch.long), reps)
    assert np.allclose(got, want, atol=1e-5) and not np.allclose(got, one(x).detach().numpy(), atol=1e-3)


def test_lira_checks_its_input():
    with pytest.raises(ValueError, match="at least 3"):
        lira_scores(np.zeros((2, 5)), np.zeros((2, 5), bool))
    with pytest.raises(ValueError, match="runs x points"):
        lira_scores(np.zeros((4, 5)), np.zeros((4, 6), bool))


def test_resolution_against_statsmodels():
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize
    r = resolution(4000, 4000, 0.01)
    p = r["detectable_tpr"] / 100
    power = NormalIndPower().power(proportion_effectsize(p, 0.01), nobs1=4000, alpha=0.05, ratio=1.0,
                                   alternative="larger")
    assert abs(power - 0.8) < 1e-3 and 1.0 < r["detectable_tpr"] < 3.0
    assert resolution(400, 400, 0.001)["readable"] is False      # 1 / 400 > 0.1 %


def test_dp_sgd_epsilon_is_the_accountants():
    pytest.importorskip("opacus")
    from opacus.accountants import RDPAccountant
    from applications.privacy.dp import DPConfig, dp_regress, make_dp_compatible
    torch.manual_seed(0)
    x, y = torch.rand(64, 3, 8, 8), torch.randn(64, 5)
    model = make_dp_compatible(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                                   torch.nn.Linear(4, 5)))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    cfg = DPConfig(epsilon=None, noise_multiplier=1.3, epochs=3, batch_size=16, lr=0.1)
    out = dp_regress(model, x, y, cfg)
    acc = RDPAccountant()
    for _ in range(3 * 4):               # epochs x (n / batch) steps at sample rate batch / n
        acc.step(noise_multiplier=1.3, sample_rate=16 / 64)
    assert out["steps"] <= 12 and abs(out["epsilon"] - acc.get_epsilon(out["delta"])) < 1e-6
    assert out["delta"] == pytest.approx(1 / 640) and out["sample_rate"] == pytest.approx(16 / 64)
    # a target epsilon is met by the noise opacus chose
    out = dp_regress(make_dp_compatible(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 5))), x, y,
                     DPConfig(epsilon=4.0, epochs=2, batch_size=16))
    assert out["epsilon"] <= 4.0 + 1e-6 and out["noise_multiplier"] > 0
    from opacus.accountants.utils import get_noise_multiplier          # the sigma make_private_with_epsilon picks
    assert out["noise_multiplier"] == pytest.approx(get_noise_multiplier(
        target_epsilon=4.0, target_delta=out["delta"], sample_rate=16 / 64, epochs=2, accountant="rdp"))


def test_dp_sgd_ghost_clipping_takes_the_same_steps_as_per_example_gradients():
    """The default fast gradient clipping (per-example norms without per-example gradients) against opacus'
    classic hooks path: the same batches, clipping and noise, so the same trained weights to float precision."""
    pytest.importorskip("opacus")
    from applications.privacy.dp import DPConfig, SquaredError, dp_regress, make_dp_compatible

    def trained(mode):
        torch.manual_seed(0)
        model = make_dp_compatible(torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Flatten(),
            torch.nn.Linear(144, 7)))
        torch.manual_seed(1)
        x, y = torch.rand(48, 3, 8, 8), torch.randn(48, 7) * 3      # targets far away: clipping binds
        init = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        out = dp_regress(model, x, y, DPConfig(epsilon=8.0, epochs=2, batch_size=12, lr=0.2, max_grad_norm=0.5),
                         seed=3, grad_sample_mode=mode)
        return torch.cat([p.detach().flatten() for p in out["model"].parameters()]), init, out

    ghost, init, g = trained("ghost")
    hooks, _, h = trained("hooks")
    assert g["steps"] == h["steps"] > 0 and g["epsilon"] == pytest.approx(h["epsilon"])
    assert torch.allclose(ghost, hooks, atol=1e-5)
    assert (ghost - init).abs().max() > 1e-2             # the weights moved: the comparison is not vacuous
    e = SquaredError("none")(torch.ones(3, 4), torch.zeros(3, 4))
    assert e.tolist() == [4.0, 4.0, 4.0] and SquaredError()(torch.ones(3, 4), torch.zeros(3, 4)) == 4.0


# ---------------------------------------------------------------------------------------------- the CLI and the app

def _set_files(tmp_path):
    from distill.data import load_source
    from distill.data.config import DataConfig
    from distill.methods import DistillConfig, run_distillation
    from .helpers import tiny_teacher
    teacher = tiny_teacher()
    tpath = teacher.save(tmp_path / "teacher.safetensors")
    src = load_source(DataConfig(name="sample"), 20)
    out = {}
    for method in ("random", "random_labelled"):
        cfg = DistillConfig(data=DataConfig(name="sample"), method=method, budget=10, seed=3,
                            output=str(tmp_path / f"{method}.safetensors"))
        out[method] = run_distillation(cfg, teacher=teacher, source=src, quiet=True).path
    return tpath, out


def test_audit_cli_reports_copies_and_refuses_a_wrong_source(tmp_path):
    from click.testing import CliRunner
    from distill.cli import cli
    tpath, files = _set_files(tmp_path)
    run = lambda *a: CliRunner().invoke(cli, [str(x) for x in a], catch_exceptions=False)   # noqa: E731
    r = run("audit", files["random"], files["random_labelled"], "--source", "sample", "--train-per-class", 20,
            "--held-out", 100, "--teacher", tpath, "-o", tmp_path / "a", "--docs", tmp_path / "doc.md")
    assert r.exit_code == 0, r.output
    doc = (tmp_path / "doc.md").read_text()
    assert "<!-- audit:a -->" in doc and "](a/copies-random.png)" in doc and "*Provenance:*" in doc
    import json
    res = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert res["random.safetensors"]["reidentified"] == 100.0
    assert res["random.safetensors"]["pixel_nearest_is_start"] == 100.0
    assert (tmp_path / "a" / "copies-random.png").stat().st_size > 1000
    # the whole sample split is not the 20-per-class subset the set was made from
    r = run("audit", files["random"], "--source", "sample", "--held-out", 100, "-o", tmp_path / "b")
    assert r.exit_code == 2 and "not the source" in r.output and "Traceback" not in r.output
    r = run("audit", files["random"], "--source", "cifar10:/nonexistent", "-o", tmp_path / "c")
    assert r.exit_code == 2 and "distilled from 'sample'" in r.output
    assert not (tmp_path / "c").exists() and not (tmp_path / "b" / "audit.md").exists()
    r = run("audit", tmp_path / "missing.safetensors", "--source", "sample")
    assert r.exit_code == 2 and "no such set file" in r.output
    r = run("audit", files["random"], "--source", "sample", "--held-split", "train", "-o", tmp_path / "d")
    assert r.exit_code == 2 and "never be in the source" in r.output and not (tmp_path / "d").exists()


def test_privacy_application_runs_shadow_pipelines(tmp_path):
    """The leaderboard's privacy protocol end to end on the sample preset: shadow runs per row, LiRA, the copy audit
    of the row's own set, a DP-SGD reference with its epsilon, and the resolution stated."""
    from distill.config import load_config
    from distill.leaderboard import LeaderboardConfig, run_leaderboard
    from .helpers import TINY, tiny_teacher
    teacher = tiny_teacher().save(tmp_path / "teacher.safetensors")
    cfg = load_config(LeaderboardConfig, "configs/leaderboard/privacy_sample.yaml", [
        f"sources.0.teacher={teacher}", f"output={tmp_path / 'lb'}", "sources.0.train_per_class=10",
        "sources.0.budgets=[10]", "method_steps.krr_st=3", f"method_params.krr_st.pool_arch={TINY}",
        "method_params.krr_st.pool_steps=2", "targets.0.train_per_class=10", "targets.0.test_per_class=5",
        "protocols.1.overrides.audit_points=20", "protocols.1.overrides.held_out=40",
        "protocols.1.overrides.references=[noise]", "protocols.1.overrides.bootstrap=20",
        "rows=[{method: random}, {method: krr_st}]", "baselines=[random]",
        # DP-SGD at a fixed noise (opacus' epsilon search is test_dp_sgd_epsilon_is_the_accountants' part)
        "protocols.1.overrides.dp=[{epsilon: null, noise_multiplier: 1.0, epochs: 1, batch_size: 64}]"])
    rep = run_leaderboard(cfg, log=lambda m: None)
    rows = {(r["set"], r["metric"]): r for r in rep["rows"] if r["protocol"] == "privacy"}
    assert rows[("random", "re-identified")]["acc"] == 100.0
    assert 0 <= rows[("random", "AUC")]["acc"] <= 100 and rows[("random", "AUC")]["lo"] <= rows[("random", "AUC")]["hi"]
    dp = rows[("DP-SGD (sigma 1)", "epsilon")]
    assert 0 < dp["acc"] < float("inf")
    # the table states the bound (eps, delta)-DP puts on any attack: TPR <= e^eps FPR + delta
    import math
    assert f"≤ {min(100.0, 100 * (math.exp(dp['acc']) * 0.01 + dp['delta'])):.1f} %)" in rep["markdown"]
    assert ("noise", "re-identified") not in rows and ("noise", "AUC") in rows
    assert "TPR @ 1 % FPR not readable" in rep["markdown"]
    # the leakage table with intervals and the privacy-utility picture, drawn from the rows alone
    assert "Leakage with intervals" in rep["markdown"] and any((tmp_path / "lb").glob("privacy_utility-*.png"))
    assert len([r for r in rep["rows"] if r["set"] == "random" and r["metric"] == "student linear"]) == 4   # shadows
    assert rows[("krr_st", "re-identified")]["copies"]["reidentified_by"] == "nearest is own start"
    # the other tables of the same sets gain the leakage columns
    mkdt_table = rep["markdown"].split("protocol `mkdt`")[1].split("####")[0]
    assert "leak: TPR @ 1 % FPR" in mkdt_table and "leak: near copies %" in mkdt_table
    line = next(x for x in mkdt_table.splitlines() if x.startswith("| random |"))
    assert line.rstrip(" |").endswith("100.00")
