/*
 * test_nn.c - the neural kit's forward/backward passes: every layer's
 * analytic gradient against central finite differences, plus rng, tensor
 * and Dropout behaviour.
 *
 * How gradients are checked: a scalar L = sum(R .* y) with a fixed random
 * R (so dL/dy = R), analytic gradients from backward, numeric ones from
 * central differences (L(x+h) - L(x-h)) / 2h at h = 0.025 and 0.05 combined
 * by Richardson extrapolation, L summed in double. A spot
 * passes when |a - n| / max(|a|, |n|, 1e-2) < 1e-3 (the floor keeps
 * near-zero gradients from turning float noise into huge ratios). Up to
 * ~24 spots per tensor, spread over it. Inputs to ReLU stay 0.25 away from its kink.
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

#define FD_H 2.5e-2f
#define FD_TOL 1e-3
#define FD_FLOOR 1e-2

static double dot_r(const nn_tensor *y, const nn_tensor *r)
{
    double s = 0.0;
    for (size_t i = 0; i < nn_tensor_len(y); i++)
        s += (double)y->data[i] * r->data[i];
    return s;
}

static nn_tensor *rand_tensor(size_t rows, size_t cols, float scale, nn_rng *rng)
{
    nn_tensor *t = nn_tensor_new(rows, cols);
    assert_non_null(t);
    nn_tensor_uniform(t, scale, rng);
    return t;
}

typedef struct target {
    float *x;       /* values to perturb */
    const float *g; /* analytic gradient (live buffer; copied before checking) */
    size_t n;
    char name[NN_NAME_MAX];
} target;

typedef double (*loss_fn)(void *ctx);

static double worst_rel; /* largest relative error seen, for the log */

/* Central difference at step h; the perturbed value is what float holds. */
static double central(void *ctx, loss_fn loss, float *x, float h)
{
    float old = *x;
    float up = old + h, dn = old - h;
    *x = up;
    double lp = loss(ctx);
    *x = dn;
    double lm = loss(ctx);
    *x = old;
    return (lp - lm) / ((double)up - (double)dn);
}

/* Richardson extrapolation of two central differences cancels the h^2
 * error term, which lets h be large enough that float rounding in the
 * forward pass stays well below the tolerance. */
static double richardson(void *ctx, loss_fn loss, float *x)
{
    return (4.0 * central(ctx, loss, x, FD_H) - central(ctx, loss, x, 2.0f * FD_H)) / 3.0;
}

static void fd_check_one(void *ctx, loss_fn loss, const target *t)
{
    float *ga = malloc(t->n * sizeof *ga);
    assert_non_null(ga);
    memcpy(ga, t->g, t->n * sizeof *ga);
    size_t step = t->n > 24 ? t->n / 24 : 1;
    for (size_t i = 0; i < t->n; i += step) {
        double num = richardson(ctx, loss, &t->x[i]);
        double a = ga[i];
        double den = fmax(fmax(fabs(a), fabs(num)), FD_FLOOR);
        double rel = fabs(a - num) / den;
        if (rel > worst_rel)
            worst_rel = rel;
        if (getenv("NN_FD_VERBOSE") && rel > 2e-4)
            print_message("  %s[%zu]: a %.7g n %.7g rel %.3g\n", t->name, i, a, num, rel);
        if (rel >= FD_TOL)
            fail_msg("%s[%zu]: analytic %.7g numeric %.7g rel %.3g", t->name, i, a, num, rel);
    }
    free(ga);
}

static void fd_check_all(void *ctx, loss_fn loss, target *t, size_t nt)
{
    for (size_t i = 0; i < nt; i++)
        fd_check_one(ctx, loss, &t[i]);
}

static target tgt(const char *name, float *x, const float *g, size_t n)
{
    target t = {.x = x, .g = g, .n = n};
    snprintf(t.name, sizeof t.name, "%s", name);
    return t;
}

/* Append one target per parameter. */
static size_t param_targets(const nn_params *p, target *t, size_t at)
{
    for (size_t i = 0; i < p->n; i++)
        t[at++] = tgt(p->v[i].name, p->v[i].w->data, p->v[i].g->data, nn_tensor_len(p->v[i].w));
    return at;
}

/* ------------------------------------------------------------ rng/tensor */

static void test_rng_same_seed_same_stream_and_uniform_in_range(void **state)
{
    (void)state;
    nn_rng a, b, c;
    nn_rng_seed(&a, 42);
    nn_rng_seed(&b, 42);
    nn_rng_seed(&c, 43);
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = nn_rng_next(&a), y = nn_rng_next(&b), z = nn_rng_next(&c);
        assert_int_equal(x, y);
        differ += x != z;
    }
    assert_true(differ > 990);
    double sum = 0.0, sq = 0.0;
    for (int i = 0; i < 100000; i++) {
        float u = nn_rng_uniform(&a);
        assert_true(u >= 0.0f && u < 1.0f);
        assert_true(nn_rng_below(&a, 7) < 7);
        float g = nn_rng_normal(&a);
        sum += g;
        sq += (double)g * g;
    }
    assert_true(fabs(sum / 1e5) < 0.02);
    assert_true(fabs(sq / 1e5 - 1.0) < 0.02);
}

