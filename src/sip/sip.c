/* sip: libre behind plain C types. Owns libre's loop, the SIP stack on one
 * UDP socket, and per-call sessions with their RTP sockets. It makes no
 * call decisions (routing, statuses, webhooks): it reports SIP events to
 * the engine and carries out the engine's orders. Every report to the
 * engine is made from a timer of its own, never from inside a libre
 * callback, so the engine may free a leg whenever it likes. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
/* libre declares tls_openssl_context only under USE_OPENSSL (Debian builds it
 * with OpenSSL); re_sha.h then takes OpenSSL's SHA1, the same library. */
#define USE_OPENSSL 1
#include <re.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/utf8.h"
#include "sip/dtmfinfo.h"
#include "sip/rtpstats.h"
#include "sip/sip.h"
#include "sip/srtp.h"

/* --- the loop --- */

enum err sip_loop_init(void)
{
    struct rlimit rl;
    int max = 4096;

    if (libre_init() != 0)
        return ERR_INTERNAL;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur > (rlim_t)max)
        max = rl.rlim_cur > 1048576 ? 1048576 : (int)rl.rlim_cur;
    if (fd_setsize(max) != 0) {
        libre_close();
        return ERR_NOMEM;
    }
    return ERR_OK;
}

void sip_loop_run(void)
{
    (void)re_main(NULL);
}

void sip_loop_stop(void)
{
    re_cancel();
}

void sip_loop_close(void)
{
    tmr_debug();
    libre_close();
}

/* One watcher per descriptor, indexed by fd; libre keeps only (handler, arg). */
struct fd_watcher {
    int fd;
    sip_fd_cb cb;
    void *arg;
};

static struct fd_watcher **watchers;
static int nwatchers;

static void on_fd(int flags, void *arg)
{
    struct fd_watcher *w = arg;

    w->cb(w->arg, w->fd, (flags & (FD_READ | FD_EXCEPT)) != 0, (flags & FD_WRITE) != 0);
}

enum err sip_fd_watch(int fd, bool want_read, bool want_write, sip_fd_cb cb, void *arg)
{
    struct fd_watcher *w;
    int flags = (want_read ? FD_READ : 0) | (want_write ? FD_WRITE : 0);

    if (fd < 0)
        return ERR_INVALID;
    if (fd >= nwatchers) {
        int n = fd + 64;
        struct fd_watcher **nw = realloc(watchers, sizeof(*nw) * (size_t)n);

        if (!nw)
            return ERR_NOMEM;
        memset(nw + nwatchers, 0, sizeof(*nw) * (size_t)(n - nwatchers));
        watchers = nw;
        nwatchers = n;
    }
    w = watchers[fd];
    if (!flags) {
        if (w) {
            fd_close(fd);
            free(w);
            watchers[fd] = NULL;
        }
        return ERR_OK;
    }
    if (!w) {
        w = calloc(1, sizeof(*w));
        if (!w)
            return ERR_NOMEM;
        watchers[fd] = w;
    }
    w->fd = fd;
    w->cb = cb;
    w->arg = arg;
    if (fd_listen(fd, flags, on_fd, w) != 0) {
        free(w);
        watchers[fd] = NULL;
        return ERR_INTERNAL;
    }
    return ERR_OK;
}

struct sip_timer {
    struct tmr tmr;
    sip_timer_cb cb;
    void *arg;
};

static void on_timer(void *arg)
{
    struct sip_timer *t = arg;

    t->cb(t->arg);
}

struct sip_timer *sip_timer_new(sip_timer_cb cb, void *arg)
{
    struct sip_timer *t = calloc(1, sizeof(*t));

    if (!t)
        return NULL;
    tmr_init(&t->tmr);
    t->cb = cb;
    t->arg = arg;
    return t;
}

void sip_timer_start(struct sip_timer *t, int64_t ms)
{
    tmr_start(&t->tmr, ms > 0 ? (uint64_t)ms : 0, on_timer, t);
}

void sip_timer_cancel(struct sip_timer *t)
{
    tmr_cancel(&t->tmr);
}

void sip_timer_free(struct sip_timer *t)
{
    if (!t)
        return;
    tmr_cancel(&t->tmr);
    free(t);
}

/* Messages wait in a locked list; libre's mqueue (a pipe) only rings the
 * loop when the list stops being empty, and one ring hands over everything
 * that came meanwhile: under load many messages cost one wake-up, not a
 * write, a poll and a read each. */
struct qmsg {
    struct qmsg *next;
    int id;
    void *data;
};

struct sip_queue {
    struct mqueue *mq;
    sip_queue_cb cb;
    void *arg;
    pthread_mutex_t mu;
    struct qmsg *head, *tail; /* under mu */
};

static void on_queue(int id, void *data, void *arg)
{
    struct sip_queue *q = arg;
    struct qmsg *m;

    (void)id;
    (void)data;
    pthread_mutex_lock(&q->mu);
    m = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->mu);
    while (m) {
        struct qmsg *next = m->next;

        q->cb(q->arg, m->id, m->data);
        free(m);
        m = next;
    }
}

enum err sip_queue_new(sip_queue_cb cb, void *arg, struct sip_queue **out)
{
    struct sip_queue *q = calloc(1, sizeof(*q));

    if (!q)
        return ERR_NOMEM;
    q->cb = cb;
    q->arg = arg;
    if (pthread_mutex_init(&q->mu, NULL) != 0) {
        free(q);
        return ERR_INTERNAL;
    }
    if (mqueue_alloc(&q->mq, on_queue, q) != 0) {
        pthread_mutex_destroy(&q->mu);
        free(q);
        return ERR_INTERNAL;
    }
    *out = q;
    return ERR_OK;
}

enum err sip_queue_push(struct sip_queue *q, int id, void *data)
{
    struct qmsg *m = malloc(sizeof(*m));
    int rc;

    if (!m)
        return ERR_NOMEM;
    m->next = NULL;
    m->id = id;
    m->data = data;
    pthread_mutex_lock(&q->mu);
    /* Only the first message rings (the ring for it is on its way
     * otherwise), under mu: when the ring fails, the list is left empty as
     * it was and data stays the caller's. */
    rc = q->head ? 0 : mqueue_push(q->mq, 0, NULL);
    if (rc == 0) {
        if (q->tail)
            q->tail->next = m;
        else
            q->head = m;
        q->tail = m;
        m = NULL;
    }
    pthread_mutex_unlock(&q->mu);
    free(m);
    if (rc == 0)
        return ERR_OK;
    return rc == ENOMEM ? ERR_NOMEM : ERR_UNAVAILABLE;
}

void sip_queue_free(struct sip_queue *q)
{
    struct qmsg *m;

    if (!q)
        return;
    mem_deref(q->mq);
    m = q->head;
    while (m) {
        struct qmsg *next = m->next;

        free(m);
        m = next;
    }
    pthread_mutex_destroy(&q->mu);
    free(q);
}

/* --- counters --- */

static atomic_uint_fast64_t stat_denied;
static atomic_uint_fast64_t stat_rtp_dropped_source;
static atomic_uint_fast64_t stat_srtp_dropped;  /* SRTP packets that did not authenticate */
static atomic_uint_fast64_t stat_srtp_replayed; /* SRTP packets seen before */
static atomic_bool stat_registered;

void sip_stats_get(struct sip_stats *out)
{
    out->denied = atomic_load(&stat_denied);
    out->rtp_dropped_source = atomic_load(&stat_rtp_dropped_source);
    out->srtp_dropped = atomic_load(&stat_srtp_dropped);
    out->srtp_replayed = atomic_load(&stat_srtp_replayed);
    out->registered = atomic_load(&stat_registered);
}

/* --- the endpoint --- */

/* The default allowlist is resolved again this often (SIP.md section 1). */
#define RESOLVE_INTERVAL_MS 60000
/* DNS queries one resolution round may make: NAPTR, SRV, A and AAAA for
 * three names, and A and AAAA for a handful of SRV targets. */
#define RESOLVE_QUERIES_MAX 32
/* Names the default allowlist is resolved from: trunk, registrar, proxy. */
#define RESOLVE_NAMES_MAX 3
/* A host name as a URI carries it, plus NUL. */
#define HOST_MAX 256
/* The random Call-ID of the datagram the endpoint sends itself at start. */
#define PROBE_TOKEN_LEN 32

struct sip_leg {
    struct sip_ep *ep;
    struct sip_leg *prev, *next; /* ep->legs */
    void *arg;
    struct sipsess *sess;
    struct sdp_session *sdp;
    struct sdp_media *media;
    struct rtp_sock *rtp;
    struct sip_keepalive *ka; /* CRLF keep-alive of a TCP or TLS dialog's connection */
    /* SRTP (SDES): the session once both keys are known, the RTP socket's
     * hook that protects and unprotects, and our crypto line (its key is
     * wiped when the leg goes). */
    struct srtpsess *srtp;
    struct udp_helper *srtp_uh;
    struct sdes_crypto crypto_ours;
    bool srtp_offered; /* our offer carries a=crypto */
    bool srtp_refused; /* --srtp require and the answer has no acceptable crypto */
    char callid[128];
    /* The dialog's identifiers, kept for a BYE from another node: the
     * INVITE's part at accept, completed when established (ids_ok). */
    struct sip_dialog_ids ids;
    bool ids_bad; /* an identifier did not fit */
    bool ids_ok;
    bool outbound;
    bool established;
    bool dead;        /* hung up by the engine: no more reports, freed by reap */
    int remote_cause; /* from the Reason header of the party's BYE or CANCEL */
    struct sip_media media_info;
    uint32_t tx_ts;
    uint32_t ev_ts; /* the RTP timestamp of the key press being sent */
    bool tx_started;
    bool latched; /* rtp_latch: latch holds the party's RTP source */
    struct sa latch;
    struct rtpstats rx; /* the party's RTP, as accepted (SIP.md section 6) */
    /* The dialog's media after offers and answers mid-call: the party's
     * last SDP we took (put back when a later one is refused) and whether
     * it decoded as an offer; hold; the RTP timeout. */
    struct mbuf *rsdp;
    bool rsdp_offer;
    bool held;     /* the party holds the call (sends or takes no audio) */
    bool no_send;  /* the party takes no audio: we send nothing */
    bool timing;   /* rtp_tmr runs: established, not held, --rtp-timeout set */
    int64_t rx_ms; /* when the party's last RTP (or RTCP on the RTP port) came */
    struct tmr rtp_tmr;
    /* Key presses of INFO requests, reported in order; the CSeq of the
     * last one, so that the same request sent again is reported once. */
    char pending_dtmf[16];
    int npending_dtmf;
    bool info_seen;
    uint32_t info_cseq;
    /* Reports waiting for the engine, delivered by report_tmr in order. */
    int pending_progress[4];
    int npending_progress;
    bool pending_answered;
    bool pending_confirmed;
    bool pending_closed;
    int closed_code, closed_cause;
    bool closed_timeout;
    struct tmr report_tmr;
    struct tmr reap_tmr;
};

/* A name the default allowlist comes from. */
struct resolve_name {
    char host[HOST_MAX];
    bool has_port; /* a port was given: A/AAAA only (RFC 3263 4.2) */
    enum policy_tp tp;
};

struct resolve_query {
    struct sip_ep *ep;
    struct dns_query *q;
};

/* A SIP URI of the configuration (trunk, registrar, proxy), split. */
struct conf_uri {
    char host[HOST_MAX]; /* IPv6 in brackets */
    char hostport[HOST_MAX + 8];
    char params[64]; /* ";transport=tls" or "" */
    bool sips;       /* sips: scheme */
    enum policy_tp tp;
    bool has_port;
    bool literal;   /* host is an IP address */
    struct sa addr; /* when literal */
};

/* A UDP listener's datagram hook: refused sources are dropped before
 * libre parses them and, behind NAT, the advertised address is written
 * over the bound one in what is sent. */
struct udp_hook {
    struct sip_ep *ep;
    struct udp_helper *uh;
    char bound[LISTEN_HOSTPORT_MAX]; /* "IP:PORT" as libre prints the socket's address */
    char adv[LISTEN_HOSTPORT_MAX];   /* the advertised "IP:PORT"; "" without --sip-advertise */
};

struct sip_ep {
    struct sip *sip;
    struct sipsess_sock *sock;
    struct sip_lsnr *gate;  /* the first request listener: access and admission */
    struct sip_lsnr *last;  /* the last one: answers what nothing else took */
    struct sip_lsnr *stray; /* the last response listener: drops what no transaction took */
    struct udp_hook hooks[LISTEN_MAX];
    struct sa listeners_sa[LISTEN_MAX]; /* the local address of each hook's socket */
    int nhooks;
    struct listen_list listeners;
    /* The tls: listeners' context, also the one libre starts client TLS on. */
    struct tls *tls;
    char tls_peer[HOST_MAX]; /* the name (or address) a TLS peer we call must prove */
    bool tls_peer_ip;
    enum sip_srtp srtp;
    bool has_adv;
    struct sa adv; /* --sip-advertise, port 0 */
    /* Contact URIs of TCP and TLS legs ("sip:USER@HOST:PORT;transport=tls"):
     * the listener's port, not the connection's. "" without such a listener. */
    char contact_tcp[SIP_CRED_MAX + HOST_MAX + 32];
    char contact_tls[SIP_CRED_MAX + HOST_MAX + 32];
    struct dnsc *dnsc;
    struct sa laddr;
    struct sa media_addr;
    char contact_host[80]; /* the first UDP listener's "IP:PORT" ("[IP6]:PORT") */
    char probe_token[PROBE_TOKEN_LEN + 1];
    bool draining; /* the node takes no new calls: OPTIONS answers 503 */
    /* The trunk and how outbound INVITEs look. */
    bool has_trunk;
    char trunk_target[HOST_MAX + 80]; /* host[:port][;params] of Request-URIs */
    enum policy_tp dial_tp;           /* the first hop's transport: the proxy's, else the trunk's */
    char from_domain[HOST_MAX];
    char route[HOST_MAX + 96]; /* "<sip:...;lr>", "" without a proxy */
    char *headers;             /* "Name: value\r\n" lines, "" for none */
    bool caller_id_pai;
    char user[SIP_CRED_MAX + 1];
    char password[SIP_CRED_MAX + 1];
    char cuser[SIP_CRED_MAX + 1]; /* Contact user: the trunk user, else "sfvopi" */
    bool rtp_latch;
    int rtp_low, rtp_high;
    int64_t rtp_timeout_ms; /* 0: none */
    struct sip_lsnr *dlg;   /* before sipsess's listener: UPDATE */
    /* Who may send. */
    bool allow_default; /* allow is resolved from names[], not the operator's */
    struct allowlist allow;
    struct admission admission;
    struct loglimit loglimit;
    struct challenges challenges;
    /* Resolution of the default allowlist. */
    struct resolve_name names[RESOLVE_NAMES_MAX];
    int nnames;
    struct allowlist resolving;
    struct resolve_query rq[RESOLVE_QUERIES_MAX];
    int rq_pending, rq_used;
    struct tmr resolve_tmr;
    /* Registration. */
    struct sipreg *reg;
    bool reg_logged_up;
    bool unregistering;
    struct sip_ep_handlers h;
    struct sip_leg *legs;
};

