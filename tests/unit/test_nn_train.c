/*
 * test_nn_train.c - the kit's training machinery: Adam and schedules,
 * EWC against forgetting, the reservoir replay buffer, and model frames.
 *
 * Every random choice is seeded, so each figure asserted here is the same
 * on every run; the thresholds still leave room for BLAS kernels that sum
 * in a different order on another CPU.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first; keep it in its own block so
 * clang-format's include sorting leaves the order alone. */

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

/* ------------------------------------------------------------- Adam/sched */

/* Least squares [w b] for y ~ x w^T + b by the normal equations, in double
 * (Gauss-Jordan with partial pivoting on the (d+1)x(d+1) system). */
static void ols(const nn_tensor *x, const nn_tensor *y, double *sol, size_t d)
{
    size_t m = d + 1;
    double a[8][9] = {{0}};
    for (size_t r = 0; r < x->rows; r++) {
        double f[8];
        for (size_t j = 0; j < d; j++)
            f[j] = nn_row(x, r)[j];
        f[d] = 1.0;
        for (size_t i = 0; i < m; i++) {
            for (size_t j = 0; j < m; j++)
                a[i][j] += f[i] * f[j];
            a[i][m] += f[i] * y->data[r];
        }
    }
    for (size_t c = 0; c < m; c++) {
        size_t p = c;
        for (size_t i = c + 1; i < m; i++)
            if (fabs(a[i][c]) > fabs(a[p][c]))
                p = i;
        for (size_t j = 0; j <= m; j++) {
            double t = a[c][j];
            a[c][j] = a[p][j];
            a[p][j] = t;
        }
        for (size_t i = 0; i < m; i++) {
            if (i == c)
                continue;
            double k = a[i][c] / a[c][c];
            for (size_t j = 0; j <= m; j++)
                a[i][j] -= k * a[c][j];
        }
    }
    for (size_t i = 0; i < m; i++)
        sol[i] = a[i][m] / a[i][i];
}

static void test_adam_fits_linear_regression_to_least_squares_optimum(void **state)
{
    (void)state;
    enum { N = 256, D = 3 };
    nn_rng rng;
    nn_rng_seed(&rng, 1);
    nn_tensor *x = nn_tensor_new(N, D), *y = nn_tensor_new(N, 1), *g = nn_tensor_new(0, 0);
    nn_tensor_uniform(x, 1.0f, &rng);
    const float wt[D] = {1.5f, -2.0f, 0.5f};
    for (size_t r = 0; r < N; r++) {
        float s = 0.3f + 0.1f * nn_rng_normal(&rng);
        for (size_t j = 0; j < D; j++)
            s += wt[j] * nn_row(x, r)[j];
        y->data[r] = s;
    }
    double best[D + 1];
    ols(x, y, best, D);

    nn_layer *l;
    assert_int_equal(nn_linear_new(&l, D, 1, NN_INIT_XAVIER, &rng, NULL), 0);
    nn_params p;
    nn_params_init(&p);
    assert_int_equal(nn_layer_params(l, "", &p, NULL), 0);
    nn_adam *opt;
    assert_int_equal(nn_adam_new(&opt, &p, nn_adam_defaults(), NULL), 0);
    nn_sched s = {
        .kind = NN_SCHED_COSINE, .lr = 0.05f, .min_lr = 1e-4f, .total = 3000, .warmup = 50};
    float loss = 0.0f;
    for (uint64_t step = 0; step < 3050; step++) {
        const nn_tensor *pred, *dx;
        nn_params_zero_grad(&p);
        assert_int_equal(nn_layer_forward(l, x, true, &pred, NULL), 0);
        assert_int_equal(nn_loss_mse(pred, y, g, &loss, NULL), 0);
        assert_int_equal(nn_layer_backward(l, g, &dx, NULL), 0);
        assert_int_equal(nn_adam_step(opt, &p, nn_sched_lr(&s, step), NULL), 0);
    }
    for (size_t j = 0; j < D; j++)
        assert_true(fabs(l->w->data[j] - best[j]) < 1e-3);
    assert_true(fabs(l->b->data[0] - best[D]) < 1e-3);
    assert_true(loss < 0.012f); /* noise variance is 0.01 */
    nn_adam_destroy(&opt);
    nn_params_free(&p);
    nn_layer_destroy(&l);
    nn_tensor_destroy(&x);
    nn_tensor_destroy(&y);
    nn_tensor_destroy(&g);
}

