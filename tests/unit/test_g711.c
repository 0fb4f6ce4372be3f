/* test_g711: A-law and mu-law against the ITU-T G.711 reference values,
 * every code's round trip, and every 16-bit sample against an independent
 * model of the decision intervals. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "media/g711.h"

/* The reconstruction level of a magnitude v in a law whose intervals have
 * a step of 2 below 64 and, above, 1/16 of the power of two under v: the
 * interval's start plus half its step. Written without the code's segment
 * search so the two can disagree. */
static unsigned model_level(unsigned v)
{
    unsigned step = 2;
    unsigned p;

    if (v >= 64) {
        for (p = 64; p * 2 <= v; p *= 2)
            ;
        step = p / 16;
    }
    return (v & ~(step - 1)) + step / 2;
}

/* G.711 A-law: 12-bit magnitude (one's complement for negatives), level
 * times 8 on the 16-bit scale. */
static int model_alaw(int x)
{
    unsigned m = x >= 0 ? (unsigned)x >> 3 : (unsigned)(-1 - x) >> 3;
    int level = (int)model_level(m) * 8;

    return x >= 0 ? level : -level;
}

/* G.711 mu-law: 13-bit magnitude plus the bias of 33, clipped to 0x1FFF,
 * level minus the bias times 4. */
static int model_ulaw(int x)
{
    unsigned m = (x >= 0 ? (unsigned)x >> 2 : (unsigned)(-1 - x) >> 2) + 33;
    int level;

    if (m > 0x1FFF)
        m = 0x1FFF;
    level = ((int)model_level(m) - 33) * 4;
    return x >= 0 ? level : -level;
}

static void alaw_reference_values(void **state)
{
    (void)state;
    assert_int_equal(g711_alaw_decode(0xD5), 8);
    assert_int_equal(g711_alaw_decode(0x55), -8);
    assert_int_equal(g711_alaw_decode(0xAA), 32256);  /* largest positive */
    assert_int_equal(g711_alaw_decode(0x2A), -32256); /* largest negative */
    assert_int_equal(g711_alaw_decode(0xD4), 24);
    assert_int_equal(g711_alaw_decode(0xC5), 264); /* first level of segment 1 */
    assert_int_equal(g711_alaw_encode(0), 0xD5);
    assert_int_equal(g711_alaw_encode(8), 0xD5);
    assert_int_equal(g711_alaw_encode(15), 0xD5);
    assert_int_equal(g711_alaw_encode(16), 0xD4);
    assert_int_equal(g711_alaw_encode(-1), 0x55);
    assert_int_equal(g711_alaw_encode(-16), 0x55);
    assert_int_equal(g711_alaw_encode(-17), 0x54);
    assert_int_equal(g711_alaw_encode(32767), 0xAA);
    assert_int_equal(g711_alaw_encode(-32768), 0x2A);
    assert_int_equal(G711_ALAW_SILENCE, 0xD5);
}

static void ulaw_reference_values(void **state)
{
    (void)state;
    assert_int_equal(g711_ulaw_decode(0xFF), 0);
    assert_int_equal(g711_ulaw_decode(0x7F), 0);
    assert_int_equal(g711_ulaw_decode(0x80), 32124);
    assert_int_equal(g711_ulaw_decode(0x00), -32124);
    assert_int_equal(g711_ulaw_decode(0xFE), 8);
    assert_int_equal(g711_ulaw_decode(0x7E), -8);
    assert_int_equal(g711_ulaw_decode(0xEF), 132); /* first level of segment 1 */
    assert_int_equal(g711_ulaw_encode(0), 0xFF);
    assert_int_equal(g711_ulaw_encode(3), 0xFF);
    assert_int_equal(g711_ulaw_encode(4), 0xFE);
    assert_int_equal(g711_ulaw_encode(-1), 0x7F);
    assert_int_equal(g711_ulaw_encode(-4), 0x7F);
    assert_int_equal(g711_ulaw_encode(-5), 0x7E);
    assert_int_equal(g711_ulaw_encode(32767), 0x80);
    assert_int_equal(g711_ulaw_encode(-32768), 0x00);
    assert_int_equal(G711_ULAW_SILENCE, 0xFF);
}

