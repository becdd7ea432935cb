#!/bin/sh
# pipelines/demo.sh - the main job on the built-in data set: build an HNSW
# index of Fashion-MNIST (60k x 784) with M=16, ef_construction=200, answer
# the 10k test images, and print build time, recall@10 and QPS.
# Falls back to a generated clustered set (and says so) when the Debian
# package dataset-fashion-mnist is not installed.
set -eu
BIN=${BIN:-bin}
OUT=${DEMO_DIR:-build/demo}
EF=${EF:-64}
THREADS=${THREADS:-$(nproc)}
FM=/usr/share/datasets/fashion-mnist
mkdir -p "$OUT"

if [ -r "$FM/train-images-idx3-ubyte.gz" ] && [ -r "$FM/t10k-images-idx3-ubyte.gz" ]; then
    echo "demo: data set Fashion-MNIST ($FM): 60000 base vectors, 10000 queries, dim 784"
    BASE="$FM/train-images-idx3-ubyte.gz"
    QUERIES="$FM/t10k-images-idx3-ubyte.gz"
else
    echo "demo: Fashion-MNIST not found at $FM; using a GENERATED clustered set instead"
    /usr/bin/python3 "$(dirname "$0")/../bench/gen_clustered.py" --n 60000 --nq 10000 --dim 128 --out "$OUT"
    BASE="$OUT/base.fvecs"
    QUERIES="$OUT/queries.fvecs"
fi

echo "demo: building the index (M=16, ef_construction=200, $THREADS threads)"
t0=$(date +%s.%N)
"$BIN/embed-load" "$BASE" | "$BIN/graph-build" -M 16 --ef-construction 200 --threads "$THREADS" -o "$OUT/index.hfi"
t1=$(date +%s.%N)
echo "demo: build time $(awk "BEGIN {printf \"%.1f\", $t1 - $t0}") s (load + build + save), index $(du -h "$OUT/index.hfi" | cut -f1)"

if [ ! -s "$OUT/gt.frames" ] || [ "$OUT/gt.frames" -ot "$OUT/index.hfi" ]; then
    echo "demo: exact ground truth with OpenBLAS (query --exact)"
    "$BIN/embed-load" "$QUERIES" | "$BIN/query" --index "$OUT/index.hfi" --exact -k 10 > "$OUT/gt.frames"
fi

echo "demo: answering the queries with ef=$EF, one thread"
"$BIN/embed-load" "$QUERIES" | "$BIN/query" --index "$OUT/index.hfi" -k 10 --ef "$EF" > "$OUT/results.frames"
"$BIN/recall" --gt "$OUT/gt.frames" "$OUT/results.frames"
