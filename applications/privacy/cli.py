"""``ssdd audit``: does a set hand over the private images it was made from?

    ssdd audit SET [SET ...] --source cifar10:DATA [--train-per-class 500] [--teacher cifar10-convnet-simclr]

Nearest copies and re-identification of every image of each set against the source it was distilled from,
calibrated on held-out real images of the same dataset (its test split); a Markdown table, a JSON file and, per set,
a PNG of its images beside their nearest source images, worst first. Membership inference needs shadow runs of the
whole pipeline and runs as the leaderboard's ``privacy`` protocol (configs/leaderboard/privacy_cifar10_cpu.yaml).
"""
from __future__ import annotations

import json
from pathlib import Path

import click

COLUMNS = (("reidentified", "re-identified %"), ("singled_out", "singled out %"),
           ("pixel_near_copy_1", "near copy 1 % (pixel)"),
           ("pixel_near_copy_5", "near copy 5 % (pixel)"), ("feature_near_copy_5", "near copy 5 % (feature)"),
           ("pixel_nearest_is_start", "nearest = own start %"), ("pixel_median_d1", "median L2 to source"),
           ("pixel_held_median_d1", "held-out median L2"), ("held_out_singled_out", "single-out FPR on held-out %"))


def _parse_source(text: str) -> tuple[str, str | None]:
    name, _, root = text.partition(":")
    return name, (root or None)


def check_set_source(s, path: Path, src, name: str) -> list[int] | None:
    """Refuse a source the set was not made from, with the fix; return the set's recorded start indices."""
    from distill.errors import UserError
    made = s.meta.get("source")
    if made and made != name:
        raise UserError(f"{path.name} was distilled from '{made}', not '{name}'", fix=f"use --source {made}:ROOT")
    if (s.meta.get("image_size"), s.meta.get("channels")) != (src.image_size, src.channels):
        raise UserError(f"{path.name} holds {s.meta.get('channels')} x {s.meta.get('image_size')} px images but the "
                        f"source has {src.channels} x {src.image_size} px", fix="audit against the set's own source")
    starts = s.meta.get("init_indices") or s.meta.get("source_indices")
    if starts and max(starts) >= len(src):
        raise UserError(f"{path.name} records start index {max(starts)} but the source has {len(src)} images: not the "
                        "source it was made from", fix="give the same subset it was made from (--train-per-class)")
    if starts and s.meta.get("source_indices") and s.images is not None:
        import torch
        x = s.images.float().cpu()
        ref = src.float(torch.as_tensor(starts, device=src.images.device)).cpu()
        if x.shape == ref.shape and (x - ref).abs().max() > 1e-3:
            raise UserError(f"{path.name} is a selection whose images are not the source's images at its recorded "
                            "indices: not the source (or subset) it was made from",
                            fix="give the same dataset, split and --train-per-class it was made from")
    return starts


@click.command("audit")
@click.argument("sets", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--source", required=True, metavar="NAME[:ROOT]", help="the dataset the sets were distilled from")
@click.option("--train-per-class", type=int, default=None,
              help="the seeded class-balanced subset the sets were made from (a leaderboard source's train_per_class)")
@click.option("--split", default="train", show_default=True, help="the source's split")
@click.option("--held-split", default="test", show_default=True, help="the held-out split that calibrates the rules")
@click.option("--held-out", type=int, default=1000, show_default=True, help="held-out images (class-balanced)")
@click.option("--teacher", default=None, help="teacher (zoo name or file) for the feature space; default: pixels only")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=Path("reports/audit"),
              show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--docs", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write the table (with provenance) into this Markdown file's block `audit:NAME`")
