/* url: the one checker of absolute URLs given by customers (webhook URLs of
 * apps, stream URLs of answer replies): a known scheme, a host, an optional
 * port, a bounded length, no spaces or control characters. It does not
 * resolve or fetch anything. Pure; thread-safe. */
#ifndef SFVOPI_CORE_URL_H
#define SFVOPI_CORE_URL_H

#include <stdbool.h>
#include <stddef.h>

struct url_rule {
    size_t max;                /* bytes */
    const char *schemes[3];    /* "http://", ...; NULL-terminated, case-insensitive */
    const char *scheme_reason; /* the reason when no scheme matches */
    bool fragment;             /* whether "#..." is allowed */
};

/* True when s[0..len) is an absolute URL under rule: one of its schemes, a
 * non-empty host after any userinfo (an IPv6 literal in brackets), an
 * optional port of 1..65535 (an empty port means the default), at most
 * rule->max bytes, no byte <= 0x20 or 0x7f. On false, *reason (static text)
 * says why. */
bool url_valid(const struct url_rule *rule, const char *s, size_t len, const char **reason);

/* The longest WebSocket URL accepted, in bytes. */
#define URL_WS_MAX 2048

/* True when s[0..len) is a ws:// or wss:// URL (scheme in any case) under
 * url_valid's rules, at most URL_WS_MAX bytes and without a fragment ('#',
 * which RFC 6455 section 3 forbids). On false, *reason says why. */
bool url_ws_valid(const char *s, size_t len, const char **reason);

#endif
