/*
 * edge-score - learned edge selection: read an index stream, learn which
 * level-0 edges carry routes to true neighbours, keep the best of them up to
 * a budget, and write the rewritten index stream (same format: `query` uses
 * it unchanged) with the model frame {t:"model", kind:"edge-scorer"} before
 * the end frame. The logic lives in libcommon/edge_*.c (edge.h).
 *
 * --no-graph trains the same scorer without the graph layer (an ablation:
 * does the neighbourhood context earn its place?).
 *
 * --baseline random|usage prunes to the same budget without a model (random
 * scores, or usage counts from the training searches with random
 * tie-breaks), for the ablation in bench/edges.sh. Baselines and model go
 * through the same pruning policy (edge_prune: per-node out- and in-degree
 * floors, reachability repair); only the per-edge score differs.
 *
 * The learned keep score is the model's logit plus usage_weight *
 * log1p(route count): the model alone ranks the many edges no training
 * search used (it generalises), the counts separate the used ones (they are
 * exact where they exist); at the same edge count the sum beat both the
 * model alone and the usage baseline (bench/results/edges.md).
 *
 * Self-validation (libcommon/edge_valid.c): --val-queries of the training
 * queries (perturbed base vectors, or the last rows of --train) are held
 * aside, never labelled or trained on; their exact neighbours (OpenBLAS)
 * give recall@10 of the input graph and of every pruned graph at the
 * --val-ef grid. Without --budget/--edges the edge count is not fixed: the
 * smallest one whose graph stays within --tolerance of the input at every
 * ef is searched for (bisection), for the learned scores and for usage
 * counts, and the smaller passing graph is written; when neither passes,
 * the input's lists are written unchanged and a line says so. The table is
 * printed and stored in the model frame ("validation").
 *
 * The floors (--min-in 8, --min-frac 0.3) were chosen on validation queries
 * that are not the bench's test queries: spending the floor on in-edges
 * rather than out-edges keeps rarely-visited nodes findable, which is where
 * the learned graph lost recall at ef 12-48 with the earlier floors
 * (--min-in 2, --min-frac 0.7; bench/edges_val.py makes the validation
 * queries). Training queries sampled from the base are in stored
 * (dimension-permuted) order; --train queries are read in input order and
 * permuted to match.
 *
 * Continual learning (issue 16, as layer-route and nav-train): --init MODEL
 * starts from the first edge-scorer frame of an earlier output index (its
 * shape, and its standardisation, which is not refitted); --ewc LAMBDA
 * penalises moving the weights the stored diagonal Fisher marks; --replay
 * N|FILE labels N queries of the stored reservoir (or those of FILE) with
 * this run's training queries. The labels are per edge (did any training
 * search route over it?), so replayed queries are in every batch's labels,
 * and in the usage prior of the keep score. The written model keeps the
 * Fisher of this run's labels added to the earlier tasks' and a reservoir
 * (--reservoir) of the training queries, in input order. The validation
 * and the fallback are the same as without --init.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "channel.h"
#include "cli.h"
#include "edge.h"
#include "frame_keep.h"
#include "hnsw.h"
#include "hnsw_io.h"
#include "progress.h"
#include "vecstream.h"

static const char *prog = "edge-score";

static void usage(void)
{
    printf("usage: edge-score [options] [INDEX]\n"
           "Learn which level-0 edges of an index to keep; write the pruned index stream\n"
           "(stdin/stdout by default) with an \"edge-scorer\" model frame.\n\n"
           "The input graph must offer a choice: build it with more level-0 links than a\n"
           "classic graph, e.g. `graph-build --M0 48` (the classic default is M0 = 2*M = 32),\n"
           "then keep about as many edges as the classic graph has, or fewer.\n\n"
           "      --train FILE      training queries (a vector frame stream); default: a\n"
           "                        sample of base vectors, perturbed (never test queries)\n"
           "      --queries N       training queries to use (default 5000; the labels get\n"
           "                        much better with about one query per base vector)\n"
           "      --noise F         perturbation of sampled base vectors, as a fraction of\n"
           "                        the node's mean neighbour distance (default 0.5)\n"
           "      --epochs E        training passes (default 8)\n"
           "      --nodes N         source nodes sampled per pass (default 4096)\n"
           "      --tolerance T     keep the fewest edges whose validation recall@10 stays\n"
           "                        within T of the input graph at every --val-ef\n"
           "                        (default 0.002); when nothing passes, the input's\n"
           "                        edges are written unchanged\n"
           "      --val-queries N   training queries held aside for validation, never\n"
           "                        trained on (default 2000; 0: no validation, and the\n"
           "                        edge count is --budget's)\n"
           "      --val-ef LIST     ef grid of the validation (default 10,16,32,64,128)\n"
           "      --budget F        force the fraction of level-0 edges to keep instead of\n"
           "                        the tolerance search (the table says what it cost)\n"
           "      --edges N         force at most N level-0 edges (overrides --budget)\n"
           "      --min-keep N      every node keeps at least its N best edges (default 2)\n"
           "      --min-frac F      ... and at least this fraction of them (default 0.3)\n"
           "      --min-in N        every node keeps at least N in-edges (default 8; fewer\n"
           "                        when it has fewer candidate in-edges)\n"
           "      --protect N       never drop a node's N nearest edges (default 0)\n"
           "      --usage-weight W  keep score = model logit + W * log1p(route count of the\n"
           "                        training searches) (default 1; 0: the model alone)\n"
           "      --max-degree N    no node keeps more than N level-0 links, and the output\n"
           "                        index gets M0 = N (default: as many as fit in the link\n"
           "                        block of a classic M0 = 2*M graph, 47 for M 16, so a\n"
           "                        node takes the same memory as in the classic graph;\n"
           "                        0 keeps the input's M0)\n"
           "      --no-graph        ablation: no graph layer, the edge scorer is a plain MLP\n"
           "                        over both ends' own inputs and the edge features\n"
           "      --label-ef N      beam width of the labelling searches (default 64)\n"
           "      --far-every N     every Nth labelling search starts level 0 at an\n"
           "                        arbitrary node, to label bridging edges (default 4; 0 off)\n"
           "      --baseline KIND   no model: prune by `random` scores or by `usage` counts\n"
           "                        of the training searches (ties broken at random)\n"
           "      --init MODEL      start from the edge-scorer of an index file an earlier\n"
           "                        edge-score wrote (its shape; --no-graph is its own)\n"
           "      --ewc LAMBDA      with --init: penalise moving the weights the earlier\n"
           "                        tasks' Fisher information (kept in the model) marks\n"
           "      --replay N|FILE   N queries of the model's reservoir of past training\n"
           "                        queries (N needs --init), or those of FILE, are\n"
           "                        labelled and trained on with this run's\n"
           "      --reservoir N     past training queries the written model keeps for a\n"
           "                        later --replay (default 1000, 0 none)\n"
           "      --seed S          sampling, noise, initialisation (default 42)\n"
           "  -t, --threads N       threads for features and labelling (default: all cores)\n"
           "      --max-frame BYTES refuse frames larger than this (default 256 MiB)\n"
           "  -o, --output EP       - (stdout, default), a file (atomic), tcp://, "
           "ipc://\n" CURVE_HELP_STREAMS "  -h, --help            this text\n\n"
           "Every node stays reachable from the entry point at level 0 (edges are put\n"
           "back where pruning cut a node off, within the budget). Prints the validation\n"
           "table (recall@10 of the input and the pruned graphs on the held-aside\n"
           "queries), edges kept, label and training statistics and times on stderr.\n");
}

/* Keep frames the loader does not know (other models) to write them back;
 * an earlier edge-scorer model is replaced, so it is dropped. */
