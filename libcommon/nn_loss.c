/*
 * nn_loss.c - training losses with their gradients: MSE, binary
 * cross-entropy on logits, InfoNCE on similarity scores, and the local
 * contrastive loss on squared L2 distances.
 *
 * Invariants: losses are means (over elements for MSE/BCE, rows for
 * InfoNCE, counted pairs for contrastive) and the gradients are of that
 * mean. Sums run in double. BCE uses max(x,0) - x t + log1p(exp(-|x|)) so
 * no logit overflows; InfoNCE subtracts the row maximum before exp.
 * Squared distances match the index's L2 metric and have no kink at 0.
 */
#include "nn.h"

#include <math.h>

static int shape_grad(nn_tensor *grad, const nn_tensor *like, hf_err *e)
{
    if (!grad)
        return 0;
    int rc = nn_tensor_resize(grad, like->rows, like->cols, e);
    if (!rc)
        nn_tensor_zero(grad);
    return rc;
}

int nn_loss_mse(const nn_tensor *pred, const nn_tensor *target, nn_tensor *grad, float *loss,
                hf_err *e)
{
    if (pred->rows != target->rows || pred->cols != target->cols)
        return hf_err_set(e, HF_EUSAGE, "nn: MSE shapes differ");
    size_t n = nn_tensor_len(pred);
    int rc = shape_grad(grad, pred, e);
    if (rc)
        return rc;
    double s = 0.0;
    float k = n ? 2.0f / (float)n : 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = pred->data[i] - target->data[i];
        s += (double)d * d;
        if (grad)
            grad->data[i] = k * d;
    }
    *loss = n ? (float)(s / (double)n) : 0.0f;
    return 0;
}

int nn_loss_bce_logits(const nn_tensor *logits, const nn_tensor *target, nn_tensor *grad,
                       float *loss, hf_err *e)
{
    if (logits->rows != target->rows || logits->cols != target->cols)
        return hf_err_set(e, HF_EUSAGE, "nn: BCE shapes differ");
    size_t n = nn_tensor_len(logits);
    int rc = shape_grad(grad, logits, e);
    if (rc)
        return rc;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double x = logits->data[i], t = target->data[i];
        s += (x > 0 ? x : 0) - x * t + log1p(exp(-fabs(x)));
        if (grad) {
            double sg = x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
            grad->data[i] = (float)((sg - t) / (double)n);
        }
    }
    *loss = n ? (float)(s / (double)n) : 0.0f;
    return 0;
}

int nn_loss_infonce(const nn_tensor *scores, float temp, nn_tensor *grad, float *loss, hf_err *e)
{
    if (!(temp > 0.0f) || scores->cols < 1)
        return hf_err_set(e, HF_EUSAGE, "nn: InfoNCE needs temp > 0 and a positive column");
    int rc = shape_grad(grad, scores, e);
    if (rc)
        return rc;
    size_t b = scores->rows, c = scores->cols;
    double total = 0.0;
    for (size_t i = 0; i < b; i++) {
        const float *s = nn_row(scores, i);
        double mx = -INFINITY;
        for (size_t j = 0; j < c; j++)
            mx = s[j] / temp > mx ? s[j] / temp : mx;
        double z = exp(s[0] / temp - mx); /* the row max adds exp(0): z >= 1 */
        for (size_t j = 1; j < c; j++)
            z += exp(s[j] / temp - mx);
        double lse = mx + log(z);
        total += lse - s[0] / temp;
        if (grad) {
            float *g = nn_row(grad, i);
            for (size_t j = 0; j < c; j++) {
                double p = exp(s[j] / temp - lse);
                g[j] = (float)((p - (j == 0 ? 1.0 : 0.0)) / (temp * (double)b));
            }
        }
    }
    *loss = b ? (float)(total / (double)b) : 0.0f;
    return 0;
}

int nn_loss_contrastive(const nn_tensor *anchor, const nn_tensor *others, const int8_t *label,
                        size_t k, float pos_margin, float neg_margin, nn_tensor *ganchor,
                        nn_tensor *gothers, float *loss, hf_err *e)
{
    size_t b = anchor->rows, d = anchor->cols;
    if (others->cols != d || others->rows != b * k)
        return hf_err_set(e, HF_EUSAGE, "nn: contrastive wants others (B*K)x%zu", d);
    int rc = shape_grad(ganchor, anchor, e);
    if (!rc)
        rc = shape_grad(gothers, others, e);
    if (rc)
        return rc;
    size_t count = 0;
    for (size_t i = 0; i < b * k; i++)
        count += label[i] == 0 || label[i] == 1;
    double total = 0.0;
    for (size_t i = 0; i < b; i++) {
        const float *a = nn_row(anchor, i);
        for (size_t j = 0; j < k; j++) {
            int8_t lab = label[i * k + j];
            if (lab != 0 && lab != 1)
                continue;
            const float *o = nn_row(others, i * k + j);
            double dist = 0.0;
            for (size_t t = 0; t < d; t++)
                dist += (double)(a[t] - o[t]) * (a[t] - o[t]);
            double h = lab == 1 ? dist - pos_margin : neg_margin - dist;
            if (h <= 0.0)
                continue;
            total += h * h;
            /* dL/ddist = +-2h / count; ddist/da = 2 (a - o) */
            float coef = (float)((lab == 1 ? 2.0 : -2.0) * h * 2.0 / (double)count);
            for (size_t t = 0; t < d; t++) {
                float gd = coef * (a[t] - o[t]);
                if (ganchor)
                    nn_row(ganchor, i)[t] += gd;
                if (gothers)
                    nn_row(gothers, i * k + j)[t] -= gd;
            }
        }
    }
    *loss = count ? (float)(total / (double)count) : 0.0f;
    return 0;
}
