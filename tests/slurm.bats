#!/usr/bin/env bats
# The sharded pipelines run by a real Slurm: a one-host cluster started by
# this file (tests/slurm_cluster.sh: munged, slurmctld, slurmd as root, no
# systemd), shard-build.sh under srun and sbatch, shard-serve.sh under srun;
# then two "hosts" made of network namespaces joined by a veth pair, one
# slurmd in each: shard 1 is built and served in the other namespace, and
# the front end (with shard 0) answers a client there.

load helpers

CLUSTER="bash $REPO/tests/slurm_cluster.sh"

# SLURM_SKIP: why the whole file is skipped, if it is. setup_file exports
# it and every test's setup skips with it (a skip inside setup_file itself
# makes this bats report a failed teardown_file). Not assigned at the top:
# the file is sourced again for every test.

setup_file() {
    need_bins embed-load graph-build query recall
    if [ "${HF_SUITE:-}" = asan ]; then
        export SLURM_SKIP="Slurm tests run in the normal suite only: the engine is Debian's Slurm, and the filters it starts are the ones fanout.bats and curve.bats already run under ASan/UBSan"
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        export SLURM_SKIP="the Slurm tests start munged, slurmctld and slurmd: they need root"
        return 0
    fi
    $GEN -n 3000 -d 16 --seed 51 "$FIX/base.npy"
    $GEN -n 100 -d 16 --seed 52 "$FIX/queries.npy"
    "$BIN/embed-load" -o "$FIX/queries.frames" "$FIX/queries.npy"
    "$BIN/embed-load" "$FIX/base.npy" | "$BIN/graph-build" -t 1 -o "$FIX/all.idx" 2>/dev/null
    "$BIN/query" --index "$FIX/all.idx" --exact -o "$FIX/gt" "$FIX/queries.frames" 2>/dev/null
    # the reference: the same shards built without Slurm
    BIN="$BIN" sh "$REPO/pipelines/shard-build.sh" "$FIX/base.npy" 2 "$FIX/local" -t 1 2>/dev/null
    SLURM_TEST_PORT=$(free_port) $CLUSTER start "$FIX/cluster"
}

teardown_file() {
    if [ -d "$FIX/cluster" ]; then $CLUSTER stop "$FIX/cluster"; fi
    if [ -d "$FIX/cluster2" ]; then $CLUSTER stop "$FIX/cluster2"; fi
    if [ -e /run/netns/hfbats-a ]; then ip netns del hfbats-a; fi
    if [ -e /run/netns/hfbats-b ]; then ip netns del hfbats-b; fi
    return 0
}

SERVE_PID=

setup() {
    [ -z "${SLURM_SKIP:-}" ] || skip "$SLURM_SKIP"
}

teardown() {
    if [ -n "$SERVE_PID" ]; then
        kill -TERM "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
    fi
}

slurm_env() {
    export SLURM_CONF="$1/slurm.conf"
}

@test "shard-build.sh under srun -n 2: task SLURM_PROCID builds its shard, the same bytes as without Slurm" {
    slurm_env "$FIX/cluster"
    srun -n 2 env BIN="$BIN" sh "$REPO/pipelines/shard-build.sh" "$FIX/base.npy" 2 "$BATS_TEST_TMPDIR/s" -t 1 2>/dev/null
    cmp "$BATS_TEST_TMPDIR/s/shard-0.idx" "$FIX/local/shard-0.idx"
    cmp "$BATS_TEST_TMPDIR/s/shard-1.idx" "$FIX/local/shard-1.idx"
}

@test "shard-build.sh as an sbatch job (-n 2) runs its own job step; a step of the wrong size is refused" {
    slurm_env "$FIX/cluster"
    sbatch -W -n 2 -o "$BATS_TEST_TMPDIR/job.out" --export=ALL,BIN="$BIN" \
        "$REPO/pipelines/shard-build.sh" "$FIX/base.npy" 2 "$BATS_TEST_TMPDIR/s" -t 1
    cmp "$BATS_TEST_TMPDIR/s/shard-0.idx" "$FIX/local/shard-0.idx"
    cmp "$BATS_TEST_TMPDIR/s/shard-1.idx" "$FIX/local/shard-1.idx"
    run srun -n 3 env BIN="$BIN" sh "$REPO/pipelines/shard-build.sh" "$FIX/base.npy" 2 "$BATS_TEST_TMPDIR/t"
    [ "$status" -ne 0 ]
    [[ "$output" == *"3 tasks for 2 shards"* ]]
}

