#!/usr/bin/env bats
# robustness.bats - nothing breaks, nothing is lost (issue 5):
#   * graph-build -o killed with SIGKILL at random points, several times,
#     leaves the previous index byte-identical (or the finished new one);
#     SIGTERM/SIGINT mid-write leave no temporary file either;
#   * query --serve under load (8 clients x 20k queries, tests/load_test.py):
#     nothing lost or duplicated, answers identical to the stdin path,
#     malformed requests answered with error frames, vanishing clients
#     harmless, SIGTERM mid-load answers what was received and exits 0;
#   * limits: hostile headers (dim 10^9, count 2^31, k 2^40, qid 2^32-1,
#     "array of 2^32-1" frame bombs) are refused without allocating for them.
# Runs against $BIN, so `make test-asan` runs it under ASan/UBSan too.

load helpers

LOAD="$PY $REPO/tests/load_test.py"

setup_file() {
    need_bins embed-load graph-build query recall
    # the "previous" index and a bigger input whose build takes a moment
    $GEN -n 300 -d 16 --seed 21 -f frames "$FIX/small.frames"
    "$BIN/graph-build" --threads 1 -o "$FIX/prev.idx" "$FIX/small.frames" 2>/dev/null
    $GEN -n 6000 -d 16 --seed 22 -f frames "$FIX/big.frames"
    $GEN -n 20 -d 16 --seed 23 -f frames "$FIX/q16.frames"
    # load test: 5000 x 32 index, 20000 queries, the stdin path's answers
    $GEN -n 5000 -d 32 --seed 24 "$FIX/base32.npy"
    $GEN -n 20000 -d 32 --seed 25 "$FIX/q32.npy"
    "$BIN/embed-load" "$FIX/base32.npy" | "$BIN/graph-build" --threads 2 -o "$FIX/idx32" 2>/dev/null
    "$BIN/embed-load" "$FIX/q32.npy" >"$FIX/q32.frames"
    "$BIN/query" --index "$FIX/idx32" "$FIX/q32.frames" >"$FIX/expected32" 2>/dev/null
}

