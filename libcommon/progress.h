/*
 * progress.h - progress lines on stderr for long work, only when stderr is a
 * terminal (quiet in pipes, logs and tests). At most a few updates a second.
 */
#ifndef HF_PROGRESS_H
#define HF_PROGRESS_H

#include <stddef.h>

typedef struct progress {
    const char *label;
    int on;
    double t0, last;
} progress;

void progress_start(progress *p, const char *label);
/* Safe to call from any one thread at a time. */
void progress_update(progress *p, size_t done, size_t total);
void progress_done(progress *p);
/* Monotonic seconds. */
double now_seconds(void);

#endif
