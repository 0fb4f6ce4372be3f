/* ws: the WebSocket client hub over libwebsockets, the only file that
 * includes <libwebsockets.h>. Other threads never touch lws: they change a
 * connection's mutex-protected fields, put it on the hub's dirty list and
 * wake the service thread with lws_cancel_service(); that thread does the
 * lws work in LWS_CALLBACK_EVENT_WAIT_CANCELLED. Host names are resolved by
 * a short-lived detached thread per connection, so a slow DNS server stalls
 * only its own connection (whose deadline still runs on the hub). */
#include "ws/ws.h"

#include <libwebsockets.h>

#include <arpa/inet.h>
#include <assert.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "core/addrclass.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/url.h"

#include <sodium.h>

/* A DNS name is at most 253 bytes; an IPv6 literal with brackets far less. */
#define HOST_MAX 256
/* Addresses of one host tried in turn (the first ones getaddrinfo gives). */
#define ADDRS_MAX 4
/* One write carries the queued messages of a connection up to this many
 * bytes (a single larger message goes alone). */
#define TX_BATCH (64 * 1024)
/* Masking keys drawn at once (RFC 6455 5.3: each frame its own, from a
 * strong source): 4 bytes each. */
#define MASK_POOL 1024
/* How long ws_hub_free lets close frames leave before tearing down. */
#define STOP_GRACE_US (500 * 1000)

enum conn_state {
    CS_NEW,        /* not yet seen by the service thread */
    CS_RESOLVING,  /* waiting for the address (or a resolver thread) */
    CS_CONNECTING, /* lws is connecting / handshaking */
    CS_OPEN,
    CS_DONE, /* WS_EV_CLOSED delivered (or suppressed) */
};

struct addrs {
    int n;
    char a[ADDRS_MAX][INET6_ADDRSTRLEN];
};

struct msg {
    struct msg *next;
    size_t len;
    unsigned char data[]; /* LWS_PRE bytes of headroom, then len bytes */
};

struct ws_hub {
    pthread_mutex_t mu;
    /* under mu */
    int refs;      /* the owner, plus one per running resolver thread */
    bool stopping; /* ws_hub_free has started */
    struct ws_conn *all;
    struct ws_conn *dirty_head, *dirty_tail;
    unsigned long long next_id; /* atomic */

    bool deny_private;                    /* immutable */
    struct ws_hub *hubs_prev, *hubs_next; /* under hubs_mu: every live hub */
    struct lws_context *ctx;
    pthread_t thread;

    /* service thread only */
    bool svc_stop;   /* the stop has been seen: no more user callbacks */
    bool svc_exit;   /* leave the service loop */
    bool destroying; /* lws_context_destroy is running on the freeing thread */
    lws_usec_t stop_deadline;
    lws_sorted_usec_list_t stop_sul;
    unsigned char *tx; /* LWS_PRE bytes of headroom, then the frames of one write */
    size_t tx_cap;
    unsigned char masks[MASK_POOL];
    size_t mask_pos; /* MASK_POOL: the pool is used up */
};

struct ws_conn {
    struct ws_hub *hub;
    ws_event_cb cb;
    void *arg;
    unsigned long long id; /* for logs */

    /* immutable after ws_connect */
    char name[HOST_MAX];         /* host without brackets, for getaddrinfo */
    char host_hdr[HOST_MAX + 8]; /* host as in the URL, ":port" when not default */
    char log_host[96];           /* quoted, for log lines */
    char *path;                  /* path and query, at least "/" */
    char sig[WHSIG_HEADER_MAX];  /* X-Sfvopi-Signature's value; "": none */
    int port;
    bool tls;
    lws_usec_t deadline; /* mono_us() */

    pthread_mutex_t cb_mu; /* held while the callback runs */
    bool cb_off;           /* under cb_mu: released, deliver nothing */

    /* under hub->mu */
    struct ws_conn *prev, *next; /* hub->all */
    struct ws_conn *dirty_next;
    bool dirty;
    struct msg *q_head, *q_tail;
    size_t q_bytes;
    bool lazy;    /* a lazy message waits in the queue without a wake-up */
    bool closing; /* no more sends: closed, released or ended */
    bool close_req;
    int close_code;
    bool released;
    bool resolving; /* a resolver thread may still write res_* */
    bool res_done;
    const char *res_fail; /* NULL: res_addrs are the addresses to try */
    struct addrs res_addrs;

    /* service thread only */
    enum conn_state st;
    struct lws *wsi;
    lws_sorted_usec_list_t sul; /* the connect deadline */
    const char *fail;           /* why a connecting wsi is being killed */
    int addr_i;                 /* the address of res_addrs being tried */
    bool killing;
    bool close_sent;
    int sent_code;
    int peer_code; /* 0: the peer sent no close frame */
    char *rx;
    size_t rx_len, rx_cap;
    bool rx_in, rx_skip, rx_binary;
};

struct resolve_job {
    struct ws_hub *hub;
    struct ws_conn *c; /* written only under hub->mu while !hub->stopping */
    char name[HOST_MAX];
};

static _Thread_local struct ws_conn *tl_in_cb;

ws__getaddrinfo_fn ws__getaddrinfo = getaddrinfo;

static lws_usec_t mono_us(void)
{
    return (lws_usec_t)(clock_mono_ns() / 1000);
}

static void hub_unref(struct ws_hub *h);
static int send_queued(struct ws_conn *c, struct lws *wsi);

