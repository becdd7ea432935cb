/*
 * graph-build - read a vector frame stream, build a classic HNSW graph and
 * write the index stream (to stdout or atomically to a file).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "channel.h"
#include "cli.h"
#include "filt.h"
#include "hnsw.h"
#include "hnsw_ids.h"
#include "hnsw_io.h"
#include "progress.h"
#include "quant.h"
#include "vecstream.h"

static const char *prog = "graph-build";

static void usage(void)
{
    printf("usage: graph-build [options] [INPUT]\n"
           "Build an HNSW index from a vector frame stream (stdin by default).\n\n"
           "  -M N                  links per node on upper levels (default 16)\n"
           "      --M0 N            links per node on level 0 (default 2*M)\n"
           "      --ef-construction N  beam width while building (default 200)\n"
           "      --metric NAME     l2 (squared, default), ip, cosine, l1\n"
           "  -t, --threads N       insertion threads (default: all cores)\n"
           "      --seed S          level draws (default 42); one thread + one seed\n"
           "                        gives the same index every time\n"
           "      --no-permute      keep the input's dimension order (by default stored\n"
           "                        dimensions are ordered by decreasing variance, which\n"
           "                        lets L2 search stop reading a vector early)\n"
           "      --compress KIND   also store codes for traversal: f16, int8, pq8, pq4,\n"
           "                        binary (query re-ranks with exact distances)\n"
           "      --preset NAME     classic (default) or speed: also store the rotation of\n"
           "                        the row layout (each node's row holds its vector and\n"
           "                        1-bit codes of its neighbours; query searches it with\n"
           "                        batched estimates and exact answers; l2 and cosine)\n"
           "      --max-dim N       refuse dimensions above N (default 65536)\n"
           "      --max-frame BYTES refuse frames larger than this (default 256 MiB)\n"
           "  -o, --output EP       - (stdout, default), a file (atomic), tcp://, "
           "ipc://\n" CURVE_HELP_STREAMS "  -h, --help            this text\n\n"
           "Prints build time, nodes, levels and memory on stderr.\n");
}

static void on_progress(size_t done, size_t total, void *arg)
{
    progress_update(arg, done, total);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"M0", required_argument, 0, 1},        {"ef-construction", required_argument, 0, 2},
        {"metric", required_argument, 0, 3},    {"threads", required_argument, 0, 't'},
        {"seed", required_argument, 0, 4},      {"max-dim", required_argument, 0, 5},
        {"max-frame", required_argument, 0, 6}, {"output", required_argument, 0, 'o'},
        {"compress", required_argument, 0, 7},  {"no-permute", no_argument, 0, 8},
        {"preset", required_argument, 0, 9},    CURVE_LONG_OPTIONS,
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    hnsw_params p = {.M = 16, .ef_construction = 200, .seed = 42, .metric = METRIC_L2};
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = ncpu > 0 ? (int)ncpu : 1;
    uint64_t max_dim = 0, max_frame = 0;
    const char *out_ep = "-";
    quant_kind compress = QUANT_NONE;
    int permute = 1, speed = 0;
    hf_err e = {0};
    int c;
    curve_cfg cc = {0};
    while ((c = getopt_long(argc, argv, "M:t:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'M': p.M = (uint32_t)cli_u64(prog, "-M", optarg, 2, 1024); break;
        case 1: p.M0 = (uint32_t)cli_u64(prog, "--M0", optarg, 2, 4096); break;
        case 2:
            p.ef_construction = (uint32_t)cli_u64(prog, "--ef-construction", optarg, 1, 100000);
            break;
        case 3:
            if (metric_parse(optarg, &p.metric, &e))
                cli_usage_error(prog, "%s", e.msg);
            break;
        case 't': threads = (int)cli_u64(prog, "--threads", optarg, 1, 1024); break;
        case 4: p.seed = cli_u64(prog, "--seed", optarg, 0, UINT64_MAX); break;
        case 5: max_dim = cli_u64(prog, "--max-dim", optarg, 1, 1 << 24); break;
        case 6: max_frame = cli_u64(prog, "--max-frame", optarg, 64, UINT64_MAX); break;
        case 7:
            if (quant_parse(optarg, &compress, &e))
                cli_usage_error(prog, "%s", e.msg);
            break;
        case 8: permute = 0; break;
        case 9:
            if (strcmp(optarg, "speed") == 0)
                speed = 1;
            else if (strcmp(optarg, "classic") == 0)
                speed = 0;
            else
                cli_usage_error(prog, "unknown preset '%s' (expected classic or speed)", optarg);
            break;
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
    if (p.M0 && p.M0 < p.M)
        cli_usage_error(prog, "--M0 must be at least M");
    if (speed && compress != QUANT_NONE)
        cli_usage_error(prog, "--preset speed and --compress exclude each other");
    if (speed && p.metric != METRIC_L2 && p.metric != METRIC_COSINE)
        cli_usage_error(prog, "--preset speed needs --metric l2 or cosine");
    hnsw_params_defaults(&p);
    const char *in_ep = optind < argc ? argv[optind] : "-";
    const char *in_name = strcmp(in_ep, "-") == 0 ? "stdin" : in_ep;
    if (channel_curve_usage(&cc, &in_ep, 1, &out_ep, 1, 0, 0, &e))
        cli_usage_error(prog, "%s", e.msg);
    channel_install_signal_cleanup();

    channel *in = NULL, *out = NULL;
    if (channel_open_in_curve(in_ep, max_frame, &cc, &in, &e))
        cli_fail(prog, in_name, &e);
    vecstream vs;
    if (vecstream_open(&vs, in, max_dim, &e))
        cli_fail(prog, in_name, &e);
    hnsw *h = NULL;
    if (hnsw_new(&p, vs.dim, &h, &e))
        cli_fail(prog, in_name, &e);
    /* reserve for the declared count, capped at 1 GiB: a header's claim must
     * not buy memory the frames never fill */
    size_t cap = ((size_t)1 << 30) / h->node_bytes;
    if (vs.count_hint && hnsw_reserve(h, vs.count_hint < cap ? (size_t)vs.count_hint : cap, &e))
        cli_fail(prog, in_name, &e);
    const float *rows;
    size_t n;
    uint64_t first;
    int rc;
    hnsw_ids *ids = NULL;    /* external ids, when the vectors frames carry them */
    filt_labels *lab = NULL; /* labels, likewise */
    while ((rc = vecstream_next(&vs, &rows, &n, &first, &e)) == 0) {
        if (first == 0 && vs.batch_has_ids && hnsw_ids_new(&ids, &e))
            cli_fail(prog, in_name, &e);
        if (!vs.batch_has_ids != !ids) {
            hf_err_set(&e, HF_EDATA, "frame %llu: ids on some vectors frames but not others",
                       (unsigned long long)channel_frames(in));
            cli_fail(prog, in_name, &e);
        }
        for (size_t i = 0; ids && i < n; i++)
            if (hnsw_ids_bind(ids, (uint32_t)(first + i), vs.ids[i], &e)) {
                hf_err_prefix(&e, "frame %llu", (unsigned long long)channel_frames(in));
                cli_fail(prog, in_name, &e);
            }
        if (first == 0 && vs.batch_has_labels && filt_labels_new(&lab, &e))
            cli_fail(prog, in_name, &e);
        if (!vs.batch_has_labels != !lab) {
            hf_err_set(&e, HF_EDATA, "frame %llu: labels on some vectors frames but not others",
                       (unsigned long long)channel_frames(in));
            cli_fail(prog, in_name, &e);
        }
        if (lab && filt_wire_apply(lab, (uint32_t)first, vs.labels, vs.labels_len, n, &e)) {
            hf_err_prefix(&e, "frame %llu", (unsigned long long)channel_frames(in));
            cli_fail(prog, in_name, &e);
        }
        if (hnsw_append(h, rows, n, NULL, &e))
            cli_fail(prog, in_name, &e);
    }
    if (rc != HF_EOF)
        cli_fail(prog, in_name, &e);
    vecstream_close(&vs);
    channel_destroy(&in);

    /* Open the output only once the input is known good: no output file on bad input. */
    if (channel_open_out_curve(out_ep, &cc, &out, &e))
        cli_fail(prog, out_ep, &e);
    progress pr;
    progress_start(&pr, "graph-build");
    double t0 = now_seconds();
    /* dimensions by variance first: the build's own searches then stop
     * reading far candidates early too (the graph is the same up to rounding) */
    if (permute && hnsw_permute_dims(h, &e))
        cli_fail(prog, in_name, &e);
    if (hnsw_build(h, 0, threads, on_progress, &pr, &e))
        cli_fail(prog, in_name, &e);
    progress_done(&pr);
    if (compress != QUANT_NONE && hnsw_codes_build(h, compress, p.seed, &e))
        cli_fail(prog, in_name, &e);
    /* the rows are rebuilt by query at load (after renumbering); building
     * them here too times the codes with the build and checks they fit */
    if (speed && (hnsw_rows_plan(h, p.seed, &e) || hnsw_rows_build(h, threads, &e)))
        cli_fail(prog, in_name, &e);
    double t_build = now_seconds() - t0;
    if (hnsw_save_body(h, out, &e) || (ids && hnsw_ids_save(ids, h->n, out, &e)) ||
        (lab && filt_labels_save(lab, h->n, out, &e)) || channel_send_end(out, h->n, &e) ||
        channel_commit(out, &e))
        cli_fail(prog, out_ep, &e);
    fprintf(stderr,
            "graph-build: %zu vectors, dim %zu, metric %s, M %u, M0 %u, ef_construction %u, "
            "threads %d: built in %.2f s, %d levels, %.1f MiB",
            h->n, h->dim, metric_name(p.metric), p.M, p.M0, p.ef_construction, threads, t_build,
            h->max_level + 1, hnsw_memory_bytes(h) / 1048576.0);
    if (h->codes)
        fprintf(stderr, "; %s codes %zu B/vector, traversal memory %.2f MiB (%.3fx of f32 vectors)",
                quant_name(compress), h->codes->code_bytes, hnsw_codes_memory_bytes(h) / 1048576.0,
                (double)hnsw_codes_memory_bytes(h) / ((double)h->n * h->dim * sizeof(float)));
    if (h->rows)
        fprintf(stderr, "; speed rows %zu B/node, %.1f MiB", hnsw_rows_mean_bytes(h),
                hnsw_rows_memory_bytes(h) / 1048576.0);
    fprintf(stderr, "\n");
    channel_destroy(&out);
    hnsw_ids_destroy(&ids);
    filt_labels_destroy(&lab);
    hnsw_destroy(&h);
    return 0;
}