# run_killed SIGNAL WHEN OUT ARGS... : start graph-build ARGS -o OUT, send
# SIGNAL when WHEN is met, print the exit status as "exit N" (128+sig when
# killed). WHEN: "after:SECONDS", or "written:BYTES" (a temporary OUT.tmp.*
# holds at least BYTES, i.e. mid-write).
run_killed() {
    $PY - "$@" <<'EOF'
import glob, os, signal, subprocess, sys, time
sig, when, out, args = getattr(signal, sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
p = subprocess.Popen([os.environ["BIN"] + "/graph-build", "-o", out] + args,
                     stderr=subprocess.DEVNULL)
kind, val = when.split(":")
t0 = time.monotonic()
while p.poll() is None:
    if kind == "after" and time.monotonic() - t0 >= float(val):
        break
    if kind == "written" and any(os.path.getsize(f) >= int(val)
                                 for f in glob.glob(out + ".tmp.*") if os.path.exists(f)):
        break
    time.sleep(0.0005)
if p.poll() is None:
    p.send_signal(sig)
rc = p.wait()
print(f"exit {128 - rc if rc < 0 else rc}")
EOF
}

index_loads() {
    "$BIN/query" -k 3 --index "$1" "$FIX/q16.frames" >/dev/null 2>&1
}

@test "graph-build -o killed by SIGKILL at 6 random points leaves the previous index intact or the complete new one" {
    d="$BATS_TEST_TMPDIR"
    # how long a full build takes here (ASan is slower): kill points spread over it
    t0=$(date +%s.%N)
    "$BIN/graph-build" --threads 1 -o "$d/new.idx" "$FIX/big.frames" 2>/dev/null
    t=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
    echo "full build: $t s"
    kills=0
    for i in 1 2 3 4 5 6; do
        cp "$FIX/prev.idx" "$d/out.idx"
        if [ "$i" -le 2 ]; then
            when="written:$((i * 4096))" # mid-write for sure
        else
            when="after:$(awk -v t="$t" -v r="$RANDOM" 'BEGIN { printf "%.3f", t * 1.1 * r / 32768 }')"
        fi
        res=$(run_killed SIGKILL "$when" "$d/out.idx" --threads 1 "$FIX/big.frames")
        echo "kill $i at $when: $res"
        if [ "$res" = "exit 0" ]; then
            cmp "$d/out.idx" "$d/new.idx" # finished first: the new index, whole
        else
            [ "$res" = "exit 137" ]
            kills=$((kills + 1))
            # killed before the rename: the previous index; killed after it
            # (while the process frees memory and exits): the whole new one
            cmp -s "$d/out.idx" "$FIX/prev.idx" || cmp "$d/out.idx" "$d/new.idx"
        fi
        index_loads "$d/out.idx"
        rm -f "$d"/out.idx.tmp.* # SIGKILL cannot clean up; only the rename is atomic
    done
    [ "$kills" -ge 3 ]
    # and with no previous file: absent, or the complete new index
    rm -f "$d/out.idx"
    res=$(run_killed SIGKILL written:4096 "$d/out.idx" --threads 1 "$FIX/big.frames")
    echo "$res"
    [ ! -e "$d/out.idx" ] || cmp "$d/out.idx" "$d/new.idx"
}

@test "graph-build -o: SIGTERM mid-write leaves the previous index and no temporary file" {
    d="$BATS_TEST_TMPDIR"
    cp "$FIX/prev.idx" "$d/out.idx"
    res=$(run_killed SIGTERM written:4096 "$d/out.idx" --threads 1 "$FIX/big.frames")
    echo "$res"
    [ "$res" = "exit 143" ] || [ "$res" = "exit 0" ]
    [ "$res" = "exit 0" ] || cmp "$d/out.idx" "$FIX/prev.idx"
    index_loads "$d/out.idx"
    run ls "$d"
    echo "$output"
    [ "$output" = "out.idx" ]
}

@test "graph-build -o: SIGINT during the build leaves the previous index and no temporary file" {
    d="$BATS_TEST_TMPDIR"
    cp "$FIX/prev.idx" "$d/out.idx"
    res=$(run_killed SIGINT written:0 "$d/out.idx" --threads 1 "$FIX/big.frames")
    echo "$res"
    [ "$res" = "exit 130" ]
    cmp "$d/out.idx" "$FIX/prev.idx"
    run ls "$d"
    [ "$output" = "out.idx" ]
}

# start_server [OPTIONS...] : query --serve on a free loopback port; sets EP, SPID.
start_server() {
    local port
    port=$(free_port)
    EP="tcp://127.0.0.1:$port"
    "$BIN/query" --index "$FIX/idx32" --serve "$EP" "$@" 2>"$BATS_TEST_TMPDIR/server.err" &
    SPID=$!
    wait_for_line "$BATS_TEST_TMPDIR/server.err" "serving"
}

teardown() {
    # a failed test must not leave its server running (bats would wait on it)
    if [ -n "${SPID:-}" ] && kill -0 "$SPID" 2>/dev/null; then
        kill -KILL "$SPID" 2>/dev/null || true
    fi
}

stop_server() {
    kill -TERM "$SPID"
    local rc=0
    wait "$SPID" || rc=$?
    cat "$BATS_TEST_TMPDIR/server.err"
    [ "$rc" -eq 0 ]
}

@test "query --serve under load: 8 clients x 20000 queries, none lost or duplicated, all identical to the stdin path; malformed requests and vanishing clients do no harm" {
    start_server
    run $LOAD --endpoint "$EP" --queries "$FIX/q32.npy" --expected "$FIX/expected32" \
        --clients 8 --per-client 20000 --window 4 --malformed-every 100 --vanish 2
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"lost 0, duplicated 0, mismatched 0"* ]]
    [[ "$output" == *"error frames 1600 (missing 0, extra 0)"* ]]
    echo "$output" | sed -n 's/^load_test: /# load_test: /p' >&3
    # still healthy afterwards
    run $LOAD --endpoint "$EP" --queries "$FIX/q32.npy" --expected "$FIX/expected32" \
        --clients 1 --per-client 100
    [ "$status" -eq 0 ]
    stop_server
}

