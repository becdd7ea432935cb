/*
 * edge.h - learned edge selection for the level-0 HNSW graph (edge-score).
 *
 * The idea: graph-build keeps more level-0 candidates per node than a classic
 * graph would (--M0 48 instead of 32); edge-score decides which of them to
 * keep so that fewer edges carry the same routes. Four modules:
 *
 *   edge_feat.c   the level-0 graph as CSR (each node's list sorted by
 *                 distance, nearest first), per-node statistics (degree,
 *                 in-degree, local density) and per-edge features (distance,
 *                 rank, occlusion by closer neighbours, degrees, density).
 *   edge_label.c  training labels: exact neighbours of training queries
 *                 (knn_exact, OpenBLAS), then beam searches on the graph that
 *                 remember how each node was discovered; the edges on the
 *                 discovery path of every true neighbour, and edges between
 *                 true neighbours, get their usage count raised.
 *   edge_model.c  the model: node inputs (random projection + stats) -> tanh
 *                 Linear -> nn_graph (message passing + attention + GRU) gives
 *                 a context embedding per node; an MLP scores each edge from
 *                 both ends' embeddings and the edge features; a threshold
 *                 MLP gives each node its keep threshold. An edge's keep logit
 *                 is score - threshold(source), trained with binary
 *                 cross-entropy against "the edge carried a route".
 *   edge_prune.c  keep the best edges up to a global budget (every node keeps
 *                 a floor of out-edges and of in-edges), then make every node reachable from the
 *                 entry point at level 0 again (BFS; the best-scored input
 *                 edge into an unreachable node from a reachable one is put
 *                 back), and repeat with a smaller budget until the repaired
 *                 graph fits the budget.
 *
 * Edge ids are CSR positions: node i's edges are off[i] .. off[i+1]-1, in
 * order of distance from i. Everything here is deterministic for a given seed
 * and thread count (per-thread counters are summed in a fixed order).
 * Ownership is CZMQ's: x_new hands the caller an object to x_destroy.
 */
#ifndef HF_EDGE_H
#define HF_EDGE_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "err.h"
#include "hnsw.h"
#include "nn.h"

/* ------------------------------------------------------------ features --- */

enum {
    EF_DIST_I,     /* d(i,j) / density(i) */
    EF_DIST_J,     /* d(i,j) / density(j) */
    EF_RANK,       /* rank of j in i's list / (deg_i - 1) */
    EF_OCCL_FRAC,  /* closer neighbours k of i with d(k,j) < d(i,j), / rank */
    EF_OCCL_LOG,   /* log1p(that count) */
    EF_OCCLUDED,   /* 1 when the count is non-zero (the classic heuristic drops it) */
    EF_OCCL_MIN,   /* min over closer k of d(k,j) / d(i,j), capped at 2 */
    EF_DEG_I,      /* deg_i / M0 */
    EF_DEG_J,      /* deg_j / M0 */
    EF_INDEG_J,    /* in-degree of j / M0 */
    EF_REVERSE,    /* 1 when j links back to i */
    EF_DENS_RATIO, /* log(density(j) / density(i)) */
    EDGE_NFEAT
};

/* Node inputs of the model: EDGE_PROJ random-projection coordinates, then
 * log(1+deg), log(1+indeg), log(density / mean density). */
#define EDGE_PROJ 16
#define EDGE_NODE_IN (EDGE_PROJ + 3)

typedef struct edge_graph {
    size_t n;
    uint32_t m0;     /* the input graph's level-0 degree cap */
    size_t nedges;   /* off[n] */
    uint64_t *off;   /* n + 1 */
    uint32_t *dst;   /* nedges: targets, each node's run nearest first */
    float *dist;     /* nedges: the metric's distance (as search compares) */
    uint32_t *indeg; /* n */
    float *dens;     /* n: mean scale-distance to the node's neighbours (> 0) */
    float *feat;     /* nedges x EDGE_NFEAT */
} edge_graph;

/* Copy h's level-0 lists into CSR, sorted by distance, and compute the node
 * statistics and edge features with `threads` threads. h is not changed. */
int edge_graph_new(const hnsw *h, int threads, edge_graph **out, hf_err *e);
void edge_graph_destroy(edge_graph **self_p);
/* Scale distance used for ratios and for the training noise: the Euclidean
 * length where there is one (sqrt for l2, squared in the index; the chord
 * sqrt(2 d) for cosine and ip, exact for unit vectors), the metric's own
 * distance (l1) otherwise; 0 for d <= 0. */
float edge_scale_dist(metric_t m, float d);
/* Write the kept edges (keep[edge] != 0) back into h's level-0 lists, in CSR
 * order (nearest first). Unused slots are zeroed. */
void edge_graph_apply(const edge_graph *g, const uint8_t *keep, hnsw *h);

