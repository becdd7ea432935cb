/*
 * fdio.c - see fdio.h.
 */
#include "fdio.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

int fd_write_all(int fd, const void *p, size_t n, const char *path, hf_err *e)
{
    const char *c = p;
    while (n) {
        ssize_t k = write(fd, c, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return hf_err_set(e, HF_EIO, "%s: write: %s", path, strerror(errno));
        c += k;
        n -= (size_t)k;
    }
    return 0;
}
