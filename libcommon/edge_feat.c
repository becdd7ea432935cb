/*
 * edge_feat.c - the level-0 graph as CSR with node statistics and edge
 * features (see edge.h for the list).
 *
 * Occlusion is the classic heuristic's test made into numbers: neighbour j of
 * i is occluded by a closer neighbour k when d(k,j) < d(i,j), i.e. a route
 * i -> k -> j exists that never moves away from j. The heuristic drops every
 * occluded edge; here the count and the strongest occluder's ratio are
 * features, so the model can keep an occluded edge that still carries routes
 * (and drop an unoccluded one that does not). Computing it costs deg^2/2
 * distances per node, spread over threads; nothing else here is quadratic.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "edge.h"

float edge_scale_dist(metric_t m, float d)
{
    if (!(d > 0))
        return 0;
    switch (m) {
    case METRIC_L2: return sqrtf(d);
    /* 1 - cos(a,b) = |a - b|^2 / 2 for unit vectors: the chord length
     * sqrt(2 d) is the Euclidean distance, so ratios and the training
     * noise mean the same for cosine as for l2 (d itself is a squared
     * scale: ratios of it are squared ratios, and noise of 0.5 mean
     * neighbour distances was 0.5 * d, a fraction of the chord) */
    case METRIC_COSINE:
    case METRIC_IP: return sqrtf(2.0f * d);
    default: return d;
    }
}

void edge_graph_destroy(edge_graph **self_p)
{
    if (!self_p || !*self_p)
        return;
    edge_graph *g = *self_p;
    free(g->off);
    free(g->dst);
    free(g->dist);
    free(g->indeg);
    free(g->dens);
    free(g->feat);
    free(g);
    *self_p = NULL;
}

typedef struct feat_job {
    const hnsw *h;
    edge_graph *g;
    int t, threads;
    int phase; /* 0: sort + density, 1: features */
} feat_job;

static void sort_node(const hnsw *h, edge_graph *g, uint32_t i, hnsw_hit *tmp)
{
    const uint32_t *ln = hnsw_links0(h, i);
    uint32_t deg = ln[0];
    for (uint32_t j = 0; j < deg; j++) {
        tmp[j].id = ln[1 + j];
        tmp[j].d = hnsw_node_dist(h, i, ln[1 + j]);
    }
    hnsw_hit_sort(tmp, deg);
    uint64_t o = g->off[i];
    double s = 0;
    for (uint32_t j = 0; j < deg; j++) {
        g->dst[o + j] = tmp[j].id;
        g->dist[o + j] = tmp[j].d;
        s += edge_scale_dist(h->p.metric, tmp[j].d);
    }
    g->dens[i] = deg ? (float)(s / deg) : 0.0f;
}

static int links_to(const edge_graph *g, uint32_t from, uint32_t to)
{
    for (uint64_t x = g->off[from]; x < g->off[from + 1]; x++)
        if (g->dst[x] == to)
            return 1;
    return 0;
}

static void feat_node(const hnsw *h, edge_graph *g, uint32_t i)
{
    metric_t m = h->p.metric;
    uint64_t o = g->off[i];
    uint32_t deg = (uint32_t)(g->off[i + 1] - o);
    float m0 = (float)g->m0;
    for (uint32_t r = 0; r < deg; r++) {
        uint32_t j = g->dst[o + r];
        float dij = g->dist[o + r];
        float sij = edge_scale_dist(m, dij);
        uint32_t occl = 0;
        float minratio = 2.0f;
        for (uint32_t k = 0; k < r; k++) {
            float dkj = hnsw_node_dist(h, g->dst[o + k], j);
            if (dkj < dij)
                occl++;
            float ratio = sij > 0 ? edge_scale_dist(m, dkj) / sij : 2.0f;
            if (ratio < minratio)
                minratio = ratio;
        }
        float *f = g->feat + (o + r) * EDGE_NFEAT;
        f[EF_DIST_I] = sij / g->dens[i];
        f[EF_DIST_J] = sij / g->dens[j];
        f[EF_RANK] = deg > 1 ? (float)r / (float)(deg - 1) : 0.0f;
        f[EF_OCCL_FRAC] = r ? (float)occl / (float)r : 0.0f;
        f[EF_OCCL_LOG] = log1pf((float)occl);
        f[EF_OCCLUDED] = occl ? 1.0f : 0.0f;
        f[EF_OCCL_MIN] = minratio;
        f[EF_DEG_I] = (float)deg / m0;
        f[EF_DEG_J] = (float)(g->off[j + 1] - g->off[j]) / m0;
        f[EF_INDEG_J] = (float)g->indeg[j] / m0;
        f[EF_REVERSE] = (float)links_to(g, j, i);
        f[EF_DENS_RATIO] = logf(g->dens[j] / g->dens[i]);
    }
}

