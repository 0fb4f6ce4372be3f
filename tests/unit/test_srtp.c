/* test_srtp: the SDES a=crypto parser, formatter and chooser, and SRTP
 * sessions over libsrtp2 checked against RFC 3711 Appendix B: the test's
 * own AES-CM (OpenSSL's AES-128) reproduces B.2's keystream and B.3's key
 * derivation, then a packet protected by the module must carry exactly
 * the B.3 session keys' keystream and HMAC-SHA1 tag. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "core/rand.h"
#include "sip/srtp.h"

/* ---- helpers ---- */

static void unhex(const char *h, uint8_t *out, size_t n)
{
    assert_int_equal(strlen(h), 2 * n);
    for (size_t i = 0; i < n; i++) {
        unsigned v;

        assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

static void aes128_block(const uint8_t key[16], const uint8_t in[16], uint8_t out[16])
{
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int n = 0;

    assert_non_null(x);
    assert_int_equal(EVP_EncryptInit_ex(x, EVP_aes_128_ecb(), NULL, key, NULL), 1);
    EVP_CIPHER_CTX_set_padding(x, 0);
    assert_int_equal(EVP_EncryptUpdate(x, out, &n, in, 16), 1);
    assert_int_equal(n, 16);
    EVP_CIPHER_CTX_free(x);
}

/* RFC 3711 4.1.1 AES-CM: block j is AES(key, iv + j), iv a 128-bit
 * big-endian integer. */
static void aes_cm(const uint8_t key[16], const uint8_t iv[16], uint8_t *out, size_t n)
{
    uint8_t ctr[16], block[16];

    memcpy(ctr, iv, 16);
    for (size_t off = 0; off < n; off += 16) {
        size_t k = n - off < 16 ? n - off : 16;

        aes128_block(key, ctr, block);
        memcpy(out + off, block, k);
        for (int i = 15; i >= 0 && ++ctr[i] == 0; i--)
            ;
    }
}

/* RFC 3711 4.1.1: IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16). */
static void srtp_iv(const uint8_t salt[14], uint32_t ssrc, uint64_t index, uint8_t iv[16])
{
    memset(iv, 0, 16);
    memcpy(iv, salt, 14);
    for (int b = 0; b < 4; b++)
        iv[4 + b] ^= (uint8_t)(ssrc >> (24 - 8 * b));
    for (int b = 0; b < 6; b++)
        iv[8 + b] ^= (uint8_t)(index >> (40 - 8 * b));
}

/* RFC 3711 4.3.3 with kdr 0: PRF_n(master key, (label << 48) XOR salt). */
static void kdf(const uint8_t mkey[16], const uint8_t msalt[14], uint8_t label, uint8_t *out,
                size_t n)
{
    uint8_t iv[16] = {0};

    memcpy(iv, msalt, 14);
    iv[7] ^= label;
    aes_cm(mkey, iv, out, n);
}

#define B3_MASTER_KEY "E1F97A0D3E018BE0D64FA32C06DE4139"
#define B3_MASTER_SALT "0EC675AD498AFEEBB6960B3AABE6"
#define B3_CIPHER_KEY "C61E7A93744F39EE10734AFE3FF7A087"
#define B3_CIPHER_SALT "30CBBC08863D8C85D49DB34A9AE1"
#define B3_AUTH_KEY "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4" /* first 160 bits */

static void b3_master(uint8_t key[SDES_KEY_LEN])
{
    unhex(B3_MASTER_KEY, key, 16);
    unhex(B3_MASTER_SALT, key + 16, 14);
}

static void fill_key(uint8_t key[SDES_KEY_LEN], uint8_t seed)
{
    for (int i = 0; i < SDES_KEY_LEN; i++)
        key[i] = (uint8_t)(seed + 7 * i);
}

/* An RTP packet: 12-byte header, then payload bytes of value fill. */
static size_t rtp_packet(uint8_t *p, uint16_t seq, uint32_t ssrc, size_t payload, uint8_t fill)
{
    p[0] = 0x80;
    p[1] = 0x08; /* PCMA */
    p[2] = (uint8_t)(seq >> 8);
    p[3] = (uint8_t)seq;
    p[4] = 0x00;
    p[5] = 0x01;
    p[6] = 0xE2;
    p[7] = 0x40;
    for (int b = 0; b < 4; b++)
        p[8 + b] = (uint8_t)(ssrc >> (24 - 8 * b));
    memset(p + 12, fill, payload);
    return 12 + payload;
}

struct pair {
    struct srtpsess *a, *b; /* a sends with k1 and hears k2; b the mirror */
};

static void pair_new(struct pair *p, enum sdes_suite suite)
{
    uint8_t k1[SDES_KEY_LEN], k2[SDES_KEY_LEN];

    fill_key(k1, 1);
    fill_key(k2, 100);
    assert_int_equal(srtpsess_new(suite, k1, k2, &p->a), ERR_OK);
    assert_int_equal(srtpsess_new(suite, k2, k1, &p->b), ERR_OK);
}

static void pair_free(struct pair *p)
{
    srtpsess_free(p->a);
    srtpsess_free(p->b);
}

/* ---- RFC 3711 Appendix B ---- */

static void b2_aes_cm_keystream(void **state)
{
    static const struct {
        unsigned block;
        const char *ks;
    } want[] = {
        {0x0000, "E03EAD0935C95E80E166B16DD92B4EB4"}, {0x0001, "D23513162B02D0F72A43A2FE4A5F97AB"},
        {0x0002, "41E95B3BB0A2E8DD477901E4FCA894C0"}, {0xFEFF, "EC8CDF7398607CB0F2D21675EA9EA1E4"},
        {0xFF00, "362B7C3C6773516318A077D7FC5073AE"}, {0xFF01, "6A2CC3787889374FBEB4C81B17BA6C44"},
    };
    uint8_t key[16], iv[16], expect[16];
    uint8_t *ks = malloc(65282 * 16);

    (void)state;
    assert_non_null(ks);
    unhex("2B7E151628AED2A6ABF7158809CF4F3C", key, 16);
    unhex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000", iv, 16);
    aes_cm(key, iv, ks, 65282 * 16); /* the whole B.2 segment */
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        unhex(want[i].ks, expect, 16);
        assert_memory_equal(ks + 16 * want[i].block, expect, 16);
    }
    free(ks);
}

static void b3_key_derivation_in_test(void **state)
{
    uint8_t master[SDES_KEY_LEN], got[20], want[20];

    (void)state;
    b3_master(master);
    kdf(master, master + 16, 0x00, got, 16);
    unhex(B3_CIPHER_KEY, want, 16);
    assert_memory_equal(got, want, 16);
    kdf(master, master + 16, 0x02, got, 14);
    unhex(B3_CIPHER_SALT, want, 14);
    assert_memory_equal(got, want, 14);
    kdf(master, master + 16, 0x01, got, 20);
    unhex(B3_AUTH_KEY, want, 20);
    assert_memory_equal(got, want, 20);
}

/* Protects one packet of zeros under the B.3 master key: its payload must be
 * the keystream of the B.3 session key and salt, its tag HMAC-SHA1 under
 * the B.3 auth key of header || payload || ROC (0), truncated. */
static void b3_through_module(enum sdes_suite suite, uint32_t ssrc, uint16_t seq)
{
    enum { PAYLOAD = 48 };
    _Alignas(4) uint8_t pkt[12 + PAYLOAD + SRTPSESS_TAG_80];
    uint8_t master[SDES_KEY_LEN], other[SDES_KEY_LEN], ckey[16], csalt[14], akey[20], iv[16];
    uint8_t ks[PAYLOAD], mac[EVP_MAX_MD_SIZE], authed[12 + PAYLOAD + 4];
    unsigned mac_len = 0;
    size_t len, n, tag = suite == SDES_AES_CM_128_HMAC_SHA1_80 ? 10 : 4;
    struct srtpsess *s;

    b3_master(master);
    fill_key(other, 9);
    unhex(B3_CIPHER_KEY, ckey, 16);
    unhex(B3_CIPHER_SALT, csalt, 14);
    unhex(B3_AUTH_KEY, akey, 20);
    assert_int_equal(srtpsess_new(suite, master, other, &s), ERR_OK);
    assert_int_equal(srtpsess_tag_len(s), tag);

    len = rtp_packet(pkt, seq, ssrc, PAYLOAD, 0);
    assert_int_equal(srtpsess_protect(s, pkt, len, sizeof(pkt), &n), ERR_OK);
    assert_int_equal(n, len + tag);

    srtp_iv(csalt, ssrc, seq, iv);
    aes_cm(ckey, iv, ks, PAYLOAD);
    assert_memory_equal(pkt + 12, ks, PAYLOAD);

    memcpy(authed, pkt, len);
    memset(authed + len, 0, 4); /* ROC 0 */
    assert_non_null(HMAC(EVP_sha1(), akey, 20, authed, len + 4, mac, &mac_len));
    assert_int_equal(mac_len, 20);
    assert_memory_equal(pkt + len, mac, tag);
    srtpsess_free(s);
}

static void b3_protect_80(void **state)
{
    (void)state;
    b3_through_module(SDES_AES_CM_128_HMAC_SHA1_80, 0, 0);
    b3_through_module(SDES_AES_CM_128_HMAC_SHA1_80, 0xDECAFBAD, 0x1234);
}

static void b3_protect_32(void **state)
{
    (void)state;
    b3_through_module(SDES_AES_CM_128_HMAC_SHA1_32, 0, 0);
    b3_through_module(SDES_AES_CM_128_HMAC_SHA1_32, 0xCAFEBABE, 65535);
}

/* ---- sessions ---- */

static void round_trip_suite(enum sdes_suite suite, size_t tag)
{
    _Alignas(4) uint8_t pkt[200], orig[200];
    struct pair p;
    size_t len, n, m;

    pair_new(&p, suite);
    for (uint16_t seq = 65530; seq != 6; seq++) { /* across a rollover */
        len = rtp_packet(pkt, seq, 0x11223344, 160, (uint8_t)seq);
        memcpy(orig, pkt, len);
        assert_int_equal(srtpsess_protect(p.a, pkt, len, sizeof(pkt), &n), ERR_OK);
        assert_int_equal(n, len + tag);
        assert_memory_equal(pkt, orig, 12); /* the header stays clear */
        assert_memory_not_equal(pkt + 12, orig + 12, 160);
        assert_int_equal(srtpsess_unprotect(p.b, pkt, n, &m), ERR_OK);
        assert_int_equal(m, len);
        assert_memory_equal(pkt, orig, len);
    }
    /* And the other way. */
    len = rtp_packet(pkt, 7, 0x55667788, 20, 0xAB);
    memcpy(orig, pkt, len);
    assert_int_equal(srtpsess_protect(p.b, pkt, len, sizeof(pkt), &n), ERR_OK);
    assert_int_equal(srtpsess_unprotect(p.a, pkt, n, &m), ERR_OK);
    assert_int_equal(m, len);
    assert_memory_equal(pkt, orig, len);
    /* A session does not hear its own key. */
    len = rtp_packet(pkt, 8, 0x55667788, 20, 0xAB);
    assert_int_equal(srtpsess_protect(p.a, pkt, len, sizeof(pkt), &n), ERR_OK);
    assert_int_equal(srtpsess_unprotect(p.a, pkt, n, &m), ERR_UNAUTHENTICATED);
    pair_free(&p);
}

static void round_trip(void **state)
{
    (void)state;
    round_trip_suite(SDES_AES_CM_128_HMAC_SHA1_80, 10);
    round_trip_suite(SDES_AES_CM_128_HMAC_SHA1_32, 4);
}

static void tampering_fails_auth(void **state)
{
    _Alignas(4) uint8_t pkt[200], sent[200], bad[200];
    struct pair p;
    size_t len, n, m;

    (void)state;
    pair_new(&p, SDES_AES_CM_128_HMAC_SHA1_80);
    len = rtp_packet(pkt, 100, 42, 160, 0x55);
    assert_int_equal(srtpsess_protect(p.a, pkt, len, sizeof(pkt), &n), ERR_OK);
    memcpy(sent, pkt, n);
    /* One flipped bit anywhere, header, payload or tag. */
    for (size_t bit = 0; bit < n * 8; bit += 37) {
        memcpy(bad, sent, n);
        bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (bit / 8 == 0 && (bit % 8) >= 6)
            continue; /* the version bits: refused before any check */
        assert_int_equal(srtpsess_unprotect(p.b, bad, n, &m), ERR_UNAUTHENTICATED);
    }
    /* A forgery does not burn the genuine packet's index. */
    memcpy(pkt, sent, n);
    assert_int_equal(srtpsess_unprotect(p.b, pkt, n, &m), ERR_OK);
    pair_free(&p);
}

static void replay_refused(void **state)
{
    _Alignas(4) uint8_t pkt[200], sent[200];
    struct pair p;
    size_t len, n, m;

    (void)state;
    pair_new(&p, SDES_AES_CM_128_HMAC_SHA1_80);
    len = rtp_packet(pkt, 1000, 7, 40, 1);
    assert_int_equal(srtpsess_protect(p.a, pkt, len, sizeof(pkt), &n), ERR_OK);
    memcpy(sent, pkt, n);
    assert_int_equal(srtpsess_unprotect(p.b, pkt, n, &m), ERR_OK);
    memcpy(pkt, sent, n);
    assert_int_equal(srtpsess_unprotect(p.b, pkt, n, &m), ERR_CONFLICT);
    /* The window is checked first: a tampered copy is still a replay. */
    memcpy(pkt, sent, n);
    pkt[20] ^= 1;
    assert_int_equal(srtpsess_unprotect(p.b, pkt, n, &m), ERR_CONFLICT);

    /* Sending the same index twice is refused before encrypting. */
    len = rtp_packet(pkt, 1000, 7, 40, 2);
    assert_int_equal(srtpsess_protect(p.a, pkt, len, sizeof(pkt), &n), ERR_CONFLICT);
    assert_int_equal(pkt[12], 2);

    /* Older than the window (128): a packet sent late, after 1300. */
    len = rtp_packet(pkt, 1001, 7, 40, 3);
    assert_int_equal(srtpsess_protect(p.a, pkt, len, sizeof(pkt), &n), ERR_OK);
    memcpy(sent, pkt, n);
    len = rtp_packet(pkt, 1300, 7, 40, 4);
    assert_int_equal(srtpsess_protect(p.a, pkt, len, sizeof(pkt), &n), ERR_OK);
    assert_int_equal(srtpsess_unprotect(p.b, pkt, n, &m), ERR_OK);
    memcpy(pkt, sent, n);
    assert_int_equal(srtpsess_unprotect(p.b, pkt, len + 10, &m), ERR_CONFLICT);
    pair_free(&p);
}

static void csrc_and_extension(void **state)
{
    _Alignas(4) uint8_t pkt[256], orig[256];
    struct pair p;
    size_t len, n, m, hdr = 12 + 8 + 4 + 8; /* 2 CSRCs, extension of 2 words */

    (void)state;
    pair_new(&p, SDES_AES_CM_128_HMAC_SHA1_80);
    len = rtp_packet(pkt, 5, 99, hdr - 12 + 100, 0x77);
    pkt[0] = 0x80 | 0x10 | 2;
    memset(pkt + 12, 0xC1, 8);
    pkt[20] = 0xBE;
    pkt[21] = 0xDE;
    pkt[22] = 0;
    pkt[23] = 2;
    memset(pkt + 24, 0xE5, 8);
    memcpy(orig, pkt, len);
    assert_int_equal(srtpsess_protect(p.a, pkt, len, sizeof(pkt), &n), ERR_OK);
    assert_int_equal(n, len + 10);
    assert_memory_equal(pkt, orig, hdr); /* CSRCs and extension in clear */
    assert_memory_not_equal(pkt + hdr, orig + hdr, 100);
    assert_int_equal(srtpsess_unprotect(p.b, pkt, n, &m), ERR_OK);
    assert_int_equal(m, len);
    assert_memory_equal(pkt, orig, len);

    /* An extension that claims more words than the packet has. */
    len = rtp_packet(pkt, 6, 99, 20, 0);
    pkt[0] = 0x90;
    pkt[14] = 0;
    pkt[15] = 5;
    assert_int_equal(srtpsess_protect(p.a, pkt, len, sizeof(pkt), &n), ERR_INVALID);
    /* 15 CSRCs in a 40-byte packet. */
    len = rtp_packet(pkt, 6, 99, 28, 0);
    pkt[0] = 0x8F;
    assert_int_equal(srtpsess_protect(p.a, pkt, len, sizeof(pkt), &n), ERR_INVALID);
    pair_free(&p);
}

static void buffer_too_small(void **state)
{
    _Alignas(4) uint8_t pkt[64 + 16], before[64 + 16];
    struct pair p;
    size_t len, n, m;

    (void)state;
    pair_new(&p, SDES_AES_CM_128_HMAC_SHA1_80);
    memset(pkt, 0xEE, sizeof(pkt));
    len = rtp_packet(pkt, 1, 1, 52, 0x10); /* 64 bytes */
    memcpy(before, pkt, sizeof(pkt));
    assert_int_equal(srtpsess_protect(p.a, pkt, len, len + 9, &n), ERR_TOO_LARGE);
    assert_int_equal(srtpsess_protect(p.a, pkt, len, len, &n), ERR_TOO_LARGE);
    assert_memory_equal(pkt, before, sizeof(pkt));
    /* Exactly room for the tag: the bytes after it stay as they were. */
    assert_int_equal(srtpsess_protect(p.a, pkt, len, len + 10, &n), ERR_OK);
    assert_int_equal(n, len + 10);
    assert_memory_equal(pkt + n, before + n, sizeof(pkt) - n);
    assert_int_equal(srtpsess_unprotect(p.b, pkt, n, &m), ERR_OK);
    assert_memory_equal(pkt, before, len);
    pair_free(&p);
}

static void not_rtp(void **state)
{
    _Alignas(4) uint8_t pkt[64];
    struct pair p;
    size_t len, n;

    (void)state;
    pair_new(&p, SDES_AES_CM_128_HMAC_SHA1_80);
    len = rtp_packet(pkt, 1, 1, 20, 0);
    pkt[0] = 0x40; /* version 1 */
    assert_int_equal(srtpsess_protect(p.a, pkt, len, sizeof(pkt), &n), ERR_INVALID);
    assert_int_equal(srtpsess_unprotect(p.b, pkt, len, &n), ERR_INVALID);
    pkt[0] = 0x80;
    assert_int_equal(srtpsess_protect(p.a, pkt, 11, sizeof(pkt), &n), ERR_INVALID);
    /* Header and a tag of 10 need 22 bytes. */
    assert_int_equal(srtpsess_unprotect(p.b, pkt, 21, &n), ERR_INVALID);
    assert_int_equal(srtpsess_unprotect(p.b, pkt, 0, &n), ERR_INVALID);
    assert_int_equal(srtpsess_unprotect(p.b, pkt, 22, &n), ERR_UNAUTHENTICATED);
    assert_int_equal(srtpsess_unprotect(p.b, pkt, SRTPSESS_PACKET_MAX + 1, &n), ERR_TOO_LARGE);
    pair_free(&p);
}

/* The party may use SRTPSESS_SSRC_MAX SSRCs; one more is refused every
 * time, and the known ones keep working. */
static void party_ssrc_cap(void **state)
{
    _Alignas(4) uint8_t pkt[64];
    struct pair p;
    size_t len, n, m;
    uint32_t ssrc;

    (void)state;
    pair_new(&p, SDES_AES_CM_128_HMAC_SHA1_32);
    for (ssrc = 1; ssrc <= SRTPSESS_SSRC_MAX; ssrc++) {
        len = rtp_packet(pkt, 1, ssrc, 20, 0);
        assert_int_equal(srtpsess_protect(p.a, pkt, len, sizeof(pkt), &n), ERR_OK);
        assert_int_equal(srtpsess_unprotect(p.b, pkt, n, &m), ERR_OK);
    }
    for (uint16_t seq = 1; seq <= 3; seq++) {
        len = rtp_packet(pkt, seq, SRTPSESS_SSRC_MAX + 1, 20, 0);
        assert_int_equal(srtpsess_protect(p.a, pkt, len, sizeof(pkt), &n), ERR_OK);
        assert_int_equal(srtpsess_unprotect(p.b, pkt, n, &m), ERR_TOO_LARGE);
    }
    for (ssrc = 1; ssrc <= SRTPSESS_SSRC_MAX; ssrc++) {
        len = rtp_packet(pkt, 2, ssrc, 20, 0);
        assert_int_equal(srtpsess_protect(p.a, pkt, len, sizeof(pkt), &n), ERR_OK);
        assert_int_equal(srtpsess_unprotect(p.b, pkt, n, &m), ERR_OK);
    }
    pair_free(&p);
}

static void session_lifecycle(void **state)
{
    uint8_t k[SDES_KEY_LEN] = {0};
    struct srtpsess *s = NULL;

    (void)state;
    assert_int_equal(srtpsess_init(), ERR_OK);
    assert_int_equal(srtpsess_init(), ERR_OK);
    assert_int_equal(srtpsess_new((enum sdes_suite)99, k, k, &s), ERR_INVALID);
    assert_null(s);
    srtpsess_free(NULL);
}

/* ---- SDES ---- */

#define KEY_B64 "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR" /* RFC 4568's example key */
#define KEY_HEX "3d2d6e40255e7821426a75667239293f2c2335685c603d265d7b71695051"

static enum err parse(const char *s, struct sdes_crypto *c)
{
    return sdes_parse(s, strlen(s), c);
}

static void sdes_valid(void **state)
{
    static const struct {
        const char *line;
        uint32_t tag;
        enum sdes_suite suite;
    } ok[] = {
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64, 1, SDES_AES_CM_128_HMAC_SHA1_80},
        {"2 AES_CM_128_HMAC_SHA1_32 inline:" KEY_B64, 2, SDES_AES_CM_128_HMAC_SHA1_32},
        {"999999999 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64, 999999999,
         SDES_AES_CM_128_HMAC_SHA1_80},
        {"0 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|2^31", 0, SDES_AES_CM_128_HMAC_SHA1_80},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|2^48", 1, SDES_AES_CM_128_HMAC_SHA1_80},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|2^24", 1, SDES_AES_CM_128_HMAC_SHA1_80},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|2^64", 1, SDES_AES_CM_128_HMAC_SHA1_80},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|16777216", 1, SDES_AES_CM_128_HMAC_SHA1_80},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|99999999999999999999", 1,
         SDES_AES_CM_128_HMAC_SHA1_80},
        {"1\tAES_CM_128_HMAC_SHA1_80 \t inline:" KEY_B64, 1, SDES_AES_CM_128_HMAC_SHA1_80},
        {"  3 AES_CM_128_HMAC_SHA1_32 inline:" KEY_B64 " \t\r\n", 3, SDES_AES_CM_128_HMAC_SHA1_32},
        {"007 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 " WSH=64", 7, SDES_AES_CM_128_HMAC_SHA1_80},
    };
    struct sdes_crypto c;
    uint8_t key[SDES_KEY_LEN];

    (void)state;
    unhex(KEY_HEX, key, sizeof(key));
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        memset(&c, 0xFF, sizeof(c));
        assert_int_equal(parse(ok[i].line, &c), ERR_OK);
        assert_int_equal(c.tag, ok[i].tag);
        assert_int_equal(c.suite, ok[i].suite);
        assert_memory_equal(c.key, key, sizeof(key));
    }
}

