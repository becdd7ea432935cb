/*
 * hnsw_rows.c - the row layout for fast search (graph-build --preset speed):
 * per node one row with its neighbour ids, 1-bit codes of its neighbours
 * and its own vector, searched SymphonyQG-style with exact answers.
 *
 * Row of node c (whole 64-byte lines, every part 64-byte aligned, as long
 * as c's degree needs; where it starts, row_start below):
 *   f32 y_c[dpad]                    the node's vector rotated (R x, x padded
 *                                    with zeros to dpad, a multiple of 64)
 *   [u32 degree][f32 bias][u32 ids[16 nbatch]]   nbatch = degree / 16 rounded up
 *   per batch of 16: f32 A[16], B[16], C[16]   (factors, below), then the
 *                    neighbours' codes (fastscan.h's 16-vector layout,
 *                    dpad / 8 bytes each)
 * R is a random orthogonal transform (rotation.h: the block kind, or a
 * dense matrix in indexes written before it; saved in the "rows" frame),
 * so |R q - R x| = |q - x| and coordinates of residuals look Gaussian, which
 * RaBitQ's estimator needs. A neighbour o of c is coded relative to c:
 * u = y_o - y_c, bits b_i = [u_i > 0], and with r = y_q - y_c
 *   |q - o|^2 = |r|^2 + |u|^2 - 2 <u, r>,   <u, r> ~ |u|^2 (2 <b, r> - sum r) / sum |u_i|
 * (RaBitQ: <o', q'> estimated by <x, q'> / <x, o'> with x = (2b - 1)/sqrt(D)).
 * With r ~ lo + delta * rq (6 bits, fastscan.h), <b, r> ~ lo P + delta <b, rq>,
 * P = popcount(b), so est = |r|^2 + A + 2 lo C + B (2 delta <b, rq> - sum r)
 * with A = |u|^2, B = -2 |u|^2 / sum |u_i|, C = B P. RaBitQ's error bound
 * is not stored: the search only ranks candidates by estimate and measures
 * every node it expands exactly, so no decision needs it (128 bytes a row).
 *
 * Search (one row read per expanded node): a pool of the ef best candidates
 * by estimate, sorted; pop the nearest unexpanded one, take its exact
 * distance from the vector in its own row (the residual's |r|^2 costs
 * nothing more), put it among the results, estimate all its neighbours in
 * one batched scan and insert the unvisited ones whose estimate beats the
 * pool's worst. Only exactly measured nodes enter the results, so answers
 * and their distances are exact. A neighbour is marked visited only when it
 * enters the pool: one rejected from one row may be estimated better from
 * another.
 *
 * The rows are derived data: query builds them at load (after renumbering)
 * from the graph, the vectors and the saved rotation; only R is stored.
 * l2 and cosine (unit vectors, searched in squared L2) only.
 */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fastscan.h"
#include "hnsw.h"
#include "hnsw_heap.h"
#include "par.h"
#include "quant.h"
#include "rotation.h"

/* neighbours a batch of a row: 16, so the mean level-0 degree (14 on
 * fmnist-proj256 at M 16) fills one batch and a row is no longer than its
 * node's degree needs (the 32-wide batches of M0 = 32 read 41 lines a row
 * there, these 29 for most rows) */
#define ROW_BATCH 16
#ifndef ROW_EXACT_KEYS
#define ROW_EXACT_KEYS 1
#endif
/* cache level rows are prefetched into (__builtin_prefetch locality) */
#ifndef ROW_PREFETCH_HINT
#define ROW_PREFETCH_HINT 1
#endif

static size_t round64(size_t x)
{
    return (x + 63) / 64 * 64;
}

size_t hnsw_rows_dpad(size_t dim)
{
    return round64(dim);
}

int hnsw_rows_plan(hnsw *h, uint64_t seed, hf_err *e)
{
    if (h->p.metric != METRIC_L2 && h->p.metric != METRIC_COSINE)
        return hf_err_set(e, HF_EUSAGE, "the speed layout needs metric l2 or cosine, not %s",
                          metric_name(h->p.metric));
    size_t D = hnsw_rows_dpad(h->dim);
    if (D > HNSW_ROWS_MAX_DPAD)
        return hf_err_set(e, HF_EUSAGE, "the speed layout takes at most %d dimensions, not %zu",
                          HNSW_ROWS_MAX_DPAD, h->dim);
    rotation *r;
    int rc = rotation_plan(D, ROTATION_ROUNDS, seed, &r, e);
    if (rc)
        return rc;
    rotation_destroy(&h->rot);
    h->rot = r;
    h->rot_dpad = D;
    return 0;
}

