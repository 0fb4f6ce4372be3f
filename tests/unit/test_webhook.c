/* test_webhook: the payloads of CALLS.md section 5 byte for byte (JSON for
 * POST, query string for GET; ring, answer, hangup; outbound and inbound),
 * percent-encoding, the GET URL's separator, the headers of a delivery, and
 * the address tables of the link-local and --deny-private-urls rules. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "call/webhook.h"
#include "core/addrclass.h"

#define T0 1770028200000LL /* 2026-02-02T10:30:00.000Z */

static struct store_call outbound_call(void)
{
    struct store_call c;

    memset(&c, 0, sizeof(c));
    memcpy(c.call_uuid, "9b2f6c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d", 37);
    memcpy(c.request_uuid, "sfv_ob_req_a8k3m2x9p1z0", 24);
    memcpy(c.from, "+918000000001", 14);
    memcpy(c.to, "+14155550100", 13);
    snprintf(c.direction, sizeof(c.direction), "OUTBOUND");
    snprintf(c.status, sizeof(c.status), "COMPLETED");
    c.started_at = T0;
    c.answered_at = T0 + 5250;
    c.ended_at = T0 + 5250 + 62999; /* 62.999 s: 62 */
    memcpy(c.hangup_cause, "16", 3);
    c.rtp_packets_received = 3145;
    c.rtp_packets_lost = 5;
    c.rtp_jitter_us = 1210; /* 1.21 ms */
    return c;
}

static struct store_call inbound_call(void)
{
    struct store_call c = outbound_call();

    c.request_uuid[0] = '\0';
    memcpy(c.from, "+14155550100", 13);
    memcpy(c.to, "+918000000001", 14);
    snprintf(c.direction, sizeof(c.direction), "INBOUND");
    return c;
}

enum enc { JSON, QUERY };

static void expect(enum enc enc, enum webhook_kind kind, const struct store_call *c,
                   const char *want)
{
    struct buf b;
    enum err rc;

    buf_init(&b, 4096);
    rc = enc == JSON ? webhook_body_json(kind, c, &b) : webhook_query_string(kind, c, &b);
    assert_int_equal(rc, ERR_OK);
    assert_non_null(b.data);
    assert_string_equal(b.data, want);
    assert_int_equal(b.len, strlen(want));
    buf_release(&b);
}

static void test_outbound_json(void **state)
{
    struct store_call c = outbound_call();

    (void)state;
    expect(JSON, WEBHOOK_RING, &c,
           "{\"call_uuid\":\"9b2f6c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d\","
           "\"request_uuid\":\"sfv_ob_req_a8k3m2x9p1z0\",\"from\":\"+918000000001\","
           "\"to\":\"+14155550100\",\"direction\":\"OUTBOUND\",\"call_status\":\"RINGING\","
           "\"started_at\":\"2026-02-02T10:30:00.000Z\"}");
    expect(JSON, WEBHOOK_ANSWER, &c,
           "{\"call_uuid\":\"9b2f6c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d\","
           "\"request_uuid\":\"sfv_ob_req_a8k3m2x9p1z0\",\"from\":\"+918000000001\","
           "\"to\":\"+14155550100\",\"direction\":\"OUTBOUND\",\"call_status\":\"IN_PROGRESS\","
           "\"answered_at\":\"2026-02-02T10:30:05.250Z\"}");
    expect(JSON, WEBHOOK_HANGUP, &c,
           "{\"call_uuid\":\"9b2f6c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d\","
           "\"request_uuid\":\"sfv_ob_req_a8k3m2x9p1z0\",\"from\":\"+918000000001\","
           "\"to\":\"+14155550100\",\"direction\":\"OUTBOUND\",\"call_status\":\"COMPLETED\","
           "\"started_at\":\"2026-02-02T10:30:00.000Z\","
           "\"answer_at\":\"2026-02-02T10:30:05.250Z\","
           "\"ended_at\":\"2026-02-02T10:31:08.249Z\",\"duration\":62,\"hangup_cause\":\"16\","
           "\"rtp_packets_received\":3145,\"rtp_packets_lost\":5,\"rtp_jitter_ms\":1.21}");
}

