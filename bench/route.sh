#!/bin/sh
# bench/route.sh - the layer-route bench (issue 14), `make bench-route`.
#
# For each data set (fashion-mnist, clustered, fmnist-proj256, text-cosine;
# test queries never used in training or validation):
#   1. the classic graph (graph-build, M 16, ef_construction 200);
#   2. layer-route on it (its own leave-one-out training and validation
#      queries; writes the trained or the PCA router, whichever validated
#      cheaper, or says fallback);
#   3. exact ground truth, then REPEAT query runs per entry and ef (single
#      thread, entries interleaved): classic descent, flat (level 0 from the
#      medoid candidate), nearest (level 0 from the exactly nearest
#      candidate, its distances counted), route (query --route, routing
#      counted as distance computations);
# bench/route_report.py writes bench/results/route.md and route.csv
# (QUICK=1: bench/results/quick/).
#
# Environment: QUICK=1, THREADS, EFS, DATASETS, REPEAT (default 3), BIN.
set -eu

PY=/usr/bin/python3
BIN=${BIN:-bin}
QUICK=${QUICK:-0}
THREADS=${THREADS:-$(nproc)}
REPEAT=${REPEAT:-3}
DATASETS=${DATASETS:-"fashion-mnist clustered fmnist-proj256 text-cosine"}
K=10
say() { echo "bench-route: $*" >&2; }
die() {
    echo "bench-route: $*" >&2
    exit 1
}
. bench/data.sh

if [ "$QUICK" = 1 ]; then
    RES=bench/results/quick
    EFS=${EFS:-10,16,32,64}
    FM_N=20000 FM_NQ=1000 CL_N=20000 CL_NQ=1000
else
    RES=bench/results
    EFS=${EFS:-10,12,16,24,32,48,64,96,128}
    FM_N=60000 FM_NQ=10000 CL_N=100000 CL_NQ=10000
fi
for t in embed-load graph-build layer-route query recall; do
    [ -x "$BIN/$t" ] || die "$BIN/$t is missing; run make first"
done
mkdir -p "$RES"
RAW=$(mktemp)
trap 'rm -f "$RAW"' EXIT
echo "set,entry,ef,recall,qps,ndist,upper,routing,hops,train_s,levels" >"$RAW"
field() { sed -n "s/.*$1.*/\\1/p" "$2"; }

for set in $DATASETS; do
    case $set in
    clustered) n=$CL_N nq=$CL_NQ ;;
    *) n=$FM_N nq=$FM_NQ ;;
    esac
    metric=$(set_metric "$set")
    dir=bench/data/route-$set-$n-$nq
    make_data "$set" "$n" "$nq" "$dir"
    w=$dir/work
    mkdir -p "$w"
    say "$set: classic graph, metric $metric"
    "$BIN/graph-build" -t "$THREADS" --seed 42 --metric "$metric" "$dir/base.frames" \
        -o "$w/classic.idx" 2>"$w/build.log"
    levels=$(sed -n 's/.* \([0-9]*\) levels.*/\1/p' "$w/build.log")
    say "$set: layer-route"
    "$BIN/layer-route" -t "$THREADS" -o "$w/routed.idx" "$w/classic.idx" 2>"$w/route.log" || {
        cat "$w/route.log" >&2
        die "layer-route failed"
    }
    cat "$w/route.log" >&2
    tt=$(field 'total \([0-9.]*\) s' "$w/route.log")
    "$BIN/query" --index "$w/classic.idx" --exact -k "$K" "$dir/queries.frames" -o "$w/gt.frames" 2>/dev/null
    for ef in $(echo "$EFS" | tr ',' ' '); do
        for rep in $(seq "$REPEAT"); do
            for ent in classic flat nearest route; do
                case $ent in
                classic) opt="" ;;
                route) opt="--route" ;;
                *) opt="--entry $ent" ;;
                esac
                # shellcheck disable=SC2086
                "$BIN/query" --index "$w/routed.idx" $opt -k "$K" --ef "$ef" "$dir/queries.frames" \
                    -o "$w/res.frames" 2>"$w/q.log" || die "query $ent ef $ef failed"
                if [ "$rep" = 1 ]; then
                    r=$("$BIN/recall" --gt "$w/gt.frames" "$w/res.frames" | awk '{print $2}')
                    nd=$(field 'QPS, \([0-9.]*\) mean distance' "$w/q.log")
                    up=$(field '(\([0-9.]*\) above level 0' "$w/q.log")
                    ro=$(field 'level 0, \([0-9.]*\) routing' "$w/q.log")
                    hp=$(field 'routing), \([0-9.]*\) mean hops' "$w/q.log")
                    echo "$r $nd $up $ro $hp" >"$w/$ent.ef$ef.first"
                    : >"$w/$ent.ef$ef.qps"
                fi
                field ' s, \([0-9.]*\) QPS' "$w/q.log" >>"$w/$ent.ef$ef.qps"
            done
        done
        for ent in classic flat nearest route; do
            read -r r nd up ro hp <"$w/$ent.ef$ef.first"
            q=$(sort -n "$w/$ent.ef$ef.qps" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
            echo "$set,$ent,$ef,$r,$q,$nd,$up,$ro,$hp,$tt,$levels" >>"$RAW"
            say "$set $ent ef $ef: recall $r, $nd distance computations, median QPS $q"
        done
    done
    cp "$w/route.log" "$RES/route-$set.log"
done
$PY bench/route_report.py --raw "$RAW" --md "$RES/route.md" --csv "$RES/route.csv" --repeat "$REPEAT" \
    --logs "$RES"
cat "$RES/route.md"