struct sip_incoming {
    const struct sip_msg *msg;
    struct sip_strans *st; /* held: the INVITE's server transaction, until a final answer */
    struct sip_held *held;
    struct sip_leg *accepted;
    bool no_codec;
    char to[SIP_USER_MAX];
    char from[SIP_USER_MAX];
    struct xheaders xh;
};

int sip_reason_cause(const char *value, size_t len)
{
    size_t i = 0;
    long cause = 0;
    int digits = 0;

    /* protocol, then ";cause=N" among the parameters */
    if (len < 5 || strncasecmp(value, "Q.850", 5) != 0)
        return 0;
    for (i = 5; i + 6 <= len; i++) {
        if (value[i] == ';') {
            size_t j = i + 1;

            while (j < len && (value[j] == ' ' || value[j] == '\t'))
                j++;
            if (j + 6 <= len && strncasecmp(value + j, "cause=", 6) == 0) {
                j += 6;
                while (j < len && value[j] >= '0' && value[j] <= '9' && digits < 4) {
                    cause = cause * 10 + (value[j] - '0');
                    digits++;
                    j++;
                }
                if (!digits || (j < len && value[j] >= '0' && value[j] <= '9'))
                    return 0;
                return cause >= 1 && cause <= 127 ? (int)cause : 0;
            }
        }
    }
    return 0;
}

static int msg_reason_cause(const struct sip_msg *msg)
{
    const struct sip_hdr *hd;

    if (!msg)
        return 0;
    hd = sip_msg_xhdr(msg, "Reason");
    return hd ? sip_reason_cause(hd->val.p, hd->val.l) : 0;
}

static void copy_pl(const struct pl *pl, char *out, size_t size)
{
    size_t n = pl->l < size - 1 ? pl->l : size - 1;

    if (n)
        memcpy(out, pl->p, n);
    out[n] = '\0';
}

/* A user part as text: characters as sent, each byte of no valid UTF-8
 * character as an RFC 3261 escape, cut to fit between characters and
 * escapes. Carriers send anything; this is where it becomes the text the
 * call record and the webhooks carry. */
static void copy_user(const struct pl *pl, char *out, size_t size)
{
    (void)utf8_escape(out, size, pl->p, pl->l);
}

/* RFC 3261 token characters, which a header name is made of. */
static bool token_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("-.!%*_+`'~", c));
}

/* The X- headers of msg as sip_incoming_xheaders describes them. */
static void msg_xheaders(const struct sip_msg *msg, struct xheaders *out)
{
    struct le *le;

    out->n = 0;
    for (le = list_head(&msg->hdrl); le && out->n < XHEADERS_MAX; le = le->next) {
        const struct sip_hdr *hdr = le->data;
        const struct pl *name = &hdr->name;
        size_t i;

        if (name->l < 3 || name->l > XHEADER_NAME_MAX || (name->p[0] != 'X' && name->p[0] != 'x') ||
            name->p[1] != '-')
            continue;
        for (i = 0; i < name->l && token_char(name->p[i]); i++)
            ;
        if (i < name->l || xheaders_has(out, name->p, name->l))
            continue;
        memcpy(out->h[out->n].name, name->p, name->l);
        out->h[out->n].name[name->l] = '\0';
        (void)utf8_escape(out->h[out->n].value, sizeof(out->h[out->n].value), hdr->val.p,
                          hdr->val.l);
        out->n++;
    }
}

/* What sfvopi reads of a decoded message; shared by the INVITE handler,
 * the datagram hook and the fuzz harness, so that all read alike. */
static void msg_peek(const struct sip_msg *msg, const char *sip_user, struct sip_peek *out)
{
    char ruri_user[SIP_USER_MAX], to_user[SIP_USER_MAX];

    memset(out, 0, sizeof(*out));
    out->request = msg->req;
    out->code = msg->req ? 0 : msg->scode;
    copy_pl(&msg->met, out->method, sizeof(out->method));
    copy_pl(&msg->cseq.met, out->cseq_method, sizeof(out->cseq_method));
    out->cseq = msg->cseq.num;
    copy_pl(&msg->callid, out->call_id, sizeof(out->call_id));
    out->call_id_len = msg->callid.l;
    out->to_tag = pl_isset(&msg->to.tag);
    copy_user(&msg->uri.user, ruri_user, sizeof(ruri_user));
    copy_user(&msg->to.uri.user, to_user, sizeof(to_user));
    snprintf(out->called, sizeof(out->called), "%s",
             msg->req ? policy_called_user(ruri_user, to_user, sip_user) : "");
    copy_user(&msg->from.uri.user, out->from, sizeof(out->from));
    out->reason_cause = msg_reason_cause(msg);
}

enum err sip_peek(const uint8_t *buf, size_t len, const char *sip_user, struct sip_peek *out)
{
    struct sip_msg *msg = NULL;
    struct mbuf *mb;
    enum err e = ERR_INVALID;

    if (!len)
        return ERR_INVALID;
    mb = mbuf_alloc(len);
    if (!mb)
        return ERR_NOMEM;
    if (mbuf_write_mem(mb, buf, len) == 0) {
        mb->pos = 0;
        if (sip_msg_decode(&msg, mb) == 0) {
            msg_peek(msg, sip_user, out);
            e = ERR_OK;
        }
    }
    mem_deref(msg);
    mem_deref(mb);
    return e;
}

/* --- access: who may send SIP, and how fast --- */

static bool sa_to_policy_ip(const struct sa *sa, struct policy_ip *ip)
{
    switch (sa_af(sa)) {
    case AF_INET: return policy_ip_from_bytes((const uint8_t *)&sa->u.in.sin_addr, 4, ip) == ERR_OK;
    case AF_INET6: {
        uint8_t b[16];

        sa_in6(sa, b);
        return policy_ip_from_bytes(b, 16, ip) == ERR_OK;
    }
    default: return false;
    }
}

static bool ep_allowed(const struct sip_ep *ep, const struct sa *src)
{
    struct policy_ip ip;

    return sa_to_policy_ip(src, &ip) && allowlist_match(&ep->allow, &ip);
}

/* A datagram or request from a source not allowed: counted, and logged at
 * most once a minute per source (and LOGLIMIT_LINES times a minute in all). */
static void ep_deny(struct sip_ep *ep, const struct sa *src)
{
    struct policy_ip ip;
    char text[POLICY_IP_TEXT];
    uint64_t unlogged = 0;

    atomic_fetch_add(&stat_denied, 1);
    if (!sa_to_policy_ip(src, &ip))
        return;
    if (!loglimit_allow(&ep->loglimit, &ip, clock_mono_ms(), &unlogged))
        return;
    policy_ip_format(&ip, text);
    log_warn("msg=\"SIP dropped: source not allowed by --sip-allow\" src=%s "
             "dropped_unlogged=%llu",
             text, (unsigned long long)unlogged);
}

/* A challenge (401/407) to a request that has answered one already ends
 * the request. libre answers every stale=true challenge again (up to 16
 * times) and REGISTER's challenges without limit, and offers no hook
 * between a response and its retry; so the response is made final here,
 * before libre reads it, by turning its status into 403 (which every
 * libre client ends on, and which CALLS.md maps to cause 21 like 401 and
 * 407). */
static void ep_check_response(struct sip_ep *ep, struct mbuf *mb)
{
    uint8_t *p = mbuf_buf(mb);
    size_t n = mbuf_get_left(mb);
    struct sip_peek pk;
    bool challenge;

    if (n < 12 || memcmp(p, "SIP/2.0 ", 8) != 0)
        return;
    challenge = !memcmp(p + 8, "401 ", 4) || !memcmp(p + 8, "407 ", 4);
    if (!challenge && !ep->unregistering)
        return;
    if (sip_peek(p, n, NULL, &pk) != ERR_OK || pk.request)
        return;
    if (challenge && challenges_second(&ep->challenges, pk.call_id, strlen(pk.call_id),
                                       pk.cseq_method, strlen(pk.cseq_method), pk.cseq)) {
        log_warn("msg=\"digest challenge to a request that answered one already: the request "
                 "ends\" method=%s code=%d",
                 pk.cseq_method, pk.code);
        memcpy(p + 8, "403", 3);
        pk.code = 403;
        challenge = false;
    }
    if (ep->unregistering && !challenge && pk.code >= 200 && !strcmp(pk.cseq_method, "REGISTER")) {
        ep->unregistering = false;
        log_info("msg=\"unregistered\" code=%d", pk.code);
    }
}

/* True when the datagram is a SIP response (not a request, not STUN). */
static bool is_response(const struct mbuf *mb)
{
    return mbuf_get_left(mb) >= 8 && !memcmp(mbuf_buf(mb), "SIP/2.0 ", 8);
}

/* Every datagram on the SIP socket, before libre parses it: a request (or
 * STUN, or anything else) from a source not allowed gets nothing at all (no
 * SIP answer, no STUN answer, no log line from the library). Responses go
 * on from anywhere: --sip-allow names who may call in, and the trunk a call
 * goes out to need not be among them; libre takes a response only when it
 * matches a transaction of ours, and on_stray drops the rest. */
static bool on_datagram(struct sa *src, struct mbuf *mb, void *arg)
{
    struct sip_ep *ep = ((struct udp_hook *)arg)->ep;

    if (is_response(mb)) {
        ep_check_response(ep, mb);
        return false;
    }
    if (!ep_allowed(ep, src)) {
        ep_deny(ep, src);
        return true;
    }
    return false;
}

/* A response no transaction of ours took (libre would print it to stderr):
 * dropped, and counted when its source is not allowed. */
static bool on_stray(const struct sip_msg *msg, void *arg)
{
    struct sip_ep *ep = arg;

    if (!ep_allowed(ep, &msg->src))
        ep_deny(ep, &msg->src);
    return true;
}

/* Replaces, in the header part of a message, each whole occurrence of
 * from with to (to is never shorter than from in practice, but any length
 * works). Returns a malloc'd copy and its length, or NULL when nothing was
 * replaced (or on allocation failure: the message then goes out as it is). */
static uint8_t *rewrite_headers(const uint8_t *p, size_t len, const char *from, const char *to,
                                size_t *outlen)
{
    size_t fl = strlen(from), tl = strlen(to), hl = len, i, n = 0, o = 0;
    const uint8_t *end = NULL;
    uint8_t *out;

    for (i = 0; i + 4 <= len; i++) {
        if (!memcmp(p + i, "\r\n\r\n", 4)) {
            end = p + i;
            break;
        }
    }
    if (end)
        hl = (size_t)(end - p);
        /* A whole address: not inside a longer number or name. */
#define WHOLE_AT(i)                                                                                \
    ((i) + fl <= hl && !memcmp(p + (i), from, fl) &&                                               \
     ((i) == 0 || !(isalnum(p[(i)-1]) || p[(i)-1] == '.')) &&                                      \
     ((i) + fl == hl || !isdigit(p[(i) + fl])))
    for (i = 0; i + fl <= hl; i++) {
        if (WHOLE_AT(i))
            n++;
    }
    if (!n)
        return NULL;
    out = malloc(len - n * fl + n * tl);
    if (!out)
        return NULL;
    for (i = 0; i < len;) {
        if (i < hl && WHOLE_AT(i)) {
            memcpy(out + o, to, tl);
            o += tl;
            i += fl;
        } else {
            out[o++] = p[i++];
        }
    }
#undef WHOLE_AT
    *outlen = o;
    return out;
}

/* Every datagram sent from a UDP listener: behind NAT (--sip-advertise),
 * the bound address in Via and Contact becomes the advertised one. libre
 * writes both from the socket's address and offers no other hook; a
 * retransmission finds the buffer already rewritten. */
static bool on_datagram_send(int *err, struct sa *dst, struct mbuf *mb, void *arg)
{
    struct udp_hook *hk = arg;
    size_t start = mb->pos, n;
    uint8_t *copy;

    (void)dst;
    if (!hk->adv[0])
        return false;
    copy = rewrite_headers(mbuf_buf(mb), mbuf_get_left(mb), hk->bound, hk->adv, &n);
    if (!copy)
        return false;
    mb->end = start;
    mb->pos = start;
    *err = mbuf_write_mem(mb, copy, n);
    mb->pos = start;
    free(copy);
    return false;
}

/* The datagram hooks need libre's sockets, which sip_transp_add keeps to
 * itself; every received message carries its socket, so the endpoint
 * sends one datagram to each of its UDP listeners at start and takes the
 * socket from it. Until then (microseconds) the request listener below
 * still refuses other sources. */
static enum err ep_send_probe(struct sip_ep *ep, const struct sa *laddr)
{
    struct sa dst = *laddr;
    struct mbuf *mb;
    char ip[64], host[80];
    int rc;

    if (sa_is_any(&dst))
        (void)sa_set_str(&dst, sa_af(&dst) == AF_INET6 ? "::1" : "127.0.0.1", sa_port(laddr));
    if (!ep->probe_token[0])
        rand_str(ep->probe_token, sizeof(ep->probe_token));
    if (sa_ntop(&dst, ip, sizeof(ip)) != 0)
        return ERR_INTERNAL;
    snprintf(host, sizeof(host), sa_af(&dst) == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, sa_port(&dst));
    mb = mbuf_alloc(512);
    if (!mb)
        return ERR_NOMEM;
    rc = mbuf_printf(mb,
                     "OPTIONS sip:probe@%s SIP/2.0\r\n"
                     "Via: SIP/2.0/UDP %s;branch=z9hG4bK%s\r\n"
                     "From: <sip:probe@%s>;tag=%s\r\n"
                     "To: <sip:probe@%s>\r\n"
                     "Call-ID: %s\r\n"
                     "CSeq: 1 OPTIONS\r\n"
                     "Max-Forwards: 0\r\n"
                     "Content-Length: 0\r\n\r\n",
                     host, host, ep->probe_token, host, ep->probe_token, host, ep->probe_token);
    mb->pos = 0;
    if (!rc)
        rc = sip_send(ep->sip, NULL, SIP_TRANSP_UDP, &dst, mb);
    mem_deref(mb);
    return rc ? ERR_INTERNAL : ERR_OK;
}

