/* test_buf: the bounded growable buffer. Every write either succeeds whole
 * or fails with ERR_TOO_LARGE leaving the contents unchanged; the contents
 * are always NUL-terminated. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

/* Asserts the exact contents (which may hold NULs) and the terminator. */
static void assert_contents(const struct buf *b, const char *want, size_t n)
{
    assert_int_equal(b->len, n);
    assert_non_null(b->data);
    assert_memory_equal(b->data, want, n);
    assert_int_equal(b->data[n], '\0');
    assert_true(b->cap >= n + 1);
    assert_true(b->len <= b->max);
}

static void test_init_is_empty(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 100);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.max, 100);
    buf_release(&b);
    assert_null(b.data);
}

static void test_append_variants(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 1024);
    assert_int_equal(buf_append(&b, "ab", 2), ERR_OK);
    assert_contents(&b, "ab", 2);
    assert_int_equal(buf_append_str(&b, "cd"), ERR_OK);
    assert_int_equal(buf_append_char(&b, 'e'), ERR_OK);
    assert_int_equal(buf_append(&b, "", 0), ERR_OK);
    assert_int_equal(buf_append_str(&b, ""), ERR_OK);
    assert_contents(&b, "abcde", 5);
    /* Bytes are bytes: NULs inside are kept and counted. */
    assert_int_equal(buf_append(&b, "x\0y", 3), ERR_OK);
    assert_contents(&b, "abcdex\0y", 8);
    buf_release(&b);
}

static void test_append_zero_on_empty_allocates(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 10);
    assert_int_equal(buf_append(&b, NULL, 0), ERR_OK);
    assert_contents(&b, "", 0);
    buf_release(&b);
}

static void test_growth_many_appends(void **state)
{
    struct buf b;
    char want[5000];
    size_t i;

    (void)state;
    buf_init(&b, sizeof(want));
    for (i = 0; i < sizeof(want); i++) {
        want[i] = (char)('a' + i % 26);
        assert_int_equal(buf_append_char(&b, want[i]), ERR_OK);
    }
    assert_contents(&b, want, sizeof(want));
    /* Exactly full: one more byte is too much. */
    assert_int_equal(buf_append_char(&b, 'z'), ERR_TOO_LARGE);
    assert_contents(&b, want, sizeof(want));
    buf_release(&b);
}

static void test_cap_enforced(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 5);
    assert_int_equal(buf_append_str(&b, "abc"), ERR_OK);
    assert_int_equal(buf_append_str(&b, "def"), ERR_TOO_LARGE);
    assert_contents(&b, "abc", 3); /* unchanged, not partly written */
    assert_int_equal(buf_append_str(&b, "de"), ERR_OK);
    assert_contents(&b, "abcde", 5);
    assert_int_equal(buf_append_char(&b, 'f'), ERR_TOO_LARGE);
    assert_int_equal(buf_append_i64(&b, 1), ERR_TOO_LARGE);
    assert_int_equal(buf_printf(&b, "%d", 1), ERR_TOO_LARGE);
    assert_int_equal(buf_append(&b, "", 0), ERR_OK);
    assert_contents(&b, "abcde", 5);
    assert_true(b.cap <= b.max + 1); /* never allocates past the cap */
    buf_release(&b);
}

static void test_cap_zero(void **state)
{
    struct buf b;
    char *s;

    (void)state;
    buf_init(&b, 0);
    assert_int_equal(buf_append_char(&b, 'a'), ERR_TOO_LARGE);
    assert_int_equal(buf_append(&b, "", 0), ERR_OK);
    assert_contents(&b, "", 0);
    s = buf_take(&b);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
    buf_release(&b);
}

static void test_reserve(void **state)
{
    struct buf b;
    char *before;

    (void)state;
    buf_init(&b, 100);
    assert_int_equal(buf_reserve(&b, 100), ERR_OK);
    assert_true(b.cap >= 101);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.data[0], '\0');
    assert_int_equal(buf_reserve(&b, 101), ERR_TOO_LARGE);
    assert_int_equal(buf_reserve(&b, SIZE_MAX), ERR_TOO_LARGE); /* len + n overflows */
    /* Appends within the reservation never move the storage. */
    before = b.data;
    assert_int_equal(buf_append(&b, "0123456789", 10), ERR_OK);
    assert_ptr_equal(b.data, before);
    assert_int_equal(buf_reserve(&b, 91), ERR_TOO_LARGE);
    assert_int_equal(buf_reserve(&b, 90), ERR_OK);
    assert_contents(&b, "0123456789", 10);
    buf_release(&b);
}

static void test_append_huge_length_rejected(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 64);
    assert_int_equal(buf_append_str(&b, "x"), ERR_OK);
    assert_int_equal(buf_append(&b, "y", SIZE_MAX), ERR_TOO_LARGE);
    assert_contents(&b, "x", 1);
    buf_release(&b);
}

