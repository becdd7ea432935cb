#!/usr/bin/python3
"""Summarise bench result CSVs into one Markdown page.

usage: report.py [--out summary.md] [--bandwidth bandwidth.json] results/<set>.csv ...

Per data set: QPS at recall@10 = 0.90 / 0.95 / 0.99 for every engine, the
ratios hnswflow/hnswlib, /faiss and /usearch at each target, mean distance
computations at 0.95, build time and memory. Machine and date come from the
CSVs (the first row of the first file).

With --bandwidth (the JSON bench/bandwidth.c prints), a bandwidth table per
data set: every engine's estimated bytes read per query at recall 0.95
(distance computations x bytes read per distance + hops x bytes read per hop
+ a fixed per-query read, the sizes from the CSV's vec_read_bytes,
hop_read_bytes and query_read_bytes columns, see bench/README.md) and the
QPS there as a fraction of what the probe's one-core bandwidth allows:
QPS x bytes/query / probe bytes/s, against random 64-byte line reads and
against a sequential stream. An estimate from counted work and layout
sizes, not a hardware counter.

Interpolation: each engine's points are taken in ef order. For a target
recall r the first pair of neighbouring points with recall(a) < r <= recall(b)
gives QPS (and distance computations) by linear interpolation in recall. If
the smallest ef already reaches r, the curve is not observed below r: its QPS
is reported with a ">=" (a lower bound; the engine would be at least that
fast at r), and ratios built on it carry the mark too. If no ef reaches r,
"n/a".
"""
import argparse
import csv
import json
import os
import sys

TARGETS = (0.90, 0.95, 0.99)
ENGINES = ("hnswflow", "hnswflow-speed", "hnswflow-int8", "hnswflow-pq8", "hnswlib", "faiss", "usearch")


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"report: {path}: no rows")
    by = {}
    for r in rows:
        try:
            p = {
                "ef": int(r["ef"]),
                "recall": float(r["recall"]),
                "qps": float(r["qps"]),
                "mean_dist": float(r["mean_dist"]) if r["mean_dist"] else float("nan"),
                "build_s": float(r["build_s"]),
                "mem_bytes": float(r["mem_bytes"]) if r["mem_bytes"] else float("nan"),
                "mem_vs_f32": float(r["mem_vs_f32"]) if r.get("mem_vs_f32") else None,
                "pipe_s": float(r["pipe_s"]) if r.get("pipe_s") else None,
                # bandwidth-estimate inputs (absent in CSVs from before them)
                "hops": float(r["hops"]) if r.get("hops") else float("nan"),
                "vec_b": float(r["vec_read_bytes"]) if r.get("vec_read_bytes") else None,
                "hop_b": float(r["hop_read_bytes"]) if r.get("hop_read_bytes") else None,
                "query_b": float(r["query_read_bytes"]) if r.get("query_read_bytes") else 0.0,
            }
        except (KeyError, ValueError) as e:
            sys.exit(f"report: {path}: bad row {r}: {e}")
        by.setdefault(r["engine"], []).append(p)
    for pts in by.values():
        pts.sort(key=lambda p: p["ef"])
    return rows[0].get("machine", "?"), rows[0].get("date", "?"), by


def at_recall(pts, target, key):
    """(value, exact) at recall target; exact False means a lower bound.
    None when no point reaches the target."""
    if not pts:
        return None
    if pts[0]["recall"] >= target:
        return pts[0][key], False
    for a, b in zip(pts, pts[1:]):
        if a["recall"] < target <= b["recall"]:
            w = (target - a["recall"]) / (b["recall"] - a["recall"])
            return a[key] + w * (b[key] - a[key]), True
    return None


def known(v):
    """at_recall's answer, or None where the value is missing (NaN)."""
    return None if v is None or v[0] != v[0] else v


def fmt_qps(v):
    if v is None:
        return "n/a"
    val, exact = v
    return ("" if exact else ">=") + f"{val:,.0f}"


def fmt_ratio(num, den):
    if num is None or den is None or den[0] <= 0:
        return "n/a"
    # a lower-bound numerator or denominator makes the ratio approximate
    mark = "" if (num[1] and den[1]) else "~"
    return f"{mark}{num[0] / den[0]:.2f}x"


