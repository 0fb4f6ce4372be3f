/* test_netaddr: the address-list parser and matcher behind --sip-allow and
 * --trusted-proxy (IPv4, IPv6, CIDR edges, any), and the address helpers. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "core/netaddr.h"

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

static void parse_ok(const char *s, struct allowlist *l)
{
    char why[200] = "";

    if (allowlist_parse(s, l, why, sizeof(why)) != ERR_OK)
        print_error("'%s' refused: %s\n", s, why);
    assert_int_equal(allowlist_parse(s, l, why, sizeof(why)), ERR_OK);
}

struct match_case {
    const char *list;
    const char *ip;
    bool want;
};

static void test_allow_match(void **state)
{
    static const struct match_case cases[] = {
        {"192.0.2.10", "192.0.2.10", true},
        {"192.0.2.10", "192.0.2.11", false},
        {"192.0.2.10", "::ffff:192.0.2.10", true}, /* a v4 client on a dual-stack socket */
        {"198.51.100.0/24", "198.51.100.0", true},
        {"198.51.100.0/24", "198.51.100.255", true},
        {"198.51.100.0/24", "198.51.101.0", false},
        {"198.51.100.0/24", "198.51.99.255", false},
        {"10.0.0.0/8", "10.255.255.255", true},
        {"10.0.0.0/8", "11.0.0.0", false},
        {"172.16.0.0/12", "172.31.255.254", true},
        {"172.16.0.0/12", "172.32.0.0", false},
        {"192.0.2.128/25", "192.0.2.127", false},
        {"192.0.2.128/25", "192.0.2.129", true},
        {"192.0.2.7/32", "192.0.2.7", true},
        {"192.0.2.7/32", "192.0.2.6", false},
        {"0.0.0.0/0", "203.0.113.9", true},
        {"0.0.0.0/0", "2001:db8::1", false}, /* v4 rules never match v6 */
        {"::/0", "2001:db8::1", true},
        {"::/0", "203.0.113.9", false},
        {"2001:db8::/32", "2001:db8:ffff::1", true},
        {"2001:db8::/32", "2001:db9::1", false},
        {"2001:db8::/33", "2001:db8:7fff::1", true},
        {"2001:db8::/33", "2001:db8:8000::1", false},
        {"[2001:db8::1]", "2001:db8::1", true},
        {"[::1]/128", "::1", true},
        {"::1", "::2", false},
        {"::ffff:192.0.2.10", "192.0.2.10", false}, /* written as IPv6, kept IPv6 */
        {"any", "203.0.113.9", true},
        {"any", "2001:db8::1", true},
        {" 192.0.2.1 ,\t198.51.100.0/24 ", "198.51.100.77", true},
        {"192.0.2.1, 198.51.100.0/24", "192.0.2.1", true},
        {"192.0.2.1, any", "203.0.113.1", true},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct allowlist l;
        struct policy_ip ip = ip_of(cases[i].ip);

        parse_ok(cases[i].list, &l);
        if (allowlist_match(&l, &ip) != cases[i].want)
            print_error("case %zu: '%s' with %s, want %d\n", i, cases[i].list, cases[i].ip,
                        cases[i].want);
        assert_int_equal(allowlist_match(&l, &ip), cases[i].want);
    }
}

struct bad_case {
    const char *list;
    const char *why; /* a substring of the reason */
};