static void test_adamw_decays_weights_without_gradient(void **state)
{
    (void)state;
    nn_tensor *w = nn_tensor_new(1, 2), *g = nn_tensor_new(1, 2);
    w->data[0] = 1.0f;
    w->data[1] = -2.0f;
    nn_params p;
    nn_params_init(&p);
    assert_int_equal(nn_params_add(&p, "", "w", w, g, NULL), 0);
    nn_adam_cfg cfg = nn_adam_defaults();
    cfg.weight_decay = 0.1f;
    nn_adam *a;
    assert_int_equal(nn_adam_new(&a, &p, cfg, NULL), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(nn_adam_step(a, &p, 0.01f, NULL), 0);
    double k = pow(1.0 - 0.01 * 0.1, 10);
    assert_true(fabs(w->data[0] - k) < 1e-6 && fabs(w->data[1] + 2.0 * k) < 1e-6);
    /* a first step moves each weight by lr against its gradient's sign */
    g->data[0] = 3.0f;
    g->data[1] = -1e-3f;
    cfg.weight_decay = 0.0f;
    nn_adam *b;
    assert_int_equal(nn_adam_new(&b, &p, cfg, NULL), 0);
    float w0 = w->data[0], w1 = w->data[1];
    assert_int_equal(nn_adam_step(b, &p, 0.01f, NULL), 0);
    assert_true(fabsf(w->data[0] - (w0 - 0.01f)) < 1e-6f &&
                fabsf(w->data[1] - (w1 + 0.01f)) < 1e-5f);
    nn_params p2;
    nn_params_init(&p2);
    hf_err e = {0};
    assert_int_equal(nn_adam_step(b, &p2, 0.01f, &e), HF_EUSAGE);
    nn_adam_destroy(&a);
    nn_adam_destroy(&b);
    nn_params_free(&p);
    nn_tensor_destroy(&w);
    nn_tensor_destroy(&g);
}

static void test_schedules_constant_step_cosine_and_warmup(void **state)
{
    (void)state;
    nn_sched c = {.kind = NN_SCHED_CONSTANT, .lr = 0.1f};
    assert_true(nn_sched_lr(&c, 0) == 0.1f && nn_sched_lr(&c, 1000000) == 0.1f);
    nn_sched st = {.kind = NN_SCHED_STEP, .lr = 1.0f, .gamma = 0.5f, .step_size = 10};
    assert_true(nn_sched_lr(&st, 9) == 1.0f && nn_sched_lr(&st, 10) == 0.5f &&
                nn_sched_lr(&st, 35) == 0.125f);
    nn_sched co = {.kind = NN_SCHED_COSINE, .lr = 1.0f, .min_lr = 0.1f, .total = 100};
    assert_true(fabsf(nn_sched_lr(&co, 0) - 1.0f) < 1e-6f);
    assert_true(fabsf(nn_sched_lr(&co, 50) - 0.55f) < 1e-6f);
    assert_true(nn_sched_lr(&co, 100) == 0.1f && nn_sched_lr(&co, 500) == 0.1f);
    nn_sched wu = co;
    wu.warmup = 10;
    assert_true(fabsf(nn_sched_lr(&wu, 0) - 0.1f) < 1e-6f);
    assert_true(fabsf(nn_sched_lr(&wu, 4) - 0.5f) < 1e-6f);
    assert_true(fabsf(nn_sched_lr(&wu, 10) - 1.0f) < 1e-6f);
    assert_true(fabsf(nn_sched_lr(&wu, 60) - 0.55f) < 1e-6f);
    for (uint64_t i = 1; i < 110; i++)
        assert_true(nn_sched_lr(&wu, i) <= nn_sched_lr(&wu, i - 1) || i <= 10);
}

/* ------------------------------------------------------------------- EWC */

/* Two regression tasks on disjoint input ranges for one small MLP. Task A:
 * y = sin(2x) on x in [-3, -1]; task B: y = cos(3x) on [1, 3]. */
typedef struct mlp {
    nn_seq *s;
    nn_params p;
    nn_adam *opt;
} mlp;

static void mlp_new(mlp *m, uint64_t seed)
{
    nn_rng rng;
    nn_rng_seed(&rng, seed);
    nn_layer *l;
    assert_int_equal(nn_seq_new(&m->s, NULL), 0);
    assert_int_equal(nn_linear_new(&l, 1, 32, NN_INIT_XAVIER, &rng, NULL), 0);
    assert_int_equal(nn_seq_add(m->s, &l, NULL), 0);
    assert_int_equal(nn_act_new(&l, NN_TANH, NULL), 0);
    assert_int_equal(nn_seq_add(m->s, &l, NULL), 0);
    assert_int_equal(nn_linear_new(&l, 32, 1, NN_INIT_XAVIER, &rng, NULL), 0);
    assert_int_equal(nn_seq_add(m->s, &l, NULL), 0);
    nn_params_init(&m->p);
    assert_int_equal(nn_seq_params(m->s, "", &m->p, NULL), 0);
    assert_int_equal(nn_adam_new(&m->opt, &m->p, nn_adam_defaults(), NULL), 0);
}

static void mlp_free(mlp *m)
{
    nn_adam_destroy(&m->opt);
    nn_params_free(&m->p);
    nn_seq_destroy(&m->s);
}

static void mlp_copy_weights(mlp *dst, const mlp *src)
{
    for (size_t i = 0; i < src->p.n; i++)
        assert_int_equal(nn_tensor_copy(dst->p.v[i].w, src->p.v[i].w, NULL), 0);
}

static void task_data(nn_tensor *x, nn_tensor *y, int task)
{
    for (size_t i = 0; i < x->rows; i++) {
        float t = -1.0f + 2.0f * (float)i / (float)(x->rows - 1);
        x->data[i] = task == 0 ? t - 2.0f : t + 2.0f;
        y->data[i] = task == 0 ? sinf(2.0f * x->data[i]) : cosf(3.0f * x->data[i]);
    }
}

/* Loss and gradient (added into grads) on (x, y). */
static float mlp_loss(mlp *m, const nn_tensor *x, const nn_tensor *y, bool backward)
{
    const nn_tensor *pred, *dx;
    nn_tensor *g = nn_tensor_new(0, 0);
    float loss;
    assert_int_equal(nn_seq_forward(m->s, x, false, &pred, NULL), 0);
    assert_int_equal(nn_loss_mse(pred, y, g, &loss, NULL), 0);
    if (backward)
        assert_int_equal(nn_seq_backward(m->s, g, &dx, NULL), 0);
    nn_tensor_destroy(&g);
    return loss;
}

static void mlp_train(mlp *m, const nn_tensor *x, const nn_tensor *y, int steps, nn_ewc *ewc,
                      float lambda)
{
    for (int i = 0; i < steps; i++) {
        nn_params_zero_grad(&m->p);
        mlp_loss(m, x, y, true);
        float pen;
        if (ewc)
            assert_int_equal(nn_ewc_penalty(ewc, &m->p, lambda, &pen, NULL), 0);
        assert_int_equal(nn_adam_step(m->opt, &m->p, 0.01f, NULL), 0);
    }
}

static void test_ewc_reduces_forgetting_of_task_a_after_training_on_b(void **state)
{
    (void)state;
    nn_tensor *xa = nn_tensor_new(64, 1), *ya = nn_tensor_new(64, 1);
    nn_tensor *xb = nn_tensor_new(64, 1), *yb = nn_tensor_new(64, 1);
    task_data(xa, ya, 0);
    task_data(xb, yb, 1);
    mlp base, plain, ewcm;
    mlp_new(&base, 5);
    mlp_new(&plain, 6);
    mlp_new(&ewcm, 7);
    mlp_train(&base, xa, ya, 1500, NULL, 0.0f);
    float a_after_a = mlp_loss(&base, xa, ya, false);

    /* Fisher on task A: squared gradients of single-sample losses. */
    nn_ewc *ewc;
    assert_int_equal(nn_ewc_new(&ewc, &base.p, NULL), 0);
    float pen;
    assert_int_equal(nn_ewc_penalty(ewc, &base.p, 1.0f, &pen, NULL), 0);
    assert_true(pen == 0.0f);
    hf_err e = {0};
    assert_int_equal(nn_ewc_consolidate(ewc, &base.p, &e), HF_EUSAGE);
    nn_tensor *x1 = nn_tensor_new(1, 1), *y1 = nn_tensor_new(1, 1);
    for (size_t i = 0; i < xa->rows; i++) {
        x1->data[0] = xa->data[i];
        y1->data[0] = ya->data[i];
        nn_params_zero_grad(&base.p);
        mlp_loss(&base, x1, y1, true);
        assert_int_equal(nn_ewc_accumulate(ewc, &base.p, NULL), 0);
    }
    assert_int_equal(nn_ewc_consolidate(ewc, &base.p, NULL), 0);
    /* at theta* the penalty and its gradient vanish */
    nn_params_zero_grad(&base.p);
    assert_int_equal(nn_ewc_penalty(ewc, &base.p, 100.0f, &pen, NULL), 0);
    assert_true(pen == 0.0f && base.p.v[0].g->data[0] == 0.0f);

    mlp_copy_weights(&plain, &base);
    mlp_copy_weights(&ewcm, &base);
    mlp_train(&plain, xb, yb, 1500, NULL, 0.0f);
    mlp_train(&ewcm, xb, yb, 1500, ewc, 1000.0f);
    float a_plain = mlp_loss(&plain, xa, ya, false), a_ewc = mlp_loss(&ewcm, xa, ya, false);
    float b_plain = mlp_loss(&plain, xb, yb, false), b_ewc = mlp_loss(&ewcm, xb, yb, false);
    print_message("EWC: task A loss after A %.4f; after B plain %.4f, with EWC %.4f; "
                  "task B loss plain %.4f, EWC %.4f\n",
                  a_after_a, a_plain, a_ewc, b_plain, b_ewc);
    assert_true(a_ewc < 0.5f * a_plain);
    assert_true(b_ewc < 0.5f); /* it still learns B (variance of cos is 0.5) */

    /* penalty value and gradient agree with a finite difference */
    nn_params_zero_grad(&ewcm.p);
    assert_int_equal(nn_ewc_penalty(ewc, &ewcm.p, 3.0f, &pen, NULL), 0);
    float *w = &ewcm.p.v[0].w->data[3], g = ewcm.p.v[0].g->data[3], old = *w, pp, pm;
    *w = old + 1e-2f;
    assert_int_equal(nn_ewc_penalty(ewc, &ewcm.p, 3.0f, &pp, NULL), 0);
    *w = old - 1e-2f;
    assert_int_equal(nn_ewc_penalty(ewc, &ewcm.p, 3.0f, &pm, NULL), 0);
    *w = old;
    assert_true(fabs((pp - pm) / 2e-2 - g) <= 1e-3 * fmax(fabs(g), 1e-2) + 1e-4 * pen);

    nn_tensor_destroy(&x1);
    nn_tensor_destroy(&y1);
    nn_ewc_destroy(&ewc);
    mlp_free(&base);
    mlp_free(&plain);
    mlp_free(&ewcm);
    nn_tensor_destroy(&xa);
    nn_tensor_destroy(&ya);
    nn_tensor_destroy(&xb);
    nn_tensor_destroy(&yb);
}

/* ---------------------------------------------------------------- replay */

/* Upper regularized incomplete gamma Q(a, x) (Numerical Recipes' series and
 * continued fraction), for the chi-square p-value. */
static double gamma_q(double a, double x)
{
    double gln = lgamma(a);
    if (x < a + 1.0) {
        double ap = a, del = 1.0 / a, sum = del;
        for (int n = 0; n < 1000; n++) {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if (fabs(del) < fabs(sum) * 1e-15)
                break;
        }
        return 1.0 - sum * exp(-x + a * log(x) - gln);
    }
    double b = x + 1.0 - a, c = 1.0 / 1e-300, d = 1.0 / b, h = d;
    for (int i = 1; i < 1000; i++) {
        double an = -i * (i - a);
        b += 2.0;
        d = an * d + b;
        if (fabs(d) < 1e-300)
            d = 1e-300;
        c = b + an / c;
        if (fabs(c) < 1e-300)
            c = 1e-300;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < 1e-15)
            break;
    }
    return exp(-x + a * log(x) - gln) * h;
}

