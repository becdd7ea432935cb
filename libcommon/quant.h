/*
 * quant.h - compressed vector codes for traversal (graph-build --compress).
 *
 * Kinds and their codes, for dimension d:
 *   f16     d half floats (2d bytes); distances in f32 after conversion.
 *   int8    d unsigned bytes, one global affine scale (lo, step) fitted on
 *           the data: x ~ lo + step * code. Symmetric integer distances, so
 *           data that already is 8-bit (MNIST pixels) is coded exactly.
 *   pq8     m = d/2 sub-spaces of 2 dims, 256 centroids each (k-means); m
 *           bytes (4 bits a dimension); asymmetric distances from a per-query
 *           lookup table. 2-dim sub-spaces rank neighbours far better than
 *           4-dim ones at twice the code size (measured on the clustered set).
 *   pq4     as pq8 with 16 centroids, two codes per byte; m/2 bytes.
 *   binary  one bit per dimension (value above the dimension's mean); Hamming
 *           distance. Only an ordering hint: re-ranking does the real work.
 * Codes rank candidates during traversal; the final k are re-ranked with
 * exact f32 distances (hnsw_search_codes), so recall is recovered by --rerank.
 *
 * Ownership: quant_new/quant_train create a quantizer the caller owns
 * (quant_destroy). A quant_query is per-thread scratch tied to one quantizer.
 */
#ifndef HF_QUANT_H
#define HF_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "distance.h"
#include "err.h"
#include "frame.h"

typedef enum {
    QUANT_NONE = 0,
    QUANT_F16,
    QUANT_INT8,
    QUANT_PQ8,
    QUANT_PQ4,
    QUANT_BINARY
} quant_kind;

typedef struct quant {
    quant_kind kind;
    metric_t metric;
    size_t dim, code_bytes;
    /* int8 */
    float lo, step;
    /* pq */
    size_t m, dsub, ksub; /* sub-spaces, dims per sub-space (padded), centroids */
    float *centroids;     /* m * ksub * dsub */
    /* binary */
    float *mean; /* dim */
} quant;

typedef struct quant_query quant_query;
typedef float (*quant_dist_fn)(const quant_query *qq, const uint8_t *code);

struct quant_query {
    const quant *q;
    quant_dist_fn dist; /* chosen once for the kind, metric and CPU */
    float (*kern)(const float *qf, const uint8_t *code, size_t n);
    /* int8 L2 on a CPU with AVX-512BW: integer distance between the query
     * rounded to code units (qcode) and a code; NULL elsewhere */
    uint32_t (*kern_u8)(const uint8_t *a, const uint8_t *b, size_t n);
    uint32_t (*kern_u8_bounded)(const uint8_t *a, const uint8_t *b, size_t n, uint32_t bound);
    /* distance that may stop early once it exceeds bound (returning some
     * value > bound); NULL for kinds without one */
    float (*dist_bounded)(const quant_query *qq, const uint8_t *code, float bound);
    float bias;     /* per-query constant term (int8 inner product) */
    int exact;      /* int8 L2: qcode is the query itself, not a rounding */
    float *qf;      /* query as float (f16 path) */
    uint8_t *qcode; /* int8 / binary code of the query */
    float *table;   /* pq: m * ksub partial distances */
};

int quant_parse(const char *name, quant_kind *out, hf_err *e);
const char *quant_name(quant_kind k);

/* Fit a quantizer of kind on n sample rows (row stride in floats). */
int quant_train(quant_kind kind, metric_t metric, size_t dim, const float *rows, size_t stride,
                size_t n, uint64_t seed, quant **out, hf_err *e);
void quant_destroy(quant **q);
void quant_encode(const quant *q, const float *vec, uint8_t *code);

int quant_query_new(const quant *q, quant_query **out, hf_err *e);
void quant_query_destroy(quant_query **qq);
/* Prepare for a query vector (already normalised for cosine). */
void quant_query_set(quant_query *qq, const float *vec);
/* Approximate distance from the prepared query to a code (smaller is closer). */
static inline float quant_distance(const quant_query *qq, const uint8_t *code)
{
    return qq->dist(qq, code);
}

/* The quantizer as a frame {t:"codebook", kind, metric, dim, code_bytes,
 * lo, step, m, dsub, ksub, centroids: bin f32, mean: bin f32}. */
void quant_pack(const quant *q, frame_out *fo);
int quant_unpack(const frame_in *f, quant **out, hf_err *e);

#endif
