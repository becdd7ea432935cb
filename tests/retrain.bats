#!/usr/bin/env bats
# Keeping the learned parts current (issue 16): the query log of query and
# consolidate --serve, nav-train's incremental options (--init, --ewc,
# --replay, --distill, --holdout), reload, and pipelines/retrain.sh's sleep
# cycle under query load.

load helpers

setup_file() {
    need_bins embed-load graph-build nav-train layer-route query consolidate
    # 64 dimensions spanned mostly by 10 (as nav-train.bats): two tasks,
    # queries near two different halves of the base set's directions
    $PY - "$FIX" <<'EOF2'
import sys, numpy as np
rng = np.random.default_rng(43)
A = rng.standard_normal((10, 64)).astype(np.float32)
def draw(n, shift):
    z = rng.standard_normal((n, 10)).astype(np.float32) + shift
    return (z @ A + 0.1 * rng.standard_normal((n, 64))).astype(np.float32)
base = np.concatenate([draw(1500, 0.0), draw(1500, 1.5)])
np.save(f"{sys.argv[1]}/base.npy", base)
np.save(f"{sys.argv[1]}/taskA.npy", draw(400, 0.0))
np.save(f"{sys.argv[1]}/taskB.npy", draw(400, 1.5))
np.save(f"{sys.argv[1]}/small.npy", rng.standard_normal((20, 32)).astype(np.float32))
EOF2
    for f in base taskA taskB small; do
        "$BIN/embed-load" "$FIX/$f.npy" -o "$FIX/$f.frames"
    done
    "$BIN/graph-build" --threads 1 --seed 7 -o "$FIX/plain.idx" "$FIX/base.frames" 2>/dev/null
    "$BIN/graph-build" --threads 1 -o "$FIX/small.idx" "$FIX/small.frames" 2>/dev/null
    "$BIN/nav-train" --threads 2 --train "$FIX/taskA.frames" --ppo-iters 0 \
        --val-ef 10,16,32,64 -o "$FIX/A.idx" "$FIX/plain.idx" 2>"$FIX/A.log"
    # a policy trained on a handful of queries: retraining on a log beats it
    "$BIN/nav-train" --threads 2 --train "$FIX/taskA.frames" --shots 12 --ppo-iters 0 \
        --val-ef 10,16,32,64 -o "$FIX/weak.idx" "$FIX/plain.idx" 2>/dev/null
}

# model_field KIND IDX EXPR : python EXPR over the model frame f of kind KIND in IDX
model_field() {
    $PY - "$@" <<'EOF2'
import sys, msgpack
f = next(x for x in msgpack.Unpacker(open(sys.argv[2], "rb"), raw=False)
         if x.get("t") == "model" and x.get("kind") == sys.argv[1])
print(eval(sys.argv[3]))
EOF2
}
policy_field() { model_field nav-policy "$@"; }
policy_router() { model_field layer-router "$@"; }

# start_query_server IDX LOG [options] : sets EP and SPID
start_query_server() {
    local idx=$1 log=$2
    shift 2
    EP="tcp://127.0.0.1:$(free_port)"
    "$BIN/query" --index "$idx" --serve "$EP" --log "$log" "$@" \
        2>"$BATS_TEST_TMPDIR/serve.log" 3>&- &
    SPID=$!
    wait_for_line "$BATS_TEST_TMPDIR/serve.log" "serving"
}

@test "the written policy keeps a Fisher estimate and a reservoir of its training queries" {
    # one Fisher value per MLP weight (params after mu and P); 300 training
    # queries (the last quarter of 400 validates), 64-dim rows
    run policy_field "$FIX/A.idx" 'len(f["fisher"]) // 4 == sum(len(t["data"]) // 4 for t in f["params"][2:]), f["tasks"], len(f["replay"]) // 256, f["replay_seen"]'
    [ "$status" -eq 0 ]
    [ "$output" = "(True, 1, 300, 300)" ]
    run policy_field "$FIX/A.idx" 'min(__import__("struct").unpack("<%df" % (len(f["fisher"]) // 4), f["fisher"]))'
    [ "$(echo "$output >= 0" | bc)" = 1 ]
    validate "$FIX/A.idx"
}

