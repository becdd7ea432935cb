#!/usr/bin/env bats
# query --fanout: the front end of a sharded index (libcommon/fanout.c), over
# shards built by pipelines/shard-build.sh and served by query --serve.

load helpers

CLIENT="$PY $REPO/tests/fanout_client.py"

setup_file() {
    need_bins embed-load graph-build query recall
    $GEN -n 4000 -d 16 --seed 31 "$FIX/base.npy"
    $GEN -n 200 -d 16 --seed 32 "$FIX/queries.npy"
    "$BIN/embed-load" -o "$FIX/queries.frames" "$FIX/queries.npy"
    "$BIN/embed-load" "$FIX/base.npy" | "$BIN/graph-build" -t 1 -o "$FIX/all.idx" 2>/dev/null
    "$BIN/query" --index "$FIX/all.idx" --exact -o "$FIX/gt" "$FIX/queries.frames" 2>/dev/null
    BIN="$BIN" sh "$REPO/pipelines/shard-build.sh" "$FIX/base.npy" 2 "$FIX/s2" -t 1 2>/dev/null
    BIN="$BIN" sh "$REPO/pipelines/shard-build.sh" "$FIX/base.npy" 4 "$FIX/s4" -t 1 2>/dev/null
    # the clustered set of the bench, small
    $PY "$REPO/bench/gen_clustered.py" --n 4000 --nq 200 --dim 32 --seed 33 --out "$FIX/cl" >/dev/null 2>&1
    "$BIN/embed-load" -o "$FIX/cl/queries.frames" "$FIX/cl/queries.fvecs"
    "$BIN/embed-load" "$FIX/cl/base.fvecs" | "$BIN/graph-build" -t 1 -o "$FIX/cl/all.idx" 2>/dev/null
    "$BIN/query" --index "$FIX/cl/all.idx" --exact -o "$FIX/cl/gt" "$FIX/cl/queries.frames" 2>/dev/null
    BIN="$BIN" sh "$REPO/pipelines/shard-build.sh" "$FIX/cl/base.fvecs" 2 "$FIX/cl/s2" -t 1 2>/dev/null
    BIN="$BIN" sh "$REPO/pipelines/shard-build.sh" "$FIX/cl/base.fvecs" 4 "$FIX/cl/s4" -t 1 2>/dev/null
}

PIDS=()

teardown() {
    local p
    for p in "${PIDS[@]}"; do
        kill -CONT "$p" 2>/dev/null || true
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}

# serve NAME INDEX [query options] : a shard server on a free port; sets
# EP_<NAME> and PID_<NAME>, returns once it serves
serve() {
    local name=$1 idx=$2 port
    shift 2
    port="$(free_port)"
    "$BIN/query" --index "$idx" --serve "tcp://127.0.0.1:$port" "$@" 2>"$BATS_TEST_TMPDIR/$name.log" 3>&- &
    PIDS+=($!)
    printf -v "PID_$name" '%s' "$!"
    printf -v "EP_$name" '%s' "tcp://127.0.0.1:$port"
    wait_for_line "$BATS_TEST_TMPDIR/$name.log" "serving"
}

# front SPEC [options] : the front end on a free port; sets FRONT and PID_front
front() {
    local spec=$1 port
    shift
    port="$(free_port)"
    FRONT="tcp://127.0.0.1:$port"
    "$BIN/query" --fanout "$spec" --serve "$FRONT" "$@" 2>"$BATS_TEST_TMPDIR/front.log" 3>&- &
    PIDS+=($!)
    PID_front=$!
    wait_for_line "$BATS_TEST_TMPDIR/front.log" "fan-out serving"
}

# shards DIR N : serve DIR/shard-<i>.idx, i < N; sets SPEC (one replica each)
shards() {
    local i
    SPEC=""
    for ((i = 0; i < $2; i++)); do
        serve "s$i" "$1/shard-$i.idx"
        local v="EP_s$i"
        SPEC="$SPEC${SPEC:+,}${!v}"
    done
}

