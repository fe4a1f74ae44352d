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

from ._version import __version__
from .errors import UserError


class UserFacingError(click.ClickException):
    exit_code = 2

    def __init__(self, err: UserError):
        super().__init__(str(err))


class SSDDGroup(click.Group):
    """A click group that turns UserError into a clean message and loads plugin commands lazily."""

    def invoke(self, ctx):
        import os
        rank = int(os.environ.get("RANK", "0") or 0) if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 else 0
        if rank:          # under torchrun only rank 0 prints results; the others' errors still reach stderr
            sys.stdout = open(os.devnull, "w")
        clean = False
        try:
            out = super().invoke(ctx)
            clean = True
            return out
        except UserError as e:
            raise UserFacingError(UserError(f"rank {rank}: {e.what}", e.fix) if rank else e) from None
        finally:
            from .engine.dist import shutdown
            shutdown(clean)    # under torchrun: every rank leaves the process group together

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
    """Print what a toolkit file holds: a distilled set's header, tensors and storage budget; a
    teacher's, classifier's or checkpoint's header."""
    from .distilled import DistilledSet
    from .engine.record import load_record
    rec = load_record(file)
    click.echo(f"{file}")
    if not isinstance(rec, DistilledSet):
        click.echo(rec.summary() if hasattr(rec, "summary") else f"{rec.NOUN}")
        cfg = rec.meta.get("config") or rec.meta.get("meta", {}).get("config")
        if isinstance(cfg, dict):
            click.echo("config:")
            for line in _flatten(cfg):
                click.echo(f"  {line}")
        return
    ds = rec
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


def _flatten(d):
    from .engine.configdiff import flatten
    return [f"{k} = {v}" for k, v in flatten(d).items()]


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
    from .errors import DataError
    src = get_source(name)
    if src.needs_root and root is None:
        raise UserError(f"dataset '{src.name}' needs --root", fix=f"ssdd data prepare {src.name} --root /path/to/data")
    from .data.sources import root_option
    todo = list(splits) or [s for s in src.splits if "+" not in s]
    for i, split in enumerate(todo):
        t0 = time.time()
        try:
            with root_option("--root ROOT"):
                ds = load_dataset(src.name, root, split, image_size, download=download, verbose=True)
        except DataError as e:
            if splits or i == 0:   # a split the user asked for, or the source's first: an error
                raise
            click.echo(f"{src.name}/{split}: skipped ({e.what})")
            continue
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


@cli.command()
@click.argument("name", required=False)
@click.option("--check", is_flag=True, help="verify every shipped file against its sha256")
def teachers(name: str | None, check: bool):
    """List the shipped teachers (the zoo), or show NAME's card. A zoo name works wherever a config
    takes ``teacher:`` (e.g. teacher=cifar10-convnet-simclr)."""
    from . import zoo
    if name:
        e = zoo.entry(name)
        path = zoo.verify(name, e)
        click.echo(zoo.card(name) or f"{name}: {path}")
        click.echo(f"file: {path} ({e['bytes']} bytes, sha256 {e['sha256']}, verified)")
        return
    entries = zoo.index()
    if not entries:
        click.echo("no teachers are shipped in this installation")
        return
    click.echo(zoo.table(entries))
    for n, e in sorted(entries.items()):
        click.echo(f"\n{n}: {e['command']}")
        if check:
            zoo.verify(n, e)
            click.echo("  sha256 verified")
    click.echo("\nUse one as teacher=NAME (distill, experts, squeeze, leaderboard sources, applications); "
               "`ssdd teachers NAME` shows its card.")


