/*
 * edge_label.c - which level-0 edges carry routes to true neighbours.
 *
 * For every training query: exact neighbours by knn_exact (OpenBLAS), then a
 * search like hnsw_search (greedy upper levels, beam of width ef on level 0)
 * that remembers, for each node it reaches, the edge it was first reached by.
 * Those edges form a tree rooted at the level-0 start; the tree path to each
 * true neighbour the search reached is a route, and each edge on it gets one
 * count per query (paths are traced once per node per query). Edges between
 * two true neighbours of the query also count: they keep a neighbourhood
 * connected once the search has arrived. Every far_every-th query starts
 * its level-0 search at a node picked by the query's number instead of
 * where the upper levels lead: the upper levels usually land next to the
 * answer, so without these long routes the edges that bridge regions (rarely
 * used, badly missed when gone) would look useless. Integer counts are summed over
 * per-thread arrays, so the result does not depend on the thread count.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "edge.h"
#include "hnsw_heap.h"
#include "knn.h"

#define NO_EDGE UINT64_MAX

typedef struct label_job {
    const hnsw *h;
    const edge_graph *g;
    const float *queries;
    size_t nq, k;
    const uint32_t *truth; /* nq x k, HNSW_NONE for missing */
    const uint32_t *self;  /* nq: the query's own node, never visited; or NULL */
    size_t ef, far_every;
    int t, threads;
    uint32_t *usage, *expanded; /* this thread's counters */
    int failed;
} label_job;

static inline float qd(const hnsw *h, const float *q, uint32_t id)
{
    return dist_finish(h->p.metric, h->kern(q, hnsw_vec(h, id), h->dim));
}

/* Greedy descent through the upper levels, as hnsw_search does, never
 * stepping on node skip. */
static uint32_t descend(const hnsw *h, const float *q, uint32_t skip, float *dout)
{
    uint32_t cur = h->entry;
    float curd = qd(h, q, cur);
    for (int l = h->max_level; l > 0; l--) {
        int changed = 1;
        while (changed) {
            changed = 0;
            const uint32_t *ln = hnsw_links(h, cur, l);
            for (uint32_t j = 0; j < ln[0]; j++) {
                if (ln[1 + j] == skip)
                    continue;
                float d = qd(h, q, ln[1 + j]);
                if (d < curd) {
                    curd = d;
                    cur = ln[1 + j];
                    changed = 1;
                }
            }
        }
    }
    *dout = curd;
    return cur;
}

static void *label_worker(void *arg)
{
    label_job *j = arg;
    const hnsw *h = j->h;
    const edge_graph *g = j->g;
    size_t n = g->n;
    visited vis = {calloc(n, sizeof(uint16_t)), 0, n};
    uint32_t *pnode = malloc(n * sizeof *pnode);
    uint64_t *pedge = malloc(n * sizeof *pedge);
    uint32_t *traced = calloc(n, sizeof *traced);   /* query stamp + 1 */
    uint32_t *intruth = calloc(n, sizeof *intruth); /* query stamp + 1 */
    hheap cand = {malloc((n + 1) * sizeof(hnsw_hit)), 0, n + 1};
    hheap res = {malloc((j->ef + 2) * sizeof(hnsw_hit)), 0, j->ef + 2};
    float *qbuf = malloc(h->dim * sizeof(float));
    if (!vis.mark || !pnode || !pedge || !traced || !intruth || !cand.a || !res.a || !qbuf) {
        j->failed = 1;
        goto out;
    }
    for (size_t qi = (size_t)j->t; qi < j->nq; qi += (size_t)j->threads) {
        const float *q = j->queries + qi * h->dim;
        if (h->p.metric == METRIC_COSINE) {
            memcpy(qbuf, q, h->dim * sizeof(float));
            vec_normalize(qbuf, h->dim);
            q = qbuf;
        }
        uint32_t stamp = (uint32_t)qi + 1;
        /* a base vector as query is searched for as if it were not in the
         * graph (leave-one-out): routes that end at its own node would
         * teach nothing about reaching a new point's neighbours */
        uint32_t skip = j->self ? j->self[qi] : HNSW_NONE;
        float epd;
        uint32_t ep;
        if (j->far_every && qi % j->far_every == j->far_every - 1) {
            /* a far start: a level-0 route from a node picked by the query's
             * number, so edges that bridge regions get counted too */
            uint64_t x = (qi + 1) * 0x9e3779b97f4a7c15ull;
            ep = (uint32_t)((x ^ (x >> 29)) % n);
            if (ep == skip)
                ep = (uint32_t)((ep + 1) % n);
            epd = qd(h, q, ep);
        } else {
            ep = descend(h, q, skip, &epd);
        }
        visited_next(&vis);
        cand.n = res.n = 0;
        if (skip != HNSW_NONE)
            visited_test_set(&vis, skip);
        visited_test_set(&vis, ep);
        pnode[ep] = HNSW_NONE;
        pedge[ep] = NO_EDGE;
        hmin_push(&cand, epd, ep);
        hmax_push(&res, epd, ep);
        while (cand.n) {
            hnsw_hit c = cand.a[0];
            if (res.n >= j->ef && c.d > res.a[0].d)
                break;
            hmin_pop(&cand);
            j->expanded[c.id]++;
            for (uint64_t x = g->off[c.id]; x < g->off[c.id + 1]; x++) {
                uint32_t nb = g->dst[x];
                if (visited_test_set(&vis, nb))
                    continue;
                pnode[nb] = c.id;
                pedge[nb] = x;
                float d = qd(h, q, nb);
                if (res.n < j->ef || d < res.a[0].d) {
                    hmin_push(&cand, d, nb);
                    hmax_push(&res, d, nb);
                    if (res.n > j->ef)
                        hmax_pop(&res);
                }
            }
        }
        const uint32_t *tr = j->truth + qi * j->k;
        for (size_t r = 0; r < j->k; r++)
            if (tr[r] != HNSW_NONE)
                intruth[tr[r]] = stamp;
        for (size_t r = 0; r < j->k; r++) {
            uint32_t t = tr[r];
            if (t == HNSW_NONE)
                continue;
            for (uint64_t x = g->off[t]; x < g->off[t + 1]; x++)
                if (intruth[g->dst[x]] == stamp)
                    j->usage[x]++;
            /* the route, if this search reached t at all */
            if (vis.mark[t] != vis.epoch)
                continue;
            for (uint32_t v = t; traced[v] != stamp && pedge[v] != NO_EDGE; v = pnode[v]) {
                traced[v] = stamp;
                j->usage[pedge[v]]++;
            }
        }
    }
out:
    free(vis.mark);
    free(pnode);
    free(pedge);
    free(traced);
    free(intruth);
    free(cand.a);
    free(res.a);
    free(qbuf);
    return NULL;
}

