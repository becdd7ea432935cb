/*
 * filt_labels.c - per-node label sets, their counts and postings, the wire
 * form, labels files and filters (see filt.h).
 *
 * Invariants: for node i < n its labels are pool[off[i] .. off[i]+cnt[i]),
 * sorted ascending and unique; a label's count in the hash is the number of
 * nodes with dead[i] == 0 carrying it. The hash never shrinks (labels whose
 * count fell to 0 stay as keys), so a look-up never meets a tombstone.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filt.h"

#define LABELS_BATCH 4096
#define HEMPTY UINT32_MAX

int filt_labels_new(filt_labels **out, hf_err *e)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return hf_err_set(e, HF_ENOMEM, "out of memory for the label table");
    /* the pool is never NULL, so runs of no labels point somewhere */
    (*out)->pool = malloc(4096 * sizeof(uint32_t));
    if (!(*out)->pool) {
        free(*out);
        *out = NULL;
        return hf_err_set(e, HF_ENOMEM, "out of memory for the label table");
    }
    (*out)->pool_cap = 4096;
    (*out)->post_version = UINT64_MAX;
    return 0;
}

static void free_postings(filt_labels *fl)
{
    free(fl->plab);
    free(fl->poff);
    free(fl->pids);
    fl->plab = fl->poff = fl->pids = NULL;
    fl->pn = 0;
    fl->post_version = UINT64_MAX;
}

void filt_labels_destroy(filt_labels **flp)
{
    if (!flp || !*flp)
        return;
    filt_labels *fl = *flp;
    free(fl->off);
    free(fl->cnt);
    free(fl->dead);
    free(fl->pool);
    free(fl->hkey);
    free(fl->hcnt);
    free_postings(fl);
    free(fl);
    *flp = NULL;
}

static size_t hash32(uint32_t x, size_t mask)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return (size_t)x & mask;
}

static int hash_grow(filt_labels *fl, hf_err *e)
{
    size_t nc = fl->hcap ? fl->hcap * 2 : 256;
    uint32_t *k = malloc(nc * sizeof *k), *c = malloc(nc * sizeof *c);
    if (!k || !c) {
        free(k);
        free(c);
        return hf_err_set(e, HF_ENOMEM, "out of memory for label counts");
    }
    for (size_t i = 0; i < nc; i++)
        k[i] = HEMPTY;
    for (size_t i = 0; i < fl->hcap; i++) {
        if (fl->hkey[i] == HEMPTY)
            continue;
        size_t p = hash32(fl->hkey[i], nc - 1);
        while (k[p] != HEMPTY)
            p = (p + 1) & (nc - 1);
        k[p] = fl->hkey[i];
        c[p] = fl->hcnt[i];
    }
    free(fl->hkey);
    free(fl->hcnt);
    fl->hkey = k;
    fl->hcnt = c;
    fl->hcap = nc;
    return 0;
}

/* The count slot of label l, inserted when absent (may grow the hash). */
static uint32_t *count_slot(filt_labels *fl, uint32_t l, hf_err *e)
{
    if ((fl->hused + 1) * 2 > fl->hcap && hash_grow(fl, e))
        return NULL;
    size_t p = hash32(l, fl->hcap - 1);
    while (fl->hkey[p] != HEMPTY && fl->hkey[p] != l)
        p = (p + 1) & (fl->hcap - 1);
    if (fl->hkey[p] == HEMPTY) {
        fl->hkey[p] = l;
        fl->hcnt[p] = 0;
        fl->hused++;
    }
    return &fl->hcnt[p];
}

uint32_t filt_label_count(const filt_labels *fl, uint32_t l)
{
    if (!fl->hcap)
        return 0;
    size_t p = hash32(l, fl->hcap - 1);
    while (fl->hkey[p] != HEMPTY) {
        if (fl->hkey[p] == l)
            return fl->hcnt[p];
        p = (p + 1) & (fl->hcap - 1);
    }
    return 0;
}

