/*
 * jsonl.c - see jsonl.h. Recursion depth is bounded by the frame scanner's
 * nesting limit, which every frame passed here has been through.
 */
#include "jsonl.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void put_str(FILE *out, const char *s, size_t n)
{
    putc('"', out);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            putc('\\', out);
            putc(c, out);
        } else if (c == '\n') {
            fputs("\\n", out);
        } else if (c == '\t') {
            fputs("\\t", out);
        } else if (c < 0x20 || c >= 0x7f) {
            fprintf(out, "\\u%04x", c);
        } else {
            putc(c, out);
        }
    }
    putc('"', out);
}

static void put_f64(FILE *out, double v, int f32)
{
    if (!isfinite(v))
        fputs("null", out);
    else
        fprintf(out, f32 ? "%.9g" : "%.17g", v);
}

static int key_is(const msgpack_object *k, const char *s)
{
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, s, n) == 0;
}

const char *jsonl_bin_elem(const char *t, const char *key, size_t len, size_t other_len)
{
    if (!strcmp(key, "levels") || !strcmp(key, "body"))
        return "u8";
    if (!strcmp(key, "data"))
        return strcmp(t, "codes") == 0 ? "u8" : "f32";
    if (!strcmp(key, "centroids") || !strcmp(key, "mean") || !strcmp(key, "dists") ||
        !strcmp(key, "vec") || !strcmp(key, "rot"))
        return "f32";
    if (!strcmp(key, "nodes") || !strcmp(key, "deg") || !strcmp(key, "order") ||
        !strcmp(key, "candidates"))
        return "u32";
    if (!strcmp(key, "ids")) {
        if (!strcmp(t, "ids") || !strcmp(t, "insert") || !strcmp(t, "delete"))
            return "u64";
        if (!strcmp(t, "result") && other_len && len == 2 * other_len)
            return "u64";
        return "u32";
    }
    return "u8";
}

static void put_bin(FILE *out, const unsigned char *p, size_t n, const char *elem, int full)
{
    fprintf(out, "{\"bin\":%zu", n);
    if (full) {
        size_t w = !strcmp(elem, "u8") ? 1 : !strcmp(elem, "u64") ? 8 : 4;
        if (n % w)
            elem = "u8", w = 1; /* a torn array: show its bytes */
        fprintf(out, ",\"%s\":[", elem);
        for (size_t i = 0; i < n / w; i++) {
            if (i)
                putc(',', out);
            const unsigned char *q = p + i * w;
            if (w == 1) {
                fprintf(out, "%u", q[0]);
            } else if (w == 8) {
                uint64_t v;
                memcpy(&v, q, 8);
                fprintf(out, "%llu", (unsigned long long)v);
            } else if (!strcmp(elem, "f32")) {
                float v;
                memcpy(&v, q, 4);
                put_f64(out, v, 1);
            } else {
                uint32_t v;
                memcpy(&v, q, 4);
                fprintf(out, "%u", v);
            }
        }
        putc(']', out);
    }
    putc('}', out);
}

static void put_obj(FILE *out, const msgpack_object *o, const char *t, const char *key,
                    size_t other_len, int full);

static void put_map(FILE *out, const msgpack_object *o, const char *t, int full)
{
    const msgpack_object_map *m = &o->via.map;
    size_t dists_len = 0;
    for (uint32_t i = 0; i < m->size; i++)
        if (key_is(&m->ptr[i].key, "dists") && m->ptr[i].val.type == MSGPACK_OBJECT_BIN)
            dists_len = m->ptr[i].val.via.bin.size;
    putc('{', out);
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key;
        if (i)
            putc(',', out);
        char kbuf[64] = "";
        if (k->type == MSGPACK_OBJECT_STR) {
            put_str(out, k->via.str.ptr, k->via.str.size);
            size_t n = k->via.str.size < sizeof kbuf - 1 ? k->via.str.size : sizeof kbuf - 1;
            memcpy(kbuf, k->via.str.ptr, n);
            kbuf[n] = 0;
        } else {
            /* a non-string key: its JSON text, as a string */
            char *txt = NULL;
            size_t tl = 0;
            FILE *mem = open_memstream(&txt, &tl);
            if (mem) {
                put_obj(mem, k, t, "", 0, 0);
                fclose(mem);
                put_str(out, txt, tl);
            } else {
                fputs("\"?\"", out);
            }
            free(txt);
        }
        putc(':', out);
        put_obj(out, &m->ptr[i].val, t, kbuf, dists_len, full);
    }
    putc('}', out);
}

static void put_obj(FILE *out, const msgpack_object *o, const char *t, const char *key,
                    size_t other_len, int full)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: fputs("null", out); break;
    case MSGPACK_OBJECT_BOOLEAN: fputs(o->via.boolean ? "true" : "false", out); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        fprintf(out, "%llu", (unsigned long long)o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: fprintf(out, "%lld", (long long)o->via.i64); break;
    case MSGPACK_OBJECT_FLOAT32: put_f64(out, o->via.f64, 1); break;
    case MSGPACK_OBJECT_FLOAT64: put_f64(out, o->via.f64, 0); break;
    case MSGPACK_OBJECT_STR: put_str(out, o->via.str.ptr, o->via.str.size); break;
    case MSGPACK_OBJECT_BIN:
        put_bin(out, (const unsigned char *)o->via.bin.ptr, o->via.bin.size,
                jsonl_bin_elem(t, key, o->via.bin.size, other_len), full);
        break;
    case MSGPACK_OBJECT_EXT:
        fprintf(out, "{\"ext\":%d,\"bin\":%u}", (int)o->via.ext.type, o->via.ext.size);
        break;
    case MSGPACK_OBJECT_ARRAY:
        putc('[', out);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i)
                putc(',', out);
            /* array items keep the key's meaning (params[].data) */
            put_obj(out, &o->via.array.ptr[i], t, key, 0, full);
        }
        putc(']', out);
        break;
    case MSGPACK_OBJECT_MAP: put_map(out, o, t, full); break;
    default: fputs("null", out); break;
    }
}

int jsonl_write(FILE *out, const msgpack_object *o, const char *frame_type, int full)
{
    put_obj(out, o, frame_type ? frame_type : "", "", 0, full);
    return ferror(out) ? -1 : 0;
}
