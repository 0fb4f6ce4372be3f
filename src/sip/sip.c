/* sip: libre behind plain C types. Owns libre's loop, the SIP stack on one
 * UDP socket, and per-call sessions with their RTP sockets. It makes no
 * call decisions (routing, statuses, webhooks): it reports SIP events to
 * the engine and carries out the engine's orders. Every report to the
 * engine is made from a timer of its own, never from inside a libre
 * callback, so the engine may free a leg whenever it likes. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include <re.h>

#include "core/log.h"
#include "sip/sip.h"

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

struct sip_queue {
    struct mqueue *mq;
    sip_queue_cb cb;
    void *arg;
};

static void on_queue(int id, void *data, void *arg)
{
    struct sip_queue *q = arg;

    q->cb(q->arg, id, data);
}

enum err sip_queue_new(sip_queue_cb cb, void *arg, struct sip_queue **out)
{
    struct sip_queue *q = calloc(1, sizeof(*q));

    if (!q)
        return ERR_NOMEM;
    q->cb = cb;
    q->arg = arg;
    if (mqueue_alloc(&q->mq, on_queue, q) != 0) {
        free(q);
        return ERR_INTERNAL;
    }
    *out = q;
    return ERR_OK;
}

enum err sip_queue_push(struct sip_queue *q, int id, void *data)
{
    int rc = mqueue_push(q->mq, id, data);

    if (rc == ENOMEM)
        return ERR_NOMEM;
    return rc ? ERR_UNAVAILABLE : ERR_OK;
}

void sip_queue_free(struct sip_queue *q)
{
    if (!q)
        return;
    mem_deref(q->mq);
    free(q);
}

/* --- the endpoint --- */

struct sip_leg {
    struct sip_ep *ep;
    struct sip_leg *prev, *next; /* ep->legs */
    void *arg;
    struct sipsess *sess;
    struct sdp_session *sdp;
    struct sdp_media *media;
    struct rtp_sock *rtp;
    char callid[128];
    bool outbound;
    bool established;
    bool dead;        /* hung up by the engine: no more reports, freed by reap */
    int remote_cause; /* from the Reason header of the party's BYE or CANCEL */
    struct sip_media media_info;
    uint32_t tx_ts;
    bool tx_started;
    /* Reports waiting for the engine, delivered by report_tmr in order. */
    int pending_progress[4];
    int npending_progress;
    bool pending_answered;
    bool pending_closed;
    int closed_code, closed_cause;
    bool closed_timeout;
    struct tmr report_tmr;
    struct tmr reap_tmr;
};

struct sip_ep {
    struct sip *sip;
    struct sipsess_sock *sock;
    struct dnsc *dnsc;
    struct sa laddr;
    struct sa media_addr;
    char contact_host[80]; /* "IP:PORT" or "[IP6]:PORT" for URIs */
    char trunk_hostport[300];
    bool has_trunk;
    int rtp_low, rtp_high;
    struct sip_ep_handlers h;
    struct sip_leg *legs;
};

struct sip_incoming {
    const struct sip_msg *msg;
    struct sip_leg *accepted;
    bool no_codec;
    char to[SIP_USER_MAX];
    char from[SIP_USER_MAX];
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
    /* Dereferencing an established session sends its BYE, an unanswered
     * outbound one its CANCEL; libre finishes those transactions itself. */
    leg->sess = mem_deref(leg->sess);
    leg->rtp = mem_deref(leg->rtp);
    leg->sdp = mem_deref(leg->sdp);
    free(leg);
}

void sip_leg_hangup(struct sip_leg *leg)
{
    if (!leg || leg->dead)
        return;
    leg->dead = true;
    leg_unlink(leg);
    tmr_cancel(&leg->report_tmr);
    if (leg->sess && !leg->outbound && !leg->established && !leg->pending_closed)
        (void)sipsess_reject(leg->sess, 487, "Request Terminated", NULL);
    /* Not here: this may run inside one of the session's own callbacks. */
    tmr_start(&leg->reap_tmr, 0, leg_reap, leg);
}

/* Packets from any source port are taken (carriers and NATs often send
 * from another port than the SDP says); what is sent goes to the SDP. */
static void on_rtp(const struct sa *src, const struct rtp_header *hdr, struct mbuf *mb, void *arg)
{
    struct sip_leg *leg = arg;

    (void)src;
    if (leg->dead || !leg->ep->h.rtp)
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
            for (k = 0; k < mi->ndtmf; k++)
                have = have || mi->dtmf_pt[k] == f->pt;
            if (!have && mi->ndtmf < (int)(sizeof(mi->dtmf_pt) / sizeof(int)))
                mi->dtmf_pt[mi->ndtmf++] = f->pt;
        }
    }
}

