/*
 * test_filt.c - labels and filtered search (filt.h): counts follow set and
 * kill, the wire form round-trips and refuses short, long and out-of-limit
 * bins, any-of and all-of match as defined, and every search mode returns
 * only matching live nodes, min(k, matching) of them, the exact ones for
 * brute force, with recall against brute force for the walks and the scan
 * of int8 codes (lossy on real values, re-ranked; lossless on 8-bit data:
 * the exact answer).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "filt.h"
#include "hnsw.h"
#include "quant.h"

#define N 4000
#define DIM 8
#define K 10

static void counts_follow_set_and_kill(void **st)
{
    (void)st;
    filt_labels *fl = NULL;
    hf_err e;
    assert_int_equal(filt_labels_new(&fl, &e), 0);
    uint32_t a[] = {5, 3, 5}, b[] = {3};
    assert_int_equal(filt_labels_set(fl, 0, a, 3, &e), 0);
    assert_int_equal(filt_labels_set(fl, 2, b, 1, &e), 0);
    assert_int_equal(filt_label_count(fl, 3), 2);
    assert_int_equal(filt_label_count(fl, 5), 1); /* duplicates merged */
    const uint32_t *l;
    assert_int_equal(filt_labels_of(fl, 0, &l), 2);
    assert_int_equal(l[0], 3);
    assert_int_equal(filt_labels_of(fl, 1, &l), 0); /* the gap has none */
    filt_labels_kill(fl, 0);
    assert_int_equal(filt_label_count(fl, 3), 1);
    assert_int_equal(filt_label_count(fl, 5), 0);
    assert_int_equal(filt_labels_set(fl, 0, b, 1, &e), 0); /* revived, relabelled */
    assert_int_equal(filt_label_count(fl, 3), 2);
    uint32_t big = FILT_LABEL_MAX + 1;
    assert_int_equal(filt_labels_set(fl, 1, &big, 1, &e), HF_EDATA);
    filt_labels_destroy(&fl);
    assert_null(fl);
}

static void wire_form_round_trips_and_refuses_bad_bins(void **st)
{
    (void)st;
    filt_labels *fl = NULL, *g = NULL;
    hf_err e;
    assert_int_equal(filt_labels_new(&fl, &e), 0);
    assert_int_equal(filt_labels_new(&g, &e), 0);
    for (uint32_t i = 0; i < 50; i++) {
        uint32_t lab[3] = {i % 7, 100 + i % 3, i};
        assert_int_equal(filt_labels_set(fl, i, lab, i % 4, &e), 0);
    }
    uint32_t *buf = NULL;
    size_t cap = 0, len = 0;
    assert_int_equal(filt_wire_encode(fl, 0, 50, &buf, &cap, &len, &e), 0);
    assert_int_equal(filt_wire_apply(g, 0, buf, len, 50, &e), 0);
    for (uint32_t i = 0; i < 50; i++) {
        const uint32_t *x, *y;
        size_t cx = filt_labels_of(fl, i, &x), cy = filt_labels_of(g, i, &y);
        assert_int_equal(cx, cy);
        assert_memory_equal(x, y, cx * sizeof *x);
    }
    assert_int_equal(filt_wire_check(buf, len - 4, 50, &e), HF_EDATA); /* short */
    assert_int_equal(filt_wire_check(buf, len, 49, &e), HF_EDATA);     /* words left */
    assert_int_equal(filt_wire_check(buf, len, 51, &e), HF_EDATA);     /* rows missing */
    uint32_t bad[2] = {1, FILT_LABEL_MAX + 1};
    assert_int_equal(filt_wire_check(bad, sizeof bad, 1, &e), HF_EDATA);
    free(buf);
    filt_labels_destroy(&fl);
    filt_labels_destroy(&g);
}

static void any_of_and_all_of_match(void **st)
{
    (void)st;
    filt_labels *fl = NULL;
    hf_err e;
    assert_int_equal(filt_labels_new(&fl, &e), 0);
    uint32_t a[] = {1, 4, 9};
    assert_int_equal(filt_labels_set(fl, 0, a, 3, &e), 0);
    filt_query q;
    assert_int_equal(filt_query_parse(&q, "9 2", 0, &e), 0);
    assert_true(filt_match(fl, &q, 0));
    assert_int_equal(filt_query_parse(&q, "9 2", 1, &e), 0);
    assert_false(filt_match(fl, &q, 0));
    assert_int_equal(filt_query_parse(&q, "9 1", 1, &e), 0);
    assert_true(filt_match(fl, &q, 0));
    assert_int_equal(filt_query_parse(&q, "3", 0, &e), 0);
    assert_false(filt_match(fl, &q, 0));
    assert_int_equal(filt_query_parse(&q, "3 x", 0, &e), HF_EDATA);
    assert_int_equal(filt_query_parse(&q, "1048576", 0, &e), HF_EDATA);
    filt_labels_destroy(&fl);
}

