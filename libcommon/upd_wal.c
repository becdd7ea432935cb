/*
 * upd_wal.c - see upd_wal.h. Records are written with one write(2) each
 * (a frame packed in memory first), so a crash leaves at most one partial
 * record, at the end, which replay reports and drops.
 */
#include "upd_wal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "channel.h"
#include "fdio.h"
#include "frame_scan.h"

struct upd_wal {
    int fd, sync;
    uint64_t bytes;
    frame_out fo, body;
    char *path;
};

static int write_all(upd_wal *w, const char *p, size_t n, hf_err *e)
{
    int rc = fd_write_all(w->fd, p, n, w->path, e);
    if (rc == 0)
        w->bytes += n;
    return rc;
}

int upd_wal_reset(upd_wal *w, uint64_t base, hf_err *e)
{
    if (ftruncate(w->fd, 0) != 0 || lseek(w->fd, 0, SEEK_SET) != 0)
        return hf_err_set(e, HF_EIO, "%s: truncate: %s", w->path, strerror(errno));
    w->bytes = 0;
    frame_begin(&w->fo, "header", 3);
    frame_put_str(&w->fo, "schema", STREAM_WAL);
    frame_put_u64(&w->fo, "v", 1);
    frame_put_u64(&w->fo, "base", base);
    int rc = write_all(w, w->fo.sb.data, w->fo.sb.size, e);
    if (rc == 0 && fsync(w->fd) != 0)
        rc = hf_err_set(e, HF_EIO, "%s: fsync: %s", w->path, strerror(errno));
    return rc;
}

int upd_wal_open(const char *path, uint64_t base, int sync, upd_wal **out, hf_err *e)
{
    *out = NULL;
    upd_wal *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    }
    w->sync = sync;
    frame_out_init(&w->fo);
    frame_out_init(&w->body);
    w->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    int rc = w->fd < 0 ? hf_err_set(e, HF_EOPEN, "%s: %s", path, strerror(errno)) : 0;
    if (rc == 0)
        rc = upd_wal_reset(w, base, e);
    if (rc) {
        upd_wal_close(&w);
        return rc;
    }
    *out = w;
    return 0;
}

static uint32_t record_crc(uint64_t seq, const void *body, size_t len)
{
    unsigned char s[8];
    for (int i = 0; i < 8; i++)
        s[i] = (unsigned char)(seq >> (8 * i));
    uLong c = crc32(0L, Z_NULL, 0);
    c = crc32(c, s, 8);
    /* zlib takes uInt lengths: feed large bodies in pieces */
    const unsigned char *p = body;
    while (len) {
        uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
        c = crc32(c, p, n);
        p += n;
        len -= n;
    }
    return (uint32_t)c;
}

int upd_wal_append(upd_wal *w, uint64_t seq, const frame_in *f, hf_err *e)
{
    msgpack_sbuffer_clear(&w->body.sb);
    msgpack_pack_object(&w->body.pk, *f->map);
    frame_begin(&w->fo, "wal", 3);
    frame_put_u64(&w->fo, "seq", seq);
    frame_put_u64(&w->fo, "crc", record_crc(seq, w->body.sb.data, w->body.sb.size));
    frame_put_bin(&w->fo, "body", w->body.sb.data, w->body.sb.size);
    int rc = write_all(w, w->fo.sb.data, w->fo.sb.size, e);
    if (rc == 0 && w->sync && fdatasync(w->fd) != 0)
        rc = hf_err_set(e, HF_EIO, "%s: fdatasync: %s", w->path, strerror(errno));
    return rc;
}

uint64_t upd_wal_bytes(const upd_wal *w)
{
    return w->bytes;
}

void upd_wal_close(upd_wal **wp)
{
    if (!wp || !*wp)
        return;
    upd_wal *w = *wp;
    if (w->fd >= 0)
        close(w->fd);
    frame_out_free(&w->fo);
    frame_out_free(&w->body);
    free(w->path);
    free(w);
    *wp = NULL;
}

int upd_wal_replay(const char *path, uint64_t after, size_t max_frame, upd_wal_apply_fn apply,
                   void *arg, uint64_t *applied, uint64_t *last, hf_err *tail, hf_err *e)
{
    *applied = 0;
    *last = after;
    tail->code = 0;
    tail->msg[0] = 0;
    struct stat sb;
    if (stat(path, &sb) != 0 || sb.st_size == 0)
        return 0; /* no log yet */
    channel *c = NULL;
    int rc = channel_open_in(path, max_frame, &c, e);
    if (rc)
        return rc;
    frame_in f;
    rc = channel_recv(c, &f, e);
    char schema[32] = "";
    uint64_t base = 0;
    if (rc == 0 && (strcmp(f.type, "header") != 0 ||
                    frame_get_str(&f, "schema", schema, sizeof schema, NULL) ||
                    strcmp(schema, STREAM_WAL) != 0 || frame_get_u64(&f, "base", &base, NULL)))
        rc = hf_err_set(e, HF_EDATA, "frame 1: not a write-ahead log (%s header)", STREAM_WAL);
    else if (rc == HF_EOF)
        rc = hf_err_set(e, HF_EDATA, "frame 1: not a write-ahead log (empty)");
    if (rc) {
        channel_destroy(&c);
        return rc;
    }
    uint64_t expect = base + 1;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    for (;;) {
        hf_err re = {0};
        int r = channel_recv(c, &f, &re);
        if (r == HF_EOF)
            break;
        uint64_t idx = channel_frames(c);
        if (r) {
            hf_err_set(tail, r, "frame %llu: %s", (unsigned long long)idx + (r ? 1 : 0), re.msg);
            break;
        }
        uint64_t seq, crc;
        const void *body;
        size_t len;
        if (strcmp(f.type, "wal") != 0 || frame_get_u64(&f, "seq", &seq, NULL) ||
            frame_get_u64(&f, "crc", &crc, NULL) || frame_get_bin(&f, "body", &body, &len, NULL)) {
            hf_err_set(tail, HF_EDATA, "frame %llu: not a wal record", (unsigned long long)idx);
            break;
        }
        if (seq != expect) {
            hf_err_set(tail, HF_EDATA, "frame %llu: record %llu out of sequence (expected %llu)",
                       (unsigned long long)idx, (unsigned long long)seq,
                       (unsigned long long)expect);
            break;
        }
        if (crc != record_crc(seq, body, len)) {
            hf_err_set(tail, HF_EDATA, "frame %llu: record %llu fails its crc (corrupt)",
                       (unsigned long long)idx, (unsigned long long)seq);
            break;
        }
        size_t off = 0;
        frame_in uf;
        if (!frame_scan_is_one(body, len) ||
            msgpack_unpack_next(&up, body, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len ||
            frame_in_wrap(&uf, &up.data, idx, &re) != 0) {
            hf_err_set(tail, HF_EDATA, "frame %llu: record %llu holds no update frame",
                       (unsigned long long)idx, (unsigned long long)seq);
            break;
        }
        expect++;
        if (seq <= after)
            continue; /* already in the checkpoint */
        if ((r = apply(&uf, seq, arg, &re)) != 0) {
            hf_err_set(tail, r, "frame %llu: record %llu: %s", (unsigned long long)idx,
                       (unsigned long long)seq, re.msg);
            break;
        }
        (*applied)++;
        *last = seq;
    }
    msgpack_unpacked_destroy(&up);
    channel_destroy(&c);
    return 0;
}
