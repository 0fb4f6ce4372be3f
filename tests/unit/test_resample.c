/* test_resample: the exact sample counts of the streaming contract for
 * every rate of CALLS.md 6, chunking that changes nothing, a sine through
 * 8k -> 16k -> 8k, the passthrough, and the caps. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "media/resample.h"

static const int rates[] = {8000, 16000, 24000, 32000, 44100, 48000};
#define NRATES (sizeof(rates) / sizeof(rates[0]))

/* n samples of a sine of freq Hz at rate Hz, amplitude amp, from sample 0. */
static int16_t *sine(size_t n, double freq, int rate, double amp)
{
    int16_t *s = malloc(n * sizeof(*s));
    size_t i;

    assert_non_null(s);
    for (i = 0; i < n; i++)
        s[i] = (int16_t)lrint(amp * sin(2 * M_PI * freq * (double)i / rate));
    return s;
}

static void rejects_bad_rates(void **state)
{
    struct resample *r = (struct resample *)0x1;

    (void)state;
    assert_int_equal(resample_new(0, 8000, &r), ERR_INVALID);
    assert_int_equal(resample_new(8000, -1, &r), ERR_INVALID);
    assert_int_equal(resample_new(7999, 8000, &r), ERR_INVALID);
    assert_int_equal(resample_new(8000, 48001, &r), ERR_INVALID);
    assert_ptr_equal(r, (struct resample *)0x1); /* untouched on error */
    resample_free(NULL);
}

/* 8000 -> rate: every 20 ms frame, the first included, gives exactly
 * rate / 50 samples, so 1 s in 50 frames gives exactly rate. */
static void up_frames_exact_every_rate(void **state)
{
    size_t k;

    (void)state;
    for (k = 0; k < NRATES; k++) {
        struct resample *r = NULL;
        int16_t *in = sine(8000, 440, 8000, 8000);
        int16_t out[960 + 1];
        size_t total = 0, got, f;

        assert_int_equal(resample_new(8000, rates[k], &r), ERR_OK);
        for (f = 0; f < 50; f++) {
            assert_int_equal(resample_out_len(r, 160), (size_t)rates[k] / 50);
            assert_int_equal(resample_process(r, in + f * 160, 160, out, 961, &got), ERR_OK);
            assert_int_equal(got, (size_t)rates[k] / 50);
            total += got;
        }
        assert_int_equal(total, (size_t)rates[k]);
        resample_free(r);
        free(in);
    }
}

/* rate -> 8000 in awkward chunk sizes: the running total is always
 * ceil(in * 8000 / rate), and 1 s gives exactly 8000. */
static void down_chunks_exact_every_rate(void **state)
{
    static const size_t chunks[] = {1, 7, 882, 13, 960, 2, 441, 1000};
    size_t k;

    (void)state;
    for (k = 0; k < NRATES; k++) {
        size_t n = (size_t)rates[k];
        struct resample *r = NULL;
        int16_t *in = sine(n, 300, rates[k], 12000);
        int16_t out[1000];
        size_t pos = 0, total = 0, c = 0, got;

        assert_int_equal(resample_new(rates[k], 8000, &r), ERR_OK);
        while (pos < n) {
            size_t len = chunks[c++ % (sizeof(chunks) / sizeof(chunks[0]))];
            size_t want;

            if (len > n - pos)
                len = n - pos;
            want = resample_out_len(r, len);
            assert_int_equal(resample_process(r, in + pos, len, out, sizeof(out) / 2, &got),
                             ERR_OK);
            assert_int_equal(got, want);
            pos += len;
            total += got;
            assert_int_equal(total, (pos * 8000 + n - 1) / n);
        }
        assert_int_equal(total, 8000);
        resample_free(r);
        free(in);
    }
}

/* Streaming keeps the filter's history: the same audio in 20 ms frames or
 * in odd chunks gives the same samples as in one call (no seams). */
