/* sip: the carrier side of the call engine on libre. The event loop
 * (file descriptors, timers, a queue from other threads), a SIP endpoint
 * on UDP, and call legs: one SIP session plus its RTP socket each. The
 * only module that includes libre's headers; the engine above sees plain
 * C types and callbacks.
 *
 * Thread-safety: everything here runs on the loop's thread, except
 * sip_queue_push, which any thread may call. Callbacks are never made from
 * inside the function that caused them, except where stated. */
#ifndef SFVOPI_SIP_SIP_H
#define SFVOPI_SIP_SIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/xheaders.h"
#include "sip/policy.h"

/* A SIP user part as we keep it (UTF-8, cut to fit), plus NUL. */
#define SIP_USER_MAX 65

/* --- the loop --- */

/* Prepares the calling thread to run the loop: libre's state, a descriptor
 * table as large as the process's descriptor limit. */
enum err sip_loop_init(void) WARN_UNUSED;
/* Runs the loop until sip_loop_stop; returns on the same thread. */
void sip_loop_run(void);
/* Makes sip_loop_run return once the current callback is done. Loop thread. */
void sip_loop_stop(void);
/* Frees libre's state; after every object of this module is freed. */
void sip_loop_close(void);

typedef void (*sip_fd_cb)(void *arg, int fd, bool readable, bool writable);
/* Watches fd for reading and/or writing; with both false, stops watching
 * it. One watcher per fd: a new call replaces the previous one. */
enum err sip_fd_watch(int fd, bool want_read, bool want_write, sip_fd_cb cb, void *arg) WARN_UNUSED;

struct sip_timer;
typedef void (*sip_timer_cb)(void *arg);
/* A one-shot timer, not running. NULL on allocation failure. */
struct sip_timer *sip_timer_new(sip_timer_cb cb, void *arg);
/* (Re)starts the timer to fire in ms milliseconds (0: on the next turn). */
void sip_timer_start(struct sip_timer *t, int64_t ms);
void sip_timer_cancel(struct sip_timer *t);
/* Cancels and frees; accepts NULL. */
void sip_timer_free(struct sip_timer *t);

struct sip_queue;
typedef void (*sip_queue_cb)(void *arg, int id, void *data);
/* A queue whose messages are handed to cb on the loop's thread, in order. */
enum err sip_queue_new(sip_queue_cb cb, void *arg, struct sip_queue **out) WARN_UNUSED;
/* Any thread. ERR_NOMEM or ERR_UNAVAILABLE when the message cannot be
 * queued; data then stays the caller's. */
enum err sip_queue_push(struct sip_queue *q, int id, void *data) WARN_UNUSED;
/* Drops unhandled messages (their data is not freed); accepts NULL. */
void sip_queue_free(struct sip_queue *q);

/* --- the endpoint and its legs --- */

struct sip_ep;
struct sip_leg;
/* An inbound INVITE being decided, valid only during the invite callback. */
struct sip_incoming;

/* Longest user name and password accepted for a trunk (--sip-user, the
 * password from the environment or --sip-password-file). */
#define SIP_CRED_MAX 128

/* --srtp: whether media is SRTP keyed by SDES (SIP.md section 3). */
enum sip_srtp {
    SIP_SRTP_OFF,     /* plain RTP; offers with crypto are answered plain */
    SIP_SRTP_OFFER,   /* SRTP when the party takes it, else plain RTP */
    SIP_SRTP_REQUIRE, /* SRTP on TLS or no call: 488 in, FAILED "88" out */
};