/* ---- small helpers ---- */

static void msgs_free(struct msg *m)
{
    while (m) {
        struct msg *next = m->next;

        free(m);
        m = next;
    }
}

/* Puts c on the dirty list (under h->mu). True when the list was empty, so
 * the caller must wake the service thread; otherwise a wake-up is already
 * pending for the list. */
static bool mark_dirty_locked(struct ws_hub *h, struct ws_conn *c)
{
    bool was_empty = h->dirty_head == NULL;

    if (c->dirty) {
        return false;
    }
    c->dirty = true;
    c->dirty_next = NULL;
    if (h->dirty_tail) {
        h->dirty_tail->dirty_next = c;
    } else {
        h->dirty_head = c;
    }
    h->dirty_tail = c;
    return was_empty;
}

static void conn_touch(struct ws_conn *c)
{
    struct ws_hub *h = c->hub;
    bool wake;

    pthread_mutex_lock(&h->mu);
    wake = !h->stopping && mark_dirty_locked(h, c);
    pthread_mutex_unlock(&h->mu);
    if (wake) {
        lws_cancel_service(h->ctx);
    }
}

/* Chooses the addresses to connect to from a getaddrinfo answer, in its
 * order: the host is refused whole when any of its addresses is refused (a
 * name that also points at cloud metadata is not called at all). NULL on
 * success with at least one numeric address in out, else the reason. */
static const char *pick_addresses(const struct addrinfo *res, bool deny_private, struct addrs *out)
{
    out->n = 0;
    for (const struct addrinfo *a = res; a; a = a->ai_next) {
        enum addr_class cls;
        struct sockaddr_in sin;
        struct sockaddr_in6 sin6;
        const void *raw;
        bool refuse;

        if (a->ai_family == AF_INET && a->ai_addrlen >= sizeof(sin)) {
            memcpy(&sin, a->ai_addr, sizeof(sin));
            raw = &sin.sin_addr;
            cls = addr_classify_raw(4, raw);
        } else if (a->ai_family == AF_INET6 && a->ai_addrlen >= sizeof(sin6)) {
            memcpy(&sin6, a->ai_addr, sizeof(sin6));
            raw = &sin6.sin6_addr;
            cls = addr_classify_raw(6, raw);
        } else {
            continue;
        }
        switch (cls) {
        case ADDR_PUBLIC: refuse = false; break;
        case ADDR_LOOPBACK:
        case ADDR_PRIVATE: refuse = deny_private; break;
        case ADDR_LINK_LOCAL:
        case ADDR_INVALID:
        default: refuse = true; break;
        }
        if (refuse) {
            out->n = 0;
            return "refused address";
        }
        if (out->n < ADDRS_MAX &&
            inet_ntop(a->ai_family, raw, out->a[out->n], sizeof(out->a[0])) != NULL) {
            out->n++;
        }
    }
    return out->n > 0 ? NULL : "no address";
}

static void *resolve_main(void *p)
{
    struct resolve_job *job = p;
    struct ws_hub *h = job->hub;
    struct addrinfo hints, *res = NULL;
    struct addrs addrs;
    const char *fail;
    bool wake = false;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (ws__getaddrinfo(job->name, NULL, &hints, &res) != 0) {
        fail = "resolve failed";
        addrs.n = 0;
    } else {
        fail = pick_addresses(res, h->deny_private, &addrs);
        freeaddrinfo(res);
    }
    pthread_mutex_lock(&h->mu);
    if (!h->stopping) {
        struct ws_conn *c = job->c;

        c->res_done = true;
        c->res_fail = fail;
        c->res_addrs = addrs;
        c->resolving = false;
        wake = mark_dirty_locked(h, c);
        if (wake) {
            /* Under mu: ws_hub_free sets stopping (under mu) before it
             * destroys the context, so ctx is still alive here. */
            lws_cancel_service(h->ctx);
        }
    }
    pthread_mutex_unlock(&h->mu);
    hub_unref(h);
    free(job);
    return NULL;
}

/* ---- service thread: events ---- */

static void deliver(struct ws_conn *c, enum ws_event ev, const char *data, size_t len, int code)
{
    if (c->hub->svc_stop) {
        return;
    }
    pthread_mutex_lock(&c->cb_mu);
    if (!c->cb_off) {
        tl_in_cb = c;
        c->cb(c->arg, ev, data, len, code);
        tl_in_cb = NULL;
    }
    pthread_mutex_unlock(&c->cb_mu);
}

static void rx_reset(struct ws_conn *c)
{
    free(c->rx);
    c->rx = NULL;
    c->rx_len = c->rx_cap = 0;
    c->rx_in = c->rx_skip = c->rx_binary = false;
}

/* The connection is over for the caller: refuse sends, drop the queue,
 * deliver WS_EV_CLOSED once. The wsi (if any) may live on a little. */
static void conn_ended(struct ws_conn *c, int code, const char *reason)
{
    struct ws_hub *h = c->hub;
    struct msg *q;

    if (c->st == CS_DONE) {
        return;
    }
    c->st = CS_DONE;
    lws_sul_cancel(&c->sul);
    rx_reset(c);
    pthread_mutex_lock(&h->mu);
    c->closing = true;
    q = c->q_head;
    c->q_head = c->q_tail = NULL;
    c->q_bytes = 0;
    pthread_mutex_unlock(&h->mu);
    msgs_free(q);
    log_debug("msg=ws_closed conn=%llu host=%s code=%d reason=\"%s\"", c->id, c->log_host, code,
              reason);
    deliver(c, WS_EV_CLOSED, reason, strlen(reason), code);
}

