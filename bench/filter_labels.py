#!/usr/bin/python3
"""Labels and filters for the filtered-search bench (bench/filter.sh).

Every base vector gets eight labels, one per (kind, selectivity):
  random      label drawn uniformly among 2, 10, 100 or 1000 values, so a
              one-label filter keeps about 50 %, 10 %, 1 % or 0.1 %;
              labels 0-1, 10-19, 100-199, 1000-1999
  correlated  the vector's cluster among 2, 10, 100 or 1000 clusters of the
              base (labels follow the data): k-means centroids, then a
              balanced assignment (each point to its nearest centroid that is
              not yet full, n/C a cluster) so the selectivities hold;
              labels 10000+c, 20000+c, 30000+c, 40000+c
Queries (the first --nq) get one filter per case, written one line a query
to DIR/filters-KIND-SEL.txt: random: a uniformly drawn label of the group;
correlated: the label of a cluster other than the query's own (its nearest
centroid), drawn uniformly among the non-empty ones - the hard case, where
the matching vectors lie away from the query. DIR/cases.txt lists
"KIND SEL FILE MEAN_SELECTIVITY" (the mean fraction of the base matching).
Deterministic for a given --seed. k-means: Lloyd, --iters rounds from
sampled points, distances on OpenBLAS (numpy), cosine sets normalised.
"""
import argparse
import os

import numpy as np


def read_fvecs(path):
    raw = np.fromfile(path, dtype="<f4")
    d = raw[:1].view("<i4")[0]
    return raw.reshape(-1, d + 1)[:, 1:].copy()


def nearest(x, c, chunk=8192):
    cn = (c * c).sum(1)
    out = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), chunk):
        b = x[s:s + chunk]
        d = cn[None, :] - 2.0 * (b @ c.T)
        out[s:s + chunk] = d.argmin(1)
    return out


def kmeans(x, k, iters, rng):
    c = x[rng.choice(len(x), k, replace=False)].copy()
    for _ in range(iters):
        a = nearest(x, c)
        cnt = np.bincount(a, minlength=k)
        s = np.zeros_like(c, dtype=np.float64)
        np.add.at(s, a, x)
        empty = cnt == 0
        c = (s / np.maximum(cnt, 1)[:, None]).astype(np.float32)
        if empty.any():
            c[empty] = x[rng.choice(len(x), int(empty.sum()), replace=False)]
    return c, nearest(x, c)


def balanced(x, c, rng, top=32, chunk=8192):
    """Assign every point to a near centroid with at most ceil(n/k) points a
    cluster: points in random order take their nearest centroid that is not
    full (among their `top` nearest, else any), so clusters keep the data's
    shape and the selectivities their nominal size."""
    n, k = len(x), len(c)
    cap = -(-n // k)
    t = min(top, k)
    cn = (c * c).sum(1)
    pref = np.empty((n, t), dtype=np.int64)
    for s in range(0, n, chunk):
        d = cn[None, :] - 2.0 * (x[s:s + chunk] @ c.T)
        p = np.argpartition(d, t - 1, axis=1)[:, :t] if t < k else np.tile(np.arange(k), (len(d), 1))
        dd = np.take_along_axis(d, p, 1)
        pref[s:s + chunk] = np.take_along_axis(p, dd.argsort(1), 1)
    fill = np.zeros(k, dtype=np.int64)
    out = np.empty(n, dtype=np.int64)
    for i in rng.permutation(n):
        for j in pref[i]:
            if fill[j] < cap:
                break
        else:
            j = int(np.flatnonzero(fill < cap)[0])
        out[i] = j
        fill[j] += 1
    return out


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--metric", default="l2")
    ap.add_argument("--nq", type=int, default=200)
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    x = read_fvecs(a.base)
    q = read_fvecs(a.queries)[: a.nq]
    if a.metric == "cosine":
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
    n = len(x)
    groups = [("50", 2), ("10", 10), ("1", 100), ("0.1", 1000)]
    rbase = [0, 10, 100, 1000]
    lab = np.zeros((n, 8), dtype=np.int64)
    cases = []
    os.makedirs(a.out, exist_ok=True)
    for g, (sel, m) in enumerate(groups):
        lab[:, g] = rbase[g] + rng.integers(0, m, n)
        f = rbase[g] + rng.integers(0, m, len(q))
        cnt = np.bincount(lab[:, g], minlength=rbase[g] + m)
        path = os.path.join(a.out, "filters-random-%s.txt" % sel)
        write_atomic(path, "".join("%d\n" % v for v in f))
        cases.append(("random", sel, path, float(cnt[f].mean()) / n))
    for g, (sel, m) in enumerate(groups):
        c, _ = kmeans(x, m, a.iters, rng)
        assign = balanced(x, c, rng)
        lab[:, 4 + g] = 10000 * (g + 1) + assign
        cnt = np.bincount(assign, minlength=m)
        own = nearest(q, c)
        nonempty = np.flatnonzero(cnt)
        f = np.empty(len(q), dtype=np.int64)
        for i in range(len(q)):
            other = nonempty[nonempty != own[i]]
            f[i] = other[rng.integers(0, len(other))]
        path = os.path.join(a.out, "filters-correlated-%s.txt" % sel)
        write_atomic(path, "".join("%d\n" % (10000 * (g + 1) + v) for v in f))
        cases.append(("correlated", sel, path, float(cnt[f].mean()) / n))
    write_atomic(os.path.join(a.out, "labels.txt"),
                 "".join(" ".join(map(str, r)) + "\n" for r in lab))
    write_atomic(os.path.join(a.out, "cases.txt"),
                 "".join("%s %s %s %.5f\n" % c for c in cases))


if __name__ == "__main__":
    main()
