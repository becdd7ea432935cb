/*
 * nn_io.c - models as MessagePack frames, bit-exact:
 *   {"t":"model", "kind":<str>, "v":1,
 *    "params":[{"name":<str>, "rows":<u32>, "cols":<u32>,
 *               "data":<bin, rows*cols little-endian f32>}, ...],
 *    <hyperparameter>:<number>, ...}
 * (schemas/model.json describes it).
 *
 * Invariants: floats travel as their IEEE-754 bit patterns in little-endian
 * order whatever the host, so a round trip is bit-exact. Unpacking trusts
 * nothing: every type, the version, shapes against the model being filled,
 * bin sizes against rows*cols (checked for overflow), duplicate or unknown
 * names and non-finite values are all rejected with HF_EDATA. The frame
 * layer hands us a decoded msgpack_object; we never read bytes ourselves.
 */
#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NN_IO_MAX_DIM 65536u /* hyperparameter sanity bound for sizes */

static int pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

static int pack_param(msgpack_packer *pk, const nn_param *q, unsigned char *buf)
{
    size_t n = nn_tensor_len(q->w);
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &q->w->data[i], 4);
        buf[4 * i] = (unsigned char)u;
        buf[4 * i + 1] = (unsigned char)(u >> 8);
        buf[4 * i + 2] = (unsigned char)(u >> 16);
        buf[4 * i + 3] = (unsigned char)(u >> 24);
    }
    return msgpack_pack_map(pk, 4) || pack_str(pk, "name") || pack_str(pk, q->name) ||
           pack_str(pk, "rows") || msgpack_pack_uint32(pk, (uint32_t)q->w->rows) ||
           pack_str(pk, "cols") || msgpack_pack_uint32(pk, (uint32_t)q->w->cols) ||
           pack_str(pk, "data") || msgpack_pack_bin(pk, 4 * n) ||
           msgpack_pack_bin_body(pk, buf, 4 * n);
}

static bool reserved(const char *k)
{
    return !strcmp(k, "t") || !strcmp(k, "kind") || !strcmp(k, "v") || !strcmp(k, "params");
}

int nn_model_pack(msgpack_sbuffer *sb, const char *kind, const nn_hparam *hp, size_t nhp,
                  const nn_params *p, hf_err *e)
{
    return nn_model_pack_extra(sb, kind, hp, nhp, NULL, p, e);
}

int nn_model_pack_extra(msgpack_sbuffer *sb, const char *kind, const nn_hparam *hp, size_t nhp,
                        const nn_extra *extra, const nn_params *p, hf_err *e)
{
    size_t maxn = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (p->v[i].w->rows > UINT32_MAX || p->v[i].w->cols > UINT32_MAX ||
            nn_tensor_len(p->v[i].w) > UINT32_MAX / 4)
            return hf_err_set(e, HF_EUSAGE, "nn: parameter %s too large to save", p->v[i].name);
        maxn = nn_tensor_len(p->v[i].w) > maxn ? nn_tensor_len(p->v[i].w) : maxn;
    }
    for (size_t i = 0; i < nhp; i++)
        if (reserved(hp[i].key) || !isfinite(hp[i].val))
            return hf_err_set(e, HF_EUSAGE, "nn: bad hyperparameter %s", hp[i].key);
    unsigned char *buf = malloc(4 * maxn + 1);
    if (!buf)
        return hf_err_set(e, HF_ENOMEM, "nn: out of memory packing model");
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    uint32_t npairs = (uint32_t)(4 + nhp) + (extra ? extra->pairs : 0);
    int bad = msgpack_pack_map(&pk, npairs) || pack_str(&pk, "t") || pack_str(&pk, "model") ||
              pack_str(&pk, "kind") || pack_str(&pk, kind) || pack_str(&pk, "v") ||
              msgpack_pack_uint32(&pk, NN_MODEL_VERSION);
    for (size_t i = 0; !bad && i < nhp; i++) {
        double v = hp[i].val;
        bad = pack_str(&pk, hp[i].key);
        if (!bad && v >= 0 && v <= 9007199254740992.0 && v == floor(v))
            bad = msgpack_pack_uint64(&pk, (uint64_t)v);
        else if (!bad)
            bad = msgpack_pack_double(&pk, v);
    }
    if (!bad && extra && extra->len)
        bad = msgpack_sbuffer_write(sb, extra->data, extra->len) != 0;
    bad = bad || pack_str(&pk, "params") || msgpack_pack_array(&pk, (uint32_t)p->n);
    for (size_t i = 0; !bad && i < p->n; i++)
        bad = pack_param(&pk, &p->v[i], buf);
    free(buf);
    return bad ? hf_err_set(e, HF_ENOMEM, "nn: out of memory packing model") : 0;
}

