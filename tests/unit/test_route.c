/*
 * test_route.c - the layer router (libcommon/route.c, route_eval.c).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "route.h"

#include "clustered_graph.h"

/* 8 well-separated clusters */
static hnsw *random_graph(size_t n, size_t dim, uint64_t seed)
{
    return clustered_graph(n, dim, seed, 6.0f, NULL);
}

static route_model *pca_router(const hnsw *h, size_t C, size_t r)
{
    hf_err e;
    uint32_t *cand = NULL;
    size_t nc = 0;
    assert_int_equal(route_pick_candidates(h, C, 2000, 6, 3, &cand, &nc, &e), 0);
    assert_true(nc > 0 && nc <= C);
    for (size_t i = 0; i < nc; i++) /* distinct live nodes */
        for (size_t j = 0; j < i; j++)
            assert_int_not_equal(cand[i], cand[j]);
    route_model *m = NULL;
    assert_int_equal(route_new(h->dim, r, nc, cand, &m, &e), 0);
    free(cand);
    assert_int_equal(route_init_pca(m, h, 2000, 3, &e), 0);
    return m;
}

/* Initialised from PCA, the router's pick is the candidate nearest the
 * query in the code space z = W (q - mu), never the classic key. */
static void pca_router_picks_the_nearest_candidate_in_code_space(void **st)
{
    (void)st;
    hnsw *h = random_graph(1200, 16, 5);
    route_model *m = pca_router(h, 32, 4);
    float z[4], zc[4];
    for (uint32_t q = 0; q < 50; q++) {
        const float *v = hnsw_vec(h, q * 13);
        size_t pick = route_pick(m, v, z);
        assert_true(pick < m->C);
        size_t best = 0;
        double bd = INFINITY;
        for (size_t c = 0; c < m->C; c++) {
            route_pick(m, hnsw_vec(h, m->cand_int[c]), zc);
            double d = 0;
            for (size_t a = 0; a < 4; a++)
                d += (double)(z[a] - zc[a]) * (z[a] - zc[a]);
            if (d < bd - 1e-6) {
                bd = d;
                best = c;
            }
        }
        assert_int_equal(pick, best);
    }
    route_destroy(&m);
    hnsw_destroy(&h);
}

/* Rerank: T = 1 is the highest logit alone; T covering every candidate
 * enters at the exactly nearest one (route_nearest); each measured
 * candidate is one more distance computation in route_cost. */
static void rerank_check(metric_t metric)
{
    hnsw *h = clustered_graph_metric(1200, 16, 9, 6.0f, NULL, metric);
    route_model *m = pca_router(h, 12, 4);
    assert_true(m->C + 1 <= ROUTE_MAX_RERANK);
    float z[4];
    double c1 = route_cost(m);
    size_t moved = 0;
    for (uint32_t q = 0; q < 60; q++) {
        const float *v = hnsw_vec(h, q * 17 + 3);
        m->rerank = 1;
        size_t top = route_pick(m, v, z);
        assert_int_equal(route_pick_rerank(m, h, v, z), top);
        m->rerank = (uint32_t)(m->C + 1);
        size_t all = route_pick_rerank(m, h, v, z);
        assert_int_equal(all, route_nearest(m, h, v));
        moved += all != top;
    }
    assert_true(moved > 0); /* the code space's nearest is not always the nearest */
    m->rerank = 4;
    assert_true(fabs(route_cost(m) - (c1 + 4)) < 1e-9);
    route_destroy(&m);
    hnsw_destroy(&h);
}

static void rerank_enters_at_the_nearest_of_the_best_candidates(void **st)
{
    (void)st;
    rerank_check(METRIC_L2);
    rerank_check(METRIC_COSINE); /* its kernel is a dot product: larger is nearer */
}

/* The frame round-trips bit for bit: the reloaded router routes every
 * query the same; a frame of another dimension does not bind. */
