/*
 * edge_valid.c - edge-score validates itself: recall@k of a graph on
 * queries held aside from training (never the user's test queries), against
 * exact neighbours, at an ef grid; and the tolerance search that picks the
 * smallest edge count whose pruned graph stays within T of the input graph
 * at every ef of the grid.
 *
 * Recall is the ann-benchmarks definition bench/recall.c uses (a hit is a
 * returned distance <= the true k-th distance + 1e-3, on the sqrt scale for
 * l2), so this table and the bench's test-query table count the same thing.
 * A query that is a base vector (self_ids) is searched for as if its node
 * were not in the graph (hnsw_searcher_exclude) and its node is left out of
 * the truth: leave-one-out, a point from the data's own distribution that
 * the graph has never seen. Kept in the graph, its node would sit next to
 * the query with the answers in its list, and the search would be trivial
 * (perturbed base vectors scored recall 0.97 at ef 10 where the text set's
 * real queries score 0.81).
 * Queries are kept in input dimension order, as hnsw_search takes them; the
 * truth is computed on the stored (permuted) vectors with the queries in
 * stored order, which is the same distance.
 *
 * Pruned graphs are measured in place: a keep mask is written into h's
 * level-0 lists (edge_graph_apply), measured, and replaced by the next one;
 * the input lists are saved once so they can be put back exactly (their
 * order matters to the beam search) when no pruning passes.
 *
 * Recall is close to monotone in the edge count (the masks are nested where
 * the floors allow: a larger budget keeps a superset of the best-scored
 * edges), so the search bisects; a noisy non-monotone step only makes it
 * settle on a larger count than needed, never accept a failing one: every
 * accepted count was measured within T.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edge.h"
#include "knn.h"
#include "par.h"

struct edge_val {
    size_t nq, k, dim;
    float *queries; /* nq x dim, input dimension order */
    uint32_t *self; /* nq: the query's own node, excluded from its search; or NULL */
    double *thr;    /* nq: hit threshold on the recall scale */
    metric_t metric;
    size_t nef;
    size_t ef[EDGE_VAL_MAX_EF];
    int threads;
};

void edge_val_destroy(edge_val **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->queries);
    free((*self_p)->self);
    free((*self_p)->thr);
    free(*self_p);
    *self_p = NULL;
}

size_t edge_val_queries(const edge_val *v)
{
    return v->nq;
}

int edge_val_new(const hnsw *h, const float *queries, size_t nq, const uint32_t *self_ids, size_t k,
                 const size_t *ef, size_t nef, int threads, edge_val **out, hf_err *e)
{
    *out = NULL;
    if (nq == 0 || k == 0 || nef == 0 || nef > EDGE_VAL_MAX_EF)
        return hf_err_set(e, HF_EUSAGE, "validation needs queries, k and 1..%d ef values",
                          EDGE_VAL_MAX_EF);
    edge_val *v = calloc(1, sizeof *v);
    uint32_t *ids = malloc(nq * k * sizeof *ids);
    float *kth = malloc(nq * sizeof *kth);
    if (v) {
        v->queries = malloc(nq * h->dim * sizeof *v->queries);
        v->thr = malloc(nq * sizeof *v->thr);
        v->self = self_ids ? malloc(nq * sizeof *v->self) : NULL;
    }
    if (!v || !ids || !kth || !v->queries || !v->thr || (self_ids && !v->self)) {
        free(ids);
        free(kth);
        edge_val_destroy(&v);
        return hf_err_set(e, HF_ENOMEM, "out of memory for validation queries");
    }
    v->nq = nq;
    v->k = k;
    v->dim = h->dim;
    v->metric = h->p.metric;
    v->nef = nef;
    memcpy(v->ef, ef, nef * sizeof *ef);
    v->threads = threads < 1 ? 1 : threads > PAR_MAX_THREADS ? PAR_MAX_THREADS : threads;
    if (self_ids)
        memcpy(v->self, self_ids, nq * sizeof *v->self);
    for (size_t q = 0; q < nq; q++)
        hnsw_unpermute(h, queries + q * h->dim, v->queries + q * h->dim);
    knn_base b = hnsw_knn_base(h);
    int rc = knn_exact_loo(&b, queries, nq, k, self_ids, ids, kth, e);
    for (size_t q = 0; rc == 0 && q < nq; q++)
        v->thr[q] = knn_recall_scale(h->p.metric, kth[q]) + KNN_RECALL_EPS;
    free(ids);
    free(kth);
    if (rc) {
        edge_val_destroy(&v);
        return rc;
    }
    *out = v;
    return 0;
}

typedef struct val_job {
    const edge_val *v;
    const hnsw *h;
    int t;
    double hits[EDGE_VAL_MAX_EF];
    uint64_t ndist[EDGE_VAL_MAX_EF];
    int failed;
} val_job;

static void *val_worker(void *arg)
{
    val_job *j = arg;
    const edge_val *v = j->v;
    size_t maxef = v->k;
    for (size_t i = 0; i < v->nef; i++)
        maxef = v->ef[i] > maxef ? v->ef[i] : maxef;
    hnsw_searcher *s = NULL;
    hnsw_hit *hits = malloc(maxef * sizeof *hits);
    hf_err e = {0};
    if (!hits || hnsw_searcher_new(j->h, maxef, &s, &e)) {
        free(hits);
        j->failed = 1;
        return NULL;
    }
    for (size_t q = (size_t)j->t; q < v->nq; q += (size_t)v->threads) {
        for (size_t i = 0; i < v->nef; i++) {
            size_t got = 0;
            hnsw_stats st = {0};
            hnsw_searcher_exclude(s, v->self ? v->self[q] : HNSW_NONE);
            if (hnsw_search(j->h, s, v->queries + q * v->dim, v->k, v->ef[i], hits, &got, &st)) {
                j->failed = 1;
                goto out;
            }
            size_t c = 0;
            for (size_t r = 0; r < got && r < v->k; r++)
                c += knn_recall_scale(v->metric, hits[r].d) <= v->thr[q];
            j->hits[i] += (double)c;
            j->ndist[i] += st.ndist;
        }
    }
out:
    hnsw_searcher_destroy(&s);
    free(hits);
    return NULL;
}

