#!/bin/sh
# bench/shard.sh - the sharded-serving bench (issue 20), `make bench-shard`.
#
# For fashion-mnist and the clustered set (bench/data.sh), N base vectors:
#   1. one index over all of them (graph-build), and 2 and 4 shards of them
#      (pipelines/shard-build.sh, without Slurm: one process a shard);
#   2. recall@10 against the exact answer at an ef sweep: the one index
#      (query, stdin path) and the shards through the front end (query
#      --fanout, every shard at the same ef);
# then on fashion-mnist, over tcp on loopback, with tests/fanout_client.py:
#   3. fan-out overhead: p50 of one query at a time to each of 2 shards
#      directly, and to the front end over both (overhead = front p50 minus
#      the slowest shard's p50);
#   4. replicas: closed-loop QPS (WINDOW in flight) of the front end over one
#      shard with 1 replica and with 2, and of 1 vs 2 servers asked directly;
#      4b. the same with bin/query --connect as the client (bench/replicas-c.sh),
#      with the CPU time per query of the replicas, the front end and the client;
#      4c. the same with batch requests of RS_BATCH queries (--request-size);
#   5. faults under load (RATE queries/s): SIGKILL of one of 2 shards
#      (--shard-timeout TIMEOUT), SIGKILL of one of 2 replicas;
#   6. CURVE: QPS and p50 of one server with and without CURVE;
#   7. bench/scale-model from the latencies of 3. and the QPS of 4.
# Writes $RES/shard.md, shard-recall.csv, shard-faults.json, scale-model.md.
#
# Environment: QUICK=1 (5000 vectors), N (default 20000), NQ (default 1000),
# EFS (default 10,20,40,64,128), RATE (default 500), TIMEOUT (ms, default
# 300), WINDOW (default 16), RS_BATCH (queries a batch request in step 4c,
# default 50), REP_TILE (steps 4b and 4c send the NQ queries this many times,
# default 30: runs of a few seconds), BIN, RES.
# Every process shares the machine's cores: a 2-core machine runs the client,
# the front end and the shards on the same 2 cores. Say so when quoting.
set -eu

PY=/usr/bin/python3
BIN=${BIN:-bin}
QUICK=${QUICK:-0}
N=${N:-$([ "$QUICK" = 1 ] && echo 5000 || echo 20000)}
NQ=${NQ:-1000}
EFS=${EFS:-10,20,40,64,128}
RATE=${RATE:-500}
TIMEOUT=${TIMEOUT:-300}
REP_TILE=${REP_TILE:-30}
WINDOW=${WINDOW:-16}
RS_BATCH=${RS_BATCH:-50}
RES=${RES:-bench/results}
WORK=${WORK:-bench/data/shard}
CLIENT="$PY tests/fanout_client.py"
say() { echo "bench-shard: $*" >&2; }
die() {
    say "$*"
    exit 1
}
. bench/data.sh
mkdir -p "$RES" "$WORK"
PIDS=""
cleanup() {
    for p in $PIDS; do kill -CONT "$p" 2>/dev/null || true; kill -TERM "$p" 2>/dev/null || true; done
    for p in $PIDS; do wait "$p" 2>/dev/null || true; done
    PIDS=""
}
trap cleanup EXIT INT TERM

