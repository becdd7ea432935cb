/*
 * test_nav.c - the navigation policy (libcommon/nav.c, nav_search.c,
 * nav_train.c).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nav.h"

#include "clustered_graph.h"

/* 8 clusters */
static hnsw *random_graph(size_t n, size_t dim, uint64_t seed, float **vecs)
{
    return clustered_graph(n, dim, seed, 4.0f, vecs);
}

static nav_policy *bound_policy(const hnsw *h)
{
    nav_policy *p = NULL;
    hf_err e;
    assert_int_equal(nav_new(h->dim, h->p.metric, nav_default_r(h->dim), 1, &p, &e), 0);
    assert_int_equal(nav_init_pca(p, h, 2000, 3, &e), 0);
    assert_int_equal(nav_bind(p, h, &e), 0);
    return p;
}

/* Measuring every neighbour and stopping at ef, the navigation loop is the
 * classic beam search: the same answers, the same distance count. */
static void plain_nav_search_is_the_classic_search(void **st)
{
    (void)st;
    float *v;
    hnsw *h = random_graph(1500, 24, 5, &v);
    hnsw_searcher *hs = NULL;
    nav_searcher *ns = NULL;
    hf_err e;
    assert_int_equal(hnsw_searcher_new(h, 64, &hs, &e), 0);
    assert_int_equal(nav_searcher_new(h, 64, &ns, &e), 0);
    nav_cfg cfg = {.skip = NAV_SKIP_NONE, .stop = NAV_STOP_EF};
    /* an ADSampling test that never rejects (eps0 huge) changes nothing either */
    nav_adsamp *ad = NULL;
    assert_int_equal(nav_adsamp_new(h, 1e6f, 9, &ad, &e), 0);
    nav_cfg adc = {.skip = NAV_SKIP_ADSAMPLING, .stop = NAV_STOP_EF};
    for (size_t q = 0; q < 40; q++) {
        const float *x = v + q * 24;
        hnsw_hit a[10], b[10], c[10];
        size_t na = 0, nb = 0, nc = 0;
        hnsw_stats sa = {0};
        nav_stats sb = {0}, sc = {0};
        assert_int_equal(hnsw_search(h, hs, x, 10, 32, a, &na, &sa), 0);
        assert_int_equal(nav_search(h, NULL, NULL, ns, &cfg, x, 10, 32, b, &nb, &sb), 0);
        assert_int_equal(nav_search(h, NULL, ad, ns, &adc, x, 10, 32, c, &nc, &sc), 0);
        assert_int_equal(na, nb);
        assert_int_equal(na, nc);
        for (size_t i = 0; i < na; i++) {
            assert_int_equal(a[i].id, b[i].id);
            assert_int_equal(a[i].id, c[i].id);
            assert_true(fabsf(a[i].d - c[i].d) <= 1e-3f * (1 + a[i].d));
        }
        assert_int_equal(sa.ndist, sb.ndist);
        assert_int_equal(sa.hops, sb.hops);
        assert_true(fabs(sb.work - (double)sb.ndist) < 1e-9);
        assert_int_equal(sc.skipped, 0);
    }
    nav_adsamp_destroy(&ad);
    nav_searcher_destroy(&ns);
    hnsw_searcher_destroy(&hs);
    hnsw_destroy(&h);
    free(v);
}

/* A skip model whose logit is always below the threshold measures nothing
 * once the beam is full; one always above it measures everything. */
static void the_skip_threshold_decides_what_is_measured(void **st)
{
    (void)st;
    float *v;
    hnsw *h = random_graph(1500, 24, 6, &v);
    nav_policy *p = bound_policy(h);
    nav_searcher *ns = NULL;
    hf_err e;
    assert_int_equal(nav_searcher_new(h, 64, &ns, &e), 0);
    nav_cfg cfg = {.skip = NAV_SKIP_LEARNED, .stop = NAV_STOP_EF};
    hnsw_hit out[10];
    size_t n = 0;
    nav_stats lo = {0}, hi = {0}, none = {0};
    p->skip_logit = 1e30f; /* nothing passes */
    assert_int_equal(nav_search(h, p, NULL, ns, &cfg, v, 10, 16, out, &n, &hi), 0);
    assert_true(hi.skipped > 0);
    p->skip_logit = -1e30f; /* everything passes */
    assert_int_equal(nav_search(h, p, NULL, ns, &cfg, v, 10, 16, out, &n, &lo), 0);
    assert_int_equal(lo.skipped, 0);
    nav_cfg plain = {.skip = NAV_SKIP_NONE, .stop = NAV_STOP_EF};
    assert_int_equal(nav_search(h, p, NULL, ns, &plain, v, 10, 16, out, &n, &none), 0);
    assert_int_equal(lo.ndist, none.ndist);
    /* the projected tests are work too */
    assert_true(lo.work > (double)lo.ndist);
    assert_true(hi.ndist < lo.ndist);
    nav_searcher_destroy(&ns);
    nav_destroy(&p);
    hnsw_destroy(&h);
    free(v);
}