static void conn_kill(struct ws_conn *c, const char *why)
{
    if (c->wsi && !c->killing) {
        c->killing = true;
        c->fail = why;
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_AWAITING_SERVER_RESPONSE, LWS_TO_KILL_ASYNC);
    }
}

static void on_deadline(lws_sorted_usec_list_t *sul)
{
    struct ws_conn *c = lws_container_of(sul, struct ws_conn, sul);

    if (c->st == CS_CONNECTING) {
        conn_kill(c, "timeout");
    } else if (c->st == CS_NEW || c->st == CS_RESOLVING) {
        conn_ended(c, 0, "timeout");
        conn_touch(c); /* a released conn may be freed now */
    }
}

/* A connection attempt failed before the handshake: moves on to the host's
 * next address when there is one and time is left (the attempt's wsi is
 * cut loose: nothing of it reaches c any more). False when c has failed. */
static bool conn_try_next(struct ws_conn *c, struct lws *wsi)
{
    struct ws_hub *h = c->hub;
    bool more;

    if (c->st != CS_CONNECTING || c->killing || h->svc_stop) {
        return false;
    }
    pthread_mutex_lock(&h->mu);
    more = c->addr_i + 1 < c->res_addrs.n && !c->close_req;
    pthread_mutex_unlock(&h->mu);
    if (!more || mono_us() >= c->deadline) {
        return false;
    }
    if (wsi) {
        lws_set_opaque_user_data(wsi, NULL);
    }
    c->wsi = NULL;
    c->addr_i++;
    c->st = CS_RESOLVING; /* with res_done set: the next drain connects */
    log_debug("msg=ws_next_address conn=%llu host=%s", c->id, c->log_host);
    conn_touch(c);
    return true;
}

static void conn_start(struct ws_conn *c, const char *addr)
{
    struct lws_client_connect_info i;

    memset(&i, 0, sizeof(i));
    i.context = c->hub->ctx;
    i.address = addr;
    i.port = c->port;
    i.ssl_connection = c->tls ? LCCSCF_USE_SSL : 0;
    i.path = c->path;
    i.host = c->host_hdr; /* Host header; lws strips ":port" for SNI and the cert check */
    i.origin = NULL;      /* not a browser: no Origin header */
    i.protocol = NULL;    /* no Sec-WebSocket-Protocol */
    i.ietf_version_or_minus_one = -1;
    i.local_protocol_name = "sfvopi-ws";
    i.pwsi = &c->wsi;
    i.opaque_user_data = c;
    c->st = CS_CONNECTING;
    log_debug("msg=ws_connecting conn=%llu host=%s tls=%d", c->id, c->log_host, (int)c->tls);
    if (!lws_client_connect_via_info(&i) && c->st == CS_CONNECTING) {
        /* Failed at once, without a callback (one that came may already
         * have moved on to the next address). */
        c->wsi = NULL;
        if (!conn_try_next(c, NULL)) {
            conn_ended(c, 0, c->fail ? c->fail : "connect failed");
        }
    }
}

/* Whether every connection has said goodbye during a stop. */
static void stop_check(struct ws_hub *h)
{
    bool busy = false;

    if (!h->svc_stop || h->svc_exit) {
        return;
    }
    pthread_mutex_lock(&h->mu);
    for (struct ws_conn *c = h->all; c; c = c->next) {
        if (c->wsi && c->st == CS_OPEN && !c->close_sent) {
            busy = true;
            break;
        }
    }
    pthread_mutex_unlock(&h->mu);
    if (!busy || mono_us() >= h->stop_deadline) {
        h->svc_exit = true;
    }
}

static void on_stop_deadline(lws_sorted_usec_list_t *sul)
{
    struct ws_hub *h = lws_container_of(sul, struct ws_hub, stop_sul);

    h->svc_exit = true;
}

/* The first wake-up after ws_hub_free started: close what is open. No
 * callback is delivered from here on. */
static void stop_begin(struct ws_hub *h)
{
    struct ws_conn *open[64];
    int n;
    bool more = true;

    h->svc_stop = true;
    h->stop_deadline = mono_us() + STOP_GRACE_US;
    lws_sul_schedule(h->ctx, 0, &h->stop_sul, on_stop_deadline, STOP_GRACE_US);
    /* lws calls stay outside mu; the list cannot change meanwhile: no
     * ws_connect after stopping, and frees happen only on this thread. */
    for (struct ws_conn *c = h->all; more;) {
        n = 0;
        pthread_mutex_lock(&h->mu);
        for (; c && n < 64; c = c->next) {
            if (c->st == CS_OPEN && c->wsi) {
                c->closing = true;
                if (!c->close_req) {
                    c->close_req = true;
                    c->close_code = 1000;
                }
                open[n++] = c;
            } else if (c->st == CS_CONNECTING) {
                open[n++] = c;
            }
        }
        more = c != NULL;
        pthread_mutex_unlock(&h->mu);
        for (int k = 0; k < n; k++) {
            if (open[k]->st == CS_OPEN) {
                lws_callback_on_writable(open[k]->wsi);
            } else {
                conn_kill(open[k], "hub stopped");
            }
        }
    }
}

static void conn_free(struct ws_conn *c)
{
    msgs_free(c->q_head);
    free(c->rx);
    free(c->path);
    pthread_mutex_destroy(&c->cb_mu);
    free(c);
}

