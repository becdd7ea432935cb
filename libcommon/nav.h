/*
 * nav.h - the navigation policy: which neighbours a level-0 search measures
 * and when it stops (nav-train trains it, query --nav / --recall use it),
 * and the two non-learned rivals it is judged against.
 *
 * One beam-search loop (nav_search.c) takes two decisions from a policy:
 *
 *   skip   once the beam holds ef results, a neighbour whose exact distance
 *          is not going to beat the worst kept (tau) is not worth reading.
 *          NAV_SKIP_LEARNED scores it with a small MLP over features a hop
 *          has at hand: an r-dimensional PCA projection of the query and of
 *          every node (r = 15 or 31: one or two cache lines per node, built when the policy is
 *          bound to an index, the 16th float the norm of the node's
 *          residual outside the projection),
 *          the parent's exact distance, the neighbour's rank in the parent's
 *          list and the beam's state, all as ratios to tau so the model
 *          carries across data sets. NAV_SKIP_ADSAMPLING is ADSampling
 *          (Gao & Long, SIGMOD 2023): a random rotation of the vectors,
 *          dimensions added in steps of 32 with the hypothesis test
 *          dist * D / d > tau (1 + eps0 / sqrt(d))^2 rejecting early.
 *   stop   NAV_STOP_EF is the classic rule (nearest candidate farther than
 *          the worst of ef). NAV_STOP_LEARNED reads the search state at
 *          every hop once k results are in and predicts the recall@k of the
 *          current top k; the search stops when the prediction reaches the
 *          threshold calibrated for the requested recall (DARTH's declarative
 *          recall). NAV_STOP_ADAPTIVE is the model-free rival (after
 *          Ada-ef): stop when the top k has not changed for `patience` hops
 *          and the nearest candidate is farther than the k-th result.
 *
 * Work is counted honestly in distance computations of the index's
 * dimension (nav_stats.work): exact distances count 1, a projected test
 * r/dim, an ADSampling prefix of d dimensions d/dim, the query's projection
 * r and its rotation dim (a dim x dim product).
 *
 * Vectors are in the index's stored order (dimension-permuted, unit length
 * for cosine). Only l2 and cosine indexes (squared L2 search units) take a
 * policy: the projected estimate is an L2 one.
 */
#ifndef HF_NAV_H
#define HF_NAV_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "err.h"
#include "hnsw.h"
#include "nn.h"

#define NAV_MODEL_KIND "nav-policy"
#define NAV_R_MAX 63 /* projected coordinates per node, at most */
#define NAV_SKIP_F 8 /* skip-model features */
#define NAV_STOP_F 8 /* stop-model features */
#define NAV_HIDDEN 8 /* hidden width of both MLPs: the skip model runs per neighbour */
#define NAV_MAX_CAL 32

typedef enum { NAV_SKIP_NONE, NAV_SKIP_LEARNED, NAV_SKIP_ADSAMPLING } nav_skip_kind;
typedef enum { NAV_STOP_EF, NAV_STOP_LEARNED, NAV_STOP_ADAPTIVE } nav_stop_kind;

/* A two-layer MLP F -> NAV_HIDDEN (ReLU) -> 1 logit, in the kit's layers
 * for training and as flat arrays for the search loop. */
typedef struct nav_mlp {
    size_t f;
    nn_seq *seq;
    float w1[8 * NAV_HIDDEN]; /* input-major: w1[i * NAV_HIDDEN + j] is input i to unit j */
    float b1[NAV_HIDDEN], w2[NAV_HIDDEN], b2;
} nav_mlp;

typedef struct nav_policy {
    size_t dim;
    metric_t metric;
    size_t n;            /* nodes of the index it was trained on */
    double fingerprint;  /* nav_fingerprint of that index */
    size_t r;            /* projected coordinates (nav_default_r) */
    size_t row;          /* floats per node row: r coordinates + residual, 64-byte multiple */
    nn_tensor *mu, *P;   /* 1 x dim mean, r x dim PCA directions */
    nn_tensor *gmu, *gP; /* their (unused) gradients: the kit lists params with grads */
    nav_mlp skip, stop;
    nn_params params; /* skip then stop, borrowed */
    float skip_logit; /* measure a neighbour when its skip logit >= this */
    float dscale;     /* mean k-th search-unit distance of the training queries */
    size_t ef_max;    /* beam width a --recall search runs with */
    size_t ncal;      /* calibration: requested recall -> beam and stop threshold */
    float cal_r[NAV_MAX_CAL], cal_p[NAV_MAX_CAL];
    uint32_t cal_ef[NAV_MAX_CAL];
    int ppo;      /* the skip model was refined by PPO */
    int fallback; /* validation found no gain: query --nav searches classically */
    /* bound to an index (nav_bind): n x row floats, 64-byte aligned,
     * and P mu (the query's projection is P q - P mu, by the dot kernel) */
    float *rows;
    float pmu[NAV_R_MAX];
    size_t rows_n;
    /* continual learning (nn.h's nn_memory): the summed Fisher, one value
     * per skip then stop MLP weight, and past training queries (input order) */
    nn_memory mem;
} nav_policy;