static void test_tensor_new_rejects_overflow_and_gemm_checks_shapes(void **state)
{
    (void)state;
    assert_null(nn_tensor_new(SIZE_MAX / 2, 4));
    assert_null(nn_tensor_new((size_t)1 << 32, 1));
    nn_tensor *a = nn_tensor_new(2, 3), *b = nn_tensor_new(3, 2), *c = nn_tensor_new(2, 2);
    assert_true(((uintptr_t)a->data & 63) == 0);
    for (int i = 0; i < 6; i++) {
        a->data[i] = (float)(i + 1);
        b->data[i] = (float)(i + 1);
    }
    hf_err e = {0};
    assert_int_equal(nn_gemm(false, false, 1.0f, a, b, 0.0f, c, &e), 0);
    /* [1 2 3; 4 5 6] [1 2; 3 4; 5 6] = [22 28; 49 64] */
    assert_true(c->data[0] == 22 && c->data[1] == 28 && c->data[2] == 49 && c->data[3] == 64);
    assert_int_equal(nn_gemm(false, true, 1.0f, a, b, 0.0f, c, &e), HF_EUSAGE);
    assert_true(strstr(e.msg, "gemm") != NULL);
    nn_tensor_destroy(&a);
    nn_tensor_destroy(&b);
    nn_tensor_destroy(&c);
    assert_null(a);
}

/* ------------------------------------------------------- single layers */

typedef struct layer_ctx {
    nn_layer *l;
    nn_tensor *x, *r;
    const nn_tensor *dx;
} layer_ctx;

static double layer_loss(void *p)
{
    layer_ctx *c = p;
    const nn_tensor *y;
    assert_int_equal(nn_layer_forward(c->l, c->x, false, &y, NULL), 0);
    return dot_r(y, c->r);
}

static void layer_grads(layer_ctx *c)
{
    const nn_tensor *y;
    if (c->l->gw)
        nn_tensor_zero(c->l->gw), nn_tensor_zero(c->l->gb);
    assert_int_equal(nn_layer_forward(c->l, c->x, false, &y, NULL), 0);
    if (!c->r)
        c->r = rand_tensor(y->rows, y->cols, 1.0f, &(nn_rng){{1, 2, 3, 4}});
    assert_int_equal(nn_layer_backward(c->l, c->r, &c->dx, NULL), 0);
}

static void check_layer(nn_layer *l, size_t rows, size_t cols, bool away_from_zero, uint64_t seed)
{
    nn_rng rng;
    nn_rng_seed(&rng, seed);
    layer_ctx c = {.l = l, .x = rand_tensor(rows, cols, 2.0f, &rng)};
    if (away_from_zero)
        for (size_t i = 0; i < nn_tensor_len(c.x); i++)
            c.x->data[i] += c.x->data[i] >= 0 ? 0.25f : -0.25f;
    layer_grads(&c);
    target t[3];
    size_t nt = 0;
    t[nt++] = tgt("x", c.x->data, c.dx->data, nn_tensor_len(c.x));
    nn_params p;
    nn_params_init(&p);
    assert_int_equal(nn_layer_params(l, "", &p, NULL), 0);
    nt = param_targets(&p, t, nt);
    fd_check_all(&c, layer_loss, t, nt);
    nn_params_free(&p);
    nn_tensor_destroy(&c.x);
    nn_tensor_destroy(&c.r);
}

static void test_linear_backward_matches_finite_differences(void **state)
{
    (void)state;
    nn_rng rng;
    nn_rng_seed(&rng, 7);
    nn_layer *l;
    assert_int_equal(nn_linear_new(&l, 5, 4, NN_INIT_XAVIER, &rng, NULL), 0);
    nn_tensor_uniform(l->b, 0.5f, &rng);
    check_layer(l, 3, 5, false, 11);
    nn_layer_destroy(&l);
    assert_int_equal(nn_linear_new(&l, 6, 3, NN_INIT_HE, &rng, NULL), 0);
    check_layer(l, 1, 6, false, 12);
    nn_layer_destroy(&l);
}

static void test_activations_backward_match_finite_differences(void **state)
{
    (void)state;
    nn_layer_kind kinds[] = {NN_RELU, NN_SIGMOID, NN_TANH, NN_SOFTMAX};
    for (size_t i = 0; i < 4; i++) {
        nn_layer *l;
        assert_int_equal(nn_act_new(&l, kinds[i], NULL), 0);
        check_layer(l, 4, 6, kinds[i] == NN_RELU, 20 + i);
        nn_layer_destroy(&l);
    }
    nn_layer *l;
    hf_err e = {0};
    assert_int_equal(nn_act_new(&l, NN_LINEAR, &e), HF_EUSAGE);
    assert_null(l);
}

