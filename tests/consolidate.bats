#!/usr/bin/env bats
# consolidate: a live index fed update frames (inserts, deletes, queries in
# order), with true deletes, a write-ahead log and checkpoints.

load helpers

MKU="$PY $REPO/tests/make_updates.py"
IDS="$PY $REPO/tests/index_ids.py"
TRICKLE="$PY $REPO/tests/trickle.py"

setup_file() {
    need_bins consolidate embed-load graph-build query recall
    # 3000 random rows of dimension 8: insert all, query, delete a third, query
    $MKU "$FIX/main.upd" --dim 8 insert:0:3000 query:0:50 delete:0:1000 query:0:50
    $MKU "$FIX/ins.upd" --dim 8 insert:0:3000
    $MKU "$FIX/q.upd" --dim 8 query:0:50
}

# result ids (u64) of a results stream, one line per result frame
result_ids() {
    $PY - "$1" <<'EOF2'
import sys, msgpack, numpy as np
for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False):
    if f["t"] == "result":
        print(f["qid"], " ".join(str(x) for x in np.frombuffer(f["ids"], "<u8")))
EOF2
}

@test "consolidate --help exits 0 and prints usage" {
    run "$BIN/consolidate" --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"usage: consolidate"* ]]
    [[ "$output" == *"--wal FILE"* ]]
}

@test "consolidate with an unknown option exits 64; --wal without -o exits 64" {
    run "$BIN/consolidate" --no-such-option
    [ "$status" -eq 64 ]
    run "$BIN/consolidate" --wal "$BATS_TEST_TMPDIR/w"
    [ "$status" -eq 64 ]
}

@test "consolidate builds from empty, answers queries in stream order and writes a valid index" {
    run --separate-stderr "$BIN/consolidate" --check -M 8 -o "$BATS_TEST_TMPDIR/idx" \
        -r "$BATS_TEST_TMPDIR/res" "$FIX/main.upd"
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"3000 inserts"* ]]
    [[ "$stderr" == *"1000 deletes"* ]]
    [[ "$stderr" == *"2000 live"* ]]
    [[ "$stderr" == *"max 0 unreachable, max 0 edges to deleted"* ]]
    validate --expect results "$BATS_TEST_TMPDIR/res"
    validate --expect index "$BATS_TEST_TMPDIR/idx"
    validate --expect updates "$FIX/main.upd"
    # 100 answers: the first 50 may name ids < 1000, the last 50 never do
    run result_ids "$BATS_TEST_TMPDIR/res"
    [ "${#lines[@]}" -eq 100 ]
    early=$(printf '%s\n' "${lines[@]:0:50}" | awk '{for (i = 2; i <= NF; i++) if ($i < 1000) n++} END {print n + 0}')
    late=$(printf '%s\n' "${lines[@]:50}" | awk '{for (i = 2; i <= NF; i++) if ($i < 1000) n++} END {print n + 0}')
    [ "$early" -gt 0 ]
    [ "$late" -eq 0 ]
    [ "$($IDS "$BATS_TEST_TMPDIR/idx" --count)" -eq 2000 ]
    [ "$($IDS "$BATS_TEST_TMPDIR/idx" --ids | head -1)" -eq 1000 ]
}

