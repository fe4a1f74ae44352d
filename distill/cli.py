"""The ``ssdd`` command line: thin wrappers over the Python API.

Each command loads its config (YAML + ``key=value`` overrides) and calls one public function.
User errors print one message and exit with status 2, without a traceback. Applications add
their commands through the ``ssdd.commands`` entry-point group, so ``distill`` never imports them.
"""
from __future__ import annotations

import sys
from importlib.metadata import entry_points
from pathlib import Path

import click

from . import __version__
from .errors import UserError


class UserFacingError(click.ClickException):
    exit_code = 2

    def __init__(self, err: UserError):
        super().__init__(str(err))


class SSDDGroup(click.Group):
    """A click group that turns UserError into a clean message and loads plugin commands lazily."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            raise UserFacingError(e) from None

    def _plugins(self) -> dict:
        if not hasattr(self, "_plugin_eps"):
            try:
                eps = entry_points(group="ssdd.commands")
            except TypeError:  # pragma: no cover - Python < 3.10
                eps = entry_points().get("ssdd.commands", [])
            self._plugin_eps = {ep.name: ep for ep in eps}
        return self._plugin_eps

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is None and name in self._plugins():
            try:
                cmd = self._plugins()[name].load()
            except ImportError as e:
                return _missing_extra(name, e)
        return cmd


def _missing_extra(name: str, err: ImportError) -> click.Command:
    @click.command(name=name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                   help=f"(unavailable: {err})")
    def unavailable(**_):
        raise UserError(f"'ssdd {name}' needs a package that is not installed ({err})",
                        fix="pip install 'ssdd[all]'")
    return unavailable


@click.group(cls=SSDDGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ssdd")
def cli():
    """Self-supervised dataset distillation: teachers, distilled sets, evaluation, applications."""


# --------------------------------------------------------------------------- files


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def info(file: Path):
    """Print a distilled set's header, tensors and storage budget."""
    from .distilled import DistilledSet
    ds = DistilledSet.load(file)
    click.echo(f"{file}")
    click.echo(ds.summary())
    extra = {k: v for k, v in ds.meta.items() if k not in ("method", "source", "teacher", "seed", "created",
                                                             "code_version", "mean", "std", "image_size",
                                                             "channels", "num_classes", "config", "classes")}
    for k, v in extra.items():
        click.echo(f"{k:<16} {v}")
    if "config" in ds.meta:
        click.echo("config:")
        for line in _flatten(ds.meta["config"]):
            click.echo(f"  {line}")


def _flatten(d, prefix=""):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _flatten(v, f"{prefix}{k}.")
    else:
        yield f"{prefix[:-1]} = {d}"


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="PNG file to write")
@click.option("--max", "max_images", type=int, default=100, show_default=True, help="at most this many images")
@click.option("--nrow", type=int, default=None, help="images per row (default: square grid, or one row per class)")
@click.option("--tile", type=int, default=64, show_default=True, help="minimum tile size in px (nearest upscaling)")
@click.option("--caption/--no-caption", default=True, show_default=True, help="metadata under the grid")
def show(file: Path, output: Path, max_images: int, nrow: int | None, tile: int, caption: bool):
    """Render a distilled set's images as a PNG grid (clamped to [0, 1])."""
    from .distilled import DistilledSet, human_bytes
    from .viz import save_grid
    if output.suffix.lower() != ".png":
        raise UserError(f"{output}: 'ssdd show' writes PNG files", fix=f"use {output.with_suffix('.png')}")
    if max_images < 1:
        raise UserError("--max must be at least 1")
    ds = DistilledSet.load(file)
    m = ds.materialize()
    order = list(range(len(m)))
    if m.labels is not None:  # class-conditional sets: group by class
        order = sorted(order, key=lambda i: (int(m.labels[i]), i))
    order = order[:max_images]
    images = m.images[order]
    if nrow is None and m.labels is not None:  # one row per class when that gives a readable grid
        per_class = int(m.labels[order].bincount().max())
        nrow = per_class if 2 <= per_class <= 30 else None
    lines = []
    if caption:
        lines.append(f"{file.name}: {ds.method}, {len(ds)} images {ds.channels}x{ds.image_size}x{ds.image_size}, "
                     f"source {ds.meta.get('source', '?')}")
        lines.append(f"storage {human_bytes(ds.storage_bytes())} = {ds.image_equivalents():.1f} image-equivalents; "
                     f"showing {len(order)}; pixels clamped to [0, 1]")
    save_grid(images, output, nrow=nrow, caption=lines, min_tile=tile)
    click.echo(f"wrote {output} ({len(order)} of {len(ds)} images)")


# --------------------------------------------------------------------------- data


@cli.group()
def data():
    """Datasets: list the sources, decode and cache a dataset."""


@data.command("list")
def data_list():
    """The dataset sources load_dataset knows."""
    from .data import list_datasets
    for name, help_ in list_datasets().items():
        click.echo(f"{name:<16} {help_}")


@data.command("prepare")
@click.argument("name")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="dataset folder (or .npz file)")
@click.option("--split", "splits", multiple=True, help="split(s) to prepare (default: all of the source's)")
@click.option("--image-size", type=int, default=None, help="resize to this many px (default: native)")
@click.option("--download", is_flag=True, help="let torchvision download the dataset if it is missing")
def data_prepare(name, root, splits, image_size, download):
    """Decode NAME once into the tensor cache and print what was loaded."""
    import time

    from .data import load_dataset
    from .data.sources import get_source
    src = get_source(name)
    if src.needs_root and root is None:
        raise UserError(f"dataset '{src.name}' needs --root", fix=f"ssdd data prepare {src.name} --root /path/to/data")
    for split in splits or [s for s in src.splits if "+" not in s]:
        t0 = time.time()
        ds = load_dataset(src.name, root, split, image_size, download=download, verbose=True)
        counts = ds.labels[ds.labels >= 0].bincount() if ds.labelled else None
        per_class = f"{int(counts.min())}-{int(counts.max())} per class" if counts is not None and len(counts) else "unlabelled"
        click.echo(f"{src.name}/{split}: {len(ds)} images, {ds.channels}x{ds.image_size}x{ds.image_size}, "
                   f"{ds.num_classes} classes ({per_class}), mean {tuple(round(v, 4) for v in ds.mean)}, "
                   f"std {tuple(round(v, 4) for v in ds.std)}, {time.time() - t0:.1f}s")


# --------------------------------------------------------------------------- models


@cli.command()
@click.option("--image-size", type=int, default=32, show_default=True)
def models(image_size: int):
    """List registered architectures with their feature dimension and size."""
    from .models import count_parameters, create_model, describe_models, list_models
    helps = describe_models()
    for name in list_models():
        m = create_model(name, image_size=image_size)
        click.echo(f"{name:<28} features {m.feature_dim:>6}  params {count_parameters(m) / 1e6:6.2f} M  {helps[name]}")
    for name, h in helps.items():
        if name.endswith("..."):
            click.echo(f"{name:<28} {h}")


def main(argv=None):
    """Console-script entry point."""
    try:
        return cli.main(args=argv, prog_name="ssdd")
    except KeyboardInterrupt:  # pragma: no cover
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
