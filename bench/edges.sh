#!/bin/sh
# bench/edges.sh - the edge-score ablation (issue 4), `make bench-edges`.
#
# For each data set (Fashion-MNIST: base = train images, queries = t10k test
# images, never used in training; a generated clustered set, dim 128):
#   1. the classic graph: graph-build at the default M0 = 2*M = 32;
#   2. the candidate graph: the same graph-build run with --M0 48, so nodes
#      have more level-0 links to choose from;
#   3. three pruned versions of the candidate graph, all cut to the same
#      level-0 edge count, 85% of the classic graph's:
#        learned  edge-score (model trained on perturbed base vectors)
#        plain-mlp edge-score --no-graph (the same scorer without the graph
#                 layer: does the neighbourhood context earn its place?)
#        random   edge-score --baseline random
#        usage    edge-score --baseline usage (least-used edges dropped; usage
#                 from the same training searches, never from test queries)
#      All use the same training queries (perturbed base vectors; a
#      fraction of the base size: sparse labels hurt the model badly) and the
#      same pruning policy (edge-score's floors; at most 47 links a node, as
#      many as fit the classic M0 = 32 graph's 192-byte link block, so every
#      pruned graph's nodes take the classic graph's memory; reachability
#      repair).
#   4. exact ground truth (query --exact), then REPEAT query runs per graph
#      and ef (single thread, graphs interleaved), recall@10 from bin/recall,
#      median QPS and mean distance computations from query's summary line;
# then bench/edges_report.py writes bench/results/edges.md and edges.csv
# (QUICK=1: bench/results/quick/).
#
# Environment: QUICK=1 (small subsets, a few minutes), THREADS (build and
# training threads, default nproc), EFS=a,b,... (ef sweep), DATASETS,
# KEEP (fraction of the classic graph's edges to keep, default 0.85),
# REPEAT (query runs per graph and ef, median QPS reported; default 3),
# BIN (default bin).
set -eu

PY=/usr/bin/python3
BIN=${BIN:-bin}
QUICK=${QUICK:-0}
THREADS=${THREADS:-$(nproc)}
KEEP=${KEEP:-0.85}
REPEAT=${REPEAT:-3}
DATASETS=${DATASETS:-"fashion-mnist clustered"}
FM=/usr/share/datasets/fashion-mnist
DATA=bench/data
K=10

if [ "$QUICK" = 1 ]; then
    RES=bench/results/quick
    EFS=${EFS:-10,16,24,32,64,128}
    FM_N=20000 FM_NQ=1000 CL_N=20000 CL_NQ=1000 FM_TQ=7000 CL_TQ=20000
else
    RES=bench/results
    EFS=${EFS:-10,12,16,24,32,48,64,96,128,256}
    FM_N=60000 FM_NQ=10000 CL_N=100000 CL_NQ=10000
    FM_TQ=${FM_TQ:-15000} CL_TQ=${CL_TQ:-40000}
fi

say() { echo "bench-edges: $*" >&2; }
die() {
    echo "bench-edges: $*" >&2
    exit 1
}
for t in embed-load graph-build edge-score query recall; do
    [ -x "$BIN/$t" ] || die "$BIN/$t is missing; run make first"
done
$PY -c 'import numpy, msgpack' 2>/dev/null || die "$PY lacks numpy or msgpack (make deps)"
mkdir -p "$RES"
RAW=$(mktemp)
trap 'rm -f "$RAW"' EXIT
echo "set,variant,edges,ef,recall,qps,ndist,train_s,total_s" >"$RAW"

# summary VALUE from query's stderr line
qps_of() { sed -n 's/.* s, \([0-9.]*\) QPS, .*/\1/p' "$1"; }
nd_of() { sed -n 's/.*QPS, \([0-9.]*\) mean distance.*/\1/p' "$1"; }