static void router_frame_round_trips_and_binds_only_its_own_index(void **st)
{
    (void)st;
    hnsw *h = random_graph(800, 16, 7);
    route_model *m = pca_router(h, 16, 4), *m2 = NULL;
    m->medoid = 3;
    m->fallback = 1;
    m->rerank = 5;
    hf_err e;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(route_pack(m, NULL, &sb, &e), 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
    assert_true(route_is_frame(&u.data));
    assert_int_equal(route_unpack(&u.data, &m2, &e), 0);
    assert_int_equal(route_bind(m2, h, &e), 0);
    assert_int_equal(m2->medoid, 3);
    assert_int_equal(m2->fallback, 1);
    assert_int_equal(m2->rerank, 5);
    assert_memory_equal(m2->cand, m->cand, m->C * sizeof *m->cand);
    float z[4];
    for (uint32_t q = 0; q < 100; q++)
        assert_int_equal(route_pick(m, hnsw_vec(h, q), z), route_pick(m2, hnsw_vec(h, q), z));
    hnsw *other = random_graph(100, 8, 1);
    assert_int_equal(route_bind(m2, other, &e), HF_EDATA);
    hnsw_destroy(&other);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    route_destroy(&m);
    route_destroy(&m2);
    hnsw_destroy(&h);
}

/* Training on labels the PCA router gets wrong moves the router to them:
 * every query labelled with one fixed candidate ends up routed there. */
static void training_moves_the_router_to_its_labels(void **st)
{
    (void)st;
    hnsw *h = random_graph(1000, 16, 9);
    route_model *m = pca_router(h, 16, 4);
    size_t nq = 512, nt = 2;
    float *q = malloc(nq * 16 * sizeof *q);
    uint32_t *keys = malloc(nq * nt * sizeof *keys);
    float *costs = malloc(nq * nt * sizeof *costs);
    for (size_t i = 0; i < nq; i++) {
        memcpy(q + i * 16, hnsw_vec(h, (uint32_t)i), 16 * sizeof *q);
        keys[i * nt] = (uint32_t)(m->C); /* the classic key is the cheap one */
        costs[i * nt] = 100;
        keys[i * nt + 1] = 0;
        costs[i * nt + 1] = 400;
    }
    float z[4];
    size_t before = 0, after = 0;
    for (size_t i = 0; i < nq; i++)
        before += route_pick(m, q + i * 16, z) == m->C;
    float loss = 0;
    hf_err e;
    assert_int_equal(route_train(m, q, nq, keys, costs, nt, 10.0f, 30, 0.05f, 1, &loss, &e), 0);
    for (size_t i = 0; i < nq; i++)
        after += route_pick(m, q + i * 16, z) == m->C;
    assert_int_equal(before, 0);
    assert_true(after > nq * 9 / 10);
    assert_true(loss < 1.0f); /* uniform over the 17 keys would be ln 17 = 2.8 */
    free(q);
    free(keys);
    free(costs);
    route_destroy(&m);
    hnsw_destroy(&h);
}

/* The evaluation is the same for any thread count, and the classic mode
 * costs what hnsw_search costs. */
static void evaluation_does_not_depend_on_the_thread_count(void **st)
{
    (void)st;
    hnsw *h = random_graph(900, 16, 11);
    route_model *m = pca_router(h, 16, 4);
    uint32_t ids[60];
    for (uint32_t i = 0; i < 60; i++)
        ids[i] = i * 11 + 1 == h->entry ? i * 11 + 2 : i * 11 + 1;
    route_qset *qs = NULL;
    hf_err e;
    assert_int_equal(route_qset_new(h, ids, 60, 10, &qs, &e), 0);
    double upper_classic = 0;
    for (route_mode md = ROUTE_CLASSIC; md <= ROUTE_LEARNED; md++) {
        double r1, c1, u1, r3, c3, u3;
        assert_int_equal(route_eval(m, h, qs, md, 32, 1, &r1, &c1, &u1, &e), 0);
        assert_int_equal(route_eval(m, h, qs, md, 32, 3, &r3, &c3, &u3, &e), 0);
        assert_true(r1 == r3 && c1 == c3 && u1 == u3);
        assert_true(r1 > 0.8);
        if (md == ROUTE_CLASSIC)
            upper_classic = u1;
        else if (md != ROUTE_LEARNED) /* level 0 straight away, save a query at its own node */
            assert_true(u1 < upper_classic / 2);
    }
    route_qset_destroy(&qs);
    route_destroy(&m);
    hnsw_destroy(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pca_router_picks_the_nearest_candidate_in_code_space),
        cmocka_unit_test(rerank_enters_at_the_nearest_of_the_best_candidates),
        cmocka_unit_test(router_frame_round_trips_and_binds_only_its_own_index),
        cmocka_unit_test(training_moves_the_router_to_its_labels),
        cmocka_unit_test(evaluation_does_not_depend_on_the_thread_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
