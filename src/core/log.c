/* log: key=value lines on stderr with one write(2) each. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"

static enum log_level min_level = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void log_set_level(enum log_level level)
{
    min_level = level;
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
    line[len++] = '\n';
    if (write(STDERR_FILENO, line, len) < 0) {
        /* Nothing sensible to do when stderr is gone. */
    }
}

void log_quote(char *out, size_t outsz, const char *in, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i;

    out[o++] = '"';
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        size_t need = (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') ? 4 : 1;

        if (o + need + 5 > outsz) {
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
