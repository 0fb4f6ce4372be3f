/* policy: the carrier edge's rules as pure functions (SIP.md sections 1
 * and 3): which source addresses may send SIP (the allowlist), how many new
 * INVITEs one source may send a second (admission), how often a refused
 * source may be logged, how many digest challenges one request may answer,
 * and which user part of an inbound INVITE names the called number.
 *
 * No sockets, no clock reads, no libre, no allocation: addresses are plain
 * bytes and times are passed in, so that every rule is unit-tested and
 * fuzzed on its own. Not thread-safe: each table belongs to one thread (the
 * engine's loop); the allowlist (core/netaddr.h) may be read by many
 * threads once built. */
#ifndef SFVOPI_SIP_POLICY_H
#define SFVOPI_SIP_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/netaddr.h"

/* --- admission: new INVITEs per source (--sip-invite-rate) --- */

/* Sources tracked at once. A full table forgets the source heard from
 * least recently among the few its hash may use: a forgotten source starts
 * again with a full bucket, which errs on admitting. */
#define ADMISSION_SLOTS 1024
#define ADMISSION_PROBES 8

struct admission_slot {
    struct policy_ip ip;
    bool used;
    int64_t last_ms;      /* last refill */
    int64_t milli_tokens; /* tokens * 1000 */
};

struct admission {
    uint32_t rate; /* tokens a second; the bucket holds 2 * rate */
    uint64_t seed; /* hash seed, so that a sender cannot aim at one slot */
    struct admission_slot slots[ADMISSION_SLOTS];
};

/* rate_per_s >= 1. seed: random bits. */
void admission_init(struct admission *a, uint32_t rate_per_s, uint64_t seed);
/* Takes one token for a new INVITE from ip at now_ms: true when admitted. */
bool admission_take(struct admission *a, const struct policy_ip *ip, int64_t now_ms);

/* --- how often a refused source is logged --- */

/* One line per source address per LOGLIMIT_PERIOD_MS, and at most
 * LOGLIMIT_LINES lines per period in all, so that a flood from spoofed
 * addresses cannot fill the log either. */
#define LOGLIMIT_PERIOD_MS 60000
#define LOGLIMIT_LINES 10
#define LOGLIMIT_SLOTS 256
#define LOGLIMIT_PROBES 8

struct loglimit {
    uint64_t seed;
    int64_t period_start;
    unsigned lines;    /* lines logged in this period */
    uint64_t unlogged; /* refusals not logged since the last line */
    struct {
        struct policy_ip ip;
        bool used;
        int64_t logged_ms;
    } slots[LOGLIMIT_SLOTS];
};

void loglimit_init(struct loglimit *l, uint64_t seed);
/* One refusal of ip at now_ms: true when it may be logged; *unlogged is
 * then the number of refusals (of any source) not logged since the last
 * line that was. */
bool loglimit_allow(struct loglimit *l, const struct policy_ip *ip, int64_t now_ms,
                    uint64_t *unlogged);

/* --- digest challenges answered per request --- */

/* Requests whose last challenge is remembered at once. */
#define CHALLENGE_SLOTS 64

struct challenges {
    size_t next; /* the slot to reuse next (oldest first) */
    struct {
        uint64_t key; /* hash of the Call-ID and the CSeq method; 0: free */
        uint32_t cseq;
    } slots[CHALLENGE_SLOTS];
};

void challenges_init(struct challenges *c);
/* A 401 or 407 arrived for the request (call_id, method, cseq). Every
 * authenticated retry of a request is sent with the next CSeq, so a
 * challenge to cseq N after one to cseq N - 1 of the same Call-ID and method
 * is the second for the same request: true then, and the request must end
 * instead of being answered again (SIP.md section 3). A repeat of the same
 * challenge (a retransmission) is false. */
bool challenges_second(struct challenges *c, const char *call_id, size_t call_id_len,
                       const char *method, size_t method_len, uint32_t cseq);

/* --- the called number --- */

/* The user part that names the called number of an inbound INVITE: the
 * To header's user part when the Request-URI user part equals sip_user
 * (registration trunks send the registered user there), else the
 * Request-URI user part. sip_user NULL or "" never matches. Returns one of
 * the two pointers given. */
const char *policy_called_user(const char *ruri_user, const char *to_user, const char *sip_user);

/* --- transports: --sip-listen and the transport a URI asks for --- */

enum policy_tp { POLICY_TP_UDP, POLICY_TP_TCP, POLICY_TP_TLS };

/* Listeners one --sip-listen may name; its longest value. */
#define LISTEN_MAX 8
#define LISTEN_TEXT_MAX 1024
/* "[ffff:...:ffff]:65535", NUL. */
#define LISTEN_HOSTPORT_MAX 56

struct listen_spec {
    enum policy_tp tp;
    char hostport[LISTEN_HOSTPORT_MAX]; /* "IP:PORT", IPv6 in brackets */
};

struct listen_list {
    size_t n;
    struct listen_spec v[LISTEN_MAX];
};

/* Parses a comma-separated list of [udp:|tcp:|tls:]IP:PORT (udp when no
 * scheme; IPv6 in brackets; port 1-65535; spaces around items ignored).
 * A listener named twice (same transport and address) is refused. On
 * ERR_INVALID why holds a one-line reason naming the bad item and *out is
 * untouched. */
enum err listen_list_parse(const char *s, struct listen_list *out, char *why,
                           size_t whysz) WARN_UNUSED;
/* True when the list has a listener of transport tp. */
bool listen_list_has(const struct listen_list *l, enum policy_tp tp);
/* "udp", "tcp" or "tls". */
const char *policy_tp_name(enum policy_tp tp);

/* The transport a configuration URI (trunk, registrar, proxy) asks for:
 * TLS for sips:, else its transport parameter (udp, tcp or tls, any case),
 * else UDP. ERR_INVALID for another scheme or transport. Reads only the
 * scheme and the URI parameters; the caller checks the rest. */
enum err policy_uri_transport(const char *uri, enum policy_tp *out) WARN_UNUSED;

#endif
