/*
 * upd_wal.h - the live index's write-ahead log.
 *
 * A log is a file of MessagePack frames:
 *   header {t:"header", schema:"hnswflow.wal", v:1, base}      base: the update
 *          sequence number the checkpoint it follows already holds
 *   wal    {t:"wal", seq, crc, body: bin}   one accepted update frame (insert or
 *          delete) exactly as it arrived (canonical MessagePack), numbered from
 *          base + 1; crc = zlib crc32 of seq (u64 little-endian) then body
 * An update is appended (and, with sync on, fdatasync'ed) before it is applied
 * and acknowledged. A checkpoint is an atomic index file holding a
 * {t:"checkpoint", seq} frame; after it is in place the log is reset to a
 * header with base = seq. On start the checkpoint is loaded and every record
 * with seq > the checkpoint's is replayed (a crash between the checkpoint's
 * rename and the reset leaves records the checkpoint has: they are skipped).
 * Replay stops at the first record that is truncated, fails its crc, or is
 * out of sequence: the good prefix is applied, the rest reported.
 *
 * Ownership: upd_wal_open returns a log the caller closes with
 * upd_wal_close (which sets the pointer to NULL).
 */
#ifndef HF_UPD_WAL_H
#define HF_UPD_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "frame.h"

#define STREAM_WAL "hnswflow.wal"

typedef struct upd_wal upd_wal;

/* Open (creating) path and reset it to a header with base. sync: fdatasync
 * every append. */
int upd_wal_open(const char *path, uint64_t base, int sync, upd_wal **out, hf_err *e);
/* Append update frame f as record seq. */
int upd_wal_append(upd_wal *w, uint64_t seq, const frame_in *f, hf_err *e);
/* Drop every record: the log is a header with base again (after a checkpoint). */
int upd_wal_reset(upd_wal *w, uint64_t base, hf_err *e);
uint64_t upd_wal_bytes(const upd_wal *w);
void upd_wal_close(upd_wal **w);

/* Replay path (a missing file is an empty log): apply(f, seq, arg, e) for
 * every good record with seq > after. *applied counts them, *last is the last
 * seq applied (after when none). A bad tail or a failing apply stops the
 * replay and is described in *tail (tail->code != 0); the return value is
 * non-zero only when the log cannot be read at all (not a log, I/O). */
typedef int (*upd_wal_apply_fn)(const frame_in *f, uint64_t seq, void *arg, hf_err *e);
int upd_wal_replay(const char *path, uint64_t after, size_t max_frame, upd_wal_apply_fn apply,
                   void *arg, uint64_t *applied, uint64_t *last, hf_err *tail, hf_err *e);

#endif