def config_command(name: str, schema: str, run: str, help: str, files: tuple[str, ...]) -> click.Command:
    """A command ``ssdd NAME [-c CONFIG] [key=value ...]`` that loads a config and runs one function.

    ``schema`` and ``run`` are ``module:attribute`` names, imported when the command runs (an application's
    dependencies load only when it is used); the run returns a dict with ``table`` (printed) and ``paths``, whose
    ``files`` entries are named in the closing "wrote" line. Used by the applications' commands.
    """
    @click.command(name, help=help + "  OVERRIDES: key=value ...")
    @click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="YAML config (keys: the command's config dataclass)")
    @click.option("--print-config", is_flag=True, help="print the merged config and exit")
    @click.argument("overrides", nargs=-1)
    def command(config_path, print_config, overrides):
        import importlib

        from .config import load_config, to_yaml

        def attr(spec: str):
            module, _, name = spec.partition(":")
            return getattr(importlib.import_module(module), name)
        cfg = load_config(attr(schema), config_path, overrides)
        if print_config:
            click.echo(to_yaml(cfg))
            return
        res = attr(run)(cfg)
        click.echo("\n" + res["table"])
        paths = [Path(res["paths"][k]) for k in files]
        click.echo("wrote " + ", ".join([str(paths[0])] + [q.name for q in paths[1:]]))
    return command


# --------------------------------------------------------------------------- core pipeline

def _protocols() -> list[str]:
    from .evaluate.config import list_protocols
    return list_protocols()


_CONFIG_OPT = click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                           default=None, help="YAML config (keys: see the command's config dataclass)")
_OVERRIDES = click.argument("overrides", nargs=-1)


_OVERWRITE = click.option("--overwrite", is_flag=True, help="replace an existing output made by another config")
_TIME_LIMIT = click.option("--time-limit", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
                           help="stop after the step that crosses SECONDS, leaving a checkpoint (continue with --resume)")


@cli.command()
@_CONFIG_OPT
@click.option("--resume", is_flag=True, help="continue from the checkpoint beside the output")
@click.option("--print-config", is_flag=True, help="print the merged config and exit")
@_OVERWRITE
@_TIME_LIMIT
@_OVERRIDES
def teacher(config_path, resume, print_config, overwrite, time_limit, overrides):
    """Train a self-supervised teacher (Barlow Twins / SimCLR).  OVERRIDES: key=value ..."""
    from .config import load_config, to_yaml
    from .ssl import TeacherConfig, train_teacher
    cfg = load_config(TeacherConfig, config_path, overrides)
    if print_config:
        click.echo(to_yaml(cfg))
        return
    res = train_teacher(cfg, resume=resume, overwrite=overwrite, time_limit=time_limit)
    if res is None:
        click.echo(f"stopped; continue with --resume (checkpoint beside {cfg.output})")
        return
    knn = f", k-NN top-1 {res.knn_top1:.2f}% on {cfg.data.name}/{cfg.test_split}" if res.knn_top1 is not None else ""
    click.echo(f"wrote {res.path}: {res.teacher.describe()}{knn} ({res.seconds:.0f}s)")


@cli.command()
@_CONFIG_OPT
@click.option("--worker", default=None, metavar="I/N",
              help="train only the experts k with k % N == I (split a run over processes or GPUs)")
@click.option("--print-config", is_flag=True, help="print the merged config and exit")
@_OVERRIDES
def experts(config_path, worker, print_config, overrides):
    """Train MKDT's expert trajectories (one file per expert; finished experts are skipped, an interrupted
    one resumes).  OVERRIDES: key=value ..."""
    from .config import load_config, to_yaml
    from .methods.mkdt.experts import ExpertsConfig, train_experts
    extra = {}
    if worker:
        try:
            i, n = (int(v) for v in worker.split("/"))
        except ValueError:
            raise UserError(f"--worker '{worker}' is not I/N", fix="e.g. --worker 0/4 (the first of four workers)") from None
        extra = {"worker": i, "workers": n}
    cfg = load_config(ExpertsConfig, config_path, overrides, extra=extra or None)
    if print_config:
        click.echo(to_yaml(cfg))
        return
    res = train_experts(cfg)
    if len(res.trained) + len(res.skipped) < len(res.paths):
        click.echo(f"stopped; {len(res.trained)} experts trained, {len(res.skipped)} already there")
        return
    click.echo(f"experts in {Path(res.paths[0]).parent}: {len(res.trained)} trained, {len(res.skipped)} already there "
               f"({res.seconds:.0f}s)")


