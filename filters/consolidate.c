/*
 * consolidate - a live index: applies a stream of update frames (inserts as
 * upserts by external id, true deletes) in order and answers the query
 * frames among them against the index as it stands at that point.
 *
 * Stream mode (the default): update and query frames from stdin (or any
 * endpoint), a results stream on stdout (-r), the index to -o at the end
 * (atomic). A frame that is refused (unknown id, wrong dimension, NaN, a
 * malformed frame) is reported in one line naming it and changes nothing;
 * the stream carries on and the exit status is 65 at the end. A stream that
 * cannot be read on (truncated, corrupt, a frame over the size limit) stops
 * at once with status 65 and writes no -o: what was acknowledged is in the
 * log.
 *
 * Durability (--wal): every accepted update is appended to the log (and
 * fdatasync'ed) before it is applied; -o is the checkpoint, written every
 * --checkpoint-every updates, every --checkpoint-seconds, at the end and on
 * SIGTERM/SIGINT, after which the log is reset. On start the checkpoint (or
 * --index, or an empty index) is loaded and the log replayed over it.
 *
 * Live mode (--serve EP --updates EP): queries (the request/answer frames of
 * query --serve) on one ZeroMQ endpoint, update frames from any number of
 * producers on another; each update is answered {t:"ack", seq} once it is
 * in the log (fdatasync'ed) and applied, or {t:"error", msg} when refused.
 * consolidate --connect EP is the producer: it sends the update frames of
 * its input one at a time and waits for each acknowledgement (query frames
 * in its input are answered in order too, onto -r).
 *
 * Consistency: a readers-writer lock (writer-preferring). The update thread
 * holds it for writing while it applies one frame (and any consolidation
 * pass that frame triggers), the query thread for reading while it answers
 * one query; the acknowledgement is sent after the write lock is released.
 * So a query sees the graph between two whole updates, never during a
 * repair, and a query sent after an acknowledgement of a delete can never
 * return that id. A third thread waits for SIGTERM/SIGINT/SIGHUP (a handler
 * writes to a self-pipe) and checkpoints under the write lock, then exits. In stream mode the one
 * applying thread takes the write lock per frame.
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "channel.h"
#include "cli.h"
#include "progress.h"
#include "qlog.h"
#include "serve.h"
#include "upd_live.h"
#include "upd_wal.h"

static const char *prog = "consolidate";

static void usage(void)
{
    printf("usage: consolidate [options] [UPDATES]\n"
           "Apply a stream of update frames (insert, delete, query) to a live index.\n\n"
           "  -i, --index FILE          start from this index (default: an empty one)\n"
           "      --metric NAME         empty index: l2 (default), ip, cosine, l1\n"
           "  -M N                      empty index: links per node (default 16)\n"
           "      --M0 N                empty index: level-0 links (default 2 M)\n"
           "      --ef-construction N   empty index: insert beam width (default 200)\n"
           "      --seed S              level draws (default 42)\n"
           "  -o, --output FILE         write the index here at the end (atomic); with\n"
           "                            --wal, the checkpoint (loaded on start if present)\n"
           "  -r, --results EP          where answers to query frames go (default -)\n"
           "  -k N                      neighbours per query (default 10)\n"
           "      --ef N                search beam width (default 64)\n"
           "      --repair-every N      a consolidation pass once N deletes are pending\n"
           "                            (default 1: after every delete frame)\n"
           "      --wal FILE            write-ahead log (needs -o)\n"
           "      --checkpoint-every N  checkpoint after N updates (default 0: only at end)\n"
           "      --checkpoint-seconds T  and after T seconds since the last (default 0)\n"
           "      --no-sync             do not fdatasync the log per update\n"
           "      --check               after every update (once no delete is pending) walk\n"
           "                            the whole graph; fail on an unreachable live node\n"
           "                            or an edge to a deleted one\n"
           "      --serve EP            live mode: answer query frames on EP (ZeroMQ)\n"
           "      --updates EP          live mode: take update frames from producers on EP,\n"
           "                            acknowledge each once it is durable and applied\n"
           "      --log FILE            live mode: append every answered query (vector, k,\n"
           "                            ef, time) to FILE, a query log (qlog.h) for\n"
           "                            pipelines/retrain.sh; --log-max BYTES rotates it\n"
           "                            to FILE.1 (default 64 MiB)\n"
           "      --connect EP          producer: send the update (and query) frames of the\n"
           "                            input to a live consolidate, wait for each answer\n"
           "      --curve-secret FILE   --serve and --updates (and a ZeroMQ stream endpoint\n"
           "                            this end binds) require CURVE: this server's secret\n"
           "                            key file (pipelines/curve-keygen.sh)\n"
           "      --curve-allow DIR     with it: the public key files of the clients let in\n"
           "                            (a ZAP handler refuses every other key)\n"
           "      --curve-key FILE      --connect (and a ZeroMQ stream endpoint this end\n"
           "                            connects to: an input by default) as a CURVE client:\n"
           "                            this client's secret key file\n"
           "      --curve-server FILE   with it: the server's public key file\n"
           "      --max-dim N           refuse dimensions above N (default 65536)\n"
           "      --max-frame BYTES     refuse frames larger than this (default 256 MiB)\n"
           "      --max-k N, --max-ef N limits a query frame may ask (1000, 10000)\n"
           "  -h, --help                this text\n\n"
           "Frames: {t:\"header\", schema:\"hnswflow.updates\", v:1, dim, count}, then\n"
           "{t:\"insert\", n, ids: bin u64[n], data: bin f32[n*dim]},\n"
           "{t:\"delete\", n, ids: bin u64[n]}, {t:\"query\", qid, vec, k?, ef?}, then\n"
           "{t:\"end\", count, checksum}. On --serve, {t:\"reload\", path?} replaces the\n"
           "models carried (for the checkpoints) by those of a retrained index file\n"
           "(default --index): {t:\"reloaded\", models}. Answers: {t:\"result\", qid, ids: bin "
           "u64[],\n"
           "dists} or {t:\"error\", qid, msg}. Exit: 0 ok, 64 usage, 65 a refused frame\n"
           "or bad stream, 66 cannot open, 70 internal, 74 I/O.\n");
}

typedef struct opts {
    const char *index, *out, *results, *wal, *in, *serve, *updates, *connect, *log;
    uint64_t log_max;
    uint64_t k, ef, max_k, max_ef, max_dim, max_frame, repair_every;
    uint64_t ckpt_every;
    double ckpt_seconds;
    int sync, check;
    curve_cfg curve; /* --curve-* */
} opts;

