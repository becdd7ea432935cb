/*
 * hnsw.h - the HNSW graph: structures shared by build, search and I/O.
 *
 * Memory layout (the index in memory, DESIGN.md):
 *   level 0: one 64-byte aligned block, node_bytes per node:
 *            [u32 degree][u32 links[M0]] padded to 64, then [f32 vector[dim]]
 *            padded to 64. Search touches one contiguous stretch per node.
 *   upper levels: a pool of u32; a node of level L > 0 owns L slots of
 *            (1 + M) u32 (degree, then links) starting at upper_off[node].
 * Ids are u32 positions in insertion order. For the cosine metric vectors are
 * stored normalised and searched with the inner-product kernel.
 *
 * Concurrency: hnsw_build inserts with several threads, each node's links
 * guarded by its own mutex and the entry point by a global one; searches on
 * a built graph take no locks and may run in parallel (one hnsw_searcher per
 * thread). Levels are drawn from (seed, id), so one thread and one seed give
 * the same graph every time.
 */
#ifndef HF_HNSW_H
#define HF_HNSW_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "distance.h"
#include "err.h"
#include "knn.h"

#define HNSW_MAX_LEVEL 31
#define HNSW_NONE UINT32_MAX

typedef struct hnsw_params {
    uint32_t M;               /* links per node on upper levels (default 16) */
    uint32_t M0;              /* links per node on level 0 (default 2 M) */
    uint32_t ef_construction; /* beam width while building (default 200) */
    uint64_t seed;            /* level draws */
    metric_t metric;
} hnsw_params;

typedef struct hnsw {
    size_t dim;
    hnsw_params p;
    size_t n, cap;
    size_t links_bytes, node_bytes;
    char *level0;        /* cap * node_bytes, 64-aligned */
    uint8_t *levels;     /* per node */
    uint32_t *upper_off; /* per node, index into upper, HNSW_NONE when level 0 */
    uint32_t *upper;
    size_t upper_len, upper_cap;
    uint8_t *deleted; /* tombstones: traversed, never returned */
    size_t n_deleted;
    pthread_mutex_t *locks; /* per node, live during hnsw_build */
    pthread_mutex_t entry_lock;
    uint32_t entry;
    int max_level;
    dist_fn kern;
    /* the kernel searches and builds rank with: squared L2 for l2 and for
     * cosine (stored vectors are unit length, where |a - b|^2 = 2 (1 - <a,b>),
     * so the bounded L2 kernel and its early stop apply), kern otherwise.
     * A zero vector breaks the identity (cosine distance 1 from everything,
     * squared L2 1 from a unit vector): zero[i] (cosine only) marks them and
     * adds 1 to their squared distances (hnsw_zero_bias), n_zero counts them. */
    dist_fn skern;
    uint8_t *zero;
    size_t n_zero;
    /* Compressed traversal (hnsw_codes.c): NULL/0 when absent. cblock holds
     * the codes, cnode_bytes apart; clinks the level-0 lists, node i's at
     * byte cloff[i], cid_bits a link, a short list ending with the all-ones
     * id. A copy of level 0 with codes in place of vectors. */
    uint32_t *perm;   /* stored dimension i is input dimension perm[i]; NULL: identity */
    uint32_t *ext_id; /* after hnsw_reorder: original id of each node; NULL: identity */
    struct quant *codes;
    char *cblock;
    size_t cnode_bytes;
    uint8_t *clinks;
    uint32_t *cloff;
    size_t clinks_len;
    unsigned cid_bits;
    /* the codes decode to exactly the stored vectors (int8 of integer data
     * spanning <= 256 values, L2): code distances of an exactly coded query
     * are the exact distances, so re-ranking need not read the vectors */
    int codes_exact;
    /* Row layout for fast search (hnsw_rows.c): NULL/0 when absent. rot is
     * the saved rotation (rotation.h, of R^rot_dpad); rows are built from
     * it, the graph and the vectors after loading. A row takes
     * row_l0 + row_lb * nbatch 64-byte lines (nbatch = degree / 16 rounded
     * up); where node i's starts is counted from row_rank (hnsw_rows.c). */
    struct rotation *rot;
    size_t rot_dpad;
    char *rows;
    struct hnsw_row_rank *row_rank;
    size_t row_lines_total, row_l0, row_lb;
    /* int8 codes (row_upq, rot_dpad bytes each, slot row_up_slot[node];
     * HNSW_NONE on level 0) of the rotated vectors of the nodes above
     * level 0: the greedy descent reads a block that stays in cache, not
     * whole rows, and only picks level 0's entry, whose distance is then
     * measured exactly */
    uint8_t *row_up;
    struct quant *row_upq;
    uint32_t *row_up_slot;
} hnsw;

