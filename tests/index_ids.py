#!/usr/bin/python3
"""Print facts about an index stream for the consolidate tests.

usage: index_ids.py INDEX [--ids] [--seq] [--count] [--vec ID]
  --ids    the external ids, sorted, one a line (node numbers without ids frames)
  --seq    the checkpoint frame's seq (0 when absent)
  --count  the node count
  --vec ID the stored vector of external id ID, as space-separated floats
"""
import sys

import msgpack
import numpy as np


def main(argv):
    path, want = argv[0], argv[1:]
    hdr, ids, seq, rows = None, [], 0, []
    for f in msgpack.Unpacker(open(path, "rb"), raw=False, strict_map_key=False):
        t = f.get("t")
        if t == "header" and hdr is None:
            hdr = f
        elif t == "ids":
            ids.extend(np.frombuffer(f["ids"], "<u8").tolist())
        elif t == "checkpoint":
            seq = f["seq"]
        elif t == "vectors":
            rows.append(np.frombuffer(f["data"], "<f4").reshape(f["n"], hdr["dim"]))
    if not ids:
        ids = list(range(hdr["count"]))
    i = 0
    while i < len(want):
        w = want[i]
        if w == "--ids":
            print("\n".join(str(x) for x in sorted(ids)))
        elif w == "--seq":
            print(seq)
        elif w == "--count":
            print(hdr["count"])
        elif w == "--vec":
            x = int(want[i + 1])
            i += 1
            allrows = np.concatenate(rows) if rows else np.zeros((0, hdr["dim"]))
            print(" ".join(f"{v:g}" for v in allrows[ids.index(x)]))
        i += 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
