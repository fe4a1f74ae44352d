"""Evaluation protocols: pre-train on a set, then fine-tune and/or linear-probe on targets.

    report = evaluate_files(["krr.safetensors", "random.safetensors"], load_eval_config(protocol="krrst"))
    print(report.table)
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import to_dict
from .config import EvalConfig, TargetConfig, list_protocols, load_eval_config
from ..data import label_subset, load_dataset
from ..distilled import DistilledSet
from ..engine import dist, resolve_device, seed_everything
from ..errors import ConfigError, DataError
from ..models import create_model
from .knn import knn_accuracy
from .relabel import RelabelConfig, relabel_train
from .report import aggregate, pivot_markdown, write_report
from .train import (accuracy, extract_features, finetune, fit_linear, linear_probe, pretrain_on_set, set_loss,
                    train_classifier)

NO_PRETRAIN = "no pre-training"

__all__ = ["EvalConfig", "EvalReport", "RelabelConfig", "relabel_train",
           "NO_PRETRAIN", "TargetConfig", "accuracy", "list_protocols", "load_eval_config",
           "set_loss", "train_classifier", "aggregate", "evaluate_files", "evaluate_sets",
           "extract_features", "finetune", "fit_linear", "knn_accuracy", "linear_probe", "load_targets",
           "pivot_markdown", "pretrain_on_set", "write_report"]


@dataclass
class EvalReport:
    rows: list[dict]
    table: str
    aggregate: list[dict]
    paths: dict = field(default_factory=dict)
    seconds: float = 0.0


def load_targets(targets: list[TargetConfig], image_size: int, channels: int, device) -> dict[str, tuple]:
    """Each target's (train, test) ImageSets at ``image_size``, on ``device``."""
    from ..data.sources import root_option
    out = {}
    for i, t in enumerate(targets):
        with root_option(f"--targets {t.name}:ROOT (or targets[{i}].root in the config)"):
            train = load_dataset(t.name, t.root, t.train_split, image_size, device=device)
        if t.train_per_class:
            train = train.subset(label_subset(train.labels.cpu(), per_class=t.train_per_class, seed=0))
        test = load_dataset(t.name, t.root, t.test_split, image_size, device=device)
        if t.test_per_class:
            test = test.subset(label_subset(test.labels.cpu(), per_class=t.test_per_class, seed=0))
        if train.channels != channels:
            raise DataError(f"target '{t.name}' has {train.channels} channel(s), the sets have {channels}")
        if not train.labelled or not test.labelled:
            raise DataError(f"target '{t.name}' needs labels on both splits for evaluation")
        out[t.name] = (train, test, t)
    return out


def metric_name(kind: str, frac: float | None = None) -> str:
    if kind == "linear":
        return "linear" if frac is None or frac >= 1 else f"linear@{frac * 100:g}%"
    return kind


def evaluate_sets(sets: dict[str, DistilledSet | None], cfg: EvalConfig, targets: dict | None = None,
                  write: bool = True, verbose: bool = True, image_size: int | None = None,
                  channels: int | None = None) -> EvalReport:
    """Evaluate each named set (``None`` = no pre-training) under ``cfg``; rows are per seed. The networks' input
    size is the sets'; ``image_size`` / ``channels`` give it when every set is None (default 32 x 32 RGB)."""
    t0 = time.time()
    dist.init_distributed(cfg.device)
    device = resolve_device(cfg.device)
    verbose = verbose and dist.is_main()
    real = [s for s in sets.values() if s is not None]
    ref = real[0] if real else None
    for name, s in sets.items():
        if s is not None and (s.image_size, s.channels) != (ref.image_size, ref.channels):
            raise DataError(f"set '{name}' is {s.channels}x{s.image_size}px, '{next(iter(sets))}' is "
                            f"{ref.channels}x{ref.image_size}px; evaluate sets of one resolution together")
    size = ref.image_size if ref else (image_size or 32)
    chans = ref.channels if ref else (channels or 3)
    targets = targets or load_targets(cfg.targets, size, chans, device)
    if verbose:
        from ..engine.device import describe_precision
        print(f"evaluate: {len(sets)} set(s) x {len(cfg.seeds)} seed(s) x {len(targets)} target(s), protocol "
              f"{cfg.protocol}, {cfg.arch}, "
              f"{'relabel %d epochs' % cfg.relabel.epochs if cfg.relabel.enabled else 'pre-train %d epochs' % cfg.pretrain.epochs}"
              f", device {device}, "
              f"{describe_precision(device, cfg.amp)}", flush=True)
    if cfg.relabel.enabled:
        rows = relabel_rows(sets, cfg, targets, device, verbose)
    else:
        rows = pretrain_rows(sets, cfg, targets, device, verbose, size, chans)
    keys = ("set", "arch", "target", "metric")
    notes = [relabel_note(cfg)] if cfg.relabel.enabled else [
             f"Protocol `{cfg.protocol}`, architecture `{cfg.arch}`, seeds {list(cfg.seeds)}; mean ± sample std "
             f"over seeds. Pre-training: {cfg.pretrain.epochs} epochs; fine-tuning: "
             f"{'%d iterations' % cfg.finetune.iterations if cfg.finetune.enabled else 'off'}; linear probe: "
             f"{cfg.linear.solver + ' ' + str(cfg.linear.steps) + ' steps' if cfg.linear.enabled else 'off'}. "
             f"Test accuracy (%) at the end of training, no checkpoint selection. Models pre-trained on a set "
             f"normalise inputs with the set's source statistics; the no-pre-training network with each target's own."]
    if write and dist.is_main():
        rep = write_report(cfg.output, rows, keys, "set", ("target", "metric"), "Evaluation", notes,
                           {"config": to_dict(cfg), "seconds": round(time.time() - t0, 1)})
        return EvalReport(rows, rep["table"], rep["aggregate"], rep["paths"], time.time() - t0)
    agg = aggregate(rows, keys)
    return EvalReport(rows, pivot_markdown(agg, "set", ("target", "metric")), agg, {}, time.time() - t0)


