#!/bin/sh
# bench/run.sh - recall@10 against QPS for hnswflow, hnswlib, FAISS and USearch in one run.
#
# Called by `make bench` from the repository root after `make` has built bin/*.
# For each data set (Fashion-MNIST, a generated SIFT-like clustered set,
# Fashion-MNIST randomly projected to 256 real-valued dimensions, and with
# DATASETS naming it, text-cosine: TF-IDF + SVD text embeddings, cosine):
#   1. make the data (cached under bench/data/<set>-<n>-<nq>/),
#   2. build our index with bin/graph-build (build time: the construction
#      graph-build reports, the analogue of the peers' add calls; the wall
#      time of the whole load | build | save pipe is kept beside it),
#   3. exact ground truth with `bin/query --exact` (cached; redone when
#      bin/query is newer than the cached file),
#   4. query our index REPEAT times per ef, the passes interleaved across
#      the sweep (median QPS and mean distance
#      computations from bin/query's summary line; every pass must give the
#      same bytes),
#   5. run the peer drivers (bench/peers/*.cpp, compiled here into
#      $BUILD/bench/; bench/peers/usearch_run.mjs under Node, with the npm
#      package usearch installed into $BUILD/bench/usearch-npm on first use),
#      which build with THREADS threads and query one at a time on one thread,
#   6. score every engine and ef with bin/recall against the ground truth,
#   7. time `query --threads` 1 against nproc on one batch (<set>-threads.csv),
# then writes <set>.csv and <set>.png and one summary.md (bench/report.py).
#
# Environment:
#   QUICK=1       quick mode: small subsets, fewer efs (a few minutes on 2 cores);
#                 results go to bench/results/quick/ so full results stay intact
#   THREADS=T     build threads for all engines (default: nproc)
#   EFS=a,b,...   override the ef sweep
#   REPEAT=R      timed passes per ef for hnswflow, hnswflow-int8, hnswlib and usearch,
#                 median reported (default 3; 1 in quick mode); hnswflow-pq8
#                 and faiss, far from the targets and slow, get REPEAT_SLOW (1)
#   DATASETS="fashion-mnist clustered fmnist-proj256 text-cosine"   which sets to run
#   ENGINES="hnswflow hnswflow-speed hnswflow-int8 hnswflow-pq8 hnswlib faiss usearch"
#                 which engines to run (the thread-scaling step runs with hnswflow)
#   BIN=bin BUILD=build                  where the filters are / peers are built
#   USEARCH_DIR=DIR USEARCH_VERSION=V    npm prefix and version of the usearch peer
#                 (default $BUILD/bench/usearch-npm, 2.25.3)
#   RES=DIR       where results go (default bench/results, quick: bench/results/quick)
# Every run writes results to temporary names and renames them, so an
# interrupted run leaves the previous results in place.
set -eu

PY=/usr/bin/python3 # the system one has numpy and msgpack
BIN=${BIN:-bin}
BUILD=${BUILD:-build}
QUICK=${QUICK:-0}
THREADS=${THREADS:-$(nproc)}
K=10
RERANK=${RERANK:-20}
RERANK_PQ=${RERANK_PQ:-50}
REPEAT_SLOW=${REPEAT_SLOW:-1}
THREAD_EF=${THREAD_EF:-64}
M=16
EFC=200
DATASETS=${DATASETS:-"fashion-mnist clustered fmnist-proj256 text-cosine"}
ENGINES=${ENGINES:-"hnswflow hnswflow-speed hnswflow-int8 hnswflow-pq8 hnswlib faiss usearch"}
# want ENGINE: whether ENGINES names it
want() { case " $ENGINES " in *" $1 "*) return 0 ;; *) return 1 ;; esac }
DATA=bench/data
PEERBIN=$BUILD/bench

