/*
 * test_vecio.c - unit tests for libcommon/vecio.
 *
 * Every fixture is written by hand (bytes, gzopen, the HDF5 C API) into a
 * fresh mkdtemp directory made in the group setup and removed in teardown,
 * so each test knows exactly which values the reader must return.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>
#include <zlib.h>

#include "vecio.h"

typedef struct {
    char dir[64];
    char path[256];
} fixture;

/* ---- fixture writers ------------------------------------------------------ */

static const char *at(void **state, const char *name)
{
    fixture *f = *state;
    snprintf(f->path, sizeof f->path, "%s/%s", f->dir, name);
    return f->path;
}

static void put_bytes(const char *path, const void *data, size_t len)
{
    size_t gz = strlen(path) > 3 && strcmp(path + strlen(path) - 3, ".gz") == 0;
    if (gz) {
        gzFile g = gzopen(path, "wb");
        assert_non_null(g);
        if (len)
            assert_int_equal(gzwrite(g, data, (unsigned)len), (int)len);
        assert_int_equal(gzclose(g), Z_OK);
        return;
    }
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    if (len)
        assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

/* Same as put_bytes, but gzip-compressed whatever the name. */
static void put_gz(const char *path, const void *data, size_t len)
{
    gzFile g = gzopen(path, "wb");
    assert_non_null(g);
    assert_int_equal(gzwrite(g, data, (unsigned)len), (int)len);
    assert_int_equal(gzclose(g), Z_OK);
}

typedef struct {
    unsigned char b[8192];
    size_t n;
} bytes;

static void add(bytes *b, const void *p, size_t n)
{
    assert_true(b->n + n <= sizeof b->b);
    memcpy(b->b + b->n, p, n);
    b->n += n;
}

static void add_i32(bytes *b, int32_t v)
{
    add(b, &v, 4);
}

static void add_be32(bytes *b, uint32_t v)
{
    unsigned char p[4] = {v >> 24, v >> 16 & 255, v >> 8 & 255, v & 255};
    add(b, p, 4);
}

/* fvecs rows: n rows of d floats from v. */
static bytes fvecs(const float *v, size_t n, size_t d)
{
    bytes b = {.n = 0};
    for (size_t i = 0; i < n; i++) {
        add_i32(&b, (int32_t)d);
        add(&b, v + i * d, d * sizeof(float));
    }
    return b;
}

/* npy v1 (or v2) file with the given dict and raw data. */
static bytes npy(int version, const char *dict, const void *data, size_t len)
{
    bytes b = {.n = 0};
    char hdr[256];
    size_t pre = version == 1 ? 10 : 12;
    size_t hl = (size_t)snprintf(hdr, sizeof hdr, "%s", dict);
    while ((pre + hl + 1) % 64 != 0)
        hdr[hl++] = ' ';
    hdr[hl++] = '\n';
    add(&b, "\x93NUMPY", 6);
    unsigned char ver[2] = {(unsigned char)version, 0};
    add(&b, ver, 2);
    if (version == 1) {
        unsigned char l[2] = {hl & 255, hl >> 8};
        add(&b, l, 2);
    } else {
        add_i32(&b, (int32_t)hl);
    }
    add(&b, hdr, hl);
    add(&b, data, len);
    return b;
}

/* idx file: u8 data with dims (big-endian). */
static bytes idx(const uint32_t *dims, int nd, const unsigned char *data, size_t len)
{
    bytes b = {.n = 0};
    unsigned char magic[4] = {0, 0, 0x08, (unsigned char)nd};
    add(&b, magic, 4);
    for (int i = 0; i < nd; i++)
        add_be32(&b, dims[i]);
    add(&b, data, len);
    return b;
}

static void put_h5(const char *path, const char *name, const float *v, hsize_t n, hsize_t d,
                   hid_t file_type)
{
    hid_t f = access(path, F_OK) == 0 ? H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT)
                                      : H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    hsize_t dims[2] = {n, d};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t ds = H5Dcreate2(f, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(ds >= 0);
    assert_true(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
}

/* ---- reader helpers ------------------------------------------------------- */

static vecio_reader *open_ok(const char *path, vec_format fmt)
{
    vecio_opts o = {.format = fmt};
    vecio_reader *r = NULL;
    hf_err e = {0};
    int rc = vecio_open(path, &o, &r, &e);
    if (rc)
        fail_msg("vecio_open(%s): %s", path, e.msg);
    assert_non_null(r);
    return r;
}

/* Read everything in batches of `batch` rows; returns rows read. */
static size_t read_all(vecio_reader *r, float *out, size_t cap_rows, size_t batch)
{
    size_t total = 0, got = 0, d = vecio_dim(r);
    hf_err e = {0};
    for (;;) {
        size_t want = batch < cap_rows - total ? batch : cap_rows - total;
        if (want == 0)
            want = 1; /* probe for end */
        float tmp[4096];
        assert_true(want * d <= 4096);
        int rc = vecio_read(r, tmp, want, &got, &e);
        if (rc)
            fail_msg("vecio_read: %s", e.msg);
        if (got == 0)
            break;
        assert_true(total + got <= cap_rows);
        memcpy(out + total * d, tmp, got * d * sizeof(float));
        total += got;
    }
    return total;
}

static void expect_values(const char *path, vec_format fmt, vec_format want_fmt, const float *want,
                          size_t n, size_t d)
{
    vecio_reader *r = open_ok(path, fmt);
    assert_int_equal(vecio_format(r), want_fmt);
    assert_int_equal(vecio_dim(r), d);
    float got[4096];
    assert_int_equal(read_all(r, got, n, 2), n);
    for (size_t i = 0; i < n * d; i++)
        assert_float_equal(got[i], want[i], 0.0);
    vecio_close(&r);
    assert_null(r);
}

/* Open, read all rows; expect code and a message containing needle. */
static void expect_error(const char *path, const vecio_opts *o, int code, const char *needle)
{
    vecio_reader *r = NULL;
    hf_err e = {0};
    int rc = vecio_open(path, o, &r, &e);
    if (rc == 0) {
        size_t got = 0, d = vecio_dim(r);
        float *buf = malloc(16 * d * sizeof(float));
        assert_non_null(buf);
        do
            rc = vecio_read(r, buf, 16, &got, &e);
        while (rc == 0 && got > 0);
        free(buf);
        vecio_close(&r);
    } else {
        assert_null(r);
    }
    assert_int_equal(rc, code);
    if (!strstr(e.msg, needle))
        fail_msg("message '%s' lacks '%s'", e.msg, needle);
}

static const float V[] = {1.5f, -2, 0.25f, 3, 4, 5, -6.5f, 7, 8, 9, 10, 11};

/* ---- round trips ---------------------------------------------------------- */

static void test_fvecs_round_trip_returns_written_values(void **state)
{
    bytes b = fvecs(V, 4, 3);
    put_bytes(at(state, "a.fvecs"), b.b, b.n);
    expect_values(at(state, "a.fvecs"), VEC_FMT_AUTO, VEC_FMT_FVECS, V, 4, 3);
    vecio_reader *r = open_ok(at(state, "a.fvecs"), VEC_FMT_AUTO);
    assert_int_equal(vecio_count(r), 0); /* fvecs states no count */
    vecio_close(&r);
}

static void test_bvecs_round_trip_returns_bytes_as_floats(void **state)
{
    bytes b = {.n = 0};
    unsigned char row0[] = {0, 1, 255}, row1[] = {7, 128, 9};
    add_i32(&b, 3), add(&b, row0, 3), add_i32(&b, 3), add(&b, row1, 3);
    put_bytes(at(state, "a.bvecs"), b.b, b.n);
    float want[] = {0, 1, 255, 7, 128, 9};
    expect_values(at(state, "a.bvecs"), VEC_FMT_AUTO, VEC_FMT_BVECS, want, 2, 3);
}

static void test_ivecs_round_trip_returns_ints_as_floats(void **state)
{
    bytes b = {.n = 0};
    int32_t row0[] = {1, -5, 100000}, row1[] = {0, 42, -1};
    add_i32(&b, 3), add(&b, row0, 12), add_i32(&b, 3), add(&b, row1, 12);
    put_bytes(at(state, "a.ivecs"), b.b, b.n);
    float want[] = {1, -5, 100000, 0, 42, -1};
    expect_values(at(state, "a.ivecs"), VEC_FMT_AUTO, VEC_FMT_IVECS, want, 2, 3);
}

static void test_npy_f4_v1_round_trip_and_count(void **state)
{
    bytes b = npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }", V, sizeof V);
    put_bytes(at(state, "a.npy"), b.b, b.n);
    expect_values(at(state, "a.npy"), VEC_FMT_AUTO, VEC_FMT_NPY, V, 4, 3);
    vecio_reader *r = open_ok(at(state, "a.npy"), VEC_FMT_AUTO);
    assert_int_equal(vecio_count(r), 4);
    vecio_close(&r);
}

static void test_npy_f8_v2_header_converts_to_f32(void **state)
{
    double d[] = {1.5, -2, 0.25, 3};
    bytes b = npy(2, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", d, sizeof d);
    put_bytes(at(state, "d.npy"), b.b, b.n);
    float want[] = {1.5f, -2, 0.25f, 3};
    expect_values(at(state, "d.npy"), VEC_FMT_AUTO, VEC_FMT_NPY, want, 2, 2);
}

static void test_npy_u1_and_i1_dtypes(void **state)
{
    unsigned char u[] = {0, 200, 3, 255};
    bytes b = npy(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2), }", u, 4);
    put_bytes(at(state, "u.npy"), b.b, b.n);
    float wu[] = {0, 200, 3, 255};
    expect_values(at(state, "u.npy"), VEC_FMT_AUTO, VEC_FMT_NPY, wu, 2, 2);

    signed char s[] = {-128, 127, -1, 0};
    b = npy(1, "{'descr': '|i1', 'fortran_order': False, 'shape': (2, 2), }", s, 4);
    put_bytes(at(state, "s.npy"), b.b, b.n);
    float ws[] = {-128, 127, -1, 0};
    expect_values(at(state, "s.npy"), VEC_FMT_AUTO, VEC_FMT_NPY, ws, 2, 2);
}

static void test_npy_1d_array_is_one_vector(void **state)
{
    bytes b = npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", V, 20);
    put_bytes(at(state, "one.npy"), b.b, b.n);
    expect_values(at(state, "one.npy"), VEC_FMT_AUTO, VEC_FMT_NPY, V, 1, 5);
}

static void test_idx_u8_row_is_product_of_trailing_dims(void **state)
{
    unsigned char px[12];
    for (int i = 0; i < 12; i++)
        px[i] = (unsigned char)(i * 20);
    uint32_t dims[] = {2, 2, 3};
    bytes b = idx(dims, 3, px, 12);
    put_bytes(at(state, "train-images-idx3-ubyte"), b.b, b.n);
    float want[12];
    for (int i = 0; i < 12; i++)
        want[i] = (float)(i * 20);
    expect_values(at(state, "train-images-idx3-ubyte"), VEC_FMT_AUTO, VEC_FMT_IDX, want, 2, 6);
    vecio_reader *r = open_ok(at(state, "train-images-idx3-ubyte"), VEC_FMT_AUTO);
    assert_int_equal(vecio_count(r), 2);
    vecio_close(&r);
}

static void test_idx1_labels_are_dim_one_rows(void **state)
{
    unsigned char lab[] = {3, 1, 4};
    uint32_t dims[] = {3};
    bytes b = idx(dims, 1, lab, 3);
    put_bytes(at(state, "labels-idx1-ubyte"), b.b, b.n);
    float want[] = {3, 1, 4};
    expect_values(at(state, "labels-idx1-ubyte"), VEC_FMT_AUTO, VEC_FMT_IDX, want, 3, 1);
}

static void test_csv_header_line_is_skipped(void **state)
{
    const char *t = "x,y,z\n1.5,-2,0.25\n3,4,5\n";
    put_bytes(at(state, "h.csv"), t, strlen(t));
    expect_values(at(state, "h.csv"), VEC_FMT_AUTO, VEC_FMT_CSV, V, 2, 3);
}

static void test_csv_space_tab_separators_and_blank_lines(void **state)
{
    const char *t = "1.5  -2\t0.25\r\n\n3, 4 ,5\n  \n-6.5 7 8"; /* no final newline */
    put_bytes(at(state, "s.txt"), t, strlen(t));
    expect_values(at(state, "s.txt"), VEC_FMT_AUTO, VEC_FMT_CSV, V, 3, 3);
}

static void test_hdf5_reads_train_by_default_and_named_dataset(void **state)
{
    const char *p = at(state, "ann.hdf5");
    float test[] = {9, 8, 7};
    float nb[] = {0, 3, 2, 1};
    put_h5(p, "train", V, 4, 3, H5T_IEEE_F32LE);
    put_h5(p, "test", test, 1, 3, H5T_IEEE_F64LE);
    put_h5(p, "neighbors", nb, 2, 2, H5T_STD_I32LE);
    expect_values(p, VEC_FMT_AUTO, VEC_FMT_HDF5, V, 4, 3);

    vecio_opts o = {.dataset = "test"};
    vecio_reader *r = NULL;
    hf_err e = {0};
    assert_int_equal(vecio_open(p, &o, &r, &e), 0);
    assert_int_equal(vecio_count(r), 1);
    float got[16];
    assert_int_equal(read_all(r, got, 1, 4), 1);
    assert_memory_equal(got, test, sizeof test);
    vecio_close(&r);

    o.dataset = "neighbors";
    assert_int_equal(vecio_open(p, &o, &r, &e), 0);
    assert_int_equal(read_all(r, got, 2, 1), 2);
    assert_memory_equal(got, nb, sizeof nb);
    vecio_close(&r);
}

/* ---- gzip ----------------------------------------------------------------- */

static void test_gzip_variants_read_like_plain(void **state)
{
    bytes b = fvecs(V, 4, 3);
    put_bytes(at(state, "a.fvecs.gz"), b.b, b.n);
    expect_values(at(state, "a.fvecs.gz"), VEC_FMT_AUTO, VEC_FMT_FVECS, V, 4, 3);

    b = npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }", V, sizeof V);
    put_bytes(at(state, "a.npy.gz"), b.b, b.n);
    expect_values(at(state, "a.npy.gz"), VEC_FMT_AUTO, VEC_FMT_NPY, V, 4, 3);

    unsigned char px[] = {1, 2, 3, 4};
    uint32_t dims[] = {2, 2};
    b = idx(dims, 2, px, 4);
    put_bytes(at(state, "t10k-images-idx3-ubyte.gz"), b.b, b.n);
    float wp[] = {1, 2, 3, 4};
    expect_values(at(state, "t10k-images-idx3-ubyte.gz"), VEC_FMT_AUTO, VEC_FMT_IDX, wp, 2, 2);

    const char *t = "1.5,-2,0.25\n3,4,5\n";
    put_bytes(at(state, "a.csv.gz"), t, strlen(t));
    expect_values(at(state, "a.csv.gz"), VEC_FMT_AUTO, VEC_FMT_CSV, V, 2, 3);
}

