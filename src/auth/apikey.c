/* apikey: key format, generation and hashing. Keys carry 256 bits from the
 * CSPRNG, so a single fast SHA-256 is the right storage hash: there is no
 * low-entropy secret for a slow hash to protect. */
#include "auth/apikey.h"

#include <sodium.h>
#include <string.h>

#include "core/rand.h"

void apikey_generate(char out[APIKEY_LEN + 1])
{
    memcpy(out, APIKEY_PREFIX, APIKEY_PREFIX_LEN);
    rand_string(out + APIKEY_PREFIX_LEN, APIKEY_BODY_LEN, RAND_ALNUM);
}

bool apikey_well_formed(const char *key, size_t len)
{
    size_t i;

    if (!key || len < APIKEY_PREFIX_LEN + APIKEY_MIN_BODY || len > APIKEY_MAX_LEN)
        return false;
    if (memcmp(key, APIKEY_PREFIX, APIKEY_PREFIX_LEN) != 0)
        return false;
    for (i = APIKEY_PREFIX_LEN; i < len; i++) {
        char c = key[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            return false;
    }
    return true;
}

void apikey_hash(const char *key, size_t len, unsigned char out[KEY_HASH_LEN])
{
    crypto_hash_sha256(out, (const unsigned char *)key, len);
}

void apikey_prefix(const char *key, char out[KEY_PREFIX_LEN + 1])
{
    size_t n = strnlen(key, KEY_PREFIX_LEN);

    memcpy(out, key, n);
    out[n] = '\0';
}