# json_field JSON KEY : one value of the client's summary line
json_field() {
    $PY -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

# queries_served EP : the "queries" counter of a server's stats answer
queries_served() {
    $PY -c '
import sys, msgpack, zmq
s = zmq.Context().socket(zmq.DEALER)
s.connect(sys.argv[1])
s.send_multipart([b"", msgpack.packb({"t": "stats"})])
assert s.poll(3000), "no stats answer"
print(msgpack.unpackb(s.recv_multipart()[-1], raw=False)["queries"])' "$1"
}

# recall_of RESULTS GT
recall_of() {
    "$BIN/recall" --gt "$2" "$1" | awk '{print $2}'
}

@test "query --help documents --fanout, --shard-timeout and the --curve options" {
    run "$BIN/query" --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"--fanout SPEC"* ]]
    [[ "$output" == *"--shard-timeout MS"* ]]
    [[ "$output" == *"--curve-allow DIR"* ]]
}

@test "query --fanout without --serve, with an index, or with an empty shard is a usage error (one line, 64)" {
    run --separate-stderr "$BIN/query" --fanout tcp://127.0.0.1:1
    assert_one_error_line query "needs --serve"
    [ "$status" -eq 64 ]
    run --separate-stderr "$BIN/query" --fanout "tcp://127.0.0.1:1,,tcp://127.0.0.1:2" --serve tcp://127.0.0.1:3
    assert_one_error_line query "shard 1 is empty"
    [ "$status" -eq 64 ]
    run --separate-stderr "$BIN/query" --fanout "tcp://127.0.0.1:1|" --serve tcp://127.0.0.1:3
    assert_one_error_line query "empty replica"
    run --separate-stderr "$BIN/query" --fanout "127.0.0.1:1" --serve tcp://127.0.0.1:3
    assert_one_error_line query "not a tcp://"
}

@test "embed-load --shard I/N keeps rows r % N == I with their row numbers as ids; a bad I/N is a usage error" {
    "$BIN/embed-load" --shard 1/3 -o "$BATS_TEST_TMPDIR/s.frames" "$FIX/base.npy"
    validate --expect vectors "$BATS_TEST_TMPDIR/s.frames"
    $PY - "$BATS_TEST_TMPDIR/s.frames" "$FIX/base.npy" <<'EOF'
import sys, msgpack, numpy as np
x = np.load(sys.argv[2])
ids, rows = [], []
for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False):
    if f["t"] == "vectors":
        ids += np.frombuffer(f["ids"], "<u8").tolist()
        rows.append(np.frombuffer(f["data"], "<f4").reshape(f["n"], -1))
    if f["t"] == "header":
        assert f["count"] == len(range(1, len(x), 3)), f
assert ids == list(range(1, len(x), 3)), ids[:5]
assert (np.concatenate(rows) == x[1::3]).all()
EOF
    run --separate-stderr "$BIN/embed-load" --shard 3/3 "$FIX/base.npy"
    assert_one_error_line embed-load "--shard is I/N"
    [ "$status" -eq 64 ]
}

@test "fan-out over exact shards answers exactly what exact search over the union answers (global ids)" {
    local i v
    SPEC=""
    for i in 0 1 2 3; do
        serve "s$i" "$FIX/s4/shard-$i.idx" --exact
        v="EP_s$i"
        SPEC="$SPEC${SPEC:+,}${!v}"
    done
    front "$SPEC"
    "$BIN/query" --connect "$FRONT" -o "$BATS_TEST_TMPDIR/r" "$FIX/queries.frames" 2>/dev/null
    validate --expect results "$BATS_TEST_TMPDIR/r"
    $PY - "$BATS_TEST_TMPDIR/r" "$FIX/gt" <<'EOF'
import sys, msgpack, numpy as np
def res(p, w):
    return {f["qid"]: (np.frombuffer(f["ids"], w).astype(np.int64), np.frombuffer(f["dists"], "<f4"))
            for f in msgpack.Unpacker(open(p, "rb"), raw=False) if f["t"] == "result"}
a, b = res(sys.argv[1], "<u8"), res(sys.argv[2], "<u4")
assert len(a) == len(b) == 200
bad = sum(1 for q in a if not (np.allclose(a[q][1], b[q][1], rtol=1e-5) and set(a[q][0]) == set(b[q][0])))
assert bad <= 2, f"{bad} queries differ"   # ties at the k-th distance may swap ids
EOF
}

