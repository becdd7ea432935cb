/*
 * hnsw_build.c - inserting nodes: beam search per level, the neighbour
 * selection heuristic, and bidirectional linking with pruning.
 *
 * Parallel insertion: worker threads take node ids from an atomic counter.
 * A node's link list is read and written only under its own mutex (readers
 * copy it out first); the entry point and top level change under entry_lock,
 * which an insert holds throughout when it will raise the top level (as
 * hnswlib does), so two inserts never race to become the entry.
 *
 * Heuristic (Malkov & Yashunin, alg. 4): walk candidates nearest first and
 * keep one only if it is closer to the new node than to every neighbour
 * kept so far. This keeps links pointing in diverse directions.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "hnsw.h"
#include "hnsw_heap.h"

typedef struct build_scratch {
    visited vis;
    hheap cand, res;
    hnsw_hit *sorted;   /* ef_construction results, nearest first */
    hnsw_hit *prune;    /* M0 + 1 candidates when pruning a neighbour */
    uint32_t *selected; /* heuristic output for the node being inserted */
    uint32_t *pruned;   /* heuristic output when pruning a neighbour's list */
    uint32_t *copy;     /* a neighbour list copied out under its lock */
} build_scratch;

static int scratch_init(build_scratch *b, const hnsw *h)
{
    size_t ef = h->p.ef_construction + 1;
    memset(b, 0, sizeof *b);
    b->vis.n = h->n;
    b->vis.mark = calloc(h->n ? h->n : 1, sizeof(uint16_t));
    b->cand.cap = h->n + 1;
    b->cand.a = malloc(b->cand.cap * sizeof(hnsw_hit));
    b->res.cap = ef + 1;
    b->res.a = malloc(b->res.cap * sizeof(hnsw_hit));
    b->sorted = malloc((ef + 1) * sizeof(hnsw_hit));
    b->prune = malloc((h->p.M0 + 2) * sizeof(hnsw_hit));
    b->selected = malloc((h->p.M0 + 2) * sizeof(uint32_t));
    b->pruned = malloc((h->p.M0 + 2) * sizeof(uint32_t));
    b->copy = malloc((h->p.M0 + 2) * sizeof(uint32_t));
    return b->vis.mark && b->cand.a && b->res.a && b->sorted && b->prune && b->selected &&
                   b->pruned && b->copy
               ? 0
               : -1;
}

static void scratch_free(build_scratch *b)
{
    free(b->vis.mark);
    free(b->cand.a);
    free(b->res.a);
    free(b->sorted);
    free(b->prune);
    free(b->selected);
    free(b->pruned);
    free(b->copy);
}

/* The bounded kernel between stored nodes a and b, zero-vector biases
 * included (hnsw.h): exact when the distance is <= bound. */
static inline float biased_bounded(const hnsw *h, dist_bounded_fn bounded, uint32_t a, uint32_t b,
                                   float bound)
{
    float z = hnsw_zero_bias(h, a) + hnsw_zero_bias(h, b);
    return bounded(hnsw_vec(h, a), hnsw_vec(h, b), h->dim, bound - z) + z;
}

/* Copy node id's level-l links into out; returns the degree. */
static uint32_t read_links(hnsw *h, uint32_t id, int l, uint32_t *out)
{
    pthread_mutex_lock(&h->locks[id]);
    const uint32_t *ln = hnsw_links(h, id, l);
    uint32_t deg = ln[0];
    memcpy(out, ln + 1, deg * sizeof(uint32_t));
    pthread_mutex_unlock(&h->locks[id]);
    return deg;
}

/* Beam search of width ef at level l from ep; results left in b->sorted,
 * nearest first; returns their count. */
