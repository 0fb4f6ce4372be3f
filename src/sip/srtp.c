/* srtp: SDES a=crypto lines and SRTP sessions over libsrtp2. The only file
 * that includes <srtp2/srtp.h>; no logging (keys must never reach a log),
 * no sockets. See srtp.h for why nothing here is named srtp_*. */
#include "sip/srtp.h"

#include <assert.h>
#include <pthread.h>
#include <sodium.h>
#include <srtp2/srtp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rand.h"

#define RTP_HEADER_LEN 12
#define RTP_VERSION 2
/* Replay window in packets (RFC 3711 3.3.2 asks at least 64). */
#define REPLAY_WINDOW 128
/* Digits in a lifetime: 20 reach past 2^64, longer is junk. */
#define LIFETIME_DIGITS_MAX 20
/* Digits in an MKI value (RFC 4568 allows any number; anything past a
 * 128-byte MKI's decimal width is junk) and in its length (1*3DIGIT). */
#define MKI_VALUE_DIGITS_MAX 309
#define MKI_LEN_DIGITS_MAX 3
#define MKI_LEN_MAX 128

struct srtpsess {
    srtp_t tx; /* ssrc_any_outbound, our key */
    srtp_t rx; /* ssrc_any_inbound, the party's key */
    size_t tag_len;
    uint32_t rx_ssrc[SRTPSESS_SSRC_MAX]; /* network order, as libsrtp2 keeps them */
    size_t n_rx_ssrc;
};

static const struct {
    enum sdes_suite suite;
    const char *name;
    size_t tag_len;
} suites[] = {
    {SDES_AES_CM_128_HMAC_SHA1_80, "AES_CM_128_HMAC_SHA1_80", SRTPSESS_TAG_80},
    {SDES_AES_CM_128_HMAC_SHA1_32, "AES_CM_128_HMAC_SHA1_32", SRTPSESS_TAG_32},
};

static const char *suite_name(enum sdes_suite suite, size_t *tag_len)
{
    for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
        if (suites[i].suite == suite) {
            if (tag_len)
                *tag_len = suites[i].tag_len;
            return suites[i].name;
        }
    }
    return NULL;
}

/* ---- the a=crypto attribute (RFC 4568 9.2) ---- */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A cursor over s[0..len): every read checks the bound. */
struct cur {
    const char *s;
    size_t len, i;
};

static bool cur_end(const struct cur *c)
{
    return c->i >= c->len;
}

static char cur_peek(const struct cur *c)
{
    return cur_end(c) ? '\0' : c->s[c->i];
}

/* Skips blanks; returns how many. */
static size_t cur_blanks(struct cur *c)
{
    size_t start = c->i;

    while (!cur_end(c) && is_blank(c->s[c->i]))
        c->i++;
    return c->i - start;
}

/* Skips a run of digits (at most max); returns how many, 0 when there are
 * none or more than max (the cursor then stops where it failed). The value
 * goes to *v, saturated at UINT64_MAX. */
static size_t cur_digits(struct cur *c, size_t max, uint64_t *v)
{
    size_t k = 0;
    uint64_t acc = 0;

    while (!cur_end(c) && is_digit(c->s[c->i])) {
        if (++k > max)
            return 0;
        if (__builtin_mul_overflow(acc, 10, &acc) ||
            __builtin_add_overflow(acc, (uint64_t)(c->s[c->i] - '0'), &acc))
            acc = UINT64_MAX;
        c->i++;
    }
    if (v)
        *v = acc;
    return k;
}

/* The end of the token starting at c->i: the first blank, or stop, or len. */
static size_t token_end(const struct cur *c, const char *stops)
{
    size_t j = c->i;

    while (j < c->len && !is_blank(c->s[j]) && !strchr(stops, c->s[j]))
        j++;
    return j;
}

static bool token_is(const struct cur *c, size_t end, const char *word)
{
    size_t n = strlen(word);

    return end - c->i == n && memcmp(c->s + c->i, word, n) == 0;
}

/* One "|" field after the key: a lifetime ("2^N" or decimal) or an MKI
 * ("VALUE:LEN"). *is_mki tells which; *refuse is set for a lifetime under
 * SDES_LIFETIME_MIN. The cursor is left after the field. */
static enum err parse_key_field(struct cur *c, bool *is_mki, bool *refuse)
{
    size_t end = token_end(c, "|;");
    uint64_t v, n;

