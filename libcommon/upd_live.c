/*
 * upd_live.c - see upd_live.h.
 */
#include "upd_live.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hnsw_io.h"
#include "vecstream.h"

void upd_live_init(upd_live *L, const hnsw_params *p, size_t max_dim, uint64_t repair_every)
{
    memset(L, 0, sizeof *L);
    L->p = *p;
    hnsw_params_defaults(&L->p);
    L->max_dim = max_dim ? max_dim : VECSTREAM_MAX_DIM_DEFAULT;
    L->repair_every = repair_every ? repair_every : 1;
    filt_plan_defaults(&L->plan);
}

void upd_live_free(upd_live *L)
{
    upd_destroy(&L->u);
    for (size_t i = 0; i < L->nmodels; i++)
        free(L->models[i]);
    free(L->models);
    free(L->model_len);
    free(L->ids);
    free(L->vecs);
    free(L->hits);
    free(L->hit_ids);
    free(L->hit_d);
    filt_labels_destroy(&L->labels);
    filt_searcher_destroy(&L->fs);
    free(L->lbin);
    memset(L, 0, sizeof *L);
}

typedef struct load_ctx {
    upd_live *L;
    hnsw_ids *ids;
    uint64_t seq;
} load_ctx;

/* Append a packed frame to the carried ones; ownership of buf moves to L
 * (freed here when there is no room). */
static int carry(upd_live *L, char *buf, size_t len, hf_err *e)
{
    char **m = realloc(L->models, (L->nmodels + 1) * sizeof *m);
    if (m)
        L->models = m;
    size_t *ml = realloc(L->model_len, (L->nmodels + 1) * sizeof *ml);
    if (ml)
        L->model_len = ml;
    if (!m || !ml) {
        free(buf);
        return hf_err_set(e, HF_ENOMEM, "out of memory for models");
    }
    L->models[L->nmodels] = buf;
    L->model_len[L->nmodels++] = len;
    return 0;
}

static int keep_model(upd_live *L, const frame_in *f, hf_err *e)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *f->map);
    return carry(L, sb.data, sb.size, e);
}

static int on_other(const frame_in *f, void *arg, hf_err *e)
{
    load_ctx *c = arg;
    if (strcmp(f->type, "ids") == 0)
        return hnsw_ids_take_frame(c->ids, f, UINT32_MAX - 1, e);
    if (strcmp(f->type, "labels") == 0) {
        if (!c->L->labels && filt_labels_new(&c->L->labels, e))
            return HF_ENOMEM;
        return filt_labels_take_frame(c->L->labels, f, UINT32_MAX - 1, e);
    }
    if (strcmp(f->type, "checkpoint") == 0) {
        if (frame_get_u64(f, "seq", &c->seq, NULL))
            return hf_err_set(e, HF_EDATA, "checkpoint frame lacks \"seq\"");
        return 0;
    }
    return keep_model(c->L, f, e);
}

int upd_live_load(upd_live *L, const char *path, size_t max_frame, hf_err *e)
{
    channel *c = NULL;
    int rc = channel_open_in(path, max_frame, &c, e);
    if (rc)
        return rc;
    load_ctx ctx = {.L = L};
    hnsw *h = NULL;
    if ((rc = hnsw_ids_new(&ctx.ids, e)) == 0)
        rc = hnsw_load_limited(c, L->max_dim, &h, on_other, &ctx, e);
    channel_destroy(&c);
    if (rc == 0 && ctx.ids->n && ctx.ids->n != h->n)
        rc = hf_err_set(e, HF_EDATA, "index has ids for %zu of its %zu nodes", ctx.ids->n, h->n);
    if (rc == 0 && L->labels && L->labels->n != h->n)
        rc = hf_err_set(e, HF_EDATA, "index has labels for %zu of its %zu nodes", L->labels->n,
                        h->n);
    if (rc) {
        hnsw_destroy(&h);
        hnsw_ids_destroy(&ctx.ids);
        return rc;
    }
    if (ctx.ids->n == 0)
        hnsw_ids_destroy(&ctx.ids); /* slot numbers are the ids */
    L->p = h->p;
    L->dim = h->dim;
    L->seq = ctx.seq;
    if ((rc = upd_new(h, ctx.ids, &L->u, e)) != 0)
        return rc;
    rc = upd_consolidate(L->u, e); /* tombstones of the file leave at once */
    for (size_t i = 0; rc == 0 && L->labels && i < L->labels->n; i++)
        if (upd_state(L->u, (uint32_t)i) != UPD_LIVE)
            filt_labels_kill(L->labels, (uint32_t)i);
    return rc;
}

