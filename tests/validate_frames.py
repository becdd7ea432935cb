#!/usr/bin/python3
"""Validate hnswflow frame streams against schemas/*.json.

Decodes with the Python msgpack package (independent of the msgpack-c the
filters use), maps every bin value to {"$bin": <length>}, picks the schema
by "t" (and by "schema" for header frames) and validates each frame. Then
checks the rules that span frames:

  * a stream opens with a header frame and closes with an end frame; several
    streams may follow each other (cat index queries | query), each ended;
  * end.count matches what the stream carried, end.checksum is the zlib
    crc32 of the raw bytes of the stream's frames before the end frame;
  * vectors: data is n*dim*4 bytes, batches are contiguous from 0, values are
    finite; index vectors carry levels (n bytes, <= max_level);
  * perm: at most once, a permutation of 0..dim-1, before the links;
  * links: nodes/deg same length, ids = sum(deg), ids < count, deg <= M/M0;
  * results: ids/dists same length (ids u64 when the header says ids: "u64"),
    at most k, distances non-decreasing, a fan-out's missing shards ascending;
  * updates: insert ids n*8 bytes and data n*dim*4 finite; delete ids n*8;
    end.count = the frames between header and end;
  * ids (index): contiguous from 0, n*8 bytes, every id distinct, one per node.
  * labels (vectors, insert, index labels frames): n count-prefixed runs,
    counts <= 256, labels <= 1048575; index labels frames contiguous from 0,
    one run per node.

Frames of a type without a schema file (and model frames) are skipped.

usage: validate_frames.py [--schemas DIR] [--expect vectors|index|results]
                          [--single] [-q] FILE|-...
  --single   the input is one frame (a ZeroMQ message): no stream rules.
Exit 0 when every file is valid, 1 with a message naming the frame otherwise,
2 on usage errors.
"""
import json
import math
import re
import os
import sys
import zlib

import msgpack
import numpy as np
from jsonschema import Draft202012Validator

HEADER_SCHEMAS = {
    "hnswflow.vectors": "header-vectors.json",
    "hnswflow.index": "header-index.json",
    "hnswflow.results": "header-results.json",
    "hnswflow.updates": "header-updates.json",
    "hnswflow.wal": "header-wal.json",
    "hnswflow.querylog": "header-querylog.json",
}
# Streams that end where the file ends, without an end frame (qlog.h).
OPEN_ENDED = {"querylog"}
# Every other frame type t is checked against schemas/<t>.json when that file
# exists (vectors, perm, links, deleted, query, result, error, end, info,
# codebook, codes, ...). Model frames are skipped: model.json documents bins as
# strings with contentEncoding "binary", not as {"$bin": length}.
SKIP_TYPES = {"header", "model"}


class Invalid(Exception):
    pass


def to_json(obj):
    """Map a decoded frame to JSON-able values, bins as {"$bin": len}."""
    if isinstance(obj, (bytes, bytearray)):
        return {"$bin": len(obj)}
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)  # JSON has no NaN; a string fails any number schema
    return obj


class Schemas:
    def __init__(self, d):
        self.dir = d
        self.cache = {}

    def has(self, fname):
        return os.path.exists(os.path.join(self.dir, fname))

    def get(self, fname):
        if fname not in self.cache:
            path = os.path.join(self.dir, fname)
            with open(path) as f:
                s = json.load(f)
            Draft202012Validator.check_schema(s)
            self.cache[fname] = Draft202012Validator(s)
        return self.cache[fname]


def validate_schema(schemas, fname, frame, where):
    v = schemas.get(fname)
    errs = sorted(v.iter_errors(to_json(frame)), key=lambda e: list(e.path))
    if errs:
        e = errs[0]
        path = "/".join(str(p) for p in e.path) or "(frame)"
        raise Invalid(f"{where}: {fname}: {path}: {e.message}")


def schema_for(frame, where):
    t = frame.get("t")
    if t == "header":
        s = frame.get("schema")
        if s not in HEADER_SCHEMAS:
            raise Invalid(f"{where}: header with unknown schema {s!r}")
        return HEADER_SCHEMAS[s]
    if not isinstance(t, str) or t in SKIP_TYPES or not re.fullmatch(r"[a-z0-9_-]+", t):
        return None
    return t + ".json"


def t_is_header(f):
    return f.get("t") == "header"


def u32s(b):
    return np.frombuffer(b, dtype="<u4")


