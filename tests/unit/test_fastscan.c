/*
 * test_fastscan.c - the fast-scan kernels (fastscan.h) agree with the scalar
 * reference on the padded lengths of odd dimensions, the scalar reference
 * computes what fastscan.h defines (sum of table entries = <bits, rq>), and
 * the row layout (hnsw_rows.c) and the classic search answer with exact
 * distances and find the true neighbours for l2 and cosine on an odd
 * dimension with zero vectors among the data and the queries, survives save/load with
 * renumbering, never returns tombstones, and its rotation is orthogonal.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fastscan.h"
#include "hnsw.h"
#include "hnsw_io.h"
#include "knn.h"
#include "rotation.h"

/* dpad of dimensions 1, 3, 17, 100, 784, 1025, 2049: every code path of the
 * kernels, 16-bit flushes (past 512 and 1024 dimensions) included */
static const size_t dims[] = {1, 3, 17, 100, 784, 1025, 2049};

static float frand(unsigned *seed)
{
    return (float)rand_r(seed) / RAND_MAX * 2.0f - 1.0f;
}

static void check_scan(const char *isa)
{
    const fs_kernels *k = fs_isa(isa), *ref = fs_isa("scalar");
    if (!k) {
        skip();
        return;
    }
    unsigned seed = 3;
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        size_t D = hnsw_rows_dpad(dims[d]);
        uint8_t *codes = malloc(fs_batch_bytes(D)), *lut = malloc(D * 4);
        for (int rep = 0; rep < 10; rep++) {
            for (size_t i = 0; i < fs_batch_bytes(D); i++)
                codes[i] = (uint8_t)rand_r(&seed);
            /* extreme tables too: every entry 252 tests the 16-bit flushes */
            for (size_t i = 0; i < D * 4; i++)
                lut[i] = rep == 0 ? 252 : (uint8_t)(rand_r(&seed) % 253);
            /* the 32-vector form (one table set) and the split one the
             * rows' 16-vector batches use (high nibbles on the upper half) */
            for (int split = 0; split < 2; split++) {
                const uint8_t *hi = split ? lut + 16 * (D / 8) : lut;
                size_t groups = split ? D / 8 : D / 4;
                uint32_t got[FS_BATCH], want[FS_BATCH];
                k->scan(codes, lut, hi, groups, got);
                ref->scan(codes, lut, hi, groups, want);
                for (int j = 0; j < FS_BATCH; j++)
                    if (got[j] != want[j])
                        fail_msg("%s scan dpad %zu split %d vector %d: %u vs scalar %u", isa, D,
                                 split, j, got[j], want[j]);
            }
        }
        free(codes);
        free(lut);
    }
}

static void check_prep(const char *isa)
{
    const fs_kernels *k = fs_isa(isa), *ref = fs_isa("scalar");
    if (!k) {
        skip();
        return;
    }
    unsigned seed = 5;
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        size_t D = hnsw_rows_dpad(dims[d]);
        float *y = malloc(D * sizeof *y), *v = malloc(D * sizeof *v);
        uint8_t *rq = malloc(D), *rq0 = malloc(D), *lut = malloc(D * 4), *lut0 = malloc(D * 4);
        for (int rep = 0; rep < 10; rep++) {
            for (size_t i = 0; i < D; i++) {
                y[i] = i < dims[d] ? frand(&seed) : 0;
                v[i] = i < dims[d] ? frand(&seed) : 0;
            }
            fs_resid a, b;
            k->prep(y, v, D, rq, lut, &a);
            ref->prep(y, v, D, rq0, lut0, &b);
            float tol = 1e-4f * (1 + (float)D);
            if (fabsf(a.dist2 - b.dist2) > tol || fabsf(a.sum - b.sum) > tol || a.lo != b.lo ||
                a.delta != b.delta)
                fail_msg("%s prep dpad %zu: dist2 %g/%g sum %g/%g lo %g/%g delta %g/%g", isa, D,
                         a.dist2, b.dist2, a.sum, b.sum, a.lo, b.lo, a.delta, b.delta);
            for (size_t i = 0; i < D; i++) {
                if (abs((int)rq[i] - (int)rq0[i]) > 1 || rq[i] > 63)
                    fail_msg("%s prep dpad %zu: rq[%zu] %u vs scalar %u", isa, D, i, rq[i], rq0[i]);
                float back = a.lo + a.delta * rq[i];
                if (fabsf(back - (y[i] - v[i])) > 0.5f * a.delta + 1e-5f)
                    fail_msg("%s prep: rq[%zu] decodes to %g, residual %g", isa, i, back,
                             y[i] - v[i]);
            }
            /* each table is the sums of its group's quantised residuals */
            for (size_t g = 0; g < D / 4; g++)
                for (unsigned e = 0; e < 16; e++) {
                    unsigned s = 0;
                    for (unsigned t = 0; t < 4; t++)
                        s += (e >> t & 1) ? rq[4 * g + t] : 0;
                    if (lut[16 * g + e] != s)
                        fail_msg("%s prep dpad %zu: table %zu entry %u = %u, want %u", isa, D, g, e,
                                 lut[16 * g + e], s);
                }
        }
        free(y);
        free(v);
        free(rq);
        free(rq0);
        free(lut);
        free(lut0);
    }
}

