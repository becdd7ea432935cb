#!/usr/bin/env bats
# Filtered search (issue 19): embed-load --labels, labels frames in the
# index, query --filters and request filters, consolidate inserts with
# labels; and the bad inputs, one clear line each.

load helpers

setup_file() {
    need_bins embed-load graph-build query consolidate recall
    $GEN -n 3000 -d 8 --seed 31 "$FIX/base.npy"
    $GEN -n 60 -d 8 --seed 32 "$FIX/queries.npy"
    # row r: labels r % 10 and 100 + r % 100 (10 % and 1 %)
    awk 'BEGIN { for (r = 0; r < 3000; r++) print r % 10, 100 + r % 100 }' >"$FIX/labels.txt"
    awk 'BEGIN { for (i = 0; i < 60; i++) print (i % 3 == 0 ? "" : (i % 3 == 1 ? i % 10 : 100 + i)) }' \
        >"$FIX/filters.txt"
    "$BIN/embed-load" --labels "$FIX/labels.txt" -o "$FIX/base.frames" "$FIX/base.npy"
    "$BIN/embed-load" -o "$FIX/queries.frames" "$FIX/queries.npy"
    "$BIN/graph-build" --threads 1 -o "$FIX/index" "$FIX/base.frames" 2>/dev/null
    "$BIN/graph-build" --threads 1 --compress int8 -o "$FIX/index8" "$FIX/base.frames" 2>/dev/null
    "$BIN/embed-load" -o "$FIX/plain.frames" "$FIX/base.npy"
    "$BIN/graph-build" --threads 1 -o "$FIX/plain" "$FIX/plain.frames" 2>/dev/null
    "$BIN/query" --index "$FIX/index" --exact --filters "$FIX/filters.txt" -o "$FIX/gt" \
        "$FIX/queries.frames" 2>/dev/null
}

# every answer matches its filter line (labels are a function of the id)
all_match() {
    $PY - "$1" "$FIX/filters.txt" <<'EOF'
import sys, msgpack, numpy as np
res = [f for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False) if f["t"] == "result"]
filt = [l.split() for l in open(sys.argv[2])]
for f in res:
    ids = np.frombuffer(f["ids"], "<u4").astype(int)
    fl = [int(x) for x in filt[f["qid"]]]
    assert len(ids) == 10, (f["qid"], len(ids))
    if fl:
        lab = np.stack([ids % 10, 100 + ids % 100], 1)
        ok = np.isin(lab, fl).any(1)
        assert ok.all(), (f["qid"], fl, ids[~ok])
EOF
}

@test "labels travel from embed-load into the index as labels frames that validate" {
    validate --expect vectors "$FIX/base.frames"
    validate --expect index "$FIX/index"
    run show_frames "$FIX/index"
    [[ "$output" == *'"t": "labels"'* ]]
}

@test "query --filters answers only matching vectors, k of them, at recall 0.95 in every mode" {
    all_match "$FIX/gt"
    for m in auto graph brute beam post; do
        "$BIN/query" --index "$FIX/index" --filters "$FIX/filters.txt" --filter-mode "$m" --ef 64 \
            -o "$BATS_TEST_TMPDIR/r.$m" "$FIX/queries.frames" 2>/dev/null
        all_match "$BATS_TEST_TMPDIR/r.$m"
        recall_at_least "$FIX/gt" "$BATS_TEST_TMPDIR/r.$m" 0.95
    done
    validate --expect results "$BATS_TEST_TMPDIR/r.auto"
}

@test "on an int8 index every mode, scan too, answers only matching vectors at recall 0.95" {
    for m in auto graph brute scan beam post; do
        "$BIN/query" --index "$FIX/index8" --filters "$FIX/filters.txt" --filter-mode "$m" --ef 64 \
            -o "$BATS_TEST_TMPDIR/r.$m" "$FIX/queries.frames" 2>"$BATS_TEST_TMPDIR/log.$m"
        all_match "$BATS_TEST_TMPDIR/r.$m"
        recall_at_least "$FIX/gt" "$BATS_TEST_TMPDIR/r.$m" 0.95
    done
    # scan measured codes; without codes (or with --no-codes) it is brute
    grep -q "[1-9][0-9]* scan" "$BATS_TEST_TMPDIR/log.scan"
    "$BIN/query" --index "$FIX/index" --filters "$FIX/filters.txt" --filter-mode scan \
        -o "$BATS_TEST_TMPDIR/r.plain" "$FIX/queries.frames" 2>"$BATS_TEST_TMPDIR/log.plain"
    grep -q " 0 scan" "$BATS_TEST_TMPDIR/log.plain"
    recall_at_least "$FIX/gt" "$BATS_TEST_TMPDIR/r.plain" 0.99
}