/* Create an empty graph; caller owns it (hnsw_destroy). */
int hnsw_new(const hnsw_params *p, size_t dim, hnsw **out, hf_err *e);
void hnsw_destroy(hnsw **h);
/* A 64-byte aligned block for node data; large blocks are 2 MiB aligned
 * and advised to use transparent huge pages. Free with free(). */
void *hnsw_alloc_block(size_t bytes);
/* Fill defaults into unset (zero) fields. */
void hnsw_params_defaults(hnsw_params *p);

/* Grow storage to hold cap nodes. */
int hnsw_reserve(hnsw *h, size_t cap, hf_err *e);
/* Append vectors (copied; normalised for cosine) with drawn levels, not yet
 * linked. Returns the first new id in *first. */
int hnsw_append(hnsw *h, const float *vecs, size_t n, uint32_t *first, hf_err *e);
/* Append one node with a given level (used by the loader). */
int hnsw_append_with_level(hnsw *h, const float *vec, int level, hf_err *e);

/* Link every appended node that is not linked yet, with `threads` threads.
 * progress(done, total, arg) is called now and then from one thread. */
typedef void (*hnsw_progress_fn)(size_t done, size_t total, void *arg);
int hnsw_build(hnsw *h, size_t first, int threads, hnsw_progress_fn progress, void *arg, hf_err *e);

/* Reorder the dimensions of every stored vector by decreasing variance
 * (queries are reordered the same way at search time). Distances of all
 * four metrics are unchanged; L2 search can then stop reading a vector
 * sooner because the dimensions that matter most come first. */
int hnsw_permute_dims(hnsw *h, hf_err *e);
/* Apply the stored permutation to an input vector (out != in). */
void hnsw_permute_query(const hnsw *h, const float *in, float *out);
/* The inverse: a stored-order vector (a base vector as a query) back to
 * input order, as hnsw_search takes queries. */
void hnsw_unpermute(const hnsw *h, const float *in, float *out);

/* Renumber nodes in breadth-first order of level 0 for cache locality
 * (hnsw_reorder.c). Searches keep returning the original ids (ext_id); the
 * graph must not be changed or saved afterwards. */
int hnsw_reorder(hnsw *h, hf_err *e);

/* The most level-0 links whose block takes the memory of an M0 = m0 block
 * (link blocks are whole cache lines: 47 for 32). */
uint32_t hnsw_m0_fitting(uint32_t m0);

/* Lower M0 to max(m0, the largest level-0 degree) after links were removed,
 * so a saved index declares (and a loader lays out) only the slots it needs.
 * The in-memory block keeps its stride. */
int hnsw_shrink_m0(hnsw *h, uint32_t m0, hf_err *e);

/* Make every node reachable from the entry point on level 0: each node a
 * breadth-first walk misses gets a link from its nearest reachable node
 * (replacing that node's link to its most-linked-to neighbour when full).
 * Returns the number of nodes repaired in *repaired. */
int hnsw_repair_reachability(hnsw *h, size_t *repaired, hf_err *e);

/* Node accessors. */
static inline uint32_t *hnsw_links0(const hnsw *h, uint32_t id)
{
    return (uint32_t *)(void *)(h->level0 + (size_t)id * h->node_bytes);
}
static inline float *hnsw_vec(const hnsw *h, uint32_t id)
{
    return (float *)(void *)(h->level0 + (size_t)id * h->node_bytes + h->links_bytes);
}
/* Degree-prefixed link list of node id at level l (l <= levels[id]). */
static inline uint32_t *hnsw_links(const hnsw *h, uint32_t id, int l)
{
    if (l == 0)
        return hnsw_links0(h, id);
    return h->upper + h->upper_off[id] + (size_t)(l - 1) * (1 + h->p.M);
}
static inline uint32_t hnsw_maxdeg(const hnsw *h, int l)
{
    return l == 0 ? h->p.M0 : h->p.M;
}

/* Distance between two stored nodes, in the metric's terms. */
static inline float hnsw_node_dist(const hnsw *h, uint32_t a, uint32_t b)
{
    return dist_finish(h->p.metric, h->kern(hnsw_vec(h, a), hnsw_vec(h, b), h->dim));
}