static void test_reservoir_keeps_every_item_with_equal_probability(void **state)
{
    (void)state;
    enum { CAP = 50, STREAM = 1000, BINS = 20, TRIALS = 4000 };
    double count[BINS] = {0};
    for (uint64_t t = 0; t < TRIALS; t++) {
        nn_replay *r;
        assert_int_equal(nn_replay_new(&r, CAP, sizeof(uint32_t), 1000 + t, NULL), 0);
        for (uint32_t i = 0; i < STREAM; i++)
            nn_replay_add(r, &i);
        assert_int_equal(r->len, CAP);
        for (size_t s = 0; s < r->len; s++) {
            uint32_t v;
            memcpy(&v, nn_replay_get(r, s), sizeof v);
            count[v / (STREAM / BINS)] += 1.0;
        }
        nn_replay_destroy(&r);
    }
    double expect = (double)TRIALS * CAP / BINS, chi2 = 0.0;
    for (int b = 0; b < BINS; b++)
        chi2 += (count[b] - expect) * (count[b] - expect) / expect;
    double p = gamma_q((BINS - 1) / 2.0, chi2 / 2.0);
    print_message("reservoir: chi2 %.2f on %d df, p = %.3f\n", chi2, BINS - 1, p);
    assert_true(p > 0.001 && p < 0.999);
    /* sanity of the p-value routine: P(chi2_19 > 19) = 0.456836,
     * P(chi2_2 > 4) = e^-2 */
    assert_true(fabs(gamma_q(9.5, 9.5) - 0.456836) < 1e-5);
    assert_true(fabs(gamma_q(1.0, 2.0) - exp(-2.0)) < 1e-9);
}

