/*
 * info - what an index holds, in lines a person reads: dimension, metric,
 * vectors (live and deleted), levels, degree statistics per level,
 * reachability from the entry point, codes and their memory, every model
 * frame with its training and validation figures, file and memory size.
 *
 * The index is loaded by the same loader query uses (hnsw_load trusts
 * nothing), so a corrupt index is reported in the loader's one line and
 * exit 65, before anything is printed.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "channel.h"
#include "cli.h"
#include "hnsw.h"
#include "hnsw_io.h"
#include "hnsw_stats.h"
#include "jsonl.h"
#include "quant.h"
#include "rotation.h"

static const char *prog = "info";

static void usage(void)
{
    printf("usage: info [options] [INDEX|-]\n"
           "Describe an index: dimension, metric, vectors (live and deleted), levels,\n"
           "degree statistics per level, reachability from the entry point, codes and\n"
           "their memory, every model frame with its training and validation figures,\n"
           "file and memory size.\n\n"
           "      --max-frame BYTES refuse frames larger than this (default 256 "
           "MiB)\n" CURVE_HELP_STREAMS "  -h, --help            this text\n\n"
           "A corrupt or truncated index is reported in one line (exit status 65).\n");
}

/* What the loader hands over besides the graph: external ids and models. */
typedef struct extra {
    size_t ids; /* external ids seen in ids frames */
    size_t nmodels;
    char *models; /* one line per model frame, JSON, built in a memstream */
    size_t models_len;
    FILE *mem;
} extra;

/* A model frame as JSON with its tensors summarised: the figures a reader
 * wants (kind, hyperparameters, fingerprint, validation) stay whole. */
static void put_model(FILE *out, const msgpack_object *map)
{
    const msgpack_object_map *m = &map->via.map;
    fputc('{', out);
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
        if (i)
            fputc(',', out);
        jsonl_write(out, k, "model", 0);
        fputc(':', out);
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == 6 &&
            memcmp(k->via.str.ptr, "params", 6) == 0 && v->type == MSGPACK_OBJECT_ARRAY) {
            uint64_t values = 0;
            for (uint32_t j = 0; j < v->via.array.size; j++) {
                const msgpack_object *p = &v->via.array.ptr[j];
                if (p->type != MSGPACK_OBJECT_MAP)
                    continue;
                for (uint32_t q = 0; q < p->via.map.size; q++)
                    if (p->via.map.ptr[q].val.type == MSGPACK_OBJECT_BIN)
                        values += p->via.map.ptr[q].val.via.bin.size / 4;
            }
            fprintf(out, "{\"tensors\":%u,\"values\":%llu}", v->via.array.size,
                    (unsigned long long)values);
        } else {
            jsonl_write(out, v, "model", 0);
        }
    }
    fputc('}', out);
}

static int take_other(const frame_in *f, void *arg, hf_err *e)
{
    extra *x = arg;
    (void)e;
    if (strcmp(f->type, "ids") == 0) {
        uint64_t n = 0;
        if (frame_get_u64(f, "n", &n, NULL) == 0)
            x->ids += n;
        return 0;
    }
    x->nmodels++;
    fprintf(x->mem, "frame %llu, %s: ", (unsigned long long)f->index, f->type);
    put_model(x->mem, f->map);
    fputc('\n', x->mem);
    return 0;
}

static double mib(double b)
{
    return b / 1048576.0;
}