@test "consolidate answers as well as query on a fresh build of the same live set" {
    "$BIN/consolidate" -M 8 -o "$BATS_TEST_TMPDIR/idx" -r /dev/null "$FIX/main.upd" 2>/dev/null
    # queries against the saved index: exact vs graph
    $MKU "$BATS_TEST_TMPDIR/qv.upd" --dim 8 query:0:50
    "$BIN/consolidate" -i "$BATS_TEST_TMPDIR/idx" -r "$BATS_TEST_TMPDIR/res" "$BATS_TEST_TMPDIR/qv.upd" 2>/dev/null
    $PY - "$BATS_TEST_TMPDIR/qv.upd" "$BATS_TEST_TMPDIR/q.frames" <<'EOF2'
import sys, msgpack, zlib, numpy as np
fr = [f for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False) if f["t"] == "query"]
out = [{"t": "header", "schema": "hnswflow.vectors", "v": 1, "dim": 8, "dtype": "f32", "count": len(fr)}]
out.append({"t": "vectors", "start": 0, "n": len(fr), "data": b"".join(f["vec"] for f in fr)})
raw = b"".join(msgpack.packb(f) for f in out)
raw += msgpack.packb({"t": "end", "count": len(fr), "checksum": zlib.crc32(raw)})
open(sys.argv[2], "wb").write(raw)
EOF2
    "$BIN/query" --exact -i "$BATS_TEST_TMPDIR/idx" "$BATS_TEST_TMPDIR/q.frames" >"$BATS_TEST_TMPDIR/gt" 2>/dev/null
    run "$BIN/recall" --gt "$BATS_TEST_TMPDIR/gt" "$BATS_TEST_TMPDIR/res"
    [ "$status" -eq 0 ]
    r=$(echo "$output" | awk '{print $2}')
    awk -v r="$r" 'BEGIN {exit !(r >= 0.97)}'
    # and the index is one query reads, naming vectors by u64 id
    "$BIN/query" -i "$BATS_TEST_TMPDIR/idx" "$BATS_TEST_TMPDIR/q.frames" >"$BATS_TEST_TMPDIR/r2" 2>/dev/null
    validate --expect results "$BATS_TEST_TMPDIR/r2"
    run show_frames "$BATS_TEST_TMPDIR/r2"
    [[ "${lines[0]}" == *'"ids": "u64"'* ]]
}

@test "consolidate continues from --index, and an insert of an existing id replaces its vector" {
    "$BIN/consolidate" -M 8 -o "$BATS_TEST_TMPDIR/a" -r /dev/null "$FIX/ins.upd" 2>/dev/null
    $MKU "$BATS_TEST_TMPDIR/up.upd" --dim 8 \
        'raw:{"t":"insert","n":1,"ids":{"u64":[7]},"data":{"f32":[9,9,9,9,9,9,9,9]}}' \
        'raw:{"t":"query","qid":0,"vec":{"f32":[9,9,9,9,9,9,9,9]},"k":1}'
    run --separate-stderr "$BIN/consolidate" --check -i "$BATS_TEST_TMPDIR/a" -o "$BATS_TEST_TMPDIR/b" \
        -r "$BATS_TEST_TMPDIR/res" "$BATS_TEST_TMPDIR/up.upd"
    [ "$status" -eq 0 ]
    run result_ids "$BATS_TEST_TMPDIR/res"
    [ "${lines[0]}" = "0 7" ]
    [ "$($IDS "$BATS_TEST_TMPDIR/b" --count)" -eq 3000 ]
    [ "$($IDS "$BATS_TEST_TMPDIR/b" --vec 7)" = "9 9 9 9 9 9 9 9" ]
}

@test "consolidate starts from a graph-build index with embed-load --ids and keeps the ids" {
    $GEN -n 500 -d 8 --seed 3 "$FIX/e.npy"
    seq 100 100 50000 >"$BATS_TEST_TMPDIR/ids.txt"
    "$BIN/embed-load" --ids "$BATS_TEST_TMPDIR/ids.txt" "$FIX/e.npy" | "$BIN/graph-build" -M 8 -o "$BATS_TEST_TMPDIR/g" 2>/dev/null
    validate --expect index "$BATS_TEST_TMPDIR/g"
    $MKU "$BATS_TEST_TMPDIR/d.upd" --dim 8 'raw:{"t":"delete","n":2,"ids":{"u64":[100,50000]}}'
    run --separate-stderr "$BIN/consolidate" --check -i "$BATS_TEST_TMPDIR/g" -o "$BATS_TEST_TMPDIR/g2" -r /dev/null "$BATS_TEST_TMPDIR/d.upd"
    [ "$status" -eq 0 ]
    [ "$($IDS "$BATS_TEST_TMPDIR/g2" --ids | head -1)" -eq 200 ]
    [ "$($IDS "$BATS_TEST_TMPDIR/g2" --ids | tail -1)" -eq 49900 ]
    [ "$($IDS "$BATS_TEST_TMPDIR/g2" --count)" -eq 498 ]
}

