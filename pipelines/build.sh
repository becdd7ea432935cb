#!/bin/sh
# pipelines/build.sh - build a classic index from a vector file.
# usage: pipelines/build.sh VECTORS INDEX [graph-build options...]
#   e.g. pipelines/build.sh base.fvecs base.idx -M 16 --ef-construction 200 --compress int8
set -eu
[ $# -ge 2 ] || { echo "usage: $0 VECTORS INDEX [graph-build options...]" >&2; exit 64; }
BIN=${BIN:-$(dirname "$0")/../bin}
in=$1 out=$2
shift 2
"$BIN/embed-load" "$in" | "$BIN/graph-build" "$@" -o "$out"
