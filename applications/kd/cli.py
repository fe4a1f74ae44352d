"""``ssdd kd``: distil a teacher classifier into students through a distilled set's images."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("kd")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML config (applications/kd/run.py: KDConfig), e.g. configs/apps/kd_cifar10.yaml")
@click.argument("overrides", nargs=-1)
def kd(config_path, overrides):
    """Data-free KD: teacher -> student on distilled images (vs noise, random subset).  OVERRIDES: key=value ..."""
    from distill.config import load_config

    from .run import KDConfig, run_kd
    cfg = load_config(KDConfig, config_path, overrides)
    res = run_kd(cfg)
    click.echo("\n" + res["table"])
    click.echo(f"wrote {res['paths']['md']}, {res['paths']['csv'].name}, {res['paths']['json'].name}")