@test "embed-load --ids refuses a line that is not an unsigned integer, and a count that differs" {
    $GEN -n 10 -d 4 --seed 3 "$BATS_TEST_TMPDIR/v.npy"
    printf '1\n2\n-3\n' >"$BATS_TEST_TMPDIR/bad.txt"
    run --separate-stderr "$BIN/embed-load" --ids "$BATS_TEST_TMPDIR/bad.txt" -o "$BATS_TEST_TMPDIR/o" "$BATS_TEST_TMPDIR/v.npy"
    [ "$status" -eq 65 ]
    [[ "$stderr" == *"line 3"* ]]
    assert_no_output "$BATS_TEST_TMPDIR/o"
    seq 1 9 >"$BATS_TEST_TMPDIR/short.txt"
    run --separate-stderr "$BIN/embed-load" --ids "$BATS_TEST_TMPDIR/short.txt" -o "$BATS_TEST_TMPDIR/o" "$BATS_TEST_TMPDIR/v.npy"
    [ "$status" -eq 65 ]
    [[ "$stderr" == *"9 ids for 10 input rows"* ]]
}

@test "graph-build refuses an id given to two vectors" {
    $GEN -n 10 -d 4 --seed 3 "$BATS_TEST_TMPDIR/v.npy"
    printf '1\n2\n3\n4\n5\n6\n7\n8\n9\n1\n' >"$BATS_TEST_TMPDIR/dup.txt"
    "$BIN/embed-load" --ids "$BATS_TEST_TMPDIR/dup.txt" -o "$BATS_TEST_TMPDIR/v.frames" "$BATS_TEST_TMPDIR/v.npy"
    run --separate-stderr "$BIN/graph-build" -o "$BATS_TEST_TMPDIR/o" "$BATS_TEST_TMPDIR/v.frames"
    [ "$status" -eq 65 ]
    [[ "$stderr" == *"id 1 names two vectors"* ]]
    assert_no_output "$BATS_TEST_TMPDIR/o"
}

# bad input: each refused in one line naming the frame; the rest is applied
@test "consolidate refuses a delete of an unknown id in one line and applies the rest" {
    $MKU "$BATS_TEST_TMPDIR/u" --dim 8 insert:0:100 'raw:{"t":"delete","n":2,"ids":{"u64":[5,12345]}}' insert:100:200
    run --separate-stderr "$BIN/consolidate" -o "$BATS_TEST_TMPDIR/idx" -r /dev/null "$BATS_TEST_TMPDIR/u"
    [ "$status" -eq 65 ]
    [ "$(echo "$stderr" | grep -c 'frame 3: delete of id 12345: no such vector')" -eq 1 ]
    [ "$($IDS "$BATS_TEST_TMPDIR/idx" --count)" -eq 200 ] # id 5 stays: the frame changed nothing
}

@test "consolidate refuses an insert of the wrong dimension in one line and carries on" {
    $MKU "$BATS_TEST_TMPDIR/u" --dim 8 insert:0:100 'raw:{"t":"insert","n":1,"ids":{"u64":[999]},"data":{"f32":[1,2,3]}}' insert:100:150
    run --separate-stderr "$BIN/consolidate" -o "$BATS_TEST_TMPDIR/idx" -r /dev/null "$BATS_TEST_TMPDIR/u"
    [ "$status" -eq 65 ]
    [[ "$stderr" == *"frame 3: insert data is 12 bytes, expected 1 rows of dimension 8"* ]]
    [ "$($IDS "$BATS_TEST_TMPDIR/idx" --count)" -eq 150 ]
}

