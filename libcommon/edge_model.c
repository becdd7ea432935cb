/*
 * edge_model.c - the edge scorer: node context from the graph layer, an edge
 * MLP and a per-node threshold MLP (see edge.h for the shape).
 *
 *   x_i   = standardised [P v_i (P a fixed random EDGE_PROJ x dim Gaussian),
 *           log1p deg_i, log1p indeg_i, log(density_i / mean)]
 *   h0_i  = tanh(W_in x_i + b)
 *   c_i   = nn_graph(h0_i, {h0_j : j in N(i)})      (message, attention, GRU)
 *   s_ij  = MLP_edge([c_i, c_j, standardised edge features of i->j])
 *   t_i   = MLP_thr(c_i)
 *   keep logit of i->j = s_ij - t_i
 *
 * Training samples source nodes that the labelling searches expanded (only
 * there does "this edge carried no route" mean something), runs the graph
 * layer on the batch with gradients, and takes the target end's context c_j
 * from a cache refreshed at the start of every epoch (no gradient through
 * it): scoring both ends exactly would need every neighbour's own
 * neighbourhood in the batch, K times the work, for little gain.
 * With cfg.no_graph (edge-score --no-graph, an ablation) the graph layer is
 * skipped: c_i = h0_i, so the scorer is a plain MLP over the node's own inputs,
 * the target's and the edge features; its parameters are still allocated and
 * saved (untrained), and the frame's graph_layer = 0 says they are unused.
 * The random projection and the standardisation statistics are not trained
 * but travel in the model frame as parameters, so a reloaded model scores the
 * same graph bit for bit.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edge.h"

#define CTX_BATCH 256

struct edge_model {
    edge_model_cfg cfg;
    size_t dim;
    uint32_t m0;
    /* fixed tensors (saved, not trained) and dummy gradients for the list */
    nn_tensor *proj, *in_mu, *in_sd, *f_mu, *f_sd;
    nn_tensor *gproj, *gin_mu, *gin_sd, *gf_mu, *gf_sd;
    nn_seq *inp;
    nn_graph *graph;
    nn_seq *edge;
    nn_seq *thr;
    nn_params train; /* trainable, in a fixed order */
    nn_params all;   /* fixed tensors then trainable: what the frame holds */
    nn_memory mem;   /* Fisher of `train` and past training queries (input order) */
    /* scratch */
    nn_tensor *xcat, *hb, *hn, *hp, *ein, *dy, *dhp, *dscore, *dthr, *v, *pv;
    uint8_t *mask;
    size_t mask_cap;
    uint32_t *erow_b;  /* per edge row: batch-local source */
    uint64_t *erow_id; /* per edge row: edge id */
    size_t erow_cap;
};

edge_model_cfg edge_model_defaults(void)
{
    return (edge_model_cfg){
        .d_node = 32, .d_msg = 32, .heads = 4, .hidden = 48, .thr_hidden = 16, .seed = 42};
}

edge_train_cfg edge_train_defaults(void)
{
    return (edge_train_cfg){
        .epochs = 8, .nodes_per_epoch = 4096, .batch = 128, .lr = 3e-3f, .seed = 42};
}

const nn_params *edge_model_params(const edge_model *m)
{
    return &m->all;
}

const nn_params *edge_model_trainable(const edge_model *m)
{
    return &m->train;
}

nn_memory *edge_model_memory(edge_model *m)
{
    return &m->mem;
}

size_t edge_model_dim(const edge_model *m)
{
    return m->dim;
}

uint32_t edge_model_m0(const edge_model *m)
{
    return m->m0;
}

void edge_model_destroy(edge_model **self_p)
{
    if (!self_p || !*self_p)
        return;
    edge_model *m = *self_p;
    nn_tensor **ts[] = {&m->proj,   &m->in_mu,  &m->in_sd, &m->f_mu,  &m->f_sd, &m->gproj,
                        &m->gin_mu, &m->gin_sd, &m->gf_mu, &m->gf_sd, &m->xcat, &m->hb,
                        &m->hn,     &m->hp,     &m->ein,   &m->dy,    &m->dhp,  &m->dscore,
                        &m->dthr,   &m->v,      &m->pv};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        nn_tensor_destroy(ts[i]);
    nn_seq_destroy(&m->inp);
    nn_graph_destroy(&m->graph);
    nn_seq_destroy(&m->edge);
    nn_seq_destroy(&m->thr);
    nn_params_free(&m->train);
    nn_params_free(&m->all);
    nn_memory_free(&m->mem);
    free(m->mask);
    free(m->erow_b);
    free(m->erow_id);
    free(m);
    *self_p = NULL;
}

