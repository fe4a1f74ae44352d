"""What a cell is: the cells a leaderboard config asks for, the evaluation config and seed each runs with, and the
digest (``ekey``) that ties a result file to the config that made it. Read by the run (``cells``) and by
``--render-only`` (``results``); imports neither."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from ..config import load_config, to_dict
from ..evaluate import NO_PRETRAIN
from ..evaluate.config import EvalConfig, protocol_preset
from .apps import is_application
from .config import EQUAL_BYTES, FULL_SOURCE, LeaderboardConfig, ProtocolSpec, _digest, _slug, row_label


def group_slug(source: str, budget: int) -> str:
    """A source and budget's name in result files (``cifar10-n100``)."""
    return f"{_slug(source)}-n{budget}"


#: resolved evaluation configs (and their plain dicts) by what they are made from: a campaign asks for one per cell,
#: hundreds of times with only the seed changing, and resolving through OmegaConf costs tens of milliseconds each
_RESOLVED: dict[str, tuple[EvalConfig, dict]] = {}


def _resolved(cfg: LeaderboardConfig, p: ProtocolSpec) -> tuple[EvalConfig, dict]:
    """The protocol's evaluation config at seed 0, and ``to_dict`` of it (both shared: copy before changing)."""
    extra = {"protocol": p.name, "arch": cfg.arch, "seeds": [0], "device": cfg.device, "amp": cfg.amp,
             "targets": [to_dict(t) for t in cfg.targets], "no_pretrain_baseline": False,
             "output": str(Path(cfg.output) / "unused")}
    preset = protocol_preset(p.name)
    key = json.dumps([extra, p.overrides, preset], sort_keys=True, default=str)
    hit = _RESOLVED.get(key)
    if hit is None:
        ecfg = load_config(EvalConfig, None, extra={**extra, **p.overrides}, preset=preset)
        hit = _RESOLVED[key] = (ecfg, to_dict(ecfg))
    return hit


def eval_config(cfg: LeaderboardConfig, p: ProtocolSpec, seed: int) -> EvalConfig:
    """The evaluation config of protocol ``p`` run with ``seed`` (a fresh object: the caller may change it)."""
    ecfg = copy.deepcopy(_resolved(cfg, p)[0])
    if "seeds" not in p.overrides:         # a protocol may fix its own seeds (the override wins, as in load_config)
        ecfg.seeds = [seed]
    return ecfg


def unit_seed(seed: int, set_seed: int | None) -> int:
    """The seed an evaluation runs with: evaluation seed ``seed`` of the set made with distillation seed
    ``set_seed`` (``seed + 1000 * set_seed``). Each paired unit gets its own model init and label draw; with one
    seed for every set, a deterministic selection's units would be one evaluation repeated, and its evaluation
    noise would never reach the test."""
    return seed + 1000 * (set_seed or 0)


def expected_cells(cfg: LeaderboardConfig) -> dict[tuple, set | None]:
    """Every evaluation-protocol cell the config asks for: (protocol, group, row slug, set seed or None, seed) ->
    the evaluation-config keys (``ekey``) a result file of that cell may carry. What ``--render-only`` reads."""
    out: dict[tuple, set | None] = {}
    for p in cfg.protocols:
        if is_application(p.name):
            continue
        for spec in cfg.sources:
            for budget in spec.budgets:
                group = group_slug(spec.data.name, budget)
                for row in cfg.all_rows():
                    label = row_label(row)
                    for dseed in cfg.row_seeds(label, p.title):
                        for seed in cfg.seeds:
                            out[(p.title, group, _slug(label), dseed, seed)] = {
                                eval_key(cfg, p, label, spec.data.name, budget, seed, dseed, {})}
                if cfg.equal_bytes:
                    for base in cfg.baselines:
                        for dseed in cfg.row_seeds(base + EQUAL_BYTES, p.title):
                            for seed in cfg.seeds:
                                out[(p.title, group, _slug(base + EQUAL_BYTES), dseed, seed)] = None
                refs = []
                if p.rows:                # a protocol restricted to some rows evaluates no reference row
                    continue
                if cfg.full_source:
                    refs.append((FULL_SOURCE, cfg.full_source_epochs))
                if cfg.full_source_converged_epochs:
                    refs.append((FULL_SOURCE, cfg.full_source_converged_epochs))
                for seed in cfg.seeds:
                    for _, epochs in refs:
                        # the label holds the source's size, which only the run knows: any full-source file counts
                        out.setdefault((p.title, group, "*full", None, seed), set()).add(
                            eval_key(cfg, p, None, spec.data.name, budget, seed, None, {"full": True, "epochs": epochs}))
                    if cfg.no_pretrain and not eval_config(cfg, p, seed).relabel.enabled:   # relabel: no student
                        out[(p.title, group, _slug(NO_PRETRAIN), None, seed)] = {
                            eval_key(cfg, p, NO_PRETRAIN, spec.data.name, budget, seed, None, {})}
    return out


def eval_identity(ecfg: EvalConfig, local: bool = False) -> dict:
    """What an evaluation computes, without where things are on this machine: no report folder, no data roots, no
    relabel classifier path (its content is keyed separately). ``local=False`` also drops device, amp and
    parallelism, which change the machine's numbers but not the experiment (the stamp records them)."""
    return _identity(to_dict(ecfg), local)


def _identity(full: dict, local: bool) -> dict:
    d = {k: v for k, v in full.items() if k != "output"}
    d["targets"] = [{k: v for k, v in t.items() if k != "root"} for t in d.get("targets", [])]
    if isinstance(d.get("relabel"), dict):
        d["relabel"] = {k: v for k, v in d["relabel"].items() if k != "classifier"}
    if not local:
        for k in ("device", "amp", "parallel"):
            d.pop(k, None)
    return d


def eval_key(cfg, p: ProtocolSpec, label, source: str, budget: int, seed: int, set_seed, extra: dict) -> str:
    """The digest of what a cell's result depends on that the config alone fixes: the evaluation (without
    machine-local keys: :func:`eval_identity`), the row's spec (method, steps, params, budget, snapshot), source and
    budget. Recorded in every cell file as ``ekey``; ``--render-only`` recomputes it from the config and keeps only
    the files that match, so a result made under another evaluation or row setting is never rendered."""
    full = copy.deepcopy(_resolved(cfg, p)[1])        # the config has no interpolations: its dict takes the seed
    if "seeds" not in p.overrides:
        full["seeds"] = [unit_seed(seed, set_seed)]
    if extra.get("full") and extra.get("epochs"):
        full["pretrain"]["epochs"] = extra["epochs"]
    row = next((r for r in cfg.all_rows() if row_label(r) == label), None)
    spec = None if row is None else to_dict(row)
    return _digest([_identity(full, local=False), None if extra.get("full") else label, spec, source, budget])