static void sdes_refused(void **state)
{
    static const struct {
        const char *line;
        enum err e;
    } bad[] = {
        /* malformed */
        {"", ERR_INVALID},
        {"   ", ERR_INVALID},
        {"x AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64, ERR_INVALID},
        {"1234567890 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64, ERR_INVALID},
        {"1AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64, ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80inline:" KEY_B64, ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80", ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 ", ERR_INVALID},
        {"1 AES-CM-128 inline:" KEY_B64, ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:", ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 " KEY_B64, ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVB", ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "A", ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaV*R", ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaV==", ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBRPS1u",
         ERR_INVALID}, /* 33 bytes */
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|", ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|2^", ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|2^65", ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|2^31x", ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|123456789012345678901", ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|2^31|2^31", ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|1:4|2^31", ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|1:", ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|1:200", ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|:4", ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "x", ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 " WSH=", ERR_INVALID},
        {"1 AES_CM_128_HMAC_SHA1_80 inlineX" KEY_B64, ERR_INVALID},
        /* well-formed, not acceptable */
        {"1 AES_256_CM_HMAC_SHA1_80 inline:" KEY_B64 KEY_B64, ERR_NOT_ALLOWED},
        {"1 F8_128_HMAC_SHA1_80 inline:" KEY_B64, ERR_NOT_ALLOWED},
        {"1 AEAD_AES_128_GCM inline:" KEY_B64, ERR_NOT_ALLOWED},
        {"1 aes_cm_128_hmac_sha1_80 inline:" KEY_B64, ERR_NOT_ALLOWED},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|2^20|1:32", ERR_NOT_ALLOWED},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|1:4", ERR_NOT_ALLOWED},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|2^31|1:4", ERR_NOT_ALLOWED},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|2^20", ERR_NOT_ALLOWED},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|2^23", ERR_NOT_ALLOWED},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|16777215", ERR_NOT_ALLOWED},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|0", ERR_NOT_ALLOWED},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 ";inline:" KEY_B64, ERR_NOT_ALLOWED},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 " UNENCRYPTED_SRTP", ERR_NOT_ALLOWED},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 " UNAUTHENTICATED_SRTP", ERR_NOT_ALLOWED},
        {"1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 " WSH=64 KDR=1", ERR_NOT_ALLOWED},
        {"1 AES_CM_128_HMAC_SHA1_80 uri:https://example.com/key", ERR_NOT_ALLOWED},
    };
    struct sdes_crypto c, untouched;

    (void)state;
    memset(&untouched, 0x5A, sizeof(untouched));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        c = untouched;
        if (parse(bad[i].line, &c) != bad[i].e)
            fail_msg("line %zu \"%s\": want %d, got %d", i, bad[i].line, bad[i].e,
                     parse(bad[i].line, &c));
        assert_memory_equal(&c, &untouched, sizeof(c));
    }
}

