#!/usr/bin/env bats
# nav-train: an index stream in, the same index with a "nav-policy" model
# frame out; query --nav / --recall / --skip / --stop use it.

load helpers

setup_file() {
    need_bins embed-load graph-build nav-train query recall
    # 64 dimensions spanned mostly by 10: structure a 15-dimensional
    # projection captures, as in real embeddings (on isotropic noise a
    # projected test costs nearly a distance and the policy falls back)
    $PY - "$FIX" <<'EOF2'
import sys, numpy as np
rng = np.random.default_rng(41)
A = rng.standard_normal((10, 64)).astype(np.float32)
for name, n in (("base", 3000), ("train", 600), ("queries", 300)):
    z = rng.standard_normal((n, 10)).astype(np.float32)
    x = z @ A + 0.1 * rng.standard_normal((n, 64)).astype(np.float32)
    np.save(f"{sys.argv[1]}/{name}.npy", x.astype(np.float32))
EOF2
    for f in base train queries; do
        "$BIN/embed-load" "$FIX/$f.npy" -o "$FIX/$f.frames"
    done
    "$BIN/graph-build" --threads 1 --seed 7 -o "$FIX/plain.idx" "$FIX/base.frames" 2>/dev/null
    "$BIN/graph-build" --threads 1 --seed 7 --metric ip -o "$FIX/ip.idx" "$FIX/base.frames" 2>/dev/null
    "$BIN/nav-train" --threads 2 --train "$FIX/train.frames" --ppo-iters 1 --ppo-queries 100 \
        --val-ef 10,16,32,64 -o "$FIX/nav.idx" "$FIX/plain.idx" 2>"$FIX/nav.log"
    "$BIN/query" --index "$FIX/plain.idx" --exact -k 10 -o "$FIX/gt" "$FIX/queries.frames" 2>/dev/null
}

@test "nav-train --help exits 0 and names its options" {
    run "$BIN/nav-train" --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"usage: nav-train"* ]]
    for o in --train --ppo-iters --init --shots --val-ef --miss-cost --proj-dim --dagger; do
        [[ "$output" == *"$o"* ]]
    done
    run "$BIN/query" --help
    for o in --nav --recall --skip --stop --patience; do
        [[ "$output" == *"$o"* ]]
    done
}

@test "nav-train prints its validation table against the baselines and writes one policy frame matching its schema" {
    cat "$FIX/nav.log"
    grep -q "validation on 150 held-aside queries of --train" "$FIX/nav.log"
    for row in classic adsampling cloning cloning+ppo; do
        grep -q "^nav-train:   $row " "$FIX/nav.log"
    done
    grep -q "adaptive stop at ef 64" "$FIX/nav.log"
    grep -q "written: cloning" "$FIX/nav.log"
    grep -q "recall calibration" "$FIX/nav.log"
    validate --expect index "$FIX/nav.idx"
    valid_model_frame "$FIX/nav.idx" nav-policy
    $PY - "$FIX/nav.idx" <<'EOF2'
import sys, msgpack
models = [f for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False) if f["t"] == "model"]
m = models[0]
assert m["dim"] == 64 and m["n"] == 3000 and m["metric_name"] == "l2"
assert m["validation"]["queries"] == 150 and m["validation"]["training_queries"] == 450
assert len(m["cal_r"]) == len(m["cal_p"]) == len(m["cal_ef"]) > 0
EOF2
}

@test "query --nav, --recall, --skip adsampling and --stop adaptive answer every query and find neighbours" {
    for m in "--nav --ef 64" "--nav --recall 0.95" "--recall 0.99" "--skip adsampling --ef 64" \
        "--stop adaptive --patience 8 --ef 128" "--nav --stop adaptive --ef 128"; do
        # shellcheck disable=SC2086
        run --separate-stderr "$BIN/query" --index "$FIX/nav.idx" $m -k 10 \
            -o "$BATS_TEST_TMPDIR/r" "$FIX/queries.frames"
        echo "$m: $stderr"
        [ "$status" -eq 0 ]
        [[ "$stderr" == *"300 queries"*"mean distance computations"*"mean hops"* ]]
        validate --expect results "$BATS_TEST_TMPDIR/r"
        recall_at_least "$FIX/gt" "$BATS_TEST_TMPDIR/r" 0.85
    done
}

