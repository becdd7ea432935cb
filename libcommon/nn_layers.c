/*
 * nn_layers.c - the plain layers (Linear, ReLU, Sigmoid, Tanh, LayerNorm,
 * row-wise Softmax, Dropout) and the sequential container.
 *
 * Invariants: a layer owns its output y and input gradient dx; forward
 * copies the input when backward needs it (Linear, LayerNorm) so callers
 * may reuse their buffers. Backward adds into gw/gb (never overwrites), so
 * gradients of several batches or several uses sum up. Activations derive
 * their backward from the cached output, which is exact for these four.
 * Dropout is inverted (survivors scaled by 1/(1-p)) so evaluation is the
 * identity and draws its mask from its own seeded stream.
 */
#include "nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int layer_alloc(nn_layer **out, nn_layer_kind kind, hf_err *e)
{
    nn_layer *l = calloc(1, sizeof *l);
    if (!l)
        return hf_err_set(e, HF_ENOMEM, "nn: out of memory for layer");
    l->kind = kind;
    l->y = nn_tensor_new(0, 0);
    l->dx = nn_tensor_new(0, 0);
    l->x = nn_tensor_new(0, 0);
    l->aux = nn_tensor_new(0, 0);
    if (!l->y || !l->dx || !l->x || !l->aux) {
        nn_layer_destroy(&l);
        return hf_err_set(e, HF_ENOMEM, "nn: out of memory for layer");
    }
    *out = l;
    return 0;
}

static int layer_params_alloc(nn_layer *l, size_t wr, size_t wc, size_t bc, hf_err *e)
{
    l->w = nn_tensor_new(wr, wc);
    l->gw = nn_tensor_new(wr, wc);
    l->b = nn_tensor_new(1, bc);
    l->gb = nn_tensor_new(1, bc);
    if (!l->w || !l->gw || !l->b || !l->gb)
        return hf_err_set(e, HF_ENOMEM, "nn: out of memory for %zux%zu parameters", wr, wc);
    return 0;
}

int nn_linear_new(nn_layer **out, size_t in, size_t outw, nn_init init, nn_rng *rng, hf_err *e)
{
    *out = NULL;
    if (in == 0 || outw == 0)
        return hf_err_set(e, HF_EUSAGE, "nn: linear layer needs nonzero sizes");
    nn_layer *l;
    int rc = layer_alloc(&l, NN_LINEAR, e);
    if (rc)
        return rc;
    l->in = in;
    l->out = outw;
    rc = layer_params_alloc(l, outw, in, outw, e);
    if (rc) {
        nn_layer_destroy(&l);
        return rc;
    }
    if (init == NN_INIT_HE)
        nn_tensor_normal(l->w, sqrtf(2.0f / (float)in), rng);
    else
        nn_tensor_uniform(l->w, sqrtf(6.0f / (float)(in + outw)), rng);
    *out = l;
    return 0;
}

int nn_act_new(nn_layer **out, nn_layer_kind kind, hf_err *e)
{
    *out = NULL;
    if (kind != NN_RELU && kind != NN_SIGMOID && kind != NN_TANH && kind != NN_SOFTMAX)
        return hf_err_set(e, HF_EUSAGE, "nn: %s is not an activation", nn_layer_kind_name(kind));
    return layer_alloc(out, kind, e);
}

int nn_layernorm_new(nn_layer **out, size_t d, float eps, hf_err *e)
{
    *out = NULL;
    if (d == 0 || !(eps > 0.0f))
        return hf_err_set(e, HF_EUSAGE, "nn: layernorm needs d > 0 and eps > 0");
    nn_layer *l;
    int rc = layer_alloc(&l, NN_LAYERNORM, e);
    if (rc)
        return rc;
    l->in = l->out = d;
    l->eps = eps;
    rc = layer_params_alloc(l, 1, d, d, e);
    if (rc) {
        nn_layer_destroy(&l);
        return rc;
    }
    nn_tensor_fill(l->w, 1.0f);
    *out = l;
    return 0;
}

