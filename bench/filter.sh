#!/bin/sh
# bench/filter.sh - the filtered-search bench (issue 19), `make bench-filter`.
#
# For each data set (fashion-mnist, clustered, text-cosine):
#   1. labels and filters (bench/filter_labels.py): every vector carries a
#      random label and a correlated one (its k-means cluster) at each of the
#      selectivities 50/10/1/0.1 %; the first NQ test queries get, per case,
#      a random label, or a cluster label other than their own (the hard
#      case);
#   2. one index with the labels (embed-load --labels | graph-build, M 16,
#      ef_construction 200, --compress int8: the codes the planner's exact
#      path scans): the graph does not depend on the labels;
#   3. per case: ground truth = exact nearest among the matching vectors
#      (query --exact --filters), then one thread, one query at a time:
#        auto   hnswflow's planner (query --filters) over an ef sweep
#        graph  the two-hop walk alone (ablation), same sweep
#        scan   the planner's exact path alone: int8 codes of the matching
#               vectors, the best re-ranked (--filter-mode scan)
#        brute  exact over the matching vectors (--filter-mode brute)
#        post   unfiltered search, k grown until k match (--filter-mode post)
#        faiss  IndexHNSWFlat + IDSelectorBitmap (bench/peers/faiss_filter.cpp)
#      REPEAT timed runs each (the fastest), over the queries repeated
#      so that a run lasts about a quarter second;
#   4. filtered queries through query --serve (query --connect --filters) and
#      through a live consolidate taking inserts with labels, with recall
#      against the exact answer;
# bench/filter_report.py writes $RES/filter.md and filter.csv.
#
# Environment: QUICK=1 (small sets), NQ (queries a case, default 200), EFS,
# DATASETS, REPEAT (default 1), THREADS (build), BIN, BUILD, RES (where the
# tables go).
# QPS are taken on whatever machine runs this; say so when quoting them.
set -eu

PY=/usr/bin/python3
BIN=${BIN:-bin}
BUILD=${BUILD:-build}
QUICK=${QUICK:-0}
THREADS=${THREADS:-$(nproc)}
REPEAT=${REPEAT:-1}
NQ=${NQ:-200}
DATASETS=${DATASETS:-"fashion-mnist clustered text-cosine"}
EFS=${EFS:-16,32,64,128,256}
K=10
say() { echo "bench-filter: $*" >&2; }
die() {
    echo "bench-filter: $*" >&2
    exit 1
}
. bench/data.sh

if [ "$QUICK" = 1 ]; then
    RES=${RES:-bench/results/quick}
    FM_N=20000 CL_N=20000 TX_N=20000
else
    RES=${RES:-bench/results}
    FM_N=60000 CL_N=100000 TX_N=60000
fi
QSET=10000 # test queries made per set (data.sh); NQ of them are used
for t in embed-load graph-build query recall consolidate; do
    [ -x "$BIN/$t" ] || die "$BIN/$t is missing; run make first"
done
mkdir -p "$RES" "$BUILD/peers"
FF=$BUILD/peers/faiss_filter
if [ ! -x "$FF" ] || [ bench/peers/faiss_filter.cpp -nt "$FF" ] || [ bench/peers/peer_common.h -nt "$FF" ]; then
    say "compiling bench/peers/faiss_filter.cpp"
    g++ -O3 -march=native -std=c++17 -o "$FF.tmp" bench/peers/faiss_filter.cpp -fopenmp -lfaiss \
        -lopenblas -lmsgpackc -lz -pthread || die "cannot compile faiss_filter"
    mv "$FF.tmp" "$FF"
fi
RAW=$(mktemp)
trap 'rm -f "$RAW"' EXIT
echo "set,kind,sel,measured_sel,method,ef,recall,qps,ndist" >"$RAW"
efs_words=$(echo "$EFS" | tr ',' ' ')

# one query run over the NQ queries (recall, and the QPS that sizes the
# timed runs), then REPEAT timed runs (the fastest is kept) over the
# queries repeated TILE times, where TILE (1, 5 or 20) makes a run last
# about a quarter second: 200 queries at 90k QPS are 2 ms, too short for a
# clock on a shared machine. method ef args...; appends a CSV row
run_q() {
    m=$1 ef=$2
    shift 2
    "$BIN/query" --index "$W/index-int8.idx" -k $K --ef "$ef" --filters "$F" "$@" <"$W/q.frames" \
        >"$W/res.frames" 2>"$W/q.log" || die "$set $case $m: query failed: $(cat "$W/q.log")"
    rec=$("$BIN/recall" --gt "$W/gt.$case.frames" "$W/res.frames" | awk '{ print $2 }')
    nd=$(sed -n 's/.* QPS, \([0-9.]*\) mean distance.*/\1/p' "$W/q.log")
    qps=$(sed -n 's/.* s, \([0-9.]*\) QPS, \([0-9.]*\) mean distance.*/\1/p' "$W/q.log")
    tile=$(echo "$qps $NQ" | awk '{ t = 0.25 * $1 / $2; print (t >= 10 ? 20 : (t >= 2.5 ? 5 : 1)) }')
    best=0
    r=0
    while [ $r -lt "$REPEAT" ]; do
        "$BIN/query" --index "$W/index-int8.idx" -k $K --ef "$ef" --filters "$W/f$tile.$case.txt" "$@" \
            <"$W/q$tile.frames" >/dev/null 2>"$W/q.log" || die "$set $case $m: query failed: $(cat "$W/q.log")"
        qps=$(sed -n 's/.* s, \([0-9.]*\) QPS, \([0-9.]*\) mean distance.*/\1/p' "$W/q.log")
        best=$(echo "$best $qps" | awk '{ print ($2 > $1) ? $2 : $1 }')
        r=$((r + 1))
    done
    echo "$set,$kind,$sel,$msel,$m,$ef,$rec,$best,$nd" >>"$RAW"
}

