"""hnswflow from Python: build an index from a numpy array, serve it, search it.

A thin client (STYLE.md, "Python beside C"): it runs the hnswflow filters
and speaks their MessagePack frames over pipes and ZeroMQ with Debian's
numpy, pyzmq and msgpack. It holds no index logic of its own.

    import numpy as np, hnswflow
    X = np.random.default_rng(0).standard_normal((10000, 128), dtype=np.float32)
    hnswflow.build(X, "x.idx", metric="l2", M=16, ef_construction=200, threads=2)
    with hnswflow.Server("x.idx") as s:           # query --serve on a private ipc:// endpoint
        ids, dists = s.search(X[:1000], k=10, ef=64)

Client(endpoint) talks to a server started elsewhere (query --serve, or
consolidate --serve); Live(...) runs consolidate's live mode and adds
insert(ids, X) / delete(ids). Filters' failures arrive as HnswflowError
carrying the filter's one-line message.

CURVE (the filters' --curve-* options, key files from
pipelines/curve-keygen.sh): Client(ep, curve_key="me.secret",
curve_server="server") encrypts and presents its key, and raises
HnswflowError when the server refuses it; Server and Live also take
curve_secret="server.secret", curve_allow="allow/" for the filter they
start (whose ZAP handler checks every client's key), and then need
curve_key/curve_server for their own connection.

Where the filters are: $HNSWFLOW_EXEC_PATH, else the libexec directory
recorded by `make install`, else the checkout's bin/ beside this package,
else `hnswflow --exec-path` from PATH.
"""
import os
import shutil
import subprocess
import re
import sys
import tempfile
import threading
import time

import msgpack
import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

__all__ = ["HnswflowError", "build", "Client", "Server", "Live", "exec_path", "read_curve_key"]


class HnswflowError(Exception):
    """A filter or a server refused: str(e) is its one-line message."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        self.status = status


def exec_path():
    """The directory holding the filters."""
    env = os.environ.get("HNSWFLOW_EXEC_PATH")
    if env:
        return env
    try:
        from . import _installed  # written by make install

        return _installed.EXEC_PATH
    except ImportError:
        pass
    here = os.path.dirname(os.path.abspath(__file__))
    repo_bin = os.path.normpath(os.path.join(here, "..", "..", "..", "bin"))
    if os.path.isfile(os.path.join(repo_bin, "query")):
        return repo_bin
    disp = shutil.which("hnswflow")
    if disp:
        return subprocess.run([disp, "--exec-path"], capture_output=True, text=True,
                              check=True).stdout.strip()
    raise HnswflowError("hnswflow filters not found: set HNSWFLOW_EXEC_PATH or make install")


def _filter(name):
    return os.path.join(exec_path(), name)


class _Stderr(threading.Thread):
    """Reads a filter's stderr: keeps its last line, echoes when asked,
    and sets `seen` when a line containing `marker` arrives."""

    def __init__(self, stream, echo=False, marker=None):
        super().__init__(daemon=True)
        self.stream, self.echo, self.marker = stream, echo, marker
        self.last = ""
        self.lines = []
        self.seen = threading.Event()
        self.start()

    def run(self):
        buf = b""
        while True:
            chunk = self.stream.read1(65536) if hasattr(self.stream, "read1") else self.stream.read(65536)
            if not chunk:
                break
            if self.echo:
                sys.stderr.write(chunk.decode("utf-8", "replace"))
                sys.stderr.flush()
            buf += chunk
            *done, buf = buf.replace(b"\r", b"\n").split(b"\n")
            for ln in done:
                ln = ln.decode("utf-8", "replace").strip()
                if ln:
                    self.last = ln
                    self.lines.append(ln)
                    if self.marker and self.marker in ln:
                        self.seen.set()
        if buf.strip():
            self.last = buf.decode("utf-8", "replace").strip()
            self.lines.append(self.last)
        self.seen.set()


def _error_line(lines, fallback):
    """The filter's one-line message: the last line naming a filter."""
    for ln in reversed(lines):
        if ":" in ln and not ln.startswith(("\r",)):
            return ln
    return fallback


