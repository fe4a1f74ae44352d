"""The sets of a leaderboard: each row's set per source and budget (made once, reused by config), MKDT's
experts and SC-DD's classifier per source."""
from __future__ import annotations

import time
from pathlib import Path

from ..config import load_config, to_dict
from ..data import load_source
from ..distilled import DistilledSet
from ..engine.safefile import read_header
from ..engine.configdiff import config_differences
from ..engine.stage import checkpoint_path
from ..methods import DistillConfig, get_method, method_config, run_distillation
from ..errors import UserError
from .config import LeaderboardConfig, RowSpec, SourceSpec, _digest, _slug, row_label, run_identity

def _source(spec: SourceSpec, device):
    return load_source(spec.data, spec.train_per_class, device)


def source_key(spec: SourceSpec, teacher) -> str:
    """The folder name of a source's sets: its data, subset and teacher. The experts and the classifier are
    not part of it, so adding them to a source keeps every finished set and cell."""
    ident = {k: v for k, v in to_dict(spec).items() if k not in ("experts", "classifier", "squeeze")}
    return f"{spec.data.name}-{_digest([ident, teacher.id if teacher else None])}"


def make_experts(cfg: LeaderboardConfig, spec: SourceSpec, src, teacher, folder: Path, log) -> str | None:
    """The source's expert trajectories (``spec.experts``), made or finished when missing; their folder."""
    if not spec.experts:
        return None
    from ..methods.mkdt.experts import ExpertsConfig, train_experts
    keys = {"device": cfg.device, "amp": cfg.amp, "output": str(folder), **spec.experts}
    ecfg = load_config(ExpertsConfig, None, extra={"data": to_dict(spec.data), "teacher": spec.teacher,
                                                   "train_per_class": spec.train_per_class, **keys})
    res = train_experts(ecfg, source=src, teacher=teacher, quiet=False)
    log(f"  experts: {len(res.skipped)} reused, {len(res.trained)} trained -> {ecfg.output}")
    return ecfg.output


def make_classifier(cfg: LeaderboardConfig, spec: SourceSpec, src, teacher, path: Path, log) -> str | None:
    """The source's SC-DD classifier: ``spec.classifier``, or squeezed from the teacher (``spec.squeeze``)
    when its file is missing or was made by another config; None when the source has neither."""
    if spec.classifier:
        return spec.classifier
    if not spec.squeeze:
        return None
    from ..methods.scdd.squeeze import SqueezeConfig, run_squeeze
    scfg = load_config(SqueezeConfig, None, extra={"data": to_dict(spec.data), "teacher": spec.teacher,
                                                   "train_per_class": spec.train_per_class, "device": cfg.device,
                                                   "amp": cfg.amp, "output": str(path), **spec.squeeze})
    if path.exists():
        header, _ = read_header(path)
        if isinstance(header.get("config"), dict) and not config_differences(header["config"], to_dict(scfg)):
            log(f"  reuse {path}")
            return str(path)
    log(f"  squeeze a linear head on the teacher -> {path}")
    res = run_squeeze(scfg, resume=checkpoint_path(path).exists(), source=src, teacher=teacher, overwrite=True)
    log(f"  classifier: train top-1 {res.record.meta['train_acc']:.2f} %")
    return str(path)


class OutOfTime(Exception):
    """A leaderboard run reached its time limit; what it finished is kept (run it again to continue)."""


def _left(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.time()
    if left <= 0:
        raise OutOfTime()
    return left


def make_set(cfg: LeaderboardConfig, spec: SourceSpec, src, teacher, row: RowSpec, budget: int,
             folder: Path, log, experts: str | None = None,
             classifier: str | None = None, deadline: float | None = None,
             seed: int = 0) -> tuple[str | None, DistilledSet | None]:
    """The row's set at ``budget`` made with distillation seed ``seed``: reused when its file was made by the
    same config, else (re)made. (None, None) for a row that needs expert trajectories the source does not have."""
    out = folder / (f"{_slug(row_label(row))}.safetensors" if seed == 0 else f"{_slug(row_label(row))}-d{seed}.safetensors")
    save_every = 0
    if row.at is not None:        # one run per (method, params, steps, budget) and set seed; this row reads its snapshot
        name = f"{_slug(row.method)}-{row.steps}steps-{run_identity(row, budget)[:8]}"
        out = folder / (f"{name}.safetensors" if seed == 0 else f"{name}-d{seed}.safetensors")
        save_every = cfg.snapshot_every(row)
    params = dict(row.params)
    if get_method(row.method).uses_experts and not params.get("experts"):
        if experts is None:
            log(f"  skip {row_label(row)}: it needs expert trajectories; give this source `experts: {{experts: 4}}` "
                "(or params.experts)")
            return None, None
        params["experts"] = experts
    if get_method(row.method).uses_classifier and not params.get("classifier") and classifier:
        params["classifier"] = classifier
    dcfg = DistillConfig(data=spec.data, teacher=spec.teacher or None, method=row.method, budget=budget,
                         class_conditional=row.class_conditional, steps=row.steps, seed=seed, device=cfg.device,
                         amp=cfg.amp, output=str(out), checkpoint_every=max(1, (row.steps or 0) // 10),
                         params=params, save_every=save_every)
    snap = out if row.at is None or row.at == row.steps else out.with_name(f"{out.stem}.step{row.at}.safetensors")
    method_config(get_method(row.method), dcfg.params)
    if out.exists():
        header, _ = read_header(out)
        # the file's own path may differ (a leaderboard folder moved, or a set made on another machine)
        if isinstance(header.get("config"), dict) and snap.exists() and not config_differences(
                header["config"], to_dict(dcfg), mutable=("output", "save_every")):
            log(f"  reuse {snap}")
            return str(snap), DistilledSet.load(snap)
    resume = checkpoint_path(out).exists()
    log(f"  make {row_label(row)} (N = {budget}){' (resuming)' if resume else ''} -> {out}")
    res = run_distillation(dcfg, resume=resume, teacher=teacher, source=src, overwrite=True,
                           time_limit=_left(deadline))
    if res.set is None:
        raise OutOfTime()
    if snap != out:
        if not snap.exists():
            raise UserError(f"{out.name} ran without a snapshot at step {row.at} ({snap.name} is missing), e.g. it was "
                            "made or resumed with other `at:` rows", fix=f"delete {out} to make the run again")
        return str(snap), DistilledSet.load(snap)
    return str(out), res.set


def _experts_info(folder: str | None) -> str:
    if folder is None:
        return ""
    from ..methods.mkdt.experts import expert_files
    from ..engine.safefile import read_header
    heads = [read_header(f)[0] for f in expert_files(folder)]
    h = heads[0]
    secs = sum(x.get("train_seconds") or 0 for x in heads)
    return (f"MKDT's {len(heads)} experts: {h.get('arch')}, {h.get('epochs')} epochs each, {secs:.0f} s to train "
            "(not in the rows' distill time)")


def _classifier_info(path: str | None) -> str:
    if path is None:
        return ""
    h, _ = read_header(path)
    test = f", test top-1 {h['test_acc']} % on {h.get('test_split')}" if "test_acc" in h else ""
    return (f"SC-DD classifier: linear head on the frozen {h.get('arch')} ({h.get('epochs', '?')} epochs), "
            f"train top-1 {h.get('train_acc', '?')} %{test}")