int hnsw_rows_adopt(hnsw *h, rotation *r, hf_err *e)
{
    if (h->p.metric != METRIC_L2 && h->p.metric != METRIC_COSINE)
        return hf_err_set(e, HF_EDATA, "rows frame on a %s index (only l2 and cosine)",
                          metric_name(h->p.metric));
    if (r->dpad != hnsw_rows_dpad(h->dim))
        return hf_err_set(e, HF_EDATA, "rows frame: dpad %zu, dimension %zu needs %zu", r->dpad,
                          h->dim, hnsw_rows_dpad(h->dim));
    rotation_destroy(&h->rot);
    h->rot = r;
    h->rot_dpad = r->dpad;
    return 0;
}

/* Where a row starts, without a per-node offset array: an offset array
 * (240 KiB at 60k nodes) left L2 under the rows streaming through, and
 * every prefetch of the next row then waited for a DRAM miss on its offset
 * (measured 22 % slower than fixed-size rows). Rows are laid out in node
 * order and take row_l0 + row_lb * nbatch lines, so node i starts at
 * i row_l0 + row_lb (batches of the nodes before i): per 64 nodes one
 * count of the lines before them and nbatch's three bit planes (nbatch
 * <= 7, M0 <= 112), 32 bytes that stay in cache; the rest is popcounts. */
typedef struct hnsw_row_rank {
    uint32_t base; /* lines before the block's first node */
    uint32_t pad;
    uint64_t plane[3]; /* bit t of nbatch of the block's node j, at bit j */
} hnsw_row_rank;
#define ROW_MAX_BATCHES 7

static inline uint32_t row_batches(const hnsw *h, uint32_t id)
{
    const hnsw_row_rank *r = h->row_rank + (id >> 6);
    unsigned j = id & 63;
    return (uint32_t)((r->plane[0] >> j & 1) | (r->plane[1] >> j & 1) << 1 |
                      (r->plane[2] >> j & 1) << 2);
}
static inline char *row_at(const hnsw *h, uint32_t id)
{
    const hnsw_row_rank *r = h->row_rank + (id >> 6);
    unsigned j = id & 63;
    uint64_t m = ((uint64_t)1 << j) - 1;
    size_t before = (size_t)__builtin_popcountll(r->plane[0] & m) +
                    2 * (size_t)__builtin_popcountll(r->plane[1] & m) +
                    4 * (size_t)__builtin_popcountll(r->plane[2] & m);
    return h->rows + 64 * (r->base + j * h->row_l0 + before * h->row_lb);
}
static inline size_t row_lines(const hnsw *h, uint32_t id)
{
    return h->row_l0 + h->row_lb * row_batches(h, id);
}
/* [u32 degree][f32 bias][u32 ids], after the vector. The bias is added to
 * every squared distance to the node: hnsw_zero_bias (1 for a zero vector
 * of a cosine index, which lies at squared chord 2 from any unit query
 * where |q - 0|^2 gives 1). */
static inline uint32_t *row_head(const hnsw *h, uint32_t id)
{
    return (uint32_t *)(void *)(row_at(h, id) + h->rot_dpad * sizeof(float));
}
static inline float *row_bias(const hnsw *h, uint32_t id)
{
    return (float *)(void *)(row_head(h, id) + 1);
}
static inline size_t head_bytes(uint32_t batches)
{
    return round64(sizeof(uint32_t) * (2 + (size_t)ROW_BATCH * batches));
}
static inline size_t batch_bytes(size_t D)
{
    return 3 * ROW_BATCH * sizeof(float) + fs_batch16_bytes(D);
}
static inline uint32_t batches_of(uint32_t degree)
{
    return (degree + ROW_BATCH - 1) / ROW_BATCH;
}
static inline float *row_vec(const hnsw *h, uint32_t id)
{
    return (float *)(void *)row_at(h, id);
}
static inline size_t row_size(size_t D, uint32_t degree)
{
    return D * sizeof(float) + head_bytes(batches_of(degree)) + batches_of(degree) * batch_bytes(D);
}
/* Batch b of a row whose head is at `head`: f32 A[16], B[16], C[16], then
 * the codes. */
