/*
 * test_quant.c - codes approximate the distances they stand for (int8 is
 * exact on 8-bit data), codebooks survive a frame round trip, and a graph
 * searched on codes with re-ranking finds the true neighbours, also after
 * save and load.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "hnsw.h"
#include "hnsw_io.h"
#include "knn.h"
#include "quant.h"

#define N 2000
#define DIM 40
#define NQ 50
#define K 10

static float *base, *queries;

static int make_data(void **st)
{
    (void)st;
    unsigned seed = 17;
    base = malloc(N * DIM * sizeof(float));
    queries = malloc(NQ * DIM * sizeof(float));
    for (size_t i = 0; i < N * DIM; i++)
        base[i] = (float)(rand_r(&seed) % 256); /* 8-bit data, like MNIST pixels */
    for (size_t i = 0; i < NQ * DIM; i++)
        queries[i] = (float)(rand_r(&seed) % 256);
    return 0;
}

static int free_data(void **st)
{
    (void)st;
    free(base);
    free(queries);
    return 0;
}

static double rel_err_of(quant_kind kind, metric_t m)
{
    quant *q = NULL;
    hf_err e;
    assert_int_equal(quant_train(kind, m, DIM, base, DIM, N, 1, &q, &e), 0);
    quant_query *qq = NULL;
    assert_int_equal(quant_query_new(q, &qq, &e), 0);
    uint8_t *code = malloc(q->code_bytes);
    double worst = 0;
    for (size_t i = 0; i < 20; i++) {
        quant_query_set(qq, queries + i * DIM);
        for (size_t j = 0; j < 50; j++) {
            quant_encode(q, base + j * DIM, code);
            double want = metric_distance(m, queries + i * DIM, base + j * DIM, DIM);
            double got = quant_distance(qq, code);
            double err = fabs(got - want) / (fabs(want) + 1e-6);
            worst = err > worst ? err : worst;
        }
    }
    free(code);
    quant_query_destroy(&qq);
    quant_destroy(&q);
    return worst;
}

static void int8_codes_are_exact_on_8_bit_data(void **st)
{
    (void)st;
    assert_true(rel_err_of(QUANT_INT8, METRIC_L2) < 1e-5);
    assert_true(rel_err_of(QUANT_INT8, METRIC_L1) < 1e-5);
}

/* Integer data spanning fewer than 256 values gets unit steps, so codes are
 * still exact (a stretched grid would fall between the data's values). */
static void int8_codes_are_exact_on_narrow_integer_data(void **st)
{
    (void)st;
    unsigned seed = 5;
    float *rows = malloc(500 * DIM * sizeof(float));
    for (size_t i = 0; i < 500 * DIM; i++)
        rows[i] = (float)(rand_r(&seed) % 121) - 7.0f; /* -7 .. 113 */
    quant *q = NULL;
    quant_query *qq = NULL;
    hf_err e;
    assert_int_equal(quant_train(QUANT_INT8, METRIC_L2, DIM, rows, DIM, 500, 1, &q, &e), 0);
    assert_true(q->step == 1.0f);
    assert_int_equal(quant_query_new(q, &qq, &e), 0);
    uint8_t code[DIM];
    for (size_t i = 0; i < 10; i++) {
        quant_query_set(qq, rows + (499 - i) * DIM);
        for (size_t j = 0; j < 40; j++) {
            quant_encode(q, rows + j * DIM, code);
            float want = metric_distance(METRIC_L2, rows + (499 - i) * DIM, rows + j * DIM, DIM);
            assert_true(quant_distance(qq, code) == want);
        }
    }
    quant_query_destroy(&qq);
    quant_destroy(&q);
    free(rows);
}

/* The bounded int8 distance is exact when the distance is within the bound
 * and otherwise returns something beyond the bound (never a smaller value,
 * which would let a far candidate in). */
static void bounded_int8_distance_respects_its_bound(void **st)
{
    (void)st;
    enum { D = 300, ROWS = 200 };
    unsigned seed = 9;
    float *rows = malloc(ROWS * D * sizeof(float));
    for (size_t i = 0; i < ROWS * D; i++)
        rows[i] = (float)(rand_r(&seed) % 256);
    quant *q = NULL;
    quant_query *qq = NULL;
    hf_err e;
    assert_int_equal(quant_train(QUANT_INT8, METRIC_L2, D, rows, D, ROWS, 1, &q, &e), 0);
    assert_int_equal(quant_query_new(q, &qq, &e), 0);
    if (!qq->dist_bounded) {
        quant_query_destroy(&qq);
        quant_destroy(&q);
        free(rows);
        skip(); /* no AVX-512BW on this CPU: search uses the full distance */
    }
    uint8_t code[D];
    quant_query_set(qq, rows);
    for (size_t j = 1; j < ROWS; j++) {
        quant_encode(q, rows + j * D, code);
        float full = quant_distance(qq, code);
        assert_true(qq->dist_bounded(qq, code, full) == full);
        assert_true(qq->dist_bounded(qq, code, 2 * full) == full);
        float b = full * (float)(j % 10) / 10.0f;
        assert_true(qq->dist_bounded(qq, code, b) > b);
    }
    quant_query_destroy(&qq);
    quant_destroy(&q);
    free(rows);
}

