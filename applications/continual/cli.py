"""``ssdd continual``: a strategy with each buffer on a class-incremental benchmark."""
from __future__ import annotations

import click

from distill.cli import config_command


def _load():
    from .config import ContinualConfig
    from .run import run_continual
    return ContinualConfig, run_continual


def _report(cfg, res):
    click.echo("\n" + res["table"])
    click.echo(f"wrote {res['paths']['md']}, {res['paths']['plot']}, {res['paths']['json'].name}")


continual = config_command("continual", _load, "Continual learning with distilled vs real replay at equal memory "
                                               "(e.g. -c configs/apps/continual_sample.yaml). Each finished run is kept in "
                                               "OUTPUT/runs/ and reused when the command is started again with the "
                                               "same settings.", _report)
