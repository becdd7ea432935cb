/*
 * results.c - see results.h. Storage grows with the qids seen, so a hostile
 * header count cannot force a large allocation: it starts small (a header's
 * k alone buys at most RESULTS_MIN_ROWS rows), and a qid may run at most
 * RESULTS_QID_SLACK ahead of twice the result frames read so far, so one
 * frame claiming qid 4e9 cannot make the table (qid + 1) * k entries long.
 * Streams from query number their results densely from 0, which fits.
 */
#include "results.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RESULTS_MIN_ROWS 64
#define RESULTS_QID_SLACK 4096

static int grow(results *r, size_t need, hf_err *e)
{
    if (need <= r->nq)
        return 0;
    size_t nc = r->nq ? r->nq : RESULTS_MIN_ROWS;
    while (nc < need)
        nc *= 2;
    uint64_t *ids = realloc(r->ids, nc * r->k * sizeof *ids);
    if (ids)
        r->ids = ids;
    float *d = realloc(r->dists, nc * r->k * sizeof *d);
    if (d)
        r->dists = d;
    uint32_t *f = realloc(r->found, nc * sizeof *f);
    if (f)
        r->found = f;
    uint8_t *s = realloc(r->seen, nc);
    if (s)
        r->seen = s;
    if (!ids || !d || !f || !s)
        return hf_err_set(e, HF_ENOMEM, "out of memory for results");
    for (size_t i = r->nq; i < nc; i++) {
        for (size_t j = 0; j < r->k; j++) {
            r->ids[i * r->k + j] = UINT64_MAX;
            r->dists[i * r->k + j] = INFINITY;
        }
        r->found[i] = 0;
        r->seen[i] = 0;
    }
    r->nq = nc;
    return 0;
}

int results_read(const char *endpoint, results *r, hf_err *e)
{
    memset(r, 0, sizeof *r);
    channel *c = NULL;
    int rc = channel_open_in(endpoint, 0, &c, e);
    if (rc)
        return rc;
    frame_in f;
    size_t maxq = 0;
    uint64_t nres = 0;
    int have_header = 0, ended = 0;
    while (rc == 0 && !ended) {
        rc = channel_recv(c, &f, e);
        if (rc == HF_EOF) {
            rc = hf_err_set(e, HF_EDATA, "truncated results stream (no end frame)");
            break;
        }
        if (rc)
            break;
        if (!have_header) {
            char schema[64];
            uint64_t k;
            if (strcmp(f.type, "header") != 0 ||
                frame_get_str(&f, "schema", schema, sizeof schema, NULL) ||
                strcmp(schema, STREAM_RESULTS) != 0 || frame_get_u64(&f, "k", &k, NULL) || k == 0 ||
                k > 100000) {
                rc = hf_err_set(e, HF_EDATA, "frame 1: not a results stream header");
                break;
            }
            r->k = (size_t)k;
            if (frame_get_str(&f, "metric", r->metric, sizeof r->metric, NULL))
                strcpy(r->metric, "l2");
            char idw[8] = "u32";
            frame_get_str(&f, "ids", idw, sizeof idw, NULL);
            r->ids_u64 = strcmp(idw, "u64") == 0;
            have_header = 1;
            continue;
        }
        if (strcmp(f.type, "end") == 0) {
            ended = 1;
            break;
        }
        if (strcmp(f.type, "result") != 0)
            continue;
        uint64_t qid;
        const void *ids, *dists;
        size_t il, dl;
        if (frame_get_u64(&f, "qid", &qid, e) || frame_get_bin(&f, "ids", &ids, &il, e) ||
            frame_get_bin(&f, "dists", &dists, &dl, e) || dl % 4 ||
            il != dl * (r->ids_u64 ? 2 : 1) || dl / 4 > r->k || qid > UINT32_MAX) {
            rc = hf_err_set(e, HF_EDATA, "frame %llu: malformed result frame",
                            (unsigned long long)f.index);
            break;
        }
        if (qid > 2 * nres + RESULTS_QID_SLACK) {
            rc = hf_err_set(e, HF_EDATA,
                            "frame %llu: qid %llu is far beyond the %llu results read so far "
                            "(qids must be dense from 0)",
                            (unsigned long long)f.index, (unsigned long long)qid,
                            (unsigned long long)nres);
            break;
        }
        nres++;
        if ((rc = grow(r, (size_t)qid + 1, e)) != 0)
            break;
        for (size_t j = 0; j < dl / 4; j++) {
            if (r->ids_u64) {
                memcpy(&r->ids[qid * r->k + j], (const char *)ids + 8 * j, 8);
            } else {
                uint32_t v;
                memcpy(&v, (const char *)ids + 4 * j, 4);
                r->ids[qid * r->k + j] = v;
            }
        }
        memcpy(r->dists + qid * r->k, dists, dl);
        r->found[qid] = (uint32_t)(dl / 4);
        r->seen[qid] = 1;
        if (qid + 1 > maxq)
            maxq = (size_t)qid + 1;
    }
    channel_destroy(&c);
    if (rc) {
        results_free(r);
        return rc;
    }
    r->nq = maxq;
    return 0;
}

void results_free(results *r)
{
    free(r->ids);
    free(r->dists);
    free(r->found);
    free(r->seen);
    memset(r, 0, sizeof *r);
}
