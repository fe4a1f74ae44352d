"""The run: every (protocol, set, seed) cell evaluated once and written as a JSON file, so a killed run
continues where it stopped."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..distilled import DistilledSet
from ..engine import resolve_device
from ..errors import UserError
from ..evaluate import NO_PRETRAIN, evaluate_sets, load_targets
from ..methods import get_method
from ..ssl import Teacher
from .config import (EQUAL_BYTES, FULL_SOURCE, LeaderboardConfig, ProtocolSpec, RowSpec, _digest, _slug,
                     all_baselines, row_label)
from .apps import AppContext, get_application, is_application, settings_digest
from .render import write_leaderboard
from .stats import is_reference
from .keys import eval_config, eval_identity, eval_key, expected_cells, group_slug, unit_seed
from .sets import (OutOfTime, _classifier_info, _experts_info, _left, _source, make_classifier, make_experts, make_set,
                   source_key)

def _say(msg: str) -> None:
    print(msg, flush=True)


def run_leaderboard(cfg: LeaderboardConfig, log=_say, time_limit: float | None = None) -> dict | None:
    """Make the sets, evaluate every cell (reusing finished ones), write the report; return it.

    time_limit: seconds; past it, the set in progress stops at a checkpoint and no new cell starts, and
    None is returned (run again to continue: finished sets and cells are reused)."""
    t0 = time.time()
    deadline = None if time_limit is None else t0 + time_limit
    try:
        return _run_leaderboard(cfg, log, t0, deadline)
    except OutOfTime:
        log(f"time limit of {time_limit:g} s reached; run the same command again to continue")
        return None


def _file_id(path: str | None) -> str | None:
    """A file's content digest (the relabel classifier: a cell depends on what it holds, not where it lies)."""
    if not path or not Path(path).exists():
        return path
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _run_leaderboard(cfg: LeaderboardConfig, log, t0: float, deadline: float | None) -> dict:
    from ..engine.provenance import git_commit
    from .results import CELL_NAME, check_unit_machine, finished_unit, load_results, result_index, \
        results_root, stamp, write_group_info, write_set_info
    device = resolve_device(cfg.device)
    cfg.check_scale(device.type)
    out = Path(cfg.output)
    root = results_root(cfg)
    run = {"stamp": stamp(device, cfg.amp), "commit": git_commit(), "root": root, "used": {}}
    cells: list[dict] = []
    info: dict[str, dict] = {}
    # an application that fills its own memory from each row's method (continual replay) needs none of the
    # rows' sets: a run of such protocols alone makes no sets, experts or classifiers
    needs_sets = any(not is_application(p.name) or get_application(p.name).uses_sets for p in cfg.protocols)
    evals = [p for p in cfg.protocols if not is_application(p.name)]
    for spec in cfg.sources:
        src = _source(spec, device)
        teacher = Teacher.load(spec.teacher).to(device) if spec.teacher else None
        tinfo = (f"teacher {teacher.describe()}, k-NN top-1 {teacher.meta.get('knn_top1', '?')} %" if teacher
                 else "no teacher")
        skey = source_key(spec, teacher)
        log(f"source {spec.data.name}/{spec.data.split}: {len(src)} images; {tinfo}")
        targets = load_targets(cfg.targets, src.image_size, src.channels, device)
        made = Path(cfg.sets_dir) if cfg.sets_dir else out     # sets, experts and classifiers live here
        methods = [get_method(r.method) for r in cfg.all_rows()]
        relabel = any(eval_config(cfg, p, 0).relabel.enabled for p in evals)
        if needs_sets:      # experts and a classifier only where a row (or a relabel protocol) reads them
            experts = (make_experts(cfg, spec, src, teacher, made / "experts" / skey, log)
                       if any(m.uses_experts for m in methods) else None)
            classifier = (make_classifier(cfg, spec, src, teacher, made / "classifiers" / f"{skey}.safetensors", log)
                          if relabel or any(m.uses_classifier for m in methods) else None)
        else:
            experts = classifier = None
        for budget in spec.budgets:
            folder = made / "sets" / f"{skey}-n{budget}"
            gslug = group_slug(spec.data.name, budget)
            group = {"source": spec.data.name, "budget": budget, "teacher": tinfo, "source_images": len(src),
                     "experts": _experts_info(experts), "classifier": _classifier_info(classifier),
                     "tests": {name: [len(test), tcfg.test_per_class] for name, (_, test, tcfg) in targets.items()}}
            write_group_info(root, gslug, group)

            def evaluate(batch: dict):
                for p in evals:
                    for (label, dseed), (path, s, extra) in batch.items():
                        if dseed is not None and dseed not in cfg.row_seeds(label, p.title):
                            continue
                        if dseed is None and p.rows and label not in p.rows:
                            continue
                        for seed in cfg.seeds:
                            _left(deadline)
                            cells.extend(_cell(cfg, p, label, path, s, extra, seed, group, targets, log,
                                               classifier, set_seed=dseed, run=run))
            # a unit (set seed, or the references) whose cells are all in the results folder is taken from there:
            # nothing is made or evaluated again, on this machine or another (the campaign's committed results stand)
            reusable = bool(evals) and len(evals) == len(cfg.protocols) and not cfg.equal_bytes
            index = result_index(cfg, root) if reusable else {}
            expected = expected_cells(cfg) if reusable else {}

            def done_before(dseed) -> bool:
                found = finished_unit(cfg, index, expected, gslug, dseed) if reusable else None
                if not found:
                    return False
                for f, d in found:
                    cells.extend(d["rows"])
                    run["used"].setdefault(f.parent.name, set()).add(CELL_NAME.match(f.name)["key"])
                    group.setdefault("cell_seconds", []).append(d.get("seconds") or 0.0)
                log(f"  {'the references' if dseed is None else f'set seed {dseed}'}: all {len(found)} cells are in "
                    f"{root}; nothing made or evaluated")
                return True
            # (label, distillation seed or None for rows that do not depend on it) -> (path, set, extra)
            sets: dict[tuple[str, int | None], tuple[str | None, DistilledSet | None, dict]] = {}
            refs: dict[tuple[str, int | None], tuple[str | None, DistilledSet | None, dict]] = {}
            refs_done = done_before(None)
            if (cfg.full_source or cfg.full_source_converged_epochs) and not refs_done:
                row = RowSpec(method="random", label=FULL_SOURCE)
                path, s = make_set(cfg, spec, src, teacher, row, len(src), made / "sets" / f"{skey}-full", log,
                                   deadline=deadline)
                if cfg.full_source:
                    refs[(f"{FULL_SOURCE} ({len(src)})", None)] = (path, s, {"method": "random", "full": True,
                                                                             "epochs": cfg.full_source_epochs})
                if cfg.full_source_converged_epochs:
                    label = f"{FULL_SOURCE} ({len(src)}, converged: {cfg.full_source_converged_epochs} epochs)"
                    refs[(label, None)] = (path, s, {"method": "random", "full": True,
                                                     "epochs": cfg.full_source_converged_epochs})
                for (label, _), (_, s, _) in refs.items():
                    write_set_info(root, gslug, label, None, s, run["stamp"])
            if cfg.no_pretrain and not refs_done:
                refs[(NO_PRETRAIN, None)] = (None, None, {"method": None})
            evaluate(refs)
            # one set seed at a time, its sets made and its cells evaluated before the next: a campaign stopped
            # anywhere leaves whole set seeds behind it (and at most one unfinished), each from one machine
            for dseed in cfg.all_seeds():
                if done_before(dseed):
                    continue
                batch = {}
                if any(dseed in cfg.row_seeds(row_label(r)) for r in cfg.all_rows()):
                    # an application preset checks its own protocols' cells (the presets share a results folder)
                    check_unit_machine(root, gslug, dseed, run["stamp"],
                                       None if evals else {p.title for p in cfg.protocols})
                for row in cfg.all_rows():
                    label = row_label(row)
                    if dseed not in cfg.row_seeds(label):
                        continue
                    if not needs_sets:      # every protocol makes its own memory from the row's method
                        batch[(label, dseed)] = (None, None, {"method": row.method})
                        continue
                    path, s = make_set(cfg, spec, src, teacher, row, row.budget or budget, folder, log, experts,
                                       classifier, deadline, seed=dseed)
                    if path is not None:
                        batch[(label, dseed)] = (path, s, {"method": row.method})
                        write_set_info(root, gslug, label, dseed, s, run["stamp"], src)
                sets.update(batch)
                evaluate(batch)
            if cfg.equal_bytes and needs_sets:
                eq = _equal_bytes_sets(cfg, spec, src, teacher, budget, folder, log, deadline, sets)
                for (label, dseed), (_, s, _) in eq.items():
                    write_set_info(root, gslug, label, dseed, s, run["stamp"])
                sets.update(eq)
                evaluate(eq)
            sets.update(refs)
            for p in cfg.protocols:
                if is_application(p.name):
                    ctx = AppContext(cfg=cfg, spec=spec, src=src, teacher=teacher, targets=targets, device=device,
                                     folder=out / "apps" / p.name / skey, budget=budget, log=log)
                    cells.extend(_app_cells(cfg, p, ctx, sets, group, root, log, deadline, run))
            write_group_info(root, gslug, group)
            info[f"{spec.data.name} N={budget}"] = {**group, "rows": _row_info(sets)}
    # the report is rendered from the result files this run used, as `--render-only` renders it from a clone
    rows, info2, _ = load_results(cfg, wanted=run["used"])
    for name, gi in info.items():
        info2.setdefault(name, gi)
    return write_leaderboard(cfg, rows, info2, time.time() - t0)


