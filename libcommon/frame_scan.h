/*
 * frame_scan.h - walk MessagePack bytes without allocating.
 *
 * msgpack-c allocates an array's or map's element table (16 or 32 bytes an
 * element) as soon as it meets the container's header, before the elements
 * arrive: five hostile bytes "array of 2^32-1" make it ask for 64 GiB. So
 * every reader walks a frame here first: every element takes at least one
 * byte, so a frame whose declared elements cannot fit in the size limit is
 * refused, and msgpack-c only ever sees one complete frame, whose element
 * tables are bounded by its real length. The walk keeps its place across
 * calls, so a large frame arriving in pieces is walked once.
 */
#ifndef HF_FRAME_SCAN_H
#define HF_FRAME_SCAN_H

#include <stddef.h>
#include <stdint.h>

typedef struct frame_scan {
    size_t pos;       /* bytes of the current frame walked so far */
    uint64_t pending; /* elements still to walk; 0 before the first */
} frame_scan;

enum { FRAME_SCAN_MORE = 0, FRAME_SCAN_WHOLE = 1, FRAME_SCAN_TOO_BIG = -1, FRAME_SCAN_BAD = -2 };

/* Walk p[0..avail) (the pending bytes, frame start at p[0]) as far as they
 * go. WHOLE: one complete object of st->pos bytes. MORE: need more bytes.
 * TOO_BIG: cannot fit in limit bytes. BAD: not MessagePack. Reset st to
 * {0, 0} before the next frame. */
int frame_scan_step(frame_scan *st, const unsigned char *p, size_t avail, size_t limit);

/* 1 when data[0..size) is exactly one MessagePack object whose declared
 * element counts fit in its bytes (safe to hand to msgpack_unpack_next). */
int frame_scan_is_one(const void *data, size_t size);

#endif
