"""NAS proxy quality as a leaderboard protocol: how well each set, used as the proxy, ranks architectures of
the NNI ConvNet space against their ground truth.

The ground truth is each architecture trained from scratch on the target's training images and tested on
its test split, once per ground-truth seed, cached one file per (architecture, target, budget, seed) so that
it is paid once (:class:`applications.nas.evaluator.GroundTruth`). Its own seed-to-seed Kendall tau is
measured and stated; below ``min_gt_tau`` (0.8) the table header says that the ground truth is not stable
enough to rank proxies (train it longer: ``ground_truth.epochs``).

A cell is one set x evaluation seed: every architecture pre-trained on the set and scored on a validation
part of the target's *training* split (never the test split), then compared with the ground truth (the mean
over its seeds). Metrics: ``kendall tau`` (with a 95 % bootstrap interval over architectures in the cell
file), ``spearman``, ``top-5 overlap``, ``regret`` (ground truth of the best architecture minus that of the
proxy's pick; lower is better) and ``speed-up`` (ground-truth seconds / proxy seconds per architecture).

YAML (a leaderboard protocol)::

    - name: nas
      overrides:
        space: convnet
        space_args: {depths: [2, 3, 4], widths: [32, 64, 128]}
        num_archs: 30
        pretrain: {epochs: 50}
        score: {method: linear, train_per_class: 100, val_per_class: 50}
        ground_truth: {epochs: 30, train_per_class: null}
        gt_seeds: [0, 1]
        gt_max_epochs: 120               # below min_gt_tau (0.8), the ground truth is trained again at 2x epochs
"""
from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from distill.config import load_config, to_dict
from distill.evaluate.config import PretrainConfig
from distill.leaderboard.apps import Application

from .config import GroundTruthConfig, NASConfig, ScoreConfig
from .evaluator import GroundTruth, ProxyEvaluator, split_for_scoring
from .spaces import build, sample_architectures
from .stats import bootstrap_ci, kendall_tau_b, regret, spearman, top_k_overlap


@dataclass
class NASBenchConfig:
    space: str = "convnet"
    space_args: dict[str, Any] = field(default_factory=dict)
    num_archs: int = 30
    arch_seed: int = 0                    # which architectures are drawn
    pretrain: dict[str, Any] = field(default_factory=lambda: {"epochs": 50})      # PretrainConfig keys
    score: dict[str, Any] = field(default_factory=dict)                           # ScoreConfig keys
    ground_truth: dict[str, Any] = field(default_factory=lambda: {"epochs": 30})  # GroundTruthConfig keys
    gt_seeds: list[int] = field(default_factory=lambda: [0, 1])
    min_gt_tau: float = 0.8
    # below min_gt_tau, train the ground truth again at twice the epochs, up to this many (null: never)
    gt_max_epochs: int | None = None
    top_k: int = 5


def correlations(scores: list[float], truth: list[float], seed: int = 0):
    """(Kendall tau-b, Spearman rho, 95 % bootstrap interval of tau, all scores tied) of a proxy's scores
    against the ground truth. A proxy that scores every architecture alike ranks nothing: its correlations
    are 0, where scipy's are undefined (nan, which would poison a table's means)."""
    if len(set(scores)) == 1:
        return 0.0, 0.0, (0.0, 0.0), True
    return (kendall_tau_b(scores, truth), spearman(scores, truth),
            bootstrap_ci(kendall_tau_b, scores, truth, seed=seed), False)


