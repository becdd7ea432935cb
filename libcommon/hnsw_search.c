/*
 * hnsw_search.c - query-time search on a built graph: greedy descent through
 * the upper levels, then a beam search of width ef on level 0.
 *
 * The level-0 loop is the hot path: it takes no locks, allocates nothing,
 * prefetches the visited marks of a node's whole neighbour list and the next
 * neighbour's vector while computing the current distance.
 */
#include <stdlib.h>
#include <string.h>

#include "hnsw.h"
#include "hnsw_heap.h"
#include "quant.h"

struct hnsw_searcher {
    visited vis;
    hheap cand, res;
    float *qbuf; /* normalised query for cosine */
    size_t n;
    quant_query *qq; /* when the graph has codes */
    hnsw_hit *sorted; /* re-ranking scratch, res.cap entries */
};

int hnsw_searcher_new(const hnsw *h, size_t max_ef, hnsw_searcher **out, hf_err *e)
{
    *out = NULL;
    hnsw_searcher *s = calloc(1, sizeof *s);
    if (!s)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    s->n = h->n;
    s->vis.n = h->n ? h->n : 1;
    s->vis.mark = calloc(s->vis.n, sizeof(uint16_t));
    s->res.cap = max_ef + 2;
    s->res.a = malloc(s->res.cap * sizeof(hnsw_hit));
    s->cand.cap = max_ef * 4 + 64;
    s->cand.a = malloc(s->cand.cap * sizeof(hnsw_hit));
    s->qbuf = malloc(h->dim * sizeof(float));
    s->sorted = malloc(s->res.cap * sizeof(hnsw_hit));
    if (h->codes && quant_query_new(h->codes, &s->qq, e) != 0) {
        hnsw_searcher_destroy(&s);
        return HF_ENOMEM;
    }
    if (!s->vis.mark || !s->res.a || !s->cand.a || !s->qbuf || !s->sorted) {
        hnsw_searcher_destroy(&s);
        return hf_err_set(e, HF_ENOMEM, "out of memory for search scratch");
    }
    *out = s;
    return 0;
}

void hnsw_searcher_destroy(hnsw_searcher **sp)
{
    if (!sp || !*sp)
        return;
    hnsw_searcher *s = *sp;
    free(s->vis.mark);
    free(s->res.a);
    free(s->cand.a);
    free(s->qbuf);
    free(s->sorted);
    quant_query_destroy(&s->qq);
    free(s);
    *sp = NULL;
}

/* Candidates can outgrow the first guess on hard queries; growing is rare. */
static int cand_push(hheap *c, float d, uint32_t id)
{
    if (c->n == c->cap) {
        size_t nc = c->cap * 2;
        hnsw_hit *a = realloc(c->a, nc * sizeof *a);
        if (!a)
            return -1;
        c->a = a;
        c->cap = nc;
    }
    hmin_push(c, d, id);
    return 0;
}

static inline float qdist(const hnsw *h, const float *q, uint32_t id)
{
    return dist_finish(h->p.metric, h->kern(q, hnsw_vec(h, id), h->dim));
}

/* Lines of each neighbour's vector to prefetch before computing: enough to
 * get the hardware prefetcher streaming the rest. */
#define PREFETCH_LINES 4

