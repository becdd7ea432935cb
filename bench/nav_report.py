#!/usr/bin/env python3
"""bench/nav_report.py RAW RESDIR MACHINE - tables of the nav bench (bench/nav.sh).

At recall@10 0.95 and 0.99 every curve (method over its parameter grid) is
interpolated (log-linear in distance computations, hops and 1/QPS between
the two measured points around the recall) and divided by the classic
curve's figures at the same recall. --recall R rows give the measured mean
recall and QPS against the classic path at the same recall.
"""
import csv
import math
import sys
from collections import defaultdict

raw, res, machine = sys.argv[1:4]
rows = list(csv.DictReader(open(raw)))
by = defaultdict(list)
for r in rows:
    for key in ("recall", "qps", "ndist", "hops"):
        r[key] = float(r[key])
    by[(r["set"], r["method"])].append(r)
sets = list(dict.fromkeys(r["set"] for r in rows))


def at(curve, target, key):
    """value of key interpolated at recall target; None outside the curve"""
    pts = sorted(curve, key=lambda r: r["recall"])
    for a, b in zip(pts, pts[1:]):
        if a["recall"] <= target <= b["recall"] and b["recall"] > a["recall"]:
            t = (target - a["recall"]) / (b["recall"] - a["recall"])
            va, vb = a[key], b[key]
            if va > 0 and vb > 0:
                return math.exp(math.log(va) + t * (math.log(vb) - math.log(va)))
            return va + t * (vb - va)
    for p in pts:  # a curve that starts above the target: its first point is an upper bound
        if abs(p["recall"] - target) < 1e-9:
            return p[key]
    return None


curves = ["adsampling", "adaptive", "cloning", "cloning+ppo", "stop", "cloning+stop",
          "cloning+ppo+stop", "route", "cloning+route"]
out = ["# nav-train bench (issue 13)", "",
       f"Machine: {machine}. Test queries never used in training or validation. "
       "Single-thread queries; distance computations include the policy's own work "
       "(projections and tests as fractions of a distance, ADSampling's rotation as dim). "
       "Ratios: method / classic at the same recall@10 (interpolated); '-' where the "
       "curve does not reach that recall. route / cloning+route: query --route / --route --nav "
       "with layer-route's router trained on the same graph. Rows added by a partial run "
       "(bench/nav.sh PARTS=...) were measured at another time than the classic rows: their "
       "QPS ratios compare different machine states.", ""]
csvrows = []
for target in (0.95, 0.99):
    out += [f"## At recall@10 {target}", "",
            "| set | method | dist ratio | hops ratio | QPS ratio | classic dist | classic QPS |",
            "|---|---|---|---|---|---|---|"]
    for s in sets:
        cl = by.get((s, "classic"), [])
        cd, ch, cq = (at(cl, target, k) for k in ("ndist", "hops", "qps"))
        for m in curves:
            cv = by.get((s, m))
            if not cv or cd is None:
                continue
            d, h, q = (at(cv, target, k) for k in ("ndist", "hops", "qps"))
            f = lambda v, c: "-" if v is None or not c else f"{v / c:.3f}"
            out.append(f"| {s} | {m} | {f(d, cd)} | {f(h, ch)} | {f(q, cq)} | {cd:.0f} | {cq:.0f} |")
            csvrows.append([s, target, m, f(d, cd), f(h, ch), f(q, cq)])
    out.append("")
out += ["## --recall R: asked against measured (test queries)", "",
        "| set | variant | R | recall | QPS | classic QPS at that recall | ratio |",
        "|---|---|---|---|---|---|---|"]
for s in sets:
    cl = by.get((s, "classic"), [])
    for m in ("stop", "cloning+stop", "cloning+ppo+stop"):
        for r in by.get((s, m), []):
            cq = at(cl, r["recall"], "qps")
            ratio = f"{r['qps'] / cq:.3f}" if cq else "-"
            cqs = f"{cq:.0f}" if cq else "-"
            out.append(f"| {s} | {m} | {r['param']} | {r['recall']:.4f} | {r['qps']:.0f} | {cqs} | {ratio} |")
out += ["", "## Few-shot: distance computations at recall@10 0.95 (with --nav, over the ef grid)", "",
        "| set | none (init as is) | adapted 5 | scratch 5 | adapted 50 | scratch 50 | full training |",
        "|---|---|---|---|---|---|---|"]
for s in sets:
    vals = []
    for m in ("fewshot-none", "fewshot-5", "scratch-5", "fewshot-50", "scratch-50", "cloning"):
        v = at(by.get((s, m), []), 0.95, "ndist")
        vals.append("-" if v is None else f"{v:.0f}")
    if any(v != "-" for v in vals[:5]):
        out.append(f"| {s} | " + " | ".join(vals) + " |")
out += ["", "## Training time (s)", ""]
for s in sets:
    ts = [f"{r['method'][6:]} {r['train_s']}" for r in rows
          if r["set"] == s and r["method"].startswith("train-")]
    out.append(f"- {s}: " + ", ".join(ts))
open(f"{res}/nav.md", "w").write("\n".join(out) + "\n")
with open(f"{res}/nav.csv", "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(["set", "recall", "method", "dist_ratio", "hops_ratio", "qps_ratio"])
    w.writerows(csvrows)
print("\n".join(out))
