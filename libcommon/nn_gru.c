/*
 * nn_gru.c - a GRU cell, PyTorch's formulation (reset gate applied to
 * Wh_n h + b_hn, not to h), so weights could be compared with a reference.
 *
 * Invariants: the input and hidden projections are two Linear layers with
 * 3*d_h outputs in gate order r, z, n; forward keeps r, z, n, the hidden
 * part of the n gate (ghn) and a copy of h, which is all backward needs.
 */
#include "nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int nn_gru_new(nn_gru **out, size_t d_in, size_t d_h, nn_rng *rng, hf_err *e)
{
    *out = NULL;
    if (!d_in || !d_h)
        return hf_err_set(e, HF_EUSAGE, "nn: GRU needs nonzero sizes");
    nn_gru *g = calloc(1, sizeof *g);
    if (!g)
        return hf_err_set(e, HF_ENOMEM, "nn: out of memory for GRU");
    g->d_in = d_in;
    g->d_h = d_h;
    int rc = nn_linear_new(&g->wi, d_in, 3 * d_h, NN_INIT_XAVIER, rng, e);
    if (!rc)
        rc = nn_linear_new(&g->wh, d_h, 3 * d_h, NN_INIT_XAVIER, rng, e);
    if (!rc) {
        nn_tensor **ts[] = {&g->h0,  &g->r,   &g->z,   &g->n, &g->ghn,
                            &g->out, &g->dgi, &g->dgh, &g->dh};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
            if (!(*ts[i] = nn_tensor_new(0, 0)))
                rc = hf_err_set(e, HF_ENOMEM, "nn: out of memory for GRU");
    }
    if (rc) {
        nn_gru_destroy(&g);
        return rc;
    }
    *out = g;
    return 0;
}

void nn_gru_destroy(nn_gru **self_p)
{
    if (!self_p || !*self_p)
        return;
    nn_gru *g = *self_p;
    nn_layer_destroy(&g->wi);
    nn_layer_destroy(&g->wh);
    nn_tensor **ts[] = {&g->h0, &g->r, &g->z, &g->n, &g->ghn, &g->out, &g->dgi, &g->dgh, &g->dh};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        nn_tensor_destroy(ts[i]);
    free(g);
    *self_p = NULL;
}

static float sigm(float x)
{
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float z = expf(x);
    return z / (1.0f + z);
}

int nn_gru_forward(nn_gru *g, const nn_tensor *x, const nn_tensor *h, const nn_tensor **hout,
                   hf_err *e)
{
    size_t b = x->rows, d = g->d_h;
    if (h->rows != b || h->cols != d || x->cols != g->d_in)
        return hf_err_set(e, HF_EUSAGE, "nn: GRU wants x Bx%zu and h Bx%zu, got %zux%zu, %zux%zu",
                          g->d_in, d, x->rows, x->cols, h->rows, h->cols);
    const nn_tensor *gi, *gh;
    int rc = nn_layer_forward(g->wi, x, true, &gi, e);
    if (!rc)
        rc = nn_layer_forward(g->wh, h, true, &gh, e);
    if (!rc)
        rc = nn_tensor_copy(g->h0, h, e);
    nn_tensor *ts[] = {g->r, g->z, g->n, g->ghn, g->out};
    for (size_t i = 0; !rc && i < sizeof ts / sizeof ts[0]; i++)
        rc = nn_tensor_resize(ts[i], b, d, e);
    if (rc)
        return rc;
    for (size_t i = 0; i < b; i++) {
        const float *a = nn_row(gi, i), *c = nn_row(gh, i), *hp = nn_row(h, i);
        float *r = nn_row(g->r, i), *z = nn_row(g->z, i), *n = nn_row(g->n, i);
        float *ghn = nn_row(g->ghn, i), *o = nn_row(g->out, i);
        for (size_t j = 0; j < d; j++) {
            r[j] = sigm(a[j] + c[j]);
            z[j] = sigm(a[d + j] + c[d + j]);
            ghn[j] = c[2 * d + j];
            n[j] = tanhf(a[2 * d + j] + r[j] * ghn[j]);
            o[j] = (1.0f - z[j]) * n[j] + z[j] * hp[j];
        }
    }
    *hout = g->out;
    return 0;
}

int nn_gru_backward(nn_gru *g, const nn_tensor *dhout, const nn_tensor **dx, const nn_tensor **dh,
                    hf_err *e)
{
    size_t b = g->out->rows, d = g->d_h;
    if (dhout->rows != b || dhout->cols != d)
        return hf_err_set(e, HF_EUSAGE, "nn: GRU backward does not match the last forward");
    int rc = nn_tensor_resize(g->dgi, b, 3 * d, e);
    if (!rc)
        rc = nn_tensor_resize(g->dgh, b, 3 * d, e);
    if (!rc)
        rc = nn_tensor_resize(g->dh, b, d, e);
    if (rc)
        return rc;
    for (size_t i = 0; i < b; i++) {
        const float *dy = nn_row(dhout, i), *hp = nn_row(g->h0, i);
        const float *r = nn_row(g->r, i), *z = nn_row(g->z, i), *n = nn_row(g->n, i);
        const float *ghn = nn_row(g->ghn, i);
        float *di = nn_row(g->dgi, i), *dg = nn_row(g->dgh, i), *dhp = nn_row(g->dh, i);
        for (size_t j = 0; j < d; j++) {
            float dn = dy[j] * (1.0f - z[j]) * (1.0f - n[j] * n[j]);
            float dz = dy[j] * (hp[j] - n[j]) * z[j] * (1.0f - z[j]);
            float dr = dn * ghn[j] * r[j] * (1.0f - r[j]);
            di[j] = dg[j] = dr;
            di[d + j] = dg[d + j] = dz;
            di[2 * d + j] = dn;
            dg[2 * d + j] = dn * r[j];
            dhp[j] = dy[j] * z[j];
        }
    }
    const nn_tensor *dhh;
    rc = nn_layer_backward(g->wi, g->dgi, dx, e);
    if (!rc)
        rc = nn_layer_backward(g->wh, g->dgh, &dhh, e);
    if (rc)
        return rc;
    for (size_t i = 0, n = b * d; i < n; i++)
        g->dh->data[i] += dhh->data[i];
    *dh = g->dh;
    return 0;
}

int nn_gru_params(nn_gru *g, const char *prefix, nn_params *p, hf_err *e)
{
    char pre[NN_NAME_MAX];
    snprintf(pre, sizeof pre, "%si.", prefix ? prefix : "");
    int rc = nn_layer_params(g->wi, pre, p, e);
    if (rc)
        return rc;
    snprintf(pre, sizeof pre, "%sh.", prefix ? prefix : "");
    return nn_layer_params(g->wh, pre, p, e);
}
