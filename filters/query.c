/*
 * query - answer k-NN queries against an index: from a vector frame stream
 * (stdin by default), over ZeroMQ as a server (--serve), or as a client of
 * such a server (--connect). --exact answers by brute force (OpenBLAS): the
 * ground truth and the flat baseline.
 *
 * Output: a results stream, header {schema:"hnswflow.results", k, metric,
 * count, ids?}, one {t:"result", qid, ids: bin u32[], dists: bin f32[]} per
 * query (nearest first), end. An index with external ids (ids frames)
 * answers with u64 ids and says so in the header (ids: "u64"). The summary line on stderr times
 * only the searching.
 *
 * Filtered search (filt.h): a query may carry a filter (the "filter" key of
 * a query frame, or a line of --filters FILE); it is answered among the
 * nodes whose labels match, by the planner of filt_search.c, and --exact
 * then gives the exact nearest among the matching nodes.
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "channel.h"
#include "cli.h"
#include "curve.h"
#include "fanout.h"
#include "filt.h"
#include "hnsw.h"
#include "hnsw_ids.h"
#include "hnsw_io.h"
#include "knn.h"
#include "nav.h"
#include "progress.h"
#include "qbatch.h"
#include "qlog.h"
#include "route.h"
#include "serve.h"
#include "serve_stats.h"
#include "vecstream.h"

#define IN_FLIGHT_DEFAULT 1000      /* --connect: queries awaiting an answer */
#define IN_FLIGHT_REQUESTS_MAX 1000 /* ZeroMQ's default high-water mark */

static const char *prog = "query";

static void usage(void)
{
    printf("usage: query [--index FILE] [options] [QUERIES]\n"
           "Answer k-NN queries. Queries are a vector frame stream (stdin by default);\n"
           "without --index the index stream is read from stdin first.\n\n"
           "  -i, --index EP        index file (or any endpoint carrying an index stream)\n"
           "  -k N                  neighbours per query (default 10)\n"
           "      --ef N            search beam width (default 64, raised to k)\n"
           "  -t, --threads N       search threads (default 1)\n"
           "      --exact           brute force with OpenBLAS (ground truth)\n"
           "      --rerank N        with a compressed index: re-rank the best N candidates\n"
           "                        found on codes with exact distances (default: ef); where\n"
           "                        the codes are lossless (int8 of 8-bit data, L2) and the\n"
           "                        query is coded exactly, code distances are exact and\n"
           "                        only the best k are sorted, no vectors read\n"
           "      --rerank-vectors  re-rank from the f32 vectors even with lossless codes\n"
           "      --no-codes        ignore the index's codes and rows (graph-build --preset\n"
           "                        speed), traverse on f32 vectors\n"
           "      --no-reorder      keep the index's node order in memory (default: renumber\n"
           "                        nodes breadth-first for cache locality; ids unchanged)\n"
           "      --route           enter the graph where the index's layer-router says\n"
           "                        (layer-route); its cost is counted in the distance\n"
           "                        computations\n"
           "      --entry KIND      baselines with the router's candidates: flat (level 0\n"
           "                        from the medoid candidate), nearest (level 0 from the\n"
           "                        exactly nearest candidate), classic (the default)\n"
           "      --nav             search with the index's navigation policy (nav-train):\n"
           "                        its skip model decides which neighbours are measured\n"
           "                        (with --route: from the router's entry)\n"
           "      --recall R        stop each query when the policy's stop model predicts\n"
           "                        recall@k R (0 < R <= 1; calibrated by nav-train; the beam\n"
           "                        is the policy's ef unless --ef is given)\n"
           "      --skip KIND       the distance-skip test: learned (= --nav), adsampling\n"
           "                        (ADSampling, random rotation + hypothesis test; no policy\n"
           "                        needed), none\n"
           "      --eps0 F          ADSampling's test parameter (default 2.1)\n"
           "      --stop KIND       when to stop: ef (classic), learned (= --recall), adaptive\n"
           "                        (no result change for --patience hops and the nearest\n"
           "                        candidate beyond the k-th result; no policy needed)\n"
           "      --patience N      hops for --stop adaptive (default 8)\n"
           "      --serve EP        serve query frames over ZeroMQ (ROUTER) until SIGINT/SIGTERM\n"
           "      --log FILE        --serve: append every answered query frame (vector, k,\n"
           "                        ef or recall, time) to FILE, a query log for\n"
           "                        pipelines/retrain.sh (schemas/header-querylog.json)\n"
           "      --log-max BYTES   rotate the log to FILE.1 past this size (default 64 MiB)\n"
           "      --connect EP      send the queries to a --serve instance, print its answers\n"
           "      --request-size N  with --connect: N queries a request (a \"queries\" frame,\n"
           "                        answered with one \"results\" frame; default 1: one\n"
           "                        \"query\" frame each); saves the per-message cost\n"
           "      --in-flight N     with --connect: at most N queries awaiting an answer,\n"
           "                        across input frames (default 1000; at least one request,\n"
           "                        at most 1000 requests); keep N x the time a query takes\n"
           "                        under a front end's --shard-timeout\n"
           "      --fanout SPEC     with --serve, no index: the front end of a sharded index;\n"
           "                        SPEC lists the shards' --serve endpoints, shards separated\n"
           "                        by ',', replicas of one shard by '|' (tcp://a:1|tcp://b:1,\n"
           "                        tcp://a:2): each request goes to one replica of every shard\n"
           "                        (the one with the fewest in flight), the answers' top k are\n"
           "                        merged; shards need external ids (embed-load --shard)\n"
           "      --shard-timeout MS  with --fanout: answer after MS ms with the shards that\n"
           "                        answered, marked {partial: true, missing: [shards]}\n"
           "                        (default 1000); a lost replica's requests go to another\n"
           "      --hedge MS        with --fanout: a shard's part not answered MS ms after the\n"
           "                        request came goes to another replica of that shard too\n"
           "                        (once; the first answer counts): a slow but connected\n"
           "                        replica costs MS, not --shard-timeout (default: off)\n"
           "      --curve-secret FILE  server (--serve, or a ZeroMQ stream endpoint this end\n"
           "                        binds: -o tcp://... by default): require CURVE, this\n"
           "                        server's secret key file (pipelines/curve-keygen.sh)\n"
           "      --curve-allow DIR server: the public key files of the clients let in (a ZAP\n"
           "                        handler refuses every other key)\n"
           "      --curve-key FILE  client (--connect, --fanout to its shards, a ZeroMQ\n"
           "                        stream endpoint this end connects to: a queries input by\n"
           "                        default): this client's secret key file\n"
           "      --curve-server FILE  client: the server's public key file\n"
           "      --filters FILE    one filter a line for the queries of the stream, in\n"
           "                        order: labels separated by spaces, an empty line no\n"
           "                        filter; a query matches vectors sharing a label\n"
           "                        (with --connect: sent in each request)\n"
           "      --filter-all      a filter matches vectors carrying all its labels\n"
           "      --filter-mode M   auto (default: chosen per query from label counts\n"
           "                        and the fraction matching near the query), graph\n"
           "                        (two-hop walk), brute (exact over the matching),\n"
           "                        scan (the matching vectors' codes, the best\n"
           "                        re-ranked; graph-build --compress), beam (walk,\n"
           "                        results filtered), post (baseline: unfiltered, k grown)\n"
           "      --filter-brute N  auto: exact (scan with codes) up to N estimated\n"
           "                        matches (1500)\n"
           "      --filter-beam F   auto: beam from this fraction matching near the\n"
           "                        query on (0.3)\n"
           "      --filter-walk F   auto: below this fraction near the query (0.02) the\n"
           "                        matching lie elsewhere: exact (scan) instead of graph\n"
           "      --filter-exact N  auto: ... when at most N match (20000)\n"
           "      --filter-rerank N scan: code distances re-ranked exactly (40)\n"
           "  -o, --output EP       where results go (default -)\n"
           "      --max-k N         largest k a request may ask (default 1000)\n"
           "      --max-ef N        largest ef a request may ask (default 10000)\n"
           "      --max-dim N       refuse dimensions above N (default 65536)\n"
           "      --max-frame BYTES refuse frames larger than this (default 256 MiB)\n"
           "  -h, --help            this text\n\n"
           "Request frame: {t:\"query\", qid, vec: bin f32[dim], k?, ef?, recall?,\n"
           "filter?: [labels], filter_all?}; answer:\n"
           "{t:\"result\", qid, ids, dists} or {t:\"error\", qid?, msg}.\n"
           "Batch request: {t:\"queries\", qid?, n, vecs: bin f32[n*dim], k?, ef?, ...}\n"
           "(one k, ef and filter for all n); answer {t:\"results\", qid, n,\n"
           "counts: bin u32[n], ids, dists}, query i's answers after those of 0..i-1.\n"
           "{t:\"info\"} is answered with {t:\"info\", dim, metric, count}.\n"
           "{t:\"stats\"} is answered with the server's counters (schemas/stats.json):\n"
           "requests, errors, QPS, latency p50/p99 since start, index size, model staleness.\n"
           "{t:\"reload\", path?} (or SIGHUP) loads the index file again (or path), whole,\n"
           "and serves it from the next request on: {t:\"reloaded\", count, nav}; on\n"
           "failure an error frame and the old index keeps serving.\n");
}