struct sip_ep_config {
    /* "[udp:|tcp:|tls:]IP:PORT[,...]" (IPv6 in brackets; listen_list_parse).
     * RTP binds to the first listener's address. */
    const char *listen;
    /* "sip:HOST[:PORT][;transport=udp|tcp|tls]" or "sips:HOST[:PORT]"; NULL:
     * no outbound calls. Without a port the host is resolved as RFC 3263
     * says (NAPTR, SRV, A/AAAA). A TLS trunk needs a tls: listener. */
    const char *trunk;
    /* The tls: listeners' certificate chain and key (PEM files), and the CAs
     * a TLS peer we call is verified against (NULL: the system's). */
    const char *tls_cert, *tls_key, *tls_ca;
    enum sip_srtp srtp;
    /* The public address written into Contact, Via and (unless media_ip)
     * SDP; NULL: the bound address. */
    const char *advertise;
    int rtp_low, rtp_high;
    const char *media_ip; /* SDP address; NULL: the listen address */
    /* Who may send SIP (SIP.md section 1). NULL: every address the trunk,
     * registrar and outbound proxy resolve to, re-resolved every minute. */
    const struct allowlist *allow;
    unsigned invite_rate; /* new INVITEs a second per source; 0: 200 */
    bool rtp_latch;       /* symmetric RTP: send to where the party's RTP comes from */
    /* Trunk credentials: the digest user (also the Contact user), NULL for
     * none, and its password (NULL: empty). The password is copied; the
     * caller may wipe its own copy once sip_ep_new returns. */
    const char *user;
    const char *password;
    bool reg;                   /* keep a registration with the registrar */
    const char *registrar;      /* "sip:HOST[:PORT]"; NULL: the trunk */
    unsigned reg_expires;       /* seconds asked for; 0: 600 */
    const char *from_domain;    /* host of From on outbound INVITEs; NULL: the trunk's */
    bool caller_id_pai;         /* From user = user, the number in P-Asserted-Identity */
    const char *outbound_proxy; /* "sip:HOST[:PORT]", a pre-loaded Route; NULL: none */
    const char *const *headers; /* "Name: value" lines added to outbound INVITEs */
    size_t nheaders;
    const char *dns_server; /* "IP[:PORT][,...]"; NULL: the system's resolvers */
    /* --rtp-timeout: an established call whose party, not on hold, sends
     * no RTP (nor RTCP on the RTP port) for this many seconds is reported
     * closed with cause 102 (the engine's hang-up sends the BYE); 0: never. */
    unsigned rtp_timeout;
};

struct sip_ep_handlers {
    void *arg;
    /* An INVITE outside a dialog arrived. The engine either calls
     * sip_leg_accept on it and returns 0, or returns the SIP status to
     * refuse it with (404, 480, 503...). */
    int (*invite)(void *arg, struct sip_incoming *in);
    /* Outbound: a provisional response (100-199). */
    void (*progress)(void *leg_arg, int code);
    /* Outbound: the callee answered (200 OK, our ACK sent). */
    void (*answered)(void *leg_arg);
    /* Inbound: the caller's ACK for our 200 OK arrived: the call is
     * established. Without it, libre gives up after 64 * T1 (32 s) and the
     * leg is reported closed with timeout true. */
    void (*confirmed)(void *leg_arg);
    /* The leg ended from the other side or the network: a final error
     * response to our INVITE (code 300-699, cause from its Reason header,
     * else 0), the party's BYE or CANCEL (code 0, cause from its Reason
     * header, else 0), or a transaction timeout (timeout true). The engine
     * must still free the leg (sip_leg_hangup). */
    void (*closed)(void *leg_arg, int code, int cause, bool timeout);
    /* An RTP packet arrived on the leg's media port from the party (the
     * address of its SDP, or the latched source with rtp_latch); packets
     * from anywhere else are dropped before this and counted:
     * pt is the payload type, ts the RTP timestamp. Called straight from
     * the socket's handler (not deferred): it must not hang up the leg.
     * May be NULL. */
    void (*rtp)(void *leg_arg, int pt, uint32_t ts, bool marker, const uint8_t *payload,
                size_t len);
    /* A key press the party sent in a SIP INFO request ('0'-'9', '*', '#',
     * 'A'-'D'), once per request (a retransmission is not reported again).
     * May be NULL. */
    void (*dtmf)(void *leg_arg, char digit);
};

/* What a leg's SDP negotiation settled, once it has (inbound: at accept;
 * outbound: at the SDP answer). */
struct sip_media {
    bool ready;
    bool alaw;      /* PCMA, else PCMU */
    int audio_pt;   /* the payload type to send audio with */
    int dtmf_pt[4]; /* payload types read as RFC 4733 telephone events */
    int ndtmf;
    bool dtmf_send;   /* the party's SDP names telephone-event/8000 ... */
    int dtmf_send_pt; /* ... with this payload type: key presses towards it */
    bool srtp;        /* media is SRTP (SDES) */
};

/* Binds the SIP socket, starts resolving the default allowlist and, with
 * reg, registering. ERR_INVALID for a bad address, trunk, registrar, proxy,
 * header or DNS server (logged), ERR_UNAVAILABLE when the socket cannot be
 * bound. */
enum err sip_ep_new(const struct sip_ep_config *cfg, const struct sip_ep_handlers *h,
                    struct sip_ep **out) WARN_UNUSED;
/* Starts the end of the registration (REGISTER with Expires: 0) when one
 * is active. Loop thread. */
void sip_ep_unregister(struct sip_ep *ep);
/* True while a REGISTER of the endpoint's still waits for its final
 * response after sip_ep_unregister: the engine keeps the loop running
 * (within its grace period) so that the binding is removed. */
bool sip_ep_unregistering(const struct sip_ep *ep);
/* The node takes no new calls: OPTIONS is answered 503 from now on (the
 * engine refuses INVITEs itself). Loop thread; accepts NULL. */