static inline float *batch_fac(const hnsw *h, uint32_t id, const uint32_t *head, uint32_t b)
{
    return (float *)(void *)((const char *)head + head_bytes(row_batches(h, id)) +
                             b * batch_bytes(h->rot_dpad));
}
static inline const uint8_t *batch_codes(const float *fac)
{
    return (const uint8_t *)(fac + 3 * ROW_BATCH);
}

/* Code neighbour slot j of node c's row from the rotated vectors. */
static void encode_slot(hnsw *h, const dist_kernels *dk, uint32_t c, uint32_t j, uint32_t o)
{
    size_t D = h->rot_dpad, half = D / 8;
    const float *yc = row_vec(h, c), *yo = row_vec(h, o);
    double n2 = dk->l2sq(yo, yc, D), l1 = dk->l1(yo, yc, D);
    unsigned pop = 0, s = j % ROW_BATCH;
    float *f = batch_fac(h, c, row_head(h, c), j / ROW_BATCH);
    uint8_t *codes = (uint8_t *)(f + 3 * ROW_BATCH) + s;
    for (size_t g = 0; g < D / 4; g++) {
        const float *a = yo + 4 * g, *b = yc + 4 * g;
        unsigned nib = (unsigned)(a[0] > b[0]) | (unsigned)(a[1] > b[1]) << 1 |
                       (unsigned)(a[2] > b[2]) << 2 | (unsigned)(a[3] > b[3]) << 3;
        pop += (unsigned)(0x4332322132212110ull >> (4 * nib) & 15); /* bits in nib */
        codes[16 * (g % half)] |= (uint8_t)(nib << (g < half ? 0 : 4));
    }
    float bias = hnsw_zero_bias(h, o);
    if (l1 <= 0) { /* o sits on c: the estimate is |r|^2 (+ its bias), exact */
        f[s] = bias;
        f[ROW_BATCH + s] = f[2 * ROW_BATCH + s] = 0;
        return;
    }
    double B = -2.0 * n2 / l1;
    f[s] = (float)n2 + bias;
    f[ROW_BATCH + s] = (float)B;
    f[2 * ROW_BATCH + s] = (float)(B * pop);
}

typedef struct encode_job {
    hnsw *h;
    size_t first, end;
    const float *dense_y; /* the dense kind's R x of every node, D apart */
    int failed;
} encode_job;

static void *rotate_part(void *arg)
{
    encode_job *j = arg;
    hnsw *h = j->h;
    size_t D = h->rot_dpad;
    if (j->dense_y) {
        for (size_t c = j->first; c < j->end; c++)
            memcpy(row_vec(h, (uint32_t)c), j->dense_y + c * D, D * sizeof(float));
        return NULL;
    }
    float *tmp = malloc(rotation_scratch(h->rot) * sizeof(float));
    if (!tmp) {
        j->failed = 1;
        return NULL;
    }
    for (size_t c = j->first; c < j->end; c++)
        rotation_apply(h->rot, hnsw_vec(h, (uint32_t)c), h->dim, row_vec(h, (uint32_t)c), tmp);
    free(tmp);
    return NULL;
}

static void *encode_part(void *arg)
{
    encode_job *j = arg;
    hnsw *h = j->h;
    const dist_kernels *dk = dist_best();
    for (size_t c = j->first; c < j->end; c++) {
        const uint32_t *l = hnsw_links0(h, (uint32_t)c);
        uint32_t *head = row_head(h, (uint32_t)c);
        head[0] = l[0];
        *row_bias(h, (uint32_t)c) = hnsw_zero_bias(h, (uint32_t)c);
        for (uint32_t s = 0; s < l[0]; s++) {
            head[2 + s] = l[1 + s];
            encode_slot(h, dk, (uint32_t)c, s, l[1 + s]);
        }
    }
    return NULL;
}