@test "recall@10 of 2 and 4 shards equals the union index's within 0.005 at ef 64, never below it at ef 10 (gaussian and clustered)" {
    local set S ef r1 rs q
    for set in . cl; do
        q="$FIX/$set/queries.frames"
        [ "$set" != . ] || q="$FIX/queries.frames"
        for ef in 64 10; do
            "$BIN/query" --index "$FIX/$set/all.idx" --ef $ef -o "$BATS_TEST_TMPDIR/r1" "$q" 2>/dev/null
            r1=$(recall_of "$BATS_TEST_TMPDIR/r1" "$FIX/$set/gt")
            for S in 2 4; do
                shards "$FIX/$set/s$S" $S
                front "$SPEC"
                "$BIN/query" --connect "$FRONT" --ef $ef -o "$BATS_TEST_TMPDIR/rs" "$q" 2>/dev/null
                rs=$(recall_of "$BATS_TEST_TMPDIR/rs" "$FIX/$set/gt")
                echo "set $set ef $ef: one index $r1, $S shards $rs" >&2
                if [ $ef = 64 ]; then
                    awk -v a="$r1" -v b="$rs" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.005) }'
                else
                    awk -v a="$r1" -v b="$rs" 'BEGIN { exit !(b >= a) }'
                fi
                teardown
            done
        done
    done
}

@test "fan-out answers batch requests (--request-size) with the bytes of one query a request; a batch missing a shard is partial" {
    shards "$FIX/s2" 2
    front "$SPEC" --shard-timeout 200
    local n
    for n in 1 16 200; do
        "$BIN/query" --connect "$FRONT" --request-size "$n" -o "$BATS_TEST_TMPDIR/r$n" \
            "$FIX/queries.frames" 2>/dev/null
    done
    cmp "$BATS_TEST_TMPDIR/r1" "$BATS_TEST_TMPDIR/r16"
    cmp "$BATS_TEST_TMPDIR/r1" "$BATS_TEST_TMPDIR/r200"
    validate --expect results "$BATS_TEST_TMPDIR/r16"
    awk -v r="$(recall_of "$BATS_TEST_TMPDIR/r16" "$FIX/gt")" 'BEGIN { exit !(r >= 0.99) }'
    # a batch of 3 the shards reject: their error comes back with the qid
    $PY - "$FRONT" <<'EOF2'
import sys, zmq, msgpack
s = zmq.Context().socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 0)
s.connect(sys.argv[1])
for req, what in (({"t": "queries", "qid": 9, "n": 3, "vecs": b"\0" * 12}, "bytes"),
                  ({"t": "queries", "qid": 10, "vecs": b"\0" * 64}, "needs n")):
    s.send_multipart([b"", msgpack.packb(req, use_bin_type=True)])
    assert s.poll(5000), "no answer"
    r = msgpack.unpackb(s.recv_multipart()[-1], raw=False)
    assert r["t"] == "error" and r.get("qid") == req["qid"] and what in r["msg"], r
EOF2
    kill -STOP "$PID_s1"
    "$BIN/query" --connect "$FRONT" --request-size 50 -o "$BATS_TEST_TMPDIR/rp" \
        "$FIX/queries.frames" 2>"$BATS_TEST_TMPDIR/c.log"
    kill -CONT "$PID_s1"
    validate --expect results "$BATS_TEST_TMPDIR/rp"
    grep -q "200 answers partial" "$BATS_TEST_TMPDIR/c.log"
    [ "$(show_frames "$BATS_TEST_TMPDIR/rp" | grep -c '"partial": true, "missing": \[1\]')" -eq 200 ]
}

@test "fan-out answers info with the union's size and u64 ids, stats with its own counters" {
    shards "$FIX/s2" 2
    front "$SPEC"
    $PY - "$FRONT" <<'EOF'
import sys, msgpack, zmq
s = zmq.Context().socket(zmq.DEALER)
s.connect(sys.argv[1])
for req in ({"t": "info"}, {"t": "stats"}):
    s.send_multipart([b"", msgpack.packb(req)])
    assert s.poll(5000), "no answer"
    f = msgpack.unpackb(s.recv_multipart()[-1], raw=False)
    print(f)
    if req["t"] == "info":
        assert f["count"] == 4000 and f["dim"] == 16 and f["ids"] == "u64" and f["shards"] == 2, f
    else:
        assert f["t"] == "stats" and f["count"] == 4000, f
EOF
}

