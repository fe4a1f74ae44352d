"""``ssdd kd``: distil a teacher classifier into students through a distilled set's images."""
from __future__ import annotations

import click

from distill.cli import config_command


def _load():
    from .run import KDConfig, run_kd
    return KDConfig, run_kd


def _report(cfg, res):
    click.echo("\n" + res["table"])
    click.echo(f"wrote {res['paths']['md']}, {res['paths']['csv'].name}, {res['paths']['json'].name}")


kd = config_command("kd", _load, "Data-free KD: teacher -> student on distilled images, versus Gaussian noise and "
                                 "a random real subset (e.g. -c configs/apps/kd_cifar10.yaml).", _report)
