/*
 * fanout.h - the front end of a sharded index (query --fanout).
 *
 * A request that reaches the front end goes to one replica of every shard;
 * each shard answers its local top k (with external u64 ids, which name the
 * original rows); the front end merges them by distance and answers the
 * client with the global top k. Shards and replicas are named by one spec:
 * shards separated by ',', replicas of a shard by '|':
 *     "tcp://a:5001|tcp://b:5001,tcp://a:5002|tcp://b:5002"
 * is two shards with two replicas each.
 *
 * Promises:
 *   - Every request is answered: after the shard time-out the front end
 *     answers with what it has, marked {partial: true, missing: [shard...]};
 *     no shard answering at all gives an error frame; a bad request (all
 *     shards answer an error) gives the shards' error.
 *   - A replica is picked per request as the connected one with the fewest
 *     requests in flight. When a replica disconnects (libzmq's socket
 *     monitor; ZMTP heartbeats find a silent peer), the requests it held are
 *     sent again to another replica of its shard, so losing one replica of
 *     two costs no answer.
 *   - Ids: shards must have external ids (embed-load --shard or --ids); the
 *     front end checks that with an info request to every replica at start.
 *
 * One thread, one zmq_poll loop; requests in flight sit in a fixed table
 * indexed by the front end's own request number (which replaces the
 * client's qid on the way to the shards), so answers find their request in
 * O(1) and time-outs are met in order (all requests share one time-out).
 */
#ifndef HF_FANOUT_H
#define HF_FANOUT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "curve.h"
#include "err.h"
#include "frame.h"

typedef struct fanout_cfg {
    const char *spec;     /* shards and replicas, see above */
    const char *serve_ep; /* where clients connect */
    int timeout_ms;       /* --shard-timeout */
    int hedge_ms;         /* --hedge: ask a second replica after this (0: never) */
    int start_wait_ms;    /* how long to wait at start for every shard's info */
    size_t max_frame;
    uint64_t k, max_k;           /* default and largest k */
    const curve_cfg *curve;      /* server side for clients, client side to shards */
    volatile sig_atomic_t *stop; /* set by a signal handler: drain and return */
} fanout_cfg;

/* Parse a spec into shards of replicas. ep[i] are pointers into buf (a
 * copy of the spec the caller frees); shard_of[i] is replica i's shard. */
#define FANOUT_MAX_REPLICAS 1024
int fanout_parse_spec(const char *spec, char **buf, char *ep[], int shard_of[], int *nrep,
                      int *nshard, hf_err *e);

/* The merge of shard answers for one query: the best k so far, sorted. */
typedef struct fanout_merge {
    size_t k, n;
    uint64_t *ids;
    float *dists;
    uint64_t *tmp_ids;
    float *tmp_dists;
} fanout_merge;
int fanout_merge_init(fanout_merge *m, size_t k);
void fanout_merge_free(fanout_merge *m);
/* Take one shard's result frame (ids u64, dists f32, nearest first). */
int fanout_merge_take(fanout_merge *m, const frame_in *result, hf_err *e);
/* The same from n raw little-endian u64 ids and f32 distances (a query's
 * part of a batch answer, qbatch.h). */
int fanout_merge_take_raw(fanout_merge *m, const void *ids, const void *dists, size_t n, hf_err *e);

/* Into fo (cleared first): the client's request f with its qid replaced by
 * the front end's request number fid and k set, every other key kept. */
int fanout_request_repack(const frame_in *f, uint64_t fid, uint64_t k, frame_out *fo);

/* Run the front end until *cfg->stop; 0, or an error at start. */
int fanout_run(const fanout_cfg *cfg, hf_err *e);

#endif
