/*
 * hnsw_reorder.c - renumber a loaded graph's nodes in breadth-first order
 * of level 0, so nodes a search visits together sit together in memory.
 *
 * Why: ids are insertion order, which for most data is unrelated to the
 * graph; a beam search then touches records scattered over the whole block
 * (tens of MiB, more than the L3 cache). Breadth-first order from the entry
 * point puts a node's neighbours near it, so more of a search's working set
 * stays in cache (graph reordering, Coleman et al. 2021). The renumbering
 * is internal: h->ext_id maps it back and searches return the original ids.
 * Only for graphs that are searched, not changed afterwards.
 */
#include <stdlib.h>
#include <string.h>

#include "hnsw.h"
#include "quant.h"

/* Breadth-first order of level 0 from the entry point; nodes it cannot
 * reach (none after reachability repair) follow in id order. */
static void bfs_order(const hnsw *h, uint32_t *order, uint8_t *seen)
{
    size_t head = 0, tail = 0;
    if (h->entry != HNSW_NONE) {
        order[tail++] = h->entry;
        seen[h->entry] = 1;
    }
    for (size_t next = 0; tail < h->n;) {
        if (head == tail) { /* unreachable rest: start from the next unseen id */
            while (seen[next])
                next++;
            order[tail++] = (uint32_t)next;
            seen[next] = 1;
        }
        const uint32_t *l = hnsw_links0(h, order[head++]);
        for (uint32_t j = 0; j < l[0]; j++)
            if (!seen[l[1 + j]]) {
                seen[l[1 + j]] = 1;
                order[tail++] = l[1 + j];
            }
    }
}

static void remap_list(uint32_t *l, const uint32_t *new_id)
{
    for (uint32_t j = 0; j < l[0]; j++)
        l[1 + j] = new_id[l[1 + j]];
}

int hnsw_reorder(hnsw *h, hf_err *e)
{
    if (h->n < 2)
        return 0;
    size_t n = h->n;
    uint32_t *order = malloc(n * sizeof *order), *new_id = malloc(n * sizeof *new_id);
    /* per-node arrays keep their capacity (h->cap) as hnsw_reserve expects */
    uint32_t *ext = malloc(n * sizeof *ext), *upper_off = calloc(h->cap, sizeof *upper_off);
    uint8_t *seen = calloc(n, 1), *levels = calloc(h->cap, 1), *deleted = calloc(h->cap, 1);
    char *blk = hnsw_alloc_block(h->cap * h->node_bytes);
    uint8_t *codes = h->codes ? malloc(n * h->codes->code_bytes) : NULL;
    if (!order || !new_id || !ext || !upper_off || !seen || !levels || !deleted || !blk ||
        (h->codes && !codes)) {
        free(order), free(new_id), free(ext), free(upper_off), free(seen), free(levels);
        free(deleted), free(blk), free(codes);
        return hf_err_set(e, HF_ENOMEM, "out of memory for reordering %zu nodes", n);
    }
    bfs_order(h, order, seen);
    for (size_t i = 0; i < n; i++)
        new_id[order[i]] = (uint32_t)i;
    for (size_t i = 0; i < n; i++) {
        uint32_t o = order[i];
        memcpy(blk + i * h->node_bytes, h->level0 + (size_t)o * h->node_bytes, h->node_bytes);
        remap_list((uint32_t *)(void *)(blk + i * h->node_bytes), new_id);
        levels[i] = h->levels[o];
        upper_off[i] = h->upper_off[o];
        deleted[i] = h->deleted[o];
        ext[i] = h->ext_id ? h->ext_id[o] : o;
        if (codes)
            memcpy(codes + i * h->codes->code_bytes, hnsw_code(h, o), h->codes->code_bytes);
        /* upper lists stay where they are in the pool; only their ids change */
        for (int l = 1; l <= levels[i]; l++)
            remap_list(h->upper + upper_off[i] + (size_t)(l - 1) * (1 + h->p.M), new_id);
    }
    free(h->level0), free(h->levels), free(h->upper_off), free(h->deleted), free(h->ext_id);
    h->level0 = blk;
    h->levels = levels;
    h->upper_off = upper_off;
    h->deleted = deleted;
    h->ext_id = ext;
    h->entry = new_id[h->entry];
    free(order), free(new_id), free(seen);
    int rc = 0;
    if (codes) {
        /* the code block is a copy of level 0: rebuild it in the new order */
        quant *q = h->codes;
        h->codes = NULL;
        rc = hnsw_codes_adopt(h, q, codes, n, e);
        free(codes);
    }
    return rc;
}
