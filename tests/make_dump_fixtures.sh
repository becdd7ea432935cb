#!/bin/sh
# tests/make_dump_fixtures.sh BIN DIR - write into DIR one real stream for
# every frame type in schemas/, made by the filters themselves (and the
# server's answers captured by tests/server_frames.py): tests/dump.bats
# dumps each and checks jq reads every line. Takes a few seconds.
set -eu
BIN=$1 D=$2
PY=/usr/bin/python3
T=$(cd "$(dirname "$0")" && pwd)
$PY "$T/gen_vectors.py" -n 600 -d 8 --seed 3 "$D/v.npy"
$PY "$T/gen_vectors.py" -n 600 -d 8 --seed 3 "$D/v.frames"
$PY "$T/gen_vectors.py" -n 20 -d 8 --seed 4 "$D/q.frames"
seq 100 699 > "$D/ids.txt"
# index: header, vectors, perm, links, ids, codebook, codes, end
"$BIN/embed-load" --ids "$D/ids.txt" "$D/v.npy" | "$BIN/graph-build" --threads 1 --compress int8 -o "$D/codes.idx" 2>/dev/null
# rows (the speed layout)
"$BIN/graph-build" --threads 1 --preset speed -o "$D/speed.idx" "$D/v.frames" 2>/dev/null
# model frames: the layer router, the edge scorer, the navigation policy
"$BIN/graph-build" --threads 1 -o "$D/plain.idx" "$D/v.frames" 2>/dev/null
"$BIN/layer-route" --candidates 16 -o "$D/routed.idx" "$D/plain.idx" 2>/dev/null
"$BIN/graph-build" --threads 1 --M0 48 -o "$D/cand.idx" "$D/v.frames" 2>/dev/null
"$BIN/edge-score" --val-queries 100 -o "$D/edges.idx" "$D/cand.idx" 2>/dev/null
"$BIN/nav-train" --threads 1 --queries 200 --val-queries 100 --ppo-iters 1 --ppo-queries 50 \
    --val-ef 10,32 -o "$D/nav.idx" "$D/plain.idx" 2>/dev/null
# labels frames (and labels in vectors frames)
awk 'BEGIN { for (i = 0; i < 600; i++) print i % 7, (i % 3 ? "" : 9) }' >"$D/labels.txt"
"$BIN/embed-load" --labels "$D/labels.txt" "$D/v.npy" -o "$D/labelled.frames"
"$BIN/graph-build" --threads 1 -o "$D/labels.idx" "$D/labelled.frames" 2>/dev/null
# results stream
"$BIN/query" --index "$D/plain.idx" -k 5 -o "$D/res.frames" "$D/q.frames" 2>/dev/null
# updates (header, insert, delete, query) and a write-ahead log left by a
# stream cut short (header-wal, wal); a live index saved with tombstones
$PY "$T/make_updates.py" "$D/upd.frames" --dim 8 insert:0:50 delete:0:10 query:0:3
$PY "$T/make_updates.py" "$D/cut.frames" --dim 8 --no-end insert:0:50 delete:0:10
"$BIN/consolidate" --wal "$D/w.wal" -o "$D/live.idx" -r /dev/null "$D/cut.frames" 2>/dev/null || true
"$BIN/consolidate" -o "$D/after.idx" -r /dev/null "$D/upd.frames" 2>/dev/null
# request and answer frames of a server: query, info, error, stats,
# reload, queries (a batch) and results
$PY "$T/server_frames.py" "$BIN" "$D/plain.idx" "$D/server.frames"
# tombstones: no filter saves an index with them today (consolidate
# repairs its deletes), so this one frame is written with Python msgpack
$PY -c 'import msgpack,sys,numpy as np; sys.stdout.buffer.write(msgpack.packb({"t":"deleted","ids":np.array([3,5],"<u4").tobytes()},use_bin_type=True))' > "$D/deleted.frame"
# a query log (header-querylog + query frames with time, no end frame), as
# query --serve --log writes it
$PY -c 'import msgpack,sys,numpy as np; h={"t":"header","schema":"hnswflow.querylog","v":1,"dim":8,"dtype":"f32","metric":"l2","count":0}; q=[{"t":"query","qid":i,"vec":np.ones(8,"<f4").tobytes(),"k":10,"ef":64,"time":1.8e9+i} for i in range(3)]; sys.stdout.buffer.write(b"".join(msgpack.packb(f,use_bin_type=True) for f in [h]+q))' > "$D/query.log"
