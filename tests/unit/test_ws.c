/* test_ws: the WebSocket client hub against a small RFC 6455 server written
 * here on plain sockets (127.0.0.1, port 0, one thread per connection). The
 * request path picks the server's behaviour: /echo, /frag (a fragmented
 * text message and a binary frame), /big (a message over WS_MESSAGE_MAX),
 * /exact (one of exactly WS_MESSAGE_MAX), /flood (text until closed),
 * /close1001, /close-empty, /drop, /nohs (never answers the handshake). Covers open, text
 * both ways in order, close codes each way, drops, refused ports, the
 * handshake timeout, the address rules, wss against a plain server, the
 * send-queue cap, many connections, release from the callback and freeing
 * the hub with connections open. Loopback only; every wait is bounded. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "ws/ws.h"

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static void deadline_ts(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* ---- SHA-1 (RFC 3174), only for Sec-WebSocket-Accept ---- */

static uint32_t rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1(const unsigned char *msg, size_t len, unsigned char out[20])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((len + 8) / 64 + 1) * 64;
    unsigned char *buf = calloc(1, total);
    uint64_t bits = (uint64_t)len * 8;

    assert_non_null(buf);
    memcpy(buf, msg, len);
    buf[len] = 0x80;
    for (int i = 0; i < 8; i++) {
        buf[total - 1 - i] = (unsigned char)(bits >> (8 * i));
    }
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80], a, b, c, d, e;

        for (int i = 0; i < 16; i++) {
            const unsigned char *p = buf + off + 4 * i;

            w[i] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        }
        for (int i = 16; i < 80; i++) {
            w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        }
        a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k, t;

            if (i < 20) {
                f = (b & c) | (~b & d), k = 0x5A827999;
            } else if (i < 40) {
                f = b ^ c ^ d, k = 0x6ED9EBA1;
            } else if (i < 60) {
                f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
            } else {
                f = b ^ c ^ d, k = 0xCA62C1D6;
            }
            t = rol(a, 5) + f + e + k + w[i];
            e = d, d = c, c = rol(b, 30), b = a, a = t;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
    }
    free(buf);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8);
        out[4 * i + 3] = (unsigned char)h[i];
    }
}

static void test_sha1_known(void **state)
{
    unsigned char d[20];
    char b64[64];

    (void)state;
    /* RFC 6455 section 1.3's example. */
    const char *in = "dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    sha1((const unsigned char *)in, strlen(in), d);
    sodium_bin2base64(b64, sizeof(b64), d, 20, sodium_base64_VARIANT_ORIGINAL);
    assert_string_equal(b64, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/* ---- the server ---- */

#define SRV_MSGS 1100
#define SRV_CLOSES 64

struct srv {
    int lfd;
    int lfd6; /* [::1] on the same port, -1 when IPv6 is unavailable */
    int port;
    pthread_t th;
    atomic_bool stop;
    atomic_int accepted; /* TCP connections */
    atomic_int active;   /* connection threads running */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char host_seen[128];
    char sig_seen[256]; /* X-Sfvopi-Signature of the last handshake, "" for none */
    char path_seen[256];
    unsigned char hello[2048]; /* the first TLS record seen */
    size_t hello_len;
    char *msgs[SRV_MSGS]; /* text frames received, in order */
    size_t msg_len[SRV_MSGS];
    int nmsgs;
    int closes[SRV_CLOSES]; /* close codes received */
    int ncloses;
};

static struct srv *S;

static bool read_full(int fd, void *p, size_t n)
{
    unsigned char *b = p;

    while (n > 0) {
        ssize_t r = read(fd, b, n);

        if (r <= 0) {
            if (r < 0 && errno == EINTR) {
                continue;
            }
            return false;
        }
        b += r;
        n -= (size_t)r;
    }
    return true;
}

static bool write_full(int fd, const void *p, size_t n)
{
    const unsigned char *b = p;

    while (n > 0) {
        ssize_t r = send(fd, b, n, MSG_NOSIGNAL);

        if (r <= 0) {
            if (r < 0 && errno == EINTR) {
                continue;
            }
            return false;
        }
        b += r;
        n -= (size_t)r;
    }
    return true;
}

/* A server frame (never masked). */
static bool send_frame(int fd, bool fin, int op, const void *data, size_t len)
{
    unsigned char h[10];
    size_t hl = 2;

    h[0] = (unsigned char)((fin ? 0x80 : 0) | op);
    if (len < 126) {
        h[1] = (unsigned char)len;
    } else if (len < 65536) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++) {
            h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        }
        hl = 10;
    }
    return write_full(fd, h, hl) && (len == 0 || write_full(fd, data, len));
}

/* A client frame (masked); *data is malloc'd. */
static bool read_frame(int fd, bool *fin, int *op, unsigned char **data, size_t *len)
{
    unsigned char h[2], ext[8], mask[4];
    uint64_t n;

    if (!read_full(fd, h, 2)) {
        return false;
    }
    *fin = (h[0] & 0x80) != 0;
    *op = h[0] & 0x0f;
    n = h[1] & 0x7f;
    if (n == 126) {
        if (!read_full(fd, ext, 2)) {
            return false;
        }
        n = (uint64_t)ext[0] << 8 | ext[1];
    } else if (n == 127) {
        if (!read_full(fd, ext, 8)) {
            return false;
        }
        n = 0;
        for (int i = 0; i < 8; i++) {
            n = n << 8 | ext[i];
        }
    }
    if (!(h[1] & 0x80) || n > 16 * 1024 * 1024 || !read_full(fd, mask, 4)) {
        return false;
    }
    *data = malloc(n + 1);
    if (!*data || !read_full(fd, *data, n)) {
        free(*data);
        return false;
    }
    for (uint64_t i = 0; i < n; i++) {
        (*data)[i] ^= mask[i % 4];
    }
    (*data)[n] = 0;
    *len = n;
    return true;
}

