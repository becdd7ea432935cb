/*
 * nav_memory.c - what a navigation policy keeps so that later training
 * does not forget it (nav-train --ewc, --replay, --distill; nav.h): the
 * summed diagonal Fisher of the tasks it was trained on, and a reservoir of
 * its past training queries; their pack and unpack as optional fields of
 * the nav-policy frame.
 *
 * The Fisher is the empirical one (squared per-sample gradients of the
 * cloning loss at the trained weights, on at most NAV_FISHER_SAMPLES
 * samples), one value per MLP weight, skip model then stop model, in the
 * kit's parameter order. Tasks add up (multi-task EWC): the penalty of the
 * next training is lambda/2 sum F (theta - theta*)^2 with theta* the
 * weights it starts from.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "nav.h"

size_t nav_mlp_scalars(const nav_mlp *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->seq->n; i++) {
        const nn_layer *a = m->seq->layers[i];
        n += (a->w ? nn_tensor_len(a->w) : 0) + (a->b ? nn_tensor_len(a->b) : 0);
    }
    return n;
}

float nav_mlp_logit(const nav_mlp *m, const float *x)
{
    float a[NAV_HIDDEN];
    for (size_t j = 0; j < NAV_HIDDEN; j++)
        a[j] = m->b1[j];
    for (size_t i = 0; i < m->f; i++)
        for (size_t j = 0; j < NAV_HIDDEN; j++)
            a[j] += m->w1[i * NAV_HIDDEN + j] * x[i];
    float o = m->b2;
    for (size_t j = 0; j < NAV_HIDDEN; j++)
        o += m->w2[j] * (a[j] > 0 ? a[j] : 0.0f);
    return o;
}

int nav_ewc_new(nav_mlp *m, const float *fisher, nn_ewc **out, hf_err *e)
{
    nn_params pp;
    nn_params_init(&pp);
    int rc = nn_seq_params(m->seq, "", &pp, e);
    if (!rc)
        rc = nn_ewc_new(out, &pp, e);
    for (size_t i = 0, o = 0; !rc && fisher && i < pp.n; i++) {
        size_t n = nn_tensor_len(pp.v[i].w);
        memcpy((*out)->fisher[i]->data, fisher + o, n * sizeof(float));
        rc = nn_tensor_copy((*out)->star[i], pp.v[i].w, e);
        o += n;
    }
    if (!rc && fisher)
        (*out)->consolidated = true;
    nn_params_free(&pp);
    return rc;
}

int nav_fisher_add(nav_mlp *m, nn_ewc *w, const float *x, const float *y, size_t n, uint64_t seed,
                   hf_err *e)
{
    if (n == 0)
        return 0;
    nn_params pp;
    nn_params_init(&pp);
    nn_tensor *xb = nn_tensor_new(1, m->f), *dy = nn_tensor_new(1, 1);
    int rc = !xb || !dy ? hf_err_set(e, HF_ENOMEM, "out of memory for the Fisher estimate") : 0;
    if (!rc)
        rc = nn_seq_params(m->seq, "", &pp, e);
    nn_rng rg;
    nn_rng_seed(&rg, seed);
    size_t take = n < NAV_FISHER_SAMPLES ? n : NAV_FISHER_SAMPLES;
    for (size_t s = 0; s < take && !rc; s++) {
        size_t i = take == n ? s : (size_t)nn_rng_below(&rg, n);
        memcpy(xb->data, x + i * m->f, m->f * sizeof(float));
        const nn_tensor *out = NULL, *dx = NULL;
        if ((rc = nn_seq_forward(m->seq, xb, true, &out, e)))
            break;
        double z = out->data[0];
        dy->data[0] = (float)(1.0 / (1.0 + exp(-z)) - y[i]);
        nn_params_zero_grad(&pp);
        if ((rc = nn_seq_backward(m->seq, dy, &dx, e)) || (rc = nn_ewc_accumulate(w, &pp, e)))
            break;
    }
    if (!rc)
        rc = nn_ewc_consolidate(w, &pp, e);
    nn_params_free(&pp);
    nn_tensor_destroy(&xb);
    nn_tensor_destroy(&dy);
    return rc;
}

int nav_memory_set_fisher(nav_policy *p, const nn_ewc *skip, const nn_ewc *stop, uint32_t tasks,
                          hf_err *e)
{
    size_t n = nav_mlp_scalars(&p->skip) + nav_mlp_scalars(&p->stop);
    float *f = realloc(p->fisher, n * sizeof *f);
    if (!f)
        return hf_err_set(e, HF_ENOMEM, "out of memory for the Fisher information");
    size_t o = 0;
    const nn_ewc *w[2] = {skip, stop};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < w[k]->n; i++) {
            size_t len = nn_tensor_len(w[k]->fisher[i]);
            memcpy(f + o, w[k]->fisher[i]->data, len * sizeof(float));
            o += len;
        }
    p->fisher = f;
    p->nfisher = n;
    p->tasks = tasks;
    return 0;
}

int nav_memory_reservoir(nav_policy *p, const nav_policy *from, const float *q, size_t nq,
                         size_t cap, uint64_t seed, hf_err *e)
{
    free(p->replay);
    p->replay = NULL;
    p->nreplay = 0;
    p->replay_seen = 0;
    if (cap == 0)
        return 0;
    nn_replay *r = NULL;
    int rc = nn_replay_new(&r, cap, p->dim * sizeof(float), seed, e);
    if (rc)
        return rc;
    /* the old reservoir is a uniform sample of replay_seen queries: keep
     * (a uniform part of) it, then go on with Vitter's algorithm R */
    if (from && from->nreplay && from->dim == p->dim) {
        for (size_t i = 0; i < from->nreplay; i++)
            nn_replay_add(r, from->replay + i * p->dim);
        if (from->replay_seen > r->seen)
            r->seen = from->replay_seen;
    }
    for (size_t i = 0; i < nq; i++)
        nn_replay_add(r, q + i * p->dim);
    p->replay = malloc(r->len * p->dim * sizeof(float) + 1);
    if (!p->replay)
        rc = hf_err_set(e, HF_ENOMEM, "out of memory for the replay reservoir");
    else {
        memcpy(p->replay, r->items, r->len * p->dim * sizeof(float));
        p->nreplay = r->len;
        p->replay_seen = r->seen;
    }
    nn_replay_destroy(&r);
    return rc;
}

