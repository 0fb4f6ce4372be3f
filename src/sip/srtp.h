/* srtp: SRTP (RFC 3711) for media keyed by SDES (RFC 4568): the a=crypto
 * attribute's parser and formatter, and a per-call session that protects
 * the RTP we send and unprotects the RTP we receive, over libsrtp2.
 * srtp.c is the ONLY file that includes <srtp2/srtp.h>. It never logs and
 * never touches sockets, SDP or SIP: the SIP layer calls it from the RTP
 * socket's send/receive hooks.
 *
 * Names: `sdes_*` for the attribute, `srtpsess_*` for the session. Never
 * `srtp_*`: both libsrtp2 (srtp_init, srtp_create, srtp_protect...) and
 * libre (srtp_alloc, srtp_encrypt, srtp_decrypt..., plus `struct srtp` and
 * `enum srtp_suite` in <re/re_srtp.h>) own that prefix, and the SIP layer
 * includes libre's headers next to this one.
 *
 * Suites: AES_CM_128_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_32 (RFC 4568
 * 6.2), whose master key is 16 bytes of key and 14 of salt. RTP only: we
 * send no RTCP. Thread-safety: the sdes_* functions are pure and
 * thread-safe; srtpsess_init is thread-safe; one session belongs to one
 * thread at a time, and distinct sessions may be used on distinct threads
 * at once. */
#ifndef SFVOPI_SIP_SRTP_H
#define SFVOPI_SIP_SRTP_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* Bytes of one a=crypto value (after "a=crypto:") that sdes_parse reads.
 * An acceptable line is under 120 bytes (9-digit tag, the longest suite
 * name, 40 characters of key, a lifetime, a WSH parameter); the rest is
 * slack for blanks. */
#define SDES_ATTR_MAX 256
/* The master key and master salt, concatenated as in the inline: key. */
#define SDES_KEY_LEN 30
/* The key in base64 (30 bytes, so no padding). */
#define SDES_KEY_B64_LEN 40
/* Largest tag (RFC 4568 9.2: 1*9DIGIT). */
#define SDES_TAG_MAX 999999999u
/* Shortest key lifetime we accept, in packets. We never rekey within a
 * call, so the key must outlive the longest call: CALLSM_TIME_LIMIT_MAX
 * (86400 s) at 10 ms packets is 8.64 million, under 2^24. Offers of
 * |2^20 (a little under 6 hours at 20 ms) are refused. A longer lifetime is
 * ignored: libsrtp2 enforces its own 2^48. */
#define SDES_LIFETIME_MIN ((uint64_t)1 << 24)
/* Room for sdes_format's output and its NUL: tag, blank, suite, blank,
 * "inline:", key. */
#define SDES_FORMAT_MAX (9 + 1 + 23 + 1 + 7 + SDES_KEY_B64_LEN + 1)

/* Bytes protect appends to an RTP packet: the authentication tag. */
#define SRTPSESS_TAG_80 10
#define SRTPSESS_TAG_32 4
/* Largest RTP packet (with its tag) protect and unprotect take: a UDP
 * datagram's payload over IPv4. */
#define SRTPSESS_PACKET_MAX 65507
/* SSRCs the party may use in one call. libsrtp2 keeps state (the replay
 * window, the rollover counter) for each SSRC whose packets authenticate;
 * a party normally uses one, and a new one after a re-INVITE or a
 * transfer. The cap keeps a party that churns SSRCs from growing our
 * memory. */
#define SRTPSESS_SSRC_MAX 16

enum sdes_suite {
    SDES_AES_CM_128_HMAC_SHA1_80 = 1,
    SDES_AES_CM_128_HMAC_SHA1_32,
};

/* One parsed a=crypto line. The key is secret: wipe it (explicit_bzero)
 * when done, never log it. */
struct sdes_crypto {
    uint32_t tag; /* 0 .. SDES_TAG_MAX */
    enum sdes_suite suite;
    uint8_t key[SDES_KEY_LEN]; /* master key (16) then master salt (14) */
};

/* Parses one a=crypto value, s[0..len) (no NUL needed; a NUL inside is
 * malformed): "TAG SUITE inline:KEY[|LIFETIME][|MKI:LEN] [PARAMS]",
 * fields separated by spaces or tabs, blanks (and a CR LF) allowed at both
 * ends. Reads nothing past len and allocates nothing; *out is written only
 * on success. Errors:
 * - ERR_TOO_LARGE: len > SDES_ATTR_MAX.
 * - ERR_INVALID: malformed (RFC 4568 9.2): a tag that is not 1 to 9
 *   digits, a key that is not 40 characters of base64 (30 bytes), a bad
 *   lifetime ("2^N" with N <= 64, or up to 20 digits), a bad MKI, trailing
 *   junk in the key parameter.
 * - ERR_NOT_ALLOWED: well-formed but not acceptable to us (answer another
 *   line, or 488): an unknown suite, an MKI, several keys, a lifetime
 *   under SDES_LIFETIME_MIN, any session parameter other than WSH=N (a
 *   replay window hint, which we may ignore: ours is 128). */
enum err sdes_parse(const char *s, size_t len, struct sdes_crypto *out) WARN_UNUSED;

