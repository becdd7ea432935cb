/*
 * progress.c - see progress.h.
 */
#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void progress_start(progress *p, const char *label)
{
    p->label = label;
    p->on = isatty(2);
    p->t0 = p->last = now_seconds();
}

void progress_update(progress *p, size_t done, size_t total)
{
    if (!p->on)
        return;
    double t = now_seconds();
    if (t - p->last < 0.25 && done < total)
        return;
    p->last = t;
    if (total)
        fprintf(stderr, "\r%s: %zu/%zu (%.0f%%) %.1fs", p->label, done, total,
                100.0 * (double)done / (double)total, t - p->t0);
    else
        fprintf(stderr, "\r%s: %zu %.1fs", p->label, done, t - p->t0);
    fflush(stderr);
}

void progress_done(progress *p)
{
    if (p->on)
        fprintf(stderr, "\n");
}