/* One dirty connection: act on what other threads asked for. */
static void conn_process(struct ws_hub *h, struct ws_conn *c)
{
    bool close_req, msgs, res_done, gone;
    const char *res_fail;
    char addr[INET6_ADDRSTRLEN];

    pthread_mutex_lock(&h->mu);
    c->dirty = false;
    close_req = c->close_req;
    msgs = c->q_head != NULL;
    res_done = c->res_done;
    res_fail = c->res_fail;
    addr[0] = '\0';
    if (res_done && !res_fail && c->addr_i < c->res_addrs.n) {
        memcpy(addr, c->res_addrs.a[c->addr_i], sizeof(addr));
    }
    pthread_mutex_unlock(&h->mu);

    if (c->st == CS_NEW) {
        lws_usec_t left = c->deadline - mono_us();

        c->st = CS_RESOLVING;
        lws_sul_schedule(h->ctx, 0, &c->sul, on_deadline, left > 0 ? left : 1);
    }
    switch (c->st) {
    case CS_RESOLVING:
        if (close_req) {
            conn_ended(c, 0, "closed before open");
        } else if (res_done && res_fail) {
            conn_ended(c, 0, res_fail);
        } else if (res_done) {
            conn_start(c, addr);
        }
        break;
    case CS_CONNECTING:
        if (close_req) {
            conn_kill(c, "closed before open");
        }
        break;
    case CS_OPEN:
        /* A plain connection is written at once (lws_write queues what the
         * socket cannot take yet); TLS ones and closes wait for their
         * writeable callback. */
        if (msgs && !close_req && !c->tls && !c->killing) {
            int n = send_queued(c, c->wsi);

            if (n < 0) {
                conn_kill(c, "write failed");
            } else if (n == 2) {
                lws_callback_on_writable(c->wsi);
            }
        } else if (msgs || close_req) {
            lws_callback_on_writable(c->wsi);
        }
        break;
    case CS_NEW:
    case CS_DONE: break;
    }

    pthread_mutex_lock(&h->mu);
    gone = c->released && c->st == CS_DONE && !c->wsi && !c->resolving && !c->dirty;
    if (gone) {
        if (c->prev) {
            c->prev->next = c->next;
        } else {
            h->all = c->next;
        }
        if (c->next) {
            c->next->prev = c->prev;
        }
    }
    pthread_mutex_unlock(&h->mu);
    if (gone) {
        conn_free(c);
    }
}

static void hub_drain(struct ws_hub *h)
{
    struct ws_conn *list;
    bool stopping;

    pthread_mutex_lock(&h->mu);
    stopping = h->stopping;
    list = h->dirty_head;
    h->dirty_head = h->dirty_tail = NULL;
    pthread_mutex_unlock(&h->mu);
    if (stopping) {
        if (!h->svc_stop) {
            stop_begin(h);
        }
        stop_check(h);
        return; /* ws_hub_free frees what is left */
    }
    while (list) {
        struct ws_conn *next = list->dirty_next; /* read before c may be freed */

        conn_process(h, list);
        list = next;
    }
}

/* ---- service thread: lws callbacks ---- */

static void on_receive(struct ws_conn *c, struct lws *wsi, const void *in, size_t len)
{
    if (!c->rx_in) {
        c->rx_in = true;
        c->rx_binary = lws_frame_is_binary(wsi) != 0;
        c->rx_skip = c->rx_binary;
        c->rx_len = 0;
    }
    if (!c->rx_skip && len > 0) {
        if (len > WS_MESSAGE_MAX - c->rx_len) {
            c->rx_skip = true;
            free(c->rx);
            c->rx = NULL;
            c->rx_len = c->rx_cap = 0;
        } else {
            size_t need = c->rx_len + len;

            if (need > c->rx_cap) {
                size_t cap = c->rx_cap ? c->rx_cap : 4096;
                char *p;

                while (cap < need) {
                    cap *= 2;
                }
                if (cap > WS_MESSAGE_MAX) {
                    cap = WS_MESSAGE_MAX;
                }
                p = realloc(c->rx, cap);
                if (!p) {
                    c->rx_skip = true;
                } else {
                    c->rx = p;
                    c->rx_cap = cap;
                }
            }
            if (!c->rx_skip) {
                memcpy(c->rx + c->rx_len, in, len);
                c->rx_len += len;
            }
        }
    }
    if (!lws_is_final_fragment(wsi)) {
        return;
    }
    if (c->rx_skip && !c->rx_binary) {
        log_debug("msg=ws_message_dropped conn=%llu reason=too_large", c->id);
    } else if (!c->rx_skip) {
        deliver(c, WS_EV_TEXT, c->rx ? c->rx : "", c->rx_len, 0);
    }
    c->rx_in = false;
    c->rx_len = 0;
    /* A large buffer is not kept between messages. */
    if (c->rx_cap > 64 * 1024) {
        free(c->rx);
        c->rx = NULL;
        c->rx_cap = 0;
    }
}

/* Appends m to the hub's write buffer as one masked text frame (RFC 6455
 * 5.2: FIN, opcode 1, the mask bit, the shortest length form, the key). */
