/*
 * pca.h - the top principal directions of a sample of vectors, by subspace
 * iteration on the covariance (OpenBLAS sgemm). Shared by the layer router
 * (its PCA start) and the navigation policy (its node projections).
 */
#ifndef HF_PCA_H
#define HF_PCA_H

#include <stddef.h>
#include <stdint.h>

/* x: S x d rows (centred in place); mu gets the d means, V the r
 * orthonormal directions as d x r (column a is direction a), *l1 the
 * largest eigenvalue. Returns 0, or -1 when out of memory. */
int pca_top(float *x, size_t S, size_t d, size_t r, uint64_t seed, float *mu, float *V, double *l1);
/* Gram-Schmidt on the r columns of V (d x r, row-major). */
void pca_orthonormalise(float *V, size_t d, size_t r);

#endif