/* A graph over the first n base vectors with codes of the given kind. */
static hnsw *build_with_codes(size_t n, uint32_t M, uint32_t efc, uint64_t seed, quant_kind kind)
{
    hnsw_params p = {.M = M, .ef_construction = efc, .seed = seed};
    hnsw_params_defaults(&p);
    hnsw *h = NULL;
    hf_err e;
    assert_int_equal(hnsw_new(&p, DIM, &h, &e), 0);
    assert_int_equal(hnsw_append(h, base, n, NULL, &e), 0);
    assert_int_equal(hnsw_build(h, 0, 1, NULL, NULL, &e), 0);
    assert_int_equal(hnsw_codes_build(h, kind, 3, &e), 0);
    return h;
}

/* The code block's bit-packed level-0 links unpack to exactly the graph's
 * lists, at node counts on both sides of a bit-width step (255 fits 8 bits
 * with the end marker, 256 needs 9). */
static void packed_links_unpack_to_the_graph_lists(void **st)
{
    (void)st;
    size_t counts[] = {255, 256, N};
    for (size_t c = 0; c < 3; c++) {
        hnsw *h = build_with_codes(counts[c], 6, 40, 2, QUANT_INT8);
        assert_int_equal(h->cid_bits, counts[c] == 255 ? 8u : counts[c] == 256 ? 9u : 11u);
        uint32_t got[64];
        for (uint32_t i = 0; i < h->n; i++) {
            const uint32_t *want = hnsw_links0(h, i);
            assert_int_equal(hnsw_clinks0_unpack(h, i, got), want[0]);
            assert_memory_equal(got, want + 1, want[0] * sizeof(uint32_t));
            uint8_t code[DIM];
            quant_encode(h->codes, hnsw_vec(h, i), code);
            assert_memory_equal(hnsw_code(h, i), code, DIM);
        }
        hnsw_destroy(&h);
    }
}

static void f16_codes_are_close(void **st)
{
    (void)st;
    assert_true(rel_err_of(QUANT_F16, METRIC_L2) < 1e-3);
}

static void pq_codes_approximate_l2(void **st)
{
    (void)st;
    assert_true(rel_err_of(QUANT_PQ8, METRIC_L2) < 0.5);
    assert_true(rel_err_of(QUANT_PQ4, METRIC_L2) < 0.8);
}

static void codebooks_round_trip_through_frames(void **st)
{
    (void)st;
    quant_kind kinds[] = {QUANT_F16, QUANT_INT8, QUANT_PQ8, QUANT_PQ4, QUANT_BINARY};
    for (size_t k = 0; k < 5; k++) {
        quant *q = NULL, *r = NULL;
        hf_err e;
        assert_int_equal(quant_train(kinds[k], METRIC_L2, DIM, base, DIM, N, 2, &q, &e), 0);
        frame_out fo;
        frame_out_init(&fo);
        quant_pack(q, &fo);
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        size_t off = 0;
        assert_int_equal(msgpack_unpack_next(&up, fo.sb.data, fo.sb.size, &off),
                         MSGPACK_UNPACK_SUCCESS);
        frame_in f;
        assert_int_equal(frame_in_wrap(&f, &up.data, 1, &e), 0);
        if (quant_unpack(&f, &r, &e) != 0)
            fail_msg("%s: %s", quant_name(kinds[k]), e.msg);
        uint8_t c1[256], c2[256];
        quant_encode(q, base, c1);
        quant_encode(r, base, c2);
        assert_memory_equal(c1, c2, q->code_bytes);
        msgpack_unpacked_destroy(&up);
        frame_out_free(&fo);
        quant_destroy(&q);
        quant_destroy(&r);
    }
}

static double recall_on_codes(const hnsw *h, size_t rerank)
{
    hf_err e;
    uint32_t gt[NQ * K];
    float gd[NQ * K];
    knn_base b = {.rows = hnsw_vec(h, 0),
                  .stride = h->node_bytes / 4,
                  .n = h->n,
                  .dim = DIM,
                  .metric = h->p.metric};
    assert_int_equal(knn_exact(&b, queries, NQ, K, gt, gd, &e), 0);
    hnsw_searcher *s = NULL;
    assert_int_equal(hnsw_searcher_new(h, 256, &s, &e), 0);
    size_t hits = 0;
    for (size_t q = 0; q < NQ; q++) {
        hnsw_hit out[K];
        size_t n;
        hnsw_search_codes(h, s, queries + q * DIM, K, 128, rerank, out, &n, NULL);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < K; j++)
                if (out[i].id == gt[q * K + j]) {
                    hits++;
                    break;
                }
    }
    hnsw_searcher_destroy(&s);
    return (double)hits / (NQ * K);
}