for set in $DATASETS; do
    case $set in
    fashion-mnist) n=$FM_N nq=$FM_NQ tq=$FM_TQ ;;
    clustered) n=$CL_N nq=$CL_NQ tq=$CL_TQ ;;
    *) die "unknown data set $set" ;;
    esac
    dir=$DATA/edges-$set-$n-$nq
    mkdir -p "$dir"
    if [ ! -s "$dir/base.frames" ] || [ ! -s "$dir/queries.frames" ]; then
        say "$set: making data ($n base, $nq queries)"
        case $set in
        fashion-mnist)
            "$BIN/embed-load" --limit "$n" "$FM/train-images-idx3-ubyte.gz" -o "$dir/base.frames"
            "$BIN/embed-load" --limit "$nq" "$FM/t10k-images-idx3-ubyte.gz" -o "$dir/queries.frames"
            ;;
        clustered)
            $PY bench/gen_clustered.py --n "$n" --nq "$nq" --dim 128 --out "$dir" >&2
            "$BIN/embed-load" "$dir/base.fvecs" -o "$dir/base.frames"
            "$BIN/embed-load" "$dir/queries.fvecs" -o "$dir/queries.frames"
            ;;
        esac
    fi
    w=$dir/work
    mkdir -p "$w"
    say "$set: classic graph (M0 32) and candidate graph (M0 48)"
    "$BIN/graph-build" -t "$THREADS" --seed 42 "$dir/base.frames" -o "$w/classic.idx"
    "$BIN/graph-build" -t "$THREADS" --seed 42 --M0 48 "$dir/base.frames" -o "$w/cand.idx"
    ec=$($PY bench/edges_report.py --count "$w/classic.idx")
    ecand=$($PY bench/edges_report.py --count "$w/cand.idx")
    budget=$(awk -v e="$ec" -v f="$KEEP" 'BEGIN { printf "%d", e * f }')
    say "$set: classic $ec level-0 edges, candidates $ecand, budget $budget"
    echo "$set,classic,$ec,,,,,," >>"$RAW"
    echo "$set,candidates-M0-48,$ecand,,,,,," >>"$RAW"
    for v in learned plain-mlp random usage; do
        case $v in
        learned) opt="" ;;
        plain-mlp) opt="--no-graph" ;;
        *) opt="--baseline $v" ;;
        esac
        # shellcheck disable=SC2086
        "$BIN/edge-score" $opt --edges "$budget" --queries "$tq" -t "$THREADS" \
            -o "$w/$v.idx" "$w/cand.idx" 2>"$w/$v.log" || { cat "$w/$v.log" >&2; die "edge-score $v failed"; }
        cat "$w/$v.log" >&2
        tr=$(sed -n 's/.*training \([0-9.]*\) s.*/\1/p' "$w/$v.log")
        tt=$(sed -n 's/.*total \([0-9.]*\) s.*/\1/p' "$w/$v.log")
        ev=$($PY bench/edges_report.py --count "$w/$v.idx")
        echo "$set,$v,$ev,,,,,$tr,$tt" >>"$RAW"
    done
    say "$set: ground truth"
    "$BIN/query" --index "$w/classic.idx" --exact -k "$K" "$dir/queries.frames" -o "$w/gt.frames" 2>/dev/null
    # QPS: REPEAT runs per graph and ef, the graphs interleaved within each
    # ef so machine drift hits them alike; the median goes into the table.
    # Recall and distance counts are deterministic: taken from the first run.
    for v in classic learned plain-mlp random usage; do
        echo "$($PY bench/edges_report.py --count "$w/$v.idx")" >"$w/$v.edges"
    done
    for ef in $(echo "$EFS" | tr ',' ' '); do
        for rep in $(seq "$REPEAT"); do
            for v in classic learned plain-mlp random usage; do
                "$BIN/query" --index "$w/$v.idx" -k "$K" --ef "$ef" "$dir/queries.frames" \
                    -o "$w/res.frames" 2>"$w/q.log" || die "query $v ef $ef failed"
                if [ "$rep" = 1 ]; then
                    r=$("$BIN/recall" --gt "$w/gt.frames" "$w/res.frames" | awk '{print $2}')
                    echo "$r $(nd_of "$w/q.log")" >"$w/$v.ef$ef.first"
                    : >"$w/$v.ef$ef.qps"
                fi
                qps_of "$w/q.log" >>"$w/$v.ef$ef.qps"
            done
        done
        for v in classic learned plain-mlp random usage; do
            read -r r nd <"$w/$v.ef$ef.first"
            q=$(sort -n "$w/$v.ef$ef.qps" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
            echo "$set,$v,$(cat "$w/$v.edges"),$ef,$r,$q,$nd,," >>"$RAW"
            say "$set $v ef $ef: recall $r, median QPS $q of $REPEAT"
        done
    done
done
$PY bench/edges_report.py --raw "$RAW" --md "$RES/edges.md" --csv "$RES/edges.csv" --keep "$KEEP" --repeat "$REPEAT"
cat "$RES/edges.md"
