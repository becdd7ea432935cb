/*
 * fuzz_fanout.c - libFuzzer target for what the fan-out front end reads
 * (libcommon/fanout): shard answers and client requests, both one frame a
 * ZeroMQ message, and the --fanout spec.
 *
 * The input is cut into frames with the same pre-scan the servers use
 * (frame_scan_step, then msgpack_unpack_next on exactly the scanned bytes);
 * every frame is
 *   1. merged as a shard's result into one running top-k (k from the first
 *      byte, 1..32), after which the merge must still hold at most k
 *      entries, nearest first;
 *   2. repacked as a client request (fanout_request_repack), and the
 *      repacked bytes must decode again as one map with the new qid and k;
 *   3. read as a batch answer (qbatch_results_parse, u64 ids, for the
 *      number of queries its own "n" says, at most 64) and, when it passes,
 *      merged query by query: the parts must lie inside its bins.
 * The whole input, as a string, is also parsed as a --fanout spec.
 * Nothing may crash, leak, or break those invariants (abort()).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fanout.h"
#include "frame_scan.h"
#include "qbatch.h"

static void check_merge(const fanout_merge *m)
{
    if (m->n > m->k)
        abort();
    for (size_t i = 1; i < m->n; i++)
        if (m->dists[i] < m->dists[i - 1])
            abort();
}

static void check_batch(const frame_in *f, size_t k)
{
    uint64_t n = 0;
    if (frame_get_u64(f, "n", &n, NULL) || n < 1 || n > 64)
        return;
    qbatch_results r;
    hf_err e;
    if (qbatch_results_parse(f, (size_t)n, 8, k, &r, &e))
        return;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        fanout_merge m;
        if (fanout_merge_init(&m, k))
            return;
        uint32_t c = qbatch_count(&r, i);
        if (c > k || off + c > r.total)
            abort();
        fanout_merge_take_raw(&m, r.ids + 8 * off, r.dists + 4 * off, c, &e);
        check_merge(&m);
        fanout_merge_free(&m);
        off += c;
    }
    if (off != r.total)
        abort();
}

static void check_repack(const frame_in *f, uint64_t fid)
{
    frame_out fo;
    frame_out_init(&fo);
    fanout_request_repack(f, fid, 7, &fo);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    if (msgpack_unpack_next(&u, fo.sb.data, fo.sb.size, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != fo.sb.size)
        abort();
    frame_in g;
    hf_err e;
    uint64_t q = 0, k = 0;
    if (frame_in_wrap(&g, &u.data, 1, &e) != 0 || frame_get_u64(&g, "qid", &q, NULL) ||
        frame_get_u64(&g, "k", &k, NULL) || q != fid || k != 7)
        abort();
    msgpack_unpacked_destroy(&u);
    frame_out_free(&fo);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    fanout_merge m;
    if (fanout_merge_init(&m, 1 + data[0] % 32))
        return 0;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t pos = 1;
    uint64_t fid = 1;
    while (pos < size) {
        frame_scan st = {0, 0};
        if (frame_scan_step(&st, data + pos, size - pos, 1 << 16) != FRAME_SCAN_WHOLE)
            break;
        size_t off = 0;
        if (msgpack_unpack_next(&u, (const char *)data + pos, st.pos, &off) !=
                MSGPACK_UNPACK_SUCCESS ||
            off != st.pos)
            break;
        pos += st.pos;
        frame_in f;
        hf_err e;
        if (frame_in_wrap(&f, &u.data, fid, &e) != 0)
            continue;
        fanout_merge_take(&m, &f, &e);
        check_merge(&m);
        check_repack(&f, fid++);
        check_batch(&f, m.k);
    }
    msgpack_unpacked_destroy(&u);
    fanout_merge_free(&m);

    char *spec = malloc(size + 1), *buf = NULL;
    static char *ep[FANOUT_MAX_REPLICAS];
    static int shard_of[FANOUT_MAX_REPLICAS];
    if (spec) {
        memcpy(spec, data, size);
        spec[size] = '\0';
        int nrep = 0, nshard = 0;
        hf_err e;
        if (fanout_parse_spec(spec, &buf, ep, shard_of, &nrep, &nshard, &e) == 0 &&
            (nrep < nshard || nshard < 1 || shard_of[nrep - 1] != nshard - 1))
            abort();
        free(buf);
        free(spec);
    }
    return 0;
}
