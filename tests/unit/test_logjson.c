/* test_logjson: the JSON rendering of key=value log lines (--log-format
 * json): quoting, numbers, escapes kept, truncation safety. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "core/log.h"

static void check(const char *line, const char *want)
{
    char out[512];
    size_t n = log_line_to_json(line, strlen(line), out, sizeof(out));

    assert_int_equal(n, strlen(want));
    assert_string_equal(out, want);
}

static void pairs(void **state)
{
    (void)state;
    check("ts=2026-01-01T00:00:00.000Z level=info msg=access status=200 dur_ms=0.123",
          "{\"ts\":\"2026-01-01T00:00:00.000Z\",\"level\":\"info\",\"msg\":\"access\","
          "\"status\":200,\"dur_ms\":0.123}");
}

static void quoted_values(void **state)
{
    (void)state;
    check("msg=\"database busy\" path=\"/a b\"", "{\"msg\":\"database busy\",\"path\":\"/a b\"}");
    /* log_quote's escapes stay as text, with the backslash escaped for JSON. */
    check("path=\"/a\\x22b\"", "{\"path\":\"/a\\\\x22b\"}");
}

static void numbers_only_when_json_numbers(void **state)
{
    (void)state;
    check("a=0 b=-5 c=007 d=1.5 e=1. f=.5 g=12ab h=-",
          "{\"a\":0,\"b\":-5,\"c\":\"007\",\"d\":1.5,\"e\":\"1.\",\"f\":\".5\",\"g\":\"12ab\","
          "\"h\":\"-\"}");
}

static void quoted_numbers_stay_strings(void **state)
{
    (void)state;
    check("id=\"42\"", "{\"id\":\"42\"}");
}

static void small_buffer_is_safe(void **state)
{
    char out[16];
    const char *line = "msg=something_long status=200 other=\"x y z\"";
    size_t n;

    (void)state;
    n = log_line_to_json(line, strlen(line), out, sizeof(out));
    assert_true(n < sizeof(out));
    assert_int_equal(out[n], '\0');
}

static void garbage_stops_cleanly(void **state)
{
    (void)state;
    check("no pairs here", "{}");
    check("a=1 broken", "{\"a\":1}");
    check("a=\"unterminated", "{\"a\":\"unterminated\"}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pairs),
        cmocka_unit_test(quoted_values),
        cmocka_unit_test(numbers_only_when_json_numbers),
        cmocka_unit_test(quoted_numbers_stay_strings),
        cmocka_unit_test(small_buffer_is_safe),
        cmocka_unit_test(garbage_stops_cleanly),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
