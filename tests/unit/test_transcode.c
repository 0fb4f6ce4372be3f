/* test_transcode: party G.711 <-> stream format for every codec and rate of
 * CALLS.md 6: payload sizes, exact counts in both directions whatever the
 * chunking, byte-exact passthrough, A-law <-> mu-law through the G.711
 * tables, L16 byte order, the held odd byte, and the caps. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "media/g711.h"
#include "media/transcode.h"

static const int rates[] = {8000, 16000, 24000, 32000, 44100, 48000};
#define NRATES (sizeof(rates) / sizeof(rates[0]))

/* n bytes of little-endian L16: a sine of freq Hz at rate Hz. */
static uint8_t *l16_sine(size_t nsamples, double freq, int rate, double amp)
{
    uint8_t *b = malloc(nsamples * 2);
    size_t i;

    assert_non_null(b);
    for (i = 0; i < nsamples; i++) {
        uint16_t u = (uint16_t)(int16_t)lrint(amp * sin(2 * M_PI * freq * (double)i / rate));

        b[2 * i] = (uint8_t)(u & 0xFF);
        b[2 * i + 1] = (uint8_t)(u >> 8);
    }
    return b;
}

static void init_checks_codec_and_rate(void **state)
{
    struct transcode t;
    size_t k;

    (void)state;
    assert_int_equal(transcode_init(&t, PARTY_CODEC_PCMA, STREAM_CODEC_PCMA, 16000), ERR_INVALID);
    assert_int_equal(transcode_init(&t, PARTY_CODEC_PCMU, STREAM_CODEC_PCMU, 44100), ERR_INVALID);
    assert_int_equal(transcode_init(&t, PARTY_CODEC_PCMA, STREAM_CODEC_L16, 11025), ERR_INVALID);
    assert_int_equal(transcode_init(&t, PARTY_CODEC_PCMA, STREAM_CODEC_L16, 0), ERR_INVALID);
    assert_int_equal(transcode_init(&t, (enum party_codec)7, STREAM_CODEC_PCMA, 8000), ERR_INVALID);
    assert_int_equal(transcode_init(&t, PARTY_CODEC_PCMA, (enum stream_codec)9, 8000), ERR_INVALID);
    assert_int_equal(transcode_init(&t, PARTY_CODEC_PCMU, STREAM_CODEC_PCMA, 8000), ERR_OK);
    assert_int_equal(transcode_stream_frame_bytes(&t), 160);
    transcode_release(&t);
    for (k = 0; k < NRATES; k++) {
        assert_int_equal(transcode_init(&t, PARTY_CODEC_PCMA, STREAM_CODEC_L16, rates[k]), ERR_OK);
        assert_int_equal(transcode_stream_frame_bytes(&t), (size_t)rates[k] / 50 * 2);
        transcode_release(&t);
        transcode_release(&t); /* twice is harmless */
    }
    assert_int_equal(TRANSCODE_STREAM_FRAME_MAX, 1920);
}

/* 1 s of party audio in 50 frames: every payload is exactly 20 ms at the
 * stream's rate, so the total is exactly rate samples. */
static void to_stream_sizes_every_rate(void **state)
{
    uint8_t frame[TRANSCODE_PARTY_FRAME];
    uint8_t out[TRANSCODE_STREAM_FRAME_MAX];
    size_t k, f, i;

    (void)state;
    for (k = 0; k < NRATES; k++) {
        struct transcode t;
        size_t total = 0, got;

        assert_int_equal(transcode_init(&t, PARTY_CODEC_PCMU, STREAM_CODEC_L16, rates[k]), ERR_OK);
        for (f = 0; f < 50; f++) {
            for (i = 0; i < sizeof(frame); i++)
                frame[i] = g711_ulaw_encode(
                    (int16_t)lrint(9000 * sin(2 * M_PI * 440 * (double)(f * 160 + i) / 8000)));
            assert_int_equal(transcode_to_stream(&t, frame, sizeof(frame), out, sizeof(out), &got),
                             ERR_OK);
            assert_int_equal(got, (size_t)rates[k] / 50 * 2);
            total += got;
        }
        assert_int_equal(total, (size_t)rates[k] * 2);
        transcode_release(&t);
    }
}

