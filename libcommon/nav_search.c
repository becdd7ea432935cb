/*
 * nav_search.c - the level-0 beam search with a navigation policy (nav.h).
 *
 * The upper levels are the classic greedy descent (hnsw_descend); level 0
 * is hnsw_search.c's loop with two hooks: a skip test per unvisited
 * neighbour once the beam is full, and a stop test per hop once k results
 * are in. The loop is written once and specialised (always inlined with
 * constant arguments) for each skip kind and for recording, so the search
 * path pays for nothing it does not use. It walks the f32 vectors (no codes,
 * no rows layout): the ablations compare it with the classic loop on the
 * same layout.
 *
 * A neighbour the learned test rejects is left unvisited: met again from
 * another parent (nearer, or with the beam's worst moved) it is tested
 * again. What it still misses is the policy's risk, and what its
 * validation measures.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hnsw_heap.h"
#include "nav.h"

struct nav_searcher {
    hnsw_searcher *hs; /* query preparation, descent, ids for the caller */
    visited_bits vis;
    hheap cand, res;
    hnsw_hit *top; /* the best k so far, nearest first */
    size_t kcap;
    float *qrot; /* ADSampling: the rotated query */
    uint32_t exclude;
    uint32_t entry; /* where the descent starts (nav_searcher_entry) */
    int level;
    /* one expansion's neighbours: ids, ranks, chosen-to-measure marks,
     * ADSampling distances (then, 4096 on, action probabilities) and skip
     * features */
    uint32_t todo[4096], rank[4096];
    uint8_t meas[4096];
    float dpre[8192];
    float *fx;
};

int nav_searcher_new(const hnsw *h, size_t max_ef, nav_searcher **out, hf_err *e)
{
    *out = NULL;
    nav_searcher *s = calloc(1, sizeof *s);
    if (!s)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    s->exclude = HNSW_NONE;
    s->entry = h->entry;
    s->level = h->max_level;
    if (hnsw_searcher_new(h, max_ef, &s->hs, e)) {
        free(s);
        return HF_ENOMEM;
    }
    s->vis.words = (h->n + 63) / 64 + 1;
    s->vis.w = calloc(s->vis.words, sizeof(uint64_t));
    s->res.cap = max_ef + 2;
    s->res.a = malloc(s->res.cap * sizeof(hnsw_hit));
    s->cand.cap = max_ef * 4 + 64;
    s->cand.a = malloc(s->cand.cap * sizeof(hnsw_hit));
    s->kcap = max_ef + 1;
    s->top = malloc(s->kcap * sizeof(hnsw_hit));
    s->qrot = malloc(h->dim * sizeof(float));
    s->fx = malloc(4096 * NAV_SKIP_F * sizeof(float));
    if (!s->vis.w || !s->res.a || !s->cand.a || !s->top || !s->qrot || !s->fx) {
        nav_searcher_destroy(&s);
        return hf_err_set(e, HF_ENOMEM, "out of memory for search scratch");
    }
    *out = s;
    return 0;
}

void nav_searcher_destroy(nav_searcher **self_p)
{
    if (!self_p || !*self_p)
        return;
    nav_searcher *s = *self_p;
    hnsw_searcher_destroy(&s->hs);
    free(s->vis.w);
    free(s->res.a);
    free(s->cand.a);
    free(s->top);
    free(s->qrot);
    free(s->fx);
    free(s);
    *self_p = NULL;
}

void nav_searcher_exclude(nav_searcher *s, uint32_t id)
{
    s->exclude = id;
}

void nav_searcher_entry(nav_searcher *s, uint32_t entry, int level)
{
    s->entry = entry;
    s->level = level;
}

static int cand_push(hheap *c, float d, uint32_t id)
{
    if (c->n == c->cap) {
        size_t nc = c->cap * 2;
        hnsw_hit *a = realloc(c->a, nc * sizeof *a);
        if (!a)
            return -1;
        c->a = a;
        c->cap = nc;
    }
    hmin_push(c, d, id);
    return 0;
}

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* The MLP's logit for NF inputs (a constant: the loops unroll and the
 * hidden layer's NAV_HIDDEN units go through in vector registers). */
ALWAYS_INLINE float mlp_eval(const nav_mlp *m, const float *x, const size_t NF)
{
    float a[NAV_HIDDEN];
    for (size_t j = 0; j < NAV_HIDDEN; j++)
        a[j] = m->b1[j];
    for (size_t i = 0; i < NF; i++)
        for (size_t j = 0; j < NAV_HIDDEN; j++)
            a[j] += m->w1[i * NAV_HIDDEN + j] * x[i];
    float o = m->b2;
    for (size_t j = 0; j < NAV_HIDDEN; j++)
        o += m->w2[j] * (a[j] > 0 ? a[j] : 0.0f);
    return o;
}

