/* keycache: resolves an API key to its organisation without a database
 * query on every request. Entries (found or not) are trusted for at most
 * ttl_ms, after which the key is looked up again; so a key revoked in the
 * database stops working on every node within ttl_ms plus one request.
 * A cache belongs to one thread (the one that owns the store connection
 * it is given); it is not thread-safe and needs no locks. */
#ifndef SFVOPI_AUTH_KEYCACHE_H
#define SFVOPI_AUTH_KEYCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define KEYCACHE_TTL_MS 2000
#define KEYCACHE_SLOTS 1024 /* power of two */

struct principal {
    int64_t org_id;
    int64_t user_id; /* 0: none */
    int64_t key_id;
};

struct keycache;

/* A cache trusting entries for ttl_ms. NULL on allocation failure. */
struct keycache *keycache_new(int64_t ttl_ms);
/* Accepts NULL. Wipes the entries. */
void keycache_free(struct keycache *kc);

/* Resolves key[0..len). ERR_UNAUTHENTICATED for a malformed, unknown or
 * revoked key; ERR_UNAVAILABLE / ERR_DB when the database could not be
 * asked (conn is then not consulted again for this call). *hit tells
 * whether the answer came from the cache (may be NULL). */
enum err keycache_lookup(struct keycache *kc, struct store_conn *conn, const char *key, size_t len,
                         struct principal *out, int *hit) WARN_UNUSED;

#endif