@test "fan-out passes a bad request's error back with its qid and keeps serving" {
    shards "$FIX/s2" 2
    front "$SPEC"
    $PY - "$FRONT" <<'EOF'
import sys, msgpack, numpy as np, zmq
s = zmq.Context().socket(zmq.DEALER)
s.connect(sys.argv[1])
def ask(req):
    s.send_multipart([b"", req if isinstance(req, bytes) else msgpack.packb(req, use_bin_type=True)])
    assert s.poll(5000), "no answer"
    return msgpack.unpackb(s.recv_multipart()[-1], raw=False)
f = ask({"t": "query", "qid": 7, "vec": np.zeros(3, "<f4").tobytes()})
assert f["t"] == "error" and f["qid"] == 7 and "dimension" in f["msg"], f
f = ask(b"\xc1 not msgpack")
assert f["t"] == "error", f
f = ask({"t": "query", "qid": 8, "vec": np.zeros(16, "<f4").tobytes(), "k": 0})
assert f["t"] == "error" and f["qid"] == 8, f
f = ask({"t": "nonsense", "qid": 9})
assert f["t"] == "error" and f["qid"] == 9, f
f = ask({"t": "query", "qid": 10, "vec": np.ones(16, "<f4").tobytes(), "k": 5})
assert f["t"] == "result" and f["qid"] == 10 and len(f["ids"]) == 40 and "partial" not in f, f
EOF
}

@test "fan-out refuses shards without external ids at start (one line, non-zero)" {
    serve plain "$FIX/all.idx"
    run --separate-stderr "$BIN/query" --fanout "$EP_plain" --serve "tcp://127.0.0.1:$(free_port)"
    [ "$status" -ne 0 ]
    [[ "$stderr" == *"no external ids"* ]]
    [[ "${stderr_lines[-1]}" == *"shard 0"* ]]
}

@test "SIGKILL of one shard under load: every request answered within the time-out, the dead shard's marked partial, none lost" {
    shards "$FIX/s2" 2
    front "$SPEC" --shard-timeout 300
    run $CLIENT "$FRONT" "$FIX/queries.npy" -n 1500 --rate 1000 --signal KILL --pid "$PID_s1" --after 0.5 --deadline 3
    echo "$output" >&2
    [ "$status" -eq 0 ]
    [ "$(json_field "$output" lost)" -eq 0 ]
    [ "$(json_field "$output" dup)" -eq 0 ]
    [ "$(json_field "$output" errors)" -eq 0 ]
    [ "$(json_field "$output" partial)" -gt 500 ]
    [ "$(json_field "$output" missing)" = "[1]" ]
    # answers of the killed shard's last requests waited for the time-out, no more
    awk -v m="$(json_field "$output" max_ms)" 'BEGIN { exit !(m < 300 + 250) }'
}

@test "a stopped shard (SIGSTOP) makes answers partial after --shard-timeout (kept by query --connect); whole again after SIGCONT" {
    shards "$FIX/s2" 2
    front "$SPEC" --shard-timeout 200
    kill -STOP "$PID_s0"
    run $CLIENT "$FRONT" "$FIX/queries.npy" -n 20 --deadline 3 --save-partial "$BATS_TEST_TMPDIR/partial.frame"
    echo "$output" >&2
    # a connected but stopped shard costs the time-out
    awk -v m="$(json_field "$output" p50_ms)" 'BEGIN { exit !(m >= 190 && m < 450) }'
    validate --single "$BATS_TEST_TMPDIR/partial.frame"
    run show_frames "$BATS_TEST_TMPDIR/partial.frame"
    [[ "$output" == *'"partial": true, "missing": [0]'* ]]
    # query --connect keeps the marks in its results stream and counts them
    "$BIN/query" --connect "$FRONT" -o "$BATS_TEST_TMPDIR/r" "$FIX/queries.frames" 2>"$BATS_TEST_TMPDIR/c.log"
    validate --expect results "$BATS_TEST_TMPDIR/r"
    grep -q "200 answers partial" "$BATS_TEST_TMPDIR/c.log"
    [ "$(show_frames "$BATS_TEST_TMPDIR/r" | grep -c '"partial": true, "missing": \[0\]')" -eq 200 ]
    run $CLIENT "$FRONT" "$FIX/queries.npy" -n 20 --deadline 3
    echo "$output" >&2
    [ "$(json_field "$output" answered)" -eq 20 ]
    [ "$(json_field "$output" partial)" -eq 20 ]
    [ "$(json_field "$output" missing)" = "[0]" ]
    # by now the heartbeat (1.5 s) may have declared the shard gone, and then
    # its part is missing at once: no more than the time-out either way
    awk -v m="$(json_field "$output" p50_ms)" 'BEGIN { exit !(m < 450) }'
    kill -CONT "$PID_s0"
    sleep 0.3
    run $CLIENT "$FRONT" "$FIX/queries.npy" -n 200 --deadline 3
    echo "$output" >&2
    [ "$(json_field "$output" answered)" -eq 200 ]
    [ "$(json_field "$output" partial)" -eq 0 ]
}