static int grow_nodes(filt_labels *fl, size_t n, hf_err *e)
{
    if (n <= fl->cap)
        return 0;
    size_t nc = fl->cap ? fl->cap : 1024;
    while (nc < n)
        nc *= 2;
    uint32_t *off = realloc(fl->off, nc * sizeof *off);
    if (off)
        fl->off = off;
    uint16_t *cnt = realloc(fl->cnt, nc * sizeof *cnt);
    if (cnt)
        fl->cnt = cnt;
    uint8_t *dead = realloc(fl->dead, nc);
    if (dead)
        fl->dead = dead;
    if (!off || !cnt || !dead)
        return hf_err_set(e, HF_ENOMEM, "out of memory for labels of %zu nodes", nc);
    fl->cap = nc;
    return 0;
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Sort and deduplicate a[0..n); returns the new length. */
static size_t sort_unique(uint32_t *a, size_t n)
{
    qsort(a, n, sizeof *a, u32_cmp);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (m == 0 || a[m - 1] != a[i])
            a[m++] = a[i];
    return m;
}

/* Drop the garbage runs: copy every node's run into a fresh pool. */
static int compact(filt_labels *fl, hf_err *e)
{
    size_t need = fl->pool_len - fl->garbage;
    uint32_t *np = malloc((need ? need : 1) * sizeof *np);
    if (!np)
        return hf_err_set(e, HF_ENOMEM, "out of memory compacting labels");
    size_t at = 0;
    for (size_t i = 0; i < fl->n; i++) {
        memcpy(np + at, fl->pool + fl->off[i], fl->cnt[i] * sizeof *np);
        fl->off[i] = (uint32_t)at;
        at += fl->cnt[i];
    }
    free(fl->pool);
    fl->pool = np;
    fl->pool_len = fl->pool_cap = at;
    fl->garbage = 0;
    return 0;
}

static void uncount(filt_labels *fl, uint32_t id)
{
    const uint32_t *l = fl->pool + fl->off[id];
    for (uint32_t j = 0; j < fl->cnt[id]; j++) {
        uint32_t *c = count_slot(fl, l[j], NULL); /* present: never grows */
        if (c && *c)
            (*c)--;
    }
}

int filt_labels_set(filt_labels *fl, uint32_t id, const uint32_t *lab, size_t n, hf_err *e)
{
    if (n > FILT_MAX_PER_VEC)
        return hf_err_set(e, HF_EDATA, "%zu labels (at most %u a vector)", n, FILT_MAX_PER_VEC);
    uint32_t tmp[FILT_MAX_PER_VEC] = {0};
    for (size_t j = 0; j < n; j++) {
        if (lab[j] > FILT_LABEL_MAX)
            return hf_err_set(e, HF_EDATA, "label %u above the limit %u", lab[j], FILT_LABEL_MAX);
        tmp[j] = lab[j];
    }
    n = sort_unique(tmp, n);
    if (grow_nodes(fl, (size_t)id + 1, e))
        return HF_ENOMEM;
    while (fl->n <= id) {
        fl->off[fl->n] = (uint32_t)fl->pool_len;
        fl->cnt[fl->n] = 0;
        fl->dead[fl->n] = 0;
        fl->n++;
        fl->live++;
    }
    /* counts first, so a failure leaves the table as it was */
    for (size_t j = 0; j < n; j++)
        if (!count_slot(fl, tmp[j], e))
            return HF_ENOMEM;
    if (fl->pool_len + n > fl->pool_cap) {
        size_t nc = fl->pool_cap ? fl->pool_cap * 2 : 4096;
        while (nc < fl->pool_len + n)
            nc *= 2;
        if (nc > UINT32_MAX)
            return hf_err_set(e, HF_ENOMEM, "more than 2^32 labels in one index");
        uint32_t *np = realloc(fl->pool, nc * sizeof *np);
        if (!np)
            return hf_err_set(e, HF_ENOMEM, "out of memory for labels");
        fl->pool = np;
        fl->pool_cap = nc;
    }
    if (!fl->dead[id])
        uncount(fl, id);
    else {
        fl->dead[id] = 0;
        fl->live++;
    }
    fl->garbage += fl->cnt[id];
    fl->off[id] = (uint32_t)fl->pool_len;
    fl->cnt[id] = (uint16_t)n;
    if (n)
        memcpy(fl->pool + fl->pool_len, tmp, n * sizeof *tmp);
    fl->pool_len += n;
    for (size_t j = 0; j < n; j++)
        (*count_slot(fl, tmp[j], NULL))++;
    fl->version++;
    if (fl->garbage > 4096 && fl->garbage * 2 > fl->pool_len)
        return compact(fl, e);
    return 0;
}

void filt_labels_kill(filt_labels *fl, uint32_t id)
{
    if (id >= fl->n || fl->dead[id])
        return;
    uncount(fl, id);
    fl->dead[id] = 1;
    fl->live--;
    fl->version++;
}

int filt_labels_permute(filt_labels *fl, const uint32_t *from, size_t n, hf_err *e)
{
    if (grow_nodes(fl, n, e))
        return HF_ENOMEM;
    uint32_t *off = malloc((n ? n : 1) * sizeof *off);
    uint16_t *cnt = malloc((n ? n : 1) * sizeof *cnt);
    uint8_t *dead = malloc(n ? n : 1);
    if (!off || !cnt || !dead) {
        free(off);
        free(cnt);
        free(dead);
        return hf_err_set(e, HF_ENOMEM, "out of memory renumbering labels");
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t f = from[i];
        off[i] = f < fl->n ? fl->off[f] : 0;
        cnt[i] = f < fl->n ? fl->cnt[f] : 0;
        dead[i] = f < fl->n ? fl->dead[f] : 0;
    }
    if (n) {
        memcpy(fl->off, off, n * sizeof *off);
        memcpy(fl->cnt, cnt, n * sizeof *cnt);
        memcpy(fl->dead, dead, n);
    }
    fl->n = n;
    free(off);
    free(cnt);
    free(dead);
    fl->version++;
    return 0;
}

int filt_postings_build(filt_labels *fl, hf_err *e)
{
    free_postings(fl);
    size_t nl = 0, total = 0;
    for (size_t i = 0; i < fl->hcap; i++)
        if (fl->hkey[i] != HEMPTY && fl->hcnt[i]) {
            nl++;
            total += fl->hcnt[i];
        }
    fl->plab = malloc((nl ? nl : 1) * sizeof *fl->plab);
    fl->poff = calloc(nl + 1, sizeof *fl->poff);
    fl->pids = malloc((total ? total : 1) * sizeof *fl->pids);
    if (!fl->plab || !fl->poff || !fl->pids) {
        free_postings(fl);
        return hf_err_set(e, HF_ENOMEM, "out of memory for label postings");
    }
    nl = 0;
    for (size_t i = 0; i < fl->hcap; i++)
        if (fl->hkey[i] != HEMPTY && fl->hcnt[i])
            fl->plab[nl++] = fl->hkey[i];
    qsort(fl->plab, nl, sizeof *fl->plab, u32_cmp);
    fl->pn = nl;
    for (size_t j = 0; j < nl; j++)
        fl->poff[j + 1] = fl->poff[j] + filt_label_count(fl, fl->plab[j]);
    uint32_t *fill = malloc((nl ? nl : 1) * sizeof *fill);
    if (!fill) {
        free_postings(fl);
        return hf_err_set(e, HF_ENOMEM, "out of memory for label postings");
    }
    memcpy(fill, fl->poff, nl * sizeof *fill);
    for (size_t i = 0; i < fl->n; i++) {
        if (fl->dead[i])
            continue;
        const uint32_t *l = fl->pool + fl->off[i];
        for (uint32_t j = 0; j < fl->cnt[i]; j++) {
            const uint32_t *p = bsearch(&l[j], fl->plab, nl, sizeof *fl->plab, u32_cmp);
            size_t at = (size_t)(p - fl->plab);
            fl->pids[fill[at]++] = (uint32_t)i;
        }
    }
    free(fill);
    fl->post_version = fl->version;
    return 0;
}

/* ---- wire form ---- */

static uint32_t rd32(const void *b, size_t i)
{
    uint32_t v;
    memcpy(&v, (const char *)b + 4 * i, 4);
    return v;
}

/* Walk a labels bin; for each row call fl's set when fl is non-NULL. */
static int wire_walk(filt_labels *fl, uint32_t first, const void *bin, size_t len, size_t n,
                     hf_err *e)
{
    if (len % 4)
        return hf_err_set(e, HF_EDATA, "labels is %zu bytes, not a multiple of 4", len);
    size_t words = len / 4, at = 0;
    uint32_t tmp[FILT_MAX_PER_VEC];
    for (size_t r = 0; r < n; r++) {
        if (at >= words)
            return hf_err_set(e, HF_EDATA, "labels end at row %zu of %zu", r, n);
        uint32_t c = rd32(bin, at++);
        if (c > FILT_MAX_PER_VEC)
            return hf_err_set(e, HF_EDATA, "row %zu has %u labels (at most %u)", r, c,
                              FILT_MAX_PER_VEC);
        if (c > words - at)
            return hf_err_set(e, HF_EDATA, "labels end inside row %zu of %zu", r, n);
        for (uint32_t j = 0; j < c; j++) {
            tmp[j] = rd32(bin, at + j);
            if (tmp[j] > FILT_LABEL_MAX)
                return hf_err_set(e, HF_EDATA, "row %zu: label %u above the limit %u", r, tmp[j],
                                  FILT_LABEL_MAX);
        }
        at += c;
        if (fl && filt_labels_set(fl, first + (uint32_t)r, tmp, c, e))
            return hf_err_prefix(e, "row %zu", r);
    }
    if (at != words)
        return hf_err_set(e, HF_EDATA, "labels has %zu words after its %zu rows", words - at, n);
    return 0;
}

int filt_wire_check(const void *bin, size_t len, size_t n, hf_err *e)
{
    return wire_walk(NULL, 0, bin, len, n, e);
}

int filt_wire_apply(filt_labels *fl, uint32_t first, const void *bin, size_t len, size_t n,
                    hf_err *e)
{
    int rc = wire_walk(NULL, 0, bin, len, n, e); /* whole or nothing */
    return rc ? rc : wire_walk(fl, first, bin, len, n, e);
}

int filt_wire_encode(const filt_labels *fl, uint32_t first, size_t n, uint32_t **buf, size_t *cap,
                     size_t *len, hf_err *e)
{
    size_t need = n;
    for (size_t i = 0; i < n; i++)
        if (first + i < fl->n)
            need += fl->cnt[first + i];
    if (need > *cap) {
        uint32_t *b = realloc(*buf, need * sizeof *b);
        if (!b)
            return hf_err_set(e, HF_ENOMEM, "out of memory encoding labels");
        *buf = b;
        *cap = need;
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const uint32_t *l;
        size_t c = filt_labels_of(fl, first + (uint32_t)i, &l);
        (*buf)[at++] = (uint32_t)c;
        if (c)
            memcpy(*buf + at, l, c * sizeof *l);
        at += c;
    }
    *len = at * sizeof(uint32_t);
    return 0;
}

int filt_labels_save(const filt_labels *fl, size_t n, channel *c, hf_err *e)
{
    frame_out fo;
    frame_out_init(&fo);
    uint32_t *buf = NULL;
    size_t cap = 0, len = 0;
    int rc = 0;
    for (size_t s = 0; rc == 0 && s < n; s += LABELS_BATCH) {
        size_t m = n - s < LABELS_BATCH ? n - s : LABELS_BATCH;
        if ((rc = filt_wire_encode(fl, (uint32_t)s, m, &buf, &cap, &len, e)) != 0)
            break;
        frame_begin(&fo, "labels", 3);
        frame_put_u64(&fo, "start", s);
        frame_put_u64(&fo, "n", m);
        frame_put_bin(&fo, "labels", buf, len);
        rc = channel_send(c, &fo, e);
    }
    free(buf);
    frame_out_free(&fo);
    return rc;
}

int filt_labels_take_frame(filt_labels *fl, const frame_in *f, size_t max_nodes, hf_err *e)
{
    uint64_t start, n;
    const void *p;
    size_t len;
    if (frame_get_u64(f, "start", &start, NULL) || frame_get_u64(f, "n", &n, NULL) ||
        frame_get_bin(f, "labels", &p, &len, NULL))
        return hf_err_set(e, HF_EDATA, "labels frame lacks \"start\", \"n\" or \"labels\"");
    if (start != fl->n || n == 0 || n > max_nodes || start > max_nodes - n)
        return hf_err_set(e, HF_EDATA,
                          "labels frame for nodes %llu+%llu does not follow node %zu of %zu",
                          (unsigned long long)start, (unsigned long long)n, fl->n, max_nodes);
    return filt_wire_apply(fl, (uint32_t)start, p, len, (size_t)n, e);
}

/* ---- text: labels files and --filters files ---- */

/* Parse the labels of one line into out[]; *n gets the count. */
static int parse_line(const char *s, uint32_t *out, size_t *n, hf_err *e)
{
    size_t c = 0;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
            s++;
        if (!*s)
            break;
        if (!isdigit((unsigned char)*s)) {
            const char *t = s;
            while (*t && *t != ' ' && *t != '\t' && *t != '\r' && *t != '\n')
                t++;
            return hf_err_set(e, HF_EDATA, "\"%.*s\" is not a label (an unsigned integer)",
                              (int)(t - s > 40 ? 40 : t - s), s);
        }
        errno = 0;
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (*end && *end != ' ' && *end != '\t' && *end != '\r' && *end != '\n')
            return hf_err_set(e, HF_EDATA, "\"%.*s\" is not a label (an unsigned integer)",
                              (int)(end - s + 1 > 40 ? 40 : end - s + 1), s);
        if (errno == ERANGE || v > FILT_LABEL_MAX)
            return hf_err_set(e, HF_EDATA, "label %.*s above the limit %u",
                              (int)(end - s > 40 ? 40 : end - s), s, FILT_LABEL_MAX);
        if (c == FILT_MAX_PER_VEC)
            return hf_err_set(e, HF_EDATA, "more than %u labels", FILT_MAX_PER_VEC);
        out[c++] = (uint32_t)v;
        s = end;
    }
    *n = c;
    return 0;
}