/* 1 s of L16 at each rate, cut into 1-byte, 7-byte, 882 * 2-byte and other
 * chunks (odd ones split samples): exactly 8000 party bytes, each call
 * writing what transcode_from_stream_len announced, and the same bytes as
 * the whole second sent at once. */
static void from_stream_sizes_every_rate(void **state)
{
    static const size_t chunks[] = {1, 7, 882 * 2, 3, 960 * 2 + 1, 2, 5000, 1};
    size_t k;

    (void)state;
    for (k = 0; k < NRATES; k++) {
        size_t nb = (size_t)rates[k] * 2;
        uint8_t *in = l16_sine((size_t)rates[k], 350, rates[k], 11000);
        uint8_t whole[8000], parts[8000];
        struct transcode a, b;
        size_t pos = 0, total = 0, c = 0, got;

        assert_int_equal(transcode_init(&a, PARTY_CODEC_PCMA, STREAM_CODEC_L16, rates[k]), ERR_OK);
        assert_int_equal(transcode_init(&b, PARTY_CODEC_PCMA, STREAM_CODEC_L16, rates[k]), ERR_OK);
        assert_int_equal(transcode_from_stream_len(&a, nb), 8000);
        assert_int_equal(transcode_from_stream(&a, in, nb, whole, sizeof(whole), &got), ERR_OK);
        assert_int_equal(got, 8000);
        while (pos < nb) {
            size_t len = chunks[c++ % (sizeof(chunks) / sizeof(chunks[0]))];
            size_t want;

            if (len > nb - pos)
                len = nb - pos;
            want = transcode_from_stream_len(&b, len);
            assert_int_equal(transcode_from_stream(&b, in + pos, len, parts + total,
                                                   sizeof(parts) - total, &got),
                             ERR_OK);
            assert_int_equal(got, want);
            pos += len;
            total += got;
        }
        assert_int_equal(total, 8000);
        assert_memory_equal(whole, parts, 8000);
        transcode_release(&a);
        transcode_release(&b);
        free(in);
    }
}

/* Party and stream in the same law: both directions copy every byte. */
static void same_law_is_byte_exact(void **state)
{
    const enum party_codec pcs[] = {PARTY_CODEC_PCMA, PARTY_CODEC_PCMU};
    const enum stream_codec scs[] = {STREAM_CODEC_PCMA, STREAM_CODEC_PCMU};
    uint8_t all[256], out[256];
    size_t k, f, got;

    (void)state;
    for (k = 0; k < 256; k++)
        all[k] = (uint8_t)k;
    for (k = 0; k < 2; k++) {
        struct transcode t;

        assert_int_equal(transcode_init(&t, pcs[k], scs[k], 8000), ERR_OK);
        for (f = 0; f + 160 <= 256; f += 96) {
            assert_int_equal(transcode_to_stream(&t, all + f, 160, out, sizeof(out), &got), ERR_OK);
            assert_int_equal(got, 160);
            assert_memory_equal(out, all + f, 160);
        }
        assert_int_equal(transcode_from_stream(&t, all, 256, out, sizeof(out), &got), ERR_OK);
        assert_int_equal(got, 256);
        assert_memory_equal(out, all, 256);
        transcode_release(&t);
    }
}

/* A-law party, mu-law stream: each code goes through its linear value
 * (decode, then encode in the other law) and back; the round trip lands on
 * the A-law code of the mu-law level, within one A-law step of the start,
 * and is the identity wherever mu-law is at least as fine as A-law. */