static void test_outbound_query(void **state)
{
    struct store_call c = outbound_call();

    (void)state;
    expect(QUERY, WEBHOOK_RING, &c,
           "call_uuid=9b2f6c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d&request_uuid=sfv_ob_req_a8k3m2x9p1z0"
           "&from=%2B918000000001&to=%2B14155550100&direction=OUTBOUND&call_status=RINGING"
           "&started_at=2026-02-02T10%3A30%3A00.000Z");
    expect(QUERY, WEBHOOK_ANSWER, &c,
           "call_uuid=9b2f6c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d&request_uuid=sfv_ob_req_a8k3m2x9p1z0"
           "&from=%2B918000000001&to=%2B14155550100&direction=OUTBOUND&call_status=IN_PROGRESS"
           "&answered_at=2026-02-02T10%3A30%3A05.250Z");
    expect(QUERY, WEBHOOK_HANGUP, &c,
           "call_uuid=9b2f6c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d&request_uuid=sfv_ob_req_a8k3m2x9p1z0"
           "&from=%2B918000000001&to=%2B14155550100&direction=OUTBOUND&call_status=COMPLETED"
           "&started_at=2026-02-02T10%3A30%3A00.000Z&answer_at=2026-02-02T10%3A30%3A05.250Z"
           "&ended_at=2026-02-02T10%3A31%3A08.249Z&duration=62&hangup_cause=16"
           "&rtp_packets_received=3145&rtp_packets_lost=5&rtp_jitter_ms=1.21");
}

static void test_inbound(void **state)
{
    struct store_call c = inbound_call();
    struct buf b;

    (void)state;
    expect(JSON, WEBHOOK_ANSWER, &c,
           "{\"call_uuid\":\"9b2f6c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d\","
           "\"from\":\"+14155550100\",\"to\":\"+918000000001\",\"direction\":\"INBOUND\","
           "\"call_status\":\"IN_PROGRESS\",\"answered_at\":\"2026-02-02T10:30:05.250Z\"}");
    expect(JSON, WEBHOOK_HANGUP, &c,
           "{\"call_uuid\":\"9b2f6c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d\","
           "\"from\":\"+14155550100\",\"to\":\"+918000000001\",\"direction\":\"INBOUND\","
           "\"call_status\":\"COMPLETED\",\"started_at\":\"2026-02-02T10:30:00.000Z\","
           "\"answer_at\":\"2026-02-02T10:30:05.250Z\","
           "\"ended_at\":\"2026-02-02T10:31:08.249Z\",\"duration\":62,\"hangup_cause\":\"16\","
           "\"rtp_packets_received\":3145,\"rtp_packets_lost\":5,\"rtp_jitter_ms\":1.21}");
    expect(QUERY, WEBHOOK_ANSWER, &c,
           "call_uuid=9b2f6c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d&from=%2B14155550100"
           "&to=%2B918000000001&direction=INBOUND&call_status=IN_PROGRESS"
           "&answered_at=2026-02-02T10%3A30%3A05.250Z");
    expect(QUERY, WEBHOOK_HANGUP, &c,
           "call_uuid=9b2f6c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d&from=%2B14155550100"
           "&to=%2B918000000001&direction=INBOUND&call_status=COMPLETED"
           "&started_at=2026-02-02T10%3A30%3A00.000Z&answer_at=2026-02-02T10%3A30%3A05.250Z"
           "&ended_at=2026-02-02T10%3A31%3A08.249Z&duration=62&hangup_cause=16"
           "&rtp_packets_received=3145&rtp_packets_lost=5&rtp_jitter_ms=1.21");
    /* Inbound calls have no ring webhook (section 3). */
    buf_init(&b, 4096);
    assert_int_equal(webhook_body_json(WEBHOOK_RING, &c, &b), ERR_INVALID);
    buf_reset(&b);
    assert_int_equal(webhook_query_string(WEBHOOK_RING, &c, &b), ERR_INVALID);
    buf_release(&b);
}

