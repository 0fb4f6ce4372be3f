/* xheaders: a call's X- SIP headers as plain text (AGENT.md section 2):
 * those of an inbound INVITE, which the stream's start carries, and those
 * a POST /sfvopi/calls asks for on the outbound INVITE. One type for both
 * so that sip/, call/ and api/ agree on the caps. Pure; thread-safe. */
#ifndef SFVOPI_CORE_XHEADERS_H
#define SFVOPI_CORE_XHEADERS_H

#include <stdbool.h>
#include <stddef.h>

/* At most this many headers a call: beyond it an INVITE's are dropped and
 * a request's are refused. */
#define XHEADERS_MAX 16
/* A name: "X-" and at most 62 more bytes. */
#define XHEADER_NAME_MAX 64
/* A value, in bytes: an inbound one is cut to it, a requested one refused. */
#define XHEADER_VALUE_MAX 256

struct xheader {
    char name[XHEADER_NAME_MAX + 1];
    char value[XHEADER_VALUE_MAX + 1];
};

/* In the order they came; an inbound INVITE's names are distinct without
 * regard to case (sip_incoming_xheaders). */
struct xheaders {
    struct xheader h[XHEADERS_MAX];
    size_t n;
};

/* True when s[0..len) matches ^X-[A-Za-z0-9-]{1,62}$ (an upper-case X, as
 * the contract writes it): the names a POST /sfvopi/calls may ask for. */
bool xheader_name_valid(const char *s, size_t len);

/* True when s[0..len) is at most XHEADER_VALUE_MAX bytes of printable
 * ASCII (0x20-0x7E): nothing that could end or fold a header line. */
bool xheader_value_valid(const char *s, size_t len);

/* True when list holds a header named name[0..len), in any case. */
bool xheaders_has(const struct xheaders *list, const char *name, size_t len);

#endif