/* "IP:PORT" or "[IP6]:PORT", as libre's %J prints an address. */
static void sa_hostport(const struct sa *sa, uint16_t port, char *out, size_t size)
{
    char ip[64] = "";

    (void)sa_ntop(sa, ip, sizeof(ip));
    snprintf(out, size, sa_af(sa) == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
}

/* The probe arrived on a UDP listener: installs its hook. */
static void ep_hook_socket(struct sip_ep *ep, const struct sip_msg *msg)
{
    struct udp_hook *hk;
    int i;

    for (i = 0; i < ep->nhooks; i++) {
        if (sa_cmp(&msg->dst, &ep->listeners_sa[i], SA_ALL) && ep->hooks[i].uh)
            return;
    }
    if (ep->nhooks == LISTEN_MAX)
        return;
    hk = &ep->hooks[ep->nhooks];
    hk->ep = ep;
    sa_hostport(&msg->dst, sa_port(&msg->dst), hk->bound, sizeof(hk->bound));
    if (ep->has_adv)
        sa_hostport(&ep->adv, sa_port(&msg->dst), hk->adv, sizeof(hk->adv));
    if (udp_register_helper(&hk->uh, msg->sock, 0, on_datagram_send, on_datagram, hk) != 0) {
        log_error("msg=\"SIP datagram hook not installed: refused sources are dropped "
                  "after parsing\"");
        return;
    }
    ep->listeners_sa[ep->nhooks] = msg->dst;
    ep->nhooks++;
}

static bool on_gate(const struct sip_msg *msg, void *arg)
{
    struct sip_ep *ep = arg;
    struct policy_ip ip;

    if (msg->tp == SIP_TRANSP_UDP && ep->probe_token[0] &&
        !pl_strcmp(&msg->callid, ep->probe_token)) {
        ep_hook_socket(ep, msg);
        return true;
    }
    if (!ep_allowed(ep, &msg->src)) {
        ep_deny(ep, &msg->src);
        return true;
    }
    if (!pl_strcmp(&msg->met, "OPTIONS") && ep->draining) {
        /* A carrier's health check takes the node out of its rotation. */
        (void)sip_treplyf(NULL, NULL, ep->sip, msg, false, 503, "Service Unavailable",
                          "Content-Length: 0\r\n\r\n");
        return true;
    }
    if (!pl_strcmp(&msg->met, "OPTIONS")) {
        (void)sip_treplyf(NULL, NULL, ep->sip, msg, false, 200, "OK",
                          "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO\r\n"
                          "Accept: application/sdp\r\n"
                          "Content-Length: 0\r\n\r\n");
        return true;
    }
    if (!pl_strcmp(&msg->met, "INVITE") && !pl_isset(&msg->to.tag) &&
        sa_to_policy_ip(&msg->src, &ip) && !admission_take(&ep->admission, &ip, clock_mono_ms())) {
        uint64_t unlogged = 0;

        if (loglimit_allow(&ep->loglimit, &ip, clock_mono_ms(), &unlogged)) {
            char text[POLICY_IP_TEXT];

            policy_ip_format(&ip, text);
            log_warn("msg=\"INVITE refused: over --sip-invite-rate\" src=%s", text);
        }
        (void)sip_treplyf(NULL, NULL, ep->sip, msg, false, 503, "Service Unavailable",
                          "Retry-After: 1\r\nContent-Length: 0\r\n\r\n");
        return true;
    }
    return false;
}

static int leg_take_sdp(struct sip_leg *leg, struct mbuf *mb, bool offer);
static const char *ep_cuser(const struct sip_ep *ep, enum policy_tp tp);

/* UPDATE (RFC 3311), which libre's sessions do not take: in a dialog of
 * ours, an SDP offer is answered as a re-INVITE's is, and one without
 * SDP gets a plain 200. */
static bool on_update(const struct sip_msg *msg, void *arg)
{
    struct sip_ep *ep = arg;
    struct sip_leg *leg;
    struct sip_dialog *dlg = NULL;
    struct sip_contact contact;
    struct mbuf *desc = NULL;
    int rc;

    if (pl_strcmp(&msg->met, "UPDATE"))
        return false;
    for (leg = ep->legs; leg; leg = leg->next) {
        dlg = leg->sess ? sipsess_dialog(leg->sess) : NULL;
        if (dlg && !leg->pending_closed && sip_dialog_cmp(dlg, msg))
            break;
    }
    if (!leg || !pl_isset(&msg->to.tag)) {
        (void)sip_reply(ep->sip, msg, 481, "Call/Transaction Does Not Exist");
        return true;
    }
    if (!sip_dialog_rseq_valid(dlg, msg)) {
        (void)sip_reply(ep->sip, msg, 500, "Server Internal Error");
        return true;
    }
    if (mbuf_get_left(msg->mb)) {
        if (!msg_ctype_cmp(&msg->ctyp, "application", "sdp")) {
            (void)sip_treplyf(NULL, NULL, ep->sip, msg, false, 415, "Unsupported Media Type",
                              "Accept: application/sdp\r\nContent-Length: 0\r\n\r\n");
            return true;
        }
        if (leg_take_sdp(leg, msg->mb, true) != 0 || sdp_encode(&desc, leg->sdp, false) != 0) {
            (void)sip_reply(ep->sip, msg, 488, "Not Acceptable Here");
            return true;
        }
    }
    (void)sip_dialog_update(dlg, msg); /* a target refresh, as RFC 3311 says */
    sip_contact_set(&contact,
                    ep_cuser(ep, msg->tp == SIP_TRANSP_TLS   ? POLICY_TP_TLS
                                 : msg->tp == SIP_TRANSP_TCP ? POLICY_TP_TCP
                                                             : POLICY_TP_UDP),
                    &msg->dst, msg->tp);
    rc = sip_treplyf(NULL, NULL, ep->sip, msg, false, 200, "OK",
                     "%H"
                     "%s"
                     "Content-Length: %zu\r\n\r\n"
                     "%b",
                     sip_contact_print, &contact, desc ? "Content-Type: application/sdp\r\n" : "",
                     desc ? mbuf_get_left(desc) : (size_t)0, desc ? mbuf_buf(desc) : NULL,
                     desc ? mbuf_get_left(desc) : (size_t)0);
    if (rc)
        log_warn("msg=\"200 to UPDATE not sent\" call_id=%s", leg->callid);
    mem_deref(desc);
    return true;
}

/* After every other listener: what none of them took gets its answer here
 * rather than from libre, which would also print to stderr for each. */
static bool on_unhandled(const struct sip_msg *msg, void *arg)
{
    struct sip_ep *ep = arg;

    if (!pl_strcmp(&msg->met, "ACK"))
        return true;
    if (!pl_strcmp(&msg->met, "CANCEL"))
        (void)sip_reply(ep->sip, msg, 481, "Transaction Does Not Exist");
    else
        (void)sip_reply(ep->sip, msg, 501, "Not Implemented");
    return true;
}

/* --- the default allowlist: the addresses the trunk, registrar and proxy
 * resolve to --- */

static void resolve_query(struct sip_ep *ep, const char *name, uint16_t type);

/* One host rule; a full list (ALLOW_MAX addresses) keeps the first ones. */
static void add_rule(struct allowlist *l, const struct policy_ip *ip)
{
    if (allowlist_add(l, ip, ip->v6 ? 128 : 32) == ERR_TOO_LARGE)
        log_warn("msg=\"--sip-allow default: more than %d addresses, the rest ignored\"",
                 ALLOW_MAX);
}

static void resolve_done(struct sip_ep *ep)
{
    char list[POLICY_IP_TEXT * 4 + 16] = "";
    size_t i, used = 0;

    if (!ep->resolving.n) {
        /* Keep what worked before: a DNS outage must not lock the trunk out. */
        log_warn("msg=\"--sip-allow default: no address resolved\" kept=%zu", ep->allow.n);
        return;
    }
    if (ep->resolving.n == ep->allow.n &&
        !memcmp(ep->resolving.v, ep->allow.v, sizeof(ep->allow.v[0]) * ep->allow.n))
        return;
    ep->allow = ep->resolving;
    for (i = 0; i < ep->allow.n && i < 4; i++) {
        char text[POLICY_IP_TEXT];

        policy_ip_format(&ep->allow.v[i].ip, text);
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? "," : "", text);
    }
    log_info("msg=\"SIP allowed from the trunk's addresses\" count=%zu addresses=%s%s", ep->allow.n,
             list, ep->allow.n > 4 ? ",..." : "");
}

static void resolve_add_rr(struct sip_ep *ep, const struct dnsrr *rr, bool follow)
{
    struct policy_ip ip;
    uint32_t a;

    switch (rr->type) {
    case DNS_TYPE_A:
        a = htonl(rr->rdata.a.addr);
        if (policy_ip_from_bytes((const uint8_t *)&a, 4, &ip) == ERR_OK)
            add_rule(&ep->resolving, &ip);
        break;
    case DNS_TYPE_AAAA:
        if (policy_ip_from_bytes(rr->rdata.aaaa.addr, 16, &ip) == ERR_OK)
            add_rule(&ep->resolving, &ip);
        break;
    case DNS_TYPE_SRV:
        if (follow && rr->rdata.srv.target && strcmp(rr->rdata.srv.target, ".")) {
            resolve_query(ep, rr->rdata.srv.target, DNS_TYPE_A);
            resolve_query(ep, rr->rdata.srv.target, DNS_TYPE_AAAA);
        }
        break;
    case DNS_TYPE_NAPTR:
        if (follow && rr->rdata.naptr.services && rr->rdata.naptr.replace &&
            (!strcasecmp(rr->rdata.naptr.services, "SIP+D2U") ||
             !strcasecmp(rr->rdata.naptr.services, "SIP+D2T") ||
             !strcasecmp(rr->rdata.naptr.services, "SIPS+D2T")))
            resolve_query(ep, rr->rdata.naptr.replace, DNS_TYPE_SRV);
        break;
    default: break;
    }
}

static void on_resolved(int err, const struct dnshdr *hdr, struct list *ansl, struct list *authl,
                        struct list *addl, void *arg)
{
    struct resolve_query *rq = arg;
    struct sip_ep *ep = rq->ep;
    struct le *le;

    (void)hdr;
    (void)authl;
    if (!err) {
        for (le = list_head(ansl); le; le = le->next)
            resolve_add_rr(ep, le->data, true);
        for (le = list_head(addl); le; le = le->next)
            resolve_add_rr(ep, le->data, false);
    }
    if (--ep->rq_pending == 0)
        resolve_done(ep);
}

static void resolve_query(struct sip_ep *ep, const char *name, uint16_t type)
{
    struct resolve_query *rq;

    if (ep->rq_used == RESOLVE_QUERIES_MAX)
        return;
    rq = &ep->rq[ep->rq_used++];
    rq->ep = ep;
    if (dnsc_query(&rq->q, ep->dnsc, name, type, DNS_CLASS_IN, true, on_resolved, rq) == 0)
        ep->rq_pending++;
}

static void on_resolve_tmr(void *arg)
{
    struct sip_ep *ep = arg;
    char srv[HOST_MAX + 16];
    int i;

    tmr_start(&ep->resolve_tmr, RESOLVE_INTERVAL_MS, on_resolve_tmr, ep);
    if (ep->rq_pending)
        return; /* the last round is still waiting for DNS */
    for (i = 0; i < ep->rq_used; i++)
        ep->rq[i].q = mem_deref(ep->rq[i].q);
    ep->rq_used = 0;
    memset(&ep->resolving, 0, sizeof(ep->resolving));
    for (i = 0; i < ep->nnames; i++) {
        const struct resolve_name *n = &ep->names[i];

        if (!n->has_port) {
            resolve_query(ep, n->host, DNS_TYPE_NAPTR);
            snprintf(srv, sizeof(srv), "%s.%s",
                     n->tp == POLICY_TP_TLS   ? "_sips._tcp"
                     : n->tp == POLICY_TP_TCP ? "_sip._tcp"
                                              : "_sip._udp",
                     n->host);
            resolve_query(ep, srv, DNS_TYPE_SRV);
        }
        resolve_query(ep, n->host, DNS_TYPE_A);
        resolve_query(ep, n->host, DNS_TYPE_AAAA);
    }
    if (!ep->rq_pending && ep->nnames)
        resolve_done(ep);
}

/* Adds the trunk, registrar or proxy to the default allowlist: an address
 * at once, a name through DNS. */
static void ep_allow_uri(struct sip_ep *ep, const struct conf_uri *u)
{
    struct policy_ip ip;
    const char *h = u->host;
    size_t n = strlen(h);

    if (u->literal) {
        if (sa_to_policy_ip(&u->addr, &ip))
            add_rule(&ep->allow, &ip);
        return;
    }
    if (ep->nnames == RESOLVE_NAMES_MAX || n >= HOST_MAX)
        return;
    memcpy(ep->names[ep->nnames].host, h, n + 1);
    ep->names[ep->nnames].has_port = u->has_port;
    ep->names[ep->nnames].tp = u->tp;
    ep->nnames++;
}

/* --- configuration --- */

/* "sip:HOST[:PORT][;transport=udp]" without user part or headers. */
static enum err conf_uri_parse(const char *s, const char *what, struct conf_uri *out)
{
    struct pl pl, tp;
    struct uri uri;
    char host[HOST_MAX];

    memset(out, 0, sizeof(*out));
    pl_set_str(&pl, s);
    if (uri_decode(&uri, &pl) != 0 ||
        (pl_strcasecmp(&uri.scheme, "sip") && pl_strcasecmp(&uri.scheme, "sips")) ||
        pl_isset(&uri.user) || !pl_isset(&uri.host) || uri.host.l >= HOST_MAX - 2 ||
        pl_isset(&uri.headers)) {
        log_error("msg=\"bad %s, want sip:HOST[:PORT] or sips:HOST[:PORT]\"", what);
        return ERR_INVALID;
    }
    out->sips = !pl_strcasecmp(&uri.scheme, "sips");
    out->tp = out->sips ? POLICY_TP_TLS : POLICY_TP_UDP;
    if (!msg_param_decode(&uri.params, "transport", &tp)) {
        if (!pl_strcasecmp(&tp, "tcp") && !out->sips)
            out->tp = POLICY_TP_TCP;
        else if (!pl_strcasecmp(&tp, "tls"))
            out->tp = POLICY_TP_TLS;
        else if (pl_strcasecmp(&tp, "udp") || out->sips) {
            log_error("msg=\"bad %s: transport must be udp, tcp or tls (sips: is TLS)\"", what);
            return ERR_INVALID;
        }
    }
    if (uri.params.l >= sizeof(out->params)) {
        log_error("msg=\"bad %s: parameters too long\"", what);
        return ERR_INVALID;
    }
    copy_pl(&uri.params, out->params, sizeof(out->params));
    /* libre 1.1.0 routes only sip: URIs (a sips: one fails with ENOSYS):
     * a sips: URI is dialled as sip:...;transport=tls, which takes TLS to
     * the same host (SRV _sips._tcp without a port). */
    if (out->sips && msg_param_decode(&uri.params, "transport", &tp)) {
        size_t used = strlen(out->params);

        if (snprintf(out->params + used, sizeof(out->params) - used, ";transport=tls") >=
            (int)(sizeof(out->params) - used)) {
            log_error("msg=\"bad %s: parameters too long\"", what);
            return ERR_INVALID;
        }
    }
    copy_pl(&uri.host, host, sizeof(host));
    out->literal = sa_set_str(&out->addr, host, uri.port ? uri.port : 5060) == 0;
    snprintf(out->host, sizeof(out->host), uri.af == AF_INET6 ? "[%s]" : "%s", host);
    out->has_port = uri.port != 0;
    if (out->has_port)
        snprintf(out->hostport, sizeof(out->hostport), "%s:%u", out->host, uri.port);
    else
        snprintf(out->hostport, sizeof(out->hostport), "%s", out->host);
    return ERR_OK;
}

