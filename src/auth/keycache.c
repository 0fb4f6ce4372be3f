/* keycache: a direct-mapped table indexed by the key's SHA-256, which is
 * already uniformly distributed. A collision simply evicts. Matching
 * compares full hashes in constant time. */
#include "auth/keycache.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "auth/apikey.h"
#include "core/clock.h"

struct slot {
    unsigned char hash[KEY_HASH_LEN];
    bool used;
    bool valid; /* the key exists and is not revoked */
    int64_t expires_ms;
    struct principal who;
};

struct keycache {
    int64_t ttl_ms;
    struct slot slots[KEYCACHE_SLOTS];
};

struct keycache *keycache_new(int64_t ttl_ms)
{
    struct keycache *kc = calloc(1, sizeof(*kc));

    if (kc)
        kc->ttl_ms = ttl_ms;
    return kc;
}

void keycache_free(struct keycache *kc)
{
    if (!kc)
        return;
    sodium_memzero(kc, sizeof(*kc));
    free(kc);
}

enum err keycache_lookup(struct keycache *kc, struct store_conn *conn, const char *key, size_t len,
                         struct principal *out, int *hit)
{
    unsigned char hash[KEY_HASH_LEN];
    struct store_key rec;
    struct slot *s;
    int64_t now;
    uint32_t idx;
    enum err e;

    if (hit)
        *hit = 0;
    if (!apikey_well_formed(key, len))
        return ERR_UNAUTHENTICATED;
    apikey_hash(key, len, hash);
    memcpy(&idx, hash, sizeof(idx));
    s = &kc->slots[idx & (KEYCACHE_SLOTS - 1)];
    now = clock_mono_ms();

    if (s->used && now < s->expires_ms && sodium_memcmp(s->hash, hash, KEY_HASH_LEN) == 0) {
        if (hit)
            *hit = 1;
        if (!s->valid)
            return ERR_UNAUTHENTICATED;
        *out = s->who;
        return ERR_OK;
    }

    e = conn->ops->key_find(conn, hash, &rec);
    if (e != ERR_OK && e != ERR_NOT_FOUND)
        return e;
    memcpy(s->hash, hash, KEY_HASH_LEN);
    s->used = true;
    s->expires_ms = now + kc->ttl_ms;
    s->valid = e == ERR_OK && !rec.revoked;
    if (!s->valid)
        return ERR_UNAUTHENTICATED;
    s->who.org_id = rec.org_id;
    s->who.user_id = rec.user_id;
    s->who.key_id = rec.id;
    *out = s->who;
    return ERR_OK;
}