@test "nav-train --init --ewc --replay --distill trains on: tasks add up, the reservoir mixes" {
    run --separate-stderr "$BIN/nav-train" --threads 2 --init "$FIX/A.idx" --train "$FIX/taskB.frames" \
        --ppo-iters 0 --val-ef 10,16,32,64 --ewc 100 --replay 200 --distill 0.5 --reservoir 500 \
        -o "$BATS_TEST_TMPDIR/B.idx" "$FIX/plain.idx"
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"continual: EWC on (lambda 100, Fisher of 1 earlier task), 200 replayed queries from the policy's reservoir, distillation 0.5; reservoir kept: 500 of 600"* ]]
    run policy_field "$BATS_TEST_TMPDIR/B.idx" 'f["tasks"], len(f["replay"]) // 256, f["replay_seen"]'
    [ "$output" = "(2, 500, 600)" ]
    # the penalty moves the weights less than plain fine-tuning does
    "$BIN/nav-train" --threads 2 --init "$FIX/A.idx" --train "$FIX/taskB.frames" --ppo-iters 0 \
        --val-ef 10,16,32,64 -o "$BATS_TEST_TMPDIR/naive.idx" "$FIX/plain.idx" 2>/dev/null
    "$BIN/nav-train" --threads 2 --init "$FIX/A.idx" --train "$FIX/taskB.frames" --ppo-iters 0 \
        --val-ef 10,16,32,64 --ewc 100000 -o "$BATS_TEST_TMPDIR/ewc.idx" "$FIX/plain.idx" 2>/dev/null
    run $PY - "$FIX/A.idx" "$BATS_TEST_TMPDIR/naive.idx" "$BATS_TEST_TMPDIR/ewc.idx" <<'EOF2'
import sys, msgpack, numpy as np
def w(p):
    f = next(x for x in msgpack.Unpacker(open(p, "rb"), raw=False)
             if x.get("t") == "model" and x.get("kind") == "nav-policy")
    return np.concatenate([np.frombuffer(t["data"], "<f4") for t in f["params"][2:]])
a, n, e = (w(p) for p in sys.argv[1:])
dn, de = np.abs(n - a).sum(), np.abs(e - a).sum()
print(dn, de)
assert de < 0.5 * dn, (dn, de)
EOF2
    [ "$status" -eq 0 ]
    # a log or vector file replays too
    run --separate-stderr "$BIN/nav-train" --threads 2 --init "$FIX/A.idx" --train "$FIX/taskB.frames" \
        --ppo-iters 0 --val-ef 10,16,32,64 --replay "$FIX/taskA.frames" -o "$BATS_TEST_TMPDIR/f.idx" "$FIX/plain.idx"
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"400 replayed queries from $FIX/taskA.frames"* ]]
}

@test "incremental options are refused in one line without what they need" {
    for args in "--ewc 10" "--replay 50" "--holdout 0.2"; do
        # shellcheck disable=SC2086
        run --separate-stderr "$BIN/nav-train" --train "$FIX/taskB.frames" $args \
            -o "$BATS_TEST_TMPDIR/x.idx" "$FIX/plain.idx"
        assert_one_error_line nav-train "give --init"
        [ "$status" -eq 64 ]
    done
    run --separate-stderr "$BIN/nav-train" --init "$FIX/A.idx" --train "$FIX/taskB.frames" --distill 0.5 \
        -o "$BATS_TEST_TMPDIR/x.idx" "$FIX/plain.idx"
    assert_one_error_line nav-train "give --replay"
    # a policy written without a reservoir, or without its Fisher
    "$BIN/nav-train" --threads 2 --train "$FIX/taskA.frames" --ppo-iters 0 --val-ef 10,32 --reservoir 0 \
        -o "$BATS_TEST_TMPDIR/nores.idx" "$FIX/plain.idx" 2>/dev/null
    run --separate-stderr "$BIN/nav-train" --init "$BATS_TEST_TMPDIR/nores.idx" --train "$FIX/taskB.frames" \
        --replay 50 -o "$BATS_TEST_TMPDIR/x.idx" "$FIX/plain.idx"
    assert_one_error_line nores.idx "no replay reservoir"
    edit_model nav-policy "$FIX/A.idx" "$BATS_TEST_TMPDIR/nofisher.idx" 'f.pop("fisher"); f.pop("tasks")'
    run --separate-stderr "$BIN/nav-train" --init "$BATS_TEST_TMPDIR/nofisher.idx" --train "$FIX/taskB.frames" \
        --ewc 10 -o "$BATS_TEST_TMPDIR/x.idx" "$FIX/plain.idx"
    assert_one_error_line nofisher.idx "no Fisher information"
    edit_model nav-policy "$FIX/A.idx" "$BATS_TEST_TMPDIR/badfisher.idx" 'f["fisher"] = f["fisher"][:-4]'
    run --separate-stderr "$BIN/nav-train" --init "$BATS_TEST_TMPDIR/badfisher.idx" --train "$FIX/taskB.frames" \
        --ewc 10 -o "$BATS_TEST_TMPDIR/x.idx" "$FIX/plain.idx"
    assert_one_error_line badfisher.idx "fisher"
    assert_no_output "$BATS_TEST_TMPDIR/x.idx"
}

