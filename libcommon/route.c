/*
 * route.c - the layer router (route.h): candidates, PCA initialisation,
 * routing, training and the model frame.
 *
 * Training is softmax cross-entropy over the C + 1 keys against the key
 * whose search measured cheapest for the query (layer-route makes the
 * labels); the products run on OpenBLAS sgemm, the gradients are written
 * out by hand (z = (x - mu) W^T, logits = z K^T + b). Everything is
 * deterministic for a seed: batches come from nn_rng, BLAS sums in a fixed
 * order for a fixed thread count.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "knn.h"
#include "pca.h"
#include "route.h"

void route_destroy(route_model **self_p)
{
    if (!self_p || !*self_p)
        return;
    route_model *m = *self_p;
    free(m->cand);
    free(m->cand_int);
    free(m->wmu);
    nn_tensor_destroy(&m->mu);
    nn_tensor_destroy(&m->W);
    nn_tensor_destroy(&m->K);
    nn_tensor_destroy(&m->b);
    nn_tensor_destroy(&m->gW);
    nn_tensor_destroy(&m->gK);
    nn_tensor_destroy(&m->gb);
    nn_tensor_destroy(&m->gmu);
    nn_params_free(&m->params);
    nn_memory_free(&m->mem);
    free(m);
    *self_p = NULL;
}

int route_new(size_t dim, size_t r, size_t C, const uint32_t *cand, route_model **out, hf_err *e)
{
    *out = NULL;
    if (dim == 0 || r == 0 || C == 0 || C > ROUTE_MAX_CAND)
        return hf_err_set(e, HF_EUSAGE, "router: bad shape (dim %zu, r %zu, %zu candidates)", dim,
                          r, C);
    route_model *m = calloc(1, sizeof *m);
    if (!m)
        return hf_err_set(e, HF_ENOMEM, "out of memory for the router");
    m->dim = dim;
    m->r = r;
    m->C = C;
    m->cand = malloc(C * sizeof *m->cand);
    m->cand_int = malloc(C * sizeof *m->cand_int);
    m->wmu = calloc(r, sizeof *m->wmu);
    m->mu = nn_tensor_new(1, dim);
    m->W = nn_tensor_new(r, dim);
    m->K = nn_tensor_new(C + 1, r);
    m->b = nn_tensor_new(1, C + 1);
    m->gW = nn_tensor_new(r, dim);
    m->gK = nn_tensor_new(C + 1, r);
    m->gb = nn_tensor_new(1, C + 1);
    m->gmu = nn_tensor_new(1, dim);
    nn_params_init(&m->params);
    int bad = !m->cand || !m->cand_int || !m->wmu || !m->mu || !m->W || !m->K || !m->b || !m->gW ||
              !m->gK || !m->gb || !m->gmu;
    if (!bad) {
        memcpy(m->cand, cand, C * sizeof *cand);
        memcpy(m->cand_int, cand, C * sizeof *cand);
        /* mu is fixed (never trained): stored so a reloaded router routes the same */
        bad = nn_params_add(&m->params, "", "mu", m->mu, m->gmu, e) ||
              nn_params_add(&m->params, "", "W", m->W, m->gW, e) ||
              nn_params_add(&m->params, "", "K", m->K, m->gK, e) ||
              nn_params_add(&m->params, "", "b", m->b, m->gb, e);
    }
    if (bad) {
        route_destroy(&m);
        return hf_err_set(e, HF_ENOMEM, "out of memory for the router");
    }
    *out = m;
    return 0;
}

/* W mu, kept beside W so a query's code costs one pass over q */
static void refresh(route_model *m)
{
    const dist_kernels *k = dist_best();
    for (size_t a = 0; a < m->r; a++)
        m->wmu[a] = k->dot(m->W->data + a * m->dim, m->mu->data, m->dim);
}

double route_cost(const route_model *m)
{
    return ((double)m->r * (double)m->dim + (double)(m->C + 1) * (double)m->r) / (double)m->dim +
           (m->rerank > 1 ? (double)m->rerank : 0);
}