/* Read lines of a text file, calling fn(line number from 1, text). */
typedef int (*line_fn)(size_t line, const char *text, void *arg, hf_err *e);

static int each_line(const char *path, line_fn fn, void *arg, hf_err *e)
{
    FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!fp)
        return hf_err_set(e, HF_EOPEN, "cannot open: %s", strerror(errno));
    char *line = NULL;
    size_t cap = 0, ln = 0;
    ssize_t got;
    int rc = 0;
    while (rc == 0 && (got = getline(&line, &cap, fp)) >= 0) {
        ln++;
        if ((size_t)got != strlen(line))
            rc = hf_err_set(e, HF_EDATA, "line %zu: a NUL byte", ln);
        else if ((rc = fn(ln, line, arg, e)) != 0)
            hf_err_prefix(e, "line %zu", ln);
    }
    if (rc == 0 && ferror(fp))
        rc = hf_err_set(e, HF_EIO, "read error: %s", strerror(errno));
    free(line);
    if (fp != stdin)
        fclose(fp);
    return rc;
}

static int label_line(size_t line, const char *text, void *arg, hf_err *e)
{
    filt_labels *fl = arg;
    uint32_t lab[FILT_MAX_PER_VEC];
    size_t n;
    int rc = parse_line(text, lab, &n, e);
    return rc ? rc : filt_labels_set(fl, (uint32_t)(line - 1), lab, n, e);
}

