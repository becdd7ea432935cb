/*
 * rotation.h - random orthogonal transforms of R^dpad (dpad a multiple of
 * 64) for the speed layout: residuals of rotated vectors look Gaussian
 * coordinate by coordinate, which RaBitQ's 1-bit estimator needs, and
 * distances are unchanged.
 *
 * Two kinds:
 *   dense  a dpad x dpad matrix (Gaussian, orthonormalised): dpad^2
 *          multiply-adds a vector, 692k at 832 dimensions.
 *   block  `rounds` rounds of: flip signs (a fixed random +-1 a coordinate),
 *          a 64-point Walsh-Hadamard transform of every block of 64
 *          coordinates (scaled by 1/8, orthogonal), then a random orthogonal
 *          B x B matrix (B = dpad / 64) mixing the blocks, applied to each
 *          of the 64 in-block positions. Each step is orthogonal, so the
 *          whole is; after one round every output coordinate depends on every
 *          input. About dpad (6 + B) operations a round instead of dpad^2:
 *          17k instead of 692k at 832 dimensions, and the parameters take
 *          kilobytes instead of megabytes. The structured transform of
 *          RaBitQ's and FAISS's fast rotations, extended to any multiple of
 *          64 by the block mixing.
 */
#ifndef HF_ROTATION_H
#define HF_ROTATION_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define ROTATION_BLOCK 64
/* rounds of the block kind graph-build draws: with 2, text-cosine (whose
 * SVD coordinates come sorted by variance) needed 2 % more hops than with
 * a dense rotation at equal recall; 3 and 4 matched it */
#define ROTATION_ROUNDS 3

typedef struct rotation {
    size_t dpad;
    unsigned rounds; /* 0: dense */
    float *dense;    /* dpad * dpad, row-major (rounds == 0) */
    float *signs;    /* rounds * dpad, each +1 or -1 */
    float *mix;      /* rounds * B * B, each B x B orthogonal, row-major */
} rotation;

/* Draw a rotation: dense when rounds is 0, else the block kind. */
int rotation_plan(size_t dpad, unsigned rounds, uint64_t seed, rotation **out, hf_err *e);
/* Copies of loaded parameters, checked: a dense matrix, or signs (+-1) and
 * mixing matrices (orthogonal to 1e-4). */
int rotation_from_dense(size_t dpad, const float *dense, rotation **out, hf_err *e);
int rotation_from_blocks(size_t dpad, unsigned rounds, const float *signs, const float *mix,
                         rotation **out, hf_err *e);
void rotation_destroy(rotation **r);

/* Scratch floats rotation_apply needs (dpad). */
static inline size_t rotation_scratch(const rotation *r)
{
    return r->dpad;
}
/* y = R x for x of dim <= dpad floats (zero-padded); y has dpad floats and
 * must not overlap x; tmp has rotation_scratch(r) floats. */
void rotation_apply(const rotation *r, const float *x, size_t dim, float *y, float *tmp);

/* One round of the block kind in place on y (B blocks), tmp B * 64 floats:
 * the scalar reference and the AVX-512F kernel the tests hold to it; the
 * fastest the CPU has is picked once. */
typedef void (*rotation_round_fn)(const float *signs, const float *mix, size_t B, float *y,
                                  float *tmp);
void rotation_round_scalar(const float *signs, const float *mix, size_t B, float *y, float *tmp);
void rotation_round_avx512(const float *signs, const float *mix, size_t B, float *y, float *tmp);
rotation_round_fn rotation_round_best(void);

#endif
