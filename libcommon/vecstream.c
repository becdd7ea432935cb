/*
 * vecstream.c - see vecstream.h. Rows are copied out of the frame (bin
 * payloads are not aligned) into one reusable batch buffer.
 */
#include "vecstream.h"

#include "qlog.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int vec_check_finite(const float *rows, size_t n, size_t dim, uint64_t first, hf_err *e)
{
    for (size_t i = 0; i < n * dim; i++)
        if (!isfinite(rows[i]))
            return hf_err_set(e, HF_EDATA, "row %llu: %s value at column %zu",
                              (unsigned long long)(first + i / dim),
                              isnan(rows[i]) ? "NaN" : "infinite", i % dim);
    return 0;
}

int vecstream_open(vecstream *vs, channel *c, size_t max_dim, hf_err *e)
{
    memset(vs, 0, sizeof *vs);
    vs->c = c;
    vs->max_dim = max_dim ? max_dim : VECSTREAM_MAX_DIM_DEFAULT;
    frame_in f;
    int rc = channel_recv(c, &f, e);
    if (rc == HF_EOF)
        return hf_err_set(e, HF_EDATA, "frame 1: empty input (no header frame)");
    if (rc)
        return rc;
    if (strcmp(f.type, "header") != 0)
        return hf_err_set(e, HF_EDATA, "frame 1: expected a header frame, got \"%s\"", f.type);
    char schema[64], dtype[16] = "f32";
    if ((rc = frame_get_str(&f, "schema", schema, sizeof schema, e)) != 0)
        return hf_err_set(e, HF_EDATA, "frame 1: header lacks a \"schema\" string");
    vs->open_ended = strcmp(schema, STREAM_QUERYLOG) == 0;
    if (strcmp(schema, STREAM_VECTORS) != 0 && strcmp(schema, STREAM_INDEX) != 0 && !vs->open_ended)
        return hf_err_set(e, HF_EDATA, "frame 1: stream is \"%s\", not vectors", schema);
    uint64_t dim;
    if ((rc = frame_get_u64(&f, "dim", &dim, e)) != 0)
        return hf_err_set(e, HF_EDATA, "frame 1: header lacks a valid \"dim\"");
    if (dim == 0 || dim > vs->max_dim)
        return hf_err_set(e, HF_EDATA, "frame 1: dimension %llu out of range 1..%zu",
                          (unsigned long long)dim, vs->max_dim);
    rc = frame_get_str(&f, "dtype", dtype, sizeof dtype, e);
    if (rc && rc != HF_EOF)
        return hf_err_set(e, HF_EDATA, "frame 1: %s", e->msg);
    if (strcmp(dtype, "f32") != 0)
        return hf_err_set(e, HF_EDATA, "frame 1: dtype \"%s\" not supported (f32 only)", dtype);
    if (frame_get_u64(&f, "count", &vs->count_hint, NULL) != 0)
        vs->count_hint = 0;
    vs->dim = (size_t)dim;
    vs->buf_rows = VECSTREAM_BATCH;
    vs->buf = malloc(vs->buf_rows * vs->dim * sizeof(float));
    if (!vs->buf)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    return 0;
}

static int take_rows(vecstream *vs, const frame_in *f, const void *data, size_t len, uint64_t n,
                     hf_err *e)
{
    size_t row_bytes = vs->dim * sizeof(float);
    if (n == 0 || n > vs->buf_rows || len != n * row_bytes)
        return hf_err_set(
            e, HF_EDATA, "frame %llu: %s data is %zu bytes, expected %llu rows of dimension %zu",
            (unsigned long long)f->index, f->type, len, (unsigned long long)n, vs->dim);
    memcpy(vs->buf, data, len);
    return 0;
}

/* Optional "ids" of a vectors frame: n u64, copied (the bin may be unaligned). */
static int take_ids(vecstream *vs, const frame_in *f, uint64_t n, hf_err *e)
{
    const void *p;
    size_t len;
    vs->batch_has_ids = 0;
    int rc = frame_get_bin(f, "ids", &p, &len, NULL);
    if (rc == HF_EOF)
        return 0;
    if (rc || len != n * sizeof(uint64_t))
        return hf_err_set(e, HF_EDATA, "frame %llu: ids is %zu bytes, %llu rows need %llu",
                          (unsigned long long)f->index, len, (unsigned long long)n,
                          (unsigned long long)(n * sizeof(uint64_t)));
    if (n > vs->ids_rows) {
        uint64_t *x = realloc(vs->ids, len);
        if (!x)
            return hf_err_set(e, HF_ENOMEM, "out of memory");
        vs->ids = x;
        vs->ids_rows = (size_t)n;
    }
    memcpy(vs->ids, p, len);
    vs->batch_has_ids = 1;
    return 0;
}