static size_t search_layer(hnsw *h, build_scratch *b, uint32_t q, uint32_t ep, float epd, size_t ef,
                           int l)
{
    visited_next(&b->vis);
    b->cand.n = b->res.n = 0;
    visited_test_set(&b->vis, ep);
    hmin_push(&b->cand, epd, ep);
    hmax_push(&b->res, epd, ep);
    /* as in query search: once ef results are kept, L2 may stop reading a
     * candidate whose partial distance already exceeds the worst of them */
    const dist_bounded_fn bounded = hnsw_l2_space(h) ? dist_best()->l2sq_bounded : NULL;
    /* the first lines of each neighbour; the hardware streams the rest */
    size_t pf_bytes = h->dim * sizeof(float) < 256 ? h->dim * sizeof(float) : 256;
    while (b->cand.n) {
        hnsw_hit c = b->cand.a[0];
        if (b->res.n >= ef && c.d > b->res.a[0].d)
            break;
        hmin_pop(&b->cand);
        uint32_t deg = read_links(h, c.id, l, b->copy);
        /* keep the unvisited neighbours and start fetching them all before
         * the first distance, so their memory latencies overlap */
        uint32_t nt = 0;
        for (uint32_t j = 0; j < deg; j++) {
            uint32_t nb = b->copy[j];
            if (visited_test_set(&b->vis, nb))
                continue;
            b->copy[nt++] = nb;
            const char *v = (const char *)hnsw_vec(h, nb);
            for (size_t a = 0; a < pf_bytes; a += 64)
                __builtin_prefetch(v + a);
        }
        for (uint32_t j = 0; j < nt; j++) {
            uint32_t nb = b->copy[j];
            float d = bounded && b->res.n >= ef ? biased_bounded(h, bounded, q, nb, b->res.a[0].d)
                                                : hnsw_space_dist_nodes(h, q, nb);
            if (b->res.n < ef || d < b->res.a[0].d) {
                hmin_push(&b->cand, d, nb);
                hmax_push(&b->res, d, nb);
                if (b->res.n > ef)
                    hmax_pop(&b->res);
            }
        }
    }
    size_t n = b->res.n;
    for (size_t i = n; i-- > 0;) {
        b->sorted[i] = b->res.a[0];
        hmax_pop(&b->res);
    }
    return n;
}

/* The heuristic over cands (nearest first, distances to the base node);
 * writes at most m ids to out and returns how many. */
static uint32_t select_heuristic(const hnsw *h, const hnsw_hit *cands, size_t n, uint32_t m,
                                 uint32_t *out)
{
    uint32_t kept = 0;
    /* only "closer than cands[i].d?" matters: L2 may stop past that bound */
    const dist_bounded_fn bounded = hnsw_l2_space(h) ? dist_best()->l2sq_bounded : NULL;
    for (size_t i = 0; i < n && kept < m; i++) {
        int good = 1;
        for (uint32_t j = 0; j < kept; j++) {
            float d = bounded ? biased_bounded(h, bounded, cands[i].id, out[j], cands[i].d)
                              : hnsw_space_dist_nodes(h, cands[i].id, out[j]);
            if (d < cands[i].d) {
                good = 0;
                break;
            }
        }
        if (good)
            out[kept++] = cands[i].id;
    }
    return kept;
}

/* Add q to node s's level-l list, pruning with the heuristic when full. */
static void link_back(hnsw *h, build_scratch *b, uint32_t s, uint32_t q, int l)
{
    uint32_t maxdeg = hnsw_maxdeg(h, l);
    pthread_mutex_lock(&h->locks[s]);
    uint32_t *ln = hnsw_links(h, s, l);
    uint32_t deg = ln[0];
    for (uint32_t j = 0; j < deg; j++) {
        if (ln[1 + j] == q) {
            pthread_mutex_unlock(&h->locks[s]);
            return;
        }
    }
    if (deg < maxdeg) {
        ln[1 + deg] = q;
        ln[0] = deg + 1;
    } else {
        for (uint32_t j = 0; j < deg; j++) {
            b->prune[j].id = ln[1 + j];
            b->prune[j].d = hnsw_space_dist_nodes(h, s, ln[1 + j]);
        }
        b->prune[deg].id = q;
        b->prune[deg].d = hnsw_space_dist_nodes(h, s, q);
        hnsw_hit_sort(b->prune, deg + 1);
        /* not b->selected: the caller is iterating over it */
        uint32_t kept = select_heuristic(h, b->prune, deg + 1, maxdeg, b->pruned);
        memcpy(ln + 1, b->pruned, kept * sizeof(uint32_t));
        /* clear dropped slots so a saved and reloaded graph is byte-identical */
        memset(ln + 1 + kept, 0, (deg - kept) * sizeof(uint32_t));
        ln[0] = kept;
    }
    pthread_mutex_unlock(&h->locks[s]);
}