void sip_leg_media(const struct sip_leg *leg, struct sip_media *out)
{
    *out = leg->media_info;
}

enum err sip_leg_send_audio(struct sip_leg *leg, const uint8_t *payload, size_t len)
{
    const struct sa *dst;
    struct mbuf *mb;
    int rc;

    if (leg->dead || !leg->media_info.ready || !len)
        return ERR_UNAVAILABLE;
    dst = sdp_media_raddr(leg->media);
    if (!dst || !sa_isset(dst, SA_ALL))
        return ERR_UNAVAILABLE;
    mb = mbuf_alloc(RTP_HEADER_SIZE + len);
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
    tmr_init(&leg->report_tmr);
    tmr_init(&leg->reap_tmr);
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
        rc = sdp_media_add(&leg->media, leg->sdp, "audio", sa_port(rtp_local(leg->rtp)), "RTP/AVP");
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

/* A re-INVITE's offer: answer it from the same formats. */
static int on_offer(struct mbuf **descp, const struct sip_msg *msg, void *arg)
{
    struct sip_leg *leg = arg;
    int rc = sdp_decode(leg->sdp, msg->mb, true);

    if (rc)
        return rc;
    media_settle(leg);
    return sdp_encode(descp, leg->sdp, false);
}

static int on_answer(const struct sip_msg *msg, void *arg)
{
    struct sip_leg *leg = arg;
    int rc = sdp_decode(leg->sdp, msg->mb, false);

    if (!rc)
        media_settle(leg);
    return rc;
}

static void on_progress(const struct sip_msg *msg, void *arg)
{
    struct sip_leg *leg = arg;

    if (leg->npending_progress < (int)(sizeof(leg->pending_progress) / sizeof(int)))
        leg->pending_progress[leg->npending_progress++] = msg->scode;
    leg_schedule(leg);
}

static void on_estab(const struct sip_msg *msg, void *arg)
{
    struct sip_leg *leg = arg;

    (void)msg;
    leg->established = true;
    if (leg->outbound) {
        leg->pending_answered = true;
        leg_schedule(leg);
    }
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

static void copy_user(const struct pl *pl, char *out)
{
    size_t n = pl->l < SIP_USER_MAX - 1 ? pl->l : SIP_USER_MAX - 1;

    if (n)
        memcpy(out, pl->p, n);
    out[n] = '\0';
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
    rc = sdp_decode(leg->sdp, in->msg->mb, true);
    if (!rc)
        media_settle(leg);
    if (rc || !leg->media_info.ready) {
        in->no_codec = true;
        e = ERR_INVALID;
        goto out_leg;
    }
    rc = sipsess_accept(&leg->sess, ep->sock, in->msg, 180, "Ringing", "sfvopi", "application/sdp",
                        NULL, NULL, NULL, false, on_offer, on_answer, on_estab, NULL, NULL,
                        on_close, leg, NULL);
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

enum err sip_leg_dial(struct sip_ep *ep, const char *from_user, const char *to_user, void *leg_arg,
                      struct sip_leg **out)
{
    struct sip_leg *leg;
    struct mbuf *desc = NULL;
    char to_uri[400], from_uri[200];
    enum err e;
    int rc;

    if (!ep->has_trunk)
        return ERR_UNAVAILABLE;
    if (snprintf(to_uri, sizeof(to_uri), "sip:%s@%s", to_user, ep->trunk_hostport) >=
            (int)sizeof(to_uri) ||
        snprintf(from_uri, sizeof(from_uri), "sip:%s@%s", from_user, ep->contact_host) >=
            (int)sizeof(from_uri))
        return ERR_INVALID;
    e = leg_new(ep, leg_arg, true, &leg);
    if (e != ERR_OK)
        return e;
    rc = sdp_encode(&desc, leg->sdp, true);
    if (!rc)
        rc = sipsess_connect(&leg->sess, ep->sock, to_uri, NULL, from_uri, "sfvopi", NULL, 0,
                             "application/sdp", desc, NULL, NULL, false, on_offer, on_answer,
                             on_progress, on_estab, NULL, NULL, on_close, leg, NULL);
    mem_deref(desc);
    if (rc) {
        log_warn("msg=\"INVITE not sent\" err=%d", rc);
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

static void on_conn(const struct sip_msg *msg, void *arg)
{
    struct sip_ep *ep = arg;
    struct sip_incoming in = {.msg = msg};
    int code;

    copy_user(&msg->uri.user, in.to);
    copy_user(&msg->from.uri.user, in.from);
    code = ep->h.invite(ep->h.arg, &in);
    if (in.accepted)
        return;
    if (in.no_codec)
        (void)sip_treply(NULL, ep->sip, msg, 488, "Not Acceptable Here");
    else if (code == 404)
        (void)sip_treply(NULL, ep->sip, msg, 404, "Not Found");
    else if (code == 480)
        (void)sip_treply(NULL, ep->sip, msg, 480, "Temporarily Unavailable");
    else if (code == 503)
        (void)sip_treply(NULL, ep->sip, msg, 503, "Service Unavailable");
    else
        (void)sip_treply(NULL, ep->sip, msg, 500, "Server Internal Error");
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

enum err sip_ep_new(const struct sip_ep_config *cfg, const struct sip_ep_handlers *h,
                    struct sip_ep **out)
{
    struct sip_ep *ep = calloc(1, sizeof(*ep));
    struct sa nsv[4];
    uint32_t nsn = 4;
    char ip[64];
    enum err e = ERR_INVALID;
    int rc;

    if (!ep)
        return ERR_NOMEM;
    ep->h = *h;
    ep->rtp_low = cfg->rtp_low;
    ep->rtp_high = cfg->rtp_high;
    if (parse_hostport(cfg->listen, &ep->laddr) != ERR_OK || !sa_port(&ep->laddr)) {
        log_error("msg=\"bad --sip-listen, want HOST:PORT\"");
        goto out_ep;
    }
    if (cfg->media_ip && *cfg->media_ip) {
        if (sa_set_str(&ep->media_addr, cfg->media_ip, 0) != 0) {
            log_error("msg=\"bad --media-ip, want an IP address\"");
            goto out_ep;
        }
    } else {
        ep->media_addr = ep->laddr;
        sa_set_port(&ep->media_addr, 0);
    }
    if (sa_ntop(&ep->laddr, ip, sizeof(ip)) != 0)
        goto out_ep;
    snprintf(ep->contact_host, sizeof(ep->contact_host),
             sa_af(&ep->laddr) == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, sa_port(&ep->laddr));
    if (cfg->trunk && *cfg->trunk) {
        struct pl pl;
        struct uri uri;

        pl_set_str(&pl, cfg->trunk);
        if (uri_decode(&uri, &pl) != 0 || pl_strcasecmp(&uri.scheme, "sip") ||
            pl_isset(&uri.user) || !pl_isset(&uri.host) || uri.host.l > 255) {
            log_error("msg=\"bad --sip-trunk, want sip:HOST[:PORT]\"");
            goto out_ep;
        }
        if (uri.af == AF_INET6)
            snprintf(ep->trunk_hostport, sizeof(ep->trunk_hostport), "[%.*s]:%u", (int)uri.host.l,
                     uri.host.p, uri.port ? uri.port : 5060);
        else
            snprintf(ep->trunk_hostport, sizeof(ep->trunk_hostport), "%.*s:%u", (int)uri.host.l,
                     uri.host.p, uri.port ? uri.port : 5060);
        ep->has_trunk = true;
    }
    e = ERR_INTERNAL;
    /* A trunk named by host name needs DNS; the system's resolvers, else none. */
    if (dns_srv_get(NULL, 0, nsv, &nsn) != 0)
        nsn = 0;
    if (dnsc_alloc(&ep->dnsc, NULL, nsv, nsn) != 0)
        goto out_ep;
    rc = sip_alloc(&ep->sip, ep->dnsc, 32, 32, 32, "sfvopi", on_sip_exit, ep);
    if (rc)
        goto out_dns;
    rc = sip_transp_add(ep->sip, SIP_TRANSP_UDP, &ep->laddr);
    if (rc) {
        log_error("msg=\"cannot bind the SIP socket\" err=%d", rc);
        e = ERR_UNAVAILABLE;
        goto out_sip;
    }
    sip_set_trace_handler(ep->sip, on_trace);
    if (sipsess_listen(&ep->sock, ep->sip, 32, on_conn, ep) != 0)
        goto out_sip;
    *out = ep;
    return ERR_OK;

out_sip:
    sip_close(ep->sip, true);
    mem_deref(ep->sip);
out_dns:
    mem_deref(ep->dnsc);
out_ep:
    free(ep);
    return e;
}

bool sip_ep_can_dial(const struct sip_ep *ep)
{
    return ep && ep->has_trunk;
}

void sip_ep_free(struct sip_ep *ep)
{
    if (!ep)
        return;
    while (ep->legs)
        sip_leg_hangup(ep->legs);
    mem_deref(ep->sock);
    sip_close(ep->sip, true);
    mem_deref(ep->sip);
    mem_deref(ep->dnsc);
    free(ep);
}