int route_copy(const route_model *m, route_model **out, hf_err *e)
{
    int rc = route_new(m->dim, m->r, m->C, m->cand, out, e);
    if (rc)
        return rc;
    route_model *c = *out;
    memcpy(c->cand_int, m->cand_int, m->C * sizeof *c->cand_int);
    memcpy(c->wmu, m->wmu, m->r * sizeof *c->wmu);
    const nn_tensor *from[] = {m->mu, m->W, m->K, m->b};
    nn_tensor *to[] = {c->mu, c->W, c->K, c->b};
    for (size_t i = 0; i < 4; i++)
        memcpy(to[i]->data, from[i]->data, nn_tensor_len(from[i]) * sizeof(float));
    c->medoid = m->medoid;
    c->fallback = m->fallback;
    c->rerank = m->rerank;
    return 0;
}

uint32_t *route_sample_ids(const hnsw *h, size_t want, uint64_t seed, uint32_t exclude, size_t *got)
{
    uint32_t *all = malloc((h->n ? h->n : 1) * sizeof *all);
    if (!all)
        return NULL;
    size_t live = 0;
    for (size_t i = 0; i < h->n; i++)
        if (!h->deleted[i] && i != exclude)
            all[live++] = (uint32_t)i;
    nn_rng r;
    nn_rng_seed(&r, seed);
    size_t n = want < live ? want : live;
    for (size_t i = 0; i < n; i++) {
        size_t j = i + (size_t)nn_rng_below(&r, live - i);
        uint32_t t = all[i];
        all[i] = all[j];
        all[j] = t;
    }
    *got = n;
    return all;
}

static void gather(const hnsw *h, const uint32_t *ids, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++)
        memcpy(out + i * h->dim, hnsw_vec(h, ids[i]), h->dim * sizeof *out);
}

int route_pick_candidates(const hnsw *h, size_t C, size_t sample, int iters, uint64_t seed,
                          uint32_t **out, size_t *nc, hf_err *e)
{
    *out = NULL;
    *nc = 0;
    size_t d = h->dim, S = 0;
    uint32_t *ids = route_sample_ids(h, sample > C ? sample : C, seed, HNSW_NONE, &S);
    if (!ids)
        return hf_err_set(e, HF_ENOMEM, "out of memory picking candidates");
    if (C > S)
        C = S;
    float *x = malloc(S * d * sizeof *x), *cent = malloc(C * d * sizeof *cent);
    double *acc = malloc(C * d * sizeof *acc);
    size_t *cnt = malloc(C * sizeof *cnt);
    uint32_t *asg = malloc(S * sizeof *asg), *med = malloc(C * sizeof *med);
    float *dd = malloc((S > C ? S : C) * sizeof *dd);
    int rc = 0;
    if (!x || !cent || !acc || !cnt || !asg || !med || !dd) {
        rc = hf_err_set(e, HF_ENOMEM, "out of memory picking candidates");
        goto out;
    }
    gather(h, ids, S, x);
    memcpy(cent, x, C * d * sizeof *cent); /* the first C of a random sample */
    /* Lloyd rounds in L2 (for cosine the stored vectors are unit length) */
    for (int it = 0; it < iters && rc == 0; it++) {
        knn_base b = {.rows = cent, .stride = d, .n = C, .dim = d, .metric = METRIC_L2};
        rc = knn_exact(&b, x, S, 1, asg, dd, e);
        if (rc)
            break;
        memset(acc, 0, C * d * sizeof *acc);
        memset(cnt, 0, C * sizeof *cnt);
        for (size_t i = 0; i < S; i++) {
            cnt[asg[i]]++;
            for (size_t j = 0; j < d; j++)
                acc[asg[i] * d + j] += x[i * d + j];
        }
        for (size_t c = 0; c < C; c++) {
            if (cnt[c] == 0) { /* empty: restart at a sample point */
                memcpy(cent + c * d, x + ((c * 7919 + (size_t)it) % S) * d, d * sizeof *cent);
                continue;
            }
            for (size_t j = 0; j < d; j++)
                cent[c * d + j] = (float)(acc[c * d + j] / (double)cnt[c]);
        }
    }
    if (rc)
        goto out;
    /* medoid = the cluster's own member nearest its centroid: distinct by
     * construction (the node nearest a centroid is often a hub shared by
     * many centroids: half of 256 coincided on the text set) */
    {
        knn_base b = {.rows = cent, .stride = d, .n = C, .dim = d, .metric = METRIC_L2};
        rc = knn_exact(&b, x, S, 1, asg, dd, e);
        if (rc)
            goto out;
    }
    float *best = malloc(C * sizeof *best);
    if (!best) {
        rc = hf_err_set(e, HF_ENOMEM, "out of memory picking candidates");
        goto out;
    }
    for (size_t c = 0; c < C; c++) {
        best[c] = INFINITY;
        med[c] = HNSW_NONE;
    }
    for (size_t i = 0; i < S; i++)
        if (dd[i] < best[asg[i]]) {
            best[asg[i]] = dd[i];
            med[asg[i]] = ids[i];
        }
    free(best);
    size_t k = 0;
    for (size_t c = 0; c < C; c++)
        if (med[c] != HNSW_NONE)
            med[k++] = med[c];
    *out = med;
    *nc = k;
    med = NULL;
out:
    free(ids);
    free(x);
    free(cent);
    free(acc);
    free(cnt);
    free(asg);
    free(med);
    free(dd);
    return rc;
}

