/*
 * hnsw_heap.h - binary heaps of (distance, id) used by build and search.
 * Internal to the hnsw_*.c files. A max-heap keeps the current best results
 * (its top is the worst kept); a min-heap keeps candidates to expand.
 * Storage is caller-provided so the hot path never allocates.
 */
#ifndef HF_HNSW_HEAP_H
#define HF_HNSW_HEAP_H

#include "hnsw.h"

typedef struct hheap {
    hnsw_hit *a;
    size_t n, cap;
} hheap;

static inline void hmax_push(hheap *h, float d, uint32_t id)
{
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->a[p].d >= d)
            break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i].d = d;
    h->a[i].id = id;
}

static inline void hmax_pop(hheap *h)
{
    hnsw_hit last = h->a[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && h->a[c + 1].d > h->a[c].d)
            c++;
        if (h->a[c].d <= last.d)
            break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (n > 0)
        h->a[i] = last;
}

static inline void hmin_push(hheap *h, float d, uint32_t id)
{
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->a[p].d <= d)
            break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i].d = d;
    h->a[i].id = id;
}

static inline void hmin_pop(hheap *h)
{
    hnsw_hit last = h->a[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && h->a[c + 1].d < h->a[c].d)
            c++;
        if (h->a[c].d >= last.d)
            break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (n > 0)
        h->a[i] = last;
}

/* Visited marks by epoch: a node is visited when mark == epoch; bumping the
 * epoch clears the set in O(1), with a real clear on wrap-around. */
typedef struct visited {
    uint16_t *mark;
    uint16_t epoch;
    size_t n;
} visited;

static inline void visited_next(visited *v)
{
    if (++v->epoch == 0) {
        for (size_t i = 0; i < v->n; i++)
            v->mark[i] = 0;
        v->epoch = 1;
    }
}

static inline int visited_test_set(visited *v, uint32_t id)
{
    if (v->mark[id] == v->epoch)
        return 1;
    v->mark[id] = v->epoch;
    return 0;
}

/* Visited set as a bitset, cleared per search: 16 times smaller than the
 * epoch marks, so a search's random probes stay in L1/L2 (200k nodes: 25 KB)
 * and clearing costs n/8 bytes of memset. */
typedef struct visited_bits {
    uint64_t *w;
    size_t words;
} visited_bits;

static inline void visited_bits_clear(visited_bits *v)
{
    memset(v->w, 0, v->words * sizeof(uint64_t));
}

static inline int visited_bits_test_set(visited_bits *v, uint32_t id)
{
    uint64_t m = (uint64_t)1 << (id & 63), *w = v->w + (id >> 6);
    if (*w & m)
        return 1;
    *w |= m;
    return 0;
}

#endif