/* random vectors (integers 0..255 when eight_bit), labels i % 50 (2 %) and
 * 1000 + i % 2 (50 %), int8 codes; every mode at 2 %, 50 % and an all-of
 * filter */
static void every_mode_on(int eight_bit)
{
    hf_err e;
    hnsw_params p = {.M = 8, .ef_construction = 64, .seed = 3, .metric = METRIC_L2};
    hnsw_params_defaults(&p);
    hnsw *h = NULL;
    assert_int_equal(hnsw_new(&p, DIM, &h, &e), 0);
    float *v = malloc(N * DIM * sizeof *v);
    unsigned seed = 11;
    for (size_t i = 0; i < N * DIM; i++)
        v[i] = eight_bit ? (float)(rand_r(&seed) % 256) : (float)rand_r(&seed) / RAND_MAX;
    assert_int_equal(hnsw_append(h, v, N, NULL, &e), 0);
    assert_int_equal(hnsw_build(h, 0, 1, NULL, NULL, &e), 0);
    assert_int_equal(hnsw_codes_build(h, QUANT_INT8, 1, &e), 0);
    assert_int_equal(h->codes_exact, eight_bit);
    /* tombstone a few, as a live index may */
    for (uint32_t i = 0; i < N; i += 97)
        assert_int_equal(hnsw_mark_deleted(h, i, &e), 0);
    filt_labels *fl = NULL;
    assert_int_equal(filt_labels_new(&fl, &e), 0);
    for (uint32_t i = 0; i < N; i++) {
        uint32_t lab[2] = {i % 50, 1000 + i % 2};
        assert_int_equal(filt_labels_set(fl, i, lab, 2, &e), 0);
    }
    for (uint32_t i = 0; i < N; i += 97)
        filt_labels_kill(fl, i);
    assert_int_equal(filt_postings_build(fl, &e), 0);
    filt_searcher *fs = NULL;
    hnsw_searcher *hs = NULL;
    assert_int_equal(filt_searcher_new(h, 256, &fs, &e), 0);
    assert_int_equal(hnsw_searcher_new(h, 256, &hs, &e), 0);
    const char *filters[] = {"7", "1001", "7 1001", "3 4"};
    int alls[] = {0, 0, 1, 0};
    for (int f = 0; f < 4; f++) {
        filt_query q;
        assert_int_equal(filt_query_parse(&q, filters[f], alls[f], &e), 0);
        size_t tot[FILT_NMODES] = {0};
        for (int t = 0; t < 20; t++) {
            const float *qv = v + (size_t)(t * 131 % N) * DIM;
            hnsw_hit exact[K], got[K];
            size_t ne = 0;
            filt_plan pl;
            filt_plan_defaults(&pl);
            pl.mode = FILT_BRUTE;
            assert_int_equal(filt_search(h, fl, fs, hs, &pl, &q, qv, K, 64, exact, &ne, NULL), 0);
            assert_int_equal(ne, K);
            for (filt_mode m = FILT_AUTO; m < FILT_NMODES; m++) {
                pl.mode = m;
                size_t ng = 0;
                assert_int_equal(filt_search(h, fl, fs, hs, &pl, &q, qv, K, 128, got, &ng, NULL),
                                 0);
                assert_int_equal(ng, K);
                size_t hit = 0;
                for (size_t i = 0; i < ng; i++) {
                    assert_true(filt_match(fl, &q, got[i].id));
                    assert_false(h->deleted[got[i].id]);
                    for (size_t j = 0; j < ne; j++)
                        hit += got[i].id == exact[j].id;
                }
                tot[m] += hit;
                if (m == FILT_SCAN && eight_bit) /* lossless codes: exact */
                    for (size_t i = 0; i < ng; i++)
                        assert_true(got[i].d == exact[i].d);
            }
        }
        /* recall 0.9 at ef 128; the two-hop walk alone is not asked to reach
         * it at 2 % (the planner answers such filters by brute force) */
        int two_percent = f == 0 || f == 2;
        for (filt_mode m = FILT_AUTO; m < FILT_NMODES; m++) {
            if (tot[m] < 9 * 20)
                fprintf(stderr, "filter \"%s\" mode %s: %zu of %d\n", filters[f], filt_mode_name(m),
                        tot[m], 20 * K);
            if (!(m == FILT_GRAPH && two_percent))
                assert_true(tot[m] >= 9 * 20);
        }
    }
    filt_searcher_destroy(&fs);
    hnsw_searcher_destroy(&hs);
    filt_labels_destroy(&fl);
    hnsw_destroy(&h);
    free(v);
}

static void every_mode_returns_only_matching_nodes(void **st)
{
    (void)st;
    every_mode_on(0);
}

static void every_mode_on_lossless_codes(void **st)
{
    (void)st;
    every_mode_on(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counts_follow_set_and_kill),
        cmocka_unit_test(wire_form_round_trips_and_refuses_bad_bins),
        cmocka_unit_test(any_of_and_all_of_match),
        cmocka_unit_test(every_mode_returns_only_matching_nodes),
        cmocka_unit_test(every_mode_on_lossless_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
