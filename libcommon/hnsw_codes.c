/*
 * hnsw_codes.c - the compressed copy of level 0 used for traversal on codes.
 *
 * Why a copy: traversal should touch only links and codes, packed together
 * per node so one node is a few cache lines of links plus a short code; the
 * f32 vectors stay in the level-0 block for building and re-ranking.
 * Why packed links: at 128 dimensions an int8 code is 128 B while M0 = 32
 * u32 links are 132 B, so plain links would double traversal memory. Each
 * link takes cid_bits = bits(n) instead (18 at 200k nodes); a list shorter
 * than M0 ends with the all-ones id. hnsw_codes_sync_links refreshes the
 * copy after the graph changes.
 */
#include <stdlib.h>
#include <string.h>

#include "hnsw.h"
#include "quant.h"

#define TRAIN_SAMPLE 20000

/* Bits per packed id: enough for every id and the all-ones end marker. */
static unsigned id_bits(size_t n)
{
    unsigned b = 1;
    while (b < 32 && ((uint64_t)1 << b) - 1 < n)
        b++;
    return b;
}

static int layout(hnsw *h, hf_err *e)
{
    h->cid_bits = id_bits(h->n);
    h->clinks_bytes = ((size_t)h->p.M0 * h->cid_bits + 7) / 8;
    h->cnode_bytes = h->clinks_bytes + h->codes->code_bytes;
    free(h->cblock);
    h->cblock = NULL;
    if (h->n && h->cnode_bytes > (SIZE_MAX - 128) / h->n)
        return hf_err_set(e, HF_ENOMEM, "code block too large");
    /* unpacking reads 8 bytes at a time: pad past the last node */
    size_t bytes = ((h->n * h->cnode_bytes + 8 + 63) / 64) * 64;
    h->cblock = hnsw_alloc_block(bytes);
    if (!h->cblock)
        return hf_err_set(e, HF_ENOMEM, "cannot allocate code block");
    memset(h->cblock, 0, bytes);
    return 0;
}

/* Pack one level-0 list (degree-prefixed) into out[0..clinks_bytes) with an
 * accumulator, low bits first; absent slots get the all-ones end id. */
static void pack_links(const hnsw *h, const uint32_t *l, uint8_t *out)
{
    unsigned bits = h->cid_bits;
    uint64_t end = ((uint64_t)1 << bits) - 1, acc = 0;
    unsigned have = 0;
    size_t pos = 0;
    for (uint32_t j = 0; j < h->p.M0; j++) {
        acc |= (j < l[0] ? l[1 + j] : end) << have;
        have += bits;
        while (have >= 8) {
            out[pos++] = (uint8_t)acc;
            acc >>= 8;
            have -= 8;
        }
    }
    if (have)
        out[pos] = (uint8_t)acc;
}

void hnsw_codes_sync_links(hnsw *h)
{
    if (!h->cblock)
        return;
    for (size_t i = 0; i < h->n; i++)
        pack_links(h, hnsw_links0(h, (uint32_t)i), (uint8_t *)h->cblock + i * h->cnode_bytes);
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
