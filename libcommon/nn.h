/*
 * nn.h - the small, exact neural-network kit behind the learned parts
 * (edge-score, nav-train, layer-route, consolidate).
 *
 * What it promises:
 *   - Tensors are row-major f32 matrices (rows x cols); a vector is 1 x n.
 *     Data is 64-byte aligned. Products run on OpenBLAS sgemm/sgemv.
 *   - Every layer has a hand-written backward pass, checked against central
 *     finite differences in tests/unit/test_nn*.c. Backward ACCUMULATES into
 *     the per-parameter grad buffers (call nn_params_zero_grad between steps)
 *     and returns the input gradient in a buffer the layer owns.
 *   - A layer's forward output and backward input-gradient are owned by the
 *     layer and stay valid until its next forward/backward call. Layers copy
 *     what they need from their inputs, so callers may reuse input buffers.
 *   - Batching: rows are samples. The graph layer takes B nodes (B x d) with
 *     up to K neighbours each (B*K x d, node b's neighbours in rows b*K..) and
 *     a B x K mask (nonzero = real neighbour, 0 = padded slot).
 *   - Determinism: no global state. All randomness comes from an nn_rng the
 *     caller seeds (parameter init, dropout, Gumbel noise, replay), so a run
 *     is reproducible for a given seed on one thread.
 *   - Errors are values (err.h): fallible functions return 0 or HF_E* and
 *     fill hf_err; nothing prints or exits. Constructors that cannot fail
 *     except for memory (nn_tensor_new) return NULL instead, as CZMQ's do.
 *   - Ownership is CZMQ's: whoever calls x_new owns the result and frees it
 *     with x_destroy(&p), which sets p to NULL. nn_params lists BORROW the
 *     tensors of the model they were collected from.
 */
#ifndef HF_NN_H
#define HF_NN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "err.h"

/* ---------------------------------------------------------------- rng --- */

/* xoshiro256** seeded through splitmix64. Value type; copy it to fork. */
typedef struct nn_rng {
    uint64_t s[4];
} nn_rng;

