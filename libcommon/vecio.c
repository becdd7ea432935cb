/*
 * vecio.c - read vector files in the formats users have; see vecio.h.
 *
 * Every format except HDF5 is read as a byte stream through zlib's gzFile,
 * which passes plain data through untouched, so gzip support costs nothing
 * per format. The reader keeps its own 64 KiB input buffer (ibuf) in front
 * of gzread: the first fill doubles as the peek buffer that auto-detection
 * looks at, so detecting the format of stdin loses no bytes, and csv lines
 * are cut out of it without a second copy layer.
 *
 * Invariants:
 *  - r->row is the 0-based index of the next row vecio_read will deliver;
 *    every error about a row names it by that index ("row 17: NaN value").
 *  - dim is known and in 1..max_dim once vecio_open succeeds.
 *  - Nothing from a header reaches malloc: buffers are sized from dim (already
 *    checked against max_dim) and a fixed chunk size, and n * dim * elemsize
 *    from npy/idx/hdf5 headers is checked for overflow.
 *  - Errors are sticky. A bad row ends the stream: the rows before it in the
 *    same call are delivered, and this call and every later one report the
 *    error. Internally errors are written to r->ferr and copied out, so a
 *    NULL hf_err from the caller is harmless.
 *
 * Choices:
 *  - A 1-D npy or HDF5 array is one vector (numpy's atleast_2d view), the
 *    shape np.save gives a single embedding.
 *  - csv numbers are parsed with strtof, which follows LC_NUMERIC; filters
 *    never call setlocale, so that is the C locale.
 *  - HDF5 goes through libhdf5 with its automatic error printing switched off
 *    (the library must not print); the conversion to f32 is HDF5's own.
 */
#include "vecio.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>
#include <zlib.h>

#define DEFAULT_MAX_DIM 65536
#define IBUF_SIZE (64 * 1024)
#define CHUNK_BYTES (1 << 20) /* raw bytes converted per batch */
#define NPY_MAX_HEADER (1 << 20)
#define IDX_MAX_NDIMS 16

typedef enum { EL_F32, EL_F64, EL_U8, EL_I8, EL_I16, EL_I32, EL_F16 } elem_kind;

typedef struct {
    elem_kind kind;
    size_t size;
    int big; /* stored big-endian */
} elem_type;

struct vecio_reader {
    vec_format fmt;
    size_t dim;
    size_t count; /* rows the header states; valid when count_known */
    int count_known;
    size_t max_dim;
    size_t row; /* next row to deliver */
    int at_end;

    /* byte input for every format but HDF5 */
    gzFile gz;
    unsigned char *ibuf;
    size_t ipos, ilen;
    int in_eof;

    /* binary rows: optional 4-byte dim prefix (*vecs), then dim elements */
    elem_type el;
    size_t prefix;
    size_t rowbytes;
    size_t partial; /* bytes of a cut row after the last fetch's whole rows */
    unsigned char *raw;
    size_t chunk_rows;
    /* a Fortran-order npy, read whole at open and transposed to row order:
     * rows are served from here instead of the input */
    unsigned char *whole;
    size_t whole_len, whole_pos;

    /* csv */
    char *line;
    size_t line_cap, line_max, lineno;
    float *first; /* first data row, parsed at open to learn dim */
    int has_first;

    /* HDF5 */
    hid_t h5file, h5dset, h5space;
    int h5rank;

    /* sticky error */
    int failed;
    hf_err ferr;
};

/* ---- small helpers ---------------------------------------------------- */