static void test_layernorm_backward_matches_finite_differences(void **state)
{
    (void)state;
    nn_rng rng;
    nn_rng_seed(&rng, 8);
    nn_layer *l;
    assert_int_equal(nn_layernorm_new(&l, 6, 1e-5f, NULL), 0);
    nn_tensor_uniform(l->w, 1.0f, &rng);
    nn_tensor_uniform(l->b, 1.0f, &rng);
    check_layer(l, 3, 6, false, 30);
    /* rows come out with mean beta-ish and unit scale when gamma = 1, beta = 0 */
    nn_tensor_fill(l->w, 1.0f);
    nn_tensor_zero(l->b);
    nn_tensor *x = rand_tensor(2, 6, 3.0f, &rng);
    const nn_tensor *y;
    assert_int_equal(nn_layer_forward(l, x, false, &y, NULL), 0);
    for (size_t r = 0; r < 2; r++) {
        double m = 0, v = 0;
        for (size_t j = 0; j < 6; j++)
            m += nn_row(y, r)[j];
        for (size_t j = 0; j < 6; j++)
            v += (nn_row(y, r)[j] - m / 6) * (nn_row(y, r)[j] - m / 6);
        assert_true(fabs(m / 6) < 1e-5 && fabs(v / 6 - 1.0) < 1e-3);
    }
    nn_tensor_destroy(&x);
    nn_layer_destroy(&l);
}

static void test_softmax_rows_sum_to_one_even_for_huge_logits(void **state)
{
    (void)state;
    nn_layer *l;
    assert_int_equal(nn_act_new(&l, NN_SOFTMAX, NULL), 0);
    nn_tensor *x = nn_tensor_new(1, 3);
    x->data[0] = 1000.0f;
    x->data[1] = 999.0f;
    x->data[2] = -1000.0f;
    const nn_tensor *y;
    assert_int_equal(nn_layer_forward(l, x, false, &y, NULL), 0);
    assert_true(isfinite(y->data[0]) && fabsf(y->data[0] + y->data[1] + y->data[2] - 1.0f) < 1e-6f);
    assert_true(y->data[0] > y->data[1] && y->data[2] == 0.0f);
    nn_tensor_destroy(&x);
    nn_layer_destroy(&l);
}

/* ------------------------------------------------------------ sequential */

typedef struct seq_ctx {
    nn_seq *s;
    nn_tensor *x, *r;
    const nn_tensor *dx;
} seq_ctx;

static double seq_loss(void *p)
{
    seq_ctx *c = p;
    const nn_tensor *y;
    assert_int_equal(nn_seq_forward(c->s, c->x, false, &y, NULL), 0);
    return dot_r(y, c->r);
}

static void test_sequential_backward_matches_finite_differences(void **state)
{
    (void)state;
    nn_rng rng;
    nn_rng_seed(&rng, 9);
    seq_ctx c = {0};
    assert_int_equal(nn_seq_new(&c.s, NULL), 0);
    nn_layer *l;
    assert_int_equal(nn_linear_new(&l, 4, 8, NN_INIT_XAVIER, &rng, NULL), 0);
    assert_int_equal(nn_seq_add(c.s, &l, NULL), 0);
    assert_null(l);
    assert_int_equal(nn_act_new(&l, NN_TANH, NULL), 0);
    assert_int_equal(nn_seq_add(c.s, &l, NULL), 0);
    assert_int_equal(nn_layernorm_new(&l, 8, 1e-5f, NULL), 0);
    assert_int_equal(nn_seq_add(c.s, &l, NULL), 0);
    assert_int_equal(nn_dropout_new(&l, 0.5f, 1, NULL), 0); /* identity: not training */
    assert_int_equal(nn_seq_add(c.s, &l, NULL), 0);
    assert_int_equal(nn_linear_new(&l, 8, 3, NN_INIT_XAVIER, &rng, NULL), 0);
    assert_int_equal(nn_seq_add(c.s, &l, NULL), 0);
    assert_int_equal(nn_act_new(&l, NN_SIGMOID, NULL), 0);
    assert_int_equal(nn_seq_add(c.s, &l, NULL), 0);

    c.x = rand_tensor(3, 4, 1.5f, &rng);
    c.r = rand_tensor(3, 3, 1.0f, &rng);
    nn_params p;
    nn_params_init(&p);
    assert_int_equal(nn_seq_params(c.s, "", &p, NULL), 0);
    assert_int_equal(p.n, 6);
    assert_string_equal(p.v[0].name, "0.w");
    assert_string_equal(p.v[2].name, "2.gamma");
    nn_params_zero_grad(&p);
    const nn_tensor *y;
    assert_int_equal(nn_seq_forward(c.s, c.x, false, &y, NULL), 0);
    assert_int_equal(nn_seq_backward(c.s, c.r, &c.dx, NULL), 0);
    target t[8];
    size_t nt = 0;
    t[nt++] = tgt("x", c.x->data, c.dx->data, nn_tensor_len(c.x));
    nt = param_targets(&p, t, nt);
    fd_check_all(&c, seq_loss, t, nt);

    /* a shape error names the layer */
    nn_tensor *bad = nn_tensor_new(2, 5);
    hf_err e = {0};
    assert_int_equal(nn_seq_forward(c.s, bad, false, &y, &e), HF_EUSAGE);
    assert_true(strstr(e.msg, "layer 0") != NULL);
    nn_tensor_destroy(&bad);
    nn_params_free(&p);
    nn_tensor_destroy(&c.x);
    nn_tensor_destroy(&c.r);
    nn_seq_destroy(&c.s);
}