uint32_t nav_memory_pack(const nav_policy *p, msgpack_packer *pk)
{
    uint32_t pairs = 0;
    if (p->fisher) {
        frame_pack_str(pk, "fisher");
        msgpack_pack_bin(pk, p->nfisher * sizeof(float));
        msgpack_pack_bin_body(pk, p->fisher, p->nfisher * sizeof(float));
        frame_pack_str(pk, "tasks");
        msgpack_pack_uint32(pk, p->tasks);
        pairs += 2;
    }
    if (p->replay) {
        frame_pack_str(pk, "replay");
        msgpack_pack_bin(pk, p->nreplay * p->dim * sizeof(float));
        msgpack_pack_bin_body(pk, p->replay, p->nreplay * p->dim * sizeof(float));
        frame_pack_str(pk, "replay_seen");
        msgpack_pack_uint64(pk, p->replay_seen);
        pairs += 2;
    }
    return pairs;
}

/* An optional bin of f32 values; *out a finite copy (NULL when absent). */
static int take_f32(const msgpack_object *obj, const char *key, size_t unit, float **out, size_t *n,
                    hf_err *e)
{
    *out = NULL;
    *n = 0;
    const msgpack_object *b = nn_model_field(obj, key);
    if (!b)
        return 0;
    if (b->type != MSGPACK_OBJECT_BIN || b->via.bin.size % (unit * sizeof(float)) != 0)
        return hf_err_set(e, HF_EDATA, "nav-policy model: \"%s\" is not a bin of %zu-float rows",
                          key, unit);
    size_t len = b->via.bin.size / sizeof(float);
    float *v = malloc(len * sizeof *v + 1);
    if (!v)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    memcpy(v, b->via.bin.ptr, len * sizeof *v);
    for (size_t i = 0; i < len; i++)
        if (!isfinite(v[i])) {
            free(v);
            return hf_err_set(e, HF_EDATA, "nav-policy model: \"%s\" holds a non-finite value",
                              key);
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

int nav_memory_unpack(const msgpack_object *obj, nav_policy *p, hf_err *e)
{
    size_t want = nav_mlp_scalars(&p->skip) + nav_mlp_scalars(&p->stop);
    int rc = take_f32(obj, "fisher", 1, &p->fisher, &p->nfisher, e);
    if (!rc && p->fisher && p->nfisher != want)
        rc = hf_err_set(e, HF_EDATA, "nav-policy model: \"fisher\" has %zu values, the MLPs %zu",
                        p->nfisher, want);
    for (size_t i = 0; !rc && i < p->nfisher; i++)
        if (p->fisher[i] < 0)
            rc = hf_err_set(e, HF_EDATA, "nav-policy model: \"fisher\" holds a negative value");
    if (!rc)
        rc = take_f32(obj, "replay", p->dim, &p->replay, &p->nreplay, e);
    p->tasks = (uint32_t)get_u64(obj, "tasks");
    p->replay_seen = get_u64(obj, "replay_seen");
    if (p->replay_seen < p->nreplay)
        p->replay_seen = p->nreplay;
    return rc;
}
