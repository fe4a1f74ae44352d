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


def test_protocol_is_read_after_base_inheritance(tmp_path):
    """A YAML file that starts from configs/eval/mkdt.yaml gets the mkdt preset, not krrst."""
    from distill.config import CONFIG_DIR
    from distill.evaluate import list_protocols, load_eval_config
    cfg_file = tmp_path / "mine.yaml"
    cfg_file.write_text(f"base: {CONFIG_DIR / 'eval' / 'mkdt.yaml'}\nseeds: [0]\n")
    cfg = load_eval_config(cfg_file)
    assert cfg.protocol == "mkdt" and cfg.seeds == [0]
    assert cfg.pretrain.epochs == 20 and cfg.linear.label_fractions == [0.01, 0.05] and not cfg.finetune.enabled
    assert load_eval_config(cfg_file, protocol="krrst").pretrain.epochs == 1000
    assert {"krrst", "mkdt"} <= set(list_protocols())


def test_cli_protocol_choices_come_from_the_registry():
    from click.testing import CliRunner

    from distill.cli import cli
    from distill.evaluate import list_protocols
    r = CliRunner().invoke(cli, ["evaluate", "--protocol", "nope"])
    assert r.exit_code == 2
    assert all(p in r.output for p in list_protocols())


def test_schemas_live_beside_their_code_and_the_old_names_still_work():
    import distill.config as c
    from distill.evaluate.config import EvalConfig
    from distill.methods.run import DistillConfig
    from distill.ssl.train import TeacherConfig
    assert c.EvalConfig is EvalConfig and c.DistillConfig is DistillConfig and c.TeacherConfig is TeacherConfig


def test_list_items_can_be_overridden_by_index():
    from distill.errors import ConfigError
    from distill.leaderboard import LeaderboardConfig
    cfg = load_config(LeaderboardConfig, "configs/leaderboard/cpu.yaml", ["sources.0.data.root=/x", "targets.0.root=/y",
                                                                          "seeds=[0]"])
    assert cfg.sources[0].data.root == "/x" and cfg.targets[0].root == "/y" and cfg.seeds == [0]
    with pytest.raises(ConfigError, match="no 'sources.5.data.root'"):
        load_config(LeaderboardConfig, "configs/leaderboard/cpu.yaml", ["sources.5.data.root=/x"])