typedef struct opts {
    const char *index_ep, *queries_ep, *out_ep, *serve_ep, *connect_ep;
    const char *fanout;    /* --fanout SPEC */
    int shard_timeout;     /* --shard-timeout MS */
    int hedge;             /* --hedge MS, 0: off */
    uint64_t request_size; /* --connect: queries a request (--request-size) */
    uint64_t in_flight;    /* --connect: queries awaiting an answer at once (--in-flight) */
    curve_cfg curve;       /* --curve-* */
    uint64_t k, ef, max_k, max_ef, max_dim, max_frame;
    uint64_t rerank;
    int threads, exact, no_codes, no_reorder, rerank_vectors;
    int route;         /* --route */
    const char *entry; /* --entry */
    int ef_set;
    nav_skip_kind skip; /* --nav / --skip */
    nav_stop_kind stop; /* --recall / --stop */
    double recall, eps0;
    uint32_t patience;
    const char *filters_path;
    int filter_all;
    filt_plan plan;
    const char *log_path; /* --log */
    uint64_t log_max;     /* --log-max */
} opts;

typedef struct engine {
    hnsw *h;
    hnsw_searcher **searchers; /* one per thread */
    int threads;
    int exact;
    int use_codes;
    size_t rerank; /* 0: ef */
    route_model *router;
    route_mode mode;
    uint64_t upper, hops; /* sums over the queries answered, for the summary */
    double route_cost;
    const uint64_t *ext; /* external id of each node (saved order), NULL: node numbers */
    /* the navigation loop (nav.h): used when any of its parts is asked for */
    int use_nav;
    nav_policy *nav;
    nav_adsamp *ad;
    nav_cfg ncfg;
    nav_searcher **ns;          /* one per thread */
    filt_labels *labels;        /* NULL: the index has none */
    filt_searcher **fsearchers; /* one per thread, with labels */
    filt_plan plan;
    filt_stats fst; /* sums over filtered queries */
    uint64_t nfiltered;
    serve_stats_index six; /* what a stats request reports of the index */
    hnsw_ids *ids;         /* owns ext */
} engine;

typedef struct batch_job {
    engine *en;
    const float *rows;
    const filt_query *const *filt; /* per row, NULL: unfiltered; NULL: none */
    size_t n, k, ef;
    uint32_t *ids;
    float *dists;
    size_t *found;
    uint64_t *ndist;
    hnsw_stats *stats; /* per thread */
    double *rcost;     /* per thread: routing cost */
    const nav_cfg *ncfg;
    filt_stats *fst; /* per thread */
    int t;
    atomic_size_t *next; /* first query not yet taken, shared by the threads */
} batch_job;

/* Queries a thread takes at a time: small enough to even out the threads'
 * finishing times at the batch's end, large enough that neighbouring
 * threads rarely write to the same cache line of the answers. */
#define QUERY_CHUNK 16

/* Where the router enters the graph for query q (input order); qs (dim)
 * and z (the router's r) are scratch. Returns the routing's cost. */
static double routed_entry(const engine *en, const float *q, float *qs, float *z, uint32_t *entry,
                           int *level)
{
    const hnsw *h = en->h;
    /* the router reads the query as the index stores vectors */
    if (h->perm)
        hnsw_permute_query(h, q, qs);
    else
        memcpy(qs, q, h->dim * sizeof *qs);
    if (h->p.metric == METRIC_COSINE)
        vec_normalize(qs, h->dim);
    double c;
    route_entry(en->router, h, en->mode, qs, z, entry, level, &c);
    return c;
}

static void *search_part(void *arg)
{
    batch_job *j = arg;
    engine *en = j->en;
    const hnsw *h = en->h;
    hnsw_hit *hits = malloc(j->k * sizeof *hits);
    float *qs = malloc(h->dim * sizeof *qs);
    float *z = malloc((en->router ? en->router->r : 1) * sizeof *z);
    if (!hits || !qs || !z) {
        free(hits);
        free(qs);
        free(z);
        return NULL;
    }
    hnsw_stats st = {0};
    nav_stats ns = {0};
    filt_stats fst = {0};
    double rcost = 0;
    for (;;) {
        size_t first = atomic_fetch_add(j->next, QUERY_CHUNK);
        if (first >= j->n)
            break;
        size_t end = first + QUERY_CHUNK < j->n ? first + QUERY_CHUNK : j->n;
        for (size_t i = first; i < end; i++) {
            size_t got = 0;
            const float *q = j->rows + i * h->dim;
            const filt_query *fq = j->filt ? j->filt[i] : NULL;
            /* --exact, an unfiltered query among filtered ones: the empty
             * all-of filter matches every node */
            static const filt_query everything = {.n = 0, .all = 1};
            if (en->exact && j->filt && !(fq && fq->n))
                fq = &everything;
            if (fq && (fq->n || fq->all)) {
                filt_plan plan = en->plan;
                if (en->exact)
                    plan.mode = FILT_BRUTE;
                filt_search(h, en->labels, en->fsearchers[j->t], en->searchers[j->t], &plan, fq, q,
                            j->k, en->exact ? j->k : j->ef, hits, &got, &fst);
            } else if (en->use_nav) {
                if (en->mode != ROUTE_CLASSIC) { /* --route --nav: the router's entry */
                    uint32_t entry;
                    int level;
                    rcost += routed_entry(en, q, qs, z, &entry, &level);
                    nav_searcher_entry(en->ns[j->t], entry, level);
                }
                nav_search(h, en->nav, en->ad, en->ns[j->t], j->ncfg, q, j->k, j->ef, hits, &got,
                           &ns);
            } else if (en->mode != ROUTE_CLASSIC) {
                uint32_t entry;
                int level;
                rcost += routed_entry(en, q, qs, z, &entry, &level);
                hnsw_search_from(h, en->searchers[j->t], q, j->k, j->ef, entry, level, hits, &got,
                                 &st);
            } else if (en->use_codes)
                hnsw_search_codes(en->h, en->searchers[j->t], j->rows + i * en->h->dim, j->k, j->ef,
                                  en->rerank ? en->rerank : j->ef, hits, &got, &st);
            else
                hnsw_search(en->h, en->searchers[j->t], j->rows + i * en->h->dim, j->k, j->ef, hits,
                            &got, &st);
            for (size_t r = 0; r < got; r++) {
                j->ids[i * j->k + r] = hits[r].id;
                j->dists[i * j->k + r] = hits[r].d;
            }
            j->found[i] = got;
        }
    }
    if (en->use_nav) { /* fractional work counted (nav.h) */
        st.ndist = (uint64_t)(ns.work + 0.5);
        st.hops = ns.hops;
        st.ndist_upper = ns.ndist_upper;
    }
    j->ndist[j->t] = st.ndist;
    j->stats[j->t] = st;
    j->rcost[j->t] = rcost;
    j->fst[j->t] = fst;
    free(hits);
    free(qs);
    free(z);
    return NULL;
}

/* Answer n queries into ids/dists (n*k), found[n]; returns distance count. */
static uint64_t answer_batch(engine *en, const float *rows, const filt_query *const *filt, size_t n,
                             size_t k, size_t ef, double recall, uint32_t *ids, float *dists,
                             size_t *found, hf_err *e, int *rc)
{
    *rc = 0;
    int any_filter = 0;
    for (size_t i = 0; filt && i < n; i++)
        any_filter |= filt[i] && filt[i]->n;
    if (any_filter && !en->labels) {
        *rc = hf_err_set(e, HF_EDATA,
                         "a query has a filter, but the index has no labels (embed-load --labels)");
        return 0;
    }
    if (en->exact && !any_filter) {
        const hnsw *h = en->h;
        knn_base b = hnsw_knn_base(h);
        /* stored vectors have their dimensions reordered: reorder the queries */
        float *permuted = h->perm ? calloc(n * h->dim, sizeof(float)) : NULL;
        if (h->perm && !permuted) {
            *rc = hf_err_set(e, HF_ENOMEM, "out of memory");
            return 0;
        }
        for (size_t i = 0; permuted && i < n; i++)
            hnsw_permute_query(h, rows + i * h->dim, permuted + i * h->dim);
        *rc = knn_exact(&b, permuted ? permuted : rows, n, k, ids, dists, e);
        free(permuted);
        size_t live = h->n - h->n_deleted;
        for (size_t i = 0; i < n; i++)
            found[i] = live < k ? live : k;
        return (uint64_t)n * live;
    }
    batch_job jobs[256] = {0};
    uint64_t nd[256] = {0};
    hnsw_stats sts[256] = {0};
    double rc_[256] = {0};
    filt_stats fs[256];
    memset(fs, 0, sizeof fs);
    pthread_t tid[256];
    int T = en->threads;
    atomic_size_t next = 0;
    nav_cfg ncfg = en->ncfg;
    if (recall > 0) { /* a request's own recall target */
        ncfg.stop = NAV_STOP_LEARNED;
        size_t cef;
        ncfg.stop_p = nav_stop_threshold(en->nav, recall, &cef);
        if (ef == 0)
            ef = cef;
    }
    for (int t = 0; t < T; t++)
        jobs[t] = (batch_job){en,    rows, filt, n,   k,     ef, ids, dists,
                              found, nd,   sts,  rc_, &ncfg, fs, t,   &next};
    for (int t = 1; t < T; t++)
        pthread_create(&tid[t], NULL, search_part, &jobs[t]);
    search_part(&jobs[0]);
    for (int t = 1; t < T; t++)
        pthread_join(tid[t], NULL);
    uint64_t s = 0;
    double rsum = 0;
    for (int t = 0; t < T; t++) {
        s += nd[t];
        en->upper += sts[t].ndist_upper;
        en->hops += sts[t].hops;
        rsum += rc_[t];
        s += fs[t].ndist;
        en->hops += fs[t].hops;
        en->fst.ndist += fs[t].ndist;
        en->fst.fallbacks += fs[t].fallbacks;
        en->fst.nchecked += fs[t].nchecked;
        en->fst.ncode += fs[t].ncode;
        en->fst.nprobed += fs[t].nprobed;
        en->fst.near_sum += fs[t].near_sum;
        for (int m = 0; m < FILT_NMODES; m++) {
            en->fst.by_mode[m] += fs[t].by_mode[m];
            en->nfiltered += fs[t].by_mode[m];
        }
    }
    /* routing is work done instead of distances: counted with them */
    en->route_cost += rsum;
    return s + (uint64_t)(rsum + 0.5);
}

