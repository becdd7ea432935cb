/*
 * knn.h - exact k nearest neighbours by brute force: the ground truth and
 * the flat baseline. Inner products come from OpenBLAS sgemm in blocks of
 * queries x base rows; the best k + KNN_MARGIN by that score are then
 * re-measured with the exact distance kernel, so float round-off in
 * |q|^2 + |b|^2 - 2 q.b cannot reorder the final k. L1 has no product form
 * and uses the kernel directly.
 */
#ifndef HF_KNN_H
#define HF_KNN_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "distance.h"
#include "err.h"

#define KNN_MARGIN 16

typedef struct knn_base {
    const float *rows; /* first row */
    size_t stride;     /* floats between consecutive rows (>= dim) */
    size_t n, dim;
    const uint8_t *skip; /* rows to leave out (tombstones), or NULL */
    metric_t metric;     /* rows already normalised when metric is cosine */
} knn_base;

/* For nq queries (row-major, dim floats each; raw, normalised here for
 * cosine), write k ids and distances per query, nearest first. Slots past
 * the base size get id UINT32_MAX and distance +inf. */
int knn_exact(const knn_base *b, const float *queries, size_t nq, size_t k, uint32_t *ids,
              float *dists, hf_err *e);

/* Recall as ann-benchmarks (and bench/recall.c) counts it: a returned
 * distance d is a hit when knn_recall_scale(d) <= knn_recall_scale(true
 * k-th distance) + KNN_RECALL_EPS (the scale is the root for squared l2). */
#define KNN_RECALL_EPS 1e-3
static inline double knn_recall_scale(metric_t m, float d)
{
    return m == METRIC_L2 ? sqrt(d > 0 ? d : 0) : d;
}

/* The ground truth of training and validation queries: k ids per query
 * (UINT32_MAX past the base size), leaving out row self[q] when self is
 * not NULL (a base vector used as a query is not its own neighbour), and,
 * when kth is not NULL, the k-th distance per query (+inf when fewer).
 * Runs knn_exact in blocks, so scratch stays small for any nq. */
int knn_exact_loo(const knn_base *b, const float *queries, size_t nq, size_t k,
                  const uint32_t *self, uint32_t *ids, float *kth, hf_err *e);

#endif