float nav_mlp_logit(const nav_mlp *m, const float *x)
{
    return mlp_eval(m, x, m->f);
}

static inline float clampf(float x, float lo, float hi)
{
    return x < lo ? lo : x > hi ? hi : x; /* NaN goes to hi */
}

/* Insert d into the sorted best-k (k <= kcap); 1 when it changed. */
static inline int top_insert(hnsw_hit *top, size_t *n, size_t k, float d, uint32_t id)
{
    if (*n == k && d >= top[k - 1].d)
        return 0;
    size_t i = *n < k ? (*n)++ : k - 1;
    while (i > 0 && top[i - 1].d > d) {
        top[i] = top[i - 1];
        i--;
    }
    top[i].d = d;
    top[i].id = id;
    return 1;
}

/* Hits among the current best k (ann-benchmarks definition). */
static size_t top_hits(const hnsw *h, const hnsw_hit *top, size_t n, double thr)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        double d = hnsw_space_to_metric(h, top[i].d);
        if (h->p.metric == METRIC_L2)
            d = sqrt(d > 0 ? d : 0);
        c += d <= thr;
    }
    return c;
}

typedef struct rec_args {
    double thr;
    uint32_t ep;
    nn_rng *explore;
    nav_trace *tr;
} rec_args;

/* Skip features of neighbour nb (rank j of deg in its parent's list); the
 * per-hop ones (f[2], f[5], f[7]) are already in f. */
ALWAYS_INLINE void skip_features(const nav_policy *p, dist_fn l2sq, const float *zq, float srq,
                                 uint32_t nb, uint32_t j, float ideg, float rq, float itau,
                                 float *f)
{
    const float *row = p->rows + (size_t)nb * p->row;
    size_t R = p->r;
    float pz = l2sq(zq, row, R); /* the SIMD kernel: a plain loop would not vectorise */
    float sx = row[R], rx = sx * sx, sr = srq - sx;
    f[0] = clampf((pz + rq + rx) * itau, 0, 16);
    f[1] = clampf((pz + sr * sr) * itau, 0, 16);
    f[3] = clampf(pz * itau, 0, 16);
    f[4] = clampf(rx * itau, 0, 16);
    f[6] = (float)j * ideg;
}

/* The search. SKIP and REC are constants in every caller; REC searches
 * measure every neighbour (to label it) but act on the policy's choice. */
