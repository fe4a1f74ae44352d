#!/usr/bin/env python
"""The GPU suite: what only a GPU can measure, in calls of under 10 minutes that resume.

    python scripts/gpu_suite.py --work .gpu/suite --budget-s 500 --copy-to "$OUT"   # on a GPU; repeat until done
    python scripts/gpu_suite.py --work .gpu/suite --docs docs/BENCHMARKS.md          # rows into the docs (anywhere)
    python scripts/gpu_suite.py --work /tmp/suite --toy                              # toy size on a CPU (the test)

Parts, in order (each is skipped once its rows are in WORK/state.json):

- ``krrst_step``: a KRR-ST outer step at the paper's CIFAR-100 setting (N 1000, real batch 1024,
  ConvNet-128-256-512-BN pool of 10, ResNet-18 teacher), ours (fp32 and the bf16 policy) against the
  authors' code (``--ref-krrst``, db-Lee/selfsup_dd in an ignored folder) in the same run, as a ratio
  (scripts/bench_krrst.py).
- ``teacher_throughput``: images/s of a teacher step at the paper setting (Barlow Twins, ResNet-18,
  projector 2048-2048-2048, batch 256, LARS, the bf16 policy).
- ``mkdt_memory``: MKDT's unroll, peak memory and time, ours (plain and ``checkpoint_unroll``) against
  MTT's reparametrised module (``--ref-mtt``) (scripts/bench_mkdt.py).
- ``quality``: a reduced paper-scale run, the leaderboard ``configs/leaderboard/gpu_quality.yaml``
  (KRR-ST with the paper's pool and batch, fewer steps, against ``random`` and ``random_labelled``),
  given whatever time the call has left; its sets, cells and (while the machine stays warm) its
  checkpoints live in WORK, so the next call continues it.
- ``scdd_recover``: SC-DD's recover iteration, time and peak memory at the paper's scales (scripts/bench_scdd.py;
  BENCHMARKS 14).
- ``scdd_quality``: the leaderboard ``configs/leaderboard/scdd_cifar100_gpu.yaml`` (SC-DD at IPC 10 and 1 against
  the relabelled random subset, ResNet-18 students; BENCHMARKS 13), continued over calls like ``quality``.
- ``boost_quality``: the leaderboard ``configs/leaderboard/boost_cifar100.yaml`` (the poster's ablation;
  BENCHMARKS 15), continued over calls like ``quality``.

The data travels with the call (64 MiB in all): ``--prepare --root DATA [--classifier FILE]`` writes, here,
``.gpu/c100.npz`` (a class-balanced 50-per-class subset of CIFAR-100 train, seed 0, and the whole test split, in
the ``npz`` source layout) and ``.gpu/c100_squeeze.safetensors`` (SC-DD's classifier, ``ssdd squeeze``); carry
``.gpu`` (in .git/info/exclude). ``scripts/gpu_env.sh`` sets up a device call.

Every call ends by copying WORK's small files (state, rows, logs, reports; no checkpoints) to
``--copy-to``, so a lent device's results come back after each call; copy them into WORK before the
next call. ``--docs FILE`` writes the rows between ``<!-- gpu-suite -->`` and ``<!-- /gpu-suite -->``
(appended when absent).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PARTS = ("krrst_step", "teacher_throughput", "mkdt_memory", "quality", "scdd_recover", "scdd_quality", "boost_quality")
#: the least time (s, on a GPU) a part needs to be started in a call
NEEDS = {"krrst_step": 150, "teacher_throughput": 90, "mkdt_memory": 150, "quality": 60, "scdd_recover": 90,
         "scdd_quality": 60, "boost_quality": 60}


class Suite:
    def __init__(self, args):
        self.args, self.work = args, Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.state_path = self.work / "state.json"
        self.state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {"rows": [], "done": []}
        self.t0 = time.time()

    def left(self) -> float:
        return self.args.budget_s - (time.time() - self.t0)

    def save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1) + "\n")
        tmp.replace(self.state_path)

    def add(self, part: str, what: str, ours, reference=None, unit: str = "", note: str = "") -> None:
        ratio = (round(reference / ours, 3) if isinstance(ours, (int, float)) and isinstance(reference, (int, float))
                 and ours else None)
        row = {"part": part, "what": what, "ours": ours, "reference": reference, "ratio": ratio, "unit": unit,
               "note": note, "device": self.device_name(), "toy": self.args.toy, "date": time.strftime("%Y-%m-%d")}
        self.state["rows"] = [r for r in self.state["rows"] if not (r["part"] == part and r["what"] == what)] + [row]
        print(f"[{part}] {what}: ours {ours} {unit}; reference {reference}; ratio {ratio}", flush=True)
        self.save()

    def device_name(self) -> str:
        from distill.engine import resolve_device
        from distill.engine.device import machine_name
        return machine_name(resolve_device(self.args.device))

    def run(self, cmd: list[str], limit: float) -> str:
        print("$ " + " ".join(cmd), flush=True)
        res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=max(10, limit))
        log = self.work / "logs"
        log.mkdir(exist_ok=True)
        with open(log / "commands.log", "a") as f:
            f.write("$ " + " ".join(cmd) + "\n" + res.stdout[-20000:] + res.stderr[-5000:] + "\n")
        if res.returncode != 0:
            raise RuntimeError(f"{cmd[1]} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
        return res.stdout


# --------------------------------------------------------------------------- parts


def krrst_step(s: Suite) -> None:
    a = s.args
    size = (["--budget", "20", "--real-batch", "32", "--pool-arch", "convnet-8-16-bn", "--teacher", "convnet-8-16-bn",
             "--steps", "2"] if a.toy else
            ["--budget", "1000", "--real-batch", "1024", "--pool-arch", "convnet-128-256-512-bn", "--teacher", "resnet18",
             "--steps", "20"])
    base = [sys.executable, "scripts/bench_krrst.py", "--device", a.device, "--warmup", "1", *size]
    ref = Path(a.ref_krrst) if a.ref_krrst else None
    has_ref = ref is not None and (ref / "model_pool.py").exists()
    what = "KRR-ST outer step" + (" (toy size)" if a.toy else ", CIFAR-100 setting (N 1000, batch 1024)")
    out = s.run(base + ["--amp", "off"] + (["--reference", str(ref)] if has_ref else []), s.left())
    row = json.loads(out.strip().splitlines()[-1])
    s.add("krrst_step", what + ", fp32 both", row["median_s_per_step"], row.get("reference_median_s_per_step"), "s/step",
          "" if has_ref else "reference code absent (--ref-krrst)")
    s.add("krrst_step", what + ", peak memory fp32", row["peak_memory_gib"], row.get("reference_peak_memory_gib"), "GiB")
    out = s.run(base + ["--amp", "auto"], s.left())
    row2 = json.loads(out.strip().splitlines()[-1])
    s.add("krrst_step", what + f", ours {row2['precision']}", row2["median_s_per_step"],
          row.get("reference_median_s_per_step"), "s/step", "reference in fp32, as written")


def teacher_throughput(s: Suite) -> None:
    import torch

    from distill.data import ImageSet
    from distill.data.config import DataConfig
    from distill.engine import resolve_device, seed_everything
    from distill.ssl.train import TeacherConfig, TeacherStage
    a = s.args
    device = resolve_device(a.device)
    seed_everything(0)
    n = 512 if a.toy else 50_000
    src = ImageSet(images=torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), labels=torch.arange(n) % 100,
                   classes=[str(i) for i in range(100)], name="noise", split="train", mean=(0.5, 0.5, 0.5),
                   std=(0.25, 0.25, 0.25)).to(device)
    if a.toy:
        cfg = TeacherConfig(data=DataConfig(name="noise"), backbone="convnet-d2-w8-bn", projector_hidden=32,
                            projector_dim=32, batch_size=64, epochs=1, device=a.device)
        steps, warm = 3, 1
    else:
        cfg = TeacherConfig(data=DataConfig(name="noise"), backbone="resnet18", ssl="barlow_twins", projector_hidden=2048,
                            projector_dim=2048, batch_size=256, epochs=1, device=a.device)
        steps, warm = 40, 5
    stage = TeacherStage(cfg, src, device)
    stage.setup()
    times = []
    for i in range(warm + steps):
        t = time.perf_counter()
        float(stage.step(i)["loss"])        # a sync: the step is timed whole
        times.append(time.perf_counter() - t)
    med = statistics.median(times[warm:])
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    s.add("teacher_throughput", f"teacher step, {cfg.ssl} {cfg.backbone}, batch {cfg.batch_size}, {cfg.amp} precision policy",
          round(cfg.batch_size / med, 1), None, "images/s",
          f"{med:.4f} s/step (median of {steps})" + (f", peak {peak:.2f} GiB" if peak else ""))


def mkdt_memory(s: Suite) -> None:
    a = s.args
    ref = Path(a.ref_mtt) if a.ref_mtt else None
    has_ref = ref is not None and (ref / "reparam_module.py").exists()
    size = (["--images", "10", "--dim", "32", "--syn-steps", "2", "--batch-syn", "5", "--iters", "1"] if a.toy
            else ["--images", "1000", "--dim", "512", "--syn-steps", "40", "--batch-syn", "500", "--iters", "3"])
    out_json = s.work / "mkdt.jsonl"
    cmd = [sys.executable, "scripts/bench_mkdt.py", "--device", a.device, "--json", str(out_json), *size]
    s.run(cmd + (["--reference", str(ref)] if has_ref else ["--ours-only"]), s.left())
    res = json.loads(out_json.read_text().strip().splitlines()[-1])
    variants = res.get("results", res)
    refrow = variants.get("reference") if isinstance(variants, dict) else None
    what = "MKDT unroll" + (" (toy size)" if a.toy else " (N 1000, 40 steps of batch 500, 512-d targets, ConvNet-3)")
    for v in ("ours", "ours-checkpoint"):
        r = variants.get(v) if isinstance(variants, dict) else None
        if r is None:
            continue
        s.add("mkdt_memory", f"{what}, {v}, peak extra memory", round(r["peak_extra_mib"] / 1024, 3),
              round(refrow["peak_extra_mib"] / 1024, 3) if refrow else None, "GiB",
              "" if has_ref else "reference code absent (--ref-mtt)")
        s.add("mkdt_memory", f"{what}, {v}, time", round(r["s_per_iter"], 4),
              round(refrow["s_per_iter"], 4) if refrow else None, "s/iteration")


def quality(s: Suite) -> None:
    a = s.args
    toy = ["sources=[{data: {name: sample}, teacher: " + str(toy_teacher(s)) + ", budgets: [10]}]",
           "rows=[{method: random}, {method: random_labelled}, {method: krr_st, steps: 4, params: "
           "{pool_arch: convnet-d2-w8-bn, pool_size: 2, pool_steps: 3, real_batch: 32}}]",
           "targets=[{name: sample}]", "seeds=[0, 1]", "arch=convnet-d2-w8-bn",
           "protocols=[{name: krrst, overrides: {pretrain: {epochs: 1}, finetune: {iterations: 2, batch_size: 32}, "
           "linear: {steps: 3}}}]"]
    real = [f"sources.0.data.root={a.data}", f"sources.0.teacher={a.teacher}", f"targets.0.root={a.data}"]
    leaderboard_part(s, "quality", "gpu_quality.yaml", toy if a.toy else real)


def scdd_recover(s: Suite) -> None:
    a = s.args
    out_json = s.work / "scdd.jsonl"
    size = ["--iters", "2", "--warmup", "1", "--scales", "cifar"] if a.toy else ["--iters", "50", "--warmup", "2",
                                                                                 "--scales", "all"]
    s.run([sys.executable, "scripts/bench_scdd.py", "--device", a.device, "--json", str(out_json), *size], s.left())
    for line in out_json.read_text().strip().splitlines():
        r = json.loads(line)
        what = (f"SC-DD recover iteration, {r.get('scale', '?')} ({r.get('arch')} @ {r.get('image_size')} px, batch "
                f"{r.get('batch')})" + (" (toy size)" if a.toy else ""))
        s.add("scdd_recover", what + ", time", r.get("s_per_iter"), None, "s/iteration")
        if r.get("peak_mib") is not None:
            s.add("scdd_recover", what + ", peak memory", round(r["peak_mib"] / 1024, 3), None, "GiB",
                  r.get("peak_kind", ""))


def scdd_quality(s: Suite) -> None:
    a = s.args
    if a.toy:
        over = ["sources=[{data: {name: sample}, teacher: " + str(toy_teacher(s)) + ", budgets: [10], "
                "squeeze: {epochs: 1}}]", "rows=[{method: scdd, steps: 2}, {method: random_labelled}]",
                "targets=[{name: sample}]", "arch=convnet-d2-w8-bn", "distill_seeds=[0, 1]",
                "protocols=[{name: scdd, overrides: {relabel: {epochs: 1}}}]"]
    else:
        over = [f"sources.0.data={{name: npz, root: {a.data}}}", f"targets=[{{name: npz, root: {a.data}}}]",
                f"sources.0.classifier={a.classifier}"]
    leaderboard_part(s, "scdd_quality", "scdd_cifar100_gpu.yaml", over)


def boost_quality(s: Suite) -> None:
    a = s.args
    if a.toy:
        tiny = "{pool_arch: convnet-d2-w8-bn, pool_size: 2, pool_steps: 3, real_batch: 32}"
        over = ["sources=[{data: {name: sample}, teacher: " + str(toy_teacher(s)) + ", budgets: [25]}]",
                "rows=[{method: random}, {method: random_labelled}, {method: krr_st, steps: 2, params: " + tiny + "}, "
                "{label: boost, method: boost, steps: 2, params: " + tiny[:-1] + ", basis_size: 8, views: []}}]",
                "targets=[{name: sample}]", "arch=convnet-d2-w8-bn", "distill_seeds=[0, 1]",
                "protocols=[{name: krrst, overrides: {pretrain: {epochs: 1}, finetune: {iterations: 2, batch_size: 32}, "
                "linear: {steps: 3}}}]"]
    else:
        over = [f"sources.0.data={{name: npz, root: {a.data}}}", f"targets=[{{name: npz, root: {a.data}}}]"]
    leaderboard_part(s, "boost_quality", "boost_cifar100.yaml", over)


def leaderboard_part(s: Suite, part: str, config: str, overrides: list[str]) -> None:
    """A leaderboard run as a part: its sets and cells live in WORK/<part>, it stops at the call's time limit (the
    next call continues it), and each paired gain becomes a row."""
    from distill.config import load_config
    from distill.leaderboard import LeaderboardConfig, run_leaderboard
    over = [f"output={s.work / part}", f"device={s.args.device}", *overrides]
    cfg = load_config(LeaderboardConfig, REPO / "configs" / "leaderboard" / config, over)
    rep = run_leaderboard(cfg, time_limit=max(1.0, s.left() - 20))
    if rep is None:
        raise Unfinished(f"{part} run stopped at the time limit; run the suite again")
    for g in rep["gains"]:
        p = "one seed" if g["p"] is None else f"p = {g['p']:.3f}"
        s.add(part, f"{g['set']} - {g['baseline']}, N {g['budget']}, {g['protocol']} protocol, {g['target']} "
                    f"{g['metric']} ({g['n']} set seeds)", round(g["gain"], 2), None, "points", f"{p}, {g['verdict']}")
    (s.work / f"{part}_table.md").write_text(rep["markdown"])


def prepare(root: str, classifier: str | None, out: str = ".gpu", per_class: int = 50) -> None:
    """The files a device call carries: CIFAR-100 (50 train images per class, seed 0, and the whole test split) as
    one npz, and SC-DD's classifier."""
    import numpy as np

    from distill.data import label_subset, load_dataset
    dest = Path(out)
    dest.mkdir(exist_ok=True)
    tr, te = load_dataset("cifar100", root, "train"), load_dataset("cifar100", root, "test")
    sub = tr.subset(label_subset(tr.labels, per_class=per_class, seed=0))
    np.savez_compressed(dest / "c100.npz", x_train=sub.images.permute(0, 2, 3, 1).numpy(), y_train=sub.labels.numpy(),
                        x_test=te.images.permute(0, 2, 3, 1).numpy(), y_test=te.labels.numpy(),
                        classes=np.array(tr.classes))
    print(f"wrote {dest / 'c100.npz'} ({len(sub)} train, {len(te)} test images)")
    if classifier:
        shutil.copyfile(classifier, dest / "c100_squeeze.safetensors")
        print(f"wrote {dest / 'c100_squeeze.safetensors'}")