static void test_truncated_gzip_stream_is_an_error(void **state)
{
    bytes b = fvecs(V, 4, 3);
    put_gz(at(state, "full.gz"), b.b, b.n);
    FILE *fp = fopen(at(state, "full.gz"), "rb");
    assert_non_null(fp);
    unsigned char z[512];
    size_t n = fread(z, 1, sizeof z, fp);
    fclose(fp);
    put_bytes(at(state, "cut.fvecs"), z, n - 10); /* loses the gzip trailer and more */
    vecio_opts o = {0};
    expect_error(at(state, "cut.fvecs"), &o, HF_EDATA, "");
}

/* ---- detection ------------------------------------------------------------ */

static void test_detects_format_by_extension(void **state)
{
    static const struct {
        const char *name;
        vec_format f;
    } cases[] = {{"x.fvecs", VEC_FMT_FVECS}, {"x.ivecs", VEC_FMT_IVECS}, {"x.bvecs", VEC_FMT_BVECS},
                 {"x.csv", VEC_FMT_CSV},     {"x.tsv", VEC_FMT_CSV},     {"x.txt.gz", VEC_FMT_CSV}};
    /* Each file holds fvecs bytes: the name must win over the content, so
     * the dimension read tells which parser ran for the binary ones. */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *t = "1,2,3,4\n";
        bytes b = fvecs(V, 1, 3);
        int text = cases[i].f == VEC_FMT_CSV;
        put_bytes(at(state, cases[i].name), text ? (const void *)t : b.b, text ? strlen(t) : b.n);
        vecio_reader *r = open_ok(at(state, cases[i].name), VEC_FMT_AUTO);
        assert_int_equal(vecio_format(r), cases[i].f);
        vecio_close(&r);
    }
    /* a .npy name on fvecs bytes fails as npy rather than guessing */
    bytes b = fvecs(V, 4, 3);
    put_bytes(at(state, "liar.npy"), b.b, b.n);
    vecio_opts o = {0};
    expect_error(at(state, "liar.npy"), &o, HF_EDATA, "not an npy file");
}