static void search_level0(const hnsw *h, hnsw_searcher *s, const float *q, uint32_t ep, float epd,
                          size_t ef, hnsw_stats *st)
{
    visited *vis = &s->vis;
    hheap *cand = &s->cand, *res = &s->res;
    visited_next(vis);
    cand->n = res->n = 0;
    visited_test_set(vis, ep);
    cand_push(cand, epd, ep);
    if (!h->deleted[ep])
        hmax_push(res, epd, ep);
    uint64_t ndist = 0, hops = 0;
    const dist_fn kern = h->kern;
    const metric_t metric = h->p.metric;
    const dist_bounded_fn bounded = metric == METRIC_L2 ? dist_best()->l2sq_bounded : NULL;
    const size_t dim = h->dim;
    size_t vlines = (dim * sizeof(float) + 63) / 64;
    if (vlines > PREFETCH_LINES)
        vlines = PREFETCH_LINES;
    uint32_t todo[4096];
    while (cand->n) {
        hnsw_hit c = cand->a[0];
        if (res->n >= ef && c.d > res->a[0].d)
            break;
        hmin_pop(cand);
        hops++;
        const uint32_t *links = hnsw_links0(h, c.id);
        uint32_t deg = links[0];
        /* gather the unvisited neighbours and start fetching all of them at
         * once, so their memory latencies overlap */
        uint32_t nt = 0;
        for (uint32_t j = 0; j < deg; j++) {
            uint32_t nb = links[1 + j];
            if (visited_test_set(vis, nb))
                continue;
            todo[nt++] = nb;
            const char *v = (const char *)hnsw_vec(h, nb);
            for (size_t l = 0; l < vlines; l++)
                __builtin_prefetch(v + 64 * l);
        }
        for (uint32_t j = 0; j < nt; j++) {
            uint32_t nb = todo[j];
            float d;
            /* once the results are full only distances below the worst kept
             * matter, so L2 may stop reading a vector early */
            if (bounded && res->n >= ef)
                d = bounded(q, hnsw_vec(h, nb), dim, res->a[0].d);
            else
                d = dist_finish(metric, kern(q, hnsw_vec(h, nb), dim));
            if (res->n < ef || d < res->a[0].d) {
                if (cand_push(cand, d, nb) != 0)
                    break;
                __builtin_prefetch(hnsw_links0(h, cand->a[0].id));
                if (!h->deleted[nb]) {
                    hmax_push(res, d, nb);
                    if (res->n > ef)
                        hmax_pop(res);
                }
            }
        }
        ndist += nt;
    }
    st->ndist += ndist;
    st->hops += hops;
}

int hnsw_search(const hnsw *h, hnsw_searcher *s, const float *q, size_t k, size_t ef,
                hnsw_hit *out, size_t *nout, hnsw_stats *st)
{
    hnsw_stats local = {0, 0};
    if (!st)
        st = &local;
    *nout = 0;
    if (h->entry == HNSW_NONE || k == 0)
        return 0;
    if (ef < k)
        ef = k;
    if (ef + 2 > s->res.cap)
        ef = s->res.cap - 2;
    if (h->perm) {
        hnsw_permute_query(h, q, s->qbuf);
        q = s->qbuf;
    } else if (h->p.metric == METRIC_COSINE) {
        memcpy(s->qbuf, q, h->dim * sizeof(float));
        q = s->qbuf;
    }
    if (h->p.metric == METRIC_COSINE)
        vec_normalize(s->qbuf, h->dim);
    uint32_t cur = h->entry;
    float curd = qdist(h, q, cur);
    st->ndist++;
    for (int l = h->max_level; l > 0; l--) {
        int changed = 1;
        while (changed) {
            changed = 0;
            const uint32_t *links = hnsw_links(h, cur, l);
            for (uint32_t j = 0; j < links[0]; j++) {
                float d = qdist(h, q, links[1 + j]);
                st->ndist++;
                if (d < curd) {
                    curd = d;
                    cur = links[1 + j];
                    changed = 1;
                }
            }
            st->hops++;
        }
    }
    search_level0(h, s, q, cur, curd, ef, st);
    hheap *res = &s->res;
    while (res->n > k)
        hmax_pop(res);
    size_t n = res->n;
    for (size_t i = n; i-- > 0;) {
        out[i] = res->a[0];
        hmax_pop(res);
    }
    *nout = n;
    return 0;
}

/* ---- traversal on codes ---- */

