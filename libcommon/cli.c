/*
 * cli.c - see cli.h.
 */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

uint64_t cli_u64(const char *prog, const char *opt, const char *s, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
        cli_usage_error(prog, "%s: '%s' is not an integer in %llu..%llu", opt, s,
                        (unsigned long long)min, (unsigned long long)max);
    return v;
}

double cli_f64(const char *prog, const char *opt, const char *s, double min, double max)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max))
        cli_usage_error(prog, "%s: '%s' is not a number in %g..%g", opt, s, min, max);
    return v;
}

void cli_fail(const char *prog, const char *where, const hf_err *e)
{
    fflush(stdout);
    fprintf(stderr, "%s: %s: %s\n", prog, where, e->msg);
    exit(hf_err_exit_code(e->code));
}

void cli_usage_error(const char *prog, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see %s --help)\n", prog);
    exit(64);
}
