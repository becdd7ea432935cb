#!/bin/sh
# bench/nav.sh - the nav-train bench (issue 13), `make bench-nav`.
#
# For each data set (fashion-mnist, clustered, fmnist-proj256, text-cosine):
#   1. the classic graph (graph-build, M 16, ef_construction 200; shared with
#      bench-route's cache);
#   2. the query file split: the first NTRAIN queries train and validate
#      (nav-train --train: its last quarter, at most 1000, validates), the
#      rest are the test queries, never seen by any training;
#   3. nav-train twice: cloning only (--ppo-iters 0) and cloning + PPO (the
#      default, which keeps PPO only when it validated better);
#   4. single-thread query runs on the test queries: classic at an ef grid,
#      ADSampling (--skip adsampling) at the grid, the adaptive stop
#      (--stop adaptive) over a patience grid at ef 256, cloning and
#      cloning + PPO (--nav) at the grid, and each stop variant (--recall R
#      over a grid: stop model alone, and with either skip model);
#   5. the policy with layer-route's entry (--route --nav; the router
#      trained on the same graph by layer-route's defaults) and the router
#      alone, at the grid;
#   6. few-shot: a policy trained on another set (fashion-mnist's for the
#      others, clustered's for fashion-mnist) adapted with 5 and 50 queries,
#      against scratch training on the same queries and no adaptation, at
#      the ef grid with --nav.
# bench/nav_report.py writes bench/results/nav.md and nav.csv (QUICK=1:
# bench/results/quick/).
#
# Environment: QUICK=1, THREADS (training), EFS, RECALLS, DATASETS, BIN;
# PARTS (default "base route fewshot": which of 3-4, 5 and 6 run; with a
# subset the rows are appended to the existing raw file and the report is
# rebuilt from all of it).
set -eu

PY=/usr/bin/python3
BIN=${BIN:-bin}
QUICK=${QUICK:-0}
THREADS=${THREADS:-$(nproc)}
DATASETS=${DATASETS:-"fashion-mnist clustered fmnist-proj256 text-cosine"}
K=10
say() { echo "bench-nav: $*" >&2; }
die() {
    echo "bench-nav: $*" >&2
    exit 1
}
. bench/data.sh

if [ "$QUICK" = 1 ]; then
    RES=bench/results/quick
    EFS=${EFS:-10,16,32,64}
    RECALLS=${RECALLS:-0.9,0.95}
    FM_N=20000 FM_NQ=1000 CL_N=20000 CL_NQ=1000 NTRAIN=400
else
    RES=bench/results
    EFS=${EFS:-10,16,24,32,48,64,96,128,192}
    RECALLS=${RECALLS:-0.85,0.9,0.93,0.95,0.97,0.98,0.99,0.995}
    FM_N=60000 FM_NQ=10000 CL_N=100000 CL_NQ=10000 NTRAIN=2000
fi
for t in embed-load graph-build nav-train query recall; do
    [ -x "$BIN/$t" ] || die "$BIN/$t is missing; run make first"
done
mkdir -p "$RES"
RAW=$RES/nav.raw.csv
PARTS=${PARTS:-"base route fewshot"}
part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
if [ "$PARTS" = "base route fewshot" ] || [ ! -s "$RAW" ]; then
    echo "set,method,param,recall,qps,ndist,hops,train_s" >"$RAW"
fi
field() { sed -n "s/.*$1.*/\\1/p" "$2"; }

# query the test queries: method label, parameter, then query options
measure() {
    m=$1 par=$2 idx=$3
    shift 3
    "$BIN/query" --index "$idx" "$@" -k "$K" -o "$w/res.frames" "$w/test.frames" 2>"$w/q.log" || {
        cat "$w/q.log" >&2
        die "query $* failed"
    }
    rec=$("$BIN/recall" --gt "$w/gt.frames" "$w/res.frames" | sed -n 's/^recall@10 \([0-9.]*\).*/\1/p')
    qps=$(field ' \([0-9.]*\) QPS' "$w/q.log")
    nd=$(field 'QPS, \([0-9.]*\) mean distance' "$w/q.log")
    hops=$(field ', \([0-9.]*\) mean hops' "$w/q.log")
    echo "$set,$m,$par,$rec,$qps,$nd,$hops,0" >>"$RAW"
}

