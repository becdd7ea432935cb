/*
 * nav.c - the navigation policy's model (nav.h): creation, the PCA
 * projection, binding to an index (the per-node rows the skip test reads),
 * ADSampling's rotation, and the model frame.
 *
 * The frame carries no per-node data: the rows are rebuilt from the index's
 * vectors when a policy is bound (n x 15 x dim multiply-adds, a fraction of
 * a second for 60k x 784), so a policy frame stays a few kilobytes and can
 * never disagree with the graph it sits in. The fingerprint says whether
 * that graph is the one the policy was trained on.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nav.h"
#include "pca.h"
#include "route.h"

static void mlp_free(nav_mlp *m)
{
    nn_seq_destroy(&m->seq);
}

static int mlp_new(nav_mlp *m, size_t f, nn_rng *rng, hf_err *e)
{
    m->f = f;
    nn_layer *l = NULL;
    if (nn_seq_new(&m->seq, e))
        return HF_ENOMEM;
    if (nn_linear_new(&l, f, NAV_HIDDEN, NN_INIT_HE, rng, e) || nn_seq_add(m->seq, &l, e) ||
        nn_act_new(&l, NN_RELU, e) || nn_seq_add(m->seq, &l, e) ||
        nn_linear_new(&l, NAV_HIDDEN, 1, NN_INIT_XAVIER, rng, e) || nn_seq_add(m->seq, &l, e))
        return HF_ENOMEM;
    return 0;
}

static void mlp_sync(nav_mlp *m)
{
    const nn_layer *a = m->seq->layers[0], *b = m->seq->layers[2];
    /* transposed (input-major): the search loop adds one input's column of
     * NAV_HIDDEN weights at a time, which vectorises */
    for (size_t j = 0; j < NAV_HIDDEN; j++)
        for (size_t i = 0; i < m->f; i++)
            m->w1[i * NAV_HIDDEN + j] = a->w->data[j * m->f + i];
    memcpy(m->b1, a->b->data, NAV_HIDDEN * sizeof(float));
    memcpy(m->w2, b->w->data, NAV_HIDDEN * sizeof(float));
    m->b2 = b->b->data[0];
}

void nav_sync(nav_policy *p)
{
    mlp_sync(&p->skip);
    mlp_sync(&p->stop);
}

void nav_destroy(nav_policy **self_p)
{
    if (!self_p || !*self_p)
        return;
    nav_policy *p = *self_p;
    mlp_free(&p->skip);
    mlp_free(&p->stop);
    nn_tensor_destroy(&p->mu);
    nn_tensor_destroy(&p->P);
    nn_tensor_destroy(&p->gmu);
    nn_tensor_destroy(&p->gP);
    nn_params_free(&p->params);
    free(p->rows);
    nn_memory_free(&p->mem);
    free(p);
    *self_p = NULL;
}

size_t nav_default_r(size_t dim)
{
    size_t r = dim >= 256 ? 31 : 15;
    return r < dim ? r : dim; /* more directions than dimensions would be zero */
}

