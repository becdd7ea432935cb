/*
 * upd_live.h - what consolidate's modes share: applying update frames to a
 * live index (upd.h), answering query frames, and the index file it loads
 * and checkpoints (with external ids, the checkpoint's sequence number and
 * the models it carries).
 *
 * Update frames (schemas/insert.json, delete.json, header-updates.json):
 *   header {t:"header", schema:"hnswflow.updates", v:1, dim, count}
 *   insert {t:"insert", n, ids: bin u64[n], data: bin f32[n*dim], labels?: bin u32}
 *          (labels: filt.h's wire form; an insert without them into an index
 *          with labels gives its vectors none)
 *   delete {t:"delete", n, ids: bin u64[n]}
 *   query  {t:"query", qid, vec: bin f32[dim], k?, ef?, filter?, filter_all?}
 *   end    {t:"end", count, checksum}
 * An update is checked whole before anything changes (upd_live_check), so a
 * bad frame is refused and changes nothing; a checked frame then applies
 * without failing except for want of memory.
 *
 * Models: frames of other types in a loaded index (edge scorer, policies)
 * are kept byte for byte and written back into every checkpoint with
 * "graph_changed": the fraction of the graph changed since they were trained
 * (inserts and deletes over live nodes, added to what the frame said), so a
 * consumer can tell a stale model.
 */
#ifndef HF_UPD_LIVE_H
#define HF_UPD_LIVE_H

#include <stddef.h>
#include <stdint.h>

#include "channel.h"
#include "filt.h"
#include "upd.h"

#define STREAM_UPDATES "hnswflow.updates"

typedef struct upd_live {
    upd_index *u; /* NULL until the dimension is known */
    hnsw_params p;
    size_t dim;
    size_t max_dim;
    uint64_t repair_every; /* a pass once this many deletes are pending */
    uint64_t seq;          /* updates applied, counting from the first index */
    uint64_t changed;      /* inserts + deletes since load (for model staleness) */
    /* models carried from the loaded index, each a packed frame */
    char **models;
    size_t *model_len;
    size_t nmodels;
    /* the frame upd_live_check accepted last: an insert (1) or delete of op_n ids */
    int op_insert;
    size_t op_n;
    /* scratch: aligned copies of a frame's bins */
    uint64_t *ids;
    float *vecs;
    size_t ids_cap, vecs_cap;
    /* labels by slot (NULL until an index or insert brings some), the
     * checked labels bin of the accepted insert (op_labels 0: none) and the
     * filtered search's scratch */
    filt_labels *labels;
    uint32_t *lbin;
    size_t lbin_len, lbin_cap;
    int op_labels;
    filt_searcher *fs;
    filt_plan plan;
    hnsw_hit *hits;
    uint64_t *hit_ids;
    float *hit_d;
    size_t hits_cap;
} upd_live;

/* Start empty (dimension from the header or first insert) or from an index
 * file: ids, tombstones (deleted at once, repaired by a pass), models and
 * the checkpoint's sequence number are taken from it. */
void upd_live_init(upd_live *L, const hnsw_params *p, size_t max_dim, uint64_t repair_every);
int upd_live_load(upd_live *L, const char *path, size_t max_frame, hf_err *e);
void upd_live_free(upd_live *L);
/* Replace the carried model frames by those of the index file at path
 * (retrained offline): the whole file is read first, so a bad one changes
 * nothing. Other carried frames stay; staleness counts from here. */
int upd_live_take_models(upd_live *L, const char *path, size_t max_frame, size_t *taken, hf_err *e);

/* Take the dimension of an updates header (0: not given). */
int upd_live_header(upd_live *L, const frame_in *f, hf_err *e);
/* 1 for insert/delete frames. */
int upd_live_is_update(const frame_in *f);
/* Check an insert or delete frame whole; 0 when it may be applied. */
int upd_live_check(upd_live *L, const frame_in *f, hf_err *e);
/* Apply a checked frame (upd_live_check must have passed just before: it
 * leaves the frame's arrays in L's scratch). Runs a pass when due. */
int upd_live_apply(upd_live *L, hf_err *e);
/* Both, for replay. */
int upd_live_check_apply(upd_live *L, const frame_in *f, hf_err *e);

/* Answer a query frame into fo (a result frame with u64 ids, or an error
 * frame naming the problem); k and ef are the defaults. 0: a result. */
int upd_live_query(upd_live *L, const frame_in *f, size_t k, size_t ef, size_t max_k, size_t max_ef,
                   frame_out *fo);

/* Write a results stream header (ids are u64 external ids). */
int upd_live_results_header(channel *c, const char *metric, size_t k, hf_err *e);

/* Consolidate pending deletes, then write the index atomically to path
 * with a checkpoint frame carrying L->seq. */
int upd_live_save(upd_live *L, const char *path, hf_err *e);

#endif