int route_init_pca(route_model *m, const hnsw *h, size_t sample, uint64_t seed, hf_err *e)
{
    size_t d = m->dim, r = m->r, S = 0;
    if (d != h->dim)
        return hf_err_set(e, HF_EUSAGE, "router: dimension %zu, index %zu", d, h->dim);
    uint32_t *ids = route_sample_ids(h, sample, seed, HNSW_NONE, &S);
    float *x = ids ? malloc(S * d * sizeof *x) : NULL;
    float *V = malloc(d * r * sizeof *V);
    double l1 = 0;
    int rc = 0;
    if (!ids || !x || !V || S == 0) {
        rc = hf_err_set(e, HF_ENOMEM, "out of memory for the router's PCA");
        goto out;
    }
    gather(h, ids, S, x);
    float *mu = m->mu->data;
    if (pca_top(x, S, d, r, seed, mu, V, &l1)) {
        rc = hf_err_set(e, HF_ENOMEM, "out of memory for the router's PCA");
        goto out;
    }
    /* scale so z has about unit spread */
    float sc = l1 > 0 ? (float)(1.0 / sqrt(l1)) : 1.0f;
    for (size_t a = 0; a < r; a++)
        for (size_t j = 0; j < d; j++)
            m->W->data[a * d + j] = V[j * r + a] * sc;
    /* K_c = W (x_c - mu), b_c = -|K_c|^2 / 2: argmax = nearest in z space */
    double worst = 0;
    for (size_t c = 0; c < m->C; c++) {
        const float *v = hnsw_vec(h, m->cand_int[c]);
        float *k = nn_row(m->K, c);
        double nk = 0;
        for (size_t a = 0; a < r; a++) {
            double s = 0;
            for (size_t j = 0; j < d; j++)
                s += (double)m->W->data[a * d + j] * (v[j] - mu[j]);
            k[a] = (float)s;
            nk += s * s;
        }
        m->b->data[c] = (float)(-nk / 2);
        worst = -nk / 2 < worst ? -nk / 2 : worst;
    }
    /* the classic key starts below every candidate; training can raise it */
    memset(nn_row(m->K, m->C), 0, r * sizeof(float));
    m->b->data[m->C] = (float)(worst - 1.0);
    refresh(m);
out:
    free(ids);
    free(x);
    free(V);
    return rc;
}

static void encode(const route_model *m, const float *q, float *z)
{
    const dist_kernels *k = dist_best();
    for (size_t a = 0; a < m->r; a++)
        z[a] = k->dot(m->W->data + a * m->dim, q, m->dim) - m->wmu[a];
}

/* Key c's logit for the code z. */
static float logit(const route_model *m, size_t c, const float *z)
{
    const float *k = nn_row(m->K, c);
    float l = m->b->data[c];
    for (size_t a = 0; a < m->r; a++)
        l += k[a] * z[a];
    return l;
}

/* The exactly nearest of n candidates (indexes into cand; all C when idx
 * is NULL), -1 when n is 0. */
static ptrdiff_t nearest_among(const route_model *m, const hnsw *h, const float *q,
                               const size_t *idx, size_t n)
{
    ptrdiff_t best = -1;
    float bd = INFINITY;
    for (size_t i = 0; i < n; i++) {
        size_t c = idx ? idx[i] : i;
        float d = dist_finish(h->p.metric, h->kern(q, hnsw_vec(h, m->cand_int[c]), h->dim));
        if (d < bd) {
            bd = d;
            best = (ptrdiff_t)c;
        }
    }
    return best;
}

size_t route_pick(const route_model *m, const float *q, float *z)
{
    encode(m, q, z);
    size_t best = 0;
    float bl = -INFINITY;
    for (size_t c = 0; c <= m->C; c++) {
        float l = logit(m, c, z);
        if (l > bl) {
            bl = l;
            best = c;
        }
    }
    return best;
}

