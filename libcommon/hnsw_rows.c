/*
 * hnsw_rows.c - the row layout for fast search (graph-build --preset speed):
 * per node one row with its neighbour ids, 1-bit codes of its neighbours
 * and its own vector, searched SymphonyQG-style with exact answers.
 *
 * Row of node c (at 64 * row_off[c] in the row block, every part 64-byte
 * aligned; rows differ in size):
 *   f32 y_c[dpad]                    the node's vector rotated (R x, x padded
 *                                    with zeros to dpad, a multiple of 64)
 *   [u32 degree][u32 ids[nb]]        nb slots: 16 (a half batch) for degree
 *                                    <= 16, else the degree rounded up to 32
 *   f32 A[nb], B[nb], C[nb], E[nb]   factors, per batch (below)
 *   the neighbours' codes            fastscan.h layout, dpad / 8 bytes each
 * Half batches because HNSW's level-0 lists are mostly short (mean degree 14
 * of M0 = 32 on fmnist-proj256): a full batch for them would be half
 * padding, and a search is bound by the bytes of the rows it reads.
 * R is a random orthogonal dpad x dpad matrix (saved in the "rows" frame),
 * so |R q - R x| = |q - x| and coordinates of residuals look Gaussian, which
 * RaBitQ's estimator needs. A neighbour o of c is coded relative to c:
 * u = y_o - y_c, bits b_i = [u_i > 0], and with r = y_q - y_c
 *   |q - o|^2 = |r|^2 + |u|^2 - 2 <u, r>,   <u, r> ~ |u|^2 (2 <b, r> - sum r) / sum |u_i|
 * (RaBitQ: <o', q'> estimated by <x, q'> / <x, o'> with x = (2b - 1)/sqrt(D)).
 * With r ~ lo + delta * rq (6 bits, fastscan.h), <b, r> ~ lo P + delta <b, rq>,
 * P = popcount(b), so est = |r|^2 + A + 2 lo C + B (2 delta <b, rq> - sum r)
 * with A = |u|^2, B = -2 |u|^2 / sum |u_i|, C = B P. E bounds the error:
 * |est - exact| <= eps0 E |r| + |C| delta with high probability (RaBitQ's
 * bound with eps0 = 1.9, plus the 6-bit rounding of r), E = 2 |u| sqrt(1 - g^2)
 * / (g sqrt(D - 1)), g = <x, o'> = sum |u_i| / (sqrt(D) |u|).
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
#include "nn.h"

#define EPS0 1.9f
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

/* Random orthogonal matrix: Gaussian rows made orthonormal by modified
 * Gram-Schmidt in double (deterministic for a seed). */
int hnsw_rows_plan(hnsw *h, uint64_t seed, hf_err *e)
{
    if (h->p.metric != METRIC_L2 && h->p.metric != METRIC_COSINE)
        return hf_err_set(e, HF_EUSAGE, "the speed layout needs metric l2 or cosine, not %s",
                          metric_name(h->p.metric));
    size_t D = hnsw_rows_dpad(h->dim);
    if (D > HNSW_ROWS_MAX_DPAD)
        return hf_err_set(e, HF_EUSAGE, "the speed layout takes at most %d dimensions, not %zu",
                          HNSW_ROWS_MAX_DPAD, h->dim);
    double *m = malloc(D * D * sizeof(double));
    float *rot = malloc(D * D * sizeof(float));
    if (!m || !rot) {
        free(m);
        free(rot);
        return hf_err_set(e, HF_ENOMEM, "out of memory for a %zu x %zu rotation", D, D);
    }
    nn_rng rng;
    nn_rng_seed(&rng, seed ^ 0x726f7773ull);
    for (size_t i = 0; i < D * D; i++)
        m[i] = nn_rng_normal(&rng);
    for (size_t i = 0; i < D; i++) {
        double *ri = m + i * D;
        for (size_t j = 0; j < i; j++) {
            const double *rj = m + j * D;
            double d = 0;
            for (size_t t = 0; t < D; t++)
                d += ri[t] * rj[t];
            for (size_t t = 0; t < D; t++)
                ri[t] -= d * rj[t];
        }
        double nrm = 0;
        for (size_t t = 0; t < D; t++)
            nrm += ri[t] * ri[t];
        nrm = sqrt(nrm);
        for (size_t t = 0; t < D; t++)
            ri[t] /= nrm;
    }
    for (size_t i = 0; i < D * D; i++)
        rot[i] = (float)m[i];
    free(m);
    free(h->rot);
    h->rot = rot;
    h->rot_dpad = D;
    return 0;
}

