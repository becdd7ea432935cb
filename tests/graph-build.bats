#!/usr/bin/env bats
# graph-build: a vector frame stream in, an HNSW index stream out.

load helpers

setup_file() {
    need_bins embed-load graph-build query recall
    $GEN -n 2000 -d 16 --seed 11 "$FIX/base.fvecs"
    $GEN -n 200 -d 16 --seed 12 "$FIX/queries.npy"
    "$BIN/embed-load" -o "$FIX/base.frames" "$FIX/base.fvecs"
    "$BIN/embed-load" -o "$FIX/queries.frames" "$FIX/queries.npy"
    "$BIN/graph-build" --threads 1 --seed 7 -o "$FIX/index" "$FIX/base.frames" 2>/dev/null
}

@test "graph-build --help exits 0 and prints usage" {
    run "$BIN/graph-build" --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"usage: graph-build"* ]]
}

@test "graph-build with an unknown option exits 64" {
    run "$BIN/graph-build" --no-such-option "$FIX/base.frames"
    [ "$status" -eq 64 ]
}

@test "graph-build with an unknown metric exits 64 and names it" {
    run --separate-stderr "$BIN/graph-build" --metric foo -o "$BATS_TEST_TMPDIR/out" "$FIX/base.frames"
    [ "$status" -eq 64 ]
    [[ "$stderr" == *foo* ]]
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "graph-build writes an index that validates against the schemas" {
    validate --expect index "$FIX/index"
    run show_frames "$FIX/index"
    [[ "${lines[0]}" == *'"schema": "hnswflow.index"'* ]]
    [[ "${lines[0]}" == *'"count": 2000'* ]]
    [[ "${lines[0]}" == *'"seed": 7'* ]]
}

@test "graph-build stores the input vectors unchanged and in order (its perm frame only describes memory)" {
    frames_to_npy "$FIX/index" "$BATS_TEST_TMPDIR/idx.npy"
    frames_to_npy "$FIX/base.frames" "$BATS_TEST_TMPDIR/base.npy"
    cmp "$BATS_TEST_TMPDIR/idx.npy" "$BATS_TEST_TMPDIR/base.npy"
}

@test "graph-build --no-permute stores the input vectors unchanged and writes no perm frame" {
    "$BIN/graph-build" --no-permute -o "$BATS_TEST_TMPDIR/np" "$FIX/base.frames" 2>/dev/null
    validate --expect index "$BATS_TEST_TMPDIR/np"
    frames_to_npy "$BATS_TEST_TMPDIR/np" "$BATS_TEST_TMPDIR/idx.npy"
    frames_to_npy "$FIX/base.frames" "$BATS_TEST_TMPDIR/base.npy"
    cmp "$BATS_TEST_TMPDIR/idx.npy" "$BATS_TEST_TMPDIR/base.npy"
    run show_frames "$BATS_TEST_TMPDIR/np"
    [[ "$output" != *'"t": "perm"'* ]]
}

@test "graph-build reads stdin, writes stdout and prints a summary on stderr" {
    run --separate-stderr bash -c '"$BIN/graph-build" --threads 2 <"$FIX/base.frames" >"$BATS_TEST_TMPDIR/i"'
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"2000 vectors, dim 16"* ]]
    validate --expect index "$BATS_TEST_TMPDIR/i"
}

# The fifo is opened read-write so that opening it never blocks (even when
# graph-build died at start); every step has a timeout so nothing can hang.
@test "graph-build -o makes the file appear only when the index is complete" {
    mkfifo "$BATS_TEST_TMPDIR/fifo"
    local out="$BATS_TEST_TMPDIR/idx"
    timeout 30 "$BIN/graph-build" --threads 1 --seed 7 -o "$out" "$BATS_TEST_TMPDIR/fifo" 2>/dev/null 3>&- &
    local pid=$!
    exec 7<>"$BATS_TEST_TMPDIR/fifo"
    # half the stream: the build cannot have finished, nothing may be visible
    timeout 10 head -c 60000 "$FIX/base.frames" >&7
    sleep 0.3
    [ ! -e "$out" ] || { exec 7>&-; false; }
    timeout 10 tail -c +60001 "$FIX/base.frames" >&7
    exec 7>&-
    wait "$pid"
    [ -s "$out" ]
    [ -z "$(ls "$out".tmp.* 2>/dev/null)" ]
    cmp "$out" "$FIX/index"
}

@test "graph-build killed by SIGTERM while waiting for input leaves no output" {
    mkfifo "$BATS_TEST_TMPDIR/fifo"
    local out="$BATS_TEST_TMPDIR/idx"
    "$BIN/graph-build" --threads 1 -o "$out" "$BATS_TEST_TMPDIR/fifo" 2>/dev/null 3>&- &
    local pid=$!
    exec 7<>"$BATS_TEST_TMPDIR/fifo"
    timeout 10 head -c 60000 "$FIX/base.frames" >&7
    sleep 0.2
    kill -TERM "$pid"
    run wait "$pid"
    exec 7>&-
    [ "$status" -ne 0 ]
    assert_no_output "$out"
}

