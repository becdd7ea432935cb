/*
 * install_example.c - a small C program embedding an index, compiled by
 * tests/install.bats against an installed tree with
 * `cc install_example.c $(pkg-config --cflags --libs hnswflow)`.
 * usage: install_example INDEX
 * Loads INDEX, searches for each of its first 10 stored vectors (as a
 * query in input dimension order) and prints "node I -> nearest J dist D";
 * each node should find itself at distance 0.
 */
#include <stdio.h>
#include <stdlib.h>

#include <channel.h>
#include <hnsw.h>
#include <hnsw_io.h>

int main(int argc, char **argv)
{
    hf_err e = {0};
    channel *c = NULL;
    hnsw *h = NULL;
    hnsw_searcher *s = NULL;
    if (argc != 2) {
        fprintf(stderr, "usage: install_example INDEX\n");
        return 64;
    }
    if (channel_open_in(argv[1], 0, &c, &e) || hnsw_load(c, &h, NULL, NULL, &e) ||
        hnsw_searcher_new(h, 64, &s, &e)) {
        fprintf(stderr, "install_example: %s: %s\n", argv[1], e.msg);
        return 65;
    }
    float *q = malloc(h->dim * sizeof *q);
    for (uint32_t i = 0; i < 10 && i < h->n; i++) {
        hnsw_hit hit;
        size_t got = 0;
        hnsw_unpermute(h, hnsw_vec(h, i), q);
        hnsw_search(h, s, q, 1, 64, &hit, &got, NULL);
        printf("node %u -> nearest %u dist %g\n", i, got ? hit.id : 0u, got ? hit.d : -1.0f);
    }
    free(q);
    hnsw_searcher_destroy(&s);
    hnsw_destroy(&h);
    channel_destroy(&c);
    return 0;
}
