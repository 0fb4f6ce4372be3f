/* json: request-body parsing and the response writer. The writer escapes
 * exactly what RFC 8259 requires (quote, backslash, controls), so output
 * is compact and byte-stable. */
#include "json/json.h"

#include <stdbool.h>
#include <string.h>

#include "core/clock.h"

enum err js_parse_object(const char *body, size_t len, json_t **out)
{
    json_error_t jerr;
    json_t *v;

    /* Without JSON_ALLOW_NUL jansson refuses \u0000; it always checks UTF-8. */
    v = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!v)
        return ERR_INVALID;
    if (!json_is_object(v)) {
        json_decref(v);
        return ERR_INVALID;
    }
    *out = v;
    return ERR_OK;
}

size_t js_utf8_count(const char *s, size_t len)
{
    size_t i, n = 0;

    for (i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            n++;
    }
    return n;
}

void jw_init(struct jw *w, struct buf *b)
{
    w->b = b;
    w->err = ERR_OK;
}

/* The fast path copies into room the buffer already has; growing, caps and
 * errors are buf_append's. */
static inline void put(struct jw *w, const char *p, size_t n)
{
    struct buf *b = w->b;

    if (w->err != ERR_OK)
        return;
    if (b->data && n < b->cap - b->len) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return;
    }
    w->err = buf_append(b, p, n);
}

void jw_raw(struct jw *w, const char *s)
{
    put(w, s, strlen(s));
}

void jw_rawn(struct jw *w, const char *s, size_t n)
{
    put(w, s, n);
}

/* The bytes RFC 8259 makes a string escape; NUL, which ends s, is one. */
static inline bool must_escape(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\';
}

/* Most strings (numbers, ids, statuses) need no escape: they are measured
 * once and copied with their quotes in one step, which in a 100-row list
 * halves the cost of writing them. The rest take the escaping loop. */
void jw_str(struct jw *w, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    struct buf *b = w->b;
    const char *run = s;
    char esc[6], *d;
    size_t clean;

    while (!must_escape((unsigned char)*run))
        run++;
    clean = (size_t)(run - s);
    if (*run == '\0' && w->err == ERR_OK && b->data && clean < b->cap - b->len &&
        b->cap - b->len - clean > 2) {
        d = b->data + b->len;
        d[0] = '"';
        memcpy(d + 1, s, clean);
        d[clean + 1] = '"';
        d[clean + 2] = '\0';
        b->len += clean + 2;
        return;
    }
    /* The escaping loop, from the first byte to escape on. */
    run = s;
    s += clean;
    put(w, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        size_t n = 2;

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(w, run, (size_t)(s - run));
        run = s + 1;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        put(w, esc, n);
    }
    put(w, run, (size_t)(s - run));
    put(w, "\"", 1);
}

void jw_str_or_null(struct jw *w, const char *s)
{
    if (s[0])
        jw_str(w, s);
    else
        put(w, "null", 4);
}

void jw_i64(struct jw *w, int64_t v)
{
    if (w->err == ERR_OK)
        w->err = buf_append_i64(w->b, v);
}

void jw_i64_or_null(struct jw *w, int64_t v)
{
    if (v)
        jw_i64(w, v);
    else
        put(w, "null", 4);
}

void jw_time_or_null(struct jw *w, int64_t ms)
{
    char ts[CLOCK_ISO_LEN + 3];

    if (!ms) {
        put(w, "null", 4);
        return;
    }
    ts[0] = '"';
    clock_format_iso(ms, ts + 1);
    ts[CLOCK_ISO_LEN + 1] = '"';
    put(w, ts, CLOCK_ISO_LEN + 2);
}

enum err jw_end(const struct jw *w)
{
    return w->err;
}