size_t route_pick_rerank(const route_model *m, const hnsw *h, const float *q, float *z)
{
    size_t T = m->rerank < 1 ? 1 : m->rerank > ROUTE_MAX_RERANK ? ROUTE_MAX_RERANK : m->rerank;
    if (T == 1)
        return route_pick(m, q, z);
    encode(m, q, z);
    size_t top[ROUTE_MAX_RERANK] = {0}, nt = 0; /* highest logits first */
    float tl[ROUTE_MAX_RERANK] = {0};
    for (size_t c = 0; c <= m->C; c++) {
        float l = logit(m, c, z);
        if (nt == T && l <= tl[nt - 1])
            continue;
        size_t i = nt < T ? nt++ : nt - 1;
        for (; i > 0 && tl[i - 1] < l; i--) {
            tl[i] = tl[i - 1];
            top[i] = top[i - 1];
        }
        tl[i] = l;
        top[i] = c;
    }
    if (top[0] == m->C)
        return m->C;
    size_t cands = 0; /* the candidates among them (the classic key is not one) */
    for (size_t i = 0; i < nt; i++)
        if (top[i] != m->C)
            top[cands++] = top[i];
    return (size_t)nearest_among(m, h, q, top, cands);
}

size_t route_nearest(const route_model *m, const hnsw *h, const float *q)
{
    ptrdiff_t c = nearest_among(m, h, q, NULL, m->C);
    return c < 0 ? 0 : (size_t)c;
}

/* Soft targets: per query, each tried key weighs exp(-(cost - cheapest) / tau),
 * normalised. *out (caller frees) is nq x nt. */
static int soft_targets(const route_model *m, size_t nq, const uint32_t *keys, const float *costs,
                        size_t nt, float tau, float **out, hf_err *e)
{
    float *tgt = malloc(nq * nt * sizeof *tgt + 1);
    if (!tgt)
        return hf_err_set(e, HF_ENOMEM, "out of memory training the router");
    for (size_t i = 0; i < nq; i++) {
        float cmin = INFINITY;
        for (size_t t = 0; t < nt; t++)
            if (keys[i * nt + t] != UINT32_MAX) {
                if (keys[i * nt + t] > m->C) {
                    free(tgt);
                    return hf_err_set(e, HF_EUSAGE, "router key %u out of range", keys[i * nt + t]);
                }
                cmin = costs[i * nt + t] < cmin ? costs[i * nt + t] : cmin;
            }
        double sum = 0;
        for (size_t t = 0; t < nt; t++) {
            float w =
                keys[i * nt + t] == UINT32_MAX ? 0.0f : expf(-(costs[i * nt + t] - cmin) / tau);
            tgt[i * nt + t] = w;
            sum += w;
        }
        for (size_t t = 0; t < nt; t++)
            tgt[i * nt + t] = sum > 0 ? (float)(tgt[i * nt + t] / sum) : 0.0f;
    }
    *out = tgt;
    return 0;
}

/* Scratch of one batch of B queries. */
typedef struct batch {
    size_t B;
    float *xb, *z, *lg, *dz;
} batch;

static int batch_new(batch *bt, const route_model *m, size_t B, hf_err *e)
{
    bt->B = B;
    bt->xb = malloc(B * m->dim * sizeof *bt->xb);
    bt->z = malloc(B * m->r * sizeof *bt->z);
    bt->lg = malloc(B * (m->C + 1) * sizeof *bt->lg);
    bt->dz = malloc(B * m->r * sizeof *bt->dz);
    if (!bt->xb || !bt->z || !bt->lg || !bt->dz)
        return hf_err_set(e, HF_ENOMEM, "out of memory training the router");
    return 0;
}

static void batch_free(batch *bt)
{
    free(bt->xb);
    free(bt->z);
    free(bt->lg);
    free(bt->dz);
}

/* Mean cross-entropy of the queries rows[0..B) and its gradient in gW, gK,
 * gb (overwritten). */
