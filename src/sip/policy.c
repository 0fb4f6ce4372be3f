/* policy: admission, log limiting, challenge counting and the called-number
 * rule (the allowlist itself is core/netaddr.c). Everything here is a pure
 * function of its arguments and of caller-owned tables; see policy.h for
 * the rules themselves. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sip/policy.h"

static uint64_t hash_bytes(uint64_t seed, const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ seed;
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    /* Final mix: FNV's low bits are weak, and slots are picked from them. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_ip(uint64_t seed, const struct policy_ip *ip)
{
    return hash_bytes(seed ^ ip->v6, ip->b, ip->v6 ? 16 : 4);
}

/* --- admission --- */

void admission_init(struct admission *a, uint32_t rate_per_s, uint64_t seed)
{
    memset(a, 0, sizeof(*a));
    a->rate = rate_per_s ? rate_per_s : 1;
    a->seed = seed;
}

bool admission_take(struct admission *a, const struct policy_ip *ip, int64_t now_ms)
{
    const int64_t cap = (int64_t)a->rate * 2 * 1000, cost = 1000;
    uint64_t h = hash_ip(a->seed, ip);
    struct admission_slot *s = NULL, *oldest = NULL;
    int i;

    for (i = 0; i < ADMISSION_PROBES; i++) {
        struct admission_slot *t = &a->slots[(h + (uint64_t)i) % ADMISSION_SLOTS];

        if (t->used && policy_ip_equal(&t->ip, ip)) {
            s = t;
            break;
        }
        if (!oldest || !t->used || (oldest->used && t->last_ms < oldest->last_ms))
            oldest = t;
    }
    if (!s) {
        s = oldest;
        s->used = true;
        s->ip = *ip;
        s->last_ms = now_ms;
        s->milli_tokens = cap;
    } else if (now_ms > s->last_ms) {
        /* rate tokens a second is rate milli-tokens a millisecond; the
         * elapsed time is capped first so that the product cannot overflow. */
        int64_t elapsed = now_ms - s->last_ms;

        if (elapsed > 2000)
            elapsed = 2000;
        s->milli_tokens += elapsed * (int64_t)a->rate;
        if (s->milli_tokens > cap)
            s->milli_tokens = cap;
        s->last_ms = now_ms;
    }
    if (s->milli_tokens < cost)
        return false;
    s->milli_tokens -= cost;
    return true;
}

/* --- log limiting --- */

void loglimit_init(struct loglimit *l, uint64_t seed)
{
    memset(l, 0, sizeof(*l));
    l->seed = seed;
    l->period_start = INT64_MIN;
}

bool loglimit_allow(struct loglimit *l, const struct policy_ip *ip, int64_t now_ms,
                    uint64_t *unlogged)
{
    uint64_t h = hash_ip(l->seed, ip);
    int i, slot = -1, oldest = -1;

    if (l->period_start == INT64_MIN || now_ms - l->period_start >= LOGLIMIT_PERIOD_MS) {
        l->period_start = now_ms;
        l->lines = 0;
    }
    for (i = 0; i < LOGLIMIT_PROBES; i++) {
        int k = (int)((h + (uint64_t)i) % LOGLIMIT_SLOTS);

        if (l->slots[k].used && policy_ip_equal(&l->slots[k].ip, ip)) {
            slot = k;
            break;
        }
        if (oldest < 0 || !l->slots[k].used ||
            (l->slots[oldest].used && l->slots[k].logged_ms < l->slots[oldest].logged_ms))
            oldest = k;
    }
    if ((slot >= 0 && now_ms - l->slots[slot].logged_ms < LOGLIMIT_PERIOD_MS) ||
        l->lines >= LOGLIMIT_LINES) {
        l->unlogged++;
        return false;
    }
    if (slot < 0)
        slot = oldest;
    l->slots[slot].used = true;
    l->slots[slot].ip = *ip;
    l->slots[slot].logged_ms = now_ms;
    l->lines++;
    *unlogged = l->unlogged;
    l->unlogged = 0;
    return true;
}

/* --- digest challenges --- */

void challenges_init(struct challenges *c)
{
    memset(c, 0, sizeof(*c));
}

bool challenges_second(struct challenges *c, const char *call_id, size_t call_id_len,
                       const char *method, size_t method_len, uint32_t cseq)
{
    uint64_t key = hash_bytes(0, (const uint8_t *)call_id, call_id_len);
    size_t i;

    key = hash_bytes(key, (const uint8_t *)method, method_len) | 1; /* never 0: 0 is free */
    for (i = 0; i < CHALLENGE_SLOTS; i++) {
        if (c->slots[i].key != key)
            continue;
        if (c->slots[i].cseq == cseq)
            return false; /* the same challenge again */
        if (c->slots[i].cseq + 1 == cseq) {
            c->slots[i].key = 0;
            return true;
        }
        c->slots[i].cseq = cseq; /* a new request of the same dialog */
        return false;
    }
    c->slots[c->next].key = key;
    c->slots[c->next].cseq = cseq;
    c->next = (c->next + 1) % CHALLENGE_SLOTS;
    return false;
}

/* --- the called number --- */

const char *policy_called_user(const char *ruri_user, const char *to_user, const char *sip_user)
{
    if (sip_user && *sip_user && strcmp(ruri_user, sip_user) == 0)
        return to_user;
    return ruri_user;
}

