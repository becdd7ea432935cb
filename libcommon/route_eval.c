/*
 * route_eval.c - what the layer router learns from and how it is judged:
 * leave-one-out base-vector queries with exact neighbours, labels from
 * measured searches, and the evaluation layer-route prints (route.h).
 *
 * A base vector queried with its own node excluded (hnsw_searcher_exclude)
 * behaves like a new point of the data's distribution; with its node in the
 * graph the search would land on it and find the answers in its list. Recall
 * is the ann-benchmarks definition (bench/recall.c). Searches run in
 * threads over queries; per-thread sums are added in thread order, so the
 * figures do not depend on the thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "knn.h"
#include "par.h"
#include "route.h"
#include "vecstream.h"

void route_qset_destroy(route_qset **self_p)
{
    if (!self_p || !*self_p)
        return;
    route_qset *q = *self_p;
    free(q->stored);
    free(q->raw);
    free(q->self);
    free(q->truth);
    free(q->thr);
    free(q);
    *self_p = NULL;
}

/* Allocate a set of n queries (self and truth to be filled). */
static route_qset *qset_alloc(size_t n, size_t d, size_t k)
{
    route_qset *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->n = n;
    q->k = k;
    q->stored = malloc(n * d * sizeof *q->stored + 1);
    q->raw = malloc(n * d * sizeof *q->raw + 1);
    q->self = malloc(n * sizeof *q->self + 1);
    q->truth = malloc(n * k * sizeof *q->truth + 1);
    q->thr = malloc(n * sizeof *q->thr + 1);
    if (!q->stored || !q->raw || !q->self || !q->truth || !q->thr)
        route_qset_destroy(&q);
    return q;
}

/* Exact neighbours (leaving out self when a query is a base vector) and
 * the ann-benchmarks hit thresholds. */
static int qset_truth(const hnsw *h, route_qset *q, int loo, hf_err *e)
{
    float *kth = malloc(q->n * sizeof *kth + 1);
    if (!kth)
        return hf_err_set(e, HF_ENOMEM, "out of memory for router queries");
    knn_base b = hnsw_knn_base(h);
    int rc = knn_exact_loo(&b, q->stored, q->n, q->k, loo ? q->self : NULL, q->truth, kth, e);
    for (size_t i = 0; rc == 0 && i < q->n; i++)
        q->thr[i] = knn_recall_scale(h->p.metric, kth[i]) + KNN_RECALL_EPS;
    free(kth);
    return rc;
}

int route_qset_new(const hnsw *h, const uint32_t *ids, size_t n, size_t k, route_qset **out,
                   hf_err *e)
{
    *out = NULL;
    size_t d = h->dim;
    route_qset *q = qset_alloc(n, d, k);
    if (!q)
        return hf_err_set(e, HF_ENOMEM, "out of memory for router queries");
    for (size_t i = 0; i < n; i++) {
        q->self[i] = ids[i];
        memcpy(q->stored + i * d, hnsw_vec(h, ids[i]), d * sizeof *q->stored);
        hnsw_unpermute(h, q->stored + i * d, q->raw + i * d);
    }
    int rc = qset_truth(h, q, 1, e);
    if (rc) {
        route_qset_destroy(&q);
        return rc;
    }
    *out = q;
    return 0;
}

int route_qset_from_vectors(const hnsw *h, const float *raw, size_t n, size_t k, route_qset **out,
                            hf_err *e)
{
    *out = NULL;
    size_t d = h->dim;
    route_qset *q = qset_alloc(n, d, k);
    if (!q)
        return hf_err_set(e, HF_ENOMEM, "out of memory for training queries");
    memcpy(q->raw, raw, n * d * sizeof *raw);
    for (size_t i = 0; i < n; i++) {
        q->self[i] = HNSW_NONE;
        float *st = q->stored + i * d;
        if (h->perm)
            hnsw_permute_query(h, raw + i * d, st);
        else
            memcpy(st, raw + i * d, d * sizeof *st);
        if (h->p.metric == METRIC_COSINE)
            vec_normalize(st, d);
    }
    int rc = qset_truth(h, q, 0, e);
    if (rc) {
        route_qset_destroy(&q);
        return rc;
    }
    *out = q;
    return 0;
}

