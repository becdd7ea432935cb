// usearch_run.mjs - the USearch peer for bench/run.sh, driven from Node
// in-process through the npm package `usearch` (its prebuilt native addon).
//
// Same contract as hnswlib_run.cpp (see peer_common.h): the same options,
// DIR/usearch.ef<EF>.frames per ef in hnswflow's result stream format and one
// line per ef on stdout:
//   engine=usearch ef=64 qps=... mean_dist= build_s=... mem_bytes=...
//
// Build: one Index {metric, quantization 'f32', connectivity M,
// expansion_add EF_CONSTRUCTION}, every vector added in one add() call with
// THREADS threads (the binding splits the keys over its own std::thread
// pool). build_s is that call; mem_bytes the growth of the process's
// resident set across it (process.memoryUsage.rss(), /proc/self/statm's
// figure), the base vectors already loaded, as the C++ peers report it.
// Metric: l2 -> 'l2sq' (squared L2, what hnswflow and hnswlib report);
// cosine -> 'cos' on vectors normalised here as hnswlib's peer does
// (USearch returns 1 - cos, the distance hnswflow and hnswlib report), so
// bin/recall scores ids and distances exactly as for the other engines.
//
// Search: the JS API takes the beam width (expansion_search) only at
// construction, so the built index is saved once and loaded into a fresh
// Index per ef. Every pass loads the index for its ef (untimed), then times
// the loop over the queries with process.hrtime, one search(q, k, 1) call a
// query on the main thread (threads = 1: the binding runs a single task
// inline). REPEAT passes per ef, interleaved across the efs (the whole sweep
// once, then again), the median kept, after one untimed warm-up pass. The
// timed loop keeps the Matches objects; turning keys and distances into the
// result arrays happens after the clock stops. The time includes the
// binding's per-call cost (argument checks, typed-array results), which is
// part of using USearch from JavaScript. Every pass must give the same ids.
//
// Distance computations: the JS binding does not expose USearch's
// computed_distances counter, so mean_dist is left empty.
//
// The package is found through --usearch-dir DIR (the npm --prefix it was
// installed under; default: $USEARCH_DIR or build/bench/usearch-npm).
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";

const prog = "usearch_run";

function die(msg, code) {
    process.stderr.write(`${prog}: ${msg}\n`);
    process.exit(code);
}

function usage() {
    process.stderr.write(
        `usage: ${prog} --base base.fvecs --queries q.fvecs [-M 16] [--ef-construction 200]\n` +
            "       [--threads T] [--k 10] [--efs 10,16,32,...] [--repeat R] [--metric l2|cosine]\n" +
            "       [--usearch-dir DIR] --out-prefix DIR/ENGINE\n",
    );
    process.exit(64);
}

function parseIntOpt(opt, s, lo, hi) {
    if (!/^[0-9]+$/.test(s)) die(`bad value for ${opt}`, 64);
    const v = Number(s);
    if (v < lo || v > hi) die(`bad value for ${opt}`, 64);
    return v;
}

function parseArgs(argv) {
    const o = {
        base: "",
        queries: "",
        outPrefix: "",
        M: 16,
        efc: 200,
        threads: 1,
        k: 10,
        efs: [10, 16, 32, 64, 128, 256],
        repeat: 1,
        metric: "l2",
        usearchDir: process.env.USEARCH_DIR || "build/bench/usearch-npm",
    };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a === "-h" || a === "--help") usage();
        if (i + 1 >= argv.length) die(`option ${a} needs a value`, 64);
        const v = argv[++i];
        switch (a) {
            case "--base": o.base = v; break;
            case "--queries": o.queries = v; break;
            case "--out-prefix": o.outPrefix = v; break;
            case "--usearch-dir": o.usearchDir = v; break;
            case "-M":
            case "--M": o.M = parseIntOpt("-M", v, 2, 1024); break;
            case "--ef-construction": o.efc = parseIntOpt(a, v, 1, 1 << 20); break;
            case "--threads": o.threads = parseIntOpt(a, v, 1, 1024); break;
            case "--k": o.k = parseIntOpt(a, v, 1, 100000); break;
            case "--repeat": o.repeat = parseIntOpt(a, v, 1, 100); break;
            case "--seed": break; // USearch's JS API takes no seed
            case "--metric":
                if (v !== "l2" && v !== "cosine") die(`--metric ${v}: expected l2 or cosine`, 64);
                o.metric = v;
                break;
            case "--efs":
                o.efs = v.split(",").filter((t) => t !== "").map((t) => parseIntOpt("--efs", t, 1, 1 << 20));
                if (o.efs.length === 0) die("--efs: empty list", 64);
                break;
            default: die(`unknown option ${a}`, 64);
        }
    }
    if (!o.base || !o.queries || !o.outPrefix) usage();
    return o;
}