int hnsw_rows_adopt(hnsw *h, const float *rot, size_t dpad, hf_err *e)
{
    if (h->p.metric != METRIC_L2 && h->p.metric != METRIC_COSINE)
        return hf_err_set(e, HF_EDATA, "rows frame on a %s index (only l2 and cosine)",
                          metric_name(h->p.metric));
    if (dpad != hnsw_rows_dpad(h->dim))
        return hf_err_set(e, HF_EDATA, "rows frame: dpad %zu, dimension %zu needs %zu", dpad,
                          h->dim, hnsw_rows_dpad(h->dim));
    for (size_t i = 0; i < dpad * dpad; i++)
        if (!isfinite(rot[i]))
            return hf_err_set(e, HF_EDATA, "rows frame: rotation entry %zu is not finite", i);
    float *r = malloc(dpad * dpad * sizeof(float));
    if (!r)
        return hf_err_set(e, HF_ENOMEM, "out of memory for the rotation");
    memcpy(r, rot, dpad * dpad * sizeof(float));
    free(h->rot);
    h->rot = r;
    h->rot_dpad = dpad;
    return 0;
}

/* Row parts. */
typedef struct row_ref {
    float *vec;
    uint32_t *head; /* degree, then ids */
    float *fac;     /* A[nb], B[nb], C[nb], E[nb] per batch */
    uint8_t *codes;
    uint32_t nb; /* slots */
} row_ref;

static inline uint32_t row_slots(uint32_t deg)
{
    return deg <= FS_HALF ? FS_HALF : (deg + FS_BATCH - 1) / FS_BATCH * FS_BATCH;
}

/* Bytes of a row with nb slots. */
static inline size_t row_size(size_t D, uint32_t nb)
{
    return D * sizeof(float) + round64(sizeof(uint32_t) * (1 + (size_t)nb)) +
           (size_t)nb * 4 * sizeof(float) + (size_t)nb * D / 8;
}

static inline float *row_vec(const hnsw *h, uint32_t id)
{
    return (float *)(void *)(h->rows + 64 * (size_t)h->row_off[id]);
}

static inline row_ref row_at(const hnsw *h, uint32_t id)
{
    size_t D = h->rot_dpad;
    row_ref r;
    char *base = h->rows + 64 * (size_t)h->row_off[id];
    r.vec = (float *)(void *)base;
    r.head = (uint32_t *)(void *)(base + D * sizeof(float));
    r.nb = row_slots(r.head[0]);
    r.fac = (float *)(void *)((char *)r.head + round64(sizeof(uint32_t) * (1 + (size_t)r.nb)));
    r.codes = (uint8_t *)(r.fac + 4 * (size_t)r.nb);
    return r;
}

/* Added to every squared distance to the node: hnsw_zero_bias (1 for a zero
 * vector of a cosine index, which lies at squared chord 2 from any unit
 * query where |q - 0|^2 gives 1), kept in the row after the ids, where the
 * head's rounding to 64 bytes always leaves room. */
static inline float *row_bias(const row_ref *r)
{
    return (float *)(void *)(r->head + 1 + r->nb);
}