static int mlp(nn_seq **out, size_t in, size_t hid, size_t outw, int act_tanh, nn_rng *rng,
               hf_err *e)
{
    nn_layer *l = NULL;
    int rc = nn_seq_new(out, e);
    if (!rc)
        rc = nn_linear_new(&l, in, hid, act_tanh ? NN_INIT_XAVIER : NN_INIT_HE, rng, e);
    if (!rc)
        rc = nn_seq_add(*out, &l, e);
    if (!rc)
        rc = nn_act_new(&l, act_tanh ? NN_TANH : NN_RELU, e);
    if (!rc)
        rc = nn_seq_add(*out, &l, e);
    if (!rc && outw) {
        rc = nn_linear_new(&l, hid, outw, NN_INIT_XAVIER, rng, e);
        if (!rc)
            rc = nn_seq_add(*out, &l, e);
    }
    return rc;
}

int edge_model_new(const edge_model_cfg *cfg, size_t dim, uint32_t m0, edge_model **out, hf_err *e)
{
    *out = NULL;
    if (dim == 0 || dim > (1u << 24) || m0 == 0 || m0 > 4096 || cfg->d_node == 0 ||
        cfg->d_node > 4096 || cfg->d_msg == 0 || cfg->d_msg > 4096 || cfg->heads == 0 ||
        cfg->d_msg % cfg->heads || cfg->hidden == 0 || cfg->hidden > 4096 || cfg->thr_hidden == 0 ||
        cfg->thr_hidden > 4096)
        return hf_err_set(e, HF_EDATA, "edge model: bad shape (dim %zu, m0 %u)", dim, m0);
    edge_model *m = calloc(1, sizeof *m);
    if (!m)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    m->cfg = *cfg;
    m->dim = dim;
    m->m0 = m0;
    nn_params_init(&m->train);
    nn_params_init(&m->all);
    nn_rng rng;
    nn_rng_seed(&rng, cfg->seed);
    int rc = 0;
    m->proj = nn_tensor_new(EDGE_PROJ, dim);
    m->gproj = nn_tensor_new(EDGE_PROJ, dim);
    m->in_mu = nn_tensor_new(1, EDGE_NODE_IN);
    m->gin_mu = nn_tensor_new(1, EDGE_NODE_IN);
    m->in_sd = nn_tensor_new(1, EDGE_NODE_IN);
    m->gin_sd = nn_tensor_new(1, EDGE_NODE_IN);
    m->f_mu = nn_tensor_new(1, EDGE_NFEAT);
    m->gf_mu = nn_tensor_new(1, EDGE_NFEAT);
    m->f_sd = nn_tensor_new(1, EDGE_NFEAT);
    m->gf_sd = nn_tensor_new(1, EDGE_NFEAT);
    nn_tensor **scratch[] = {&m->xcat, &m->hb,     &m->hn,   &m->hp, &m->ein, &m->dy,
                             &m->dhp,  &m->dscore, &m->dthr, &m->v,  &m->pv};
    for (size_t i = 0; i < sizeof scratch / sizeof scratch[0]; i++)
        if (!(*scratch[i] = nn_tensor_new(0, 0)))
            rc = HF_ENOMEM;
    if (rc || !m->proj || !m->gproj || !m->in_mu || !m->gin_mu || !m->in_sd || !m->gin_sd ||
        !m->f_mu || !m->gf_mu || !m->f_sd || !m->gf_sd) {
        edge_model_destroy(&m);
        return hf_err_set(e, HF_ENOMEM, "out of memory for the edge model");
    }
    nn_tensor_normal(m->proj, 1.0f / sqrtf((float)dim), &rng);
    nn_tensor_fill(m->in_sd, 1.0f);
    nn_tensor_fill(m->f_sd, 1.0f);
    size_t d = cfg->d_node;
    rc = mlp(&m->inp, EDGE_NODE_IN, d, 0, 1, &rng, e);
    if (!rc)
        rc = nn_graph_new(&m->graph, d, cfg->d_msg, cfg->heads, &rng, e);
    if (!rc)
        rc = mlp(&m->edge, 2 * d + EDGE_NFEAT, cfg->hidden, 1, 0, &rng, e);
    if (!rc)
        rc = mlp(&m->thr, d, cfg->thr_hidden, 1, 0, &rng, e);
    if (!rc)
        rc = nn_seq_params(m->inp, "inp.", &m->train, e);
    if (!rc)
        rc = nn_graph_params(m->graph, &m->train, e);
    if (!rc)
        rc = nn_seq_params(m->edge, "edge.", &m->train, e);
    if (!rc)
        rc = nn_seq_params(m->thr, "thr.", &m->train, e);
    if (!rc)
        rc = nn_params_add(&m->all, "", "proj", m->proj, m->gproj, e);
    if (!rc)
        rc = nn_params_add(&m->all, "", "in.mu", m->in_mu, m->gin_mu, e);
    if (!rc)
        rc = nn_params_add(&m->all, "", "in.sd", m->in_sd, m->gin_sd, e);
    if (!rc)
        rc = nn_params_add(&m->all, "", "feat.mu", m->f_mu, m->gf_mu, e);
    if (!rc)
        rc = nn_params_add(&m->all, "", "feat.sd", m->f_sd, m->gf_sd, e);
    for (size_t i = 0; !rc && i < m->train.n; i++)
        rc = nn_params_add(&m->all, "", m->train.v[i].name, m->train.v[i].w, m->train.v[i].g, e);
    if (rc) {
        edge_model_destroy(&m);
        return rc;
    }
    *out = m;
    return 0;
}

