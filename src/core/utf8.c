/* utf8: strict validation and escaping of byte strings that claim to be
 * text. The table of well-formed sequences is RFC 3629 section 4; the
 * escaping is RFC 3261's (section 25.1, "escaped"). */
#include "core/utf8.h"

#include <assert.h>

/* The length of the well-formed sequence that s[0..len) starts with
 * (len >= 1), or 0 when its first byte does not start one. Only the first
 * byte after the lead has a range of its own (the rows of RFC 3629's
 * table); that range is what excludes overlong forms (E0, F0), surrogates
 * (ED) and code points above U+10FFFF (F4). */
static size_t seq_len(const unsigned char *s, size_t len)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t n, i;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c == 0xE0)
        n = 3, lo = 0xA0;
    else if (c == 0xED)
        n = 3, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF)
        n = 3;
    else if (c == 0xF0)
        n = 4, lo = 0x90;
    else if (c == 0xF4)
        n = 4, hi = 0x8F;
    else if (c >= 0xF1 && c <= 0xF3)
        n = 4;
    else
        return 0; /* 80-C1 (continuations, overlong leads), F5-FF */
    if (len < n || s[1] < lo || s[1] > hi)
        return 0;
    for (i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    }
    return n;
}

bool utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n;

    while (i < len) {
        n = seq_len(p + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

static bool is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

size_t utf8_escape(char *out, size_t size, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0, n;

    assert(out && size >= 1);
    while (i < len) {
        /* One unit at a time: an escape s already holds, a character, or
         * one byte to escape. */
        if (p[i] == '%' && len - i >= 3 && is_hex(p[i + 1]) && is_hex(p[i + 2]))
            n = 3;
        else
            n = p[i] ? seq_len(p + i, len - i) : 0;
        if (n) {
            if (n > size - 1 - o)
                break;
            for (; n; n--)
                out[o++] = (char)p[i++];
        } else {
            if (3 > size - 1 - o)
                break;
            out[o++] = '%';
            out[o++] = hex[p[i] >> 4];
            out[o++] = hex[p[i] & 15];
            i++;
        }
    }
    out[o] = '\0';
    return o;
}
