/*
 * test_hnsw.c - the graph finds true neighbours (checked against knn_exact
 * for every metric), is deterministic for one thread and a seed, survives a
 * save/load round trip unchanged, never returns tombstoned nodes, answers the
 * same after renumbering for locality, sorts hits in qsort's order, and the
 * loader refuses a graph whose links point outside it.
 */
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

#define N 3000
#define DIM 24
#define NQ 100
#define K 10

static float *base, *queries;

static int make_data(void **st)
{
    (void)st;
    unsigned seed = 11;
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

static hnsw *build(metric_t m, int threads, uint64_t seed)
{
    hnsw_params p = {.M = 12, .ef_construction = 100, .seed = seed, .metric = m};
    hnsw_params_defaults(&p);
    hnsw *h = NULL;
    hf_err e;
    assert_int_equal(hnsw_new(&p, DIM, &h, &e), 0);
    assert_int_equal(hnsw_append(h, base, N, NULL, &e), 0);
    assert_int_equal(hnsw_build(h, 0, threads, NULL, NULL, &e), 0);
    return h;
}

static double recall_of(const hnsw *h, size_t ef)
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
    assert_int_equal(hnsw_searcher_new(h, 512, &s, &e), 0);
    size_t hits = 0;
    for (size_t q = 0; q < NQ; q++) {
        hnsw_hit out[K];
        size_t n;
        hnsw_search(h, s, queries + q * DIM, K, ef, out, &n, NULL);
        assert_int_equal(n, K);
        for (size_t i = 0; i < n; i++) {
            if (i)
                assert_true(out[i - 1].d <= out[i].d);
            for (size_t j = 0; j < K; j++)
                if (out[i].id == gt[q * K + j]) {
                    hits++;
                    break;
                }
        }
    }
    hnsw_searcher_destroy(&s);
    return (double)hits / (NQ * K);
}

static void search_finds_true_neighbours_for_every_metric(void **st)
{
    (void)st;
    metric_t ms[] = {METRIC_L2, METRIC_IP, METRIC_COSINE, METRIC_L1};
    for (size_t i = 0; i < 4; i++) {
        hnsw *h = build(ms[i], 1, 1); /* one thread: the same graph every run */
        double r = recall_of(h, 128);
        if (r < 0.95)
            fail_msg("metric %s: recall@10 %.3f < 0.95", metric_name(ms[i]), r);
        hnsw_destroy(&h);
        assert_null(h);
    }
}

static void one_thread_and_one_seed_give_the_same_graph(void **st)
{
    (void)st;
    hnsw *a = build(METRIC_L2, 1, 5), *b = build(METRIC_L2, 1, 5);
    assert_int_equal(a->entry, b->entry);
    assert_memory_equal(a->level0, b->level0, a->n * a->node_bytes);
    assert_memory_equal(a->upper, b->upper, a->upper_len * sizeof(uint32_t));
    hnsw_destroy(&a);
    hnsw_destroy(&b);
}

static void save_then_load_gives_the_same_graph(void **st)
{
    (void)st;
    char path[] = "/tmp/hf_test_hnsw_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    hnsw *h = build(METRIC_L2, 2, 3);
    assert_int_equal(hnsw_mark_deleted(h, 7, NULL), 0);
    hf_err e;
    channel *c = NULL;
    assert_int_equal(channel_open_out(path, &c, &e), 0);
    assert_int_equal(hnsw_save_body(h, c, &e), 0);
    assert_int_equal(channel_send_end(c, h->n, &e), 0);
    assert_int_equal(channel_commit(c, &e), 0);
    channel_destroy(&c);
    assert_int_equal(channel_open_in(path, 0, &c, &e), 0);
    hnsw *g = NULL;
    if (hnsw_load(c, &g, NULL, NULL, &e) != 0)
        fail_msg("load: %s", e.msg);
    channel_destroy(&c);
    assert_int_equal(g->n, h->n);
    assert_int_equal(g->entry, h->entry);
    assert_int_equal(g->max_level, h->max_level);
    assert_int_equal(g->n_deleted, 1);
    assert_memory_equal(g->level0, h->level0, h->n * h->node_bytes);
    for (uint32_t i = 0; i < h->n; i++)
        for (int l = 1; l <= h->levels[i]; l++)
            assert_memory_equal(hnsw_links(g, i, l), hnsw_links(h, i, l),
                                (1 + h->p.M) * sizeof(uint32_t));
    hnsw_destroy(&h);
    hnsw_destroy(&g);
    unlink(path);
}