ALWAYS_INLINE int search(const hnsw *h, const nav_policy *p, const nav_adsamp *ad, nav_searcher *s,
                         const nav_cfg *cfg, const float *q, size_t k, size_t ef, hnsw_hit *out,
                         size_t *nout, nav_stats *st, const int SKIP, const int REC,
                         const rec_args *ra)
{
    *nout = 0;
    if (h->entry == HNSW_NONE || k == 0)
        return 0;
    if (ef + 2 > s->res.cap)
        ef = s->res.cap - 2;
    if (k > s->kcap)
        k = s->kcap;
    if (ef < k)
        ef = k;
    size_t D = h->dim;
    hnsw_stats hst = {0};
    hnsw_searcher_exclude(s->hs, s->exclude);
    uint32_t ep;
    float epd;
    const float *qs = hnsw_descend(h, s->hs, q, s->entry, s->level, &ep, &epd, &hst);
    double work = (double)hst.ndist;
    uint64_t ndist0 = 0, skipped = 0, hops0 = 0, last_change = 0;

    /* the query's side of the skip test */
    float zq[NAV_R_MAX], rq = 0, srq = 0;
    const dist_kernels *dk = dist_best();
    if (SKIP == NAV_SKIP_LEARNED || REC) { /* z = P q - P mu, |q - mu|^2 - |z|^2 */
        float all = dk->l2sq(qs, p->mu->data, D), in = 0;
        for (size_t a = 0; a < p->r; a++) {
            zq[a] = dk->dot(p->P->data + a * D, qs, D) - p->pmu[a];
            in += zq[a] * zq[a];
        }
        rq = all > in ? all - in : 0.0f;
        srq = sqrtf(rq);
        work += (double)p->r;
    }
    if (SKIP == NAV_SKIP_ADSAMPLING) {
        for (size_t r = 0; r < D; r++)
            s->qrot[r] = dk->dot(ad->rot + r * D, qs, D);
        work += (double)D;
    }

    visited_bits *vis = &s->vis;
    hheap *cand = &s->cand, *res = &s->res;
    size_t topn = 0;
    visited_bits_clear(vis);
    cand->n = res->n = 0;
    if (s->exclude < h->n)
        visited_bits_test_set(vis, s->exclude);
    visited_bits_test_set(vis, ep);
    cand_push(cand, epd, ep);
    if (!h->deleted[ep]) {
        hmax_push(res, epd, ep);
        top_insert(s->top, &topn, k, epd, ep);
    }
    const dist_bounded_fn bounded = dist_best()->l2sq_bounded;
    const float epd0 = epd > 1e-20f ? epd : 1e-20f;
    const float dscale = p ? p->dscale : 1.0f;
    uint32_t *todo = s->todo, *rank = s->rank;
    uint8_t *meas = s->meas;
    float *dpre = s->dpre, *fx = s->fx;
    while (cand->n) {
        hnsw_hit c = cand->a[0];
        if (res->n >= ef && c.d > res->a[0].d)
            break;
        /* the stop test: once k results are in */
        if ((cfg->stop != NAV_STOP_EF || REC) && topn >= k) {
            float dk = s->top[k - 1].d > 1e-20f ? s->top[k - 1].d : 1e-20f;
            if (cfg->stop == NAV_STOP_ADAPTIVE) {
                if (hops0 - last_change >= cfg->patience && c.d > dk)
                    break;
            } else {
                float g[NAV_STOP_F];
                float worst = res->a[0].d > 1e-20f ? res->a[0].d : 1e-20f;
                g[0] = log1pf((float)hops0) / 5;
                g[1] = log1pf((float)ndist0) / 8;
                g[2] = s->top[0].d / dk;
                g[3] = clampf(dk / epd0, 0, 4);
                g[4] = clampf(c.d / dk, 0, 4);
                g[5] = log1pf((float)(hops0 - last_change)) / 4;
                g[6] = clampf(dk / worst, 0, 1);
                g[7] = clampf(logf(dk / dscale), -4, 4) / 4;
                if (REC && ra->tr->stop_cap) {
                    nav_trace *tr = ra->tr;
                    if (tr->nstop < tr->stop_cap) {
                        memcpy(tr->stop_x + tr->nstop * NAV_STOP_F, g, sizeof g);
                        tr->stop_y[tr->nstop++] = (float)top_hits(h, s->top, k, ra->thr) / (float)k;
                    } else
                        tr->full = 1;
                }
                if (cfg->stop == NAV_STOP_LEARNED &&
                    1.0f / (1.0f + expf(-mlp_eval(&p->stop, g, NAV_STOP_F))) >= cfg->stop_p)
                    break;
            }
        }
        hmin_pop(cand);
        hops0++;
        const uint32_t *l = hnsw_links0(h, c.id);
        uint32_t deg = l[0];
        const uint32_t *links = l + 1;
        uint32_t nt = 0;
        int full = res->n >= ef;
        int test = (SKIP != NAV_SKIP_NONE || REC) && full;
        for (uint32_t j = 0; j < deg; j++) {
            uint32_t nb = links[j];
            if (visited_bits_test_set(vis, nb))
                continue;
            rank[nt] = j;
            todo[nt++] = nb;
            if (SKIP == NAV_SKIP_LEARNED && test) {
                const char *rw = (const char *)(p->rows + (size_t)nb * p->row);
                __builtin_prefetch(rw);
                if (p->row > 16)
                    __builtin_prefetch(rw + 64);
            } else if (SKIP == NAV_SKIP_ADSAMPLING && test)
                __builtin_prefetch(ad->vecs + (size_t)nb * D);
            else {
                const char *v = (const char *)hnsw_vec(h, nb);
                for (int a = 0; a < 4; a++)
                    __builtin_prefetch(v + 64 * a);
            }
        }
        float tau = full ? res->a[0].d : INFINITY;
        float itau = full ? 1.0f / (tau > 1e-20f ? tau : 1e-20f) : 0.0f;
        /* phase 1, the skip test: todo[0..nm) are left to measure (REC:
         * all of them, meas[] saying which the policy chose) */
        uint32_t nm = 0;
        float hop_f[3] = {0, 0, 0}; /* f[2], f[5], f[7]: the same for the whole hop */
        float ideg = 1.0f / (float)(deg ? deg : 1);
        if (test && (SKIP == NAV_SKIP_LEARNED || REC)) {
            hop_f[0] = clampf(c.d * itau, 0, 16);
            hop_f[1] = clampf(rq * itau, 0, 16);
            hop_f[2] = log1pf((float)hops0) / 5;
        }
        if (test) {
            for (uint32_t t = 0; t < nt; t++) {
                uint32_t nb = todo[t];
                int measure = 1;
                float pm = 1;
                float *f = fx + (size_t)nm * NAV_SKIP_F;
                if (SKIP == NAV_SKIP_LEARNED || REC) {
                    f[2] = hop_f[0];
                    f[5] = hop_f[1];
                    f[7] = hop_f[2];
                    skip_features(p, dk->l2sq, zq, srq, nb, rank[t], ideg, rq, itau, f);
                }
                if (SKIP == NAV_SKIP_LEARNED) {
                    float lg = mlp_eval(&p->skip, f, NAV_SKIP_F) - p->skip_logit;
                    work += (double)p->r / (double)D;
                    if (REC && ra->explore) {
                        pm = clampf(1.0f / (1.0f + expf(-lg)), 0.02f, 0.98f);
                        measure = nn_rng_uniform(ra->explore) < pm;
                    } else {
                        measure = lg >= 0;
                        pm = (float)measure;
                    }
                } else if (SKIP == NAV_SKIP_ADSAMPLING) {
                    /* dimensions in steps of 32, the hypothesis test after each */
                    const float *v = ad->vecs + (size_t)nb * D;
                    float zb = hnsw_zero_bias(h, nb), lim = tau - zb, acc = 0;
                    size_t d = 0;
                    while (d < D) {
                        size_t step = D - d < 32 ? D - d : 32;
                        acc += dk->l2sq(s->qrot + d, v + d, step);
                        d += step;
                        if (d < D) {
                            float r = 1.0f + ad->eps0 / sqrtf((float)d);
                            if (acc * (float)D / (float)d > lim * r * r)
                                break;
                        }
                    }
                    work += (double)d / (double)D;
                    measure = d == D;
                    dpre[nm] = acc + zb; /* a rotation keeps L2: exact when d == D */
                }
                if (!measure && !REC) {
                    /* unmarked: from another parent it may be worth measuring
                     * (ADSampling's test is the same from any parent) */
                    if (SKIP == NAV_SKIP_LEARNED)
                        vis->w[nb >> 6] &= ~((uint64_t)1 << (nb & 63));
                    skipped++;
                    continue;
                }
                meas[nm] = (uint8_t)measure;
                dpre[nm + 4096] = pm;
                todo[nm++] = nb;
                if (SKIP == NAV_SKIP_LEARNED && measure) {
                    const char *v = (const char *)hnsw_vec(h, nb);
                    for (int a = 0; a < 4; a++)
                        __builtin_prefetch(v + 64 * a);
                }
            }
        } else {
            nm = nt;
        }
        /* phase 2: exact distances */
        for (uint32_t t = 0; t < nm; t++) {
            uint32_t nb = todo[t];
            int measure = !test || meas[t];
            float d;
            if (SKIP == NAV_SKIP_ADSAMPLING && test && measure) {
                d = dpre[t];
            } else {
                if (res->n >= ef)
                    d = bounded(qs, hnsw_vec(h, nb), D, res->a[0].d - hnsw_zero_bias(h, nb)) +
                        hnsw_zero_bias(h, nb);
                else
                    d = hnsw_space_dist(h, qs, nb);
                if (measure && !(SKIP == NAV_SKIP_ADSAMPLING && test)) {
                    work += 1;
                    ndist0++;
                }
            }
            if (REC && test) {
                nav_trace *tr = ra->tr;
                if (tr->nskip < tr->skip_cap) {
                    size_t i = tr->nskip++;
                    memcpy(tr->skip_x + i * NAV_SKIP_F, fx + (size_t)t * NAV_SKIP_F,
                           NAV_SKIP_F * sizeof(float));
                    tr->skip_y[i] = d < tau;
                    tr->skip_a[i] = (float)measure;
                    tr->skip_pa[i] = dpre[t + 4096];
                    tr->skip_r[i] = measure ? -1.0f : -(float)p->r / (float)D;
                    tr->skip_ep[i] = ra->ep;
                } else
                    tr->full = 1;
            }
            if (!measure) {
                skipped++;
                continue;
            }
            if (res->n < ef || d < res->a[0].d) {
                if (cand_push(cand, d, nb) != 0)
                    break;
                __builtin_prefetch(hnsw_links0(h, cand->a[0].id));
                if (!h->deleted[nb]) {
                    hmax_push(res, d, nb);
                    if (res->n > ef)
                        hmax_pop(res);
                    if (top_insert(s->top, &topn, k, d, nb))
                        last_change = hops0;
                }
            }
        }
    }
    st->work += work;
    st->ndist += hst.ndist + ndist0;
    st->ndist_upper += hst.ndist;
    st->skipped += skipped;
    st->hops += hst.hops + hops0;
    st->hops0 += hops0;
    size_t n = topn < k ? topn : k;
    memcpy(out, s->top, n * sizeof *out);
    hnsw_hits_for_caller(h, s->hs, out, n);
    *nout = n;
    return 0;
}