static void scalar_scan_sums_rq_over_set_bits(void **st)
{
    (void)st;
    unsigned seed = 9;
    size_t D = 128;
    uint8_t *codes = calloc(fs_batch_bytes(D), 1), bits[FS_BATCH][128], rq[128], lut[512];
    float y[128], v[128];
    for (size_t i = 0; i < D; i++) {
        y[i] = frand(&seed);
        v[i] = frand(&seed);
    }
    fs_resid r;
    fs_prep_scalar(y, v, D, rq, lut, &r);
    for (unsigned j = 0; j < FS_BATCH; j++) {
        for (size_t i = 0; i < D; i++)
            bits[j][i] = (uint8_t)(rand_r(&seed) & 1);
        fs_pack(codes, D, j, bits[j]);
    }
    uint32_t out[FS_BATCH];
    fs_scan_scalar(codes, lut, lut, D / 4, out);
    for (unsigned j = 0; j < FS_BATCH; j++) {
        uint32_t want = 0;
        for (size_t i = 0; i < D; i++)
            want += bits[j][i] ? rq[i] : 0;
        assert_int_equal(out[j], want);
    }
    /* the 16-vector layout: vector j's sum is out[j] + out[16 + j] */
    memset(codes, 0, fs_batch16_bytes(D));
    for (unsigned j = 0; j < 16; j++)
        fs_pack16(codes, D, j, bits[j]);
    fs_scan_scalar(codes, lut, lut + 16 * (D / 8), D / 8, out);
    for (unsigned j = 0; j < 16; j++) {
        uint32_t want = 0;
        for (size_t i = 0; i < D; i++)
            want += bits[j][i] ? rq[i] : 0;
        assert_int_equal(out[j] + out[16 + j], want);
    }
    free(codes);
}

static void avx2_scan_matches_scalar(void **st)
{
    (void)st;
    check_scan("avx2");
}
static void avx512_scan_matches_scalar(void **st)
{
    (void)st;
    check_scan("avx512");
}
static void avx2_prep_matches_scalar(void **st)
{
    (void)st;
    check_prep("avx2");
}
static void avx512_prep_matches_scalar(void **st)
{
    (void)st;
    check_prep("avx512");
}

/* ---- the row layout ---- */

#define N 2000
#define DIM 37 /* odd: padded to 64 */
#define NQ 60
#define K 10

static hnsw *build_graph(metric_t m, float *base, int speed)
{
    hnsw_params p = {.M = 12, .ef_construction = 100, .seed = 1, .metric = m};
    hnsw_params_defaults(&p);
    hnsw *h = NULL;
    hf_err e;
    assert_int_equal(hnsw_new(&p, DIM, &h, &e), 0);
    assert_int_equal(hnsw_append(h, base, N, NULL, &e), 0);
    assert_int_equal(hnsw_permute_dims(h, &e), 0);
    assert_int_equal(hnsw_build(h, 0, 2, NULL, NULL, &e), 0);
    if (speed) {
        assert_int_equal(hnsw_rows_plan(h, 7, &e), 0);
        assert_int_equal(hnsw_rows_build(h, 2, &e), 0);
    }
    return h;
}

