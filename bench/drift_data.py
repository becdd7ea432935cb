#!/usr/bin/python3
"""The drift workload of `make bench-drift`: a base set and two tasks of queries.

Task A's queries come from the first half of the classes (fashion-mnist:
classes 0-4 of the test set) or clusters (clustered: clusters 0-49 of a
100-cluster mixture drawn as bench/gen_clustered.py draws it), task B's from
the second half. Per task: train.npy (NTRAIN queries: nav-train --train, its
last quarter validates) and test.npy (NTEST others, never trained on). The
base set holds every class or cluster (the index after the runbook has
inserted them all). Deterministic for a seed.
"""
import argparse
import gzip
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_clustered import draw  # noqa: E402


def idx(path):
    with gzip.open(path, "rb") as f:
        b = f.read()
    nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i : 8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def clustered(rng, n, dim, c):
    centres = rng.uniform(0.0, 60.0, size=(c, dim)).astype(np.float32)
    centres *= (rng.random((c, dim)) > 0.3).astype(np.float32)
    scale = np.exp(rng.uniform(np.log(4.0), np.log(30.0), size=(c, 1)))
    scales = (scale * rng.uniform(0.3, 1.7, size=(c, dim))).astype(np.float32)
    weights = rng.dirichlet(np.full(c, 2.0))
    base = draw(rng, n, centres, scales, weights)
    # queries with their cluster: one draw per cluster, in proportion
    per = 6000 // c + 1
    q, lab = [], []
    for j in range(c):
        w = np.zeros(c)
        w[j] = 1.0
        q.append(draw(rng, per, centres, scales, w))
        lab.append(np.full(per, j))
    return base, np.concatenate(q), np.concatenate(lab), c // 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set", choices=["fashion-mnist", "clustered"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--fm", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--n", type=int, default=50000, help="clustered: base vectors")
    ap.add_argument("--ntrain", type=int, default=2000)
    ap.add_argument("--ntest", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    if a.set == "fashion-mnist":
        base = idx(f"{a.fm}/train-images-idx3-ubyte.gz").reshape(60000, -1).astype(np.float32)
        q = idx(f"{a.fm}/t10k-images-idx3-ubyte.gz").reshape(10000, -1).astype(np.float32)
        lab = idx(f"{a.fm}/t10k-labels-idx1-ubyte.gz").astype(np.int64)
        half = 5
    else:
        base, q, lab, half = clustered(rng, a.n, 128, 100)
    os.makedirs(a.out, exist_ok=True)
    np.save(os.path.join(a.out, "base.npy"), base)
    for name, sel in (("A", lab < half), ("B", lab >= half)):
        rows = np.flatnonzero(sel)
        rng.shuffle(rows)
        need = a.ntrain + a.ntest
        if len(rows) < need:
            sys.exit(f"drift_data: task {name} has {len(rows)} queries, {need} needed")
        np.save(os.path.join(a.out, f"{name}-train.npy"), q[rows[: a.ntrain]])
        np.save(os.path.join(a.out, f"{name}-test.npy"), q[rows[a.ntrain : need]])
    print(f"drift_data: {a.set}: {len(base)} base, tasks A/B of {a.ntrain} train + {a.ntest} test -> {a.out}")


if __name__ == "__main__":
    main()
