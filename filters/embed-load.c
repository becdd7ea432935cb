/*
 * embed-load - read vectors from a file in a common format and emit a
 * vector frame stream (header, vectors batches, end).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "cli.h"
#include "distance.h"
#include "filt.h"
#include "hnsw_ids.h"
#include "vecio.h"
#include "vecstream.h"

static const char *prog = "embed-load";

static void usage(void)
{
    printf("usage: embed-load [options] [FILE|-]\n"
           "Read vectors and write a hnswflow vector frame stream.\n\n"
           "  -f, --format F     fvecs, bvecs, ivecs, npy, idx (MNIST), csv, hdf5, auto\n"
           "                     (default auto: by extension, then by magic bytes)\n"
           "  -d, --dataset NAME HDF5 dataset: train (default), test, neighbors, distances\n"
           "      --offset N     skip the first N rows\n"
           "      --limit N      emit at most N rows\n"
           "      --normalize    scale every row to unit length\n"
           "      --ids FILE     external u64 ids of the rows, one unsigned integer a line\n"
           "                     or an npy of integers, one per input row (with --offset,\n"
           "                     row r takes id r of the file); vectors frames carry them\n"
           "      --labels FILE  u32 labels of the rows: line i holds row i's labels,\n"
           "                     decimal, separated by spaces (an empty line: none; at\n"
           "                     most 256 a row, each at most 1048575); one line per\n"
           "                     input row (with --offset, row r takes line r)\n"
           "      --shard I/N    emit only rows r with r %% N == I (row numbers of the input,\n"
           "                     --offset and --limit applied first), each with its row\n"
           "                     number as external id (or its --ids entry), so the N\n"
           "                     shards' results name the original rows\n"
           "      --batch N      rows per frame (default 1024)\n"
           "      --max-dim N    refuse dimensions above N (default 65536)\n"
           "  -o, --output EP    where frames go: - (stdout, default), a file (written\n"
           "                     atomically), tcp://..., ipc://...\n" CURVE_HELP_STREAMS
           "  -h, --help         this text\n\n"
           "Exit codes: 0 ok, 64 usage, 65 bad data, 66 cannot open, 74 I/O error.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"format", required_argument, 0, 'f'}, {"dataset", required_argument, 0, 'd'},
        {"offset", required_argument, 0, 1},   {"limit", required_argument, 0, 2},
        {"normalize", no_argument, 0, 3},      {"batch", required_argument, 0, 4},
        {"max-dim", required_argument, 0, 5},  {"output", required_argument, 0, 'o'},
        {"ids", required_argument, 0, 6},      {"labels", required_argument, 0, 7},
        {"shard", required_argument, 0, 8},    CURVE_LONG_OPTIONS,
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    vecio_opts vo = {.format = VEC_FMT_AUTO};
    uint64_t offset = 0, limit = UINT64_MAX, batch = VECSTREAM_BATCH;
    int normalize = 0;
    uint64_t shard_i = 0, shard_n = 0; /* --shard I/N; 0: every row */
    const char *out_ep = "-", *ids_path = NULL, *labels_path = NULL;
    hf_err e = {0};
    int c;
    curve_cfg cc = {0};
    while ((c = getopt_long(argc, argv, "f:d:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (vecio_format_parse(optarg, &vo.format, &e))
                cli_usage_error(prog, "%s", e.msg);
            break;
        case 'd': vo.dataset = optarg; break;
        case 1: offset = cli_u64(prog, "--offset", optarg, 0, UINT64_MAX); break;
        case 2: limit = cli_u64(prog, "--limit", optarg, 0, UINT64_MAX); break;
        case 3: normalize = 1; break;
        case 4: batch = cli_u64(prog, "--batch", optarg, 1, 1 << 20); break;
        case 5: vo.max_dim = cli_u64(prog, "--max-dim", optarg, 1, 1 << 24); break;
        case 'o': out_ep = optarg; break;
        case 6: ids_path = optarg; break;
        case 7: labels_path = optarg; break;
        case 8: {
            char *slash = strchr(optarg, '/'), *end = NULL;
            if (slash) {
                shard_i = strtoull(optarg, &end, 10);
                if (end != slash)
                    slash = NULL;
                else
                    shard_n = strtoull(slash + 1, &end, 10);
            }
            if (!slash || *end || optarg[0] == '-' || slash[1] == '-' || shard_n < 1 ||
                shard_n > 1000000 || shard_i >= shard_n)
                cli_usage_error(prog, "--shard is I/N with 0 <= I < N, not \"%s\"", optarg);
            break;
        }
        case 'h': usage(); return 0;
        default:
            if (!curve_cfg_take(&cc, c, optarg))
                cli_usage_error(prog, "unknown option");
            break;
        }
    }
    if (argc - optind > 1)
        cli_usage_error(prog, "one input file at most");
    if (shard_n && labels_path)
        cli_usage_error(prog, "--shard and --labels do not go together yet");
    const char *in = optind < argc ? argv[optind] : "-";
    if (channel_curve_usage(&cc, NULL, 0, (const char *const[]){out_ep}, 1, 0, 0, &e))
        cli_usage_error(prog, "%s", e.msg);
    channel_install_signal_cleanup();

    vecio_reader *r = NULL;
    if (vecio_open(in, &vo, &r, &e))
        cli_fail(prog, in, &e);
    if (offset && vecio_skip(r, offset, &e))
        cli_fail(prog, in, &e);
    size_t dim = vecio_dim(r);
    size_t total = vecio_count(r);
    uint64_t expect = total > offset ? total - offset : 0;
    if (expect > limit)
        expect = limit;
    if (shard_n) /* rows offset+j of the input with (offset+j) % N == I */
        expect = (offset + expect + shard_n - 1 - shard_i) / shard_n -
                 (offset + shard_n - 1 - shard_i) / shard_n;
    uint64_t *ids = NULL;
    size_t nids = 0;
    if (ids_path && hnsw_ids_read_file(ids_path, &ids, &nids, &e))
        cli_fail(prog, ids_path, &e);
    if (ids_path && total && nids != total) {
        hf_err_set(&e, HF_EDATA, "%zu ids for %zu input rows", nids, total);
        cli_fail(prog, ids_path, &e);
    }
    filt_labels *lab = NULL;
    size_t nlab = 0;
    if (labels_path &&
        (filt_labels_new(&lab, &e) || filt_labels_read_file(labels_path, lab, &nlab, &e)))
        cli_fail(prog, labels_path, &e);
    if (labels_path && total && nlab != total) {
        hf_err_set(&e, HF_EDATA, "%zu lines of labels for %zu input rows", nlab, total);
        cli_fail(prog, labels_path, &e);
    }
    uint32_t *lbuf = NULL;
    size_t lcap = 0, llen = 0;
    channel *out = NULL;
    if (channel_open_out_curve(out_ep, &cc, &out, &e))
        cli_fail(prog, out_ep, &e);
    if (dim > SIZE_MAX / sizeof(float) / batch)
        cli_usage_error(prog, "--batch too large for dimension %zu", dim);
    float *buf = malloc(batch * dim * sizeof(float));
    uint64_t *sids = shard_n ? malloc(batch * sizeof *sids) : NULL;
    if (!buf || (shard_n && !sids)) {
        hf_err_set(&e, HF_ENOMEM, "out of memory");
        cli_fail(prog, in, &e);
    }
    frame_out fo;
    frame_out_init(&fo);
    if (vecstream_put_header(out, dim, total ? expect : 0, &e))
        cli_fail(prog, out_ep, &e);
    uint64_t sent = 0, kept = 0;
    while (sent < limit) {
        size_t want = limit - sent < batch ? (size_t)(limit - sent) : (size_t)batch, got = 0;
        if (vecio_read(r, buf, want, &got, &e))
            cli_fail(prog, in, &e);
        if (got == 0)
            break;
        if (normalize)
            for (size_t i = 0; i < got; i++)
                vec_normalize(buf + i * dim, dim);
        if (ids && offset + sent + got > nids) {
            hf_err_set(&e, HF_EDATA, "%zu ids, but the input has more rows", nids);
            cli_fail(prog, ids_path, &e);
        }
        if (lab && offset + sent + got > nlab) {
            hf_err_set(&e, HF_EDATA, "%zu lines of labels, but the input has more rows", nlab);
            cli_fail(prog, labels_path, &e);
        }
        if (shard_n) {
            size_t j = 0;
            for (size_t i = 0; i < got; i++) {
                uint64_t r = offset + sent + i;
                if (r % shard_n != shard_i)
                    continue;
                if (j != i)
                    memcpy(buf + j * dim, buf + i * dim, dim * sizeof(float));
                sids[j++] = ids ? ids[r] : r;
            }
            if (j && vecstream_put_batch_full(out, &fo, buf, sids, NULL, 0, j, dim, kept, &e))
                cli_fail(prog, out_ep, &e);
            kept += j;
            sent += got;
            continue;
        }
        if (lab && filt_wire_encode(lab, (uint32_t)(offset + sent), got, &lbuf, &lcap, &llen, &e))
            cli_fail(prog, labels_path, &e);
        if (vecstream_put_batch_full(out, &fo, buf, ids ? ids + offset + sent : NULL,
                                     lab ? lbuf : NULL, llen, got, dim, sent, &e))
            cli_fail(prog, out_ep, &e);
        sent += got;
    }
    if (channel_send_end(out, shard_n ? kept : sent, &e) || channel_commit(out, &e))
        cli_fail(prog, out_ep, &e);
    frame_out_free(&fo);
    free(buf);
    free(sids);
    free(ids);
    free(lbuf);
    filt_labels_destroy(&lab);
    vecio_close(&r);
    channel_destroy(&out);
    return 0;
}
