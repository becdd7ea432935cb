/*
 * layer-route - learn where a query enters the graph: read an index stream,
 * pick candidate entry nodes (medoids of k-means clusters of the base
 * vectors), train the router of libcommon/route.h on leave-one-out base
 * vectors, validate it on held-aside ones against the classic descent and
 * the non-learned entries, and write the index stream with a
 * {t:"model", kind:"layer-router"} frame before the end frame (an earlier
 * router is replaced; other frames pass through).
 *
 * Labels: for each training query, level-0 searches (--label-ef) from its
 * --label-top exactly nearest candidates and the classic descent; the key
 * whose search cost the fewest distance computations, plus --miss-cost per
 * true neighbour missed, is the label. The router must pay for itself: on
 * the validation queries, at every --val-ef, its recall@10 must be within
 * --tolerance of the classic descent's and its distance computations
 * (routing included) no more; otherwise the frame says fallback and
 * `query --route` searches classically, and a line says so here. The
 * untrained PCA router (nearest candidate in the projected space) is the
 * non-learned rival: when it measures cheaper on the validation queries it
 * is what gets written ("trained": false in the frame), and a line says so.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "channel.h"
#include "cli.h"
#include "frame_keep.h"
#include "hnsw.h"
#include "hnsw_io.h"
#include "progress.h"
#include "route.h"
#include "vecstream.h"

static const char *prog = "layer-route";

#define MAX_EF 16

static void usage(void)
{
    printf("usage: layer-route [options] [INDEX]\n"
           "Train a router that picks where each query enters the graph (a candidate\n"
           "entry node at level 0, or the classic descent), validate it, and write the\n"
           "index stream (stdin/stdout by default) with a \"layer-router\" model frame;\n"
           "`query --route` uses it.\n\n"
           "      --candidates N    candidate entry nodes: medoids of N k-means clusters\n"
           "                        (default 256)\n"
           "      --code-dim R      width of the query code z = W (q - mu) (default 8);\n"
           "                        routing costs (R*dim + (N+1)*R)/dim distance computations\n"
           "      --train FILE      training queries (a vector stream or query log, never the\n"
           "                        test queries): the last --val-queries (at most a quarter)\n"
           "                        validate\n"
           "      --queries N       without --train: training queries drawn from the base\n"
           "                        vectors, leave-one-out (default 5000)\n"
           "      --val-queries N   held-aside validation queries (default 1000)\n"
           "      --label-ef N      beam width of the labelling searches (default 16)\n"
           "      --label-top N     candidates tried per training query, nearest first\n"
           "                        (default 8)\n"
           "      --miss-cost C     distance computations a missed true neighbour costs in\n"
           "                        the labels (default 30)\n"
           "      --tau T           soft labels: a tried entry weighs exp(-(cost - cheapest) / T)\n"
           "                        (default 10 distance computations)\n"
           "      --epochs E        training passes (default 40; 0: the PCA router alone)\n"
           "      --lr F            Adam learning rate (default 0.01)\n"
           "      --val-ef LIST     ef grid of the validation (default 10,16,32,64)\n"
           "      --tolerance T     largest recall@10 loss against the classic descent at any\n"
           "                        validation ef (default 0.002)\n"
           "      --init MODEL      start from the layer-router of an index file (its\n"
           "                        candidates, nodes of this index); the one it replaces\n"
           "                        is then a rival in the validation too, beside the PCA\n"
           "                        router: the cheapest of the three is written\n"
           "      --ewc LAMBDA      with --init: penalise moving the weights the earlier\n"
           "                        tasks' Fisher information (kept in the router) marks\n"
           "      --replay N|FILE   with --init: N queries of the router's reservoir of past\n"
           "                        training queries (or those of FILE) train too\n"
           "      --reservoir N     past training queries the written router keeps for a\n"
           "                        later --replay (default 1000, 0 none)\n"
           "      --rerank T        routing measures the exact distance to the T candidates\n"
           "                        of highest score and enters at the nearest (costs T\n"
           "                        distance computations); default 0: T of 1, 2, 4, 8\n"
           "                        chosen on the validation queries\n"
           "      --seed S          sampling and initialisation (default 42)\n"
           "  -t, --threads N       threads for labels and validation (default: all cores)\n"
           "      --max-frame BYTES refuse frames larger than this (default 256 MiB)\n"
           "  -o, --output EP       - (stdout, default), a file (atomic), tcp://, "
           "ipc://\n" CURVE_HELP_STREAMS "  -h, --help            this text\n\n"
           "Prints the validation table (recall@10 and distance computations per query,\n"
           "routing included, of the classic descent, the flat medoid entry, the exactly\n"
           "nearest candidate, the PCA router and the trained router) on stderr.\n");
}

/* other model frames pass through; an earlier router is replaced */
static int keep_other(const frame_in *f, void *arg, hf_err *e)
{
    if (strcmp(f->type, "model") == 0 && route_is_frame(f->map))
        return 0;
    return frame_keep_add(arg, f, e);
}

