/*
 * hnsw_io.c - see hnsw_io.h. Error messages carry "frame N" so a filter can
 * print which frame of which input was wrong.
 */
#include "hnsw_io.h"
#include "quant.h"
#include "rotation.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define VEC_BATCH 1024
#define LINK_BATCH 4096

static int put_header(const hnsw *h, channel *c, hf_err *e)
{
    frame_out fo;
    frame_out_init(&fo);
    frame_begin(&fo, "header", 12);
    frame_put_str(&fo, "schema", STREAM_INDEX);
    frame_put_u64(&fo, "v", 1);
    frame_put_u64(&fo, "dim", h->dim);
    frame_put_str(&fo, "metric", metric_name(h->p.metric));
    frame_put_str(&fo, "dtype", "f32");
    frame_put_u64(&fo, "count", h->n);
    frame_put_u64(&fo, "M", h->p.M);
    frame_put_u64(&fo, "M0", h->p.M0);
    frame_put_u64(&fo, "ef_construction", h->p.ef_construction);
    frame_put_u64(&fo, "seed", h->p.seed);
    frame_put_u64(&fo, "entry", h->entry == HNSW_NONE ? 0 : h->entry);
    frame_put_i64(&fo, "max_level", h->max_level);
    int rc = channel_send(c, &fo, e);
    frame_out_free(&fo);
    return rc;
}

int hnsw_save_with_model(const hnsw *h, channel *c, frame_out *fo, frame_keep *keep, hf_err *e)
{
    int rc = hnsw_save_body(h, c, e);
    if (!rc)
        rc = channel_send(c, fo, e);
    if (!rc)
        rc = frame_keep_send(keep, c, fo, e);
    if (!rc)
        rc = channel_send_end(c, h->n, e);
    return rc ? rc : channel_commit(c, e);
}

