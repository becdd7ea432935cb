/*
 * vecstream.h - vector streams over a channel (schemas/header.json,
 * vectors.json, query.json, end.json):
 *   header  {t:"header", schema:"hnswflow.vectors", v:1, dim, dtype:"f32", count}
 *   vectors {t:"vectors", start, n, data: bin f32[n*dim], ids?: bin u64[n],
 *            labels?: bin u32 (per row its count, then its labels; filt.h)}  (1024 rows a frame)
 *   query   {t:"query", qid, vec: bin f32[dim], k?, ef?, filter?: [u32...], filter_all?}
 *   end     {t:"end", count, checksum}
 * The reader checks the header comes first, every row has the header's
 * dimension, values are finite, batches are contiguous, and the end frame's
 * count matches; frames of other types are skipped (models may ride along).
 * A query log (qlog.h, schema "hnswflow.querylog") reads the same way: its
 * query frames are the rows, and it ends at the end of input.
 */
#ifndef HF_VECSTREAM_H
#define HF_VECSTREAM_H

#include "channel.h"
#include "filt.h"

#define VECSTREAM_BATCH 1024
#define VECSTREAM_MAX_DIM_DEFAULT 65536

typedef struct vecstream {
    channel *c;
    size_t dim, max_dim;
    uint64_t count_hint; /* header "count", 0 when unknown */
    uint64_t received;
    int ended;
    float *buf; /* rows of the current batch (owned) */
    size_t buf_rows;
    /* external ids of the current batch when its frame carried "ids" (owned) */
    uint64_t *ids;
    size_t ids_rows;
    int batch_has_ids;
    /* labels bin of the current batch when its frame carried "labels"
     * (checked, owned copy, labels_len bytes) */
    uint32_t *labels;
    size_t labels_len, labels_cap;
    int batch_has_labels;
    /* the "filter" of a "query" frame (req_has_filter 0: none) */
    filt_query req_filter;
    int req_has_filter;
    /* per-request options of a "query" frame, 0 when absent */
    uint64_t req_k, req_ef;
    double req_recall;
    /* a query log (qlog.h): no end frame, the stream ends at end of input */
    int open_ended;
} vecstream;

/* Read the header. max_dim 0 means the default limit. */
int vecstream_open(vecstream *vs, channel *c, size_t max_dim, hf_err *e);
/* Next batch: rows in *data (valid until the next call), *n rows, *first the
 * id (position or qid) of the first row. HF_EOF after a valid end frame. */
int vecstream_next(vecstream *vs, const float **data, size_t *n, uint64_t *first, hf_err *e);
void vecstream_close(vecstream *vs);
/* Every row of the vector stream (or query log) at path, which must have
 * dimension dim: *out (caller frees; NULL when none) gets *n x dim floats.
 * cc: CURVE on a ZeroMQ path (NULL: plain). */
int vecstream_read_all(const char *path, const curve_cfg *cc, size_t dim, size_t max_frame,
                       float **out, size_t *n, hf_err *e);

/* Writing. */
int vecstream_put_header(channel *c, size_t dim, uint64_t count, hf_err *e);
int vecstream_put_batch(channel *c, frame_out *fo, const float *rows, size_t n, size_t dim,
                        uint64_t start, hf_err *e);

/* The same with external ids (ids[n]) in the frame. */
int vecstream_put_batch_ids(channel *c, frame_out *fo, const float *rows, const uint64_t *ids,
                            size_t n, size_t dim, uint64_t start, hf_err *e);

/* Any of ids and a labels bin (labels_len bytes, filt.h's wire form). */
int vecstream_put_batch_full(channel *c, frame_out *fo, const float *rows, const uint64_t *ids,
                             const void *labels, size_t labels_len, size_t n, size_t dim,
                             uint64_t start, hf_err *e);

/* Check that values are finite; on failure e names the row. */
int vec_check_finite(const float *rows, size_t n, size_t dim, uint64_t first, hf_err *e);

#endif