/* Batch b of a row: its factors, codes and width (16 or 32). */
static inline unsigned batch_width(const row_ref *r)
{
    return r->nb == FS_HALF ? FS_HALF : FS_BATCH;
}
static inline const float *batch_fac(const row_ref *r, uint32_t b)
{
    return r->fac + (size_t)b * 4 * batch_width(r);
}
static inline uint8_t *batch_codes(const row_ref *r, uint32_t b, size_t D)
{
    return r->codes + (size_t)b * batch_width(r) * D / 8;
}

/* Code neighbour slot j of node c's row from the rotated vectors. */
static void encode_slot(hnsw *h, const dist_kernels *dk, uint32_t c, uint32_t j, uint32_t o)
{
    size_t D = h->rot_dpad;
    row_ref r = row_at(h, c);
    const float *yc = r.vec, *yo = row_vec(h, o);
    double n2 = dk->l2sq(yo, yc, D), l1 = dk->l1(yo, yc, D);
    unsigned w = batch_width(&r), s = j % w, half = w == FS_HALF, pop = 0;
    uint8_t *codes = batch_codes(&r, j / w, D);
    for (size_t g = 0; g < D / 4; g++) {
        const float *a = yo + 4 * g, *b = yc + 4 * g;
        unsigned nib = (unsigned)(a[0] > b[0]) | (unsigned)(a[1] > b[1]) << 1 |
                       (unsigned)(a[2] > b[2]) << 2 | (unsigned)(a[3] > b[3]) << 3, shift;
        pop += (unsigned)(0x4332322132212110ull >> (4 * nib) & 15); /* bits in nib */
        codes[fs_nibble_at((int)half, g, s, &shift)] |= (uint8_t)(nib << shift);
    }
    float *f = (float *)batch_fac(&r, j / w);
    row_ref ro = row_at(h, o);
    float bias = *row_bias(&ro);
    if (l1 <= 0) { /* o sits on c: the estimate is |r|^2 (+ its bias), exact */
        f[s] = bias;
        f[w + s] = f[2 * w + s] = f[3 * w + s] = 0;
        return;
    }
    double g = l1 / (sqrt((double)D) * sqrt(n2));
    double B = -2.0 * n2 / l1;
    f[s] = (float)n2 + bias;
    f[w + s] = (float)B;
    f[2 * w + s] = (float)(B * pop);
    f[3 * w + s] =
        (float)(2.0 * sqrt(n2) * sqrt(g < 1 ? 1 - g * g : 0) / (g * sqrt((double)D - 1)));
}

typedef struct encode_job {
    hnsw *h;
    size_t first, end;
} encode_job;

static void *encode_part(void *arg)
{
    encode_job *j = arg;
    hnsw *h = j->h;
    const dist_kernels *dk = dist_best();
    for (size_t c = j->first; c < j->end; c++) {
        const uint32_t *l = hnsw_links0(h, (uint32_t)c);
        uint32_t *head = row_at(h, (uint32_t)c).head; /* degree set by the layout pass */
        for (uint32_t s = 0; s < l[0]; s++) {
            head[1 + s] = l[1 + s];
            encode_slot(h, dk, (uint32_t)c, s, l[1 + s]);
        }
    }
    return NULL;
}

/* Rotated vectors are computed a chunk of nodes at a time into scratch
 * (OpenBLAS sgemm), then copied into their rows. */
#define ROT_CHUNK 4096