// fvecs: per row an int32 dim, then dim float32, little-endian; one dim for all rows
function readFvecs(p) {
    let buf;
    try {
        buf = fs.readFileSync(p);
    } catch (e) {
        die(`cannot open ${p}: ${e.message}`, 66);
    }
    if (buf.length < 4) die(`${p}: bad fvecs header`, 65);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const d = dv.getInt32(0, true);
    if (d <= 0 || d > 65536) die(`${p}: bad fvecs header`, 65);
    const rowBytes = 4 + d * 4;
    if (buf.length % rowBytes !== 0) die(`${p}: size is not a whole number of rows`, 65);
    const n = buf.length / rowBytes;
    const data = new Float32Array(n * d);
    for (let i = 0; i < n; i++) {
        if (dv.getInt32(i * rowBytes, true) !== d) die(`${p}: row with a different dimension`, 65);
        for (let j = 0; j < d; j++) {
            const x = dv.getFloat32(i * rowBytes + 4 + j * 4, true);
            if (!Number.isFinite(x)) die(`${p}: NaN or Inf in data`, 65);
            data[i * d + j] = x;
        }
    }
    return { n, d, data };
}

// rows to unit length (zero rows stay zero), as peer_normalize does
function normalize(m) {
    for (let i = 0; i < m.n; i++) {
        let s = 0;
        for (let j = 0; j < m.d; j++) s += m.data[i * m.d + j] * m.data[i * m.d + j];
        if (s <= 0) continue;
        const inv = Math.fround(1 / Math.sqrt(s));
        for (let j = 0; j < m.d; j++) m.data[i * m.d + j] *= inv;
    }
}

// --- a minimal MessagePack writer: maps, strings, unsigned ints, bin ---
class Packer {
    constructor() {
        this.chunks = [];
    }
    raw(b) {
        this.chunks.push(b);
    }
    map(n) {
        this.raw(Buffer.from([0x80 | n])); // fixmap: every frame here has < 16 keys
    }
    str(s) {
        const b = Buffer.from(s, "utf8");
        if (b.length > 31) throw new Error("string too long for fixstr");
        this.raw(Buffer.from([0xa0 | b.length]));
        this.raw(b);
    }
    uint(v) {
        let b;
        if (v < 0x80) b = Buffer.from([v]);
        else if (v < 0x100) b = Buffer.from([0xcc, v]);
        else if (v < 0x10000) {
            b = Buffer.alloc(3);
            b[0] = 0xcd;
            b.writeUInt16BE(v, 1);
        } else if (v < 0x100000000) {
            b = Buffer.alloc(5);
            b[0] = 0xce;
            b.writeUInt32BE(v, 1);
        } else {
            b = Buffer.alloc(9);
            b[0] = 0xcf;
            b.writeBigUInt64BE(BigInt(v), 1);
        }
        this.raw(b);
    }
    bin(body) {
        let h;
        if (body.length < 0x100) h = Buffer.from([0xc4, body.length]);
        else if (body.length < 0x10000) {
            h = Buffer.alloc(3);
            h[0] = 0xc5;
            h.writeUInt16BE(body.length, 1);
        } else {
            h = Buffer.alloc(5);
            h[0] = 0xc6;
            h.writeUInt32BE(body.length, 1);
        }
        this.raw(h);
        this.raw(body);
    }
    bytes() {
        return Buffer.concat(this.chunks);
    }
}

// the hnswflow.results stream (peer_common.h's peer_write_results), written
// to PATH.tmp and renamed
function writeResults(p, nq, k, ids, dists, metric) {
    const pk = new Packer();
    pk.map(6);
    pk.str("t"), pk.str("header");
    pk.str("schema"), pk.str("hnswflow.results");
    pk.str("v"), pk.uint(1);
    pk.str("k"), pk.uint(k);
    pk.str("metric"), pk.str(metric);
    pk.str("count"), pk.uint(nq);
    for (let q = 0; q < nq; q++) {
        const ib = Buffer.alloc(k * 4);
        const db = Buffer.alloc(k * 4);
        for (let j = 0; j < k; j++) {
            ib.writeUInt32LE(ids[q * k + j], j * 4);
            db.writeFloatLE(dists[q * k + j], j * 4);
        }
        pk.map(4);
        pk.str("t"), pk.str("result");
        pk.str("qid"), pk.uint(q);
        pk.str("ids"), pk.bin(ib);
        pk.str("dists"), pk.bin(db);
    }
    const body = pk.bytes();
    const tail = new Packer();
    tail.map(3);
    tail.str("t"), tail.str("end");
    tail.str("count"), tail.uint(nq);
    tail.str("checksum"), tail.uint(zlib.crc32(body) >>> 0);
    const tmp = p + ".tmp";
    try {
        fs.writeFileSync(tmp, Buffer.concat([body, tail.bytes()]));
        fs.renameSync(tmp, p);
    } catch (e) {
        fs.rmSync(tmp, { force: true });
        die(`cannot write ${p}: ${e.message}`, 74);
    }
}

