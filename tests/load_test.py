#!/usr/bin/python3
"""Load and abuse test for `query --serve` on loopback.

Runs CLIENTS processes, each a ZeroMQ DEALER (with REQ's empty delimiter, as
libcommon/serve.c's client does) sending PER_CLIENT query frames with at most
WINDOW in flight, and checks every answer against the stdin path's results
(`query --index IDX QUERIES`, read from --expected):

  * zero lost (every qid answered before the deadline), zero duplicated,
    no answer for a qid that was never asked;
  * every result frame byte-identical in ids and dists to the stdin path;
  * every MALFORMED_EVERY-th request is followed by a malformed one (bytes
    that are not MessagePack, a frame without "t", a wrong frame type, a wrong
    dimension, k over --max-k, a NaN, an "array of 2^32-1" bomb...), each of
    which must get exactly one error frame, without disturbing the rest;
  * --vanish N extra clients send requests and disconnect without reading.

Prints one line with p50/p99 latency (send to answer, window included) and
QPS, and exits 1 on any discrepancy, naming it.

--sigterm PID: instead, every client sends all its requests at once; once all
are sent (plus --sigterm-delay seconds) PID gets SIGTERM; every request must
still be answered (the server drains what it has received before exiting).

Query i of client c has qid c * PER_CLIENT + i and the vector of row
(i + 7919 c) mod NQ of --queries (a .npy), so clients ask in different orders.
Needs /usr/bin/python3 with python3-zmq, python3-msgpack and numpy.
"""
import argparse
import multiprocessing as mp
import os
import signal
import struct
import sys
import time

import msgpack
import numpy as np
import zmq

MALFORMED_QID = 1 << 40  # malformed requests carry qids from here on


def malformed(kind, qid, dim):
    """One malformed request payload; returns (bytes, qid echoed or None)."""
    good_vec = b"\0" * (4 * dim)
    if kind == 0:
        return b"\xc1 not msgpack", None
    if kind == 1:
        return msgpack.packb({"qid": qid, "vec": good_vec}), None  # no "t": no qid echoed
    if kind == 2:
        return msgpack.packb({"t": "vectors", "qid": qid}), qid
    if kind == 3:
        return msgpack.packb({"t": "query", "qid": qid, "vec": b"\0" * (4 * dim + 4)}), qid
    if kind == 4:
        return msgpack.packb({"t": "query", "qid": qid, "vec": good_vec, "k": 1 << 30}), qid
    if kind == 5:
        nan = struct.pack("<f", float("nan")) + b"\0" * (4 * dim - 4)
        return msgpack.packb({"t": "query", "qid": qid, "vec": nan}), qid
    if kind == 6:
        return b"\xdd\xff\xff\xff\xff", None  # array of 2^32-1 elements, 5 bytes
    if kind == 7:
        return b"\xdf\xff\xff\xff\xff\xa1t", None  # map of 2^32-1 pairs
    if kind == 8:
        return msgpack.packb({"t": "query", "qid": qid, "vec": good_vec}) + b"\x00", None
    if kind == 9:
        return b"", None
    return msgpack.packb({"t": "query", "qid": qid, "vec": "a string"}), qid


N_KINDS = 11