static bool frame_append(struct ws_hub *h, size_t *used, const struct msg *m)
{
    size_t need = *used + 14 + m->len;
    unsigned char *p, *key;
    const unsigned char *src = m->data + LWS_PRE;

    if (LWS_PRE + need > h->tx_cap) {
        size_t cap = LWS_PRE + (need > TX_BATCH ? need : TX_BATCH);
        unsigned char *tx = realloc(h->tx, cap);

        if (!tx) {
            return false;
        }
        h->tx = tx;
        h->tx_cap = cap;
    }
    if (h->mask_pos + 4 > MASK_POOL) {
        randombytes_buf(h->masks, sizeof(h->masks));
        h->mask_pos = 0;
    }
    p = h->tx + LWS_PRE + *used;
    *p++ = 0x81;
    if (m->len < 126) {
        *p++ = (unsigned char)(0x80 | m->len);
    } else if (m->len <= 0xFFFF) {
        *p++ = 0x80 | 126;
        *p++ = (unsigned char)(m->len >> 8);
        *p++ = (unsigned char)m->len;
    } else {
        *p++ = 0x80 | 127;
        for (int k = 7; k >= 0; k--) {
            *p++ = (unsigned char)((uint64_t)m->len >> (8 * k));
        }
    }
    key = p;
    memcpy(key, h->masks + h->mask_pos, 4);
    h->mask_pos += 4;
    p += 4;
    for (size_t i = 0; i < m->len; i++) {
        p[i] = src[i] ^ key[i & 3];
    }
    *used = (size_t)(p + m->len - (h->tx + LWS_PRE));
    return true;
}

/* Sends what c has queued in one write: the messages become frames side by
 * side in the hub's buffer (masked here, as lws would), so a connection
 * costs one send per wake-up however many messages wait. lws keeps what the
 * socket did not take and sends it first, before anything written later.
 * -1 when the connection must close, 0 when nothing was queued, 1 when all
 * was sent, 2 when messages are left. */
static int send_queued(struct ws_conn *c, struct lws *wsi)
{
    struct ws_hub *h = c->hub;
    struct msg *batch, *m, **tail = &batch;
    size_t bytes = 0, used = 0;
    bool more, ok = true;
    int n;

    pthread_mutex_lock(&h->mu);
    while ((m = c->q_head) && (bytes == 0 || bytes + m->len <= TX_BATCH)) {
        c->q_head = m->next;
        c->q_bytes -= m->len;
        bytes += m->len;
        *tail = m;
        tail = &m->next;
    }
    *tail = NULL;
    if (!c->q_head) {
        c->q_tail = NULL;
    }
    c->lazy = false;
    more = c->q_head != NULL;
    pthread_mutex_unlock(&h->mu);
    if (!batch) {
        return 0;
    }
    for (m = batch; m && ok; m = m->next) {
        ok = frame_append(h, &used, m);
    }
    msgs_free(batch);
    if (!ok) {
        log_error("msg=\"stream messages lost: out of memory\" conn=%llu", c->id);
        return -1;
    }
    /* A raw write is sent, or kept by lws for later, whole: it fails only
     * with -1. (Its count is of what left from lws' own backlog when one
     * was waiting, not of these bytes.) */
    n = lws_write(wsi, h->tx + LWS_PRE, used, LWS_WRITE_RAW);
    if (n < 0) {
        return -1;
    }
    return more ? 2 : 1;
}

static int on_writeable(struct ws_conn *c, struct lws *wsi)
{
    struct ws_hub *h = c->hub;
    bool close_req;
    int code, n;

    if (c->st != CS_OPEN) {
        return 0;
    }
    n = send_queued(c, wsi);
    if (n < 0) {
        return -1;
    }
    pthread_mutex_lock(&h->mu);
    close_req = c->close_req;
    code = c->close_code;
    pthread_mutex_unlock(&h->mu);
    if (n == 2 || (n == 1 && close_req)) {
        lws_callback_on_writable(wsi); /* the close frame goes after them */
        return 0;
    }
    if (close_req && !c->close_sent) {
        c->close_sent = true;
        c->sent_code = code;
        lws_close_reason(wsi, (enum lws_close_status)code, NULL, 0);
        stop_check(h);
        return -1;
    }
    return 0;
}

