import pytest
import torch
from click.testing import CliRunner

from distill.cli import cli
from distill.config import DataConfig, DistillConfig
from distill.errors import ConfigError, DataError
from distill.methods import get_method, method_config, run_distillation
from distill.methods.baselines import k_center_greedy

from .helpers import small_source, tiny_teacher


def test_k_center_greedy_on_a_line():
    pts = torch.arange(11, dtype=torch.float32).view(-1, 1)  # 0, 1, ..., 10
    assert k_center_greedy(pts, 3, first=0).tolist() == [0, 10, 5]


@pytest.mark.parametrize("method", ["random", "kcenter"])
def test_subset_baselines(tmp_path, method):
    src = small_source(20)
    teacher = tiny_teacher(source=src)
    cfg = DistillConfig(data=DataConfig(name="sample"), method=method, budget=30, class_conditional=True,
                        output=str(tmp_path / "s.safetensors"))
    res = run_distillation(cfg, teacher=teacher, source=src)
    s = res.set
    assert s.labels.bincount().tolist() == [3] * 10
    idx = torch.tensor(s.meta["source_indices"])
    assert torch.equal(s.images, src.float(idx)) and torch.equal(s.labels, src.labels[idx])
    assert torch.allclose(s.targets, teacher.encode(s.images), atol=1e-6)
    assert len(set(idx.tolist())) == 30


def test_random_without_classes_and_budget_errors(tmp_path):
    src = small_source(5)
    cfg = DistillConfig(method="random", budget=60, output=str(tmp_path / "r.safetensors"))
    with pytest.raises(DataError, match="exceeds"):
        run_distillation(cfg, teacher=tiny_teacher(source=src), source=src)
    cfg = DistillConfig(method="random", budget=5, class_conditional=True, output=str(tmp_path / "r.safetensors"))
    with pytest.raises(DataError, match="cannot cover 10 classes"):
        run_distillation(cfg, teacher=tiny_teacher(source=src), source=src)


def test_registry_and_params_errors():
    with pytest.raises(ConfigError, match="unknown method 'krr'"):
        get_method("krr")
    with pytest.raises(ConfigError, match="pool_szie") as e:
        method_config(get_method("krr_st"), {"pool_szie": 3})
    assert "pool_size" in str(e.value)
    with pytest.raises(ConfigError, match="needs a teacher"):
        run_distillation(DistillConfig(method="random", budget=5))


def test_cli_reports_config_errors(tmp_path):
    r = CliRunner().invoke(cli, ["distill", "method=krr_st", "params.lr_imgs=1"])
    assert r.exit_code == 2 and "lr_imgs" in r.output and "lr_images" in r.output
    r = CliRunner().invoke(cli, ["distill", "budgett=3"])
    assert r.exit_code == 2 and "unknown config key 'budgett'" in r.output


def test_resolution_and_channel_mismatch_with_the_teacher(tmp_path):
    from distill.data import load_dataset
    src64 = load_dataset("sample", split="test", image_size=64)
    teacher = tiny_teacher(source=small_source(2))  # a 32 px teacher
    cfg = DistillConfig(method="random", budget=10, output=str(tmp_path / "r.safetensors"))
    with pytest.raises(DataError, match="64 px but the teacher was trained at 32 px"):
        run_distillation(cfg, teacher=teacher, source=src64)
    assert not (tmp_path / "r.safetensors").exists()
