/*
 * par.c - see par.h.
 */
#include "par.h"

#include <pthread.h>

void par_run(int threads, void *jobs, size_t size, void *(*fn)(void *))
{
    char *j = jobs;
    pthread_t tid[PAR_MAX_THREADS];
    int started[PAR_MAX_THREADS] = {0};
    if (threads > PAR_MAX_THREADS)
        threads = PAR_MAX_THREADS;
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&tid[t], NULL, fn, j + (size_t)t * size) == 0;
    fn(j);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else
            fn(j + (size_t)t * size); /* could not start: its share runs here */
    }
}