static void test_hangup_unanswered(void **state)
{
    struct store_call c = outbound_call();

    (void)state;
    c.answered_at = 0;
    c.rtp_packets_received = 0;
    c.rtp_packets_lost = 0;
    c.rtp_jitter_us = 0;
    snprintf(c.status, sizeof(c.status), "NO_ANSWER");
    memcpy(c.hangup_cause, "19", 3);
    c.ended_at = T0 + 60000;
    /* answer_at absent (not null), duration 0. */
    expect(JSON, WEBHOOK_HANGUP, &c,
           "{\"call_uuid\":\"9b2f6c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d\","
           "\"request_uuid\":\"sfv_ob_req_a8k3m2x9p1z0\",\"from\":\"+918000000001\","
           "\"to\":\"+14155550100\",\"direction\":\"OUTBOUND\",\"call_status\":\"NO_ANSWER\","
           "\"started_at\":\"2026-02-02T10:30:00.000Z\","
           "\"ended_at\":\"2026-02-02T10:31:00.000Z\",\"duration\":0,\"hangup_cause\":\"19\","
           "\"rtp_packets_received\":0,\"rtp_packets_lost\":0,\"rtp_jitter_ms\":0}");
    expect(QUERY, WEBHOOK_HANGUP, &c,
           "call_uuid=9b2f6c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d&request_uuid=sfv_ob_req_a8k3m2x9p1z0"
           "&from=%2B918000000001&to=%2B14155550100&direction=OUTBOUND&call_status=NO_ANSWER"
           "&started_at=2026-02-02T10%3A30%3A00.000Z&ended_at=2026-02-02T10%3A31%3A00.000Z"
           "&duration=0&hangup_cause=19&rtp_packets_received=0&rtp_packets_lost=0"
           "&rtp_jitter_ms=0");
}

static void test_hangup_statuses(void **state)
{
    static const struct {
        enum call_status s;
        const char *name;
        bool final;
    } cases[] = {
        {CALL_STATUS_QUEUED, "QUEUED", false},           {CALL_STATUS_RINGING, "RINGING", false},
        {CALL_STATUS_IN_PROGRESS, "IN_PROGRESS", false}, {CALL_STATUS_COMPLETED, "COMPLETED", true},
        {CALL_STATUS_NO_ANSWER, "NO_ANSWER", true},      {CALL_STATUS_BUSY, "BUSY", true},
        {CALL_STATUS_CANCELED, "CANCELED", true},        {CALL_STATUS_FAILED, "FAILED", true},
    };
    struct store_call c = outbound_call();
    struct buf b;
    size_t i;

    (void)state;
    buf_init(&b, 4096);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char want[64];

        assert_string_equal(call_status_name(cases[i].s), cases[i].name);
        assert_int_equal(call_status_final(cases[i].s), cases[i].final);
        snprintf(c.status, sizeof(c.status), "%s", call_status_name(cases[i].s));
        buf_reset(&b);
        if (!cases[i].final) {
            assert_int_equal(webhook_body_json(WEBHOOK_HANGUP, &c, &b), ERR_INVALID);
            continue;
        }
        assert_int_equal(webhook_body_json(WEBHOOK_HANGUP, &c, &b), ERR_OK);
        snprintf(want, sizeof(want), "\"call_status\":\"%s\"", cases[i].name);
        assert_non_null(strstr(b.data, want));
        /* Ring and answer name their own status whatever the record says. */
        buf_reset(&b);
        assert_int_equal(webhook_body_json(WEBHOOK_ANSWER, &c, &b), ERR_OK);
        assert_non_null(strstr(b.data, "\"call_status\":\"IN_PROGRESS\""));
    }
    assert_string_equal(call_status_name((enum call_status)99), "");
    /* The record holds text: a status or direction that names none is
     * refused, never sent as is. */
    snprintf(c.status, sizeof(c.status), "DONE");
    buf_reset(&b);
    assert_int_equal(webhook_body_json(WEBHOOK_HANGUP, &c, &b), ERR_INVALID);
    snprintf(c.status, sizeof(c.status), "COMPLETED");
    snprintf(c.direction, sizeof(c.direction), "BOTH");
    buf_reset(&b);
    assert_int_equal(webhook_body_json(WEBHOOK_ANSWER, &c, &b), ERR_INVALID);
    snprintf(c.direction, sizeof(c.direction), "OUTBOUND");
    buf_reset(&b);
    assert_int_equal(webhook_body_json((enum webhook_kind)7, &c, &b), ERR_INVALID);
    buf_release(&b);
}

static void test_duration(void **state)
{
    struct store_call c = outbound_call();

    (void)state;
    c.answered_at = T0;
    c.ended_at = T0 + 999;
    assert_int_equal(webhook_duration(&c), 0);
    c.ended_at = T0 + 1000;
    assert_int_equal(webhook_duration(&c), 1);
    c.ended_at = T0 + 14400000 + 999;
    assert_int_equal(webhook_duration(&c), 14400);
    c.ended_at = T0 - 5000; /* the clock went backwards */
    assert_int_equal(webhook_duration(&c), 0);
    c.answered_at = 0;
    c.ended_at = T0 + 5000;
    assert_int_equal(webhook_duration(&c), 0);
}

