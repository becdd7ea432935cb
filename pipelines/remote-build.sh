#!/bin/sh
# pipelines/remote-build.sh - the build pipeline across two machines: the
# loader pushes frames on a TCP port, the builder pulls them. Run the same
# script on both, with ROLE=load on the machine holding the data and
# ROLE=build (LOADER=host) on the one building; on one machine, ROLE=both.
# usage: ROLE=load|build|both [LOADER=host] [PORT=6000] pipelines/remote-build.sh VECTORS INDEX
set -eu
[ $# -ge 2 ] || { echo "usage: ROLE=load|build|both $0 VECTORS INDEX" >&2; exit 64; }
BIN=${BIN:-$(dirname "$0")/../bin}
PORT=${PORT:-6000}
LOADER=${LOADER:-127.0.0.1}
case ${ROLE:-both} in
load) exec "$BIN/embed-load" -o "tcp://*:$PORT" "$1" ;;
build) exec "$BIN/graph-build" -o "$2" "tcp://$LOADER:$PORT" ;;
both)
    "$BIN/embed-load" -o "tcp://127.0.0.1:$PORT" "$1" &
    loader=$!
    "$BIN/graph-build" -o "$2" "tcp://127.0.0.1:$PORT"
    wait "$loader"
    ;;
*) echo "$0: ROLE must be load, build or both" >&2; exit 64 ;;
esac