static int on_lws(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    struct ws_hub *h = lws_context_user(lws_get_context(wsi));
    struct ws_conn *c = NULL;

    (void)user;
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* Broadcast to every protocol of every vhost with a fake wsi. */
        if (!h->destroying) {
            hub_drain(h);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
    case LWS_CALLBACK_CLIENT_RECEIVE:
    case LWS_CALLBACK_CLIENT_WRITEABLE:
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        c = lws_get_opaque_user_data(wsi);
        if (!c || c->wsi != wsi) {
            return 0;
        }
        break;
    default: return 0;
    }
    if (h->destroying) {
        if (reason == LWS_CALLBACK_WSI_DESTROY) {
            c->wsi = NULL;
        }
        return 0;
    }

    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        /* Once per attempt (each address tried), the same value: it signs
         * the request target, not the address. */
        unsigned char **p = in, *end;

        if (!c->sig[0] || !p || !*p) {
            return 0;
        }
        end = *p + len;
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)WHSIG_HEADER_NAME ":",
                                        (const unsigned char *)c->sig, (int)strlen(c->sig), p,
                                        end)) {
            return -1;
        }
        return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED: {
        bool kick;

        if (c->st != CS_CONNECTING || c->killing) {
            return -1;
        }
        c->st = CS_OPEN;
        lws_sul_cancel(&c->sul);
        log_debug("msg=ws_open conn=%llu host=%s", c->id, c->log_host);
        deliver(c, WS_EV_OPEN, NULL, 0, 0);
        pthread_mutex_lock(&h->mu);
        kick = c->q_head != NULL || c->close_req;
        pthread_mutex_unlock(&h->mu);
        if (kick) {
            lws_callback_on_writable(wsi);
        }
        return 0;
    }
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (c->st == CS_OPEN) {
            on_receive(c, wsi, in, len);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE: return on_writeable(c, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (len >= 2 && in) {
            const unsigned char *p = in;

            c->peer_code = (p[0] << 8) | p[1];
        } else {
            c->peer_code = 1005;
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (conn_try_next(c, wsi)) {
            return 0;
        }
        conn_ended(c, 0, c->fail ? c->fail : (c->tls ? "connect or tls failed" : "connect failed"));
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c->st == CS_OPEN) {
            if (c->close_sent) {
                conn_ended(c, c->sent_code, "closed");
            } else if (c->peer_code) {
                conn_ended(c, c->peer_code, "closed by peer");
            } else {
                conn_ended(c, 1006, "connection lost");
            }
        } else {
            conn_ended(c, 0, c->fail ? c->fail : "handshake failed");
        }
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        c->wsi = NULL;
        if (c->st == CS_OPEN) {
            conn_ended(c, c->close_sent ? c->sent_code : 1006, "connection lost");
        } else {
            conn_ended(c, 0, c->fail ? c->fail : "connect failed");
        }
        stop_check(h);
        conn_touch(c); /* a released conn may be freed now */
        return 0;
    default: return 0;
    }
}

static const struct lws_protocols protocols[] = {
    /* tx_packet_size: a batch of frames goes to the socket in one send
     * (lws would cut it into 4 KiB pieces, one per writeable turn). */
    {"sfvopi-ws", on_lws, 0, 0, 0, NULL, TX_BATCH + 64},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* libwebsockets' own lines: debug level only, quoted (they may carry
 * addresses but never our URL paths, which lws logs only at info). */
static void on_lws_log(int level, const char *line)
{
    char q[300];
    size_t n = strlen(line);

    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
        n--;
    }
    log_quote(q, sizeof(q), line, n);
    log_debug("msg=lws_log lws_level=%s text=%s", level == LLL_ERR ? "error" : "warn", q);
}

static void *service_main(void *p)
{
    struct ws_hub *h = p;

    while (!h->svc_exit) {
        if (lws_service(h->ctx, 0) < 0) {
            log_error("msg=ws_service_failed");
            break;
        }
    }
    return NULL;
}

/* ---- the interface ---- */

static void hub_unref(struct ws_hub *h)
{
    bool last;

    pthread_mutex_lock(&h->mu);
    last = --h->refs == 0;
    pthread_mutex_unlock(&h->mu);
    if (last) {
        pthread_mutex_destroy(&h->mu);
        free(h->tx);
        free(h);
    }
}

/* Every hub alive, for ws_sendq_max. Taken before any hub's mu, never
 * while holding one. */
static pthread_mutex_t hubs_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ws_hub *hubs;

size_t ws_sendq_max(void)
{
    struct ws_hub *h;
    const struct ws_conn *c;
    size_t max = 0;

    pthread_mutex_lock(&hubs_mu);
    for (h = hubs; h; h = h->hubs_next) {
        pthread_mutex_lock(&h->mu);
        for (c = h->all; c; c = c->next) {
            if (c->q_bytes > max) {
                max = c->q_bytes;
            }
        }
        pthread_mutex_unlock(&h->mu);
    }
    pthread_mutex_unlock(&hubs_mu);
    return max;
}

enum err ws_hub_new(bool deny_private_urls, struct ws_hub **out)
{
    struct lws_context_creation_info info;
    struct ws_hub *h;

    *out = NULL;
    h = calloc(1, sizeof(*h));
    if (!h) {
        return ERR_NOMEM;
    }
    if (pthread_mutex_init(&h->mu, NULL) != 0) {
        free(h);
        return ERR_INTERNAL;
    }
    h->refs = 1;
    h->deny_private = deny_private_urls;
    h->mask_pos = MASK_POOL;
    lws_set_log_level(LLL_ERR | LLL_WARN, on_lws_log);

    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.user = h;
    info.gid = -1;
    info.uid = -1;
    info.timeout_secs = 5; /* lws' own waits, such as the close handshake */
    h->ctx = lws_create_context(&info);
    if (!h->ctx) {
        log_error("msg=ws_context_failed");
        goto out_mu;
    }
    if (pthread_create(&h->thread, NULL, service_main, h) != 0) {
        log_error("msg=ws_thread_failed");
        goto out_ctx;
    }
    pthread_mutex_lock(&hubs_mu);
    h->hubs_next = hubs;
    if (hubs) {
        hubs->hubs_prev = h;
    }
    hubs = h;
    pthread_mutex_unlock(&hubs_mu);
    *out = h;
    return ERR_OK;

out_ctx:
    lws_context_destroy(h->ctx);
out_mu:
    pthread_mutex_destroy(&h->mu);
    free(h);
    return ERR_INTERNAL;
}