/* --- transports --- */

const char *policy_tp_name(enum policy_tp tp)
{
    switch (tp) {
    case POLICY_TP_TCP: return "tcp";
    case POLICY_TP_TLS: return "tls";
    default: return "udp";
    }
}

/* "IP:PORT" or "[IP6]:PORT", port 1-65535. */
static bool hostport_ok(const char *s, size_t n)
{
    char host[LISTEN_HOSTPORT_MAX];
    unsigned char addr[16];
    const char *colon;
    size_t hn;
    long port = 0;
    size_t i;

    if (n == 0 || n >= LISTEN_HOSTPORT_MAX)
        return false;
    if (s[0] == '[') {
        const char *end = memchr(s, ']', n);

        if (!end || (size_t)(end - s) + 1 >= n || end[1] != ':')
            return false;
        hn = (size_t)(end - s) - 1;
        memcpy(host, s + 1, hn);
        host[hn] = '\0';
        colon = end + 1;
        if (inet_pton(AF_INET6, host, addr) != 1)
            return false;
    } else {
        colon = NULL;
        for (i = 0; i < n; i++) {
            if (s[i] == ':')
                colon = s + i;
        }
        if (!colon)
            return false;
        hn = (size_t)(colon - s);
        memcpy(host, s, hn);
        host[hn] = '\0';
        if (inet_pton(AF_INET, host, addr) != 1)
            return false;
    }
    i = (size_t)(colon - s) + 1;
    if (i >= n || n - i > 5)
        return false;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        port = port * 10 + (s[i] - '0');
    }
    return port >= 1 && port <= 65535;
}

enum err listen_list_parse(const char *s, struct listen_list *out, char *why, size_t whysz)
{
    struct listen_list l;
    size_t len = strnlen(s, LISTEN_TEXT_MAX + 1);
    const char *p = s, *end = s + len;

    memset(&l, 0, sizeof(l));
    if (len > LISTEN_TEXT_MAX) {
        snprintf(why, whysz, "is longer than %d bytes", LISTEN_TEXT_MAX);
        return ERR_INVALID;
    }
    while (p <= end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *a = p, *b = comma ? comma : end;
        struct listen_spec sp = {.tp = POLICY_TP_UDP};
        size_t k;

        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (a == b) {
            snprintf(why, whysz, "has an empty item");
            return ERR_INVALID;
        }
        if (b - a > 4 && (!strncasecmp(a, "udp:", 4) || !strncasecmp(a, "tcp:", 4) ||
                          !strncasecmp(a, "tls:", 4))) {
            sp.tp = !strncasecmp(a, "udp:", 4)   ? POLICY_TP_UDP
                    : !strncasecmp(a, "tcp:", 4) ? POLICY_TP_TCP
                                                 : POLICY_TP_TLS;
            a += 4;
        }
        if (!hostport_ok(a, (size_t)(b - a))) {
            snprintf(why, whysz,
                     "'%.*s' is not [udp:|tcp:|tls:]IP:PORT with a port from 1 to 65535",
                     (int)(b - p < 80 ? b - p : 80), p);
            return ERR_INVALID;
        }
        memcpy(sp.hostport, a, (size_t)(b - a));
        sp.hostport[b - a] = '\0';
        for (k = 0; k < l.n; k++) {
            if (l.v[k].tp == sp.tp && !strcmp(l.v[k].hostport, sp.hostport)) {
                snprintf(why, whysz, "names %s:%s twice", policy_tp_name(sp.tp), sp.hostport);
                return ERR_INVALID;
            }
        }
        if (l.n == LISTEN_MAX) {
            snprintf(why, whysz, "has more than %d listeners", LISTEN_MAX);
            return ERR_INVALID;
        }
        l.v[l.n++] = sp;
        if (!comma)
            break;
        p = comma + 1;
    }
    *out = l;
    return ERR_OK;
}

bool listen_list_has(const struct listen_list *l, enum policy_tp tp)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        if (l->v[i].tp == tp)
            return true;
    }
    return false;
}

enum err policy_uri_transport(const char *uri, enum policy_tp *out)
{
    const char *p;
    size_t n;

    if (!strncasecmp(uri, "sips:", 5)) {
        *out = POLICY_TP_TLS;
        return ERR_OK;
    }
    if (strncasecmp(uri, "sip:", 4) != 0)
        return ERR_INVALID;
    *out = POLICY_TP_UDP;
    /* URI parameters start at the first ';' (before any '?' headers). */
    p = strchr(uri, ';');
    while (p) {
        const char *next = strchr(p + 1, ';');
        const char *q = strchr(p + 1, '?');

        n = next ? (size_t)(next - p - 1) : q ? (size_t)(q - p - 1) : strlen(p + 1);
        if (n >= 10 && !strncasecmp(p + 1, "transport=", 10)) {
            const char *v = p + 11;
            size_t vn = n - 10;

            if (vn == 3 && !strncasecmp(v, "udp", 3))
                *out = POLICY_TP_UDP;
            else if (vn == 3 && !strncasecmp(v, "tcp", 3))
                *out = POLICY_TP_TCP;
            else if (vn == 3 && !strncasecmp(v, "tls", 3))
                *out = POLICY_TP_TLS;
            else
                return ERR_INVALID;
        }
        p = next;
    }
    return ERR_OK;
}
