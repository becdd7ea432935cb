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
#   5. faults under load (RATE queries/s): SIGKILL of one of 2 shards
#      (--shard-timeout TIMEOUT), SIGKILL of one of 2 replicas;
#   6. CURVE: QPS and p50 of one server with and without CURVE;
#   7. bench/scale-model from the latencies of 3. and the QPS of 4.
# Writes $RES/shard.md, shard-recall.csv, shard-faults.json, scale-model.md.
#
# Environment: QUICK=1 (5000 vectors), N (default 20000), NQ (default 1000),
# EFS (default 10,20,40,64,128), RATE (default 500), TIMEOUT (ms, default
# 300), WINDOW (default 16), BIN, RES.
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
WINDOW=${WINDOW:-16}
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

# serve VAR INDEX [options] : a shard server; VAR_EP and VAR_PID set
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
    i=0
    until grep -q serving "$log"; do
        i=$((i + 1))
        [ $i -lt 600 ] || die "server $var did not start: $(cat "$log")"
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
    i=0
    until grep -q "fan-out serving" "$WORK/front.log"; do
        i=$((i + 1))
        [ $i -lt 600 ] || die "front end did not start: $(cat "$WORK/front.log")"
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
    for S in 2 4; do
        [ -s "$d/s$S/shard-$((S - 1)).idx" ] ||
            BIN="$BIN" sh pipelines/shard-build.sh "$d/base.frames" "$S" "$d/s$S" -t 1 2>"$d/shard-build.log" ||
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

serve a "$d/s2/shard-0.idx"
serve b "$d/s2/shard-1.idx"
front "$a_EP,$b_EP"
$CLIENT "$a_EP" "$Q" -n 200 --window 1 >/dev/null # warm-up
ja=$($CLIENT "$a_EP" "$Q" -n $LAT --window 1 --dump-lat "$WORK/lat-shard0.txt")
jb=$($CLIENT "$b_EP" "$Q" -n $LAT --window 1 --dump-lat "$WORK/lat-shard1.txt")
jf=$($CLIENT "$FRONT_EP" "$Q" -n $LAT --window 1 --dump-lat "$WORK/lat-front.txt")
ja2=$($CLIENT "$a_EP" "$Q" -n $LAT --window 1)
jf2=$($CLIENT "$FRONT_EP" "$Q" -n $LAT --window 1)
say "latency: shard 0 $ja; shard 1 $jb; front $jf; again shard 0 $ja2, front $jf2"
cleanup

serve one "$d/all.idx"
front "$one_EP"
j1=$($CLIENT "$FRONT_EP" "$Q" -n 6000 --window "$WINDOW")
j1d=$($CLIENT "$one_EP" "$Q" -n 6000 --window "$WINDOW")
cleanup
serve r1 "$d/all.idx"
serve r2 "$d/all.idx"
front "$r1_EP|$r2_EP"
j2=$($CLIENT "$FRONT_EP" "$Q" -n 6000 --window "$WINDOW")
# the two servers asked directly by two clients at once
$CLIENT "$r1_EP" "$Q" -n 6000 --window "$WINDOW" >"$WORK/d1.json" &
c1=$!
$CLIENT "$r2_EP" "$Q" -n 6000 --window "$WINDOW" >"$WORK/d2.json" &
c2=$!
wait $c1 $c2
j2d="$(cat "$WORK/d1.json") $(cat "$WORK/d2.json")"
say "replicas: front 1 replica $j1; front 2 replicas $j2; direct 1 $j1d; direct 2 $j2d"
cleanup

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
jp=$($CLIENT "$plain_EP" "$Q" -n 6000 --window "$WINDOW")
# shellcheck disable=SC2086
jc=$($CLIENT "$cur_EP" "$Q" -n 6000 --window "$WINDOW" $CK)
jp1=$($CLIENT "$plain_EP" "$Q" -n $LAT --window 1)
# shellcheck disable=SC2086
jc1=$($CLIENT "$cur_EP" "$Q" -n $LAT --window 1 $CK)
jp2=$($CLIENT "$plain_EP" "$Q" -n 6000 --window "$WINDOW")
say "CURVE: plain $jp / $jp2, curve $jc; one at a time plain $jp1, curve $jc1"
cleanup

