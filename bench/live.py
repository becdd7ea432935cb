#!/usr/bin/python3
"""bench/live.py - consolidate's live mode under load: P producers over ZeroMQ
inserting (and deleting their oldest rows) while C clients query, for D
seconds on loopback. Reports updates/s, query latency p50/p99, acknowledged
updates lost (checked in the checkpoint written on SIGTERM) and deleted ids
returned by a query sent after the delete's acknowledgement.

usage: bench/live.py --base BASE.fvecs [--producers 4] [--clients 2]
                     [--seconds 120] [--batch 10] [--keep 20000] [--bin bin]
                     [--work DIR] [--sync]
"""
import argparse
import os
import signal
import subprocess
import sys
import threading
import time

import msgpack
import numpy as np
import zmq


def read_fvecs(path):
    raw = np.fromfile(path, dtype="<i4")
    d = int(raw[0])
    return raw.reshape(-1, d + 1)[:, 1:].view("<f4").copy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--producers", type=int, default=4)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--keep", type=int, default=20000)
    ap.add_argument("--bin", default="bin")
    ap.add_argument("--work", default="bench/work/live")
    ap.add_argument("--sync", action="store_true", help="fdatasync the log per update")
    a = ap.parse_args()
    x = np.ascontiguousarray(read_fvecs(a.base), dtype=np.float32)
    os.makedirs(a.work, exist_ok=True)
    for f in ("wal", "idx"):
        if os.path.exists(os.path.join(a.work, f)):
            os.remove(os.path.join(a.work, f))
    qep, uep = "tcp://127.0.0.1:25611", "tcp://127.0.0.1:25612"
    cmd = [os.path.join(a.bin, "consolidate"), "--serve", qep, "--updates", uep, "--wal",
           os.path.join(a.work, "wal"), "-o", os.path.join(a.work, "idx"),
           "--checkpoint-every", "100000"] + ([] if a.sync else ["--no-sync"])
    srv = subprocess.Popen(cmd, stderr=open(os.path.join(a.work, "server.log"), "w"))
    time.sleep(0.5)
    stop = time.time() + a.seconds
    lock = threading.Lock()
    acked_ins, del_ack = set(), {}  # id -> time its delete was acknowledged
    n_updates = [0]
    per = len(x) // a.producers

    def producer(p):
        ctx = zmq.Context.instance()
        s = ctx.socket(zmq.DEALER)
        s.connect(uep)
        nxt, oldest, live = 0, 0, 0
        base_id = p * 10**9
        while time.time() < stop:
            if live >= a.keep:
                ids = np.arange(oldest, oldest + a.batch, dtype="<u8") + base_id
                fr = {"t": "delete", "n": a.batch, "ids": ids.tobytes()}
                oldest += a.batch
                live -= a.batch
            else:
                rows = (np.arange(nxt, nxt + a.batch) % per) + p * per
                ids = np.arange(nxt, nxt + a.batch, dtype="<u8") + base_id
                fr = {"t": "insert", "n": a.batch, "ids": ids.tobytes(), "data": x[rows].tobytes()}
                nxt += a.batch
                live += a.batch
            s.send_multipart([b"", msgpack.packb(fr)])
            ans = msgpack.unpackb(s.recv_multipart()[-1], raw=False)
            t = time.time()
            assert ans["t"] == "ack", ans
            with lock:
                n_updates[0] += 1
                if fr["t"] == "insert":
                    acked_ins.update(int(i) for i in ids)
                else:
                    for i in ids:
                        del_ack[int(i)] = t

    lat, answers = [], []  # (send time, ids)

    def client(c):
        ctx = zmq.Context.instance()
        s = ctx.socket(zmq.DEALER)
        s.connect(qep)
        rng = np.random.default_rng(c)
        qid = 0
        while time.time() < stop:
            v = x[rng.integers(len(x))] + rng.normal(0, 1, x.shape[1]).astype(np.float32)
            t0 = time.time()
            s.send_multipart([b"", msgpack.packb({"t": "query", "qid": qid, "vec": v.tobytes(),
                                                  "k": 10, "ef": 64})])
            ans = msgpack.unpackb(s.recv_multipart()[-1], raw=False)
            t1 = time.time()
            qid += 1
            if ans["t"] == "result":
                with lock:
                    lat.append(t1 - t0)
                    answers.append((t0, np.frombuffer(ans["ids"], "<u8").copy()))

    th = [threading.Thread(target=producer, args=(p,)) for p in range(a.producers)]
    th += [threading.Thread(target=client, args=(c,)) for c in range(a.clients)]
    t_start = time.time()
    for t in th:
        t.start()
    for t in th:
        t.join()
    elapsed = time.time() - t_start
    srv.send_signal(signal.SIGTERM)
    srv.wait()
    bad = sum(1 for t0, ids in answers for i in ids if int(i) in del_ack and del_ack[int(i)] < t0)
    ids = set()
    for f in msgpack.Unpacker(open(os.path.join(a.work, "idx"), "rb"), raw=False,
                              max_buffer_size=1 << 31):
        if f.get("t") == "ids":
            ids.update(np.frombuffer(f["ids"], "<u8").tolist())
    want = acked_ins - set(del_ack)
    lost = len(want - ids)
    resurrected = len(set(del_ack) & ids)
    lat = np.array(lat) * 1000
    print(f"live: {a.producers} producers, {a.clients} clients, {elapsed:.0f} s on loopback "
          f"({'fdatasync per update' if a.sync else '--no-sync'}, {a.batch} vectors an update): "
          f"{n_updates[0] / elapsed:.0f} updates/s ({n_updates[0] * a.batch / elapsed:.0f} "
          f"vectors/s), {len(lat) / elapsed:.0f} QPS, query p50 {np.percentile(lat, 50):.2f} ms "
          f"p99 {np.percentile(lat, 99):.2f} ms; acknowledged updates lost {lost}, deleted ids "
          f"back {resurrected}, deleted ids returned after their ack {bad}")


if __name__ == "__main__":
    main()