@test "query --nav measures fewer distances than the classic search at the same ef" {
    nd() { sed -n 's/.*QPS, \([0-9.]*\) mean distance.*/\1/p'; }
    classic=$("$BIN/query" --index "$FIX/nav.idx" --ef 64 -k 10 -o /dev/null "$FIX/queries.frames" 2>&1 | nd)
    nav=$("$BIN/query" --index "$FIX/nav.idx" --nav --ef 64 -k 10 -o /dev/null "$FIX/queries.frames" 2>&1 | nd)
    echo "classic $classic nav $nav"
    awk -v a="$nav" -v b="$classic" 'BEGIN { exit !(a < b) }'
}

@test "query --recall R hits R on queries like the training ones" {
    for r in 0.9 0.99; do
        "$BIN/query" --index "$FIX/nav.idx" --nav --recall "$r" -k 10 -o "$BATS_TEST_TMPDIR/r" \
            "$FIX/queries.frames" 2>/dev/null
        got=$("$BIN/recall" --gt "$FIX/gt" "$BATS_TEST_TMPDIR/r" | sed -n 's/^recall@10 \([0-9.]*\).*/\1/p')
        echo "asked $r got $got"
        awk -v a="$got" -v r="$r" 'BEGIN { exit !(a >= r - 0.03 && a <= r + 0.03 || a >= 0.999) }'
    done
}

@test "nav-train --proj-dim sets the policy's projection width, and refuses one out of range" {
    "$BIN/nav-train" --threads 1 --queries 300 --val-queries 100 --ppo-iters 0 --epochs 1 \
        --proj-dim 7 --val-ef 10,32 -o "$BATS_TEST_TMPDIR/r7.idx" "$FIX/plain.idx" 2>/dev/null
    $PY - "$BATS_TEST_TMPDIR/r7.idx" <<'EOF2'
import sys, msgpack
m = [f for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False) if f["t"] == "model"][0]
assert m["r"] == 7, m["r"]
assert [p for p in m["params"] if p["name"] == "P"][0]["rows"] == 7
EOF2
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/r7.idx" --nav -k 10 \
        -o "$BATS_TEST_TMPDIR/r" "$FIX/queries.frames"
    [ "$status" -eq 0 ]
    run --separate-stderr "$BIN/nav-train" --proj-dim 64 "$FIX/plain.idx"
    [ "$status" -eq 64 ]
}

@test "query --route --nav enters where the index's router says and searches with the policy" {
    need_bins layer-route
    "$BIN/layer-route" --threads 2 --candidates 32 --queries 600 --val-queries 200 --epochs 2 \
        -o "$BATS_TEST_TMPDIR/both.idx" "$FIX/nav.idx" 2>/dev/null
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/both.idx" --route --nav --ef 64 \
        -k 10 -o "$BATS_TEST_TMPDIR/r" "$FIX/queries.frames"
    echo "$stderr"
    [ "$status" -eq 0 ]
    # routing is counted (unless the router fell back), and nothing is lost
    grep -q fallback <<<"$stderr" || [[ "$stderr" != *" 0.0 routing"* ]]
    validate --expect results "$BATS_TEST_TMPDIR/r"
    recall_at_least "$FIX/gt" "$BATS_TEST_TMPDIR/r" 0.85
}

@test "a second nav-train replaces the policy frame instead of adding one" {
    "$BIN/nav-train" --threads 1 --queries 300 --val-queries 100 --ppo-iters 0 --epochs 1 \
        --val-ef 10,32 -o "$BATS_TEST_TMPDIR/twice.idx" "$FIX/nav.idx" 2>/dev/null
    run grep -c nav-policy "$BATS_TEST_TMPDIR/twice.idx"
    [ "$output" = 1 ]
}

