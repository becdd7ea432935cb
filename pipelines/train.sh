#!/bin/sh
# pipelines/train.sh - build a candidate graph with spare level-0 links and let
# edge-score learn which to keep; the result is an index `query` reads as is.
# edge-score validates itself on queries it holds aside and never writes a
# graph whose recall@10 is more than --tolerance (0.002) below the candidates'.
# usage: pipelines/train.sh VECTORS INDEX [edge-score options...]
#   BUILD_OPTS: extra graph-build options (e.g. "--metric cosine -t 2")
#   e.g. BUILD_OPTS="--metric cosine" pipelines/train.sh base.fvecs learned.idx
set -eu
[ $# -ge 2 ] || { echo "usage: $0 VECTORS INDEX [edge-score options...]" >&2; exit 64; }
BIN=${BIN:-$(dirname "$0")/../bin}
in=$1 out=$2
shift 2
# shellcheck disable=SC2086
"$BIN/embed-load" "$in" | "$BIN/graph-build" -M 16 --M0 48 --ef-construction 200 ${BUILD_OPTS:-} |
    "$BIN/edge-score" "$@" -o "$out"
