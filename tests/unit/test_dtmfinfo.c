/* test_dtmfinfo: the key press of a SIP INFO body (SIP.md section 4), as
 * application/dtmf-relay and application/dtmf carry it. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "sip/dtmfinfo.h"

static char key(enum dtmfinfo_kind kind, const char *body)
{
    char d = 0;

    if (dtmfinfo_parse(kind, body, strlen(body), &d) != ERR_OK)
        return 0;
    return d;
}

static void test_relay(void **state)
{
    (void)state;
    assert_int_equal(key(DTMFINFO_RELAY, "Signal=5\r\nDuration=160\r\n"), '5');
    assert_int_equal(key(DTMFINFO_RELAY, "Duration=160\nSignal=#\n"), '#');
    assert_int_equal(key(DTMFINFO_RELAY, "signal = *\r\n"), '*');
    assert_int_equal(key(DTMFINFO_RELAY, "Signal=11"), '#');
    assert_int_equal(key(DTMFINFO_RELAY, "Signal=10\n"), '*');
    assert_int_equal(key(DTMFINFO_RELAY, "Signal=d\n"), 'D');
    assert_int_equal(key(DTMFINFO_RELAY, "  Signal=0\n"), '0');
    /* no key, two keys, not a key, another event */
    assert_int_equal(key(DTMFINFO_RELAY, "Duration=160\r\n"), 0);
    assert_int_equal(key(DTMFINFO_RELAY, "Signal=5\nSignal=6\n"), 0);
    assert_int_equal(key(DTMFINFO_RELAY, "Signal=\n"), 0);
    assert_int_equal(key(DTMFINFO_RELAY, "Signal=16\n"), 0);
    assert_int_equal(key(DTMFINFO_RELAY, "Signal=55\n"), 0);
    assert_int_equal(key(DTMFINFO_RELAY, "Signal=E\n"), 0);
    assert_int_equal(key(DTMFINFO_RELAY, "Signals=5\n"), 0);
    assert_int_equal(key(DTMFINFO_RELAY, ""), 0);
}

static void test_plain(void **state)
{
    char big[DTMFINFO_BODY_MAX + 2];
    char d = 'x';

    (void)state;
    assert_int_equal(key(DTMFINFO_PLAIN, "5"), '5');
    assert_int_equal(key(DTMFINFO_PLAIN, "#\r\n"), '#');
    assert_int_equal(key(DTMFINFO_PLAIN, " 12 "), 'A');
    assert_int_equal(key(DTMFINFO_PLAIN, "b"), 'B');
    assert_int_equal(key(DTMFINFO_PLAIN, ""), 0);
    assert_int_equal(key(DTMFINFO_PLAIN, "56"), 0);
    assert_int_equal(key(DTMFINFO_PLAIN, "Signal=5"), 0);
    memset(big, ' ', sizeof(big));
    big[0] = '5';
    assert_int_equal(dtmfinfo_parse(DTMFINFO_PLAIN, big, sizeof(big), &d), ERR_TOO_LARGE);
    assert_int_equal(d, 'x');
    assert_int_equal(dtmfinfo_parse(DTMFINFO_PLAIN, big, DTMFINFO_BODY_MAX, &d), ERR_OK);
    assert_int_equal(d, '5');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relay),
        cmocka_unit_test(test_plain),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
