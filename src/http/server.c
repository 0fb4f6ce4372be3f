/* server: libmicrohttpd glue. MHD runs a pool of threads, each with its own
 * epoll loop; each pool thread lazily gets one struct api_worker (its
 * database connection and key cache), freed when the thread exits.
 *
 * Framing is checked here before MHD reads any body: a request with two
 * Content-Length headers, or with both Content-Length and
 * Transfer-Encoding, is answered 400 and the connection closed, so a body
 * can never be read two ways (request smuggling). */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/parse.h"
#include "http/metrics.h"
#include "http/tls.h"

#define LISTEN_BACKLOG 1024
#define PATH_LOG_MAX 200

/* A connection as the slow-client reaper sees it. deadline_ms (monotonic,
 * 0 for none) is written by the connection's MHD thread and read by the
 * reaper; the list itself changes under conns_mu only. */
struct conn_track {
    struct conn_track *prev, *next;
    int fd;
    int64_t deadline_ms;
};

struct server {
    struct MHD_Daemon *d;
    int fd;
    struct server_config cfg;
    pthread_key_t worker_key;
    atomic_int in_flight;
    pthread_mutex_t conns_mu;
    struct conn_track conns; /* list head */
    pthread_t reaper;
    bool reaper_started;
    atomic_bool stopping;
};

/* One request's state, from its headers to its completion. */
struct req_state {
    struct http_request req;
    struct http_response resp;
    struct buf body;
    int64_t start_ns;
    bool early;    /* the answer is ready, to be sent on the next call */
    bool answered; /* the answer was queued */
    char path_log[PATH_LOG_MAX + 8];
    char client_log[POLICY_IP_TEXT];
    _Alignas(max_align_t) unsigned char call[]; /* the application's, app.call_size bytes */
};

struct header_scan {
    int content_length;
    int transfer_encoding;
    bool te_chunked; /* the Transfer-Encoding is exactly "chunked" */
    bool malformed;  /* whitespace in a field name, or a NUL in a value */
    int api_key;
    const char *api_key_value;
    size_t api_key_len;
    /* X-Forwarded-For lines, the last HTTP_XFF_HEADERS_MAX of them, kept
     * only when want_xff (a trusted proxy is configured). */
    bool want_xff;
    bool forwarded; /* an X-Forwarded-For or Forwarded header, kept or not */
    size_t nxff;
    const char *xff[HTTP_XFF_HEADERS_MAX];
    size_t xff_len[HTTP_XFF_HEADERS_MAX];
    int idem_key;
    const char *idem_key_value;
    size_t idem_key_len;
};

static void deadline_set(struct conn_track *ct, int64_t deadline_ms)
{
    if (ct)
        __atomic_store_n(&ct->deadline_ms, deadline_ms, __ATOMIC_RELAXED);
}

static struct conn_track *track_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return ci ? ci->socket_context : NULL;
}

/* A pool thread's worker, with how to free it when the thread ends (a
 * thread-specific value's destructor sees nothing else). */
struct worker_slot {
    void (*free)(void *worker);
    void *worker;
};

static void worker_release(void *p)
{
    struct worker_slot *slot = p;

    slot->free(slot->worker);
    free(slot);
}

static void *worker_get(struct server *s)
{
    struct worker_slot *slot = pthread_getspecific(s->worker_key);

    if (slot)
        return slot->worker;
    slot = calloc(1, sizeof(*slot));
    if (!slot)
        return NULL;
    slot->free = s->cfg.app.worker_free;
    slot->worker = s->cfg.app.worker_new(s->cfg.app.arg);
    if (!slot->worker || pthread_setspecific(s->worker_key, slot) != 0) {
        if (slot->worker)
            slot->free(slot->worker);
        free(slot);
        return NULL;
    }
    return slot->worker;
}

/* Leaves the URL as the client sent it; the router decodes parameters one
 * segment at a time. */
