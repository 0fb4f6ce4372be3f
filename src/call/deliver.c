/* deliver: webhooks over libcurl's multi-socket interface, on a loop owned
 * by someone else (struct deliver_hooks). The only file that includes
 * <curl/curl.h>; it must not include libre nor block. Callbacks run only
 * after libcurl has returned, so they may start or cancel deliveries. */
#include "call/deliver.h"

#include <assert.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "call/stream.h"
#include "call/telemetry.h"
#include "core/addrclass.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"

/* "X-Sfvopi-Call-Uuid: " and the like, with the longest value. */
#define HEADER_LINE_MAX 256

struct job {
    struct deliver *d;
    struct job *prev, *next;
    uint64_t id;
    CURL *easy;
    struct curl_slist *headers;
    struct buf payload; /* the POST body; libcurl reads it in place */
    struct buf body;    /* the response, when want_body */
    bool want_body;
    bool too_large;
    bool refused;
    bool watch_failed; /* the loop could not watch one of its fds */
    deliver_done_cb cb;
    void *arg;
    enum webhook_kind kind; /* for the metrics */
    int64_t start_ns;       /* sent, on the monotonic clock */
};

struct deliver {
    struct deliver_hooks hooks;
    CURLM *multi;
    char *version;
    bool deny_private;
    uint64_t next_id;
    struct job *jobs; /* in flight, newest first */
    size_t njobs;
    int in_cb;         /* > 0 while a deliver_done_cb runs (deliver_free is refused) */
    bool watch_failed; /* some job has watch_failed set */
};

static bool global_done;

enum err deliver_global_init(void)
{
    if (global_done) {
        return ERR_OK;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return ERR_INTERNAL;
    }
    global_done = true;
    return ERR_OK;
}

static void job_unlink(struct deliver *d, struct job *j)
{
    if (j->prev) {
        j->prev->next = j->next;
    } else {
        d->jobs = j->next;
    }
    if (j->next) {
        j->next->prev = j->prev;
    }
    j->prev = j->next = NULL;
    assert(d->njobs > 0);
    d->njobs--;
}

/* Detaches j from libcurl and frees it. j must already be unlinked. */
static void job_free(struct job *j)
{
    if (j->easy) {
        curl_multi_remove_handle(j->d->multi, j->easy);
        curl_easy_cleanup(j->easy);
    }
    curl_slist_free_all(j->headers);
    buf_release(&j->payload);
    buf_release(&j->body);
    free(j);
}

/* CURLMOPT_SOCKETFUNCTION: libcurl says which fds it wants watched. A
 * failure is never reported to libcurl (7.8x marks the whole multi handle
 * dead when this returns -1); the transfer is failed after the current
 * libcurl call instead, and its timeout would catch it anyway. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct deliver *d = userp;
    bool r = what == CURL_POLL_IN || what == CURL_POLL_INOUT;
    bool w = what == CURL_POLL_OUT || what == CURL_POLL_INOUT;
    char *priv = NULL;

    (void)socketp;
    if (d->hooks.fd_watch(d->hooks.ctx, (int)s, r, w) == 0 || (!r && !w)) {
        return 0;
    }
    log_warn("msg=webhook_watch_failed fd=%d", (int)s);
    if (easy && curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv) == CURLE_OK && priv) {
        ((struct job *)priv)->watch_failed = true;
        d->watch_failed = true;
    }
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: libcurl's next deadline, -1 for none. */
static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct deliver *d = userp;

    (void)multi;
    d->hooks.timer_set(d->hooks.ctx, timeout_ms);
    return 0;
}

/* CURLOPT_OPENSOCKETFUNCTION: the section 5 address rule, checked on the
 * address libcurl is about to connect to (after its own resolution, so a
 * DNS answer cannot change between the check and the connect). Once one
 * address of a delivery is refused, every later one is too: a host that
 * resolves to a link-local address is never called. */
