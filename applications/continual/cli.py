"""``ssdd continual``: a strategy with each buffer on a class-incremental benchmark."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("continual")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML config (applications/continual/config.py), e.g. configs/apps/continual_sample.yaml")
@click.argument("overrides", nargs=-1)
def continual(config_path, overrides):
    """Continual learning with distilled vs real replay at equal memory.  OVERRIDES: key=value ..."""
    from distill.config import load_config

    from .config import ContinualConfig
    from .run import run_continual
    cfg = load_config(ContinualConfig, config_path, overrides)
    res = run_continual(cfg)
    click.echo("\n" + res["table"])
    click.echo(f"wrote {res['paths']['md']}, {res['paths']['plot']}, {res['paths']['json'].name}")
