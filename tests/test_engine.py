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
