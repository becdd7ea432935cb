/*
 * quant.c - training, encoding, query preparation and distances for the
 * code kinds in quant.h. SIMD versions of the hot distances live in
 * quant_avx512.c and are picked once per quantizer.
 */
#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

/* ---- half floats (IEEE 754 binary16), portable conversion ---- */

static uint16_t f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, mant = x & 0x7fffff;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    if (((x >> 23) & 0xff) == 0xff)
        return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
    if (exp >= 31)
        return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10)
            return (uint16_t)sign;
        mant |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t h = mant >> shift;
        if ((mant >> (shift - 1)) & 1)
            h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = sign | ((uint32_t)exp << 10) | (mant >> 13);
    if (mant & 0x1000)
        h++; /* round half up; carries into the exponent correctly */
    return (uint16_t)h;
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, x;
    if (exp == 0) {
        if (mant == 0) {
            x = sign;
        } else {
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while (!(mant & 0x400));
            x = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        x = sign | 0x7f800000 | (mant << 13);
    } else {
        x = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* ---- names ---- */

int quant_parse(const char *name, quant_kind *out, hf_err *e)
{
    static const struct {
        const char *n;
        quant_kind k;
    } names[] = {{"none", QUANT_NONE}, {"f16", QUANT_F16}, {"int8", QUANT_INT8},
                 {"pq8", QUANT_PQ8},   {"pq4", QUANT_PQ4}, {"binary", QUANT_BINARY}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i].n) == 0) {
            *out = names[i].k;
            return 0;
        }
    return hf_err_set(e, HF_EUSAGE, "unknown code kind '%s' (none, f16, int8, pq8, pq4, binary)",
                      name);
}

const char *quant_name(quant_kind k)
{
    switch (k) {
    case QUANT_NONE: return "none";
    case QUANT_F16: return "f16";
    case QUANT_INT8: return "int8";
    case QUANT_PQ8: return "pq8";
    case QUANT_PQ4: return "pq4";
    case QUANT_BINARY: return "binary";
    }
    return "?";
}

/* ---- training ---- */

static float sub_dist(metric_t m, const float *a, const float *b, size_t n)
{
    float s = 0;
    switch (m) {
    case METRIC_L1:
        for (size_t i = 0; i < n; i++)
            s += fabsf(a[i] - b[i]);
        return s;
    default:
        for (size_t i = 0; i < n; i++)
            s += (a[i] - b[i]) * (a[i] - b[i]);
        return s;
    }
}

/* Lloyd's k-means on n points of dimension d (contiguous), k centroids out. */
static void kmeans(const float *x, size_t n, size_t d, size_t k, int iters, nn_rng *rng,
                   float *cent, uint32_t *assign)
{
    for (size_t c = 0; c < k; c++)
        memcpy(cent + c * d, x + nn_rng_below(rng, n) * d, d * sizeof(float));
    float *sum = malloc(k * d * sizeof(float));
    size_t *cnt = malloc(k * sizeof(size_t));
    for (int it = 0; it < iters && sum && cnt; it++) {
        for (size_t i = 0; i < n; i++) {
            float best = INFINITY;
            uint32_t bi = 0;
            for (size_t c = 0; c < k; c++) {
                float dd = sub_dist(METRIC_L2, x + i * d, cent + c * d, d);
                if (dd < best) {
                    best = dd;
                    bi = (uint32_t)c;
                }
            }
            assign[i] = bi;
        }
        memset(sum, 0, k * d * sizeof(float));
        memset(cnt, 0, k * sizeof(size_t));
        for (size_t i = 0; i < n; i++) {
            cnt[assign[i]]++;
            for (size_t j = 0; j < d; j++)
                sum[assign[i] * d + j] += x[i * d + j];
        }
        for (size_t c = 0; c < k; c++) {
            if (cnt[c] == 0) /* empty cluster: restart it on a random point */
                memcpy(cent + c * d, x + nn_rng_below(rng, n) * d, d * sizeof(float));
            else
                for (size_t j = 0; j < d; j++)
                    cent[c * d + j] = sum[c * d + j] / (float)cnt[c];
        }
    }
    free(sum);
    free(cnt);
}