@test "query --serve: SIGTERM during load answers every request it received, then exits 0" {
    start_server
    run $LOAD --endpoint "$EP" --queries "$FIX/q32.npy" --expected "$FIX/expected32" \
        --clients 8 --per-client 4000 --sigterm "$SPID" --sigterm-delay 0.05 --timeout 30
    echo "$output"
    local rc=0
    wait "$SPID" || rc=$?
    cat "$BATS_TEST_TMPDIR/server.err"
    [ "$status" -eq 0 ]
    [[ "$output" == *"answered 32000, lost 0"* ]]
    [[ "$output" =~ after\ SIGTERM\ ([1-9][0-9]*) ]] # it really was mid-load
    [ "$rc" -eq 0 ]
    grep -q "shutting down" "$BATS_TEST_TMPDIR/server.err"
}

@test "query --serve: requests over --max-k / --max-ef get error frames; a request over --max-frame is dropped and the server keeps serving" {
    start_server --max-k 5 --max-ef 50 --max-frame 1000000
    $PY - "$EP" "$FIX/q32.npy" <<'EOF'
import sys, zmq, msgpack, numpy as np
ep, q = sys.argv[1], np.load(sys.argv[2])
ctx = zmq.Context()
def sock():
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, 5000)
    s.connect(ep)
    return s
s = sock()
def ask(s, f):
    s.send_multipart([b"", msgpack.packb(f)])
    return msgpack.unpackb(s.recv_multipart()[1], raw=False)
r = ask(s, {"t": "query", "qid": 1, "vec": q[0].tobytes(), "k": 6})
assert r["t"] == "error" and r["qid"] == 1 and "k=6" in r["msg"], r
r = ask(s, {"t": "query", "qid": 2, "vec": q[0].tobytes(), "k": 5, "ef": 51})
assert r["t"] == "error" and r["qid"] == 2, r
r = ask(s, {"t": "query", "qid": 3, "vec": q[0].tobytes(), "k": 5, "ef": 50})
assert r["t"] == "result" and len(r["ids"]) == 20, r
# 2 MB request: ZeroMQ's max message size drops it (and that peer's connection)
big = sock()
big.send_multipart([b"", msgpack.packb({"t": "query", "qid": 4, "vec": b"\0" * 2000000})])
try:
    big.recv_multipart()
    sys.exit("an over-size request was answered")
except zmq.Again:
    pass
s2 = sock()
r = ask(s2, {"t": "query", "qid": 5, "vec": q[1].tobytes(), "k": 3, "ef": 50})
assert r["t"] == "result" and r["qid"] == 5, r
EOF
    stop_server
}

# rss_under KB CMD... : run CMD (status in $status, stderr in $stderr) and
# check its peak resident memory stayed under KB kilobytes.
rss_under() {
    local lim="$1"
    shift
    run --separate-stderr /usr/bin/time -f "maxrss %M" "$@"
    local rss
    rss=$(echo "$stderr" | sed -n 's/^maxrss \([0-9]*\)$/\1/p')
    stderr=$(echo "$stderr" | grep -v '^maxrss \|^Command exited' || true)
    echo "$* -> status $status, peak RSS ${rss} kB, stderr: $stderr"
    [ -n "$rss" ] && [ "$rss" -lt "$lim" ]
}

# hostile FILE KIND : write a small hostile stream
hostile() {
    $PY - "$1" "$2" <<'EOF'
import sys, zlib, msgpack
out, kind = sys.argv[1], sys.argv[2]
def stream(frames, end=True):
    body = b"".join(msgpack.packb(f) for f in frames)
    if end:
        body += msgpack.packb({"t": "end", "count": 0, "checksum": zlib.crc32(body)})
    return body
vh = {"t": "header", "schema": "hnswflow.vectors", "v": 1, "dtype": "f32"}
ih = {"t": "header", "schema": "hnswflow.index", "v": 1, "dim": 4, "metric": "l2",
      "dtype": "f32", "count": 1 << 31, "M": 16, "M0": 32, "ef_construction": 200,
      "seed": 1, "entry": 0, "max_level": 0}
rh = {"t": "header", "schema": "hnswflow.results", "v": 1, "metric": "l2"}
b = {
    "vec_dim_1e9": lambda: stream([dict(vh, dim=10**9, count=1)]),
    "vec_dim_32": lambda: stream([dict(vh, dim=32, count=1)]),
    "vec_n_2p40": lambda: stream([dict(vh, dim=4, count=1),
                                  {"t": "vectors", "start": 0, "n": 1 << 40, "data": b"\0" * 16}]),
    "idx_count_2p31": lambda: stream([ih], end=False),
    "idx_dim_1e9": lambda: stream([dict(ih, dim=10**9)]),
    "res_k_2p40": lambda: stream([dict(rh, k=1 << 40, count=1)]),
    "res_k_1e5": lambda: stream([dict(rh, k=100000, count=1 << 40),
                                 {"t": "result", "qid": 0, "ids": b"\0" * 4, "dists": b"\0" * 4}]),
    "res_qid_2p32": lambda: stream([dict(rh, k=10, count=1),
                                    {"t": "result", "qid": (1 << 32) - 1, "ids": b"\0" * 4,
                                     "dists": b"\0" * 4}]),
    "bomb_array": lambda: b"\xdd\xff\xff\xff\xff",
    "bomb_map": lambda: b"\xdf\xff\xff\xff\xff\xa1t",
    "bomb_nested": lambda: b"\x81\xa1t\xdd\xff\xff\xff\xff",  # {t: array of 2^32-1}
}[kind]()
open(out, "wb").write(b)
EOF
}