static enum err ep_dns(struct sip_ep *ep, const char *servers)
{
    struct sa nsv[4];
    uint32_t nsn = 4;

    if (servers && *servers) {
        const char *p = servers;

        nsn = 0;
        while (*p && nsn < 4) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            char one[80];

            if (n >= sizeof(one))
                return ERR_INVALID;
            memcpy(one, p, n);
            one[n] = '\0';
            if (sa_decode(&nsv[nsn], one, n) != 0 && sa_set_str(&nsv[nsn], one, 53) != 0) {
                log_error("msg=\"bad --dns-server, want IP[:PORT]\"");
                return ERR_INVALID;
            }
            nsn++;
            p = comma ? comma + 1 : p + n;
        }
    } else if (dns_srv_get(NULL, 0, nsv, &nsn) != 0) {
        nsn = 0; /* no resolver: only IP literals work */
    }
    return dnsc_alloc(&ep->dnsc, NULL, nsv, nsn) == 0 ? ERR_OK : ERR_NOMEM;
}

static int auth_handler(char **user, char **pass, const char *realm, void *arg)
{
    struct sip_ep *ep = arg;

    (void)realm; /* the carrier's text: never logged */
    if (!ep->user[0]) {
        log_warn("msg=\"digest challenge, but no --sip-user is set\"");
        return EAUTH;
    }
    log_debug("msg=\"digest challenge answered\"");
    if (str_dup(user, ep->user) != 0 || str_dup(pass, ep->password) != 0)
        return ENOMEM;
    return 0;
}

/* --- registration --- */

static void on_reg(int err, const struct sip_msg *msg, void *arg)
{
    struct sip_ep *ep = arg;
    bool up = ep->reg && sipreg_registered(ep->reg);

    atomic_store(&stat_registered, up);
    if (err)
        log_warn("msg=\"registration failed\" why=\"%s\"", strerror(err));
    else if (msg && msg->scode >= 300)
        log_warn("msg=\"registration refused\" code=%u", msg->scode);
    else if (msg && msg->scode >= 200 && up != ep->reg_logged_up)
        log_info("msg=\"registered\" expires=%u", ep->reg ? sipreg_proxy_expires(ep->reg) : 0);
    else if (msg && msg->scode >= 200)
        log_debug("msg=\"registration refreshed\" expires=%u",
                  ep->reg ? sipreg_proxy_expires(ep->reg) : 0);
    ep->reg_logged_up = up;
}

static enum err ep_register(struct sip_ep *ep, const struct conf_uri *registrar, unsigned expires)
{
    char reg_uri[HOST_MAX + 96], aor[2 * HOST_MAX];
    const char *routev[1] = {ep->route};
    int rc;

    snprintf(reg_uri, sizeof(reg_uri), "sip:%s%s", registrar->hostport, registrar->params);
    snprintf(aor, sizeof(aor), "sip:%s@%s", ep->user, registrar->host);
    rc = sipreg_register(&ep->reg, ep->sip, reg_uri, aor, NULL, aor, expires ? expires : 600,
                         ep->cuser, ep->route[0] ? routev : NULL, ep->route[0] ? 1 : 0, 0,
                         auth_handler, ep, false, on_reg, ep, NULL, NULL);
    if (rc) {
        log_error("msg=\"REGISTER not sent\" why=\"%s\"", strerror(rc));
        return ERR_INVALID;
    }
    log_info("msg=\"registering\" registrar=%s user=%s expires=%u", registrar->hostport, ep->user,
             expires ? expires : 600);
    return ERR_OK;
}

void sip_ep_unregister(struct sip_ep *ep)
{
    if (!ep || !ep->reg)
        return;
    ep->unregistering = sipreg_registered(ep->reg);
    /* libre sends REGISTER with Expires: 0 from the destructor and keeps
     * the registration alive until it is answered. */
    ep->reg = mem_deref(ep->reg);
    atomic_store(&stat_registered, false);
}

void sip_ep_drain(struct sip_ep *ep)
{
    if (ep)
        ep->draining = true;
}

bool sip_ep_unregistering(const struct sip_ep *ep)
{
    return ep && ep->unregistering;
}
static void leg_unlink(struct sip_leg *leg)
{
    if (leg->prev)
        leg->prev->next = leg->next;
    else if (leg->ep && leg->ep->legs == leg)
        leg->ep->legs = leg->next;
    if (leg->next)
        leg->next->prev = leg->prev;
    leg->prev = leg->next = NULL;
}

static void leg_report(void *arg)
{
    struct sip_leg *leg = arg;
    struct sip_ep *ep = leg->ep;
    int i, n;

    if (leg->dead)
        return;
    /* Copy first: a handler may hang the leg up (and mark it dead). */
    n = leg->npending_progress;
    leg->npending_progress = 0;
    for (i = 0; i < n && !leg->dead; i++)
        ep->h.progress(leg->arg, leg->pending_progress[i]);
    if (leg->pending_answered && !leg->dead) {
        leg->pending_answered = false;
        ep->h.answered(leg->arg);
    }
    if (leg->pending_confirmed && !leg->dead) {
        leg->pending_confirmed = false;
        if (ep->h.confirmed)
            ep->h.confirmed(leg->arg);
    }
    n = leg->npending_dtmf;
    leg->npending_dtmf = 0;
    for (i = 0; i < n && !leg->dead; i++) {
        if (ep->h.dtmf)
            ep->h.dtmf(leg->arg, leg->pending_dtmf[i]);
    }
    if (leg->pending_closed && !leg->dead) {
        leg->pending_closed = false;
        ep->h.closed(leg->arg, leg->closed_code, leg->closed_cause, leg->closed_timeout);
    }
}

static void leg_schedule(struct sip_leg *leg)
{
    if (!leg->dead)
        tmr_start(&leg->report_tmr, 0, leg_report, leg);
}

static void leg_reap(void *arg)
{
    struct sip_leg *leg = arg;

    tmr_cancel(&leg->report_tmr);
    tmr_cancel(&leg->rtp_tmr);
    leg->rsdp = mem_deref(leg->rsdp);
    /* Dereferencing an established session sends its BYE, an unanswered
     * outbound one its CANCEL; libre finishes those transactions itself. */
    leg->ka = mem_deref(leg->ka);
    leg->sess = mem_deref(leg->sess);
    leg->srtp_uh = mem_deref(leg->srtp_uh);
    leg->rtp = mem_deref(leg->rtp);
    srtpsess_free(leg->srtp);
    explicit_bzero(&leg->crypto_ours, sizeof(leg->crypto_ours));
    leg->sdp = mem_deref(leg->sdp);
    free(leg);
}

/* --- dialog identifiers, and a BYE from them (SIP.md section 5) --- */

/* What a stored dialog may hold: printable ASCII, the only bytes SIP allows
 * in these fields (RFC 3261 25.1: others escaped). Raw bytes from a sloppy
 * peer are not stored: PostgreSQL refuses text that is not UTF-8, and a BYE
 * must not carry them back. */
static bool ids_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

static void ids_copy(char *dst, size_t size, const struct pl *pl, bool *bad)
{
    if (!pl->p || pl->l >= size) {
        dst[0] = '\0';
        *bad = *bad || pl->l >= size;
        return;
    }
    pl_strcpy(pl, dst, size);
}

struct route_acc {
    char *buf;
    size_t size;
    bool bad;
};

static bool route_add(const struct sip_hdr *hdr, const struct sip_msg *msg, void *arg)
{
    struct route_acc *a = arg;
    size_t n = strlen(a->buf);
    int w;

    (void)msg;
    w = snprintf(a->buf + n, a->size - n, "%s%.*s", n ? ", " : "", (int)hdr->val.l, hdr->val.p);
    if (w < 0 || (size_t)w >= a->size - n) {
        a->buf[n] = '\0';
        a->bad = true;
        return true;
    }
    return false;
}

/* The route set of a dialog from msg's Record-Route headers: in their order
 * for the callee (an INVITE), reversed for the caller (a 2xx). */
static void ids_routes(struct sip_dialog_ids *ids, const struct sip_msg *msg, bool fwd, bool *bad)
{
    struct route_acc a = {ids->route_set, sizeof(ids->route_set), false};

    ids->route_set[0] = '\0';
    (void)sip_msg_hdr_apply(msg, fwd, SIP_HDR_RECORD_ROUTE, route_add, &a);
    *bad = *bad || a.bad;
}

static void ids_target(struct sip_dialog_ids *ids, const struct sip_msg *msg, bool *bad)
{
    const struct sip_hdr *h = sip_msg_hdr(msg, SIP_HDR_CONTACT);
    struct sip_addr addr;

    ids->remote_target[0] = '\0';
    if (!h || sip_addr_decode(&addr, &h->val) != 0) {
        *bad = true;
        return;
    }
    ids_copy(ids->remote_target, sizeof(ids->remote_target), &addr.auri, bad);
}

/* Inbound: what the INVITE says; the local tag comes with the ACK. */
static void ids_from_invite(struct sip_leg *leg, const struct sip_msg *msg)
{
    struct sip_dialog_ids *ids = &leg->ids;

    ids_copy(ids->call_id, sizeof(ids->call_id), &msg->callid, &leg->ids_bad);
    ids_copy(ids->local_uri, sizeof(ids->local_uri), &msg->to.auri, &leg->ids_bad);
    ids_copy(ids->remote_uri, sizeof(ids->remote_uri), &msg->from.auri, &leg->ids_bad);
    ids_copy(ids->remote_tag, sizeof(ids->remote_tag), &msg->from.tag, &leg->ids_bad);
    ids_target(ids, msg, &leg->ids_bad);
    ids_routes(ids, msg, true, &leg->ids_bad);
}

/* The dialog is established: msg is the caller's ACK (inbound) or the
 * callee's 2xx (outbound). */
static void ids_established(struct sip_leg *leg, const struct sip_msg *msg)
{
    struct sip_dialog_ids *ids = &leg->ids;
    const struct sip_dialog *dlg = leg->sess ? sipsess_dialog(leg->sess) : NULL;

    if (!msg || !dlg)
        return;
    if (leg->outbound) {
        ids_copy(ids->call_id, sizeof(ids->call_id), &msg->callid, &leg->ids_bad);
        ids_copy(ids->local_uri, sizeof(ids->local_uri), &msg->from.auri, &leg->ids_bad);
        ids_copy(ids->local_tag, sizeof(ids->local_tag), &msg->from.tag, &leg->ids_bad);
        ids_copy(ids->remote_uri, sizeof(ids->remote_uri), &msg->to.auri, &leg->ids_bad);
        ids_copy(ids->remote_tag, sizeof(ids->remote_tag), &msg->to.tag, &leg->ids_bad);
        ids_target(ids, msg, &leg->ids_bad);
        ids_routes(ids, msg, false, &leg->ids_bad);
    } else {
        ids_copy(ids->local_tag, sizeof(ids->local_tag), &msg->to.tag, &leg->ids_bad);
    }
    ids->next_cseq = sip_dialog_lseq(dlg) + 1;
    leg->ids_ok = !leg->ids_bad && ids->call_id[0] && ids->local_tag[0] && ids->remote_tag[0] &&
                  ids->remote_target[0] && ids_printable(ids->call_id) &&
                  ids_printable(ids->local_uri) && ids_printable(ids->local_tag) &&
                  ids_printable(ids->remote_uri) && ids_printable(ids->remote_tag) &&
                  ids_printable(ids->remote_target) && ids_printable(ids->route_set);
}

bool sip_leg_dialog_ids(const struct sip_leg *leg, struct sip_dialog_ids *out)
{
    if (!leg || !leg->ids_ok)
        return false;
    *out = leg->ids;
    return true;
}

static void on_bye_reply(int err, const struct sip_msg *msg, void *arg)
{
    (void)arg;
    if (err)
        log_warn("msg=\"BYE for a dead node's call not answered\" why=\"%s\"", strerror(err));
    else if (msg->scode >= 200)
        log_info("msg=\"BYE for a dead node's call answered\" code=%u", msg->scode);
}

/* The first entry of a Route header's value: "<uri>", or a bare URI. */
static bool first_route(const char *set, struct pl *uri)
{
    const char *lt = strchr(set, '<'), *gt;

    if (!lt) {
        size_t n = strcspn(set, ",");

        while (n && (set[n - 1] == ' ' || set[n - 1] == '\t'))
            n--;
        uri->p = set;
        uri->l = n;
        return n > 0;
    }
    gt = strchr(lt, '>');
    if (!gt)
        return false;
    uri->p = lt + 1;
    uri->l = (size_t)(gt - lt - 1);
    return uri->l > 0;
}

enum err sip_ep_bye(struct sip_ep *ep, const struct sip_dialog_ids *ids, int cause)
{
    struct uri route;
    struct pl rpl;
    char route_hdr[sizeof(ids->route_set) + 16] = "";
    int rc;

    if (!ids->call_id[0] || !ids->remote_target[0] || !ids->local_tag[0] || !ids->remote_tag[0]) {
        log_warn("msg=\"BYE not sent: the call's dialog is incomplete\"");
        return ERR_INVALID;
    }
    if (ids->route_set[0]) {
        if (!first_route(ids->route_set, &rpl) || uri_decode(&route, &rpl) != 0) {
            log_warn("msg=\"BYE not sent: the call's route set does not parse\"");
            return ERR_INVALID;
        }
        snprintf(route_hdr, sizeof(route_hdr), "Route: %s\r\n", ids->route_set);
    }
    rc = sip_requestf(NULL, ep->sip, true, "BYE", ids->remote_target,
                      ids->route_set[0] ? &route : NULL, NULL, NULL, on_bye_reply, NULL,
                      "%s"
                      "To: <%s>;tag=%s\r\n"
                      "From: <%s>;tag=%s\r\n"
                      "Call-ID: %s\r\n"
                      "CSeq: %u BYE\r\n"
                      "Reason: Q.850;cause=%d\r\n"
                      "Content-Length: 0\r\n"
                      "\r\n",
                      route_hdr, ids->remote_uri, ids->remote_tag, ids->local_uri, ids->local_tag,
                      ids->call_id, (unsigned)ids->next_cseq, cause);
    if (rc) {
        log_warn("msg=\"BYE not sent\" why=\"%s\"", strerror(rc));
        return ERR_INVALID;
    }
    return ERR_OK;
}

void sip_leg_hangup(struct sip_leg *leg)
{
    if (!leg || leg->dead)
        return;
    leg->dead = true;
    leg_unlink(leg);
    tmr_cancel(&leg->report_tmr);
    tmr_cancel(&leg->rtp_tmr);
    if (leg->sess && !leg->outbound && !leg->established && !leg->pending_closed)
        (void)sipsess_reject(leg->sess, 487, "Request Terminated", NULL);
    /* Not here: this may run inside one of the session's own callbacks. */
    tmr_start(&leg->reap_tmr, 0, leg_reap, leg);
}

