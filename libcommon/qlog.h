/*
 * qlog.h - the query log a server keeps of the queries it answers
 * (query --serve --log, consolidate --serve --log), for offline retraining
 * (pipelines/retrain.sh).
 *
 * A log is a file of MessagePack frames (schemas/header-querylog.json,
 * query.json):
 *   header {t:"header", schema:"hnswflow.querylog", v:1, dim, dtype:"f32",
 *           metric, count:0}
 *   query  {t:"query", qid, vec: bin f32[dim], k, ef?, recall?, time}
 * with no end frame: the log ends where the file ends, on a frame boundary
 * (vecstream reads it as a vector stream of query frames; a frame cut short
 * is a truncated log). Each frame is written with one write(2) on an
 * O_APPEND descriptor, so whole frames follow each other. No fsync: a
 * query log is not a durability record.
 *
 * Rotation: when appending a frame would take the file past max_bytes, the
 * file is renamed to PATH.1 (replacing an older PATH.1) and a new PATH
 * begins with a header. Opening an existing log appends to it after
 * checking its header names the same dimension.
 *
 * Ownership: qlog_open returns a log the caller closes with qlog_close.
 */
#ifndef HF_QLOG_H
#define HF_QLOG_H

#include <stddef.h>
#include <stdint.h>

#include "distance.h"
#include "err.h"

#define STREAM_QUERYLOG "hnswflow.querylog"
#define QLOG_MAX_BYTES_DEFAULT (64ull << 20)

typedef struct qlog qlog;

int qlog_open(const char *path, size_t dim, metric_t metric, uint64_t max_bytes, qlog **out,
              hf_err *e);
/* One answered query: ef 0 and recall 0 are left out of the frame. */
int qlog_append(qlog *l, uint64_t qid, const void *vec, uint64_t k, uint64_t ef, double recall,
                hf_err *e);
uint64_t qlog_written(const qlog *l); /* query frames appended since open */
void qlog_close(qlog **l);

#endif