class NASApp(Application):
    name = "nas"
    Config = NASBenchConfig
    lower_better = ("regret",)
    info_metrics = ("speed-up",)

    def _nas_config(self, seed: int, gt_epochs: int | None = None) -> NASConfig:
        p = self.p
        name, (_, _, t) = next(iter(self.ctx.targets.items()))
        # keyed by the target's whole config (its training cap changes the ground truth); GroundTruth adds the
        # space, the ground-truth settings and the seed
        tkey = hashlib.sha256(json.dumps(to_dict(t), sort_keys=True, default=str).encode()).hexdigest()[:10]
        extra = {"cache_dir": str(self.ctx.folder / "ground_truth" / tkey), **p.ground_truth}
        if gt_epochs is not None:
            extra["epochs"] = gt_epochs
        gt = load_config(GroundTruthConfig, None, extra=extra)
        return NASConfig(space=p.space, space_args=dict(p.space_args), target=t,
                         pretrain=load_config(PretrainConfig, None, extra=p.pretrain),
                         score=load_config(ScoreConfig, None, extra=p.score), ground_truth=gt, seed=seed,
                         device=self.ctx.cfg.device, amp=self.ctx.cfg.amp)

    def _ground_truth(self, epochs: int) -> tuple[list[list[float]], list[float], int]:
        """Test accuracy per ground-truth seed and architecture at ``epochs``, trained or read from the cache."""
        per_seed, secs, n_train = [], [], 0
        for gs in self.p.gt_seeds:
            gt = GroundTruth(self._nas_config(gs, epochs), self.train, self.test)
            n_train = len(gt.train)
            done = sum(gt.cached(a) is not None for a in self.archs)
            if done < len(self.archs):
                self.ctx.log(f"  [nas] ground truth, seed {gs}, {epochs} epochs: {len(self.archs) - done} of "
                             f"{len(self.archs)} architectures to train ({gt.folder})")
            res = [gt(a) for a in self.archs]
            per_seed.append([r["test_acc"] for r in res])
            secs += [r["seconds"] for r in res]
        return per_seed, secs, n_train

    @staticmethod
    def _seed_tau(per_seed: list[list[float]]) -> float | None:
        taus = [kendall_tau_b(per_seed[i], per_seed[j]) for i in range(len(per_seed))
                for j in range(i + 1, len(per_seed))]
        return statistics.fmean(taus) if taus else None

    def prepare(self) -> str:
        train, test, _ = next(iter(self.ctx.targets.values()))
        self.train, self.test = train, test
        self.kw = dict(image_size=self.ctx.src.image_size, in_chans=self.ctx.src.channels, **self.p.space_args)
        self.archs = sample_architectures(self.p.space, self.p.num_archs, self.p.arch_seed, **self.kw)
        # the ground truth, trained longer (x2 epochs) until its seed-to-seed tau reaches min_gt_tau or its
        # epochs would pass gt_max_epochs
        epochs = self._nas_config(0).ground_truth.epochs
        history = []
        while True:
            per_seed, secs, n_train = self._ground_truth(epochs)
            tau = self._seed_tau(per_seed)
            history.append((epochs, tau))
            if tau is not None:
                self.ctx.log(f"  [nas] ground truth at {epochs} epochs: seed-to-seed Kendall tau {tau:.3f}")
            if tau is None or tau >= self.p.min_gt_tau or not self.p.gt_max_epochs or 2 * epochs > self.p.gt_max_epochs:
                break
            epochs *= 2
        self.truth = [statistics.fmean(v) for v in zip(*per_seed)]
        self.gt_seconds = statistics.fmean(secs)
        self.gt_tau, self.gt_epochs = tau, epochs
        c = self._nas_config(0, epochs)
        steps = "; ".join(f"{e} epochs: tau {t:.2f}" for e, t in history[:-1])
        stable = ("one ground-truth seed: its stability is not measured" if tau is None else
                  f"seed-to-seed Kendall tau {tau:.2f}" + (f", after {steps}" if steps else "") + (
                      "" if tau >= self.p.min_gt_tau else
                      f" (**under {self.p.min_gt_tau}: the ground truth is not stable enough to rank proxies; "
                      "train it longer**)"))
        return (f"NAS proxy: {len(self.archs)} architectures of the `{self.p.space}` space {self.p.space_args or ''}, "
                f"each pre-trained on the set ({c.pretrain.epochs} epochs) and scored by {c.score.method} on "
                f"{c.score.val_per_class} held-out *training* images per class; ground truth = trained from scratch "
                f"{epochs} epochs on {n_train} images, test split, mean of seeds "
                f"{list(self.p.gt_seeds)} ({stable}); {self.gt_seconds:.0f} s per architecture; best ground truth "
                f"{max(self.truth):.2f} %.")

    def key(self) -> dict:
        return {**super().key(), "truth": [round(t, 4) for t in getattr(self, "truth", [])]}

    def cell(self, label, s, seed, set_seed, row) -> list[dict]:
        cfg = self._nas_config(seed, self.gt_epochs)
        fit, val = split_for_scoring(self.train, cfg.score, seed)
        ev = ProxyEvaluator(cfg, label, s, fit, val)
        t0 = time.time()
        scores = [ev.score(build(self.p.space, a, **self.kw), a) for a in self.archs]
        per_arch = (time.time() - t0) / len(self.archs)
        tau, rho, (lo, hi), tied = correlations(scores, self.truth, seed)
        tgt = next(iter(self.ctx.targets))
        extra = {"scores": scores, "tau_ci": [lo, hi], "all_tied": tied}
        return [{"target": tgt, "metric": "kendall tau", "acc": tau, "percent": False, **extra},
                {"target": tgt, "metric": "spearman", "acc": rho, "percent": False},
                {"target": tgt, "metric": f"top-{self.p.top_k} overlap", "percent": False,
                 "acc": top_k_overlap(scores, self.truth, self.p.top_k)},
                {"target": tgt, "metric": "regret", "acc": regret(scores, self.truth)},   # ground-truth % points
                {"target": tgt, "metric": "speed-up", "acc": self.gt_seconds / max(per_arch, 1e-9), "percent": False}]


APPLICATION = NASApp
__all__ = ["NASApp", "NASBenchConfig"]