static void test_replay_is_seeded_fills_first_and_samples_in_range(void **state)
{
    (void)state;
    nn_replay *a, *b;
    assert_int_equal(nn_replay_new(&a, 8, 4, 3, NULL), 0);
    assert_int_equal(nn_replay_new(&b, 8, 4, 3, NULL), 0);
    for (uint32_t i = 0; i < 8; i++)
        assert_int_equal(nn_replay_add(a, &i), (long)i);
    for (uint32_t i = 0; i < 8; i++)
        nn_replay_add(b, &i);
    for (uint32_t i = 8; i < 500; i++) {
        assert_int_equal(nn_replay_add(a, &i), nn_replay_add(b, &i));
    }
    assert_memory_equal(a->items, b->items, 32);
    assert_null(nn_replay_get(a, 8));
    size_t slots[100];
    assert_int_equal(nn_replay_sample(a, 100, slots, NULL), 0);
    for (int i = 0; i < 100; i++)
        assert_true(slots[i] < 8);
    nn_replay *bad;
    assert_int_equal(nn_replay_new(&bad, SIZE_MAX / 2, 4, 0, NULL), HF_ENOMEM);
    assert_int_equal(nn_replay_new(&bad, 0, 4, 0, NULL), HF_EUSAGE);
    nn_replay_destroy(&a);
    nn_replay_destroy(&b);
}

