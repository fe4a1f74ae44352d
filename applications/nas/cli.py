"""``ssdd nas``: search with a distilled-set proxy, or measure how good the proxy is."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("nas")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML config (see applications/nas/config.py), e.g. configs/apps/nas_sample.yaml")
@click.option("--evaluate-proxy", is_flag=True, help="measure proxy quality instead of searching")
@click.argument("overrides", nargs=-1)
def nas(config_path, evaluate_proxy, overrides):
    """Architecture search (NNI) with distilled sets as the training proxy.  OVERRIDES: key=value ..."""
    from distill.config import load_config

    from .config import NASConfig
    from .search import evaluate_proxy as run_eval
    from .search import run_search
    cfg = load_config(NASConfig, config_path, overrides)
    if evaluate_proxy or cfg.evaluate_proxy:
        res = run_eval(cfg)
        click.echo(res["markdown"].split("![scatter]")[0])
        click.echo(f"wrote {res['paths']['md']}, {res['paths']['plot']}, {res['paths']['json']}")
        return
    for label, r in run_search(cfg).items():
        b = r.best
        click.echo(f"{label}: best of {len(r.trials)} trials ({cfg.strategy}) {b['arch']} score {b['score']:.2f}; "
                   f"wrote {r.paths['json']}, {r.paths['csv'].name}")