@test "SIGKILL of one of two replicas under load: no error, no partial answer, none lost; recall unchanged" {
    serve a "$FIX/s2/shard-0.idx"
    serve b "$FIX/s2/shard-0.idx"
    serve c "$FIX/s2/shard-1.idx"
    front "$EP_a|$EP_b,$EP_c" --shard-timeout 2000
    run $CLIENT "$FRONT" "$FIX/queries.npy" -n 1500 --rate 1000 --signal KILL --pid "$PID_a" --after 0.5 --deadline 4
    echo "$output" >&2
    [ "$(json_field "$output" lost)" -eq 0 ]
    [ "$(json_field "$output" errors)" -eq 0 ]
    [ "$(json_field "$output" partial)" -eq 0 ]
    grep -q "disconnected: its requests go to the other replicas" "$BATS_TEST_TMPDIR/front.log"
    "$BIN/query" --connect "$FRONT" -o "$BATS_TEST_TMPDIR/r" "$FIX/queries.frames" 2>/dev/null
    awk -v r="$(recall_of "$BATS_TEST_TMPDIR/r" "$FIX/gt")" 'BEGIN { exit !(r >= 0.99) }'
}

@test "requests are spread over a shard's replicas" {
    serve a "$FIX/s2/shard-0.idx"
    serve b "$FIX/s2/shard-0.idx"
    serve c "$FIX/s2/shard-1.idx"
    front "$EP_a|$EP_b,$EP_c"
    run $CLIENT "$FRONT" "$FIX/queries.npy" -n 2000 --window 32 --deadline 3
    [ "$(json_field "$output" answered)" -eq 2000 ]
    local sa sb
    sa=$(queries_served "$EP_a")
    sb=$(queries_served "$EP_b")
    echo "replica a $sa, replica b $sb queries" >&2
    [ $((sa + sb)) -eq 2000 ]
    [ "$sa" -ge 600 ] && [ "$sb" -ge 600 ]
}

@test "--hedge: a stopped but connected replica costs the hedge delay, not --shard-timeout; no partial answer" {
    serve a "$FIX/s2/shard-0.idx"
    serve b "$FIX/s2/shard-0.idx"
    serve c "$FIX/s2/shard-1.idx"
    front "$EP_a|$EP_b,$EP_c" --shard-timeout 3000 --hedge 50
    kill -STOP "$PID_a"
    # a few requests land on the stopped replica before its in-flight count
    # steers the rest away; each is asked of b too after 50 ms
    run $CLIENT "$FRONT" "$FIX/queries.npy" -n 200 --window 4 --deadline 5
    echo "$output" >&2
    [ "$(json_field "$output" answered)" -eq 200 ]
    [ "$(json_field "$output" partial)" -eq 0 ]
    [ "$(json_field "$output" errors)" -eq 0 ]
    awk -v m="$(json_field "$output" max_ms)" 'BEGIN { exit !(m >= 40 && m < 50 + 400) }'
    kill -CONT "$PID_a"
    kill -TERM "$PID_front"
    wait "$PID_front"
    grep -Eq "[1-9][0-9]* parts hedged" "$BATS_TEST_TMPDIR/front.log"
}

@test "--hedge is for --fanout" {
    run --separate-stderr "$BIN/query" --index "$FIX/all.idx" --hedge 10 "$FIX/queries.frames"
    assert_one_error_line query "--hedge is for --fanout"
    [ "$status" -eq 64 ]
}