static void search_on_codes_with_reranking_finds_true_neighbours(void **st)
{
    (void)st;
    quant_kind kinds[] = {QUANT_F16, QUANT_INT8, QUANT_PQ8, QUANT_PQ4, QUANT_BINARY};
    for (size_t k = 0; k < 5; k++) {
        hnsw *h = build_with_codes(N, 12, 100, 1, kinds[k]);
        /* binary codes (1 bit a dimension) only hint at the order on uniform
         * data; re-ranking 128 candidates still recovers most neighbours */
        double r = recall_on_codes(h, 128), want = kinds[k] == QUANT_BINARY ? 0.6 : 0.9;
        if (r < want)
            fail_msg("%s codes: recall@10 %.3f < %.2f", quant_name(kinds[k]), r, want);
        hnsw_destroy(&h);
    }
}

/* int8 codes of 8-bit data are lossless: the search then skips re-reading
 * the vectors, and must answer exactly as re-ranking from them does; one
 * fractional value anywhere (in a vector, or in the query) turns that off. */
static void lossless_codes_answer_as_reranking_from_vectors(void **st)
{
    (void)st;
    hf_err e;
    hnsw *h = build_with_codes(N, 12, 100, 1, QUANT_INT8);
    assert_true(h->codes_exact);
    hnsw_searcher *s = NULL;
    assert_int_equal(hnsw_searcher_new(h, 64, &s, &e), 0);
    float q[DIM];
    for (size_t i = 0; i < NQ; i++) {
        memcpy(q, queries + i * DIM, sizeof q);
        if (i % 5 == 0)
            q[i % DIM] += 0.5f; /* not on the code grid: re-ranked from vectors */
        hnsw_hit a[K], b[K];
        size_t na, nb;
        h->codes_exact = 1;
        assert_int_equal(hnsw_search_codes(h, s, q, K, 32, K, a, &na, NULL), 0);
        h->codes_exact = 0;
        assert_int_equal(hnsw_search_codes(h, s, q, K, 32, K, b, &nb, NULL), 0);
        assert_int_equal(na, nb);
        for (size_t j = 0; j < na; j++) {
            assert_int_equal(a[j].id, b[j].id);
            assert_true(a[j].d == b[j].d);
        }
    }
    hnsw_searcher_destroy(&s);
    hnsw_destroy(&h);

    float keep = base[7 * DIM + 3];
    base[7 * DIM + 3] += 0.25f;
    h = build_with_codes(N, 12, 100, 1, QUANT_INT8);
    base[7 * DIM + 3] = keep;
    assert_false(h->codes_exact);
    hnsw_destroy(&h);
}

static void codes_survive_save_and_load(void **st)
{
    (void)st;
    char path[] = "/tmp/hf_test_quant_XXXXXX";
    close(mkstemp(path));
    hnsw *h = build_with_codes(500, 8, 50, 1, QUANT_PQ8), *g = NULL;
    hf_err e;
    channel *c = NULL;
    assert_int_equal(channel_open_out(path, &c, &e), 0);
    assert_int_equal(hnsw_save_body(h, c, &e), 0);
    assert_int_equal(channel_send_end(c, h->n, &e), 0);
    assert_int_equal(channel_commit(c, &e), 0);
    channel_destroy(&c);
    assert_int_equal(channel_open_in(path, 0, &c, &e), 0);
    if (hnsw_load(c, &g, NULL, NULL, &e))
        fail_msg("load: %s", e.msg);
    channel_destroy(&c);
    assert_non_null(g->codes);
    assert_int_equal(g->cnode_bytes, h->cnode_bytes);
    assert_memory_equal(g->cblock, h->cblock, h->n * h->cnode_bytes);
    hnsw_destroy(&h);
    hnsw_destroy(&g);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(int8_codes_are_exact_on_8_bit_data),
        cmocka_unit_test(int8_codes_are_exact_on_narrow_integer_data),
        cmocka_unit_test(bounded_int8_distance_respects_its_bound),
        cmocka_unit_test(packed_links_unpack_to_the_graph_lists),
        cmocka_unit_test(f16_codes_are_close),
        cmocka_unit_test(pq_codes_approximate_l2),
        cmocka_unit_test(codebooks_round_trip_through_frames),
        cmocka_unit_test(search_on_codes_with_reranking_finds_true_neighbours),
        cmocka_unit_test(lossless_codes_answer_as_reranking_from_vectors),
        cmocka_unit_test(codes_survive_save_and_load),
    };
    return cmocka_run_group_tests(tests, make_data, free_data);
}
