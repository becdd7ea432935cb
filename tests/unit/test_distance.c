/*
 * test_distance.c - every SIMD kernel agrees with the scalar reference on
 * odd dimensions, and the metrics mean what distance.h says.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "distance.h"

static const size_t dims[] = {1, 3, 17, 100, 784, 960};

static void fill(float *v, size_t n, unsigned *seed)
{
    for (size_t i = 0; i < n; i++)
        v[i] = (float)rand_r(seed) / RAND_MAX * 2.0f - 1.0f;
}

static void check_isa(const char *isa)
{
    const dist_kernels *k = dist_isa(isa), *ref = dist_isa("scalar");
    if (!k) {
        skip();
        return;
    }
    unsigned seed = 7;
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        size_t n = dims[d];
        float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        for (int rep = 0; rep < 20; rep++) {
            fill(a, n, &seed);
            fill(b, n, &seed);
            float pairs[3][2] = {{k->l2sq(a, b, n), ref->l2sq(a, b, n)},
                                 {k->dot(a, b, n), ref->dot(a, b, n)},
                                 {k->l1(a, b, n), ref->l1(a, b, n)}};
            for (int m = 0; m < 3; m++) {
                float got = pairs[m][0], want = pairs[m][1];
                float tol = 1e-4f * (fabsf(want) + (float)n * 1e-2f);
                if (fabsf(got - want) > tol)
                    fail_msg("%s kernel %d dim %zu: %g vs scalar %g", isa, m, n, got, want);
            }
        }
        free(a);
        free(b);
    }
}

static void avx2_kernels_match_scalar_on_odd_dims(void **st)
{
    (void)st;
    check_isa("avx2");
}

static void avx512_kernels_match_scalar_on_odd_dims(void **st)
{
    (void)st;
    check_isa("avx512");
}

static void best_kernels_match_scalar_on_odd_dims(void **st)
{
    (void)st;
    check_isa(dist_best()->isa);
}

static void metrics_compute_their_definitions(void **st)
{
    (void)st;
    float a[3] = {1, 2, 2}, b[3] = {2, 0, 2};
    assert_float_equal(metric_distance(METRIC_L2, a, b, 3), 5.0f, 1e-6);
    assert_float_equal(metric_distance(METRIC_IP, a, b, 3), 1.0f - 6.0f, 1e-6);
    assert_float_equal(metric_distance(METRIC_L1, a, b, 3), 3.0f, 1e-6);
    assert_float_equal(metric_distance(METRIC_COSINE, a, b, 3), 1.0f - 6.0f / (3.0f * sqrtf(8.0f)),
                       1e-6);
}

static void metric_names_parse_and_unknown_is_rejected(void **st)
{
    (void)st;
    metric_t m;
    hf_err e;
    assert_int_equal(metric_parse("cosine", &m, &e), 0);
    assert_int_equal(m, METRIC_COSINE);
    assert_int_equal(metric_parse("l1", &m, &e), 0);
    assert_int_equal(metric_parse("hamming", &m, &e), HF_EUSAGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(avx2_kernels_match_scalar_on_odd_dims),
        cmocka_unit_test(avx512_kernels_match_scalar_on_odd_dims),
        cmocka_unit_test(best_kernels_match_scalar_on_odd_dims),
        cmocka_unit_test(metrics_compute_their_definitions),
        cmocka_unit_test(metric_names_parse_and_unknown_is_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
