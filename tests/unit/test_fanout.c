/*
 * test_fanout.c - the fan-out front end's pure parts: the --fanout spec
 * parser (shards by ',', replicas by '|', empty fields refused) and the
 * top-k merge of shard answers (nearest first, at most k, unsorted or
 * u32-id answers refused), the request repack (qid and k replaced,
 * every other key kept), and batch answers (qbatch.h: counts, ids and
 * distances checked against each other, parts merged query by query).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fanout.h"
#include "qbatch.h"

static void spec_splits_shards_by_comma_and_replicas_by_bar(void **st)
{
    (void)st;
    static char *ep[FANOUT_MAX_REPLICAS];
    static int sh[FANOUT_MAX_REPLICAS];
    char *buf = NULL;
    int nrep = 0, nshard = 0;
    hf_err e;
    assert_int_equal(fanout_parse_spec("tcp://a:1|tcp://b:1,ipc:///x,tcp://c:3|tcp://d:3|tcp://e:3",
                                       &buf, ep, sh, &nrep, &nshard, &e),
                     0);
    assert_int_equal(nshard, 3);
    assert_int_equal(nrep, 6);
    assert_string_equal(ep[1], "tcp://b:1");
    assert_string_equal(ep[2], "ipc:///x");
    int want[] = {0, 0, 1, 2, 2, 2};
    for (int i = 0; i < 6; i++)
        assert_int_equal(sh[i], want[i]);
    free(buf);
    const char *bad[] = {"",    "tcp://a:1,", ",tcp://a:1", "tcp://a:1||tcp://b:1",
                         "a:1", "tcp://a:1|"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        buf = NULL;
        assert_int_equal(fanout_parse_spec(bad[i], &buf, ep, sh, &nrep, &nshard, &e), HF_EUSAGE);
        free(buf);
    }
}

/* a result frame packed and decoded again */
typedef struct packed {
    frame_out fo;
    msgpack_unpacked u;
    frame_in f;
} packed;

/* p->fo's bytes decoded into p->f */
static void unpack(packed *p)
{
    msgpack_unpacked_init(&p->u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&p->u, p->fo.sb.data, p->fo.sb.size, &off),
                     MSGPACK_UNPACK_SUCCESS);
    hf_err e;
    assert_int_equal(frame_in_wrap(&p->f, &p->u.data, 1, &e), 0);
}

static void pack_result(packed *p, const uint64_t *ids, size_t idw, const float *d, size_t n)
{
    frame_out_init(&p->fo);
    frame_begin(&p->fo, "result", 3);
    frame_put_u64(&p->fo, "qid", 1);
    frame_put_bin(&p->fo, "ids", ids, n * idw);
    frame_put_bin(&p->fo, "dists", d, n * sizeof *d);
    unpack(p);
}

static void unpack_free(packed *p)
{
    msgpack_unpacked_destroy(&p->u);
    frame_out_free(&p->fo);
}

static void merge_keeps_the_k_nearest_of_all_shards_in_order(void **st)
{
    (void)st;
    fanout_merge m;
    assert_int_equal(fanout_merge_init(&m, 4), 0);
    uint64_t a_ids[] = {10, 11, 12};
    float a_d[] = {0.5f, 1.0f, 3.0f};
    uint64_t b_ids[] = {20, 21, 22, 23, 24};
    float b_d[] = {0.1f, 0.7f, 1.0f, 2.0f, 9.0f};
    packed a, b;
    pack_result(&a, a_ids, 8, a_d, 3);
    pack_result(&b, b_ids, 8, b_d, 5);
    hf_err e;
    assert_int_equal(fanout_merge_take(&m, &a.f, &e), 0);
    assert_int_equal(fanout_merge_take(&m, &b.f, &e), 0);
    assert_int_equal(m.n, 4);
    uint64_t want_ids[] = {20, 10, 21, 11};
    float want_d[] = {0.1f, 0.5f, 0.7f, 1.0f};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(m.ids[i], want_ids[i]);
        assert_float_equal(m.dists[i], want_d[i], 0);
    }
    unpack_free(&a);
    unpack_free(&b);
    /* u32 ids (a shard without external ids) and unsorted answers are refused */
    uint32_t small[] = {1, 2};
    float sd[] = {0.2f, 0.3f};
    packed c;
    pack_result(&c, (const uint64_t *)small, 4, sd, 2);
    assert_int_equal(fanout_merge_take(&m, &c.f, &e), HF_EDATA);
    unpack_free(&c);
    float unsorted[] = {0.3f, 0.2f};
    uint64_t two[] = {1, 2};
    pack_result(&c, two, 8, unsorted, 2);
    assert_int_equal(fanout_merge_take(&m, &c.f, &e), HF_EDATA);
    unpack_free(&c);
    fanout_merge_free(&m);
}

