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
    for o in --init --ewc --replay --reservoir; do
        [[ "$output" == *"$o"* ]]
    done
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

# edge_field IDX EXPR : python EXPR over the edge-scorer frame f of IDX
edge_field() {
    $PY - "$@" <<'EOF2'
import sys, msgpack
f = next(x for x in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False)
         if x.get("t") == "model" and x.get("kind") == "edge-scorer")
print(eval(sys.argv[2]))
EOF2
}

@test "edge-score keeps a Fisher and a reservoir; --init --ewc --replay trains on from it, tasks add up, and the index queries fine" {
    # one Fisher value per trainable weight (the params after the five fixed
    # tensors); 500 training queries in the reservoir, 16-dim rows
    run edge_field "$FIX/pruned.idx" 'len(f["fisher"]) // 4 == sum(len(t["data"]) // 4 for t in f["params"][5:]), f["tasks"], len(f["replay"]) // 64, f["replay_seen"]'
    [ "$output" = "(True, 1, 500, 500)" ]
    run --separate-stderr "$BIN/edge-score" --threads 2 --init "$FIX/pruned.idx" --train "$FIX/train.frames" \
        --ewc 10 --replay 200 --epochs 1 --nodes 256 --val-queries 100 -o "$BATS_TEST_TMPDIR/B.idx" "$FIX/cand.idx"
    echo "$stderr"
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"225 training queries"*"and 200 replayed"* ]]
    [[ "$stderr" == *"continual: from $FIX/pruned.idx, EWC on (lambda 10, Fisher of 1 earlier task), 200 replayed queries; reservoir kept: 725 of 725 training queries seen"* ]]
    validate --expect index "$BATS_TEST_TMPDIR/B.idx"
    run edge_field "$BATS_TEST_TMPDIR/B.idx" 'f["tasks"], len(f["replay"]) // 64, f["validation"]["method"]'
    [[ "$output" == "(2, 725, '"* ]]
    run --separate-stderr "$BIN/query" --index "$BATS_TEST_TMPDIR/B.idx" --ef 64 -k 10 \
        -o "$BATS_TEST_TMPDIR/res" "$FIX/queries.frames"
    [ "$status" -eq 0 ]
    recall_at_least "$FIX/gt" "$BATS_TEST_TMPDIR/res" 0.85
    # --replay FILE needs no --init; --reservoir 0 keeps none
    run --separate-stderr "$BIN/edge-score" --threads 2 --replay "$FIX/train.frames" --reservoir 0 \
        --queries 300 --epochs 1 --nodes 256 --val-queries 100 -o "$BATS_TEST_TMPDIR/F.idx" "$FIX/cand.idx"
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"300 training queries"*"and 300 replayed"* ]]
    run edge_field "$BATS_TEST_TMPDIR/F.idx" '"replay" in f, f["tasks"]'
    [ "$output" = "(False, 1)" ]
}

@test "edge-score --init, --ewc and --replay refuse what they cannot use: one line, no output" {
    local x="$BATS_TEST_TMPDIR/x.idx"
    run --separate-stderr "$BIN/edge-score" --init "$BATS_TEST_TMPDIR/missing.idx" -o "$x" "$FIX/cand.idx"
    assert_one_error_line edge-score "missing.idx"
    assert_no_output "$x"
    run --separate-stderr "$BIN/edge-score" --init "$FIX/cand.idx" -o "$x" "$FIX/cand.idx"
    assert_one_error_line cand.idx "no edge-scorer model frame"
    assert_no_output "$x"
    # an edge model of another dimension (8) and of another feature width
    $GEN -n 300 -d 8 --seed 25 -f frames "$BATS_TEST_TMPDIR/d8.frames"
    "$BIN/graph-build" --threads 1 --M0 48 -o "$BATS_TEST_TMPDIR/d8.idx" "$BATS_TEST_TMPDIR/d8.frames" 2>/dev/null
    "$BIN/edge-score" --threads 2 --queries 100 --epochs 1 --nodes 64 --val-queries 0 --budget 0.9 \
        -o "$BATS_TEST_TMPDIR/d8e.idx" "$BATS_TEST_TMPDIR/d8.idx" 2>/dev/null
    run --separate-stderr "$BIN/edge-score" --init "$BATS_TEST_TMPDIR/d8e.idx" -o "$x" "$FIX/cand.idx"
    assert_one_error_line d8e.idx "dimension 8"
    assert_no_output "$x"
    edit_model edge-scorer "$FIX/pruned.idx" "$BATS_TEST_TMPDIR/nf.idx" 'f["nfeat"] = 13'
    run --separate-stderr "$BIN/edge-score" --init "$BATS_TEST_TMPDIR/nf.idx" -o "$x" "$FIX/cand.idx"
    assert_one_error_line nf.idx "nfeat 13"
    assert_no_output "$x"
    # a model without Fisher information or reservoir (as written before them)
    edit_model edge-scorer "$FIX/pruned.idx" "$BATS_TEST_TMPDIR/old.idx" \
        'f.pop("fisher"); f.pop("tasks"); f.pop("replay"); f.pop("replay_seen")'
    run --separate-stderr "$BIN/edge-score" --init "$BATS_TEST_TMPDIR/old.idx" --ewc 10 -o "$x" "$FIX/cand.idx"
    assert_one_error_line old.idx "no Fisher information"
    assert_no_output "$x"
    run --separate-stderr "$BIN/edge-score" --init "$BATS_TEST_TMPDIR/old.idx" --replay 50 -o "$x" "$FIX/cand.idx"
    assert_one_error_line old.idx "no replay reservoir"
    assert_no_output "$x"
    edit_model edge-scorer "$FIX/pruned.idx" "$BATS_TEST_TMPDIR/bad.idx" 'f["fisher"] = f["fisher"][:-4]'
    run --separate-stderr "$BIN/edge-score" --init "$BATS_TEST_TMPDIR/bad.idx" --ewc 10 -o "$x" "$FIX/cand.idx"
    assert_one_error_line bad.idx "fisher"
    assert_no_output "$x"
    for a in "--ewc 10" "--replay 50"; do
        # shellcheck disable=SC2086
        run --separate-stderr "$BIN/edge-score" $a -o "$x" "$FIX/cand.idx"
        [ "$status" -eq 64 ]
        assert_one_error_line edge-score "give --init"
        assert_no_output "$x"
    done
    # a model without the new pairs still loads and trains on
    run --separate-stderr "$BIN/edge-score" --threads 2 --init "$BATS_TEST_TMPDIR/old.idx" --epochs 1 \
        --nodes 256 --queries 300 --val-queries 100 -o "$x" "$FIX/cand.idx"
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"Fisher of 0 earlier tasks"* ]]
}
