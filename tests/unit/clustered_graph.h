/*
 * clustered_graph.h - a test fixture shared by the learned parts' unit
 * tests: an HNSW graph (l2 unless clustered_graph_metric says; M 8, ef_construction 60) over n vectors in 8
 * clusters, coordinate c of cluster i % 8 lifted by sep where c % 8 == i % 8,
 * plus unit Gaussian noise (seeded). *vecs gets the vectors (caller frees)
 * when given, else they are freed. Include after cmocka.h and a header
 * that brings hnsw.h and nn.h.
 */
#ifndef HF_TEST_CLUSTERED_GRAPH_H
#define HF_TEST_CLUSTERED_GRAPH_H

/* The same graph under another metric (cosine: the stored vectors are
 * normalised). */
static hnsw *clustered_graph_metric(size_t n, size_t dim, uint64_t seed, float sep, float **vecs,
                                    metric_t metric)
{
    hnsw_params p = {.M = 8, .ef_construction = 60, .seed = seed, .metric = metric};
    hnsw_params_defaults(&p);
    hnsw *h = NULL;
    hf_err e;
    assert_int_equal(hnsw_new(&p, dim, &h, &e), 0);
    nn_rng r;
    nn_rng_seed(&r, seed);
    float *v = malloc(n * dim * sizeof *v);
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < dim; c++)
            v[i * dim + c] = (float)((i % 8) == c % 8) * sep + nn_rng_normal(&r);
    assert_int_equal(hnsw_append(h, v, n, NULL, &e), 0);
    assert_int_equal(hnsw_build(h, 0, 1, NULL, NULL, &e), 0);
    if (vecs)
        *vecs = v;
    else
        free(v);
    return h;
}

static hnsw *clustered_graph(size_t n, size_t dim, uint64_t seed, float sep, float **vecs)
{
    return clustered_graph_metric(n, dim, seed, sep, vecs, METRIC_L2);
}

#endif