static void test_detects_format_by_magic_without_extension(void **state)
{
    bytes b = npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }", V, sizeof V);
    put_bytes(at(state, "m_npy"), b.b, b.n);
    expect_values(at(state, "m_npy"), VEC_FMT_AUTO, VEC_FMT_NPY, V, 4, 3);
    put_gz(at(state, "m_npyz"), b.b, b.n);
    expect_values(at(state, "m_npyz"), VEC_FMT_AUTO, VEC_FMT_NPY, V, 4, 3);

    unsigned char px[] = {1, 2, 3, 4};
    uint32_t dims[] = {2, 2};
    b = idx(dims, 2, px, 4);
    put_bytes(at(state, "m_idx"), b.b, b.n);
    float wp[] = {1, 2, 3, 4};
    expect_values(at(state, "m_idx"), VEC_FMT_AUTO, VEC_FMT_IDX, wp, 2, 2);

    b = fvecs(V, 4, 3);
    put_bytes(at(state, "m_fvecs"), b.b, b.n);
    expect_values(at(state, "m_fvecs"), VEC_FMT_AUTO, VEC_FMT_FVECS, V, 4, 3);
    put_gz(at(state, "m_fvecsz"), b.b, b.n);
    expect_values(at(state, "m_fvecsz"), VEC_FMT_AUTO, VEC_FMT_FVECS, V, 4, 3);

    b = (bytes){.n = 0};
    int32_t iv[] = {1, 2, 3, 4, 5, 6};
    add_i32(&b, 3), add(&b, iv, 12), add_i32(&b, 3), add(&b, iv + 3, 12);
    put_bytes(at(state, "m_ivecs"), b.b, b.n);
    float wi[] = {1, 2, 3, 4, 5, 6};
    expect_values(at(state, "m_ivecs"), VEC_FMT_AUTO, VEC_FMT_IVECS, wi, 2, 3);

    b = (bytes){.n = 0};
    unsigned char bv[] = {10, 20, 30, 40, 50};
    for (int i = 0; i < 3; i++)
        add_i32(&b, 5), add(&b, bv, 5);
    put_bytes(at(state, "m_bvecs"), b.b, b.n);
    vecio_reader *r = open_ok(at(state, "m_bvecs"), VEC_FMT_AUTO);
    assert_int_equal(vecio_format(r), VEC_FMT_BVECS);
    assert_int_equal(vecio_dim(r), 5);
    vecio_close(&r);

    const char *t = "1.5 -2 0.25\n3 4 5\n";
    put_bytes(at(state, "m_csv"), t, strlen(t));
    expect_values(at(state, "m_csv"), VEC_FMT_AUTO, VEC_FMT_CSV, V, 2, 3);

    put_h5(at(state, "m_h5"), "train", V, 4, 3, H5T_IEEE_F32LE);
    expect_values(at(state, "m_h5"), VEC_FMT_AUTO, VEC_FMT_HDF5, V, 4, 3);

    unsigned char junk[] = {0xff, 0xfe, 0x01, 0x02, 0x00, 0x07};
    put_bytes(at(state, "m_junk"), junk, sizeof junk);
    vecio_opts o = {0};
    expect_error(at(state, "m_junk"), &o, HF_EDATA, "cannot tell");
}