free_port() { $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# serve VAR INDEX [options] : a shard server; VAR_EP and VAR_PID set (sh has
# no local variables: these helpers use only var, idx, port, log, pid, w)
serve() {
    var=$1
    idx=$2
    shift 2
    port=$(free_port)
    log="$WORK/$var.log"
    "$BIN/query" --index "$idx" --serve "tcp://127.0.0.1:$port" "$@" 2>"$log" &
    pid=$!
    PIDS="$PIDS $pid"
    eval "${var}_EP=tcp://127.0.0.1:$port ${var}_PID=$pid"
    w=0
    until grep -q serving "$log"; do
        w=$((w + 1))
        [ $w -lt 600 ] || die "server $var did not start: $(cat "$log")"
        sleep 0.1
    done
}

# front SPEC [options] : the front end; FRONT_EP, FRONT_PID
front() {
    spec=$1
    shift
    port=$(free_port)
    "$BIN/query" --fanout "$spec" --serve "tcp://127.0.0.1:$port" "$@" 2>"$WORK/front.log" &
    FRONT_PID=$!
    PIDS="$PIDS $FRONT_PID"
    FRONT_EP=tcp://127.0.0.1:$port
    w=0
    until grep -q "fan-out serving" "$WORK/front.log"; do
        w=$((w + 1))
        [ $w -lt 600 ] || die "front end did not start: $(cat "$WORK/front.log")"
        sleep 0.1
    done
}

field() { $PY -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

echo "set,ef,shards,recall" >"$RES/shard-recall.csv"
for set in fashion-mnist clustered; do
    d="$WORK/$set"
    make_data "$set" "$N" "$NQ" "$d"
    [ -s "$d/all.idx" ] || "$BIN/graph-build" -o "$d/all.idx" "$d/base.frames" 2>"$d/build.log"
    [ -s "$d/gt" ] || "$BIN/query" --index "$d/all.idx" --exact -o "$d/gt" "$d/queries.frames" 2>/dev/null
    # the same rows as base.frames, from the file they came from
    src="$d/base.fvecs"
    eo=""
    [ "$set" != fashion-mnist ] || { src="$FM/train-images-idx3-ubyte.gz"; eo="--limit $N"; }
    for S in 1 2 4; do
        [ -s "$d/s$S/shard-$((S - 1)).idx" ] ||
            EMBED_OPTS="$eo" BIN="$BIN" sh pipelines/shard-build.sh "$src" "$S" "$d/s$S" -t 1 2>"$d/shard-build.log" ||
            die "shard-build failed: $(cat "$d/shard-build.log")"
    done
    for ef in $(echo "$EFS" | tr , ' '); do
        "$BIN/query" --index "$d/all.idx" --ef "$ef" -o "$d/r1" "$d/queries.frames" 2>/dev/null
        r=$("$BIN/recall" --gt "$d/gt" "$d/r1" | awk '{print $2}')
        echo "$set,$ef,1,$r" >>"$RES/shard-recall.csv"
        for S in 2 4; do
            spec=""
            i=0
            while [ $i -lt $S ]; do
                serve "sh$i" "$d/s$S/shard-$i.idx"
                eval "spec=\$spec\${spec:+,}\$sh${i}_EP"
                i=$((i + 1))
            done
            front "$spec"
            "$BIN/query" --connect "$FRONT_EP" --ef "$ef" -o "$d/rs" "$d/queries.frames" 2>/dev/null
            r=$("$BIN/recall" --gt "$d/gt" "$d/rs" | awk '{print $2}')
            echo "$set,$ef,$S,$r" >>"$RES/shard-recall.csv"
            cleanup
        done
        say "$set ef $ef: $(grep "^$set,$ef," "$RES/shard-recall.csv" | cut -d, -f3,4 | tr '\n' ' ')"
    done
done

# ---- loopback latency, replicas, faults, CURVE (fashion-mnist) ----
d="$WORK/fashion-mnist"
$PY -c "
import sys, msgpack, numpy as np
rows = []
for f in msgpack.Unpacker(open('$d/queries.frames', 'rb'), raw=False):
    if f['t'] == 'header': dim = f['dim']
    if f['t'] == 'vectors': rows.append(np.frombuffer(f['data'], '<f4').reshape(f['n'], dim))
np.save('$d/queries.npy', np.concatenate(rows))"
Q="$d/queries.npy"
LAT=2000

ROUNDS=${ROUNDS:-3}
# med FILE KEY : of the JSON lines in FILE, the one with the median KEY
med() { $PY -c 'import json, sys; r = sorted((json.loads(l) for l in open(sys.argv[1])), key=lambda j: j[sys.argv[2]]); print(json.dumps(r[len(r) // 2]))' "$1" "$2"; }

serve a "$d/s2/shard-0.idx"
serve b "$d/s2/shard-1.idx"
front "$a_EP,$b_EP"
$CLIENT "$a_EP" "$Q" -n 200 --window 1 >/dev/null # warm-up
rm -f "$WORK"/lat-*.jsonl
r=0
while [ $r -lt "$ROUNDS" ]; do # interleaved rounds: the machine's other load hits all alike
    $CLIENT "$a_EP" "$Q" -n $LAT --window 1 --dump-lat "$WORK/lat-shard0-$r.txt" >>"$WORK/lat-a.jsonl"
    $CLIENT "$b_EP" "$Q" -n $LAT --window 1 --dump-lat "$WORK/lat-shard1-$r.txt" >>"$WORK/lat-b.jsonl"
    $CLIENT "$FRONT_EP" "$Q" -n $LAT --window 1 --dump-lat "$WORK/lat-front-$r.txt" >>"$WORK/lat-f.jsonl"
    r=$((r + 1))
done
cleanup
# the front end's own hop: over one shard alone
serve a "$d/s2/shard-0.idx"
front "$a_EP"
r=0
while [ $r -lt "$ROUNDS" ]; do
    $CLIENT "$FRONT_EP" "$Q" -n $LAT --window 1 >>"$WORK/lat-f1.jsonl"
    $CLIENT "$a_EP" "$Q" -n $LAT --window 1 >>"$WORK/lat-a1.jsonl"
    r=$((r + 1))
done
cleanup
ja=$(med "$WORK/lat-a.jsonl" p50_ms)
jb=$(med "$WORK/lat-b.jsonl" p50_ms)
jf=$(med "$WORK/lat-f.jsonl" p50_ms)
jf1=$(med "$WORK/lat-f1.jsonl" p50_ms)
ja3=$(med "$WORK/lat-a1.jsonl" p50_ms)
ja2=$(sed -n 1p "$WORK/lat-a.jsonl")
jf2=$(sed -n 1p "$WORK/lat-f.jsonl")
say "latency (median of $ROUNDS rounds): shard 0 $ja; shard 1 $jb; front $jf; front over one shard $jf1, that shard $ja3"

serve r1 "$d/s1/shard-0.idx"
serve r2 "$d/s1/shard-0.idx"
front "$r1_EP"
F1=$FRONT_EP
mv "$WORK/front.log" "$WORK/front1.log"
front "$r1_EP|$r2_EP"
F2=$FRONT_EP
rm -f "$WORK"/rep-*.jsonl
r=0
while [ $r -lt "$ROUNDS" ]; do # interleaved rounds
    $CLIENT "$F1" "$Q" -n 6000 --window "$WINDOW" >>"$WORK/rep-f1.jsonl"
    $CLIENT "$F2" "$Q" -n 6000 --window "$WINDOW" >>"$WORK/rep-f2.jsonl"
    $CLIENT "$r1_EP" "$Q" -n 6000 --window "$WINDOW" >>"$WORK/rep-d1.jsonl"
    # the two servers asked directly by two clients at once
    $CLIENT "$r1_EP" "$Q" -n 6000 --window "$WINDOW" >"$WORK/d1.json" &
    c1=$!
    $CLIENT "$r2_EP" "$Q" -n 6000 --window "$WINDOW" >"$WORK/d2.json" &
    c2=$!
    wait $c1 $c2
    $PY -c 'import json, sys; a, b = (json.load(open(p)) for p in sys.argv[1:]); print(json.dumps({"qps": round(a["qps"] + b["qps"], 1)}))' \
        "$WORK/d1.json" "$WORK/d2.json" >>"$WORK/rep-d2.jsonl"
    r=$((r + 1))
done
j1=$(med "$WORK/rep-f1.jsonl" qps)
j2=$(med "$WORK/rep-f2.jsonl" qps)
j1d=$(med "$WORK/rep-d1.jsonl" qps)
j2d=$(med "$WORK/rep-d2.jsonl" qps)
say "replicas: front 1 replica $j1; front 2 replicas $j2; direct 1 $j1d; direct 2 $j2d"
cleanup
# 4b. the same with a C load client (bench/replicas-c.sh): REP_TILE x NQ
# queries in frames of 500 (query --connect keeps up to 1000 in flight
# across frames), and the CPU time per query of each process
$PY -c "
import numpy as np
np.save('$d/queries-c.npy', np.tile(np.load('$Q'), ($REP_TILE, 1)))"
"$BIN/embed-load" --batch 500 -o "$d/queries-c.frames" "$d/queries-c.npy"
BIN="$BIN" PY="$PY" bash bench/replicas-c.sh "$d/s1/shard-0.idx" "$d/queries-c.frames" "$ROUNDS" >"$WORK/rep-c.jsonl"
jcc=$(med "$WORK/rep-c.jsonl" front_ratio)
say "replicas, C client (median round by front ratio): $jcc"
# 4c. the same with batch requests of RS_BATCH queries (query --connect --request-size)
RS="$RS_BATCH" BIN="$BIN" PY="$PY" bash bench/replicas-c.sh "$d/s1/shard-0.idx" "$d/queries-c.frames" "$ROUNDS" >"$WORK/rep-cb.jsonl"
jcb=$(med "$WORK/rep-cb.jsonl" front_ratio)
say "replicas, C client, requests of $RS_BATCH queries (median round by front ratio): $jcb"

serve a "$d/s2/shard-0.idx"
serve b "$d/s2/shard-1.idx"
front "$a_EP,$b_EP" --shard-timeout "$TIMEOUT"
jk=$($CLIENT "$FRONT_EP" "$Q" -n $((RATE * 4)) --rate "$RATE" --signal KILL --pid "$b_PID" --after 1.5 --deadline 3)
say "SIGKILL of shard 1 of 2 at $RATE/s, timeout $TIMEOUT ms: $jk"
cleanup
serve a "$d/s2/shard-0.idx"
serve a2 "$d/s2/shard-0.idx"
serve b "$d/s2/shard-1.idx"
front "$a_EP|$a2_EP,$b_EP" --shard-timeout 2000
jr=$($CLIENT "$FRONT_EP" "$Q" -n $((RATE * 4)) --rate "$RATE" --signal KILL --pid "$a_PID" --after 1.5 --deadline 4)
say "SIGKILL of one of 2 replicas at $RATE/s: $jr"
cleanup
printf '{"kill_shard": %s, "kill_replica": %s}\n' "$jk" "$jr" >"$RES/shard-faults.json"

keys="$WORK/keys"
rm -rf "$keys"
mkdir -p "$keys/allow"
sh pipelines/curve-keygen.sh server "$keys"
sh pipelines/curve-keygen.sh client "$keys"
cp "$keys/client" "$keys/allow/"
serve plain "$d/all.idx"
serve cur "$d/all.idx" --curve-secret "$keys/server.secret" --curve-allow "$keys/allow"
CK="--curve-key $keys/client.secret --curve-server $keys/server"
rm -f "$WORK"/cur-*.jsonl
r=0
while [ $r -lt "$ROUNDS" ]; do # interleaved: plain, CURVE, plain, CURVE...
    $CLIENT "$plain_EP" "$Q" -n 6000 --window "$WINDOW" >>"$WORK/cur-p.jsonl"
    # shellcheck disable=SC2086
    $CLIENT "$cur_EP" "$Q" -n 6000 --window "$WINDOW" $CK >>"$WORK/cur-c.jsonl"
    $CLIENT "$plain_EP" "$Q" -n $LAT --window 1 >>"$WORK/cur-p1.jsonl"
    # shellcheck disable=SC2086
    $CLIENT "$cur_EP" "$Q" -n $LAT --window 1 $CK >>"$WORK/cur-c1.jsonl"
    r=$((r + 1))
done
jp=$(med "$WORK/cur-p.jsonl" qps)
jc=$(med "$WORK/cur-c.jsonl" qps)
jp1=$(med "$WORK/cur-p1.jsonl" p50_ms)
jc1=$(med "$WORK/cur-c1.jsonl" p50_ms)
jp2=$jp
say "CURVE: plain $jp / $jp2, curve $jc; one at a time plain $jp1, curve $jc1"
cleanup

bpv_fm=$(( $(stat -c %s "$d/all.idx") / N ))
bpv_cl=$(( $(stat -c %s "$WORK/clustered/all.idx") / N ))
$PY bench/scale-model --shard-lat "$WORK/lat-shard0-0.txt" --shard-lat "$WORK/lat-shard1-0.txt" \
    --front-lat "$WORK/lat-front-0.txt" --qps "$(field "$j1d" qps)" --shard-size $((N / 2)) \
    --bytes-per-vector "fashion-mnist:$bpv_fm" --bytes-per-vector "clustered:$bpv_cl" >"$RES/scale-model.md"

$PY - "$RES" "$ja" "$jb" "$jf" "$ja2" "$jf2" "$j1" "$j2" "$j1d" "$j2d" "$jk" "$jr" "$jp" "$jp2" "$jc" "$jp1" "$jc1" "$N" "$TIMEOUT" "$RATE" "$WINDOW" "$jf1" "$ja3" "$ROUNDS" "$jcc" "$jcb" <<'PY' >"$RES/shard.md"
import csv, json, sys
res = sys.argv[1]
J = lambda s: json.loads(s)
ja, jb, jf, ja2, jf2, j1, j2, j1d = map(J, sys.argv[2:10])
j2d = J(sys.argv[10])
jk, jr, jp, jp2, jc, jp1, jc1 = map(J, sys.argv[11:18])
n, timeout, rate, window = sys.argv[18:22]
jf1, ja3 = map(J, sys.argv[22:24])
rounds = sys.argv[24]
jcc = J(sys.argv[25])
jcb = J(sys.argv[26])
rows = list(csv.DictReader(open(f"{res}/shard-recall.csv")))
print(f"# Sharded serving (bench/shard.sh, N={n} a set, k=10)\n")
print("Machine shared with other work; every process (client, front end, shards) on the same cores.\n")
print("## Recall@10, one index vs shards at the same per-shard ef\n")
print("| set | ef | 1 index | 2 shards | 4 shards |\n|---|---|---|---|---|")
for s in ("fashion-mnist", "clustered"):
    for ef in sorted({int(r["ef"]) for r in rows if r["set"] == s}):
        v = {r["shards"]: r["recall"] for r in rows if r["set"] == s and int(r["ef"]) == ef}
        print(f"| {s} | {ef} | {v.get('1')} | {v.get('2')} | {v.get('4')} |")
slow = max(ja["p50_ms"], jb["p50_ms"])
print(f"\n## Fan-out overhead on loopback (one query at a time, fashion-mnist, 2 shards; median of {rounds} interleaved rounds)\n")
print("| path | p50 ms | p99 ms |\n|---|---|---|")
for name, j in (("shard 0 direct", ja), ("shard 1 direct", jb), ("front end over both", jf),
                ("shard 0 direct (first round)", ja2), ("front end (first round)", jf2)):
    print(f"| {name} | {j['p50_ms']} | {j['p99_ms']} |")
for name, j in (("front end over shard 0 alone", jf1), ("shard 0 direct (third)", ja3)):
    print(f"| {name} | {j['p50_ms']} | {j['p99_ms']} |")
print(f"\nfront p50 - slowest shard p50: {jf['p50_ms'] - slow:.3f} ms "
      f"(first round alone: {jf2['p50_ms'] - ja2['p50_ms']:.3f} ms vs shard 0); target <= 0.3 ms. "
      f"The front end's own hop (over one shard): {jf1['p50_ms'] - ja3['p50_ms']:.3f} ms. "
      "Over two shards the front end waits for the slower of two searches that share the "
      "machine's cores with the client, the front end and other work.\n")
d2 = j2d["qps"]
print(f"## Replicas (closed loop, {window} in flight, one shard of all {n}; median of {rounds} interleaved rounds)\n")
print("| setup | QPS |\n|---|---|")
print(f"| front end, 1 replica | {j1['qps']} |\n| front end, 2 replicas | {j2['qps']} |")
print(f"| 1 server direct | {j1d['qps']} |\n| 2 servers direct, 2 clients | {d2:.1f} |")
print(f"\n2 replicas / 1 through the front end: {j2['qps'] / j1['qps']:.2f}x; direct: {d2 / j1d['qps']:.2f}x (target 1.8x)\n")
def c_client(j, how):
    print(f"With a C client (bench/replicas-c.sh: bin/query --connect, up to 1000 queries in "
          f"flight across input frames of 500, {how}; the round with the median front-end ratio "
          f"of {rounds}):\n")
    print("| setup | QPS |\n|---|---|")
    print(f"| front end, 1 replica | {j['front1']} |\n| front end, 2 replicas | {j['front2']} |")
    print(f"| 1 server direct | {j['direct1']} |\n| 2 servers direct, 2 clients | {j['direct2']} |")
    cpu = j["cpu_us"]
    allc = cpu["replicas"] + cpu["front"] + cpu["client"]
    print(f"\n2 replicas / 1 through the front end: {j['front_ratio']:.2f}x; direct: {j['direct_ratio']:.2f}x "
          f"(target 1.8x). CPU per query in the 2-replica run: replicas {cpu['replicas']} us, front end "
          f"{cpu['front']} us, client {cpu['client']} us; on 2 free cores that bounds the front-end ratio at "
          f"{2e6 / allc / (1e6 / cpu['replicas']):.2f}x (2 cores over all three, against one core's worth "
          f"of replica), and the direct one at "
          f"{2e6 / (cpu['replicas'] + cpu['client']) / (1e6 / cpu['replicas']):.2f}x.\n")
c_client(jcc, "one query a request")
c_client(jcb, f"requests of {jcb['request_size']} queries ({{t: \"queries\"}} frames, qbatch.h)")
print("One query a request, the front end and the client spend on messages (system calls, "
      "wake-ups, loopback TCP) a large part of what a replica spends searching, on the same 2 "
      "cores; batch requests divide that cost by the batch size.\n")
print(f"## Faults under load ({rate} queries/s)\n")
print("| fault | sent | answered | lost | errors | partial | max ms |\n|---|---|---|---|---|---|---|")
for name, j in ((f"SIGKILL shard 1 of 2 (timeout {timeout} ms)", jk), ("SIGKILL replica 1 of 2", jr)):
    print(f"| {name} | {j['sent']} | {j['answered']} | {j['lost']} | {j['errors']} | {j['partial']} | {j['max_ms']} |")
print(f"\n## CURVE (one server, all vectors; median of {rounds} interleaved rounds)\n")
print("| | QPS closed loop | p50 ms one at a time |\n|---|---|---|")
print(f"| plain | {jp['qps']} | {jp1['p50_ms']} |\n| CURVE | {jc['qps']} | {jc1['p50_ms']} |")
print(f"\nCURVE QPS / plain: {jc['qps'] / jp['qps']:.3f}; p50 one at a time + {jc1['p50_ms'] - jp1['p50_ms']:.3f} ms\n")
print(open(f"{res}/scale-model.md").read())
PY
cat "$RES/shard.md"
