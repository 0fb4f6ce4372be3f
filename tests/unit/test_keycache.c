/* test_keycache: the per-thread API-key cache, against a fake store whose
 * only operation is key_find. It counts the queries so that each test can
 * say exactly when the database is asked: hits within the TTL are not,
 * expired entries are, negative answers are cached, errors are not. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>
#include <time.h>

#include "auth/apikey.h"
#include "auth/keycache.h"
#include "core/rand.h"

#define FAKE_KEYS 4

struct fake_key {
    unsigned char hash[KEY_HASH_LEN];
    struct store_key rec;
};

/* A connection whose key_find answers from a small table. */
struct fake_conn {
    struct store_conn base; /* first */
    struct fake_key keys[FAKE_KEYS];
    int nkeys;
    int calls;
    enum err fail; /* when not ERR_OK, key_find returns it */
};

static enum err fake_key_find(struct store_conn *c, const unsigned char hash[KEY_HASH_LEN],
                              struct store_key *out)
{
    struct fake_conn *f = (struct fake_conn *)c;
    int i;

    f->calls++;
    if (f->fail != ERR_OK)
        return f->fail;
    for (i = 0; i < f->nkeys; i++) {
        if (memcmp(f->keys[i].hash, hash, KEY_HASH_LEN) == 0) {
            *out = f->keys[i].rec;
            return ERR_OK;
        }
    }
    return ERR_NOT_FOUND;
}

static const struct store_ops fake_ops = {
    .name = "fake",
    .key_find = fake_key_find,
};

static void fake_init(struct fake_conn *f)
{
    memset(f, 0, sizeof(*f));
    f->base.ops = &fake_ops;
    f->fail = ERR_OK;
}

/* Adds a key to the fake database; returns its record for later changes. */
static struct store_key *fake_add(struct fake_conn *f, const char *key, int64_t id, int64_t org_id,
                                  int64_t user_id)
{
    struct fake_key *k = &f->keys[f->nkeys++];

    apikey_hash(key, strlen(key), k->hash);
    memset(&k->rec, 0, sizeof(k->rec));
    k->rec.id = id;
    k->rec.org_id = org_id;
    k->rec.user_id = user_id;
    apikey_prefix(key, k->rec.prefix);
    return &k->rec;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0) {
    }
}

static enum err lookup(struct keycache *kc, struct fake_conn *f, const char *key,
                       struct principal *p, int *hit)
{
    return keycache_lookup(kc, &f->base, key, strlen(key), p, hit);
}

static int group_setup(void **state)
{
    (void)state;
    return rand_setup() == ERR_OK ? 0 : -1;
}

static void test_hit_within_ttl(void **state)
{
    struct keycache *kc = keycache_new(60000);
    struct fake_conn f;
    struct principal p;
    char key[APIKEY_LEN + 1];
    int hit = -1, i;

    (void)state;
    assert_non_null(kc);
    fake_init(&f);
    apikey_generate(key);
    fake_add(&f, key, 7, 12345, 67890);

    memset(&p, 0, sizeof(p));
    assert_int_equal(lookup(kc, &f, key, &p, &hit), ERR_OK);
    assert_int_equal(hit, 0);
    assert_int_equal(f.calls, 1);
    assert_true(p.org_id == 12345);
    assert_true(p.user_id == 67890);
    assert_true(p.key_id == 7);

    for (i = 0; i < 10; i++) {
        memset(&p, 0, sizeof(p));
        assert_int_equal(lookup(kc, &f, key, &p, &hit), ERR_OK);
        assert_int_equal(hit, 1);
        assert_true(p.org_id == 12345);
        assert_true(p.user_id == 67890);
        assert_true(p.key_id == 7);
    }
    assert_int_equal(f.calls, 1);
    /* hit may be NULL. */
    assert_int_equal(lookup(kc, &f, key, &p, NULL), ERR_OK);
    assert_int_equal(f.calls, 1);
    keycache_free(kc);
}

/* With a TTL of 0 nothing is trusted: every lookup asks the store. */
static void test_ttl_zero_always_asks(void **state)
{
    struct keycache *kc = keycache_new(0);
    struct fake_conn f;
    struct principal p;
    char key[APIKEY_LEN + 1];
    int hit, i;

    (void)state;
    fake_init(&f);
    apikey_generate(key);
    fake_add(&f, key, 1, 2, 0);
    for (i = 1; i <= 5; i++) {
        assert_int_equal(lookup(kc, &f, key, &p, &hit), ERR_OK);
        assert_int_equal(hit, 0);
        assert_int_equal(f.calls, i);
        assert_true(p.org_id == 2);
        assert_true(p.user_id == 0);
    }
    keycache_free(kc);
}

