/*
 * qbatch.c - see qbatch.h.
 */
#include "qbatch.h"

#include <math.h>
#include <string.h>

int qbatch_results_parse(const frame_in *f, size_t n, size_t idw, size_t k, qbatch_results *r,
                         hf_err *e)
{
    uint64_t fn = 0;
    const void *c, *ib, *db;
    size_t cl, il, dl;
    if (strcmp(f->type, "results") != 0)
        return hf_err_set(e, HF_EDATA, "a \"%s\" frame where a \"results\" frame was expected",
                          f->type);
    if (frame_get_u64(f, "n", &fn, NULL) || fn != n)
        return hf_err_set(e, HF_EDATA, "results frame for %llu queries, %zu asked",
                          (unsigned long long)fn, n);
    if (frame_get_bin(f, "counts", &c, &cl, NULL) || frame_get_bin(f, "ids", &ib, &il, NULL) ||
        frame_get_bin(f, "dists", &db, &dl, NULL))
        return hf_err_set(e, HF_EDATA, "results frame lacks counts, ids or dists bins");
    if (cl != 4 * n)
        return hf_err_set(e, HF_EDATA, "results frame has %zu bytes of counts for %zu queries", cl,
                          n);
    r->n = n;
    r->idw = idw;
    r->counts = c;
    r->ids = ib;
    r->dists = db;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t ci;
        memcpy(&ci, r->counts + 4 * i, 4);
        if (ci > k)
            return hf_err_set(e, HF_EDATA, "results frame: query %zu has %u neighbours, k is %zu",
                              i, ci, k);
        float prev = -INFINITY;
        for (size_t j = 0; j < ci; j++) {
            if (4 * (total + j) + 4 > dl)
                break; /* caught by the length check below */
            float d;
            memcpy(&d, r->dists + 4 * (total + j), 4);
            if (isnan(d) || d < prev)
                return hf_err_set(e, HF_EDATA,
                                  "results frame: query %zu's distances are not sorted", i);
            prev = d;
        }
        total += ci;
    }
    if (dl != 4 * total || il != idw * total)
        return hf_err_set(e, HF_EDATA,
                          "results frame: counts sum to %zu, but %zu bytes of ids (%zu a id) and "
                          "%zu of distances",
                          total, il, idw, dl);
    r->total = total;
    return 0;
}

uint32_t qbatch_count(const qbatch_results *r, size_t i)
{
    uint32_t c;
    memcpy(&c, r->counts + 4 * i, 4);
    return c;
}

void qbatch_pack_results(frame_out *fo, uint64_t qid, size_t n, const uint32_t *counts,
                         const void *ids, size_t idw, const float *dists, size_t total,
                         uint32_t nextra)
{
    frame_begin(fo, "results", 5 + nextra);
    frame_put_u64(fo, "qid", qid);
    frame_put_u64(fo, "n", n);
    frame_put_bin(fo, "counts", counts, n * sizeof(uint32_t));
    frame_put_bin(fo, "ids", ids, total * idw);
    frame_put_bin(fo, "dists", dists, total * sizeof(float));
}
