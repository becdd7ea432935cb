#!/usr/bin/python3
"""Convert Fashion-MNIST (idx3-ubyte, gzip) images to fvecs for the bench.

base.fvecs    <- the first --n-base training images (default all 60000)
queries.fvecs <- the first --n-queries test images (default all 10000)

Pixels stay in 0..255 as float32 (no scaling), 784 dimensions, so squared-L2
distances match what `bin/embed-load` computes from the idx files directly.

With --project D the pixels are scaled to [0, 1] and multiplied by one fixed
Gaussian D x 784 matrix (--seed, numpy PCG64, entries N(0, 1/D)): real-valued
vectors in D dimensions, neighbourhoods roughly preserved (Johnson-Lindenstrauss),
like learned embeddings, so int8 codes of them are lossy.
Files are written to a temporary name and renamed, so an interrupted run
leaves no half-written data set in the cache.
"""
import argparse
import gzip
import os
import sys

import numpy as np

SRC = "/usr/share/datasets/fashion-mnist"


def read_idx_images(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 16:
        sys.exit(f"fmnist_to_fvecs: {path}: truncated header")
    magic, n, rows, cols = np.frombuffer(raw[:16], dtype=">u4")
    if magic != 0x00000803:
        sys.exit(f"fmnist_to_fvecs: {path}: bad magic {magic:#x}")
    need = 16 + int(n) * int(rows) * int(cols)
    if len(raw) < need:
        sys.exit(f"fmnist_to_fvecs: {path}: truncated data")
    a = np.frombuffer(raw[16:need], dtype=np.uint8)
    return a.reshape(int(n), int(rows) * int(cols))


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=SRC, help="folder holding the idx3-ubyte.gz files")
    ap.add_argument("--n-base", type=int, default=60000)
    ap.add_argument("--n-queries", type=int, default=10000)
    ap.add_argument("--project", type=int, default=0, metavar="D",
                    help="random Gaussian projection of [0,1] pixels to D dims (default: none)")
    ap.add_argument("--seed", type=int, default=7, help="projection matrix seed")
    ap.add_argument("--out", required=True, help="output folder")
    a = ap.parse_args()
    train = read_idx_images(os.path.join(a.src, "train-images-idx3-ubyte.gz"))
    test = read_idx_images(os.path.join(a.src, "t10k-images-idx3-ubyte.gz"))
    if not (0 < a.n_base <= len(train)) or not (0 < a.n_queries <= len(test)):
        sys.exit("fmnist_to_fvecs: --n-base/--n-queries out of range")
    if a.project < 0 or a.project > 4096:
        sys.exit("fmnist_to_fvecs: --project out of range (0..4096)")
    base, queries = train[: a.n_base], test[: a.n_queries]
    if a.project:
        rng = np.random.default_rng(a.seed)
        r = (rng.standard_normal((base.shape[1], a.project)) / np.sqrt(a.project)).astype(np.float32)
        base = (base.astype(np.float32) / 255.0) @ r
        queries = (queries.astype(np.float32) / 255.0) @ r
    os.makedirs(a.out, exist_ok=True)
    write_fvecs(os.path.join(a.out, "base.fvecs"), base)
    write_fvecs(os.path.join(a.out, "queries.fvecs"), queries)
    print(f"fmnist_to_fvecs: {a.n_base} base, {a.n_queries} queries, dim {base.shape[1]} -> {a.out}")


if __name__ == "__main__":
    main()
