#!/usr/bin/env bats
# edge-score: an index stream in, the same index with fewer level-0 edges and
# an "edge-scorer" model frame out.

load helpers

setup_file() {
    need_bins embed-load graph-build edge-score query recall
    $GEN -n 2000 -d 16 --seed 21 -f frames "$FIX/base.frames"
    $GEN -n 200 -d 16 --seed 22 -f frames "$FIX/queries.frames"
    $GEN -n 300 -d 16 --seed 23 -f frames "$FIX/train.frames"
    $GEN -n 10 -d 8 --seed 24 -f frames "$FIX/wrongdim.frames"
    "$BIN/graph-build" --threads 1 --seed 7 --M0 48 -o "$FIX/cand.idx" "$FIX/base.frames" 2>/dev/null
    "$BIN/edge-score" --threads 2 --queries 500 --epochs 2 --nodes 1024 --budget 0.7 \
        -o "$FIX/pruned.idx" "$FIX/cand.idx" 2>"$FIX/pruned.log"
    "$BIN/query" --index "$FIX/cand.idx" --exact -k 10 -o "$FIX/gt" "$FIX/queries.frames" 2>/dev/null
}

# level-0 edge count of an index stream
l0_edges() {
    $PY - "$1" <<'EOF'
import sys, msgpack, numpy as np
t = 0
for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False):
    if f["t"] == "links" and f["level"] == 0:
        t += int(np.frombuffer(f["deg"], "<u4").sum())
print(t)
EOF
}

@test "edge-score --help exits 0 and explains the --M0 input graph" {
    run "$BIN/edge-score" --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"usage: edge-score"* ]]
    [[ "$output" == *"--M0 48"* ]]
}

@test "edge-score keeps the budget and writes a valid index with the model frame" {
    validate --expect index "$FIX/pruned.idx"
    local before after
    before=$(l0_edges "$FIX/cand.idx")
    after=$(l0_edges "$FIX/pruned.idx")
    echo "edges $before -> $after" >&2
    [ "$after" -le $((before * 70 / 100 + 1)) ]
    [ "$after" -ge $((before * 60 / 100)) ]
    # one model frame, right before the end frame, matching its schemas
    $PY - "$FIX/pruned.idx" "$REPO/schemas" <<'EOF'
import json, sys, msgpack
from jsonschema import Draft202012Validator
d = sys.argv[2]
model = json.load(open(d + "/model.json"))
edge = json.load(open(d + "/edge-model.json"))
# model.json states bins as binary strings, edge-model.json in the
# validator's {"$bin": length} form (as schemas/vectors.json does)
def bins(x, as_str):
    if isinstance(x, bytes):
        return "b" * len(x) if as_str else {"$bin": len(x)}
    if isinstance(x, dict):
        return {k: bins(y, as_str) for k, y in x.items()}
    if isinstance(x, list):
        return [bins(y, as_str) for y in x]
    return x
frames = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
models = [f for f in frames if f["t"] == "model"]
assert len(models) == 1, len(models)
assert frames[-2]["t"] == "model" and frames[-2]["kind"] == "edge-scorer"
assert frames[-1]["t"] == "end"
Draft202012Validator(model).validate(bins(frames[-2], True))
Draft202012Validator(edge).validate(bins(frames[-2], False))
EOF
    grep -q "0 unreachable" "$FIX/pruned.log"
}

@test "the pruned index loads in query and still finds neighbours" {
    run --separate-stderr "$BIN/query" --index "$FIX/pruned.idx" --ef 64 -k 10 \
        -o "$BATS_TEST_TMPDIR/res" "$FIX/queries.frames"
    [ "$status" -eq 0 ]
    recall_at_least "$FIX/gt" "$BATS_TEST_TMPDIR/res" 0.85
}

@test "edge-score takes --train queries and both baselines from stdin to stdout" {
    run --separate-stderr bash -c '"$BIN/edge-score" --train "$FIX/train.frames" --epochs 1 \
        --nodes 256 --edges 20000 <"$FIX/cand.idx" >"$BATS_TEST_TMPDIR/t.idx"'
    [ "$status" -eq 0 ]
    # a quarter of a short --train file is held aside for validation
    [[ "$stderr" == *"225 training queries"* ]]
    [[ "$stderr" == *"validation on 75 held-aside training queries"* ]]
    [ "$(l0_edges "$BATS_TEST_TMPDIR/t.idx")" -le 20000 ]
    for b in random usage; do
        "$BIN/edge-score" --baseline "$b" --queries 200 --edges 20000 \
            -o "$BATS_TEST_TMPDIR/$b.idx" "$FIX/cand.idx" 2>/dev/null
        [ "$(l0_edges "$BATS_TEST_TMPDIR/$b.idx")" -le 20000 ]
        validate --expect index "$BATS_TEST_TMPDIR/$b.idx"
        run grep -c edge-scorer "$BATS_TEST_TMPDIR/$b.idx"
        [ "$output" = 0 ]
    done
}