static hnsw *build_speed(metric_t m, float *base)
{
    return build_graph(m, base, 1);
}

/* Uniform vectors, every 97th base vector and the first query zero: a
 * zero vector is at cosine distance 1 from everything (metric_distance). */
static void make(float *base, float *q)
{
    unsigned seed = 17;
    for (size_t i = 0; i < N * DIM; i++)
        base[i] = (i / DIM) % 97 == 5 ? 0.0f : frand(&seed);
    for (size_t i = 0; i < NQ * DIM; i++)
        q[i] = i < DIM ? 0.0f : frand(&seed);
}

/* recall@K of the rows search against brute force; every answer's distance
 * must be the exact one */
static double rows_recall(const hnsw *h, const float *base, const float *q, size_t ef)
{
    hf_err e;
    hnsw_searcher *s = NULL;
    assert_int_equal(hnsw_searcher_new(h, 256, &s, &e), 0);
    size_t hits = 0;
    for (size_t i = 0; i < NQ; i++) {
        const float *qi = q + i * DIM;
        /* brute force on the user's vectors, in the user's ids */
        float gd[N];
        for (size_t j = 0; j < N; j++)
            gd[j] = metric_distance(h->p.metric, qi, base + j * DIM, DIM);
        float sorted[N];
        memcpy(sorted, gd, sizeof sorted);
        for (size_t a = 0; a < K; a++) /* partial selection: the K smallest first */
            for (size_t b = a + 1; b < N; b++)
                if (sorted[b] < sorted[a]) {
                    float t = sorted[a];
                    sorted[a] = sorted[b];
                    sorted[b] = t;
                }
        hnsw_hit out[K];
        size_t n = 0;
        hnsw_search(h, s, qi, K, ef, out, &n, NULL);
        assert_int_equal(n, K);
        for (size_t r = 0; r < n; r++) {
            assert_true(out[r].id < N);
            float want = gd[out[r].id];
            if (fabsf(out[r].d - want) > 1e-4f * (1 + fabsf(want)))
                fail_msg("answer %u: distance %g, exact %g", out[r].id, out[r].d, want);
            if (r)
                assert_true(out[r - 1].d <= out[r].d);
            if (out[r].d <= sorted[K - 1] + 1e-5f)
                hits++;
        }
    }
    hnsw_searcher_destroy(&s);
    return (double)hits / (NQ * K);
}

/* the classic path too: cosine ranks in squared L2 there as well */
static void rows_and_classic_answer_exactly_for_l2_and_cosine_with_zero_vectors(void **st)
{
    (void)st;
    float *base = malloc(N * DIM * sizeof(float)), *q = malloc(NQ * DIM * sizeof(float));
    make(base, q);
    metric_t ms[] = {METRIC_L2, METRIC_COSINE};
    for (int m = 0; m < 2; m++)
        for (int speed = 0; speed < 2; speed++) {
            hnsw *h = build_graph(ms[m], base, speed);
            assert_true(!speed || h->rows);
            double r = rows_recall(h, base, q, 128);
            if (r < 0.95)
                fail_msg("%s %s: recall@10 %.3f < 0.95", metric_name(ms[m]),
                         speed ? "rows" : "classic", r);
            hnsw_destroy(&h);
        }
    free(base);
    free(q);
}

/* Columns R e_i of a transform, as rotation_apply computes them. */
static double *columns(const rotation *r, size_t dim)
{
    size_t D = r->dpad;
    double *m = malloc(dim * D * sizeof(double));
    float *x = calloc(dim, sizeof(float)), *y = malloc(D * sizeof(float)),
          *tmp = malloc(rotation_scratch(r) * sizeof(float));
    for (size_t i = 0; i < dim; i++) {
        x[i] = 1;
        rotation_apply(r, x, dim, y, tmp);
        x[i] = 0;
        for (size_t t = 0; t < D; t++)
            m[i * D + t] = y[t];
    }
    free(x);
    free(y);
    free(tmp);
    return m;
}

/* Both kinds are orthogonal on the inputs they take (dim <= dpad,
 * zero-padded), for one block and for several, an odd dim among them; the
 * block kind spreads every input over every output coordinate. */