typedef struct state {
    pthread_rwlock_t mu;
    upd_live L;
    upd_wal *wal;
    const opts *o;
    uint64_t since_ckpt;
    double t_ckpt;
    int stop_read; /* read end of the self-pipe */
    size_t worst_unreach, worst_bad;
} state;

static void fail_line(const char *where, uint64_t frame, const hf_err *e)
{
    fflush(stdout);
    fprintf(stderr, "%s: %s:frame %llu: %s\n", prog, where, (unsigned long long)frame, e->msg);
}

static int checkpoint(state *s, hf_err *e)
{
    if (!s->o->out)
        return 0;
    int rc = upd_live_save(&s->L, s->o->out, e);
    if (rc == 0 && s->wal)
        rc = upd_wal_reset(s->wal, s->L.seq, e);
    s->since_ckpt = 0;
    s->t_ckpt = now_seconds();
    return rc;
}

/* --check: a full walk after every update once no delete is pending */
static void check_graph(state *s)
{
    if (!s->o->check || !s->L.u || upd_pending(s->L.u))
        return;
    size_t unreach, bad;
    upd_check(s->L.u, &unreach, &bad);
    if (unreach > s->worst_unreach)
        s->worst_unreach = unreach;
    if (bad > s->worst_bad)
        s->worst_bad = bad;
}

/* The write end of the self-pipe the signal handler wakes the checkpoint
 * thread with: the one piece of global state here, written once before any
 * signal can arrive. A handler rather than sigwait because libraries start
 * threads of their own before main (OpenBLAS, the sanitizers) and the
 * kernel may deliver a process signal to any thread that does not block it. */
static int stop_pipe = -1;

static void on_stop_signal(int sig)
{
    unsigned char b = (unsigned char)sig;
    if (write(stop_pipe, &b, 1) < 0) {
        /* nothing to do: the pipe holds a byte already */
    }
}

static void *signal_thread(void *arg)
{
    state *s = arg;
    int fd = s->stop_read;
    unsigned char b = 0;
    while (read(fd, &b, 1) < 0) {
    }
    int sig = b;
    pthread_rwlock_wrlock(&s->mu);
    hf_err e = {0};
    int rc = checkpoint(s, &e);
    if (rc)
        fprintf(stderr, "%s: %s: checkpoint on signal %d failed: %s\n", prog, s->o->out, sig,
                e.msg);
    else
        fprintf(stderr, "%s: signal %d: checkpoint of %llu updates written, stopping\n", prog, sig,
                (unsigned long long)s->L.seq);
    exit(rc ? hf_err_exit_code(rc) : 0);
    return NULL;
}

