/* url: the checker behind validate_url (app webhooks) and stream_url_valid
 * (answer replies), so that both rules read a host and a port the same way. */
#include "core/url.h"

#include <string.h>
#include <strings.h>

/* The authority s[start..end): userinfo@host:port. */
static bool authority_valid(const char *s, size_t start, size_t end, const char **reason)
{
    size_t i, host_start = start, host_end = end;
    bool bracket;

    for (i = start; i < end; i++) {
        if (s[i] == '@')
            host_start = i + 1;
    }
    bracket = host_start < host_end && s[host_start] == '[';
    /* Strip a port: digits after the last ':' (outside an IPv6 literal). */
    i = host_end;
    while (i > host_start && s[i - 1] >= '0' && s[i - 1] <= '9')
        i--;
    if (i > host_start && s[i - 1] == ':' && (!bracket || s[i - 2] == ']')) {
        size_t digits = host_end - i, k;
        unsigned long port = 0;

        /* An empty port ("host:") is allowed and means the default. */
        for (k = i; k < host_end && digits <= 5; k++)
            port = port * 10 + (unsigned long)(s[k] - '0');
        if (digits > 5 || (digits > 0 && (port == 0 || port > 65535))) {
            *reason = "has an invalid port";
            return false;
        }
        host_end = i - 1;
    }
    if (host_end <= host_start ||
        (bracket && (host_end - host_start < 3 || s[host_end - 1] != ']'))) {
        *reason = "must have a host";
        return false;
    }
    for (i = host_start; i < host_end; i++) {
        if (!bracket && (s[i] == ':' || s[i] == '[' || s[i] == ']')) {
            *reason = "has an invalid host";
            return false;
        }
    }
    return true;
}

bool url_valid(const struct url_rule *rule, const char *s, size_t len, const char **reason)
{
    size_t i, scheme = 0, end;

    if (len > rule->max) {
        *reason = "must be at most 2048 bytes";
        return false;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c <= 0x20 || c == 0x7f) {
            *reason = "must not contain spaces or control characters";
            return false;
        }
    }
    for (i = 0; rule->schemes[i] && !scheme; i++) {
        size_t n = strlen(rule->schemes[i]);

        if (len >= n && strncasecmp(s, rule->schemes[i], n) == 0)
            scheme = n;
    }
    if (!scheme) {
        *reason = rule->scheme_reason;
        return false;
    }
    if (!rule->fragment && memchr(s, '#', len)) {
        *reason = "must not have a fragment";
        return false;
    }
    /* The authority runs to the first '/', '?' or '#'. */
    end = scheme;
    while (end < len && s[end] != '/' && s[end] != '?' && s[end] != '#')
        end++;
    return authority_valid(s, scheme, end, reason);
}

bool url_ws_valid(const char *s, size_t len, const char **reason)
{
    static const struct url_rule rule = {
        URL_WS_MAX, {"ws://", "wss://", NULL}, "must be a ws or wss URL", false};

    return url_valid(&rule, s, len, reason);
}