/* The int8 codes of the upper levels' rotated vectors (hnsw.h). */
static int build_upper(hnsw *h, hf_err *e)
{
    size_t D = h->rot_dpad, nup = 0;
    h->row_up_slot = malloc((h->n ? h->n : 1) * sizeof(uint32_t));
    if (!h->row_up_slot)
        return hf_err_set(e, HF_ENOMEM, "out of memory for the upper-level slots");
    for (size_t i = 0; i < h->n; i++)
        h->row_up_slot[i] = h->levels[i] > 0 ? (uint32_t)nup++ : HNSW_NONE;
    if (!nup)
        return 0;
    float *y = malloc(nup * D * sizeof(float));
    h->row_up = hnsw_alloc_block(nup * D);
    if (!y || !h->row_up) {
        free(y);
        return hf_err_set(e, HF_ENOMEM, "out of memory for %zu upper-level codes", nup);
    }
    for (size_t i = 0; i < h->n; i++)
        if (h->row_up_slot[i] != HNSW_NONE)
            memcpy(y + D * h->row_up_slot[i], row_vec(h, (uint32_t)i), D * sizeof(float));
    int rc = quant_train(QUANT_INT8, METRIC_L2, D, y, D, nup, 1, &h->row_upq, e);
    for (size_t t = 0; rc == 0 && t < nup; t++)
        quant_encode(h->row_upq, y + D * t, h->row_up + D * t);
    free(y);
    return rc;
}

int hnsw_rows_build(hnsw *h, int threads, hf_err *e)
{
    if (!h->rot)
        return 0;
    size_t D = h->rot_dpad, n = h->n;
    free(h->rows);
    free(h->row_rank);
    free(h->row_up);
    free(h->row_up_slot);
    quant_destroy(&h->row_upq);
    h->rows = NULL;
    h->row_rank = NULL;
    h->row_up = NULL;
    h->row_up_slot = NULL;
    if (batches_of(h->p.M0) > ROW_MAX_BATCHES)
        return hf_err_set(e, HF_EUSAGE, "the speed layout takes M0 <= %d, not %u",
                          ROW_MAX_BATCHES * ROW_BATCH, h->p.M0);
    /* row_size(D, degree) = 64 (row_l0 + row_lb * batches_of(degree)) */
    h->row_l0 = row_size(D, 0) / 64;
    h->row_lb = row_size(D, ROW_BATCH) / 64 - h->row_l0;
    size_t nblk = (n + 63) / 64;
    h->row_rank = calloc(nblk ? nblk : 1, sizeof(hnsw_row_rank));
    if (!h->row_rank)
        return hf_err_set(e, HF_ENOMEM, "out of memory for the row index");
    size_t lines = 0;
    for (size_t i = 0; i < n; i++) {
        if (lines > UINT32_MAX - 64 * (h->row_l0 + ROW_MAX_BATCHES * h->row_lb))
            return hf_err_set(e, HF_ENOMEM, "row block too large");
        hnsw_row_rank *r = h->row_rank + i / 64;
        if (i % 64 == 0)
            r->base = (uint32_t)lines;
        uint32_t nb = batches_of(hnsw_links0(h, (uint32_t)i)[0]);
        for (unsigned t = 0; t < 3; t++)
            r->plane[t] |= (uint64_t)(nb >> t & 1) << (i % 64);
        lines += h->row_l0 + h->row_lb * nb;
    }
    h->row_lines_total = lines;
    h->rows = hnsw_alloc_block(lines ? 64 * lines : 64);
    if (!h->rows)
        return hf_err_set(e, HF_ENOMEM, "cannot allocate %zu bytes of rows", 64 * lines);
    memset(h->rows, 0, 64 * lines);
    if (threads < 1)
        threads = 1;
    if (threads > PAR_MAX_THREADS)
        threads = PAR_MAX_THREADS;
    float *dense_y = NULL;
    if (n && h->rot->rounds == 0) { /* y = R x for every node at once */
        dense_y = malloc(n * D * sizeof(float));
        if (!dense_y)
            return hf_err_set(e, HF_ENOMEM, "out of memory for the rotated vectors");
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)D, (int)h->dim, 1.0f,
                    hnsw_vec(h, 0), (int)(h->node_bytes / sizeof(float)), h->rot->dense, (int)D,
                    0.0f, dense_y, (int)D);
    }
    encode_job jobs[PAR_MAX_THREADS];
    for (int t = 0; t < threads; t++)
        jobs[t] = (encode_job){h, n * (size_t)t / (size_t)threads,
                               n * (size_t)(t + 1) / (size_t)threads, dense_y, 0};
    /* every neighbour's rotated vector is needed before any is coded */
    par_run(threads, jobs, sizeof jobs[0], rotate_part);
    free(dense_y);
    for (int t = 0; t < threads; t++)
        if (jobs[t].failed)
            return hf_err_set(e, HF_ENOMEM, "out of memory for the rotation's scratch");
    par_run(threads, jobs, sizeof jobs[0], encode_part);
    return build_upper(h, e);
}

