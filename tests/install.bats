#!/usr/bin/env bats
# make install into a temporary prefix, then use it with only that prefix's
# bin/ on PATH: the dispatcher, the README's pipeline, man pages, a C
# program built with pkg-config, the pipeline scripts, the Python package;
# make uninstall removes every file again.

load helpers

setup_file() {
    # installs what BIN holds; the ASan suite's build tree is left alone
    [ "$BIN" = "$REPO/bin" ] || return 0
    P="$BATS_FILE_TMPDIR/prefix"
    export P
    env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS -u BUILD BIN="$BIN" make -C "$REPO" --no-print-directory install \
        PREFIX="$P" > "$BATS_FILE_TMPDIR/install.log" 2>&1
    $GEN -n 2000 -d 16 --seed 5 "$FIX/base.fvecs"
    $GEN -n 50 -d 16 --seed 6 "$FIX/q.fvecs"
}

only_prefix() {
    [ "$BIN" = "$REPO/bin" ] || skip "install runs in the normal suite only"
}

@test "install: hnswflow --help lists every filter; an unknown one exits 64 in one line" {
    only_prefix
    run env PATH="$P/bin" hnswflow --help
    [ "$status" -eq 0 ]
    for f in embed-load graph-build query recall consolidate edge-score layer-route nav-train dump info; do
        [[ "$output" == *"  $f "* ]]
        [ -x "$P/libexec/hnswflow/$f" ]
    done
    run env PATH="$P/bin" hnswflow frobnicate
    [ "$status" -eq 64 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ "$output" == "hnswflow: 'frobnicate' is not a filter"* ]]
    run env PATH="$P/bin" hnswflow
    [ "$status" -eq 64 ]
}

@test "install: the README pipeline runs with only PREFIX/bin on PATH and recall matches bin/" {
    only_prefix
    cd "$BATS_TEST_TMPDIR"
    PATH="$P/bin" /bin/bash -c '
        set -e
        hnswflow embed-load "$1" | hnswflow graph-build -M 16 --ef-construction 100 --threads 1 -o x.idx
        hnswflow embed-load "$2" > q.frames
        hnswflow query --index x.idx --exact -k 10 < q.frames > gt.frames
        hnswflow query --index x.idx -k 10 --ef 64 < q.frames > res.frames
        hnswflow recall --gt gt.frames res.frames > recall.txt
        hnswflow info x.idx > info.txt
        hnswflow dump res.frames > res.json' _ "$FIX/base.fvecs" "$FIX/q.fvecs" 2>/dev/null
    grep -q "^recall@10 " recall.txt
    grep -q "vectors: 2000 (2000 live" info.txt
    [ "$(jq -r .t res.json | grep -c result)" -eq 50 ]
    "$BIN/query" --index x.idx -k 10 --ef 64 < q.frames > res2.frames 2>/dev/null
    cmp <(show_frames res.frames) <(show_frames res2.frames)
}

@test "install: a man page for every filter, from its --help (man -M PREFIX/share/man)" {
    only_prefix
    for f in embed-load graph-build query recall consolidate edge-score layer-route nav-train dump info; do
        run env MANPAGER=cat MANWIDTH=100 man -M "$P/share/man" "hnswflow-$f"
        [ "$status" -eq 0 ]
        [[ "$output" == *"hnswflow-$f - "* ]]
        # an option from the filter's own --help appears in its page
        opt=$("$BIN/$f" --help | grep -o -- '--[a-z][a-z-]*' | grep -v -- '--help' | head -1)
        [[ "$output" == *"$opt"* ]]
    done
    run env PATH="$P/bin:/usr/bin:/bin" MANPAGER=cat hnswflow help query
    [ "$status" -eq 0 ]
    [[ "$output" == *"--serve"* ]]
}

@test "install: pkg-config --cflags --libs hnswflow builds a C program that loads and searches an index" {
    only_prefix
    cd "$BATS_TEST_TMPDIR"
    "$P/bin/hnswflow" embed-load "$FIX/base.fvecs" 2>/dev/null \
        | "$P/bin/hnswflow" graph-build --threads 1 -o x.idx 2>/dev/null
    cc -o example "$REPO/tests/install_example.c" \
        $(PKG_CONFIG_PATH="$P/lib/pkgconfig" pkg-config --cflags --libs hnswflow)
    run ./example x.idx
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 10 ]
    for i in 0 1 2 3 4 5 6 7 8 9; do
        [[ "${lines[$i]}" == "node $i -> nearest $i dist 0" ]]
    done
}

@test "install: the pipeline scripts and the Python package run from the prefix" {
    only_prefix
    cd "$BATS_TEST_TMPDIR"
    PATH="$P/bin:/usr/bin:/bin" sh "$P/share/hnswflow/pipelines/build.sh" "$FIX/base.fvecs" b.idx --threads 1 2>/dev/null
    [ -s b.idx ]
    run env -u HNSWFLOW_EXEC_PATH PYTHONPATH="$P/lib/python3/dist-packages" $PY -c '
import numpy as np, hnswflow
print(hnswflow.exec_path())
with hnswflow.Server("b.idx") as s:
    ids, d = s.search(np.zeros((3, 16), np.float32), k=5)
    print(ids.shape, s.count)'
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = "$P/libexec/hnswflow" ]
    [ "${lines[1]}" = "(3, 5) 2000" ]
}

@test "make uninstall removes every installed file" {
    only_prefix
    [ -n "$(find "$P" -type f)" ]
    env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -C "$REPO" --no-print-directory uninstall PREFIX="$P" > /dev/null
    run find "$P" -type f
    [ -z "$output" ]
    [ ! -e "$P/libexec/hnswflow" ]
}