static void chunking_changes_nothing(void **state)
{
    const int pairs[][2] = {{8000, 44100}, {8000, 16000}, {48000, 8000}, {44100, 8000}};
    size_t p;

    (void)state;
    for (p = 0; p < sizeof(pairs) / sizeof(pairs[0]); p++) {
        size_t n = (size_t)pairs[p][0] / 5; /* 200 ms */
        size_t cap = (size_t)pairs[p][1] / 5 + 1;
        int16_t *in = sine(n, 1000, pairs[p][0], 20000);
        int16_t *whole = malloc(cap * sizeof(int16_t));
        int16_t *parts = malloc(cap * sizeof(int16_t));
        struct resample *a = NULL, *b = NULL;
        size_t got, pos = 0, total = 0, step = 1;

        assert_non_null(whole);
        assert_non_null(parts);
        assert_int_equal(resample_new(pairs[p][0], pairs[p][1], &a), ERR_OK);
        assert_int_equal(resample_new(pairs[p][0], pairs[p][1], &b), ERR_OK);
        assert_int_equal(resample_process(a, in, n, whole, cap, &got), ERR_OK);
        while (pos < n) {
            size_t len = step < n - pos ? step : n - pos;
            size_t g;

            assert_int_equal(resample_process(b, in + pos, len, parts + total, cap - total, &g),
                             ERR_OK);
            pos += len;
            total += g;
            step = step * 3 % 173 + 1;
        }
        assert_int_equal(total, got);
        assert_memory_equal(whole, parts, got * sizeof(int16_t));
        resample_free(a);
        resample_free(b);
        free(in);
        free(whole);
        free(parts);
    }
}

/* A sine through 8k -> rate -> 8k in 20 ms frames: after the two filters'
 * delay it matches the input shifted by exactly that delay with an SNR
 * above 40 dB (G.711's own is about 38 dB), from 300 Hz to 3 kHz. */
static void sine_round_trip(int rate, double freq)
{
    const size_t n = 8000;
    const double amp = 10000;
    const size_t frame = (size_t)rate / 50;
    int16_t *in = sine(n, freq, 8000, amp);
    int16_t mid[960], back[160];
    int16_t *out = malloc(n * sizeof(int16_t));
    struct resample *up = NULL, *down = NULL;
    double delay, sig = 0, err = 0, maxerr = 0, snr;
    size_t f, got, total = 0, i;

    assert_non_null(out);
    assert_int_equal(resample_new(8000, rate, &up), ERR_OK);
    assert_int_equal(resample_new(rate, 8000, &down), ERR_OK);
    for (f = 0; f < n / 160; f++) {
        size_t g;

        assert_int_equal(resample_process(up, in + f * 160, 160, mid, 960, &got), ERR_OK);
        assert_int_equal(got, frame);
        assert_int_equal(resample_process(down, mid, frame, back, 160, &g), ERR_OK);
        assert_int_equal(g, 160);
        memcpy(out + total, back, g * sizeof(int16_t));
        total += g;
    }
    assert_int_equal(total, n);
    /* Delays in 8 kHz samples: the up filter's (in samples at rate) scaled,
     * plus the down filter's. About 3 ms each. */
    delay = (double)resample_delay(up) * 8000 / rate + (double)resample_delay(down);
    assert_true(delay > 40 && delay < 56);
    for (i = 200; i < n; i++) {
        double want = amp * sin(2 * M_PI * freq * ((double)i - delay) / 8000);
        double d = out[i] - want;

        sig += want * want;
        err += d * d;
        if (fabs(d) > maxerr)
            maxerr = fabs(d);
    }
    snr = 10 * log10(sig / err);
    print_message("8k->%d->8k %4.0f Hz: delay %.2f samples, SNR %.1f dB, max error %.1f\n", rate,
                  freq, delay, snr, maxerr);
    assert_true(snr > 40);
    assert_true(maxerr < amp / 100);
    resample_free(up);
    resample_free(down);
    free(in);
    free(out);
}

