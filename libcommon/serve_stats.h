/*
 * serve_stats.h - a server's counters for the {t:"stats"} request
 * (schemas/stats.json): requests and errors since start, queries per
 * second over the uptime, latency percentiles since start.
 *
 * Latencies go into a fixed log-scale histogram (16 buckets per power of
 * two, 1 us to about 70 s), so memory is constant however long the server
 * runs and a percentile is exact to within 4.4 % (one bucket's width).
 * One writer: the serving loop that owns the struct; no locks.
 */
#ifndef HF_SERVE_STATS_H
#define HF_SERVE_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

#define SERVE_STATS_BUCKETS (26 * 16)

typedef struct serve_stats {
    double t0;         /* start, now_seconds() */
    uint64_t requests; /* every request received, good or bad */
    uint64_t errors;   /* requests answered with an error frame */
    uint64_t queries;  /* query requests answered with results */
    uint64_t hist[SERVE_STATS_BUCKETS];
} serve_stats;

void serve_stats_init(serve_stats *s, double now);
/* Record one answered query that took `seconds`. */
void serve_stats_latency(serve_stats *s, double seconds);
/* Latency (seconds) at quantile q in [0, 1]; 0 with no queries. */
double serve_stats_quantile(const serve_stats *s, double q);

/* What the server knows of its index and models, for the answer. */
typedef struct serve_stats_index {
    uint64_t count;   /* live vectors */
    uint64_t deleted; /* tombstoned or freed slots */
    uint64_t dim;
    uint64_t bytes;   /* memory of the index's vectors, links and codes */
    uint64_t models;  /* model frames the index carries */
    double staleness; /* fraction of the graph changed since the models were trained */
} serve_stats_index;

/* Count a model frame of the loaded index (f: its frame), keeping the
 * largest "graph_changed" (consolidate's staleness mark) seen. */
struct frame_in;
void serve_stats_index_model(serve_stats_index *ix, const frame_in *f);
/* Fill count, deleted, dim and bytes from the graph. */
struct hnsw;
void serve_stats_index_graph(serve_stats_index *ix, const struct hnsw *h);

/* Count one answered request: fo holds the answer just sent (an error
 * frame counts as an error, a result frame as a query of `seconds`). */
void serve_stats_answer(serve_stats *s, const frame_out *fo, double seconds);

/* Pack the answer {t:"stats", ...} into fo. */
void serve_stats_pack(const serve_stats *s, const serve_stats_index *ix, double now, frame_out *fo);

#endif
