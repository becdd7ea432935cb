/*
 * hnsw_ids.h - external u64 ids of an index's nodes.
 *
 * A node is a u32 slot inside the graph; users name vectors by u64 ids of
 * their own (embed-load --ids, insert frames). This table keeps, per slot,
 * its external id, and a hash from external id back to the slot, so results
 * can name vectors by external id and updates can find the slot an id lives
 * in. In an index stream the table travels as its own frames, after the
 * graph's:
 *   ids {t:"ids", start, n, ids: bin u64[n]}   (slots start..start+n-1, 4096 a frame)
 * An index without ids frames names its nodes by slot number.
 *
 * Invariants: ext[slot] is meaningful for slots < n; the hash holds exactly
 * the slots marked live (hnsw_ids_bind), each external id at most once.
 * Open addressing with linear probing and backward-shift removal, load
 * factor at most 1/2, so a look-up is a few probes and removal leaves no
 * tombstones behind.
 *
 * Ownership: the caller owns the table from hnsw_ids_new to
 * hnsw_ids_destroy (which sets its pointer to NULL).
 */
#ifndef HF_HNSW_IDS_H
#define HF_HNSW_IDS_H

#include <stddef.h>
#include <stdint.h>

#include "channel.h"

typedef struct hnsw_ids {
    uint64_t *ext; /* per slot, cap entries */
    size_t n, cap; /* slots described */
    uint64_t *hkey;
    uint32_t *hslot; /* UINT32_MAX = empty */
    size_t hcap, hused;
} hnsw_ids;

int hnsw_ids_new(hnsw_ids **out, hf_err *e);
void hnsw_ids_destroy(hnsw_ids **ids);
/* Make room for slots < n (new slots get ext = slot number, unbound). */
int hnsw_ids_resize(hnsw_ids *ids, size_t n, hf_err *e);
/* Give slot the external id ext and enter it in the hash. Fails (HF_EDATA)
 * when ext is bound to another slot. */
int hnsw_ids_bind(hnsw_ids *ids, uint32_t slot, uint64_t ext, hf_err *e);
/* Remove ext from the hash (the slot keeps its ext value); 0 if it was there. */
int hnsw_ids_unbind(hnsw_ids *ids, uint64_t ext);
/* The slot of ext, or UINT32_MAX. */
uint32_t hnsw_ids_find(const hnsw_ids *ids, uint64_t ext);
/* Bind every slot < n to its own number (an index without ids frames). */
int hnsw_ids_identity(hnsw_ids *ids, size_t n, hf_err *e);

/* Write ids frames for slots [0, n). */
int hnsw_ids_save(const hnsw_ids *ids, size_t n, channel *c, hf_err *e);
/* Take one "ids" frame of a loaded index (frames must come in order from
 * slot 0, total at most max_slots). Slots are recorded, not bound: the
 * caller binds the live ones once tombstones are known. */
int hnsw_ids_take_frame(hnsw_ids *ids, const frame_in *f, size_t max_slots, hf_err *e);

/* Read external ids from a file: one unsigned decimal integer a line (blank
 * lines and surrounding spaces allowed), or an .npy array of integers
 * (1-D or n x 1; int8..int64, uint8..uint64; negative values refused).
 * The caller frees *out. Errors name the line or the element. */
int hnsw_ids_read_file(const char *path, uint64_t **out, size_t *n, hf_err *e);

#endif