function loadUsearch(dir) {
    const req = createRequire(path.resolve(dir, "package.json"));
    try {
        return req("usearch");
    } catch (e) {
        die(`cannot load the npm package usearch under ${dir}: ${e.message}`, 69);
    }
}

// Drops the last index: the native memory goes when its wrapper is
// finalised, which N-API defers to the event loop after a collection.
async function collect() {
    if (global.gc) {
        global.gc();
        await new Promise((r) => setImmediate(r));
    }
}

function median(v) {
    const s = [...v].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)];
}

async function main() {
    const o = parseArgs(process.argv.slice(2));
    const usearch = loadUsearch(o.usearchDir);
    const base = readFvecs(o.base);
    const q = readFvecs(o.queries);
    if (base.n === 0 || q.n === 0) die("empty base or query set", 65);
    if (base.d !== q.d) die("base and query dimensions differ", 65);
    const cosine = o.metric === "cosine";
    if (cosine) {
        normalize(base);
        normalize(q);
    }
    const metric = cosine ? "cos" : "l2sq";
    const config = (ef) => ({
        dimensions: base.d,
        metric,
        quantization: "f32",
        connectivity: o.M,
        expansion_add: o.efc,
        expansion_search: ef,
        multi: false,
    });

    const keys = new BigUint64Array(base.n);
    for (let i = 0; i < base.n; i++) keys[i] = BigInt(i);
    let index = new usearch.Index(config(o.efs[0]));
    const rss0 = process.memoryUsage.rss();
    const t0 = process.hrtime.bigint();
    index.add(keys, base.data, o.threads);
    const buildS = Number(process.hrtime.bigint() - t0) / 1e9;
    const mem = process.memoryUsage.rss() - rss0;
    if (index.size() !== base.n) die(`index holds ${index.size()} of ${base.n} vectors`, 70);
    const saved = o.outPrefix + ".usearch";
    index.save(saved);
    index = null;
    await collect();

    const views = [];
    for (let i = 0; i < q.n; i++) views.push(q.data.subarray(i * q.d, (i + 1) * q.d));
    const k = o.k;
    const matches = new Array(q.n);
    const open = (ef) => {
        const ix = new usearch.Index(config(ef));
        ix.load(saved);
        return ix;
    };
    const pass = (ix) => {
        const t = process.hrtime.bigint();
        for (let i = 0; i < q.n; i++) matches[i] = ix.search(views[i], k, 1);
        return Number(process.hrtime.bigint() - t) / 1e9;
    };
    const collectIds = () => {
        const ids = new Uint32Array(q.n * k).fill(0xffffffff);
        const dists = new Float32Array(q.n * k).fill(Infinity);
        for (let i = 0; i < q.n; i++) {
            const m = matches[i];
            const n = Math.min(m.keys.length, k);
            for (let j = 0; j < n; j++) {
                ids[i * k + j] = Number(m.keys[j]);
                dists[i * k + j] = m.distances[j];
            }
        }
        return { ids, dists };
    };

    {
        const ix = open(o.efs[0]); // warm-up: page the index and the binding in once
        pass(ix);
    }
    await collect();

    const ne = o.efs.length;
    const times = o.efs.map(() => []);
    const answers = new Array(ne);
    for (let r = 0; r < o.repeat; r++) {
        for (let e = 0; e < ne; e++) {
            let ix = open(o.efs[e]);
            times[e].push(pass(ix));
            ix = null;
            const a = collectIds();
            if (!answers[e]) answers[e] = a;
            else if (Buffer.compare(Buffer.from(a.ids.buffer), Buffer.from(answers[e].ids.buffer)) !== 0)
                process.stderr.write(`${prog}: warning: ef=${o.efs[e]}: pass ${r + 1} returned different ids\n`);
            await collect();
        }
    }
    for (let e = 0; e < ne; e++) {
        const ef = o.efs[e];
        writeResults(`${o.outPrefix}.ef${ef}.frames`, q.n, k, answers[e].ids, answers[e].dists, o.metric);
        const qps = q.n / median(times[e]);
        process.stdout.write(
            `engine=usearch ef=${ef} qps=${qps.toFixed(1)} mean_dist= build_s=${buildS.toFixed(3)} mem_bytes=${mem}\n`,
        );
    }
    fs.rmSync(saved, { force: true });
}

main().catch((e) => die(e && e.stack ? e.stack : String(e), 70));
