/*
 * fastscan.c - scalar reference kernels and CPU dispatch for fastscan.h.
 * The scalar prep does the same float operations in the same order as the
 * SIMD ones (sub, min/max, scale, +0.5, truncate), so quantised residuals
 * agree up to the last rounding of a fused multiply-add.
 */
#include "fastscan.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

/* clang-format off */
const uint8_t fs_lut_idx[4][64] __attribute__((aligned(64))) = {
    {0x80, 0x00, 0x80, 0x00, 0x80, 0x00, 0x80, 0x00, 0x80, 0x00, 0x80, 0x00, 0x80, 0x00, 0x80, 0x00, 0x80, 0x04, 0x80, 0x04, 0x80, 0x04, 0x80, 0x04, 0x80, 0x04, 0x80, 0x04, 0x80, 0x04, 0x80, 0x04, 0x80, 0x08, 0x80, 0x08, 0x80, 0x08, 0x80, 0x08, 0x80, 0x08, 0x80, 0x08, 0x80, 0x08, 0x80, 0x08, 0x80, 0x0c, 0x80, 0x0c, 0x80, 0x0c, 0x80, 0x0c, 0x80, 0x0c, 0x80, 0x0c, 0x80, 0x0c, 0x80, 0x0c},
    {0x80, 0x80, 0x01, 0x01, 0x80, 0x80, 0x01, 0x01, 0x80, 0x80, 0x01, 0x01, 0x80, 0x80, 0x01, 0x01, 0x80, 0x80, 0x05, 0x05, 0x80, 0x80, 0x05, 0x05, 0x80, 0x80, 0x05, 0x05, 0x80, 0x80, 0x05, 0x05, 0x80, 0x80, 0x09, 0x09, 0x80, 0x80, 0x09, 0x09, 0x80, 0x80, 0x09, 0x09, 0x80, 0x80, 0x09, 0x09, 0x80, 0x80, 0x0d, 0x0d, 0x80, 0x80, 0x0d, 0x0d, 0x80, 0x80, 0x0d, 0x0d, 0x80, 0x80, 0x0d, 0x0d},
    {0x80, 0x80, 0x80, 0x80, 0x02, 0x02, 0x02, 0x02, 0x80, 0x80, 0x80, 0x80, 0x02, 0x02, 0x02, 0x02, 0x80, 0x80, 0x80, 0x80, 0x06, 0x06, 0x06, 0x06, 0x80, 0x80, 0x80, 0x80, 0x06, 0x06, 0x06, 0x06, 0x80, 0x80, 0x80, 0x80, 0x0a, 0x0a, 0x0a, 0x0a, 0x80, 0x80, 0x80, 0x80, 0x0a, 0x0a, 0x0a, 0x0a, 0x80, 0x80, 0x80, 0x80, 0x0e, 0x0e, 0x0e, 0x0e, 0x80, 0x80, 0x80, 0x80, 0x0e, 0x0e, 0x0e, 0x0e},
    {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f},
};
/* clang-format on */

void fs_pack(uint8_t *codes, size_t dpad, unsigned j, const uint8_t *bits)
{
    unsigned shift = j < 16 ? 0 : 4, slot = j & 15;
    for (size_t g = 0; g < dpad / 4; g++) {
        unsigned nib = 0;
        for (unsigned t = 0; t < 4; t++)
            nib |= (bits[4 * g + t] ? 1u : 0u) << t;
        uint8_t *b = codes + 16 * g + slot;
        *b = (uint8_t)((*b & (0xf0u >> shift)) | (nib << shift));
    }
}

void fs_pack16(uint8_t *codes, size_t dpad, unsigned j, const uint8_t *bits)
{
    size_t half = dpad / 8; /* groups in each nibble half */
    for (size_t g = 0; g < 2 * half; g++) {
        unsigned nib = 0, shift = g < half ? 0 : 4;
        for (unsigned t = 0; t < 4; t++)
            nib |= (bits[4 * g + t] ? 1u : 0u) << t;
        uint8_t *b = codes + 16 * (g % half) + j;
        *b = (uint8_t)((*b & (0xf0u >> shift)) | (nib << shift));
    }
}

void fs_prep_scalar(const float *y, const float *v, size_t dpad, uint8_t *rq, uint8_t *lut,
                    fs_resid *out)
{
    float lo = INFINITY, hi = -INFINITY, sum = 0, sq = 0;
    for (size_t i = 0; i < dpad; i++) {
        float r = y[i] - v[i];
        lo = r < lo ? r : lo;
        hi = r > hi ? r : hi;
        sum += r;
        sq += r * r;
    }
    float delta, inv = fs_inv_delta(lo, hi, &delta);
    for (size_t i = 0; i < dpad; i++) {
        float x = (y[i] - v[i] - lo) * inv + 0.5f;
        int c = (int)x;
        rq[i] = (uint8_t)(c < 0 ? 0 : c > 63 ? 63 : c);
    }
    for (size_t g = 0; g < dpad / 4; g++)
        for (unsigned e = 0; e < 16; e++) {
            unsigned s = 0;
            for (unsigned t = 0; t < 4; t++)
                if (e >> t & 1)
                    s += rq[4 * g + t];
            lut[16 * g + e] = (uint8_t)s;
        }
    out->dist2 = sq;
    out->lo = lo;
    out->delta = delta;
    out->sum = sum;
}

void fs_scan_scalar(const uint8_t *codes, const uint8_t *lut, const uint8_t *lut_hi, size_t groups,
                    uint32_t out[FS_BATCH])
{
    for (unsigned j = 0; j < FS_BATCH; j++) {
        unsigned shift = j < 16 ? 0 : 4, slot = j & 15;
        const uint8_t *t = j < 16 ? lut : lut_hi;
        uint32_t s = 0;
        for (size_t g = 0; g < groups; g++)
            s += t[16 * g + ((codes[16 * g + slot] >> shift) & 15)];
        out[j] = s;
    }
}

static const fs_kernels k_scalar = {"scalar", fs_prep_scalar, fs_scan_scalar};
static const fs_kernels k_avx2 = {"avx2", fs_prep_avx2, fs_scan_avx2};
static const fs_kernels k_avx512 = {"avx512", fs_prep_avx512, fs_scan_avx512};

static int have_avx2(void)
{
    return __builtin_cpu_supports("avx2");
}

static int have_avx512(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}

static const fs_kernels *chosen = &k_scalar;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

static void choose(void)
{
    __builtin_cpu_init();
    chosen = have_avx512() ? &k_avx512 : have_avx2() ? &k_avx2 : &k_scalar;
}

const fs_kernels *fs_best(void)
{
    pthread_once(&chosen_once, choose);
    return chosen;
}

const fs_kernels *fs_isa(const char *isa)
{
    __builtin_cpu_init();
    if (strcmp(isa, "scalar") == 0)
        return &k_scalar;
    if (strcmp(isa, "avx2") == 0)
        return have_avx2() ? &k_avx2 : NULL;
    if (strcmp(isa, "avx512") == 0)
        return have_avx512() ? &k_avx512 : NULL;
    return NULL;
}
