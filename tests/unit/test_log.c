/* test_log: the pieces of the logger that see untrusted input. log_quote
 * puts client-controlled bytes (request paths, driver text) on one log line,
 * so it must escape everything that could forge or break a line, and stay
 * inside its buffer. Also the level names and the level filter. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "core/log.h"

static void check_quote(const char *in, size_t len, const char *want)
{
    char out[256];

    memset(out, '#', sizeof(out));
    log_quote(out, sizeof(out), in, len);
    if (strcmp(out, want) != 0)
        print_error("got %s want %s\n", out, want);
    assert_string_equal(out, want);
}

static void test_quote_escaping(void **state)
{
    (void)state;
    check_quote("", 0, "\"\"");
    check_quote("/sfvopi/apps", 12, "\"/sfvopi/apps\"");
    check_quote("a b=c", 5, "\"a b=c\"");
    check_quote("a\"b", 3, "\"a\\x22b\"");
    check_quote("a\\b", 3, "\"a\\x5cb\"");
    check_quote("line\nts=forged level=error", 26, "\"line\\x0ats=forged level=error\"");
    check_quote("\r\t", 2, "\"\\x0d\\x09\"");
    check_quote("\x7f", 1, "\"\\x7f\"");
    check_quote("caf\xc3\xa9", 5, "\"caf\\xc3\\xa9\"");
    check_quote("a\0b", 3, "\"a\\x00b\""); /* len, not strlen */
    check_quote("abcdef", 3, "\"abc\"");
}

/* Long input is cut to fit, ends in "...", and an escape is never split. */
static void test_quote_truncation(void **state)
{
    char in[300], out[64];
    size_t outsz, n;

    (void)state;
    memset(in, 'x', sizeof(in));
    for (outsz = 8; outsz <= sizeof(out); outsz++) {
        memset(out, '#', sizeof(out));
        log_quote(out, outsz, in, sizeof(in));
        n = strlen(out);
        assert_true(n < outsz);
        assert_int_equal(out[0], '"');
        assert_int_equal(out[n - 1], '"');
        assert_memory_equal(out + n - 4, "...", 3);
        if (outsz < sizeof(out))
            assert_int_equal(out[outsz], '#'); /* nothing written past outsz */
    }
    /* Escapes are kept whole: only complete "\xNN" groups before "...". */
    memset(in, '\n', 100);
    for (outsz = 8; outsz <= sizeof(out); outsz++) {
        size_t body;

        log_quote(out, outsz, in, 100);
        n = strlen(out);
        assert_true(n < outsz);
        body = n - 2 - 3; /* without the quotes and "..." */
        assert_int_equal(body % 4, 0);
        assert_true(body == 0 || memcmp(out + 1, "\\x0a", 4) == 0);
    }
}

/* A value that fits is written whole, not cut: "abcde" quoted is 7 bytes
 * plus the NUL, exactly 8. */
static void test_quote_fits_without_cut(void **state)
{
    char out[16];

    (void)state;
    log_quote(out, 8, "abcde", 5);
    assert_string_equal(out, "\"abcde\"");
    log_quote(out, 12, "a\nb", 3); /* "\"a\\x0ab\"" is 9 bytes */
    assert_string_equal(out, "\"a\\x0ab\"");
}

static void test_level_parse(void **state)
{
    static const struct {
        const char *s;
        enum log_level l;
    } ok[] = {{"debug", LOG_DEBUG},
              {"info", LOG_INFO},
              {"warn", LOG_WARN},
              {"error", LOG_ERROR},
              {"off", LOG_OFF}};
    static const char *const bad[] = {"", "DEBUG", "Info", "warning", "err", "none", " info"};
    enum log_level l;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        l = (enum log_level)99;
        assert_true(log_level_parse(ok[i].s, &l));
        assert_int_equal(l, ok[i].l);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        l = (enum log_level)99;
        assert_false(log_level_parse(bad[i], &l));
        assert_int_equal(l, 99);
    }
}

static void test_level_filter(void **state)
{
    (void)state;
    log_set_level(LOG_WARN);
    assert_false(log_enabled(LOG_DEBUG));
    assert_false(log_enabled(LOG_INFO));
    assert_true(log_enabled(LOG_WARN));
    assert_true(log_enabled(LOG_ERROR));
    log_set_level(LOG_DEBUG);
    assert_true(log_enabled(LOG_DEBUG));
    assert_false(log_enabled(LOG_OFF)); /* "off" is a threshold, never a line */
    log_set_level(LOG_OFF);
    assert_false(log_enabled(LOG_ERROR));
    log_set_level(LOG_INFO);
}

/* The CLI holds log lines and names the newest cause in its one error line:
 * err= wins over msg=, escapes are decoded, control bytes become one space,
 * below warn nothing is kept, and reading forgets. */
static void test_hold_keeps_newest_cause(void **state)
{
    char out[128];

    (void)state;
    log_set_level(LOG_INFO);
    log_hold(true);
    assert_false(log_held_cause(out, sizeof(out)));
    log_info("msg=\"schema migrated\" version=1");
    assert_false(log_held_cause(out, sizeof(out)));
    log_error("msg=\"first\" err=\"old\"");
    log_error(
        "msg=\"cannot connect\" op=open err=\"at \\x22h\\x22 failed\\x0a\\x09Is it up?\" x=1");
    assert_true(log_held_cause(out, sizeof(out)));
    assert_string_equal(out, "at \"h\" failed Is it up?");
    assert_false(log_held_cause(out, sizeof(out)));
    log_warn("msg=\"no cause given\" code=5");
    assert_true(log_held_cause(out, sizeof(out)));
    assert_string_equal(out, "no cause given");
    log_error("msg=x errno=3 err=bare_word next=1");
    assert_true(log_held_cause(out, 6));
    assert_string_equal(out, "bare_");
    log_hold(false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quote_escaping),
        cmocka_unit_test(test_quote_truncation),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_quote_fits_without_cut),
        cmocka_unit_test(test_hold_keeps_newest_cause),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