bpv_fm=$(( $(stat -c %s "$d/all.idx") / N ))
bpv_cl=$(( $(stat -c %s "$WORK/clustered/all.idx") / N ))
$PY bench/scale-model --shard-lat "$WORK/lat-shard0.txt" --shard-lat "$WORK/lat-shard1.txt" \
    --front-lat "$WORK/lat-front.txt" --qps "$(field "$j1d" qps)" --shard-size $((N / 2)) \
    --bytes-per-vector "fashion-mnist:$bpv_fm" --bytes-per-vector "clustered:$bpv_cl" >"$RES/scale-model.md"

$PY - "$RES" "$ja" "$jb" "$jf" "$ja2" "$jf2" "$j1" "$j2" "$j1d" "$j2d" "$jk" "$jr" "$jp" "$jp2" "$jc" "$jp1" "$jc1" "$N" "$TIMEOUT" "$RATE" "$WINDOW" <<'PY' >"$RES/shard.md"
import csv, json, sys
res = sys.argv[1]
J = lambda s: json.loads(s)
ja, jb, jf, ja2, jf2, j1, j2, j1d = map(J, sys.argv[2:10])
j2d = [J(x) for x in sys.argv[10].replace("} {", "}\n{").split("\n")]
jk, jr, jp, jp2, jc, jp1, jc1 = map(J, sys.argv[11:18])
n, timeout, rate, window = sys.argv[18:22]
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
print("\n## Fan-out overhead on loopback (one query at a time, fashion-mnist, 2 shards)\n")
print("| path | p50 ms | p99 ms |\n|---|---|---|")
for name, j in (("shard 0 direct", ja), ("shard 1 direct", jb), ("front end over both", jf),
                ("shard 0 direct (again)", ja2), ("front end (again)", jf2)):
    print(f"| {name} | {j['p50_ms']} | {j['p99_ms']} |")
print(f"\nfront p50 - slowest shard p50: {jf['p50_ms'] - slow:.3f} ms "
      f"(second pair: {jf2['p50_ms'] - ja2['p50_ms']:.3f} ms vs shard 0); target <= 0.3 ms\n")
d2 = sum(x["qps"] for x in j2d)
print(f"## Replicas (closed loop, {window} in flight, one index of all {n})\n")
print("| setup | QPS |\n|---|---|")
print(f"| front end, 1 replica | {j1['qps']} |\n| front end, 2 replicas | {j2['qps']} |")
print(f"| 1 server direct | {j1d['qps']} |\n| 2 servers direct, 2 clients | {d2:.1f} |")
print(f"\n2 replicas / 1 through the front end: {j2['qps'] / j1['qps']:.2f}x; direct: {d2 / j1d['qps']:.2f}x (target 1.8x)\n")
print(f"## Faults under load ({rate} queries/s)\n")
print("| fault | sent | answered | lost | errors | partial | max ms |\n|---|---|---|---|---|---|---|")
for name, j in ((f"SIGKILL shard 1 of 2 (timeout {timeout} ms)", jk), ("SIGKILL replica 1 of 2", jr)):
    print(f"| {name} | {j['sent']} | {j['answered']} | {j['lost']} | {j['errors']} | {j['partial']} | {j['max_ms']} |")
print("\n## CURVE (one server, all vectors)\n")
print("| | QPS closed loop | p50 ms one at a time |\n|---|---|---|")
print(f"| plain | {jp['qps']} / {jp2['qps']} | {jp1['p50_ms']} |\n| CURVE | {jc['qps']} | {jc1['p50_ms']} |")
print(f"\nCURVE QPS / plain (mean of the two plain runs): {jc['qps'] / ((jp['qps'] + jp2['qps']) / 2):.3f}\n")
print(open(f"{res}/scale-model.md").read())
PY
cat "$RES/shard.md"
