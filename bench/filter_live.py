#!/usr/bin/python3
"""Filtered queries through query --serve and through a live consolidate
while labels arrive with inserts (bench/filter.sh, part 4). Prints markdown.

Data: N seeded clustered vectors (DIM, 50 Gaussian clusters); vector r has
id r and the labels {r % 100, 1000 + cluster(r)} (1 % random, 2 %
correlated). Queries are separate draws with filters drawn from both kinds.

  serve  graph-build an index with the labels, query --serve it on an ipc
         endpoint, query --connect --filters; recall@10 against the exact
         answer among the matching vectors (numpy), and a count of answers
         that do not match their filter (must be 0).
  live   consolidate --serve / --updates, empty at the start: a producer
         (consolidate --connect) sends the vectors in insert frames of 500
         carrying their labels, then deletes a tenth of them; meanwhile
         query --connect --filters runs the filtered queries over and over.
         Every answer is checked against the filter (labels are a function
         of the id); at the end, with the updates acknowledged, the queries
         run once more and are scored against the exact answer among the
         live matching vectors.
"""
import argparse
import os
import subprocess
import sys
import time
import zlib

import msgpack
import numpy as np


def frames(path):
    with open(path, "rb") as f:
        return list(msgpack.Unpacker(f, raw=False))


def results(path):
    out = []
    for f in frames(path):
        if f["t"] == "result":
            w = 8 if len(f["ids"]) == 2 * len(f["dists"]) else 4
            out.append(np.frombuffer(f["ids"], "<u8" if w == 8 else "<u4").astype(np.int64))
    return out


def write_stream(path, fr):
    raw = b"".join(msgpack.packb(f, use_bin_type=True) for f in fr)
    raw += msgpack.packb({"t": "end", "count": len(fr) - 1, "checksum": zlib.crc32(raw)})
    with open(path, "wb") as f:
        f.write(raw)


def exact(x, live, lab_match, q, k=10):
    out = []
    for i, v in enumerate(q):
        m = np.flatnonzero(live & lab_match[i])
        d = ((x[m] - v) ** 2).sum(1)
        out.append(set(m[np.argsort(d, kind="stable")[:k]].tolist()))
    return out


