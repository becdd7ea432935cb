/*
 * edge_prune.c - keep the best-scored level-0 edges up to a budget, then
 * make the graph navigable again.
 *
 * Selection is global, not per node: the budget goes to the edges with the
 * highest scores wherever they are, after every node has kept its best
 * max(min_keep, ceil(min_frac * deg)): a floor, so no region is stripped
 * bare because its edges look useless to the few queries that pass by
 * (without it the learned graph lost recall at large ef). No node keeps
 * more than max_out out-edges, so the result fits the classic graph's link
 * slots (a larger node record costs cache misses at equal distance counts).
 * A second floor
 * keeps each node's best min(min_in, in-degree) in-edges: a node that is
 * rarely a training query's neighbour gets low scores on all its in-edges,
 * and a score-only cut left such nodes nearly unreachable (recall stopped
 * climbing with ef). `protect` keeps each node's nearest edges outright
 * (measured: no effect once the model is trained; kept as an option). Pruning
 * can cut a node off from the entry point; reachability is restored by BFS
 * from the entry and, for each node still unreached, putting back its
 * best-scored input in-edge whose source is already reached (then BFS on from
 * there). Repairs cost edges, so the selection is redone with the budget
 * lowered by the overshoot until the repaired graph fits (or the floor alone
 * exceeds the budget). Nodes the input graph itself cannot reach stay
 * unreached and are counted.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edge.h"

/* A plain array of (score, id) pairs sorts faster than ids through a pointer. */
typedef struct scored {
    float s;
    uint32_t hi, lo; /* 64-bit edge id split to keep the struct 12 bytes */
} scored;

static int scored_cmp(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->s != y->s)
        return (x->s < y->s) - (x->s > y->s); /* descending score */
    uint64_t ix = ((uint64_t)x->hi << 32) | x->lo, iy = ((uint64_t)y->hi << 32) | y->lo;
    return (ix > iy) - (ix < iy);
}

static size_t bfs(const edge_graph *g, const uint8_t *keep, uint8_t *reach, uint32_t *queue,
                  size_t qn, size_t count)
{
    size_t qh = 0;
    while (qh < qn) {
        uint32_t v = queue[qh++];
        for (uint64_t x = g->off[v]; x < g->off[v + 1]; x++) {
            if (keep && !keep[x])
                continue;
            uint32_t u = g->dst[x];
            if (!reach[u]) {
                reach[u] = 1;
                queue[qn++] = u;
                count++;
            }
        }
    }
    return count;
}

size_t edge_reachable(const edge_graph *g, const uint8_t *keep, uint32_t entry, uint8_t *reach)
{
    if (g->n == 0 || entry >= g->n)
        return 0;
    uint8_t *r = reach ? reach : calloc(g->n, 1);
    uint32_t *queue = malloc(g->n * sizeof *queue);
    if (!r || !queue) {
        if (!reach)
            free(r);
        free(queue);
        return 0;
    }
    if (reach)
        memset(r, 0, g->n);
    r[entry] = 1;
    queue[0] = entry;
    size_t c = bfs(g, keep, r, queue, 1, 1);
    if (!reach)
        free(r);
    free(queue);
    return c;
}

/* Restore reachability; returns the number of edges put back. A put-back
 * edge comes from a source below the degree cap when one can reach the
 * node: over the cap the node's record would not fit the classic link
 * block, and the whole graph would take a larger M0 for one node. outdeg
 * (n) is scratch. */
static size_t repair(const edge_graph *g, const float *score, const uint64_t *in_off,
                     const uint64_t *in_edge, const uint32_t *src, uint32_t entry, uint32_t cap,
                     uint8_t *keep, uint8_t *reach, uint32_t *queue, uint32_t *outdeg,
                     size_t *unreached)
{
    for (size_t i = 0; i < g->n; i++) {
        outdeg[i] = 0;
        for (uint64_t x = g->off[i]; x < g->off[i + 1]; x++)
            outdeg[i] += keep[x];
    }
    memset(reach, 0, g->n);
    reach[entry] = 1;
    queue[0] = entry;
    size_t count = bfs(g, keep, reach, queue, 1, 1), added = 0;
    int changed = 1;
    while (changed && count < g->n) {
        changed = 0;
        for (size_t u = 0; u < g->n; u++) {
            if (reach[u])
                continue;
            uint64_t best = UINT64_MAX, over = UINT64_MAX;
            for (uint64_t y = in_off[u]; y < in_off[u + 1]; y++) {
                uint64_t x = in_edge[y];
                if (!reach[src[x]])
                    continue;
                uint64_t *b = outdeg[src[x]] < cap ? &best : &over;
                if (*b == UINT64_MAX || score[x] > score[*b])
                    *b = x;
            }
            if (best == UINT64_MAX)
                best = over; /* every reaching source is full: exceed the cap */
            if (best == UINT64_MAX)
                continue;
            keep[best] = 1;
            outdeg[src[best]]++;
            added++;
            reach[u] = 1;
            queue[0] = (uint32_t)u;
            count = bfs(g, keep, reach, queue, 1, count + 1);
            changed = 1;
        }
    }
    *unreached = g->n - count;
    return added;
}

