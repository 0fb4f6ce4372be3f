/* whsig: the signing secrets of an organisation and the X-Sfvopi-Signature
 * header that proves a webhook or a stream connection came from sfvopi
 * (AGENT.md section 4). Pure: no clock, no database, no logging (a secret
 * must never reach a log). Thread-safe (no shared state). */
#ifndef SFVOPI_CORE_WHSIG_H
#define SFVOPI_CORE_WHSIG_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define WHSIG_SECRET_PREFIX "whsec_"
#define WHSIG_SECRET_RANDOM 32 /* base62 characters after the prefix */
#define WHSIG_SECRET_LEN 38    /* "whsec_" + 32 */
#define WHSIG_SHOWN_LEN 12     /* what `webhook-secret list` prints of a secret */
/* Active secrets an organisation may have at once: two, so that a new one
 * can be rolled out before the old one is revoked. */
#define WHSIG_KEYS_MAX 2
#define WHSIG_HEADER_NAME "X-Sfvopi-Signature"
/* The longest header value: "t=" + 20 digits, then ",v1=" + 64 hex digits
 * per secret, and the NUL. */
#define WHSIG_HEADER_MAX (2 + 20 + WHSIG_KEYS_MAX * (4 + 64) + 1)

/* The secrets one delivery is signed with, newest first; n 0: unsigned.
 * Fixed arrays, so that the holder can wipe them (whsig_keys_wipe). */
struct whsig_keys {
    int n;
    char secret[WHSIG_KEYS_MAX][WHSIG_SECRET_LEN + 1];
};

/* Writes a new secret, "whsec_" and 32 characters drawn uniformly from
 * [A-Za-z0-9] by the CSPRNG (rand_setup must have succeeded), and a NUL. */
void whsig_secret_generate(char out[WHSIG_SECRET_LEN + 1]);

/* Writes the header value "t=<t>,v1=<hex>[,v1=<hex>]" into out: one v1 per
 * secret of keys, in their order, each the lower-case hex of HMAC-SHA256
 * keyed with the whole secret string (its ASCII bytes) over "<t>.", then
 * content[0..len). ERR_INVALID when keys holds no secret (nothing to sign
 * with: the caller sends no header), a secret is empty, or t < 0. */
enum err whsig_header(const struct whsig_keys *keys, int64_t t, const void *content, size_t len,
                      char out[WHSIG_HEADER_MAX]) WARN_UNUSED;

/* Zeroes keys in a way the compiler cannot drop. Accepts NULL. */
void whsig_keys_wipe(struct whsig_keys *keys);

#endif
