/*
 * hnsw_stats.h - what an index is made of, for `hnswflow info`: nodes per
 * level, degree statistics per level, reachability from the entry point.
 * Read-only walks over a loaded graph; nothing is kept.
 */
#ifndef HF_HNSW_STATS_H
#define HF_HNSW_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "hnsw.h"

typedef struct hnsw_level_stats {
    size_t nodes;              /* live nodes present on the level */
    size_t edges;              /* links out of them */
    uint32_t deg_min, deg_max; /* over those nodes */
    double deg_mean;
    size_t at_cap;     /* nodes whose list is full (degree = the level's maximum) */
    size_t to_deleted; /* links pointing at a tombstoned node */
} hnsw_level_stats;

/* Fill out[0..h->max_level] (levels above 0 hold nodes whose level >= l). */
void hnsw_stats_levels(const hnsw *h, hnsw_level_stats *out);

/* Live nodes reachable from the entry point following the links of every
 * level (a search reaches level 0 through the upper levels), and those
 * reachable on level 0 alone. -1 (HF_ENOMEM) when out of memory. */
int hnsw_stats_reachable(const hnsw *h, size_t *any_level, size_t *level0);

#endif
