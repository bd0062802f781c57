/* error.c — error codes and the per-thread last-error message. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[512];

const char *ei_strerror(int err) {
    switch (err) {
    case EI_OK: return "EI_OK: success";
    case EI_ERR_IO: return "EI_ERR_IO: input/output error";
    case EI_ERR_FORMAT: return "EI_ERR_FORMAT: malformed file";
    case EI_ERR_UNSUPPORTED: return "EI_ERR_UNSUPPORTED: not supported";
    case EI_ERR_NOMEM: return "EI_ERR_NOMEM: out of memory";
    case EI_ERR_INVALID_ARG: return "EI_ERR_INVALID_ARG: invalid argument";
    case EI_ERR_RANGE: return "EI_ERR_RANGE: value out of range";
    case EI_ERR_CONTEXT_FULL: return "EI_ERR_CONTEXT_FULL: context budget exceeded";
    case EI_ERR_MISSING_KEY: return "EI_ERR_MISSING_KEY: required key or tensor missing";
    case EI_ERR_BUFFER_TOO_SMALL: return "EI_ERR_BUFFER_TOO_SMALL: output buffer too small";
    case EI_ERR_INVALID_UTF8: return "EI_ERR_INVALID_UTF8: text is not valid UTF-8";
    case EI_ERR_MISMATCH: return "EI_ERR_MISMATCH: belongs to another model or configuration";
    case EI_ERR_INTERNAL: return "EI_ERR_INTERNAL: internal error";
    default: return "EI_ERR_?: unknown error code";
    }
}

const char *ei_last_error(void) { return last_error; }

void ei_clear_error(void) { last_error[0] = 0; }

int ei_set_error(int err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return err;
}
