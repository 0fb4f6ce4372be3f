/* callsm: the life of one call (CALLS.md section 4) as a pure state machine.
 * The engine feeds it events (SIP, webhook results, stream end, timer ticks)
 * with the monotonic time passed in; it answers with the actions to carry
 * out. No sockets, no threads, no clock reads, no allocation. One call_sm
 * per call, owned by the caller; not thread-safe (one owner at a time). */
#ifndef SFVOPI_CALL_CALLSM_H
#define SFVOPI_CALL_CALLSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "call/call.h"
#include "core/err.h"
#include "store/store.h"

#define CALLSM_RING_TIMEOUT_MIN 1
#define CALLSM_RING_TIMEOUT_MAX 600
#define CALLSM_TIME_LIMIT_MIN 1
#define CALLSM_TIME_LIMIT_MAX 86400
/* How long to wait for our BYE or CANCEL to complete before the call is
 * treated as ended anyway: 64 * T1, the SIP non-INVITE transaction limit. */
#define CALLSM_CLOSE_GUARD_MS 32000
/* How long an inbound call waits for the caller's ACK of our 200 OK: 64 *
 * T1, as long as libre retransmits the 200 OK (RFC 3261 timer H). */
#define CALLSM_ACK_TIMEOUT_MS 32000
/* deadline_ms when no timer runs. */
#define CALLSM_NO_DEADLINE INT64_MAX
/* Most actions one event can ask for. */
#define CALLSM_ACTIONS_MAX 6

/* The engine's view. The public call_status is derived (callsm_status). */
enum call_state {
    CALL_STATE_QUEUED,      /* outbound, the INVITE not sent yet */
    CALL_STATE_RINGING,     /* INVITE sent (outbound) or received (inbound), not answered */
    CALL_STATE_CONFIRMING,  /* inbound: our 200 OK is out, the caller's ACK not yet in */
    CALL_STATE_ANSWERED,    /* answered, awaiting the answer webhook */
    CALL_STATE_FALLBACK,    /* answer webhook failed, awaiting the fallback webhook */
    CALL_STATE_IN_PROGRESS, /* a valid stream was given: streaming (or kept alive) */
    CALL_STATE_ENDING,      /* final status decided; our BYE or CANCEL still open */
    CALL_STATE_ENDED,       /* nothing more happens; the engine frees the call */
};

enum callsm_event_type {
    /* Outbound: the INVITE went to the trunk. Starts the ring timer. */
    CALLSM_EV_INVITE_SENT,
    /* Outbound: a provisional response (sip_code 100-199). Only 180 and 183
     * count as ringing; the first one fires the ring webhook. */
    CALLSM_EV_PROVISIONAL,
    /* Outbound: a final response to the INVITE (sip_code 200-699; 2xx is
     * the same as CALLSM_EV_ANSWERED), cause from its Reason header. */
    CALLSM_EV_FINAL_RESPONSE,
    /* Outbound: the callee's 200 OK. Inbound: our 200 OK went out; the call
     * is answered only once the caller's ACK confirms it (CALLSM_EV_ACK). */
    CALLSM_EV_ANSWERED,
    /* Inbound: the caller's ACK of our 200 OK. Fires the answer webhook;
     * answered_at stays the moment of the 200 OK. */
    CALLSM_EV_ACK,
    /* Inbound: the caller's CANCEL before the answer, or its BYE before its
     * ACK (cause from Reason). */
    CALLSM_EV_CANCEL_RECEIVED,
    /* The party's BYE after the answer (cause from Reason). */
    CALLSM_EV_BYE_RECEIVED,
    /* The answer webhook's outcome: ok = HTTP 200 with a valid stream. */
    CALLSM_EV_ANSWER_RESULT,
    /* The fallback webhook's outcome, same meaning. */
    CALLSM_EV_FALLBACK_RESULT,
    /* The audio stream ended (closed, dropped, failed to connect, timed
     * out); keep_call_alive as the stream JSON said. */
    CALLSM_EV_STREAM_ENDED,
    /* The engine ends the call itself: shutdown, app deleted, hangup asked
     * for. CANCELED "16" before the answer, COMPLETED "16" after. */
    CALLSM_EV_LOCAL_HANGUP,
    /* A SIP transaction of the call timed out with no response at all. */
    CALLSM_EV_TIMEOUT,
    /* Our BYE or CANCEL transaction finished (any response or its timeout). */
    CALLSM_EV_CLOSED,
    /* Time passed: fires the timer when now_ms >= the deadline. */
    CALLSM_EV_TICK,
};

