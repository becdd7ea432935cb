/*
 * curve.c - see curve.h.
 *
 * The ZAP handler thread owns its REP socket from creation (in the caller's
 * thread, before pthread_create, whose memory barrier makes the hand-over
 * safe) to close. It polls with a short time-out and checks a stop flag,
 * rather than relying on context shutdown, so stopping it never discards
 * answers the server socket still has to send while lingering.
 * The allow-list is read once at start and only read afterwards.
 */
#include "curve.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zmq.h>

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_POLL_MS 50
#define ALLOW_MAX 65536

struct curve_zap {
    pthread_t thread;
    int running;
    void *sock;
    uint8_t (*keys)[32];
    size_t n;
    atomic_int stop;
    atomic_uint_fast64_t refused;
};

int curve_cfg_server(const curve_cfg *c)
{
    return c && (c->secret || c->allow);
}

int curve_cfg_client(const curve_cfg *c)
{
    return c && (c->key || c->server);
}

int curve_cfg_take(curve_cfg *c, int opt, const char *arg)
{
    switch (opt) {
    case CURVE_OPT_SECRET: c->secret = arg; return 1;
    case CURVE_OPT_ALLOW: c->allow = arg; return 1;
    case CURVE_OPT_KEY: c->key = arg; return 1;
    case CURVE_OPT_SERVER: c->server = arg; return 1;
    default: return 0;
    }
}

int curve_cfg_check(const curve_cfg *c, hf_err *e)
{
    if (!c)
        return 0;
    if (!c->secret != !c->allow)
        return hf_err_set(e, HF_EUSAGE, "--curve-secret and --curve-allow go together");
    if (!c->key != !c->server)
        return hf_err_set(e, HF_EUSAGE, "--curve-key and --curve-server go together");
    return 0;
}

/* The Z85 text of `name = "..."` on one line of a certificate, or NULL. */
static int find_key(const char *line, const char *name, char out[41])
{
    const char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t n = strlen(name);
    if (strncmp(p, name, n) != 0)
        return 0;
    p += n;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p++ != '=')
        return 0;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p++ != '"')
        return 0;
    const char *q = strchr(p, '"');
    if (!q || q - p != 40)
        return -1;
    memcpy(out, p, 40);
    out[40] = '\0';
    return 1;
}

int curve_read_file(const char *path, uint8_t public_key[32], uint8_t *secret, hf_err *e)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return hf_err_set(e, HF_EOPEN, "%s: cannot open key file: %s", path, strerror(errno));
    char line[512], z[41];
    int have_pub = 0, have_sec = 0, bad = 0;
    unsigned lineno = 0;
    while (fgets(line, sizeof line, fp)) {
        lineno++;
        int r = find_key(line, "public-key", z);
        if (r == 1 && zmq_z85_decode(public_key, z))
            have_pub = 1;
        else if (r != 0)
            bad = bad ? bad : (int)lineno;
        r = find_key(line, "secret-key", z);
        if (r == 1 && (!secret || zmq_z85_decode(secret, z)))
            have_sec = 1;
        else if (r != 0)
            bad = bad ? bad : (int)lineno;
    }
    fclose(fp);
    if (bad)
        return hf_err_set(e, HF_EDATA, "%s: line %d: a key is not 40 Z85 characters", path, bad);
    if (!have_pub)
        return hf_err_set(e, HF_EDATA, "%s: no public-key line (make keys with curve-keygen.sh)",
                          path);
    if (secret && !have_sec)
        return hf_err_set(e, HF_EDATA, "%s: no secret-key line: give the NAME.secret file", path);
    if (!secret && have_sec)
        return HF_EOF; /* a secret file: the allow-list refuses it */
    return 0;
}

static int read_allow_dir(curve_zap *z, const char *dir, hf_err *e)
{
    DIR *d = opendir(dir);
    if (!d)
        return hf_err_set(e, HF_EOPEN, "%s: cannot open allow-list directory: %s", dir,
                          strerror(errno));
    struct dirent *de;
    size_t cap = 0;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (z->n == cap) {
            if (cap >= ALLOW_MAX) {
                rc = hf_err_set(e, HF_EDATA, "%s: more than %d keys", dir, ALLOW_MAX);
                break;
            }
            cap = cap ? 2 * cap : 16;
            void *nk = realloc(z->keys, cap * sizeof *z->keys);
            if (!nk) {
                rc = hf_err_set(e, HF_ENOMEM, "out of memory");
                break;
            }
            z->keys = nk;
        }
        rc = curve_read_file(path, z->keys[z->n], NULL, e);
        if (rc == HF_EOF)
            rc = hf_err_set(e, HF_EDATA,
                            "%s holds a secret key: the allow-list takes public keys only", path);
        if (rc == 0)
            z->n++;
    }
    closedir(d);
    return rc;
}