void nn_rng_seed(nn_rng *r, uint64_t seed);
uint64_t nn_rng_next(nn_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float nn_rng_uniform(nn_rng *r);
/* Uniform in (0, 1): never 0, safe under log. */
double nn_rng_open01(nn_rng *r);
/* Standard normal (Box-Muller, no cached spare so the state is the value). */
float nn_rng_normal(nn_rng *r);
/* Uniform integer in [0, n); n > 0. Unbiased (Lemire). */
uint64_t nn_rng_below(nn_rng *r, uint64_t n);

/* ------------------------------------------------------------- tensor --- */

typedef struct nn_tensor {
    size_t rows, cols;
    size_t cap; /* floats allocated; rows * cols <= cap */
    float *data;
} nn_tensor;

/* Zero-filled rows x cols tensor (0 x 0 allowed). NULL when rows*cols
 * overflows, a side exceeds INT_MAX (BLAS takes int), or memory runs out. */
nn_tensor *nn_tensor_new(size_t rows, size_t cols);
void nn_tensor_destroy(nn_tensor **self_p);
/* Reshape, growing the allocation when needed; contents become unspecified
 * when it grows. Returns 0 or HF_ENOMEM. */
int nn_tensor_resize(nn_tensor *t, size_t rows, size_t cols, hf_err *e);
/* Resize dst to src's shape and copy. */
int nn_tensor_copy(nn_tensor *dst, const nn_tensor *src, hf_err *e);
void nn_tensor_zero(nn_tensor *t);
void nn_tensor_fill(nn_tensor *t, float v);
static inline size_t nn_tensor_len(const nn_tensor *t)
{
    return t->rows * t->cols;
}
static inline float *nn_row(const nn_tensor *t, size_t r)
{
    return t->data + r * t->cols;
}
/* Uniform in [-a, a] / normal with stddev s, drawn from rng in index order. */
void nn_tensor_uniform(nn_tensor *t, float a, nn_rng *rng);
void nn_tensor_normal(nn_tensor *t, float s, nn_rng *rng);
/* C = alpha * op(A) op(B) + beta * C, C already shaped. Shapes are checked:
 * HF_EUSAGE on mismatch. */
int nn_gemm(bool ta, bool tb, float alpha, const nn_tensor *a, const nn_tensor *b, float beta,
            nn_tensor *c, hf_err *e);

/* ------------------------------------------------------------- params --- */

#define NN_NAME_MAX 64

/* One trainable tensor and its gradient, both borrowed from the model. */
typedef struct nn_param {
    char name[NN_NAME_MAX];
    nn_tensor *w;
    nn_tensor *g;
} nn_param;

/* A list of parameters in a fixed order (the model's). Owns only the array. */
typedef struct nn_params {
    nn_param *v;
    size_t n, cap;
} nn_params;

void nn_params_init(nn_params *p);
void nn_params_free(nn_params *p);
/* Append; the name is "prefix" "name" (truncated names are an error). */
int nn_params_add(nn_params *p, const char *prefix, const char *name, nn_tensor *w, nn_tensor *g,
                  hf_err *e);
void nn_params_zero_grad(nn_params *p);
size_t nn_params_count(const nn_params *p); /* total scalars */
nn_param *nn_params_find(const nn_params *p, const char *name);

/* ------------------------------------------------------------- layers --- */

typedef enum {
    NN_LINEAR,
    NN_RELU,
    NN_SIGMOID,
    NN_TANH,
    NN_LAYERNORM,
    NN_SOFTMAX, /* row-wise */
    NN_DROPOUT, /* inverted dropout; identity when not training */
} nn_layer_kind;

typedef enum {
    NN_INIT_XAVIER, /* uniform, limit sqrt(6 / (in + out)); for tanh/sigmoid/linear */
    NN_INIT_HE,     /* normal, stddev sqrt(2 / in); for layers feeding ReLU */
} nn_init;

typedef struct nn_layer {
    nn_layer_kind kind;
    size_t in, out;     /* feature widths; 0 = any (activations) */
    nn_tensor *w, *b;   /* Linear: w is out x in, b is 1 x out. LayerNorm: gamma, beta */
    nn_tensor *gw, *gb; /* their gradients */
    nn_tensor *x;       /* cached input (Linear, LayerNorm) */
    nn_tensor *y;       /* output, owned */
    nn_tensor *dx;      /* input gradient, owned */
    nn_tensor *aux;     /* LayerNorm: per-row rstd (B x 1); Dropout: scaled mask */
    float p;            /* Dropout probability */
    float eps;          /* LayerNorm epsilon */
    bool trained;       /* last forward ran in training mode (Dropout) */
    bool ready;         /* a forward has run since creation */
    nn_rng rng;         /* Dropout's own stream */
} nn_layer;

/* Constructors: *out is owned by the caller. */
int nn_linear_new(nn_layer **out, size_t in, size_t outw, nn_init init, nn_rng *rng, hf_err *e);
int nn_act_new(nn_layer **out, nn_layer_kind kind, hf_err *e); /* RELU/SIGMOID/TANH/SOFTMAX */
int nn_layernorm_new(nn_layer **out, size_t d, float eps, hf_err *e);
int nn_dropout_new(nn_layer **out, float p, uint64_t seed, hf_err *e);
void nn_layer_destroy(nn_layer **self_p);
const char *nn_layer_kind_name(nn_layer_kind k);

/* y = layer(x). *y is owned by the layer (valid until its next forward). */
int nn_layer_forward(nn_layer *l, const nn_tensor *x, bool train, const nn_tensor **y, hf_err *e);
/* Given dL/dy for the last forward, accumulate parameter gradients and set
 * *dx = dL/dx (owned by the layer). */
int nn_layer_backward(nn_layer *l, const nn_tensor *dy, const nn_tensor **dx, hf_err *e);
/* Append the layer's parameters (Linear: "w","b"; LayerNorm: "gamma","beta"). */
int nn_layer_params(nn_layer *l, const char *prefix, nn_params *p, hf_err *e);

/* Sequential container; owns its layers. */
typedef struct nn_seq {
    nn_layer **layers;
    size_t n, cap;
} nn_seq;

int nn_seq_new(nn_seq **out, hf_err *e);
void nn_seq_destroy(nn_seq **self_p);
/* Takes ownership of *layer_p (sets it to NULL), also on failure. */
int nn_seq_add(nn_seq *s, nn_layer **layer_p, hf_err *e);
int nn_seq_forward(nn_seq *s, const nn_tensor *x, bool train, const nn_tensor **y, hf_err *e);
int nn_seq_backward(nn_seq *s, const nn_tensor *dy, const nn_tensor **dx, hf_err *e);
/* Names are "<i>.w", "<i>.b", ... by layer index. */
int nn_seq_params(nn_seq *s, const char *prefix, nn_params *p, hf_err *e);

/* ---------------------------------------------------------- attention --- */

/* Multi-head attention of one query vector per row over a masked set of K
 * key/value vectors: q_b = Wq x_b, k_bj = Wk m_bj, v_bj = Wv m_bj; per head
 * alpha = softmax_j(q.k / sqrt(d_head)) over unmasked j; out = Wo concat(sum
 * alpha v). A row whose slots are all masked gets zero weights (its output
 * is Wo's bias). */
typedef struct nn_attn {
    size_t d_q, d_kv, d_model, heads, d_head;
    nn_layer *wq, *wk, *wv, *wo;
    size_t b, k;   /* shape of the last forward */
    uint8_t *mask; /* copy of the last mask (b*k), 1 = real */
    size_t mask_cap;
    nn_tensor *alpha; /* B x (heads*K): weights, head-major within a row */
    nn_tensor *ctx;   /* B x d_model: concatenated head outputs */
    nn_tensor *dq, *dk, *dv, *dkv;
} nn_attn;

int nn_attn_new(nn_attn **out, size_t d_q, size_t d_kv, size_t d_model, size_t heads, nn_rng *rng,
                hf_err *e);
void nn_attn_destroy(nn_attn **self_p);
/* q: B x d_q; kv: B*K x d_kv; mask: B x K bytes or NULL for "all real". */
int nn_attn_forward(nn_attn *a, const nn_tensor *q, const nn_tensor *kv, const uint8_t *mask,
                    size_t k, const nn_tensor **out, hf_err *e);
/* dq: B x d_q, dkv: B*K x d_kv, both owned by a. */
int nn_attn_backward(nn_attn *a, const nn_tensor *dout, const nn_tensor **dq, const nn_tensor **dkv,
                     hf_err *e);
int nn_attn_params(nn_attn *a, const char *prefix, nn_params *p, hf_err *e);

/* ---------------------------------------------------------------- gru --- */

/* GRU cell (PyTorch's equations):
 *   r = sig(Wi_r x + Wh_r h + b), z = sig(Wi_z x + Wh_z h + b),
 *   n = tanh(Wi_n x + b_in + r * (Wh_n h + b_hn)), h' = (1 - z) n + z h. */
typedef struct nn_gru {
    size_t d_in, d_h;
    nn_layer *wi, *wh;          /* 3*d_h x d_in and 3*d_h x d_h, gate order r, z, n */
    nn_tensor *h0;              /* copy of h */
    nn_tensor *r, *z, *n, *ghn; /* B x d_h each */
    nn_tensor *out;
    nn_tensor *dgi, *dgh, *dh;
} nn_gru;

int nn_gru_new(nn_gru **out, size_t d_in, size_t d_h, nn_rng *rng, hf_err *e);
void nn_gru_destroy(nn_gru **self_p);
int nn_gru_forward(nn_gru *g, const nn_tensor *x, const nn_tensor *h, const nn_tensor **hout,
                   hf_err *e);
int nn_gru_backward(nn_gru *g, const nn_tensor *dhout, const nn_tensor **dx, const nn_tensor **dh,
                    hf_err *e);
int nn_gru_params(nn_gru *g, const char *prefix, nn_params *p, hf_err *e);

/* ------------------------------------------------------- graph layer --- */

/* The RuvectorLayer: m_j = Wm n_j + b; a = attn(h over m_1..m_K, mask);
 * h' = GRU(a, h). Node states are d_node wide, messages d_msg wide. */
typedef struct nn_graph {
    size_t d_node, d_msg, heads;
    nn_layer *msg;
    nn_attn *attn;
    nn_gru *gru;
    nn_tensor *dh; /* B x d_node */
} nn_graph;

int nn_graph_new(nn_graph **out, size_t d_node, size_t d_msg, size_t heads, nn_rng *rng, hf_err *e);
void nn_graph_destroy(nn_graph **self_p);
/* h: B x d_node; nbr: B*K x d_node; mask: B x K or NULL. */
int nn_graph_forward(nn_graph *g, const nn_tensor *h, const nn_tensor *nbr, const uint8_t *mask,
                     size_t k, const nn_tensor **hout, hf_err *e);
int nn_graph_backward(nn_graph *g, const nn_tensor *dhout, const nn_tensor **dh,
                      const nn_tensor **dnbr, hf_err *e);
/* Names: "msg.w", "msg.b", "attn.q.w", ..., "gru.i.w", "gru.h.b". */
int nn_graph_params(nn_graph *g, nn_params *p, hf_err *e);
/* Attention weights of the last forward: B x (heads*K). */
const nn_tensor *nn_graph_attention(const nn_graph *g);

/* ------------------------------------------------------------- optim --- */

typedef struct nn_adam_cfg {
    float beta1, beta2, eps;
    float weight_decay; /* decoupled (AdamW): w -= lr * wd * w; 0 = off */
} nn_adam_cfg;

/* beta1 0.9, beta2 0.999, eps 1e-8, no weight decay. */
nn_adam_cfg nn_adam_defaults(void);

typedef struct nn_adam {
    nn_adam_cfg cfg;
    size_t n;
    nn_tensor **m, **v; /* one per parameter, in list order */
    uint64_t t;
} nn_adam;

/* The parameter list's shapes are fixed from here on. */
int nn_adam_new(nn_adam **out, const nn_params *p, nn_adam_cfg cfg, hf_err *e);
void nn_adam_destroy(nn_adam **self_p);
/* One bias-corrected step with learning rate lr; does not zero grads. */
int nn_adam_step(nn_adam *a, nn_params *p, float lr, hf_err *e);

typedef enum {
    NN_SCHED_CONSTANT,
    NN_SCHED_STEP,   /* lr * gamma^(floor(step / step_size)) */
    NN_SCHED_COSINE, /* min_lr + (lr - min_lr) (1 + cos(pi step / total)) / 2, then min_lr */
} nn_sched_kind;

typedef struct nn_sched {
    nn_sched_kind kind;
    float lr, min_lr, gamma;
    uint64_t step_size, total;
    uint64_t warmup; /* linear from lr/warmup to lr over the first warmup steps,
                      * then `kind` runs on step - warmup */
} nn_sched;

float nn_sched_lr(const nn_sched *s, uint64_t step);

/* -------------------------------------------------------------- losses --- */
/* Each returns the loss in *loss (mean over the batch) and writes dL/dinput
 * into grad tensors it resizes to the input's shape (grad may be NULL). */

int nn_loss_mse(const nn_tensor *pred, const nn_tensor *target, nn_tensor *grad, float *loss,
                hf_err *e);
/* Binary cross-entropy on logits, stable for any magnitude. */
int nn_loss_bce_logits(const nn_tensor *logits, const nn_tensor *target, nn_tensor *grad,
                       float *loss, hf_err *e);
/* InfoNCE on similarity scores: row b of scores (B x (1+N)) holds the
 * positive in column 0 and N negatives after it; loss = mean_b
 * -log softmax(scores_b / temp)[0]. */
int nn_loss_infonce(const nn_tensor *scores, float temp, nn_tensor *grad, float *loss, hf_err *e);
/* Local contrastive loss on squared L2 distances between anchor b (B x D)
 * and its K others (B*K x D): label 1 pulls (max(0, d - pos_margin))^2,
 * label 0 pushes (max(0, neg_margin - d))^2, any other label is ignored;
 * mean over counted pairs. Grads for anchors and others. */
int nn_loss_contrastive(const nn_tensor *anchor, const nn_tensor *others, const int8_t *label,
                        size_t k, float pos_margin, float neg_margin, nn_tensor *ganchor,
                        nn_tensor *gothers, float *loss, hf_err *e);

/* --------------------------------------------- soft (differentiable) --- */

/* y = softmax((logits + g) / tau), g ~ Gumbel(0, 1) from rng, row-wise. */
int nn_gumbel_softmax(const nn_tensor *logits, float tau, nn_rng *rng, nn_tensor *y, hf_err *e);
/* Given the forward's y and tau, ADD dL/dlogits for dL/dy into dlogits
 * (resized and zeroed first when it is not shaped like y). */
int nn_gumbel_softmax_backward(const nn_tensor *y, const nn_tensor *dy, float tau,
                               nn_tensor *dlogits, hf_err *e);

/* Differentiable search: query b (B x D) over its K candidates (B*K x D):
 * w_bj = softmax_j(-||q_b - c_bj||^2 / temp) over unmasked j,
 * out_b = sum_j w_bj c_bj. Fills w (B x K) and out (B x D). */
int nn_soft_search(const nn_tensor *q, const nn_tensor *cand, const uint8_t *mask, size_t k,
                   float temp, nn_tensor *w, nn_tensor *out, hf_err *e);
/* Given dL/dout (may be NULL) and dL/dw (may be NULL), ADD to dq and dcand
 * (pre-shaped like q and cand). w is the forward's. */
int nn_soft_search_backward(const nn_tensor *q, const nn_tensor *cand, const nn_tensor *w, size_t k,
                            float temp, const nn_tensor *dout, const nn_tensor *dw, nn_tensor *dq,
                            nn_tensor *dcand, hf_err *e);

/* ---------------------------------------------------------------- ewc --- */

/* Elastic weight consolidation over a parameter list.
 * Use: for each sample of the old task, compute its gradient and call
 * nn_ewc_accumulate; then nn_ewc_consolidate snapshots theta* and adds the
 * mean of the squared gradients to the stored diagonal Fisher (so several
 * consolidated tasks add up). While training later tasks, nn_ewc_penalty
 * returns lambda/2 sum F (theta - theta*)^2 and adds its gradient. */
typedef struct nn_ewc {
    size_t n;
    nn_tensor **fisher, **acc, **star;
    uint64_t samples; /* accumulated since the last consolidate */
    bool consolidated;
} nn_ewc;

int nn_ewc_new(nn_ewc **out, const nn_params *p, hf_err *e);
void nn_ewc_destroy(nn_ewc **self_p);
int nn_ewc_accumulate(nn_ewc *w, const nn_params *p, hf_err *e);
int nn_ewc_consolidate(nn_ewc *w, const nn_params *p, hf_err *e);
/* *penalty is 0 before the first consolidate. Gradients are added to p's g. */
int nn_ewc_penalty(const nn_ewc *w, nn_params *p, float lambda, float *penalty, hf_err *e);

/* ------------------------------------------------------------- replay --- */

/* Fixed-capacity reservoir of fixed-size items (Vitter's algorithm R): after
 * n insertions every inserted item is held with probability cap/n. */
typedef struct nn_replay {
    size_t cap, item_size, len;
    uint64_t seen;
    unsigned char *items;
    nn_rng rng;
} nn_replay;

int nn_replay_new(nn_replay **out, size_t cap, size_t item_size, uint64_t seed, hf_err *e);
void nn_replay_destroy(nn_replay **self_p);
/* Copies item_size bytes; returns the slot used, or -1 if rejected. */
long nn_replay_add(nn_replay *r, const void *item);
/* Slot i < len; borrowed. */
const void *nn_replay_get(const nn_replay *r, size_t i);
/* k slots drawn uniformly with replacement from the buffer's own stream. */
int nn_replay_sample(nn_replay *r, size_t k, size_t *slots, hf_err *e);

/* ------------------------------------------------------------- memory --- */

/* What a learned model keeps so that later training does not forget it
 * (nn_memory.c; nav-train and layer-route --ewc, --replay): the summed
 * diagonal Fisher of the tasks it was trained on, one value per trainable
 * weight in the model's own parameter order (NULL: none), and a reservoir
 * of past training queries, dim floats each (NULL: none). In a model frame
 * they are the optional pairs fisher, tasks, replay, replay_seen. */
typedef struct nn_memory {
    float *fisher;
    size_t nfisher;
    uint32_t tasks; /* trainings the Fisher sums */
    float *replay;
    size_t nreplay, dim;
    uint64_t replay_seen; /* training queries the reservoir has sampled from */
} nn_memory;
void nn_memory_free(nn_memory *m);
/* The pairs present; returns how many were packed (0, 2 or 4). */
uint32_t nn_memory_pack(const nn_memory *m, msgpack_packer *pk);
/* The optional pairs of a model frame: a fisher must hold nfisher values
 * (finite, >= 0), replay rows dim floats (finite); what names the model in
 * errors. Absent pairs leave the fields empty. */
int nn_memory_unpack(const msgpack_object *obj, const char *what, size_t nfisher, size_t dim,
                     nn_memory *m, hf_err *e);
/* m's reservoir: at most cap queries over old's (may be NULL) and nq new
 * ones (Vitter's algorithm R, seeded). */
int nn_memory_reservoir(nn_memory *m, const nn_memory *old, const float *q, size_t nq, size_t dim,
                        size_t cap, uint64_t seed, hf_err *e);
/* m->fisher: the Fisher of the EWC states w[0..n) end to end. */
int nn_memory_set_fisher(nn_memory *m, nn_ewc *const *w, size_t n, uint32_t tasks, hf_err *e);
/* EWC over p; fisher (nn_params_count(p) values, NULL: no earlier task) is
 * the earlier tasks', with theta* = p's weights now. */
int nn_ewc_from(const nn_params *p, const float *fisher, nn_ewc **out, hf_err *e);

/* ------------------------------------------------------------ model io --- */

/* Frame: map {"t":"model","kind":kind,"v":1,"params":[{"name","rows","cols",
 * "data": bin of little-endian f32}...], <hyperparameters>}. */

#define NN_MODEL_VERSION 1

typedef struct nn_hparam {
    const char *key;
    double val; /* packed as an unsigned integer when integral, else float64 */
} nn_hparam;

int nn_model_pack(msgpack_sbuffer *sb, const char *kind, const nn_hparam *hp, size_t nhp,
                  const nn_params *p, hf_err *e);
/* Key/value pairs packed by the caller (pairs of them, len bytes), written
 * after the hyperparameters: records that are not numbers (a validation
 * table). Readers ignore keys they do not know. */
typedef struct nn_extra {
    const char *data;
    size_t len;
    uint32_t pairs;
} nn_extra;
int nn_model_pack_extra(msgpack_sbuffer *sb, const char *kind, const nn_hparam *hp, size_t nhp,
                        const nn_extra *extra, const nn_params *p, hf_err *e);
/* Check t/kind/v and copy every parameter of p (matched by name, shapes
 * must agree) from the frame. Extra params in the frame are an error. */
int nn_model_unpack_params(const msgpack_object *obj, const char *kind, nn_params *p, hf_err *e);
/* A top-level field of a frame map, NULL when absent (or not a map). */
const msgpack_object *nn_model_field(const msgpack_object *m, const char *key);
/* 1 when the frame's "kind" is the string kind. */
int nn_model_is_kind(const msgpack_object *m, const char *kind);
/* Look up a numeric top-level field; HF_EDATA if missing or not a number. */
int nn_model_hparam(const msgpack_object *obj, const char *key, double *val, hf_err *e);

/* Graph layer ("kind":"graph", hyperparameters d_node, d_msg, heads). */
int nn_graph_pack(nn_graph *g, msgpack_sbuffer *sb, hf_err *e);
int nn_graph_unpack(const msgpack_object *obj, nn_graph **out, hf_err *e);

#endif