/* Is a carried frame a model frame? */
static int is_model(const char *buf, size_t len)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    frame_in f;
    int yes = msgpack_unpack_next(&up, buf, len, &off) == MSGPACK_UNPACK_SUCCESS &&
              frame_in_wrap(&f, &up.data, 0, NULL) == 0 && strcmp(f.type, "model") == 0;
    msgpack_unpacked_destroy(&up);
    return yes;
}

int upd_live_take_models(upd_live *L, const char *path, size_t max_frame, size_t *taken, hf_err *e)
{
    *taken = 0;
    channel *c = NULL;
    int rc = channel_open_in(path, max_frame, &c, e);
    if (rc)
        return rc;
    upd_live fresh = {0}; /* collects the file's model frames with keep_model */
    frame_in f;
    int ended = 0;
    while (rc == 0 && !ended && (rc = channel_recv(c, &f, e)) == 0) {
        if (f.index == 1 && strcmp(f.type, "header") != 0)
            rc = hf_err_set(e, HF_EDATA, "frame 1: not an index (no header)");
        else if (strcmp(f.type, "model") == 0)
            rc = keep_model(&fresh, &f, e);
        ended = strcmp(f.type, "end") == 0;
    }
    if (rc == HF_EOF && !ended)
        rc = hf_err_set(e, HF_EDATA, "frame %llu: truncated index (no end frame)",
                        (unsigned long long)channel_frames(c) + 1);
    channel_destroy(&c);
    if (rc == 0 && fresh.nmodels == 0)
        rc = hf_err_set(e, HF_EDATA, "no model frame in the index");
    if (rc) {
        upd_live_free(&fresh);
        return rc;
    }
    /* the carried frames that are not models stay, the models are replaced */
    size_t keep = 0;
    for (size_t i = 0; i < L->nmodels; i++) {
        if (is_model(L->models[i], L->model_len[i])) {
            free(L->models[i]);
            continue;
        }
        L->models[keep] = L->models[i];
        L->model_len[keep++] = L->model_len[i];
    }
    L->nmodels = keep;
    for (size_t i = 0; i < fresh.nmodels && rc == 0; i++) {
        rc = carry(L, fresh.models[i], fresh.model_len[i], e);
        fresh.models[i] = NULL;
    }
    *taken = rc ? 0 : fresh.nmodels;
    upd_live_free(&fresh);
    if (rc)
        return rc;
    L->changed = 0; /* staleness counts from the new models on */
    return 0;
}

int upd_live_header(upd_live *L, const frame_in *f, hf_err *e)
{
    char schema[64];
    uint64_t v = 1, dim = 0;
    if (frame_get_str(f, "schema", schema, sizeof schema, NULL) != 0 ||
        strcmp(schema, STREAM_UPDATES) != 0)
        return hf_err_set(e, HF_EDATA, "not an updates stream (header schema must be \"%s\")",
                          STREAM_UPDATES);
    frame_get_u64(f, "v", &v, NULL);
    if (v != 1)
        return hf_err_set(e, HF_EDATA, "updates version %llu not supported (this build reads 1)",
                          (unsigned long long)v);
    if (frame_get_u64(f, "dim", &dim, NULL) == 0 && dim) {
        if (dim > L->max_dim)
            return hf_err_set(e, HF_EDATA, "dimension %llu above the limit %zu",
                              (unsigned long long)dim, L->max_dim);
        if (L->dim && dim != L->dim)
            return hf_err_set(e, HF_EDATA, "updates have dimension %llu, index has %zu",
                              (unsigned long long)dim, L->dim);
        L->dim = (size_t)dim;
    }
    return 0;
}

