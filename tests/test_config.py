from dataclasses import dataclass, field

import pytest

from distill.config import DataConfig, load_config, to_dict
from distill.errors import ConfigError


@dataclass
class Opt:
    lr: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class Cfg:
    data: DataConfig = field(default_factory=DataConfig)
    opt: Opt = field(default_factory=Opt)
    epochs: int = 10
    name: str = "run"


def test_yaml_and_overrides_merge_in_order(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 20\ndata:\n  name: cifar10\n  root: /x\nopt:\n  lr: 0.5\n")
    cfg = load_config(Cfg, f, ["opt.lr=0.01", "data.image_size=64"])
    assert isinstance(cfg, Cfg) and isinstance(cfg.data, DataConfig)
    assert cfg.epochs == 20 and cfg.data.name == "cifar10" and cfg.data.root == "/x"
    assert cfg.opt.lr == 0.01 and cfg.data.image_size == 64
    assert to_dict(cfg)["opt"]["betas"] == [0.9, 0.999]


def test_base_inheritance(tmp_path):
    (tmp_path / "base.yaml").write_text("epochs: 3\nname: base\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nname: child\n")
    cfg = load_config(Cfg, tmp_path / "child.yaml")
    assert (cfg.epochs, cfg.name) == (3, "child")


def test_unknown_key_names_key_and_valid_ones():
    with pytest.raises(ConfigError) as e:
        load_config(Cfg, None, ["data.nme=cifar10"])
    msg = str(e.value)
    assert "data.nme" in msg and "name" in msg and "root" in msg and "did you mean 'name'" in msg


def test_unknown_key_in_file_names_the_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("epoch: 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'epoch' \(in .*bad.yaml\).*epochs"):
        load_config(Cfg, f)


def test_type_errors_and_malformed_overrides(tmp_path):
    with pytest.raises(ConfigError, match="epochs"):
        load_config(Cfg, None, ["epochs=ten"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Cfg, None, ["epochs"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(Cfg, tmp_path / "missing.yaml")
