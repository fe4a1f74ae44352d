"""Regression tests for the rough edges a new user hit (issue 11): stale caches, silent runs, wrong
hints, overwritten outputs, file modes, stale temp files, resume bookkeeping."""
import json
import os
import stat

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from distill.cli import cli
from distill.data import load_dataset
from distill.data.config import DataConfig
from distill.distilled import DistilledSet
from distill.engine.stage import _gpu_hint, checkpoint_path
from distill.errors import ConfigError, DataError, UserError
from distill.evaluate import EvalConfig, TargetConfig, evaluate_sets, load_targets
from distill.evaluate.config import LinearConfig
from distill.methods import DistillConfig, run_distillation

from .helpers import small_source, tiny_teacher


def _folder(root, splits=("train",), per_class=2):
    rng = np.random.default_rng(0)
    for split in splits:
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")


def test_imagefolder_cache_sees_files_overwritten_in_place_and_nested(tmp_path):
    _folder(tmp_path / "ds")
    first = load_dataset("imagefolder", tmp_path / "ds", "train", image_size=12)
    img = tmp_path / "ds" / "train" / "cat" / "0.png"
    st = img.stat()
    Image.fromarray(np.zeros((12, 12, 3), dtype=np.uint8)).save(img)       # same size on disk? pixels differ anyway
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 1))                  # even a 1 ns later mtime counts
    again = load_dataset("imagefolder", tmp_path / "ds", "train", image_size=12)
    assert not torch.equal(first.images, again.images) and again.images[0].sum() == 0
    nested = tmp_path / "ds" / "train" / "dog" / "more"
    nested.mkdir()
    Image.fromarray(np.full((12, 12, 3), 7, dtype=np.uint8)).save(nested / "x.png")
    third = load_dataset("imagefolder", tmp_path / "ds", "train", image_size=12)
    assert len(third) == len(first) + 1


def test_data_prepare_imagefolder_skips_a_missing_optional_split(tmp_path):
    _folder(tmp_path / "ds", splits=("train", "test"))
    r = CliRunner().invoke(cli, ["data", "prepare", "imagefolder", "--root", str(tmp_path / "ds"), "--image-size", "12"])
    assert r.exit_code == 0, r.output
    assert "imagefolder/train: 4 images" in r.output and "imagefolder/val: skipped" in r.output
    r = CliRunner().invoke(cli, ["data", "prepare", "imagefolder", "--root", str(tmp_path / "ds"), "--image-size", "12",
                                 "--split", "val"])
    assert r.exit_code == 2 and "no 'val' folder" in r.output


