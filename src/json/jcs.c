/* jcs: RFC 8785 canonical JSON. The one subtle part is numbers: the text
 * is the shortest decimal that reads back as the same double (found by
 * asking printf for 1, 2, ... 17 significant digits), laid out by the
 * rules of ECMAScript's Number.prototype.toString. Names sort by UTF-16
 * code units, not bytes: U+10000 and above (a surrogate pair, 0xD8xx)
 * sort before U+E000-U+FFFF, although their UTF-8 is greater. */
#include "json/jcs.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"

/* "d.dddddddddddddddde-308" and a NUL fit with room to spare. */
#define NUM_TEXT_MAX 40
/* Significant digits that always read back as the same double. */
#define DOUBLE_DIGITS_MAX 17

enum err jcs_number(double d, struct buf *out)
{
    char tmp[NUM_TEXT_MAX], digits[DOUBLE_DIGITS_MAX + 1];
    const char *p;
    char *end;
    long e10;
    int prec, k = 0, n, i;
    enum err e = ERR_OK;

    if (!isfinite(d))
        return ERR_INVALID;
    if (d == 0)
        return buf_append_char(out, '0');
    if (d < 0) {
        e = buf_append_char(out, '-');
        d = -d;
    }
    for (prec = 1; prec <= DOUBLE_DIGITS_MAX; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    /* tmp is "D[.DDD]e[+-]XX": its digits, then its exponent. */
    for (p = tmp; *p && *p != 'e'; p++) {
        if (*p >= '0' && *p <= '9' && k < DOUBLE_DIGITS_MAX)
            digits[k++] = *p;
    }
    if (*p != 'e' || k == 0)
        return ERR_INTERNAL;
    e10 = strtol(p + 1, &end, 10);
    while (k > 1 && digits[k - 1] == '0')
        k--;
    digits[k] = '\0';
    /* The value is 0.digits * 10^n (ECMAScript's n). */
    n = (int)e10 + 1;
    if (k <= n && n <= 21) {
        e = e ? e : buf_append(out, digits, (size_t)k);
        for (i = k; e == ERR_OK && i < n; i++)
            e = buf_append_char(out, '0');
    } else if (0 < n && n <= 21) {
        e = e ? e : buf_append(out, digits, (size_t)n);
        e = e ? e : buf_append_char(out, '.');
        e = e ? e : buf_append(out, digits + n, (size_t)(k - n));
    } else if (-6 < n && n <= 0) {
        e = e ? e : buf_append_str(out, "0.");
        for (i = 0; e == ERR_OK && i < -n; i++)
            e = buf_append_char(out, '0');
        e = e ? e : buf_append(out, digits, (size_t)k);
    } else {
        e = e ? e : buf_append_char(out, digits[0]);
        if (k > 1) {
            e = e ? e : buf_append_char(out, '.');
            e = e ? e : buf_append(out, digits + 1, (size_t)(k - 1));
        }
        e = e ? e : buf_printf(out, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
    }
    return e;
}

/* A string as RFC 8785 section 3.2.2.2 writes it: only '"', '\\' and the
 * controls escaped, the controls with a short form where JSON has one,
 * the others as \u00xx in lower-case hex; everything else as it is. */
static enum err write_string(const char *s, size_t len, struct buf *out)
{
    static const char hex[] = "0123456789abcdef";
    enum err e;
    size_t i, run = 0;

    if (!utf8_valid(s, len))
        return ERR_INVALID;
    e = buf_append_char(out, '"');
    for (i = 0; e == ERR_OK && i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t n = 2;

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        e = buf_append(out, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"':
        case '\\': esc[1] = (char)c; break;
        case '\b': esc[1] = 'b'; break;
        case '\t': esc[1] = 't'; break;
        case '\n': esc[1] = 'n'; break;
        case '\f': esc[1] = 'f'; break;
        case '\r': esc[1] = 'r'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            n = 6;
            break;
        }
        e = e ? e : buf_append(out, esc, n);
    }
    e = e ? e : buf_append(out, s + run, len - run);
    return e ? e : buf_append_char(out, '"');
}

/* The next UTF-16 code unit of a valid UTF-8 string at *p, and the
 * pending low surrogate of a pair in *low (0: none). 0 at the end. */
static unsigned next_unit(const unsigned char **p, unsigned *low)
{
    const unsigned char *s = *p;
    uint32_t cp;
    unsigned u;

    if (*low) {
        u = *low;
        *low = 0;
        return u;
    }
    if (!s[0])
        return 0;
    if (s[0] < 0x80) {
        cp = s[0];
        *p = s + 1;
    } else if (s[0] < 0xE0) {
        cp = ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
        *p = s + 2;
    } else if (s[0] < 0xF0) {
        cp = ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        *p = s + 3;
    } else {
        cp = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
             ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        *p = s + 4;
    }
    if (cp < 0x10000)
        return cp;
    cp -= 0x10000;
    *low = 0xDC00 + (cp & 0x3FF);
    return 0xD800 + (cp >> 10);
}

/* Orders two names (valid UTF-8, checked before sorting) by UTF-16 code
 * units; a name that is a prefix of the other comes first. */
static int name_cmp(const void *x, const void *y)
{
    const unsigned char *a = *(const unsigned char *const *)x;
    const unsigned char *b = *(const unsigned char *const *)y;
    unsigned la = 0, lb = 0, ua, ub;

    do {
        ua = next_unit(&a, &la);
        ub = next_unit(&b, &lb);
    } while (ua && ua == ub);
    return (ua > ub) - (ua < ub);
}

static enum err write_value(const json_t *v, struct buf *out, int depth);

static enum err write_object(const json_t *v, struct buf *out, int depth)
{
    size_t n = json_object_size(v), i = 0;
    const char **names = NULL;
    const char *name;
    json_t *m;
    enum err e = ERR_OK;

    if (n) {
        names = calloc(n, sizeof(*names));
        if (!names)
            return ERR_NOMEM;
    }
    json_object_foreach((json_t *)v, name, m)
    {
        if (i == n || !utf8_valid(name, strlen(name))) {
            e = ERR_INVALID;
            goto out_names;
        }
        names[i++] = name;
    }
    if (n)
        qsort(names, n, sizeof(*names), name_cmp);
    e = buf_append_char(out, '{');
    for (i = 0; e == ERR_OK && i < n; i++) {
        if (i)
            e = buf_append_char(out, ',');
        e = e ? e : write_string(names[i], strlen(names[i]), out);
        e = e ? e : buf_append_char(out, ':');
        e = e ? e : write_value(json_object_get(v, names[i]), out, depth + 1);
    }
    e = e ? e : buf_append_char(out, '}');
out_names:
    free(names);
    return e;
}

static enum err write_value(const json_t *v, struct buf *out, int depth)
{
    size_t i;
    enum err e;

    if (!v || depth > JCS_DEPTH_MAX)
        return ERR_INVALID;
    switch (json_typeof(v)) {
    case JSON_OBJECT: return write_object(v, out, depth);
    case JSON_ARRAY:
        e = buf_append_char(out, '[');
        for (i = 0; e == ERR_OK && i < json_array_size(v); i++) {
            if (i)
                e = buf_append_char(out, ',');
            e = e ? e : write_value(json_array_get(v, i), out, depth + 1);
        }
        return e ? e : buf_append_char(out, ']');
    case JSON_STRING: return write_string(json_string_value(v), json_string_length(v), out);
    case JSON_INTEGER: return jcs_number((double)json_integer_value(v), out);
    case JSON_REAL: return jcs_number(json_real_value(v), out);
    case JSON_TRUE: return buf_append_str(out, "true");
    case JSON_FALSE: return buf_append_str(out, "false");
    case JSON_NULL: return buf_append_str(out, "null");
    }
    return ERR_INVALID;
}

enum err jcs_write(const json_t *v, struct buf *out)
{
    return write_value(v, out, 0);
}
