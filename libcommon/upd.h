/*
 * upd.h - the live index: an HNSW graph that takes inserts (upserts by
 * external id) and true deletes while it answers queries (consolidate).
 *
 * Slots: every graph node (u32 slot) is in one of three states.
 *   LIVE     in the graph, returned by searches, bound in the id table;
 *   PENDING  deleted, not yet repaired: tombstoned (h->deleted), so searches
 *            still route through it but never return it; edges may point to it;
 *   FREE     repaired away: no edge points to it, it has no links and level 0,
 *            h->deleted stays set; its slot is reused by the next insert.
 * A consolidation pass (upd_consolidate) turns every PENDING slot into a FREE
 * one; after it no edge points to a non-live slot, the entry point is a live
 * node of the top level, and every live node is reachable on level 0 from it.
 * An insert call that finds no delete pending ends with the same walk, so
 * whenever nothing is pending all three hold.
 *
 * Ownership: upd_new/upd_create return an index the caller frees with
 * upd_destroy; upd_new takes ownership of the graph and id table it is given.
 * Not thread-safe: the caller serialises every call (consolidate does).
 */
#ifndef HF_UPD_H
#define HF_UPD_H

#include <stddef.h>
#include <stdint.h>

#include "hnsw.h"
#include "hnsw_ids.h"

enum { UPD_LIVE = 0, UPD_PENDING = 1, UPD_FREE = 2 };

typedef struct upd_stats {
    uint64_t inserts, replaced, deletes, passes;
    uint64_t repaired_lists; /* link lists rewritten by consolidation passes */
    uint64_t reach_links;    /* links added to make unreachable nodes reachable */
    uint64_t walks;          /* full reachability walks (the rest re-attached orphans) */
} upd_stats;

typedef struct upd_index upd_index;

/* Wrap a loaded graph (and its id table, or NULL for slot numbers as ids).
 * Tombstoned nodes become PENDING (the next pass removes them); compressed
 * codes are dropped (the live index traverses f32 vectors). Takes ownership
 * of h and ids, even on failure. */
int upd_new(hnsw *h, hnsw_ids *ids, upd_index **out, hf_err *e);
/* An empty live index of dimension dim. */
int upd_create(const hnsw_params *p, size_t dim, upd_index **out, hf_err *e);
void upd_destroy(upd_index **u);

const hnsw *upd_graph(const upd_index *u);
size_t upd_nlive(const upd_index *u);
size_t upd_pending(const upd_index *u);
const upd_stats *upd_get_stats(const upd_index *u);
/* External id of a slot. */
uint64_t upd_ext_id(const upd_index *u, uint32_t slot);
/* The slot external id ext lives in, or UINT32_MAX. */
uint32_t upd_slot_of(const upd_index *u, uint64_t ext);
/* State of a slot (UPD_*). */
int upd_state(const upd_index *u, uint32_t slot);

/* Upsert n vectors (dim floats each, finite: the caller checks) under the
 * external ids ext[0..n). An id that exists is deleted first. */
int upd_insert(upd_index *u, const uint64_t *ext, const float *vecs, size_t n, hf_err *e);
/* Check that every id is live (HF_EDATA naming the first that is not,
 * or an id given twice); changes nothing. */
int upd_check_delete(const upd_index *u, const uint64_t *ext, size_t n, hf_err *e);
/* Delete n ids (checked first: on error nothing is deleted). */
int upd_delete(upd_index *u, const uint64_t *ext, size_t n, hf_err *e);
/* One consolidation pass: repair every list that points to a PENDING node,
 * free the PENDING slots, keep the entry point valid, restore reachability. */
int upd_consolidate(upd_index *u, hf_err *e);

/* k nearest live vectors of q; hit ids are slots (upd_ext_id names them). */
int upd_search(upd_index *u, const float *q, size_t k, size_t ef, hnsw_hit *out, size_t *nout,
               hnsw_stats *st, hf_err *e);

/* Bytes the live index holds beyond the graph's hnsw_memory_bytes: the id
 * table, slot states and scratch. */
size_t upd_extra_bytes(const upd_index *u);

/* Full walk: live nodes not reachable on level 0 from the entry point, and
 * edges (any level) that point to a non-live slot. */
void upd_check(const upd_index *u, size_t *unreachable, size_t *bad_edges);

/* A compact copy for saving: live nodes only, renumbered in slot order,
 * with their id table. The caller owns both. */
int upd_compact(const upd_index *u, hnsw **out, hnsw_ids **out_ids, hf_err *e);

#endif