static void test_allow_refused(void **state)
{
    static const struct bad_case cases[] = {
        {"", "empty item"},
        {",", "empty item"},
        {"192.0.2.1,", "empty item"},
        {"192.0.2.1,,192.0.2.2", "empty item"},
        {"  ", "empty item"},
        {"carrier.example.net", "'carrier.example.net' is not an IP address"},
        {"192.0.2.256", "not an IP address"},
        {"192.0.2", "not an IP address"},
        {"192.0.2.1:5060", "not an IP address"},
        {"[192.0.2.1]", "not an IP address"},
        {"192.0.2.0/33", "0 to 32"},
        {"192.0.2.0/-1", "0 to 32"},
        {"192.0.2.0/", "0 to 32"},
        {"192.0.2.0/024", "0 to 32"},
        {"192.0.2.0/24x", "0 to 32"},
        {"2001:db8::/129", "0 to 128"},
        {"10.0.0.1/8", "host bits"},
        {"192.0.2.1/31", "host bits"},
        {"2001:db8::1/64", "host bits"},
        {"ANY", "not an IP address"},
        {"192.0.2.1 192.0.2.2", "not an IP address"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct allowlist l = {.n = 99};
        char why[200] = "";

        assert_int_equal(allowlist_parse(cases[i].list, &l, why, sizeof(why)), ERR_INVALID);
        if (!strstr(why, cases[i].why))
            print_error("case %zu '%s': reason '%s' lacks '%s'\n", i, cases[i].list, why,
                        cases[i].why);
        assert_non_null(strstr(why, cases[i].why));
        assert_int_equal(l.n, 99); /* untouched */
    }
}

static void test_allow_limits(void **state)
{
    char buf[ALLOW_TEXT_MAX + 64], why[200];
    struct allowlist l;
    struct policy_ip ip;
    size_t len = 0;
    int i;

    (void)state;
    /* ALLOW_MAX rules fit, one more does not. */
    for (i = 0; i < ALLOW_MAX; i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s10.0.%d.1", i ? "," : "", i);
    parse_ok(buf, &l);
    assert_int_equal(l.n, ALLOW_MAX);
    snprintf(buf + len, sizeof(buf) - len, ",10.1.0.1");
    assert_int_equal(allowlist_parse(buf, &l, why, sizeof(why)), ERR_INVALID);
    assert_non_null(strstr(why, "more than"));
    /* Duplicates count once. */
    parse_ok("192.0.2.1,192.0.2.1,192.0.2.1", &l);
    assert_int_equal(l.n, 1);
    /* Too long a value. */
    memset(buf, ' ', ALLOW_TEXT_MAX + 1);
    buf[ALLOW_TEXT_MAX + 1] = '\0';
    assert_int_equal(allowlist_parse(buf, &l, why, sizeof(why)), ERR_INVALID);
    /* allowlist_add: host rules, bad prefixes, a full list. */
    memset(&l, 0, sizeof(l));
    ip = ip_of("203.0.113.5");
    assert_int_equal(allowlist_add(&l, &ip, 32), ERR_OK);
    assert_int_equal(allowlist_add(&l, &ip, 33), ERR_INVALID);
    assert_int_equal(allowlist_add(&l, &ip, 24), ERR_INVALID); /* host bits */
    assert_true(allowlist_match(&l, &ip));
    for (i = 0; l.n < ALLOW_MAX; i++) {
        struct policy_ip other = ip_of("198.51.100.0");

        other.b[3] = (uint8_t)i;
        assert_int_equal(allowlist_add(&l, &other, 32), ERR_OK);
    }
    ip = ip_of("203.0.113.6");
    assert_int_equal(allowlist_add(&l, &ip, 32), ERR_TOO_LARGE);
    /* An empty list refuses everyone. */
    memset(&l, 0, sizeof(l));
    ip = ip_of("127.0.0.1");
    assert_false(allowlist_match(&l, &ip));
}

static void test_ip_helpers(void **state)
{
    char text[POLICY_IP_TEXT];
    struct policy_ip a = ip_of("::ffff:10.1.2.3"), b = ip_of("10.1.2.3"), c;
    uint8_t junk[5] = {0};

    (void)state;
    assert_true(policy_ip_equal(&a, &b));
    policy_ip_format(&a, text);
    assert_string_equal(text, "10.1.2.3");
    c = ip_of("2001:db8::42");
    policy_ip_format(&c, text);
    assert_string_equal(text, "2001:db8::42");
    assert_false(policy_ip_equal(&b, &c));
    assert_int_equal(policy_ip_from_bytes(junk, sizeof(junk), &c), ERR_INVALID);
}

static void test_ip_loopback(void **state)
{
    static const char *const yes[] = {"127.0.0.1", "127.255.255.254", "127.0.0.2", "::1",
                                      "::ffff:127.0.0.1"};
    static const char *const no[] = {"128.0.0.1",  "126.255.255.255",
                                     "0.0.0.0",    "10.0.0.1",
                                     "::",         "::2",
                                     "fe80::1",    "::ffff:10.0.0.1",
                                     "::127.0.0.1"};
    struct policy_ip ip;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        ip = ip_of(yes[i]);
        assert_true(policy_ip_loopback(&ip));
    }
    for (i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        ip = ip_of(no[i]);
        assert_false(policy_ip_loopback(&ip));
    }
}

static void test_ip_parse(void **state)
{
    static const char *const bad[] = {
        "",         "1.2.3",    "1.2.3.4.5", "1.2.3.4:80",    "[1.2.3.4]",
        "[::1",     "::1]",     "[]",        "2001:db8::/32", "host",
        " 1.2.3.4", "1.2.3.4 ", "256.1.1.1", "1.2.3.4/32",    "::g",
    };
    char text[POLICY_IP_TEXT];
    struct policy_ip ip;
    size_t i;

    (void)state;
    assert_int_equal(policy_ip_parse("192.0.2.1", 9, &ip), ERR_OK);
    policy_ip_format(&ip, text);
    assert_string_equal(text, "192.0.2.1");
    assert_int_equal(policy_ip_parse("[2001:db8::1]", 13, &ip), ERR_OK);
    assert_int_equal(ip.v6, 1);
    policy_ip_format(&ip, text);
    assert_string_equal(text, "2001:db8::1");
    assert_int_equal(policy_ip_parse("::ffff:10.1.2.3", 15, &ip), ERR_OK);
    assert_int_equal(ip.v6, 0);
    /* The length is what counts, not a NUL. */
    assert_int_equal(policy_ip_parse("10.0.0.1,junk", 8, &ip), ERR_OK);
    policy_ip_format(&ip, text);
    assert_string_equal(text, "10.0.0.1");
    assert_int_equal(policy_ip_parse("10.0.0.1\0", 9, &ip), ERR_INVALID);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (policy_ip_parse(bad[i], strlen(bad[i]), &ip) != ERR_INVALID)
            fail_msg("'%s' accepted", bad[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allow_match),  cmocka_unit_test(test_allow_refused),
        cmocka_unit_test(test_allow_limits), cmocka_unit_test(test_ip_helpers),
        cmocka_unit_test(test_ip_parse),     cmocka_unit_test(test_ip_loopback),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
