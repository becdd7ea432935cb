#!/bin/sh
# make_corpus_index.sh - write the small seed corpus for fuzz_index with the
# project's own filters: tiny indexes from graph-build (50 x 4 vectors with
# several metrics and M, so upper levels exist) and one index stream with a
# model frame appended. Every seed is under 8 KB but the dense speed layout's (~20 KB). Needs bin/ built (make).
# Usage: sh tests/fuzz/make_corpus_index.sh [dir]
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$root/bin}
out=${1:-$root/tests/fuzz/corpus/index}
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"

$PY "$root/tests/gen_vectors.py" -n 50 -d 4 --seed 3 -f frames "$tmp/base.frames"
"$BIN/graph-build" -M 4 --threads 1 --seed 1 -o "$out/l2_m4" "$tmp/base.frames" 2>/dev/null
"$BIN/graph-build" -M 2 --threads 1 --seed 7 --metric cosine -o "$out/cos_m2" "$tmp/base.frames" 2>/dev/null
# codes: int8 (packed links in the code block) and pq4
"$BIN/graph-build" -M 4 --threads 1 --seed 2 --compress int8 -o "$out/l2_int8" "$tmp/base.frames" 2>/dev/null
"$BIN/graph-build" -M 4 --threads 1 --seed 2 --compress pq4 -o "$out/l2_pq4" "$tmp/base.frames" 2>/dev/null
# the speed layout: a rows frame v2 (the block rotation: signs and 1 x 1
# mixing matrices). l2_speed_dense, the same with a v1 frame (a dense 64 x 64
# rotation, ~20 KB), is kept from before graph-build wrote v2 and is not
# remade here.
"$BIN/graph-build" -M 4 --threads 1 --seed 3 --preset speed -o "$out/l2_speed" "$tmp/base.frames" 2>/dev/null
$PY "$root/tests/gen_vectors.py" -n 5 -d 3 --seed 4 -f frames "$tmp/small.frames"
"$BIN/graph-build" -M 2 --threads 1 --metric ip -o "$out/ip_n5" "$tmp/small.frames" 2>/dev/null
# the n5 index with a model frame before its end frame (checksum recomputed)
$PY - "$out/ip_n5" "$out/ip_n5_model" <<'PY'
import sys, zlib, msgpack
frames = [f for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False) if f["t"] != "end"]
frames.append({"t": "model", "kind": "demo", "n": 1, "data": b"\x01\x02\x03\x04"})
body = b"".join(msgpack.packb(f) for f in frames)
end = msgpack.packb({"t": "end", "count": 5, "checksum": zlib.crc32(body)})
open(sys.argv[2], "wb").write(body + end)
PY
# a layer-router frame on the l2 index (4 candidates, 2-wide code, routing
# by the nearer of its 2 best candidates: the rerank path)
"$BIN/layer-route" --threads 1 --candidates 4 --code-dim 2 --epochs 2 --val-ef 4,8 --rerank 2 \
    -o "$out/l2_m4_router" "$out/l2_m4" 2>/dev/null
# a nav-policy frame on the l2 index (its Fisher and an 8-query reservoir too)
"$BIN/nav-train" --threads 1 --queries 30 --val-queries 12 --ppo-iters 1 --ppo-queries 10 \
    --epochs 1 --val-ef 4,8 --reservoir 8 -o "$out/l2_m4_nav" "$out/l2_m4" 2>/dev/null
# an edge-scorer frame on the l2 index, written here (edge-score's default
# shape is ~66 KB, over the fuzz frame limit): widths 4, one head, m0 8,
# with its Fisher and a 2-query reservoir
$PY - "$out/l2_m4" "$out/l2_m4_edge" <<'PY'
import struct, sys, zlib, msgpack
dim, d, hid, thr = 4, 4, 4, 2
shapes = [("proj", 16, dim), ("in.mu", 1, 19), ("in.sd", 1, 19), ("feat.mu", 1, 12),
          ("feat.sd", 1, 12), ("inp.0.w", d, 19), ("inp.0.b", 1, d), ("msg.w", d, d),
          ("msg.b", 1, d)]
for x in "qkvo":
    shapes += [(f"attn.{x}.w", d, d), (f"attn.{x}.b", 1, d)]
shapes += [("gru.i.w", 3 * d, d), ("gru.i.b", 1, 3 * d), ("gru.h.w", 3 * d, d),
           ("gru.h.b", 1, 3 * d), ("edge.0.w", hid, 2 * d + 12), ("edge.0.b", 1, hid),
           ("edge.2.w", 1, hid), ("edge.2.b", 1, 1), ("thr.0.w", thr, d), ("thr.0.b", 1, thr),
           ("thr.2.w", 1, thr), ("thr.2.b", 1, 1)]
def vals(name, n):
    if name.endswith(".sd"):
        return [1.0] * n
    return [((i * 7919 + len(name)) % 17 - 8) / 16.0 for i in range(n)]
params = [{"name": n, "rows": r, "cols": c,
           "data": struct.pack("<%df" % (r * c), *vals(n, r * c))} for n, r, c in shapes]
ntrain = sum(r * c for n, r, c in shapes[5:])
model = {"t": "model", "kind": "edge-scorer", "v": 1, "params": params, "dim": dim, "m0": 8,
         "d_node": d, "d_msg": d, "heads": 1, "hidden": hid, "thr_hidden": thr, "proj": 16,
         "nfeat": 12, "graph_layer": 1, "fisher": struct.pack("<%df" % ntrain, *([0.5] * ntrain)),
         "tasks": 1, "replay": struct.pack("<8f", *range(8)), "replay_seen": 2}
frames = [f for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False) if f["t"] != "end"]
frames.append(model)
body = b"".join(msgpack.packb(f, use_bin_type=True) for f in frames)
end = msgpack.packb({"t": "end", "count": 50, "checksum": zlib.crc32(body)})
open(sys.argv[2], "wb").write(body + end)
PY
# an index with labels frames (filtered searches run on it)
$PY "$root/tests/gen_vectors.py" -n 50 -d 4 --seed 3 -f npy "$tmp/base.npy"
awk 'BEGIN { for (i = 0; i < 50; i++) print i % 3, (i % 5 == 0 ? "7" : "") }' >"$tmp/labels.txt"
"$BIN/embed-load" --labels "$tmp/labels.txt" "$tmp/base.npy" |
    "$BIN/graph-build" -M 4 --threads 1 --seed 1 -o "$out/l2_labels" 2>/dev/null
ls -l "$out" | awk 'NR > 1 { n++; b += $5 } END { print n " seed files, " b " bytes" }'
