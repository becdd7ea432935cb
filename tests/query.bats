#!/usr/bin/env bats
# query: an index and query vectors in, a results stream out; also a ZeroMQ
# server (--serve) and its client (--connect).

load helpers

setup_file() {
    need_bins embed-load graph-build query
    $GEN -n 2000 -d 16 --seed 21 "$FIX/base.npy"
    $GEN -n 150 -d 16 --seed 22 "$FIX/queries.npy"
    "$BIN/embed-load" -o "$FIX/base.frames" "$FIX/base.npy"
    "$BIN/embed-load" -o "$FIX/queries.frames" "$FIX/queries.npy"
    "$BIN/graph-build" --threads 2 -o "$FIX/index" "$FIX/base.frames" 2>/dev/null
    "$BIN/query" --index "$FIX/index" -o "$FIX/res" "$FIX/queries.frames" 2>/dev/null
    "$BIN/query" --index "$FIX/index" --exact -o "$FIX/gt" "$FIX/queries.frames" 2>/dev/null
}

teardown() {
    if [ -n "${SERVER_PID:-}" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}

# start_server : query --serve on a free port in the background; sets
# SERVER_PID and EP; waits until it says it is serving.
start_server() {
    local port
    port="$(free_port)"
    EP="tcp://127.0.0.1:$port"
    "$BIN/query" --index "$FIX/index" --serve "$EP" 2>"$BATS_TEST_TMPDIR/serve.log" 3>&- &
    SERVER_PID=$!
    wait_for_line "$BATS_TEST_TMPDIR/serve.log" "serving"
}

# stop_server : SIGTERM, and the server must exit 0.
stop_server() {
    kill -TERM "$SERVER_PID"
    local rc=0
    wait "$SERVER_PID" || rc=$?
    SERVER_PID=
    cat "$BATS_TEST_TMPDIR/serve.log" >&2
    [ "$rc" -eq 0 ]
}

@test "query --help exits 0 and prints usage" {
    run "$BIN/query" --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"usage: query"* ]]
}

@test "query with an unknown option exits 64" {
    run "$BIN/query" --no-such-option --index "$FIX/index" "$FIX/queries.frames"
    [ "$status" -eq 64 ]
}

@test "query result frames validate against the schemas" {
    validate --expect results "$FIX/res" "$FIX/gt"
    run show_frames "$FIX/res"
    [ "${#lines[@]}" -eq 152 ]
    [[ "${lines[0]}" == *'"k": 10, "metric": "l2", "count": 150'* ]]
    [[ "${lines[1]}" == *'"qid": 0, "ids": {"$bin": 40}, "dists": {"$bin": 40}'* ]]
}

@test "query -k 3 answers 3 neighbours per query" {
    "$BIN/query" -k 3 --index "$FIX/index" -o "$BATS_TEST_TMPDIR/r3" "$FIX/queries.frames" 2>/dev/null
    validate "$BATS_TEST_TMPDIR/r3"
    run show_frames "$BATS_TEST_TMPDIR/r3"
    [[ "${lines[0]}" == *'"k": 3'* ]]
    [[ "${lines[5]}" == *'"ids": {"$bin": 12}'* ]]
}

@test "query --no-reorder gives the same bytes as the default (nodes renumbered in memory)" {
    "$BIN/query" --index "$FIX/index" --no-reorder -o "$BATS_TEST_TMPDIR/plain" "$FIX/queries.frames" 2>/dev/null
    cmp "$BATS_TEST_TMPDIR/plain" "$FIX/res"
    "$BIN/graph-build" --compress int8 -o "$BATS_TEST_TMPDIR/i8" "$FIX/base.frames" 2>/dev/null
    "$BIN/query" --index "$BATS_TEST_TMPDIR/i8" --rerank 12 -o "$BATS_TEST_TMPDIR/a" "$FIX/queries.frames" 2>/dev/null
    "$BIN/query" --index "$BATS_TEST_TMPDIR/i8" --rerank 12 --no-reorder -o "$BATS_TEST_TMPDIR/b" "$FIX/queries.frames" 2>/dev/null
    cmp "$BATS_TEST_TMPDIR/a" "$BATS_TEST_TMPDIR/b"
}

