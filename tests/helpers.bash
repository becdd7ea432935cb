# helpers.bash - shared set-up for the hnswflow bats suites.
#
# REPO is the repository root (from BATS_TEST_DIRNAME); BIN the directory of
# the filters, ${BIN:-bin}, relative to REPO unless absolute. Python checks
# run under /usr/bin/python3, which has msgpack, jsonschema, numpy and zmq.
# Fixtures are generated into BATS_FILE_TMPDIR (FIX) by each suite's
# setup_file, never committed.

bats_require_minimum_version 1.5.0

REPO="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
BIN="${BIN:-bin}"
case "$BIN" in /*) ;; *) BIN="$REPO/$BIN" ;; esac
PY=/usr/bin/python3
GEN="$PY $REPO/tests/gen_vectors.py"
VALIDATE="$PY $REPO/tests/validate_frames.py"
MNIST=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
export REPO BIN PY GEN VALIDATE MNIST

# Fixture dir shared by the tests of one file.
FIX="${BATS_FILE_TMPDIR:-$(mktemp -d)}"
export FIX

need_bins() {
    local b
    for b in "$@"; do
        [ -x "$BIN/$b" ] || {
            echo "missing $BIN/$b: run make first" >&2
            return 1
        }
    done
}

# validate FILE... : every file is a valid frame stream per schemas/.
validate() {
    $VALIDATE -q "$@"
}

# valid_model_frame IDX KIND : IDX holds exactly one model frame, of kind
# KIND, just before its end frame, and it matches schemas/KIND.json (bins
# mapped to {"$bin": length}, as validate_frames.py does for other frames).
valid_model_frame() {
    $PY - "$1" "$2" "$REPO/schemas" <<'EOF2'
import json, sys, msgpack
from jsonschema import Draft202012Validator
def bins(x):
    if isinstance(x, bytes):
        return {"$bin": len(x)}
    if isinstance(x, dict):
        return {k: bins(y) for k, y in x.items()}
    if isinstance(x, list):
        return [bins(y) for y in x]
    return x
idx, kind, sdir = sys.argv[1:4]
frames = list(msgpack.Unpacker(open(idx, "rb"), raw=False))
models = [f for f in frames if f["t"] == "model"]
assert len(models) == 1 and models[0]["kind"] == kind, models
assert frames[-2]["t"] == "model" and frames[-1]["t"] == "end"
Draft202012Validator(json.load(open(f"{sdir}/{kind}.json"))).validate(bins(models[0]))
EOF2
}

# Frame counts and basic facts about a stream, one JSON line per frame with
# bins shown as their length.
show_frames() {
    $PY - "$1" <<'EOF'
import json, sys, msgpack
for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False):
    print(json.dumps({k: ({"$bin": len(v)} if isinstance(v, bytes) else v) for k, v in f.items()}))
EOF
}

# frames_to_npy STREAM OUT.npy : rows of a vectors (or index) stream, as
# stored in the file (an index keeps the input's dimension order in its
# vectors frames; its perm frame only describes the in-memory layout).
frames_to_npy() {
    $PY - "$1" "$2" <<'EOF'
import sys, msgpack, numpy as np
hdr, rows = None, []
for f in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False):
    if f["t"] == "header" and hdr is None:
        hdr = f
    elif f["t"] == "vectors":
        rows.append(np.frombuffer(f["data"], "<f4").reshape(f["n"], hdr["dim"]))
    elif f["t"] == "end":
        break
x = np.concatenate(rows) if rows else np.zeros((0, hdr["dim"]), "<f4")
np.save(sys.argv[2], x)
EOF
}

# same_results A B : two results streams carry the same result frames
# (qid, ids, dists), compared decoded; headers may differ.
same_results() {
    $PY - "$1" "$2" <<'EOF'
import sys, msgpack
def res(p):
    return [(f["qid"], f["ids"], f["dists"])
            for f in msgpack.Unpacker(open(p, "rb"), raw=False) if f["t"] == "result"]
a, b = res(sys.argv[1]), res(sys.argv[2])
if len(a) != len(b):
    sys.exit(f"{len(a)} results vs {len(b)}")
for i, (x, y) in enumerate(zip(a, b)):
    if x != y:
        sys.exit(f"result {i} differs: qid {x[0]} vs {y[0]}")
if not a:
    sys.exit("no results")
EOF
}

# recall_at_least GT RESULTS MIN : bin/recall's recall@10 >= MIN.
recall_at_least() {
    local out r
    out="$("$BIN/recall" --gt "$1" "$2")" || return 1
    r="$(echo "$out" | awk '{print $2}')"
    echo "$out" >&2
    awk -v r="$r" -v m="$3" 'BEGIN { exit !(r >= m) }'
}

# After `run --separate-stderr`: non-zero exit, exactly one line on stderr,
# naming NAME and matching the extended regex PATTERN.
assert_one_error_line() {
    local name="$1" pattern="$2"
    if [ "$status" -eq 0 ]; then
        echo "expected failure, got exit 0; stderr: $stderr" >&2
        return 1
    fi
    if [ "${#stderr_lines[@]}" -ne 1 ]; then
        echo "expected one line on stderr, got ${#stderr_lines[@]}:" >&2
        printf '%s\n' "${stderr_lines[@]}" >&2
        return 1
    fi
    if [[ "$stderr" != *"$name"* ]]; then
        echo "stderr does not name '$name': $stderr" >&2
        return 1
    fi
    if ! echo "$stderr" | grep -Eq -- "$pattern"; then
        echo "stderr does not match /$pattern/: $stderr" >&2
        return 1
    fi
}

# assert_no_output FILE : neither FILE nor its temporaries FILE.tmp.* exist.
assert_no_output() {
    local f
    if [ -e "$1" ]; then
        echo "output $1 was left behind" >&2
        return 1
    fi
    for f in "$1".tmp.*; do
        if [ -e "$f" ]; then
            echo "temporary $f was left behind" >&2
            return 1
        fi
    done
}

# A TCP port free right now on 127.0.0.1.
free_port() {
    $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for_line FILE REGEX [TRIES] : poll (0.1 s) until FILE has a matching line.
wait_for_line() {
    local i
    for ((i = 0; i < ${3:-100}; i++)); do
        grep -Eq -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "timed out waiting for /$2/ in $1" >&2
    return 1
}

# flip_byte FILE OFFSET OUT : copy FILE to OUT with the byte at OFFSET inverted.
flip_byte() {
    $PY - "$1" "$2" "$3" <<'EOF'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
i = int(sys.argv[2])
b[i] ^= 0xFF
open(sys.argv[3], "wb").write(b)
EOF
}

# cut_file FILE OUT : the first half of FILE.
cut_file() {
    local n
    n=$(($(stat -c %s "$1") / 2))
    head -c "$n" "$1" >"$2"
}

# edit_model KIND IN OUT CODE : rewrite IN's model frames of kind KIND into
# OUT with python code CODE applied to each (as f). The end frame's checksum
# is the CRC-32 of every byte before it: it is recomputed, so the loader
# meets the edited model and not a checksum mismatch.
edit_model() {
    $PY - "$@" <<'EOF2'
import sys, zlib, msgpack
kind, src, dst, code = sys.argv[1:5]
frames = list(msgpack.Unpacker(open(src, "rb"), raw=False))
for f in frames:
    if f["t"] == "model" and f["kind"] == kind:
        exec(code)
body = b"".join(msgpack.packb(f, use_bin_type=True) for f in frames[:-1])
frames[-1]["checksum"] = zlib.crc32(body)
with open(dst, "wb") as o:
    o.write(body + msgpack.packb(frames[-1], use_bin_type=True))
EOF2
}
