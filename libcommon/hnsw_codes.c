/*
 * hnsw_codes.c - the compressed copy of level 0 used for traversal on codes.
 *
 * Why a copy: traversal should touch only codes and links; the f32 vectors
 * stay in the level-0 block for building and re-ranking.
 * Layout: codes in their own block at a fixed stride (rounded to whole cache
 * lines when that costs at most an eighth), because every neighbour's code is
 * read while only expanded nodes' links are; and the level-0 lists packed
 * apart, each list byte-aligned at cloff[id], each link in cid_bits = bits(n)
 * bits (18 at 200k nodes), a list shorter than M0 ending with the all-ones
 * id. Variable-length lists because the mean level-0 degree is well under M0
 * (19 of 32 on the clustered bench set): at 128 dimensions M0 u32 slots
 * (132 B) would weigh more than the int8 code (128 B).
 * hnsw_codes_sync_links rebuilds the lists after the graph changes.
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

/* Whole cache lines when the padding is small, else 8-byte steps. */
static size_t code_stride(size_t code_bytes)
{
    size_t lines = (code_bytes + 63) / 64 * 64;
    return lines - code_bytes <= code_bytes / 8 ? lines : (code_bytes + 7) / 8 * 8;
}

static int layout(hnsw *h, hf_err *e)
{
    h->cnode_bytes = code_stride(h->codes->code_bytes);
    free(h->cblock);
    h->cblock = NULL;
    if (h->n && h->cnode_bytes > (SIZE_MAX - 128) / h->n)
        return hf_err_set(e, HF_ENOMEM, "code block too large");
    size_t bytes = ((h->n * h->cnode_bytes + 63) / 64) * 64;
    h->cblock = hnsw_alloc_block(bytes ? bytes : 64);
    if (!h->cblock)
        return hf_err_set(e, HF_ENOMEM, "cannot allocate code block");
    memset(h->cblock, 0, bytes ? bytes : 64);
    return 0;
}

/* Slots a list of degree deg takes: its links, and the end marker unless full. */
static size_t list_slots(const hnsw *h, uint32_t deg)
{
    return deg < h->p.M0 ? (size_t)deg + 1 : deg;
}

/* Bytes of a packed list of degree deg (lists start byte-aligned). */
static size_t list_bytes(const hnsw *h, uint32_t deg)
{
    return (list_slots(h, deg) * h->cid_bits + 7) / 8;
}

/* Pack one degree-prefixed list into out with an accumulator, low bits first. */
static void pack_list(const hnsw *h, const uint32_t *l, uint8_t *out)
{
    unsigned bits = h->cid_bits;
    uint64_t end = ((uint64_t)1 << bits) - 1, acc = 0;
    unsigned have = 0;
    size_t pos = 0, slots = list_slots(h, l[0]);
    for (size_t j = 0; j < slots; j++) {
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

int hnsw_codes_sync_links(hnsw *h, hf_err *e)
{
    if (!h->cblock)
        return 0;
    h->cid_bits = id_bits(h->n);
    size_t total = 0;
    for (size_t i = 0; i < h->n; i++)
        total += list_bytes(h, hnsw_links0(h, (uint32_t)i)[0]);
    if (total > UINT32_MAX)
        return hf_err_set(e, HF_ENOMEM, "packed level-0 links exceed 4 GiB");
    free(h->clinks);
    free(h->cloff);
    /* unpacking reads 8 bytes at a time: pad past the last list */
    h->clinks = hnsw_alloc_block(total + 8);
    h->cloff = malloc((h->n ? h->n : 1) * sizeof(uint32_t));
    if (!h->clinks || !h->cloff)
        return hf_err_set(e, HF_ENOMEM, "cannot allocate packed links");
    memset(h->clinks, 0, total + 8);
    h->clinks_len = total;
    size_t off = 0;
    for (size_t i = 0; i < h->n; i++) {
        const uint32_t *l = hnsw_links0(h, (uint32_t)i);
        h->cloff[i] = (uint32_t)off;
        pack_list(h, l, h->clinks + off);
        off += list_bytes(h, l[0]);
    }
    return 0;
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
    int rc =
        quant_train((quant_kind)kind, h->p.metric, h->dim, sample, h->dim, n, seed, &h->codes, e);
    free(sample);
    if (rc || (rc = layout(h, e)) != 0)
        return rc;
    for (size_t i = 0; i < h->n; i++)
        quant_encode(h->codes, hnsw_vec(h, (uint32_t)i), (uint8_t *)h->cblock + i * h->cnode_bytes);
    h->codes_exact = hnsw_codes_lossless(h);
    return hnsw_codes_sync_links(h, e);
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
        memcpy(h->cblock + i * h->cnode_bytes, codes + i * q->code_bytes, q->code_bytes);
    h->codes_exact = hnsw_codes_lossless(h);
    return hnsw_codes_sync_links(h, e);
}

/* Checked against the vectors rather than trusted from the quantizer's fit,
 * which saw only a sample. One pass over the vectors (tens of ms at load). */
int hnsw_codes_lossless(const hnsw *h)
{
    const quant *q = h->codes;
    if (!q || q->kind != QUANT_INT8 || q->metric != METRIC_L2 || q->step != 1.0f)
        return 0;
    int ok = 1;
    for (size_t i = 0; i < h->n && ok; i++) {
        const float *v = hnsw_vec(h, (uint32_t)i);
        const uint8_t *c = hnsw_code(h, (uint32_t)i);
        for (size_t j = 0; j < h->dim; j++)
            ok &= v[j] == q->lo + (float)c[j];
    }
    return ok;
}

/* Everything a search on codes reads: codes, packed level-0 lists and their
 * offsets, upper-level lists and their offsets, tombstone flags. */
size_t hnsw_codes_memory_bytes(const hnsw *h)
{
    return h->n * h->cnode_bytes + h->clinks_len + h->n * sizeof(uint32_t) +
           h->upper_len * sizeof(uint32_t) + h->n * sizeof(uint32_t) + h->n;
}
