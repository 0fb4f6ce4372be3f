/* route: a hand-written matcher over path segments. Literal segments are
 * compared raw; only parameters are percent-decoded, one segment at a
 * time, so an encoded slash can never change which route matches. */
#include "api/route.h"

#include <string.h>

#include "core/utf8.h"
#include "http/http.h"

#define SEGS_MAX 6

struct seg {
    const char *p;
    size_t n;
};

static bool seg_is(const struct seg *s, const char *lit)
{
    size_t n = strlen(lit);

    return s->n == n && memcmp(s->p, lit, n) == 0;
}

/* Splits "/a/b/c" into segments. False for a path that does not start with
 * '/', has more than SEGS_MAX segments, or has an empty segment (which
 * covers "//" and a trailing slash). */
static bool split(const char *path, size_t len, struct seg *segs, int *nsegs)
{
    size_t i = 0;
    int n = 0;

    if (len == 0 || path[0] != '/')
        return false;
    while (i < len) {
        size_t start = ++i;

        while (i < len && path[i] != '/')
            i++;
        if (i == start || n == SEGS_MAX)
            return false;
        segs[n].p = path + start;
        segs[n].n = i - start;
        n++;
    }
    *nsegs = n;
    return true;
}

/* Nothing checks an app id's format before the store looks it up, so text
 * that is not UTF-8 is dropped here: no app has such an id, and the store
 * takes only valid text. */
static void decode_app_id(const struct seg *s, struct route_match *m)
{
    size_t n;

    if (http_path_decode(s->p, s->n, m->app_id, sizeof(m->app_id), &n) != ERR_OK ||
        strlen(m->app_id) != n || !utf8_valid(m->app_id, n))
        m->app_id[0] = '\0';
}

static void decode_number(const struct seg *s, struct route_match *m)
{
    m->number_ok =
        http_path_decode(s->p, s->n, m->number, sizeof(m->number), &m->number_len) == ERR_OK;
    /* A client that turned '+' into a space meant '+'. */
    if (m->number_ok && m->number_len > 0 && m->number[0] == ' ')
        m->number[0] = '+';
}

static void decode_call_id(const struct seg *s, struct route_match *m)
{
    size_t n;

    if (http_path_decode(s->p, s->n, m->call_id, sizeof(m->call_id), &n) != ERR_OK ||
        strlen(m->call_id) != n)
        m->call_id[0] = '\0';
}

enum err route_match(const char *path, size_t len, struct route_match *m)
{
    struct seg segs[SEGS_MAX];
    int n = 0, base;

    m->id = ROUTE_NONE;
    m->app_id[0] = '\0';
    m->number[0] = '\0';
    m->number_len = 0;
    m->number_ok = false;
    m->call_id[0] = '\0';
    if (!split(path, len, segs, &n))
        return ERR_NOT_FOUND;

    if (n == 1 && seg_is(&segs[0], "healthz")) {
        m->id = ROUTE_HEALTHZ;
        return ERR_OK;
    }
    if (n == 1 && seg_is(&segs[0], "readyz")) {
        m->id = ROUTE_READYZ;
        return ERR_OK;
    }
    if (n == 1 && seg_is(&segs[0], "metrics")) {
        m->id = ROUTE_METRICS;
        return ERR_OK;
    }
    if (n == 1 && seg_is(&segs[0], "openapi.json")) {
        m->id = ROUTE_OPENAPI;
        return ERR_OK;
    }
    if (n >= 1 && seg_is(&segs[0], "sfvopi"))
        base = 1;
    else if (n >= 2 && seg_is(&segs[0], "superfone") && seg_is(&segs[1], "sfvopi"))
        base = 2;
    else
        return ERR_NOT_FOUND;

    n -= base;
    if (n == 1 && seg_is(&segs[base], "available-numbers")) {
        m->id = ROUTE_AVAILABLE;
        return ERR_OK;
    }
    if (n >= 1 && n <= 3 && seg_is(&segs[base], "calls")) {
        if (n == 3 && !seg_is(&segs[base + 2], "hangup"))
            return ERR_NOT_FOUND;
        if (n >= 2)
            decode_call_id(&segs[base + 1], m);
        m->id = n == 1 ? ROUTE_CALLS : n == 2 ? ROUTE_CALL : ROUTE_CALL_HANGUP;
        return ERR_OK;
    }
    if (n < 1 || !seg_is(&segs[base], "apps"))
        return ERR_NOT_FOUND;
    if (n == 1) {
        m->id = ROUTE_APPS;
        return ERR_OK;
    }
    decode_app_id(&segs[base + 1], m);
    if (n == 2) {
        m->id = ROUTE_APP;
        return ERR_OK;
    }
    if (!seg_is(&segs[base + 2], "numbers"))
        return ERR_NOT_FOUND;
    if (n == 3) {
        m->id = ROUTE_APP_NUMBERS;
        return ERR_OK;
    }
    if (n == 4) {
        decode_number(&segs[base + 3], m);
        m->id = ROUTE_APP_NUMBER;
        return ERR_OK;
    }
    return ERR_NOT_FOUND;
}
