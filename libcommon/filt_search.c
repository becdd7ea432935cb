/*
 * filt_search.c - k nearest among the nodes matching a filter (filt.h).
 *
 * A plain HNSW walk with the filter applied to its results strands when the
 * filter keeps few nodes: the beam fills with non-matching nodes, or the
 * walk never leaves the query's own region when the matching nodes lie
 * elsewhere (labels that follow the data's clusters). Three strategies, and
 * a planner choosing among them per query from the label counts:
 *
 *   BRUTE  exact distances to every matching node (postings when valid, a
 *          scan of the label sets otherwise), bounded L2 so a vector is
 *          abandoned once it cannot enter the top k. Cheapest when few match.
 *   GRAPH  ACORN-1 style (Patel et al., SIGMOD 2024) on the ordinary graph:
 *          when a node is expanded, a matching neighbour is measured, a
 *          non-matching one is not measured but its own neighbours are
 *          looked at (two hops), so the walk crosses non-matching regions at
 *          the price of reading link lists, not vectors. Only matching nodes
 *          are measured and only they enter the candidate and result queues.
 *          Per expansion at most M0 nodes are collected, as ACORN truncates
 *          its expanded lists at M. Membership is one bit of a per-query
 *          bitmap built from the postings (25 KB for 200k nodes). Besides the
 *          greedy descent's landing node, `seeds` matching nodes spread over
 *          the matching set enter the queue: when the matching nodes form a
 *          region of their own away from the query (the correlated case), the
 *          walk starts inside it instead of searching for a way in.
 *   BEAM   the ordinary walk, every node measured, only matching nodes kept
 *          as results (hnswlib's filter callback). Best when most match: the
 *          graph is then hardly thinned and no bitmap is built.
 *   SCAN   BRUTE on the index's codes (graph-build --compress), the best
 *          `rerank` re-ranked with exact distances (none needed for lossless
 *          codes). int8 reads a quarter of the bytes: exact-scan recall at
 *          well under its cost; the planner's exact path whenever the index
 *          has codes.
 *   POST   the baseline: unfiltered search of k' = k, 2k, 4k ... until k of
 *          the answers match (or k' passes the searcher's capacity: brute).
 *
 * Guarantees: no non-matching or deleted node is ever returned (every
 * result is tested), and when a walk finds fewer than min(k, matching)
 * results the query is answered by the exact path, so k results come
 * whenever k nodes match.
 *
 * Planner (AUTO): m = filt_estimate (label counts). m <= brute_max: exact
 * (SCAN with codes, else BRUTE). Otherwise the greedy descent is made and
 * the fraction of matching nodes near its landing node is sampled from the
 * label sets (near_fraction): the label counts say how many match, not
 * where. near >= beam_min: BEAM (the query's neighbourhood is mostly
 * matching); near >= walk_min: GRAPH; below it the matching nodes lie
 * elsewhere (labels that follow the data's clusters, queried from another
 * cluster): the nearest of them are a cluster's stragglers scattered among
 * non-matching nodes, out of the two-hop walk's reach (it stalls at recall
 * ~0.9 on fashion-mnist and the clustered set whatever its ef or seeds), so
 * the exact path answers when m <= exact_max, GRAPH beyond. Defaults from
 * bench/filter.sh (fashion-mnist, clustered, text-cosine): a graph query at
 * recall 0.95 measures a few hundred to two thousand vectors, so below
 * ~1500 matches the exact scan costs no more and is exact; the near
 * fraction of a random label's filter is its selectivity, of another
 * cluster's label a few per cent at most.
 */
#include <stdlib.h>
#include <string.h>

#include "filt.h"
#include "hnsw_heap.h"
#include "quant.h"

struct filt_searcher {
    size_t n;         /* nodes the bit sets cover */
    visited_bits vis; /* measured or expanded */
    uint64_t *mbits;  /* matching nodes of the current query */
    uint32_t *mlist;  /* the same as a list */
    size_t mcap;
    hheap cand, res;
    float *qbuf;
    uint32_t *todo;
    size_t todo_cap;
    hnsw_hit *tmp; /* POST: answers of the unfiltered search */
    size_t tmp_cap;
    uint32_t *inv;   /* external id -> internal, after hnsw_reorder (POST) */
    quant_query *qq; /* SCAN, when the index has codes */
    int on_codes;    /* this pass measures codes (then re-ranks) */
    int qzero;
};

