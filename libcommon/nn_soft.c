/*
 * nn_soft.c - differentiable stand-ins for discrete choices: the seeded
 * Gumbel-softmax and differentiable (soft) search of a query over a
 * candidate set, each with its backward.
 *
 * Invariants: weights are softmaxes computed with the row maximum
 * subtracted; masked candidates get weight exactly 0 and no gradient; a
 * row with no real candidate gets all-zero weights and a zero output.
 * Gumbel noise is drawn from the caller's rng in row-major order, so a
 * seed fixes the sample. The backward functions ADD into their outputs.
 */
#include "nn.h"

#include <math.h>

int nn_gumbel_softmax(const nn_tensor *logits, float tau, nn_rng *rng, nn_tensor *y, hf_err *e)
{
    if (!(tau > 0.0f))
        return hf_err_set(e, HF_EUSAGE, "nn: Gumbel-softmax needs tau > 0");
    int rc = nn_tensor_resize(y, logits->rows, logits->cols, e);
    if (rc)
        return rc;
    for (size_t i = 0; i < logits->rows; i++) {
        const float *l = nn_row(logits, i);
        float *yr = nn_row(y, i);
        float mx = -INFINITY;
        for (size_t j = 0; j < logits->cols; j++) {
            double g = -log(-log(nn_rng_open01(rng)));
            yr[j] = (float)((l[j] + g) / tau);
            mx = yr[j] > mx ? yr[j] : mx;
        }
        double s = 0.0;
        for (size_t j = 0; j < logits->cols; j++) {
            yr[j] = expf(yr[j] - mx);
            s += yr[j];
        }
        for (size_t j = 0; j < logits->cols; j++)
            yr[j] = (float)(yr[j] / s);
    }
    return 0;
}

int nn_gumbel_softmax_backward(const nn_tensor *y, const nn_tensor *dy, float tau,
                               nn_tensor *dlogits, hf_err *e)
{
    if (dy->rows != y->rows || dy->cols != y->cols || !(tau > 0.0f))
        return hf_err_set(e, HF_EUSAGE, "nn: Gumbel-softmax backward shapes differ");
    if (dlogits->rows != y->rows || dlogits->cols != y->cols) {
        int rc = nn_tensor_resize(dlogits, y->rows, y->cols, e);
        if (rc)
            return rc;
        nn_tensor_zero(dlogits);
    }
    for (size_t i = 0; i < y->rows; i++) {
        const float *yr = nn_row(y, i), *d = nn_row(dy, i);
        float *g = nn_row(dlogits, i);
        double s = 0.0;
        for (size_t j = 0; j < y->cols; j++)
            s += (double)yr[j] * d[j];
        for (size_t j = 0; j < y->cols; j++)
            g[j] += yr[j] * (d[j] - (float)s) / tau;
    }
    return 0;
}

static float sqdist(const float *a, const float *b, size_t d)
{
    float s = 0.0f;
    for (size_t t = 0; t < d; t++)
        s += (a[t] - b[t]) * (a[t] - b[t]);
    return s;
}

int nn_soft_search(const nn_tensor *q, const nn_tensor *cand, const uint8_t *mask, size_t k,
                   float temp, nn_tensor *w, nn_tensor *out, hf_err *e)
{
    size_t b = q->rows, d = q->cols;
    if (!(temp > 0.0f) || k == 0 || cand->cols != d || cand->rows != b * k)
        return hf_err_set(e, HF_EUSAGE, "nn: soft search wants cand (B*K)x%zu and temp > 0", d);
    int rc = nn_tensor_resize(w, b, k, e);
    if (!rc)
        rc = nn_tensor_resize(out, b, d, e);
    if (rc)
        return rc;
    nn_tensor_zero(w);
    nn_tensor_zero(out);
    for (size_t i = 0; i < b; i++) {
        float *wr = nn_row(w, i), *o = nn_row(out, i);
        float mx = -INFINITY;
        for (size_t j = 0; j < k; j++) {
            if (mask && !mask[i * k + j])
                continue;
            wr[j] = -sqdist(nn_row(q, i), nn_row(cand, i * k + j), d) / temp;
            mx = wr[j] > mx ? wr[j] : mx;
        }
        if (mx == -INFINITY)
            continue;
        double s = 0.0;
        for (size_t j = 0; j < k; j++)
            if (!mask || mask[i * k + j]) {
                wr[j] = expf(wr[j] - mx);
                s += wr[j];
            }
        for (size_t j = 0; j < k; j++) {
            if (mask && !mask[i * k + j])
                continue;
            wr[j] = (float)(wr[j] / s);
            const float *c = nn_row(cand, i * k + j);
            for (size_t t = 0; t < d; t++)
                o[t] += wr[j] * c[t];
        }
    }
    return 0;
}

int nn_soft_search_backward(const nn_tensor *q, const nn_tensor *cand, const nn_tensor *w, size_t k,
                            float temp, const nn_tensor *dout, const nn_tensor *dw, nn_tensor *dq,
                            nn_tensor *dcand, hf_err *e)
{
    size_t b = q->rows, d = q->cols;
    if (w->rows != b || w->cols != k || cand->rows != b * k || dq->rows != b || dq->cols != d ||
        dcand->rows != b * k || dcand->cols != d ||
        (dout && (dout->rows != b || dout->cols != d)) || (dw && (dw->rows != b || dw->cols != k)))
        return hf_err_set(e, HF_EUSAGE, "nn: soft search backward shapes differ");
    for (size_t i = 0; i < b; i++) {
        const float *qi = nn_row(q, i), *wr = nn_row(w, i);
        float *dqi = nn_row(dq, i);
        /* total dL/dw_j: the given dw plus dout . c_j through the output */
        double dot = 0.0;
        for (size_t j = 0; j < k; j++) {
            if (wr[j] == 0.0f)
                continue;
            float g = dw ? nn_row(dw, i)[j] : 0.0f;
            if (dout)
                for (size_t t = 0; t < d; t++)
                    g += nn_row(dout, i)[t] * nn_row(cand, i * k + j)[t];
            dot += (double)wr[j] * g;
        }
        for (size_t j = 0; j < k; j++) {
            if (wr[j] == 0.0f)
                continue;
            const float *c = nn_row(cand, i * k + j);
            float *dc = nn_row(dcand, i * k + j);
            float g = dw ? nn_row(dw, i)[j] : 0.0f;
            if (dout)
                for (size_t t = 0; t < d; t++)
                    g += nn_row(dout, i)[t] * c[t];
            /* dL/dscore_j, score = -dist / temp, ddist/dq = 2 (q - c) */
            float ds = wr[j] * (g - (float)dot);
            float coef = -2.0f * ds / temp;
            for (size_t t = 0; t < d; t++) {
                float gq = coef * (qi[t] - c[t]);
                dqi[t] += gq;
                dc[t] -= gq;
                if (dout)
                    dc[t] += wr[j] * nn_row(dout, i)[t];
            }
        }
    }
    return 0;
}
