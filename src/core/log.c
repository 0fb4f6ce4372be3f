/* log: key=value lines on stderr with one write(2) each. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"

static enum log_level min_level = LOG_INFO;
static enum log_format format = LOG_TEXT;

static bool hold;
static char held[512];

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void log_set_level(enum log_level level)
{
    min_level = level;
}

void log_set_format(enum log_format f)
{
    format = f;
}

/* A JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)? */
static bool is_number(const char *s, size_t n)
{
    size_t i = 0, start;
    bool dot = false;

    if (n && s[0] == '-')
        i++;
    start = i;
    if (start == n)
        return false;
    for (; i < n; i++) {
        if (s[i] == '.') {
            if (dot || i == start || i + 1 == n)
                return false;
            dot = true;
        } else if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return !(s[start] == '0' && start + 1 < n && s[start + 1] != '.');
}

size_t log_line_to_json(const char *line, size_t len, char *out, size_t outsz)
{
    size_t i = 0, o = 0;
    bool first = true;

#define PUT(c)                                                                                     \
    do {                                                                                           \
        if (o + 2 < outsz)                                                                         \
            out[o++] = (c);                                                                        \
    } while (0)
    PUT('{');
    while (i < len) {
        size_t ks, ke, vs, ve, k;
        bool quoted;

        while (i < len && line[i] == ' ')
            i++;
        ks = i;
        while (i < len && line[i] != '=' && line[i] != ' ')
            i++;
        ke = i;
        if (i >= len || line[i] != '=' || ke == ks)
            break;
        i++;
        quoted = i < len && line[i] == '"';
        if (quoted) {
            vs = ++i;
            while (i < len && line[i] != '"')
                i++;
            ve = i;
            if (i < len)
                i++;
        } else {
            vs = i;
            while (i < len && line[i] != ' ')
                i++;
            ve = i;
        }
        if (!first)
            PUT(',');
        first = false;
        PUT('"');
        for (k = ks; k < ke; k++)
            PUT(line[k]);
        PUT('"');
        PUT(':');
        if (!quoted && is_number(line + vs, ve - vs)) {
            for (k = vs; k < ve; k++)
                PUT(line[k]);
            continue;
        }
        PUT('"');
        for (k = vs; k < ve; k++) {
            if (line[k] == '\\' || line[k] == '"')
                PUT('\\');
            PUT(line[k]);
        }
        PUT('"');
    }
    PUT('}');
#undef PUT
    out[o] = '\0';
    return o;
}

bool log_level_parse(const char *s, enum log_level *out)
{
    size_t i;

    for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return true;
        }
    }
    return false;
}

bool log_enabled(enum log_level level)
{
    return level >= min_level && level != LOG_OFF;
}

void log_hold(bool on)
{
    hold = on;
    held[0] = '\0';
}

/* The value of key= in a key=value line: quoted (up to the closing quote)
 * or bare (up to a space). */
static bool find_value(const char *text, const char *key, const char **v, size_t *vlen)
{
    size_t kl = strlen(key);
    const char *p = text;

    while ((p = strstr(p, key)) != NULL) {
        if ((p == text || p[-1] == ' ') && p[kl] == '=') {
            p += kl + 1;
            if (*p == '"') {
                const char *q = ++p;

                while (*q && !(*q == '"' && q[-1] != '\\'))
                    q++;
                *v = p;
                *vlen = (size_t)(q - p);
            } else {
                *v = p;
                *vlen = strcspn(p, " ");
            }
            return true;
        }
        p += kl;
    }
    return false;
}

static void keep_cause(const char *text)
{
    const char *v;
    size_t vlen;

    if (!find_value(text, "err", &v, &vlen) && !find_value(text, "msg", &v, &vlen))
        return;
    if (vlen >= sizeof(held))
        vlen = sizeof(held) - 1;
    memcpy(held, v, vlen);
    held[vlen] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

bool log_held_cause(char *out, size_t outsz)
{
    size_t o = 0;
    bool space = false;

    if (!held[0] || outsz == 0)
        return false;
    for (const char *p = held; *p && o + 1 < outsz; p++) {
        int c = (unsigned char)*p;

        if (c == '\\' && p[1] == 'x' && hexval(p[2]) >= 0 && hexval(p[3]) >= 0) {
            c = hexval(p[2]) * 16 + hexval(p[3]);
            p += 3;
        }
        if (c < 0x20 || c >= 0x7f || c == ' ') {
            space = o > 0;
            continue;
        }
        if (space && o + 2 < outsz)
            out[o++] = ' ';
        space = false;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    held[0] = '\0';
    return o > 0;
}

void log_write(enum log_level level, const char *fmt, ...)
{
    char line[2304];
    char ts[CLOCK_ISO_LEN + 1];
    va_list ap;
    int n, m;
    size_t len;

    if (!log_enabled(level))
        return;
    clock_format_iso(clock_now_ms(), ts);
    n = snprintf(line, sizeof(line), "ts=%s level=%s ", ts, level_names[level]);
    if (n < 0)
        return;
    va_start(ap, fmt);
    m = vsnprintf(line + n, 2048, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    len = (size_t)n + ((size_t)m < 2048 ? (size_t)m : 2047);
    if (hold) {
        line[len] = '\0';
        if (level >= LOG_WARN)
            keep_cause(line + n);
        return;
    }
    if (format == LOG_JSON) {
        char json[3072];

        len = log_line_to_json(line, len, json, sizeof(json) - 1);
        json[len++] = '\n';
        if (write(STDERR_FILENO, json, len) < 0) {
            /* Nothing sensible to do when stderr is gone. */
        }
        return;
    }
    line[len++] = '\n';
    if (write(STDERR_FILENO, line, len) < 0) {
        /* Nothing sensible to do when stderr is gone. */
    }
}

/* Bytes that log_quote writes for c. */
static size_t quoted_len(unsigned char c)
{
    return (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') ? 4 : 1;
}

void log_quote(char *out, size_t outsz, const char *in, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i, total = 0, room;

    for (i = 0; i < len; i++)
        total += quoted_len((unsigned char)in[i]);
    /* Room for the text between the quotes and the NUL; when the whole text
     * does not fit, "..." takes three of it. */
    room = outsz - 3;
    if (total > room)
        room -= 3;
    out[o++] = '"';
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        size_t need = quoted_len(c);

        if (o - 1 + need > room) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (need == 4) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
}
