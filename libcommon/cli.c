/*
 * cli.c - see cli.h.
 */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

size_t cli_u64_list(const char *prog, const char *opt, const char *s, uint64_t min, uint64_t max,
                    size_t *out, size_t maxn)
{
    size_t n = 0;
    char buf[256];
    if (strlen(s) >= sizeof buf)
        cli_usage_error(prog, "%s: list too long", opt);
    strcpy(buf, s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == maxn)
            cli_usage_error(prog, "%s: at most %zu values", opt, maxn);
        out[n++] = (size_t)cli_u64(prog, opt, t, min, max);
    }
    if (n == 0)
        cli_usage_error(prog, "%s: no values in \"%s\"", opt, s);
    return n;
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