def test_hints_name_the_commands_own_option_and_no_workspace_path(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("cifar100", tmp_path)
    assert "shared/data" not in str(e.value) and "--download" in str(e.value) and "data.root=ROOT" in str(e.value)
    with pytest.raises(DataError) as e:
        load_targets([TargetConfig(name="cifar10")], 32, 3, torch.device("cpu"))
    assert "--targets cifar10:ROOT" in str(e.value) and "with --root" not in str(e.value)
    r = CliRunner().invoke(cli, ["data", "prepare", "cifar10", "--root", str(tmp_path)])
    assert r.exit_code == 2 and "--root ROOT" in r.output


def _distill(tmp_path, **kw):
    base = dict(data=DataConfig(name="sample"), method="random", budget=10, seed=0, output=str(tmp_path / "r.safetensors"))
    base.update(kw)
    return DistillConfig(**base)


def test_default_output_names_follow_the_config_and_other_configs_are_not_overwritten(tmp_path):
    assert DistillConfig().output == "runs/${.data.name}/${.method}_n${.budget}.safetensors"
    from distill.config import load_config
    assert load_config(DistillConfig, overrides=["budget=7", "method=random"]).output == "runs/sample/random_n7.safetensors"
    src = small_source(5)
    t = tiny_teacher(source=src)
    run_distillation(_distill(tmp_path), teacher=t, source=src)
    run_distillation(_distill(tmp_path), teacher=t, source=src)   # the same config again: fine
    with pytest.raises(UserError, match=r"made by another config \(budget=10; this run: budget=20\)") as e:
        run_distillation(_distill(tmp_path, budget=20), teacher=t, source=src)
    assert "--overwrite" in str(e.value)
    res = run_distillation(_distill(tmp_path, budget=20), teacher=t, source=src, overwrite=True)
    assert len(DistilledSet.load(res.path)) == 20


def test_cifar10_baseline_configs_exist_and_write_their_own_files():
    from distill.config import load_config
    outs = set()
    for name in ("random", "kcenter", "krr_st"):
        c10 = load_config(DistillConfig, f"configs/{name}/cifar10.yaml")
        c100 = load_config(DistillConfig, f"configs/{name}/cifar100.yaml")
        assert c10.data.name == "cifar10" and c10.method == name and "cifar10/" in c10.teacher
        assert c10.output != c100.output
        outs |= {c10.output, c100.output}
    assert len(outs) == 6


def test_print_config_everywhere_and_names_validated():
    r = CliRunner().invoke(cli, ["evaluate", "--print-config", "-c", "configs/eval/mkdt.yaml"])
    assert r.exit_code == 0 and "protocol: mkdt" in r.output
    for cmd in (["teacher", "backbone=convnet99"], ["distill", "params.pool_arch=resnet99"],
                ["evaluate", "arch=convnet99"]):
        r = CliRunner().invoke(cli, cmd + ["--print-config"])
        assert r.exit_code == 2 and "99" in r.output, (cmd, r.output)
    with pytest.raises(ConfigError):
        from distill.ssl import TeacherConfig
        TeacherConfig(backbone="nope").validate()


def test_runs_off_a_terminal_print_a_start_line_progress_and_an_estimate(tmp_path, capsys):
    src = small_source(6)
    t = tiny_teacher(source=src)
    cfg = _distill(tmp_path, method="krr_st", steps=12, log_every=2, checkpoint_every=0,
                   params={"pool_arch": "convnet-d2-w8-bn", "pool_size": 2, "pool_steps": 6, "real_batch": 32})
    run_distillation(cfg, teacher=t, source=src)
    out = capsys.readouterr().out
    assert "distill: krr_st on sample/train (60 images), budget 10, 12 steps, device cpu" in out
    assert "KRR-ST pool warm-up:" in out and "s/step after" in out and "to go" in out
    assert "step 12/12" in out


def test_a_gpu_preset_on_a_cpu_gets_a_note(capsys):
    _gpu_hint(7200, torch.device("cpu"), "Use the cpu preset.", "distill krr_st")
    _gpu_hint(600, torch.device("cpu"), "x", "short")
    out = capsys.readouterr().out
    assert "distill krr_st will take about 2h00m on this CPU" in out and "Use the cpu preset." in out
    assert "short" not in out


def test_outputs_get_the_users_mode_and_stale_temps_are_removed(tmp_path):
    old = os.umask(0o022)
    try:
        src = small_source(5)
        t = tiny_teacher(source=src)
        cfg = _distill(tmp_path)
        stale = tmp_path / ".r.safetensors.abc123.tmp"
        stale.write_bytes(b"x" * 100)
        stale_ck = tmp_path / f".{checkpoint_path(cfg.output).name}.zz.tmp"
        stale_ck.write_bytes(b"y")
        res = run_distillation(cfg, teacher=t, source=src)
        assert stat.S_IMODE(res.path.stat().st_mode) == 0o644
        assert not stale.exists() and not stale_ck.exists()
    finally:
        os.umask(old)


def test_metrics_time_continues_on_resume(tmp_path):
    src = small_source(6)
    t = tiny_teacher(source=src)
    cfg = _distill(tmp_path, method="krr_st", steps=6, log_every=1, checkpoint_every=1,
                   params={"pool_arch": "convnet-d2-w8-bn", "pool_size": 2, "pool_steps": 3, "real_batch": 32})
    run_distillation(cfg, teacher=t, source=src, stop_after=3)
    log = tmp_path / "r.metrics.jsonl"
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    run_distillation(cfg, teacher=t, source=src, resume=True)
    rows2 = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["step"] for r in rows2] == [1, 2, 3, 4, 5, 6]
    times = [r["time"] for r in rows2]
    assert times == sorted(times) and times[3] >= rows[-1]["time"]


def test_no_pretraining_row_does_not_depend_on_its_neighbours():
    src = small_source(3)
    t = tiny_teacher(source=src)
    x = src.float()
    odd = DistilledSet(images=x, targets=t.encode(x),
                       meta={"method": "x", "image_size": 32, "channels": 3, "mean": [0.1, 0.2, 0.3], "std": [0.9] * 3})
    cfg = EvalConfig(arch="convnet-d2-w8-bn", targets=[TargetConfig(name="sample", train_per_class=10, test_per_class=5)],
                     linear=LinearConfig(steps=10), seeds=[0], output="unused")
    cfg.finetune.enabled = False
    cfg.pretrain.epochs = 1
    alone = evaluate_sets({"none": None}, cfg, write=False, verbose=False)
    beside = evaluate_sets({"odd": odd, "none": None}, cfg, write=False, verbose=False)
    acc = [r["acc"] for r in alone.rows]
    assert acc == [r["acc"] for r in beside.rows if r["set"] == "none"]