LABEL_MAX, LABELS_PER_VECTOR = 1048575, 256


def check_labels(b, n, where):
    """A labels bin (filt.h): per row its count, then its labels, u32 LE."""
    if len(b) % 4:
        raise Invalid(f"{where}: labels is {len(b)} bytes, not whole u32")
    w = np.frombuffer(b, dtype="<u4")
    at = 0
    for r in range(n):
        if at >= len(w):
            raise Invalid(f"{where}: labels end at row {r} of {n}")
        c = int(w[at])
        if c > LABELS_PER_VECTOR or at + 1 + c > len(w):
            raise Invalid(f"{where}: row {r} has a bad label count {c}")
        if c and int(w[at + 1:at + 1 + c].max()) > LABEL_MAX:
            raise Invalid(f"{where}: row {r} has a label above {LABEL_MAX}")
        at += 1 + c
    if at != len(w):
        raise Invalid(f"{where}: labels has {len(w) - at} words after its {n} rows")


class Stream:
    """Cross-frame state of one stream (header .. end)."""

    def __init__(self, header):
        self.h = header
        self.kind = header["schema"].split(".")[-1]  # vectors, index, results
        self.rows = 0
        self.results = 0
        self.link_level = -1
        self.perm_seen = False
        self.frames = 0
        self.ext_ids = set()
        self.id_slots = 0
        self.label_nodes = 0

    def frame(self, f, where):
        t = f["t"]
        h = self.h
        self.frames += 1
        if self.kind == "updates":
            return self.update_frame(f, where)
        if t == "vectors":
            if self.kind == "results":
                raise Invalid(f"{where}: vectors frame inside a results stream")
            if self.link_level >= 0:
                raise Invalid(f"{where}: vectors frame after links frames")
            n, dim = f["n"], h["dim"]
            if f["start"] != self.rows:
                raise Invalid(f"{where}: batch starts at {f['start']}, expected {self.rows}")
            if len(f["data"]) != n * dim * 4:
                raise Invalid(f"{where}: data is {len(f['data'])} bytes, "
                              f"n={n} x dim={dim} needs {n * dim * 4}")
            x = np.frombuffer(f["data"], dtype="<f4")
            if not np.isfinite(x).all():
                bad = int(np.flatnonzero(~np.isfinite(x))[0])
                raise Invalid(f"{where}: row {f['start'] + bad // dim} has a non-finite value")
            if self.kind == "index":
                if "levels" not in f:
                    raise Invalid(f"{where}: index vectors frame lacks \"levels\"")
                lv = np.frombuffer(f["levels"], dtype="u1")
                if len(lv) != n:
                    raise Invalid(f"{where}: levels has {len(lv)} bytes, n={n}")
                if n and int(lv.max()) > h["max_level"]:
                    raise Invalid(f"{where}: a level is above max_level {h['max_level']}")
            if "labels" in f:
                check_labels(f["labels"], n, where)
            self.rows += n
        elif t == "labels":
            if self.kind != "index":
                raise Invalid(f"{where}: labels frame outside an index stream")
            if f["start"] != self.label_nodes:
                raise Invalid(f"{where}: labels frame starts at {f['start']}, expected "
                              f"{self.label_nodes}")
            check_labels(f["labels"], f["n"], where)
            self.label_nodes += f["n"]
            if self.label_nodes > h["count"]:
                raise Invalid(f"{where}: labels for more nodes than the header's count")
        elif t == "query":
            if self.kind not in ("vectors", "querylog"):
                raise Invalid(f"{where}: query frame inside a {self.kind} stream")
            if len(f["vec"]) != h["dim"] * 4:
                raise Invalid(f"{where}: vec is {len(f['vec'])} bytes, dim {h['dim']} needs "
                              f"{h['dim'] * 4}")
            if not np.isfinite(np.frombuffer(f["vec"], dtype="<f4")).all():
                raise Invalid(f"{where}: query has a non-finite value")
            self.rows += 1
        elif t == "links":
            if self.kind != "index":
                raise Invalid(f"{where}: links frame outside an index stream")
            lvl = f["level"]
            if lvl < self.link_level or lvl > h["max_level"]:
                raise Invalid(f"{where}: links level {lvl} out of order or above max_level")
            self.link_level = lvl
            if self.rows != h["count"]:
                raise Invalid(f"{where}: links before all {h['count']} vectors")
            nodes, deg, ids = u32s(f["nodes"]), u32s(f["deg"]), u32s(f["ids"])
            if len(nodes) != len(deg):
                raise Invalid(f"{where}: nodes and deg differ in length")
            if int(deg.sum(dtype=np.uint64)) != len(ids):
                raise Invalid(f"{where}: ids has {len(ids)} entries, degrees sum to {deg.sum()}")
            maxdeg = h["M0"] if lvl == 0 else h["M"]
            if len(deg) and int(deg.max()) > maxdeg:
                raise Invalid(f"{where}: a degree is above {maxdeg}")
            if (len(nodes) and int(nodes.max()) >= h["count"]) or \
               (len(ids) and int(ids.max()) >= h["count"]):
                raise Invalid(f"{where}: node id beyond count {h['count']}")
        elif t == "perm":
            if self.kind != "index":
                raise Invalid(f"{where}: perm frame outside an index stream")
            if self.perm_seen or self.link_level >= 0:
                raise Invalid(f"{where}: perm frame repeated or after links frames")
            self.perm_seen = True
            order = u32s(f["order"])
            if len(order) != h["dim"] or \
               not np.array_equal(np.sort(order), np.arange(h["dim"], dtype=np.uint32)):
                raise Invalid(f"{where}: order is not a permutation of 0..{h['dim'] - 1}")
        elif t == "deleted":
            if self.kind != "index":
                raise Invalid(f"{where}: deleted frame outside an index stream")
            ids = u32s(f["ids"])
            if len(ids) and int(ids.max()) >= h["count"]:
                raise Invalid(f"{where}: deleted id beyond count {h['count']}")
        elif t == "ids":
            if self.kind != "index":
                raise Invalid(f"{where}: ids frame outside an index stream")
            if f["start"] != self.id_slots or len(f["ids"]) != 8 * f["n"]:
                raise Invalid(f"{where}: ids frame start/n/size inconsistent")
            self.id_slots += f["n"]
            if self.id_slots > h["count"]:
                raise Invalid(f"{where}: more ids than the header's count {h['count']}")
            new = np.frombuffer(f["ids"], dtype="<u8").tolist()
            before = len(self.ext_ids)
            self.ext_ids.update(new)
            if len(self.ext_ids) != before + len(new):
                raise Invalid(f"{where}: an external id names two nodes")
        elif t == "result":
            if self.kind != "results":
                raise Invalid(f"{where}: result frame outside a results stream")
            ids, d = f["ids"], f["dists"]
            w = 8 if h.get("ids") == "u64" else 4
            if len(ids) // w != len(d) // 4 or len(ids) % w:
                raise Invalid(f"{where}: ids and dists differ in length")
            if len(ids) // w > h["k"]:
                raise Invalid(f"{where}: {len(ids) // w} neighbours, k is {h['k']}")
            dd = np.frombuffer(d, dtype="<f4")
            if not np.isfinite(dd).all():
                raise Invalid(f"{where}: non-finite distance")
            if len(dd) > 1 and (np.diff(dd) < 0).any():
                raise Invalid(f"{where}: distances not in non-decreasing order")
            if "missing" in f and f["missing"] != sorted(f["missing"]):
                raise Invalid(f"{where}: missing shards not in ascending order")
            self.results += 1
        elif t == "error":
            if self.kind == "results":
                self.results += 1

    def update_frame(self, f, where):
        t, h = f["t"], self.h
        if t in ("insert", "delete"):
            n = f["n"]
            if len(f["ids"]) != 8 * n:
                raise Invalid(f"{where}: ids is {len(f['ids'])} bytes, n={n} needs {8 * n}")
            if t == "insert":
                if h.get("dim") and len(f["data"]) != 4 * n * h["dim"]:
                    raise Invalid(f"{where}: data is {len(f['data'])} bytes, "
                                  f"n={n} x dim={h['dim']} needs {4 * n * h['dim']}")
                if not np.isfinite(np.frombuffer(f["data"], dtype="<f4")).all():
                    raise Invalid(f"{where}: insert has a non-finite value")
                if "labels" in f:
                    check_labels(f["labels"], n, where)
        elif t == "query":
            if h.get("dim") and len(f["vec"]) != h["dim"] * 4:
                raise Invalid(f"{where}: vec is {len(f['vec'])} bytes, dim {h['dim']}")

    def end(self, f, where):
        h = self.h
        if self.kind == "index" and self.id_slots not in (0, h["count"]):
            raise Invalid(f"{where}: ids for {self.id_slots} of {h['count']} nodes")
        if self.kind == "index" and self.label_nodes not in (0, h["count"]):
            raise Invalid(f"{where}: labels for {self.label_nodes} of {h['count']} nodes")
        if self.kind == "updates":
            want = self.frames
        elif self.kind == "results":
            want = self.results
        else:
            want = self.rows
        if f["count"] != want:
            raise Invalid(f"{where}: end count {f['count']}, stream carried {want}")
        if self.kind == "index" and f["count"] != h["count"]:
            raise Invalid(f"{where}: end count {f['count']}, header count {h['count']}")
        if self.kind != "index" and h.get("count") and h["count"] != f["count"]:
            raise Invalid(f"{where}: end count {f['count']}, header announced {h['count']}")