static int train_pq(quant *q, const float *rows, size_t stride, size_t n, uint64_t seed, hf_err *e)
{
    size_t sample = n < 8192 ? n : 8192;
    nn_rng rng;
    nn_rng_seed(&rng, seed);
    q->centroids = calloc(q->m * q->ksub * q->dsub, sizeof(float));
    float *sub = malloc(sample * q->dsub * sizeof(float));
    uint32_t *assign = malloc(sample * sizeof(uint32_t));
    size_t *pick = malloc(sample * sizeof(size_t));
    if (!q->centroids || !sub || !assign || !pick) {
        free(sub);
        free(assign);
        free(pick);
        return hf_err_set(e, HF_ENOMEM, "out of memory training PQ");
    }
    for (size_t i = 0; i < sample; i++)
        pick[i] = sample == n ? i : nn_rng_below(&rng, n);
    for (size_t s = 0; s < q->m; s++) {
        for (size_t i = 0; i < sample; i++)
            for (size_t j = 0; j < q->dsub; j++) {
                size_t col = s * q->dsub + j;
                sub[i * q->dsub + j] = col < q->dim ? rows[pick[i] * stride + col] : 0.0f;
            }
        size_t k = q->ksub < sample ? q->ksub : sample;
        kmeans(sub, sample, q->dsub, k, 10, &rng, q->centroids + s * q->ksub * q->dsub, assign);
    }
    free(sub);
    free(assign);
    free(pick);
    return 0;
}

int quant_train(quant_kind kind, metric_t metric, size_t dim, const float *rows, size_t stride,
                size_t n, uint64_t seed, quant **out, hf_err *e)
{
    *out = NULL;
    if (n == 0)
        return hf_err_set(e, HF_EDATA, "cannot train codes on zero vectors");
    quant *q = calloc(1, sizeof *q);
    if (!q)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    q->kind = kind;
    q->metric = metric;
    q->dim = dim;
    q->step = 1.0f; /* only int8 uses the scale; keep it valid for the others */
    int rc = 0;
    switch (kind) {
    case QUANT_F16: q->code_bytes = 2 * dim; break;
    case QUANT_INT8: {
        float lo = INFINITY, hi = -INFINITY;
        int integral = 1;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < dim; j++) {
                float v = rows[i * stride + j];
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
                integral &= v == rintf(v);
            }
        q->lo = lo;
        q->step = hi > lo ? (hi - lo) / 255.0f : 1.0f;
        /* integer data spanning at most 256 values (pixels, SIFT) is coded
         * exactly with unit steps; stretching it over 0..255 would put the
         * grid between its values and blur every distance */
        if (integral && hi - lo <= 255.0f)
            q->step = 1.0f;
        q->code_bytes = dim;
        break;
    }
    case QUANT_PQ8:
    case QUANT_PQ4:
        q->ksub = kind == QUANT_PQ8 ? 256 : 16;
        q->dsub = 2; /* finer sub-spaces rank neighbours far better than 4-dim ones */
        q->m = (dim + q->dsub - 1) / q->dsub;
        if (kind == QUANT_PQ4 && q->m % 2)
            q->m++;
        q->code_bytes = kind == QUANT_PQ8 ? q->m : q->m / 2;
        rc = train_pq(q, rows, stride, n, seed, e);
        break;
    case QUANT_BINARY:
        q->mean = calloc(dim, sizeof(float));
        if (!q->mean) {
            rc = hf_err_set(e, HF_ENOMEM, "out of memory");
            break;
        }
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < dim; j++)
                q->mean[j] += rows[i * stride + j];
        for (size_t j = 0; j < dim; j++)
            q->mean[j] /= (float)n;
        q->code_bytes = (dim + 7) / 8;
        break;
    default: rc = hf_err_set(e, HF_EUSAGE, "no quantizer for kind %d", (int)kind);
    }
    if (rc) {
        quant_destroy(&q);
        return rc;
    }
    *out = q;
    return 0;
}

