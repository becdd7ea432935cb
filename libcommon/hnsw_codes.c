/*
 * hnsw_codes.c - the compressed copy of level 0 used for traversal on codes.
 *
 * Why a copy: traversal should touch only links and codes, packed together
 * per node so one node is one or two cache lines of links plus a short code;
 * the f32 vectors stay in the level-0 block for building and re-ranking.
 * Links are duplicated (M0 + 1 u32 per node), which is small next to a
 * vector; hnsw_codes_sync_links refreshes them after the graph changes.
 */
#include <stdlib.h>
#include <string.h>

#include "hnsw.h"
#include "quant.h"

#define TRAIN_SAMPLE 20000

static int layout(hnsw *h, hf_err *e)
{
    h->clinks_bytes = sizeof(uint32_t) * (1 + (size_t)h->p.M0);
    size_t raw = h->clinks_bytes + h->codes->code_bytes;
    h->cnode_bytes = (raw + 3) & ~(size_t)3; /* u32 links stay aligned; no padding beyond */
    free(h->cblock);
    h->cblock = NULL;
    if (h->n && h->cnode_bytes > SIZE_MAX / h->n)
        return hf_err_set(e, HF_ENOMEM, "code block too large");
    size_t bytes = ((h->n * h->cnode_bytes + 63) / 64) * 64;
    h->cblock = hnsw_alloc_block(bytes);
    if (!h->cblock)
        return hf_err_set(e, HF_ENOMEM, "cannot allocate code block");
    memset(h->cblock, 0, bytes ? bytes : 64);
    return 0;
}

void hnsw_codes_sync_links(hnsw *h)
{
    if (!h->cblock)
        return;
    for (size_t i = 0; i < h->n; i++)
        memcpy(h->cblock + i * h->cnode_bytes, hnsw_links0(h, (uint32_t)i), h->clinks_bytes);
}

int hnsw_codes_build(hnsw *h, int kind, uint64_t seed, hf_err *e)
{
    quant_destroy(&h->codes);
    if (kind == QUANT_NONE || h->n == 0)
        return 0;
    /* train on an evenly spaced sample of the stored vectors */
    size_t n = h->n < TRAIN_SAMPLE ? h->n : TRAIN_SAMPLE;
    float *sample = malloc(n * h->dim * sizeof(float));
    if (!sample)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        memcpy(sample + i * h->dim, hnsw_vec(h, (uint32_t)(i * h->n / n)), h->dim * sizeof(float));
    int rc = quant_train((quant_kind)kind, h->p.metric, h->dim, sample, h->dim, n, seed, &h->codes,
                         e);
    free(sample);
    if (rc || (rc = layout(h, e)) != 0)
        return rc;
    for (size_t i = 0; i < h->n; i++)
        quant_encode(h->codes, hnsw_vec(h, (uint32_t)i),
                     (uint8_t *)h->cblock + i * h->cnode_bytes + h->clinks_bytes);
    hnsw_codes_sync_links(h);
    return 0;
}

int hnsw_codes_adopt(hnsw *h, quant *q, const uint8_t *codes, size_t n, hf_err *e)
{
    quant_destroy(&h->codes);
    h->codes = q;
    if (q->dim != h->dim || q->metric != h->p.metric || n != h->n)
        return hf_err_set(e, HF_EDATA, "codes do not match the index (dim, metric or count)");
    int rc = layout(h, e);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        memcpy(h->cblock + i * h->cnode_bytes + h->clinks_bytes, codes + i * q->code_bytes,
               q->code_bytes);
    hnsw_codes_sync_links(h);
    return 0;
}

size_t hnsw_codes_memory_bytes(const hnsw *h)
{
    return h->n * h->cnode_bytes + h->upper_len * sizeof(uint32_t);
}