int nav_search(const hnsw *h, const nav_policy *p, const nav_adsamp *ad, nav_searcher *s,
               const nav_cfg *cfg, const float *q, size_t k, size_t ef, hnsw_hit *out, size_t *nout,
               nav_stats *st)
{
    nav_stats local = {0};
    if (!st)
        st = &local;
    if ((cfg->skip == NAV_SKIP_LEARNED || cfg->stop == NAV_STOP_LEARNED) && (!p || !p->rows))
        return HF_EUSAGE; /* a caller's bug: policies come bound */
    if (cfg->skip == NAV_SKIP_ADSAMPLING && !ad)
        return HF_EUSAGE;
    switch (cfg->skip) {
    case NAV_SKIP_LEARNED:
        return search(h, p, ad, s, cfg, q, k, ef, out, nout, st, NAV_SKIP_LEARNED, 0, NULL);
    case NAV_SKIP_ADSAMPLING:
        return search(h, p, ad, s, cfg, q, k, ef, out, nout, st, NAV_SKIP_ADSAMPLING, 0, NULL);
    default: return search(h, p, ad, s, cfg, q, k, ef, out, nout, st, NAV_SKIP_NONE, 0, NULL);
    }
}

int nav_search_record(const hnsw *h, const nav_policy *p, nav_searcher *s, const nav_cfg *cfg,
                      const float *q, size_t k, size_t ef, double thr, uint32_t ep, nn_rng *explore,
                      nav_trace *tr, hnsw_hit *out, size_t *nout, nav_stats *st)
{
    nav_stats local = {0};
    if (!st)
        st = &local;
    if (!p || !p->rows || cfg->skip == NAV_SKIP_ADSAMPLING)
        return HF_EUSAGE;
    rec_args ra = {thr, ep, explore, tr};
    if (cfg->skip == NAV_SKIP_LEARNED)
        return search(h, p, NULL, s, cfg, q, k, ef, out, nout, st, NAV_SKIP_LEARNED, 1, &ra);
    return search(h, p, NULL, s, cfg, q, k, ef, out, nout, st, NAV_SKIP_NONE, 1, &ra);
}

