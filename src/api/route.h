/* route: maps a raw request path to one of the API's routes and extracts
 * its percent-decoded parameters. Both base paths (/sfvopi and
 * /superfone/sfvopi) map to the same routes. Pure; thread-safe. */
#ifndef SFVOPI_API_ROUTE_H
#define SFVOPI_API_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/e164.h"
#include "store/store.h"

enum route_id {
    ROUTE_NONE,
    ROUTE_HEALTHZ,
    ROUTE_READYZ,
    ROUTE_METRICS,     /* /metrics */
    ROUTE_OPENAPI,     /* /openapi.json */
    ROUTE_APPS,        /* /sfvopi/apps */
    ROUTE_APP,         /* /sfvopi/apps/:app_id */
    ROUTE_APP_NUMBERS, /* /sfvopi/apps/:app_id/numbers */
    ROUTE_APP_NUMBER,  /* /sfvopi/apps/:app_id/numbers/:voip_number */
    ROUTE_AVAILABLE,   /* /sfvopi/available-numbers */
    ROUTE_CALLS,       /* /sfvopi/calls */
    ROUTE_CALL,        /* /sfvopi/calls/:id */
    ROUTE_CALL_HANGUP, /* /sfvopi/calls/:id/hangup */
};

struct route_match {
    enum route_id id;
    /* The decoded :app_id, or "" when it cannot be an app id (bad escape,
     * too long, NUL, not UTF-8): such an id matches no app. */
    char app_id[APP_ID_LEN + 1];
    /* The decoded :voip_number with a leading space read as '+', and its
     * length (it may hold NULs); number_ok is false when it could not be
     * decoded. */
    char number[E164_INPUT_MAX + 1];
    size_t number_len;
    bool number_ok;
    /* The decoded :id of a call, or "" when it cannot be one (bad escape,
     * too long, NUL). Its syntax is the handler's to check. */
    char call_id[CALL_UUID_LEN + 1];
};

/* Matches path[0..len). ERR_NOT_FOUND when no route has this shape
 * (m->id is then ROUTE_NONE). */
enum err route_match(const char *path, size_t len, struct route_match *m) WARN_UNUSED;

#endif