@test "nav-train --holdout writes the new policy only when it measures no worse than the one it replaces" {
    run --separate-stderr "$BIN/nav-train" --threads 2 --init "$FIX/A.idx" --train "$FIX/taskB.frames" \
        --ppo-iters 0 --val-ef 10,16,32,64 --holdout 0.25 --ewc 100 --replay 200 \
        -o "$BATS_TEST_TMPDIR/h.idx" "$FIX/plain.idx"
    line=$(printf '%s\n' "${stderr_lines[@]}" | grep 'held-aside: 100 queries')
    old=$(echo "$line" | sed -n 's/.*replaced \([0-9.]*\) .*/\1/p')
    new=$(echo "$line" | sed -n 's/.*the new one \([0-9.]*\) .*/\1/p')
    [ -n "$old" ] && [ -n "$new" ]
    if [ "$(echo "$new <= $old" | bc)" = 1 ]; then
        [ "$status" -eq 0 ] && [ -s "$BATS_TEST_TMPDIR/h.idx" ]
        [[ "$line" == *": written" ]]
    else
        [ "$status" -eq 3 ]
        assert_no_output "$BATS_TEST_TMPDIR/h.idx"
    fi
}

@test "query --serve --log appends every answered query, rotates by size, and is a training input" {
    log="$BATS_TEST_TMPDIR/q.log"
    start_query_server "$FIX/A.idx" "$log" --log-max 80000
    "$BIN/query" --connect "$EP" -o "$BATS_TEST_TMPDIR/res.frames" "$FIX/taskB.frames" 2>/dev/null
    kill -TERM "$SPID"
    wait "$SPID"
    [ -s "$log.1" ]
    run $PY - "$log.1" "$log" <<'EOF2'
import sys, msgpack
n = 0
for p in sys.argv[1:]:
    fr = list(msgpack.Unpacker(open(p, "rb"), raw=False))
    h = fr[0]
    assert h["t"] == "header" and h["schema"] == "hnswflow.querylog" and h["dim"] == 64, h
    for f in fr[1:]:
        assert f["t"] == "query" and len(f["vec"]) == 256 and f["k"] == 10 and f["ef"] == 64 and f["time"] > 1.7e9, f
        n += 1
print(n)
EOF2
    [ "$status" -eq 0 ]
    echo "$output"
    [ "$output" = 400 ]
    validate "$log" "$log.1"
    # appending goes on after the last frame; a log is read like a vector stream
    start_query_server "$FIX/A.idx" "$log"
    "$BIN/query" --connect "$EP" -o "$BATS_TEST_TMPDIR/res.frames" "$FIX/small.frames" 2>/dev/null || true
    "$BIN/query" --connect "$EP" -o "$BATS_TEST_TMPDIR/res.frames" "$FIX/taskA.frames" 2>/dev/null
    kill -TERM "$SPID"
    wait "$SPID"
    n=$($PY -c "import msgpack, sys; print(sum(1 for f in msgpack.Unpacker(open(sys.argv[1], 'rb'), raw=False) if f['t'] == 'query'))" "$log")
    [ "$n" -ge 400 ]
    run --separate-stderr "$BIN/query" --index "$FIX/plain.idx" -o "$BATS_TEST_TMPDIR/r2.frames" "$log"
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"query: $n queries,"* ]]
    # a log of another dimension is refused at start, in one line
    $PY -c "import msgpack, sys; open(sys.argv[1], 'wb').write(msgpack.packb({'t': 'header', 'schema': 'hnswflow.querylog', 'v': 1, 'dim': 32, 'dtype': 'f32', 'metric': 'l2', 'count': 0}))" "$BATS_TEST_TMPDIR/q32.log"
    run --separate-stderr "$BIN/query" --index "$FIX/A.idx" --serve "tcp://127.0.0.1:$(free_port)" \
        --log "$BATS_TEST_TMPDIR/q32.log"
    assert_one_error_line q32.log "query log of dimension 32, this index has 64"
    run --separate-stderr "$BIN/query" --log "$log" --index "$FIX/A.idx" "$FIX/taskA.frames"
    assert_one_error_line query "--log is for --serve"
}