    *is_mki = memchr(c->s + c->i, ':', end - c->i) != NULL;
    if (*is_mki) {
        if (!cur_digits(c, MKI_VALUE_DIGITS_MAX, NULL) || cur_peek(c) != ':')
            return ERR_INVALID;
        c->i++;
        if (!cur_digits(c, MKI_LEN_DIGITS_MAX, &n) || n < 1 || n > MKI_LEN_MAX)
            return ERR_INVALID;
    } else if (end - c->i >= 2 && c->s[c->i] == '2' && c->s[c->i + 1] == '^') {
        c->i += 2;
        /* 2^N for N up to 64; 2^24 and more is long enough. */
        if (!cur_digits(c, 2, &n) || n > 64)
            return ERR_INVALID;
        if (n < 64 && ((uint64_t)1 << n) < SDES_LIFETIME_MIN)
            *refuse = true;
    } else {
        if (!cur_digits(c, LIFETIME_DIGITS_MAX, &v))
            return ERR_INVALID;
        if (v < SDES_LIFETIME_MIN)
            *refuse = true;
    }
    return c->i == end ? ERR_OK : ERR_INVALID;
}

/* Session parameters after the key parameters: only WSH=N (a window size
 * hint, RFC 4568 6.8) is harmless to ignore; anything else changes what
 * is protected, or how, and makes the line unacceptable. */
static enum err parse_session_params(struct cur *c, bool *refuse)
{
    while (!cur_end(c)) {
        size_t end = token_end(c, "");

        if (end - c->i >= 4 && memcmp(c->s + c->i, "WSH=", 4) == 0) {
            c->i += 4;
            if (!cur_digits(c, LIFETIME_DIGITS_MAX, NULL) || c->i != end)
                return ERR_INVALID;
        } else {
            *refuse = true;
            c->i = end;
        }
        cur_blanks(c);
    }
    return ERR_OK;
}

enum err sdes_parse(const char *s, size_t len, struct sdes_crypto *out)
{
    struct cur c = {s, len, 0};
    struct sdes_crypto r;
    enum err e = ERR_INVALID;
    bool refuse = false, is_mki, had_lifetime = false, had_mki = false;
    size_t end, i, bin_len;
    uint64_t tag;

    assert(s || len == 0);
    assert(out);
    if (len > SDES_ATTR_MAX)
        return ERR_TOO_LARGE;
    if (len > 0 && memchr(s, '\0', len))
        return ERR_INVALID;
    memset(&r, 0, sizeof(r));
    /* Blanks at both ends, and the line's CR LF if the caller left it. */
    while (c.len > 0 && (is_blank(s[c.len - 1]) || s[c.len - 1] == '\r' || s[c.len - 1] == '\n'))
        c.len--;
    cur_blanks(&c);

    if (!cur_digits(&c, 9, &tag) || cur_blanks(&c) == 0)
        goto out;
    r.tag = (uint32_t)tag;

    end = token_end(&c, "");
    if (end == c.i)
        goto out;
    for (i = c.i; i < end; i++) {
        if (!(is_digit(s[i]) || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              s[i] == '_'))
            goto out;
    }
    r.suite = 0;
    for (i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
        if (token_is(&c, end, suites[i].name))
            r.suite = suites[i].suite;
    }
    c.i = end;
    if (cur_blanks(&c) == 0 || cur_end(&c))
        goto out;
    /* Another suite's key has another length: say no before judging it. */
    if (r.suite == 0) {
        e = ERR_NOT_ALLOWED;
        goto out;
    }
    if (c.len - c.i < 7 || memcmp(s + c.i, "inline:", 7) != 0) {
        /* A key method other than inline is not ours either; a key
         * parameter with no method at all is malformed. */
        e = memchr(s + c.i, ':', token_end(&c, "") - c.i) ? ERR_NOT_ALLOWED : ERR_INVALID;
        goto out;
    }
    c.i += 7;
    end = token_end(&c, "|;");
    if (end - c.i != SDES_KEY_B64_LEN ||
        sodium_base642bin(r.key, sizeof(r.key), s + c.i, SDES_KEY_B64_LEN, NULL, &bin_len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        bin_len != SDES_KEY_LEN)
        goto out;
    c.i = end;
    while (cur_peek(&c) == '|') {
        c.i++;
        if (parse_key_field(&c, &is_mki, &refuse) != ERR_OK)
            goto out;
        /* At most a lifetime, then at most an MKI, in that order. */
        if (had_mki || (!is_mki && had_lifetime))
            goto out;
        had_lifetime |= !is_mki;
        had_mki |= is_mki;
    }
    if (had_mki)
        refuse = true;
    if (cur_peek(&c) == ';') {
        /* Several keys (each needs an MKI to be told apart). */
        e = ERR_NOT_ALLOWED;
        goto out;
    }
    if (!cur_end(&c) && cur_blanks(&c) == 0)
        goto out;
    if (parse_session_params(&c, &refuse) != ERR_OK)
        goto out;
    if (refuse) {
        e = ERR_NOT_ALLOWED;
        goto out;
    }
    *out = r;
    e = ERR_OK;
out:
    sodium_memzero(&r, sizeof(r));
    return e;
}

enum err sdes_format(const struct sdes_crypto *c, char *out, size_t cap, size_t *n)
{
    char b64[SDES_KEY_B64_LEN + 1];
    const char *name;
    enum err e = ERR_INVALID;
    int k;