/* --------------------------------------------------------------- dropout */

static void test_dropout_is_deterministic_for_a_seed_and_identity_in_eval(void **state)
{
    (void)state;
    nn_layer *a, *b, *c;
    assert_int_equal(nn_dropout_new(&a, 0.3f, 99, NULL), 0);
    assert_int_equal(nn_dropout_new(&b, 0.3f, 99, NULL), 0);
    assert_int_equal(nn_dropout_new(&c, 0.3f, 100, NULL), 0);
    nn_tensor *x = nn_tensor_new(50, 40);
    nn_tensor_fill(x, 1.0f);
    const nn_tensor *ya, *yb, *yc, *dx;
    for (int rep = 0; rep < 3; rep++) {
        assert_int_equal(nn_layer_forward(a, x, true, &ya, NULL), 0);
        assert_int_equal(nn_layer_forward(b, x, true, &yb, NULL), 0);
        assert_int_equal(nn_layer_forward(c, x, true, &yc, NULL), 0);
        assert_memory_equal(ya->data, yb->data, nn_tensor_len(x) * sizeof(float));
        assert_memory_not_equal(ya->data, yc->data, nn_tensor_len(x) * sizeof(float));
    }
    size_t zeros = 0;
    for (size_t i = 0; i < nn_tensor_len(x); i++) {
        assert_true(ya->data[i] == 0.0f || fabsf(ya->data[i] - 1.0f / 0.7f) < 1e-6f);
        zeros += ya->data[i] == 0.0f;
    }
    assert_true(zeros > 0.25 * 2000 && zeros < 0.35 * 2000);
    /* backward routes through the same mask */
    assert_int_equal(nn_layer_backward(a, x, &dx, NULL), 0);
    assert_memory_equal(dx->data, ya->data, nn_tensor_len(x) * sizeof(float));
    /* evaluation: identity */
    assert_int_equal(nn_layer_forward(a, x, false, &ya, NULL), 0);
    for (size_t i = 0; i < nn_tensor_len(x); i++)
        assert_true(ya->data[i] == 1.0f);
    nn_layer *bad;
    assert_int_equal(nn_dropout_new(&bad, 1.0f, 1, NULL), HF_EUSAGE);
    nn_tensor_destroy(&x);
    nn_layer_destroy(&a);
    nn_layer_destroy(&b);
    nn_layer_destroy(&c);
}

/* ------------------------------------------------------------- attention */

#define AB 3 /* batch */
#define AK 4 /* slots */
static const uint8_t att_mask[AB * AK] = {1, 1, 1, 1, /**/ 1, 0, 1, 0, /**/ 0, 0, 0, 0};

typedef struct attn_ctx {
    nn_attn *a;
    nn_tensor *q, *kv, *r;
} attn_ctx;

static double attn_loss(void *p)
{
    attn_ctx *c = p;
    const nn_tensor *y;
    assert_int_equal(nn_attn_forward(c->a, c->q, c->kv, att_mask, AK, &y, NULL), 0);
    return dot_r(y, c->r);
}

