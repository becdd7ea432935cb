/*
 * serve.h - request/answer frames over ZeroMQ.
 *
 * Server: a ROUTER socket bound to an endpoint. A request is a ZeroMQ
 * message whose last part is one frame; the parts before it (the routing
 * envelope, with REQ's empty delimiter when present) are kept and sent back
 * in front of the answer, so REQ, DEALER and ROUTER clients all work.
 * Client: a DEALER socket that sends the same empty delimiter REQ would, so
 * it can keep many requests in flight and match answers by qid.
 *
 * The _curve variants take CURVE keys (curve.h; NULL or empty: plain TCP):
 * a server then accepts only clients whose public key is on its allow-list.
 */
#ifndef HF_SERVE_H
#define HF_SERVE_H

#include <stddef.h>

#include "curve.h"
#include "err.h"
#include "frame.h"

typedef struct server server;
typedef struct server_req server_req;

int server_open(const char *endpoint, size_t max_frame, server **out, hf_err *e);
int server_open_curve(const char *endpoint, size_t max_frame, const curve_cfg *cc, server **out,
                      hf_err *e);
void server_destroy(server **s);
/* Wait up to timeout_ms for a request. 0: *req and *f are valid until the
 * next call. HF_EOF: nothing arrived in time. HF_EDATA: a request arrived
 * but its payload is not a frame (answer it with an error frame; *req is
 * valid). Other codes: the socket failed. */
int server_recv(server *s, int timeout_ms, server_req **req, frame_in *f, hf_err *e);
/* Answer a request: the one last received, or one taken with server_take. */
int server_reply(server *s, server_req *req, const frame_out *fo, hf_err *e);
/* Keep the request last received past the next server_recv: its envelope
 * moves into a new server_req the caller owns and frees with
 * server_req_free (which sets the pointer to NULL). NULL: out of memory. */
server_req *server_take(server *s);
void server_req_free(server_req **req);
/* The ROUTER socket, for zmq_poll next to other sockets. */
void *server_zsock(server *s);
/* Clients CURVE's ZAP handler refused so far (0 without CURVE). */
uint64_t server_refused(const server *s);

typedef struct client client;
int client_open(const char *endpoint, size_t max_frame, client **out, hf_err *e);
int client_open_curve(const char *endpoint, size_t max_frame, const curve_cfg *cc, client **out,
                      hf_err *e);
void client_destroy(client **c);
int client_send(client *c, const frame_out *fo, hf_err *e);
/* Wait up to timeout_ms (-1: forever) for an answer; HF_EOF on time-out. */
int client_recv(client *c, int timeout_ms, frame_in *f, hf_err *e);

#endif
