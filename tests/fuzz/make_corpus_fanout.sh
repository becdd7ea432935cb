#!/bin/sh
# make_corpus_fanout.sh - the seed corpus of fuzz_fanout: a byte choosing k
# followed by frames the front end meets: shard answers (result frames with
# u64 ids, an error frame, a partial answer, a batch answer) and client
# requests (query, queries, info, stats), written with Python's msgpack;
# and --fanout specs.
# Usage: sh tests/fuzz/make_corpus_fanout.sh [dir]
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/tests/fuzz/corpus/fanout}
mkdir -p "$out"
/usr/bin/python3 - "$out" <<'PY'
import os, sys, msgpack, numpy as np
out = sys.argv[1]
def res(qid, ids, d, **kw):
    f = {"t": "result", "qid": qid, "ids": np.array(ids, "<u8").tobytes(),
         "dists": np.array(d, "<f4").tobytes()}
    f.update(kw)
    return msgpack.packb(f, use_bin_type=True)
seeds = {
    "answers": b"\x0a" + res(1, [3, 9, 12], [0.1, 0.5, 0.9]) + res(1, [4, 8], [0.2, 0.3]),
    "partial": b"\x03" + res(2, [5], [1.0], partial=True, missing=[1]) +
               msgpack.packb({"t": "error", "qid": 2, "msg": "query has 12 bytes"}),
    "requests": b"\x05" + msgpack.packb({"t": "query", "qid": 77, "k": 3, "ef": 40,
                                         "vec": np.ones(4, "<f4").tobytes(),
                                         "filter": [1, 2]}, use_bin_type=True) +
                msgpack.packb({"t": "info"}) + msgpack.packb({"t": "stats"}),
    "spec": b"tcp://a:1|tcp://b:1,ipc:///tmp/x|inproc://y,tcp://c:2",
    "batch": b"\x04" + msgpack.packb({"t": "results", "qid": 3, "n": 3,
                                      "counts": np.array([2, 0, 1], "<u4").tobytes(),
                                      "ids": np.array([7, 1, 5], "<u8").tobytes(),
                                      "dists": np.array([0.1, 0.4, 2.0], "<f4").tobytes()},
                                     use_bin_type=True) +
             msgpack.packb({"t": "queries", "qid": 1, "n": 2, "k": 4,
                            "vecs": np.ones(8, "<f4").tobytes()}, use_bin_type=True),
}
for name, data in seeds.items():
    open(os.path.join(out, name), "wb").write(data)
PY
