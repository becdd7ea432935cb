/*
 * curve.h - CURVE encryption and client authentication on ZeroMQ sockets.
 *
 * libzmq does the cryptography (CurveZMQ, RFC 26) and asks a ZAP handler
 * (RFC 27) whether a client that completed the handshake may connect. This
 * module reads the keys, sets the socket options, and runs that ZAP handler:
 * a thread with a REP socket bound to inproc://zeromq.zap.01 in the server
 * socket's context, answering 200 for a client public key found in the
 * allow-list directory and 400 for any other. A refused client gets no
 * connection, hence no answer and no data.
 *
 * Key files use CZMQ's certificate format (zcert), so czmq-made certificates
 * work too: lines `public-key = "<Z85>"` and, in a secret file only,
 * `secret-key = "<Z85>"`. pipelines/curve-keygen.sh writes NAME (public) and
 * NAME.secret (both keys). The allow-list directory holds public files only:
 * a file there carrying a secret key is refused (keys are not shared).
 *
 * Ownership: curve_zap_start hands back a handler owned by the caller, which
 * stops it with curve_zap_stop (sets the pointer to NULL) before it
 * terminates the context.
 */
#ifndef HF_CURVE_H
#define HF_CURVE_H

#include <stdint.h>

#include "err.h"

typedef struct curve_cfg {
    const char *secret; /* server: this server's secret file (--curve-secret) */
    const char *allow;  /* server: directory of allowed client public keys (--curve-allow) */
    const char *key;    /* client: this client's secret file (--curve-key) */
    const char *server; /* client: the server's public file (--curve-server) */
} curve_cfg;

/* 0 when the options come in pairs (secret with allow, key with server);
 * HF_EUSAGE with a message otherwise. */
int curve_cfg_check(const curve_cfg *c, hf_err *e);
int curve_cfg_server(const curve_cfg *c); /* server side asked for */
int curve_cfg_client(const curve_cfg *c); /* client side asked for */

/* Read a key file: the public key always, the secret key when secret is
 * not NULL (then the file must hold one). Keys are 32 bytes. */
int curve_read_file(const char *path, uint8_t public_key[32], uint8_t *secret, hf_err *e);

typedef struct curve_zap curve_zap;

/* Make sock (not bound yet) a CURVE server with c->secret, and start the
 * ZAP handler checking clients against c->allow in ctx. */
int curve_server_apply(void *ctx, void *sock, const curve_cfg *c, curve_zap **zap, hf_err *e);
/* Make sock (not connected yet) a CURVE client with c->key towards c->server. */
int curve_client_apply(void *sock, const curve_cfg *c, hf_err *e);
/* Clients the handler refused so far. */
uint64_t curve_zap_refused(const curve_zap *z);
void curve_zap_stop(curve_zap **z);

#endif
