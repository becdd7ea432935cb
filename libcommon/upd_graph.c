/*
 * upd_graph.c - the live index (upd.h): single-threaded insertion into free
 * or new slots, and true deletion with graph repair.
 *
 * Insertion is the build's (hnsw_build.c): greedy descent, a beam of
 * ef_construction per level, the neighbour heuristic, links back with
 * pruning. It is a copy without locks rather than a call into hnsw_build
 * because it must (a) write into a reused slot, (b) never pick a PENDING
 * node as a neighbour, and (c) cost O(degree) per insert where hnsw_build
 * costs O(n) per call (locks and a reachability walk over the whole graph).
 *
 * Deletion is FreshDiskANN's consolidation (Singh et al. 2021, DiskANN
 * consolidate_deletes): a delete only tombstones the node; a pass then, for
 * every live node p whose list at level l holds deleted nodes, takes as
 * candidates p's live neighbours and the live neighbours of its deleted
 * ones (through a chain of deleted nodes when those neighbours are deleted
 * too), and re-prunes them to the level's degree with the build heuristic,
 * then tops the list up to the degree it had with the nearest candidates the
 * heuristic passed over (so repeated repairs do not thin the graph out).
 * Why this and not IP-DiskANN's in-place search or Redis's pairing of the
 * deleted node's neighbours: the candidates are exactly the paths the
 * deleted node used to provide, the heuristic is the one that built the
 * graph (so a repaired list looks like a freshly built one: diverse
 * directions, no degree creep), and batching makes it cheap: one scan of
 * the link lists finds every affected node for a whole batch of deletes,
 * and each affected list is re-pruned once however many of its neighbours
 * went. A pass then frees the slots (no edge points to them any more),
 * moves the entry point to a live node of the top level when it was
 * deleted, and links every live node a level-0 walk misses from its nearest
 * reachable neighbour, so a pass always ends fully connected.
 *
 * Slots: a freed slot keeps its upper-level link storage (cap_level says
 * how many levels it owns); a reused slot gets new storage only when its
 * drawn level needs more. Levels are drawn from (seed, insert counter).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hnsw_heap.h"
#include "quant.h"
#include "upd.h"

struct upd_index {
    hnsw *h;
    hnsw_ids *ids;
    uint8_t *state;     /* per slot, UPD_* */
    uint8_t *cap_level; /* upper levels of storage the slot owns */
    size_t scap;        /* entries of state/cap_level/mark */
    uint32_t *freel;    /* FREE slots, a stack */
    size_t nfree, free_cap;
    uint32_t *pend; /* PENDING slots */
    size_t npend, pend_cap;
    size_t live;
    /* reachability certificate: a tree of level-0 edges from the entry
     * (parent per slot). A removed edge that was a node's parent edge makes
     * the node an orphan; the end of a frame re-attaches orphans from their
     * own neighbours, and walks the whole graph only when that fails */
    uint32_t *parent, *pred; /* pred: scratch of attach_by_search */
    uint8_t *orphan;
    uint32_t *orph; /* orphans, a stack (may hold stale entries) */
    size_t norph, orph_cap;
    int tree_ok;    /* 0: no certificate (the next check walks the graph) */
    uint64_t draws; /* level draws so far */
    int reorder;    /* started empty: order the dimensions once enough rows came */
    /* scratch */
    uint32_t *mark; /* epoch marks per slot */
    uint32_t epoch;
    hheap cand, res;
    hnsw_hit *sorted, *pool;
    size_t pool_cap;
    uint32_t *sel, *copy, *todo;
    uint64_t *work; /* level-0 lists to repair, (first deleted member, slot) */
    size_t work_cap;
    hnsw_searcher *srch;
    size_t srch_n, srch_ef;
    upd_stats st;
};

const hnsw *upd_graph(const upd_index *u)
{
    return u->h;
}
size_t upd_nlive(const upd_index *u)
{
    return u->live;
}
size_t upd_pending(const upd_index *u)
{
    return u->npend;
}
const upd_stats *upd_get_stats(const upd_index *u)
{
    return &u->st;
}
uint64_t upd_ext_id(const upd_index *u, uint32_t slot)
{
    return u->ids->ext[slot];
}
uint32_t upd_slot_of(const upd_index *u, uint64_t ext)
{
    return hnsw_ids_find(u->ids, ext);
}
int upd_state(const upd_index *u, uint32_t slot)
{
    return u->state[slot];
}

static int push_u32(uint32_t **a, size_t *n, size_t *cap, uint32_t v)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        uint32_t *x = realloc(*a, nc * sizeof *x);
        if (!x)
            return -1;
        *a = x;
        *cap = nc;
    }
    (*a)[(*n)++] = v;
    return 0;
}

/* *p grown to n entries of size bytes; 0, or -1 with *p unchanged. */
static int grow(void *p, size_t n, size_t size)
{
    void *x = realloc(*(void **)p, n * size);
    if (!x)
        return -1;
    *(void **)p = x;
    return 0;
}

/* Per-slot arrays follow the graph's capacity. */
static int ensure_slots(upd_index *u, hf_err *e)
{
    size_t need = u->h->cap > u->h->n ? u->h->cap : u->h->n;
    if (need <= u->scap)
        return 0;
    if (grow(&u->state, need, 1) || grow(&u->cap_level, need, 1) ||
        grow(&u->mark, need, sizeof *u->mark) || grow(&u->parent, need, sizeof *u->parent) ||
        grow(&u->orphan, need, 1) || grow(&u->pred, need, sizeof *u->pred))
        return hf_err_set(e, HF_ENOMEM, "out of memory for %zu slots", need);
    for (size_t i = u->scap; i < need; i++)
        u->parent[i] = HNSW_NONE;
    memset(u->orphan + u->scap, 0, need - u->scap);
    memset(u->state + u->scap, UPD_FREE, need - u->scap);
    memset(u->cap_level + u->scap, 0, need - u->scap);
    memset(u->mark + u->scap, 0, (need - u->scap) * sizeof *u->mark);
    u->scap = need;
    return 0;
}