static double batch_grad(route_model *m, batch *bt, const float *q, const uint32_t *rows,
                         const uint32_t *keys, const float *tgt, size_t nt)
{
    size_t d = m->dim, r = m->r, K1 = m->C + 1, B = bt->B;
    float *xb = bt->xb, *z = bt->z, *lg = bt->lg, *dz = bt->dz;
    for (size_t i = 0; i < B; i++)
        for (size_t j = 0; j < d; j++)
            xb[i * d + j] = q[(size_t)rows[i] * d + j] - m->mu->data[j];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)r, (int)d, 1.0f, xb, (int)d,
                m->W->data, (int)d, 0.0f, z, (int)r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)K1, (int)r, 1.0f, z, (int)r,
                m->K->data, (int)r, 0.0f, lg, (int)K1);
    double bl = 0;
    for (size_t i = 0; i < B; i++) {
        float *l = lg + i * K1, mx = -INFINITY;
        for (size_t c = 0; c < K1; c++) {
            l[c] += m->b->data[c];
            mx = l[c] > mx ? l[c] : mx;
        }
        double se = 0;
        for (size_t c = 0; c < K1; c++) {
            l[c] = expf(l[c] - mx);
            se += l[c];
        }
        const uint32_t *ky = keys + (size_t)rows[i] * nt;
        const float *ty = tgt + (size_t)rows[i] * nt;
        for (size_t t = 0; t < nt; t++)
            if (ky[t] != UINT32_MAX && ty[t] > 0)
                bl += -ty[t] * log(l[ky[t]] / se + 1e-30);
        /* dL/dlogit = (softmax - target) / B */
        for (size_t c = 0; c < K1; c++)
            l[c] = (float)(l[c] / se) / (float)B;
        for (size_t t = 0; t < nt; t++)
            if (ky[t] != UINT32_MAX)
                l[ky[t]] -= ty[t] / (float)B;
    }
    memset(m->gb->data, 0, K1 * sizeof(float));
    for (size_t i = 0; i < B; i++)
        for (size_t c = 0; c < K1; c++)
            m->gb->data[c] += lg[i * K1 + c];
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K1, (int)r, (int)B, 1.0f, lg, (int)K1,
                z, (int)r, 0.0f, m->gK->data, (int)r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B, (int)r, (int)K1, 1.0f, lg,
                (int)K1, m->K->data, (int)r, 0.0f, dz, (int)r);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)r, (int)d, (int)B, 1.0f, dz, (int)r,
                xb, (int)d, 0.0f, m->gW->data, (int)d);
    return bl / (double)B;
}

int route_trainable(route_model *m, nn_params *tp, hf_err *e)
{
    nn_params_init(tp);
    if (nn_params_add(tp, "", "W", m->W, m->gW, e) || nn_params_add(tp, "", "K", m->K, m->gK, e) ||
        nn_params_add(tp, "", "b", m->b, m->gb, e)) {
        nn_params_free(tp);
        return e && e->code ? e->code : HF_ENOMEM;
    }
    return 0;
}

int route_train(route_model *m, const float *q, size_t nq, const uint32_t *keys, const float *costs,
                size_t nt, float tau, size_t epochs, float lr, uint64_t seed, float *final_loss,
                hf_err *e)
{
    return route_train_ewc(m, q, nq, keys, costs, nt, tau, epochs, lr, seed, NULL, 0, final_loss,
                           e);
}