/* Feed data through a pipe as stdin; detection must not lose the peeked bytes. */
static void with_stdin_pipe(const void *data, size_t len, void (*body)(void))
{
    int p[2], saved = dup(0);
    assert_true(saved >= 0);
    assert_int_equal(pipe(p), 0);
    assert_true(len < 60000); /* fits the pipe buffer: no writer thread needed */
    assert_int_equal(write(p[1], data, len), (ssize_t)len);
    close(p[1]);
    assert_int_equal(dup2(p[0], 0), 0);
    close(p[0]);
    body();
    assert_int_equal(dup2(saved, 0), 0);
    close(saved);
}

static void stdin_fvecs_body(void)
{
    expect_values("-", VEC_FMT_AUTO, VEC_FMT_FVECS, V, 4, 3);
}

static void stdin_h5_body(void)
{
    vecio_opts o = {.format = VEC_FMT_HDF5};
    expect_error("-", &o, HF_EUSAGE, "stdin");
}

static void test_stdin_stream_is_detected_without_losing_bytes(void **state)
{
    (void)state;
    bytes b = fvecs(V, 4, 3);
    with_stdin_pipe(b.b, b.n, stdin_fvecs_body);
    with_stdin_pipe("", 0, stdin_h5_body);
}

/* ---- skip ----------------------------------------------------------------- */

