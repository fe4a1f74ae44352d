import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from distill.cli import cli
from distill.config import DistillConfig, EvalConfig, TeacherConfig, load_config, load_eval_config
from distill.distilled import DistilledSet

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
TINY_OVERRIDES = ["teacher.backbone=convnet-d2-w8-bn", "teacher.epochs=1", "teacher.knn_k=10", "steps=4",
                  "krr_st.pool_arch=convnet-d2-w8-bn", "krr_st.pool_size=2", "krr_st.pool_steps=3",
                  "krr_st.real_batch=64", "budget=20", "evaluate.arch=convnet-d2-w8-bn", "evaluate.pretrain.epochs=3",
                  "evaluate.linear.steps=5", "evaluate.seeds=[0]"]


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_config_loads(path):
    rel = path.relative_to(CONFIGS)
    top = rel.parts[0]
    if top == "teacher":
        load_config(TeacherConfig, path)
    elif top == "mkdt" and rel.name.startswith("experts_"):
        from distill.methods.mkdt.experts import ExpertsConfig
        load_config(ExpertsConfig, path)
    elif top == "scdd" and rel.name.startswith("squeeze_"):
        from distill.methods.scdd.squeeze import SqueezeConfig
        load_config(SqueezeConfig, path)
    elif top in ("krr_st", "random", "kcenter", "mkdt", "scdd", "boost"):
        from distill.methods import get_method, method_config
        cfg = load_config(DistillConfig, path)
        method_config(get_method(cfg.method), cfg.params)
    elif top == "eval":
        assert isinstance(load_eval_config(path), EvalConfig)
    elif top == "leaderboard":
        from distill.leaderboard import LeaderboardConfig
        cfg = load_config(LeaderboardConfig, path)
        for row in cfg.all_rows():   # every row's params are valid for its method
            from distill.methods import get_method, method_config
            method_config(get_method(row.method), row.params)
    elif top == "demo.yaml":
        from distill.demo import DemoConfig
        load_config(DemoConfig, path)
    elif top == "apps":
        name = rel.parts[1]
        if name.startswith("nas_"):
            from applications.nas.config import NASConfig
            load_config(NASConfig, path)
        elif name.startswith("continual_"):
            from applications.continual.config import ContinualConfig
            load_config(ContinualConfig, path)
        elif name.startswith("kd_"):
            from applications.kd import KDConfig
            load_config(KDConfig, path)
        elif name.startswith("transfer_"):
            from applications.transfer import TransferConfig
            load_config(TransferConfig, path)
        else:
            raise AssertionError(f"an application config without a test: {name}")
    else:
        raise AssertionError(f"a config folder without a test: {top}")


def test_demo_runs_end_to_end_small(tmp_path):
    r = CliRunner().invoke(cli, ["demo", "-o", str(tmp_path)] + TINY_OVERRIDES, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    for f in ("README.md", "results.md", "results.csv", "results.json", "krr_st.png", "random.png", "krr_st_loss.png",
              "teacher.safetensors", "krr_st.safetensors", "random.safetensors"):
        assert (tmp_path / f).exists(), f
    table = (tmp_path / "results.md").read_text()
    assert "| KRR-ST (N=20) |" in table and "| random subset (N=20) |" in table and "| no pre-training |" in table
    # the verdict line, whichever way it goes
    assert re.search(r"KRR-ST is \d+\.\d\d points (above|below) the random subset here", r.output), r.output
    assert len(DistilledSet.load(tmp_path / "krr_st.safetensors")) == 20
