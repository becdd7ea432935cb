/*
 * nn_tensor.c - row-major f32 matrices, the BLAS wrapper, parameter lists.
 *
 * Invariants: data is 64-byte aligned and holds cap >= rows*cols floats;
 * every side fits in an int because OpenBLAS's cblas takes int sizes. A
 * tensor only grows (resize reuses the block when it is big enough), so the
 * per-batch scratch tensors layers keep stop allocating after warm-up.
 */
#include "nn.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool shape_ok(size_t rows, size_t cols)
{
    if (rows > INT_MAX || cols > INT_MAX)
        return false;
    if (cols && rows > SIZE_MAX / sizeof(float) / cols)
        return false;
    return true;
}

static float *alloc_floats(size_t n)
{
    size_t bytes = n * sizeof(float);
    bytes = (bytes + 63) & ~(size_t)63;
    if (bytes == 0)
        bytes = 64;
    return aligned_alloc(64, bytes);
}

nn_tensor *nn_tensor_new(size_t rows, size_t cols)
{
    if (!shape_ok(rows, cols))
        return NULL;
    nn_tensor *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    size_t n = rows * cols;
    t->data = alloc_floats(n);
    if (!t->data) {
        free(t);
        return NULL;
    }
    memset(t->data, 0, n * sizeof(float));
    t->rows = rows;
    t->cols = cols;
    t->cap = n;
    return t;
}

void nn_tensor_destroy(nn_tensor **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->data);
    free(*self_p);
    *self_p = NULL;
}

int nn_tensor_resize(nn_tensor *t, size_t rows, size_t cols, hf_err *e)
{
    if (!shape_ok(rows, cols))
        return hf_err_set(e, HF_ENOMEM, "nn: tensor %zux%zu too large", rows, cols);
    size_t n = rows * cols;
    if (n > t->cap) {
        float *d = alloc_floats(n);
        if (!d)
            return hf_err_set(e, HF_ENOMEM, "nn: out of memory for %zux%zu tensor", rows, cols);
        free(t->data);
        t->data = d;
        t->cap = n;
    }
    t->rows = rows;
    t->cols = cols;
    return 0;
}

int nn_tensor_copy(nn_tensor *dst, const nn_tensor *src, hf_err *e)
{
    int rc = nn_tensor_resize(dst, src->rows, src->cols, e);
    if (rc)
        return rc;
    if (nn_tensor_len(src))
        memcpy(dst->data, src->data, nn_tensor_len(src) * sizeof(float));
    return 0;
}

void nn_tensor_zero(nn_tensor *t)
{
    if (nn_tensor_len(t))
        memset(t->data, 0, nn_tensor_len(t) * sizeof(float));
}

void nn_tensor_fill(nn_tensor *t, float v)
{
    for (size_t i = 0, n = nn_tensor_len(t); i < n; i++)
        t->data[i] = v;
}

void nn_tensor_uniform(nn_tensor *t, float a, nn_rng *rng)
{
    for (size_t i = 0, n = nn_tensor_len(t); i < n; i++)
        t->data[i] = a * (2.0f * nn_rng_uniform(rng) - 1.0f);
}

void nn_tensor_normal(nn_tensor *t, float s, nn_rng *rng)
{
    for (size_t i = 0, n = nn_tensor_len(t); i < n; i++)
        t->data[i] = s * nn_rng_normal(rng);
}

int nn_gemm(bool ta, bool tb, float alpha, const nn_tensor *a, const nn_tensor *b, float beta,
            nn_tensor *c, hf_err *e)
{
    size_t m = ta ? a->cols : a->rows, ka = ta ? a->rows : a->cols;
    size_t kb = tb ? b->cols : b->rows, n = tb ? b->rows : b->cols;
    if (ka != kb || c->rows != m || c->cols != n)
        return hf_err_set(e, HF_EUSAGE, "nn: gemm shapes %zux%zu * %zux%zu -> %zux%zu", m, ka, kb,
                          n, c->rows, c->cols);
    if (m == 0 || n == 0)
        return 0;
    if (ka == 0) {
        /* BLAS would leave C untouched only for beta == 1; be explicit. */
        for (size_t i = 0; i < m * n; i++)
            c->data[i] = beta == 0.0f ? 0.0f : beta * c->data[i];
        return 0;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)ka, alpha, a->data, (int)(a->cols ? a->cols : 1), b->data,
                (int)(b->cols ? b->cols : 1), beta, c->data, (int)(c->cols ? c->cols : 1));
    return 0;
}

void nn_params_init(nn_params *p)
{
    memset(p, 0, sizeof *p);
}

void nn_params_free(nn_params *p)
{
    free(p->v);
    memset(p, 0, sizeof *p);
}

int nn_params_add(nn_params *p, const char *prefix, const char *name, nn_tensor *w, nn_tensor *g,
                  hf_err *e)
{
    if (!w || !g || w->rows != g->rows || w->cols != g->cols)
        return hf_err_set(e, HF_EINTERNAL, "nn: param %s%s has no matching grad",
                          prefix ? prefix : "", name);
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        nn_param *v = realloc(p->v, cap * sizeof *v);
        if (!v)
            return hf_err_set(e, HF_ENOMEM, "nn: out of memory for parameter list");
        p->v = v;
        p->cap = cap;
    }
    nn_param *q = &p->v[p->n];
    int len = snprintf(q->name, sizeof q->name, "%s%s", prefix ? prefix : "", name);
    if (len < 0 || (size_t)len >= sizeof q->name)
        return hf_err_set(e, HF_EUSAGE, "nn: parameter name %s%s too long", prefix ? prefix : "",
                          name);
    if (nn_params_find(p, q->name))
        return hf_err_set(e, HF_EUSAGE, "nn: duplicate parameter name %s", q->name);
    q->w = w;
    q->g = g;
    p->n++;
    return 0;
}

void nn_params_zero_grad(nn_params *p)
{
    for (size_t i = 0; i < p->n; i++)
        nn_tensor_zero(p->v[i].g);
}

size_t nn_params_count(const nn_params *p)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++)
        n += nn_tensor_len(p->v[i].w);
    return n;
}

nn_param *nn_params_find(const nn_params *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i].name, name) == 0)
            return &p->v[i];
    return NULL;
}