@test "consolidate refuses an insert holding NaN in one line and carries on" {
    $PY - "$BATS_TEST_TMPDIR/u" <<'EOF2'
import sys, msgpack, zlib, numpy as np
v = np.ones((2, 8), "<f4"); v[1, 3] = np.nan
fr = [{"t": "header", "schema": "hnswflow.updates", "v": 1, "dim": 8, "count": 2},
      {"t": "insert", "n": 1, "ids": np.array([1], "<u8").tobytes(), "data": v[0].tobytes()},
      {"t": "insert", "n": 2, "ids": np.array([2, 3], "<u8").tobytes(), "data": v.tobytes()}]
raw = b"".join(msgpack.packb(f) for f in fr)
open(sys.argv[1], "wb").write(raw + msgpack.packb({"t": "end", "count": 2, "checksum": zlib.crc32(raw)}))
EOF2
    run --separate-stderr "$BIN/consolidate" -o "$BATS_TEST_TMPDIR/idx" -r /dev/null "$BATS_TEST_TMPDIR/u"
    [ "$status" -eq 65 ]
    [[ "$stderr" == *"frame 3: insert: row 1: NaN value at column 3"* ]]
    [ "$($IDS "$BATS_TEST_TMPDIR/idx" --ids)" = "1" ]
}

@test "consolidate stops on a frame over --max-frame, names it, and writes no index" {
    run --separate-stderr "$BIN/consolidate" --max-frame 4096 -o "$BATS_TEST_TMPDIR/idx" -r /dev/null "$FIX/ins.upd"
    [ "$status" -eq 65 ]
    [[ "$stderr" == *"frame 2: frame over the size limit"* ]]
    assert_no_output "$BATS_TEST_TMPDIR/idx"
}

@test "consolidate reports a truncated stream and writes no index" {
    $MKU "$BATS_TEST_TMPDIR/u" --dim 8 --no-end insert:0:100
    run --separate-stderr "$BIN/consolidate" -o "$BATS_TEST_TMPDIR/idx" -r /dev/null "$BATS_TEST_TMPDIR/u"
    [ "$status" -eq 65 ]
    [[ "$stderr" == *"frame 3: truncated stream"* ]]
    assert_no_output "$BATS_TEST_TMPDIR/idx"
}

# write-ahead log
@test "consolidate --wal: updates of a stream cut short are replayed on the next start" {
    d=$BATS_TEST_TMPDIR
    $MKU "$d/u" --dim 8 --no-end --batch 100 insert:0:500 delete:0:50
    run "$BIN/consolidate" --wal "$d/wal" -o "$d/idx" -r /dev/null "$d/u"
    [ "$status" -eq 65 ]
    assert_no_output "$d/idx"
    $MKU "$d/empty" --dim 8
    run --separate-stderr "$BIN/consolidate" --check --wal "$d/wal" -o "$d/idx" -r /dev/null "$d/empty"
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"replayed 6 updates"* ]]
    [ "$($IDS "$d/idx" --count)" -eq 450 ]
    [ "$($IDS "$d/idx" --seq)" -eq 6 ]
    # the log was reset after the checkpoint: a third start replays nothing
    run --separate-stderr "$BIN/consolidate" --wal "$d/wal" -o "$d/idx" -r /dev/null "$d/empty"
    [ "$status" -eq 0 ]
    [[ "$stderr" != *replayed* ]]
    [ "$($IDS "$d/idx" --count)" -eq 450 ]
}