/* A result frame from raw id bytes (ids_len bytes) and n distances. */
static void pack_result_raw(frame_out *fo, uint64_t qid, const void *ids, size_t ids_len,
                            const float *dists, size_t n)
{
    frame_begin(fo, "result", 3);
    frame_put_u64(fo, "qid", qid);
    frame_put_bin(fo, "ids", ids, ids_len);
    frame_put_bin(fo, "dists", dists, n * sizeof(float));
}

static void pack_result(const engine *en, frame_out *fo, uint64_t qid, const uint32_t *ids,
                        const float *dists, size_t n)
{
    if (!en->ext)
        return pack_result_raw(fo, qid, ids, n * sizeof(uint32_t), dists, n);
    uint64_t ext[256], *big = n > 256 ? malloc(n * sizeof *big) : NULL, *x = big ? big : ext;
    if (n > 256 && !big)
        n = 256; /* out of memory: the first 256 rather than none */
    for (size_t i = 0; i < n; i++)
        x[i] = en->ext[ids[i]];
    pack_result_raw(fo, qid, x, n * sizeof(uint64_t), dists, n);
    free(big);
}

/* A results frame (qbatch.h) for n queries answered into ids/dists (n*k,
 * found[i] each): the answers packed end to end. HF_ENOMEM, or 0. */
static int pack_results(const engine *en, frame_out *fo, uint64_t qid, size_t n, size_t k,
                        const uint32_t *ids, const float *dists, const size_t *found)
{
    size_t total = 0, idw = en->ext ? 8 : 4;
    for (size_t i = 0; i < n; i++)
        total += found[i];
    uint32_t *counts = malloc(n * sizeof *counts);
    unsigned char *ib = malloc(total * idw + 1);
    float *db = malloc(total * sizeof *db + 1);
    if (!counts || !ib || !db) {
        free(counts);
        free(ib);
        free(db);
        return HF_ENOMEM;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        counts[i] = (uint32_t)found[i];
        for (size_t r = 0; r < found[i]; r++, o++) {
            uint32_t id = ids[i * k + r];
            if (en->ext)
                memcpy(ib + 8 * o, &en->ext[id], 8);
            else
                memcpy(ib + 4 * o, &id, 4);
            db[o] = dists[i * k + r];
        }
    }
    qbatch_pack_results(fo, qid, n, counts, ib, idw, db, total, 0);
    free(counts);
    free(ib);
    free(db);
    return 0;
}

static int put_results_header(channel *c, const char *metric, size_t k, uint64_t count, int u64,
                              hf_err *e)
{
    frame_out fo;
    frame_out_init(&fo);
    frame_begin(&fo, "header", u64 ? 6 : 5);
    frame_put_str(&fo, "schema", STREAM_RESULTS);
    frame_put_u64(&fo, "v", 1);
    frame_put_u64(&fo, "k", k);
    frame_put_str(&fo, "metric", metric);
    frame_put_u64(&fo, "count", count);
    if (u64)
        frame_put_str(&fo, "ids", "u64");
    int rc = channel_send(c, &fo, e);
    frame_out_free(&fo);
    return rc;
}

/* What the loader passes on: ids frames name the nodes; the layer router is
 * kept (query --route), other models ignored. */
typedef struct load_extra {
    hnsw_ids *ids;
    serve_stats_index *six; /* model frames counted, their staleness kept */
    route_model **rm;       /* NULL: no --route / --entry, nothing to read */
    nav_policy **nav;       /* NULL: no --nav / --recall, nothing to read */
    filt_labels **labels;   /* created at the first labels frame */
} load_extra;

static int keep_extra(const frame_in *f, void *arg, hf_err *e)
{
    load_extra *x = arg;
    if (strcmp(f->type, "ids") == 0)
        return hnsw_ids_take_frame(x->ids, f, UINT32_MAX - 1, e);
    if (strcmp(f->type, "model") == 0)
        serve_stats_index_model(x->six, f);
    if (x->nav && strcmp(f->type, "model") == 0 && nav_is_frame(f->map)) {
        nav_destroy(x->nav);
        return nav_unpack(f->map, x->nav, e); /* the loader names the frame */
    }
    if (strcmp(f->type, "labels") == 0) {
        if (!*x->labels && filt_labels_new(x->labels, e))
            return HF_ENOMEM;
        return filt_labels_take_frame(*x->labels, f, UINT32_MAX - 1,
                                      e); /* the loader names the frame */
    }
    route_model **rm = x->rm;
    if (!rm || strcmp(f->type, "model") != 0 || !route_is_frame(f->map))
        return 0;
    route_destroy(rm);
    return route_unpack(f->map, rm, e); /* the loader names the frame */
}

static void open_stream_input(const opts *o, channel *index_ch, channel **in, vecstream *vs,
                              const engine *en)
{
    hf_err e = {0};
    const char *name = strcmp(o->queries_ep, "-") == 0 ? "stdin" : o->queries_ep;
    if (index_ch) {
        *in = index_ch; /* queries follow the index on the same stream */
    } else if (channel_open_in_curve(o->queries_ep, o->max_frame, &o->curve, in, &e)) {
        cli_fail(prog, name, &e);
    }
    if (vecstream_open(vs, *in, o->max_dim, &e))
        cli_fail(prog, name, &e);
    if (vs->dim != en->h->dim) {
        hf_err_set(&e, HF_EDATA, "frame 1: queries have dimension %zu, index has %zu", vs->dim,
                   en->h->dim);
        cli_fail(prog, name, &e);
    }
}

static void summary(const engine *en, uint64_t nq, double t_search, double t_wall, uint64_t ndist)
{
    double d = nq ? (double)nq : 1.0;
    fprintf(stderr,
            "query: %llu queries, %.3f s, %.1f QPS, %.1f mean distance computations "
            "(%.1f above level 0, %.1f routing), %.1f mean hops (wall %.3f s)\n",
            (unsigned long long)nq, t_search, t_search > 0 ? nq / t_search : 0.0,
            nq ? (double)ndist / nq : 0.0, (double)en->upper / d, en->route_cost / d,
            (double)en->hops / d, t_wall);
    if (en->nfiltered)
        fprintf(stderr,
                "query: %llu filtered queries: %llu graph, %llu brute, %llu scan, %llu beam, "
                "%llu post (%llu walks fell back to an exact pass), %.1f mean label checks, "
                "%.1f mean code distances, %.3f mean fraction matching near the query (%llu "
                "sampled)\n",
                (unsigned long long)en->nfiltered, (unsigned long long)en->fst.by_mode[FILT_GRAPH],
                (unsigned long long)en->fst.by_mode[FILT_BRUTE],
                (unsigned long long)en->fst.by_mode[FILT_SCAN],
                (unsigned long long)en->fst.by_mode[FILT_BEAM],
                (unsigned long long)en->fst.by_mode[FILT_POST],
                (unsigned long long)en->fst.fallbacks,
                (double)en->fst.nchecked / (double)en->nfiltered,
                (double)en->fst.ncode / (double)en->nfiltered,
                en->fst.nprobed ? en->fst.near_sum / (double)en->fst.nprobed : 0.0,
                (unsigned long long)en->fst.nprobed);
}

