/*
 * peer_common.h - what the two peer drivers (hnswlib_run.cpp, faiss_run.cpp)
 * share: option parsing, fvecs loading, timing, memory probes and writing
 * result frames in hnswflow's result stream format.
 *
 * Header-only on purpose: each driver is one g++ invocation from
 * bench/run.sh, with no library to build first.
 *
 * Result stream (one MessagePack map a frame, frames concatenated):
 *   {"t":"header","schema":"hnswflow.results","v":1,"k":K,"metric":"l2","count":NQ}
 *   {"t":"result","qid":i,"ids":bin(K x u32 LE),"dists":bin(K x f32 LE)}  x NQ
 *   {"t":"end","count":NQ,"checksum":crc32(all preceding bytes)}
 * Results are nearest first; a query with fewer than K hits is padded with
 * id 0xFFFFFFFF and distance +inf so every frame has exactly K entries.
 * The file is written to "<path>.tmp" and renamed on success, so a reader
 * never sees a partial stream under the final name.
 *
 * Memory: peer_rss_bytes() reads resident pages from /proc/self/statm; the
 * drivers report the RSS growth across index construction (the base vectors
 * are loaded before the first probe, so the figure is the index alone,
 * including its own copy of the vectors).
 */
#ifndef PEER_COMMON_H
#define PEER_COMMON_H

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include <msgpack.h>
#include <zlib.h>

struct peer_opts {
    std::string base, queries, out_prefix;
    int M = 16;
    int ef_construction = 200;
    int threads = 1;
    int k = 10;
    std::vector<int> efs{10, 16, 32, 64, 128, 256};
    unsigned seed = 100;
    int repeat = 1; /* timed passes per ef; the median is reported */
    std::string metric = "l2"; /* l2 or cosine (vectors normalised, inner product) */
};

[[noreturn]] static inline void peer_die(const char *prog, const char *fmt, const char *arg, int code)
{
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(code);
}

static inline int peer_parse_int(const char *prog, const char *opt, const char *s, int lo, int hi)
{
    char *end = nullptr;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        peer_die(prog, "bad value for %s", opt, 64);
    return (int)v;
}

static inline void peer_usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s --base base.fvecs --queries q.fvecs [-M 16] [--ef-construction 200]\n"
            "       [--threads T] [--k 10] [--efs 10,16,32,...] [--seed S] [--repeat R] [--metric l2|cosine]\n"
            "       --out-prefix DIR/ENGINE\n",
            prog);
    exit(64);
}

static inline peer_opts peer_parse_args(int argc, char **argv)
{
    peer_opts o;
    const char *prog = argv[0];
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "-h" || a == "--help")
            peer_usage(prog);
        if (i + 1 >= argc)
            peer_die(prog, "option %s needs a value", argv[i], 64);
        const char *v = argv[++i];
        if (a == "--base")
            o.base = v;
        else if (a == "--queries")
            o.queries = v;
        else if (a == "--out-prefix")
            o.out_prefix = v;
        else if (a == "-M" || a == "--M")
            o.M = peer_parse_int(prog, "-M", v, 2, 1024);
        else if (a == "--ef-construction")
            o.ef_construction = peer_parse_int(prog, "--ef-construction", v, 1, 1 << 20);
        else if (a == "--threads")
            o.threads = peer_parse_int(prog, "--threads", v, 1, 1024);
        else if (a == "--k")
            o.k = peer_parse_int(prog, "--k", v, 1, 100000);
        else if (a == "--repeat")
            o.repeat = peer_parse_int(prog, "--repeat", v, 1, 100);
        else if (a == "--metric") {
            if (strcmp(v, "l2") != 0 && strcmp(v, "cosine") != 0)
                peer_die(prog, "--metric %s: expected l2 or cosine", v, 64);
            o.metric = v;
        } else if (a == "--seed")
            o.seed = (unsigned)peer_parse_int(prog, "--seed", v, 0, 1 << 30);
        else if (a == "--efs") {
            o.efs.clear();
            std::string s = v;
            size_t p = 0;
            while (p <= s.size()) {
                size_t q = s.find(',', p);
                if (q == std::string::npos)
                    q = s.size();
                std::string tok = s.substr(p, q - p);
                if (!tok.empty())
                    o.efs.push_back(peer_parse_int(prog, "--efs", tok.c_str(), 1, 1 << 20));
                p = q + 1;
            }
            if (o.efs.empty())
                peer_die(prog, "%s: empty list", "--efs", 64);
        } else {
            peer_die(prog, "unknown option %s", argv[i - 1], 64);
        }
    }
    if (o.base.empty() || o.queries.empty() || o.out_prefix.empty())
        peer_usage(prog);
    return o;
}

