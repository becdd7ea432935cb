#!/usr/bin/python3
"""Write an hnswflow.updates frame stream (for tests and the runbook bench).

usage: make_updates.py OUT --dim D [--seed S] [--vectors FILE.npy] OP...
  OP: insert:START:END       insert rows START..END-1 (id = row number + --id-base)
      delete:START:END       delete those ids
      query:START:END        one query frame per row of a second random set
                             (qid = row number)
      raw:JSON               one frame given as JSON (bins as {"f32": [...]} or
                             {"u64": [...]})
Rows are uniform random in [0,1) from --seed, or rows of --vectors.
--batch N splits inserts/deletes into frames of N rows (default 1000).
--no-end leaves the end frame off; --bad-count writes a wrong end count.
--labels-mod M gives inserted row r the label r % M (filt.h's wire form);
--filter L gives every query frame the filter [L] (repeat for several).
"""
import json
import sys
import zlib

import msgpack
import numpy as np


def main(argv):
    out, dim, seed, vec_file, batch, id_base = None, None, 1, None, 1000, 0
    no_end = bad_count = False
    labels_mod, qfilter = 0, []
    ops = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--dim":
            dim = int(argv[i + 1]); i += 1
        elif a == "--seed":
            seed = int(argv[i + 1]); i += 1
        elif a == "--vectors":
            vec_file = argv[i + 1]; i += 1
        elif a == "--batch":
            batch = int(argv[i + 1]); i += 1
        elif a == "--id-base":
            id_base = int(argv[i + 1]); i += 1
        elif a == "--labels-mod":
            labels_mod = int(argv[i + 1]); i += 1
        elif a == "--filter":
            qfilter.append(int(argv[i + 1])); i += 1
        elif a == "--no-end":
            no_end = True
        elif a == "--bad-count":
            bad_count = True
        elif out is None:
            out = a
        else:
            ops.append(a)
        i += 1
    if vec_file:
        base = np.load(vec_file).astype("<f4")
        dim = base.shape[1]
    rng = np.random.default_rng(seed)
    need = 1 + max([int(o.split(":")[2]) for o in ops if o.split(":")[0] in
                    ("insert", "delete", "query")] + [0])
    if not vec_file:
        base = rng.random((need, dim), dtype=np.float32)
    queries = np.random.default_rng(seed + 1000).random((need, dim), dtype=np.float32)
    frames = [{"t": "header", "schema": "hnswflow.updates", "v": 1, "dim": dim, "count": 0}]
    for o in ops:
        kind, rest = o.split(":", 1)
        if kind == "raw":
            f = json.loads(rest)
            for k, v in list(f.items()):
                if isinstance(v, dict) and "f32" in v:
                    f[k] = np.array(v["f32"], dtype="<f4").tobytes()
                elif isinstance(v, dict) and "u64" in v:
                    f[k] = np.array(v["u64"], dtype="<u8").tobytes()
                elif isinstance(v, dict) and "u32" in v:
                    f[k] = np.array(v["u32"], dtype="<u4").tobytes()
            frames.append(f)
            continue
        s, e = map(int, rest.split(":"))
        if kind == "query":
            for r in range(s, e):
                q = {"t": "query", "qid": r, "vec": queries[r].tobytes()}
                if qfilter:
                    q["filter"] = qfilter
                frames.append(q)
            continue
        for b in range(s, e, batch):
            ids = np.arange(b, min(e, b + batch), dtype="<u8") + id_base
            f = {"t": kind, "n": len(ids), "ids": ids.tobytes()}
            if kind == "insert":
                f["data"] = base[b:b + len(ids)].tobytes()
                if labels_mod:
                    rows = np.arange(b, b + len(ids)) % labels_mod
                    f["labels"] = np.stack([np.ones_like(rows), rows], 1).astype("<u4").tobytes()
            frames.append(f)
    frames[0]["count"] = len(frames) - 1
    raw = b"".join(msgpack.packb(f, use_bin_type=True) for f in frames)
    if not no_end:
        n = len(frames) - 1 + (1 if bad_count else 0)
        raw += msgpack.packb({"t": "end", "count": n, "checksum": zlib.crc32(raw)})
    with (sys.stdout.buffer if out == "-" else open(out, "wb")) as fh:
        fh.write(raw)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
