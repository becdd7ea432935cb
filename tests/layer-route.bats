#!/usr/bin/env bats
# layer-route: an index stream in, the same index with a "layer-router"
# model frame out; query --route / --entry use it.

load helpers

setup_file() {
    need_bins graph-build layer-route query recall
    $GEN -n 3000 -d 16 --seed 31 -f frames "$FIX/base.frames"
    $GEN -n 300 -d 16 --seed 32 -f frames "$FIX/queries.frames"
    "$BIN/graph-build" --threads 1 --seed 7 -o "$FIX/plain.idx" "$FIX/base.frames" 2>/dev/null
    "$BIN/layer-route" --threads 2 --candidates 64 --queries 1500 --val-queries 300 --epochs 5 \
        -o "$FIX/routed.idx" "$FIX/plain.idx" 2>"$FIX/route.log"
    "$BIN/query" --index "$FIX/plain.idx" --exact -k 10 -o "$FIX/gt" "$FIX/queries.frames" 2>/dev/null
}

@test "layer-route --help exits 0 and names its options" {
    run "$BIN/layer-route" --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"usage: layer-route"* ]]
    [[ "$output" == *"--candidates"* ]]
    [[ "$output" == *"--code-dim"* ]]
}

@test "layer-route prints its validation table and writes a valid index with one router frame matching its schema" {
    cat "$FIX/route.log"
    grep -q "validation on 300 held-aside base vectors" "$FIX/route.log"
    grep -q "^layer-route:   classic " "$FIX/route.log"
    grep -q "^layer-route:   trained " "$FIX/route.log"
    grep -q "written: the " "$FIX/route.log"
    validate --expect index "$FIX/routed.idx"
    valid_model_frame "$FIX/routed.idx" layer-router
    $PY - "$FIX/routed.idx" <<'EOF2'
import sys, msgpack
models = [f for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False) if f["t"] == "model"]
assert models[0]["ncand"] == 64 and models[0]["dim"] == 16
EOF2
}

@test "query --route and --entry flat|nearest answer every query, count routing, and find neighbours" {
    for m in "--route" "--entry flat" "--entry nearest" ""; do
        # shellcheck disable=SC2086
        run --separate-stderr "$BIN/query" --index "$FIX/routed.idx" $m --ef 64 -k 10 \
            -o "$BATS_TEST_TMPDIR/r" "$FIX/queries.frames"
        echo "$m: $stderr"
        [ "$status" -eq 0 ]
        [[ "$stderr" == *"above level 0"*"routing)"*"mean hops"* ]]
        validate --expect results "$BATS_TEST_TMPDIR/r"
        recall_at_least "$FIX/gt" "$BATS_TEST_TMPDIR/r" 0.9
    done
    # nearest pays one distance per candidate: 64 routing distance computations
    run --separate-stderr "$BIN/query" --index "$FIX/routed.idx" --entry nearest -k 10 \
        -o /dev/null "$FIX/queries.frames"
    [[ "$stderr" == *"64.0 routing"* ]]
}

@test "a second layer-route replaces the router frame instead of adding one" {
    "$BIN/layer-route" --threads 1 --candidates 16 --queries 400 --val-queries 100 --epochs 1 \
        -o "$BATS_TEST_TMPDIR/twice.idx" "$FIX/routed.idx" 2>/dev/null
    run grep -c layer-router "$BATS_TEST_TMPDIR/twice.idx"
    [ "$output" = 1 ]
}

@test "query --route on an index without a router says so in one line and writes nothing" {
    run --separate-stderr "$BIN/query" --index "$FIX/plain.idx" --route \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/queries.frames"
    assert_one_error_line query "no layer-router model"
    assert_no_output "$BATS_TEST_TMPDIR/out"
    run --separate-stderr "$BIN/query" --index "$FIX/plain.idx" --entry nearest \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/queries.frames"
    assert_one_error_line query "no layer-router model"
}

# rewrite the router frame of $1 into $2 with python code $3 applied to it
edit_router() {
    edit_model layer-router "$@"
}

@test "a router whose candidate ids are not nodes of the graph is refused in one line" {
    edit_router "$FIX/routed.idx" "$BATS_TEST_TMPDIR/bad.idx" \
        'import struct; f["candidates"] = struct.pack("<I", 99999) + f["candidates"][4:]'
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/bad.idx" --route \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/queries.frames"
    assert_one_error_line query "candidate 99999 is not a node of the index"
    assert_no_output "$BATS_TEST_TMPDIR/out"
    # without --route the router is not read: the index still serves
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/bad.idx" -k 5 \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/queries.frames"
    [ "$status" -eq 0 ]
}