/* An untrained policy for dim-dimensional vectors with an r-dimensional
 * projection (random MLP weights from seed, zero projection). The caller
 * owns *out (nav_destroy). */
int nav_new(size_t dim, metric_t metric, size_t r, uint64_t seed, nav_policy **out, hf_err *e);
/* The projection width for a dimension: 31 (two cache lines a node) from
 * 256 dimensions up, where a 784-float vector costs 49 lines and the finer
 * estimate pays; 15 (one line) below, where a test must stay far cheaper
 * than the distance it saves. Chosen on fashion-mnist, fmnist-proj256 and
 * the clustered set; the text set is the check. */
size_t nav_default_r(size_t dim);
void nav_destroy(nav_policy **self_p);
/* Refresh the flat copies of the MLPs after their tensors changed. */
void nav_sync(nav_policy *p);
/* Order-independent sum over the stored vectors (n, dimension and every
 * value weighted by its position): a policy from another index is refused. */
double nav_fingerprint(const hnsw *h);
/* PCA of at most `sample` stored vectors into mu and P; records dim,
 * metric, n and the fingerprint of h. */
int nav_init_pca(nav_policy *p, const hnsw *h, size_t sample, uint64_t seed, hf_err *e);
/* Check p against h (dimension, metric, fingerprint) and build the node
 * rows in h's numbering. */
int nav_bind(nav_policy *p, const hnsw *h, hf_err *e);

/* ADSampling's rotated copy of an index's vectors (nav_adsamp_new builds
 * it: a seeded random orthogonal matrix, by Gram-Schmidt). */
typedef struct nav_adsamp {
    size_t dim;
    float *rot;  /* dim x dim, row-major */
    float *vecs; /* n x dim rotated stored vectors, 64-byte aligned */
    float eps0;
} nav_adsamp;
int nav_adsamp_new(const hnsw *h, float eps0, uint64_t seed, nav_adsamp **out, hf_err *e);
void nav_adsamp_destroy(nav_adsamp **self_p);

/* What one search does. */
typedef struct nav_cfg {
    nav_skip_kind skip;
    nav_stop_kind stop;
    float stop_p;      /* NAV_STOP_LEARNED: stop at predicted recall >= this */
    uint32_t patience; /* NAV_STOP_ADAPTIVE */
} nav_cfg;

typedef struct nav_stats {
    double work;      /* distance computations, fractional parts included */
    uint64_t ndist;   /* exact distances (all levels) */
    uint64_t skipped; /* neighbours the skip test rejected */
    uint64_t hops;    /* nodes expanded on all levels */
    uint64_t hops0;   /* ... on level 0 */
    uint64_t ndist_upper;
} nav_stats;

/* Per-thread scratch (the caller owns it: nav_searcher_destroy). */
typedef struct nav_searcher nav_searcher;
int nav_searcher_new(const hnsw *h, size_t max_ef, nav_searcher **out, hf_err *e);
void nav_searcher_destroy(nav_searcher **self_p);
/* A node the search never measures (leave-one-out queries); HNSW_NONE: none. */
void nav_searcher_exclude(nav_searcher *s, uint32_t id);
/* Where the next searches descend from: node entry on level `level` (a
 * router's choice; level 0: the level-0 search starts there). The
 * searcher starts with the index's entry point and top level. */
void nav_searcher_entry(nav_searcher *s, uint32_t entry, int level);

/* One query in input order (as hnsw_search takes it): k results into out
 * (caller's ids and metric distances, nearest first). p may be NULL when
 * cfg asks for nothing learned; ad must be set for NAV_SKIP_ADSAMPLING. */
int nav_search(const hnsw *h, const nav_policy *p, const nav_adsamp *ad, nav_searcher *s,
               const nav_cfg *cfg, const float *q, size_t k, size_t ef, hnsw_hit *out, size_t *nout,
               nav_stats *st);

/* Training samples a search can record (nav_search_record). Per skip
 * decision (beam full): the features, whether the neighbour's exact
 * distance entered the beam (y), the action taken (1 measured) and its
 * probability under the policy that took it (explore: sampled), the step's
 * reward (minus its work) and the query it belongs to; the last decision of
 * a query also carries its terminal penalty. Per hop once k results are in:
 * the stop features and the recall@k of the current top k (stop_y). */
typedef struct nav_trace {
    float *skip_x;
    float *skip_y, *skip_a, *skip_pa, *skip_r;
    uint32_t *skip_ep;
    size_t nskip, skip_cap;
    float *stop_x, *stop_y;
    size_t nstop, stop_cap;
    int full; /* a buffer filled up: later samples were dropped */
} nav_trace;
int nav_trace_init(nav_trace *t, size_t skip_cap, size_t stop_cap, hf_err *e);
void nav_trace_free(nav_trace *t);
/* nav_search that records into tr. thr is the query's hit threshold
 * (knn_recall_scale of the true k-th distance + KNN_RECALL_EPS), ep its
 * number; explore (may be NULL) samples the skip decisions from the
 * policy's probabilities. */