static bool pt_negotiated(const struct sip_leg *leg, int pt)
{
    int k;

    if (pt == leg->media_info.audio_pt)
        return true;
    for (k = 0; k < leg->media_info.ndtmf; k++) {
        if (pt == leg->media_info.dtmf_pt[k])
            return true;
    }
    return false;
}

/* Whether an RTP packet comes from the party (SIP.md section 2): from the
 * address of its SDP (any port: carriers often send from another port than
 * they receive on), or, with --rtp-latch, from the one source latched on the
 * first packet with a negotiated payload type. */
static bool rtp_from_party(struct sip_leg *leg, const struct sa *src, int pt)
{
    const struct sa *sdp;

    if (!leg->media_info.ready)
        return false;
    if (leg->latched)
        return sa_cmp(src, &leg->latch, SA_ALL);
    if (leg->ep->rtp_latch) {
        char ip[64] = "";

        if (!pt_negotiated(leg, pt))
            return false;
        leg->latch = *src;
        leg->latched = true;
        (void)sa_ntop(src, ip, sizeof(ip));
        log_info("msg=\"RTP latched\" src=%s port=%u", ip, sa_port(src));
        return true;
    }
    sdp = sdp_media_raddr(leg->media);
    return sdp && sa_isset(sdp, SA_ADDR) && sa_cmp(src, sdp, SA_ADDR);
}

static void on_rtp(const struct sa *src, const struct rtp_header *hdr, struct mbuf *mb, void *arg)
{
    struct sip_leg *leg = arg;

    if (leg->dead)
        return;
    if (!rtp_from_party(leg, src, hdr->pt)) {
        atomic_fetch_add(&stat_rtp_dropped_source, 1);
        return;
    }
    /* Only audio is timed: RFC 4733 events keep their start's timestamp. */
    rtpstats_packet(&leg->rx, hdr->ssrc, hdr->seq, hdr->ts, clock_mono_ns(),
                    hdr->pt == leg->media_info.audio_pt);
    /* Any packet of the party's keeps the call: comfort noise, telephone
     * events, RTCP multiplexed on the RTP port. */
    leg->rx_ms = clock_mono_ms();
    if (!leg->ep->h.rtp)
        return;
    leg->ep->h.rtp(leg->arg, hdr->pt, hdr->ts, hdr->m, mbuf_buf(mb), mbuf_get_left(mb));
}

/* Reads the negotiation: the first audio codec of ours in the party's
 * order, and every telephone-event payload type either side named (SIPp's
 * play_dtmf sends 96 whatever was agreed). */
static void media_settle(struct sip_leg *leg)
{
    struct sip_media *mi = &leg->media_info;
    const struct list *lst;
    struct le *le;
    int i;

    memset(mi, 0, sizeof(*mi));
    for (i = 0; i < 2; i++) {
        lst = sdp_media_format_lst(leg->media, i == 1);
        for (le = lst ? lst->head : NULL; le; le = le->next) {
            const struct sdp_format *f = le->data;
            bool have = false;
            int k;

            if (!f->name)
                continue;
            if (i == 0 && !mi->ready &&
                (!strcasecmp(f->name, "PCMA") || !strcasecmp(f->name, "PCMU"))) {
                mi->ready = true;
                mi->alaw = !strcasecmp(f->name, "PCMA");
                mi->audio_pt = f->pt;
                continue;
            }
            if (strcasecmp(f->name, "telephone-event"))
                continue;
            if (i == 0 && !mi->dtmf_send && f->srate == 8000) {
                mi->dtmf_send = true;
                mi->dtmf_send_pt = f->pt;
            }
            for (k = 0; k < mi->ndtmf; k++)
                have = have || mi->dtmf_pt[k] == f->pt;
            if (!have && mi->ndtmf < (int)(sizeof(mi->dtmf_pt) / sizeof(int)))
                mi->dtmf_pt[mi->ndtmf++] = f->pt;
        }
    }
}

void sip_leg_rtp_stats(const struct sip_leg *leg, struct sip_rtp_stats *out)
{
    struct rtpstats_summary sum;

    rtpstats_read(&leg->rx, &sum);
    out->received = sum.received;
    out->lost = sum.lost;
    out->jitter_us = sum.jitter_us;
    out->has_jitter = sum.has_jitter;
}

void sip_leg_media(const struct sip_leg *leg, struct sip_media *out)
{
    *out = leg->media_info;
    out->srtp = leg->srtp != NULL;
}

/* --- SRTP (SDES, RFC 4568) --- */

/* A copy for libsrtp2, which wants packets 4-byte aligned; the loop's
 * thread only. */
static _Alignas(8) uint8_t srtp_scratch[SRTPSESS_PACKET_MAX];

/* Every datagram on a leg's RTP socket, before libre reads it as RTP:
 * with SRTP, unprotected in place; one that does not authenticate (a
 * stranger's, a replay) is dropped and counted. */
static bool on_srtp_recv(struct sa *src, struct mbuf *mb, void *arg)
{
    struct sip_leg *leg = arg;
    uint8_t *p = mbuf_buf(mb);
    size_t len = mbuf_get_left(mb), n = 0;
    bool copy = ((uintptr_t)p & 3) != 0;
    enum err e;

    (void)src;
    if (!leg->srtp)
        return false;
    if (len > sizeof(srtp_scratch)) {
        atomic_fetch_add(&stat_srtp_dropped, 1);
        return true;
    }
    if (copy)
        memcpy(srtp_scratch, p, len);
    e = srtpsess_unprotect(leg->srtp, copy ? srtp_scratch : p, len, &n);
    if (e != ERR_OK) {
        atomic_fetch_add(e == ERR_CONFLICT ? &stat_srtp_replayed : &stat_srtp_dropped, 1);
        return true;
    }
    if (copy)
        memcpy(p, srtp_scratch, n);
    mb->end = mb->pos + n;
    return false;
}

/* Every RTP packet the leg sends: with SRTP, protected in place (the tag
 * appended). A packet that cannot be protected is not sent. */
static bool on_srtp_send(int *err, struct sa *dst, struct mbuf *mb, void *arg)
{
    struct sip_leg *leg = arg;
    size_t len = mbuf_get_left(mb), tag, n = 0;
    uint8_t *p;
    bool copy;

    (void)dst;
    if (!leg->srtp)
        return false;
    tag = srtpsess_tag_len(leg->srtp);
    if (mb->size - mb->pos < len + tag && mbuf_resize(mb, mb->pos + len + tag) != 0) {
        *err = ENOMEM;
        return true;
    }
    p = mbuf_buf(mb);
    copy = ((uintptr_t)p & 3) != 0;
    if (copy) {
        if (len + tag > sizeof(srtp_scratch)) {
            *err = EMSGSIZE;
            return true;
        }
        memcpy(srtp_scratch, p, len);
    }
    if (srtpsess_protect(leg->srtp, copy ? srtp_scratch : p, len,
                         copy ? sizeof(srtp_scratch) : mb->size - mb->pos, &n) != ERR_OK) {
        *err = EPROTO;
        return true;
    }
    if (copy)
        memcpy(p, srtp_scratch, n);
    mb->end = mb->pos + n;
    return false;
}

/* The a=crypto values of the party's SDP for this leg's audio. */
struct crypto_vals {
    const char *v[8];
    size_t l[8];
    size_t n;
};

static bool crypto_val(const char *name, const char *value, void *arg)
{
    struct crypto_vals *cv = arg;

    (void)name;
    if (value && cv->n < sizeof(cv->v) / sizeof(cv->v[0])) {
        cv->v[cv->n] = value;
        cv->l[cv->n] = strlen(value);
        cv->n++;
    }
    return false;
}

static void crypto_vals_get(const struct sip_leg *leg, struct crypto_vals *cv)
{
    memset(cv, 0, sizeof(*cv));
    (void)sdp_media_rattr_apply(leg->media, "crypto", crypto_val, cv);
}

/* Our crypto line into the leg's SDP. */
static int leg_crypto_lattr(struct sip_leg *leg)
{
    char line[SDES_FORMAT_MAX];
    size_t n;
    int rc;

    if (sdes_format(&leg->crypto_ours, line, sizeof(line), &n) != ERR_OK)
        return EINVAL;
    rc = sdp_media_set_lattr(leg->media, true, "crypto", "%s", line);
    explicit_bzero(line, sizeof(line));
    return rc;
}

/* Both keys known: the session, and the hook that uses it. */
static enum err leg_srtp_start(struct sip_leg *leg, const struct sdes_crypto *theirs)
{
    enum err e =
        srtpsess_new(leg->crypto_ours.suite, leg->crypto_ours.key, theirs->key, &leg->srtp);

    if (e != ERR_OK) {
        log_warn("msg=\"SRTP session not created\" err=%s", err_str(e));
        return e;
    }
    if (udp_register_helper(&leg->srtp_uh, rtp_sock(leg->rtp), 0, on_srtp_send, on_srtp_recv,
                            leg) != 0) {
        srtpsess_free(leg->srtp);
        leg->srtp = NULL;
        return ERR_NOMEM;
    }
    log_info("msg=\"SRTP\" call_id=%s suite=%s", leg->callid,
             leg->crypto_ours.suite == SDES_AES_CM_128_HMAC_SHA1_32 ? "AES_CM_128_HMAC_SHA1_32"
                                                                    : "AES_CM_128_HMAC_SHA1_80");
    return ERR_OK;
}

/* Outbound: the answer's crypto, for the line we offered (same tag and
 * suite). Without it, --srtp offer goes on in plain RTP; --srtp require
 * ends the call (FAILED "88") and sends no audio. */
static void leg_srtp_answered(struct sip_leg *leg)
{
    struct crypto_vals cv;
    struct sdes_crypto theirs;
    size_t i;
    bool found = false;

    if (!leg->srtp_offered || leg->srtp)
        return;
    crypto_vals_get(leg, &cv);
    for (i = 0; i < cv.n && !found; i++) {
        found = sdes_parse(cv.v[i], cv.l[i], &theirs) == ERR_OK &&
                theirs.tag == leg->crypto_ours.tag && theirs.suite == leg->crypto_ours.suite;
    }
    if (found && leg_srtp_start(leg, &theirs) == ERR_OK) {
        explicit_bzero(&theirs, sizeof(theirs));
        return;
    }
    explicit_bzero(&theirs, sizeof(theirs));
    if (leg->ep->srtp == SIP_SRTP_REQUIRE) {
        log_warn("msg=\"answer without acceptable SRTP crypto: the call ends (--srtp require)\" "
                 "call_id=%s",
                 leg->callid);
        leg->srtp_refused = true;
        leg->media_info.ready = false; /* not one packet in clear */
    } else {
        log_info("msg=\"answer without SRTP crypto: plain RTP\" call_id=%s", leg->callid);
    }
}

/* Inbound: the offer's crypto. Returns false when the INVITE must be
 * refused with 488 (--srtp require without TLS or acceptable crypto, or
 * an RTP/SAVP offer none of whose lines we take). */
static bool leg_srtp_offered(struct sip_leg *leg, const struct sip_msg *msg)
{
    struct crypto_vals cv;
    struct sdes_crypto theirs;
    const char *proto = sdp_media_proto(leg->media);
    bool savp = proto && !strcasecmp(proto, "RTP/SAVP");
    bool ok;

    if (leg->ep->srtp == SIP_SRTP_OFF)
        return true; /* an RTP/SAVP offer matched no media of ours: no codec, 488 */
    if (leg->ep->srtp == SIP_SRTP_REQUIRE && msg->tp != SIP_TRANSP_TLS) {
        log_warn("msg=\"INVITE refused (488): --srtp require and it did not come over TLS\"");
        return false;
    }
    crypto_vals_get(leg, &cv);
    ok = cv.n && sdes_choose(cv.v, cv.l, cv.n, &theirs, &leg->crypto_ours) == ERR_OK;
    if (ok) {
        ok = leg_crypto_lattr(leg) == 0 && leg_srtp_start(leg, &theirs) == ERR_OK;
        explicit_bzero(&theirs, sizeof(theirs));
        return ok;
    }
    if (leg->ep->srtp == SIP_SRTP_REQUIRE || savp) {
        log_warn("msg=\"INVITE refused (488): no acceptable SRTP crypto in the offer\" "
                 "crypto_lines=%zu",
                 cv.n);
        return false;
    }
    return true; /* --srtp offer, an RTP/AVP offer: plain RTP */
}

enum err sip_leg_send_audio(struct sip_leg *leg, const uint8_t *payload, size_t len)
{
    const struct sa *dst;
    struct mbuf *mb;
    int rc;

    if (leg->dead || !leg->media_info.ready || !len)
        return ERR_UNAVAILABLE;
    if (leg->no_send) {
        /* On hold: the time goes on, the audio is not sent. */
        leg->tx_ts += (uint32_t)len;
        return ERR_OK;
    }
    dst = leg->latched ? &leg->latch : sdp_media_raddr(leg->media);
    if (!dst || !sa_isset(dst, SA_ALL))
        return ERR_UNAVAILABLE;
    /* Room for an SRTP tag too, so that protecting never reallocates. */
    mb = mbuf_alloc(RTP_HEADER_SIZE + len + SRTPSESS_TAG_80);
    if (!mb)
        return ERR_NOMEM;
    mb->pos = RTP_HEADER_SIZE;
    rc = mbuf_write_mem(mb, payload, len);
    mb->pos = RTP_HEADER_SIZE;
    if (!rc)
        rc = rtp_send(leg->rtp, dst, false, !leg->tx_started, (uint8_t)leg->media_info.audio_pt,
                      leg->tx_ts, mb);
    mem_deref(mb);
    leg->tx_started = true;
    leg->tx_ts += (uint32_t)len;
    return rc ? ERR_UNAVAILABLE : ERR_OK;
}

enum err sip_leg_send_event(struct sip_leg *leg, uint8_t event, bool start, bool end,
                            uint16_t duration, uint32_t advance)
{
    const struct sa *dst;
    struct mbuf *mb;
    int rc;

    if (leg->dead || !leg->media_info.ready || !leg->media_info.dtmf_send || event > 15)
        return ERR_UNAVAILABLE;
    if (start)
        leg->ev_ts = leg->tx_ts;
    if (leg->no_send) {
        leg->tx_ts += advance;
        return ERR_OK;
    }
    dst = leg->latched ? &leg->latch : sdp_media_raddr(leg->media);
    if (!dst || !sa_isset(dst, SA_ALL))
        return ERR_UNAVAILABLE;
    mb = mbuf_alloc(RTP_HEADER_SIZE + 4 + SRTPSESS_TAG_80);
    if (!mb)
        return ERR_NOMEM;
    mb->pos = RTP_HEADER_SIZE;
    /* RFC 4733 2.3: event, E|R|volume (10: -10 dBm0), duration. */
    rc = mbuf_write_u8(mb, event);
    rc |= mbuf_write_u8(mb, (uint8_t)((end ? 0x80 : 0) | 10));
    rc |= mbuf_write_u16(mb, htons(duration));
    mb->pos = RTP_HEADER_SIZE;
    if (!rc)
        rc = rtp_send(leg->rtp, dst, false, start, (uint8_t)leg->media_info.dtmf_send_pt,
                      leg->ev_ts, mb);
    mem_deref(mb);
    leg->tx_started = true;
    leg->tx_ts += advance;
    return rc ? ERR_UNAVAILABLE : ERR_OK;
}