static void test_attention_backward_matches_finite_differences_with_mask(void **state)
{
    (void)state;
    nn_rng rng;
    nn_rng_seed(&rng, 10);
    attn_ctx c = {0};
    assert_int_equal(nn_attn_new(&c.a, 5, 3, 6, 2, &rng, NULL), 0);
    c.q = rand_tensor(AB, 5, 1.5f, &rng);
    c.kv = rand_tensor(AB * AK, 3, 1.5f, &rng);
    c.r = rand_tensor(AB, 6, 1.0f, &rng);
    nn_params p;
    nn_params_init(&p);
    assert_int_equal(nn_attn_params(c.a, "attn.", &p, NULL), 0);
    assert_int_equal(p.n, 8);
    for (size_t i = 0; i < p.n; i++) /* nonzero biases so every path is exercised */
        if (p.v[i].w->rows == 1)
            nn_tensor_uniform(p.v[i].w, 0.3f, &rng);
    nn_params_zero_grad(&p);
    const nn_tensor *y, *dq, *dkv;
    assert_int_equal(nn_attn_forward(c.a, c.q, c.kv, att_mask, AK, &y, NULL), 0);
    /* weights: sum to 1 over real slots, 0 on padded, all 0 with no real slot */
    for (size_t b = 0; b < AB; b++)
        for (size_t h = 0; h < 2; h++) {
            double s = 0;
            for (size_t j = 0; j < AK; j++) {
                float w = nn_row(c.a->alpha, b)[h * AK + j];
                if (!att_mask[b * AK + j])
                    assert_true(w == 0.0f);
                s += w;
            }
            assert_true(b == 2 ? s == 0.0 : fabs(s - 1.0) < 1e-6);
        }
    assert_int_equal(nn_attn_backward(c.a, c.r, &dq, &dkv, NULL), 0);
    /* padded neighbours get no gradient */
    for (size_t t = 0; t < 3; t++)
        assert_true(nn_row(dkv, 1 * AK + 1)[t] == 0.0f && nn_row(dkv, 2 * AK + 0)[t] == 0.0f);
    target t[12];
    size_t nt = 0;
    t[nt++] = tgt("q", c.q->data, dq->data, nn_tensor_len(c.q));
    t[nt++] = tgt("kv", c.kv->data, dkv->data, nn_tensor_len(c.kv));
    nt = param_targets(&p, t, nt);
    fd_check_all(&c, attn_loss, t, nt);
    hf_err e = {0};
    nn_attn *bad;
    assert_int_equal(nn_attn_new(&bad, 5, 3, 6, 4, &rng, &e), HF_EUSAGE);
    nn_params_free(&p);
    nn_tensor_destroy(&c.q);
    nn_tensor_destroy(&c.kv);
    nn_tensor_destroy(&c.r);
    nn_attn_destroy(&c.a);
}

/* ------------------------------------------------------------------- GRU */

typedef struct gru_ctx {
    nn_gru *g;
    nn_tensor *x, *h, *r;
} gru_ctx;

static double gru_loss(void *p)
{
    gru_ctx *c = p;
    const nn_tensor *y;
    assert_int_equal(nn_gru_forward(c->g, c->x, c->h, &y, NULL), 0);
    return dot_r(y, c->r);
}

static void test_gru_backward_matches_finite_differences(void **state)
{
    (void)state;
    nn_rng rng;
    nn_rng_seed(&rng, 11);
    gru_ctx c = {0};
    assert_int_equal(nn_gru_new(&c.g, 4, 5, &rng, NULL), 0);
    nn_tensor_uniform(c.g->wi->b, 0.5f, &rng);
    nn_tensor_uniform(c.g->wh->b, 0.5f, &rng);
    c.x = rand_tensor(3, 4, 1.5f, &rng);
    c.h = rand_tensor(3, 5, 1.0f, &rng);
    c.r = rand_tensor(3, 5, 1.0f, &rng);
    nn_params p;
    nn_params_init(&p);
    assert_int_equal(nn_gru_params(c.g, "gru.", &p, NULL), 0);
    nn_params_zero_grad(&p);
    const nn_tensor *y, *dx, *dh;
    assert_int_equal(nn_gru_forward(c.g, c.x, c.h, &y, NULL), 0);
    assert_int_equal(nn_gru_backward(c.g, c.r, &dx, &dh, NULL), 0);
    target t[6];
    size_t nt = 0;
    t[nt++] = tgt("x", c.x->data, dx->data, nn_tensor_len(c.x));
    t[nt++] = tgt("h", c.h->data, dh->data, nn_tensor_len(c.h));
    nt = param_targets(&p, t, nt);
    fd_check_all(&c, gru_loss, t, nt);
    nn_params_free(&p);
    nn_tensor_destroy(&c.x);
    nn_tensor_destroy(&c.h);
    nn_tensor_destroy(&c.r);
    nn_gru_destroy(&c.g);
}

/* ------------------------------------------------------------ graph layer */

typedef struct graph_ctx {
    nn_graph *g;
    nn_tensor *h, *nbr, *r;
} graph_ctx;

static double graph_loss(void *p)
{
    graph_ctx *c = p;
    const nn_tensor *y;
    assert_int_equal(nn_graph_forward(c->g, c->h, c->nbr, att_mask, AK, &y, NULL), 0);
    return dot_r(y, c->r);
}

