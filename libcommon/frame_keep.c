/*
 * frame_keep.c - see frame_keep.h.
 */
#include "frame_keep.h"

#include <stdlib.h>

int frame_keep_add(frame_keep *k, const frame_in *f, hf_err *e)
{
    if (k->n == k->cap) {
        size_t nc = k->cap ? k->cap * 2 : 4;
        msgpack_sbuffer *nv = realloc(k->v, nc * sizeof *nv);
        if (!nv)
            return hf_err_set(e, HF_ENOMEM, "out of memory");
        k->v = nv;
        k->cap = nc;
    }
    msgpack_sbuffer_init(&k->v[k->n]);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &k->v[k->n], msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *f->map);
    k->n++;
    return 0;
}

int frame_keep_send(frame_keep *k, channel *out, frame_out *fo, hf_err *e)
{
    int rc = 0;
    for (size_t i = 0; i < k->n && rc == 0; i++) {
        msgpack_sbuffer_clear(&fo->sb);
        msgpack_sbuffer_write(&fo->sb, k->v[i].data, k->v[i].size);
        rc = channel_send(out, fo, e);
    }
    frame_keep_free(k);
    return rc;
}

void frame_keep_free(frame_keep *k)
{
    for (size_t i = 0; i < k->n; i++)
        msgpack_sbuffer_destroy(&k->v[i]);
    free(k->v);
    *k = (frame_keep){0};
}