static bool str_eq(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, s, n) == 0;
}

const msgpack_object *nn_model_field(const msgpack_object *m, const char *key)
{
    for (uint32_t i = 0; m->type == MSGPACK_OBJECT_MAP && i < m->via.map.size; i++)
        if (str_eq(&m->via.map.ptr[i].key, key))
            return &m->via.map.ptr[i].val;
    return NULL;
}

int nn_model_is_kind(const msgpack_object *m, const char *kind)
{
    const msgpack_object *k = nn_model_field(m, "kind");
    return k && str_eq(k, kind);
}

static bool get_u32(const msgpack_object *m, const char *key, uint32_t *out)
{
    const msgpack_object *o = nn_model_field(m, key);
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > UINT32_MAX)
        return false;
    *out = (uint32_t)o->via.u64;
    return true;
}

int nn_model_hparam(const msgpack_object *obj, const char *key, double *val, hf_err *e)
{
    const msgpack_object *o = obj->type == MSGPACK_OBJECT_MAP ? nn_model_field(obj, key) : NULL;
    if (!o)
        return hf_err_set(e, HF_EDATA, "model: missing hyperparameter \"%s\"", key);
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER: *val = (double)o->via.u64; return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: *val = (double)o->via.i64; return 0;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (!isfinite(o->via.f64))
            break;
        *val = o->via.f64;
        return 0;
    default: break;
    }
    return hf_err_set(e, HF_EDATA, "model: hyperparameter \"%s\" is not a finite number", key);
}

static int unpack_param(const msgpack_object *q, nn_params *p, bool *seen, hf_err *e)
{
    if (q->type != MSGPACK_OBJECT_MAP)
        return hf_err_set(e, HF_EDATA, "model: params entry is not a map");
    const msgpack_object *name = nn_model_field(q, "name"), *data = nn_model_field(q, "data");
    uint32_t rows, cols;
    if (!name || name->type != MSGPACK_OBJECT_STR || name->via.str.size >= NN_NAME_MAX)
        return hf_err_set(e, HF_EDATA, "model: params entry without a valid name");
    char nm[NN_NAME_MAX];
    memcpy(nm, name->via.str.ptr, name->via.str.size);
    nm[name->via.str.size] = '\0';
    if (strlen(nm) != name->via.str.size)
        return hf_err_set(e, HF_EDATA, "model: parameter name contains NUL");
    if (!get_u32(q, "rows", &rows) || !get_u32(q, "cols", &cols))
        return hf_err_set(e, HF_EDATA, "model: parameter %s: rows/cols missing or not u32", nm);
    nn_param *t = nn_params_find(p, nm);
    if (!t)
        return hf_err_set(e, HF_EDATA, "model: unknown parameter %s", nm);
    size_t idx = (size_t)(t - p->v);
    if (seen[idx])
        return hf_err_set(e, HF_EDATA, "model: parameter %s appears twice", nm);
    if (t->w->rows != rows || t->w->cols != cols)
        return hf_err_set(e, HF_EDATA, "model: parameter %s is %ux%u, model wants %zux%zu", nm,
                          rows, cols, t->w->rows, t->w->cols);
    uint64_t n = (uint64_t)rows * cols;
    if (!data || data->type != MSGPACK_OBJECT_BIN || (uint64_t)data->via.bin.size != n * 4)
        return hf_err_set(e, HF_EDATA, "model: parameter %s: data is not %llu bytes of f32", nm,
                          (unsigned long long)(n * 4));
    const unsigned char *b = (const unsigned char *)data->via.bin.ptr;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 |
                     (uint32_t)b[4 * i + 2] << 16 | (uint32_t)b[4 * i + 3] << 24;
        float f;
        memcpy(&f, &u, 4);
        if (!isfinite(f))
            return hf_err_set(e, HF_EDATA, "model: parameter %s[%llu] is not finite", nm,
                              (unsigned long long)i);
        t->w->data[i] = f;
    }
    seen[idx] = true;
    return 0;
}