static int replay_one(const frame_in *f, uint64_t seq, void *arg, hf_err *e)
{
    state *s = arg;
    (void)seq;
    return upd_live_check_apply(&s->L, f, e);
}

/* Load the checkpoint (with --wal, when it exists) or --index, replay the log. */
static void start(state *s)
{
    const opts *o = s->o;
    hf_err e = {0};
    struct stat sb;
    const char *from = o->index;
    if (o->wal && o->out && stat(o->out, &sb) == 0)
        from = o->out;
    if (from && upd_live_load(&s->L, from, o->max_frame, &e))
        cli_fail(prog, from, &e);
    if (!o->wal)
        return;
    uint64_t applied = 0, last = 0;
    hf_err tail = {0};
    if (upd_wal_replay(o->wal, s->L.seq, o->max_frame, replay_one, s, &applied, &last, &tail, &e))
        cli_fail(prog, o->wal, &e);
    if (tail.code)
        fprintf(stderr, "%s: %s:%s (replayed the %llu good records before it, dropped the rest)\n",
                prog, o->wal, tail.msg, (unsigned long long)applied);
    if (applied || tail.code) {
        if (applied)
            fprintf(stderr, "%s: %s: replayed %llu updates (through %llu)\n", prog, o->wal,
                    (unsigned long long)applied, (unsigned long long)last);
        if (checkpoint(s, &e))
            cli_fail(prog, o->out, &e);
    }
    if (upd_wal_open(o->wal, s->L.seq, o->sync, &s->wal, &e))
        cli_fail(prog, o->wal, &e);
}