static int run_stream(const opts *o, engine *en, channel *index_ch)
{
    hf_err e = {0};
    double t_wall0 = now_seconds();
    channel *in = NULL, *out = NULL;
    vecstream vs;
    open_stream_input(o, index_ch, &in, &vs, en);
    const char *in_name = strcmp(o->queries_ep, "-") == 0 ? "stdin" : o->queries_ep;
    if (channel_open_out_curve(o->out_ep, &o->curve, &out, &e))
        cli_fail(prog, o->out_ep, &e);
    size_t k = o->k;
    if (put_results_header(out, metric_name(en->h->p.metric), k, vs.count_hint, en->ext != NULL,
                           &e))
        cli_fail(prog, o->out_ep, &e);
    filt_query *ffile = NULL; /* --filters */
    size_t nffile = 0;
    if (o->filters_path &&
        filt_query_read_file(o->filters_path, o->filter_all, &ffile, &nffile, &e))
        cli_fail(prog, o->filters_path, &e);
    if (o->filters_path && !en->labels) {
        hf_err_set(&e, HF_EDATA,
                   "filters given, but the index has no labels (embed-load --labels)");
        cli_fail(prog, o->filters_path, &e);
    }
    size_t cap = VECSTREAM_BATCH;
    const filt_query **fptr = malloc(cap * sizeof *fptr);
    uint32_t *ids = malloc(cap * k * sizeof *ids);
    float *dists = malloc(cap * k * sizeof *dists);
    size_t *found = malloc(cap * sizeof *found);
    frame_out fo;
    frame_out_init(&fo);
    uint64_t nq = 0, ndist = 0;
    double t_search = 0;
    const float *rows;
    size_t n;
    uint64_t first;
    int rc;
    while ((rc = vecstream_next(&vs, &rows, &n, &first, &e)) == 0) {
        if (n > cap) {
            cap = n;
            free(ids);
            free(dists);
            free(found);
            ids = malloc(cap * k * sizeof *ids);
            dists = malloc(cap * k * sizeof *dists);
            found = malloc(cap * sizeof *found);
            free(fptr);
            fptr = malloc(cap * sizeof *fptr);
        }
        if (!ids || !dists || !found || !fptr) {
            hf_err_set(&e, HF_ENOMEM, "out of memory");
            cli_fail(prog, in_name, &e);
        }
        /* a stream's filters: the query frame's own, else the file's line
         * for the query's position in the stream */
        int any = 0;
        for (size_t i = 0; i < n; i++) {
            fptr[i] = NULL;
            if (vs.req_has_filter)
                fptr[i] = &vs.req_filter;
            else if (ffile && nq + i >= nffile) {
                hf_err_set(&e, HF_EDATA, "%zu filters for a stream of more queries", nffile);
                free(fptr); /* exit leaves nothing unreachable behind (LeakSanitizer) */
                free(ffile);
                cli_fail(prog, o->filters_path, &e);
            } else if (ffile)
                fptr[i] = &ffile[nq + i];
            any |= fptr[i] != NULL;
        }
        double t0 = now_seconds();
        int src;
        size_t ef = o->ef;
        double rq = 0;
        if (en->use_nav && en->ncfg.stop == NAV_STOP_LEARNED) {
            rq = o->recall;
            if (!o->ef_set)
                ef = 0; /* --recall: the beam calibrated for it */
        }
        ndist +=
            answer_batch(en, rows, any ? fptr : NULL, n, k, ef, rq, ids, dists, found, &e, &src);
        t_search += now_seconds() - t0;
        if (src)
            cli_fail(prog, in_name, &e);
        for (size_t i = 0; i < n; i++) {
            pack_result(en, &fo, first + i, ids + i * k, dists + i * k, found[i]);
            if (channel_send(out, &fo, &e))
                cli_fail(prog, o->out_ep, &e);
        }
        nq += n;
    }
    if (rc != HF_EOF)
        cli_fail(prog, in_name, &e);
    if (ffile && nffile != nq) {
        hf_err_set(&e, HF_EDATA, "%zu filters for a stream of %llu queries", nffile,
                   (unsigned long long)nq);
        free(fptr);
        free(ffile);
        cli_fail(prog, o->filters_path, &e);
    }
    if (channel_send_end(out, nq, &e) || channel_commit(out, &e))
        cli_fail(prog, o->out_ep, &e);
    summary(en, nq, t_search, now_seconds() - t_wall0, ndist);
    free(ffile);
    free(fptr);
    frame_out_free(&fo);
    free(ids);
    free(dists);
    free(found);
    vecstream_close(&vs);
    if (in != index_ch)
        channel_destroy(&in);
    channel_destroy(&out);
    return 0;
}

static volatile sig_atomic_t stop_requested;

/* Load the index at idx_ep into *en with everything the options ask for
 * (router, policy, labels, searchers). When keep is given the index channel
 * stays open there (the queries follow the index on stdin); else it is
 * closed. On failure e says why and *en holds what was loaded so far
 * (engine_close frees it). */
#define FAIL                                                                                       \
    do {                                                                                           \
        channel_destroy(&ich);                                                                     \
        return e->code ? e->code : HF_EDATA;                                                       \
    } while (0)
static int engine_open(const opts *o, const char *idx_ep, engine *en, channel **keep, hf_err *e)
{
    int want_nav = o->skip != NAV_SKIP_NONE || o->stop != NAV_STOP_EF;
    int want_policy = o->skip == NAV_SKIP_LEARNED || o->stop == NAV_STOP_LEARNED;
    channel *ich = NULL;
    *en = (engine){.threads = o->threads, .exact = o->exact, .rerank = o->rerank, .plan = o->plan};
    if (channel_open_in_curve(idx_ep, o->max_frame, &o->curve, &ich, e))
        return HF_EOPEN;
    if (hnsw_ids_new(&en->ids, e)) {
        channel_destroy(&ich);
        return HF_ENOMEM;
    }
    hnsw_ids *ext = en->ids;
    load_extra extra = {.ids = ext,
                        .six = &en->six,
                        .labels = &en->labels,
                        .rm = o->route || o->entry ? &en->router : NULL,
                        .nav = want_policy ? &en->nav : NULL};
    if (hnsw_load_limited(ich, o->max_dim ? o->max_dim : VECSTREAM_MAX_DIM_DEFAULT, &en->h,
                          keep_extra, &extra, e))
        FAIL;
    if (ext->n && ext->n != en->h->n) {
        hf_err_set(e, HF_EDATA, "index has ids for %zu of its %zu nodes", ext->n, en->h->n);
        FAIL;
    }
    en->ext = ext->n ? ext->ext : NULL;
    if (en->labels && en->labels->n != en->h->n) {
        hf_err_set(e, HF_EDATA, "index has labels for %zu of its %zu nodes", en->labels->n,
                   en->h->n);
        FAIL;
    }
    en->mode = o->route                                       ? ROUTE_LEARNED
               : o->entry && strcmp(o->entry, "flat") == 0    ? ROUTE_FLAT
               : o->entry && strcmp(o->entry, "nearest") == 0 ? ROUTE_NEAREST
                                                              : ROUTE_CLASSIC;
    if (en->mode != ROUTE_CLASSIC && !en->router) {
        hf_err_set(e, HF_EDATA, "the index has no layer-router model (train one with layer-route)");
        FAIL;
    }
    en->use_codes = en->h->codes && !o->no_codes;
    if (o->rerank_vectors)
        en->h->codes_exact = 0;
    /* brute force reads the vectors in stored order: leave them be */
    if (!o->exact && !o->no_reorder && hnsw_reorder(en->h, e))
        FAIL;
    /* labels follow the renumbering; deleted nodes leave the counts */
    if (en->labels) {
        if (en->h->ext_id && filt_labels_permute(en->labels, en->h->ext_id, en->h->n, e))
            FAIL;
        for (size_t i = 0; i < en->h->n; i++)
            if (en->h->deleted[i])
                filt_labels_kill(en->labels, (uint32_t)i);
        if (filt_postings_build(en->labels, e))
            FAIL;
    }
    if (en->router && route_bind(en->router, en->h, e))
        FAIL;
    if (en->mode == ROUTE_LEARNED && en->router->fallback) {
        fprintf(stderr, "query: the index's router did not beat the classic descent on its "
                        "validation queries (layer-route said fallback): searching classically\n");
        en->mode = ROUTE_CLASSIC;
    }
    if (en->mode != ROUTE_CLASSIC)
        en->use_codes = 0; /* routed searches walk the f32 vectors */
    if (want_nav && !hnsw_l2_space(en->h)) {
        hf_err_set(e, HF_EDATA, "--nav/--recall/--skip/--stop need an l2 or cosine index, not %s",
                   metric_name(en->h->p.metric));
        FAIL;
    }
    if (want_policy && !en->nav) {
        hf_err_set(e, HF_EDATA, "the index has no nav-policy model (train one with nav-train)");
        FAIL;
    }
    if (en->nav && nav_bind(en->nav, en->h, e))
        FAIL;
    en->ncfg = (nav_cfg){.skip = o->skip, .stop = o->stop, .patience = o->patience};
    if (en->nav && en->nav->fallback && o->skip == NAV_SKIP_LEARNED) {
        fprintf(stderr, "query: the index's navigation policy did not beat the classic search on "
                        "its validation queries (nav-train said fallback): measuring every "
                        "neighbour\n");
        en->ncfg.skip = NAV_SKIP_NONE;
    }
    if (o->skip == NAV_SKIP_ADSAMPLING && nav_adsamp_new(en->h, (float)o->eps0, 42, &en->ad, e))
        FAIL;
    en->use_nav = want_nav;
    if (en->use_nav)
        en->use_codes = 0; /* the navigation loop walks the f32 vectors */
    /* the speed layout's rows are derived: built here, after renumbering
     * (routed searches walk the f32 vectors and need none) */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (!o->exact && !o->no_codes && en->mode == ROUTE_CLASSIC && !en->use_nav && en->h->rot &&
        hnsw_rows_build(en->h, ncpu > o->threads ? (int)ncpu : o->threads, e))
        FAIL;
    size_t max_ef = o->max_ef > o->ef ? o->max_ef : o->ef;
    if (max_ef < o->max_k)
        max_ef = o->max_k;
    en->searchers = calloc((size_t)o->threads, sizeof *en->searchers);
    for (int t = 0; en->searchers && t < o->threads; t++)
        if (hnsw_searcher_new(en->h, max_ef, &en->searchers[t], e))
            FAIL;
    if (!en->searchers) {
        hf_err_set(e, HF_ENOMEM, "out of memory");
        FAIL;
    }
    if (en->use_nav) {
        en->ns = calloc((size_t)o->threads, sizeof *en->ns);
        for (int t = 0; en->ns && t < o->threads; t++)
            if (nav_searcher_new(en->h, max_ef, &en->ns[t], e))
                FAIL;
        if (!en->ns) {
            hf_err_set(e, HF_ENOMEM, "out of memory");
            FAIL;
        }
    }
    if (en->labels) {
        en->fsearchers = calloc((size_t)o->threads, sizeof *en->fsearchers);
        for (int t = 0; en->fsearchers && t < o->threads; t++)
            if (filt_searcher_new(en->h, max_ef, &en->fsearchers[t], e))
                FAIL;
        if (!en->fsearchers) {
            hf_err_set(e, HF_ENOMEM, "out of memory");
            FAIL;
        }
    }
    if (keep)
        *keep = ich;
    else
        channel_destroy(&ich);
    return 0;
}
#undef FAIL