if [ "$QUICK" = 1 ]; then
    RES=${RES:-bench/results/quick}
    REPEAT=${REPEAT:-1}
    EFS=${EFS:-10,16,24,32,48,64,128,256,512}
    FM_N=20000 FM_NQ=1000 CL_N=50000 CL_NQ=1000
else
    RES=${RES:-bench/results}
    REPEAT=${REPEAT:-3}
    # dense at small ef, where Fashion-MNIST crosses 0.90 and 0.95
    EFS=${EFS:-10,12,14,16,20,24,32,40,48,64,96,128,192,256,384,512,768}
    FM_N=60000 FM_NQ=10000 CL_N=200000 CL_NQ=10000
fi

say() { echo "bench: $*" >&2; }
# newer A B: A exists and was modified after B (POSIX has no test -nt)
newer() { [ -e "$1" ] && [ -n "$(find "$1" -prune -newer "$2" 2>/dev/null)" ]; }
die() {
    echo "bench: $*" >&2
    exit 1
}

for t in embed-load graph-build query recall; do
    [ -x "$BIN/$t" ] || die "$BIN/$t is missing; run make first"
done
command -v gnuplot >/dev/null 2>&1 || die "gnuplot is missing (make deps)"
$PY -c 'import numpy, msgpack' 2>/dev/null || die "$PY lacks numpy or msgpack (make deps)"

# --- peers -----------------------------------------------------------------
mkdir -p "$PEERBIN" "$RES"
build_peer() { # name, extra flags...
    name=$1
    shift
    src=bench/peers/$name.cpp
    out=$PEERBIN/$name
    if [ ! -x "$out" ] || newer "$src" "$out" || newer bench/peers/peer_common.h "$out"; then
        say "compiling $src"
        g++ -O3 -march=native -std=c++17 -o "$out.tmp" "$src" "$@" -lmsgpackc -lz -pthread || die "cannot compile $src"
        mv "$out.tmp" "$out"
    fi
}
build_peer hnswlib_run
build_peer faiss_run -fopenmp -lfaiss -lopenblas

# usearch: the npm package (a prebuilt native addon, driven from Node by
# bench/peers/usearch_run.mjs), installed once under $USEARCH_DIR (in the
# gitignored build tree). Without node/npm or the registry the engine is
# skipped with one line saying why; the rest of the bench runs.
USEARCH_DIR=${USEARCH_DIR:-$BUILD/bench/usearch-npm}
USEARCH_VERSION=${USEARCH_VERSION:-2.25.3}
drop_engine() { ENGINES=$(echo " $ENGINES " | sed "s/ $1 / /g"); }
if want usearch; then
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        say "usearch: skipped (node and npm are needed: apt-get install nodejs npm)"
        drop_engine usearch
    elif ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; then
        say "usearch: skipped (the usearch package needs Node >= 20, this is $(node --version))"
        drop_engine usearch
    elif [ ! -s "$USEARCH_DIR/node_modules/usearch/package.json" ]; then
        say "installing npm package usearch@$USEARCH_VERSION into $USEARCH_DIR"
        mkdir -p "$USEARCH_DIR"
        if ! npm install --prefix "$USEARCH_DIR" --no-audit --no-fund --loglevel=error \
            "usearch@$USEARCH_VERSION" >"$USEARCH_DIR/npm-install.log" 2>&1; then
            say "usearch: skipped (npm install usearch@$USEARCH_VERSION failed, registry unreachable? see $USEARCH_DIR/npm-install.log)"
            drop_engine usearch
        fi
    fi
fi
if want usearch; then
    USEARCH_INSTALLED=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$USEARCH_DIR/node_modules/usearch/package.json" | head -n 1)
    say "usearch: npm package $USEARCH_INSTALLED under $USEARCH_DIR, node $(node --version)"
fi