/* ------------------------------------------------------------- model io */

static void unpack_frame(const msgpack_sbuffer *sb, msgpack_unpacked *u)
{
    msgpack_unpacked_init(u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(u, sb->data, sb->size, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, sb->size);
}

static void test_graph_model_save_load_round_trips_bit_exactly(void **state)
{
    (void)state;
    nn_rng rng;
    nn_rng_seed(&rng, 21);
    nn_graph *g, *h;
    assert_int_equal(nn_graph_new(&g, 6, 4, 2, &rng, NULL), 0);
    nn_params pg;
    nn_params_init(&pg);
    assert_int_equal(nn_graph_params(g, &pg, NULL), 0);
    for (size_t i = 0; i < pg.n; i++) /* awkward values: subnormal, -0, extremes */
        nn_tensor_normal(pg.v[i].w, 1.0f, &rng);
    pg.v[0].w->data[0] = 1e-42f;
    pg.v[0].w->data[1] = -0.0f;
    pg.v[1].w->data[0] = 3.4e38f;
    msgpack_sbuffer sb, sb2;
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_init(&sb2);
    assert_int_equal(nn_graph_pack(g, &sb, NULL), 0);
    msgpack_unpacked u;
    unpack_frame(&sb, &u);
    assert_int_equal(nn_graph_unpack(&u.data, &h, NULL), 0);
    nn_params ph;
    nn_params_init(&ph);
    assert_int_equal(nn_graph_params(h, &ph, NULL), 0);
    assert_int_equal(ph.n, pg.n);
    for (size_t i = 0; i < pg.n; i++) {
        assert_string_equal(ph.v[i].name, pg.v[i].name);
        assert_memory_equal(ph.v[i].w->data, pg.v[i].w->data,
                            nn_tensor_len(pg.v[i].w) * sizeof(float));
    }
    assert_int_equal(nn_graph_pack(h, &sb2, NULL), 0);
    assert_int_equal(sb.size, sb2.size);
    assert_memory_equal(sb.data, sb2.data, sb.size);
    /* little-endian f32 on the wire: 1e-42f's bits 0x000002ca appear as ca 02 00 00 */
    static const unsigned char le[4] = {0xca, 0x02, 0x00, 0x00};
    assert_non_null(memmem(sb.data, sb.size, le, 4));

    /* same outputs from the loaded model */
    pg.v[1].w->data[0] = 0.5f; /* keep the forward finite */
    ph.v[1].w->data[0] = 0.5f;
    nn_tensor *x = nn_tensor_new(2, 6), *n = nn_tensor_new(6, 6);
    nn_tensor_uniform(x, 1.0f, &rng);
    nn_tensor_uniform(n, 1.0f, &rng);
    const nn_tensor *ya, *yb;
    assert_int_equal(nn_graph_forward(g, x, n, NULL, 3, &ya, NULL), 0);
    assert_int_equal(nn_graph_forward(h, x, n, NULL, 3, &yb, NULL), 0);
    assert_memory_equal(ya->data, yb->data, 12 * sizeof(float));

    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&sb2);
    nn_tensor_destroy(&x);
    nn_tensor_destroy(&n);
    nn_params_free(&pg);
    nn_params_free(&ph);
    nn_graph_destroy(&g);
    nn_graph_destroy(&h);
}