@test "graph-build refuses a vectors header claiming dimension 10^9 without allocating for it" {
    hostile "$BATS_TEST_TMPDIR/h" vec_dim_1e9
    rss_under 300000 "$BIN/graph-build" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/h"
    [ "$status" -eq 65 ]
    [[ "$stderr" == *"dimension 1000000000 out of range"* ]]
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "graph-build --max-dim 16 refuses a dimension-32 stream" {
    hostile "$BATS_TEST_TMPDIR/h" vec_dim_32
    run --separate-stderr "$BIN/graph-build" --max-dim 16 -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/h"
    [ "$status" -eq 65 ]
    [[ "$stderr" == *"dimension 32 out of range 1..16"* ]]
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "graph-build refuses a vectors frame claiming 2^40 rows" {
    hostile "$BATS_TEST_TMPDIR/h" vec_n_2p40
    rss_under 300000 "$BIN/graph-build" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/h"
    [ "$status" -eq 65 ]
    [[ "$stderr" == *"frame 2"* ]]
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "graph-build and query refuse 5-byte 'array/map of 2^32-1 elements' frame bombs without allocating" {
    for k in bomb_array bomb_map bomb_nested; do
        hostile "$BATS_TEST_TMPDIR/$k" "$k"
        rss_under 300000 "$BIN/graph-build" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/$k"
        [ "$status" -eq 65 ]
        [[ "$stderr" == *"frame 1: frame over the size limit"* ]]
        rss_under 300000 "$BIN/query" --index "$BATS_TEST_TMPDIR/$k" "$FIX/q16.frames"
        [ "$status" -eq 65 ]
        [[ "$stderr" == *"frame 1: frame over the size limit"* ]]
    done
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "query refuses an index header claiming count 2^31 (no vectors follow) without allocating for it" {
    hostile "$BATS_TEST_TMPDIR/h" idx_count_2p31
    rss_under 400000 "$BIN/query" --index "$BATS_TEST_TMPDIR/h" -o "$BATS_TEST_TMPDIR/out" "$FIX/q16.frames"
    [ "$status" -eq 65 ]
    [[ "$stderr" == *"truncated index"* ]]
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "query refuses an index header claiming dimension 10^9" {
    hostile "$BATS_TEST_TMPDIR/h" idx_dim_1e9
    rss_under 300000 "$BIN/query" --index "$BATS_TEST_TMPDIR/h" "$FIX/q16.frames"
    [ "$status" -eq 65 ]
    [[ "$stderr" == *"dimension 1000000000 out of range"* ]]
}

@test "query refuses a query stream claiming dimension 10^9, and one over --max-dim" {
    hostile "$BATS_TEST_TMPDIR/h" vec_dim_1e9
    rss_under 300000 "$BIN/query" --index "$FIX/prev.idx" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/h"
    [ "$status" -eq 65 ]
    [[ "$stderr" == *"dimension 1000000000 out of range"* ]]
    run --separate-stderr "$BIN/query" --index "$FIX/prev.idx" --max-dim 8 "$FIX/q16.frames"
    [ "$status" -eq 65 ]
    [[ "$stderr" == *"dimension 16 out of range 1..8"* ]]
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "query --max-dim also bounds the index it loads" {
    run --separate-stderr "$BIN/query" --index "$FIX/prev.idx" --max-dim 8 -o "$BATS_TEST_TMPDIR/out" "$FIX/q16.frames"
    [ "$status" -eq 65 ]
    [[ "$stderr" == *"prev.idx"*"dimension 16 out of range 1..8"* ]]
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "query refuses -k above --max-k and --ef above --max-ef with exit 64" {
    run "$BIN/query" --index "$FIX/prev.idx" --max-k 5 -k 6 "$FIX/q16.frames"
    [ "$status" -eq 64 ]
    run "$BIN/query" --index "$FIX/prev.idx" --max-ef 10 --ef 11 "$FIX/q16.frames"
    [ "$status" -eq 64 ]
}

@test "recall refuses a results header claiming k 2^40" {
    hostile "$BATS_TEST_TMPDIR/h" res_k_2p40
    rss_under 300000 "$BIN/recall" --gt "$BATS_TEST_TMPDIR/h" "$BATS_TEST_TMPDIR/h"
    [ "$status" -eq 65 ]
    [[ "$stderr" == *"not a results stream header"* ]]
}

@test "recall reads a results stream with header k 100000 and count 2^40 but one answer in bounded memory" {
    hostile "$BATS_TEST_TMPDIR/h" res_k_1e5
    rss_under 400000 "$BIN/recall" --gt "$BATS_TEST_TMPDIR/h" "$BATS_TEST_TMPDIR/h"
    [ "$status" -eq 0 ]
}

@test "recall refuses a result frame with qid 2^32-1 instead of allocating (qid+1)*k slots" {
    hostile "$BATS_TEST_TMPDIR/h" res_qid_2p32
    rss_under 300000 "$BIN/recall" --gt "$BATS_TEST_TMPDIR/h" "$BATS_TEST_TMPDIR/h"
    [ "$status" -eq 65 ]
    [[ "$stderr" == *"qid 4294967295 is far beyond"* ]]
}

@test "embed-load refuses an fvecs row and an npy header claiming dimension 10^9, and --max-dim applies" {
    $PY -c 'import struct,sys; sys.stdout.buffer.write(struct.pack("<i", 10**9) + b"\0" * 64)' >"$BATS_TEST_TMPDIR/big.fvecs"
    rss_under 300000 "$BIN/embed-load" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/big.fvecs"
    [ "$status" -eq 65 ]
    [[ "$stderr" == *"dimension 1000000000"* ]]
    $PY - "$BATS_TEST_TMPDIR/big.npy" <<'EOF'
import struct, sys
d = "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1000000000), }"
d += " " * ((-(10 + len(d) + 1)) % 64) + "\n"
open(sys.argv[1], "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d.encode() + b"\0" * 64)
EOF
    rss_under 300000 "$BIN/embed-load" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/big.npy"
    [ "$status" -eq 65 ]
    [[ "$stderr" == *"dimension 1000000000"* ]]
    $GEN -n 3 -d 32 --seed 1 "$BATS_TEST_TMPDIR/d32.fvecs"
    run --separate-stderr "$BIN/embed-load" --max-dim 16 -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/d32.fvecs"
    [ "$status" -eq 65 ]
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "graph-build: a vectors header claiming count 2^28-1 at dimension 65536 does not make it reserve 70 TB" {
    # graph-build reserves for the header's count, capped at 1 GiB as the
    # index loader does; the frames actually received decide the rest.
    $PY - "$BATS_TEST_TMPDIR/h" <<'EOF'
import sys, zlib, msgpack
body = msgpack.packb({"t": "header", "schema": "hnswflow.vectors", "v": 1, "dim": 65536,
                      "dtype": "f32", "count": (1 << 28) - 1})
body += msgpack.packb({"t": "vectors", "start": 0, "n": 1, "data": b"\0\0\x80\x3f" * 65536})
body += msgpack.packb({"t": "end", "count": 1, "checksum": zlib.crc32(body)})
open(sys.argv[1], "wb").write(body)
EOF
    rss_under 600000 "$BIN/graph-build" --threads 1 -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/h"
    [ "$status" -eq 0 ]
}
