/* dtmfinfo: the key press a SIP INFO request carries (SIP.md section 4).
 * Pure; any thread. The body is the party's: untrusted input. */
#ifndef SFVOPI_SIP_DTMFINFO_H
#define SFVOPI_SIP_DTMFINFO_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

/* Bodies longer than this are refused unread. */
#define DTMFINFO_BODY_MAX 1024

enum dtmfinfo_kind {
    DTMFINFO_RELAY, /* application/dtmf-relay: "Signal=5\r\nDuration=160\r\n" */
    DTMFINFO_PLAIN, /* application/dtmf: "5" */
};

/* Reads the key of body: '0'-'9', '*', '#' or 'A'-'D' in *digit. The key
 * is that character (letters in either case) or its RFC 4733 event number
 * 0-15 (10 '*', 11 '#', 12-15 'A'-'D'); white space around it is allowed.
 * A dtmf-relay body names it in its one Signal line (name in any case,
 * space around '='); its other lines are ignored. ERR_INVALID for anything
 * else (no key, two Signal lines, another event), ERR_TOO_LARGE above
 * DTMFINFO_BODY_MAX. */
enum err dtmfinfo_parse(enum dtmfinfo_kind kind, const char *body, size_t len,
                        char *digit) WARN_UNUSED;

#endif
