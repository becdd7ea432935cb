/*
 * pca.c - top principal directions (pca.h). Subspace iteration converges
 * on the leading eigenvectors fast enough for what the callers need (a
 * projection that keeps most of the variance), without LAPACK.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "pca.h"

void pca_orthonormalise(float *V, size_t d, size_t r)
{
    for (size_t a = 0; a < r; a++) {
        for (size_t p = 0; p < a; p++) {
            double dot = 0;
            for (size_t i = 0; i < d; i++)
                dot += (double)V[i * r + a] * V[i * r + p];
            for (size_t i = 0; i < d; i++)
                V[i * r + a] -= (float)dot * V[i * r + p];
        }
        double nn = 0;
        for (size_t i = 0; i < d; i++)
            nn += (double)V[i * r + a] * V[i * r + a];
        float s = nn > 0 ? (float)(1.0 / sqrt(nn)) : 0.0f;
        for (size_t i = 0; i < d; i++)
            V[i * r + a] *= s;
    }
}

int pca_top(float *x, size_t S, size_t d, size_t r, uint64_t seed, float *mu, float *V, double *l1)
{
    float *cov = malloc(d * d * sizeof *cov), *T = malloc(d * r * sizeof *T);
    if (!cov || !T || S == 0) {
        free(cov);
        free(T);
        return -1;
    }
    for (size_t j = 0; j < d; j++) {
        double s = 0;
        for (size_t i = 0; i < S; i++)
            s += x[i * d + j];
        mu[j] = (float)(s / (double)S);
    }
    for (size_t i = 0; i < S; i++)
        for (size_t j = 0; j < d; j++)
            x[i * d + j] -= mu[j];
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)d, (int)S, 1.0f / (float)S, x,
                (int)d, x, (int)d, 0.0f, cov, (int)d);
    nn_rng rg;
    nn_rng_seed(&rg, seed ^ 0x5eed);
    for (size_t i = 0; i < d * r; i++)
        V[i] = nn_rng_normal(&rg);
    pca_orthonormalise(V, d, r);
    for (int it = 0; it < 12; it++) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d, (int)r, (int)d, 1.0f, cov,
                    (int)d, V, (int)r, 0.0f, T, (int)r);
        memcpy(V, T, d * r * sizeof *V);
        pca_orthonormalise(V, d, r);
    }
    /* top eigenvalue = v1 . cov v1 */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d, (int)r, (int)d, 1.0f, cov,
                (int)d, V, (int)r, 0.0f, T, (int)r);
    double l = 0;
    for (size_t i = 0; i < d; i++)
        l += (double)T[i * r] * V[i * r];
    *l1 = l;
    free(cov);
    free(T);
    return 0;
}