static void test_graph_layer_backward_matches_finite_differences_batched(void **state)
{
    (void)state;
    nn_rng rng;
    nn_rng_seed(&rng, 12);
    graph_ctx c = {0};
    assert_int_equal(nn_graph_new(&c.g, 5, 4, 2, &rng, NULL), 0);
    c.h = rand_tensor(AB, 5, 1.0f, &rng);
    c.nbr = rand_tensor(AB * AK, 5, 1.0f, &rng);
    c.r = rand_tensor(AB, 5, 1.0f, &rng);
    nn_params p;
    nn_params_init(&p);
    assert_int_equal(nn_graph_params(c.g, &p, NULL), 0);
    assert_int_equal(p.n, 2 + 8 + 4);
    assert_non_null(nn_params_find(&p, "attn.q.w"));
    assert_non_null(nn_params_find(&p, "gru.h.b"));
    for (size_t i = 0; i < p.n; i++)
        if (p.v[i].w->rows == 1)
            nn_tensor_uniform(p.v[i].w, 0.3f, &rng);
    nn_params_zero_grad(&p);
    const nn_tensor *y, *dh, *dn;
    assert_int_equal(nn_graph_forward(c.g, c.h, c.nbr, att_mask, AK, &y, NULL), 0);
    assert_int_equal(y->rows, AB);
    assert_int_equal(y->cols, 5);
    assert_int_equal(nn_graph_attention(c.g)->cols, 2 * AK);
    assert_int_equal(nn_graph_backward(c.g, c.r, &dh, &dn, NULL), 0);
    target t[20];
    size_t nt = 0;
    t[nt++] = tgt("h", c.h->data, dh->data, nn_tensor_len(c.h));
    t[nt++] = tgt("nbr", c.nbr->data, dn->data, nn_tensor_len(c.nbr));
    nt = param_targets(&p, t, nt);
    fd_check_all(&c, graph_loss, t, nt);

    /* A batch row's output does not depend on the other rows. */
    nn_tensor *h1 = nn_tensor_new(1, 5), *n1 = nn_tensor_new(AK, 5);
    memcpy(h1->data, nn_row(c.h, 1), 5 * sizeof(float));
    memcpy(n1->data, nn_row(c.nbr, AK), AK * 5 * sizeof(float));
    float row1[5];
    assert_int_equal(nn_graph_forward(c.g, c.h, c.nbr, att_mask, AK, &y, NULL), 0);
    memcpy(row1, nn_row(y, 1), sizeof row1);
    assert_int_equal(nn_graph_forward(c.g, h1, n1, att_mask + AK, AK, &y, NULL), 0);
    for (int j = 0; j < 5; j++)
        assert_true(fabsf(y->data[j] - row1[j]) < 1e-5f);
    nn_tensor_destroy(&h1);
    nn_tensor_destroy(&n1);

    hf_err e = {0};
    assert_int_equal(nn_graph_forward(c.g, c.h, c.nbr, att_mask, AK + 1, &y, &e), HF_EUSAGE);
    nn_params_free(&p);
    nn_tensor_destroy(&c.h);
    nn_tensor_destroy(&c.nbr);
    nn_tensor_destroy(&c.r);
    nn_graph_destroy(&c.g);
}

/* ---------------------------------------------------------------- losses */

typedef struct loss_ctx {
    nn_tensor *a, *b, *g, *g2;
    const int8_t *label;
    size_t k;
    int which;
} loss_ctx;

enum { L_MSE, L_BCE, L_NCE, L_CONTRA };

static double loss_eval(void *p)
{
    loss_ctx *c = p;
    float l = 0.0f;
    int rc = -1;
    switch (c->which) {
    case L_MSE: rc = nn_loss_mse(c->a, c->b, NULL, &l, NULL); break;
    case L_BCE: rc = nn_loss_bce_logits(c->a, c->b, NULL, &l, NULL); break;
    case L_NCE: rc = nn_loss_infonce(c->a, 0.5f, NULL, &l, NULL); break;
    case L_CONTRA:
        rc = nn_loss_contrastive(c->a, c->b, c->label, c->k, 0.2f, 1.5f, NULL, NULL, &l, NULL);
        break;
    }
    assert_int_equal(rc, 0);
    return l;
}

static void test_mse_and_bce_gradients_match_finite_differences(void **state)
{
    (void)state;
    nn_rng rng;
    nn_rng_seed(&rng, 13);
    loss_ctx c = {.a = rand_tensor(4, 3, 3.0f, &rng),
                  .b = rand_tensor(4, 3, 1.0f, &rng),
                  .g = nn_tensor_new(0, 0)};
    float l;
    c.which = L_MSE;
    assert_int_equal(nn_loss_mse(c.a, c.b, c.g, &l, NULL), 0);
    target t = tgt("mse", c.a->data, c.g->data, 12);
    fd_check_all(&c, loss_eval, &t, 1);
    for (size_t i = 0; i < 12; i++)
        c.b->data[i] = c.b->data[i] > 0 ? 1.0f : 0.0f;
    c.which = L_BCE;
    assert_int_equal(nn_loss_bce_logits(c.a, c.b, c.g, &l, NULL), 0);
    t = tgt("bce", c.a->data, c.g->data, 12);
    fd_check_all(&c, loss_eval, &t, 1);
    /* stable for huge logits: log(1 + e^-1000) ~ 0 and l(-1000, t=1) = 1000 */
    nn_tensor *x = nn_tensor_new(1, 2), *y = nn_tensor_new(1, 2);
    x->data[0] = 1000.0f;
    x->data[1] = -1000.0f;
    y->data[0] = 1.0f;
    y->data[1] = 1.0f;
    assert_int_equal(nn_loss_bce_logits(x, y, c.g, &l, NULL), 0);
    assert_true(fabsf(l - 500.0f) < 1e-3f);
    assert_true(c.g->data[0] == 0.0f && fabsf(c.g->data[1] + 0.5f) < 1e-6f);
    nn_tensor_destroy(&x);
    nn_tensor_destroy(&y);
    nn_tensor_destroy(&c.a);
    nn_tensor_destroy(&c.b);
    nn_tensor_destroy(&c.g);
}

