/* buf: a bounded, growable byte buffer.
 * Every buffer has a hard cap chosen by its owner; an append past the cap
 * fails with ERR_TOO_LARGE instead of growing, so no input can exhaust memory.
 * The contents are always NUL-terminated (the NUL is not counted in len).
 * Not thread-safe: a buffer belongs to one thread at a time. */
#ifndef SFVOPI_CORE_BUF_H
#define SFVOPI_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct buf {
    char *data; /* owned; NULL until the first append */
    size_t len; /* bytes used, excluding the trailing NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* hard limit on len */
};

/* Prepares an empty buffer that may hold at most max bytes. Allocates nothing. */
void buf_init(struct buf *b, size_t max);
/* Frees the storage; the buffer may be initialised again. */
void buf_release(struct buf *b);
/* Empties the buffer but keeps its storage for reuse. */
void buf_reset(struct buf *b);
/* Hands the storage to the caller (free() it); the buffer is left empty.
 * Returns a valid NUL-terminated string even for an empty buffer, or NULL on
 * allocation failure. */
char *buf_take(struct buf *b) WARN_UNUSED;

/* Makes room for n more bytes. ERR_TOO_LARGE past max, ERR_NOMEM. */
enum err buf_reserve(struct buf *b, size_t n) WARN_UNUSED;
enum err buf_append(struct buf *b, const void *p, size_t n) WARN_UNUSED;
enum err buf_append_str(struct buf *b, const char *s) WARN_UNUSED;
enum err buf_append_char(struct buf *b, char c) WARN_UNUSED;
enum err buf_append_i64(struct buf *b, int64_t v) WARN_UNUSED;
enum err buf_printf(struct buf *b, const char *fmt, ...) WARN_UNUSED
    __attribute__((format(printf, 2, 3)));

#endif
