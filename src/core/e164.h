/* e164: phone-number normalisation to E.164, exactly as API.md section 1
 * says (strip separators, 00 -> +, national forms get the default country
 * code, bare international forms need an ITU-assigned country code).
 * Pure; thread-safe. */
#ifndef SFVOPI_CORE_E164_H
#define SFVOPI_CORE_E164_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

/* "+" and at most 15 digits, plus NUL. */
#define E164_MAX 17
/* Longer raw inputs are rejected before any work. */
#define E164_INPUT_MAX 64

/* True when cc (1 to 3 digits) is a country code assigned by the ITU. */
bool e164_cc_assigned(const char *digits, size_t n);

/* True when default_cc is usable as the default country code: an assigned
 * country code of 1 to 3 digits. */
bool e164_default_cc_valid(const char *default_cc);

/* Normalises in[0..len) (which need not be NUL-terminated and may contain
 * any bytes) into out as "+<digits>". default_cc is the country code, as
 * digits, given to 10-digit national numbers. ERR_INVALID when the result
 * is not ^\+[1-9][0-9]{7,14}$. out is written only on success. */
enum err e164_normalize(const char *in, size_t len, const char *default_cc,
                        char out[E164_MAX]) WARN_UNUSED;

#endif