static void alaw_ulaw_round_trip(void **state)
{
    struct transcode t, r;
    uint8_t codes[160], mu[160], back[160];
    size_t got, i;
    unsigned c, exact = 0;

    (void)state;
    assert_int_equal(transcode_init(&t, PARTY_CODEC_PCMA, STREAM_CODEC_PCMU, 8000), ERR_OK);
    assert_int_equal(transcode_init(&r, PARTY_CODEC_PCMU, STREAM_CODEC_PCMA, 8000), ERR_OK);
    for (c = 0; c < 256; c += 128) {
        for (i = 0; i < 128; i++)
            codes[i] = (uint8_t)(c + i);
        for (; i < 160; i++)
            codes[i] = G711_ALAW_SILENCE;
        assert_int_equal(transcode_to_stream(&t, codes, 160, mu, sizeof(mu), &got), ERR_OK);
        assert_int_equal(got, 160);
        assert_int_equal(transcode_from_stream(&t, mu, 160, back, sizeof(back), &got), ERR_OK);
        assert_int_equal(got, 160);
        for (i = 0; i < 160; i++) {
            int a = g711_alaw_decode(codes[i]);
            int a2 = g711_alaw_decode(back[i]);

            assert_int_equal(mu[i], g711_ulaw_encode((int16_t)a));
            assert_int_equal(back[i], g711_alaw_encode(g711_ulaw_decode(mu[i])));
            assert_true(abs(a2 - a) <= 1024);
            exact += i < 128 && back[i] == codes[i];
        }
        /* The other direction of the pair agrees: mu-law party, A-law stream. */
        assert_int_equal(transcode_from_stream(&r, codes, 160, back, sizeof(back), &got), ERR_OK);
        for (i = 0; i < 160; i++)
            assert_int_equal(back[i], g711_ulaw_encode(g711_alaw_decode(codes[i])));
    }
    /* Most codes survive; the exceptions are where mu-law is coarser. */
    assert_true(exact > 128);
    assert_true(exact < 256);
    transcode_release(&t);
    transcode_release(&r);
}

/* L16 is little-endian both ways, checked on bytes, not through a
 * helper that could share a mistake. */
static void l16_is_little_endian(void **state)
{
    struct transcode t;
    uint8_t frame[160], out[320], party[4];
    const uint8_t neg_full[2] = {0x00, 0x80}; /* -32768 */
    const uint8_t two_samples[4] = {0x7C, 0x7D, 0x00, 0x80};
    size_t got;

    (void)state;
    /* At 8000 Hz the resampler is a passthrough, so values are exact. */
    assert_int_equal(transcode_init(&t, PARTY_CODEC_PCMU, STREAM_CODEC_L16, 8000), ERR_OK);
    memset(frame, G711_ULAW_SILENCE, sizeof(frame));
    frame[0] = 0x80; /* +32124 = 0x7D7C */
    frame[1] = 0x00; /* -32124 = 0x8284 */
    frame[2] = 0xFE; /* +8 */
    assert_int_equal(transcode_to_stream(&t, frame, 160, out, sizeof(out), &got), ERR_OK);
    assert_int_equal(got, 320);
    assert_int_equal(out[0], 0x7C);
    assert_int_equal(out[1], 0x7D);
    assert_int_equal(out[2], 0x84);
    assert_int_equal(out[3], 0x82);
    assert_int_equal(out[4], 0x08);
    assert_int_equal(out[5], 0x00);
    assert_int_equal(out[6], 0x00);
    assert_int_equal(out[7], 0x00);
    assert_int_equal(transcode_from_stream(&t, two_samples, 4, party, sizeof(party), &got), ERR_OK);
    assert_int_equal(got, 2);
    assert_int_equal(party[0], 0x80);
    assert_int_equal(party[1], 0x00);
    /* Swapped, 0x0080 is +128: a quiet positive, not full scale negative. */
    assert_int_equal(transcode_from_stream(&t, neg_full, 2, party, sizeof(party), &got), ERR_OK);
    assert_int_equal(party[0], g711_ulaw_encode(-32768));
    assert_int_not_equal(party[0], g711_ulaw_encode(128));
    transcode_release(&t);
}