static void sine_survives_up_and_down(void **state)
{
    (void)state;
    sine_round_trip(16000, 1000);
    sine_round_trip(16000, 3000);
    sine_round_trip(24000, 300);
    sine_round_trip(32000, 2000);
    sine_round_trip(44100, 1000);
    sine_round_trip(44100, 3000);
    sine_round_trip(48000, 440);
}

static void same_rate_is_exact_copy(void **state)
{
    struct resample *r = NULL;
    int16_t in[321], out[321];
    size_t i, got;

    (void)state;
    for (i = 0; i < 321; i++)
        in[i] = (int16_t)(i * 977 - 30000);
    assert_int_equal(resample_new(44100, 44100, &r), ERR_OK);
    assert_int_equal(resample_delay(r), 0);
    assert_int_equal(resample_out_len(r, 321), 321);
    assert_int_equal(resample_process(r, in, 321, out, 321, &got), ERR_OK);
    assert_int_equal(got, 321);
    assert_memory_equal(in, out, sizeof(in));
    assert_int_equal(resample_process(r, NULL, 0, NULL, 0, &got), ERR_OK);
    assert_int_equal(got, 0);
    resample_free(r);
}

/* Too small an output is refused before anything changes: the next call
 * with room gives what a fresh converter gives. */
static void caps_refuse_without_side_effects(void **state)
{
    struct resample *a = NULL, *b = NULL;
    int16_t *in = sine(160, 700, 8000, 9000);
    int16_t out1[882], out2[882];
    size_t got = 99;

    (void)state;
    assert_int_equal(resample_new(8000, 44100, &a), ERR_OK);
    assert_int_equal(resample_new(8000, 44100, &b), ERR_OK);
    memset(out1, 0x5A, sizeof(out1));
    assert_int_equal(resample_process(a, in, 160, out1, 881, &got), ERR_TOO_LARGE);
    assert_int_equal(got, 0);
    for (size_t i = 0; i < 882; i++)
        assert_int_equal((uint16_t)out1[i], 0x5A5A);
    assert_int_equal(resample_out_len(a, RESAMPLE_IN_MAX + 1), SIZE_MAX);
    assert_int_equal(resample_process(a, in, RESAMPLE_IN_MAX + 1, out1, 882, &got), ERR_TOO_LARGE);
    assert_int_equal(resample_process(a, in, 160, out1, 882, &got), ERR_OK);
    assert_int_equal(got, 882);
    assert_int_equal(resample_process(b, in, 160, out2, 882, &got), ERR_OK);
    assert_memory_equal(out1, out2, sizeof(out1));
    resample_free(a);
    resample_free(b);
    free(in);
}

/* After resample_reset the converter is as new: same count, same samples. */
static void reset_forgets_history(void **state)
{
    struct resample *a = NULL, *b = NULL;
    int16_t *in = sine(441, 500, 44100, 15000);
    int16_t out1[81], out2[81];
    size_t g1, g2;

    (void)state;
    assert_int_equal(resample_new(44100, 8000, &a), ERR_OK);
    assert_int_equal(resample_new(44100, 8000, &b), ERR_OK);
    assert_int_equal(resample_process(a, in, 37, out1, 81, &g1), ERR_OK);
    resample_reset(a);
    assert_int_equal(resample_process(a, in, 441, out1, 81, &g1), ERR_OK);
    assert_int_equal(resample_process(b, in, 441, out2, 81, &g2), ERR_OK);
    assert_int_equal(g1, 80);
    assert_int_equal(g2, 80);
    assert_memory_equal(out1, out2, 80 * sizeof(int16_t));
    resample_free(a);
    resample_free(b);
    free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rejects_bad_rates),
        cmocka_unit_test(up_frames_exact_every_rate),
        cmocka_unit_test(down_chunks_exact_every_rate),
        cmocka_unit_test(chunking_changes_nothing),
        cmocka_unit_test(sine_survives_up_and_down),
        cmocka_unit_test(same_rate_is_exact_copy),
        cmocka_unit_test(caps_refuse_without_side_effects),
        cmocka_unit_test(reset_forgets_history),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