@test "edge-score --no-graph trains a plain MLP: the model frame says graph_layer 0 and query still finds neighbours" {
    "$BIN/edge-score" --threads 2 --queries 500 --epochs 2 --nodes 1024 --budget 0.7 --no-graph \
        -o "$BATS_TEST_TMPDIR/plain.idx" "$FIX/cand.idx" 2>"$BATS_TEST_TMPDIR/plain.log"
    validate --expect index "$BATS_TEST_TMPDIR/plain.idx"
    $PY - "$BATS_TEST_TMPDIR/plain.idx" "$FIX/pruned.idx" <<'EOF'
import sys, msgpack
def model(p):
    return [f for f in msgpack.Unpacker(open(p, "rb"), raw=False) if f["t"] == "model"][0]
assert model(sys.argv[1])["graph_layer"] == 0
assert model(sys.argv[2])["graph_layer"] == 1
EOF
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/plain.idx" --ef 64 -k 10 \
        -o "$BATS_TEST_TMPDIR/res" "$FIX/queries.frames"
    [ "$status" -eq 0 ]
    recall_at_least "$FIX/gt" "$BATS_TEST_TMPDIR/res" 0.85
}

@test "edge-score on a truncated index prints one error line and writes nothing" {
    cut_file "$FIX/cand.idx" "$BATS_TEST_TMPDIR/cut.idx"
    run --separate-stderr "$BIN/edge-score" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/cut.idx"
    assert_one_error_line edge-score "cut.idx"
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "edge-score refuses a vector stream, wrong-dimension --train, and bad options" {
    run --separate-stderr "$BIN/edge-score" -o "$BATS_TEST_TMPDIR/out" "$FIX/base.frames"
    assert_one_error_line edge-score "not an index"
    assert_no_output "$BATS_TEST_TMPDIR/out"
    run --separate-stderr "$BIN/edge-score" --train "$FIX/wrongdim.frames" \
        -o "$BATS_TEST_TMPDIR/out" "$FIX/cand.idx"
    assert_one_error_line edge-score "dimension 8"
    assert_no_output "$BATS_TEST_TMPDIR/out"
    run --separate-stderr "$BIN/edge-score" --baseline nope "$FIX/cand.idx"
    [ "$status" -eq 64 ]
    run --separate-stderr "$BIN/edge-score" --budget 1.5 "$FIX/cand.idx"
    [ "$status" -eq 64 ]
    run --separate-stderr "$BIN/edge-score" --max-degree 5000 "$FIX/cand.idx"
    [ "$status" -eq 64 ]
    [[ "$stderr" == *"--max-degree"* ]]
    run --separate-stderr "$BIN/edge-score" --max-degree ten "$FIX/cand.idx"
    [ "$status" -eq 64 ]
}

# header M0 and largest level-0 degree of an index stream
m0_and_maxdeg() {
    $PY - "$1" <<'EOF2'
import sys, msgpack, numpy as np
m0, mx = None, 0
for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False):
    if f["t"] == "header":
        m0 = f["M0"]
    if f["t"] == "links" and f["level"] == 0:
        mx = max(mx, int(np.frombuffer(f["deg"], "<u4").max()))
print(m0, mx)
EOF2
}

