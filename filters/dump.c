/*
 * dump - any hnswflow frame stream as JSON lines, one frame a line, so jq
 * and friends can read it: vector streams, indexes, results, update
 * streams, write-ahead logs, single request or answer frames.
 *
 * bin fields are shown as {"bin": N} (their length in bytes) or, with
 * --full, decoded as the little-endian array their schema names
 * (libcommon/jsonl.h). Frames are read through a channel, so every size
 * limit, the scanner's structure check and each stream's end-frame CRC
 * apply: a corrupt stream stops the dump with one line on stderr and exit
 * 65, and so does a stream whose header is not closed by an end frame
 * (a truncated file); a ZeroMQ input, which never closes, ends with the end
 * frame of its stream. Lines already written stay written (a dump is a stream); with
 * -o FILE the output is atomic like every filter's.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "channel.h"
#include "cli.h"
#include "jsonl.h"
#include "qlog.h"
#include "upd_wal.h"

static const char *prog = "dump";

static void usage(void)
{
    printf("usage: dump [--full] [-o FILE] [FILE|-]\n"
           "Print a hnswflow frame stream (vectors, index, results, updates, WAL, requests)\n"
           "as JSON lines, one frame a line.\n\n"
           "  -f, --full            decode bin fields into arrays of numbers (f32, u32, u64, u8,\n"
           "                        as the frame's schema says) next to their byte length\n"
           "  -o, --output FILE     write to FILE (atomically) instead of stdout\n"
           "      --max-frame BYTES refuse frames larger than this (default 256 "
           "MiB)\n" CURVE_HELP_STREAMS "  -h, --help            this text\n\n"
           "bin fields read {\"bin\": N} (N bytes), with --full {\"bin\": N, \"f32\": [...]};\n"
           "NaN and infinities read null. A corrupt or truncated stream stops the dump with\n"
           "one line on stderr and exit status 65. A ZeroMQ input ends with its stream's\n"
           "end frame.\n");
}

int main(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"full", no_argument, 0, 'f'},          {"output", required_argument, 0, 'o'},
        {"max-frame", required_argument, 0, 1}, CURVE_LONG_OPTIONS,
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    int full = 0, c;
    const char *out_path = NULL;
    uint64_t max_frame = 0;
    curve_cfg cc = {0};
    while ((c = getopt_long(argc, argv, "fo:h", lopts, NULL)) != -1) {
        switch (c) {
        case 'f': full = 1; break;
        case 'o': out_path = optarg; break;
        case 1: max_frame = cli_u64(prog, "--max-frame", optarg, 64, UINT64_MAX); break;
        case 'h': usage(); return 0;
        default:
            if (!curve_cfg_take(&cc, c, optarg))
                cli_usage_error(prog, "unknown option");
            break;
        }
    }
    if (argc - optind > 1)
        cli_usage_error(prog, "one input at most");
    const char *in_ep = optind < argc ? argv[optind] : "-";
    const char *in_name = strcmp(in_ep, "-") == 0 ? "stdin" : in_ep;
    channel_install_signal_cleanup();
    hf_err e = {0};
    if (channel_curve_usage(&cc, &in_ep, 1, NULL, 0, 0, 0, &e))
        cli_usage_error(prog, "%s", e.msg);
    channel *in = NULL;
    if (channel_open_in_curve(in_ep, max_frame, &cc, &in, &e))
        cli_fail(prog, in_name, &e);
    /* -o: JSON into a temporary beside the target, renamed at the end */
    char *tmp = NULL;
    FILE *out = stdout;
    if (out_path) {
        int fd = asprintf(&tmp, "%s.tmp.XXXXXX", out_path) < 0 ? -1 : mkstemp(tmp);
        out = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!out) {
            hf_err_set(&e, HF_EOPEN, "cannot create a temporary file beside it");
            cli_fail(prog, out_path, &e);
        }
    }
    frame_in f;
    int rc, zmq_in = channel_is_zmq(in_ep);
    uint64_t n = 0, open_header = 0; /* frame number of a header whose end has not come */
    while ((rc = channel_recv(in, &f, &e)) == 0) {
        char schema[64] = "";
        if (strcmp(f.type, "header") == 0)
            /* a write-ahead log or a query log is appended to and never closed */
            open_header =
                frame_get_str(&f, "schema", schema, sizeof schema, NULL) == 0 &&
                        (strcmp(schema, STREAM_WAL) == 0 || strcmp(schema, STREAM_QUERYLOG) == 0)
                    ? 0
                    : f.index;
        else if (strcmp(f.type, "end") == 0)
            open_header = 0;
        if (jsonl_write(out, f.map, f.type, full) != 0 || putc('\n', out) == EOF) {
            hf_err_set(&e, HF_EIO, "write failed");
            rc = HF_EIO;
            break;
        }
        n++;
        /* a ZeroMQ stream never closes: its end frame is the end */
        if (zmq_in && strcmp(f.type, "end") == 0) {
            rc = HF_EOF;
            break;
        }
    }
    if (rc == HF_EOF && open_header) {
        /* a stream opened by a header must close with its end frame */
        rc = hf_err_set(
            &e, HF_EDATA, "frame %llu: truncated stream: the header of frame %llu has no end frame",
            (unsigned long long)(channel_frames(in) + 1), (unsigned long long)open_header);
    }
    int fail = rc != HF_EOF;
    if (fflush(out) != 0 && !fail) {
        hf_err_set(&e, HF_EIO, "write failed");
        fail = 1;
        in_name = out_path ? out_path : "stdout";
    }
    if (out_path) {
        int bad = fclose(out) != 0;
        if (fail || bad || rename(tmp, out_path) != 0) {
            unlink(tmp);
            if (!fail)
                hf_err_set(&e, HF_EIO, "cannot write or rename into place");
            free(tmp);
            cli_fail(prog, fail ? in_name : out_path, &e);
        }
        free(tmp);
    } else if (fail) {
        cli_fail(prog, in_name, &e);
    }
    channel_destroy(&in);
    (void)n;
    return 0;
}
