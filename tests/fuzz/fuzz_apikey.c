/* Fuzzes API-key parsing: the format check and the key cache's handling of
 * arbitrary header values (with a store that knows one key). */
#include <stdint.h>
#include <string.h>

#include "auth/apikey.h"
#include "auth/keycache.h"
#include "core/rand.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char known[] = "sfvk_0123456789abcdefghijABCDEFGHIJ0123456789xyz";

static enum err fake_find(struct store_conn *c, const unsigned char hash[KEY_HASH_LEN],
                          struct store_key *out)
{
    unsigned char h[KEY_HASH_LEN];

    (void)c;
    apikey_hash(known, strlen(known), h);
    if (memcmp(h, hash, KEY_HASH_LEN) != 0)
        return ERR_NOT_FOUND;
    memset(out, 0, sizeof(*out));
    out->id = 1;
    out->org_id = 7;
    return ERR_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct keycache *kc;
    static const struct store_ops ops = {.key_find = fake_find};
    struct store_conn conn = {&ops};
    struct principal who;
    enum err e;

    if (!kc) {
        if (rand_setup() != ERR_OK)
            __builtin_trap();
        kc = keycache_new(1000);
    }
    e = keycache_lookup(kc, &conn, (const char *)data, size, &who, NULL);
    if (e == ERR_OK && (size != strlen(known) || memcmp(data, known, size) != 0 || who.org_id != 7))
        __builtin_trap();
    if (e != ERR_OK && e != ERR_UNAUTHENTICATED)
        __builtin_trap();
    if (apikey_well_formed((const char *)data, size) && memcmp(data, "sfvk_", 5) != 0)
        __builtin_trap();
    return 0;
}
