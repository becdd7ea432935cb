/*
 * rotation.c - the transforms of rotation.h.
 */
#include "rotation.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "distance.h"
#include "nn.h"

/* A random n x n orthogonal matrix: Gaussian rows made orthonormal by
 * modified Gram-Schmidt in double (deterministic for the generator). */
static int orthogonal(size_t n, nn_rng *rng, float *out)
{
    double *m = malloc(n * n * sizeof(double));
    if (!m)
        return -1;
    for (size_t i = 0; i < n * n; i++)
        m[i] = nn_rng_normal(rng);
    for (size_t i = 0; i < n; i++) {
        double *ri = m + i * n;
        for (size_t j = 0; j < i; j++) {
            const double *rj = m + j * n;
            double d = 0;
            for (size_t t = 0; t < n; t++)
                d += ri[t] * rj[t];
            for (size_t t = 0; t < n; t++)
                ri[t] -= d * rj[t];
        }
        double nrm = 0;
        for (size_t t = 0; t < n; t++)
            nrm += ri[t] * ri[t];
        nrm = sqrt(nrm);
        for (size_t t = 0; t < n; t++)
            ri[t] /= nrm;
    }
    for (size_t i = 0; i < n * n; i++)
        out[i] = (float)m[i];
    free(m);
    return 0;
}

static int is_orthogonal(size_t n, const float *m)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t t = 0; t < n; t++)
                s += (double)m[i * n + t] * m[j * n + t];
            if (!(fabs(s - (i == j)) < 1e-4)) /* also false for NaN */
                return 0;
        }
    return 1;
}

static rotation *alloc_rotation(size_t dpad, unsigned rounds)
{
    rotation *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->dpad = dpad;
    r->rounds = rounds;
    size_t b = dpad / ROTATION_BLOCK;
    if (rounds == 0) {
        r->dense = malloc(dpad * dpad * sizeof(float));
        if (r->dense)
            return r;
    } else {
        r->signs = malloc((size_t)rounds * dpad * sizeof(float));
        r->mix = malloc((size_t)rounds * b * b * sizeof(float));
        if (r->signs && r->mix)
            return r;
    }
    rotation_destroy(&r);
    return NULL;
}

static int check_dpad(size_t dpad, hf_err *e)
{
    if (dpad == 0 || dpad % ROTATION_BLOCK)
        return hf_err_set(e, HF_EDATA, "rotation size %zu is not a positive multiple of %d", dpad,
                          ROTATION_BLOCK);
    return 0;
}

int rotation_plan(size_t dpad, unsigned rounds, uint64_t seed, rotation **out, hf_err *e)
{
    *out = NULL;
    int rc = check_dpad(dpad, e);
    if (rc)
        return rc;
    rotation *r = alloc_rotation(dpad, rounds);
    if (!r)
        return hf_err_set(e, HF_ENOMEM, "out of memory for a %zu-dimensional rotation", dpad);
    nn_rng rng;
    nn_rng_seed(&rng, seed ^ 0x726f7773ull);
    size_t b = dpad / ROTATION_BLOCK;
    int bad = 0;
    if (rounds == 0)
        bad = orthogonal(dpad, &rng, r->dense);
    for (unsigned k = 0; k < rounds && !bad; k++) {
        for (size_t i = 0; i < dpad; i++)
            r->signs[k * dpad + i] = nn_rng_uniform(&rng) < 0.5 ? -1.0f : 1.0f;
        bad = orthogonal(b, &rng, r->mix + k * b * b);
    }
    if (bad) {
        rotation_destroy(&r);
        return hf_err_set(e, HF_ENOMEM, "out of memory for a %zu-dimensional rotation", dpad);
    }
    *out = r;
    return 0;
}

int rotation_from_dense(size_t dpad, const float *dense, rotation **out, hf_err *e)
{
    *out = NULL;
    int rc = check_dpad(dpad, e);
    if (rc)
        return rc;
    for (size_t i = 0; i < dpad * dpad; i++)
        if (!isfinite(dense[i]))
            return hf_err_set(e, HF_EDATA, "rotation entry %zu is not finite", i);
    rotation *r = alloc_rotation(dpad, 0);
    if (!r)
        return hf_err_set(e, HF_ENOMEM, "out of memory for the rotation");
    memcpy(r->dense, dense, dpad * dpad * sizeof(float));
    *out = r;
    return 0;
}

