#!/usr/bin/env bats
# embed-load: vector files in, a vector frame stream out.

load helpers

setup_file() {
    need_bins embed-load
    $GEN -n 1500 -d 12 --seed 3 "$FIX/base.npy"
    $GEN -n 1500 -d 12 --seed 3 "$FIX/base.fvecs"
    $GEN -n 1500 -d 12 --seed 3 "$FIX/base.csv"
}

# rows_equal STREAM REF.npy [OFFSET LIMIT NORMALIZE] : the stream's rows equal
# REF[OFFSET:OFFSET+LIMIT] (optionally normalised), the header's dim matches.
rows_equal() {
    frames_to_npy "$1" "$BATS_TEST_TMPDIR/got.npy"
    $PY - "$BATS_TEST_TMPDIR/got.npy" "$2" "${3:-0}" "${4:--1}" "${5:-0}" <<'EOF'
import sys, numpy as np
got, ref = np.load(sys.argv[1]), np.load(sys.argv[2])
off, lim, norm = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ref = ref[off:] if lim < 0 else ref[off:off + lim]
if norm:
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
if got.shape != ref.shape:
    sys.exit(f"shape {got.shape}, expected {ref.shape}")
if norm:
    ok = np.allclose(got, ref, rtol=1e-5, atol=1e-6)
else:
    ok = np.array_equal(got, ref)
if not ok:
    sys.exit(f"values differ, max abs diff {np.abs(got - ref).max()}")
EOF
}

@test "embed-load --help exits 0 and prints usage" {
    run "$BIN/embed-load" --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"usage: embed-load"* ]]
}

@test "embed-load with an unknown option exits 64" {
    run "$BIN/embed-load" --no-such-option "$FIX/base.npy"
    [ "$status" -eq 64 ]
}

@test "embed-load with an unknown --format exits 64" {
    run "$BIN/embed-load" --format nosuch "$FIX/base.npy"
    [ "$status" -eq 64 ]
}

@test "embed-load reads fvecs into a valid stream with the same rows" {
    run "$BIN/embed-load" -o "$BATS_TEST_TMPDIR/out.frames" "$FIX/base.fvecs"
    [ "$status" -eq 0 ]
    validate --expect vectors "$BATS_TEST_TMPDIR/out.frames"
    rows_equal "$BATS_TEST_TMPDIR/out.frames" "$FIX/base.npy"
}

@test "embed-load reads npy into a valid stream with the same rows and a header count" {
    "$BIN/embed-load" "$FIX/base.npy" >"$BATS_TEST_TMPDIR/out.frames"
    validate --expect vectors "$BATS_TEST_TMPDIR/out.frames"
    rows_equal "$BATS_TEST_TMPDIR/out.frames" "$FIX/base.npy"
    run show_frames "$BATS_TEST_TMPDIR/out.frames"
    [[ "${lines[0]}" == *'"dim": 12'* ]]
    [[ "${lines[0]}" == *'"count": 1500'* ]]
    [[ "${lines[-1]}" == *'"count": 1500'* ]]
}

@test "embed-load reads csv into a valid stream with the same rows" {
    "$BIN/embed-load" "$FIX/base.csv" >"$BATS_TEST_TMPDIR/out.frames"
    validate --expect vectors "$BATS_TEST_TMPDIR/out.frames"
    rows_equal "$BATS_TEST_TMPDIR/out.frames" "$FIX/base.npy"
}

@test "embed-load reads fvecs from stdin (auto-detected)" {
    "$BIN/embed-load" <"$FIX/base.fvecs" >"$BATS_TEST_TMPDIR/out.frames"
    validate "$BATS_TEST_TMPDIR/out.frames"
    rows_equal "$BATS_TEST_TMPDIR/out.frames" "$FIX/base.npy"
}