@test "graph-build with the same seed and --threads 1 writes byte-identical indexes" {
    "$BIN/graph-build" --threads 1 --seed 7 -o "$BATS_TEST_TMPDIR/a" "$FIX/base.frames" 2>/dev/null
    "$BIN/graph-build" --threads 1 --seed 7 <"$FIX/base.frames" >"$BATS_TEST_TMPDIR/b" 2>/dev/null
    cmp "$BATS_TEST_TMPDIR/a" "$FIX/index"
    cmp "$BATS_TEST_TMPDIR/b" "$FIX/index"
}

@test "graph-build with a different seed writes a different index" {
    "$BIN/graph-build" --threads 1 --seed 8 -o "$BATS_TEST_TMPDIR/a" "$FIX/base.frames" 2>/dev/null
    ! cmp -s "$BATS_TEST_TMPDIR/a" "$FIX/index" || false
}

@test "graph-build with M 8, M0 12 keeps degrees within those bounds" {
    "$BIN/graph-build" -M 8 --M0 12 --ef-construction 50 -o "$BATS_TEST_TMPDIR/a" \
        "$FIX/base.frames" 2>/dev/null
    validate "$BATS_TEST_TMPDIR/a" # checks deg <= M0 on level 0, <= M above
    run show_frames "$BATS_TEST_TMPDIR/a"
    [[ "${lines[0]}" == *'"M": 8, "M0": 12, "ef_construction": 50'* ]]
}

build_and_check_recall() {
    local m="$1" d="$BATS_TEST_TMPDIR"
    "$BIN/graph-build" --metric "$m" --threads 2 -o "$d/idx.$m" "$FIX/base.frames" 2>/dev/null
    validate --expect index "$d/idx.$m"
    "$BIN/query" --index "$d/idx.$m" --ef 64 -o "$d/res.$m" "$FIX/queries.frames" 2>/dev/null
    "$BIN/query" --index "$d/idx.$m" --exact -o "$d/gt.$m" "$FIX/queries.frames" 2>/dev/null
    validate --expect results "$d/res.$m" "$d/gt.$m"
    run show_frames "$d/res.$m"
    [[ "${lines[0]}" == *"\"metric\": \"$m\""* ]]
    recall_at_least "$d/gt.$m" "$d/res.$m" 0.95
}

@test "graph-build --metric l2 builds an index with recall@10 >= 0.95" {
    build_and_check_recall l2
}

@test "graph-build --metric ip builds an index with recall@10 >= 0.95" {
    build_and_check_recall ip
}

@test "graph-build --metric cosine builds an index with recall@10 >= 0.95" {
    build_and_check_recall cosine
}

@test "graph-build --metric l1 builds an index with recall@10 >= 0.95" {
    build_and_check_recall l1
}

@test "graph-build of an index stream rebuilds an index with the same exact neighbours" {
    "$BIN/graph-build" --threads 1 --seed 7 -o "$BATS_TEST_TMPDIR/again" "$FIX/index" 2>/dev/null
    validate --expect index "$BATS_TEST_TMPDIR/again"
    "$BIN/query" --exact --index "$FIX/index" -o "$BATS_TEST_TMPDIR/g1" "$FIX/queries.frames" 2>/dev/null
    "$BIN/query" --exact --index "$BATS_TEST_TMPDIR/again" -o "$BATS_TEST_TMPDIR/g2" "$FIX/queries.frames" 2>/dev/null
    same_results "$BATS_TEST_TMPDIR/g1" "$BATS_TEST_TMPDIR/g2"
    frames_to_npy "$BATS_TEST_TMPDIR/again" "$BATS_TEST_TMPDIR/again.npy"
    frames_to_npy "$FIX/base.frames" "$BATS_TEST_TMPDIR/base.npy"
    cmp "$BATS_TEST_TMPDIR/again.npy" "$BATS_TEST_TMPDIR/base.npy"
}

# ---- bad input: one line on stderr naming input and frame, no output ----

