#!/usr/bin/python3
"""The sleep cycle end to end on a live server under query load (issue 16).

A client keeps WINDOW queries in flight against --endpoint (query --serve
--log, or consolidate --serve --log) and checks every answer: the qid it
asked, k results, distances ascending and equal to the exact squared-l2
distance of the named base row (so no answer names a wrong vector), and
recall@k against brute force. Phase 1 sends --log-queries queries (the log
retraining replays); phase 2 starts --retrain (a shell command: the
pipeline) while the load goes on, and keeps sending until it has finished
and --after seconds more. Prints one line of counts, the pipeline's
"held-aside"/"retrain" lines, and the mean recall before and after the
swap; exits 1 when any request was lost, refused or answered wrongly, or
the pipeline failed.
Needs /usr/bin/python3 with python3-zmq, python3-msgpack and numpy.
"""
import argparse
import subprocess
import sys
import time

import msgpack
import numpy as np
import zmq


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--base", required=True, help=".npy base vectors (row = id)")
    ap.add_argument("--queries", required=True, help=".npy query vectors, cycled")
    ap.add_argument("--log-queries", type=int, default=1000)
    ap.add_argument("--retrain", required=True, help="shell command run in phase 2")
    ap.add_argument("--after", type=float, default=1.0)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--recall", type=float, default=0, help="ask this recall (0: ef)")
    ap.add_argument("--ef", type=int, default=64)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds an answer may take")
    a = ap.parse_args()

    base = np.load(a.base).astype(np.float32)
    Q = np.load(a.queries).astype(np.float32)
    bn = (base * base).sum(1)
    d_all = (Q * Q).sum(1)[:, None] - 2 * Q @ base.T + bn[None, :]
    truth = np.argsort(d_all, axis=1)[:, : a.k]
    kth = np.take_along_axis(d_all, truth[:, -1:], axis=1)[:, 0]

    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(a.endpoint)
    sent = answered = wrong = refused = 0
    hits = {0: [0, 0], 1: [0, 0]}  # phase -> [hits, asked]
    inflight = {}  # qid -> (row, t_sent, phase)
    problems = []
    lat = []  # seconds from send to answer (the window included)
    qid = 0
    proc = None
    t_done = None

    def send(phase):
        nonlocal qid, sent
        row = qid % len(Q)
        f = {"t": "query", "qid": qid, "vec": Q[row].tobytes(), "k": a.k}
        if a.recall > 0:
            f["recall"] = a.recall
        else:
            f["ef"] = a.ef
        s.send_multipart([b"", msgpack.packb(f, use_bin_type=True)])
        inflight[qid] = (row, time.time(), phase)
        qid += 1
        sent += 1

    def check(m):
        nonlocal answered, wrong, refused
        q = m.get("qid")
        if q not in inflight:
            wrong += 1
            problems.append("an answer for qid %r never asked (or twice)" % q)
            return
        row, t_sent, phase = inflight.pop(q)
        lat.append(time.time() - t_sent)
        answered += 1
        if m.get("t") != "result":
            refused += 1
            problems.append("qid %d: %s" % (q, m.get("msg", m.get("t"))))
            return
        wide = len(m["ids"]) == 2 * len(m["dists"])  # u64 external ids, else u32
        ids = np.frombuffer(m["ids"], dtype="<u8" if wide else "<u4")
        if ids.max(initial=0) >= len(base):
            wrong += 1
            problems.append("qid %d: an id beyond the base set" % q)
            return
        dists = np.frombuffer(m["dists"], dtype="<f4")
        true_d = d_all[row, ids.astype(np.int64)]
        ok = (len(ids) == a.k and np.all(np.diff(dists) >= -1e-4 * (1 + abs(dists[:-1])))
              and np.allclose(dists, true_d, rtol=1e-3, atol=1e-2))
        if not ok:
            wrong += 1
            problems.append("qid %d: ids/distances do not match the base vectors" % q)
        hits[phase][0] += int((true_d <= kth[row] * (1 + 1e-5) + 1e-3).sum())
        hits[phase][1] += a.k

    phase = 0
    while True:
        if phase == 0 and sent >= a.log_queries and not inflight:
            phase = 1
            proc = subprocess.Popen(a.retrain, shell=True, stderr=subprocess.PIPE, text=True)
        if proc is not None and t_done is None and proc.poll() is not None:
            t_done = time.time()
        if t_done is not None and time.time() - t_done > a.after:
            break
        stop_sending = phase == 0 and sent >= a.log_queries
        while len(inflight) < a.window and not stop_sending:
            send(1 if (phase == 1 and t_done is not None) else phase)
            stop_sending = phase == 0 and sent >= a.log_queries
        if s.poll(200):
            parts = s.recv_multipart()
            check(msgpack.unpackb(parts[-1], raw=False))
        now = time.time()
        late = [q for q, (_, t, _) in inflight.items() if now - t > a.timeout]
        if late:
            problems.append("%d requests unanswered after %.0f s" % (len(late), a.timeout))
            break
    deadline = time.time() + a.timeout
    while inflight and time.time() < deadline:
        if s.poll(200):
            check(msgpack.unpackb(s.recv_multipart()[-1], raw=False))
    lost = len(inflight)
    err = proc.stderr.read() if proc else ""
    rc = proc.wait() if proc else -1
    for line in err.splitlines():
        if "held-aside" in line or line.startswith("retrain:"):
            print(line)
    r0 = hits[0][0] / max(hits[0][1], 1)
    r1 = hits[1][0] / max(hits[1][1], 1)
    ms = np.array(lat) * 1000 if lat else np.zeros(1)
    print("sleep-cycle: %d sent, %d answered, %d lost, %d refused, %d wrong; pipeline status %d; "
          "recall@%d %.4f before the swap, %.4f after; latency p50 %.2f ms, p99 %.2f ms, max %.0f ms"
          % (sent, answered, lost, refused, wrong, rc, a.k, r0, r1, np.percentile(ms, 50),
             np.percentile(ms, 99), ms.max()))
    for p in problems[:5]:
        print("sleep-cycle: " + p)
    if rc != 0:
        print(err[-1500:])
    sys.exit(1 if lost or refused or wrong or rc != 0 else 0)


if __name__ == "__main__":
    main()