train() { # label, output, nav-train options
    lab=$1 out=$2
    shift 2
    "$BIN/nav-train" -t "$THREADS" --train "$w/train.frames" "$@" -o "$out" "$w/classic.idx" \
        2>"$w/$lab.log" || {
        cat "$w/$lab.log" >&2
        die "nav-train $lab failed"
    }
    tt=$(field 'total \([0-9.]*\) s' "$w/$lab.log")
    echo "$set,train-$lab,0,0,0,0,0,$tt" >>"$RAW"
    say "$set: nav-train $lab: $tt s"
}

prev_nav=""
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
    if [ ! -s "$w/classic.idx" ]; then
        say "$set: classic graph, metric $metric"
        "$BIN/graph-build" -t "$THREADS" --seed 42 --metric "$metric" "$dir/base.frames" \
            -o "$w/classic.idx" 2>"$w/build.log"
    fi
    # the split: train/validate on the first NTRAIN queries, test on the rest
    if [ -s "$dir/queries.fvecs" ]; then src=$dir/queries.fvecs; else src=$FM/t10k-images-idx3-ubyte.gz; fi
    "$BIN/embed-load" --limit "$NTRAIN" "$src" -o "$w/train.frames"
    "$BIN/embed-load" --offset "$NTRAIN" --limit $((nq - NTRAIN)) "$src" -o "$w/test.frames"
    "$BIN/query" --index "$w/classic.idx" --exact -k "$K" "$w/test.frames" -o "$w/gt.frames" 2>/dev/null
    if part base || [ ! -s "$w/nav-bc.idx" ]; then
        train bc "$w/nav-bc.idx" --ppo-iters 0
        train ppo "$w/nav-ppo.idx"
        cat "$w/ppo.log" >&2
    fi
    ppo_kept=$(grep -c "written: cloning + PPO" "$w/ppo.log" || true)
    if part route; then
        "$BIN/layer-route" -t "$THREADS" -o "$w/nav-route.idx" "$w/nav-bc.idx" 2>"$w/nav-route.log"
        for ef in $(echo "$EFS" | tr ',' ' '); do
            measure route "$ef" "$w/nav-route.idx" --ef "$ef" --route
            measure cloning+route "$ef" "$w/nav-route.idx" --ef "$ef" --route --nav
        done
    fi
    part base && for ef in $(echo "$EFS" | tr ',' ' '); do
        measure classic "$ef" "$w/classic.idx" --ef "$ef"
        measure adsampling "$ef" "$w/classic.idx" --ef "$ef" --skip adsampling
        measure cloning "$ef" "$w/nav-bc.idx" --ef "$ef" --nav
        [ "$ppo_kept" = 1 ] && measure cloning+ppo "$ef" "$w/nav-ppo.idx" --ef "$ef" --nav
    done
    part base && for p in 1 2 4 8 16 32; do
        measure adaptive "$p" "$w/classic.idx" --ef 256 --stop adaptive --patience "$p"
    done
    part base && for r in $(echo "$RECALLS" | tr ',' ' '); do
        measure stop "$r" "$w/nav-bc.idx" --recall "$r"
        measure cloning+stop "$r" "$w/nav-bc.idx" --recall "$r" --nav
        [ "$ppo_kept" = 1 ] && measure cloning+ppo+stop "$r" "$w/nav-ppo.idx" --recall "$r" --nav
    done
    # few-shot: from the previous set's policy (clustered's for the first)
    if [ "$set" = fashion-mnist ]; then init=""; else init=$prev_nav; fi
    [ "$set" = fashion-mnist ] && fm_nav=$w/nav-bc.idx
    if [ -n "$init" ] && part fewshot; then
        train fs0 "$w/fs0.idx" --init "$init" --shots 0 --ppo-iters 0
        for s in 5 50; do
            train fs$s "$w/fs$s.idx" --init "$init" --shots "$s" --ppo-iters 0
            train sc$s "$w/sc$s.idx" --shots "$s" --ppo-iters 0
        done
            for ef in $(echo "$EFS" | tr ',' ' '); do
            measure fewshot-none "$ef" "$w/fs0.idx" --ef "$ef" --nav
            for s in 5 50; do
                measure fewshot-$s "$ef" "$w/fs$s.idx" --ef "$ef" --nav
                measure scratch-$s "$ef" "$w/sc$s.idx" --ef "$ef" --nav
            done
        done
    fi
    prev_nav=${fm_nav:-$w/nav-bc.idx}
done
$PY bench/nav_report.py "$RAW" "$RES" "$(uname -n) $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
say "wrote $RES/nav.md"
