/*
 * fastscan_avx2.c - AVX2 kernels of fastscan.h (target attributes,
 * dispatched at run time). One step handles two 4-dimension groups: 32
 * bytes of codes against two 16-entry tables, one per 128-bit lane.
 */
#include "fastscan.h"

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))

AVX2 static inline float hmin8(__m256 v)
{
    __m128 a = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_min_ps(a, _mm_movehl_ps(a, a));
    a = _mm_min_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

AVX2 static inline float hmax8(__m256 v)
{
    __m128 a = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

AVX2 static inline float hsum8(__m256 v)
{
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

AVX2 void fs_prep_avx2(const float *y, const float *v, size_t dpad, uint8_t *rq, uint8_t *lut,
                       fs_resid *out)
{
    __m256 vlo = _mm256_set1_ps(__builtin_inff()), vhi = _mm256_set1_ps(-__builtin_inff());
    __m256 vsum = _mm256_setzero_ps(), vsq = _mm256_setzero_ps();
    for (size_t i = 0; i < dpad; i += 8) {
        __m256 r = _mm256_sub_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(v + i));
        vlo = _mm256_min_ps(vlo, r);
        vhi = _mm256_max_ps(vhi, r);
        vsum = _mm256_add_ps(vsum, r);
        vsq = _mm256_add_ps(vsq, _mm256_mul_ps(r, r));
    }
    float lo = hmin8(vlo), hi = hmax8(vhi);
    float delta, inv = fs_inv_delta(lo, hi, &delta);
    __m256 vl = _mm256_set1_ps(lo), vi = _mm256_set1_ps(inv), half = _mm256_set1_ps(0.5f);
    __m256i top = _mm256_set1_epi32(63), zero = _mm256_setzero_si256();
    for (size_t i = 0; i < dpad; i += 16) {
        __m256 r0 = _mm256_sub_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(v + i));
        __m256 r1 = _mm256_sub_ps(_mm256_loadu_ps(y + i + 8), _mm256_loadu_ps(v + i + 8));
        __m256 x0 = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(r0, vl), vi), half);
        __m256 x1 = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(r1, vl), vi), half);
        __m256i c0 = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvttps_epi32(x0), zero), top);
        __m256i c1 = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvttps_epi32(x1), zero), top);
        /* packs work per 128-bit lane: put the 16 bytes back in order */
        __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(c0, c1), 0xd8);
        __m128i b = _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
        _mm_storeu_si128((__m128i *)(void *)(rq + i), b);
    }
    const __m256i i0 = _mm256_load_si256((const __m256i *)(const void *)fs_lut_idx[0]);
    const __m256i i1 = _mm256_load_si256((const __m256i *)(const void *)fs_lut_idx[1]);
    const __m256i i2 = _mm256_load_si256((const __m256i *)(const void *)fs_lut_idx[2]);
    const __m256i i3 = _mm256_load_si256((const __m256i *)(const void *)fs_lut_idx[3]);
    for (size_t g = 0; g < dpad / 4; g += 2) {
        __m128i q8 = _mm_loadl_epi64((const __m128i *)(const void *)(rq + 4 * g));
        __m256i b = _mm256_broadcastsi128_si256(q8);
        __m256i t = _mm256_add_epi8(_mm256_shuffle_epi8(b, i0), _mm256_shuffle_epi8(b, i1));
        t = _mm256_add_epi8(
            t, _mm256_add_epi8(_mm256_shuffle_epi8(b, i2), _mm256_shuffle_epi8(b, i3)));
        _mm256_storeu_si256((__m256i *)(void *)(lut + 16 * g), t);
    }
    out->dist2 = hsum8(vsq);
    out->lo = lo;
    out->delta = delta;
    out->sum = hsum8(vsum);
}

AVX2 void fs_scan_avx2(const uint8_t *codes, const uint8_t *lut, const uint8_t *lut_hi,
                       size_t groups, uint32_t out[FS_BATCH])
{
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256i t[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                    _mm256_setzero_si256()};
    for (size_t g0 = 0; g0 < groups;) {
        /* a 16-bit lane gains at most 2 * 252 a step: flush after 64 steps */
        size_t g1 = g0 + 128 < groups ? g0 + 128 : groups;
        __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
        for (size_t g = g0; g < g1; g += 2) {
            __m256i c = _mm256_loadu_si256((const __m256i *)(const void *)(codes + 16 * g));
            __m256i l = _mm256_loadu_si256((const __m256i *)(const void *)(lut + 16 * g));
            __m256i lh = _mm256_loadu_si256((const __m256i *)(const void *)(lut_hi + 16 * g));
            __m256i rl = _mm256_shuffle_epi8(l, _mm256_and_si256(c, low4));
            __m256i rh = _mm256_shuffle_epi8(lh, _mm256_and_si256(_mm256_srli_epi16(c, 4), low4));
            a0 = _mm256_add_epi16(a0, _mm256_cvtepu8_epi16(_mm256_castsi256_si128(rl)));
            a0 = _mm256_add_epi16(a0, _mm256_cvtepu8_epi16(_mm256_extracti128_si256(rl, 1)));
            a1 = _mm256_add_epi16(a1, _mm256_cvtepu8_epi16(_mm256_castsi256_si128(rh)));
            a1 = _mm256_add_epi16(a1, _mm256_cvtepu8_epi16(_mm256_extracti128_si256(rh, 1)));
        }
        t[0] = _mm256_add_epi32(t[0], _mm256_cvtepu16_epi32(_mm256_castsi256_si128(a0)));
        t[1] = _mm256_add_epi32(t[1], _mm256_cvtepu16_epi32(_mm256_extracti128_si256(a0, 1)));
        t[2] = _mm256_add_epi32(t[2], _mm256_cvtepu16_epi32(_mm256_castsi256_si128(a1)));
        t[3] = _mm256_add_epi32(t[3], _mm256_cvtepu16_epi32(_mm256_extracti128_si256(a1, 1)));
        g0 = g1;
    }
    for (int i = 0; i < 4; i++)
        _mm256_storeu_si256((__m256i *)(void *)(out + 8 * i), t[i]);
}