def table(name, by):
    out = [f"## {name}", ""]
    npts = {e: len(p) for e, p in by.items()}
    efs = sorted({p["ef"] for pts in by.values() for p in pts})
    out.append(f"ef sweep: {', '.join(map(str, efs))}; points per engine: "
               + ", ".join(f"{e} {n}" for e, n in npts.items()))
    out.append("")
    hdr = ["engine"] + [f"QPS @{t:.2f}" for t in TARGETS] + ["dist comps @0.95", "max recall",
                                                             "build s", "whole pipe s", "memory MiB",
                                                             "traversal memory / f32 vectors"]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    engines = [e for e in ENGINES if e in by] + sorted(e for e in by if e not in ENGINES)
    for e in engines:
        pts = by[e]
        dist = known(at_recall(pts, 0.95, "mean_dist"))
        dist_s = "n/a" if dist is None else ("" if dist[1] else "<=") + f"{dist[0]:,.0f}"
        mem = max(p["mem_bytes"] for p in pts)
        cells = [e] + [fmt_qps(at_recall(pts, t, "qps")) for t in TARGETS] + [
            dist_s,
            f"{max(p['recall'] for p in pts):.4f}",
            f"{pts[0]['build_s']:.1f}",
            f"{pts[0]['pipe_s']:.1f}" if pts[0]["pipe_s"] is not None else "",
            f"{mem / 2**20:,.1f}",
            f"{pts[0]['mem_vs_f32']:.3f}x" if pts[0]["mem_vs_f32"] is not None else "",
        ]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    for ours_name in ("hnswflow", "hnswflow-speed", "hnswflow-int8", "hnswflow-pq8"):
        if ours_name not in by:
            continue
        out.append(f"| ratio ({ours_name}) | " + " | ".join(f"@{t:.2f}" for t in TARGETS)
                   + " | build time | build, our whole pipe | memory |")
        out.append("|---|" + "---|" * (len(TARGETS) + 3))
        ours = by[ours_name]
        for peer in ("hnswlib", "faiss", "usearch"):
            if peer not in by:
                continue
            theirs = by[peer]
            cells = [f"{ours_name}/{peer} QPS"]
            for t in TARGETS:
                cells.append(fmt_ratio(at_recall(ours, t, "qps"), at_recall(theirs, t, "qps")))
            b0, b1 = ours[0]["build_s"], theirs[0]["build_s"]
            cells.append(f"{b0 / b1:.2f}x" if b1 > 0 else "n/a")
            p0 = ours[0]["pipe_s"]
            cells.append(f"{p0 / b1:.2f}x" if p0 is not None and b1 > 0 else "n/a")
            m0 = max(p["mem_bytes"] for p in ours)
            m1 = max(p["mem_bytes"] for p in theirs)
            cells.append(f"{m0 / m1:.2f}x" if m1 > 0 else "n/a")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return out


def bytes_per_query(pts, target):
    """(bytes, lower_bound) at recall target from the interpolated distance
    computations and hops, or None where the engine counts neither."""
    p = pts[0]
    dist = known(at_recall(pts, target, "mean_dist"))
    hops = known(at_recall(pts, target, "hops"))
    if p["vec_b"] is None:
        return None
    b = p["query_b"]
    if p["vec_b"] > 0:
        if dist is None:
            return None
        b += dist[0] * p["vec_b"]
    lower = False
    if p["hop_b"] is None or hops is None:
        lower = True  # links not counted: a lower bound
    else:
        b += hops[0] * p["hop_b"]
    return b, lower


def bandwidth_table(name, by, bw):
    """The bandwidth table of one data set at recall 0.95."""
    seq, rnd = bw["seq_read_bytes_s"], bw["rand64_bytes_s"]
    out = [f"Bandwidth at recall@10 0.95 ({name}; the probe and the estimate: top of the page):", "",
           "| engine | QPS | dist comps | hops | bytes / query (est.) | read rate at that QPS "
           "| of random 64 B reads | of sequential read |",
           "|---|---|---|---|---|---|---|---|"]
    engines = [e for e in ENGINES if e in by] + sorted(e for e in by if e not in ENGINES)
    for e in engines:
        pts = by[e]
        qps = known(at_recall(pts, 0.95, "qps"))
        dist = known(at_recall(pts, 0.95, "mean_dist"))
        hops = known(at_recall(pts, 0.95, "hops"))
        bq = bytes_per_query(pts, 0.95)
        cells = [e, fmt_qps(qps),
                 "n/a" if dist is None else f"{dist[0]:,.0f}",
                 "n/a" if hops is None else f"{hops[0]:,.1f}"]
        if qps is None or bq is None:
            why = "n/a (no counts)" if bq is None else "n/a"
            cells += [why if bq is None else f"{bq[0] / 1024:,.1f} KiB", "n/a", "n/a", "n/a"]
        else:
            # a lower-bound QPS or byte count makes the rate a lower bound
            mark = ">=" if (bq[1] or not qps[1]) else ""
            rate = qps[0] * bq[0]
            cells += [f"{'>=' if bq[1] else ''}{bq[0] / 1024:,.1f} KiB", f"{mark}{rate / 1e9:.2f} GB/s",
                      f"{mark}{rate / rnd:.2f}", f"{mark}{rate / seq:.2f}"]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    return out