static void test_escaping(void **state)
{
    struct store_call c = inbound_call();

    (void)state;
    /* An inbound caller that is not a valid number is passed as sent. */
    memcpy(c.from, "an\"o\\n y/\xc3\xa4", sizeof("an\"o\\n y/\xc3\xa4"));
    memcpy(c.hangup_cause, "102", 4);
    snprintf(c.status, sizeof(c.status), "CANCELED");
    c.answered_at = 0;
    c.rtp_jitter_us = 20; /* 0.02 ms */
    expect(JSON, WEBHOOK_HANGUP, &c,
           "{\"call_uuid\":\"9b2f6c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d\","
           "\"from\":\"an\\\"o\\\\n y/\xc3\xa4\",\"to\":\"+918000000001\","
           "\"direction\":\"INBOUND\",\"call_status\":\"CANCELED\","
           "\"started_at\":\"2026-02-02T10:30:00.000Z\","
           "\"ended_at\":\"2026-02-02T10:31:08.249Z\",\"duration\":0,\"hangup_cause\":\"102\","
           "\"rtp_packets_received\":3145,\"rtp_packets_lost\":5,\"rtp_jitter_ms\":0.02}");
    expect(QUERY, WEBHOOK_HANGUP, &c,
           "call_uuid=9b2f6c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d&from=an%22o%5Cn%20y%2F%C3%A4"
           "&to=%2B918000000001&direction=INBOUND&call_status=CANCELED"
           "&started_at=2026-02-02T10%3A30%3A00.000Z&ended_at=2026-02-02T10%3A31%3A08.249Z"
           "&duration=0&hangup_cause=102&rtp_packets_received=3145&rtp_packets_lost=5"
           "&rtp_jitter_ms=0.02");
}

static void test_jitter_text(void **state)
{
    char t[WEBHOOK_JITTER_TEXT];

    (void)state;
    webhook_jitter_ms(0, t);
    assert_string_equal(t, "0");
    webhook_jitter_ms(3000, t);
    assert_string_equal(t, "3");
    webhook_jitter_ms(1500, t);
    assert_string_equal(t, "1.5");
    webhook_jitter_ms(1210, t);
    assert_string_equal(t, "1.21");
    webhook_jitter_ms(7, t);
    assert_string_equal(t, "0.007");
    webhook_jitter_ms(12345678, t);
    assert_string_equal(t, "12345.678");
    webhook_jitter_ms(-5, t);
    assert_string_equal(t, "0");
}

static void test_pct_encode(void **state)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"", ""},
        {"AZaz09-._~", "AZaz09-._~"},
        {"+", "%2B"},
        {" ", "%20"},
        {"a&b=c?d#e", "a%26b%3Dc%3Fd%23e"},
        {"%", "%25"},
        {"/:@!$'()*,;[]", "%2F%3A%40%21%24%27%28%29%2A%2C%3B%5B%5D"},
        {"\x01\x7f\x80\xff", "%01%7F%80%FF"},
        {"\r\n", "%0D%0A"},
        {"\xc3\xa4", "%C3%A4"},
    };
    struct buf b;
    size_t i;

    (void)state;
    buf_init(&b, 256);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_reset(&b);
        assert_int_equal(webhook_pct_encode(cases[i].in, &b), ERR_OK);
        assert_string_equal(b.data ? b.data : "", cases[i].want);
    }
    buf_release(&b);
}