@test "query on lossless int8 codes (8-bit data) answers as re-ranking from the vectors does, without reading them" {
    $GEN -n 2000 -d 16 --seed 21 --integer "$BATS_TEST_TMPDIR/b8.frames"
    $GEN -n 150 -d 16 --seed 22 --integer "$BATS_TEST_TMPDIR/q8.frames"
    "$BIN/graph-build" --compress int8 -o "$BATS_TEST_TMPDIR/i8" "$BATS_TEST_TMPDIR/b8.frames" 2>/dev/null
    "$BIN/query" --index "$BATS_TEST_TMPDIR/i8" --ef 20 --rerank 10 -o "$BATS_TEST_TMPDIR/a" \
        "$BATS_TEST_TMPDIR/q8.frames" 2>"$BATS_TEST_TMPDIR/a.log"
    "$BIN/query" --index "$BATS_TEST_TMPDIR/i8" --ef 20 --rerank 10 --rerank-vectors -o "$BATS_TEST_TMPDIR/b" \
        "$BATS_TEST_TMPDIR/q8.frames" 2>"$BATS_TEST_TMPDIR/b.log"
    cmp "$BATS_TEST_TMPDIR/a" "$BATS_TEST_TMPDIR/b"
    # same traversal; re-ranking from vectors adds 10 distances a query
    da=$(sed -n 's/.* \([0-9.]*\) mean distance computations.*/\1/p' "$BATS_TEST_TMPDIR/a.log")
    db=$(sed -n 's/.* \([0-9.]*\) mean distance computations.*/\1/p' "$BATS_TEST_TMPDIR/b.log")
    awk -v a="$da" -v b="$db" 'BEGIN { exit !(b - a == 10) }'
}

@test "cat index queries | query gives the same bytes as query --index" {
    cat "$FIX/index" "$FIX/queries.frames" | "$BIN/query" >"$BATS_TEST_TMPDIR/piped" 2>/dev/null
    cmp "$BATS_TEST_TMPDIR/piped" "$FIX/res"
}

@test "query reads a stream of single query frames like a stream of batches" {
    $GEN -n 150 -d 16 --seed 22 -f query-frames "$BATS_TEST_TMPDIR/q.frames"
    validate "$BATS_TEST_TMPDIR/q.frames"
    "$BIN/query" --index "$FIX/index" -o "$BATS_TEST_TMPDIR/r" "$BATS_TEST_TMPDIR/q.frames" 2>/dev/null
    same_results "$BATS_TEST_TMPDIR/r" "$FIX/res"
}

@test "query --exact returns the true nearest neighbours (numpy brute force)" {
    frames_to_npy "$FIX/index" "$BATS_TEST_TMPDIR/base.npy"
    $PY - "$BATS_TEST_TMPDIR/base.npy" "$FIX/queries.npy" "$FIX/gt" <<'EOF'
import sys, msgpack, numpy as np
x = np.load(sys.argv[1]).astype(np.float64)
q = np.load(sys.argv[2]).astype(np.float64)
d = (q * q).sum(1)[:, None] + (x * x).sum(1)[None, :] - 2 * q @ x.T
res = [f for f in msgpack.Unpacker(open(sys.argv[3], "rb"), raw=False) if f["t"] == "result"]
assert len(res) == len(q), len(res)
mism = 0
for f in res:
    i = f["qid"]
    ids = np.frombuffer(f["ids"], "<u4")
    dists = np.frombuffer(f["dists"], "<f4")
    true = np.sort(d[i])[:10]
    # same distances in the same order (ties may swap ids), reported ones exact
    if len(ids) != 10 or not np.allclose(d[i][ids], true, rtol=1e-4, atol=1e-4):
        sys.exit(f"qid {i}: ids {ids} are not the 10 nearest")
    if not np.allclose(dists, d[i][ids], rtol=1e-4, atol=1e-4):
        sys.exit(f"qid {i}: distances {dists} differ from {d[i][ids]}")
    mism += int((ids != np.argsort(d[i], kind="stable")[:10]).sum())
assert mism <= 2, f"{mism} ids differ from numpy's order"
EOF
}

@test "query --exact with --metric ip ranks by largest inner product" {
    "$BIN/graph-build" --metric ip -o "$BATS_TEST_TMPDIR/ip" "$FIX/base.frames" 2>/dev/null
    "$BIN/query" --exact -k 5 --index "$BATS_TEST_TMPDIR/ip" -o "$BATS_TEST_TMPDIR/gt" \
        "$FIX/queries.frames" 2>/dev/null
    $PY - "$FIX/base.npy" "$FIX/queries.npy" "$BATS_TEST_TMPDIR/gt" <<'EOF'
import sys, msgpack, numpy as np
x = np.load(sys.argv[1]).astype(np.float64)
q = np.load(sys.argv[2]).astype(np.float64)
s = q @ x.T
for f in msgpack.Unpacker(open(sys.argv[3], "rb"), raw=False):
    if f["t"] != "result":
        continue
    i = f["qid"]
    ids = np.frombuffer(f["ids"], "<u4")
    if not np.allclose(s[i][ids], -np.sort(-s[i])[:5], rtol=1e-4, atol=1e-4):
        sys.exit(f"qid {i}: ids {ids} are not the 5 largest inner products")
EOF
}