int nn_dropout_new(nn_layer **out, float p, uint64_t seed, hf_err *e)
{
    *out = NULL;
    if (!(p >= 0.0f && p < 1.0f))
        return hf_err_set(e, HF_EUSAGE, "nn: dropout probability %g not in [0, 1)", (double)p);
    int rc = layer_alloc(out, NN_DROPOUT, e);
    if (rc)
        return rc;
    (*out)->p = p;
    nn_rng_seed(&(*out)->rng, seed);
    return 0;
}

void nn_layer_destroy(nn_layer **self_p)
{
    if (!self_p || !*self_p)
        return;
    nn_layer *l = *self_p;
    nn_tensor_destroy(&l->w);
    nn_tensor_destroy(&l->b);
    nn_tensor_destroy(&l->gw);
    nn_tensor_destroy(&l->gb);
    nn_tensor_destroy(&l->x);
    nn_tensor_destroy(&l->y);
    nn_tensor_destroy(&l->dx);
    nn_tensor_destroy(&l->aux);
    free(l);
    *self_p = NULL;
}

const char *nn_layer_kind_name(nn_layer_kind k)
{
    switch (k) {
    case NN_LINEAR: return "linear";
    case NN_RELU: return "relu";
    case NN_SIGMOID: return "sigmoid";
    case NN_TANH: return "tanh";
    case NN_LAYERNORM: return "layernorm";
    case NN_SOFTMAX: return "softmax";
    case NN_DROPOUT: return "dropout";
    }
    return "?";
}

static float sigmoidf(float x)
{
    /* Never exponentiate a large positive number. */
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float z = expf(x);
    return z / (1.0f + z);
}

static void softmax_row(const float *x, float *y, size_t n)
{
    float mx = -INFINITY;
    for (size_t j = 0; j < n; j++)
        mx = x[j] > mx ? x[j] : mx;
    double s = 0.0;
    for (size_t j = 0; j < n; j++) {
        y[j] = expf(x[j] - mx);
        s += y[j];
    }
    float inv = (float)(1.0 / s);
    for (size_t j = 0; j < n; j++)
        y[j] *= inv;
}

static int linear_forward(nn_layer *l, const nn_tensor *x, hf_err *e)
{
    int rc = nn_tensor_copy(l->x, x, e);
    if (!rc)
        rc = nn_tensor_resize(l->y, x->rows, l->out, e);
    if (rc)
        return rc;
    for (size_t r = 0; r < x->rows; r++)
        memcpy(nn_row(l->y, r), l->b->data, l->out * sizeof(float));
    return nn_gemm(false, true, 1.0f, l->x, l->w, 1.0f, l->y, e);
}

static int linear_backward(nn_layer *l, const nn_tensor *dy, hf_err *e)
{
    int rc = nn_gemm(true, false, 1.0f, dy, l->x, 1.0f, l->gw, e);
    if (rc)
        return rc;
    for (size_t r = 0; r < dy->rows; r++) {
        const float *d = nn_row(dy, r);
        for (size_t j = 0; j < l->out; j++)
            l->gb->data[j] += d[j];
    }
    rc = nn_tensor_resize(l->dx, dy->rows, l->in, e);
    if (rc)
        return rc;
    return nn_gemm(false, false, 1.0f, dy, l->w, 0.0f, l->dx, e);
}

static int layernorm_forward(nn_layer *l, const nn_tensor *x, hf_err *e)
{
    size_t d = l->in;
    int rc = nn_tensor_resize(l->x, x->rows, d, e); /* holds xhat */
    if (!rc)
        rc = nn_tensor_resize(l->y, x->rows, d, e);
    if (!rc)
        rc = nn_tensor_resize(l->aux, x->rows, 1, e);
    if (rc)
        return rc;
    for (size_t r = 0; r < x->rows; r++) {
        const float *xr = nn_row(x, r);
        double mean = 0.0, var = 0.0;
        for (size_t j = 0; j < d; j++)
            mean += xr[j];
        mean /= (double)d;
        for (size_t j = 0; j < d; j++)
            var += (xr[j] - mean) * (xr[j] - mean);
        var /= (double)d;
        float rstd = (float)(1.0 / sqrt(var + l->eps));
        l->aux->data[r] = rstd;
        float *xh = nn_row(l->x, r), *yr = nn_row(l->y, r);
        for (size_t j = 0; j < d; j++) {
            xh[j] = (float)(xr[j] - mean) * rstd;
            yr[j] = l->w->data[j] * xh[j] + l->b->data[j];
        }
    }
    return 0;
}

