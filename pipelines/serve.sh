#!/bin/sh
# pipelines/serve.sh - serve an index over ZeroMQ until SIGINT/SIGTERM.
# usage: pipelines/serve.sh INDEX [ENDPOINT] [query options...]
#   clients: bin/query --connect ENDPOINT < queries.frames > results.frames
set -eu
[ $# -ge 1 ] || { echo "usage: $0 INDEX [ENDPOINT] [query options...]" >&2; exit 64; }
BIN=${BIN:-$(dirname "$0")/../bin}
idx=$1
ep=${2:-tcp://127.0.0.1:5555}
[ $# -ge 2 ] && shift 2 || shift 1
exec "$BIN/query" --index "$idx" --serve "$ep" "$@"
