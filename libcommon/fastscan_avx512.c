/*
 * fastscan_avx512.c - AVX-512BW kernels of fastscan.h (target attributes,
 * dispatched at run time). One step handles four 4-dimension groups: 64
 * bytes of codes against four 16-entry tables, one per 128-bit lane.
 */
#include "fastscan.h"

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw")))

AVX512 void fs_prep_avx512(const float *y, const float *v, size_t dpad, uint8_t *rq, uint8_t *lut,
                           fs_resid *out)
{
    __m512 vlo = _mm512_set1_ps(__builtin_inff()), vhi = _mm512_set1_ps(-__builtin_inff());
    __m512 vsum = _mm512_setzero_ps(), vsq = _mm512_setzero_ps();
    for (size_t i = 0; i < dpad; i += 16) {
        __m512 r = _mm512_sub_ps(_mm512_loadu_ps(y + i), _mm512_loadu_ps(v + i));
        vlo = _mm512_min_ps(vlo, r);
        vhi = _mm512_max_ps(vhi, r);
        vsum = _mm512_add_ps(vsum, r);
        vsq = _mm512_fmadd_ps(r, r, vsq);
    }
    float lo = _mm512_reduce_min_ps(vlo), hi = _mm512_reduce_max_ps(vhi);
    float delta, inv = fs_inv_delta(lo, hi, &delta);
    __m512 vl = _mm512_set1_ps(lo), vi = _mm512_set1_ps(inv), half = _mm512_set1_ps(0.5f);
    __m512i top = _mm512_set1_epi32(63), zero = _mm512_setzero_si512();
    for (size_t i = 0; i < dpad; i += 16) {
        __m512 r = _mm512_sub_ps(_mm512_loadu_ps(y + i), _mm512_loadu_ps(v + i));
        __m512 x = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(r, vl), vi), half);
        __m512i c = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvttps_epi32(x), zero), top);
        _mm_storeu_si128((__m128i *)(void *)(rq + i), _mm512_cvtepi32_epi8(c));
    }
    const __m512i i0 = _mm512_load_si512(fs_lut_idx[0]), i1 = _mm512_load_si512(fs_lut_idx[1]);
    const __m512i i2 = _mm512_load_si512(fs_lut_idx[2]), i3 = _mm512_load_si512(fs_lut_idx[3]);
    for (size_t g = 0; g < dpad / 4; g += 4) {
        __m512i b =
            _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)(rq + 4 * g)));
        __m512i t = _mm512_add_epi8(_mm512_shuffle_epi8(b, i0), _mm512_shuffle_epi8(b, i1));
        t = _mm512_add_epi8(
            t, _mm512_add_epi8(_mm512_shuffle_epi8(b, i2), _mm512_shuffle_epi8(b, i3)));
        _mm512_storeu_si512((void *)(lut + 16 * g), t);
    }
    out->dist2 = _mm512_reduce_add_ps(vsq);
    out->lo = lo;
    out->delta = delta;
    out->sum = _mm512_reduce_add_ps(vsum);
}

/* 16-bit lanes of a: vector i's sum is lane i + lane 16+i (two lane pairs
 * of groups); widen to 32 bits. */
AVX512 static inline __m512i fold16(__m512i a)
{
    __m512i x = _mm512_cvtepu16_epi32(_mm512_castsi512_si256(a));
    __m512i y = _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(a, 1));
    return _mm512_add_epi32(x, y);
}

AVX512 void fs_scan_avx512(const uint8_t *codes, const uint8_t *lut, const uint8_t *lut_hi,
                           size_t groups, uint32_t out[FS_BATCH])
{
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    __m512i tot0 = _mm512_setzero_si512(), tot1 = _mm512_setzero_si512();
    for (size_t g0 = 0; g0 < groups;) {
        /* a 16-bit lane gains at most 2 * 252 a step: flush after 64 steps */
        size_t g1 = g0 + 256 < groups ? g0 + 256 : groups;
        __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
        for (size_t g = g0; g < g1; g += 4) {
            __m512i c = _mm512_loadu_si512((const void *)(codes + 16 * g));
            __m512i l = _mm512_loadu_si512((const void *)(lut + 16 * g));
            __m512i lh = _mm512_loadu_si512((const void *)(lut_hi + 16 * g));
            __m512i rl = _mm512_shuffle_epi8(l, _mm512_and_si512(c, low4));
            __m512i rh = _mm512_shuffle_epi8(lh, _mm512_and_si512(_mm512_srli_epi16(c, 4), low4));
            a0 = _mm512_add_epi16(a0, _mm512_cvtepu8_epi16(_mm512_castsi512_si256(rl)));
            a0 = _mm512_add_epi16(a0, _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(rl, 1)));
            a1 = _mm512_add_epi16(a1, _mm512_cvtepu8_epi16(_mm512_castsi512_si256(rh)));
            a1 = _mm512_add_epi16(a1, _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(rh, 1)));
        }
        tot0 = _mm512_add_epi32(tot0, fold16(a0));
        tot1 = _mm512_add_epi32(tot1, fold16(a1));
        g0 = g1;
    }
    _mm512_storeu_si512((void *)out, tot0);
    _mm512_storeu_si512((void *)(out + 16), tot1);
}
