#!/usr/bin/python3
"""server_frames.py BIN INDEX OUT: serve INDEX with query --serve, send an
info, a query, a bad query, a stats and a reload request and a batch of two
queries, and write the requests and the server's answers, in order, as
concatenated frames to OUT (fixtures for tests/dump.bats)."""
import os
import subprocess
import sys
import tempfile
import time

import msgpack
import numpy as np
import zmq

bin_, index, out = sys.argv[1:4]
tmp = tempfile.mkdtemp()
ep = "ipc://" + os.path.join(tmp, "s")
p = subprocess.Popen([os.path.join(bin_, "query"), "--index", index, "--serve", ep],
                     stderr=subprocess.DEVNULL)
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 0)
s.connect(ep)
frames = []
try:
    for req in ({"t": "info"},
                {"t": "query", "qid": 1, "vec": np.ones(8, "<f4").tobytes(), "k": 3},
                {"t": "query", "qid": 2, "vec": np.ones(3, "<f4").tobytes()},
                {"t": "stats"},
                {"t": "reload", "path": index},
                {"t": "queries", "qid": 3, "n": 2, "vecs": np.ones(16, "<f4").tobytes(), "k": 2}):
        b = msgpack.packb(req, use_bin_type=True)
        s.send_multipart([b"", b])
        if not s.poll(20000):
            sys.exit("server_frames: no answer")
        frames += [b, s.recv_multipart()[-1]]
finally:
    p.terminate()
    p.wait()
with open(out, "wb") as f:
    f.write(b"".join(frames))