static void rotations_are_orthogonal(void **st)
{
    (void)st;
    const size_t dims[][2] = {{37, 64}, {256, 256}, {200, 256}, {831, 832}};
    for (size_t c = 0; c < sizeof dims / sizeof dims[0]; c++)
        for (unsigned rounds = 0; rounds <= ROTATION_ROUNDS; rounds += ROTATION_ROUNDS) {
            size_t dim = dims[c][0], D = dims[c][1];
            if (rounds == 0 && D > 256)
                continue; /* the dense kind's check is D^3 */
            rotation *r = NULL;
            hf_err e;
            assert_int_equal(rotation_plan(D, rounds, 5, &r, &e), 0);
            double *m = columns(r, dim);
            for (size_t i = 0; i < dim; i++)
                for (size_t j = i; j < dim; j++) {
                    double s = 0;
                    for (size_t t = 0; t < D; t++)
                        s += m[i * D + t] * m[j * D + t];
                    if (fabs(s - (i == j)) > 1e-4)
                        fail_msg("dim %zu, rounds %u: <R e%zu, R e%zu> = %g", dim, rounds, i, j, s);
                }
            if (rounds)
                for (size_t t = 0; t < D; t++)
                    assert_true(fabs(m[t]) > 1e-6); /* e0 reaches every coordinate */
            free(m);
            rotation_destroy(&r);
        }
}

/* The AVX-512 round gives the scalar reference's output (to float
 * rounding) for one block, several, and an odd number of them. */
static void avx512_rotation_round_matches_scalar(void **st)
{
    (void)st;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f"))
        skip();
    const size_t bs[] = {1, 4, 13};
    unsigned seed = 11;
    for (size_t c = 0; c < sizeof bs / sizeof bs[0]; c++) {
        size_t B = bs[c], D = 64 * B;
        rotation *r = NULL;
        hf_err e;
        assert_int_equal(rotation_plan(D, 1, 9, &r, &e), 0);
        float *a = malloc(D * sizeof(float)), *b = malloc(D * sizeof(float)),
              *tmp = malloc(D * sizeof(float));
        for (size_t i = 0; i < D; i++)
            a[i] = b[i] = frand(&seed) - 0.5f;
        rotation_round_scalar(r->signs, r->mix, B, a, tmp);
        rotation_round_avx512(r->signs, r->mix, B, b, tmp);
        for (size_t i = 0; i < D; i++)
            if (fabsf(a[i] - b[i]) > 1e-5f * (1 + fabsf(a[i])))
                fail_msg("B %zu, coordinate %zu: avx512 %g, scalar %g", B, i, b[i], a[i]);
        free(a);
        free(b);
        free(tmp);
        rotation_destroy(&r);
    }
}

/* What the loader checks: signs +-1, mixing matrices orthogonal. */
static void block_rotation_parameters_are_checked(void **st)
{
    (void)st;
    rotation *r = NULL, *g = NULL;
    hf_err e;
    assert_int_equal(rotation_plan(128, 2, 3, &r, &e), 0);
    assert_int_equal(rotation_from_blocks(128, 2, r->signs, r->mix, &g, &e), 0);
    rotation_destroy(&g);
    r->signs[7] = 0.5f;
    assert_int_not_equal(rotation_from_blocks(128, 2, r->signs, r->mix, &g, &e), 0);
    assert_non_null(strstr(e.msg, "sign 7"));
    r->signs[7] = 1;
    r->mix[5] = 2; /* 2 x 2 blocks: entry 1 of the second matrix */
    assert_int_not_equal(rotation_from_blocks(128, 2, r->signs, r->mix, &g, &e), 0);
    assert_non_null(strstr(e.msg, "mixing matrix 1"));
    r->mix[5] = NAN;
    assert_int_not_equal(rotation_from_blocks(128, 2, r->signs, r->mix, &g, &e), 0);
    assert_int_not_equal(rotation_from_blocks(96, 2, r->signs, r->mix, &g, &e), 0);
    assert_null(g);
    rotation_destroy(&r);
}

/* h written to a file and read back. */
static hnsw *save_and_load(const hnsw *h)
{
    char path[] = "/tmp/hf_test_rows_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
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
    unlink(path);
    return g;
}

/* An index written with a dense rotation (rows frame v1, before the block
 * kind) loads and is searched as well as one with the block kind. */