static void test_get_url(void **state)
{
    static const struct {
        const char *url, *prefix;
    } cases[] = {
        {"https://h.example/ans", "https://h.example/ans?"},
        {"https://h.example/ans?", "https://h.example/ans?"},
        {"https://h.example/ans?k=v", "https://h.example/ans?k=v&"},
        {"https://h.example/ans?k=v&", "https://h.example/ans?k=v&"},
        {"https://h.example/ans#frag", "https://h.example/ans?"},
        {"https://h.example/ans?k=v#f?x", "https://h.example/ans?k=v&"},
        {"https://h.example#?", "https://h.example?"},
        {"http://h", "http://h?"},
    };
    struct store_call c = inbound_call();
    const char *q = "call_uuid=9b2f6c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d&from=%2B14155550100"
                    "&to=%2B918000000001&direction=INBOUND&call_status=IN_PROGRESS"
                    "&answered_at=2026-02-02T10%3A30%3A05.250Z";
    char want[512];
    struct buf b;
    size_t i;

    (void)state;
    buf_init(&b, 4096);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_reset(&b);
        assert_int_equal(webhook_get_url(cases[i].url, WEBHOOK_ANSWER, &c, &b), ERR_OK);
        snprintf(want, sizeof(want), "%s%s", cases[i].prefix, q);
        assert_string_equal(b.data, want);
    }
    buf_reset(&b);
    assert_int_equal(webhook_get_url("http://h", WEBHOOK_RING, &c, &b), ERR_INVALID);
    buf_release(&b);
}

static void test_buffer_cap(void **state)
{
    struct store_call c = outbound_call();
    struct buf b;
    size_t cap, json_len, query_len;

    (void)state;
    buf_init(&b, 4096);
    assert_int_equal(webhook_body_json(WEBHOOK_HANGUP, &c, &b), ERR_OK);
    json_len = b.len;
    buf_reset(&b);
    assert_int_equal(webhook_query_string(WEBHOOK_HANGUP, &c, &b), ERR_OK);
    query_len = b.len;
    buf_release(&b);
    /* Exactly the payload's size fits. */
    buf_init(&b, json_len);
    assert_int_equal(webhook_body_json(WEBHOOK_HANGUP, &c, &b), ERR_OK);
    buf_release(&b);
    buf_init(&b, query_len);
    assert_int_equal(webhook_query_string(WEBHOOK_HANGUP, &c, &b), ERR_OK);
    buf_release(&b);
    /* Any cap below the payload fails cleanly, never overflows. */
    for (cap = 0; cap < json_len || cap < query_len; cap++) {
        buf_init(&b, cap);
        assert_int_equal(webhook_body_json(WEBHOOK_HANGUP, &c, &b),
                         cap < json_len ? ERR_TOO_LARGE : ERR_OK);
        assert_true(b.len <= cap);
        buf_release(&b);
        buf_init(&b, cap);
        assert_int_equal(webhook_query_string(WEBHOOK_HANGUP, &c, &b),
                         cap < query_len ? ERR_TOO_LARGE : ERR_OK);
        assert_true(b.len <= cap);
        buf_release(&b);
    }
}

static void test_headers(void **state)
{
    struct store_call c = outbound_call();
    struct webhook_headers hs;
    char long_version[80];

    (void)state;
    assert_int_equal(webhook_headers_make(true, "0.1.0", &c, "dlv-123", &hs), ERR_OK);
    assert_int_equal(hs.n, 4);
    assert_string_equal(hs.h[0].name, "User-Agent");
    assert_string_equal(hs.h[0].value, "sfvopi/0.1.0");
    assert_string_equal(hs.h[1].name, "Content-Type");
    assert_string_equal(hs.h[1].value, "application/json");
    assert_string_equal(hs.h[2].name, "X-Sfvopi-Call-Uuid");
    assert_string_equal(hs.h[2].value, "9b2f6c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d");
    assert_string_equal(hs.h[3].name, "X-Sfvopi-Delivery");
    assert_string_equal(hs.h[3].value, "dlv-123");

    assert_int_equal(webhook_headers_make(false, "0.1.0", &c, "dlv-123", &hs), ERR_OK);
    assert_int_equal(hs.n, 3);
    assert_string_equal(hs.h[0].value, "sfvopi/0.1.0");
    assert_string_equal(hs.h[1].name, "X-Sfvopi-Call-Uuid");
    assert_string_equal(hs.h[2].name, "X-Sfvopi-Delivery");

    /* No header injection, no empty values. */
    assert_int_equal(webhook_headers_make(true, "0.1.0", &c, "a\r\nX: y", &hs), ERR_INVALID);
    assert_int_equal(webhook_headers_make(true, "0.1.0", &c, "", &hs), ERR_INVALID);
    assert_int_equal(webhook_headers_make(true, "", &c, "d", &hs), ERR_INVALID);
    assert_int_equal(webhook_headers_make(true, "1 2", &c, "d", &hs), ERR_INVALID);
    memset(long_version, '9', sizeof(long_version) - 1);
    long_version[sizeof(long_version) - 1] = '\0';
    assert_int_equal(webhook_headers_make(true, long_version, &c, "d", &hs), ERR_INVALID);
    long_version[sizeof(hs.user_agent) - 8] = '\0'; /* the longest that fits */
    assert_int_equal(webhook_headers_make(true, long_version, &c, "d", &hs), ERR_OK);
    assert_int_equal(strlen(hs.h[0].value), sizeof(hs.user_agent) - 1);
    c.call_uuid[3] = '\n';
    assert_int_equal(webhook_headers_make(true, "0.1.0", &c, "d", &hs), ERR_INVALID);
    c.call_uuid[0] = '\0';
    assert_int_equal(webhook_headers_make(true, "0.1.0", &c, "d", &hs), ERR_INVALID);
}

