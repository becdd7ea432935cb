/*
 * channel.c - see channel.h.
 *
 * Byte streams are decoded with msgpack_unpacker: we feed it whatever read()
 * returns and take complete objects out; its message size tells us when a
 * frame grows past the limit before the whole frame is buffered.
 *
 * The only process-wide mutable state is the list of uncommitted temporary
 * files, which a signal handler must be able to reach to remove them.
 */
#include "channel.h"
#include "frame_scan.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zmq.h>

enum ch_kind { CH_FD_IN, CH_FILE_OUT, CH_STDOUT, CH_ZMQ_IN, CH_ZMQ_OUT };

struct channel {
    enum ch_kind kind;
    char name[PATH_MAX];
    int fd;
    int eof;
    FILE *fp;
    char tmp_path[PATH_MAX];
    char final_path[PATH_MAX];
    int committed;
    int tmp_slot;
    msgpack_unpacker up;
    int up_live;
    msgpack_unpacked result;
    frame_scan scan; /* pre-scan of the frame being read (frame_scan.h) */
    void *zctx, *zsock;
    curve_zap *zap; /* CURVE server's ZAP handler, NULL without */
    zmq_msg_t zmsg;
    int zmsg_live;
    size_t max_frame;
    uint64_t frames;
    uLong crc_in, crc_out;
};

/* ---- temp-file registry for signal cleanup ---- */

#define TMP_SLOTS 16
static char tmp_registry[TMP_SLOTS][PATH_MAX];
static volatile sig_atomic_t tmp_used[TMP_SLOTS];

static int tmp_register(const char *path)
{
    for (int i = 0; i < TMP_SLOTS; i++) {
        if (!tmp_used[i]) {
            snprintf(tmp_registry[i], PATH_MAX, "%s", path);
            tmp_used[i] = 1;
            return i;
        }
    }
    return -1;
}

static void tmp_unregister(int slot)
{
    if (slot >= 0)
        tmp_used[slot] = 0;
}

