#!/bin/sh
# pipelines/train.sh - build a candidate graph with spare level-0 links and let
# edge-score learn which to keep; the result is an index `query` reads as is.
# usage: pipelines/train.sh VECTORS INDEX [edge-score options...]
#   e.g. pipelines/train.sh base.fvecs learned.idx --budget 0.85 --train train.frames
set -eu
[ $# -ge 2 ] || { echo "usage: $0 VECTORS INDEX [edge-score options...]" >&2; exit 64; }
BIN=${BIN:-$(dirname "$0")/../bin}
in=$1 out=$2
shift 2
"$BIN/embed-load" "$in" | "$BIN/graph-build" -M 16 --M0 48 --ef-construction 200 |
    "$BIN/edge-score" "$@" -o "$out"