static size_t unescape_none(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    char q[600];
    size_t n;

    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        n--;
    log_quote(q, sizeof(q), msg, n);
    log_debug("msg=\"http library\" detail=%s", q);
}

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    struct header_scan *h = cls;
    size_t i;

    (void)kind;
    /* RFC 9112 5.1: whitespace between a field name and its colon must be
     * refused, or "Content-Length : 5" would slip past the framing checks
     * here while an intermediary reads it as Content-Length. */
    for (i = 0; i < key_size; i++) {
        if (key[i] == ' ' || key[i] == '\t')
            h->malformed = true;
    }
    if (key_size == 0 || (value && strlen(value) != value_size))
        h->malformed = true;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        h->content_length++;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        h->transfer_encoding++;
        h->te_chunked = value && strcasecmp(value, "chunked") == 0;
    } else if (strcasecmp(key, "X-API-Key") == 0) {
        h->api_key++;
        h->api_key_value = value;
        h->api_key_len = value_size;
    } else if (strcasecmp(key, "Idempotency-Key") == 0) {
        h->idem_key++;
        h->idem_key_value = value;
        h->idem_key_len = value_size;
    } else if (strcasecmp(key, "Forwarded") == 0) {
        h->forwarded = true;
    } else if (strcasecmp(key, "X-Forwarded-For") == 0) {
        h->forwarded = true;
        if (!h->want_xff || !value)
            return MHD_YES;
        if (h->nxff == HTTP_XFF_HEADERS_MAX) {
            /* The right-most lines are the ones that count: drop the first. */
            memmove(h->xff, h->xff + 1, sizeof(h->xff[0]) * (HTTP_XFF_HEADERS_MAX - 1));
            memmove(h->xff_len, h->xff_len + 1, sizeof(h->xff_len[0]) * (HTTP_XFF_HEADERS_MAX - 1));
            h->nxff--;
        }
        h->xff[h->nxff] = value;
        h->xff_len[h->nxff] = value_size;
        h->nxff++;
    }
    return MHD_YES;
}

/* Keeps the query arguments; the URL's own unescaper (unescape_none)
 * leaves them undecoded for the API layer. */
static enum MHD_Result scan_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    struct http_request *req = cls;

    (void)kind;
    if (req->query_n < HTTP_QUERY_MAX) {
        req->query[req->query_n].key = key;
        req->query[req->query_n].value = value;
    }
    if (req->query_n < INT_MAX)
        req->query_n++;
    return MHD_YES;
}

static enum MHD_Result add_uint_header(struct MHD_Response *mr, const char *name, unsigned v)
{
    char tmp[16];

    snprintf(tmp, sizeof(tmp), "%u", v);
    return MHD_add_response_header(mr, name, tmp);
}

static enum MHD_Result add_rate_headers(struct MHD_Response *mr, const struct http_response *r)
{
    if (add_uint_header(mr, "X-RateLimit-Limit", r->rate_limit) != MHD_YES ||
        add_uint_header(mr, "X-RateLimit-Remaining", r->rate_remaining) != MHD_YES ||
        add_uint_header(mr, "X-RateLimit-Reset", r->rate_reset) != MHD_YES)
        return MHD_NO;
    if (r->retry_after)
        return add_uint_header(mr, MHD_HTTP_HEADER_RETRY_AFTER, r->retry_after);
    return MHD_YES;
}

static enum MHD_Result send_response(struct MHD_Connection *conn, struct req_state *rs)
{
    struct http_response *r = &rs->resp;
    struct MHD_Response *mr;
    size_t len = r->body.len;
    char *data = buf_take(&r->body);
    enum MHD_Result ret;

    if (!data)
        return MHD_NO;
    mr = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!mr) {
        free(data);
        return MHD_NO;
    }
    if (MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE,
                                r->content_type ? r->content_type : "application/json") !=
            MHD_YES ||
        MHD_add_response_header(mr, "X-Request-Id", r->request_id) != MHD_YES ||
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES ||
        (r->allow && MHD_add_response_header(mr, MHD_HTTP_HEADER_ALLOW, r->allow) != MHD_YES) ||
        (r->close && MHD_add_response_header(mr, MHD_HTTP_HEADER_CONNECTION, "close") != MHD_YES)) {
        MHD_destroy_response(mr);
        return MHD_NO;
    }
    if (r->rate_set && add_rate_headers(mr, r) != MHD_YES) {
        MHD_destroy_response(mr);
        return MHD_NO;
    }
    if (r->idem_replayed && MHD_add_response_header(mr, "Idempotent-Replayed", "true") != MHD_YES) {
        MHD_destroy_response(mr);
        return MHD_NO;
    }
    /* A Retry-After of its own (a full call queue), without the rate headers. */
    if (!r->rate_set && r->retry_after &&
        add_uint_header(mr, MHD_HTTP_HEADER_RETRY_AFTER, r->retry_after) != MHD_YES) {
        MHD_destroy_response(mr);
        return MHD_NO;
    }
    rs->answered = true;
    r->body.len = len; /* kept for the access log */
    /* From here MHD's idle timeout watches the writing. */
    deadline_set(track_of(conn), 0);
    ret = MHD_queue_response(conn, (unsigned)r->status, mr);
    MHD_destroy_response(mr);
    return ret;
}