void filt_plan_defaults(filt_plan *p)
{
    p->mode = FILT_AUTO;
    p->brute_max = 1500;
    p->beam_min = 0.3;
    p->walk_min = 0.02;
    p->exact_max = 20000;
    p->seeds = 16;
    p->rerank = 40;
    p->codes = 1;
}

static const char *const mode_names[FILT_NMODES] = {"auto", "graph", "brute",
                                                    "beam", "post",  "scan"};

int filt_mode_parse(const char *s, filt_mode *m, hf_err *e)
{
    for (int i = 0; i < FILT_NMODES; i++)
        if (strcmp(s, mode_names[i]) == 0) {
            *m = (filt_mode)i;
            return 0;
        }
    return hf_err_set(e, HF_EUSAGE,
                      "filter mode is auto, graph, brute, beam, post or scan, not \"%s\"", s);
}

const char *filt_mode_name(filt_mode m)
{
    return (unsigned)m < FILT_NMODES ? mode_names[m] : "?";
}

static int ensure_nodes(filt_searcher *s, const hnsw *h, hf_err *e)
{
    if (h->n <= s->n && s->vis.w)
        return 0;
    size_t n = h->n > 1024 ? h->n + h->n / 4 : 1024;
    size_t words = (n + 63) / 64 + 1;
    uint64_t *v = calloc(words, sizeof *v), *m = calloc(words, sizeof *m);
    uint32_t *ml = malloc(n * sizeof *ml);
    if (!v || !m || !ml) {
        free(v);
        free(m);
        free(ml);
        return hf_err_set(e, HF_ENOMEM, "out of memory for filter scratch");
    }
    free(s->vis.w);
    free(s->mbits);
    free(s->mlist);
    s->vis.w = v;
    s->vis.words = words;
    s->mbits = m;
    s->mlist = ml;
    s->mcap = n;
    s->n = n;
    return 0;
}

int filt_searcher_new(const hnsw *h, size_t max_ef, filt_searcher **out, hf_err *e)
{
    *out = NULL;
    filt_searcher *s = calloc(1, sizeof *s);
    if (!s)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    s->res.cap = max_ef + 2;
    s->res.a = malloc(s->res.cap * sizeof(hnsw_hit));
    s->cand.cap = max_ef * 4 + 64;
    s->cand.a = malloc(s->cand.cap * sizeof(hnsw_hit));
    s->qbuf = malloc((h->dim ? h->dim : 1) * sizeof(float));
    s->todo_cap = (size_t)h->p.M0 * (h->p.M0 + 1) + 1;
    s->todo = malloc(s->todo_cap * sizeof *s->todo);
    if (!s->res.a || !s->cand.a || !s->qbuf || !s->todo || ensure_nodes(s, h, e)) {
        filt_searcher_destroy(&s);
        return hf_err_set(e, HF_ENOMEM, "out of memory for filter scratch");
    }
    if (h->codes && quant_query_new(h->codes, &s->qq, e) != 0) {
        filt_searcher_destroy(&s);
        return -1;
    }
    if (h->ext_id) {
        s->inv = malloc((h->n ? h->n : 1) * sizeof *s->inv);
        if (!s->inv) {
            filt_searcher_destroy(&s);
            return hf_err_set(e, HF_ENOMEM, "out of memory for filter scratch");
        }
        for (size_t i = 0; i < h->n; i++)
            s->inv[h->ext_id[i]] = (uint32_t)i;
    }
    *out = s;
    return 0;
}

void filt_searcher_destroy(filt_searcher **sp)
{
    if (!sp || !*sp)
        return;
    filt_searcher *s = *sp;
    free(s->vis.w);
    free(s->mbits);
    free(s->mlist);
    free(s->res.a);
    free(s->cand.a);
    free(s->qbuf);
    free(s->todo);
    free(s->tmp);
    free(s->inv);
    quant_query_destroy(&s->qq);
    free(s);
    *sp = NULL;
}