static void skip_then_expect(const char *path, size_t skip, const float *want, size_t n, size_t d)
{
    vecio_reader *r = open_ok(path, VEC_FMT_AUTO);
    hf_err e = {0};
    assert_int_equal(vecio_skip(r, skip, &e), 0);
    float got[64];
    assert_int_equal(read_all(r, got, n, 3), n);
    for (size_t i = 0; i < n * d; i++)
        assert_float_equal(got[i], want[i], 0.0);
    vecio_close(&r);
}

static void test_skip_starts_reading_at_offset_in_every_format(void **state)
{
    bytes b = fvecs(V, 4, 3);
    put_bytes(at(state, "k.fvecs"), b.b, b.n);
    skip_then_expect(at(state, "k.fvecs"), 2, V + 6, 2, 3);
    b = npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }", V, sizeof V);
    put_bytes(at(state, "k.npy"), b.b, b.n);
    skip_then_expect(at(state, "k.npy"), 3, V + 9, 1, 3);
    const char *t = "a,b,c\n1.5,-2,0.25\n3,4,5\n-6.5,7,8\n";
    put_bytes(at(state, "k.csv"), t, strlen(t));
    skip_then_expect(at(state, "k.csv"), 1, V + 3, 2, 3);
    put_h5(at(state, "k.h5"), "train", V, 4, 3, H5T_IEEE_F32LE);
    skip_then_expect(at(state, "k.h5"), 1, V + 3, 3, 3);
    skip_then_expect(at(state, "k.h5"), 10, V, 0, 3); /* past the end: nothing left */
    skip_then_expect(at(state, "k.fvecs"), 10, V, 0, 3);
}