/* Optional "labels" of a vectors frame: checked against n rows, copied. */
static int take_labels(vecstream *vs, const frame_in *f, uint64_t n, hf_err *e)
{
    const void *p;
    size_t len;
    vs->batch_has_labels = 0;
    int rc = frame_get_bin(f, "labels", &p, &len, NULL);
    if (rc == HF_EOF)
        return 0;
    if (rc)
        return hf_err_set(e, HF_EDATA, "frame %llu: labels is not a bin",
                          (unsigned long long)f->index);
    if ((rc = filt_wire_check(p, len, (size_t)n, e)) != 0)
        return hf_err_prefix(e, "frame %llu", (unsigned long long)f->index);
    if (len > vs->labels_cap) {
        uint32_t *x = realloc(vs->labels, len);
        if (!x)
            return hf_err_set(e, HF_ENOMEM, "out of memory");
        vs->labels = x;
        vs->labels_cap = len;
    }
    memcpy(vs->labels, p, len);
    vs->labels_len = len;
    vs->batch_has_labels = 1;
    return 0;
}

int vecstream_next(vecstream *vs, const float **data, size_t *n, uint64_t *first, hf_err *e)
{
    frame_in f;
    for (;;) {
        if (vs->ended)
            return HF_EOF;
        int rc = channel_recv(vs->c, &f, e);
        if (rc == HF_EOF && vs->open_ended) { /* a query log ends where the file does */
            vs->ended = 1;
            return HF_EOF;
        }
        if (rc == HF_EOF)
            return hf_err_set(e, HF_EDATA, "frame %llu: truncated stream (no end frame)",
                              (unsigned long long)channel_frames(vs->c) + 1);
        if (rc)
            return rc;
        vs->req_k = vs->req_ef = 0;
        vs->req_recall = 0;
        vs->req_has_filter = 0;
        if (strcmp(f.type, "vectors") == 0) {
            uint64_t start, cnt;
            const void *p;
            size_t len;
            if (frame_get_u64(&f, "n", &cnt, e) || frame_get_bin(&f, "data", &p, &len, e))
                return hf_err_set(e, HF_EDATA, "frame %llu: vectors frame lacks \"n\" or \"data\"",
                                  (unsigned long long)f.index);
            if (frame_get_u64(&f, "start", &start, NULL) != 0)
                start = vs->received;
            if (start != vs->received)
                return hf_err_set(e, HF_EDATA,
                                  "frame %llu: batch starts at row %llu, expected %llu",
                                  (unsigned long long)f.index, (unsigned long long)start,
                                  (unsigned long long)vs->received);
            if (len % (vs->dim * sizeof(float)) == 0 && len / (vs->dim * sizeof(float)) == cnt &&
                cnt > vs->buf_rows) {
                float *nb = realloc(vs->buf, len);
                if (!nb)
                    return hf_err_set(e, HF_ENOMEM, "out of memory");
                vs->buf = nb;
                vs->buf_rows = cnt;
            }
            if ((rc = take_rows(vs, &f, p, len, cnt, e)) != 0)
                return rc;
            if ((rc = vec_check_finite(vs->buf, cnt, vs->dim, start, e)) != 0)
                return hf_err_prefix(e, "frame %llu", (unsigned long long)f.index);
            if ((rc = take_ids(vs, &f, cnt, e)) != 0 || (rc = take_labels(vs, &f, cnt, e)) != 0)
                return rc;
            *data = vs->buf;
            *n = cnt;
            *first = start;
            vs->received += cnt;
            return 0;
        }
        if (strcmp(f.type, "query") == 0) {
            uint64_t qid;
            const void *p;
            size_t len;
            if (frame_get_bin(&f, "vec", &p, &len, e) != 0)
                return hf_err_set(e, HF_EDATA, "frame %llu: query frame lacks a \"vec\" bin",
                                  (unsigned long long)f.index);
            if (frame_get_u64(&f, "qid", &qid, NULL) != 0)
                qid = vs->received;
            if ((rc = take_rows(vs, &f, p, len, 1, e)) != 0)
                return rc;
            if ((rc = vec_check_finite(vs->buf, 1, vs->dim, qid, e)) != 0)
                return hf_err_prefix(e, "frame %llu", (unsigned long long)f.index);
            frame_get_u64(&f, "k", &vs->req_k, NULL);
            frame_get_u64(&f, "ef", &vs->req_ef, NULL);
            if (frame_get_f64(&f, "recall", &vs->req_recall, NULL) != 0)
                vs->req_recall = 0;
            rc = filt_query_from_frame(&vs->req_filter, &f, e);
            if (rc && rc != HF_EOF)
                return hf_err_prefix(e, "frame %llu", (unsigned long long)f.index);
            vs->req_has_filter = rc == 0;
            *data = vs->buf;
            *n = 1;
            *first = qid;
            vs->received++;
            return 0;
        }
        if (strcmp(f.type, "end") == 0) {
            uint64_t cnt;
            if (frame_get_u64(&f, "count", &cnt, e) != 0)
                return hf_err_set(e, HF_EDATA, "frame %llu: end frame lacks \"count\"",
                                  (unsigned long long)f.index);
            if (cnt != vs->received)
                return hf_err_set(e, HF_EDATA,
                                  "frame %llu: end frame says %llu rows, stream carried %llu",
                                  (unsigned long long)f.index, (unsigned long long)cnt,
                                  (unsigned long long)vs->received);
            vs->ended = 1;
            return HF_EOF;
        }
        if (strcmp(f.type, "header") == 0)
            return hf_err_set(e, HF_EDATA, "frame %llu: second header inside a stream",
                              (unsigned long long)f.index);
        /* other frame types (models, links of an index) are not rows: skip */
    }
}

