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

static void test_listen_list(void **state)
{
    struct listen_list l;
    char why[160];
    char many[LISTEN_TEXT_MAX + 8];
    int i;

    (void)state;
    assert_int_equal(listen_list_parse("127.0.0.1:5060", &l, why, sizeof(why)), ERR_OK);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].tp, POLICY_TP_UDP);
    assert_string_equal(l.v[0].hostport, "127.0.0.1:5060");
    assert_int_equal(listen_list_parse(" udp:10.0.0.5:5060 , TCP:10.0.0.5:5060,tls:[::1]:5061 ", &l,
                                       why, sizeof(why)),
                     ERR_OK);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.v[1].tp, POLICY_TP_TCP);
    assert_int_equal(l.v[2].tp, POLICY_TP_TLS);
    assert_string_equal(l.v[2].hostport, "[::1]:5061");
    assert_true(listen_list_has(&l, POLICY_TP_TLS));
    /* Refused, *out untouched, the item named. */
    l.n = 99;
    assert_int_equal(listen_list_parse("udp:10.0.0.5:0", &l, why, sizeof(why)), ERR_INVALID);
    assert_int_equal(l.n, 99);
    assert_non_null(strstr(why, "'udp:10.0.0.5:0'"));
    assert_int_equal(listen_list_parse("sctp:10.0.0.5:5060", &l, why, sizeof(why)), ERR_INVALID);
    assert_int_equal(listen_list_parse("host.example:5060", &l, why, sizeof(why)), ERR_INVALID);
    assert_int_equal(listen_list_parse("10.0.0.5", &l, why, sizeof(why)), ERR_INVALID);
    assert_int_equal(listen_list_parse("10.0.0.5:65536", &l, why, sizeof(why)), ERR_INVALID);
    assert_int_equal(listen_list_parse("10.0.0.5:5060x", &l, why, sizeof(why)), ERR_INVALID);
    assert_int_equal(listen_list_parse("::1:5060", &l, why, sizeof(why)), ERR_INVALID);
    assert_int_equal(listen_list_parse("[::1]5060", &l, why, sizeof(why)), ERR_INVALID);
    assert_int_equal(listen_list_parse("", &l, why, sizeof(why)), ERR_INVALID);
    assert_int_equal(listen_list_parse("10.0.0.5:5060,", &l, why, sizeof(why)), ERR_INVALID);
    assert_int_equal(listen_list_parse("tcp:10.0.0.5:5060,tcp:10.0.0.5:5060", &l, why, sizeof(why)),
                     ERR_INVALID);
    assert_non_null(strstr(why, "twice"));
    /* The same address on two transports is two listeners. */
    assert_int_equal(listen_list_parse("udp:10.0.0.5:5060,tcp:10.0.0.5:5060", &l, why, sizeof(why)),
                     ERR_OK);
    /* Bounded: at most LISTEN_MAX listeners, LISTEN_TEXT_MAX bytes. */
    many[0] = '\0';
    for (i = 0; i <= LISTEN_MAX; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s10.0.0.%d:5060", i ? "," : "",
                 i + 1);
    assert_int_equal(listen_list_parse(many, &l, why, sizeof(why)), ERR_INVALID);
    memset(many, '1', sizeof(many) - 1);
    many[sizeof(many) - 1] = '\0';
    assert_int_equal(listen_list_parse(many, &l, why, sizeof(why)), ERR_INVALID);
}

static void test_uri_transport(void **state)
{
    enum policy_tp tp;

    (void)state;
    assert_int_equal(policy_uri_transport("sip:carrier.test", &tp), ERR_OK);
    assert_int_equal(tp, POLICY_TP_UDP);
    assert_int_equal(policy_uri_transport("SIPS:carrier.test:5061", &tp), ERR_OK);
    assert_int_equal(tp, POLICY_TP_TLS);
    assert_int_equal(policy_uri_transport("sip:carrier.test;lr;transport=tcp", &tp), ERR_OK);
    assert_int_equal(tp, POLICY_TP_TCP);
    assert_int_equal(policy_uri_transport("sip:carrier.test;transport=TLS;lr", &tp), ERR_OK);
    assert_int_equal(tp, POLICY_TP_TLS);
    assert_int_equal(policy_uri_transport("sip:carrier.test;transport=udp", &tp), ERR_OK);
    assert_int_equal(tp, POLICY_TP_UDP);
    assert_int_equal(policy_uri_transport("sip:carrier.test;transport=sctp", &tp), ERR_INVALID);
    assert_int_equal(policy_uri_transport("sip:carrier.test;transport=", &tp), ERR_INVALID);
    assert_int_equal(policy_uri_transport("tel:+14155550100", &tp), ERR_INVALID);
    assert_string_equal(policy_tp_name(POLICY_TP_TLS), "tls");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admission),     cmocka_unit_test(test_admission_table_full),
        cmocka_unit_test(test_loglimit),      cmocka_unit_test(test_challenges),
        cmocka_unit_test(test_called_user),   cmocka_unit_test(test_listen_list),
        cmocka_unit_test(test_uri_transport),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