@test "embed-load reads gzipped MNIST idx with --limit: 784-dim rows equal the pixel bytes" {
    [ -r "$MNIST" ] || skip "no $MNIST"
    "$BIN/embed-load" --limit 300 "$MNIST" >"$BATS_TEST_TMPDIR/m.frames"
    validate "$BATS_TEST_TMPDIR/m.frames"
    frames_to_npy "$BATS_TEST_TMPDIR/m.frames" "$BATS_TEST_TMPDIR/m.npy"
    $PY - "$BATS_TEST_TMPDIR/m.npy" "$MNIST" <<'EOF'
import sys, gzip, numpy as np
got = np.load(sys.argv[1])
raw = gzip.open(sys.argv[2]).read()
assert raw[:4] == b"\x00\x00\x08\x03", raw[:4]
ref = np.frombuffer(raw[16:16 + 300 * 784], "u1").reshape(300, 784).astype("<f4")
if got.shape != (300, 784) or not np.array_equal(got, ref):
    sys.exit(f"shape {got.shape}; rows differ from the idx pixels")
EOF
}

@test "embed-load --offset/--limit emit exactly that slice, numbered from 0" {
    "$BIN/embed-load" --offset 1030 --limit 40 "$FIX/base.fvecs" >"$BATS_TEST_TMPDIR/s.frames"
    validate "$BATS_TEST_TMPDIR/s.frames"
    rows_equal "$BATS_TEST_TMPDIR/s.frames" "$FIX/base.npy" 1030 40
    "$BIN/embed-load" --offset 1400 --limit 500 "$FIX/base.npy" >"$BATS_TEST_TMPDIR/t.frames"
    validate "$BATS_TEST_TMPDIR/t.frames"
    rows_equal "$BATS_TEST_TMPDIR/t.frames" "$FIX/base.npy" 1400 500
}

@test "embed-load --batch splits the stream into frames of that many rows" {
    "$BIN/embed-load" --batch 100 --limit 250 "$FIX/base.npy" >"$BATS_TEST_TMPDIR/b.frames"
    validate "$BATS_TEST_TMPDIR/b.frames"
    run show_frames "$BATS_TEST_TMPDIR/b.frames"
    [ "${#lines[@]}" -eq 5 ]
    [[ "${lines[3]}" == *'"start": 200, "n": 50'* ]]
}

@test "embed-load --normalize scales every row to unit length" {
    "$BIN/embed-load" --normalize "$FIX/base.npy" >"$BATS_TEST_TMPDIR/n.frames"
    validate "$BATS_TEST_TMPDIR/n.frames"
    rows_equal "$BATS_TEST_TMPDIR/n.frames" "$FIX/base.npy" 0 -1 1
}

@test "embed-load -o writes the file atomically and leaves no temporary" {
    run "$BIN/embed-load" -o "$BATS_TEST_TMPDIR/o.frames" "$FIX/base.npy"
    [ "$status" -eq 0 ]
    [ -s "$BATS_TEST_TMPDIR/o.frames" ]
    [ -z "$(ls "$BATS_TEST_TMPDIR"/o.frames.tmp.* 2>/dev/null)" ]
}

# ---- bad input ----

