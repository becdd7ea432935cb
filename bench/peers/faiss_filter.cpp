/*
 * faiss_filter.cpp - the FAISS peer of the filtered-search bench
 * (bench/filter.sh): faiss::IndexHNSWFlat searched with an IDSelectorBitmap
 * per query (SearchParametersHNSW: efSearch and sel), Debian's libfaiss.
 *
 * --nq N keeps the first N queries. Builds the index once (M, ef_construction, threads as bench/faiss_run),
 * then for every --case NAME=FILTERS (one filter a line: labels any-of, as
 * hnswflow's query --filters) and every ef runs the queries one at a time on
 * one OpenMP thread, timed with CLOCK_MONOTONIC, median of --repeat passes.
 * The per-query bitmaps are built before the timed loop from --labels FILE
 * (embed-load --labels format): FAISS is not charged for evaluating the
 * filter, hnswflow is (its planner, bitmap and label checks are timed).
 *
 * Output: PREFIX.NAME.ef<EF>.frames (peer_common.h's result stream) and one
 * line per case and ef on stdout:
 *   engine=faiss case=NAME ef=64 qps=... build_s=...
 */
#include <memory>
#include <sstream>
#include <unordered_map>

#include <omp.h>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/impl/HNSW.h>
#include <faiss/impl/IDSelector.h>

#include "peer_common.h"

namespace {

std::vector<std::vector<uint32_t>> read_label_lines(const char *prog, const std::string &path)
{
    FILE *f = fopen(path.c_str(), "r");
    if (!f)
        peer_die(prog, "cannot open %s", path.c_str(), 66);
    std::vector<std::vector<uint32_t>> out;
    char *line = nullptr;
    size_t cap = 0;
    while (getline(&line, &cap, f) >= 0) {
        std::vector<uint32_t> l;
        std::istringstream is(line);
        unsigned long v;
        while (is >> v)
            l.push_back((uint32_t)v);
        out.push_back(l);
    }
    free(line);
    fclose(f);
    return out;
}

} // namespace

int main(int argc, char **argv)
{
    const char *prog = "faiss_filter";
    std::string labels_path;
    size_t nq_max = 0;
    std::vector<std::pair<std::string, std::string>> cases;
    std::vector<char *> rest{argv[0]};
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--labels" && i + 1 < argc)
            labels_path = argv[++i];
        else if (a == "--nq" && i + 1 < argc)
            nq_max = (size_t)peer_parse_int(prog, "--nq", argv[++i], 1, 1 << 30);
        else if (a == "--case" && i + 1 < argc) {
            std::string c = argv[++i];
            size_t eq = c.find('=');
            if (eq == std::string::npos)
                peer_die(prog, "--case %s: expected NAME=FILTERS", c.c_str(), 64);
            cases.emplace_back(c.substr(0, eq), c.substr(eq + 1));
        } else
            rest.push_back(argv[i]);
    }
    if (labels_path.empty() || cases.empty())
        peer_die(prog, "%s", "--labels FILE and at least one --case NAME=FILTERS", 64);
    peer_opts o = peer_parse_args((int)rest.size(), rest.data());
    peer_matrix base = peer_read_fvecs(prog, o.base);
    peer_matrix q = peer_read_fvecs(prog, o.queries);
    peer_check_dims(prog, base, q);
    if (nq_max && q.n > nq_max) {
        q.n = nq_max;
        q.data.resize(q.n * q.dim);
    }
    int cosine = o.metric == "cosine";
    if (cosine) {
        peer_normalize(base);
        peer_normalize(q);
    }
    auto labels = read_label_lines(prog, labels_path);
    if (labels.size() != base.n)
        peer_die(prog, "%s: one line per base vector", labels_path.c_str(), 65);
    std::unordered_map<uint32_t, std::vector<uint32_t>> post;
    for (size_t i = 0; i < labels.size(); i++)
        for (uint32_t l : labels[i])
            post[l].push_back((uint32_t)i);

    double t0 = peer_now();
    omp_set_num_threads(o.threads);
    faiss::IndexHNSWFlat idx((int)base.dim, o.M, faiss::METRIC_L2);
    idx.hnsw.efConstruction = o.ef_construction;
    idx.add((faiss::Index::idx_t)base.n, base.data.data());
    double build_s = peer_now() - t0;
    omp_set_num_threads(1);

    size_t nbytes = (base.n + 7) / 8;
    for (auto &c : cases) {
        auto filters = read_label_lines(prog, c.second);
        if (filters.size() < q.n)
            peer_die(prog, "%s: fewer filters than queries", c.second.c_str(), 65);
        std::vector<std::vector<uint8_t>> bm(q.n, std::vector<uint8_t>(nbytes, 0));
        std::vector<std::unique_ptr<faiss::IDSelectorBitmap>> sel;
        for (size_t i = 0; i < q.n; i++) {
            for (uint32_t l : filters[i]) {
                auto it = post.find(l);
                if (it == post.end())
                    continue;
                for (uint32_t id : it->second)
                    bm[i][id >> 3] |= (uint8_t)(1u << (id & 7));
            }
            sel.emplace_back(new faiss::IDSelectorBitmap(nbytes, bm[i].data()));
        }
        size_t ne = o.efs.size();
        std::vector<std::vector<uint32_t>> ids(ne, std::vector<uint32_t>(q.n * o.k));
        std::vector<std::vector<float>> dists(ne, std::vector<float>(q.n * o.k));
        std::vector<faiss::Index::idx_t> lab((size_t)o.k);
        faiss::SearchParametersHNSW sp;
        auto run = [&](size_t e) {
            sp.efSearch = o.efs[e];
            for (size_t i = 0; i < q.n; i++) {
                sp.sel = sel[i].get();
                idx.search(1, q.row(i), o.k, &dists[e][i * o.k], lab.data(), &sp);
                for (int j = 0; j < o.k; j++)
                    ids[e][i * o.k + j] = lab[j] < 0 ? 0xFFFFFFFFu : (uint32_t)lab[j];
            }
        };
        run(0); /* warm-up */
        std::vector<double> qs = peer_interleaved_medians(
            ne, o.repeat, [&](size_t) {}, [&](size_t e) { run(e); });
        for (size_t e = 0; e < ne; e++) {
            if (cosine)
                for (float &d : dists[e])
                    d *= 0.5f;
            std::string path = o.out_prefix + "." + c.first + ".ef" + std::to_string(o.efs[e]) + ".frames";
            peer_write_results(prog, path, q.n, o.k, ids[e], dists[e], o.metric.c_str());
            printf("engine=faiss case=%s ef=%d qps=%.1f build_s=%.3f\n", c.first.c_str(), o.efs[e],
                   (double)q.n / qs[e], build_s);
            fflush(stdout);
        }
    }
    return 0;
}