static void repack_replaces_qid_and_k_and_keeps_the_rest(void **st)
{
    (void)st;
    frame_out in;
    frame_out_init(&in);
    frame_begin(&in, "query", 4);
    frame_put_u64(&in, "qid", 99);
    frame_put_u64(&in, "k", 3);
    frame_put_u64(&in, "ef", 40);
    frame_put_bin(&in, "vec", "abcd", 4);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, in.sb.data, in.sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    frame_in f;
    hf_err e;
    assert_int_equal(frame_in_wrap(&f, &u.data, 1, &e), 0);
    frame_out out;
    frame_out_init(&out);
    assert_int_equal(fanout_request_repack(&f, 12345, 7, &out), 0);
    msgpack_unpacked v;
    msgpack_unpacked_init(&v);
    off = 0;
    assert_int_equal(msgpack_unpack_next(&v, out.sb.data, out.sb.size, &off),
                     MSGPACK_UNPACK_SUCCESS);
    frame_in g;
    assert_int_equal(frame_in_wrap(&g, &v.data, 1, &e), 0);
    assert_int_equal(g.map->via.map.size, 5);
    uint64_t q, k, ef;
    assert_int_equal(frame_get_u64(&g, "qid", &q, &e), 0);
    assert_int_equal(frame_get_u64(&g, "k", &k, &e), 0);
    assert_int_equal(frame_get_u64(&g, "ef", &ef, &e), 0);
    assert_int_equal(q, 12345);
    assert_int_equal(k, 7);
    assert_int_equal(ef, 40);
    assert_string_equal(g.type, "query");
    msgpack_unpacked_destroy(&u);
    msgpack_unpacked_destroy(&v);
    frame_out_free(&in);
    frame_out_free(&out);
}

/* a results frame of n queries packed and decoded again */
static void pack_batch(packed *p, size_t n, const uint32_t *counts, const uint64_t *ids,
                       const float *d, size_t total)
{
    frame_out_init(&p->fo);
    qbatch_pack_results(&p->fo, 5, n, counts, ids, 8, d, total, 0);
    unpack(p);
}

static void batch_answers_split_by_counts_and_are_checked(void **st)
{
    (void)st;
    uint32_t counts[] = {2, 0, 3};
    uint64_t ids[] = {7, 8, 1, 2, 3};
    float d[] = {0.1f, 0.2f, 0.5f, 0.6f, 0.9f};
    packed p;
    pack_batch(&p, 3, counts, ids, d, 5);
    qbatch_results r;
    hf_err e;
    assert_int_equal(qbatch_results_parse(&p.f, 3, 8, 3, &r, &e), 0);
    assert_int_equal(r.total, 5);
    assert_int_equal(qbatch_count(&r, 0), 2);
    assert_int_equal(qbatch_count(&r, 1), 0);
    assert_int_equal(qbatch_count(&r, 2), 3);
    /* query 2's part merged into a running top-2 */
    fanout_merge m;
    assert_int_equal(fanout_merge_init(&m, 2), 0);
    assert_int_equal(fanout_merge_take_raw(&m, r.ids + 8 * 2, r.dists + 4 * 2, 3, &e), 0);
    assert_int_equal(m.n, 2);
    assert_int_equal(m.ids[0], 1);
    assert_int_equal(m.ids[1], 2);
    fanout_merge_free(&m);
    /* another n, ids of another width, a count over k */
    assert_int_equal(qbatch_results_parse(&p.f, 2, 8, 3, &r, &e), HF_EDATA);
    assert_int_equal(qbatch_results_parse(&p.f, 3, 4, 3, &r, &e), HF_EDATA);
    assert_int_equal(qbatch_results_parse(&p.f, 3, 8, 2, &r, &e), HF_EDATA);
    unpack_free(&p);
    /* counts that do not sum to the entries, distances unsorted in a query */
    uint32_t more[] = {2, 1, 3};
    pack_batch(&p, 3, more, ids, d, 5);
    assert_int_equal(qbatch_results_parse(&p.f, 3, 8, 3, &r, &e), HF_EDATA);
    unpack_free(&p);
    float unsorted[] = {0.2f, 0.1f, 0.5f, 0.6f, 0.9f};
    pack_batch(&p, 3, counts, ids, unsorted, 5);
    assert_int_equal(qbatch_results_parse(&p.f, 3, 8, 3, &r, &e), HF_EDATA);
    unpack_free(&p);
    /* a query's first distance may be below the last one's of the query before */
    float reset[] = {0.1f, 0.2f, 0.05f, 0.6f, 0.9f};
    pack_batch(&p, 3, counts, ids, reset, 5);
    assert_int_equal(qbatch_results_parse(&p.f, 3, 8, 3, &r, &e), 0);
    unpack_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spec_splits_shards_by_comma_and_replicas_by_bar),
        cmocka_unit_test(merge_keeps_the_k_nearest_of_all_shards_in_order),
        cmocka_unit_test(repack_replaces_qid_and_k_and_keeps_the_rest),
        cmocka_unit_test(batch_answers_split_by_counts_and_are_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
