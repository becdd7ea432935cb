/*
 * nav-train - learn a navigation policy (libcommon/nav.h): read an index
 * stream, train which neighbours a level-0 search measures (skip model) and
 * when it stops (stop model) on leave-one-out base vectors, validate it on
 * held-aside ones against the classic search and the two non-learned
 * rivals (ADSampling's distance test, an adaptive stopping rule), and write
 * the index stream with a {t:"model", kind:"nav-policy"} frame before the
 * end frame (an earlier policy is replaced; other frames pass through).
 *
 * Training: recorded classic searches at --label-ef give, for every
 * neighbour met with a full beam, its features and whether its exact
 * distance entered the beam (behavioural cloning, BCE), and for every hop
 * the search state and the recall@10 of the top 10 at that point (the stop
 * model, BCE on the recall). Then PPO (--ppo-iters) refines the skip model
 * on the search as an environment: reward minus one per exact distance,
 * minus --miss-cost per true neighbour missed. The skip threshold is chosen
 * on the validation queries (fewest distance computations at equal recall
 * against the classic curve); PPO is kept only when it measures better
 * there than cloning alone, and the frame says which. When nothing beats the
 * classic search the frame says fallback and query --nav searches
 * classically. --recall R is calibrated on the validation queries: the
 * stop threshold at which their mean recall@10 is R.
 *
 * Few-shot: --init MODEL starts from the policy in another index file (its
 * MLPs; the projection is this index's own PCA) and --shots N adapts it with
 * N training queries; --shots 0 keeps it as it is (no adaptation).
 *
 * Incremental (the same index's policy as --init, nav_memory.c): --ewc adds
 * the earlier tasks' Fisher penalty, --replay mixes past training queries
 * (the policy's reservoir, or a file) into the samples, --distill softens
 * their labels towards the old policy; every written policy keeps its
 * summed Fisher and a reservoir of training queries for the next time.
 * --holdout measures old and new on queries neither saw and writes nothing
 * (exit 3) unless the new one is no worse.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "channel.h"
#include "cli.h"
#include "frame_keep.h"
#include "hnsw.h"
#include "hnsw_io.h"
#include "nav.h"
#include "progress.h"
#include "route.h"
#include "vecstream.h"

static const char *prog = "nav-train";

#define MAX_EF 16
#define NTHR 9
static const float skip_probs[NTHR] = {0.01f, 0.03f, 0.06f, 0.1f, 0.15f, 0.25f, 0.4f, 0.55f, 0.7f};
#define NCAL 10
static const float cal_grid[NCAL] = {0.80f, 0.85f, 0.90f, 0.93f,  0.95f,
                                     0.97f, 0.98f, 0.99f, 0.995f, 0.999f};
#define NPAT 5
static const uint32_t patience[NPAT] = {1, 2, 4, 8, 16};

static void usage(void)
{
    printf("usage: nav-train [options] [INDEX]\n"
           "Train a navigation policy (which neighbours a search measures, when it stops),\n"
           "validate it, and write the index stream (stdin/stdout by default) with a\n"
           "\"nav-policy\" model frame; `query --nav` and `query --recall R` use it.\n"
           "l2 and cosine indexes only.\n\n"
           "      --train FILE      training queries (a vector frame stream, never the test\n"
           "                        queries): the last --val-queries of them validate\n"
           "      --queries N       without --train: training queries drawn from the base\n"
           "                        vectors, leave-one-out (default 4000)\n"
           "      --val-queries N   held-aside validation queries (default 1000; with --train\n"
           "                        at most a quarter of the file)\n"
           "      --label-ef LIST   beam widths of the recorded training searches\n"
           "                        (default 16,32,64,128)\n"
           "      --proj-dim R      PCA coordinates per node the skip test reads (1..63;\n"
           "                        default 31 from 256 dimensions up, else 15)\n"
           "      --dagger N        rounds of DAgger after cloning: label the states the\n"
           "                        learned skip leads to and refit (default 0)\n"
           "      --epochs E        cloning passes over the samples (default 6)\n"
           "      --lr F            Adam learning rate (default 0.003)\n"
           "      --ppo-iters N     PPO rounds after cloning (default 2; 0: cloning only)\n"
           "      --ppo-epochs N    passes over each round's decisions (default 2)\n"
           "      --ppo-queries N   training queries a PPO round searches (default 1000)\n"
           "      --miss-cost C     PPO: distance computations a missed true neighbour\n"
           "                        costs (default 100)\n"
           "      --init MODEL      start from the nav-policy of an index file (this one for\n"
           "                        incremental training, another for few-shot adaptation)\n"
           "      --shots N         train on N queries only: with --init, adapt the policy\n"
           "                        with them (0: no adaptation), without it, train from\n"
           "                        scratch on them (default: all the training queries)\n"
           "      --ewc LAMBDA      with --init: penalise moving the weights the earlier\n"
           "                        tasks' Fisher information (kept in the policy) marks\n"
           "                        as important (elastic weight consolidation)\n"
           "      --replay N|FILE   with --init: mix N queries of the policy's reservoir of\n"
           "                        past training queries (or those of FILE, a vector\n"
           "                        stream or query log) into the training samples\n"
           "      --distill W       with --replay: on replayed queries the target is (1-W)\n"
           "                        the label + W the old policy's probability (0..1)\n"
           "      --reservoir N     past training queries the written policy keeps for a\n"
           "                        later --replay (reservoir sampling; default 1000, 0 none)\n"
           "      --rivals, --no-rivals  measure ADSampling and the adaptive stop on the\n"
           "                        validation queries for the table (default: yes, but\n"
           "                        not with --init: incremental training skips them)\n"
           "      --holdout N|F|FILE  with --init: hold aside the last N (or the fraction F)\n"
           "                        of --train's queries, or those of FILE, never trained or\n"
           "                        validated on; write nothing and exit 3 unless the new\n"
           "                        policy needs no more distance computations there than\n"
           "                        the --init policy at recall@10 --target (default 0.95)\n"
           "      --val-ef LIST     ef grid of the validation (default 10,16,24,32,48,64,96,128,\n"
           "                        192,256)\n"
           "      --eps0 F          ADSampling's test parameter in the validation (default 2.1)\n"
           "      --seed S          sampling and initialisation (default 42)\n"
           "  -t, --threads N       threads for the validation (default: all cores)\n"
           "      --max-frame BYTES refuse frames larger than this (default 256 MiB)\n"
           "  -o, --output EP       - (stdout, default), a file (atomic), tcp://, "
           "ipc://\n" CURVE_HELP_STREAMS "  -h, --help            this text\n\n"
           "Prints on stderr the validation table: recall@10, distance computations and hops\n"
           "per query at every ef for the classic search, ADSampling, the adaptive stop,\n"
           "cloning and cloning + PPO, and the --recall calibration.\n");
}

/* The input's frames: an earlier policy is replaced (taken as --init's
 * when init names the input itself), other frames pass through. */
