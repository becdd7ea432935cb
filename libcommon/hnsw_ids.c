/*
 * hnsw_ids.c - see hnsw_ids.h.
 */
#include "hnsw_ids.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IDS_BATCH 4096
#define EMPTY UINT32_MAX

/* splitmix64 finaliser: external ids are often dense or strided, which a
 * plain modulo would cluster */
static size_t hash64(uint64_t x, size_t mask)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (size_t)x & mask;
}

int hnsw_ids_new(hnsw_ids **out, hf_err *e)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return hf_err_set(e, HF_ENOMEM, "out of memory for the id table");
    return 0;
}

void hnsw_ids_destroy(hnsw_ids **idsp)
{
    if (!idsp || !*idsp)
        return;
    hnsw_ids *ids = *idsp;
    free(ids->ext);
    free(ids->hkey);
    free(ids->hslot);
    free(ids);
    *idsp = NULL;
}

int hnsw_ids_resize(hnsw_ids *ids, size_t n, hf_err *e)
{
    if (n > ids->cap) {
        size_t nc = ids->cap ? ids->cap : 1024;
        while (nc < n)
            nc *= 2;
        uint64_t *x = realloc(ids->ext, nc * sizeof *x);
        if (!x)
            return hf_err_set(e, HF_ENOMEM, "out of memory for %zu ids", nc);
        ids->ext = x;
        ids->cap = nc;
    }
    for (size_t i = ids->n; i < n; i++)
        ids->ext[i] = i;
    if (n > ids->n)
        ids->n = n;
    return 0;
}

static int rehash(hnsw_ids *ids, size_t ncap, hf_err *e)
{
    uint64_t *k = malloc(ncap * sizeof *k);
    uint32_t *s = malloc(ncap * sizeof *s);
    if (!k || !s) {
        free(k);
        free(s);
        return hf_err_set(e, HF_ENOMEM, "out of memory for the id hash");
    }
    for (size_t i = 0; i < ncap; i++)
        s[i] = EMPTY;
    for (size_t i = 0; i < ids->hcap; i++) {
        if (ids->hslot[i] == EMPTY)
            continue;
        size_t p = hash64(ids->hkey[i], ncap - 1);
        while (s[p] != EMPTY)
            p = (p + 1) & (ncap - 1);
        k[p] = ids->hkey[i];
        s[p] = ids->hslot[i];
    }
    free(ids->hkey);
    free(ids->hslot);
    ids->hkey = k;
    ids->hslot = s;
    ids->hcap = ncap;
    return 0;
}

uint32_t hnsw_ids_find(const hnsw_ids *ids, uint64_t ext)
{
    if (!ids->hcap)
        return EMPTY;
    size_t mask = ids->hcap - 1, p = hash64(ext, mask);
    while (ids->hslot[p] != EMPTY) {
        if (ids->hkey[p] == ext)
            return ids->hslot[p];
        p = (p + 1) & mask;
    }
    return EMPTY;
}

int hnsw_ids_bind(hnsw_ids *ids, uint32_t slot, uint64_t ext, hf_err *e)
{
    int rc;
    if (slot >= ids->n && (rc = hnsw_ids_resize(ids, (size_t)slot + 1, e)) != 0)
        return rc;
    if (2 * (ids->hused + 1) > ids->hcap &&
        (rc = rehash(ids, ids->hcap ? 2 * ids->hcap : 1024, e)) != 0)
        return rc;
    size_t mask = ids->hcap - 1, p = hash64(ext, mask);
    while (ids->hslot[p] != EMPTY) {
        if (ids->hkey[p] == ext) {
            if (ids->hslot[p] == slot)
                return 0;
            return hf_err_set(e, HF_EDATA, "id %llu names two vectors (slots %u and %u)",
                              (unsigned long long)ext, ids->hslot[p], slot);
        }
        p = (p + 1) & mask;
    }
    ids->hkey[p] = ext;
    ids->hslot[p] = slot;
    ids->hused++;
    ids->ext[slot] = ext;
    return 0;
}