/* Refuses a request whose framing is ambiguous or unsupported; the
 * connection is closed after the answer so that nothing of it is read as a
 * next request. */
static enum MHD_Result refuse(struct MHD_Connection *conn, struct req_state *rs, int status,
                              const char *body)
{
    http_response_set_request_id(&rs->resp, rs->req.request_id);
    rs->resp.close = true;
    rs->resp.status = status;
    buf_reset(&rs->resp.body);
    if (buf_append_str(&rs->resp.body, body) != ERR_OK)
        return MHD_NO;
    return send_response(conn, rs);
}

/* The connection's peer address. ERR_INVALID when it is not IP. */
static enum err peer_of(struct MHD_Connection *conn, struct policy_ip *peer)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;

    if (sa && sa->sa_family == AF_INET)
        return policy_ip_from_bytes((const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr, 4,
                                    peer);
    if (sa && sa->sa_family == AF_INET6)
        return policy_ip_from_bytes((const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr,
                                    16, peer);
    return ERR_INVALID;
}

/* The client's address for the access log: the peer's, or the one its
 * X-Forwarded-For names when the peer is a trusted proxy. */
static void client_format(struct server *s, const struct policy_ip *peer, bool have_peer,
                          const struct header_scan *h, char out[POLICY_IP_TEXT])
{
    struct policy_ip client;

    if (!have_peer) {
        snprintf(out, POLICY_IP_TEXT, "-");
        return;
    }
    http_client_addr(peer, s->cfg.trusted_proxy, h->xff, h->xff_len, h->nxff, &client);
    policy_ip_format(&client, out);
}

/* Starts a request: reads headers, checks framing, runs the API's first
 * phase. Returns the MHD result; rs is already attached to the connection. */
static enum MHD_Result begin(struct server *s, struct MHD_Connection *conn, struct req_state *rs,
                             const char *url, const char *method)
{
    struct header_scan h = {0};
    struct http_request *req = &rs->req;
    struct policy_ip peer;
    bool have_peer;
    void *w;
    const char *cl;

    req->method = http_method_parse(method);
    req->path = url;
    req->path_len = strlen(url);
    req->content_length = -1;
    h.want_xff = s->cfg.trusted_proxy && log_enabled(LOG_INFO);
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, scan_header, &h);
    have_peer = peer_of(conn, &peer) == ERR_OK;
    req->peer_loopback = have_peer && policy_ip_loopback(&peer);
    req->forwarded = h.forwarded;
    if (log_enabled(LOG_INFO)) {
        log_quote(rs->path_log, sizeof(rs->path_log), url, req->path_len);
        client_format(s, &peer, have_peer, &h, rs->client_log);
    }
    req->api_key = h.api_key_value;
    req->api_key_len = h.api_key_len;
    req->api_key_count = h.api_key;
    req->idem_key = h.idem_key_value;
    req->idem_key_len = h.idem_key_len;
    req->idem_key_count = h.idem_key;
    req->content_type =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    req->request_id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, scan_query, req);

    cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (h.malformed || h.content_length > 1 || (h.content_length && h.transfer_encoding) ||
        h.transfer_encoding > 1 ||
        (cl && parse_i64(cl, 0, INT64_MAX, &req->content_length) != ERR_OK))
        return refuse(conn, rs, 400, "{\"message\":\"Bad request\"}");
    /* Only chunked is understood (RFC 9112 6.1: 501 for any other coding). */
    if (h.transfer_encoding && !h.te_chunked)
        return refuse(conn, rs, 501, "{\"message\":\"Not implemented\"}");
    w = worker_get(s);
    if (!w)
        return MHD_NO;
    if (s->cfg.app.begin(w, req, rs->call, &rs->resp)) {
        /* Answered on the headers. A request without a body is answered on
         * the next call, once MHD has finished reading it, which keeps the
         * connection alive; a body is left unread, so that connection
         * cannot be reused. */
        if (req->content_length <= 0 && !h.transfer_encoding) {
            rs->early = true;
            return MHD_YES;
        }
        rs->resp.close = true;
        return send_response(conn, rs);
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct server *s = cls;
    struct req_state *rs = *con_cls;
    void *w;

    (void)version;
    if (!rs) {
        rs = calloc(1, sizeof(*rs) + s->cfg.app.call_size);
        if (!rs)
            return MHD_NO;
        *con_cls = rs;
        atomic_fetch_add(&s->in_flight, 1);
        metrics_request_start();
        rs->start_ns = clock_mono_ns();
        /* The headers are in; the body, if any, gets one idle timeout. */
        deadline_set(track_of(conn), clock_mono_ms() + (int64_t)s->cfg.conn_timeout_s * 1000);
        http_response_init(&rs->resp);
        buf_init(&rs->body, HTTP_BODY_MAX);
        return begin(s, conn, rs, url, method);
    }
    if (rs->answered)
        return MHD_YES; /* MHD discards what is left of the body */
    if (rs->early) {
        *upload_data_size = 0;
        return send_response(conn, rs);
    }
    if (*upload_data_size) {
        if (!rs->req.body_too_large &&
            buf_append(&rs->body, upload_data, *upload_data_size) != ERR_OK)
            rs->req.body_too_large = true;
        *upload_data_size = 0;
        return MHD_YES;
    }
    rs->req.body = rs->body.data;
    rs->req.body_len = rs->body.len;
    w = worker_get(s);
    if (!w)
        return MHD_NO;
    s->cfg.app.finish(w, &rs->req, rs->call, &rs->resp);
    return send_response(conn, rs);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct server *s = cls;
    struct req_state *rs = *con_cls;
    int64_t dur_ns;

    if (!rs)
        return;
    dur_ns = clock_mono_ns() - rs->start_ns;
    metrics_request_done(rs->resp.route_idx, rs->answered ? rs->resp.status : 0, dur_ns);
    if (rs->answered && log_enabled(LOG_INFO)) {
        int64_t us = dur_ns / 1000;

        log_info("msg=access method=%s path=%s route=%s status=%d dur_ms=%lld.%03lld "
                 "bytes=%zu org=%lld client=%s req_id=%s%s",
                 http_method_name(rs->req.method), rs->path_log, rs->resp.route, rs->resp.status,
                 (long long)(us / 1000), (long long)(us % 1000), rs->resp.body.len,
                 (long long)rs->resp.org_id, rs->client_log, rs->resp.request_id,
                 toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=1");
    }
    buf_release(&rs->body);
    http_response_release(&rs->resp);
    free(rs);
    *con_cls = NULL;
    /* The next request on this connection must be complete in time. */
    deadline_set(track_of(conn), clock_mono_ms() + (int64_t)s->cfg.conn_timeout_s * 1000);
    atomic_fetch_sub(&s->in_flight, 1);
}

/* Tracks each connection for the reaper and turns off Nagle. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    struct server *s = cls;
    struct conn_track *ct = *socket_ctx;
    const union MHD_ConnectionInfo *ci;
    int one = 1;

    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        if (!ct)
            return;
        pthread_mutex_lock(&s->conns_mu);
        ct->prev->next = ct->next;
        ct->next->prev = ct->prev;
        pthread_mutex_unlock(&s->conns_mu);
        free(ct);
        *socket_ctx = NULL;
        return;
    }
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return;
    /* Small JSON answers must not wait for Nagle. */
    (void)setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ct = calloc(1, sizeof(*ct));
    if (!ct)
        return; /* untracked: MHD's idle timeout still applies */
    ct->fd = ci->connect_fd;
    ct->deadline_ms = clock_mono_ms() + (int64_t)s->cfg.conn_timeout_s * 1000;
    pthread_mutex_lock(&s->conns_mu);
    ct->next = s->conns.next;
    ct->prev = &s->conns;
    s->conns.next->prev = ct;
    s->conns.next = ct;
    pthread_mutex_unlock(&s->conns_mu);
    *socket_ctx = ct;
}

