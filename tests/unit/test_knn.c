/*
 * test_knn.c - the sgemm-based exact search returns what a naive double
 * precision scan returns, for every metric, with tombstones left out.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "knn.h"

#define N 777
#define DIM 19
#define NQ 70
#define K 7

static void exact_search_matches_a_naive_scan_for_every_metric(void **st)
{
    (void)st;
    unsigned seed = 3;
    float *base = malloc(N * DIM * sizeof(float)), *q = malloc(NQ * DIM * sizeof(float));
    for (size_t i = 0; i < N * DIM; i++)
        base[i] = (float)rand_r(&seed) / RAND_MAX - 0.5f;
    for (size_t i = 0; i < NQ * DIM; i++)
        q[i] = (float)rand_r(&seed) / RAND_MAX - 0.5f;
    uint8_t skip[N] = {0};
    skip[5] = skip[100] = 1;
    metric_t ms[] = {METRIC_L2, METRIC_IP, METRIC_L1};
    for (size_t m = 0; m < 3; m++) {
        uint32_t ids[NQ * K];
        float d[NQ * K];
        knn_base b = {
            .rows = base, .stride = DIM, .n = N, .dim = DIM, .skip = skip, .metric = ms[m]};
        assert_int_equal(knn_exact(&b, q, NQ, K, ids, d, NULL), 0);
        for (size_t i = 0; i < NQ; i++) {
            /* the k-th distance of a naive scan bounds every returned one */
            float all[N];
            for (size_t j = 0; j < N; j++)
                all[j] =
                    skip[j] ? INFINITY : metric_distance(ms[m], q + i * DIM, base + j * DIM, DIM);
            for (size_t r = 0; r < K; r++) {
                size_t below = 0;
                for (size_t j = 0; j < N; j++)
                    if (all[j] < d[i * K + r] - 1e-5f)
                        below++;
                assert_true(below <= r);
                assert_false(skip[ids[i * K + r]]);
                assert_float_equal(d[i * K + r], all[ids[i * K + r]], 1e-4);
            }
        }
    }
    free(base);
    free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exact_search_matches_a_naive_scan_for_every_metric),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
