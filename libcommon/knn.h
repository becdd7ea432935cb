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

#endif