size_t hnsw_rows_memory_bytes(const hnsw *h)
{
    if (!h->rows)
        return 0;
    size_t nup = 0;
    for (size_t i = 0; i < h->n; i++)
        nup += h->row_up_slot[i] != HNSW_NONE;
    const rotation *r = h->rot;
    size_t B = r->dpad / ROTATION_BLOCK;
    size_t rot = r->rounds ? r->rounds * (r->dpad + B * B) : r->dpad * r->dpad;
    return 64 * h->row_lines_total + (h->n + 63) / 64 * sizeof(hnsw_row_rank) +
           h->n * sizeof(uint32_t) + nup * h->rot_dpad + rot * sizeof(float);
}

size_t hnsw_rows_mean_bytes(const hnsw *h)
{
    return h->rows && h->n ? 64 * h->row_lines_total / h->n : 0;
}

/* ---- search ---- */

/* The candidate pool: the best `cap` by key, sorted ascending; `cur` is the
 * first entry not yet expanded (everything before it is). */
typedef struct pool_ent {
    float d;
    uint32_t id; /* top bit: expanded */
} pool_ent;

#define EXPANDED 0x80000000u

struct hnsw_rows_scratch {
    visited_bits vis;
    pool_ent *pool;
    size_t cap;
    hheap res;
    float *y;
    uint8_t *rq, *lut;
    const fs_kernels *fk;
    quant_query *uq; /* the query against the upper levels' codes */
    float *rtmp;     /* rotation_apply's scratch */
};

int hnsw_rows_scratch_new(const hnsw *h, size_t max_ef, hnsw_rows_scratch **out, hf_err *e)
{
    *out = NULL;
    hnsw_rows_scratch *s = calloc(1, sizeof *s);
    if (!s)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    size_t D = h->rot_dpad;
    s->vis.words = (h->n + 63) / 64 + 1;
    s->vis.w = calloc(s->vis.words, sizeof(uint64_t));
    s->cap = max_ef + 1;
    s->pool = malloc((s->cap + 1) * sizeof(pool_ent));
    s->res.cap = max_ef + 2;
    s->res.a = malloc(s->res.cap * sizeof(hnsw_hit));
    s->y = hnsw_alloc_block(D * sizeof(float) + 64);
    s->rq = hnsw_alloc_block(D + 64);
    s->lut = hnsw_alloc_block(D * 4 + 64);
    s->rtmp = malloc(D * sizeof(float));
    s->fk = fs_best();
    if (!s->vis.w || !s->pool || !s->res.a || !s->y || !s->rq || !s->lut || !s->rtmp ||
        (h->row_upq && quant_query_new(h->row_upq, &s->uq, e) != 0)) {
        hnsw_rows_scratch_destroy(&s);
        return hf_err_set(e, HF_ENOMEM, "out of memory for search scratch");
    }
    *out = s;
    return 0;
}

void hnsw_rows_scratch_destroy(hnsw_rows_scratch **sp)
{
    if (!sp || !*sp)
        return;
    hnsw_rows_scratch *s = *sp;
    free(s->vis.w);
    free(s->pool);
    free(s->res.a);
    free(s->y);
    free(s->rq);
    free(s->lut);
    free(s->rtmp);
    quant_query_destroy(&s->uq);
    free(s);
    *sp = NULL;
}

static inline int vis_test(const visited_bits *v, uint32_t id)
{
    return (int)(v->w[id >> 6] >> (id & 63) & 1);
}
static inline void vis_set(visited_bits *v, uint32_t id)
{
    v->w[id >> 6] |= (uint64_t)1 << (id & 63);
}

/* Insert (d, id) keeping the best cap; returns the new cur. */
static inline size_t pool_insert(pool_ent *p, size_t *n, size_t cap, size_t cur, float d,
                                 uint32_t id)
{
    /* first entry with a key above d, branch-free (a conditional move a
     * level: the branchy search mispredicted about every other level) */
    size_t lo = 0, len = *n;
    while (len > 0) {
        size_t half = len / 2;
        int right = p[lo + half].d <= d;
        lo = right ? lo + half + 1 : lo;
        len = right ? len - half - 1 : half;
    }
    if (lo >= cap)
        return cur;
    size_t move = (*n < cap ? *n : cap - 1) - lo;
    memmove(p + lo + 1, p + lo, move * sizeof *p);
    p[lo].d = d;
    p[lo].id = id;
    if (*n < cap)
        (*n)++;
    return lo < cur ? lo : cur;
}

