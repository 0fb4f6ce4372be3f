/* test_deliver: webhook delivery end to end on loopback. A small poll()
 * loop honours the deliver_hooks, and an HTTP server thread on 127.0.0.1
 * records each request and answers as its path says (/ok, /ok-body, /exact,
 * /big, /500, /slow, /redirect, /close). Covers the exact POST and GET
 * requests, timeouts, refused connections, a failed TLS handshake, status
 * and body rules, cancel, parallel and re-entrant deliveries, and the
 * address rules (link-local always refused, loopback only under
 * deny_private). Only loopback traffic: 169.254/fe80 are refused before a
 * socket exists. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "call/deliver.h"
#include "call/stream.h"
#include "core/buf.h"
#include "core/whsig.h"

#define VERSION "1.2.3"
#define CALL_UUID "9b2f6c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d"
#define OK_BODY "{\"stream\":{\"url\":\"wss://agent.example.com/ws\"}}"

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the event loop: what the engine's loop does, with poll() ---- */

#define WATCH_MAX 64

struct watch {
    int fd;
    bool r, w;
};

struct loop {
    struct watch w[WATCH_MAX];
    int n;
    long long deadline; /* monotonic ms; -1: no timer */
    bool fail_watch;    /* refuse every new interest, as a full loop would */
};

static int watch_find(const struct loop *l, int fd)
{
    for (int i = 0; i < l->n; i++) {
        if (l->w[i].fd == fd) {
            return i;
        }
    }
    return -1;
}

static int hook_watch(void *ctx, int fd, bool r, bool w)
{
    struct loop *l = ctx;
    int i = watch_find(l, fd);

    if (l->fail_watch && (r || w)) {
        return -1;
    }
    if (!r && !w) {
        if (i >= 0) {
            l->w[i] = l->w[--l->n];
        }
        return 0;
    }
    if (i < 0) {
        if (l->n == WATCH_MAX) {
            return -1;
        }
        i = l->n++;
        l->w[i].fd = fd;
    }
    l->w[i].r = r;
    l->w[i].w = w;
    return 0;
}

static void hook_timer(void *ctx, long ms)
{
    struct loop *l = ctx;

    l->deadline = ms < 0 ? -1 : now_ms() + ms;
}

/* One poll() of at most max_wait ms, then the ready fds and the timer. */
static void loop_step(struct loop *l, struct deliver *d, int max_wait)
{
    struct pollfd p[WATCH_MAX];
    int n = l->n, wait = max_wait;

    for (int i = 0; i < n; i++) {
        p[i].fd = l->w[i].fd;
        p[i].events = (short)((l->w[i].r ? POLLIN : 0) | (l->w[i].w ? POLLOUT : 0));
        p[i].revents = 0;
    }
    if (l->deadline >= 0) {
        long long left = l->deadline - now_ms();

        if (left < 0) {
            left = 0;
        }
        if (left < wait) {
            wait = (int)left;
        }
    }
    if (poll(p, (nfds_t)n, wait) > 0) {
        for (int i = 0; i < n; i++) {
            /* A callback may have stopped watching it meanwhile. */
            if (p[i].revents == 0 || watch_find(l, p[i].fd) < 0) {
                continue;
            }
            deliver_on_fd(d, p[i].fd, (p[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0,
                          (p[i].revents & (POLLOUT | POLLERR)) != 0);
        }
    }
    if (l->deadline >= 0 && now_ms() >= l->deadline) {
        l->deadline = -1;
        deliver_on_timer(d);
    }
}

/* Runs until *count reaches want or max_ms pass. */
static void loop_until(struct loop *l, struct deliver *d, const int *count, int want, int max_ms)
{
    long long end = now_ms() + max_ms;

    while (*count < want && now_ms() < end) {
        loop_step(l, d, 20);
    }
}

static void loop_for(struct loop *l, struct deliver *d, int ms)
{
    long long end = now_ms() + ms;

    while (now_ms() < end) {
        loop_step(l, d, 20);
    }
}

/* ---- the HTTP server ---- */

#define REC_MAX 128
#define HEAD_MAX 4096

struct rec {
    char head[HEAD_MAX];
    char body[8192];
    size_t body_len;
};

static pthread_mutex_t rec_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rec recs[REC_MAX];
static int nrecs;
static int srv_fd = -1;
static int srv_port;
static pthread_t srv_thread;

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

        if (k <= 0) {
            return; /* the client gave up (body too large): fine */
        }
        p += k;
        n -= (size_t)k;
    }
}