/* An odd trailing byte is held and joined to the next call's first byte;
 * transcode_from_stream_reset (clearAudio) drops it. */
static void odd_byte_is_held(void **state)
{
    struct transcode t;
    const uint8_t lo = 0x34, hi = 0xF2; /* 0xF234 = -3532 */
    uint8_t party[4];
    size_t got = 99;

    (void)state;
    assert_int_equal(transcode_init(&t, PARTY_CODEC_PCMA, STREAM_CODEC_L16, 8000), ERR_OK);
    assert_int_equal(transcode_from_stream_len(&t, 1), 0);
    assert_int_equal(transcode_from_stream(&t, &lo, 1, party, 0, &got), ERR_OK);
    assert_int_equal(got, 0);
    assert_int_equal(transcode_from_stream_len(&t, 1), 1);
    assert_int_equal(transcode_from_stream(&t, &hi, 1, party, sizeof(party), &got), ERR_OK);
    assert_int_equal(got, 1);
    assert_int_equal(party[0], g711_alaw_encode(-3532));

    /* Held, then dropped by the reset: the next two bytes are one sample. */
    assert_int_equal(transcode_from_stream(&t, &hi, 1, party, sizeof(party), &got), ERR_OK);
    assert_int_equal(got, 0);
    transcode_from_stream_reset(&t);
    {
        const uint8_t s[2] = {lo, hi};

        assert_int_equal(transcode_from_stream(&t, s, 2, party, sizeof(party), &got), ERR_OK);
        assert_int_equal(got, 1);
        assert_int_equal(party[0], g711_alaw_encode(-3532));
    }
    transcode_release(&t);
}

/* Output too small is refused before anything is written or consumed. */
static void caps_refuse_without_side_effects(void **state)
{
    struct transcode t, fresh;
    uint8_t frame[160], out[1920], ref[1920], big[4] = {0};
    uint8_t *in = l16_sine(441, 1000, 44100, 9000);
    size_t got = 99, i;

    (void)state;
    memset(frame, 0xD5, sizeof(frame));
    assert_int_equal(transcode_init(&t, PARTY_CODEC_PCMA, STREAM_CODEC_L16, 44100), ERR_OK);
    assert_int_equal(transcode_init(&fresh, PARTY_CODEC_PCMA, STREAM_CODEC_L16, 44100), ERR_OK);
    memset(out, 0xEE, sizeof(out));
    assert_int_equal(transcode_to_stream(&t, frame, 160, out, 1763, &got), ERR_TOO_LARGE);
    assert_int_equal(got, 0);
    assert_int_equal(transcode_to_stream(&t, frame, 159, out, sizeof(out), &got), ERR_INVALID);
    assert_int_equal(transcode_to_stream(&t, frame, 161, out, sizeof(out), &got), ERR_INVALID);
    for (i = 0; i < sizeof(out); i++)
        assert_int_equal(out[i], 0xEE);

    /* 441 samples at 44100 Hz is 80 party bytes; 79 do not fit. One byte
     * of input first, so a failed call would show by losing it. */
    assert_int_equal(transcode_from_stream(&t, in, 1, out, 0, &got), ERR_OK);
    assert_int_equal(transcode_from_stream_len(&t, 881), 80);
    assert_int_equal(transcode_from_stream(&t, in + 1, 881, out, 79, &got), ERR_TOO_LARGE);
    assert_int_equal(got, 0);
    for (i = 0; i < sizeof(out); i++)
        assert_int_equal(out[i], 0xEE);
    assert_int_equal(transcode_from_stream_len(&t, TRANSCODE_FROM_STREAM_MAX + 1), SIZE_MAX);
    /* With the held byte: 2880000 samples at 44100 Hz, ceil(x * 80 / 441). */
    assert_int_equal(transcode_from_stream_len(&t, TRANSCODE_FROM_STREAM_MAX), 522449);
    assert_int_equal(
        transcode_from_stream(&t, big, TRANSCODE_FROM_STREAM_MAX + 1, out, sizeof(out), &got),
        ERR_TOO_LARGE);
    assert_int_equal(transcode_from_stream(&t, in + 1, 881, out, 80, &got), ERR_OK);
    assert_int_equal(got, 80);
    assert_int_equal(transcode_from_stream(&fresh, in, 882, ref, 80, &got), ERR_OK);
    assert_int_equal(got, 80);
    assert_memory_equal(out, ref, 80);

    /* The same frame, now with room, matches a fresh converter's. */
    assert_int_equal(transcode_to_stream(&t, frame, 160, out, 1764, &got), ERR_OK);
    assert_int_equal(got, 1764);
    assert_int_equal(transcode_to_stream(&fresh, frame, 160, ref, 1764, &got), ERR_OK);
    assert_memory_equal(out, ref, 1764);
    transcode_release(&t);
    transcode_release(&fresh);
    free(in);
}