static int run_stream(state *s)
{
    const opts *o = s->o;
    hf_err e = {0};
    const char *in_name = strcmp(o->in, "-") == 0 ? "stdin" : o->in;
    channel *in = NULL, *res = NULL;
    if (channel_open_in_curve(o->in, o->max_frame, &o->curve, &in, &e))
        cli_fail(prog, in_name, &e);
    frame_in f;
    int rc = channel_recv(in, &f, &e);
    if (rc == HF_EOF)
        hf_err_set(&e, HF_EDATA, "empty stream (no header frame)");
    if (rc == 0 && strcmp(f.type, "header") != 0)
        rc = hf_err_set(&e, HF_EDATA, "expected a header frame, got \"%s\"", f.type);
    if (rc == 0)
        rc = upd_live_header(&s->L, &f, &e);
    if (rc) {
        fail_line(in_name, channel_frames(in) ? channel_frames(in) : 1, &e);
        exit(hf_err_exit_code(rc));
    }
    if (channel_open_out_curve(o->results, &o->curve, &res, &e))
        cli_fail(prog, o->results, &e);
    if (upd_live_results_header(res, metric_name(s->L.p.metric), o->k, &e))
        cli_fail(prog, o->results, &e);
    frame_out fo;
    frame_out_init(&fo);
    uint64_t frames = 0, nq = 0, rejected = 0, ins = 0, del = 0;
    double t_ins = 0, t_del = 0, t_q = 0, t0 = now_seconds();
    int ended = 0;
    s->t_ckpt = t0;
    while (!ended) {
        rc = channel_recv(in, &f, &e);
        if (rc == HF_EOF)
            rc = hf_err_set(&e, HF_EDATA, "truncated stream (no end frame)");
        if (rc) {
            fail_line(in_name, channel_frames(in) + 1, &e);
            exit(hf_err_exit_code(rc));
        }
        pthread_rwlock_wrlock(&s->mu);
        if (strcmp(f.type, "end") == 0) {
            uint64_t cnt;
            if (frame_get_u64(&f, "count", &cnt, NULL) || cnt != frames) {
                hf_err_set(&e, HF_EDATA, "end frame count does not match the %llu frames carried",
                           (unsigned long long)frames);
                fail_line(in_name, f.index, &e);
                exit(65);
            }
            ended = 1;
        } else if (strcmp(f.type, "header") == 0) {
            hf_err_set(&e, HF_EDATA, "second header inside a stream");
            fail_line(in_name, f.index, &e);
            exit(65);
        } else if (upd_live_is_update(&f)) {
            frames++;
            double ta = now_seconds();
            if (upd_live_check(&s->L, &f, &e) != 0) {
                fail_line(in_name, f.index, &e);
                rejected++;
            } else {
                int insert = s->L.op_insert;
                size_t n = s->L.op_n;
                if (s->wal && upd_wal_append(s->wal, s->L.seq + 1, &f, &e))
                    cli_fail(prog, o->wal, &e);
                if (upd_live_apply(&s->L, &e))
                    cli_fail(prog, in_name, &e);
                double dt = now_seconds() - ta;
                if (insert) {
                    t_ins += dt;
                    ins += n;
                } else {
                    t_del += dt;
                    del += n;
                }
                check_graph(s);
                s->since_ckpt++;
                if ((o->ckpt_every && s->since_ckpt >= o->ckpt_every) ||
                    (o->ckpt_seconds > 0 && now_seconds() - s->t_ckpt >= o->ckpt_seconds)) {
                    if (checkpoint(s, &e))
                        cli_fail(prog, o->out, &e);
                }
            }
        } else if (strcmp(f.type, "query") == 0) {
            frames++;
            double ta = now_seconds();
            upd_live_query(&s->L, &f, o->k, o->ef, o->max_k, o->max_ef, &fo);
            t_q += now_seconds() - ta;
            nq++;
            /* with a log, an answer also acknowledges every update before it:
             * it must reach the reader now */
            if (channel_send(res, &fo, &e) || (s->wal && channel_flush(res, &e)))
                cli_fail(prog, o->results, &e);
        } else {
            frames++; /* other frame types are not ours: skipped */
        }
        pthread_rwlock_unlock(&s->mu);
    }
    pthread_rwlock_wrlock(&s->mu);
    if (channel_send_end(res, nq, &e) || channel_commit(res, &e))
        cli_fail(prog, o->results, &e);
    double ta = now_seconds();
    if (s->L.u && upd_consolidate(s->L.u, &e))
        cli_fail(prog, in_name, &e);
    t_del += now_seconds() - ta;
    check_graph(s);
    if (checkpoint(s, &e))
        cli_fail(prog, o->out, &e);
    const upd_stats *st = s->L.u ? upd_get_stats(s->L.u) : NULL;
    fprintf(
        stderr,
        "consolidate: %llu inserts (%.0f/s), %llu deletes (%.0f/s incl. repair), %llu queries "
        "(%.0f QPS), %llu passes (%llu lists repaired, %llu full walks), %zu live, %llu refused, "
        "%.2f s "
        "(updates %.2f s, queries %.2f s)",
        (unsigned long long)ins, t_ins > 0 ? ins / t_ins : 0.0, (unsigned long long)del,
        t_del > 0 ? del / t_del : 0.0, (unsigned long long)nq, t_q > 0 ? nq / t_q : 0.0,
        (unsigned long long)(st ? st->passes : 0),
        (unsigned long long)(st ? st->repaired_lists : 0), (unsigned long long)(st ? st->walks : 0),
        s->L.u ? upd_nlive(s->L.u) : (size_t)0, (unsigned long long)rejected, now_seconds() - t0,
        t_ins + t_del, t_q);
    if (s->L.u)
        fprintf(stderr, "; graph memory %.1f MiB (+%.1f MiB ids and slot state)",
                hnsw_memory_bytes(upd_graph(s->L.u)) / 1048576.0,
                upd_extra_bytes(s->L.u) / 1048576.0);
    if (o->check)
        fprintf(stderr, "; check after every update: max %zu unreachable, max %zu edges to deleted",
                s->worst_unreach, s->worst_bad);
    fprintf(stderr, "\n");
    frame_out_free(&fo);
    channel_destroy(&in);
    channel_destroy(&res);
    int bad_check = o->check && (s->worst_unreach || s->worst_bad);
    pthread_rwlock_unlock(&s->mu);
    if (bad_check)
        return 70;
    return rejected ? 65 : 0;
}

/* ---- live mode ---- */

static void reply_error(server *srv, server_req *req, frame_out *fo, const char *msg)
{
    hf_err e;
    frame_begin(fo, "error", 1);
    frame_put_str(fo, "msg", msg);
    server_reply(srv, req, fo, &e);
}

/* info and query requests, under the read lock. The live index keeps one
 * searcher and one set of answer buffers, so only the query thread reads
 * shared; the update thread answers the queries producers send under the
 * write lock (exclusive). */
static int answer_read(state *s, server *srv, server_req *req, const frame_in *f, frame_out *fo,
                       int exclusive)
{
    hf_err e;
    int rc = 1;
    if (exclusive)
        pthread_rwlock_wrlock(&s->mu);
    else
        pthread_rwlock_rdlock(&s->mu);
    if (strcmp(f->type, "info") == 0) {
        frame_begin(fo, "info", 4);
        frame_put_u64(fo, "dim", s->L.dim);
        frame_put_str(fo, "metric", metric_name(s->L.p.metric));
        frame_put_u64(fo, "count", s->L.u ? upd_nlive(s->L.u) : 0);
        frame_put_str(fo, "ids", "u64");
    } else {
        rc = upd_live_query(&s->L, f, s->o->k, s->o->ef, s->o->max_k, s->o->max_ef, fo);
    }
    pthread_rwlock_unlock(&s->mu);
    server_reply(srv, req, fo, &e);
    return rc;
}