@test "query --threads 2 gives results identical to --threads 1" {
    "$BIN/query" --threads 2 --index "$FIX/index" -o "$BATS_TEST_TMPDIR/t2" "$FIX/queries.frames" 2>/dev/null
    cmp "$BATS_TEST_TMPDIR/t2" "$FIX/res"
}

@test "query prints a summary line with QPS on stderr" {
    run --separate-stderr "$BIN/query" --index "$FIX/index" -o "$BATS_TEST_TMPDIR/r" "$FIX/queries.frames"
    [ "$status" -eq 0 ]
    [ "${#stderr_lines[@]}" -eq 1 ]
    [[ "$stderr" == *"150 queries"* ]]
    [[ "$stderr" == *"QPS"* ]]
}

@test "query --serve answers over ZeroMQ the same results as the stdin path; SIGTERM exits 0" {
    start_server
    run --separate-stderr timeout 30 "$BIN/query" --connect "$EP" -o "$BATS_TEST_TMPDIR/zmq" <"$FIX/queries.frames"
    echo "$stderr"
    [ "$status" -eq 0 ]
    [[ "$stderr" == *QPS* ]]
    same_results "$BATS_TEST_TMPDIR/zmq" "$FIX/res"
    stop_server
}

@test "query --connect writes a results stream that validates against the schemas" {
    start_server
    timeout 30 "$BIN/query" --connect "$EP" -o "$BATS_TEST_TMPDIR/zmq" <"$FIX/queries.frames" 2>/dev/null
    stop_server
    validate --expect results "$BATS_TEST_TMPDIR/zmq"
}

@test "query --serve answers a malformed request with an error frame and keeps serving" {
    start_server
    $PY - "$EP" "$FIX/queries.npy" "$FIX/res" "$BATS_TEST_TMPDIR" <<'EOF'
import sys, zmq, msgpack, numpy as np
ep, qpath, respath, tmp = sys.argv[1:5]
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 0)
s.setsockopt(zmq.RCVTIMEO, 5000)
s.connect(ep)

def ask(payload):
    s.send_multipart([b"", payload])
    parts = s.recv_multipart()
    assert parts[0] == b"" and len(parts) == 2, parts
    return parts[1]

# 1. garbage bytes: 0xc1 is never valid MessagePack
raw = ask(b"\xc1 this is not msgpack \x00\xff")
open(f"{tmp}/err1", "wb").write(raw)
r = msgpack.unpackb(raw, raw=False)
assert r["t"] == "error" and r["msg"], r
# 2. a frame of the wrong type, with a qid to echo
r = msgpack.unpackb(ask(msgpack.packb({"t": "vectors", "qid": 4}, use_bin_type=True)), raw=False)
assert r["t"] == "error" and r.get("qid") == 4, r
# 3. a query of the wrong dimension
r = msgpack.unpackb(ask(msgpack.packb({"t": "query", "qid": 5, "vec": b"\0" * 12},
                                      use_bin_type=True)), raw=False)
assert r["t"] == "error" and r.get("qid") == 5, r
open(f"{tmp}/err3", "wb").write(msgpack.packb(r, use_bin_type=True))
# 4. a valid query afterwards gets the same answer as the stdin path
q = np.load(qpath)
want = {f["qid"]: f for f in msgpack.Unpacker(open(respath, "rb"), raw=False)
        if f["t"] == "result"}
for i in (0, 7):
    raw = ask(msgpack.packb({"t": "query", "qid": 1000 + i, "vec": q[i].tobytes()},
                            use_bin_type=True))
    r = msgpack.unpackb(raw, raw=False)
    assert r["t"] == "result" and r["qid"] == 1000 + i, r
    assert r["ids"] == want[i]["ids"] and r["dists"] == want[i]["dists"], (i, r)
open(f"{tmp}/ok", "wb").write(raw)
EOF
    $VALIDATE --single "$BATS_TEST_TMPDIR/err1" "$BATS_TEST_TMPDIR/err3" "$BATS_TEST_TMPDIR/ok"
    stop_server
}

