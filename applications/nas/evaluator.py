"""Scoring candidates: the cheap proxy (pre-train on a set, score on a labelled split) and the
expensive ground truth (train on the full labelled set), both on concrete ``Net`` models."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from distill import DistilledSet
from distill.data import ImageSet, label_subset, load_dataset
from distill.engine import resolve_device, seed_everything
from distill.engine.files import write_json
from distill.errors import DataError
from distill.evaluate.config import FinetuneConfig
from distill.evaluate import finetune, linear_probe, pretrain_on_set
from distill.models import Net

from .config import GroundTruthConfig, NASConfig, ScoreConfig
from .spaces import arch_key, build


def split_for_scoring(train: ImageSet, cfg: ScoreConfig, seed: int) -> tuple[ImageSet, ImageSet]:
    """Disjoint, class-balanced (fit, validation) parts of a labelled training split."""
    per = cfg.train_per_class + cfg.val_per_class
    idx = label_subset(train.labels.cpu(), per_class=per, seed=seed)
    labels = train.labels.cpu()[idx]
    fit, val = [], []
    for c in labels.unique():
        members = idx[labels == c]
        fit.append(members[: cfg.train_per_class])
        val.append(members[cfg.train_per_class:])
    return train.subset(torch.cat(fit)), train.subset(torch.cat(val))


class ProxyEvaluator:
    """Pre-train a candidate on a proxy set, then score it on the validation part of the target."""

    def __init__(self, cfg: NASConfig, proxy_label: str, proxy: DistilledSet, fit: ImageSet, val: ImageSet):
        self.cfg, self.label, self.proxy = cfg, proxy_label, proxy
        self.mat = proxy.materialize()
        self.fit, self.val = fit, val
        self.device = fit.device
        self.log: list[dict] = []

    def score(self, net: Net, arch: dict | None = None) -> float:
        """Validation accuracy (%) of ``net`` after pre-training on the proxy set."""
        t0 = time.time()
        seed_everything(self.cfg.seed)
        for m in net.modules():     # the weights from the seed, not from whatever built the candidate (NNI, a
            if hasattr(m, "reset_parameters"):   # trial process): a score depends on the architecture and seed only
                m.reset_parameters()
        net = net.to(self.device)
        net.set_normalization(self.proxy.mean, self.proxy.std)
        pretrain_on_set(net, self.mat, self.cfg.pretrain, self.device, self.cfg.amp, desc=f"proxy {self.label}")
        sc = self.cfg.score
        if sc.method == "linear":
            acc = linear_probe(net, self.fit, self.val, sc.linear, self.cfg.seed, self.cfg.amp)[1.0]
        else:
            ft = FinetuneConfig(iterations=sc.finetune_iterations, lr=sc.finetune_lr, batch_size=sc.batch_size)
            acc = finetune(net, self.fit, self.val, ft, amp=self.cfg.amp, desc=f"proxy fine-tune {self.label}")
        self.log.append({"proxy": self.label, "arch": arch, "score": acc, "seconds": time.time() - t0})
        return acc

    def __call__(self, model) -> None:
        """The NNI FunctionalEvaluator entry: ``model`` is a frozen space instance."""
        import nni
        nni.report_final_result(self.score(model.net, dict(model.arch)))


def _gt_hash(space: str, space_args: dict, target: str, gt: GroundTruthConfig, seed: int) -> str:
    d = {"space_args": space_args, "target": target, "gt": {k: v for k, v in asdict(gt).items() if k != "cache_dir"},
         "seed": seed}
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


class GroundTruth:
    """Train-from-scratch test accuracy per architecture, cached as one JSON file per entry."""

    def __init__(self, cfg: NASConfig, train: ImageSet, test: ImageSet):
        self.cfg = cfg
        gt = cfg.ground_truth
        if gt.train_per_class:
            train = train.subset(label_subset(train.labels.cpu(), per_class=gt.train_per_class, seed=gt.subset_seed))
        self.train, self.test = train, test
        digest = _gt_hash(cfg.space, cfg.space_args, cfg.target.name, gt, cfg.seed)
        self.folder = Path(gt.cache_dir) / f"{cfg.space}-{cfg.target.name}-{digest}"

    def _path(self, arch: dict) -> Path:
        return self.folder / (hashlib.sha1(arch_key(self.cfg.space, arch).encode()).hexdigest()[:16] + ".json")

    def cached(self, arch: dict) -> dict | None:
        p = self._path(arch)
        return json.loads(p.read_text()) if p.exists() else None

    def __call__(self, arch: dict) -> dict:
        hit = self.cached(arch)
        if hit is not None:
            return {**hit, "cached": True}
        gt = self.cfg.ground_truth
        t0 = time.time()
        seed_everything(self.cfg.seed)
        net = build(self.cfg.space, arch, image_size=self.train.image_size, in_chans=self.train.channels,
                    **self.cfg.space_args)
        net.set_normalization(self.train.mean, self.train.std)
        iters = gt.epochs * max(1, len(self.train) // gt.batch_size)
        ft = FinetuneConfig(iterations=iters, batch_size=gt.batch_size, lr=gt.lr, momentum=gt.momentum,
                            weight_decay=gt.weight_decay, augment=gt.augment)
        acc = finetune(net, self.train, self.test, ft, amp=self.cfg.amp, desc=f"ground truth {net.name}")
        entry = {"arch": arch, "space": self.cfg.space, "test_acc": acc, "seconds": time.time() - t0,
                 "iterations": iters, "train_images": len(self.train)}
        write_json(self._path(arch), entry)
        return {**entry, "cached": False}


def load_target(cfg: NASConfig, image_size: int, channels: int):
    device = resolve_device(cfg.device)
    t = cfg.target
    train = load_dataset(t.name, t.root, t.train_split, image_size, device=device)
    test = load_dataset(t.name, t.root, t.test_split, image_size, device=device)
    if train.channels != channels:
        raise DataError(f"target '{t.name}' has {train.channels} channels, the proxy sets {channels}")
    return train, test


def load_proxies(cfg: NASConfig) -> dict[str, DistilledSet]:
    sets = {p.label: DistilledSet.load(p.path) for p in cfg.proxies}
    sizes = {(s.image_size, s.channels) for s in sets.values()}
    if len(sizes) > 1:
        raise DataError(f"proxy sets differ in resolution/channels: {sorted(sizes)}")
    return sets