static void test_infonce_gradient_matches_and_is_low_when_positive_dominates(void **state)
{
    (void)state;
    nn_rng rng;
    nn_rng_seed(&rng, 14);
    loss_ctx c = {.a = rand_tensor(3, 5, 1.0f, &rng), .g = nn_tensor_new(0, 0), .which = L_NCE};
    float l;
    assert_int_equal(nn_loss_infonce(c.a, 0.5f, c.g, &l, NULL), 0);
    target t = tgt("infonce", c.a->data, c.g->data, 15);
    fd_check_all(&c, loss_eval, &t, 1);
    /* uniform scores give log(1+N); a dominant positive gives ~0 */
    nn_tensor_zero(c.a);
    assert_int_equal(nn_loss_infonce(c.a, 0.5f, c.g, &l, NULL), 0);
    assert_true(fabsf(l - logf(5.0f)) < 1e-5f);
    for (size_t b = 0; b < 3; b++)
        nn_row(c.a, b)[0] = 100.0f;
    assert_int_equal(nn_loss_infonce(c.a, 0.5f, c.g, &l, NULL), 0);
    assert_true(l < 1e-6f);
    nn_tensor_destroy(&c.a);
    nn_tensor_destroy(&c.g);
}

static void test_contrastive_gradient_matches_and_ignores_unlabelled_pairs(void **state)
{
    (void)state;
    nn_rng rng;
    nn_rng_seed(&rng, 15);
    static const int8_t lab[2 * 3] = {1, 0, -1, 0, 1, 1};
    loss_ctx c = {.a = rand_tensor(2, 4, 1.0f, &rng),
                  .b = rand_tensor(6, 4, 1.0f, &rng),
                  .g = nn_tensor_new(0, 0),
                  .g2 = nn_tensor_new(0, 0),
                  .label = lab,
                  .k = 3,
                  .which = L_CONTRA};
    float l;
    assert_int_equal(nn_loss_contrastive(c.a, c.b, lab, 3, 0.2f, 1.5f, c.g, c.g2, &l, NULL), 0);
    assert_true(l > 0.0f);
    for (size_t t = 0; t < 4; t++)
        assert_true(nn_row(c.g2, 2)[t] == 0.0f);
    target t[2] = {tgt("anchor", c.a->data, c.g->data, 8),
                   tgt("others", c.b->data, c.g2->data, 24)};
    fd_check_all(&c, loss_eval, t, 2);
    nn_tensor_destroy(&c.a);
    nn_tensor_destroy(&c.b);
    nn_tensor_destroy(&c.g);
    nn_tensor_destroy(&c.g2);
}

/* ------------------------------------------------ Gumbel and soft search */

typedef struct soft_ctx {
    nn_tensor *logits, *y, *r, *r2, *q, *cand, *w;
    uint64_t seed;
} soft_ctx;

static double gumbel_loss(void *p)
{
    soft_ctx *c = p;
    nn_rng rng;
    nn_rng_seed(&rng, c->seed); /* same noise every evaluation */
    assert_int_equal(nn_gumbel_softmax(c->logits, 0.7f, &rng, c->y, NULL), 0);
    return dot_r(c->y, c->r);
}

static void test_gumbel_softmax_is_seeded_and_backward_matches(void **state)
{
    (void)state;
    nn_rng rng;
    nn_rng_seed(&rng, 16);
    soft_ctx c = {.logits = rand_tensor(3, 5, 2.0f, &rng),
                  .y = nn_tensor_new(0, 0),
                  .r = rand_tensor(3, 5, 1.0f, &rng),
                  .seed = 77};
    nn_tensor *dl = nn_tensor_new(3, 5), *y2 = nn_tensor_new(0, 0);
    gumbel_loss(&c);
    nn_rng r2;
    nn_rng_seed(&r2, 77);
    assert_int_equal(nn_gumbel_softmax(c.logits, 0.7f, &r2, y2, NULL), 0);
    assert_memory_equal(y2->data, c.y->data, 15 * sizeof(float));
    assert_int_equal(nn_gumbel_softmax_backward(c.y, c.r, 0.7f, dl, NULL), 0);
    target t = tgt("logits", c.logits->data, dl->data, 15);
    fd_check_all(&c, gumbel_loss, &t, 1);
    /* the argmax of samples follows softmax(logits): logits (0, log 3) -> 1/4, 3/4 */
    nn_tensor *lg = nn_tensor_new(1, 2);
    lg->data[1] = logf(3.0f);
    int ones = 0;
    for (int i = 0; i < 20000; i++) {
        assert_int_equal(nn_gumbel_softmax(lg, 0.1f, &r2, y2, NULL), 0);
        ones += y2->data[1] > y2->data[0];
    }
    assert_true(fabs(ones / 20000.0 - 0.75) < 0.015);
    nn_tensor_destroy(&lg);
    nn_tensor_destroy(&dl);
    nn_tensor_destroy(&y2);
    nn_tensor_destroy(&c.logits);
    nn_tensor_destroy(&c.y);
    nn_tensor_destroy(&c.r);
}