void quant_destroy(quant **qp)
{
    if (!qp || !*qp)
        return;
    free((*qp)->centroids);
    free((*qp)->mean);
    free(*qp);
    *qp = NULL;
}

static uint32_t pq_nearest(const quant *q, size_t s, const float *x)
{
    float buf[16] = {0};
    for (size_t j = 0; j < q->dsub; j++) {
        size_t col = s * q->dsub + j;
        buf[j] = col < q->dim ? x[col] : 0.0f;
    }
    const float *c = q->centroids + s * q->ksub * q->dsub;
    float best = INFINITY;
    uint32_t bi = 0;
    for (size_t k = 0; k < q->ksub; k++) {
        float d = sub_dist(METRIC_L2, buf, c + k * q->dsub, q->dsub);
        if (d < best) {
            best = d;
            bi = (uint32_t)k;
        }
    }
    return bi;
}

void quant_encode(const quant *q, const float *v, uint8_t *code)
{
    switch (q->kind) {
    case QUANT_F16:
        for (size_t j = 0; j < q->dim; j++) {
            uint16_t h = f32_to_f16(v[j]);
            memcpy(code + 2 * j, &h, 2);
        }
        break;
    case QUANT_INT8:
        for (size_t j = 0; j < q->dim; j++) {
            float c = roundf((v[j] - q->lo) / q->step);
            code[j] = (uint8_t)(c < 0 ? 0 : c > 255 ? 255 : c);
        }
        break;
    case QUANT_PQ8:
        for (size_t s = 0; s < q->m; s++)
            code[s] = (uint8_t)pq_nearest(q, s, v);
        break;
    case QUANT_PQ4:
        memset(code, 0, q->code_bytes);
        for (size_t s = 0; s < q->m; s++)
            code[s / 2] |= (uint8_t)(pq_nearest(q, s, v) << (4 * (s % 2)));
        break;
    case QUANT_BINARY:
        memset(code, 0, q->code_bytes);
        for (size_t j = 0; j < q->dim; j++)
            if (v[j] > q->mean[j])
                code[j / 8] |= (uint8_t)(1u << (j % 8));
        break;
    default: break;
    }
}

/* ---- queries ---- */

static void choose_dist(quant_query *qq);

int quant_query_new(const quant *q, quant_query **out, hf_err *e)
{
    *out = NULL;
    quant_query *qq = calloc(1, sizeof *qq);
    if (!qq)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    qq->q = q;
    choose_dist(qq);
    qq->qf = aligned_alloc(64, ((q->dim * sizeof(float) + 63) / 64) * 64);
    qq->qcode = calloc(q->code_bytes + 64, 1);
    if (q->ksub)
        qq->table = malloc(q->m * q->ksub * sizeof(float));
    if (!qq->qf || !qq->qcode || (q->ksub && !qq->table)) {
        quant_query_destroy(&qq);
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    }
    *out = qq;
    return 0;
}

void quant_query_destroy(quant_query **p)
{
    if (!p || !*p)
        return;
    free((*p)->qf);
    free((*p)->qcode);
    free((*p)->table);
    free(*p);
    *p = NULL;
}

