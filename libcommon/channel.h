/*
 * channel.h - where frames come from and go to.
 *
 * One endpoint string names a transport: "-" (stdin/stdout), a file path,
 * or a ZeroMQ endpoint "tcp://host:port", "ipc://path", "inproc://name".
 * Streams over ZeroMQ use PUSH (writer) / PULL (reader), one frame per
 * message. By default a writer binds and a reader connects; a leading '@'
 * forces bind and '>' forces connect (CZMQ's convention).
 *
 * Integrity: every stream ends with an "end" frame carrying "count" and
 * "checksum", the zlib crc32 of the bytes of every frame since the previous
 * end frame (or the start). Writers compute it as they send; readers recompute
 * it by re-encoding each decoded frame (msgpack-c encodes canonically, so the
 * bytes are the same) and fail on a mismatch.
 *
 * File outputs are atomic: frames go to a temporary file beside the target,
 * channel_commit fsyncs and renames it; channel_destroy without commit (or
 * SIGINT/SIGTERM/SIGHUP, see channel_install_signal_cleanup) removes it.
 *
 * CURVE (curve.h): the _curve variants encrypt a ZeroMQ endpoint and check
 * the peer's key. The end that binds is the CURVE server (cc->secret, and a
 * ZAP handler in the channel's own context lets in the keys of cc->allow),
 * the end that connects the client (cc->key towards cc->server); a peer
 * that is refused never gets a pipe, so it sees no frame and none is lost
 * to it. When cc asks for CURVE at all, an endpoint whose end lacks its
 * pair is a usage error rather than silently plain. Other endpoints
 * ignore cc.
 *
 * Ownership: the caller owns the channel from open to channel_destroy, which
 * sets its pointer to NULL. A frame_in from channel_recv borrows the channel's
 * buffers and is valid until the next channel_recv.
 */
#ifndef HF_CHANNEL_H
#define HF_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include "curve.h"
#include "err.h"
#include "frame.h"

typedef struct channel channel;

/* Open an input; max_frame_bytes 0 means FRAME_DEFAULT_MAX_BYTES. */
int channel_open_in(const char *endpoint, size_t max_frame_bytes, channel **out, hf_err *e);
/* Open an output. */
int channel_open_out(const char *endpoint, channel **out, hf_err *e);
/* The same with CURVE on ZeroMQ endpoints (cc may be NULL: plain). */
int channel_open_in_curve(const char *endpoint, size_t max_frame_bytes, const curve_cfg *cc,
                          channel **out, hf_err *e);
int channel_open_out_curve(const char *endpoint, const curve_cfg *cc, channel **out, hf_err *e);
/* 1 when a ZeroMQ endpoint binds: '@' binds, '>' connects, else an output
 * binds and an input connects. */
int channel_binds(const char *endpoint, int output);
/* 0 when cc fits this endpoint (an input or an output): no CURVE asked, not
 * a ZeroMQ endpoint, or the keys of its end (server when it binds, client
 * when it connects) are there; HF_EUSAGE with a message otherwise. */
int channel_curve_fits(const char *endpoint, int output, const curve_cfg *cc, hf_err *e);
/* A filter's check of its CURVE options before any work: 0 without CURVE;
 * HF_EUSAGE with a message when a pair is incomplete, when a ZeroMQ
 * endpoint among the inputs in[nin] and outputs out[nout] (NULL entries
 * skipped) has an end whose pair is missing, or when a pair given serves no
 * end: server and client say whether the filter has ends of its own beyond
 * these streams (a --serve socket, a --connect one). */
int channel_curve_usage(const curve_cfg *cc, const char *const *in, size_t nin,
                        const char *const *out, size_t nout, int server, int client, hf_err *e);
/* 1 when endpoint names a ZeroMQ transport (tcp://, ipc://, inproc://,
 * with an optional '@' or '>'). */
int channel_is_zmq(const char *endpoint);

/* Receive the next frame. 0: *f is valid. HF_EOF: clean end of a byte stream
 * (no partial frame pending). Otherwise an error (truncated or over-size
 * frame, undecodable bytes, checksum mismatch at an end frame). */
int channel_recv(channel *c, frame_in *f, hf_err *e);

/* Send one frame (the bytes packed in fo). */
int channel_send(channel *c, const frame_out *fo, hf_err *e);
/* Pass a received frame through unchanged (re-encoded canonically). */
int channel_forward(channel *c, const frame_in *f, hf_err *e);
/* Send the end frame of the current stream with the running checksum. */
int channel_send_end(channel *c, uint64_t count, hf_err *e);

/* Push buffered frames of a byte-stream output to the kernel (a reader
 * sees them now); no-op for ZeroMQ. */
int channel_flush(channel *c, hf_err *e);

/* Finish an output: flush, and for files fsync + rename into place. */
int channel_commit(channel *c, hf_err *e);
void channel_destroy(channel **c);

/* The endpoint as given, for messages. */
const char *channel_name(const channel *c);
/* Peers CURVE's ZAP handler refused so far (0 without CURVE). */
uint64_t channel_refused(const channel *c);
/* Frames received so far (the index of the last frame returned). */
uint64_t channel_frames(const channel *c);

/* Install handlers so that exit() and SIGINT/SIGTERM/SIGHUP remove
 * uncommitted output files before the process dies. Call once at start-up
 * of a filter. */
void channel_install_signal_cleanup(void);

/* Stream helpers shared by every filter. */
#define STREAM_VECTORS "hnswflow.vectors"
#define STREAM_INDEX "hnswflow.index"
#define STREAM_RESULTS "hnswflow.results"

#endif