int nav_new(size_t dim, metric_t metric, size_t r, uint64_t seed, nav_policy **out, hf_err *e)
{
    *out = NULL;
    if (dim == 0 || dim > (1u << 20))
        return hf_err_set(e, HF_EUSAGE, "nav: dimension %zu", dim);
    if (r == 0 || r > NAV_R_MAX)
        return hf_err_set(e, HF_EUSAGE, "nav: projection width %zu (1..%d)", r, NAV_R_MAX);
    nav_policy *p = calloc(1, sizeof *p);
    if (!p)
        return hf_err_set(e, HF_ENOMEM, "out of memory for the policy");
    p->dim = dim;
    p->metric = metric;
    p->r = r;
    p->row = (r + 1 + 15) / 16 * 16;
    p->ef_max = 256;
    p->dscale = 1;
    nn_params_init(&p->params);
    nn_rng rng;
    nn_rng_seed(&rng, seed);
    p->mu = nn_tensor_new(1, dim);
    p->P = nn_tensor_new(r, dim);
    p->gmu = nn_tensor_new(1, dim);
    p->gP = nn_tensor_new(r, dim);
    int rc = !p->mu || !p->P || !p->gmu || !p->gP
                 ? hf_err_set(e, HF_ENOMEM, "out of memory for the policy")
                 : 0;
    if (!rc)
        rc = mlp_new(&p->skip, NAV_SKIP_F, &rng, e);
    if (!rc)
        rc = mlp_new(&p->stop, NAV_STOP_F, &rng, e);
    if (!rc)
        rc = nn_params_add(&p->params, "", "mu", p->mu, p->gmu, e);
    if (!rc)
        rc = nn_params_add(&p->params, "", "P", p->P, p->gP, e);
    if (!rc)
        rc = nn_seq_params(p->skip.seq, "skip.", &p->params, e);
    if (!rc)
        rc = nn_seq_params(p->stop.seq, "stop.", &p->params, e);
    if (rc) {
        nav_destroy(&p);
        return rc;
    }
    nav_sync(p);
    *out = p;
    return 0;
}

double nav_fingerprint(const hnsw *h)
{
    double s = (double)h->n * 1e-3 + (double)h->dim;
    for (size_t i = 0; i < h->n; i++) {
        const float *v = hnsw_vec(h, (uint32_t)i);
        double t = 0;
        for (size_t j = 0; j < h->dim; j++)
            t += (double)v[j] * (double)((j % 7) + 1);
        s += t;
    }
    return s;
}

int nav_init_pca(nav_policy *p, const hnsw *h, size_t sample, uint64_t seed, hf_err *e)
{
    size_t d = p->dim, S = 0;
    if (d != h->dim)
        return hf_err_set(e, HF_EUSAGE, "nav: dimension %zu, index %zu", d, h->dim);
    uint32_t *ids = route_sample_ids(h, sample, seed, HNSW_NONE, &S);
    float *x = ids ? malloc(S * d * sizeof *x) : NULL;
    size_t R = p->r;
    float *V = malloc(d * R * sizeof *V);
    double l1 = 0;
    int rc = 0;
    if (!ids || !x || !V || S == 0)
        rc = hf_err_set(e, HF_ENOMEM, "out of memory for the policy's PCA");
    for (size_t i = 0; !rc && i < S; i++)
        memcpy(x + i * d, hnsw_vec(h, ids[i]), d * sizeof *x);
    if (!rc && pca_top(x, S, d, R, seed, p->mu->data, V, &l1))
        rc = hf_err_set(e, HF_ENOMEM, "out of memory for the policy's PCA");
    for (size_t a = 0; !rc && a < R; a++)
        for (size_t j = 0; j < d; j++)
            p->P->data[a * d + j] = V[j * R + a];
    if (!rc) {
        p->metric = h->p.metric;
        p->n = h->n;
        p->fingerprint = nav_fingerprint(h);
    }
    free(ids);
    free(x);
    free(V);
    return rc;
}

