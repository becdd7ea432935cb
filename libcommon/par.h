/*
 * par.h - the one way libcommon runs work on several threads: job t of an
 * array runs on a thread of its own, job 0 on the caller's, and a job whose
 * thread cannot be started runs on the caller's after the others, so a
 * result never depends on whether threads could be had. Callers sum the
 * jobs' results in job order, which keeps them independent of the thread
 * count as well.
 */
#ifndef HF_PAR_H
#define HF_PAR_H

#include <stddef.h>

#define PAR_MAX_THREADS 64

/* fn(jobs + t * size) for t < threads (at most PAR_MAX_THREADS). */
void par_run(int threads, void *jobs, size_t size, void *(*fn)(void *));

#endif