/* ------------------------------------------------------------- inputs --- */

/* Raw node inputs (N x EDGE_NODE_IN) into X; standardise with the model's
 * statistics, fitting them first when fit is set. */
static int node_inputs(edge_model *m, const hnsw *h, const edge_graph *g, float *X, int fit,
                       hf_err *e)
{
    size_t n = g->n, blk = 1024;
    double dsum = 0;
    for (size_t i = 0; i < n; i++)
        dsum += log(g->dens[i]);
    double dmean = n ? dsum / n : 0;
    int rc = 0;
    for (size_t s = 0; rc == 0 && s < n; s += blk) {
        size_t r = n - s < blk ? n - s : blk;
        rc = nn_tensor_resize(m->v, r, m->dim, e);
        if (!rc)
            rc = nn_tensor_resize(m->pv, r, EDGE_PROJ, e);
        if (rc)
            break;
        for (size_t i = 0; i < r; i++)
            memcpy(nn_row(m->v, i), hnsw_vec(h, (uint32_t)(s + i)), m->dim * sizeof(float));
        rc = nn_gemm(false, true, 1.0f, m->v, m->proj, 0.0f, m->pv, e);
        for (size_t i = 0; rc == 0 && i < r; i++) {
            size_t id = s + i;
            float *x = X + id * EDGE_NODE_IN;
            memcpy(x, nn_row(m->pv, i), EDGE_PROJ * sizeof(float));
            x[EDGE_PROJ] = log1pf((float)(g->off[id + 1] - g->off[id]));
            x[EDGE_PROJ + 1] = log1pf((float)g->indeg[id]);
            x[EDGE_PROJ + 2] = (float)(log(g->dens[id]) - dmean);
        }
    }
    if (rc)
        return rc;
    if (fit) {
        for (size_t c = 0; c < EDGE_NODE_IN; c++) {
            double s1 = 0, s2 = 0;
            for (size_t i = 0; i < n; i++) {
                double v = X[i * EDGE_NODE_IN + c];
                s1 += v;
                s2 += v * v;
            }
            double mu = n ? s1 / n : 0, var = n ? s2 / n - mu * mu : 1;
            m->in_mu->data[c] = (float)mu;
            m->in_sd->data[c] = (float)(var > 1e-12 ? sqrt(var) : 1.0);
        }
    }
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < EDGE_NODE_IN; c++)
            X[i * EDGE_NODE_IN + c] =
                (X[i * EDGE_NODE_IN + c] - m->in_mu->data[c]) / m->in_sd->data[c];
    return 0;
}

static void fit_feat_stats(edge_model *m, const edge_graph *g)
{
    for (size_t c = 0; c < EDGE_NFEAT; c++) {
        double s1 = 0, s2 = 0;
        for (size_t x = 0; x < g->nedges; x++) {
            double v = g->feat[x * EDGE_NFEAT + c];
            s1 += v;
            s2 += v * v;
        }
        size_t n = g->nedges;
        double mu = n ? s1 / n : 0, var = n ? s2 / n - mu * mu : 1;
        m->f_mu->data[c] = (float)mu;
        m->f_sd->data[c] = (float)(var > 1e-12 ? sqrt(var) : 1.0);
    }
}

/* ------------------------------------------------------------ forward --- */

/* Graph layer over the batch `nodes` (B of them): fills m->hp (B x d_node)
 * with the context embeddings; the layers keep what backward needs. */