int nav_bind(nav_policy *p, const hnsw *h, hf_err *e)
{
    if (p->dim != h->dim)
        return hf_err_set(
            e, HF_EDATA, "the nav-policy was trained on %zu-dimensional vectors, the index has %zu",
            p->dim, h->dim);
    if (p->metric != h->p.metric)
        return hf_err_set(e, HF_EDATA, "the nav-policy was trained on a %s index, this one is %s",
                          metric_name(p->metric), metric_name(h->p.metric));
    if (!hnsw_l2_space(h))
        return hf_err_set(e, HF_EDATA, "a nav-policy needs an l2 or cosine index, not %s",
                          metric_name(h->p.metric));
    double fp = nav_fingerprint(h);
    if (p->n != h->n || fabs(fp - p->fingerprint) > 1e-6 * (fabs(fp) + 1))
        return hf_err_set(e, HF_EDATA,
                          "the nav-policy was trained on another index (%zu nodes, fingerprint "
                          "%.6g; this one %zu, %.6g)",
                          p->n, p->fingerprint, h->n, fp);
    free(p->rows);
    p->rows_n = 0;
    size_t d = h->dim, n = h->n, R = p->r;
    p->rows = hnsw_alloc_block(n * p->row * sizeof(float) + 64);
    float *xc = malloc(256 * d * sizeof *xc), *z = malloc(256 * R * sizeof *z);
    if (!p->rows || !xc || !z) {
        free(xc);
        free(z);
        return hf_err_set(e, HF_ENOMEM, "out of memory for the policy's node rows");
    }
    const float *mu = p->mu->data;
    for (size_t b0 = 0; b0 < n; b0 += 256) {
        size_t B = n - b0 < 256 ? n - b0 : 256;
        for (size_t i = 0; i < B; i++) {
            const float *v = hnsw_vec(h, (uint32_t)(b0 + i));
            for (size_t j = 0; j < d; j++)
                xc[i * d + j] = v[j] - mu[j];
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)R, (int)d, 1.0f, xc,
                    (int)d, p->P->data, (int)d, 0.0f, z, (int)R);
        for (size_t i = 0; i < B; i++) {
            float *row = p->rows + (b0 + i) * p->row;
            double all = 0, in = 0;
            for (size_t j = 0; j < d; j++)
                all += (double)xc[i * d + j] * xc[i * d + j];
            memset(row, 0, p->row * sizeof *row);
            for (size_t a = 0; a < R; a++) {
                row[a] = z[i * R + a];
                in += (double)row[a] * row[a];
            }
            row[R] = all > in ? (float)sqrt(all - in) : 0.0f; /* its root */
        }
    }
    free(xc);
    free(z);
    for (size_t a = 0; a < R; a++)
        p->pmu[a] = dist_best()->dot(p->P->data + a * d, mu, d);
    p->rows_n = n;
    return 0;
}

/* ------------------------------------------------------------ ADSampling */

void nav_adsamp_destroy(nav_adsamp **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->rot);
    free((*self_p)->vecs);
    free(*self_p);
    *self_p = NULL;
}

int nav_adsamp_new(const hnsw *h, float eps0, uint64_t seed, nav_adsamp **out, hf_err *e)
{
    *out = NULL;
    size_t d = h->dim, n = h->n;
    nav_adsamp *a = calloc(1, sizeof *a);
    float *V = malloc(d * d * sizeof *V);
    if (a) {
        a->dim = d;
        a->eps0 = eps0;
        a->rot = malloc(d * d * sizeof *a->rot);
        a->vecs = hnsw_alloc_block(n * d * sizeof(float) + 64);
    }
    if (!a || !V || !a->rot || !a->vecs) {
        free(V);
        nav_adsamp_destroy(&a);
        return hf_err_set(e, HF_ENOMEM, "out of memory for ADSampling's rotated vectors");
    }
    /* a random orthogonal matrix: Gram-Schmidt on Gaussian columns */
    nn_rng rg;
    nn_rng_seed(&rg, seed);
    for (size_t i = 0; i < d * d; i++)
        V[i] = nn_rng_normal(&rg);
    pca_orthonormalise(V, d, d);
    for (size_t r = 0; r < d; r++) /* row r of rot = column r of V */
        for (size_t j = 0; j < d; j++)
            a->rot[r * d + j] = V[j * d + r];
    free(V);
    for (size_t b0 = 0; b0 < n; b0 += 1024) {
        size_t B = n - b0 < 1024 ? n - b0 : 1024;
        for (size_t i = 0; i < B; i++)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)d, (int)d, 1.0f, a->rot, (int)d,
                        hnsw_vec(h, (uint32_t)(b0 + i)), 1, 0.0f, a->vecs + (b0 + i) * d, 1);
    }
    *out = a;
    return 0;
}

/* ------------------------------------------------------------ the frame */

