/*
 * nn_attention.c - multi-head attention of one query per row over a masked
 * set of K key/value vectors (a node's neighbours, padded to K).
 *
 * Invariants: the query, key, value and output projections are Linear
 * layers (so their backward and parameter lists come from nn_layers.c);
 * alpha holds, for every row b and head h, K weights that sum to 1 over the
 * real slots and are exactly 0 on padded ones (all 0 when a row has no real
 * slot). The mask is copied at forward so backward does not depend on the
 * caller's buffer. Scores are scaled by 1/sqrt(d_head) as usual.
 */
#include "nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int nn_attn_new(nn_attn **out, size_t d_q, size_t d_kv, size_t d_model, size_t heads, nn_rng *rng,
                hf_err *e)
{
    *out = NULL;
    if (!d_q || !d_kv || !d_model || !heads || d_model % heads)
        return hf_err_set(e, HF_EUSAGE, "nn: attention needs heads (%zu) dividing d_model (%zu)",
                          heads, d_model);
    nn_attn *a = calloc(1, sizeof *a);
    if (!a)
        return hf_err_set(e, HF_ENOMEM, "nn: out of memory for attention");
    a->d_q = d_q;
    a->d_kv = d_kv;
    a->d_model = d_model;
    a->heads = heads;
    a->d_head = d_model / heads;
    int rc = nn_linear_new(&a->wq, d_q, d_model, NN_INIT_XAVIER, rng, e);
    if (!rc)
        rc = nn_linear_new(&a->wk, d_kv, d_model, NN_INIT_XAVIER, rng, e);
    if (!rc)
        rc = nn_linear_new(&a->wv, d_kv, d_model, NN_INIT_XAVIER, rng, e);
    if (!rc)
        rc = nn_linear_new(&a->wo, d_model, d_model, NN_INIT_XAVIER, rng, e);
    if (!rc) {
        a->alpha = nn_tensor_new(0, 0);
        a->ctx = nn_tensor_new(0, 0);
        a->dq = nn_tensor_new(0, 0);
        a->dk = nn_tensor_new(0, 0);
        a->dv = nn_tensor_new(0, 0);
        a->dkv = nn_tensor_new(0, 0);
        if (!a->alpha || !a->ctx || !a->dq || !a->dk || !a->dv || !a->dkv)
            rc = hf_err_set(e, HF_ENOMEM, "nn: out of memory for attention");
    }
    if (rc) {
        nn_attn_destroy(&a);
        return rc;
    }
    *out = a;
    return 0;
}

void nn_attn_destroy(nn_attn **self_p)
{
    if (!self_p || !*self_p)
        return;
    nn_attn *a = *self_p;
    nn_layer_destroy(&a->wq);
    nn_layer_destroy(&a->wk);
    nn_layer_destroy(&a->wv);
    nn_layer_destroy(&a->wo);
    nn_tensor_destroy(&a->alpha);
    nn_tensor_destroy(&a->ctx);
    nn_tensor_destroy(&a->dq);
    nn_tensor_destroy(&a->dk);
    nn_tensor_destroy(&a->dv);
    nn_tensor_destroy(&a->dkv);
    free(a->mask);
    free(a);
    *self_p = NULL;
}

int nn_attn_forward(nn_attn *a, const nn_tensor *q, const nn_tensor *kv, const uint8_t *mask,
                    size_t k, const nn_tensor **out, hf_err *e)
{
    size_t b = q->rows;
    if (k == 0 || q->cols != a->d_q || kv->cols != a->d_kv || kv->rows != b * k)
        return hf_err_set(e, HF_EUSAGE,
                          "nn: attention wants q Bx%zu and kv (B*K)x%zu, got %zux%zu, %zux%zu "
                          "with K=%zu",
                          a->d_q, a->d_kv, q->rows, q->cols, kv->rows, kv->cols, k);
    if (b * k > a->mask_cap) {
        uint8_t *m = realloc(a->mask, b * k);
        if (!m)
            return hf_err_set(e, HF_ENOMEM, "nn: out of memory for attention mask");
        a->mask = m;
        a->mask_cap = b * k;
    }
    if (mask)
        memcpy(a->mask, mask, b * k);
    else
        memset(a->mask, 1, b * k);
    a->b = b;
    a->k = k;

    const nn_tensor *Q, *K, *V, *O;
    int rc = nn_layer_forward(a->wq, q, true, &Q, e);
    if (!rc)
        rc = nn_layer_forward(a->wk, kv, true, &K, e);
    if (!rc)
        rc = nn_layer_forward(a->wv, kv, true, &V, e);
    if (!rc)
        rc = nn_tensor_resize(a->alpha, b, a->heads * k, e);
    if (!rc)
        rc = nn_tensor_resize(a->ctx, b, a->d_model, e);
    if (rc)
        return rc;
    nn_tensor_zero(a->ctx);
    nn_tensor_zero(a->alpha);

    size_t dh = a->d_head;
    float scale = 1.0f / sqrtf((float)dh);
    for (size_t i = 0; i < b; i++) {
        const uint8_t *mi = a->mask + i * k;
        for (size_t h = 0; h < a->heads; h++) {
            const float *qh = nn_row(Q, i) + h * dh;
            float *al = nn_row(a->alpha, i) + h * k;
            float mx = -INFINITY;
            for (size_t j = 0; j < k; j++) {
                if (!mi[j])
                    continue;
                const float *kh = nn_row(K, i * k + j) + h * dh;
                float s = 0.0f;
                for (size_t t = 0; t < dh; t++)
                    s += qh[t] * kh[t];
                al[j] = s * scale;
                mx = al[j] > mx ? al[j] : mx;
            }
            if (mx == -INFINITY)
                continue; /* no real neighbour: weights stay 0 */
            double sum = 0.0;
            for (size_t j = 0; j < k; j++)
                if (mi[j]) {
                    al[j] = expf(al[j] - mx);
                    sum += al[j];
                }
            float inv = (float)(1.0 / sum);
            float *ch = nn_row(a->ctx, i) + h * dh;
            for (size_t j = 0; j < k; j++) {
                if (!mi[j])
                    continue;
                al[j] *= inv;
                const float *vh = nn_row(V, i * k + j) + h * dh;
                for (size_t t = 0; t < dh; t++)
                    ch[t] += al[j] * vh[t];
            }
        }
    }
    rc = nn_layer_forward(a->wo, a->ctx, true, &O, e);
    if (rc)
        return rc;
    *out = O;
    return 0;
}