@test "shard-serve.sh under srun (2 shards x 2 replicas) answers as the union index does" {
    slurm_env "$FIX/cluster"
    local port
    port=$(free_port)
    cp -r "$FIX/local" "$BATS_TEST_TMPDIR/s"
    SRUN=1 REPLICAS=2 FRONT="tcp://127.0.0.1:$port" PORT=$(free_port) ADDR=127.0.0.1 BIN="$BIN" \
        sh "$REPO/pipelines/shard-serve.sh" "$BATS_TEST_TMPDIR/s" 2>"$BATS_TEST_TMPDIR/serve.log" 3>&- &
    SERVE_PID=$!
    wait_for_line "$BATS_TEST_TMPDIR/serve.log" "fan-out serving 2 shards \(4 replicas" 300
    squeue -h -o '%j %T' | grep -q "shard-se.* RUNNING"
    "$BIN/query" --connect "tcp://127.0.0.1:$port" -o "$BATS_TEST_TMPDIR/r" "$FIX/queries.frames" 2>/dev/null
    validate --expect results "$BATS_TEST_TMPDIR/r"
    recall_at_least "$FIX/gt" "$BATS_TEST_TMPDIR/r" 0.99
}

# two_hosts : namespaces hfbats-a (10.77.0.1) and hfbats-b (10.77.0.2) on a veth pair
two_hosts() {
    [ ! -e /run/netns/hfbats-a ] || ip netns del hfbats-a
    [ ! -e /run/netns/hfbats-b ] || ip netns del hfbats-b
    ip netns add hfbats-a && ip netns add hfbats-b || return 1
    ip link add hfbats-va netns hfbats-a type veth peer name hfbats-vb netns hfbats-b
    ip -n hfbats-a addr add 10.77.0.1/24 dev hfbats-va
    ip -n hfbats-b addr add 10.77.0.2/24 dev hfbats-vb
    ip -n hfbats-a link set hfbats-va up
    ip -n hfbats-b link set hfbats-vb up
    ip -n hfbats-a link set lo up
    ip -n hfbats-b link set lo up
}

@test "two hosts (network namespaces, veth): shard 1 is built and served on the other host, the front end answers a client there" {
    if ! ip netns add hfbats-probe 2>/dev/null; then
        skip "this machine cannot create network namespaces (ip netns add failed)"
    fi
    ip netns del hfbats-probe
    two_hosts
    SLURM_TEST_PORT=$(free_port) $CLUSTER start "$FIX/cluster2" h0=10.77.0.1@hfbats-a h1=10.77.0.2@hfbats-b
    slurm_env "$FIX/cluster2"
    # nsenter --net, as the cluster's slurmd were started (tests/slurm_cluster.sh)
    A="nsenter --net=/run/netns/hfbats-a"
    B="nsenter --net=/run/netns/hfbats-b"
    # one task a node: each names its host's address
    run $A srun -n 2 --ntasks-per-node=1 -l sh -c 'hostname -I'
    [[ "$output" == *"0: 10.77.0.1"* ]]
    [[ "$output" == *"1: 10.77.0.2"* ]]
    $A srun -n 2 --ntasks-per-node=1 env BIN="$BIN" sh "$REPO/pipelines/shard-build.sh" "$FIX/base.npy" 2 \
        "$BATS_TEST_TMPDIR/s" -t 1 2>/dev/null
    cmp "$BATS_TEST_TMPDIR/s/shard-0.idx" "$FIX/local/shard-0.idx"
    cmp "$BATS_TEST_TMPDIR/s/shard-1.idx" "$FIX/local/shard-1.idx"
    $A env SRUN=1 SRUN_OPTS=--ntasks-per-node=1 FRONT=tcp://10.77.0.1:5600 PORT=5601 BIN="$BIN" \
        sh "$REPO/pipelines/shard-serve.sh" "$BATS_TEST_TMPDIR/s" 2>"$BATS_TEST_TMPDIR/serve.log" 3>&- &
    SERVE_PID=$!
    wait_for_line "$BATS_TEST_TMPDIR/serve.log" "fan-out serving 2 shards" 300
    grep -q "over tcp://10.77.0.1:5601,tcp://10.77.0.2:5602" "$BATS_TEST_TMPDIR/serve.log"
    # the client sits on the other host
    $B "$BIN/query" --connect tcp://10.77.0.1:5600 -o "$BATS_TEST_TMPDIR/r" "$FIX/queries.frames" 2>/dev/null
    validate --expect results "$BATS_TEST_TMPDIR/r"
    recall_at_least "$FIX/gt" "$BATS_TEST_TMPDIR/r" 0.99
    kill -TERM "$SERVE_PID"
    wait "$SERVE_PID" || true
    SERVE_PID=
    $CLUSTER stop "$FIX/cluster2"
    rm -rf "$FIX/cluster2"
    ip netns del hfbats-a
    ip netns del hfbats-b
}