@cli.command()
@_CONFIG_OPT
@click.option("--resume", is_flag=True, help="continue from the checkpoint beside the output")
@click.option("--print-config", is_flag=True, help="print the merged config and exit")
@_OVERWRITE
@_OVERRIDES
def squeeze(config_path, resume, print_config, overwrite, overrides):
    """SC-DD's squeeze: a linear classifier on the frozen teacher backbone (BatchNorm statistics untouched),
    written as a classifier file with its source-test accuracy.  OVERRIDES: key=value ..."""
    from .config import load_config, to_yaml
    from .methods.scdd.squeeze import SqueezeConfig, run_squeeze
    cfg = load_config(SqueezeConfig, config_path, overrides)
    if print_config:
        click.echo(to_yaml(cfg))
        return
    res = run_squeeze(cfg, resume=resume, overwrite=overwrite)
    if res.record is None:
        click.echo(f"stopped at step {res.steps}; checkpoint {res.path}")
        return
    m = res.record.meta
    test = f", test top-1 {m['test_acc']:.2f}% on {m['source']}/{m['test_split']}" if "test_acc" in m else ""
    click.echo(f"wrote {res.path}: linear head on {res.record.arch} ({m['num_classes']} classes), train top-1 "
               f"{m['train_acc']:.2f}%{test} ({res.seconds:.0f}s)")


@cli.command()
@click.argument("parts", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="the merged set file")
def merge(parts, output):
    """Join the PARTS that an SC-DD run split over workers wrote (params.workers=N, params.worker=I)
    into the one set a single process writes."""
    from .distilled import DistilledSet, human_bytes
    from .methods.scdd import merge_parts
    if not str(output).endswith(".safetensors"):
        raise UserError(f"output '{output}' must end in .safetensors")
    sets = [DistilledSet.load(p) for p in parts]
    merged = merge_parts(sets, [str(p) for p in parts]).validate("merged set")
    merged.save(output)
    click.echo(f"wrote {output}: {len(merged)} images from {len(parts)} parts ({human_bytes(merged.storage_bytes())})")


@cli.command("distill")
@_CONFIG_OPT
@click.option("--resume", is_flag=True, help="continue from the checkpoint beside the output")
@click.option("--print-config", is_flag=True, help="print the merged config and exit")
@_OVERWRITE
@_TIME_LIMIT
@_OVERRIDES
def distill_cmd(config_path, resume, print_config, overwrite, time_limit, overrides):
    """Distil a dataset into a set file (any registered method: krr_st, mkdt, random, ...).  OVERRIDES: key=value ..."""
    from .config import load_config, to_yaml
    from .distilled import human_bytes
    from .methods import DistillConfig, get_method, method_config, run_distillation
    cfg = load_config(DistillConfig, config_path, overrides)
    method_config(get_method(cfg.method), cfg.params)  # fail early on bad params
    if print_config:
        click.echo(to_yaml(cfg))
        return
    res = run_distillation(cfg, resume=resume, overwrite=overwrite, time_limit=time_limit)
    if res.set is None:
        click.echo(f"stopped at step {res.steps}; checkpoint {res.path}")
        return
    last = f", final outer loss {res.history[-1]['loss']:.4g}" if res.history else ""
    views = f" ({len(res.set) * res.set.num_views} with its views)" if res.set.views else ""
    click.echo(f"wrote {res.path}: {cfg.method}, {len(res.set)} examples{views}, {human_bytes(res.set.storage_bytes())} "
               f"({res.set.image_equivalents():.1f} image-equivalents), {res.steps} steps{last} ({res.seconds:.0f}s)")