static int layernorm_backward(nn_layer *l, const nn_tensor *dy, hf_err *e)
{
    size_t d = l->in;
    int rc = nn_tensor_resize(l->dx, dy->rows, d, e);
    if (rc)
        return rc;
    for (size_t r = 0; r < dy->rows; r++) {
        const float *dyr = nn_row(dy, r), *xh = nn_row(l->x, r);
        float *dxr = nn_row(l->dx, r);
        double m1 = 0.0, m2 = 0.0; /* mean(dxhat), mean(dxhat * xhat) */
        for (size_t j = 0; j < d; j++) {
            l->gw->data[j] += dyr[j] * xh[j];
            l->gb->data[j] += dyr[j];
            float g = dyr[j] * l->w->data[j];
            m1 += g;
            m2 += g * xh[j];
        }
        m1 /= (double)d;
        m2 /= (double)d;
        float rstd = l->aux->data[r];
        for (size_t j = 0; j < d; j++) {
            float g = dyr[j] * l->w->data[j];
            dxr[j] = rstd * (g - (float)m1 - xh[j] * (float)m2);
        }
    }
    return 0;
}

int nn_layer_forward(nn_layer *l, const nn_tensor *x, bool train, const nn_tensor **y, hf_err *e)
{
    if (l->in && x->cols != l->in)
        return hf_err_set(e, HF_EUSAGE, "nn: %s layer expects %zu columns, got %zu",
                          nn_layer_kind_name(l->kind), l->in, x->cols);
    int rc = 0;
    size_t n = nn_tensor_len(x);
    switch (l->kind) {
    case NN_LINEAR: rc = linear_forward(l, x, e); break;
    case NN_LAYERNORM: rc = layernorm_forward(l, x, e); break;
    case NN_DROPOUT:
        rc = nn_tensor_copy(l->y, x, e);
        if (!rc && train && l->p > 0.0f) {
            rc = nn_tensor_resize(l->aux, x->rows, x->cols, e);
            if (rc)
                break;
            float keep = 1.0f / (1.0f - l->p);
            for (size_t i = 0; i < n; i++) {
                l->aux->data[i] = nn_rng_uniform(&l->rng) < l->p ? 0.0f : keep;
                l->y->data[i] *= l->aux->data[i];
            }
        }
        l->trained = train && l->p > 0.0f;
        break;
    default:
        rc = nn_tensor_resize(l->y, x->rows, x->cols, e);
        if (rc)
            break;
        if (l->kind == NN_SOFTMAX) {
            for (size_t r = 0; r < x->rows; r++)
                softmax_row(nn_row(x, r), nn_row(l->y, r), x->cols);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            float v = x->data[i];
            l->y->data[i] = l->kind == NN_RELU      ? (v > 0.0f ? v : 0.0f)
                            : l->kind == NN_SIGMOID ? sigmoidf(v)
                                                    : tanhf(v);
        }
    }
    if (rc)
        return rc;
    l->ready = true;
    *y = l->y;
    return 0;
}

