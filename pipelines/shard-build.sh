#!/bin/sh
# pipelines/shard-build.sh - build a sharded index: shard i holds the rows r
# with r % SHARDS == i (embed-load --shard), each row's number kept as its
# external id, so the shards' answers name the original rows; graph-build
# writes OUTDIR/shard-<i>.idx (atomically).
#
# usage: pipelines/shard-build.sh VECTORS SHARDS OUTDIR [graph-build options]
#   as a Slurm job step:  srun -n SHARDS pipelines/shard-build.sh ...
#                         (task SLURM_PROCID builds its shard)
#   in an allocation:     sbatch -n SHARDS pipelines/shard-build.sh ...
#                         (salloc too: the script runs srun -n SHARDS itself)
#   without Slurm:        pipelines/shard-build.sh ... (one process per shard
#                         on this host, all at once; exit 1 when any failed)
# VECTORS is any file embed-load reads, on a file system every node sees;
# EMBED_OPTS passes embed-load options (--limit N, --normalize, -f FORMAT).
set -eu
# shellcheck disable=SC2086
case ${1:-} in -h | --help) sed -n '2,/^set -eu$/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
[ $# -ge 3 ] || { echo "usage: $0 VECTORS SHARDS OUTDIR [graph-build options]" >&2; exit 64; }
# under sbatch, $0 is Slurm's copy of the script on one node: srun and BIN
# need the original (scontrol names it)
self=$0
if [ -n "${SLURM_JOB_ID:-}" ] && [ -z "${SLURM_STEP_NUM_TASKS:-}" ]; then
    orig=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')
    [ -z "$orig" ] || [ ! -r "$orig" ] || self=$orig
fi
BIN=${BIN:-$(dirname "$self")/../bin}
vectors=$1
shards=$2
out=$3
shift 3
case $shards in '' | *[!0-9]* | 0) echo "$0: SHARDS must be a positive integer, not \"$shards\"" >&2; exit 64 ;; esac
[ -r "$vectors" ] || { echo "$0: $vectors: cannot read" >&2; exit 66; }
mkdir -p "$out"


if [ -n "${SLURM_STEP_NUM_TASKS:-}" ] && [ -n "${SLURM_PROCID:-}" ]; then
    # one task of a job step: build shard SLURM_PROCID
    if [ "$SLURM_STEP_NUM_TASKS" != "$shards" ]; then
        echo "$0: the job step has $SLURM_STEP_NUM_TASKS tasks for $shards shards (srun -n $shards)" >&2
        exit 64
    fi
    i=$SLURM_PROCID
    rm -f "$out/shard-$i.idx"
    "$BIN/embed-load" ${EMBED_OPTS:-} --shard "$i/$shards" "$vectors" | "$BIN/graph-build" -o "$out/shard-$i.idx" "$@"
    [ -s "$out/shard-$i.idx" ]
elif [ -n "${SLURM_JOB_ID:-}" ]; then
    # a batch script or salloc shell: one job step of SHARDS tasks
    exec srun -n "$shards" "$self" "$vectors" "$shards" "$out" "$@"
else
    pids=""
    i=0
    while [ "$i" -lt "$shards" ]; do
        rm -f "$out/shard-$i.idx"
        "$BIN/embed-load" ${EMBED_OPTS:-} --shard "$i/$shards" "$vectors" | "$BIN/graph-build" -o "$out/shard-$i.idx" "$@" &
        pids="$pids $!"
        i=$((i + 1))
    done
    rc=0
    for p in $pids; do wait "$p" || rc=1; done
    i=0
    while [ "$i" -lt "$shards" ]; do
        [ -s "$out/shard-$i.idx" ] || { echo "$0: shard $i was not built" >&2; rc=1; }
        i=$((i + 1))
    done
    exit "$rc"
fi
