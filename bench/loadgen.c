/* loadgen: one cheap process that plays every outside role of streamed calls against one
 * sfvopi server: the carrier (SIP UAC over UDP), the parties (RTP, one socket per call), the
 * agent (WebSocket server echoing inbound audio back with playAudio) and the webhook receiver.
 * Single-threaded, epoll + one 20 ms timerfd; every table is sized by --calls at start and
 * nothing is allocated per frame. It measures; it must never be the bottleneck it measures.
 *
 *   loadgen --sip 127.0.0.1:5060 --number +14155550123 --calls 100 --rate 100 --hold 15
 *           --warmup 2 --window 10 --agent-port P --webhook-port Q
 *
 * Prints one JSON object with the results on stdout. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define FRAME_BYTES 160     /* 20 ms of PCMA at 8000 Hz */
#define FRAME_NS 20000000LL /* one frame's duration */
#define RTP_HDR 12          /* RTP fixed header, no CSRC, no extension */
#define RING 512            /* per-call frame history: 10.24 s of frames */
#define EDGE_NS 200000000LL /* each call's first/last 200 ms are left out of loss counts */
#define CONN_IN 32768       /* per-connection read buffer: many WebSocket messages */
#define CONN_OUT 65536      /* per-connection write backlog before we give up on it */
#define SIP_MAX 4096        /* one SIP datagram */
#define RTP_BATCH 16        /* datagrams per recvmmsg on the SIP socket */
#define RTP_RX_BATCH 4      /* per recvmmsg on one party socket: its packets come 20 ms apart */
#define INVITE_TIMEOUT_NS 32000000000LL /* RFC 3261 timer B */
#define BYE_TIMEOUT_NS 32000000000LL    /* timer F */
#define T1_NS 500000000LL               /* first retransmission interval */
#define T2_NS 4000000000LL              /* retransmission interval cap */
#define HANGUP_WAIT_NS 5000000000LL     /* how long to wait for hangup webhooks at the end */
#define MAX_ROUTES 4
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum ev_kind { EV_TIMER = 1, EV_SIP, EV_RTP, EV_AGENT_LISTEN, EV_HOOK_LISTEN, EV_CONN };

enum call_state {
    CS_IDLE,       /* not placed yet */
    CS_INVITING,   /* INVITE sent, nothing back */
    CS_PROCEEDING, /* a provisional response came */
    CS_UP,         /* 200 received and ACKed: media flows */
    CS_BYE,        /* our BYE sent, waiting for its 200 */
    CS_DONE,       /* ended after an answer */
    CS_FAILED,     /* never answered */
};

/* Per-frame flags in a call's ring. */
enum {
    F_SENT = 1,    /* the party sent this frame */
    F_COUNT = 2,   /* sent inside the call's loss-counting span */
    F_IN = 4,      /* the agent received it byte-exact */
    F_BAD = 8,     /* the agent received it with different bytes */
    F_PLAYED = 16, /* the agent sent it back with playAudio */
    F_ECHO = 32,   /* the party received the echo */
    F_EMPTY = 64,  /* playAudio was sent while the server's queue was empty */
};

struct frame {
    uint32_t seq;
    uint32_t flags;
    int64_t sent_ns; /* party's CLOCK_REALTIME before sendto */
    int64_t play_ns; /* agent's CLOCK_REALTIME before the playAudio write */
};

struct call {
    enum call_state state;
    int rtp_fd;
    uint16_t rtp_port;
    char call_id[64];
    char from_tag[32];
    char to_tag[128];
    char req_uri[256];            /* the 200's Contact: target of ACK and BYE */
    char routes[MAX_ROUTES][256]; /* route set (Record-Route, reversed) */
    int nroutes;
    struct sockaddr_in dialog_dst;
    struct sockaddr_in rtp_dst;
    int64_t invite_ns, answer_ns, bye_due_ns, end_ns;
    int64_t retrans_ns, retrans_ivl;
    uint32_t branch_n;
    uint32_t ssrc;
    uint32_t fseq; /* next frame to send */
    /* receive side (server -> party) */
    bool have_rx;
    int64_t last_rx_ns;
    uint16_t next_rtp_seq;
    uint32_t last_played; /* last frame sent back with playAudio (+1; 0 = none) */
    uint32_t echoed;      /* highest frame whose echo came back (+1; 0 = none) */
    struct frame *ring;
};

struct conn {
    int fd;
    bool used, ws, hs_done, continue_sent, want_out;
    size_t in_len, out_len, msg_len;
    uint8_t msg_op;
    char *in, *out, *msg;
};

/* Sample arrays: int32 microseconds, capped. */
struct samples {
    int32_t *v;
    size_t n, cap, dropped;
};

static struct opts {
    struct sockaddr_in sip;
    char sip_host[64];
    int sip_port;
    const char *number, *caller;
    int calls;
    double rate, hold, warmup, window;
    int agent_port, hook_port;
    bool no_stream, quiet;
    int batch_us;
    int phases; /* the parties' frames go out in this many slots of each 20 ms */
} o = {.batch_us = 1000,
       .phases = 1,
       .caller = "+14155550100",
       .calls = 10,
       .rate = 100,
       .hold = 0,
       .warmup = 2,
       .window = 10};

static struct {
    int ep, tfd, sip_fd, agent_fd, hook_fd;
    uint16_t sip_lport;
    uint32_t run_id;
    struct call *calls;
    struct conn *conns;
    int nconns;
    int placed, answered, failed, done, in_progress;
    int fail_codes[700];
    int fail_timeout;
    int64_t t0_ns, first_invite_ns, last_answer_ns, ready_ns, all_done_ns;
    int64_t win_start, win_end;
    bool win_started, win_ended;
    struct rusage ru_start, ru_end;
    /* counts */
    long server_byes, bye_timeouts, bye_non200, retrans_invite, retrans_bye, sip_unparsed;
    long ws_conns, ws_starts, media_in, media_out, media_unknown, played_stream, cleared_audio,
        other_events, pings, ws_closes, out_overflow, hs_refused;
    long hooks_answer, hooks_hangup, hook_completed, hook_other;
    char other_example[256]; /* the first hangup webhook not COMPLETED, as received */
    long in_expected, in_received, in_mismatch, in_unrecognised, in_late;
    long echo_played, echo_received, echo_lost, echo_unplayed, echo_mismatch, echo_unexpected;
    long rtp_rx, rtp_lost, rtp_reorder, rtp_sent;
    long ticks_missed;     /* timer expirations beyond one per wake-up: our loop was late */
    int64_t tick_late_max; /* how late after its due time a tick was handled, at worst */
    int64_t next_tick_mono;
    uint64_t slot; /* ticks so far: the slot of the 20 ms whose calls send next */
    struct samples jitter, media_lat, play_lat, play_lat_empty, setup_lat;
} g;

static uint8_t pattern[FRAME_BYTES];

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

__attribute__((format(printf, 1, 2))) static void note(const char *fmt, ...)
{
    va_list ap;

    if (o.quiet)
        return;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);

    if (!p)
        die("out of memory");
    return p;
}

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void samples_init(struct samples *s, size_t cap)
{
    s->v = xcalloc(cap ? cap : 1, sizeof(*s->v));
    s->cap = cap;
}

static void samples_add(struct samples *s, int64_t ns)
{
    int64_t us = ns / 1000;

    if (s->n == s->cap) {
        s->dropped++;
        return;
    }
    if (us > INT32_MAX)
        us = INT32_MAX;
    if (us < INT32_MIN)
        us = INT32_MIN;
    s->v[s->n++] = (int32_t)us;
}

static bool in_window(int64_t t)
{
    return t >= g.win_start && t < g.win_end;
}