/* Whether searches rank in squared L2 (l2, and cosine on unit vectors). */
static inline int hnsw_l2_space(const hnsw *h)
{
    return h->p.metric == METRIC_L2 || h->p.metric == METRIC_COSINE;
}
/* Added to squared distances to node id: 1 for a zero vector of a cosine
 * index, so that it lies at squared chord 2 (cosine 1) from unit vectors. */
static inline float hnsw_zero_bias(const hnsw *h, uint32_t id)
{
    return h->n_zero ? (float)h->zero[id] : 0.0f;
}
/* Distance from vector v (a query: unit length or zero) to stored node b
 * in search units. */
static inline float hnsw_space_dist(const hnsw *h, const float *v, uint32_t b)
{
    if (hnsw_l2_space(h))
        return h->skern(v, hnsw_vec(h, b), h->dim) + hnsw_zero_bias(h, b);
    return dist_finish(h->p.metric, h->kern(v, hnsw_vec(h, b), h->dim));
}
/* Between two stored nodes in search units. */
static inline float hnsw_space_dist_nodes(const hnsw *h, uint32_t a, uint32_t b)
{
    return hnsw_space_dist(h, hnsw_vec(h, a), b) + hnsw_zero_bias(h, a);
}
/* A search-unit distance in the metric's terms: cosine 1 - <a,b> = |a - b|^2 / 2. */
static inline float hnsw_space_to_metric(const hnsw *h, float d)
{
    return h->p.metric == METRIC_COSINE ? 0.5f * d : d;
}

/* ---- search ---- */

typedef struct hnsw_hit {
    float d;
    uint32_t id;
} hnsw_hit;

/* The stored vectors as a brute-force base (tombstones skipped): exact
 * k-NN of queries in stored dimension order. */
knn_base hnsw_knn_base(const hnsw *h);

/* qsort order for hits: nearest first, ties by id (so sorting is deterministic). */
int hnsw_hit_cmp(const void *a, const void *b);
/* Sorts hits in hnsw_hit_cmp's order, without a call per comparison. */
void hnsw_hit_sort(hnsw_hit *a, size_t n);

typedef struct hnsw_stats {
    uint64_t ndist;       /* distance computations, all levels */
    uint64_t hops;        /* nodes expanded */
    uint64_t ndist_upper; /* ... of which above level 0 (the descent) */
} hnsw_stats;

/* Per-thread scratch: visited marks and heaps. */
typedef struct hnsw_searcher hnsw_searcher;
int hnsw_searcher_new(const hnsw *h, size_t max_ef, hnsw_searcher **out, hf_err *e);
void hnsw_searcher_destroy(hnsw_searcher **s);
/* Searches with s never measure node id (an internal id; HNSW_NONE: none),
 * as if it were not in the graph: a base vector queried against the rest,
 * the leave-one-out validation of edge-score. The entry point is excluded
 * only from level 0. */
void hnsw_searcher_exclude(hnsw_searcher *s, uint32_t id);
uint32_t hnsw_searcher_excluded(const hnsw_searcher *s);
/* The first half of a search, for search loops outside this file (nav):
 * prepare the query (dimension order, unit length for cosine) in the
 * searcher's buffer and descend greedily from the entry point through the
 * upper levels from node entry on level `level` (h->entry, h->max_level:
 * the classic descent); *ep, *epd get the level-0 entry and its search-unit
 * distance. Returns the prepared query (valid until the next search). */
const float *hnsw_descend(const hnsw *h, hnsw_searcher *s, const float *q, uint32_t entry,
                          int level, uint32_t *ep, float *epd, hnsw_stats *st);
/* The last: internal ids to the caller's, search units to the metric's
 * distances (after hnsw_descend with the same searcher). */
void hnsw_hits_for_caller(const hnsw *h, const hnsw_searcher *s, hnsw_hit *out, size_t n);

/* k nearest of q (a raw query; normalised internally for cosine), nearest
 * first, into out[0..*nout). ef is raised to k when smaller. Distances are
 * the metric's (see distance.h). */
int hnsw_search(const hnsw *h, hnsw_searcher *s, const float *q, size_t k, size_t ef, hnsw_hit *out,
                size_t *nout, hnsw_stats *st);

/* hnsw_search with the greedy descent starting at node `entry` on `level`
 * (at most that node's level; 0: a level-0 search from entry), for routed
 * and flat searches. HF_EUSAGE for an entry outside the graph. */
int hnsw_search_from(const hnsw *h, hnsw_searcher *s, const float *q, size_t k, size_t ef,
                     uint32_t entry, int level, hnsw_hit *out, size_t *nout, hnsw_stats *st);

