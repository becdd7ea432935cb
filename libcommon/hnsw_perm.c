/*
 * hnsw_perm.c - dimension order by decreasing variance. With the
 * high-variance dimensions first, the bounded L2 kernel can reject a
 * candidate after a short prefix of its vector (on Fashion-MNIST the image
 * borders are almost always zero: left in pixel order they come first and
 * tell nothing). A permutation changes no distance of any metric.
 */
#include <stdlib.h>
#include <string.h>

#include "hnsw.h"

typedef struct dim_var {
    double var;
    uint32_t dim;
} dim_var;

static int by_variance_desc(const void *a, const void *b)
{
    const dim_var *x = a, *y = b;
    if (x->var != y->var)
        return x->var < y->var ? 1 : -1;
    return (x->dim > y->dim) - (x->dim < y->dim);
}

int hnsw_permute_dims(hnsw *h, hf_err *e)
{
    size_t d = h->dim;
    if (h->perm || h->n == 0)
        return 0;
    double *mean = calloc(d, sizeof(double)), *var = calloc(d, sizeof(double));
    dim_var *order = malloc(d * sizeof *order);
    uint32_t *perm = malloc(d * sizeof(uint32_t));
    float *tmp = malloc(d * sizeof(float));
    if (!mean || !var || !perm || !tmp || !order) {
        free(mean);
        free(var);
        free(order);
        free(perm);
        free(tmp);
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < h->n; i++) {
        const float *v = hnsw_vec(h, (uint32_t)i);
        for (size_t j = 0; j < d; j++)
            mean[j] += v[j];
    }
    for (size_t j = 0; j < d; j++)
        mean[j] /= (double)h->n;
    for (size_t i = 0; i < h->n; i++) {
        const float *v = hnsw_vec(h, (uint32_t)i);
        for (size_t j = 0; j < d; j++)
            var[j] += (v[j] - mean[j]) * (v[j] - mean[j]);
    }
    for (size_t j = 0; j < d; j++)
        order[j] = (dim_var){var[j], (uint32_t)j};
    qsort(order, d, sizeof *order, by_variance_desc);
    for (size_t j = 0; j < d; j++)
        perm[j] = order[j].dim;
    free(order);
    for (size_t i = 0; i < h->n; i++) {
        float *v = hnsw_vec(h, (uint32_t)i);
        for (size_t j = 0; j < d; j++)
            tmp[j] = v[perm[j]];
        memcpy(v, tmp, d * sizeof(float));
    }
    h->perm = perm;
    free(mean);
    free(var);
    free(tmp);
    return 0;
}

void hnsw_permute_query(const hnsw *h, const float *in, float *out)
{
    for (size_t j = 0; j < h->dim; j++)
        out[j] = in[h->perm[j]];
}

void hnsw_unpermute(const hnsw *h, const float *in, float *out)
{
    if (!h->perm) {
        memcpy(out, in, h->dim * sizeof *out);
        return;
    }
    for (size_t j = 0; j < h->dim; j++)
        out[h->perm[j]] = in[j];
}