static const uint8_t ss_mask[2 * 4] = {1, 1, 1, 1, 1, 0, 1, 1};

static double soft_loss(void *p)
{
    soft_ctx *c = p;
    assert_int_equal(nn_soft_search(c->q, c->cand, ss_mask, 4, 0.8f, c->w, c->y, NULL), 0);
    return dot_r(c->y, c->r) + dot_r(c->w, c->r2);
}

static void test_soft_search_backward_matches_finite_differences(void **state)
{
    (void)state;
    nn_rng rng;
    nn_rng_seed(&rng, 17);
    soft_ctx c = {.q = rand_tensor(2, 3, 1.0f, &rng),
                  .cand = rand_tensor(8, 3, 1.0f, &rng),
                  .w = nn_tensor_new(0, 0),
                  .y = nn_tensor_new(0, 0),
                  .r = rand_tensor(2, 3, 1.0f, &rng),
                  .r2 = rand_tensor(2, 4, 1.0f, &rng)};
    nn_tensor *dq = nn_tensor_new(2, 3), *dc = nn_tensor_new(8, 3);
    soft_loss(&c);
    assert_true(nn_row(c.w, 1)[1] == 0.0f);
    assert_int_equal(nn_soft_search_backward(c.q, c.cand, c.w, 4, 0.8f, c.r, c.r2, dq, dc, NULL),
                     0);
    target t[2] = {tgt("q", c.q->data, dq->data, 6), tgt("cand", c.cand->data, dc->data, 24)};
    fd_check_all(&c, soft_loss, t, 2);
    /* the nearest candidate gets the largest weight */
    size_t best = 0;
    float bd = INFINITY;
    for (size_t j = 0; j < 4; j++) {
        float d = 0;
        for (size_t k = 0; k < 3; k++)
            d += (c.q->data[k] - nn_row(c.cand, j)[k]) * (c.q->data[k] - nn_row(c.cand, j)[k]);
        if (d < bd)
            bd = d, best = j;
    }
    for (size_t j = 0; j < 4; j++)
        assert_true(c.w->data[j] <= c.w->data[best]);
    nn_tensor_destroy(&dq);
    nn_tensor_destroy(&dc);
    nn_tensor_destroy(&c.q);
    nn_tensor_destroy(&c.cand);
    nn_tensor_destroy(&c.w);
    nn_tensor_destroy(&c.y);
    nn_tensor_destroy(&c.r);
    nn_tensor_destroy(&c.r2);
}

static int report(void **state)
{
    (void)state;
    print_message("worst finite-difference relative error: %.3g\n", worst_rel);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_same_seed_same_stream_and_uniform_in_range),
        cmocka_unit_test(test_tensor_new_rejects_overflow_and_gemm_checks_shapes),
        cmocka_unit_test(test_linear_backward_matches_finite_differences),
        cmocka_unit_test(test_activations_backward_match_finite_differences),
        cmocka_unit_test(test_layernorm_backward_matches_finite_differences),
        cmocka_unit_test(test_softmax_rows_sum_to_one_even_for_huge_logits),
        cmocka_unit_test(test_sequential_backward_matches_finite_differences),
        cmocka_unit_test(test_dropout_is_deterministic_for_a_seed_and_identity_in_eval),
        cmocka_unit_test(test_attention_backward_matches_finite_differences_with_mask),
        cmocka_unit_test(test_gru_backward_matches_finite_differences),
        cmocka_unit_test(test_graph_layer_backward_matches_finite_differences_batched),
        cmocka_unit_test(test_mse_and_bce_gradients_match_finite_differences),
        cmocka_unit_test(test_infonce_gradient_matches_and_is_low_when_positive_dominates),
        cmocka_unit_test(test_contrastive_gradient_matches_and_ignores_unlabelled_pairs),
        cmocka_unit_test(test_gumbel_softmax_is_seeded_and_backward_matches),
        cmocka_unit_test(test_soft_search_backward_matches_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, report);
}