static void srv_record_close(struct srv *s, int code)
{
    pthread_mutex_lock(&s->mu);
    if (s->ncloses < SRV_CLOSES) {
        s->closes[s->ncloses++] = code;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Echoes text frames (recording them) until a close, which it answers. */
static void serve_echo(struct srv *s, int fd)
{
    bool fin;
    int op;
    unsigned char *d;
    size_t n;

    while (read_frame(fd, &fin, &op, &d, &n)) {
        if (op == 1) {
            bool kept = false;

            send_frame(fd, true, 1, d, n);
            pthread_mutex_lock(&s->mu);
            if (s->nmsgs < SRV_MSGS) {
                s->msgs[s->nmsgs] = (char *)d;
                s->msg_len[s->nmsgs++] = n;
                kept = true;
            }
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
            if (!kept) {
                free(d);
            }
        } else if (op == 8) {
            int code = n >= 2 ? (d[0] << 8 | d[1]) : 1005;

            send_frame(fd, true, 8, d, n >= 2 ? 2 : 0);
            free(d);
            srv_record_close(s, code);
            return;
        } else {
            free(d);
        }
    }
}

struct srv_conn {
    struct srv *s;
    int fd;
};

static void *srv_conn_main(void *p)
{
    struct srv_conn *sc = p;
    struct srv *s = sc->s;
    int fd = sc->fd;
    char req[8192], path[256] = "", key[128] = "", resp[512];
    size_t n = 0;
    struct timeval tv = {3, 0};

    free(sc);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (n < sizeof(req) - 1) {
        ssize_t r = read(fd, req + n, sizeof(req) - 1 - n);

        if (r <= 0) {
            goto out;
        }
        n += (size_t)r;
        req[n] = 0;
        if ((unsigned char)req[0] == 0x16 || strstr(req, "\r\n\r\n")) {
            break;
        }
    }
    if ((unsigned char)req[0] == 0x16) {
        /* A TLS ClientHello: keep it (for the SNI check), answer in plain
         * HTTP, which no TLS client accepts. */
        pthread_mutex_lock(&s->mu);
        memcpy(s->hello, req, n < sizeof(s->hello) ? n : sizeof(s->hello));
        s->hello_len = n < sizeof(s->hello) ? n : sizeof(s->hello);
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        write_full(fd, "HTTP/1.1 400 Bad Request\r\n\r\n", 28);
        goto out;
    }
    sscanf(req, "GET %255s ", path);
    pthread_mutex_lock(&s->mu);
    memcpy(s->path_seen, path, sizeof(path));
    pthread_mutex_unlock(&s->mu);
    if (strncmp(path, "/nohs", 5) == 0) {
        /* Hold the socket, answer nothing, until the client gives up. */
        while (!atomic_load(&s->stop) && read(fd, req, sizeof(req)) > 0) {
        }
        goto out;
    }
    pthread_mutex_lock(&s->mu);
    s->sig_seen[0] = '\0';
    pthread_mutex_unlock(&s->mu);
    for (char *line = strstr(req, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, "X-Sfvopi-Signature: ", 20) == 0) {
            pthread_mutex_lock(&s->mu);
            sscanf(line + 22, "%255[^\r]", s->sig_seen);
            pthread_mutex_unlock(&s->mu);
        }
        if (strncasecmp(line + 2, "Sec-WebSocket-Key: ", 19) == 0) {
            sscanf(line + 21, "%127[^\r]", key);
        } else if (strncasecmp(line + 2, "Host: ", 6) == 0) {
            pthread_mutex_lock(&s->mu);
            sscanf(line + 8, "%127[^\r]", s->host_seen);
            pthread_mutex_unlock(&s->mu);
        }
    }
    {
        char cat[256];
        unsigned char dg[20];
        char acc[64];

        snprintf(cat, sizeof(cat), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
        sha1((const unsigned char *)cat, strlen(cat), dg);
        sodium_bin2base64(acc, sizeof(acc), dg, 20, sodium_base64_VARIANT_ORIGINAL);
        snprintf(resp, sizeof(resp),
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                 acc);
    }
    if (!write_full(fd, resp, strlen(resp))) {
        goto out;
    }
    if (strcmp(path, "/drop") == 0) {
        goto out;
    }
    if (strcmp(path, "/close1001") == 0 || strcmp(path, "/close-empty") == 0) {
        unsigned char code[2] = {0x03, 0xe9};
        unsigned char *d;
        size_t len;
        bool fin;
        int op;

        send_frame(fd, true, 8, code, path[6] == '1' ? 2 : 0);
        /* Until the client answers the close (or goes away). */
        while (read_frame(fd, &fin, &op, &d, &len)) {
            free(d);
            if (op == 8) {
                break;
            }
        }
        goto out;
    }
    if (strcmp(path, "/flood") == 0) {
        long long end = now_ms() + 5000;
        int k = 0;

        while (now_ms() < end) {
            struct pollfd pfd = {fd, POLLIN, 0};
            char m[32];

            if (poll(&pfd, 1, 0) > 0) {
                serve_echo(s, fd); /* the client's close (or EOF) */
                goto out;
            }
            snprintf(m, sizeof(m), "f%d", k++);
            if (!send_frame(fd, true, 1, m, strlen(m))) {
                goto out;
            }
            sleep_ms(1);
        }
        goto out;
    }
    if (strcmp(path, "/exact") == 0) {
        size_t big = WS_MESSAGE_MAX;
        char *b = malloc(big);

        assert_non_null(b);
        memset(b, 'y', big);
        send_frame(fd, false, 1, b, 1000);
        send_frame(fd, false, 0, b + 1000, big - 2000);
        send_frame(fd, true, 0, b + big - 1000, 1000);
        free(b);
        send_frame(fd, true, 1, "small", 5);
    }
    if (strcmp(path, "/frag") == 0) {
        send_frame(fd, false, 1, "hello ", 6);
        send_frame(fd, false, 0, "wor", 3);
        send_frame(fd, true, 0, "ld", 2);
        send_frame(fd, true, 2, "\x01\x02\x03", 3);
        send_frame(fd, false, 2, "bin", 3);
        send_frame(fd, true, 0, "ary", 3);
        send_frame(fd, true, 1, "after", 5);
    }
    if (strcmp(path, "/big") == 0) {
        size_t big = WS_MESSAGE_MAX + 10;
        char *b = malloc(big);

        assert_non_null(b);
        memset(b, 'x', big);
        send_frame(fd, false, 1, b, big / 2);
        send_frame(fd, true, 0, b, big - big / 2);
        free(b);
        send_frame(fd, true, 1, "small", 5);
    }
    serve_echo(s, fd);
out:
    close(fd);
    atomic_fetch_sub(&s->active, 1);
    return NULL;
}

static void *srv_main(void *p)
{
    struct srv *s = p;

    while (!atomic_load(&s->stop)) {
        struct pollfd pfd[2] = {{s->lfd, POLLIN, 0}, {s->lfd6, POLLIN, 0}};
        struct srv_conn *sc;
        pthread_t t;
        int fd;

        if (poll(pfd, s->lfd6 >= 0 ? 2 : 1, 50) <= 0) {
            continue;
        }
        fd = accept(pfd[0].revents ? s->lfd : s->lfd6, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        atomic_fetch_add(&s->accepted, 1);
        atomic_fetch_add(&s->active, 1);
        sc = malloc(sizeof(*sc));
        sc->s = s;
        sc->fd = fd;
        if (pthread_create(&t, NULL, srv_conn_main, sc) != 0) {
            close(fd);
            free(sc);
            atomic_fetch_sub(&s->active, 1);
            continue;
        }
        pthread_detach(t);
    }
    return NULL;
}

static int setup(void **state)
{
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    int one = 1;

    (void)state;
    S = calloc(1, sizeof(*S));
    pthread_mutex_init(&S->mu, NULL);
    pthread_cond_init(&S->cv, NULL);
    S->lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(S->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(S->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(S->lfd, 64) != 0) {
        return -1;
    }
    getsockname(S->lfd, (struct sockaddr *)&a, &al);
    S->port = ntohs(a.sin_port);
    S->lfd6 = socket(AF_INET6, SOCK_STREAM, 0);
    if (S->lfd6 >= 0) {
        struct sockaddr_in6 a6;

        memset(&a6, 0, sizeof(a6));
        a6.sin6_family = AF_INET6;
        a6.sin6_addr = in6addr_loopback;
        a6.sin6_port = htons((uint16_t)S->port);
        setsockopt(S->lfd6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (bind(S->lfd6, (struct sockaddr *)&a6, sizeof(a6)) != 0 || listen(S->lfd6, 64) != 0) {
            close(S->lfd6);
            S->lfd6 = -1;
        }
    }
    return pthread_create(&S->th, NULL, srv_main, S) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    long long end = now_ms() + 5000;

    (void)state;
    atomic_store(&S->stop, true);
    pthread_join(S->th, NULL);
    close(S->lfd);
    if (S->lfd6 >= 0) {
        close(S->lfd6);
    }
    while (atomic_load(&S->active) > 0 && now_ms() < end) {
        sleep_ms(10);
    }
    for (int i = 0; i < S->nmsgs; i++) {
        free(S->msgs[i]);
    }
    pthread_cond_destroy(&S->cv);
    pthread_mutex_destroy(&S->mu);
    free(S);
    S = NULL;
    return 0;
}

static bool srv_wait_msgs(int n, int ms)
{
    struct timespec ts;
    bool ok;

    deadline_ts(&ts, ms);
    pthread_mutex_lock(&S->mu);
    while (S->nmsgs < n) {
        if (pthread_cond_timedwait(&S->cv, &S->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    ok = S->nmsgs >= n;
    pthread_mutex_unlock(&S->mu);
    return ok;
}

static bool srv_wait_closes(int n, int ms)
{
    struct timespec ts;
    bool ok;

    deadline_ts(&ts, ms);
    pthread_mutex_lock(&S->mu);
    while (S->ncloses < n) {
        if (pthread_cond_timedwait(&S->cv, &S->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    ok = S->ncloses >= n;
    pthread_mutex_unlock(&S->mu);
    return ok;
}

static void url_of(char *out, size_t n, const char *scheme, const char *path)
{
    snprintf(out, n, "%s://127.0.0.1:%d%s", scheme, S->port, path);
}

/* ---- the client side: an event recorder ---- */

#define REC_TEXTS 1100

struct rec {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int opens;
    int closes;
    int code;
    char reason[64];
    long long closed_at;
    char *texts[REC_TEXTS];
    size_t text_len[REC_TEXTS];
    int ntexts;
    bool after_close;     /* an event arrived after WS_EV_CLOSED */
    struct ws_conn *self; /* the handle, written by ws_connect */
    bool release_on_close;
    bool release_on_text;
    bool event_after_release;
    bool released;
};

static void rec_init(struct rec *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
}

static void rec_fini(struct rec *r)
{
    for (int i = 0; i < r->ntexts; i++) {
        free(r->texts[i]);
    }
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
}

static void rec_cb(void *arg, enum ws_event ev, const char *data, size_t len, int code)
{
    struct rec *r = arg;

    pthread_mutex_lock(&r->mu);
    if (r->closes > 0) {
        r->after_close = true;
    }
    if (r->released) {
        r->event_after_release = true;
    }
    switch (ev) {
    case WS_EV_OPEN: r->opens++; break;
    case WS_EV_TEXT:
        if (r->ntexts < REC_TEXTS) {
            r->texts[r->ntexts] = malloc(len + 1);
            memcpy(r->texts[r->ntexts], data, len);
            r->texts[r->ntexts][len] = 0;
            r->text_len[r->ntexts++] = len;
        }
        if (r->release_on_text && !r->released) {
            ws_conn_release(r->self);
            r->released = true;
        }
        break;
    case WS_EV_CLOSED:
        r->closes++;
        r->code = code;
        r->closed_at = now_ms();
        snprintf(r->reason, sizeof(r->reason), "%.*s", (int)len, data);
        if (r->release_on_close && !r->released) {
            ws_conn_release(r->self);
            r->released = true;
        }
        break;
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static bool rec_wait(struct rec *r, int *field, int n, int ms)
{
    struct timespec ts;
    bool ok;

    deadline_ts(&ts, ms);
    pthread_mutex_lock(&r->mu);
    while (*field < n) {
        if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    ok = *field >= n;
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static struct ws_hub *hub_make(bool deny)
{
    struct ws_hub *h = NULL;

    assert_int_equal(ws_hub_new(deny, &h), ERR_OK);
    assert_non_null(h);
    return h;
}

/* ---- tests ---- */

static void test_echo_and_close(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL;
    struct rec r;
    char url[128], host[64];
    const char *m[3] = {"{\"event\":\"start\"}", "", "three \xc3\xa9"};

    (void)state;
    rec_init(&r);
    url_of(url, sizeof(url), "ws", "/echo?token=secret");
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
    /* Queued before the connection is open: sent once it is. */
    assert_int_equal(ws_send_text(c, m[0], strlen(m[0])), ERR_OK);
    assert_true(rec_wait(&r, &r.opens, 1, 3000));
    assert_int_equal(ws_send_text(c, m[1], 0), ERR_OK);
    assert_int_equal(ws_send_text(c, m[2], strlen(m[2])), ERR_OK);
    assert_true(srv_wait_msgs(3, 3000));
    assert_true(rec_wait(&r, &r.ntexts, 3, 3000));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(S->msg_len[i], strlen(m[i]));
        assert_memory_equal(S->msgs[i], m[i], strlen(m[i]));
        assert_int_equal(r.text_len[i], strlen(m[i]));
        assert_memory_equal(r.texts[i], m[i], strlen(m[i]));
    }
    snprintf(host, sizeof(host), "127.0.0.1:%d", S->port);
    assert_string_equal(S->host_seen, host);
    assert_string_equal(S->path_seen, "/echo?token=secret");

    ws_close(c, 1000);
    assert_int_equal(ws_send_text(c, "x", 1), ERR_UNAVAILABLE);
    assert_true(srv_wait_closes(1, 3000));
    assert_int_equal(S->closes[0], 1000);
    assert_true(rec_wait(&r, &r.closes, 1, 3000));
    assert_int_equal(r.code, 1000);
    assert_int_equal(r.opens, 1);
    ws_close(c, 1000); /* a second close does nothing */
    sleep_ms(50);
    assert_int_equal(r.closes, 1);
    assert_false(r.after_close);
    ws_conn_release(c);
    ws_hub_free(h);
    rec_fini(&r);
}

/* Userinfo in the URL is dropped: neither sent nor logged. */
static void test_userinfo_dropped(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL;
    struct rec r;
    char url[128], host[64];

    (void)state;
    rec_init(&r);
    snprintf(url, sizeof(url), "ws://user:pw@127.0.0.1:%d?q=1", S->port);
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
    assert_true(rec_wait(&r, &r.opens, 1, 3000));
    snprintf(host, sizeof(host), "127.0.0.1:%d", S->port);
    assert_string_equal(S->host_seen, host);
    assert_string_equal(S->path_seen, "/?q=1");
    ws_conn_release(c);
    ws_hub_free(h);
    rec_fini(&r);
}

/* AGENT.md section 4: the upgrade carries X-Sfvopi-Signature over its
 * request target, path and query as on the request line; none without
 * secrets. */
static void test_signed_upgrade(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct whsig_keys k = {0};
    struct ws_conn *c = NULL;
    struct rec r;
    char url[128], want[WHSIG_HEADER_MAX];
    long long t;

    (void)state;
    k.n = 1;
    snprintf(k.secret[0], sizeof(k.secret[0]), "whsec_0123456789abcdefghijABCDEFGHIJKL");
    rec_init(&r);
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d/echo?tenant=a%%2Bb&x=1", S->port);
    assert_int_equal(ws_connect_signed(h, url, &k, 2000, rec_cb, &r, &c), ERR_OK);
    whsig_keys_wipe(&k); /* read during the call only */
    assert_true(rec_wait(&r, &r.opens, 1, 3000));
    assert_string_equal(S->path_seen, "/echo?tenant=a%2Bb&x=1");
    assert_memory_equal(S->sig_seen, "t=", 2);
    t = strtoll(S->sig_seen + 2, NULL, 10);
    k.n = 1;
    snprintf(k.secret[0], sizeof(k.secret[0]), "whsec_0123456789abcdefghijABCDEFGHIJKL");
    assert_int_equal(whsig_header(&k, t, "/echo?tenant=a%2Bb&x=1", 22, want), ERR_OK);
    assert_string_equal(S->sig_seen, want);
    ws_conn_release(c);

    /* Without secrets: no header. */
    k.n = 0;
    assert_int_equal(ws_connect_signed(h, url, &k, 2000, rec_cb, &r, &c), ERR_OK);
    assert_true(rec_wait(&r, &r.opens, 2, 3000));
    assert_string_equal(S->sig_seen, "");
    ws_conn_release(c);
    ws_hub_free(h);
    rec_fini(&r);
}

static void test_fragmented_and_binary(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL;
    struct rec r;
    char url[128];

    (void)state;
    rec_init(&r);
    url_of(url, sizeof(url), "ws", "/frag");
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
    assert_true(rec_wait(&r, &r.ntexts, 2, 3000));
    sleep_ms(50);
    assert_int_equal(r.ntexts, 2);
    assert_int_equal(r.text_len[0], 11);
    assert_memory_equal(r.texts[0], "hello world", 11);
    assert_int_equal(r.text_len[1], 5);
    assert_memory_equal(r.texts[1], "after", 5);
    ws_conn_release(c); /* closes with 1000 */
    assert_true(srv_wait_closes(1, 3000));
    assert_int_equal(S->closes[0], 1000);
    ws_hub_free(h);
    rec_fini(&r);
}

static void test_big_message_dropped(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL;
    struct rec r;
    char url[128];

    (void)state;
    rec_init(&r);
    url_of(url, sizeof(url), "ws", "/big");
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
    assert_true(rec_wait(&r, &r.ntexts, 1, 5000));
    sleep_ms(50);
    assert_int_equal(r.ntexts, 1);
    assert_string_equal(r.texts[0], "small");
    assert_int_equal(r.closes, 0);
    ws_conn_release(c);
    ws_hub_free(h);
    rec_fini(&r);
}

static void test_peer_close_1001(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL;
    struct rec r;
    char url[128];

    (void)state;
    rec_init(&r);
    url_of(url, sizeof(url), "ws", "/close1001");
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
    assert_true(rec_wait(&r, &r.closes, 1, 3000));
    assert_int_equal(r.opens, 1);
    assert_int_equal(r.code, 1001);
    assert_int_equal(ws_send_text(c, "x", 1), ERR_UNAVAILABLE);
    ws_conn_release(c);
    ws_hub_free(h);
    rec_fini(&r);
}

static void test_peer_close_without_code(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL;
    struct rec r;
    char url[128];

    (void)state;
    rec_init(&r);
    url_of(url, sizeof(url), "ws", "/close-empty");
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
    assert_true(rec_wait(&r, &r.closes, 1, 3000));
    assert_int_equal(r.code, 1005);
    ws_conn_release(c);
    ws_hub_free(h);
    rec_fini(&r);
}

static void test_close_codes(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL, *d = NULL;
    struct rec r, rd;
    char url[128];

    (void)state;
    rec_init(&r);
    rec_init(&rd);
    url_of(url, sizeof(url), "ws", "/echo");
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
    assert_true(rec_wait(&r, &r.opens, 1, 3000));
    ws_close(c, 4000);
    assert_true(rec_wait(&r, &r.closes, 1, 3000));
    assert_int_equal(r.code, 4000);
    assert_true(srv_wait_closes(1, 3000));
    assert_int_equal(S->closes[0], 4000);
    /* A code no endpoint may send becomes 1000. */
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &rd, &d), ERR_OK);
    assert_true(rec_wait(&rd, &rd.opens, 1, 3000));
    ws_close(d, 1006);
    assert_true(rec_wait(&rd, &rd.closes, 1, 3000));
    assert_int_equal(rd.code, 1000);
    assert_true(srv_wait_closes(2, 3000));
    assert_int_equal(S->closes[1], 1000);
    ws_conn_release(c);
    ws_conn_release(d);
    ws_hub_free(h);
    rec_fini(&r);
    rec_fini(&rd);
}

static void test_message_at_cap(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL;
    struct rec r;
    char url[128];
    char *want = malloc(WS_MESSAGE_MAX);

    (void)state;
    rec_init(&r);
    memset(want, 'y', WS_MESSAGE_MAX);
    url_of(url, sizeof(url), "ws", "/exact");
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
    assert_true(rec_wait(&r, &r.ntexts, 2, 5000));
    assert_int_equal(r.text_len[0], WS_MESSAGE_MAX);
    assert_memory_equal(r.texts[0], want, WS_MESSAGE_MAX);
    assert_string_equal(r.texts[1], "small");
    ws_conn_release(c);
    ws_hub_free(h);
    free(want);
    rec_fini(&r);
}

#define ORDER_N 1000

static void test_many_messages_in_order(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL;
    struct rec r;
    char url[128], m[1024];

    (void)state;
    rec_init(&r);
    url_of(url, sizeof(url), "ws", "/echo");
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
    for (int i = 0; i < ORDER_N; i++) {
        memset(m, 'a' + i % 26, sizeof(m));
        snprintf(m, 16, "%06d", i);
        assert_int_equal(ws_send_text(c, m, 100 + (size_t)i % 900), ERR_OK);
    }
    assert_true(srv_wait_msgs(ORDER_N, 10000));
    assert_true(rec_wait(&r, &r.ntexts, ORDER_N, 10000));
    for (int i = 0; i < ORDER_N; i++) {
        char tag[16];

        snprintf(tag, sizeof(tag), "%06d", i);
        assert_int_equal(S->msg_len[i], 100 + (size_t)i % 900);
        assert_memory_equal(S->msgs[i], tag, 6);
        assert_int_equal(r.text_len[i], 100 + (size_t)i % 900);
        assert_memory_equal(r.texts[i], tag, 6);
    }
    ws_conn_release(c);
    ws_hub_free(h);
    rec_fini(&r);
}

/* Messages bigger than one write leave part of themselves with lws for the
 * next writeable turn; what is queued meanwhile goes behind that part, and
 * every byte arrives in order with the connection still open. */
#define BIG_N 24
#define BIG_LEN (150 * 1024)

static void test_big_messages_back_to_back(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL;
    struct rec r;
    char url[128];
    char *m = malloc(BIG_LEN);

    (void)state;
    rec_init(&r);
    url_of(url, sizeof(url), "ws", "/echo");
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
    assert_true(rec_wait(&r, &r.opens, 1, 5000));
    for (int i = 0; i < BIG_N; i++) {
        memset(m, 'a' + i, BIG_LEN);
        assert_int_equal(ws_send_text(c, m, BIG_LEN), ERR_OK);
        assert_int_equal(ws_send_text(c, "small", 5), ERR_OK);
    }
    assert_true(srv_wait_msgs(2 * BIG_N, 20000));
    pthread_mutex_lock(&S->mu);
    for (int i = 0; i < BIG_N; i++) {
        memset(m, 'a' + i, BIG_LEN);
        assert_int_equal(S->msg_len[2 * i], BIG_LEN);
        assert_memory_equal(S->msgs[2 * i], m, BIG_LEN);
        assert_int_equal(S->msg_len[2 * i + 1], 5);
        assert_memory_equal(S->msgs[2 * i + 1], "small", 5);
    }
    pthread_mutex_unlock(&S->mu);
    pthread_mutex_lock(&r.mu);
    assert_int_equal(r.closes, 0);
    pthread_mutex_unlock(&r.mu);
    ws_conn_release(c);
    ws_hub_free(h);
    free(m);
    rec_fini(&r);
}

/* A lazy message waits for the next one and leaves with it, in order; a
 * second lazy one sends both. */
static void test_lazy_messages(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL;
    struct rec r;
    char url[128];

    (void)state;
    rec_init(&r);
    url_of(url, sizeof(url), "ws", "/echo");
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
    assert_true(rec_wait(&r, &r.opens, 1, 5000));
    assert_int_equal(ws_send_text_lazy(c, "lazy1", 5), ERR_OK);
    /* Held: nothing else is queued (a wrong hold could only pass, never fail, here). */
    assert_false(srv_wait_msgs(1, 200));
    assert_int_equal(ws_send_text(c, "now1", 4), ERR_OK);
    assert_true(srv_wait_msgs(2, 5000));
    assert_int_equal(ws_send_text_lazy(c, "lazy2", 5), ERR_OK);
    assert_int_equal(ws_send_text_lazy(c, "lazy3", 5), ERR_OK);
    assert_true(srv_wait_msgs(4, 5000));
    assert_true(rec_wait(&r, &r.ntexts, 4, 5000));
    pthread_mutex_lock(&S->mu);
    assert_int_equal(S->nmsgs, 4);
    assert_memory_equal(S->msgs[0], "lazy1", 5);
    assert_memory_equal(S->msgs[1], "now1", 4);
    assert_memory_equal(S->msgs[2], "lazy2", 5);
    assert_memory_equal(S->msgs[3], "lazy3", 5);
    pthread_mutex_unlock(&S->mu);
    ws_conn_release(c);
    ws_hub_free(h);
    rec_fini(&r);
}

struct sender {
    struct ws_conn *c;
    int k;
};

static void *sender_main(void *p)
{
    struct sender *sd = p;
    char m[32];

    for (int i = 0; i < 200; i++) {
        snprintf(m, sizeof(m), "t%d-%d", sd->k, i);
        if (ws_send_text(sd->c, m, strlen(m)) != ERR_OK) {
            return (void *)1;
        }
    }
    return NULL;
}

static void test_concurrent_senders(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL;
    struct rec r;
    struct sender sd[4];
    pthread_t t[4];
    int next[4] = {0, 0, 0, 0};
    char url[128];

    (void)state;
    rec_init(&r);
    url_of(url, sizeof(url), "ws", "/echo");
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
    for (int k = 0; k < 4; k++) {
        sd[k].c = c;
        sd[k].k = k;
        assert_int_equal(pthread_create(&t[k], NULL, sender_main, &sd[k]), 0);
    }
    for (int k = 0; k < 4; k++) {
        void *rv;

        pthread_join(t[k], &rv);
        assert_null(rv);
    }
    assert_true(srv_wait_msgs(800, 10000));
    /* Each thread's messages arrive in the order it sent them. */
    for (int i = 0; i < 800; i++) {
        int k, n;

        assert_int_equal(sscanf(S->msgs[i], "t%d-%d", &k, &n), 2);
        assert_int_equal(n, next[k]);
        next[k]++;
    }
    ws_conn_release(c);
    ws_hub_free(h);
    rec_fini(&r);
}

/* ws_conn_release from another thread while texts keep arriving: once it
 * returns, no callback runs for that connection. */
static void test_release_stops_callbacks(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL;
    struct rec r;
    char url[128];

    (void)state;
    rec_init(&r);
    url_of(url, sizeof(url), "ws", "/flood");
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
    assert_true(rec_wait(&r, &r.ntexts, 20, 3000));
    ws_conn_release(c);
    pthread_mutex_lock(&r.mu);
    r.released = true;
    pthread_mutex_unlock(&r.mu);
    assert_true(srv_wait_closes(1, 3000));
    assert_int_equal(S->closes[0], 1000);
    sleep_ms(50);
    pthread_mutex_lock(&r.mu);
    assert_false(r.event_after_release);
    assert_int_equal(r.closes, 0);
    pthread_mutex_unlock(&r.mu);
    ws_hub_free(h);
    rec_fini(&r);
}

static void test_drop_1006(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL;
    struct rec r;
    char url[128];

    (void)state;
    rec_init(&r);
    url_of(url, sizeof(url), "ws", "/drop");
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
    assert_true(rec_wait(&r, &r.closes, 1, 3000));
    assert_int_equal(r.code, 1006);
    ws_conn_release(c);
    ws_hub_free(h);
    rec_fini(&r);
}

static void test_closed_port(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL;
    struct rec r;
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    char url[128];
    long long t0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    (void)state;
    rec_init(&r);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd); /* nothing listens there now */
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", ntohs(a.sin_port));
    t0 = now_ms();
    assert_int_equal(ws_connect(h, url, 3000, rec_cb, &r, &c), ERR_OK);
    assert_true(rec_wait(&r, &r.closes, 1, 2000));
    assert_true(r.closed_at - t0 < 1000);
    assert_int_equal(r.code, 0);
    assert_int_equal(r.opens, 0);
    ws_conn_release(c);
    ws_hub_free(h);
    rec_fini(&r);
}

static void test_handshake_timeout(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL;
    struct rec r;
    char url[128];
    long long t0;

    (void)state;
    rec_init(&r);
    url_of(url, sizeof(url), "ws", "/nohs");
    t0 = now_ms();
    assert_int_equal(ws_connect(h, url, 300, rec_cb, &r, &c), ERR_OK);
    assert_true(rec_wait(&r, &r.closes, 1, 3000));
    assert_int_equal(r.code, 0);
    assert_int_equal(r.opens, 0);
    assert_string_equal(r.reason, "timeout");
    assert_true(r.closed_at - t0 >= 280);
    assert_true(r.closed_at - t0 < 1000);
    assert_int_equal(atomic_load(&S->accepted), 1);
    ws_conn_release(c);
    ws_hub_free(h);
    rec_fini(&r);
}

static void test_deny_private_loopback(void **state)
{
    struct ws_hub *h = hub_make(true);
    struct ws_conn *c = NULL, *c6 = NULL;
    struct rec r, r6;
    char url[128];

    (void)state;
    rec_init(&r);
    rec_init(&r6);
    url_of(url, sizeof(url), "ws", "/echo");
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
    snprintf(url, sizeof(url), "ws://[::1]:%d/echo", S->port);
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r6, &c6), ERR_OK);
    assert_true(rec_wait(&r, &r.closes, 1, 1000));
    assert_true(rec_wait(&r6, &r6.closes, 1, 1000));
    assert_int_equal(r.code, 0);
    assert_string_equal(r.reason, "refused address");
    assert_int_equal(r6.code, 0);
    sleep_ms(100);
    assert_int_equal(atomic_load(&S->accepted), 0);
    ws_conn_release(c);
    ws_conn_release(c6);
    ws_hub_free(h);
    rec_fini(&r);
    rec_fini(&r6);
}

static void test_link_local_refused(void **state)
{
    static const char *urls[] = {
        "ws://169.254.169.254/latest/meta-data",
        "wss://169.254.0.1:8443/",
        "ws://[fe80::1]/",
        "ws://[::ffff:169.254.169.254]/",
    };
    struct ws_hub *h = hub_make(false);

    (void)state;
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        struct ws_conn *c = NULL;
        struct rec r;
        long long t0 = now_ms();

        rec_init(&r);
        assert_int_equal(ws_connect(h, urls[i], 5000, rec_cb, &r, &c), ERR_OK);
        assert_true(rec_wait(&r, &r.closes, 1, 1000));
        assert_true(r.closed_at - t0 < 500);
        assert_int_equal(r.code, 0);
        assert_string_equal(r.reason, "refused address");
        ws_conn_release(c);
        rec_fini(&r);
    }
    ws_hub_free(h);
}

static void test_wss_to_plain_server(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL;
    struct rec r;
    char url[128];

    (void)state;
    rec_init(&r);
    url_of(url, sizeof(url), "wss", "/echo");
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
    assert_true(rec_wait(&r, &r.closes, 1, 3000));
    assert_int_equal(r.code, 0);
    assert_int_equal(r.opens, 0);
    assert_string_not_equal(r.reason, "timeout"); /* the TLS handshake failed */
    assert_true(S->hello_len > 0);
    ws_conn_release(c);
    ws_hub_free(h);
    rec_fini(&r);
}

/* A name goes through the resolver; the connection is made to the address
 * while Host (and, for wss, SNI) carry the name. */
static void test_name_host_and_sni(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL, *t = NULL;
    struct rec r, rt;
    char url[128], host[64];

    (void)state;
    rec_init(&r);
    rec_init(&rt);
    snprintf(url, sizeof(url), "ws://localhost:%d/echo?k=v", S->port);
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
    assert_true(rec_wait(&r, &r.opens, 1, 3000));
    snprintf(host, sizeof(host), "localhost:%d", S->port);
    assert_string_equal(S->host_seen, host);

    snprintf(url, sizeof(url), "wss://localhost:%d/echo", S->port);
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &rt, &t), ERR_OK);
    assert_true(rec_wait(&rt, &rt.closes, 1, 3000));
    assert_int_equal(rt.code, 0);
    assert_int_equal(rt.opens, 0);
    assert_true(S->hello_len > 0);
    assert_non_null(memmem(S->hello, S->hello_len, "localhost", 9));
    ws_conn_release(c);
    ws_conn_release(t);
    ws_hub_free(h);
    rec_fini(&r);
    rec_fini(&rt);
}

/* ---- wss against a real TLS server with an untrusted certificate ---- */

/* Runs argv with stdout and stderr to out_path and stdin from a pipe whose
 * write end goes to *in_w (-1: none); returns the child's pid. */
static pid_t spawn(char *const argv[], const char *out_path, int *in_w)
{
    int p[2] = {-1, -1};
    pid_t pid;

    if (in_w && pipe(p) != 0) {
        return -1;
    }
    pid = fork();
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (in_w) {
            dup2(p[0], 0);
            close(p[1]);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    if (in_w) {
        close(p[0]);
        *in_w = p[1];
    }
    return pid;
}

static bool file_has(const char *path, const char *needle)
{
    char buf[65536];
    FILE *f = fopen(path, "r");
    size_t n;

    if (!f) {
        return false;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    return memmem(buf, n, needle, strlen(needle)) != NULL;
}

static int free_port(void)
{
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    getsockname(fd, (struct sockaddr *)&a, &al);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* A self-signed certificate for "localhost", served by openssl s_server:
 * the TLS handshake must fail on verification (reported by lws, routed to
 * our log), and no HTTP request may reach the server. Skipped without the
 * openssl command. */
static void test_wss_untrusted_certificate(void **state)
{
    char dir[] = "/tmp/test_ws.XXXXXX", key[64], crt[64], out[64], log_path[64], port_s[32];
    char url[128];
    struct ws_hub *h;
    struct ws_conn *c = NULL;
    struct rec r;
    long long t0, end;
    pid_t pid;
    int status, saved_err, port, in_w = -1;

    (void)state;
    if (access("/usr/bin/openssl", X_OK) != 0) {
        skip();
    }
    assert_non_null(mkdtemp(dir));
    snprintf(key, sizeof(key), "%s/k.pem", dir);
    snprintf(crt, sizeof(crt), "%s/c.pem", dir);
    snprintf(out, sizeof(out), "%s/out", dir);
    snprintf(log_path, sizeof(log_path), "%s/log", dir);
    {
        char *argv[] = {"openssl",
                        "req",
                        "-x509",
                        "-newkey",
                        "ec",
                        "-pkeyopt",
                        "ec_paramgen_curve:prime256v1",
                        "-nodes",
                        "-subj",
                        "/CN=localhost",
                        "-addext",
                        "subjectAltName=DNS:localhost",
                        "-days",
                        "1",
                        "-keyout",
                        key,
                        "-out",
                        crt,
                        NULL};

        pid = spawn(argv, out, NULL);
        assert_true(pid > 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    port = free_port();
    snprintf(port_s, sizeof(port_s), "127.0.0.1:%d", port);
    {
        char *argv[] = {"openssl", "s_server", "-accept", port_s, "-cert", crt, "-key", key, NULL};

        /* stdin stays open: s_server ends its session on EOF there. */
        pid = spawn(argv, out, &in_w);
        assert_true(pid > 0);
    }
    end = now_ms() + 5000;
    while (!file_has(out, "ACCEPT") && now_ms() < end) {
        sleep_ms(20);
    }
    assert_true(file_has(out, "ACCEPT"));

    /* Our log (and lws' lines routed into it) to a file for this test. */
    fflush(stderr);
    saved_err = dup(2);
    {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

        dup2(fd, 2);
        close(fd);
    }
    log_set_level(LOG_DEBUG);
    rec_init(&r);
    h = hub_make(false);
    snprintf(url, sizeof(url), "wss://localhost:%d/secret-path?token=t0ken", port);
    t0 = now_ms();
    assert_int_equal(ws_connect(h, url, 3000, rec_cb, &r, &c), ERR_OK);
    rec_wait(&r, &r.closes, 1, 4000);
    ws_conn_release(c);
    ws_hub_free(h);
    log_set_level(getenv("WS_TEST_DEBUG") ? LOG_DEBUG : LOG_OFF);
    fflush(stderr);
    dup2(saved_err, 2);
    close(saved_err);
    sleep_ms(100); /* s_server writes what it saw */
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    close(in_w);

    assert_int_equal(r.closes, 1);
    assert_int_equal(r.code, 0);
    assert_int_equal(r.opens, 0);
    assert_true(r.closed_at - t0 < 2000);     /* failed on the certificate, not a timeout */
    assert_false(file_has(out, "GET "));      /* no request went over that TLS */
    assert_true(file_has(out, "unknown ca")); /* the client's alert */
    assert_true(file_has(log_path, "self-signed") || file_has(log_path, "self signed"));
    /* The log names the host, never the path or the query. */
    assert_true(file_has(log_path, "host=\"localhost\""));
    assert_false(file_has(log_path, "secret-path"));
    assert_false(file_has(log_path, "t0ken"));
    rec_fini(&r);
    unlink(key);
    unlink(crt);
    unlink(out);
    unlink(log_path);
    rmdir(dir);
}

/* An IPv6 literal: connected to as such, Host keeps the brackets. */
static void test_ipv6_literal(void **state)
{
    struct ws_hub *h;
    struct ws_conn *c = NULL;
    struct rec r;
    char url[128], host[64];

    (void)state;
    if (S->lfd6 < 0) {
        skip();
    }
    h = hub_make(false);
    rec_init(&r);
    snprintf(url, sizeof(url), "ws://[::1]:%d/echo", S->port);
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
    assert_int_equal(ws_send_text(c, "v6", 2), ERR_OK);
    assert_true(rec_wait(&r, &r.ntexts, 1, 3000));
    assert_string_equal(r.texts[0], "v6");
    snprintf(host, sizeof(host), "[::1]:%d", S->port);
    assert_string_equal(S->host_seen, host);
    ws_conn_release(c);
    ws_hub_free(h);
    rec_fini(&r);
}

/* ---- host names, through the resolver seam ---- */

static atomic_int slow_done;

/* slow.test: answers nothing for 1.5 s. mixed.test: 127.0.0.1 and
 * 169.254.169.254. Anything else: the real getaddrinfo. */
static int fake_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                            struct addrinfo **res)
{
    if (strcmp(node, "slow.test") == 0) {
        sleep_ms(1500);
        atomic_fetch_add(&slow_done, 1);
        return EAI_NONAME;
    }
    if (strcmp(node, "mixed.test") == 0) {
        struct addrinfo h2 = *hints, *a = NULL, *b = NULL, *t;

        h2.ai_flags |= AI_NUMERICHOST;
        if (getaddrinfo("127.0.0.1", service, &h2, &a) != 0) {
            return EAI_FAIL;
        }
        if (getaddrinfo("169.254.169.254", service, &h2, &b) != 0) {
            freeaddrinfo(a);
            return EAI_FAIL;
        }
        for (t = a; t->ai_next; t = t->ai_next) {
        }
        t->ai_next = b; /* glibc's freeaddrinfo frees node by node */
        *res = a;
        return 0;
    }
    if (strcmp(node, "dual.test") == 0 || strcmp(node, "dead.test") == 0) {
        /* 127.0.0.2 and .3 refuse at once: the server is on 127.0.0.1. */
        const char *second = node[1] == 'u' ? "127.0.0.1" : "127.0.0.3";
        struct addrinfo h2 = *hints, *a = NULL, *b = NULL;

        h2.ai_flags |= AI_NUMERICHOST;
        if (getaddrinfo("127.0.0.2", service, &h2, &a) != 0) {
            return EAI_FAIL;
        }
        if (getaddrinfo(second, service, &h2, &b) != 0) {
            freeaddrinfo(a);
            return EAI_FAIL;
        }
        a->ai_next = b;
        *res = a;
        return 0;
    }
    return getaddrinfo(node, service, hints, res);
}

/* A resolver that hangs delays neither other connections nor the connect
 * deadline nor ws_hub_free. */
static void test_slow_resolver(void **state)
{
    struct ws_hub *h;
    struct ws_conn *slow = NULL, *fast = NULL, *slow2 = NULL;
    struct rec rs, rf, rs2;
    char url[128];
    long long t0;

    (void)state;
    atomic_store(&slow_done, 0);
    ws__getaddrinfo = fake_getaddrinfo;
    h = hub_make(false);
    rec_init(&rs);
    rec_init(&rf);
    rec_init(&rs2);
    t0 = now_ms();
    assert_int_equal(ws_connect(h, "ws://slow.test/x", 300, rec_cb, &rs, &slow), ERR_OK);
    url_of(url, sizeof(url), "ws", "/echo");
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &rf, &fast), ERR_OK);
    assert_int_equal(ws_send_text(fast, "x", 1), ERR_OK);
    assert_true(rec_wait(&rf, &rf.ntexts, 1, 1000));
    assert_true(rec_wait(&rs, &rs.closes, 1, 1000));
    assert_int_equal(atomic_load(&slow_done), 0); /* all that while, DNS hung */
    assert_int_equal(rs.code, 0);
    assert_string_equal(rs.reason, "timeout");
    assert_true(rs.closed_at - t0 >= 280);
    assert_true(rs.closed_at - t0 < 1000);
    ws_conn_release(slow);
    ws_conn_release(fast);

    assert_int_equal(ws_connect(h, "ws://slow.test/y", 5000, rec_cb, &rs2, &slow2), ERR_OK);
    sleep_ms(20);
    t0 = now_ms();
    ws_hub_free(h);
    assert_true(now_ms() - t0 < 500);
    /* The resolvers finish later, on their own. */
    t0 = now_ms();
    while (atomic_load(&slow_done) < 2 && now_ms() - t0 < 4000) {
        sleep_ms(10);
    }
    assert_int_equal(atomic_load(&slow_done), 2);
    sleep_ms(50);
    assert_int_equal(rs2.closes, 0);
    ws__getaddrinfo = getaddrinfo;
    rec_fini(&rs);
    rec_fini(&rf);
    rec_fini(&rs2);
}

/* A name with one link-local address among others is refused whole, and
 * a name resolving to loopback is refused under deny_private_urls: no TCP
 * connection either way. */
static void test_name_refused(void **state)
{
    struct ws_hub *h;
    struct ws_conn *c = NULL;
    struct rec r;
    char url[128];

    (void)state;
    ws__getaddrinfo = fake_getaddrinfo;
    /* One hub at a time: see ws_hub_new. */
    for (int deny = 0; deny <= 1; deny++) {
        h = hub_make(deny);
        rec_init(&r);
        snprintf(url, sizeof(url), "ws://%s:%d/echo", deny ? "localhost" : "mixed.test", S->port);
        assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
        assert_true(rec_wait(&r, &r.closes, 1, 2000));
        assert_int_equal(r.code, 0);
        assert_string_equal(r.reason, "refused address");
        ws_conn_release(c);
        ws_hub_free(h);
        rec_fini(&r);
    }
    sleep_ms(100);
    assert_int_equal(atomic_load(&S->accepted), 0);
    ws__getaddrinfo = getaddrinfo;
}

/* When the first address refuses, the next one is tried. */
static void test_next_address(void **state)
{
    struct ws_hub *h;
    struct ws_conn *c = NULL, *d = NULL;
    struct rec r, rd;
    char url[128];
    long long t0;

    (void)state;
    ws__getaddrinfo = fake_getaddrinfo;
    h = hub_make(false);
    rec_init(&r);
    rec_init(&rd);
    snprintf(url, sizeof(url), "ws://dual.test:%d/echo", S->port);
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &c), ERR_OK);
    assert_int_equal(ws_send_text(c, "second", 6), ERR_OK);
    assert_true(rec_wait(&r, &r.ntexts, 1, 3000));
    assert_string_equal(r.texts[0], "second");
    assert_int_equal(r.opens, 1);
    assert_int_equal(r.closes, 0);

    snprintf(url, sizeof(url), "ws://dead.test:%d/echo", S->port);
    t0 = now_ms();
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &rd, &d), ERR_OK);
    assert_true(rec_wait(&rd, &rd.closes, 1, 3000));
    assert_int_equal(rd.code, 0);
    assert_true(rd.closed_at - t0 < 1000);
    ws_conn_release(c);
    ws_conn_release(d);
    ws_hub_free(h);
    ws__getaddrinfo = getaddrinfo;
    rec_fini(&r);
    rec_fini(&rd);
}

static void test_send_queue_cap(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL;
    struct rec r;
    char url[128];
    size_t chunk = 1024 * 1024;
    char *big = malloc(WS_SENDQ_MAX + 1);

    (void)state;
    rec_init(&r);
    memset(big, 'a', WS_SENDQ_MAX + 1);
    url_of(url, sizeof(url), "ws", "/nohs"); /* never opens: nothing drains */
    assert_int_equal(ws_connect(h, url, 5000, rec_cb, &r, &c), ERR_OK);
    assert_int_equal(ws_send_text(c, big, WS_SENDQ_MAX + 1), ERR_TOO_LARGE);
    for (size_t sent = 0; sent + chunk <= WS_SENDQ_MAX; sent += chunk) {
        assert_int_equal(ws_send_text(c, big, chunk), ERR_OK);
    }
    assert_int_equal(ws_send_text(c, big, 1), ERR_TOO_LARGE);
    assert_int_equal(ws_send_text(c, NULL, 1), ERR_INVALID);
    ws_close(c, 1000);
    assert_true(rec_wait(&r, &r.closes, 1, 2000));
    assert_int_equal(r.code, 0);
    assert_int_equal(ws_send_text(c, big, 1), ERR_UNAVAILABLE);
    ws_conn_release(c);
    ws_hub_free(h);
    free(big);
    rec_fini(&r);
}

#define MANY 20

static void test_many_connections(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c[MANY];
    struct rec r[MANY];
    char url[128], msg[32];

    (void)state;
    url_of(url, sizeof(url), "ws", "/echo");
    for (int i = 0; i < MANY; i++) {
        rec_init(&r[i]);
        assert_int_equal(ws_connect(h, url, 3000, rec_cb, &r[i], &c[i]), ERR_OK);
        snprintf(msg, sizeof(msg), "m%d", i);
        assert_int_equal(ws_send_text(c[i], msg, strlen(msg)), ERR_OK);
    }
    for (int i = 0; i < MANY; i++) {
        assert_true(rec_wait(&r[i], &r[i].ntexts, 1, 5000));
        snprintf(msg, sizeof(msg), "m%d", i);
        assert_string_equal(r[i].texts[0], msg);
        ws_close(c[i], 1000);
    }
    for (int i = 0; i < MANY; i++) {
        assert_true(rec_wait(&r[i], &r[i].closes, 1, 5000));
        assert_int_equal(r[i].code, 1000);
        ws_conn_release(c[i]);
    }
    assert_true(srv_wait_closes(MANY, 3000));
    ws_hub_free(h);
    for (int i = 0; i < MANY; i++) {
        rec_fini(&r[i]);
    }
}

static void test_release_in_callback(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct rec r, rd;
    char url[128];

    (void)state;
    rec_init(&r);
    rec_init(&rd);
    /* Released from its own WS_EV_TEXT: closed with 1000, no more events. */
    r.release_on_text = true;
    url_of(url, sizeof(url), "ws", "/frag");
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r, &r.self), ERR_OK);
    assert_true(srv_wait_closes(1, 3000));
    assert_int_equal(S->closes[0], 1000);
    sleep_ms(100);
    pthread_mutex_lock(&r.mu);
    assert_int_equal(r.ntexts, 1);
    assert_int_equal(r.closes, 0);
    assert_true(r.released);
    assert_false(r.event_after_release);
    pthread_mutex_unlock(&r.mu);

    /* Released from its own WS_EV_CLOSED. */
    rd.release_on_close = true;
    url_of(url, sizeof(url), "ws", "/drop");
    assert_int_equal(ws_connect(h, url, 2000, rec_cb, &rd, &rd.self), ERR_OK);
    assert_true(rec_wait(&rd, &rd.closes, 1, 3000));
    pthread_mutex_lock(&rd.mu);
    assert_true(rd.released);
    pthread_mutex_unlock(&rd.mu);
    /* And from the callback of a refused address, before ws_connect has
     * even returned to this thread. */
    rec_fini(&rd);
    rec_init(&rd);
    rd.release_on_close = true;
    assert_int_equal(ws_connect(h, "ws://169.254.169.254/", 2000, rec_cb, &rd, &rd.self), ERR_OK);
    assert_true(rec_wait(&rd, &rd.closes, 1, 3000));
    pthread_mutex_lock(&rd.mu);
    assert_true(rd.released);
    pthread_mutex_unlock(&rd.mu);
    ws_hub_free(h);
    rec_fini(&r);
    rec_fini(&rd);
}

static void test_release_while_connecting(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL;
    struct rec r;
    char url[128];

    (void)state;
    rec_init(&r);
    url_of(url, sizeof(url), "ws", "/nohs");
    assert_int_equal(ws_connect(h, url, 5000, rec_cb, &r, &c), ERR_OK);
    sleep_ms(50);
    ws_conn_release(c);
    sleep_ms(200);
    assert_int_equal(r.closes, 0);
    assert_int_equal(r.opens, 0);
    ws_hub_free(h);
    rec_fini(&r);
}

static void test_hub_free_with_open(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c[3], *pending = NULL;
    struct rec r[3], rp;
    char url[128];
    long long t0;

    (void)state;
    url_of(url, sizeof(url), "ws", "/echo");
    for (int i = 0; i < 3; i++) {
        rec_init(&r[i]);
        assert_int_equal(ws_connect(h, url, 2000, rec_cb, &r[i], &c[i]), ERR_OK);
    }
    for (int i = 0; i < 3; i++) {
        assert_true(rec_wait(&r[i], &r[i].opens, 1, 3000));
    }
    rec_init(&rp);
    url_of(url, sizeof(url), "ws", "/nohs");
    assert_int_equal(ws_connect(h, url, 5000, rec_cb, &rp, &pending), ERR_OK);
    ws_conn_release(c[0]); /* one released, two not */
    t0 = now_ms();
    ws_hub_free(h);
    assert_true(now_ms() - t0 < 1500);
    assert_true(srv_wait_closes(3, 3000));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(S->closes[i], 1000);
        rec_fini(&r[i]);
    }
    rec_fini(&rp);
}

static void test_invalid(void **state)
{
    static const char *bad[] = {
        "http://127.0.0.1/", "ws://", "ws://host/#frag", "ws://host:0/", "ws://host:70000/",
        "ws://ho st/",       "",
    };
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = (struct ws_conn *)1;
    struct rec r;

    (void)state;
    rec_init(&r);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ws_connect(h, bad[i], 1000, rec_cb, &r, &c), ERR_INVALID);
        assert_null(c);
    }
    assert_int_equal(ws_connect(h, "ws://127.0.0.1/", 0, rec_cb, &r, &c), ERR_INVALID);
    assert_int_equal(ws_connect(h, "ws://127.0.0.1/", 1000, NULL, &r, &c), ERR_INVALID);
    ws_conn_release(NULL);
    ws_close(NULL, 1000);
    ws_hub_free(h);
    ws_hub_free(NULL);
    rec_fini(&r);
}

