/*
 * fanout.c - see fanout.h.
 *
 * Replicas each get their own DEALER socket (not one DEALER connected to
 * all): the front end chooses the replica itself, by requests in flight,
 * and knows which replica holds which request when one goes away. Sockets
 * are ZMQ_IMMEDIATE, so a send to a replica that is not connected fails at
 * once (EAGAIN) instead of queueing for a peer that may never come, and the
 * next replica is tried.
 *
 * The pure parts (spec, merge, request repack) are in fanout_merge.c.
 *
 * Hedging (--hedge MS): a part a replica has not answered MS ms after the
 * request came is sent to another ready replica of its shard too, once; the
 * first answer counts and the other is dropped as late. A replica that is
 * connected but slow (stopped, swapping, overloaded) then costs MS, not
 * --shard-timeout, until the heartbeat declares it gone. Requests are hedged
 * in request order (their hedge times are too), from a cursor.
 *
 * Slot table: request number f lives in slot f % cap while in flight; the
 * front end stops reading new requests while the next slot is taken, which
 * bounds memory and, with the shared time-out, means the oldest request
 * always has the earliest deadline (time-outs are checked from the oldest).
 */
#include "fanout.h"
#include "frame_scan.h"
#include "progress.h"
#include "qbatch.h"
#include "serve.h"
#include "serve_stats.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define SLOTS 4096
#define HEARTBEAT_IVL_MS 250
#define HEARTBEAT_TIMEOUT_MS 1500

/* ---- the front end ---- */

enum part_state { PART_WAIT = 1, PART_DONE, PART_ERROR, PART_LOST };

typedef struct replica {
    const char *ep;
    int shard;
    void *sock, *mon;
    int up;    /* handshake done, not disconnected since */
    int ready; /* answered an info request that matches its shard */
    int asked; /* info sent since the last handshake */
    int bad;   /* serves something else: never used */
    int noted; /* a failed handshake was logged (not again for each retry) */
    uint32_t inflight;
} replica;

typedef struct shard_ref {
    int known; /* first replica's info taken */
    uint64_t dim, count;
    char metric[16];
} shard_ref;

typedef struct slot {
    uint64_t fid; /* 0: free */
    server_req *env;
    int has_qid;
    uint64_t qid;
    double t0, deadline;
    char *req;
    size_t req_len;
    uint32_t waiting;
    uint32_t nq; /* queries: 1, or a "queries" request's n */
    int batch;   /* a "queries" request: answered with "results" */
    size_t k;
    fanout_merge *m; /* nq merges */
    char err[256];
} slot;

typedef struct fan {
    const fanout_cfg *cfg;
    server *srv;
    void *ctx;
    replica *rep;
    int nrep, nshard;
    shard_ref *ref;
    shard_ref all; /* dim and metric every shard must have (the first known) */
    slot *slots;
    uint8_t *state; /* SLOTS x nshard */
    int16_t *owner; /* SLOTS x nshard: replica holding the part, -1 none */
    int16_t *hedge; /* SLOTS x nshard: the second replica asked (--hedge), -1 none */
    uint64_t next, tail;
    uint64_t hcur; /* requests before this one are hedged or need not be */
    uint32_t rr;
    msgpack_unpacked up;
    frame_out fo;
    serve_stats st;
    serve_stats_index six;
    uint64_t answered, partial, late, resent, errors, hedged;
} fan;

static int log_event(const fan *F, int r, const char *what)
{
    return fprintf(stderr, "query: fan-out: shard %d replica %s: %s\n", F->rep[r].shard,
                   F->rep[r].ep, what);
}

