/* utf8: the one rule for what counts as text (RFC 3629, strict: no
 * overlong forms, no surrogates, nothing above U+10FFFF), applied where
 * input enters the program. Nothing past those boundaries checks again,
 * so nothing here may be lax. Pure; thread-safe. */
#ifndef SFVOPI_CORE_UTF8_H
#define SFVOPI_CORE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when s[0..len) is well-formed UTF-8. len counts bytes; a NUL among
 * them is U+0000, which is valid (callers that hold C strings exclude it
 * themselves). s may be NULL when len is 0. */
bool utf8_valid(const char *s, size_t len);

/* Writes s[0..len) into out as well-formed UTF-8 text: each valid
 * character as it is, each byte that does not belong to one, and NUL,
 * as an RFC 3261 escape "%XX" (upper-case hex). An escape that s already
 * holds ('%' and two hex digits) is copied as it is. When not everything
 * fits in size - 1 bytes, out ends before the first character or escape
 * that does not fit whole: a cut never splits a character or an escape.
 * out is always NUL-terminated (size >= 1). Returns the length of out.
 * s and out must not overlap. */
size_t utf8_escape(char *out, size_t size, const char *s, size_t len);

#endif
