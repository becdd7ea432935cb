/*
 * hnsw_repair.c - level-0 reachability repair. Pruning during insertion can
 * leave a node with no incoming links; no search can then return it, which
 * caps recall below 1 however large ef is. After a build (or an edge
 * rewrite) we walk level 0 from the entry point and give every missed node
 * an incoming link from its nearest reachable node.
 */
#include <stdlib.h>
#include <string.h>

#include "hnsw.h"

/* Mark everything reachable from start; queue is caller scratch (n). */
static size_t walk(const hnsw *h, uint32_t start, uint8_t *seen, uint32_t *queue)
{
    size_t head = 0, tail = 0, count = 0;
    if (seen[start])
        return 0;
    seen[start] = 1;
    queue[tail++] = start;
    while (head < tail) {
        uint32_t u = queue[head++];
        count++;
        const uint32_t *ln = hnsw_links0(h, u);
        for (uint32_t j = 0; j < ln[0]; j++) {
            uint32_t v = ln[1 + j];
            if (!seen[v]) {
                seen[v] = 1;
                queue[tail++] = v;
            }
        }
    }
    return count;
}

int hnsw_repair_reachability(hnsw *h, size_t *repaired, hf_err *e)
{
    *repaired = 0;
    if (h->n == 0 || h->entry == HNSW_NONE)
        return 0;
    uint8_t *seen = calloc(h->n, 1);
    uint32_t *queue = malloc(h->n * sizeof(uint32_t));
    uint32_t *indeg = calloc(h->n, sizeof(uint32_t));
    hnsw_searcher *s = NULL;
    int rc = 0;
    if (!seen || !queue || !indeg) {
        rc = hf_err_set(e, HF_ENOMEM, "out of memory for reachability repair");
        goto out;
    }
    if ((rc = hnsw_searcher_new(h, 64, &s, e)) != 0)
        goto out;
    for (size_t i = 0; i < h->n; i++) {
        const uint32_t *ln = hnsw_links0(h, (uint32_t)i);
        for (uint32_t j = 0; j < ln[0]; j++)
            indeg[ln[1 + j]]++;
    }
    walk(h, h->entry, seen, queue);
    hnsw_hit hits[64];
    for (size_t u = 0; u < h->n; u++) {
        if (seen[u])
            continue;
        /* nearest reachable nodes by a search for u's own vector */
        size_t n = 0;
        hnsw_search(h, s, hnsw_vec(h, (uint32_t)u), 64, 64, hits, &n, NULL);
        /* the nearest reachable node with a free slot, else the nearest */
        uint32_t from = HNSW_NONE, nearest = HNSW_NONE;
        for (size_t i = 0; i < n && from == HNSW_NONE; i++) {
            uint32_t v = hits[i].id;
            if (!seen[v] || v == u)
                continue;
            if (nearest == HNSW_NONE)
                nearest = v;
            if (hnsw_links0(h, v)[0] < h->p.M0)
                from = v;
        }
        if (from == HNSW_NONE)
            from = nearest != HNSW_NONE ? nearest : h->entry;
        uint32_t *ln = hnsw_links0(h, from);
        if (ln[0] < h->p.M0) {
            ln[1 + ln[0]++] = (uint32_t)u;
        } else {
            uint32_t best = 0;
            for (uint32_t j = 1; j < ln[0]; j++)
                if (indeg[ln[1 + j]] > indeg[ln[1 + best]])
                    best = j;
            indeg[ln[1 + best]]--;
            ln[1 + best] = (uint32_t)u;
        }
        indeg[u]++;
        (*repaired)++;
        walk(h, (uint32_t)u, seen, queue);
    }
out:
    hnsw_searcher_destroy(&s);
    free(seen);
    free(queue);
    free(indeg);
    return rc;
}
