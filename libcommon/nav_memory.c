/*
 * nav_memory.c - the navigation policy's side of continual learning
 * (nav-train --ewc, --replay, --distill; nn.h's nn_memory holds what is
 * kept): EWC over each MLP and the Fisher estimate of a training.
 *
 * The Fisher is the empirical one (squared per-sample gradients of the
 * cloning loss at the trained weights, on at most NAV_FISHER_SAMPLES
 * samples), one value per MLP weight, skip model then stop model, in the
 * kit's parameter order. Tasks add up (multi-task EWC): the penalty of the
 * next training is lambda/2 sum F (theta - theta*)^2 with theta* the
 * weights it starts from.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nav.h"

size_t nav_mlp_scalars(const nav_mlp *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->seq->n; i++) {
        const nn_layer *a = m->seq->layers[i];
        n += (a->w ? nn_tensor_len(a->w) : 0) + (a->b ? nn_tensor_len(a->b) : 0);
    }
    return n;
}

int nav_ewc_new(nav_mlp *m, const float *fisher, nn_ewc **out, hf_err *e)
{
    nn_params pp;
    nn_params_init(&pp);
    int rc = nn_seq_params(m->seq, "", &pp, e);
    if (!rc)
        rc = nn_ewc_from(&pp, fisher, out, e);
    nn_params_free(&pp);
    return rc;
}

int nav_fisher_add(nav_mlp *m, nn_ewc *w, const float *x, const float *y, size_t n, uint64_t seed,
                   hf_err *e)
{
    if (n == 0)
        return 0;
    nn_params pp;
    nn_params_init(&pp);
    nn_tensor *xb = nn_tensor_new(1, m->f), *dy = nn_tensor_new(1, 1);
    int rc = !xb || !dy ? hf_err_set(e, HF_ENOMEM, "out of memory for the Fisher estimate") : 0;
    if (!rc)
        rc = nn_seq_params(m->seq, "", &pp, e);
    nn_rng rg;
    nn_rng_seed(&rg, seed);
    size_t take = n < NAV_FISHER_SAMPLES ? n : NAV_FISHER_SAMPLES;
    for (size_t s = 0; s < take && !rc; s++) {
        size_t i = take == n ? s : (size_t)nn_rng_below(&rg, n);
        memcpy(xb->data, x + i * m->f, m->f * sizeof(float));
        const nn_tensor *out = NULL, *dx = NULL;
        if ((rc = nn_seq_forward(m->seq, xb, true, &out, e)))
            break;
        double z = out->data[0];
        dy->data[0] = (float)(1.0 / (1.0 + exp(-z)) - y[i]);
        nn_params_zero_grad(&pp);
        if ((rc = nn_seq_backward(m->seq, dy, &dx, e)) || (rc = nn_ewc_accumulate(w, &pp, e)))
            break;
    }
    if (!rc)
        rc = nn_ewc_consolidate(w, &pp, e);
    nn_params_free(&pp);
    nn_tensor_destroy(&xb);
    nn_tensor_destroy(&dy);
    return rc;
}