def client(cid, args, q, out):
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, 0)
    s.setsockopt(zmq.SNDHWM, 0)
    s.connect(args.endpoint)
    n, dim, nq = args.per_client, q.shape[1], q.shape[0]
    base = cid * n
    window = n if args.sigterm else args.window
    sent_at = {}
    answers = {}
    errors = {}  # malformed qid (or ordinal for qid-less ones) -> count
    anon_errors = 0
    dup = unexpected = bad_err = 0
    malformed_sent = malformed_anon = 0
    lat = []
    recv_wall = []  # wall-clock time of every answer (SIGTERM mode)
    nxt = 0
    deadline = None
    poller = zmq.Poller()
    poller.register(s, zmq.POLLIN)

    def send_next():
        nonlocal nxt, malformed_sent, malformed_anon
        i = nxt
        qid = base + i
        row = (i + 7919 * cid) % nq
        s.send_multipart([b"", msgpack.packb({"t": "query", "qid": qid, "vec": q[row].tobytes()})])
        sent_at[qid] = time.perf_counter()
        nxt += 1
        if args.malformed_every and i % args.malformed_every == args.malformed_every - 1:
            mq = MALFORMED_QID + base + i
            payload, echo = malformed((i // args.malformed_every + cid) % N_KINDS, mq, dim)
            s.send_multipart([b"", payload])
            malformed_sent += 1
            if echo is None:
                malformed_anon += 1
            else:
                errors[mq] = 0

    while nxt < n and nxt < window:
        send_next()
    if args.sigterm:
        out.put(("sent", cid))
    deadline = time.monotonic() + args.timeout
    done = 0
    while done < n or (anon_errors + sum(errors.values())) < malformed_sent:
        if time.monotonic() > deadline:
            break
        if not poller.poll(200):
            continue
        while True:
            try:
                parts = s.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            t = time.perf_counter()
            if len(parts) != 2 or parts[0] != b"":
                unexpected += 1
                continue
            f = msgpack.unpackb(parts[1], raw=False)
            if f.get("t") == "error":
                qid = f.get("qid")
                if qid is None:
                    anon_errors += 1
                elif qid in errors:
                    errors[qid] += 1
                else:
                    bad_err += 1
                    if bad_err < 4:
                        print(f"client {cid}: error frame for qid {qid}: {f.get('msg')}",
                              file=sys.stderr)
                continue
            qid = f.get("qid")
            if f.get("t") != "result" or qid not in sent_at:
                unexpected += 1
                continue
            if qid in answers:
                dup += 1
                continue
            row = ((qid - base) + 7919 * cid) % nq
            answers[qid] = (f["ids"], f["dists"], row)
            lat.append(t - sent_at[qid])
            if args.sigterm:
                recv_wall.append(time.time())
            done += 1
            if nxt < n:
                send_next()
        deadline = time.monotonic() + args.timeout  # progress resets the clock
    mismatched = 0
    for qid, (ids, dists, row) in answers.items():
        want = args.expected_map[row]
        if ids != want[0] or dists != want[1]:
            mismatched += 1
    err_dup = sum(1 for c in errors.values() if c > 1)
    err_missing = sum(1 for c in errors.values() if c == 0) + max(0, malformed_anon - anon_errors)
    out.put(("done", cid, {
        "sent": nxt, "answered": len(answers), "lost": nxt - len(answers), "dup": dup,
        "mismatched": mismatched, "unexpected": unexpected + bad_err,
        "malformed": malformed_sent, "error_frames": anon_errors + sum(errors.values()),
        "error_missing": err_missing, "error_dup": err_dup + max(0, anon_errors - malformed_anon),
    }, lat, recv_wall))
    s.close()
    ctx.term()


def vanisher(vid, args, q):
    """Send a burst of requests (one of them malformed), then disconnect
    without reading: the server must not care."""
    for rep in range(3):
        ctx = zmq.Context()
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(args.endpoint)
        for i in range(200):
            s.send_multipart([b"", msgpack.packb({"t": "query", "qid": i,
                                                  "vec": q[i % q.shape[0]].tobytes()})])
        s.send_multipart([b"", b"\xc1"])
        time.sleep(0.05 * (rep + 1))
        s.close()
        ctx.term()


def read_expected(path):
    m = {}
    with open(path, "rb") as fh:
        for f in msgpack.Unpacker(fh, raw=False):
            if f.get("t") == "result":
                m[f["qid"]] = (f["ids"], f["dists"])
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--queries", required=True, help=".npy, float32 (NQ, dim)")
    ap.add_argument("--expected", required=True, help="results stream of the stdin path")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--per-client", type=int, default=20000)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--malformed-every", type=int, default=0)
    ap.add_argument("--vanish", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds without progress")
    ap.add_argument("--sigterm", type=int, default=0, metavar="PID")
    ap.add_argument("--sigterm-delay", type=float, default=0.3)
    args = ap.parse_args()
    q = np.load(args.queries).astype("<f4")
    args.expected_map = read_expected(args.expected)
    if len(args.expected_map) != q.shape[0]:
        sys.exit(f"load_test: {len(args.expected_map)} expected results for {q.shape[0]} queries")

    out = mp.Queue()
    t0 = time.perf_counter()
    procs = [mp.Process(target=client, args=(c, args, q, out)) for c in range(args.clients)]
    procs += [mp.Process(target=vanisher, args=(v, args, q)) for v in range(args.vanish)]
    for p in procs:
        p.start()
    results, lats, walls, sent, t_kill = {}, [], [], 0, None
    while len(results) < args.clients:
        msg = out.get(timeout=args.timeout * 10)
        if msg[0] == "sent":
            sent += 1
            if sent == args.clients:
                time.sleep(args.sigterm_delay)
                t_kill = time.time()
                os.kill(args.sigterm, signal.SIGTERM)
        else:
            results[msg[1]] = msg[2]
            lats.extend(msg[3])
            walls.extend(msg[4])
    wall = time.perf_counter() - t0
    for p in procs:
        p.join(timeout=30)
    tot = {k: sum(r[k] for r in results.values()) for k in next(iter(results.values()))}
    lat = np.array(lats) * 1000.0
    p50 = float(np.percentile(lat, 50)) if len(lat) else float("nan")
    p99 = float(np.percentile(lat, 99)) if len(lat) else float("nan")
    print(f"load_test: {args.clients} clients x {args.per_client} queries"
          f"{' (SIGTERM mid-load)' if args.sigterm else ''}: sent {tot['sent']}, "
          f"answered {tot['answered']}, lost {tot['lost']}, duplicated {tot['dup']}, "
          f"mismatched {tot['mismatched']}, unexpected {tot['unexpected']}; "
          f"malformed {tot['malformed']}, error frames {tot['error_frames']} "
          f"(missing {tot['error_missing']}, extra {tot['error_dup']}); "
          f"p50 {p50:.3f} ms, p99 {p99:.3f} ms, {tot['answered'] / wall:.0f} QPS "
          f"over {wall:.1f} s (window {args.window if not args.sigterm else 'all'})"
          + (f"; answers after SIGTERM {sum(1 for t in walls if t > t_kill)}"
             if t_kill else ""))
    bad = [k for k in ("lost", "dup", "mismatched", "unexpected", "error_missing", "error_dup")
           if tot[k]]
    if tot["sent"] != args.clients * args.per_client:
        bad.append("sent")
    if bad:
        sys.exit("load_test: FAILED: " + ", ".join(f"{k}={tot[k]}" for k in bad))


if __name__ == "__main__":
    main()