static void test_unresolvable_name(void **state)
{
    struct ws_hub *h = hub_make(false);
    struct ws_conn *c = NULL;
    struct rec r;

    (void)state;
    rec_init(&r);
    /* .invalid never resolves (RFC 6761); bounded by the timeout either way. */
    assert_int_equal(ws_connect(h, "ws://no-such-host.invalid/x", 1500, rec_cb, &r, &c), ERR_OK);
    assert_true(rec_wait(&r, &r.closes, 1, 3000));
    assert_int_equal(r.code, 0);
    ws_conn_release(c);
    ws_hub_free(h);
    rec_fini(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha1_known),
        cmocka_unit_test_setup_teardown(test_echo_and_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_userinfo_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fragmented_and_binary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_message_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_close_1001, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_close_without_code, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_at_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_messages_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lazy_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_messages_back_to_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_senders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_stops_callbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_1006, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signed_upgrade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deny_private_loopback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link_local_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wss_to_plain_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_host_and_sni, setup, teardown),
        cmocka_unit_test(test_wss_untrusted_certificate),
        cmocka_unit_test_setup_teardown(test_ipv6_literal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_resolver, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_next_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_queue_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_in_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_while_connecting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hub_free_with_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unresolvable_name, setup, teardown),
    };

    log_set_level(getenv("WS_TEST_DEBUG") ? LOG_DEBUG : LOG_OFF);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
