/* buf: bounded growable buffer. Growth doubles; sizes are overflow-checked. */
#include "core/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void buf_release(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *buf_take(struct buf *b)
{
    char *p;

    if (!b->data && buf_reserve(b, 0) != ERR_OK)
        return NULL;
    p = b->data;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

enum err buf_reserve(struct buf *b, size_t n)
{
    size_t need, ncap;
    char *p;

    size_t limit; /* the most storage max allows: max bytes and the NUL */

    /* need + 1 must also fit: the NUL is stored after the data. */
    if (__builtin_add_overflow(b->len, n, &need) || need > b->max || need == SIZE_MAX)
        return ERR_TOO_LARGE;
    if (need + 1 <= b->cap)
        return ERR_OK;
    limit = b->max == SIZE_MAX ? SIZE_MAX : b->max + 1;
    ncap = b->cap ? b->cap : 64;
    while (ncap < need + 1) {
        if (__builtin_mul_overflow(ncap, 2, &ncap)) {
            ncap = limit;
            break;
        }
    }
    if (ncap > limit)
        ncap = limit;
    p = realloc(b->data, ncap);
    if (!p)
        return ERR_NOMEM;
    if (!b->data)
        p[0] = '\0';
    b->data = p;
    b->cap = ncap;
    return ERR_OK;
}

enum err buf_append(struct buf *b, const void *p, size_t n)
{
    enum err e = buf_reserve(b, n);

    if (e != ERR_OK)
        return e;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return ERR_OK;
}

enum err buf_append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

enum err buf_append_char(struct buf *b, char c)
{
    return buf_append(b, &c, 1);
}

enum err buf_append_i64(struct buf *b, int64_t v)
{
    char tmp[24];
    char *p = tmp + sizeof(tmp);
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

enum err buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    enum err e;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return ERR_INTERNAL;
    e = buf_reserve(b, (size_t)n);
    if (e != ERR_OK)
        return e;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return ERR_OK;
}
