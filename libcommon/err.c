/*
 * err.c - see err.h. Messages are truncated, never overflowed.
 */
#include "err.h"

#include <stdio.h>
#include <string.h>

int hf_err_set(hf_err *e, int code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

int hf_err_prefix(hf_err *e, const char *fmt, ...)
{
    if (!e)
        return HF_EINTERNAL;
    char pre[256], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    snprintf(e->msg, sizeof e->msg, "%s: %s", pre, old);
    return e->code;
}

int hf_err_exit_code(int code)
{
    switch (code) {
    case HF_OK: return 0;
    case HF_EUSAGE: return 64;
    case HF_EDATA: return 65;
    case HF_EOPEN: return 66;
    case HF_EIO: return 74;
    default: return 70;
    }
}