/* Row-major float32 matrix read from an .fvecs file (per row: int32 dim, then
 * dim float32, little-endian). Every row must have the same dim. */
struct peer_matrix {
    size_t n = 0, dim = 0;
    std::vector<float> data;
    const float *row(size_t i) const { return data.data() + i * dim; }
};

/* Rows to unit length (zero rows stay zero), as hnswlib's Python binding
 * does for space='cosine' before an inner-product index. */
static inline void peer_normalize(peer_matrix &m)
{
    for (size_t i = 0; i < m.n; i++) {
        float *r = m.data.data() + i * m.dim;
        double s = 0;
        for (size_t j = 0; j < m.dim; j++)
            s += (double)r[j] * r[j];
        if (s <= 0)
            continue;
        float inv = (float)(1.0 / sqrt(s));
        for (size_t j = 0; j < m.dim; j++)
            r[j] *= inv;
    }
}

static inline peer_matrix peer_read_fvecs(const char *prog, const std::string &path)
{
    peer_matrix m;
    FILE *f = fopen(path.c_str(), "rb");
    if (!f)
        peer_die(prog, "cannot open %s", path.c_str(), 66);
    if (fseek(f, 0, SEEK_END) != 0)
        peer_die(prog, "cannot seek %s", path.c_str(), 74);
    long sz = ftell(f);
    rewind(f);
    int32_t d = 0;
    if (sz < 4 || fread(&d, 4, 1, f) != 1 || d <= 0 || d > 65536)
        peer_die(prog, "%s: bad fvecs header", path.c_str(), 65);
    size_t rowbytes = 4 + (size_t)d * 4;
    if ((size_t)sz % rowbytes != 0)
        peer_die(prog, "%s: size is not a whole number of rows", path.c_str(), 65);
    m.dim = (size_t)d;
    m.n = (size_t)sz / rowbytes;
    m.data.resize(m.n * m.dim);
    rewind(f);
    for (size_t i = 0; i < m.n; i++) {
        int32_t di = 0;
        if (fread(&di, 4, 1, f) != 1 || di != d)
            peer_die(prog, "%s: row with a different dimension", path.c_str(), 65);
        if (fread(m.data.data() + i * m.dim, 4, m.dim, f) != m.dim)
            peer_die(prog, "%s: truncated", path.c_str(), 65);
    }
    fclose(f);
    for (float x : m.data)
        if (!std::isfinite(x))
            peer_die(prog, "%s: NaN or Inf in data", path.c_str(), 65);
    return m;
}

static inline double peer_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Median wall seconds of `repeat` timed runs of f (the query loop): one
 * pass on a shared machine can be slowed by a neighbour's burst. */
/* Median seconds of `repeat` timed passes of run(i) for each of n settings
 * (set(i) untimed before each), the passes interleaved: every setting once,
 * then again. A burst of load from elsewhere on a shared machine then slows
 * one pass of a few settings, which the median drops, instead of every pass
 * of one setting. */
template <class S, class F>
static inline std::vector<double> peer_interleaved_medians(size_t n, int repeat, S set, F run)
{
    std::vector<std::vector<double>> t(n);
    for (int r = 0; r < repeat; r++)
        for (size_t i = 0; i < n; i++) {
            set(i);
            double t0 = peer_now();
            run(i);
            t[i].push_back(peer_now() - t0);
        }
    std::vector<double> med(n);
    for (size_t i = 0; i < n; i++) {
        std::sort(t[i].begin(), t[i].end());
        med[i] = t[i][t[i].size() / 2];
    }
    return med;
}

