/*
 * frame.c - see frame.h. Keys are short strings; look-ups are linear over the
 * map, which holds a handful of keys, so no index is built.
 */
#include "frame.h"

#include <string.h>

void frame_out_init(frame_out *fo)
{
    msgpack_sbuffer_init(&fo->sb);
    msgpack_packer_init(&fo->pk, &fo->sb, msgpack_sbuffer_write);
}

void frame_out_free(frame_out *fo)
{
    msgpack_sbuffer_destroy(&fo->sb);
}

void frame_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void frame_begin(frame_out *fo, const char *t, uint32_t nkeys)
{
    msgpack_sbuffer_clear(&fo->sb);
    msgpack_pack_map(&fo->pk, nkeys + 1);
    frame_pack_str(&fo->pk, "t");
    frame_pack_str(&fo->pk, t);
}

void frame_put_key(frame_out *fo, const char *key)
{
    frame_pack_str(&fo->pk, key);
}

void frame_put_str(frame_out *fo, const char *key, const char *val)
{
    frame_pack_str(&fo->pk, key);
    frame_pack_str(&fo->pk, val);
}

void frame_put_u64(frame_out *fo, const char *key, uint64_t val)
{
    frame_pack_str(&fo->pk, key);
    msgpack_pack_uint64(&fo->pk, val);
}

void frame_put_i64(frame_out *fo, const char *key, int64_t val)
{
    frame_pack_str(&fo->pk, key);
    msgpack_pack_int64(&fo->pk, val);
}

void frame_put_f64(frame_out *fo, const char *key, double val)
{
    frame_pack_str(&fo->pk, key);
    msgpack_pack_double(&fo->pk, val);
}

void frame_put_bool(frame_out *fo, const char *key, int val)
{
    frame_pack_str(&fo->pk, key);
    if (val)
        msgpack_pack_true(&fo->pk);
    else
        msgpack_pack_false(&fo->pk);
}

void frame_put_bin(frame_out *fo, const char *key, const void *data, size_t len)
{
    frame_pack_str(&fo->pk, key);
    msgpack_pack_bin(&fo->pk, len);
    msgpack_pack_bin_body(&fo->pk, data, len);
}

static int key_is(const msgpack_object *k, const char *key)
{
    size_t n = strlen(key);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, key, n) == 0;
}

const msgpack_object *frame_find(const frame_in *f, const char *key)
{
    const msgpack_object_map *m = &f->map->via.map;
    for (uint32_t i = 0; i < m->size; i++)
        if (key_is(&m->ptr[i].key, key))
            return &m->ptr[i].val;
    return NULL;
}

int frame_in_wrap(frame_in *f, const msgpack_object *obj, uint64_t index, hf_err *e)
{
    f->map = obj;
    f->index = index;
    f->type[0] = '\0';
    if (obj->type != MSGPACK_OBJECT_MAP)
        return hf_err_set(e, HF_EDATA, "frame is not a map");
    const msgpack_object *t = frame_find(f, "t");
    if (!t || t->type != MSGPACK_OBJECT_STR)
        return hf_err_set(e, HF_EDATA, "frame has no string key \"t\"");
    if (t->via.str.size == 0 || t->via.str.size >= sizeof f->type)
        return hf_err_set(e, HF_EDATA, "frame type name has bad length %u", t->via.str.size);
    /* names go into error messages: printable ASCII only, no quotes */
    for (uint32_t i = 0; i < t->via.str.size; i++) {
        unsigned char ch = (unsigned char)t->via.str.ptr[i];
        if (ch < 0x21 || ch > 0x7e || ch == '"' || ch == '\\')
            return hf_err_set(e, HF_EDATA, "frame type name has a non-printable byte 0x%02x", ch);
    }
    memcpy(f->type, t->via.str.ptr, t->via.str.size);
    f->type[t->via.str.size] = '\0';
    return 0;
}

int frame_get_u64(const frame_in *f, const char *key, uint64_t *out, hf_err *e)
{
    const msgpack_object *o = frame_find(f, key);
    if (!o)
        return hf_err_set(e, HF_EOF, "%s frame lacks key \"%s\"", f->type, key);
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return hf_err_set(e, HF_EDATA, "%s frame: \"%s\" is not a non-negative integer", f->type,
                          key);
    *out = o->via.u64;
    return 0;
}

int frame_get_f64(const frame_in *f, const char *key, double *out, hf_err *e)
{
    const msgpack_object *o = frame_find(f, key);
    if (!o)
        return hf_err_set(e, HF_EOF, "%s frame lacks key \"%s\"", f->type, key);
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: *out = o->via.f64; return 0;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: *out = (double)o->via.u64; return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: *out = (double)o->via.i64; return 0;
    default: return hf_err_set(e, HF_EDATA, "%s frame: \"%s\" is not a number", f->type, key);
    }
}

int frame_get_str(const frame_in *f, const char *key, char *out, size_t cap, hf_err *e)
{
    const msgpack_object *o = frame_find(f, key);
    if (!o)
        return hf_err_set(e, HF_EOF, "%s frame lacks key \"%s\"", f->type, key);
    if (o->type != MSGPACK_OBJECT_STR)
        return hf_err_set(e, HF_EDATA, "%s frame: \"%s\" is not a string", f->type, key);
    if (o->via.str.size >= cap)
        return hf_err_set(e, HF_EDATA, "%s frame: \"%s\" is too long", f->type, key);
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return 0;
}

int frame_get_bin(const frame_in *f, const char *key, const void **data, size_t *len, hf_err *e)
{
    const msgpack_object *o = frame_find(f, key);
    if (!o)
        return hf_err_set(e, HF_EOF, "%s frame lacks key \"%s\"", f->type, key);
    if (o->type != MSGPACK_OBJECT_BIN)
        return hf_err_set(e, HF_EDATA, "%s frame: \"%s\" is not bin", f->type, key);
    *data = o->via.bin.ptr;
    *len = o->via.bin.size;
    return 0;
}

int frame_host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}