/* -------------------------------------------------------------- labels --- */

typedef struct edge_label_cfg {
    size_t k;         /* true neighbours per query (10) */
    size_t ef;        /* beam width of the labelling searches (edge-score: 64) */
    size_t far_every; /* every far_every-th query starts level 0 at an arbitrary node (0: never) */
    int threads;
} edge_label_cfg;

/* Usage counts from nq training queries (row-major, h->dim each): usage[e]
 * (g->nedges) counts the routes edge e carried; expanded[i] (g->n) counts
 * how often node i was expanded (its edges were looked at). Both are
 * caller-allocated and overwritten. When skip_self is set, query q's exact
 * neighbours leave out base id self_ids[q] (a perturbed base vector should
 * not find itself). */
int edge_label(const hnsw *h, const edge_graph *g, const float *queries, size_t nq,
               const uint32_t *self_ids, const edge_label_cfg *cfg, uint32_t *usage,
               uint32_t *expanded, hf_err *e);

/* --------------------------------------------------------------- model --- */

typedef struct edge_model_cfg {
    size_t d_node;     /* node state width (32) */
    size_t d_msg;      /* message / attention width (32) */
    size_t heads;      /* attention heads (4) */
    size_t hidden;     /* edge MLP hidden width (48) */
    size_t thr_hidden; /* threshold MLP hidden width (16) */
    int no_graph;      /* ablation: skip the graph layer, context = first node state */
    uint64_t seed;
} edge_model_cfg;

edge_model_cfg edge_model_defaults(void);

typedef struct edge_model edge_model;

/* A fresh model for dim-dimensional vectors and level-0 degree cap m0. */
int edge_model_new(const edge_model_cfg *cfg, size_t dim, uint32_t m0, edge_model **out, hf_err *e);
void edge_model_destroy(edge_model **self_p);

typedef struct edge_train_cfg {
    size_t epochs;          /* passes (default 8) */
    size_t nodes_per_epoch; /* source nodes sampled per pass (default 4096) */
    size_t batch;           /* source nodes a step (default 128) */
    float lr;               /* Adam learning rate (default 3e-3) */
    int keep_stats;         /* keep the model's standardisation (training from --init) */
    uint64_t seed;
} edge_train_cfg;

edge_train_cfg edge_train_defaults(void);

/* Fit feature normalisation to g, then train on the nodes with expanded > 0
 * against labels usage > 0. *final_loss gets the last epoch's mean loss. */
int edge_model_train(edge_model *m, const hnsw *h, const edge_graph *g, const uint32_t *usage,
                     const uint32_t *expanded, const edge_train_cfg *cfg, float *final_loss,
                     hf_err *e);
/* The same with elastic weight consolidation: when ewc is set (built over
 * edge_model_trainable, e.g. nn_ewc_from with a stored Fisher), every step
 * adds lambda/2 sum F (theta - theta*)^2 to the loss. */
int edge_model_train_ewc(edge_model *m, const hnsw *h, const edge_graph *g, const uint32_t *usage,
                         const uint32_t *expanded, const edge_train_cfg *cfg, const nn_ewc *ewc,
                         float lambda, float *final_loss, hf_err *e);
/* Add the empirical diagonal Fisher of the training loss, over `samples`
 * source nodes drawn (seeded) from those training would sample, to w (over
 * edge_model_trainable), and consolidate it (theta* = the weights now). */
int edge_model_fisher(edge_model *m, const hnsw *h, const edge_graph *g, const uint32_t *usage,
                      const uint32_t *expanded, size_t samples, uint64_t seed, nn_ewc *w,
                      hf_err *e);
/* Keep logits (score - threshold) for every edge of g into logit[nedges]. */
int edge_model_score(edge_model *m, const hnsw *h, const edge_graph *g, float *logit, hf_err *e);
/* Mean BCE and ranking AUC of the model's logits against usage > 0 over the
 * edges of nodes with expanded > 0 (a held-out check). Either may be NULL. */
void edge_eval(const edge_graph *g, const float *logit, const uint32_t *usage,
               const uint32_t *expanded, double *bce, double *auc);

/* Model frame {t:"model", kind:"edge-scorer", v:1, params, dim, m0, d_node,
 * d_msg, heads, hidden, thr_hidden, proj, nfeat}, the memory pairs when
 * present, plus the caller's extra pairs (edge-score: validation)
 * (schemas/edge-model.json). */
#define EDGE_MODEL_KIND "edge-scorer"
int edge_model_pack(edge_model *m, const nn_extra *extra, msgpack_sbuffer *sb, hf_err *e);
int edge_model_unpack(const msgpack_object *obj, edge_model **out, hf_err *e);
/* Parameter list (borrowed) for comparisons in tests. */
const nn_params *edge_model_params(const edge_model *m);
/* The trainable parameters (borrowed), in the order of a stored Fisher. */
const nn_params *edge_model_trainable(const edge_model *m);
/* What the model keeps for continual learning (borrowed; edge-score --ewc,
 * --replay): the Fisher of edge_model_trainable and a reservoir of past
 * training queries in input order, packed as the frame's optional fisher,
 * tasks, replay, replay_seen pairs (nn_memory). */
