"""Make (or finish) chosen rows' sets of a leaderboard config without evaluating anything: the exact
files `ssdd leaderboard` makes (same configs, same folders), so a long distillation can run beside
other work and the leaderboard then reuses it.

    python scripts/leaderboard_make_rows.py configs/leaderboard/cpu.yaml mkdt high_loss
"""
import sys
from pathlib import Path

from distill.config import load_config
from distill.engine import resolve_device
from distill.leaderboard import LeaderboardConfig, _source, make_experts, make_set, row_label, source_key
from distill.ssl import Teacher


def main(path: str, labels: list[str]) -> None:
    cfg = load_config(LeaderboardConfig, path)
    device = resolve_device(cfg.device)
    out = Path(cfg.output)
    for spec in cfg.sources:
        src = _source(spec, device)
        teacher = Teacher.load(spec.teacher).to(device) if spec.teacher else None
        skey = source_key(spec, teacher)
        experts = make_experts(cfg, spec, src, teacher, out / "experts" / skey, print)
        for budget in spec.budgets:
            for row in cfg.all_rows():
                if row_label(row) in labels:
                    make_set(cfg, spec, src, teacher, row, budget, out / "sets" / f"{skey}-n{budget}", print, experts)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