int rotation_from_blocks(size_t dpad, unsigned rounds, const float *signs, const float *mix,
                         rotation **out, hf_err *e)
{
    *out = NULL;
    int rc = check_dpad(dpad, e);
    if (rc)
        return rc;
    if (rounds == 0 || rounds > 16)
        return hf_err_set(e, HF_EDATA, "rotation rounds %u (1 to 16)", rounds);
    size_t b = dpad / ROTATION_BLOCK;
    for (size_t i = 0; i < (size_t)rounds * dpad; i++)
        if (signs[i] != 1.0f && signs[i] != -1.0f)
            return hf_err_set(e, HF_EDATA, "rotation sign %zu is not +1 or -1", i);
    for (unsigned k = 0; k < rounds; k++)
        if (!is_orthogonal(b, mix + (size_t)k * b * b))
            return hf_err_set(e, HF_EDATA, "rotation mixing matrix %u is not orthogonal", k);
    rotation *r = alloc_rotation(dpad, rounds);
    if (!r)
        return hf_err_set(e, HF_ENOMEM, "out of memory for the rotation");
    memcpy(r->signs, signs, (size_t)rounds * dpad * sizeof(float));
    memcpy(r->mix, mix, (size_t)rounds * b * b * sizeof(float));
    *out = r;
    return 0;
}

void rotation_destroy(rotation **rp)
{
    if (!rp || !*rp)
        return;
    free((*rp)->dense);
    free((*rp)->signs);
    free((*rp)->mix);
    free(*rp);
    *rp = NULL;
}

/* In-place 64-point Walsh-Hadamard transform scaled by 1/8 (orthogonal). */
static void wht64(float *x)
{
    for (size_t h = 1; h < ROTATION_BLOCK; h *= 2)
        for (size_t i = 0; i < ROTATION_BLOCK; i += 2 * h)
            for (size_t j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
    for (size_t j = 0; j < ROTATION_BLOCK; j++)
        x[j] *= 0.125f;
}

void rotation_round_scalar(const float *sg, const float *q, size_t B, float *y, float *tmp)
{
    for (size_t i = 0; i < B * ROTATION_BLOCK; i++)
        tmp[i] = y[i] * sg[i];
    for (size_t c = 0; c < B; c++)
        wht64(tmp + c * ROTATION_BLOCK);
    /* y[b][t] = sum_c q[b][c] tmp[c][t]: block b of the output */
    for (size_t b = 0; b < B; b++) {
        float *yb = y + b * ROTATION_BLOCK;
        for (size_t t = 0; t < ROTATION_BLOCK; t++)
            yb[t] = 0;
        for (size_t c = 0; c < B; c++) {
            float w = q[b * B + c];
            const float *tc = tmp + c * ROTATION_BLOCK;
            for (size_t t = 0; t < ROTATION_BLOCK; t++)
                yb[t] += w * tc[t];
        }
    }
}

static rotation_round_fn chosen = rotation_round_scalar;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

static void choose(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        chosen = rotation_round_avx512;
}

rotation_round_fn rotation_round_best(void)
{
    pthread_once(&chosen_once, choose);
    return chosen;
}

void rotation_apply(const rotation *r, const float *x, size_t dim, float *y, float *tmp)
{
    size_t D = r->dpad, B = D / ROTATION_BLOCK;
    if (r->rounds == 0) {
        /* not cblas_sgemv: one call per query wakes OpenBLAS's thread pool,
         * which then spins in sched_yield beside the search */
        const dist_fn dot = dist_best()->dot;
        for (size_t i = 0; i < D; i++)
            y[i] = dot(r->dense + i * D, x, dim);
        return;
    }
    memcpy(y, x, dim * sizeof(float));
    memset(y + dim, 0, (D - dim) * sizeof(float));
    rotation_round_fn round = rotation_round_best();
    for (unsigned k = 0; k < r->rounds; k++)
        round(r->signs + (size_t)k * D, r->mix + (size_t)k * B * B, B, y, tmp);
}