/* Pack a frame by hand with one field changed, and expect HF_EDATA. */
enum { BAD_T, BAD_V, BAD_ROWS, BAD_BIN, BAD_NAME, BAD_NAN, BAD_HEADS, BAD_HUGE };

static void pack_bad(msgpack_sbuffer *sb, int what)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
#define S(s) (msgpack_pack_str(&pk, strlen(s)), msgpack_pack_str_body(&pk, s, strlen(s)))
    msgpack_pack_map(&pk, 7);
    S("t");
    S(what == BAD_T ? "graph" : "model");
    S("kind");
    S("graph");
    S("v");
    msgpack_pack_uint32(&pk, what == BAD_V ? 2 : 1);
    S("d_node");
    msgpack_pack_uint32(&pk, what == BAD_HUGE ? 65536 : 1); /* 3 * 2^32 floats if trusted */
    S("d_msg");
    msgpack_pack_uint32(&pk, 1);
    S("heads");
    if (what == BAD_HEADS)
        msgpack_pack_double(&pk, 1.5);
    else
        msgpack_pack_uint32(&pk, 1);
    S("params");
    msgpack_pack_array(&pk, 14);
    static const char *const names[14] = {
        "msg.w",    "msg.b",    "attn.q.w", "attn.q.b", "attn.k.w", "attn.k.b", "attn.v.w",
        "attn.v.b", "attn.o.w", "attn.o.b", "gru.i.w",  "gru.i.b",  "gru.h.w",  "gru.h.b"};
    for (int i = 0; i < 14; i++) {
        uint32_t rows = i >= 10 ? (i % 2 ? 1 : 3) : 1, cols = i >= 10 ? (i % 2 ? 3 : 1) : 1;
        float v[3] = {0.5f, 0.25f, what == BAD_NAN && i == 13 ? NAN : 1.0f};
        msgpack_pack_map(&pk, 4);
        S("name");
        S(what == BAD_NAME && i == 5 ? "attn.x.b" : names[i]);
        S("rows");
        msgpack_pack_uint32(&pk, what == BAD_ROWS && i == 0 ? 2 : rows);
        S("cols");
        msgpack_pack_uint32(&pk, cols);
        S("data");
        size_t bytes = 4 * (size_t)rows * cols - (what == BAD_BIN && i == 2 ? 1 : 0);
        msgpack_pack_bin(&pk, bytes);
        msgpack_pack_bin_body(&pk, v, bytes);
    }