/* The whole row: fetching only its first lines and leaving the rest to
 * the hardware prefetcher was slower (fmnist-proj256 ef 24, best of 5:
 * 4 lines 17.8k QPS, 12 lines 22.6k, all 43 lines 26.6k); locality 1
 * (prefetcht2) beat 2 and 3 (medians of 7: 33.2k, 29.7k, 28.0k QPS). */

/* GCC 12 drops __builtin_prefetch of an address computed as row_at does
 * (no prefetch instruction left in the search; rows then arrived only when
 * read, 25 % slower), so on x86-64 the instruction is written out. */
static inline void prefetch_line(const char *p)
{
#if defined(__x86_64__) && ROW_PREFETCH_HINT == 1
    __asm__ volatile("prefetcht2 %0" : : "m"(*p));
#else
    __builtin_prefetch(p, 0, ROW_PREFETCH_HINT);
#endif
}

static inline void prefetch_row(const hnsw *h, uint32_t id)
{
    const char *r = row_at(h, id);
    size_t lines = row_lines(h, id);
    for (size_t a = 0; a < lines; a++)
        prefetch_line(r + 64 * a);
}

/* Estimated squared distance of the rotated query to a node above level 0
 * (its int8 code), its bias included. */
static inline float up_dist(const hnsw *h, const quant_query *uq, uint32_t id)
{
    return quant_distance(uq, h->row_up + (size_t)h->row_up_slot[id] * h->rot_dpad) +
           (h->n_zero ? *row_bias(h, id) : 0.0f);
}