float nav_stop_threshold(const nav_policy *p, double recall, size_t *ef)
{
    if (p->ncal == 0) {
        *ef = p->ef_max;
        return (float)recall;
    }
    size_t i = 0;
    while (i + 1 < p->ncal && p->cal_r[i] < recall - 1e-6) /* cal_r are floats */
        i++;
    *ef = p->cal_ef[i];
    return p->cal_p[i];
}

static void pack_f32_array(msgpack_packer *pk, const char *key, const float *v, size_t n)
{
    msgpack_pack_str(pk, strlen(key));
    msgpack_pack_str_body(pk, key, strlen(key));
    msgpack_pack_array(pk, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        msgpack_pack_double(pk, v[i]);
}

int nav_pack(const nav_policy *p, const nn_extra *extra, msgpack_sbuffer *sb, hf_err *e)
{
    nn_hparam hp[] = {{"dim", (double)p->dim},           {"r", (double)p->r},
                      {"metric", (double)p->metric},     {"n", (double)p->n},
                      {"skip_logit", p->skip_logit},     {"dscale", p->dscale},
                      {"ef_max", (double)p->ef_max},     {"ppo", p->ppo ? 1 : 0},
                      {"fallback", p->fallback ? 1 : 0}, {"fingerprint", p->fingerprint}};
    msgpack_sbuffer xs;
    msgpack_sbuffer_init(&xs);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &xs, msgpack_sbuffer_write);
    pack_f32_array(&pk, "cal_r", p->cal_r, p->ncal);
    pack_f32_array(&pk, "cal_p", p->cal_p, p->ncal);
    msgpack_pack_str(&pk, 6);
    msgpack_pack_str_body(&pk, "cal_ef", 6);
    msgpack_pack_array(&pk, (uint32_t)p->ncal);
    for (size_t i = 0; i < p->ncal; i++)
        msgpack_pack_uint32(&pk, p->cal_ef[i]);
    msgpack_pack_str(&pk, 11);
    msgpack_pack_str_body(&pk, "metric_name", 11);
    const char *mn = metric_name(p->metric);
    msgpack_pack_str(&pk, strlen(mn));
    msgpack_pack_str_body(&pk, mn, strlen(mn));
    uint32_t mem = nn_memory_pack(&p->mem, &pk);
    if (extra && extra->len)
        msgpack_sbuffer_write(&xs, extra->data, extra->len);
    nn_extra all = {xs.data, xs.size, 4 + mem + (extra ? extra->pairs : 0)};
    int rc =
        nn_model_pack_extra(sb, NAV_MODEL_KIND, hp, sizeof hp / sizeof hp[0], &all, &p->params, e);
    msgpack_sbuffer_destroy(&xs);
    return rc;
}

int nav_is_frame(const msgpack_object *obj)
{
    return nn_model_is_kind(obj, NAV_MODEL_KIND);
}

static int unpack_f32_array(const msgpack_object *obj, const char *key, float *v, size_t *n,
                            hf_err *e)
{
    const msgpack_object *a = nn_model_field(obj, key);
    if (!a || a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size > NAV_MAX_CAL)
        return hf_err_set(e, HF_EDATA, "nav-policy model: \"%s\" missing or longer than %d", key,
                          NAV_MAX_CAL);
    for (uint32_t i = 0; i < a->via.array.size; i++) {
        const msgpack_object *x = &a->via.array.ptr[i];
        double d = x->type == MSGPACK_OBJECT_FLOAT64 || x->type == MSGPACK_OBJECT_FLOAT32
                       ? x->via.f64
                   : x->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (double)x->via.u64
                                                                : NAN;
        if (!(d >= 0 && d <= 1))
            return hf_err_set(e, HF_EDATA, "nav-policy model: %s[%u] is not in [0, 1]", key, i);
        v[i] = (float)d;
    }
    *n = a->via.array.size;
    return 0;
}