static void tombstoned_nodes_are_never_returned(void **st)
{
    (void)st;
    hnsw *h = build(METRIC_L2, 1, 9);
    hnsw_searcher *s = NULL;
    assert_int_equal(hnsw_searcher_new(h, 64, &s, NULL), 0);
    /* a query equal to a stored vector finds it; after deletion it must not */
    hnsw_hit out[K];
    size_t n;
    hnsw_search(h, s, base + 42 * DIM, K, 64, out, &n, NULL);
    assert_int_equal(out[0].id, 42);
    assert_int_equal(hnsw_mark_deleted(h, 42, NULL), 0);
    hnsw_search(h, s, base + 42 * DIM, K, 64, out, &n, NULL);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(out[i].id, 42);
    assert_int_equal(hnsw_mark_deleted(h, N + 5, NULL), HF_EDATA);
    hnsw_searcher_destroy(&s);
    hnsw_destroy(&h);
}

/* Leave-one-out: a searcher told to exclude a node never measures it, so a
 * stored vector queried against the rest of the graph finds its neighbours
 * but not itself, and the other searches see the node again once cleared. */
static void excluded_node_is_never_measured_or_returned(void **st)
{
    (void)st;
    hnsw *h = build(METRIC_L2, 1, 9);
    hnsw_searcher *s = NULL;
    assert_int_equal(hnsw_searcher_new(h, 64, &s, NULL), 0);
    uint32_t id = h->entry == 42 ? 43 : 42;
    hnsw_hit out[K], ref[K + 1]; /* ref: K + 1 answers (the node itself first) */
    size_t n, nref;
    hnsw_search(h, s, base + id * DIM, K + 1, 64, ref, &nref, NULL);
    assert_int_equal(ref[0].id, id);
    hnsw_searcher_exclude(s, id);
    hnsw_search(h, s, base + id * DIM, K, 64, out, &n, NULL);
    assert_int_equal(n, K);
    for (size_t i = 0; i < n; i++) {
        assert_int_not_equal(out[i].id, id);
        assert_int_equal(out[i].id, ref[i + 1].id); /* the rest, in order */
    }
    hnsw_searcher_exclude(s, HNSW_NONE);
    hnsw_search(h, s, base + id * DIM, K, 64, out, &n, NULL);
    assert_int_equal(out[0].id, id);
    hnsw_searcher_destroy(&s);
    hnsw_destroy(&h);
}

/* Renumbering nodes for locality changes nothing a caller sees: the same
 * ids and distances on f32 vectors and on codes, tombstones still skipped;
 * the renumbered graph refuses to be saved. */