void quant_query_set(quant_query *qq, const float *v)
{
    const quant *q = qq->q;
    switch (q->kind) {
    case QUANT_INT8:
        /* L2/L1 compare in code units: q' = (q - lo) / step */
        if (q->metric == METRIC_L2 || q->metric == METRIC_L1) {
            /* the integer kernel compares codes with codes: round the query
             * too (exact for 8-bit data; re-ranking mends the rest); clamp
             * then add 0.5 and truncate, which the compiler vectorises */
            float inv = 1.0f / q->step, lo = q->lo;
            int exact = 1;
            for (size_t j = 0; j < q->dim; j++) {
                float x = (v[j] - lo) * inv;
                qq->qf[j] = x;
                float c = x < 0.0f ? 0.0f : x > 255.0f ? 255.0f : x;
                qq->qcode[j] = (uint8_t)(int)(c + 0.5f);
                exact &= x == (float)qq->qcode[j];
            }
            qq->exact = exact;
        } else {
            memcpy(qq->qf, v, q->dim * sizeof(float));
            float sq = 0;
            for (size_t j = 0; j < q->dim; j++)
                sq += v[j];
            qq->bias = q->lo * sq;
        }
        break;
    case QUANT_PQ8:
    case QUANT_PQ4:
        for (size_t s = 0; s < q->m; s++) {
            float buf[16] = {0};
            for (size_t j = 0; j < q->dsub; j++) {
                size_t col = s * q->dsub + j;
                buf[j] = col < q->dim ? v[col] : 0.0f;
            }
            const float *c = q->centroids + s * q->ksub * q->dsub;
            for (size_t k = 0; k < q->ksub; k++) {
                float d;
                if (q->metric == METRIC_IP || q->metric == METRIC_COSINE) {
                    d = 0;
                    for (size_t j = 0; j < q->dsub; j++)
                        d -= buf[j] * c[k * q->dsub + j];
                } else {
                    d = sub_dist(q->metric, buf, c + k * q->dsub, q->dsub);
                }
                qq->table[s * q->ksub + k] = d;
            }
        }
        break;
    case QUANT_BINARY: quant_encode(q, v, qq->qcode); break;
    default: memcpy(qq->qf, v, q->dim * sizeof(float)); break;
    }
}

float quant_int8_l2(const float *qf, const uint8_t *c, size_t n);
float quant_int8_dot(const float *qf, const uint8_t *c, size_t n);
float quant_f16_l2(const float *qf, const uint8_t *c, size_t n);
float quant_f16_dot(const float *qf, const uint8_t *c, size_t n);
typedef float (*qkern)(const float *, const uint8_t *, size_t);
qkern quant_kernel(const char *name);
uint32_t (*quant_kernel_u8(void))(const uint8_t *, const uint8_t *, size_t);

static float d_int8_l2_u8(const quant_query *qq, const uint8_t *code)
{
    return qq->q->step * qq->q->step * (float)qq->kern_u8(qq->qcode, code, qq->q->dim);
}

uint32_t (*quant_kernel_u8_bounded(void))(const uint8_t *, const uint8_t *, size_t, uint32_t);

static float d_int8_l2_u8_bounded(const quant_query *qq, const uint8_t *code, float bound)
{
    float s2 = qq->q->step * qq->q->step;
    float b = bound / s2;
    /* a partial sum above the floor of b is above b itself */
    uint32_t ub = b >= 4.0e9f ? UINT32_MAX : (uint32_t)b;
    return s2 * (float)qq->kern_u8_bounded(qq->qcode, code, qq->q->dim, ub);
}

static float d_int8_l2(const quant_query *qq, const uint8_t *code)
{
    return qq->q->step * qq->q->step * qq->kern(qq->qf, code, qq->q->dim);
}

static float d_int8_l1(const quant_query *qq, const uint8_t *code)
{
    float s = 0;
    for (size_t j = 0; j < qq->q->dim; j++)
        s += fabsf(qq->qf[j] - (float)code[j]);
    return qq->q->step * s;
}

static float d_int8_ip(const quant_query *qq, const uint8_t *code)
{
    return 1.0f - (qq->bias + qq->q->step * qq->kern(qq->qf, code, qq->q->dim));
}

static float d_f16_l2(const quant_query *qq, const uint8_t *code)
{
    return qq->kern(qq->qf, code, qq->q->dim);
}

static float d_f16_l1(const quant_query *qq, const uint8_t *code)
{
    float s = 0;
    for (size_t j = 0; j < qq->q->dim; j++) {
        uint16_t h;
        memcpy(&h, code + 2 * j, 2);
        s += fabsf(qq->qf[j] - f16_to_f32(h));
    }
    return s;
}

static float d_f16_ip(const quant_query *qq, const uint8_t *code)
{
    return 1.0f - qq->kern(qq->qf, code, qq->q->dim);
}

static float d_pq8(const quant_query *qq, const uint8_t *code)
{
    float s = qq->bias;
    const float *t = qq->table;
    for (size_t i = 0; i < qq->q->m; i++, t += 256)
        s += t[code[i]];
    return s;
}