int hnsw_ids_unbind(hnsw_ids *ids, uint64_t ext)
{
    if (!ids->hcap)
        return -1;
    size_t mask = ids->hcap - 1, p = hash64(ext, mask);
    while (ids->hslot[p] != EMPTY && ids->hkey[p] != ext)
        p = (p + 1) & mask;
    if (ids->hslot[p] == EMPTY)
        return -1;
    /* backward shift: move later members of the run into the hole when
     * their home position does not lie cyclically in (hole, their place] */
    size_t hole = p;
    for (size_t q = (p + 1) & mask; ids->hslot[q] != EMPTY; q = (q + 1) & mask) {
        size_t home = hash64(ids->hkey[q], mask);
        int between = hole <= q ? (home > hole && home <= q) : (home > hole || home <= q);
        if (!between) {
            ids->hkey[hole] = ids->hkey[q];
            ids->hslot[hole] = ids->hslot[q];
            hole = q;
        }
    }
    ids->hslot[hole] = EMPTY;
    ids->hused--;
    return 0;
}

int hnsw_ids_identity(hnsw_ids *ids, size_t n, hf_err *e)
{
    int rc = hnsw_ids_resize(ids, n, e);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = hnsw_ids_bind(ids, (uint32_t)i, i, e);
    return rc;
}

int hnsw_ids_save(const hnsw_ids *ids, size_t n, channel *c, hf_err *e)
{
    frame_out fo;
    frame_out_init(&fo);
    int rc = 0;
    for (size_t s = 0; rc == 0 && s < n; s += IDS_BATCH) {
        size_t m = n - s < IDS_BATCH ? n - s : IDS_BATCH;
        frame_begin(&fo, "ids", 3);
        frame_put_u64(&fo, "start", s);
        frame_put_u64(&fo, "n", m);
        frame_put_bin(&fo, "ids", ids->ext + s, m * sizeof(uint64_t));
        rc = channel_send(c, &fo, e);
    }
    frame_out_free(&fo);
    return rc;
}

int hnsw_ids_take_frame(hnsw_ids *ids, const frame_in *f, size_t max_slots, hf_err *e)
{
    uint64_t start, n;
    const void *p;
    size_t len;
    if (frame_get_u64(f, "start", &start, NULL) || frame_get_u64(f, "n", &n, NULL) ||
        frame_get_bin(f, "ids", &p, &len, NULL))
        return hf_err_set(e, HF_EDATA, "ids frame lacks \"start\", \"n\" or \"ids\"");
    if (start != ids->n || n > max_slots || start > max_slots - n || len != n * sizeof(uint64_t))
        return hf_err_set(e, HF_EDATA,
                          "ids frame for slots %llu+%llu (%zu bytes) does not follow slot %zu "
                          "of %zu",
                          (unsigned long long)start, (unsigned long long)n, len, ids->n, max_slots);
    int rc = hnsw_ids_resize(ids, (size_t)(start + n), e);
    if (rc == 0)
        memcpy(ids->ext + start, p, len);
    return rc;
}

static int push_id(uint64_t **a, size_t *n, size_t *cap, uint64_t v)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 4096;
        uint64_t *x = realloc(*a, nc * sizeof *x);
        if (!x)
            return -1;
        *a = x;
        *cap = nc;
    }
    (*a)[(*n)++] = v;
    return 0;
}

