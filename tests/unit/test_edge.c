/*
 * test_edge.c - learned edge selection (libcommon/edge_*.c): features on a
 * hand-made graph, labels independent of the thread count, pruning within
 * the budget with every node reachable, reachability repair, and the model
 * frame's bit-exact round trip. Graphs are tiny so the suite runs in about
 * a second.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edge.h"
#include "hnsw.h"

/* A level-0-only graph over the given 2-d points with the given lists. */
static hnsw *hand_graph(const float *pts, size_t n, const uint32_t *const *lists,
                        const uint32_t *degs, uint32_t m0)
{
    hnsw_params p = {.M = 2, .M0 = m0, .ef_construction = 10, .seed = 1, .metric = METRIC_L2};
    hnsw *h = NULL;
    hf_err e;
    assert_int_equal(hnsw_new(&p, 2, &h, &e), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(hnsw_append_with_level(h, pts + 2 * i, 0, &e), 0);
    for (size_t i = 0; i < n; i++) {
        uint32_t *ln = hnsw_links0(h, (uint32_t)i);
        ln[0] = degs[i];
        memcpy(ln + 1, lists[i], degs[i] * sizeof(uint32_t));
    }
    h->entry = 0;
    h->max_level = 0;
    return h;
}

static hnsw *random_graph(size_t n, size_t dim, uint32_t m0, uint64_t seed)
{
    hnsw_params p = {.M = 8, .M0 = m0, .ef_construction = 40, .seed = seed, .metric = METRIC_L2};
    hnsw *h = NULL;
    hf_err e;
    assert_int_equal(hnsw_new(&p, dim, &h, &e), 0);
    nn_rng r;
    nn_rng_seed(&r, seed);
    float *v = malloc(n * dim * sizeof *v);
    for (size_t i = 0; i < n * dim; i++)
        v[i] = nn_rng_normal(&r);
    assert_int_equal(hnsw_append(h, v, n, NULL, &e), 0);
    assert_int_equal(hnsw_build(h, 0, 1, NULL, NULL, &e), 0);
    free(v);
    return h;
}

static void features_match_hand_computed_values(void **st)
{
    (void)st;
    /* 0 (0,0), 1 (1,0), 2 (2,0), 3 (0,3); lists given out of distance order */
    const float pts[] = {0, 0, 1, 0, 2, 0, 0, 3};
    const uint32_t l0[] = {3, 2, 1}, l1[] = {2, 0}, l2[] = {1}, l3[] = {0};
    const uint32_t *lists[] = {l0, l1, l2, l3};
    const uint32_t degs[] = {3, 2, 1, 1};
    hnsw *h = hand_graph(pts, 4, lists, degs, 4);
    edge_graph *g = NULL;
    hf_err e;
    assert_int_equal(edge_graph_new(h, 2, &g, &e), 0);
    assert_int_equal(g->nedges, 7);
    /* node 0's run is sorted nearest first: 1, 2, 3 */
    assert_int_equal(g->off[1], 3);
    assert_int_equal(g->dst[0], 1);
    assert_int_equal(g->dst[1], 2);
    assert_int_equal(g->dst[2], 3);
    assert_float_equal(g->dist[2], 9.0f, 1e-6);
    /* ties in distance keep the lower id first: node 1 -> 0, 2 */
    assert_int_equal(g->dst[3], 0);
    assert_int_equal(g->dst[4], 2);
    assert_int_equal(g->indeg[0], 2);
    assert_int_equal(g->indeg[3], 1);
    assert_float_equal(g->dens[0], 2.0f, 1e-6); /* (1 + 2 + 3) / 3 */
    assert_float_equal(g->dens[3], 3.0f, 1e-6);
    const float *f01 = g->feat + 0 * EDGE_NFEAT, *f02 = g->feat + 1 * EDGE_NFEAT,
                *f03 = g->feat + 2 * EDGE_NFEAT;
    assert_float_equal(f01[EF_RANK], 0.0f, 1e-6);
    assert_float_equal(f02[EF_RANK], 0.5f, 1e-6);
    assert_float_equal(f03[EF_RANK], 1.0f, 1e-6);
    /* 0 -> 2 is occluded by 1 (d(1,2) = 1 < d(0,2) = 4) */
    assert_float_equal(f02[EF_OCCLUDED], 1.0f, 0);
    assert_float_equal(f02[EF_OCCL_FRAC], 1.0f, 1e-6);
    assert_float_equal(f02[EF_OCCL_LOG], log1pf(1.0f), 1e-6);
    assert_float_equal(f02[EF_OCCL_MIN], 0.5f, 1e-6);
    /* 0 -> 3 is not: d(1,3) = 10 and d(2,3) = 13 exceed d(0,3) = 9 */
    assert_float_equal(f03[EF_OCCLUDED], 0.0f, 0);
    assert_float_equal(f03[EF_OCCL_MIN], sqrtf(10.0f) / 3.0f, 1e-5);
    assert_float_equal(f01[EF_OCCL_MIN], 2.0f, 0); /* nothing closer */
    assert_float_equal(f03[EF_DIST_I], 1.5f, 1e-6);
    assert_float_equal(f03[EF_DIST_J], 1.0f, 1e-6);
    assert_float_equal(f03[EF_REVERSE], 1.0f, 0);
    assert_float_equal(f02[EF_REVERSE], 0.0f, 0);
    assert_float_equal(f03[EF_DEG_I], 0.75f, 1e-6);
    assert_float_equal(f03[EF_DEG_J], 0.25f, 1e-6);
    assert_float_equal(f03[EF_INDEG_J], 0.25f, 1e-6);
    assert_float_equal(f01[EF_DENS_RATIO], logf(0.5f), 1e-6);
    edge_graph_destroy(&g);
    assert_null(g);
    hnsw_destroy(&h);
}

static void labels_do_not_depend_on_the_thread_count(void **st)
{
    (void)st;
    hnsw *h = random_graph(600, 8, 24, 3);
    edge_graph *g = NULL;
    hf_err e;
    assert_int_equal(edge_graph_new(h, 1, &g, &e), 0);
    size_t nq = 60;
    float *q = malloc(nq * 8 * sizeof *q);
    uint32_t *self = malloc(nq * sizeof *self);
    for (size_t i = 0; i < nq; i++) {
        self[i] = (uint32_t)(i * 7);
        for (size_t c = 0; c < 8; c++)
            q[i * 8 + c] = hnsw_vec(h, self[i])[c] + 0.01f;
    }
    uint32_t *u1 = malloc(g->nedges * sizeof *u1), *u2 = malloc(g->nedges * sizeof *u2);
    uint32_t *x1 = malloc(g->n * sizeof *x1), *x2 = malloc(g->n * sizeof *x2);
    edge_label_cfg c1 = {.k = 10, .ef = 20, .threads = 1}, c2 = c1;
    c2.threads = 3;
    assert_int_equal(edge_label(h, g, q, nq, self, &c1, u1, x1, &e), 0);
    assert_int_equal(edge_label(h, g, q, nq, self, &c2, u2, x2, &e), 0);
    assert_memory_equal(u1, u2, g->nedges * sizeof *u1);
    assert_memory_equal(x1, x2, g->n * sizeof *x1);
    size_t used = 0, exp = 0;
    for (size_t x = 0; x < g->nedges; x++)
        used += u1[x] > 0;
    for (size_t i = 0; i < g->n; i++)
        exp += x1[i] > 0;
    assert_true(used > 0 && used < g->nedges);
    assert_true(exp > 0);
    free(q);
    free(self);
    free(u1);
    free(u2);
    free(x1);
    free(x2);
    edge_graph_destroy(&g);
    hnsw_destroy(&h);
}

static void pruning_keeps_the_budget_and_every_node_reachable(void **st)
{
    (void)st;
    hnsw *h = random_graph(800, 8, 24, 5);
    edge_graph *g = NULL;
    hf_err e;
    assert_int_equal(edge_graph_new(h, 2, &g, &e), 0);
    size_t all = edge_reachable(g, NULL, h->entry, NULL);
    float *score = malloc(g->nedges * sizeof *score);
    uint8_t *keep = malloc(g->nedges);
    nn_rng r;
    nn_rng_seed(&r, 9);
    for (size_t x = 0; x < g->nedges; x++)
        score[x] = nn_rng_uniform(&r);
    const double fracs[] = {0.9, 0.6, 0.3};
    for (size_t t = 0; t < 3; t++) {
        size_t budget = (size_t)(fracs[t] * g->nedges);
        edge_prune_stats ps;
        assert_int_equal(
            edge_prune(g, score, budget, &(edge_prune_cfg){.min_keep = 2}, h->entry, keep, &ps, &e),
            0);
        size_t kept = 0;
        for (size_t i = 0; i < g->n; i++) {
            uint32_t d = 0, deg = (uint32_t)(g->off[i + 1] - g->off[i]);
            for (uint64_t x = g->off[i]; x < g->off[i + 1]; x++)
                d += keep[x];
            assert_true(d >= (deg < 2 ? deg : 2));
            kept += d;
        }
        assert_int_equal(kept, ps.kept);
        assert_true(kept <= budget);
        assert_int_equal(edge_reachable(g, keep, h->entry, NULL), all);
        assert_int_equal(ps.unreachable, g->n - all);
    }
    /* applied to the index, the graph holds exactly the kept edges */
    edge_graph_apply(g, keep, h);
    size_t deg_sum = 0;
    for (size_t i = 0; i < h->n; i++)
        deg_sum += hnsw_links0(h, (uint32_t)i)[0];
    size_t kept = 0;
    for (size_t x = 0; x < g->nedges; x++)
        kept += keep[x];
    assert_int_equal(deg_sum, kept);
    free(score);
    free(keep);
    edge_graph_destroy(&g);
    hnsw_destroy(&h);
}

static void pruning_keeps_the_in_degree_floor_of_low_scored_targets(void **st)
{
    (void)st;
    hnsw *h = random_graph(600, 8, 24, 11);
    edge_graph *g = NULL;
    hf_err e;
    assert_int_equal(edge_graph_new(h, 2, &g, &e), 0);
    /* every edge into an even node scores below every other edge: a
     * score-only cut at 60% would take most of their in-edges */
    float *score = malloc(g->nedges * sizeof *score);
    uint8_t *keep = malloc(g->nedges);
    uint32_t *in = calloc(g->n, sizeof *in), *cand = calloc(g->n, sizeof *cand);
    for (size_t x = 0; x < g->nedges; x++) {
        score[x] = (g->dst[x] % 2 ? 1.0f : 0.0f) + 0.001f * (float)(x % 97);
        cand[g->dst[x]]++;
    }
    edge_prune_cfg pc = {.min_keep = 1, .min_in = 3};
    size_t budget = (size_t)(0.6 * g->nedges);
    edge_prune_stats ps;
    assert_int_equal(edge_prune(g, score, budget, &pc, h->entry, keep, &ps, &e), 0);
    assert_true(ps.kept <= budget);
    for (size_t x = 0; x < g->nedges; x++)
        in[g->dst[x]] += keep[x];
    for (size_t i = 0; i < g->n; i++)
        assert_true(in[i] >= (cand[i] < 3 ? cand[i] : 3));
    free(score);
    free(keep);
    free(in);
    free(cand);
    edge_graph_destroy(&g);
    hnsw_destroy(&h);
}

static void repair_puts_back_the_best_edge_into_cut_off_nodes(void **st)
{
    (void)st;
    /* a chain 0 -> 1 -> 2 -> 3 with back edges; the back edges score best,
     * so a budget of 3 first picks only them and cuts 1, 2, 3 off */
    const float pts[] = {0, 0, 1, 0, 2, 0, 3, 0};
    const uint32_t l0[] = {1}, l1[] = {0, 2}, l2[] = {1, 3}, l3[] = {2};
    const uint32_t *lists[] = {l0, l1, l2, l3};
    const uint32_t degs[] = {1, 2, 2, 1};
    hnsw *h = hand_graph(pts, 4, lists, degs, 4);
    edge_graph *g = NULL;
    hf_err e;
    assert_int_equal(edge_graph_new(h, 1, &g, &e), 0);
    assert_int_equal(g->nedges, 6);
    /* CSR: 0->1 | 1->0 1->2 | 2->1 2->3 | 3->2 */
    const float score[] = {0.1f, 0.9f, 0.2f, 0.8f, 0.3f, 0.7f};
    uint8_t keep[6];
    edge_prune_stats ps;
    assert_int_equal(edge_prune(g, score, 3, &(edge_prune_cfg){0}, 0, keep, &ps, &e), 0);
    const uint8_t want[] = {1, 0, 1, 0, 1, 0};
    assert_memory_equal(keep, want, 6);
    assert_int_equal(ps.kept, 3);
    assert_int_equal(ps.unreachable, 0);
    assert_true(ps.rounds >= 2);
    assert_int_equal(edge_reachable(g, keep, 0, NULL), 4);
    /* with room to spare the best edges stay and repairs come on top */
    assert_int_equal(edge_prune(g, score, 6, &(edge_prune_cfg){0}, 0, keep, &ps, &e), 0);
    assert_int_equal(ps.kept, 6);
    edge_graph_destroy(&g);
    hnsw_destroy(&h);
}

/* Train, pack, unpack, and score again: the reloaded model must give the
 * same logits bit for bit (with no_graph, only if the frame says so). */
/* A cut-off node is put back through a source below the degree cap when one
 * reaches it, even if a full source's edge scores higher: one node over the
 * cap would give the whole graph a larger link block. */
static void repair_goes_through_a_source_below_the_degree_cap(void **st)
{
    (void)st;
    const float pts[] = {0, 0, 1, 0, 0, 1, 1, 1, 2, 0};
    const uint32_t l0[] = {1, 2}, l1[] = {0, 3, 4}, l2[] = {0, 3}, l3[] = {1}, l4[] = {1};
    const uint32_t *lists[] = {l0, l1, l2, l3, l4};
    const uint32_t degs[] = {2, 3, 2, 1, 1};
    hnsw *h = hand_graph(pts, 5, lists, degs, 4);
    edge_graph *g = NULL;
    hf_err e;
    assert_int_equal(edge_graph_new(h, 1, &g, &e), 0);
    /* CSR: 0->1 0->2 | 1->0 1->3 1->4 | 2->0 2->3 | 3->1 | 4->1; the best
     * seven leave 3 cut off, and 1->3 (source 1 full at cap 2) outscores 2->3 */
    assert_int_equal(g->nedges, 9);
    assert_int_equal(g->dst[3], 3);
    assert_int_equal(g->dst[6], 3);
    const float score[] = {0.9f, 0.8f, 0.95f, 0.5f, 0.85f, 0.7f, 0.1f, 0.6f, 0.65f};
    uint8_t keep[9];
    edge_prune_stats ps;
    assert_int_equal(edge_prune(g, score, 7, &(edge_prune_cfg){.max_out = 2}, 0, keep, &ps, &e), 0);
    assert_int_equal(ps.unreachable, 0);
    assert_int_equal(edge_reachable(g, keep, 0, NULL), 5);
    for (size_t i = 0; i < 5; i++) {
        uint32_t d = 0;
        for (uint64_t x = g->off[i]; x < g->off[i + 1]; x++)
            d += keep[x];
        assert_true(d <= 2);
    }
    assert_int_equal(keep[6], 1); /* 2 -> 3 */
    assert_int_equal(keep[3], 0);
    edge_graph_destroy(&g);
    hnsw_destroy(&h);
}

/* Self-validation: the same figures for any thread count, exact recall at an
 * ef that covers the graph, and a tolerance search that only ever accepts a
 * graph measured within the tolerance, leaves that graph in the index, and
 * can put the input's lists back byte for byte. */
static void validation_accepts_only_graphs_within_the_tolerance(void **st)
{
    (void)st;
    hnsw *h = random_graph(700, 8, 24, 11);
    edge_graph *g = NULL;
    hf_err e;
    assert_int_equal(edge_graph_new(h, 1, &g, &e), 0);
    size_t nq = 80;
    float *q = malloc(nq * 8 * sizeof *q);
    uint32_t *self = malloc(nq * sizeof *self);
    for (size_t i = 0; i < nq; i++) {
        self[i] = (uint32_t)(i * 7 + 1) == h->entry ? (uint32_t)(i * 7 + 2) : (uint32_t)(i * 7 + 1);
        memcpy(q + i * 8, hnsw_vec(h, self[i]), 8 * sizeof *q);
    }
    const size_t ef[] = {10, 700};
    edge_val *v1 = NULL, *v3 = NULL;
    assert_int_equal(edge_val_new(h, q, nq, self, 10, ef, 2, 1, &v1, &e), 0);
    assert_int_equal(edge_val_new(h, q, nq, self, 10, ef, 2, 3, &v3, &e), 0);
    double r1[2], r3[2], nd1[2], nd3[2];
    assert_int_equal(edge_val_measure(v1, h, r1, nd1, &e), 0);
    assert_int_equal(edge_val_measure(v3, h, r3, nd3, &e), 0);
    assert_memory_equal(r1, r3, sizeof r1);
    assert_memory_equal(nd1, nd3, sizeof nd1);
    assert_true(r1[1] > 0.999); /* ef = n: the search is exhaustive */
    assert_true(r1[0] <= r1[1]);

    uint32_t *saved = NULL;
    assert_int_equal(edge_links_save(h, &saved, &e), 0);
    float *score = malloc(g->nedges * sizeof *score);
    uint8_t *keep = malloc(g->nedges);
    nn_rng r;
    nn_rng_seed(&r, 4);
    for (size_t x = 0; x < g->nedges; x++)
        score[x] = nn_rng_uniform(&r);
    edge_prune_cfg pc = {.min_keep = 2};
    const double tols[] = {0.0, 0.01, 1.0};
    for (size_t t = 0; t < 3; t++) {
        edge_val_row best;
        int found = 0;
        size_t tried = 0;
        size_t lo = g->nedges / 3;
        assert_int_equal(edge_val_tune(v1, g, score, &pc, h->entry, h, r1, tols[t], lo, g->nedges,
                                       6, keep, &best, &found, &tried, &e),
                         0);
        assert_true(tried >= 1);
        if (!found) {
            assert_true(best.loss > tols[t]);
            continue;
        }
        assert_true(best.loss <= tols[t]);
        if (tols[t] == 1.0)
            assert_int_equal(best.budget, lo); /* anything passes: the smallest count */
        /* the index holds the chosen graph: measuring it again gives its row */
        double rr[2];
        assert_int_equal(edge_val_measure(v1, h, rr, NULL, &e), 0);
        assert_memory_equal(rr, best.recall, sizeof rr);
        size_t deg_sum = 0;
        for (size_t i = 0; i < h->n; i++)
            deg_sum += hnsw_links0(h, (uint32_t)i)[0];
        assert_int_equal(deg_sum, best.edges);
    }
    edge_links_restore(h, saved);
    for (size_t i = 0; i < h->n; i++)
        assert_memory_equal(hnsw_links0(h, (uint32_t)i), saved + i * (h->links_bytes / 4),
                            h->links_bytes);
    double rb[2];
    assert_int_equal(edge_val_measure(v1, h, rb, NULL, &e), 0);
    assert_memory_equal(rb, r1, sizeof rb);
    free(saved);
    free(score);
    free(keep);
    free(q);
    free(self);
    edge_val_destroy(&v1);
    edge_val_destroy(&v3);
    edge_graph_destroy(&g);
    hnsw_destroy(&h);
}

/* A small graph, its edge features and an untrained small model, with
 * made-up labels: usage = the edges not occluded, every node expanded. */
static edge_model *tiny_model(unsigned seed, int no_graph, hnsw **hp, edge_graph **gp,
                              uint32_t **usagep, uint32_t **expp)
{
    hnsw *h = random_graph(300, 6, 16, seed);
    edge_graph *g = NULL;
    hf_err e;
    assert_int_equal(edge_graph_new(h, 1, &g, &e), 0);
    edge_model_cfg mc = edge_model_defaults();
    mc.d_node = 8;
    mc.d_msg = 8;
    mc.heads = 2;
    mc.hidden = 8;
    mc.thr_hidden = 4;
    mc.no_graph = no_graph;
    edge_model *m = NULL;
    assert_int_equal(edge_model_new(&mc, 6, 16, &m, &e), 0);
    uint32_t *usage = malloc(g->nedges * sizeof *usage), *exp = malloc(g->n * sizeof *exp);
    for (size_t x = 0; x < g->nedges; x++)
        usage[x] = g->feat[x * EDGE_NFEAT + EF_OCCLUDED] == 0.0f;
    for (size_t i = 0; i < g->n; i++)
        exp[i] = 1;
    *hp = h;
    *gp = g;
    *usagep = usage;
    *expp = exp;
    return m;
}

static void round_trip(int no_graph)
{
    hnsw *h = NULL;
    edge_graph *g = NULL;
    uint32_t *usage = NULL, *exp = NULL;
    hf_err e;
    /* a short training run on made-up labels, so the frame holds fitted stats */
    edge_model *m = tiny_model(7, no_graph, &h, &g, &usage, &exp);
    edge_train_cfg tc = edge_train_defaults();
    tc.epochs = 3;
    tc.batch = 32;
    float loss = -1;
    assert_int_equal(edge_model_train(m, h, g, usage, exp, &tc, &loss, &e), 0);
    assert_true(isfinite(loss) && loss > 0 && loss < 0.7f);
    float *s1 = malloc(g->nedges * sizeof *s1), *s2 = malloc(g->nedges * sizeof *s2);
    assert_int_equal(edge_model_score(m, h, g, s1, &e), 0);
    double auc = 0;
    edge_eval(g, s1, usage, exp, NULL, &auc);
    assert_true(auc > 0.6); /* "not occluded" is learnable from the features */

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(edge_model_pack(m, NULL, &sb, &e), 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
    edge_model *m2 = NULL;
    assert_int_equal(edge_model_unpack(&u.data, &m2, &e), 0);
    const nn_params *p1 = edge_model_params(m), *p2 = edge_model_params(m2);
    assert_int_equal(p1->n, p2->n);
    for (size_t i = 0; i < p1->n; i++) {
        assert_string_equal(p1->v[i].name, p2->v[i].name);
        assert_int_equal(nn_tensor_len(p1->v[i].w), nn_tensor_len(p2->v[i].w));
        assert_memory_equal(p1->v[i].w->data, p2->v[i].w->data,
                            nn_tensor_len(p1->v[i].w) * sizeof(float));
    }
    assert_int_equal(edge_model_score(m2, h, g, s2, &e), 0);
    assert_memory_equal(s1, s2, g->nedges * sizeof *s1);
    /* a frame of another kind is refused */
    msgpack_sbuffer sb2;
    msgpack_sbuffer_init(&sb2);
    nn_hparam hp[] = {{"dim", 6},        {"m0", 16},          {"d_node", 8},
                      {"d_msg", 8},      {"heads", 2},        {"hidden", 8},
                      {"thr_hidden", 4}, {"proj", EDGE_PROJ}, {"nfeat", EDGE_NFEAT}};
    assert_int_equal(nn_model_pack(&sb2, "graph", hp, 9, p1, &e), 0);
    msgpack_unpacked u2;
    msgpack_unpacked_init(&u2);
    assert_int_equal(msgpack_unpack_next(&u2, sb2.data, sb2.size, NULL), MSGPACK_UNPACK_SUCCESS);
    edge_model *m3 = NULL;
    assert_int_not_equal(edge_model_unpack(&u2.data, &m3, &e), 0);
    assert_null(m3);
    msgpack_unpacked_destroy(&u2);
    msgpack_sbuffer_destroy(&sb2);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    edge_model_destroy(&m2);
    edge_model_destroy(&m);
    assert_null(m);
    free(s1);
    free(s2);
    free(usage);
    free(exp);
    edge_graph_destroy(&g);
    hnsw_destroy(&h);
}

static void model_frame_round_trips_bit_exact(void **st)
{
    (void)st;
    round_trip(0);
}

static void plain_mlp_model_frame_round_trips_bit_exact(void **st)
{
    (void)st;
    round_trip(1);
}

/* distance of the trainable weights from a snapshot of them */
static double moved(const nn_params *p, float *const *snap)
{
    double s = 0;
    for (size_t i = 0; i < p->n; i++)
        for (size_t j = 0; j < nn_tensor_len(p->v[i].w); j++) {
            double d = p->v[i].w->data[j] - snap[i][j];
            s += d * d;
        }
    return s;
}

static void fisher_and_reservoir_round_trip_and_ewc_holds_the_weights(void **st)
{
    (void)st;
    hnsw *h = NULL;
    edge_graph *g = NULL;
    uint32_t *usage = NULL, *exp = NULL;
    hf_err e;
    edge_model *m = tiny_model(9, 0, &h, &g, &usage, &exp);
    edge_train_cfg tc = edge_train_defaults();
    tc.epochs = 2;
    tc.batch = 32;
    float loss;
    assert_int_equal(edge_model_train(m, h, g, usage, exp, &tc, &loss, &e), 0);
    /* the Fisher: one value per trainable weight, >= 0, not all zero */
    nn_ewc *w = NULL;
    assert_int_equal(nn_ewc_from(edge_model_trainable(m), NULL, &w, &e), 0);
    assert_int_equal(edge_model_fisher(m, h, g, usage, exp, 64, 5, w, &e), 0);
    nn_memory *mem = edge_model_memory(m);
    assert_int_equal(nn_memory_set_fisher(mem, &w, 1, 1, &e), 0);
    assert_int_equal(mem->nfisher, nn_params_count(edge_model_trainable(m)));
    double fs = 0;
    for (size_t i = 0; i < mem->nfisher; i++) {
        assert_true(mem->fisher[i] >= 0);
        fs += mem->fisher[i];
    }
    assert_true(fs > 0);
    float q[3 * 6] = {0};
    assert_int_equal(nn_memory_reservoir(mem, NULL, q, 3, 6, 2, 1, &e), 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(edge_model_pack(m, NULL, &sb, &e), 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
    edge_model *m2 = NULL;
    assert_int_equal(edge_model_unpack(&u.data, &m2, &e), 0);
    nn_memory *mem2 = edge_model_memory(m2);
    assert_int_equal(mem2->nfisher, mem->nfisher);
    assert_memory_equal(mem2->fisher, mem->fisher, mem->nfisher * sizeof(float));
    assert_int_equal(mem2->tasks, 1);
    assert_int_equal(mem2->nreplay, 2);
    assert_int_equal(mem2->replay_seen, 3);
    /* on flipped labels, a strong EWC penalty keeps the weights nearer
     * where they started than plain fine-tuning does */
    for (size_t x = 0; x < g->nedges; x++)
        usage[x] = !usage[x];
    const nn_params *p = edge_model_trainable(m2);
    float **snap = calloc(p->n, sizeof *snap);
    for (size_t i = 0; i < p->n; i++) {
        snap[i] = malloc(nn_tensor_len(p->v[i].w) * sizeof(float));
        memcpy(snap[i], p->v[i].w->data, nn_tensor_len(p->v[i].w) * sizeof(float));
    }
    edge_model *m3 = NULL;
    assert_int_equal(edge_model_unpack(&u.data, &m3, &e), 0);
    tc.keep_stats = 1;
    assert_int_equal(edge_model_train(m2, h, g, usage, exp, &tc, &loss, &e), 0);
    nn_ewc *w3 = NULL;
    assert_int_equal(nn_ewc_from(edge_model_trainable(m3), edge_model_memory(m3)->fisher, &w3, &e),
                     0);
    assert_int_equal(edge_model_train_ewc(m3, h, g, usage, exp, &tc, w3, 1e6f, &loss, &e), 0);
    double d_plain = moved(edge_model_trainable(m2), snap);
    double d_ewc = moved(edge_model_trainable(m3), snap);
    assert_true(d_ewc < 0.5 * d_plain);
    for (size_t i = 0; i < p->n; i++)
        free(snap[i]);
    free(snap);
    nn_ewc_destroy(&w3);
    nn_ewc_destroy(&w);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    edge_model_destroy(&m3);
    edge_model_destroy(&m2);
    edge_model_destroy(&m);
    free(usage);
    free(exp);
    edge_graph_destroy(&g);
    hnsw_destroy(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(features_match_hand_computed_values),
        cmocka_unit_test(labels_do_not_depend_on_the_thread_count),
        cmocka_unit_test(pruning_keeps_the_budget_and_every_node_reachable),
        cmocka_unit_test(pruning_keeps_the_in_degree_floor_of_low_scored_targets),
        cmocka_unit_test(repair_puts_back_the_best_edge_into_cut_off_nodes),
        cmocka_unit_test(repair_goes_through_a_source_below_the_degree_cap),
        cmocka_unit_test(validation_accepts_only_graphs_within_the_tolerance),
        cmocka_unit_test(model_frame_round_trips_bit_exact),
        cmocka_unit_test(plain_mlp_model_frame_round_trips_bit_exact),
        cmocka_unit_test(fisher_and_reservoir_round_trip_and_ewc_holds_the_weights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