static curl_socket_t on_opensocket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct job *j = clientp;
    /* a->addr is declared as a struct sockaddr but libcurl stores the whole
     * address (up to addrlen bytes) behind it. */
    const unsigned char *raw = (const unsigned char *)&a->addr;
    enum addr_class cls = ADDR_INVALID;
    bool refuse;

    if (purpose == CURLSOCKTYPE_IPCXN && a->family == AF_INET &&
        a->addrlen >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in sin;

        memcpy(&sin, raw, sizeof(sin));
        cls = addr_classify_raw(4, (const unsigned char *)&sin.sin_addr);
    } else if (purpose == CURLSOCKTYPE_IPCXN && a->family == AF_INET6 &&
               a->addrlen >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 sin6;

        memcpy(&sin6, raw, sizeof(sin6));
        cls = addr_classify_raw(6, (const unsigned char *)&sin6.sin6_addr);
    }
    switch (cls) {
    case ADDR_PUBLIC: refuse = false; break;
    case ADDR_LOOPBACK:
    case ADDR_PRIVATE: refuse = j->d->deny_private; break;
    case ADDR_LINK_LOCAL:
    case ADDR_INVALID:
    default: refuse = true; break;
    }
    if (refuse || j->refused) {
        j->refused = true;
        log_debug("msg=webhook_address_refused delivery=%llu class=%d", (unsigned long long)j->id,
                  (int)cls);
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* CURLOPT_WRITEFUNCTION: keeps at most STREAM_BODY_MAX bytes; one more
 * aborts the transfer. Without want_body the response is dropped. */
static size_t on_write(char *p, size_t size, size_t nmemb, void *userp)
{
    struct job *j = userp;
    size_t n = size * nmemb; /* size is always 1 */

    if (!j->want_body) {
        return n;
    }
    if (buf_append(&j->body, p, n) != ERR_OK) {
        j->too_large = true;
        return 0;
    }
    return n;
}

static const char *error_text(const struct job *j, CURLcode rc, long status)
{
    if (j->refused && rc != CURLE_OK) {
        return "refused address";
    }
    switch (rc) {
    case CURLE_OK: return status == 200 ? NULL : "http status";
    case CURLE_WRITE_ERROR: return j->too_large ? "body too large" : "transfer failed";
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_COULDNT_RESOLVE_HOST: return "resolve failed";
    case CURLE_COULDNT_CONNECT: return "connect failed";
    case CURLE_GOT_NOTHING: return "no response";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_USE_SSL_FAILED: return "tls";
    default: return "transfer failed";
    }
}

/* Ends j: takes it out of libcurl and the list, then calls its callback
 * with rc (libcurl's verdict) and frees it. The callback may re-enter. */
static void job_finish(struct deliver *d, struct job *j, CURLcode rc, const char *forced_error)
{
    struct deliver_result r;
    long status = 0;

    if (curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK) {
        status = 0;
    }
    curl_multi_remove_handle(d->multi, j->easy);
    job_unlink(d, j);

    memset(&r, 0, sizeof(r));
    r.http_status = status;
    r.error = forced_error ? forced_error : error_text(j, rc, status);
    r.ok = r.error == NULL;
    if (j->want_body) {
        r.body = j->body.data ? j->body.data : "";
        r.body_len = j->body.len;
    }
    log_debug("msg=webhook_done delivery=%llu status=%ld error=%s", (unsigned long long)j->id,
              status, r.error ? r.error : "none");
    telemetry_webhook(j->kind, telemetry_outcome_of(r.error), clock_mono_ns() - j->start_ns);
    d->in_cb++;
    j->cb(j->arg, &r);
    d->in_cb--;
    job_free(j);
}

/* Runs the callbacks of every finished transfer. A callback may add
 * deliveries or cancel others (curl_multi_remove_handle also drops a
 * cancelled transfer's queued message), so the queue is read afresh each
 * time and nothing is cached across a callback. */
static void drain(struct deliver *d)
{
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(d->multi, &left)) != NULL) {
        char *priv = NULL;
        CURLcode rc;

        if (m->msg != CURLMSG_DONE) {
            continue;
        }
        rc = m->data.result; /* m is invalid once the handle is removed */
        if (curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv) != CURLE_OK || !priv) {
            continue;
        }
        job_finish(d, (struct job *)priv, rc, NULL);
    }
}

/* libcurl refused to act (a hook failed, or memory ran out): fail every
 * delivery rather than leave one without its callback forever. */
static void fail_all(struct deliver *d, CURLMcode mc)
{
    log_warn("msg=webhook_multi_failed error=\"%s\" pending=%zu", curl_multi_strerror(mc),
             d->njobs);
    while (d->jobs) {
        job_finish(d, d->jobs, CURLE_OK, "internal");
    }
}

/* Fails the deliveries whose fds the loop could not watch. Rescans after
 * each callback, which may have changed the list. */
