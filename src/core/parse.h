/* parse: the one checked integer parser (never atoi/strtol unchecked).
 * Pure; thread-safe. */
#ifndef SFVOPI_CORE_PARSE_H
#define SFVOPI_CORE_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* Parses a whole decimal string (optional leading '-', digits only, no
 * spaces, no '+', at most 19 digits) into *out if it lies in [min, max].
 * ERR_INVALID otherwise; *out is untouched on error. */
enum err parse_i64(const char *s, int64_t min, int64_t max, int64_t *out) WARN_UNUSED;

/* Splits a listen address, "HOST:PORT" or "[V6]:PORT", into host and port
 * (port in 0..65535; a bare IPv6 address needs brackets). ERR_INVALID
 * otherwise, or when host does not fit hostsz. Pure. */
enum err parse_listen_addr(const char *s, char *host, size_t hostsz, int *port) WARN_UNUSED;

#endif