def toy_teacher(s: Suite) -> Path:
    path = s.work / "toy_teacher.safetensors"
    if not path.exists():
        import torch

        from distill.data import load_dataset
        from distill.models import create_model
        from distill.ssl.teacher import Teacher
        src = load_dataset("sample")
        torch.manual_seed(0)
        m = create_model("convnet-d2-w16-bn", out_dim=0, image_size=src.image_size, mean=src.mean, std=src.std)
        Teacher(m, {"arch": "convnet-d2-w16-bn", "image_size": 32, "channels": 3, "mean": list(src.mean),
                    "std": list(src.std), "source": "sample"}).save(path)
    return path


class Unfinished(Exception):
    pass


FUNCS = {"krrst_step": krrst_step, "teacher_throughput": teacher_throughput, "mkdt_memory": mkdt_memory,
         "quality": quality, "scdd_recover": scdd_recover, "scdd_quality": scdd_quality, "boost_quality": boost_quality}


# --------------------------------------------------------------------------- docs and copies


def table(rows: list[dict]) -> str:
    if not rows:
        return "No GPU run of the suite yet."
    lines = ["| part | measurement | ours | reference | reference / ours | device | date |", "|---|---|---|---|---|---|---|"]
    def fmt(v) -> str:
        return "" if v is None else f"{v:g}" if isinstance(v, (int, float)) else str(v)
    for r in rows:
        unit = f" {r['unit']}" if r.get("unit") else ""
        note = f" ({r['note']})" if r.get("note") else ""
        lines.append(f"| {r['part']} | {r['what']}{note} | {fmt(r['ours'])}{unit} | {fmt(r['reference'])}"
                     f"{unit if r['reference'] is not None else ''} | {fmt(r['ratio'])} | {r['device']} | {r['date']} |")
    return "\n".join(lines)