static void test_read_after_end_keeps_returning_zero(void **state)
{
    bytes b = fvecs(V, 4, 3);
    put_bytes(at(state, "e.fvecs"), b.b, b.n);
    vecio_reader *r = open_ok(at(state, "e.fvecs"), VEC_FMT_AUTO);
    float buf[64];
    size_t got = 99;
    hf_err e = {0};
    assert_int_equal(vecio_read(r, buf, 10, &got, &e), 0);
    assert_int_equal(got, 4);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(vecio_read(r, buf, 10, &got, &e), 0);
        assert_int_equal(got, 0);
    }
    vecio_close(&r);
    vecio_close(&r); /* closing NULL is a no-op */
}

/* ---- errors --------------------------------------------------------------- */

static void test_fvecs_wrong_dim_mid_file_names_the_row(void **state)
{
    bytes b = fvecs(V, 2, 3);
    add_i32(&b, 2), add(&b, V, 8);
    put_bytes(at(state, "bad.fvecs"), b.b, b.n);
    vecio_opts o = {0};
    expect_error(at(state, "bad.fvecs"), &o, HF_EDATA, "row 2: dimension 2 differs from 3");
}

static void test_good_rows_come_before_the_error(void **state)
{
    bytes b = fvecs(V, 3, 3);
    add_i32(&b, 3), add(&b, V, 4); /* row 3 cut short */
    put_bytes(at(state, "part.fvecs"), b.b, b.n);
    vecio_reader *r = open_ok(at(state, "part.fvecs"), VEC_FMT_AUTO);
    float buf[64];
    size_t got = 0;
    hf_err e = {0};
    assert_int_equal(vecio_read(r, buf, 10, &got, &e), 0);
    assert_int_equal(got, 3);
    assert_int_equal(vecio_read(r, buf, 10, &got, &e), HF_EDATA);
    assert_int_equal(got, 0);
    assert_string_equal(e.msg, "row 3: truncated (expected 3 values)");
    vecio_close(&r);
}

static void test_truncated_npy_and_idx_name_the_row(void **state)
{
    bytes b = npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (5, 3), }", V, sizeof V);
    put_bytes(at(state, "t.npy"), b.b, b.n);
    vecio_opts o = {0};
    expect_error(at(state, "t.npy"), &o, HF_EDATA, "row 4: truncated (expected 3 values)");
    unsigned char px[] = {1, 2, 3, 4, 5};
    uint32_t dims[] = {3, 2};
    b = idx(dims, 2, px, 5);
    put_bytes(at(state, "t.idx"), b.b, b.n);
    expect_error(at(state, "t.idx"), &o, HF_EDATA, "row 2: truncated (expected 2 values)");
}