@test "embed-load fails on a NaN in an fvecs file, naming the row, and leaves no output" {
    $GEN -n 50 -d 8 --nan 17,5 "$BATS_TEST_TMPDIR/nan.fvecs"
    run --separate-stderr "$BIN/embed-load" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/nan.fvecs"
    assert_one_error_line nan.fvecs 'row 17'
    [[ "$stderr" == *NaN* ]]
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "embed-load fails on an Inf in an fvecs file, naming the row, and leaves no output" {
    $GEN -n 1100 -d 8 --inf 1050 "$BATS_TEST_TMPDIR/inf.fvecs"
    run --separate-stderr "$BIN/embed-load" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/inf.fvecs"
    assert_one_error_line inf.fvecs 'row 1050'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "embed-load fails on an empty file and leaves no output" {
    : >"$BATS_TEST_TMPDIR/empty.fvecs"
    run --separate-stderr "$BIN/embed-load" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/empty.fvecs"
    assert_one_error_line empty.fvecs '.'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "embed-load fails on a text file given as --format fvecs and leaves no output" {
    $GEN -f text "$BATS_TEST_TMPDIR/notes.txt"
    run --separate-stderr "$BIN/embed-load" --format fvecs -o "$BATS_TEST_TMPDIR/out" \
        "$BATS_TEST_TMPDIR/notes.txt"
    assert_one_error_line notes.txt '.'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "embed-load fails on random PNG-like binary with auto detection and leaves no output" {
    $GEN -n 64 -d 16 -f bytes "$BATS_TEST_TMPDIR/picture.bin"
    run --separate-stderr "$BIN/embed-load" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/picture.bin"
    assert_one_error_line picture.bin '.'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "embed-load fails on a truncated fvecs file (partial last row) and leaves no output" {
    head -c 1000 "$FIX/base.fvecs" >"$BATS_TEST_TMPDIR/cut.fvecs"
    run --separate-stderr "$BIN/embed-load" -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/cut.fvecs"
    assert_one_error_line cut.fvecs '.'
    assert_no_output "$BATS_TEST_TMPDIR/out"
}

@test "embed-load fails on a missing file with exit 66" {
    run --separate-stderr "$BIN/embed-load" "$BATS_TEST_TMPDIR/nonexistent.fvecs"
    [ "$status" -eq 66 ]
    assert_one_error_line nonexistent.fvecs '.'
}

@test "embed-load: npy float16 and Fortran order give the rows numpy holds (f16 widened exactly)" {
    d=$BATS_TEST_TMPDIR
    $PY -c '
import numpy as np, sys
X = np.random.default_rng(11).standard_normal((301, 7)).astype(np.float32)
np.save(sys.argv[1] + "/c.npy", X)
np.save(sys.argv[1] + "/f.npy", np.asfortranarray(X))
np.save(sys.argv[1] + "/h.npy", X.astype(np.float16))
np.save(sys.argv[1] + "/hf.npy", np.asfortranarray(X.astype(np.float16)))
np.save(sys.argv[1] + "/hwant.npy", X.astype(np.float16).astype(np.float32))
' "$d"
    for f in c f h hf; do
        "$BIN/embed-load" "$d/$f.npy" > "$d/$f.frames"
        frames_to_npy "$d/$f.frames" "$d/$f.out.npy"
    done
    $PY -c '
import numpy as np, sys
d = sys.argv[1]
X, H = np.load(d + "/c.npy"), np.load(d + "/hwant.npy")
assert np.array_equal(np.load(d + "/c.out.npy"), X)
assert np.array_equal(np.load(d + "/f.out.npy"), X)
assert np.array_equal(np.load(d + "/h.out.npy"), H)
assert np.array_equal(np.load(d + "/hf.out.npy"), H)
' "$d"
    # --offset / --limit on a Fortran-order array
    "$BIN/embed-load" --offset 100 --limit 5 "$d/f.npy" > "$d/fl.frames"
    frames_to_npy "$d/fl.frames" "$d/fl.npy"
    $PY -c 'import numpy as np, sys; assert np.array_equal(np.load(sys.argv[1]), np.load(sys.argv[2])[100:105])' "$d/fl.npy" "$d/c.npy"
}

@test "embed-load: a cut Fortran-order npy and a float16 NaN are one line, exit 65, no output" {
    d=$BATS_TEST_TMPDIR
    $PY -c '
import numpy as np, sys
X = np.ones((50, 4), np.float32)
np.save(sys.argv[1] + "/f.npy", np.asfortranarray(X))
b = open(sys.argv[1] + "/f.npy", "rb").read()
open(sys.argv[1] + "/cut.npy", "wb").write(b[:-9])
h = X.astype(np.float16); h[7, 1] = np.nan
np.save(sys.argv[1] + "/hn.npy", h)
' "$d"
    run "$BIN/embed-load" -o "$d/out.frames" "$d/cut.npy"
    [ "$status" -eq 65 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ "$output" == *"npy array truncated"* ]]
    [ ! -e "$d/out.frames" ]
    run "$BIN/embed-load" -o "$d/out.frames" "$d/hn.npy"
    [ "$status" -eq 65 ]
    [[ "$output" == *"row 7: NaN value in column 1"* ]]
    [ ! -e "$d/out.frames" ]
}