int edge_label(const hnsw *h, const edge_graph *g, const float *queries, size_t nq,
               const uint32_t *self_ids, const edge_label_cfg *cfg, uint32_t *usage,
               uint32_t *expanded, hf_err *e)
{
    size_t k = cfg->k ? cfg->k : 10, ef = cfg->ef ? cfg->ef : 32;
    int threads = cfg->threads < 1 ? 1 : cfg->threads > 64 ? 64 : cfg->threads;
    memset(usage, 0, g->nedges * sizeof *usage);
    memset(expanded, 0, g->n * sizeof *expanded);
    if (nq == 0 || g->n == 0 || h->entry == HNSW_NONE)
        return 0;
    if (ef < k)
        ef = k;
    uint32_t *truth = malloc(nq * k * sizeof *truth);
    if (!truth)
        return hf_err_set(e, HF_ENOMEM, "out of memory for training labels");
    knn_base b = hnsw_knn_base(h);
    int rc = knn_exact_loo(&b, queries, nq, k, self_ids, truth, NULL, e);
    if (rc) {
        free(truth);
        return rc;
    }
    label_job jobs[64] = {0};
    pthread_t tid[64];
    int started[64] = {0};
    for (int t = 0; t < threads; t++) {
        jobs[t] = (label_job){h, g,       queries, nq,       k, truth, self_ids, ef, cfg->far_every,
                              t, threads, usage,   expanded, 0};
        if (t > 0) {
            jobs[t].usage = calloc(g->nedges ? g->nedges : 1, sizeof(uint32_t));
            jobs[t].expanded = calloc(g->n, sizeof(uint32_t));
            if (!jobs[t].usage || !jobs[t].expanded)
                jobs[t].failed = 1;
        }
    }
    for (int t = 1; t < threads; t++)
        if (!jobs[t].failed)
            started[t] = pthread_create(&tid[t], NULL, label_worker, &jobs[t]) == 0;
    label_worker(&jobs[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else if (!jobs[t].failed)
            label_worker(&jobs[t]);
    }
    int failed = 0;
    for (int t = 0; t < threads; t++) {
        failed |= jobs[t].failed;
        if (t == 0)
            continue;
        if (jobs[t].usage && jobs[t].expanded) {
            for (size_t x = 0; x < g->nedges; x++)
                usage[x] += jobs[t].usage[x];
            for (size_t i = 0; i < g->n; i++)
                expanded[i] += jobs[t].expanded[i];
        }
        free(jobs[t].usage);
        free(jobs[t].expanded);
    }
    free(truth);
    if (failed)
        return hf_err_set(e, HF_ENOMEM, "out of memory in the labelling searches");
    return 0;
}