static void test_nan_and_inf_values_are_rejected_with_row(void **state)
{
    float v[12];
    memcpy(v, V, sizeof v);
    v[7] = NAN;
    bytes b = fvecs(v, 4, 3);
    put_bytes(at(state, "nan.fvecs"), b.b, b.n);
    vecio_opts o = {0};
    expect_error(at(state, "nan.fvecs"), &o, HF_EDATA, "row 2: NaN value");
    v[7] = 1, v[10] = -INFINITY;
    b = fvecs(v, 4, 3);
    put_bytes(at(state, "inf.fvecs"), b.b, b.n);
    expect_error(at(state, "inf.fvecs"), &o, HF_EDATA, "row 3: Inf value");
    const char *t = "1,2\n3,nan\n";
    put_bytes(at(state, "nan.csv"), t, strlen(t));
    expect_error(at(state, "nan.csv"), &o, HF_EDATA, "row 1: NaN value");
    t = "1,2\n3,4\ninf,1\n";
    put_bytes(at(state, "inf.csv"), t, strlen(t));
    expect_error(at(state, "inf.csv"), &o, HF_EDATA, "row 2: Inf value");
    double d[] = {1, 1e300};
    b = npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }", d, sizeof d);
    put_bytes(at(state, "big.npy"), b.b, b.n);
    expect_error(at(state, "big.npy"), &o, HF_EDATA, "out of f32 range");
    v[10] = NAN;
    put_h5(at(state, "nan.h5"), "train", v, 4, 3, H5T_IEEE_F32LE);
    expect_error(at(state, "nan.h5"), &o, HF_EDATA, "row 3: NaN value");
}

static void test_npy_bad_descr_and_cut_fortran_order_are_rejected(void **state)
{
    vecio_opts o = {0};
    bytes b = npy(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (1, 2), }", V, 16);
    put_bytes(at(state, "c.npy"), b.b, b.n);
    expect_error(at(state, "c.npy"), &o, HF_EDATA, "npy dtype '<c8' is not supported");
    /* Fortran order is read whole: 16 bytes cannot hold a 3 x 2 array */
    b = npy(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2), }", V, 16);
    put_bytes(at(state, "f.npy"), b.b, b.n);
    expect_error(at(state, "f.npy"), &o, HF_EDATA, "Fortran order");
    b = npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 2), }", V, 16);
    put_bytes(at(state, "3d.npy"), b.b, b.n);
    expect_error(at(state, "3d.npy"), &o, HF_EDATA, "shape");
    b = npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775807, 1024), }",
            V, 16);
    put_bytes(at(state, "huge.npy"), b.b, b.n);
    expect_error(at(state, "huge.npy"), &o, HF_EDATA, "too large");
}

static void test_bad_idx_magic_is_rejected(void **state)
{
    unsigned char h[] = {0, 0, 0x07, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 5};
    put_bytes(at(state, "bad-idx3-ubyte"), h, sizeof h);
    vecio_opts o = {0};
    expect_error(at(state, "bad-idx3-ubyte"), &o, HF_EDATA, "not an idx file");
}

static void test_csv_ragged_row_names_row_and_line(void **state)
{
    const char *t = "x,y,z\n1,2,3\n\n4,5\n";
    put_bytes(at(state, "r.csv"), t, strlen(t));
    vecio_opts o = {0};
    expect_error(at(state, "r.csv"), &o, HF_EDATA, "row 1 (line 4): 2 values, expected 3");
    t = "1,2\n3,x\n";
    put_bytes(at(state, "w.csv"), t, strlen(t));
    expect_error(at(state, "w.csv"), &o, HF_EDATA, "row 1 (line 2): not a number: 'x'");
    t = "a,b\n";
    put_bytes(at(state, "hdr.csv"), t, strlen(t));
    expect_error(at(state, "hdr.csv"), &o, HF_EDATA, "no data rows");
}

static void test_hdf5_missing_dataset_lists_what_exists(void **state)
{
    put_h5(at(state, "m.h5"), "train", V, 4, 3, H5T_IEEE_F32LE);
    put_h5(at(state, "m.h5"), "test", V, 1, 3, H5T_IEEE_F32LE);
    vecio_opts o = {.dataset = "distances"};
    expect_error(at(state, "m.h5"), &o, HF_EDATA, "no dataset 'distances'");
    expect_error(at(state, "m.h5"), &o, HF_EDATA, "test, train");
    put_bytes(at(state, "not.h5"), "hello", 5);
    o.dataset = NULL;
    expect_error(at(state, "not.h5"), &o, HF_EDATA, "not an HDF5 file");
}