def pretrain_rows(sets: dict, cfg: EvalConfig, targets: dict, device, verbose: bool, size: int, chans: int) -> list[dict]:
    """The SSL protocols (krrst, mkdt): per set and seed, pre-train on the set (or not, for None), then
    linear-probe and / or fine-tune on each target."""
    jobs = [(label, seed) for label in sets for seed in cfg.seeds]
    out: dict[int, list[dict]] = {}
    mats: dict[str, object] = {}
    for j, (label, seed) in enumerate(jobs):
        if cfg.parallel == "jobs" and j % dist.world_size() != dist.rank():   # torchrun: jobs round-robin over ranks
            continue
        s = sets[label]
        if s is not None and label not in mats:
            mats[label] = s.materialize()
        mat = mats.get(label)
        rows = out.setdefault(j, [])
        if s is not None:   # a model pre-trained on the set normalises with the set's source statistics
            seed_everything(seed)
            model = create_model(cfg.arch, out_dim=0, image_size=size, in_chans=chans, mean=s.mean,
                                 std=s.std).to(device)
            if verbose:
                print(f"  pre-training on [{label}] ({len(mat)} examples), seed {seed} ...", flush=True)
            pre = pretrain_on_set(model, mat, cfg.pretrain, device, cfg.amp, desc=f"pre-train [{label}] seed {seed}")
            # the pre-training loss at epochs 1, 51, 101, ... and the last: whether the row was trained to convergence
            curve = [[h["epoch"], round(h["loss"], 6)] for h in pre["history"]]
        for tname, (train, test, tcfg) in targets.items():
            if s is None:   # no pre-training: the same seeded network for every target, normalised with the
                seed_everything(seed)   # target's own statistics, so this row does not depend on its neighbours
                model = create_model(cfg.arch, out_dim=0, image_size=size, in_chans=chans, mean=train.mean,
                                     std=train.std).to(device)
            base = {"set": label, "arch": cfg.arch, "target": tname, "seed": seed}
            if s is not None:
                base["pretrain_curve"] = curve
            if cfg.linear.enabled:
                probe: dict = {}
                for frac, acc in linear_probe(model, train, test, cfg.linear, seed, cfg.amp, info=probe).items():
                    rows.append({**base, "metric": metric_name("linear", frac), "acc": acc, **probe.get(frac, {})})
                    if verbose:
                        print(f"  {label:<24} seed {seed} {tname:<10} {metric_name('linear', frac):<12} {acc:6.2f}")
            if cfg.finetune.enabled:
                acc = finetune(copy.deepcopy(model), train, test, cfg.finetune, tcfg.finetune_iterations, cfg.amp,
                               desc=f"fine-tune [{label}] {tname} seed {seed}", data_parallel=cfg.parallel == "data")
                rows.append({**base, "metric": "finetune", "acc": acc})
                if verbose:
                    print(f"  {label:<24} seed {seed} {tname:<10} {'finetune':<12} {acc:6.2f}")
    return gather_jobs(out)


def gather_jobs(out: dict[int, list[dict]]) -> list[dict]:
    """Every rank's rows by job number, in job order: the rows one process would have made."""
    merged: dict[int, list[dict]] = {}
    for part in dist.all_gather_objects(out):
        merged.update(part)
    return [row for j in sorted(merged) for row in merged[j]]