@test "a reload request (and SIGHUP) swaps the served index between requests; a bad one keeps the old" {
    cp "$FIX/plain.idx" "$BATS_TEST_TMPDIR/live.idx"
    start_query_server "$BATS_TEST_TMPDIR/live.idx" "$BATS_TEST_TMPDIR/q.log"
    run $PY - "$EP" "$BATS_TEST_TMPDIR/live.idx" "$FIX/A.idx" "$FIX/small.idx" <<'EOF2'
import sys, shutil, zmq, msgpack
ep, live, trained, small = sys.argv[1:5]
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 0)
s.setsockopt(zmq.RCVTIMEO, 10000)
s.connect(ep)
def ask(req):
    s.send_multipart([b"", msgpack.packb(req, use_bin_type=True)])
    return msgpack.unpackb(s.recv_multipart()[1], raw=False)
vec = bytes(256)
q = {"t": "query", "qid": 1, "vec": vec, "k": 5, "recall": 0.9}
assert ask(q)["t"] == "error"                       # no policy yet
shutil.copy(trained, live + ".tmp"); __import__("os").replace(live + ".tmp", live)
r = ask({"t": "reload"})
assert r["t"] == "reloaded" and r["nav"] is False, r  # the server was started without --nav
bad = ask({"t": "reload", "path": small})           # another dimension: refused
assert bad["t"] == "error" and "dimension" in bad["msg"], bad
miss = ask({"t": "reload", "path": "/nonexistent.idx"})
assert miss["t"] == "error", miss
a = ask({"t": "query", "qid": 2, "vec": vec, "k": 5})
assert a["t"] == "result" and len(a["ids"]) == 20, a
print("ok")
EOF2
    echo "$output"
    [ "$status" -eq 0 ]
    kill -HUP "$SPID"
    wait_for_line "$BATS_TEST_TMPDIR/serve.log" "reloaded .*live.idx"
    kill -TERM "$SPID"
    wait "$SPID"
}

@test "pipelines/retrain.sh: log, retrain, swap under query load; no request lost or answered wrongly" {
    cp "$FIX/weak.idx" "$BATS_TEST_TMPDIR/serve.idx"
    log="$BATS_TEST_TMPDIR/q.log"
    start_query_server "$BATS_TEST_TMPDIR/serve.idx" "$log" --nav
    run $PY "$REPO/bench/sleep_cycle.py" --endpoint "$EP" --base "$FIX/base.npy" --queries "$FIX/taskB.npy" \
        --log-queries 400 --recall 0.95 --after 1 \
        --retrain "BIN=$BIN $REPO/pipelines/retrain.sh --reload $EP --holdout 0.25 $BATS_TEST_TMPDIR/serve.idx $log --threads 2 --ppo-iters 0 --val-ef 10,16,32,64"
    echo "$output"
    [ "$status" -eq 0 ]
    echo "$output" | grep -Eq "held-aside: [0-9]+ queries"
    [[ "$output" == *" 0 lost, 0 refused, 0 wrong; pipeline status 0"* ]]
    kill -TERM "$SPID"
    wait "$SPID"
    if [[ "$output" == *"serve.idx swapped"* ]]; then
        [ "$(policy_field "$BATS_TEST_TMPDIR/serve.idx" 'f["tasks"]')" = 2 ]
        grep -q "reloaded .*serve.idx" "$BATS_TEST_TMPDIR/serve.log"
    else
        [[ "$output" == *"nothing swapped"* ]]
        cmp "$FIX/weak.idx" "$BATS_TEST_TMPDIR/serve.idx"
    fi
}

