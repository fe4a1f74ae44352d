import json
import random

import numpy as np
import pytest
import torch

from distill.engine import (MetricLogger, atomic_path, get_rng_state, load_checkpoint, resolve_device,
                            save_checkpoint, seed_everything, set_rng_state)
from distill.errors import FileFormatError, UserError


def test_checkpoint_roundtrip_model_optimizer_and_rng(tmp_path):
    seed_everything(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": 7, "rng": get_rng_state(),
             "nested": {"t": (1, 2.5, None), "inf": float("inf")}}
    path = save_checkpoint(tmp_path / "ck.safetensors", state, meta={"note": "x"})
    expected = (torch.rand(3), np.random.rand(2), random.random())

    back = load_checkpoint(path)
    assert back["step"] == 7 and back["__meta__"] == {"note": "x"}
    assert back["nested"]["t"] == (1, 2.5, None) and back["nested"]["inf"] == float("inf")
    for k, v in model.state_dict().items():
        assert torch.equal(back["model"][k], v)
    opt2 = torch.optim.AdamW(torch.nn.Linear(4, 3).parameters(), lr=1e-3)
    opt2.load_state_dict(back["opt"])  # int keys of the optimizer state survive
    assert set(opt2.state_dict()["state"]) == {0, 1}
    set_rng_state(back["rng"])
    again = (torch.rand(3), np.random.rand(2), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_checkpoint_rejects_other_files(tmp_path):
    p = tmp_path / "x.safetensors"
    torch.save({"a": 1}, p)
    with pytest.raises(FileFormatError, match="zip archive"):
        load_checkpoint(p)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_metric_logger_writes_jsonl(tmp_path):
    with MetricLogger(tmp_path / "m.jsonl") as log:
        log.log(1, loss=torch.tensor(0.5), lr=0.1)
        log.log(2, loss=0.25)
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and rows[0]["loss"] == 0.5 and rows[1]["loss"] == 0.25


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(UserError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda")


# --------------------------------------------------------------------------- the one loop

def test_fit_reaches_the_least_squares_solution():
    from distill.engine import fit
    g = torch.Generator().manual_seed(0)
    x, w_true = torch.randn(64, 5, generator=g), torch.randn(5, 1, generator=g)
    y = x @ w_true + 0.1 * torch.randn(64, 1, generator=g)
    lin = torch.nn.Linear(5, 1, bias=False)
    torch.nn.init.zeros_(lin.weight)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    res = fit(lambda i: (lin(x) - y).pow(2).mean(), 300, optimizer=opt, log_every=50)
    closed = torch.linalg.lstsq(x, y).solution
    assert torch.allclose(lin.weight.detach().T, closed, atol=1e-4)
    assert [r["step"] for r in res.history] == [50, 100, 150, 200, 250, 300]
    assert res.history[-1]["loss"] < res.history[0]["loss"]


def test_fit_logs_interval_means_and_calls_the_hook(tmp_path):
    from distill.engine import MetricLogger, fit
    seen = []
    with MetricLogger(tmp_path / "m.jsonl") as log:
        res = fit(lambda i: {"loss": torch.tensor(float(i)), "aux": torch.tensor(2.0 * i)}, 5, start=1, log=log,
                  log_every=2, on_step=lambda done, row: seen.append((done, row is not None)))
    assert [(r["step"], r["loss"], r["aux"]) for r in res.history] == [(2, 1.0, 2.0), (4, 2.5, 5.0), (5, 4.0, 8.0)]
    assert seen == [(2, True), (3, False), (4, True), (5, True)]
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == 3


def test_fit_stops_on_nan_with_the_loss_named():
    from distill.engine import fit
    from distill.errors import NumericalError
    with pytest.raises(NumericalError, match=r"probe: the KD loss became nan at step 4") as e:
        fit(lambda i: torch.tensor(float("nan") if i == 3 else 1.0), 10, desc="probe", what="KD loss",
            fix="lower lr", log_every=2)
    assert "lower lr" in str(e.value)


def test_accuracy_matches_a_direct_count():
    from distill.engine import accuracy
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(50, 4, generator=g), torch.randint(0, 3, (50,), generator=g)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    net.train()
    expected = 100.0 * (net.eval()(x).argmax(1) == y).sum().item() / 50
    net.train()
    assert accuracy(net, x, y, batch_size=7) == pytest.approx(expected)
    assert net.training  # the mode is restored


def test_epoch_batches_cover_each_epoch_once():
    from distill.engine import epoch_batches
    b = epoch_batches(10, 4, torch.device("cpu"))
    assert b.steps_per_epoch == 3
    epoch = torch.cat([b(i) for i in range(3)])
    assert sorted(epoch.tolist()) == list(range(10))
    b2 = epoch_batches(10, 4, torch.device("cpu"), drop_last=True)
    assert b2.steps_per_epoch == 2 and len(b2(1)) == 4


def test_amp_policy(monkeypatch):
    from distill.engine import device as dev
    from distill.errors import ConfigError
    assert [dev.amp_mode(v) for v in (True, False, "auto", "off", "bf16", "true", "fp32")] == \
        ["auto", "off", "auto", "off", "bf16", "auto", "off"]
    with pytest.raises(ConfigError, match="amp must be one of"):
        dev.amp_mode("fp8")
    cpu = torch.device("cpu")
    monkeypatch.setattr(dev, "cpu_has_bf16_units", lambda: False)
    assert dev.amp_dtype(cpu, "auto") is None and "fp32" in dev.describe_precision(cpu, "auto")
    assert dev.amp_dtype(cpu, "bf16") is torch.bfloat16
    monkeypatch.setattr(dev, "cpu_has_bf16_units", lambda: True)
    assert dev.amp_dtype(cpu, "auto") is torch.bfloat16 and "CPU bf16 units" in dev.describe_precision(cpu)
    assert dev.amp_dtype(cpu, "off") is None
    with dev.autocast(cpu, "auto"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
        with dev.full_precision(cpu):
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_a_commit_is_dirty_for_changed_code_but_not_for_docs_being_written(tmp_path):
    import subprocess
    from distill.engine.provenance import git_commit
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": __import__("os").environ["PATH"], "HOME": str(tmp_path)}
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "README.md").write_text("# r\n")
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-qm", "c"]):
        subprocess.run(["git", *cmd], cwd=tmp_path, env=env, check=True)
    clean = git_commit(tmp_path / "sub")
    assert clean and "+dirty" not in clean
    (tmp_path / "README.md").write_text("# r\nblock\n")       # a docs block written by a run: still clean
    assert git_commit(tmp_path / "sub") == clean
    (tmp_path / "a.py").write_text("x = 2\n")                 # code changed, seen from a subfolder too
    assert git_commit(tmp_path / "sub") == clean + "+dirty"
