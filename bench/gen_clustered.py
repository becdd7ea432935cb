#!/usr/bin/python3
"""Generate a SIFT-like clustered data set for the bench.

N base vectors and NQ queries in DIM dimensions, drawn from one mixture of
C Gaussian clusters (default 100): each cluster has its own centre (uniform
in [0, 60) per coordinate, like SIFT's small-integer histogram values), its own
overall scale (log-uniform, 4..30) and its own per-dimension anisotropy;
cluster weights are uneven (Dirichlet). Values are clipped to >= 0 and
rounded to integers, as SIFT descriptors are. Queries come from the same
mixture but are separate draws, so none is in the base set.
Deterministic for a given --seed (numpy PCG64). Files are written to a
temporary name and renamed.
"""
import argparse
import os

import numpy as np


def write_fvecs(path, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    out = np.empty((n, d + 1), dtype="<f4")
    out[:, 0] = np.array([d], dtype="<i4").view("<f4")[0]
    out[:, 1:] = x
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(out.tobytes())
    os.replace(tmp, path)


def draw(rng, n, centres, scales, weights, chunk=50000):
    c, d = centres.shape
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        lab = rng.choice(c, size=m, p=weights)
        noise = rng.standard_normal((m, d)).astype(np.float32)
        x = centres[lab] + noise * scales[lab]
        out[s : s + m] = np.rint(np.clip(x, 0.0, None))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--n", type=int, default=200000, help="base vectors")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--nq", type=int, default=10000, help="queries")
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", required=True, help="output folder")
    a = ap.parse_args()
    if a.n <= 0 or a.dim <= 0 or a.nq <= 0 or a.clusters <= 0:
        ap.error("sizes must be positive")
    rng = np.random.default_rng(a.seed)
    centres = rng.uniform(0.0, 60.0, size=(a.clusters, a.dim)).astype(np.float32)
    # some coordinates near zero, as in SIFT (many empty histogram bins)
    centres *= (rng.random((a.clusters, a.dim)) > 0.3).astype(np.float32)
    scale = np.exp(rng.uniform(np.log(4.0), np.log(30.0), size=(a.clusters, 1)))
    aniso = rng.uniform(0.3, 1.7, size=(a.clusters, a.dim))
    scales = (scale * aniso).astype(np.float32)
    weights = rng.dirichlet(np.full(a.clusters, 2.0))
    base = draw(rng, a.n, centres, scales, weights)
    queries = draw(rng, a.nq, centres, scales, weights)
    os.makedirs(a.out, exist_ok=True)
    write_fvecs(os.path.join(a.out, "base.fvecs"), base)
    write_fvecs(os.path.join(a.out, "queries.fvecs"), queries)
    print(f"gen_clustered: {a.n} base, {a.nq} queries, dim {a.dim}, {a.clusters} clusters, seed {a.seed} -> {a.out}")


if __name__ == "__main__":
    main()
