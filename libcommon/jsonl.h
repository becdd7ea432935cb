/*
 * jsonl.h - a decoded frame as one line of JSON (hnswflow dump, info).
 *
 * MessagePack is a superset of JSON's data model, so a few mappings are
 * fixed here: bin values become {"bin": N} (N bytes) or, when full is set,
 * {"bin": N, "<elem>": [values...]} decoded as the little-endian array the
 * schema names for that key (f32, u32, u64, u8; see jsonl_bin_elem);
 * non-finite floats become null (JSON has no NaN); ext values become
 * {"ext": type, "bin": N}; map keys that are not strings are written as
 * their JSON text in a string; strings are escaped byte for byte, bytes
 * that are not printable ASCII as \u00XX, so the output is always valid
 * JSON whatever the input held.
 *
 * Output goes to a caller-owned FILE; nothing here allocates.
 */
#ifndef HF_JSONL_H
#define HF_JSONL_H

#include <msgpack.h>
#include <stdio.h>

/* Element type of a bin field: "f32", "u32", "u64" or "u8". frame_type is
 * the enclosing frame's t; other_len is the length of a sibling that fixes
 * the width (result frames: "dists"), 0 when unknown. */
const char *jsonl_bin_elem(const char *frame_type, const char *key, size_t len, size_t other_len);

/* Write o as JSON (no newline). frame_type names the frame for bin
 * decoding; full: decode bins. Returns 0, or -1 when writing failed. */
int jsonl_write(FILE *out, const msgpack_object *o, const char *frame_type, int full);

#endif
