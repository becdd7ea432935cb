/*
 * test_upd.c - the live index (upd.h) and the external id table: inserts
 * find true neighbours, upserts replace, deletes leave the graph (after a
 * pass no edge points to a deleted slot, every live node is reachable on a
 * full walk, the entry point is live), slots are reused, churn keeps
 * recall, deletes of unknown ids change nothing, a compact copy keeps
 * every live vector under its id, and even a graph of M 2 is fully
 * reachable after every insert frame and every pass.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hnsw_ids.h"
#include "upd.h"

#define N 3000
#define DIM 16
#define NQ 100
#define K 10

static float *base, *queries;

static int make_data(void **st)
{
    (void)st;
    unsigned seed = 5;
    base = malloc(N * DIM * sizeof(float));
    queries = malloc(NQ * DIM * sizeof(float));
    for (size_t i = 0; i < N * DIM; i++)
        base[i] = (float)rand_r(&seed) / RAND_MAX;
    for (size_t i = 0; i < NQ * DIM; i++)
        queries[i] = (float)rand_r(&seed) / RAND_MAX;
    return 0;
}

static int free_data(void **st)
{
    (void)st;
    free(base);
    free(queries);
    return 0;
}

static float l2(const float *a, const float *b)
{
    float s = 0;
    for (int j = 0; j < DIM; j++)
        s += (a[j] - b[j]) * (a[j] - b[j]);
    return s;
}

/* recall@K of the live index against brute force over rows whose live[i] is set
 * (row i has external id 1000 + i) */
static double recall(upd_index *u, const uint8_t *live)
{
    hf_err e;
    double hits = 0;
    hnsw_hit out[K];
    float *best = malloc(N * sizeof(float));
    for (int q = 0; q < NQ; q++) {
        const float *qv = queries + q * DIM;
        size_t nlive = 0;
        for (int i = 0; i < N; i++)
            if (live[i])
                best[nlive++] = l2(qv, base + i * DIM);
        /* K-th smallest by partial selection */
        for (size_t a = 0; a < K && a < nlive; a++)
            for (size_t b = a + 1; b < nlive; b++)
                if (best[b] < best[a]) {
                    float t = best[a];
                    best[a] = best[b];
                    best[b] = t;
                }
        float thr = best[(nlive < K ? nlive : K) - 1] * 1.0001f + 1e-6f;
        size_t n = 0;
        assert_int_equal(upd_search(u, qv, K, 64, out, &n, NULL, &e), 0);
        for (size_t r = 0; r < n; r++) {
            uint64_t ext = upd_ext_id(u, out[r].id);
            assert_true(ext >= 1000 && ext < 1000 + N);
            assert_true(live[ext - 1000]); /* never a deleted id */
            if (out[r].d <= thr)
                hits++;
        }
    }
    free(best);
    return hits / (NQ * K);
}

static void assert_sound(const upd_index *u)
{
    size_t unreach, bad;
    upd_check(u, &unreach, &bad);
    assert_int_equal(unreach, 0);
    assert_int_equal(bad, 0);
    const hnsw *h = upd_graph(u);
    if (upd_nlive(u)) {
        assert_int_equal(upd_state(u, h->entry), UPD_LIVE);
        assert_int_equal(h->levels[h->entry], h->max_level);
    }
}

static upd_index *fill(uint8_t *live)
{
    hf_err e;
    hnsw_params p = {.M = 8, .ef_construction = 100, .seed = 3, .metric = METRIC_L2};
    hnsw_params_defaults(&p);
    upd_index *u = NULL;
    assert_int_equal(upd_create(&p, DIM, &u, &e), 0);
    uint64_t ext[100];
    for (int s = 0; s < N; s += 100) {
        for (int i = 0; i < 100; i++)
            ext[i] = 1000 + s + i;
        assert_int_equal(upd_insert(u, ext, base + s * DIM, 100, &e), 0);
    }
    memset(live, 1, N);
    return u;
}

static void inserts_find_true_neighbours(void **st)
{
    (void)st;
    uint8_t live[N];
    upd_index *u = fill(live);
    assert_int_equal(upd_nlive(u), N);
    assert_true(recall(u, live) >= 0.97);
    assert_sound(u);
    upd_destroy(&u);
    assert_null(u);
}