static void every_code_round_trips(void **state)
{
    unsigned c;

    (void)state;
    for (c = 0; c < 256; c++) {
        int16_t a = g711_alaw_decode((uint8_t)c);
        int16_t u = g711_ulaw_decode((uint8_t)c);

        assert_int_equal(g711_alaw_encode(a), c);
        /* Sign bit set means positive for both laws. */
        if (c & 0x80) {
            assert_true(a > 0);
            assert_true(u >= 0);
        } else {
            assert_true(a < 0);
            assert_true(u <= 0);
        }
        assert_int_equal(a, -g711_alaw_decode((uint8_t)(c ^ 0x80)));
        assert_int_equal(u, -g711_ulaw_decode((uint8_t)(c ^ 0x80)));
        if (c == 0x7F)
            assert_int_equal(g711_ulaw_encode(u), 0xFF); /* the duplicate zero */
        else
            assert_int_equal(g711_ulaw_encode(u), c);
    }
}

static void every_sample_quantises(void **state)
{
    int x;
    int prev_a = -32768, prev_u = -32768;
    unsigned seen_a[256] = {0}, seen_u[256] = {0};
    unsigned na = 0, nu = 0, c;

    (void)state;
    for (x = -32768; x <= 32767; x++) {
        uint8_t ca = g711_alaw_encode((int16_t)x);
        uint8_t cu = g711_ulaw_encode((int16_t)x);
        int a = g711_alaw_decode(ca);
        int u = g711_ulaw_decode(cu);

        assert_int_equal(a, model_alaw(x));
        assert_int_equal(u, model_ulaw(x));
        /* Monotone, idempotent, symmetric about -0.5. */
        assert_true(a >= prev_a);
        assert_true(u >= prev_u);
        prev_a = a;
        prev_u = u;
        assert_int_equal(g711_alaw_encode((int16_t)a), ca);
        assert_int_equal(g711_alaw_encode((int16_t)(-1 - x)), ca ^ 0x80);
        assert_int_equal(g711_ulaw_encode((int16_t)(-1 - x)), cu ^ 0x80);
        /* Error within half the largest step, the clipped top excepted. */
        assert_true(a - x <= 512 && x - a <= 512);
        if (x >= -32124 - 512 && x <= 32124 + 512)
            assert_true(u - x <= 512 && x - u <= 512);
        seen_a[ca]++;
        seen_u[cu]++;
    }
    for (c = 0; c < 256; c++) {
        na += seen_a[c] != 0;
        nu += seen_u[c] != 0;
    }
    assert_int_equal(na, 256); /* every A-law code is reachable */
    assert_int_equal(nu, 256); /* mu-law too: 0x7F is -4..-1 */
    assert_int_equal(seen_u[0xFF], 4);
    assert_int_equal(seen_u[0x7F], 4);
    assert_int_equal(seen_a[0xD5], 16);
}

static void buffers_match_single_calls(void **state)
{
    const uint8_t codes[] = {0x00, 0x55, 0x7F, 0x80, 0xD5, 0xFF, 0x2A, 0xAA};
    const int16_t samples[] = {-32768, -1, 0, 1, 1000, -1000, 32767, 8};
    int16_t lin[8];
    uint8_t enc[8];
    size_t i;

    (void)state;
    g711_alaw_decode_buf(codes, 8, lin);
    for (i = 0; i < 8; i++)
        assert_int_equal(lin[i], g711_alaw_decode(codes[i]));
    g711_ulaw_decode_buf(codes, 8, lin);
    for (i = 0; i < 8; i++)
        assert_int_equal(lin[i], g711_ulaw_decode(codes[i]));
    g711_alaw_encode_buf(samples, 8, enc);
    for (i = 0; i < 8; i++)
        assert_int_equal(enc[i], g711_alaw_encode(samples[i]));
    g711_ulaw_encode_buf(samples, 8, enc);
    for (i = 0; i < 8; i++)
        assert_int_equal(enc[i], g711_ulaw_encode(samples[i]));
    g711_alaw_decode_buf(NULL, 0, NULL);
    g711_ulaw_encode_buf(NULL, 0, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(alaw_reference_values),      cmocka_unit_test(ulaw_reference_values),
        cmocka_unit_test(every_code_round_trips),     cmocka_unit_test(every_sample_quantises),
        cmocka_unit_test(buffers_match_single_calls),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
