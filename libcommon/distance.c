/*
 * distance.c - scalar reference kernels, CPU dispatch and metrics.
 * The scalar kernels accumulate in double: they are the reference the SIMD
 * kernels are tested against, not the fast path.
 */
#include "distance.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

float dist_l2sq_scalar(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        s += d * d;
    }
    return (float)s;
}

float dist_dot_scalar(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return (float)s;
}

float dist_l1_scalar(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += fabs((double)a[i] - b[i]);
    return (float)s;
}

float dist_l2sq_bounded_scalar(const float *a, const float *b, size_t n, float bound)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        s += d * d;
        if ((i & 63) == 63 && s > bound)
            return (float)s;
    }
    return (float)s;
}

static const dist_kernels k_scalar = {"scalar", dist_l2sq_scalar, dist_dot_scalar, dist_l1_scalar,
                                      dist_l2sq_bounded_scalar};
static const dist_kernels k_avx2 = {"avx2", dist_l2sq_avx2, dist_dot_avx2, dist_l1_avx2,
                                    dist_l2sq_bounded_avx2};
static const dist_kernels k_avx512 = {"avx512", dist_l2sq_avx512, dist_dot_avx512, dist_l1_avx512,
                                      dist_l2sq_bounded_avx512};

static int have_avx2(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static int have_avx512(void)
{
    return __builtin_cpu_supports("avx512f");
}

static const dist_kernels *chosen = &k_scalar;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

static void choose(void)
{
    __builtin_cpu_init();
    if (have_avx512())
        chosen = &k_avx512;
    else if (have_avx2())
        chosen = &k_avx2;
    else
        chosen = &k_scalar;
}

const dist_kernels *dist_best(void)
{
    pthread_once(&chosen_once, choose);
    return chosen;
}

const dist_kernels *dist_isa(const char *isa)
{
    __builtin_cpu_init();
    if (strcmp(isa, "scalar") == 0)
        return &k_scalar;
    if (strcmp(isa, "avx2") == 0)
        return have_avx2() ? &k_avx2 : NULL;
    if (strcmp(isa, "avx512") == 0)
        return have_avx512() ? &k_avx512 : NULL;
    return NULL;
}

int metric_parse(const char *name, metric_t *out, hf_err *e)
{
    static const struct {
        const char *name;
        metric_t m;
    } names[] = {{"l2", METRIC_L2},  {"euclidean", METRIC_L2},  {"ip", METRIC_IP},
                 {"dot", METRIC_IP}, {"cosine", METRIC_COSINE}, {"angular", METRIC_COSINE},
                 {"l1", METRIC_L1},  {"manhattan", METRIC_L1}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i].name) == 0) {
            *out = names[i].m;
            return 0;
        }
    }
    return hf_err_set(e, HF_EUSAGE, "unknown metric '%s' (expected l2, ip, cosine or l1)", name);
}

const char *metric_name(metric_t m)
{
    switch (m) {
    case METRIC_L2: return "l2";
    case METRIC_IP: return "ip";
    case METRIC_COSINE: return "cosine";
    case METRIC_L1: return "l1";
    }
    return "?";
}

dist_fn metric_kernel(metric_t m)
{
    const dist_kernels *k = dist_best();
    switch (m) {
    case METRIC_L2: return k->l2sq;
    case METRIC_IP:
    case METRIC_COSINE: return k->dot;
    case METRIC_L1: return k->l1;
    }
    return k->l2sq;
}

float metric_distance(metric_t m, const float *a, const float *b, size_t n)
{
    const dist_kernels *k = dist_best();
    switch (m) {
    case METRIC_L2: return k->l2sq(a, b, n);
    case METRIC_IP: return 1.0f - k->dot(a, b, n);
    case METRIC_COSINE: {
        float na = k->dot(a, a, n), nb = k->dot(b, b, n);
        if (na <= 0 || nb <= 0)
            return 1.0f;
        return 1.0f - k->dot(a, b, n) / (sqrtf(na) * sqrtf(nb));
    }
    case METRIC_L1: return k->l1(a, b, n);
    }
    return 0;
}

void vec_normalize(float *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    if (s <= 0)
        return;
    float inv = (float)(1.0 / sqrt(s));
    for (size_t i = 0; i < n; i++)
        v[i] *= inv;
}
