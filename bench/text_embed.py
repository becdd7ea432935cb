#!/usr/bin/python3
"""Make the bench's real-valued cosine text set: TF-IDF + truncated SVD of the
paragraphs of the Linux kernel documentation (Debian's linux-doc-6.1).

Real text embeddings are what our users index; pixel data flatters int8 codes
and bounded L2 kernels. This set is made on the machine, reproducibly:

1. Every `*.rst.gz` under --src, in sorted path order, split at blank lines;
   a paragraph is kept when it has at least --min-words words. Lines that are
   only reStructuredText decoration (==== ---- ....) are dropped first, and
   exact duplicates (licence headers, boilerplate) are kept once.
2. The paragraphs are shuffled with --seed (numpy PCG64); the first
   n_base + 5% are the base pool, the rest are held out for queries: queries
   are never in the base and never seen by the TF-IDF or SVD fit.
   Paragraphs whose TF-IDF row is all zero (every word rarer than min_df)
   have no direction and are skipped on both sides; then the first --n-base
   and --n-queries are kept.
3. TF-IDF (sublinear tf, words of 2+ letters, min_df 2, at most 2^17 terms)
   and a randomized truncated SVD to --dim components, both fitted on the
   base alone (seed fixed); both sets projected and scaled to unit length
   (the metric is cosine).

base.fvecs, queries.fvecs are written to --out through temporary names and
renamed, so an interrupted run leaves no half-written set in the cache.
"""
import argparse
import glob
import gzip
import os
import re
import sys

import numpy as np

SRC = "/usr/share/doc/linux-doc-6.1/Documentation"
DECORATION = re.compile(r"^\s*([=\-~^*#+.`:_'\"])\1{3,}\s*$")


def paragraphs(src, min_words):
    files = sorted(glob.glob(os.path.join(src, "**", "*.rst.gz"), recursive=True))
    if not files:
        sys.exit(f"text_embed: {src}: no *.rst.gz files (apt-get install linux-doc-6.1)")
    seen = set()
    out = []
    for f in files:
        with gzip.open(f, "rt", encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        for p in re.split(r"\n\s*\n", text):
            lines = [ln for ln in p.splitlines() if not DECORATION.match(ln)]
            p = " ".join(" ".join(lines).split())
            if len(p.split()) < min_words or p in seen:
                continue
            seen.add(p)
            out.append(p)
    return out


def write_fvecs(path, a):
    a = np.ascontiguousarray(a, dtype=np.float32)
    n, d = a.shape
    rec = np.empty((n, d + 1), dtype=np.float32)
    rec[:, 0] = np.array([d], dtype=np.int32).view(np.float32)[0]
    rec[:, 1:] = a
    tmp = path + ".tmp"
    rec.tofile(tmp)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", default=SRC)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-base", type=int, default=60000)
    ap.add_argument("--n-queries", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--min-words", type=int, default=8)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    ps = paragraphs(a.src, a.min_words)
    need = a.n_base + a.n_base // 20 + a.n_queries
    if len(ps) < need:
        sys.exit(f"text_embed: {a.src}: {len(ps)} paragraphs, {need} needed")
    order = np.random.default_rng(a.seed).permutation(len(ps))
    # the base pool gets 5% spare: paragraphs whose words are all too rare
    # for the vocabulary have an all-zero TF-IDF row (no direction, so no
    # cosine neighbours) and are dropped before the first n_base are kept
    spare = a.n_base // 20
    pool = [ps[i] for i in order[: a.n_base + spare]]
    rest = [ps[i] for i in order[a.n_base + spare :]]
    tf = TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=1 << 17,
                         token_pattern=r"(?u)\b[A-Za-z_][A-Za-z0-9_]+\b", dtype=np.float32)
    xp = tf.fit_transform(pool)
    live = np.flatnonzero(xp.getnnz(axis=1) > 0)
    if len(live) < a.n_base:
        sys.exit(f"text_embed: only {len(live)} of {len(pool)} base paragraphs have known words")
    xb = xp[live[: a.n_base]]
    xr = tf.transform(rest)
    qlive = np.flatnonzero(xr.getnnz(axis=1) > 0)
    if len(qlive) < a.n_queries:
        sys.exit(f"text_embed: only {len(qlive)} held-out paragraphs have known words")
    svd = TruncatedSVD(n_components=a.dim, algorithm="randomized", n_iter=5, random_state=a.seed)
    eb = svd.fit_transform(xb)
    eq = svd.transform(xr[qlive[: a.n_queries]])
    for e in (eb, eq):
        nrm = np.linalg.norm(e, axis=1, keepdims=True)
        if (nrm == 0).any():
            sys.exit("text_embed: a zero embedding after the SVD")
        e /= nrm
    os.makedirs(a.out, exist_ok=True)
    write_fvecs(os.path.join(a.out, "base.fvecs"), eb)
    write_fvecs(os.path.join(a.out, "queries.fvecs"), eq)
    print(f"text_embed: {len(ps)} paragraphs, {len(tf.vocabulary_)} terms, base {eb.shape}, "
          f"queries {eq.shape}, SVD explains {svd.explained_variance_ratio_.sum():.3f} of the "
          f"TF-IDF variance", file=sys.stderr)


if __name__ == "__main__":
    main()