struct callsm_event {
    enum callsm_event_type type;
    int64_t now_ms; /* monotonic milliseconds */
    int sip_code;   /* PROVISIONAL, FINAL_RESPONSE */
    /* Q.850 cause of a Reason header (FINAL_RESPONSE, CANCEL_RECEIVED,
     * BYE_RECEIVED): 1-127; 0 or anything outside 1-127 means none. */
    int cause;
    bool ok;              /* ANSWER_RESULT, FALLBACK_RESULT */
    bool keep_call_alive; /* STREAM_ENDED */
};

enum callsm_action {
    CALLSM_ACT_RING_WEBHOOK,     /* outbound, first 180/183, a ring URL is set */
    CALLSM_ACT_SEND_CANCEL,      /* outbound, before the answer */
    CALLSM_ACT_SEND_REJECT,      /* inbound, before the answer: a final error response */
    CALLSM_ACT_SEND_BYE,         /* after the answer (also a 200 OK that crossed our CANCEL) */
    CALLSM_ACT_ANSWER_WEBHOOK,   /* call answer_url */
    CALLSM_ACT_FALLBACK_WEBHOOK, /* call fallback_answer_url */
    CALLSM_ACT_OPEN_STREAM,      /* connect to the stream URL of the successful reply */
    CALLSM_ACT_CLOSE_STREAM,     /* close the WebSocket with code 1000 */
    CALLSM_ACT_HANGUP_WEBHOOK,   /* once, the call fully ended, a hangup URL applies */
    CALLSM_ACT_FREE,             /* last action of a call: nothing more will happen */
};

/* What one event asks of the engine, to be carried out in order. */
struct callsm_actions {
    size_t n;
    enum callsm_action v[CALLSM_ACTIONS_MAX];
};

struct callsm_config {
    enum call_direction direction;
    unsigned ring_timeout_s;    /* 1-600 (checked for inbound too, unused there) */
    unsigned call_time_limit_s; /* 1-86400, counted from the answer */
    bool has_ring_url;          /* ignored for inbound: no ring webhook */
    bool has_fallback_url;
    bool has_hangup_url;
};

/* One call. Caller-embedded; read the fields freely, change them only
 * through this module. Times are monotonic ms (the engine converts them to
 * wall time for webhooks); whether a moment happened is told by the flags
 * (answered) and the state (ended_at_ms from ENDING on), never by 0. */
struct call_sm {
    enum call_direction direction;
    enum call_state state;
    enum call_status final_status; /* valid from ENDING on */
    unsigned ring_timeout_s;
    unsigned call_time_limit_s;
    bool has_ring_url;
    bool has_fallback_url;
    bool has_hangup_url;
    bool ringing;        /* a 180/183 came (outbound) */
    bool answered;       /* answered (inbound: the ACK came); answered_at_ms is set */
    bool stream_open;    /* OPEN_STREAM asked for and no STREAM_ENDED yet */
    bool cancel_pending; /* ENDING: our CANCEL is open (else our BYE) */
    int64_t started_at_ms;
    int64_t answered_at_ms; /* from CONFIRMING on (inbound: our 200 OK) */
    int64_t ended_at_ms;    /* the moment the end was decided; valid from ENDING on */
    int64_t deadline_ms;    /* next timer, CALLSM_NO_DEADLINE when none */
    char hangup_cause[CALL_CAUSE_MAX + 1]; /* "" until ENDING */
};