#undef S
}

static void test_model_load_rejects_malformed_frames_with_edata(void **state)
{
    (void)state;
    for (int what = -1; what <= BAD_HUGE; what++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        pack_bad(&sb, what);
        msgpack_unpacked u;
        unpack_frame(&sb, &u);
        nn_graph *g = NULL;
        hf_err e = {0};
        int rc = nn_graph_unpack(&u.data, &g, &e);
        if (what < 0) { /* the untouched frame loads */
            assert_int_equal(rc, 0);
            assert_non_null(g);
            nn_graph_destroy(&g);
        } else {
            assert_int_equal(rc, HF_EDATA);
            assert_null(g);
            assert_true(strncmp(e.msg, "model: ", 7) == 0);
        }
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sb);
    }
}

static void test_model_pack_keeps_hyperparameters_and_kind(void **state)
{
    (void)state;
    nn_tensor *w = nn_tensor_new(2, 3), *g = nn_tensor_new(2, 3);
    nn_tensor_fill(w, 0.75f);
    nn_params p;
    nn_params_init(&p);
    assert_int_equal(nn_params_add(&p, "enc.", "w", w, g, NULL), 0);
    nn_hparam hp[] = {{"temp", 0.25}, {"k", 16}};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(nn_model_pack(&sb, "nav", hp, 2, &p, NULL), 0);
    msgpack_unpacked u;
    unpack_frame(&sb, &u);
    double v;
    assert_int_equal(nn_model_hparam(&u.data, "temp", &v, NULL), 0);
    assert_true(v == 0.25);
    assert_int_equal(nn_model_hparam(&u.data, "k", &v, NULL), 0);
    assert_true(v == 16.0);
    hf_err e = {0};
    assert_int_equal(nn_model_hparam(&u.data, "missing", &v, &e), HF_EDATA);
    nn_tensor_zero(w);
    assert_int_equal(nn_model_unpack_params(&u.data, "graph", &p, &e), HF_EDATA);
    assert_int_equal(nn_model_unpack_params(&u.data, "nav", &p, NULL), 0);
    assert_true(w->data[5] == 0.75f);
    nn_hparam badhp[] = {{"params", 1}};
    msgpack_sbuffer_clear(&sb);
    assert_int_equal(nn_model_pack(&sb, "nav", badhp, 1, &p, &e), HF_EUSAGE);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    nn_params_free(&p);
    nn_tensor_destroy(&w);
    nn_tensor_destroy(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adam_fits_linear_regression_to_least_squares_optimum),
        cmocka_unit_test(test_adamw_decays_weights_without_gradient),
        cmocka_unit_test(test_schedules_constant_step_cosine_and_warmup),
        cmocka_unit_test(test_ewc_reduces_forgetting_of_task_a_after_training_on_b),
        cmocka_unit_test(test_reservoir_keeps_every_item_with_equal_probability),
        cmocka_unit_test(test_replay_is_seeded_fills_first_and_samples_in_range),
        cmocka_unit_test(test_graph_model_save_load_round_trips_bit_exactly),
        cmocka_unit_test(test_model_load_rejects_malformed_frames_with_edata),
        cmocka_unit_test(test_model_pack_keeps_hyperparameters_and_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
