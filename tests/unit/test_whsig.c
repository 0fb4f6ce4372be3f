/* test_whsig: the X-Sfvopi-Signature header against vectors computed
 * independently (Python's hmac.new(secret, b"<t>.<content>", sha256)),
 * with one and two secrets, the refusals, and the shape of new secrets. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "core/rand.h"
#include "core/whsig.h"

#define K1 "whsec_0123456789abcdefghijABCDEFGHIJKL"
#define K2 "whsec_ZYXWVUTSRQPONMLKJIHGFEDCBA987654"
#define BODY "{\"call_uuid\":\"x\"}"
/* python3 -c 'import hmac,hashlib; print(hmac.new(K.encode(),
 *   b"1770028200." + BODY, hashlib.sha256).hexdigest())' */
#define MAC1 "857473d453c2c4a16bbcc81493fba2fe0aef50cffe1039391283fd74fed7e2de"
#define MAC2 "4e5c557b57f82b915721cbccfd059e1ff6dfe94fe069747da0f433620fac98cb"
/* K1 over "0." (empty content). */
#define MAC1_EMPTY "662384f0f3223919f90bac864b12dda5978f9d8264d1184b56bd480035d69757"

static void keys_set(struct whsig_keys *k, const char *a, const char *b)
{
    memset(k, 0, sizeof(*k));
    if (a)
        memcpy(k->secret[k->n++], a, strlen(a) + 1);
    if (b)
        memcpy(k->secret[k->n++], b, strlen(b) + 1);
}

static void test_one_secret(void **state)
{
    struct whsig_keys k;
    char out[WHSIG_HEADER_MAX];

    (void)state;
    keys_set(&k, K1, NULL);
    assert_int_equal(whsig_header(&k, 1770028200, BODY, strlen(BODY), out), ERR_OK);
    assert_string_equal(out, "t=1770028200,v1=" MAC1);
}

static void test_two_secrets_in_order(void **state)
{
    struct whsig_keys k;
    char out[WHSIG_HEADER_MAX];

    (void)state;
    keys_set(&k, K2, K1);
    assert_int_equal(whsig_header(&k, 1770028200, BODY, strlen(BODY), out), ERR_OK);
    assert_string_equal(out, "t=1770028200,v1=" MAC2 ",v1=" MAC1);
    assert_true(strlen(out) < WHSIG_HEADER_MAX);
}

static void test_empty_content(void **state)
{
    struct whsig_keys k;
    char out[WHSIG_HEADER_MAX];

    (void)state;
    keys_set(&k, K1, NULL);
    assert_int_equal(whsig_header(&k, 0, NULL, 0, out), ERR_OK);
    assert_string_equal(out, "t=0,v1=" MAC1_EMPTY);
}

static void test_refusals(void **state)
{
    struct whsig_keys k;
    char out[WHSIG_HEADER_MAX];

    (void)state;
    keys_set(&k, NULL, NULL);
    assert_int_equal(whsig_header(&k, 1, "x", 1, out), ERR_INVALID);
    assert_string_equal(out, "");
    assert_int_equal(whsig_header(NULL, 1, "x", 1, out), ERR_INVALID);
    keys_set(&k, K1, NULL);
    assert_int_equal(whsig_header(&k, -1, "x", 1, out), ERR_INVALID);
    assert_int_equal(whsig_header(&k, 1, NULL, 3, out), ERR_INVALID);
    k.n = 3;
    assert_int_equal(whsig_header(&k, 1, "x", 1, out), ERR_INVALID);
    keys_set(&k, K1, "");
    assert_int_equal(whsig_header(&k, 1, "x", 1, out), ERR_INVALID);
    assert_string_equal(out, "");
    /* A secret without its NUL is never read past its array. */
    keys_set(&k, K1, NULL);
    memset(k.secret[0], 'a', sizeof(k.secret[0]));
    assert_int_equal(whsig_header(&k, 1, "x", 1, out), ERR_INVALID);
}

static void test_wipe(void **state)
{
    struct whsig_keys k, zero;

    (void)state;
    keys_set(&k, K1, K2);
    whsig_keys_wipe(&k);
    memset(&zero, 0, sizeof(zero));
    assert_memory_equal(&k, &zero, sizeof(k));
    whsig_keys_wipe(NULL);
}

static void test_generate(void **state)
{
    char a[WHSIG_SECRET_LEN + 1], b[WHSIG_SECRET_LEN + 1];
    size_t i;

    (void)state;
    assert_int_equal(rand_setup(), ERR_OK);
    whsig_secret_generate(a);
    whsig_secret_generate(b);
    assert_int_equal(strlen(a), WHSIG_SECRET_LEN);
    assert_memory_equal(a, "whsec_", 6);
    for (i = 6; i < WHSIG_SECRET_LEN; i++)
        assert_non_null(strchr(RAND_ALNUM, a[i]));
    assert_string_not_equal(a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_secret),    cmocka_unit_test(test_two_secrets_in_order),
        cmocka_unit_test(test_empty_content), cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_wipe),          cmocka_unit_test(test_generate),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