static int keep_other(const frame_in *f, void *arg, hf_err *e)
{
    if (strcmp(f->type, "model") == 0) {
        const msgpack_object *k = frame_find(f, "kind");
        if (k && k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(EDGE_MODEL_KIND) &&
            memcmp(k->via.str.ptr, EDGE_MODEL_KIND, k->via.str.size) == 0)
            return 0;
    }
    return frame_keep_add(arg, f, e);
}

/* malloc or fail with one line naming what it was for (never NULL) */
static void *alloc_or_fail(size_t bytes, const char *what)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        hf_err e;
        hf_err_set(&e, HF_ENOMEM, "out of memory for %s", what);
        cli_fail(prog, what, &e);
    }
    return p;
}

/* --init: the first edge-scorer frame of MODEL */
static int grab_model(const frame_in *f, void *arg, hf_err *e)
{
    edge_model **m = arg;
    if (*m || strcmp(f->type, "model") != 0 || !nn_model_is_kind(f->map, EDGE_MODEL_KIND))
        return 0;
    return edge_model_unpack(f->map, m, e);
}

static float *read_train(const char *ep, const curve_cfg *cc, size_t max_frame, size_t dim,
                         size_t limit, size_t *nq)
{
    hf_err e = {0};
    channel *c = NULL;
    vecstream vs;
    if (channel_open_in_curve(ep, max_frame, cc, &c, &e) || vecstream_open(&vs, c, 0, &e))
        cli_fail(prog, ep, &e);
    if (vs.dim != dim) {
        hf_err_set(&e, HF_EDATA, "frame 1: training queries have dimension %zu, index has %zu",
                   vs.dim, dim);
        cli_fail(prog, ep, &e);
    }
    float *q = NULL;
    size_t n = 0, cap = 0;
    const float *rows;
    size_t r;
    uint64_t first;
    int rc;
    while ((rc = vecstream_next(&vs, &rows, &r, &first, &e)) == 0) {
        if (n >= limit)
            continue; /* read to the end so the stream is checked whole */
        size_t take = r < limit - n ? r : limit - n;
        if (n + take > cap) {
            cap = (n + take) * 2;
            float *nq2 = realloc(q, cap * dim * sizeof *q);
            if (!nq2) {
                hf_err_set(&e, HF_ENOMEM, "out of memory for training queries");
                cli_fail(prog, ep, &e);
            }
            q = nq2;
        }
        /* q is non-NULL here: the branch above allocated it */
        // cppcheck-suppress nullPointerArithmeticRedundantCheck
        memcpy(q + n * dim, rows, take * dim * sizeof *q);
        n += take;
    }
    if (rc != HF_EOF)
        cli_fail(prog, ep, &e);
    vecstream_close(&vs);
    channel_destroy(&c);
    *nq = n;
    return q;
}