static void answer(int fd, const char *status_line, const char *extra, const char *body, size_t len)
{
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %s\r\n%sContent-Length: %zu\r\nConnection: close\r\n\r\n",
                     status_line, extra, len);

    send_all(fd, head, (size_t)n);
    send_all(fd, body, len);
}

/* Reads one request (head, then Content-Length bytes of body) into r. */
static bool read_request(int fd, struct rec *r)
{
    size_t got = 0, want_body = 0;
    char *end = NULL, *cl;

    while (!end) {
        ssize_t k;

        if (got == HEAD_MAX - 1) {
            return false;
        }
        k = recv(fd, r->head + got, HEAD_MAX - 1 - got, 0);
        if (k <= 0) {
            return false;
        }
        got += (size_t)k;
        r->head[got] = '\0';
        end = strstr(r->head, "\r\n\r\n");
    }
    end += 4;
    r->body_len = got - (size_t)(end - r->head);
    memcpy(r->body, end, r->body_len);
    *end = '\0';
    cl = strcasestr(r->head, "\r\nContent-Length: ");
    if (cl) {
        want_body = strtoul(cl + 18, NULL, 10);
    }
    while (r->body_len < want_body && r->body_len < sizeof(r->body) - 1) {
        ssize_t k = recv(fd, r->body + r->body_len, sizeof(r->body) - 1 - r->body_len, 0);

        if (k <= 0) {
            break;
        }
        r->body_len += (size_t)k;
    }
    r->body[r->body_len] = '\0';
    return true;
}

static bool path_is(const char *head, const char *path)
{
    const char *p = strchr(head, ' ');
    size_t n = strlen(path);

    return p && strncmp(p + 1, path, n) == 0 && (p[1 + n] == ' ' || p[1 + n] == '?');
}

static void *conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct rec *r = calloc(1, sizeof(*r));

    if (!r || !read_request(fd, r)) {
        goto out;
    }
    pthread_mutex_lock(&rec_mu);
    if (nrecs < REC_MAX) {
        recs[nrecs++] = *r;
    }
    pthread_mutex_unlock(&rec_mu);

    if (path_is(r->head, "/ok-body")) {
        answer(fd, "200 OK", "Content-Type: application/json\r\n", OK_BODY, strlen(OK_BODY));
    } else if (path_is(r->head, "/exact") || path_is(r->head, "/big")) {
        size_t n = path_is(r->head, "/exact") ? STREAM_BODY_MAX : STREAM_BODY_MAX + 1000;
        char *big = malloc(n);

        if (big) {
            memset(big, 'x', n);
            answer(fd, "200 OK", "", big, n);
            free(big);
        }
    } else if (path_is(r->head, "/500")) {
        answer(fd, "500 Internal Server Error", "", "oops", 4);
    } else if (path_is(r->head, "/redirect")) {
        answer(fd, "302 Found", "Location: /ok\r\n", "", 0);
    } else if (path_is(r->head, "/slow")) {
        /* Never answers; waits (bounded) for the client to give up. */
        struct pollfd p = {fd, POLLIN, 0};
        char c;

        if (poll(&p, 1, 3000) > 0) {
            (void)recv(fd, &c, 1, 0);
        }
    } else if (path_is(r->head, "/close")) {
        /* Closes without a word. */
    } else {
        answer(fd, "200 OK", "", "", 0);
    }
out:
    free(r);
    close(fd);
    return NULL;
}

static void *accept_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_t t;
        int fd = accept(srv_fd, NULL, NULL);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            return NULL; /* shut down */
        }
        if (pthread_create(&t, NULL, conn_main, (void *)(intptr_t)fd) != 0) {
            close(fd);
            continue;
        }
        pthread_detach(t);
    }
}

/* A loopback port nothing listens on. */
static int closed_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int group_setup(void **state)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int one = 1;

    (void)state;
    if (deliver_global_init() != ERR_OK) {
        return -1;
    }
    srv_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (srv_fd < 0) {
        return -1;
    }
    setsockopt(srv_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(srv_fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(srv_fd, 64) != 0 ||
        getsockname(srv_fd, (struct sockaddr *)&a, &len) != 0) {
        return -1;
    }
    srv_port = ntohs(a.sin_port);
    return pthread_create(&srv_thread, NULL, accept_main, NULL) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    shutdown(srv_fd, SHUT_RDWR);
    pthread_join(srv_thread, NULL);
    close(srv_fd);
    return 0;
}

/* The request the server recorded with this X-Sfvopi-Delivery, if any;
 * *count says how many it recorded. */
