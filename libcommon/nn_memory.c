/*
 * nn_memory.c - see nn.h, "memory": the Fisher and the query reservoir a
 * learned model keeps, their pack and unpack as optional model-frame
 * pairs, and the EWC state built from a stored Fisher.
 *
 * Tasks add up (multi-task EWC): a model trained from another keeps the
 * sum of both Fishers, and the penalty of its next training is
 * lambda/2 sum F (theta - theta*)^2 around the weights it starts from.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "nn.h"

void nn_memory_free(nn_memory *m)
{
    free(m->fisher);
    free(m->replay);
    memset(m, 0, sizeof *m);
}

uint32_t nn_memory_pack(const nn_memory *m, msgpack_packer *pk)
{
    uint32_t pairs = 0;
    if (m->fisher) {
        frame_pack_str(pk, "fisher");
        msgpack_pack_bin(pk, m->nfisher * sizeof(float));
        msgpack_pack_bin_body(pk, m->fisher, m->nfisher * sizeof(float));
        frame_pack_str(pk, "tasks");
        msgpack_pack_uint32(pk, m->tasks);
        pairs += 2;
    }
    if (m->replay) {
        frame_pack_str(pk, "replay");
        msgpack_pack_bin(pk, m->nreplay * m->dim * sizeof(float));
        msgpack_pack_bin_body(pk, m->replay, m->nreplay * m->dim * sizeof(float));
        frame_pack_str(pk, "replay_seen");
        msgpack_pack_uint64(pk, m->replay_seen);
        pairs += 2;
    }
    return pairs;
}

/* An optional bin of f32 rows of `unit` values; *out a finite copy. */
static int take_f32(const msgpack_object *obj, const char *what, const char *key, size_t unit,
                    float **out, size_t *n, hf_err *e)
{
    *out = NULL;
    *n = 0;
    const msgpack_object *b = nn_model_field(obj, key);
    if (!b)
        return 0;
    if (b->type != MSGPACK_OBJECT_BIN || b->via.bin.size % (unit * sizeof(float)) != 0)
        return hf_err_set(e, HF_EDATA, "%s: \"%s\" is not a bin of %zu-float rows", what, key,
                          unit);
    size_t len = b->via.bin.size / sizeof(float);
    float *v = malloc(len * sizeof *v + 1);
    if (!v)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    memcpy(v, b->via.bin.ptr, len * sizeof *v);
    for (size_t i = 0; i < len; i++)
        if (!isfinite(v[i])) {
            free(v);
            return hf_err_set(e, HF_EDATA, "%s: \"%s\" holds a non-finite value", what, key);
        }
    *out = v;
    *n = len / unit;
    return 0;
}

static uint64_t get_u64(const msgpack_object *obj, const char *key)
{
    const msgpack_object *v = nn_model_field(obj, key);
    return v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 0;
}

int nn_memory_unpack(const msgpack_object *obj, const char *what, size_t nfisher, size_t dim,
                     nn_memory *m, hf_err *e)
{
    memset(m, 0, sizeof *m);
    m->dim = dim;
    int rc = take_f32(obj, what, "fisher", 1, &m->fisher, &m->nfisher, e);
    if (!rc && m->fisher && m->nfisher != nfisher)
        rc = hf_err_set(e, HF_EDATA, "%s: \"fisher\" has %zu values, the model's weights %zu", what,
                        m->nfisher, nfisher);
    for (size_t i = 0; !rc && i < m->nfisher; i++)
        if (m->fisher[i] < 0)
            rc = hf_err_set(e, HF_EDATA, "%s: \"fisher\" holds a negative value", what);
    if (!rc)
        rc = take_f32(obj, what, "replay", dim, &m->replay, &m->nreplay, e);
    m->tasks = (uint32_t)get_u64(obj, "tasks");
    m->replay_seen = get_u64(obj, "replay_seen");
    if (m->replay_seen < m->nreplay)
        m->replay_seen = m->nreplay;
    if (rc)
        nn_memory_free(m);
    return rc;
}

int nn_memory_reservoir(nn_memory *m, const nn_memory *old, const float *q, size_t nq, size_t dim,
                        size_t cap, uint64_t seed, hf_err *e)
{
    free(m->replay);
    m->replay = NULL;
    m->nreplay = 0;
    m->replay_seen = 0;
    m->dim = dim;
    if (cap == 0)
        return 0;
    nn_replay *r = NULL;
    int rc = nn_replay_new(&r, cap, dim * sizeof(float), seed, e);
    if (rc)
        return rc;
    /* the old reservoir is a uniform sample of replay_seen queries: keep
     * (a uniform part of) it, then go on with algorithm R */
    if (old && old->nreplay && old->dim == dim) {
        for (size_t i = 0; i < old->nreplay; i++)
            nn_replay_add(r, old->replay + i * dim);
        if (old->replay_seen > r->seen)
            r->seen = old->replay_seen;
    }
    for (size_t i = 0; i < nq; i++)
        nn_replay_add(r, q + i * dim);
    m->replay = malloc(r->len * dim * sizeof(float) + 1);
    if (!m->replay)
        rc = hf_err_set(e, HF_ENOMEM, "out of memory for the replay reservoir");
    else {
        memcpy(m->replay, r->items, r->len * dim * sizeof(float));
        m->nreplay = r->len;
        m->replay_seen = r->seen;
    }
    nn_replay_destroy(&r);
    return rc;
}

int nn_memory_set_fisher(nn_memory *m, nn_ewc *const *w, size_t n, uint32_t tasks, hf_err *e)
{
    size_t total = 0;
    for (size_t k = 0; k < n; k++)
        for (size_t i = 0; i < w[k]->n; i++)
            total += nn_tensor_len(w[k]->fisher[i]);
    float *f = realloc(m->fisher, total * sizeof *f + 1);
    if (!f)
        return hf_err_set(e, HF_ENOMEM, "out of memory for the Fisher information");
    size_t o = 0;
    for (size_t k = 0; k < n; k++)
        for (size_t i = 0; i < w[k]->n; i++) {
            size_t len = nn_tensor_len(w[k]->fisher[i]);
            memcpy(f + o, w[k]->fisher[i]->data, len * sizeof(float));
            o += len;
        }
    m->fisher = f;
    m->nfisher = total;
    m->tasks = tasks;
    return 0;
}

int nn_ewc_from(const nn_params *p, const float *fisher, nn_ewc **out, hf_err *e)
{
    int rc = nn_ewc_new(out, p, e);
    for (size_t i = 0, o = 0; !rc && fisher && i < p->n; i++) {
        size_t n = nn_tensor_len(p->v[i].w);
        memcpy((*out)->fisher[i]->data, fisher + o, n * sizeof(float));
        rc = nn_tensor_copy((*out)->star[i], p->v[i].w, e);
        o += n;
    }
    if (!rc && fisher)
        (*out)->consolidated = true;
    return rc;
}
