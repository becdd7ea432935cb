/*
 * serve.h - request/answer frames over ZeroMQ.
 *
 * Server: a ROUTER socket bound to an endpoint. A request is a ZeroMQ
 * message whose last part is one frame; the parts before it (the routing
 * envelope, with REQ's empty delimiter when present) are kept and sent back
 * in front of the answer, so REQ, DEALER and ROUTER clients all work.
 * Client: a DEALER socket that sends the same empty delimiter REQ would, so
 * it can keep many requests in flight and match answers by qid.
 */
#ifndef HF_SERVE_H
#define HF_SERVE_H

#include <stddef.h>

#include "err.h"
#include "frame.h"

typedef struct server server;
typedef struct server_req server_req;

int server_open(const char *endpoint, size_t max_frame, server **out, hf_err *e);
void server_destroy(server **s);
/* Wait up to timeout_ms for a request. 0: *req and *f are valid until the
 * next call. HF_EOF: nothing arrived in time. HF_EDATA: a request arrived
 * but its payload is not a frame (answer it with an error frame; *req is
 * valid). Other codes: the socket failed. */
int server_recv(server *s, int timeout_ms, server_req **req, frame_in *f, hf_err *e);
/* Answer the request last received. */
int server_reply(server *s, server_req *req, const frame_out *fo, hf_err *e);

typedef struct client client;
int client_open(const char *endpoint, size_t max_frame, client **out, hf_err *e);
void client_destroy(client **c);
int client_send(client *c, const frame_out *fo, hf_err *e);
/* Wait up to timeout_ms (-1: forever) for an answer; HF_EOF on time-out. */
int client_recv(client *c, int timeout_ms, frame_in *f, hf_err *e);

#endif
