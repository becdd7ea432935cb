/*
 * filt.h - labels on vectors and searches restricted to the vectors whose
 * labels match a filter (issue 19).
 *
 * Labels. Every node may carry a set of u32 labels (at most FILT_MAX_PER_VEC,
 * each at most FILT_LABEL_MAX). On the wire a set of n rows travels as one
 * bin of little-endian u32: for each row its label count, then its labels
 * (the `labels` field of vectors and insert frames, and of the index's own
 * frames {t:"labels", start, n, labels}, 4096 nodes a frame, after the ids
 * frames). An index without labels frames has no labels; a filter on it is
 * refused.
 *
 * Filters. A filter is a set of labels; a node matches when it shares one of
 * them (any-of, the default) or carries all of them (all-of).
 *
 * Storage (filt_labels): per node an offset and a count into a pool of u32,
 * each node's labels sorted and unique. Re-labelling a node (consolidate's
 * upserts, a reused slot) appends a fresh run and leaves the old one as
 * garbage, compacted when garbage passes half the pool. Per distinct label
 * a count of live nodes carrying it (an open-addressing hash), kept exact by
 * every set/clear: the planner's selectivity estimate. Posting lists (per
 * label the nodes carrying it) are built on demand (filt_postings_build) and
 * are valid only until the next change; searches without valid postings scan
 * the per-node sets instead.
 *
 * Ownership: whoever called filt_labels_new owns the table until
 * filt_labels_destroy (which sets the pointer to NULL). A table is not
 * thread-safe for writing; searches only read it.
 */
#ifndef HF_FILT_H
#define HF_FILT_H

#include <stddef.h>
#include <stdint.h>

#include "channel.h"
#include "hnsw.h"

#define FILT_LABEL_MAX 1048575u /* 2^20 - 1: the largest label */
#define FILT_MAX_PER_VEC 256    /* labels one vector may carry */
#define FILT_MAX_QUERY 256      /* labels one filter may name */

typedef struct filt_labels {
    size_t n, cap;  /* nodes described */
    uint32_t *off;  /* per node: first label in pool */
    uint16_t *cnt;  /* per node: label count */
    uint8_t *dead;  /* per node: not counted (deleted) */
    uint32_t *pool; /* sorted unique runs */
    size_t pool_len, pool_cap, garbage;
    uint32_t *hkey, *hcnt; /* label -> live count; hkey UINT32_MAX = empty */
    size_t hcap, hused;
    size_t live;      /* nodes not dead */
    uint64_t version; /* bumped by every change */
    /* postings, valid when post_version == version */
    uint64_t post_version;
    uint32_t *plab; /* sorted distinct labels */
    uint32_t *poff; /* pn + 1 offsets into pids */
    uint32_t *pids; /* node ids, ascending per label */
    size_t pn;
} filt_labels;

int filt_labels_new(filt_labels **out, hf_err *e);
void filt_labels_destroy(filt_labels **fl);
/* Give node id the labels lab[0..n) (any order, duplicates merged); grows the
 * table (nodes in between get no labels). HF_EDATA for a label above
 * FILT_LABEL_MAX or more than FILT_MAX_PER_VEC. */
int filt_labels_set(filt_labels *fl, uint32_t id, const uint32_t *lab, size_t n, hf_err *e);
/* Node id leaves the counts (a delete); its set is kept for a later set. */
void filt_labels_kill(filt_labels *fl, uint32_t id);
static inline size_t filt_labels_of(const filt_labels *fl, uint32_t id, const uint32_t **lab)
{
    if (id >= fl->n) {
        *lab = NULL;
        return 0;
    }
    *lab = fl->pool + fl->off[id];
    return fl->cnt[id];
}
/* Live nodes carrying label l. */
uint32_t filt_label_count(const filt_labels *fl, uint32_t l);
/* Renumber: node i takes the labels of old node from[i] (i < n), as
 * hnsw_reorder renumbers a graph (h->ext_id). */
int filt_labels_permute(filt_labels *fl, const uint32_t *from, size_t n, hf_err *e);
/* Build the posting lists from the live nodes (ids < n_nodes). */
int filt_postings_build(filt_labels *fl, hf_err *e);

/* ---- the wire form: count-prefixed runs in a bin of u32 ---- */

/* Decode n rows of a labels bin (len bytes); calls set for node first + i.
 * HF_EDATA naming the row for a short, long or out-of-limit bin. */
int filt_wire_apply(filt_labels *fl, uint32_t first, const void *bin, size_t len, size_t n,
                    hf_err *e);
/* Check a labels bin of n rows without storing it. */
int filt_wire_check(const void *bin, size_t len, size_t n, hf_err *e);
/* Encode the labels of nodes [first, first+n) into *buf (grown as needed;
 * the caller frees it); *len gets the byte length. */