int upd_live_is_update(const frame_in *f)
{
    return strcmp(f->type, "insert") == 0 || strcmp(f->type, "delete") == 0;
}

static int take_ids(upd_live *L, const frame_in *f, uint64_t *n, hf_err *e)
{
    const void *p;
    size_t len;
    if (frame_get_u64(f, "n", n, NULL) || frame_get_bin(f, "ids", &p, &len, NULL))
        return hf_err_set(e, HF_EDATA, "%s frame lacks \"n\" or an \"ids\" bin", f->type);
    if (*n == 0 || len != *n * sizeof(uint64_t) || *n > len)
        return hf_err_set(e, HF_EDATA, "%s frame: n=%llu but ids has %zu bytes (8 an id)", f->type,
                          (unsigned long long)*n, len);
    if (*n > L->ids_cap) {
        uint64_t *x = realloc(L->ids, len);
        if (!x)
            return hf_err_set(e, HF_ENOMEM, "out of memory");
        L->ids = x;
        L->ids_cap = (size_t)*n;
    }
    memcpy(L->ids, p, len);
    return 0;
}

int upd_live_check(upd_live *L, const frame_in *f, hf_err *e)
{
    uint64_t n;
    int rc = take_ids(L, f, &n, e);
    if (rc)
        return rc;
    if (strcmp(f->type, "delete") == 0) {
        if (!L->u)
            return hf_err_set(e, HF_EDATA, "delete of id %llu: no such vector (index is empty)",
                              (unsigned long long)L->ids[0]);
        if ((rc = upd_check_delete(L->u, L->ids, (size_t)n, e)) != 0)
            return rc;
        L->op_insert = 0;
        L->op_n = (size_t)n;
        return 0;
    }
    const void *p;
    size_t len;
    if (frame_get_bin(f, "data", &p, &len, NULL))
        return hf_err_set(e, HF_EDATA, "insert frame lacks a \"data\" bin");
    size_t dim = L->dim;
    if (!dim) { /* the first insert of an empty index names the dimension */
        if (len % (n * sizeof(float)) != 0 || len / (n * sizeof(float)) == 0)
            return hf_err_set(e, HF_EDATA, "insert data is %zu bytes, not %llu rows of f32", len,
                              (unsigned long long)n);
        dim = len / (n * sizeof(float));
        if (dim > L->max_dim)
            return hf_err_set(e, HF_EDATA, "dimension %zu above the limit %zu", dim, L->max_dim);
    }
    if (len / sizeof(float) / dim != n || len != n * dim * sizeof(float))
        return hf_err_set(e, HF_EDATA,
                          "insert data is %zu bytes, expected %llu rows of dimension %zu (%llu "
                          "bytes)",
                          len, (unsigned long long)n, dim,
                          (unsigned long long)(n * dim * sizeof(float)));
    if (n > L->vecs_cap) {
        float *x = realloc(L->vecs, len);
        if (!x)
            return hf_err_set(e, HF_ENOMEM, "out of memory");
        L->vecs = x;
        L->vecs_cap = (size_t)n;
    }
    memcpy(L->vecs, p, len);
    hf_err fe;
    if (vec_check_finite(L->vecs, (size_t)n, dim, 0, &fe) != 0)
        return hf_err_set(e, HF_EDATA, "insert: %s", fe.msg);
    L->op_labels = 0;
    int lrc = frame_get_bin(f, "labels", &p, &len, NULL);
    if (lrc == 0) {
        if ((rc = filt_wire_check(p, len, (size_t)n, e)) != 0)
            return hf_err_prefix(e, "insert labels");
        if (len > L->lbin_cap) {
            uint32_t *x = realloc(L->lbin, len);
            if (!x)
                return hf_err_set(e, HF_ENOMEM, "out of memory");
            L->lbin = x;
            L->lbin_cap = len;
        }
        memcpy(L->lbin, p, len);
        L->lbin_len = len;
        L->op_labels = 1;
    } else if (lrc != HF_EOF)
        return hf_err_set(e, HF_EDATA, "insert frame: \"labels\" is not a bin");
    if (!L->u) {
        if ((rc = upd_create(&L->p, dim, &L->u, e)) != 0)
            return rc;
        L->dim = dim;
    }
    L->op_insert = 1;
    L->op_n = (size_t)n;
    return 0;
}

