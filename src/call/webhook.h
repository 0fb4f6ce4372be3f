/* webhook: what the engine tells the customer's server about a call
 * (CALLS.md section 5): the ring / answer / hangup payloads as a JSON body
 * (POST) or a query string (GET), the request headers, and the address
 * rules a webhook or stream host must pass once resolved. Pure: no
 * sockets, no DNS, no clock. Thread-safe (no shared state). */
#ifndef SFVOPI_CALL_WEBHOOK_H
#define SFVOPI_CALL_WEBHOOK_H

#include <stdbool.h>
#include <stdint.h>

#include "call/call.h"
#include "core/buf.h"
#include "core/err.h"
#include "store/store.h"

/* Headers of one delivery, at most. */
#define WEBHOOK_HEADERS_MAX 4

enum webhook_kind {
    WEBHOOK_RING,
    WEBHOOK_ANSWER,
    WEBHOOK_HANGUP,
};

/* The payloads are built from the call's record (struct store_call,
 * CALLS.md section 8), which holds every field they carry: call_uuid,
 * request_uuid ("" for inbound calls), from, to, direction and status as
 * the names of call/call.h, started_at, answered_at (0: never answered),
 * ended_at, hangup_cause and the rtp_ statistics. Times are milliseconds
 * since the epoch. The other fields of the record are not read. */

/* Whole seconds from answered_at to ended_at (rounded down); 0 when the
 * call was never answered or the clock went backwards. Computed from the
 * two times the payload carries, so that it always agrees with them. */
int64_t webhook_duration(const struct store_call *c);

/* rtp_jitter_ms as the payloads and records write it: milliseconds to the
 * microsecond, as the shortest exact decimal ("1.21", "0.007", "3"), from
 * the record's microseconds (negative: 0). */
#define WEBHOOK_JITTER_TEXT 32
void webhook_jitter_ms(int64_t us, char out[WEBHOOK_JITTER_TEXT]);

/* Appends the payload of kind for c to out as one flat JSON object, fields
 * in the order of section 5's table, absent (never null) when they do not
 * apply: request_uuid only when non-empty; ring: started_at; answer:
 * answered_at; hangup: started_at, answer_at (only if answered), ended_at,
 * duration (a JSON number), hangup_cause (a string), then the party's
 * RTP: rtp_packets_received, rtp_packets_lost (numbers) and rtp_jitter_ms
 * (a number, webhook_jitter_ms). call_status is
 * RINGING for ring, IN_PROGRESS for answer and c->status for hangup.
 * ERR_INVALID for a payload the spec forbids (ring for an inbound call,
 * hangup with a status that is not final, a direction or status that is
 * not one of call/call.h's names); ERR_TOO_LARGE/ERR_NOMEM from the
 * buffer. out may hold a partial payload on error. */
enum err webhook_body_json(enum webhook_kind kind, const struct store_call *c,
                           struct buf *out) WARN_UNUSED;

/* Appends the same fields as a query string "k=v&k=v" (no leading '?'),
 * numbers as decimal text, each key and value percent-encoded (RFC 3986
 * unreserved characters kept, every other byte as %XX upper case, so '+'
 * is %2B and ':' %3A). Errors as webhook_body_json. */
enum err webhook_query_string(enum webhook_kind kind, const struct store_call *c,
                              struct buf *out) WARN_UNUSED;

/* Appends the GET URL: url without its fragment (never sent anyway), then
 * '?' when it has no query yet, '&' when it has one that does not already
 * end in '&', nothing when it ends in '?' or '&', then the query string.
 * Errors as webhook_body_json. */
enum err webhook_get_url(const char *url, enum webhook_kind kind, const struct store_call *c,
                         struct buf *out) WARN_UNUSED;

/* Percent-encodes s onto out as described for webhook_query_string. */
enum err webhook_pct_encode(const char *s, struct buf *out) WARN_UNUSED;

struct webhook_header {
    const char *name;  /* static */
    const char *value; /* static, or inside struct webhook_headers */
};

struct webhook_headers {
    int n;
    struct webhook_header h[WEBHOOK_HEADERS_MAX];
    char user_agent[64];
};

/* Fills hs with the request headers of one delivery, in this order:
 * User-Agent "sfvopi/<version>", Content-Type "application/json" (POST
 * only), X-Sfvopi-Call-Uuid, X-Sfvopi-Delivery (the same id for an answer
 * request and its fallback; the caller makes it). hs->h[i].value points
 * into hs, c or delivery_id, which must outlive hs. ERR_INVALID when a
 * value is empty, too long or holds a byte outside visible ASCII (no
 * header injection). */
enum err webhook_headers_make(bool post, const char *version, const struct store_call *c,
                              const char *delivery_id, struct webhook_headers *hs) WARN_UNUSED;

#endif
