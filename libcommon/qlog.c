/*
 * qlog.c - see qlog.h. A frame is packed in memory, then written whole
 * (fdio.h), so a reader never meets half a frame between two whole ones.
 */
#include "qlog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "channel.h"
#include "fdio.h"
#include "frame.h"

struct qlog {
    int fd;
    char *path;
    size_t dim;
    metric_t metric;
    uint64_t bytes, max_bytes, written;
    int fresh; /* the current file holds no query yet: never rotated */
    frame_out fo;
};

static int write_frame(qlog *l, const frame_out *fo, hf_err *e)
{
    int rc = fd_write_all(l->fd, fo->sb.data, fo->sb.size, l->path, e);
    if (rc == 0)
        l->bytes += fo->sb.size;
    return rc;
}

/* The header of an existing, non-empty log must name our dimension. */
static int check_header(const qlog *l, hf_err *e)
{
    channel *c = NULL;
    int rc = channel_open_in(l->path, 0, &c, e);
    frame_in f;
    if (rc == 0)
        rc = channel_recv(c, &f, e);
    char schema[64] = "";
    uint64_t dim = 0;
    if (rc == 0 && (strcmp(f.type, "header") != 0 ||
                    frame_get_str(&f, "schema", schema, sizeof schema, NULL) != 0 ||
                    strcmp(schema, STREAM_QUERYLOG) != 0))
        rc = hf_err_set(e, HF_EDATA, "frame 1: not a query log (%s header)", STREAM_QUERYLOG);
    if (rc == 0 && (frame_get_u64(&f, "dim", &dim, NULL) != 0 || dim != l->dim))
        rc = hf_err_set(e, HF_EDATA, "frame 1: a query log of dimension %llu, this index has %zu",
                        (unsigned long long)dim, l->dim);
    channel_destroy(&c);
    if (rc == HF_EOF)
        rc = hf_err_set(e, HF_EDATA, "frame 1: not a query log (no header)");
    return rc;
}

/* The header goes through its own frame: a query frame packed in l->fo
 * may be waiting for the rotation that writes it. */
static int put_header(qlog *l, hf_err *e)
{
    frame_out fo;
    frame_out_init(&fo);
    frame_begin(&fo, "header", 6);
    frame_put_str(&fo, "schema", STREAM_QUERYLOG);
    frame_put_u64(&fo, "v", 1);
    frame_put_u64(&fo, "dim", l->dim);
    frame_put_str(&fo, "dtype", "f32");
    frame_put_str(&fo, "metric", metric_name(l->metric));
    frame_put_u64(&fo, "count", 0);
    int rc = write_frame(l, &fo, e);
    frame_out_free(&fo);
    return rc;
}

/* Open path for appending; a new or empty file gets a header. */
static int open_file(qlog *l, hf_err *e)
{
    l->fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (l->fd < 0)
        return hf_err_set(e, HF_EOPEN, "%s: %s", l->path, strerror(errno));
    struct stat st;
    if (fstat(l->fd, &st) != 0)
        return hf_err_set(e, HF_EIO, "%s: %s", l->path, strerror(errno));
    l->bytes = (uint64_t)st.st_size;
    l->fresh = st.st_size == 0;
    if (st.st_size == 0)
        return put_header(l, e);
    return check_header(l, e);
}

int qlog_open(const char *path, size_t dim, metric_t metric, uint64_t max_bytes, qlog **out,
              hf_err *e)
{
    *out = NULL;
    qlog *l = calloc(1, sizeof *l);
    if (!l || !(l->path = strdup(path))) {
        free(l);
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    }
    l->fd = -1;
    l->dim = dim;
    l->metric = metric;
    l->max_bytes = max_bytes ? max_bytes : QLOG_MAX_BYTES_DEFAULT;
    frame_out_init(&l->fo);
    int rc = open_file(l, e);
    if (rc) {
        qlog_close(&l);
        return rc;
    }
    *out = l;
    return 0;
}

static int rotate(qlog *l, hf_err *e)
{
    size_t n = strlen(l->path) + 3;
    char *old = malloc(n);
    if (!old)
        return hf_err_set(e, HF_ENOMEM, "out of memory");
    snprintf(old, n, "%s.1", l->path);
    close(l->fd);
    l->fd = -1;
    int rc = rename(l->path, old) != 0
                 ? hf_err_set(e, HF_EIO, "%s: rename to %s: %s", l->path, old, strerror(errno))
                 : 0;
    free(old);
    return rc ? rc : open_file(l, e);
}

int qlog_append(qlog *l, uint64_t qid, const void *vec, uint64_t k, uint64_t ef, double recall,
                hf_err *e)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    frame_begin(&l->fo, "query", 4 + (ef != 0) + (recall > 0));
    frame_put_u64(&l->fo, "qid", qid);
    frame_put_bin(&l->fo, "vec", vec, l->dim * sizeof(float));
    frame_put_u64(&l->fo, "k", k);
    if (ef)
        frame_put_u64(&l->fo, "ef", ef);
    if (recall > 0)
        frame_put_f64(&l->fo, "recall", recall);
    frame_put_f64(&l->fo, "time", (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec);
    if (l->bytes + l->fo.sb.size > l->max_bytes && !l->fresh) {
        int rc = rotate(l, e);
        if (rc)
            return rc;
    }
    int rc = write_frame(l, &l->fo, e);
    if (rc == 0) {
        l->written++;
        l->fresh = 0;
    }
    return rc;
}

uint64_t qlog_written(const qlog *l)
{
    return l->written;
}

void qlog_close(qlog **lp)
{
    if (!lp || !*lp)
        return;
    qlog *l = *lp;
    if (l->fd >= 0)
        close(l->fd);
    frame_out_free(&l->fo);
    free(l->path);
    free(l);
    *lp = NULL;
}
