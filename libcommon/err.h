/*
 * err.h - errors as values.
 *
 * Library functions never print and never exit: they return 0 on success or
 * a negative HF_E* code, and fill a caller-owned hf_err with one line of
 * text. Filters turn that into "name: input:frame N: message" and a
 * sysexits-style exit code (hf_err_exit_code).
 */
#ifndef HF_ERR_H
#define HF_ERR_H

#include <stdarg.h>

enum {
    HF_OK = 0,
    HF_EUSAGE = -1,    /* bad option or argument              -> EX_USAGE 64   */
    HF_EDATA = -2,     /* malformed or inconsistent input      -> EX_DATAERR 65 */
    HF_EOPEN = -3,     /* cannot open input/output             -> EX_NOINPUT 66 */
    HF_ENOMEM = -4,    /* allocation failed or over a limit    -> EX_SOFTWARE 70 */
    HF_EINTERNAL = -5, /* a bug                              -> EX_SOFTWARE 70 */
    HF_EIO = -6,       /* read/write failure                   -> EX_IOERR 74   */
    HF_EOF = -7,       /* clean end of stream (not an error for callers that expect it) */
};

typedef struct hf_err {
    int code;
    char msg[512];
} hf_err;

/* Fill e (if non-NULL) with a formatted message; returns code so callers can
 * write `return hf_err_set(e, HF_EDATA, "...")`. */
int hf_err_set(hf_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prefix the existing message: "prefix: old message". Returns e->code. */
int hf_err_prefix(hf_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* sysexits code for an HF_E* value. */
int hf_err_exit_code(int code);

#endif