@test "a router of another dimension, and a corrupt router frame, are refused in one line" {
    # a consistent router for 8 dimensions (every tensor reshaped to match,
    # the Fisher and the reservoir, shaped by the dimension, left out)
    edit_router "$FIX/routed.idx" "$BATS_TEST_TMPDIR/dim.idx" '
f["dim"] = 8
for k in ("fisher", "tasks", "replay", "replay_seen"):
    f.pop(k)
for p in f["params"]:
    if p["name"] in ("mu", "W"):
        p["cols"] = 8
        p["data"] = p["data"][: p["rows"] * 8 * 4]'
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/dim.idx" --route \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/queries.frames"
    assert_one_error_line query "layer-router model is for dimension 8, the index has 16"
    assert_no_output "$BATS_TEST_TMPDIR/out"
    edit_router "$FIX/routed.idx" "$BATS_TEST_TMPDIR/cut.idx" 'f["candidates"] = f["candidates"][:10]'
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/cut.idx" --route \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/queries.frames"
    assert_one_error_line query "candidates"
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "layer-route chooses --rerank on its validation (or takes it); query --route pays for it; a bad rerank is refused" {
    # one line per contender; the frame keeps the written one's T
    $PY - "$FIX/routed.idx" "$FIX/route.log" <<'EOF2'
import re, sys, msgpack
m = next(f for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False) if f["t"] == "model")
kept = dict(re.findall(r"^layer-route: rerank ([a-z-]+) \(candidates measured exactly\), mean "
                       r"distance computations / classic's: 1: [0-9.]+x 2: [0-9.]+x "
                       r"4: [0-9.]+x 8: [0-9.]+x; kept: ([1248])$", open(sys.argv[2]).read(), re.M))
assert set(kept) == {"pca-router", "trained"}, kept
assert m["rerank"] == int(kept[m["validation"]["written"]]), (m["rerank"], kept)
EOF2
    run --separate-stderr "$BIN/layer-route" --threads 2 --candidates 64 --queries 1500 \
        --val-queries 300 --epochs 5 --rerank 3 -o "$BATS_TEST_TMPDIR/r3.idx" "$FIX/plain.idx"
    [ "$status" -eq 0 ]
    [[ "$stderr" != *"rerank (candidates"* ]]
    # routing cost: code and logits plus the 3 exact distances, in the frame and on stderr
    $PY - "$BATS_TEST_TMPDIR/r3.idx" <<'EOF2'
import sys, msgpack
m = next(f for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False) if f["t"] == "model")
assert m["rerank"] == 3
want = (m["r"] * m["dim"] + (m["ncand"] + 1) * m["r"]) / m["dim"] + 3
assert abs(m["validation"]["route_cost"] - want) < 1e-9, (m["validation"]["route_cost"], want)
EOF2
    valid_model_frame "$BATS_TEST_TMPDIR/r3.idx" layer-router
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/r3.idx" --route -k 10 \
        -o "$BATS_TEST_TMPDIR/res" "$FIX/queries.frames"
    [ "$status" -eq 0 ]
    run "$BIN/recall" --gt "$FIX/gt" "$BATS_TEST_TMPDIR/res"
    [[ "$output" =~ recall@10\ 0\.(9[0-9]|8[5-9]) ]] || [[ "$output" =~ recall@10\ 1\.0 ]]
    edit_router "$FIX/routed.idx" "$BATS_TEST_TMPDIR/rr.idx" 'f["rerank"] = 99'
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/rr.idx" --route \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/queries.frames"
    assert_one_error_line query "bad rerank"
    assert_no_output "$BATS_TEST_TMPDIR/out"
    run --separate-stderr "$BIN/layer-route" --rerank 17 "$FIX/plain.idx"
    [ "$status" -eq 64 ]
}

@test "layer-route and query refuse bad options with a usage error" {
    run --separate-stderr "$BIN/layer-route" --candidates 0 "$FIX/plain.idx"
    [ "$status" -eq 64 ]
    run --separate-stderr "$BIN/layer-route" --code-dim 999 "$FIX/plain.idx"
    [ "$status" -eq 64 ]
    run --separate-stderr "$BIN/layer-route" --val-ef 10,x "$FIX/plain.idx"
    [ "$status" -eq 64 ]
    run --separate-stderr "$BIN/query" --index "$FIX/routed.idx" --entry sideways "$FIX/queries.frames"
    [ "$status" -eq 64 ]
    run --separate-stderr "$BIN/query" --index "$FIX/routed.idx" --route --entry flat "$FIX/queries.frames"
    [ "$status" -eq 64 ]
    run --separate-stderr "$BIN/layer-route" -o "$BATS_TEST_TMPDIR/out" "$FIX/base.frames"
    assert_one_error_line layer-route "not an index"
    assert_no_output "$BATS_TEST_TMPDIR/out"
}
