#!/bin/sh
# tests/fuzz/run.sh - build the libFuzzer targets and run each for a while.
#
# usage: sh tests/fuzz/run.sh SECONDS [NAME...]
#   NAME: frame, index, vecio, updates, fanout (default: all of them, one after the other)
#
# Every target is tests/fuzz/fuzz_NAME.c; it is linked with libcommon compiled
# by clang with -fsanitize=fuzzer-no-link,address,undefined into build/fuzz
# (objects are rebuilt only when a source or header is newer). Each target
# runs on a COPY of tests/fuzz/corpus/NAME in a temporary directory, so the
# committed corpus never grows; crash inputs land in build/fuzz/artifacts/.
# Prints "fuzz ok NAME (N execs)" or "fuzz FAILED NAME" per target (the
# lines tests/run.sh counts) and exits non-zero when any failed.
# FUZZ_BUILD overrides build/fuzz; FUZZ_KEEP_LOGS=1 keeps the full logs there.
set -u
secs=${1:-5}
shift 2>/dev/null || true
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
out=${FUZZ_BUILD:-build/fuzz}
CLANG=${CLANG:-clang}
names=${*:-frame index vecio updates fanout}

if ! command -v "$CLANG" >/dev/null 2>&1; then
    echo "fuzz: $CLANG not found (apt-get install clang libclang-rt-14-dev, or make deps)"
    echo "fuzz FAILED toolchain"
    exit 1
fi

mkdir -p "$out/obj" "$out/artifacts"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS="-O1 -g -std=c11 -D_GNU_SOURCE -pthread -Ilibcommon $(pkg-config --cflags hdf5 libzmq msgpack openblas 2>/dev/null)"
LIBS="$(pkg-config --libs hdf5 libzmq msgpack openblas 2>/dev/null) -lmsgpackc -lzmq -lopenblas -lz -lm -pthread"

build() {
    # newest header: any change to one rebuilds every object
    hdr=$(ls -t libcommon/*.h | head -1)
    stale=""
    for src in libcommon/*.c; do
        obj="$out/obj/$(basename "$src" .c).o"
        if [ ! -e "$obj" ] || [ "$src" -nt "$obj" ] || [ "$hdr" -nt "$obj" ]; then
            stale="$stale $src"
        fi
    done
    if [ -n "$stale" ]; then
        # shellcheck disable=SC2086
        printf '%s\n' $stale | xargs -P "$(nproc)" -I{} sh -c \
            'o="$1/obj/$(basename "$2" .c).o"; '"$CLANG"' '"$CFLAGS $SAN"' -fsanitize=fuzzer-no-link -c -o "$o" "$2" || { rm -f "$o"; exit 1; }' \
            sh "$out" {} || return 1
        rm -f "$out/libcommon_fuzz.a"
    fi
    if [ ! -e "$out/libcommon_fuzz.a" ]; then
        ar rcs "$out/libcommon_fuzz.a" "$out"/obj/*.o || return 1
    fi
    for n in $names; do
        src="tests/fuzz/fuzz_$n.c"
        bin="$out/fuzz_$n"
        if [ ! -e "$bin" ] || [ "$src" -nt "$bin" ] || [ "$out/libcommon_fuzz.a" -nt "$bin" ]; then
            # shellcheck disable=SC2086
            $CLANG $CFLAGS $SAN -fsanitize=fuzzer -o "$bin" "$src" "$out/libcommon_fuzz.a" $LIBS || return 1
        fi
    done
}

# Two runs at once (make fuzz beside make test) must not compile over each other.
exec 9>"$out/.lock"
command -v flock >/dev/null 2>&1 && flock 9
if ! build >"$out/build.log" 2>&1; then
    cat "$out/build.log"
    echo "fuzz: build with $CLANG failed (is libclang-rt-14-dev installed?)"
    echo "fuzz FAILED toolchain"
    exit 1
fi
command -v flock >/dev/null 2>&1 && flock -u 9

failed=0
for n in $names; do
    if [ ! -d "tests/fuzz/corpus/$n" ]; then
        echo "fuzz: no seed corpus tests/fuzz/corpus/$n"
        echo "fuzz FAILED $n"
        failed=1
        continue
    fi
    work=$(mktemp -d)
    cp tests/fuzz/corpus/"$n"/* "$work"/ 2>/dev/null
    log="$out/fuzz_$n.log"
    # leaks are bugs too; a fuzzer given a 2 GB RSS limit reports a crash on
    # any single malloc above that, so an unbounded allocation is a failure
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
        "$out/fuzz_$n" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$out/artifacts/$n-" -print_final_stats=1 "$work" >"$log" 2>&1
    rc=$?
    rm -rf "$work"
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    if [ "$rc" -eq 0 ] && ! grep -q 'ERROR: \(AddressSanitizer\|LeakSanitizer\|libFuzzer\)\|runtime error:' "$log"; then
        echo "fuzz ok $n (${execs:-0} execs, ${secs} s)"
    else
        grep -n 'ERROR\|runtime error\|SUMMARY\|Test unit written\|#[0-9]* 0x' "$log" | head -40
        echo "fuzz: full log in $log"
        echo "fuzz FAILED $n"
        failed=1
    fi
done
exit "$failed"