def validate_file(path, schemas, expect=None, single=False):
    """Return a list of (kind, frame count) per stream; raise Invalid."""
    name = "stdin" if path == "-" else path
    raw = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    if not raw:
        raise Invalid(f"{name}: empty input (no frames)")
    up = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=len(raw) + 1)
    up.feed(raw)
    streams, st = [], None
    crc, pos, idx = 0, 0, 0
    while True:
        begin = up.tell()
        try:
            f = up.unpack()
        except msgpack.OutOfData:
            if up.tell() != len(raw):
                raise Invalid(f"{name}: frame {idx + 1}: truncated frame at end of input")
            break
        except Exception as ex:  # ExtraData, FormatError, UnicodeDecodeError, ...
            raise Invalid(f"{name}: frame {idx + 1}: not MessagePack: {ex}")
        end_pos = up.tell()
        idx += 1
        where = f"{name}: frame {idx}"
        if not isinstance(f, dict) or not isinstance(f.get("t"), str):
            raise Invalid(f"{where}: not a map with a string \"t\"")
        sname = schema_for(f, where)
        if sname is not None and (t_is_header(f) or schemas.has(sname)):
            validate_schema(schemas, sname, f, where)
        if single:
            if end_pos != len(raw):
                raise Invalid(f"{name}: more than one frame")
            return [(f["t"], 1)]
        t = f["t"]
        if st is None:
            if t != "header":
                raise Invalid(f"{where}: expected a header frame, got \"{t}\"")
            st = Stream(f)
            if expect and not streams and st.kind != expect:
                raise Invalid(f"{where}: stream is {st.kind}, expected {expect}")
            first = idx
        elif t == "header":
            raise Invalid(f"{where}: second header inside a stream (no end frame before it)")
        elif t == "end":
            st.end(f, where)
            want = zlib.crc32(raw[pos:begin])
            if f["checksum"] != want:
                raise Invalid(f"{where}: checksum {f['checksum']:08x}, bytes give {want:08x}")
            streams.append((st.kind, idx - first + 1))
            st = None
            pos = end_pos
            continue
        else:
            st.frame(f, where)
    if st is not None and st.kind in OPEN_ENDED:
        streams.append((st.kind, idx - first + 1))
    elif st is not None:
        raise Invalid(f"{name}: frame {idx + 1}: truncated stream (no end frame)")
    return streams


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    sdir = os.path.join(here, "..", "schemas")
    expect, single, quiet, files = None, False, False, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--schemas":
            i += 1
            sdir = argv[i]
        elif a == "--expect":
            i += 1
            expect = argv[i]
        elif a == "--single":
            single = True
        elif a in ("-q", "--quiet"):
            quiet = True
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        elif a.startswith("-") and a != "-":
            print(f"validate_frames: unknown option {a}", file=sys.stderr)
            return 2
        else:
            files.append(a)
        i += 1
    if not files:
        print("validate_frames: no input (see --help)", file=sys.stderr)
        return 2
    schemas = Schemas(sdir)
    for p in files:
        try:
            streams = validate_file(p, schemas, expect, single)
        except Invalid as ex:
            print(f"validate_frames: {ex}", file=sys.stderr)
            return 1
        except OSError as ex:
            print(f"validate_frames: {p}: {ex}", file=sys.stderr)
            return 1
        if not quiet:
            desc = ", ".join(f"{k} ({n} frames)" for k, n in streams)
            print(f"{p}: valid: {desc}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
