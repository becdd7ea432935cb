/*
 * nav_train.c - how the navigation policy learns and is judged (nav.h):
 * recorded searches for labels, behavioural cloning (BCE), PPO on the skip
 * decisions, and the evaluation nav-train validates with.
 *
 * Queries are leave-one-out base vectors (route_qset): the search never
 * measures the query's own node, so it behaves like a new point. Recall is
 * the ann-benchmarks definition. Evaluation runs threads over queries and
 * adds per-thread sums in thread order, so figures do not depend on the
 * thread count; recording runs on one thread, so training is deterministic
 * for a seed.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "knn.h"
#include "nav.h"
#include "par.h"
#include "route.h"

static size_t hits_of(const hnsw *h, const hnsw_hit *out, size_t got, size_t k, double thr)
{
    size_t c = 0;
    for (size_t r = 0; r < got && r < k; r++)
        c += knn_recall_scale(h->p.metric, out[r].d) <= thr;
    return c;
}

typedef struct ejob {
    const hnsw *h;
    const nav_policy *p;
    const nav_adsamp *ad;
    const route_qset *qs;
    const nav_cfg *cfg;
    size_t ef;
    int t, threads, failed;
    double hits, work, hops;
} ejob;

static void *eval_worker(void *arg)
{
    ejob *j = arg;
    const hnsw *h = j->h;
    size_t k = j->qs->k;
    nav_searcher *s = NULL;
    hnsw_hit *out = malloc(k * sizeof *out);
    hf_err e = {0};
    if (!out || nav_searcher_new(h, j->ef > k ? j->ef : k, &s, &e)) {
        j->failed = 1;
        free(out);
        return NULL;
    }
    for (size_t qi = (size_t)j->t; qi < j->qs->n; qi += (size_t)j->threads) {
        nav_searcher_exclude(s, j->qs->self[qi]);
        size_t got = 0;
        nav_stats st = {0};
        if (nav_search(h, j->p, j->ad, s, j->cfg, j->qs->raw + qi * h->dim, k, j->ef, out, &got,
                       &st)) {
            j->failed = 1;
            break;
        }
        j->hits += (double)hits_of(h, out, got, k, j->qs->thr[qi]);
        j->work += st.work;
        j->hops += (double)st.hops;
    }
    nav_searcher_destroy(&s);
    free(out);
    return NULL;
}

int nav_eval(const hnsw *h, const nav_policy *p, const nav_adsamp *ad, const route_qset *qs,
             const nav_cfg *cfg, size_t ef, int threads, double *recall, double *work, double *hops,
             hf_err *e)
{
    ejob jobs[PAR_MAX_THREADS] = {0};
    threads = threads < 1 ? 1 : threads > PAR_MAX_THREADS ? PAR_MAX_THREADS : threads;
    for (int t = 0; t < threads; t++)
        jobs[t] = (ejob){
            .h = h, .p = p, .ad = ad, .qs = qs, .cfg = cfg, .ef = ef, .t = t, .threads = threads};
    par_run(threads, jobs, sizeof jobs[0], eval_worker);
    double hs = 0, ws = 0, ps = 0;
    for (int t = 0; t < threads; t++) {
        if (jobs[t].failed)
            return hf_err_set(e, HF_ENOMEM, "out of memory in the policy's searches");
        hs += jobs[t].hits;
        ws += jobs[t].work;
        ps += jobs[t].hops;
    }
    double n = qs->n ? (double)qs->n : 1.0;
    *recall = hs / (n * (double)qs->k);
    *work = ws / n;
    *hops = ps / n;
    return 0;
}

int nav_collect(const hnsw *h, const nav_policy *p, const route_qset *qs, const nav_cfg *cfg,
                const size_t *efs, size_t nef, nn_rng *explore, double miss_cost, nav_trace *tr,
                hf_err *e)
{
    size_t maxef = qs->k;
    for (size_t i = 0; i < nef; i++)
        maxef = efs[i] > maxef ? efs[i] : maxef;
    nav_searcher *s = NULL;
    hnsw_hit *out = malloc(qs->k * sizeof *out);
    if (!out || nav_searcher_new(h, maxef, &s, e)) {
        free(out);
        return hf_err_set(e, HF_ENOMEM, "out of memory for the labelling searches");
    }
    int rc = 0;
    for (size_t qi = 0; qi < qs->n && !rc && !tr->full; qi++) {
        nav_searcher_exclude(s, qs->self[qi]);
        size_t got = 0, before = tr->nskip;
        rc = nav_search_record(h, p, s, cfg, qs->raw + qi * h->dim, qs->k, efs[qi % nef],
                               qs->thr[qi], (uint32_t)qi, explore, tr, out, &got, NULL);
        if (!rc && explore && tr->nskip > before) {
            size_t missed = qs->k - hits_of(h, out, got, qs->k, qs->thr[qi]);
            tr->skip_r[tr->nskip - 1] -= (float)(miss_cost * (double)missed);
        }
    }
    nav_searcher_destroy(&s);
    free(out);
    return rc ? hf_err_set(e, rc, "labelling search failed") : 0;
}

/* One forward/backward of the MLP on a batch; dlogit (B) is dL/dlogit. */
static int mlp_step(nav_mlp *m, nn_tensor *xb, const float *dlogit, nn_tensor *dy, hf_err *e)
{
    const nn_tensor *y = NULL, *dx = NULL;
    int rc = nn_seq_forward(m->seq, xb, true, &y, e);
    if (rc)
        return rc;
    if ((rc = nn_tensor_resize(dy, xb->rows, 1, e)))
        return rc;
    memcpy(dy->data, dlogit, xb->rows * sizeof(float));
    return nn_seq_backward(m->seq, dy, &dx, e);
}