static int allowed(const curve_zap *z, const uint8_t *key)
{
    for (size_t i = 0; i < z->n; i++)
        if (memcmp(z->keys[i], key, 32) == 0)
            return 1;
    return 0;
}

/* One ZAP request in, one reply out (RFC 27): version, request id, domain,
 * address, routing id, mechanism, credentials. */
static void zap_answer(curve_zap *z)
{
    zmq_msg_t part[8];
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, z->sock, 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < 8)
            part[n++] = m;
        else
            zmq_msg_close(&m);
    }
    int ok = n >= 7 && zmq_msg_size(&part[5]) == 5 &&
             memcmp(zmq_msg_data(&part[5]), "CURVE", 5) == 0 && zmq_msg_size(&part[6]) == 32 &&
             allowed(z, zmq_msg_data(&part[6]));
    if (!ok)
        atomic_fetch_add(&z->refused, 1);
    if (n >= 2) {
        zmq_send(z->sock, "1.0", 3, ZMQ_SNDMORE);
        zmq_send(z->sock, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), ZMQ_SNDMORE);
        zmq_send(z->sock, ok ? "200" : "400", 3, ZMQ_SNDMORE);
        const char *text = ok ? "OK" : "client key not on the allow-list";
        zmq_send(z->sock, text, strlen(text), ZMQ_SNDMORE);
        zmq_send(z->sock, "", 0, ZMQ_SNDMORE);
        zmq_send(z->sock, "", 0, 0);
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&part[i]);
}

static void *zap_loop(void *arg)
{
    curve_zap *z = arg;
    while (!atomic_load(&z->stop)) {
        zmq_pollitem_t it = {z->sock, 0, ZMQ_POLLIN, 0};
        int r = zmq_poll(&it, 1, ZAP_POLL_MS);
        if (r < 0 && errno == ETERM)
            break;
        if (r > 0)
            zap_answer(z);
    }
    int zero = 0;
    zmq_setsockopt(z->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(z->sock);
    z->sock = NULL;
    return NULL;
}

void curve_zap_stop(curve_zap **zp)
{
    if (!zp || !*zp)
        return;
    curve_zap *z = *zp;
    if (z->running) {
        atomic_store(&z->stop, 1);
        pthread_join(z->thread, NULL);
    } else if (z->sock) {
        zmq_close(z->sock);
    }
    free(z->keys);
    free(z);
    *zp = NULL;
}

uint64_t curve_zap_refused(const curve_zap *z)
{
    return z ? (uint64_t)atomic_load(&((curve_zap *)z)->refused) : 0;
}

int curve_server_apply(void *ctx, void *sock, const curve_cfg *c, curve_zap **zap, hf_err *e)
{
    *zap = NULL;
    uint8_t pub[32], sec[32];
    int rc = curve_read_file(c->secret, pub, sec, e);
    if (rc)
        return rc;
    curve_zap *z = calloc(1, sizeof *z);
    if (!z)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    atomic_init(&z->stop, 0);
    atomic_init(&z->refused, 0);
    rc = read_allow_dir(z, c->allow, e);
    if (rc == 0 && z->n == 0)
        rc = hf_err_set(e, HF_EDATA, "%s: no public keys: no client could connect", c->allow);
    if (rc == 0) {
        z->sock = zmq_socket(ctx, ZMQ_REP);
        if (!z->sock || zmq_bind(z->sock, ZAP_ENDPOINT) != 0)
            rc = hf_err_set(e, HF_EOPEN, "cannot start the ZAP handler: %s", zmq_strerror(errno));
    }
    int one = 1;
    if (rc == 0 && (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
                    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, 32) != 0 ||
                    zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "hnswflow", 8) != 0))
        rc = hf_err_set(e, HF_EOPEN, "cannot enable CURVE: %s (libzmq without libsodium?)",
                        zmq_strerror(errno));
    if (rc == 0 && pthread_create(&z->thread, NULL, zap_loop, z) != 0)
        rc = hf_err_set(e, HF_EOPEN, "cannot start the ZAP handler thread");
    if (rc) {
        curve_zap_stop(&z);
        return rc;
    }
    z->running = 1;
    *zap = z;
    memset(sec, 0, sizeof sec);
    return 0;
}

