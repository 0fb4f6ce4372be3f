/* test_sip_policy: the carrier edge's pure rules (SIP.md sections 1 and 3):
 * INVITE admission per source, the refused-source log limit, the count of digest
 * challenges per request, and the called-number rule. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "sip/policy.h"

static struct policy_ip ip_of(const char *s)
{
    uint8_t b[16];
    struct policy_ip ip;

    if (inet_pton(AF_INET, s, b) == 1)
        assert_int_equal(policy_ip_from_bytes(b, 4, &ip), ERR_OK);
    else {
        assert_int_equal(inet_pton(AF_INET6, s, b), 1);
        assert_int_equal(policy_ip_from_bytes(b, 16, &ip), ERR_OK);
    }
    return ip;
}

static void test_admission(void **state)
{
    static struct admission a;
    struct policy_ip one = ip_of("192.0.2.1"), two = ip_of("192.0.2.2");
    int i, admitted = 0;

    (void)state;
    admission_init(&a, 10, 12345);
    /* A burst of twice the rate, then nothing until tokens come back. */
    for (i = 0; i < 25; i++)
        admitted += admission_take(&a, &one, 1000);
    assert_int_equal(admitted, 20);
    /* Another source has its own bucket. */
    assert_true(admission_take(&a, &two, 1000));
    /* 100 ms at 10/s is one token. */
    assert_false(admission_take(&a, &one, 1099));
    assert_true(admission_take(&a, &one, 1100));
    assert_false(admission_take(&a, &one, 1100));
    /* A long silence refills to the burst, not beyond. */
    admitted = 0;
    for (i = 0; i < 30; i++)
        admitted += admission_take(&a, &one, 1000000);
    assert_int_equal(admitted, 20);
    /* Sustained: over 10 s at 100 tries a second, about 10 a second pass. */
    admission_init(&a, 10, 1);
    admitted = 0;
    for (i = 0; i < 1000; i++)
        admitted += admission_take(&a, &one, 5000 + i * 10);
    assert_in_range(admitted, 20 + 99, 20 + 101);
    /* A clock that steps back neither refills nor breaks the bucket. */
    assert_false(admission_take(&a, &one, 0));
}

static void test_admission_table_full(void **state)
{
    static struct admission a;
    struct policy_ip ip = ip_of("10.0.0.0"), first = ip_of("10.0.0.0");
    int i, admitted = 0;

    (void)state;
    admission_init(&a, 1, 99);
    /* The first source spends its burst. */
    assert_true(admission_take(&a, &first, 0));
    assert_true(admission_take(&a, &first, 0));
    assert_false(admission_take(&a, &first, 0));
    /* Many more sources than slots: each is admitted (a full bucket). */
    for (i = 1; i <= 4 * ADMISSION_SLOTS; i++) {
        ip.b[2] = (uint8_t)(i >> 8);
        ip.b[3] = (uint8_t)i;
        admitted += admission_take(&a, &ip, 1 + i);
    }
    assert_int_equal(admitted, 4 * ADMISSION_SLOTS);
}

static void test_loglimit(void **state)
{
    static struct loglimit l;
    struct policy_ip a = ip_of("203.0.113.1"), b = ip_of("203.0.113.2"), ip;
    uint64_t unlogged = 99;
    int i, lines = 0;

    (void)state;
    loglimit_init(&l, 7);
    assert_true(loglimit_allow(&l, &a, 0, &unlogged));
    assert_int_equal(unlogged, 0);
    /* The same source again within the minute: not logged. */
    for (i = 0; i < 100; i++)
        assert_false(loglimit_allow(&l, &a, 1 + i, &unlogged));
    assert_true(loglimit_allow(&l, &b, 200, &unlogged));
    assert_int_equal(unlogged, 100);
    /* A minute on, the first source is logged again. */
    assert_false(loglimit_allow(&l, &a, LOGLIMIT_PERIOD_MS - 1, &unlogged));
    assert_true(loglimit_allow(&l, &a, LOGLIMIT_PERIOD_MS, &unlogged));
    assert_int_equal(unlogged, 1);
    /* Many sources: at most LOGLIMIT_LINES lines a period in all. */
    loglimit_init(&l, 7);
    ip = ip_of("198.51.100.0");
    for (i = 0; i < 200; i++) {
        ip.b[3] = (uint8_t)i;
        lines += loglimit_allow(&l, &ip, 1000 + i, &unlogged);
    }
    assert_int_equal(lines, LOGLIMIT_LINES);
    ip.b[3] = 250;
    assert_true(loglimit_allow(&l, &ip, 1000 + LOGLIMIT_PERIOD_MS, &unlogged));
    assert_int_equal(unlogged, 200 - LOGLIMIT_LINES);
}

static bool second(struct challenges *c, const char *cid, const char *method, uint32_t cseq)
{
    return challenges_second(c, cid, strlen(cid), method, strlen(method), cseq);
}

static void test_challenges(void **state)
{
    struct challenges c;
    int i;

    (void)state;
    challenges_init(&c);
    /* INVITE 1 challenged, the retry (2) answered: one challenge. */
    assert_false(second(&c, "call-a", "INVITE", 1));
    /* A retransmission of that 401 is not a second challenge. */
    assert_false(second(&c, "call-a", "INVITE", 1));
    /* The retry is challenged too (wrong password, stale=true): second. */
    assert_true(second(&c, "call-a", "INVITE", 2));
    /* Registration: every refresh is challenged once, never twice. */
    assert_false(second(&c, "reg", "REGISTER", 1));
    assert_false(second(&c, "reg", "REGISTER", 3)); /* 2 was answered 200 */
    assert_false(second(&c, "reg", "REGISTER", 5));
    assert_true(second(&c, "reg", "REGISTER", 6));
    /* After the end, the next request starts over. */
    assert_false(second(&c, "reg", "REGISTER", 7));
    /* Methods and Call-IDs are told apart. */
    assert_false(second(&c, "call-b", "INVITE", 1));
    assert_false(second(&c, "call-b", "BYE", 2));
    assert_false(second(&c, "call-c", "INVITE", 2));
    assert_true(second(&c, "call-b", "BYE", 3));
    /* The table is bounded: old requests are forgotten, new ones tracked. */
    for (i = 0; i < 3 * CHALLENGE_SLOTS; i++) {
        char cid[32];

        snprintf(cid, sizeof(cid), "flood-%d", i);
        assert_false(second(&c, cid, "INVITE", 1));
    }
    assert_false(second(&c, "late", "INVITE", 10));
    assert_true(second(&c, "late", "INVITE", 11));
}

static void test_called_user(void **state)
{
    (void)state;
    /* A registration trunk: the registered user in the Request-URI. */
    assert_string_equal(policy_called_user("alice", "+918000000001", "alice"), "+918000000001");
    /* An IP trunk: the number in the Request-URI. */
    assert_string_equal(policy_called_user("+918000000001", "+14155550100", "alice"),
                        "+918000000001");
    assert_string_equal(policy_called_user("+918000000001", "alice", NULL), "+918000000001");
    assert_string_equal(policy_called_user("alice", "+918000000001", NULL), "alice");
    assert_string_equal(policy_called_user("alice", "+918000000001", ""), "alice");
    /* User parts compare exactly (RFC 3261 19.1.4: case-sensitive). */
    assert_string_equal(policy_called_user("Alice", "+918000000001", "alice"), "Alice");
    assert_string_equal(policy_called_user("", "+918000000001", "alice"), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admission),   cmocka_unit_test(test_admission_table_full),
        cmocka_unit_test(test_loglimit),    cmocka_unit_test(test_challenges),
        cmocka_unit_test(test_called_user),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