/* The reaper closes connections that trickle: MHD's timeout only counts
 * silence, so a client sending its headers a byte a second would hold a
 * connection for ever. A connection whose request has not fully arrived
 * within the idle timeout (counted from the connection, or from the end of
 * its previous answer) is shut down; so is one whose client has closed its
 * side before its request was complete (that request can never finish).
 * MHD then sees the end of the stream and cleans up. A tracked fd is still
 * open: MHD reports the close (which unlinks it under conns_mu) before it
 * closes the socket. */
static void *reaper_main(void *arg)
{
    struct server *s = arg;
    struct timespec tick = {0, 250 * 1000 * 1000};
    size_t cap = s->cfg.conn_limit ? s->cfg.conn_limit : 1;
    struct pollfd *pfd = calloc(cap, sizeof(*pfd));
    struct conn_track **who = calloc(cap, sizeof(*who));
    struct conn_track *ct;

    while (!atomic_load(&s->stopping)) {
        int64_t now = clock_mono_ms();
        int reaped = 0;
        size_t n = 0, i;

        pthread_mutex_lock(&s->conns_mu);
        for (ct = s->conns.next; ct != &s->conns; ct = ct->next) {
            int64_t d = __atomic_load_n(&ct->deadline_ms, __ATOMIC_RELAXED);

            if (!d)
                continue;
            if (now > d) {
                (void)shutdown(ct->fd, SHUT_RDWR);
                __atomic_store_n(&ct->deadline_ms, 0, __ATOMIC_RELAXED);
                reaped++;
            } else if (pfd && who && n < cap) {
                pfd[n].fd = ct->fd;
                pfd[n].events = POLLRDHUP;
                pfd[n].revents = 0;
                who[n++] = ct;
            }
        }
        /* Peers that hung up in the middle of a request. */
        if (n && poll(pfd, n, 0) > 0) {
            for (i = 0; i < n; i++) {
                if (pfd[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
                    (void)shutdown(pfd[i].fd, SHUT_RDWR);
                    __atomic_store_n(&who[i]->deadline_ms, 0, __ATOMIC_RELAXED);
                    reaped++;
                }
            }
        }
        pthread_mutex_unlock(&s->conns_mu);
        if (reaped)
            log_info("msg=\"slow or abandoned connections closed\" count=%d", reaped);
        nanosleep(&tick, NULL);
    }
    free(pfd);
    free(who);
    return NULL;
}

/* Creates the listening socket ourselves so that "port 0" and IPv6 work and
 * the real address can be reported. */
static enum err listen_on(const char *spec, int *fd_out, char *bound, size_t boundsz)
{
    struct addrinfo hints = {0}, *res = NULL, *ai;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[256], portstr[8], addr[INET6_ADDRSTRLEN];
    int port, fd = -1, one = 1, rc;

    if (parse_listen_addr(spec, host, sizeof(host), &port) != ERR_OK)
        return ERR_INVALID;
    snprintf(portstr, sizeof(portstr), "%d", port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        log_error("msg=\"cannot resolve listen address\" host=%s err=\"%s\"", host,
                  gai_strerror(rc));
        return ERR_INVALID;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, LISTEN_BACKLOG) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        log_error("msg=\"cannot listen\" address=%s err=\"%s\"", spec, strerror(errno));
        return ERR_UNAVAILABLE;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        close(fd);
        return ERR_UNAVAILABLE;
    }
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

        inet_ntop(AF_INET6, &a->sin6_addr, addr, sizeof(addr));
        snprintf(bound, boundsz, "[%s]:%u", addr, ntohs(a->sin6_port));
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;

        inet_ntop(AF_INET, &a->sin_addr, addr, sizeof(addr));
        snprintf(bound, boundsz, "%s:%u", addr, ntohs(a->sin_port));
    }
    *fd_out = fd;
    return ERR_OK;
}

