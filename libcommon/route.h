/*
 * route.h - the layer router: where a query enters the graph (layer-route
 * trains it, query --route uses it).
 *
 * The router holds C candidate entry nodes (medoids of k-means clusters of
 * the base vectors) and one more key that stands for the classic greedy
 * descent from the global entry point through every upper level. A query is
 * encoded by one linear map z = W (q - mu) into r dimensions (r << dim); each
 * key c has a learned embedding K_c and bias b_c; the router enters at the
 * key with the largest attention logit z . K_c + b_c: level 0 at that
 * candidate, or the classic descent for the last key. Every cost is counted:
 * the encoder is r * dim multiply-adds and the logits (C + 1) * r, which is
 * (r * dim + (C + 1) * r) / dim distance computations of the index's
 * dimension (route_cost), added to the query's count.
 *
 * The logits are single-head dot-product attention scores over the key
 * embeddings; the kit's nn_attn returns attended values, not the weights over
 * keys that a pointer to an entry needs, so the scores are computed here.
 * Initialised from PCA (W = the top r principal directions, K_c = W (m_c -
 * mu), b_c = -|K_c|^2 / 2) the router picks the candidate nearest to the
 * query in the projected space: a non-learned router, which training then
 * moves towards entries that measured cheaper searches.
 *
 * Vectors here are in the index's stored (dimension-permuted, normalised for
 * cosine) order. Candidate ids are the index's ids as saved; route_bind maps
 * them to a renumbered graph's (query renumbers breadth-first at load).
 */
#ifndef HF_ROUTE_H
#define HF_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "err.h"
#include "hnsw.h"
#include "nn.h"

#define ROUTE_MODEL_KIND "layer-router"
#define ROUTE_MAX_CAND 65536

typedef struct route_model {
    size_t dim, r, C;
    uint32_t *cand;     /* C candidate ids, as saved */
    uint32_t *cand_int; /* C ids in the bound graph (route_bind) */
    uint32_t medoid;    /* index into cand of the candidate nearest mu (flat entry) */
    float *wmu;         /* r: W mu, refreshed whenever W or mu change */
    nn_tensor *mu, *W, *K, *b;
    nn_tensor *gW, *gK, *gb, *gmu;
    nn_params params;
    int fallback;    /* validation found no gain: query --route searches classically */
    uint32_t rerank; /* routing measures the exact distance to this many
                      * candidates of highest logit and enters at the nearest
                      * (1: the highest alone); at most ROUTE_MAX_RERANK */
    nn_memory mem;   /* the Fisher of W, K, b and past training queries (stored order) */
} route_model;

/* Zero-initialised router for dim-dimensional vectors, r-dim codes, C
 * candidates (ids copied). The caller owns *out (route_destroy). */
int route_new(size_t dim, size_t r, size_t C, const uint32_t *cand, route_model **out, hf_err *e);
void route_destroy(route_model **self_p);
/* An independent copy of m, bound as m is (*out owned by the caller). */
int route_copy(const route_model *m, route_model **out, hf_err *e);
/* Up to `want` distinct live node ids other than `exclude` (HNSW_NONE:
 * none), a seeded random sample without replacement; the caller frees the
 * array (h->n entries), *got is how many lead it. NULL when out of memory. */
uint32_t *route_sample_ids(const hnsw *h, size_t want, uint64_t seed, uint32_t exclude,
                           size_t *got);
#define ROUTE_MAX_RERANK 16
/* Distance computations (of the index's dimension) one routing costs
 * (the code, the logits, and the exact distances of m->rerank > 1). */
double route_cost(const route_model *m);
/* Candidates: C medoids of k-means (iters Lloyd rounds on at most `sample`
 * stored vectors, assignment by knn_exact), distinct, never a deleted node.
 * *out (caller frees) gets *nc <= C ids. */
int route_pick_candidates(const hnsw *h, size_t C, size_t sample, int iters, uint64_t seed,
                          uint32_t **out, size_t *nc, hf_err *e);
/* PCA initialisation from at most `sample` stored vectors (see above). */
int route_init_pca(route_model *m, const hnsw *h, size_t sample, uint64_t seed, hf_err *e);
/* Key for a stored-order query: 0..C-1 a candidate, C the classic descent.
 * z is r floats of scratch. */
size_t route_pick(const route_model *m, const float *q, float *z);
/* The routing query --route does: route_pick, or with m->rerank > 1 the
 * nearest by exact distance of the m->rerank candidates of highest logit
 * (the classic key, C, when it leads them). */
size_t route_pick_rerank(const route_model *m, const hnsw *h, const float *q, float *z);
/* Exact nearest candidate (index into cand) of a stored-order query; the
 * baseline router (C distance computations). */
size_t route_nearest(const route_model *m, const hnsw *h, const float *q);
/* Train W, K, b with Adam on nq stored-order queries: softmax
 * cross-entropy over the C + 1 keys against soft targets, each query's tried
 * keys weighted by exp(-(cost - cheapest) / tau) (nt keys a query, as
 * route_label writes them). Many entries cost about the same; a hard label
 * would make the router chase noise between them. */
int route_train(route_model *m, const float *q, size_t nq, const uint32_t *keys, const float *costs,
                size_t nt, float tau, size_t epochs, float lr, uint64_t seed, float *final_loss,
                hf_err *e);
