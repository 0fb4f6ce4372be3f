/* addrclass: what kind of address a numeric IP address is (public,
 * loopback, private, link-local), for the rules on which hosts webhooks and
 * streams may reach. Pure; thread-safe. */
#ifndef SFVOPI_CORE_ADDRCLASS_H
#define SFVOPI_CORE_ADDRCLASS_H

#include <stdbool.h>

/* What a resolved address is, for the webhook and stream host rules (CALLS.md section 5). */
enum addr_class {
    ADDR_PUBLIC,
    ADDR_LOOPBACK,   /* 127/8, ::1; also 0/8 and :: (they reach this host) */
    ADDR_PRIVATE,    /* 10/8, 172.16/12, 192.168/16, fc00::/7 */
    ADDR_LINK_LOCAL, /* 169.254/16, fe80::/10 */
    ADDR_INVALID,    /* not a numeric address */
};

/* Classifies a numeric IPv4 (dotted quad) or IPv6 address, optionally in
 * brackets and with a "%zone" suffix. IPv4-mapped (::ffff:a.b.c.d),
 * IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) addresses are
 * classified by the IPv4 address they carry. */
enum addr_class addr_classify(const char *ip);

/* Same, for a raw address: family 4 with 4 bytes, 6 with 16 bytes (network
 * order). Any other family is INVALID. */
enum addr_class addr_classify_raw(int family, const unsigned char *addr);

/* True when ip must never be called: link-local (cloud metadata), or not a
 * numeric address at all (fail closed). */
bool addr_blocked(const char *ip);

/* True when ip is refused under --deny-private-urls: loopback, private,
 * link-local, or not numeric. */
bool addr_private(const char *ip);

/* The whole rule: blocked, or private while deny_private is set. */
bool addr_refused(const char *ip, bool deny_private);

#endif
