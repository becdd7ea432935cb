#!/bin/sh
# bench/stream.sh - `make bench-stream`: consolidate on big-ann-benchmarks
# style streaming runbooks, against a fresh graph-build at every search step.
#
# For each data set (Fashion-MNIST 60k x 784, the generated clustered set
# 100k x 128) and each runbook (a clustered one in the shape of the NeurIPS'23
# final runbook: k-means clusters made contiguous, 5 rounds, each inserting a
# fifth of every cluster then deleting a uniform(0, 0.9) fraction of every
# cluster's live rows from its oldest end, a search after every step; and a
# sliding window of N/2 rows moving in batches of N/200, a search every 10
# batches), bench/runbook writes the frame stream, the exact ground truth of
# every search step, runs consolidate (--check: a full walk after every
# update) and a fresh graph-build (one thread) at every search step, and
# scores recall@10 per step. Then the churn run: cycles of deleting a random
# 5 % of Fashion-MNIST and inserting it back (the cycles of CHURN_AT are scored).
# Results: bench/results/stream/*.csv and summary.txt.
# Knobs: DATASETS, RUNBOOKS ("clustered sliding"), NQ (500), REPEAT (3 timed
# consolidate runs per runbook, the median quoted), CHURN_AT
# (default "100,500,1000", the issue's: about 33 min here), CHURN=0 skips it.
set -eu
PY=/usr/bin/python3
BIN=${BIN:-bin}
DATA=bench/data/stream
RES=bench/results/stream
WORK=bench/work/stream
DATASETS=${DATASETS:-"fashion-mnist clustered"}
RUNBOOKS=${RUNBOOKS:-"clustered sliding"}
NQ=${NQ:-500}
REPEAT=${REPEAT:-3}
CHURN=${CHURN:-1}
CHURN_AT=${CHURN_AT:-100,500,1000}
mkdir -p "$DATA" "$RES" "$WORK" bench/runbooks
say() { echo "bench-stream: $*" >&2; }

data() { # set -> base and queries under $DATA/set
    d=$DATA/$1
    [ -s "$d/base.fvecs" ] && [ -s "$d/queries.fvecs" ] && return 0
    case $1 in
    fashion-mnist) $PY bench/fmnist_to_fvecs.py --n-base 60000 --n-queries 10000 --out "$d" >&2 ;;
    clustered) $PY bench/gen_clustered.py -n 100000 --nq 1000 --out "$d" >&2 ;;
    *) say "unknown data set $1"; exit 1 ;;
    esac
}

: >"$RES/summary.txt"
for set in $DATASETS; do
    data "$set"
    d=$DATA/$set
    n=$($PY -c "import os; import numpy as np; r = np.fromfile('$d/base.fvecs', '<i4', 1)[0]; print(os.path.getsize('$d/base.fvecs') // (4 * (r + 1)))")
    for rb in $RUNBOOKS; do
        book=bench/runbooks/$rb-$set.yaml
        order=""
        case $rb in
        clustered)
            [ -s "$book" ] && [ -s "$d/order.npy" ] ||
                bench/runbook gen-clustered --base "$d/base.fvecs" --clusters 8 --rounds 5 \
                    --order-out "$d/order.npy" "$book"
            order="--order $d/order.npy" ;;
        sliding)
            [ -s "$book" ] ||
                bench/runbook gen-sliding --n "$n" --window $((n / 2)) --batch $((n / 200)) \
                    --search-every 10 "$book" ;;
        esac
        say "$rb runbook on $set"
        # shellcheck disable=SC2086
        bench/runbook run "$book" --base "$d/base.fvecs" $order --queries "$d/queries.fvecs" \
            --nq "$NQ" --bin "$BIN" --work "$WORK/$rb-$set" --rebuild --repeat "$REPEAT" --label "$rb-$set" \
            --csv "$RES/$rb-$set.csv" 2>"$WORK/$rb-$set.log" | tee -a "$RES/summary.txt"
    done
done
if [ "$CHURN" = 1 ]; then
    data fashion-mnist
    say "churn on fashion-mnist (cycles $CHURN_AT)"
    bench/runbook churn --base "$DATA/fashion-mnist/base.fvecs" \
        --queries "$DATA/fashion-mnist/queries.fvecs" --at "$CHURN_AT" --nq "$NQ" \
        --bin "$BIN" --work "$WORK/churn" 2>"$WORK/churn.log" | tee -a "$RES/summary.txt"
fi
say "done: $RES/summary.txt"