/* ---- addresses ---- */

struct addr_case {
    const char *ip;
    enum addr_class want;
};

static void test_addr_classify(void **state)
{
    static const struct addr_case cases[] = {
        /* Public. */
        {"8.8.8.8", ADDR_PUBLIC},
        {"1.1.1.1", ADDR_PUBLIC},
        {"169.253.255.255", ADDR_PUBLIC},
        {"169.255.0.0", ADDR_PUBLIC},
        {"172.15.255.255", ADDR_PUBLIC},
        {"172.32.0.0", ADDR_PUBLIC},
        {"192.167.255.255", ADDR_PUBLIC},
        {"192.169.0.0", ADDR_PUBLIC},
        {"11.0.0.0", ADDR_PUBLIC},
        {"9.255.255.255", ADDR_PUBLIC},
        {"128.0.0.1", ADDR_PUBLIC},
        {"255.255.255.255", ADDR_PUBLIC},
        {"2001:db8::1", ADDR_PUBLIC},
        {"2606:4700:4700::1111", ADDR_PUBLIC},
        {"fec0::1", ADDR_PUBLIC}, /* just past fe80::/10 */
        {"fe7f::1", ADDR_PUBLIC},
        {"fb00::1", ADDR_PUBLIC},
        {"fe00::1", ADDR_PUBLIC},
        {"::ffff:8.8.8.8", ADDR_PUBLIC},
        {"::808:808", ADDR_PUBLIC}, /* ::8.8.8.8, IPv4-compatible */
        {"::2", ADDR_LOOPBACK},     /* ::0.0.0.2: in 0/8 */
        {"[2001:db8::1]", ADDR_PUBLIC},
        /* Loopback (and what reaches this host). */
        {"127.0.0.1", ADDR_LOOPBACK},
        {"127.255.255.254", ADDR_LOOPBACK},
        {"0.0.0.0", ADDR_LOOPBACK},
        {"0.1.2.3", ADDR_LOOPBACK},
        {"::1", ADDR_LOOPBACK},
        {"::", ADDR_LOOPBACK},
        {"[::1]", ADDR_LOOPBACK},
        {"0:0:0:0:0:0:0:1", ADDR_LOOPBACK},
        {"::ffff:127.0.0.1", ADDR_LOOPBACK},
        {"::ffff:7f00:1", ADDR_LOOPBACK},
        {"::127.0.0.1", ADDR_LOOPBACK},
        /* Private. */
        {"10.0.0.1", ADDR_PRIVATE},
        {"10.255.255.255", ADDR_PRIVATE},
        {"172.16.0.0", ADDR_PRIVATE},
        {"172.31.255.255", ADDR_PRIVATE},
        {"192.168.0.1", ADDR_PRIVATE},
        {"192.168.255.255", ADDR_PRIVATE},
        {"fc00::1", ADDR_PRIVATE},
        {"fd12:3456::1", ADDR_PRIVATE},
        {"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ADDR_PRIVATE},
        {"::ffff:10.1.2.3", ADDR_PRIVATE},
        {"::ffff:192.168.1.1", ADDR_PRIVATE},
        {"64:ff9b::10.0.0.1", ADDR_PRIVATE},
        /* Link-local. */
        {"169.254.169.254", ADDR_LINK_LOCAL},
        {"169.254.0.0", ADDR_LINK_LOCAL},
        {"169.254.255.255", ADDR_LINK_LOCAL},
        {"fe80::1", ADDR_LINK_LOCAL},
        {"fe80::1%eth0", ADDR_LINK_LOCAL},
        {"[fe80::1%25eth0]", ADDR_LINK_LOCAL},
        {"febf:ffff::1", ADDR_LINK_LOCAL},
        {"FE80::ABCD", ADDR_LINK_LOCAL},
        {"::ffff:169.254.169.254", ADDR_LINK_LOCAL},
        {"::ffff:a9fe:a9fe", ADDR_LINK_LOCAL},
        {"0:0:0:0:0:ffff:169.254.1.1", ADDR_LINK_LOCAL},
        {"::169.254.169.254", ADDR_LINK_LOCAL},
        {"64:ff9b::169.254.169.254", ADDR_LINK_LOCAL},
        {"fd00:ec2::254", ADDR_PRIVATE}, /* AWS's IPv6 metadata is ULA */
        /* Not numeric. */
        {"", ADDR_INVALID},
        {"localhost", ADDR_INVALID},
        {"metadata.google.internal", ADDR_INVALID},
        {"169.254.169.254.nip.io", ADDR_INVALID},
        {"2852039166", ADDR_INVALID}, /* 169.254.169.254 as one number */
        {"0xa9.0xfe.0xa9.0xfe", ADDR_INVALID},
        {"169.254.43518", ADDR_INVALID},
        {"127.1", ADDR_INVALID},
        {"256.1.1.1", ADDR_INVALID},
        {" 8.8.8.8", ADDR_INVALID},
        {"8.8.8.8 ", ADDR_INVALID},
        {"[]", ADDR_INVALID},
        {"[8.8.8.8", ADDR_INVALID},
        {"%eth0", ADDR_INVALID},
        {"1:2:3:4:5:6:7:8:9", ADDR_INVALID},
        {"0000:0000:0000:0000:0000:ffff:169.254.169.254:1", ADDR_INVALID},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum addr_class got = addr_classify(cases[i].ip);
        bool link = cases[i].want == ADDR_LINK_LOCAL;
        bool invalid = cases[i].want == ADDR_INVALID;
        bool pub = cases[i].want == ADDR_PUBLIC;

        if (got != cases[i].want)
            print_error("case %zu: '%s' gave %d, want %d\n", i, cases[i].ip, got, cases[i].want);
        assert_int_equal(got, cases[i].want);
        assert_int_equal(addr_blocked(cases[i].ip), link || invalid);
        assert_int_equal(addr_private(cases[i].ip), !pub);
        assert_int_equal(addr_refused(cases[i].ip, false), link || invalid);
        assert_int_equal(addr_refused(cases[i].ip, true), !pub);
    }
}

static void test_addr_raw(void **state)
{
    static const unsigned char v4[4] = {169, 254, 169, 254};
    static const unsigned char v4pub[4] = {93, 184, 216, 34};
    static const unsigned char v6[16] = {0xfe, 0x80, [15] = 1};
    static const unsigned char v6pub[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};

    (void)state;
    assert_int_equal(addr_classify_raw(4, v4), ADDR_LINK_LOCAL);
    assert_int_equal(addr_classify_raw(4, v4pub), ADDR_PUBLIC);
    assert_int_equal(addr_classify_raw(6, v6), ADDR_LINK_LOCAL);
    assert_int_equal(addr_classify_raw(6, v6pub), ADDR_PUBLIC);
    assert_int_equal(addr_classify_raw(5, v6), ADDR_INVALID);
}

static void test_direction_names(void **state)
{
    (void)state;
    assert_string_equal(call_direction_name(CALL_DIR_INBOUND), "INBOUND");
    assert_string_equal(call_direction_name(CALL_DIR_OUTBOUND), "OUTBOUND");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outbound_json),   cmocka_unit_test(test_outbound_query),
        cmocka_unit_test(test_inbound),         cmocka_unit_test(test_hangup_unanswered),
        cmocka_unit_test(test_hangup_statuses), cmocka_unit_test(test_duration),
        cmocka_unit_test(test_escaping),        cmocka_unit_test(test_pct_encode),
        cmocka_unit_test(test_jitter_text),     cmocka_unit_test(test_get_url),
        cmocka_unit_test(test_buffer_cap),      cmocka_unit_test(test_headers),
        cmocka_unit_test(test_addr_classify),   cmocka_unit_test(test_addr_raw),
        cmocka_unit_test(test_direction_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