static int ctx_forward(edge_model *m, const edge_graph *g, const float *X, const uint32_t *nodes,
                       size_t B, bool train, hf_err *e)
{
    size_t K = m->m0, d = m->cfg.d_node;
    int rc = nn_tensor_resize(m->xcat, B + B * K, EDGE_NODE_IN, e);
    if (rc)
        return rc;
    if (B * K > m->mask_cap) {
        uint8_t *nm = realloc(m->mask, B * K);
        if (!nm)
            return hf_err_set(e, HF_ENOMEM, "out of memory");
        m->mask = nm;
        m->mask_cap = B * K;
    }
    nn_tensor_zero(m->xcat);
    memset(m->mask, 0, B * K);
    for (size_t b = 0; b < B; b++) {
        uint32_t i = nodes[b];
        memcpy(nn_row(m->xcat, b), X + (size_t)i * EDGE_NODE_IN, EDGE_NODE_IN * sizeof(float));
        uint64_t o = g->off[i];
        size_t deg = (size_t)(g->off[i + 1] - o);
        if (deg > K)
            deg = K;
        for (size_t r = 0; r < deg; r++) {
            memcpy(nn_row(m->xcat, B + b * K + r), X + (size_t)g->dst[o + r] * EDGE_NODE_IN,
                   EDGE_NODE_IN * sizeof(float));
            m->mask[b * K + r] = 1;
        }
    }
    const nn_tensor *y, *hp;
    if ((rc = nn_seq_forward(m->inp, m->xcat, train, &y, e)) ||
        (rc = nn_tensor_resize(m->hb, B, d, e)) || (rc = nn_tensor_resize(m->hn, B * K, d, e)))
        return rc;
    memcpy(m->hb->data, y->data, B * d * sizeof(float));
    memcpy(m->hn->data, y->data + B * d, B * K * d * sizeof(float));
    if (m->cfg.no_graph)
        return nn_tensor_copy(m->hp, m->hb, e);
    if ((rc = nn_graph_forward(m->graph, m->hb, m->hn, m->mask, K, &hp, e)))
        return rc;
    return nn_tensor_copy(m->hp, hp, e);
}

/* Context embeddings of every node (no gradients) into C (n x d_node). */
static int ctx_all(edge_model *m, const edge_graph *g, const float *X, float *C, hf_err *e)
{
    uint32_t ids[CTX_BATCH];
    size_t d = m->cfg.d_node;
    for (size_t s = 0; s < g->n; s += CTX_BATCH) {
        size_t B = g->n - s < CTX_BATCH ? g->n - s : CTX_BATCH;
        for (size_t b = 0; b < B; b++)
            ids[b] = (uint32_t)(s + b);
        int rc = ctx_forward(m, g, X, ids, B, false, e);
        if (rc)
            return rc;
        memcpy(C + s * d, m->hp->data, B * d * sizeof(float));
    }
    return 0;
}

/* Edge rows for the batch: [src context (from src_ctx, B x d), target
 * context from C, standardised features]. */
static int edge_rows(edge_model *m, const edge_graph *g, const uint32_t *nodes, size_t B,
                     const nn_tensor *src_ctx, const float *C, size_t *nrows, hf_err *e)
{
    size_t d = m->cfg.d_node, w = 2 * d + EDGE_NFEAT, E = 0;
    for (size_t b = 0; b < B; b++)
        E += (size_t)(g->off[nodes[b] + 1] - g->off[nodes[b]]);
    int rc = nn_tensor_resize(m->ein, E, w, e);
    if (rc)
        return rc;
    if (E > m->erow_cap) {
        uint32_t *nb = realloc(m->erow_b, E * sizeof *nb);
        if (nb)
            m->erow_b = nb;
        uint64_t *ni = realloc(m->erow_id, E * sizeof *ni);
        if (ni)
            m->erow_id = ni;
        if (!nb || !ni)
            return hf_err_set(e, HF_ENOMEM, "out of memory");
        m->erow_cap = E;
    }
    size_t r = 0;
    for (size_t b = 0; b < B; b++) {
        uint32_t i = nodes[b];
        for (uint64_t x = g->off[i]; x < g->off[i + 1]; x++, r++) {
            float *row = nn_row(m->ein, r);
            memcpy(row, nn_row(src_ctx, b), d * sizeof(float));
            memcpy(row + d, C + (size_t)g->dst[x] * d, d * sizeof(float));
            const float *f = g->feat + x * EDGE_NFEAT;
            for (size_t c = 0; c < EDGE_NFEAT; c++)
                row[2 * d + c] = (f[c] - m->f_mu->data[c]) / m->f_sd->data[c];
            m->erow_b[r] = (uint32_t)b;
            m->erow_id[r] = x;
        }
    }
    *nrows = E;
    return 0;
}