static void test_printf(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 64);
    assert_int_equal(buf_printf(&b, "%s=%d", "n", 42), ERR_OK);
    assert_int_equal(buf_printf(&b, "%s", ""), ERR_OK);
    assert_int_equal(buf_printf(&b, ";%05.1f|%-3s|%x", 3.14159, "a", 255u), ERR_OK);
    assert_contents(&b, "n=42;003.1|a  |ff", 17);
    buf_release(&b);

    /* Exactly at the cap, then one byte over. */
    buf_init(&b, 6);
    assert_int_equal(buf_printf(&b, "%s", "abcdef"), ERR_OK);
    assert_contents(&b, "abcdef", 6);
    buf_reset(&b);
    assert_int_equal(buf_printf(&b, "%s", "abc"), ERR_OK);
    assert_int_equal(buf_printf(&b, "%s%d", "de", 12), ERR_TOO_LARGE);
    assert_contents(&b, "abc", 3);
    buf_release(&b);
}

static void test_printf_grows(void **state)
{
    struct buf b;
    char big[300];

    (void)state;
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    buf_init(&b, 1000);
    assert_int_equal(buf_append_str(&b, "<"), ERR_OK);
    assert_int_equal(buf_printf(&b, "%s>", big), ERR_OK);
    assert_int_equal(b.len, 1 + 299 + 1);
    assert_int_equal(b.data[0], '<');
    assert_int_equal(b.data[299], 'q');
    assert_int_equal(b.data[300], '>');
    assert_int_equal(b.data[301], '\0');
    buf_release(&b);
}

static void test_i64(void **state)
{
    static const struct {
        int64_t v;
        const char *want;
    } cases[] = {
        {0, "0"},
        {7, "7"},
        {-7, "-7"},
        {10, "10"},
        {-100, "-100"},
        {1234567890123LL, "1234567890123"},
        {INT64_MAX, "9223372036854775807"},
        {INT64_MIN, "-9223372036854775808"},
        {INT64_MIN + 1, "-9223372036854775807"},
    };
    struct buf b;
    size_t i;

    (void)state;
    buf_init(&b, 64);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_reset(&b);
        assert_int_equal(buf_append_i64(&b, cases[i].v), ERR_OK);
        assert_string_equal(b.data, cases[i].want);
        assert_int_equal(b.len, strlen(cases[i].want));
    }
    buf_release(&b);

    /* "-9223372036854775808" is 20 bytes: a cap of 19 refuses it whole. */
    buf_init(&b, 19);
    assert_int_equal(buf_append_i64(&b, INT64_MIN), ERR_TOO_LARGE);
    assert_int_equal(b.len, 0);
    assert_int_equal(buf_append_i64(&b, INT64_MAX), ERR_OK);
    assert_contents(&b, "9223372036854775807", 19);
    buf_release(&b);
}

static void test_reset_keeps_storage(void **state)
{
    struct buf b;
    char *before;
    size_t cap;

    (void)state;
    buf_init(&b, 100);
    assert_int_equal(buf_append_str(&b, "hello"), ERR_OK);
    before = b.data;
    cap = b.cap;
    buf_reset(&b);
    assert_ptr_equal(b.data, before);
    assert_int_equal(b.cap, cap);
    assert_contents(&b, "", 0);
    assert_int_equal(buf_append_str(&b, "hi"), ERR_OK);
    assert_contents(&b, "hi", 2);
    buf_release(&b);

    /* Reset on a buffer that never allocated is harmless. */
    buf_init(&b, 10);
    buf_reset(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

static void test_take(void **state)
{
    struct buf b;
    char *s;

    (void)state;
    buf_init(&b, 100);
    assert_int_equal(buf_append_str(&b, "owned"), ERR_OK);
    s = buf_take(&b);
    assert_non_null(s);
    assert_string_equal(s, "owned");
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.max, 100); /* still usable with its cap */
    free(s);

    /* An empty buffer still hands out a valid string. */
    s = buf_take(&b);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);

    assert_int_equal(buf_append_str(&b, "again"), ERR_OK);
    assert_contents(&b, "again", 5);
    buf_release(&b);
}

static void test_release_and_reinit(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 8);
    assert_int_equal(buf_append_str(&b, "abc"), ERR_OK);
    buf_release(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    buf_release(&b); /* twice is harmless */
    buf_init(&b, 8);
    assert_int_equal(buf_append_str(&b, "abcdefgh"), ERR_OK);
    assert_contents(&b, "abcdefgh", 8);
    buf_release(&b);
}

/* A cap of SIZE_MAX means "no practical limit" and must still allocate
 * room for what is appended (max + 1 must not wrap to 0). */
static void test_cap_size_max(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, SIZE_MAX);
    assert_int_equal(buf_append_str(&b, "hello"), ERR_OK);
    assert_true(b.cap >= 6);
    assert_string_equal(b.data, "hello");
    buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_is_empty),
        cmocka_unit_test(test_append_variants),
        cmocka_unit_test(test_append_zero_on_empty_allocates),
        cmocka_unit_test(test_growth_many_appends),
        cmocka_unit_test(test_cap_enforced),
        cmocka_unit_test(test_cap_zero),
        cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_append_huge_length_rejected),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_printf_grows),
        cmocka_unit_test(test_i64),
        cmocka_unit_test(test_reset_keeps_storage),
        cmocka_unit_test(test_take),
        cmocka_unit_test(test_release_and_reinit),
        cmocka_unit_test(test_cap_size_max),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
