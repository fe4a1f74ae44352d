"""Many processes (torchrun, gloo on CPU) compute what one process computes.

Each test launches ``torchrun --nproc_per_node 2`` on a scenario of tests/dist_scenarios.py and
compares what rank 0 wrote with the same scenario run here, in this one process.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests import dist_scenarios
from tests.helpers import small_source, tiny_teacher

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")


def torchrun(*args, procs: int = 2, **kw) -> subprocess.CompletedProcess | subprocess.Popen:
    env = {**os.environ, "SSDD_PROGRESS": "0", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs), *args]
    if kw.pop("background", False):
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    kids = [int(p) for p in out]
    return [k for c in kids for k in (c, *descendants(c))]


def scenario(name: str, tmp_path: Path) -> tuple[dict, Path]:
    out = tmp_path / f"{name}.safetensors"
    torchrun(str(REPO / "tests" / "dist_scenarios.py"), name, str(out))
    return load_file(str(out)), out


def in_one_process(name: str, tmp_path: Path) -> dict:
    torch.set_num_threads(1)
    return dist_scenarios.SCENARIOS[name](tmp_path / f"one-{name}.safetensors")


def assert_close(two: dict, one: dict, rtol: float, keys=None) -> None:
    for k in keys or one:
        a, b = one[k].double(), two[k].double()
        scale = a.abs().max().clamp_min(1e-12)
        assert (a - b).abs().max() / scale < rtol, f"{k}: 2 processes differ from 1 by {(a - b).abs().max():.3g}"


def test_two_processes_take_the_step_one_process_takes(tmp_path):
    two, _ = scenario("equivalence", tmp_path)
    one = in_one_process("equivalence", tmp_path)
    # the gradient of a loss read through a gathered and a summed tensor (fp64): exact up to summation order
    assert_close(two, one, 1e-12, ["gather.grad", "gather.loss"])
    # teacher steps (SimCLR with gathered negatives, Barlow Twins with the summed cross-correlation, SyncBN)
    assert_close(two, one, 1e-4, [k for k in one if k.startswith(("simclr.", "barlow."))])
    # KRR-ST and Boost outer steps: sharded real batch, averaged synthetic gradients
    assert_close(two, one, 1e-4, [k for k in one if k.startswith(("krrst.", "boost."))])
    # MKDT: one iteration on two ranks averages the gradients of two (expert, start epoch) draws
    assert_close(two, one, 1e-4, ["mkdt.x", "mkdt.y", "mkdt.lr"])
    # evaluation's data-parallel fine-tuning (DDP + SyncBatchNorm): the weights, and the test accuracy to a sample.
    # Three SGD steps of a tiny BN network on 16-image shards amplify summation-order noise: one process with 1
    # vs 2 threads already differs by 3.6e-5 in absolute value; a wrong gradient (BatchNorm statistics of
    # the shard: 1.4e-2 when SyncBatchNorm is left out) moves them far more
    for k in [k for k in one if k.startswith("finetune.") and k != "finetune.acc"]:
        assert (one[k] - two[k]).abs().max() < 2e-4, k
    assert abs(float(two["finetune.acc"]) - float(one["finetune.acc"])) <= 2.0      # 50 test images: 2 % each
    # a synthetic set of one image runs in one process and is refused, with the fix, on two
    assert float(one["refusal.refused"]) == 0.0 and float(two["refusal.refused"]) == 1.0
    # the steps moved something (the comparison is not between two untouched initialisations)
    assert one["simclr.losses"][0] != one["simclr.losses"][1]
    assert one["krrst.losses"][0] != one["krrst.losses"][-1]


@pytest.mark.slow
def test_resumed_two_process_run_ends_like_an_uninterrupted_one_and_only_rank_0_writes(tmp_path):
    two, out = scenario("run_resume", tmp_path)
    for k in ("images", "targets"):     # stopped (at step 3, or by a time limit), resumed: bit-identical
        assert torch.equal(two[f"a.{k}"], two[f"b.{k}"]) and torch.equal(two[f"a.{k}"], two[f"c.{k}"])
    one = in_one_process("run_resume", tmp_path)
    assert_close(two, one, 1e-4, ["a.images", "a.targets"])
    rank0 = Path(f"{out}.rank0.writes").read_text().split()
    assert any(p.endswith("a.safetensors") for p in rank0) and any(p.endswith("b.ckpt.safetensors") for p in rank0)
    assert not Path(f"{out}.rank1.writes").exists(), "rank 1 wrote files"


@pytest.mark.slow
def test_split_stages_match_one_process(tmp_path):
    """SC-DD recover (each rank a part, merged by rank 0), experts (one per rank) and evaluation (jobs over
    ranks) give what one process gives."""
    two, out = scenario("split_work", tmp_path)
    one = in_one_process("split_work", tmp_path)
    assert_close(two, one, 1e-5, ["scdd.images", "experts"])
    assert torch.equal(two["eval.seeds"], one["eval.seeds"])            # the rows come back in one process's order
    assert torch.allclose(two["eval.acc"], one["eval.acc"], atol=1e-9)
    folder = Path(f"{out}.d")
    assert not list(folder.glob("scdd.part*.safetensors")), "the parts were not removed after the merge"
    rank1 = Path(f"{out}.rank1.writes").read_text().split()
    # rank 1 writes only its own work: its SC-DD part and its expert, never the merged set or the report
    assert any("part1of2" in p for p in rank1) and any(p.endswith("expert_001.safetensors") for p in rank1)
    assert not any(p.endswith(("scdd.safetensors", "results.md")) for p in rank1)


@pytest.mark.slow
def test_killed_two_process_run_resumes(tmp_path):
    """SIGKILL to both ranks after a checkpoint; ``--resume`` ends where one uninterrupted process does."""
    from distill.methods.run import DistillConfig, run_distillation
    src = small_source(10)
    teacher_path = tmp_path / "teacher.safetensors"
    tiny_teacher(source=src).save(teacher_path)
    npz = tmp_path / "data.npz"
    import numpy as np
    np.savez(npz, x_train=src.images.permute(0, 2, 3, 1).numpy(), y_train=src.labels.numpy())
    out = tmp_path / "set.safetensors"
    overrides = ["data.name=npz", f"data.root={npz}", f"teacher={teacher_path}", "method=krr_st", "budget=10", "steps=60",
                 "device=cpu",
                 "amp=off", "checkpoint_every=1", "params.pool_arch=convnet-d2-w8-bn", "params.pool_size=2",
                 "params.pool_steps=3", "params.real_batch=30", f"output={out}"]
    proc = torchrun("-m", "distill", "distill", *overrides, background=True)
    ckpt = tmp_path / "set.ckpt.safetensors"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.communicate()[0][-3000:]}"
    for pid in [proc.pid, *descendants(proc.pid)]:     # torchrun starts its workers in sessions of their own
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not out.exists(), "the run ended before it could be killed"
    res = torchrun("-m", "distill", "distill", *overrides, "--resume")
    assert "resumed distill/krr_st" in res.stdout and res.stdout.count("wrote ") == 1, res.stdout
    from distill.config import load_config
    cfg = load_config(DistillConfig, None, [o for o in overrides if not o.startswith("output=")] + ["output=null"])
    one = run_distillation(cfg, quiet=True).set
    from distill.distilled import DistilledSet
    two = DistilledSet.load(out)
    assert_close({"x": two.images, "y": two.targets}, {"x": one.images, "y": one.targets}, 1e-4)
