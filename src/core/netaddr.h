/* netaddr: IPv4/IPv6 addresses and lists of addresses and CIDR blocks as
 * plain bytes: parsing, formatting and matching. Pure: no sockets, no
 * clock, no allocation, so that the SIP allowlist (--sip-allow) and the
 * HTTP server's trusted proxies (--trusted-proxy) share one tested parser.
 * A built list may be read by many threads at once. */
#ifndef SFVOPI_CORE_NETADDR_H
#define SFVOPI_CORE_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* An IPv4 or IPv6 address. IPv4 is kept as itself, never as ::ffff:a.b.c.d,
 * so that an IPv4 rule matches an IPv4 client seen on a dual-stack socket. */
struct policy_ip {
    uint8_t v6; /* 0: IPv4 in b[0..3]; 1: IPv6 in b[0..15] */
    uint8_t b[16];
};

/* Text of the longest address plus a prefix ("ffff:...:ffff/128"), NUL. */
#define POLICY_IP_TEXT 48

/* From the bytes of a sockaddr's address: 4 bytes are IPv4, 16 bytes IPv6
 * (an IPv4-mapped IPv6 address becomes IPv4). ERR_INVALID for any other
 * length. */
enum err policy_ip_from_bytes(const uint8_t *b, size_t len, struct policy_ip *out) WARN_UNUSED;
/* One address as text, s[0..len) (no NUL needed): IPv4, or IPv6 with or
 * without brackets; an IPv4-mapped IPv6 address becomes IPv4, as from a
 * socket. ERR_INVALID for anything else (ports and prefixes included). */
enum err policy_ip_parse(const char *s, size_t len, struct policy_ip *out) WARN_UNUSED;
/* "192.0.2.1" or "2001:db8::1" into out (POLICY_IP_TEXT bytes). */
void policy_ip_format(const struct policy_ip *ip, char out[POLICY_IP_TEXT]);
bool policy_ip_equal(const struct policy_ip *a, const struct policy_ip *b);
/* True for a loopback address: 127.0.0.0/8 or ::1 (an IPv4-mapped one is
 * kept as IPv4, so ::ffff:127.0.0.1 is loopback too). */
bool policy_ip_loopback(const struct policy_ip *ip);

/* --- address lists (--sip-allow, --trusted-proxy) --- */

/* Most rules one list holds (for --sip-allow: the operator's plus those
 * resolved from the trunk, registrar and outbound proxy). */
#define ALLOW_MAX 64
/* Longest list text accepted. */
#define ALLOW_TEXT_MAX 4096

struct allow_rule {
    struct policy_ip ip; /* the network, host bits zero */
    uint8_t prefix;      /* 0-32 (IPv4) or 0-128 (IPv6) */
};

struct allowlist {
    bool any; /* every address, IPv4 and IPv6 */
    size_t n;
    struct allow_rule v[ALLOW_MAX];
};

/* Parses "any" or a comma-separated list of IPv4/IPv6 addresses and CIDR
 * blocks ("192.0.2.10, 198.51.100.0/24, 2001:db8::/32"; spaces around items
 * are ignored; an IPv6 address may stand in brackets). A block with host
 * bits set (10.0.0.1/8) is refused rather than silently widened or
 * narrowed. On ERR_INVALID (also for an empty item, a list over ALLOW_MAX
 * rules or ALLOW_TEXT_MAX bytes) why holds a one-line reason naming the bad
 * item and *out is untouched. */
enum err allowlist_parse(const char *s, struct allowlist *out, char *why, size_t whysz) WARN_UNUSED;
/* Adds one rule (a host when prefix is 32 or 128). ERR_INVALID for a prefix
 * out of range or host bits set, ERR_TOO_LARGE when the list is full; a
 * rule already present is not added twice (ERR_OK). */
enum err allowlist_add(struct allowlist *l, const struct policy_ip *ip,
                       unsigned prefix) WARN_UNUSED;
/* True when ip lies in any rule of l. */
bool allowlist_match(const struct allowlist *l, const struct policy_ip *ip);

#endif
