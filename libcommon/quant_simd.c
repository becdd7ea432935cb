/*
 * quant_simd.c - AVX-512 kernels for int8 and f16 codes against a float
 * query, and their run-time dispatch (scalar versions are in quant.c).
 * int8: 16 bytes widen to 16 floats per step; f16: vcvtph2ps.
 */
#include <immintrin.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

float quant_int8_l2_scalar(const float *qf, const uint8_t *c, size_t n);
float quant_int8_dot_scalar(const float *qf, const uint8_t *c, size_t n);
float quant_f16_l2_scalar(const float *qf, const uint8_t *c, size_t n);
float quant_f16_dot_scalar(const float *qf, const uint8_t *c, size_t n);

#define AVX512 __attribute__((target("avx512f")))

AVX512 static float int8_l2_avx512(const float *qf, const uint8_t *c, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 a0 =
            _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(c + i))));
        __m512 a1 = _mm512_cvtepi32_ps(
            _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(c + i + 16))));
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(qf + i), a0);
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(qf + i + 16), a1);
        s0 = _mm512_fmadd_ps(d0, d0, s0);
        s1 = _mm512_fmadd_ps(d1, d1, s1);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) {
        float d = qf[i] - (float)c[i];
        s += d * d;
    }
    return s;
}

AVX512 static float int8_dot_avx512(const float *qf, const uint8_t *c, size_t n)
{
    __m512 s0 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 a =
            _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(c + i))));
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(qf + i), a, s0);
    }
    float s = _mm512_reduce_add_ps(s0);
    for (; i < n; i++)
        s += qf[i] * (float)c[i];
    return s;
}

AVX512 static float f16_l2_avx512(const float *qf, const uint8_t *c, size_t n)
{
    __m512 s0 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 a = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(c + 2 * i)));
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(qf + i), a);
        s0 = _mm512_fmadd_ps(d, d, s0);
    }
    float s = _mm512_reduce_add_ps(s0);
    if (i < n)
        s += quant_f16_l2_scalar(qf + i, c + 2 * i, n - i);
    return s;
}

AVX512 static float f16_dot_avx512(const float *qf, const uint8_t *c, size_t n)
{
    __m512 s0 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 a = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(c + 2 * i)));
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(qf + i), a, s0);
    }
    float s = _mm512_reduce_add_ps(s0);
    if (i < n)
        s += quant_f16_dot_scalar(qf + i, c + 2 * i, n - i);
    return s;
}

#define AVX512BW __attribute__((target("avx512f,avx512bw")))

/* Squared L2 of up to 64 dimensions from i on, added to acc in integers:
 * |a - b| as max - min per byte, widened to 16 bits and squared-and-summed
 * by vpmaddwd. Lanes cannot overflow: each adds at most 4 * 255^2 per call. */
AVX512BW static inline __m512i l2_u8_step(__m512i acc, const uint8_t *a, const uint8_t *b, size_t i,
                                          size_t n)
{
    __mmask64 m = n - i >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (n - i)) - 1);
    __m512i x = _mm512_maskz_loadu_epi8(m, a + i), y = _mm512_maskz_loadu_epi8(m, b + i);
    __m512i d = _mm512_sub_epi8(_mm512_max_epu8(x, y), _mm512_min_epu8(x, y));
    __m512i lo = _mm512_cvtepu8_epi16(_mm512_castsi512_si256(d));
    __m512i hi = _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(d, 1));
    acc = _mm512_add_epi32(acc, _mm512_madd_epi16(lo, lo));
    return _mm512_add_epi32(acc, _mm512_madd_epi16(hi, hi));
}

/* Squared L2 between two u8 vectors, 64 dimensions an iteration against 16
 * for the float kernel. */
AVX512BW static uint32_t int8_l2_u8_avx512bw(const uint8_t *a, const uint8_t *b, size_t n)
{
    __m512i acc = _mm512_setzero_si512();
    for (size_t i = 0; i < n; i += 64)
        acc = l2_u8_step(acc, a, b, i, n);
    return (uint32_t)_mm512_reduce_add_epi32(acc);
}

/* As above, stopping once the partial sum exceeds bound (checked every 128
 * dimensions): a candidate already farther than the worst kept result needs
 * no more bytes read. Codes follow the stored dimension order (decreasing
 * variance), so the first stretch carries most of the distance. */
AVX512BW static uint32_t int8_l2_u8_bounded_avx512bw(const uint8_t *a, const uint8_t *b, size_t n,
                                                     uint32_t bound)
{
    __m512i acc = _mm512_setzero_si512();
    size_t i = 0;
    while (i < n) {
        for (size_t end = i + 128; i < end && i < n; i += 64)
            acc = l2_u8_step(acc, a, b, i, n);
        if (i < n) {
            uint32_t part = (uint32_t)_mm512_reduce_add_epi32(acc);
            if (part > bound)
                return part;
        }
    }
    return (uint32_t)_mm512_reduce_add_epi32(acc);
}

typedef float (*qfn)(const float *, const uint8_t *, size_t);
qfn quant_kernel(const char *name);
static qfn k_int8_l2 = quant_int8_l2_scalar, k_int8_dot = quant_int8_dot_scalar,
           k_f16_l2 = quant_f16_l2_scalar, k_f16_dot = quant_f16_dot_scalar;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void choose(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        k_int8_l2 = int8_l2_avx512;
        k_int8_dot = int8_dot_avx512;
        k_f16_l2 = f16_l2_avx512;
        k_f16_dot = f16_dot_avx512;
    }
}

#include <string.h>

typedef uint32_t (*qfn_u8)(const uint8_t *, const uint8_t *, size_t);

/* The integer int8 L2 kernel, or NULL when the CPU lacks AVX-512BW. */
qfn_u8 quant_kernel_u8(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bw") ? int8_l2_u8_avx512bw : NULL;
}

typedef uint32_t (*qfn_u8_bounded)(const uint8_t *, const uint8_t *, size_t, uint32_t);

/* The bounded integer int8 L2 kernel, or NULL when the CPU lacks AVX-512BW. */
qfn_u8_bounded quant_kernel_u8_bounded(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bw") ? int8_l2_u8_bounded_avx512bw : NULL;
}

/* Kernel by name, resolved once per query object, not per distance. */
qfn quant_kernel(const char *name)
{
    pthread_once(&once, choose);
    if (strcmp(name, "int8_l2") == 0)
        return k_int8_l2;
    if (strcmp(name, "int8_dot") == 0)
        return k_int8_dot;
    if (strcmp(name, "f16_l2") == 0)
        return k_f16_l2;
    return k_f16_dot;
}
