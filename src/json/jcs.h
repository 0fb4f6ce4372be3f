/* jcs: the JSON Canonicalization Scheme of RFC 8785, over a jansson value:
 * what makes two bodies that differ only in member order, whitespace,
 * string escapes or number spelling ("1.0", "1", "1e0") the same bytes,
 * so that their hashes are equal. It writes text and never reads any:
 * parsing (and the UTF-8 check) is jansson's. Thread-safe (no shared
 * state). */
#ifndef SFVOPI_JSON_JCS_H
#define SFVOPI_JSON_JCS_H

#include <jansson.h>

#include "core/buf.h"
#include "core/err.h"

/* Deepest nesting written; jansson's parser refuses deeper input anyway. */
#define JCS_DEPTH_MAX 2048

/* Appends the canonical form of v to out: object members sorted by their
 * names as UTF-16 code units, no whitespace, strings with the minimal
 * escapes of RFC 8785 section 3.2.2.2, numbers as ECMAScript's
 * Number.prototype.toString writes the IEEE 754 double they denote
 * (integers too: 10000000000000001 becomes 10000000000000000, -0 becomes
 * 0). ERR_INVALID for a value RFC 8785 cannot write (a NaN or infinite
 * real, nesting past JCS_DEPTH_MAX, a string or name that is not valid
 * UTF-8); ERR_TOO_LARGE past out's cap; ERR_NOMEM. On error out holds a
 * partial text the caller discards. */
enum err jcs_write(const json_t *v, struct buf *out) WARN_UNUSED;

/* Appends the shortest text ECMAScript's Number.prototype.toString gives
 * for d (RFC 8785 section 3.2.2.3): "0" for both zeros, plain decimals
 * from 1e-7 up to 1e21, exponent form ("1e+21", "1.5e-7") outside.
 * ERR_INVALID for NaN and infinities. */
enum err jcs_number(double d, struct buf *out) WARN_UNUSED;

#endif