typedef struct input_extra {
    frame_keep *pt;
    nav_policy **from; /* NULL: --init is another file */
} input_extra;

static int keep_other(const frame_in *f, void *arg, hf_err *e)
{
    input_extra *x = arg;
    if (strcmp(f->type, "model") == 0 && nav_is_frame(f->map))
        return x->from && !*x->from ? nav_unpack(f->map, x->from, e) : 0;
    return frame_keep_add(x->pt, f, e);
}

/* --init: the first nav-policy frame of MODEL */
static int grab_policy(const frame_in *f, void *arg, hf_err *e)
{
    nav_policy **p = arg;
    if (*p || strcmp(f->type, "model") != 0 || !nav_is_frame(f->map))
        return 0;
    return nav_unpack(f->map, p, e); /* the loader names the frame */
}

static void copy_mlp(nav_mlp *dst, const nav_mlp *src)
{
    for (size_t i = 0; i < dst->seq->n; i++) {
        nn_layer *a = dst->seq->layers[i];
        const nn_layer *b = src->seq->layers[i];
        if (a->w)
            memcpy(a->w->data, b->w->data, nn_tensor_len(a->w) * sizeof(float));
        if (a->b)
            memcpy(a->b->data, b->b->data, nn_tensor_len(a->b) * sizeof(float));
    }
}

/* the skip model's weights, to restore when PPO loses */
static float *snapshot(const nav_mlp *m, float *buf, int restore)
{
    size_t o = 0;
    for (size_t i = 0; i < m->seq->n; i++) {
        nn_layer *a = m->seq->layers[i];
        nn_tensor *t[2] = {a->w, a->b};
        for (int j = 0; j < 2; j++) {
            if (!t[j])
                continue;
            size_t n = nn_tensor_len(t[j]);
            if (restore)
                memcpy(t[j]->data, buf + o, n * sizeof(float));
            else
                memcpy(buf + o, t[j]->data, n * sizeof(float));
            o += n;
        }
    }
    return buf;
}

/* Every query vector of a vector stream or query log at path; exits with
 * one line on bad input. *out (caller frees) gets n x dim floats. */
static size_t read_queries(const char *path, const curve_cfg *cc, size_t dim, size_t max_frame,
                           float **out)
{
    hf_err e = {0};
    size_t n = 0;
    if (vecstream_read_all(path, cc, dim, max_frame, out, &n, &e))
        cli_fail(prog, path, &e);
    return n;
}

typedef struct curve {
    double r[MAX_EF], w[MAX_EF], hops[MAX_EF];
} curve;

static void eval_curve(const hnsw *h, const nav_policy *p, const nav_adsamp *ad,
                       const route_qset *vq, const nav_cfg *cfg, const size_t *efs, size_t nef,
                       int threads, curve *c)
{
    hf_err e = {0};
    for (size_t i = 0; i < nef; i++)
        if (nav_eval(h, p, ad, vq, cfg, efs[i], threads, &c->r[i], &c->w[i], &c->hops[i], &e))
            cli_fail(prog, "validation", &e);
}

/* Distance computations per query at recall@10 `target` on qs, linear
 * between measured points: the classic search over the ef grid (p NULL),
 * or a policy at each of its calibration points (skip and stop models);
 * NAN when no point reaches the target. */
static double held_work(const hnsw *h, const nav_policy *p, const route_qset *qs, const size_t *efs,
                        size_t nef, int threads, double target)
{
    hf_err e = {0};
    double r[NAV_MAX_CAL + MAX_EF], w[NAV_MAX_CAL + MAX_EF], hops;
    size_t n = 0;
    size_t npts = p && p->ncal ? p->ncal : nef;
    for (size_t i = 0; i < npts; i++) {
        nav_cfg c = {.skip = NAV_SKIP_NONE, .stop = NAV_STOP_EF};
        size_t ef = efs[i < nef ? i : nef - 1];
        if (p) {
            c.skip = p->fallback ? NAV_SKIP_NONE : NAV_SKIP_LEARNED;
            if (p->ncal) {
                c.stop = NAV_STOP_LEARNED;
                c.stop_p = p->cal_p[i];
                ef = p->cal_ef[i];
            }
        }
        if (nav_eval(h, p, NULL, qs, &c, ef, threads, &r[n], &w[n], &hops, &e))
            cli_fail(prog, "held-aside queries", &e);
        n++;
    }
    /* sort the points by recall (insertion: at most a few dozen) */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && r[j] < r[j - 1]; j--) {
            double t = r[j];
            r[j] = r[j - 1];
            r[j - 1] = t;
            t = w[j];
            w[j] = w[j - 1];
            w[j - 1] = t;
        }
    if (n && r[0] >= target)
        return w[0];
    for (size_t i = 1; i < n; i++)
        if (r[i - 1] <= target && target <= r[i] && r[i] > r[i - 1])
            return w[i - 1] + (w[i] - w[i - 1]) * (target - r[i - 1]) / (r[i] - r[i - 1]);
    return NAN;
}

