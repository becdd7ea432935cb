/*
 * serve.c - see serve.h.
 */
#include "serve.h"
#include "curve.h"
#include "frame_scan.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define MAX_PARTS 16
#define CLIENT_HANDSHAKE_MS 60000 /* as long as a client waits for an answer */

struct server_req {
    zmq_msg_t parts[MAX_PARTS];
    int n; /* envelope parts + payload */
};

struct server {
    void *ctx, *sock;
    curve_zap *zap; /* CURVE's ZAP handler, NULL without CURVE */
    server_req req;
    msgpack_unpacked result;
    uint64_t count;
};

static void req_clear(server_req *r)
{
    for (int i = 0; i < r->n; i++)
        zmq_msg_close(&r->parts[i]);
    r->n = 0;
}

int server_open(const char *endpoint, size_t max_frame, server **out, hf_err *e)
{
    return server_open_curve(endpoint, max_frame, NULL, out, e);
}

int server_open_curve(const char *endpoint, size_t max_frame, const curve_cfg *cc, server **out,
                      hf_err *e)
{
    *out = NULL;
    server *s = calloc(1, sizeof *s);
    if (!s)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    msgpack_unpacked_init(&s->result);
    const char *addr = endpoint[0] == '@' ? endpoint + 1 : endpoint;
    s->ctx = zmq_ctx_new();
    s->sock = s->ctx ? zmq_socket(s->ctx, ZMQ_ROUTER) : NULL;
    if (!s->sock) {
        server_destroy(&s);
        return hf_err_set(e, HF_EOPEN, "%s: cannot create socket", endpoint);
    }
    int64_t maxsz = (int64_t)(max_frame ? max_frame : FRAME_DEFAULT_MAX_BYTES);
    int zero = 0, hwm = 100000;
    zmq_setsockopt(s->sock, ZMQ_MAXMSGSIZE, &maxsz, sizeof maxsz);
    zmq_setsockopt(s->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    int rc = curve_cfg_server(cc) ? curve_server_apply(s->ctx, s->sock, cc, &s->zap, e) : 0;
    if (rc) {
        server_destroy(&s);
        return rc;
    }
    if (zmq_bind(s->sock, addr) != 0) {
        int err = errno;
        server_destroy(&s);
        return hf_err_set(e, HF_EOPEN, "%s: cannot bind: %s", endpoint, zmq_strerror(err));
    }
    *out = s;
    return 0;
}

void server_destroy(server **sp)
{
    if (!sp || !*sp)
        return;
    server *s = *sp;
    req_clear(&s->req);
    msgpack_unpacked_destroy(&s->result);
    if (s->sock) {
        /* answers still queued must go out (the last ones of a drain after
         * SIGTERM), but a stuck peer may not hold the exit up for long */
        int linger = 2000;
        zmq_setsockopt(s->sock, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(s->sock);
    }
    curve_zap_stop(&s->zap);
    if (s->ctx)
        zmq_ctx_term(s->ctx);
    free(s);
    *sp = NULL;
}

int server_recv(server *s, int timeout_ms, server_req **req, frame_in *f, hf_err *e)
{
    req_clear(&s->req);
    *req = NULL;
    zmq_pollitem_t item = {s->sock, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&item, 1, timeout_ms);
    if (rc < 0)
        return errno == EINTR ? HF_EOF : hf_err_set(e, HF_EIO, "poll: %s", zmq_strerror(errno));
    if (rc == 0)
        return HF_EOF;
    server_req *r = &s->req;
    int more = 1;
    while (more) {
        zmq_msg_t tmp;
        zmq_msg_init(&tmp);
        if (zmq_msg_recv(&tmp, s->sock, 0) < 0) {
            zmq_msg_close(&tmp);
            req_clear(r);
            return errno == EINTR ? HF_EOF
                                  : hf_err_set(e, HF_EIO, "receive: %s", zmq_strerror(errno));
        }
        more = zmq_msg_more(&tmp);
        if (r->n < MAX_PARTS) {
            r->parts[r->n++] = tmp;
        } else {
            zmq_msg_close(&tmp); /* over-long envelopes are dropped below */
        }
    }
    *req = r;
    s->count++;
    if (r->n < 2)
        return hf_err_set(e, HF_EDATA, "request without a routing envelope");
    zmq_msg_t *payload = &r->parts[r->n - 1];
    size_t off = 0, size = zmq_msg_size(payload);
    if (!frame_scan_is_one(zmq_msg_data(payload), size))
        return hf_err_set(e, HF_EDATA, "request %llu is not exactly one MessagePack frame",
                          (unsigned long long)s->count);
    msgpack_unpack_return ur = msgpack_unpack_next(&s->result, zmq_msg_data(payload), size, &off);
    if (ur != MSGPACK_UNPACK_SUCCESS || off != size)
        return hf_err_set(e, HF_EDATA, "request %llu is not exactly one MessagePack frame",
                          (unsigned long long)s->count);
    if (frame_in_wrap(f, &s->result.data, s->count, e) != 0)
        return hf_err_prefix(e, "request %llu", (unsigned long long)s->count);
    return 0;
}

void *server_zsock(server *s)
{
    return s->sock;
}

uint64_t server_refused(const server *s)
{
    return curve_zap_refused(s->zap);
}

server_req *server_take(server *s)
{
    server_req *r = malloc(sizeof *r);
    if (!r)
        return NULL;
    *r = s->req; /* the parts move: the server's copy forgets them */
    s->req.n = 0;
    return r;
}

void server_req_free(server_req **rp)
{
    if (!rp || !*rp)
        return;
    req_clear(*rp);
    free(*rp);
    *rp = NULL;
}

int server_reply(server *s, server_req *r, const frame_out *fo, hf_err *e)
{
    for (int i = 0; i < r->n - 1; i++) {
        zmq_msg_t copy;
        zmq_msg_init(&copy);
        zmq_msg_copy(&copy, &r->parts[i]);
        if (zmq_msg_send(&copy, s->sock, ZMQ_SNDMORE) < 0) {
            zmq_msg_close(&copy);
            return hf_err_set(e, HF_EIO, "send: %s", zmq_strerror(errno));
        }
    }
    /* a vanished client makes ROUTER drop the answer silently: fine */
    if (zmq_send(s->sock, fo->sb.data, fo->sb.size, 0) < 0)
        return hf_err_set(e, HF_EIO, "send: %s", zmq_strerror(errno));
    return 0;
}

struct client {
    void *ctx, *sock;
    zmq_msg_t msg;
    int live;
    msgpack_unpacked result;
    uint64_t count;
};

int client_open(const char *endpoint, size_t max_frame, client **out, hf_err *e)
{
    return client_open_curve(endpoint, max_frame, NULL, out, e);
}

int client_open_curve(const char *endpoint, size_t max_frame, const curve_cfg *cc, client **out,
                      hf_err *e)
{
    *out = NULL;
    client *c = calloc(1, sizeof *c);
    if (!c)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    msgpack_unpacked_init(&c->result);
    const char *addr = endpoint[0] == '>' ? endpoint + 1 : endpoint;
    c->ctx = zmq_ctx_new();
    c->sock = c->ctx ? zmq_socket(c->ctx, ZMQ_DEALER) : NULL;
    if (!c->sock) {
        client_destroy(&c);
        return hf_err_set(e, HF_EOPEN, "%s: cannot create socket", endpoint);
    }
    int64_t maxsz = (int64_t)(max_frame ? max_frame : FRAME_DEFAULT_MAX_BYTES);
    int zero = 0;
    zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &maxsz, sizeof maxsz);
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
    int rc = curve_cfg_client(cc) ? curve_client_apply(c->sock, cc, e) : 0;
    /* with CURVE, the first handshake's outcome: a refused key fails here
     * in one line rather than as a request never answered */
    if (rc == 0 && curve_cfg_client(cc))
        rc = curve_client_connect(c->ctx, c->sock, addr, CLIENT_HANDSHAKE_MS, e);
    if (rc) {
        client_destroy(&c);
        return rc;
    }
    if (!curve_cfg_client(cc) && zmq_connect(c->sock, addr) != 0) {
        int err = errno;
        client_destroy(&c);
        return hf_err_set(e, HF_EOPEN, "%s: cannot connect: %s", endpoint, zmq_strerror(err));
    }
    *out = c;
    return 0;
}

void client_destroy(client **cp)
{
    if (!cp || !*cp)
        return;
    client *c = *cp;
    if (c->live)
        zmq_msg_close(&c->msg);
    msgpack_unpacked_destroy(&c->result);
    if (c->sock)
        zmq_close(c->sock);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    free(c);
    *cp = NULL;
}

int client_send(client *c, const frame_out *fo, hf_err *e)
{
    if (zmq_send(c->sock, "", 0, ZMQ_SNDMORE) < 0 ||
        zmq_send(c->sock, fo->sb.data, fo->sb.size, 0) < 0)
        return hf_err_set(e, HF_EIO, "send: %s", zmq_strerror(errno));
    return 0;
}

int client_recv(client *c, int timeout_ms, frame_in *f, hf_err *e)
{
    zmq_pollitem_t item = {c->sock, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&item, 1, timeout_ms);
    if (rc < 0)
        return hf_err_set(e, HF_EIO, "poll: %s", zmq_strerror(errno));
    if (rc == 0)
        return HF_EOF;
    /* skip the empty delimiter, keep the payload */
    for (;;) {
        if (c->live)
            zmq_msg_close(&c->msg);
        zmq_msg_init(&c->msg);
        c->live = 1;
        if (zmq_msg_recv(&c->msg, c->sock, 0) < 0)
            return hf_err_set(e, HF_EIO, "receive: %s", zmq_strerror(errno));
        if (!zmq_msg_more(&c->msg))
            break;
    }
    c->count++;
    size_t off = 0, size = zmq_msg_size(&c->msg);
    if (!frame_scan_is_one(zmq_msg_data(&c->msg), size) ||
        msgpack_unpack_next(&c->result, zmq_msg_data(&c->msg), size, &off) !=
            MSGPACK_UNPACK_SUCCESS ||
        off != size)
        return hf_err_set(e, HF_EDATA, "answer %llu is not one MessagePack frame",
                          (unsigned long long)c->count);
    return frame_in_wrap(f, &c->result.data, c->count, e);
}
