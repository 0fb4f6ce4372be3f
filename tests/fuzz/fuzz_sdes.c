/* Fuzzes what a party controls in SDES-keyed media: the a=crypto value
 * (sdes_parse) and the SRTP packets we receive (srtpsess_unprotect).
 * Whatever the input: a parse ends in a documented error, or in a line
 * that sdes_format writes and sdes_parse reads back unchanged; unprotect
 * never accepts bytes we did not protect; and bytes that protect accepts
 * as RTP come back intact through the mirrored session, or are refused
 * as a replay. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sip/srtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static _Alignas(4) uint8_t pkt[SRTPSESS_PACKET_MAX + SRTPSESS_TAG_80];
static _Alignas(4) uint8_t orig[SRTPSESS_PACKET_MAX];
static struct srtpsess *a, *b; /* a sends with k1, b hears k1 */

static void check_parse(const uint8_t *data, size_t size)
{
    struct sdes_crypto c, back;
    char line[SDES_FORMAT_MAX];
    size_t n;
    enum err e = sdes_parse((const char *)data, size, &c);

    if ((e == ERR_TOO_LARGE) != (size > SDES_ATTR_MAX))
        abort();
    if (e != ERR_OK) {
        if (e != ERR_INVALID && e != ERR_NOT_ALLOWED && e != ERR_TOO_LARGE)
            abort();
        return;
    }
    if (c.tag > SDES_TAG_MAX ||
        (c.suite != SDES_AES_CM_128_HMAC_SHA1_80 && c.suite != SDES_AES_CM_128_HMAC_SHA1_32))
        abort();
    if (sdes_format(&c, line, sizeof(line), &n) != ERR_OK || n != strlen(line))
        abort();
    if (sdes_parse(line, n, &back) != ERR_OK || memcmp(&back, &c, sizeof(c)) != 0)
        abort();
}

static void check_unprotect(const uint8_t *data, size_t size)
{
    size_t n;
    enum err e;

    if (size > sizeof(pkt))
        return;
    memcpy(pkt, data, size);
    e = srtpsess_unprotect(b, pkt, size, &n);
    if (e == ERR_OK) /* a forgery under an 80-bit tag */
        abort();
    if (e != ERR_INVALID && e != ERR_UNAUTHENTICATED && e != ERR_CONFLICT && e != ERR_TOO_LARGE)
        abort();
}

static void check_round_trip(const uint8_t *data, size_t size)
{
    size_t n, m;
    enum err e;

    if (size > sizeof(orig))
        return;
    memcpy(pkt, data, size);
    /* Four SSRCs at most, so the sessions' stream lists stay small. */
    if (size >= 12)
        memset(pkt + 8, pkt[8] & 3, 4);
    memcpy(orig, pkt, size);
    e = srtpsess_protect(a, pkt, size, sizeof(pkt), &n);
    if (e == ERR_INVALID || e == ERR_CONFLICT || e == ERR_TOO_LARGE) {
        if (memcmp(pkt, orig, size) != 0) /* refused means untouched */
            abort();
        return;
    }
    if (e != ERR_OK || n != size + SRTPSESS_TAG_80)
        abort();
    e = srtpsess_unprotect(b, pkt, n, &m);
    if (e == ERR_CONFLICT)
        return;
    if (e != ERR_OK || m != size || memcmp(pkt, orig, size) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t k1[SDES_KEY_LEN], k2[SDES_KEY_LEN];

    if (!a) {
        for (int i = 0; i < SDES_KEY_LEN; i++) {
            k1[i] = (uint8_t)(3 * i + 1);
            k2[i] = (uint8_t)(5 * i + 2);
        }
        if (srtpsess_new(SDES_AES_CM_128_HMAC_SHA1_80, k1, k2, &a) != ERR_OK ||
            srtpsess_new(SDES_AES_CM_128_HMAC_SHA1_80, k2, k1, &b) != ERR_OK)
            abort();
    }
    check_parse(data, size);
    check_unprotect(data, size);
    check_round_trip(data, size);
    return 0;
}