/* Search on codes: traverse with approximate distances, then re-rank the
 * best `rerank` candidates (at least k) with exact f32 distances. Falls back
 * to hnsw_search when the graph has no codes. */
int hnsw_search_codes(const hnsw *h, hnsw_searcher *s, const float *q, size_t k, size_t ef,
                      size_t rerank, hnsw_hit *out, size_t *nout, hnsw_stats *st);

/* ---- compressed codes (hnsw_codes.c) ---- */

/* Train a quantizer of the given kind (quant.h) on the stored vectors,
 * encode every node and lay out the code block. */
int hnsw_codes_build(hnsw *h, int kind, uint64_t seed, hf_err *e);
/* Adopt a quantizer and n codes (code_bytes each, node order) from a
 * loaded index; takes ownership of q. */
int hnsw_codes_adopt(hnsw *h, struct quant *q, const uint8_t *codes, size_t n, hf_err *e);
/* Whether every stored vector is its code decoded exactly (sets nothing). */
int hnsw_codes_lossless(const hnsw *h);
/* Rebuild the packed level-0 lists (after the graph changed). */
int hnsw_codes_sync_links(hnsw *h, hf_err *e);
/* Bytes a search on codes reads from: codes, packed level-0 lists and their
 * offsets, upper levels and their offsets, tombstones. */
size_t hnsw_codes_memory_bytes(const hnsw *h);
static inline const uint8_t *hnsw_code(const hnsw *h, uint32_t id)
{
    return (const uint8_t *)(h->cblock + (size_t)id * h->cnode_bytes);
}
static inline const uint8_t *hnsw_clist(const hnsw *h, uint32_t id)
{
    return h->clinks + h->cloff[id];
}
/* Unpack node id's level-0 links from the packed lists into out[0..M0);
 * returns the degree. */
static inline uint32_t hnsw_clinks0_unpack(const hnsw *h, uint32_t id, uint32_t *out)
{
    const uint8_t *p = hnsw_clist(h, id);
    unsigned bits = h->cid_bits;
    uint64_t mask = ((uint64_t)1 << bits) - 1;
    uint32_t n = 0;
    for (size_t j = 0, bit = 0; j < h->p.M0; j++, bit += bits) {
        uint64_t w;
        __builtin_memcpy(&w, p + (bit >> 3), 8);
        uint64_t v = (w >> (bit & 7)) & mask;
        if (v == mask)
            break;
        out[n++] = (uint32_t)v;
    }
    return n;
}

/* ---- row layout (hnsw_rows.c) ---- */

/* A dense rotation is dpad^2 floats: 64 MiB at most. */
#define HNSW_ROWS_MAX_DPAD 4096
/* Vector length in the rows: dim rounded up to 64. */
size_t hnsw_rows_dpad(size_t dim);
/* Draw the rotation of the speed layout (l2 and cosine only). */
int hnsw_rows_plan(hnsw *h, uint64_t seed, hf_err *e);
/* Take a loaded rotation (owned by h on success, the caller's otherwise)
 * after checking it fits the index. */
int hnsw_rows_adopt(hnsw *h, struct rotation *rot, hf_err *e);
/* Lay out the rows from the rotation, level 0 and the vectors (after any
 * renumbering; rebuild after the graph changes) with `threads` threads.
 * No-op without a rotation. */
int hnsw_rows_build(hnsw *h, int threads, hf_err *e);
/* Bytes of the rows and the rotation. */
size_t hnsw_rows_memory_bytes(const hnsw *h);
/* Mean bytes of a node's row (what a search reads when it expands one). */
size_t hnsw_rows_mean_bytes(const hnsw *h);
typedef struct hnsw_rows_scratch hnsw_rows_scratch;
int hnsw_rows_scratch_new(const hnsw *h, size_t max_ef, hnsw_rows_scratch **out, hf_err *e);
void hnsw_rows_scratch_destroy(hnsw_rows_scratch **s);
/* k nearest of q on the rows; exact distances (hnsw_search calls it when
 * the graph has rows). */
int hnsw_rows_search(const hnsw *h, hnsw_rows_scratch *s, const float *q, size_t k, size_t ef,
                     hnsw_hit *out, size_t *nout, hnsw_stats *st);

/* Tombstone a node: it stays in the graph for routing, never in results. */
int hnsw_mark_deleted(hnsw *h, uint32_t id, hf_err *e);

/* Total bytes of graph memory (level 0 block, upper pool, per-node arrays). */
size_t hnsw_memory_bytes(const hnsw *h);

#endif