/* Resident set size in bytes, from /proc/self/statm (second field, pages). */
static inline long long peer_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    long long size = 0, resident = 0;
    int got = fscanf(f, "%lld %lld", &size, &resident);
    fclose(f);
    if (got != 2)
        return -1;
    return resident * (long long)sysconf(_SC_PAGESIZE);
}

static inline void peer_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static inline void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* Write the result stream for nq queries; ids/dists are nq*k, row-major,
 * nearest first. Exits on I/O error (after removing the temp file). */
static inline void peer_write_results(const char *prog, const std::string &path, size_t nq, int k,
                                      const std::vector<uint32_t> &ids, const std::vector<float> &dists,
                                      const char *metric = "l2")
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

    msgpack_pack_map(&pk, 6);
    peer_pack_str(&pk, "t");
    peer_pack_str(&pk, "header");
    peer_pack_str(&pk, "schema");
    peer_pack_str(&pk, "hnswflow.results");
    peer_pack_str(&pk, "v");
    msgpack_pack_uint32(&pk, 1);
    peer_pack_str(&pk, "k");
    msgpack_pack_uint32(&pk, (uint32_t)k);
    peer_pack_str(&pk, "metric");
    peer_pack_str(&pk, metric);
    peer_pack_str(&pk, "count");
    msgpack_pack_uint64(&pk, nq);

    std::vector<unsigned char> ib((size_t)k * 4), db((size_t)k * 4);
    for (size_t q = 0; q < nq; q++) {
        for (int j = 0; j < k; j++) {
            uint32_t bits;
            float dv = dists[q * k + j];
            memcpy(&bits, &dv, 4);
            put_le32(&ib[(size_t)j * 4], ids[q * k + j]);
            put_le32(&db[(size_t)j * 4], bits);
        }
        msgpack_pack_map(&pk, 4);
        peer_pack_str(&pk, "t");
        peer_pack_str(&pk, "result");
        peer_pack_str(&pk, "qid");
        msgpack_pack_uint64(&pk, q);
        peer_pack_str(&pk, "ids");
        msgpack_pack_bin(&pk, ib.size());
        msgpack_pack_bin_body(&pk, ib.data(), ib.size());
        peer_pack_str(&pk, "dists");
        msgpack_pack_bin(&pk, db.size());
        msgpack_pack_bin_body(&pk, db.data(), db.size());
    }

    uLong crc = crc32(0L, Z_NULL, 0);
    /* crc32 takes uInt lengths; feed large buffers in pieces. */
    for (size_t off = 0; off < sb.size;) {
        size_t len = sb.size - off;
        if (len > (1u << 30))
            len = 1u << 30;
        crc = crc32(crc, (const Bytef *)sb.data + off, (uInt)len);
        off += len;
    }
    msgpack_pack_map(&pk, 3);
    peer_pack_str(&pk, "t");
    peer_pack_str(&pk, "end");
    peer_pack_str(&pk, "count");
    msgpack_pack_uint64(&pk, nq);
    peer_pack_str(&pk, "checksum");
    msgpack_pack_uint32(&pk, (uint32_t)crc);

    std::string tmp = path + ".tmp";
    FILE *f = fopen(tmp.c_str(), "wb");
    if (!f)
        peer_die(prog, "cannot create %s", tmp.c_str(), 73);
    bool ok = fwrite(sb.data, 1, sb.size, f) == sb.size;
    ok = (fclose(f) == 0) && ok;
    msgpack_sbuffer_destroy(&sb);
    if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
        unlink(tmp.c_str());
        peer_die(prog, "cannot write %s", path.c_str(), 74);
    }
}

static inline void peer_check_dims(const char *prog, const peer_matrix &b, const peer_matrix &q)
{
    if (b.n == 0 || q.n == 0)
        peer_die(prog, "%s", "empty base or query set", 65);
    if (b.dim != q.dim)
        peer_die(prog, "%s", "base and query dimensions differ", 65);
}

#endif