static void cleanup_on_signal(int sig)
{
    for (int i = 0; i < TMP_SLOTS; i++)
        if (tmp_used[i])
            unlink(tmp_registry[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void cleanup_at_exit(void)
{
    for (int i = 0; i < TMP_SLOTS; i++)
        if (tmp_used[i])
            unlink(tmp_registry[i]);
}

void channel_install_signal_cleanup(void)
{
    atexit(cleanup_at_exit);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = cleanup_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* ---- helpers ---- */

int channel_is_zmq(const char *ep)
{
    const char *p = ep;
    if (*p == '@' || *p == '>')
        p++;
    return strncmp(p, "tcp://", 6) == 0 || strncmp(p, "ipc://", 6) == 0 ||
           strncmp(p, "inproc://", 9) == 0;
}

static int crc_write(void *data, const char *buf, size_t len)
{
    uLong *crc = data;
    while (len > 0) {
        uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
        *crc = crc32(*crc, (const Bytef *)buf, n);
        buf += n;
        len -= n;
    }
    return 0;
}

static uLong crc_of_object(uLong crc, const msgpack_object *o)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, &crc, crc_write);
    msgpack_pack_object(&pk, *o);
    return crc;
}

static channel *channel_alloc(const char *endpoint)
{
    channel *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    snprintf(c->name, sizeof c->name, "%s", endpoint);
    c->fd = -1;
    c->tmp_slot = -1;
    c->crc_in = crc32(0L, Z_NULL, 0);
    c->crc_out = c->crc_in;
    msgpack_unpacked_init(&c->result);
    return c;
}

int channel_binds(const char *endpoint, int output)
{
    return endpoint[0] == '@' ? 1 : endpoint[0] == '>' ? 0 : output;
}

/* The end that binds is the CURVE server, the one that connects a client. */
static int curve_end_check(const char *endpoint, int bind, const curve_cfg *cc, hf_err *e)
{
    if (bind && !curve_cfg_server(cc))
        return hf_err_set(e, HF_EUSAGE,
                          "%s: this end binds, so it is the CURVE server: give --curve-secret "
                          "and --curve-allow (or connect with '>')",
                          endpoint);
    if (!bind && !curve_cfg_client(cc))
        return hf_err_set(e, HF_EUSAGE,
                          "%s: this end connects, so it is a CURVE client: give --curve-key and "
                          "--curve-server (or bind with '@')",
                          endpoint);
    return 0;
}

int channel_curve_fits(const char *endpoint, int output, const curve_cfg *cc, hf_err *e)
{
    if ((!curve_cfg_server(cc) && !curve_cfg_client(cc)) || !channel_is_zmq(endpoint))
        return 0;
    return curve_end_check(endpoint, channel_binds(endpoint, output), cc, e);
}

int channel_curve_usage(const curve_cfg *cc, const char *const *in, size_t nin,
                        const char *const *out, size_t nout, int server, int client, hf_err *e)
{
    if (!curve_cfg_server(cc) && !curve_cfg_client(cc))
        return 0;
    int rc = curve_cfg_check(cc, e);
    for (size_t i = 0; rc == 0 && i < nin + nout; i++) {
        const char *ep = i < nin ? in[i] : out[i - nin];
        if (!ep || !channel_is_zmq(ep))
            continue;
        rc = channel_curve_fits(ep, i >= nin, cc, e);
        if (channel_binds(ep, i >= nin))
            server = 1;
        else
            client = 1;
    }
    if (rc == 0 && curve_cfg_server(cc) && !server)
        rc = hf_err_set(e, HF_EUSAGE,
                        "--curve-secret/--curve-allow: nothing here serves (a --serve endpoint, "
                        "or a ZeroMQ stream endpoint this end binds)");
    if (rc == 0 && curve_cfg_client(cc) && !client)
        rc = hf_err_set(e, HF_EUSAGE,
                        "--curve-key/--curve-server: nothing here is a client (--connect, or a "
                        "ZeroMQ stream endpoint this end connects to)");
    return rc;
}

/* CURVE on a socket about to bind (server) or connect (client). */
static int curve_apply(channel *c, const char *endpoint, int bind, const curve_cfg *cc, hf_err *e)
{
    if (!curve_cfg_server(cc) && !curve_cfg_client(cc))
        return 0;
    int rc = curve_end_check(endpoint, bind, cc, e);
    if (rc == 0 && bind)
        rc = curve_server_apply(c->zctx, c->zsock, cc, &c->zap, e);
    else if (rc == 0)
        rc = curve_client_apply(c->zsock, cc, e);
    return rc;
}

static int zmq_open(channel *c, const char *endpoint, int type, int bind_default,
                    const curve_cfg *cc, hf_err *e)
{
    int bind = bind_default;
    const char *addr = endpoint;
    if (*addr == '@') {
        bind = 1;
        addr++;
    } else if (*addr == '>') {
        bind = 0;
        addr++;
    }
    c->zctx = zmq_ctx_new();
    if (!c->zctx)
        return hf_err_set(e, HF_EOPEN, "%s: cannot create ZeroMQ context", endpoint);
    c->zsock = zmq_socket(c->zctx, type);
    if (!c->zsock)
        return hf_err_set(e, HF_EOPEN, "%s: cannot create socket: %s", endpoint,
                          zmq_strerror(errno));
    if (type == ZMQ_PULL) {
        int64_t maxsz = (int64_t)c->max_frame;
        zmq_setsockopt(c->zsock, ZMQ_MAXMSGSIZE, &maxsz, sizeof maxsz);
    }
    int rc = curve_apply(c, endpoint, bind, cc, e);
    if (rc)
        return rc;
    if (!bind && curve_cfg_client(cc))
        return curve_client_connect(c->zctx, c->zsock, addr, -1, e);
    rc = bind ? zmq_bind(c->zsock, addr) : zmq_connect(c->zsock, addr);
    if (rc != 0)
        return hf_err_set(e, HF_EOPEN, "%s: cannot %s: %s", endpoint, bind ? "bind" : "connect",
                          zmq_strerror(errno));
    return 0;
}

int channel_open_in(const char *endpoint, size_t max_frame_bytes, channel **out, hf_err *e)
{
    return channel_open_in_curve(endpoint, max_frame_bytes, NULL, out, e);
}

int channel_open_in_curve(const char *endpoint, size_t max_frame_bytes, const curve_cfg *cc,
                          channel **out, hf_err *e)
{
    *out = NULL;
    channel *c = channel_alloc(endpoint);
    if (!c)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    c->max_frame = max_frame_bytes ? max_frame_bytes : FRAME_DEFAULT_MAX_BYTES;
    int rc = 0;
    if (channel_is_zmq(endpoint)) {
        c->kind = CH_ZMQ_IN;
        rc = zmq_open(c, endpoint, ZMQ_PULL, 0, cc, e);
    } else {
        c->kind = CH_FD_IN;
        if (strcmp(endpoint, "-") == 0) {
            c->fd = 0;
        } else {
            c->fd = open(endpoint, O_RDONLY | O_CLOEXEC);
            if (c->fd < 0)
                rc = hf_err_set(e, HF_EOPEN, "%s: cannot open: %s", endpoint, strerror(errno));
        }
        if (rc == 0) {
            if (!msgpack_unpacker_init(&c->up, 1 << 20))
                rc = hf_err_set(e, HF_ENOMEM, "out of memory");
            else
                c->up_live = 1;
        }
    }
    if (rc != 0) {
        channel_destroy(&c);
        return rc;
    }
    *out = c;
    return 0;
}

/* Create "<target>.tmp.<random>" for writing and register it for signal
 * cleanup. The name is registered BEFORE the file exists: a signal handled
 * by any thread (OpenBLAS and ZeroMQ start their own, so blocking signals in
 * this one is not enough) between creating and registering would otherwise
 * leave the file behind. Unlinking a name that does not exist yet is
 * harmless. Returns the descriptor, or -1 with errno set. */
static int create_tmp(channel *c, const char *endpoint)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 17) ^
                 (uint64_t)(uintptr_t)c;
    for (int attempt = 0; attempt < 100; attempt++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        int n = snprintf(c->tmp_path, sizeof c->tmp_path, "%s.tmp.%08llx", endpoint,
                         (unsigned long long)(x >> 32));
        if (n < 0 || (size_t)n >= sizeof c->tmp_path) {
            errno = ENAMETOOLONG;
            return -1;
        }
        c->tmp_slot = tmp_register(c->tmp_path);
        int fd = open(c->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0)
            return fd;
        int err = errno;
        tmp_unregister(c->tmp_slot);
        c->tmp_slot = -1;
        errno = err;
        if (err != EEXIST)
            return -1;
    }
    return -1;
}

