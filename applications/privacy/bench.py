"""The privacy audit as a leaderboard protocol: does each row's set leak the private images it was made from?

YAML (a leaderboard protocol)::

    - name: privacy
      overrides:
        audit_points: 500        # class-balanced fixed draw from the source dataset's test split (never public)
        held_out: 1000           # other test images: they calibrate the copy rules (real non-members)
        shadows: 16              # shadow runs of the whole pipeline per cell (even; each point IN in half of them)
        attack: offline          # LiRA variant: offline (OUT Gaussian, one-sided) | online (IN and OUT Gaussians)
        protocol: krrst          # the evaluation protocol whose pre-training every student follows
        pretrain: {epochs: 200}  # overrides of that protocol's pre-training
        utility: true            # linear-probe every run's student on the targets (the utility axis)
        references: [noise, all private images]
        dp: [{epsilon: 8.0}, {epsilon: 1.0}]     # DP-SGD students on the private source (opacus)

One cell = one row x one set seed: ``shadows`` runs, each distilling the row's method from its own private source
(the leaderboard's source + its half of the audit points), pre-training a fresh student on that set, and scoring
every audit point (applications/privacy/shadow.py); LiRA (leave-one-out over the runs) reads them. The row's own
set (made from the public source alone) gets the nearest-copy audit against that source.

References (rows of this protocol only): ``noise`` (Gaussian noise images with the teacher's representations as
targets: nothing to leak), ``all private images`` (a student pre-trained on the whole private source with the
teacher's representations as targets: what a set is meant to replace) and one ``DP-SGD (eps E)`` row per ``dp`` entry (the full-source student trained by DP-SGD, opacus; its
epsilon from opacus' RDP accountant). Every leakage metric is lower-is-better; ``random`` (the real subset: every
image is a private image) is the real-image baseline.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from distill.config import load_config, to_dict
from distill.data import load_dataset
from distill.distilled import Materialized
from distill.engine import seed_everything
from distill.errors import ConfigError
from distill.evaluate import metric_name
from distill.evaluate.config import EvalConfig, PretrainConfig, protocol_preset
from distill.evaluate.train import linear_probe, pretrain_loss_kind, pretrain_on_set
from distill.leaderboard.apps import Application
from distill.models import create_model

from .copies import audit_copies
from .dp import DPConfig, dp_label, dp_regress, make_dp_compatible
from .lira import attack_metrics, bootstrap_metrics, lira_scores, resolution
from .shadow import audit_draw, distill_shadow, private_source, shadow_masks, start_points, student_scores

NOISE, FULL = "noise", "all private images"
LEAK = ("AUC", "TPR@1%FPR", "TPR@0.1%FPR", "TPR@1%FPR (starts)", "re-identified", "singled out", "near copy 5%")
EXPERTS = {"arch": "convnet-32-64-128-in", "experts": 4, "epochs": 6}


@dataclass
class PrivacyBenchConfig:
    audit_points: int = 500
    held_out: int = 1000
    shadows: int = 16
    attack: str = "offline"     # see the module's notes: few points enter a set, so IN ~ OUT for most points
    global_variance: bool = True
    protocol: str = "krrst"
    pretrain: dict[str, Any] = field(default_factory=dict)
    utility: bool = True                         # linear-probe every run's student on the targets
    references: list[str] = field(default_factory=lambda: [NOISE, FULL])
    dp: list[dict[str, Any]] = field(default_factory=lambda: [{"epsilon": 8.0}, {"epsilon": 1.0}])
    full_source_epochs: int | None = None        # default: the leaderboard's full_source_epochs
    experts: dict[str, Any] = field(default_factory=dict)   # MKDT's per-run experts (default: the source's)
    bootstrap: int = 300

    def validate(self):
        if self.shadows < 4 or self.shadows % 2:
            raise ConfigError(f"privacy shadows must be an even number >= 4, got {self.shadows}")
        if not self.global_variance and self.shadows < 6:
            raise ConfigError(f"per-point variance needs at least 6 shadow runs (2 IN and 2 OUT shadows per point after "
                              f"leaving the target out and equalising), got {self.shadows}",
                              fix="raise shadows or keep global_variance: true")
        if self.attack not in ("online", "offline"):
            raise ConfigError(f"privacy attack must be online or offline, got {self.attack!r}")
        if self.audit_points < 2 or self.held_out < 2:
            raise ConfigError("privacy audit_points and held_out must be >= 2")
        bad = sorted(set(self.references) - {NOISE, FULL})
        if bad:
            raise ConfigError(f"unknown privacy reference(s) {bad}", fix=f"use {[NOISE, FULL]}")
        for d in self.dp:
            load_config(DPConfig, None, extra=d)


class PrivacyApp(Application):
    name = "privacy"
    Config = PrivacyBenchConfig
    lower_better = LEAK
    info_metrics = ("epsilon",)

    # ------------------------------------------------------------------ shared
    def _dp(self) -> list[DPConfig]:
        return [load_config(DPConfig, None, extra=d) for d in self.p.dp]

    def prepare(self) -> str:
        ctx, p = self.ctx, self.p
        d = ctx.spec.data
        held = load_dataset(d.name, d.root, "test", d.image_size).to(ctx.device)
        a_idx, h_idx = audit_draw(held, p.audit_points, p.held_out, seed=0)
        self.audit, self.held = held.subset(a_idx), held.subset(h_idx)
        self.audit_index, self.n_test = a_idx, len(held)
        self.keep = shadow_masks(p.shadows, p.audit_points, seed=0)
        t = ctx.teacher
        t.model.to(ctx.device)
        self.base_reps = t.represent_cached(ctx.src)
        self.audit_reps = t.represent(self.audit)
        ecfg = load_config(EvalConfig, None, extra={"protocol": p.protocol, "arch": ctx.cfg.arch,
                                                    "pretrain": p.pretrain}, preset=protocol_preset(p.protocol))
        self.pcfg: PretrainConfig = ecfg.pretrain
        self.lcfg = ecfg.linear
        n_in = p.shadows * p.audit_points // 2
        res = resolution(n_in, n_in, 0.01)
        tpr1 = (f"TPR @ 1 % FPR resolvable from {res['detectable_tpr']:.1f} % (80 % power against chance)"
                if res["readable"] else f"TPR @ 1 % FPR not readable (the lowest FPR is {100 * res['lowest_fpr']:.1f} %)")
        self.note = (f"Privacy audit: {p.audit_points} audit points (class-balanced from the {d.name} test split, never "
                     f"public), {p.shadows} shadow runs of the whole pipeline per cell (each point in half), LiRA "
                     f"{p.attack} ({'global' if p.global_variance else 'per-point'} variance, leave-one-out); students "
                     f"`{ctx.cfg.arch}` pre-trained as the `{p.protocol}` protocol ({self.pcfg.epochs} epochs); "
                     f"{n_in} member and {n_in} non-member decisions: {tpr1}, TPR @ 0.1 % FPR readable "
                     f"{'yes' if n_in * 0.001 >= 1 else 'no'}; copy rules calibrated on {p.held_out} held-out images.")
        return self.note

    def references(self) -> dict[str, bool]:
        # none is a real-image baseline here: every comparison reads against `random` (the real subset)
        refs = {r: False for r in self.p.references}
        return refs | {dp_label(c): False for c in self._dp()}

    def key(self) -> dict:
        return {**to_dict(self.p), "teacher": getattr(self.ctx.teacher, "id", None)}

    def row_key(self, row):
        return None

    def _experts(self) -> dict:
        """MKDT's per-run experts: the defaults <- the source's (arch, count, epochs) <- the protocol's ``experts``."""
        source = {k: v for k, v in (self.ctx.spec.experts or {}).items() if k in ("arch", "experts", "epochs")}
        return {**EXPERTS, **source, **self.p.experts}

    # ------------------------------------------------------------------ one shadow run
    def _student(self, mat: Materialized, seed: int, epochs: int | None = None) -> tuple[torch.nn.Module, str]:
        src = self.ctx.src
        seed_everything(seed)
        model = create_model(self.ctx.cfg.arch, out_dim=0, image_size=src.image_size, in_chans=src.channels,
                             mean=src.mean, std=src.std).to(self.ctx.device)
        pcfg = self.pcfg if epochs is None else dataclasses.replace(self.pcfg, epochs=epochs)
        pretrain_on_set(model, mat, pcfg, self.ctx.device, self.ctx.cfg.amp, desc=f"privacy student seed {seed}")
        return model, pretrain_loss_kind(pcfg, mat)

    def _run(self, label, row, r: int, seed: int) -> tuple[np.ndarray, list[int], torch.nn.Module, dict]:
        ctx, keep = self.ctx, self.keep[r]
        priv = private_source(ctx.src, self.audit, keep)
        k = torch.as_tensor(np.flatnonzero(keep), device=self.audit_reps.device)
        priv_reps = torch.cat([self.base_reps, self.audit_reps[k].to(self.base_reps.device)])
        extra: dict = {}
        starts: list[int] = []
        if row is not None:
            s = distill_shadow(ctx.cfg, ctx.spec, row, ctx.budget if row.budget is None else row.budget, priv,
                               ctx.teacher, seed, self._experts(), ctx.device, ctx.cfg.amp)
            starts = start_points(s, len(ctx.src), keep)
            model, kind = self._student(s.materialize(), seed)
        elif label == NOISE:
            from applications.kd.run import noise_images
            x = noise_images(ctx.budget, ctx.src, torch.Generator().manual_seed(seed)).to(ctx.device)
            model, kind = self._student(Materialized(x, targets=ctx.teacher.encode(x)), seed)
        elif label == FULL:
            epochs = self.p.full_source_epochs or ctx.cfg.full_source_epochs
            model, kind = self._student(Materialized(priv.float(), targets=priv_reps), seed, epochs)
        else:
            dcfg = next(c for c in self._dp() if dp_label(c) == label)
            src = ctx.src
            torch.manual_seed(seed)
            net = create_model(ctx.cfg.arch, out_dim=priv_reps.shape[1], image_size=src.image_size,
                               in_chans=src.channels, mean=src.mean, std=src.std)
            out = dp_regress(make_dp_compatible(net), priv.images, priv_reps, dcfg, seed=seed, device=ctx.device)
            model, kind = out.pop("model"), "mse"
            extra = {k_: v for k_, v in out.items() if k_ != "loss"}
        scores = student_scores(model, kind, self.audit.images, self.audit.labels, self.audit_reps)
        return scores, starts, model, extra

    # ------------------------------------------------------------------ the cell
    def cell(self, label, s, seed, set_seed, row) -> list[dict]:
        ctx, p = self.ctx, self.p
        if row is not None and row.at is not None and row.at != row.steps:
            raise ConfigError(f"the privacy protocol audits whole runs; row '{label}' is a snapshot (at: {row.at})",
                              fix="leave snapshot rows out of the privacy protocol (its rows:)")
        t0 = time.time()
        scores = np.zeros(self.keep.shape)
        starts = np.zeros(self.keep.shape, dtype=bool)
        utility, extra = {}, {}
        for r in range(p.shadows):
            run_seed = 100_000 + 100 * seed + r
            sc, st, model, ex = self._run(label, row, r, run_seed)
            scores[r], extra = sc, ex or extra
            starts[r, st] = True
            if p.utility:
                for name, (train, test, _) in ctx.targets.items():
                    test = self._utility_test(name, test)
                    for frac, acc in linear_probe(model, train, test, self.lcfg, run_seed, ctx.cfg.amp).items():
                        utility.setdefault((name, frac), []).append(acc)
            ctx.log(f"  [privacy] {label} set seed {set_seed}: shadow run {r + 1}/{p.shadows} "
                    f"({time.time() - t0:.0f}s)")
        dec, member = lira_scores(scores, self.keep, online=p.attack == "online",
                                  global_variance=p.global_variance, min_shadows=1)
        m = bootstrap_metrics(dec, member, n_resamples=p.bootstrap, seed=seed)
        tgt = ctx.spec.data.name
        base = {"target": tgt, "shadows": p.shadows, "audit_points": p.audit_points, "attack": p.attack}
        rows = [{**base, "metric": name, "acc": m[key][0], "lo": m[key][1], "hi": m[key][2]}
                for name, key in (("AUC", "auc"), ("TPR@1%FPR", "tpr@1%"), ("TPR@0.1%FPR", "tpr@0.1%"))]
        if starts.any():
            # the worst case: audit points the target run's set started from (or selected), read at the threshold
            # that gives 1 % FPR over all non-member decisions
            ok = ~np.isnan(dec)
            thr = np.quantile(dec[ok & ~member], 0.99)
            hit = dec[starts & ok] > thr
            from statsmodels.stats.proportion import proportion_confint
            lo, hi = proportion_confint(int(hit.sum()), int(hit.size), alpha=0.05, method="beta")
            rows.append({**base, "metric": "TPR@1%FPR (starts)", "acc": 100.0 * float(hit.mean()),
                         "lo": 100.0 * lo, "hi": 100.0 * hi, "decisions": int(hit.size)})
        if s is not None:
            src = ctx.src
            enc = ctx.teacher.encode
            x = s.materialize().images[: len(s)].to(ctx.device)
            starts0 = s.meta.get("init_indices") or s.meta.get("source_indices")
            ca = audit_copies(x, src.float(), self.held.float(), encode=enc, starts=starts0)
            rows += [{**base, "metric": "re-identified", "acc": ca.summary["reidentified"], "copies": ca.summary},
                     {**base, "metric": "singled out", "acc": ca.summary["singled_out"]},
                     {**base, "metric": "near copy 5%", "acc": ca.summary["pixel_near_copy_5"]}]
        for (name, frac), accs in utility.items():      # one row per run: the table shows mean ± std over runs
            rows += [{"target": name, "metric": "student " + metric_name("linear", frac),
                      "acc": acc, "run": r} for r, acc in enumerate(accs)]
        if "epsilon" in extra:
            rows.append({"target": tgt, "metric": "epsilon", "acc": extra["epsilon"], **extra})
        return rows

    @staticmethod
    def _value(rows: list[dict], lab: str, metric: str):
        """(text, (value, lo, hi)) of one row's metric: one set seed shows its interval; several show the mean over
        set seeds with the range of their values."""
        rs = [r for r in rows if r["set"] == lab and r["metric"] == metric]
        if not rs:
            return "–", None
        if len(rs) == 1:
            r = rs[0]
            if r.get("lo") is None:
                return f"{r['acc']:.2f}", (r["acc"], r["acc"], r["acc"])
            return f"{r['acc']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}]", (r["acc"], r["lo"], r["hi"])
        v = [r["acc"] for r in rs]
        m = float(np.mean(v))
        return f"{m:.2f} (mean of {len(v)} set seeds, {min(v):.2f}-{max(v):.2f})", (m, min(v), max(v))

    @classmethod
    def columns_for(cls, rows: list[dict]) -> dict[str, dict[str, str]]:
        """The leakage each set shows beside its utility in the other tables: TPR @ 1 % FPR with its interval and
        the near-copy share."""
        out: dict[str, dict[str, str]] = {}
        for lab in dict.fromkeys(r["set"] for r in rows):
            t, _ = cls._value(rows, lab, "TPR@1%FPR")
            c, _ = cls._value(rows, lab, "near copy 5%")
            if t != "–":
                out.setdefault(lab, {})["leak: TPR @ 1 % FPR"] = t
            if c != "–":
                out.setdefault(lab, {})["leak: near copies %"] = c
        return out

    @classmethod
    def render(cls, rows: list[dict], folder, title: str) -> list[str]:
        """The leakage table with its intervals (two-way bootstrap over runs and audit points for the attack,
        Clopper-Pearson for the starts; t over shadow runs for the students' utility) and the privacy-utility plot:
        utility against TPR @ 1 % FPR, one point per row."""
        from pathlib import Path

        from distill.leaderboard.config import _slug
        if not rows:
            return []
        labels = list(dict.fromkeys(r["set"] for r in rows))
        util_metric = next((r["metric"] for r in rows if r["metric"].startswith("student linear")), None)
        util_target = next((r["target"] for r in rows if r["metric"] == util_metric), None)
        head = ["set", "AUC %", "TPR @ 1 % FPR", "TPR @ 0.1 % FPR", "TPR @ 1 % FPR (its starts)", "re-identified %",
                "singled out %", "near copy 5 % (pixel)", f"{util_target} {util_metric} (runs)", "epsilon"]
        attacks = sorted({r["attack"] for r in rows if r.get("attack")})
        lines = [f"Leakage with intervals ({title}): LiRA ({', '.join(attacks) or '–'}) with 95 % two-way bootstrap "
                 "intervals (target runs and audit points resampled independently), Clopper-Pearson for the starts; "
                 "the students' utility as mean with a 95 % t interval over the shadow runs. Lower leakage is better; "
                 "chance is TPR = FPR, and 5 % for the near-copy share (the rule calls 5 % of held-out images copies).",
                 "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        points = []
        for lab in labels:
            cells = [cls._value(rows, lab, m) for m in ("AUC", "TPR@1%FPR", "TPR@0.1%FPR", "TPR@1%FPR (starts)",
                                                        "re-identified", "singled out", "near copy 5%")]
            u = [r["acc"] for r in rows if r["set"] == lab and r["metric"] == util_metric
                 and r["target"] == util_target]
            ut, uci = "–", None
            if u:
                m = float(np.mean(u))
                if len(u) > 1:
                    from scipy import stats
                    h = float(stats.t.ppf(0.975, len(u) - 1) * np.std(u, ddof=1) / np.sqrt(len(u)))
                    ut, uci = f"{m:.2f} ± {h:.2f} ({len(u)})", (m, m - h, m + h)
                else:
                    ut, uci = f"{m:.2f} (1)", (m, m, m)
            eps, _ = cls._value(rows, lab, "epsilon")
            dp = next((r for r in rows if r["set"] == lab and r["metric"] == "epsilon" and "delta" in r), None)
            if dp is not None:          # (eps, delta)-DP bounds any attack: TPR <= e^eps * FPR + delta
                eps += f" (bound: TPR @ 1 % FPR ≤ {min(100.0, 100 * (math.exp(dp['acc']) * 0.01 + dp['delta'])):.1f} %)"
            lines.append("| " + " | ".join([lab] + [c[0] for c in cells] + [ut, eps]) + " |")
            if uci and cells[1][1]:
                points.append((lab, uci, cells[1][1], cells[3][1]))
        lines.append("")
        if points:
            png = Path(folder) / f"privacy_utility-{_slug(title)}.png"
            _privacy_plot(points, png, util_target, util_metric)
            lines += [f"![privacy against utility]({png.name})", ""]
        return lines

    def _utility_test(self, name, test):
        """The target's test split without the audit points when it is the source dataset's test split."""
        if name != self.ctx.spec.data.name or len(test) != self.n_test:
            return test
        keep = torch.ones(len(test), dtype=torch.bool)
        keep[self.audit_index[self.audit_index < len(test)]] = False
        return test.subset(torch.nonzero(keep).flatten())


def _privacy_plot(points, path, target, metric) -> None:
    """Utility against TPR @ 1 % FPR with both intervals, one marker per row (a legend, not labels that overlap):
    left every audit point, right the worst case, the audit points a row's set started from (rows that have them)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    starts = [p for p in points if p[3] is not None]
    fig, axes = plt.subplots(1, 2 if starts else 1, figsize=(10.5 if starts else 6.4, 4.4), squeeze=False)
    markers = "osD^vP*Xhp<>"
    handles = {}
    for ax, k, what in ((axes[0][0], 2, "every audit point"),) + (
            ((axes[0][1], 3, "the audit points its set started from"),) if starts else ()):
        for i, (lab, (ux, ulo, uhi), *tprs) in enumerate(points):
            t = tprs[k - 2]
            if t is None:
                continue
            ty, tlo, thi = t
            kind = ("tab:red" if lab.startswith("DP-SGD") else "tab:gray" if lab in (NOISE, FULL)
                    else "tab:orange" if lab.startswith("random") else "tab:blue")
            h = ax.errorbar(ux, ty, xerr=[[ux - ulo], [uhi - ux]], yerr=[[ty - tlo], [thi - ty]],
                            fmt=markers[i % len(markers)], color=kind, capsize=3, label=lab)
            handles.setdefault(lab, h)
        ax.axhline(1.0, color="k", lw=0.6, ls=":")
        ax.text(ax.get_xlim()[0], 1.0, " chance (TPR = FPR)", fontsize=6, va="bottom")
        ax.set_xlabel(f"student utility: {target} {metric} (%)")
        ax.set_ylabel("membership TPR @ 1 % FPR (%)")
        ax.set_title(f"membership of {what}", fontsize=9)
    fig.legend(list(handles.values()), list(handles), loc="center left", bbox_to_anchor=(0.85, 0.5), fontsize=8,
               frameon=False)
    fig.suptitle("privacy against utility (lower right is better); blue: methods, orange: real subsets, "
                 "red: DP-SGD, gray: references", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


__all__ = ["PrivacyApp", "PrivacyBenchConfig"]
APPLICATION = PrivacyApp