# the memory-bandwidth probe (bench/bandwidth.c, built by make into
# $BIN/bandwidth): one core's sequential, random-block and pointer-chase
# figures, once per run, for the summary's bandwidth table
BW=$RES/bandwidth.json
if [ -x "$BIN/bandwidth" ]; then
    say "memory-bandwidth probe ($BIN/bandwidth, one core, 1 GiB)"
    "$BIN/bandwidth" >"$BW.tmp" || die "$BIN/bandwidth failed"
    mv "$BW.tmp" "$BW"
    say "probe: $(tr -d '\n' <"$BW")"
else
    say "$BIN/bandwidth is missing (make builds it): no bandwidth table"
    BW=""
fi

# no commas, quotes, | or & in it: it goes into a CSV field through sed
MACHINE=$(echo "$(uname -n) / $(sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo | head -n 1) / $(nproc) cpus" | tr -d '",|&')
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
efs_words=$(echo "$EFS" | tr ',' ' ')

# make_data SET DIR: writes DIR/base.fvecs and DIR/queries.fvecs unless cached
make_data() {
    if [ -s "$2/base.fvecs" ] && [ -s "$2/queries.fvecs" ]; then
        return 0
    fi
    case $1 in
    fashion-mnist) $PY bench/fmnist_to_fvecs.py --n-base "$FM_N" --n-queries "$FM_NQ" --out "$2" >&2 ;;
    clustered) $PY bench/gen_clustered.py -n "$CL_N" --nq "$CL_NQ" --out "$2" >&2 ;;
    fmnist-proj256) $PY bench/fmnist_to_fvecs.py --n-base "$FM_N" --n-queries "$FM_NQ" --project 256 --out "$2" >&2 ;;
    text-cosine) $PY bench/text_embed.py --n-base "$FM_N" --n-queries "$FM_NQ" --out "$2" >&2 ;;
    *) die "unknown data set $1" ;;
    esac
}

# recall_of FRAMES: prints the recall@K figure of one result stream
recall_of() {
    "$BIN/recall" --gt "$GT" "$1" | awk '/^recall@/ { print $2; found = 1 } END { if (!found) exit 1 }' ||
        die "bin/recall gave no recall line for $1"
}

# median of the numbers on stdin, one a line
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

