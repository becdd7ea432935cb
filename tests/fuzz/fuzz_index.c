/*
 * fuzz_index.c - libFuzzer target for the index loader (libcommon/hnsw_io).
 *
 * The input is put in a memfd, opened with channel_open_in and given to
 * hnsw_load, as `query --index` does. When it loads, a few searches run on
 * the result, so an index the loader accepts must also be safe to search
 * (every id, degree, level and the entry point are checked on load). Frames
 * the loader does not know (models) go to a callback that reads their fields;
 * a layer-router frame is unpacked, bound to the graph and routes a query,
 * as `query --route` does.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "channel.h"
#include "hnsw.h"
#include "hnsw_io.h"
#include "route.h"

#define MAX_FRAME ((size_t)64 << 10)

static int other_frame(const frame_in *f, void *arg, hf_err *e)
{
    route_model **rm = arg;
    if (strcmp(f->type, "model") == 0 && route_is_frame(f->map)) {
        route_destroy(rm);
        return route_unpack(f->map, rm, e);
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
            route_model *rm = NULL;
            if (hnsw_load(c, &h, other_frame, &rm, &e) == 0) {
                search_some(h);
                /* as query does: renumber for locality, then search again */
                if (hnsw_reorder(h, &e) == 0) {
                    search_some(h);
                    route_some(rm, h);
                }
                hnsw_destroy(&h);
            }
            route_destroy(&rm);
            channel_destroy(&c);
        }
    }
    close(fd);
    return 0;
}