/* Two tones in the speech band, as the party would send them. */
static double two_tones(double i)
{
    return 8000 * sin(2 * M_PI * 700 * i / 8000) + 3000 * sin(2 * M_PI * 2100 * i / 8000);
}

/* Party -> L16 at 44.1 kHz -> party keeps the audio: against the original
 * tones shifted by the best delay found (which must be the filters' ~6 ms
 * both ways), the SNR is that of G.711 coding twice, above 30 dB. */
static void l16_round_trip_keeps_audio(void **state)
{
    struct transcode t;
    uint8_t frame[160], l16[1764], back[160];
    int16_t *lin_out = malloc(8000 * sizeof(int16_t));
    size_t f, i, got, total = 0;
    double best_snr = -1, best_delay = 0, delay;

    (void)state;
    assert_non_null(lin_out);
    assert_int_equal(transcode_init(&t, PARTY_CODEC_PCMU, STREAM_CODEC_L16, 44100), ERR_OK);
    for (f = 0; f < 50; f++) {
        for (i = 0; i < 160; i++)
            frame[i] = g711_ulaw_encode((int16_t)lrint(two_tones((double)(f * 160 + i))));
        assert_int_equal(transcode_to_stream(&t, frame, 160, l16, sizeof(l16), &got), ERR_OK);
        assert_int_equal(got, 1764);
        assert_int_equal(transcode_from_stream(&t, l16, got, back, sizeof(back), &got), ERR_OK);
        assert_int_equal(got, 160);
        for (i = 0; i < 160; i++)
            lin_out[total++] = g711_ulaw_decode(back[i]);
    }
    for (delay = 40; delay <= 56; delay += 0.01) {
        double sig = 0, err = 0, snr;

        for (i = 200; i < 8000; i++) {
            double want = two_tones((double)i - delay);
            double d = lin_out[i] - want;

            sig += want * want;
            err += d * d;
        }
        snr = 10 * log10(sig / err);
        if (snr > best_snr) {
            best_snr = snr;
            best_delay = delay;
        }
    }
    print_message("PCMU -> L16/44100 -> PCMU: delay %.2f samples, SNR %.1f dB\n", best_delay,
                  best_snr);
    assert_true(best_delay > 47 && best_delay < 49);
    assert_true(best_snr > 30);
    transcode_release(&t);
    free(lin_out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(init_checks_codec_and_rate),
        cmocka_unit_test(to_stream_sizes_every_rate),
        cmocka_unit_test(from_stream_sizes_every_rate),
        cmocka_unit_test(same_law_is_byte_exact),
        cmocka_unit_test(alaw_ulaw_round_trip),
        cmocka_unit_test(l16_is_little_endian),
        cmocka_unit_test(odd_byte_is_held),
        cmocka_unit_test(caps_refuse_without_side_effects),
        cmocka_unit_test(l16_round_trip_keeps_audio),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