void nav_trace_free(nav_trace *t)
{
    free(t->skip_x);
    free(t->skip_y);
    free(t->skip_a);
    free(t->skip_pa);
    free(t->skip_r);
    free(t->skip_ep);
    free(t->stop_x);
    free(t->stop_y);
    memset(t, 0, sizeof *t);
}

int nav_trace_init(nav_trace *t, size_t skip_cap, size_t stop_cap, hf_err *e)
{
    memset(t, 0, sizeof *t);
    t->skip_cap = skip_cap;
    t->stop_cap = stop_cap;
    t->skip_x = malloc((skip_cap * NAV_SKIP_F + 1) * sizeof(float));
    t->skip_y = malloc((skip_cap + 1) * sizeof(float));
    t->skip_a = malloc((skip_cap + 1) * sizeof(float));
    t->skip_pa = malloc((skip_cap + 1) * sizeof(float));
    t->skip_r = malloc((skip_cap + 1) * sizeof(float));
    t->skip_ep = malloc((skip_cap + 1) * sizeof(uint32_t));
    t->stop_x = malloc((stop_cap * NAV_STOP_F + 1) * sizeof(float));
    t->stop_y = malloc((stop_cap + 1) * sizeof(float));
    if (!t->skip_x || !t->skip_y || !t->skip_a || !t->skip_pa || !t->skip_r || !t->skip_ep ||
        !t->stop_x || !t->stop_y) {
        nav_trace_free(t);
        return hf_err_set(e, HF_ENOMEM, "out of memory for training traces");
    }
    return 0;
}