int edge_model_score(edge_model *m, const hnsw *h, const edge_graph *g, float *logit, hf_err *e)
{
    if (h->dim != m->dim)
        return hf_err_set(e, HF_EDATA, "edge model is for dimension %zu, index has %zu", m->dim,
                          h->dim);
    if (g->m0 > m->m0)
        return hf_err_set(e, HF_EDATA, "edge model takes at most %u neighbours, graph has M0 %u",
                          m->m0, g->m0);
    size_t d = m->cfg.d_node, n = g->n;
    float *X = malloc((n ? n : 1) * EDGE_NODE_IN * sizeof *X);
    float *C = malloc((n ? n : 1) * d * sizeof *C);
    nn_tensor *src = nn_tensor_new(0, 0);
    int rc = (!X || !C || !src) ? hf_err_set(e, HF_ENOMEM, "out of memory scoring edges") : 0;
    if (!rc)
        rc = node_inputs(m, h, g, X, 0, e);
    if (!rc)
        rc = ctx_all(m, g, X, C, e);
    uint32_t ids[CTX_BATCH * 4];
    for (size_t s = 0; rc == 0 && s < n; s += CTX_BATCH * 4) {
        size_t B = n - s < CTX_BATCH * 4 ? n - s : CTX_BATCH * 4, E;
        for (size_t b = 0; b < B; b++)
            ids[b] = (uint32_t)(s + b);
        if ((rc = nn_tensor_resize(src, B, d, e)))
            break;
        memcpy(src->data, C + s * d, B * d * sizeof(float));
        const nn_tensor *sc, *th;
        if ((rc = edge_rows(m, g, ids, B, src, C, &E, e)) ||
            (rc = nn_seq_forward(m->edge, m->ein, false, &sc, e)) ||
            (rc = nn_seq_forward(m->thr, src, false, &th, e)))
            break;
        for (size_t r = 0; r < E; r++)
            logit[m->erow_id[r]] = sc->data[r] - th->data[m->erow_b[r]];
    }
    nn_tensor_destroy(&src);
    free(X);
    free(C);
    return rc;
}

/* ----------------------------------------------------------- training --- */

static float softplus(float z)
{
    return z > 0 ? z + log1pf(expf(-z)) : log1pf(expf(z));
}

/* Gradients of the batch's mean loss in m->train's grad buffers (zeroed
 * first); the summed loss in *loss_sum, rows in *rows (0: the batch has no
 * edges and the grads stay zero). */
static int batch_grad(edge_model *m, const edge_graph *g, const float *X, const float *C,
                      const uint32_t *usage, const uint32_t *nodes, size_t B, double *loss_sum,
                      size_t *rows, hf_err *e)
{
    size_t d = m->cfg.d_node, K = m->m0, E;
    int rc;
    nn_params_zero_grad(&m->train);
    if ((rc = ctx_forward(m, g, X, nodes, B, true, e)) ||
        (rc = edge_rows(m, g, nodes, B, m->hp, C, &E, e)))
        return rc;
    if (E == 0)
        return 0;
    const nn_tensor *sc, *th, *dx, *dh, *dnbr, *dy2;
    if ((rc = nn_seq_forward(m->edge, m->ein, true, &sc, e)) ||
        (rc = nn_seq_forward(m->thr, m->hp, true, &th, e)) ||
        (rc = nn_tensor_resize(m->dscore, E, 1, e)) || (rc = nn_tensor_resize(m->dthr, B, 1, e)))
        return rc;
    nn_tensor_zero(m->dthr);
    double ls = 0;
    for (size_t r = 0; r < E; r++) {
        float z = sc->data[r] - th->data[m->erow_b[r]];
        float y = usage[m->erow_id[r]] > 0 ? 1.0f : 0.0f;
        ls += softplus(z) - y * z;
        float gz = (1.0f / (1.0f + expf(-z)) - y) / (float)E;
        m->dscore->data[r] = gz;
        m->dthr->data[m->erow_b[r]] -= gz;
    }
    *loss_sum += ls;
    *rows += E;
    if ((rc = nn_seq_backward(m->edge, m->dscore, &dx, e)) ||
        (rc = nn_tensor_resize(m->dhp, B, d, e)))
        return rc;
    nn_tensor_zero(m->dhp);
    for (size_t r = 0; r < E; r++) {
        float *dst = nn_row(m->dhp, m->erow_b[r]);
        const float *s = nn_row(dx, r);
        for (size_t c = 0; c < d; c++)
            dst[c] += s[c];
    }
    if ((rc = nn_seq_backward(m->thr, m->dthr, &dx, e)))
        return rc;
    for (size_t i = 0; i < B * d; i++)
        m->dhp->data[i] += dx->data[i];
    if ((rc = nn_tensor_resize(m->dy, B + B * K, d, e)))
        return rc;
    if (m->cfg.no_graph) { /* c = h0: the gradient goes straight to the batch's own rows */
        nn_tensor_zero(m->dy);
        memcpy(m->dy->data, m->dhp->data, B * d * sizeof(float));
    } else {
        if ((rc = nn_graph_backward(m->graph, m->dhp, &dh, &dnbr, e)))
            return rc;
        memcpy(m->dy->data, dh->data, B * d * sizeof(float));
        memcpy(m->dy->data + B * d, dnbr->data, B * K * d * sizeof(float));
    }
    return nn_seq_backward(m->inp, m->dy, &dy2, e);
}

