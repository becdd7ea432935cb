/*
 * distance.h - distance kernels and metrics.
 *
 * Three primitive kernels (squared L2, dot product, L1) exist in scalar,
 * AVX2+FMA and AVX-512 versions; the fastest one the running CPU supports is
 * picked once (the only process-wide table, set on first use) so one binary
 * runs on every x86-64 machine. Metrics are built on the primitives:
 *   l2      squared Euclidean distance
 *   ip      1 - <a,b>                  (smaller is closer, as in hnswlib)
 *   cosine  1 - <a,b> / (|a| |b|)
 *   l1      sum |a_i - b_i|
 * The index stores cosine vectors normalised and searches them with ip,
 * which gives the same order and values.
 */
#ifndef HF_DISTANCE_H
#define HF_DISTANCE_H

#include <stddef.h>

#include "err.h"

typedef enum { METRIC_L2 = 0, METRIC_IP, METRIC_COSINE, METRIC_L1 } metric_t;

typedef float (*dist_fn)(const float *a, const float *b, size_t n);
/* Squared L2 that may stop early: once a prefix of the sum exceeds bound
 * the result is some value > bound (not the full distance). Exact when the
 * full distance is <= bound. Search uses it to drop candidates that cannot
 * enter the result set without reading the rest of their vector. */
typedef float (*dist_bounded_fn)(const float *a, const float *b, size_t n, float bound);

typedef struct dist_kernels {
    const char *isa; /* "scalar", "avx2", "avx512" */
    dist_fn l2sq;
    dist_fn dot;
    dist_fn l1;
    dist_bounded_fn l2sq_bounded;
} dist_kernels;

/* The kernels chosen for this CPU (set once, thread-safe). */
const dist_kernels *dist_best(void);
/* A specific ISA's kernels, or NULL when the CPU lacks it (for tests and
 * benchmarks). isa is "scalar", "avx2" or "avx512". */
const dist_kernels *dist_isa(const char *isa);

int metric_parse(const char *name, metric_t *out, hf_err *e);
const char *metric_name(metric_t m);

/* The kernel the index uses for metric m on stored (for cosine: normalised)
 * vectors; combine with dist_finish. */
dist_fn metric_kernel(metric_t m);
/* Turn a kernel value into the metric's distance (ip/cosine: 1 - dot). */
static inline float dist_finish(metric_t m, float raw)
{
    return (m == METRIC_IP || m == METRIC_COSINE) ? 1.0f - raw : raw;
}
/* Exact distance between raw (not normalised) vectors for metric m. */
float metric_distance(metric_t m, const float *a, const float *b, size_t n);
/* Normalise v to unit length in place; zero vectors stay zero. */
void vec_normalize(float *v, size_t n);

/* Per-ISA entry points (defined in distance_*.c). */
float dist_l2sq_scalar(const float *a, const float *b, size_t n);
float dist_dot_scalar(const float *a, const float *b, size_t n);
float dist_l1_scalar(const float *a, const float *b, size_t n);
float dist_l2sq_avx2(const float *a, const float *b, size_t n);
float dist_dot_avx2(const float *a, const float *b, size_t n);
float dist_l1_avx2(const float *a, const float *b, size_t n);
float dist_l2sq_avx512(const float *a, const float *b, size_t n);
float dist_l2sq_bounded_scalar(const float *a, const float *b, size_t n, float bound);
float dist_l2sq_bounded_avx2(const float *a, const float *b, size_t n, float bound);
float dist_l2sq_bounded_avx512(const float *a, const float *b, size_t n, float bound);
float dist_dot_avx512(const float *a, const float *b, size_t n);
float dist_l1_avx512(const float *a, const float *b, size_t n);

#endif
