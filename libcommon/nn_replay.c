/*
 * nn_replay.c - a replay buffer with reservoir sampling (Vitter's algorithm
 * R), so consolidation can rehearse old (query, neighbours) examples.
 *
 * Invariants: items are fixed-size byte blobs stored contiguously; len <=
 * cap; after `seen` insertions each inserted item is present with
 * probability cap/seen, independent of arrival order. The buffer draws from
 * its own seeded stream, so its contents are a function of the seed and
 * the items' order.
 */
#include "nn.h"

#include <stdlib.h>
#include <string.h>

int nn_replay_new(nn_replay **out, size_t cap, size_t item_size, uint64_t seed, hf_err *e)
{
    *out = NULL;
    if (cap == 0 || item_size == 0)
        return hf_err_set(e, HF_EUSAGE, "nn: replay buffer needs nonzero capacity and item size");
    if (cap > SIZE_MAX / item_size)
        return hf_err_set(e, HF_ENOMEM, "nn: replay buffer %zu x %zu bytes too large", cap,
                          item_size);
    nn_replay *r = calloc(1, sizeof *r);
    if (!r || !(r->items = malloc(cap * item_size))) {
        free(r);
        return hf_err_set(e, HF_ENOMEM, "nn: out of memory for replay buffer");
    }
    r->cap = cap;
    r->item_size = item_size;
    nn_rng_seed(&r->rng, seed);
    *out = r;
    return 0;
}

void nn_replay_destroy(nn_replay **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->items);
    free(*self_p);
    *self_p = NULL;
}

long nn_replay_add(nn_replay *r, const void *item)
{
    r->seen++;
    size_t slot;
    if (r->len < r->cap) {
        slot = r->len++;
    } else {
        uint64_t j = nn_rng_below(&r->rng, r->seen);
        if (j >= r->cap)
            return -1;
        slot = (size_t)j;
    }
    memcpy(r->items + slot * r->item_size, item, r->item_size);
    return (long)slot;
}

const void *nn_replay_get(const nn_replay *r, size_t i)
{
    return i < r->len ? r->items + i * r->item_size : NULL;
}

int nn_replay_sample(nn_replay *r, size_t k, size_t *slots, hf_err *e)
{
    if (r->len == 0 && k > 0)
        return hf_err_set(e, HF_EUSAGE, "nn: sampling from an empty replay buffer");
    for (size_t i = 0; i < k; i++)
        slots[i] = (size_t)nn_rng_below(&r->rng, r->len);
    return 0;
}