static void engine_close(engine *en)
{
    for (int t = 0; en->searchers && t < en->threads; t++)
        hnsw_searcher_destroy(&en->searchers[t]);
    free(en->searchers);
    for (int t = 0; en->ns && t < en->threads; t++)
        nav_searcher_destroy(&en->ns[t]);
    free(en->ns);
    nav_destroy(&en->nav);
    nav_adsamp_destroy(&en->ad);
    for (int t = 0; en->fsearchers && t < en->threads; t++)
        filt_searcher_destroy(&en->fsearchers[t]);
    free(en->fsearchers);
    filt_labels_destroy(&en->labels);
    route_destroy(&en->router);
    hnsw_destroy(&en->h);
    hnsw_ids_destroy(&en->ids);
    memset(en, 0, sizeof *en);
}

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static volatile sig_atomic_t reload_requested;

static void on_hup(int sig)
{
    (void)sig;
    reload_requested = 1;
}

/* Replace the served index by the one at path (the --index file when NULL),
 * between two requests: the new one is loaded whole first, so a failure
 * leaves the old one serving. Requests that arrive meanwhile wait in the
 * socket's queue; none is dropped. */
static int reload_engine(const opts *o, engine *en, const char *path, hf_err *e)
{
    if (!path)
        path = o->index_ep;
    if (!path || strcmp(path, "-") == 0)
        return hf_err_set(e, HF_EUSAGE, "reload needs an index file (the server read stdin)");
    engine fresh;
    int rc = engine_open(o, path, &fresh, NULL, e);
    if (rc == 0 && (fresh.h->dim != en->h->dim || fresh.h->p.metric != en->h->p.metric))
        rc = hf_err_set(e, HF_EDATA, "%s has dimension %zu (%s), the server serves %zu (%s)", path,
                        fresh.h->dim, metric_name(fresh.h->p.metric), en->h->dim,
                        metric_name(en->h->p.metric));
    if (rc) {
        hf_err_prefix(e, "reload %s", path);
        engine_close(&fresh);
        return rc;
    }
    engine_close(en);
    *en = fresh;
    serve_stats_index_graph(&en->six, en->h);
    fprintf(stderr, "query: reloaded %s: %zu vectors%s\n", path, en->h->n,
            en->nav ? ", with its navigation policy" : "");
    return 0;
}

static void reply_error(server *s, server_req *req, frame_out *fo, int has_qid, uint64_t qid,
                        const char *msg)
{
    hf_err e;
    frame_begin(fo, "error", has_qid ? 2 : 1);
    if (has_qid)
        frame_put_u64(fo, "qid", qid);
    frame_put_str(fo, "msg", msg);
    server_reply(s, req, fo, &e);
}

static void serve_one(const opts *o, engine *en, server *s, server_req *req, const frame_in *f,
                      frame_out *fo, uint64_t *ndist, qlog **log)
{
    char msg[600];
    uint64_t qid = 0, k = o->k, ef = o->ef;
    int has_qid = frame_get_u64(f, "qid", &qid, NULL) == 0;
    if (strcmp(f->type, "info") == 0) {
        frame_begin(fo, "info", en->ext ? 4 : 3);
        frame_put_u64(fo, "dim", en->h->dim);
        frame_put_str(fo, "metric", metric_name(en->h->p.metric));
        frame_put_u64(fo, "count", en->h->n - en->h->n_deleted);
        if (en->ext)
            frame_put_str(fo, "ids", "u64");
        hf_err e;
        server_reply(s, req, fo, &e);
        return;
    }
    int batch = strcmp(f->type, "queries") == 0;
    if (!batch && strcmp(f->type, "query") != 0) {
        snprintf(msg, sizeof msg,
                 "unexpected frame type \"%s\" (expected \"query\" or \"queries\")", f->type);
        return reply_error(s, req, fo, has_qid, qid, msg);
    }
    const char *vkey = batch ? "vecs" : "vec";
    uint64_t nq = 1;
    if (batch && (frame_get_u64(f, "n", &nq, NULL) != 0 || nq < 1 || nq > QBATCH_MAX)) {
        snprintf(msg, sizeof msg, "queries frame needs n, 1..%d", QBATCH_MAX);
        return reply_error(s, req, fo, has_qid, qid, msg);
    }
    const void *vec;
    size_t len, dim = en->h->dim;
    if (frame_get_bin(f, vkey, &vec, &len, NULL) != 0) {
        snprintf(msg, sizeof msg, "%s frame lacks a \"%s\" bin", f->type, vkey);
        return reply_error(s, req, fo, has_qid, qid, msg);
    }
    if (len != nq * dim * sizeof(float)) {
        snprintf(msg, sizeof msg, "%s has %zu bytes, %llu of index dimension %zu need %zu", f->type,
                 len, (unsigned long long)nq, dim, (size_t)nq * dim * sizeof(float));
        return reply_error(s, req, fo, has_qid, qid, msg);
    }
    frame_get_u64(f, "k", &k, NULL);
    int has_ef = frame_get_u64(f, "ef", &ef, NULL) == 0;
    double recall = 0;
    if (frame_get_f64(f, "recall", &recall, NULL) == 0) {
        if (!(recall > 0 && recall <= 1))
            return reply_error(s, req, fo, has_qid, qid, "recall must be in (0, 1]");
        if (!en->nav)
            return reply_error(s, req, fo, has_qid, qid,
                               "a recall target needs a navigation policy: the server runs "
                               "without --nav/--recall or the index has none");
        if (!en->use_nav)
            recall = 0; /* the policy fell back: classic search */
        else if (!has_ef && !o->ef_set)
            ef = 0; /* the calibrated beam for this recall */
    }
    if (k < 1 || k > o->max_k || ef > o->max_ef) {
        snprintf(msg, sizeof msg, "k=%llu / ef=%llu outside limits (k 1..%llu, ef ..%llu)",
                 (unsigned long long)k, (unsigned long long)ef, (unsigned long long)o->max_k,
                 (unsigned long long)o->max_ef);
        return reply_error(s, req, fo, has_qid, qid, msg);
    }
    filt_query fq;
    hf_err e;
    int frc = filt_query_from_frame(&fq, f, &e);
    if (frc && frc != HF_EOF)
        return reply_error(s, req, fo, has_qid, qid, e.msg);
    if (frc == 0 && fq.n && !en->labels)
        return reply_error(s, req, fo, has_qid, qid,
                           "a filter, but the index has no labels (embed-load --labels)");
    /* copies: the bin may be unaligned, and the search wants its rows */
    size_t n = (size_t)nq;
    float *rows = malloc(len);
    uint32_t *ids = malloc(n * k * sizeof *ids);
    float *dists = malloc(n * k * sizeof *dists);
    size_t *found = malloc(n * sizeof *found);
    const filt_query **fps = frc == 0 ? malloc(n * sizeof *fps) : NULL;
    if (!rows || !ids || !dists || !found || (frc == 0 && !fps)) {
        free(rows);
        free(ids);
        free(dists);
        free(found);
        free(fps);
        return reply_error(s, req, fo, has_qid, qid, "server out of memory");
    }
    memcpy(rows, vec, len);
    for (size_t i = 0; fps && i < n; i++)
        fps[i] = &fq;
    int rc = vec_check_finite(rows, n, dim, batch ? 0 : qid, &e);
    if (rc == 0)
        *ndist += answer_batch(en, rows, fps, n, k, ef, recall, ids, dists, found, &e, &rc);
    if (rc)
        reply_error(s, req, fo, has_qid, qid, e.msg);
    else if (!batch) {
        pack_result(en, fo, qid, ids, dists, found[0]);
        server_reply(s, req, fo, &e);
    } else if (pack_results(en, fo, qid, n, k, ids, dists, found))
        reply_error(s, req, fo, has_qid, qid, "server out of memory");
    else
        server_reply(s, req, fo, &e);
    /* logged once answered: a failing log stops logging, not serving */
    for (size_t i = 0; !rc && *log && i < n; i++)
        if (qlog_append(*log, qid + i, rows + i * dim, k, recall > 0 ? 0 : ef, recall, &e)) {
            fprintf(stderr, "query: %s: %s; query logging stops\n", o->log_path, e.msg);
            qlog_close(log);
        }
    free(rows);
    free(ids);
    free(dists);
    free(found);
    free(fps);
}

/* {t:"reload", path?}: answered {t:"reloaded", count} once the new index
 * serves, or an error frame (the old one still serving). */
static void serve_reload(const opts *o, engine *en, server *s, server_req *req, const frame_in *f,
                         frame_out *fo)
{
    char path[4096];
    hf_err e = {0};
    int rc = frame_get_str(f, "path", path, sizeof path, NULL);
    if (rc != 0 && rc != HF_EOF)
        return reply_error(s, req, fo, 0, 0, "reload: \"path\" is not a string");
    rc = reload_engine(o, en, rc == 0 ? path : NULL, &e);
    if (rc)
        return reply_error(s, req, fo, 0, 0, e.msg);
    frame_begin(fo, "reloaded", 2);
    frame_put_u64(fo, "count", en->h->n - en->h->n_deleted);
    frame_put_bool(fo, "nav", en->nav != NULL);
    server_reply(s, req, fo, &e);
}