int upd_live_apply(upd_live *L, hf_err *e)
{
    int rc;
    /* labels follow slots: the slots an update vacates leave the counts,
     * the slots an insert fills take the frame's labels (or none) */
    if (L->op_insert && L->op_labels && !L->labels && (rc = filt_labels_new(&L->labels, e)) != 0)
        return rc;
    for (size_t i = 0; L->labels && L->u && i < L->op_n; i++) {
        uint32_t slot = upd_slot_of(L->u, L->ids[i]);
        if (slot != UINT32_MAX)
            filt_labels_kill(L->labels, slot);
    }
    if (L->op_insert)
        rc = upd_insert(L->u, L->ids, L->vecs, L->op_n, e);
    else
        rc = upd_delete(L->u, L->ids, L->op_n, e);
    if (rc)
        return rc;
    if (L->op_insert && L->labels) {
        static const uint32_t none = 0;
        size_t at = 0;
        for (size_t i = 0; i < L->op_n; i++) {
            uint32_t slot = upd_slot_of(L->u, L->ids[i]);
            const uint32_t *lab = &none;
            uint32_t c = 0;
            if (L->op_labels) { /* checked by upd_live_check */
                c = L->lbin[at];
                lab = L->lbin + at + 1;
                at += 1 + c;
            }
            if (slot != UINT32_MAX && (rc = filt_labels_set(L->labels, slot, lab, c, e)) != 0)
                return rc;
        }
    }
    L->seq++;
    L->changed += L->op_n;
    if (upd_pending(L->u) >= L->repair_every)
        rc = upd_consolidate(L->u, e);
    return rc;
}

int upd_live_check_apply(upd_live *L, const frame_in *f, hf_err *e)
{
    int rc = upd_live_check(L, f, e);
    return rc ? rc : upd_live_apply(L, e);
}

static int put_error(frame_out *fo, int has_qid, uint64_t qid, const char *msg)
{
    frame_begin(fo, "error", has_qid ? 2 : 1);
    if (has_qid)
        frame_put_u64(fo, "qid", qid);
    frame_put_str(fo, "msg", msg);
    return 1;
}

