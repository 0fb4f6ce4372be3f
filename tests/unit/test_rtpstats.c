/* test_rtpstats: the receive statistics of RFC 3550 (appendix A.1, A.3,
 * A.8): loss from the extended highest sequence number across wraps,
 * reordering, duplicates and restarts, and the interarrival jitter checked
 * against the section 6.4.1 formula J += (|D| - J) / 16 in floating point. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>

#include "sip/rtpstats.h"

#define MS 1000000LL /* nanoseconds */
#define SSRC 0x11223344u

/* Packet i of a 20 ms G.711 stream, on time: sequence first + i,
 * timestamp 160 i, arriving at 1 s + 20 ms i. */
static void pkt(struct rtpstats *s, uint16_t first, int i)
{
    rtpstats_packet(s, SSRC, (uint16_t)(first + i), 160u * (uint32_t)i, 1000 * MS + i * 20 * MS,
                    true);
}

static void expect(const struct rtpstats *s, uint64_t received, uint64_t lost)
{
    struct rtpstats_summary sum;

    rtpstats_read(s, &sum);
    assert_int_equal(sum.received, received);
    assert_int_equal(sum.lost, lost);
}

static void test_empty(void **state)
{
    struct rtpstats s;
    struct rtpstats_summary sum;

    (void)state;
    rtpstats_init(&s, 8000);
    rtpstats_read(&s, &sum);
    assert_int_equal(sum.received, 0);
    assert_int_equal(sum.lost, 0);
    assert_int_equal(sum.jitter_us, 0);
    assert_false(sum.has_jitter);
}

static void test_in_order_no_loss(void **state)
{
    struct rtpstats s;
    struct rtpstats_summary sum;
    int i;

    (void)state;
    rtpstats_init(&s, 8000);
    for (i = 0; i < 50; i++)
        pkt(&s, 1000, i);
    expect(&s, 50, 0);
    rtpstats_read(&s, &sum);
    assert_true(sum.has_jitter);
    assert_int_equal(sum.jitter_us, 0); /* perfectly paced */
}

static void test_gap_is_loss(void **state)
{
    struct rtpstats s;
    int i;

    (void)state;
    rtpstats_init(&s, 8000);
    for (i = 0; i < 100; i++) {
        if (i >= 40 && i < 45) /* five skipped sequence numbers */
            continue;
        pkt(&s, 7, i);
    }
    expect(&s, 95, 5);
}

static void test_sequence_wrap(void **state)
{
    struct rtpstats s;
    int i;

    (void)state;
    rtpstats_init(&s, 8000);
    /* 65530 .. 65535, 0 .. 13, with 65534 and 2 lost. */
    for (i = 0; i < 20; i++) {
        if (i == 4 || i == 8)
            continue;
        pkt(&s, 65530, i);
    }
    expect(&s, 18, 2);
    assert_int_equal(s.cycles, 65536);
}

static void test_many_wraps(void **state)
{
    struct rtpstats s;
    int i;

    (void)state;
    rtpstats_init(&s, 8000);
    /* 200000 packets, every 1000th lost: three wraps. */
    for (i = 0; i < 200000; i++) {
        if (i % 1000 == 999)
            continue;
        pkt(&s, 12345, i);
    }
    /* The last packet lost cannot be told from the stream's end. */
    expect(&s, 200000 - 200, 199);
}

static void test_reordering(void **state)
{
    struct rtpstats s;

    (void)state;
    rtpstats_init(&s, 8000);
    pkt(&s, 100, 0);
    pkt(&s, 100, 1);
    pkt(&s, 100, 3); /* 2 late */
    expect(&s, 3, 1);
    pkt(&s, 100, 2); /* it arrives after all */
    pkt(&s, 100, 4);
    expect(&s, 5, 0);
    /* Reordered across the wrap. */
    rtpstats_init(&s, 8000);
    pkt(&s, 65534, 0); /* 65534 */
    pkt(&s, 65534, 2); /* 0 */
    pkt(&s, 65534, 1); /* 65535, late */
    pkt(&s, 65534, 3); /* 1 */
    expect(&s, 4, 0);
}

static void test_duplicates(void **state)
{
    struct rtpstats s;

    (void)state;
    rtpstats_init(&s, 8000);
    pkt(&s, 500, 0);
    pkt(&s, 500, 1);
    pkt(&s, 500, 1); /* duplicated */
    pkt(&s, 500, 2);
    /* Received counts the copy (RFC 3550 6.4.1); lost never goes below 0. */
    expect(&s, 4, 0);
    pkt(&s, 500, 5); /* 3 and 4 lost, one of them hidden by the duplicate */
    expect(&s, 5, 1);
}

static void test_restart_and_stray(void **state)
{
    struct rtpstats s;

    (void)state;
    rtpstats_init(&s, 8000);
    pkt(&s, 100, 0);
    pkt(&s, 100, 1);
    /* A lone packet far ahead is not counted... */
    rtpstats_packet(&s, SSRC, 30000, 320, 1040 * MS, true);
    expect(&s, 2, 0);
    pkt(&s, 100, 2);
    expect(&s, 3, 0);
    /* ...but two in a row are a restarted sequence: both count. */
    rtpstats_packet(&s, SSRC, 40000, 480, 1060 * MS, true);
    rtpstats_packet(&s, SSRC, 40001, 640, 1080 * MS, true);
    expect(&s, 5, 0);
    rtpstats_packet(&s, SSRC, 40003, 960, 1120 * MS, true);
    expect(&s, 6, 1);
}