static int run_serve(const opts *o, engine *en)
{
    hf_err e = {0};
    server *s = NULL;
    if (server_open_curve(o->serve_ep, o->max_frame, &o->curve, &s, &e))
        cli_fail(prog, o->serve_ep, &e);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop; /* no SA_RESTART: poll returns so we notice */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    qlog *log = NULL;
    if (o->log_path && qlog_open(o->log_path, en->h->dim, en->h->p.metric, o->log_max, &log, &e))
        cli_fail(prog, o->log_path, &e);
    fprintf(stderr, "query: serving %zu vectors (dim %zu) on %s\n", en->h->n, en->h->dim,
            o->serve_ep);
    frame_out fo;
    frame_out_init(&fo);
    uint64_t served = 0, ndist = 0;
    double t0 = now_seconds(), t_stop = 0;
    serve_stats st;
    serve_stats_init(&st, t0);
    serve_stats_index_graph(&en->six, en->h);
    for (;;) {
        server_req *req;
        frame_in f;
        /* After a stop request, keep answering what arrives (requests sent
         * before the signal may still be on the wire) and leave once nothing
         * came for 200 ms, or 10 s after the signal under endless load.
         * `stopping` is read before the wait: a signal interrupting the
         * wait returns HF_EOF too, and must start the drain, not skip it. */
        int stopping = stop_requested;
        if (stopping && t_stop == 0)
            t_stop = now_seconds();
        if (stopping && now_seconds() - t_stop > 10.0)
            break;
        if (reload_requested) {
            reload_requested = 0;
            if (reload_engine(o, en, NULL, &e))
                fprintf(stderr, "query: %s; still serving the old index\n", e.msg);
        }
        int rc = server_recv(s, stopping ? 200 : 100, &req, &f, &e);
        if (rc == HF_EOF) {
            if (stopping)
                break;
            continue;
        }
        if (rc == HF_EDATA) {
            reply_error(s, req, &fo, 0, 0, e.msg);
            serve_stats_answer(&st, &fo, 0);
            continue;
        }
        if (rc)
            cli_fail(prog, o->serve_ep, &e);
        double tq = now_seconds();
        if (strcmp(f.type, "stats") == 0) {
            serve_stats_pack(&st, &en->six, tq, &fo);
            server_reply(s, req, &fo, &e);
        } else if (strcmp(f.type, "reload") == 0) {
            serve_reload(o, en, s, req, &f, &fo);
        } else {
            serve_one(o, en, s, req, &f, &fo, &ndist, &log);
        }
        serve_stats_answer(&st, &fo, now_seconds() - tq);
        served++;
    }
    double t = now_seconds() - t0;
    fprintf(stderr, "query: served %llu requests in %.1f s, shutting down\n",
            (unsigned long long)served, t);
    if (server_refused(s))
        fprintf(stderr, "query: CURVE: refused %llu connection attempts (keys not allowed)\n",
                (unsigned long long)server_refused(s));
    frame_out_free(&fo);
    qlog_close(&log);
    server_destroy(&s);
    return 0;
}

/* Front-end mode (--fanout): fanout.c does the work. */
static int run_fanout(const opts *o)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop; /* no SA_RESTART: poll returns so we notice */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    fanout_cfg fc = {.spec = o->fanout,
                     .serve_ep = o->serve_ep,
                     .timeout_ms = o->shard_timeout,
                     .hedge_ms = o->hedge,
                     .start_wait_ms = 60000,
                     .max_frame = o->max_frame,
                     .k = o->k,
                     .max_k = o->max_k,
                     .curve = &o->curve,
                     .stop = &stop_requested};
    hf_err e = {0};
    if (fanout_run(&fc, &e))
        cli_fail(prog, o->fanout, &e);
    return 0;
}

/* Wait for the server's next answer; an error or a minute of silence ends the client. */
static void await_answer(const opts *o, client *cl, frame_in *f)
{
    hf_err e = {0};
    int rc = client_recv(cl, 60000, f, &e);
    if (rc == HF_EOF)
        hf_err_set(&e, HF_EIO, "no answer within 60 s");
    if (rc)
        cli_fail(prog, o->connect_ep, &e);
}

/* Client mode: forward each query to a server, print answers in input order. */
/* A request's filter keys (the caller counted them: 1, or 2 with filter_all). */
static void put_filter(frame_out *fo, const filt_query *fq)
{
    frame_put_key(fo, "filter");
    msgpack_pack_array(&fo->pk, fq->n);
    for (uint32_t j = 0; j < fq->n; j++)
        msgpack_pack_uint32(&fo->pk, fq->lab[j]);
    if (fq->all)
        frame_put_bool(fo, "filter_all", 1);
}

/* One result frame into a for query number qid, marked partial when the
 * answer says shards are missing (miss: its "missing" array, or NULL). */
static void put_answer(frame_out *a, uint64_t qid, const void *ids, size_t il, const void *dists,
                       size_t n, const msgpack_object *miss)
{
    if (!miss)
        return pack_result_raw(a, qid, ids, il, dists, n);
    frame_begin(a, "result", 5);
    frame_put_u64(a, "qid", qid);
    frame_put_bin(a, "ids", ids, il);
    frame_put_bin(a, "dists", dists, n * sizeof(float));
    frame_put_bool(a, "partial", 1);
    frame_put_key(a, "missing");
    msgpack_pack_object(&a->pk, *miss);
}

/* One request awaiting its answer: queries first..first+m-1 of the stream;
 * ans[0..m-1] their result frames once the answer is in. */
typedef struct {
    uint64_t first;
    size_t m;
    int done;
    frame_out *ans; /* --request-size frames, of W->frames */
} pending;

/* The --connect client's requests in flight, at most w (--in-flight queries
 * over --request-size) across input frames, so the server never waits for
 * the client between frames; few enough that the last of them is answered
 * within a front end's --shard-timeout, and no more than a ZeroMQ socket
 * queues by default (1000 messages) so no answer is dropped.
 * Request number s is sent with qid s and waits in slot s % w; answers are
 * written out in request order, whatever order they come back in. */
typedef struct {
    const opts *o;
    client *cl;
    channel *out;
    size_t idwidth, w;
    pending *slot;
    frame_out *frames;   /* w x --request-size answer frames, slot s's from s x that */
    uint64_t head, next; /* oldest request not written out; next request number */
    uint64_t npartial;
} window;

/* Write out the answered requests at the head, in order. */
static void window_flush(window *W)
{
    hf_err e = {0};
    while (W->head < W->next && W->slot[W->head % W->w].done) {
        pending *p = &W->slot[W->head % W->w];
        for (size_t i = 0; i < p->m; i++)
            if (channel_send(W->out, &p->ans[i], &e))
                cli_fail(prog, W->o->out_ep, &e);
        p->done = 0;
        W->head++;
    }
}

/* Receive one answer ("result" to a query, "results" to a batch) into its slot. */
static void window_take(window *W)
{
    const opts *o = W->o;
    hf_err e = {0};
    frame_in f;
    await_answer(o, W->cl, &f);
    if (strcmp(f.type, "error") == 0) {
        char msg[256] = "";
        frame_get_str(&f, "msg", msg, sizeof msg, NULL);
        hf_err_set(&e, HF_EDATA, "server answered an error: %s", msg);
        cli_fail(prog, o->connect_ep, &e);
    }
    uint64_t s;
    if (frame_get_u64(&f, "qid", &s, NULL) || s < W->head || s >= W->next ||
        W->slot[s % W->w].done) {
        hf_err_set(&e, HF_EDATA, "answer %llu: not an answer to one of the requests sent",
                   (unsigned long long)f.index);
        cli_fail(prog, o->connect_ep, &e);
    }
    pending *p = &W->slot[s % W->w];
    /* a fan-out's partial answer stays marked in the results stream */
    const msgpack_object *miss = frame_find(&f, "missing");
    if (miss && miss->type != MSGPACK_OBJECT_ARRAY)
        miss = NULL;
    if (o->request_size > 1) {
        qbatch_results r;
        if (qbatch_results_parse(&f, p->m, W->idwidth, o->k, &r, &e)) {
            hf_err_prefix(&e, "answer %llu", (unsigned long long)f.index);
            cli_fail(prog, o->connect_ep, &e);
        }
        size_t off = 0;
        for (size_t i = 0; i < p->m; i++) {
            uint32_t c = qbatch_count(&r, i);
            put_answer(&p->ans[i], p->first + i, r.ids + W->idwidth * off, W->idwidth * c,
                       r.dists + 4 * off, c, miss);
            off += c;
        }
    } else {
        const void *ids, *dists;
        size_t il, dl;
        if (strcmp(f.type, "result") != 0 || frame_get_bin(&f, "ids", &ids, &il, NULL) ||
            frame_get_bin(&f, "dists", &dists, &dl, NULL) || dl % 4 || il != dl / 4 * W->idwidth) {
            hf_err_set(&e, HF_EDATA, "answer %llu is not a valid result frame",
                       (unsigned long long)f.index);
            cli_fail(prog, o->connect_ep, &e);
        }
        put_answer(&p->ans[0], p->first, ids, il, dists, dl / 4, miss);
    }
    W->npartial += miss ? p->m : 0;
    p->done = 1;
    window_flush(W);
}

