/* telemetry: the call engine's counters for /metrics (SIP.md section 6):
 * calls alive and ended, webhook requests and their durations, the RTP
 * jitter of each call, and the longest audio stream send queue. Counted
 * with relaxed atomics from any thread (the engine's, and an HTTP worker
 * whose call could not be handed over); read by the scrape. Process-wide,
 * like the carrier edge's counters. */
#ifndef SFVOPI_CALL_TELEMETRY_H
#define SFVOPI_CALL_TELEMETRY_H

#include <stdbool.h>
#include <stdint.h>

#include "call/webhook.h"
#include "http/metrics.h"
#include "store/store.h"

/* The closed set of webhook outcomes. */
enum telemetry_outcome {
    TELEMETRY_OK,         /* HTTP 200 in time */
    TELEMETRY_HTTP_ERROR, /* an answer, but not 200 */
    TELEMETRY_TIMEOUT,    /* no outcome within the kind's timeout */
    TELEMETRY_ERROR,      /* anything else: refused address, resolve, connect, TLS, body... */
};

/* deliver's error text (NULL when ok) as an outcome. */
enum telemetry_outcome telemetry_outcome_of(const char *error);

/* A call came to exist in the engine. */
void telemetry_call_begin(void);
/* The call is gone: counted as ended when rec's status is final (by its
 * direction and status), and its party's jitter observed when has_jitter. */
void telemetry_call_end(const struct store_call *rec, bool has_jitter);
/* A webhook request of kind finished with outcome after dur_ns. */
void telemetry_webhook(enum webhook_kind kind, enum telemetry_outcome outcome, int64_t dur_ns);

/* Fills the call fields of out (everything but the carrier edge's). */
void telemetry_read(struct metrics_calls *out);

#endif