@test "nav-train --init --shots adapts another index's policy; --shots 0 keeps it" {
    $GEN -n 2000 -d 24 --seed 44 -f frames "$BATS_TEST_TMPDIR/b24.frames"
    "$BIN/graph-build" --threads 1 --seed 7 -o "$BATS_TEST_TMPDIR/b24.idx" "$BATS_TEST_TMPDIR/b24.frames" 2>/dev/null
    for s in 0 20; do
        run --separate-stderr "$BIN/nav-train" --threads 2 --init "$FIX/nav.idx" --shots "$s" \
            --ppo-iters 0 --val-queries 200 --val-ef 10,32 -o "$BATS_TEST_TMPDIR/fs$s.idx" \
            "$BATS_TEST_TMPDIR/b24.idx"
        echo "$stderr"
        [ "$status" -eq 0 ]
        [[ "$stderr" == *"$s training queries"* ]]
        validate --expect index "$BATS_TEST_TMPDIR/fs$s.idx"
    done
    [[ "$stderr" != *"init (no adapt.)"* ]]
    run --separate-stderr "$BIN/nav-train" --init "$FIX/plain.idx" -o "$BATS_TEST_TMPDIR/x.idx" \
        "$BATS_TEST_TMPDIR/b24.idx"
    assert_one_error_line nav-train "no nav-policy model frame"
    assert_no_output "$BATS_TEST_TMPDIR/x.idx"
}

@test "query --nav or --recall on an index without a policy says so in one line and writes nothing" {
    for m in --nav "--recall 0.9"; do
        # shellcheck disable=SC2086
        run --separate-stderr "$BIN/query" --index "$FIX/plain.idx" $m \
            -o "$BATS_TEST_TMPDIR/out" "$FIX/queries.frames"
        assert_one_error_line query "no nav-policy model"
        assert_no_output "$BATS_TEST_TMPDIR/out"
    done
}

# rewrite the policy frame of $1 into $2 with python code $3 applied to it
edit_policy() {
    edit_model nav-policy "$@"
}

@test "a policy of another dimension, of another metric, or of another index is refused in one line" {
    edit_policy "$FIX/nav.idx" "$BATS_TEST_TMPDIR/dim.idx" '
f["dim"] = 8
for p in f["params"]:
    if p["name"] in ("mu", "P"):
        p["cols"] = 8
        p["data"] = p["data"][: p["rows"] * 8 * 4]'
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/dim.idx" --nav \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/queries.frames"
    assert_one_error_line query "trained on 8-dimensional vectors, the index has 64"
    assert_no_output "$BATS_TEST_TMPDIR/out"
    edit_policy "$FIX/nav.idx" "$BATS_TEST_TMPDIR/metric.idx" 'f["metric"] = 2'
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/metric.idx" --nav \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/queries.frames"
    assert_one_error_line query "trained on a cosine index, this one is l2"
    edit_policy "$FIX/nav.idx" "$BATS_TEST_TMPDIR/fp.idx" 'f["fingerprint"] += 1.0'
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/fp.idx" --recall 0.9 \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/queries.frames"
    assert_one_error_line query "trained on another index"
    # without --nav the policy is not read: the index still serves
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/fp.idx" -k 5 \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/queries.frames"
    [ "$status" -eq 0 ]
}

@test "a corrupt policy frame is refused in one line naming its frame" {
    edit_policy "$FIX/nav.idx" "$BATS_TEST_TMPDIR/cut.idx" '
for p in f["params"]:
    if p["name"] == "P":
        p["data"] = p["data"][:20]'
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/cut.idx" --nav \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/queries.frames"
    assert_one_error_line query "frame [0-9]+: .*P"
    assert_no_output "$BATS_TEST_TMPDIR/out"
    edit_policy "$FIX/nav.idx" "$BATS_TEST_TMPDIR/cal.idx" 'f["cal_p"] = f["cal_p"][:-1]'
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/cal.idx" --recall 0.9 \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/queries.frames"
    assert_one_error_line query "frame [0-9]+: nav-policy model: .*cal_p"
    edit_policy "$FIX/nav.idx" "$BATS_TEST_TMPDIR/nan.idx" 'f["skip_logit"] = float("nan")'
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/nan.idx" --nav \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/queries.frames"
    assert_one_error_line query "skip_logit.*finite"
}