/* A repair that had to exceed the degree cap (every source reaching the
 * node was full) is undone where another edge can go instead: the full
 * source drops its lowest-scored kept edge whose target stays reachable
 * without it (checked by a full walk), so every node fits the classic link
 * block again. Returns the edges dropped; what cannot be fixed stays. */
static size_t enforce_cap(const edge_graph *g, const float *score, uint32_t entry, uint32_t cap,
                          uint8_t *keep, uint8_t *reach, uint32_t *queue)
{
    size_t dropped = 0, all = 0;
    memset(reach, 0, g->n);
    reach[entry] = 1;
    queue[0] = entry;
    all = bfs(g, keep, reach, queue, 1, 1);
    size_t walks = 0; /* each try is a full walk: bounded, a tight cap leaves the rest */
    for (size_t i = 0; i < g->n; i++) {
        uint32_t d = 0;
        for (uint64_t x = g->off[i]; x < g->off[i + 1]; x++)
            d += keep[x];
        while (d > cap && walks < 256) {
            /* candidates in rising score order; the first that keeps every
             * node reachable goes */
            int done = 0;
            for (int tries = 0; tries < 8 && !done; tries++) {
                uint64_t worst = UINT64_MAX;
                for (uint64_t x = g->off[i]; x < g->off[i + 1]; x++)
                    if (keep[x] == 1 && (worst == UINT64_MAX || score[x] < score[worst]))
                        worst = x;
                if (worst == UINT64_MAX)
                    break;
                keep[worst] = 0;
                walks++;
                memset(reach, 0, g->n);
                reach[entry] = 1;
                queue[0] = entry;
                if (bfs(g, keep, reach, queue, 1, 1) == all) {
                    done = 1;
                    d--;
                    dropped++;
                } else {
                    keep[worst] = 2; /* needed: kept, not tried again */
                }
            }
            if (!done)
                break;
        }
        for (uint64_t x = g->off[i]; x < g->off[i + 1]; x++)
            keep[x] = keep[x] != 0;
    }
    return dropped;
}

/* The floor: every node's nearest `protect` edges, then, in score order,
 * edges that a node needs for its out-degree floor max(min_keep,
 * ceil(min_frac * deg)) or its target needs for the in-degree floor
 * min(min_in, candidate in-degree). Returns the edges kept. */
static size_t floor_pass(const edge_graph *g, const scored *order, const uint32_t *src,
                         const uint64_t *in_off, const edge_prune_cfg *c, float min_frac,
                         uint8_t *keep, uint32_t *cnt, uint32_t *incnt)
{
    size_t n = g->n, ne = g->nedges, kept = 0;
    memset(keep, 0, ne);
    memset(cnt, 0, n * sizeof *cnt);
    memset(incnt, 0, n * sizeof *incnt);
    uint32_t cap = c->max_out ? c->max_out : UINT32_MAX;
    for (size_t i = 0; i < n; i++)
        for (uint64_t x = g->off[i];
             x < g->off[i + 1] && x < g->off[i] + c->protect && cnt[i] < cap; x++) {
            keep[x] = 1;
            cnt[i]++;
            incnt[g->dst[x]]++;
            kept++;
        }
    for (uint64_t r = 0; r < ne; r++) {
        uint64_t x = ((uint64_t)order[r].hi << 32) | order[r].lo;
        if (keep[x])
            continue;
        uint32_t i = src[x], j = g->dst[x], deg = (uint32_t)(g->off[i + 1] - g->off[i]);
        uint32_t fl = (uint32_t)ceilf(min_frac * (float)deg);
        uint32_t ind = (uint32_t)(in_off[j + 1] - in_off[j]);
        uint32_t infl = c->min_in < ind ? c->min_in : ind;
        if (cnt[i] < cap && (cnt[i] < (fl > c->min_keep ? fl : c->min_keep) || incnt[j] < infl)) {
            cnt[i]++;
            incnt[j]++;
            keep[x] = 1;
            kept++;
        }
    }
    return kept;
}

