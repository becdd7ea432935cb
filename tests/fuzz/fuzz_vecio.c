/*
 * fuzz_vecio.c - libFuzzer target for libcommon/vecio.
 *
 * The input is written to a temporary file, which is then opened with every
 * format forced in turn and once with auto-detection, and read to the end in
 * small batches (every other pass skips a row first, so vecio_skip is covered
 * too). The reader must never crash, leak or hang whatever the bytes say;
 * errors are the expected outcome for most inputs.
 *
 * HDF5 is left out: libhdf5 1.10.8 itself segfaults (H5Lexists on a corrupt
 * symbol table), asks malloc for absurd sizes, and leaks when H5Fopen fails
 * on fuzzed files, so fuzzing it through us only finds its bugs. Inputs with
 * the HDF5 signature are therefore not given to auto-detection either.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vecio.h"

#define BATCH 5
#define MAX_ROWS 4096 /* enough to reach the end of any input under 4 KB */

static void read_through(const char *path, vec_format fmt, size_t skip)
{
    vecio_opts o = {.format = fmt};
    vecio_reader *r = NULL;
    hf_err e = {0};
    if (vecio_open(path, &o, &r, &e) != 0)
        return;
    size_t dim = vecio_dim(r), got = 0, total = 0;
    float *buf = malloc(BATCH * dim * sizeof(float));
    if (buf && vecio_skip(r, skip, &e) == 0) {
        while (total < MAX_ROWS && vecio_read(r, buf, BATCH, &got, &e) == 0 && got > 0)
            total += got;
    }
    free(buf);
    vecio_close(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const vec_format formats[] = {
        VEC_FMT_AUTO, VEC_FMT_FVECS, VEC_FMT_BVECS, VEC_FMT_IVECS,
        VEC_FMT_NPY,  VEC_FMT_IDX,   VEC_FMT_CSV,
    };
    int hdf5_magic = size >= 4 && memcmp(data, "\x89HDF", 4) == 0;
    char path[] = "/tmp/fuzz_vecio.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return 0;
    int ok = write(fd, data, size) == (ssize_t)size;
    close(fd);
    for (size_t i = hdf5_magic ? 1 : 0; ok && i < sizeof formats / sizeof formats[0]; i++)
        read_through(path, formats[i], i % 2);
    unlink(path);
    return 0;
}
