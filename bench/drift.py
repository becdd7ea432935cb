#!/usr/bin/python3
"""`make bench-drift`: forgetting of the navigation policy under drift (issue 16).

Per data set (bench/drift_data.py: task A = the first half of the classes or
clusters, task B = the second half; one index over all of them):
  A        nav-train on task A's queries (from scratch)
  scratchB nav-train on task B's queries from scratch
  then from A, on task B's queries: naive (fine-tuning), ewc (--ewc),
  replay (--replay: the reservoir of A's training queries kept in the
  policy), ewc+replay, ewc+replay+distill (--distill), and incremental
  (ewc+replay on a quarter of B's queries: the cheap update).
Every model is measured with `query --nav` over an ef grid on the test
queries of both tasks (never trained on); distance computations at
recall@10 = R (default 0.95) are interpolated on each curve. Gain = classic's
distance computations minus the model's. Retained A gain = the model's A
gain / model A's; B gain share = its B gain / scratchB's. Training time is
nav-train's wall time. Writes bench/results/drift.md and drift.csv, and
appends every row with its lambda to drift-sweep.csv (EWC=L VARIANTS=...
SLEEP=0 runs sweep lambda for its leave-one-data-set-out choice).

NAV=0 skips the navigation policy's rows (and the sleep cycle, which needs
them). EDGE=1 adds the edge scorer (edge-score on a --M0 48 candidate
graph, off by default: six trainings on the whole graph): A, scratchB, and
from A on task B naive, --ewc (EEWC, default 100), --replay 1000 and both;
each written graph is searched with plain `query --ef` over the ef grid,
and its gain is the classic graph's distance computations at recall R
minus its own. EEDGES=classic (or N) forces every edge-score run to the
classic graph's level-0 edge count (or N) instead of its tolerance search:
the gains are then at equal memory. EDGE=1 NAV=0 writes drift-edges.md
(drift-edges-EEDGES.md) alone.
"""
import csv
import os
import re
import subprocess
import sys
import time

PY = "/usr/bin/python3"
BIN = os.environ.get("BIN", "bin")
THREADS = os.environ.get("THREADS", str(os.cpu_count() or 1))
SETS = os.environ.get("DATASETS", "clustered fashion-mnist").split()
EFS = [int(x) for x in os.environ.get("EFS", "10,16,24,32,48,64,96,128,192").split(",")]
RECALLS = os.environ.get("RECALLS", "0.85,0.9,0.93,0.95,0.97,0.98,0.99,0.995").split(",")
TARGET = float(os.environ.get("RECALL", "0.95"))
EWC = os.environ.get("EWC", "100")  # nav-train's lambda
REWC = os.environ.get("REWC", "1")  # layer-route's (its Fisher has another scale)
EEWC = os.environ.get("EEWC", "100")  # edge-score's
# edge-score's edge count: "" its tolerance search, N, or "classic" (as
# many level-0 edges as the classic graph: gains then at equal memory)
EEDGES = os.environ.get("EEDGES", "")
DISTILL = os.environ.get("DISTILL", "0.5")
RES = os.environ.get("RES", "bench/results")
DATA = "bench/data/drift"


def say(*a):
    print("bench-drift:", *a, file=sys.stderr, flush=True)


