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
    visited_bits vis;
    hheap cand, res;
    float *qbuf; /* normalised query for cosine */
    size_t n;
    quant_query *qq;       /* when the graph has codes */
    hnsw_hit *sorted;      /* re-ranking scratch, res.cap entries */
    uint32_t *links;       /* one unpacked level-0 list of the code block */
    hnsw_rows_scratch *rs; /* when the graph has rows */
    uint32_t exclude;      /* a node the search never measures (HNSW_NONE: none) */
    int qzero;             /* cosine: the query is the zero vector */
};

int hnsw_searcher_new(const hnsw *h, size_t max_ef, hnsw_searcher **out, hf_err *e)
{
    *out = NULL;
    hnsw_searcher *s = calloc(1, sizeof *s);
    if (!s)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    s->n = h->n;
    s->exclude = HNSW_NONE;
    s->vis.words = (h->n + 63) / 64 + 1;
    s->vis.w = calloc(s->vis.words, sizeof(uint64_t));
    s->res.cap = max_ef + 2;
    s->res.a = malloc(s->res.cap * sizeof(hnsw_hit));
    s->cand.cap = max_ef * 4 + 64;
    s->cand.a = malloc(s->cand.cap * sizeof(hnsw_hit));
    s->qbuf = malloc(h->dim * sizeof(float));
    s->sorted = malloc(s->res.cap * sizeof(hnsw_hit));
    s->links = malloc(((size_t)h->p.M0 + 1) * sizeof(uint32_t));
    if (h->rows && hnsw_rows_scratch_new(h, max_ef, &s->rs, e) != 0) {
        hnsw_searcher_destroy(&s);
        return HF_ENOMEM;
    }
    if (h->codes && quant_query_new(h->codes, &s->qq, e) != 0) {
        hnsw_searcher_destroy(&s);
        return HF_ENOMEM;
    }
    if (!s->vis.w || !s->res.a || !s->cand.a || !s->qbuf || !s->sorted || !s->links) {
        hnsw_searcher_destroy(&s);
        return hf_err_set(e, HF_ENOMEM, "out of memory for search scratch");
    }
    *out = s;
    return 0;
}

void hnsw_searcher_exclude(hnsw_searcher *s, uint32_t id)
{
    s->exclude = id;
}