static int mlp_forward(nav_mlp *m, nn_tensor *xb, const float **logit, hf_err *e)
{
    const nn_tensor *y = NULL;
    int rc = nn_seq_forward(m->seq, xb, false, &y, e);
    *logit = rc ? NULL : y->data;
    return rc;
}

#define BATCH 256

int nav_fit(nav_mlp *m, const float *x, const float *y, const float *w, size_t n, size_t epochs,
            float lr, uint64_t seed, float *loss, hf_err *e)
{
    return nav_fit_ewc(m, x, y, w, n, epochs, lr, seed, NULL, 0, loss, e);
}

int nav_fit_ewc(nav_mlp *m, const float *x, const float *y, const float *w, size_t n, size_t epochs,
                float lr, uint64_t seed, const nn_ewc *ewc, float lambda, float *loss, hf_err *e)
{
    *loss = 0;
    if (n == 0)
        return 0;
    size_t f = m->f;
    nn_params pp;
    nn_params_init(&pp);
    nn_adam *opt = NULL;
    nn_tensor *xb = nn_tensor_new(BATCH, f), *dy = nn_tensor_new(BATCH, 1);
    uint32_t *order = malloc(n * sizeof *order);
    float *dl = malloc(BATCH * sizeof *dl);
    int rc = 0;
    if (!xb || !dy || !order || !dl)
        rc = hf_err_set(e, HF_ENOMEM, "out of memory for training");
    if (!rc)
        rc = nn_seq_params(m->seq, "", &pp, e);
    if (!rc)
        rc = nn_adam_new(&opt, &pp, nn_adam_defaults(), e);
    nn_rng rg;
    nn_rng_seed(&rg, seed);
    for (size_t i = 0; i < n && order; i++)
        order[i] = (uint32_t)i;
    for (size_t ep = 0; ep < epochs && !rc; ep++) {
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = (size_t)nn_rng_below(&rg, i + 1);
            uint32_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        double el = 0, ew = 0;
        for (size_t s0 = 0; s0 < n && !rc; s0 += BATCH) {
            size_t B = n - s0 < BATCH ? n - s0 : BATCH;
            if ((rc = nn_tensor_resize(xb, B, f, e)))
                break;
            for (size_t i = 0; i < B; i++)
                memcpy(nn_row(xb, i), x + (size_t)order[s0 + i] * f, f * sizeof(float));
            const float *lg = NULL;
            if ((rc = mlp_forward(m, xb, &lg, e)))
                break;
            double wsum = 0;
            for (size_t i = 0; i < B; i++)
                wsum += w ? w[order[s0 + i]] : 1.0;
            for (size_t i = 0; i < B; i++) {
                double z = lg[i], t = y[order[s0 + i]], wi = w ? w[order[s0 + i]] : 1.0;
                double sg = z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
                el += wi * ((z > 0 ? z : 0) - z * t + log1p(exp(-fabs(z))));
                dl[i] = wsum > 0 ? (float)(wi * (sg - t) / wsum) : 0.0f;
            }
            ew += wsum;
            nn_params_zero_grad(&pp);
            float pen = 0;
            if ((rc = mlp_step(m, xb, dl, dy, e)) ||
                (ewc && lambda > 0 && (rc = nn_ewc_penalty(ewc, &pp, lambda, &pen, e))) ||
                (rc = nn_adam_step(opt, &pp, lr, e)))
                break;
        }
        *loss = ew > 0 ? (float)(el / ew) : 0.0f;
    }
    nn_adam_destroy(&opt);
    nn_params_free(&pp);
    nn_tensor_destroy(&xb);
    nn_tensor_destroy(&dy);
    free(order);
    free(dl);
    return rc;
}