/* The same with an EWC penalty over W, K, b (ewc built on route_trainable). */
int route_train_ewc(route_model *m, const float *q, size_t nq, const uint32_t *keys,
                    const float *costs, size_t nt, float tau, size_t epochs, float lr,
                    uint64_t seed, const nn_ewc *ewc, float lambda, float *final_loss, hf_err *e);
/* The trainable parameters W, K, b (borrowed; nn_params_free tp after). */
int route_trainable(route_model *m, nn_params *tp, hf_err *e);
static inline size_t route_trainable_count(const route_model *m)
{
    return m->r * m->dim + (m->C + 1) * m->r + (m->C + 1);
}
/* Add the empirical Fisher of the cross-entropy on (at most
 * ROUTE_FISHER_SAMPLES of) the queries to w, theta* = the weights now. */
#define ROUTE_FISHER_SAMPLES 4096
int route_fisher(route_model *m, const float *q, size_t nq, const uint32_t *keys,
                 const float *costs, size_t nt, float tau, uint64_t seed, nn_ewc *w, hf_err *e);
/* Check the candidates against h (ids in range, not deleted, dimension) and
 * map them into h's numbering (h->ext_id after a renumbering). */
int route_bind(route_model *m, const hnsw *h, hf_err *e);

/* How a query enters the graph: the classic descent, level 0 at the
 * medoid candidate (flat), at the exactly nearest candidate, or where the
 * router says. */
typedef enum { ROUTE_CLASSIC, ROUTE_FLAT, ROUTE_NEAREST, ROUTE_LEARNED } route_mode;

/* Entry node (bound numbering) and start level for a stored-order query;
 * *cost gets the distance computations the choice itself took (router or
 * candidate distances). z is r floats of scratch. */
void route_entry(const route_model *m, const hnsw *h, route_mode mode, const float *q, float *z,
                 uint32_t *entry, int *level, double *cost);

/* ---- training labels and validation (route_eval.c) ---- */

/* Base vectors used as queries, leave-one-out: searched for as if their node
 * were not in the graph, their node left out of their true neighbours. */
typedef struct route_qset {
    size_t n, k;
    float *stored; /* n x dim, stored order (the router's input) */
    float *raw;    /* n x dim, input order (hnsw_search's input) */
    uint32_t *self;
    uint32_t *truth; /* n x k exact neighbours */
    double *thr;     /* n: ann-benchmarks hit threshold (k-th distance + 1e-3) */
} route_qset;

int route_qset_new(const hnsw *h, const uint32_t *ids, size_t n, size_t k, route_qset **out,
                   hf_err *e);
/* Queries from vectors (n x dim, input order; not base vectors: nothing
 * left out), with their exact neighbours. */
int route_qset_from_vectors(const hnsw *h, const float *raw, size_t n, size_t k, route_qset **out,
                            hf_err *e);
void route_qset_destroy(route_qset **self_p);
/* Training and validation queries of the learned parts (nav-train,
 * layer-route), k neighbours each. From n rows (input order): the last
 * *nval (at most a quarter of n) validate, at most *nq (SIZE_MAX: all) of
 * the rest, from the first, train. From the base vectors, leave-one-out:
 * *nq + *nval drawn with seed, a quarter validating when the index has
 * fewer. *nq and *nval get the counts used; *tq is NULL when none train. */
int route_qsets_split(const hnsw *h, const float *rows, size_t n, size_t *nq, size_t *nval,
                      size_t k, route_qset **tq, route_qset **vq, hf_err *e);
int route_qsets_loo(const hnsw *h, size_t *nq, size_t *nval, uint64_t seed, size_t k,
                    route_qset **tq, route_qset **vq, hf_err *e);
/* Replayed past queries (--replay): those of file (a vector stream or
 * query log) when given, else the first n of mem's reservoir; *out is NULL
 * when there are none. */
int route_qset_replay(const hnsw *h, const nn_memory *mem, size_t n, const char *file,
                      size_t max_frame, size_t k, route_qset **out, hf_err *e);
/* For each query: level-0 searches (ef) from its `top` exactly nearest
 * candidates and the classic descent, each costed as distance computations
 * + miss_cost per true neighbour missed. keys and costs are nq x (top + 1):
 * the keys tried (UINT32_MAX past the end) and their costs; label[q] is the
 * cheapest key (ties: the classic descent). */
int route_label(const route_model *m, const hnsw *h, const route_qset *qs, size_t ef, size_t top,
                double miss_cost, int threads, uint32_t *keys, float *costs, uint32_t *label,
                hf_err *e);
/* recall@k, mean distance computations (routing included) and mean of them
 * above level 0, of searches at ef entering by mode (m may be NULL for
 * ROUTE_CLASSIC). Exactly what query --route / --entry does. */
int route_eval(const route_model *m, const hnsw *h, const route_qset *qs, route_mode mode,
               size_t ef, int threads, double *recall, double *cost, double *upper, hf_err *e);

/* Model frame {t:"model", kind:"layer-router", v:1, dim, r, ncand, medoid,
 * fallback, candidates: bin u32[C], params:[mu, W, K, b]} plus the caller's
 * extra pairs (validation) (schemas/layer-router.json). */
int route_pack(const route_model *m, const nn_extra *extra, msgpack_sbuffer *sb, hf_err *e);
int route_unpack(const msgpack_object *obj, route_model **out, hf_err *e);
/* 1 when a model frame's kind is layer-router. */
int route_is_frame(const msgpack_object *obj);

#endif
