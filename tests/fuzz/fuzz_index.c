/*
 * fuzz_index.c - libFuzzer target for the index loader (libcommon/hnsw_io).
 *
 * The input is put in a memfd, opened with channel_open_in and given to
 * hnsw_load, as `query --index` does. When it loads, a few searches run on
 * the result, so an index the loader accepts must also be safe to search
 * (every id, degree, level and the entry point are checked on load), and so
 * must the rows built from a rows frame (graph-build --preset speed). Frames
 * the loader does not know (models) go to a callback that reads their fields;
 * a layer-router frame is unpacked, bound to the graph and routes a query,
 * as `query --route` does; a nav-policy frame is unpacked, bound and
 * searches with every skip and stop kind, as `query --nav --recall` does;
 * an edge-scorer frame is unpacked and, when it fits the graph, scores
 * every level-0 edge, as `edge-score --init` starts from it.
 * Labels frames are taken into a label table as query takes them; when the
 * table covers the graph, filtered searches run in every mode
 * (filt_search.c) after the renumbering, as query --filters.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "channel.h"
#include "edge.h"
#include "filt.h"
#include "hnsw.h"
#include "hnsw_io.h"
#include "nav.h"
#include "route.h"

#define MAX_FRAME ((size_t)64 << 10)

typedef struct extra {
    route_model *rm;
    nav_policy *nav;
    edge_model *em;
    filt_labels *fl;
} extra;

static int other_frame(const frame_in *f, void *arg, hf_err *e)
{
    extra *x = arg;
    if (strcmp(f->type, "labels") == 0) {
        if (!x->fl && filt_labels_new(&x->fl, e))
            return HF_ENOMEM;
        return filt_labels_take_frame(x->fl, f, 1u << 20, e);
    }
    if (strcmp(f->type, "model") == 0 && route_is_frame(f->map)) {
        route_destroy(&x->rm);
        return route_unpack(f->map, &x->rm, e);
    }
    if (strcmp(f->type, "model") == 0 && nn_model_is_kind(f->map, EDGE_MODEL_KIND)) {
        edge_model_destroy(&x->em);
        return edge_model_unpack(f->map, &x->em, e);
    }
    if (strcmp(f->type, "model") == 0 && nav_is_frame(f->map)) {
        nav_destroy(&x->nav);
        return nav_unpack(f->map, &x->nav, e);
    }
    uint64_t u;
    if (frame_get_u64(f, "n", &u, e) == HF_EDATA)
        return HF_EDATA; /* exercise the abort-from-callback path too */
    return 0;
}

/* route one query through a bound router, as query --route does */
static void route_some(route_model *m, const hnsw *h)
{
    hf_err e;
    if (!m || route_bind(m, h, &e) != 0)
        return;
    float *q = calloc(h->dim, sizeof *q), *z = calloc(m->r, sizeof *z);
    hnsw_searcher *s = NULL;
    if (q && z && hnsw_searcher_new(h, 32, &s, &e) == 0) {
        for (route_mode md = ROUTE_CLASSIC; md <= ROUTE_LEARNED; md++) {
            uint32_t entry;
            int level;
            double cost;
            route_entry(m, h, md, q, z, &entry, &level, &cost);
            hnsw_hit hits[10];
            size_t got = 0;
            hnsw_search_from(h, s, q, 10, 32, entry, level, hits, &got, NULL);
        }
    }
    hnsw_searcher_destroy(&s);
    free(q);
    free(z);
}

/* search with a bound policy, every skip and stop kind, as query --nav does */
static void nav_some(nav_policy *p, const hnsw *h)
{
    hf_err e;
    if (!p || nav_bind(p, h, &e) != 0)
        return;
    float *q = calloc(h->dim, sizeof *q);
    nav_searcher *s = NULL;
    nav_adsamp *ad = NULL;
    if (q && nav_searcher_new(h, 32, &s, &e) == 0 && nav_adsamp_new(h, 2.1f, 1, &ad, &e) == 0) {
        for (size_t j = 0; j < h->dim; j++)
            q[j] = (float)((int)j % 3) - 1.0f;
        for (int sk = NAV_SKIP_NONE; sk <= NAV_SKIP_ADSAMPLING; sk++)
            for (int sp = NAV_STOP_EF; sp <= NAV_STOP_ADAPTIVE; sp++) {
                size_t ef = 0;
                nav_cfg c = {.skip = (nav_skip_kind)sk,
                             .stop = (nav_stop_kind)sp,
                             .stop_p = nav_stop_threshold(p, 0.9, &ef),
                             .patience = 2};
                hnsw_hit hits[10];
                size_t got = 0;
                nav_search(h, p, ad, s, &c, q, 10, ef < 32 ? ef : 32, hits, &got, NULL);
            }
    }
    nav_adsamp_destroy(&ad);
    nav_searcher_destroy(&s);
    free(q);
}