typedef struct qthread {
    state *s;
    server *srv;
    uint64_t served;
    qlog *log; /* --log, NULL: none (or it failed) */
} qthread;

/* Log an answered query. */
static void log_query(qthread *q, const frame_in *f)
{
    const void *vec;
    size_t len;
    uint64_t qid = 0, k = q->s->o->k, ef = q->s->o->ef;
    if (!q->log || frame_get_bin(f, "vec", &vec, &len, NULL) != 0 ||
        len != q->s->L.dim * sizeof(float))
        return;
    frame_get_u64(f, "qid", &qid, NULL);
    frame_get_u64(f, "k", &k, NULL);
    frame_get_u64(f, "ef", &ef, NULL);
    hf_err e;
    if (qlog_append(q->log, qid, vec, k, ef, 0, &e)) {
        fprintf(stderr, "%s: %s: %s; query logging stops\n", prog, q->s->o->log, e.msg);
        qlog_close(&q->log);
    }
}

/* {t:"reload", path?}: the models of a retrained index file (default
 * --index) replace the carried ones, under the write lock. */
static void answer_reload(qthread *q, server_req *req, const frame_in *f, frame_out *fo)
{
    char path[4096];
    hf_err e = {0};
    int rc = frame_get_str(f, "path", path, sizeof path, NULL);
    if (rc == HF_EOF && q->s->o->index)
        snprintf(path, sizeof path, "%s", q->s->o->index);
    else if (rc)
        return reply_error(q->srv, req, fo, "reload: a \"path\" string is needed");
    size_t taken = 0;
    pthread_rwlock_wrlock(&q->s->mu);
    rc = upd_live_take_models(&q->s->L, path, q->s->o->max_frame, &taken, &e);
    pthread_rwlock_unlock(&q->s->mu);
    if (rc) {
        char msg[700];
        snprintf(msg, sizeof msg, "reload %s: %s", path, e.msg);
        fprintf(stderr, "%s: %s; the models carried stay\n", prog, msg);
        return reply_error(q->srv, req, fo, msg);
    }
    fprintf(stderr, "%s: reload: %zu model frames taken from %s\n", prog, taken, path);
    frame_begin(fo, "reloaded", 1);
    frame_put_u64(fo, "models", taken);
    server_reply(q->srv, req, fo, &e);
}

static void *query_thread(void *arg)
{
    qthread *q = arg;
    frame_out fo;
    frame_out_init(&fo);
    char msg[600];
    for (;;) { /* until SIGTERM: the signal thread checkpoints and exits */
        server_req *req;
        frame_in f;
        hf_err e = {0};
        int rc = server_recv(q->srv, 100, &req, &f, &e);
        if (rc == HF_EOF)
            continue;
        if (rc == HF_EDATA) {
            reply_error(q->srv, req, &fo, e.msg);
            continue;
        }
        if (rc)
            break;
        if (strcmp(f.type, "query") == 0 || strcmp(f.type, "info") == 0) {
            if (answer_read(q->s, q->srv, req, &f, &fo, 0) == 0)
                log_query(q, &f);
            q->served++;
        } else if (strcmp(f.type, "reload") == 0) {
            answer_reload(q, req, &f, &fo);
        } else {
            snprintf(msg, sizeof msg, "unexpected frame type \"%s\" (expected \"query\")", f.type);
            reply_error(q->srv, req, &fo, msg);
        }
    }
    frame_out_free(&fo);
    return NULL;
}