#define REACH_EF 64
/* rows an index started empty takes its dimension order from */
#define UPD_REORDER_ROWS 1000

static int scratch_init(upd_index *u, hf_err *e)
{
    const hnsw *h = u->h;
    /* the beam of an insert, or of the reachability repair (REACH_EF) */
    size_t ef = (h->p.ef_construction > REACH_EF ? h->p.ef_construction : REACH_EF) + 2;
    u->res.cap = ef + 1;
    u->res.a = malloc(u->res.cap * sizeof(hnsw_hit));
    u->cand.cap = 4 * ef + 64;
    u->cand.a = malloc(u->cand.cap * sizeof(hnsw_hit));
    u->sorted = malloc((ef + 1) * sizeof(hnsw_hit));
    u->pool_cap = 8 * (size_t)h->p.M0 + 8;
    u->pool = malloc(u->pool_cap * sizeof(hnsw_hit));
    u->sel = malloc((h->p.M0 + 2) * sizeof(uint32_t));
    u->copy = malloc((h->p.M0 + 2) * sizeof(uint32_t));
    u->todo = malloc((h->p.M0 + 2) * sizeof(uint32_t));
    if (!u->res.a || !u->cand.a || !u->sorted || !u->pool || !u->sel || !u->copy || !u->todo)
        return hf_err_set(e, HF_ENOMEM, "out of memory for the live index's scratch");
    return 0;
}

void upd_destroy(upd_index **up)
{
    if (!up || !*up)
        return;
    upd_index *u = *up;
    hnsw_destroy(&u->h);
    hnsw_ids_destroy(&u->ids);
    free(u->state);
    free(u->cap_level);
    free(u->freel);
    free(u->pend);
    free(u->mark);
    free(u->parent);
    free(u->pred);
    free(u->orphan);
    free(u->orph);
    free(u->cand.a);
    free(u->res.a);
    free(u->sorted);
    free(u->pool);
    free(u->sel);
    free(u->copy);
    free(u->todo);
    free(u->work);
    hnsw_searcher_destroy(&u->srch);
    free(u);
    *up = NULL;
}

static void drop_codes(hnsw *h)
{
    quant_destroy(&h->codes);
    free(h->cblock);
    free(h->clinks);
    free(h->cloff);
    h->cblock = NULL;
    h->clinks = NULL;
    h->cloff = NULL;
    h->cnode_bytes = h->clinks_len = 0;
    h->codes_exact = 0;
}

int upd_new(hnsw *h, hnsw_ids *ids, upd_index **out, hf_err *e)
{
    *out = NULL;
    upd_index *u = calloc(1, sizeof *u);
    if (!u) {
        hnsw_destroy(&h);
        hnsw_ids_destroy(&ids);
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    }
    u->h = h;
    u->ids = ids;
    int rc = 0;
    if (h->ext_id)
        rc = hf_err_set(e, HF_EUSAGE, "a reordered graph cannot take updates");
    if (rc == 0 && !u->ids)
        rc = hnsw_ids_new(&u->ids, e);
    if (rc == 0 && u->ids->n == 0 && !ids)
        rc = hnsw_ids_resize(u->ids, h->n, e);
    if (rc == 0 && u->ids->n != h->n)
        rc = hf_err_set(e, HF_EDATA, "index has %zu ids for %zu nodes", u->ids->n, h->n);
    if (rc == 0)
        rc = ensure_slots(u, e);
    if (rc == 0)
        rc = scratch_init(u, e);
    drop_codes(h);
    for (size_t i = 0; rc == 0 && i < h->n; i++) {
        u->cap_level[i] = h->levels[i];
        if (h->deleted[i]) {
            u->state[i] = UPD_PENDING;
            if (push_u32(&u->pend, &u->npend, &u->pend_cap, (uint32_t)i))
                rc = hf_err_set(e, HF_ENOMEM, "out of memory");
        } else {
            u->state[i] = UPD_LIVE;
            u->live++;
            rc = hnsw_ids_bind(u->ids, (uint32_t)i, u->ids->ext[i], e);
        }
    }
    u->draws = h->n;
    if (rc) {
        upd_destroy(&u);
        return rc;
    }
    *out = u;
    return 0;
}

int upd_create(const hnsw_params *p, size_t dim, upd_index **out, hf_err *e)
{
    hnsw *h = NULL;
    *out = NULL;
    int rc = hnsw_new(p, dim, &h, e);
    if (rc == 0)
        rc = upd_new(h, NULL, out, e);
    if (rc == 0)
        (*out)->reorder = 1;
    return rc;
}

/* ---- insertion ---- */

static uint32_t next_epoch(upd_index *u)
{
    if (++u->epoch == 0) {
        memset(u->mark, 0, u->scap * sizeof *u->mark);
        u->epoch = 1;
    }
    return u->epoch;
}

/* x lost its certificate (or never had one): the end of the frame finds it a
 * new parent. Out of memory only costs a full walk. */
static void make_orphan(upd_index *u, uint32_t x)
{
    if (u->orphan[x])
        return;
    u->orphan[x] = 1;
    if (push_u32(&u->orph, &u->norph, &u->orph_cap, x))
        u->tree_ok = 0;
}

/* The level-0 edge from -> to is gone. */
static inline void lose_edge(upd_index *u, uint32_t from, uint32_t to)
{
    if (u->parent[to] == from)
        make_orphan(u, to);
}

/* Members of p's old level-0 list old[0..n) not in kept[0..nk) lost their edge. */
static void lose_dropped(upd_index *u, uint32_t p, const uint32_t *old, uint32_t n,
                         const uint32_t *kept, uint32_t nk)
{
    for (uint32_t i = 0; i < n; i++) {
        if (u->parent[old[i]] != p)
            continue;
        int in = 0;
        for (uint32_t j = 0; j < nk && !in; j++)
            in = kept[j] == old[i];
        if (!in)
            make_orphan(u, old[i]);
    }
}