static void deletes_leave_the_graph_and_slots_are_reused(void **st)
{
    (void)st;
    hf_err e;
    uint8_t live[N];
    upd_index *u = fill(live);
    unsigned seed = 9;
    uint64_t del[901]; /* 900 and the entry point */
    size_t nd = 0;
    for (int i = 0; i < N && nd < 900; i++)
        if (rand_r(&seed) % 3 == 0) {
            del[nd++] = 1000 + i;
            live[i] = 0;
        }
    /* the entry point goes too */
    uint64_t entry_ext = upd_ext_id(u, upd_graph(u)->entry);
    if (live[entry_ext - 1000]) {
        del[nd++] = entry_ext;
        live[entry_ext - 1000] = 0;
    }
    assert_int_equal(upd_delete(u, del, nd, &e), 0);
    /* tombstoned before the pass: never returned */
    assert_true(recall(u, live) >= 0.9);
    assert_int_equal(upd_pending(u), nd);
    assert_int_equal(upd_consolidate(u, &e), 0);
    assert_int_equal(upd_pending(u), 0);
    assert_int_equal(upd_nlive(u), N - nd);
    assert_sound(u);
    assert_true(recall(u, live) >= 0.95);
    /* re-insert the deleted rows: every freed slot is taken, none added */
    size_t slots = upd_graph(u)->n;
    for (size_t i = 0; i < nd; i++) {
        uint64_t id = del[i];
        assert_int_equal(upd_insert(u, &id, base + (id - 1000) * DIM, 1, &e), 0);
        live[id - 1000] = 1;
    }
    assert_int_equal(upd_graph(u)->n, slots);
    assert_int_equal(upd_nlive(u), N);
    assert_sound(u);
    assert_true(recall(u, live) >= 0.96);
    upd_destroy(&u);
}

static void unknown_or_repeated_delete_changes_nothing(void **st)
{
    (void)st;
    hf_err e;
    uint8_t live[N];
    upd_index *u = fill(live);
    uint64_t bad[3] = {1000, 1001, 77};
    assert_int_equal(upd_delete(u, bad, 3, &e), HF_EDATA);
    assert_non_null(strstr(e.msg, "77"));
    uint64_t twice[2] = {1005, 1005};
    assert_int_equal(upd_delete(u, twice, 2, &e), HF_EDATA);
    assert_int_equal(upd_nlive(u), N);
    assert_int_equal(upd_pending(u), 0);
    upd_destroy(&u);
}

static void upsert_replaces_the_vector(void **st)
{
    (void)st;
    hf_err e;
    uint8_t live[N];
    upd_index *u = fill(live);
    /* id 1000 gets query 0's vector: query 0 must now find it at distance 0 */
    uint64_t id = 1000;
    assert_int_equal(upd_insert(u, &id, queries, 1, &e), 0);
    assert_int_equal(upd_nlive(u), N);
    hnsw_hit out[K];
    size_t n;
    assert_int_equal(upd_search(u, queries, K, 64, out, &n, NULL, &e), 0);
    assert_int_equal(upd_ext_id(u, out[0].id), 1000);
    assert_true(out[0].d < 1e-6f);
    assert_int_equal(upd_get_stats(u)->replaced, 1);
    assert_int_equal(upd_consolidate(u, &e), 0);
    assert_sound(u);
    upd_destroy(&u);
}

static void churn_keeps_recall_and_reachability(void **st)
{
    (void)st;
    hf_err e;
    uint8_t live[N];
    upd_index *u = fill(live);
    double r0 = recall(u, live);
    unsigned seed = 21;
    uint64_t ids[N / 20];
    for (int cycle = 0; cycle < 30; cycle++) {
        size_t nd = 0;
        while (nd < N / 20) {
            int i = rand_r(&seed) % N;
            if (!live[i])
                continue;
            live[i] = 0;
            ids[nd++] = 1000 + (uint64_t)i;
        }
        assert_int_equal(upd_delete(u, ids, nd, &e), 0);
        assert_int_equal(upd_consolidate(u, &e), 0);
        assert_sound(u);
        for (size_t i = 0; i < nd; i++) {
            assert_int_equal(upd_insert(u, &ids[i], base + (ids[i] - 1000) * DIM, 1, &e), 0);
            live[ids[i] - 1000] = 1;
        }
    }
    assert_int_equal(upd_graph(u)->n, N);
    double r1 = recall(u, live);
    assert_true(r1 >= r0 - 0.02);
    upd_destroy(&u);
}

static void deleting_everything_leaves_an_empty_valid_index(void **st)
{
    (void)st;
    hf_err e;
    uint8_t live[N];
    upd_index *u = fill(live);
    uint64_t *all = malloc(N * sizeof *all);
    for (int i = 0; i < N; i++)
        all[i] = 1000 + (uint64_t)i;
    assert_int_equal(upd_delete(u, all, N, &e), 0);
    assert_int_equal(upd_consolidate(u, &e), 0);
    assert_int_equal(upd_nlive(u), 0);
    assert_int_equal(upd_graph(u)->entry, HNSW_NONE);
    hnsw_hit out[K];
    size_t n = 5;
    assert_int_equal(upd_search(u, queries, K, 64, out, &n, NULL, &e), 0);
    assert_int_equal(n, 0);
    /* and it fills again */
    assert_int_equal(upd_insert(u, all, base, 500, &e), 0);
    memset(live, 0, N);
    memset(live, 1, 500);
    assert_sound(u);
    assert_true(recall(u, live) >= 0.97);
    free(all);
    upd_destroy(&u);
}