@test "--recall outside (0, 1] and unknown --skip/--stop kinds are usage errors" {
    for r in 0 -0.5 1.01 abc ""; do
        run --separate-stderr "$BIN/query" --index "$FIX/nav.idx" --recall "$r" \
            -o "$BATS_TEST_TMPDIR/out" "$FIX/queries.frames"
        [ "$status" -eq 64 ]
        assert_one_error_line query "recall"
        assert_no_output "$BATS_TEST_TMPDIR/out"
    done
    run --separate-stderr "$BIN/query" --index "$FIX/nav.idx" --skip sometimes "$FIX/queries.frames"
    [ "$status" -eq 64 ]
    run --separate-stderr "$BIN/query" --index "$FIX/nav.idx" --stop learned "$FIX/queries.frames"
    [ "$status" -eq 64 ]
    run --separate-stderr "$BIN/query" --index "$FIX/nav.idx" --nav --exact "$FIX/queries.frames"
    [ "$status" -eq 64 ]
}

@test "nav-train refuses an ip index, a --train file of another dimension, and a stream that is no index" {
    run --separate-stderr "$BIN/nav-train" -o "$BATS_TEST_TMPDIR/out" "$FIX/ip.idx"
    assert_one_error_line nav-train "needs an l2 or cosine index"
    assert_no_output "$BATS_TEST_TMPDIR/out"
    $GEN -n 100 -d 8 --seed 45 -f frames "$BATS_TEST_TMPDIR/q8.frames"
    run --separate-stderr "$BIN/nav-train" --train "$BATS_TEST_TMPDIR/q8.frames" \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/plain.idx"
    assert_one_error_line nav-train "dimension 8, index has 64"
    assert_no_output "$BATS_TEST_TMPDIR/out"
    run --separate-stderr "$BIN/nav-train" -o "$BATS_TEST_TMPDIR/out" "$FIX/base.frames"
    assert_one_error_line nav-train "not an index"
    assert_no_output "$BATS_TEST_TMPDIR/out"
    run --separate-stderr "$BIN/query" --index "$FIX/ip.idx" --skip adsampling "$FIX/queries.frames"
    assert_one_error_line query "l2 or cosine"
}

@test "query --serve takes a recall target per request and answers a bad one with an error frame" {
    PORT=$(free_port)
    EP="tcp://127.0.0.1:$PORT"
    "$BIN/query" --index "$FIX/nav.idx" --nav --serve "$EP" 2>"$BATS_TEST_TMPDIR/serve.log" 3>&- &
    SPID=$!
    wait_for_line "$BATS_TEST_TMPDIR/serve.log" "serving"
    $PY - "$EP" "$FIX/queries.frames" <<'EOF2'
import sys, zmq, msgpack
ep, qpath = sys.argv[1:3]
frames = list(msgpack.Unpacker(open(qpath, "rb"), raw=False))
vec = next(f for f in frames if f["t"] == "vectors")["data"][: 64 * 4]
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 0)
s.setsockopt(zmq.RCVTIMEO, 5000)
s.connect(ep)
def ask(req):
    s.send_multipart([b"", msgpack.packb(req, use_bin_type=True)])
    return msgpack.unpackb(s.recv_multipart()[1], raw=False)
a = ask({"t": "query", "qid": 1, "vec": vec, "k": 10, "recall": 0.95})
assert a["t"] == "result" and len(a["ids"]) == 40, a
b = ask({"t": "query", "qid": 2, "vec": vec, "k": 10, "recall": 1.5})
assert b["t"] == "error" and "recall" in b["msg"], b
c = ask({"t": "query", "qid": 3, "vec": vec, "k": 10})
assert c["t"] == "result", c
EOF2
    kill -TERM "$SPID"
    wait "$SPID"
}