void ws_hub_free(struct ws_hub *h)
{
    struct ws_conn *c;

    if (!h) {
        return;
    }
    pthread_mutex_lock(&hubs_mu);
    if (h->hubs_prev) {
        h->hubs_prev->hubs_next = h->hubs_next;
    } else {
        hubs = h->hubs_next;
    }
    if (h->hubs_next) {
        h->hubs_next->hubs_prev = h->hubs_prev;
    }
    pthread_mutex_unlock(&hubs_mu);
    pthread_mutex_lock(&h->mu);
    h->stopping = true;
    pthread_mutex_unlock(&h->mu);
    lws_cancel_service(h->ctx);
    pthread_join(h->thread, NULL);

    h->destroying = true;
    lws_sul_cancel(&h->stop_sul);
    lws_context_destroy(h->ctx);
    h->ctx = NULL;

    pthread_mutex_lock(&h->mu);
    c = h->all;
    h->all = NULL;
    h->dirty_head = h->dirty_tail = NULL;
    pthread_mutex_unlock(&h->mu);
    while (c) {
        struct ws_conn *next = c->next;

        conn_free(c);
        c = next;
    }
    hub_unref(h);
}

/* Splits a URL that url_ws_valid accepted into c's host, port and path.
 * ERR_INVALID when a part does not fit. */
static enum err url_split(const char *url, struct ws_conn *c)
{
    const char *p = strstr(url, "://");
    const char *auth, *end, *at, *host, *host_end, *colon = NULL;
    size_t n;
    long port = 0;

    if (!p) {
        return ERR_INVALID;
    }
    c->tls = (size_t)(p - url) == 3; /* "wss" */
    auth = p + 3;
    end = auth + strcspn(auth, "/?");
    at = NULL;
    for (const char *q = auth; q < end; q++) {
        if (*q == '@') {
            at = q;
        }
    }
    host = at ? at + 1 : auth;
    if (*host == '[') {
        const char *rb = memchr(host, ']', (size_t)(end - host));

        if (!rb) {
            return ERR_INVALID;
        }
        host_end = rb + 1;
        if (host_end < end && *host_end == ':') {
            colon = host_end;
        }
        n = (size_t)(rb - host - 1);
        if (n == 0 || n >= sizeof(c->name)) {
            return ERR_INVALID;
        }
        memcpy(c->name, host + 1, n);
        c->name[n] = '\0';
    } else {
        colon = memchr(host, ':', (size_t)(end - host));
        host_end = colon ? colon : end;
        n = (size_t)(host_end - host);
        if (n == 0 || n >= sizeof(c->name)) {
            return ERR_INVALID;
        }
        memcpy(c->name, host, n);
        c->name[n] = '\0';
    }
    if (colon && colon + 1 < end) {
        for (const char *q = colon + 1; q < end; q++) {
            if (*q < '0' || *q > '9' || port > 65535) {
                return ERR_INVALID;
            }
            port = port * 10 + (*q - '0');
        }
        if (port < 1 || port > 65535) {
            return ERR_INVALID;
        }
    }
    c->port = port ? (int)port : (c->tls ? 443 : 80);
    n = (size_t)(host_end - host);
    if (port && port != (c->tls ? 443 : 80)) {
        if (snprintf(c->host_hdr, sizeof(c->host_hdr), "%.*s:%ld", (int)n, host, port) >=
            (int)sizeof(c->host_hdr)) {
            return ERR_INVALID;
        }
    } else {
        memcpy(c->host_hdr, host, n);
        c->host_hdr[n] = '\0';
    }
    /* The path and query go on the wire only; they are never logged. */
    n = strlen(end);
    c->path = malloc(n + 2);
    if (!c->path) {
        return ERR_NOMEM;
    }
    if (*end == '/') {
        memcpy(c->path, end, n + 1);
    } else {
        c->path[0] = '/';
        memcpy(c->path + 1, end, n + 1);
    }
    log_quote(c->log_host, sizeof(c->log_host), c->name, strlen(c->name));
    return ERR_OK;
}

enum err ws_connect(struct ws_hub *h, const char *url, int connect_timeout_ms, ws_event_cb cb,
                    void *arg, struct ws_conn **out)
{
    return ws_connect_signed(h, url, NULL, connect_timeout_ms, cb, arg, out);
}

