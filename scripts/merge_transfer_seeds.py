#!/usr/bin/env python
"""Merge `ssdd transfer` results.csv files of the same sets run with different seeds (one device call per
seed group) into one table per architecture, with each set's paired t-test against the baselines.

    python scripts/merge_transfer_seeds.py docs/bench/boost_xarch/*.csv --baselines random random_labelled

Prints markdown (mean ± sample std over all seeds found; pairing by seed order within the files, in the
order given). Used for the cross-architecture rows of docs/BENCHMARKS.md section 15.
"""
import argparse
import csv
import statistics as st
from collections import defaultdict

from scipy import stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--baselines", nargs="*", default=["random", "random_labelled"])
    ap.add_argument("--alpha", type=float, default=0.05)
    args = ap.parse_args()
    vals: dict = defaultdict(list)
    archs, sets, metrics = [], [], []
    for f in args.files:
        for r in csv.DictReader(open(f)):
            vals[(r["arch"], r["metric"], r["set"])].extend(float(v) for v in r["values"].split())
            for seen, x in ((archs, r["arch"]), (sets, r["set"]), (metrics, r["metric"])):
                if x not in seen:
                    seen.append(x)
    cols = [(a, m) for a in archs for m in metrics]
    print("| set | " + " | ".join(f"{a} {m}" for a, m in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for s in sets:
        cells = []
        for a, m in cols:
            v = vals.get((a, m, s), [])
            cells.append(f"{st.mean(v):.2f} ± {st.stdev(v):.2f}" if len(v) > 1 else (f"{v[0]:.2f}" if v else "–"))
        print(f"| {s} | " + " | ".join(cells) + " |")
    paired = [(a, m) for a, m in cols if all(len(vals[(a, m, s)]) > 1 for s in sets if (a, m, s) in vals)]
    print("\n| set | vs | " + " | ".join(f"{a} {m}" for a, m in paired) + " |")
    print("|---|---|" + "---|" * len(paired))
    for s in sets:
        if s in args.baselines or s == "no pre-training":
            continue
        for b in args.baselines:
            cells = []
            for a, m in paired:
                x, y = vals[(a, m, s)], vals[(a, m, b)]
                d = [p - q for p, q in zip(x, y)]
                p = stats.ttest_rel(x, y).pvalue
                word = ("**beats**" if st.mean(d) > 0 else "**loses**") if p < args.alpha else "within noise"
                cells.append(f"{st.mean(d):+.2f} (p={p:.3f}, {word})")
            print(f"| {s} | {b} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
