/* test_rand: random strings drawn from an alphabet (app ids and API keys
 * are made with it) and the client-safe error texts of err_str, which end
 * up in 500 messages ("Failed to ...: <error>", API.md section 1). */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "core/err.h"
#include "core/rand.h"

static int group_setup(void **state)
{
    (void)state;
    return rand_setup() == ERR_OK ? 0 : -1;
}

static void test_string_alphabet_and_length(void **state)
{
    static const char *const alphabets[] = {RAND_ALNUM_LOWER, RAND_ALNUM, "ab", "z"};
    char out[130];
    size_t a, n, i;

    (void)state;
    for (a = 0; a < sizeof(alphabets) / sizeof(alphabets[0]); a++) {
        for (n = 0; n <= 128; n += 16) {
            memset(out, '#', sizeof(out));
            rand_string(out, n, alphabets[a]);
            assert_int_equal(strlen(out), n);
            assert_int_equal(out[n + 1], '#'); /* n characters and a NUL, no more */
            for (i = 0; i < n; i++)
                assert_non_null(strchr(alphabets[a], out[i]));
        }
    }
}

/* Every character of the alphabet turns up, roughly evenly (no modulo
 * bias worth the name at this sample size). */
static void test_string_uniform(void **state)
{
    static char out[36 * 1000 + 1];
    int count[256] = {0};
    size_t i;

    (void)state;
    rand_string(out, sizeof(out) - 1, RAND_ALNUM_LOWER);
    for (i = 0; i < sizeof(out) - 1; i++)
        count[(unsigned char)out[i]]++;
    for (i = 0; i < strlen(RAND_ALNUM_LOWER); i++) {
        int c = count[(unsigned char)RAND_ALNUM_LOWER[i]];

        assert_true(c > 800 && c < 1200); /* expected 1000 */
    }
}

static void test_bytes_vary(void **state)
{
    unsigned char a[32], b[32], zero[32] = {0};

    (void)state;
    rand_fill(a, sizeof(a));
    rand_fill(b, sizeof(b));
    assert_memory_not_equal(a, b, sizeof(a));
    assert_memory_not_equal(a, zero, sizeof(a));
    rand_fill(a, 0);
}

static void test_err_str(void **state)
{
    static const struct {
        enum err e;
        const char *s;
    } cases[] = {
        {ERR_OK, "ok"},
        {ERR_INVALID, "invalid input"},
        {ERR_NOT_FOUND, "not found"},
        {ERR_CONFLICT, "conflict"},
        {ERR_UNAUTHENTICATED, "unauthenticated"},
        {ERR_TOO_LARGE, "too large"},
        {ERR_UNAVAILABLE, "database unavailable"},
        {ERR_DB, "database error"},
        {ERR_NOMEM, "out of memory"},
        {ERR_INTERNAL, "internal error"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(err_str(cases[i].e), cases[i].s);
    /* A value outside the enum still gets a generic text. */
    assert_string_equal(err_str((enum err)1000), "internal error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_string_alphabet_and_length),
        cmocka_unit_test(test_string_uniform),
        cmocka_unit_test(test_bytes_vary),
        cmocka_unit_test(test_err_str),
    };

    return cmocka_run_group_tests(tests, group_setup, NULL);
}
