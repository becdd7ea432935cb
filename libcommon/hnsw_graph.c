/*
 * hnsw_graph.c - graph storage: creation, growth, appending nodes, levels,
 * tombstones. Growth copies into a new aligned block (amortised doubling),
 * so the loader can grow as frames arrive instead of trusting a header count.
 */
#include "hnsw.h"
#include "quant.h"
#include "rotation.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static size_t round64(size_t x)
{
    return (x + 63) & ~(size_t)63;
}

/* A node's level-0 link block: degree and M0 links, whole cache lines. */
static size_t links_block_bytes(uint32_t m0)
{
    return round64(sizeof(uint32_t) * (1 + (size_t)m0));
}

uint32_t hnsw_m0_fitting(uint32_t m0)
{
    return (uint32_t)(links_block_bytes(m0) / sizeof(uint32_t) - 1);
}

#define HUGE_PAGE ((size_t)2 << 20)

void *hnsw_alloc_block(size_t bytes)
{
    /* Big blocks are 2 MiB aligned and asked to be backed by transparent
     * huge pages: search hops between random nodes, and with 4 KiB pages
     * nearly every hop is a TLB miss. Where THP is off the advice is a no-op. */
    if (bytes < 2 * HUGE_PAGE)
        return aligned_alloc(64, round64(bytes ? bytes : 64));
    size_t rounded = (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    void *p = aligned_alloc(HUGE_PAGE, rounded);
#ifdef MADV_HUGEPAGE
    if (p)
        madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
}

void hnsw_params_defaults(hnsw_params *p)
{
    if (!p->M)
        p->M = 16;
    if (!p->M0)
        p->M0 = 2 * p->M;
    if (!p->ef_construction)
        p->ef_construction = 200;
}

int hnsw_new(const hnsw_params *p, size_t dim, hnsw **out, hf_err *e)
{
    *out = NULL;
    if (dim == 0 || dim > (1u << 20))
        return hf_err_set(e, HF_EDATA, "dimension %zu out of range", dim);
    if (p->M < 2 || p->M > 1024 || p->M0 < p->M || p->M0 > 4096)
        return hf_err_set(e, HF_EUSAGE, "M=%u, M0=%u out of range (2 <= M <= M0 <= 4096)", p->M,
                          p->M0);
    hnsw *h = calloc(1, sizeof *h);
    if (!h)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    h->dim = dim;
    h->p = *p;
    h->links_bytes = links_block_bytes(p->M0);
    h->node_bytes = h->links_bytes + round64(sizeof(float) * dim);
    h->entry = HNSW_NONE;
    h->max_level = -1;
    h->kern = metric_kernel(p->metric);
    h->skern = p->metric == METRIC_COSINE ? metric_kernel(METRIC_L2) : h->kern;
    pthread_mutex_init(&h->entry_lock, NULL);
    *out = h;
    return 0;
}

void hnsw_destroy(hnsw **hp)
{
    if (!hp || !*hp)
        return;
    hnsw *h = *hp;
    if (h->locks) {
        for (size_t i = 0; i < h->cap; i++)
            pthread_mutex_destroy(&h->locks[i]);
        free(h->locks);
    }
    pthread_mutex_destroy(&h->entry_lock);
    free(h->level0);
    free(h->levels);
    free(h->upper_off);
    free(h->upper);
    free(h->deleted);
    free(h->zero);
    free(h->cblock);
    free(h->clinks);
    free(h->cloff);
    free(h->perm);
    rotation_destroy(&h->rot);
    free(h->rows);
    free(h->row_rank);
    free(h->row_up);
    quant_destroy(&h->row_upq);
    free(h->row_up_slot);
    free(h->ext_id);
    quant_destroy(&h->codes);
    free(h);
    *hp = NULL;
}

static int grow(void **p, size_t old_bytes, size_t new_bytes)
{
    void *q = realloc(*p, new_bytes);
    if (!q)
        return -1;
    memset((char *)q + old_bytes, 0, new_bytes - old_bytes);
    *p = q;
    return 0;
}

int hnsw_reserve(hnsw *h, size_t cap, hf_err *e)
{
    if (cap <= h->cap)
        return 0;
    if (cap > UINT32_MAX - 1 || cap > SIZE_MAX / h->node_bytes)
        return hf_err_set(e, HF_ENOMEM, "%zu nodes is more than an index can hold", cap);
    char *blk = hnsw_alloc_block(cap * h->node_bytes);
    if (!blk)
        return hf_err_set(e, HF_ENOMEM, "cannot allocate %zu nodes of %zu bytes", cap,
                          h->node_bytes);
    if (h->level0)
        memcpy(blk, h->level0, h->n * h->node_bytes);
    /* the tail is left untouched (append clears each node), so reserving
     * for a declared count costs address space, not resident memory */
    free(h->level0);
    h->level0 = blk;
    if (grow((void **)&h->levels, h->cap, cap) ||
        grow((void **)&h->upper_off, h->cap * sizeof(uint32_t), cap * sizeof(uint32_t)) ||
        grow((void **)&h->deleted, h->cap, cap) ||
        (h->p.metric == METRIC_COSINE && grow((void **)&h->zero, h->cap, cap)))
        return hf_err_set(e, HF_ENOMEM, "cannot allocate node arrays");
    h->cap = cap;
    return 0;
}

/* Level of node id: geometric with ratio 1/M, drawn from a hash of (seed,
 * id) so the draw does not depend on thread scheduling. */
static int draw_level(const hnsw *h, uint64_t id)
{
    uint64_t z = h->p.seed + 0x9e3779b97f4a7c15ULL * (id + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    double u = ((z >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    int l = (int)(-log(u) / log((double)h->p.M));
    return l > HNSW_MAX_LEVEL ? HNSW_MAX_LEVEL : l;
}

static int set_level(hnsw *h, uint32_t id, int level, hf_err *e)
{
    h->levels[id] = (uint8_t)level;
    h->upper_off[id] = HNSW_NONE;
    if (level == 0)
        return 0;
    size_t need = (size_t)level * (1 + h->p.M);
    if (h->upper_len + need > UINT32_MAX - 1)
        return hf_err_set(e, HF_ENOMEM, "upper levels too large");
    if (h->upper_len + need > h->upper_cap) {
        size_t nc = h->upper_cap ? h->upper_cap * 2 : 4096;
        while (nc < h->upper_len + need)
            nc *= 2;
        if (grow((void **)&h->upper, h->upper_cap * sizeof(uint32_t), nc * sizeof(uint32_t)))
            return hf_err_set(e, HF_ENOMEM, "cannot allocate upper levels");
        h->upper_cap = nc;
    }
    h->upper_off[id] = (uint32_t)h->upper_len;
    memset(h->upper + h->upper_len, 0, need * sizeof(uint32_t));
    h->upper_len += need;
    return 0;
}

int hnsw_append_with_level(hnsw *h, const float *vec, int level, hf_err *e)
{
    if (level < 0 || level > HNSW_MAX_LEVEL)
        return hf_err_set(e, HF_EDATA, "node level %d out of range", level);
    if (h->n == h->cap) {
        int rc = hnsw_reserve(h, h->cap ? h->cap * 2 : 1024, e);
        if (rc)
            return rc;
    }
    uint32_t id = (uint32_t)h->n;
    memset(hnsw_links0(h, id), 0, h->node_bytes);
    float *v = hnsw_vec(h, id);
    memcpy(v, vec, h->dim * sizeof(float));
    if (h->p.metric == METRIC_COSINE) {
        vec_normalize(v, h->dim);
        size_t j = 0;
        while (j < h->dim && v[j] == 0)
            j++;
        h->zero[id] = j == h->dim; /* cosine 1 to everything: not a unit vector */
        h->n_zero += h->zero[id];
    }
    int rc = set_level(h, id, level, e);
    if (rc)
        return rc;
    h->deleted[id] = 0;
    h->n++;
    return 0;
}

int hnsw_append(hnsw *h, const float *vecs, size_t n, uint32_t *first, hf_err *e)
{
    if (first)
        *first = (uint32_t)h->n;
    if (h->n + n > h->cap) {
        size_t nc = h->cap ? h->cap : 1024;
        while (nc < h->n + n)
            nc *= 2;
        int rc = hnsw_reserve(h, nc, e);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = hnsw_append_with_level(h, vecs + i * h->dim, draw_level(h, h->n), e);
        if (rc)
            return rc;
    }
    return 0;
}

int hnsw_mark_deleted(hnsw *h, uint32_t id, hf_err *e)
{
    if (id >= h->n)
        return hf_err_set(e, HF_EDATA, "delete of id %u: no such node (index holds %zu)", id, h->n);
    if (!h->deleted[id]) {
        h->deleted[id] = 1;
        h->n_deleted++;
    }
    return 0;
}

size_t hnsw_memory_bytes(const hnsw *h)
{
    return h->n * h->node_bytes + h->upper_len * sizeof(uint32_t) +
           h->n * (sizeof(uint8_t) * 2 + sizeof(uint32_t));
}

int hnsw_shrink_m0(hnsw *h, uint32_t m0, hf_err *e)
{
    uint32_t need = m0 > h->p.M ? m0 : h->p.M;
    for (size_t i = 0; i < h->n; i++) {
        uint32_t d = hnsw_links0(h, (uint32_t)i)[0];
        need = d > need ? d : need;
    }
    if (need > h->p.M0)
        return hf_err_set(e, HF_EDATA, "level-0 degree %u above M0 %u", need, h->p.M0);
    h->p.M0 = need;
    return 0;
}

knn_base hnsw_knn_base(const hnsw *h)
{
    return (knn_base){.rows = hnsw_vec(h, 0),
                      .stride = h->node_bytes / sizeof(float),
                      .n = h->n,
                      .dim = h->dim,
                      .skip = h->n_deleted ? h->deleted : NULL,
                      .metric = h->p.metric};
}