static void test_new_ssrc_adds_up(void **state)
{
    struct rtpstats s;
    int i;

    (void)state;
    rtpstats_init(&s, 8000);
    for (i = 0; i < 10; i++)
        if (i != 5)
            pkt(&s, 100, i);
    /* The party switches source: a new sequence anywhere. */
    for (i = 0; i < 10; i++)
        if (i != 2 && i != 3)
            rtpstats_packet(&s, SSRC + 1, (uint16_t)(9000 + i), 5000u + 160u * (uint32_t)i,
                            2000 * MS + i * 20 * MS, true);
    expect(&s, 9 + 8, 1 + 2);
}

/* The formula of RFC 3550 section 6.4.1 in floating point, in timestamp
 * units: J += (|D(i-1,i)| - J) / 16. */
static double jitter_ref(const int64_t *arrival_ns, const uint32_t *ts, int n)
{
    double j = 0;
    int i;

    for (i = 1; i < n; i++) {
        double r0 = (double)arrival_ns[i - 1] * 8000 / 1e9, r1 = (double)arrival_ns[i] * 8000 / 1e9;
        double d = (r1 - r0) - ((double)ts[i] - (double)ts[i - 1]);

        j += (fabs(d) - j) / 16;
    }
    return j;
}

static void test_jitter_worked_example(void **state)
{
    struct rtpstats s;
    struct rtpstats_summary sum;

    (void)state;
    rtpstats_init(&s, 8000);
    /* On time, then 10 ms (80 units) late, then on time again:
     * D = 80: J = 0 + (80 - 0) / 16 = 5 units;
     * D = -80: J = 5 + (80 - 5) / 16 = 9.6875 units = 1210.9375 us. */
    rtpstats_packet(&s, SSRC, 1, 0, 1000 * MS, true);
    rtpstats_packet(&s, SSRC, 2, 160, 1030 * MS, true);
    rtpstats_read(&s, &sum);
    assert_int_equal(sum.jitter_us, 625); /* 5 units */
    rtpstats_packet(&s, SSRC, 3, 320, 1040 * MS, true);
    rtpstats_read(&s, &sum);
    assert_int_equal(sum.jitter_us, 1210);
    assert_true(sum.has_jitter);
}

static void test_jitter_matches_formula(void **state)
{
    enum { N = 400 };
    int64_t arr[N];
    uint32_t ts[N];
    uint32_t x = 12345;
    struct rtpstats s;
    struct rtpstats_summary sum;
    double ref_us;
    int i;

    (void)state;
    rtpstats_init(&s, 8000);
    /* A timestamp base near the wrap and arrivals 20 ms apart, each
     * delayed by 0..15 ms at (deterministic) random. */
    for (i = 0; i < N; i++) {
        x = x * 1103515245u + 12345u;
        ts[i] = 0xFFFFF000u + 160u * (uint32_t)i;
        arr[i] = 5000 * MS + i * 20 * MS + (int64_t)((x >> 16) % 16) * MS;
        rtpstats_packet(&s, SSRC, (uint16_t)(60000 + i), ts[i], arr[i], true);
    }
    rtpstats_read(&s, &sum);
    ref_us = jitter_ref(arr, ts, N) * 1e6 / 8000;
    /* The integer form (A.8) rounds at each step: within a unit (125 us). */
    assert_true(fabs((double)sum.jitter_us - ref_us) < 125.0);
    assert_true(sum.jitter_us > 1000); /* milliseconds of jitter, not zero */
}

static void test_untimed_packets_skip_jitter(void **state)
{
    struct rtpstats s;
    struct rtpstats_summary sum;

    (void)state;
    rtpstats_init(&s, 8000);
    pkt(&s, 10, 0);
    pkt(&s, 10, 1);
    /* Telephone events keep their start's timestamp: counted, not timed. */
    rtpstats_packet(&s, SSRC, 12, 160, 1040 * MS, false);
    rtpstats_packet(&s, SSRC, 13, 160, 1060 * MS, false);
    pkt(&s, 10, 4);
    rtpstats_read(&s, &sum);
    assert_int_equal(sum.received, 5);
    assert_int_equal(sum.lost, 0);
    assert_int_equal(sum.jitter_us, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_in_order_no_loss),
        cmocka_unit_test(test_gap_is_loss),
        cmocka_unit_test(test_sequence_wrap),
        cmocka_unit_test(test_many_wraps),
        cmocka_unit_test(test_reordering),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_restart_and_stray),
        cmocka_unit_test(test_new_ssrc_adds_up),
        cmocka_unit_test(test_jitter_worked_example),
        cmocka_unit_test(test_jitter_matches_formula),
        cmocka_unit_test(test_untimed_packets_skip_jitter),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