int nn_attn_backward(nn_attn *a, const nn_tensor *dout, const nn_tensor **dq, const nn_tensor **dkv,
                     hf_err *e)
{
    const nn_tensor *dctx, *dx;
    int rc = nn_layer_backward(a->wo, dout, &dctx, e);
    if (rc)
        return rc;
    size_t b = a->b, k = a->k, dh = a->d_head, dm = a->d_model;
    const nn_tensor *Q = a->wq->y, *K = a->wk->y, *V = a->wv->y;
    rc = nn_tensor_resize(a->dq, b, dm, e);
    if (!rc)
        rc = nn_tensor_resize(a->dk, b * k, dm, e);
    if (!rc)
        rc = nn_tensor_resize(a->dv, b * k, dm, e);
    if (rc)
        return rc;
    nn_tensor_zero(a->dq);
    nn_tensor_zero(a->dk);
    nn_tensor_zero(a->dv);
    float scale = 1.0f / sqrtf((float)dh);
    for (size_t i = 0; i < b; i++) {
        const uint8_t *mi = a->mask + i * k;
        for (size_t h = 0; h < a->heads; h++) {
            const float *al = nn_row(a->alpha, i) + h * k;
            const float *dc = nn_row(dctx, i) + h * dh;
            const float *qh = nn_row(Q, i) + h * dh;
            float *dqh = nn_row(a->dq, i) + h * dh;
            /* dalpha_j = dc . v_j; dscore_j = alpha_j (dalpha_j - sum alpha dalpha) */
            double dot = 0.0;
            for (size_t j = 0; j < k; j++) {
                if (!mi[j])
                    continue;
                const float *vh = nn_row(V, i * k + j) + h * dh;
                float *dvh = nn_row(a->dv, i * k + j) + h * dh;
                float da = 0.0f;
                for (size_t t = 0; t < dh; t++) {
                    da += dc[t] * vh[t];
                    dvh[t] += al[j] * dc[t];
                }
                dot += (double)al[j] * da;
            }
            for (size_t j = 0; j < k; j++) {
                if (!mi[j] || al[j] == 0.0f)
                    continue;
                const float *vh = nn_row(V, i * k + j) + h * dh;
                const float *kh = nn_row(K, i * k + j) + h * dh;
                float *dkh = nn_row(a->dk, i * k + j) + h * dh;
                float da = 0.0f;
                for (size_t t = 0; t < dh; t++)
                    da += dc[t] * vh[t];
                float ds = al[j] * (da - (float)dot) * scale;
                for (size_t t = 0; t < dh; t++) {
                    dqh[t] += ds * kh[t];
                    dkh[t] += ds * qh[t];
                }
            }
        }
    }
    rc = nn_layer_backward(a->wq, a->dq, dq, e);
    if (!rc)
        rc = nn_layer_backward(a->wk, a->dk, &dx, e);
    if (!rc)
        rc = nn_tensor_copy(a->dkv, dx, e);
    if (!rc)
        rc = nn_layer_backward(a->wv, a->dv, &dx, e);
    if (rc)
        return rc;
    for (size_t i = 0, n = nn_tensor_len(dx); i < n; i++)
        a->dkv->data[i] += dx->data[i];
    *dkv = a->dkv;
    return 0;
}

int nn_attn_params(nn_attn *a, const char *prefix, nn_params *p, hf_err *e)
{
    static const char *const names[4] = {"q.", "k.", "v.", "o."};
    nn_layer *ls[4] = {a->wq, a->wk, a->wv, a->wo};
    for (int i = 0; i < 4; i++) {
        char pre[NN_NAME_MAX];
        snprintf(pre, sizeof pre, "%s%s", prefix ? prefix : "", names[i]);
        int rc = nn_layer_params(ls[i], pre, p, e);
        if (rc)
            return rc;
    }
    return 0;
}