/* libmicrohttpd aborts on internal errors it cannot recover from; say
 * where first, so that the log explains the exit. */
static void on_mhd_panic(void *cls, const char *file, unsigned int line, const char *reason)
{
    (void)cls;
    log_error("msg=\"libmicrohttpd fatal error\" file=%s line=%u reason=\"%.200s\"",
              file ? file : "-", line, reason ? reason : "-");
    abort();
}

/* Starts libmicrohttpd on the socket already listening. The numbers go
 * through an option array; the callbacks, and with TLS the certificate
 * callback and the protocol versions, are passed as they are, since
 * libmicrohttpd reads TLS options only when MHD_USE_TLS is set. The logger
 * comes first so that MHD's own warnings about the options that follow go
 * through it. A pool of one thread is no pool: MHD then runs its single
 * internal polling thread. */
static struct MHD_Daemon *start_daemon(struct server *s, const struct server_config *cfg)
{
    const unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_LISTEN_SOCKET, (intptr_t)s->fd, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)cfg->conn_limit, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)cfg->conn_timeout_s, NULL},
        {MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)cfg->threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };

    MHD_set_panic_func(on_mhd_panic, NULL);
    if (cfg->threads <= 1)
        opts[3].option = MHD_OPTION_END;
    if (cfg->tls)
        return MHD_start_daemon(
            flags | MHD_USE_TLS, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
            NULL, MHD_OPTION_HTTPS_CERT_CALLBACK, tls_creds_callback(cfg->tls),
            MHD_OPTION_HTTPS_PRIORITIES, TLS_PRIORITIES, MHD_OPTION_ARRAY, opts,
            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION,
            on_connection, s, MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, NULL, MHD_OPTION_END);
    return MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER,
                            mhd_log, NULL, MHD_OPTION_ARRAY, opts, MHD_OPTION_NOTIFY_COMPLETED,
                            on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                            MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, NULL, MHD_OPTION_END);
}