def copy_small(work: Path, dest: Path, limit: int = 2 * 2**20) -> None:
    """WORK's small files (no checkpoints) to ``dest``, keeping the folder layout."""
    for p in work.rglob("*"):
        if p.is_file() and ".ckpt." not in p.name and p.stat().st_size <= limit:
            target = dest / p.relative_to(work)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, target)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default=".gpu/suite", help="state, rows, logs and the quality run (an ignored folder)")
    ap.add_argument("--budget-s", type=float, default=500, help="seconds this call may take (stops before a part "
                                                                 "that would not fit)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--toy", action="store_true", help="toy sizes (a CPU check that every part runs)")
    ap.add_argument("--ref-krrst", default=".ref/selfsup_dd", help="the KRR-ST authors' code (ignored folder)")
    ap.add_argument("--ref-mtt", default=".ref/mtt", help="MTT's reparam_module.py and networks.py (ignored folder)")
    ap.add_argument("--data", default=".gpu/c100.npz", help="CIFAR-100 as .npz for the quality runs (--prepare)")
    ap.add_argument("--classifier", default=".gpu/c100_squeeze.safetensors", help="SC-DD's classifier (--prepare)")
    ap.add_argument("--prepare", action="store_true", help="write .gpu/c100.npz (and the classifier) from --root, "
                                                           "here, before a device call")
    ap.add_argument("--root", default="data", help="CIFAR in torchvision's layout, for --prepare")
    ap.add_argument("--teacher", default="cifar10-convnet-simclr", help="teacher for the quality run")
    ap.add_argument("--copy-to", default=None, help="copy WORK's small files here at the end (a device's $OUT)")
    ap.add_argument("--docs", default=None, help="write the rows into this Markdown file and exit")
    ap.add_argument("--redo", action="store_true", help="forget finished parts")
    a = ap.parse_args(argv)
    if a.prepare:
        # --classifier names the file a call reads (.gpu/...); given elsewhere, --prepare copies it there
        prepare(a.root, a.classifier if Path(a.classifier).exists() and Path(a.classifier).parent != Path(".gpu") else None)
        return 0
    s = Suite(a)
    if a.docs:
        from distill.engine.files import write_block
        print(f"updated {write_block(a.docs, 'gpu-suite', table(s.state['rows']))}")
        return 0
    if a.redo:
        s.state = {"rows": [], "done": []}
    parts = [p for p in a.parts.split(",") if p]
    bad = [p for p in parts if p not in FUNCS]
    if bad:
        raise SystemExit(f"unknown part(s) {bad}; use {', '.join(PARTS)}")
    status = 0
    try:
        for p in parts:
            if p in s.state["done"]:
                print(f"[{p}] done before; skipped", flush=True)
                continue
            need = 0 if a.toy else NEEDS[p]
            if s.left() < need:
                print(f"[{p}] needs about {need} s, {s.left():.0f} s left in this call: run the suite again", flush=True)
                status = 3
                break
            t = time.time()
            try:
                FUNCS[p](s)
            except Unfinished as e:
                print(f"[{p}] {e}", flush=True)
                status = 3
                break
            s.state["done"].append(p)
            s.state.setdefault("seconds", {})[p] = round(time.time() - t, 1)
            s.save()
            print(f"[{p}] done in {time.time() - t:.0f} s", flush=True)
        else:
            print("the suite is complete", flush=True)
    finally:
        if a.copy_to:
            copy_small(s.work, Path(a.copy_to))
    return status


if __name__ == "__main__":
    sys.exit(main())