static bool rec_find(const char *delivery_id, struct rec *out, int *count)
{
    char needle[128];
    bool found = false;

    snprintf(needle, sizeof(needle), "\r\nX-Sfvopi-Delivery: %s\r\n", delivery_id);
    *count = 0;
    pthread_mutex_lock(&rec_mu);
    for (int i = 0; i < nrecs; i++) {
        if (strstr(recs[i].head, needle)) {
            if (!found) {
                *out = recs[i];
            }
            found = true;
            (*count)++;
        }
    }
    pthread_mutex_unlock(&rec_mu);
    return found;
}

/* ---- deliveries ---- */

struct got {
    int calls;
    bool ok;
    long status;
    const char *error; /* static in deliver.c */
    bool has_body;
    char body[STREAM_BODY_MAX + 1];
    size_t body_len;
};

static void on_done(void *arg, const struct deliver_result *r)
{
    struct got *g = arg;

    g->calls++;
    g->ok = r->ok;
    g->status = r->http_status;
    g->error = r->error;
    g->has_body = r->body != NULL;
    if (r->body) {
        assert_true(r->body_len <= STREAM_BODY_MAX);
        assert_int_equal(r->body[r->body_len], '\0');
        memcpy(g->body, r->body, r->body_len + 1);
        g->body_len = r->body_len;
    }
}

struct fx {
    struct loop loop;
    struct deliver *d;
    struct store_call call;
    struct got g[8];
};

static struct store_call test_call(void)
{
    struct store_call c;

    memset(&c, 0, sizeof(c));
    memcpy(c.call_uuid, CALL_UUID, sizeof(CALL_UUID));
    memcpy(c.request_uuid, "sfv_ob_req_a8k3m2x9p1z0", 24);
    memcpy(c.from, "+918000000001", 14);
    memcpy(c.to, "+14155550100", 13);
    snprintf(c.direction, sizeof(c.direction), "OUTBOUND");
    snprintf(c.status, sizeof(c.status), "COMPLETED");
    c.started_at = 1770028200000LL;
    c.answered_at = 1770028200000LL + 5250;
    c.ended_at = 1770028200000LL + 5250 + 62999;
    memcpy(c.hangup_cause, "16", 3);
    return c;
}

static int fx_new(void **state, bool deny_private)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct deliver_hooks h;

    if (!f) {
        return -1;
    }
    f->loop.deadline = -1;
    f->call = test_call();
    h.ctx = &f->loop;
    h.fd_watch = hook_watch;
    h.timer_set = hook_timer;
    if (deliver_new(&h, VERSION, deny_private, &f->d) != ERR_OK) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return fx_new(state, false);
}

static int setup_deny(void **state)
{
    return fx_new(state, true);
}

static int teardown(void **state)
{
    struct fx *f = *state;

    deliver_free(f->d);
    /* Nothing may be left watched or armed. */
    assert_int_equal(f->loop.n, 0);
    free(f);
    return 0;
}

/* Starts a delivery to url (a path on the test server when it starts with
 * '/'), reporting into g. */
static uint64_t send_to(struct fx *f, const char *url, bool post, long timeout_ms, bool want_body,
                        const char *delivery_id, struct got *g)
{
    char full[256];
    struct deliver_request req;
    uint64_t id = 0;

    if (url[0] == '/') {
        snprintf(full, sizeof(full), "http://127.0.0.1:%d%s", srv_port, url);
    } else {
        snprintf(full, sizeof(full), "%s", url);
    }
    memset(&req, 0, sizeof(req));
    req.url = full;
    req.post = post;
    req.kind = post ? WEBHOOK_ANSWER : WEBHOOK_HANGUP;
    req.call = &f->call;
    req.delivery_id = delivery_id;
    req.timeout_ms = timeout_ms;
    req.want_body = want_body;
    assert_int_equal(deliver_send(f->d, &req, on_done, g, &id), ERR_OK);
    assert_true(id != 0);
    /* Never from inside deliver_send. */
    assert_int_equal(g->calls, 0);
    return id;
}

static void run_one(struct fx *f, struct got *g)
{
    loop_until(&f->loop, f->d, &g->calls, 1, 5000);
    assert_int_equal(g->calls, 1);
    /* Exactly once: nothing more comes later. */
    loop_for(&f->loop, f->d, 50);
    assert_int_equal(g->calls, 1);
    assert_int_equal(deliver_pending(f->d), 0);
}