enum err server_start(const struct server_config *cfg, struct server **out, char *bound,
                      size_t boundsz)
{
    struct server *s;
    enum err e;

    s = calloc(1, sizeof(*s));
    if (!s)
        return ERR_NOMEM;
    s->cfg = *cfg;
    atomic_init(&s->in_flight, 0);
    atomic_init(&s->stopping, false);
    pthread_mutex_init(&s->conns_mu, NULL);
    s->conns.next = s->conns.prev = &s->conns;
    if (pthread_key_create(&s->worker_key, worker_release) != 0) {
        free(s);
        return ERR_INTERNAL;
    }
    e = listen_on(cfg->listen, &s->fd, bound, boundsz);
    if (e != ERR_OK)
        goto out_key;
    s->d = start_daemon(s, cfg);
    if (!s->d) {
        log_error("msg=\"cannot start http server\"");
        e = ERR_INTERNAL;
        goto out_fd;
    }
    if (pthread_create(&s->reaper, NULL, reaper_main, s) != 0) {
        MHD_stop_daemon(s->d);
        e = ERR_INTERNAL;
        goto out_fd;
    }
    s->reaper_started = true;
    *out = s;
    return ERR_OK;

out_fd:
    close(s->fd);
out_key:
    pthread_key_delete(s->worker_key);
    pthread_mutex_destroy(&s->conns_mu);
    free(s);
    return e;
}

/* Refuses new connections at once while the requests in flight finish.
 * The listening socket is replaced, under the same descriptor number, by
 * a fresh socket that listens on nothing: the old one is closed (the
 * kernel refuses new connections and drops it from every epoll set), and
 * libmicrohttpd closes the stand-in when it stops. Not MHD_quiesce_daemon:
 * in libmicrohttpd 0.9.75 with a thread pool on epoll it races the workers,
 * which remove the socket from their epoll sets themselves, and then
 * aborts ("Failed to remove listen FD from epoll set"). Not shutdown()
 * alone: the socket then stays readable and every worker spins on accept
 * failing until the grace period ends. */
static void stop_listening(int fd)
{
    int standin = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (standin >= 0 && dup2(standin, fd) >= 0) {
        close(standin);
        return;
    }
    if (standin >= 0)
        close(standin);
    (void)shutdown(fd, SHUT_RDWR); /* refuses, at the cost of a busy grace period */
}

void server_stop(struct server *s, int grace_ms)
{
    int64_t deadline = clock_mono_ms() + grace_ms;
    struct timespec pause = {0, 10 * 1000 * 1000};

    if (!s)
        return;
    stop_listening(s->fd);
    while (atomic_load(&s->in_flight) > 0 && clock_mono_ms() < deadline)
        nanosleep(&pause, NULL);
    if (atomic_load(&s->in_flight) > 0)
        log_warn("msg=\"shutdown grace period over\" in_flight=%d", atomic_load(&s->in_flight));
    atomic_store(&s->stopping, true);
    if (s->reaper_started)
        pthread_join(s->reaper, NULL);
    MHD_stop_daemon(s->d); /* closes the listening socket too */
    pthread_key_delete(s->worker_key);
    pthread_mutex_destroy(&s->conns_mu);
    free(s);
}
