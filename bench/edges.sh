#!/bin/sh
# bench/edges.sh - the edge-score bench (issues 4 and 12), `make bench-edges`.
#
# For each data set (test queries are never used in training or validation):
#   fashion-mnist   60k train images / 10k t10k images, l2
#   clustered       100k x 128 generated mixture (bench/gen_clustered.py), l2
#   fmnist-proj256  Fashion-MNIST times a fixed Gaussian 784x256 matrix, l2
#   text-cosine     TF-IDF + SVD of linux-doc-6.1 paragraphs, 60k x 256,
#                   queries = held-out paragraphs, cosine (bench/text_embed.py)
# the graphs:
#   classic     graph-build default (M0 32)
#   candidates  the same build with --M0 48: what edge-score prunes
#   default     edge-score with its defaults on the candidates, exactly what
#               pipelines/train.sh runs (tolerance 0.002 against the
#               candidates on its own held-aside validation queries; it
#               picks the edge count, or keeps the candidates' edges)
#   learned / usage / random / plain-mlp
#               the candidates forced to KEEP x the classic graph's level-0
#               edges (--edges), with the model, route counts, random scores,
#               or the model without its graph layer (--no-graph), all with
#               the same TQ training queries and pruning policy
# then exact ground truth (query --exact), REPEAT query runs per graph and
# ef (single thread, graphs interleaved within each ef), recall@10 from
# bin/recall, median QPS and mean distance computations from query's
# summary line; the default run's validation table is kept beside it so the
# report can compare it with the test-query table. bench/edges_report.py
# writes bench/results/edges.md and edges.csv (QUICK=1: bench/results/quick/).
#
# Environment: QUICK=1 (small subsets, a few minutes), THREADS (build and
# training threads, default nproc), EFS=a,b,... (ef sweep), DATASETS,
# VARIANTS (default "default learned usage random"; plain-mlp on request),
# KEEP (forced fraction of the classic graph's edges, default 0.85),
# REPEAT (query runs per graph and ef, median QPS; default 3), BIN.
set -eu

PY=/usr/bin/python3
BIN=${BIN:-bin}
QUICK=${QUICK:-0}
THREADS=${THREADS:-$(nproc)}
KEEP=${KEEP:-0.85}
REPEAT=${REPEAT:-3}
DATASETS=${DATASETS:-"fashion-mnist clustered fmnist-proj256 text-cosine"}
VARIANTS=${VARIANTS:-"default learned usage random"}
DATA=bench/data
K=10

if [ "$QUICK" = 1 ]; then
    RES=bench/results/quick
    EFS=${EFS:-10,16,32,64,128}
    FM_N=20000 FM_NQ=1000 CL_N=20000 CL_NQ=1000 TX_N=20000 TX_NQ=1000
    FM_TQ=7000 CL_TQ=20000 TX_TQ=7000
else
    RES=bench/results
    EFS=${EFS:-10,12,16,24,32,48,64,96,128,256}
    FM_N=60000 FM_NQ=10000 CL_N=100000 CL_NQ=10000 TX_N=60000 TX_NQ=10000
    FM_TQ=${FM_TQ:-15000} CL_TQ=${CL_TQ:-40000} TX_TQ=${TX_TQ:-15000}
fi

say() { echo "bench-edges: $*" >&2; }
die() {
    echo "bench-edges: $*" >&2
    exit 1
}
. bench/data.sh
for t in embed-load graph-build edge-score query recall; do
    [ -x "$BIN/$t" ] || die "$BIN/$t is missing; run make first"
done
$PY -c 'import numpy, msgpack' 2>/dev/null || die "$PY lacks numpy or msgpack (make deps)"
mkdir -p "$RES"
RAW=$(mktemp)
VAL=$(mktemp)
trap 'rm -f "$RAW" "$VAL"' EXIT
echo "set,variant,edges,ef,recall,qps,ndist,train_s,total_s,m0" >"$RAW"
echo "set,ef,val_input,val_output" >"$VAL"

# summary VALUE from query's stderr line
qps_of() { sed -n 's/.* s, \([0-9.]*\) QPS, .*/\1/p' "$1"; }
nd_of() { sed -n 's/.*QPS, \([0-9.]*\) mean distance.*/\1/p' "$1"; }
# header M0 of an index stream
m0_of() { $PY bench/edges_report.py --m0 "$1"; }