/* One Adam step on the batch, with the EWC penalty when ewc is set. */
static int train_step(edge_model *m, const edge_graph *g, const float *X, const float *C,
                      const uint32_t *usage, const uint32_t *nodes, size_t B, nn_adam *opt,
                      float lr, const nn_ewc *ewc, float lambda, double *loss_sum, size_t *rows,
                      hf_err *e)
{
    size_t before = *rows;
    float pen = 0;
    int rc = batch_grad(m, g, X, C, usage, nodes, B, loss_sum, rows, e);
    if (rc || *rows == before)
        return rc;
    if (ewc && lambda > 0 && (rc = nn_ewc_penalty(ewc, &m->train, lambda, &pen, e)))
        return rc;
    return nn_adam_step(opt, &m->train, lr, e);
}

int edge_model_train(edge_model *m, const hnsw *h, const edge_graph *g, const uint32_t *usage,
                     const uint32_t *expanded, const edge_train_cfg *cfg, float *final_loss,
                     hf_err *e)
{
    return edge_model_train_ewc(m, h, g, usage, expanded, cfg, NULL, 0, final_loss, e);
}

/* The source nodes training samples: expanded by a labelling search, with edges. */
static size_t train_pool(const edge_graph *g, const uint32_t *expanded, uint32_t *pool)
{
    size_t np = 0;
    for (size_t i = 0; i < g->n; i++)
        if (expanded[i] && g->off[i + 1] > g->off[i])
            pool[np++] = (uint32_t)i;
    return np;
}

int edge_model_train_ewc(edge_model *m, const hnsw *h, const edge_graph *g, const uint32_t *usage,
                         const uint32_t *expanded, const edge_train_cfg *cfg, const nn_ewc *ewc,
                         float lambda, float *final_loss, hf_err *e)
{
    if (h->dim != m->dim || g->m0 > m->m0)
        return hf_err_set(e, HF_EDATA, "edge model does not fit this index");
    size_t n = g->n, d = m->cfg.d_node;
    size_t batch = cfg->batch ? cfg->batch : 128;
    float *X = malloc((n ? n : 1) * EDGE_NODE_IN * sizeof *X);
    float *C = malloc((n ? n : 1) * d * sizeof *C);
    uint32_t *pool = malloc((n ? n : 1) * sizeof *pool);
    nn_adam *opt = NULL;
    int rc = (!X || !C || !pool) ? hf_err_set(e, HF_ENOMEM, "out of memory training") : 0;
    size_t np = pool ? train_pool(g, expanded, pool) : 0;
    /* a model trained on (--init) keeps its standardisation: refitting it
     * would move what every trained weight sees */
    if (!rc)
        rc = node_inputs(m, h, g, X, !cfg->keep_stats, e);
    if (!cfg->keep_stats)
        fit_feat_stats(m, g);
    if (!rc)
        rc = nn_adam_new(&opt, &m->train, nn_adam_defaults(), e);
    nn_rng rng;
    nn_rng_seed(&rng, cfg->seed ^ 0x9e3779b97f4a7c15ull);
    size_t per = cfg->nodes_per_epoch && cfg->nodes_per_epoch < np ? cfg->nodes_per_epoch : np;
    size_t steps_per = (per + batch - 1) / batch, total = steps_per * cfg->epochs, step = 0;
    nn_sched sched = {.kind = NN_SCHED_COSINE,
                      .lr = cfg->lr > 0 ? cfg->lr : 3e-3f,
                      .min_lr = (cfg->lr > 0 ? cfg->lr : 3e-3f) * 0.05f,
                      .total = total,
                      .warmup = steps_per / 2};
    double last = 0;
    for (size_t ep = 0; rc == 0 && ep < cfg->epochs && per > 0; ep++) {
        rc = ctx_all(m, g, X, C, e);
        /* partial Fisher-Yates: the first `per` entries become this epoch's sample */
        for (size_t i = 0; i < per; i++) {
            size_t j = i + (size_t)nn_rng_below(&rng, np - i);
            uint32_t t = pool[i];
            pool[i] = pool[j];
            pool[j] = t;
        }
        double ls = 0;
        size_t rows = 0;
        for (size_t s = 0; rc == 0 && s < per; s += batch) {
            size_t B = per - s < batch ? per - s : batch;
            rc = train_step(m, g, X, C, usage, pool + s, B, opt, nn_sched_lr(&sched, step++), ewc,
                            lambda, &ls, &rows, e);
        }
        last = rows ? ls / rows : 0;
    }
    if (final_loss)
        *final_loss = (float)last;
    nn_adam_destroy(&opt);
    free(X);
    free(C);
    free(pool);
    return rc;
}