/* The frame round-trips; a loader binds the policy only to its own index. */
static void policy_frame_round_trips_and_binds_only_its_own_index(void **st)
{
    (void)st;
    float *v, *w;
    hnsw *h = random_graph(800, 16, 7, &v);
    hnsw *other = random_graph(800, 16, 8, &w);
    nav_policy *p = bound_policy(h);
    p->skip_logit = -1.5f;
    p->ncal = 2;
    p->cal_r[0] = 0.9f;
    p->cal_r[1] = 0.99f;
    p->cal_p[0] = 0.8f;
    p->cal_p[1] = 0.95f;
    p->cal_ef[0] = 16;
    p->cal_ef[1] = 64;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    hf_err e;
    assert_int_equal(nav_pack(p, NULL, &sb, &e), 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
    assert_true(nav_is_frame(&u.data));
    nav_policy *q = NULL;
    int urc = nav_unpack(&u.data, &q, &e);
    if (urc)
        print_error("%s\n", e.msg);
    assert_int_equal(urc, 0);
    assert_true(q->skip_logit == p->skip_logit);
    assert_int_equal(q->ncal, 2);
    size_t ef = 0;
    assert_true(nav_stop_threshold(q, 0.9, &ef) == 0.8f && ef == 16);
    assert_true(nav_stop_threshold(q, 0.95, &ef) == 0.95f && ef == 64);
    assert_true(nav_stop_threshold(q, 0.999, &ef) == 0.95f && ef == 64);
    assert_memory_equal(q->P->data, p->P->data, nn_tensor_len(p->P) * sizeof(float));
    assert_int_equal(nav_bind(q, h, &e), 0);
    assert_memory_equal(q->rows, p->rows, h->n * p->row * sizeof(float));
    assert_int_equal(nav_bind(q, other, &e), HF_EDATA);
    assert_non_null(strstr(e.msg, "another index"));
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    nav_destroy(&p);
    nav_destroy(&q);
    hnsw_destroy(&h);
    hnsw_destroy(&other);
    free(v);
    free(w);
}

/* Fitting moves the MLP's logit towards its targets. */
static void fitting_learns_a_separable_rule(void **st)
{
    (void)st;
    nav_policy *p = NULL;
    hf_err e;
    assert_int_equal(nav_new(4, METRIC_L2, 15, 3, &p, &e), 0);
    size_t n = 2000;
    float *x = malloc(n * NAV_SKIP_F * sizeof *x), *y = malloc(n * sizeof *y);
    nn_rng r;
    nn_rng_seed(&r, 4);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < NAV_SKIP_F; j++)
            x[i * NAV_SKIP_F + j] = nn_rng_uniform(&r) * 2;
        y[i] = x[i * NAV_SKIP_F] < 1.0f; /* enters the beam when its estimate is below tau */
    }
    float loss = 0;
    assert_int_equal(nav_fit(&p->skip, x, y, NULL, n, 30, 0.01f, 5, &loss, &e), 0);
    assert_true(loss < 0.2f);
    nav_sync(p);
    size_t right = 0;
    for (size_t i = 0; i < n; i++) {
        const float *f = x + i * NAV_SKIP_F;
        float o = p->skip.b2;
        for (size_t j = 0; j < NAV_HIDDEN; j++) {
            float a = p->skip.b1[j];
            for (size_t k = 0; k < NAV_SKIP_F; k++)
                a += p->skip.w1[k * NAV_HIDDEN + j] * f[k]; /* input-major */
            o += a > 0 ? p->skip.w2[j] * a : 0;
        }
        right += (o >= 0) == (y[i] > 0.5f);
    }
    assert_true(right > n * 95 / 100);
    free(x);
    free(y);
    nav_destroy(&p);
}

static void work_ratio_interpolates_the_classic_curve(void **st)
{
    (void)st;
    double rc[3] = {0.8, 0.9, 0.95}, wc[3] = {100, 200, 400};
    double r[2] = {0.9, 0.99}, w[2] = {100, 50};
    /* the second point lies outside the classic curve: left out */
    assert_true(fabs(nav_work_ratio(rc, wc, 3, r, w, 2) - 0.5) < 1e-9);
    double r2[1] = {0.7};
    assert_true(isnan(nav_work_ratio(rc, wc, 3, r2, w, 1)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_nav_search_is_the_classic_search),
        cmocka_unit_test(the_skip_threshold_decides_what_is_measured),
        cmocka_unit_test(policy_frame_round_trips_and_binds_only_its_own_index),
        cmocka_unit_test(fitting_learns_a_separable_rule),
        cmocka_unit_test(work_ratio_interpolates_the_classic_curve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