static enum err leg_new(struct sip_ep *ep, void *leg_arg, bool outbound, struct sip_leg **out)
{
    struct sip_leg *leg = calloc(1, sizeof(*leg));
    struct sa ip;
    int rc;

    if (!leg)
        return ERR_NOMEM;
    leg->ep = ep;
    leg->arg = leg_arg;
    leg->outbound = outbound;
    rtpstats_init(&leg->rx, 8000); /* G.711's clock */
    tmr_init(&leg->report_tmr);
    tmr_init(&leg->reap_tmr);
    tmr_init(&leg->rtp_tmr);
    ip = ep->laddr;
    sa_set_port(&ip, 0);
    rc = rtp_listen(&leg->rtp, IPPROTO_UDP, &ip, (uint16_t)ep->rtp_low, (uint16_t)ep->rtp_high,
                    false, on_rtp, NULL, leg);
    if (rc) {
        log_warn("msg=\"no free media port\" range=%d-%d err=%d", ep->rtp_low, ep->rtp_high, rc);
        free(leg);
        return ERR_UNAVAILABLE;
    }
    rc = sdp_session_alloc(&leg->sdp, &ep->media_addr);
    if (!rc)
        rc = sdp_media_add(&leg->media, leg->sdp, "audio", sa_port(rtp_local(leg->rtp)),
                           outbound && ep->srtp == SIP_SRTP_REQUIRE ? "RTP/SAVP" : "RTP/AVP");
    /* An offer of SRTP (RTP/SAVP) is read only when SRTP is on. */
    if (!rc && !outbound && ep->srtp != SIP_SRTP_OFF)
        rc = sdp_media_set_alt_protos(leg->media, 2, "RTP/AVP", "RTP/SAVP");
    if (!rc)
        rc = sdp_format_add(NULL, leg->media, false, "8", "PCMA", 8000, 1, NULL, NULL, NULL, false,
                            NULL);
    if (!rc)
        rc = sdp_format_add(NULL, leg->media, false, "0", "PCMU", 8000, 1, NULL, NULL, NULL, false,
                            NULL);
    if (!rc)
        rc = sdp_format_add(NULL, leg->media, false, "101", "telephone-event", 8000, 1, NULL, NULL,
                            NULL, false, "0-15");
    if (!rc)
        rc = sdp_format_add(NULL, leg->media, false, "96", "telephone-event", 8000, 1, NULL, NULL,
                            NULL, false, "0-15");
    if (rc) {
        mem_deref(leg->sdp);
        mem_deref(leg->rtp);
        free(leg);
        return ERR_NOMEM;
    }
    leg->next = ep->legs;
    if (ep->legs)
        ep->legs->prev = leg;
    ep->legs = leg;
    *out = leg;
    return ERR_OK;
}

/* --- the dialog's media after the first offer and answer --- */

static void on_rtp_tmr(void *arg);

/* Runs the RTP timeout while the call is established and not on hold. */
static void leg_rtp_timer(struct sip_leg *leg)
{
    bool want = leg->ep->rtp_timeout_ms > 0 && leg->established && !leg->held && !leg->dead &&
                !leg->pending_closed && leg->media_info.ready;

    if (want && !leg->timing) {
        leg->rx_ms = clock_mono_ms(); /* counts from now: establishment or resumption */
        tmr_start(&leg->rtp_tmr, (uint64_t)leg->ep->rtp_timeout_ms, on_rtp_tmr, leg);
    } else if (!want && leg->timing)
        tmr_cancel(&leg->rtp_tmr);
    leg->timing = want;
}

static void on_rtp_tmr(void *arg)
{
    struct sip_leg *leg = arg;
    int64_t idle = clock_mono_ms() - leg->rx_ms;

    if (!leg->timing || leg->dead || leg->pending_closed)
        return;
    if (idle < leg->ep->rtp_timeout_ms) {
        tmr_start(&leg->rtp_tmr, (uint64_t)(leg->ep->rtp_timeout_ms - idle), on_rtp_tmr, leg);
        return;
    }
    log_warn("msg=\"no RTP from the party: the call ends\" call_id=%s idle_ms=%lld", leg->callid,
             (long long)idle);
    leg->timing = false;
    leg->pending_closed = true;
    leg->closed_code = 0;
    leg->closed_cause = 102;
    leg->closed_timeout = false;
    leg_schedule(leg);
}

/* After the party's SDP was taken: hold (a=sendonly or a=inactive, or the
 * older c=0.0.0.0), the answer's direction, a moved address, the timer. */
static void leg_media_applied(struct sip_leg *leg, bool offer)
{
    const struct sa *ra = sdp_media_raddr(leg->media);
    enum sdp_dir rdir = sdp_media_rdir(leg->media);
    bool nulled = !ra || !sa_isset(ra, SA_ADDR) || sa_is_any(ra);
    bool held = nulled || rdir != SDP_SENDRECV;

    /* Our answer: libre writes our direction and theirs together; a party
     * that nulls its address still gets recvonly (or inactive). */
    if (offer)
        sdp_media_set_ldir(leg->media, nulled ? SDP_RECVONLY : SDP_SENDRECV);
    if (held != leg->held)
        log_info("msg=\"%s\" call_id=%s", held ? "call held by the party" : "call resumed",
                 leg->callid);
    leg->held = held;
    leg->no_send = nulled || !(rdir & SDP_SENDONLY);
    if (leg->latched && ra && sa_isset(ra, SA_ADDR) && !sa_is_any(ra) &&
        !sa_cmp(ra, &leg->latch, SA_ADDR)) {
        leg->latched = false; /* the party moved: latch again */
    }
    leg_rtp_timer(leg);
}

/* Keeps a copy of the party's SDP just taken, to put back if a later one
 * is refused. */
static void leg_keep_sdp(struct sip_leg *leg, const struct mbuf *mb, bool offer)
{
    struct mbuf *copy = mbuf_alloc(mbuf_get_left(mb) + 1);

    if (!copy)
        return;
    if (mbuf_write_mem(copy, mbuf_buf(mb), mbuf_get_left(mb)) != 0) {
        mem_deref(copy);
        return;
    }
    copy->pos = 0;
    mem_deref(leg->rsdp);
    leg->rsdp = copy;
    leg->rsdp_offer = offer;
}

/* Takes the party's SDP of a dialog under way (a re-INVITE's or UPDATE's
 * offer, the answer in an ACK or a provisional response). One without a
 * codec of ours, or that does not parse, is refused and the media stay
 * as they were. */
static int leg_take_sdp(struct sip_leg *leg, struct mbuf *mb, bool offer)
{
    struct sip_media before = leg->media_info;
    int rc = sdp_decode(leg->sdp, mb, offer);

    if (!rc) {
        media_settle(leg);
        if (!leg->media_info.ready)
            rc = EPROTO;
    }
    if (rc) {
        if (leg->rsdp) {
            leg->rsdp->pos = 0;
            (void)sdp_decode(leg->sdp, leg->rsdp, leg->rsdp_offer);
            media_settle(leg);
        }
        log_info("msg=\"party's SDP refused: no codec of ours\" call_id=%s", leg->callid);
        return rc;
    }
    if (before.ready &&
        (before.alaw != leg->media_info.alaw || before.audio_pt != leg->media_info.audio_pt))
        log_info("msg=\"party changed codec\" call_id=%s codec=%s pt=%d", leg->callid,
                 leg->media_info.alaw ? "PCMA" : "PCMU", leg->media_info.audio_pt);
    leg_keep_sdp(leg, mb, offer);
    leg_media_applied(leg, offer);
    return 0;
}

/* An offer of ours for a re-INVITE that brought none: the codec in use
 * (and telephone-event), sending and receiving, on our media port. */
static int leg_offer_current(struct sip_leg *leg, struct mbuf **descp)
{
    const struct list *lst = sdp_media_format_lst(leg->media, true);
    struct le *le;

    for (le = lst ? lst->head : NULL; le; le = le->next) {
        struct sdp_format *f = le->data;

        if (f->name && (!strcasecmp(f->name, "PCMA") || !strcasecmp(f->name, "PCMU")))
            f->sup = !strcasecmp(f->name, leg->media_info.alaw ? "PCMA" : "PCMU");
    }
    sdp_media_set_ldir(leg->media, SDP_SENDRECV);
    return sdp_encode(descp, leg->sdp, true);
}

/* A re-INVITE's offer: answered from the negotiated formats; a re-INVITE
 * without one gets ours, and its ACK brings the answer (on_answer). */
static int on_offer(struct mbuf **descp, const struct sip_msg *msg, void *arg)
{
    struct sip_leg *leg = arg;
    int rc;

    if (!mbuf_get_left(msg->mb))
        return leg_offer_current(leg, descp);
    rc = leg_take_sdp(leg, msg->mb, true);
    if (rc)
        return rc;
    return sdp_encode(descp, leg->sdp, false);
}

static int on_answer(const struct sip_msg *msg, void *arg)
{
    struct sip_leg *leg = arg;
    int rc;

    if (!leg->rsdp) {
        /* The answer to our INVITE's offer. An answer may have come in a
         * provisional response already; a 200 without one keeps it. */
        rc = sdp_decode(leg->sdp, msg->mb, false);
        if (!rc) {
            media_settle(leg);
            leg_srtp_answered(leg);
            leg_keep_sdp(leg, msg->mb, false);
            leg_media_applied(leg, false);
        }
        return rc;
    }
    if (!mbuf_get_left(msg->mb))
        return 0;
    return leg_take_sdp(leg, msg->mb, false);
}

/* SIP INFO in the dialog: a key press (SIP.md section 4). libre answers
 * one outside a dialog (481) and one out of CSeq order (500) itself, and
 * its transaction layer absorbs retransmissions; the same request sent
 * again as a new transaction (the same CSeq) is answered and not reported
 * again: one key press, one event, as with RFC 4733. */
static void on_info(struct sip *sip, const struct sip_msg *msg, void *arg)
{
    struct sip_leg *leg = arg;
    enum dtmfinfo_kind kind;
    char digit = 0;

    if (!mbuf_get_left(msg->mb)) {
        (void)sip_reply(sip, msg, 200, "OK");
        return;
    }
    if (msg_ctype_cmp(&msg->ctyp, "application", "dtmf-relay"))
        kind = DTMFINFO_RELAY;
    else if (msg_ctype_cmp(&msg->ctyp, "application", "dtmf"))
        kind = DTMFINFO_PLAIN;
    else {
        (void)sip_treplyf(NULL, NULL, sip, msg, false, 415, "Unsupported Media Type",
                          "Accept: application/dtmf-relay, application/dtmf\r\n"
                          "Content-Length: 0\r\n\r\n");
        return;
    }
    (void)sip_reply(sip, msg, 200, "OK");
    if (dtmfinfo_parse(kind, (const char *)mbuf_buf(msg->mb), mbuf_get_left(msg->mb), &digit) !=
        ERR_OK) {
        log_info("msg=\"INFO without a key press we read\" call_id=%s", leg->callid);
        return;
    }
    if (leg->info_seen && msg->cseq.num == leg->info_cseq)
        return;
    leg->info_seen = true;
    leg->info_cseq = msg->cseq.num;
    if (leg->dead || leg->pending_closed || leg->npending_dtmf >= (int)sizeof(leg->pending_dtmf))
        return;
    leg->pending_dtmf[leg->npending_dtmf++] = digit;
    leg_schedule(leg);
}

static void on_progress(const struct sip_msg *msg, void *arg)
{
    struct sip_leg *leg = arg;

    /* Early media: a 183's SDP is the answer to come (a 200 without SDP
     * keeps it). No audio flows before the 200 all the same: the bridge
     * opens on the answer. With SRTP the 200's answer alone is read. */
    if (msg->scode > 100 && mbuf_get_left(msg->mb) && !leg->srtp_offered &&
        msg_ctype_cmp(&msg->ctyp, "application", "sdp") &&
        sdp_decode(leg->sdp, msg->mb, false) == 0) {
        media_settle(leg);
        leg_keep_sdp(leg, msg->mb, false);
        leg_media_applied(leg, false);
    }

    if (leg->npending_progress < (int)(sizeof(leg->pending_progress) / sizeof(int)))
        leg->pending_progress[leg->npending_progress++] = msg->scode;
    leg_schedule(leg);
}

/* The connection of an established TCP or TLS dialog died: its CRLF ping
 * went unanswered (RFC 5626 section 4.4.1) or it closed. The party can no
 * longer reach us in the dialog, so the call ends as on a timer's expiry. */
static void on_keepalive(int err, void *arg)
{
    struct sip_leg *leg = arg;

    leg->ka = NULL; /* libre has freed it */
    if (leg->dead || leg->pending_closed)
        return;
    log_warn("msg=\"SIP connection of a call lost: the call ends\" call_id=%s why=\"%s\"",
             leg->callid, strerror(err ? err : ECONNRESET));
    leg->pending_closed = true;
    leg->closed_code = 0;
    leg->closed_cause = 102;
    leg->closed_timeout = false;
    leg_schedule(leg);
}

static void on_estab(const struct sip_msg *msg, void *arg)
{
    struct sip_leg *leg = arg;

    /* Over TCP and TLS, a ping every two minutes or so keeps NAT and
     * firewall state and notices a dead connection. */
    if (msg && !leg->ka && (msg->tp == SIP_TRANSP_TCP || msg->tp == SIP_TRANSP_TLS) &&
        sip_keepalive_start(&leg->ka, leg->ep->sip, msg, 0, on_keepalive, leg) != 0)
        log_warn("msg=\"SIP keep-alive not started for a call\"");
    leg->established = true;
    ids_established(leg, msg);
    if (leg->outbound && leg->srtp_refused && !leg->pending_closed) {
        /* Answered without the SRTP --srtp require asks for: as a 488. */
        leg->pending_closed = true;
        leg->closed_code = 488;
        leg->closed_cause = 0;
        leg->closed_timeout = false;
    } else if (leg->outbound)
        leg->pending_answered = true;
    else
        leg->pending_confirmed = true; /* the caller's ACK */
    leg_rtp_timer(leg);
    leg_schedule(leg);
}

/* The Contact of a leg on transport tp: libre prints a bare user with the
 * address the message went out from (UDP: rewritten when advertising), a
 * full URI as it is. */
static const char *ep_cuser(const struct sip_ep *ep, enum policy_tp tp)
{
    if (tp == POLICY_TP_TCP && ep->contact_tcp[0])
        return ep->contact_tcp;
    if (tp == POLICY_TP_TLS && ep->contact_tls[0])
        return ep->contact_tls;
    return ep->cuser;
}

