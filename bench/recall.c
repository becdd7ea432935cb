/*
 * recall - recall@k of result streams against ground truth, with the
 * ann-benchmarks definition: a returned item is a hit when its distance is
 * within the true k-th distance + epsilon (1e-3). For l2 the comparison is on
 * Euclidean distance (the square root of what the streams carry), as in
 * ann-benchmarks. Also prints id-overlap recall for reference.
 *
 * usage: recall --gt GT.frames [-k K] [--epsilon E] RESULTS.frames...
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "results.h"

static const char *prog = "recall";

static double dist_for_recall(const char *metric, float d)
{
    return strcmp(metric, "l2") == 0 ? sqrt(d > 0 ? d : 0) : d;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"gt", required_argument, 0, 'g'},
                                         {"epsilon", required_argument, 0, 1},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *gt_path = NULL;
    size_t k = 10;
    double eps = 1e-3;
    int c;
    while ((c = getopt_long(argc, argv, "g:k:h", opts, NULL)) != -1) {
        switch (c) {
        case 'g': gt_path = optarg; break;
        case 'k': k = cli_u64(prog, "-k", optarg, 1, 100000); break;
        case 1: eps = cli_f64(prog, "--epsilon", optarg, 0, 1e30); break;
        case 'h':
            printf("usage: recall --gt GT.frames [-k K] [--epsilon E] RESULTS.frames...\n"
                   "Prints 'recall@K R' per results file (ann-benchmarks definition:\n"
                   "hit = distance <= true k-th distance + E, default 1e-3), then the\n"
                   "id-overlap recall in parentheses.\n");
            return 0;
        default: cli_usage_error(prog, "unknown option");
        }
    }
    if (!gt_path || optind >= argc)
        cli_usage_error(prog, "need --gt and at least one results file");
    hf_err e = {0};
    results gt;
    if (results_read(gt_path, &gt, &e))
        cli_fail(prog, gt_path, &e);
    if (gt.k < k)
        cli_usage_error(prog, "ground truth has only %zu neighbours per query", gt.k);
    for (int a = optind; a < argc; a++) {
        results r;
        if (results_read(argv[a], &r, &e))
            cli_fail(prog, argv[a], &e);
        if (r.nq != gt.nq) {
            hf_err_set(&e, HF_EDATA, "%zu queries answered, ground truth has %zu", r.nq, gt.nq);
            cli_fail(prog, argv[a], &e);
        }
        double hits = 0, idhits = 0, denom = 0;
        for (size_t q = 0; q < gt.nq; q++) {
            /* a filtered query may have fewer than k true neighbours: it
             * asks for all of them (and any extra answer is no hit) */
            size_t kq = gt.found[q] < k ? gt.found[q] : k;
            denom += (double)kq;
            if (kq == 0)
                continue;
            double thr = dist_for_recall(gt.metric, gt.dists[q * gt.k + kq - 1]) + eps;
            size_t n = r.found[q] < kq ? r.found[q] : kq;
            for (size_t i = 0; i < n; i++) {
                if (dist_for_recall(gt.metric, r.dists[q * r.k + i]) <= thr)
                    hits++;
                for (size_t j = 0; j < kq; j++)
                    if (r.ids[q * r.k + i] == gt.ids[q * gt.k + j]) {
                        idhits++;
                        break;
                    }
            }
        }
        if (denom == 0)
            denom = 1;
        printf("recall@%zu %.4f (id overlap %.4f) %s\n", k, hits / denom, idhits / denom, argv[a]);
        results_free(&r);
    }
    results_free(&gt);
    return 0;
}
