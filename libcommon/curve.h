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

/* The four options, the same in every filter: CURVE_LONG_OPTIONS are
 * their getopt_long entries, and each code goes to curve_cfg_take. The
 * codes are above every filter's own. */
enum { CURVE_OPT_SECRET = 0x4300, CURVE_OPT_ALLOW, CURVE_OPT_KEY, CURVE_OPT_SERVER };
#define CURVE_LONG_OPTIONS                                                                         \
    {"curve-secret", required_argument, 0, CURVE_OPT_SECRET},                                      \
        {"curve-allow", required_argument, 0, CURVE_OPT_ALLOW},                                    \
        {"curve-key", required_argument, 0, CURVE_OPT_KEY},                                        \
    {                                                                                              \
        "curve-server", required_argument, 0, CURVE_OPT_SERVER                                     \
    }
/* 1 when opt was one of the four (arg taken into c), 0 otherwise. */
int curve_cfg_take(curve_cfg *c, int opt, const char *arg);

/* --help lines for a filter whose streams may be ZeroMQ endpoints. */
#define CURVE_HELP_STREAMS                                                                         \
    "      --curve-secret FILE  a ZeroMQ stream endpoint this filter binds (an output\n"           \
    "                     by default, '@' on an input) is a CURVE server with this\n"              \
    "                     secret key file (pipelines/curve-keygen.sh)\n"                           \
    "      --curve-allow DIR  with it: the public key files of the peers let in (a ZAP\n"          \
    "                     handler refuses every other key; they get no data)\n"                    \
    "      --curve-key FILE   an endpoint it connects to (an input by default, '>' on\n"           \
    "                     an output) is a CURVE client with this secret key file\n"                \
    "      --curve-server FILE  with it: the server's public key file\n"

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
/* Connect sock (a CURVE client, see curve_client_apply) to addr and wait
 * for the first handshake: 0 once the server took our key; HF_EOPEN with a
 * message when it refused it or the handshake failed (a
 * stream writer would otherwise queue frames no one will take, and end as
 * if they had gone), HF_EIO when no handshake came in timeout_ms (-1:
 * wait as long as no server answers). */
int curve_client_connect(void *ctx, void *sock, const char *addr, int timeout_ms, hf_err *e);
/* Clients the handler refused so far. */
uint64_t curve_zap_refused(const curve_zap *z);
void curve_zap_stop(curve_zap **z);

#endif