int hnsw_save_body(const hnsw *h, channel *c, hf_err *e)
{
    if (h->ext_id)
        return hf_err_set(e, HF_EUSAGE, "a reordered graph cannot be saved (its ids are internal)");
    int rc = put_header(h, c, e);
    frame_out fo;
    frame_out_init(&fo);
    float *buf = malloc(VEC_BATCH * h->dim * sizeof(float));
    uint32_t *nodes = malloc(LINK_BATCH * sizeof(uint32_t));
    uint32_t *deg = malloc(LINK_BATCH * sizeof(uint32_t));
    uint32_t *ids = malloc((size_t)LINK_BATCH * (h->p.M0 + 1) * sizeof(uint32_t));
    if (!buf || !nodes || !deg || !ids)
        rc = rc ? rc : hf_err_set(e, HF_ENOMEM, "out of memory saving index");
    for (size_t s = 0; rc == 0 && s < h->n; s += VEC_BATCH) {
        size_t n = h->n - s < VEC_BATCH ? h->n - s : VEC_BATCH;
        /* vectors are saved in the input's dimension order, so the file
         * holds the user's vectors whatever the in-memory layout */
        for (size_t i = 0; i < n; i++) {
            const float *v = hnsw_vec(h, (uint32_t)(s + i));
            float *row = buf + i * h->dim;
            if (h->perm)
                for (size_t j = 0; j < h->dim; j++)
                    row[h->perm[j]] = v[j];
            else
                memcpy(row, v, h->dim * sizeof(float));
        }
        frame_begin(&fo, "vectors", 4);
        frame_put_u64(&fo, "start", s);
        frame_put_u64(&fo, "n", n);
        frame_put_bin(&fo, "data", buf, n * h->dim * sizeof(float));
        frame_put_bin(&fo, "levels", h->levels + s, n);
        rc = channel_send(c, &fo, e);
    }
    if (rc == 0 && h->perm) {
        frame_begin(&fo, "perm", 1);
        frame_put_bin(&fo, "order", h->perm, h->dim * sizeof(uint32_t));
        rc = channel_send(c, &fo, e);
    }
    for (int l = 0; rc == 0 && l <= h->max_level; l++) {
        size_t cnt = 0, nid = 0;
        for (size_t i = 0; rc == 0 && i <= h->n; i++) {
            int flush = (i == h->n) ? cnt > 0 : cnt == LINK_BATCH;
            if (flush) {
                frame_begin(&fo, "links", 4);
                frame_put_u64(&fo, "level", (uint64_t)l);
                frame_put_bin(&fo, "nodes", nodes, cnt * sizeof(uint32_t));
                frame_put_bin(&fo, "deg", deg, cnt * sizeof(uint32_t));
                frame_put_bin(&fo, "ids", ids, nid * sizeof(uint32_t));
                rc = channel_send(c, &fo, e);
                cnt = nid = 0;
            }
            if (i == h->n || h->levels[i] < l)
                continue;
            const uint32_t *ln = hnsw_links(h, (uint32_t)i, l);
            nodes[cnt] = (uint32_t)i;
            deg[cnt] = ln[0];
            memcpy(ids + nid, ln + 1, ln[0] * sizeof(uint32_t));
            nid += ln[0];
            cnt++;
        }
    }
    if (rc == 0 && h->n_deleted) {
        uint32_t *del = malloc(h->n_deleted * sizeof(uint32_t));
        size_t nd = 0;
        for (size_t i = 0; del && i < h->n; i++)
            if (h->deleted[i])
                del[nd++] = (uint32_t)i;
        if (!del) {
            rc = hf_err_set(e, HF_ENOMEM, "out of memory saving index");
        } else {
            frame_begin(&fo, "deleted", 1);
            frame_put_bin(&fo, "ids", del, nd * sizeof(uint32_t));
            rc = channel_send(c, &fo, e);
        }
        free(del);
    }
    if (rc == 0 && h->codes) {
        quant_pack(h->codes, &fo);
        rc = channel_send(c, &fo, e);
        size_t cb = h->codes->code_bytes;
        uint8_t *cbuf = malloc(LINK_BATCH * cb);
        if (!cbuf && rc == 0)
            rc = hf_err_set(e, HF_ENOMEM, "out of memory saving codes");
        for (size_t s = 0; rc == 0 && s < h->n; s += LINK_BATCH) {
            size_t n = h->n - s < LINK_BATCH ? h->n - s : LINK_BATCH;
            for (size_t i = 0; i < n; i++)
                memcpy(cbuf + i * cb, hnsw_code(h, (uint32_t)(s + i)), cb);
            frame_begin(&fo, "codes", 3);
            frame_put_u64(&fo, "start", s);
            frame_put_u64(&fo, "n", n);
            frame_put_bin(&fo, "data", cbuf, n * cb);
            rc = channel_send(c, &fo, e);
        }
        free(cbuf);
    }
    if (rc == 0 && h->rot) {
        const rotation *r = h->rot;
        size_t B = r->dpad / ROTATION_BLOCK;
        if (r->rounds == 0) { /* an index written before the block kind */
            frame_begin(&fo, "rows", 3);
            frame_put_u64(&fo, "v", 1);
            frame_put_u64(&fo, "dpad", r->dpad);
            frame_put_bin(&fo, "rot", r->dense, r->dpad * r->dpad * sizeof(float));
        } else {
            frame_begin(&fo, "rows", 5);
            frame_put_u64(&fo, "v", 2);
            frame_put_u64(&fo, "dpad", r->dpad);
            frame_put_u64(&fo, "rounds", r->rounds);
            frame_put_bin(&fo, "signs", r->signs, r->rounds * r->dpad * sizeof(float));
            frame_put_bin(&fo, "mix", r->mix, r->rounds * B * B * sizeof(float));
        }
        rc = channel_send(c, &fo, e);
    }
    free(buf);
    free(nodes);
    free(deg);
    free(ids);
    frame_out_free(&fo);
    return rc;
}

/* ---- loading ---- */

typedef struct load_state {
    quant *q;       /* codebook, until the end frame */
    uint8_t *codes; /* codes received so far */
    size_t ncodes;
    hnsw *h;
    uint64_t count, entry;
    int64_t max_level;
    int seen_links;
    size_t max_dim; /* refuse a header claiming more */
} load_state;

static int want_u64(const frame_in *f, const char *key, uint64_t *v, hf_err *e)
{
    int rc = frame_get_u64(f, key, v, e);
    if (rc == HF_EOF)
        return hf_err_set(e, HF_EDATA, "%s frame lacks \"%s\"", f->type, key);
    return rc;
}

static int want_bin(const frame_in *f, const char *key, const void **p, size_t *len, hf_err *e)
{
    int rc = frame_get_bin(f, key, p, len, e);
    if (rc == HF_EOF)
        return hf_err_set(e, HF_EDATA, "%s frame lacks \"%s\"", f->type, key);
    return rc;
}

