/*
 * serve_stats.c - see serve_stats.h.
 */
#include "serve_stats.h"
#include "hnsw.h"

#include <math.h>
#include <string.h>

#define PER_OCTAVE 16

void serve_stats_init(serve_stats *s, double now)
{
    memset(s, 0, sizeof *s);
    s->t0 = now;
}

static size_t bucket_of(double seconds)
{
    double us = seconds * 1e6;
    if (!(us > 1.0))
        return 0;
    double b = log2(us) * PER_OCTAVE;
    return b >= SERVE_STATS_BUCKETS - 1 ? SERVE_STATS_BUCKETS - 1 : (size_t)b + 1;
}

void serve_stats_latency(serve_stats *s, double seconds)
{
    s->hist[bucket_of(seconds)]++;
}

double serve_stats_quantile(const serve_stats *s, double q)
{
    uint64_t n = 0;
    for (size_t i = 0; i < SERVE_STATS_BUCKETS; i++)
        n += s->hist[i];
    if (!n)
        return 0;
    /* the smallest bucket holding the ceil(q n)-th latency; its upper edge */
    uint64_t rank = (uint64_t)ceil(q * (double)n);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < SERVE_STATS_BUCKETS; i++) {
        seen += s->hist[i];
        if (seen >= rank)
            return i == 0 ? 1e-6 : exp2((double)i / PER_OCTAVE) * 1e-6;
    }
    return exp2((double)SERVE_STATS_BUCKETS / PER_OCTAVE) * 1e-6;
}

void serve_stats_pack(const serve_stats *s, const serve_stats_index *ix, double now, frame_out *fo)
{
    double up = now - s->t0;
    frame_begin(fo, "stats", 14);
    frame_put_u64(fo, "requests", s->requests);
    frame_put_u64(fo, "errors", s->errors);
    frame_put_u64(fo, "queries", s->queries);
    frame_put_f64(fo, "uptime_s", up);
    frame_put_f64(fo, "qps", up > 0 ? (double)s->queries / up : 0.0);
    frame_put_f64(fo, "p50_ms", serve_stats_quantile(s, 0.50) * 1e3);
    frame_put_f64(fo, "p99_ms", serve_stats_quantile(s, 0.99) * 1e3);
    frame_put_u64(fo, "count", ix->count);
    frame_put_u64(fo, "deleted", ix->deleted);
    frame_put_u64(fo, "dim", ix->dim);
    frame_put_u64(fo, "index_bytes", ix->bytes);
    frame_put_u64(fo, "models", ix->models);
    frame_put_f64(fo, "staleness", ix->staleness);
    frame_put_str(fo, "latency", "since start, log histogram, 16 buckets per octave");
}

void serve_stats_index_model(serve_stats_index *ix, const frame_in *f)
{
    double g = 0;
    ix->models++;
    if (frame_get_f64(f, "graph_changed", &g, NULL) == 0 && g > ix->staleness)
        ix->staleness = g;
}

void serve_stats_index_graph(serve_stats_index *ix, const hnsw *h)
{
    ix->count = h->n - h->n_deleted;
    ix->deleted = h->n_deleted;
    ix->dim = h->dim;
    ix->bytes = hnsw_memory_bytes(h);
}

/* The frame type of a packed frame: frame_begin writes the map header,
 * then "t" and its value first. */
static int packed_type_is(const frame_out *fo, const char *t)
{
    const unsigned char *p = (const unsigned char *)fo->sb.data;
    size_t n = fo->sb.size, i = 0, tl = strlen(t);
    if (n < 1)
        return 0;
    if ((p[0] & 0xf0) == 0x80)
        i = 1;
    else if (p[0] == 0xde)
        i = 3;
    else if (p[0] == 0xdf)
        i = 5;
    else
        return 0;
    if (i + 3 + tl > n || p[i] != 0xa1 || p[i + 1] != 't' || p[i + 2] != (0xa0 | tl))
        return 0;
    return memcmp(p + i + 3, t, tl) == 0;
}

void serve_stats_answer(serve_stats *s, const frame_out *fo, double seconds)
{
    s->requests++;
    if (packed_type_is(fo, "error"))
        s->errors++;
    else if (packed_type_is(fo, "result")) {
        s->queries++;
        serve_stats_latency(s, seconds);
    }
}
