#!/bin/sh
# make_corpus_updates.sh - the seed corpus for fuzz_updates, written with the
# project's own tools: an updates stream (inserts, a delete, queries), the
# write-ahead log consolidate leaves for a stream cut short, and an index
# with ids and checkpoint frames. Every seed is under 8 KB. Needs bin/ built.
# Usage: sh tests/fuzz/make_corpus_updates.sh [dir]
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$root/bin}
out=${1:-$root/tests/fuzz/corpus/updates}
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
$PY "$root/tests/make_updates.py" "$out/stream" --dim 4 --batch 8 insert:0:40 query:0:2 delete:0:10 query:2:4 insert:0:5
$PY "$root/tests/make_updates.py" "$tmp/cut" --dim 4 --batch 8 --no-end insert:0:24 delete:3:9
"$BIN/consolidate" --no-sync --wal "$out/wal" -o "$tmp/idx" -r /dev/null "$tmp/cut" 2>/dev/null || true
# inserts with labels, filtered queries, deletes
$PY "$root/tests/make_updates.py" "$out/labels_stream" --dim 4 --batch 8 --labels-mod 3 --filter 1 \
    insert:0:30 query:0:2 delete:0:5 query:2:4 insert:30:34
"$BIN/consolidate" -M 4 -o "$out/index" -r /dev/null "$out/stream" 2>/dev/null