/* After the TTL the key is looked up again, so a revocation is seen. */
static void test_expiry_sees_revocation(void **state)
{
    struct keycache *kc = keycache_new(50);
    struct fake_conn f;
    struct principal p;
    struct store_key *rec;
    char key[APIKEY_LEN + 1];
    int hit;

    (void)state;
    fake_init(&f);
    apikey_generate(key);
    rec = fake_add(&f, key, 3, 4, 5);
    assert_int_equal(lookup(kc, &f, key, &p, &hit), ERR_OK);
    assert_int_equal(f.calls, 1);

    rec->revoked = true;
    /* Still trusted within the TTL. */
    assert_int_equal(lookup(kc, &f, key, &p, &hit), ERR_OK);
    assert_int_equal(hit, 1);
    assert_int_equal(f.calls, 1);

    sleep_ms(80);
    assert_int_equal(lookup(kc, &f, key, &p, &hit), ERR_UNAUTHENTICATED);
    assert_int_equal(hit, 0);
    assert_int_equal(f.calls, 2);
    /* The revoked answer is cached too. */
    assert_int_equal(lookup(kc, &f, key, &p, &hit), ERR_UNAUTHENTICATED);
    assert_int_equal(hit, 1);
    assert_int_equal(f.calls, 2);
    keycache_free(kc);
}

static void test_revoked_key(void **state)
{
    struct keycache *kc = keycache_new(60000);
    struct fake_conn f;
    struct principal p = {111, 222, 333};
    char key[APIKEY_LEN + 1];

    (void)state;
    fake_init(&f);
    apikey_generate(key);
    fake_add(&f, key, 3, 4, 5)->revoked = true;
    assert_int_equal(lookup(kc, &f, key, &p, NULL), ERR_UNAUTHENTICATED);
    assert_int_equal(f.calls, 1);
    assert_true(p.org_id == 111); /* out untouched on failure */
    keycache_free(kc);
}

/* An unknown key is cached negatively: a flood of bad keys does not reach
 * the database more than once per TTL. */
static void test_unknown_key_cached_negatively(void **state)
{
    struct keycache *kc = keycache_new(60000);
    struct fake_conn f;
    struct principal p;
    char key[APIKEY_LEN + 1];
    int hit, i;

    (void)state;
    fake_init(&f);
    apikey_generate(key);
    assert_int_equal(lookup(kc, &f, key, &p, &hit), ERR_UNAUTHENTICATED);
    assert_int_equal(hit, 0);
    assert_int_equal(f.calls, 1);
    for (i = 0; i < 5; i++) {
        assert_int_equal(lookup(kc, &f, key, &p, &hit), ERR_UNAUTHENTICATED);
        assert_int_equal(hit, 1);
    }
    assert_int_equal(f.calls, 1);
    keycache_free(kc);
}

/* A store failure is reported as is and not remembered: the next lookup
 * asks again and succeeds. */
static void test_store_error_not_cached(void **state)
{
    static const enum err errs[] = {ERR_UNAVAILABLE, ERR_DB};
    struct keycache *kc = keycache_new(60000);
    struct fake_conn f;
    struct principal p;
    char key[APIKEY_LEN + 1];
    size_t i;
    int hit;

    (void)state;
    fake_init(&f);
    apikey_generate(key);
    fake_add(&f, key, 9, 10, 11);
    for (i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        f.fail = errs[i];
        assert_int_equal(lookup(kc, &f, key, &p, &hit), errs[i]);
        assert_int_equal(hit, 0);
        assert_int_equal(lookup(kc, &f, key, &p, &hit), errs[i]);
        assert_int_equal(hit, 0);
    }
    assert_int_equal(f.calls, 4);
    f.fail = ERR_OK;
    assert_int_equal(lookup(kc, &f, key, &p, &hit), ERR_OK);
    assert_int_equal(hit, 0);
    assert_int_equal(f.calls, 5);
    assert_true(p.org_id == 10);
    assert_int_equal(lookup(kc, &f, key, &p, &hit), ERR_OK);
    assert_int_equal(hit, 1);
    assert_int_equal(f.calls, 5);
    keycache_free(kc);
}

/* A store error after an entry expired does not keep the stale answer
 * alive and does not turn into a 401. */
static void test_store_error_after_expiry(void **state)
{
    struct keycache *kc = keycache_new(30);
    struct fake_conn f;
    struct principal p;
    char key[APIKEY_LEN + 1];

    (void)state;
    fake_init(&f);
    apikey_generate(key);
    fake_add(&f, key, 1, 1, 0);
    assert_int_equal(lookup(kc, &f, key, &p, NULL), ERR_OK);
    sleep_ms(50);
    f.fail = ERR_UNAVAILABLE;
    assert_int_equal(lookup(kc, &f, key, &p, NULL), ERR_UNAVAILABLE);
    assert_int_equal(lookup(kc, &f, key, &p, NULL), ERR_UNAVAILABLE);
    assert_int_equal(f.calls, 3);
    keycache_free(kc);
}