def score(ans, gt):
    hit = sum(len(set(a.tolist()) & g) for a, g in zip(ans, gt))
    return hit / max(1, sum(len(g) for g in gt))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="bin")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--nq", type=int, default=200)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    B = a.bin
    rng = np.random.default_rng(19)
    cen = rng.normal(size=(50, a.dim)).astype(np.float32) * 3
    cl = rng.integers(0, 50, a.n)
    x = (cen[cl] + rng.normal(size=(a.n, a.dim))).astype(np.float32)
    qc = rng.integers(0, 50, a.nq)
    q = (cen[qc] + rng.normal(size=(a.nq, a.dim))).astype(np.float32)
    rid = np.arange(a.n)
    # filters: even queries a random label, odd ones another cluster's label
    filt = [int(rng.integers(0, 100)) if i % 2 == 0 else 1000 + int((qc[i] + 1 + rng.integers(0, 49)) % 50)
            for i in range(a.nq)]
    match = np.array([(rid % 100 == f) if f < 1000 else (cl == f - 1000) for f in filt])
    d = a.dir
    np.save(os.path.join(d, "base.npy"), x)
    np.save(os.path.join(d, "q.npy"), q)
    with open(os.path.join(d, "labels.txt"), "w") as f:
        f.write("".join("%d %d\n" % (r % 100, 1000 + cl[r]) for r in range(a.n)))
    with open(os.path.join(d, "filters.txt"), "w") as f:
        f.write("".join("%d\n" % v for v in filt))
    qf = os.path.join(d, "q.frames")
    subprocess.run([B + "/embed-load", "-o", qf, os.path.join(d, "q.npy")], check=True)

    def bad(ans):
        return sum(int((~match[i][a_]).sum()) for i, a_ in enumerate(ans))

    print("\n## Filtered queries through query --serve and a live consolidate (bench/filter_live.py)\n")
    print("%d x %d clustered vectors, %d queries, filters: 1 %% random labels and 2 %% "
          "correlated ones (another cluster's); recall@10 against the exact answer among the "
          "matching (live) vectors.\n" % (a.n, a.dim, a.nq))
    # --- serve
    idx = os.path.join(d, "index.idx")
    load = subprocess.Popen([B + "/embed-load", "--labels", os.path.join(d, "labels.txt"),
                             os.path.join(d, "base.npy")], stdout=subprocess.PIPE)
    subprocess.run([B + "/graph-build", "--threads", "2", "-o", idx], stdin=load.stdout, check=True,
                   stderr=subprocess.DEVNULL)
    load.wait()
    ep = "ipc://" + os.path.abspath(os.path.join(d, "serve.sock"))
    srv = subprocess.Popen([B + "/query", "--index", idx, "--serve", ep], stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    rf = os.path.join(d, "serve.frames")
    with open(qf, "rb") as fi, open(rf, "wb") as fo:
        r = subprocess.run([B + "/query", "--connect", ep, "--filters", os.path.join(d, "filters.txt"),
                            "--ef", "64"], stdin=fi, stdout=fo, stderr=subprocess.PIPE, text=True)
    srv.terminate()
    srv.wait()
    if r.returncode:
        sys.exit("filter_live: serve client failed: " + r.stderr)
    ans = results(rf)
    gt = exact(x, np.ones(a.n, bool), match, q)
    print("| run | queries | recall@10 | answers not matching their filter | note |")
    print("|---|---|---|---|---|")
    print("| query --serve | %d | %.4f | %d | %s |" % (len(ans), score(ans, gt), bad(ans),
                                                     r.stderr.strip().splitlines()[-1]))
    # --- live consolidate
    sq = "ipc://" + os.path.abspath(os.path.join(d, "live-q.sock"))
    su = "ipc://" + os.path.abspath(os.path.join(d, "live-u.sock"))
    live_idx = os.path.join(d, "live.idx")
    con = subprocess.Popen([B + "/consolidate", "--serve", sq, "--updates", su, "-o", live_idx],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    ups = [{"t": "header", "schema": "hnswflow.updates", "v": 1, "dim": a.dim, "count": 0}]
    for s in range(0, a.n, 500):
        e = min(a.n, s + 500)
        lab = np.stack([np.full(e - s, 2), rid[s:e] % 100, 1000 + cl[s:e]], 1).astype("<u4")
        ups.append({"t": "insert", "n": e - s, "ids": rid[s:e].astype("<u8").tobytes(),
                    "data": x[s:e].tobytes(), "labels": lab.tobytes()})
    dele = rng.choice(a.n, a.n // 10, replace=False)
    for s in range(0, len(dele), 500):
        part = np.sort(dele[s:s + 500])
        ups.append({"t": "delete", "n": len(part), "ids": part.astype("<u8").tobytes()})
    ups[0]["count"] = len(ups) - 1
    uf = os.path.join(d, "updates.frames")
    write_stream(uf, ups)
    with open(uf, "rb") as fi:
        prod = subprocess.Popen([B + "/consolidate", "--connect", su], stdin=fi,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rounds, during_bad, during_q, empty = 0, 0, 0, 0
    while prod.poll() is None:
        lf = os.path.join(d, "during.frames")
        with open(qf, "rb") as fi, open(lf, "wb") as fo:
            rr = subprocess.run([B + "/query", "--connect", sq, "--filters",
                                 os.path.join(d, "filters.txt"), "--ef", "64"], stdin=fi, stdout=fo,
                                stderr=subprocess.PIPE, text=True)
        if rr.returncode:  # before the first insert the index has no dimension yet
            time.sleep(0.05)
            continue
        got = results(lf)
        during_bad += bad(got)
        during_q += len(got)
        empty += sum(1 for g in got if len(g) == 0)
        rounds += 1
    if prod.wait():
        sys.exit("filter_live: producer failed")
    lf = os.path.join(d, "after.frames")
    with open(qf, "rb") as fi, open(lf, "wb") as fo:
        rr = subprocess.run([B + "/query", "--connect", sq, "--filters", os.path.join(d, "filters.txt"),
                             "--ef", "64"], stdin=fi, stdout=fo, stderr=subprocess.PIPE, text=True)
    con.terminate()
    _, cerr = con.communicate()
    if rr.returncode:
        sys.exit("filter_live: live client failed: " + rr.stderr)
    after = results(lf)
    live = np.ones(a.n, bool)
    live[dele] = False
    gt2 = exact(x, live, match, q)
    deleted_seen = sum(int(np.isin(g, dele).sum()) for g in after)
    print("| live consolidate, during %d inserts (labels in the frames) and %d deletes | %d (%d rounds) "
          "| - | %d | %d answers empty while the index filled |" % (
              a.n, len(dele), during_q, rounds, during_bad, empty))
    print("| live consolidate, after the updates | %d | %.4f | %d | %d deleted ids answered; %s |" % (
        len(after), score(after, gt2), bad(after), deleted_seen, rr.stderr.strip().splitlines()[-1]))
    print("\nconsolidate said: " + " ".join(cerr.strip().splitlines()[-1:]))


if __name__ == "__main__":
    main()
