/* pace: a waiting outbound call's request as the queue keeps it
 * (AGENT.md section 6). POST /sfvopi/calls validates the request once; the
 * node that later starts the call, maybe another one, reads it back from
 * this text. JSON, so that nodes of different builds agree on it. No
 * state, no threads. */
#ifndef SFVOPI_CALL_PACE_H
#define SFVOPI_CALL_PACE_H

#include <stddef.h>

#include "call/outbound.h"
#include "core/err.h"

/* Writes req as compact JSON into out (cap bytes, NUL-terminated).
 * ERR_TOO_LARGE when it does not fit, ERR_NOMEM. Thread-safe. */
enum err pace_req_encode(const struct engine_outbound *req, char *out, size_t cap) WARN_UNUSED;

/* Reads text written by pace_req_encode into *req. ERR_INVALID for text
 * that is not such a request (a field missing, of the wrong type or too
 * long for its field): the queue's text is checked like any input.
 * Thread-safe. */
enum err pace_req_decode(const char *text, struct engine_outbound *req) WARN_UNUSED;

#endif
