/*
 * fanout_merge.c - the fan-out front end's pure parts (fanout.h): the
 * --fanout spec parser, the top-k merge of shard answers and the repack of
 * a client's request for the shards. No sockets here: fanout.c runs the
 * loop, tests/unit/test_fanout.c and tests/fuzz/fuzz_fanout.c call these.
 */
#include "fanout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- spec ---- */

int fanout_parse_spec(const char *spec, char **buf, char *ep[], int shard_of[], int *nrep,
                      int *nshard, hf_err *e)
{
    *buf = strdup(spec);
    *nrep = *nshard = 0;
    if (!*buf)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    int shard = 0;
    /* strtok would merge empty fields: walk by hand so "a,,b" is an error */
    char *p = *buf;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        if (!*p)
            return hf_err_set(e, HF_EUSAGE, "--fanout: shard %d is empty (\"%s\")", shard, spec);
        char *q = p;
        for (;;) {
            char *bar = strchr(q, '|');
            if (bar)
                *bar = '\0';
            if (!*q)
                return hf_err_set(e, HF_EUSAGE, "--fanout: shard %d has an empty replica (\"%s\")",
                                  shard, spec);
            if (strncmp(q, "tcp://", 6) && strncmp(q, "ipc://", 6) && strncmp(q, "inproc://", 9))
                return hf_err_set(e, HF_EUSAGE,
                                  "--fanout: \"%s\" is not a tcp://, ipc:// or inproc:// endpoint",
                                  q);
            if (*nrep == FANOUT_MAX_REPLICAS)
                return hf_err_set(e, HF_EUSAGE, "--fanout: more than %d replicas",
                                  FANOUT_MAX_REPLICAS);
            ep[*nrep] = q;
            shard_of[*nrep] = shard;
            (*nrep)++;
            if (!bar)
                break;
            q = bar + 1;
        }
        shard++;
        if (!comma)
            break;
        p = comma + 1;
    }
    *nshard = shard;
    return 0;
}

/* ---- merge ---- */

int fanout_merge_init(fanout_merge *m, size_t k)
{
    memset(m, 0, sizeof *m);
    m->k = k;
    m->ids = malloc(2 * k * sizeof *m->ids);
    m->dists = malloc(2 * k * sizeof *m->dists);
    if (!m->ids || !m->dists) {
        fanout_merge_free(m);
        return HF_ENOMEM;
    }
    m->tmp_ids = m->ids + k;
    m->tmp_dists = m->dists + k;
    return 0;
}

void fanout_merge_free(fanout_merge *m)
{
    free(m->ids);
    free(m->dists);
    memset(m, 0, sizeof *m);
}

int fanout_merge_take(fanout_merge *m, const frame_in *f, hf_err *e)
{
    const void *ib, *db;
    size_t il, dl;
    if (frame_get_bin(f, "ids", &ib, &il, e) || frame_get_bin(f, "dists", &db, &dl, e))
        return hf_err_set(e, HF_EDATA, "result frame lacks ids or dists");
    if (dl % 4 || il != dl / 4 * 8)
        return hf_err_set(e, HF_EDATA,
                          "result frame has %zu bytes of ids for %zu distances "
                          "(a shard without external u64 ids?)",
                          il, dl / 4);
    return fanout_merge_take_raw(m, ib, db, dl / 4, e);
}

int fanout_merge_take_raw(fanout_merge *m, const void *ids, const void *dists, size_t n, hf_err *e)
{
    const unsigned char *ip = ids, *dp = dists;
    size_t a = 0, b = 0, o = 0;
    float prev = -INFINITY;
    while (o < m->k && (a < m->n || b < n)) {
        float db_v = 0;
        if (b < n) {
            memcpy(&db_v, dp + 4 * b, 4);
            if (isnan(db_v) || db_v < prev)
                return hf_err_set(e, HF_EDATA, "result distances are not sorted");
        }
        if (a < m->n && (b >= n || m->dists[a] <= db_v)) {
            m->tmp_ids[o] = m->ids[a];
            m->tmp_dists[o++] = m->dists[a++];
        } else {
            memcpy(&m->tmp_ids[o], ip + 8 * b, 8);
            m->tmp_dists[o++] = db_v;
            prev = db_v;
            b++;
        }
    }
    memcpy(m->ids, m->tmp_ids, o * sizeof *m->ids);
    memcpy(m->dists, m->tmp_dists, o * sizeof *m->dists);
    m->n = o;
    return 0;
}

int fanout_request_repack(const frame_in *f, uint64_t fid, uint64_t k, frame_out *fo)
{
    const msgpack_object_map *mp = &f->map->via.map;
    uint32_t keep = 0;
    for (uint32_t i = 0; i < mp->size; i++) {
        const msgpack_object *key = &mp->ptr[i].key;
        int drop = key->type == MSGPACK_OBJECT_STR &&
                   ((key->via.str.size == 3 && memcmp(key->via.str.ptr, "qid", 3) == 0) ||
                    (key->via.str.size == 1 && key->via.str.ptr[0] == 'k'));
        keep += !drop;
    }
    msgpack_sbuffer_clear(&fo->sb);
    msgpack_pack_map(&fo->pk, keep + 2);
    for (uint32_t i = 0; i < mp->size; i++) {
        const msgpack_object *key = &mp->ptr[i].key;
        int drop = key->type == MSGPACK_OBJECT_STR &&
                   ((key->via.str.size == 3 && memcmp(key->via.str.ptr, "qid", 3) == 0) ||
                    (key->via.str.size == 1 && key->via.str.ptr[0] == 'k'));
        if (drop)
            continue;
        msgpack_pack_object(&fo->pk, *key);
        msgpack_pack_object(&fo->pk, mp->ptr[i].val);
    }
    frame_put_u64(fo, "qid", fid);
    frame_put_u64(fo, "k", k);
    return 0;
}