def bandwidth_head(bw):
    return ["## The limit: one core's memory bandwidth", "",
            f"Probe (`bin/bandwidth`, {bw['buffer_mib']} MiB buffer, transparent huge pages "
            f"'{bw['thp']}', best of {bw['passes']} passes, one core): sequential read "
            f"{bw['seq_read_bytes_s'] / 1e9:.2f} GB/s; random 64-byte reads "
            f"{bw['rand64_lines_s'] / 1e6:.1f} M lines/s = {bw['rand64_bytes_s'] / 1e9:.2f} GB/s "
            f"(1 KiB blocks: {bw['rand1024_bytes_s'] / 1e9:.2f} GB/s); dependent pointer chase "
            f"{bw['chase_ns']:.0f} ns a load.", "",
            "Bytes per query are an estimate from counted work and layout sizes, not a hardware "
            "counter: distance computations x bytes read per distance (a whole f32 vector, or a "
            "code) + hops x bytes read per expanded node (its level-0 list; hnswflow-speed: its "
            "row) + re-ranked vectors (hnswflow-int8/-pq8: `--rerank` x f32 vector). "
            "hnswflow's bounded kernels may stop inside a vector and int8's re-rank reads no "
            "vector on lossless codes, so theirs are upper bounds; faiss counts no hops (links "
            "left out: `>=`); the usearch JS API counts nothing (n/a). The fraction is "
            "QPS x bytes/query over the probe's rate: 1.0 would mean the search does nothing but "
            "wait for memory at that rate (random line reads are the pattern of a graph walk; "
            "above 1 the reads hit caches or stream).", ""]


def threads_line(path):
    """Multi-threaded query throughput against one thread, from the
    <set>-threads.csv run.sh writes beside <set>.csv (absent: nothing)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = {int(r["threads"]): r for r in csv.DictReader(f)}
    if 1 not in rows or len(rows) < 2:
        return []
    t = max(rows)
    q1, qt = float(rows[1]["qps"]), float(rows[t]["qps"])
    return [f"query --threads {t} on one batch of the queries (f32, ef {rows[t]['ef']}): "
            f"{qt:,.0f} QPS against {q1:,.0f} with one thread = {qt / q1:.2f}x", ""]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/summary.md")
    ap.add_argument("--bandwidth", help="bench/bandwidth.c's JSON: adds the bandwidth tables")
    ap.add_argument("csvs", nargs="+")
    a = ap.parse_args()
    bw = None
    if a.bandwidth:
        with open(a.bandwidth) as f:
            bw = json.load(f)
    sets = [(os.path.splitext(os.path.basename(p))[0],) + load(p) for p in a.csvs]
    machine, date = sets[0][1], sets[0][2]
    lines = [
        "# hnswflow bench summary",
        "",
        f"- machine: {machine}",
        f"- date: {date}",
        "- k = 10, M = 16, ef_construction = 200; queries one at a time on one thread;",
        "  QPS interpolated linearly in recall between neighbouring ef points;",
        "  `>=`: the smallest ef already exceeds that recall (lower bound), `~`: ratio built on one;",
        "  ratios > 1 mean hnswflow is faster (QPS) or larger/slower (build time, memory).",
        "- QPS: median of the run's timed passes per ef (REPEAT, see bench/README.md).",
        "- build time: wall seconds of index construction from vectors in memory with the",
        "  run's build threads (hnswflow: what graph-build reports, dimension ordering and",
        "  codes included; peers: the add calls). 'whole pipe': our embed-load | graph-build",
        "  wall time, reading the fvecs file and writing the index file included.",
        "- memory: hnswflow: index memory graph-build reports (f32: vectors + links + node arrays; hnswflow-int8/-pq8: traversal memory, everything a search on codes reads (codes, packed level-0 lists and their offsets, upper levels and their offsets, tombstones), the f32 vectors kept for re-ranking not counted, also shown as a fraction of the f32 vectors); peers: RSS growth across the build (see bench/README.md).",
        "",
    ]
    if bw is not None:
        lines += bandwidth_head(bw)
    for (name, _m, _d, by), path in zip(sets, a.csvs):
        lines += table(name, by)
        lines += threads_line(os.path.splitext(path)[0] + "-threads.csv")
        if bw is not None:
            lines += bandwidth_table(name, by, bw)
    text = "\n".join(lines) + "\n"
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, a.out)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