static void dense_rotation_indexes_still_search(void **st)
{
    (void)st;
    float *base = malloc(N * DIM * sizeof(float)), *q = malloc(NQ * DIM * sizeof(float));
    make(base, q);
    hnsw *h = build_graph(METRIC_L2, base, 0);
    hf_err e;
    rotation *r = NULL;
    assert_int_equal(rotation_plan(64, 0, 7, &r, &e), 0);
    assert_int_equal(hnsw_rows_adopt(h, r, &e), 0);
    hnsw *g = save_and_load(h);
    assert_int_equal(g->rot->rounds, 0);
    assert_memory_equal(g->rot->dense, h->rot->dense, 64 * 64 * sizeof(float));
    assert_int_equal(hnsw_rows_build(g, 2, &e), 0);
    double rec = rows_recall(g, base, q, 128);
    if (rec < 0.95)
        fail_msg("dense rotation: recall@10 %.3f < 0.95", rec);
    hnsw_destroy(&h);
    hnsw_destroy(&g);
    free(base);
    free(q);
}

static void rows_survive_save_load_and_renumbering(void **st)
{
    (void)st;
    float *base = malloc(N * DIM * sizeof(float)), *q = malloc(NQ * DIM * sizeof(float));
    make(base, q);
    hnsw *h = build_speed(METRIC_L2, base);
    assert_int_equal(hnsw_mark_deleted(h, 5, NULL), 0);
    hnsw *g = save_and_load(h);
    hf_err e;
    assert_non_null(g->rot);
    assert_null(g->rows); /* derived: built by whoever searches */
    assert_int_equal(g->rot->rounds, h->rot->rounds);
    size_t B = h->rot_dpad / ROTATION_BLOCK;
    assert_memory_equal(g->rot->signs, h->rot->signs, h->rot->rounds * h->rot_dpad * sizeof(float));
    assert_memory_equal(g->rot->mix, h->rot->mix, h->rot->rounds * B * B * sizeof(float));
    assert_int_equal(hnsw_reorder(g, &e), 0);
    assert_int_equal(hnsw_rows_build(g, 1, &e), 0);
    double r = rows_recall(g, base, q, 128);
    if (r < 0.95)
        fail_msg("reloaded, renumbered rows: recall@10 %.3f < 0.95", r);
    /* the tombstone is never an answer */
    hnsw_searcher *s = NULL;
    assert_int_equal(hnsw_searcher_new(g, 256, &s, &e), 0);
    hnsw_hit out[K];
    size_t n;
    hnsw_search(g, s, base + 5 * DIM, K, 64, out, &n, NULL);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(out[i].id, 5);
    hnsw_searcher_destroy(&s);
    hnsw_destroy(&h);
    hnsw_destroy(&g);
    free(base);
    free(q);
}

static void speed_layout_refuses_other_metrics(void **st)
{
    (void)st;
    hnsw_params p = {.M = 8, .metric = METRIC_IP};
    hnsw_params_defaults(&p);
    hnsw *h = NULL;
    hf_err e;
    assert_int_equal(hnsw_new(&p, 5, &h, &e), 0);
    assert_int_not_equal(hnsw_rows_plan(h, 1, &e), 0);
    rotation *r = NULL;
    assert_int_equal(rotation_plan(64, 1, 1, &r, &e), 0);
    assert_int_not_equal(hnsw_rows_adopt(h, r, &e), 0);
    rotation_destroy(&r);
    hnsw_destroy(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scalar_scan_sums_rq_over_set_bits),
        cmocka_unit_test(avx2_scan_matches_scalar),
        cmocka_unit_test(avx512_scan_matches_scalar),
        cmocka_unit_test(avx2_prep_matches_scalar),
        cmocka_unit_test(avx512_prep_matches_scalar),
        cmocka_unit_test(rows_and_classic_answer_exactly_for_l2_and_cosine_with_zero_vectors),
        cmocka_unit_test(rotations_are_orthogonal),
        cmocka_unit_test(block_rotation_parameters_are_checked),
        cmocka_unit_test(avx512_rotation_round_matches_scalar),
        cmocka_unit_test(dense_rotation_indexes_still_search),
        cmocka_unit_test(rows_survive_save_load_and_renumbering),
        cmocka_unit_test(speed_layout_refuses_other_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
