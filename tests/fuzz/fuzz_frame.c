/*
 * fuzz_frame.c - libFuzzer target for the frame decoder (libcommon/channel,
 * frame, vecstream, results).
 *
 * The input is put in a memfd and opened by path (/proc/self/fd/N) with
 * channel_open_in, exactly as a filter opens a file or stdin, then:
 *   1. every frame is received and its usual fields looked up with the
 *      frame_get_* accessors (checksum checks at end frames included);
 *   2. the same bytes are read as a vector stream (vecstream_open/next), the
 *      path embed-load's output takes into graph-build and query;
 *   3. and as a results stream (results_read), the path into recall.
 * Each frame of step 1 is also written as JSON (jsonl_write, what dump and
 * info print), with bins as lengths and decoded (--full), to a memory
 * stream that is then dropped.
 * A small max_frame (64 KiB) keeps the over-size checks in play. Nothing may
 * crash, hang, leak or allocate beyond what the bytes actually hold; errors
 * are the expected outcome for most inputs.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "channel.h"
#include "jsonl.h"
#include "results.h"
#include "vecstream.h"

#define MAX_FRAME ((size_t)64 << 10)
#define MAX_DIM 4096

static void as_json(const frame_in *f)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m)
        return;
    jsonl_write(m, f->map, f->type, 0);
    jsonl_write(m, f->map, f->type, 1);
    fclose(m);
    free(buf);
}

static void look_at_fields(const frame_in *f)
{
    as_json(f);
    static const char *keys[] = {"schema", "v",        "dim",    "count", "n",   "start",
                                 "data",   "qid",      "vec",    "k",     "ef",  "ids",
                                 "dists",  "checksum", "recall", "time",  "path"};
    hf_err e;
    char s[64];
    uint64_t u;
    double d;
    const void *p;
    size_t len;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        frame_get_str(f, keys[i], s, sizeof s, &e);
        frame_get_u64(f, keys[i], &u, &e);
        frame_get_f64(f, keys[i], &d, &e);
        if (frame_get_bin(f, keys[i], &p, &len, &e) == 0 && len > 0) {
            volatile unsigned char x = ((const unsigned char *)p)[len - 1];
            (void)x;
        }
    }
}

static void read_frames(const char *path)
{
    hf_err e;
    channel *c = NULL;
    if (channel_open_in(path, MAX_FRAME, &c, &e) != 0)
        return;
    frame_in f;
    while (channel_recv(c, &f, &e) == 0)
        look_at_fields(&f);
    channel_destroy(&c);
}

static void read_vectors(const char *path)
{
    hf_err e;
    channel *c = NULL;
    if (channel_open_in(path, MAX_FRAME, &c, &e) != 0)
        return;
    vecstream vs;
    if (vecstream_open(&vs, c, MAX_DIM, &e) == 0) {
        const float *rows;
        size_t n;
        uint64_t first;
        while (vecstream_next(&vs, &rows, &n, &first, &e) == 0) {
            volatile float x = rows[n * vs.dim - 1];
            (void)x;
        }
    }
    vecstream_close(&vs);
    channel_destroy(&c);
}

static void read_results(const char *path)
{
    hf_err e;
    results r;
    if (results_read(path, &r, &e) == 0)
        results_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz_frame", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        read_frames(path);
        read_vectors(path);
        read_results(path);
    }
    close(fd);
    return 0;
}
