/*
 * fdio.h - whole writes to a file descriptor: a frame packed in memory goes
 * out with as few write(2) calls as the kernel allows (one, in practice,
 * for a regular file), so a log holds whole frames one after another.
 */
#ifndef HF_FDIO_H
#define HF_FDIO_H

#include <stddef.h>

#include "err.h"

/* Write n bytes of p to fd, retrying short writes and EINTR; path names the
 * file in the error (HF_EIO). */
int fd_write_all(int fd, const void *p, size_t n, const char *path, hf_err *e);

#endif
