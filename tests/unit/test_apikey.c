/* test_apikey: key format (API.md "Authentication": "sfvk_" and at least 32
 * characters of [A-Za-z0-9] from a CSPRNG), generation, the stored hash
 * (SHA-256) and the displayable prefix (CLI.md: the first 12 characters). */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "auth/apikey.h"
#include "core/rand.h"

#define N_KEYS 2000

static int group_setup(void **state)
{
    (void)state;
    return rand_setup() == ERR_OK ? 0 : -1;
}

static bool is_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int cmp_keys(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_generate_format(void **state)
{
    char key[APIKEY_LEN + 1];
    int i;
    size_t k;

    (void)state;
    assert_int_equal(APIKEY_LEN, 48);
    for (i = 0; i < 200; i++) {
        memset(key, '#', sizeof(key));
        apikey_generate(key);
        assert_int_equal(strlen(key), 48);
        assert_memory_equal(key, "sfvk_", 5);
        for (k = 5; k < 48; k++)
            assert_true(is_alnum(key[k]));
        assert_true(apikey_well_formed(key, strlen(key)));
    }
}

/* Many keys are all distinct, and together use the whole alphabet (all 62
 * characters appear, upper and lower case and digits). */
static void test_generate_unique_and_spread(void **state)
{
    char(*keys)[APIKEY_LEN + 1] = calloc(N_KEYS, sizeof(*keys));
    int seen[256] = {0};
    size_t i, k, distinct = 0;

    (void)state;
    assert_non_null(keys);
    for (i = 0; i < N_KEYS; i++) {
        apikey_generate(keys[i]);
        for (k = APIKEY_PREFIX_LEN; k < APIKEY_LEN; k++)
            seen[(unsigned char)keys[i][k]]++;
    }
    qsort(keys, N_KEYS, sizeof(*keys), cmp_keys);
    for (i = 1; i < N_KEYS; i++)
        assert_string_not_equal(keys[i - 1], keys[i]);
    for (i = 0; i < 256; i++) {
        if (seen[i]) {
            assert_true(is_alnum((char)i));
            distinct++;
        }
    }
    assert_int_equal(distinct, 62);
    free(keys);
}

static void make_key(char *out, size_t body_len, char fill)
{
    memcpy(out, "sfvk_", 5);
    memset(out + 5, fill, body_len);
    out[5 + body_len] = '\0';
}

static void test_well_formed_lengths(void **state)
{
    char key[APIKEY_MAX_LEN + 8];

    (void)state;
    make_key(key, 31, 'a');
    assert_false(apikey_well_formed(key, strlen(key)));
    make_key(key, 32, 'a');
    assert_true(apikey_well_formed(key, strlen(key)));
    make_key(key, 43, 'Z');
    assert_true(apikey_well_formed(key, strlen(key)));
    make_key(key, APIKEY_MAX_LEN - 5, '9'); /* 128 total */
    assert_int_equal(strlen(key), 128);
    assert_true(apikey_well_formed(key, 128));
    make_key(key, APIKEY_MAX_LEN - 4, '9'); /* 129 total */
    assert_false(apikey_well_formed(key, 129));
    /* len, not strlen, decides: a valid key cut short is too short. */
    make_key(key, 43, 'a');
    assert_false(apikey_well_formed(key, 36));
    assert_true(apikey_well_formed(key, 37));
    assert_false(apikey_well_formed(key, 0));
    assert_false(apikey_well_formed(NULL, 0));
    assert_false(apikey_well_formed("sfvk_", 5));
}

static void test_well_formed_characters(void **state)
{
    static const char *const bad[] = {
        "SFVK_abcdefghijklmnopqrstuvwxyz0123456789ABC", /* prefix is case-sensitive */
        "sfvk-abcdefghijklmnopqrstuvwxyz0123456789ABC",
        "sfv_abcdefghijklmnopqrstuvwxyz0123456789ABCD",
        "xsfvk_abcdefghijklmnopqrstuvwxyz0123456789AB",
        " sfvk_abcdefghijklmnopqrstuvwxyz0123456789AB",
        "sfvk_abcdefghijklmnopqrstuvwxyz0123456789AB ",
        "sfvk_abcdefghijklmnop rstuvwxyz0123456789ABC",
        "sfvk_abcdefghijklmnop_rstuvwxyz0123456789ABC",
        "sfvk_abcdefghijklmnop-rstuvwxyz0123456789ABC",
        "sfvk_abcdefghijklmnop+rstuvwxyz0123456789ABC",
        "sfvk_abcdefghijklmnop/rstuvwxyz0123456789ABC",
        "sfvk_abcdefghijklmnop=rstuvwxyz0123456789ABC",
        "sfvk_abcdefghijklmnop\xc3\xa9stuvwxyz0123456789AB",
        "sfvk_abcdefghijklmnopqrstuvwxyz0123456789AB\n",
        "sfvk_sfvk_abcdefghijklmnopqrstuvwxyz012345678",
    };
    char key[64];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (apikey_well_formed(bad[i], strlen(bad[i])))
            print_error("accepted '%s'\n", bad[i]);
        assert_false(apikey_well_formed(bad[i], strlen(bad[i])));
    }
    /* An embedded NUL, with the length saying it is part of the key. */
    make_key(key, 43, 'a');
    key[20] = '\0';
    assert_false(apikey_well_formed(key, 48));
    make_key(key, 43, 'a');
    key[47] = '\0';
    assert_false(apikey_well_formed(key, 48));
    /* Mixed alphabet is fine. */
    assert_true(apikey_well_formed(
        "sfvk_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 67));
}

static void test_hash(void **state)
{
    /* SHA-256("abc"), the FIPS 180-2 test vector. */
    static const unsigned char want_abc[KEY_HASH_LEN] = {
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
        0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
        0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
    };
    unsigned char h1[KEY_HASH_LEN + 4], h2[KEY_HASH_LEN], h3[KEY_HASH_LEN];
    char k1[APIKEY_LEN + 1], k2[APIKEY_LEN + 1];

    (void)state;
    assert_int_equal(KEY_HASH_LEN, 32);
    apikey_hash("abc", 3, h2); /* the SHA-256 test vector */
    assert_memory_equal(h2, want_abc, KEY_HASH_LEN);

    apikey_generate(k1);
    memcpy(k2, k1, sizeof(k1));
    k2[APIKEY_LEN - 1] = k1[APIKEY_LEN - 1] == 'a' ? 'b' : 'a';
    memset(h1, 0xee, sizeof(h1));
    apikey_hash(k1, strlen(k1), h1);
    apikey_hash(k1, strlen(k1), h2);
    assert_memory_equal(h1, h2, KEY_HASH_LEN); /* deterministic */
    assert_int_equal(h1[KEY_HASH_LEN], 0xee);  /* exactly 32 bytes written */
    apikey_hash(k2, strlen(k2), h3);
    assert_memory_not_equal(h1, h3, KEY_HASH_LEN); /* one character differs */
    apikey_hash(k1, strlen(k1) - 1, h3);
    assert_memory_not_equal(h1, h3, KEY_HASH_LEN); /* the length counts */
}

static void test_prefix(void **state)
{
    char key[APIKEY_LEN + 1];
    char p[KEY_PREFIX_LEN + 2];

    (void)state;
    apikey_generate(key);
    memset(p, '#', sizeof(p));
    apikey_prefix(key, p);
    assert_int_equal(strlen(p), 12);
    assert_memory_equal(p, key, 12);
    assert_int_equal(p[KEY_PREFIX_LEN + 1], '#');

    apikey_prefix("sfvk_AbCdEfGhIjKlMn", p);
    assert_string_equal(p, "sfvk_AbCdEfG");
    apikey_prefix("short", p); /* never reads past the string */
    assert_string_equal(p, "short");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_format),
        cmocka_unit_test(test_generate_unique_and_spread),
        cmocka_unit_test(test_well_formed_lengths),
        cmocka_unit_test(test_well_formed_characters),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_prefix),
    };

    return cmocka_run_group_tests(tests, group_setup, NULL);
}