static void insert_node(hnsw *h, build_scratch *b, uint32_t q)
{
    int level = h->levels[q];
    pthread_mutex_lock(&h->entry_lock);
    uint32_t ep = h->entry;
    int maxl = h->max_level;
    if (ep == HNSW_NONE) {
        h->entry = q;
        h->max_level = level;
        pthread_mutex_unlock(&h->entry_lock);
        return;
    }
    int hold = level > maxl;
    if (!hold)
        pthread_mutex_unlock(&h->entry_lock);

    float epd = hnsw_space_dist_nodes(h, q, ep);
    for (int l = maxl; l > level; l--) {
        int changed = 1;
        while (changed) {
            changed = 0;
            uint32_t deg = read_links(h, ep, l, b->copy);
            for (uint32_t j = 0; j < deg; j++) {
                float d = hnsw_space_dist_nodes(h, q, b->copy[j]);
                if (d < epd) {
                    epd = d;
                    ep = b->copy[j];
                    changed = 1;
                }
            }
        }
    }
    for (int l = level < maxl ? level : maxl; l >= 0; l--) {
        size_t n = search_layer(h, b, q, ep, epd, h->p.ef_construction, l);
        uint32_t kept = select_heuristic(h, b->sorted, n, h->p.M, b->selected);
        pthread_mutex_lock(&h->locks[q]);
        uint32_t *ln = hnsw_links(h, q, l);
        memcpy(ln + 1, b->selected, kept * sizeof(uint32_t));
        ln[0] = kept;
        pthread_mutex_unlock(&h->locks[q]);
        for (uint32_t j = 0; j < kept; j++)
            link_back(h, b, b->selected[j], q, l);
        ep = b->sorted[0].id;
        epd = b->sorted[0].d;
    }
    if (hold) {
        h->entry = q;
        h->max_level = level;
        pthread_mutex_unlock(&h->entry_lock);
    }
}

typedef struct build_job {
    hnsw *h;
    atomic_size_t next, done;
    size_t end, total;
    hnsw_progress_fn progress;
    void *arg;
    atomic_int failed;
} build_job;

static void *build_worker(void *arg)
{
    build_job *job = arg;
    build_scratch b;
    if (scratch_init(&b, job->h) != 0) {
        atomic_store(&job->failed, 1);
        scratch_free(&b);
        return NULL;
    }
    size_t step = job->total / 100 + 1;
    for (;;) {
        size_t id = atomic_fetch_add(&job->next, 1);
        if (id >= job->end)
            break;
        insert_node(job->h, &b, (uint32_t)id);
        size_t d = atomic_fetch_add(&job->done, 1) + 1;
        if (job->progress && d % step == 0)
            job->progress(d, job->total, job->arg);
    }
    scratch_free(&b);
    return NULL;
}

int hnsw_build(hnsw *h, size_t first, int threads, hnsw_progress_fn progress, void *arg, hf_err *e)
{
    if (first >= h->n)
        return 0;
    if (threads < 1)
        threads = 1;
    h->locks = malloc(h->n * sizeof(pthread_mutex_t));
    if (!h->locks)
        return hf_err_set(e, HF_ENOMEM, "cannot allocate node locks");
    for (size_t i = 0; i < h->n; i++)
        pthread_mutex_init(&h->locks[i], NULL);
    size_t saved_cap = h->cap;
    h->cap = h->n; /* locks exist for n nodes; hnsw_destroy walks cap */

    build_job job = {.h = h, .end = h->n, .total = h->n - first, .progress = progress, .arg = arg};
    atomic_init(&job.next, first);
    atomic_init(&job.done, 0);
    atomic_init(&job.failed, 0);
    /* The first node alone, so workers always find an entry point. */
    if (h->entry == HNSW_NONE) {
        build_scratch b;
        if (scratch_init(&b, h) != 0) {
            scratch_free(&b);
            atomic_store(&job.failed, 1);
        } else {
            insert_node(h, &b, (uint32_t)first);
            scratch_free(&b);
            atomic_store(&job.next, first + 1);
            atomic_store(&job.done, 1);
        }
    }
    if (!atomic_load(&job.failed)) {
        if (threads == 1) {
            build_worker(&job);
        } else {
            pthread_t *tid = calloc((size_t)threads, sizeof *tid);
            int started = 0;
            for (int t = 0; tid && t < threads; t++)
                if (pthread_create(&tid[t], NULL, build_worker, &job) == 0)
                    started++;
            for (int t = 0; t < started; t++)
                pthread_join(tid[t], NULL);
            if (started == 0)
                build_worker(&job);
            free(tid);
        }
    }
    for (size_t i = 0; i < h->n; i++)
        pthread_mutex_destroy(&h->locks[i]);
    free(h->locks);
    h->locks = NULL;
    h->cap = saved_cap;
    if (atomic_load(&job.failed))
        return hf_err_set(e, HF_ENOMEM, "out of memory for build scratch");
    size_t repaired;
    int rc = hnsw_repair_reachability(h, &repaired, e);
    if (rc)
        return rc;
    if (progress)
        progress(job.total, job.total, arg);
    return 0;
}
