/* err: names for the project-wide error codes. Client-safe texts only. */
#include "core/err.h"

const char *err_str(enum err e)
{
    switch (e) {
    case ERR_OK: return "ok";
    case ERR_INVALID: return "invalid input";
    case ERR_NOT_FOUND: return "not found";
    case ERR_CONFLICT: return "conflict";
    case ERR_UNAUTHENTICATED: return "unauthenticated";
    case ERR_TOO_LARGE: return "too large";
    case ERR_NOT_ALLOWED: return "method not allowed";
    case ERR_RATE_LIMITED: return "too many requests";
    case ERR_UNAVAILABLE: return "database unavailable";
    case ERR_DB: return "database error";
    case ERR_NOMEM: return "out of memory";
    case ERR_INTERNAL: return "internal error";
    }
    return "internal error";
}
