/*
 * frame.h - typed MessagePack frames.
 *
 * A frame is one MessagePack map whose key "t" names its type. Bulk numbers
 * travel as `bin` holding little-endian packed arrays. This module builds
 * frames (frame_out, packing into a reusable buffer) and reads fields out of
 * a decoded frame (frame_in) with type and size checks, so no filter walks a
 * msgpack_object by hand.
 *
 * Ownership: a frame_in borrows the memory of the msgpack_unpacked it was
 * decoded into (owned by the channel that produced it) and is valid until the
 * next receive on that channel.
 */
#ifndef HF_FRAME_H
#define HF_FRAME_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Default upper bound on one frame's encoded size; a channel option. */
#define FRAME_DEFAULT_MAX_BYTES ((size_t)256 << 20)

typedef struct frame_out {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} frame_out;

void frame_out_init(frame_out *fo);
void frame_out_free(frame_out *fo);
/* Start a new frame of type t with nkeys further keys (t not counted). */
void frame_begin(frame_out *fo, const char *t, uint32_t nkeys);
void frame_put_str(frame_out *fo, const char *key, const char *val);
void frame_put_u64(frame_out *fo, const char *key, uint64_t val);
void frame_put_i64(frame_out *fo, const char *key, int64_t val);
void frame_put_f64(frame_out *fo, const char *key, double val);
void frame_put_bool(frame_out *fo, const char *key, int val);
void frame_put_bin(frame_out *fo, const char *key, const void *data, size_t len);
/* A MessagePack string, for nested values packed by hand. */
void frame_pack_str(msgpack_packer *pk, const char *s);
/* Raw access for nested values: emit key, then pack with fo->pk directly. */
void frame_put_key(frame_out *fo, const char *key);

typedef struct frame_in {
    const msgpack_object *map; /* a MAP object */
    char type[32];             /* value of "t" */
    uint64_t index;            /* 1-based position in its stream */
} frame_in;

/* Wrap a decoded object; fails unless it is a map with a string "t". */
int frame_in_wrap(frame_in *f, const msgpack_object *obj, uint64_t index, hf_err *e);

/* Field look-ups. Return 0, HF_EOF when the key is absent (callers decide if
 * optional), HF_EDATA when present with the wrong type. */
const msgpack_object *frame_find(const frame_in *f, const char *key);
int frame_get_u64(const frame_in *f, const char *key, uint64_t *out, hf_err *e);
int frame_get_f64(const frame_in *f, const char *key, double *out, hf_err *e);
int frame_get_str(const frame_in *f, const char *key, char *out, size_t cap, hf_err *e);
int frame_get_bin(const frame_in *f, const char *key, const void **data, size_t *len, hf_err *e);

/* Little-endian helpers: this code base targets little-endian hosts (x86-64,
 * aarch64); bulk arrays are memcpy'd. frame_is_little_endian is checked at
 * start-up by the filters. */
int frame_host_is_little_endian(void);

#endif