/* Dimension order and normalisation as the index stores vectors. */
static const float *prepare(const hnsw *h, filt_searcher *s, const float *q)
{
    if (h->perm)
        hnsw_permute_query(h, q, s->qbuf);
    else
        memcpy(s->qbuf, q, h->dim * sizeof(float));
    s->qzero = 0;
    if (h->p.metric == METRIC_COSINE) {
        vec_normalize(s->qbuf, h->dim);
        size_t j = 0;
        while (j < h->dim && s->qbuf[j] == 0)
            j++;
        s->qzero = j == h->dim;
    }
    return s->qbuf;
}

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

/* Distance in search units, bounded (may return anything >= bound once the
 * partial sum passes it) for L2-space indexes when bound is finite. */
static inline float bdist(const hnsw *h, const float *q, uint32_t id, float bound)
{
    if (hnsw_l2_space(h) && bound < 3.0e38f) {
        float z = hnsw_zero_bias(h, id);
        return dist_best()->l2sq_bounded(q, hnsw_vec(h, id), h->dim, bound - z) + z;
    }
    return hnsw_space_dist(h, q, id);
}

/* Push into the result max-heap of capacity cap. */
static inline void res_offer(hheap *res, size_t cap, float d, uint32_t id)
{
    if (res->n < cap)
        hmax_push(res, d, id);
    else if (d < res->a[0].d) {
        hmax_pop(res);
        hmax_push(res, d, id);
    }
}

/* A walk's distance: the code's when the query walks on codes (a quarter
 * of the bytes; results re-ranked after), else bdist. */
static inline float walk_dist(const hnsw *h, const filt_searcher *s, const float *q, uint32_t id,
                              float bound, filt_stats *st)
{
    if (s->on_codes) {
        st->ncode++;
        const uint8_t *c = hnsw_code(h, id);
        return s->qq->dist_bounded && bound < 3.0e38f ? s->qq->dist_bounded(s->qq, c, bound)
                                                      : quant_distance(s->qq, c);
    }
    st->ndist++;
    return bdist(h, q, id, bound);
}

static inline void walk_prefetch(const hnsw *h, const filt_searcher *s, uint32_t id)
{
    if (s->on_codes)
        __builtin_prefetch(hnsw_code(h, id));
    else
        __builtin_prefetch(hnsw_vec(h, id));
}

/* After a pass on codes: exact distances for the results kept (none needed
 * when the codes are lossless for this query), the k best of them. */
static void walk_rerank(const hnsw *h, filt_searcher *s, const float *q, size_t k, filt_stats *st)
{
    if (!s->on_codes || (h->codes_exact && s->qq->exact))
        return;
    hheap *res = &s->res;
    size_t r = res->n;
    hnsw_hit *kept = s->cand.a; /* the walk is over: its queue is free */
    for (size_t i = 0; i < r; i++)
        kept[i] = res->a[i];
    res->n = 0;
    for (size_t i = 0; i < r; i++) {
        if (i + 1 < r)
            __builtin_prefetch(hnsw_vec(h, kept[i + 1].id));
        res_offer(res, k, hnsw_space_dist(h, q, kept[i].id), kept[i].id);
    }
    st->ndist += r;
}

static inline int mbit(const filt_searcher *s, uint32_t id)
{
    return (int)((s->mbits[id >> 6] >> (id & 63)) & 1);
}

/* Bitmap and list of the live matching nodes; returns their number. */
static size_t build_matches(const hnsw *h, const filt_labels *fl, filt_searcher *s,
                            const filt_query *fq, filt_stats *st)
{
    memset(s->mbits, 0, s->vis.words * sizeof(uint64_t));
    size_t m = 0;
    size_t nn = h->n < fl->n ? h->n : fl->n;
    if (fl->post_version == fl->version) {
        /* any-of: the union of the filter's lists; all-of: the rarest list */
        uint32_t from = 0, to = fq->n;
        if (fq->all) {
            uint32_t best = 0;
            size_t bc = SIZE_MAX;
            for (uint32_t j = 0; j < fq->n; j++) {
                size_t c = filt_label_count(fl, fq->lab[j]);
                if (c < bc) {
                    bc = c;
                    best = j;
                }
            }
            from = best;
            to = best + 1;
        }
        for (uint32_t j = from; j < to; j++) {
            size_t lo = 0, hi = fl->pn;
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (fl->plab[mid] < fq->lab[j])
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo == fl->pn || fl->plab[lo] != fq->lab[j])
                continue;
            for (uint32_t p = fl->poff[lo]; p < fl->poff[lo + 1]; p++) {
                uint32_t id = fl->pids[p];
                if (id >= nn || h->deleted[id] || mbit(s, id))
                    continue;
                if (fq->all && fq->n > 1 && !filt_match(fl, fq, id))
                    continue;
                s->mbits[id >> 6] |= (uint64_t)1 << (id & 63);
                s->mlist[m++] = id;
            }
            st->nchecked += fl->poff[lo + 1] - fl->poff[lo];
        }
        return m;
    }
    for (uint32_t id = 0; id < nn; id++) {
        if (h->deleted[id] || !filt_match(fl, fq, id))
            continue;
        s->mbits[id >> 6] |= (uint64_t)1 << (id & 63);
        s->mlist[m++] = id;
    }
    st->nchecked += nn;
    return m;
}