# run_ours ENGINE REPEATS BUILD_FLAGS [QUERY_FLAGS]: build our index with
# extra graph-build flags and sweep ef; memory is the index memory
# graph-build reports (for compressed engines: traversal memory, codes +
# links).
run_ours() {
    engine=$1
    reps=$2
    bflags=$3
    qflags=${4:-}
    t0=$(now)
    # shellcheck disable=SC2086 # flags are words
    "$BIN/embed-load" "$dir/base.fvecs" |
        "$BIN/graph-build" -M "$M" --ef-construction "$EFC" --threads "$THREADS" --metric "$metric" $bflags \
            -o "$run/$engine.idx" 2>"$run/$engine.build.log" ||
        die "$label: graph-build failed for $engine (see $run/$engine.build.log)"
    pipe_s=$(elapsed "$t0" "$(now)")
    # graph-build: ... threads 2: built in 10.41 s, 5 levels, ...
    build_s=$(sed -n 's/.*: built in \([0-9.]*\) s.*/\1/p' "$run/$engine.build.log")
    [ -n "$build_s" ] || die "$label: no build time from graph-build (see $run/$engine.build.log)"
    mem=$(sed -n 's/.*traversal memory \([0-9.]*\) MiB.*/\1/p' "$run/$engine.build.log")
    [ -n "$mem" ] || mem=$(sed -n 's/.* levels, \([0-9.]*\) MiB.*/\1/p' "$run/$engine.build.log")
    # the speed layout: its rows come on top of the index (query keeps both)
    rows_mem=$(sed -n 's/.*speed rows [0-9]* B\/node, \([0-9.]*\) MiB.*/\1/p' "$run/$engine.build.log")
    [ -z "$rows_mem" ] || mem=$(awk -v a="$mem" -v b="$rows_mem" 'BEGIN { print a + b }')
    mem=$(awk -v m="$mem" 'BEGIN { printf "%d", m * 1048576 }')
    # compressed engines: traversal memory as a fraction of the f32 vectors
    vsf=$(sed -n 's/.*(\([0-9.]*\)x of f32 vectors).*/\1/p' "$run/$engine.build.log")
    # bytes a search reads (bench/README.md, "Bandwidth"): per distance
    # computation, per hop (an expanded node's list or row), per query
    m0=$(sed -n 's/.* M0 \([0-9]*\),.*/\1/p' "$run/$engine.build.log")
    [ -n "$m0" ] || m0=$((2 * M))
    vecb=$((dim * 4)) hopb=$((4 + m0 * 4)) fixb=0
    case $engine in
    hnswflow-speed)
        vecb=0
        hopb=$(sed -n 's/.*speed rows \([0-9]*\) B\/node.*/\1/p' "$run/$engine.build.log")
        ;;
    hnswflow-int8 | hnswflow-pq8)
        vecb=$(sed -n 's/.* codes \([0-9]*\) B\/vector.*/\1/p' "$run/$engine.build.log")
        # bit-packed level-0 list: M0 links of bits(n) at most, and its offset
        hopb=$(awk -v n="$n" -v m0="$m0" 'BEGIN { b = 1; while (2 ^ b < n) b++; printf "%d", int((m0 * b + 7) / 8) + 8 }')
        fixb=$(echo "$qflags" | awk -v d="$dim" '{ for (i = 1; i < NF; i++) if ($i == "--rerank") printf "%d", $(i + 1) * d * 4 }')
        ;;
    esac
    say "$label: $engine build ${build_s}s (whole pipe ${pipe_s}s), memory $mem bytes"
    # passes interleaved across the sweep (see bench/README.md): every ef
    # once, then again; pass 1 keeps its answers, later ones must match
    for ef in $efs_words; do
        : >"$run/$engine.ef$ef.log"
    done
    for r in $(seq "$reps"); do
        for ef in $efs_words; do
            out=$run/$engine.ef$ef.frames
            log=$run/$engine.ef$ef.log
            o=$out
            [ "$r" = 1 ] || o=$out.again
            # shellcheck disable=SC2086
            "$BIN/embed-load" "$dir/queries.fvecs" |
                "$BIN/query" --index "$run/$engine.idx" -k "$K" --ef "$ef" $qflags >"$o" 2>>"$log" ||
                die "$label: $engine query --ef $ef failed (see $log)"
            [ "$r" = 1 ] || cmp -s "$out" "$o" || die "$label: $engine ef=$ef: pass $r answered differently"
            rm -f "$out.again"
        done
    done
    for ef in $efs_words; do
        out=$run/$engine.ef$ef.frames
        log=$run/$engine.ef$ef.log
        # query: 10000 queries, 1.234 s, 8103.4 QPS, 812.3 mean distance computations
        summary=$(grep '^query: .* QPS' "$log" | tail -n 1)
        [ -n "$summary" ] || die "$label: no summary line from bin/query (see $log)"
        qps=$(grep '^query: .* QPS' "$log" | sed -n 's/.*, *\([0-9.eE+-]*\) QPS.*/\1/p' | median)
        mdist=$(echo "$summary" | sed -n 's/.*, *\([0-9.eE+-]*\) mean distance computations.*/\1/p')
        hops=$(echo "$summary" | sed -n 's/.*, *\([0-9.eE+-]*\) mean hops.*/\1/p')
        rec=$(recall_of "$out")
        echo "$engine,$ef,$rec,$qps,$mdist,$build_s,$mem,$vsf,$pipe_s,$hops,$vecb,$hopb,$fixb" >>"$rows"
        say "$label: $engine ef=$ef recall=$rec qps=$qps (median of $reps) mean_dist=$mdist"
        rm -f "$out"
    done
}