int route_train_ewc(route_model *m, const float *q, size_t nq, const uint32_t *keys,
                    const float *costs, size_t nt, float tau, size_t epochs, float lr,
                    uint64_t seed, const nn_ewc *ewc, float lambda, float *final_loss, hf_err *e)
{
    size_t B = 256;
    *final_loss = 0;
    if (nq == 0 || epochs == 0)
        return 0;
    if (B > nq)
        B = nq;
    batch bt = {0};
    float *tgt = NULL;
    uint32_t *order = malloc(nq * sizeof *order);
    nn_adam *opt = NULL;
    nn_params tp;
    nn_params_init(&tp);
    int rc = !order ? hf_err_set(e, HF_ENOMEM, "out of memory training the router") : 0;
    if (!rc)
        rc = batch_new(&bt, m, B, e);
    if (!rc)
        rc = soft_targets(m, nq, keys, costs, nt, tau, &tgt, e);
    /* Adam over W, K, b (mu has no gradient and is left out) */
    if (!rc)
        rc = route_trainable(m, &tp, e);
    if (!rc)
        rc = nn_adam_new(&opt, &tp, nn_adam_defaults(), e);
    nn_rng rg;
    nn_rng_seed(&rg, seed);
    for (size_t i = 0; !rc && i < nq; i++)
        order[i] = (uint32_t)i;
    double eloss = 0;
    for (size_t ep = 0; ep < epochs && rc == 0; ep++) {
        for (size_t i = nq - 1; i > 0; i--) {
            size_t j = (size_t)nn_rng_below(&rg, i + 1);
            uint32_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        eloss = 0;
        size_t nb = 0;
        for (size_t s0 = 0; s0 + B <= nq && rc == 0; s0 += B, nb++) {
            eloss += batch_grad(m, &bt, q, order + s0, keys, tgt, nt);
            float pen = 0;
            if (ewc && lambda > 0)
                rc = nn_ewc_penalty(ewc, &tp, lambda, &pen, e);
            if (!rc)
                rc = nn_adam_step(opt, &tp, lr, e);
        }
        eloss /= nb ? (double)nb : 1.0;
    }
    *final_loss = (float)eloss;
    refresh(m);
    nn_params_free(&tp);
    nn_adam_destroy(&opt);
    batch_free(&bt);
    free(tgt);
    free(order);
    return rc;
}

int route_fisher(route_model *m, const float *q, size_t nq, const uint32_t *keys,
                 const float *costs, size_t nt, float tau, uint64_t seed, nn_ewc *w, hf_err *e)
{
    if (nq == 0)
        return 0;
    batch bt = {0};
    float *tgt = NULL;
    nn_params tp;
    nn_params_init(&tp);
    int rc = batch_new(&bt, m, 1, e);
    if (!rc)
        rc = soft_targets(m, nq, keys, costs, nt, tau, &tgt, e);
    if (!rc)
        rc = route_trainable(m, &tp, e);
    nn_rng rg;
    nn_rng_seed(&rg, seed);
    size_t take = nq < ROUTE_FISHER_SAMPLES ? nq : ROUTE_FISHER_SAMPLES;
    for (size_t s = 0; !rc && s < take; s++) {
        uint32_t row = (uint32_t)(take == nq ? s : (size_t)nn_rng_below(&rg, nq));
        batch_grad(m, &bt, q, &row, keys, tgt, nt);
        rc = nn_ewc_accumulate(w, &tp, e);
    }
    if (!rc)
        rc = nn_ewc_consolidate(w, &tp, e);
    nn_params_free(&tp);
    batch_free(&bt);
    free(tgt);
    return rc;
}

int route_bind(route_model *m, const hnsw *h, hf_err *e)
{
    if (m->dim != h->dim)
        return hf_err_set(e, HF_EDATA, "layer-router model is for dimension %zu, the index has %zu",
                          m->dim, h->dim);
    uint32_t *inv = NULL;
    if (h->ext_id) {
        inv = malloc(h->n * sizeof *inv);
        if (!inv)
            return hf_err_set(e, HF_ENOMEM, "out of memory binding the router");
        for (size_t i = 0; i < h->n; i++)
            inv[h->ext_id[i]] = (uint32_t)i;
    }
    for (size_t c = 0; c < m->C; c++) {
        if (m->cand[c] >= h->n) {
            free(inv);
            return hf_err_set(e, HF_EDATA,
                              "layer-router candidate %u is not a node of the index (%zu nodes)",
                              m->cand[c], h->n);
        }
        m->cand_int[c] = inv ? inv[m->cand[c]] : m->cand[c];
        if (h->deleted[m->cand_int[c]]) {
            free(inv);
            return hf_err_set(e, HF_EDATA, "layer-router candidate %u is a deleted node",
                              m->cand[c]);
        }
    }
    free(inv);
    return 0;
}

int route_pack(const route_model *m, const nn_extra *extra, msgpack_sbuffer *sb, hf_err *e)
{
    nn_hparam hp[] = {{"dim", (double)m->dim},           {"r", (double)m->r},
                      {"ncand", (double)m->C},           {"medoid", (double)m->medoid},
                      {"fallback", m->fallback ? 1 : 0}, {"rerank", m->rerank > 1 ? m->rerank : 1}};
    msgpack_sbuffer xs;
    msgpack_sbuffer_init(&xs);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &xs, msgpack_sbuffer_write);
    msgpack_pack_str(&pk, 10);
    msgpack_pack_str_body(&pk, "candidates", 10);
    msgpack_pack_bin(&pk, m->C * sizeof(uint32_t));
    msgpack_pack_bin_body(&pk, m->cand, m->C * sizeof(uint32_t));
    uint32_t mem = nn_memory_pack(&m->mem, &pk);
    if (extra && extra->len)
        msgpack_sbuffer_write(&xs, extra->data, extra->len);
    nn_extra all = {xs.data, xs.size, 1 + mem + (extra ? extra->pairs : 0)};
    int rc = nn_model_pack_extra(sb, ROUTE_MODEL_KIND, hp, sizeof hp / sizeof hp[0], &all,
                                 &m->params, e);
    msgpack_sbuffer_destroy(&xs);
    return rc;
}