static int load_header(load_state *st, const frame_in *f, hf_err *e)
{
    char schema[64], metric[32], dtype[16] = "f32";
    uint64_t v, dim, M, M0, efc, seed;
    double maxl;
    int rc;
    if ((rc = frame_get_str(f, "schema", schema, sizeof schema, e)) != 0)
        return rc == HF_EOF ? hf_err_set(e, HF_EDATA, "header lacks \"schema\"") : rc;
    if (strcmp(schema, STREAM_INDEX) != 0)
        return hf_err_set(e, HF_EDATA, "stream is \"%s\", not an index (%s)", schema, STREAM_INDEX);
    if ((rc = want_u64(f, "v", &v, e)) || (rc = want_u64(f, "dim", &dim, e)) ||
        (rc = want_u64(f, "count", &st->count, e)) || (rc = want_u64(f, "M", &M, e)) ||
        (rc = want_u64(f, "M0", &M0, e)) || (rc = want_u64(f, "ef_construction", &efc, e)) ||
        (rc = want_u64(f, "seed", &seed, e)) || (rc = want_u64(f, "entry", &st->entry, e)))
        return rc;
    if ((rc = frame_get_f64(f, "max_level", &maxl, e)) != 0)
        return rc == HF_EOF ? hf_err_set(e, HF_EDATA, "header lacks \"max_level\"") : rc;
    if ((rc = frame_get_str(f, "metric", metric, sizeof metric, e)) != 0)
        return rc == HF_EOF ? hf_err_set(e, HF_EDATA, "header lacks \"metric\"") : rc;
    rc = frame_get_str(f, "dtype", dtype, sizeof dtype, e);
    if (rc && rc != HF_EOF)
        return rc;
    if (v != 1)
        return hf_err_set(e, HF_EDATA, "index version %llu not supported (this build reads 1)",
                          (unsigned long long)v);
    if (strcmp(dtype, "f32") != 0)
        return hf_err_set(e, HF_EDATA, "index dtype \"%s\" not supported", dtype);
    if (maxl < -1 || maxl > HNSW_MAX_LEVEL)
        return hf_err_set(e, HF_EDATA, "max_level %g out of range", maxl);
    if (st->count > UINT32_MAX - 1)
        return hf_err_set(e, HF_EDATA, "count %llu too large", (unsigned long long)st->count);
    st->max_level = (int64_t)maxl;
    hnsw_params p = {
        .M = (uint32_t)M, .M0 = (uint32_t)M0, .ef_construction = (uint32_t)efc, .seed = seed};
    if (M > 1024 || M0 > 4096 || efc > UINT32_MAX)
        return hf_err_set(e, HF_EDATA, "M=%llu M0=%llu out of range", (unsigned long long)M,
                          (unsigned long long)M0);
    if ((rc = metric_parse(metric, &p.metric, e)) != 0)
        return hf_err_set(e, HF_EDATA, "%s", e->msg);
    if (dim == 0 || dim > st->max_dim)
        return hf_err_set(e, HF_EDATA, "dimension %llu out of range 1..%zu",
                          (unsigned long long)dim, st->max_dim);
    rc = hnsw_new(&p, (size_t)dim, &st->h, e);
    if (rc)
        return hf_err_set(e, HF_EDATA, "%s", e->msg);
    /* Reserve for the declared count, but never more than 1 GiB up front:
     * a hostile header must not buy memory the frames do not fill. */
    size_t cap = (size_t)st->count, lim = ((size_t)1 << 30) / st->h->node_bytes;
    return cap ? hnsw_reserve(st->h, cap < lim ? cap : lim, e) : 0;
}

static int load_vectors(load_state *st, const frame_in *f, hf_err *e)
{
    hnsw *h = st->h;
    uint64_t start, n;
    const void *data, *lv;
    size_t len, lvlen;
    int rc;
    if ((rc = want_u64(f, "start", &start, e)) || (rc = want_u64(f, "n", &n, e)) ||
        (rc = want_bin(f, "data", &data, &len, e)) || (rc = want_bin(f, "levels", &lv, &lvlen, e)))
        return rc;
    if (st->seen_links)
        return hf_err_set(e, HF_EDATA, "vectors frame after links frames");
    if (start != h->n)
        return hf_err_set(e, HF_EDATA, "vectors start at %llu, expected %zu",
                          (unsigned long long)start, h->n);
    if (n > st->count - h->n)
        return hf_err_set(e, HF_EDATA, "more vectors than the header's count %llu",
                          (unsigned long long)st->count);
    if (len != n * h->dim * sizeof(float) || lvlen != n)
        return hf_err_set(e, HF_EDATA, "vectors frame sizes do not match n=%llu, dim=%zu",
                          (unsigned long long)n, h->dim);
    float *row = malloc(h->dim * sizeof(float));
    if (!row)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        memcpy(row, (const char *)data + i * h->dim * sizeof(float), h->dim * sizeof(float));
        int level = ((const uint8_t *)lv)[i];
        if (level > st->max_level)
            rc = hf_err_set(e, HF_EDATA, "node %llu has level %d above max_level %lld",
                            (unsigned long long)(start + i), level, (long long)st->max_level);
        else
            rc = hnsw_append_with_level(h, row, level, e);
    }
    free(row);
    return rc;
}