# thread_scaling: QPS of `query --threads T` on the f32 index at ef
# THREAD_EF for T = 1 and T = nproc (at least 2), REPEAT passes each
# alternating, medians into <set>-threads.csv
thread_scaling() {
    tmax=$(nproc)
    [ "$tmax" -ge 2 ] || tmax=2
    tlog=$run/threads.log
    : >"$tlog"
    for r in $(seq "$REPEAT"); do
        for t in 1 "$tmax"; do
            "$BIN/embed-load" "$dir/queries.fvecs" |
                "$BIN/query" --index "$run/hnswflow.idx" -k "$K" --ef "$THREAD_EF" --threads "$t" \
                    >/dev/null 2>"$tlog.one" || die "$label: query --threads $t failed (see $tlog.one)"
            sed -n "s/^query: .*, *\([0-9.eE+-]*\) QPS.*/$t \1/p" "$tlog.one" >>"$tlog"
        done
    done
    q1=$(awk '$1 == 1 { print $2 }' "$tlog" | median)
    qn=$(awk -v t="$tmax" '$1 == t { print $2 }' "$tlog" | median)
    {
        echo "ef,threads,qps,machine,date"
        echo "$THREAD_EF,1,$q1,\"$MACHINE\",$DATE"
        echo "$THREAD_EF,$tmax,$qn,\"$MACHINE\",$DATE"
    } >"$RES/$label-threads.csv.tmp"
    mv "$RES/$label-threads.csv.tmp" "$RES/$label-threads.csv"
    say "$label: query --threads 1: $q1 QPS, --threads $tmax: $qn QPS (ef $THREAD_EF, median of $REPEAT)"
}