int upd_live_query(upd_live *L, const frame_in *f, size_t k, size_t ef, size_t max_k, size_t max_ef,
                   frame_out *fo)
{
    char msg[600];
    uint64_t qid = 0, rk = k, ref = ef;
    int has_qid = frame_get_u64(f, "qid", &qid, NULL) == 0;
    const void *vec;
    size_t len;
    if (frame_get_bin(f, "vec", &vec, &len, NULL) != 0)
        return put_error(fo, has_qid, qid, "query frame lacks a \"vec\" bin");
    if (!L->dim || len != L->dim * sizeof(float)) {
        snprintf(msg, sizeof msg, "query has %zu bytes, index dimension %zu needs %zu", len, L->dim,
                 L->dim * sizeof(float));
        return put_error(fo, has_qid, qid, msg);
    }
    frame_get_u64(f, "k", &rk, NULL);
    frame_get_u64(f, "ef", &ref, NULL);
    if (rk < 1 || rk > max_k || ref > max_ef) {
        snprintf(msg, sizeof msg, "k=%llu / ef=%llu outside limits (k 1..%zu, ef ..%zu)",
                 (unsigned long long)rk, (unsigned long long)ref, max_k, max_ef);
        return put_error(fo, has_qid, qid, msg);
    }
    if (rk > L->hits_cap) {
        free(L->hits);
        free(L->hit_ids);
        free(L->hit_d);
        L->hits = malloc(rk * sizeof *L->hits);
        L->hit_ids = malloc(rk * sizeof *L->hit_ids);
        L->hit_d = malloc(rk * sizeof *L->hit_d);
        L->hits_cap = L->hits && L->hit_ids && L->hit_d ? (size_t)rk : 0;
        if (!L->hits_cap)
            return put_error(fo, has_qid, qid, "out of memory");
    }
    if (L->vecs_cap < 1) { /* room for the query row */
        float *x = realloc(L->vecs, L->dim * sizeof(float));
        if (!x)
            return put_error(fo, has_qid, qid, "out of memory");
        L->vecs = x;
        L->vecs_cap = 1;
    }
    memcpy(L->vecs, vec, len);
    hf_err e;
    if (vec_check_finite(L->vecs, 1, L->dim, qid, &e) != 0)
        return put_error(fo, has_qid, qid, e.msg);
    filt_query fq;
    int frc = filt_query_from_frame(&fq, f, &e);
    if (frc && frc != HF_EOF)
        return put_error(fo, has_qid, qid, e.msg);
    int filtered = frc == 0 && fq.n;
    if (filtered && !L->labels)
        return put_error(fo, has_qid, qid,
                         "a filter, but the index has no labels (insert frames carry none)");
    size_t got = 0;
    if (filtered && L->u && upd_nlive(L->u)) {
        /* the scratch follows the graph's size and the largest ef asked */
        size_t want = ref > rk ? (size_t)ref : (size_t)rk;
        if (want < 64)
            want = 64;
        if (!L->fs && filt_searcher_new(upd_graph(L->u), want < max_ef ? max_ef : want, &L->fs, &e))
            return put_error(fo, has_qid, qid, e.msg);
        /* postings after the labels changed: one query thread reads the live
         * index at a time (consolidate's read lock), so it may rebuild them;
         * on failure the search scans the label sets instead */
        if (L->labels->post_version != L->labels->version)
            filt_postings_build(L->labels, &e);
        if (filt_search(upd_graph(L->u), L->labels, L->fs, NULL, &L->plan, &fq, L->vecs, (size_t)rk,
                        (size_t)ref, L->hits, &got, NULL) != 0)
            return put_error(fo, has_qid, qid, "out of memory in a filtered search");
    } else if (!filtered && L->u &&
               upd_search(L->u, L->vecs, (size_t)rk, (size_t)ref, L->hits, &got, NULL, &e) != 0)
        return put_error(fo, has_qid, qid, e.msg);
    for (size_t i = 0; i < got; i++) {
        L->hit_ids[i] = upd_ext_id(L->u, L->hits[i].id);
        L->hit_d[i] = L->hits[i].d;
    }
    frame_begin(fo, "result", 3);
    frame_put_u64(fo, "qid", qid);
    frame_put_bin(fo, "ids", L->hit_ids, got * sizeof(uint64_t));
    frame_put_bin(fo, "dists", L->hit_d, got * sizeof(float));
    return 0;
}

int upd_live_results_header(channel *c, const char *metric, size_t k, hf_err *e)
{
    frame_out fo;
    frame_out_init(&fo);
    frame_begin(&fo, "header", 6);
    frame_put_str(&fo, "schema", STREAM_RESULTS);
    frame_put_u64(&fo, "v", 1);
    frame_put_u64(&fo, "k", k);
    frame_put_str(&fo, "metric", metric);
    frame_put_u64(&fo, "count", 0);
    frame_put_str(&fo, "ids", "u64");
    int rc = channel_send(c, &fo, e);
    frame_out_free(&fo);
    return rc;
}