static inline float vdist(const hnsw *h, const float *a, uint32_t b)
{
    return dist_finish(h->p.metric, h->kern(a, hnsw_vec(h, b), h->dim));
}

/* Start fetching the first bytes of node id's vector. */
static inline void prefetch_vec(const hnsw *h, uint32_t id, size_t bytes)
{
    const char *v = (const char *)hnsw_vec(h, id);
    for (size_t a = 0; a < bytes; a += 64)
        __builtin_prefetch(v + a);
}

/* Beam search of width ef at level l for qv from ep; results nearest first
 * in u->sorted (any state but FREE, which no edge reaches); returns count.
 * pred, when given, gets for every node reached the node it was reached from. */
static size_t search_layer(upd_index *u, const float *qv, uint32_t ep, float epd, size_t ef, int l,
                           uint32_t *pred)
{
    hnsw *h = u->h;
    const dist_bounded_fn bounded = h->p.metric == METRIC_L2 ? dist_best()->l2sq_bounded : NULL;
    uint32_t ep_mark = next_epoch(u);
    size_t pf_bytes = h->dim * sizeof(float) < 256 ? h->dim * sizeof(float) : 256;
    u->cand.n = u->res.n = 0;
    u->mark[ep] = ep_mark;
    hmin_push(&u->cand, epd, ep);
    hmax_push(&u->res, epd, ep);
    while (u->cand.n) {
        hnsw_hit c = u->cand.a[0];
        if (u->res.n >= ef && c.d > u->res.a[0].d)
            break;
        hmin_pop(&u->cand);
        const uint32_t *ln = hnsw_links(h, c.id, l);
        /* the unvisited neighbours, all fetched before the first distance
         * so their memory latencies overlap (as the build's search) */
        uint32_t nt = 0;
        for (uint32_t j = 0; j < ln[0]; j++) {
            uint32_t nb = ln[1 + j];
            if (u->mark[nb] == ep_mark)
                continue;
            u->mark[nb] = ep_mark;
            if (pred)
                pred[nb] = c.id;
            u->todo[nt++] = nb;
            prefetch_vec(h, nb, pf_bytes);
        }
        for (uint32_t j = 0; j < nt; j++) {
            uint32_t nb = u->todo[j];
            /* once ef results are kept, L2 may stop reading a candidate whose
             * partial distance already passes the worst of them (as the build) */
            float d = bounded && u->res.n >= ef
                          ? bounded(qv, hnsw_vec(h, nb), h->dim, u->res.a[0].d)
                          : vdist(h, qv, nb);
            if (u->res.n < ef || d < u->res.a[0].d) {
                if (u->cand.n == u->cand.cap) {
                    size_t nc = u->cand.cap * 2;
                    hnsw_hit *a = realloc(u->cand.a, nc * sizeof *a);
                    if (!a)
                        continue; /* out of memory: a narrower search, still correct */
                    u->cand.a = a;
                    u->cand.cap = nc;
                }
                hmin_push(&u->cand, d, nb);
                hmax_push(&u->res, d, nb);
                if (u->res.n > ef)
                    hmax_pop(&u->res);
            }
        }
    }
    size_t n = u->res.n;
    for (size_t i = n; i-- > 0;) {
        u->sorted[i] = u->res.a[0];
        hmax_pop(&u->res);
    }
    return n;
}

/* The build heuristic over cands (nearest first, distances to the base
 * node): keep a candidate only if it is nearer the base than every one
 * kept so far. Writes at most m ids to out; returns how many. */
static uint32_t heuristic(const hnsw *h, const hnsw_hit *cands, size_t n, uint32_t m, uint32_t *out)
{
    uint32_t kept = 0;
    const dist_bounded_fn bounded = h->p.metric == METRIC_L2 ? dist_best()->l2sq_bounded : NULL;
    for (size_t i = 0; i < n && kept < m; i++) {
        int good = 1;
        const float *cv = hnsw_vec(h, cands[i].id);
        for (uint32_t j = 0; j < kept && good; j++) {
            float d = bounded ? bounded(cv, hnsw_vec(h, out[j]), h->dim, cands[i].d)
                              : hnsw_node_dist(h, cands[i].id, out[j]);
            good = d >= cands[i].d;
        }
        if (good)
            out[kept++] = cands[i].id;
    }
    return kept;
}

/* Add q to s's level-l list, re-pruning with the heuristic when full. */
static void link_back(upd_index *u, uint32_t s, uint32_t q, int l)
{
    hnsw *h = u->h;
    uint32_t maxdeg = hnsw_maxdeg(h, l), *ln = hnsw_links(h, s, l), deg = ln[0];
    for (uint32_t j = 0; j < deg; j++)
        if (ln[1 + j] == q)
            return;
    if (deg < maxdeg) {
        ln[1 + deg] = q;
        ln[0] = deg + 1;
        return;
    }
    for (uint32_t j = 0; j < deg; j++) {
        u->pool[j].id = ln[1 + j];
        u->pool[j].d = hnsw_node_dist(h, s, ln[1 + j]);
    }
    u->pool[deg].id = q;
    u->pool[deg].d = hnsw_node_dist(h, s, q);
    hnsw_hit_sort(u->pool, deg + 1);
    uint32_t kept = heuristic(h, u->pool, deg + 1, maxdeg, u->copy);
    if (l == 0)
        lose_dropped(u, s, ln + 1, deg, u->copy, kept);
    memcpy(ln + 1, u->copy, kept * sizeof(uint32_t));
    memset(ln + 1 + kept, 0, (deg - kept) * sizeof(uint32_t));
    ln[0] = kept;
}