/* Every proper prefix of a valid line fails (but the one that ends with
 * the key), read from a heap copy of just
 * that many bytes (so a sanitizer build sees any read past len), and an
 * embedded NUL anywhere is malformed. */
static void sdes_truncated_and_nul(void **state)
{
    static const char line[] = "1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|2^31";
    size_t full = strlen(line);
    struct sdes_crypto c;
    char *p;

    (void)state;
    for (size_t k = 0; k < full; k++) {
        p = malloc(k ? k : 1);
        assert_non_null(p);
        memcpy(p, line, k);
        if (k == full - strlen("|2^31"))
            assert_int_equal(sdes_parse(p, k, &c), ERR_OK); /* no lifetime */
        else if (sdes_parse(p, k, &c) == ERR_OK)
            fail_msg("prefix of %zu bytes accepted", k);
        free(p);
    }
    assert_int_equal(sdes_parse(line, full, &c), ERR_OK);
    p = malloc(full);
    assert_non_null(p);
    for (size_t k = 0; k < full; k++) {
        memcpy(p, line, full);
        p[k] = '\0';
        assert_int_equal(sdes_parse(p, full, &c), ERR_INVALID);
    }
    free(p);
}

static void sdes_overlong(void **state)
{
    char buf[SDES_ATTR_MAX + 2];
    const char *line = "1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64;
    struct sdes_crypto c;

    (void)state;
    memset(buf, ' ', sizeof(buf));
    memcpy(buf, line, strlen(line));
    assert_int_equal(sdes_parse(buf, SDES_ATTR_MAX, &c), ERR_OK);
    assert_int_equal(sdes_parse(buf, SDES_ATTR_MAX + 1, &c), ERR_TOO_LARGE);
    assert_int_equal(sdes_parse(NULL, 0, &c), ERR_INVALID);
}