static int run_live(state *s)
{
    const opts *o = s->o;
    hf_err e = {0};
    server *qs = NULL, *us = NULL;
    if (server_open_curve(o->serve, o->max_frame, &o->curve, &qs, &e))
        cli_fail(prog, o->serve, &e);
    if (server_open_curve(o->updates, o->max_frame, &o->curve, &us, &e))
        cli_fail(prog, o->updates, &e);
    qthread q = {.s = s, .srv = qs};
    if (o->log && qlog_open(o->log, s->L.dim, s->L.p.metric, o->log_max, &q.log, &e))
        cli_fail(prog, o->log, &e);
    pthread_t tid;
    if (pthread_create(&tid, NULL, query_thread, &q) != 0) {
        hf_err_set(&e, HF_EINTERNAL, "cannot start the query thread");
        cli_fail(prog, o->serve, &e);
    }
    fprintf(stderr, "consolidate: live, %zu vectors; queries on %s, updates on %s\n",
            s->L.u ? upd_nlive(s->L.u) : (size_t)0, o->serve, o->updates);
    frame_out fo;
    frame_out_init(&fo);
    char msg[700];
    uint64_t refused = 0;
    for (;;) {
        server_req *req;
        frame_in f;
        int rc = server_recv(us, 100, &req, &f, &e);
        if (rc == HF_EOF) {
            pthread_rwlock_wrlock(&s->mu);
            if (o->ckpt_seconds > 0 && s->since_ckpt &&
                now_seconds() - s->t_ckpt >= o->ckpt_seconds && checkpoint(s, &e))
                cli_fail(prog, o->out, &e);
            pthread_rwlock_unlock(&s->mu);
            continue;
        }
        if (rc == HF_EDATA) { /* not a frame: answered, nothing else changes */
            fprintf(stderr, "%s: %s:%s\n", prog, o->updates, e.msg);
            reply_error(us, req, &fo, e.msg);
            refused++;
            continue;
        }
        if (rc)
            cli_fail(prog, o->updates, &e);
        if (strcmp(f.type, "query") == 0 || strcmp(f.type, "info") == 0) {
            answer_read(s, us, req, &f, &fo, 1);
            continue;
        }
        if (!upd_live_is_update(&f)) {
            snprintf(msg, sizeof msg, "unexpected frame type \"%s\" (expected insert or delete)",
                     f.type);
            reply_error(us, req, &fo, msg);
            continue;
        }
        pthread_rwlock_wrlock(&s->mu);
        int ok = upd_live_check(&s->L, &f, &e) == 0;
        if (ok) {
            if (s->wal && upd_wal_append(s->wal, s->L.seq + 1, &f, &e))
                cli_fail(prog, o->wal, &e);
            if (upd_live_apply(&s->L, &e))
                cli_fail(prog, o->updates, &e);
            s->since_ckpt++;
            if (o->ckpt_every && s->since_ckpt >= o->ckpt_every && checkpoint(s, &e))
                cli_fail(prog, o->out, &e);
        }
        uint64_t seq = s->L.seq;
        pthread_rwlock_unlock(&s->mu);
        if (ok) {
            frame_begin(&fo, "ack", 1);
            frame_put_u64(&fo, "seq", seq);
            server_reply(us, req, &fo, &e);
        } else {
            snprintf(msg, sizeof msg, "request %llu: %s", (unsigned long long)f.index, e.msg);
            fprintf(stderr, "%s: %s:%s\n", prog, o->updates, msg);
            reply_error(us, req, &fo, e.msg);
            refused++;
        }
    }
    return 0; /* not reached: SIGTERM checkpoints and exits */
}

/* Producer: forward the input's frames, one at a time, and wait for each answer. */
static int run_connect(const opts *o)
{
    hf_err e = {0};
    const char *in_name = strcmp(o->in, "-") == 0 ? "stdin" : o->in;
    channel *in = NULL, *res = NULL;
    if (channel_open_in_curve(o->in, o->max_frame, &o->curve, &in, &e))
        cli_fail(prog, in_name, &e);
    frame_in f;
    upd_live probe;
    hnsw_params p = {0};
    upd_live_init(&probe, &p, o->max_dim, 1);
    int rc = channel_recv(in, &f, &e);
    if (rc == HF_EOF)
        rc = hf_err_set(&e, HF_EDATA, "empty stream (no header frame)");
    if (rc == 0 && strcmp(f.type, "header") != 0)
        rc = hf_err_set(&e, HF_EDATA, "expected a header frame, got \"%s\"", f.type);
    if (rc == 0)
        rc = upd_live_header(&probe, &f, &e);
    if (rc) {
        fail_line(in_name, channel_frames(in) ? channel_frames(in) : 1, &e);
        exit(hf_err_exit_code(rc));
    }
    client *cl = NULL;
    if (client_open_curve(o->connect, o->max_frame, &o->curve, &cl, &e))
        cli_fail(prog, o->connect, &e);
    frame_out fo;
    frame_out_init(&fo);
    frame_in a;
    char metric[16] = "l2";
    frame_begin(&fo, "info", 0);
    if (client_send(cl, &fo, &e) || (rc = client_recv(cl, 60000, &a, &e)) != 0) {
        if (rc == HF_EOF)
            hf_err_set(&e, HF_EIO, "no answer within 60 s");
        cli_fail(prog, o->connect, &e);
    }
    frame_get_str(&a, "metric", metric, sizeof metric, NULL);
    if (channel_open_out_curve(o->results, &o->curve, &res, &e) ||
        upd_live_results_header(res, metric, o->k, &e))
        cli_fail(prog, o->results, &e);
    uint64_t frames = 0, acked = 0, refused = 0, nq = 0;
    double t0 = now_seconds();
    for (;;) {
        rc = channel_recv(in, &f, &e);
        if (rc == HF_EOF)
            rc = hf_err_set(&e, HF_EDATA, "truncated stream (no end frame)");
        if (rc) {
            fail_line(in_name, channel_frames(in) + 1, &e);
            exit(hf_err_exit_code(rc));
        }
        if (strcmp(f.type, "end") == 0)
            break;
        frames++;
        int upd = upd_live_is_update(&f), query = strcmp(f.type, "query") == 0;
        if (!upd && !query)
            continue;
        msgpack_sbuffer_clear(&fo.sb);
        msgpack_pack_object(&fo.pk, *f.map);
        if (client_send(cl, &fo, &e))
            cli_fail(prog, o->connect, &e);
        rc = client_recv(cl, 60000, &a, &e);
        if (rc == HF_EOF)
            hf_err_set(&e, HF_EIO, "no answer within 60 s (frame %llu)",
                       (unsigned long long)f.index);
        if (rc)
            cli_fail(prog, o->connect, &e);
        if (strcmp(a.type, "error") == 0) {
            char m[512] = "";
            frame_get_str(&a, "msg", m, sizeof m, NULL);
            hf_err_set(&e, HF_EDATA, "%s", m);
            fail_line(in_name, f.index, &e);
            refused++;
        } else if (upd) {
            acked++;
        } else {
            if (channel_forward(res, &a, &e) || channel_flush(res, &e))
                cli_fail(prog, o->results, &e);
            nq++;
        }
    }
    if (channel_send_end(res, nq, &e) || channel_commit(res, &e))
        cli_fail(prog, o->results, &e);
    double t = now_seconds() - t0;
    fprintf(stderr,
            "consolidate: %llu updates acknowledged by %s (%.0f/s), %llu queries, "
            "%llu refused\n",
            (unsigned long long)acked, o->connect, t > 0 ? acked / t : 0.0, (unsigned long long)nq,
            (unsigned long long)refused);
    frame_out_free(&fo);
    client_destroy(&cl);
    channel_destroy(&in);
    channel_destroy(&res);
    upd_live_free(&probe);
    return refused ? 65 : 0;
}

