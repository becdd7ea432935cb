#!/usr/bin/env bats
# CURVE on every ZeroMQ endpoint (libcommon/curve.c): keys made by
# pipelines/curve-keygen.sh, servers with --curve-secret/--curve-allow (a ZAP
# handler checks every client key against the allow-list directory), clients
# with --curve-key/--curve-server; the fan-out front end on both sides;
# consolidate's --serve/--updates/--connect; stream endpoints (channel.c),
# where the end that binds is the server and the end that connects a client.

load helpers

CLIENT="$PY $REPO/tests/fanout_client.py"
KEYGEN="sh $REPO/pipelines/curve-keygen.sh"

setup_file() {
    need_bins embed-load graph-build query
    $GEN -n 2000 -d 16 --seed 41 "$FIX/base.npy"
    $GEN -n 100 -d 16 --seed 42 "$FIX/queries.npy"
    "$BIN/embed-load" -o "$FIX/queries.frames" "$FIX/queries.npy"
    "$BIN/embed-load" "$FIX/base.npy" | "$BIN/graph-build" -t 1 -o "$FIX/all.idx" 2>/dev/null
    "$BIN/query" --index "$FIX/all.idx" -o "$FIX/res" "$FIX/queries.frames" 2>/dev/null
    BIN="$BIN" sh "$REPO/pipelines/shard-build.sh" "$FIX/base.npy" 2 "$FIX/s2" -t 1 2>/dev/null
    mkdir -p "$FIX/keys" "$FIX/allow" "$FIX/allow-front"
    $KEYGEN server "$FIX/keys"
    $KEYGEN client "$FIX/keys"
    $KEYGEN stranger "$FIX/keys"
    $KEYGEN front "$FIX/keys"
    cp "$FIX/keys/client" "$FIX/allow/"
    cp "$FIX/keys/front" "$FIX/allow/"
    cp "$FIX/keys/client" "$FIX/allow-front/"
}

PIDS=()

teardown() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}

# serve_curve NAME INDEX [options] : a CURVE server (server key, allow dir)
serve_curve() {
    local name=$1 idx=$2 port
    shift 2
    port="$(free_port)"
    "$BIN/query" --index "$idx" --serve "tcp://127.0.0.1:$port" \
        --curve-secret "$FIX/keys/server.secret" --curve-allow "$FIX/allow" "$@" \
        2>"$BATS_TEST_TMPDIR/$name.log" 3>&- &
    PIDS+=($!)
    printf -v "PID_$name" '%s' "$!"
    printf -v "EP_$name" '%s' "tcp://127.0.0.1:$port"
    wait_for_line "$BATS_TEST_TMPDIR/$name.log" "serving"
}