@test "consolidate --wal: a corrupt record ends the replay; the good prefix is kept and the rest reported" {
    d=$BATS_TEST_TMPDIR
    $MKU "$d/u" --dim 8 --no-end --batch 100 insert:0:500
    "$BIN/consolidate" --no-sync --wal "$d/wal" -o "$d/idx" -r /dev/null "$d/u" 2>/dev/null || true
    # flip a byte inside the third record's body
    $PY - "$d/wal" <<'EOF2'
import sys, msgpack
raw = bytearray(open(sys.argv[1], "rb").read())
up = msgpack.Unpacker(raw=False); up.feed(bytes(raw)); pos = []
for f in up: pos.append(up.tell())
raw[pos[2] + 200] ^= 0x40  # frame 4 = record 3
open(sys.argv[1], "wb").write(raw)
EOF2
    $MKU "$d/empty" --dim 8
    run --separate-stderr "$BIN/consolidate" --check --wal "$d/wal" -o "$d/idx" -r /dev/null "$d/empty"
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"wal:frame 4: record 3 fails its crc (corrupt) (replayed the 2 good records before it"* ]]
    [ "$($IDS "$d/idx" --count)" -eq 200 ]
}

@test "consolidate --wal: a truncated last record is reported and the records before it replayed" {
    d=$BATS_TEST_TMPDIR
    $MKU "$d/u" --dim 8 --no-end --batch 100 insert:0:300
    "$BIN/consolidate" --no-sync --wal "$d/wal" -o "$d/idx" -r /dev/null "$d/u" 2>/dev/null || true
    size=$(stat -c %s "$d/wal")
    truncate -s $((size - 100)) "$d/wal"
    $MKU "$d/empty" --dim 8
    run --separate-stderr "$BIN/consolidate" --wal "$d/wal" -o "$d/idx" -r /dev/null "$d/empty"
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"wal:frame 4: "*"(replayed the 2 good records"* ]]
    [ "$($IDS "$d/idx" --count)" -eq 200 ]
}

@test "consolidate checkpoints every --checkpoint-every updates and resets the log" {
    d=$BATS_TEST_TMPDIR
    $MKU "$d/u" --dim 8 --no-end --batch 100 insert:0:1000
    "$BIN/consolidate" --checkpoint-every 4 --wal "$d/wal" -o "$d/idx" -r /dev/null "$d/u" 2>/dev/null || true
    [ "$($IDS "$d/idx" --seq)" -eq 8 ]
    [ "$($IDS "$d/idx" --count)" -eq 800 ]
    $MKU "$d/empty" --dim 8
    run --separate-stderr "$BIN/consolidate" --wal "$d/wal" -o "$d/idx" -r /dev/null "$d/empty"
    [[ "$stderr" == *"replayed 2 updates (through 10)"* ]]
    [ "$($IDS "$d/idx" --count)" -eq 1000 ]
}

@test "consolidate checkpoints on SIGTERM and exits 0" {
    d=$BATS_TEST_TMPDIR
    $MKU "$d/u" --dim 8 --batch 50 insert:0:500
    mkfifo "$d/fifo"
    $TRICKLE "$d/u" 0.01 --hold --pidfile "$d/tp" >"$d/fifo" &
    "$BIN/consolidate" -o "$d/idx" -r /dev/null "$d/fifo" 2>"$d/err" &
    cp=$!
    sleep 1.5
    kill -TERM $cp
    rc=0
    wait $cp || rc=$?
    kill "$(cat "$d/tp")" 2>/dev/null || true
    cat "$d/err"
    [ "$rc" -eq 0 ]
    grep -q "checkpoint of 10 updates written" "$d/err"
    [ "$($IDS "$d/idx" --count)" -eq 500 ]
}