int filt_labels_read_file(const char *path, filt_labels *fl, size_t *rows, hf_err *e)
{
    int rc = each_line(path, label_line, fl, e);
    *rows = fl->n;
    return rc;
}

int filt_query_set(filt_query *fq, const uint32_t *lab, size_t n, int all, hf_err *e)
{
    if (n > FILT_MAX_QUERY)
        return hf_err_set(e, HF_EDATA, "a filter of %zu labels (at most %u)", n, FILT_MAX_QUERY);
    for (size_t j = 0; j < n; j++) {
        if (lab[j] > FILT_LABEL_MAX)
            return hf_err_set(e, HF_EDATA, "filter label %u above the limit %u", lab[j],
                              FILT_LABEL_MAX);
        fq->lab[j] = lab[j];
    }
    fq->n = (uint32_t)sort_unique(fq->lab, n);
    fq->all = all;
    return 0;
}

int filt_query_parse(filt_query *fq, const char *line, int all, hf_err *e)
{
    uint32_t lab[FILT_MAX_PER_VEC];
    size_t n;
    int rc = parse_line(line, lab, &n, e);
    return rc ? rc : filt_query_set(fq, lab, n, all, e);
}

int filt_query_from_frame(filt_query *fq, const frame_in *f, hf_err *e)
{
    const msgpack_object *o = frame_find(f, "filter");
    fq->n = 0;
    fq->all = 0;
    if (!o || o->type == MSGPACK_OBJECT_NIL)
        return HF_EOF;
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return hf_err_set(e, HF_EDATA, "\"filter\" is not an array of labels");
    if (o->via.array.size > FILT_MAX_QUERY)
        return hf_err_set(e, HF_EDATA, "a filter of %u labels (at most %u)", o->via.array.size,
                          FILT_MAX_QUERY);
    uint32_t lab[FILT_MAX_QUERY];
    for (uint32_t j = 0; j < o->via.array.size; j++) {
        const msgpack_object *x = &o->via.array.ptr[j];
        if (x->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return hf_err_set(e, HF_EDATA, "filter element %u is not an unsigned integer", j);
        if (x->via.u64 > FILT_LABEL_MAX)
            return hf_err_set(e, HF_EDATA, "filter label %llu above the limit %u",
                              (unsigned long long)x->via.u64, FILT_LABEL_MAX);
        lab[j] = (uint32_t)x->via.u64;
    }
    int all = 0;
    const msgpack_object *a = frame_find(f, "filter_all");
    if (a && a->type == MSGPACK_OBJECT_BOOLEAN)
        all = a->via.boolean;
    else if (a && a->type != MSGPACK_OBJECT_NIL)
        return hf_err_set(e, HF_EDATA, "\"filter_all\" is not a boolean");
    return filt_query_set(fq, lab, o->via.array.size, all, e);
}

typedef struct qfile {
    filt_query *q;
    size_t n, cap;
    int all;
} qfile;

static int query_line(size_t line, const char *text, void *arg, hf_err *e)
{
    (void)line;
    qfile *qf = arg;
    if (qf->n == qf->cap) {
        size_t nc = qf->cap ? qf->cap * 2 : 256;
        filt_query *x = realloc(qf->q, nc * sizeof *x);
        if (!x)
            return hf_err_set(e, HF_ENOMEM, "out of memory for filters");
        qf->q = x;
        qf->cap = nc;
    }
    return filt_query_parse(&qf->q[qf->n++], text, qf->all, e);
}

int filt_query_read_file(const char *path, int all, filt_query **out, size_t *n, hf_err *e)
{
    qfile qf = {.all = all};
    int rc = each_line(path, query_line, &qf, e);
    if (rc) {
        free(qf.q);
        return rc;
    }
    *out = qf.q;
    *n = qf.n;
    return 0;
}

/* ---- matching ---- */

int filt_match(const filt_labels *fl, const filt_query *fq, uint32_t id)
{
    const uint32_t *l;
    size_t c = filt_labels_of(fl, id, &l);
    size_t i = 0, j = 0, hit = 0;
    while (i < c && j < fq->n) {
        if (l[i] < fq->lab[j])
            i++;
        else if (l[i] > fq->lab[j]) {
            if (fq->all)
                return 0;
            j++;
        } else {
            if (!fq->all)
                return 1;
            hit++;
            i++;
            j++;
        }
    }
    return fq->all && hit == fq->n;
}

size_t filt_estimate(const filt_labels *fl, const filt_query *fq)
{
    if (fq->all) {
        size_t m = SIZE_MAX;
        for (uint32_t j = 0; j < fq->n; j++) {
            size_t c = filt_label_count(fl, fq->lab[j]);
            if (c < m)
                m = c;
        }
        return fq->n ? m : fl->live;
    }
    size_t s = 0;
    for (uint32_t j = 0; j < fq->n; j++)
        s += filt_label_count(fl, fq->lab[j]);
    return s > fl->live ? fl->live : s;
}