static void test_post_exact(void **state)
{
    struct fx *f = *state;
    struct got *g = &f->g[0];
    struct rec *r = calloc(1, sizeof(*r));
    int count;
    const char *want = "{\"call_uuid\":\"" CALL_UUID "\","
                       "\"request_uuid\":\"sfv_ob_req_a8k3m2x9p1z0\",\"from\":\"+918000000001\","
                       "\"to\":\"+14155550100\",\"direction\":\"OUTBOUND\","
                       "\"call_status\":\"IN_PROGRESS\","
                       "\"answered_at\":\"2026-02-02T10:30:05.250Z\"}";
    char cl[64];

    assert_non_null(r);
    send_to(f, "/ok", true, 10000, false, "dlv-post", g);
    assert_int_equal(deliver_pending(f->d), 1);
    run_one(f, g);
    assert_true(g->ok);
    assert_int_equal(g->status, 200);
    assert_null(g->error);
    assert_false(g->has_body);

    assert_true(rec_find("dlv-post", r, &count));
    assert_int_equal(count, 1);
    assert_memory_equal(r->head, "POST /ok HTTP/1.1\r\n", 19);
    assert_non_null(strstr(r->head, "\r\nUser-Agent: sfvopi/" VERSION "\r\n"));
    assert_non_null(strstr(r->head, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strstr(r->head, "\r\nX-Sfvopi-Call-Uuid: " CALL_UUID "\r\n"));
    assert_non_null(strstr(r->head, "\r\nX-Sfvopi-Delivery: dlv-post\r\n"));
    snprintf(cl, sizeof(cl), "\r\nContent-Length: %zu\r\n", strlen(want));
    assert_non_null(strstr(r->head, cl));
    assert_null(strcasestr(r->head, "\r\nExpect:"));
    assert_null(strcasestr(r->head, "\r\nTransfer-Encoding:"));
    assert_int_equal(r->body_len, strlen(want));
    assert_string_equal(r->body, want);
    free(r);
}

static void test_get_query(void **state)
{
    struct fx *f = *state;
    struct got *g = &f->g[0];
    struct rec *r = calloc(1, sizeof(*r));
    struct buf q, line;
    int count;

    assert_non_null(r);
    buf_init(&q, 4096);
    buf_init(&line, 4096);
    assert_int_equal(webhook_query_string(WEBHOOK_HANGUP, &f->call, &q), ERR_OK);
    assert_int_equal(buf_printf(&line, "GET /ok?x=1&%s HTTP/1.1\r\n", q.data), ERR_OK);

    send_to(f, "/ok?x=1#frag", false, 5000, false, "dlv-get", g);
    run_one(f, g);
    assert_true(g->ok);
    assert_int_equal(g->status, 200);

    assert_true(rec_find("dlv-get", r, &count));
    assert_int_equal(count, 1);
    assert_memory_equal(r->head, line.data, line.len);
    assert_non_null(strstr(r->head, "\r\nUser-Agent: sfvopi/" VERSION "\r\n"));
    assert_non_null(strstr(r->head, "\r\nX-Sfvopi-Call-Uuid: " CALL_UUID "\r\n"));
    assert_null(strcasestr(r->head, "\r\nContent-Type:"));
    assert_null(strcasestr(r->head, "\r\nContent-Length:"));
    assert_int_equal(r->body_len, 0);
    buf_release(&q);
    buf_release(&line);
    free(r);
}

/* AGENT.md section 4: with keys, X-Sfvopi-Signature over the body (POST)
 * or the query string as sent (GET), one v1 per secret; none without. */
static void check_signed(const struct rec *r, const struct whsig_keys *k, const char *content)
{
    const char *h = strstr(r->head, "\r\nX-Sfvopi-Signature: t=");
    char want[WHSIG_HEADER_MAX], line[WHSIG_HEADER_MAX + 32];
    long long t;

    assert_non_null(h);
    t = strtoll(h + strlen("\r\nX-Sfvopi-Signature: t="), NULL, 10);
    assert_true(t > 1700000000LL);
    assert_int_equal(whsig_header(k, t, content, strlen(content), want), ERR_OK);
    snprintf(line, sizeof(line), "\r\nX-Sfvopi-Signature: %s\r\n", want);
    assert_non_null(strstr(r->head, line));
}

static void test_signed(void **state)
{
    struct fx *f = *state;
    struct whsig_keys k = {0};
    struct rec *r = calloc(1, sizeof(*r));
    struct deliver_request req;
    char full[256];
    const char *q;
    uint64_t id;
    int count;

    assert_non_null(r);
    k.n = 2;
    snprintf(k.secret[0], sizeof(k.secret[0]), "whsec_0123456789abcdefghijABCDEFGHIJKL");
    snprintf(k.secret[1], sizeof(k.secret[1]), "whsec_ZYXWVUTSRQPONMLKJIHGFEDCBA987654");
    snprintf(full, sizeof(full), "http://127.0.0.1:%d/ok?x=1", srv_port);
    memset(&req, 0, sizeof(req));
    req.url = full;
    req.call = &f->call;
    req.timeout_ms = 5000;
    req.keys = &k;

    req.post = true;
    req.kind = WEBHOOK_ANSWER;
    req.delivery_id = "dlv-sig-post";
    assert_int_equal(deliver_send(f->d, &req, on_done, &f->g[0], &id), ERR_OK);
    run_one(f, &f->g[0]);
    assert_true(rec_find("dlv-sig-post", r, &count));
    check_signed(r, &k, r->body);
    assert_non_null(strstr(r->head, ",v1="));

    req.post = false;
    req.kind = WEBHOOK_HANGUP;
    req.delivery_id = "dlv-sig-get";
    k.n = 1;
    assert_int_equal(deliver_send(f->d, &req, on_done, &f->g[1], &id), ERR_OK);
    run_one(f, &f->g[1]);
    assert_true(rec_find("dlv-sig-get", r, &count));
    q = strchr(r->head, '?');
    assert_non_null(q);
    {
        char query[4096];
        size_t n = strcspn(q + 1, " ");

        assert_true(n < sizeof(query));
        memcpy(query, q + 1, n);
        query[n] = '\0';
        assert_memory_equal(query, "x=1&call_uuid=", 14);
        check_signed(r, &k, query);
    }

    /* No keys, or none in them: no header. */
    k.n = 0;
    req.delivery_id = "dlv-sig-none";
    assert_int_equal(deliver_send(f->d, &req, on_done, &f->g[2], &id), ERR_OK);
    run_one(f, &f->g[2]);
    assert_true(rec_find("dlv-sig-none", r, &count));
    assert_null(strcasestr(r->head, "\r\nX-Sfvopi-Signature:"));
    free(r);
}

static void test_want_body(void **state)
{
    struct fx *f = *state;

    send_to(f, "/ok-body", true, 10000, true, "dlv-body", &f->g[0]);
    run_one(f, &f->g[0]);
    assert_true(f->g[0].ok);
    assert_true(f->g[0].has_body);
    assert_int_equal(f->g[0].body_len, strlen(OK_BODY));
    assert_string_equal(f->g[0].body, OK_BODY);

    /* Without want_body the response is dropped. */
    send_to(f, "/ok-body", true, 10000, false, "dlv-nobody", &f->g[1]);
    run_one(f, &f->g[1]);
    assert_true(f->g[1].ok);
    assert_false(f->g[1].has_body);

    /* An empty 200 with want_body: an empty string, not NULL. */
    send_to(f, "/ok", true, 10000, true, "dlv-empty", &f->g[2]);
    run_one(f, &f->g[2]);
    assert_true(f->g[2].ok);
    assert_true(f->g[2].has_body);
    assert_int_equal(f->g[2].body_len, 0);
}

static void test_body_limit(void **state)
{
    struct fx *f = *state;

    /* Exactly STREAM_BODY_MAX bytes is fine. */
    send_to(f, "/exact", true, 10000, true, "dlv-exact", &f->g[0]);
    run_one(f, &f->g[0]);
    assert_true(f->g[0].ok);
    assert_int_equal(f->g[0].body_len, STREAM_BODY_MAX);
    assert_int_equal(f->g[0].body[0], 'x');
    assert_int_equal(f->g[0].body[STREAM_BODY_MAX - 1], 'x');

    /* More is not. */
    send_to(f, "/big", true, 10000, true, "dlv-big", &f->g[1]);
    run_one(f, &f->g[1]);
    assert_false(f->g[1].ok);
    assert_int_equal(f->g[1].status, 200);
    assert_string_equal(f->g[1].error, "body too large");
    assert_true(f->g[1].body_len <= STREAM_BODY_MAX);
}

static void test_http_500(void **state)
{
    struct fx *f = *state;

    send_to(f, "/500", true, 10000, true, "dlv-500", &f->g[0]);
    run_one(f, &f->g[0]);
    assert_false(f->g[0].ok);
    assert_int_equal(f->g[0].status, 500);
    assert_string_equal(f->g[0].error, "http status");
}

static void test_redirect_not_followed(void **state)
{
    struct fx *f = *state;
    struct rec *r = calloc(1, sizeof(*r));
    int count;

    assert_non_null(r);
    send_to(f, "/redirect", true, 10000, true, "dlv-302", &f->g[0]);
    run_one(f, &f->g[0]);
    assert_false(f->g[0].ok);
    assert_int_equal(f->g[0].status, 302);
    assert_string_equal(f->g[0].error, "http status");
    /* Only the first request reached the server. */
    loop_for(&f->loop, f->d, 100);
    assert_true(rec_find("dlv-302", r, &count));
    assert_int_equal(count, 1);
    assert_memory_equal(r->head, "POST /redirect ", 15);
    free(r);
}

static void test_timeout(void **state)
{
    struct fx *f = *state;
    long long t0 = now_ms(), took;

    send_to(f, "/slow", true, 300, true, "dlv-slow", &f->g[0]);
    run_one(f, &f->g[0]);
    took = now_ms() - t0;
    assert_false(f->g[0].ok);
    assert_int_equal(f->g[0].status, 0);
    assert_string_equal(f->g[0].error, "timeout");
    assert_true(took >= 280);
    assert_true(took < 2000);
}

/* Accepts one connection on the listening fd it is given, answers plain
 * text to whatever arrives (a TLS ClientHello, here) and closes. */
static void *plain_main(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    int fd = accept(lfd, NULL, NULL);
    static const char reply[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    char buf[512];

    if (fd >= 0) {
        (void)recv(fd, buf, sizeof(buf), 0);
        send_all(fd, reply, sizeof(reply) - 1);
        close(fd);
    }
    return NULL;
}

static void test_tls_failure(void **state)
{
    struct fx *f = *state;
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    pthread_t t;
    char url[64];

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    assert_int_equal(pthread_create(&t, NULL, plain_main, (void *)(intptr_t)lfd), 0);

    snprintf(url, sizeof(url), "https://127.0.0.1:%d/ok", ntohs(a.sin_port));
    send_to(f, url, true, 2000, false, "dlv-tls", &f->g[0]);
    run_one(f, &f->g[0]);
    assert_false(f->g[0].ok);
    assert_int_equal(f->g[0].status, 0);
    assert_string_equal(f->g[0].error, "tls");
    pthread_join(t, NULL);
    close(lfd);
}

static void test_connect_refused(void **state)
{
    struct fx *f = *state;
    char url[64];

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/ok", closed_port());
    send_to(f, url, true, 2000, false, "dlv-closed", &f->g[0]);
    run_one(f, &f->g[0]);
    assert_false(f->g[0].ok);
    assert_int_equal(f->g[0].status, 0);
    assert_string_equal(f->g[0].error, "connect failed");
}

static void test_no_response(void **state)
{
    struct fx *f = *state;

    send_to(f, "/close", false, 2000, false, "dlv-close", &f->g[0]);
    run_one(f, &f->g[0]);
    assert_false(f->g[0].ok);
    assert_int_equal(f->g[0].status, 0);
    assert_string_equal(f->g[0].error, "no response");
}

static void test_cancel(void **state)
{
    struct fx *f = *state;
    struct rec *r = calloc(1, sizeof(*r));
    uint64_t a, b;
    int count;

    assert_non_null(r);
    /* Before anything happened. */
    a = send_to(f, "/slow", true, 300, false, "dlv-cancel-a", &f->g[0]);
    deliver_cancel(f->d, a);
    assert_int_equal(deliver_pending(f->d), 0);

    /* Once the request has reached the server. */
    b = send_to(f, "/slow", true, 300, false, "dlv-cancel-b", &f->g[1]);
    assert_true(b != a);
    for (int i = 0; i < 100 && !rec_find("dlv-cancel-b", r, &count); i++) {
        loop_step(&f->loop, f->d, 20);
    }
    assert_true(rec_find("dlv-cancel-b", r, &count));
    deliver_cancel(f->d, b);
    assert_int_equal(deliver_pending(f->d), 0);

    /* Unknown and already-cancelled ids do nothing. */
    deliver_cancel(f->d, a);
    deliver_cancel(f->d, 987654321);

    loop_for(&f->loop, f->d, 600);
    assert_int_equal(f->g[0].calls, 0);
    assert_int_equal(f->g[1].calls, 0);
    assert_int_equal(f->loop.n, 0);
    free(r);
}

static void test_parallel(void **state)
{
    struct fx *f = *state;
    int total;
    long long t0 = now_ms();

    send_to(f, "/slow", true, 400, false, "dlv-p0", &f->g[0]);
    send_to(f, "/ok", true, 10000, false, "dlv-p1", &f->g[1]);
    send_to(f, "/500", false, 10000, false, "dlv-p2", &f->g[2]);
    send_to(f, "/ok-body", true, 10000, true, "dlv-p3", &f->g[3]);
    send_to(f, "/ok", false, 10000, false, "dlv-p4", &f->g[4]);
    send_to(f, "/slow", true, 400, false, "dlv-p5", &f->g[5]);
    assert_int_equal(deliver_pending(f->d), 6);
    for (;;) {
        total = 0;
        for (int i = 0; i < 6; i++) {
            assert_true(f->g[i].calls <= 1);
            total += f->g[i].calls;
        }
        if (total == 6 || now_ms() - t0 > 5000) {
            break;
        }
        loop_step(&f->loop, f->d, 20);
    }
    assert_int_equal(total, 6);
    /* The slow ones did not hold the others up. */
    assert_string_equal(f->g[0].error, "timeout");
    assert_string_equal(f->g[5].error, "timeout");
    assert_true(f->g[1].ok);
    assert_int_equal(f->g[2].status, 500);
    assert_true(f->g[3].ok);
    assert_string_equal(f->g[3].body, OK_BODY);
    assert_true(f->g[4].ok);
    loop_for(&f->loop, f->d, 50);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(f->g[i].calls, 1);
    }
    assert_int_equal(deliver_pending(f->d), 0);
}

/* A callback that starts a delivery and cancels another, as the engine
 * does when an answer fails over to its fallback. */
struct chain {
    struct fx *f;
    struct got *self, *next;
    uint64_t victim;
};

static void on_chain(void *arg, const struct deliver_result *r)
{
    struct chain *c = arg;

    on_done(c->self, r);
    deliver_cancel(c->f->d, c->victim);
    send_to(c->f, "/ok-body", true, 10000, true, "dlv-chain-next", c->next);
}

static void test_reentrant(void **state)
{
    struct fx *f = *state;
    struct chain c = {f, &f->g[0], &f->g[1], 0};
    struct deliver_request req;
    char url[64];
    uint64_t id;

    c.victim = send_to(f, "/slow", true, 1000, false, "dlv-victim", &f->g[2]);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/500", srv_port);
    memset(&req, 0, sizeof(req));
    req.url = url;
    req.post = true;
    req.kind = WEBHOOK_ANSWER;
    req.call = &f->call;
    req.delivery_id = "dlv-chain";
    req.timeout_ms = 10000;
    assert_int_equal(deliver_send(f->d, &req, on_chain, &c, &id), ERR_OK);

    loop_until(&f->loop, f->d, &f->g[1].calls, 1, 5000);
    assert_int_equal(f->g[0].calls, 1);
    assert_int_equal(f->g[0].status, 500);
    assert_int_equal(f->g[1].calls, 1);
    assert_true(f->g[1].ok);
    assert_string_equal(f->g[1].body, OK_BODY);
    loop_for(&f->loop, f->d, 1200);
    assert_int_equal(f->g[2].calls, 0);
    assert_int_equal(deliver_pending(f->d), 0);
}

/* Two deliveries that finish in the same libcurl call (both refused at
 * once); whichever calls back first cancels the other, whose finished
 * message is already queued inside libcurl: it must never call back. */
struct pair {
    struct fx *f;
    struct got *g;
    uint64_t other;
};

static void on_pair(void *arg, const struct deliver_result *r)
{
    struct pair *p = arg;

    on_done(p->g, r);
    deliver_cancel(p->f->d, p->other);
}

static void test_cancel_finished_sibling(void **state)
{
    struct fx *f = *state;
    struct pair a = {f, &f->g[0], 0}, b = {f, &f->g[1], 0};
    struct deliver_request req;
    uint64_t ida, idb;

    memset(&req, 0, sizeof(req));
    req.url = "http://169.254.169.254/x";
    req.post = true;
    req.kind = WEBHOOK_ANSWER;
    req.call = &f->call;
    req.delivery_id = "dlv-pair";
    req.timeout_ms = 500;
    assert_int_equal(deliver_send(f->d, &req, on_pair, &a, &ida), ERR_OK);
    assert_int_equal(deliver_send(f->d, &req, on_pair, &b, &idb), ERR_OK);
    a.other = idb;
    b.other = ida;
    loop_for(&f->loop, f->d, 300);
    assert_int_equal(f->g[0].calls + f->g[1].calls, 1);
    assert_int_equal(deliver_pending(f->d), 0);
}

static void test_loopback_refused_when_denied(void **state)
{
    struct fx *f = *state;
    struct rec *r = calloc(1, sizeof(*r));
    int count;

    assert_non_null(r);
    send_to(f, "/ok", true, 2000, false, "dlv-deny", &f->g[0]);
    run_one(f, &f->g[0]);
    assert_false(f->g[0].ok);
    assert_int_equal(f->g[0].status, 0);
    assert_string_equal(f->g[0].error, "refused address");
    assert_false(rec_find("dlv-deny", r, &count));
    free(r);
}

static void test_link_local_refused(void **state)
{
    struct fx *f = *state;
    long long t0 = now_ms();

    /* Refused before a socket exists, so it neither sends a packet nor
     * waits; the short timeout bounds the test if the refusal broke. */
    send_to(f, "http://169.254.169.254/latest/meta-data", false, 500, false, "dlv-ll", &f->g[0]);
    run_one(f, &f->g[0]);
    assert_false(f->g[0].ok);
    assert_int_equal(f->g[0].status, 0);
    assert_string_equal(f->g[0].error, "refused address");
    assert_true(now_ms() - t0 < 400);

    send_to(f, "http://[fe80::1]/x", true, 500, false, "dlv-ll6", &f->g[1]);
    run_one(f, &f->g[1]);
    assert_false(f->g[1].ok);
    assert_string_equal(f->g[1].error, "refused address");
}

static void test_watch_failure(void **state)
{
    struct fx *f = *state;

    /* The loop cannot watch the socket: the delivery fails at once
     * instead of hanging until its timeout. */
    f->loop.fail_watch = true;
    send_to(f, "/ok", true, 10000, false, "dlv-nowatch", &f->g[0]);
    for (int i = 0; i < 50 && f->g[0].calls == 0; i++) {
        loop_step(&f->loop, f->d, 20);
    }
    assert_int_equal(f->g[0].calls, 1);
    assert_false(f->g[0].ok);
    assert_string_equal(f->g[0].error, "internal");
    assert_int_equal(deliver_pending(f->d), 0);

    /* The deliverer still works afterwards. */
    f->loop.fail_watch = false;
    send_to(f, "/ok", true, 10000, false, "dlv-watch-again", &f->g[1]);
    run_one(f, &f->g[1]);
    assert_true(f->g[1].ok);
}

static void test_invalid_requests(void **state)
{
    struct fx *f = *state;
    struct deliver_request req;
    uint64_t id = 7;

    memset(&req, 0, sizeof(req));
    req.post = true;
    req.kind = WEBHOOK_ANSWER;
    req.call = &f->call;
    req.delivery_id = "dlv-bad";
    req.timeout_ms = 1000;

    req.url = "ftp://127.0.0.1/x";
    assert_int_equal(deliver_send(f->d, &req, on_done, &f->g[0], &id), ERR_INVALID);
    assert_int_equal(id, 0);
    req.url = "http://127.0.0.1/x";
    req.timeout_ms = 0;
    assert_int_equal(deliver_send(f->d, &req, on_done, &f->g[0], &id), ERR_INVALID);
    req.timeout_ms = 1000;
    req.delivery_id = "bad\r\nX-Injected: 1";
    assert_int_equal(deliver_send(f->d, &req, on_done, &f->g[0], &id), ERR_INVALID);
    req.delivery_id = "dlv-bad";
    req.kind = WEBHOOK_RING;
    snprintf(f->call.direction, sizeof(f->call.direction), "INBOUND"); /* ring is outbound only */
    assert_int_equal(deliver_send(f->d, &req, on_done, &f->g[0], &id), ERR_INVALID);
    assert_int_equal(deliver_pending(f->d), 0);
    loop_for(&f->loop, f->d, 50);
    assert_int_equal(f->g[0].calls, 0);
}

static void test_free_in_flight(void **state)
{
    struct fx *f = *state;

    send_to(f, "/slow", true, 1000, true, "dlv-free-a", &f->g[0]);
    send_to(f, "/ok", true, 1000, true, "dlv-free-b", &f->g[1]);
    loop_step(&f->loop, f->d, 20);
    /* teardown frees with both in flight (or done); neither may call back
     * from deliver_free, which the counters would show. */
    assert_true(f->g[0].calls == 0);
    deliver_free(f->d);
    f->d = NULL;
    assert_int_equal(f->g[0].calls, 0);
    assert_true(f->g[1].calls <= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_post_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_want_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_500, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirect_not_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parallel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reentrant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_finished_sibling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loopback_refused_when_denied, setup_deny, teardown),
        cmocka_unit_test_setup_teardown(test_link_local_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signed, setup, teardown),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
