/* json: thin helpers over jansson for reading request bodies, and a
 * streaming writer that serialises responses straight into one buffer.
 * Reading is strict: valid UTF-8 only, no U+0000 in strings, no duplicate
 * keys, an object at the top. Thread-safe (no shared state). */
#ifndef SFVOPI_JSON_JSON_H
#define SFVOPI_JSON_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

/* Parses body[0..len) as a JSON object. On success *out is a new reference
 * the caller must json_decref. ERR_INVALID for anything else. */
enum err js_parse_object(const char *body, size_t len, json_t **out) WARN_UNUSED;

/* Number of Unicode code points in a valid UTF-8 string. */
size_t js_utf8_count(const char *s, size_t len);

/* A writer over a buffer with a sticky error: after the first failure
 * further writes do nothing and js_end reports the failure. */
struct jw {
    struct buf *b;
    enum err err;
};

void jw_init(struct jw *w, struct buf *b);
/* Appends raw JSON text (punctuation, keys written by the program). */
void jw_raw(struct jw *w, const char *s);
void jw_rawn(struct jw *w, const char *s, size_t n);
/* jw_raw for a string literal, without measuring it at run time. */
#define jw_lit(w, lit) jw_rawn((w), "" lit, sizeof(lit) - 1)
/* Appends a JSON string literal for the UTF-8 text s (escaped). */
void jw_str(struct jw *w, const char *s);
/* Appends a string literal, or null for "" . */
void jw_str_or_null(struct jw *w, const char *s);
void jw_i64(struct jw *w, int64_t v);
/* Appends v, or null for 0. */
void jw_i64_or_null(struct jw *w, int64_t v);
/* Appends a timestamp string ("2026-02-02T10:30:00.000Z"), or null for 0. */
void jw_time_or_null(struct jw *w, int64_t ms);
/* The first error, or ERR_OK. */
enum err jw_end(const struct jw *w) WARN_UNUSED;

#endif
