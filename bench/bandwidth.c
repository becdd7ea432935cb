/*
 * bandwidth - what one core can read from memory: the yardstick of the
 * bench's bandwidth table (bench/report.py), which sets each engine's
 * bytes per query against it.
 *
 * Over one buffer much larger than the last-level cache (default 1 GiB,
 * 2 MiB aligned and advised for huge pages as the index's level 0 is), on
 * the calling thread only:
 *   seq      sequential read of the whole buffer (8 independent 64-bit sums);
 *   rand B   reads of B-byte blocks (B = 64, 256, 1024, 4096) at random
 *            block-aligned offsets, every word of the block summed; the
 *            offsets come from a xorshift generator in registers, so no
 *            load waits on another and the core keeps as many misses in
 *            flight as it can (a search's neighbour reads are of that kind:
 *            independent once the list is read); rand 64 is the random
 *            line rate;
 *   chase    a dependent pointer chase through every 64-byte line in one
 *            random cycle (Sattolo's algorithm): nanoseconds per load, the
 *            latency a search pays when it cannot issue ahead.
 * Each figure is the best of --passes passes (default 3): on a shared machine
 * a neighbour's burst only ever slows a pass down.
 *
 * Output: one JSON object on stdout (bytes/s, lines/s, ns); progress and
 * errors on stderr. It measures plain loads from one core, no hardware
 * counters: an upper bound on what a single-threaded search can stream.
 *
 * usage: bandwidth [--mib N] [--passes P]
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "cli.h"

static const char *prog = "bandwidth";

#define LINE 64
#define ALIGN_HUGE (2u << 20)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The compiler must not drop the loads: every test folds its sum in here. */
static volatile uint64_t sink;

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

/* seconds to read all of buf[0..words) once, in order */
static double seq_pass(const uint64_t *buf, size_t words)
{
    uint64_t a[8] = {0};
    double t0 = now_s();
    for (size_t i = 0; i + 8 <= words; i += 8)
        for (int j = 0; j < 8; j++)
            a[j] += buf[i + j];
    double t = now_s() - t0;
    sink += a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
    return t;
}

/* seconds for `reads` reads of `block`-byte blocks at random aligned offsets
 * of a buffer of `blocks` blocks (a power of two) */
static double rand_pass(const uint64_t *buf, size_t blocks, size_t block, size_t reads,
                        uint64_t seed)
{
    size_t wpb = block / sizeof(uint64_t);
    uint64_t mask = (uint64_t)blocks - 1, s = seed | 1, acc = 0;
    double t0 = now_s();
    for (size_t r = 0; r < reads; r++) {
        const uint64_t *p = buf + (size_t)(xorshift64(&s) & mask) * wpb;
        for (size_t j = 0; j < wpb; j++)
            acc += p[j];
    }
    double t = now_s() - t0;
    sink += acc;
    return t;
}

/* Link every line of buf into one random cycle: line i's first word holds
 * the index of the next line (Sattolo's shuffle gives a single cycle). */
static int chase_init(uint64_t *buf, size_t lines)
{
    uint32_t *perm = malloc(lines * sizeof *perm);
    if (!perm)
        return -1;
    for (size_t i = 0; i < lines; i++)
        perm[i] = (uint32_t)i;
    uint64_t s = 0x9e3779b97f4a7c15u;
    for (size_t i = lines - 1; i > 0; i--) {
        size_t j = (size_t)(xorshift64(&s) % i);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < lines; i++)
        buf[(size_t)perm[i] * (LINE / 8)] = perm[(i + 1) % lines];
    free(perm);
    return 0;
}

static double chase_pass(const uint64_t *buf, size_t loads)
{
    uint64_t at = 0;
    double t0 = now_s();
    for (size_t i = 0; i < loads; i++)
        at = buf[at * (LINE / 8)];
    double t = now_s() - t0;
    sink += at;
    return t;
}