static void on_close(int err, const struct sip_msg *msg, void *arg)
{
    struct sip_leg *leg = arg;

    if (leg->pending_closed)
        return;
    leg->pending_closed = true;
    leg->closed_code = 0;
    leg->closed_cause = 0;
    leg->closed_timeout = false;
    if (msg && !msg->req && msg->scode >= 300) {
        leg->closed_code = msg->scode;
        leg->closed_cause = msg_reason_cause(msg);
    } else if (err == ETIMEDOUT) {
        leg->closed_timeout = true;
    } else if (err && !msg && leg->outbound && !leg->established) {
        /* A transport error before any final response (a TCP or TLS
         * connection refused or reset, a certificate not accepted): as
         * RFC 3261 section 8.1.3.1 says, a 503. */
        log_warn("msg=\"INVITE not delivered: transport error\" why=\"%s\"", strerror(err));
        leg->closed_code = 503;
    } else {
        /* The party's BYE or CANCEL: libre tells them apart no further. */
        leg->closed_cause = leg->remote_cause;
    }
    leg_schedule(leg);
}

/* Keeps the Reason of the party's BYE or CANCEL: libre's close report
 * carries no message for them, and a CANCEL never reaches a request
 * listener (the transaction layer takes it). The trace hook sees every
 * datagram received, before libre acts on it. */
static void on_trace(bool tx, enum sip_transp tp, const struct sa *src, const struct sa *dst,
                     const uint8_t *pkt, size_t len, void *arg)
{
    struct sip_ep *ep = arg;
    struct sip_msg *msg = NULL;
    struct sip_leg *leg;
    struct mbuf *mb;

    (void)tp;
    (void)src;
    (void)dst;
    if (tx || !ep || len < 4 ||
        (memcmp(pkt, "BYE ", 4) != 0 && (len < 7 || memcmp(pkt, "CANCEL ", 7) != 0)))
        return;
    mb = mbuf_alloc(len);
    if (!mb)
        return;
    if (mbuf_write_mem(mb, pkt, len) == 0) {
        mb->pos = 0;
        if (sip_msg_decode(&msg, mb) == 0) {
            for (leg = ep->legs; leg; leg = leg->next) {
                if (!pl_strcmp(&msg->callid, leg->callid)) {
                    leg->remote_cause = msg_reason_cause(msg);
                    break;
                }
            }
            mem_deref(msg);
        }
    }
    mem_deref(mb);
}

const char *sip_incoming_to(const struct sip_incoming *in)
{
    return in->to;
}

const char *sip_incoming_from(const struct sip_incoming *in)
{
    return in->from;
}

const struct xheaders *sip_incoming_xheaders(const struct sip_incoming *in)
{
    return &in->xh;
}

enum err sip_leg_answer(struct sip_leg *leg)
{
    struct mbuf *desc = NULL;
    int rc;

    if (leg->dead || leg->outbound || leg->established || leg->pending_closed || !leg->sess)
        return ERR_CONFLICT;
    rc = sdp_encode(&desc, leg->sdp, false);
    if (!rc)
        rc = sipsess_answer(leg->sess, 200, "OK", desc, NULL);
    mem_deref(desc);
    if (rc)
        return ERR_INTERNAL;
    leg->established = true; /* our 200 OK is out; libre retransmits it until the ACK */
    return ERR_OK;
}

enum err sip_leg_accept(struct sip_ep *ep, struct sip_incoming *in, void *leg_arg, bool answer_now,
                        struct sip_leg **out)
{
    struct sip_leg *leg;
    enum err e;
    int rc;

    if (in->accepted)
        return ERR_CONFLICT;
    e = leg_new(ep, leg_arg, false, &leg);
    if (e != ERR_OK)
        return e;
    pl_strcpy(&in->msg->callid, leg->callid, sizeof(leg->callid));
    ids_from_invite(leg, in->msg);
    rc = sdp_decode(leg->sdp, in->msg->mb, true);
    if (!rc)
        media_settle(leg);
    if (rc || !leg->media_info.ready || !leg_srtp_offered(leg, in->msg)) {
        in->no_codec = true;
        e = ERR_INVALID;
        goto out_leg;
    }
    leg_keep_sdp(leg, in->msg->mb, true);
    leg_media_applied(leg, true);
    /* A held INVITE's transaction gives way to the session's own. */
    in->st = mem_deref(in->st);
    rc = sipsess_accept(&leg->sess, ep->sock, in->msg, 180, "Ringing",
                        ep_cuser(ep, in->msg->tp == SIP_TRANSP_TLS   ? POLICY_TP_TLS
                                     : in->msg->tp == SIP_TRANSP_TCP ? POLICY_TP_TCP
                                                                     : POLICY_TP_UDP),
                        "application/sdp", NULL, NULL, NULL, false, on_offer, on_answer, on_estab,
                        on_info, NULL, on_close, leg, NULL);
    if (rc) {
        e = ERR_INTERNAL;
        goto out_leg;
    }
    if (answer_now && sip_leg_answer(leg) != ERR_OK) {
        e = ERR_INTERNAL;
        goto out_leg;
    }
    in->accepted = leg;
    *out = leg;
    return ERR_OK;

out_leg:
    leg_unlink(leg);
    leg->dead = true;
    leg_reap(leg);
    return e;
}

/* xh as header lines "Name: value\r\n", "" for none. */
static void xheader_lines(const struct xheaders *xh, char *out, size_t size)
{
    size_t i, len = 0;

    out[0] = '\0';
    for (i = 0; xh && i < xh->n && i < XHEADERS_MAX; i++) {
        int n = snprintf(out + len, size - len, "%s: %s\r\n", xh->h[i].name, xh->h[i].value);

        if (n < 0 || (size_t)n >= size - len) {
            out[len] = '\0'; /* cannot happen: sized for XHEADERS_MAX whole lines */
            return;
        }
        len += (size_t)n;
    }
}

enum err sip_leg_dial(struct sip_ep *ep, const char *from_user, const char *to_user,
                      const struct xheaders *xh, void *leg_arg, struct sip_leg **out)
{
    struct sip_leg *leg;
    struct mbuf *desc = NULL;
    char to_uri[HOST_MAX + 160], from_uri[2 * HOST_MAX], pai[2 * HOST_MAX + 40] = "";
    char extra[XHEADERS_MAX * (XHEADER_NAME_MAX + XHEADER_VALUE_MAX + 4) + 1];
    const char *routev[1] = {ep->route};
    enum err e;
    int rc;

    if (!ep->has_trunk)
        return ERR_UNAVAILABLE;
    if (snprintf(to_uri, sizeof(to_uri), "sip:%s@%s", to_user, ep->trunk_target) >=
            (int)sizeof(to_uri) ||
        snprintf(from_uri, sizeof(from_uri), "sip:%s@%s", ep->caller_id_pai ? ep->user : from_user,
                 ep->from_domain) >= (int)sizeof(from_uri))
        return ERR_INVALID;
    if (ep->caller_id_pai && snprintf(pai, sizeof(pai), "P-Asserted-Identity: <sip:%s@%s>\r\n",
                                      from_user, ep->from_domain) >= (int)sizeof(pai))
        return ERR_INVALID;
    xheader_lines(xh, extra, sizeof(extra));
    e = leg_new(ep, leg_arg, true, &leg);
    if (e != ERR_OK)
        return e;
    rc = 0;
    if (ep->srtp != SIP_SRTP_OFF) {
        sdes_generate(&leg->crypto_ours, 1, SDES_AES_CM_128_HMAC_SHA1_80);
        rc = leg_crypto_lattr(leg);
        leg->srtp_offered = rc == 0;
    }
    if (!rc)
        rc = sdp_encode(&desc, leg->sdp, true);
    if (!rc)
        rc = sipsess_connect(&leg->sess, ep->sock, to_uri, NULL, from_uri,
                             ep_cuser(ep, ep->dial_tp), ep->route[0] ? routev : NULL,
                             ep->route[0] ? 1 : 0, "application/sdp", desc, auth_handler, ep, false,
                             on_offer, on_answer, on_progress, on_estab, on_info, NULL, on_close,
                             leg, "%s%s%s", pai, ep->headers, extra);
    mem_deref(desc);
    if (rc) {
        log_warn("msg=\"INVITE not sent\" why=\"%s\"", strerror(rc));
        leg_unlink(leg);
        leg->dead = true;
        leg_reap(leg);
        return ERR_UNAVAILABLE;
    }
    {
        const char *cid = sip_dialog_callid(sipsess_dialog(leg->sess));

        if (cid)
            snprintf(leg->callid, sizeof(leg->callid), "%s", cid);
    }
    *out = leg;
    return ERR_OK;
}

/* Refuses an INVITE not accepted with the invite callback's code, through
 * its held transaction if any. */
static void incoming_refuse(struct sip_ep *ep, struct sip_incoming *in, int code,
                            unsigned retry_after_s)
{
    const char *reason = "Server Internal Error";
    char ra[32] = "";

    if (in->no_codec)
        code = 488;
    switch (code) {
    case 404: reason = "Not Found"; break;
    case 480: reason = "Temporarily Unavailable"; break;
    case 488: reason = "Not Acceptable Here"; break;
    case 503: reason = "Service Unavailable"; break;
    default: code = 500; break;
    }
    if (retry_after_s)
        snprintf(ra, sizeof(ra), "Retry-After: %u\r\n", retry_after_s);
    (void)sip_treplyf(in->st ? &in->st : NULL, NULL, ep->sip, in->msg, false, (uint16_t)code,
                      reason, "%sContent-Length: 0\r\n\r\n", ra);
}

struct sip_held {
    struct sip_ep *ep;
    struct sip_incoming in; /* in.msg: a reference of ours */
    bool cancelled;
};

static void on_held_cancel(void *arg)
{
    struct sip_held *h = arg;

    h->cancelled = true;
    (void)sip_treply(&h->in.st, h->ep->sip, h->in.msg, 487, "Request Terminated");
}

enum err sip_incoming_hold(struct sip_ep *ep, struct sip_incoming *in, struct sip_held **out)
{
    struct sip_held *h;

    if (in->accepted || in->held)
        return ERR_CONFLICT;
    h = calloc(1, sizeof(*h));
    if (!h)
        return ERR_NOMEM;
    h->ep = ep;
    h->in = *in;
    if (sip_strans_alloc(&h->in.st, ep->sip, in->msg, on_held_cancel, h) != 0) {
        free(h);
        return ERR_NOMEM;
    }
    h->in.msg = mem_ref((void *)in->msg);
    (void)sip_treply(&h->in.st, ep->sip, h->in.msg, 100, "Trying");
    in->held = h;
    *out = h;
    return ERR_OK;
}

struct sip_incoming *sip_held_incoming(struct sip_held *h)
{
    return h->cancelled ? NULL : &h->in;
}

void sip_held_finish(struct sip_held *h, int code, unsigned retry_after_s)
{
    if (!h)
        return;
    if (!h->cancelled && !h->in.accepted)
        incoming_refuse(h->ep, &h->in, code, retry_after_s);
    /* Answered finally, the transaction lives on by itself (libre's
     * timers); otherwise it is ours to end. */
    h->in.st = mem_deref(h->in.st);
    mem_deref((void *)h->in.msg);
    free(h);
}

static void on_conn(const struct sip_msg *msg, void *arg)
{
    struct sip_ep *ep = arg;
    struct sip_incoming in = {.msg = msg};
    struct sip_peek pk;
    int code;

    msg_peek(msg, ep->user, &pk);
    snprintf(in.to, sizeof(in.to), "%s", pk.called);
    snprintf(in.from, sizeof(in.from), "%s", pk.from);
    msg_xheaders(msg, &in.xh);
    code = ep->h.invite(ep->h.arg, &in);
    if (in.accepted || in.held)
        return;
    incoming_refuse(ep, &in, code, 0);
}

static void on_sip_exit(void *arg)
{
    (void)arg;
}

static enum err parse_hostport(const char *s, struct sa *out)
{
    if (sa_decode(out, s, strlen(s)) != 0)
        return ERR_INVALID;
    return ERR_OK;
}

/* The trunk, the identity of outbound INVITEs, the proxy, the headers and
 * the credentials, from the configuration. */
static enum err ep_configure(struct sip_ep *ep, const struct sip_ep_config *cfg,
                             struct conf_uri *trunk, struct conf_uri *registrar)
{
    struct conf_uri proxy;
    size_t i, len = 1;

    if (cfg->user && strlen(cfg->user) > SIP_CRED_MAX)
        return ERR_INVALID;
    if (cfg->password && strlen(cfg->password) > SIP_CRED_MAX)
        return ERR_INVALID;
    snprintf(ep->user, sizeof(ep->user), "%s", cfg->user ? cfg->user : "");
    snprintf(ep->password, sizeof(ep->password), "%s", cfg->password ? cfg->password : "");
    snprintf(ep->cuser, sizeof(ep->cuser), "%s", ep->user[0] ? ep->user : "sfvopi");
    ep->caller_id_pai = cfg->caller_id_pai;
    if (cfg->trunk && *cfg->trunk) {
        if (conf_uri_parse(cfg->trunk, "--sip-trunk", trunk) != ERR_OK)
            return ERR_INVALID;
        snprintf(ep->trunk_target, sizeof(ep->trunk_target), "%s%s", trunk->hostport,
                 trunk->params);
        snprintf(ep->from_domain, sizeof(ep->from_domain), "%s", trunk->host);
        ep->has_trunk = true;
        ep->dial_tp = trunk->tp;
    }
    if (cfg->from_domain && *cfg->from_domain)
        snprintf(ep->from_domain, sizeof(ep->from_domain), "%s", cfg->from_domain);
    if (cfg->registrar && *cfg->registrar) {
        if (conf_uri_parse(cfg->registrar, "--sip-registrar", registrar) != ERR_OK)
            return ERR_INVALID;
    } else if (ep->has_trunk) {
        *registrar = *trunk;
    }
    if (cfg->outbound_proxy && *cfg->outbound_proxy) {
        if (conf_uri_parse(cfg->outbound_proxy, "--sip-outbound-proxy", &proxy) != ERR_OK)
            return ERR_INVALID;
        /* libre writes it as "Route: <URI;lr>". */
        snprintf(ep->route, sizeof(ep->route), "sip:%s%s", proxy.hostport, proxy.params);
    }
    if (ep->route[0])
        ep->dial_tp = proxy.tp;
    /* The name a TLS peer we call must prove: the first hop's (RFC 5922
     * section 4: the host of the URI, not an SRV target). */
    {
        const struct conf_uri *hop = ep->route[0] && proxy.tp == POLICY_TP_TLS     ? &proxy
                                     : ep->has_trunk && trunk->tp == POLICY_TP_TLS ? trunk
                                     : registrar->host[0] && registrar->tp == POLICY_TP_TLS
                                         ? registrar
                                         : NULL;

        if (hop) {
            const char *h = hop->host;
            size_t hn = strlen(h);

            if (h[0] == '[' && hn > 2) {
                h++;
                hn -= 2;
            }
            snprintf(ep->tls_peer, sizeof(ep->tls_peer), "%.*s", (int)hn, h);
            ep->tls_peer_ip = hop->literal;
        }
        if ((hop || (registrar->host[0] && registrar->tp == POLICY_TP_TLS)) && !ep->tls) {
            log_error("msg=\"a TLS trunk, registrar or outbound proxy needs a tls: listener\"");
            return ERR_INVALID;
        }
    }
    for (i = 0; i < cfg->nheaders; i++)
        len += strlen(cfg->headers[i]) + 2;
    ep->headers = calloc(1, len);
    if (!ep->headers)
        return ERR_NOMEM;
    for (i = 0, len = 0; i < cfg->nheaders; i++) {
        size_t n = strlen(cfg->headers[i]);

        memcpy(ep->headers + len, cfg->headers[i], n); /* sized above */
        memcpy(ep->headers + len + n, "\r\n", 2);
        len += n + 2;
    }
    /* The default allowlist: the peers this endpoint talks to. */
    ep->allow_default = !cfg->allow;
    if (cfg->allow) {
        struct policy_ip ip;

        ep->allow = *cfg->allow;
        if (ep->has_trunk && trunk->literal && sa_to_policy_ip(&trunk->addr, &ip) &&
            !allowlist_match(&ep->allow, &ip))
            log_warn("msg=\"--sip-allow does not include the trunk's address: requests from "
                     "it (a callee's BYE) get no answer\"");
    } else {
        if (ep->has_trunk)
            ep_allow_uri(ep, trunk);
        if (registrar->host[0] && (cfg->registrar && *cfg->registrar))
            ep_allow_uri(ep, registrar);
        if (ep->route[0])
            ep_allow_uri(ep, &proxy);
        if (!ep->has_trunk && !ep->route[0] && !(cfg->registrar && *cfg->registrar))
            log_warn("msg=\"no --sip-allow, --sip-trunk, --sip-registrar or "
                     "--sip-outbound-proxy: every inbound SIP request is refused\"");
    }
    return ERR_OK;
}