json_field() {
    $PY -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

@test "curve-keygen.sh writes a public file and a mode-600 secret file, and never overwrites" {
    local d="$BATS_TEST_TMPDIR/k"
    mkdir "$d"
    $KEYGEN me "$d"
    grep -Eq '^    public-key = "[^"]{40}"$' "$d/me"
    ! grep -q secret-key "$d/me"
    grep -Eq '^    secret-key = "[^"]{40}"$' "$d/me.secret"
    [ "$(stat -c %a "$d/me.secret")" = 600 ]
    [ "$(grep public-key "$d/me")" = "$(grep public-key "$d/me.secret")" ]
    run $KEYGEN me "$d"
    [ "$status" -ne 0 ]
    [[ "$output" == *"not overwritten"* ]]
    run $KEYGEN ../x "$d"
    [ "$status" -eq 64 ]
}

@test "a CURVE server answers an allowed client (query --connect) exactly as the plain server does" {
    serve_curve s "$FIX/all.idx"
    "$BIN/query" --connect "$EP_s" --curve-key "$FIX/keys/client.secret" --curve-server "$FIX/keys/server" \
        -o "$BATS_TEST_TMPDIR/r" "$FIX/queries.frames" 2>/dev/null
    same_results "$BATS_TEST_TMPDIR/r" "$FIX/res"
}

@test "a client without CURVE, or with a key not on the allow-list, gets no answer; the server says it refused them" {
    serve_curve s "$FIX/all.idx"
    run $CLIENT "$EP_s" --probe 1.5
    [ "$output" = '{"answered": false}' ]
    run $CLIENT "$EP_s" --probe 1.5 --curve-key "$FIX/keys/stranger.secret" --curve-server "$FIX/keys/server"
    [ "$output" = '{"answered": false}' ]
    # the control: the same probe with an allowed key is answered
    run $CLIENT "$EP_s" --probe 3 --curve-key "$FIX/keys/client.secret" --curve-server "$FIX/keys/server"
    [ "$output" = '{"answered": true}' ]
    kill -TERM "$PID_s"
    wait "$PID_s"
    PIDS=()
    grep -Eq "CURVE: refused [1-9][0-9]* connection attempts" "$BATS_TEST_TMPDIR/s.log"
}

@test "the fan-out front end with CURVE on both sides answers an allowed client as the plain fan-out does" {
    serve_curve a "$FIX/s2/shard-0.idx"
    serve_curve b "$FIX/s2/shard-1.idx"
    local port
    port="$(free_port)"
    "$BIN/query" --fanout "$EP_a,$EP_b" --serve "tcp://127.0.0.1:$port" \
        --curve-secret "$FIX/keys/server.secret" --curve-allow "$FIX/allow-front" \
        --curve-key "$FIX/keys/front.secret" --curve-server "$FIX/keys/server" 2>"$BATS_TEST_TMPDIR/front.log" 3>&- &
    PIDS+=($!)
    wait_for_line "$BATS_TEST_TMPDIR/front.log" "fan-out serving"
    "$BIN/query" --connect "tcp://127.0.0.1:$port" --curve-key "$FIX/keys/client.secret" \
        --curve-server "$FIX/keys/server" -o "$BATS_TEST_TMPDIR/r" "$FIX/queries.frames" 2>/dev/null
    # the same shards without CURVE
    local p2 p3 p4
    p2="$(free_port)"
    p3="$(free_port)"
    "$BIN/query" --index "$FIX/s2/shard-0.idx" --serve "tcp://127.0.0.1:$p2" 2>"$BATS_TEST_TMPDIR/p0.log" 3>&- &
    PIDS+=($!)
    "$BIN/query" --index "$FIX/s2/shard-1.idx" --serve "tcp://127.0.0.1:$p3" 2>"$BATS_TEST_TMPDIR/p1.log" 3>&- &
    PIDS+=($!)
    wait_for_line "$BATS_TEST_TMPDIR/p0.log" serving
    wait_for_line "$BATS_TEST_TMPDIR/p1.log" serving
    p4="$(free_port)"
    "$BIN/query" --fanout "tcp://127.0.0.1:$p2,tcp://127.0.0.1:$p3" --serve "tcp://127.0.0.1:$p4" 2>"$BATS_TEST_TMPDIR/f2.log" 3>&- &
    PIDS+=($!)
    wait_for_line "$BATS_TEST_TMPDIR/f2.log" "fan-out serving"
    "$BIN/query" --connect "tcp://127.0.0.1:$p4" -o "$BATS_TEST_TMPDIR/plain" "$FIX/queries.frames" 2>/dev/null
    same_results "$BATS_TEST_TMPDIR/r" "$BATS_TEST_TMPDIR/plain"
    # a stranger gets nothing from the front end
    run $CLIENT "tcp://127.0.0.1:$port" --probe 1 --curve-key "$FIX/keys/stranger.secret" --curve-server "$FIX/keys/server"
    [ "$output" = '{"answered": false}' ]
}

@test "a front end whose key the shards do not allow is refused by them, logs it and never serves" {
    serve_curve a "$FIX/s2/shard-0.idx"
    local port
    port="$(free_port)"
    "$BIN/query" --fanout "$EP_a" --serve "tcp://127.0.0.1:$port" \
        --curve-key "$FIX/keys/stranger.secret" --curve-server "$FIX/keys/server" 2>"$BATS_TEST_TMPDIR/front.log" 3>&- &
    PIDS+=($!)
    wait_for_line "$BATS_TEST_TMPDIR/front.log" "refused our CURVE key"
    ! grep -q "fan-out serving" "$BATS_TEST_TMPDIR/front.log"
}

@test "CURVE options: pairs only, bad key files give one line naming the file" {
    run --separate-stderr "$BIN/query" --index "$FIX/all.idx" --serve tcp://127.0.0.1:1 --curve-secret "$FIX/keys/server.secret"
    assert_one_error_line query "--curve-secret and --curve-allow go together"
    [ "$status" -eq 64 ]
    run --separate-stderr "$BIN/query" --connect tcp://127.0.0.1:1 --curve-key "$FIX/keys/client.secret" "$FIX/queries.frames"
    assert_one_error_line query "--curve-key and --curve-server go together"
    run --separate-stderr "$BIN/query" --index "$FIX/all.idx" --serve "tcp://127.0.0.1:$(free_port)" \
        --curve-secret "$FIX/keys/server" --curve-allow "$FIX/allow"
    assert_one_error_line "keys/server" "no secret-key line"
    run --separate-stderr "$BIN/query" --index "$FIX/all.idx" --serve "tcp://127.0.0.1:$(free_port)" \
        --curve-secret "$FIX/keys/server.secret" --curve-allow "$FIX/keys"
    assert_one_error_line "secret" "holds a secret key"
    run --separate-stderr "$BIN/query" --index "$FIX/all.idx" --serve "tcp://127.0.0.1:$(free_port)" \
        --curve-secret "$FIX/keys/server.secret" --curve-allow "$BATS_TEST_TMPDIR/nonexistent"
    assert_one_error_line nonexistent "cannot open allow-list directory"
    [ "$status" -eq 66 ]
    printf 'curve\n    public-key = "short"\n' >"$BATS_TEST_TMPDIR/bad"
    run --separate-stderr "$BIN/query" --connect tcp://127.0.0.1:1 --curve-key "$FIX/keys/client.secret" \
        --curve-server "$BATS_TEST_TMPDIR/bad" "$FIX/queries.frames"
    assert_one_error_line bad "not 40 Z85 characters"
}

# ---- stream endpoints (channel.c): the end that binds is the CURVE server ----

@test "a CURVE stream: embed-load's bound output goes to an allowed graph-build only; the index is the one from a file" {
    local port ep
    port="$(free_port)"
    ep="tcp://127.0.0.1:$port"
    "$BIN/embed-load" -o "$ep" --curve-secret "$FIX/keys/server.secret" --curve-allow "$FIX/allow" \
        "$FIX/base.npy" 2>"$BATS_TEST_TMPDIR/w.log" 3>&- &
    PIDS+=($!)
    local wpid=$!
    # a reader without CURVE never completes a handshake: nothing, until it gives up
    run timeout 2 "$BIN/graph-build" -t 1 -o "$BATS_TEST_TMPDIR/none.idx" "$ep"
    [ "$status" -eq 124 ]
    # a key not on the list is refused: one line, no output
    run --separate-stderr timeout 10 "$BIN/graph-build" -t 1 -o "$BATS_TEST_TMPDIR/x.idx" \
        --curve-key "$FIX/keys/stranger.secret" --curve-server "$FIX/keys/server" "$ep"
    assert_one_error_line "$ep" "refused our CURVE key"
    [ ! -e "$BATS_TEST_TMPDIR/x.idx" ] && [ ! -e "$BATS_TEST_TMPDIR/none.idx" ]
    # the allowed reader gets the whole stream: every frame, checksum and all
    timeout 20 "$BIN/graph-build" -t 1 -o "$BATS_TEST_TMPDIR/c.idx" --curve-key "$FIX/keys/client.secret" \
        --curve-server "$FIX/keys/server" "$ep" 2>/dev/null
    wait "$wpid"
    PIDS=()
    cmp "$BATS_TEST_TMPDIR/c.idx" "$FIX/all.idx"
}

@test "a client holding the wrong server key gets one line at once, not a wait: a stream reader and query --connect" {
    local port ep
    port="$(free_port)"
    ep="tcp://127.0.0.1:$port"
    "$BIN/embed-load" -o "$ep" --curve-secret "$FIX/keys/server.secret" --curve-allow "$FIX/allow" \
        "$FIX/base.npy" 2>/dev/null 3>&- &
    PIDS+=($!)
    run --separate-stderr timeout 10 "$BIN/graph-build" -t 1 -o "$BATS_TEST_TMPDIR/x.idx" \
        --curve-key "$FIX/keys/client.secret" --curve-server "$FIX/keys/stranger" "$ep"
    assert_one_error_line "$ep" "dropped our CURVE handshake"
    [ ! -e "$BATS_TEST_TMPDIR/x.idx" ]
    serve_curve s "$FIX/all.idx"
    run --separate-stderr timeout 10 "$BIN/query" --connect "$EP_s" --curve-key "$FIX/keys/client.secret" \
        --curve-server "$FIX/keys/stranger" "$FIX/queries.frames"
    assert_one_error_line "$EP_s" "dropped our CURVE handshake"
}

@test "a CURVE stream the reader binds ('@'): a stranger writer is refused in one line, an allowed one's frames are taken" {
    local port
    port="$(free_port)"
    "$BIN/graph-build" -t 1 -o "$BATS_TEST_TMPDIR/b.idx" --curve-secret "$FIX/keys/server.secret" \
        --curve-allow "$FIX/allow" "@tcp://127.0.0.1:$port" 2>/dev/null 3>&- &
    PIDS+=($!)
    local rpid=$!
    sleep 0.3
    run --separate-stderr timeout 10 "$BIN/embed-load" -o ">tcp://127.0.0.1:$port" \
        --curve-key "$FIX/keys/stranger.secret" --curve-server "$FIX/keys/server" "$FIX/base.npy"
    assert_one_error_line "tcp://127.0.0.1:$port" "refused our CURVE key"
    timeout 20 "$BIN/embed-load" -o ">tcp://127.0.0.1:$port" --curve-key "$FIX/keys/client.secret" \
        --curve-server "$FIX/keys/server" "$FIX/base.npy"
    wait "$rpid"
    PIDS=()
    cmp "$BATS_TEST_TMPDIR/b.idx" "$FIX/all.idx"
}

@test "query's streams take CURVE too: queries from a CURVE writer, results to a bound CURVE output" {
    local p1 p2
    p1="$(free_port)"
    p2="$(free_port)"
    "$BIN/embed-load" -o "tcp://127.0.0.1:$p1" --curve-secret "$FIX/keys/server.secret" \
        --curve-allow "$FIX/allow" "$FIX/queries.npy" 2>/dev/null 3>&- &
    PIDS+=($!)
    "$BIN/query" --index "$FIX/all.idx" -o "tcp://127.0.0.1:$p2" --curve-secret "$FIX/keys/server.secret" \
        --curve-allow "$FIX/allow" --curve-key "$FIX/keys/client.secret" --curve-server "$FIX/keys/server" \
        "tcp://127.0.0.1:$p1" 2>/dev/null 3>&- &
    PIDS+=($!)
    # the results stream up to its end frame, read with pyzmq's CURVE and the
    # package's key reader (dump reads a ZeroMQ input until it is killed)
    timeout 20 $PY - "tcp://127.0.0.1:$p2" "$FIX/keys" "$BATS_TEST_TMPDIR/r" "$REPO" <<'EOF2'
import sys, zmq, msgpack
ep, keys, out, repo = sys.argv[1:]
sys.path.insert(0, repo + "/pipelines/python")
from hnswflow import read_curve_key
s = zmq.Context().socket(zmq.PULL)
s.curve_publickey, s.curve_secretkey = read_curve_key(keys + "/client.secret", True)
s.curve_serverkey = read_curve_key(keys + "/server", False)[0]
s.connect(ep)
with open(out, "wb") as f:
    while True:
        m = s.recv()
        f.write(m)
        if msgpack.unpackb(m, raw=False)["t"] == "end":
            break
EOF2
    same_results "$BATS_TEST_TMPDIR/r" "$FIX/res"
}

@test "the learned filters take CURVE streams: an index from a CURVE writer trains the same model as from a file; a stranger key is refused" {
    local f port ep
    "$BIN/embed-load" -o "$BATS_TEST_TMPDIR/base.frames" "$FIX/base.npy"
    for f in layer-route nav-train edge-score; do
        local args=(-t 1 --epochs 1 --queries 200 --val-queries 100)
        [ "$f" = nav-train ] && args+=(--ppo-iters 0)
        "$BIN/$f" "${args[@]}" -o "$BATS_TEST_TMPDIR/$f.file.idx" "$FIX/all.idx" 2>/dev/null
        port="$(free_port)"
        ep="tcp://127.0.0.1:$port"
        "$BIN/graph-build" -t 1 -o "$ep" --curve-secret "$FIX/keys/server.secret" --curve-allow "$FIX/allow" \
            "$BATS_TEST_TMPDIR/base.frames" 2>/dev/null 3>&- &
        PIDS+=($!)
        run --separate-stderr timeout 10 "$BIN/$f" "${args[@]}" -o "$BATS_TEST_TMPDIR/$f.x.idx" \
            --curve-key "$FIX/keys/stranger.secret" --curve-server "$FIX/keys/server" "$ep"
        assert_one_error_line "$ep" "refused our CURVE key"
        [ ! -e "$BATS_TEST_TMPDIR/$f.x.idx" ]
        timeout 60 "$BIN/$f" "${args[@]}" -o "$BATS_TEST_TMPDIR/$f.curve.idx" \
            --curve-key "$FIX/keys/client.secret" --curve-server "$FIX/keys/server" "$ep" 2>/dev/null
        cmp "$BATS_TEST_TMPDIR/$f.curve.idx" "$BATS_TEST_TMPDIR/$f.file.idx"
        # an end without its pair is a usage error, before any work
        run --separate-stderr "$BIN/$f" -o "tcp://127.0.0.1:$(free_port)" --curve-key "$FIX/keys/client.secret" \
            --curve-server "$FIX/keys/server" "$FIX/all.idx"
        assert_one_error_line "this end binds" "--curve-secret"
        [ "$status" -eq 64 ]
    done
}

@test "consolidate --serve/--updates with CURVE: an allowed producer's updates and queries are answered as without CURVE; a stranger is refused and changes nothing" {
    local d=$BATS_TEST_TMPDIR
    $PY "$REPO/tests/make_updates.py" "$d/a.upd" --dim 8 --batch 100 insert:0:500 query:0:20
    local mode q u
    for mode in plain curve; do
        q="tcp://127.0.0.1:$(free_port)"
        u="tcp://127.0.0.1:$(free_port)"
        local srv=() cli=()
        if [ "$mode" = curve ]; then
            srv=(--curve-secret "$FIX/keys/server.secret" --curve-allow "$FIX/allow")
            cli=(--curve-key "$FIX/keys/client.secret" --curve-server "$FIX/keys/server")
        fi
        "$BIN/consolidate" -M 8 --serve "$q" --updates "$u" -o "$d/$mode.idx" "${srv[@]}" \
            2>"$d/$mode.log" 3>&- &
        PIDS+=($!)
        local lp=$!
        wait_for_line "$d/$mode.log" "live"
        if [ "$mode" = curve ]; then
            run --separate-stderr "$BIN/consolidate" --connect "$u" -r "$d/x" \
                --curve-key "$FIX/keys/stranger.secret" --curve-server "$FIX/keys/server" "$d/a.upd"
            assert_one_error_line "$u" "refused our CURVE key"
            run --separate-stderr "$BIN/query" --connect "$q" --curve-key "$FIX/keys/stranger.secret" \
                --curve-server "$FIX/keys/server" "$FIX/queries.frames"
            assert_one_error_line "$q" "refused our CURVE key"
        fi
        "$BIN/consolidate" --connect "$u" -r "$d/$mode.res" "${cli[@]}" "$d/a.upd" 2>"$d/$mode.p"
        grep -q "5 updates acknowledged" "$d/$mode.p"
        kill -TERM "$lp"
        wait "$lp"
        PIDS=()
    done
    same_results "$d/curve.res" "$d/plain.res"
    cmp "$d/curve.idx" "$d/plain.idx"
}

@test "CURVE on streams: an end without its pair, or no ZeroMQ endpoint at all, is a usage error in one line" {
    run --separate-stderr "$BIN/embed-load" -o "tcp://127.0.0.1:$(free_port)" --curve-key "$FIX/keys/client.secret" \
        --curve-server "$FIX/keys/server" "$FIX/base.npy"
    assert_one_error_line "this end binds" "--curve-secret"
    [ "$status" -eq 64 ]
    run --separate-stderr "$BIN/graph-build" --curve-secret "$FIX/keys/server.secret" --curve-allow "$FIX/allow" \
        tcp://127.0.0.1:1
    assert_one_error_line "this end connects" "--curve-key"
    [ "$status" -eq 64 ]
    run --separate-stderr "$BIN/embed-load" -o "$BATS_TEST_TMPDIR/x.frames" --curve-secret "$FIX/keys/server.secret" \
        --curve-allow "$FIX/allow" "$FIX/base.npy"
    assert_one_error_line embed-load "nothing here serves"
    [ "$status" -eq 64 ]
    [ ! -e "$BATS_TEST_TMPDIR/x.frames" ]
    run --separate-stderr "$BIN/consolidate" --connect tcp://127.0.0.1:1 --curve-secret "$FIX/keys/server.secret" \
        --curve-allow "$FIX/allow" "$BATS_TEST_TMPDIR/x.upd"
    assert_one_error_line consolidate "nothing here serves"
    run --separate-stderr "$BIN/info" --curve-key "$FIX/keys/client.secret" "$FIX/all.idx"
    assert_one_error_line info "--curve-key and --curve-server go together"
}