    assert(c && n && (out || cap == 0));
    if (cap > 0)
        out[0] = '\0';
    name = suite_name(c->suite, NULL);
    if (!name || c->tag > SDES_TAG_MAX)
        return ERR_INVALID;
    sodium_bin2base64(b64, sizeof(b64), c->key, sizeof(c->key), sodium_base64_VARIANT_ORIGINAL);
    k = snprintf(out, cap, "%u %s inline:%s", (unsigned)c->tag, name, b64);
    if (k < 0 || (size_t)k >= cap) {
        if (cap > 0)
            sodium_memzero(out, cap);
        e = ERR_TOO_LARGE;
        goto out_b64;
    }
    *n = (size_t)k;
    e = ERR_OK;
out_b64:
    sodium_memzero(b64, sizeof(b64));
    return e;
}

void sdes_generate(struct sdes_crypto *c, uint32_t tag, enum sdes_suite suite)
{
    assert(c);
    c->tag = tag;
    c->suite = suite;
    rand_fill(c->key, sizeof(c->key));
}

enum err sdes_choose(const char *const *vals, const size_t *lens, size_t n,
                     struct sdes_crypto *theirs, struct sdes_crypto *ours)
{
    assert(vals || n == 0);
    assert(lens || n == 0);
    assert(theirs && ours);
    for (size_t i = 0; i < n; i++) {
        if (!vals[i] || sdes_parse(vals[i], lens[i], theirs) != ERR_OK)
            continue;
        sdes_generate(ours, theirs->tag, theirs->suite);
        return ERR_OK;
    }
    return ERR_NOT_FOUND;
}

/* ---- sessions ---- */

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static enum err lib_status = ERR_INTERNAL;

static void lib_start(void)
{
    lib_status = srtp_init() == srtp_err_status_ok ? ERR_OK : ERR_INTERNAL;
}

enum err srtpsess_init(void)
{
    if (pthread_once(&lib_once, lib_start) != 0)
        return ERR_INTERNAL;
    return lib_status;
}

/* One libsrtp2 context for every SSRC in one direction. */
static enum err ctx_new(enum sdes_suite suite, const uint8_t *key, srtp_ssrc_type_t dir,
                        srtp_t *out)
{
    srtp_policy_t p;
    unsigned char k[SDES_KEY_LEN];
    srtp_err_status_t st;

    memset(&p, 0, sizeof(p));
    if (suite == SDES_AES_CM_128_HMAC_SHA1_32)
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&p.rtp);
    else
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p.rtp);
    /* RFC 4568 6.2.2: SRTCP keeps the 80-bit tag under either suite. */
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p.rtcp);
    p.ssrc.type = dir;
    memcpy(k, key, sizeof(k));
    p.key = k;
    p.window_size = REPLAY_WINDOW;
    p.allow_repeat_tx = 0;
    st = srtp_create(out, &p);
    sodium_memzero(k, sizeof(k));
    if (st == srtp_err_status_alloc_fail)
        return ERR_NOMEM;
    return st == srtp_err_status_ok ? ERR_OK : ERR_INTERNAL;
}

enum err srtpsess_new(enum sdes_suite suite, const uint8_t *tx_key, const uint8_t *rx_key,
                      struct srtpsess **out)
{
    struct srtpsess *s;
    enum err e;
    size_t tag_len;

    assert(tx_key && rx_key && out);
    if (!suite_name(suite, &tag_len))
        return ERR_INVALID;
    e = srtpsess_init();
    if (e != ERR_OK)
        return e;
    s = calloc(1, sizeof(*s));
    if (!s)
        return ERR_NOMEM;
    s->tag_len = tag_len;
    e = ctx_new(suite, tx_key, ssrc_any_outbound, &s->tx);
    if (e != ERR_OK)
        goto out_free;
    e = ctx_new(suite, rx_key, ssrc_any_inbound, &s->rx);
    if (e != ERR_OK)
        goto out_tx;
    *out = s;
    return ERR_OK;
out_tx:
    (void)srtp_dealloc(s->tx);
out_free:
    free(s);
    return e;
}

