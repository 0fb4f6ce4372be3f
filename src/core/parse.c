/* parse: strict decimal integers with overflow checks. */
#include "core/parse.h"

#include <stdbool.h>
#include <string.h>

enum err parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    bool neg = false;
    int64_t v = 0;
    int digits = 0;

    if (!s)
        return ERR_INVALID;
    if (*s == '-') {
        neg = true;
        s++;
    }
    for (; *s; s++) {
        int d;

        if (*s < '0' || *s > '9' || ++digits > 19)
            return ERR_INVALID;
        d = *s - '0';
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, neg ? -d : d, &v))
            return ERR_INVALID;
    }
    if (digits == 0 || v < min || v > max)
        return ERR_INVALID;
    *out = v;
    return ERR_OK;
}

enum err parse_listen_addr(const char *s, char *host, size_t hostsz, int *port)
{
    const char *colon;
    size_t hl;
    int64_t p;

    if (s[0] == '[') {
        const char *end = strchr(s, ']');

        if (!end || end[1] != ':')
            return ERR_INVALID;
        hl = (size_t)(end - s - 1);
        colon = end + 1;
        s++;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return ERR_INVALID;
        hl = (size_t)(colon - s);
        if (memchr(s, ':', hl))
            return ERR_INVALID; /* a bare IPv6 address needs brackets */
    }
    if (hl == 0 || hl >= hostsz || parse_i64(colon + 1, 0, 65535, &p) != ERR_OK)
        return ERR_INVALID;
    memcpy(host, s, hl);
    host[hl] = '\0';
    *port = (int)p;
    return ERR_OK;
}
