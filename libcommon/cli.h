/*
 * cli.h - the little a filter's main() needs: number parsing for options,
 * and the one error line "prog: input: message" followed by the sysexits
 * code. This is the only libcommon module that prints or exits; it exists
 * so every filter fails the same way.
 */
#ifndef HF_CLI_H
#define HF_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Parse an unsigned integer in [min, max]; on failure print a usage error
 * naming the option and exit 64. */
uint64_t cli_u64(const char *prog, const char *opt, const char *s, uint64_t min, uint64_t max);
double cli_f64(const char *prog, const char *opt, const char *s, double min, double max);
/* A comma-separated list of such integers ("10,16,32") into out[maxn];
 * returns how many. An empty or over-long list is a usage error too. */
size_t cli_u64_list(const char *prog, const char *opt, const char *s, uint64_t min, uint64_t max,
                    size_t *out, size_t maxn);

/* Print "prog: where: e->msg" and exit with e's sysexits code. */
_Noreturn void cli_fail(const char *prog, const char *where, const hf_err *e);
/* Print "prog: message" and exit 64 (plus a pointer to --help). */
_Noreturn void cli_usage_error(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