@test "pipelines/retrain.sh --consolidate: a live consolidate logs, takes the new models, checkpoints them" {
    cp "$FIX/A.idx" "$BATS_TEST_TMPDIR/ck.idx"
    QEP="tcp://127.0.0.1:$(free_port)"
    UEP="tcp://127.0.0.1:$(free_port)"
    log="$BATS_TEST_TMPDIR/live.log"
    "$BIN/consolidate" --index "$BATS_TEST_TMPDIR/ck.idx" -o "$BATS_TEST_TMPDIR/ck.idx" \
        --serve "$QEP" --updates "$UEP" --log "$log" 2>"$BATS_TEST_TMPDIR/live.err" 3>&- &
    CPID=$!
    wait_for_line "$BATS_TEST_TMPDIR/live.err" "serving|live"
    run $PY "$REPO/bench/sleep_cycle.py" --endpoint "$QEP" --base "$FIX/base.npy" --queries "$FIX/taskB.npy" \
        --log-queries 400 --after 0.5 \
        --retrain "BIN=$BIN $REPO/pipelines/retrain.sh --consolidate $QEP --holdout 0.25 --replay 100 $BATS_TEST_TMPDIR/ck.idx $log --threads 2 --ppo-iters 0 --val-ef 10,16,32,64"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *" 0 lost, 0 refused, 0 wrong; pipeline status 0"* ]]
    kill -TERM "$CPID"
    wait "$CPID"
    if [[ "$output" == *"carries the new models"* ]]; then
        # the checkpoint written at SIGTERM carries the retrained policy
        [ "$(policy_field "$BATS_TEST_TMPDIR/ck.idx" 'f["tasks"]')" = 2 ]
    else
        [[ "$output" == *"nothing swapped"* ]]
    fi
}

@test "pipelines/retrain.sh refuses a log of another dimension, a truncated log, an index without a policy: one line, nothing swapped" {
    cp "$FIX/A.idx" "$BATS_TEST_TMPDIR/s.idx"
    sum=$(md5sum <"$BATS_TEST_TMPDIR/s.idx")
    # a log of 32-dimensional queries
    start_query_server "$FIX/A.idx" "$BATS_TEST_TMPDIR/q.log"
    kill -TERM "$SPID"
    wait "$SPID"
    $PY - "$BATS_TEST_TMPDIR/q.log" "$BATS_TEST_TMPDIR/q32.log" "$BATS_TEST_TMPDIR/cut.log" "$FIX/taskB.npy" <<'EOF2'
import sys, msgpack, numpy as np
src, q32, cut, qs = sys.argv[1:5]
h = next(msgpack.Unpacker(open(src, "rb"), raw=False))
Q = np.load(qs)
def log(path, dim, n):
    hh = dict(h, dim=dim)
    b = msgpack.packb(hh, use_bin_type=True)
    for i in range(n):
        b += msgpack.packb({"t": "query", "qid": i, "vec": Q[i, :dim].tobytes(), "k": 10, "ef": 64, "time": 1.8e9}, use_bin_type=True)
    return b
open(q32, "wb").write(log(q32, 32, 100))
b = log(cut, 64, 100)
open(cut, "wb").write(b[: len(b) - 100])
EOF2
    run --separate-stderr env BIN="$BIN" "$REPO/pipelines/retrain.sh" "$BATS_TEST_TMPDIR/s.idx" "$BATS_TEST_TMPDIR/q32.log"
    assert_one_error_line q32.log "dimension 32, index has 64.*nothing swapped"
    run --separate-stderr env BIN="$BIN" "$REPO/pipelines/retrain.sh" "$BATS_TEST_TMPDIR/s.idx" "$BATS_TEST_TMPDIR/cut.log"
    assert_one_error_line cut.log "frame 10[01]: truncated.*nothing swapped"
    run --separate-stderr env BIN="$BIN" "$REPO/pipelines/retrain.sh" "$FIX/plain.idx" "$BATS_TEST_TMPDIR/cut.log"
    assert_one_error_line plain.idx "no nav-policy.*nothing swapped"
    [ "$(md5sum <"$BATS_TEST_TMPDIR/s.idx")" = "$sum" ]
    ls "$BATS_TEST_TMPDIR" | grep -v retrain >/dev/null
    ! ls "$BATS_TEST_TMPDIR"/s.idx.retrain.* 2>/dev/null
}