@cli.command()
@click.argument("sets", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@_CONFIG_OPT
@click.option("--protocol", type=click.Choice(_protocols()), default=None,
              help="evaluation preset (a protocol of distill.evaluate.config.PROTOCOLS)")
@click.option("--targets", default=None, help="comma list of NAME[:ROOT], e.g. cifar100:/data,cifar10:/data")
@click.option("--arch", default=None, help="architecture to pre-train (registry name)")
@click.option("--seeds", default=None, help="comma list of seeds, e.g. 0,1,2")
@click.option("-o", "--output", default=None, help="report folder")
@click.option("--print-config", is_flag=True, help="print the merged config and exit")
def evaluate(sets, config_path, protocol, targets, arch, seeds, output, print_config):
    """Pre-train on each SET, then fine-tune / linear-probe on the targets; write a table.

    Extra arguments of the form key=value override the config (e.g. pretrain.epochs=100)."""
    from .evaluate import evaluate_files, load_eval_config
    files = [s for s in sets if "=" not in str(s)]
    overrides = [str(s) for s in sets if "=" in str(s)]
    extra = {}
    if targets:
        extra["targets"] = [dict(zip(("name", "root"), t.split(":", 1))) for t in targets.split(",") if t]
    if arch:
        extra["arch"] = arch
    if seeds:
        try:
            extra["seeds"] = [int(v) for v in seeds.split(",") if v.strip()]
        except ValueError:
            raise UserError(f"--seeds '{seeds}' is not a comma list of integers") from None
    if output:
        extra["output"] = output
    cfg = load_eval_config(config_path, overrides, protocol, extra)
    if print_config:
        from .config import to_yaml
        click.echo(to_yaml(cfg))
        return
    if not files and not cfg.no_pretrain_baseline:
        raise UserError("nothing to evaluate", fix="give one or more set files")
    rep = evaluate_files(files, cfg)
    click.echo("")
    click.echo(rep.table)
    if rep.paths:       # rank 0 writes the report (under torchrun the other ranks have none)
        click.echo(f"wrote {rep.paths['md']}, {rep.paths['csv'].name}, {rep.paths['json'].name} ({rep.seconds:.0f}s)")


@cli.command()
@_CONFIG_OPT
@click.option("--print-config", is_flag=True, help="print the merged config and exit")
@click.option("--docs", "docs", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write the tables into this Markdown file, between <!-- leaderboard:NAME --> markers")
@click.option("--summary", "summary", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write a one-table summary (means + paired verdicts) into this Markdown file, between "
                   "<!-- leaderboard:NAME:summary --> markers (e.g. README.md)")
@click.option("--check-docs", "check_docs", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="only check that every leaderboard block of this Markdown file was made by the config its "
                   "provenance names (as that file reads today); exit 1 naming the stale blocks")
@click.option("--time-limit", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="stop after the set or cell that crosses SECONDS (exit status 3); the same command continues, "
                   "reusing finished sets and cells")
@click.option("--render-only", is_flag=True,
              help="make nothing: render the tables from the result files in the config's `results:` folder alone "
                   "(e.g. committed docs/results/NAME in a fresh clone)")
@click.option("--plan", "plan_only", is_flag=True,
              help="make nothing: from the result files that exist, print per primary comparison the spread of its "
                   "paired differences and the set seeds needed to detect `target_gain` points with `power`")
@_OVERRIDES
def leaderboard(config_path, print_config, docs, summary, check_docs, time_limit, render_only, plan_only, overrides):
    """Every method and baseline, made (or reused) and evaluated under each protocol with the same seeds;
    tables, paired gains, a plot. Resumable cell by cell.  OVERRIDES: key=value ..."""
    from .config import load_config, to_dict, to_yaml
    from .leaderboard import LeaderboardConfig, run_leaderboard, update_docs, write_leaderboard
    if check_docs:
        from .engine.provenance import blocks, stale_blocks
        from .leaderboard.render import load_for_check
        stale = stale_blocks(check_docs, {"leaderboard": load_for_check})
        found = blocks(check_docs, with_text=True)
        unchecked = [t for t, (p, _) in found.items() if t.startswith("leaderboard:") and not p]
        for line in stale:
            click.echo(f"stale: {line}")
        for t in unchecked:
            click.echo(f"empty: {t} (not generated yet)" if not found[t][1].strip() else
                       f"no provenance: {t} (made before provenance was recorded; regenerate it)")
        if stale:
            raise SystemExit(1)
        click.echo(f"{check_docs}: every leaderboard block with provenance matches its config"
                   + (f" ({len(unchecked)} without provenance)" if unchecked else ""))
        return
    cfg = load_config(LeaderboardConfig, config_path, overrides)
    if print_config:
        click.echo(to_yaml(cfg))
        return
    from .engine.dist import launched
    if launched():
        raise UserError("ssdd leaderboard runs in one process (its cells share files); torchrun was given",
                        fix="run it with plain `ssdd leaderboard`, or run its stages (teacher, distill, experts, "
                            "evaluate) under torchrun")
    from .engine.provenance import git_commit
    commit = git_commit()       # the code this run executes, before a long run ends after later commits
    if render_only or plan_only:
        import time as _time
        from .leaderboard.render import plan_markdown
        from .leaderboard.results import load_results, results_root
        from .leaderboard.stats import plan
        rows, info, notes = load_results(cfg)
        if not rows:
            raise UserError(f"no result files of leaderboard `{cfg.name}` under {results_root(cfg)}",
                            fix="run `ssdd leaderboard` with this config first, or point `results=` at the folder "
                                "that holds its cells/")
        for n in notes:
            click.echo(f"note: {n}", err=True)
        if plan_only:
            if not cfg.primary:
                raise UserError(f"leaderboard `{cfg.name}` declares no primary comparisons",
                                fix="add `primary: [{set: krr_st, vs: random, protocol: krrst}, ...]` to its config")
            click.echo(plan_markdown(cfg, plan(cfg, rows), info))
            return
        t0 = _time.time()
        rep = write_leaderboard(cfg, rows, info, 0.0)
        click.echo(f"rendered from {len(rows)} result rows under {results_root(cfg)} ({_time.time() - t0:.1f}s)")
    else:
        rep = run_leaderboard(cfg, time_limit=time_limit)
    if rep is None:     # exit status 3: unfinished, resumable (scripts chain runs on it)
        click.echo("stopped at the time limit; run the same command again to continue")
        sys.exit(3)
    click.echo("\n" + rep["markdown"])
    click.echo(f"wrote {rep['paths']['md']}, {rep['paths']['json'].name}, {rep['paths']['plot'].name} "
               f"({rep['seconds']:.0f}s)")
    from .engine.provenance import provenance
    import shlex
    command = "ssdd leaderboard" + (f" -c {config_path}" if config_path else "") + "".join(
        " " + shlex.quote(o) for o in overrides)
    from .engine import resolve_device
    prov = provenance(command, resolve_device(cfg.device), cfg.amp, to_dict(cfg),
                      str(config_path) if config_path else None, list(overrides), kind="leaderboard", commit=commit)
    if docs:
        from .leaderboard.render import with_pictures
        md = with_pictures(rep["markdown"], cfg.output, docs, cfg.name)
        click.echo(f"updated {update_docs(docs, cfg.name, md, prov)}")
    if summary:
        click.echo(f"updated {update_docs(summary, cfg.name + ':summary', rep['summary'], prov)}")


@cli.command()
@_CONFIG_OPT
@click.option("-o", "--output", default=None, help="report folder (default reports/demo)")
@_OVERRIDES
def demo(config_path, output, overrides):
    """The whole pipeline on the embedded sample, on a CPU in minutes: teacher -> KRR-ST and random
    subset -> evaluation against no pre-training -> table, PNG grids, report folder."""
    from .config import load_config
    from .demo import DemoConfig, run_demo
    cfg = load_config(DemoConfig, config_path, overrides, extra={"output": output} if output else None)
    run_demo(cfg)


def main(argv=None):
    """Console-script entry point."""
    try:
        return cli.main(args=argv, prog_name="ssdd")
    except KeyboardInterrupt:  # pragma: no cover
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
