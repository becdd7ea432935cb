/*
 * nn_optim.c - Adam (bias-corrected, optional decoupled weight decay as in
 * AdamW) and learning-rate schedules.
 *
 * Invariants: the optimiser's moment tensors line up one-to-one with the
 * parameter list it was created from; a step checks the list still has the
 * same length and shapes. Steps never zero gradients (the caller owns that
 * choice, so gradients may be accumulated over micro-batches). Schedules
 * are pure functions of the step number, so resuming needs only the step.
 */
#include "nn.h"

#include <math.h>
#include <stdlib.h>

nn_adam_cfg nn_adam_defaults(void)
{
    return (nn_adam_cfg){.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f};
}

int nn_adam_new(nn_adam **out, const nn_params *p, nn_adam_cfg cfg, hf_err *e)
{
    *out = NULL;
    if (!(cfg.beta1 >= 0.0f && cfg.beta1 < 1.0f && cfg.beta2 >= 0.0f && cfg.beta2 < 1.0f &&
          cfg.eps > 0.0f && cfg.weight_decay >= 0.0f))
        return hf_err_set(e, HF_EUSAGE, "nn: Adam needs betas in [0, 1), eps > 0, wd >= 0");
    nn_adam *a = calloc(1, sizeof *a);
    if (!a)
        return hf_err_set(e, HF_ENOMEM, "nn: out of memory for Adam");
    a->cfg = cfg;
    a->n = p->n;
    a->m = calloc(p->n ? p->n : 1, sizeof *a->m);
    a->v = calloc(p->n ? p->n : 1, sizeof *a->v);
    if (!a->m || !a->v) {
        nn_adam_destroy(&a);
        return hf_err_set(e, HF_ENOMEM, "nn: out of memory for Adam");
    }
    for (size_t i = 0; i < p->n; i++) {
        a->m[i] = nn_tensor_new(p->v[i].w->rows, p->v[i].w->cols);
        a->v[i] = nn_tensor_new(p->v[i].w->rows, p->v[i].w->cols);
        if (!a->m[i] || !a->v[i]) {
            nn_adam_destroy(&a);
            return hf_err_set(e, HF_ENOMEM, "nn: out of memory for Adam");
        }
    }
    *out = a;
    return 0;
}

void nn_adam_destroy(nn_adam **self_p)
{
    if (!self_p || !*self_p)
        return;
    nn_adam *a = *self_p;
    for (size_t i = 0; i < a->n; i++) {
        if (a->m)
            nn_tensor_destroy(&a->m[i]);
        if (a->v)
            nn_tensor_destroy(&a->v[i]);
    }
    free(a->m);
    free(a->v);
    free(a);
    *self_p = NULL;
}

int nn_adam_step(nn_adam *a, nn_params *p, float lr, hf_err *e)
{
    if (p->n != a->n)
        return hf_err_set(e, HF_EUSAGE, "nn: Adam built for %zu parameters, given %zu", a->n, p->n);
    for (size_t i = 0; i < p->n; i++)
        if (nn_tensor_len(p->v[i].w) != nn_tensor_len(a->m[i]))
            return hf_err_set(e, HF_EUSAGE, "nn: Adam: parameter %s changed shape", p->v[i].name);
    a->t++;
    const nn_adam_cfg *c = &a->cfg;
    /* Bias corrections in double: beta2^t underflows slowly but 1 - beta2^t
     * loses digits in float for small t. */
    double bc1 = 1.0 - pow(c->beta1, (double)a->t);
    double bc2 = 1.0 - pow(c->beta2, (double)a->t);
    float step = (float)(lr / bc1);
    float rbc2 = (float)(1.0 / sqrt(bc2));
    for (size_t i = 0; i < p->n; i++) {
        float *w = p->v[i].w->data, *g = p->v[i].g->data;
        float *m = a->m[i]->data, *v = a->v[i]->data;
        for (size_t j = 0, n = nn_tensor_len(p->v[i].w); j < n; j++) {
            m[j] = c->beta1 * m[j] + (1.0f - c->beta1) * g[j];
            v[j] = c->beta2 * v[j] + (1.0f - c->beta2) * g[j] * g[j];
            if (c->weight_decay > 0.0f)
                w[j] -= lr * c->weight_decay * w[j];
            w[j] -= step * m[j] / (sqrtf(v[j]) * rbc2 + c->eps);
        }
    }
    return 0;
}

static float sched_inner(const nn_sched *s, uint64_t step)
{
    switch (s->kind) {
    case NN_SCHED_STEP:
        if (s->step_size == 0)
            return s->lr;
        return s->lr * powf(s->gamma, (float)(step / s->step_size));
    case NN_SCHED_COSINE:
        if (s->total == 0 || step >= s->total)
            return s->min_lr;
        return s->min_lr + (s->lr - s->min_lr) * 0.5f *
                               (1.0f + (float)cos(M_PI * (double)step / (double)s->total));
    case NN_SCHED_CONSTANT:
    default: return s->lr;
    }
}

float nn_sched_lr(const nn_sched *s, uint64_t step)
{
    if (step < s->warmup)
        return s->lr * (float)(step + 1) / (float)s->warmup;
    return sched_inner(s, step - s->warmup);
}