enum err ws_connect_signed(struct ws_hub *h, const char *url, const struct whsig_keys *keys,
                           int connect_timeout_ms, ws_event_cb cb, void *arg, struct ws_conn **out)
{
    struct addrinfo hints, *res = NULL;
    struct resolve_job *job = NULL;
    struct ws_conn *c;
    const char *reason;
    pthread_attr_t attr;
    pthread_t t;
    enum err e;
    bool wake;

    *out = NULL;
    if (!h || !url || !cb || connect_timeout_ms <= 0 || !url_ws_valid(url, strlen(url), &reason)) {
        return ERR_INVALID;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        return ERR_NOMEM;
    }
    if (pthread_mutex_init(&c->cb_mu, NULL) != 0) {
        free(c);
        return ERR_INTERNAL;
    }
    c->hub = h;
    c->cb = cb;
    c->arg = arg;
    c->st = CS_NEW;
    c->id = __atomic_add_fetch(&h->next_id, 1, __ATOMIC_RELAXED);
    c->deadline = mono_us() + (lws_usec_t)connect_timeout_ms * 1000;
    e = url_split(url, c);
    if (e != ERR_OK) {
        goto out_conn;
    }
    if (keys && keys->n > 0) {
        e = whsig_header(keys, clock_now_ms() / 1000, c->path, strlen(c->path), c->sig);
        if (e != ERR_OK) {
            goto out_conn;
        }
    }

    /* A numeric host is judged here, at once; a name goes to a resolver. */
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST;
    if (getaddrinfo(c->name, NULL, &hints, &res) == 0) {
        c->res_done = true;
        c->res_fail = pick_addresses(res, h->deny_private, &c->res_addrs);
        freeaddrinfo(res);
    } else {
        job = calloc(1, sizeof(*job));
        if (!job) {
            e = ERR_NOMEM;
            goto out_conn;
        }
        job->hub = h;
        job->c = c;
        memcpy(job->name, c->name, sizeof(job->name));
        c->resolving = true;
    }

    log_debug("msg=ws_connect conn=%llu host=%s", c->id, c->log_host);
    pthread_mutex_lock(&h->mu);
    if (h->stopping) {
        pthread_mutex_unlock(&h->mu);
        e = ERR_UNAVAILABLE;
        goto out_job;
    }
    /* Before any callback can run: the callback may use the handle. From
     * the unlock on, c may even be gone (released by its callback), unless
     * a resolver job holds it. */
    *out = c;
    c->next = h->all;
    if (h->all) {
        h->all->prev = c;
    }
    h->all = c;
    if (job) {
        h->refs++;
    }
    wake = mark_dirty_locked(h, c);
    pthread_mutex_unlock(&h->mu);

    if (job) {
        bool started = pthread_attr_init(&attr) == 0;

        if (started) {
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            started = pthread_create(&t, &attr, resolve_main, job) == 0;
            pthread_attr_destroy(&attr);
        }
        if (!started) {
            log_warn("msg=ws_resolver_thread_failed conn=%llu", c->id);
            pthread_mutex_lock(&h->mu);
            c->resolving = false;
            c->res_done = true;
            c->res_fail = "resolver unavailable";
            wake = mark_dirty_locked(h, c) || wake;
            pthread_mutex_unlock(&h->mu);
            free(job);
            hub_unref(h);
        }
    }
    if (wake) {
        lws_cancel_service(h->ctx);
    }
    return ERR_OK;

out_job:
    free(job);
out_conn:
    free(c->path);
    pthread_mutex_destroy(&c->cb_mu);
    free(c);
    return e;
}

static enum err send_text(struct ws_conn *c, const char *data, size_t len, bool lazy)
{
    struct ws_hub *h;
    struct msg *m;
    enum err e = ERR_OK;
    bool wake = false;

    if (!c || (!data && len > 0)) {
        return ERR_INVALID;
    }
    if (len > WS_SENDQ_MAX) {
        return ERR_TOO_LARGE;
    }
    h = c->hub;
    m = malloc(sizeof(*m) + LWS_PRE + len);
    if (!m) {
        return ERR_NOMEM;
    }
    m->next = NULL;
    m->len = len;
    if (len > 0) {
        memcpy(m->data + LWS_PRE, data, len);
    }
    pthread_mutex_lock(&h->mu);
    if (c->closing || h->stopping) {
        e = ERR_UNAVAILABLE;
    } else if (len > WS_SENDQ_MAX - c->q_bytes) {
        e = ERR_TOO_LARGE;
    } else {
        if (c->q_tail) {
            c->q_tail->next = m;
        } else {
            c->q_head = m;
        }
        c->q_tail = m;
        c->q_bytes += len;
        m = NULL;
        if (lazy && !c->lazy && !c->dirty) {
            c->lazy = true; /* rides with the next message */
        } else {
            wake = mark_dirty_locked(h, c);
        }
    }
    pthread_mutex_unlock(&h->mu);
    free(m);
    if (wake) {
        lws_cancel_service(h->ctx);
    }
    return e;
}

enum err ws_send_text(struct ws_conn *c, const char *data, size_t len)
{
    return send_text(c, data, len, false);
}

enum err ws_send_text_lazy(struct ws_conn *c, const char *data, size_t len)
{
    return send_text(c, data, len, true);
}

/* RFC 6455 7.4: the codes an endpoint may put in a close frame (1005,
 * 1006 and 1015 are only ever reported, never sent). */
static bool close_code_sendable(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

void ws_close(struct ws_conn *c, int code)
{
    struct ws_hub *h;
    bool wake = false;

    if (!c) {
        return;
    }
    h = c->hub;
    if (!close_code_sendable(code)) {
        code = 1000;
    }
    pthread_mutex_lock(&h->mu);
    if (!c->close_req && !h->stopping) {
        c->closing = true;
        c->close_req = true;
        c->close_code = code;
        wake = mark_dirty_locked(h, c);
    }
    pthread_mutex_unlock(&h->mu);
    if (wake) {
        lws_cancel_service(h->ctx);
    }
}

void ws_conn_release(struct ws_conn *c)
{
    struct ws_hub *h;
    bool wake = false;

    if (!c) {
        return;
    }
    h = c->hub;
    if (tl_in_cb == c) {
        c->cb_off = true; /* this thread holds cb_mu: it is running c's callback */
    } else {
        pthread_mutex_lock(&c->cb_mu);
        c->cb_off = true;
        pthread_mutex_unlock(&c->cb_mu);
    }
    pthread_mutex_lock(&h->mu);
    assert(!c->released);
    c->released = true;
    c->closing = true;
    if (!c->close_req) {
        c->close_req = true;
        c->close_code = 1000;
    }
    if (!h->stopping) {
        wake = mark_dirty_locked(h, c);
    }
    pthread_mutex_unlock(&h->mu);
    if (wake) {
        lws_cancel_service(h->ctx);
    }
}