static void test_malformed_key_never_asks(void **state)
{
    static const char *const bad[] = {
        "",
        "sfvk_",
        "sfvk_short",
        "SFVK_abcdefghijklmnopqrstuvwxyz0123456789ABC",
        "sfvk_abcdefghijklmnop-rstuvwxyz0123456789ABC",
        "Bearer sfvk_abcdefghijklmnopqrstuvwxyz0123456789ABC",
        "sfvk_abcdefghijklmnopqrstuvwxyz01234", /* 31 body characters */
    };
    struct keycache *kc = keycache_new(60000);
    struct fake_conn f;
    struct principal p;
    char nul_key[APIKEY_LEN + 1];
    size_t i;
    int hit = -1;

    (void)state;
    fake_init(&f);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(lookup(kc, &f, bad[i], &p, &hit), ERR_UNAUTHENTICATED);
        assert_int_equal(hit, 0);
    }
    apikey_generate(nul_key);
    nul_key[10] = '\0';
    assert_int_equal(keycache_lookup(kc, &f.base, nul_key, APIKEY_LEN, &p, &hit),
                     ERR_UNAUTHENTICATED);
    assert_int_equal(keycache_lookup(kc, &f.base, NULL, 0, &p, &hit), ERR_UNAUTHENTICATED);
    assert_int_equal(f.calls, 0);
    keycache_free(kc);
}

/* Keys are told apart by their full hash: two keys are two entries, and a
 * key one character off is unknown. */
static void test_distinct_keys(void **state)
{
    struct keycache *kc = keycache_new(60000);
    struct fake_conn f;
    struct principal p;
    char k1[APIKEY_LEN + 1], k2[APIKEY_LEN + 1], k3[APIKEY_LEN + 1];
    int hit;

    (void)state;
    fake_init(&f);
    apikey_generate(k1);
    apikey_generate(k2);
    memcpy(k3, k1, sizeof(k1));
    k3[APIKEY_LEN - 1] = k1[APIKEY_LEN - 1] == 'x' ? 'y' : 'x';
    fake_add(&f, k1, 1, 100, 0);
    fake_add(&f, k2, 2, 200, 0);

    assert_int_equal(lookup(kc, &f, k1, &p, &hit), ERR_OK);
    assert_true(p.org_id == 100);
    assert_int_equal(lookup(kc, &f, k2, &p, &hit), ERR_OK);
    assert_true(p.org_id == 200);
    assert_int_equal(lookup(kc, &f, k3, &p, &hit), ERR_UNAUTHENTICATED);
    assert_int_equal(f.calls, 3);
    keycache_free(kc);
}

/* Keys accepted for keys issued elsewhere (32..123 body characters) work
 * like generated ones. */
static void test_non_generated_lengths(void **state)
{
    struct keycache *kc = keycache_new(60000);
    struct fake_conn f;
    struct principal p;
    char k32[5 + 32 + 1], k123[5 + 123 + 1];

    (void)state;
    fake_init(&f);
    memcpy(k32, "sfvk_", 5);
    memset(k32 + 5, 'a', 32);
    k32[37] = '\0';
    memcpy(k123, "sfvk_", 5);
    memset(k123 + 5, 'B', 123);
    k123[128] = '\0';
    fake_add(&f, k32, 1, 5, 0);
    fake_add(&f, k123, 2, 6, 0);
    assert_int_equal(lookup(kc, &f, k32, &p, NULL), ERR_OK);
    assert_true(p.org_id == 5);
    assert_int_equal(lookup(kc, &f, k123, &p, NULL), ERR_OK);
    assert_true(p.org_id == 6);
    keycache_free(kc);
}

static void test_free_null(void **state)
{
    (void)state;
    keycache_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_within_ttl),
        cmocka_unit_test(test_ttl_zero_always_asks),
        cmocka_unit_test(test_expiry_sees_revocation),
        cmocka_unit_test(test_revoked_key),
        cmocka_unit_test(test_unknown_key_cached_negatively),
        cmocka_unit_test(test_store_error_not_cached),
        cmocka_unit_test(test_store_error_after_expiry),
        cmocka_unit_test(test_malformed_key_never_asks),
        cmocka_unit_test(test_distinct_keys),
        cmocka_unit_test(test_non_generated_lengths),
        cmocka_unit_test(test_free_null),
    };

    return cmocka_run_group_tests(tests, group_setup, NULL);
}
