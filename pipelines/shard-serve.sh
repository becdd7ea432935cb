#!/bin/sh
# pipelines/shard-serve.sh - serve a sharded index (OUTDIR/shard-<i>.idx from
# shard-build.sh): one query --serve per shard and replica, and the front
# end, query --fanout, on FRONT. Runs until SIGINT/SIGTERM.
#
# usage: pipelines/shard-serve.sh OUTDIR [query options for the shards...]
# environment:
#   REPLICAS=1        servers per shard
#   FRONT=tcp://127.0.0.1:5600   where clients connect (query --connect FRONT)
#   PORT=5601         shard task p (shard p % SHARDS, replica p / SHARDS)
#                     serves on port PORT+p
#   ADDR              the address shard tasks announce (default: this host's
#                     first address from hostname -I, else 127.0.0.1)
#   SHARD_TIMEOUT=1000  the front end's --shard-timeout (ms)
#   FANOUT_OPTS       more front-end options (--curve-secret ... --curve-key ...)
#   SRUN=auto         auto: inside a Slurm allocation (SLURM_JOB_ID set) the
#                     servers are one job step, srun -n SHARDS*REPLICAS
#                     (srun spreads the tasks over the allocation's nodes);
#                     outside one they run on this host. 1 / 0 force it.
#   SRUN_OPTS         more srun options (--ntasks-per-node=1 ...)
# Each server task writes its endpoint to OUTDIR/serve/ep-<p> (a file system
# every node sees); the front end starts once all are there.
set -eu
case ${1:-} in -h | --help) sed -n '2,/^set -eu$/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [query options...]" >&2; exit 64; }
# under sbatch, $0 is Slurm's copy of the script on one node: srun and BIN
# need the original (scontrol names it)
self=$0
if [ -n "${SLURM_JOB_ID:-}" ] && [ -z "${SLURM_STEP_NUM_TASKS:-}" ]; then
    orig=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')
    [ -z "$orig" ] || [ ! -r "$orig" ] || self=$orig
fi
BIN=${BIN:-$(dirname "$self")/../bin}
out=$1
shift
REPLICAS=${REPLICAS:-1}
PORT=${PORT:-5601}
FRONT=${FRONT:-tcp://127.0.0.1:5600}
SHARD_TIMEOUT=${SHARD_TIMEOUT:-1000}
shards=$(ls "$out" 2>/dev/null | grep -c '^shard-[0-9]*\.idx$' || true)
[ "$shards" -gt 0 ] || { echo "$0: $out: no shard-<i>.idx files (run shard-build.sh)" >&2; exit 66; }
case $REPLICAS in '' | *[!0-9]* | 0) echo "$0: REPLICAS must be a positive integer" >&2; exit 64 ;; esac
ntask=$((shards * REPLICAS))

serve_task() { # serve_task P : serve shard P % shards on PORT+P until TERM
    p=$1
    shift
    s=$((p % shards))
    addr=${ADDR:-$(hostname -I 2>/dev/null | awk '{print $1}')}
    addr=${addr:-127.0.0.1}
    log="$out/serve/log-$p"
    "$BIN/query" --index "$out/shard-$s.idx" --serve "tcp://*:$((PORT + p))" "$@" 2>"$log" &
    q=$!
    trap 'kill -TERM "$q" 2>/dev/null; wait "$q"; exit 0' INT TERM
    # announce the endpoint once the shard is loaded and served
    until grep -q "query: serving" "$log" 2>/dev/null; do
        kill -0 "$q" 2>/dev/null || { echo "$0: shard server $p failed:" >&2; cat "$log" >&2; exit 1; }
        sleep 0.1
    done
    echo "tcp://$addr:$((PORT + p))" >"$out/serve/.ep-$p"
    mv "$out/serve/.ep-$p" "$out/serve/ep-$p"
    wait "$q"
}

if [ -n "${SHARD_SERVE_TASK:-}" ]; then
    # one task of the servers' job step
    serve_task "$SLURM_PROCID" "$@"
    exit 0
fi

mkdir -p "$out/serve"
rm -f "$out"/serve/ep-* "$out"/serve/log-*
use_srun=${SRUN:-auto}
[ "$use_srun" = auto ] && { [ -n "${SLURM_JOB_ID:-}" ] && use_srun=1 || use_srun=0; }
pids=""
if [ "$use_srun" = 1 ]; then
    # shellcheck disable=SC2086
    SHARD_SERVE_TASK=1 srun -n "$ntask" ${SRUN_OPTS:-} "$self" "$out" "$@" &
    pids=$!
else
    p=0
    while [ "$p" -lt "$ntask" ]; do
        serve_task "$p" "$@" &
        pids="$pids $!"
        p=$((p + 1))
    done
fi
fe=""
stop() {
    [ -z "$fe" ] || kill -TERM "$fe" 2>/dev/null || true
    for q in $pids; do kill -TERM "$q" 2>/dev/null || true; done
    wait
}
trap 'stop; exit 0' INT TERM
# wait for every server's endpoint (the servers load their shards first)
tries=0
while [ "$(ls "$out/serve" | grep -c '^ep-' || true)" -lt "$ntask" ]; do
    tries=$((tries + 1))
    [ "$tries" -lt 1200 ] || { echo "$0: the shard servers did not all start within 120 s" >&2; stop; exit 69; }
    sleep 0.1
done
spec=""
s=0
while [ "$s" -lt "$shards" ]; do
    group=""
    r=0
    while [ "$r" -lt "$REPLICAS" ]; do
        group="$group${group:+|}$(cat "$out/serve/ep-$((r * shards + s))")"
        r=$((r + 1))
    done
    spec="$spec${spec:+,}$group"
    s=$((s + 1))
done
echo "$0: front end on $FRONT over $spec" >&2
# shellcheck disable=SC2086
"$BIN/query" --fanout "$spec" --serve "$FRONT" --shard-timeout "$SHARD_TIMEOUT" ${FANOUT_OPTS:-} &
fe=$!
wait "$fe" || true
fe=""
stop