/* A carried model frame, re-packed with its staleness brought up to date. */
static int send_model(channel *c, const char *buf, size_t len, double add, hf_err *e)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int rc = 0;
    if (msgpack_unpack_next(&up, buf, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        up.data.type != MSGPACK_OBJECT_MAP) {
        msgpack_unpacked_destroy(&up);
        return hf_err_set(e, HF_EINTERNAL, "a carried model frame does not decode");
    }
    const msgpack_object_map *m = &up.data.via.map;
    double prior = 0;
    uint32_t keep = 0;
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key;
        int is = k->type == MSGPACK_OBJECT_STR && k->via.str.size == 13 &&
                 memcmp(k->via.str.ptr, "graph_changed", 13) == 0;
        if (is && m->ptr[i].val.type == MSGPACK_OBJECT_FLOAT64)
            prior = m->ptr[i].val.via.f64;
        keep += !is;
    }
    frame_out fo;
    frame_out_init(&fo);
    msgpack_pack_map(&fo.pk, keep + 1);
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == 13 &&
            memcmp(k->via.str.ptr, "graph_changed", 13) == 0)
            continue;
        msgpack_pack_object(&fo.pk, *k);
        msgpack_pack_object(&fo.pk, m->ptr[i].val);
    }
    msgpack_pack_str(&fo.pk, 13);
    msgpack_pack_str_body(&fo.pk, "graph_changed", 13);
    msgpack_pack_double(&fo.pk, prior + add);
    rc = channel_send(c, &fo, e);
    frame_out_free(&fo);
    msgpack_unpacked_destroy(&up);
    return rc;
}

int upd_live_save(upd_live *L, const char *path, hf_err *e)
{
    hnsw *c = NULL;
    hnsw_ids *ids = NULL;
    int rc = 0;
    if (L->u)
        rc = upd_consolidate(L->u, e);
    if (rc == 0 && L->u)
        rc = upd_compact(L->u, &c, &ids, e);
    else if (rc == 0) { /* nothing inserted yet: an empty index of known parameters */
        rc = hnsw_new(&L->p, L->dim ? L->dim : 1, &c, e);
        if (rc == 0)
            rc = hnsw_ids_new(&ids, e);
    }
    channel *out = NULL;
    if (rc == 0)
        rc = channel_open_out(path, &out, e);
    if (rc == 0)
        rc = hnsw_save_body(c, out, e);
    if (rc == 0)
        rc = hnsw_ids_save(ids, c->n, out, e);
    if (rc == 0 && L->labels && L->u) {
        /* upd_compact keeps the live slots in slot order */
        filt_labels *cl = NULL;
        rc = filt_labels_new(&cl, e);
        const hnsw *g = upd_graph(L->u);
        size_t j = 0;
        for (size_t s = 0; rc == 0 && s < g->n; s++) {
            if (upd_state(L->u, (uint32_t)s) != UPD_LIVE)
                continue;
            const uint32_t *lab;
            size_t cnt = filt_labels_of(L->labels, (uint32_t)s, &lab);
            rc = filt_labels_set(cl, (uint32_t)j++, lab, cnt, e);
        }
        if (rc == 0 && j)
            rc = filt_labels_save(cl, j, out, e);
        filt_labels_destroy(&cl);
    }
    if (rc == 0) {
        frame_out fo;
        frame_out_init(&fo);
        frame_begin(&fo, "checkpoint", 2);
        frame_put_u64(&fo, "seq", L->seq);
        frame_put_u64(&fo, "live", c->n);
        rc = channel_send(out, &fo, e);
        frame_out_free(&fo);
    }
    double add = (double)L->changed / (double)(c && c->n ? c->n : 1);
    for (size_t i = 0; rc == 0 && i < L->nmodels; i++)
        rc = send_model(out, L->models[i], L->model_len[i], add, e);
    if (rc == 0)
        rc = channel_send_end(out, c->n, e);
    if (rc == 0)
        rc = channel_commit(out, e);
    channel_destroy(&out);
    hnsw_destroy(&c);
    hnsw_ids_destroy(&ids);
    return rc;
}