static void test_limits_and_open_failures(void **state)
{
    vecio_opts o = {0};
    expect_error(at(state, "does-not-exist.fvecs"), &o, HF_EOPEN, "cannot open");
    expect_error(at(state, "does-not-exist.h5"), &o, HF_EOPEN, "cannot open");
    bytes b = fvecs(V, 4, 3);
    put_bytes(at(state, "l.fvecs"), b.b, b.n);
    o.max_dim = 2;
    expect_error(at(state, "l.fvecs"), &o, HF_EDATA, "out of range 1..2");
    o.max_dim = 0;
    b = (bytes){.n = 0};
    add_i32(&b, 70000), add(&b, V, 8);
    put_bytes(at(state, "big.fvecs"), b.b, b.n);
    expect_error(at(state, "big.fvecs"), &o, HF_EDATA, "out of range 1..65536");
    put_bytes(at(state, "empty.fvecs"), "", 0);
    expect_error(at(state, "empty.fvecs"), &o, HF_EDATA, "empty input");
    b = (bytes){.n = 0};
    add_i32(&b, 3), add_i32(&b, 0);
    put_bytes(at(state, "short.fvecs"), b.b, b.n);
    expect_error(at(state, "short.fvecs"), &o, HF_EDATA, "row 0: truncated (expected 3 values)");
    put_bytes(at(state, "x.h5.gz"), "x", 1);
    expect_error(at(state, "x.h5.gz"), &(vecio_opts){0}, HF_EDATA, "gzip");
}

static void test_format_names_parse_and_print(void **state)
{
    (void)state;
    vec_format f;
    hf_err e = {0};
    assert_int_equal(vecio_format_parse("mnist", &f, &e), 0);
    assert_int_equal(f, VEC_FMT_IDX);
    assert_int_equal(vecio_format_parse("H5", &f, &e), 0);
    assert_int_equal(f, VEC_FMT_HDF5);
    assert_int_equal(vecio_format_parse("auto", &f, &e), 0);
    assert_int_equal(f, VEC_FMT_AUTO);
    assert_int_equal(vecio_format_parse("parquet", &f, &e), HF_EUSAGE);
    assert_non_null(strstr(e.msg, "parquet"));
    assert_string_equal(vecio_format_name(VEC_FMT_FVECS), "fvecs");
    assert_string_equal(vecio_format_name(VEC_FMT_CSV), "csv");
    assert_string_equal(vecio_format_name((vec_format)99), "unknown");
}

/* ---- setup ---------------------------------------------------------------- */

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/test_vecio.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fvecs_round_trip_returns_written_values, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bvecs_round_trip_returns_bytes_as_floats, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ivecs_round_trip_returns_ints_as_floats, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_npy_f4_v1_round_trip_and_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_npy_f8_v2_header_converts_to_f32, setup, teardown),
        cmocka_unit_test_setup_teardown(test_npy_u1_and_i1_dtypes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_npy_1d_array_is_one_vector, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idx_u8_row_is_product_of_trailing_dims, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_idx1_labels_are_dim_one_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_csv_header_line_is_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_csv_space_tab_separators_and_blank_lines, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hdf5_reads_train_by_default_and_named_dataset, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_gzip_variants_read_like_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_gzip_stream_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detects_format_by_extension, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detects_format_by_magic_without_extension, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stdin_stream_is_detected_without_losing_bytes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_skip_starts_reading_at_offset_in_every_format, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_read_after_end_keeps_returning_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fvecs_wrong_dim_mid_file_names_the_row, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_good_rows_come_before_the_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_npy_and_idx_name_the_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nan_and_inf_values_are_rejected_with_row, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_npy_bad_descr_and_cut_fortran_order_are_rejected,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_idx_magic_is_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_csv_ragged_row_names_row_and_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hdf5_missing_dataset_lists_what_exists, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_limits_and_open_failures, setup, teardown),
        cmocka_unit_test(test_format_names_parse_and_print),
    };
    return cmocka_run_group_tests_name("vecio", tests, NULL, NULL);
}
