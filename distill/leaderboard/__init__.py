"""``ssdd leaderboard``: every method against every baseline, under each paper's protocol, same seeds.

For each source x budget, every row (a registered method plus params; by default one row per
registered method) is distilled once into a set file, or its file is reused when it exists and was
made by the same config. Each set, plus the "full source" and "no pre-training" references, is then
evaluated under each protocol on each target for each seed. Every (protocol, set, seed) cell is a
JSON file written as soon as it is done, so a killed run continues where it stopped. The report
holds one table per protocol (mean ± std), each method's gain over each baseline with a paired
t-test over seeds, distillation time and storage per row, and a bar chart.

YAML (configs/leaderboard/*.yaml)::

    sources:
      - data: {name: cifar10, root: data}
        teacher: runs/cifar10/teacher_cpu.safetensors
        train_per_class: 500            # a class-balanced subset of the source (CPU presets)
        budgets: [100]
    rows: []                            # empty: one row per registered method
        experts: {arch: convnet-32-64-128-in, experts: 4}   # MKDT's trajectories (made once, reused)
    method_params: {krr_st: {pool_arch: convnet-32-64-128-bn}}
    method_steps: {krr_st: 300}
    variants:                           # extra rows: a method plus params under its own label
      - {label: "krr_st (legacy pool)", method: krr_st, params: {legacy_pool_reset: true}}
    baselines: [random, random_labelled]
    protocols: [{name: krrst}, {name: mkdt},    # evaluation protocols, and applications (see apps.py):
                {name: kd, overrides: {students: [resnet18]}},   # nas, continual, kd, transfer
                {name: mkdt, label: mkdt lr 0.1, overrides: {pretrain: {lr: 0.1}}}]   # one protocol twice
    only: []                            # run only these protocols (by name or label); empty: all
    targets: [{name: cifar10, root: data}]
    seeds: [0, 1, 2]
    distill_seeds: [0, 1, 2]            # every set made once per seed; the paired unit of a test
    sets_dir: ""                        # another leaderboard's output: reuse its sets, experts, classifiers

A run whose protocols all fill their own memory from each row's method (``Application.uses_sets = False``:
continual replay) makes no sets, experts or classifiers, and such an application's cells do not depend on them.

Modules: :mod:`.config` (the YAML schema), :mod:`.sets` (each row's set, experts, classifier),
:mod:`.cells` (the run, one JSON file per cell), :mod:`.stats` (paired gains, verdicts), :mod:`.render`
(tables, summary, plot, docs blocks), :mod:`.apps` (application protocols: an ``Application`` per
``applications/<name>/bench.py``, found through the ``ssdd.applications`` entry points).
"""
from .cells import eval_config, run_leaderboard
from .config import FULL_SOURCE, LeaderboardConfig, ProtocolSpec, RowSpec, SourceSpec, row_label
from .render import summary_markdown, update_docs, write_leaderboard
from .sets import make_experts, make_set, source_key  # noqa: F401
from .stats import gains, paired_test, verdict

__all__ = ["FULL_SOURCE", "LeaderboardConfig", "ProtocolSpec", "RowSpec", "SourceSpec", "eval_config", "gains",
           "make_experts", "make_set", "paired_test", "row_label", "run_leaderboard", "source_key", "summary_markdown", "verdict",
           "update_docs", "write_leaderboard"]