/* score every level-0 edge with an edge model that fits the graph, as
 * edge-score --init does (a small m0 only: the batch grows with it) */
static void edge_some(edge_model *m, const hnsw *h)
{
    hf_err e;
    if (!m || edge_model_dim(m) != h->dim || edge_model_m0(m) < h->p.M0 || edge_model_m0(m) > 64)
        return;
    edge_graph *g = NULL;
    if (edge_graph_new(h, 1, &g, &e) != 0)
        return;
    float *logit = malloc((g->nedges ? g->nedges : 1) * sizeof *logit);
    if (logit)
        edge_model_score(m, h, g, logit, &e);
    free(logit);
    edge_graph_destroy(&g);
}

static void search_some(const hnsw *h)
{
    hf_err e;
    hnsw_searcher *s = NULL;
    if (hnsw_searcher_new(h, 32, &s, &e) != 0)
        return;
    float *q = calloc(h->dim, sizeof *q);
    hnsw_hit hits[10];
    for (int t = 0; q && t < 3; t++) {
        for (size_t j = 0; j < h->dim; j++)
            q[j] = (float)((t * 7 + (int)j) % 5) - 2.0f;
        size_t got = 0;
        hnsw_stats st = {0};
        hnsw_search(h, s, q, 10, 32, hits, &got, &st);
        hnsw_search_codes(h, s, q, 10, 32, 12, hits, &got, &st); /* plain search without codes */
    }
    free(q);
    hnsw_searcher_destroy(&s);
}

/* filtered searches in every mode with a few filters drawn from the labels */
static void filter_some(filt_labels *fl, hnsw *h)
{
    hf_err e;
    if (!fl || fl->n != h->n)
        return;
    if (h->ext_id && filt_labels_permute(fl, h->ext_id, h->n, &e))
        return;
    if (filt_postings_build(fl, &e))
        return;
    filt_searcher *fs = NULL;
    hnsw_searcher *s = NULL;
    float *q = calloc(h->dim, sizeof *q);
    if (q && filt_searcher_new(h, 32, &fs, &e) == 0 && hnsw_searcher_new(h, 32, &s, &e) == 0) {
        for (int t = 0; t < 3; t++) {
            const uint32_t *lab;
            size_t c = filt_labels_of(fl, (uint32_t)(t * 7 % (h->n ? h->n : 1)), &lab);
            filt_query fq;
            uint32_t two[2] = {c ? lab[0] : 0, (uint32_t)t};
            if (filt_query_set(&fq, two, 2, t == 2, &e))
                continue;
            for (filt_mode m = FILT_AUTO; m <= FILT_POST; m++) {
                filt_plan p;
                filt_plan_defaults(&p);
                p.mode = m;
                p.brute_max = (size_t)t;
                hnsw_hit hits[10];
                size_t got = 0;
                filt_search(h, fl, fs, s, &p, &fq, q, 10, 32, hits, &got, NULL);
            }
        }
    }
    filt_searcher_destroy(&fs);
    hnsw_searcher_destroy(&s);
    free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz_index", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        hf_err e;
        channel *c = NULL;
        if (channel_open_in(path, MAX_FRAME, &c, &e) == 0) {
            hnsw *h = NULL;
            extra x = {0};
            if (hnsw_load(c, &h, other_frame, &x, &e) == 0) {
                search_some(h);
                /* as query does: renumber for locality, build the speed
                 * layout's rows when the index has its rows frame, then
                 * search again (on the rows when there are any) */
                if (hnsw_reorder(h, &e) == 0 && hnsw_rows_build(h, 1, &e) == 0) {
                    search_some(h);
                    route_some(x.rm, h);
                    edge_some(x.em, h);
                    filter_some(x.fl, h);
                    if (hnsw_l2_space(h))
                        nav_some(x.nav, h);
                }
                hnsw_destroy(&h);
            }
            route_destroy(&x.rm);
            nav_destroy(&x.nav);
            edge_model_destroy(&x.em);
            filt_labels_destroy(&x.fl);
            channel_destroy(&c);
        }
    }
    close(fd);
    return 0;
}
