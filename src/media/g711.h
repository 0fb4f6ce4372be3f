/* g711: ITU-T G.711 A-law and mu-law companding, 8-bit code <-> 16-bit
 * linear PCM, with the program's own code (no external library). Pure:
 * no state, no allocation, thread-safe.
 *
 * Conventions (those of ITU-T G.191's reference g711.c and Sun's g711.c;
 * the two agree on every decoded value):
 * - Codes are the transmitted octets (A-law's even-bit inversion, 0x55, and
 *   mu-law's full inversion are applied). Linear samples use the 16-bit
 *   scale: A-law decodes to +-8 .. +-32256, mu-law to 0 .. +-32124.
 * - A code with bit 7 SET is positive, bit 7 CLEAR negative, for both laws:
 *   A-law 0xD5 -> +8, 0x55 -> -8; mu-law 0x80 -> +32124, 0x00 -> -32124,
 *   0xFF -> 0 and 0x7F -> 0 (mu-law's two zeros).
 * - Encoding takes the magnitude of a negative sample as its one's
 *   complement (~x), as G.191 does, so the quantiser is symmetric about
 *   -0.5: x and -1-x get codes differing only in the sign bit. Hence mu-law
 *   encodes 0..3 as 0xFF and -4..-1 as 0x7F; A-law encodes 0..15 as 0xD5
 *   and -16..-1 as 0x55. Samples beyond the largest level are clipped.
 *   (Sun's encoder negates instead for mu-law, sending -4..-1 to 0x7E, -8;
 *   we follow G.191.)
 * - decode(encode(x)) is the reconstruction level of x's decision interval
 *   (its midpoint, or the top level when clipped); encode(decode(c)) == c
 *   for every code except mu-law 0x7F, which re-encodes as 0xFF (both
 *   decode to 0, and 0 is a non-negative sample). */
#ifndef SFVOPI_MEDIA_G711_H
#define SFVOPI_MEDIA_G711_H

#include <stddef.h>
#include <stdint.h>

#define G711_ALAW_SILENCE 0xD5 /* A-law code of the smallest positive level (+8) */
#define G711_ULAW_SILENCE 0xFF /* mu-law code of (positive) zero */

/* A-law code -> linear sample. */
int16_t g711_alaw_decode(uint8_t code);
/* Linear sample -> A-law code. */
uint8_t g711_alaw_encode(int16_t sample);
/* mu-law code -> linear sample. */
int16_t g711_ulaw_decode(uint8_t code);
/* Linear sample -> mu-law code. */
uint8_t g711_ulaw_encode(int16_t sample);

/* Buffer variants: n codes (or samples) from in to out, which hold n
 * entries each and must not overlap. n == 0 is allowed (in/out may then be
 * NULL). */
void g711_alaw_decode_buf(const uint8_t *in, size_t n, int16_t *out);
void g711_alaw_encode_buf(const int16_t *in, size_t n, uint8_t *out);
void g711_ulaw_decode_buf(const uint8_t *in, size_t n, int16_t *out);
void g711_ulaw_encode_buf(const int16_t *in, size_t n, uint8_t *out);

#endif