/* Slots for at most --in-flight queries (at least one request, at most
 * IN_FLIGHT_REQUESTS_MAX), each with the answer frames of a whole request. */
static void window_init(window *W, const opts *o, client *cl, channel *out, size_t idwidth)
{
    size_t R = (size_t)o->request_size, w = (size_t)(o->in_flight / R);
    *W = (window){.o = o,
                  .cl = cl,
                  .out = out,
                  .idwidth = idwidth,
                  .w = w < 1                        ? 1
                       : w > IN_FLIGHT_REQUESTS_MAX ? IN_FLIGHT_REQUESTS_MAX
                                                    : w};
    W->slot = calloc(W->w, sizeof *W->slot);
    W->frames = malloc(W->w * R * sizeof *W->frames);
    if (!W->slot || !W->frames) {
        hf_err e = {0};
        hf_err_set(&e, HF_ENOMEM, "out of memory");
        cli_fail(prog, o->connect_ep, &e);
    }
    for (size_t i = 0; i < W->w * R; i++)
        frame_out_init(&W->frames[i]);
    for (size_t s = 0; s < W->w; s++)
        W->slot[s].ans = W->frames + s * R;
}

/* The slot for the next request (queries first..first+m-1), once one is free. */
static pending *window_open(window *W, uint64_t first, size_t m)
{
    while (W->next - W->head >= W->w)
        window_take(W);
    pending *p = &W->slot[W->next % W->w];
    p->first = first;
    p->m = m;
    p->done = 0;
    return p;
}

static void window_free(window *W)
{
    for (size_t i = 0; i < W->w * (size_t)W->o->request_size; i++)
        frame_out_free(&W->frames[i]);
    free(W->frames);
    free(W->slot);
}

static int run_connect(const opts *o)
{
    hf_err e = {0};
    const char *in_name = strcmp(o->queries_ep, "-") == 0 ? "stdin" : o->queries_ep;
    channel *in = NULL, *out = NULL;
    if (channel_open_in_curve(o->queries_ep, o->max_frame, &o->curve, &in, &e))
        cli_fail(prog, in_name, &e);
    vecstream vs;
    int rc;
    if (vecstream_open(&vs, in, o->max_dim, &e))
        cli_fail(prog, in_name, &e);
    client *cl = NULL;
    if (client_open_curve(o->connect_ep, o->max_frame, &o->curve, &cl, &e))
        cli_fail(prog, o->connect_ep, &e);
    if (channel_open_out_curve(o->out_ep, &o->curve, &out, &e))
        cli_fail(prog, o->out_ep, &e);
    frame_out fo;
    frame_out_init(&fo);
    /* ask the server what it serves: the results header names the metric */
    char metric[16] = "l2", idw[8] = "u32";
    frame_begin(&fo, "info", 0);
    if (client_send(cl, &fo, &e))
        cli_fail(prog, o->connect_ep, &e);
    {
        frame_in f;
        await_answer(o, cl, &f);
        uint64_t dim = 0;
        if (strcmp(f.type, "info") != 0 || frame_get_u64(&f, "dim", &dim, NULL) ||
            frame_get_str(&f, "metric", metric, sizeof metric, NULL)) {
            hf_err_set(&e, HF_EDATA, "server did not answer the info request");
            cli_fail(prog, o->connect_ep, &e);
        }
        frame_get_str(&f, "ids", idw, sizeof idw, NULL);
        if (dim != vs.dim) {
            hf_err_set(&e, HF_EDATA, "frame 1: queries have dimension %zu, server index has %llu",
                       vs.dim, (unsigned long long)dim);
            cli_fail(prog, in_name, &e);
        }
    }
    size_t idwidth = strcmp(idw, "u64") == 0 ? 8 : 4;
    if (put_results_header(out, metric, o->k, vs.count_hint, idwidth == 8, &e))
        cli_fail(prog, o->out_ep, &e);
    filt_query *ffile = NULL; /* --filters: sent with each request */
    size_t nffile = 0;
    if (o->filters_path &&
        filt_query_read_file(o->filters_path, o->filter_all, &ffile, &nffile, &e))
        cli_fail(prog, o->filters_path, &e);
    window W;
    window_init(&W, o, cl, out, idwidth);
    uint64_t nq = 0;
    double t_wall0 = now_seconds();
    const float *rows;
    size_t n;
    uint64_t first;
    size_t R = (size_t)o->request_size;
    while ((rc = vecstream_next(&vs, &rows, &n, &first, &e)) == 0) {
        for (size_t lo = 0; lo < n; lo += R) {
            size_t m = n - lo < R ? n - lo : R;
            window_open(&W, first + lo, m);
            const filt_query *fq = vs.req_has_filter ? &vs.req_filter : NULL;
            if (!fq && ffile && nq + lo >= nffile) {
                hf_err_set(&e, HF_EDATA, "%zu filters for a stream of more queries", nffile);
                cli_fail(prog, o->filters_path, &e);
            } else if (!fq && ffile)
                fq = &ffile[nq + lo];
            int nf = fq && fq->n ? 1 + fq->all : 0;
            if (R > 1) {
                frame_begin(&fo, "queries", 5 + nf);
                frame_put_u64(&fo, "qid", W.next);
                frame_put_u64(&fo, "n", m);
                frame_put_bin(&fo, "vecs", rows + lo * vs.dim, m * vs.dim * sizeof(float));
            } else {
                frame_begin(&fo, "query", 4 + nf);
                frame_put_u64(&fo, "qid", W.next);
                frame_put_bin(&fo, "vec", rows + lo * vs.dim, vs.dim * sizeof(float));
            }
            frame_put_u64(&fo, "k", o->k);
            frame_put_u64(&fo, "ef", o->ef);
            if (nf)
                put_filter(&fo, fq);
            if (client_send(cl, &fo, &e))
                cli_fail(prog, o->connect_ep, &e);
            W.next++;
        }
        nq += n;
    }
    if (rc != HF_EOF)
        cli_fail(prog, in_name, &e);
    while (W.head < W.next)
        window_take(&W);
    uint64_t npartial = W.npartial;
    if (channel_send_end(out, nq, &e) || channel_commit(out, &e))
        cli_fail(prog, o->out_ep, &e);
    double t = now_seconds() - t_wall0;
    fprintf(stderr, "query: %llu queries via %s, %.3f s, %.1f QPS\n", (unsigned long long)nq,
            o->connect_ep, t, t > 0 ? nq / t : 0.0);
    if (npartial)
        fprintf(stderr, "query: %llu answers partial (shards missing: see their \"missing\")\n",
                (unsigned long long)npartial);
    free(ffile);
    window_free(&W);
    frame_out_free(&fo);
    client_destroy(&cl);
    vecstream_close(&vs);
    channel_destroy(&in);
    channel_destroy(&out);
    return 0;
}

/* The ends CURVE's options are for: --serve is a server, --connect and
 * --fanout's shards are clients, the ZeroMQ stream endpoints in use are
 * either (channel_curve_usage). */
static void curve_usage(const opts *o)
{
    hf_err e = {0};
    int streams = !o->serve_ep && !o->fanout; /* queries in, results out */
    int index = !o->connect_ep && !o->fanout;
    const char *in[2] = {index ? o->index_ep : NULL, streams ? o->queries_ep : NULL};
    const char *out[1] = {streams ? o->out_ep : NULL};
    if (channel_curve_usage(&o->curve, in, 2, out, 1, o->serve_ep != NULL,
                            o->connect_ep || o->fanout, &e))
        cli_usage_error(prog, "%s", e.msg);
}

