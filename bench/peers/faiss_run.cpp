/*
 * faiss_run.cpp - the FAISS peer for bench/run.sh.
 *
 * Builds faiss::IndexHNSWFlat (METRIC_L2: squared L2, as hnswflow reports;
 * for --metric cosine on normalised vectors, where |a - b|^2 / 2 = 1 - <a,b>
 * is the cosine distance reported)
 * with omp_set_num_threads(T), then sets one OpenMP thread and, for every ef
 * (efSearch), runs the queries one at a time with index.search(1, ...), only
 * the query loop timed with CLOCK_MONOTONIC, REPEAT passes per ef interleaved
 * across the efs (median kept); one untimed warm-up pass runs first. Each
 * single-query search() call pays FAISS's per-call costs (an OpenMP region, a
 * VisitedTable of ntotal bytes), which is what a caller issuing one query at a
 * time gets.
 *
 * Distance counting: the index's flat storage is replaced (before any vector
 * is added) by CountingFlatL2, an IndexFlatL2 whose distance computer can be
 * wrapped in one that counts every evaluation. Counting is switched on only
 * for a separate pass after the timed one, so the timed pass runs FAISS's own
 * computer with no extra indirection. The wrapper counts upper-level greedy
 * steps too. (faiss::hnsw_stats is not filled by IndexHNSW::search in the
 * Debian 1.7.3 build, so it cannot serve here.)
 *
 * Output: DIR/faiss.ef<EF>.frames per ef (see peer_common.h) and one line per
 * ef on stdout:
 *   engine=faiss ef=64 qps=... mean_dist=... build_s=... mem_bytes=...
 * mem_bytes is the RSS growth across construction (/proc/self/statm).
 */
#include <memory>

#include <omp.h>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/impl/DistanceComputer.h>

#include "peer_common.h"

namespace {

struct CountingDC : faiss::DistanceComputer {
    std::unique_ptr<faiss::DistanceComputer> inner;
    size_t *counter;
    CountingDC(faiss::DistanceComputer *d, size_t *c) : inner(d), counter(c) {}
    void set_query(const float *x) override { inner->set_query(x); }
    float operator()(faiss::Index::idx_t i) override
    {
        ++*counter;
        return (*inner)(i);
    }
    float symmetric_dis(faiss::Index::idx_t i, faiss::Index::idx_t j) override
    {
        ++*counter;
        return inner->symmetric_dis(i, j);
    }
};

struct CountingFlatL2 : faiss::IndexFlatL2 {
    mutable bool counting = false;
    mutable size_t ndist = 0;
    explicit CountingFlatL2(faiss::Index::idx_t d) : faiss::IndexFlatL2(d) {}
    faiss::DistanceComputer *get_distance_computer() const override
    {
        faiss::DistanceComputer *dc = faiss::IndexFlatL2::get_distance_computer();
        return counting ? new CountingDC(dc, &ndist) : dc;
    }
};

void run_queries(const faiss::IndexHNSWFlat &idx, const peer_matrix &q, int k, std::vector<uint32_t> &ids,
                 std::vector<float> &dists)
{
    std::vector<faiss::Index::idx_t> lab((size_t)k);
    for (size_t i = 0; i < q.n; i++) {
        idx.search(1, q.row(i), k, &dists[i * k], lab.data());
        for (int j = 0; j < k; j++) {
            /* FAISS pads missing hits with label -1 and distance +inf */
            ids[i * k + j] = lab[j] < 0 ? 0xFFFFFFFFu : (uint32_t)lab[j];
        }
    }
}

} // namespace

int main(int argc, char **argv)
{
    const char *prog = "faiss_run";
    peer_opts o = peer_parse_args(argc, argv);
    peer_matrix base = peer_read_fvecs(prog, o.base);
    peer_matrix q = peer_read_fvecs(prog, o.queries);
    peer_check_dims(prog, base, q);
    int cosine = o.metric == "cosine";
    if (cosine) {
        peer_normalize(base);
        peer_normalize(q);
    }

    long long rss0 = peer_rss_bytes();
    double t0 = peer_now();
    omp_set_num_threads(o.threads);
    faiss::IndexHNSWFlat idx((int)base.dim, o.M, faiss::METRIC_L2);
    delete idx.storage; /* empty IndexFlatL2; swap in the counting one */
    CountingFlatL2 *storage = new CountingFlatL2((faiss::Index::idx_t)base.dim);
    idx.storage = storage;
    idx.hnsw.efConstruction = o.ef_construction;
    try {
        idx.add((faiss::Index::idx_t)base.n, base.data.data());
    } catch (const std::exception &ex) {
        peer_die(prog, "faiss add: %s", ex.what(), 70);
    }
    double build_s = peer_now() - t0;
    long long mem = peer_rss_bytes() - rss0;

    omp_set_num_threads(1);
    /* answers per ef from the timed passes, checked against the counting pass */
    size_t ne = o.efs.size();
    std::vector<std::vector<uint32_t>> ids(ne, std::vector<uint32_t>(q.n * o.k));
    std::vector<std::vector<float>> dists(ne, std::vector<float>(q.n * o.k));
    std::vector<uint32_t> cids(q.n * o.k);
    std::vector<float> cdists(q.n * o.k);
    idx.hnsw.efSearch = o.efs[0];
    run_queries(idx, q, o.k, ids[0], dists[0]); /* page the index in once */
    std::vector<double> qs = peer_interleaved_medians(
        ne, o.repeat, [&](size_t i) { idx.hnsw.efSearch = o.efs[i]; },
        [&](size_t i) { run_queries(idx, q, o.k, ids[i], dists[i]); });

    for (size_t i = 0; i < ne; i++) {
        int ef = o.efs[i];
        idx.hnsw.efSearch = ef;
        storage->ndist = 0;
        storage->counting = true;
        run_queries(idx, q, o.k, cids, cdists);
        storage->counting = false;
        if (cids != ids[i])
            fprintf(stderr, "%s: warning: ef=%d: counting pass returned different ids\n", prog, ef);

        std::string path = o.out_prefix + ".ef" + std::to_string(ef) + ".frames";
        if (cosine)
            for (float &d : dists[i])
                d *= 0.5f;
        peer_write_results(prog, path, q.n, o.k, ids[i], dists[i], o.metric.c_str());
        printf("engine=faiss ef=%d qps=%.1f mean_dist=%.1f build_s=%.3f mem_bytes=%lld\n", ef, (double)q.n / qs[i],
               (double)storage->ndist / (double)q.n, build_s, mem);
        fflush(stdout);
    }
    return 0;
}