static void search_level0_codes(const hnsw *h, hnsw_searcher *s, uint32_t ep, float epd, size_t ef,
                                hnsw_stats *st)
{
    visited *vis = &s->vis;
    hheap *cand = &s->cand, *res = &s->res;
    visited_next(vis);
    cand->n = res->n = 0;
    visited_test_set(vis, ep);
    cand_push(cand, epd, ep);
    if (!h->deleted[ep])
        hmax_push(res, epd, ep);
    uint64_t ndist = 0, hops = 0;
    size_t clines = (h->codes->code_bytes + 63) / 64;
    if (clines > PREFETCH_LINES)
        clines = PREFETCH_LINES;
    uint32_t todo[4096];
    while (cand->n) {
        hnsw_hit c = cand->a[0];
        if (res->n >= ef && c.d > res->a[0].d)
            break;
        hmin_pop(cand);
        hops++;
        const uint32_t *links = hnsw_clinks0(h, c.id);
        uint32_t deg = links[0];
        uint32_t nt = 0;
        for (uint32_t j = 0; j < deg; j++) {
            uint32_t nb = links[1 + j];
            if (visited_test_set(vis, nb))
                continue;
            todo[nt++] = nb;
            const char *code = (const char *)hnsw_code(h, nb);
            for (size_t l = 0; l < clines; l++)
                __builtin_prefetch(code + 64 * l);
        }
        for (uint32_t j = 0; j < nt; j++) {
            uint32_t nb = todo[j];
            float d = quant_distance(s->qq, hnsw_code(h, nb));
            if (res->n < ef || d < res->a[0].d) {
                if (cand_push(cand, d, nb) != 0)
                    break;
                __builtin_prefetch(hnsw_clinks0(h, cand->a[0].id));
                if (!h->deleted[nb]) {
                    hmax_push(res, d, nb);
                    if (res->n > ef)
                        hmax_pop(res);
                }
            }
        }
        ndist += nt;
    }
    st->ndist += ndist;
    st->hops += hops;
}

static int hit_less(const void *a, const void *b)
{
    const hnsw_hit *x = a, *y = b;
    if (x->d != y->d)
        return x->d < y->d ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

int hnsw_search_codes(const hnsw *h, hnsw_searcher *s, const float *q, size_t k, size_t ef,
                      size_t rerank, hnsw_hit *out, size_t *nout, hnsw_stats *st)
{
    if (!h->codes || !s->qq)
        return hnsw_search(h, s, q, k, ef, out, nout, st);
    hnsw_stats local = {0, 0};
    if (!st)
        st = &local;
    *nout = 0;
    if (h->entry == HNSW_NONE || k == 0)
        return 0;
    if (ef < k)
        ef = k;
    if (ef + 2 > s->res.cap)
        ef = s->res.cap - 2;
    if (h->perm) {
        hnsw_permute_query(h, q, s->qbuf);
        q = s->qbuf;
    } else if (h->p.metric == METRIC_COSINE) {
        memcpy(s->qbuf, q, h->dim * sizeof(float));
        q = s->qbuf;
    }
    if (h->p.metric == METRIC_COSINE)
        vec_normalize(s->qbuf, h->dim);
    quant_query_set(s->qq, q);
    uint32_t cur = h->entry;
    float curd = quant_distance(s->qq, hnsw_code(h, cur));
    st->ndist++;
    for (int l = h->max_level; l > 0; l--) {
        int changed = 1;
        while (changed) {
            changed = 0;
            const uint32_t *links = hnsw_links(h, cur, l);
            for (uint32_t j = 0; j < links[0]; j++) {
                float d = quant_distance(s->qq, hnsw_code(h, links[1 + j]));
                st->ndist++;
                if (d < curd) {
                    curd = d;
                    cur = links[1 + j];
                    changed = 1;
                }
            }
            st->hops++;
        }
    }
    search_level0_codes(h, s, cur, curd, ef, st);
    /* approximate order first, then exact distances for the best `rerank` */
    hheap *res = &s->res;
    size_t n = res->n;
    for (size_t i = n; i-- > 0;) {
        s->sorted[i] = res->a[0];
        hmax_pop(res);
    }
    size_t r = rerank < k ? k : rerank;
    if (r > n)
        r = n;
    for (size_t i = 0; i < r; i++)
        s->sorted[i].d = qdist(h, q, s->sorted[i].id);
    st->ndist += r;
    qsort(s->sorted, r, sizeof(hnsw_hit), hit_less);
    size_t m = r < k ? r : k;
    memcpy(out, s->sorted, m * sizeof(hnsw_hit));
    *nout = m;
    return 0;
}