@test "query --connect --request-size N (batch requests) gives the same bytes as one query a request" {
    start_server
    local n
    for n in 1 7 150 500; do
        timeout 30 "$BIN/query" --connect "$EP" --request-size "$n" -o "$BATS_TEST_TMPDIR/r$n" \
            <"$FIX/queries.frames" 2>/dev/null
    done
    stop_server
    cmp "$BATS_TEST_TMPDIR/r1" "$BATS_TEST_TMPDIR/r7"
    cmp "$BATS_TEST_TMPDIR/r1" "$BATS_TEST_TMPDIR/r150"
    cmp "$BATS_TEST_TMPDIR/r1" "$BATS_TEST_TMPDIR/r500"
    same_results "$BATS_TEST_TMPDIR/r7" "$FIX/res"
}

@test "query --connect --in-flight N keeps N queries in flight across input frames; the answers keep input order" {
    "$BIN/embed-load" --batch 7 -o "$BATS_TEST_TMPDIR/q7.frames" "$FIX/queries.npy"
    start_server
    local w rs
    for w in 1 12 4000; do
        for rs in 1 4; do
            timeout 30 "$BIN/query" --connect "$EP" --in-flight "$w" --request-size "$rs" \
                -o "$BATS_TEST_TMPDIR/w$w-$rs" <"$BATS_TEST_TMPDIR/q7.frames" 2>/dev/null
        done
    done
    stop_server
    for w in 1 12 4000; do
        for rs in 1 4; do
            same_results "$BATS_TEST_TMPDIR/w$w-$rs" "$FIX/res"
        done
    done
    cmp "$BATS_TEST_TMPDIR/w1-1" "$BATS_TEST_TMPDIR/w4000-4"
    run --separate-stderr "$BIN/query" --index "$FIX/index" --in-flight 4 "$FIX/queries.frames"
    [ "$status" -eq 64 ] && [[ "$stderr" == *"--in-flight is for --connect"* ]]
    run --separate-stderr "$BIN/query" --connect "$EP" --in-flight 0 "$FIX/queries.frames"
    [ "$status" -eq 64 ]
}

@test "query --serve answers bad queries frames with an error frame and keeps serving; a good one validates" {
    start_server
    $PY - "$EP" "$FIX/queries.npy" "$FIX/res" "$BATS_TEST_TMPDIR" <<'EOF2'
import sys, zmq, msgpack, numpy as np
ep, qpath, respath, tmp = sys.argv[1:5]
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 0)
s.setsockopt(zmq.RCVTIMEO, 5000)
s.connect(ep)

def ask(req):
    s.send_multipart([b"", msgpack.packb(req, use_bin_type=True)])
    parts = s.recv_multipart()
    assert parts[0] == b"" and len(parts) == 2, parts
    return parts[1], msgpack.unpackb(parts[1], raw=False)

q = np.load(qpath).astype("<f4")
bad = [({"t": "queries", "qid": 1, "vecs": q[:3].tobytes()}, "needs n"),                 # no n
       ({"t": "queries", "qid": 2, "n": 0, "vecs": b""}, "needs n"),                     # n = 0
       ({"t": "queries", "qid": 3, "n": 4, "vecs": q[:3].tobytes()}, "bytes"),           # n != rows
       ({"t": "queries", "qid": 4, "n": 2, "vecs": q[:2].tobytes()[:-2]}, "bytes"),      # cut
       ({"t": "queries", "qid": 5, "n": 2}, "lacks"),                                    # no vecs
       ({"t": "queries", "qid": 6, "n": 2, "vecs": q[:2].tobytes(), "k": 0}, "limits")]
nan = q[:2].copy()
nan[1, 3] = np.nan
bad.append(({"t": "queries", "qid": 7, "n": 2, "vecs": nan.tobytes()}, "row 1: NaN"))
for req, what in bad:
    raw, r = ask(req)
    assert r["t"] == "error" and r.get("qid") == req["qid"] and what in r["msg"], (req["qid"], r)
open(f"{tmp}/err", "wb").write(raw)
want = [f for f in msgpack.Unpacker(open(respath, "rb"), raw=False) if f["t"] == "result"]
raw, r = ask({"t": "queries", "qid": 40, "n": 5, "vecs": q[10:15].tobytes()})
assert r["t"] == "results" and r["qid"] == 40 and r["n"] == 5, r
counts = np.frombuffer(r["counts"], "<u4")
ids, dists = r["ids"], r["dists"]
o = 0
for i, c in enumerate(counts):
    w = want[10 + i]
    assert ids[4 * o:4 * (o + c)] == w["ids"] and dists[4 * o:4 * (o + c)] == w["dists"], i
    o += c