int hnsw_rows_build(hnsw *h, int threads, hf_err *e)
{
    if (!h->rot)
        return 0;
    size_t D = h->rot_dpad, n = h->n;
    free(h->rows);
    free(h->row_off);
    h->rows = NULL;
    h->row_off = malloc((n + 1) * sizeof(uint32_t));
    if (!h->row_off)
        return hf_err_set(e, HF_ENOMEM, "out of memory for row offsets");
    size_t lines = 0;
    for (size_t c = 0; c < n; c++) {
        if (lines > UINT32_MAX)
            return hf_err_set(e, HF_ENOMEM, "row block too large");
        h->row_off[c] = (uint32_t)lines;
        lines += row_size(D, row_slots(hnsw_links0(h, (uint32_t)c)[0])) / 64;
    }
    if (lines > UINT32_MAX)
        return hf_err_set(e, HF_ENOMEM, "row block too large");
    h->row_off[n] = (uint32_t)lines;
    h->row_bytes = lines * 64;
    h->rows = hnsw_alloc_block(h->row_bytes ? h->row_bytes : 64);
    float *y = malloc(ROT_CHUNK * D * sizeof(float));
    if (!h->rows || !y) {
        free(y);
        return hf_err_set(e, HF_ENOMEM, "cannot allocate %zu bytes of rows", h->row_bytes);
    }
    memset(h->rows, 0, h->row_bytes);
    /* y = R x: rows of the level-0 block times R's first dim columns */
    for (size_t c0 = 0; c0 < n; c0 += ROT_CHUNK) {
        size_t m = n - c0 < ROT_CHUNK ? n - c0 : ROT_CHUNK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)D, (int)h->dim, 1.0f,
                    hnsw_vec(h, (uint32_t)c0), (int)(h->node_bytes / sizeof(float)), h->rot,
                    (int)D, 0.0f, y, (int)D);
        for (size_t i = 0; i < m; i++) {
            uint32_t c = (uint32_t)(c0 + i);
            memcpy(row_vec(h, c), y + i * D, D * sizeof(float));
            /* the degree first: it fixes where the rest of the row lies */
            *(uint32_t *)(void *)((char *)row_vec(h, c) + D * sizeof(float)) =
                hnsw_links0(h, c)[0];
            row_ref r = row_at(h, c);
            *row_bias(&r) = hnsw_zero_bias(h, c);
        }
    }
    free(y);
    if (threads < 1)
        threads = 1;
    if (threads > 64)
        threads = 64;
    encode_job jobs[64];
    pthread_t tid[64];
    for (int t = 0; t < threads; t++)
        jobs[t] = (encode_job){h, n * (size_t)t / (size_t)threads,
                               n * (size_t)(t + 1) / (size_t)threads};
    int started = 1;
    for (int t = 1; t < threads; t++, started++)
        if (pthread_create(&tid[t], NULL, encode_part, &jobs[t]) != 0)
            break;
    for (int t = started; t < threads; t++) /* threads that did not start */
        encode_part(&jobs[t]);
    encode_part(&jobs[0]);
    for (int t = 1; t < started; t++)
        pthread_join(tid[t], NULL);
    return 0;
}

