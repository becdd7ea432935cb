#!/usr/bin/env bats
# recall: recall@k of results streams against ground truth.

load helpers

setup_file() {
    need_bins embed-load graph-build query recall
    $GEN -n 1500 -d 16 --seed 31 "$FIX/base.npy"
    $GEN -n 100 -d 16 --seed 32 "$FIX/queries.npy"
    "$BIN/embed-load" -o "$FIX/base.frames" "$FIX/base.npy"
    "$BIN/embed-load" -o "$FIX/queries.frames" "$FIX/queries.npy"
    "$BIN/graph-build" -o "$FIX/index" "$FIX/base.frames" 2>/dev/null
    "$BIN/query" --index "$FIX/index" --exact -k 20 -o "$FIX/gt" "$FIX/queries.frames" 2>/dev/null
    "$BIN/query" --index "$FIX/index" -o "$FIX/res" "$FIX/queries.frames" 2>/dev/null
}

@test "recall --help exits 0 and prints usage" {
    run "$BIN/recall" --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"usage: recall"* ]]
}

@test "recall with an unknown option exits 64" {
    run "$BIN/recall" --no-such-option --gt "$FIX/gt" "$FIX/res"
    [ "$status" -eq 64 ]
}

@test "recall without --gt exits 64" {
    run "$BIN/recall" "$FIX/res"
    [ "$status" -eq 64 ]
}

@test "recall of exact results against themselves is 1.0000" {
    run "$BIN/recall" --gt "$FIX/gt" "$FIX/gt"
    [ "$status" -eq 0 ]
    [[ "$output" == "recall@10 1.0000 (id overlap 1.0000) "* ]]
}

@test "recall -k 20 of exact results against themselves is 1.0000" {
    run "$BIN/recall" -k 20 --gt "$FIX/gt" "$FIX/gt"
    [ "$status" -eq 0 ]
    [[ "$output" == "recall@20 1.0000 "* ]]
}

@test "recall of HNSW results is high but at most 1, one line per results file" {
    run "$BIN/recall" --gt "$FIX/gt" "$FIX/res" "$FIX/gt"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 2 ]
    awk '{ if ($2 < 0.9 || $2 > 1) exit 1 }' <<<"${lines[0]}"
    [[ "${lines[1]}" == "recall@10 1.0000 "* ]]
}

@test "recall of results with k 5 against k 10 ground truth counts missing answers" {
    "$BIN/query" --exact -k 5 --index "$FIX/index" -o "$BATS_TEST_TMPDIR/r5" "$FIX/queries.frames" 2>/dev/null
    run "$BIN/recall" --gt "$FIX/gt" "$BATS_TEST_TMPDIR/r5"
    [ "$status" -eq 0 ]
    [[ "$output" == "recall@10 0.5000 (id overlap 0.5000) "* ]]
}

@test "recall asking for more neighbours than the ground truth has exits 64" {
    run "$BIN/recall" -k 50 --gt "$FIX/gt" "$FIX/res"
    [ "$status" -eq 64 ]
}

@test "recall fails on a results file with a different number of queries" {
    "$BIN/embed-load" --limit 40 -o "$BATS_TEST_TMPDIR/q40" "$FIX/queries.npy"
    "$BIN/query" --index "$FIX/index" -o "$BATS_TEST_TMPDIR/r40" "$BATS_TEST_TMPDIR/q40" 2>/dev/null
    run --separate-stderr "$BIN/recall" --gt "$FIX/gt" "$BATS_TEST_TMPDIR/r40"
    [ "$status" -ne 0 ]
    [[ "$stderr" == *r40* ]]
}

@test "recall fails on a truncated results file, naming it" {
    cut_file "$FIX/gt" "$BATS_TEST_TMPDIR/cut"
    run --separate-stderr "$BIN/recall" --gt "$BATS_TEST_TMPDIR/cut" "$FIX/res"
    assert_one_error_line cut '.'
}