int edge_model_fisher(edge_model *m, const hnsw *h, const edge_graph *g, const uint32_t *usage,
                      const uint32_t *expanded, size_t samples, uint64_t seed, nn_ewc *w, hf_err *e)
{
    if (h->dim != m->dim || g->m0 > m->m0)
        return hf_err_set(e, HF_EDATA, "edge model does not fit this index");
    size_t n = g->n, d = m->cfg.d_node;
    float *X = malloc((n ? n : 1) * EDGE_NODE_IN * sizeof *X);
    float *C = malloc((n ? n : 1) * d * sizeof *C);
    uint32_t *pool = malloc((n ? n : 1) * sizeof *pool);
    int rc = (!X || !C || !pool) ? hf_err_set(e, HF_ENOMEM, "out of memory for the Fisher") : 0;
    size_t np = pool ? train_pool(g, expanded, pool) : 0;
    if (!rc)
        rc = node_inputs(m, h, g, X, 0, e);
    if (!rc)
        rc = ctx_all(m, g, X, C, e);
    nn_rng rng;
    nn_rng_seed(&rng, seed);
    size_t take = samples < np ? samples : np;
    /* one sample = one source node's edges (the unit the loss averages over) */
    for (size_t s = 0; rc == 0 && s < take; s++) {
        size_t j = s + (size_t)nn_rng_below(&rng, np - s);
        uint32_t t = pool[s];
        pool[s] = pool[j];
        pool[j] = t;
        double ls = 0;
        size_t rows = 0;
        rc = batch_grad(m, g, X, C, usage, pool + s, 1, &ls, &rows, e);
        if (!rc && rows)
            rc = nn_ewc_accumulate(w, &m->train, e);
    }
    if (!rc && w->samples)
        rc = nn_ewc_consolidate(w, &m->train, e);
    free(X);
    free(C);
    free(pool);
    return rc;
}

/* --------------------------------------------------------------- eval --- */

typedef struct lz {
    float z;
    uint8_t y;
} lz;

static int lz_cmp(const void *a, const void *b)
{
    const lz *x = a, *y = b;
    return (x->z > y->z) - (x->z < y->z);
}

void edge_eval(const edge_graph *g, const float *logit, const uint32_t *usage,
               const uint32_t *expanded, double *bce, double *auc)
{
    size_t cnt = 0;
    for (size_t i = 0; i < g->n; i++)
        if (expanded[i])
            cnt += (size_t)(g->off[i + 1] - g->off[i]);
    lz *a = malloc((cnt ? cnt : 1) * sizeof *a);
    double ls = 0;
    size_t r = 0;
    for (size_t i = 0; a && i < g->n; i++) {
        if (!expanded[i])
            continue;
        for (uint64_t x = g->off[i]; x < g->off[i + 1]; x++, r++) {
            float y = usage[x] > 0;
            ls += softplus(logit[x]) - y * logit[x];
            a[r] = (lz){logit[x], (uint8_t)y};
        }
    }
    if (bce)
        *bce = cnt && a ? ls / cnt : 0;
    if (auc) {
        *auc = 0.5;
        if (a && cnt) {
            qsort(a, cnt, sizeof *a, lz_cmp);
            /* Mann-Whitney with average ranks for ties */
            double pos = 0, rank_sum = 0;
            for (size_t i = 0; i < cnt;) {
                size_t j = i;
                while (j < cnt && a[j].z == a[i].z)
                    j++;
                double avg = (i + 1 + j) / 2.0;
                for (size_t t = i; t < j; t++)
                    if (a[t].y) {
                        pos++;
                        rank_sum += avg;
                    }
                i = j;
            }
            double neg = cnt - pos;
            if (pos > 0 && neg > 0)
                *auc = (rank_sum - pos * (pos + 1) / 2) / (pos * neg);
        }
    }
    free(a);
}

/* ------------------------------------------------------------- frames --- */