@test "edge-score caps level-0 degree at --max-degree (default: what fits the classic link block, 47) and writes that M0; 0 keeps the input's" {
    run m0_and_maxdeg "$FIX/cand.idx"
    [ "$output" = "48 48" ]
    run m0_and_maxdeg "$FIX/pruned.idx"
    echo "pruned: $output"
    local m0=${output% *} mx=${output#* }
    [ "$m0" -eq 47 ]
    [ "$mx" -le 47 ]
    "$BIN/edge-score" --threads 1 --baseline random --budget 0.9 --max-degree 20 \
        -o "$BATS_TEST_TMPDIR/d20.idx" "$FIX/cand.idx" 2>/dev/null
    run m0_and_maxdeg "$BATS_TEST_TMPDIR/d20.idx"
    echo "max-degree 20: $output"
    m0=${output% *} mx=${output#* }
    [ "$m0" -ge 20 ] && [ "$m0" -eq "$mx" -o "$m0" -eq 20 ] && [ "$mx" -le "$m0" ]
    "$BIN/edge-score" --threads 1 --baseline random --budget 0.9 --max-degree 0 \
        -o "$BATS_TEST_TMPDIR/d0.idx" "$FIX/cand.idx" 2>/dev/null
    run m0_and_maxdeg "$BATS_TEST_TMPDIR/d0.idx"
    [ "${output% *}" -eq 48 ]
    "$BIN/query" --index "$BATS_TEST_TMPDIR/d20.idx" -o "$BATS_TEST_TMPDIR/r" "$FIX/queries.frames" 2>/dev/null
    validate --expect results "$BATS_TEST_TMPDIR/r"
}

# the validation record of the model frame, as JSON
validation_of() {
    $PY - "$1" <<'EOF2'
import json, sys, msgpack
m = [f for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False) if f["t"] == "model"]
print(json.dumps(m[0]["validation"]))
EOF2
}

@test "edge-score without a budget keeps the fewest edges whose validation recall stays within --tolerance, and records the table" {
    run --separate-stderr "$BIN/edge-score" --threads 2 --queries 500 --epochs 2 --nodes 1024 \
        --val-queries 200 --tolerance 0.01 -o "$BATS_TEST_TMPDIR/tol.idx" "$FIX/cand.idx"
    echo "$stderr"
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"validation on 200 held-aside training queries"* ]]
    [[ "$stderr" == *"tolerance 0.0100: "*" pruning keeps "* ]]
    validate --expect index "$BATS_TEST_TMPDIR/tol.idx"
    run validation_of "$BATS_TEST_TMPDIR/tol.idx"
    $PY - "$output" "$(l0_edges "$FIX/cand.idx")" "$(l0_edges "$BATS_TEST_TMPDIR/tol.idx")" <<'EOF2'
import json, sys
v = json.loads(sys.argv[1])
assert v["forced"] is False and v["method"] in ("learned", "usage"), v
assert v["queries"] == 200 and v["ef"] == [10, 16, 32, 64, 128]
assert v["edges_input"] == int(sys.argv[2]) and v["edges_output"] == int(sys.argv[3])
assert v["edges_output"] < v["edges_input"]
for a, b in zip(v["recall_input"], v["recall_output"]):
    assert b >= a - 0.01 - 1e-12, (a, b)
EOF2
}

@test "an index that cannot be pruned within the tolerance comes out with its edges unchanged and a line that says so" {
    # a degree cap of 3 cuts every node's list: no pruned graph keeps the
    # recall of the input, so the input's lists are written as they were
    run --separate-stderr "$BIN/edge-score" --threads 2 --queries 300 --epochs 1 --nodes 256 \
        --val-queries 200 --max-degree 3 -o "$BATS_TEST_TMPDIR/same.idx" "$FIX/cand.idx"
    echo "$stderr"
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"no pruning stays within 0.0020 of the input graph"*"written unchanged"* ]]
    run m0_and_maxdeg "$BATS_TEST_TMPDIR/same.idx"
    [ "$output" = "48 48" ]
    $PY - "$FIX/cand.idx" "$BATS_TEST_TMPDIR/same.idx" <<'EOF2'
import sys, msgpack
def links(p):
    return [(f["level"], f["deg"], f["ids"]) for f in msgpack.Unpacker(open(p, "rb"), raw=False)
            if f["t"] == "links"]
assert links(sys.argv[1]) == links(sys.argv[2])
EOF2
    run validation_of "$BATS_TEST_TMPDIR/same.idx"
    [[ "$output" == *'"method": "unchanged"'* ]]
}

@test "edge-score refuses bad --tolerance, --val-queries and --val-ef values" {
    for a in "--tolerance -0.1" "--tolerance 2" "--val-queries x" "--val-ef 0" "--val-ef 10,,x" \
        "--val-ef 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17"; do
        # shellcheck disable=SC2086
        run --separate-stderr "$BIN/edge-score" $a "$FIX/cand.idx"
        echo "$a: $status $stderr"
        [ "$status" -eq 64 ]
        [ "$(echo "$stderr" | wc -l)" -eq 1 ]
    done
}