int nn_model_unpack_params(const msgpack_object *obj, const char *kind, nn_params *p, hf_err *e)
{
    if (obj->type != MSGPACK_OBJECT_MAP)
        return hf_err_set(e, HF_EDATA, "model: frame is not a map");
    const msgpack_object *t = nn_model_field(obj, "t"), *k = nn_model_field(obj, "kind");
    const msgpack_object *ps = nn_model_field(obj, "params");
    uint32_t v;
    if (!t || !str_eq(t, "model"))
        return hf_err_set(e, HF_EDATA, "model: frame type is not \"model\"");
    if (!k || !str_eq(k, kind))
        return hf_err_set(e, HF_EDATA, "model: kind is not \"%s\"", kind);
    if (!get_u32(obj, "v", &v) || v != NN_MODEL_VERSION)
        return hf_err_set(e, HF_EDATA, "model: unsupported version (want %d)", NN_MODEL_VERSION);
    if (!ps || ps->type != MSGPACK_OBJECT_ARRAY)
        return hf_err_set(e, HF_EDATA, "model: \"params\" missing or not an array");
    if (ps->via.array.size != p->n)
        return hf_err_set(e, HF_EDATA, "model: %u parameters, model has %zu", ps->via.array.size,
                          p->n);
    bool *seen = calloc(p->n ? p->n : 1, sizeof *seen);
    if (!seen)
        return hf_err_set(e, HF_ENOMEM, "nn: out of memory loading model");
    int rc = 0;
    for (uint32_t i = 0; !rc && i < ps->via.array.size; i++)
        rc = unpack_param(&ps->via.array.ptr[i], p, seen, e);
    free(seen);
    return rc;
}

/* ----------------------------------------------------------- graph layer */

int nn_graph_pack(nn_graph *g, msgpack_sbuffer *sb, hf_err *e)
{
    nn_params p;
    nn_params_init(&p);
    int rc = nn_graph_params(g, &p, e);
    nn_hparam hp[] = {
        {"d_node", (double)g->d_node}, {"d_msg", (double)g->d_msg}, {"heads", (double)g->heads}};
    if (!rc)
        rc = nn_model_pack(sb, "graph", hp, 3, &p, e);
    nn_params_free(&p);
    return rc;
}

static int get_dim(const msgpack_object *obj, const char *key, size_t *out, hf_err *e)
{
    double v;
    int rc = nn_model_hparam(obj, key, &v, e);
    if (rc)
        return rc;
    if (!(v >= 1 && v <= NN_IO_MAX_DIM && v == floor(v)))
        return hf_err_set(e, HF_EDATA, "model: %s = %g not an integer in [1, %u]", key, v,
                          NN_IO_MAX_DIM);
    *out = (size_t)v;
    return 0;
}

/* Total f32 values in the frame's params (bin sizes / 4), or UINT64_MAX if
 * the params are not an array of maps with bin data. */
static uint64_t frame_floats(const msgpack_object *obj)
{
    const msgpack_object *ps = nn_model_field(obj, "params");
    if (!ps || ps->type != MSGPACK_OBJECT_ARRAY)
        return UINT64_MAX;
    uint64_t total = 0;
    for (uint32_t i = 0; i < ps->via.array.size; i++) {
        const msgpack_object *q = &ps->via.array.ptr[i];
        const msgpack_object *d = q->type == MSGPACK_OBJECT_MAP ? nn_model_field(q, "data") : NULL;
        if (!d || d->type != MSGPACK_OBJECT_BIN)
            return UINT64_MAX;
        total += d->via.bin.size / 4;
    }
    return total;
}

int nn_graph_unpack(const msgpack_object *obj, nn_graph **out, hf_err *e)
{
    *out = NULL;
    size_t d_node, d_msg, heads;
    if (obj->type != MSGPACK_OBJECT_MAP)
        return hf_err_set(e, HF_EDATA, "model: frame is not a map");
    int rc = get_dim(obj, "d_node", &d_node, e);
    if (!rc)
        rc = get_dim(obj, "d_msg", &d_msg, e);
    if (!rc)
        rc = get_dim(obj, "heads", &heads, e);
    if (rc)
        return rc;
    if (d_msg % heads)
        return hf_err_set(e, HF_EDATA, "model: heads %zu does not divide d_msg %zu", heads, d_msg);
    /* The sizes must agree with the data actually in the frame before we
     * allocate for them, so a forged header cannot ask for gigabytes. */
    uint64_t n = d_node, m = d_msg;
    uint64_t want = (n * m + m) * 2 + (m * m + m) * 3 + (3 * n * m + 3 * n) + (3 * n * n + 3 * n);
    if (frame_floats(obj) != want)
        return hf_err_set(e, HF_EDATA, "model: frame data does not match d_node %zu, d_msg %zu",
                          d_node, d_msg);
    nn_rng rng;
    nn_rng_seed(&rng, 0); /* every parameter is overwritten below */
    nn_graph *g;
    rc = nn_graph_new(&g, d_node, d_msg, heads, &rng, e);
    if (rc)
        return rc;
    nn_params p;
    nn_params_init(&p);
    rc = nn_graph_params(g, &p, e);
    if (!rc)
        rc = nn_model_unpack_params(obj, "graph", &p, e);
    nn_params_free(&p);
    if (rc) {
        nn_graph_destroy(&g);
        return rc;
    }
    *out = g;
    return 0;
}
