"""``ssdd transfer``: the cross-architecture table."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("transfer")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML config (applications/transfer/run.py: TransferConfig)")
@click.argument("overrides", nargs=-1)
def transfer(config_path, overrides):
    """Pre-train architectures on distilled sets, fine-tune / probe on targets.  OVERRIDES: key=value ..."""
    from distill.config import load_config

    from .run import TransferConfig, run_transfer
    cfg = load_config(TransferConfig, config_path, overrides)
    res = run_transfer(cfg)
    click.echo("\n" + res["table"])
    click.echo(f"wrote {res['paths']['md']}, {res['paths']['plot']}, {res['paths']['csv'].name}")