static void print_row(const char *name, const curve *c, size_t n)
{
    fprintf(stderr, "nav-train:   %-18s", name);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "  %.4f %6.0f %4.0f", c->r[i], c->w[i], c->hops[i]);
    fprintf(stderr, "\n");
}

static void pack_curve(msgpack_packer *pk, const char *name, const curve *c, size_t n)
{
    frame_pack_str(pk, name);
    msgpack_pack_map(pk, 3);
    const double *v[3] = {c->r, c->w, c->hops};
    const char *k[3] = {"recall", "ndist", "hops"};
    for (int j = 0; j < 3; j++) {
        frame_pack_str(pk, k[j]);
        msgpack_pack_array(pk, (uint32_t)n);
        for (size_t i = 0; i < n; i++)
            msgpack_pack_double(pk, v[j][i]);
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"queries", required_argument, 0, 1},
                                         {"val-queries", required_argument, 0, 2},
                                         {"label-ef", required_argument, 0, 3},
                                         {"epochs", required_argument, 0, 4},
                                         {"lr", required_argument, 0, 5},
                                         {"ppo-iters", required_argument, 0, 6},
                                         {"ppo-epochs", required_argument, 0, 7},
                                         {"miss-cost", required_argument, 0, 8},
                                         {"init", required_argument, 0, 9},
                                         {"shots", required_argument, 0, 10},
                                         {"val-ef", required_argument, 0, 11},
                                         {"seed", required_argument, 0, 12},
                                         {"max-frame", required_argument, 0, 13},
                                         {"eps0", required_argument, 0, 14},
                                         {"ppo-queries", required_argument, 0, 15},
                                         {"train", required_argument, 0, 16},
                                         {"proj-dim", required_argument, 0, 17},
                                         {"dagger", required_argument, 0, 18},
                                         {"ewc", required_argument, 0, 40},
                                         {"replay", required_argument, 0, 41},
                                         {"distill", required_argument, 0, 42},
                                         {"reservoir", required_argument, 0, 43},
                                         {"holdout", required_argument, 0, 44},
                                         {"target", required_argument, 0, 45},
                                         {"rivals", no_argument, 0, 46},
                                         {"no-rivals", no_argument, 0, 47},
                                         {"threads", required_argument, 0, 't'},
                                         {"output", required_argument, 0, 'o'},
                                         CURVE_LONG_OPTIONS,
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    size_t nq = 4000, nval = 1000, epochs = 6, ppo_iters = 2, ppo_epochs = 2, shots = 50;
    size_t ppo_q = 1000, max_frame = 0, proj_r = 0, dagger = 0, reservoir = 1000, replay_n = 0;
    double ewc = 0, distill = 0, hold_frac = 0, target = 0.95;
    const char *replay_file = NULL, *hold_file = NULL;
    size_t hold_n = 0;
    int rivals = -1; /* -1: measured unless --init */
    size_t label_ef[MAX_EF] = {16, 32, 64, 128}, nlef = 4;
    size_t val_ef[MAX_EF] = {10, 16, 24, 32, 48, 64, 96, 128, 192, 256}, nef = 10;
    double lr = 0.003, miss_cost = 100, eps0 = 2.1;
    uint64_t seed = 42;
    const char *out_ep = "-", *init = NULL, *train_ep = NULL;
    int shots_set = 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = ncpu > 0 ? (int)ncpu : 1;
    curve_cfg wire = {0};
    int c;
    while ((c = getopt_long(argc, argv, "t:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 1: nq = cli_u64(prog, "--queries", optarg, 1, 10000000); break;
        case 2: nval = cli_u64(prog, "--val-queries", optarg, 1, 1000000); break;
        case 3: nlef = cli_u64_list(prog, "--label-ef", optarg, 1, 4094, label_ef, MAX_EF); break;
        case 4: epochs = cli_u64(prog, "--epochs", optarg, 0, 100000); break;
        case 5: lr = cli_f64(prog, "--lr", optarg, 1e-7, 10); break;
        case 6: ppo_iters = cli_u64(prog, "--ppo-iters", optarg, 0, 1000); break;
        case 7: ppo_epochs = cli_u64(prog, "--ppo-epochs", optarg, 1, 1000); break;
        case 8: miss_cost = cli_f64(prog, "--miss-cost", optarg, 0, 1e9); break;
        case 9: init = optarg; break;
        case 10:
            shots = cli_u64(prog, "--shots", optarg, 0, 10000000);
            shots_set = 1;
            break;
        case 11: nef = cli_u64_list(prog, "--val-ef", optarg, 1, 4094, val_ef, MAX_EF); break;
        case 12: seed = cli_u64(prog, "--seed", optarg, 0, UINT64_MAX); break;
        case 13: max_frame = cli_u64(prog, "--max-frame", optarg, 64, UINT64_MAX); break;
        case 14: eps0 = cli_f64(prog, "--eps0", optarg, 0, 100); break;
        case 15: ppo_q = cli_u64(prog, "--ppo-queries", optarg, 1, 10000000); break;
        case 16: train_ep = optarg; break;
        case 18: dagger = cli_u64(prog, "--dagger", optarg, 0, 20); break;
        case 17: proj_r = cli_u64(prog, "--proj-dim", optarg, 1, NAV_R_MAX); break;
        case 40: ewc = cli_f64(prog, "--ewc", optarg, 0, 1e9); break;
        case 41:
            if (optarg[0] >= '0' && optarg[0] <= '9' &&
                strspn(optarg, "0123456789") == strlen(optarg))
                replay_n = cli_u64(prog, "--replay", optarg, 1, 10000000);
            else
                replay_file = optarg;
            break;
        case 42: distill = cli_f64(prog, "--distill", optarg, 0, 1); break;
        case 43: reservoir = cli_u64(prog, "--reservoir", optarg, 0, 10000000); break;
        case 44:
            if (strspn(optarg, "0123456789") == strlen(optarg))
                hold_n = cli_u64(prog, "--holdout", optarg, 1, 10000000);
            else if (strspn(optarg, "0123456789.") == strlen(optarg))
                hold_frac = cli_f64(prog, "--holdout", optarg, 0.01, 0.9);
            else
                hold_file = optarg;
            break;
        case 45: target = cli_f64(prog, "--target", optarg, 0.5, 1); break;
        case 46: rivals = 1; break;
        case 47: rivals = 0; break;
        case 't': threads = (int)cli_u64(prog, "--threads", optarg, 1, 64); break;
        case 'o': out_ep = optarg; break;
        case 'h': usage(); return 0;
        default:
            if (!curve_cfg_take(&wire, c, optarg))
                cli_usage_error(prog, "unknown option");
            break;
        }
    }
    if (argc - optind > 1)
        cli_usage_error(prog, "one input at most");
    for (size_t i = 1; i < nef; i++)
        if (val_ef[i] <= val_ef[i - 1])
            cli_usage_error(prog, "--val-ef must increase");
    if ((ewc > 0 || replay_n || distill > 0) && !init)
        cli_usage_error(prog, "--ewc, --replay N and --distill start from a policy: give --init");
    if ((hold_n || hold_frac > 0 || hold_file) && !init)
        cli_usage_error(prog, "--holdout compares with the policy it replaces: give --init");
    if ((hold_n || hold_frac > 0) && !train_ep)
        cli_usage_error(prog, "--holdout N|F holds aside queries of --train: give --train");
    if (distill > 0 && !replay_n && !replay_file)
        cli_usage_error(prog, "--distill teaches on replayed queries: give --replay");
    const char *in_ep = optind < argc ? argv[optind] : "-";
    const char *in_name = strcmp(in_ep, "-") == 0 ? "stdin" : in_ep;
    hf_err e = {0};
    if (channel_curve_usage(&wire, (const char *const[]){in_ep, train_ep, init, hold_file}, 4,
                            &out_ep, 1, 0, 0, &e))
        cli_usage_error(prog, "%s", e.msg);
    channel_install_signal_cleanup();
    double t0 = now_seconds();

    /* --init naming the input: the policy is read with it, not twice */
    nav_policy *from = NULL;
    int init_is_input = init && strcmp(init, "-") != 0 && strcmp(init, in_ep) == 0;
    if (init && !init_is_input) {
        channel *ic = NULL;
        hnsw *ih = NULL;
        if (channel_open_in_curve(init, max_frame, &wire, &ic, &e) ||
            hnsw_load(ic, &ih, grab_policy, &from, &e))
            cli_fail(prog, init, &e);
        channel_destroy(&ic);
        hnsw_destroy(&ih);
    }

    channel *in = NULL;
    hnsw *h = NULL;
    frame_keep pt = {0};
    input_extra ix = {.pt = &pt, .from = init_is_input ? &from : NULL};
    if (channel_open_in_curve(in_ep, max_frame, &wire, &in, &e) ||
        hnsw_load(in, &h, keep_other, &ix, &e))
        cli_fail(prog, in_name, &e);
    channel_destroy(&in);
    if (init) {
        if (!from)
            hf_err_set(&e, HF_EDATA, "no nav-policy model frame (train one with nav-train)");
        else if (ewc > 0 && !from->mem.fisher)
            hf_err_set(&e, HF_EDATA,
                       "the nav-policy keeps no Fisher information, which --ewc "
                       "needs (retrain it with this nav-train)");
        else if (replay_n && !from->mem.nreplay)
            hf_err_set(&e, HF_EDATA,
                       "the nav-policy keeps no replay reservoir, which --replay N "
                       "needs (retrain it with this nav-train, or --replay FILE)");
        if (!from || e.code)
            cli_fail(prog, init, &e);
    }
    if (!hnsw_l2_space(h)) {
        hf_err_set(&e, HF_EDATA, "a nav-policy needs an l2 or cosine index, this one is %s",
                   metric_name(h->p.metric));
        cli_fail(prog, in_name, &e);
    }
    if (h->n < 50 || h->entry == HNSW_NONE) {
        hf_err_set(&e, HF_EDATA, "the index has %zu nodes: too few to train on", h->n);
        cli_fail(prog, in_name, &e);
    }

    nav_policy *p = NULL;
    /* the same index as --init's policy: its projection is kept (the MLPs'
     * inputs stay what they were trained on, and no PCA to compute) */
    int same = from && from->dim == h->dim && from->metric == h->p.metric &&
               from->fingerprint == nav_fingerprint(h) && (!proj_r || proj_r == from->r);
    if (!proj_r)
        proj_r = same ? from->r : nav_default_r(h->dim);
    if (proj_r > h->dim)
        cli_usage_error(prog, "--proj-dim %zu exceeds the index's dimension %zu", proj_r, h->dim);
    if (nav_new(h->dim, h->p.metric, proj_r, seed, &p, &e))
        cli_fail(prog, in_name, &e);
    if (same) {
        memcpy(p->mu->data, from->mu->data, nn_tensor_len(p->mu) * sizeof(float));
        memcpy(p->P->data, from->P->data, nn_tensor_len(p->P) * sizeof(float));
        p->n = from->n;
        p->fingerprint = from->fingerprint;
    } else if (nav_init_pca(p, h, 20000, seed, &e)) {
        cli_fail(prog, in_name, &e);
    }
    if (nav_bind(p, h, &e))
        cli_fail(prog, in_name, &e);
    if (from) {
        copy_mlp(&p->skip, &from->skip);
        copy_mlp(&p->stop, &from->stop);
        p->skip_logit = from->skip_logit;
        nav_sync(p);
    }
    if (shots_set)
        nq = shots;

    route_qset *tq = NULL, *vq = NULL, *hq = NULL;
    if (hold_file) {
        float *rows = NULL;
        size_t nh = read_queries(hold_file, &wire, h->dim, max_frame, &rows);
        if (nh == 0 || route_qset_from_vectors(h, rows, nh, 10, &hq, &e)) {
            if (nh == 0)
                hf_err_set(&e, HF_EDATA, "no queries to hold aside");
            cli_fail(prog, hold_file, &e);
        }
        free(rows);
    }
    if (train_ep) { /* the caller's queries: training first, validation last */
        float *all = NULL;
        size_t na = read_queries(train_ep, &wire, h->dim, max_frame, &all);
        size_t nh = hold_frac > 0 ? (size_t)(hold_frac * (double)na) : hold_n;
        if (na < 8 + nh) {
            hf_err_set(&e, HF_EDATA, "%zu training queries%s: too few (8 at least)",
                       na - (na < nh ? na : nh), nh ? " after the held-aside ones" : "");
            cli_fail(prog, train_ep, &e);
        }
        if (nh) { /* the last nh: neither trained nor validated on */
            na -= nh;
            if (route_qset_from_vectors(h, all + na * h->dim, nh, 10, &hq, &e))
                cli_fail(prog, train_ep, &e);
        }
        nq = shots_set ? shots : SIZE_MAX;
        if (route_qsets_split(h, all, na, &nq, &nval, 10, &tq, &vq, &e))
            cli_fail(prog, train_ep, &e);
        free(all);
    } else if (route_qsets_loo(h, &nq, &nval, seed ^ 0x9e37, 10, &tq, &vq, &e)) {
        /* leave-one-out base vectors: training, then validation */
        cli_fail(prog, in_name, &e);
    }
    const route_qset *sq = tq ? tq : vq; /* the scale: training queries when there are any */
    double ds = 0;
    for (size_t i = 0; i < sq->n; i++) {
        uint32_t t = sq->truth[i * sq->k + sq->k - 1];
        ds += t < h->n ? hnsw_space_dist(h, sq->stored + i * h->dim, t) : 0;
    }
    if (!from || nq)
        p->dscale = ds > 0 ? (float)(ds / (double)sq->n) : 1.0f;
    else
        p->dscale = from->dscale;

    /* the baselines on the validation queries */
    double t1 = now_seconds();
    nav_cfg classic = {.skip = NAV_SKIP_NONE, .stop = NAV_STOP_EF};
    curve cc, ca, cb, cp;
    memset(&cb, 0, sizeof cb);
    memset(&cp, 0, sizeof cp);
    eval_curve(h, NULL, NULL, vq, &classic, val_ef, nef, threads, &cc);
    /* the non-learned rivals, for the table (incremental training skips
     * them unless asked: they do not change what is written) */
    if (rivals < 0)
        rivals = !init;
    curve cad;
    memset(&cad, 0, sizeof cad);
    memset(&ca, 0, sizeof ca);
    nav_adsamp *ad = NULL;
    if (rivals && nav_adsamp_new(h, (float)eps0, seed, &ad, &e))
        cli_fail(prog, in_name, &e);
    nav_cfg adcfg = {.skip = NAV_SKIP_ADSAMPLING, .stop = NAV_STOP_EF};
    if (rivals)
        eval_curve(h, NULL, ad, vq, &adcfg, val_ef, nef, threads, &ca);
    nav_adsamp_destroy(&ad);
    /* the adaptive stop at the largest ef, one point per patience */
    for (size_t i = 0; rivals && i < NPAT; i++) {
        nav_cfg a = {.skip = NAV_SKIP_NONE, .stop = NAV_STOP_ADAPTIVE, .patience = patience[i]};
        if (nav_eval(h, NULL, NULL, vq, &a, val_ef[nef - 1], threads, &cad.r[i], &cad.w[i],
                     &cad.hops[i], &e))
            cli_fail(prog, "validation", &e);
    }
    double t_base = now_seconds() - t1;

    /* replayed past queries: the policy's reservoir or a file */
    route_qset *rq = NULL;
    if ((replay_n || replay_file) && route_qset_replay(h, from ? &from->mem : NULL, replay_n,
                                                       replay_file, max_frame, 10, &rq, &e))
        cli_fail(prog, replay_file ? replay_file : init, &e);
    /* EWC: the previous tasks' Fisher around the weights we start from */
    nn_ewc *ew_skip = NULL, *ew_stop = NULL;
    const float *fisher0 = from ? from->mem.fisher : NULL;
    if (fisher0 && from->mem.nfisher != nav_mlp_scalars(&p->skip) + nav_mlp_scalars(&p->stop)) {
        hf_err_set(&e, HF_EDATA, "the nav-policy's MLPs differ in shape from this one's");
        cli_fail(prog, init, &e);
    }
    if (nav_ewc_new(&p->skip, fisher0, &ew_skip, &e) ||
        nav_ewc_new(&p->stop, fisher0 ? fisher0 + nav_mlp_scalars(&p->skip) : NULL, &ew_stop, &e))
        cli_fail(prog, in_name, &e);
    const nn_ewc *pen_skip = ewc > 0 ? ew_skip : NULL, *pen_stop = ewc > 0 ? ew_stop : NULL;

    /* cloning */
    t1 = now_seconds();
    nav_trace tr = {0};
    size_t skip_cap = 3000000, stop_cap = 1000000;
    float loss_skip = 0, loss_stop = 0;
    if (nav_trace_init(&tr, skip_cap, stop_cap, &e))
        cli_fail(prog, in_name, &e);
    if (tq) {
        if (nav_collect(h, p, tq, &classic, label_ef, nlef, NULL, 0, &tr, &e))
            cli_fail(prog, in_name, &e);
        size_t b_skip = tr.nskip, b_stop = tr.nstop;
        if (rq && nav_collect(h, p, rq, &classic, label_ef, nlef, NULL, 0, &tr, &e))
            cli_fail(prog, in_name, &e);
        /* distillation: on replayed queries the old policy's probabilities
         * join the labels (BCE is linear in its target: the weighted sum of
         * the two losses) */
        for (size_t i = b_skip; distill > 0 && i < tr.nskip; i++) {
            double t = 1.0 / (1.0 + exp(-nav_mlp_logit(&from->skip, tr.skip_x + i * p->skip.f)));
            tr.skip_y[i] = (float)((1 - distill) * tr.skip_y[i] + distill * t);
        }
        for (size_t i = b_stop; distill > 0 && i < tr.nstop; i++) {
            double t = 1.0 / (1.0 + exp(-nav_mlp_logit(&from->stop, tr.stop_x + i * p->stop.f)));
            tr.stop_y[i] = (float)((1 - distill) * tr.stop_y[i] + distill * t);
        }
        size_t ep_skip = from ? (epochs < 3 ? epochs : 3) : epochs;
        if (nav_fit_ewc(&p->skip, tr.skip_x, tr.skip_y, NULL, tr.nskip, ep_skip, (float)lr, seed,
                        pen_skip, (float)ewc, &loss_skip, &e) ||
            nav_fit_ewc(&p->stop, tr.stop_x, tr.stop_y, NULL, tr.nstop, ep_skip, (float)lr,
                        seed + 1, pen_stop, (float)ewc, &loss_stop, &e))
            cli_fail(prog, in_name, &e);
        nav_sync(p);
        /* DAgger: label the states the learned skip itself leads to (every
         * neighbour still measured for its label), refit on all samples */
        nav_cfg own = {.skip = NAV_SKIP_LEARNED, .stop = NAV_STOP_EF};
        for (size_t d = 0; d < dagger && !tr.full; d++) {
            p->skip_logit = logf(0.1f / 0.9f);
            if (nav_collect(h, p, tq, &own, label_ef, nlef, NULL, 0, &tr, &e) ||
                nav_fit_ewc(&p->skip, tr.skip_x, tr.skip_y, NULL, tr.nskip, ep_skip, (float)lr,
                            seed + 2 + d, pen_skip, (float)ewc, &loss_skip, &e) ||
                nav_fit_ewc(&p->stop, tr.stop_x, tr.stop_y, NULL, tr.nstop, ep_skip, (float)lr,
                            seed + 3 + d, pen_stop, (float)ewc, &loss_stop, &e))
                cli_fail(prog, in_name, &e);
            nav_sync(p);
        }
    }
    double t_clone = now_seconds() - t1;

    /* the skip threshold: fewest distance computations at equal recall */
    nav_cfg navc = {.skip = NAV_SKIP_LEARNED, .stop = NAV_STOP_EF};
    double best = INFINITY;
    float best_logit = p->skip_logit;
    curve tmp;
    int have_cb = 0; /* the chosen threshold's curve, measured in the search */
    if (!from || nq) {
        /* from a policy: its threshold and the grid's neighbours of it */
        int lo = 0, hi = NTHR - 1;
        if (from) {
            int near = 0;
            for (int i = 1; i < NTHR; i++)
                if (fabsf(logf(skip_probs[i] / (1 - skip_probs[i])) - from->skip_logit) <
                    fabsf(logf(skip_probs[near] / (1 - skip_probs[near])) - from->skip_logit))
                    near = i;
            lo = near > 0 ? near - 1 : 0;
            hi = near < NTHR - 1 ? near + 1 : NTHR - 1;
        }
        for (int i = lo; i <= hi; i++) {
            p->skip_logit = logf(skip_probs[i] / (1 - skip_probs[i]));
            eval_curve(h, p, NULL, vq, &navc, val_ef, nef, threads, &tmp);
            double ratio = nav_work_ratio(cc.r, cc.w, nef, tmp.r, tmp.w, nef);
            if (ratio < best) {
                best = ratio;
                best_logit = p->skip_logit;
                cb = tmp;
                have_cb = 1;
            }
        }
        p->skip_logit = best_logit;
    }
    if (!have_cb)
        eval_curve(h, p, NULL, vq, &navc, val_ef, nef, threads, &cb);
    double ratio_bc = nav_work_ratio(cc.r, cc.w, nef, cb.r, cb.w, nef);

    /* PPO on top of cloning, kept only when it measures better */
    t1 = now_seconds();
    double reward[2] = {0, 0}, ratio_ppo = NAN;
    int ran_ppo = 0;
    if (ppo_iters && tq) {
        float *snap = malloc(nav_mlp_scalars(&p->skip) * sizeof *snap);
        route_qset *pq = NULL;
        size_t npq = tq->n < ppo_q ? tq->n : ppo_q;
        if (!snap || (train_ep ? route_qset_from_vectors(h, tq->raw, npq, 10, &pq, &e)
                               : route_qset_new(h, tq->self, npq, 10, &pq, &e)))
            cli_fail(prog, in_name, &e);
        snapshot(&p->skip, snap, 0);
        nav_ppo_cfg pc = {.iters = ppo_iters,
                          .epochs = ppo_epochs,
                          .lr = (float)lr / 3,
                          .clip = 0.2f,
                          .lambda = 0.95f,
                          .miss_cost = (float)miss_cost,
                          .efs = label_ef,
                          .nef = nlef,
                          .seed = seed + 7};
        if (nav_ppo(p, h, pq, &pc, reward, &e))
            cli_fail(prog, in_name, &e);
        eval_curve(h, p, NULL, vq, &navc, val_ef, nef, threads, &cp);
        ratio_ppo = nav_work_ratio(cc.r, cc.w, nef, cp.r, cp.w, nef);
        ran_ppo = 1;
        if (ratio_ppo < ratio_bc) {
            p->ppo = 1;
        } else {
            snapshot(&p->skip, snap, 1);
            nav_sync(p);
        }
        free(snap);
        route_qset_destroy(&pq);
    }
    double t_ppo = now_seconds() - t1;
    double ratio = p->ppo ? ratio_ppo : ratio_bc;
    p->fallback = !(ratio < 1.0);

    /* --recall calibration: ef_max reaches 0.997 with the written policy if the
     * grid can */
    t1 = now_seconds();
    p->ef_max = val_ef[nef - 1];
    const curve *wc = p->fallback ? &cc : p->ppo ? &cp : &cb;
    for (size_t i = 0; i < nef; i++)
        if (wc->r[i] >= 0.997) {
            p->ef_max = val_ef[i];
            break;
        }
    nav_cfg rc_cfg = {.skip = p->fallback ? NAV_SKIP_NONE : NAV_SKIP_LEARNED,
                      .stop = NAV_STOP_LEARNED};
    double cal_rec[NCAL], cal_work[NCAL];
    p->ncal = 0;
    for (int i = 0; i < NCAL && (tq || from); i++) {
        /* the beams that reach the target without stopping early, the
         * first three; on each the smallest threshold whose recall reaches
         * it (bisection); the cheapest of them is kept. From a policy of
         * this index, two at most: the first that reaches the target and
         * the one the policy chose (the cheapest was the first or the
         * policy's in the runs we measured), a third of the work */
        double bw = INFINITY, br = 0;
        float bp = 1.0f;
        uint32_t bef = (uint32_t)val_ef[nef - 1];
        int tried = 0;
        int known = from && from->ncal == NCAL && from->cal_r[i] == cal_grid[i];
        for (size_t j = 0; j < nef && tried < 3; j++) {
            if (wc->r[j] < cal_grid[i])
                continue;
            if (known && tried && val_ef[j] != from->cal_ef[i])
                continue;
            tried++;
            /* from a policy of this index: bisect first in a window around
             * its threshold for this target (3 steps give the resolution
             * of 6 over [0.3, 1]); the whole range when none in it reaches
             * the target */
            int narrow = from && from->ncal == NCAL && from->cal_r[i] == cal_grid[i];
            float lo = narrow ? fmaxf(0.3f, from->cal_p[i] - 0.06f) : 0.3f;
            float hi = narrow ? fminf(1.0f, from->cal_p[i] + 0.06f) : 1.0f;
            double r = 0, w = 0, hp = 0, rh = wc->r[j], whi = wc->w[j];
            int found = 0;
            for (int it = 0; it < (narrow ? 3 : 6); it++) {
                rc_cfg.stop_p = (lo + hi) / 2;
                if (nav_eval(h, p, NULL, vq, &rc_cfg, val_ef[j], threads, &r, &w, &hp, &e))
                    cli_fail(prog, "calibration", &e);
                if (r < cal_grid[i]) {
                    lo = rc_cfg.stop_p;
                } else {
                    hi = rc_cfg.stop_p;
                    rh = r;
                    whi = w;
                    found = 1;
                }
                if (narrow && it == 2 && !found) { /* outside the window: all of it */
                    narrow = 0;
                    lo = 0.3f;
                    hi = 1.0f;
                    it = -1;
                }
            }
            if (whi < bw) {
                bw = whi;
                br = rh;
                bp = hi;
                bef = (uint32_t)val_ef[j];
            }
        }
        if (!tried) { /* out of the grid's reach: the widest beam, no early stop */
            bef = (uint32_t)val_ef[nef - 1];
            br = wc->r[nef - 1];
            bw = wc->w[nef - 1];
        }
        cal_rec[p->ncal] = br;
        cal_work[p->ncal] = bw;
        p->cal_r[p->ncal] = cal_grid[i];
        p->cal_p[p->ncal] = bp;
        p->cal_ef[p->ncal] = bef;
        p->ncal++;
    }
    double t_cal = now_seconds() - t1;

    /* the table */
    fprintf(stderr,
            "nav-train: validation on %zu held-aside %s (never trained on); recall@10 / "
            "distance computations / hops per query:\n",
            vq->n, train_ep ? "queries of --train" : "base vectors (leave-one-out)");
    fprintf(stderr, "nav-train:   %-18s", "ef");
    for (size_t i = 0; i < nef; i++)
        fprintf(stderr, " %17zu", val_ef[i]);
    fprintf(stderr, "\n");
    print_row("classic", &cc, nef);
    if (rivals)
        print_row("adsampling", &ca, nef);
    print_row(from && !nq ? "init (no adapt.)" : "cloning", &cb, nef);
    if (ran_ppo)
        print_row("cloning+ppo", &cp, nef);
    if (rivals) {
        fprintf(stderr, "nav-train:   adaptive stop at ef %zu, patience", val_ef[nef - 1]);
        for (int i = 0; i < NPAT; i++)
            fprintf(stderr, "  %u: %.4f %.0f %.0f", patience[i], cad.r[i], cad.w[i], cad.hops[i]);
        fprintf(stderr, "\n");
    } else {
        fprintf(stderr, "nav-train:   (ADSampling and the adaptive stop not measured: --rivals)\n");
    }
    double ratio_ad = rivals ? nav_work_ratio(cc.r, cc.w, nef, ca.r, ca.w, nef) : NAN;
    fprintf(stderr,
            "nav-train: distance computations at equal recall / classic's: adsampling %.3f, "
            "cloning %.3f%s",
            ratio_ad, ratio_bc, ran_ppo ? ", cloning+ppo " : "");
    if (ran_ppo)
        fprintf(stderr, "%.3f (mean episode reward %.1f -> %.1f)", ratio_ppo, reward[0], reward[1]);
    fprintf(stderr, "\n");
    fprintf(stderr, "nav-train: written: %s, skip threshold p >= %.3f%s\n",
            p->ppo    ? "cloning + PPO (PPO measured better)"
            : ran_ppo ? "cloning alone (PPO measured no better)"
                      : "cloning alone",
            1.0 / (1.0 + exp(-p->skip_logit)),
            p->fallback ? "; it does not beat the classic search at equal recall on the "
                          "validation queries: the frame says fallback, query --nav searches "
                          "classically"
                        : "");
    if (p->ncal) {
        fprintf(stderr, "nav-train: --recall calibration (asked: ef, measured recall, distance "
                        "computations):");
        for (size_t i = 0; i < p->ncal; i++)
            fprintf(stderr, "  %.3f: %u %.4f %.0f", p->cal_r[i], p->cal_ef[i], cal_rec[i],
                    cal_work[i]);
        fprintf(stderr, "\n");
    }

    /* what the next training keeps of this one: the Fisher of this task
     * added to the previous tasks', and the reservoir of training queries */
    if (tq && tr.nskip && tr.nstop) {
        if (nav_fisher_add(&p->skip, ew_skip, tr.skip_x, tr.skip_y, tr.nskip, seed + 11, &e) ||
            nav_fisher_add(&p->stop, ew_stop, tr.stop_x, tr.stop_y, tr.nstop, seed + 12, &e) ||
            nn_memory_set_fisher(&p->mem, (nn_ewc *[]){ew_skip, ew_stop}, 2,
                                 (from ? from->mem.tasks : 0) + 1, &e))
            cli_fail(prog, in_name, &e);
    } else if (fisher0 && nn_memory_set_fisher(&p->mem, (nn_ewc *[]){ew_skip, ew_stop}, 2,
                                               from->mem.tasks, &e)) {
        cli_fail(prog, in_name, &e);
    }
    if (nn_memory_reservoir(&p->mem, from ? &from->mem : NULL, tq ? tq->raw : NULL, tq ? tq->n : 0,
                            h->dim, reservoir, seed + 13, &e))
        cli_fail(prog, in_name, &e);
    if (from)
        fprintf(stderr,
                "nav-train: continual: EWC %s (lambda %g, Fisher of %u earlier task%s), %zu "
                "replayed queries%s%s, distillation %g; reservoir kept: %zu of %llu training "
                "queries seen\n",
                ewc > 0 ? "on" : "off", ewc, from->mem.tasks, from->mem.tasks == 1 ? "" : "s",
                rq ? rq->n : 0,
                replay_file ? " from "
                : rq        ? " from the policy's reservoir"
                            : "",
                replay_file ? replay_file : "", distill, p->mem.nreplay,
                (unsigned long long)p->mem.replay_seen);

    /* --holdout: never replace a policy with one that measures worse */
    double held[3] = {NAN, NAN, NAN}; /* classic, --init policy, new policy */
    int refused = 0;
    if (hq) {
        if (nav_bind(from, h, &e)) {
            hf_err_prefix(&e, "--holdout compares on this index");
            cli_fail(prog, init, &e);
        }
        held[0] = held_work(h, NULL, hq, val_ef, nef, threads, target);
        held[1] = held_work(h, from, hq, val_ef, nef, threads, target);
        held[2] = held_work(h, p, hq, val_ef, nef, threads, target);
        int better = !isnan(held[2]) && (isnan(held[1]) || held[2] <= held[1]);
        fprintf(stderr,
                "nav-train: held-aside: %zu queries (never trained or validated on), distance "
                "computations at recall@10 %.3f: classic %.1f, the policy replaced %.1f (gain "
                "%.1f%%), the new one %.1f (gain %.1f%%): %s\n",
                hq->n, target, held[0], held[1], 100 * (1 - held[1] / held[0]), held[2],
                100 * (1 - held[2] / held[0]),
                better ? "written" : "no better, nothing written (exit 3)");
        refused = better ? 0 : 3;
    }

    if (refused == 0) {
        /* validation record */
        msgpack_sbuffer xs;
        msgpack_sbuffer_init(&xs);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &xs, msgpack_sbuffer_write);
        frame_pack_str(&pk, "validation");
        msgpack_pack_map(&pk, 6 + (ran_ppo ? 1 : 0) + (rivals ? 1 : 0));
        frame_pack_str(&pk, "queries");
        msgpack_pack_uint64(&pk, vq->n);
        frame_pack_str(&pk, "training_queries");
        msgpack_pack_uint64(&pk, nq);
        frame_pack_str(&pk, "ef");
        msgpack_pack_array(&pk, (uint32_t)nef);
        for (size_t i = 0; i < nef; i++)
            msgpack_pack_uint64(&pk, val_ef[i]);
        frame_pack_str(&pk, "ratio");
        msgpack_pack_map(&pk, 3);
        frame_pack_str(&pk, "adsampling");
        msgpack_pack_double(&pk, isnan(ratio_ad) ? -1 : ratio_ad);
        frame_pack_str(&pk, "cloning");
        msgpack_pack_double(&pk, isnan(ratio_bc) ? -1 : ratio_bc);
        frame_pack_str(&pk, "cloning+ppo");
        msgpack_pack_double(&pk, isnan(ratio_ppo) ? -1 : ratio_ppo);
        pack_curve(&pk, "classic", &cc, nef);
        if (rivals)
            pack_curve(&pk, "adsampling", &ca, nef);
        pack_curve(&pk, "cloning", &cb, nef);
        if (ran_ppo)
            pack_curve(&pk, "cloning+ppo", &cp, nef);
        nn_extra x = {xs.data, xs.size, 1};

        channel *out = NULL;
        frame_out fo;
        frame_out_init(&fo);
        msgpack_sbuffer_clear(&fo.sb);
        if (nav_pack(p, &x, &fo.sb, &e) || channel_open_out_curve(out_ep, &wire, &out, &e) ||
            hnsw_save_with_model(h, out, &fo, &pt, &e))
            cli_fail(prog, out_ep, &e);
        msgpack_sbuffer_destroy(&xs);
        frame_out_free(&fo);
        channel_destroy(&out);
    }
    fprintf(stderr,
            "nav-train: %zu nodes, %zu training queries, %zu skip and %zu stop samples (loss "
            "%.4f, %.4f); baselines %.1f s, cloning %.1f s, PPO %.1f s, calibration %.1f s, "
            "total %.1f s\n",
            h->n, nq, tr.nskip, tr.nstop, loss_skip, loss_stop, t_base, t_clone, t_ppo, t_cal,
            now_seconds() - t0);
    nav_trace_free(&tr);
    nn_ewc_destroy(&ew_skip);
    nn_ewc_destroy(&ew_stop);
    route_qset_destroy(&rq);
    route_qset_destroy(&hq);
    route_qset_destroy(&tq);
    route_qset_destroy(&vq);
    nav_destroy(&p);
    nav_destroy(&from);
    hnsw_destroy(&h);
    return refused;
}
