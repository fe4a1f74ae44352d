"""scripts/gpu_suite.py end to end at toy size on the CPU, so it works the first time a GPU appears."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def suite(work: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SSDD_PROGRESS": "0", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "scripts/gpu_suite.py", "--work", str(work), "--toy", "--device", "cpu", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow      # about 2 min on 2 cores: the whole toy suite, two calls (make test-all)
def test_the_gpu_suite_runs_every_part_resumes_and_writes_its_rows(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    # a call too short for the quality run stops with status 3 and keeps what it finished
    first = suite(work, "--parts", "teacher_throughput,quality", "--budget-s", "21")
    assert first.returncode == 3, first.stdout[-3000:] + first.stderr[-3000:]
    state = json.loads((work / "state.json").read_text())
    assert state["done"] == ["teacher_throughput"]
    # the next call skips the finished part and completes the rest
    second = suite(work, "--copy-to", str(out))
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "[teacher_throughput] done before; skipped" in second.stdout and "the suite is complete" in second.stdout
    state = json.loads((work / "state.json").read_text())
    assert state["done"] == ["teacher_throughput", "krrst_step", "mkdt_memory", "quality", "scdd_recover",
                             "scdd_quality", "boost_quality"]
    parts = {r["part"] for r in state["rows"]}
    assert parts == {"krrst_step", "teacher_throughput", "mkdt_memory", "quality", "scdd_recover", "scdd_quality",
                     "boost_quality"}
    assert {"scdd - random_labelled", "boost - random"} <= {r["what"].split(",")[0] for r in state["rows"]}
    step = next(r for r in state["rows"] if r["part"] == "krrst_step" and "fp32 both" in r["what"])
    assert step["ours"] > 0 and step["unit"] == "s/step"
    if step["reference"] is not None:          # the authors' code sits in .ref/ here, not in CI
        assert abs(step["ratio"] - step["reference"] / step["ours"]) < 1e-2
    quality = [r for r in state["rows"] if r["part"] == "quality"]
    assert {"random", "random_labelled"} <= {r["what"].split(" - ")[1].split(",")[0] for r in quality}
    # the results came back (no checkpoints), and render into the docs between the markers
    assert (out / "state.json").exists() and not list(out.rglob("*.ckpt.safetensors"))
    doc = tmp_path / "B.md"
    doc.write_text("intro\n<!-- gpu-suite -->\nold\n<!-- /gpu-suite -->\nend\n")
    assert suite(work, "--docs", str(doc)).returncode == 0
    text = doc.read_text()
    assert "old" not in text and "| krrst_step |" in text and "| quality |" in text and text.endswith("end\n")