static void sweep_watch_failed(struct deliver *d)
{
    struct job *j;

    while (d->watch_failed) {
        for (j = d->jobs; j && !j->watch_failed; j = j->next) {
        }
        if (!j) {
            d->watch_failed = false;
            break;
        }
        job_finish(d, j, CURLE_OK, "internal");
    }
}

static void action(struct deliver *d, curl_socket_t s, int ev)
{
    int running = 0;
    CURLMcode mc = curl_multi_socket_action(d->multi, s, ev, &running);

    drain(d);
    sweep_watch_failed(d);
    if (mc == CURLM_BAD_SOCKET) {
        /* An fd libcurl has already let go of; nothing to do. */
        log_debug("msg=webhook_stale_fd fd=%d", (int)s);
    } else if (mc != CURLM_OK) {
        fail_all(d, mc);
    }
}

void deliver_on_fd(struct deliver *d, int fd, bool readable, bool writable)
{
    int ev = (readable ? CURL_CSELECT_IN : 0) | (writable ? CURL_CSELECT_OUT : 0);

    action(d, (curl_socket_t)fd, ev);
}

void deliver_on_timer(struct deliver *d)
{
    action(d, CURL_SOCKET_TIMEOUT, 0);
}

enum err deliver_new(const struct deliver_hooks *hooks, const char *version, bool deny_private,
                     struct deliver **out)
{
    struct deliver *d;

    assert(hooks && hooks->fd_watch && hooks->timer_set && version && out);
    *out = NULL;
    d = calloc(1, sizeof(*d));
    if (!d) {
        return ERR_NOMEM;
    }
    d->hooks = *hooks;
    d->deny_private = deny_private;
    d->next_id = 1;
    d->version = strdup(version);
    if (!d->version) {
        free(d);
        return ERR_NOMEM;
    }
    d->multi = curl_multi_init();
    if (!d->multi) {
        goto out_version;
    }
    if (curl_multi_setopt(d->multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
        curl_multi_setopt(d->multi, CURLMOPT_SOCKETDATA, d) != CURLM_OK ||
        curl_multi_setopt(d->multi, CURLMOPT_TIMERFUNCTION, on_timer) != CURLM_OK ||
        curl_multi_setopt(d->multi, CURLMOPT_TIMERDATA, d) != CURLM_OK) {
        goto out_multi;
    }
    *out = d;
    return ERR_OK;

out_multi:
    curl_multi_cleanup(d->multi);
out_version:
    free(d->version);
    free(d);
    return ERR_INTERNAL;
}

void deliver_free(struct deliver *d)
{
    if (!d) {
        return;
    }
    assert(d->in_cb == 0);
    while (d->jobs) {
        struct job *j = d->jobs;

        job_unlink(d, j);
        job_free(j);
    }
    curl_multi_cleanup(d->multi);
    free(d->version);
    free(d);
}

static bool url_scheme_ok(const char *url)
{
    return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

/* The headers webhook.h chose, as libcurl's list, plus an empty "Expect:"
 * so a POST never waits for a 100 Continue. */
static enum err headers_build(const struct webhook_headers *hs, struct curl_slist **out)
{
    struct curl_slist *list = NULL, *next;
    char line[HEADER_LINE_MAX];
    int i;

    for (i = 0; i < hs->n; i++) {
        int n = snprintf(line, sizeof(line), "%s: %s", hs->h[i].name, hs->h[i].value);

        if (n < 0 || (size_t)n >= sizeof(line)) {
            curl_slist_free_all(list);
            return ERR_TOO_LARGE;
        }
        next = curl_slist_append(list, line);
        if (!next) {
            curl_slist_free_all(list);
            return ERR_NOMEM;
        }
        list = next;
    }
    next = curl_slist_append(list, "Expect:");
    if (!next) {
        curl_slist_free_all(list);
        return ERR_NOMEM;
    }
    *out = next;
    return ERR_OK;
}

/* Adds X-Sfvopi-Signature over the body (POST) or the query string as it
 * goes on the request line, without its '?' (GET). The header carries only
 * MACs, never a secret. */
static enum err sign_header(const struct whsig_keys *keys, bool post, const struct buf *payload,
                            const char *url, struct curl_slist **headers)
{
    char value[WHSIG_HEADER_MAX], line[HEADER_LINE_MAX];
    const char *content = post ? payload->data : strchr(url, '?');
    size_t len = post ? payload->len : 0;
    struct curl_slist *next;
    enum err rc;
    int n;

    if (!post && content) {
        content++;
        len = strlen(content);
    }
    rc = whsig_header(keys, clock_now_ms() / 1000, content ? content : "", len, value);
    if (rc != ERR_OK)
        return rc;
    n = snprintf(line, sizeof(line), "%s: %s", WHSIG_HEADER_NAME, value);
    if (n < 0 || (size_t)n >= sizeof(line))
        return ERR_TOO_LARGE;
    next = curl_slist_append(*headers, line);
    if (!next)
        return ERR_NOMEM;
    *headers = next;
    return ERR_OK;
}

/* Every option that makes a delivery safe: no signals, http(s) only, no
 * redirects, no proxy from the environment, TLS verified (libcurl's
 * defaults, restated so nobody "fixes" them), the address check, the
 * response cap and the whole-request timeout. */
static bool easy_setup(struct job *j, const char *url, bool post, long timeout_ms)
{
    CURL *e = j->easy;
    bool ok = true;

    ok = ok && curl_easy_setopt(e, CURLOPT_URL, url) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_PROXY, "") == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_NOPROXY, "*") == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_opensocket) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, j) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_WRITEDATA, j) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)j) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->headers) == CURLE_OK;
    if (post) {
        ok = ok && curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->payload.len) ==
                       CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->payload.data) == CURLE_OK;
    } else {
        ok = ok && curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) == CURLE_OK;
    }
    return ok;
}