void sip_ep_drain(struct sip_ep *ep);
/* Stops listening and frees the endpoint; legs must be hung up first.
 * Accepts NULL. */
void sip_ep_free(struct sip_ep *ep);
/* True when outbound calls can be made (a trunk is configured). */
bool sip_ep_can_dial(const struct sip_ep *ep);

/* The user part naming the called number (policy_called_user: the To
 * user when the Request-URI user is the configured --sip-user, else the
 * Request-URI user) and the From user part, as sent, made UTF-8 text: each
 * byte that is not part of a valid character becomes an escape "%XX", and
 * the text is cut to SIP_USER_MAX - 1 bytes, never inside a character or
 * an escape. */
const char *sip_incoming_to(const struct sip_incoming *in);
const char *sip_incoming_from(const struct sip_incoming *in);
/* The INVITE's headers whose name starts with "X-" (either case), in the
 * order received, names as sent: the first XHEADERS_MAX distinct names
 * (a repeated name, in any case, keeps its first value); a name longer
 * than XHEADER_NAME_MAX bytes or with other than RFC 3261 token characters
 * is skipped. Values are made UTF-8 text as the user parts above and cut
 * to XHEADER_VALUE_MAX bytes, never inside a character or an escape.
 * Valid as long as in. */
const struct xheaders *sip_incoming_xheaders(const struct sip_incoming *in);

/* Inside the invite callback: takes the INVITE. Sends 180 Ringing, then,
 * when answer_now, at once 200 OK with the SDP answer (PCMA or PCMU as the
 * offer prefers, plus telephone-event); otherwise the leg rings until
 * sip_leg_answer, and a CANCEL in that time is reported through closed.
 * ERR_INVALID when the offer has no codec we speak (the INVITE is then
 * refused with 488 by the endpoint after the callback returns a status),
 * ERR_UNAVAILABLE when no media port is free. */
enum err sip_leg_accept(struct sip_ep *ep, struct sip_incoming *in, void *leg_arg, bool answer_now,
                        struct sip_leg **out) WARN_UNUSED;
/* Inside the invite callback: keeps the INVITE for a decision made later
 * on the loop (a routing look-up on another thread). Answers 100 Trying;
 * retransmissions are absorbed, and a CANCEL meanwhile is answered (200,
 * then 487 to the INVITE) at once. The callback then returns 0. */
struct sip_held;
enum err sip_incoming_hold(struct sip_ep *ep, struct sip_incoming *in,
                           struct sip_held **out) WARN_UNUSED;
/* The held INVITE, for sip_incoming_to/from and sip_leg_accept; NULL once
 * the caller has cancelled it. Loop thread. */
struct sip_incoming *sip_held_incoming(struct sip_held *h);
/* Ends the hold: unless the INVITE was accepted or cancelled, refuses it
 * with code as the invite callback's return would (488 when its offer
 * had no codec), with "Retry-After: retry_after_s" when not 0. Frees h;
 * accepts NULL. Loop thread. */
void sip_held_finish(struct sip_held *h, int code, unsigned retry_after_s);

/* Answers a ringing inbound leg: 200 OK with the SDP answer. ERR_CONFLICT
 * when it is not a ringing inbound leg, ERR_INTERNAL when the answer could
 * not be sent. */
enum err sip_leg_answer(struct sip_leg *leg) WARN_UNUSED;
/* Sends an INVITE to the trunk for to_user, from from_user, offering PCMA,
 * PCMU and telephone-event, with the --sip-header lines and then xh's
 * headers (NULL for none; the caller has checked them with
 * xheader_name_valid and xheader_value_valid). ERR_UNAVAILABLE without a
 * trunk or a free media port. */
enum err sip_leg_dial(struct sip_ep *ep, const char *from_user, const char *to_user,
                      const struct xheaders *xh, void *leg_arg, struct sip_leg **out) WARN_UNUSED;
/* Ends and frees the leg: BYE when established, CANCEL when our INVITE is
 * unanswered, 487 when an inbound INVITE is unanswered, nothing when it
 * has already ended. No callback for it afterwards. Accepts NULL. */
void sip_leg_hangup(struct sip_leg *leg);

/* The identifiers of an established dialog: enough for another process to
 * end it with a BYE (SIP.md section 5). URIs as on the wire, without angle
 * brackets; route_set is a Route header's value ("<uri>, <uri>"), "" for
 * none; next_cseq the CSeq number of our next request in the dialog. */
struct sip_dialog_ids {
    char call_id[256];
    char local_uri[512], local_tag[128];
    char remote_uri[512], remote_tag[128];
    char remote_target[512];
    char route_set[1024];
    uint32_t next_cseq;
};
/* Fills out once the leg is established (inbound: the caller's ACK came;
 * outbound: answered). False before that, or when an identifier did not fit
 * or holds a byte that is not printable ASCII. */