/* --init: the first layer-router frame of MODEL */
static int grab_router(const frame_in *f, void *arg, hf_err *e)
{
    route_model **m = arg;
    if (*m || strcmp(f->type, "model") != 0 || !route_is_frame(f->map))
        return 0;
    return route_unpack(f->map, m, e);
}

/* the entries compared on the validation queries; "previous" (the --init
 * router) only with --init */
#define NMODES 6
static const char *mode_name[NMODES] = {"classic",    "flat",    "nearest",
                                        "pca-router", "trained", "previous"};

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"candidates", required_argument, 0, 1},
                                         {"code-dim", required_argument, 0, 2},
                                         {"queries", required_argument, 0, 3},
                                         {"val-queries", required_argument, 0, 4},
                                         {"label-ef", required_argument, 0, 5},
                                         {"label-top", required_argument, 0, 6},
                                         {"miss-cost", required_argument, 0, 7},
                                         {"epochs", required_argument, 0, 8},
                                         {"lr", required_argument, 0, 9},
                                         {"val-ef", required_argument, 0, 10},
                                         {"tolerance", required_argument, 0, 11},
                                         {"seed", required_argument, 0, 12},
                                         {"max-frame", required_argument, 0, 13},
                                         {"tau", required_argument, 0, 14},
                                         {"threads", required_argument, 0, 't'},
                                         {"output", required_argument, 0, 'o'},
                                         {"train", required_argument, 0, 40},
                                         {"init", required_argument, 0, 41},
                                         {"ewc", required_argument, 0, 42},
                                         {"replay", required_argument, 0, 43},
                                         {"reservoir", required_argument, 0, 44},
                                         {"rerank", required_argument, 0, 45},
                                         {"help", no_argument, 0, 'h'},
                                         CURVE_LONG_OPTIONS,
                                         {0, 0, 0, 0}};
    size_t ncand = 256, r = 8, nq = 5000, nval = 1000, label_ef = 16, top = 8, epochs = 40;
    size_t max_frame = 0, val_ef[MAX_EF] = {10, 16, 32, 64}, nef = 4;
    double miss_cost = 30, lr = 0.01, tol = 0.002, tau = 10, ewc = 0;
    const char *train_ep = NULL, *init = NULL, *replay_file = NULL;
    size_t replay_n = 0, reservoir = 1000, rerank = 0;
    uint64_t seed = 42;
    const char *out_ep = "-";
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = ncpu > 0 ? (int)ncpu : 1;
    curve_cfg cc = {0};
    int c;
    while ((c = getopt_long(argc, argv, "t:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 1: ncand = cli_u64(prog, "--candidates", optarg, 1, ROUTE_MAX_CAND); break;
        case 2: r = cli_u64(prog, "--code-dim", optarg, 1, 256); break;
        case 3: nq = cli_u64(prog, "--queries", optarg, 1, 10000000); break;
        case 4: nval = cli_u64(prog, "--val-queries", optarg, 1, 1000000); break;
        case 5: label_ef = cli_u64(prog, "--label-ef", optarg, 1, 100000); break;
        case 6: top = cli_u64(prog, "--label-top", optarg, 0, ROUTE_MAX_CAND); break;
        case 7: miss_cost = cli_f64(prog, "--miss-cost", optarg, 0, 1e9); break;
        case 8: epochs = cli_u64(prog, "--epochs", optarg, 0, 100000); break;
        case 9: lr = cli_f64(prog, "--lr", optarg, 1e-7, 10); break;
        case 10: nef = cli_u64_list(prog, "--val-ef", optarg, 1, 100000, val_ef, MAX_EF); break;
        case 11: tol = cli_f64(prog, "--tolerance", optarg, 0, 1); break;
        case 12: seed = cli_u64(prog, "--seed", optarg, 0, UINT64_MAX); break;
        case 13: max_frame = cli_u64(prog, "--max-frame", optarg, 64, UINT64_MAX); break;
        case 14: tau = cli_f64(prog, "--tau", optarg, 1e-3, 1e9); break;
        case 40: train_ep = optarg; break;
        case 41: init = optarg; break;
        case 42: ewc = cli_f64(prog, "--ewc", optarg, 0, 1e9); break;
        case 43:
            if (strspn(optarg, "0123456789") == strlen(optarg))
                replay_n = cli_u64(prog, "--replay", optarg, 1, 10000000);
            else
                replay_file = optarg;
            break;
        case 44: reservoir = cli_u64(prog, "--reservoir", optarg, 0, 10000000); break;
        case 45: rerank = cli_u64(prog, "--rerank", optarg, 0, ROUTE_MAX_RERANK); break;
        case 't': threads = (int)cli_u64(prog, "--threads", optarg, 1, 64); break;
        case 'o': out_ep = optarg; break;
        case 'h': usage(); return 0;
        default:
            if (!curve_cfg_take(&cc, c, optarg))
                cli_usage_error(prog, "unknown option");
            break;
        }
    }
    if (argc - optind > 1)
        cli_usage_error(prog, "one input at most");
    if ((ewc > 0 || replay_n) && !init)
        cli_usage_error(prog, "--ewc and --replay N start from a router: give --init");
    const char *in_ep = optind < argc ? argv[optind] : "-";
    const char *in_name = strcmp(in_ep, "-") == 0 ? "stdin" : in_ep;
    hf_err e = {0};
    if (channel_curve_usage(&cc, (const char *const[]){in_ep, train_ep, init}, 3, &out_ep, 1, 0, 0,
                            &e))
        cli_usage_error(prog, "%s", e.msg);
    channel_install_signal_cleanup();
    double t0 = now_seconds();

    channel *in = NULL;
    hnsw *h = NULL;
    frame_keep pt = {0};
    if (channel_open_in_curve(in_ep, max_frame, &cc, &in, &e) ||
        hnsw_load(in, &h, keep_other, &pt, &e))
        cli_fail(prog, in_name, &e);
    channel_destroy(&in);
    if (h->n < 3 || h->entry == HNSW_NONE) {
        hf_err_set(&e, HF_EDATA, "the index has %zu nodes: too few to route", h->n);
        cli_fail(prog, in_name, &e);
    }

    /* candidates, router, PCA start; with --init the router of MODEL (its
     * candidates must be nodes of this index) */
    uint32_t *cand = NULL;
    size_t nc = 0;
    route_model *m = NULL, *pca = NULL, *prev = NULL, *from = NULL;
    if (init) {
        channel *ic = NULL;
        hnsw *ih = NULL;
        if (channel_open_in_curve(init, max_frame, &cc, &ic, &e) ||
            hnsw_load(ic, &ih, grab_router, &from, &e))
            cli_fail(prog, init, &e);
        channel_destroy(&ic);
        hnsw_destroy(&ih);
        if (!from) {
            hf_err_set(&e, HF_EDATA, "no layer-router model frame (train one with layer-route)");
            cli_fail(prog, init, &e);
        }
        if (ewc > 0 && !from->mem.fisher)
            hf_err_set(&e, HF_EDATA,
                       "the layer-router keeps no Fisher information, which --ewc "
                       "needs (retrain it with this layer-route)");
        else if (replay_n && !from->mem.nreplay)
            hf_err_set(&e, HF_EDATA,
                       "the layer-router keeps no replay reservoir, which --replay "
                       "N needs (retrain it with this layer-route, or --replay FILE)");
        if (e.code)
            cli_fail(prog, init, &e);
        /* cli_fail does not return: from is set here */
        // cppcheck-suppress ctunullpointer
        if (route_copy(from, &m, &e) || route_bind(m, h, &e)) {
            hf_err_prefix(&e, "--init");
            cli_fail(prog, init, &e);
        }
        nc = m->C;
    } else {
        if (route_pick_candidates(h, ncand, 20000, 8, seed, &cand, &nc, &e) ||
            route_new(h->dim, r, nc, cand, &m, &e) || route_init_pca(m, h, 20000, seed, &e))
            cli_fail(prog, in_name, &e);
        free(cand);
        /* the flat entry: the candidate nearest the mean */
        m->medoid = (uint32_t)route_nearest(m, h, m->mu->data);
    }
    double t_cand = now_seconds() - t0;

    route_qset *tq = NULL, *vq = NULL, *rq = NULL;
    if (train_ep) { /* the caller's queries: training first, validation last */
        float *all = NULL;
        size_t na = 0;
        if (vecstream_read_all(train_ep, &cc, h->dim, max_frame, &all, &na, &e))
            cli_fail(prog, train_ep, &e);
        if (na < 8) {
            hf_err_set(&e, HF_EDATA, "%zu training queries: too few (8 at least)", na);
            cli_fail(prog, train_ep, &e);
        }
        nq = SIZE_MAX;
        if (route_qsets_split(h, all, na, &nq, &nval, 10, &tq, &vq, &e))
            cli_fail(prog, train_ep, &e);
        free(all);
    } else if (route_qsets_loo(h, &nq, &nval, seed ^ 0x9e37, 10, &tq, &vq, &e)) {
        /* leave-one-out queries: training, then validation */
        cli_fail(prog, in_name, &e);
    }
    /* replayed past queries: the router's reservoir or a file */
    if ((replay_n || replay_file) && route_qset_replay(h, from ? &from->mem : NULL, replay_n,
                                                       replay_file, max_frame, 10, &rq, &e))
        cli_fail(prog, replay_file ? replay_file : init, &e);
    size_t nrp = rq ? rq->n : 0, ntr = nq + nrp; /* training rows: new, then replayed */

    double t1 = now_seconds();
    uint32_t *label = malloc(ntr * sizeof *label);
    uint32_t *keys = malloc(ntr * (top + 1) * sizeof *keys);
    float *costs = malloc(ntr * (top + 1) * sizeof *costs);
    float *qrows = malloc(ntr * h->dim * sizeof *qrows); /* stored order */
    if (!label || !keys || !costs || !qrows) {
        hf_err_set(&e, HF_ENOMEM, "out of memory");
        cli_fail(prog, in_name, &e);
    }
    if (route_label(m, h, tq, label_ef, top, miss_cost, threads, keys, costs, label, &e) ||
        (rq && route_label(m, h, rq, label_ef, top, miss_cost, threads, keys + nq * (top + 1),
                           costs + nq * (top + 1), label + nq, &e)))
        cli_fail(prog, in_name, &e);
    memcpy(qrows, tq->stored, nq * h->dim * sizeof *qrows);
    if (rq)
        memcpy(qrows + nq * h->dim, rq->stored, nrp * h->dim * sizeof *qrows);
    size_t nclassic = 0;
    for (size_t i = 0; i < nq; i++)
        nclassic += label[i] == nc;
    double t_label = now_seconds() - t1;

    /* the non-learned comparison: the PCA router over the same candidates
     * (before training m is one, unless it comes from --init: then it is
     * the router being replaced, a contender too, and a fresh PCA router
     * is built) */
    if (from) {
        if (route_copy(m, &prev, &e) || route_new(h->dim, m->r, nc, m->cand, &pca, &e) ||
            route_init_pca(pca, h, 20000, seed, &e))
            cli_fail(prog, in_name, &e);
        pca->medoid = (uint32_t)route_nearest(pca, h, pca->mu->data);
    } else if (route_copy(m, &pca, &e)) {
        cli_fail(prog, in_name, &e);
    }

    /* EWC: the earlier tasks' Fisher around the weights we start from */
    nn_params tp;
    nn_ewc *ew = NULL;
    if (route_trainable(m, &tp, &e) ||
        nn_ewc_from(&tp, from && ewc > 0 ? from->mem.fisher : NULL, &ew, &e))
        cli_fail(prog, in_name, &e);
    nn_params_free(&tp);
    t1 = now_seconds();
    float loss = 0;
    if (route_train_ewc(m, qrows, ntr, keys, costs, top + 1, (float)tau, epochs, (float)lr, seed,
                        ewc > 0 ? ew : NULL, (float)ewc, &loss, &e))
        cli_fail(prog, in_name, &e);
    nn_ewc_destroy(&ew);
    double t_train = now_seconds() - t1;

    /* validation */
    t1 = now_seconds();
    double rec[NMODES][MAX_EF], cost[NMODES][MAX_EF], up[NMODES][MAX_EF];
    int nmodes = from ? NMODES : NMODES - 1;
    /* the baselines: the classic descent, the flat and the nearest entry */
    const route_mode base_mode[3] = {ROUTE_CLASSIC, ROUTE_FLAT, ROUTE_NEAREST};
    for (size_t i = 0; i < nef; i++)
        for (int md = 0; md < 3; md++)
            if (route_eval(m, h, vq, base_mode[md], val_ef[i], threads, &rec[md][i], &cost[md][i],
                           &up[md][i], &e))
                cli_fail(prog, in_name, &e);
    /* the contenders, each at the rerank T (its T best candidates measured
     * exactly, the nearest entered) of 1, 2, 4, 8 cheapest within the
     * tolerance (1 when none is), unless --rerank fixes it: their rows are
     * those of that T */
    route_model *contender[NMODES] = {NULL, NULL, NULL, pca, m, prev};
    const size_t tries[] = {1, 2, 4, 8};
    size_t ntries = rerank ? 1 : sizeof tries / sizeof tries[0];
    double sc[NMODES] = {0}, tsc[NMODES][4];
    int ok[NMODES];
    for (int md = 3; md < nmodes; md++) {
        route_model *c = contender[md];
        uint32_t best_t = 1;
        for (size_t t = 0; t < ntries; t++) {
            double rr[MAX_EF], rcst[MAX_EF], rup[MAX_EF], s_t = 0;
            int ok_t = 1;
            c->rerank = (uint32_t)(rerank ? rerank : tries[t]);
            for (size_t i = 0; i < nef; i++) {
                if (route_eval(c, h, vq, ROUTE_LEARNED, val_ef[i], threads, &rr[i], &rcst[i],
                               &rup[i], &e))
                    cli_fail(prog, in_name, &e);
                s_t += rcst[i] / cost[0][i];
                ok_t &= rr[i] >= rec[0][i] - tol;
            }
            tsc[md][t] = s_t / (double)nef;
            if (t == 0 || (ok_t && (!ok[md] || s_t < sc[md]))) {
                sc[md] = s_t;
                ok[md] = ok_t;
                memcpy(rec[md], rr, sizeof rr);
                memcpy(cost[md], rcst, sizeof rcst);
                memcpy(up[md], rup, sizeof rup);
                best_t = c->rerank;
            }
        }
        c->rerank = best_t;
    }
    double t_val = now_seconds() - t1;
    /* the written router: the cheapest over the grid of those within the
     * tolerance of the classic recall at every ef, among the trained one,
     * the PCA one (the non-learned rival: training must beat it to be
     * kept) and the one --init would replace (never written over by a
     * worse one); the trained one when none is */
    int w = 4; /* the row of the router written */
    for (int md = 3; md < nmodes; md++)
        if (ok[md] && (!ok[w] || sc[md] < sc[w] || (sc[md] == sc[w] && md == 5)))
            w = md;
    if (w != 4) {
        route_model **keep = w == 3 ? &pca : &prev, *t = m;
        m = *keep;
        *keep = t;
    }
    if (!rerank)
        for (int md = 3; md < nmodes; md++) {
            fprintf(stderr,
                    "layer-route: rerank %s (candidates measured exactly), mean distance "
                    "computations / classic's:",
                    mode_name[md]);
            for (size_t t = 0; t < ntries; t++)
                fprintf(stderr, " %zu: %.3fx", tries[t], tsc[md][t]);
            fprintf(stderr, "; kept: %u\n", contender[md]->rerank);
        }
    int pays = 1;
    for (size_t i = 0; i < nef; i++)
        pays &= rec[w][i] >= rec[0][i] - tol && cost[w][i] <= cost[0][i];
    m->fallback = !pays;

    fprintf(stderr,
            "layer-route: validation on %zu held-aside %s, recall@10 / distance computations "
            "per query (routing included) / of them above level 0:\n",
            nval,
            train_ep ? "queries of --train (never trained on)"
                     : "base vectors (leave-one-out, never trained on)");
    fprintf(stderr, "layer-route:   %-11s", "ef");
    for (size_t i = 0; i < nef; i++)
        fprintf(stderr, " %22zu", val_ef[i]);
    fprintf(stderr, "\n");
    for (int md = 0; md < nmodes; md++) {
        fprintf(stderr, "layer-route:   %-11s", mode_name[md]);
        for (size_t i = 0; i < nef; i++)
            fprintf(stderr, "  %.4f %7.1f %6.1f", rec[md][i], cost[md][i], up[md][i]);
        fprintf(stderr, "\n");
    }
    fprintf(stderr,
            "layer-route: written: the %s router (mean distance computations over the grid / the "
            "classic descent's:",
            w == 3   ? "PCA (untrained)"
            : w == 5 ? "previous (--init)"
                     : "trained");
    for (int md = 3; md < nmodes; md++)
        fprintf(stderr, "%s %s %.3fx%s", md == 3 ? "" : ",", mode_name[md], sc[md] / (double)nef,
                ok[md] ? "" : " (recall outside the tolerance)");
    fprintf(stderr, ")\n");
    if (pays)
        fprintf(stderr,
                "layer-route: the router is within %.4f of the classic recall and does no more "
                "distance computations at every validation ef: query --route uses it\n",
                tol);
    else
        fprintf(stderr,
                "layer-route: the router does not beat the classic descent on the validation "
                "queries (recall within %.4f and no more distance computations at every ef): "
                "the frame says fallback, query --route searches classically\n",
                tol);

    /* what the next training keeps of this one, on the router written:
     * its Fisher on this run's labelled queries added to the earlier
     * tasks', and the reservoir of training queries */
    if (route_trainable(m, &tp, &e) || nn_ewc_from(&tp, from ? from->mem.fisher : NULL, &ew, &e) ||
        route_fisher(m, qrows, ntr, keys, costs, top + 1, (float)tau, seed + 11, ew, &e) ||
        nn_memory_set_fisher(&m->mem, &ew, 1, (from ? from->mem.tasks : 0) + 1, &e) ||
        nn_memory_reservoir(&m->mem, from ? &from->mem : NULL, tq->raw, nq, h->dim, reservoir,
                            seed + 13, &e))
        cli_fail(prog, in_name, &e);
    nn_params_free(&tp);
    nn_ewc_destroy(&ew);
    if (from)
        fprintf(
            stderr,
            "layer-route: continual: from %s, EWC %s (lambda %g, Fisher of %u earlier "
            "task%s), %zu replayed queries; reservoir kept: %zu of %llu training queries seen\n",
            init, ewc > 0 ? "on" : "off", ewc, from->mem.tasks, from->mem.tasks == 1 ? "" : "s",
            nrp, m->mem.nreplay, (unsigned long long)m->mem.replay_seen);

    /* validation record for the frame */
    msgpack_sbuffer xs;
    msgpack_sbuffer_init(&xs);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &xs, msgpack_sbuffer_write);
    frame_pack_str(&pk, "validation");
    msgpack_pack_map(&pk, 8);
    frame_pack_str(&pk, "trained");
    if (w == 4)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    frame_pack_str(&pk, "written");
    frame_pack_str(&pk, mode_name[w]);
    frame_pack_str(&pk, "queries");
    msgpack_pack_uint64(&pk, nval);
    frame_pack_str(&pk, "tolerance");
    msgpack_pack_double(&pk, tol);
    frame_pack_str(&pk, "route_cost");
    msgpack_pack_double(&pk, route_cost(m));
    frame_pack_str(&pk, "ef");
    msgpack_pack_array(&pk, (uint32_t)nef);
    for (size_t i = 0; i < nef; i++)
        msgpack_pack_uint64(&pk, val_ef[i]);
    frame_pack_str(&pk, "recall");
    msgpack_pack_map(&pk, (uint32_t)nmodes);
    for (int md = 0; md < nmodes; md++) {
        frame_pack_str(&pk, mode_name[md]);
        msgpack_pack_array(&pk, (uint32_t)nef);
        for (size_t i = 0; i < nef; i++)
            msgpack_pack_double(&pk, rec[md][i]);
    }
    frame_pack_str(&pk, "ndist");
    msgpack_pack_map(&pk, (uint32_t)nmodes);
    for (int md = 0; md < nmodes; md++) {
        frame_pack_str(&pk, mode_name[md]);
        msgpack_pack_array(&pk, (uint32_t)nef);
        for (size_t i = 0; i < nef; i++)
            msgpack_pack_double(&pk, cost[md][i]);
    }
    nn_extra x = {xs.data, xs.size, 1};

    channel *out = NULL;
    frame_out fo;
    frame_out_init(&fo);
    msgpack_sbuffer_clear(&fo.sb);
    if (route_pack(m, &x, &fo.sb, &e) || channel_open_out_curve(out_ep, &cc, &out, &e) ||
        hnsw_save_with_model(h, out, &fo, &pt, &e))
        cli_fail(prog, out_ep, &e);
    msgpack_sbuffer_destroy(&xs);
    frame_out_free(&fo);
    channel_destroy(&out);
    fprintf(stderr,
            "layer-route: %zu nodes, %zu candidates, code %zu, routing cost %.1f distance "
            "computations; %zu training queries (%.1f%% labelled classic), loss %.4f; "
            "candidates %.1f s, labels %.1f s, training %.1f s, validation %.1f s, total %.1f s\n",
            h->n, nc, r, route_cost(m), nq, nq ? 100.0 * nclassic / nq : 0.0, loss, t_cand, t_label,
            t_train, t_val, now_seconds() - t0);
    free(label);
    free(keys);
    free(costs);
    free(qrows);
    route_qset_destroy(&rq);
    route_destroy(&from);
    route_qset_destroy(&tq);
    route_qset_destroy(&vq);
    route_destroy(&m);
    route_destroy(&pca);
    route_destroy(&prev);
    hnsw_destroy(&h);
    return 0;
}