assert 4 * o == len(ids) == len(dists)
open(f"{tmp}/ok", "wb").write(raw)
EOF2
    $VALIDATE --single "$BATS_TEST_TMPDIR/err" "$BATS_TEST_TMPDIR/ok"
    stop_server
}

# ---- bad input: one line on stderr naming input and frame, no output ----

@test "query fails on an index cut in the middle, naming the frame, and leaves no output" {
    cut_file "$FIX/index" "$BATS_TEST_TMPDIR/cut.idx"
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/cut.idx" -o "$BATS_TEST_TMPDIR/out" \
        "$FIX/queries.frames"
    assert_one_error_line cut.idx 'frame [0-9]+.*trunc'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "query fails on an index with one byte flipped in the middle and leaves no output" {
    flip_byte "$FIX/index" $(($(stat -c %s "$FIX/index") / 2)) "$BATS_TEST_TMPDIR/bad.idx"
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/bad.idx" -o "$BATS_TEST_TMPDIR/out" \
        "$FIX/queries.frames"
    assert_one_error_line bad.idx 'frame [0-9]+'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "query fails with a checksum error on an index with one vector byte flipped" {
    # byte 1000 lies inside the first vectors frame's f32 data: still decodes
    flip_byte "$FIX/index" 1000 "$BATS_TEST_TMPDIR/bad.idx"
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/bad.idx" -o "$BATS_TEST_TMPDIR/out" \
        "$FIX/queries.frames"
    assert_one_error_line bad.idx 'frame [0-9]+.*checksum'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "query fails on an index whose vectors frame has one float too many" {
    $PY - "$FIX/index" "$BATS_TEST_TMPDIR/bad.idx" <<'EOF'
import sys, zlib, msgpack
fr = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
fr[1]["data"] += b"\0\0\0\0"
body = b"".join(msgpack.packb(f, use_bin_type=True) for f in fr[:-1])
end = dict(fr[-1], checksum=zlib.crc32(body))
open(sys.argv[2], "wb").write(body + msgpack.packb(end, use_bin_type=True))
EOF
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/bad.idx" -o "$BATS_TEST_TMPDIR/out" \
        "$FIX/queries.frames"
    assert_one_error_line bad.idx 'frame 2'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "query fails on a vector stream given as --index and leaves no output" {
    run --separate-stderr "$BIN/query" --index "$FIX/base.frames" -o "$BATS_TEST_TMPDIR/out" \
        "$FIX/queries.frames"
    assert_one_error_line base.frames 'frame 1'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "query fails on queries of the wrong dimension and leaves no output" {
    $GEN -n 20 -d 8 "$BATS_TEST_TMPDIR/q8.frames"
    run --separate-stderr "$BIN/query" --index "$FIX/index" -o "$BATS_TEST_TMPDIR/out" \
        "$BATS_TEST_TMPDIR/q8.frames"
    assert_one_error_line q8.frames 'frame 1.*dimension'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "query fails on a truncated query stream and leaves no output" {
    $GEN -n 20 -d 16 --no-end "$BATS_TEST_TMPDIR/qcut.frames"
    run --separate-stderr "$BIN/query" --index "$FIX/index" -o "$BATS_TEST_TMPDIR/out" \
        "$BATS_TEST_TMPDIR/qcut.frames"
    assert_one_error_line qcut.frames 'frame 3.*trunc'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "query fails on a NaN in a query and leaves no output" {
    $GEN -n 20 -d 16 --nan 13 "$BATS_TEST_TMPDIR/qnan.frames"
    run --separate-stderr "$BIN/query" --index "$FIX/index" -o "$BATS_TEST_TMPDIR/out" \
        "$BATS_TEST_TMPDIR/qnan.frames"
    assert_one_error_line qnan.frames 'frame 2.*row 13'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "query fails on an empty index input, naming frame 1" {
    : >"$BATS_TEST_TMPDIR/empty"
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/empty" -o "$BATS_TEST_TMPDIR/out" \
        "$FIX/queries.frames"
    assert_one_error_line empty 'frame 1'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "query fails on an index frame over --max-frame and leaves no output" {
    run --separate-stderr "$BIN/query" --max-frame 1000 --index "$FIX/index" -o "$BATS_TEST_TMPDIR/out" \
        "$FIX/queries.frames"
    assert_one_error_line index 'frame 2.*size limit'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}