run_set() {
    set_name=$1
    case $set_name in
    fashion-mnist | fmnist-proj256) n=$FM_N nq=$FM_NQ metric=l2 ;;
    text-cosine) n=$FM_N nq=$FM_NQ metric=cosine ;;
    clustered) n=$CL_N nq=$CL_NQ metric=l2 ;;
    *) die "unknown data set $set_name" ;;
    esac
    dir=$DATA/$set_name-$n-$nq
    run=$dir/run
    label=$set_name
    [ "$QUICK" = 1 ] && label=$set_name-quick
    mkdir -p "$run"
    make_data "$set_name" "$dir"
    # fvecs: every row opens with its dimension as an int32
    dim=$(od -An -t d4 -N4 "$dir/base.fvecs" | tr -d ' ')
    say "$label: $n base, $nq queries, efs $EFS, $THREADS build threads"

    rows=$run/rows.csv
    : >"$rows"

    # ground truth (exact), cached next to the data; computed from a plain
    # build so it does not depend on any engine's graph
    GT=$dir/gt.frames
    if [ ! -s "$GT" ] || newer "$BIN/query" "$GT" || newer "$dir/base.fvecs" "$GT"; then
        say "$label: exact ground truth"
        "$BIN/embed-load" "$dir/base.fvecs" | "$BIN/graph-build" -M 2 --ef-construction 1 --metric "$metric" -o "$run/flat.idx" 2>/dev/null ||
            die "$label: flat index failed"
        "$BIN/embed-load" "$dir/queries.fvecs" |
            "$BIN/query" --index "$run/flat.idx" --exact -k "$K" >"$GT.tmp" || die "$label: exact query failed"
        mv "$GT.tmp" "$GT"
        rm -f "$run/flat.idx"
    fi

    # ours, once per configuration: f32 traversal, and traversal on int8 or
    # pq8 codes with exact re-ranking of the best RERANK / RERANK_PQ candidates
    ! want hnswflow || run_ours hnswflow "$REPEAT" ""
    # the row layout: neighbour codes in each node's row, exact answers
    ! want hnswflow-speed || run_ours hnswflow-speed "$REPEAT" "--preset speed"
    ! want hnswflow-int8 || run_ours hnswflow-int8 "$REPEAT" "--compress int8" "--rerank $RERANK"
    ! want hnswflow-pq8 || run_ours hnswflow-pq8 "$REPEAT_SLOW" "--compress pq8" "--rerank $RERANK_PQ"
    ! want hnswflow || thread_scaling

    # peers: one process each, building once and sweeping every ef
    for engine in hnswlib faiss usearch; do
        want "$engine" || continue
        reps=$REPEAT
        [ "$engine" = faiss ] && reps=$REPEAT_SLOW
        say "$label: $engine build + sweep"
        # usearch: the same options to a Node script (--expose-gc: it drops
        # each ef's loaded index before loading the next)
        set -- "$PEERBIN/${engine}_run"
        [ "$engine" = usearch ] && set -- node --expose-gc bench/peers/usearch_run.mjs --usearch-dir "$USEARCH_DIR"
        "$@" --base "$dir/base.fvecs" --queries "$dir/queries.fvecs" -M "$M" --metric "$metric" \
            --ef-construction "$EFC" --threads "$THREADS" --k "$K" --efs "$EFS" --repeat "$reps" \
            --out-prefix "$run/$engine" >"$run/$engine.log" || die "$label: $engine failed"
        while read -r line; do
            ef=$(echo "$line" | sed -n 's/.* ef=\([0-9]*\).*/\1/p')
            qps=$(echo "$line" | sed -n 's/.* qps=\([0-9.]*\).*/\1/p')
            mdist=$(echo "$line" | sed -n 's/.* mean_dist=\([0-9.]*\).*/\1/p')
            bs=$(echo "$line" | sed -n 's/.* build_s=\([0-9.]*\).*/\1/p')
            mem=$(echo "$line" | sed -n 's/.* mem_bytes=\([0-9-]*\).*/\1/p')
            hops=$(echo "$line" | sed -n 's/.* hops=\([0-9.]*\).*/\1/p')
            [ -n "$ef" ] || continue
            rec=$(recall_of "$run/$engine.ef$ef.frames")
            # read sizes for the bandwidth estimate: hnswlib and faiss read
            # one f32 vector a distance; hnswlib's level-0 list is a count
            # and M0 ids (faiss does not count hops: its estimate is a lower
            # bound); usearch counts nothing through its JS API
            vecb="" hopb=""
            case $engine in
            hnswlib) vecb=$((dim * 4)) hopb=$((4 + 8 * M)) ;;
            faiss) vecb=$((dim * 4)) ;;
            esac
            echo "$engine,$ef,$rec,$qps,$mdist,$bs,$mem,,,$hops,$vecb,$hopb,0" >>"$rows"
            say "$label: $engine ef=$ef recall=$rec qps=$qps mean_dist=$mdist"
        done <"$run/$engine.log"
    done

    csv=$RES/$label.csv
    {
        echo "engine,ef,recall,qps,mean_dist,build_s,mem_bytes,mem_vs_f32,pipe_s,hops,vec_read_bytes,hop_read_bytes,query_read_bytes,machine,date"
        sed "s|\$|,\"$MACHINE\",$DATE|" "$rows"
    } >"$csv.tmp"
    mv "$csv.tmp" "$csv"
    gnuplot -e "csv='$csv'; png='$RES/$label.png.tmp'; ttl='$label: recall@$K vs QPS (1 query thread)'" \
        bench/plot.gnuplot || die "gnuplot failed for $label"
    mv "$RES/$label.png.tmp" "$RES/$label.png"
    CSVS="$CSVS $csv"
}

CSVS=""
for s in $DATASETS; do
    run_set "$s"
done
# shellcheck disable=SC2086 # CSVS is a list of paths without spaces
$PY bench/report.py --out "$RES/summary.md" ${BW:+--bandwidth "$BW"} $CSVS
say "wrote$CSVS and $RES/summary.md"