# the first NQ lines of FILE, TILE times over
tile_lines() {
    t=0
    while [ $t -lt "$2" ]; do
        head -n "$NQ" "$1"
        t=$((t + 1))
    done
}

for set in $DATASETS; do
    case $set in
    clustered) n=$CL_N ;;
    text-cosine) n=$TX_N ;;
    *) n=$FM_N ;;
    esac
    metric=$(set_metric "$set")
    D=bench/data/route-$set-$n-$QSET # the route bench's cache, when there
    W=bench/data/filter-$set-$n
    mkdir -p "$W"
    if [ "$set" = fashion-mnist ]; then
        [ -s "$D/base.fvecs" ] || D=bench/data/filter-fvecs-$set-$n
        [ -s "$D/base.fvecs" ] ||
            $PY bench/fmnist_to_fvecs.py --n-base "$n" --n-queries $QSET --out "$D" >&2
    else
        make_data "$set" "$n" $QSET "$D"
    fi
    if [ ! -s "$W/cases.txt" ]; then
        say "$set: labels and filters"
        $PY bench/filter_labels.py --base "$D/base.fvecs" --queries "$D/queries.fvecs" \
            --metric "$metric" --nq "$NQ" --out "$W"
    fi
    if [ ! -s "$W/index-int8.idx" ]; then
        say "$set: building the index ($n vectors, labels, int8 codes)"
        "$BIN/embed-load" --labels "$W/labels.txt" "$D/base.fvecs" |
            "$BIN/graph-build" --metric "$metric" -M 16 --ef-construction 200 --threads "$THREADS" \
                --compress int8 -o "$W/index-int8.idx" 2>"$W/build.log" || die "$set: build failed"
    fi
    "$BIN/embed-load" --limit "$NQ" "$D/queries.fvecs" -o "$W/q.frames"
    for tile in 1 5 20; do # the timed runs' query streams (run_q)
        $PY -c "import numpy as np, sys; d = int(np.fromfile(sys.argv[1], '<i4', 1)[0]); \
x = np.fromfile(sys.argv[1], '<f4').reshape(-1, d + 1)[:$NQ]; np.tile(x, ($tile, 1)).tofile(sys.argv[2])" \
            "$D/queries.fvecs" "$W/q$tile.fvecs"
        "$BIN/embed-load" "$W/q$tile.fvecs" -o "$W/q$tile.frames"
    done
    fcases=""
    while read -r kind sel F msel; do
        case=$kind-$sel
        say "$set $case (measured selectivity $msel)"
        for tile in 1 5 20; do
            tile_lines "$F" $tile >"$W/f$tile.$case.txt"
        done
        "$BIN/query" --index "$W/index-int8.idx" --exact -k $K --filters "$F" <"$W/q.frames" \
            >"$W/gt.$case.frames" 2>/dev/null || die "$set $case: ground truth failed"
        for ef in $efs_words; do
            run_q auto "$ef"
            run_q graph "$ef" --filter-mode graph
            run_q post "$ef" --filter-mode post
        done
        run_q brute 10 --filter-mode brute
        run_q scan 10 --filter-mode scan
        fcases="$fcases --case $case=$F"
    done <"$W/cases.txt"
    say "$set: faiss"
    # shellcheck disable=SC2086
    "$FF" --base "$D/base.fvecs" --queries "$D/queries.fvecs" --metric "$metric" -M 16 \
        --ef-construction 200 --threads "$THREADS" --efs "$EFS" --repeat "$REPEAT" \
        --labels "$W/labels.txt" --nq "$NQ" --out-prefix "$W/faiss" $fcases >"$W/faiss.log" ||
        die "$set: faiss_filter failed"
    while read -r kind sel F msel; do
        case=$kind-$sel
        for ef in $efs_words; do
            qps=$(sed -n "s/.*case=$case ef=$ef qps=\([0-9.]*\).*/\1/p" "$W/faiss.log")
            rec=$("$BIN/recall" --gt "$W/gt.$case.frames" "$W/faiss.$case.ef$ef.frames" | awk '{ print $2 }')
            echo "$set,$kind,$sel,$msel,faiss,$ef,$rec,$qps," >>"$RAW"
        done
    done <"$W/cases.txt"
done
cp "$RAW" "$RES/filter.csv"
$PY bench/filter_report.py "$RES/filter.csv" >"$RES/filter.md.tmp"
mv "$RES/filter.md.tmp" "$RES/filter.md"
say "wrote $RES/filter.md"

# --- filtered queries through query --serve and a live consolidate --------
$PY bench/filter_live.py --bin "$BIN" --dir bench/data/filter-live >>"$RES/filter.md"
say "appended the serve and live runs to $RES/filter.md"
