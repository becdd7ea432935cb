/*
 * knn.c - see knn.h.
 */
#include "knn.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hnsw_heap.h"

#define QBLOCK 64
#define BBLOCK 2048

static void finish_query(const knn_base *b, const float *q, hheap *hp, size_t k, uint32_t *ids,
                         float *dists)
{
    /* re-measure candidates exactly, then keep the best k */
    size_t n = hp->n;
    for (size_t i = 0; i < n; i++) {
        const float *row = b->rows + (size_t)hp->a[i].id * b->stride;
        hp->a[i].d = dist_finish(b->metric, metric_kernel(b->metric)(q, row, b->dim));
    }
    for (size_t i = 1; i < n; i++) { /* insertion sort: n is k + margin */
        hnsw_hit x = hp->a[i];
        size_t j = i;
        while (j > 0 &&
               (hp->a[j - 1].d > x.d || (hp->a[j - 1].d == x.d && hp->a[j - 1].id > x.id))) {
            hp->a[j] = hp->a[j - 1];
            j--;
        }
        hp->a[j] = x;
    }
    for (size_t i = 0; i < k; i++) {
        ids[i] = i < n ? hp->a[i].id : UINT32_MAX;
        dists[i] = i < n ? hp->a[i].d : INFINITY;
    }
}

static inline void offer(hheap *hp, size_t cap, float d, uint32_t id)
{
    if (hp->n < cap) {
        hmax_push(hp, d, id);
    } else if (d < hp->a[0].d) {
        hmax_pop(hp);
        hmax_push(hp, d, id);
    }
}

int knn_exact(const knn_base *b, const float *queries, size_t nq, size_t k, uint32_t *ids,
              float *dists, hf_err *e)
{
    size_t cap = k + KNN_MARGIN;
    size_t dim = b->dim;
    float *q = malloc(QBLOCK * dim * sizeof(float));
    float *qn = malloc(QBLOCK * sizeof(float));
    float *bn = malloc(BBLOCK * sizeof(float));
    float *s = malloc((size_t)QBLOCK * BBLOCK * sizeof(float));
    hnsw_hit *heapmem = malloc(QBLOCK * cap * sizeof(hnsw_hit));
    hheap heaps[QBLOCK];
    int rc = 0;
    if (!q || !qn || !bn || !s || !heapmem) {
        rc = hf_err_set(e, HF_ENOMEM, "out of memory for exact search");
        goto out;
    }
    const dist_kernels *kern = dist_best();
    for (size_t q0 = 0; q0 < nq; q0 += QBLOCK) {
        size_t qb = nq - q0 < QBLOCK ? nq - q0 : QBLOCK;
        memcpy(q, queries + q0 * dim, qb * dim * sizeof(float));
        for (size_t i = 0; i < qb; i++) {
            if (b->metric == METRIC_COSINE)
                vec_normalize(q + i * dim, dim);
            qn[i] = kern->dot(q + i * dim, q + i * dim, dim);
            heaps[i].a = heapmem + i * cap;
            heaps[i].n = 0;
            heaps[i].cap = cap;
        }
        for (size_t b0 = 0; b0 < b->n; b0 += BBLOCK) {
            size_t bb = b->n - b0 < BBLOCK ? b->n - b0 : BBLOCK;
            const float *rows = b->rows + b0 * b->stride;
            if (b->metric == METRIC_L1) {
                for (size_t i = 0; i < qb; i++)
                    for (size_t j = 0; j < bb; j++)
                        s[i * BBLOCK + j] = kern->l1(q + i * dim, rows + j * b->stride, dim);
            } else {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)qb, (int)bb, (int)dim,
                            1.0f, q, (int)dim, rows, (int)b->stride, 0.0f, s, BBLOCK);
                if (b->metric == METRIC_L2)
                    for (size_t j = 0; j < bb; j++)
                        bn[j] = kern->dot(rows + j * b->stride, rows + j * b->stride, dim);
            }
            for (size_t i = 0; i < qb; i++) {
                const float *si = s + i * BBLOCK;
                for (size_t j = 0; j < bb; j++) {
                    uint32_t id = (uint32_t)(b0 + j);
                    if (b->skip && b->skip[id])
                        continue;
                    float d;
                    switch (b->metric) {
                    case METRIC_L2: d = qn[i] + bn[j] - 2.0f * si[j]; break;
                    case METRIC_L1: d = si[j]; break;
                    default: d = 1.0f - si[j]; break;
                    }
                    offer(&heaps[i], cap, d, id);
                }
            }
        }
        for (size_t i = 0; i < qb; i++)
            finish_query(b, q + i * dim, &heaps[i], k, ids + (q0 + i) * k, dists + (q0 + i) * k);
    }
out:
    free(q);
    free(qn);
    free(bn);
    free(s);
    free(heapmem);
    return rc;
}

#define LOO_BLOCK 512

int knn_exact_loo(const knn_base *b, const float *queries, size_t nq, size_t k,
                  const uint32_t *self, uint32_t *ids, float *kth, hf_err *e)
{
    size_t kk = k + (self ? 1 : 0);
    uint32_t *bi = malloc(LOO_BLOCK * kk * sizeof *bi);
    float *bd = malloc(LOO_BLOCK * kk * sizeof *bd);
    int rc = !bi || !bd ? hf_err_set(e, HF_ENOMEM, "out of memory for exact neighbours") : 0;
    for (size_t s = 0; rc == 0 && s < nq; s += LOO_BLOCK) {
        size_t m = nq - s < LOO_BLOCK ? nq - s : LOO_BLOCK;
        rc = knn_exact(b, queries + s * b->dim, m, kk, bi, bd, e);
        for (size_t q = 0; rc == 0 && q < m; q++) {
            size_t w = 0;
            float last = INFINITY;
            for (size_t r = 0; r < kk && w < k; r++) {
                if (self && bi[q * kk + r] == self[s + q])
                    continue;
                ids[(s + q) * k + w++] = bi[q * kk + r];
                last = bd[q * kk + r];
            }
            while (w < k)
                ids[(s + q) * k + w++] = UINT32_MAX;
            if (kth)
                kth[s + q] = last;
        }
    }
    free(bi);
    free(bd);
    return rc;
}