enum err deliver_send(struct deliver *d, const struct deliver_request *req, deliver_done_cb cb,
                      void *arg, uint64_t *id)
{
    struct webhook_headers hs;
    struct buf url;
    struct job *j;
    enum err rc;

    assert(d && req && cb && id);
    *id = 0;
    if (!req->url || !req->call || !req->delivery_id || !url_scheme_ok(req->url) ||
        req->timeout_ms <= 0) {
        return ERR_INVALID;
    }
    rc = webhook_headers_make(req->post, d->version, req->call, req->delivery_id, &hs);
    if (rc != ERR_OK) {
        return rc;
    }
    j = calloc(1, sizeof(*j));
    if (!j) {
        return ERR_NOMEM;
    }
    j->d = d;
    j->cb = cb;
    j->arg = arg;
    j->want_body = req->want_body;
    j->kind = req->kind;
    j->start_ns = clock_mono_ns();
    buf_init(&j->payload, DELIVER_BODY_MAX);
    buf_init(&j->body, STREAM_BODY_MAX);
    buf_init(&url, DELIVER_URL_MAX);

    if (req->post) {
        rc = webhook_body_json(req->kind, req->call, &j->payload);
        if (rc == ERR_OK) {
            rc = buf_append_str(&url, req->url);
        }
    } else {
        rc = webhook_get_url(req->url, req->kind, req->call, &url);
    }
    if (rc != ERR_OK) {
        goto out_job;
    }
    rc = headers_build(&hs, &j->headers);
    if (rc != ERR_OK) {
        goto out_job;
    }
    if (req->keys && req->keys->n > 0) {
        rc = sign_header(req->keys, req->post, &j->payload, url.data, &j->headers);
        if (rc != ERR_OK) {
            goto out_job;
        }
    }
    rc = ERR_INTERNAL;
    j->easy = curl_easy_init();
    if (!j->easy) {
        goto out_job;
    }
    /* The POST body must be a real pointer even when empty. */
    if (req->post && !j->payload.data) {
        goto out_job;
    }
    if (!easy_setup(j, url.data, req->post, req->timeout_ms)) {
        goto out_job;
    }
    j->id = d->next_id++;
    /* Linked before the add so that a hook firing inside it sees a
     * consistent count; the add only arms the timer, it runs nothing. */
    j->next = d->jobs;
    if (d->jobs) {
        d->jobs->prev = j;
    }
    d->jobs = j;
    d->njobs++;
    if (curl_multi_add_handle(d->multi, j->easy) != CURLM_OK) {
        job_unlink(d, j);
        curl_easy_cleanup(j->easy);
        j->easy = NULL;
        goto out_job;
    }
    buf_release(&url);
    *id = j->id;
    return ERR_OK;

out_job:
    buf_release(&url);
    job_free(j);
    return rc;
}

void deliver_cancel(struct deliver *d, uint64_t id)
{
    struct job *j;

    for (j = d->jobs; j; j = j->next) {
        if (j->id == id) {
            job_unlink(d, j);
            job_free(j);
            return;
        }
    }
}

size_t deliver_pending(const struct deliver *d)
{
    return d->njobs;
}
