#!/usr/bin/env bats
# dump and info: frames as JSON lines (jq reads every line, for every frame
# type in schemas/), an index described, corrupt input in one line.

load helpers

setup_file() {
    need_bins dump info query graph-build embed-load layer-route edge-score consolidate
    sh "$REPO/tests/make_dump_fixtures.sh" "$BIN" "$FIX"
}

# every fixture stream (the truncated update stream aside)
fixtures() {
    ls "$FIX"/*.idx "$FIX"/*.frames "$FIX"/w.wal "$FIX"/query.log "$FIX"/deleted.frame | grep -v cut.frames
}

@test "dump --help and dump: an unknown option exits 64" {
    run "$BIN/dump" --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"--full"* ]]
    run "$BIN/dump" --nope
    [ "$status" -eq 64 ]
}

@test "dump: every frame type in schemas/ appears in the fixtures and jq parses every line" {
    for f in $(fixtures); do
        "$BIN/dump" "$f" > "$BATS_TEST_TMPDIR/$(basename "$f").json"
        "$BIN/dump" --full "$f" > "$BATS_TEST_TMPDIR/$(basename "$f").full.json"
    done
    # jq fails on any line that is not JSON; every line is a frame with a t
    cat "$BATS_TEST_TMPDIR"/*.json | jq -c 'select(.t != null)' > "$BATS_TEST_TMPDIR/all"
    [ "$(wc -l < "$BATS_TEST_TMPDIR/all")" -eq "$(cat "$BATS_TEST_TMPDIR"/*.json | wc -l)" ]
    # what the schemas name: t, and the stream schema of header frames
    for s in "$REPO"/schemas/*.json; do
        want=$($PY -c 'import json,sys; p=json.load(open(sys.argv[1]))["properties"]; print(p["t"]["const"], p.get("schema",{}).get("const",""))' "$s")
        t=${want%% *} sch=${want#* }
        if [ -n "$sch" ]; then
            jq -c --arg s "$sch" 'select(.t == "header" and .schema == $s)' "$BATS_TEST_TMPDIR/all" | grep -q . \
                || { echo "no header $sch dumped ($s)"; return 1; }
        else
            jq -c --arg t "$t" 'select(.t == $t)' "$BATS_TEST_TMPDIR/all" | grep -q . \
                || { echo "no frame of type $t dumped ($s)"; return 1; }
        fi
    done
}

@test "dump: lines equal an independent decoding (python3-msgpack), bins as their length" {
    for f in $(fixtures); do
        "$BIN/dump" "$f" | $PY -c '
import json, sys, msgpack, math
def norm(v):
    if isinstance(v, bytes): return {"bin": len(v)}
    if isinstance(v, dict): return {k: norm(x) for k, x in v.items()}
    if isinstance(v, list): return [norm(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v): return None
    return v
want = [norm(f) for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False)]
got = [json.loads(l) for l in sys.stdin]
assert len(got) == len(want), (sys.argv[1], len(got), len(want))
for i, (g, w) in enumerate(zip(got, want)):
    # floats: JSON text round trip to within f32/f64 printing
    assert json.dumps(g, sort_keys=True) == json.dumps(w, sort_keys=True) or \
        all(abs(g[k] - w[k]) < 1e-6 * max(1, abs(w[k])) if isinstance(w[k], float) else g[k] == w[k] for k in w), (sys.argv[1], i, g, w)
' "$f"
    done
}

@test "dump --full decodes vectors, links and u64 ids to the values python3-msgpack reads" {
    "$BIN/dump" --full "$FIX/codes.idx" | $PY -c '
import json, sys, msgpack, numpy as np
src = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
for g, w in zip(map(json.loads, sys.stdin), src):
    if w["t"] == "vectors":
        assert np.array_equal(np.array(g["data"]["f32"], np.float32), np.frombuffer(w["data"], "<f4"))
        assert g["levels"]["u8"] == list(w["levels"])
    if w["t"] == "links":
        assert g["ids"]["u32"] == np.frombuffer(w["ids"], "<u4").tolist()
    if w["t"] == "ids":
        assert g["ids"]["u64"] == np.frombuffer(w["ids"], "<u8").tolist()
        assert g["ids"]["u64"][0] == 100
' "$FIX/codes.idx"
}

@test "dump: a truncated stream is one line and exit 65; -o leaves no file" {
    run "$BIN/dump" -o "$BATS_TEST_TMPDIR/out.json" "$FIX/cut.frames"
    [ "$status" -eq 65 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ "$output" == "dump: $FIX/cut.frames: frame "*"truncated stream"* ]]
    [ ! -e "$BATS_TEST_TMPDIR/out.json" ]
    ! ls "$BATS_TEST_TMPDIR"/out.json.tmp* 2>/dev/null
    head -c 700 "$FIX/plain.idx" > "$BATS_TEST_TMPDIR/cut.idx"
    run "$BIN/dump" "$BATS_TEST_TMPDIR/cut.idx"
    [ "$status" -eq 65 ]
}

@test "info: an index's dimension, metric, levels, degrees, reachability, codes, ids, models, sizes" {
    run "$BIN/info" "$FIX/codes.idx"
    [ "$status" -eq 0 ]
    [[ "$output" == *"dimension: 8"* ]]
    [[ "$output" == *"metric: l2"* ]]
    [[ "$output" == *"vectors: 600 (600 live, 0 deleted)"* ]]
    [[ "$output" == *"level 0: 600 nodes"* ]]
    [[ "$output" == *"reachable from the entry: 600 of 600 live nodes"* ]]
    [[ "$output" == *"codes: int8"* ]]
    [[ "$output" == *"external ids: yes"* ]]
    [[ "$output" == *"file size: $(stat -c %s "$FIX/codes.idx") bytes"* ]]
    # the level-0 link count equals the links frames' degrees summed
    links=$($PY -c 'import msgpack,sys,numpy as np; print(sum(int(np.frombuffer(f["deg"],"<u4").sum()) for f in msgpack.Unpacker(open(sys.argv[1],"rb"),raw=False) if f["t"]=="links" and f["level"]==0))' "$FIX/codes.idx")
    [[ "$output" == *"level 0: 600 nodes, $links links"* ]]
    run "$BIN/info" "$FIX/edges.idx"
    [ "$status" -eq 0 ]
    [[ "$output" == *"models: 1"* ]]
    [[ "$output" == *'"kind":"edge-scorer"'* ]]
    [[ "$output" == *'"validation"'* ]]
}

@test "info on a corrupt index says what is wrong in one line, exit 65, nothing on stdout" {
    head -c 3000 "$FIX/plain.idx" > "$BATS_TEST_TMPDIR/cut.idx"
    run --separate-stderr "$BIN/info" "$BATS_TEST_TMPDIR/cut.idx"
    [ "$status" -eq 65 ]
    [ -z "$output" ]
    [ "${#stderr_lines[@]}" -eq 1 ]
    [[ "$stderr" == "info: $BATS_TEST_TMPDIR/cut.idx: frame "* ]]
    run "$BIN/info" "$FIX/v.frames"
    [ "$status" -eq 65 ]
    [ "${#lines[@]}" -eq 1 ]
}

@test "query --serve answers a stats request with counters that match what it served" {
    $PY - "$FIX/server.frames" <<'PYEOF'
import sys, msgpack
fr = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
st = next(f for f in fr if f["t"] == "stats" and "requests" in f)
rl = next(f for f in fr if f["t"] == "reloaded")
assert st["t"] == "stats", st
assert rl["t"] == "reloaded" and rl["count"] == 600 and rl["nav"] is False, rl
assert st["requests"] == 3 and st["errors"] == 1 and st["queries"] == 1, st
assert st["count"] == 600 and st["dim"] == 8 and st["p50_ms"] > 0 and st["p99_ms"] >= st["p50_ms"]
PYEOF
}

@test "dump of a ZeroMQ stream ends with the stream's end frame, the same lines as from the file" {
    local ep
    ep="tcp://127.0.0.1:$(free_port)"
    "$BIN/graph-build" --threads 1 -o "$ep" "$FIX/v.frames" 2>/dev/null 3>&- &
    local w=$!
    run --separate-stderr timeout 20 "$BIN/dump" "$ep"
    wait "$w"
    [ "$status" -eq 0 ]
    [ "$output" = "$("$BIN/dump" "$FIX/plain.idx")" ]
}
