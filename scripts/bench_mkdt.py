#!/usr/bin/env python
"""One MKDT distillation iteration (unroll + backward), ours versus the reference, side by side.

    git clone https://github.com/GeorgeCazenavette/mtt-distillation .ref/mtt      # once (kept out of git)
    python scripts/bench_mkdt.py --reference .ref/mtt                             # 100 images, D 2048, 10 steps
    python scripts/bench_mkdt.py --reference .ref/mtt --images 8 --dim 16 --syn-steps 2 --batch-syn 4 --iters 1

Variants, each in its own subprocess (so each one's peak memory is its own):

* ``ours``: ``distill.methods.mkdt.matching_backward`` (functional unroll on one flat vector);
* ``ours-checkpoint``: the same with ``checkpoint=True`` (per-step recomputation in the backward);
* ``reference``: MKDT's ``distill.py`` inner loop (a fork of MTT): MTT's ``ReparamModule`` around MTT's
  ``ConvNet`` (width 128, depth 3, ReLU, instancenorm, avgpooling: ``utils.get_default_convnet_setting``),
  ``student_params.append(student_params[-1] - syn_lr * grad)`` with ``create_graph=True`` for
  ``syn_steps`` steps, then ``(mse_sum(theta_N, target) / P) / (mse_sum(start, target) / P)`` and
  ``.backward()``. Only ``reparam_module.py`` and ``networks.py`` are imported from ``--reference``
  (an MTT checkout, or a folder holding those two files); nothing of it is part of this project.

Identical math and data: every child draws the same start vector (our ``convnet`` initialised under a
fixed seed; MTT's ConvNet has the same parameter shapes in the same order, checked in the child),
target = start + 0.01 * noise, random images N x 3 x 32 x 32, targets N x D, lr 0.1 (all three
differentiable) and the same ``syn_steps`` minibatch index lists (``minibatches`` with a fixed seed;
the reference's own loop pops its chunks from the end of the permutation, which only reorders the
batches). The model is built once per child: the reference's per-iteration ``get_network`` +
``ReparamModule`` construction (small) is not timed. Timed: one warm-up iteration, then ``--iters``
iterations; reported: the median seconds per iteration and the peak memory above the after-setup
level (CPU: VmHWM, reset after setup through /proc/self/clear_refs where allowed, minus VmRSS after
setup, else ru_maxrss minus VmRSS; CUDA: allocator peak minus the allocated bytes after setup).
Each child also reports the matching loss and image gradients; the parent checks that ours and the
reference agree (loss to 1e-4 relative) and prints a warning line if not.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REF_FILES = ("reparam_module.py", "networks.py")
VARIANTS = ("ours", "ours-checkpoint", "reference")
SEED = 0


# --------------------------------------------------------------------------- memory probes (child)


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _maxrss_kib() -> int:
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r // 1024 if sys.platform == "darwin" else r


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- the child


def child(args) -> dict:
    import gc

    import torch

    from distill.methods.mkdt import FlatParams, matching_backward, minibatches
    from distill.models import create_model

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    torch.manual_seed(SEED)
    ours = create_model(args.arch, out_dim=args.dim, image_size=32, in_chans=3).to(device).train()
    fp = FlatParams(ours)
    start = torch.cat([p.detach().reshape(-1) for p in ours.parameters()])
    g = torch.Generator().manual_seed(SEED + 1)
    x = torch.randn(args.images, 3, 32, 32, generator=g).to(device).requires_grad_(True)
    y = torch.randn(args.images, args.dim, generator=g).to(device).requires_grad_(True)
    target = start + 0.01 * torch.randn(start.numel(), generator=g).to(device)
    lr = torch.tensor(0.1, device=device).requires_grad_(True)
    batches = [b.to(device) for b in minibatches(args.images, args.batch_syn, args.syn_steps,
                                                 torch.Generator().manual_seed(SEED + 2))]
    info: dict = {"params": start.numel()}

    if args.child == "reference":
        sys.path.insert(0, str(Path(args.reference).resolve()))
        from networks import ConvNet  # MTT's, from --reference
        from reparam_module import ReparamModule

        # MTT utils.get_network('ConvNet', channel, num_classes, im_size) with get_default_convnet_setting()
        net = ConvNet(channel=3, num_classes=args.dim, net_width=128, net_depth=3, net_act="relu",
                      net_norm="instancenorm", net_pooling="avgpooling", im_size=(32, 32))
        ref_shapes = [list(p.shape) for p in net.parameters()]
        our_shapes = [list(s) for s in fp.shapes]
        if ref_shapes != our_shapes:
            print(f"parameter shapes differ:\n  reference {ref_shapes}\n  ours      {our_shapes}", file=sys.stderr)
            raise SystemExit(3)
        student_net = ReparamModule(net).to(device)
        student_net.train()
        num_params = sum(int(p.numel()) for p in student_net.parameters())
        if num_params != start.numel():
            print(f"reference has {num_params} parameters, ours {start.numel()}", file=sys.stderr)
            raise SystemExit(3)
        criterion = torch.nn.MSELoss().to(device)
        info["shapes_match"] = True

        def iteration():  # MKDT distill.py, one iteration's unroll and backward (no augmentation)
            student_params = [start.detach().clone().requires_grad_(True)]
            for these_indices in batches:
                out = student_net(x[these_indices], flat_param=student_params[-1])
                mse_loss = criterion(out, y[these_indices])
                grad = torch.autograd.grad(mse_loss, student_params[-1], create_graph=True)[0]
                student_params.append(student_params[-1] - lr * grad)
            param_loss = torch.tensor(0.0).to(device)
            param_dist = torch.tensor(0.0).to(device)
            param_loss += torch.nn.functional.mse_loss(student_params[-1], target, reduction="sum")
            param_dist += torch.nn.functional.mse_loss(start, target, reduction="sum")
            param_loss /= num_params
            param_dist /= num_params
            param_loss /= param_dist
            param_loss.backward()
            return param_loss.detach()
    else:
        checkpoint = args.child == "ours-checkpoint"

        def iteration():
            return matching_backward(fp, start, target, x, y, lr, batches, checkpoint=checkpoint)

    def run_once():
        x.grad = y.grad = lr.grad = None
        sync()
        t = time.perf_counter()
        loss = iteration()
        sync()
        return time.perf_counter() - t, loss

    gc.collect()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        base_bytes = torch.cuda.memory_allocated(device)
        base_kib = None
    else:
        base_kib = _status_kib("VmRSS") or _maxrss_kib()
        hwm_reset = _reset_hwm()

    _, loss = run_once()  # warm-up (its memory counts: the peak is the unroll's, whichever iteration)
    times = [run_once()[0] for _ in range(args.iters)]

    if cuda:
        peak_mib = (torch.cuda.max_memory_allocated(device) - base_bytes) / 2**20
        mem_how = "CUDA allocator peak - allocated after setup"
    else:
        hwm = _status_kib("VmHWM") if hwm_reset else None
        peak_kib = hwm if hwm is not None else _maxrss_kib()
        peak_mib = (peak_kib - base_kib) / 1024
        mem_how = "VmHWM (reset after setup) - VmRSS after setup" if hwm is not None \
            else "ru_maxrss - VmRSS after setup"
    gx = x.grad.detach().flatten().double()
    info.update({
        "variant": args.child, "s_per_iter": statistics.median(times), "times": times,
        "peak_extra_mib": peak_mib, "memory": mem_how, "loss": float(loss),
        "grad_x_first": [float(v) for v in gx[:5]], "grad_x_norm": float(gx.norm()),
        "grad_y_norm": float(y.grad.double().norm()), "grad_lr": float(lr.grad),
    })
    return info


# --------------------------------------------------------------------------- the parent


def machine(device: str) -> str:
    if device.startswith("cuda"):
        import torch
        return torch.cuda.get_device_name(torch.device(device))
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


def parent(args, argv: list[str]) -> int:
    variants = list(VARIANTS)
    notes = []
    if args.arch != "convnet":
        variants.remove("reference")
        notes.append("reference skipped: it is MTT's ConvNet (128 x 3, instancenorm), which only `--arch convnet` matches")
    elif args.ours_only:
        variants.remove("reference")
        notes.append("reference skipped (--ours-only)")
    else:
        ref = Path(args.reference) if args.reference else None
        missing = [f for f in REF_FILES if ref is None or not (ref / f).is_file()]
        if missing:
            where = args.reference or "(not given)"
            print(f"bench_mkdt: reference not found at {where} (needs {', '.join(REF_FILES)}): run "
                  f"`git clone https://github.com/GeorgeCazenavette/mtt-distillation .ref/mtt` and pass --reference .ref/mtt",
                  file=sys.stderr)
            return 2
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    results: dict[str, dict] = {}
    for v in variants:
        cmd = [sys.executable, os.path.abspath(__file__), *argv, "--child", v]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((ln for ln in p.stdout.splitlines() if ln.startswith("@@RESULT ")), None)
        if p.returncode != 0 or line is None:
            tail = " | ".join((p.stderr or p.stdout).strip().splitlines()[-6:])
            print(f"WARNING: variant {v} failed (exit {p.returncode}): {tail}")
            continue
        results[v] = json.loads(line[len("@@RESULT "):])

    import torch
    ref = results.get("reference")
    ours = results.get("ours")
    agree = None
    if ref and ours:
        agree = True
        for v in ("ours", "ours-checkpoint"):
            if v not in results:
                continue
            r = results[v]
            d = rel(r["loss"], ref["loss"])
            if d > 1e-4:
                agree = False
                print(f"WARNING: matching loss of {v} ({r['loss']:.8g}) differs from the reference's ({ref['loss']:.8g}) "
                      f"by {d:.2e} relative (> 1e-4)")
            for k in ("grad_x_norm", "grad_y_norm", "grad_lr"):
                if rel(r[k], ref[k]) > 1e-3:
                    print(f"WARNING: {k} of {v} ({r[k]:.8g}) differs from the reference's ({ref[k]:.8g}) by "
                          f"{rel(r[k], ref[k]):.2e} relative (> 1e-3)")
    cmdline = " ".join(shlex.quote(a) for a in ["python", os.path.relpath(__file__), *argv])
    print()
    print(f"MKDT iteration: {args.images} images, D {args.dim}, {args.syn_steps} unrolled steps, batch {args.batch_syn}, "
          f"arch {args.arch} ({ours['params'] if ours else '?'} parameters)")
    print(f"machine: {machine(args.device)} ({args.device}, {args.threads} threads); torch {torch.__version__}; "
          f"python {platform.python_version()}; {datetime.date.today().isoformat()}; load average at the end "
          f"{os.getloadavg()[0]:.1f} (timings are only comparable on an otherwise idle machine)")
    print(f"command: {cmdline}")
    print(f"timing: median of {args.iters} iteration(s) after 1 warm-up; memory: "
          f"{next(iter(results.values()))['memory'] if results else '?'}")
    print()
    print("| variant | s/iteration | peak extra memory (MiB) | time / reference | memory / reference |")
    print("|---|---:|---:|---:|---:|")
    for v in variants:
        if v not in results:
            print(f"| {v} | failed | failed | | |")
            continue
        r = results[v]
        tr = f"{r['s_per_iter'] / ref['s_per_iter']:.2f}" if ref else "n/a"
        mr = f"{r['peak_extra_mib'] / ref['peak_extra_mib']:.2f}" if ref and ref["peak_extra_mib"] > 0 else "n/a"
        print(f"| {v} | {r['s_per_iter']:.4f} | {r['peak_extra_mib']:.1f} | {tr} | {mr} |")
    print()
    for v, r in results.items():
        print(f"{v}: loss {r['loss']:.10g}, grad_x[:5] {['%.6g' % a for a in r['grad_x_first']]}, "
              f"|grad_x| {r['grad_x_norm']:.6g}, |grad_y| {r['grad_y_norm']:.6g}, grad_lr {r['grad_lr']:.6g}")
    if agree is not None:
        print(f"losses agree with the reference (1e-4 relative): {'yes' if agree else 'NO'}")
    for n in notes:
        print(f"note: {n}")
    if args.json:
        row = {"bench": "mkdt_iteration", "images": args.images, "dim": args.dim, "syn_steps": args.syn_steps,
               "batch_syn": args.batch_syn, "arch": args.arch, "iters": args.iters, "threads": args.threads,
               "device": args.device, "machine": machine(args.device), "torch": torch.__version__,
               "date": datetime.date.today().isoformat(), "command": cmdline, "losses_agree": agree,
               "results": results, "notes": notes}
        with open(args.json, "a") as f:
            f.write(json.dumps(row) + "\n")
    return 0 if len(results) == len(variants) else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", default=None, help="folder with MTT's reparam_module.py and networks.py")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--syn-steps", type=int, default=10)
    ap.add_argument("--batch-syn", type=int, default=50)
    ap.add_argument("--arch", default="convnet", choices=["convnet", "convnet-32-64-128-in"],
                    help="ours' network (the reference is always MTT's 128 x 3 instancenorm ConvNet)")
    ap.add_argument("--iters", type=int, default=3, help="timed iterations after one warm-up (the median is reported)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--json", default=None, help="append the results as one JSON line to this file")
    ap.add_argument("--ours-only", action="store_true", help="time ours only (no reference code at hand)")
    ap.add_argument("--child", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    argv = sys.argv[1:]
    args = ap.parse_args(argv)
    if min(args.images, args.dim, args.syn_steps, args.batch_syn, args.iters, args.threads) < 1:
        ap.error("--images, --dim, --syn-steps, --batch-syn, --iters and --threads must be >= 1")
    if args.child:
        res = child(args)
        print("@@RESULT " + json.dumps(res), flush=True)
        return 0
    return parent(args, argv)


if __name__ == "__main__":
    sys.exit(main())