int main(int argc, char **argv)
{
    static const struct option lopts[] = {{"max-frame", required_argument, 0, 1},
                                          CURVE_LONG_OPTIONS,
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    uint64_t max_frame = 0;
    int c;
    curve_cfg cc = {0};
    while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        switch (c) {
        case 1: max_frame = cli_u64(prog, "--max-frame", optarg, 64, UINT64_MAX); break;
        case 'h': usage(); return 0;
        default:
            if (!curve_cfg_take(&cc, c, optarg))
                cli_usage_error(prog, "unknown option");
            break;
        }
    }
    if (argc - optind > 1)
        cli_usage_error(prog, "one index at most");
    const char *ep = optind < argc ? argv[optind] : "-";
    const char *name = strcmp(ep, "-") == 0 ? "stdin" : ep;
    hf_err e = {0};
    if (channel_curve_usage(&cc, &ep, 1, NULL, 0, 0, 0, &e))
        cli_usage_error(prog, "%s", e.msg);
    channel *in = NULL;
    if (channel_open_in_curve(ep, max_frame, &cc, &in, &e))
        cli_fail(prog, name, &e);
    extra x = {0};
    x.mem = open_memstream(&x.models, &x.models_len);
    if (!x.mem) {
        hf_err_set(&e, HF_ENOMEM, "out of memory");
        cli_fail(prog, name, &e);
    }
    hnsw *h = NULL;
    if (hnsw_load(in, &h, take_other, &x, &e)) {
        fclose(x.mem);
        free(x.models);
        cli_fail(prog, name, &e);
    }
    fclose(x.mem);
    channel_destroy(&in);
    hnsw_level_stats lv[HNSW_MAX_LEVEL + 1];
    hnsw_stats_levels(h, lv);
    size_t reach_all = 0, reach0 = 0;
    if (hnsw_stats_reachable(h, &reach_all, &reach0)) {
        hf_err_set(&e, HF_ENOMEM, "out of memory for the reachability walk");
        cli_fail(prog, name, &e);
    }
    size_t live = h->n - h->n_deleted;
    printf("index: %s\n", name);
    printf("dimension: %zu\n", h->dim);
    printf("metric: %s\n", metric_name(h->p.metric));
    printf("vectors: %zu (%zu live, %zu deleted)\n", h->n, live, h->n_deleted);
    printf("parameters: M %u, M0 %u, ef_construction %u, seed %llu\n", h->p.M, h->p.M0,
           h->p.ef_construction, (unsigned long long)h->p.seed);
    printf("levels: %d (entry node %u, on level %d)\n", h->max_level + 1, h->entry, h->max_level);
    for (int l = 0; l <= h->max_level; l++)
        printf("level %d: %zu nodes, %zu links, degree min %u / mean %.2f / max %u (cap %u, "
               "%zu at cap), %zu links to deleted nodes\n",
               l, lv[l].nodes, lv[l].edges, lv[l].deg_min, lv[l].deg_mean, lv[l].deg_max,
               hnsw_maxdeg(h, l), lv[l].at_cap, lv[l].to_deleted);
    printf("reachable from the entry: %zu of %zu live nodes over all levels (%zu unreachable), "
           "%zu on level 0 alone\n",
           reach_all, live, live - reach_all, reach0);
    printf("external ids: %s\n", x.ids ? "yes (u64, ids frames)" : "no (node numbers)");
    printf("dimension order: %s\n", h->perm ? "reordered by variance (perm frame)" : "as input");
    if (h->codes)
        printf("codes: %s, %zu bytes a vector%s; traversal memory %.2f MiB (%.3fx the f32 "
               "vectors)\n",
               quant_name(h->codes->kind), h->codes->code_bytes, h->codes_exact ? ", lossless" : "",
               mib((double)hnsw_codes_memory_bytes(h)),
               (double)hnsw_codes_memory_bytes(h) / ((double)h->n * h->dim * 4 + 1e-9));
    else
        printf("codes: none\n");
    if (h->rot && h->rot->rounds)
        printf("speed layout: block rotation of %zu dimensions, %u rounds (rows rebuilt at load "
               "by query)\n",
               h->rot_dpad, h->rot->rounds);
    else if (h->rot)
        printf("speed layout: dense rotation %zu x %zu (rows rebuilt at load by query)\n",
               h->rot_dpad, h->rot_dpad);
    printf("models: %zu\n", x.nmodels);
    if (x.models_len)
        fputs(x.models, stdout);
    struct stat sb;
    if (strcmp(ep, "-") != 0 && stat(ep, &sb) == 0)
        printf("file size: %lld bytes (%.2f MiB)\n", (long long)sb.st_size,
               mib((double)sb.st_size));
    printf("memory: %.2f MiB (vectors, links, codes as query holds them before renumbering)\n",
           mib((double)hnsw_memory_bytes(h)));
    free(x.models);
    hnsw_destroy(&h);
    if (fflush(stdout) != 0) {
        hf_err_set(&e, HF_EIO, "write failed");
        cli_fail(prog, "stdout", &e);
    }
    return 0;
}