int hnsw_rows_search(const hnsw *h, hnsw_rows_scratch *s, const float *q, size_t k, size_t ef,
                     hnsw_hit *out, size_t *nout, hnsw_stats *st)
{
    *nout = 0;
    if (h->entry == HNSW_NONE || k == 0)
        return 0;
    if (ef < k)
        ef = k;
    if (ef + 1 > s->cap)
        ef = s->cap - 1;
    size_t D = h->rot_dpad, dim = h->dim;
    /* y = R x for the prepared query (dimension order, unit length for cosine) */
    float *x = (float *)(void *)s->lut; /* dim floats fit: lut has 4 D bytes */
    if (h->perm)
        hnsw_permute_query(h, q, x);
    else
        memcpy(x, q, dim * sizeof(float));
    if (h->p.metric == METRIC_COSINE)
        vec_normalize(x, dim);
    size_t z = 0;
    while (h->p.metric == METRIC_COSINE && z < dim && x[z] == 0)
        z++;
    int qzero = h->p.metric == METRIC_COSINE && z == dim;
    const dist_fn l2 = dist_best()->l2sq;
    rotation_apply(h->rot, x, dim, s->y, s->rtmp);
    const fs_kernels *fk = s->fk;
    uint64_t ndist = 0, hops = 0;

    /* greedy descent on the upper levels, exact distances from the rows */
    uint32_t cur = h->entry;
    float curd = 0;
    if (h->max_level > 0) {
        quant_query_set(s->uq, s->y);
        curd = up_dist(h, s->uq, cur);
        ndist++;
    }
    for (int l = h->max_level; l > 0; l--) {
        int changed = 1;
        while (changed) {
            changed = 0;
            const uint32_t *links = hnsw_links(h, cur, l);
            for (uint32_t j = 0; j < links[0]; j++)
                __builtin_prefetch(h->row_up + (size_t)h->row_up_slot[links[1 + j]] * D, 0, 3);
            for (uint32_t j = 0; j < links[0]; j++) {
                uint32_t nb = links[1 + j];
                float d = up_dist(h, s->uq, nb);
                ndist++;
                if (d < curd) {
                    curd = d;
                    cur = nb;
                    changed = 1;
                }
            }
            hops++;
        }
    }

    st->ndist_upper += ndist; /* on the upper levels' codes */
    /* level 0 on the rows */
    visited_bits_clear(&s->vis);
    pool_ent *pool = s->pool;
    size_t pn = 0, pc = 0;
    hheap *res = &s->res;
    res->n = 0;
    curd = l2(s->y, row_vec(h, cur), D) + (h->n_zero ? *row_bias(h, cur) : 0.0f);
    ndist++;
    pool_insert(pool, &pn, ef, 0, curd, cur);
    vis_set(&s->vis, cur);
    uint32_t fs[FS_BATCH];
    float est[ROW_BATCH];
    while (pc < pn) {
        uint32_t c = pool[pc].id;
        size_t next = pc + 1;
        while (next < pn && (pool[next].id & EXPANDED))
            next++;
        if (next < pn)
            prefetch_row(h, pool[next].id);
        hops++;
        fs_resid fr;
        const char *row = row_at(h, c); /* vector, then head, then batches */
        const uint32_t *head = (const uint32_t *)(const void *)(row + D * sizeof(float));
        fk->prep(s->y, (const float *)(const void *)row, D, s->rq, s->lut, &fr);
        float dc = fr.dist2 + (h->n_zero ? *row_bias(h, c) : 0.0f);
        ndist++;
#if ROW_EXACT_KEYS
        /* the expanded node's key becomes its exact distance */
        memmove(pool + pc, pool + pc + 1, (pn - pc - 1) * sizeof *pool);
        pn--;
        size_t at = pool_insert(pool, &pn, ef, pn, dc, c | EXPANDED);
        next = at <= pc ? pc + 1 : pc;
        while (next < pn && (pool[next].id & EXPANDED))
            next++;
#else
        pool[pc].id |= EXPANDED;
#endif
        if (!h->deleted[c] && (res->n < k || dc < res->a[0].d)) {
            hmax_push(res, dc, c);
            if (res->n > k)
                hmax_pop(res);
        }
        uint32_t deg = head[0];
        const char *batch0 = (const char *)head + head_bytes(batches_of(deg));
        size_t pcur = next;
        const uint8_t *lut_hi = s->lut + 16 * (D / 8);
        for (uint32_t b = 0; b * ROW_BATCH < deg; b++) {
            const float *f = (const float *)(const void *)(batch0 + b * batch_bytes(D));
            fk->scan(batch_codes(f), s->lut, lut_hi, D / 8, fs);
            float base = fr.dist2, two_lo = 2 * fr.lo, two_delta = 2 * fr.delta;
            for (unsigned j = 0; j < ROW_BATCH; j++)
                est[j] =
                    base + f[j] + two_lo * f[2 * ROW_BATCH + j] +
                    f[ROW_BATCH + j] * (two_delta * (float)(fs[j] + fs[ROW_BATCH + j]) - fr.sum);
            uint32_t m = deg - b * ROW_BATCH < ROW_BATCH ? deg - b * ROW_BATCH : ROW_BATCH;
            /* most neighbours estimate beyond the pool's worst: find the
             * others without a branch each, then look only at them */
            float worst = pn >= ef ? pool[pn - 1].d : INFINITY;
            uint32_t pass = 0;
            for (unsigned j = 0; j < ROW_BATCH; j++)
                pass |= (uint32_t)(est[j] < worst) << j;
            pass &= (1u << m) - 1;
            for (; pass; pass &= pass - 1) {
                unsigned j = (unsigned)__builtin_ctz(pass);
                uint32_t nb = head[2 + b * ROW_BATCH + j];
                if (vis_test(&s->vis, nb) || (pn >= ef && est[j] >= pool[pn - 1].d))
                    continue;
                vis_set(&s->vis, nb);
                pcur = pool_insert(pool, &pn, ef, pcur, est[j], nb);
            }
        }
        pc = pcur;
        while (pc < pn && (pool[pc].id & EXPANDED))
            pc++;
        if (pc < pn && pc != next)
            prefetch_row(h, pool[pc].id);
    }
    st->ndist += ndist;
    st->hops += hops;

    size_t n = res->n;
    for (size_t i = n; i-- > 0;) {
        out[i] = res->a[0];
        hmax_pop(res);
    }
    /* a zero cosine query is at distance 1 from everything (metric_distance) */
    for (size_t i = 0; i < n; i++) {
        if (h->ext_id)
            out[i].id = h->ext_id[out[i].id];
        if (h->p.metric == METRIC_COSINE)
            out[i].d = qzero ? 1.0f : 0.5f * out[i].d;
    }
    *nout = n;
    return 0;
}
