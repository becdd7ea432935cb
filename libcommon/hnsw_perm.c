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

static const double *sort_key;

static int by_variance_desc(const void *a, const void *b)
{
    double x = sort_key[*(const uint32_t *)a], y = sort_key[*(const uint32_t *)b];
    if (x != y)
        return x < y ? 1 : -1;
    return (*(const uint32_t *)a > *(const uint32_t *)b) - (*(const uint32_t *)a < *(const uint32_t *)b);
}

int hnsw_permute_dims(hnsw *h, hf_err *e)
{
    size_t d = h->dim;
    if (h->perm || h->n == 0)
        return 0;
    double *mean = calloc(d, sizeof(double)), *var = calloc(d, sizeof(double));
    uint32_t *perm = malloc(d * sizeof(uint32_t));
    float *tmp = malloc(d * sizeof(float));
    if (!mean || !var || !perm || !tmp) {
        free(mean);
        free(var);
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
        perm[j] = (uint32_t)j;
    /* qsort has no context argument; the key is set and used right here,
     * on one thread (graph-build calls this once, before any search) */
    sort_key = var;
    qsort(perm, d, sizeof(uint32_t), by_variance_desc);
    sort_key = NULL;
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
