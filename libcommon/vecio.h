/*
 * vecio.h - reading vector files in the formats users have.
 *
 * Formats: fvecs, bvecs, ivecs, npy (<f2, <f4, <f8, |u1, |i1, C or Fortran order, 1-D or
 * 2-D), MNIST idx (u8 images, any number of dims >= 1 after the count, plain
 * or gzip), csv (one vector a line; comma, space or tab separated; a first
 * line that does not parse as numbers is a header and is skipped), and HDF5
 * as ann-benchmarks ships it (datasets "train", "test", "neighbors",
 * "distances"; picked with `dataset`).
 * Every non-HDF5 format may be gzip-compressed (read through zlib).
 *
 * Every reader converts to f32, row-major. A reader owns its file handle;
 * vecio_close frees it and sets the caller's pointer to NULL.
 * Sizes from headers are checked for overflow and against limits before any
 * allocation. NaN/Inf values are rejected with the row number.
 */
#ifndef HF_VECIO_H
#define HF_VECIO_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef enum {
    VEC_FMT_AUTO = 0,
    VEC_FMT_FVECS,
    VEC_FMT_BVECS,
    VEC_FMT_IVECS,
    VEC_FMT_NPY,
    VEC_FMT_IDX,
    VEC_FMT_CSV,
    VEC_FMT_HDF5,
} vec_format;

typedef struct vecio_reader vecio_reader;

typedef struct vecio_opts {
    vec_format format;   /* VEC_FMT_AUTO: by extension, then by magic bytes */
    const char *dataset; /* HDF5 dataset name; NULL means "train" */
    size_t max_dim;      /* 0 means the default limit (65536) */
} vecio_opts;

/* Parse a format name ("fvecs", "npy", "idx", "mnist", "csv", "hdf5", "h5",
 * "auto", ...). Returns 0 and sets *out, or HF_EUSAGE. */
int vecio_format_parse(const char *name, vec_format *out, hf_err *e);
const char *vecio_format_name(vec_format f);

/* Open path ("-" is stdin; HDF5 cannot be read from stdin). On success the
 * caller owns *out. */
int vecio_open(const char *path, const vecio_opts *opts, vecio_reader **out, hf_err *e);

/* Dimension of every row (known after open). */
size_t vecio_dim(const vecio_reader *r);

/* Row count if the header states it (npy, idx, hdf5), else 0 (fvecs, csv,
 * stdin streams). */
size_t vecio_count(const vecio_reader *r);

/* The format actually being read (after auto-detection). */
vec_format vecio_format(const vecio_reader *r);

/* Skip the first n rows (for --offset). */
int vecio_skip(vecio_reader *r, size_t n, hf_err *e);

/* Read up to max_rows rows into buf (max_rows * dim floats). *got is the
 * number read; 0 with return 0 means end of data. Errors name the row. */
int vecio_read(vecio_reader *r, float *buf, size_t max_rows, size_t *got, hf_err *e);

void vecio_close(vecio_reader **r);

#endif