void vecstream_close(vecstream *vs)
{
    free(vs->buf);
    vs->buf = NULL;
    free(vs->ids);
    vs->ids = NULL;
    free(vs->labels);
    vs->labels = NULL;
}

int vecstream_put_header(channel *c, size_t dim, uint64_t count, hf_err *e)
{
    frame_out fo;
    frame_out_init(&fo);
    frame_begin(&fo, "header", 5);
    frame_put_str(&fo, "schema", STREAM_VECTORS);
    frame_put_u64(&fo, "v", 1);
    frame_put_u64(&fo, "dim", dim);
    frame_put_str(&fo, "dtype", "f32");
    frame_put_u64(&fo, "count", count);
    int rc = channel_send(c, &fo, e);
    frame_out_free(&fo);
    return rc;
}

int vecstream_put_batch(channel *c, frame_out *fo, const float *rows, size_t n, size_t dim,
                        uint64_t start, hf_err *e)
{
    frame_begin(fo, "vectors", 3);
    frame_put_u64(fo, "start", start);
    frame_put_u64(fo, "n", n);
    frame_put_bin(fo, "data", rows, n * dim * sizeof(float));
    return channel_send(c, fo, e);
}

int vecstream_put_batch_ids(channel *c, frame_out *fo, const float *rows, const uint64_t *ids,
                            size_t n, size_t dim, uint64_t start, hf_err *e)
{
    frame_begin(fo, "vectors", 4);
    frame_put_u64(fo, "start", start);
    frame_put_u64(fo, "n", n);
    frame_put_bin(fo, "data", rows, n * dim * sizeof(float));
    frame_put_bin(fo, "ids", ids, n * sizeof(uint64_t));
    return channel_send(c, fo, e);
}

int vecstream_put_batch_full(channel *c, frame_out *fo, const float *rows, const uint64_t *ids,
                             const void *labels, size_t labels_len, size_t n, size_t dim,
                             uint64_t start, hf_err *e)
{
    frame_begin(fo, "vectors", 3 + (ids != NULL) + (labels != NULL));
    frame_put_u64(fo, "start", start);
    frame_put_u64(fo, "n", n);
    frame_put_bin(fo, "data", rows, n * dim * sizeof(float));
    if (ids)
        frame_put_bin(fo, "ids", ids, n * sizeof(uint64_t));
    if (labels)
        frame_put_bin(fo, "labels", labels, labels_len);
    return channel_send(c, fo, e);
}

int vecstream_read_all(const char *path, const curve_cfg *cc, size_t dim, size_t max_frame,
                       float **out, size_t *n, hf_err *e)
{
    *out = NULL;
    *n = 0;
    channel *c = NULL;
    vecstream vs;
    int rc = channel_open_in_curve(path, max_frame, cc, &c, e);
    if (rc)
        return rc;
    if ((rc = vecstream_open(&vs, c, 0, e)) != 0) {
        channel_destroy(&c);
        return rc;
    }
    if (vs.dim != dim) {
        rc = hf_err_set(e, HF_EDATA, "frame 1: queries have dimension %zu, index has %zu", vs.dim,
                        dim);
        vecstream_close(&vs);
        channel_destroy(&c);
        return rc;
    }
    float *all = NULL;
    size_t na = 0, cap = 0;
    const float *rows;
    size_t got;
    uint64_t first;
    while ((rc = vecstream_next(&vs, &rows, &got, &first, e)) == 0) {
        if (got == 0)
            continue;
        if (na + got > cap) {
            cap = (na + got) * 2;
            float *t = realloc(all, cap * dim * sizeof *all);
            if (!t) {
                rc = hf_err_set(e, HF_ENOMEM, "out of memory for the queries");
                break;
            }
            all = t;
        }
        memcpy(all + na * dim, rows, got * dim * sizeof *all);
        na += got;
    }
    vecstream_close(&vs);
    channel_destroy(&c);
    if (rc != HF_EOF) {
        free(all);
        return rc;
    }
    *out = all;
    *n = na;
    return 0;
}