static void link_node(upd_index *u, uint32_t q)
{
    hnsw *h = u->h;
    int level = h->levels[q];
    if (h->entry == HNSW_NONE) {
        h->entry = q;
        h->max_level = level;
        u->tree_ok = 0;
        return;
    }
    const float *qv = hnsw_vec(h, q);
    uint32_t ep = h->entry;
    float epd = vdist(h, qv, ep);
    for (int l = h->max_level; l > level; l--) {
        for (int changed = 1; changed;) {
            changed = 0;
            const uint32_t *ln = hnsw_links(h, ep, l);
            for (uint32_t j = 0; j < ln[0]; j++) {
                float d = vdist(h, qv, ln[1 + j]);
                if (d < epd) {
                    epd = d;
                    ep = ln[1 + j];
                    changed = 1;
                }
            }
        }
    }
    for (int l = level < h->max_level ? level : h->max_level; l >= 0; l--) {
        size_t n = search_layer(u, qv, ep, epd, h->p.ef_construction, l, NULL);
        ep = u->sorted[0].id;
        epd = u->sorted[0].d;
        /* deleted nodes guide the search but are never chosen as neighbours */
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (u->state[u->sorted[i].id] == UPD_LIVE && u->sorted[i].id != q)
                u->sorted[m++] = u->sorted[i];
        uint32_t kept = heuristic(h, u->sorted, m, h->p.M, u->sel);
        uint32_t *ln = hnsw_links(h, q, l);
        memcpy(ln + 1, u->sel, kept * sizeof(uint32_t));
        ln[0] = kept;
        for (uint32_t j = 0; j < kept; j++)
            link_back(u, u->sel[j], q, l);
    }
    if (level > h->max_level) {
        h->entry = q;
        h->max_level = level;
        u->tree_ok = 0; /* a new root: the certificate hangs from the old one */
    }
}

static int keep_reachable(upd_index *u, hf_err *e);

/* Level draw as hnsw_graph.c's, from (seed, draw counter). */
static int draw_level(upd_index *u)
{
    uint64_t z = u->h->p.seed + 0x9e3779b97f4a7c15ULL * (++u->draws);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    double r = ((z >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    int l = (int)(-log(r) / log((double)u->h->p.M));
    return l > HNSW_MAX_LEVEL ? HNSW_MAX_LEVEL : l;
}

/* Give a free slot upper storage for level (new storage when it owns less). */
static int slot_set_level(upd_index *u, uint32_t id, int level, hf_err *e)
{
    hnsw *h = u->h;
    if (level > u->cap_level[id]) {
        size_t need = (size_t)level * (1 + h->p.M);
        if (h->upper_len + need > UINT32_MAX - 1)
            return hf_err_set(e, HF_ENOMEM, "upper levels too large");
        if (h->upper_len + need > h->upper_cap) {
            size_t nc = h->upper_cap ? h->upper_cap * 2 : 4096;
            while (nc < h->upper_len + need)
                nc *= 2;
            uint32_t *x = realloc(h->upper, nc * sizeof *x);
            if (!x)
                return hf_err_set(e, HF_ENOMEM, "cannot grow the upper levels");
            h->upper = x;
            h->upper_cap = nc;
        }
        h->upper_off[id] = (uint32_t)h->upper_len;
        h->upper_len += need;
        u->cap_level[id] = (uint8_t)level;
    }
    if (level > 0)
        memset(h->upper + h->upper_off[id], 0, (size_t)level * (1 + h->p.M) * sizeof(uint32_t));
    h->levels[id] = (uint8_t)level;
    return 0;
}

/* Remove a live slot from results and the id table; repaired by the next pass. */
static int make_pending(upd_index *u, uint32_t id, hf_err *e)
{
    hnsw_ids_unbind(u->ids, u->ids->ext[id]);
    u->state[id] = UPD_PENDING;
    u->h->deleted[id] = 1;
    u->h->n_deleted++;
    u->live--;
    if (push_u32(&u->pend, &u->npend, &u->pend_cap, id))
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    return 0;
}

static int insert_one(upd_index *u, uint64_t ext, const float *vec, float *tmp, hf_err *e)
{
    hnsw *h = u->h;
    int rc;
    uint32_t old = hnsw_ids_find(u->ids, ext);
    if (old != UINT32_MAX) {
        if ((rc = make_pending(u, old, e)) != 0)
            return rc;
        u->st.replaced++;
    }
    const float *v = vec;
    if (h->perm) {
        hnsw_permute_query(h, vec, tmp);
        v = tmp;
    }
    int level = draw_level(u);
    uint32_t id;
    if (u->nfree) {
        id = u->freel[--u->nfree];
        if ((rc = slot_set_level(u, id, level, e)) != 0) {
            u->nfree++;
            return rc;
        }
        hnsw_links0(h, id)[0] = 0;
        float *dst = hnsw_vec(h, id);
        memcpy(dst, v, h->dim * sizeof(float));
        if (h->p.metric == METRIC_COSINE)
            vec_normalize(dst, h->dim);
        h->deleted[id] = 0;
        h->n_deleted--;
    } else {
        id = (uint32_t)h->n;
        if ((rc = hnsw_append_with_level(h, v, level, e)) != 0 || (rc = ensure_slots(u, e)) != 0 ||
            (rc = hnsw_ids_resize(u->ids, h->n, e)) != 0)
            return rc;
        u->cap_level[id] = (uint8_t)level;
    }
    if ((rc = hnsw_ids_bind(u->ids, id, ext, e)) != 0)
        return rc;
    u->state[id] = UPD_LIVE;
    u->live++;
    u->parent[id] = HNSW_NONE;
    u->orphan[id] = 0;
    make_orphan(u, id);
    link_node(u, id);
    u->st.inserts++;
    return 0;
}

int upd_insert(upd_index *u, const uint64_t *ext, const float *vecs, size_t n, hf_err *e)
{
    float *tmp = malloc(u->h->dim * sizeof(float));
    if (!tmp)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = insert_one(u, ext[i], vecs + i * u->h->dim, tmp, e);
    free(tmp);
    /* graph-build stores the dimensions by decreasing variance so the
     * bounded L2 kernel rejects a candidate after a short prefix (on
     * Fashion-MNIST, without it, inserts ran at 0.6x graph-build's speed);
     * an index started empty takes that order from its first rows. No
     * distance changes, so the links stay valid. */
    if (rc == 0 && u->reorder && u->h->n >= UPD_REORDER_ROWS) {
        rc = hnsw_permute_dims(u->h, e);
        u->reorder = 0;
    }
    /* pruning a neighbour's list while linking back can cut a node off,
     * as in any HNSW build: one walk per frame restores reachability (with
     * deletes pending the next pass does it) */
    if (rc == 0 && u->npend == 0)
        rc = keep_reachable(u, e);
    return rc;
}

/* ---- deletion ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int upd_check_delete(const upd_index *u, const uint64_t *ext, size_t n, hf_err *e)
{
    for (size_t i = 0; i < n; i++) {
        if (hnsw_ids_find(u->ids, ext[i]) == UINT32_MAX)
            return hf_err_set(e, HF_EDATA, "delete of id %llu: no such vector",
                              (unsigned long long)ext[i]);
    }
    /* an id twice in one frame: the second would find nothing */
    if (n > 1) {
        uint64_t *s = malloc(n * sizeof *s);
        if (!s)
            return hf_err_set(e, HF_ENOMEM, "out of memory");
        memcpy(s, ext, n * sizeof *s);
        qsort(s, n, sizeof *s, cmp_u64);
        for (size_t i = 1; i < n; i++)
            if (s[i] == s[i - 1]) {
                uint64_t d = s[i];
                free(s);
                return hf_err_set(e, HF_EDATA, "delete names id %llu twice", (unsigned long long)d);
            }
        free(s);
    }
    return 0;
}

int upd_delete(upd_index *u, const uint64_t *ext, size_t n, hf_err *e)
{
    int rc = upd_check_delete(u, ext, n, e);
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = make_pending(u, hnsw_ids_find(u->ids, ext[i]), e);
        u->st.deletes++;
    }
    return rc;
}

