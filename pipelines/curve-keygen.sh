#!/bin/sh
# pipelines/curve-keygen.sh - make a CURVE key pair for query's --curve-*
# options: DIR/NAME holds the public key (give it to the other side: a
# server's to its clients for --curve-server, a client's into the server's
# --curve-allow directory), DIR/NAME.secret both keys (mode 600, stays with
# its owner: --curve-secret on a server, --curve-key on a client).
# The files are CZMQ certificates (zcert format); the keys come from
# libzmq's zmq_curve_keypair through Debian's python3-zmq.
# usage: pipelines/curve-keygen.sh NAME [DIR]
set -eu
case ${1:-} in -h | --help) sed -n '2,/^set -eu$/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 NAME [DIR]" >&2; exit 64; }
name=$1
dir=${2:-.}
case $name in */* | .* | '') echo "$0: NAME must be a plain file name, not \"$name\"" >&2; exit 64 ;; esac
[ -d "$dir" ] || { echo "$0: $dir: not a directory" >&2; exit 66; }
if [ -e "$dir/$name" ] || [ -e "$dir/$name.secret" ]; then
    echo "$0: $dir/$name or $dir/$name.secret exists: not overwritten" >&2
    exit 73
fi
umask 077
/usr/bin/python3 - "$dir/$name" <<'PY'
import os, sys, zmq
if not zmq.has("curve"):
    sys.exit("curve-keygen.sh: this libzmq has no CURVE support")
pub, sec = (k.decode() for k in zmq.curve_keypair())
path = sys.argv[1]
head = "#   ZeroMQ CURVE %s Certificate (hnswflow pipelines/curve-keygen.sh)\n"
with open(path + ".secret.tmp", "w") as f:
    f.write(head % "**Secret**" + "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n"
            'metadata\ncurve\n    public-key = "%s"\n    secret-key = "%s"\n' % (pub, sec))
with open(path + ".tmp", "w") as f:
    f.write(head % "Public" + '\nmetadata\ncurve\n    public-key = "%s"\n' % pub)
os.chmod(path + ".tmp", 0o644)
os.rename(path + ".secret.tmp", path + ".secret")
os.rename(path + ".tmp", path)
PY