@test "layer-route --train, --init --ewc --replay: the router keeps its Fisher and reservoir, tasks add up" {
    run --separate-stderr "$BIN/layer-route" --threads 2 --candidates 32 --train "$FIX/taskA.frames" \
        -o "$BATS_TEST_TMPDIR/RA.idx" "$FIX/plain.idx"
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"validation on 100 held-aside"* ]]
    run policy_router "$BATS_TEST_TMPDIR/RA.idx" 'len(f["fisher"]) // 4 == sum(len(t["data"]) // 4 for t in f["params"] if t["name"] != "mu"), f["tasks"], len(f["replay"]) // 256'
    [ "$output" = "(True, 1, 300)" ]
    run --separate-stderr "$BIN/layer-route" --threads 2 --init "$BATS_TEST_TMPDIR/RA.idx" \
        --train "$FIX/taskB.frames" --ewc 100 --replay 200 -o "$BATS_TEST_TMPDIR/RB.idx" "$FIX/plain.idx"
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"continual: from $BATS_TEST_TMPDIR/RA.idx, EWC on (lambda 100, Fisher of 1 earlier task), 200 replayed queries; reservoir kept: 600 of 600"* ]]
    [[ "$stderr" == *"layer-route:   previous "* ]]
    [[ "$stderr" == *"layer-route:   pca-router "* ]]
    run policy_router "$BATS_TEST_TMPDIR/RB.idx" 'f["tasks"], f["ncand"]'
    [ "$output" = "(2, 32)" ]
    # written: the cheapest of trained, PCA and previous within the tolerance (trained if
    # none; previous on a tie: nothing replaced for no gain)
    run policy_router "$BATS_TEST_TMPDIR/RB.idx" '(lambda v: (v["written"], sorted(v["ndist"]), min((sum(c / k for c, k in zip(v["ndist"][m], v["ndist"]["classic"])), m != "previous", m) for m in ("pca-router", "trained", "previous") if all(r >= q - v["tolerance"] for r, q in zip(v["recall"][m], v["recall"]["classic"])))[2] if any(all(r >= q - v["tolerance"] for r, q in zip(v["recall"][m], v["recall"]["classic"])) for m in ("pca-router", "trained", "previous")) else "trained"))(f["validation"])'
    [[ "$output" =~ ^\(\'([a-z-]+)\',\ \[\'classic\',\ \'flat\',\ \'nearest\',\ \'pca-router\',\ \'previous\',\ \'trained\'\],\ \'([a-z-]+)\'\)$ ]]
    [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ]
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/RB.idx" --route -o "$BATS_TEST_TMPDIR/r" "$FIX/taskB.frames"
    [ "$status" -eq 0 ]
    run --separate-stderr "$BIN/layer-route" --ewc 10 --train "$FIX/taskB.frames" -o "$BATS_TEST_TMPDIR/x.idx" "$FIX/plain.idx"
    assert_one_error_line layer-route "give --init"
    run --separate-stderr "$BIN/layer-route" --init "$FIX/plain.idx" --train "$FIX/taskB.frames" -o "$BATS_TEST_TMPDIR/x.idx" "$FIX/plain.idx"
    assert_one_error_line plain.idx "no layer-router model frame"
    run --separate-stderr "$BIN/layer-route" --init "$BATS_TEST_TMPDIR/RA.idx" --train "$FIX/small.frames" -o "$BATS_TEST_TMPDIR/x.idx" "$FIX/plain.idx"
    assert_one_error_line small.frames "dimension 32, index has 64"
    assert_no_output "$BATS_TEST_TMPDIR/x.idx"
}
