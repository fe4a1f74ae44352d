"""``ssdd transfer``: the cross-architecture table."""
from __future__ import annotations

import click

from distill.cli import config_command


def _load():
    from .run import TransferConfig, run_transfer
    return TransferConfig, run_transfer


def _report(cfg, res):
    click.echo("\n" + res["table"])
    click.echo(f"wrote {res['paths']['md']}, {res['paths']['plot']}, {res['paths']['csv'].name}")


transfer = config_command("transfer", _load, "Pre-train architectures on distilled sets, then fine-tune / "
                                             "linear-probe on targets (e.g. -c configs/apps/transfer_sample.yaml).",
                          _report)