/* --- TLS --- */

/* A certificate chain a TLS peer we call presents, judged by OpenSSL:
 * the reason it was refused is logged (the call then fails as a transport
 * error: 503, FAILED "41"). */
static int tls_verify_cb(int ok, X509_STORE_CTX *xs)
{
    if (!ok) {
        int err = X509_STORE_CTX_get_error(xs);
        SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
        struct sip_ep *ep = ssl ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;

        log_warn("msg=\"TLS certificate of the peer refused: nothing is sent to it\" "
                 "expected=%s why=\"%s\" depth=%d",
                 ep ? ep->tls_peer : "?", X509_verify_cert_error_string(err),
                 X509_STORE_CTX_get_error_depth(xs));
    }
    return ok;
}

/* libre 1.1.0 starts client TLS on the listener's shared context without
 * a host name (tls_start_tcp with no server name), and offers no hook per
 * connection. OpenSSL's info callback runs on every connection of the
 * context at the start of its handshake, before the ClientHello is
 * written: there each client connection gets SNI and the name its
 * certificate must carry (RFC 5922; an address for an IP literal), with
 * verification on. Server connections (carriers calling in) are left
 * alone: no client certificate is asked for. */
static void tls_info_cb(const SSL *cssl, int where, int ret)
{
    SSL *ssl = (SSL *)cssl; /* OpenSSL passes the connection it is handshaking */
    struct sip_ep *ep;
    X509_VERIFY_PARAM *vp;

    (void)ret;
    if (!(where & SSL_CB_HANDSHAKE_START) || SSL_is_server(ssl))
        return;
    ep = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    SSL_set_verify(ssl, SSL_VERIFY_PEER, tls_verify_cb);
    vp = SSL_get0_param(ssl);
    if (!ep || !ep->tls_peer[0]) {
        /* No name to check against: nothing we call over TLS is trusted. */
        X509_VERIFY_PARAM_set1_host(vp, "invalid.invalid", 0);
        return;
    }
    if (ep->tls_peer_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(vp, ep->tls_peer);
    } else {
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        X509_VERIFY_PARAM_set1_host(vp, ep->tls_peer, 0);
        SSL_set_tlsext_host_name(ssl, ep->tls_peer);
    }
}

/* Logs OpenSSL's last error reason (file and line left out) and clears
 * the queue. */
static void tls_log_error(const char *what, const char *file)
{
    unsigned long e = ERR_peek_last_error();
    char buf[160] = "unknown";

    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    log_error("msg=\"%s\" file=\"%s\" why=\"%s\"", what, file, buf);
}

/* The context of the tls: listeners, which libre also starts client TLS
 * on: TLS 1.2 or later, the certificate chain and key, the CAs peers we
 * call are verified against. */
static enum err ep_tls_new(struct sip_ep *ep, const struct sip_ep_config *cfg)
{
    SSL_CTX *ctx;

    if (!cfg->tls_cert || !cfg->tls_key) {
        log_error("msg=\"a tls: listener needs --sip-tls-cert and --sip-tls-key\"");
        return ERR_INVALID;
    }
    if (tls_alloc(&ep->tls, TLS_METHOD_SSLV23, NULL, NULL) != 0)
        return ERR_NOMEM;
    ctx = tls_openssl_context(ep->tls);
    if (!ctx)
        return ERR_INTERNAL;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
        tls_log_error("TLS 1.2 cannot be made the minimum", "");
        return ERR_INTERNAL;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
        tls_log_error("cannot read the TLS certificate (--sip-tls-cert)", cfg->tls_cert);
        return ERR_INVALID;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1) {
        tls_log_error("cannot read the TLS key (--sip-tls-key)", cfg->tls_key);
        return ERR_INVALID;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        tls_log_error("the TLS key does not belong to the certificate", cfg->tls_key);
        return ERR_INVALID;
    }
    if (cfg->tls_ca && *cfg->tls_ca) {
        if (SSL_CTX_load_verify_locations(ctx, cfg->tls_ca, NULL) != 1) {
            tls_log_error("cannot read the CA file (--sip-tls-ca)", cfg->tls_ca);
            return ERR_INVALID;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        tls_log_error("cannot load the system's CAs", "");
        return ERR_INTERNAL;
    }
    SSL_CTX_set_app_data(ctx, ep);
    SSL_CTX_set_info_callback(ctx, tls_info_cb);
    return ERR_OK;
}

/* The Contact URI of a TCP or TLS leg: the listener's port (a connection's
 * own port takes nothing in), the advertised address behind NAT. */
static void ep_contacts(struct sip_ep *ep)
{
    size_t i;

    for (i = 0; i < ep->listeners.n; i++) {
        const struct listen_spec *l = &ep->listeners.v[i];
        char *dst = l->tp == POLICY_TP_TCP ? ep->contact_tcp : ep->contact_tls;
        size_t size = l->tp == POLICY_TP_TCP ? sizeof(ep->contact_tcp) : sizeof(ep->contact_tls);
        char hp[LISTEN_HOSTPORT_MAX];
        struct sa la;

        if (l->tp == POLICY_TP_UDP || dst[0] || parse_hostport(l->hostport, &la) != ERR_OK)
            continue;
        sa_hostport(ep->has_adv ? &ep->adv : &la, sa_port(&la), hp, sizeof(hp));
        snprintf(dst, size, "sip:%s@%s;transport=%s", ep->cuser, hp, policy_tp_name(l->tp));
    }
}

/* Binds every listener of --sip-listen. */
static enum err ep_listen(struct sip_ep *ep)
{
    size_t i;
    int rc;

    for (i = 0; i < ep->listeners.n; i++) {
        const struct listen_spec *l = &ep->listeners.v[i];
        struct sa la;

        if (parse_hostport(l->hostport, &la) != ERR_OK)
            return ERR_INVALID;
        switch (l->tp) {
        case POLICY_TP_TCP: rc = sip_transp_add(ep->sip, SIP_TRANSP_TCP, &la); break;
        case POLICY_TP_TLS: rc = sip_transp_add(ep->sip, SIP_TRANSP_TLS, &la, ep->tls); break;
        default: rc = sip_transp_add(ep->sip, SIP_TRANSP_UDP, &la); break;
        }
        if (rc) {
            log_error("msg=\"cannot bind the SIP socket\" listener=%s:%s why=\"%s\"",
                      policy_tp_name(l->tp), l->hostport, strerror(rc));
            return ERR_UNAVAILABLE;
        }
    }
    ep_contacts(ep);
    return ERR_OK;
}

enum err sip_ep_new(const struct sip_ep_config *cfg, const struct sip_ep_handlers *h,
                    struct sip_ep **out)
{
    struct sip_ep *ep = calloc(1, sizeof(*ep));
    struct conf_uri trunk, registrar;
    uint64_t seed;
    enum err e = ERR_INVALID;
    size_t i;
    int rc;

    if (!ep)
        return ERR_NOMEM;
    memset(&registrar, 0, sizeof(registrar));
    ep->h = *h;
    ep->rtp_low = cfg->rtp_low;
    ep->rtp_high = cfg->rtp_high;
    ep->rtp_latch = cfg->rtp_latch;
    ep->rtp_timeout_ms = (int64_t)cfg->rtp_timeout * 1000;
    tmr_init(&ep->resolve_tmr);
    seed = rand_u64();
    admission_init(&ep->admission, cfg->invite_rate ? cfg->invite_rate : 200, seed);
    loglimit_init(&ep->loglimit, seed >> 1);
    challenges_init(&ep->challenges);
    {
        char why[160];

        if (listen_list_parse(cfg->listen, &ep->listeners, why, sizeof(why)) != ERR_OK ||
            parse_hostport(ep->listeners.v[0].hostport, &ep->laddr) != ERR_OK) {
            log_error("msg=\"bad --sip-listen\" why=\"the value %s\"", why);
            goto out_ep;
        }
    }
    ep->srtp = cfg->srtp;
    if (cfg->advertise && *cfg->advertise) {
        if (sa_set_str(&ep->adv, cfg->advertise, 0) != 0) {
            log_error("msg=\"bad --sip-advertise, want an IP address\"");
            goto out_ep;
        }
        ep->has_adv = true;
    }
    if (listen_list_has(&ep->listeners, POLICY_TP_TLS)) {
        e = ep_tls_new(ep, cfg);
        if (e != ERR_OK)
            goto out_ep;
        e = ERR_INVALID;
    }
    if (cfg->media_ip && *cfg->media_ip) {
        if (sa_set_str(&ep->media_addr, cfg->media_ip, 0) != 0) {
            log_error("msg=\"bad --media-ip, want an IP address\"");
            goto out_ep;
        }
    } else {
        ep->media_addr = ep->has_adv ? ep->adv : ep->laddr;
        sa_set_port(&ep->media_addr, 0);
    }
    sa_hostport(&ep->laddr, sa_port(&ep->laddr), ep->contact_host, sizeof(ep->contact_host));
    e = ep_configure(ep, cfg, &trunk, &registrar);
    if (e != ERR_OK)
        goto out_ep;
    if (cfg->reg && (!ep->user[0] || !registrar.host[0])) {
        log_error("msg=\"registration needs --sip-user and a trunk or --sip-registrar\"");
        e = ERR_INVALID;
        goto out_ep;
    }
    e = ep_dns(ep, cfg->dns_server);
    if (e != ERR_OK)
        goto out_ep;
    e = ERR_INTERNAL;
    rc = sip_alloc(&ep->sip, ep->dnsc, 32, 32, 32, "sfvopi", on_sip_exit, ep);
    if (rc)
        goto out_dns;
    /* Before sipsess's listener: refused sources, OPTIONS and admission are
     * settled before any dialog is looked at. */
    if (sip_listen(&ep->gate, ep->sip, true, on_gate, ep) != 0)
        goto out_sip;
    e = ep_listen(ep);
    if (e != ERR_OK)
        goto out_sip;
    e = ERR_INTERNAL;
    sip_set_trace_handler(ep->sip, on_trace);
    if (sip_listen(&ep->dlg, ep->sip, true, on_update, ep) != 0 ||
        sipsess_listen(&ep->sock, ep->sip, 32, on_conn, ep) != 0)
        goto out_sip;
    if (sip_listen(&ep->last, ep->sip, true, on_unhandled, ep) != 0 ||
        sip_listen(&ep->stray, ep->sip, false, on_stray, ep) != 0)
        goto out_sock;
    for (i = 0; i < ep->listeners.n; i++) {
        struct sa la;

        if (ep->listeners.v[i].tp != POLICY_TP_UDP ||
            parse_hostport(ep->listeners.v[i].hostport, &la) != ERR_OK)
            continue;
        if (ep_send_probe(ep, &la) != ERR_OK)
            log_warn("msg=\"SIP datagram hook not installed: refused sources are dropped "
                     "after parsing\"");
    }
    if (ep->allow_default && ep->nnames)
        on_resolve_tmr(ep);
    if (cfg->reg && ep_register(ep, &registrar, cfg->reg_expires) != ERR_OK) {
        e = ERR_INVALID;
        goto out_sock;
    }
    *out = ep;
    return ERR_OK;

out_sock:
    ep->sock = mem_deref(ep->sock);
out_sip:
    tmr_cancel(&ep->resolve_tmr);
    for (rc = 0; rc < ep->rq_used; rc++)
        ep->rq[rc].q = mem_deref(ep->rq[rc].q);
    for (rc = 0; rc < ep->nhooks; rc++)
        ep->hooks[rc].uh = mem_deref(ep->hooks[rc].uh);
    ep->stray = mem_deref(ep->stray);
    ep->last = mem_deref(ep->last);
    ep->dlg = mem_deref(ep->dlg);
    ep->gate = mem_deref(ep->gate);
    sip_close(ep->sip, true);
    mem_deref(ep->sip);
out_dns:
    mem_deref(ep->dnsc);
out_ep:
    mem_deref(ep->tls);
    explicit_bzero(ep->password, sizeof(ep->password));
    free(ep->headers);
    free(ep);
    return e;
}

bool sip_ep_can_dial(const struct sip_ep *ep)
{
    return ep && ep->has_trunk;
}

void sip_ep_free(struct sip_ep *ep)
{
    int i;

    if (!ep)
        return;
    while (ep->legs)
        sip_leg_hangup(ep->legs);
    ep->reg = mem_deref(ep->reg);
    atomic_store(&stat_registered, false);
    tmr_cancel(&ep->resolve_tmr);
    for (i = 0; i < ep->rq_used; i++)
        ep->rq[i].q = mem_deref(ep->rq[i].q);
    mem_deref(ep->sock);
    for (i = 0; i < ep->nhooks; i++)
        ep->hooks[i].uh = mem_deref(ep->hooks[i].uh);
    ep->stray = mem_deref(ep->stray);
    ep->last = mem_deref(ep->last);
    ep->dlg = mem_deref(ep->dlg);
    ep->gate = mem_deref(ep->gate);
    sip_close(ep->sip, true);
    mem_deref(ep->sip);
    mem_deref(ep->dnsc);
    mem_deref(ep->tls);
    explicit_bzero(ep->password, sizeof(ep->password));
    free(ep->headers);
    free(ep);
}