for set in $DATASETS; do
    case $set in
    fashion-mnist | fmnist-proj256) n=$FM_N nq=$FM_NQ tq=$FM_TQ ;;
    clustered) n=$CL_N nq=$CL_NQ tq=$CL_TQ ;;
    text-cosine) n=$TX_N nq=$TX_NQ tq=$TX_TQ ;;
    *) die "unknown data set $set" ;;
    esac
    metric=$(set_metric "$set")
    dir=$DATA/edges-$set-$n-$nq
    make_data "$set" "$n" "$nq" "$dir"
    w=$dir/work
    mkdir -p "$w"
    say "$set: classic graph (M0 32) and candidate graph (M0 48), metric $metric"
    "$BIN/graph-build" -t "$THREADS" --seed 42 --metric "$metric" "$dir/base.frames" -o "$w/classic.idx"
    "$BIN/graph-build" -t "$THREADS" --seed 42 --metric "$metric" --M0 48 "$dir/base.frames" \
        -o "$w/candidates.idx"
    ec=$($PY bench/edges_report.py --count "$w/classic.idx")
    budget=$(awk -v e="$ec" -v f="$KEEP" 'BEGIN { printf "%d", e * f }')
    say "$set: classic $ec level-0 edges, forced budget $budget"
    for v in $VARIANTS; do
        case $v in
        default) opt="" ;;
        learned) opt="--edges $budget --queries $tq" ;;
        plain-mlp) opt="--edges $budget --queries $tq --no-graph" ;;
        random | usage) opt="--edges $budget --queries $tq --baseline $v" ;;
        *) die "unknown variant $v" ;;
        esac
        # shellcheck disable=SC2086
        "$BIN/edge-score" $opt -t "$THREADS" -o "$w/$v.idx" "$w/candidates.idx" 2>"$w/$v.log" ||
            {
                cat "$w/$v.log" >&2
                die "edge-score $v failed"
            }
        cat "$w/$v.log" >&2
        if [ "$v" = default ]; then
            # the validation table: ef row, input row, output = input + change
            $PY bench/edges_report.py --val-log "$w/$v.log" --set "$set" >>"$VAL"
        fi
    done
    say "$set: ground truth"
    "$BIN/query" --index "$w/classic.idx" --exact -k "$K" "$dir/queries.frames" -o "$w/gt.frames" 2>/dev/null
    graphs="classic candidates $VARIANTS"
    for v in $graphs; do
        tr="" tt=""
        if [ -f "$w/$v.log" ] && [ "$v" != classic ] && [ "$v" != candidates ]; then
            tr=$(sed -n 's/.*training \([0-9.]*\) s.*/\1/p' "$w/$v.log")
            tt=$(sed -n 's/.*total \([0-9.]*\) s.*/\1/p' "$w/$v.log")
        fi
        echo "$($PY bench/edges_report.py --count "$w/$v.idx") $(m0_of "$w/$v.idx") $tr $tt" >"$w/$v.meta"
    done
    # QPS: REPEAT runs per graph and ef, the graphs interleaved within each
    # ef so machine drift hits them alike; the median goes into the table.
    # Recall and distance counts are deterministic: taken from the first run.
    for ef in $(echo "$EFS" | tr ',' ' '); do
        for rep in $(seq "$REPEAT"); do
            for v in $graphs; do
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
        for v in $graphs; do
            read -r r nd <"$w/$v.ef$ef.first"
            read -r ed m0 tr tt <"$w/$v.meta" || true
            q=$(sort -n "$w/$v.ef$ef.qps" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
            echo "$set,$v,$ed,$ef,$r,$q,$nd,${tr:-},${tt:-},$m0" >>"$RAW"
            say "$set $v ef $ef: recall $r, median QPS $q of $REPEAT"
        done
    done
done
$PY bench/edges_report.py --raw "$RAW" --val "$VAL" --md "$RES/edges.md" --csv "$RES/edges.csv" \
    --keep "$KEEP" --repeat "$REPEAT"
cat "$RES/edges.md"
