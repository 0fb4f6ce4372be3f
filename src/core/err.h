/* err: the one project-wide error enum.
 * Every fallible function returns an enum err and hands results out through
 * out-parameters. The mapping to HTTP status lives in the API layer; this
 * module knows nothing about HTTP. */
#ifndef SFVOPI_CORE_ERR_H
#define SFVOPI_CORE_ERR_H

enum err {
    ERR_OK = 0,
    ERR_INVALID,         /* input failed validation */
    ERR_NOT_FOUND,       /* the object does not exist (for this caller) */
    ERR_CONFLICT,        /* a uniqueness rule forbids the change */
    ERR_UNAUTHENTICATED, /* missing, malformed, unknown or revoked credential */
    ERR_TOO_LARGE,       /* input over a named cap */
    ERR_NOT_ALLOWED,     /* the method is not served on that path */
    ERR_RATE_LIMITED,    /* the caller is over its request rate */
    ERR_UNAVAILABLE,     /* a dependency (database) is busy or unreachable */
    ERR_DB,              /* the database answered with an error */
    ERR_NOMEM,           /* an allocation failed */
    ERR_INTERNAL,        /* a programmer or environment fault */
};

#define WARN_UNUSED __attribute__((warn_unused_result))

/* A short, generic, client-safe description of an error ("database
 * unavailable"). Never contains driver text. Thread-safe; static storage. */
const char *err_str(enum err e);

#endif