static uint32_t load_u32(const unsigned char *p, int big)
{
    if (big)
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static uint64_t load_u64(const unsigned char *p, int big)
{
    uint64_t hi = load_u32(big ? p : p + 4, big), lo = load_u32(big ? p + 4 : p, big);
    return hi << 32 | lo;
}

/* a * b into *out; returns 0 on overflow. */
static int mul_ok(size_t a, size_t b, size_t *out)
{
    if (b && a > SIZE_MAX / b)
        return 0;
    *out = a * b;
    return 1;
}

static int copy_err(const vecio_reader *r, hf_err *e)
{
    if (e)
        *e = r->ferr;
    return r->ferr.code;
}

static const char *const fmt_names[] = {
    [VEC_FMT_AUTO] = "auto",   [VEC_FMT_FVECS] = "fvecs", [VEC_FMT_BVECS] = "bvecs",
    [VEC_FMT_IVECS] = "ivecs", [VEC_FMT_NPY] = "npy",     [VEC_FMT_IDX] = "idx",
    [VEC_FMT_CSV] = "csv",     [VEC_FMT_HDF5] = "hdf5",
};

int vecio_format_parse(const char *name, vec_format *out, hf_err *e)
{
    static const struct {
        const char *name;
        vec_format f;
    } alias[] = {
        {"auto", VEC_FMT_AUTO},   {"fvecs", VEC_FMT_FVECS}, {"bvecs", VEC_FMT_BVECS},
        {"ivecs", VEC_FMT_IVECS}, {"npy", VEC_FMT_NPY},     {"idx", VEC_FMT_IDX},
        {"mnist", VEC_FMT_IDX},   {"csv", VEC_FMT_CSV},     {"tsv", VEC_FMT_CSV},
        {"txt", VEC_FMT_CSV},     {"text", VEC_FMT_CSV},    {"hdf5", VEC_FMT_HDF5},
        {"h5", VEC_FMT_HDF5},
    };
    if (name)
        for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
            if (strcasecmp(name, alias[i].name) == 0) {
                *out = alias[i].f;
                return 0;
            }
    return hf_err_set(e, HF_EUSAGE,
                      "unknown vector format '%s' (known: auto, fvecs, bvecs, ivecs, npy, "
                      "idx/mnist, csv/tsv/txt, hdf5/h5)",
                      name ? name : "(null)");
}

const char *vecio_format_name(vec_format f)
{
    if ((unsigned)f < sizeof fmt_names / sizeof fmt_names[0])
        return fmt_names[f];
    return "unknown";
}

size_t vecio_dim(const vecio_reader *r)
{
    return r ? r->dim : 0;
}

size_t vecio_count(const vecio_reader *r)
{
    return r && r->count_known ? r->count : 0;
}

vec_format vecio_format(const vecio_reader *r)
{
    return r ? r->fmt : VEC_FMT_AUTO;
}

/* ---- byte input --------------------------------------------------------- */

/* Turn the gzFile's error state into ours. */
static int gz_fail(vecio_reader *r)
{
    int zerr = Z_OK;
    const char *msg = gzerror(r->gz, &zerr);
    switch (zerr) {
    case Z_ERRNO: return hf_err_set(&r->ferr, HF_EIO, "read error: %s", strerror(errno));
    case Z_MEM_ERROR: return hf_err_set(&r->ferr, HF_ENOMEM, "out of memory in zlib");
    case Z_BUF_ERROR:
        return hf_err_set(&r->ferr, HF_EDATA, "gzip data ends early (truncated file)");
    default: return hf_err_set(&r->ferr, HF_EDATA, "corrupt gzip data: %s", msg ? msg : "?");
    }
}

/* One gzread; sets in_eof at end. Returns bytes read or a negative HF code. */
static long gz_chunk(vecio_reader *r, unsigned char *dst, size_t n)
{
    if (n > (1u << 30))
        n = 1u << 30;
    int got = gzread(r->gz, dst, (unsigned)n);
    if (got < 0)
        return gz_fail(r);
    if (got == 0) {
        int zerr = Z_OK;
        gzerror(r->gz, &zerr);
        if (zerr != Z_OK)
            return gz_fail(r);
        r->in_eof = 1;
    }
    return got;
}

/* Read up to n bytes; *got < n only at end of input. */
static int rd(vecio_reader *r, void *dst, size_t n, size_t *got)
{
    unsigned char *d = dst;
    size_t done = 0;
    while (done < n) {
        if (r->ipos < r->ilen) {
            size_t m = r->ilen - r->ipos;
            if (m > n - done)
                m = n - done;
            memcpy(d + done, r->ibuf + r->ipos, m);
            r->ipos += m;
            done += m;
            continue;
        }
        if (r->in_eof)
            break;
        long k;
        if (n - done >= IBUF_SIZE) {
            k = gz_chunk(r, d + done, n - done);
            if (k < 0)
                return (int)k;
            done += (size_t)k;
        } else {
            k = gz_chunk(r, r->ibuf, IBUF_SIZE);
            if (k < 0)
                return (int)k;
            r->ipos = 0;
            r->ilen = (size_t)k;
        }
    }
    *got = done;
    return 0;
}

/* First fill of ibuf: as much as fits, so detection sees a real sample. */
static int peek_fill(vecio_reader *r)
{
    while (r->ilen < IBUF_SIZE && !r->in_eof) {
        long k = gz_chunk(r, r->ibuf + r->ilen, IBUF_SIZE - r->ilen);
        if (k < 0)
            return (int)k;
        r->ilen += (size_t)k;
    }
    return 0;
}

/* ---- element conversion ------------------------------------------------- */

/* Convert one row of raw elements to f32, rejecting NaN and Inf. */
/* IEEE 754 binary16 to float (exact: every half is a float). */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, ex = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (ex == 0x1f) {
        u = sign | 0x7f800000u | (man << 13); /* Inf, NaN */
    } else if (ex == 0) {
        float f = ldexpf((float)man, -24); /* zero and subnormals */
        return sign ? -f : f;
    } else {
        u = sign | ((ex + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static int convert_row(vecio_reader *r, const unsigned char *src, float *dst, size_t row)
{
    const elem_type el = r->el;
    for (size_t i = 0; i < r->dim; i++) {
        const unsigned char *p = src + i * el.size;
        float v;
        switch (el.kind) {
        case EL_U8: dst[i] = p[0]; continue;
        case EL_I8: dst[i] = (int8_t)p[0]; continue;
        case EL_I16: dst[i] = (int16_t)(el.big ? (p[0] << 8 | p[1]) : (p[1] << 8 | p[0])); continue;
        case EL_I32: dst[i] = (float)(int32_t)load_u32(p, el.big); continue;
        case EL_F32: {
            uint32_t u = load_u32(p, el.big);
            memcpy(&v, &u, sizeof v);
            break;
        }
        case EL_F16:
            v = half_to_float((uint16_t)(el.big ? (p[0] << 8 | p[1]) : (p[1] << 8 | p[0])));
            break;
        case EL_F64: {
            uint64_t u = load_u64(p, el.big);
            double d;
            memcpy(&d, &u, sizeof d);
            if (isfinite(d) && fabs(d) > FLT_MAX)
                return hf_err_set(&r->ferr, HF_EDATA,
                                  "row %zu: value %g in column %zu is out of f32 range", row, d, i);
            v = (float)d;
            break;
        }
        default: return hf_err_set(&r->ferr, HF_EINTERNAL, "bad element type");
        }
        if (isnan(v))
            return hf_err_set(&r->ferr, HF_EDATA, "row %zu: NaN value in column %zu", row, i);
        if (isinf(v))
            return hf_err_set(&r->ferr, HF_EDATA, "row %zu: Inf value in column %zu", row, i);
        dst[i] = v;
    }
    return 0;
}

static int check_finite(vecio_reader *r, const float *v, size_t row)
{
    for (size_t i = 0; i < r->dim; i++) {
        if (isnan(v[i]))
            return hf_err_set(&r->ferr, HF_EDATA, "row %zu: NaN value in column %zu", row, i);
        if (isinf(v[i]))
            return hf_err_set(&r->ferr, HF_EDATA, "row %zu: Inf value in column %zu", row, i);
    }
    return 0;
}

static int truncated(vecio_reader *r)
{
    return hf_err_set(&r->ferr, HF_EDATA, "row %zu: truncated (expected %zu values)", r->row,
                      r->dim);
}

/* ---- binary rows: fvecs, bvecs, ivecs, npy, idx ------------------------- */

/* Size the row layout and the conversion buffer; dim is already checked. */
static int binary_setup(vecio_reader *r, size_t prefix, elem_type el, hf_err *e)
{
    size_t body;
    r->el = el;
    r->prefix = prefix;
    if (!mul_ok(r->dim, el.size, &body) || body > SIZE_MAX - prefix)
        return hf_err_set(e, HF_EDATA, "row size overflows (dim %zu)", r->dim);
    r->rowbytes = prefix + body;
    r->chunk_rows = CHUNK_BYTES / r->rowbytes;
    if (r->chunk_rows == 0)
        r->chunk_rows = 1;
    r->raw = malloc(r->chunk_rows * r->rowbytes);
    if (!r->raw)
        return hf_err_set(e, HF_ENOMEM, "out of memory for a %zu-byte row buffer",
                          r->chunk_rows * r->rowbytes);
    return 0;
}

/* Check a *vecs row's dimension prefix. */
static int check_prefix(vecio_reader *r, const unsigned char *p)
{
    int32_t d = (int32_t)load_u32(p, 0);
    if (d < 0 || (size_t)d != r->dim)
        return hf_err_set(&r->ferr, HF_EDATA,
                          "row %zu: dimension %" PRId32 " differs from %zu (every row must "
                          "have the same dimension)",
                          r->row, d, r->dim);
    return 0;
}

/* Pull up to want whole rows into r->raw; *rows is how many arrived. A short
 * read ends the stream; it returns 1 when the end falls mid-row or before the
 * header's count, leaving the partial row after the whole ones. */
static int binary_fetch(vecio_reader *r, size_t want, size_t *rows)
{
    size_t nbytes = want * r->rowbytes, n = 0;
    int rc = 0;
    if (r->whole) {
        n = r->whole_len - r->whole_pos < nbytes ? r->whole_len - r->whole_pos : nbytes;
        memcpy(r->raw, r->whole + r->whole_pos, n);
        r->whole_pos += n;
    } else {
        rc = rd(r, r->raw, nbytes, &n);
    }
    if (rc)
        return rc;
    *rows = n / r->rowbytes;
    r->partial = n % r->rowbytes;
    if (n < nbytes) {
        r->at_end = 1;
        if (r->partial != 0 || r->count_known)
            return 1;
    }
    return 0;
}

/* The error for a stream that ended early, once the whole rows are used: a
 * wrong dimension prefix on the cut row says more than "truncated". */
static int binary_short(vecio_reader *r, size_t rows)
{
    const unsigned char *p = r->raw + rows * r->rowbytes;
    if (r->prefix && r->partial >= 4 && check_prefix(r, p) != 0)
        return r->ferr.code;
    return truncated(r);
}

static size_t rows_left(const vecio_reader *r, size_t want)
{
    if (r->count_known && want > r->count - r->row)
        want = r->count - r->row;
    return want;
}

static int binary_read(vecio_reader *r, float *buf, size_t max_rows, size_t *got)
{
    size_t done = 0, want = rows_left(r, max_rows);
    while (done < want && !r->at_end) {
        size_t k = want - done, rows = 0;
        if (k > r->chunk_rows)
            k = r->chunk_rows;
        int short_rc = binary_fetch(r, k, &rows);
        if (short_rc < 0)
            return *got = done, short_rc;
        for (size_t i = 0; i < rows; i++) {
            const unsigned char *src = r->raw + i * r->rowbytes;
            int rc = r->prefix ? check_prefix(r, src) : 0;
            if (!rc)
                rc = convert_row(r, src + r->prefix, buf + (done + i) * r->dim, r->row);
            if (rc)
                return *got = done + i, rc;
            r->row++;
        }
        done += rows;
        if (short_rc > 0)
            return *got = done, binary_short(r, rows);
    }
    if (r->count_known && r->row == r->count)
        r->at_end = 1;
    *got = done;
    return 0;
}

static int binary_skip(vecio_reader *r, size_t n)
{
    size_t want = rows_left(r, n);
    while (want > 0 && !r->at_end) {
        size_t k = want < r->chunk_rows ? want : r->chunk_rows, rows = 0;
        int short_rc = binary_fetch(r, k, &rows);
        if (short_rc < 0)
            return short_rc;
        for (size_t i = 0; i < rows; i++) {
            if (r->prefix) {
                int rc = check_prefix(r, r->raw + i * r->rowbytes);
                if (rc)
                    return rc;
            }
            r->row++;
        }
        if (short_rc > 0)
            return binary_short(r, rows);
        want -= rows;
    }
    if (r->count_known && r->row == r->count)
        r->at_end = 1;
    return 0;
}

/* ---- fvecs / bvecs / ivecs ---------------------------------------------- */

static int open_vecs(vecio_reader *r, hf_err *e)
{
    if (r->ilen == 0)
        return hf_err_set(e, HF_EDATA, "empty input: no row to take the dimension from");
    if (r->ilen < 4)
        return hf_err_set(e, HF_EDATA, "row 0: truncated (dimension prefix cut short)");
    int32_t d = (int32_t)load_u32(r->ibuf, 0);
    if (d < 1 || (size_t)d > r->max_dim)
        return hf_err_set(e, HF_EDATA, "row 0: dimension %" PRId32 " is out of range 1..%zu", d,
                          r->max_dim);
    r->dim = (size_t)d;
    elem_type el = {EL_F32, 4, 0};
    if (r->fmt == VEC_FMT_BVECS)
        el = (elem_type){EL_U8, 1, 0};
    else if (r->fmt == VEC_FMT_IVECS)
        el = (elem_type){EL_I32, 4, 0};
    return binary_setup(r, 4, el, e);
}

/* ---- npy ------------------------------------------------------------------ */

/* Value of key in a numpy header dict, or NULL. */
static const char *npy_value(const char *hdr, const char *key)
{
    size_t klen = strlen(key);
    for (const char *p = hdr; (p = strstr(p, key)) != NULL; p += klen) {
        if (p == hdr || (p[-1] != '\'' && p[-1] != '"') || (p[klen] != '\'' && p[klen] != '"'))
            continue;
        const char *q = p + klen + 1;
        while (*q == ' ' || *q == '\t')
            q++;
        if (*q != ':')
            continue;
        q++;
        while (*q == ' ' || *q == '\t')
            q++;
        return q;
    }
    return NULL;
}

static int npy_descr(const char *v, elem_type *el, hf_err *e)
{
    char d[16];
    size_t n = 0;
    if (!v || (*v != '\'' && *v != '"'))
        return hf_err_set(e, HF_EDATA, "npy header: 'descr' is missing or not a simple dtype");
    char quote = *v++;
    while (v[n] && v[n] != quote && n < sizeof d - 1) {
        d[n] = v[n];
        n++;
    }
    d[n] = 0;
    if (v[n] != quote)
        return hf_err_set(e, HF_EDATA, "npy header: bad 'descr'");
    static const struct {
        char kind;
        char size;
        elem_kind k;
    } tab[] = {{'f', '4', EL_F32}, {'f', '8', EL_F64}, {'f', '2', EL_F16}, {'u', '1', EL_U8},
               {'i', '1', EL_I8},  {'i', '2', EL_I16}, {'i', '4', EL_I32}};
    const char *t = d;
    int big = 0;
    if (*t == '<' || *t == '|' || *t == '=')
        t++;
    else if (*t == '>')
        big = 1, t++;
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (t[0] == tab[i].kind && t[1] == tab[i].size && t[2] == 0) {
            el->kind = tab[i].k;
            el->size = (size_t)(tab[i].size - '0');
            el->big = big;
            return 0;
        }
    return hf_err_set(e, HF_EDATA,
                      "npy dtype '%s' is not supported (use <f2, <f4, <f8, |u1, |i1, <i2 or <i4)",
                      d);
}

/* Parse "(a, b)" / "(a,)" / "()" into dims; returns rank or -1. */
static int npy_shape(const char *v, unsigned long long dims[2])
{
    int rank = 0;
    if (!v || *v++ != '(')
        return -1;
    for (;;) {
        while (*v == ' ')
            v++;
        if (*v == ')')
            return rank;
        if (*v < '0' || *v > '9' || rank == 2)
            return -1;
        errno = 0;
        char *end;
        dims[rank++] = strtoull(v, &end, 10);
        if (errno)
            return -1;
        v = end;
        while (*v == ' ' || *v == 'L')
            v++;
        if (*v == ',')
            v++;
        else if (*v != ')')
            return -1;
    }
}

/* A Fortran-order (column-major) array: its rows are spread over the
 * whole file, so read it whole (total bytes, checked against overflow by
 * the caller) and transpose it to row order. Costs twice the array's
 * memory while open; C order streams in chunks as before. */
static int npy_read_fortran(vecio_reader *r, size_t total, hf_err *e)
{
    /* the buffer grows with the bytes that actually arrive, never with
     * what the header claims */
    unsigned char *col = NULL, *row = NULL;
    size_t have = 0, cap = 0, es = r->el.size, rows = r->count, d = r->dim;
    while (have < total) {
        if (have == cap) {
            size_t ncap = cap ? cap * 2 : (size_t)1 << 20;
            if (ncap > total)
                ncap = total;
            unsigned char *p = realloc(col, ncap);
            if (!p) {
                free(col);
                return hf_err_set(e, HF_ENOMEM, "out of memory for a Fortran-order npy array");
            }
            col = p;
            cap = ncap;
        }
        size_t n = 0;
        int rc = rd(r, col + have, cap - have, &n);
        if (rc) {
            free(col);
            return copy_err(r, e);
        }
        if (n == 0)
            break;
        have += n;
    }
    if (have < total) {
        free(col);
        return hf_err_set(e, HF_EDATA, "npy array truncated: %zu of %zu bytes (Fortran order)",
                          have, total);
    }
    row = malloc(total ? total : 1);
    if (!row) {
        free(col);
        return hf_err_set(e, HF_ENOMEM, "out of memory for a Fortran-order npy array");
    }
    for (size_t c = 0; c < d; c++)
        for (size_t i = 0; i < rows; i++)
            memcpy(row + (i * d + c) * es, col + (c * rows + i) * es, es);
    free(col);
    r->whole = row;
    r->whole_len = total;
    r->whole_pos = 0;
    return 0;
}

static int open_npy(vecio_reader *r, hf_err *e)
{
    unsigned char m[12];
    size_t n = 0;
    int rc = rd(r, m, 10, &n);
    if (rc)
        return copy_err(r, e);
    if (n < 10 || memcmp(m, "\x93NUMPY", 6) != 0)
        return hf_err_set(e, HF_EDATA, "not an npy file (bad magic)");
    size_t hlen;
    if (m[6] == 1) {
        hlen = (size_t)m[8] | (size_t)m[9] << 8;
    } else if (m[6] == 2 || m[6] == 3) {
        if ((rc = rd(r, m + 10, 2, &n)) != 0)
            return copy_err(r, e);
        if (n < 2)
            return hf_err_set(e, HF_EDATA, "npy header truncated");
        hlen = load_u32(m + 8, 0);
    } else {
        return hf_err_set(e, HF_EDATA, "npy version %d.%d is not supported", m[6], m[7]);
    }
    if (hlen > NPY_MAX_HEADER)
        return hf_err_set(e, HF_EDATA, "npy header of %zu bytes is too long", hlen);
    char *hdr = malloc(hlen + 1);
    if (!hdr)
        return hf_err_set(e, HF_ENOMEM, "out of memory for npy header");
    if ((rc = rd(r, hdr, hlen, &n)) != 0) {
        free(hdr);
        return copy_err(r, e);
    }
    if (n < hlen) {
        free(hdr);
        return hf_err_set(e, HF_EDATA, "npy header truncated");
    }
    hdr[hlen] = 0;
    if (strlen(hdr) != hlen) {
        free(hdr);
        return hf_err_set(e, HF_EDATA, "npy header contains a NUL byte");
    }

    elem_type el;
    unsigned long long dims[2] = {0, 0};
    const char *fo = npy_value(hdr, "fortran_order");
    int rank = npy_shape(npy_value(hdr, "shape"), dims);
    rc = npy_descr(npy_value(hdr, "descr"), &el, e);
    int fortran = fo && strncmp(fo, "True", 4) == 0;
    if (!rc && !fortran && (!fo || strncmp(fo, "False", 5) != 0))
        rc = hf_err_set(e, HF_EDATA, "npy header: 'fortran_order' is missing or bad");
    if (!rc && rank < 0)
        rc = hf_err_set(e, HF_EDATA, "npy header: 'shape' is missing, bad, or over 2 dims");
    if (!rc && rank == 0)
        rc = hf_err_set(e, HF_EDATA, "npy array is a scalar, not vectors");
    free(hdr);
    if (rc)
        return rc;

    unsigned long long rows = rank == 2 ? dims[0] : 1, d = rank == 2 ? dims[1] : dims[0];
    size_t total;
    if (d < 1 || d > r->max_dim)
        return hf_err_set(e, HF_EDATA, "npy dimension %llu is out of range 1..%zu", d, r->max_dim);
    if (rows > SIZE_MAX || !mul_ok((size_t)d, el.size, &total) ||
        !mul_ok((size_t)rows, total, &total))
        return hf_err_set(e, HF_EDATA, "npy shape (%llu, %llu) is too large", rows, d);
    r->dim = (size_t)d;
    r->count = (size_t)rows;
    r->count_known = 1;
    rc = binary_setup(r, 0, el, e);
    if (rc || !fortran || rank == 1)
        return rc;
    return npy_read_fortran(r, total, e);
}

/* ---- MNIST idx ------------------------------------------------------------ */

static int idx_type(unsigned char t, elem_type *el)
{
    switch (t) {
    case 0x08: *el = (elem_type){EL_U8, 1, 1}; return 1;
    case 0x09: *el = (elem_type){EL_I8, 1, 1}; return 1;
    case 0x0B: *el = (elem_type){EL_I16, 2, 1}; return 1;
    case 0x0C: *el = (elem_type){EL_I32, 4, 1}; return 1;
    case 0x0D: *el = (elem_type){EL_F32, 4, 1}; return 1;
    case 0x0E: *el = (elem_type){EL_F64, 8, 1}; return 1;
    default: return 0;
    }
}

static int open_idx(vecio_reader *r, hf_err *e)
{
    unsigned char h[4 + 4 * IDX_MAX_NDIMS];
    size_t n = 0;
    elem_type el;
    if (rd(r, h, 4, &n))
        return copy_err(r, e);
    if (n < 4 || h[0] != 0 || h[1] != 0 || !idx_type(h[2], &el) || h[3] < 1 || h[3] > IDX_MAX_NDIMS)
        return hf_err_set(e, HF_EDATA, "not an idx file (bad magic %02x%02x%02x%02x)",
                          n > 0 ? h[0] : 0, n > 1 ? h[1] : 0, n > 2 ? h[2] : 0, n > 3 ? h[3] : 0);
    size_t nd = h[3];
    if (rd(r, h + 4, 4 * nd, &n))
        return copy_err(r, e);
    if (n < 4 * nd)
        return hf_err_set(e, HF_EDATA, "idx header truncated");
    size_t d = 1, total;
    for (size_t i = 1; i < nd; i++)
        if (!mul_ok(d, load_u32(h + 4 + 4 * i, 1), &d) || d > r->max_dim)
            return hf_err_set(e, HF_EDATA, "idx row size is out of range 1..%zu", r->max_dim);
    if (d < 1)
        return hf_err_set(e, HF_EDATA, "idx row size is 0");
    r->dim = d;
    r->count = load_u32(h + 4, 1);
    r->count_known = 1;
    if (!mul_ok(d, el.size, &total) || !mul_ok(r->count, total, &total))
        return hf_err_set(e, HF_EDATA, "idx dimensions are too large");
    return binary_setup(r, 0, el, e);
}

/* ---- csv ------------------------------------------------------------------ */

/* Next line into r->line (NUL-terminated, no newline). 1: a line, 0: end. */
static int csv_line(vecio_reader *r)
{
    size_t len = 0;
    int any = 0;
    for (;;) {
        if (r->ipos == r->ilen) {
            if (r->in_eof)
                break;
            long k = gz_chunk(r, r->ibuf, IBUF_SIZE);
            if (k < 0)
                return (int)k;
            r->ipos = 0;
            r->ilen = (size_t)k;
            continue;
        }
        any = 1;
        const unsigned char *s = r->ibuf + r->ipos;
        size_t avail = r->ilen - r->ipos;
        const unsigned char *nl = memchr(s, '\n', avail);
        size_t take = nl ? (size_t)(nl - s) : avail;
        if (len + take + 1 > r->line_max)
            return hf_err_set(&r->ferr, HF_EDATA, "line %zu: longer than %zu bytes", r->lineno + 1,
                              r->line_max);
        if (len + take + 1 > r->line_cap) {
            size_t cap = r->line_cap ? r->line_cap : 4096;
            while (cap < len + take + 1)
                cap *= 2;
            char *p = realloc(r->line, cap);
            if (!p)
                return hf_err_set(&r->ferr, HF_ENOMEM, "out of memory for a csv line");
            r->line = p;
            r->line_cap = cap;
        }
        memcpy(r->line + len, s, take);
        len += take;
        r->ipos += take + (nl ? 1 : 0);
        if (nl)
            break;
    }
    if (!any)
        return 0;
    r->line[len] = 0;
    r->lineno++;
    return 1;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* Parse numbers separated by commas and/or blanks. Stores at most cap values
 * in out (if non-NULL) and sets *n to how many there are; -1 if a field is
 * not a number (*bad points at it). */
static int csv_parse(const char *s, float *out, size_t cap, size_t *n, const char **bad)
{
    size_t k = 0;
    const char *p = s;
    while (is_blank(*p))
        p++;
    while (*p) {
        char *end;
        float v = strtof(p, &end);
        if (end == p || (*end && !is_blank(*end) && *end != ',')) {
            *bad = p;
            return -1;
        }
        if (out && k < cap)
            out[k] = v;
        k++;
        p = end;
        while (is_blank(*p))
            p++;
        if (*p == ',') {
            p++;
            while (is_blank(*p))
                p++;
        }
    }
    *n = k;
    return 0;
}

/* Next non-blank line; 1: a line, 0: end, <0 error. */
static int csv_data_line(vecio_reader *r)
{
    for (;;) {
        int rc = csv_line(r);
        if (rc <= 0)
            return rc;
        const char *p = r->line;
        while (is_blank(*p))
            p++;
        if (*p)
            return 1;
    }
}

static void csv_bad_field(vecio_reader *r, const char *bad)
{
    size_t len = strcspn(bad, ", \t\r");
    if (len == 0) {
        hf_err_set(&r->ferr, HF_EDATA, "row %zu (line %zu): empty field", r->row, r->lineno);
        return;
    }
    if (len > 32)
        len = 32;
    hf_err_set(&r->ferr, HF_EDATA, "row %zu (line %zu): not a number: '%.*s'", r->row, r->lineno,
               (int)len, bad);
}

static int open_csv(vecio_reader *r, hf_err *e)
{
    size_t n = 0;
    const char *bad = NULL;
    /* A line holds at most max_dim numbers; allow generous text per number. */
    r->line_max = r->max_dim > (SIZE_MAX - 4096) / 64 ? SIZE_MAX : r->max_dim * 64 + 4096;
    int rc = csv_data_line(r);
    if (rc < 0)
        return copy_err(r, e);
    if (rc == 0)
        return hf_err_set(e, HF_EDATA, "empty input: no row to take the dimension from");
    if (csv_parse(r->line, NULL, 0, &n, &bad) != 0) {
        rc = csv_data_line(r); /* the first line was a header */
        if (rc < 0)
            return copy_err(r, e);
        if (rc == 0)
            return hf_err_set(e, HF_EDATA, "csv has a header but no data rows");
        if (csv_parse(r->line, NULL, 0, &n, &bad) != 0) {
            csv_bad_field(r, bad);
            return copy_err(r, e);
        }
    }
    if (n < 1 || n > r->max_dim)
        return hf_err_set(e, HF_EDATA, "row 0 (line %zu): %zu values, out of range 1..%zu",
                          r->lineno, n, r->max_dim);
    r->dim = n;
    r->first = malloc(n * sizeof(float));
    if (!r->first)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    csv_parse(r->line, r->first, n, &n, &bad);
    r->has_first = 1;
    return 0;
}

/* Parse the current line as row r->row into dst. */
static int csv_row(vecio_reader *r, float *dst)
{
    size_t n = 0;
    const char *bad = NULL;
    if (csv_parse(r->line, dst, r->dim, &n, &bad) != 0) {
        csv_bad_field(r, bad);
        return r->ferr.code;
    }
    if (n != r->dim)
        return hf_err_set(&r->ferr, HF_EDATA,
                          "row %zu (line %zu): %zu values, expected %zu (every row must have "
                          "the same dimension)",
                          r->row, r->lineno, n, r->dim);
    return 0;
}

static int csv_read(vecio_reader *r, float *buf, size_t max_rows, size_t *got)
{
    size_t done = 0;
    while (done < max_rows && !r->at_end) {
        float *dst = buf + done * r->dim;
        int rc;
        if (r->has_first) {
            memcpy(dst, r->first, r->dim * sizeof(float));
            r->has_first = 0;
        } else {
            rc = csv_data_line(r);
            if (rc == 0) {
                r->at_end = 1;
                break;
            }
            if (rc < 0 || (rc = csv_row(r, dst)) != 0)
                return *got = done, rc;
        }
        if ((rc = check_finite(r, dst, r->row)) != 0)
            return *got = done, rc;
        r->row++;
        done++;
    }
    *got = done;
    return 0;
}

static int csv_skip(vecio_reader *r, size_t n)
{
    for (; n > 0 && !r->at_end; n--) {
        if (r->has_first) {
            r->has_first = 0;
        } else {
            int rc = csv_data_line(r);
            if (rc < 0)
                return rc;
            if (rc == 0) {
                r->at_end = 1;
                break;
            }
        }
        r->row++;
    }
    return 0;
}

/* ---- HDF5 ----------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
} name_list;

static herr_t h5_collect(hid_t g, const char *name, const H5L_info_t *info, void *arg)
{
    (void)g;
    (void)info;
    name_list *l = arg;
    int w = snprintf(l->buf + l->len, l->cap - l->len, "%s%s", l->len ? ", " : "", name);
    if (w < 0 || (size_t)w >= l->cap - l->len)
        return 1; /* full: stop */
    l->len += (size_t)w;
    return 0;
}

static int open_hdf5(vecio_reader *r, const char *path, const char *dataset, hf_err *e)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const char *name = dataset ? dataset : "train";
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0)
        return hf_err_set(e, HF_EDATA, "not an HDF5 file");
    r->h5file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (r->h5file < 0)
        return hf_err_set(e, HF_EDATA, "cannot open as HDF5 (corrupt file?)");
    if (name[0] == 0 || H5Lexists(r->h5file, name, H5P_DEFAULT) <= 0) {
        char names[256] = "";
        name_list l = {names, 0, sizeof names};
        hsize_t idx = 0;
        H5Literate(r->h5file, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, h5_collect, &l);
        return hf_err_set(e, HF_EDATA, "no dataset '%s' in the file (it has: %s)", name,
                          l.len ? names : "nothing");
    }
    r->h5dset = H5Dopen2(r->h5file, name, H5P_DEFAULT);
    if (r->h5dset < 0)
        return hf_err_set(e, HF_EDATA, "'%s' is not a dataset", name);
    hid_t type = H5Dget_type(r->h5dset);
    H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    if (type >= 0)
        H5Tclose(type);
    if (cls != H5T_INTEGER && cls != H5T_FLOAT)
        return hf_err_set(e, HF_EDATA, "dataset '%s' does not hold numbers", name);
    r->h5space = H5Dget_space(r->h5dset);
    int rank = r->h5space >= 0 ? H5Sget_simple_extent_ndims(r->h5space) : -1;
    if (rank != 1 && rank != 2)
        return hf_err_set(e, HF_EDATA, "dataset '%s' has %d dimensions; expected 1 or 2", name,
                          rank);
    hsize_t dims[2] = {0, 0};
    if (H5Sget_simple_extent_dims(r->h5space, dims, NULL) < 0)
        return hf_err_set(e, HF_EDATA, "cannot read the shape of dataset '%s'", name);
    hsize_t rows = rank == 2 ? dims[0] : 1, d = rank == 2 ? dims[1] : dims[0];
    size_t total;
    if (d < 1 || d > r->max_dim)
        return hf_err_set(e, HF_EDATA, "dataset '%s': dimension %llu is out of range 1..%zu", name,
                          (unsigned long long)d, r->max_dim);
    if (rows > SIZE_MAX || !mul_ok((size_t)d, sizeof(float), &total) ||
        !mul_ok((size_t)rows, total, &total))
        return hf_err_set(e, HF_EDATA, "dataset '%s' is too large", name);
    r->h5rank = rank;
    r->dim = (size_t)d;
    r->count = (size_t)rows;
    r->count_known = 1;
    return 0;
}

static int hdf5_read(vecio_reader *r, float *buf, size_t max_rows, size_t *got)
{
    size_t k = rows_left(r, max_rows);
    *got = 0;
    if (k == 0) {
        r->at_end = 1;
        return 0;
    }
    hsize_t start[2] = {r->row, 0}, cnt[2] = {k, r->dim};
    hsize_t mdims[1] = {k * r->dim};
    if (r->h5rank == 1) {
        start[0] = 0;
        cnt[0] = r->dim;
    }
    hid_t mem = H5Screate_simple(1, mdims, NULL);
    herr_t st =
        mem < 0 ? -1 : H5Sselect_hyperslab(r->h5space, H5S_SELECT_SET, start, NULL, cnt, NULL);
    if (st >= 0)
        st = H5Dread(r->h5dset, H5T_NATIVE_FLOAT, mem, r->h5space, H5P_DEFAULT, buf);
    if (mem >= 0)
        H5Sclose(mem);
    if (st < 0)
        return hf_err_set(&r->ferr, HF_EIO, "row %zu: HDF5 read failed", r->row);
    for (size_t i = 0; i < k; i++) {
        int rc = check_finite(r, buf + i * r->dim, r->row);
        if (rc)
            return *got = i, rc;
        r->row++;
    }
    *got = k;
    return 0;
}

/* ---- detection ------------------------------------------------------------ */

static int has_suffix(const char *s, size_t len, const char *suf)
{
    size_t n = strlen(suf);
    return len >= n && strncasecmp(s + len - n, suf, n) == 0;
}

/* Format named by the file name (a trailing .gz ignored), else AUTO. */
static vec_format by_extension(const char *path, int *gz)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    *gz = has_suffix(base, len, ".gz");
    if (*gz)
        len -= 3;
    static const struct {
        const char *suf;
        vec_format f;
    } tab[] = {
        {".fvecs", VEC_FMT_FVECS}, {".bvecs", VEC_FMT_BVECS}, {".ivecs", VEC_FMT_IVECS},
        {".npy", VEC_FMT_NPY},     {".csv", VEC_FMT_CSV},     {".txt", VEC_FMT_CSV},
        {".tsv", VEC_FMT_CSV},     {".h5", VEC_FMT_HDF5},     {".hdf5", VEC_FMT_HDF5},
        {".hdf", VEC_FMT_HDF5},    {".idx", VEC_FMT_IDX},     {"-ubyte", VEC_FMT_IDX},
        {".ubyte", VEC_FMT_IDX},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (has_suffix(base, len, tab[i].suf))
            return tab[i].f;
    return VEC_FMT_AUTO;
}

/* How many consecutive *vecs rows of rowbytes each the peek buffer confirms
 * (same dim prefix); -1 if the known size rules the layout out. */
static long vecs_score(const vecio_reader *r, size_t rowbytes, long long size)
{
    if (size >= 0 && (size == 0 || (unsigned long long)size % rowbytes != 0))
        return -1;
    long score = 0;
    for (size_t off = 0; off + 4 <= r->ilen && score < 64; off += rowbytes, score++)
        if (memcmp(r->ibuf + off, r->ibuf, 4) != 0)
            return -1;
    return score;
}

/* Small ints as int32 bits, not floats: those would all be denormals. */
static int looks_like_ints(const vecio_reader *r, size_t d)
{
    int nonzero = 0;
    for (size_t i = 0; i < d && 4 + 4 * i + 4 <= r->ilen; i++) {
        int32_t v = (int32_t)load_u32(r->ibuf + 4 + 4 * i, 0);
        if (v <= -(1 << 24) || v >= (1 << 24))
            return 0;
        nonzero |= v != 0;
    }
    return nonzero;
}

static vec_format by_magic(const vecio_reader *r, long long size)
{
    const unsigned char *b = r->ibuf;
    size_t n = r->ilen;
    elem_type el;
    if (n >= 6 && memcmp(b, "\x93NUMPY", 6) == 0)
        return VEC_FMT_NPY;
    if (n >= 8 && memcmp(b, "\x89HDF\r\n\x1a\n", 8) == 0)
        return VEC_FMT_HDF5;
    if (n >= 8 && b[0] == 0 && b[1] == 0 && idx_type(b[2], &el) && b[3] >= 1 &&
        b[3] <= IDX_MAX_NDIMS)
        return VEC_FMT_IDX;
    if (n >= 4) {
        int32_t d = (int32_t)load_u32(b, 0);
        if (d >= 1 && (size_t)d <= r->max_dim) {
            long f = vecs_score(r, 4 + 4 * (size_t)d, size);
            long bv = vecs_score(r, 4 + (size_t)d, size);
            if (f >= 0 && f >= bv)
                return looks_like_ints(r, (size_t)d) ? VEC_FMT_IVECS : VEC_FMT_FVECS;
            if (bv >= 0)
                return VEC_FMT_BVECS;
        }
    }
    int digit = 0;
    for (size_t i = 0; i < n; i++) {
        /* bytes >= 0x80 pass so UTF-8 headers do; binary data has controls */
        if ((b[i] < 0x20 || b[i] == 0x7f) && b[i] != '\n' && b[i] != '\r' && b[i] != '\t')
            return VEC_FMT_AUTO;
        digit |= b[i] >= '0' && b[i] <= '9';
    }
    return digit ? VEC_FMT_CSV : VEC_FMT_AUTO;
}

/* ---- open / read / skip / close ------------------------------------------ */

static int open_stream(vecio_reader *r, const char *path, int is_stdin, long long *size, hf_err *e)
{
    int fd = is_stdin ? dup(0) : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return hf_err_set(e, HF_EOPEN, "cannot open: %s", strerror(errno));
    struct stat st;
    *size = -1;
    if (fstat(fd, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            close(fd);
            return hf_err_set(e, HF_EOPEN, "cannot open: is a directory");
        }
        off_t pos = lseek(fd, 0, SEEK_CUR);
        if (S_ISREG(st.st_mode) && pos >= 0 && pos <= st.st_size)
            *size = (long long)(st.st_size - pos);
    }
    r->gz = gzdopen(fd, "rb");
    if (!r->gz) {
        close(fd);
        return hf_err_set(e, HF_ENOMEM, "cannot start zlib");
    }
    gzbuffer(r->gz, 128 * 1024);
    r->ibuf = malloc(IBUF_SIZE);
    if (!r->ibuf)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    if (peek_fill(r))
        return copy_err(r, e);
    if (r->in_eof)
        *size = (long long)r->ilen; /* all of it is in the peek buffer */
    else if (!gzdirect(r->gz))
        *size = -1; /* compressed: the file size says nothing */
    return 0;
}

int vecio_open(const char *path, const vecio_opts *opts, vecio_reader **out, hf_err *e)
{
    static const vecio_opts defaults = {VEC_FMT_AUTO, NULL, 0};
    if (!out)
        return hf_err_set(e, HF_EINTERNAL, "vecio_open: out is NULL");
    *out = NULL;
    if (!path)
        return hf_err_set(e, HF_EUSAGE, "no input path");
    if (!opts)
        opts = &defaults;
    if ((unsigned)opts->format > VEC_FMT_HDF5)
        return hf_err_set(e, HF_EUSAGE, "bad format %d", (int)opts->format);

    vecio_reader *r = calloc(1, sizeof *r);
    if (!r)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    r->h5file = r->h5dset = r->h5space = H5I_INVALID_HID;
    r->max_dim = opts->max_dim ? opts->max_dim : DEFAULT_MAX_DIM;
    int is_stdin = strcmp(path, "-") == 0, gz_name = 0, rc = 0;
    r->fmt = opts->format;
    if (r->fmt == VEC_FMT_AUTO && !is_stdin)
        r->fmt = by_extension(path, &gz_name);

    long long size = -1;
    if (r->fmt != VEC_FMT_HDF5) {
        rc = open_stream(r, path, is_stdin, &size, e);
        if (!rc && r->fmt == VEC_FMT_AUTO) {
            r->fmt = by_magic(r, size);
            if (r->fmt == VEC_FMT_AUTO)
                rc = hf_err_set(e, HF_EDATA, "cannot tell the vector format; name it");
            else if (r->fmt == VEC_FMT_HDF5 && !is_stdin && !gzdirect(r->gz))
                rc = hf_err_set(e, HF_EDATA, "HDF5 cannot be read gzip-compressed; gunzip it");
        }
    }
    if (!rc && r->fmt == VEC_FMT_HDF5) {
        if (is_stdin)
            rc = hf_err_set(e, HF_EUSAGE, "HDF5 cannot be read from stdin; give a file name");
        else if (gz_name)
            rc = hf_err_set(e, HF_EDATA, "HDF5 cannot be read gzip-compressed; gunzip it");
        else if (!r->gz && access(path, R_OK) != 0)
            rc = hf_err_set(e, HF_EOPEN, "cannot open: %s", strerror(errno));
        if (!rc && r->gz) {
            gzclose(r->gz);
            r->gz = NULL;
        }
        if (!rc)
            rc = open_hdf5(r, path, opts->dataset, e);
    } else if (!rc) {
        switch (r->fmt) {
        case VEC_FMT_FVECS:
        case VEC_FMT_BVECS:
        case VEC_FMT_IVECS: rc = open_vecs(r, e); break;
        case VEC_FMT_NPY: rc = open_npy(r, e); break;
        case VEC_FMT_IDX: rc = open_idx(r, e); break;
        case VEC_FMT_CSV: rc = open_csv(r, e); break;
        default: rc = hf_err_set(e, HF_EINTERNAL, "unhandled format"); break;
        }
    }
    if (rc) {
        vecio_close(&r);
        return rc;
    }
    *out = r;
    return 0;
}

int vecio_read(vecio_reader *r, float *buf, size_t max_rows, size_t *got, hf_err *e)
{
    size_t done = 0;
    int rc = 0;
    if (got)
        *got = 0;
    if (!r || !got || (!buf && max_rows))
        return hf_err_set(e, HF_EINTERNAL, "vecio_read: bad arguments");
    if (r->failed)
        return copy_err(r, e);
    if (r->at_end || max_rows == 0)
        return 0;
    if (r->fmt == VEC_FMT_HDF5)
        rc = hdf5_read(r, buf, max_rows, &done);
    else if (r->fmt == VEC_FMT_CSV)
        rc = csv_read(r, buf, max_rows, &done);
    else
        rc = binary_read(r, buf, max_rows, &done);
    if (rc) {
        r->failed = rc;
        if (done > 0) { /* deliver the good rows; the error comes next call */
            *got = done;
            return 0;
        }
        return copy_err(r, e);
    }
    *got = done;
    return 0;
}

int vecio_skip(vecio_reader *r, size_t n, hf_err *e)
{
    int rc = 0;
    if (!r)
        return hf_err_set(e, HF_EINTERNAL, "vecio_skip: no reader");
    if (r->failed)
        return copy_err(r, e);
    if (r->at_end || n == 0)
        return 0;
    if (r->fmt == VEC_FMT_HDF5) {
        r->row += rows_left(r, n);
        if (r->row == r->count)
            r->at_end = 1;
    } else if (r->fmt == VEC_FMT_CSV) {
        rc = csv_skip(r, n);
    } else {
        rc = binary_skip(r, n);
    }
    if (rc) {
        r->failed = rc;
        return copy_err(r, e);
    }
    return 0;
}

void vecio_close(vecio_reader **rp)
{
    if (!rp || !*rp)
        return;
    vecio_reader *r = *rp;
    if (r->gz)
        gzclose(r->gz);
    if (r->h5space >= 0)
        H5Sclose(r->h5space);
    if (r->h5dset >= 0)
        H5Dclose(r->h5dset);
    if (r->h5file >= 0)
        H5Fclose(r->h5file);
    free(r->ibuf);
    free(r->raw);
    free(r->whole);
    free(r->line);
    free(r->first);
    free(r);
    *rp = NULL;
}