int main(int argc, char **argv)
{
    static const struct option lopts[] = {{"index", required_argument, 0, 'i'},
                                          {"metric", required_argument, 0, 1},
                                          {"M0", required_argument, 0, 2},
                                          {"ef-construction", required_argument, 0, 3},
                                          {"seed", required_argument, 0, 4},
                                          {"output", required_argument, 0, 'o'},
                                          {"results", required_argument, 0, 'r'},
                                          {"ef", required_argument, 0, 5},
                                          {"repair-every", required_argument, 0, 6},
                                          {"wal", required_argument, 0, 7},
                                          {"checkpoint-every", required_argument, 0, 8},
                                          {"checkpoint-seconds", required_argument, 0, 9},
                                          {"no-sync", no_argument, 0, 10},
                                          {"check", no_argument, 0, 11},
                                          {"max-dim", required_argument, 0, 12},
                                          {"max-frame", required_argument, 0, 13},
                                          {"max-k", required_argument, 0, 14},
                                          {"max-ef", required_argument, 0, 15},
                                          {"serve", required_argument, 0, 16},
                                          {"updates", required_argument, 0, 17},
                                          {"connect", required_argument, 0, 18},
                                          {"log", required_argument, 0, 40},
                                          {"log-max", required_argument, 0, 41},
                                          CURVE_LONG_OPTIONS,
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    opts o = {.results = "-",
              .in = "-",
              .k = 10,
              .ef = 64,
              .max_k = 1000,
              .max_ef = 10000,
              .repair_every = 1,
              .sync = 1};
    hnsw_params p = {.seed = 42, .metric = METRIC_L2};
    hf_err e = {0};
    int c;
    while ((c = getopt_long(argc, argv, "i:M:o:r:k:h", lopts, NULL)) != -1) {
        switch (c) {
        case 'i': o.index = optarg; break;
        case 1:
            if (metric_parse(optarg, &p.metric, &e))
                cli_usage_error(prog, "%s", e.msg);
            break;
        case 'M': p.M = (uint32_t)cli_u64(prog, "-M", optarg, 2, 1024); break;
        case 2: p.M0 = (uint32_t)cli_u64(prog, "--M0", optarg, 2, 4096); break;
        case 3:
            p.ef_construction = (uint32_t)cli_u64(prog, "--ef-construction", optarg, 1, 100000);
            break;
        case 4: p.seed = cli_u64(prog, "--seed", optarg, 0, UINT64_MAX); break;
        case 'o': o.out = optarg; break;
        case 'r': o.results = optarg; break;
        case 'k': o.k = cli_u64(prog, "-k", optarg, 1, 1 << 24); break;
        case 5: o.ef = cli_u64(prog, "--ef", optarg, 1, 1 << 24); break;
        case 6: o.repair_every = cli_u64(prog, "--repair-every", optarg, 1, UINT32_MAX); break;
        case 7: o.wal = optarg; break;
        case 8: o.ckpt_every = cli_u64(prog, "--checkpoint-every", optarg, 0, UINT64_MAX); break;
        case 9: o.ckpt_seconds = cli_f64(prog, "--checkpoint-seconds", optarg, 0, 1e9); break;
        case 10: o.sync = 0; break;
        case 11: o.check = 1; break;
        case 12: o.max_dim = cli_u64(prog, "--max-dim", optarg, 1, 1 << 24); break;
        case 13: o.max_frame = cli_u64(prog, "--max-frame", optarg, 64, UINT64_MAX); break;
        case 14: o.max_k = cli_u64(prog, "--max-k", optarg, 1, 1 << 24); break;
        case 15: o.max_ef = cli_u64(prog, "--max-ef", optarg, 1, 1 << 24); break;
        case 16: o.serve = optarg; break;
        case 17: o.updates = optarg; break;
        case 18: o.connect = optarg; break;
        case 40: o.log = optarg; break;
        case 41: o.log_max = cli_u64(prog, "--log-max", optarg, 4096, UINT64_MAX); break;
        case 'h': usage(); return 0;
        default:
            if (!curve_cfg_take(&o.curve, c, optarg))
                cli_usage_error(prog, "unknown option");
            break;
        }
    }
    if (argc - optind > 1)
        cli_usage_error(prog, "one update input at most");
    if (optind < argc)
        o.in = argv[optind];
    if (p.M0 && p.M0 < (p.M ? p.M : 16))
        cli_usage_error(prog, "--M0 must be at least M");
    if (o.log && !o.serve)
        cli_usage_error(prog, "--log is for --serve (the queries a live index answers)");
    if (o.wal && !o.out)
        cli_usage_error(prog, "--wal needs -o (the checkpoint it follows)");
    if ((o.ckpt_every || o.ckpt_seconds > 0) && !o.out)
        cli_usage_error(prog, "--checkpoint-every/--checkpoint-seconds need -o");
    if (o.k > o.max_k || o.ef > o.max_ef)
        cli_usage_error(prog, "-k/--ef above --max-k/--max-ef");
    if (!o.serve != !o.updates)
        cli_usage_error(prog, "live mode needs both --serve and --updates");
    if (o.connect && (o.serve || o.wal || o.out || o.index))
        cli_usage_error(prog, "--connect is the producer side: no --serve, --wal, -o or --index");
    {
        int live = o.serve != NULL; /* live mode reads no stream */
        const char *in[1] = {live ? NULL : o.in}, *out[1] = {live ? NULL : o.results};
        if (channel_curve_usage(&o.curve, in, 1, out, 1, live, o.connect != NULL, &e))
            cli_usage_error(prog, "%s", e.msg);
    }
    if (o.connect)
        return run_connect(&o);

    channel_install_signal_cleanup();
    static state s; /* the signal thread holds a pointer until exit */
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    /* a steady query load must not starve the writer */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s.mu, &ra);
    s.o = &o;
    upd_live_init(&s.L, &p, o.max_dim, o.repair_every);
    /* held through start(): a signal's checkpoint waits for the loaded index
     * (a checkpoint of the empty state would overwrite the real one) */
    pthread_rwlock_wrlock(&s.mu);
    /* SIGTERM/SIGINT/SIGHUP: checkpoint, then exit (replacing the channel
     * module's remove-and-die handler; exit() still removes temporaries) */
    int pfd[2];
    if (pipe(pfd) != 0) {
        hf_err_set(&e, HF_EINTERNAL, "cannot create the signal pipe");
        cli_fail(prog, "start", &e);
    }
    s.stop_read = pfd[0];
    stop_pipe = pfd[1];
    pthread_t tid;
    if (pthread_create(&tid, NULL, signal_thread, &s) != 0) {
        hf_err_set(&e, HF_EINTERNAL, "cannot start the signal thread");
        cli_fail(prog, "start", &e);
    }
    pthread_detach(tid);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART; /* reads and polls carry on; the other thread acts */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    start(&s);
    pthread_rwlock_unlock(&s.mu);
    int rc = o.serve ? run_live(&s) : run_stream(&s);
    pthread_rwlock_wrlock(&s.mu);
    upd_wal_close(&s.wal);
    upd_live_free(&s.L);
    return rc;
}