static void *feat_worker(void *arg)
{
    feat_job *j = arg;
    hnsw_hit *tmp = malloc((j->g->m0 + 1) * sizeof *tmp);
    if (!tmp)
        return (void *)1;
    for (size_t i = (size_t)j->t; i < j->g->n; i += (size_t)j->threads) {
        if (j->phase == 0)
            sort_node(j->h, j->g, (uint32_t)i, tmp);
        else
            feat_node(j->h, j->g, (uint32_t)i);
    }
    free(tmp);
    return NULL;
}

static int run_phase(const hnsw *h, edge_graph *g, int threads, int phase)
{
    feat_job jobs[64] = {0};
    pthread_t tid[64];
    if (threads < 1)
        threads = 1;
    if (threads > 64)
        threads = 64;
    for (int t = 0; t < threads; t++)
        jobs[t] = (feat_job){h, g, t, threads, phase};
    int started[64] = {0};
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&tid[t], NULL, feat_worker, &jobs[t]) == 0;
    int bad = feat_worker(&jobs[0]) != NULL;
    for (int t = 1; t < threads; t++) {
        void *r = NULL;
        if (started[t])
            pthread_join(tid[t], &r);
        else
            r = feat_worker(&jobs[t]); /* could not start: do its share here */
        bad |= r != NULL;
    }
    return bad ? -1 : 0;
}

int edge_graph_new(const hnsw *h, int threads, edge_graph **out, hf_err *e)
{
    *out = NULL;
    edge_graph *g = calloc(1, sizeof *g);
    if (!g)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    g->n = h->n;
    g->m0 = h->p.M0;
    g->off = malloc((h->n + 1) * sizeof *g->off);
    g->indeg = calloc(h->n ? h->n : 1, sizeof *g->indeg);
    g->dens = calloc(h->n ? h->n : 1, sizeof *g->dens);
    if (!g->off || !g->indeg || !g->dens)
        goto nomem;
    g->off[0] = 0;
    for (size_t i = 0; i < h->n; i++) {
        const uint32_t *ln = hnsw_links0(h, (uint32_t)i);
        for (uint32_t j = 0; j < ln[0]; j++)
            g->indeg[ln[1 + j]]++;
        g->off[i + 1] = g->off[i] + ln[0];
    }
    g->nedges = g->off[h->n];
    size_t ne = g->nedges ? g->nedges : 1;
    g->dst = malloc(ne * sizeof *g->dst);
    g->dist = malloc(ne * sizeof *g->dist);
    g->feat = malloc(ne * EDGE_NFEAT * sizeof *g->feat);
    if (!g->dst || !g->dist || !g->feat)
        goto nomem;
    if (run_phase(h, g, threads, 0))
        goto nomem;
    /* Densities feed ratios: keep them positive even for duplicate points. */
    double s = 0;
    size_t cnt = 0;
    for (size_t i = 0; i < g->n; i++)
        if (g->dens[i] > 0) {
            s += g->dens[i];
            cnt++;
        }
    float floor_d = cnt ? (float)(s / cnt) * 1e-3f : 1.0f;
    if (!(floor_d > 0))
        floor_d = 1e-6f;
    for (size_t i = 0; i < g->n; i++)
        if (!(g->dens[i] >= floor_d))
            g->dens[i] = floor_d;
    if (run_phase(h, g, threads, 1))
        goto nomem;
    *out = g;
    return 0;
nomem:
    edge_graph_destroy(&g);
    return hf_err_set(e, HF_ENOMEM, "out of memory for the edge graph");
}

void edge_graph_apply(const edge_graph *g, const uint8_t *keep, hnsw *h)
{
    for (size_t i = 0; i < g->n; i++) {
        uint32_t *ln = hnsw_links0(h, (uint32_t)i);
        uint32_t d = 0;
        for (uint64_t x = g->off[i]; x < g->off[i + 1]; x++)
            if (keep[x])
                ln[1 + d++] = g->dst[x];
        memset(ln + 1 + d, 0, (h->p.M0 - d) * sizeof(uint32_t));
        ln[0] = d;
    }
}
