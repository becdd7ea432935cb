#!/bin/sh
# make_corpus_vecio.sh - write the small seed corpus for fuzz_vecio.
#
# One tiny, valid file per format (plus a gzip one and a csv with a header),
# so the fuzzer starts from inputs that get past every magic check. No HDF5
# seed: fuzz_vecio leaves HDF5 out (see the comment there).
# Usage: sh tests/fuzz/make_corpus_vecio.sh [dir]
set -eu
out=${1:-$(dirname "$0")/corpus/vecio}
mkdir -p "$out"

python3 - "$out" <<'PY'
import gzip, struct, sys
out = sys.argv[1]
rows = [[1.5, -2.0, 0.25], [3.0, 4.0, 5.0], [-6.5, 7.0, 8.0]]

def put(name, data):
    with open(f"{out}/{name}", "wb") as f:
        f.write(data)

fv = b"".join(struct.pack("<i3f", 3, *r) for r in rows)
put("fvecs", fv)
put("fvecs_gz", gzip.compress(fv, mtime=0))
put("bvecs", b"".join(struct.pack("<i3B", 3, i, 2 * i, 255 - i) for i in range(3)))
put("ivecs", b"".join(struct.pack("<i3i", 3, i, -i, 1000 * i) for i in range(3)))

def npy(descr, shape, payload, version=1):
    d = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    pre = 10 if version == 1 else 12
    d += " " * ((-(pre + len(d) + 1)) % 64) + "\n"
    ln = struct.pack("<H", len(d)) if version == 1 else struct.pack("<I", len(d))
    return b"\x93NUMPY" + bytes([version, 0]) + ln + d.encode() + payload

put("npy_f4", npy("<f4", "(3, 3)", b"".join(struct.pack("<3f", *r) for r in rows)))
put("npy_f8_v2", npy("<f8", "(3,)", struct.pack("<3d", *rows[0]), version=2))
put("npy_u1", npy("|u1", "(2, 4)", bytes(range(8))))
put("idx3", b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 2, 3) + bytes(range(0, 240, 20)))
put("idx1", b"\x00\x00\x08\x01" + struct.pack(">I", 4) + bytes([3, 1, 4, 1]))
put("csv_header", b"x,y,z\n1.5,-2,0.25\n3,4,5\n")
put("tsv", b"1.5\t-2\t0.25\n\n3 4 5\r\n-6.5,7,8")
PY

ls -l "$out" | awk 'NR > 1 { n++; b += $5 } END { print n " seed files, " b " bytes" }'