/* Values of the value network on n rows of x into v. */
static int values(nav_mlp *vn, const float *x, size_t n, float *v, nn_tensor *xb, hf_err *e)
{
    for (size_t s0 = 0; s0 < n; s0 += BATCH) {
        size_t B = n - s0 < BATCH ? n - s0 : BATCH;
        int rc = nn_tensor_resize(xb, B, vn->f, e);
        if (rc)
            return rc;
        memcpy(xb->data, x + s0 * vn->f, B * vn->f * sizeof(float));
        const float *o = NULL;
        if ((rc = mlp_forward(vn, xb, &o, e)))
            return rc;
        memcpy(v + s0, o, B * sizeof(float));
    }
    return 0;
}

int nav_ppo(nav_policy *p, const hnsw *h, const route_qset *qs, const nav_ppo_cfg *c,
            double reward[2], hf_err *e)
{
    reward[0] = reward[1] = 0;
    size_t cap = 0;
    for (size_t i = 0; i < c->nef; i++)
        cap += c->efs[i];
    cap = qs->n * (cap / (c->nef ? c->nef : 1)) * 8 + 1024; /* about the decisions of a round */
    if (cap > 4000000)
        cap = 4000000;
    nav_trace tr;
    int rc = nav_trace_init(&tr, cap, 0, e);
    if (rc)
        return rc;
    nav_mlp vn = {0};
    nn_rng rg;
    nn_rng_seed(&rg, c->seed);
    nn_params pp, vp;
    nn_params_init(&pp);
    nn_params_init(&vp);
    nn_adam *po = NULL, *vo = NULL;
    nn_tensor *xb = nn_tensor_new(BATCH, NAV_SKIP_F), *dy = nn_tensor_new(BATCH, 1);
    float *v = malloc(cap * sizeof *v), *adv = malloc(cap * sizeof *adv),
          *ret = malloc(cap * sizeof *ret), *dl = malloc(BATCH * sizeof *dl);
    uint32_t *order = malloc(cap * sizeof *order);
    if (!xb || !dy || !v || !adv || !ret || !dl || !order)
        rc = hf_err_set(e, HF_ENOMEM, "out of memory for PPO");
    /* the value network: the policy's shape, its own weights */
    nn_layer *l = NULL;
    vn.f = NAV_SKIP_F;
    if (!rc &&
        (nn_seq_new(&vn.seq, e) || nn_linear_new(&l, NAV_SKIP_F, NAV_HIDDEN, NN_INIT_HE, &rg, e) ||
         nn_seq_add(vn.seq, &l, e) || nn_act_new(&l, NN_RELU, e) || nn_seq_add(vn.seq, &l, e) ||
         nn_linear_new(&l, NAV_HIDDEN, 1, NN_INIT_XAVIER, &rg, e) || nn_seq_add(vn.seq, &l, e)))
        rc = HF_ENOMEM;
    if (!rc)
        rc = nn_seq_params(p->skip.seq, "", &pp, e);
    if (!rc)
        rc = nn_seq_params(vn.seq, "", &vp, e);
    if (!rc)
        rc = nn_adam_new(&po, &pp, nn_adam_defaults(), e);
    if (!rc)
        rc = nn_adam_new(&vo, &vp, nn_adam_defaults(), e);
    nav_cfg cfg = {.skip = NAV_SKIP_LEARNED, .stop = NAV_STOP_EF};
    for (size_t it = 0; it < c->iters && !rc; it++) {
        tr.nskip = 0;
        tr.nstop = 0;
        tr.full = 0;
        nn_rng ex = rg;
        nn_rng_next(&rg);
        nav_sync(p);
        if ((rc = nav_collect(h, p, qs, &cfg, c->efs, c->nef, &ex, c->miss_cost, &tr, e)))
            break;
        size_t n = tr.nskip;
        if (n == 0)
            break;
        double total = 0;
        for (size_t i = 0; i < n; i++)
            total += tr.skip_r[i];
        reward[it == 0 ? 0 : 1] = total / (double)qs->n;
        if (it == 0)
            reward[1] = reward[0];
        /* GAE along each query's decisions (gamma 1, V = 0 after the last) */
        if ((rc = values(&vn, tr.skip_x, n, v, xb, e)))
            break;
        float a = 0;
        for (size_t i = n; i-- > 0;) {
            int last = i + 1 == n || tr.skip_ep[i + 1] != tr.skip_ep[i];
            float vnext = last ? 0.0f : v[i + 1];
            float delta = tr.skip_r[i] + vnext - v[i];
            a = delta + (last ? 0.0f : c->lambda * a);
            adv[i] = a;
            ret[i] = a + v[i];
        }
        double m = 0, s2 = 0;
        for (size_t i = 0; i < n; i++)
            m += adv[i];
        m /= (double)n;
        for (size_t i = 0; i < n; i++)
            s2 += (adv[i] - m) * (adv[i] - m);
        float sd = (float)sqrt(s2 / (double)n) + 1e-6f;
        for (size_t i = 0; i < n; i++)
            adv[i] = (float)((adv[i] - m) / sd);
        for (size_t i = 0; i < n; i++)
            order[i] = (uint32_t)i;
        for (size_t ep = 0; ep < c->epochs && !rc; ep++) {
            for (size_t i = n - 1; i > 0; i--) {
                size_t j = (size_t)nn_rng_below(&rg, i + 1);
                uint32_t t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
            for (size_t s0 = 0; s0 < n && !rc; s0 += BATCH) {
                size_t B = n - s0 < BATCH ? n - s0 : BATCH;
                if ((rc = nn_tensor_resize(xb, B, NAV_SKIP_F, e)))
                    break;
                for (size_t i = 0; i < B; i++)
                    memcpy(nn_row(xb, i), tr.skip_x + (size_t)order[s0 + i] * NAV_SKIP_F,
                           NAV_SKIP_F * sizeof(float));
                /* policy: clipped surrogate on the measure probability */
                const float *lg = NULL;
                if ((rc = mlp_forward(&p->skip, xb, &lg, e)))
                    break;
                for (size_t i = 0; i < B; i++) {
                    size_t o = order[s0 + i];
                    float z = lg[i] - p->skip_logit, sg = 1.0f / (1.0f + expf(-z));
                    float act = tr.skip_a[o], pold = tr.skip_pa[o];
                    float pnew = act > 0.5f ? sg : 1 - sg, pprev = act > 0.5f ? pold : 1 - pold;
                    float ratio = pnew / (pprev > 1e-6f ? pprev : 1e-6f), A = adv[o];
                    int clipped = (A > 0 && ratio > 1 + c->clip) || (A < 0 && ratio < 1 - c->clip);
                    /* d(-ratio A)/dz = -A ratio (act - sg) */
                    dl[i] = clipped ? 0.0f : -A * ratio * (act - sg) / (float)B;
                }
                nn_params_zero_grad(&pp);
                if ((rc = mlp_step(&p->skip, xb, dl, dy, e)) ||
                    (rc = nn_adam_step(po, &pp, c->lr, e)))
                    break;
                /* value: squared error to the GAE returns */
                const float *vo_ = NULL;
                if ((rc = mlp_forward(&vn, xb, &vo_, e)))
                    break;
                for (size_t i = 0; i < B; i++)
                    dl[i] = 2.0f * (vo_[i] - ret[order[s0 + i]]) / (float)B;
                nn_params_zero_grad(&vp);
                if ((rc = mlp_step(&vn, xb, dl, dy, e)) || (rc = nn_adam_step(vo, &vp, c->lr, e)))
                    break;
            }
        }
    }
    nav_sync(p);
    nn_adam_destroy(&po);
    nn_adam_destroy(&vo);
    nn_params_free(&pp);
    nn_params_free(&vp);
    nn_seq_destroy(&vn.seq);
    nn_tensor_destroy(&xb);
    nn_tensor_destroy(&dy);
    free(v);
    free(adv);
    free(ret);
    free(dl);
    free(order);
    nav_trace_free(&tr);
    return rc;
}

double nav_work_ratio(const double *rc, const double *wc, size_t nc, const double *r,
                      const double *w, size_t n)
{
    double s = 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 1; j < nc; j++) {
            double lo = rc[j - 1], hi = rc[j];
            if (!(r[i] >= lo && r[i] <= hi) || hi <= lo)
                continue;
            double t = (r[i] - lo) / (hi - lo);
            double wi = exp(log(wc[j - 1]) + t * (log(wc[j]) - log(wc[j - 1])));
            s += w[i] / wi;
            m++;
            break;
        }
    }
    return m ? s / (double)m : NAN;
}