@test "consolidate survives SIGKILL during ingestion: every acknowledged update is back after restart" {
    d=$BATS_TEST_TMPDIR
    # insert frames of 20 rows, each followed by a query (its answer acknowledges the insert)
    ops=""
    for i in $(seq 0 29); do ops="$ops insert:$((i * 20)):$((i * 20 + 20)) query:$i:$((i + 1))"; done
    $MKU "$d/u" --dim 8 --batch 20 $ops
    $MKU "$d/empty" --dim 8
    for round in 1 2 3; do
        rm -f "$d/wal" "$d/idx" "$d/res"
        rm -f "$d/fifo"
        mkfifo "$d/fifo"
        $TRICKLE "$d/u" 0.02 --hold --pidfile "$d/tp" >"$d/fifo" &
        "$BIN/consolidate" --checkpoint-every 7 --wal "$d/wal" -o "$d/idx" -r "$d/res" "$d/fifo" 2>/dev/null &
        cp=$!
        sleep "0.$((3 + round * 2))"
        kill -KILL $cp
        kill "$(cat "$d/tp")" 2>/dev/null || true
        wait || true
        acked=$($PY -c "
import msgpack, sys
n = -1
try:
    for f in msgpack.Unpacker(open('$d/res', 'rb'), raw=False):
        if f.get('t') == 'result': n = max(n, f['qid'])
except Exception: pass
print(n + 1)")
        run --separate-stderr "$BIN/consolidate" --check --wal "$d/wal" -o "$d/idx" -r /dev/null "$d/empty"
        [ "$status" -eq 0 ]
        count=$($IDS "$d/idx" --count)
        [ "$count" -ge $((acked * 20)) ]
        [ $((count % 20)) -eq 0 ]
        # what is there is a prefix of what was sent
        [ "$($IDS "$d/idx" --ids | tail -1)" -eq $((count - 1)) ]
    done
}

# live mode
start_live() { # dir: starts a live consolidate on ipc endpoints in dir, pid in $lp
    "$BIN/consolidate" -M 8 --serve "ipc://$1/q" --updates "ipc://$1/u" --wal "$1/wal" \
        -o "$1/idx" 2>>"$1/live.err" &
    lp=$!
    for _ in $(seq 50); do [ -S "$1/u" ] && [ -S "$1/q" ] && break; sleep 0.1; done
}

@test "consolidate live: producers get an ack per update, queries after an acked delete never return it" {
    d=$BATS_TEST_TMPDIR
    start_live "$d"
    $MKU "$d/a.upd" --dim 8 --batch 100 insert:0:1000
    $MKU "$d/b.upd" --dim 8 --batch 100 insert:1000:2000
    "$BIN/consolidate" --connect "ipc://$d/u" -r /dev/null "$d/a.upd" 2>"$d/pa" &
    pa=$!
    "$BIN/consolidate" --connect "ipc://$d/u" -r /dev/null "$d/b.upd" 2>"$d/pb"
    wait $pa
    grep -q "10 updates acknowledged" "$d/pa"
    grep -q "10 updates acknowledged" "$d/pb"
    # delete ids 0..99 and, once acknowledged, query near their vectors
    $MKU "$d/del.upd" --dim 8 --batch 100 delete:0:100
    "$BIN/consolidate" --connect "ipc://$d/u" -r /dev/null "$d/del.upd" 2>/dev/null
    $PY - "$d" <<'EOF2'
import sys, zmq, msgpack, numpy as np
d = sys.argv[1]
base = np.random.default_rng(1).random((2001, 8), dtype=np.float32)  # make_updates' rows
ctx = zmq.Context(); s = ctx.socket(zmq.DEALER); s.connect(f"ipc://{d}/q")
for i in range(100):
    s.send_multipart([b"", msgpack.packb({"t": "query", "qid": i, "vec": base[i].tobytes(), "k": 10})])
    f = msgpack.unpackb(s.recv_multipart()[-1], raw=False)
    ids = np.frombuffer(f["ids"], "<u8")
    assert len(ids) == 10 and (ids >= 100).all(), (i, ids)
EOF2
    kill -TERM $lp
    wait $lp
    [ "$($IDS "$d/idx" --count)" -eq 1900 ]
}

@test "consolidate live: a message that is not a frame is answered with an error and the others carry on" {
    d=$BATS_TEST_TMPDIR
    start_live "$d"
    $PY - "$d" <<'EOF2'
import sys, zmq, msgpack
d = sys.argv[1]
ctx = zmq.Context(); s = ctx.socket(zmq.DEALER); s.connect(f"ipc://{d}/u")
# a producer that vanished mid-frame: the first bytes of an insert frame only
whole = msgpack.packb({"t": "insert", "n": 1, "ids": b"\x01" + b"\x00" * 7, "data": b"\x00" * 32})
s.send_multipart([b"", whole[:20]])
f = msgpack.unpackb(s.recv_multipart()[-1], raw=False)
assert f["t"] == "error", f
s.send_multipart([b"", whole])
f = msgpack.unpackb(s.recv_multipart()[-1], raw=False)
assert f["t"] == "ack" and f["seq"] == 1, f
EOF2
    kill -TERM $lp
    wait $lp
    grep -q "not exactly one MessagePack frame" "$d/live.err"
    [ "$($IDS "$d/idx" --count)" -eq 1 ]
}

@test "consolidate live survives SIGKILL: every acknowledged update is there after restart" {
    d=$BATS_TEST_TMPDIR
    ops=""
    for i in $(seq 0 59); do ops="$ops insert:$((i * 10)):$((i * 10 + 10))"; done
    $MKU "$d/u.upd" --dim 8 --batch 10 $ops
    for round in 1 2 3; do
        rm -f "$d/wal" "$d/idx" "$d/q" "$d/u"
        start_live "$d"
        $PY - "$d" "$round" >"$d/acked" <<'EOF2' &
import sys, zmq, msgpack
d = sys.argv[1]
ctx = zmq.Context(); s = ctx.socket(zmq.DEALER); s.connect(f"ipc://{d}/u")
s.setsockopt(zmq.RCVTIMEO, 5000)
for f in msgpack.Unpacker(open(f"{d}/u.upd", "rb"), raw=False):
    if f["t"] != "insert":
        continue
    s.send_multipart([b"", msgpack.packb(f)])
    try:
        a = msgpack.unpackb(s.recv_multipart()[-1], raw=False)
    except zmq.Again:
        break
    print(a["seq"], flush=True)
EOF2
        pp=$!
        sleep "0.$((2 + round * 2))"
        kill -KILL $lp
        wait $pp || true
        acked=$(tail -1 "$d/acked")
        acked=${acked:-0}
        $MKU "$d/empty" --dim 8
        run --separate-stderr "$BIN/consolidate" --check --wal "$d/wal" -o "$d/idx" -r /dev/null "$d/empty"
        [ "$status" -eq 0 ]
        count=$($IDS "$d/idx" --count 2>/dev/null || echo 0)
        [ "$count" -ge $((acked * 10)) ]
    done
}

@test "consolidate carries an index's model frames and marks them with the fraction of the graph changed" {
    d=$BATS_TEST_TMPDIR
    "$BIN/consolidate" -M 8 -o "$d/a" -r /dev/null "$FIX/ins.upd" 2>/dev/null
    # append a model frame before the end frame (re-checksummed)
    $PY - "$d/a" "$d/m" <<'EOF2'
import sys, msgpack, zlib
fr = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
end = fr.pop()
fr.append({"t": "model", "kind": "demo", "data": b"\x00" * 8})
raw = b"".join(msgpack.packb(f) for f in fr)
end["checksum"] = zlib.crc32(raw)
open(sys.argv[2], "wb").write(raw + msgpack.packb(end))
EOF2
    $MKU "$d/u" --dim 8 delete:0:300
    "$BIN/consolidate" -i "$d/m" -o "$d/b" -r /dev/null "$d/u" 2>/dev/null
    "$BIN/consolidate" -i "$d/b" -o "$d/c" -r /dev/null "$d/u" 2>/dev/null || true # refused: ids gone
    validate --expect index "$d/c"
    run show_frames "$d/c"
    [[ "$output" == *'"t": "model", "kind": "demo"'* ]]
    # 300 deletes over 2700 live: 0.111, once (the second run changed nothing)
    [[ "$output" == *'"graph_changed": 0.111'* ]]
}
