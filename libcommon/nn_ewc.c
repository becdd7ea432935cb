/*
 * nn_ewc.c - elastic weight consolidation: a diagonal Fisher estimate and a
 * snapshot theta* per parameter, and the quadratic penalty that keeps
 * later training near theta* where the old task's loss is sensitive.
 *
 * Invariants: fisher, acc and star line up one-to-one with the parameter
 * list given to nn_ewc_new (checked by count and size on every call).
 * acc sums squared per-sample gradients until consolidate folds their mean
 * into fisher (which thus adds up over tasks, as in multi-task EWC) and
 * resets it. The empirical Fisher is used: squared gradients of the
 * training loss, the usual cheap estimate.
 */
#include "nn.h"

#include <stdlib.h>

static int check(const nn_ewc *w, const nn_params *p, hf_err *e)
{
    if (p->n != w->n)
        return hf_err_set(e, HF_EUSAGE, "nn: EWC built for %zu parameters, given %zu", w->n, p->n);
    for (size_t i = 0; i < p->n; i++)
        if (nn_tensor_len(p->v[i].w) != nn_tensor_len(w->fisher[i]))
            return hf_err_set(e, HF_EUSAGE, "nn: EWC: parameter %s changed shape", p->v[i].name);
    return 0;
}

int nn_ewc_new(nn_ewc **out, const nn_params *p, hf_err *e)
{
    *out = NULL;
    nn_ewc *w = calloc(1, sizeof *w);
    if (!w)
        return hf_err_set(e, HF_ENOMEM, "nn: out of memory for EWC");
    w->n = p->n;
    size_t n = p->n ? p->n : 1;
    w->fisher = calloc(n, sizeof *w->fisher);
    w->acc = calloc(n, sizeof *w->acc);
    w->star = calloc(n, sizeof *w->star);
    int bad = !w->fisher || !w->acc || !w->star;
    for (size_t i = 0; !bad && i < p->n; i++) {
        size_t r = p->v[i].w->rows, c = p->v[i].w->cols;
        w->fisher[i] = nn_tensor_new(r, c);
        w->acc[i] = nn_tensor_new(r, c);
        w->star[i] = nn_tensor_new(r, c);
        bad = !w->fisher[i] || !w->acc[i] || !w->star[i];
    }
    if (bad) {
        nn_ewc_destroy(&w);
        return hf_err_set(e, HF_ENOMEM, "nn: out of memory for EWC");
    }
    *out = w;
    return 0;
}

void nn_ewc_destroy(nn_ewc **self_p)
{
    if (!self_p || !*self_p)
        return;
    nn_ewc *w = *self_p;
    for (size_t i = 0; i < w->n; i++) {
        if (w->fisher)
            nn_tensor_destroy(&w->fisher[i]);
        if (w->acc)
            nn_tensor_destroy(&w->acc[i]);
        if (w->star)
            nn_tensor_destroy(&w->star[i]);
    }
    free(w->fisher);
    free(w->acc);
    free(w->star);
    free(w);
    *self_p = NULL;
}

int nn_ewc_accumulate(nn_ewc *w, const nn_params *p, hf_err *e)
{
    int rc = check(w, p, e);
    if (rc)
        return rc;
    for (size_t i = 0; i < p->n; i++) {
        const float *g = p->v[i].g->data;
        float *a = w->acc[i]->data;
        for (size_t j = 0, n = nn_tensor_len(p->v[i].g); j < n; j++)
            a[j] += g[j] * g[j];
    }
    w->samples++;
    return 0;
}

int nn_ewc_consolidate(nn_ewc *w, const nn_params *p, hf_err *e)
{
    int rc = check(w, p, e);
    if (rc)
        return rc;
    if (w->samples == 0)
        return hf_err_set(e, HF_EUSAGE, "nn: EWC consolidate with no accumulated samples");
    float inv = 1.0f / (float)w->samples;
    for (size_t i = 0; i < p->n; i++) {
        float *f = w->fisher[i]->data, *a = w->acc[i]->data;
        for (size_t j = 0, n = nn_tensor_len(w->fisher[i]); j < n; j++)
            f[j] += a[j] * inv;
        nn_tensor_zero(w->acc[i]);
        rc = nn_tensor_copy(w->star[i], p->v[i].w, e);
        if (rc)
            return rc;
    }
    w->samples = 0;
    w->consolidated = true;
    return 0;
}

int nn_ewc_penalty(const nn_ewc *w, nn_params *p, float lambda, float *penalty, hf_err *e)
{
    int rc = check(w, p, e);
    if (rc)
        return rc;
    *penalty = 0.0f;
    if (!w->consolidated)
        return 0;
    double s = 0.0;
    for (size_t i = 0; i < p->n; i++) {
        const float *f = w->fisher[i]->data, *st = w->star[i]->data, *th = p->v[i].w->data;
        float *g = p->v[i].g->data;
        for (size_t j = 0, n = nn_tensor_len(p->v[i].w); j < n; j++) {
            float d = th[j] - st[j];
            s += (double)f[j] * d * d;
            g[j] += lambda * f[j] * d;
        }
    }
    *penalty = (float)(0.5 * lambda * s);
    return 0;
}