@test "graph-build fails on empty input, naming frame 1, and leaves no output" {
    : >"$BATS_TEST_TMPDIR/empty"
    run --separate-stderr "$BIN/graph-build" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/empty"
    assert_one_error_line empty 'frame 1'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "graph-build fails on empty stdin, naming stdin" {
    run --separate-stderr "$BIN/graph-build" -o "$BATS_TEST_TMPDIR/out" </dev/null
    assert_one_error_line stdin 'frame 1'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "graph-build fails on garbage bytes, naming the frame, and leaves no output" {
    $GEN -n 100 -d 16 -f bytes "$BATS_TEST_TMPDIR/garbage"
    run --separate-stderr "$BIN/graph-build" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/garbage"
    assert_one_error_line garbage 'frame [0-9]+'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "graph-build fails on a vector stream cut in the middle and leaves no output" {
    cut_file "$FIX/base.frames" "$BATS_TEST_TMPDIR/cut"
    run --separate-stderr "$BIN/graph-build" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/cut"
    assert_one_error_line cut 'frame [0-9]+.*trunc'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "graph-build fails on a stream without its end frame and leaves no output" {
    $GEN -n 300 -d 16 --no-end "$BATS_TEST_TMPDIR/noend.frames"
    run --separate-stderr "$BIN/graph-build" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/noend.frames"
    assert_one_error_line noend.frames 'frame 3.*trunc'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "graph-build fails on a stream without header, naming frame 1, and leaves no output" {
    $GEN -n 300 -d 16 --no-header "$BATS_TEST_TMPDIR/nohdr.frames"
    run --separate-stderr "$BIN/graph-build" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/nohdr.frames"
    assert_one_error_line nohdr.frames 'frame 1.*header'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "graph-build fails on a vectors frame of the wrong dimension mid-stream and leaves no output" {
    $GEN -n 400 -d 16 --batch 100 --bad-dim-batch 2 "$BATS_TEST_TMPDIR/baddim.frames"
    run --separate-stderr "$BIN/graph-build" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/baddim.frames"
    assert_one_error_line baddim.frames 'frame 4'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "graph-build fails on a NaN inside a frame stream, naming frame and row, and leaves no output" {
    $GEN -n 400 -d 16 --batch 100 --nan 250,3 "$BATS_TEST_TMPDIR/nan.frames"
    run --separate-stderr "$BIN/graph-build" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/nan.frames"
    assert_one_error_line nan.frames 'frame 4.*row 250'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "graph-build fails on an Inf inside a frame stream and leaves no output" {
    $GEN -n 400 -d 16 --batch 100 --inf 10 "$BATS_TEST_TMPDIR/inf.frames"
    run --separate-stderr "$BIN/graph-build" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/inf.frames"
    assert_one_error_line inf.frames 'frame 2.*row 10'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "graph-build fails on a wrong end-frame checksum and leaves no output" {
    $GEN -n 300 -d 16 --bad-checksum "$BATS_TEST_TMPDIR/crc.frames"
    run --separate-stderr "$BIN/graph-build" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/crc.frames"
    assert_one_error_line crc.frames 'frame 3.*checksum'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "graph-build fails on a frame over --max-frame and leaves no output" {
    run --separate-stderr "$BIN/graph-build" --max-frame 1000 -o "$BATS_TEST_TMPDIR/out" "$FIX/base.frames"
    assert_one_error_line base.frames 'frame 2.*size limit'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "graph-build fails on a results stream (not vectors) and leaves no output" {
    "$BIN/query" --exact --index "$FIX/index" -o "$BATS_TEST_TMPDIR/res" "$FIX/queries.frames" 2>/dev/null
    run --separate-stderr "$BIN/graph-build" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/res"
    assert_one_error_line res 'frame 1'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "the Python frame writer's streams validate and graph-build accepts them" {
    $GEN -n 300 -d 16 --batch 128 "$BATS_TEST_TMPDIR/py.frames"
    validate "$BATS_TEST_TMPDIR/py.frames"
    run "$BIN/graph-build" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/py.frames"
    [ "$status" -eq 0 ]
    validate --expect index "$BATS_TEST_TMPDIR/out"
}

@test "the frame validator rejects broken streams (so schema checks are not vacuous)" {
    local d="$BATS_TEST_TMPDIR"
    $GEN -n 300 -d 16 --no-header "$d/a"
    $GEN -n 300 -d 16 --no-end "$d/b"
    $GEN -n 300 -d 16 --bad-checksum "$d/c"
    $GEN -n 300 -d 16 --batch 100 --bad-dim-batch 1 "$d/e"
    $GEN -n 300 -d 16 --nan 5 "$d/f"
    cut_file "$FIX/index" "$d/g"
    flip_byte "$FIX/index" 1000 "$d/h"
    for f in a b c e f g h; do
        run $VALIDATE -q "$d/$f"
        echo "$f: $output"
        [ "$status" -eq 1 ]
        [[ "$output" == *"frame "[0-9]* ]]
    done
    # a vectors header without dim breaks the schema
    $PY -c 'import msgpack, sys; sys.stdout.buffer.write(msgpack.packb({"t": "header", "schema": "hnswflow.vectors", "v": 1, "dtype": "f32", "count": 0}) + msgpack.packb({"t": "end", "count": 0, "checksum": 0}))' >"$d/i"
    run $VALIDATE -q "$d/i"
    [ "$status" -eq 1 ]
    [[ "$output" == *"frame 1: header-vectors.json"*dim* ]]
}

@test "graph-build --preset speed writes a rows frame that validates; query answers from the rows with exact distances" {
    "$BIN/graph-build" --preset speed --threads 1 --seed 7 -o "$BATS_TEST_TMPDIR/sp" "$FIX/base.frames" \
        2>"$BATS_TEST_TMPDIR/build.log"
    grep -q 'speed rows [0-9]* B/node' "$BATS_TEST_TMPDIR/build.log"
    validate --expect index "$BATS_TEST_TMPDIR/sp"
    run show_frames "$BATS_TEST_TMPDIR/sp"
    [[ "$output" == *'"t": "rows", "v": 2, "dpad": 64, "rounds": 3, "signs": {"$bin": 768}, "mix": {"$bin": 12}'* ]]
    "$BIN/query" --index "$BATS_TEST_TMPDIR/sp" --exact -o "$BATS_TEST_TMPDIR/gt" "$FIX/queries.frames" 2>/dev/null
    "$BIN/query" --index "$BATS_TEST_TMPDIR/sp" --ef 64 -o "$BATS_TEST_TMPDIR/r" "$FIX/queries.frames" 2>/dev/null
    validate "$BATS_TEST_TMPDIR/r"
    recall_at_least "$BATS_TEST_TMPDIR/gt" "$BATS_TEST_TMPDIR/r" 0.95
    # every answer carries its exact distance: where an id is also in the
    # exact answer, the two distances agree
    $PY - "$BATS_TEST_TMPDIR/gt" "$BATS_TEST_TMPDIR/r" <<'PYEOF'
import sys, msgpack, numpy as np
def res(p):
    return {f["qid"]: (np.frombuffer(f["ids"], "<u4"), np.frombuffer(f["dists"], "<f4"))
            for f in msgpack.Unpacker(open(p, "rb"), raw=False) if f["t"] == "result"}
gt, r = res(sys.argv[1]), res(sys.argv[2])
checked = 0
for q, (ids, d) in r.items():
    exact = dict(zip(gt[q][0].tolist(), gt[q][1].tolist()))
    for i, x in zip(ids.tolist(), d.tolist()):
        if i in exact:
            checked += 1
            if abs(exact[i] - x) > 1e-4 * (1 + abs(exact[i])):
                sys.exit(f"query {q} id {i}: distance {x}, exact {exact[i]}")
if checked < 1000:
    sys.exit(f"only {checked} answers compared")
PYEOF
}

@test "graph-build --preset speed builds the same graph as the classic preset (query --no-codes answers byte-identically)" {
    "$BIN/graph-build" --preset speed --threads 1 --seed 7 -o "$BATS_TEST_TMPDIR/sp" "$FIX/base.frames" 2>/dev/null
    "$BIN/query" --index "$BATS_TEST_TMPDIR/sp" --no-codes -o "$BATS_TEST_TMPDIR/a" "$FIX/queries.frames" 2>/dev/null
    "$BIN/query" --index "$FIX/index" -o "$BATS_TEST_TMPDIR/b" "$FIX/queries.frames" 2>/dev/null
    cmp "$BATS_TEST_TMPDIR/a" "$BATS_TEST_TMPDIR/b"
}

@test "graph-build --preset speed --metric cosine: query finds the true neighbours with cosine distances" {
    "$BIN/graph-build" --preset speed --metric cosine -o "$BATS_TEST_TMPDIR/sc" "$FIX/base.frames" 2>/dev/null
    "$BIN/query" --index "$BATS_TEST_TMPDIR/sc" --exact -o "$BATS_TEST_TMPDIR/gt" "$FIX/queries.frames" 2>/dev/null
    "$BIN/query" --index "$BATS_TEST_TMPDIR/sc" --ef 64 -o "$BATS_TEST_TMPDIR/r" "$FIX/queries.frames" 2>/dev/null
    run show_frames "$BATS_TEST_TMPDIR/r"
    [[ "${lines[0]}" == *'"metric": "cosine"'* ]]
    recall_at_least "$BATS_TEST_TMPDIR/gt" "$BATS_TEST_TMPDIR/r" 0.95
}

@test "graph-build --preset: unknown names, ip/l1 metrics and --compress are usage errors (64, no output)" {
    for args in "--preset fast" "--preset speed --metric ip" "--preset speed --metric l1" \
        "--preset speed --compress int8"; do
        # shellcheck disable=SC2086 # args are words
        run --separate-stderr "$BIN/graph-build" $args -o "$BATS_TEST_TMPDIR/out" "$FIX/base.frames"
        [ "$status" -eq 64 ]
        [[ "$stderr" == *preset* ]]
        assert_no_output "$BATS_TEST_TMPDIR/out"
    done
}
