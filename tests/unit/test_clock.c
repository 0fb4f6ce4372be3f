/* test_clock: the one timestamp format of the API ("2026-02-02T10:30:00.000Z",
 * UTC with milliseconds) and the clocks it is fed from. Expected values were
 * computed independently (Python's datetime). */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"

struct iso_case {
    int64_t ms;
    const char *want;
};

static void run_cases(const struct iso_case *cases, size_t n)
{
    char out[CLOCK_ISO_LEN + 2];
    size_t i;

    for (i = 0; i < n; i++) {
        memset(out, '#', sizeof(out));
        clock_format_iso(cases[i].ms, out);
        if (strcmp(out, cases[i].want) != 0)
            print_error("case %zu: %lld -> %s, want %s\n", i, (long long)cases[i].ms, out,
                        cases[i].want);
        assert_string_equal(out, cases[i].want);
        assert_int_equal(strlen(out), CLOCK_ISO_LEN);
        assert_int_equal(out[CLOCK_ISO_LEN + 1], '#'); /* nothing written past the NUL */
    }
}

static void test_known_timestamps(void **state)
{
    static const struct iso_case cases[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {1770028200000LL, "2026-02-02T10:30:00.000Z"}, /* the spec's example */
        {1709210096000LL, "2024-02-29T12:34:56.000Z"}, /* leap day */
        {1709251199999LL, "2024-02-29T23:59:59.999Z"},
        {1709251200000LL, "2024-03-01T00:00:00.000Z"},
        {951782400000LL, "2000-02-29T00:00:00.000Z"}, /* 2000 is a leap year */
        {946684799000LL, "1999-12-31T23:59:59.000Z"},
        {946684800000LL, "2000-01-01T00:00:00.000Z"},
        {4107542399000LL, "2100-02-28T23:59:59.000Z"},
        {4107542400000LL, "2100-03-01T00:00:00.000Z"}, /* 2100 is not a leap year */
        {2147483648000LL, "2038-01-19T03:14:08.000Z"}, /* past 32-bit time_t */
        {78796799000LL, "1972-06-30T23:59:59.000Z"},
        {86400000, "1970-01-02T00:00:00.000Z"},
        {86399999, "1970-01-01T23:59:59.999Z"},
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_millisecond_padding(void **state)
{
    static const struct iso_case cases[] = {
        {1, "1970-01-01T00:00:00.001Z"},       {9, "1970-01-01T00:00:00.009Z"},
        {10, "1970-01-01T00:00:00.010Z"},      {99, "1970-01-01T00:00:00.099Z"},
        {100, "1970-01-01T00:00:00.100Z"},     {999, "1970-01-01T00:00:00.999Z"},
        {1000, "1970-01-01T00:00:01.000Z"},    {61001, "1970-01-01T00:01:01.001Z"},
        {3661050, "1970-01-01T01:01:01.050Z"},
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_negative_times(void **state)
{
    static const struct iso_case cases[] = {
        {-1, "1969-12-31T23:59:59.999Z"},
        {-999, "1969-12-31T23:59:59.001Z"},
        {-1000, "1969-12-31T23:59:59.000Z"},
        {-1001, "1969-12-31T23:59:58.999Z"},
        {-86400000, "1969-12-31T00:00:00.000Z"},
        {-86400001, "1969-12-30T23:59:59.999Z"},
        {-2208988800000LL, "1900-01-01T00:00:00.000Z"},
        {-62135596800000LL, "0001-01-01T00:00:00.000Z"},
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* Years outside 0000..9999 are clamped to that range's ends. */
static void test_clamping(void **state)
{
    static const struct iso_case cases[] = {
        {253402300799999LL, "9999-12-31T23:59:59.999Z"},
        {253402300800000LL, "9999-12-31T23:59:59.999Z"},
        {INT64_MAX, "9999-12-31T23:59:59.999Z"},
        {-62167219200000LL, "0000-01-01T00:00:00.000Z"},
        {-62167219200001LL, "0000-01-01T00:00:00.000Z"},
        {INT64_MIN, "0000-01-01T00:00:00.000Z"},
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* Every day of 1968..2104 agrees with gmtime_r, at a varying time of day. */
static void test_agrees_with_gmtime(void **state)
{
    char out[CLOCK_ISO_LEN + 1], want[96];
    int64_t day;

    (void)state;
    for (day = -730; day < 49700; day++) {
        int64_t ms = day * 86400000 + (day * 7919 % 86400) * 1000 + (day & 1 ? 999 : 7);
        time_t t = (time_t)(ms / 1000);
        struct tm tm;

        if (ms < 0 && ms % 1000)
            t -= 1;
        assert_non_null(gmtime_r(&t, &tm));
        snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(((ms % 1000) + 1000) % 1000));
        clock_format_iso(ms, out);
        if (strcmp(out, want) != 0)
            print_error("ms=%lld\n", (long long)ms);
        assert_string_equal(out, want);
    }
}

static void test_clocks_move_forward(void **state)
{
    int64_t now = clock_now_ms(), m1 = clock_mono_ms(), n1 = clock_mono_ns();
    struct timespec ts = {0, 20 * 1000 * 1000};

    (void)state;
    /* After 2020-01-01 and before 2200-01-01. */
    assert_true(now > 1577836800000LL);
    assert_true(now < 7258118400000LL);
    nanosleep(&ts, NULL);
    assert_true(clock_mono_ms() - m1 >= 19);
    assert_true(clock_mono_ns() - n1 >= 19 * 1000 * 1000);
    assert_true(clock_now_ms() >= now);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_timestamps),   cmocka_unit_test(test_millisecond_padding),
        cmocka_unit_test(test_negative_times),     cmocka_unit_test(test_clamping),
        cmocka_unit_test(test_agrees_with_gmtime), cmocka_unit_test(test_clocks_move_forward),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