/* BRUTE and SCAN: every node of list[0..m) (or, list NULL, every live
 * matching node) measured by walk_dist (vectors, or codes when on_codes),
 * the cap nearest kept. */
static void exact_pass(const hnsw *h, const filt_labels *fl, filt_searcher *s, const filt_query *fq,
                       const float *q, const uint32_t *list, size_t m, size_t cap, filt_stats *st)
{
    hheap *res = &s->res;
    res->n = 0;
    if (cap > res->cap - 2)
        cap = res->cap - 2;
    size_t nn = h->n < fl->n ? h->n : fl->n;
    size_t todo = list ? m : nn;
    for (size_t i = 0; i < todo; i++) {
        uint32_t id = list ? list[i] : (uint32_t)i;
        if (!list && (h->deleted[id] || !filt_match(fl, fq, id)))
            continue;
        if (list && i + 2 < todo)
            walk_prefetch(h, s, list[i + 2]);
        float bound = res->n >= cap ? res->a[0].d : 3.4e38f;
        res_offer(res, cap, walk_dist(h, s, q, id, bound, st), id);
    }
    if (!list)
        st->nchecked += nn;
}

/* SCAN: exact_pass on the codes, the `rerank` nearest re-ranked with exact
 * distances (lossless codes of an exactly coded query, int8 of 8-bit data,
 * need none). A quarter of the bytes of BRUTE (int8) and integer
 * arithmetic: the exact answer's recall at a fraction of its cost. */
static void scan(const hnsw *h, const filt_labels *fl, filt_searcher *s, const filt_query *fq,
                 const float *q, const uint32_t *list, size_t m, size_t k, size_t rerank,
                 filt_stats *st)
{
    s->on_codes = 1;
    int lossless = h->codes_exact && s->qq->exact;
    exact_pass(h, fl, s, fq, q, list, m, lossless || rerank < k ? k : rerank, st);
    walk_rerank(h, s, q, k, st);
}

