#!/bin/bash
# tests/slurm_cluster.sh - a throw-away Slurm cluster on this host for the
# tests (tests/slurm.bats): its own munged (own key and socket), slurmctld
# and one slurmd per node, all run as root in the foreground of background
# jobs (no systemd), with proctrack/linuxproc and task/none (no cgroups).
#
#   tests/slurm_cluster.sh start DIR [NODE=ADDR[@NETNS] ...]
#       default node: this host's short name at 127.0.0.1. With @NETNS the
#       node's slurmd runs inside that network namespace (nsenter --net:
#       `ip netns exec` would also remount /sys, hiding the cgroup tree
#       slurmd looks at even with proctrack/linuxproc), and slurmctld runs
#       where the first node does. Writes DIR/env
#       (SLURM_CONF=...) for the clients; returns once every node is idle.
#   tests/slurm_cluster.sh stop DIR
#       ends the daemons it started (their pids are in DIR/*.pid).
# Ports: SLURM_TEST_PORT (default 16817) for slurmctld, +1 for slurmd.
set -eu
cmd=$1
dir=$2
shift 2

stop() {
    local f p
    for f in "$dir"/slurmd-*.pid "$dir"/slurmctld.pid "$dir"/munged.pid; do
        [ -e "$f" ] || continue
        p=$(cat "$f")
        kill -TERM "$p" 2>/dev/null || true
    done
    for f in "$dir"/slurmd-*.pid "$dir"/slurmctld.pid "$dir"/munged.pid; do
        [ -e "$f" ] || continue
        p=$(cat "$f")
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        rm -f "$f"
    done
}

if [ "$cmd" = stop ]; then
    stop
    exit 0
fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR [NODE=ADDR[@NETNS]...]" >&2; exit 64; }
mkdir -p "$dir/state" "$dir/munge"
chmod 700 "$dir/munge"
port=${SLURM_TEST_PORT:-16817}
[ $# -gt 0 ] || set -- "$(hostname -s)=127.0.0.1"
names=() addrs=() nss=()
for n in "$@"; do
    name=${n%%=*}
    rest=${n#*=}
    addr=${rest%%@*}
    ns=""
    [ "$rest" = "$addr" ] || ns=${rest#*@}
    names+=("$name")
    addrs+=("$addr")
    nss+=("$ns")
done
inns() { # inns NS CMD... : run CMD in network namespace NS ("" = here)
    local ns=$1
    shift
    if [ -n "$ns" ]; then nsenter --net="/run/netns/$ns" "$@"; else "$@"; fi
}
bg() { # bg PIDFILE LOG NS CMD... : CMD in the background, its own pid in PIDFILE
    local pidf=$1 log=$2 ns=$3
    shift 3
    if [ -n "$ns" ]; then
        nsenter --net="/run/netns/$ns" "$@" >"$log" 2>&1 &
    else
        "$@" >"$log" 2>&1 &
    fi
    echo $! >"$pidf"
}

# munge: a key of our own, a socket of our own
mungekey --create --keyfile="$dir/munge/munge.key" --force >/dev/null 2>&1 ||
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 2>/dev/null
chmod 600 "$dir/munge/munge.key"
munged --foreground --force --socket="$dir/munge/munge.sock" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid.own" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/seed" >"$dir/munged.out" 2>&1 &
echo $! >"$dir/munged.pid"
for _ in $(seq 100); do [ -S "$dir/munge/munge.sock" ] && break; sleep 0.1; done
[ -S "$dir/munge/munge.sock" ] || { cat "$dir/munged.out" "$dir/munge/munged.log" >&2 2>/dev/null; stop; exit 1; }

conf="$dir/slurm.conf"
{
    echo "ClusterName=hfbats"
    echo "SlurmctldHost=$(hostname -s)(${addrs[0]})"
    echo "SlurmctldPort=$port"
    echo "SlurmdPort=$((port + 1))"
    echo "SlurmUser=root"
    echo "SlurmdUser=root"
    echo "AuthType=auth/munge"
    echo "CredType=cred/munge"
    echo "AuthInfo=socket=$dir/munge/munge.sock"
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_CPU"
    echo "SchedulerType=sched/backfill"
    echo "MpiDefault=none"
    echo "ReturnToService=2"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "AccountingStorageType=accounting_storage/none"
    echo "SlurmdParameters=config_overrides"
    echo "StateSaveLocation=$dir/state"
    echo "SlurmdSpoolDir=$dir/spool-%n"
    echo "SlurmctldPidFile=$dir/slurmctld.pid.own"
    echo "SlurmdPidFile=$dir/slurmd-%n.pid.own"
    echo "SlurmctldLogFile=$dir/slurmctld.log"
    echo "SlurmdLogFile=$dir/slurmd-%n.log"
    echo "SlurmctldTimeout=30"
    echo "SlurmdTimeout=30"
    echo "InactiveLimit=0"
    echo "KillWait=2"
    for i in "${!names[@]}"; do
        echo "NodeName=${names[$i]} NodeAddr=${addrs[$i]} NodeHostname=$(hostname -s) CPUs=4 State=UNKNOWN"
    done
    echo "PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES"
} >"$conf"
echo "SLURM_CONF=$conf" >"$dir/env"
export SLURM_CONF="$conf"

bg "$dir/slurmctld.pid" "$dir/slurmctld.out" "${nss[0]}" slurmctld -D -i -f "$conf"
for i in "${!names[@]}"; do
    mkdir -p "$dir/spool-${names[$i]}"
    bg "$dir/slurmd-${names[$i]}.pid" "$dir/slurmd-${names[$i]}.out" "${nss[$i]}" \
        slurmd -D -N "${names[$i]}" -f "$conf"
done
# ready when sinfo (asked where slurmctld runs) shows every node idle
for _ in $(seq 300); do
    idle=$(inns "${nss[0]}" timeout 2 sinfo -h -N -o '%t' 2>/dev/null | grep -c '^idle' || true)
    [ "$idle" -ge "${#names[@]}" ] && exit 0
    sleep 0.1
done
echo "$0: the cluster did not come up; sinfo says:" >&2
inns "${nss[0]}" timeout 2 sinfo -N >&2 2>&1 || true
tail -5 "$dir"/slurmctld.log "$dir"/slurmd-*.log >&2 2>/dev/null || true
stop
exit 1
