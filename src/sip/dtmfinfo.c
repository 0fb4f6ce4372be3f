/* dtmfinfo: the key of a SIP INFO body, read without trusting it. */
#include <string.h>
#include <strings.h>

#include "sip/dtmfinfo.h"

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* One key, trimmed of white space: a character or an event number. */
static enum err read_key(const char *p, size_t len, char *digit)
{
    static const char events[] = "0123456789*#ABCD";

    while (len && is_space(*p)) {
        p++;
        len--;
    }
    while (len && is_space(p[len - 1]))
        len--;
    if (len == 1) {
        char c = p[0];

        if (c >= 'a' && c <= 'd')
            c = (char)(c - 'a' + 'A');
        if ((c >= '0' && c <= '9') || c == '*' || c == '#' || (c >= 'A' && c <= 'D')) {
            *digit = c;
            return ERR_OK;
        }
        return ERR_INVALID;
    }
    if (len == 2 && p[0] == '1' && p[1] >= '0' && p[1] <= '5') {
        *digit = events[10 + (p[1] - '0')];
        return ERR_OK;
    }
    return ERR_INVALID;
}

enum err dtmfinfo_parse(enum dtmfinfo_kind kind, const char *body, size_t len, char *digit)
{
    const char *p = body, *end = body + len;
    bool found = false;
    char d = 0;

    if (len > DTMFINFO_BODY_MAX)
        return ERR_TOO_LARGE;
    if (kind == DTMFINFO_PLAIN)
        return read_key(body, len, digit);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        const char *q = p, *eq;

        while (q < line_end && (*q == ' ' || *q == '\t'))
            q++;
        eq = memchr(q, '=', (size_t)(line_end - q));
        if (eq) {
            const char *name_end = eq;

            while (name_end > q && (name_end[-1] == ' ' || name_end[-1] == '\t'))
                name_end--;
            if (name_end - q == 6 && strncasecmp(q, "Signal", 6) == 0) {
                if (found || read_key(eq + 1, (size_t)(line_end - eq - 1), &d) != ERR_OK)
                    return ERR_INVALID;
                found = true;
            }
        }
        p = eol ? eol + 1 : end;
    }
    if (!found)
        return ERR_INVALID;
    *digit = d;
    return ERR_OK;
}