static int load_links(load_state *st, const frame_in *f, hf_err *e)
{
    hnsw *h = st->h;
    uint64_t level;
    const void *nodes_p, *deg_p, *ids_p;
    size_t nlen, dlen, ilen;
    int rc;
    if ((rc = want_u64(f, "level", &level, e)) || (rc = want_bin(f, "nodes", &nodes_p, &nlen, e)) ||
        (rc = want_bin(f, "deg", &deg_p, &dlen, e)) || (rc = want_bin(f, "ids", &ids_p, &ilen, e)))
        return rc;
    st->seen_links = 1;
    if (h->n != st->count)
        return hf_err_set(e, HF_EDATA, "links before all %llu vectors (have %zu)",
                          (unsigned long long)st->count, h->n);
    if (level > (uint64_t)st->max_level)
        return hf_err_set(e, HF_EDATA, "links for level %llu above max_level",
                          (unsigned long long)level);
    if (nlen != dlen || nlen % 4 || ilen % 4)
        return hf_err_set(e, HF_EDATA, "links frame arrays have inconsistent sizes");
    size_t cnt = nlen / 4, nid = ilen / 4, used = 0;
    uint32_t maxdeg = hnsw_maxdeg(h, (int)level);
    for (size_t i = 0; i < cnt; i++) {
        uint32_t node, deg;
        memcpy(&node, (const char *)nodes_p + 4 * i, 4);
        memcpy(&deg, (const char *)deg_p + 4 * i, 4);
        if (node >= h->n || h->levels[node] < level)
            return hf_err_set(e, HF_EDATA, "links for node %u at level %llu: no such node", node,
                              (unsigned long long)level);
        if (deg > maxdeg || deg > nid - used)
            return hf_err_set(e, HF_EDATA, "node %u has degree %u (max %u or ids run out)", node,
                              deg, maxdeg);
        uint32_t *ln = hnsw_links(h, node, (int)level);
        for (uint32_t j = 0; j < deg; j++) {
            uint32_t id;
            memcpy(&id, (const char *)ids_p + 4 * (used + j), 4);
            if (id >= h->n)
                return hf_err_set(e, HF_EDATA, "node %u links to %u, beyond %zu nodes", node, id,
                                  h->n);
            ln[1 + j] = id;
        }
        ln[0] = deg;
        used += deg;
    }
    if (used != nid)
        return hf_err_set(e, HF_EDATA, "links frame has %zu ids but degrees sum to %zu", nid, used);
    return 0;
}

static int load_deleted(load_state *st, const frame_in *f, hf_err *e)
{
    const void *p;
    size_t len;
    int rc = want_bin(f, "ids", &p, &len, e);
    if (rc)
        return rc;
    if (len % 4)
        return hf_err_set(e, HF_EDATA, "deleted ids size %zu not a multiple of 4", len);
    for (size_t i = 0; i < len / 4; i++) {
        uint32_t id;
        memcpy(&id, (const char *)p + 4 * i, 4);
        if ((rc = hnsw_mark_deleted(st->h, id, e)) != 0)
            return hf_err_set(e, HF_EDATA, "%s", e->msg);
    }
    return 0;
}

static int load_perm(load_state *st, const frame_in *f, hf_err *e)
{
    hnsw *h = st->h;
    const void *p;
    size_t len;
    int rc = want_bin(f, "order", &p, &len, e);
    if (rc)
        return rc;
    if (h->perm)
        return hf_err_set(e, HF_EDATA, "second perm frame");
    if (len != h->dim * sizeof(uint32_t))
        return hf_err_set(e, HF_EDATA, "perm order has %zu bytes, dimension %zu needs %zu", len,
                          h->dim, h->dim * sizeof(uint32_t));
    uint32_t *perm = malloc(len);
    uint8_t *seen = calloc(h->dim, 1);
    if (!perm || !seen) {
        free(perm);
        free(seen);
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    }
    memcpy(perm, p, len);
    for (size_t j = 0; j < h->dim; j++) {
        if (perm[j] >= h->dim || seen[perm[j]]) {
            free(perm);
            free(seen);
            return hf_err_set(e, HF_EDATA, "perm order is not a permutation of 0..%zu", h->dim - 1);
        }
        seen[perm[j]] = 1;
    }
    free(seen);
    h->perm = perm;
    return 0;
}