static void ep_add(int fd, uint32_t events, enum ev_kind kind, uint32_t idx)
{
    struct epoll_event ev = {.events = events, .data.u64 = ((uint64_t)kind << 32) | idx};

    if (epoll_ctl(g.ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
}

static void ep_mod(int fd, uint32_t events, enum ev_kind kind, uint32_t idx)
{
    struct epoll_event ev = {.events = events, .data.u64 = ((uint64_t)kind << 32) | idx};

    if (epoll_ctl(g.ep, EPOLL_CTL_MOD, fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
}

static int udp_socket(uint16_t *port, int rcvbuf)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    int one = 1;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        die("socket: %s (raise ulimit -n?)", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        die("bind: %s", strerror(errno));
    if (getsockname(fd, (struct sockaddr *)&a, &alen) < 0)
        die("getsockname: %s", strerror(errno));
    *port = ntohs(a.sin_port);
    return fd;
}

static int tcp_listener(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)*port)};
    socklen_t alen = sizeof(a);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        die("socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        die("bind 127.0.0.1:%d: %s", *port, strerror(errno));
    if (listen(fd, 1024) < 0)
        die("listen: %s", strerror(errno));
    if (getsockname(fd, (struct sockaddr *)&a, &alen) < 0)
        die("getsockname: %s", strerror(errno));
    *port = ntohs(a.sin_port);
    return fd;
}

/* ------------------------------------------------------------------------------------------ */
/* Small text helpers over length-bounded buffers (nothing here is NUL-terminated). */

static const char *mem_find(const char *h, size_t hlen, const char *needle)
{
    return memmem(h, hlen, needle, strlen(needle));
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t i, j = 0;

    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[j++] = b64chars[v >> 18];
        out[j++] = b64chars[(v >> 12) & 63];
        out[j++] = b64chars[(v >> 6) & 63];
        out[j++] = b64chars[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[j++] = b64chars[v >> 18];
        out[j++] = b64chars[(v >> 12) & 63];
        out[j++] = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
        out[j++] = '=';
    }
    return j;
}

static int b64_val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decodes at most `cap` bytes; -1 on a bad character or overflow. JSON may escape '/' as "\/". */
static long b64_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t j = 0;

    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)in[i];
        int v;

        if (c == '=')
            break;
        if (c == '\\')
            continue;
        v = b64_val(c);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (j == cap)
                return -1;
            out[j++] = (uint8_t)(acc >> bits);
        }
    }
    return (long)j;
}

/* ------------------------------------------------------------------------------------------ */
/* SIP: the carrier. */

/* The value of the first header named `name` (or its compact form `compact`), bounded by the
 * header section; false when absent. */
static bool sip_header(const char *msg, size_t len, const char *name, const char *compact,
                       const char **val, size_t *vlen)
{
    const char *p = memchr(msg, '\n', len);
    const char *end = msg + len;
    size_t nl = strlen(name), cl = compact ? strlen(compact) : 0;

    while (p && ++p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        const char *c;
        size_t hl;

        if (le > p && le[-1] == '\r')
            le--;
        if (le == p)
            return false; /* blank line: end of headers */
        c = memchr(p, ':', (size_t)(le - p));
        if (c) {
            hl = (size_t)(c - p);
            while (hl && (p[hl - 1] == ' ' || p[hl - 1] == '\t'))
                hl--;
            if ((hl == nl && strncasecmp(p, name, nl) == 0) ||
                (cl && hl == cl && strncasecmp(p, compact, cl) == 0)) {
                c++;
                while (c < le && (*c == ' ' || *c == '\t'))
                    c++;
                *val = c;
                *vlen = (size_t)(le - c);
                return true;
            }
        }
        p = eol;
    }
    return false;
}