@test "a filter no vector matches gets an empty answer, an all-of filter needs every label" {
    printf '7\n' >"$BATS_TEST_TMPDIR/one"
    printf '999999\n' >"$BATS_TEST_TMPDIR/none"
    "$BIN/embed-load" --limit 1 -o "$BATS_TEST_TMPDIR/q1" "$FIX/queries.npy"
    "$BIN/query" --index "$FIX/index" --filters "$BATS_TEST_TMPDIR/none" -o "$BATS_TEST_TMPDIR/r" \
        "$BATS_TEST_TMPDIR/q1" 2>/dev/null
    run show_frames "$BATS_TEST_TMPDIR/r"
    [[ "$output" == *'"ids": {"$bin": 0}'* ]]
    printf '7 107\n' >"$BATS_TEST_TMPDIR/all"
    "$BIN/query" --index "$FIX/index" --filters "$BATS_TEST_TMPDIR/all" --filter-all \
        -o "$BATS_TEST_TMPDIR/ra" "$BATS_TEST_TMPDIR/q1" 2>/dev/null
    $PY - "$BATS_TEST_TMPDIR/ra" <<'EOF'
import sys, msgpack, numpy as np
r = [f for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False) if f["t"] == "result"][0]
ids = np.frombuffer(r["ids"], "<u4").astype(int)
assert len(ids) == 10 and (ids % 100 == 7).all(), ids
EOF
}

@test "query --serve answers filtered requests and refuses a bad filter with an error frame" {
    local port ep
    port="$(free_port)"
    ep="tcp://127.0.0.1:$port"
    "$BIN/query" --index "$FIX/index" --serve "$ep" 2>"$BATS_TEST_TMPDIR/serve.log" 3>&- &
    local pid=$!
    wait_for_line "$BATS_TEST_TMPDIR/serve.log" "serving"
    timeout 30 "$BIN/query" --connect "$ep" --filters "$FIX/filters.txt" -o "$BATS_TEST_TMPDIR/z" \
        <"$FIX/queries.frames" 2>/dev/null
    all_match "$BATS_TEST_TMPDIR/z"
    recall_at_least "$FIX/gt" "$BATS_TEST_TMPDIR/z" 0.95
    $PY - "$ep" "$FIX/queries.npy" <<'EOF'
import sys, zmq, msgpack, numpy as np
s = zmq.Context().socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 0)
s.setsockopt(zmq.RCVTIMEO, 5000)
s.connect(sys.argv[1])
q = np.load(sys.argv[2])[0].tobytes()
def ask(f):
    s.send_multipart([b"", msgpack.packb(f, use_bin_type=True)])
    return msgpack.unpackb(s.recv_multipart()[1], raw=False)
for bad in (["x"], [1 << 21], "3"):
    r = ask({"t": "query", "qid": 9, "vec": q, "filter": bad})
    assert r["t"] == "error" and r["qid"] == 9 and r["msg"], r
r = ask({"t": "query", "qid": 10, "vec": q, "filter": [3]})
assert r["t"] == "result" and (np.frombuffer(r["ids"], "<u4") % 10 == 3).all(), r
EOF
    kill -TERM "$pid"
    wait "$pid"
}

