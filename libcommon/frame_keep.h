/*
 * frame_keep.h - frames a filter carries from its input to its output
 * unchanged: the model frames of an index that belong to other filters
 * (edge-score keeps a layer router, layer-route an edge scorer). Each frame
 * is copied when read (frame_in is valid only during the load callback) and
 * sent again, in input order, before the output's end frame.
 */
#ifndef HF_FRAME_KEEP_H
#define HF_FRAME_KEEP_H

#include <stddef.h>

#include "channel.h"
#include "frame.h"

typedef struct frame_keep {
    msgpack_sbuffer *v;
    size_t n, cap;
} frame_keep;

/* Copy f (its whole map) to the end of k. */
int frame_keep_add(frame_keep *k, const frame_in *f, hf_err *e);
/* Send every kept frame to out through fo, in order, then free them. */
int frame_keep_send(frame_keep *k, channel *out, frame_out *fo, hf_err *e);
void frame_keep_free(frame_keep *k);

#endif
