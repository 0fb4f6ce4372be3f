/* apikey: the format of API keys, their generation from the CSPRNG and the
 * hash under which they are stored. A key is "sfvk_" followed by 43
 * characters of [A-Za-z0-9] (256 bits); keys of 32 to 123 such characters
 * are accepted, for keys issued elsewhere. The plaintext never reaches the
 * database or a log: only its SHA-256 and its first 12 characters.
 * Pure apart from the CSPRNG; thread-safe. */
#ifndef SFVOPI_AUTH_APIKEY_H
#define SFVOPI_AUTH_APIKEY_H

#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"

#define APIKEY_PREFIX "sfvk_"
#define APIKEY_PREFIX_LEN 5
#define APIKEY_BODY_LEN 43
#define APIKEY_LEN (APIKEY_PREFIX_LEN + APIKEY_BODY_LEN)
#define APIKEY_MIN_BODY 32
#define APIKEY_MAX_LEN 128

/* Writes a new key and NUL into out. */
void apikey_generate(char out[APIKEY_LEN + 1]);
/* True when key[0..len) has the format of a key; false for anything else,
 * including embedded NULs. */
bool apikey_well_formed(const char *key, size_t len);
/* The stored hash of a key. */
void apikey_hash(const char *key, size_t len, unsigned char out[KEY_HASH_LEN]);
/* The displayable prefix of a key: its first KEY_PREFIX_LEN characters. */
void apikey_prefix(const char *key, char out[KEY_PREFIX_LEN + 1]);

#endif
