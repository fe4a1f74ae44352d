"""Build and report the teacher zoo (``distill/zoo``): nothing in the index or the cards is typed by hand.

    # add a teacher made by `ssdd teacher` (measures the linear probe on the full test split, the k-NN of
    # the embedded sample in fp32, writes the card and the index entry)
    python scripts/teacher_zoo.py add cifar10-convnet-simclr runs/cifar10/teacher_zoo.safetensors \
        --root data --command "ssdd teacher -c configs/teacher/cifar10_cpu.yaml data.root=DATA"
    # the recipe search (pilots of scripts/teacher_search.sh) as a table; the k-NN-vs-epochs plot
    python scripts/teacher_zoo.py search ~/.cache/ssdd/teacher_search
    python scripts/teacher_zoo.py plot docs/img/teacher_knn.png
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from distill import zoo  # noqa: E402
from distill.data import load_dataset  # noqa: E402
from distill.evaluate.config import LinearConfig  # noqa: E402
from distill.evaluate.knn import SAMPLE_SLICE, sample_knn  # noqa: E402
from distill.evaluate.train import accuracy, fit_linear  # noqa: E402
from distill.ssl import Teacher  # noqa: E402

PROBE = LinearConfig(solver="lbfgs", steps=1000, tolerance=1e-4, l2=1e-4)


@torch.no_grad()
def features(teacher: Teacher, ds, amp: str = "off") -> torch.Tensor:
    from distill.engine.device import autocast
    out = []
    for i in range(0, len(ds), 512):
        x = ds.float(torch.arange(i, min(i + 512, len(ds))))
        with autocast(x.device, amp):
            out.append(teacher.model.embed(x).float())
    return torch.cat(out)


def linear_top1(teacher: Teacher, name: str, root: str) -> tuple[float, dict]:
    """Linear probe on frozen features of the whole training split, top-1 on the whole test split
    (L-BFGS on z-scored features; the penalty is fixed, not tuned)."""
    train = load_dataset(name, root, "train", teacher.image_size)
    test = load_dataset(name, root, "test", teacher.image_size)
    ftr, fte = features(teacher, train, "auto"), features(teacher, test, "auto")
    mu, sd = ftr.mean(0, keepdim=True), ftr.std(0, keepdim=True).clamp_min(1e-6)
    rec: dict = {}
    with torch.enable_grad():
        lin = fit_linear((ftr - mu) / sd, train.labels, train.num_classes, PROBE, info=rec)
    acc = accuracy(lin, (fte - mu) / sd, test.labels)
    return round(acc, 2), {"solver": PROBE.solver, "max_iter": PROBE.steps, "tolerance": PROBE.tolerance,
                           "l2": PROBE.l2, "train": len(train), "test": len(test), **rec}


def card_text(name: str, e: dict, meta: dict) -> str:
    cfg = meta.get("config", {})
    curve = meta.get("knn_curve", [])
    lines = [f"# {name}", "",
             f"A self-supervised **{e['ssl']}** teacher, backbone `{e['backbone']}` ({meta.get('dim')}-d representations), "
             f"trained on the whole **{e['source']}** training split ({cfg.get('data', {}).get('split', 'train')}"
             + (f", less {meta['holdout']} held-out images" if meta.get("holdout") else "") + ") "
             f"for {e['epochs']} epochs on a CPU by `ssdd teacher`. It ships with ssdd so that the CPU presets run "
             "without training a teacher first.", "",
             "| figure | value |", "|---|---|",
             f"| k-NN top-1, full {e['source']} test split (k = {meta.get('knn_k', 200)}, cosine, T = 0.1) | {e['knn_top1']} % |",
             f"| linear probe top-1, full test split (L-BFGS to gradient {e['probe'].get('tolerance')}: "
             f"{e['probe'].get('probe_iters')} iterations, converged {e['probe'].get('probe_converged')}; z-scored "
             f"features, l2 {e['probe']['l2']}, {e['probe']['train']} training images) | {e['linear_top1']} % |",
             f"| k-NN top-1 on the embedded sample's fixed slice (fp32; checked by the tests) | {e['sample_knn']['value']} % |",
             f"| training time | {meta.get('train_seconds', '?')} s on {e.get('machine', '?')} |",
             f"| file | `{e['file']}`, {e['bytes']} bytes, sha256 `{e['sha256']}` |", "",
             "## Recipe", "",
             f"{e['ssl']}, batch {cfg.get('batch_size')}, {cfg.get('optimizer')} lr {cfg.get('lr')} (x batch/256), "
             f"weight decay {cfg.get('weight_decay')}, warm-up {cfg.get('warmup_epochs')} epochs then cosine, "
             f"projector {cfg.get('projector_layers')} layers {cfg.get('projector_hidden')}-{cfg.get('projector_dim')}, "
             + (f"temperature {cfg.get('temperature')}, " if e["ssl"] == "simclr" else f"lambda {cfg.get('lambd')}, ")
             + f"views {json.dumps(cfg.get('views', {}))}, amp `{cfg.get('amp')}`, seed {cfg.get('seed')}.", "",
             "Made by:", "", "```", e["command"], "```", ""]
    if e.get("selection"):
        lines += ["## How the recipe was chosen", "", e["selection"], ""]
    if curve:
        lines += ["## k-NN during training", "", "| epoch | " + " | ".join(k for k in ("val", "test") if k in curve[-1]) + " |",
                  "|---|" + "---|" * len([k for k in ("val", "test") if k in curve[-1]])]
        for r in curve:
            lines.append(f"| {r['epoch']} | " + " | ".join(f"{r[k]:.2f}" for k in ("val", "test") if k in curve[-1]) + " |")
        lines.append("")
    lines += ["## Use and limits", "",
              f"`teacher: {name}` in any config. The teacher knows what {e['epochs']} CPU epochs of {e['ssl']} on a "
              "small ConvNet can learn; the paper teachers (ResNet-18, Barlow Twins, 800 epochs) know much more. "
              "Distilled sets made with it are for CPU-scale studies, not for comparison with published numbers.", ""]
    return "\n".join(lines)


def add(args) -> None:
    from distill.engine.provenance import machine
    src = Path(args.teacher)
    teacher = Teacher.load(src)
    meta = teacher.meta
    folder = zoo.REPO_ZOO_DIR if args.location == "repo" else zoo.ZOO_DIR
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{args.name}.safetensors"
    shutil.copyfile(src, dest)
    lin, probe = linear_top1(teacher, meta["source"], args.root)
    e = {"file": dest.name, "sha256": zoo.sha256(dest), "bytes": dest.stat().st_size, "source": meta["source"],
         "backbone": meta["arch"], "ssl": meta["ssl"], "epochs": meta["epochs"], "dim": meta["dim"],
         "knn_top1": meta.get("knn_top1"), "linear_top1": lin, "probe": probe, "teacher_id": meta["id"],
         "sample_knn": {**SAMPLE_SLICE, "value": sample_knn(teacher)}, "command": args.command,
         "machine": args.machine or machine("cpu"), "card": f"{args.name}.md"}
    if args.location == "repo":
        e["location"] = "repo"
    if args.selection:
        e["selection"] = Path(args.selection).read_text().strip() if Path(args.selection).exists() else args.selection
    (zoo.ZOO_DIR / e["card"]).write_text(card_text(args.name, e, meta))
    entries = zoo.index()
    entries[args.name] = e
    zoo.INDEX.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
    print(zoo.table({args.name: e}))


def search(args) -> None:
    rows = []
    for js in sorted(Path(args.folder).glob("*.json")):
        meta = json.loads(js.read_text())
        if "knn_curve" not in meta:
            continue
        curve = meta["knn_curve"]
        rows.append((js.stem, meta.get("epochs"), curve, meta.get("train_seconds")))
    epochs = sorted({r["epoch"] for _, _, c, _ in rows for r in c})
    print("| pilot | " + " | ".join(f"val k-NN @ {e}" for e in epochs) + " | time |")
    print("|---|" + "---|" * (len(epochs) + 1))
    for name, _, curve, secs in sorted(rows, key=lambda r: -r[2][-1].get("val", 0)):
        by = {r["epoch"]: r.get("val") for r in curve}
        print(f"| {name} | " + " | ".join(f"{by[e]:.2f}" if by.get(e) is not None else "–" for e in epochs)
              + f" | {secs:.0f} s |")


def plot(args) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    entries = zoo.index()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name, e in sorted(entries.items()):
        meta = Teacher.load(zoo.verify(name, e)).meta
        curve = meta.get("knn_curve", [])
        for key, style in (("test", "-o"), ("val", "--")):
            pts = [(r["epoch"], r[key]) for r in curve if key in r]
            if pts:
                ax.plot(*zip(*pts), style, ms=3, label=f"{name} ({'test split' if key == 'test' else 'held-out train'})")
    for extra in args.extra or []:
        meta = json.loads(Path(extra).read_text())
        pts = [(r["epoch"], r["val"]) for r in meta.get("knn_curve", []) if "val" in r]
        if pts:
            ax.plot(*zip(*pts), ":", ms=3, label=f"pilot {Path(extra).stem} (held-out train)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("k-NN top-1 (%)")
    ax.set_title("Zoo teachers: k-NN top-1 during training (CPU)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")


def docs(args) -> None:
    """The zoo table, each teacher's command and the pilot table as generated blocks of a Markdown file."""
    from distill.engine.files import write_block
    from distill.engine.provenance import provenance
    entries = zoo.index()
    lines = [zoo.table(entries), ""]
    for name, e in sorted(entries.items()):
        lines.append(f"- `{name}`: `{e['command']}`; linear probe: {e['probe']['solver']} on z-scored features of all "
                     f"{e['probe']['train']} training images, l2 {e['probe']['l2']}, tested on all {e['probe']['test']} "
                     f"test images; trained on {e['machine']}; card: `ssdd teachers {name}`.")
    prov = provenance("python scripts/teacher_zoo.py docs " + args.doc, "cpu", "auto")
    print(f"updated {write_block(args.doc, 'teacher-zoo', chr(10).join(lines), prov)}")
    if args.search:
        import contextlib
        import io
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            search(argparse.Namespace(folder=args.search))
        prov = provenance(f"bash scripts/teacher_search.sh DATA 4; python scripts/teacher_zoo.py search {args.search}",
                          "cpu", "auto")
        print(f"updated {write_block(args.doc, 'teacher-search', buf.getvalue(), prov)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("add")
    a.add_argument("name")
    a.add_argument("teacher")
    a.add_argument("--root", required=True, help="the dataset root (for the linear probe on the full test split)")
    a.add_argument("--command", required=True, help="the exact command that made the teacher")
    a.add_argument("--location", choices=("package", "repo"), default="package")
    a.add_argument("--selection", help="how the recipe was chosen (text or a file)")
    a.add_argument("--machine", help="where it was trained (default: this CPU)")
    s = sub.add_parser("search")
    s.add_argument("folder")
    pl = sub.add_parser("plot")
    pl.add_argument("output")
    pl.add_argument("--extra", nargs="*", help="pilot .json files to add (held-out curves)")
    d = sub.add_parser("docs")
    d.add_argument("doc")
    d.add_argument("--search", help="the pilots' folder: also write the search table")
    args = p.parse_args()
    {"add": add, "search": search, "plot": plot, "docs": docs}[args.cmd](args)


if __name__ == "__main__":
    main()