def build(X, path, metric="l2", M=16, ef_construction=200, threads=None, ids=None,
          progress=True, options=()):
    """Build an index file at `path` from X: a 2-D numpy array (any float or
    integer dtype; written as float32) or the name of a vector file
    embed-load reads. ids: optional 1-D integer array of external u64 ids.
    progress: graph-build's progress lines go to stderr. Raises
    HnswflowError with the failing filter's message."""
    tmp = tempfile.mkdtemp(prefix="hnswflow-")
    try:
        if isinstance(X, (str, os.PathLike)):
            src = os.fspath(X)
        else:
            A = np.asarray(X)
            if A.ndim != 2:
                raise HnswflowError("build: X must be a 2-D array, got shape %s" % (A.shape,))
            src = os.path.join(tmp, "x.npy")
            np.save(src, np.ascontiguousarray(A, dtype=np.float32))
        load = [_filter("embed-load")]
        if ids is not None:
            idf = os.path.join(tmp, "ids.npy")
            np.save(idf, np.asarray(ids, dtype=np.uint64).reshape(-1))
            load += ["--ids", idf]
        load.append(src)
        gb = [_filter("graph-build"), "--metric", metric, "-M", str(M),
              "--ef-construction", str(ef_construction), "-o", os.fspath(path)]
        if threads:
            gb += ["--threads", str(threads)]
        gb += list(options)
        p1 = subprocess.Popen(load, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p2 = subprocess.Popen(gb, stdin=p1.stdout, stderr=subprocess.PIPE)
        p1.stdout.close()
        e1 = _Stderr(p1.stderr)
        e2 = _Stderr(p2.stderr, echo=progress)
        r2, r1 = p2.wait(), p1.wait()
        e1.join()
        e2.join()
        if r1:
            raise HnswflowError(_error_line(e1.lines, "embed-load failed (%d)" % r1), r1)
        if r2:
            raise HnswflowError(_error_line(e2.lines, "graph-build failed (%d)" % r2), r2)
        return os.fspath(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_KEY_LINE = re.compile(r'^\s*(public-key|secret-key)\s*=\s*"([^"]*)"')


def read_curve_key(path, secret):
    """The keys of a key file pipelines/curve-keygen.sh wrote (CZMQ's
    certificate format, read as libcommon/curve.c reads it): (public,
    secret) as Z85 bytes. secret=True: the NAME.secret file, which must hold
    the secret key; secret=False: a public file, which must not (the
    secret stays with its owner). HnswflowError naming the file otherwise."""
    path = os.fspath(path)
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise HnswflowError("%s: cannot open key file: %s" % (path, e.strerror)) from None
    keys = {}
    for n, ln in enumerate(lines, 1):
        m = _KEY_LINE.match(ln)
        if not m:
            continue
        if len(m.group(2)) != 40:
            raise HnswflowError("%s: line %d: a key is not 40 Z85 characters" % (path, n))
        keys.setdefault(m.group(1), m.group(2).encode())
    if "public-key" not in keys:
        raise HnswflowError("%s: no public-key line (make keys with curve-keygen.sh)" % path)
    if secret and "secret-key" not in keys:
        raise HnswflowError("%s: no secret-key line: give the NAME.secret file" % path)
    if not secret and "secret-key" in keys:
        raise HnswflowError("%s holds a secret key: give the server's public file" % path)
    return keys["public-key"], keys.get("secret-key")


def _curve_client(key, server):
    """(public, secret, server public) for a CURVE client, or None."""
    if key is None and server is None:
        return None
    if key is None or server is None:
        raise HnswflowError("curve_key and curve_server go together")
    if not zmq.has("curve"):
        raise HnswflowError("this libzmq has no CURVE support")
    pub, sec = read_curve_key(key, True)
    return pub, sec, read_curve_key(server, False)[0]


def _curve_server_args(secret, allow):
    """The filter options of a CURVE server (its ZAP handler checks the keys)."""
    if secret is None and allow is None:
        return []
    if secret is None or allow is None:
        raise HnswflowError("curve_secret and curve_allow go together")
    return ["--curve-secret", os.fspath(secret), "--curve-allow", os.fspath(allow)]


_HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH |
                     zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)


def _connect(ctx, endpoint, curve, timeout_ms):
    """A DEALER connected to endpoint. With CURVE, wait for the first
    handshake (as libcommon/curve.c's client does): a refused key is an
    HnswflowError now, not a request that is never answered."""
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if curve is None:
        s.connect(endpoint)
        return s
    s.curve_publickey, s.curve_secretkey, s.curve_serverkey = curve
    mon = s.get_monitor_socket(_HANDSHAKE_EVENTS)
    try:
        s.connect(endpoint)
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not mon.poll(max(1, int(left * 1000))):
                raise HnswflowError("%s: no CURVE handshake within %.0f s" %
                                    (endpoint, timeout_ms / 1000))
            ev = recv_monitor_message(mon)
            if ev["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                return s
            if ev["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                raise HnswflowError("%s: the server refused our CURVE key (status %d: not on its "
                                    "allow-list?)" % (endpoint, ev["value"]))
            if ev["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                raise HnswflowError("%s: CURVE handshake failed (does the server require CURVE, "
                                    "with the key of curve_server?)" % endpoint)
    except BaseException:
        s.close(0)
        raise
    finally:
        if not s.closed:
            s.disable_monitor()
        mon.close(0)


def _answer(sock, timeout_ms):
    if not sock.poll(timeout_ms):
        raise HnswflowError("no answer within %.0f s" % (timeout_ms / 1000))
    parts = sock.recv_multipart(copy=True)
    return msgpack.unpackb(parts[-1], raw=False)


class Client:
    """Queries a server (query --serve, consolidate --serve) at `endpoint`.
    One object may be used from many threads: each thread gets its own
    DEALER socket. `window` requests are kept in flight per search.
    curve_key (this client's NAME.secret file) and curve_server (the
    server's public file): talk CURVE to a server started with
    --curve-secret/--curve-allow; HnswflowError if it refuses the key."""

    def __init__(self, endpoint, timeout=60.0, window=512, curve_key=None, curve_server=None):
        self.endpoint = endpoint
        self.timeout_ms = int(timeout * 1000)
        self.window = window
        self._curve = _curve_client(curve_key, curve_server)
        self._ctx = zmq.Context()
        self._local = threading.local()
        self._socks = []
        self._lock = threading.Lock()
        try:
            info = self.info()
        except BaseException:
            Client.close(self)
            raise
        self.dim = int(info["dim"])
        self.metric = info["metric"]
        self.count = int(info.get("count", 0))
        self.ids_u64 = info.get("ids") == "u64"

    def _sock(self):
        s = getattr(self._local, "sock", None)
        if s is None:
            s = _connect(self._ctx, self.endpoint, self._curve, self.timeout_ms)
            self._local.sock = s
            with self._lock:
                self._socks.append(s)
        return s

    def _request(self, frame):
        s = self._sock()
        s.send_multipart([b"", msgpack.packb(frame, use_bin_type=True)])
        a = _answer(s, self.timeout_ms)
        if a.get("t") == "error":
            raise HnswflowError(a.get("msg", "server error"))
        return a

    def info(self):
        """{t:"info", dim, metric, count, ids?}"""
        return self._request({"t": "info"})

    def stats(self):
        """The server's counters: requests, errors, qps, p50_ms, p99_ms, ..."""
        return self._request({"t": "stats"})

    def reload(self, path=None):
        """Ask the server to load its index file again (query --serve) or to
        take the models of the retrained index file `path` (consolidate
        --serve). Returns {t:"reloaded", ...}; HnswflowError when refused
        (the server keeps serving what it had)."""
        frame = {"t": "reload"}
        if path is not None:
            frame["path"] = str(path)
        return self._request(frame)

    def search(self, Q, k=10, ef=64):
        """k nearest neighbours of each row of Q (2-D, float32 or castable).
        Returns (ids, dists): (n, k) arrays, nearest first; ids are uint64
        external ids when the index has them, int64 node numbers otherwise;
        rows with fewer than k answers are padded with -1 / inf (ids 2^64-1
        for uint64). A refused query raises HnswflowError with the server's
        message."""
        Q = np.ascontiguousarray(Q, dtype=np.float32)
        if Q.ndim == 1:
            Q = Q[None, :]
        if Q.ndim != 2:
            raise HnswflowError("search: Q must be a 2-D array, got shape %s" % (Q.shape,))
        n = Q.shape[0]
        idt = np.uint64 if self.ids_u64 else np.int64
        ids = np.full((n, k), np.iinfo(np.uint64).max if self.ids_u64 else -1, dtype=idt)
        dists = np.full((n, k), np.inf, dtype=np.float32)
        s = self._sock()
        # the request frame's bytes by hand: a constant head and tail around
        # qid and vec (the same map msgpack.packb would write), which halves
        # the client's time per query
        head = b"\x85\xa1t\xa5query\xa3qid"
        tail = msgpack.packb("k") + msgpack.packb(int(k)) + msgpack.packb("ef") + msgpack.packb(int(ef))
        vhead = b"\xa3vec" + msgpack.packb(Q[0].tobytes() if n else b"", use_bin_type=True)[: -Q.shape[1] * 4 or None]
        pint = msgpack.Packer().pack
        unpack = msgpack.unpackb
        rows = [Q[i].tobytes() for i in range(n)] if n else []
        sent = got = 0
        first_err = None
        win = max(1, self.window)
        rid = "<u8" if self.ids_u64 else "<u4"
        empty = b""
        while got < n:
            while sent < n and sent - got < win:
                s.send_multipart([empty, b"".join((head, pint(sent), vhead, rows[sent], tail))])
                sent += 1
            try:
                parts = s.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                if not s.poll(self.timeout_ms):
                    raise HnswflowError("no answer within %.0f s" % (self.timeout_ms / 1000))
                parts = s.recv_multipart()
            a = unpack(parts[-1], raw=False)
            got += 1
            if a.get("t") != "result":
                if first_err is None:
                    first_err = a.get("msg", "unexpected answer %r" % a.get("t"))
                continue
            i = a["qid"]
            r = np.frombuffer(a["ids"], rid)
            m = len(r)
            ids[i, :m] = r
            dists[i, :m] = np.frombuffer(a["dists"], "<f4")
        if first_err is not None:
            raise HnswflowError(first_err)
        return ids, dists

    def close(self):
        with self._lock:
            for s in self._socks:
                s.close(0)
            self._socks = []
        self._local = threading.local()
        if not self._ctx.closed:
            self._ctx.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Process:
    """A filter run as a server until close(): started on a private ipc://
    endpoint, ready once it says `marker` on stderr, stopped with SIGTERM."""

    def _start(self, argv, marker, timeout):
        self._tmp = tempfile.mkdtemp(prefix="hnswflow-")
        self.proc = subprocess.Popen(argv(self._tmp), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._err = _Stderr(self.proc.stderr, marker=marker)
        self._err.seen.wait(timeout)
        if self.proc.poll() is not None or not self._err.seen.is_set() or \
                marker not in " ".join(self._err.lines):
            self._stop()
            raise HnswflowError(_error_line(self._err.lines, "server did not start"),
                                self.proc.returncode)

    def _stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.join(5)
        shutil.rmtree(self._tmp, ignore_errors=True)


class Server(Client, _Process):
    """`query --index path --serve ipc://...` as a context manager:

        with hnswflow.Server("x.idx") as s:
            ids, dists = s.search(Q, k=10, ef=64)

    options: further query options (e.g. ["--threads", "2"]).
    curve_secret, curve_allow: the server requires CURVE (--curve-secret,
    --curve-allow); this object's own connection then takes curve_key and
    curve_server, a key on that allow-list."""

    def __init__(self, path, endpoint=None, options=(), timeout=60.0, window=512,
                 curve_secret=None, curve_allow=None, curve_key=None, curve_server=None):
        curve = _curve_server_args(curve_secret, curve_allow)
        _curve_client(curve_key, curve_server)  # bad key files fail before the start

        def argv(tmp):
            self.endpoint = endpoint or "ipc://" + os.path.join(tmp, "query.sock")
            return [_filter("query"), "--index", os.fspath(path), "--serve", self.endpoint] + \
                curve + list(options)

        self._start(argv, "serving", timeout)
        try:
            Client.__init__(self, self.endpoint, timeout, window, curve_key, curve_server)
        except BaseException:
            self._stop()
            raise

    def close(self):
        Client.close(self)
        self._stop()


class Live(Client, _Process):
    """consolidate's live mode: queries and updates against one index.

        with hnswflow.Live(index="x.idx", out="live.idx") as L:
            L.insert([7, 8], X2)      # upserts by external id
            L.delete([7])
            ids, dists = L.search(Q)

    index: start from this file (else empty: give metric, and the first
    insert fixes the dimension); out: checkpoint written on close; wal: a
    write-ahead log. Each call waits for consolidate's acknowledgement.
    curve_secret, curve_allow, curve_key, curve_server: CURVE on both
    endpoints, as for Server."""

    def __init__(self, index=None, out=None, wal=None, metric=None, options=(), timeout=60.0,
                 window=512, curve_secret=None, curve_allow=None, curve_key=None,
                 curve_server=None):
        curve = _curve_server_args(curve_secret, curve_allow)
        _curve_client(curve_key, curve_server)

        def argv(tmp):
            self.endpoint = "ipc://" + os.path.join(tmp, "query.sock")
            self.updates = "ipc://" + os.path.join(tmp, "updates.sock")
            a = [_filter("consolidate"), "--serve", self.endpoint, "--updates", self.updates]
            if index:
                a += ["--index", os.fspath(index)]
            a += ["-o", os.fspath(out) if out else os.path.join(tmp, "live.idx")]
            if wal:
                a += ["--wal", os.fspath(wal)]
            if metric:
                a += ["--metric", metric]
            return a + curve + list(options)

        self._start(argv, "live", timeout)
        try:
            Client.__init__(self, self.endpoint, timeout, window, curve_key, curve_server)
            self._up = _connect(self._ctx, self.updates, self._curve, self.timeout_ms)
        except BaseException:
            Client.close(self)
            self._stop()
            raise
        self._up_lock = threading.Lock()

    def _update(self, frame):
        with self._up_lock:
            self._up.send_multipart([b"", msgpack.packb(frame, use_bin_type=True)])
            a = _answer(self._up, self.timeout_ms)
        if a.get("t") == "error":
            raise HnswflowError(a.get("msg", "update refused"))
        if self.dim == 0 and "dim" in frame:
            self.dim = frame["dim"]
        return a.get("seq")

    def insert(self, ids, X):
        """Insert (or replace) rows X under external ids; returns the update's sequence number."""
        ids = np.ascontiguousarray(ids, dtype="<u8").reshape(-1)
        X = np.ascontiguousarray(X, dtype="<f4")
        if X.ndim == 1:
            X = X[None, :]
        if X.shape[0] != ids.shape[0]:
            raise HnswflowError("insert: %d ids for %d rows" % (ids.shape[0], X.shape[0]))
        return self._update({"t": "insert", "n": int(ids.shape[0]), "ids": ids.tobytes(),
                             "data": X.tobytes()})

    def delete(self, ids):
        """Delete by external id (a true delete); returns the sequence number."""
        ids = np.ascontiguousarray(ids, dtype="<u8").reshape(-1)
        return self._update({"t": "delete", "n": int(ids.shape[0]), "ids": ids.tobytes()})

    def search(self, Q, k=10, ef=64):
        # the live index always names vectors by external id
        self.ids_u64 = True
        return Client.search(self, Q, k, ef)

    def close(self):
        with self._up_lock:
            self._up.close(0)
        Client.close(self)
        self._stop()