int curve_client_apply(void *sock, const curve_cfg *c, hf_err *e)
{
    uint8_t pub[32], sec[32], srv[32];
    int rc = curve_read_file(c->key, pub, sec, e);
    if (rc == 0) {
        rc = curve_read_file(c->server, srv, NULL, e);
        if (rc == HF_EOF)
            rc = hf_err_set(e, HF_EDATA, "%s holds a secret key: give the server's public file",
                            c->server);
    }
    if (rc == 0 && (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, srv, 32) != 0 ||
                    zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, pub, 32) != 0 ||
                    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, 32) != 0))
        rc = hf_err_set(e, HF_EOPEN, "cannot enable CURVE: %s", zmq_strerror(errno));
    memset(sec, 0, sizeof sec);
    return rc;
}

/* A server that cannot read our HELLO (we hold the wrong server key) just
 * drops the connection, which libzmq reports without detail; a drop can
 * also be a server restarting, so only this many in a row are an error. */
#define CURVE_MAX_DROPS 3

/* The first handshake's outcome from the socket's monitor: 1 succeeded,
 * -1 refused (e->msg says how), 0 an event to ignore; *drops counts the
 * drops so far. */
static int handshake_event(void *mon, int *drops, hf_err *e)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, mon, 0) < 0) {
        zmq_msg_close(&m);
        return 0;
    }
    uint16_t ev = 0;
    uint32_t val = 0;
    if (zmq_msg_size(&m) >= 6) {
        memcpy(&ev, zmq_msg_data(&m), 2);
        memcpy(&val, (const char *)zmq_msg_data(&m) + 2, 4);
    }
    int more = zmq_msg_more(&m);
    zmq_msg_close(&m);
    while (more) { /* the endpoint part */
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, mon, 0) < 0)
            more = 0;
        else
            more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
        return 1;
    if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL && ++*drops >= CURVE_MAX_DROPS) {
        hf_err_set(e, HF_EOPEN,
                   "the server dropped our CURVE handshake %d times in a row (is --curve-server "
                   "its public key?)",
                   *drops);
        return -1;
    }
    if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
        hf_err_set(e, HF_EOPEN,
                   "the server refused our CURVE key (status %u: not on its allow-list?)",
                   (unsigned)val);
        return -1;
    }
    if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
        hf_err_set(e, HF_EOPEN,
                   "CURVE handshake failed (does the server require CURVE, with the key of "
                   "--curve-server?)");
        return -1;
    }
    return 0;
}

int curve_client_connect(void *ctx, void *sock, const char *addr, int timeout_ms, hf_err *e)
{
    char name[64];
    snprintf(name, sizeof name, "inproc://curve-monitor-%ld-%p", (long)getpid(), sock);
    if (zmq_socket_monitor(sock, name,
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0)
        return hf_err_set(e, HF_EOPEN, "cannot monitor: %s", zmq_strerror(errno));
    void *mon = zmq_socket(ctx, ZMQ_PAIR);
    int rc = 0;
    if (!mon || zmq_connect(mon, name) != 0)
        rc = hf_err_set(e, HF_EOPEN, "cannot monitor the connection");
    if (rc == 0 && zmq_connect(sock, addr) != 0)
        rc = hf_err_set(e, HF_EOPEN, "cannot connect: %s", zmq_strerror(errno));
    int drops = 0;
    while (rc == 0) {
        zmq_pollitem_t it = {mon, 0, ZMQ_POLLIN, 0};
        int r = zmq_poll(&it, 1, timeout_ms);
        if (r == 0)
            rc = hf_err_set(e, HF_EIO, "no CURVE handshake within %d s", timeout_ms / 1000);
        else if (r < 0 && errno != EINTR)
            rc = hf_err_set(e, HF_EIO, "poll: %s", zmq_strerror(errno));
        else if (r > 0 && (r = handshake_event(mon, &drops, e)) != 0)
            rc = r > 0 ? 1 : HF_EOPEN;
    }
    zmq_socket_monitor(sock, NULL, 0);
    if (mon) {
        int zero = 0;
        zmq_setsockopt(mon, ZMQ_LINGER, &zero, sizeof zero);
        zmq_close(mon);
    }
    return rc == 1 ? 0 : rc;
}