/* Starts a call at now_ms: outbound in QUEUED (started_at is reset when the
 * INVITE goes out), inbound in RINGING (the INVITE was just received; the
 * engine sends 180 then 200). No timer runs yet. ERR_INVALID when
 * ring_timeout_s or call_time_limit_s is out of range or the direction is
 * unknown; *sm is then untouched. */
enum err callsm_init(struct call_sm *sm, const struct callsm_config *cfg,
                     int64_t now_ms) WARN_UNUSED;

/* Applies one event. out->n is set to the number of actions (0 on error).
 * ERR_OK: applied (possibly with no action, e.g. a TICK before the deadline
 * or a 1xx other than 180/183). ERR_CONFLICT: the event makes no sense in
 * the current state (a 180 after the answer, a second BYE, anything after
 * ENDED); nothing changed, the engine should log it and go on.
 * ERR_INVALID: a malformed event (unknown type, sip_code out of range for
 * the type); nothing changed. Never aborts on any event content.
 *
 * Ending: an end decided with our BYE or CANCEL still open goes to ENDING
 * (the final status is fixed there) and to ENDED on CLOSED, TIMEOUT, the
 * party's BYE, the INVITE's final response (after a CANCEL) or the close
 * guard timer; an end that needs no more SIP goes straight to ENDED.
 * Entering ENDED yields HANGUP_WEBHOOK (when a hangup URL is set) and FREE,
 * exactly once. A 200 OK that crosses our CANCEL gets a BYE; the decided
 * status stays. Events that arrive when a deadline has passed are applied
 * as they come: the engine must deliver TICK at deadline_ms. */
enum err callsm_event_apply(struct call_sm *sm, const struct callsm_event *ev,
                            struct callsm_actions *out) WARN_UNUSED;

/* The public call_status now: QUEUED until the first 180/183 (outbound),
 * RINGING until the answer (from the start for inbound), IN_PROGRESS after
 * it, the final status from ENDING on. */
enum call_status callsm_status(const struct call_sm *sm);

/* The next time the engine must deliver a TICK, CALLSM_NO_DEADLINE if none. */
int64_t callsm_deadline(const struct call_sm *sm);

/* Whole seconds from the answer to the end (rounded down); 0 when never
 * answered, not ended yet, or the clock went backwards. */
int64_t callsm_duration_s(const struct call_sm *sm);

/* The final status and Q.850 cause of an outbound INVITE's final response
 * (sip_code 300-699), the table of CALLS.md section 4 extended with RFC 3398
 * section 8.2.6.1:
 *   any code with Reason cause 17, 486, 600: BUSY 17; 603: BUSY 21;
 *   480: NO_ANSWER 18; 408: NO_ANSWER 102 after a 180/183, else FAILED 102;
 *   404, 485, 604: FAILED 1; 484: 28; 401, 402, 403, 407: 21; 488, 606: 88;
 *   500, 503, 400, 481: 41; 502: 38; 504: 102; 405: 63; 406, 415, 501: 79;
 *   410: 22; 482, 483: 25; 413, 414, 416, 420, 421, 423, 487, 505, 513: 127.
 * Any other code (not in the table) is FAILED with the Reason cause when one
 * is given, else its class's x00 cause as RFC 3261 8.1.3.2 says to treat
 * unknown codes: 4xx and 5xx 41; 6xx as 600 (BUSY 17); 3xx (redirects are
 * never followed) 127. ERR_INVALID for a code outside 300-699. Pure. */
enum err callsm_final_for_response(int sip_code, int reason_cause, bool had_provisional,
                                   enum call_status *status, int *cause) WARN_UNUSED;

/* "QUEUED", "RINGING", "ANSWERED", ... for logs: static; "" if unknown. */
const char *callsm_state_name(enum call_state s);

#endif