@click.option("--name", default=None, help="the docs block's name (default: the output folder's name)")
def audit(sets, source, train_per_class, split, held_split, held_out, teacher, output, device, docs, name):
    """Nearest copies and re-identification of distilled sets against their private source."""
    from distill.data import balanced_indices, load_dataset, load_source
    from distill.data.config import DataConfig
    from distill.distilled import DistilledSet
    from distill.engine import resolve_device
    from distill.errors import UserError
    from distill.ssl.teacher import Teacher

    from .copies import audit_copies, copies_figure
    block = name or output.name
    name, root = _parse_source(source)
    if held_split == split:
        raise UserError(f"--held-split {held_split} is the source's own split: held-out images must never be in the "
                        "source", fix="use the dataset's test split (--held-split test)")
    if held_out < 2:
        raise UserError(f"--held-out must be at least 2, got {held_out}")
    dev = resolve_device(device)
    missing = [str(p) for p in sets if not p.exists()]
    if missing:
        raise UserError(f"no such set file: {', '.join(missing)}")
    loaded = [(p, DistilledSet.load(p)) for p in sets]        # every file checked before any work
    for p, s in loaded:
        if s.meta.get("source") and s.meta["source"] != name:
            raise UserError(f"{p.name} was distilled from '{s.meta['source']}', not '{name}'",
                            fix=f"use --source {s.meta['source']}:ROOT")
    src = load_source(DataConfig(name=name, root=root, split=split), train_per_class, dev)
    held_all = load_dataset(name, root, held_split)
    if held_out > len(held_all):
        raise UserError(f"--held-out {held_out} exceeds the {len(held_all)} images of {name}/{held_split}")
    held = held_all.subset(balanced_indices(held_all.labels.cpu(), held_out, seed=0)).to(dev)
    enc = None
    if teacher:
        t = Teacher.load(teacher, device=dev)
        t.check_images(src.channels, src.image_size, f"{name}/{split}")
        enc = t.encode
    starts = {p: check_set_source(s, p, src, name) for p, s in loaded}
    audits = []                     # every audit computed before anything is written
    for p, s in loaded:
        x = s.materialize().images[: len(s)].to(dev)
        audits.append((p, s, x, audit_copies(x, src.float(), held.float(), encode=enc, starts=starts[p])))
    output.mkdir(parents=True, exist_ok=True)
    results = {}
    for p, s, x, a in audits:
        fig = output / f"copies-{p.stem}.png"
        copies_figure(a, x, src.float(), fig, title=f"{p.name} ({s.method}) vs {name}/{split}")
        results[p.name] = {**a.summary, "method": s.method, "figure": fig.name}
        click.echo(f"{p.name}: re-identified {a.summary['reidentified']:.1f} % ({a.summary['reidentified_by']}), "
                   f"singled out {a.summary['singled_out']:.1f} %, near copies (pixel, 5 %) "
                   f"{a.summary['pixel_near_copy_5']:.1f} %  -> {fig}")
    cols = [(k, t) for k, t in COLUMNS if any(k in r for r in results.values())]
    md = [f"Nearest-copy audit against {name}/{split}" + (f" ({train_per_class} per class)" if train_per_class else "")
          + f", {len(src)} source images; rules calibrated on {held_out} held-out {held_split} images (exact search, "
          + ("pixel L2 and teacher cosine" if enc else "pixel L2 only") + ").", "",
          "| set | method | " + " | ".join(t for _, t in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for f, r in results.items():
        md.append(f"| {f} | {r['method']} | " + " | ".join(f"{r[k]:.2f}" if k in r else "–" for k, _ in cols) + " |")
    if docs is not None:                 # the figures, linked from the block where they lie under the doc's folder
        import os
        figs = [f"![{f}]({os.path.relpath(output / r['figure'], docs.parent)})" for f, r in results.items()]
        md_docs = md + ["", "Each set's images beside their nearest source images, worst first:", ""] + figs
    (output / "audit.md").write_text("\n".join(md) + "\n")
    (output / "audit.json").write_text(json.dumps(results, indent=1) + "\n")
    click.echo("\n" + "\n".join(md))
    click.echo(f"wrote {output / 'audit.md'}, audit.json and {len(results)} figure(s)")
    if docs is not None:
        import shlex
        import sys

        from distill.engine.files import write_block
        from distill.engine.provenance import provenance
        cmd = "ssdd audit " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else "ssdd audit"
        click.echo(f"updated {write_block(docs, f'audit:{block}', chr(10).join(md_docs), provenance(cmd, dev))}")
