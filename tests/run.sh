#!/bin/sh
# tests/run.sh - run every C unit test binary (cmocka) and every bats suite,
# then print one line "N passed, N failed" summing all of them.
# Called by `make test` with BUILD and BIN set; exits non-zero on any failure.
BUILD=${BUILD:-build}
BIN=${BIN:-bin}
export BIN BUILD
pass=0
fail=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    "$t" >"$log" 2>&1
    rc=$?
    cat "$log"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    # a binary that crashed or failed without a summary still counts as a failure
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "unit test binary $t exited with status $rc"
        f=1
    fi
    pass=$((pass + p))
    fail=$((fail + f))
done

if ls tests/*.bats >/dev/null 2>&1; then
    bats --tap tests/*.bats >"$log" 2>&1
    cat "$log"
    p=$(grep -c '^ok ' "$log")
    f=$(grep -c '^not ok ' "$log")
    planned=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' "$log" | head -1)
    # tests that never reported (bats died) are failures too
    if [ -n "$planned" ] && [ $((p + f)) -lt "$planned" ]; then
        f=$((planned - p))
    fi
    pass=$((pass + p))
    fail=$((fail + f))
fi

if [ -x tests/fuzz/run.sh ] || [ -f tests/fuzz/run.sh ]; then
    if sh tests/fuzz/run.sh "${FUZZ_SMOKE_SECONDS:-5}" >"$log" 2>&1; then
        cat "$log"
        p=$(grep -c '^fuzz ok ' "$log")
        f=$(grep -c '^fuzz FAILED ' "$log")
    else
        cat "$log"
        p=$(grep -c '^fuzz ok ' "$log")
        f=$(grep -c '^fuzz FAILED ' "$log")
        [ "$f" -eq 0 ] && f=1
    fi
    pass=$((pass + p))
    fail=$((fail + f))
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
