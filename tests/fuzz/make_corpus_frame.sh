#!/bin/sh
# make_corpus_frame.sh - write the small seed corpus for fuzz_frame with the
# project's own filters: a vector stream (embed-load), a query stream, a
# results stream (query) and one vector stream with a model frame riding
# along (written by tests/gen_vectors.py's independent msgpack encoder).
# Every seed is under 8 KB. Needs bin/ built (make).
# Usage: sh tests/fuzz/make_corpus_frame.sh [dir]
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$root/bin}
out=${1:-$root/tests/fuzz/corpus/frame}
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"

$PY "$root/tests/gen_vectors.py" -n 20 -d 4 --seed 1 -f fvecs "$tmp/base.fvecs"
"$BIN/embed-load" --batch 8 "$tmp/base.fvecs" >"$out/vectors"
$PY "$root/tests/gen_vectors.py" -n 3 -d 4 --seed 2 -f query-frames "$tmp/q.frames"
cp "$tmp/q.frames" "$out/queries"
"$BIN/graph-build" -M 4 --threads 1 --seed 1 -o "$tmp/idx" "$out/vectors" 2>/dev/null
"$BIN/query" -k 3 --index "$tmp/idx" "$out/queries" >"$out/results" 2>/dev/null
$PY - "$out/model" <<'PY'
import sys, zlib, msgpack
frames = [{"t": "header", "schema": "hnswflow.vectors", "v": 1, "dim": 2, "dtype": "f32", "count": 2},
          {"t": "model", "kind": "demo", "data": b"\x00" * 8, "shape": [2, 1]},
          {"t": "vectors", "start": 0, "n": 2, "data": b"\x00\x00\x80\x3f" * 4}]
body = b"".join(msgpack.packb(f) for f in frames)
end = msgpack.packb({"t": "end", "count": 2, "checksum": zlib.crc32(body)})
open(sys.argv[1], "wb").write(body + end)
PY
# labels in vectors frames (embed-load --labels) and filters in query frames
awk 'BEGIN { for (i = 0; i < 20; i++) print i % 3, (i % 4 == 0 ? "9 1048575" : "") }' >"$tmp/labels.txt"
"$BIN/embed-load" --batch 8 --labels "$tmp/labels.txt" "$tmp/base.fvecs" >"$out/vectors_labels"
$PY - "$out/queries_filter" <<'PY'
import sys, zlib, msgpack
frames = [{"t": "header", "schema": "hnswflow.vectors", "v": 1, "dim": 2, "dtype": "f32", "count": 2},
          {"t": "query", "qid": 0, "vec": b"\x00\x00\x80\x3f" * 2, "filter": [1, 2]},
          {"t": "query", "qid": 1, "vec": b"\x00\x00\x80\x3f" * 2, "filter": [9], "filter_all": True}]
body = b"".join(msgpack.packb(f) for f in frames)
end = msgpack.packb({"t": "end", "count": 2, "checksum": zlib.crc32(body)})
open(sys.argv[1], "wb").write(body + end)
PY
ls -l "$out" | awk 'NR > 1 { n++; b += $5 } END { print n " seed files, " b " bytes" }'
# a query log (qlog.h): no end frame, the stream ends with the file
$PY - "$out/querylog" <<'PY'
import sys, msgpack
frames = [{"t": "header", "schema": "hnswflow.querylog", "v": 1, "dim": 2, "dtype": "f32", "metric": "l2", "count": 0},
          {"t": "query", "qid": 0, "vec": b"\x00\x00\x80\x3f" * 2, "k": 3, "ef": 16, "time": 1.8e9},
          {"t": "query", "qid": 1, "vec": b"\x00\x00\x80\x3f" * 2, "k": 3, "recall": 0.95, "time": 1.8e9}]
open(sys.argv[1], "wb").write(b"".join(msgpack.packb(f) for f in frames))
PY