static void copy_str(char *dst, size_t cap, const char *src, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* host:port of a SIP URI (sip:user@host:port;params) into a sockaddr; false if not numeric. */
static bool uri_addr(const char *uri, struct sockaddr_in *a)
{
    const char *p = strchr(uri, ':');
    const char *at, *h;
    char host[64];
    size_t n = 0;
    long port = 5060;

    if (!p)
        return false;
    p++;
    at = strchr(p, '@');
    h = at ? at + 1 : p;
    while (h[n] && h[n] != ':' && h[n] != ';' && h[n] != '>' && n < sizeof(host) - 1)
        n++;
    memcpy(host, h, n);
    host[n] = 0;
    if (h[n] == ':')
        port = strtol(h + n + 1, NULL, 10);
    memset(a, 0, sizeof(*a));
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    return port > 0 && port < 65536 && inet_pton(AF_INET, host, &a->sin_addr) == 1;
}

static void sip_send(const char *buf, size_t n, const struct sockaddr_in *dst)
{
    if (sendto(g.sip_fd, buf, n, 0, (const struct sockaddr *)dst, sizeof(*dst)) < 0 &&
        errno != EAGAIN)
        note("sip sendto: %s", strerror(errno));
}

static void call_send_invite(int i)
{
    struct call *c = &g.calls[i];
    char sdp[512], msg[2048];
    int sl, ml;

    sl = snprintf(sdp, sizeof(sdp),
                  "v=0\r\no=carrier %u 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
                  "t=0 0\r\nm=audio %u RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\n"
                  "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
                  "a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n",
                  (unsigned)i + 1000, c->rtp_port);
    ml = snprintf(msg, sizeof(msg),
                  "INVITE sip:%s@%s:%d SIP/2.0\r\n"
                  "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bK-lg%x-%d-1;rport\r\n"
                  "From: <sip:%s@127.0.0.1:%u>;tag=%s\r\n"
                  "To: <sip:%s@%s:%d>\r\n"
                  "Call-ID: %s\r\n"
                  "CSeq: 1 INVITE\r\n"
                  "Contact: <sip:%s@127.0.0.1:%u;transport=udp>\r\n"
                  "Max-Forwards: 70\r\n"
                  "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
                  "User-Agent: sfvopi-loadgen\r\n"
                  "Content-Type: application/sdp\r\n"
                  "Content-Length: %d\r\n\r\n%s",
                  o.number, o.sip_host, o.sip_port, g.sip_lport, g.run_id, i, o.caller, g.sip_lport,
                  c->from_tag, o.number, o.sip_host, o.sip_port, c->call_id, o.caller, g.sip_lport,
                  sl, sdp);
    sip_send(msg, (size_t)ml, &o.sip);
}

/* ACK (for a 2xx: a new transaction to the dialog target; for a non-2xx: the INVITE's branch to
 * the server) or BYE, built from the dialog state. */
static void call_send_in_dialog(int i, const char *method, bool ack_2xx)
{
    struct call *c = &g.calls[i];
    char msg[2048], routes[1200];
    size_t rl = 0;
    int ml;
    bool dialog = ack_2xx || strcmp(method, "BYE") == 0;
    const struct sockaddr_in *dst = dialog ? &c->dialog_dst : &o.sip;
    unsigned cseq = strcmp(method, "BYE") == 0 ? 2 : 1;
    char branch[64];

    routes[0] = 0;
    if (dialog) {
        for (int r = 0; r < c->nroutes; r++) {
            int w = snprintf(routes + rl, sizeof(routes) - rl, "Route: %s\r\n", c->routes[r]);
            if (w > 0 && (size_t)w < sizeof(routes) - rl)
                rl += (size_t)w;
        }
    }
    if (ack_2xx)
        snprintf(branch, sizeof(branch), "z9hG4bK-lg%x-%d-ACK%u", g.run_id, i, ++c->branch_n);
    else if (dialog)
        snprintf(branch, sizeof(branch), "z9hG4bK-lg%x-%d-BYE", g.run_id, i); /* one BYE */
    else
        snprintf(branch, sizeof(branch), "z9hG4bK-lg%x-%d-1", g.run_id, i);
    ml = snprintf(msg, sizeof(msg),
                  "%s %s SIP/2.0\r\n"
                  "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=%s;rport\r\n"
                  "%s"
                  "From: <sip:%s@127.0.0.1:%u>;tag=%s\r\n"
                  "To: <sip:%s@%s:%d>%s%s\r\n"
                  "Call-ID: %s\r\n"
                  "CSeq: %u %s\r\n"
                  "Contact: <sip:%s@127.0.0.1:%u;transport=udp>\r\n"
                  "Max-Forwards: 70\r\n"
                  "Content-Length: 0\r\n\r\n",
                  method, dialog ? c->req_uri : "", g.sip_lport, branch, routes, o.caller,
                  g.sip_lport, c->from_tag, o.number, o.sip_host, o.sip_port,
                  c->to_tag[0] ? ";tag=" : "", c->to_tag, c->call_id, cseq, method, o.caller,
                  g.sip_lport);
    if (!dialog) {
        /* A non-2xx ACK's Request-URI is the INVITE's. */
        char uri[256];
        snprintf(uri, sizeof(uri), "sip:%s@%s:%d", o.number, o.sip_host, o.sip_port);
        ml = snprintf(msg, sizeof(msg),
                      "ACK %s SIP/2.0\r\n"
                      "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=%s;rport\r\n"
                      "From: <sip:%s@127.0.0.1:%u>;tag=%s\r\n"
                      "To: <sip:%s@%s:%d>%s%s\r\n"
                      "Call-ID: %s\r\n"
                      "CSeq: 1 ACK\r\n"
                      "Max-Forwards: 70\r\n"
                      "Content-Length: 0\r\n\r\n",
                      uri, g.sip_lport, branch, o.caller, g.sip_lport, c->from_tag, o.number,
                      o.sip_host, o.sip_port, c->to_tag[0] ? ";tag=" : "", c->to_tag, c->call_id);
    }
    if (ml > 0 && (size_t)ml < sizeof(msg))
        sip_send(msg, (size_t)ml, dst);
}

static void call_place(int i, int64_t now)
{
    struct call *c = &g.calls[i];

    c->state = CS_INVITING;
    c->invite_ns = now;
    c->retrans_ivl = T1_NS;
    c->retrans_ns = now + T1_NS;
    if (!g.first_invite_ns)
        g.first_invite_ns = now;
    g.placed++;
    g.in_progress++;
    call_send_invite(i);
}

static void call_resolved(void)
{
    if (g.answered + g.failed == o.calls && !g.ready_ns) {
        g.ready_ns = now_ns();
        g.win_start = g.ready_ns + (int64_t)(o.warmup * 1e9);
        g.win_end = g.win_start + (int64_t)(o.window * 1e9);
        note("all %d calls resolved (%d answered, %d failed); window in %.1f s", o.calls,
             g.answered, g.failed, o.warmup);
    }
}

static void call_fail(int i, int code)
{
    struct call *c = &g.calls[i];

    c->state = CS_FAILED;
    c->end_ns = now_ns();
    g.failed++;
    g.in_progress--;
    if (code > 0 && code < (int)(sizeof(g.fail_codes) / sizeof(g.fail_codes[0])))
        g.fail_codes[code]++;
    else
        g.fail_timeout++;
    call_resolved();
}

static void call_end(int i)
{
    struct call *c = &g.calls[i];

    c->state = CS_DONE;
    c->end_ns = now_ns();
    g.done++;
    g.in_progress--;
}

/* Route set from the 200's Record-Route headers (all of them, comma lists split), reversed. */
static void call_take_routes(struct call *c, const char *msg, size_t len)
{
    const char *p = msg, *end = msg + len;
    char found[MAX_ROUTES][256];
    int n = 0;

    while (p < end && n < MAX_ROUTES) {
        const char *val;
        size_t vlen;

        if (!sip_header(p, (size_t)(end - p), "Record-Route", NULL, &val, &vlen))
            break;
        /* split on commas outside <> */
        size_t s = 0;
        int depth = 0;
        for (size_t k = 0; k <= vlen && n < MAX_ROUTES; k++) {
            if (k < vlen && val[k] == '<')
                depth++;
            else if (k < vlen && val[k] == '>')
                depth--;
            if (k == vlen || (val[k] == ',' && depth == 0)) {
                size_t a = s, b = k;
                while (a < b && val[a] == ' ')
                    a++;
                if (b > a)
                    copy_str(found[n++], sizeof(found[0]), val + a, b - a);
                s = k + 1;
            }
        }
        p = val + vlen; /* continue after this header line */
        /* sip_header skips the first line of what it is given, which is this header's rest */
    }
    c->nroutes = n;
    for (int k = 0; k < n; k++)
        memcpy(c->routes[k], found[n - 1 - k], sizeof(found[0]));
}

static void call_on_200(int i, const char *msg, size_t len)
{
    struct call *c = &g.calls[i];
    const char *v, *body;
    size_t vl;
    char uri[256];

    if (sip_header(msg, len, "To", "t", &v, &vl)) {
        const char *t = memmem(v, vl, ";tag=", 5);
        if (t) {
            size_t n = 0;
            t += 5;
            while (t + n < v + vl && t[n] != ';' && t[n] != ',' && t[n] != ' ' && t[n] != '>')
                n++;
            copy_str(c->to_tag, sizeof(c->to_tag), t, n);
        }
    }
    uri[0] = 0;
    if (sip_header(msg, len, "Contact", "m", &v, &vl)) {
        const char *lt = memchr(v, '<', vl);
        if (lt) {
            const char *gt = memchr(lt, '>', vl - (size_t)(lt - v));
            if (gt)
                copy_str(uri, sizeof(uri), lt + 1, (size_t)(gt - lt - 1));
        } else {
            size_t n = 0;
            while (n < vl && v[n] != ';')
                n++;
            copy_str(uri, sizeof(uri), v, n);
        }
    }
    if (!uri[0])
        snprintf(uri, sizeof(uri), "sip:%s@%s:%d", o.number, o.sip_host, o.sip_port);
    memcpy(c->req_uri, uri, sizeof(uri));
    call_take_routes(c, msg, len);
    c->dialog_dst = o.sip;
    if (c->nroutes) {
        char ru[256];
        const char *lt = strchr(c->routes[0], '<');
        copy_str(ru, sizeof(ru), lt ? lt + 1 : c->routes[0], strlen(lt ? lt + 1 : c->routes[0]));
        if (!uri_addr(ru, &c->dialog_dst))
            c->dialog_dst = o.sip;
    } else if (!uri_addr(c->req_uri, &c->dialog_dst)) {
        c->dialog_dst = o.sip;
    }
    /* The server's media address from the SDP answer. */
    body = mem_find(msg, len, "\r\n\r\n");
    c->rtp_dst.sin_family = AF_INET;
    c->rtp_dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->rtp_dst.sin_port = 0;
    if (body) {
        size_t bl = len - (size_t)(body - msg);
        const char *ci = mem_find(body, bl, "c=IN IP4 ");
        const char *mi = mem_find(body, bl, "m=audio ");
        if (ci) {
            char ip[32];
            size_t n = 0;
            ci += 9;
            while (ci + n < msg + len && n < sizeof(ip) - 1 &&
                   ((ci[n] >= '0' && ci[n] <= '9') || ci[n] == '.'))
                n++;
            memcpy(ip, ci, n);
            ip[n] = 0;
            inet_pton(AF_INET, ip, &c->rtp_dst.sin_addr);
        }
        if (mi)
            c->rtp_dst.sin_port = htons((uint16_t)strtol(mi + 8, NULL, 10));
    }
    call_send_in_dialog(i, "ACK", true);
    if (!c->rtp_dst.sin_port)
        note("call %d: no m=audio in the 200's SDP", i);
}

/* A request from the server: BYE (unexpected hangup) or anything else, answered 200. */
static void sip_on_request(const char *msg, size_t len, const struct sockaddr_in *src, int i)
{
    char out[2048];
    size_t ol = 0;
    const char *p = memchr(msg, '\n', len), *end = msg + len;
    int w;

    if (len >= 4 && memcmp(msg, "ACK ", 4) == 0)
        return;
    w = snprintf(out, sizeof(out), "SIP/2.0 200 OK\r\n");
    ol = (size_t)w;
    /* Copy Via, From, To, Call-ID, CSeq lines in order. */
    while (p && ++p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t ll = (size_t)((eol ? eol : end) - p);
        if (ll == 0 || (ll == 1 && p[0] == '\r'))
            break;
        if (!strncasecmp(p, "Via:", 4) || !strncasecmp(p, "v:", 2) || !strncasecmp(p, "From:", 5) ||
            !strncasecmp(p, "f:", 2) || !strncasecmp(p, "To:", 3) || !strncasecmp(p, "t:", 2) ||
            !strncasecmp(p, "Call-ID:", 8) || !strncasecmp(p, "i:", 2) ||
            !strncasecmp(p, "CSeq:", 5)) {
            if (ol + ll + 1 < sizeof(out)) {
                memcpy(out + ol, p, ll);
                ol += ll;
                if (ll == 0 || p[ll - 1] != '\r')
                    out[ol++] = '\r';
                out[ol++] = '\n';
            }
        }
        p = eol;
    }
    w = snprintf(out + ol, sizeof(out) - ol, "Content-Length: 0\r\n\r\n");
    if (w > 0 && (size_t)w < sizeof(out) - ol)
        ol += (size_t)w;
    sip_send(out, ol, src);
    if (len >= 4 && memcmp(msg, "BYE ", 4) == 0 && i >= 0) {
        struct call *c = &g.calls[i];
        if (c->state == CS_UP || c->state == CS_BYE) {
            g.server_byes++;
            call_end(i);
        }
    }
}

static int sip_call_index(const char *msg, size_t len)
{
    const char *v;
    size_t vl;
    char buf[64];
    unsigned run;
    int idx;

    if (!sip_header(msg, len, "Call-ID", "i", &v, &vl))
        return -1;
    copy_str(buf, sizeof(buf), v, vl);
    if (sscanf(buf, "lg-%x-%d@", &run, &idx) != 2 || run != g.run_id || idx < 0 || idx >= o.calls)
        return -1;
    return idx;
}

static void sip_on_datagram(const char *msg, size_t len, const struct sockaddr_in *src)
{
    int i = sip_call_index(msg, len);
    const char *v;
    size_t vl;
    int code;
    struct call *c;

    if (len < 12) {
        g.sip_unparsed++;
        return;
    }
    if (memcmp(msg, "SIP/2.0 ", 8) != 0) {
        sip_on_request(msg, len, src, i);
        return;
    }
    if (i < 0) {
        g.sip_unparsed++;
        return;
    }
    c = &g.calls[i];
    code = (int)strtol(msg + 8, NULL, 10);
    if (!sip_header(msg, len, "CSeq", NULL, &v, &vl)) {
        g.sip_unparsed++;
        return;
    }
    if (memmem(v, vl, "INVITE", 6)) {
        if (code < 200) {
            if (c->state == CS_INVITING)
                c->state = CS_PROCEEDING;
        } else if (code < 300) {
            if (c->state == CS_INVITING || c->state == CS_PROCEEDING) {
                int64_t now = now_ns();
                c->state = CS_UP;
                c->answer_ns = now;
                c->bye_due_ns = now + (int64_t)(o.hold * 1e9);
                g.answered++;
                g.last_answer_ns = now;
                samples_add(&g.setup_lat, now - c->invite_ns);
                call_on_200(i, msg, len);
                call_resolved();
            } else {
                call_send_in_dialog(i, "ACK", true); /* a retransmitted 200 */
            }
        } else {
            if (sip_header(msg, len, "To", "t", &v, &vl)) {
                const char *t = memmem(v, vl, ";tag=", 5);
                if (t) {
                    size_t n = 0;
                    t += 5;
                    while (t + n < v + vl && t[n] != ';' && t[n] != ' ')
                        n++;
                    copy_str(c->to_tag, sizeof(c->to_tag), t, n);
                }
            }
            call_send_in_dialog(i, "ACK", false);
            if (c->state == CS_INVITING || c->state == CS_PROCEEDING)
                call_fail(i, code);
        }
    } else if (memmem(v, vl, "BYE", 3)) {
        if (code >= 200 && c->state == CS_BYE) {
            if (code != 200)
                g.bye_non200++;
            call_end(i);
        }
    }
}

static void sip_on_readable(void)
{
    static char bufs[RTP_BATCH][SIP_MAX + 1];
    static struct sockaddr_in srcs[RTP_BATCH];
    struct mmsghdr m[RTP_BATCH];
    struct iovec iov[RTP_BATCH];

    for (;;) {
        int n;

        for (int k = 0; k < RTP_BATCH; k++) {
            iov[k].iov_base = bufs[k];
            iov[k].iov_len = SIP_MAX;
            memset(&m[k], 0, sizeof(m[k]));
            m[k].msg_hdr.msg_iov = &iov[k];
            m[k].msg_hdr.msg_iovlen = 1;
            m[k].msg_hdr.msg_name = &srcs[k];
            m[k].msg_hdr.msg_namelen = sizeof(srcs[k]);
        }
        n = recvmmsg(g.sip_fd, m, RTP_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return;
        for (int k = 0; k < n; k++)
            sip_on_datagram(bufs[k], m[k].msg_len, &srcs[k]);
        if (n < RTP_BATCH)
            return;
    }
}

/* Retransmissions, BYEs due and transaction timeouts; called every tick. */
static void sip_timers(int64_t now)
{
    for (int i = 0; i < o.calls; i++) {
        struct call *c = &g.calls[i];

        switch (c->state) {
        case CS_INVITING:
            if (now - c->invite_ns > INVITE_TIMEOUT_NS) {
                call_fail(i, 0);
            } else if (now >= c->retrans_ns) {
                call_send_invite(i);
                g.retrans_invite++;
                c->retrans_ivl *= 2;
                c->retrans_ns = now + c->retrans_ivl;
            }
            break;
        case CS_PROCEEDING:
            if (now - c->invite_ns > INVITE_TIMEOUT_NS * 3)
                call_fail(i, 0);
            break;
        case CS_UP:
            if (now >= c->bye_due_ns) {
                c->state = CS_BYE;
                c->retrans_ivl = T1_NS;
                c->retrans_ns = now + T1_NS;
                call_send_in_dialog(i, "BYE", false);
            }
            break;
        case CS_BYE:
            if (now - c->bye_due_ns > BYE_TIMEOUT_NS) {
                g.bye_timeouts++;
                call_end(i);
            } else if (now >= c->retrans_ns) {
                call_send_in_dialog(i, "BYE", false);
                g.retrans_bye++;
                c->retrans_ivl = c->retrans_ivl * 2 > T2_NS ? T2_NS : c->retrans_ivl * 2;
                c->retrans_ns = now + c->retrans_ivl;
            }
            break;
        default: break;
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* RTP: the parties. */

static void frame_payload(uint8_t *p, uint32_t idx, uint32_t seq)
{
    memcpy(p, pattern, FRAME_BYTES);
    put_be32(p, idx);
    put_be32(p + 4, seq);
}

/* Folds a ring entry that is about to be reused (or the run is over) into the loss counts.
 * The play-out queue is FIFO: an echo missing while a later one of the same call came back was
 * lost; one missing with none later was still queued when the call ended (the queue's depth,
 * not a loss). */
static void frame_retire(struct call *c, struct frame *f)
{
    if (!(f->flags & F_COUNT))
        return;
    g.in_expected++;
    if (f->flags & F_IN)
        g.in_received++;
    if (f->flags & F_PLAYED) {
        if (f->flags & F_ECHO)
            g.echo_received++;
        else if (c->echoed && f->seq < c->echoed - 1)
            g.echo_lost++;
        else
            g.echo_unplayed++;
    }
    f->flags = 0;
}

/* Sends one frame for every call up whose index falls in this slot of the 20 ms (all of them
 * with --phases 1). */
static void rtp_send_slot(int slot)
{
    static uint8_t pkt[RTP_HDR + FRAME_BYTES];

    for (int i = slot; i < o.calls; i += o.phases) {
        struct call *c = &g.calls[i];
        struct frame *f;
        uint32_t s;
        int64_t t;

        if (c->state != CS_UP || !c->rtp_dst.sin_port)
            continue;
        s = c->fseq++;
        pkt[0] = 0x80;
        pkt[1] = 8;
        pkt[2] = (uint8_t)((s + c->ssrc) >> 8);
        pkt[3] = (uint8_t)(s + c->ssrc);
        put_be32(pkt + 4, s * FRAME_BYTES + c->ssrc);
        put_be32(pkt + 8, c->ssrc);
        frame_payload(pkt + RTP_HDR, (uint32_t)i, s);
        f = &c->ring[s % RING];
        frame_retire(c, f);
        t = now_ns();
        f->seq = s;
        f->flags = F_SENT;
        if (!o.no_stream && t >= c->answer_ns + EDGE_NS && t <= c->bye_due_ns - EDGE_NS)
            f->flags |= F_COUNT; /* without a stream nothing comes back to count */
        f->sent_ns = t;
        f->play_ns = 0;
        if (sendto(c->rtp_fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&c->rtp_dst,
                   sizeof(c->rtp_dst)) == (ssize_t)sizeof(pkt))
            g.rtp_sent++;
    }
}

static int64_t cmsg_time(struct msghdr *mh, int64_t fallback)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
            return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        }
    }
    return fallback;
}

static void rtp_on_packet(int i, const uint8_t *p, size_t n, int64_t t)
{
    struct call *c = &g.calls[i];
    uint16_t seq;
    size_t hl;
    bool counted;

    if (n < RTP_HDR || (p[0] >> 6) != 2)
        return;
    if (c->state != CS_UP && c->state != CS_BYE)
        return;
    g.rtp_rx++;
    seq = (uint16_t)(p[2] << 8 | p[3]);
    counted = t >= c->answer_ns + EDGE_NS && t <= c->bye_due_ns - EDGE_NS;
    if (c->have_rx) {
        int16_t d = (int16_t)(seq - c->next_rtp_seq);
        if (in_window(t)) {
            int64_t gap = t - c->last_rx_ns - FRAME_NS;
            samples_add(&g.jitter, gap < 0 ? -gap : gap);
        }
        if (d > 0 && counted)
            g.rtp_lost += d;
        if (d < 0)
            g.rtp_reorder++;
        else
            c->next_rtp_seq = (uint16_t)(seq + 1);
    } else {
        c->next_rtp_seq = (uint16_t)(seq + 1);
    }
    c->have_rx = true;
    c->last_rx_ns = t;
    hl = RTP_HDR + 4u * (p[0] & 15);
    if (n < hl + FRAME_BYTES)
        return;
    p += hl;
    if (get_be32(p) == (uint32_t)i) {
        uint32_t s = get_be32(p + 4);
        struct frame *f = &c->ring[s % RING];
        if (f->seq != s || !(f->flags & F_PLAYED) || (f->flags & F_ECHO)) {
            g.echo_unexpected++;
            return;
        }
        if (memcmp(p + 8, pattern + 8, FRAME_BYTES - 8) != 0) {
            g.echo_mismatch++;
            return;
        }
        f->flags |= F_ECHO;
        if (s + 1 > c->echoed)
            c->echoed = s + 1;
        if (in_window(t)) {
            samples_add(&g.play_lat, t - f->play_ns);
            if (f->flags & F_EMPTY)
                samples_add(&g.play_lat_empty, t - f->play_ns);
        }
    }
}

static void rtp_on_readable(int i)
{
    static uint8_t bufs[RTP_RX_BATCH][2048];
    static char ctl[RTP_RX_BATCH][64];
    struct mmsghdr m[RTP_RX_BATCH];
    struct iovec iov[RTP_RX_BATCH];

    for (;;) {
        int n;
        int64_t fb;

        for (int k = 0; k < RTP_RX_BATCH; k++) {
            iov[k].iov_base = bufs[k];
            iov[k].iov_len = sizeof(bufs[k]);
            memset(&m[k], 0, sizeof(m[k]));
            m[k].msg_hdr.msg_iov = &iov[k];
            m[k].msg_hdr.msg_iovlen = 1;
            m[k].msg_hdr.msg_control = ctl[k];
            m[k].msg_hdr.msg_controllen = sizeof(ctl[k]);
        }
        n = recvmmsg(g.calls[i].rtp_fd, m, RTP_RX_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return;
        fb = now_ns();
        for (int k = 0; k < n; k++)
            rtp_on_packet(i, bufs[k], m[k].msg_len, cmsg_time(&m[k].msg_hdr, fb));
        if (n < RTP_RX_BATCH)
            return;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* TCP connections: the webhook receiver and the agent. */

static void conn_close(int k)
{
    struct conn *c = &g.conns[k];

    close(c->fd);
    c->fd = -1;
    c->used = false;
}

static void conn_flush(int k)
{
    struct conn *c = &g.conns[k];

    while (c->out_len) {
        ssize_t w = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN)
                break;
            c->out_len = 0;
            return;
        }
        memmove(c->out, c->out + w, c->out_len - (size_t)w);
        c->out_len -= (size_t)w;
    }
    if ((c->out_len > 0) != c->want_out) {
        c->want_out = c->out_len > 0;
        ep_mod(c->fd, EPOLLIN | (c->want_out ? EPOLLOUT : 0), EV_CONN, (uint32_t)k);
    }
}

static void conn_write(int k, const void *data, size_t n)
{
    struct conn *c = &g.conns[k];
    const char *d = data;

    if (!c->out_len) {
        ssize_t w = send(c->fd, d, n, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN)
            return;
        if (w > 0) {
            d += w;
            n -= (size_t)w;
        }
        if (!n)
            return;
    }
    if (c->out_len + n > CONN_OUT) {
        g.out_overflow++;
        return;
    }
    memcpy(c->out + c->out_len, d, n);
    c->out_len += n;
    conn_flush(k);
}

static void ws_write(int k, uint8_t op, const char *data, size_t n)
{
    uint8_t hdr[4];
    char frame[1024];
    size_t hl;

    hdr[0] = (uint8_t)(0x80 | op);
    if (n < 126) {
        hdr[1] = (uint8_t)n;
        hl = 2;
    } else {
        hdr[1] = 126;
        hdr[2] = (uint8_t)(n >> 8);
        hdr[3] = (uint8_t)n;
        hl = 4;
    }
    if (n + hl > sizeof(frame) || n > 65535)
        return;
    memcpy(frame, hdr, hl);
    memcpy(frame + hl, data, n);
    conn_write(k, frame, n + hl);
}

/* The JSON string value of "key" in a message (no unescaping: none of the values we read need
 * it but the payload's "\/", which the decoder skips). */
static bool json_str(const char *m, size_t n, const char *key, const char **v, size_t *vl)
{
    char pat[40];
    const char *p, *e, *end = m + n;
    int pl = snprintf(pat, sizeof(pat), "\"%s\"", key);

    p = memmem(m, n, pat, (size_t)pl);
    if (!p)
        return false;
    p += pl;
    while (p < end && (*p == ' ' || *p == ':'))
        p++;
    if (p >= end || *p != '"')
        return false;
    p++;
    for (e = p; e < end && *e != '"'; e++)
        if (*e == '\\')
            e++;
    if (e >= end)
        return false;
    *v = p;
    *vl = (size_t)(e - p);
    return true;
}

#define PLAY_HEAD                                                                                  \
    "{\"event\":\"playAudio\",\"media\":{\"contentType\":\"audio/"                                 \
    "PCMA\",\"sampleRate\":8000,\"payload\":\""
#define PLAY_TAIL "\"}}"

static void agent_on_media_inbound(int k, const char *payload, size_t pl, int64_t t)
{
    uint8_t got[FRAME_BYTES + 8], want[FRAME_BYTES];
    long n = b64_decode(payload, pl, got, sizeof(got));
    uint32_t idx, s;
    struct call *c;
    struct frame *f;
    char msg[512];
    int ml;
    int64_t pt;

    if (n != FRAME_BYTES) {
        g.in_unrecognised++;
        return;
    }
    idx = get_be32(got);
    s = get_be32(got + 4);
    if (idx >= (uint32_t)o.calls) {
        g.in_unrecognised++;
        return;
    }
    c = &g.calls[idx];
    f = &c->ring[s % RING];
    if (f->seq != s || !(f->flags & F_SENT)) {
        g.in_late++;
        return;
    }
    frame_payload(want, idx, s);
    if (memcmp(got, want, FRAME_BYTES) != 0) {
        f->flags |= F_BAD;
        g.in_mismatch++;
        return;
    }
    f->flags |= F_IN;
    if (in_window(t))
        samples_add(&g.media_lat, t - f->sent_ns);
    /* Echo it back at once; built by hand, as it runs 50 times a second per call. */
    if (sizeof(PLAY_HEAD) - 1 + pl + sizeof(PLAY_TAIL) - 1 > sizeof(msg))
        return;
    memcpy(msg, PLAY_HEAD, sizeof(PLAY_HEAD) - 1);
    memcpy(msg + sizeof(PLAY_HEAD) - 1, payload, pl);
    memcpy(msg + sizeof(PLAY_HEAD) - 1 + pl, PLAY_TAIL, sizeof(PLAY_TAIL) - 1);
    ml = (int)(sizeof(PLAY_HEAD) - 1 + pl + sizeof(PLAY_TAIL) - 1);
    /* The server's queue is empty if the previous echo of this call already came back. */
    if (!c->last_played || (c->ring[(c->last_played - 1) % RING].seq == c->last_played - 1 &&
                            (c->ring[(c->last_played - 1) % RING].flags & F_ECHO)))
        f->flags |= F_EMPTY;
    pt = now_ns();
    f->play_ns = pt;
    f->flags |= F_PLAYED;
    c->last_played = s + 1;
    g.echo_played++;
    ws_write(k, 1, msg, (size_t)ml);
}

static void agent_on_text(int k, const char *m, size_t n, int64_t t)
{
    const char *ev, *v;
    size_t el, vl;

    if (!json_str(m, n, "event", &ev, &el)) {
        g.other_events++;
        return;
    }
    if (el == 5 && !memcmp(ev, "media", 5)) {
        if (json_str(m, n, "track", &v, &vl) && vl == 7 && !memcmp(v, "inbound", 7)) {
            g.media_in++;
            if (json_str(m, n, "payload", &v, &vl))
                agent_on_media_inbound(k, v, vl, t);
            else
                g.in_unrecognised++;
        } else if (json_str(m, n, "track", &v, &vl) && vl == 8 && !memcmp(v, "outbound", 8)) {
            g.media_out++;
        } else {
            g.media_unknown++;
        }
    } else if (el == 5 && !memcmp(ev, "start", 5)) {
        g.ws_starts++;
    } else if (el == 12 && !memcmp(ev, "playedStream", 12)) {
        g.played_stream++;
    } else if (el == 12 && !memcmp(ev, "clearedAudio", 12)) {
        g.cleared_audio++;
    } else {
        g.other_events++;
    }
}

/* Parses as many whole frames as the buffer holds; returns bytes consumed, or -1 to close. */
static long ws_on_frames(int k, int64_t t)
{
    struct conn *c = &g.conns[k];
    size_t off = 0;

    for (;;) {
        uint8_t *p = (uint8_t *)c->in + off;
        size_t avail = c->in_len - off, hl = 2;
        uint64_t len;
        uint8_t op;
        bool fin, masked;

        if (avail < 2)
            break;
        fin = p[0] & 0x80;
        op = p[0] & 15;
        masked = p[1] & 0x80;
        len = p[1] & 127;
        if (len == 126) {
            if (avail < 4)
                break;
            len = (uint64_t)p[2] << 8 | p[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int b = 0; b < 8; b++)
                len = len << 8 | p[2 + b];
            hl = 10;
        }
        if (masked)
            hl += 4;
        if (len > CONN_IN - 16)
            return -1; /* bigger than anything the server sends */
        if (avail < hl + len)
            break;
        if (masked) {
            const uint8_t *mk = p + hl - 4;
            for (uint64_t b = 0; b < len; b++)
                p[hl + b] ^= mk[b & 3];
        }
        char *pl = (char *)p + hl;
        switch (op) {
        case 0: /* continuation */
            if (c->msg_len + len > CONN_IN)
                return -1;
            memcpy(c->msg + c->msg_len, pl, len);
            c->msg_len += len;
            if (fin) {
                if (c->msg_op == 1)
                    agent_on_text(k, c->msg, c->msg_len, t);
                c->msg_len = 0;
            }
            break;
        case 1:
        case 2:
            if (fin) {
                if (op == 1)
                    agent_on_text(k, pl, len, t);
            } else {
                c->msg_op = op;
                memcpy(c->msg, pl, len);
                c->msg_len = len;
            }
            break;
        case 8:
            g.ws_closes++;
            ws_write(k, 8, pl, len >= 2 ? 2 : 0);
            return -1;
        case 9:
            g.pings++;
            ws_write(k, 10, pl, len);
            break;
        default: break;
        }
        off += hl + len;
    }
    return (long)off;
}

static bool http_header(const char *h, size_t n, const char *name, const char **v, size_t *vl)
{
    return sip_header(h, n, name, NULL, v, vl);
}

static long ws_handshake(int k)
{
    struct conn *c = &g.conns[k];
    const char *end = mem_find(c->in, c->in_len, "\r\n\r\n"), *v;
    size_t vl, hlen;
    unsigned char sha[SHA_DIGEST_LENGTH];
    char key[128], acc[64], resp[256];
    int kl, rl;

    if (!end)
        return c->in_len >= CONN_IN ? -1 : 0;
    hlen = (size_t)(end - c->in) + 4;
    if (!http_header(c->in, hlen, "Sec-WebSocket-Key", &v, &vl) || vl > 64 ||
        memcmp(c->in, "GET /ws", 7) != 0) {
        static const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                                 "Connection: close\r\n\r\n";
        g.hs_refused++;
        conn_write(k, nf, sizeof(nf) - 1);
        return -1;
    }
    kl = snprintf(key, sizeof(key), "%.*s" WS_GUID, (int)vl, v);
    SHA1((const unsigned char *)key, (size_t)kl, sha);
    acc[b64_encode(sha, sizeof(sha), acc)] = 0;
    rl = snprintf(resp, sizeof(resp),
                  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                  acc);
    conn_write(k, resp, (size_t)rl);
    c->hs_done = true;
    g.ws_conns++;
    return (long)hlen;
}

static void hook_respond(int k, const char *body, const char *ctype)
{
    char resp[1024];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: keep-alive\r\n\r\n%s",
                     ctype, strlen(body), body);

    if (n > 0 && (size_t)n < sizeof(resp))
        conn_write(k, resp, (size_t)n);
}

/* One webhook request if a whole one is buffered: bytes consumed, 0 to wait, -1 to close. */
static long hook_on_request(int k)
{
    struct conn *c = &g.conns[k];
    const char *end = mem_find(c->in, c->in_len, "\r\n\r\n"), *v, *body;
    size_t vl, hlen, blen = 0;
    char answer[512];

    if (!end)
        return c->in_len >= CONN_IN ? -1 : 0;
    hlen = (size_t)(end - c->in) + 4;
    if (http_header(c->in, hlen, "Content-Length", &v, &vl)) {
        char num[24];
        copy_str(num, sizeof(num), v, vl);
        blen = strtoul(num, NULL, 10);
        if (blen > CONN_IN - hlen)
            return -1;
    }
    if (c->in_len < hlen + blen) {
        if (!c->continue_sent && http_header(c->in, hlen, "Expect", &v, &vl) && vl >= 12 &&
            !strncasecmp(v, "100-continue", 12)) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            conn_write(k, cont, sizeof(cont) - 1);
            c->continue_sent = true;
        }
        return 0;
    }
    c->continue_sent = false;
    body = c->in + hlen;
    {
        const char *sp = memchr(c->in, ' ', hlen);
        const char *path = sp ? sp + 1 : c->in;
        size_t rest = hlen - (size_t)(path - c->in);

        if (rest >= 7 && !memcmp(path, "/answer", 7)) {
            g.hooks_answer++;
            snprintf(answer, sizeof(answer),
                     "{\"stream\":{\"url\":\"ws://127.0.0.1:%d/%s\",\"direction\":\"BOTH\","
                     "\"bidirectional\":true,\"keep_call_alive\":true}}",
                     o.agent_port, o.no_stream ? "none" : "ws");
            hook_respond(k, answer, "application/json");
        } else if (rest >= 7 && !memcmp(path, "/hangup", 7)) {
            /* POST: JSON body; GET: the query string. */
            const char *src = blen ? body : path;
            size_t sl = blen ? blen : rest;
            const char *p = memmem(src, sl, "call_status", 11);
            g.hooks_hangup++;
            if (p) {
                p += 11;
                while (p < src + sl && (*p == '"' || *p == ':' || *p == '=' || *p == ' '))
                    p++;
                if (src + sl - p >= 9 && !memcmp(p, "COMPLETED", 9))
                    g.hook_completed++;
                else
                    g.hook_other++;
            } else {
                g.hook_other++;
            }
            if (g.hook_other && !g.other_example[0]) {
                size_t n = sl < sizeof(g.other_example) ? sl : sizeof(g.other_example) - 1;

                for (size_t i = 0; i < n; i++) /* kept printable for the JSON report */
                    g.other_example[i] =
                        src[i] >= 0x20 && src[i] < 0x7f && src[i] != '"' && src[i] != '\\' ? src[i]
                                                                                           : '.';
                g.other_example[n] = '\0';
            }
            hook_respond(k, "", "text/plain");
        } else {
            hook_respond(k, "", "text/plain");
        }
    }
    return (long)(hlen + blen);
}

static void conn_on_readable(int k)
{
    struct conn *c = &g.conns[k];
    char ctl[64];
    bool short_read;

    for (;;) {
        struct iovec iov = {.iov_base = c->in + c->in_len, .iov_len = CONN_IN - c->in_len};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
        ssize_t r;
        int64_t t;

        if (iov.iov_len == 0) {
            conn_close(k);
            return;
        }
        r = recvmsg(c->fd, &mh, MSG_DONTWAIT);
        if (r < 0 && errno == EAGAIN)
            return;
        if (r <= 0) {
            conn_close(k);
            return;
        }
        t = cmsg_time(&mh, now_ns());
        c->in_len += (size_t)r;
        short_read = (size_t)r < iov.iov_len;
        for (;;) {
            long used;

            if (!c->ws)
                used = hook_on_request(k);
            else if (!c->hs_done)
                used = ws_handshake(k);
            else
                used = ws_on_frames(k, t);
            if (used < 0) {
                conn_close(k);
                return;
            }
            if (used == 0)
                break;
            memmove(c->in, c->in + used, c->in_len - (size_t)used);
            c->in_len -= (size_t)used;
            if (c->ws && c->hs_done && c->in_len && used > 0)
                continue; /* frames after the handshake */
            if (!c->in_len)
                break;
        }
        /* Level-triggered epoll reports what is left; a second read would only say EAGAIN. */
        if (short_read)
            return;
    }
}

static void conn_accept(int lfd, bool ws)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        int one = 1, k;

        if (fd < 0)
            return;
        for (k = 0; k < g.nconns && g.conns[k].used; k++)
            ;
        if (k == g.nconns) {
            close(fd);
            note("too many connections");
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
        g.conns[k].fd = fd;
        g.conns[k].used = true;
        g.conns[k].ws = ws;
        g.conns[k].hs_done = false;
        g.conns[k].continue_sent = false;
        g.conns[k].want_out = false;
        g.conns[k].in_len = g.conns[k].out_len = g.conns[k].msg_len = 0;
        ep_add(fd, EPOLLIN, EV_CONN, (uint32_t)k);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Report. */

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

    return (x > y) - (x < y);
}

/* "name":{"n":..,"mean_ms":..,"p50_ms":..,"p99_ms":..,"max_ms":..} */
static void print_dist(const char *name, struct samples *s, bool last)
{
    double sum = 0;

    qsort(s->v, s->n, sizeof(*s->v), cmp_i32);
    for (size_t k = 0; k < s->n; k++)
        sum += s->v[k];
    if (!s->n) {
        printf("\"%s\":{\"n\":0}%s", name, last ? "" : ",");
        return;
    }
    printf(
        "\"%s\":{\"n\":%zu,\"mean_ms\":%.3f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f%s}%s",
        name, s->n, sum / (double)s->n / 1000.0, s->v[s->n / 2] / 1000.0,
        s->v[(size_t)((double)(s->n - 1) * 0.99)] / 1000.0, s->v[s->n - 1] / 1000.0,
        s->dropped ? ",\"dropped\":1" : "", last ? "" : ",");
}

static double tv_ms(struct timeval tv)
{
    return (double)tv.tv_sec * 1000.0 + (double)tv.tv_usec / 1000.0;
}

static void report(void)
{
    double win_s = (double)(g.win_end - g.win_start) / 1e9;
    double cpu_ms = 0, place_s;
    int up = 0;

    for (int i = 0; i < o.calls; i++)
        for (int r = 0; r < RING; r++)
            frame_retire(&g.calls[i], &g.calls[i].ring[r]);
    if (g.win_started && g.win_ended)
        cpu_ms = tv_ms(g.ru_end.ru_utime) + tv_ms(g.ru_end.ru_stime) - tv_ms(g.ru_start.ru_utime) -
                 tv_ms(g.ru_start.ru_stime);
    for (int i = 0; i < o.calls; i++)
        if (g.calls[i].answer_ns && g.calls[i].answer_ns <= g.win_start &&
            (g.calls[i].end_ns == 0 || g.calls[i].end_ns >= g.win_end))
            up++;
    place_s = (double)(g.last_answer_ns - g.first_invite_ns) / 1e9;
    printf("{\"calls\":%d,\"placed\":%d,\"answered\":%d,\"failed\":%d,\"failed_by_code\":{",
           o.calls, g.placed, g.answered, g.failed);
    {
        bool first = true;
        for (int k = 0; k < (int)(sizeof(g.fail_codes) / sizeof(g.fail_codes[0])); k++)
            if (g.fail_codes[k]) {
                printf("%s\"%d\":%d", first ? "" : ",", k, g.fail_codes[k]);
                first = false;
            }
        if (g.fail_timeout)
            printf("%s\"timeout\":%d", first ? "" : ",", g.fail_timeout);
    }
    printf("},\"rate_asked\":%.1f,\"setup_rate\":%.1f,", o.rate,
           place_s > 0 ? g.answered / place_s : 0.0);
    print_dist("invite_to_200", &g.setup_lat, false);
    printf("\"window_s\":%.3f,\"window_complete\":%s,\"calls_up_in_window\":%d,", win_s,
           g.win_ended ? "true" : "false", up);
    print_dist("jitter", &g.jitter, false);
    print_dist("media_latency", &g.media_lat, false);
    print_dist("play_latency", &g.play_lat, false);
    print_dist("play_latency_empty_queue", &g.play_lat_empty, false);
    printf("\"rtp_sent\":%ld,\"rtp_received\":%ld,\"rtp_lost_to_party\":%ld,\"rtp_reordered\":%ld,",
           g.rtp_sent, g.rtp_rx, g.rtp_lost, g.rtp_reorder);
    printf("\"inbound_expected\":%ld,\"inbound_received\":%ld,\"inbound_lost\":%ld,"
           "\"inbound_mismatched\":%ld,\"inbound_unrecognised\":%ld,\"inbound_late\":%ld,",
           g.in_expected, g.in_received, g.in_expected - g.in_received, g.in_mismatch,
           g.in_unrecognised, g.in_late);
    printf("\"echoes_sent\":%ld,\"echoes_played\":%ld,\"echoes_lost\":%ld,"
           "\"echoes_queued_at_hangup\":%ld,\"echoes_mismatched\":%ld,\"echoes_unexpected\":%ld,",
           g.echo_played, g.echo_received, g.echo_lost, g.echo_unplayed, g.echo_mismatch,
           g.echo_unexpected);
    printf("\"ws_connections\":%ld,\"ws_refused\":%ld,\"start_events\":%ld,\"media_in\":%ld,"
           "\"media_out\":%ld,\"played_stream\":%ld,\"cleared_audio\":%ld,\"other_events\":%ld,"
           "\"ws_closes\":%ld,\"agent_out_overflow\":%ld,",
           g.ws_conns, g.hs_refused, g.ws_starts, g.media_in, g.media_out, g.played_stream,
           g.cleared_audio, g.other_events, g.ws_closes, g.out_overflow);
    printf("\"answer_webhooks\":%ld,\"hangup_webhooks\":%ld,\"hangup_completed\":%ld,"
           "\"hangup_other\":%ld,\"server_byes\":%ld,\"bye_timeouts\":%ld,\"bye_non200\":%ld,"
           "\"invite_retransmissions\":%ld,\"bye_retransmissions\":%ld,\"sip_unparsed\":%ld,",
           g.hooks_answer, g.hooks_hangup, g.hook_completed, g.hook_other, g.server_byes,
           g.bye_timeouts, g.bye_non200, g.retrans_invite, g.retrans_bye, g.sip_unparsed);
    printf("\"hangup_other_example\":\"%s\",", g.other_example);
    printf("\"loadgen_ticks_missed\":%ld,\"loadgen_tick_late_max_ms\":%.3f,", g.ticks_missed,
           (double)g.tick_late_max / 1e6);
    printf("\"cpu_ms\":%.1f,\"cpu_ms_per_s\":%.2f,\"cpu_ms_per_call_s\":%.4f}\n", cpu_ms,
           win_s > 0 ? cpu_ms / win_s : 0.0, win_s > 0 && up ? cpu_ms / win_s / up : 0.0);
    fflush(stdout);
}

/* ------------------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: loadgen --sip HOST:PORT --number E164 [options]\n"
        "Places --calls inbound calls on one sfvopi server and plays the carrier (SIP over\n"
        "UDP), every party (RTP), the stream agent (WebSocket, echoing inbound audio with\n"
        "playAudio) and the webhook receiver; prints one JSON object of results.\n\n"
        "  --sip HOST:PORT      the server's --sip-listen address (numeric IPv4)\n"
        "  --number E164        the called number, linked to an app whose answer_url is\n"
        "                       http://127.0.0.1:<webhook-port>/answer and hangup_url .../hangup\n"
        "  --caller E164        the calling number (default +14155550100)\n"
        "  --calls N            calls to place (default 10)\n"
        "  --rate R             new calls a second (default 100)\n"
        "  --hold S             seconds each call stays up after its answer (default:\n"
        "                       calls/rate + warmup + window + 1)\n"
        "  --warmup S           seconds from the last answer to the measurement window\n"
        "                       (default 2)\n"
        "  --window S           measured seconds (default 10)\n"
        "  --agent-port P       WebSocket agent on 127.0.0.1:P (default 0: any free port)\n"
        "  --webhook-port P     webhook receiver on 127.0.0.1:P (default 0: any free port)\n"
        "  --no-stream          answer with a stream URL the agent refuses and\n"
        "                       keep_call_alive, so calls stay up without a stream\n"
        "  --phases K           spread the parties' frames over K slots of each 20 ms, as\n"
        "                       calls begun at random times would be (default 1: every\n"
        "                       party sends at the same instant, the worst burst)\n"
        "  --batch-us U         after a wake-up, wait up to U us for more packets so one\n"
        "                       wake-up serves many (default 1000; receive times are the\n"
        "                       kernel's, so only the agent's echo is later)\n"
        "  --quiet              no progress lines on stderr\n"
        "  --help               this text\n");
}

static double parse_num(const char *s, const char *name, double lo, double hi)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi)
        die("%s must be a number from %g to %g", name, lo, hi);
    return v;
}

static void parse_args(int argc, char **argv)
{
    static const struct option lo[] = {{"sip", required_argument, NULL, 's'},
                                       {"number", required_argument, NULL, 'n'},
                                       {"caller", required_argument, NULL, 'c'},
                                       {"calls", required_argument, NULL, 'N'},
                                       {"rate", required_argument, NULL, 'r'},
                                       {"hold", required_argument, NULL, 'H'},
                                       {"warmup", required_argument, NULL, 'w'},
                                       {"window", required_argument, NULL, 'W'},
                                       {"agent-port", required_argument, NULL, 'a'},
                                       {"webhook-port", required_argument, NULL, 'k'},
                                       {"no-stream", no_argument, NULL, 'S'},
                                       {"quiet", no_argument, NULL, 'q'},
                                       {"batch-us", required_argument, NULL, 'b'},
                                       {"phases", required_argument, NULL, 'P'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    const char *sip = NULL;
    int ch;

    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 's': sip = optarg; break;
        case 'n': o.number = optarg; break;
        case 'c': o.caller = optarg; break;
        case 'N': o.calls = (int)parse_num(optarg, "--calls", 1, 100000); break;
        case 'r': o.rate = parse_num(optarg, "--rate", 0.1, 100000); break;
        case 'H': o.hold = parse_num(optarg, "--hold", 0.1, 86400); break;
        case 'w': o.warmup = parse_num(optarg, "--warmup", 0, 3600); break;
        case 'W': o.window = parse_num(optarg, "--window", 0, 3600); break;
        case 'a': o.agent_port = (int)parse_num(optarg, "--agent-port", 0, 65535); break;
        case 'k': o.hook_port = (int)parse_num(optarg, "--webhook-port", 0, 65535); break;
        case 'S': o.no_stream = true; break;
        case 'q': o.quiet = true; break;
        case 'b': o.batch_us = (int)parse_num(optarg, "--batch-us", 0, 10000); break;
        case 'P': o.phases = (int)parse_num(optarg, "--phases", 1, 20); break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind != argc || !sip || !o.number) {
        usage(stderr);
        exit(2);
    }
    {
        const char *colon = strrchr(sip, ':');
        if (!colon || (size_t)(colon - sip) >= sizeof(o.sip_host))
            die("--sip must be HOST:PORT");
        copy_str(o.sip_host, sizeof(o.sip_host), sip, (size_t)(colon - sip));
        o.sip_port = (int)parse_num(colon + 1, "--sip port", 1, 65535);
        o.sip.sin_family = AF_INET;
        o.sip.sin_port = htons((uint16_t)o.sip_port);
        if (inet_pton(AF_INET, o.sip_host, &o.sip.sin_addr) != 1)
            die("--sip host must be a numeric IPv4 address");
    }
    if (strlen(o.number) > 32 || strlen(o.caller) > 32)
        die("--number and --caller are at most 32 characters");
    if (o.hold == 0)
        o.hold = o.calls / o.rate + o.warmup + o.window + 1;
    else if (o.hold < o.calls / o.rate + o.warmup + o.window)
        note("warning: --hold %.1f s is shorter than calls/rate + warmup + window (%.1f s): the "
             "first calls end inside the window",
             o.hold, o.calls / o.rate + o.warmup + o.window);
}

static void setup(void)
{
    struct rlimit rl;
    size_t cap;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    for (int k = 0; k < FRAME_BYTES; k++)
        pattern[k] = (uint8_t)(k * 7 + 3);
    g.run_id = (uint32_t)getpid() ^ (uint32_t)time(NULL) << 8;
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    if (g.ep < 0)
        die("epoll_create1: %s", strerror(errno));
    g.sip_fd = udp_socket(&g.sip_lport, 4 << 20);
    ep_add(g.sip_fd, EPOLLIN, EV_SIP, 0);
    g.calls = xcalloc((size_t)o.calls, sizeof(*g.calls));
    for (int i = 0; i < o.calls; i++) {
        struct call *c = &g.calls[i];
        c->rtp_fd = udp_socket(&c->rtp_port, 256 << 10);
        ep_add(c->rtp_fd, EPOLLIN, EV_RTP, (uint32_t)i);
        c->ring = xcalloc(RING, sizeof(*c->ring));
        for (int r = 0; r < RING; r++)
            c->ring[r].seq = UINT32_MAX;
        snprintf(c->call_id, sizeof(c->call_id), "lg-%x-%d@127.0.0.1", g.run_id, i);
        snprintf(c->from_tag, sizeof(c->from_tag), "lg%xt%d", g.run_id, i);
        c->ssrc = 0x10000000u + (uint32_t)i * 7919u;
    }
    /* Each call has at most one stream and a few webhook connections are kept alive. */
    g.nconns = o.calls + 64;
    g.conns = xcalloc((size_t)g.nconns, sizeof(*g.conns));
    for (int k = 0; k < g.nconns; k++) {
        g.conns[k].fd = -1;
        g.conns[k].in = xcalloc(1, CONN_IN);
        g.conns[k].out = xcalloc(1, CONN_OUT);
        g.conns[k].msg = xcalloc(1, CONN_IN);
    }
    g.agent_fd = tcp_listener(&o.agent_port);
    ep_add(g.agent_fd, EPOLLIN, EV_AGENT_LISTEN, 0);
    g.hook_fd = tcp_listener(&o.hook_port);
    ep_add(g.hook_fd, EPOLLIN, EV_HOOK_LISTEN, 0);
    cap = (size_t)o.calls * (size_t)(o.window * 50 * 1.2 + 100);
    samples_init(&g.jitter, cap);
    samples_init(&g.media_lat, cap);
    samples_init(&g.play_lat, cap);
    samples_init(&g.play_lat_empty, cap);
    samples_init(&g.setup_lat, (size_t)o.calls);
    g.win_start = g.win_end = INT64_MAX;
}