/* nq base vectors (without replacement while nq <= n), each moved by
 * Gaussian noise of expected length noise * its mean neighbour distance. */
static float *sample_queries(const hnsw *h, const edge_graph *g, size_t nq, float noise,
                             nn_rng *rng, uint32_t **self_out)
{
    float *q = malloc(nq * h->dim * sizeof *q);
    uint32_t *self = malloc(nq * sizeof *self);
    uint32_t *perm = malloc(h->n * sizeof *perm);
    if (!q || !self || !perm) {
        hf_err e;
        hf_err_set(&e, HF_ENOMEM, "out of memory for training queries");
        cli_fail(prog, "sampling", &e);
    }
    for (size_t i = 0; i < h->n; i++)
        perm[i] = (uint32_t)i;
    for (size_t i = 0; i < nq; i++) {
        size_t r = i % h->n;
        if (i < h->n) { /* past n: reuse the shuffled order */
            size_t j = r + (size_t)nn_rng_below(rng, h->n - r);
            uint32_t t = perm[r];
            perm[r] = perm[j];
            perm[j] = t;
        }
        uint32_t id = perm[r];
        if (id == h->entry && h->n > 1) /* leave-one-out cannot leave the entry out */
            id = (id + 1) % (uint32_t)h->n;
        self[i] = id;
        const float *v = hnsw_vec(h, id);
        float s = noise * g->dens[id] / sqrtf((float)h->dim);
        for (size_t c = 0; c < h->dim; c++)
            q[i * h->dim + c] = v[c] + s * nn_rng_normal(rng);
    }
    free(perm);
    *self_out = self;
    return q;
}

/* the validation table: one row per measured graph */
static void print_row(const char *name, const edge_val *v, const double *r, size_t edges)
{
    fprintf(stderr, "edge-score:   %-13s", name);
    for (size_t i = 0; i < edge_val_nef(v); i++)
        fprintf(stderr, " %7.4f", r[i]);
    fprintf(stderr, " %9zu\n", edges);
}

static void print_table(const edge_val *v, const double *ref, size_t ne, const edge_val_row *rows,
                        const char *const *names, size_t nrows, const double *out)
{
    fprintf(stderr,
            "edge-score: validation on %zu held-aside training queries (never trained on, "
            "never test queries), recall@10:\n",
            edge_val_queries(v));
    fprintf(stderr, "edge-score:   %-13s", "ef");
    for (size_t i = 0; i < edge_val_nef(v); i++)
        fprintf(stderr, " %7zu", edge_val_ef(v, i));
    fprintf(stderr, " %9s\n", "edges");
    print_row("input", v, ref, ne);
    for (size_t r = 0; r < nrows; r++)
        print_row(names[r], v, rows[r].recall, rows[r].edges);
    double d[EDGE_VAL_MAX_EF];
    for (size_t i = 0; i < edge_val_nef(v); i++)
        d[i] = out[i] - ref[i];
    fprintf(stderr, "edge-score:   %-13s", "output-input");
    for (size_t i = 0; i < edge_val_nef(v); i++)
        fprintf(stderr, " %+7.4f", d[i]);
    fprintf(stderr, "\n");
}