static int load_codebook(load_state *st, const frame_in *f, hf_err *e)
{
    if (st->q)
        return hf_err_set(e, HF_EDATA, "second codebook frame");
    return quant_unpack(f, &st->q, e);
}

static int load_codes(load_state *st, const frame_in *f, hf_err *e)
{
    uint64_t start, n;
    const void *p;
    size_t len;
    int rc;
    if (!st->q)
        return hf_err_set(e, HF_EDATA, "codes frame before the codebook");
    if ((rc = want_u64(f, "start", &start, e)) || (rc = want_u64(f, "n", &n, e)) ||
        (rc = want_bin(f, "data", &p, &len, e)))
        return rc;
    size_t cb = st->q->code_bytes;
    if (start != st->ncodes || n > st->count - st->ncodes || len != n * cb)
        return hf_err_set(e, HF_EDATA, "codes frame start %llu / n %llu / %zu bytes inconsistent",
                          (unsigned long long)start, (unsigned long long)n, len);
    uint8_t *grown = realloc(st->codes, (st->ncodes + n) * cb + 1);
    if (!grown)
        return hf_err_set(e, HF_ENOMEM, "out of memory for codes");
    st->codes = grown;
    memcpy(st->codes + st->ncodes * cb, p, len);
    st->ncodes += n;
    return 0;
}

/* A bin of exactly `count` f32 values, copied (payloads need not be
 * aligned). */
static int want_floats(const frame_in *f, const char *key, size_t count, float **out, hf_err *e)
{
    const void *p;
    size_t len;
    int rc = want_bin(f, key, &p, &len, e);
    if (rc)
        return rc;
    if (len != count * sizeof(float))
        return hf_err_set(e, HF_EDATA, "rows frame: \"%s\" holds %zu bytes, %zu expected", key, len,
                          count * sizeof(float));
    *out = malloc(len ? len : 1);
    if (!*out)
        return hf_err_set(e, HF_ENOMEM, "out of memory for the rotation");
    memcpy(*out, p, len);
    return 0;
}

/* v1: a dense rotation matrix; v2: the block kind (rotation.h). */
static int load_rows(load_state *st, const frame_in *f, hf_err *e)
{
    uint64_t v, dpad, rounds = 0;
    int rc;
    if (st->h->rot)
        return hf_err_set(e, HF_EDATA, "second rows frame");
    if ((rc = want_u64(f, "v", &v, e)) || (rc = want_u64(f, "dpad", &dpad, e)))
        return rc;
    if (v != 1 && v != 2)
        return hf_err_set(e, HF_EDATA, "rows frame version %llu (this build reads 1 and 2)",
                          (unsigned long long)v);
    if (dpad != hnsw_rows_dpad(st->h->dim))
        return hf_err_set(e, HF_EDATA, "rows frame: dpad %llu does not fit dimension %zu",
                          (unsigned long long)dpad, st->h->dim);
    if (v == 2 && (rc = want_u64(f, "rounds", &rounds, e)))
        return rc;
    if (v == 2 && (rounds == 0 || rounds > 16))
        return hf_err_set(e, HF_EDATA, "rows frame: rounds %llu (1 to 16)",
                          (unsigned long long)rounds);
    size_t D = (size_t)dpad, B = D / ROTATION_BLOCK;
    float *a = NULL, *b = NULL;
    rotation *r = NULL;
    if (v == 1)
        rc = want_floats(f, "rot", D * D, &a, e);
    else
        rc = want_floats(f, "signs", (size_t)rounds * D, &a, e);
    if (rc == 0 && v == 2)
        rc = want_floats(f, "mix", (size_t)rounds * B * B, &b, e);
    if (rc == 0)
        rc = v == 1 ? rotation_from_dense(D, a, &r, e)
                    : rotation_from_blocks(D, (unsigned)rounds, a, b, &r, e);
    free(a);
    free(b);
    if (rc == 0 && (rc = hnsw_rows_adopt(st->h, r, e)) != 0)
        rotation_destroy(&r);
    return rc;
}