int edge_prune(const edge_graph *g, const float *score, size_t budget, const edge_prune_cfg *cfg,
               uint32_t entry, uint8_t *keep, edge_prune_stats *st, hf_err *e)
{
    memset(st, 0, sizeof *st);
    size_t n = g->n, ne = g->nedges;
    memset(keep, 0, ne ? ne : 1);
    if (n == 0 || ne == 0)
        return 0;
    if (entry >= n)
        return hf_err_set(e, HF_EDATA, "entry point %u outside the graph", entry);
    edge_prune_cfg c = *cfg;
    scored *order = malloc(ne * sizeof *order);
    uint32_t *src = malloc(ne * sizeof *src);
    uint64_t *in_off = calloc(n + 1, sizeof *in_off);
    uint64_t *in_edge = malloc(ne * sizeof *in_edge);
    uint32_t *cnt = malloc(n * sizeof *cnt);
    uint32_t *incnt = malloc(n * sizeof *incnt);
    uint8_t *reach = malloc(n);
    uint32_t *queue = malloc(n * sizeof *queue);
    int rc = 0;
    if (!order || !src || !in_off || !in_edge || !cnt || !incnt || !reach || !queue) {
        rc = hf_err_set(e, HF_ENOMEM, "out of memory pruning edges");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        for (uint64_t x = g->off[i]; x < g->off[i + 1]; x++) {
            src[x] = (uint32_t)i;
            in_off[g->dst[x] + 1]++;
        }
    for (size_t i = 0; i < n; i++)
        in_off[i + 1] += in_off[i];
    memset(cnt, 0, n * sizeof *cnt);
    for (uint64_t x = 0; x < ne; x++)
        in_edge[in_off[g->dst[x]] + cnt[g->dst[x]]++] = x;
    for (uint64_t x = 0; x < ne; x++) {
        float s = score[x];
        order[x] = (scored){s == s ? s : -1e30f, (uint32_t)(x >> 32), (uint32_t)x};
    }
    qsort(order, ne, sizeof *order, scored_cmp);

    /* The floor may not take more than the budget: scale the out-degree
     * fraction down, then give up the in-degree floor, then protection. */
    float min_frac = c.min_frac;
    for (int it = 0; it < 96; it++) {
        size_t fs = floor_pass(g, order, src, in_off, &c, min_frac, keep, cnt, incnt);
        if (fs <= budget)
            break;
        if (min_frac > 0.01f)
            min_frac = it >= 60 ? 0.0f : min_frac * 0.97f * (float)budget / (float)fs;
        else if (c.min_in > 0)
            c.min_in--;
        else if (c.protect > 0)
            c.protect--;
        else if (c.min_keep > 0)
            c.min_keep--;
        else
            break;
        if (min_frac <= 0.01f)
            min_frac = 0.0f;
    }
    size_t target = budget;
    for (size_t round = 1; round <= 32; round++) {
        size_t kept = floor_pass(g, order, src, in_off, &c, min_frac, keep, cnt, incnt);
        size_t floor_kept = kept;
        uint32_t cap = c.max_out ? c.max_out : UINT32_MAX;
        for (uint64_t r = 0; r < ne && kept < target; r++) {
            uint64_t x = ((uint64_t)order[r].hi << 32) | order[r].lo;
            if (!keep[x] && cnt[src[x]] < cap) {
                keep[x] = 1;
                cnt[src[x]]++;
                kept++;
            }
        }
        size_t unreached = 0;
        size_t added =
            repair(g, score, in_off, in_edge, src, entry, cap, keep, reach, queue, cnt, &unreached);
        if (added && c.max_out)
            added -= enforce_cap(g, score, entry, cap, keep, reach, queue);
        st->rounds = round;
        st->repaired = added;
        st->kept = kept + added;
        st->unreachable = unreached;
        if (st->kept <= budget || target <= floor_kept)
            break;
        size_t over = st->kept - budget;
        target = target > floor_kept + over ? target - over : floor_kept;
    }
out:
    free(order);
    free(src);
    free(in_off);
    free(in_edge);
    free(cnt);
    free(incnt);
    free(reach);
    free(queue);
    return rc;
}