int channel_open_out(const char *endpoint, channel **out, hf_err *e)
{
    return channel_open_out_curve(endpoint, NULL, out, e);
}

int channel_open_out_curve(const char *endpoint, const curve_cfg *cc, channel **out, hf_err *e)
{
    *out = NULL;
    channel *c = channel_alloc(endpoint);
    if (!c)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    int rc = 0;
    if (channel_is_zmq(endpoint)) {
        c->kind = CH_ZMQ_OUT;
        rc = zmq_open(c, endpoint, ZMQ_PUSH, 1, cc, e);
    } else if (strcmp(endpoint, "-") == 0) {
        c->kind = CH_STDOUT;
        c->fp = stdout;
    } else {
        c->kind = CH_FILE_OUT;
        snprintf(c->final_path, sizeof c->final_path, "%s", endpoint);
        int fd = create_tmp(c, endpoint);
        if (fd < 0) {
            rc = hf_err_set(e, HF_EOPEN, "%s: cannot create output: %s", endpoint, strerror(errno));
            c->tmp_path[0] = '\0';
        } else {
            fchmod(fd, 0644);
            c->fp = fdopen(fd, "wb");
            if (!c->fp) {
                close(fd);
                rc = hf_err_set(e, HF_EOPEN, "%s: cannot open output", endpoint);
            } else {
                setvbuf(c->fp, NULL, _IOFBF, 1 << 20);
            }
        }
    }
    if (rc != 0) {
        channel_destroy(&c);
        return rc;
    }
    *out = c;
    return 0;
}

/* Checksum bookkeeping shared by both input kinds. */
static int account_frame(channel *c, frame_in *f, hf_err *e)
{
    c->frames++;
    int rc = frame_in_wrap(f, &c->result.data, c->frames, e);
    if (rc != 0)
        return rc;
    if (strcmp(f->type, "end") == 0) {
        uint64_t want;
        rc = frame_get_u64(f, "checksum", &want, e);
        if (rc != 0)
            return rc == HF_EOF ? hf_err_set(e, HF_EDATA, "end frame lacks \"checksum\"") : rc;
        if (want != (uint64_t)c->crc_in)
            return hf_err_set(e, HF_EDATA,
                              "checksum mismatch: stream says %08llx, content gives %08lx "
                              "(corrupt or altered stream)",
                              (unsigned long long)want, (unsigned long)c->crc_in);
        c->crc_in = crc32(0L, Z_NULL, 0);
    } else {
        c->crc_in = crc_of_object(c->crc_in, &c->result.data);
    }
    return 0;
}

