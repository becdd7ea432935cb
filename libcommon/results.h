/*
 * results.h - reading a results stream (header, result frames, end) into
 * memory, for recall measurement and tests. Results are stored by qid.
 */
#ifndef HF_RESULTS_H
#define HF_RESULTS_H

#include <stddef.h>
#include <stdint.h>

#include "channel.h"

typedef struct results {
    size_t nq, k; /* queries (max qid + 1), slots per query */
    char metric[16];
    uint64_t *ids;   /* nq * k, UINT64_MAX where absent (u32 node numbers or u64 external ids) */
    int ids_u64;     /* the header said ids: "u64" */
    float *dists;    /* nq * k, +inf where absent */
    uint32_t *found; /* per query */
    uint8_t *seen;   /* per query: answered */
} results;

/* Read a whole results stream from endpoint. */
int results_read(const char *endpoint, results *r, hf_err *e);
void results_free(results *r);

#endif
