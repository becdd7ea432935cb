/*
 * hnsw_io.h - an index as a frame stream (schemas/index-*.json):
 *   header  {t:"header", schema:"hnswflow.index", v:1, dim, metric, dtype:"f32",
 *            count, M, M0, ef_construction, seed, entry, max_level}
 *   vectors {t:"vectors", start, n, data: bin f32[n*dim], levels: bin u8[n]}
 *   perm    {t:"perm", order: bin u32[dim]}      (in memory, dimension i is input dimension
 *                                                    order[i]; vectors frames keep input order)
 *   links   {t:"links", level, nodes: bin u32[n], deg: bin u32[n], ids: bin u32[sum deg]}
 *   deleted {t:"deleted", ids: bin u32[]}              (only when there are tombstones)
 *   codebook, codes                                    (only with compressed codes, quant.h)
 *   rows    {t:"rows", v:1, dpad, rot: bin f32[dpad*dpad]}  (the speed layout's rotation;
 *                                                    rows are rebuilt from it, hnsw_rows.c)
 *   ...any other frames (models), passed through in order...
 *   end     {t:"end", count, checksum}
 * The loader trusts nothing: every id, degree, level and size is checked, and
 * memory grows with the frames actually received, not with header claims.
 */
#ifndef HF_HNSW_IO_H
#define HF_HNSW_IO_H

#include "channel.h"
#include "frame_keep.h"
#include "hnsw.h"

/* Write header, vectors, links and tombstones; the caller may add model
 * frames and must then call channel_send_end(c, h->n). */
int hnsw_save_body(const hnsw *h, channel *c, hf_err *e);
/* A learned filter's output: h's body, the model frame packed in fo->sb,
 * the frames kept from the input (sent and freed), the end frame; then
 * commits c (an atomic file is renamed into place). */
int hnsw_save_with_model(const hnsw *h, channel *c, frame_out *fo, frame_keep *keep, hf_err *e);

/* Called for frames the loader does not consume (models); f is valid only
 * during the call. Return non-zero to abort the load with that code. */
typedef int (*hnsw_other_fn)(const frame_in *f, void *arg, hf_err *e);

/* Read an index stream from c up to and including its end frame. The caller
 * owns *out. On error *out is NULL and e names the frame. */
int hnsw_load(channel *c, hnsw **out, hnsw_other_fn other, void *arg, hf_err *e);
/* The same, refusing a header whose dimension exceeds max_dim (capped at
 * the loader's own limit, 2^20). */
int hnsw_load_limited(channel *c, size_t max_dim, hnsw **out, hnsw_other_fn other, void *arg,
                      hf_err *e);

#endif