void hnsw_searcher_destroy(hnsw_searcher **sp)
{
    if (!sp || !*sp)
        return;
    hnsw_searcher *s = *sp;
    free(s->vis.w);
    free(s->res.a);
    free(s->cand.a);
    free(s->qbuf);
    free(s->sorted);
    free(s->links);
    quant_query_destroy(&s->qq);
    hnsw_rows_scratch_destroy(&s->rs);
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

/* In search units: squared L2 for l2 and cosine (hnsw.h), converted to the
 * metric's distance only for the answers. */
static inline float qdist(const hnsw *h, const float *q, uint32_t id)
{
    return hnsw_space_dist(h, q, id);
}

/* Lines of each neighbour's data to prefetch before computing: enough to get
 * the hardware prefetcher streaming the rest. */
#define PREFETCH_LINES 4

/* One traversal, two representations: f32 vectors in the level-0 block, or
 * codes in the code block. The functions below take CODES as a constant
 * and are always inlined, so each caller gets its own branch-free copy. */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Level-0 neighbours of id: a pointer into the level-0 block, or the list
 * unpacked from the code block into the searcher's scratch. */
ALWAYS_INLINE const uint32_t *node_links0(const hnsw *h, hnsw_searcher *s, uint32_t id,
                                          uint32_t *deg, int codes)
{
    if (codes) {
        *deg = hnsw_clinks0_unpack(h, id, s->links);
        return s->links;
    }
    const uint32_t *l = hnsw_links0(h, id);
    *deg = l[0];
    return l + 1;
}

/* Where a node's level-0 links start (to prefetch them before expanding it). */
ALWAYS_INLINE const void *node_head(const hnsw *h, uint32_t id, int codes)
{
    return codes ? (const void *)hnsw_clist(h, id) : (const void *)hnsw_links0(h, id);
}

ALWAYS_INLINE const void *node_data(const hnsw *h, uint32_t id, int codes)
{
    return codes ? (const void *)hnsw_code(h, id) : (const void *)hnsw_vec(h, id);
}

ALWAYS_INLINE float node_dist(const hnsw *h, const hnsw_searcher *s, const float *q, uint32_t id,
                              int codes)
{
    return codes ? quant_distance(s->qq, hnsw_code(h, id)) : qdist(h, q, id);
}

/* Beam search of width ef on level 0 from ep; the best ef are left in s->res. */
ALWAYS_INLINE void search_level0(const hnsw *h, hnsw_searcher *s, const float *q, uint32_t ep,
                                 float epd, size_t ef, hnsw_stats *st, int codes)
{
    visited_bits *vis = &s->vis;
    hheap *cand = &s->cand, *res = &s->res;
    visited_bits_clear(vis);
    cand->n = res->n = 0;
    if (s->exclude < s->n)
        visited_bits_test_set(vis, s->exclude);
    visited_bits_test_set(vis, ep);
    cand_push(cand, epd, ep);
    if (!h->deleted[ep])
        hmax_push(res, epd, ep);
    uint64_t ndist = 0, hops = 0;
    const dist_bounded_fn bounded = !codes && hnsw_l2_space(h) ? dist_best()->l2sq_bounded : NULL;
    float (*const cbounded)(const quant_query *, const uint8_t *, float) =
        codes ? s->qq->dist_bounded : NULL;
    size_t bytes = codes ? h->codes->code_bytes : h->dim * sizeof(float);
    if (bytes > 64 * PREFETCH_LINES)
        bytes = 64 * PREFETCH_LINES;
    uint32_t todo[4096];
    while (cand->n) {
        hnsw_hit c = cand->a[0];
        if (res->n >= ef && c.d > res->a[0].d)
            break;
        hmin_pop(cand);
        hops++;
        uint32_t deg;
        const uint32_t *links = node_links0(h, s, c.id, &deg, codes);
        /* gather the unvisited neighbours and start fetching all of them at
         * once, so their memory latencies overlap */
        uint32_t nt = 0;
        for (uint32_t j = 0; j < deg; j++) {
            uint32_t nb = links[j];
            if (visited_bits_test_set(vis, nb))
                continue;
            todo[nt++] = nb;
            /* a code stride need not be whole lines (see hnsw_codes.c):
             * fetch every line the first `bytes` touch */
            uintptr_t v = (uintptr_t)node_data(h, nb, codes);
            for (uintptr_t a = v & ~(uintptr_t)63; a < v + bytes; a += 64)
                __builtin_prefetch((const void *)a);
        }
        for (uint32_t j = 0; j < nt; j++) {
            uint32_t nb = todo[j];
            float d;
            /* once the results are full only distances below the worst kept
             * matter, so L2 may stop reading a vector early */
            if (bounded && res->n >= ef)
                d = bounded(q, hnsw_vec(h, nb), h->dim, res->a[0].d - hnsw_zero_bias(h, nb)) +
                    hnsw_zero_bias(h, nb);
            else if (cbounded && res->n >= ef)
                d = cbounded(s->qq, hnsw_code(h, nb), res->a[0].d);
            else
                d = node_dist(h, s, q, nb, codes);
            if (res->n < ef || d < res->a[0].d) {
                if (cand_push(cand, d, nb) != 0)
                    break;
                __builtin_prefetch(node_head(h, cand->a[0].id, codes));
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

/* Prepare the query (dimension order, normalisation, codes) and descend
 * the upper levels greedily from entry on level top; *ep, *epd get the
 * level-0 entry and its distance. Returns the prepared query. */
ALWAYS_INLINE const float *descend_upper(const hnsw *h, hnsw_searcher *s, const float *q,
                                         hnsw_stats *st, int codes, uint32_t entry, int top,
                                         uint32_t *ep, float *epd)
{
    if (h->perm) {
        hnsw_permute_query(h, q, s->qbuf);
        q = s->qbuf;
    } else if (h->p.metric == METRIC_COSINE) {
        memcpy(s->qbuf, q, h->dim * sizeof(float));
        q = s->qbuf;
    }
    if (h->p.metric == METRIC_COSINE) {
        vec_normalize(s->qbuf, h->dim);
        size_t j = 0;
        while (j < h->dim && s->qbuf[j] == 0)
            j++;
        s->qzero = j == h->dim;
    }
    if (codes)
        quant_query_set(s->qq, q);
    uint64_t nd0 = st->ndist;
    uint32_t cur = entry;
    float curd = node_dist(h, s, q, cur, codes);
    st->ndist++;
    /* greedy steps only ask "closer than the current node?", so L2 may stop
     * reading a vector once its partial sum passes curd */
    const dist_bounded_fn bounded = !codes && hnsw_l2_space(h) ? dist_best()->l2sq_bounded : NULL;
    float (*const cbounded)(const quant_query *, const uint8_t *, float) =
        codes ? s->qq->dist_bounded : NULL;
    visited_bits_clear(&s->vis);
    if (s->exclude < s->n)
        visited_bits_test_set(&s->vis, s->exclude);
    visited_bits_test_set(&s->vis, cur);
    for (int l = top; l > 0; l--) {
        int changed = 1;
        while (changed) {
            changed = 0;
            const uint32_t *links = hnsw_links(h, cur, l);
            for (uint32_t j = 0; j < links[0]; j++)
                __builtin_prefetch(node_data(h, links[1 + j], codes));
            for (uint32_t j = 0; j < links[0]; j++) {
                uint32_t nb = links[1 + j];
                /* curd only falls, so a node already measured (on this
                 * level or above) cannot be closer now: skip it */
                if (visited_bits_test_set(&s->vis, nb))
                    continue;
                float z = hnsw_zero_bias(h, nb);
                float d = bounded    ? bounded(q, hnsw_vec(h, nb), h->dim, curd - z) + z
                          : cbounded ? cbounded(s->qq, hnsw_code(h, nb), curd)
                                     : node_dist(h, s, q, nb, codes);
                st->ndist++;
                if (d < curd) {
                    curd = d;
                    cur = nb;
                    changed = 1;
                }
            }
            st->hops++;
        }
    }
    st->ndist_upper += st->ndist - nd0;
    *ep = cur;
    *epd = curd;
    return q;
}

/* descend_upper, then the beam search of width ef on level 0. */
ALWAYS_INLINE const float *descend(const hnsw *h, hnsw_searcher *s, const float *q, size_t ef,
                                   hnsw_stats *st, int codes, uint32_t entry, int top)
{
    uint32_t ep;
    float epd;
    q = descend_upper(h, s, q, st, codes, entry, top, &ep, &epd);
    search_level0(h, s, q, ep, epd, ef, st, codes);
    return q;
}

const float *hnsw_descend(const hnsw *h, hnsw_searcher *s, const float *q, uint32_t entry,
                          int level, uint32_t *ep, float *epd, hnsw_stats *st)
{
    if (entry >= h->n || level < 0 || level > h->levels[entry]) {
        entry = h->entry; /* a caller's bad entry: the classic one */
        level = h->max_level;
    }
    return descend_upper(h, s, q, st, 0, entry, level, ep, epd);
}

uint32_t hnsw_searcher_excluded(const hnsw_searcher *s)
{
    return s->exclude;
}

/* Internal ids back to the caller's (after hnsw_reorder), search units to
 * the metric's distances. */
void hnsw_hits_for_caller(const hnsw *h, const hnsw_searcher *s, hnsw_hit *out, size_t n)
{
    if (h->ext_id)
        for (size_t i = 0; i < n; i++)
            out[i].id = h->ext_id[out[i].id];
    /* a zero query is at cosine distance 1 from everything (metric_distance),
     * not at the 1/2 its squared L2 to unit vectors gives */
    if (h->p.metric == METRIC_COSINE)
        for (size_t i = 0; i < n; i++)
            out[i].d = s->qzero ? 1.0f : hnsw_space_to_metric(h, out[i].d);
}

static size_t clamp_ef(const hnsw_searcher *s, size_t k, size_t ef)
{
    if (ef < k)
        ef = k;
    return ef + 2 > s->res.cap ? s->res.cap - 2 : ef;
}

int hnsw_search(const hnsw *h, hnsw_searcher *s, const float *q, size_t k, size_t ef, hnsw_hit *out,
                size_t *nout, hnsw_stats *st)
{
    return hnsw_search_from(h, s, q, k, ef, h->entry, h->max_level, out, nout, st);
}

int hnsw_search_from(const hnsw *h, hnsw_searcher *s, const float *q, size_t k, size_t ef,
                     uint32_t entry, int level, hnsw_hit *out, size_t *nout, hnsw_stats *st)
{
    hnsw_stats local = {0};
    if (!st)
        st = &local;
    *nout = 0;
    /* the rows search knows no excluded node and enters at the top: other
     * searches stay classic */
    if (h->rows && s->rs && s->exclude == HNSW_NONE && entry == h->entry && level == h->max_level)
        return hnsw_rows_search(h, s->rs, q, k, clamp_ef(s, k, ef), out, nout, st);
    if (h->entry == HNSW_NONE || k == 0)
        return 0;
    if (entry >= h->n || level < 0 || level > h->levels[entry])
        return HF_EUSAGE; /* a caller's bug: entries come checked from their frames */
    descend(h, s, q, clamp_ef(s, k, ef), st, 0, entry, level);
    hheap *res = &s->res;
    while (res->n > k)
        hmax_pop(res);
    size_t n = res->n;
    for (size_t i = n; i-- > 0;) {
        out[i] = res->a[0];
        hmax_pop(res);
    }
    hnsw_hits_for_caller(h, s, out, n);
    *nout = n;
    return 0;
}

int hnsw_hit_cmp(const void *a, const void *b)
{
    const hnsw_hit *x = a, *y = b;
    if (x->d != y->d)
        return x->d < y->d ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static inline int hit_less(hnsw_hit a, hnsw_hit b)
{
    return a.d < b.d || (a.d == b.d && a.id < b.id);
}

/* Quicksort (median of three) down to runs of 16, then one insertion sort:
 * the lists sorted per insert and per repair are short, and qsort's call
 * through a comparator per comparison was 7 % of a streaming runbook. */
void hnsw_hit_sort(hnsw_hit *a, size_t n)
{
    size_t stack[2 * 64], top = 0, lo = 0, hi = n;
    for (;;) {
        while (hi - lo > 16) {
            size_t mid = lo + (hi - lo) / 2;
            hnsw_hit x = a[lo], y = a[mid], z = a[hi - 1], t;
            hnsw_hit piv = hit_less(x, y) ? (hit_less(y, z)   ? y
                                             : hit_less(x, z) ? z
                                                              : x)
                                          : (hit_less(x, z)   ? x
                                             : hit_less(y, z) ? z
                                                              : y);
            size_t i = lo, j = hi - 1;
            for (;;) {
                while (hit_less(a[i], piv))
                    i++;
                while (hit_less(piv, a[j]))
                    j--;
                if (i >= j)
                    break;
                t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
            /* [lo, j] and [j + 1, hi): the smaller half first, the larger later */
            if (j + 1 - lo < hi - j - 1) {
                stack[top++] = j + 1;
                stack[top++] = hi;
                hi = j + 1;
            } else {
                stack[top++] = lo;
                stack[top++] = j + 1;
                lo = j + 1;
            }
        }
        if (top == 0)
            break;
        hi = stack[--top];
        lo = stack[--top];
    }
    for (size_t i = 1; i < n; i++) {
        hnsw_hit x = a[i];
        size_t j = i;
        for (; j > 0 && hit_less(x, a[j - 1]); j--)
            a[j] = a[j - 1];
        a[j] = x;
    }
}

int hnsw_search_codes(const hnsw *h, hnsw_searcher *s, const float *q, size_t k, size_t ef,
                      size_t rerank, hnsw_hit *out, size_t *nout, hnsw_stats *st)
{
    if (!h->codes || !s->qq || (h->rows && s->rs && s->exclude == HNSW_NONE))
        return hnsw_search(h, s, q, k, ef, out, nout, st);
    hnsw_stats local = {0};
    if (!st)
        st = &local;
    *nout = 0;
    if (h->entry == HNSW_NONE || k == 0)
        return 0;
    q = descend(h, s, q, clamp_ef(s, k, ef), st, 1, h->entry, h->max_level);
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
    /* lossless codes and an exactly coded query: the traversal's distances
     * are already exact (integer sums), re-ranking would recompute them */
    int exact = h->codes_exact && s->qq->exact;
    if (exact)
        r = n < k ? n : k;
    /* the re-ranked vectors are cold: fetch the next one while computing */
    size_t vbytes = h->dim * sizeof(float);
    for (size_t i = 0; i < r && !exact; i++) {
        if (i + 1 < r) {
            uintptr_t v = (uintptr_t)hnsw_vec(h, s->sorted[i + 1].id);
            for (uintptr_t a = v & ~(uintptr_t)63; a < v + vbytes; a += 64)
                __builtin_prefetch((const void *)a);
        }
        s->sorted[i].d = qdist(h, q, s->sorted[i].id);
    }
    if (!exact)
        st->ndist += r;
    /* original ids before sorting, so ties fall the same way in any order */
    hnsw_hits_for_caller(h, s, s->sorted, r);
    hnsw_hit_sort(s->sorted, r);
    size_t m = r < k ? r : k;
    memcpy(out, s->sorted, m * sizeof(hnsw_hit));
    *nout = m;
    return 0;
}