void srtpsess_free(struct srtpsess *s)
{
    if (!s)
        return;
    /* libsrtp2 wipes the derived session keys as it frees its ciphers;
     * the master key was never kept. */
    (void)srtp_dealloc(s->tx);
    (void)srtp_dealloc(s->rx);
    sodium_memzero(s, sizeof(*s));
    free(s);
}

size_t srtpsess_tag_len(const struct srtpsess *s)
{
    assert(s);
    return s->tag_len;
}

/* Whether p[0..len) starts with a whole RTP header (RFC 3550 5.1): version
 * 2, its CSRCs and any header extension within len. libsrtp2 checks the
 * same, but not the version, and we would rather not depend on it. */
static bool rtp_header_ok(const uint8_t *p, size_t len)
{
    size_t h;

    if (len < RTP_HEADER_LEN || p[0] >> 6 != RTP_VERSION)
        return false;
    h = RTP_HEADER_LEN + 4 * (size_t)(p[0] & 0x0F);
    if (p[0] & 0x10) {
        if (h + 4 > len)
            return false;
        h += 4 + 4 * (((size_t)p[h + 2] << 8) | p[h + 3]);
    }
    return h <= len;
}

enum err srtpsess_protect(struct srtpsess *s, uint8_t *pkt, size_t len, size_t cap, size_t *n)
{
    srtp_err_status_t st;
    size_t total;
    int l;

    assert(s && pkt && n);
    assert(((uintptr_t)pkt & 3) == 0);
    if (__builtin_add_overflow(len, s->tag_len, &total) || total > cap ||
        total > SRTPSESS_PACKET_MAX)
        return ERR_TOO_LARGE;
    if (!rtp_header_ok(pkt, len))
        return ERR_INVALID;
    l = (int)len;
    st = srtp_protect(s->tx, pkt, &l);
    switch (st) {
    case srtp_err_status_ok: break;
    case srtp_err_status_replay_fail:
    case srtp_err_status_replay_old: return ERR_CONFLICT;
    case srtp_err_status_bad_param: return ERR_INVALID;
    default: return ERR_INTERNAL;
    }
    /* libsrtp2 writes the tag and nothing else after the packet. */
    assert(l >= 0 && (size_t)l == total);
    *n = (size_t)l;
    return ERR_OK;
}

enum err srtpsess_unprotect(struct srtpsess *s, uint8_t *pkt, size_t len, size_t *n)
{
    srtp_err_status_t st;
    uint32_t ssrc;
    size_t i;
    int l;

    assert(s && pkt && n);
    assert(((uintptr_t)pkt & 3) == 0);
    if (len > SRTPSESS_PACKET_MAX)
        return ERR_TOO_LARGE;
    if (len < RTP_HEADER_LEN + s->tag_len || !rtp_header_ok(pkt, len - s->tag_len))
        return ERR_INVALID;
    memcpy(&ssrc, pkt + 8, sizeof(ssrc));
    for (i = 0; i < s->n_rx_ssrc && s->rx_ssrc[i] != ssrc; i++)
        ;
    l = (int)len;
    st = srtp_unprotect(s->rx, pkt, &l);
    /* libsrtp2 keeps a stream for each SSRC once one of its packets
     * authenticates; past the cap, drop the one just made. Evicting an
     * older one instead would reopen its replay window. */
    if (st == srtp_err_status_ok && i == s->n_rx_ssrc) {
        if (s->n_rx_ssrc == SRTPSESS_SSRC_MAX) {
            (void)srtp_remove_stream(s->rx, ssrc);
            return ERR_TOO_LARGE;
        }
        s->rx_ssrc[s->n_rx_ssrc++] = ssrc;
    }
    switch (st) {
    case srtp_err_status_ok: break;
    case srtp_err_status_auth_fail: return ERR_UNAUTHENTICATED;
    case srtp_err_status_replay_fail:
    case srtp_err_status_replay_old: return ERR_CONFLICT;
    case srtp_err_status_bad_param:
    case srtp_err_status_parse_err: return ERR_INVALID;
    default: return ERR_INTERNAL;
    }
    if (l < 0 || (size_t)l > len)
        return ERR_INTERNAL;
    *n = (size_t)l;
    return ERR_OK;
}