static int open_replica(fan *F, int r, hf_err *e)
{
    replica *R = &F->rep[r];
    R->sock = zmq_socket(F->ctx, ZMQ_DEALER);
    if (!R->sock)
        return hf_err_set(e, HF_EOPEN, "%s: cannot create socket", R->ep);
    int one = 1, zero = 0, hwm = 100000, hb = HEARTBEAT_IVL_MS, hbt = HEARTBEAT_TIMEOUT_MS;
    int64_t maxsz = (int64_t)(F->cfg->max_frame ? F->cfg->max_frame : FRAME_DEFAULT_MAX_BYTES);
    zmq_setsockopt(R->sock, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt(R->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(R->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(R->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(R->sock, ZMQ_MAXMSGSIZE, &maxsz, sizeof maxsz);
    zmq_setsockopt(R->sock, ZMQ_HEARTBEAT_IVL, &hb, sizeof hb);
    zmq_setsockopt(R->sock, ZMQ_HEARTBEAT_TIMEOUT, &hbt, sizeof hbt);
    int ivl = 100;
    zmq_setsockopt(R->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    if (curve_cfg_client(F->cfg->curve) && curve_client_apply(R->sock, F->cfg->curve, e))
        return hf_err_prefix(e, "%s", R->ep);
    char mon[64];
    snprintf(mon, sizeof mon, "inproc://fanout-monitor-%d", r);
    if (zmq_socket_monitor(R->sock, mon,
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) != 0)
        return hf_err_set(e, HF_EOPEN, "%s: cannot monitor: %s", R->ep, zmq_strerror(errno));
    R->mon = zmq_socket(F->ctx, ZMQ_PAIR);
    if (!R->mon || zmq_connect(R->mon, mon) != 0)
        return hf_err_set(e, HF_EOPEN, "%s: cannot monitor", R->ep);
    if (zmq_connect(R->sock, R->ep) != 0)
        return hf_err_set(e, HF_EOPEN, "%s: cannot connect: %s", R->ep, zmq_strerror(errno));
    return 0;
}

static int send_to(replica *R, const void *data, size_t len)
{
    if (zmq_send(R->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -1;
    return zmq_send(R->sock, data, len, ZMQ_DONTWAIT) < 0 ? -1 : 0;
}

/* Send slot s's request to a replica of shard sh other than `not`: the
 * ready one with the fewest in flight first. Returns the replica or -1. */
static int dispatch(fan *F, slot *s, int sh, int not )
{
    int tried[64] = {0}, ntried = 0;
    for (;;) {
        int best = -1;
        uint32_t bi = UINT32_MAX;
        F->rr++;
        for (int i = 0; i < F->nrep; i++) {
            int r = (int)((F->rr + (uint32_t)i) % (uint32_t)F->nrep);
            replica *R = &F->rep[r];
            if (R->shard != sh || r == not || !R->ready || !R->up || R->bad)
                continue;
            int skip = 0;
            for (int j = 0; j < ntried; j++)
                skip |= tried[j] == r;
            if (!skip && R->inflight < bi) {
                best = r;
                bi = R->inflight;
            }
        }
        if (best < 0)
            return -1;
        if (send_to(&F->rep[best], s->req, s->req_len) == 0) {
            F->rep[best].inflight++;
            return best;
        }
        if (ntried == 64)
            return -1;
        tried[ntried++] = best;
    }
}

static void put_local_info(fan *F, frame_out *fo)
{
    frame_begin(fo, "info", 6);
    frame_put_u64(fo, "dim", F->all.dim);
    frame_put_str(fo, "metric", F->all.metric);
    frame_put_u64(fo, "count", F->six.count);
    frame_put_str(fo, "ids", "u64");
    frame_put_u64(fo, "shards", (uint64_t)F->nshard);
    frame_put_u64(fo, "replicas", (uint64_t)F->nrep);
}

static void reply_error(fan *F, server_req *req, int has_qid, uint64_t qid, const char *msg)
{
    hf_err e;
    frame_begin(&F->fo, "error", has_qid ? 2 : 1);
    if (has_qid)
        frame_put_u64(&F->fo, "qid", qid);
    frame_put_str(&F->fo, "msg", msg);
    server_reply(F->srv, req, &F->fo, &e);
}

/* A waiting part is over: neither of the replicas asked holds it now. */
static void part_done(fan *F, int own, int hown)
{
    if (own >= 0 && F->rep[own].inflight)
        F->rep[own].inflight--;
    if (hown >= 0 && F->rep[hown].inflight)
        F->rep[hown].inflight--;
}

static int init_merges(slot *s)
{
    s->m = calloc(s->nq, sizeof *s->m);
    if (!s->m)
        return HF_ENOMEM;
    for (uint32_t i = 0; i < s->nq; i++)
        if (fanout_merge_init(&s->m[i], s->k))
            return HF_ENOMEM;
    return 0;
}

static void free_merges(slot *s)
{
    for (uint32_t i = 0; s->m && i < s->nq; i++)
        fanout_merge_free(&s->m[i]);
    free(s->m);
    s->m = NULL;
}

/* One shard's answer f merged into slot s: a result, or a batch's results. */
static int take_part(slot *s, const frame_in *f, hf_err *e)
{
    if (!s->batch) {
        if (strcmp(f->type, "result") != 0)
            return hf_err_set(e, HF_EDATA, "a \"%s\" frame, not a result", f->type);
        return fanout_merge_take(&s->m[0], f, e);
    }
    qbatch_results r;
    if (qbatch_results_parse(f, s->nq, 8, s->k, &r, e))
        return HF_EDATA;
    size_t off = 0;
    for (uint32_t i = 0; i < s->nq; i++) {
        uint32_t c = qbatch_count(&r, i);
        if (fanout_merge_take_raw(&s->m[i], r.ids + 8 * off, r.dists + 4 * off, c, e))
            return HF_EDATA;
        off += c;
    }
    return 0;
}

/* The merged answers of a batch slot into F->fo, nextra keys to follow. */
static int pack_batch(fan *F, slot *s, uint32_t nextra)
{
    size_t total = 0;
    for (uint32_t i = 0; i < s->nq; i++)
        total += s->m[i].n;
    uint32_t *counts = malloc(s->nq * sizeof *counts);
    uint64_t *ids = malloc(total * sizeof *ids + 1);
    float *dists = malloc(total * sizeof *dists + 1);
    if (!counts || !ids || !dists) {
        free(counts);
        free(ids);
        free(dists);
        return HF_ENOMEM;
    }
    size_t o = 0;
    for (uint32_t i = 0; i < s->nq; i++) {
        counts[i] = (uint32_t)s->m[i].n;
        memcpy(ids + o, s->m[i].ids, s->m[i].n * sizeof *ids);
        memcpy(dists + o, s->m[i].dists, s->m[i].n * sizeof *dists);
        o += s->m[i].n;
    }
    qbatch_pack_results(&F->fo, s->qid, s->nq, counts, ids, 8, dists, total, nextra);
    free(counts);
    free(ids);
    free(dists);
    return 0;
}

/* Answer slot s with what it has and free it. */
static void finish(fan *F, slot *s)
{
    size_t row = (size_t)(s->fid % SLOTS) * (size_t)F->nshard;
    uint8_t *st = F->state + row;
    int16_t *own = F->owner + row;
    int done = 0, missing = 0;
    for (int i = 0; i < F->nshard; i++) {
        if (st[i] == PART_DONE)
            done++;
        else
            missing++;
        if (st[i] == PART_WAIT)
            part_done(F, own[i], F->hedge[row + i]);
    }
    hf_err e;
    if (!done) {
        char msg[400];
        if (s->err[0])
            snprintf(msg, sizeof msg, "%s", s->err);
        else
            snprintf(msg, sizeof msg, "no shard answered within %d ms", F->cfg->timeout_ms);
        reply_error(F, s->env, s->has_qid, s->qid, msg);
        F->errors++;
    } else {
        frame_out *fo = &F->fo;
        if (!s->batch) {
            frame_begin(fo, "result", missing ? 5 : 3);
            frame_put_u64(fo, "qid", s->qid);
            frame_put_bin(fo, "ids", s->m[0].ids, s->m[0].n * sizeof(uint64_t));
            frame_put_bin(fo, "dists", s->m[0].dists, s->m[0].n * sizeof(float));
        } else if (pack_batch(F, s, missing ? 2 : 0)) {
            reply_error(F, s->env, s->has_qid, s->qid, "front end out of memory");
            F->errors++;
            missing = -1;
        }
        if (missing > 0) {
            frame_put_bool(fo, "partial", 1);
            frame_put_key(fo, "missing");
            msgpack_pack_array(&fo->pk, (uint32_t)missing);
            for (int i = 0; i < F->nshard; i++)
                if (st[i] != PART_DONE)
                    msgpack_pack_uint32(&fo->pk, (uint32_t)i);
            F->partial++;
        }
        if (missing >= 0)
            server_reply(F->srv, s->env, fo, &e);
    }
    serve_stats_answer(&F->st, &F->fo, now_seconds() - s->t0);
    F->answered++;
    server_req_free(&s->env);
    free_merges(s);
    free(s->req);
    s->req = NULL;
    s->fid = 0;
}

static void take_query(fan *F, server_req *req, const frame_in *f, int batch)
{
    uint64_t qid = 0, k = F->cfg->k, nq = 1;
    int has_qid = frame_get_u64(f, "qid", &qid, NULL) == 0;
    int krc = frame_get_u64(f, "k", &k, NULL);
    char msg[128] = "";
    if (krc == HF_EDATA || k < 1 || k > F->cfg->max_k)
        snprintf(msg, sizeof msg, "k=%llu outside limits (k 1..%llu)", (unsigned long long)k,
                 (unsigned long long)F->cfg->max_k);
    else if (batch && (frame_get_u64(f, "n", &nq, NULL) || nq < 1 || nq > QBATCH_MAX))
        snprintf(msg, sizeof msg, "queries frame needs n, 1..%d", QBATCH_MAX);
    if (msg[0]) {
        reply_error(F, req, has_qid, qid, msg);
        serve_stats_answer(&F->st, &F->fo, 0);
        return;
    }
    uint64_t fid = ++F->next;
    slot *s = &F->slots[fid % SLOTS];
    memset(s, 0, sizeof *s);
    s->has_qid = has_qid;
    s->qid = qid;
    s->nq = (uint32_t)nq;
    s->batch = batch;
    s->k = (size_t)k;
    s->t0 = now_seconds();
    s->deadline = s->t0 + F->cfg->timeout_ms / 1000.0;
    fanout_request_repack(f, fid, k, &F->fo);
    s->req = malloc(F->fo.sb.size);
    s->env = server_take(F->srv);
    if (!s->req || !s->env || init_merges(s)) {
        reply_error(F, s->env ? s->env : req, has_qid, qid, "front end out of memory");
        free(s->req);
        s->req = NULL;
        server_req_free(&s->env);
        free_merges(s);
        return;
    }
    memcpy(s->req, F->fo.sb.data, F->fo.sb.size);
    s->req_len = F->fo.sb.size;
    s->fid = fid;
    size_t row = (size_t)(fid % SLOTS) * (size_t)F->nshard;
    for (int i = 0; i < F->nshard; i++) {
        int r = dispatch(F, s, i, -1);
        F->owner[row + i] = (int16_t)r;
        F->hedge[row + i] = -1;
        F->state[row + i] = r >= 0 ? PART_WAIT : PART_LOST;
        s->waiting += r >= 0;
    }
    if (!s->waiting) {
        snprintf(s->err, sizeof s->err, "no replica of any shard is reachable");
        finish(F, s);
    }
}

/* Read every request waiting at the front socket (while slots are free). */
static int serve_clients(fan *F, hf_err *e)
{
    for (;;) {
        if (F->slots[(F->next + 1) % SLOTS].fid)
            return 0; /* table full: leave the rest queued */
        server_req *req;
        frame_in f;
        int rc = server_recv(F->srv, 0, &req, &f, e);
        if (rc == HF_EOF)
            return 0;
        if (rc == HF_EDATA) {
            reply_error(F, req, 0, 0, e->msg);
            serve_stats_answer(&F->st, &F->fo, 0);
            continue;
        }
        if (rc)
            return rc;
        int batch = strcmp(f.type, "queries") == 0;
        if (batch || strcmp(f.type, "query") == 0) {
            take_query(F, req, &f, batch);
            continue;
        }
        double t = now_seconds();
        if (strcmp(f.type, "info") == 0) {
            put_local_info(F, &F->fo);
            server_reply(F->srv, req, &F->fo, e);
        } else if (strcmp(f.type, "stats") == 0) {
            serve_stats_pack(&F->st, &F->six, t, &F->fo);
            server_reply(F->srv, req, &F->fo, e);
        } else {
            char msg[128];
            uint64_t qid = 0;
            int has_qid = frame_get_u64(&f, "qid", &qid, NULL) == 0;
            snprintf(msg, sizeof msg,
                     "unexpected frame type \"%s\" (expected \"query\" or \"queries\")", f.type);
            reply_error(F, req, has_qid, qid, msg);
        }
        serve_stats_answer(&F->st, &F->fo, now_seconds() - t);
    }
}

/* An info answer from replica r: it is ready when it matches its shard. */
static void take_info(fan *F, int r, const frame_in *f)
{
    replica *R = &F->rep[r];
    shard_ref *ref = &F->ref[R->shard];
    uint64_t dim = 0, count = 0;
    char metric[16] = "", ids[8] = "";
    frame_get_u64(f, "dim", &dim, NULL);
    frame_get_u64(f, "count", &count, NULL);
    frame_get_str(f, "metric", metric, sizeof metric, NULL);
    frame_get_str(f, "ids", ids, sizeof ids, NULL);
    char why[200] = "";
    if (strcmp(ids, "u64") != 0)
        snprintf(why, sizeof why,
                 "has no external ids (build shards with embed-load --shard "
                 "or --ids): not used");
    else if (F->all.known && (dim != F->all.dim || strcmp(metric, F->all.metric)))
        snprintf(why, sizeof why, "serves dim %llu %s, other shards dim %llu %s: not used",
                 (unsigned long long)dim, metric, (unsigned long long)F->all.dim, F->all.metric);
    else if (ref->known && count != ref->count)
        snprintf(why, sizeof why, "holds %llu vectors, its shard's other replicas %llu: not used",
                 (unsigned long long)count, (unsigned long long)ref->count);
    if (why[0]) {
        if (!R->bad)
            log_event(F, r, why);
        R->bad = 1;
        return;
    }
    if (!ref->known) {
        ref->known = 1;
        ref->dim = dim;
        ref->count = count;
        snprintf(ref->metric, sizeof ref->metric, "%s", metric);
        F->six.count += count;
        F->six.dim = dim;
        if (!F->all.known)
            F->all = *ref;
    }
    R->ready = 1;
}

static void take_answer(fan *F, int r, const void *data, size_t size)
{
    replica *R = &F->rep[r];
    size_t off = 0;
    frame_in f;
    hf_err e;
    if (!frame_scan_is_one(data, size) ||
        msgpack_unpack_next(&F->up, data, size, &off) != MSGPACK_UNPACK_SUCCESS || off != size ||
        frame_in_wrap(&f, &F->up.data, 0, &e) != 0) {
        log_event(F, r, "answered something that is not one frame (ignored)");
        return;
    }
    if (strcmp(f.type, "info") == 0) {
        take_info(F, r, &f);
        return;
    }
    uint64_t fid = 0;
    if (frame_get_u64(&f, "qid", &fid, NULL) != 0 || fid == 0) {
        F->late++;
        return;
    }
    slot *s = &F->slots[fid % SLOTS];
    size_t idx = (size_t)(fid % SLOTS) * (size_t)F->nshard + (size_t)R->shard;
    if (s->fid != fid || F->state[idx] != PART_WAIT) {
        F->late++; /* timed out, or the other replica answered first */
        return;
    }
    part_done(F, F->owner[idx], F->hedge[idx]);
    if (take_part(s, &f, &e) == 0) {
        F->state[idx] = PART_DONE;
    } else {
        F->state[idx] = PART_ERROR;
        if (!s->err[0]) {
            char msg[240] = "";
            if (strcmp(f.type, "error") == 0)
                frame_get_str(&f, "msg", msg, sizeof msg, NULL);
            else
                snprintf(msg, sizeof msg, "%s", e.msg);
            snprintf(s->err, sizeof s->err, "%s", msg);
        }
    }
    if (--s->waiting == 0)
        finish(F, s);
}

static void drain_replica(fan *F, int r)
{
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, F->rep[r].sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        if (!zmq_msg_more(&m))
            take_answer(F, r, zmq_msg_data(&m), zmq_msg_size(&m));
        zmq_msg_close(&m);
    }
}

/* Parts held by replica r go to another replica of its shard. */
static void move_parts(fan *F, int r)
{
    int sh = F->rep[r].shard;
    for (uint64_t fid = F->tail + 1; fid <= F->next; fid++) {
        slot *s = &F->slots[fid % SLOTS];
        size_t idx = (size_t)(fid % SLOTS) * (size_t)F->nshard + (size_t)sh;
        if (s->fid != fid || F->state[idx] != PART_WAIT)
            continue;
        if (F->hedge[idx] == r) /* the first replica asked still has it */
            F->hedge[idx] = -1;
        if (F->owner[idx] != r)
            continue;
        if (F->hedge[idx] >= 0) { /* the hedge's replica has it already */
            F->owner[idx] = F->hedge[idx];
            F->hedge[idx] = -1;
            continue;
        }
        int to = dispatch(F, s, sh, r);
        F->owner[idx] = (int16_t)to;
        F->resent += to >= 0;
    }
    F->rep[r].inflight = 0;
}

static void drain_monitor(fan *F, int r)
{
    replica *R = &F->rep[r];
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, R->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        uint16_t ev = 0;
        if (zmq_msg_size(&m) >= 2)
            memcpy(&ev, zmq_msg_data(&m), 2);
        int more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        while (more) { /* the endpoint part */
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, R->mon, 0) < 0)
                more = 0;
            else
                more = zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
        if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            R->up = 1;
            R->ready = 0;
            frame_out fo;
            frame_out_init(&fo);
            frame_begin(&fo, "info", 0);
            R->asked = send_to(R, fo.sb.data, fo.sb.size) == 0;
            frame_out_free(&fo);
            log_event(F, r, "connected");
        } else if (ev == ZMQ_EVENT_DISCONNECTED) {
            int others = 0;
            for (int i = 0; i < F->nrep; i++)
                others += i != r && F->rep[i].shard == R->shard && F->rep[i].ready;
            if (R->up)
                log_event(F, r,
                          others ? "disconnected: its requests go to the other replicas"
                                 : "disconnected: no other replica, its shard is missing from "
                                   "answers until it comes back");
            R->up = 0;
            R->ready = 0;
            move_parts(F, r);
        } else if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH && !R->noted) {
            log_event(F, r, "refused our CURVE key (retrying)");
            R->noted = 1;
        } else if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL && !R->noted) {
            log_event(F, r, "handshake failed (CURVE on one side only?) (retrying)");
            R->noted = 1;
        }
    }
}

/* Hedge every request whose hedge time has come (see the top), and return
 * the ms until the next one's (-1: none in flight, or hedging off). */
static long hedge_due(fan *F, double now)
{
    int ms = F->cfg->hedge_ms;
    if (ms <= 0)
        return -1;
    if (F->hcur <= F->tail)
        F->hcur = F->tail + 1;
    for (; F->hcur <= F->next; F->hcur++) {
        slot *s = &F->slots[F->hcur % SLOTS];
        if (s->fid != F->hcur)
            continue; /* answered already */
        double at = s->t0 + ms / 1000.0;
        if (at > now)
            return (long)ceil((at - now) * 1000.0);
        size_t row = (size_t)(s->fid % SLOTS) * (size_t)F->nshard;
        for (int i = 0; i < F->nshard; i++) {
            size_t idx = row + (size_t)i;
            if (F->state[idx] != PART_WAIT || F->hedge[idx] >= 0 || F->owner[idx] < 0)
                continue;
            int to = dispatch(F, s, i, F->owner[idx]);
            F->hedge[idx] = (int16_t)to;
            F->hedged += to >= 0;
        }
    }
    return -1;
}

/* Answer every request whose time is up, oldest first. */
static void expire(fan *F, double now)
{
    while (F->tail < F->next) {
        slot *s = &F->slots[(F->tail + 1) % SLOTS];
        if (s->fid == F->tail + 1) {
            if (s->deadline > now)
                return;
            finish(F, s);
        }
        F->tail++;
    }
}

/* 1: every shard has a ready replica; 0: not yet (*missing: the first
 * shard without); -1: every replica of shard *missing is unusable. */
static int all_shards_ready(const fan *F, int *missing)
{
    int ret = 1;
    for (int sh = F->nshard - 1; sh >= 0; sh--) {
        int ok = 0, bad = 1;
        for (int r = 0; r < F->nrep; r++)
            if (F->rep[r].shard == sh) {
                ok |= F->rep[r].ready;
                bad &= F->rep[r].bad;
            }
        if (bad) {
            *missing = sh;
            return -1;
        }
        if (!ok) {
            *missing = sh;
            ret = 0;
        }
    }
    return ret;
}

static void fan_destroy(fan *F)
{
    for (uint64_t i = 0; F->slots && i < SLOTS; i++) {
        slot *s = &F->slots[i];
        if (s->fid) {
            server_req_free(&s->env);
            free_merges(s);
            free(s->req);
        }
    }
    for (int r = 0; F->rep && r < F->nrep; r++) {
        if (F->rep[r].sock) {
            zmq_socket_monitor(F->rep[r].sock, NULL, 0);
            zmq_close(F->rep[r].sock);
        }
        if (F->rep[r].mon)
            zmq_close(F->rep[r].mon);
    }
    if (F->ctx)
        zmq_ctx_term(F->ctx);
    server_destroy(&F->srv);
    msgpack_unpacked_destroy(&F->up);
    frame_out_free(&F->fo);
    free(F->slots);
    free(F->state);
    free(F->owner);
    free(F->hedge);
    free(F->rep);
    free(F->ref);
}

int fanout_run(const fanout_cfg *cfg, hf_err *e)
{
    static char *ep[FANOUT_MAX_REPLICAS];
    static int shard_of[FANOUT_MAX_REPLICAS];
    char *buf = NULL;
    fan F;
    memset(&F, 0, sizeof F);
    F.cfg = cfg;
    msgpack_unpacked_init(&F.up);
    frame_out_init(&F.fo);
    int rc = fanout_parse_spec(cfg->spec, &buf, ep, shard_of, &F.nrep, &F.nshard, e);
    if (rc) {
        free(buf);
        fan_destroy(&F);
        return rc;
    }
    F.rep = calloc((size_t)F.nrep, sizeof *F.rep);
    F.ref = calloc((size_t)F.nshard, sizeof *F.ref);
    F.slots = calloc(SLOTS, sizeof *F.slots);
    F.state = calloc((size_t)SLOTS * (size_t)F.nshard, 1);
    F.owner = calloc((size_t)SLOTS * (size_t)F.nshard, sizeof *F.owner);
    F.hedge = calloc((size_t)SLOTS * (size_t)F.nshard, sizeof *F.hedge);
    F.ctx = zmq_ctx_new();
    if (!F.rep || !F.ref || !F.slots || !F.state || !F.owner || !F.hedge || !F.ctx)
        rc = hf_err_set(e, HF_ENOMEM, "out of memory");
    for (int r = 0; rc == 0 && r < F.nrep; r++) {
        F.rep[r].ep = ep[r];
        F.rep[r].shard = shard_of[r];
        rc = open_replica(&F, r, e);
    }
    /* wait for one matching replica of every shard before taking clients */
    double t0 = now_seconds();
    int missing = 0;
    zmq_pollitem_t *items = calloc((size_t)(2 * F.nrep + 1), sizeof *items);
    if (rc == 0 && !items)
        rc = hf_err_set(e, HF_ENOMEM, "out of memory");
    for (int r = 0; rc == 0 && r < F.nrep; r++) {
        items[2 * r] = (zmq_pollitem_t){F.rep[r].sock, 0, ZMQ_POLLIN, 0};
        items[2 * r + 1] = (zmq_pollitem_t){F.rep[r].mon, 0, ZMQ_POLLIN, 0};
    }
    int ready;
    while (rc == 0 && (ready = all_shards_ready(&F, &missing)) != 1) {
        if (ready < 0)
            rc = hf_err_set(e, HF_EDATA, "shard %d: no usable replica (see above)", missing);
        else if (*cfg->stop)
            rc = hf_err_set(e, HF_EIO, "stopped while waiting for the shards");
        else if (now_seconds() - t0 > cfg->start_wait_ms / 1000.0)
            rc = hf_err_set(e, HF_EIO,
                            "shard %d: no usable replica answered within %d ms (is it served, "
                            "with external ids?)",
                            missing, cfg->start_wait_ms);
        else if (zmq_poll(items, 2 * F.nrep, 100) > 0)
            for (int r = 0; r < F.nrep; r++) {
                drain_monitor(&F, r);
                drain_replica(&F, r);
            }
    }
    if (rc == 0)
        rc = server_open_curve(cfg->serve_ep, cfg->max_frame, cfg->curve, &F.srv, e);
    if (rc) {
        free(items);
        free(buf);
        fan_destroy(&F);
        return rc;
    }
    items[2 * F.nrep] = (zmq_pollitem_t){server_zsock(F.srv), 0, ZMQ_POLLIN, 0};
    double tstart = now_seconds(), t_stop = 0, t_last = tstart;
    serve_stats_init(&F.st, tstart);
    fprintf(stderr,
            "query: fan-out serving %d shards (%d replicas, %llu vectors, dim %llu) on %s\n",
            F.nshard, F.nrep, (unsigned long long)F.six.count, (unsigned long long)F.six.dim,
            cfg->serve_ep);
    for (;;) {
        double now = now_seconds();
        int stopping = *cfg->stop;
        if (stopping && t_stop == 0)
            t_stop = now;
        if (stopping && F.tail == F.next &&
            (now - t_last > 0.2 || now - t_stop > 10.0 + cfg->timeout_ms / 1000.0))
            break;
        int full = F.slots[(F.next + 1) % SLOTS].fid != 0;
        items[2 * F.nrep].events = full ? 0 : ZMQ_POLLIN;
        long wait = 100, hw = hedge_due(&F, now);
        if (hw >= 0 && hw < wait)
            wait = hw;
        if (F.tail < F.next) {
            for (uint64_t fid = F.tail + 1; fid <= F.next; fid++) {
                const slot *s = &F.slots[fid % SLOTS];
                if (s->fid == fid) {
                    long ms = (long)ceil((s->deadline - now) * 1000.0);
                    wait = ms < 0 ? 0 : ms < wait ? ms : wait;
                    break;
                }
            }
        }
        int n = zmq_poll(items, 2 * F.nrep + 1, wait);
        if (n < 0 && errno != EINTR) {
            rc = hf_err_set(e, HF_EIO, "poll: %s", zmq_strerror(errno));
            break;
        }
        for (int r = 0; n > 0 && r < F.nrep; r++) {
            if (items[2 * r + 1].revents)
                drain_monitor(&F, r);
            if (items[2 * r].revents)
                drain_replica(&F, r);
        }
        if (n > 0 && items[2 * F.nrep].revents) {
            t_last = now_seconds();
            rc = serve_clients(&F, e);
            if (rc)
                break;
        }
        expire(&F, now_seconds());
    }
    fprintf(stderr,
            "query: fan-out answered %llu queries (%llu partial, %llu errors) in %.1f s; %llu "
            "requests moved to another replica, %llu late answers dropped, %llu parts "
            "hedged\n",
            (unsigned long long)F.answered, (unsigned long long)F.partial,
            (unsigned long long)F.errors, now_seconds() - tstart, (unsigned long long)F.resent,
            (unsigned long long)F.late, (unsigned long long)F.hedged);
    if (server_refused(F.srv))
        fprintf(stderr, "query: CURVE: refused %llu connection attempts (keys not allowed)\n",
                (unsigned long long)server_refused(F.srv));
    free(items);
    free(buf);
    fan_destroy(&F);
    return rc;
}
