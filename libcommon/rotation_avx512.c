/*
 * rotation_avx512.c - one round of rotation.h's block kind with AVX-512F
 * (target attribute, dispatched at run time by rotation.c). A block of 64
 * is four registers: the Hadamard stages of stride 16 and 32 add and
 * subtract whole registers, those of stride 1 to 8 pair lanes inside a
 * register with one permute and one masked blend each.
 */
#include "rotation.h"

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

/* Stage of stride h inside a register: lane l pairs with lane l ^ h; the
 * lower of the two keeps a + b, the upper takes a - b. */
AVX512 static inline __m512 stage(__m512 r, __m512i idx, __mmask16 upper)
{
    __m512 t = _mm512_permutexvar_ps(idx, r);
    return _mm512_mask_blend_ps(upper, _mm512_add_ps(r, t), _mm512_sub_ps(t, r));
}

AVX512 void rotation_round_avx512(const float *sg, const float *q, size_t B, float *y, float *tmp)
{
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512i idx[4];
    __mmask16 up[4];
    for (int s = 0; s < 4; s++) {
        __m512i h = _mm512_set1_epi32(1 << s);
        idx[s] = _mm512_xor_si512(lane, h);
        up[s] = _mm512_test_epi32_mask(lane, h);
    }
    const __m512 eighth = _mm512_set1_ps(0.125f);
    for (size_t c = 0; c < B; c++) {
        const float *yc = y + 64 * c, *sc = sg + 64 * c;
        __m512 r[4];
        for (int k = 0; k < 4; k++) {
            r[k] = _mm512_mul_ps(_mm512_loadu_ps(yc + 16 * k), _mm512_loadu_ps(sc + 16 * k));
            for (int s = 0; s < 4; s++)
                r[k] = stage(r[k], idx[s], up[s]);
        }
        __m512 a0 = _mm512_add_ps(r[0], r[1]), a1 = _mm512_sub_ps(r[0], r[1]);
        __m512 a2 = _mm512_add_ps(r[2], r[3]), a3 = _mm512_sub_ps(r[2], r[3]);
        float *tc = tmp + 64 * c;
        _mm512_storeu_ps(tc, _mm512_mul_ps(_mm512_add_ps(a0, a2), eighth));
        _mm512_storeu_ps(tc + 16, _mm512_mul_ps(_mm512_add_ps(a1, a3), eighth));
        _mm512_storeu_ps(tc + 32, _mm512_mul_ps(_mm512_sub_ps(a0, a2), eighth));
        _mm512_storeu_ps(tc + 48, _mm512_mul_ps(_mm512_sub_ps(a1, a3), eighth));
    }
    for (size_t b = 0; b < B; b++) {
        __m512 o0 = _mm512_setzero_ps(), o1 = o0, o2 = o0, o3 = o0;
        for (size_t c = 0; c < B; c++) {
            __m512 w = _mm512_set1_ps(q[b * B + c]);
            const float *tc = tmp + 64 * c;
            o0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(tc), o0);
            o1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(tc + 16), o1);
            o2 = _mm512_fmadd_ps(w, _mm512_loadu_ps(tc + 32), o2);
            o3 = _mm512_fmadd_ps(w, _mm512_loadu_ps(tc + 48), o3);
        }
        float *yb = y + 64 * b;
        _mm512_storeu_ps(yb, o0);
        _mm512_storeu_ps(yb + 16, o1);
        _mm512_storeu_ps(yb + 32, o2);
        _mm512_storeu_ps(yb + 48, o3);
    }
}