int nav_unpack(const msgpack_object *obj, nav_policy **out, hf_err *e)
{
    *out = NULL;
    const char *keys[] = {"dim",    "metric", "n",        "skip_logit",  "dscale",
                          "ef_max", "ppo",    "fallback", "fingerprint", "r"};
    double v[10];
    for (size_t i = 0; i < 10; i++) {
        int rc = nn_model_hparam(obj, keys[i], &v[i], e);
        if (rc)
            return rc;
        if (!isfinite(v[i]))
            return hf_err_set(e, HF_EDATA, "nav-policy model: %s is not finite", keys[i]);
    }
    if (!(v[0] >= 1 && v[0] <= (1 << 20) && v[0] == floor(v[0])))
        return hf_err_set(e, HF_EDATA, "nav-policy model: bad dim %g", v[0]);
    if (!(v[1] >= 0 && v[1] <= METRIC_L1 && v[1] == floor(v[1])))
        return hf_err_set(e, HF_EDATA, "nav-policy model: bad metric %g", v[1]);
    if (!(v[2] >= 0 && v[2] <= 4294967295.0 && v[5] >= 1 && v[5] <= 1e6 && v[4] > 0))
        return hf_err_set(e, HF_EDATA, "nav-policy model: bad n, ef_max or dscale");
    nav_policy *p = NULL;
    if (!(v[9] >= 1 && v[9] <= NAV_R_MAX && v[9] == floor(v[9])))
        return hf_err_set(e, HF_EDATA, "nav-policy model: bad r %g (1..%d)", v[9], NAV_R_MAX);
    int rc = nav_new((size_t)v[0], (metric_t)v[1], (size_t)v[9], 1, &p, e);
    if (!rc)
        rc = nn_model_unpack_params(obj, NAV_MODEL_KIND, &p->params, e);
    size_t nr = 0, np = 0;
    if (!rc)
        rc = unpack_f32_array(obj, "cal_r", p->cal_r, &nr, e);
    if (!rc)
        rc = unpack_f32_array(obj, "cal_p", p->cal_p, &np, e);
    if (!rc && nr != np)
        rc = hf_err_set(e, HF_EDATA, "nav-policy model: %zu cal_r but %zu cal_p", nr, np);
    const msgpack_object *ce = rc ? NULL : nn_model_field(obj, "cal_ef");
    if (!rc && (!ce || ce->type != MSGPACK_OBJECT_ARRAY || ce->via.array.size != nr))
        rc = hf_err_set(e, HF_EDATA, "nav-policy model: \"cal_ef\" missing or not %zu long", nr);
    for (uint32_t i = 0; !rc && i < nr; i++) {
        const msgpack_object *x = &ce->via.array.ptr[i];
        if (x->type != MSGPACK_OBJECT_POSITIVE_INTEGER || x->via.u64 < 1 || x->via.u64 > 1000000)
            rc = hf_err_set(e, HF_EDATA, "nav-policy model: cal_ef[%u] is not a beam width", i);
        else
            p->cal_ef[i] = (uint32_t)x->via.u64;
    }
    for (size_t i = 1; !rc && i < nr; i++)
        if (!(p->cal_r[i] > p->cal_r[i - 1]))
            rc = hf_err_set(e, HF_EDATA, "nav-policy model: cal_r is not increasing");
    for (size_t i = 0; !rc && i < nn_tensor_len(p->P); i++)
        if (!isfinite(p->P->data[i]))
            rc = hf_err_set(e, HF_EDATA, "nav-policy model: P holds a non-finite value");
    if (!rc)
        rc = nn_memory_unpack(obj, "nav-policy model",
                              nav_mlp_scalars(&p->skip) + nav_mlp_scalars(&p->stop), p->dim,
                              &p->mem, e);
    if (rc) {
        nav_destroy(&p);
        return rc;
    }
    p->ncal = nr;
    p->n = (size_t)v[2];
    p->skip_logit = (float)v[3];
    p->dscale = (float)v[4];
    p->ef_max = (size_t)v[5];
    p->ppo = v[6] != 0;
    p->fallback = v[7] != 0;
    p->fingerprint = v[8];
    nav_sync(p);
    *out = p;
    return 0;
}