static int recv_fd(channel *c, frame_in *f, hf_err *e)
{
    for (;;) {
        const unsigned char *p = (const unsigned char *)c->up.buffer + c->up.off;
        size_t avail = c->up.used - c->up.off;
        int s = frame_scan_step(&c->scan, p, avail, c->max_frame);
        if (s == FRAME_SCAN_TOO_BIG)
            return hf_err_set(e, HF_EDATA, "frame over the size limit (%zu bytes)", c->max_frame);
        if (s == FRAME_SCAN_BAD)
            return hf_err_set(e, HF_EDATA, "bytes are not MessagePack");
        if (s == FRAME_SCAN_WHOLE) {
            /* the whole frame is buffered: msgpack-c decodes it in one go */
            size_t frame_bytes = 0;
            memset(&c->scan, 0, sizeof c->scan);
            msgpack_unpack_return r =
                msgpack_unpacker_next_with_size(&c->up, &c->result, &frame_bytes);
            if (r == MSGPACK_UNPACK_SUCCESS)
                return account_frame(c, f, e);
            if (r == MSGPACK_UNPACK_NOMEM_ERROR)
                return hf_err_set(e, HF_EDATA, "frame nests too deeply or exhausts memory");
            return hf_err_set(e, HF_EDATA, "bytes are not MessagePack");
        }
        if (c->eof) {
            if (avail > 0)
                return hf_err_set(e, HF_EDATA, "truncated frame at end of input");
            return HF_EOF;
        }
        if (!msgpack_unpacker_reserve_buffer(&c->up, 1 << 20))
            return hf_err_set(e, HF_ENOMEM, "out of memory reading frames");
        ssize_t n;
        do {
            n = read(c->fd, msgpack_unpacker_buffer(&c->up),
                     msgpack_unpacker_buffer_capacity(&c->up));
        } while (n < 0 && errno == EINTR);
        if (n < 0)
            return hf_err_set(e, HF_EIO, "read error: %s", strerror(errno));
        if (n == 0)
            c->eof = 1;
        else
            msgpack_unpacker_buffer_consumed(&c->up, (size_t)n);
    }
}

