#!/usr/bin/python3
"""Leave-one-data-set-out choice of EWC's lambda from bench-drift's sweep.

Reads bench/results/drift-sweep.csv (rows: kind nav|router, lambda, set,
model, retained A, share B; written by bench/drift.py runs at several EWC /
REWC values) and, for ewc+replay, scores each lambda on each set by
min(retained A / 0.95, share B / 0.90) (1 = both targets of issue 16 met;
share B / 0.90 alone where model A had no task-A gain to retain).
For every held-out set the lambda with the best mean score on the other
sets is chosen and its score on the held-out set reported. Writes
bench/results/drift-sweep.md.
"""
import collections
import csv
import os
import sys

RES = os.environ.get("RES", "bench/results")


def num(x):
    try:
        return float(x)
    except ValueError:
        return float("nan")


def main():
    path = f"{RES}/drift-sweep.csv"
    if not os.path.exists(path):
        sys.exit(f"drift_sweep: no {path}: run bench/drift.py at several EWC/REWC first")
    score = collections.defaultdict(dict)  # (kind) -> {(lambda, set): score}
    raw = collections.defaultdict(dict)
    for kind, lam, st, model, ret, share in csv.reader(open(path)):
        if model != "ewc+replay":
            continue
        r, s = num(ret), num(share)
        # no task-A gain to retain (model A was no better than classic on A):
        # the B share alone
        sc = min(r / 0.95, s / 0.90) if r == r else s / 0.90 if s == s else float("nan")
        score[kind][(lam, st)] = sc
        raw[kind][(lam, st)] = (r, s)
    out = ["# EWC's lambda, chosen leave-one-data-set-out (ewc+replay)\n",
           "score = min(retained A / 0.95, share B / 0.90); >= 1 meets both targets (share B / 0.90 "
           "alone where model A had no task-A gain to retain: retained A is nan).\n"]
    for kind in sorted(score):
        lams = sorted({k[0] for k in score[kind]}, key=float)
        sets = sorted({k[1] for k in score[kind]})
        out.append(f"\n## {kind}\n\n| lambda | " + " | ".join(f"{s} (retained A, share B, score)" for s in sets) + " |")
        out.append("|---" * (len(sets) + 1) + "|")
        for lam in lams:
            cells = []
            for st in sets:
                r, s = raw[kind].get((lam, st), (float("nan"), float("nan")))
                cells.append("%.3f, %.3f, %.3f" % (r, s, score[kind].get((lam, st), float("nan"))))
            out.append(f"| {lam} | " + " | ".join(cells) + " |")
        out.append("")
        for held in sets:
            others = [s for s in sets if s != held]

            def mean_other(lam):
                v = [score[kind].get((lam, s), float("nan")) for s in others]
                v = [x for x in v if x == x]
                return sum(v) / len(v) if v else float("-inf")

            best = max(lams, key=mean_other)
            out.append(f"- held out {held}: lambda {best} (best on {', '.join(others)}), "
                       f"score there {score[kind].get((best, held), float('nan')):.3f}")
    open(f"{RES}/drift-sweep.md", "w").write("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