/* Waking up for every packet costs more than handling it (at 500 calls that is 50,000
 * wake-ups a second); a short pause lets the kernel queue packets for one batch. The 20 ms
 * tick is never delayed by it. */
static void batch_pause(void)
{
    struct timespec m;
    int64_t mono, until_tick, pause = (int64_t)o.batch_us * 1000;

    clock_gettime(CLOCK_MONOTONIC, &m);
    mono = (int64_t)m.tv_sec * 1000000000LL + m.tv_nsec;
    until_tick = g.next_tick_mono - mono;
    if (until_tick < pause)
        pause = until_tick - 50000;
    if (pause < 50000)
        return;
    m.tv_sec = 0;
    m.tv_nsec = (long)pause;
    nanosleep(&m, NULL);
}

int main(int argc, char **argv)
{
    struct itimerspec its = {0};
    struct epoll_event evs[256];
    int64_t hangup_deadline = 0;

    parse_args(argc, argv);
    setup();
    fprintf(stderr,
            "loadgen: webhook http://127.0.0.1:%d agent ws://127.0.0.1:%d sip 127.0.0.1:%u\n",
            o.hook_port, o.agent_port, g.sip_lport);

    its.it_interval.tv_nsec = FRAME_NS / o.phases;
    g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (g.tfd < 0)
        die("timerfd_create: %s", strerror(errno));
    clock_gettime(CLOCK_MONOTONIC, &its.it_value);
    its.it_value.tv_nsec += FRAME_NS / o.phases;
    if (its.it_value.tv_nsec >= 1000000000L) {
        its.it_value.tv_sec++;
        its.it_value.tv_nsec -= 1000000000L;
    }
    g.next_tick_mono = (int64_t)its.it_value.tv_sec * 1000000000LL + its.it_value.tv_nsec;
    if (timerfd_settime(g.tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
        die("timerfd_settime: %s", strerror(errno));
    ep_add(g.tfd, EPOLLIN, EV_TIMER, 0);
    g.t0_ns = now_ns();

    for (;;) {
        int n = epoll_wait(g.ep, evs, (int)(sizeof(evs) / sizeof(evs[0])), 1000);

        for (int e = 0; e < n; e++) {
            enum ev_kind kind = (enum ev_kind)(evs[e].data.u64 >> 32);
            uint32_t idx = (uint32_t)evs[e].data.u64;

            switch (kind) {
            case EV_TIMER: {
                uint64_t ticks = 0;
                int64_t now;
                if (read(g.tfd, &ticks, sizeof(ticks)) != sizeof(ticks))
                    break;
                now = now_ns();
                {
                    struct timespec m;
                    int64_t mono, late;
                    clock_gettime(CLOCK_MONOTONIC, &m);
                    mono = (int64_t)m.tv_sec * 1000000000LL + m.tv_nsec;
                    late = mono - g.next_tick_mono; /* the oldest tick due */
                    g.next_tick_mono += (int64_t)ticks * (FRAME_NS / o.phases);
                    if (g.ready_ns && late > g.tick_late_max)
                        g.tick_late_max = late;
                    if (g.ready_ns)
                        g.ticks_missed += (long)ticks - 1;
                }
                /* New calls: as many as the rate allows by now. */
                if (g.placed < o.calls) {
                    int due = (int)((double)(now - g.t0_ns) / 1e9 * o.rate) + 1;
                    while (g.placed < o.calls && g.placed < due)
                        call_place(g.placed, now);
                }
                for (uint64_t x = 0; x < ticks; x++)
                    rtp_send_slot((int)(g.slot++ % (uint64_t)o.phases));
                sip_timers(now);
                if (!g.win_started && now >= g.win_start) {
                    getrusage(RUSAGE_SELF, &g.ru_start);
                    g.win_started = true;
                    note("window open");
                }
                if (g.win_started && !g.win_ended && now >= g.win_end) {
                    getrusage(RUSAGE_SELF, &g.ru_end);
                    g.win_ended = true;
                    note("window closed");
                }
                break;
            }
            case EV_SIP: sip_on_readable(); break;
            case EV_RTP: rtp_on_readable((int)idx); break;
            case EV_AGENT_LISTEN: conn_accept(g.agent_fd, true); break;
            case EV_HOOK_LISTEN: conn_accept(g.hook_fd, false); break;
            case EV_CONN:
                if (!g.conns[idx].used)
                    break;
                if (evs[e].events & EPOLLOUT)
                    conn_flush((int)idx);
                if (evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                    conn_on_readable((int)idx);
                break;
            default: break;
            }
        }
        if (o.batch_us && n > 0 && n < (int)(sizeof(evs) / sizeof(evs[0])))
            batch_pause();
        /* The end: every call resolved and ended, then the hangup webhooks (or a timeout). */
        if (g.placed == o.calls && g.in_progress == 0) {
            int64_t now = now_ns();
            if (!hangup_deadline) {
                hangup_deadline = now + HANGUP_WAIT_NS;
                if (!g.win_ended && g.win_started) {
                    getrusage(RUSAGE_SELF, &g.ru_end);
                    g.win_ended = true;
                    g.win_end = now;
                }
                note("all calls ended; waiting for hangup webhooks");
            }
            if (g.hooks_hangup >= g.answered || now >= hangup_deadline)
                break;
        }
    }
    report();
    return 0;
}
