/* whsig: Stripe's signature scheme, with libsodium's HMAC-SHA256 (which
 * takes a key of any length, so the secret string is the key as it is,
 * and a receiver needs nothing but its language's standard HMAC). */
#include "core/whsig.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/rand.h"

void whsig_secret_generate(char out[WHSIG_SECRET_LEN + 1])
{
    memcpy(out, WHSIG_SECRET_PREFIX, sizeof(WHSIG_SECRET_PREFIX) - 1);
    /* rand_string draws with randombytes_uniform: no modulo bias. */
    rand_string(out + sizeof(WHSIG_SECRET_PREFIX) - 1, WHSIG_SECRET_RANDOM, RAND_ALNUM);
}

enum err whsig_header(const struct whsig_keys *keys, int64_t t, const void *content, size_t len,
                      char out[WHSIG_HEADER_MAX])
{
    crypto_auth_hmacsha256_state st;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    char ts[24];
    size_t o, tlen;
    int i, n;

    out[0] = '\0';
    if (!keys || keys->n <= 0 || keys->n > WHSIG_KEYS_MAX || t < 0 || (!content && len))
        return ERR_INVALID;
    n = snprintf(ts, sizeof(ts), "%" PRId64, t);
    if (n < 0 || (size_t)n >= sizeof(ts))
        return ERR_INVALID;
    tlen = (size_t)n;
    memcpy(out, "t=", 2);
    memcpy(out + 2, ts, tlen);
    o = 2 + tlen;
    for (i = 0; i < keys->n; i++) {
        size_t klen = strnlen(keys->secret[i], sizeof(keys->secret[i]));

        if (klen == 0 || klen == sizeof(keys->secret[i])) {
            out[0] = '\0';
            return ERR_INVALID;
        }
        crypto_auth_hmacsha256_init(&st, (const unsigned char *)keys->secret[i], klen);
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, tlen);
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
        if (len)
            crypto_auth_hmacsha256_update(&st, content, len);
        crypto_auth_hmacsha256_final(&st, mac);
        memcpy(out + o, ",v1=", 4);
        o += 4;
        /* Room: WHSIG_HEADER_MAX counts 4 + 64 per secret and the NUL. */
        sodium_bin2hex(out + o, WHSIG_HEADER_MAX - o, mac, sizeof(mac));
        o += 2 * sizeof(mac);
    }
    sodium_memzero(&st, sizeof(st));
    sodium_memzero(mac, sizeof(mac));
    out[o] = '\0';
    return ERR_OK;
}

void whsig_keys_wipe(struct whsig_keys *keys)
{
    if (keys)
        sodium_memzero(keys, sizeof(*keys));
}
