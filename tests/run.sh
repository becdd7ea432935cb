#!/bin/sh
# tests/run.sh - run every C unit test binary (cmocka) and every bats suite,
# then print one line "N passed, N failed" summing all of them.
# Called by `make test` with BUILD and BIN set; exits non-zero on any failure.
#
# Suites, in order, all summed into the one final line:
#   1. unit + bats against BUILD/BIN (the normal build);
#   2. when ASAN_BUILD and ASAN_BIN are set: unit + bats again against the
#      ASan/UBSan build there (`make test` sets them; `make test-asan` runs
#      only this suite, passing BUILD=ASAN_BUILD and SUITE=asan). Sanitizer
#      reports go to per-process log files; any report fails the suite, so a
#      leak on a happy path (or anywhere) is a failure even when the test
#      itself passed; HF_SUITE=asan tells the bats files (tests/slurm.bats
#      skips itself there, saying why);
#   1b. the Python package's pytest suite (tests/python) against BIN;
#   3. the fuzz smoke run, tests/fuzz/run.sh FUZZ_SMOKE_SECONDS (default 5;
#      0 skips it).
BUILD=${BUILD:-build}
BIN=${BIN:-bin}
pass=0
fail=0
log=$(mktemp)
sanlogs=$(mktemp -d)
trap 'rm -rf "$log" "$sanlogs"' EXIT

# run_suite BUILD BIN LABEL : unit binaries of BUILD, then tests/*.bats with BIN
run_suite() {
    BUILD=$1
    BIN=$2
    export BIN BUILD
    echo "== $3 suite: unit tests in $BUILD/tests, bats with BIN=$BIN"
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
        # a skipped test ("ok N ... # skip why") is neither passed nor failed
        s=$(grep -c '^ok .* # skip' "$log")
        p=$(($(grep -c '^ok ' "$log") - s))
        f=$(grep -c '^not ok ' "$log")
        planned=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' "$log" | head -1)
        # tests that never reported (bats died) are failures too
        if [ -n "$planned" ] && [ $((p + f + s)) -lt "$planned" ]; then
            f=$((planned - p - s))
        fi
        [ "$s" -eq 0 ] || echo "bats: $s skipped (not counted), each with its reason above"
        pass=$((pass + p))
        fail=$((fail + f))
    fi
}

# run_pytest BIN : the Python package's tests (tests/python), normal suite only
# (the filters are the same; the ASan build would time the throughput test)
run_pytest() {
    [ -d tests/python ] || return 0
    echo "== python suite: pytest-3 tests/python with BIN=$1"
    BIN=$1 pytest-3 -q -p no:cacheprovider tests/python >"$log" 2>&1
    rc=$?
    cat "$log"
    last=$(grep -E '[0-9]+ (passed|failed)' "$log" | tail -1)
    p=$(echo "$last" | sed -n 's/.*\b\([0-9][0-9]*\) passed.*/\1/p')
    f=$(echo "$last" | sed -n 's/.*\b\([0-9][0-9]*\) failed.*/\1/p')
    e=$(echo "$last" | sed -n 's/.*\b\([0-9][0-9]*\) error.*/\1/p')
    p=${p:-0}
    f=$((${f:-0} + ${e:-0}))
    # pytest that died or collected nothing still counts as a failure
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "pytest exited with status $rc"
        f=1
    fi
    pass=$((pass + p))
    fail=$((fail + f))
}

# run_asan_suite BUILD BIN : run_suite with sanitizer reports collected
run_asan_suite() {
    rm -f "$sanlogs"/*
    # log_path: reports land in files, so they cannot disturb the tests'
    # stderr checks, and are counted below even when a test passed anyway
    ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:log_path=$sanlogs/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$sanlogs/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}" \
        LSAN_OPTIONS="${LSAN_OPTIONS:-}" HF_SUITE=asan \
        run_suite "$1" "$2" "ASan/UBSan"
    n=$(ls "$sanlogs" | wc -l)
    if [ "$n" -gt 0 ]; then
        echo "sanitizer reports ($n processes):"
        for r in "$sanlogs"/*; do
            echo "--- $r"
            head -60 "$r"
        done
        echo "not ok sanitizers: $n reports"
        fail=$((fail + 1))
    else
        echo "ok sanitizers: no ASan, LeakSanitizer or UBSan report in the $2 run"
        pass=$((pass + 1))
    fi
}

if [ "${SUITE:-}" = asan ]; then
    run_asan_suite "$BUILD" "$BIN"
else
    run_suite "$BUILD" "$BIN" normal
    run_pytest "$BIN"
    if [ -n "${ASAN_BUILD:-}" ] && [ -n "${ASAN_BIN:-}" ]; then
        run_asan_suite "$ASAN_BUILD" "$ASAN_BIN"
    fi
fi

secs=${FUZZ_SMOKE_SECONDS:-5}
if [ "$secs" != 0 ] && [ -f tests/fuzz/run.sh ]; then
    echo "== fuzz smoke: every target for $secs s"
    sh tests/fuzz/run.sh "$secs" >"$log" 2>&1
    rc=$?
    cat "$log"
    p=$(grep -c '^fuzz ok ' "$log")
    f=$(grep -c '^fuzz FAILED ' "$log")
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    pass=$((pass + p))
    fail=$((fail + f))
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