nn_memory *edge_model_memory(edge_model *m);
size_t edge_model_dim(const edge_model *m);
uint32_t edge_model_m0(const edge_model *m);

/* --------------------------------------------------------------- prune --- */

typedef struct edge_prune_stats {
    size_t kept;        /* edges kept in the end */
    size_t repaired;    /* edges put back for reachability (last round) */
    size_t rounds;      /* selection rounds */
    size_t unreachable; /* nodes still unreachable (also unreachable in the input) */
} edge_prune_stats;

typedef struct edge_prune_cfg {
    uint32_t min_keep; /* every node keeps at least this many out-edges */
    float min_frac;    /* ... and at least ceil(min_frac * deg) of them */
    uint32_t min_in;   /* every node keeps min(min_in, candidate in-degree) in-edges */
    uint32_t protect;  /* a node's `protect` nearest edges are always kept */
    uint32_t max_out;  /* no node keeps more out-edges (0: no cap); repairs may exceed it */
} edge_prune_cfg;

/* Choose keep[nedges] with at most `budget` edges, highest score first (ties:
 * lower edge id), after the floor: each node's `protect` nearest edges, its
 * best max(min_keep, ceil(min_frac * deg)) out-edges and its best
 * min(min_in, in-degree) in-edges (the floor is relaxed, min_frac first,
 * when it alone would exceed the budget); then repair reachability from
 * `entry`. score is any per-edge number (higher = keep). */
int edge_prune(const edge_graph *g, const float *score, size_t budget, const edge_prune_cfg *cfg,
               uint32_t entry, uint8_t *keep, edge_prune_stats *st, hf_err *e);
/* Nodes reachable from entry over the kept edges (keep NULL = all edges);
 * fills reach[n] (1 = reachable) when non-NULL, returns the count. */
size_t edge_reachable(const edge_graph *g, const uint8_t *keep, uint32_t entry, uint8_t *reach);

/* ---------------------------------------------------------- validation --- */

#define EDGE_VAL_MAX_EF 16

/* Held-aside queries with exact neighbours and an ef grid (edge_valid.c). */
typedef struct edge_val edge_val;

/* One measured graph: the budget asked for, the edges kept, recall@k and
 * mean distance computations per ef, and the worst recall loss against the
 * reference (input) graph over the grid. */
typedef struct edge_val_row {
    size_t budget, edges, unreachable;
    double recall[EDGE_VAL_MAX_EF];
    double ndist[EDGE_VAL_MAX_EF];
    double loss;
} edge_val_row;

/* nq queries in stored (dimension-permuted) order, as edge-score samples
 * them; self_ids (or NULL) names each query's own base vector, left out of
 * its true neighbours. Exact k neighbours by knn_exact (OpenBLAS). */
int edge_val_new(const hnsw *h, const float *queries, size_t nq, const uint32_t *self_ids, size_t k,
                 const size_t *ef, size_t nef, int threads, edge_val **out, hf_err *e);
void edge_val_destroy(edge_val **self_p);
size_t edge_val_queries(const edge_val *v);
size_t edge_val_nef(const edge_val *v);
size_t edge_val_ef(const edge_val *v, size_t i);
/* recall[nef] (ann-benchmarks definition, as bench/recall.c) and, when
 * ndist is not NULL, mean distance computations of h as it stands. */
int edge_val_measure(const edge_val *v, const hnsw *h, double *recall, double *ndist, hf_err *e);
/* max over the grid of ref[i] - recall[i] */
double edge_val_loss(const edge_val *v, const double *ref, const double *recall);
/* The smallest budget in [lo, hi] (bisection, `steps` at most) whose pruned
 * graph (edge_prune with pc, then edge_graph_apply into h) loses at most tol
 * against ref at every ef. *found = 0 when even hi loses more; *best then
 * holds hi's row. On return keep and h hold the best (or hi's) mask;
 * *tried counts the graphs measured. */
int edge_val_tune(const edge_val *v, const edge_graph *g, const float *score,
                  const edge_prune_cfg *pc, uint32_t entry, hnsw *h, const double *ref, double tol,
                  size_t lo, size_t hi, int steps, uint8_t *keep, edge_val_row *best, int *found,
                  size_t *tried, hf_err *e);
/* A copy of every level-0 list of h (caller frees), and putting it back. */
int edge_links_save(const hnsw *h, uint32_t **out, hf_err *e);
void edge_links_restore(hnsw *h, const uint32_t *saved);

#endif