/* .npy: magic, version, header length, a Python dict literal, then data */
static int read_npy(FILE *fp, const char *path, uint64_t **out, size_t *n, hf_err *e)
{
    unsigned char pre[10];
    if (fread(pre, 1, 10, fp) != 10)
        return hf_err_set(e, HF_EDATA, "%s: truncated npy header", path);
    size_t hl = pre[8] | (size_t)pre[9] << 8;
    if (pre[6] >= 2) {
        unsigned char more[2];
        if (fread(more, 1, 2, fp) != 2)
            return hf_err_set(e, HF_EDATA, "%s: truncated npy header", path);
        hl |= (size_t)more[0] << 16 | (size_t)more[1] << 24;
    }
    if (hl == 0 || hl > 65536)
        return hf_err_set(e, HF_EDATA, "%s: npy header of %zu bytes", path, hl);
    char *hdr = calloc(hl + 1, 1);
    if (!hdr)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    if (fread(hdr, 1, hl, fp) != hl) {
        free(hdr);
        return hf_err_set(e, HF_EDATA, "%s: truncated npy header", path);
    }
    char kind = 0;
    int width = 0, fortran = 0;
    unsigned long long rows = 0, cols = 1;
    const char *d = strstr(hdr, "'descr'");
    const char *sh = strstr(hdr, "'shape'");
    if (strstr(hdr, "'fortran_order': True"))
        fortran = 1;
    if (d) {
        d = strchr(d + 7, '\'');
        if (d && (d[1] == '<' || d[1] == '|' || d[1] == '=') && (d[2] == 'i' || d[2] == 'u') &&
            isdigit((unsigned char)d[3]) && d[4] == '\'') {
            kind = d[2];
            width = d[3] - '0';
        }
    }
    int shape_ok = 0;
    if (sh && (sh = strchr(sh, '('))) {
        int got = sscanf(sh, "(%llu, %llu)", &rows, &cols);
        shape_ok = (got == 1 && strstr(sh, ",)") != NULL) || (got == 2 && cols == 1);
    }
    free(hdr);
    if (!kind || (width != 1 && width != 2 && width != 4 && width != 8) || !shape_ok || fortran)
        return hf_err_set(e, HF_EDATA,
                          "%s: ids npy must be a 1-D (or n x 1) array of integers, C order", path);
    if (rows > ((size_t)1 << 32))
        return hf_err_set(e, HF_EDATA, "%s: %llu ids is too many", path, rows);
    uint64_t *a = malloc((rows ? rows : 1) * sizeof *a);
    if (!a)
        return hf_err_set(e, HF_ENOMEM, "out of memory for %llu ids", rows);
    for (size_t i = 0; i < rows; i++) {
        unsigned char b[8] = {0};
        if (fread(b, 1, (size_t)width, fp) != (size_t)width) {
            free(a);
            return hf_err_set(e, HF_EDATA, "%s: npy data ends after %zu of %llu ids", path, i,
                              rows);
        }
        uint64_t v = 0;
        for (int k = 0; k < width; k++)
            v |= (uint64_t)b[k] << (8 * k);
        if (kind == 'i' && (b[width - 1] & 0x80)) {
            free(a);
            return hf_err_set(e, HF_EDATA, "%s: id %zu is negative", path, i);
        }
        a[i] = v;
    }
    *out = a;
    *n = (size_t)rows;
    return 0;
}

int hnsw_ids_read_file(const char *path, uint64_t **out, size_t *n, hf_err *e)
{
    *out = NULL;
    *n = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return hf_err_set(e, HF_EOPEN, "%s: %s", path, strerror(errno));
    unsigned char magic[6] = {0};
    size_t got = fread(magic, 1, 6, fp);
    rewind(fp);
    int rc = 0;
    if (got == 6 && memcmp(magic, "\x93NUMPY", 6) == 0) {
        rc = read_npy(fp, path, out, n, e);
        fclose(fp);
        return rc;
    }
    char line[256];
    size_t lineno = 0, cap = 0;
    uint64_t *a = NULL;
    while (rc == 0 && fgets(line, sizeof line, fp)) {
        lineno++;
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            continue;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        while (isspace((unsigned char)*end))
            end++;
        if (!isdigit((unsigned char)*p) || errno || *end)
            rc = hf_err_set(e, HF_EDATA, "%s: line %zu: not an unsigned integer", path, lineno);
        else if (push_id(&a, n, &cap, v))
            rc = hf_err_set(e, HF_ENOMEM, "out of memory");
    }
    fclose(fp);
    if (rc) {
        free(a);
        *n = 0;
        return rc;
    }
    *out = a;
    return 0;
}
