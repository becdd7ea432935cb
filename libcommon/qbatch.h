/*
 * qbatch.h - batch requests: many queries in one ZeroMQ request.
 *
 * A request {t:"queries", qid?, n, vecs: bin f32[n*dim], k?, ef?, filter?,
 * filter_all?, recall?} asks n queries at once, all with the same k, ef and
 * filter; the answer is {t:"results", qid, n, counts: bin u32[n], ids: bin,
 * dists: bin f32[sum counts]}: query i's neighbours are the counts[i] entries
 * after those of queries 0..i-1, nearest first. ids are u32 node numbers, or
 * u64 when the server has external ids (its info says ids: "u64"). One
 * request instead of n saves the per-message cost (system calls, wake-ups)
 * that dominates a small query's round trip through a front end.
 * Schemas: schemas/queries.json, schemas/results.json.
 */
#ifndef HF_QBATCH_H
#define HF_QBATCH_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "frame.h"

/* The most queries one request may carry. */
#define QBATCH_MAX 65536

/* A checked "results" frame: pointers into its bins (unaligned, little-endian). */
typedef struct qbatch_results {
    size_t n, total, idw;
    const unsigned char *counts, *ids, *dists;
} qbatch_results;

/* Check that f is a results frame for n queries with ids of idw bytes (4 or
 * 8), at most k neighbours each, distances sorted within each query. */
int qbatch_results_parse(const frame_in *f, size_t n, size_t idw, size_t k, qbatch_results *r,
                         hf_err *e);

/* Query i's count of neighbours in r (its entries follow those of 0..i-1). */
uint32_t qbatch_count(const qbatch_results *r, size_t i);

/* Begin a results frame in fo with nextra more keys to follow (partial, ...):
 * qid, n, counts (u32[n]), ids (total entries of idw bytes), dists. */
void qbatch_pack_results(frame_out *fo, uint64_t qid, size_t n, const uint32_t *counts,
                         const void *ids, size_t idw, const float *dists, size_t total,
                         uint32_t nextra);

#endif
