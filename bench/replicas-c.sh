#!/bin/bash
# bench/replicas-c.sh - replica throughput with a C load client (bench/shard.sh
# step 4b; also runs alone).
#
# usage: bench/replicas-c.sh INDEX QUERIES.frames [ROUNDS]
#
# Two query --serve replicas of INDEX (one search thread each), a front end
# over the first alone and one over both, and bin/query --connect as the
# client: it keeps up to 1000 queries of QUERIES in flight (--in-flight,
# across input frames) and writes the answers in order, with no per-request
# interpreter work, so the client takes less of the cores than
# tests/fanout_client.py does. Per round (interleaved, the machine's other
# load hits all alike): QPS through the front end with 1 and 2 replicas, of 1
# server direct and of 2 servers asked by 2 clients at once; and, during the
# 2-replica run, the CPU time per query of each process (utime + stime from
# /proc/PID/stat, the client's from /usr/bin/time): where the cores go.
# Prints one JSON line per round on stdout.
#
# Environment: BIN (default bin), PY (default /usr/bin/python3), RS (queries
# a request, query --connect --request-size: default 1, one "query" frame
# each; more sends "queries" batch frames, qbatch.h).
set -eu
BIN=${BIN:-bin}
PY=${PY:-/usr/bin/python3}
IDX=$1
Q=$2
ROUNDS=${3:-3}
RS=${RS:-1}
W=$(mktemp -d)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT INT TERM
free_port() { $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_line() { # FILE PATTERN
    local i
    for ((i = 0; i < 600; i++)); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "replicas-c.sh: no '$2' in $1: $(cat "$1")" >&2
    exit 1
}
start() { # NAME ARGS... : a query process logging to $W/NAME.log; its pid in $W/NAME.pid
    local name=$1
    shift
    "$BIN/query" "$@" 2>"$W/$name.log" &
    PIDS+=($!)
    echo $! >"$W/$name.pid"
}
P1=$(free_port)
P2=$(free_port)
P3=$(free_port)
P4=$(free_port)
E1=tcp://127.0.0.1:$P1
E2=tcp://127.0.0.1:$P2
start r1 --index "$IDX" --serve "$E1"
start r2 --index "$IDX" --serve "$E2"
wait_line "$W/r1.log" serving
wait_line "$W/r2.log" serving
start f1 --fanout "$E1" --serve "tcp://127.0.0.1:$P3"
start f2 --fanout "$E1|$E2" --serve "tcp://127.0.0.1:$P4"
wait_line "$W/f1.log" "fan-out serving"
wait_line "$W/f2.log" "fan-out serving"
qps() { "$BIN/query" --connect "$1" --request-size "$RS" -o /dev/null "$Q" 2>&1 | sed -n 's/.* s, \([0-9.]*\) QPS$/\1/p'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
R1=$(cat "$W/r1.pid")
R2=$(cat "$W/r2.pid")
F2=$(cat "$W/f2.pid")
qps "tcp://127.0.0.1:$P4" >/dev/null # warm-up: connections, page cache
for ((r = 0; r < ROUNDS; r++)); do
    f1=$(qps "tcp://127.0.0.1:$P3")
    a0=$(ticks "$R1") b0=$(ticks "$R2") c0=$(ticks "$F2")
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f "cpu %U %S" -o "$W/time" "$BIN/query" --connect "tcp://127.0.0.1:$P4" \
            --request-size "$RS" -o /dev/null "$Q" 2>"$W/f2.out"
    else
        "$BIN/query" --connect "tcp://127.0.0.1:$P4" --request-size "$RS" -o /dev/null "$Q" \
            2>"$W/f2.out"
        echo "cpu nan nan" >"$W/time"
    fi
    a1=$(ticks "$R1") b1=$(ticks "$R2") c1=$(ticks "$F2")
    f2=$(sed -n 's/.* s, \([0-9.]*\) QPS$/\1/p' "$W/f2.out")
    n=$(sed -n 's/^query: \([0-9]*\) queries via.*/\1/p' "$W/f2.out")
    d1=$(qps "$E1")
    qps "$E1" >"$W/da" &
    x=$!
    qps "$E2" >"$W/db" &
    y=$!
    wait $x $y
    $PY - "$f1" "$f2" "$d1" "$(cat "$W/da")" "$(cat "$W/db")" "$n" "$((a1 - a0))" "$((b1 - b0))" \
        "$((c1 - c0))" "$(sed -n 's/^cpu //p' "$W/time")" "$(getconf CLK_TCK)" "$RS" <<'PY'
import json, sys
f1, f2, d1, da, db = map(float, sys.argv[1:6])
n, a, b, c = map(int, sys.argv[6:10])
cu, cs = map(float, sys.argv[10].split())
hz = float(sys.argv[11])
rs = int(sys.argv[12])
us = lambda t: round(t / hz / n * 1e6, 1)
print(json.dumps({"request_size": rs, "front1": f1, "front2": f2, "direct1": d1, "direct2": round(da + db, 1),
                  "front_ratio": round(f2 / f1, 3), "direct_ratio": round((da + db) / d1, 3),
                  "cpu_us": {"replicas": us(a + b), "front": us(c),
                             "client": round((cu + cs) / n * 1e6, 1)}}))
PY
done
