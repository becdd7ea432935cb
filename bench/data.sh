#!/bin/sh
# bench/data.sh - sourced by the bench scripts: the data sets as frame
# streams. make_data SET N NQ DIR writes DIR/base.frames and
# DIR/queries.frames unless they are there (cached), and set_metric SET
# prints the set's metric. Needs BIN, PY and die().
FM=${FM:-/usr/share/datasets/fashion-mnist}

set_metric() {
    case $1 in
    text-cosine) echo cosine ;;
    *) echo l2 ;;
    esac
}

make_data() {
    [ -s "$4/base.frames" ] && [ -s "$4/queries.frames" ] && return 0
    mkdir -p "$4"
    echo "bench: $1: making data ($2 base, $3 queries)" >&2
    case $1 in
    fashion-mnist)
        "$BIN/embed-load" --limit "$2" "$FM/train-images-idx3-ubyte.gz" -o "$4/base.frames"
        "$BIN/embed-load" --limit "$3" "$FM/t10k-images-idx3-ubyte.gz" -o "$4/queries.frames"
        return 0
        ;;
    clustered) $PY bench/gen_clustered.py --n "$2" --nq "$3" --dim 128 --out "$4" >&2 ;;
    fmnist-proj256) $PY bench/fmnist_to_fvecs.py --n-base "$2" --n-queries "$3" --project 256 --out "$4" >&2 ;;
    text-cosine) $PY bench/text_embed.py --n-base "$2" --n-queries "$3" --out "$4" >&2 ;;
    *) die "unknown data set $1" ;;
    esac
    "$BIN/embed-load" "$4/base.fvecs" -o "$4/base.frames"
    "$BIN/embed-load" "$4/queries.fvecs" -o "$4/queries.frames"
}
