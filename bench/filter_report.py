#!/usr/bin/python3
"""bench/filter.sh's table: filter.csv -> markdown on stdout.

Per data set and case (label kind, selectivity): for each method the best
QPS among its runs with recall@10 >= TARGET (default 0.95), and the highest
recall it reached; then hnswflow's planner (auto) against the better of the
two baselines (exact brute force over the matching vectors, post-filtering).
scan (the matching vectors' int8 codes, re-ranked) is the planner's exact
path, shown on its own; it is not a baseline.
"""
import csv
import sys
from collections import defaultdict

TARGET = 0.95
METHODS = ["auto", "graph", "scan", "brute", "post", "faiss"]


def main():
    rows = list(csv.DictReader(open(sys.argv[1])))
    by = defaultdict(list)
    order = []
    for r in rows:
        key = (r["set"], r["kind"], r["sel"])
        if key not in by:
            order.append(key)
        by[key].append(r)
    print("# Filtered search (bench/filter.sh)\n")
    print("QPS at recall@10 >= %.2f (best run at or above it; '-' when no run reached it, "
          "then the best recall reached in brackets), one thread, one query at a time, "
          "ground truth exact among the matching vectors. sel = measured mean fraction of "
          "the base matching a query's filter.\n" % TARGET)
    print("| set | labels | sel % | auto | graph | scan | brute | post | faiss | auto / max(brute, post) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    worst = None
    for key in order:
        rs = by[key]
        cell = {}
        best = {}
        for m in METHODS:
            mr = [r for r in rs if r["method"] == m and r["qps"]]
            ok = [float(r["qps"]) for r in mr if float(r["recall"]) >= TARGET]
            best[m] = max(ok) if ok else None
            top = max([float(r["recall"]) for r in mr], default=0.0)
            if best[m] is not None:
                ef = [r["ef"] for r in mr if float(r["recall"]) >= TARGET and float(r["qps"]) == best[m]][0]
                cell[m] = "%.0f (ef %s)" % (best[m], ef) if m not in ("brute", "scan") else "%.0f" % best[m]
            else:
                cell[m] = "- (%.3f)" % top
        base = max([b for b in (best["brute"], best["post"]) if b is not None], default=None)
        ratio = "%.2fx" % (best["auto"] / base) if base and best["auto"] else "-"
        if base and best["auto"]:
            worst = min(worst, best["auto"] / base) if worst else best["auto"] / base
        msel = 100.0 * float(rs[0]["measured_sel"])
        print("| %s | %s | %s (%.2f) | %s | %s | %s | %s | %s | %s | %s |" % (
            key[0], key[1], key[2], msel, cell["auto"], cell["graph"], cell["scan"], cell["brute"],
            cell["post"], cell["faiss"], ratio))
    if worst:
        print("\nSmallest auto / max(brute, post) over all cases: %.2fx." % worst)
    missed = [k for k in order if not any(r["method"] == "auto" and float(r["recall"]) >= TARGET
                                          for r in by[k])]
    print("Cases where auto reached no recall@10 >= %.2f: %s." % (
        TARGET, ", ".join("%s %s %s %%" % k for k in missed) if missed else "none"))


if __name__ == "__main__":
    main()
