/*
 * hnswlib_run.cpp - the hnswlib peer for bench/run.sh.
 *
 * Builds hnswlib::HierarchicalNSW<float> over L2Space (squared L2, the same
 * distance hnswflow reports), or for --metric cosine over InnerProductSpace
 * on normalised vectors (1 - <a,b>, as hnswlib's Python binding does) with T threads, inserting points through a
 * ParallelFor over addPoint the way hnswlib's Python binding (add_items)
 * does. Then, single-threaded, after one untimed warm-up pass over the
 * queries: REPEAT timed passes per ef, interleaved across the efs, the median
 * kept (queries one at a time, only the loop timed with CLOCK_MONOTONIC);
 * then per ef one counting pass in which the index's distance
 * function is swapped for a counting wrapper. The counting pass gives the
 * exact number of distance evaluations; hnswlib's own
 * metric_distance_computations counter adds the full neighbour-list size at
 * every expansion (visited neighbours included), so it is an upper bound and
 * is printed next to it as hnswlib_metric for reference.
 *
 * Output: DIR/hnswlib.ef<EF>.frames per ef (see peer_common.h) and one line
 * per ef on stdout:
 *   engine=hnswlib ef=64 qps=... mean_dist=... build_s=... mem_bytes=... hnswlib_metric=... hops=...
 * mem_bytes is the RSS growth across construction (/proc/self/statm); hops
 * is hnswlib's metric_hops per query from the counting pass (nodes whose
 * link list was read, on every level), for the bench's bandwidth estimate.
 */
#include <atomic>
#include <thread>

#include <hnswlib/hnswlib.h>

#include "peer_common.h"

/* Same shape as ParallelFor in hnswlib's python_bindings/bindings.cpp: each
 * thread takes the next index from a shared counter. */
template <class F> static void parallel_for(size_t n, int threads, F fn)
{
    if (threads <= 1) {
        for (size_t i = 0; i < n; i++)
            fn(i);
        return;
    }
    std::atomic<size_t> next(0);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; t++)
        pool.emplace_back([&]() {
            for (;;) {
                size_t i = next.fetch_add(1);
                if (i >= n)
                    break;
                fn(i);
            }
        });
    for (auto &th : pool)
        th.join();
}

static hnswlib::DISTFUNC<float> g_real_dist;
static size_t g_ndist;

static float counting_dist(const void *a, const void *b, const void *param)
{
    g_ndist++;
    return g_real_dist(a, b, param);
}

typedef hnswlib::HierarchicalNSW<float> hnsw_t;

static void run_queries(hnsw_t &idx, const peer_matrix &q, int k, std::vector<uint32_t> &ids,
                        std::vector<float> &dists)
{
    for (size_t i = 0; i < q.n; i++) {
        auto res = idx.searchKnn(q.row(i), (size_t)k);
        /* the priority queue pops farthest first */
        int n = (int)res.size();
        for (int j = n; j < k; j++) {
            ids[i * k + j] = 0xFFFFFFFFu;
            dists[i * k + j] = INFINITY;
        }
        for (int j = n - 1; j >= 0; j--) {
            ids[i * k + j] = (uint32_t)res.top().second;
            dists[i * k + j] = res.top().first;
            res.pop();
        }
    }
}

int main(int argc, char **argv)
{
    const char *prog = "hnswlib_run";
    peer_opts o = peer_parse_args(argc, argv);
    peer_matrix base = peer_read_fvecs(prog, o.base);
    peer_matrix q = peer_read_fvecs(prog, o.queries);
    peer_check_dims(prog, base, q);

    int cosine = o.metric == "cosine";
    if (cosine) {
        peer_normalize(base);
        peer_normalize(q);
    }
    hnswlib::L2Space l2space(base.dim);
    hnswlib::InnerProductSpace ipspace(base.dim);
    hnswlib::SpaceInterface<float> &space = cosine ? (hnswlib::SpaceInterface<float> &)ipspace
                                                   : (hnswlib::SpaceInterface<float> &)l2space;
    long long rss0 = peer_rss_bytes();
    double t0 = peer_now();
    hnsw_t idx(&space, base.n, (size_t)o.M, (size_t)o.ef_construction, o.seed);
    int threads = o.threads;
    if (base.n <= (size_t)threads * 4) /* as add_items does */
        threads = 1;
    parallel_for(base.n, threads, [&](size_t i) { idx.addPoint(base.row(i), (hnswlib::labeltype)i); });
    double build_s = peer_now() - t0;
    long long mem = peer_rss_bytes() - rss0;

    /* answers per ef from the timed passes, checked against the counting pass */
    size_t ne = o.efs.size();
    std::vector<std::vector<uint32_t>> ids(ne, std::vector<uint32_t>(q.n * o.k));
    std::vector<std::vector<float>> dists(ne, std::vector<float>(q.n * o.k));
    std::vector<uint32_t> cids(q.n * o.k);
    std::vector<float> cdists(q.n * o.k);
    idx.setEf((size_t)o.efs[0]);
    run_queries(idx, q, o.k, ids[0], dists[0]); /* page the index in once */
    std::vector<double> qs = peer_interleaved_medians(
        ne, o.repeat, [&](size_t i) { idx.setEf((size_t)o.efs[i]); },
        [&](size_t i) { run_queries(idx, q, o.k, ids[i], dists[i]); });

    for (size_t i = 0; i < ne; i++) {
        int ef = o.efs[i];
        idx.setEf((size_t)ef);
        idx.metric_distance_computations = 0;
        idx.metric_hops = 0;
        g_real_dist = idx.fstdistfunc_;
        g_ndist = 0;
        idx.fstdistfunc_ = counting_dist;
        run_queries(idx, q, o.k, cids, cdists);
        idx.fstdistfunc_ = g_real_dist;
        if (cids != ids[i])
            fprintf(stderr, "%s: warning: ef=%d: counting pass returned different ids\n", prog, ef);

        std::string path = o.out_prefix + ".ef" + std::to_string(ef) + ".frames";
        peer_write_results(prog, path, q.n, o.k, ids[i], dists[i], o.metric.c_str());
        printf("engine=hnswlib ef=%d qps=%.1f mean_dist=%.1f build_s=%.3f mem_bytes=%lld hnswlib_metric=%.1f "
               "hops=%.1f\n",
               ef, (double)q.n / qs[i], (double)g_ndist / (double)q.n, build_s, mem,
               (double)idx.metric_distance_computations.load() / (double)q.n,
               (double)idx.metric_hops.load() / (double)q.n);
        fflush(stdout);
    }
    return 0;
}