static float d_pq4(const quant_query *qq, const uint8_t *code)
{
    float s = qq->bias;
    const float *t = qq->table;
    for (size_t i = 0; i < qq->q->code_bytes; i++, t += 32)
        s += t[code[i] & 15] + t[16 + (code[i] >> 4)];
    return s;
}

static float d_binary(const quant_query *qq, const uint8_t *code)
{
    uint32_t d = 0;
    size_t i = 0, n = qq->q->code_bytes;
    for (; i + 8 <= n; i += 8) {
        uint64_t a, b;
        memcpy(&a, qq->qcode + i, 8);
        memcpy(&b, code + i, 8);
        d += (uint32_t)__builtin_popcountll(a ^ b);
    }
    for (; i < n; i++)
        d += (uint32_t)__builtin_popcount((unsigned)(qq->qcode[i] ^ code[i]));
    return (float)d;
}

static void choose_dist(quant_query *qq)
{
    const quant *q = qq->q;
    int ip = q->metric == METRIC_IP || q->metric == METRIC_COSINE;
    switch (q->kind) {
    case QUANT_INT8:
        qq->kern = quant_kernel(ip ? "int8_dot" : "int8_l2");
        qq->dist = q->metric == METRIC_L2   ? d_int8_l2
                   : q->metric == METRIC_L1 ? d_int8_l1
                                            : d_int8_ip;
        qq->kern_u8 = quant_kernel_u8();
        qq->kern_u8_bounded = quant_kernel_u8_bounded();
        if (q->metric == METRIC_L2 && qq->kern_u8) {
            qq->dist = d_int8_l2_u8;
            if (qq->kern_u8_bounded)
                qq->dist_bounded = d_int8_l2_u8_bounded;
        }
        break;
    case QUANT_F16:
        qq->kern = quant_kernel(ip ? "f16_dot" : "f16_l2");
        qq->dist = q->metric == METRIC_L2 ? d_f16_l2 : q->metric == METRIC_L1 ? d_f16_l1 : d_f16_ip;
        break;
    case QUANT_PQ8: qq->dist = d_pq8; break;
    case QUANT_PQ4: qq->dist = d_pq4; break;
    default: qq->dist = d_binary; break;
    }
    qq->bias = (ip && (q->kind == QUANT_PQ8 || q->kind == QUANT_PQ4)) ? 1.0f : 0.0f;
}

/* ---- scalar fallbacks (the SIMD file overrides through dispatch) ---- */

float quant_int8_l2_scalar(const float *qf, const uint8_t *c, size_t n)
{
    float s = 0;
    for (size_t j = 0; j < n; j++) {
        float d = qf[j] - (float)c[j];
        s += d * d;
    }
    return s;
}

float quant_int8_dot_scalar(const float *qf, const uint8_t *c, size_t n)
{
    float s = 0;
    for (size_t j = 0; j < n; j++)
        s += qf[j] * (float)c[j];
    return s;
}

float quant_f16_l2_scalar(const float *qf, const uint8_t *c, size_t n)
{
    float s = 0;
    for (size_t j = 0; j < n; j++) {
        uint16_t h;
        memcpy(&h, c + 2 * j, 2);
        float d = qf[j] - f16_to_f32(h);
        s += d * d;
    }
    return s;
}

float quant_f16_dot_scalar(const float *qf, const uint8_t *c, size_t n)
{
    float s = 0;
    for (size_t j = 0; j < n; j++) {
        uint16_t h;
        memcpy(&h, c + 2 * j, 2);
        s += qf[j] * f16_to_f32(h);
    }
    return s;
}

/* ---- frames ---- */

void quant_pack(const quant *q, frame_out *fo)
{
    frame_begin(fo, "codebook", 11);
    frame_put_str(fo, "kind", quant_name(q->kind));
    frame_put_str(fo, "metric", metric_name(q->metric));
    frame_put_u64(fo, "dim", q->dim);
    frame_put_u64(fo, "code_bytes", q->code_bytes);
    frame_put_f64(fo, "lo", q->lo);
    frame_put_f64(fo, "step", q->step);
    frame_put_u64(fo, "m", q->m);
    frame_put_u64(fo, "dsub", q->dsub);
    frame_put_u64(fo, "ksub", q->ksub);
    frame_put_bin(fo, "centroids", q->centroids,
                  q->centroids ? q->m * q->ksub * q->dsub * sizeof(float) : 0);
    frame_put_bin(fo, "mean", q->mean, q->mean ? q->dim * sizeof(float) : 0);
}