@test "consolidate keeps labels from inserts, answers filtered queries and checkpoints them" {
    $PY "$REPO/tests/make_updates.py" "$BATS_TEST_TMPDIR/u" --dim 8 --labels-mod 10 --filter 3 \
        insert:0:1500 query:0:5 delete:0:300 query:5:10 insert:1500:2000 query:10:15
    run --separate-stderr "$BIN/consolidate" -o "$BATS_TEST_TMPDIR/live" -r "$BATS_TEST_TMPDIR/a" \
        "$BATS_TEST_TMPDIR/u"
    [ "$status" -eq 0 ]
    validate --expect index "$BATS_TEST_TMPDIR/live"
    $PY - "$BATS_TEST_TMPDIR/a" <<'EOF'
import sys, msgpack, numpy as np
res = [f for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False) if f["t"] == "result"]
assert len(res) == 15
for f in res:
    ids = np.frombuffer(f["ids"], "<u8")
    assert len(ids) == 10 and (ids % 10 == 3).all(), ids
    if f["qid"] >= 5:
        assert ids.min() >= 300, ids  # deleted ids never come back
EOF
    # the checkpoint's labels serve a filtered query stream
    printf '3\n' >"$BATS_TEST_TMPDIR/f"
    "$BIN/embed-load" --limit 1 -o "$BATS_TEST_TMPDIR/q1" "$FIX/queries.npy"
    "$BIN/query" --index "$BATS_TEST_TMPDIR/live" --filters "$BATS_TEST_TMPDIR/f" \
        -o "$BATS_TEST_TMPDIR/r" "$BATS_TEST_TMPDIR/q1" 2>/dev/null
    $PY - "$BATS_TEST_TMPDIR/r" <<'EOF'
import sys, msgpack, numpy as np
r = [f for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False) if f["t"] == "result"][0]
ids = np.frombuffer(r["ids"], "<u8")
assert len(ids) == 10 and (ids % 10 == 3).all() and ids.min() >= 300, ids
EOF
}

# ---- bad input: one line on stderr naming the input, no output ----

@test "embed-load refuses a labels file with fewer lines than vectors" {
    head -n 2999 "$FIX/labels.txt" >"$BATS_TEST_TMPDIR/short.txt"
    run --separate-stderr "$BIN/embed-load" --labels "$BATS_TEST_TMPDIR/short.txt" \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/base.npy"
    [ "$status" -eq 65 ]
    assert_one_error_line short.txt "2999 lines of labels for 3000 input rows"
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "embed-load refuses a non-numeric label, naming its line" {
    sed '17s/.*/3 seven/' "$FIX/labels.txt" >"$BATS_TEST_TMPDIR/bad.txt"
    run --separate-stderr "$BIN/embed-load" --labels "$BATS_TEST_TMPDIR/bad.txt" \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/base.npy"
    [ "$status" -eq 65 ]
    assert_one_error_line bad.txt 'line 17: "seven" is not a label'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "embed-load and query refuse a label above the limit" {
    sed '5s/.*/1048576/' "$FIX/labels.txt" >"$BATS_TEST_TMPDIR/big.txt"
    run --separate-stderr "$BIN/embed-load" --labels "$BATS_TEST_TMPDIR/big.txt" \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/base.npy"
    [ "$status" -eq 65 ]
    assert_one_error_line big.txt 'line 5: label 1048576 above the limit 1048575'
    assert_no_output "$BATS_TEST_TMPDIR/out"
    sed '2s/.*/4294967296/' "$FIX/filters.txt" >"$BATS_TEST_TMPDIR/bigf.txt"
    run --separate-stderr "$BIN/query" --index "$FIX/index" --filters "$BATS_TEST_TMPDIR/bigf.txt" \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/queries.frames"
    [ "$status" -eq 65 ]
    assert_one_error_line bigf.txt 'line 2: label 4294967296 above the limit'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "query refuses a filter on an index without labels" {
    run --separate-stderr "$BIN/query" --index "$FIX/plain" --filters "$FIX/filters.txt" \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/queries.frames"
    [ "$status" -eq 65 ]
    assert_one_error_line filters.txt 'the index has no labels'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "query refuses a filters file with fewer lines than queries" {
    head -n 10 "$FIX/filters.txt" >"$BATS_TEST_TMPDIR/few.txt"
    run --separate-stderr "$BIN/query" --index "$FIX/index" --filters "$BATS_TEST_TMPDIR/few.txt" \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/queries.frames"
    [ "$status" -eq 65 ]
    assert_one_error_line few.txt '10 filters for a stream of more queries'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}