def relabel_teacher(cfg: EvalConfig, s: DistilledSet, label: str):
    """The relabel teacher of set ``s``: ``relabel.classifier``, else the classifier its header names."""
    from ..classifier import Classifier
    path = cfg.relabel.classifier or s.meta.get("classifier")
    needed = "teacher" in cfg.relabel.labels or ("stored" in cfg.relabel.labels and s.soft_labels is None)
    if not path:
        if not needed:
            return None
        raise ConfigError(f"set '{label}' names no classifier to relabel with",
                          fix="set relabel.classifier=path/to/classifier.safetensors (made by `ssdd squeeze`)")
    return Classifier.load(path)


def relabel_rows(sets: dict, cfg: EvalConfig, targets: dict, device, verbose: bool) -> list[dict]:
    """SC-DD's protocol: per set, seed, target and labelling, a student from scratch (see evaluate.relabel)."""
    jobs = [(label, seed) for label, s in sets.items() if s is not None for seed in cfg.seeds]
    out: dict[int, list[dict]] = {}
    loaded: dict[str, tuple] = {}
    for j, (label, seed) in enumerate(jobs):
        if j % dist.world_size() != dist.rank():      # under torchrun: the (set, seed) jobs round-robin over ranks
            continue
        s = sets[label]
        if label not in loaded:    # factorised sets and views expanded once per set
            loaded[label] = (relabel_teacher(cfg, s, label), s.materialize())
        clf, m = loaded[label]
        rows = out.setdefault(j, [])
        for tname, (train, test, tcfg) in targets.items():
            if clf is not None and clf.num_classes != test.num_classes:
                raise DataError(f"the relabel teacher has {clf.num_classes} classes, target '{tname}' has "
                                f"{test.num_classes}", fix="relabel with a classifier squeezed on that source")
            if s.labels is not None and int(s.labels.max()) >= test.num_classes:
                raise DataError(f"set '{label}' has labels up to {int(s.labels.max())}, target '{tname}' has "
                                f"{test.num_classes} classes", fix="evaluate a set on its own source")
            for kind in cfg.relabel.labels:
                if kind == "hard" and s.labels is None:
                    continue
                seed_everything(seed)
                student = create_model(cfg.arch, out_dim=test.num_classes, image_size=s.image_size,
                                       in_chans=s.channels, mean=s.mean, std=s.std).to(device)
                acc = relabel_train(student, m.images, clf.model if clf is not None else None, kind, cfg.relabel,
                                    test, labels=m.labels, soft_labels=m.soft_labels, amp=cfg.amp,
                                    desc=f"relabel [{label}] {kind} seed {seed}")
                rows.append({"set": label, "arch": cfg.arch, "target": tname, "seed": seed,
                             "metric": f"relabel:{kind}", "acc": acc})
                if verbose:
                    print(f"  {label:<24} seed {seed} {tname:<10} {'relabel:' + kind:<16} {acc:6.2f}", flush=True)
    return gather_jobs(out)


def relabel_note(cfg: EvalConfig) -> str:
    r = cfg.relabel
    mixing = f"cutmix {r.cutmix:g}" if r.cutmix > 0 else f"mixup {r.mixup:g}" if r.mixup > 0 else "no mixing"
    return (f"Protocol `{cfg.protocol}` (SC-DD relabel): `{cfg.arch}` students from scratch, {r.epochs} epochs, "
            f"batch {r.batch_size}, AdamW lr {r.lr:g} wd {r.weight_decay:g} cosine to 0, "
            f"{'crop + flip, ' if r.augment else ''}{mixing}; `relabel:teacher` = KL at T = {r.temperature:g} to the "
            f"relabel teacher on each augmented batch, `relabel:stored` = KL to stored soft labels (no teacher while "
            f"training), `relabel:hard` = CE on class labels. Seeds {list(cfg.seeds)}; mean ± sample std; test top-1 "
            f"(%) at the end of training, no checkpoint selection.")


def evaluate_files(paths: list[str | Path], cfg: EvalConfig, **kw) -> EvalReport:
    """Load each file (labelled by its file stem) and evaluate, plus no pre-training if configured."""
    sets: dict[str, DistilledSet | None] = {}
    for p in paths:
        label = Path(p).stem
        while label in sets:
            label += "'"
        sets[label] = DistilledSet.load(p)
    if cfg.no_pretrain_baseline:
        sets[NO_PRETRAIN] = None
    return evaluate_sets(sets, cfg, **kw)