static void reordered_graph_answers_exactly_as_before(void **st)
{
    (void)st;
    hnsw *h = build(METRIC_L2, 1, 5), *g = build(METRIC_L2, 1, 5);
    hf_err e;
    assert_int_equal(hnsw_codes_build(h, QUANT_INT8, 1, &e), 0);
    assert_int_equal(hnsw_codes_build(g, QUANT_INT8, 1, &e), 0);
    assert_int_equal(hnsw_mark_deleted(h, 11, NULL), 0);
    assert_int_equal(hnsw_mark_deleted(g, 11, NULL), 0);
    assert_int_equal(hnsw_reorder(g, &e), 0);
    size_t moved = 0;
    uint8_t *seen = calloc(N, 1);
    for (uint32_t i = 0; i < N; i++) {
        assert_true(g->ext_id[i] < N && !seen[g->ext_id[i]]);
        seen[g->ext_id[i]] = 1;
        moved += g->ext_id[i] != i;
    }
    free(seen);
    assert_true(moved > N / 2); /* it really renumbered */
    hnsw_searcher *sh = NULL, *sg = NULL;
    assert_int_equal(hnsw_searcher_new(h, 64, &sh, NULL), 0);
    assert_int_equal(hnsw_searcher_new(g, 64, &sg, NULL), 0);
    for (size_t q = 0; q < NQ; q++) {
        hnsw_hit a[K], b[K];
        size_t na, nb;
        hnsw_search(h, sh, queries + q * DIM, K, 32, a, &na, NULL);
        hnsw_search(g, sg, queries + q * DIM, K, 32, b, &nb, NULL);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof *a);
        hnsw_search_codes(h, sh, queries + q * DIM, K, 32, 20, a, &na, NULL);
        hnsw_search_codes(g, sg, queries + q * DIM, K, 32, 20, b, &nb, NULL);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof *a);
        for (size_t i = 0; i < nb; i++)
            assert_int_not_equal(b[i].id, 11);
    }
    char path[] = "/tmp/hf_test_reorder_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    channel *c = NULL;
    assert_int_equal(channel_open_out(path, &c, &e), 0);
    assert_int_equal(hnsw_save_body(g, c, &e), HF_EUSAGE);
    channel_destroy(&c);
    unlink(path);
    hnsw_searcher_destroy(&sh);
    hnsw_searcher_destroy(&sg);
    hnsw_destroy(&h);
    hnsw_destroy(&g);
}

static void hit_sort_gives_qsorts_order(void **st)
{
    (void)st;
    unsigned seed = 5;
    hnsw_hit a[700], b[700];
    size_t sizes[] = {0, 1, 2, 15, 16, 17, 33, 64, 100, 257, 700};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        for (int ties = 0; ties < 3; ties++) {
            for (size_t i = 0; i < n; i++) {
                /* ties: few distinct distances, and ids given in reverse */
                a[i].d = ties ? (float)(rand_r(&seed) % (ties == 1 ? 5 : 1)) : (float)rand_r(&seed);
                a[i].id = ties == 2 ? (uint32_t)(n - i) : (uint32_t)rand_r(&seed);
            }
            memcpy(b, a, n * sizeof *a);
            hnsw_hit_sort(a, n);
            if (n)
                qsort(b, n, sizeof *b, hnsw_hit_cmp);
            for (size_t i = 0; i < n; i++) {
                assert_true(a[i].d == b[i].d);
                assert_int_equal(a[i].id, b[i].id);
            }
        }
    }
}

static void bad_parameters_are_refused(void **st)
{
    (void)st;
    hnsw_params p = {.M = 1, .M0 = 2, .ef_construction = 10};
    hnsw *h = NULL;
    hf_err e;
    assert_int_equal(hnsw_new(&p, 8, &h, &e), HF_EUSAGE);
    assert_null(h);
    p.M = 8;
    p.M0 = 16;
    assert_int_equal(hnsw_new(&p, 0, &h, &e), HF_EDATA);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(search_finds_true_neighbours_for_every_metric),
        cmocka_unit_test(one_thread_and_one_seed_give_the_same_graph),
        cmocka_unit_test(save_then_load_gives_the_same_graph),
        cmocka_unit_test(tombstoned_nodes_are_never_returned),
        cmocka_unit_test(excluded_node_is_never_measured_or_returned),
        cmocka_unit_test(reordered_graph_answers_exactly_as_before),
        cmocka_unit_test(hit_sort_gives_qsorts_order),
        cmocka_unit_test(bad_parameters_are_refused),
    };
    return cmocka_run_group_tests(tests, make_data, free_data);
}