static int recv_zmq(channel *c, frame_in *f, hf_err *e)
{
    if (c->zmsg_live) {
        zmq_msg_close(&c->zmsg);
        c->zmsg_live = 0;
    }
    zmq_msg_init(&c->zmsg);
    c->zmsg_live = 1;
    int n;
    do {
        n = zmq_msg_recv(&c->zmsg, c->zsock, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return hf_err_set(e, HF_EIO, "receive failed: %s", zmq_strerror(errno));
    size_t off = 0, size = zmq_msg_size(&c->zmsg);
    frame_scan scan = {0, 0};
    if (frame_scan_step(&scan, zmq_msg_data(&c->zmsg), size, size) != FRAME_SCAN_WHOLE ||
        scan.pos != size)
        return hf_err_set(e, HF_EDATA, "message is not exactly one MessagePack frame");
    msgpack_unpack_return r = msgpack_unpack_next(&c->result, zmq_msg_data(&c->zmsg), size, &off);
    if (r != MSGPACK_UNPACK_SUCCESS || off != size)
        return hf_err_set(e, HF_EDATA, "message is not exactly one MessagePack frame");
    return account_frame(c, f, e);
}

int channel_recv(channel *c, frame_in *f, hf_err *e)
{
    uint64_t before = c->frames;
    int rc;
    if (c->kind == CH_FD_IN)
        rc = recv_fd(c, f, e);
    else if (c->kind == CH_ZMQ_IN)
        rc = recv_zmq(c, f, e);
    else
        return hf_err_set(e, HF_EINTERNAL, "%s: not an input", c->name);
    /* Errors name the frame they were found in: the one being decoded. */
    if (rc != 0 && rc != HF_EOF)
        hf_err_prefix(e, "frame %llu", (unsigned long long)before + 1);
    return rc;
}

static int send_bytes(channel *c, const char *data, size_t len, hf_err *e)
{
    if (c->kind == CH_ZMQ_OUT) {
        int n;
        do {
            n = zmq_send(c->zsock, data, len, 0);
        } while (n < 0 && errno == EINTR);
        if (n < 0)
            return hf_err_set(e, HF_EIO, "%s: send failed: %s", c->name, zmq_strerror(errno));
        return 0;
    }
    if (c->kind != CH_FILE_OUT && c->kind != CH_STDOUT)
        return hf_err_set(e, HF_EINTERNAL, "%s: not an output", c->name);
    if (fwrite(data, 1, len, c->fp) != len)
        return hf_err_set(e, HF_EIO, "%s: write failed: %s", c->name, strerror(errno));
    return 0;
}

int channel_flush(channel *c, hf_err *e)
{
    if ((c->kind == CH_FILE_OUT || c->kind == CH_STDOUT) && fflush(c->fp) != 0)
        return hf_err_set(e, HF_EIO, "%s: write failed: %s", c->name, strerror(errno));
    return 0;
}

int channel_send(channel *c, const frame_out *fo, hf_err *e)
{
    int rc = send_bytes(c, fo->sb.data, fo->sb.size, e);
    if (rc == 0)
        crc_write(&c->crc_out, fo->sb.data, fo->sb.size);
    return rc;
}

int channel_forward(channel *c, const frame_in *f, hf_err *e)
{
    frame_out fo;
    frame_out_init(&fo);
    msgpack_pack_object(&fo.pk, *f->map);
    int rc = channel_send(c, &fo, e);
    frame_out_free(&fo);
    return rc;
}

int channel_send_end(channel *c, uint64_t count, hf_err *e)
{
    frame_out fo;
    frame_out_init(&fo);
    frame_begin(&fo, "end", 2);
    frame_put_u64(&fo, "count", count);
    frame_put_u64(&fo, "checksum", (uint64_t)c->crc_out);
    int rc = send_bytes(c, fo.sb.data, fo.sb.size, e);
    frame_out_free(&fo);
    c->crc_out = crc32(0L, Z_NULL, 0);
    return rc;
}

int channel_commit(channel *c, hf_err *e)
{
    if (c->kind == CH_STDOUT) {
        if (fflush(c->fp) != 0)
            return hf_err_set(e, HF_EIO, "stdout: write failed: %s", strerror(errno));
        c->committed = 1;
        return 0;
    }
    if (c->kind != CH_FILE_OUT) {
        c->committed = 1;
        return 0;
    }
    if (fflush(c->fp) != 0 || fsync(fileno(c->fp)) != 0)
        return hf_err_set(e, HF_EIO, "%s: write failed: %s", c->name, strerror(errno));
    if (fclose(c->fp) != 0) {
        c->fp = NULL;
        return hf_err_set(e, HF_EIO, "%s: close failed: %s", c->name, strerror(errno));
    }
    c->fp = NULL;
    if (rename(c->tmp_path, c->final_path) != 0)
        return hf_err_set(e, HF_EIO, "%s: rename failed: %s", c->name, strerror(errno));
    tmp_unregister(c->tmp_slot);
    c->tmp_slot = -1;
    c->committed = 1;
    return 0;
}

void channel_destroy(channel **cp)
{
    if (!cp || !*cp)
        return;
    channel *c = *cp;
    if (c->kind == CH_FILE_OUT) {
        if (c->fp)
            fclose(c->fp);
        if (!c->committed && c->tmp_path[0])
            unlink(c->tmp_path);
        tmp_unregister(c->tmp_slot);
    } else if (c->kind == CH_STDOUT && c->fp) {
        fflush(c->fp);
    }
    if (c->kind == CH_FD_IN && c->fd > 0)
        close(c->fd);
    if (c->up_live)
        msgpack_unpacker_destroy(&c->up);
    msgpack_unpacked_destroy(&c->result);
    if (c->zmsg_live)
        zmq_msg_close(&c->zmsg);
    if (c->zsock) {
        int linger = c->kind == CH_ZMQ_OUT ? -1 : 0;
        zmq_setsockopt(c->zsock, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(c->zsock);
    }
    /* a closed socket accepts no new peer, so no handshake needs the ZAP
     * handler while the lingering frames go out */
    curve_zap_stop(&c->zap);
    if (c->zctx)
        zmq_ctx_term(c->zctx);
    free(c);
    *cp = NULL;
}

const char *channel_name(const channel *c)
{
    return c->name;
}

uint64_t channel_refused(const channel *c)
{
    return curve_zap_refused(c->zap);
}

uint64_t channel_frames(const channel *c)
{
    return c->frames;
}
