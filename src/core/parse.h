/* parse: the one checked integer parser (never atoi/strtol unchecked).
 * Pure; thread-safe. */
#ifndef SFVOPI_CORE_PARSE_H
#define SFVOPI_CORE_PARSE_H

#include <stdint.h>

#include "core/err.h"

/* Parses a whole decimal string (optional leading '-', digits only, no
 * spaces, no '+', at most 19 digits) into *out if it lies in [min, max].
 * ERR_INVALID otherwise; *out is untouched on error. */
enum err parse_i64(const char *s, int64_t min, int64_t max, int64_t *out) WARN_UNUSED;

#endif
