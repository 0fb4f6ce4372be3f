/* netaddr: address parsing, formatting and CIDR matching. Everything here
 * is a pure function of its arguments; see netaddr.h for the rules. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "core/netaddr.h"

enum err policy_ip_from_bytes(const uint8_t *b, size_t len, struct policy_ip *out)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    memset(out, 0, sizeof(*out));
    if (len == 4) {
        memcpy(out->b, b, 4);
        return ERR_OK;
    }
    if (len != 16)
        return ERR_INVALID;
    if (memcmp(b, mapped, sizeof(mapped)) == 0) {
        memcpy(out->b, b + 12, 4);
        return ERR_OK;
    }
    out->v6 = 1;
    memcpy(out->b, b, 16);
    return ERR_OK;
}

enum err policy_ip_parse(const char *s, size_t len, struct policy_ip *out)
{
    char text[INET6_ADDRSTRLEN + 2];
    uint8_t b[16];

    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        s++;
        len -= 2;
        if (!memchr(s, ':', len))
            return ERR_INVALID;
    }
    if (len == 0 || len >= sizeof(text) || memchr(s, '\0', len))
        return ERR_INVALID;
    memcpy(text, s, len);
    text[len] = '\0';
    if (inet_pton(AF_INET, text, b) == 1)
        return policy_ip_from_bytes(b, 4, out);
    if (inet_pton(AF_INET6, text, b) == 1)
        return policy_ip_from_bytes(b, 16, out);
    return ERR_INVALID;
}

void policy_ip_format(const struct policy_ip *ip, char out[POLICY_IP_TEXT])
{
    if (!inet_ntop(ip->v6 ? AF_INET6 : AF_INET, ip->b, out, POLICY_IP_TEXT))
        snprintf(out, POLICY_IP_TEXT, "?");
}

bool policy_ip_equal(const struct policy_ip *a, const struct policy_ip *b)
{
    return a->v6 == b->v6 && memcmp(a->b, b->b, a->v6 ? 16 : 4) == 0;
}

bool policy_ip_loopback(const struct policy_ip *ip)
{
    static const uint8_t v6_loopback[16] = {[15] = 1};

    if (!ip->v6)
        return ip->b[0] == 127;
    return memcmp(ip->b, v6_loopback, 16) == 0;
}

static unsigned ip_bits(const struct policy_ip *ip)
{
    return ip->v6 ? 128 : 32;
}

/* True when the first prefix bits of a and b agree. */
static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned whole = prefix / 8, rest = prefix % 8;

    if (whole && memcmp(a, b, whole) != 0)
        return false;
    if (!rest)
        return true;
    return ((a[whole] ^ b[whole]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

static bool host_bits_zero(const struct policy_ip *ip, unsigned prefix)
{
    unsigned i;

    for (i = prefix; i < ip_bits(ip); i++) {
        if (ip->b[i / 8] & (0x80 >> (i % 8)))
            return false;
    }
    return true;
}

enum err allowlist_add(struct allowlist *l, const struct policy_ip *ip, unsigned prefix)
{
    size_t i;

    if (prefix > ip_bits(ip) || !host_bits_zero(ip, prefix))
        return ERR_INVALID;
    for (i = 0; i < l->n; i++) {
        if (l->v[i].prefix == prefix && policy_ip_equal(&l->v[i].ip, ip))
            return ERR_OK;
    }
    if (l->n == ALLOW_MAX)
        return ERR_TOO_LARGE;
    l->v[l->n].ip = *ip;
    l->v[l->n].prefix = (uint8_t)prefix;
    l->n++;
    return ERR_OK;
}

bool allowlist_match(const struct allowlist *l, const struct policy_ip *ip)
{
    size_t i;

    if (l->any)
        return true;
    for (i = 0; i < l->n; i++) {
        const struct allow_rule *r = &l->v[i];

        if (r->ip.v6 == ip->v6 && prefix_equal(r->ip.b, ip->b, r->prefix))
            return true;
    }
    return false;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* One item, NUL-terminated, already trimmed. */
static enum err parse_item(const char *item, struct policy_ip *ip, unsigned *prefix,
                           const char **why)
{
    char addr[64];
    const char *slash = strchr(item, '/');
    size_t alen = slash ? (size_t)(slash - item) : strlen(item);
    uint8_t b[16];

    if (alen >= sizeof(addr)) {
        *why = "is not an IP address";
        return ERR_INVALID;
    }
    memcpy(addr, item, alen);
    addr[alen] = '\0';
    if (alen >= 2 && addr[0] == '[' && addr[alen - 1] == ']') {
        memmove(addr, addr + 1, alen - 2);
        addr[alen - 2] = '\0';
        if (!strchr(addr, ':')) {
            *why = "is not an IP address";
            return ERR_INVALID;
        }
    }
    memset(ip, 0, sizeof(*ip));
    if (inet_pton(AF_INET, addr, b) == 1) {
        memcpy(ip->b, b, 4);
    } else if (inet_pton(AF_INET6, addr, b) == 1) {
        /* Written as IPv6, kept as IPv6 (even ::ffff:a.b.c.d), so that the
         * rule means what it says. */
        ip->v6 = 1;
        memcpy(ip->b, b, 16);
    } else {
        *why = "is not an IP address";
        return ERR_INVALID;
    }
    *prefix = ip_bits(ip);
    if (slash) {
        const char *p = slash + 1;
        unsigned v = 0;
        int digits = 0;

        while (*p >= '0' && *p <= '9' && digits < 4) {
            v = v * 10 + (unsigned)(*p - '0');
            digits++;
            p++;
        }
        if (!digits || *p || (digits > 1 && slash[1] == '0') || v > ip_bits(ip)) {
            *why = ip->v6 ? "has a prefix length that is not 0 to 128"
                          : "has a prefix length that is not 0 to 32";
            return ERR_INVALID;
        }
        *prefix = v;
    }
    if (!host_bits_zero(ip, *prefix)) {
        *why = "has host bits set after its prefix length";
        return ERR_INVALID;
    }
    return ERR_OK;
}

enum err allowlist_parse(const char *s, struct allowlist *out, char *why, size_t whysz)
{
    struct allowlist l = {0};
    const char *p = s, *reason = NULL;
    size_t len = strlen(s);

    if (len > ALLOW_TEXT_MAX) {
        snprintf(why, whysz, "is longer than %d bytes", ALLOW_TEXT_MAX);
        return ERR_INVALID;
    }
    for (;;) {
        const char *comma = strchr(p, ','), *end = comma ? comma : p + strlen(p);
        char item[ALLOW_TEXT_MAX + 1];
        struct policy_ip ip;
        unsigned prefix;
        size_t n;
        enum err e;

        while (p < end && is_space(*p))
            p++;
        while (end > p && is_space(end[-1]))
            end--;
        n = (size_t)(end - p);
        memcpy(item, p, n);
        item[n] = '\0';
        if (!n) {
            snprintf(why, whysz, "has an empty item");
            return ERR_INVALID;
        }
        if (strcmp(item, "any") == 0) {
            l.any = true;
        } else {
            if (parse_item(item, &ip, &prefix, &reason) != ERR_OK) {
                snprintf(why, whysz, "item '%.64s' %s", item, reason);
                return ERR_INVALID;
            }
            e = allowlist_add(&l, &ip, prefix);
            if (e == ERR_TOO_LARGE) {
                snprintf(why, whysz, "has more than %d items", ALLOW_MAX);
                return ERR_INVALID;
            }
            if (e != ERR_OK) {
                snprintf(why, whysz, "item '%.64s' is not a valid block", item);
                return ERR_INVALID;
            }
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    *out = l;
    return ERR_OK;
}