/* Writes "TAG SUITE inline:KEY" and a NUL into out[0..cap), the length
 * without the NUL to *n. ERR_TOO_LARGE when cap is too small
 * (SDES_FORMAT_MAX always suffices), ERR_INVALID for a tag over
 * SDES_TAG_MAX or an unknown suite; out is then an empty string if cap >
 * 0. The caller wipes out once it is sent: it holds the key. */
enum err sdes_format(const struct sdes_crypto *c, char *out, size_t cap, size_t *n) WARN_UNUSED;

/* A fresh crypto line of ours: tag and suite as given, a key of 30 bytes
 * from the CSPRNG (rand_fill; rand_setup must have succeeded). */
void sdes_generate(struct sdes_crypto *c, uint32_t tag, enum sdes_suite suite);

/* The answer to an offer's a=crypto values, vals[i][0..lens[i]) for i <
 * n: the first acceptable one in the offerer's order (lines that are
 * malformed, over the cap or not acceptable are skipped) goes to *theirs,
 * and *ours gets the same tag and suite with a fresh key (sdes_generate).
 * ERR_NOT_FOUND when no line is acceptable (answer 488); neither output is
 * then written. */
enum err sdes_choose(const char *const *vals, const size_t *lens, size_t n,
                     struct sdes_crypto *theirs, struct sdes_crypto *ours) WARN_UNUSED;

/* One call's SRTP: a sending context keyed by our master key and a
 * receiving context keyed by the party's. Opaque; owned by the caller. */
struct srtpsess;

/* Initialises libsrtp2 (srtp_init, which also self-tests its ciphers) once
 * per process; later calls return the first call's result. Call it at
 * start so a broken library fails there, not on the first call;
 * srtpsess_new calls it too. ERR_INTERNAL if libsrtp2 fails to start.
 * Thread-safe (pthread_once). */
enum err srtpsess_init(void) WARN_UNUSED;

/* A session in suite for any SSRC: packets we protect are keyed by
 * tx_key (the key we offered or answered), packets we unprotect by rx_key
 * (the party's), each SDES_KEY_LEN bytes (master key then salt). Copies
 * the keys; the caller may wipe its own copies afterwards. The replay
 * window is 128 packets. Each SSRC we send from costs a small stream
 * state until srtpsess_free: send from one (or a few) per call.
 * ERR_INVALID for an unknown suite, ERR_NOMEM, ERR_INTERNAL when libsrtp2
 * refuses. *out is set only on success. */
enum err srtpsess_new(enum sdes_suite suite, const uint8_t *tx_key, const uint8_t *rx_key,
                      struct srtpsess **out) WARN_UNUSED;

/* Frees s and wipes the key material it holds. NULL is allowed. */
void srtpsess_free(struct srtpsess *s);

/* Bytes protect appends: SRTPSESS_TAG_80 or SRTPSESS_TAG_32. */
size_t srtpsess_tag_len(const struct srtpsess *s);

/* Turns the RTP packet pkt[0..len) into SRTP in place: encrypts the
 * payload and appends the tag, so *n = len + srtpsess_tag_len(s). pkt
 * holds cap bytes and must be 4-byte aligned. Nothing is written past
 * pkt[len + tag). Errors (the packet is then not to be sent, and its
 * bytes in [0, len) may be encrypted already only for ERR_INTERNAL):
 * - ERR_TOO_LARGE: cap < len + tag, or len + tag > SRTPSESS_PACKET_MAX;
 *   pkt is untouched.
 * - ERR_INVALID: not an RTP packet (under 12 bytes, version not 2, CSRCs
 *   or header extension past len); pkt is untouched.
 * - ERR_CONFLICT: this SSRC and sequence number were sent before (a
 *   second encryption under the same index would leak plaintext); pkt is
 *   untouched.
 * - ERR_INTERNAL: libsrtp2 failed otherwise (key expired after 2^48
 *   packets, allocation for a new SSRC). */
enum err srtpsess_protect(struct srtpsess *s, uint8_t *pkt, size_t len, size_t cap,
                          size_t *n) WARN_UNUSED;

/* Turns the SRTP packet pkt[0..len) (4-byte aligned) back into RTP in
 * place: checks the replay window, then the tag, then decrypts; *n is the
 * RTP length (len minus the tag). On error pkt's contents are unspecified
 * (never read past len) and the packet is to be dropped. Errors, each a
 * distinct counter for the caller:
 * - ERR_TOO_LARGE: len > SRTPSESS_PACKET_MAX, or an authentic packet from
 *   a new SSRC when SRTPSESS_SSRC_MAX are known already.
 * - ERR_INVALID: too short for an RTP header plus the tag, version not 2,
 *   CSRCs or header extension past the payload.
 * - ERR_UNAUTHENTICATED: the tag does not match (forged, corrupted, or
 *   keyed differently).
 * - ERR_CONFLICT: a replay, or a packet older than the replay window
 *   (reported as such whatever its tag).
 * - ERR_INTERNAL: libsrtp2 failed otherwise. */
enum err srtpsess_unprotect(struct srtpsess *s, uint8_t *pkt, size_t len, size_t *n) WARN_UNUSED;

#endif