def _equal_bytes_sets(cfg, spec, src, teacher, budget, folder, log, deadline, sets) -> dict:
    """Each baseline again, per distillation seed, at the bytes of the largest method set: a random set's
    storage grows linearly with its size, so its size is the target bytes over its bytes per example."""
    bases = set(cfg.baselines)
    target = max((s.storage_bytes() for (label, _), (_, s, _) in sets.items() if label not in bases and s is not None),
                 default=0)
    out = {}
    for base in cfg.baselines:
        row = next(r for r in cfg.all_rows() if row_label(r) == base)
        for dseed in cfg.all_seeds():
            _, s, _ = sets.get((base, dseed), (None, None, None))
            if s is None or target <= s.storage_bytes():
                continue
            n = min(len(src), int(target // (s.storage_bytes() / len(s))))
            if n <= len(s):             # the largest set holds no more than a baseline example's worth more
                continue
            eq = RowSpec(method=row.method, label=base + EQUAL_BYTES, steps=row.steps, params=dict(row.params),
                         class_conditional=row.class_conditional)
            path, es = make_set(cfg, spec, src, teacher, eq, n, folder, log, deadline=deadline, seed=dseed)
            out[(base + EQUAL_BYTES, dseed)] = (path, es, {"method": row.method, "equal_bytes": True})
    return out


def _row_info(sets: dict) -> dict:
    """Per row label: distillation seconds and storage (the mean over its distillation seeds)."""
    by: dict[str, list] = {}
    for (label, _), (_, s, _) in sets.items():
        by.setdefault(label, []).append(s)
    out = {}
    for label, ss in by.items():
        ss = [s for s in ss if s is not None]
        secs = [s.meta.get("distill_seconds") for s in ss if s.meta.get("distill_seconds") is not None]
        out[label] = {"seconds": sum(secs) / len(secs) if secs else None,
                      "image_equivalents": round(ss[0].image_equivalents(), 1) if ss else None,
                      "examples": len(ss[0]) if ss else None, "sets": len(ss)}
    return out


def _app_cells(cfg, p: ProtocolSpec, ctx: AppContext, sets: dict, group: dict, out: Path, log,
               deadline, run: dict) -> list[dict]:
    """An application over every set of equal bytes (the rows; not the full source or no pre-training) and its
    own references, each evaluation seed: one cell file each, reused when it exists."""
    app = get_application(p.name)(ctx, p.overrides)
    group.setdefault("apps", {})[p.title] = app.prepare()
    if not app.uses_sets:
        group.setdefault("own_memory", []).append(p.title)
    rows_by_label = {row_label(r): r for r in cfg.all_rows()}
    bases = all_baselines(cfg)
    todo = [(label, dseed, path, s, label in bases) for (label, dseed), (path, s, extra) in sets.items()
            if not is_reference(label) and (app.uses_sets or not extra.get("equal_bytes"))
            and (not p.rows or label in p.rows) and (dseed is None or dseed in cfg.row_seeds(label, p.title))]
    # references are drawn per distillation seed too, so that they pair with the rows unit by unit
    todo += [(label, dseed, None, None, real) for label, real in app.references().items() for dseed in cfg.all_seeds()]
    base_key = app.key()
    settings = settings_digest(p)
    out_rows = []
    for label, dseed, path, s, real in todo:
        # a set the application does not use is not part of its cells' identity
        set_id = None if s is None or not app.uses_sets else _digest([s.meta.get("config"), s.meta.get("created"),
                                                                       s.storage_bytes()])
        for seed in cfg.seeds:
            _left(deadline)
            rkey = app.row_key(rows_by_label.get(label))
            key = _digest([base_key, set_id, label, group["source"], group["budget"], seed]
                          + ([rkey] if rkey is not None else []))
            dpart = "" if dseed is None else f"-d{dseed}"
            file = (out / "cells" / p.title /
                    f"{_slug(group['source'])}-n{group['budget']}-{_slug(label)}{dpart}-s{seed}-{key}.json")
            run["used"].setdefault(p.title, set()).add(key)
            if file.exists():
                done = json.loads(file.read_text())
                group.setdefault("cell_seconds", []).append(done.get("seconds") or 0.0)
                out_rows.extend(done["rows"])
                continue
            t = time.time()
            try:
                res = app.cell(label, s, unit_seed(seed, dseed), dseed, rows_by_label.get(label))
            except UserError as e:      # say which cell: the message alone names a method's internals
                raise type(e)(f"protocol `{p.title}`, row `{label}`, set seed {dseed}, seed {seed}: {e.what}",
                              fix=e.fix) from None
            rows = [{**r, "set": label, "seed": seed, "source": group["source"], "budget": group["budget"],
                     "protocol": p.title, "method": getattr(rows_by_label.get(label), "method", None),
                     "set_seed": dseed, "application": True, "real": bool(real),
                     "lower_better": r.get("metric") in app.lower_better,
                     "info": r.get("metric") in app.info_metrics, "percent": r.get("percent", True)} for r in res]
            _write_cell(file, rows, time.time() - t, path, run, key, settings)
            group.setdefault("cell_seconds", []).append(round(time.time() - t, 1))
            vals = ", ".join(f"{r['target']} {r['metric']} {r['acc']:.3g}" for r in rows) or "not run by this application"
            sseed = "" if dseed is None else f"set seed {dseed}, "
            log(f"  [{p.title}] {label} {sseed}seed {seed}: {vals} ({time.time() - t:.0f}s)")
            out_rows.extend(rows)
    return out_rows


def _write_cell(file: Path, rows, seconds, path, run: dict, ekey: str, settings: str | None = None) -> None:
    from .results import write_cell
    write_cell(file, rows, seconds, path, run["stamp"], ekey, run["commit"], settings)


def _cell(cfg, p: ProtocolSpec, label, path, s, extra, seed, group, targets, log,
          classifier: str | None, set_seed: int | None, run: dict) -> list[dict]:
    ekey = eval_key(cfg, p, label, group["source"], group["budget"], seed, set_seed, extra)
    out = run["root"]          # cells go to the results folder (the output folder unless `results:` is set)
    ecfg = eval_config(cfg, p, unit_seed(seed, set_seed))
    if ecfg.relabel.enabled:
        if s is None:                # nothing to train a student on
            return []
        if not ecfg.relabel.classifier:
            ecfg.relabel.classifier = classifier
    if extra.get("full") and extra.get("epochs"):
        ecfg.pretrain.epochs = extra["epochs"]
    set_id = None if s is None else _digest([s.meta.get("config"), s.meta.get("created"), s.storage_bytes()])
    # the file's key: the evaluation without local paths (so another output folder or data root reuses the cell),
    # the relabel classifier by content, the set's identity
    key = _digest([eval_identity(ecfg, local=True), _file_id(ecfg.relabel.classifier if ecfg.relabel.enabled else None),
                   set_id, label, group["source"], group["budget"]])
    dpart = "" if set_seed is None else f"-d{set_seed}"
    file = out / "cells" / p.title / f"{_slug(group['source'])}-n{group['budget']}-{_slug(label)}{dpart}-s{seed}-{key}.json"
    run["used"].setdefault(p.title, set()).add(key)
    if file.exists():
        done = json.loads(file.read_text())
        group.setdefault("cell_seconds", []).append(done.get("seconds") or 0.0)
        return done["rows"]
    t = time.time()
    rep = evaluate_sets({label: s}, ecfg, targets=targets, write=False, verbose=False)
    info_keys = ("teacher", "experts", "classifier", "tests", "apps", "own_memory", "cell_seconds")
    rows = [{**r, **{k: v for k, v in group.items() if k not in info_keys},
             "protocol": p.title, "seed": seed, "run_seed": unit_seed(seed, set_seed),
             "method": extra.get("method"), "set_seed": set_seed} for r in rep.rows]
    _write_cell(file, rows, time.time() - t, path, run, ekey)
    group.setdefault("cell_seconds", []).append(round(time.time() - t, 1))
    accs = ", ".join(f"{r['target']} {r['metric']} {r['acc']:.2f}" for r in rows)
    sseed = "" if set_seed is None else f"set seed {set_seed}, "
    log(f"  [{p.title}] {label} {sseed}seed {seed}: {accs} ({time.time() - t:.0f}s)")
    return rows


