/* test_parse: parse_i64, the one checked integer parser: whole decimal
 * strings only, an optional '-', at most 19 digits, inside [min, max], and
 * *out untouched on error. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>

#include "core/parse.h"

struct parse_case {
    const char *in;
    int64_t min, max;
    bool ok;
    int64_t want;
};

static void run_cases(const struct parse_case *cases, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        int64_t out = 12345;
        enum err e = parse_i64(cases[i].in, cases[i].min, cases[i].max, &out);

        if ((e == ERR_OK) != cases[i].ok || (cases[i].ok && out != cases[i].want))
            print_error("case %zu: '%s' err=%d out=%lld\n", i, cases[i].in, (int)e, (long long)out);
        if (cases[i].ok) {
            assert_int_equal(e, ERR_OK);
            assert_true(out == cases[i].want);
        } else {
            assert_int_equal(e, ERR_INVALID);
            assert_true(out == 12345); /* untouched */
        }
    }
}

static void test_valid(void **state)
{
    static const struct parse_case cases[] = {
        {"0", INT64_MIN, INT64_MAX, true, 0},
        {"-0", INT64_MIN, INT64_MAX, true, 0},
        {"1", INT64_MIN, INT64_MAX, true, 1},
        {"-1", INT64_MIN, INT64_MAX, true, -1},
        {"42", 0, 100, true, 42},
        {"007", 0, 100, true, 7},
        {"0000000000000000001", 0, 100, true, 1}, /* 19 digits with leading zeros */
        {"1234567890123456789", INT64_MIN, INT64_MAX, true, 1234567890123456789LL},
        {"9223372036854775807", INT64_MIN, INT64_MAX, true, INT64_MAX},
        {"-9223372036854775808", INT64_MIN, INT64_MAX, true, INT64_MIN},
        {"-9223372036854775807", INT64_MIN, INT64_MAX, true, -INT64_MAX},
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_bounds(void **state)
{
    static const struct parse_case cases[] = {
        {"1", 1, 10, true, 1},    {"10", 1, 10, true, 10},       {"0", 1, 10, false, 0},
        {"11", 1, 10, false, 0},  {"-1", 1, 10, false, 0},       {"-5", -5, -1, true, -5},
        {"-6", -5, -1, false, 0}, {"0", -5, -1, false, 0},       {"7", 7, 7, true, 7},
        {"8", 7, 7, false, 0},    {"1024", 1, 1024, true, 1024}, {"1025", 1, 1024, false, 0},
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_overflow(void **state)
{
    static const struct parse_case cases[] = {
        {"9223372036854775808", INT64_MIN, INT64_MAX, false, 0},
        {"-9223372036854775809", INT64_MIN, INT64_MAX, false, 0},
        {"9999999999999999999", INT64_MIN, INT64_MAX, false, 0},
        {"-9999999999999999999", INT64_MIN, INT64_MAX, false, 0},
        {"10000000000000000000", INT64_MIN, INT64_MAX, false, 0}, /* 20 digits */
        {"00000000000000000001", INT64_MIN, INT64_MAX, false, 0}, /* 20 digits, small */
        {"-00000000000000000001", INT64_MIN, INT64_MAX, false, 0},
        {"18446744073709551617", INT64_MIN, INT64_MAX, false, 0}, /* wraps to 1 in u64 */
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_malformed(void **state)
{
    static const struct parse_case cases[] = {
        {"", INT64_MIN, INT64_MAX, false, 0},     {"-", INT64_MIN, INT64_MAX, false, 0},
        {"+1", INT64_MIN, INT64_MAX, false, 0},   {"+", INT64_MIN, INT64_MAX, false, 0},
        {" 1", INT64_MIN, INT64_MAX, false, 0},   {"1 ", INT64_MIN, INT64_MAX, false, 0},
        {"1 2", INT64_MIN, INT64_MAX, false, 0},  {"\t1", INT64_MIN, INT64_MAX, false, 0},
        {"1\n", INT64_MIN, INT64_MAX, false, 0},  {"--1", INT64_MIN, INT64_MAX, false, 0},
        {"-+1", INT64_MIN, INT64_MAX, false, 0},  {"1-", INT64_MIN, INT64_MAX, false, 0},
        {"abc", INT64_MIN, INT64_MAX, false, 0},  {"12a", INT64_MIN, INT64_MAX, false, 0},
        {"0x10", INT64_MIN, INT64_MAX, false, 0}, {"1e3", INT64_MIN, INT64_MAX, false, 0},
        {"1.0", INT64_MIN, INT64_MAX, false, 0},  {"1,000", INT64_MIN, INT64_MAX, false, 0},
        {"１", INT64_MIN, INT64_MAX, false, 0}, /* full-width digit */
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_null_input(void **state)
{
    int64_t out = 99;

    (void)state;
    assert_int_equal(parse_i64(NULL, INT64_MIN, INT64_MAX, &out), ERR_INVALID);
    assert_true(out == 99);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),      cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_overflow),   cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_null_input),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