int edge_val_measure(const edge_val *v, const hnsw *h, double *recall, double *ndist, hf_err *e)
{
    val_job jobs[PAR_MAX_THREADS] = {0};
    for (int t = 0; t < v->threads; t++)
        jobs[t] = (val_job){.v = v, .h = h, .t = t};
    par_run(v->threads, jobs, sizeof jobs[0], val_worker);
    int failed = 0;
    for (int t = 0; t < v->threads; t++)
        failed |= jobs[t].failed;
    if (failed)
        return hf_err_set(e, HF_ENOMEM, "out of memory in the validation searches");
    /* summed in thread order: the same figures for any thread count */
    for (size_t i = 0; i < v->nef; i++) {
        double hsum = 0, dsum = 0;
        for (int t = 0; t < v->threads; t++) {
            hsum += jobs[t].hits[i];
            dsum += (double)jobs[t].ndist[i];
        }
        recall[i] = hsum / ((double)v->nq * (double)v->k);
        if (ndist)
            ndist[i] = dsum / (double)v->nq;
    }
    return 0;
}

double edge_val_loss(const edge_val *v, const double *ref, const double *recall)
{
    double worst = -INFINITY;
    for (size_t i = 0; i < v->nef; i++)
        worst = ref[i] - recall[i] > worst ? ref[i] - recall[i] : worst;
    return worst;
}

size_t edge_val_ef(const edge_val *v, size_t i)
{
    return i < v->nef ? v->ef[i] : 0;
}
size_t edge_val_nef(const edge_val *v)
{
    return v->nef;
}

/* Prune to `budget`, write the mask into h and measure it. */
static int try_budget(const edge_val *v, const edge_graph *g, const float *score, size_t budget,
                      const edge_prune_cfg *pc, uint32_t entry, hnsw *h, uint8_t *keep,
                      edge_val_row *row, hf_err *e)
{
    edge_prune_stats ps;
    int rc = edge_prune(g, score, budget, pc, entry, keep, &ps, e);
    if (rc)
        return rc;
    edge_graph_apply(g, keep, h);
    row->budget = budget;
    row->edges = ps.kept;
    row->unreachable = ps.unreachable;
    return edge_val_measure(v, h, row->recall, row->ndist, e);
}

int edge_val_tune(const edge_val *v, const edge_graph *g, const float *score,
                  const edge_prune_cfg *pc, uint32_t entry, hnsw *h, const double *ref, double tol,
                  size_t lo, size_t hi, int steps, uint8_t *keep, edge_val_row *best, int *found,
                  size_t *tried, hf_err *e)
{
    *found = 0;
    *tried = 0;
    if (lo > hi)
        lo = hi;
    edge_val_row row;
    int rc = try_budget(v, g, score, hi, pc, entry, h, keep, &row, e);
    if (rc)
        return rc;
    ++*tried;
    *best = row;
    row.loss = edge_val_loss(v, ref, row.recall);
    best->loss = row.loss;
    if (!(row.loss <= tol))
        return 0; /* even the largest count fails: the caller falls back */
    *found = 1;
    size_t fail = lo, pass = hi;
    /* lo itself may pass: test it first so the bisection has a failing end */
    rc = try_budget(v, g, score, lo, pc, entry, h, keep, &row, e);
    if (rc)
        return rc;
    ++*tried;
    row.loss = edge_val_loss(v, ref, row.recall);
    if (row.loss <= tol) {
        *best = row;
        pass = lo;
    }
    for (int s = 0; s < steps && pass > fail + 1 && pass != lo; s++) {
        size_t mid = fail + (pass - fail) / 2;
        rc = try_budget(v, g, score, mid, pc, entry, h, keep, &row, e);
        if (rc)
            return rc;
        ++*tried;
        row.loss = edge_val_loss(v, ref, row.recall);
        if (row.loss <= tol) {
            *best = row;
            pass = mid;
        } else {
            fail = mid;
        }
    }
    /* leave the chosen mask in keep and in h (pruning is deterministic) */
    edge_prune_stats ps;
    rc = edge_prune(g, score, best->budget, pc, entry, keep, &ps, e);
    if (!rc)
        edge_graph_apply(g, keep, h);
    return rc;
}

int edge_links_save(const hnsw *h, uint32_t **out, hf_err *e)
{
    size_t per = h->links_bytes / sizeof(uint32_t);
    uint32_t *s = malloc((h->n ? h->n : 1) * per * sizeof *s);
    if (!s)
        return hf_err_set(e, HF_ENOMEM, "out of memory saving the input graph's lists");
    for (size_t i = 0; i < h->n; i++)
        memcpy(s + i * per, hnsw_links0(h, (uint32_t)i), h->links_bytes);
    *out = s;
    return 0;
}

void edge_links_restore(hnsw *h, const uint32_t *saved)
{
    size_t per = h->links_bytes / sizeof(uint32_t);
    for (size_t i = 0; i < h->n; i++)
        memcpy(hnsw_links0(h, (uint32_t)i), saved + i * per, h->links_bytes);
}