int filt_wire_encode(const filt_labels *fl, uint32_t first, size_t n, uint32_t **buf, size_t *cap,
                     size_t *len, hf_err *e);

/* Index frames: write labels frames for nodes [0, n); take one (frames in
 * order from node 0, at most max_nodes in all). */
int filt_labels_save(const filt_labels *fl, size_t n, channel *c, hf_err *e);
int filt_labels_take_frame(filt_labels *fl, const frame_in *f, size_t max_nodes, hf_err *e);

/* Labels file: line i holds row i's labels, decimal, separated by spaces or
 * tabs; an empty line is no labels. Fills fl for rows 0..*rows-1. Errors
 * name the line. */
int filt_labels_read_file(const char *path, filt_labels *fl, size_t *rows, hf_err *e);

/* ---- filters ---- */

typedef struct filt_query {
    uint32_t lab[FILT_MAX_QUERY]; /* sorted, unique */
    uint32_t n;                   /* 0: no filter */
    int all;                      /* all-of instead of any-of */
} filt_query;

/* Build a filter from lab[0..n) (sorted and deduplicated here). */
int filt_query_set(filt_query *fq, const uint32_t *lab, size_t n, int all, hf_err *e);
/* Parse one line of a --filters file ("3 17 9"; empty: no filter). */
int filt_query_parse(filt_query *fq, const char *line, int all, hf_err *e);
/* The "filter" key of a request frame (an array of unsigned integers) and
 * its optional "filter_all" (bool). HF_EOF when the frame has no filter. */
int filt_query_from_frame(filt_query *fq, const frame_in *f, hf_err *e);
/* Read a --filters file: one filter a line. The caller frees *out. */
int filt_query_read_file(const char *path, int all, filt_query **out, size_t *n, hf_err *e);

/* Whether node id matches. */
int filt_match(const filt_labels *fl, const filt_query *fq, uint32_t id);
/* Live nodes matching, estimated from label counts: exact for one label,
 * the sum (an upper bound) for any-of, the smallest count for all-of. */
size_t filt_estimate(const filt_labels *fl, const filt_query *fq);

/* ---- filtered search (filt_search.c) ---- */

typedef enum filt_mode {
    FILT_AUTO,  /* the planner picks one of the three below per query */
    FILT_GRAPH, /* two-hop expansion through non-matching neighbours */
    FILT_BRUTE, /* exact over the matching vectors */
    FILT_BEAM,  /* ordinary traversal, only matching nodes kept as results */
    FILT_POST,  /* baseline: unfiltered search, k grown until k match */
    FILT_SCAN,  /* the index's codes of the matching vectors, best re-ranked exactly */
} filt_mode;
#define FILT_NMODES 6

typedef struct filt_plan {
    filt_mode mode;
    size_t brute_max; /* AUTO: brute force at most this many estimated matches */
    double beam_min;  /* AUTO: BEAM from this fraction matching near the query on */
    double walk_min;  /* AUTO: GRAPH from this fraction near the query on (else exact) */
    size_t exact_max; /* AUTO: ... when at most this many match (else GRAPH anyway) */
    size_t seeds;     /* GRAPH: matching nodes sampled as extra entries */
    size_t rerank;    /* SCAN: code distances re-ranked exactly (at least k) */
    int codes;        /* SCAN allowed (the index's codes); else BRUTE stands in */
} filt_plan;

/* Default thresholds (see filt_search.c for how they were chosen). */
void filt_plan_defaults(filt_plan *p);
int filt_mode_parse(const char *s, filt_mode *m, hf_err *e);
const char *filt_mode_name(filt_mode m);

typedef struct filt_stats {
    uint64_t ndist, hops, nchecked;
    uint64_t ncode;                /* code distances (SCAN) */
    uint64_t nprobed;              /* AUTO: queries whose neighbourhood was sampled */
    double near_sum;               /* ... and the sum of their matching fractions */
    uint64_t by_mode[FILT_NMODES]; /* queries answered by each mode (fallbacks included) */
    uint64_t fallbacks;            /* graph or beam found fewer than k: answered by brute force */
} filt_stats;

typedef struct filt_searcher filt_searcher;
int filt_searcher_new(const hnsw *h, size_t max_ef, filt_searcher **out, hf_err *e);
void filt_searcher_destroy(filt_searcher **s);

/* k nearest of q (a raw query, as hnsw_search takes it) among the live nodes
 * matching fq; nearest first, ids external (h->ext_id), distances the
 * metric's. Never returns a non-matching node; returns min(k, matches)
 * results (a graph walk that finds fewer falls back to brute force). hs is
 * an hnsw_searcher for the POST baseline and may be NULL otherwise. */
int filt_search(const hnsw *h, const filt_labels *fl, filt_searcher *s, hnsw_searcher *hs,
                const filt_plan *plan, const filt_query *fq, const float *q, size_t k, size_t ef,
                hnsw_hit *out, size_t *nout, filt_stats *st);

#endif