/* Add candidate c once per pass of one list (its distance to p comes later). */
static int pool_add(upd_index *u, size_t *n, uint32_t p, uint32_t c, uint32_t ep_mark)
{
    if (u->mark[c] == ep_mark || c == p)
        return 0;
    u->mark[c] = ep_mark;
    if (*n == u->pool_cap) {
        size_t nc = u->pool_cap * 2;
        hnsw_hit *a = realloc(u->pool, nc * sizeof *a);
        if (!a)
            return -1;
        u->pool = a;
        u->pool_cap = nc;
    }
    u->pool[*n].id = c;
    (*n)++;
    /* the distance comes later, once every candidate's vector is on its way */
    prefetch_vec(u->h, c, u->h->dim * sizeof(float));
    return 0;
}

/* Deleted nodes whose neighbours are themselves deleted are followed this
 * far: a cluster deleted at 90 % leaves chains of them, and one hop would
 * leave their live in-neighbours with few candidates. */
#define CHAIN_DEPTH 3
/* Deleted nodes one list's repair expands at most. */
#define CHAIN_MAX 64
/* Past the first depth, deleted nodes are expanded only while fewer live
 * candidates than this many times the level's degree were found. */
#define CHAIN_WANT 3

/* Re-prune p's level-l list without its deleted members (FreshDiskANN). */
static int repair_list(upd_index *u, uint32_t p, int l, uint32_t chain[CHAIN_MAX])
{
    hnsw *h = u->h;
    uint32_t *ln = hnsw_links(h, p, l);
    uint32_t ep_mark = next_epoch(u);
    uint32_t maxdeg = hnsw_maxdeg(h, l), old = ln[0];
    size_t n = 0;
    if (l == 0)
        memcpy(u->todo, ln + 1, old * sizeof(uint32_t));
    u->mark[p] = ep_mark;
    /* breadth first through deleted nodes, one depth at a time, collecting
     * live ones: the deleted neighbours' own neighbours (FreshDiskANN's
     * candidates), then deeper only while fewer than CHAIN_WANT x degree
     * were found. Depth-first to the budget (before), the clustered
     * runbook on the clustered set deleted 2516 points/s against 10715
     * inserts/s; this way 13631/s at mean recall@10 0.9873 (0.9903 before,
     * rebuilds 0.9819), the sliding runbook unchanged (0.9859, 0.9857).
     * A target of 2 x degree cost the sliding runbook 0.0013 of recall,
     * checking the target only between depths left deletes 1.4x slower. */
    size_t top = 0;
    for (uint32_t j = 0; j < ln[0]; j++) {
        uint32_t c = ln[1 + j];
        if (u->state[c] == UPD_LIVE) {
            if (pool_add(u, &n, p, c, ep_mark))
                return -1;
        } else if (u->mark[c] != ep_mark && top < CHAIN_MAX) {
            u->mark[c] = ep_mark;
            chain[top++] = c;
        }
    }
    /* chain is the queue: entries before depth_end are at depth `depth` */
    for (size_t i = 0, depth = 1, depth_end = top; i < top; i++) {
        if (i == depth_end) {
            depth++;
            depth_end = top;
        }
        if (depth > 1 && n >= CHAIN_WANT * (size_t)maxdeg)
            break;
        uint32_t d = chain[i];
        if (h->levels[d] < l)
            continue;
        const uint32_t *dl = hnsw_links(h, d, l);
        for (uint32_t j = 0; j < dl[0]; j++) {
            uint32_t c = dl[1 + j];
            if (u->state[c] == UPD_LIVE) {
                if (pool_add(u, &n, p, c, ep_mark))
                    return -1;
            } else if (u->state[c] == UPD_PENDING && depth < CHAIN_DEPTH && u->mark[c] != ep_mark &&
                       top < CHAIN_MAX) {
                u->mark[c] = ep_mark;
                chain[top++] = c;
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        u->pool[i].d = hnsw_node_dist(h, p, u->pool[i].id);
    hnsw_hit_sort(u->pool, n);
    uint32_t kept = heuristic(h, u->pool, n, maxdeg, ln + 1);
    /* then back up to the degree the list had, with the nearest candidates
     * the heuristic passed over: a list shrinks a little at every repair
     * otherwise, and under a sliding window of deletes the graph thins out
     * (clustered set's sliding runbook, last ten searches: mean recall@10
     * 0.9764 without, 0.9828 with). Keeping only the nearest 3 * degree
     * candidates for the heuristic was tried and dropped: 0.9711 (the far
     * candidates are the long links between clusters) */
    for (size_t i = 0; i < n && kept < old && kept < maxdeg; i++) {
        int dup = 0;
        for (uint32_t j = 0; j < kept && !dup; j++)
            dup = ln[1 + j] == u->pool[i].id;
        if (!dup)
            ln[1 + kept++] = u->pool[i].id;
    }
    if (kept < old)
        memset(ln + 1 + kept, 0, (old - kept) * sizeof(uint32_t));
    ln[0] = kept;
    if (l == 0)
        lose_dropped(u, p, u->todo, old, ln + 1, kept);
    u->st.repaired_lists++;
    return 0;
}

/* Level-0 walk from start over live nodes, marking seen; returns how many
 * new nodes it reached (and, when parent is given, from which node). queue:
 * scratch of n entries. */
static size_t walk_live(const upd_index *u, uint32_t start, uint8_t *seen, uint32_t *queue,
                        uint32_t *parent)
{
    const hnsw *h = u->h;
    size_t head = 0, tail = 0;
    if (seen[start])
        return 0;
    seen[start] = 1;
    queue[tail++] = start;
    while (head < tail) {
        uint32_t x = queue[head++];
        const uint32_t *ln = hnsw_links0(h, x);
        for (uint32_t j = 0; j < ln[0]; j++) {
            uint32_t v = ln[1 + j];
            if (!seen[v] && u->state[v] == UPD_LIVE) {
                seen[v] = 1;
                if (parent)
                    parent[v] = x;
                queue[tail++] = v;
            }
        }
    }
    return tail;
}

/* Link cut-off node x from the nearest of the m search results in u->sorted
 * that is live, reached (seen, when given) and has room; else the nearest
 * such, giving up its last link; else the entry. Returns the node linked from. */
static uint32_t link_from_nearest(upd_index *u, uint32_t x, size_t m, const uint8_t *seen)
{
    hnsw *h = u->h;
    uint32_t from = HNSW_NONE, nearest = HNSW_NONE;
    for (size_t i = 0; i < m && from == HNSW_NONE; i++) {
        uint32_t v = u->sorted[i].id;
        if (v == x || u->state[v] != UPD_LIVE || (seen && !seen[v]))
            continue;
        if (nearest == HNSW_NONE)
            nearest = v;
        if (hnsw_links0(h, v)[0] < h->p.M0)
            from = v;
    }
    if (from == HNSW_NONE)
        from = nearest != HNSW_NONE ? nearest : h->entry;
    uint32_t *ln = hnsw_links0(h, from);
    if (ln[0] < h->p.M0) {
        ln[1 + ln[0]++] = x;
    } else {
        lose_edge(u, from, ln[ln[0]]);
        ln[ln[0]] = x;
    }
    u->st.reach_links++;
    return from;
}

/* Link every live node a level-0 walk misses from its nearest reachable
 * node (found by a beam search from the entry, which only meets reachable
 * nodes). A full list gives up its last link; that can cut another node
 * off, so rounds repeat until a walk reaches every live node. */
static int restore_reachability(upd_index *u, hf_err *e)
{
    hnsw *h = u->h;
    if (h->entry == HNSW_NONE || u->live == 0)
        return 0;
    uint32_t *queue = malloc(h->n * sizeof *queue);
    uint8_t *seen = malloc(h->n);
    if (!queue || !seen) {
        free(queue);
        free(seen);
        return hf_err_set(e, HF_ENOMEM, "out of memory for the reachability walk");
    }
    u->st.walks++;
    u->tree_ok = 0;
    for (int round = 0; round < 16; round++) {
        memset(seen, 0, h->n);
        u->parent[h->entry] = HNSW_NONE;
        size_t got = walk_live(u, h->entry, seen, queue, u->parent);
        if (got >= u->live) {
            /* this walk's parents are the certificate: nothing changed since */
            u->tree_ok = 1;
            break;
        }
        for (size_t x = 0; x < h->n && got < u->live; x++) {
            if (u->state[x] != UPD_LIVE || seen[x])
                continue;
            size_t m = search_layer(u, hnsw_vec(h, (uint32_t)x), h->entry,
                                    hnsw_node_dist(h, (uint32_t)x, h->entry), REACH_EF, 0, NULL);
            /* a link this cuts is seen by the next round's walk */
            link_from_nearest(u, (uint32_t)x, m, seen);
            got += walk_live(u, (uint32_t)x, seen, queue, u->parent);
        }
    }
    free(queue);
    free(seen);
    for (size_t i = 0; i < u->norph; i++)
        u->orphan[u->orph[i]] = 0;
    u->norph = 0;
    return 0;
}

/* y reaches the entry by parent edges without passing x or an orphan. */
static int chain_ok(const upd_index *u, uint32_t y, uint32_t x)
{
    for (int steps = 0; steps < 256; steps++) {
        if (y == x || u->orphan[y] || u->state[y] != UPD_LIVE)
            return 0;
        if (y == u->h->entry)
            return 1;
        y = u->parent[y];
        if (y == HNSW_NONE)
            return 0;
    }
    return 0; /* a long chain: the full walk makes a shallow tree again */
}

/* A parent for orphan x among its own neighbours that link back to it. */
static int attach(upd_index *u, uint32_t x)
{
    const hnsw *h = u->h;
    const uint32_t *ln = hnsw_links0(h, x);
    for (uint32_t j = 0; j < ln[0]; j++) {
        uint32_t y = ln[1 + j];
        if (u->state[y] != UPD_LIVE || u->orphan[y])
            continue;
        const uint32_t *yl = hnsw_links0(h, y);
        int back = 0;
        for (uint32_t i = 0; i < yl[0] && !back; i++)
            back = yl[1 + i] == x;
        if (back && chain_ok(u, y, x)) {
            u->parent[x] = y;
            u->orphan[x] = 0;
            return 1;
        }
    }
    return 0;
}

/* The path by which a beam search reached v becomes the certificate of v and
 * of every node on it. */
static void take_path(upd_index *u, uint32_t v)
{
    for (; v != u->h->entry; v = u->pred[v]) {
        u->parent[v] = u->pred[v];
        u->orphan[v] = 0;
    }
}

/* When no neighbour of x links back to it with a certificate: a beam search
 * for x's own vector from the entry, remembering from which node each was
 * reached (every node it meets is live: no delete is pending here). Reaching
 * x gives a path of edges; otherwise x is cut off (pruning while linking back
 * does that, as in any HNSW build) and gets a link from its nearest reached
 * node. */
static void attach_by_search(upd_index *u, uint32_t x)
{
    hnsw *h = u->h;
    size_t m = search_layer(u, hnsw_vec(h, x), h->entry, hnsw_node_dist(h, x, h->entry), REACH_EF,
                            0, u->pred);
    uint32_t v = x;
    if (u->mark[x] != u->epoch) {
        v = link_from_nearest(u, x, m, NULL);
        u->parent[x] = v;
        u->orphan[x] = 0;
    }
    take_path(u, v);
}

/* Every live node reachable from the entry at level 0, as after each frame:
 * by re-attaching the orphans when every one finds a parent (an insert
 * frame of 500 rows into 50k makes a few hundred), else by a full walk. */
static int keep_reachable(upd_index *u, hf_err *e)
{
    if (u->h->entry == HNSW_NONE || u->live == 0) {
        u->norph = 0;
        return 0;
    }
    /* a bound on the rounds: each links at most one node */
    for (size_t rounds = 4 * u->norph + 64; u->tree_ok && u->norph && rounds; rounds--) {
        int progress = 0;
        size_t m = 0;
        for (size_t i = 0; i < u->norph; i++) {
            uint32_t x = u->orph[i];
            if (!u->orphan[x])
                continue;
            if (u->state[x] != UPD_LIVE) {
                u->orphan[x] = 0;
                continue;
            }
            if (attach(u, x))
                progress = 1;
            else
                u->orph[m++] = x;
        }
        u->norph = m;
        /* once re-attaching stops helping: one by search, then again */
        if (!progress && u->norph)
            attach_by_search(u, u->orph[--u->norph]);
    }
    if (u->tree_ok && u->norph == 0)
        return 0;
    return restore_reachability(u, e);
}

/* A live node of the highest level, or HNSW_NONE. */
static uint32_t pick_entry(const upd_index *u)
{
    uint32_t best = HNSW_NONE;
    for (size_t i = 0; i < u->h->n; i++)
        if (u->state[i] == UPD_LIVE && (best == HNSW_NONE || u->h->levels[i] > u->h->levels[best]))
            best = (uint32_t)i;
    return best;
}

int upd_consolidate(upd_index *u, hf_err *e)
{
    hnsw *h = u->h;
    if (u->npend == 0)
        return 0;
    uint32_t chain[CHAIN_MAX];
    /* every list at every level that names a PENDING node is re-pruned;
     * level-0 lists in the order of the first deleted node they name, so
     * that the lists sharing a deleted node are repaired one after another
     * while its neighbours' vectors (most of their candidates) are cached */
    size_t nw = 0;
    for (size_t p = 0; p < h->n; p++) {
        if (u->state[p] != UPD_LIVE)
            continue;
        for (int l = 0; l <= h->levels[p]; l++) {
            const uint32_t *ln = hnsw_links(h, (uint32_t)p, l);
            uint32_t first = HNSW_NONE;
            for (uint32_t j = 0; j < ln[0] && first == HNSW_NONE; j++)
                if (u->state[ln[1 + j]] != UPD_LIVE)
                    first = ln[1 + j];
            if (first == HNSW_NONE)
                continue;
            if (l == 0) {
                if (nw == u->work_cap) {
                    size_t nc = nw ? 2 * nw : 1024;
                    if (grow(&u->work, nc, sizeof(uint64_t)))
                        return hf_err_set(e, HF_ENOMEM, "out of memory repairing the graph");
                    u->work_cap = nc;
                }
                u->work[nw++] = (uint64_t)first << 32 | p;
                continue;
            }
            if (repair_list(u, (uint32_t)p, l, chain))
                return hf_err_set(e, HF_ENOMEM, "out of memory repairing the graph");
        }
    }
    if (nw > 1)
        qsort(u->work, nw, sizeof(uint64_t), cmp_u64);
    for (size_t i = 0; i < nw; i++)
        if (repair_list(u, (uint32_t)u->work[i], 0, chain))
            return hf_err_set(e, HF_ENOMEM, "out of memory repairing the graph");
    if (h->entry != HNSW_NONE && u->state[h->entry] != UPD_LIVE) {
        h->entry = pick_entry(u);
        h->max_level = h->entry == HNSW_NONE ? -1 : h->levels[h->entry];
        u->tree_ok = 0;
    }
    for (size_t i = 0; i < u->npend; i++) {
        uint32_t d = u->pend[i];
        const uint32_t *l0 = hnsw_links0(h, d);
        for (uint32_t j = 0; j < l0[0]; j++)
            lose_edge(u, d, l0[1 + j]);
        u->parent[d] = HNSW_NONE;
        for (int l = 0; l <= h->levels[d]; l++) {
            uint32_t *ln = hnsw_links(h, d, l);
            memset(ln, 0, (1 + (size_t)ln[0]) * sizeof(uint32_t));
        }
        h->levels[d] = 0;
        u->state[d] = UPD_FREE;
        if (push_u32(&u->freel, &u->nfree, &u->free_cap, d))
            return hf_err_set(e, HF_ENOMEM, "out of memory");
    }
    u->npend = 0;
    u->st.passes++;
    return keep_reachable(u, e);
}

/* ---- queries, checks, saving ---- */

static int ensure_searcher(upd_index *u, size_t ef, hf_err *e)
{
    if (u->srch && u->srch_n >= u->h->n && u->srch_ef >= ef)
        return 0;
    hnsw_searcher_destroy(&u->srch);
    size_t want = ef > u->srch_ef ? ef : u->srch_ef;
    if (want < 64)
        want = 64;
    int rc = hnsw_searcher_new(u->h, want, &u->srch, e);
    if (rc)
        return rc;
    u->srch_n = u->h->n;
    u->srch_ef = want;
    return 0;
}

int upd_search(upd_index *u, const float *q, size_t k, size_t ef, hnsw_hit *out, size_t *nout,
               hnsw_stats *st, hf_err *e)
{
    *nout = 0;
    if (u->live == 0)
        return 0;
    if (ef < k)
        ef = k;
    int rc = ensure_searcher(u, ef, e);
    if (rc)
        return rc;
    return hnsw_search(u->h, u->srch, q, k, ef, out, nout, st);
}

size_t upd_extra_bytes(const upd_index *u)
{
    return u->scap * (3 + 3 * sizeof(uint32_t)) + u->orph_cap * sizeof(uint32_t) +
           u->ids->cap * sizeof(uint64_t) + u->ids->hcap * (sizeof(uint64_t) + sizeof(uint32_t)) +
           (u->free_cap + u->pend_cap) * sizeof(uint32_t);
}

void upd_check(const upd_index *u, size_t *unreachable, size_t *bad_edges)
{
    const hnsw *h = u->h;
    *unreachable = *bad_edges = 0;
    for (size_t p = 0; p < h->n; p++) {
        if (u->state[p] != UPD_LIVE)
            continue;
        for (int l = 0; l <= h->levels[p]; l++) {
            const uint32_t *ln = hnsw_links(h, (uint32_t)p, l);
            for (uint32_t j = 0; j < ln[0]; j++)
                if (ln[1 + j] >= h->n || u->state[ln[1 + j]] != UPD_LIVE ||
                    h->levels[ln[1 + j]] < l)
                    (*bad_edges)++;
        }
    }
    if (u->live == 0)
        return;
    if (h->entry == HNSW_NONE || u->state[h->entry] != UPD_LIVE) {
        *unreachable = u->live;
        return;
    }
    uint8_t *seen = calloc(h->n, 1);
    uint32_t *queue = malloc(h->n * sizeof *queue);
    size_t got = seen && queue ? walk_live(u, h->entry, seen, queue, NULL) : 0;
    *unreachable = u->live - got;
    free(seen);
    free(queue);
}

int upd_compact(const upd_index *u, hnsw **out, hnsw_ids **out_ids, hf_err *e)
{
    const hnsw *h = u->h;
    *out = NULL;
    *out_ids = NULL;
    if (u->npend)
        return hf_err_set(e, HF_EINTERNAL, "compact with %zu deletes unrepaired", u->npend);
    hnsw *c = NULL;
    hnsw_ids *ids = NULL;
    uint32_t *map = malloc((h->n ? h->n : 1) * sizeof *map);
    int rc = map ? 0 : hf_err_set(e, HF_ENOMEM, "out of memory");
    if (rc == 0)
        rc = hnsw_new(&h->p, h->dim, &c, e);
    if (rc == 0)
        rc = hnsw_ids_new(&ids, e);
    if (rc == 0 && u->live)
        rc = hnsw_reserve(c, u->live, e);
    if (rc == 0 && h->perm) {
        c->perm = malloc(h->dim * sizeof(uint32_t));
        if (!c->perm)
            rc = hf_err_set(e, HF_ENOMEM, "out of memory");
        else
            memcpy(c->perm, h->perm, h->dim * sizeof(uint32_t));
    }
    for (size_t i = 0; rc == 0 && i < h->n; i++) {
        if (u->state[i] != UPD_LIVE) {
            map[i] = HNSW_NONE;
            continue;
        }
        map[i] = (uint32_t)c->n;
        rc = hnsw_append_with_level(c, hnsw_vec(h, (uint32_t)i), h->levels[i], e);
        if (rc == 0) /* exact bits: no second normalisation */
            memcpy(hnsw_vec(c, map[i]), hnsw_vec(h, (uint32_t)i), h->dim * sizeof(float));
        if (rc == 0)
            rc = hnsw_ids_resize(ids, c->n, e);
        if (rc == 0)
            ids->ext[map[i]] = u->ids->ext[i];
    }
    for (size_t i = 0; rc == 0 && i < h->n; i++) {
        if (map[i] == HNSW_NONE)
            continue;
        for (int l = 0; l <= h->levels[i]; l++) {
            const uint32_t *src = hnsw_links(h, (uint32_t)i, l);
            uint32_t *dst = hnsw_links(c, map[i], l);
            uint32_t d = 0;
            for (uint32_t j = 0; j < src[0]; j++)
                if (map[src[1 + j]] != HNSW_NONE)
                    dst[1 + d++] = map[src[1 + j]];
            dst[0] = d;
        }
    }
    if (rc == 0 && h->entry != HNSW_NONE && u->live) {
        c->entry = map[h->entry];
        c->max_level = h->max_level;
    }
    free(map);
    if (rc) {
        hnsw_destroy(&c);
        hnsw_ids_destroy(&ids);
        return rc;
    }
    *out = c;
    *out_ids = ids;
    return 0;
}