int nav_search_record(const hnsw *h, const nav_policy *p, nav_searcher *s, const nav_cfg *cfg,
                      const float *q, size_t k, size_t ef, double thr, uint32_t ep, nn_rng *explore,
                      nav_trace *tr, hnsw_hit *out, size_t *nout, nav_stats *st);

/* Requested recall -> stop threshold and beam width: those of the first
 * calibration point at or above it (the last one beyond). */
float nav_stop_threshold(const nav_policy *p, double recall, size_t *ef);

/* ---- training and validation (nav_train.c) ---- */

struct route_qset;
/* recall@k (ann-benchmarks), mean work and mean hops of nav_search over a
 * query set (leave-one-out base vectors), threads over queries. */
int nav_eval(const hnsw *h, const nav_policy *p, const nav_adsamp *ad, const struct route_qset *qs,
             const nav_cfg *cfg, size_t ef, int threads, double *recall, double *work, double *hops,
             hf_err *e);
/* Recorded searches of every query of qs, the i-th at efs[i % nef]
 * (explore: NULL, or sampled skip decisions). With explore each query's
 * last skip sample also carries miss_cost per true neighbour missed. */
int nav_collect(const hnsw *h, const nav_policy *p, const struct route_qset *qs, const nav_cfg *cfg,
                const size_t *efs, size_t nef, nn_rng *explore, double miss_cost, nav_trace *tr,
                hf_err *e);
/* Fit an MLP's logit to targets y in [0, 1] (BCE), sample weights w (NULL:
 * 1), Adam, minibatches of 256; *loss gets the last epoch's mean. */
int nav_fit(nav_mlp *m, const float *x, const float *y, const float *w, size_t n, size_t epochs,
            float lr, uint64_t seed, float *loss, hf_err *e);
/* The same with an EWC penalty (ewc built by nav_ewc_new on m, lambda). */
int nav_fit_ewc(nav_mlp *m, const float *x, const float *y, const float *w, size_t n, size_t epochs,
                float lr, uint64_t seed, const nn_ewc *ewc, float lambda, float *loss, hf_err *e);

/* ---- continual learning (nav_memory.c) ---- */

#define NAV_FISHER_SAMPLES 4096
size_t nav_mlp_scalars(const nav_mlp *m);
/* The MLP's logit from its flat copy (nav_sync first; nav_search.c, the
 * search loop's own evaluation). */
float nav_mlp_logit(const nav_mlp *m, const float *x);
/* EWC over m's weights; fisher (nav_mlp_scalars(m) values, may be NULL) is
 * the previous tasks', with theta* = m's weights now. */
int nav_ewc_new(nav_mlp *m, const float *fisher, nn_ewc **out, hf_err *e);
/* Add the empirical Fisher of m on n samples (at most NAV_FISHER_SAMPLES,
 * drawn with seed) to w, and make m's weights its theta*. */
int nav_fisher_add(nav_mlp *m, nn_ewc *w, const float *x, const float *y, size_t n, uint64_t seed,
                   hf_err *e);

/* PPO on the skip decisions (clipped objective, GAE with a value network
 * over the same features): iters rounds of collect-then-update on qs.
 * reward[0] and reward[1] get the mean episode reward of the first and the
 * last round. */
typedef struct nav_ppo_cfg {
    size_t iters, epochs;
    float lr, clip, lambda, miss_cost;
    const size_t *efs;
    size_t nef;
    uint64_t seed;
} nav_ppo_cfg;
int nav_ppo(nav_policy *p, const hnsw *h, const struct route_qset *qs, const nav_ppo_cfg *c,
            double reward[2], hf_err *e);
/* Mean over the points of a curve (recall r[i], work w[i]) of its work
 * divided by the classic curve's (rc, wc, increasing ef) interpolated at
 * the same recall; points outside the classic curve's recall range are
 * left out. NAN when none is inside. */
double nav_work_ratio(const double *rc, const double *wc, size_t nc, const double *r,
                      const double *w, size_t n);

/* Model frame {t:"model", kind:"nav-policy", v:1, dim, r, metric (number),
 * n, fingerprint, skip_logit, dscale, ef_max, ppo, fallback, cal_r, cal_p, cal_ef,
 * params:[mu, P, skip.*, stop.*]} plus the caller's extra pairs
 * (schemas/nav-policy.json). */
int nav_pack(const nav_policy *p, const nn_extra *extra, msgpack_sbuffer *sb, hf_err *e);
int nav_unpack(const msgpack_object *obj, nav_policy **out, hf_err *e);
int nav_is_frame(const msgpack_object *obj);

#endif