int route_qsets_split(const hnsw *h, const float *rows, size_t n, size_t *nq, size_t *nval,
                      size_t k, route_qset **tq, route_qset **vq, hf_err *e)
{
    *tq = *vq = NULL;
    if (*nval > n / 4)
        *nval = n / 4;
    size_t avail = n - *nval;
    if (*nq > avail)
        *nq = avail;
    int rc = *nq ? route_qset_from_vectors(h, rows, *nq, k, tq, e) : 0;
    if (rc == 0)
        rc = route_qset_from_vectors(h, rows + avail * h->dim, *nval, k, vq, e);
    return rc;
}

int route_qsets_loo(const hnsw *h, size_t *nq, size_t *nval, uint64_t seed, size_t k,
                    route_qset **tq, route_qset **vq, hf_err *e)
{
    *tq = *vq = NULL;
    size_t got = 0;
    uint32_t *qids = route_sample_ids(h, *nq + *nval, seed, h->entry, &got);
    if (!qids)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    if (got < *nq + *nval) { /* a small index: a quarter validates */
        *nval = got / 4 ? got / 4 : 1;
        *nq = *nq ? got - *nval : 0;
    }
    int rc = *nq ? route_qset_new(h, qids, *nq, k, tq, e) : 0;
    if (rc == 0)
        rc = route_qset_new(h, qids + *nq, *nval, k, vq, e);
    free(qids);
    return rc;
}

int route_qset_replay(const hnsw *h, const nn_memory *mem, size_t n, const char *file,
                      size_t max_frame, size_t k, route_qset **out, hf_err *e)
{
    *out = NULL;
    float *rows = NULL;
    size_t nr = 0;
    if (file) {
        int rc = vecstream_read_all(file, NULL, h->dim, max_frame, &rows, &nr, e);
        if (rc)
            return rc;
    } else if (mem) {
        nr = n < mem->nreplay ? n : mem->nreplay;
    }
    int rc = nr ? route_qset_from_vectors(h, file ? rows : mem->replay, nr, k, out, e) : 0;
    free(rows);
    return rc;
}

typedef struct rjob {
    const route_model *m;
    const hnsw *h;
    const route_qset *qs;
    route_mode mode;
    size_t ef, top;
    double miss_cost;
    uint32_t *label; /* route_label: out */
    uint32_t *keys;
    float *costs;
    int t, threads;
    double hits, cost, upper; /* route_eval: this thread's sums */
    int failed;
} rjob;

static size_t hits_of(const rjob *j, size_t qi, const hnsw_hit *out, size_t got)
{
    size_t c = 0;
    for (size_t r = 0; r < got && r < j->qs->k; r++)
        c += knn_recall_scale(j->h->p.metric, out[r].d) <= j->qs->thr[qi];
    return c;
}

static void *eval_worker(void *arg)
{
    rjob *j = arg;
    const hnsw *h = j->h;
    size_t k = j->qs->k, maxef = j->ef > k ? j->ef : k;
    hnsw_searcher *s = NULL;
    hnsw_hit *out = malloc(maxef * sizeof *out);
    float *z = malloc((j->m ? j->m->r : 1) * sizeof *z);
    hf_err e = {0};
    if (!out || !z || hnsw_searcher_new(h, maxef, &s, &e)) {
        j->failed = 1;
        goto done;
    }
    for (size_t qi = (size_t)j->t; qi < j->qs->n; qi += (size_t)j->threads) {
        const float *qs = j->qs->stored + qi * h->dim, *qr = j->qs->raw + qi * h->dim;
        hnsw_searcher_exclude(s, j->qs->self[qi]);
        uint32_t entry;
        int level;
        double rcost;
        route_entry(j->m, h, j->mode, qs, z, &entry, &level, &rcost);
        if (entry == j->qs->self[qi]) /* a candidate queried against the rest */
            route_entry(j->m, h, ROUTE_CLASSIC, qs, z, &entry, &level, &rcost);
        size_t got = 0;
        hnsw_stats st = {0};
        if (hnsw_search_from(h, s, qr, k, j->ef, entry, level, out, &got, &st)) {
            j->failed = 1;
            break;
        }
        j->hits += (double)hits_of(j, qi, out, got);
        j->cost += (double)st.ndist + rcost;
        j->upper += (double)st.ndist_upper;
    }
done:
    hnsw_searcher_destroy(&s);
    free(out);
    free(z);
    return NULL;
}

