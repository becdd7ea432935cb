/*
 * hnsw_stats.c - see hnsw_stats.h. The breadth-first walks use one queue
 * of n u32 and one byte of marks per node.
 */
#include "hnsw_stats.h"

#include <stdlib.h>
#include <string.h>

void hnsw_stats_levels(const hnsw *h, hnsw_level_stats *out)
{
    for (int l = 0; l <= h->max_level; l++) {
        hnsw_level_stats *s = &out[l];
        memset(s, 0, sizeof *s);
        s->deg_min = UINT32_MAX;
        uint32_t cap = hnsw_maxdeg(h, l);
        for (size_t i = 0; i < h->n; i++) {
            if (h->levels[i] < l || (h->deleted && h->deleted[i]))
                continue;
            const uint32_t *lk = hnsw_links(h, (uint32_t)i, l);
            uint32_t d = lk[0];
            s->nodes++;
            s->edges += d;
            if (d < s->deg_min)
                s->deg_min = d;
            if (d > s->deg_max)
                s->deg_max = d;
            if (d >= cap)
                s->at_cap++;
            for (uint32_t j = 0; h->deleted && j < d; j++)
                s->to_deleted += h->deleted[lk[1 + j]] != 0;
        }
        if (!s->nodes)
            s->deg_min = 0;
        s->deg_mean = s->nodes ? (double)s->edges / (double)s->nodes : 0.0;
    }
}

static size_t walk(const hnsw *h, int top, uint8_t *seen, uint32_t *queue)
{
    memset(seen, 0, h->n);
    size_t head = 0, tail = 0, live = 0;
    queue[tail++] = h->entry;
    seen[h->entry] = 1;
    while (head < tail) {
        uint32_t u = queue[head++];
        if (!(h->deleted && h->deleted[u]))
            live++;
        int lv = h->levels[u] < top ? h->levels[u] : top;
        for (int l = 0; l <= lv; l++) {
            const uint32_t *lk = hnsw_links(h, u, l);
            for (uint32_t j = 0; j < lk[0]; j++) {
                uint32_t v = lk[1 + j];
                if (v < h->n && !seen[v]) {
                    seen[v] = 1;
                    queue[tail++] = v;
                }
            }
        }
    }
    return live;
}

int hnsw_stats_reachable(const hnsw *h, size_t *any_level, size_t *level0)
{
    *any_level = *level0 = 0;
    if (h->n == 0 || h->entry >= h->n)
        return 0;
    uint8_t *seen = malloc(h->n);
    uint32_t *queue = malloc(h->n * sizeof *queue);
    if (!seen || !queue) {
        free(seen);
        free(queue);
        return HF_ENOMEM;
    }
    *any_level = walk(h, HNSW_MAX_LEVEL, seen, queue);
    *level0 = walk(h, 0, seen, queue);
    free(seen);
    free(queue);
    return 0;
}