int main(int argc, char **argv)
{
    static const struct option lopts[] = {{"index", required_argument, 0, 'i'},
                                          {"ef", required_argument, 0, 1},
                                          {"threads", required_argument, 0, 't'},
                                          {"exact", no_argument, 0, 2},
                                          {"serve", required_argument, 0, 3},
                                          {"connect", required_argument, 0, 4},
                                          {"output", required_argument, 0, 'o'},
                                          {"max-k", required_argument, 0, 5},
                                          {"max-ef", required_argument, 0, 6},
                                          {"max-dim", required_argument, 0, 7},
                                          {"max-frame", required_argument, 0, 8},
                                          {"help", no_argument, 0, 'h'},
                                          {"rerank", required_argument, 0, 9},
                                          {"no-codes", no_argument, 0, 10},
                                          {"no-reorder", no_argument, 0, 11},
                                          {"rerank-vectors", no_argument, 0, 12},
                                          {"route", no_argument, 0, 13},
                                          {"entry", required_argument, 0, 14},
                                          {"nav", no_argument, 0, 15},
                                          {"recall", required_argument, 0, 16},
                                          {"skip", required_argument, 0, 17},
                                          {"stop", required_argument, 0, 18},
                                          {"patience", required_argument, 0, 19},
                                          {"eps0", required_argument, 0, 20},
                                          {"filters", required_argument, 0, 21},
                                          {"filter-all", no_argument, 0, 22},
                                          {"filter-mode", required_argument, 0, 23},
                                          {"filter-brute", required_argument, 0, 24},
                                          {"filter-beam", required_argument, 0, 25},
                                          {"filter-walk", required_argument, 0, 42},
                                          {"filter-exact", required_argument, 0, 43},
                                          {"filter-rerank", required_argument, 0, 44},
                                          {"log", required_argument, 0, 40},
                                          {"log-max", required_argument, 0, 41},
                                          {"fanout", required_argument, 0, 26},
                                          {"shard-timeout", required_argument, 0, 27},
                                          {"hedge", required_argument, 0, 32},
                                          {"request-size", required_argument, 0, 33},
                                          {"in-flight", required_argument, 0, 34},
                                          {"curve-secret", required_argument, 0, 28},
                                          {"curve-allow", required_argument, 0, 29},
                                          {"curve-key", required_argument, 0, 30},
                                          {"curve-server", required_argument, 0, 31},
                                          {0, 0, 0, 0}};
    opts o = {.queries_ep = "-",
              .out_ep = "-",
              .k = 10,
              .ef = 64,
              .max_k = 1000,
              .max_ef = 10000,
              .threads = 1,
              .skip = NAV_SKIP_NONE,
              .stop = NAV_STOP_EF,
              .patience = 8,
              .shard_timeout = 1000,
              .request_size = 1,
              .in_flight = IN_FLIGHT_DEFAULT,
              .eps0 = 2.1};
    filt_plan_defaults(&o.plan);
    int c;
    int k_set = 0, ef_set = 0;
    while ((c = getopt_long(argc, argv, "i:k:t:o:h", lopts, NULL)) != -1) {
        switch (c) {
        case 'i': o.index_ep = optarg; break;
        case 'k':
            o.k = cli_u64(prog, "-k", optarg, 1, UINT32_MAX);
            k_set = 1;
            break;
        case 1:
            o.ef = cli_u64(prog, "--ef", optarg, 1, UINT32_MAX);
            ef_set = 1;
            break;
        case 't': o.threads = (int)cli_u64(prog, "--threads", optarg, 1, 256); break;
        case 2: o.exact = 1; break;
        case 3: o.serve_ep = optarg; break;
        case 4: o.connect_ep = optarg; break;
        case 'o': o.out_ep = optarg; break;
        case 5: o.max_k = cli_u64(prog, "--max-k", optarg, 1, 1 << 24); break;
        case 6: o.max_ef = cli_u64(prog, "--max-ef", optarg, 1, 1 << 24); break;
        case 7: o.max_dim = cli_u64(prog, "--max-dim", optarg, 1, 1 << 24); break;
        case 8: o.max_frame = cli_u64(prog, "--max-frame", optarg, 64, UINT64_MAX); break;
        case 9: o.rerank = cli_u64(prog, "--rerank", optarg, 1, 1 << 24); break;
        case 10:
            o.no_codes = 1;
            o.plan.codes = 0;
            break;
        case 11: o.no_reorder = 1; break;
        case 12: o.rerank_vectors = 1; break;
        case 13: o.route = 1; break;
        case 14:
            if (strcmp(optarg, "classic") && strcmp(optarg, "flat") && strcmp(optarg, "nearest"))
                cli_usage_error(prog, "--entry is classic, flat or nearest, not \"%s\"", optarg);
            o.entry = optarg;
            break;
        case 15: o.skip = NAV_SKIP_LEARNED; break;
        case 16: {
            char *end = NULL;
            o.recall = strtod(optarg, &end);
            if (!end || *end || !(o.recall > 0 && o.recall <= 1))
                cli_usage_error(prog, "--recall is a recall@k in (0, 1], not \"%s\"", optarg);
            o.stop = NAV_STOP_LEARNED;
            break;
        }
        case 17:
            if (strcmp(optarg, "learned") == 0)
                o.skip = NAV_SKIP_LEARNED;
            else if (strcmp(optarg, "adsampling") == 0)
                o.skip = NAV_SKIP_ADSAMPLING;
            else if (strcmp(optarg, "none") == 0)
                o.skip = NAV_SKIP_NONE;
            else
                cli_usage_error(prog, "--skip is learned, adsampling or none, not \"%s\"", optarg);
            break;
        case 18:
            if (strcmp(optarg, "learned") == 0) {
                if (o.stop != NAV_STOP_LEARNED)
                    cli_usage_error(prog, "--stop learned needs a target: use --recall R");
            } else if (strcmp(optarg, "adaptive") == 0)
                o.stop = NAV_STOP_ADAPTIVE;
            else if (strcmp(optarg, "ef") == 0)
                o.stop = NAV_STOP_EF;
            else
                cli_usage_error(prog, "--stop is ef, learned or adaptive, not \"%s\"", optarg);
            break;
        case 19: o.patience = (uint32_t)cli_u64(prog, "--patience", optarg, 1, 1 << 20); break;
        case 20: o.eps0 = cli_f64(prog, "--eps0", optarg, 0, 100); break;
        case 21: o.filters_path = optarg; break;
        case 22: o.filter_all = 1; break;
        case 23: {
            hf_err fe;
            if (filt_mode_parse(optarg, &o.plan.mode, &fe))
                cli_usage_error(prog, "--filter-mode: %s", fe.msg);
            break;
        }
        case 24: o.plan.brute_max = cli_u64(prog, "--filter-brute", optarg, 0, UINT32_MAX); break;
        case 25: o.plan.beam_min = cli_f64(prog, "--filter-beam", optarg, 0, 2); break;
        case 40: o.log_path = optarg; break;
        case 41: o.log_max = cli_u64(prog, "--log-max", optarg, 4096, UINT64_MAX); break;
        case 42: o.plan.walk_min = cli_f64(prog, "--filter-walk", optarg, 0, 1); break;
        case 43: o.plan.exact_max = cli_u64(prog, "--filter-exact", optarg, 0, UINT32_MAX); break;
        case 44: o.plan.rerank = cli_u64(prog, "--filter-rerank", optarg, 1, 100000); break;
        case 26: o.fanout = optarg; break;
        case 27: o.shard_timeout = (int)cli_u64(prog, "--shard-timeout", optarg, 1, 3600000); break;
        case 32: o.hedge = (int)cli_u64(prog, "--hedge", optarg, 1, 3600000); break;
        case 33: o.request_size = cli_u64(prog, "--request-size", optarg, 1, QBATCH_MAX); break;
        case 34: o.in_flight = cli_u64(prog, "--in-flight", optarg, 1, 1u << 30); break;
        case 28: o.curve.secret = optarg; break;
        case 29: o.curve.allow = optarg; break;
        case 30: o.curve.key = optarg; break;
        case 31: o.curve.server = optarg; break;
        case 'h': usage(); return 0;
        default: cli_usage_error(prog, "unknown option");
        }
    }
    o.ef_set = ef_set;
    {
        hf_err ce;
        if (curve_cfg_check(&o.curve, &ce))
            cli_usage_error(prog, "%s", ce.msg);
    }
    if (o.request_size > 1 && !o.connect_ep)
        cli_usage_error(prog, "--request-size is for --connect (queries a request)");
    if (o.in_flight != IN_FLIGHT_DEFAULT && !o.connect_ep)
        cli_usage_error(prog, "--in-flight is for --connect (requests awaiting an answer)");
    if (o.request_size > 1 && o.filters_path)
        cli_usage_error(prog, "--filters sends one filter a query: one query a request "
                              "(drop --request-size)");
    if (o.hedge && !o.fanout)
        cli_usage_error(prog, "--hedge is for --fanout (a front end asking a second replica)");
    if (o.fanout && o.log_path)
        cli_usage_error(prog, "--log is for a shard's server (the front end logs nothing)");
    if (o.fanout && (!o.serve_ep || o.index_ep || o.connect_ep || optind < argc))
        cli_usage_error(prog, "--fanout needs --serve EP and takes no index or queries");
    if (argc - optind > 1)
        cli_usage_error(prog, "one query input at most");
    if (optind < argc)
        o.queries_ep = argv[optind];
    curve_usage(&o);
    if (o.log_path && !o.serve_ep)
        cli_usage_error(prog, "--log is for --serve (the queries a server answers)");
    if (o.filters_path && o.serve_ep)
        cli_usage_error(prog, "--filters is for query streams (requests carry \"filter\")");
    if ((k_set && o.k > o.max_k) || (ef_set && o.ef > o.max_ef))
        cli_usage_error(prog, "-k/--ef above --max-k/--max-ef");
    /* defaults give way to smaller limits rather than failing every request */
    if (o.k > o.max_k)
        o.k = o.max_k;
    if (o.ef > o.max_ef)
        o.ef = o.max_ef;
    if (o.serve_ep && o.connect_ep)
        cli_usage_error(prog, "--serve and --connect exclude each other");
    if (o.route && o.entry && strcmp(o.entry, "classic"))
        cli_usage_error(prog, "--route and --entry %s exclude each other", o.entry);
    if ((o.route || o.entry) && o.exact)
        cli_usage_error(prog, "--exact searches no graph: no --route or --entry");
    int want_nav = o.skip != NAV_SKIP_NONE || o.stop != NAV_STOP_EF;
    if (want_nav && o.exact)
        cli_usage_error(prog, "--exact searches no graph: no --nav/--recall/--skip/--stop");
    channel_install_signal_cleanup();
    if (o.connect_ep)
        return run_connect(&o);
    if (o.fanout)
        return run_fanout(&o);

    hf_err e = {0};
    const char *idx_ep = o.index_ep ? o.index_ep : "-";
    const char *idx_name = strcmp(idx_ep, "-") == 0 ? "stdin (index)" : idx_ep;
    engine en;
    channel *ich = NULL;
    if (engine_open(&o, idx_ep, &en, o.index_ep ? NULL : &ich, &e))
        cli_fail(prog, idx_name, &e);
    int rc;
    if (o.serve_ep) {
        rc = run_serve(&o, &en);
    } else {
        rc = run_stream(&o, &en, ich);
        channel_destroy(&ich);
    }
    engine_close(&en);
    return rc;
}