static void *label_worker(void *arg)
{
    rjob *j = arg;
    const hnsw *h = j->h;
    const route_model *m = j->m;
    size_t k = j->qs->k, maxef = j->ef > k ? j->ef : k, top = j->top < m->C ? j->top : m->C;
    hnsw_searcher *s = NULL;
    hnsw_hit *out = malloc(maxef * sizeof *out);
    hnsw_hit *cd = malloc(m->C * sizeof *cd);
    hf_err e = {0};
    if (!out || !cd || hnsw_searcher_new(h, maxef, &s, &e)) {
        j->failed = 1;
        goto done;
    }
    for (size_t qi = (size_t)j->t; qi < j->qs->n; qi += (size_t)j->threads) {
        const float *qs = j->qs->stored + qi * h->dim, *qr = j->qs->raw + qi * h->dim;
        hnsw_searcher_exclude(s, j->qs->self[qi]);
        for (size_t c = 0; c < m->C; c++) {
            cd[c].id = (uint32_t)c;
            cd[c].d = dist_finish(h->p.metric, h->kern(qs, hnsw_vec(h, m->cand_int[c]), h->dim));
        }
        hnsw_hit_sort(cd, m->C);
        /* the classic descent first: ties go to it */
        uint32_t best = (uint32_t)m->C;
        double bestc = INFINITY;
        uint32_t *kk = j->keys + qi * (j->top + 1);
        float *cc = j->costs + qi * (j->top + 1);
        for (size_t t = 0; t <= j->top; t++)
            kk[t] = UINT32_MAX;
        for (size_t t = 0; t <= top; t++) {
            uint32_t key = t == 0 ? (uint32_t)m->C : cd[t - 1].id;
            uint32_t entry = key == m->C ? h->entry : m->cand_int[key];
            int level = key == m->C ? h->max_level : 0;
            if (entry == j->qs->self[qi])
                continue;
            size_t got = 0;
            hnsw_stats st = {0};
            if (hnsw_search_from(h, s, qr, k, j->ef, entry, level, out, &got, &st)) {
                j->failed = 1;
                goto done;
            }
            double c = (double)st.ndist + j->miss_cost * (double)(k - hits_of(j, qi, out, got));
            kk[t] = key;
            cc[t] = (float)c;
            if (c < bestc) {
                bestc = c;
                best = key;
            }
        }
        j->label[qi] = best;
    }
done:
    hnsw_searcher_destroy(&s);
    free(out);
    free(cd);
    return NULL;
}

static int run(rjob *jobs, int threads, void *(*fn)(void *), hf_err *e)
{
    par_run(threads, jobs, sizeof jobs[0], fn);
    int failed = 0;
    for (int t = 0; t < threads; t++)
        failed |= jobs[t].failed;
    return failed ? hf_err_set(e, HF_ENOMEM, "out of memory in the router's searches") : 0;
}

int route_label(const route_model *m, const hnsw *h, const route_qset *qs, size_t ef, size_t top,
                double miss_cost, int threads, uint32_t *keys, float *costs, uint32_t *label,
                hf_err *e)
{
    rjob jobs[PAR_MAX_THREADS] = {0};
    threads = threads < 1 ? 1 : threads > PAR_MAX_THREADS ? PAR_MAX_THREADS : threads;
    for (int t = 0; t < threads; t++)
        jobs[t] = (rjob){.m = m,
                         .h = h,
                         .qs = qs,
                         .ef = ef,
                         .top = top,
                         .miss_cost = miss_cost,
                         .label = label,
                         .keys = keys,
                         .costs = costs,
                         .t = t,
                         .threads = threads};
    return run(jobs, threads, label_worker, e);
}

int route_eval(const route_model *m, const hnsw *h, const route_qset *qs, route_mode mode,
               size_t ef, int threads, double *recall, double *cost, double *upper, hf_err *e)
{
    rjob jobs[PAR_MAX_THREADS] = {0};
    threads = threads < 1 ? 1 : threads > PAR_MAX_THREADS ? PAR_MAX_THREADS : threads;
    for (int t = 0; t < threads; t++)
        jobs[t] =
            (rjob){.m = m, .h = h, .qs = qs, .mode = mode, .ef = ef, .t = t, .threads = threads};
    int rc = run(jobs, threads, eval_worker, e);
    if (rc)
        return rc;
    double hs = 0, cs = 0, us = 0;
    for (int t = 0; t < threads; t++) {
        hs += jobs[t].hits;
        cs += jobs[t].cost;
        us += jobs[t].upper;
    }
    *recall = hs / ((double)qs->n * (double)qs->k);
    *cost = cs / (double)qs->n;
    *upper = us / (double)qs->n;
    return 0;
}
