#!/bin/sh
# pipelines/retrain.sh - sleep consolidation: replay a server's query log
# offline into the index's navigation policy, validate, swap.
#
# usage: pipelines/retrain.sh [options] INDEX LOG [nav-train options...]
#   INDEX  an index with a nav-policy (nav-train), the one the server serves
#          (query --serve) or a live consolidate's checkpoint (its -o)
#   LOG    the query log the server wrote (--log; a rotated LOG.1 works too)
#   --reload EP       a `query --serve` of INDEX: INDEX is replaced (atomic
#                     rename) and the server told to load it again
#   --consolidate EP  a live `consolidate --serve` whose checkpoint is INDEX:
#                     the retrained file is written beside it (INDEX.retrained)
#                     and the server takes its models (its next checkpoint
#                     carries them); INDEX itself is the server's to write
#   --ewc L (100), --replay N (1000), --distill W (0), --holdout F (0.2),
#   --target R (0.95): nav-train's options of the same names
#
# Steps: nav-train --init INDEX --train LOG labels the logged queries exactly
# (brute force), trains from the current policy with EWC + replay, and holds
# the last F of the log aside, never trained or validated on; there it
# measures the policy it would replace against the new one and writes
# nothing unless the new one needs no more distance computations at recall
# --target (the line "held-aside: ..." is printed). Only then is anything
# swapped. Exit: 0 swapped (or nothing to swap: the new policy was no
# better), nav-train's status on bad input (a log of another dimension, a
# truncated log, an index without a policy), 69 when the server refused the
# reload.
set -eu
usage() {
    echo "usage: $0 [--reload EP | --consolidate EP] [--ewc L] [--replay N] [--distill W] [--holdout F] [--target R] INDEX LOG [nav-train options...]" >&2
    exit 64
}
BIN=${BIN:-$(dirname "$0")/../bin}
PY=${PY:-/usr/bin/python3}
reload="" live="" ewc=100 replay=1000 distill=0 holdout=0.2 target=0.95
while [ $# -gt 0 ]; do
    case $1 in
    --reload) reload=$2; shift 2 ;;
    --consolidate) live=$2; shift 2 ;;
    --ewc) ewc=$2; shift 2 ;;
    --replay) replay=$2; shift 2 ;;
    --distill) distill=$2; shift 2 ;;
    --holdout) holdout=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) usage ;;
    *) break ;;
    esac
done
[ $# -ge 2 ] || usage
[ -z "$reload" ] || [ -z "$live" ] || { echo "retrain: --reload and --consolidate exclude each other" >&2; exit 64; }
index=$1 log=$2
shift 2
[ -f "$index" ] || { echo "retrain: $index: no such index file" >&2; exit 66; }
[ -f "$log" ] || { echo "retrain: $log: no such query log" >&2; exit 66; }

# the new file is written beside INDEX (same file system: the rename is atomic)
new="$index.retrain.$$"
trap 'rm -f "$new" "$new.log"' EXIT
set +e
# shellcheck disable=SC2086
"$BIN/nav-train" --init "$index" --train "$log" --holdout "$holdout" --target "$target" \
    --ewc "$ewc" --replay "$replay" --distill "$distill" "$@" -o "$new" "$index" 2>"$new.log"
rc=$?
set -e
[ $rc -ne 0 ] && [ $rc -ne 3 ] || grep -E '^nav-train: (held-aside|continual)' "$new.log" >&2 || true
if [ $rc -eq 3 ]; then
    rm -f "$new.log"
    echo "retrain: the retrained policy was no better on the held-aside queries: nothing swapped" >&2
    exit 0
fi
if [ $rc -ne 0 ]; then
    # one line: nav-train's own (it names the input and the frame)
    why=$(grep -v '^nav-train:   ' "$new.log" | tail -1)
    rm -f "$new.log"
    echo "retrain: ${why#nav-train: } (nav-train status $rc): nothing swapped" >&2
    exit $rc
fi
rm -f "$new.log"

# reload_request EP [PATH] : ask a server to reload, one line on refusal
reload_request() {
    PYTHONPATH="$(dirname "$0")/python${PYTHONPATH:+:$PYTHONPATH}" "$PY" - "$@" <<'EOF'
import sys
import hnswflow
try:
    c = hnswflow.Client(sys.argv[1], timeout=120)
    a = c.reload(sys.argv[2] if len(sys.argv) > 2 else None)
    c.close()
except hnswflow.HnswflowError as e:
    sys.exit("retrain: %s: reload refused: %s" % (sys.argv[1], e))
print("retrain: %s reloaded: %s" % (sys.argv[1], {k: v for k, v in a.items() if k != "t"}), file=sys.stderr)
EOF
}

if [ -n "$live" ]; then
    mv "$new" "$index.retrained"
    reload_request "$live" "$(cd "$(dirname "$index")" && pwd)/$(basename "$index").retrained" || exit 69
    echo "retrain: $live carries the new models ($index.retrained)" >&2
else
    mv "$new" "$index"
    echo "retrain: $index swapped" >&2
    if [ -n "$reload" ]; then
        reload_request "$reload" || exit 69
    fi
fi
