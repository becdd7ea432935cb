#!/usr/bin/python3
"""Helpers for bench/edges.sh (the edge-score ablation).

  edges_report.py --count INDEX
      print the number of level-0 edges of an index stream
  edges_report.py --raw RAW.csv --md OUT.md --csv OUT.csv [--keep F]
      turn the raw rows (set,variant,edges,ef,recall,qps,ndist,train_s,total_s)
      into the Markdown table and the CSV (with machine and date); QPS and
      distance computations at recall 0.95 are interpolated linearly in recall
      between the two sweep points around it.
Outputs are written to temporary names and renamed.
"""
import argparse
import csv
import datetime
import os
import platform
import sys

import msgpack
import numpy as np

TARGET = 0.95


def count_edges(path):
    tot = 0
    with open(path, "rb") as f:
        for fr in msgpack.Unpacker(f, raw=False, max_buffer_size=1 << 30):
            if fr.get("t") == "links" and fr.get("level") == 0:
                tot += int(np.frombuffer(fr["deg"], "<u4").sum())
            elif fr.get("t") == "end":
                break
    return tot


def machine():
    cpu = platform.processor() or "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}, {cpu}, {os.cpu_count()} cores"


def at_recall(points, key):
    """points: list of dicts with recall and key, any order; value at TARGET."""
    pts = sorted(points, key=lambda p: p["recall"])
    for a, b in zip(pts, pts[1:]):
        if a["recall"] <= TARGET <= b["recall"] and b["recall"] > a["recall"]:
            t = (TARGET - a["recall"]) / (b["recall"] - a["recall"])
            return a[key] + t * (b[key] - a[key])
    if pts and pts[0]["recall"] >= TARGET:
        return None  # every ef is above the target: no bracket
    return None


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def report(raw, md, out_csv, keep, repeat):
    rows = list(csv.DictReader(open(raw)))
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    mach = machine()
    sets = []
    for r in rows:
        if r["set"] not in sets:
            sets.append(r["set"])
    lines = [
        "# edge-score ablation",
        "",
        f"Machine: {mach}. Date: {when}. One training run per graph; single-thread queries, k = 10;",
        f"QPS = median of {repeat} query runs per graph and ef, the graphs interleaved.",
        "",
        "classic = graph-build default (M0 32); candidates = the same build with --M0 48;",
        "pruned graphs keep at most 47 links a node (what fits the classic 192-byte link block),",
        "so every graph's nodes take the same memory;",
        f"learned / plain-mlp / random / usage = the candidate graph pruned by edge-score to {keep:g}",
        "x the classic graph's level-0 edges, all through the same pruning policy (per-node",
        "floors: best 8 in-edges, best 30% of out-edges; reachability repair) and the same",
        "training searches; only the edge score differs: learned = graph-layer model logit +",
        "log1p(route count), plain-mlp = the same without the graph layer (--no-graph),",
        "random = random, usage = route count of the training searches (least-used dropped).",
        "The floors were chosen on validation queries (bench/edges_val.py), not these.",
        "Test queries are never used in training. QPS on this shared 2-core machine is noisy",
        "(other jobs run beside it); mean distance computations are the stable cost measure.",
        "",
    ]
    csv_rows = []
    for s in sets:
        rs = [r for r in rows if r["set"] == s]
        edges = {r["variant"]: int(r["edges"]) for r in rs if r["edges"]}
        times = {r["variant"]: (r["train_s"], r["total_s"]) for r in rs if r["total_s"]}
        variants = [v for v in ("classic", "learned", "plain-mlp", "random", "usage")
                    if v in edges]
        pts = {v: [] for v in variants}
        for r in rs:
            if r["ef"]:
                pts[r["variant"]].append({"ef": int(r["ef"]), "recall": float(r["recall"]),
                                          "qps": float(r["qps"]), "ndist": float(r["ndist"])})
        efs = sorted({p["ef"] for v in pts for p in pts[v]})
        ec = edges.get("classic", 0)
        lines += [f"## {s}", ""]
        if "candidates-M0-48" in edges:
            lines.append(f"Candidate graph (M0 48): {edges['candidates-M0-48']} level-0 edges.")
        for v, (tr, tt) in times.items():
            lines.append(f"edge-score {v}: training {tr or '0'} s, total {tt} s.")
        lines.append("")
        head = ["graph", "level-0 edges", "vs classic"] + [f"R@10 ef={e}" for e in efs] + \
            ["QPS @R0.95", "dist @R0.95"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for v in variants:
            by = {p["ef"]: p for p in pts[v]}
            q95 = at_recall(pts[v], "qps")
            d95 = at_recall(pts[v], "ndist")
            cells = [v, str(edges[v]), f"{100.0 * edges[v] / ec - 100:+.1f}%" if ec else ""]
            for e in efs:
                cells.append(f"{by[e]['recall']:.4f}" if e in by else "")
            cells.append(f"{q95:.0f}" if q95 is not None else "n/a")
            cells.append(f"{d95:.0f}" if d95 is not None else "n/a")
            lines.append("| " + " | ".join(cells) + " |")
            for p in sorted(pts[v], key=lambda p: p["ef"]):
                csv_rows.append([mach, when, s, v, edges[v], p["ef"], p["recall"], p["qps"],
                                 p["ndist"]])
        lines += ["", "Recall@10 minus the classic graph's, per ef:", ""]
        head = ["graph"] + [f"ef={e}" for e in efs]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        cby = {p["ef"]: p for p in pts.get("classic", [])}
        for v in variants:
            if v == "classic":
                continue
            by = {p["ef"]: p for p in pts[v]}
            cells = [v] + [f"{by[e]['recall'] - cby[e]['recall']:+.4f}"
                           if e in by and e in cby else "" for e in efs]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Mean distance computations / QPS per ef:", ""]
        head = ["graph"] + [f"ef={e}" for e in efs]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for v in variants:
            by = {p["ef"]: p for p in pts[v]}
            cells = [v] + [f"{by[e]['ndist']:.0f} / {by[e]['qps']:.0f}" if e in by else ""
                           for e in efs]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    write_atomic(md, "\n".join(lines) + "\n")
    tmp = out_csv + ".tmp"
    with open(tmp, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["machine", "date", "set", "graph", "level0_edges", "ef", "recall_at_10",
                     "qps", "mean_distance_computations"])
        wr.writerows(csv_rows)
    os.replace(tmp, out_csv)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count")
    ap.add_argument("--raw")
    ap.add_argument("--md")
    ap.add_argument("--csv")
    ap.add_argument("--keep", type=float, default=0.85)
    ap.add_argument("--repeat", type=int, default=1, help="query runs behind each QPS median")
    a = ap.parse_args()
    if a.count:
        print(count_edges(a.count))
    elif a.raw and a.md and a.csv:
        report(a.raw, a.md, a.csv, a.keep, a.repeat)
    else:
        ap.error("--count INDEX, or --raw/--md/--csv")


if __name__ == "__main__":
    sys.exit(main())