/* the kernel's transparent huge page mode, the bracketed word */
static void thp_mode(char *out, size_t n)
{
    snprintf(out, n, "unknown");
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f)
        return;
    char line[128];
    if (fgets(line, sizeof line, f)) {
        char *a = strchr(line, '['), *b = a ? strchr(a, ']') : NULL;
        if (a && b && (size_t)(b - a) < n) {
            memcpy(out, a + 1, (size_t)(b - a - 1));
            out[b - a - 1] = 0;
        }
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"mib", required_argument, 0, 'm'},
                                         {"passes", required_argument, 0, 'p'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    size_t mib = 1024, passes = 3;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': mib = cli_u64(prog, "--mib", optarg, 64, 1u << 20); break;
        case 'p': passes = cli_u64(prog, "--passes", optarg, 1, 100); break;
        case 'h':
            printf("usage: bandwidth [--mib N] [--passes P]\n"
                   "One core's sequential read bandwidth, random 64/256/1024/4096-byte block\n"
                   "reads and pointer-chase latency over an N MiB buffer (default 1024, a\n"
                   "power of two is used: N rounded down), best of P passes (default 3);\n"
                   "one JSON object on stdout.\n");
            return 0;
        default: cli_usage_error(prog, "unknown option");
        }
    }
    if (optind < argc)
        cli_usage_error(prog, "unexpected argument %s", argv[optind]);
    /* a power of two, so random offsets are a mask */
    size_t p2 = 64;
    while (p2 * 2 <= mib)
        p2 *= 2;
    mib = p2;
    size_t bytes = mib << 20, words = bytes / sizeof(uint64_t), lines = bytes / LINE;
    uint64_t *buf = aligned_alloc(ALIGN_HUGE, bytes);
    if (!buf) {
        fprintf(stderr, "%s: cannot allocate %zu MiB\n", prog, mib);
        return 71;
    }
    madvise(buf, bytes, MADV_HUGEPAGE); /* advice only: failure is no error */
    for (size_t i = 0; i < words; i++)
        buf[i] = i;

    double seq = 1e30;
    for (size_t p = 0; p < passes; p++) {
        double t = seq_pass(buf, words);
        seq = t < seq ? t : seq;
    }
    static const size_t block_sizes[] = {64, 256, 1024, 4096};
    enum { NB = sizeof block_sizes / sizeof block_sizes[0] };
    double rnd[NB];
    size_t reads[NB];
    for (size_t b = 0; b < NB; b++) {
        /* about 256 MiB read per pass, at least 1M blocks */
        reads[b] = (256u << 20) / block_sizes[b];
        if (reads[b] < (1u << 20))
            reads[b] = 1u << 20;
        rnd[b] = 1e30;
        for (size_t p = 0; p < passes; p++) {
            double t = rand_pass(buf, bytes / block_sizes[b], block_sizes[b], reads[b],
                                 0x2545f4914f6cdd1du + p);
            rnd[b] = t < rnd[b] ? t : rnd[b];
        }
    }
    if (chase_init(buf, lines)) {
        fprintf(stderr, "%s: cannot allocate the chase permutation\n", prog);
        return 71;
    }
    size_t loads = 1u << 22;
    double chase = 1e30;
    for (size_t p = 0; p < passes; p++) {
        double t = chase_pass(buf, loads);
        chase = t < chase ? t : chase;
    }
    char thp[32];
    thp_mode(thp, sizeof thp);

    printf("{\"buffer_mib\": %zu, \"passes\": %zu, \"thp\": \"%s\",\n", mib, passes, thp);
    printf(" \"seq_read_bytes_s\": %.4g,\n", (double)bytes / seq);
    for (size_t b = 0; b < NB; b++)
        printf(" \"rand%zu_reads_s\": %.4g, \"rand%zu_bytes_s\": %.4g,\n", block_sizes[b],
               (double)reads[b] / rnd[b], block_sizes[b],
               (double)reads[b] * (double)block_sizes[b] / rnd[b]);
    printf(" \"rand64_lines_s\": %.4g,\n", (double)reads[0] / rnd[0]);
    printf(" \"chase_ns\": %.4g}\n", chase / (double)loads * 1e9);
    free(buf);
    return 0;
}