static void pack_doubles(msgpack_packer *pk, const double *x, size_t n)
{
    msgpack_pack_array(pk, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        msgpack_pack_double(pk, x[i]);
}

/* the model frame's "validation" record (schemas/edge-model.json) */
static void pack_validation(msgpack_sbuffer *sb, const edge_val *v, double tol, int forced,
                            const char *method, const double *ref, const double *out,
                            const double *nd_ref, const double *nd_out, size_t edges_in,
                            size_t edges_out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    size_t nef = edge_val_nef(v);
    size_t ef[EDGE_VAL_MAX_EF];
    for (size_t i = 0; i < nef; i++)
        ef[i] = edge_val_ef(v, i);
    frame_pack_str(&pk, "validation");
    msgpack_pack_map(&pk, 12);
    frame_pack_str(&pk, "queries");
    msgpack_pack_uint64(&pk, edge_val_queries(v));
    frame_pack_str(&pk, "k");
    msgpack_pack_uint32(&pk, 10);
    frame_pack_str(&pk, "tolerance");
    msgpack_pack_double(&pk, tol);
    frame_pack_str(&pk, "forced");
    if (forced)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    frame_pack_str(&pk, "method");
    frame_pack_str(&pk, method);
    frame_pack_str(&pk, "ef");
    msgpack_pack_array(&pk, (uint32_t)nef);
    for (size_t i = 0; i < nef; i++)
        msgpack_pack_uint64(&pk, ef[i]);
    frame_pack_str(&pk, "recall_input");
    pack_doubles(&pk, ref, nef);
    frame_pack_str(&pk, "recall_output");
    pack_doubles(&pk, out, nef);
    frame_pack_str(&pk, "ndist_input");
    pack_doubles(&pk, nd_ref, nef);
    frame_pack_str(&pk, "ndist_output");
    pack_doubles(&pk, nd_out, nef);
    frame_pack_str(&pk, "edges_input");
    msgpack_pack_uint64(&pk, edges_in);
    frame_pack_str(&pk, "edges_output");
    msgpack_pack_uint64(&pk, edges_out);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"train", required_argument, 0, 1},
                                         {"queries", required_argument, 0, 2},
                                         {"epochs", required_argument, 0, 3},
                                         {"budget", required_argument, 0, 4},
                                         {"seed", required_argument, 0, 5},
                                         {"threads", required_argument, 0, 't'},
                                         {"output", required_argument, 0, 'o'},
                                         {"edges", required_argument, 0, 6},
                                         {"min-keep", required_argument, 0, 7},
                                         {"label-ef", required_argument, 0, 8},
                                         {"baseline", required_argument, 0, 9},
                                         {"noise", required_argument, 0, 10},
                                         {"nodes", required_argument, 0, 11},
                                         {"max-frame", required_argument, 0, 12},
                                         {"min-frac", required_argument, 0, 13},
                                         {"far-every", required_argument, 0, 14},
                                         {"min-in", required_argument, 0, 15},
                                         {"protect", required_argument, 0, 16},
                                         {"usage-weight", required_argument, 0, 17},
                                         {"no-graph", no_argument, 0, 18},
                                         {"max-degree", required_argument, 0, 19},
                                         {"tolerance", required_argument, 0, 20},
                                         {"val-queries", required_argument, 0, 21},
                                         {"val-ef", required_argument, 0, 22},
                                         {"init", required_argument, 0, 23},
                                         {"ewc", required_argument, 0, 24},
                                         {"replay", required_argument, 0, 25},
                                         {"reservoir", required_argument, 0, 26},
                                         CURVE_LONG_OPTIONS,
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *train_ep = NULL, *out_ep = "-", *baseline = NULL;
    const char *init = NULL, *replay_file = NULL;
    size_t replay_n = 0, reservoir = 1000;
    double ewc = 0;
    size_t nq = 5000, edges = 0, max_frame = 0, nval = 2000;
    double budget = 0.85, noise = 0.5, min_frac = 0.3, usage_w = 1.0, tol = 0.002;
    int budget_set = 0;
    size_t val_ef[EDGE_VAL_MAX_EF] = {10, 16, 32, 64, 128};
    size_t nef = 5;
    edge_prune_cfg pc = {.min_keep = 2, .min_in = 8, .protect = 0};
    uint64_t seed = 42;
    edge_train_cfg tc = edge_train_defaults();
    edge_label_cfg lc = {.k = 10, .ef = 64, .far_every = 4};
    int no_graph = 0, max_degree_set = 0;
    uint32_t max_degree = 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = ncpu > 0 ? (int)ncpu : 1;
    curve_cfg cc = {0};
    int c;
    while ((c = getopt_long(argc, argv, "t:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 1: train_ep = optarg; break;
        case 2: nq = cli_u64(prog, "--queries", optarg, 1, 10000000); break;
        case 3: tc.epochs = cli_u64(prog, "--epochs", optarg, 0, 100000); break;
        case 4:
            budget = cli_f64(prog, "--budget", optarg, 0.0, 1.0);
            budget_set = 1;
            break;
        case 5: seed = cli_u64(prog, "--seed", optarg, 0, UINT64_MAX); break;
        case 't': threads = (int)cli_u64(prog, "--threads", optarg, 1, 64); break;
        case 'o': out_ep = optarg; break;
        case 6: edges = cli_u64(prog, "--edges", optarg, 1, UINT64_MAX); break;
        case 7: pc.min_keep = (uint32_t)cli_u64(prog, "--min-keep", optarg, 0, 4096); break;
        case 8: lc.ef = cli_u64(prog, "--label-ef", optarg, 1, 100000); break;
        case 9:
            if (strcmp(optarg, "random") && strcmp(optarg, "usage"))
                cli_usage_error(prog, "--baseline is random or usage, not \"%s\"", optarg);
            baseline = optarg;
            break;
        case 10: noise = cli_f64(prog, "--noise", optarg, 0.0, 100.0); break;
        case 11: tc.nodes_per_epoch = cli_u64(prog, "--nodes", optarg, 1, 1u << 30); break;
        case 14: lc.far_every = cli_u64(prog, "--far-every", optarg, 0, 1u << 30); break;
        case 13: min_frac = cli_f64(prog, "--min-frac", optarg, 0.0, 1.0); break;
        case 15: pc.min_in = (uint32_t)cli_u64(prog, "--min-in", optarg, 0, 4096); break;
        case 16: pc.protect = (uint32_t)cli_u64(prog, "--protect", optarg, 0, 4096); break;
        case 17: usage_w = cli_f64(prog, "--usage-weight", optarg, 0.0, 1000.0); break;
        case 18: no_graph = 1; break;
        case 19:
            max_degree = (uint32_t)cli_u64(prog, "--max-degree", optarg, 0, 4096);
            max_degree_set = 1;
            break;
        case 20: tol = cli_f64(prog, "--tolerance", optarg, 0.0, 1.0); break;
        case 21: nval = cli_u64(prog, "--val-queries", optarg, 0, 1000000); break;
        case 22:
            nef = cli_u64_list(prog, "--val-ef", optarg, 1, 100000, val_ef, EDGE_VAL_MAX_EF);
            break;
        case 23: init = optarg; break;
        case 24: ewc = cli_f64(prog, "--ewc", optarg, 0, 1e9); break;
        case 25:
            if (strspn(optarg, "0123456789") == strlen(optarg))
                replay_n = cli_u64(prog, "--replay", optarg, 1, 10000000);
            else
                replay_file = optarg;
            break;
        case 26: reservoir = cli_u64(prog, "--reservoir", optarg, 0, 10000000); break;
        case 12: max_frame = cli_u64(prog, "--max-frame", optarg, 64, UINT64_MAX); break;
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
        cli_usage_error(prog, "--ewc and --replay N start from a model: give --init");
    if (baseline && (init || replay_file))
        cli_usage_error(prog, "--baseline trains no model: not with --init or --replay");
    int forced = edges || budget_set || nval == 0;
    tc.seed = seed;
    lc.threads = threads;
    const char *in_ep = optind < argc ? argv[optind] : "-";
    const char *in_name = strcmp(in_ep, "-") == 0 ? "stdin" : in_ep;
    hf_err e = {0};
    if (channel_curve_usage(&cc, (const char *const[]){in_ep, train_ep, init, replay_file}, 4,
                            &out_ep, 1, 0, 0, &e))
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
    if (h->n == 0 || h->entry == HNSW_NONE) {
        hf_err_set(&e, HF_EDATA, "the index is empty");
        cli_fail(prog, in_name, &e);
    }
    /* --init: the model trained on, checked against this index before any work */
    edge_model *m = NULL;
    nn_memory old = {0}; /* what the --init model kept of its earlier tasks */
    if (init) {
        channel *ic = NULL;
        hnsw *ih = NULL;
        if (channel_open_in_curve(init, max_frame, &cc, &ic, &e) ||
            hnsw_load(ic, &ih, grab_model, &m, &e))
            cli_fail(prog, init, &e);
        channel_destroy(&ic);
        hnsw_destroy(&ih);
        if (!m)
            hf_err_set(&e, HF_EDATA, "no edge-scorer model frame (train one with edge-score)");
        else if (edge_model_dim(m) != h->dim)
            hf_err_set(&e, HF_EDATA, "the edge model is for dimension %zu, %s has %zu",
                       edge_model_dim(m), in_name, h->dim);
        else if (edge_model_m0(m) < h->p.M0)
            hf_err_set(&e, HF_EDATA,
                       "the edge model takes at most %u level-0 neighbours, %s has M0 %u",
                       edge_model_m0(m), in_name, h->p.M0);
        else if (ewc > 0 && !edge_model_memory(m)->fisher)
            hf_err_set(&e, HF_EDATA,
                       "the edge model keeps no Fisher information, which --ewc needs "
                       "(retrain it with this edge-score)");
        else if (replay_n && !edge_model_memory(m)->nreplay)
            hf_err_set(&e, HF_EDATA,
                       "the edge model keeps no replay reservoir, which --replay N needs "
                       "(retrain it with this edge-score, or --replay FILE)");
        if (e.code)
            cli_fail(prog, init, &e);
        old = *edge_model_memory(m); /* moved: m's memory is rewritten after training */
        memset(edge_model_memory(m), 0, sizeof old);
    }
    /* replayed past queries (input order as stored or read), then put in
     * stored order below with the training queries */
    float *rq = NULL;
    size_t nrp = 0;
    if (replay_file)
        rq = read_train(replay_file, &cc, max_frame, h->dim, 10000000, &nrp);
    else if (replay_n) {
        nrp = replay_n < old.nreplay ? replay_n : old.nreplay;
        rq = alloc_or_fail(nrp * h->dim * sizeof *rq, "replayed queries");
        memcpy(rq, old.replay, nrp * h->dim * sizeof *rq);
    }
    if (rq && h->perm) {
        float *tmp = alloc_or_fail(h->dim * sizeof *tmp, "replayed queries");
        for (size_t q = 0; q < nrp; q++) {
            memcpy(tmp, rq + q * h->dim, h->dim * sizeof *tmp);
            hnsw_permute_query(h, tmp, rq + q * h->dim);
        }
        free(tmp);
    }

    int want_labels = !baseline || strcmp(baseline, "usage") == 0;
    float *queries = NULL;
    uint32_t *self = NULL;
    size_t ntot = 0; /* training + validation queries */
    if (train_ep && (want_labels || nval)) {
        queries = read_train(train_ep, &cc, max_frame, h->dim, nq + nval, &ntot);
        /* the file's last rows validate; a short file keeps most for training */
        if (nval > ntot / 4)
            nval = ntot / 4;
        nq = ntot - nval;
        if (nq == 0) {
            hf_err_set(&e, HF_EDATA, "no training queries in the stream");
            cli_fail(prog, train_ep, &e);
        }
    }
    if (queries && h->perm) {
        /* sampled queries (and labels, features) live in stored (dimension-permuted)
         * vectors: put the --train queries, read in input order, in that order */
        float *tmp = malloc(h->dim * sizeof *tmp);
        if (!tmp) {
            hf_err_set(&e, HF_ENOMEM, "out of memory for training queries");
            cli_fail(prog, train_ep, &e);
        }
        for (size_t q = 0; q < ntot; q++) {
            memcpy(tmp, queries + q * h->dim, h->dim * sizeof *tmp);
            hnsw_permute_query(h, tmp, queries + q * h->dim);
        }
        free(tmp);
    }

    edge_graph *g = NULL;
    if (edge_graph_new(h, threads, &g, &e))
        cli_fail(prog, in_name, &e);
    double t_feat = now_seconds() - t0;
    size_t ne = g->nedges;
    size_t keep_n = edges ? edges : (size_t)(budget * (double)ne + 0.5);
    if (keep_n > ne)
        keep_n = ne;

    nn_rng rng;
    nn_rng_seed(&rng, seed);
    float *score = malloc((ne ? ne : 1) * sizeof *score);
    float *uscore = malloc((ne ? ne : 1) * sizeof *uscore);
    uint32_t *usage_c = malloc((ne ? ne : 1) * sizeof *usage_c);
    uint32_t *expanded = malloc(h->n * sizeof *expanded);
    uint8_t *keep = malloc(ne ? ne : 1);
    if (!score || !uscore || !usage_c || !expanded || !keep) {
        hf_err_set(&e, HF_ENOMEM, "out of memory");
        cli_fail(prog, in_name, &e);
    }
    if (!queries && (want_labels || nval)) {
        queries = sample_queries(h, g, nq + nval, (float)noise, &rng, &self);
        ntot = nq + nval;
    }

    /* validation first, on the input graph as loaded */
    double t_val = 0, ref[EDGE_VAL_MAX_EF] = {0}, nd_ref[EDGE_VAL_MAX_EF] = {0};
    edge_val *val = NULL;
    uint32_t *saved = NULL;
    if (nval) {
        double t1 = now_seconds();
        if (edge_val_new(h, queries + nq * h->dim, nval, self ? self + nq : NULL, 10, val_ef, nef,
                         threads, &val, &e) ||
            edge_val_measure(val, h, ref, nd_ref, &e) || edge_links_save(h, &saved, &e))
            cli_fail(prog, in_name, &e);
        t_val += now_seconds() - t1;
    }

    double t_label = 0, t_train = 0, auc = 0.5, bce = 0;
    float loss = 0;
    size_t used = 0;
    /* the labelled queries: this run's training queries, then the replayed
     * ones (no base vector of their own to leave out) */
    float *lq = queries;
    uint32_t *lself = self;
    if (want_labels && nrp) {
        lq = alloc_or_fail((nq + nrp) * h->dim * sizeof *lq, "replayed queries");
        lself = self ? alloc_or_fail((nq + nrp) * sizeof *lself, "replayed queries") : NULL;
        memcpy(lq, queries, nq * h->dim * sizeof *lq);
        memcpy(lq + nq * h->dim, rq, nrp * h->dim * sizeof *lq);
        if (lself) {
            memcpy(lself, self, nq * sizeof *lself);
            for (size_t q = nq; q < nq + nrp; q++)
                lself[q] = HNSW_NONE;
        }
    }
    if (want_labels) {
        double t1 = now_seconds();
        if (edge_label(h, g, lq, nq + nrp, lself, &lc, usage_c, expanded, &e))
            cli_fail(prog, in_name, &e);
        for (size_t x = 0; x < ne; x++)
            used += usage_c[x] > 0;
        t_label = now_seconds() - t1;
        for (size_t x = 0; x < ne; x++)
            uscore[x] = (float)usage_c[x] + 0.5f * nn_rng_uniform(&rng);
    }
    if (!baseline) {
        double t1 = now_seconds();
        edge_model_cfg mc = edge_model_defaults();
        mc.seed = seed;
        mc.no_graph = no_graph;
        if (!m && edge_model_new(&mc, h->dim, g->m0, &m, &e))
            cli_fail(prog, in_name, &e);
        /* EWC: the earlier tasks' Fisher around the weights we start from */
        nn_ewc *ew = NULL;
        tc.keep_stats = init != NULL;
        if ((ewc > 0 && nn_ewc_from(edge_model_trainable(m), old.fisher, &ew, &e)) ||
            edge_model_train_ewc(m, h, g, usage_c, expanded, &tc, ew, (float)ewc, &loss, &e) ||
            edge_model_score(m, h, g, score, &e))
            cli_fail(prog, in_name, &e);
        nn_ewc_destroy(&ew);
        /* what the next training keeps of this one: its Fisher on this
         * run's labels added to the earlier tasks', and the reservoir of
         * this run's training queries (input order) */
        float *raw = alloc_or_fail(nq * h->dim * sizeof *raw, "the replay reservoir");
        for (size_t q = 0; q < nq; q++) {
            if (h->perm)
                hnsw_unpermute(h, queries + q * h->dim, raw + q * h->dim);
            else
                memcpy(raw + q * h->dim, queries + q * h->dim, h->dim * sizeof *raw);
        }
        nn_memory *mem = edge_model_memory(m);
        if (nn_ewc_from(edge_model_trainable(m), old.fisher, &ew, &e) ||
            edge_model_fisher(m, h, g, usage_c, expanded, 512, seed + 11, ew, &e) ||
            nn_memory_set_fisher(mem, &ew, 1, old.tasks + 1, &e) ||
            nn_memory_reservoir(mem, &old, raw, nq, h->dim, reservoir, seed + 13, &e))
            cli_fail(prog, in_name, &e);
        nn_ewc_destroy(&ew);
        free(raw);
        edge_eval(g, score, usage_c, expanded, &bce, &auc);
        /* the usage prior: counts the model cannot see rank its edges too */
        for (size_t x = 0; usage_w > 0 && x < ne; x++)
            score[x] += (float)usage_w * log1pf((float)usage_c[x]);
        t_train = now_seconds() - t1;
    } else if (strcmp(baseline, "random") == 0) {
        for (size_t x = 0; x < ne; x++)
            score[x] = nn_rng_uniform(&rng);
    } else {
        memcpy(score, uscore, ne * sizeof *score);
    }
    edge_prune_stats ps = {0};
    pc.min_frac = (float)min_frac;
    /* default: as many links as fit the classic (M0 = 2M) graph's link
     * block, so a node's record is exactly as large as in the classic graph */
    if (!max_degree_set)
        max_degree = hnsw_m0_fitting(2 * h->p.M);
    pc.max_out = max_degree < h->p.M0 ? max_degree : 0;

    const char *method = baseline ? baseline : "learned";
    int unchanged = 0;
    size_t kept = 0, ntried = 0;
    double out_r[EDGE_VAL_MAX_EF] = {0}, out_nd[EDGE_VAL_MAX_EF] = {0};
    edge_val_row rows[2];
    const char *names[2];
    size_t nrows = 0;
    double t1 = now_seconds();
    if (forced) {
        if (edge_prune(g, score, keep_n, &pc, h->entry, keep, &ps, &e))
            cli_fail(prog, in_name, &e);
        edge_graph_apply(g, keep, h);
        kept = ps.kept;
        if (val && edge_val_measure(val, h, out_r, out_nd, &e))
            cli_fail(prog, in_name, &e);
    } else {
        /* the tolerance search over [0.4, 1] of the input's edges, for the
         * scores asked for and, for the model, for usage counts as well */
        size_t lo = (size_t)(0.4 * (double)ne);
        int found[2] = {0, 0};
        const float *sc[2] = {score, uscore};
        size_t nmeth = !baseline ? 2 : 1;
        for (size_t k = 0; k < nmeth; k++) {
            size_t tr = 0;
            names[k] = k == 0 ? method : "usage";
            if (edge_val_tune(val, g, sc[k], &pc, h->entry, h, ref, tol, lo, ne, 7, keep, &rows[k],
                              &found[k], &tr, &e))
                cli_fail(prog, in_name, &e);
            ntried += tr;
        }
        nrows = nmeth;
        int pick = -1;
        for (size_t k = 0; k < nmeth; k++)
            if (found[k] && (pick < 0 || rows[k].edges < rows[pick].edges))
                pick = (int)k;
        if (pick < 0) {
            unchanged = 1;
            method = "unchanged";
            edge_links_restore(h, saved);
            kept = ne;
            memcpy(out_r, ref, sizeof out_r);
            memcpy(out_nd, nd_ref, sizeof out_nd);
        } else {
            method = names[pick];
            /* the mask of the last search is in h: redo the chosen one */
            if (edge_prune(g, sc[pick], rows[pick].budget, &pc, h->entry, keep, &ps, &e))
                cli_fail(prog, in_name, &e);
            edge_graph_apply(g, keep, h);
            kept = ps.kept;
            memcpy(out_r, rows[pick].recall, sizeof out_r);
            memcpy(out_nd, rows[pick].ndist, sizeof out_nd);
        }
    }
    t_val += now_seconds() - t1;
    if (val) {
        if (forced) {
            rows[0] = (edge_val_row){.edges = kept};
            memcpy(rows[0].recall, out_r, sizeof out_r);
            names[0] = method;
            nrows = 1;
        }
        print_table(val, ref, ne, rows, names, nrows, out_r);
        double worst = edge_val_loss(val, ref, out_r);
        if (forced)
            fprintf(stderr,
                    "edge-score: %s pruning forced to %zu of %zu level-0 edges: worst recall "
                    "change %+.4f against the input graph (tolerance %.4f %s)\n",
                    method, kept, ne, -worst, tol, worst <= tol ? "met" : "NOT met");
        else if (unchanged)
            fprintf(stderr,
                    "edge-score: no pruning stays within %.4f of the input graph's validation "
                    "recall (%s at %zu edges loses %.4f): the input graph's edges are written "
                    "unchanged\n",
                    tol, names[0], rows[0].edges, rows[0].loss);
        else
            fprintf(stderr,
                    "edge-score: tolerance %.4f: %s pruning keeps %zu of %zu level-0 edges "
                    "(%.1f%%), worst validation loss %.4f; %zu graphs measured\n",
                    tol, method, kept, ne, ne ? 100.0 * kept / ne : 0.0, worst, ntried);
    }
    /* the output's M0: the cap, or more where reachability repair needed it */
    if (!unchanged && pc.max_out && hnsw_shrink_m0(h, pc.max_out, &e))
        cli_fail(prog, in_name, &e);

    /* Open the output only once everything worked: no output file on failure. */
    channel *out = NULL;
    if (channel_open_out_curve(out_ep, &cc, &out, &e) || hnsw_save_body(h, out, &e))
        cli_fail(prog, out_ep, &e);
    frame_out fo;
    frame_out_init(&fo);
    if (m) {
        msgpack_sbuffer xs;
        msgpack_sbuffer_init(&xs);
        nn_extra x = {0};
        if (val) {
            pack_validation(&xs, val, tol, forced, method, ref, out_r, nd_ref, out_nd, ne, kept);
            x = (nn_extra){xs.data, xs.size, 1};
        }
        msgpack_sbuffer_clear(&fo.sb);
        if (edge_model_pack(m, &x, &fo.sb, &e) || channel_send(out, &fo, &e))
            cli_fail(prog, out_ep, &e);
        msgpack_sbuffer_destroy(&xs);
    }
    if (frame_keep_send(&pt, out, &fo, &e))
        cli_fail(prog, out_ep, &e);
    frame_out_free(&fo);
    if (channel_send_end(out, h->n, &e) || channel_commit(out, &e))
        cli_fail(prog, out_ep, &e);
    channel_destroy(&out);

    fprintf(stderr,
            "edge-score: %zu nodes, M0 %u -> %u, %s: level-0 edges %zu -> %zu (%.1f%%), "
            "%zu put back for reachability, %zu unreachable",
            h->n, g->m0, h->p.M0, method, ne, kept, ne ? 100.0 * kept / ne : 0.0, ps.repaired,
            ps.unreachable);
    if (want_labels)
        fprintf(stderr, "; %zu training queries, %.1f%% of edges carried a route", nq,
                ne ? 100.0 * used / ne : 0.0);
    if (nrp)
        fprintf(stderr, " and %zu replayed", nrp);
    if (!baseline)
        fprintf(stderr, "; loss %.4f, AUC %.3f", bce, auc);
    fprintf(stderr,
            "; features %.1f s, labels %.1f s, training %.1f s, validation %.1f s, total %.1f s\n",
            t_feat, t_label, t_train, t_val, now_seconds() - t0);
    if (init)
        fprintf(stderr,
                "edge-score: continual: from %s, EWC %s (lambda %g, Fisher of %u earlier task%s), "
                "%zu replayed queries; reservoir kept: %zu of %llu training queries seen\n",
                init, ewc > 0 ? "on" : "off", ewc, old.tasks, old.tasks == 1 ? "" : "s", nrp,
                edge_model_memory(m)->nreplay,
                (unsigned long long)edge_model_memory(m)->replay_seen);
    if (lq != queries)
        free(lq);
    if (lself != self)
        free(lself);
    free(rq);
    nn_memory_free(&old);
    edge_val_destroy(&val);
    edge_model_destroy(&m);
    edge_graph_destroy(&g);
    hnsw_destroy(&h);
    free(saved);
    free(queries);
    free(self);
    free(score);
    free(uscore);
    free(usage_c);
    free(expanded);
    free(keep);
    return 0;
}