int nn_layer_backward(nn_layer *l, const nn_tensor *dy, const nn_tensor **dx, hf_err *e)
{
    if (!l->ready || dy->rows != l->y->rows || dy->cols != l->y->cols)
        return hf_err_set(e, HF_EUSAGE, "nn: %s backward does not match the last forward",
                          nn_layer_kind_name(l->kind));
    int rc = 0;
    size_t n = nn_tensor_len(dy);
    switch (l->kind) {
    case NN_LINEAR: rc = linear_backward(l, dy, e); break;
    case NN_LAYERNORM: rc = layernorm_backward(l, dy, e); break;
    default:
        rc = nn_tensor_resize(l->dx, dy->rows, dy->cols, e);
        if (rc)
            break;
        const float *y = l->y->data, *d = dy->data;
        float *g = l->dx->data;
        if (l->kind == NN_SOFTMAX) {
            for (size_t r = 0; r < dy->rows; r++) {
                const float *yr = nn_row(l->y, r), *dr = nn_row(dy, r);
                float *gr = nn_row(l->dx, r);
                double s = 0.0;
                for (size_t j = 0; j < dy->cols; j++)
                    s += (double)yr[j] * dr[j];
                for (size_t j = 0; j < dy->cols; j++)
                    gr[j] = yr[j] * (dr[j] - (float)s);
            }
            break;
        }
        for (size_t i = 0; i < n; i++) {
            switch (l->kind) {
            case NN_RELU: g[i] = y[i] > 0.0f ? d[i] : 0.0f; break;
            case NN_SIGMOID: g[i] = d[i] * y[i] * (1.0f - y[i]); break;
            case NN_TANH: g[i] = d[i] * (1.0f - y[i] * y[i]); break;
            case NN_DROPOUT: g[i] = l->trained ? d[i] * l->aux->data[i] : d[i]; break;
            default: return hf_err_set(e, HF_EINTERNAL, "nn: unknown layer kind");
            }
        }
    }
    if (rc)
        return rc;
    *dx = l->dx;
    return 0;
}

int nn_layer_params(nn_layer *l, const char *prefix, nn_params *p, hf_err *e)
{
    if (l->kind == NN_LINEAR) {
        int rc = nn_params_add(p, prefix, "w", l->w, l->gw, e);
        return rc ? rc : nn_params_add(p, prefix, "b", l->b, l->gb, e);
    }
    if (l->kind == NN_LAYERNORM) {
        int rc = nn_params_add(p, prefix, "gamma", l->w, l->gw, e);
        return rc ? rc : nn_params_add(p, prefix, "beta", l->b, l->gb, e);
    }
    return 0;
}

/* ------------------------------------------------------------ sequential */

int nn_seq_new(nn_seq **out, hf_err *e)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : hf_err_set(e, HF_ENOMEM, "nn: out of memory for sequential");
}

void nn_seq_destroy(nn_seq **self_p)
{
    if (!self_p || !*self_p)
        return;
    nn_seq *s = *self_p;
    for (size_t i = 0; i < s->n; i++)
        nn_layer_destroy(&s->layers[i]);
    free(s->layers);
    free(s);
    *self_p = NULL;
}

int nn_seq_add(nn_seq *s, nn_layer **layer_p, hf_err *e)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        nn_layer **v = realloc(s->layers, cap * sizeof *v);
        if (!v) {
            nn_layer_destroy(layer_p);
            return hf_err_set(e, HF_ENOMEM, "nn: out of memory for sequential");
        }
        s->layers = v;
        s->cap = cap;
    }
    s->layers[s->n++] = *layer_p;
    *layer_p = NULL;
    return 0;
}

int nn_seq_forward(nn_seq *s, const nn_tensor *x, bool train, const nn_tensor **y, hf_err *e)
{
    const nn_tensor *cur = x;
    for (size_t i = 0; i < s->n; i++) {
        int rc = nn_layer_forward(s->layers[i], cur, train, &cur, e);
        if (rc)
            return hf_err_prefix(e, "layer %zu", i);
    }
    *y = cur;
    return 0;
}

int nn_seq_backward(nn_seq *s, const nn_tensor *dy, const nn_tensor **dx, hf_err *e)
{
    const nn_tensor *cur = dy;
    for (size_t i = s->n; i-- > 0;) {
        int rc = nn_layer_backward(s->layers[i], cur, &cur, e);
        if (rc)
            return hf_err_prefix(e, "layer %zu", i);
    }
    *dx = cur;
    return 0;
}

int nn_seq_params(nn_seq *s, const char *prefix, nn_params *p, hf_err *e)
{
    for (size_t i = 0; i < s->n; i++) {
        char pre[NN_NAME_MAX];
        snprintf(pre, sizeof pre, "%s%zu.", prefix ? prefix : "", i);
        int rc = nn_layer_params(s->layers[i], pre, p, e);
        if (rc)
            return rc;
    }
    return 0;
}
