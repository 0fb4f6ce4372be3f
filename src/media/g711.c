/* g711: segment arithmetic for both laws. Decoding computes the level
 * from the code's segment and mantissa; encoding finds the segment of the
 * sample's magnitude. No tables are needed: each is a handful of shifts. */
#include "media/g711.h"

/* The segment of a magnitude: how many times lo must double to pass v.
 * Segment s covers [lo << s, lo << (s + 1)), capped at 7. */
static unsigned segment_of(unsigned v, unsigned lo)
{
    unsigned seg = 0;

    while (seg < 7 && v >= (lo << (seg + 1)))
        seg++;
    return seg;
}

int16_t g711_alaw_decode(uint8_t code)
{
    unsigned v = code ^ 0x55u;
    unsigned seg = (v >> 4) & 7u;
    int mag = (int)((v & 0x0Fu) << 4) + 8;

    if (seg > 0)
        mag += 0x100;
    if (seg > 1)
        mag <<= seg - 1;
    return (int16_t)((v & 0x80u) ? mag : -mag);
}

uint8_t g711_alaw_encode(int16_t sample)
{
    /* A-law works on 13 bits: a sign and a 12-bit magnitude (0..4095). */
    unsigned mag = sample >= 0 ? (unsigned)sample >> 3 : (unsigned)~(int)sample >> 3;
    unsigned sign = sample >= 0 ? 0x80u : 0x00u;
    unsigned seg, mant;

    /* Segments 0 and 1 both have a step of 2; segment s >= 1 covers
     * [16 << s, 32 << s) with a step of 1 << s. */
    seg = mag < 32 ? 0 : 1 + segment_of(mag, 32);
    mant = (mag >> (seg ? seg : 1)) & 0x0Fu;
    return (uint8_t)((sign | (seg << 4) | mant) ^ 0x55u);
}

int16_t g711_ulaw_decode(uint8_t code)
{
    unsigned v = (unsigned)~code & 0xFFu;
    unsigned seg = (v >> 4) & 7u;
    int mag = (int)((((v & 0x0Fu) << 3) + 0x84u) << seg) - 0x84;

    return (int16_t)((code & 0x80u) ? mag : -mag);
}

uint8_t g711_ulaw_encode(int16_t sample)
{
    /* mu-law works on 14 bits; the bias of 33 makes segment s cover
     * [32 << s, 64 << s) of the biased magnitude, with a step of 2 << s. */
    unsigned mag = sample >= 0 ? (unsigned)sample >> 2 : (unsigned)~(int)sample >> 2;
    unsigned biased = mag + 33;
    unsigned seg, mant;

    if (biased > 0x1FFFu)
        biased = 0x1FFFu;
    seg = segment_of(biased, 32);
    mant = (biased >> (seg + 1)) & 0x0Fu;
    return (uint8_t)(((seg << 4) | mant) ^ (sample >= 0 ? 0xFFu : 0x7Fu));
}

void g711_alaw_decode_buf(const uint8_t *in, size_t n, int16_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = g711_alaw_decode(in[i]);
}

void g711_alaw_encode_buf(const int16_t *in, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = g711_alaw_encode(in[i]);
}

void g711_ulaw_decode_buf(const uint8_t *in, size_t n, int16_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = g711_ulaw_decode(in[i]);
}

void g711_ulaw_encode_buf(const int16_t *in, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = g711_ulaw_encode(in[i]);
}