def run(cmd, log=None):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if log:
        with open(log, "w") as f:
            f.write(r.stderr)
    if r.returncode != 0:
        sys.exit(f"bench-drift: {' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return r


def prepare(name):
    d = f"{DATA}/{name}"
    if not os.path.exists(f"{d}/B-test.npy"):
        run([PY, "bench/drift_data.py", name, "--out", d])
    for f in ("base", "A-train", "A-test", "B-train", "B-test"):
        if not os.path.exists(f"{d}/{f}.frames"):
            run([f"{BIN}/embed-load", f"{d}/{f}.npy", "-o", f"{d}/{f}.frames"])
    if not os.path.exists(f"{d}/classic.idx"):
        say(name, "building the classic graph")
        run([f"{BIN}/graph-build", "--threads", THREADS, "-o", f"{d}/classic.idx", f"{d}/base.frames"])
    for t in ("A", "B"):
        if not os.path.exists(f"{d}/{t}-gt.frames"):
            run([f"{BIN}/query", "--index", f"{d}/classic.idx", "--exact", "-k", "10",
                 "-o", f"{d}/{t}-gt.frames", f"{d}/{t}-test.frames"])
    return d


def train(d, out, args):
    """nav-train's wall and CPU seconds (CPU: user + system of the child, the
    steadier figure on a shared machine). Training from A reads A's index
    (the graph with A's policy) as input and --init both, as retrain.sh does."""
    inp = args[args.index("--init") + 1] if "--init" in args else f"{d}/classic.idx"
    import resource
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    run([f"{BIN}/nav-train", "--threads", THREADS, "--ppo-iters", "0", "--no-rivals", "-o", out] + args
        + [inp], log=out + ".log")
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.time() - t0, (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)


def train_router(d, out, args):
    run([f"{BIN}/layer-route", "--threads", THREADS, "-o", out] + args + [f"{d}/classic.idx"],
        log=out + ".log")


def joint_queries(d, w):
    """Both tasks' training queries in one shuffled stream: the router
    trained on A and B at once, the bound of what continual training can
    keep of both."""
    import numpy as np
    out = f"{w}/AB-train.frames"
    if not os.path.exists(out):
        q = np.concatenate([np.load(f"{d}/A-train.npy"), np.load(f"{d}/B-train.npy")])
        np.random.default_rng(1).shuffle(q)
        np.save(f"{w}/AB-train.npy", q)
        run([f"{BIN}/embed-load", f"{w}/AB-train.npy", "-o", out])
    return out


def l0_edges(idx):
    import msgpack
    import numpy as np
    t = 0
    with open(idx, "rb") as f:
        for fr in msgpack.Unpacker(f, raw=False, max_buffer_size=1 << 30):
            if fr["t"] == "links" and fr["level"] == 0:
                t += int(np.frombuffer(fr["deg"], "<u4").sum())
    return t


def train_edges(d, out, args):
    """edge-score on the candidate graph (graph-build --M0 48 of the base)."""
    if EEDGES:
        args = args + ["--edges", str(l0_edges(f"{d}/classic.idx")) if EEDGES == "classic" else EEDGES]
    if not os.path.exists(f"{d}/wide.idx"):
        say("building the --M0 48 candidate graph")
        run([f"{BIN}/graph-build", "--threads", THREADS, "--M0", "48", "-o", f"{d}/wide.idx",
             f"{d}/base.frames"])
    t0 = time.time()
    run([f"{BIN}/edge-score", "--threads", THREADS, "-o", out] + args + [f"{d}/wide.idx"],
        log=out + ".log")
    return time.time() - t0


def point(d, idx, task, opts):
    """(recall@10, mean distance computations) of one query run on a task's test queries."""
    r = run([f"{BIN}/query", "--index", idx, "-k", "10", "-o", f"{d}/res.frames"] + opts
            + [f"{d}/{task}-test.frames"])
    nd = float(re.search(r"QPS, ([0-9.]+) mean distance", r.stderr).group(1))
    rr = run([f"{BIN}/recall", "--gt", f"{d}/{task}-gt.frames", f"{d}/res.frames"])
    return float(re.search(r"recall@10 ([0-9.]+)", rr.stdout).group(1)), nd


def route_curve(d, idx, task):
    """(recall, distance computations, routing included) of query --route over the ef grid."""
    return sorted(point(d, idx, task, ["--route", "--ef", str(ef)]) for ef in EFS)


def curve(d, idx, task, nav):
    """(recall, distance computations) points: classic over the ef grid, a
    policy over the --recall grid (its skip and stop models, its calibrated
    beam), sorted by measured recall."""
    return sorted(point(d, idx, task, ["--nav", "--recall", x] if nav else ["--ef", str(x)])
                  for x in (RECALLS if nav else EFS))


def gain_rows(name, cl, res, models):
    """Table rows: each model's distance computations on both tasks, its
    task-A gain over model A's and its task-B gain over scratch B's."""
    gA = cl["A"] - res["A"]["A"]
    gB = cl["B"] - res["scratchB"]["B"]
    out = []
    for v in models:
        a, b = cl["A"] - res[v]["A"], cl["B"] - res[v]["B"]
        out.append({
            "set": name, "model": v,
            "ndist_A": round(res[v]["A"], 1), "ndist_B": round(res[v]["B"], 1),
            "classic_A": round(cl["A"], 1), "classic_B": round(cl["B"], 1),
            "retained_A": round(a / gA, 3) if gA > 0 else "",
            "share_B": round(b / gB, 3) if gB > 0 else "",
        })
    return out


def at(pts, r):
    """Distance computations at recall r, linear between the grid's points."""
    for (r0, w0), (r1, w1) in zip(pts, pts[1:]):
        if r0 <= r <= r1 and r1 > r0:
            return w0 + (w1 - w0) * (r - r0) / (r1 - r0)
    if pts and pts[0][0] >= r:
        return pts[0][1]
    return float("nan")


def free_port():
    import socket
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


def wait_line(path, pat, secs=120):
    t0 = time.time()
    while time.time() - t0 < secs:
        if os.path.exists(path) and re.search(pat, open(path).read()):
            return
        time.sleep(0.2)
    sys.exit(f"bench-drift: no /{pat}/ in {path}")


def sleep_cycle(d, w, live):
    """The sleep cycle under load: a server of model A logs task B's queries,
    retrain.sh replays the log and swaps; returns the checker's lines."""
    ep = f"tcp://127.0.0.1:{free_port()}"
    idx, log, err = f"{w}/sleep-{live}.idx", f"{w}/sleep-{live}.log", f"{w}/sleep-{live}.err"
    for f in (log, log + ".1", idx + ".retrained"):
        if os.path.exists(f):
            os.remove(f)
    subprocess.run(["cp", f"{w}/A.idx", idx], check=True)
    if live == "consolidate":
        cmd = [f"{BIN}/consolidate", "--index", idx, "-o", idx, "--serve", ep,
               "--updates", f"tcp://127.0.0.1:{free_port()}", "--log", log]
        how, ask = ["--consolidate", ep], []
    else:
        cmd = [f"{BIN}/query", "--index", idx, "--serve", ep, "--nav", "--log", log]
        how, ask = ["--reload", ep], ["--recall", str(TARGET)]
    srv = subprocess.Popen(cmd, stderr=open(err, "w"))
    wait_line(err, "serving|live")
    retrain = " ".join([f"BIN={BIN}", "pipelines/retrain.sh"] + how + ["--holdout", "0.25", idx, log,
                        "--threads", THREADS, "--ppo-iters", "0", "--no-rivals"])
    r = subprocess.run([PY, "bench/sleep_cycle.py", "--endpoint", ep, "--base", f"{d}/base.npy",
                        "--queries", f"{d}/B-train.npy", "--log-queries", "2000", "--after", "2",
                        "--retrain", retrain] + ask, stdout=subprocess.PIPE, text=True)
    srv.terminate()
    srv.wait()
    lines = [x for x in r.stdout.splitlines() if x.strip()]
    say(live, *lines)
    return lines, r.returncode


def write_edges(f, edgers):
    f.write("\n## The edge scorer under drift\n\n`edge-score --train A` (A), `--train B` (scratch B) "
            "and `edge-score --init A --train B` (naive, --ewc " + EEWC + ", --replay 1000, both) on "
            "the --M0 48 candidate graph, each keeping " + (("at most " + EEDGES + " level-0 edges (classic: as many as "
            "the classic graph has)") if EEDGES else "the fewest edges its own validation allows "
            "(tolerance 0.002 on the held-aside quarter of --train)") + "; distance computations of plain "
            "`query --ef` on the written graph at recall@10 " + str(TARGET) + ", interpolated over the "
            "ef grid, against the classic graph's. retained A = the model's task-A gain over the "
            "classic graph / model A's; share B = its task-B gain / scratch B's. train s = edge-score "
            "wall time (" + THREADS + " threads); method = the scores that pruned the written graph (learned: "
            "the model plus its usage prior; usage: the usage counts alone, which the tolerance "
            "search picks when they pass with fewer edges).\n\n")
    f.write("| set | model | ndist A | ndist B | classic A | classic B | retained A | share B | edges | train s | method |\n")
    f.write("|---|---|---|---|---|---|---|---|---|---|---|\n")
    for r in edgers:
        f.write("| " + " | ".join(str(r[k]) for k in r) + " |\n")


def main():
    os.makedirs(RES, exist_ok=True)
    rows = []
    routers = []
    edgers = []
    cycles = []
    for name in SETS:
        d = prepare(name)
        w = f"{d}/work"
        os.makedirs(w, exist_ok=True)
        A, B = ["--train", f"{d}/A-train.frames"], ["--train", f"{d}/B-train.frames"]
        init = ["--init", f"{w}/A.idx"]
        variants = [
            ("A", A),
            ("scratchB", B),
            ("naive", B + init),
            ("ewc", B + init + ["--ewc", EWC]),
            ("replay", B + init + ["--replay", "1000"]),
            ("ewc+replay", B + init + ["--ewc", EWC, "--replay", "1000"]),
            ("ewc+replay+distill", B + init + ["--ewc", EWC, "--replay", "1000", "--distill", DISTILL]),
            ("incremental", B + init + ["--ewc", EWC, "--replay", "250", "--shots", "375"]),
        ]
        keep = os.environ.get("VARIANTS")  # a subset (A and scratchB always run)
        if keep:
            variants = [x for x in variants if x[0] in ("A", "scratchB") or x[0] in keep.split(",")]
        nav = os.environ.get("NAV", "1") == "1"
        if not nav:
            variants = []
        secs = {}
        for v, args in variants:
            say(name, "training", v)
            secs[v] = train(d, f"{w}/{v}.idx", args)
        cl = {t: at(curve(d, f"{d}/classic.idx", t, False), TARGET) for t in ("A", "B")}
        res = {}
        for v, _ in ([("noupdate", None)] if nav else []) + variants:
            src = "A" if v == "noupdate" else v
            res[v] = {t: at(curve(d, f"{w}/{src}.idx", t, True), TARGET) for t in ("A", "B")}
            say(name, v, "A %.0f B %.0f (classic %.0f %.0f)" % (res[v]["A"], res[v]["B"], cl["A"], cl["B"]))
        models = ["noupdate"] + [x for x, _ in variants] if nav else []
        for r, v in zip(gain_rows(name, cl, res, models) if nav else [], models):
            r["train_s"] = round(secs["A" if v == "noupdate" else v][0], 1)
            r["train_cpu_s"] = round(secs["A" if v == "noupdate" else v][1], 1)
            rows.append(r)
        if os.environ.get("ROUTER", "1") == "1":
            rv = [("A", A), ("scratchB", B), ("naive", B + ["--init", f"{w}/rA.idx"]),
                  ("ewc", B + ["--init", f"{w}/rA.idx", "--ewc", REWC]),
                  ("replay", B + ["--init", f"{w}/rA.idx", "--replay", "1000"]),
                  ("ewc+replay", B + ["--init", f"{w}/rA.idx", "--ewc", REWC, "--replay", "1000"]),
                  ("joint", ["--train", joint_queries(d, w)])]
            rres = {}
            for v, args in rv:
                say(name, "router", v)
                train_router(d, f"{w}/r{v}.idx", args)
                rres[v] = {t: at(route_curve(d, f"{w}/r{v}.idx", t), TARGET) for t in ("A", "B")}
            rres["noupdate"] = rres["A"]
            routers += gain_rows(name, cl, rres, ["noupdate"] + [x for x, _ in rv])
        if os.environ.get("EDGE", "0") == "1":
            ei = ["--init", f"{w}/eA.idx"]
            ev = [("A", A), ("scratchB", B), ("naive", B + ei), ("ewc", B + ei + ["--ewc", EEWC]),
                  ("replay", B + ei + ["--replay", "1000"]),
                  ("ewc+replay", B + ei + ["--ewc", EEWC, "--replay", "1000"])]
            eres = {}
            for v, args in ev:
                say(name, "edges", v)
                es = train_edges(d, f"{w}/e{v}.idx", args)
                eres[v] = {t: at(curve(d, f"{w}/e{v}.idx", t, False), TARGET) for t in ("A", "B")}
                kept = re.search(r"level-0 edges (\d+) -> (\d+)", open(f"{w}/e{v}.idx.log").read())
                eres[v]["edges"] = kept.group(2) if kept else ""
                how = re.search(r"(\w+) pruning (keeps|forced)", open(f"{w}/e{v}.idx.log").read())
                eres[v]["method"] = how.group(1) if how else "unchanged"
                eres[v]["secs"] = es
                say(name, "edges", v, "A %.0f B %.0f (classic %.0f %.0f), %s edges, %.0f s"
                    % (eres[v]["A"], eres[v]["B"], cl["A"], cl["B"], eres[v]["edges"], es))
            eres["noupdate"] = eres["A"]
            em = ["noupdate"] + [x for x, _ in ev]
            for r, v in zip(gain_rows(name, cl, eres, em), em):
                r["edges"] = eres[v]["edges"]
                r["method"] = eres[v]["method"]
                r["train_s"] = round(eres[v]["secs"], 1)
                edgers.append(r)
        if nav and os.environ.get("SLEEP", "1") == "1":
            for live in ("query", "consolidate"):
                lines, rc = sleep_cycle(d, w, live)
                cycles.append((name, live, rc, lines))
    if not rows and edgers:  # EDGE=1 NAV=0: the edge scorer's figures alone
        with open(f"{RES}/drift-edges{'-' + EEDGES if EEDGES else ''}.md", "w") as f:
            write_edges(f, edgers)
        say("wrote", f"{RES}/drift-edges.md")
        return
    if rows:  # NAV=0: the router's (and edge scorer's) figures alone
        with open(f"{RES}/drift.csv", "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            wr.writeheader()
            wr.writerows(rows)
    with open(f"{RES}/drift.md", "w") as f:
        f.write(f"# bench-drift: the learned parts under drift (recall@10 = {TARGET})\n\n")
        f.write("Distance computations per query at the target recall on each task's test queries "
                "(never trained on), interpolated at equal measured recall: classic over ef " + ",".join(map(str, EFS)) + ", each policy with "
                "`query --nav --recall R` over R = " + ",".join(RECALLS) + ". retained A = the model's task-A gain over classic / model A's; "
                "share B = its task-B gain / scratch B's. EWC lambda " + EWC + ", distillation "
                + DISTILL + ", replay 1000 queries; incremental = ewc+replay (250 replayed) on 375 of "
                "B's 1500 training queries. train s = nav-train wall time (" + THREADS + " threads), train cpu s its "
                "user + system CPU time (the steadier figure on a shared machine).\n\n")
        if rows:
            f.write("| set | model | ndist A | ndist B | classic A | classic B | retained A | share B | train s | train cpu s |\n")
            f.write("|---|---|---|---|---|---|---|---|---|---|\n")
        for r in rows:
            f.write("| " + " | ".join(str(r[k]) for k in r) + " |\n")
        if not rows:
            f.write("(NAV=0: the navigation policy not run)\n")
        if routers:
            f.write("\n## The layer router under drift\n\nThe same tasks for `layer-route --train` (A, "
                    "scratch B) and `layer-route --init A --train B` (naive, --ewc " + REWC + ", --replay "
                    "1000, both; joint: from scratch on A and B's training queries together, the bound); each run writes the cheapest on its validation queries of the "
                    "trained router, the untrained PCA one and (with --init) the one it replaces; distance computations (routing included) of `query --route` at "
                    "recall@10 " + str(TARGET) + ", interpolated over the ef grid.\n\n")
            f.write("| set | model | ndist A | ndist B | classic A | classic B | retained A | share B |\n")
            f.write("|---|---|---|---|---|---|---|---|\n")
            for r in routers:
                f.write("| " + " | ".join(str(r[k]) for k in r) + " |\n")
        if edgers:
            write_edges(f, edgers)
        if cycles:
            f.write("\n## The sleep cycle under query load\n\nA server of model A (`query --serve --nav --log`, "
                    "asked recall " + str(TARGET) + ", or `consolidate --serve --log`, ef 64) answers task B's "
                    "2000 training queries, then `pipelines/retrain.sh` replays its log (the last quarter "
                    "held aside) while bench/sleep_cycle.py keeps 8 queries in flight and checks every "
                    "answer against brute force.\n\n")
            for name, live, rc, lines in cycles:
                f.write(f"- {name}, {live} (checker status {rc}):\n")
                for x in lines:
                    f.write(f"  - `{x}`\n")
    say("wrote", f"{RES}/drift.md")
    # for the leave-one-data-set-out choice of the lambdas: every row with its lambda
    with open(f"{RES}/drift-sweep.csv", "a", newline="") as f:
        wr = csv.writer(f)
        for r in rows:
            wr.writerow(["nav", EWC] + [r[k] for k in ("set", "model", "retained_A", "share_B")])
        for r in routers:
            wr.writerow(["router", REWC] + [r[k] for k in ("set", "model", "retained_A", "share_B")])
        for r in edgers:
            wr.writerow(["edges", EEWC] + [r[k] for k in ("set", "model", "retained_A", "share_B")])


if __name__ == "__main__":
    main()