size_t hnsw_rows_memory_bytes(const hnsw *h)
{
    return h->rows ? h->row_bytes + (h->n + 1) * sizeof(uint32_t) +
                         h->rot_dpad * h->rot_dpad * sizeof(float)
                   : 0;
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
    s->fk = fs_best();
    if (!s->vis.w || !s->pool || !s->res.a || !s->y || !s->rq || !s->lut) {
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
    size_t lo = 0, hi = *n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (p[mid].d <= d)
            lo = mid + 1;
        else
            hi = mid;
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
static inline void prefetch_row(const hnsw *h, uint32_t id, size_t lines)
{
    const char *r = h->rows + 64 * (size_t)h->row_off[id];
    if (!lines)
        lines = h->row_off[id + 1] - h->row_off[id];
    for (size_t a = 0; a < lines; a++)
        __builtin_prefetch(r + 64 * a, 0, ROW_PREFETCH_HINT);
}

/* Exact squared distance of the rotated query to a node, its bias included. */
static inline float node_exact(const hnsw *h, dist_fn l2, const float *y, uint32_t id)
{
    row_ref r = row_at(h, id);
    return l2(y, r.vec, h->rot_dpad) + *row_bias(&r);
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
    /* not cblas_sgemv: one call per query wakes OpenBLAS's thread pool,
     * which then spins in sched_yield beside the search */
    const dist_fn dot = dist_best()->dot, l2 = dist_best()->l2sq;
    for (size_t i = 0; i < D; i++)
        s->y[i] = dot(h->rot + i * D, x, dim);
    const fs_kernels *fk = s->fk;
    const size_t lines = 0; /* prefetch whole rows */
    uint64_t ndist = 0, hops = 0;

    /* greedy descent on the upper levels, exact distances from the rows */
    uint32_t cur = h->entry;
    float curd = node_exact(h, l2, s->y, cur);
    ndist++;
    for (int l = h->max_level; l > 0; l--) {
        int changed = 1;
        while (changed) {
            changed = 0;
            const uint32_t *links = hnsw_links(h, cur, l);
            for (uint32_t j = 0; j < links[0]; j++)
                prefetch_row(h, links[1 + j], D / 16);
            for (uint32_t j = 0; j < links[0]; j++) {
                uint32_t nb = links[1 + j];
                float d = node_exact(h, l2, s->y, nb);
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

    /* level 0 on the rows */
    visited_bits_clear(&s->vis);
    pool_ent *pool = s->pool;
    size_t pn = 0, pc = 0;
    hheap *res = &s->res;
    res->n = 0;
    pool_insert(pool, &pn, ef, 0, curd, cur);
    vis_set(&s->vis, cur);
    uint32_t fs[FS_BATCH];
    float est[FS_BATCH];
    while (pc < pn) {
        uint32_t c = pool[pc].id;
        size_t next = pc + 1;
        while (next < pn && (pool[next].id & EXPANDED))
            next++;
        if (next < pn)
            prefetch_row(h, pool[next].id, lines);
        hops++;
        fs_resid fr;
        row_ref row = row_at(h, c);
        fk->prep(s->y, row.vec, D, s->rq, s->lut, &fr);
        float dc = fr.dist2 + *row_bias(&row);
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
        const uint32_t *head = row.head;
        uint32_t deg = head[0];
        unsigned w = batch_width(&row);
        size_t pcur = next;
        for (uint32_t b = 0; b * w < deg; b++) {
            if (w == FS_HALF)
                fk->scan16(batch_codes(&row, b, D), s->lut, D, fs);
            else
                fk->scan(batch_codes(&row, b, D), s->lut, D, fs);
            const float *f = batch_fac(&row, b);
            float base = fr.dist2, two_lo = 2 * fr.lo, two_delta = 2 * fr.delta;
            for (unsigned j = 0; j < w; j++)
                est[j] = base + f[j] + two_lo * f[2 * w + j] +
                         f[w + j] * (two_delta * (float)fs[j] - fr.sum);
            uint32_t m = deg - b * w < w ? deg - b * w : w;
            for (uint32_t j = 0; j < m; j++) {
                uint32_t nb = head[1 + b * w + j];
                if (vis_test(&s->vis, nb))
                    continue;
                if (pn >= ef && est[j] >= pool[pn - 1].d)
                    continue;
                vis_set(&s->vis, nb);
                pcur = pool_insert(pool, &pn, ef, pcur, est[j], nb);
            }
        }
        pc = pcur;
        while (pc < pn && (pool[pc].id & EXPANDED))
            pc++;
        if (pc < pn && pc != next)
            prefetch_row(h, pool[pc].id, lines);
    }
    st->ndist += ndist;
    st->hops += hops;

    size_t n = res->n;
    for (size_t i = n; i-- > 0;) {
        out[i] = res->a[0];
        hmax_pop(res);
    }
    /* rows rank in squared L2 (chords for cosine, whatever hnsw_l2_space
     * says of the classic path); a zero cosine query is at distance 1 */
    for (size_t i = 0; i < n; i++) {
        if (h->ext_id)
            out[i].id = h->ext_id[out[i].id];
        if (h->p.metric == METRIC_COSINE)
            out[i].d = qzero ? 1.0f : 0.5f * out[i].d;
    }
    *nout = n;
    return 0;
}
