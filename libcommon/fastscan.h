/*
 * fastscan.h - batched distance estimates from 1-bit neighbour codes
 * (RaBitQ-style codes, "fast scan" lookups), used by the row layout of
 * hnsw_rows.c.
 *
 * A batch holds the codes of 32 vectors of dpad dimensions (dpad a multiple
 * of 64), one bit a dimension, grouped 4 dimensions (one nibble) at a time:
 * group g takes 16 bytes, byte i holding vector i's nibble in its low half
 * and vector i+16's in its high half; bit t of a nibble is dimension 4g+t.
 * A query residual r (dpad floats) is quantised to 6 bits a dimension,
 * r ~ lo + delta * rq, and turned into one 16-entry table per group, entry e
 * = sum of rq over the bits set in e (at most 4 * 63 = 252, so a byte).
 * Scanning a batch sums, per vector, its nibbles' table entries: the integer
 * <b, rq> for all 32 vectors, which hnsw_rows.c turns into distance estimates.
 * The tables are looked up inside registers (pshufb on 16-byte lanes): four
 * groups a step with AVX-512BW, two with AVX2, beside a scalar reference the
 * tests hold them to; the fastest the CPU has is picked once (as distance.h).
 */
#ifndef HF_FASTSCAN_H
#define HF_FASTSCAN_H

#include <stddef.h>
#include <stdint.h>

#define FS_BATCH 32

/* What fs_prep learns of a residual r = y - v. */
typedef struct fs_resid {
    float dist2;     /* |r|^2: the exact squared distance |y - v|^2 */
    float lo, delta; /* r_i ~ lo + delta * rq_i */
    float sum;       /* sum of r_i */
} fs_resid;

typedef struct fs_kernels {
    const char *isa;
    /* r = y - v over dpad floats: fills *out, the quantised residual rq
     * (dpad bytes, scratch) and the tables lut (dpad * 4 bytes) */
    void (*prep)(const float *y, const float *v, size_t dpad, uint8_t *rq, uint8_t *lut,
                 fs_resid *out);
    /* out[i] = sum over g < groups of lut[g][low nibble of byte 16 g + i]
     * for i < 16, of lut_hi[g][high nibble of byte 16 g + i - 16] above:
     * a 32-vector batch when lut_hi is lut and groups dpad / 4; a 16-vector
     * batch (fs_pack16) when lut_hi is lut + 16 dpad / 8 and groups
     * dpad / 8 (groups a multiple of 4) */
    void (*scan)(const uint8_t *codes, const uint8_t *lut, const uint8_t *lut_hi, size_t groups,
                 uint32_t out[FS_BATCH]);
} fs_kernels;

const fs_kernels *fs_best(void);
/* "scalar", "avx2" or "avx512"; NULL when the CPU lacks it */
const fs_kernels *fs_isa(const char *isa);

/* Bytes of one batch's codes. */
static inline size_t fs_batch_bytes(size_t dpad)
{
    return dpad * FS_BATCH / 8;
}
/* Set vector j's (0..31) code in a batch from its dpad sign bits
 * (bits[i] != 0: dimension i is positive). */
void fs_pack(uint8_t *codes, size_t dpad, unsigned j, const uint8_t *bits);
/* A 16-vector batch (the rows' layout): dpad / 8 groups of 16 bytes, byte
 * 16 g + j holding vector j's nibble of dimensions 4g.. in its low half and
 * of dimensions dpad / 2 + 4g.. in its high half; dpad * 2 bytes. Scanned
 * as a 32-vector batch with the upper half's tables for the high nibbles,
 * vector j's sum being out[j] + out[16 + j]. */
static inline size_t fs_batch16_bytes(size_t dpad)
{
    return dpad * 2;
}
void fs_pack16(uint8_t *codes, size_t dpad, unsigned j, const uint8_t *bits);

void fs_prep_scalar(const float *y, const float *v, size_t dpad, uint8_t *rq, uint8_t *lut,
                    fs_resid *out);
void fs_scan_scalar(const uint8_t *codes, const uint8_t *lut, const uint8_t *lut_hi, size_t groups,
                    uint32_t out[FS_BATCH]);
void fs_prep_avx2(const float *y, const float *v, size_t dpad, uint8_t *rq, uint8_t *lut,
                  fs_resid *out);
void fs_scan_avx2(const uint8_t *codes, const uint8_t *lut, const uint8_t *lut_hi, size_t groups,
                  uint32_t out[FS_BATCH]);
void fs_prep_avx512(const float *y, const float *v, size_t dpad, uint8_t *rq, uint8_t *lut,
                    fs_resid *out);
void fs_scan_avx512(const uint8_t *codes, const uint8_t *lut, const uint8_t *lut_hi, size_t groups,
                    uint32_t out[FS_BATCH]);

/* The table index patterns shared by the SIMD kernels: row t, lane L, entry
 * e is 4L + t when bit t of e is set, else 0x80 (pshufb writes 0). */
extern const uint8_t fs_lut_idx[4][64];

/* 1 / delta for quantising to 6 bits (0 when the residual is constant). */
static inline float fs_inv_delta(float lo, float hi, float *delta)
{
    *delta = (hi - lo) / 63.0f;
    return *delta > 0 ? 1.0f / *delta : 0.0f;
}

#endif