static int load_finish(load_state *st, const frame_in *f, hf_err *e)
{
    hnsw *h = st->h;
    uint64_t count;
    int rc = want_u64(f, "count", &count, e);
    if (rc)
        return rc;
    if (count != h->n || h->n != st->count)
        return hf_err_set(e, HF_EDATA, "index holds %zu nodes, header says %llu, end says %llu",
                          h->n, (unsigned long long)st->count, (unsigned long long)count);
    if (h->n == 0)
        return 0;
    int top = -1;
    for (size_t i = 0; i < h->n; i++)
        if (h->levels[i] > top)
            top = h->levels[i];
    if (st->entry >= h->n || h->levels[st->entry] != st->max_level || top != st->max_level)
        return hf_err_set(e, HF_EDATA, "entry point %llu / max_level %lld inconsistent with nodes",
                          (unsigned long long)st->entry, (long long)st->max_level);
    h->entry = (uint32_t)st->entry;
    h->max_level = (int)st->max_level;
    if (h->perm) { /* reorder the stored dimensions as they were in memory */
        float *tmp = malloc(h->dim * sizeof(float));
        if (!tmp)
            return hf_err_set(e, HF_ENOMEM, "out of memory");
        for (size_t i = 0; i < h->n; i++) {
            float *v = hnsw_vec(h, (uint32_t)i);
            hnsw_permute_query(h, v, tmp);
            memcpy(v, tmp, h->dim * sizeof(float));
        }
        free(tmp);
    }
    if (st->q) {
        quant *q = st->q;
        st->q = NULL; /* adopted by the graph, even on failure */
        if (st->ncodes != h->n)
            return hf_err_set(e, HF_EDATA, "index has %zu codes for %zu nodes", st->ncodes, h->n);
        return hnsw_codes_adopt(h, q, st->codes, st->ncodes, e);
    }
    return 0;
}

int hnsw_load(channel *c, hnsw **out, hnsw_other_fn other, void *arg, hf_err *e)
{
    return hnsw_load_limited(c, (size_t)1 << 20, out, other, arg, e);
}

int hnsw_load_limited(channel *c, size_t max_dim, hnsw **out, hnsw_other_fn other, void *arg,
                      hf_err *e)
{
    *out = NULL;
    load_state st = {.max_dim = max_dim < ((size_t)1 << 20) ? max_dim : (size_t)1 << 20};
    frame_in f;
    int rc, done = 0;
    while (!done) {
        rc = channel_recv(c, &f, e);
        if (rc == HF_EOF) {
            rc = hf_err_set(e, HF_EDATA, "frame %llu: truncated index (no end frame)",
                            (unsigned long long)channel_frames(c) + 1);
            break;
        }
        if (rc)
            break;
        if (!st.h && strcmp(f.type, "header") != 0) {
            rc = hf_err_set(e, HF_EDATA, "frame %llu: expected a header frame, got \"%s\"",
                            (unsigned long long)f.index, f.type);
            break;
        }
        if (strcmp(f.type, "header") == 0)
            rc = st.h ? hf_err_set(e, HF_EDATA, "second header") : load_header(&st, &f, e);
        else if (strcmp(f.type, "vectors") == 0)
            rc = load_vectors(&st, &f, e);
        else if (strcmp(f.type, "links") == 0)
            rc = load_links(&st, &f, e);
        else if (strcmp(f.type, "deleted") == 0)
            rc = load_deleted(&st, &f, e);
        else if (strcmp(f.type, "perm") == 0)
            rc = load_perm(&st, &f, e);
        else if (strcmp(f.type, "codebook") == 0)
            rc = load_codebook(&st, &f, e);
        else if (strcmp(f.type, "codes") == 0)
            rc = load_codes(&st, &f, e);
        else if (strcmp(f.type, "rows") == 0)
            rc = load_rows(&st, &f, e);
        else if (strcmp(f.type, "end") == 0) {
            rc = load_finish(&st, &f, e);
            done = 1;
        } else if (other)
            rc = other(&f, arg, e);
        if (rc) {
            hf_err_prefix(e, "frame %llu", (unsigned long long)f.index);
            break;
        }
    }
    quant_destroy(&st.q);
    free(st.codes);
    if (rc) {
        hnsw_destroy(&st.h);
        return rc;
    }
    *out = st.h;
    return 0;
}