/* Greedy descent through the upper levels (unfiltered); the landing node. */
static uint32_t descend(const hnsw *h, const float *q, float *dout, filt_stats *st)
{
    uint32_t cur = h->entry;
    float curd = hnsw_space_dist(h, q, cur);
    st->ndist++;
    for (int l = h->max_level; l > 0; l--) {
        int changed = 1;
        while (changed) {
            changed = 0;
            const uint32_t *links = hnsw_links(h, cur, l);
            for (uint32_t j = 0; j < links[0]; j++) {
                uint32_t nb = links[1 + j];
                float d = bdist(h, q, nb, curd);
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
    *dout = curd;
    return cur;
}

/* Measure the nodes of todo[0..nt) (all matching, unvisited), offer them to
 * the candidate and result queues of width ef. */
static void measure(const hnsw *h, filt_searcher *s, const float *q, const uint32_t *todo,
                    size_t nt, size_t ef, filt_stats *st)
{
    hheap *cand = &s->cand, *res = &s->res;
    for (size_t j = 0; j < nt; j++)
        walk_prefetch(h, s, todo[j]);
    for (size_t j = 0; j < nt; j++) {
        uint32_t nb = todo[j];
        float bound = res->n >= ef ? res->a[0].d : 3.4e38f;
        float d = walk_dist(h, s, q, nb, bound, st);
        if (res->n < ef || d < res->a[0].d) {
            if (cand_push(cand, d, nb) != 0)
                break;
            res_offer(res, ef, d, nb);
        }
    }
}

/* GRAPH: two-hop expansion over matching nodes (see the top comment). */
static void graph(const hnsw *h, filt_searcher *s, const filt_plan *plan, const float *q, size_t m,
                  uint32_t land, float ld, size_t ef, filt_stats *st)
{
    hheap *cand = &s->cand, *res = &s->res;
    cand->n = res->n = 0;
    visited_bits_clear(&s->vis);
    if (s->on_codes)
        ld = walk_dist(h, s, q, land, 3.4e38f, st);
    uint32_t nt = 0, cap = h->p.M0 ? h->p.M0 : 32;
    /* seeds: the landing node when it matches, else its matching neighbours
     * within two hops, then matching nodes spread over the matching set */
    visited_bits_test_set(&s->vis, land);
    if (mbit(s, land)) {
        cand_push(cand, ld, land);
        res_offer(res, ef, ld, land);
    } else
        cand_push(cand, ld, land); /* expanded once, never a result */
    size_t ns = plan->seeds < m ? plan->seeds : m;
    for (size_t i = 0; i < ns; i++) {
        uint32_t id = s->mlist[(size_t)((double)i * (double)m / (double)ns)];
        if (!visited_bits_test_set(&s->vis, id))
            s->todo[nt++] = id;
    }
    measure(h, s, q, s->todo, nt, ef, st);
    while (cand->n) {
        hnsw_hit c = cand->a[0];
        if (res->n >= ef && c.d > res->a[0].d)
            break;
        hmin_pop(cand);
        st->hops++;
        const uint32_t *l = hnsw_links0(h, c.id);
        uint32_t deg = l[0];
        nt = 0;
        for (uint32_t j = 0; j < deg && nt < cap; j++) {
            uint32_t v = l[1 + j];
            if (mbit(s, v)) {
                if (!visited_bits_test_set(&s->vis, v))
                    s->todo[nt++] = v;
                continue;
            }
            /* non-matching: a bridge; look one hop further, measure nothing */
            if (visited_bits_test_set(&s->vis, v))
                continue;
            const uint32_t *l2 = hnsw_links0(h, v);
            for (uint32_t i = 0; i < l2[0] && nt < cap; i++) {
                uint32_t w = l2[1 + i];
                if (mbit(s, w) && !visited_bits_test_set(&s->vis, w))
                    s->todo[nt++] = w;
            }
        }
        measure(h, s, q, s->todo, nt, ef, st);
    }
}

/* The fraction matching near the query: the landing node's level-0
 * neighbours and those of its first PROBE_HOPS neighbours (at most
 * (PROBE_HOPS + 1) * M0 label sets read, no vector). The label counts give
 * the fraction matching overall; this one says whether the matching nodes
 * are where the query is (labels independent of the data: about the same)
 * or elsewhere (labels that follow the data's clusters: far fewer). */
#define PROBE_HOPS 2
static double near_fraction(const hnsw *h, const filt_labels *fl, const filt_query *fq,
                            uint32_t land, filt_stats *st)
{
    const uint32_t *l = hnsw_links0(h, land);
    size_t seen = 0, hit = 0;
    for (uint32_t j = 0; j <= l[0] && j <= PROBE_HOPS; j++) {
        const uint32_t *ll = j == 0 ? l : hnsw_links0(h, l[j]);
        for (uint32_t i = 0; i < ll[0]; i++) {
            uint32_t v = ll[1 + i];
            seen++;
            hit += !h->deleted[v] && filt_match(fl, fq, v);
        }
    }
    st->nchecked += seen;
    st->nprobed++;
    double f = seen ? (double)hit / (double)seen : 1.0;
    st->near_sum += f;
    return f;
}

/* BEAM: the ordinary walk, results restricted to matching nodes. */
static void beam(const hnsw *h, const filt_labels *fl, filt_searcher *s, const filt_query *fq,
                 const float *q, uint32_t land, float ld, size_t ef, filt_stats *st)
{
    hheap *cand = &s->cand, *res = &s->res;
    cand->n = res->n = 0;
    visited_bits_clear(&s->vis);
    visited_bits_test_set(&s->vis, land);
    if (s->on_codes)
        ld = walk_dist(h, s, q, land, 3.4e38f, st);
    cand_push(cand, ld, land);
    if (!h->deleted[land] && filt_match(fl, fq, land))
        hmax_push(res, ld, land);
    while (cand->n) {
        hnsw_hit c = cand->a[0];
        if (res->n >= ef && c.d > res->a[0].d)
            break;
        hmin_pop(cand);
        st->hops++;
        const uint32_t *l = hnsw_links0(h, c.id);
        uint32_t nt = 0;
        for (uint32_t j = 0; j < l[0]; j++) {
            uint32_t v = l[1 + j];
            if (!visited_bits_test_set(&s->vis, v)) {
                s->todo[nt++] = v;
                walk_prefetch(h, s, v);
            }
        }
        for (uint32_t j = 0; j < nt; j++) {
            uint32_t v = s->todo[j];
            float bound = res->n >= ef ? res->a[0].d : 3.4e38f;
            float d = walk_dist(h, s, q, v, bound, st);
            if (res->n < ef || d < res->a[0].d) {
                if (cand_push(cand, d, v) != 0)
                    break;
                if (!h->deleted[v] && filt_match(fl, fq, v))
                    res_offer(res, ef, d, v);
            }
        }
        st->nchecked += nt;
    }
}

/* POST baseline: unfiltered searches with growing k'. Fills res with
 * internal ids of matching nodes; returns 0 when k' ran past the scratch. */
static int post(const hnsw *h, const filt_labels *fl, filt_searcher *s, hnsw_searcher *hs,
                const filt_query *fq, const float *qraw, size_t k, size_t ef, size_t live,
                filt_stats *st)
{
    hheap *res = &s->res;
    size_t cap = s->res.cap - 2; /* hs was made with the same max_ef */
    for (size_t kk = k;; kk *= 2) {
        if (kk > cap)
            kk = cap;
        if (kk > s->tmp_cap) {
            hnsw_hit *t = realloc(s->tmp, kk * sizeof *t);
            if (!t)
                return 0;
            s->tmp = t;
            s->tmp_cap = kk;
        }
        size_t got = 0;
        hnsw_stats hst = {0};
        hnsw_search(h, hs, qraw, kk, ef > kk ? ef : kk, s->tmp, &got, &hst);
        st->ndist += hst.ndist;
        st->hops += hst.hops;
        res->n = 0;
        for (size_t i = 0; i < got; i++) {
            uint32_t id = s->inv ? s->inv[s->tmp[i].id] : s->tmp[i].id;
            if (filt_match(fl, fq, id) && res->n < k)
                hmax_push(res, s->tmp[i].d, id);
        }
        st->nchecked += got;
        if (res->n >= k || got < kk || kk >= live)
            return 1;
        if (kk == cap)
            return 0;
    }
}

/* Pop res into out nearest first, external ids, the metric's distances. */
static size_t take_results(const hnsw *h, filt_searcher *s, size_t k, hnsw_hit *out, int metric_d)
{
    hheap *res = &s->res;
    while (res->n > k)
        hmax_pop(res);
    size_t n = res->n;
    for (size_t i = n; i-- > 0;) {
        out[i] = res->a[0];
        hmax_pop(res);
    }
    for (size_t i = 0; i < n; i++) {
        if (h->ext_id)
            out[i].id = h->ext_id[out[i].id];
        if (metric_d && h->p.metric == METRIC_COSINE)
            out[i].d = s->qzero ? 1.0f : hnsw_space_to_metric(h, out[i].d);
    }
    return n;
}

int filt_search(const hnsw *h, const filt_labels *fl, filt_searcher *s, hnsw_searcher *hs,
                const filt_plan *plan, const filt_query *fq, const float *qraw, size_t k, size_t ef,
                hnsw_hit *out, size_t *nout, filt_stats *st)
{
    filt_stats local = {0};
    if (!st)
        st = &local;
    *nout = 0;
    hf_err e;
    if (k == 0 || h->entry == HNSW_NONE || h->n == 0)
        return 0;
    if (ensure_nodes(s, h, &e))
        return HF_ENOMEM;
    if (ef < k)
        ef = k;
    if (ef + 2 > s->res.cap)
        ef = s->res.cap - 2;
    if (k > ef)
        k = ef;
    size_t live = h->n - h->n_deleted;
    size_t est = filt_estimate(fl, fq);
    filt_mode mode = plan->mode;
    int codes = s->qq && plan->codes;
    /* the cheaper exact path: codes, unless re-ranking would measure about
     * as many vectors as there are matches */
    filt_mode exact = codes && (h->codes_exact || est >= 4 * plan->rerank) ? FILT_SCAN : FILT_BRUTE;
    if (mode == FILT_SCAN && !codes)
        mode = FILT_BRUTE;
    if (mode == FILT_POST && (!hs || (h->ext_id && !s->inv)))
        mode = FILT_BEAM;
    if (est == 0) {
        st->by_mode[mode]++;
        return 0;
    }
    const float *q = prepare(h, s, qraw);
    s->on_codes = 0;
    uint32_t land = HNSW_NONE;
    float ld = 0;
    if (mode == FILT_AUTO) {
        if (est <= plan->brute_max)
            mode = exact;
        else {
            /* where the query is, how many match? */
            land = descend(h, q, &ld, st);
            double near = near_fraction(h, fl, fq, land, st);
            mode = near >= plan->beam_min                            ? FILT_BEAM
                   : near >= plan->walk_min || est > plan->exact_max ? FILT_GRAPH
                                                                     : exact;
        }
    }
    if ((mode == FILT_GRAPH || mode == FILT_BEAM) && land == HNSW_NONE)
        land = descend(h, q, &ld, st);
    s->on_codes = codes && (mode == FILT_GRAPH || mode == FILT_BEAM);
    if (codes && (s->on_codes || mode == FILT_SCAN)) /* a fallback to SCAN follows a walk */
        quant_query_set(s->qq, q);
    size_t m = 0;
    int have_list = 0;
    if (mode == FILT_GRAPH ||
        ((mode == FILT_BRUTE || mode == FILT_SCAN) && fl->post_version == fl->version)) {
        m = build_matches(h, fl, s, fq, st);
        have_list = 1;
    }
    size_t want = k;
    if (have_list && m < want)
        want = m;
    int done = 0;
    switch (mode) {
    case FILT_GRAPH:
        if (m)
            graph(h, s, plan, q, m, land, ld, ef, st);
        else
            s->res.n = 0;
        done = 1;
        break;
    case FILT_BEAM:
        beam(h, fl, s, fq, q, land, ld, ef, st);
        done = 1;
        break;
    case FILT_POST:
        done = post(h, fl, s, hs, fq, qraw, k, ef, live, st);
        if (done) {
            /* answers came in metric units with external ids: rebuild them */
            st->by_mode[mode]++;
            size_t n = s->res.n;
            for (size_t i = n; i-- > 0;) {
                out[i] = s->res.a[0];
                out[i].id = h->ext_id ? h->ext_id[out[i].id] : out[i].id;
                hmax_pop(&s->res);
            }
            *nout = n;
            if (n >= want || n >= k)
                return 0;
            /* fewer than k matched among everything the search could
             * return: the exact answer decides */
            st->by_mode[mode]--;
        }
        done = 0;
        break;
    default: break;
    }
    if (done) {
        size_t got = s->res.n < k ? s->res.n : k;
        if (got >= want && (have_list || got >= k)) {
            st->by_mode[mode]++;
            walk_rerank(h, s, q, k, st);
            *nout = take_results(h, s, k, out, 1);
            return 0;
        }
        /* BEAM without a count: k not reached may mean fewer match; GRAPH:
         * stranded. Either way the exact answer settles it. */
        if (mode == FILT_BEAM || got < want)
            st->fallbacks++;
        mode = exact;
    }
    if (mode == FILT_SCAN) {
        st->by_mode[FILT_SCAN]++;
        scan(h, fl, s, fq, q, have_list ? s->mlist : NULL, m, k, plan->rerank, st);
        *nout = take_results(h, s, k, out, 1);
        return 0;
    }
    st->by_mode[FILT_BRUTE]++;
    s->on_codes = 0;
    exact_pass(h, fl, s, fq, q, have_list ? s->mlist : NULL, m, k, st);
    *nout = take_results(h, s, k, out, 1);
    return 0;
}
