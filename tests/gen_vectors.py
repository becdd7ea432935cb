#!/usr/bin/python3
"""Deterministic test fixtures for the hnswflow bats suites.

Writes N x D seeded standard-normal f32 vectors (numpy default_rng(seed)) in
one of several formats. Fixtures are made by the tests into their temp dir,
never committed.

usage: gen_vectors.py [-n N] [-d D] [--seed S] [-f FORMAT] [options] OUT

formats (-f; default from OUT's extension, frames when it has none):
  fvecs   int32 dim + dim f32 per row
  npy     numpy .npy, float32, shape (N, D)
  csv     one row per line, comma-separated, f32-exact decimal ('%.9g')
  frames  a hnswflow vector frame stream written with Python msgpack
          (header, vectors batches, end with crc32), independent of msgpack-c
  query-frames  like frames but one {t:"query", qid, vec} frame per row
  bytes   N*D*4 seeded random bytes with a PNG signature in front (not vectors)
  text    a few lines of prose (not vectors)

special values (all formats holding floats):
  --nan ROW[,COL]    put a NaN at row ROW (column COL, default 0)
  --inf ROW[,COL]    put +Inf at row ROW

frames only:
  --batch B          rows per vectors frame (default 1024)
  --no-header        leave out the header frame (the stream starts with vectors)
  --no-end           leave out the end frame (a truncated stream)
  --bad-dim-batch I  vectors frame number I (0-based) carries one float too many
  --bad-checksum     end frame with a wrong checksum

Also: --normalize (unit rows), --integer (rows scaled, rounded and clipped
to the integers 0..255, like 8-bit pixels), --print (write the vectors as .npy to stdout
instead, for checks; OUT ignored).
"""
import argparse
import struct
import sys
import zlib

import numpy as np


def vectors(n, d, seed, normalize=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype("<f4")
    if normalize:
        x /= np.linalg.norm(x, axis=1, keepdims=True).astype("<f4")
    return x


def special(x, spec, value):
    if spec is None:
        return
    parts = [int(p) for p in spec.split(",")]
    row, col = parts[0], parts[1] if len(parts) > 1 else 0
    x[row, col] = value


def write_fvecs(path, x):
    with open(path, "wb") as f:
        dim = struct.pack("<i", x.shape[1])
        for r in x:
            f.write(dim)
            f.write(r.astype("<f4").tobytes())


def write_csv(path, x):
    with open(path, "w") as f:
        for r in x:
            f.write(",".join("%.9g" % float(v) for v in r) + "\n")


def pack(obj):
    import msgpack
    return msgpack.packb(obj, use_bin_type=True)


def write_frames(path, x, a, query=False):
    n, d = x.shape
    frames = []
    if not a.no_header:
        frames.append(pack({"t": "header", "schema": "hnswflow.vectors", "v": 1, "dim": d,
                            "dtype": "f32", "count": n}))
    if query:
        for i in range(n):
            frames.append(pack({"t": "query", "qid": i, "vec": x[i].tobytes()}))
    else:
        for b, s in enumerate(range(0, n, a.batch)):
            rows = x[s:s + a.batch]
            data = rows.tobytes()
            if a.bad_dim_batch is not None and b == a.bad_dim_batch:
                data += np.float32(1.0).tobytes()
            frames.append(pack({"t": "vectors", "start": s, "n": len(rows), "data": data}))
    body = b"".join(frames)
    crc = zlib.crc32(body)
    if a.bad_checksum:
        crc ^= 1
    if not a.no_end:
        body += pack({"t": "end", "count": n, "checksum": crc})
    with open(path, "wb") as f:
        f.write(body)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("out", nargs="?")
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("-d", "--dim", type=int, default=16)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("-f", "--format")
    p.add_argument("--nan")
    p.add_argument("--inf")
    p.add_argument("--normalize", action="store_true")
    p.add_argument("--integer", action="store_true")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--no-header", action="store_true")
    p.add_argument("--no-end", action="store_true")
    p.add_argument("--bad-dim-batch", type=int)
    p.add_argument("--bad-checksum", action="store_true")
    p.add_argument("--print", action="store_true")
    a = p.parse_args()

    x = vectors(a.n, a.dim, a.seed, a.normalize)
    if a.integer:
        x = np.clip(np.rint(x * 40 + 128), 0, 255).astype("<f4")
    special(x, a.nan, np.nan)
    special(x, a.inf, np.inf)
    if a.print:
        np.save(sys.stdout.buffer, x)
        return 0
    if not a.out:
        p.error("OUT is required")
    base = a.out.rsplit("/", 1)[-1]
    fmt = a.format or (base.rsplit(".", 1)[-1] if "." in base else "frames")
    if fmt == "fvecs":
        write_fvecs(a.out, x)
    elif fmt == "npy":
        np.save(a.out, x)
    elif fmt == "csv":
        write_csv(a.out, x)
    elif fmt == "frames":
        write_frames(a.out, x, a)
    elif fmt == "query-frames":
        write_frames(a.out, x, a, query=True)
    elif fmt == "bytes":
        rng = np.random.default_rng(a.seed)
        with open(a.out, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n" + rng.integers(0, 256, a.n * a.dim * 4,
                                                        dtype=np.uint8).tobytes())
    elif fmt == "text":
        with open(a.out, "w") as f:
            f.write("These are not vectors.\nJust a few lines of prose,\n"
                    "written to see how loaders cope with text.\n")
    else:
        p.error(f"unknown format {fmt!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
