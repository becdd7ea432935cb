/*
 * fuzz_updates.c - libFuzzer target for consolidate's inputs
 * (libcommon/upd_live, upd_wal, upd_graph, hnsw_ids).
 *
 * The input is put in a memfd and opened by path, then read three ways:
 *   1. as an updates stream: header, then every insert/delete frame checked
 *      and applied to a small live index (a consolidation pass after every
 *      delete frame, a full-walk check after it), every query frame
 *      answered;
 *   2. as a write-ahead log replayed onto an empty live index;
 *   3. as an index file loaded by the live index (ids, checkpoint and model
 *      frames included).
 * A small max_frame (64 KiB) and max_dim (64) keep sizes in play. Nothing
 * may crash, leak, or leave the graph with an edge to a deleted node or an
 * unreachable live node.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "channel.h"
#include "upd_live.h"
#include "upd_wal.h"

#define MAX_FRAME ((size_t)64 << 10)
#define MAX_DIM 64

static void assert_sound(upd_live *L)
{
    if (!L->u || upd_pending(L->u))
        return;
    size_t unreach, bad;
    upd_check(L->u, &unreach, &bad);
    if (unreach || bad)
        abort();
}

static void as_stream(const char *path)
{
    hf_err e;
    channel *c = NULL;
    if (channel_open_in(path, MAX_FRAME, &c, &e) != 0)
        return;
    hnsw_params p = {.M = 4, .ef_construction = 16, .metric = METRIC_L2};
    upd_live L;
    upd_live_init(&L, &p, MAX_DIM, 1);
    frame_in f;
    frame_out fo;
    frame_out_init(&fo);
    int started = 0;
    while (channel_recv(c, &f, &e) == 0) {
        if (!started) {
            if (strcmp(f.type, "header") != 0 || upd_live_header(&L, &f, &e) != 0)
                break;
            started = 1;
        } else if (upd_live_is_update(&f)) {
            if (upd_live_check(&L, &f, &e) == 0 && upd_live_apply(&L, &e) == 0)
                assert_sound(&L);
        } else if (strcmp(f.type, "query") == 0) {
            upd_live_query(&L, &f, 5, 16, 50, 100, &fo);
        }
    }
    frame_out_free(&fo);
    upd_live_free(&L);
    channel_destroy(&c);
}

static int apply(const frame_in *f, uint64_t seq, void *arg, hf_err *e)
{
    (void)seq;
    return upd_live_check_apply(arg, f, e);
}

static void as_wal(const char *path)
{
    hf_err e, tail;
    hnsw_params p = {.M = 4, .ef_construction = 16, .metric = METRIC_L2};
    upd_live L;
    upd_live_init(&L, &p, MAX_DIM, 1);
    uint64_t applied, last;
    upd_wal_replay(path, 0, MAX_FRAME, apply, &L, &applied, &last, &tail, &e);
    assert_sound(&L);
    upd_live_free(&L);
}

static void as_index(const char *path)
{
    hf_err e;
    hnsw_params p = {.M = 4, .ef_construction = 16, .metric = METRIC_L2};
    upd_live L;
    upd_live_init(&L, &p, MAX_DIM, 1);
    if (upd_live_load(&L, path, MAX_FRAME, &e) == 0)
        assert_sound(&L);
    upd_live_free(&L);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz", 0);
    if (fd < 0)
        return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    as_stream(path);
    as_wal(path);
    as_index(path);
    close(fd);
    return 0;
}
