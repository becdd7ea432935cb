/*
 * frame_scan.c - see frame_scan.h.
 */
#include "frame_scan.h"

static uint64_t be_uint(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

int frame_scan_step(frame_scan *st, const unsigned char *p, size_t avail, size_t limit)
{
    if (st->pos == 0 && st->pending == 0)
        st->pending = 1;
    while (st->pending > 0) {
        if (st->pos >= avail)
            return FRAME_SCAN_MORE;
        unsigned b = p[st->pos];
        size_t head = 1;    /* type byte and fixed fields */
        int nlen = 0;       /* bytes of a length or count field after it */
        uint64_t body = 0;  /* payload bytes after the head */
        uint64_t items = 0; /* nested elements */
        int count_kind = 0; /* 1: array count, 2: map count, 3: byte length */
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            /* fixint, nil, bool */
        } else if (b <= 0x8f) {
            items = 2 * (uint64_t)(b & 0x0f);
        } else if (b <= 0x9f) {
            items = b & 0x0f;
        } else if (b <= 0xbf) {
            body = b & 0x1f;
        } else {
            /* one MessagePack type per line, as in the spec's table */
            // clang-format off
            switch (b) {
            case 0xc4: case 0xd9: nlen = 1; count_kind = 3; break; /* bin8, str8 */
            case 0xc5: case 0xda: nlen = 2; count_kind = 3; break;
            case 0xc6: case 0xdb: nlen = 4; count_kind = 3; break;
            case 0xc7: nlen = 1; count_kind = 3; head = 2; break; /* ext: + type byte */
            case 0xc8: nlen = 2; count_kind = 3; head = 2; break;
            case 0xc9: nlen = 4; count_kind = 3; head = 2; break;
            case 0xca: body = 4; break;
            case 0xcb: body = 8; break;
            case 0xcc: case 0xd0: body = 1; break;
            case 0xcd: case 0xd1: body = 2; break;
            case 0xce: case 0xd2: body = 4; break;
            case 0xcf: case 0xd3: body = 8; break;
            case 0xd4: body = 2; break; /* fixext: type byte + data */
            case 0xd5: body = 3; break;
            case 0xd6: body = 5; break;
            case 0xd7: body = 9; break;
            case 0xd8: body = 17; break;
            case 0xdc: nlen = 2; count_kind = 1; break;
            case 0xdd: nlen = 4; count_kind = 1; break;
            case 0xde: nlen = 2; count_kind = 2; break;
            case 0xdf: nlen = 4; count_kind = 2; break;
            default: return FRAME_SCAN_BAD; /* 0xc1 is never used */
            }
            // clang-format on
        }
        if (nlen) {
            if (avail - st->pos < 1 + (size_t)nlen)
                return FRAME_SCAN_MORE;
            uint64_t n = be_uint(p + st->pos + 1, nlen);
            if (count_kind == 1)
                items = n;
            else if (count_kind == 2)
                items = 2 * n;
            else
                body = n;
            head = (head == 2 ? 2 : 1) + (size_t)nlen;
        }
        /* the head, the body and one byte for every element still owed must
         * all fit in the limit */
        uint64_t need = (uint64_t)st->pos + head + body + (st->pending - 1) + items;
        if (need > limit)
            return FRAME_SCAN_TOO_BIG;
        st->pos += head + (size_t)body;
        st->pending = st->pending - 1 + items;
    }
    return st->pos <= avail ? FRAME_SCAN_WHOLE : FRAME_SCAN_MORE;
}

int frame_scan_is_one(const void *data, size_t size)
{
    frame_scan st = {0, 0};
    return frame_scan_step(&st, data, size, size) == FRAME_SCAN_WHOLE && st.pos == size;
}
