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

/* Move n records of `size` bytes in place so that position i receives the
 * record at order[i], one cycle at a time through tmp; done[] is scratch
 * (zeroed). In place because the level-0 block is most of the index: a
 * second copy would double the peak memory of a query server. */
static void permute_records(char *base, size_t size, size_t n, const uint32_t *order, uint8_t *done,
                            char *tmp)
{
    memset(done, 0, n);
    for (size_t s = 0; s < n; s++) {
        if (done[s] || order[s] == s) {
            done[s] = 1;
            continue;
        }
        memcpy(tmp, base + s * size, size);
        size_t j = s;
        while (order[j] != s) {
            memcpy(base + j * size, base + (size_t)order[j] * size, size);
            done[j] = 1;
            j = order[j];
        }
        memcpy(base + j * size, tmp, size);
        done[j] = 1;
    }
}

/* Same for a small per-node array, through a copy. */
static void permute_small(void *arr, size_t size, size_t n, const uint32_t *order, char *copy)
{
    memcpy(copy, arr, n * size);
    for (size_t i = 0; i < n; i++)
        memcpy((char *)arr + i * size, copy + (size_t)order[i] * size, size);
}

int hnsw_reorder(hnsw *h, hf_err *e)
{
    if (h->n < 2)
        return 0;
    size_t n = h->n;
    size_t rec = h->node_bytes > h->cnode_bytes ? h->node_bytes : h->cnode_bytes;
    uint32_t *order = malloc(n * sizeof *order), *new_id = malloc(n * sizeof *new_id);
    uint32_t *ext = malloc(n * sizeof *ext);
    uint8_t *seen = calloc(n, 1);
    char *copy = malloc(n * sizeof(uint32_t)), *tmp = malloc(rec);
    if (!order || !new_id || !ext || !seen || !copy || !tmp) {
        free(order), free(new_id), free(ext), free(seen), free(copy), free(tmp);
        return hf_err_set(e, HF_ENOMEM, "out of memory for reordering %zu nodes", n);
    }
    bfs_order(h, order, seen);
    for (size_t i = 0; i < n; i++) {
        new_id[order[i]] = (uint32_t)i;
        ext[i] = h->ext_id ? h->ext_id[order[i]] : order[i];
    }
    permute_records(h->level0, h->node_bytes, n, order, seen, tmp);
    if (h->cblock)
        permute_records(h->cblock, h->cnode_bytes, n, order, seen, tmp);
    permute_small(h->levels, 1, n, order, copy);
    permute_small(h->deleted, 1, n, order, copy);
    if (h->zero)
        permute_small(h->zero, 1, n, order, copy);
    permute_small(h->upper_off, sizeof(uint32_t), n, order, copy);
    for (size_t i = 0; i < n; i++) {
        remap_list(hnsw_links0(h, (uint32_t)i), new_id);
        /* upper lists stay where they are in the pool; only their ids change */
        for (int l = 1; l <= h->levels[i]; l++)
            remap_list(hnsw_links(h, (uint32_t)i, l), new_id);
    }
    h->entry = new_id[h->entry];
    free(h->ext_id);
    h->ext_id = ext;
    free(order), free(new_id), free(seen), free(copy), free(tmp);
    return hnsw_codes_sync_links(h, e); /* the packed lists, renumbered */
}