int edge_model_pack(edge_model *m, const nn_extra *extra, msgpack_sbuffer *sb, hf_err *e)
{
    nn_hparam hp[] = {{"dim", (double)m->dim},
                      {"m0", m->m0},
                      {"d_node", (double)m->cfg.d_node},
                      {"d_msg", (double)m->cfg.d_msg},
                      {"heads", (double)m->cfg.heads},
                      {"hidden", (double)m->cfg.hidden},
                      {"thr_hidden", (double)m->cfg.thr_hidden},
                      {"proj", EDGE_PROJ},
                      {"nfeat", EDGE_NFEAT},
                      {"graph_layer", m->cfg.no_graph ? 0 : 1}};
    /* the memory pairs (fisher, tasks, replay, replay_seen) before the caller's */
    msgpack_sbuffer xs;
    msgpack_sbuffer_init(&xs);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &xs, msgpack_sbuffer_write);
    uint32_t mem = nn_memory_pack(&m->mem, &pk);
    if (extra && extra->len)
        msgpack_sbuffer_write(&xs, extra->data, extra->len);
    nn_extra all = {xs.data, xs.size, mem + (extra ? extra->pairs : 0)};
    int rc =
        nn_model_pack_extra(sb, EDGE_MODEL_KIND, hp, sizeof hp / sizeof hp[0], &all, &m->all, e);
    msgpack_sbuffer_destroy(&xs);
    return rc;
}

int edge_model_unpack(const msgpack_object *obj, edge_model **out, hf_err *e)
{
    *out = NULL;
    const char *keys[] = {"dim",    "m0",         "d_node", "d_msg", "heads",
                          "hidden", "thr_hidden", "proj",   "nfeat"};
    double v[9];
    for (size_t i = 0; i < 9; i++) {
        int rc = nn_model_hparam(obj, keys[i], &v[i], e);
        if (rc)
            return rc;
        if (!(v[i] >= 1 && v[i] <= (1 << 24) && v[i] == floor(v[i])))
            return hf_err_set(e, HF_EDATA, "edge model: bad %s", keys[i]);
    }
    if (v[7] != EDGE_PROJ || v[8] != EDGE_NFEAT)
        return hf_err_set(e, HF_EDATA, "edge model: proj %g / nfeat %g, this build has %d / %d",
                          v[7], v[8], EDGE_PROJ, EDGE_NFEAT);
    /* bound the allocation before the parameters are read: a frame within
     * the size limit can still claim a huge shape; each of the largest
     * tensors must fit in what the frame's params hold */
    const msgpack_object *ps = nn_model_field(obj, "params");
    double have = 0;
    for (uint32_t i = 0; ps && ps->type == MSGPACK_OBJECT_ARRAY && i < ps->via.array.size; i++) {
        const msgpack_object *d = nn_model_field(&ps->via.array.ptr[i], "data");
        if (d && d->type == MSGPACK_OBJECT_BIN)
            have += d->via.bin.size / 4.0;
    }
    double big[] = {EDGE_PROJ * v[0], v[2] * EDGE_NODE_IN, v[3] * v[2],
                    v[3] * v[3],      3 * v[2] * v[3],     v[5] * (2 * v[2] + EDGE_NFEAT),
                    v[6] * v[2]};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
        if (big[i] > have)
            return hf_err_set(e, HF_EDATA,
                              "edge model: its shape needs more weights than it holds");
    edge_model_cfg cfg = {.d_node = (size_t)v[2],
                          .d_msg = (size_t)v[3],
                          .heads = (size_t)v[4],
                          .hidden = (size_t)v[5],
                          .thr_hidden = (size_t)v[6],
                          .seed = 0};
    /* graph_layer is optional (frames before the --no-graph ablation lack it: 1) */
    const msgpack_object_map *mp = &obj->via.map;
    for (uint32_t i = 0; obj->type == MSGPACK_OBJECT_MAP && i < mp->size; i++) {
        const msgpack_object *k = &mp->ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == 11 &&
            memcmp(k->via.str.ptr, "graph_layer", 11) == 0) {
            double g;
            int rc = nn_model_hparam(obj, "graph_layer", &g, e);
            if (rc)
                return rc;
            if (g != 0 && g != 1)
                return hf_err_set(e, HF_EDATA, "edge model: graph_layer is 0 or 1, not %g", g);
            cfg.no_graph = g == 0;
        }
    }
    edge_model *m = NULL;
    int rc = edge_model_new(&cfg, (size_t)v[0], (uint32_t)v[1], &m, e);
    if (!rc)
        rc = nn_model_unpack_params(obj, EDGE_MODEL_KIND, &m->all, e);
    if (!rc)
        rc = nn_memory_unpack(obj, "edge model", nn_params_count(&m->train), m->dim, &m->mem, e);
    if (rc) {
        edge_model_destroy(&m);
        return rc;
    }
    *out = m;
    return 0;
}