bool sip_leg_dialog_ids(const struct sip_leg *leg, struct sip_dialog_ids *out);
/* Sends a BYE in a dialog this endpoint holds no leg for (a call of a node
 * that died), with a Reason header of Q.850 cause, to the first Route of
 * ids->route_set (loose routing) or else to ids->remote_target. Fire and
 * forget: the answer is only logged. ERR_INVALID when the identifiers do
 * not make a request (logged). */
enum err sip_ep_bye(struct sip_ep *ep, const struct sip_dialog_ids *ids, int cause) WARN_UNUSED;

/* The leg's negotiated media; ready false before the SDP answer. It may
 * change during the call: a re-INVITE or UPDATE of the party's can switch
 * the codec (PCMA, PCMU) or the payload types. The bridge reads it again
 * for each packet. */
void sip_leg_media(const struct sip_leg *leg, struct sip_media *out);

/* The receive statistics of the party's RTP on this leg (RFC 3550): the
 * packets accepted from the party (after the source check and SRTP
 * authentication; dropped ones do not count), packets lost by their
 * sequence numbers (never negative), and the interarrival jitter of its
 * audio in microseconds (has_jitter: two audio packets have arrived). */
struct sip_rtp_stats {
    uint64_t received;
    uint64_t lost;
    int64_t jitter_us;
    bool has_jitter;
};
void sip_leg_rtp_stats(const struct sip_leg *leg, struct sip_rtp_stats *out);

/* Sends one audio packet of the negotiated codec to the address and port
 * of the party's SDP; the RTP timestamp advances by len samples (G.711:
 * one byte a sample). While the party holds the call (a=sendonly,
 * a=inactive, c=0.0.0.0) nothing is sent and ERR_OK returned.
 * ERR_UNAVAILABLE before the SDP answer. */
enum err sip_leg_send_audio(struct sip_leg *leg, const uint8_t *payload, size_t len) WARN_UNUSED;

/* Sends one RFC 4733 telephone-event packet of a key press (event 0-15)
 * to the party, in the media's time line: start begins a new event at the
 * current media time (marker bit set; every packet of the event carries
 * that RTP timestamp), duration is its length so far in samples, end sets
 * the E bit. The media clock then moves on by advance samples, as if that
 * much audio had been sent. Held calls: as sip_leg_send_audio.
 * ERR_UNAVAILABLE before the SDP answer or when the party named no
 * telephone-event/8000 (media.dtmf_send false). */
enum err sip_leg_send_event(struct sip_leg *leg, uint8_t event, bool start, bool end,
                            uint16_t duration, uint32_t advance) WARN_UNUSED;

/* Counters of the carrier edge since the process started (SIP.md section
 * 6). Any thread. */
struct sip_stats {
    uint64_t denied;             /* datagrams and requests from sources not allowed */
    uint64_t rtp_dropped_source; /* RTP packets not from the party */
    uint64_t srtp_dropped;       /* SRTP packets that did not authenticate (or malformed) */
    uint64_t srtp_replayed;      /* SRTP packets received before (replays) */
    bool registered;             /* a registration binding is active */
};
void sip_stats_get(struct sip_stats *out);

/* What the carrier edge reads of one SIP message (the datagram hook, the
 * INVITE handler and the fuzz harness read through the same code). */
struct sip_peek {
    bool request;
    int code;        /* a response's status, 0 for a request */
    char method[16]; /* a request's method, cut to fit */
    char cseq_method[16];
    uint32_t cseq;
    char call_id[128];  /* cut to fit */
    size_t call_id_len; /* as sent */
    bool to_tag;        /* the To header has a tag (inside a dialog) */
    /* User parts as sip_incoming_to and sip_incoming_from give them (UTF-8,
     * invalid bytes escaped, cut between characters). */
    char called[SIP_USER_MAX]; /* requests: policy_called_user of R-URI and To users */
    char from[SIP_USER_MAX];   /* the From user part */
    int reason_cause;          /* Q.850 cause of a Reason header, 0 if none */
};

/* Decodes one SIP message (a datagram's bytes) with libre's parser and
 * reads it as above; sip_user as --sip-user for the called-number rule
 * (NULL: none). ERR_INVALID when it is not a SIP message, ERR_NOMEM.
 * Pure apart from allocation; any thread. */
enum err sip_peek(const uint8_t *buf, size_t len, const char *sip_user,
                  struct sip_peek *out) WARN_UNUSED;

/* Parses the Q.850 cause of a Reason header value ("Q.850;cause=17;..."),
 * 1-127, 0 when absent or malformed. Pure; exposed for tests. */
int sip_reason_cause(const char *value, size_t len);

#endif
