#!/usr/bin/python3
"""Load and fault client for the fan-out front end (tests/fanout.bats,
tests/curve.bats, bench/shard.sh).

Sends N query frames (rows of QUERIES.npy, round robin) to EP from one
DEALER (with REQ's empty delimiter, like libcommon/serve.c's client), paced
at RATE a second (0: as fast as WINDOW allows), at most WINDOW in flight.
--signal SIG --pid PID --after S: send SIG to PID S seconds after the first
request (the fault under load). Collects answers until every qid is in or
DEADLINE seconds after the last send, then prints one JSON line:

  sent, answered, results, partial, errors, lost, dup, unknown,
  missing (shard numbers named by partial answers), p50_ms, p99_ms,
  max_ms (send to answer), qps

--dump-lat FILE: write every latency (ms, one a line, in answer order) to FILE.
--save-partial FILE: write the first partial answer (one frame) to FILE.
--probe S: send one info request and print {"answered": true|false} after
waiting S seconds: what a client without an allowed CURVE key gets.
--curve-key FILE --curve-server FILE: CURVE client keys (pipelines/curve-keygen.sh
files). Needs /usr/bin/python3 with python3-zmq, python3-msgpack and numpy.
"""
import argparse
import json
import os
import re
import signal
import sys
import time

import msgpack
import numpy as np
import zmq


def read_key(path, secret):
    text = open(path).read()
    pub = re.search(r'public-key\s*=\s*"([^"]{40})"', text)
    sec = re.search(r'secret-key\s*=\s*"([^"]{40})"', text)
    if not pub or (secret and not sec):
        sys.exit(f"fanout_client.py: {path}: not a key file")
    return pub.group(1).encode(), sec.group(1).encode() if secret else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ep")
    ap.add_argument("queries", nargs="?")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--rate", type=float, default=0)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--deadline", type=float, default=5.0)
    ap.add_argument("--signal")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--after", type=float, default=0.5)
    ap.add_argument("--probe", type=float)
    ap.add_argument("--save-partial")
    ap.add_argument("--dump-lat")
    ap.add_argument("--curve-key")
    ap.add_argument("--curve-server")
    a = ap.parse_args()

    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    if a.curve_key:
        pub, sec = read_key(a.curve_key, True)
        srv, _ = read_key(a.curve_server, False)
        s.curve_publickey, s.curve_secretkey, s.curve_serverkey = pub, sec, srv
    s.connect(a.ep)
    if a.probe is not None:
        s.send_multipart([b"", msgpack.packb({"t": "info"})])
        got = s.poll(int(a.probe * 1000)) != 0
        print(json.dumps({"answered": bool(got)}))
        return
    q = np.load(a.queries).astype("<f4")
    sent_at, lat = {}, []
    answered, results, partial, errors, dup, unknown = 0, 0, 0, 0, 0, 0
    missing = set()
    done = set()
    t0 = time.monotonic()
    fired = False
    i = 0
    last_send = t0

    def take(timeout_ms):
        nonlocal answered, results, partial, errors, dup, unknown
        if not s.poll(timeout_ms):
            return False
        while True:
            try:
                parts = s.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return True
            f = msgpack.unpackb(parts[-1], raw=False)
            qid = f.get("qid")
            if qid not in sent_at:
                unknown += 1
                continue
            if qid in done:
                dup += 1
                continue
            done.add(qid)
            answered += 1
            lat.append(time.monotonic() - sent_at[qid])
            if f["t"] == "result":
                results += 1
                if f.get("partial"):
                    if partial == 0 and a.save_partial:
                        open(a.save_partial, "wb").write(parts[-1])
                    partial += 1
                    missing.update(f.get("missing", []))
            else:
                errors += 1

    while i < a.n:
        now = time.monotonic()
        if a.signal and not fired and now - t0 >= a.after:
            os.kill(a.pid, getattr(signal, "SIG" + a.signal))
            fired = True
        if a.rate > 0 and now < t0 + i / a.rate:
            take(max(0, int((t0 + i / a.rate - now) * 1000)))
            continue
        if i - answered >= a.window:
            take(10)
            continue
        frame = {"t": "query", "qid": i, "vec": q[i % len(q)].tobytes(), "k": a.k}
        sent_at[i] = time.monotonic()
        s.send_multipart([b"", msgpack.packb(frame, use_bin_type=True)])
        last_send = sent_at[i]
        i += 1
        take(0)
    while answered < a.n and time.monotonic() < last_send + a.deadline:
        take(50)
    if a.signal and not fired:
        os.kill(a.pid, getattr(signal, "SIG" + a.signal))
    t = time.monotonic() - t0
    if a.dump_lat:
        with open(a.dump_lat, "w") as f:
            f.write("".join("%.6f\n" % (1000 * x) for x in lat))
    lat.sort()
    pct = lambda p: round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 3) if lat else None
    print(json.dumps({"sent": a.n, "answered": answered, "results": results, "partial": partial,
                      "errors": errors, "lost": a.n - answered, "dup": dup, "unknown": unknown,
                      "missing": sorted(missing), "p50_ms": pct(0.5), "p99_ms": pct(0.99),
                      "max_ms": pct(1.0), "qps": round(answered / t, 1)}))


main()