static void sdes_format_round_trip(void **state)
{
    struct sdes_crypto c = {.tag = 1, .suite = SDES_AES_CM_128_HMAC_SHA1_80}, back;
    char out[SDES_FORMAT_MAX];
    size_t n;

    (void)state;
    unhex(KEY_HEX, c.key, sizeof(c.key));
    assert_int_equal(sdes_format(&c, out, sizeof(out), &n), ERR_OK);
    assert_string_equal(out, "1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64);
    assert_int_equal(n, strlen(out));

    c.tag = SDES_TAG_MAX;
    c.suite = SDES_AES_CM_128_HMAC_SHA1_32;
    assert_int_equal(sdes_format(&c, out, sizeof(out), &n), ERR_OK);
    assert_int_equal(n, SDES_FORMAT_MAX - 1);
    assert_int_equal(sdes_parse(out, n, &back), ERR_OK);
    assert_memory_equal(&back, &c, sizeof(c));

    assert_int_equal(sdes_format(&c, out, SDES_FORMAT_MAX - 1, &n), ERR_TOO_LARGE);
    assert_string_equal(out, "");
    c.tag = SDES_TAG_MAX + 1;
    assert_int_equal(sdes_format(&c, out, sizeof(out), &n), ERR_INVALID);
    c.tag = 1;
    c.suite = (enum sdes_suite)0;
    assert_int_equal(sdes_format(&c, out, sizeof(out), &n), ERR_INVALID);
}

static void sdes_generate_is_random(void **state)
{
    struct sdes_crypto a, b;
    static const uint8_t zero[SDES_KEY_LEN];

    (void)state;
    sdes_generate(&a, 5, SDES_AES_CM_128_HMAC_SHA1_32);
    sdes_generate(&b, 5, SDES_AES_CM_128_HMAC_SHA1_32);
    assert_int_equal(a.tag, 5);
    assert_int_equal(a.suite, SDES_AES_CM_128_HMAC_SHA1_32);
    assert_memory_not_equal(a.key, b.key, SDES_KEY_LEN);
    assert_memory_not_equal(a.key, zero, SDES_KEY_LEN);
}

static void sdes_choose_first_acceptable(void **state)
{
    const char *offer1[] = {
        "1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64,
        "2 AES_CM_128_HMAC_SHA1_32 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd",
    };
    const char *offer2[] = {
        "1 AES_256_CM_HMAC_SHA1_80 inline:" KEY_B64 KEY_B64,
        "2 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|2^20|1:32",
        "3 AES_CM_128_HMAC_SHA1_80 inline:broken",
        NULL,
        "7 AES_CM_128_HMAC_SHA1_32 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd",
        "8 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64,
    };
    size_t lens[6];
    struct sdes_crypto theirs, ours, untouched;
    uint8_t key[SDES_KEY_LEN];

    (void)state;
    for (size_t i = 0; i < 2; i++)
        lens[i] = strlen(offer1[i]);
    assert_int_equal(sdes_choose(offer1, lens, 2, &theirs, &ours), ERR_OK);
    assert_int_equal(theirs.tag, 1);
    assert_int_equal(theirs.suite, SDES_AES_CM_128_HMAC_SHA1_80);
    assert_int_equal(ours.tag, 1);
    assert_int_equal(ours.suite, SDES_AES_CM_128_HMAC_SHA1_80);
    assert_memory_not_equal(ours.key, theirs.key, SDES_KEY_LEN);

    for (size_t i = 0; i < 6; i++)
        lens[i] = offer2[i] ? strlen(offer2[i]) : 0;
    assert_int_equal(sdes_choose(offer2, lens, 6, &theirs, &ours), ERR_OK);
    assert_int_equal(theirs.tag, 7);
    assert_int_equal(theirs.suite, SDES_AES_CM_128_HMAC_SHA1_32);
    for (int i = 0; i < SDES_KEY_LEN; i++)
        key[i] = (uint8_t)i;
    assert_memory_equal(theirs.key, key, SDES_KEY_LEN);
    assert_int_equal(ours.tag, 7);
    assert_int_equal(ours.suite, SDES_AES_CM_128_HMAC_SHA1_32);

    memset(&untouched, 0x5A, sizeof(untouched));
    theirs = ours = untouched;
    assert_int_equal(sdes_choose(offer2, lens, 4, &theirs, &ours), ERR_NOT_FOUND);
    assert_int_equal(sdes_choose(NULL, NULL, 0, &theirs, &ours), ERR_NOT_FOUND);
    assert_memory_equal(&theirs, &untouched, sizeof(theirs));
    assert_memory_equal(&ours, &untouched, sizeof(ours));
}

/* The answer's two lines key a working pair of sessions. */
static void sdes_to_session(void **state)
{
    const char *offer[] = {"4 AES_CM_128_HMAC_SHA1_32 inline:" KEY_B64};
    size_t lens[] = {strlen(offer[0])}, n, m, alen;
    struct sdes_crypto theirs, ours, back;
    char answer[SDES_FORMAT_MAX];
    struct srtpsess *us, *them;
    _Alignas(4) uint8_t pkt[64], orig[64];
    size_t len;

    (void)state;
    assert_int_equal(sdes_choose(offer, lens, 1, &theirs, &ours), ERR_OK);
    assert_int_equal(sdes_format(&ours, answer, sizeof(answer), &alen), ERR_OK);
    assert_int_equal(sdes_parse(answer, alen, &back), ERR_OK); /* what the offerer reads */
    assert_int_equal(srtpsess_new(ours.suite, ours.key, theirs.key, &us), ERR_OK);
    assert_int_equal(srtpsess_new(back.suite, theirs.key, back.key, &them), ERR_OK);
    len = rtp_packet(pkt, 9, 3, 30, 0x42);
    memcpy(orig, pkt, len);
    assert_int_equal(srtpsess_protect(us, pkt, len, sizeof(pkt), &n), ERR_OK);
    assert_int_equal(n, len + SRTPSESS_TAG_32);
    assert_int_equal(srtpsess_unprotect(them, pkt, n, &m), ERR_OK);
    assert_memory_equal(pkt, orig, len);
    srtpsess_free(us);
    srtpsess_free(them);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(b2_aes_cm_keystream),
        cmocka_unit_test(b3_key_derivation_in_test),
        cmocka_unit_test(b3_protect_80),
        cmocka_unit_test(b3_protect_32),
        cmocka_unit_test(round_trip),
        cmocka_unit_test(tampering_fails_auth),
        cmocka_unit_test(replay_refused),
        cmocka_unit_test(csrc_and_extension),
        cmocka_unit_test(buffer_too_small),
        cmocka_unit_test(not_rtp),
        cmocka_unit_test(party_ssrc_cap),
        cmocka_unit_test(session_lifecycle),
        cmocka_unit_test(sdes_valid),
        cmocka_unit_test(sdes_refused),
        cmocka_unit_test(sdes_truncated_and_nul),
        cmocka_unit_test(sdes_overlong),
        cmocka_unit_test(sdes_format_round_trip),
        cmocka_unit_test(sdes_generate_is_random),
        cmocka_unit_test(sdes_choose_first_acceptable),
        cmocka_unit_test(sdes_to_session),
    };

    if (rand_setup() != ERR_OK)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