int route_is_frame(const msgpack_object *obj)
{
    return nn_model_is_kind(obj, ROUTE_MODEL_KIND);
}

int route_unpack(const msgpack_object *obj, route_model **out, hf_err *e)
{
    *out = NULL;
    const char *keys[] = {"dim", "r", "ncand", "medoid", "fallback"};
    const double lim[] = {1 << 20, 256, ROUTE_MAX_CAND, ROUTE_MAX_CAND, 1};
    double v[5];
    for (size_t i = 0; i < 5; i++) {
        int rc = nn_model_hparam(obj, keys[i], &v[i], e);
        if (rc)
            return rc;
        double lo = i < 3 ? 1 : 0;
        if (!(v[i] >= lo && v[i] <= lim[i] && v[i] == floor(v[i])))
            return hf_err_set(e, HF_EDATA, "layer-router model: bad %s", keys[i]);
    }
    /* bound the allocation before the parameters are read: a frame within
     * the size limit can still claim a huge shape */
    if (v[0] * v[1] > (double)(1 << 24) || (v[2] + 1) * v[1] > (double)(1 << 24))
        return hf_err_set(e, HF_EDATA, "layer-router model: %g x %g code, %g candidates: too large",
                          v[1], v[0], v[2]);
    if (v[3] >= v[2])
        return hf_err_set(e, HF_EDATA, "layer-router model: medoid %g of %g candidates", v[3],
                          v[2]);
    const msgpack_object *c = nn_model_field(obj, "candidates");
    if (!c || c->type != MSGPACK_OBJECT_BIN || c->via.bin.size != (size_t)v[2] * sizeof(uint32_t))
        return hf_err_set(e, HF_EDATA, "layer-router model: \"candidates\" missing or not %g u32",
                          v[2]);
    uint32_t *cand = malloc((size_t)v[2] * sizeof *cand);
    if (!cand)
        return hf_err_set(e, HF_ENOMEM, "out of memory for the router");
    memcpy(cand, c->via.bin.ptr, (size_t)v[2] * sizeof *cand);
    route_model *m = NULL;
    int rc = route_new((size_t)v[0], (size_t)v[1], (size_t)v[2], cand, &m, e);
    free(cand);
    if (!rc)
        rc = nn_model_unpack_params(obj, ROUTE_MODEL_KIND, &m->params, e);
    if (!rc)
        rc = nn_memory_unpack(obj, "layer-router model", route_trainable_count(m), m->dim, &m->mem,
                              e);
    if (rc) {
        route_destroy(&m);
        return rc;
    }
    m->medoid = (uint32_t)v[3];
    m->fallback = v[4] != 0;
    /* rerank: optional (older frames route by the highest logit alone) */
    double rr = 1;
    if (nn_model_field(obj, "rerank") &&
        (nn_model_hparam(obj, "rerank", &rr, e) || !(rr >= 1 && rr <= ROUTE_MAX_RERANK) ||
         rr != floor(rr))) {
        route_destroy(&m);
        return hf_err_set(e, HF_EDATA, "layer-router model: bad rerank (1 to %d)",
                          ROUTE_MAX_RERANK);
    }
    m->rerank = (uint32_t)rr;
    refresh(m);
    *out = m;
    return 0;
}

void route_entry(const route_model *m, const hnsw *h, route_mode mode, const float *q, float *z,
                 uint32_t *entry, int *level, double *cost)
{
    *entry = h->entry;
    *level = h->max_level;
    *cost = 0;
    if (!m || mode == ROUTE_CLASSIC)
        return;
    size_t c = m->medoid;
    if (mode == ROUTE_NEAREST) {
        c = route_nearest(m, h, q);
        *cost = (double)m->C;
    } else if (mode == ROUTE_LEARNED) {
        c = route_pick_rerank(m, h, q, z);
        *cost = route_cost(m);
        if (c == m->C)
            return; /* the classic key */
    }
    *entry = m->cand_int[c];
    *level = 0;
}
