/*
 * nn_graph.c - the graph layer ("RuvectorLayer") the edge scorer is built
 * on: each node reads its neighbours through a message projection, weighs
 * the messages by multi-head attention from its own state, and updates its
 * state with a GRU: m_j = Wm n_j + b; a = attn(h, m, mask); h' = GRU(a, h).
 *
 * Invariants: batches are B nodes with K neighbour slots each (padded slots
 * masked out); the node state feeds both the attention query and the GRU,
 * so its gradient is the sum of both paths (dh, owned here). The attention
 * weights of the last forward are exposed: they are the edge scores.
 */
#include "nn.h"

#include <stdlib.h>

int nn_graph_new(nn_graph **out, size_t d_node, size_t d_msg, size_t heads, nn_rng *rng, hf_err *e)
{
    *out = NULL;
    if (!d_node || !d_msg || !heads || d_msg % heads)
        return hf_err_set(e, HF_EUSAGE, "nn: graph layer needs heads (%zu) dividing d_msg (%zu)",
                          heads, d_msg);
    nn_graph *g = calloc(1, sizeof *g);
    if (!g)
        return hf_err_set(e, HF_ENOMEM, "nn: out of memory for graph layer");
    g->d_node = d_node;
    g->d_msg = d_msg;
    g->heads = heads;
    int rc = nn_linear_new(&g->msg, d_node, d_msg, NN_INIT_XAVIER, rng, e);
    if (!rc)
        rc = nn_attn_new(&g->attn, d_node, d_msg, d_msg, heads, rng, e);
    if (!rc)
        rc = nn_gru_new(&g->gru, d_msg, d_node, rng, e);
    if (!rc && !(g->dh = nn_tensor_new(0, 0)))
        rc = hf_err_set(e, HF_ENOMEM, "nn: out of memory for graph layer");
    if (rc) {
        nn_graph_destroy(&g);
        return rc;
    }
    *out = g;
    return 0;
}

void nn_graph_destroy(nn_graph **self_p)
{
    if (!self_p || !*self_p)
        return;
    nn_graph *g = *self_p;
    nn_layer_destroy(&g->msg);
    nn_attn_destroy(&g->attn);
    nn_gru_destroy(&g->gru);
    nn_tensor_destroy(&g->dh);
    free(g);
    *self_p = NULL;
}

int nn_graph_forward(nn_graph *g, const nn_tensor *h, const nn_tensor *nbr, const uint8_t *mask,
                     size_t k, const nn_tensor **hout, hf_err *e)
{
    if (h->cols != g->d_node || nbr->cols != g->d_node || nbr->rows != h->rows * k)
        return hf_err_set(e, HF_EUSAGE,
                          "nn: graph layer wants h Bx%zu and neighbours (B*K)x%zu, got %zux%zu, "
                          "%zux%zu with K=%zu",
                          g->d_node, g->d_node, h->rows, h->cols, nbr->rows, nbr->cols, k);
    const nn_tensor *m, *a;
    int rc = nn_layer_forward(g->msg, nbr, true, &m, e);
    if (!rc)
        rc = nn_attn_forward(g->attn, h, m, mask, k, &a, e);
    if (!rc)
        rc = nn_gru_forward(g->gru, a, h, hout, e);
    return rc;
}

int nn_graph_backward(nn_graph *g, const nn_tensor *dhout, const nn_tensor **dh,
                      const nn_tensor **dnbr, hf_err *e)
{
    const nn_tensor *da, *dh_gru, *dh_att, *dm;
    int rc = nn_gru_backward(g->gru, dhout, &da, &dh_gru, e);
    if (!rc)
        rc = nn_tensor_copy(g->dh, dh_gru, e);
    if (!rc)
        rc = nn_attn_backward(g->attn, da, &dh_att, &dm, e);
    if (!rc)
        rc = nn_layer_backward(g->msg, dm, dnbr, e);
    if (rc)
        return rc;
    for (size_t i = 0, n = nn_tensor_len(g->dh); i < n; i++)
        g->dh->data[i] += dh_att->data[i];
    *dh = g->dh;
    return 0;
}

int nn_graph_params(nn_graph *g, nn_params *p, hf_err *e)
{
    int rc = nn_layer_params(g->msg, "msg.", p, e);
    if (!rc)
        rc = nn_attn_params(g->attn, "attn.", p, e);
    if (!rc)
        rc = nn_gru_params(g->gru, "gru.", p, e);
    return rc;
}

const nn_tensor *nn_graph_attention(const nn_graph *g)
{
    return g->attn->alpha;
}