static void compact_copy_keeps_live_vectors_and_ids(void **st)
{
    (void)st;
    hf_err e;
    uint8_t live[N];
    upd_index *u = fill(live);
    uint64_t del[2] = {1003, 1500};
    assert_int_equal(upd_delete(u, del, 2, &e), 0);
    assert_int_equal(upd_consolidate(u, &e), 0);
    hnsw *c = NULL;
    hnsw_ids *ids = NULL;
    assert_int_equal(upd_compact(u, &c, &ids, &e), 0);
    assert_int_equal(c->n, N - 2);
    assert_int_equal(ids->n, N - 2);
    /* an index started empty stores its dimensions by variance, as
     * graph-build: the copy keeps that order */
    assert_non_null(c->perm);
    float in_order[DIM];
    for (size_t i = 0; i < c->n; i++) {
        uint64_t x = ids->ext[i];
        assert_true(x != 1003 && x != 1500);
        hnsw_unpermute(c, hnsw_vec(c, (uint32_t)i), in_order);
        assert_true(l2(in_order, base + (x - 1000) * DIM) < 1e-9f);
    }
    /* wrap the copy again: same answers */
    upd_index *v = NULL;
    assert_int_equal(upd_new(c, ids, &v, &e), 0);
    live[3] = live[500] = 0;
    assert_sound(v);
    assert_true(recall(v, live) >= 0.97);
    upd_destroy(&v);
    upd_destroy(&u);
}

/* small M and ef_construction prune hardest; the pass's reachability
 * search uses a wider beam than ef_construction */
static void small_graphs_stay_reachable_after_every_frame(void **st)
{
    (void)st;
    hf_err e;
    hnsw_params p = {.M = 2, .ef_construction = 4, .seed = 1, .metric = METRIC_L2};
    hnsw_params_defaults(&p);
    upd_index *u = NULL;
    assert_int_equal(upd_create(&p, DIM, &u, &e), 0);
    uint64_t ext[10];
    for (int s = 0; s < 2000; s += 10) {
        for (int i = 0; i < 10; i++)
            ext[i] = (uint64_t)(s + i);
        assert_int_equal(upd_insert(u, ext, base + s * DIM, 10, &e), 0);
        assert_sound(u);
        if (s % 50 == 0 && s) { /* delete a few of the previous frames' rows */
            uint64_t d[3] = {(uint64_t)s - 10, (uint64_t)s - 7, (uint64_t)s - 3};
            assert_int_equal(upd_delete(u, d, 3, &e), 0);
            assert_int_equal(upd_consolidate(u, &e), 0);
            assert_sound(u);
        }
    }
    upd_destroy(&u);
}

static void id_table_binds_finds_and_unbinds(void **st)
{
    (void)st;
    hf_err e;
    hnsw_ids *t = NULL;
    assert_int_equal(hnsw_ids_new(&t, &e), 0);
    for (uint32_t i = 0; i < 5000; i++)
        assert_int_equal(hnsw_ids_bind(t, i, (uint64_t)i * 7919 + (1ULL << 40), &e), 0);
    assert_int_equal(hnsw_ids_bind(t, 9, 7919 + (1ULL << 40), &e), HF_EDATA);
    for (uint32_t i = 0; i < 5000; i += 2)
        assert_int_equal(hnsw_ids_unbind(t, (uint64_t)i * 7919 + (1ULL << 40)), 0);
    for (uint32_t i = 0; i < 5000; i++)
        assert_int_equal(hnsw_ids_find(t, (uint64_t)i * 7919 + (1ULL << 40)),
                         i % 2 ? i : UINT32_MAX);
    assert_int_equal(hnsw_ids_unbind(t, 12345), -1);
    hnsw_ids_destroy(&t);
    assert_null(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(inserts_find_true_neighbours),
        cmocka_unit_test(deletes_leave_the_graph_and_slots_are_reused),
        cmocka_unit_test(unknown_or_repeated_delete_changes_nothing),
        cmocka_unit_test(upsert_replaces_the_vector),
        cmocka_unit_test(churn_keeps_recall_and_reachability),
        cmocka_unit_test(deleting_everything_leaves_an_empty_valid_index),
        cmocka_unit_test(compact_copy_keeps_live_vectors_and_ids),
        cmocka_unit_test(small_graphs_stay_reachable_after_every_frame),
        cmocka_unit_test(id_table_binds_finds_and_unbinds),
    };
    return cmocka_run_group_tests(tests, make_data, free_data);
}