int quant_unpack(const frame_in *f, quant **out, hf_err *e)
{
    *out = NULL;
    char kind[16], metric[16];
    uint64_t dim, cb, m, dsub, ksub;
    double lo, step;
    const void *cent, *mean;
    size_t clen, mlen;
    if (frame_get_str(f, "kind", kind, sizeof kind, e) ||
        frame_get_str(f, "metric", metric, sizeof metric, e) || frame_get_u64(f, "dim", &dim, e) ||
        frame_get_u64(f, "code_bytes", &cb, e) || frame_get_f64(f, "lo", &lo, e) ||
        frame_get_f64(f, "step", &step, e) || frame_get_u64(f, "m", &m, e) ||
        frame_get_u64(f, "dsub", &dsub, e) || frame_get_u64(f, "ksub", &ksub, e) ||
        frame_get_bin(f, "centroids", &cent, &clen, e) || frame_get_bin(f, "mean", &mean, &mlen, e))
        return hf_err_set(e, HF_EDATA, "codebook frame: %s", e ? e->msg : "malformed");
    quant *q = calloc(1, sizeof *q);
    if (!q)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    int rc = 0;
    if (quant_parse(kind, &q->kind, e) || q->kind == QUANT_NONE ||
        metric_parse(metric, &q->metric, e))
        rc = hf_err_set(e, HF_EDATA, "codebook frame: bad kind or metric");
    q->dim = dim;
    q->code_bytes = cb;
    q->lo = (float)lo;
    q->step = (float)step;
    q->m = m;
    q->dsub = dsub;
    q->ksub = ksub;
    if (!rc &&
        (dim == 0 || dim > (1u << 20) || !isfinite(q->lo) || !isfinite(q->step) || q->step <= 0))
        rc = hf_err_set(e, HF_EDATA, "codebook frame: bad dimension or scale");
    size_t want_cb = 0;
    if (!rc) {
        switch (q->kind) {
        case QUANT_F16: want_cb = 2 * dim; break;
        case QUANT_INT8: want_cb = dim; break;
        case QUANT_BINARY: want_cb = (dim + 7) / 8; break;
        case QUANT_PQ8:
        case QUANT_PQ4:
            if (ksub != (q->kind == QUANT_PQ8 ? 256u : 16u) || dsub == 0 || dsub > 16 ||
                m != (dim + dsub - 1) / dsub +
                         (q->kind == QUANT_PQ4 && ((dim + dsub - 1) / dsub) % 2) ||
                clen != m * ksub * dsub * sizeof(float))
                rc = hf_err_set(e, HF_EDATA, "codebook frame: PQ sizes inconsistent");
            want_cb = q->kind == QUANT_PQ8 ? m : m / 2;
            break;
        default: break;
        }
    }
    if (!rc && cb != want_cb)
        rc = hf_err_set(e, HF_EDATA, "codebook frame: code_bytes %llu, expected %zu",
                        (unsigned long long)cb, want_cb);
    if (!rc && q->kind == QUANT_BINARY && mlen != dim * sizeof(float))
        rc = hf_err_set(e, HF_EDATA, "codebook frame: mean has wrong size");
    if (!rc && clen) {
        q->centroids = malloc(clen);
        if (q->centroids)
            memcpy(q->centroids, cent, clen);
        else
            rc = hf_err_set(e, HF_ENOMEM, "out of memory");
    }
    if (!rc && q->kind == QUANT_BINARY) {
        q->mean = malloc(mlen);
        if (q->mean)
            memcpy(q->mean, mean, mlen);
        else
            rc = hf_err_set(e, HF_ENOMEM, "out of memory");
    }
    if (rc) {
        quant_destroy(&q);
        return rc;
    }
    *out = q;
    return 0;
}
