/* callsm: the call state machine. Which event is accepted in which state is
 * one table (accept[]); what each does is one small handler. The end of a
 * call always goes through end_now / end_with / finish, so the hangup
 * webhook and FREE come out exactly once. */
#include "call/callsm.h"

#include <assert.h>
#include <stdio.h>

#define CAUSE_NORMAL 16  /* normal call clearing */
#define CAUSE_BUSY 17    /* user busy */
#define CAUSE_NO_USER 18 /* no user responding */
#define CAUSE_NO_ANSWER 19
#define CAUSE_TEMP_FAIL 41 /* temporary failure */
#define CAUSE_TIMER 102    /* recovery on timer expiry */
#define CAUSE_INTERWORKING 127

/* Causes are 1-127: three digits, the record's hangup_cause size. */
_Static_assert(CALL_CAUSE_MAX >= 3, "a Q.850 cause is up to three digits");

/* One row of the final-response table. prov_* apply after a 180/183. */
struct response_row {
    short code;
    unsigned char status;
    unsigned char cause;
    unsigned char prov_status;
    unsigned char prov_cause;
};

/* clang-format off */
#define ROW(c, st, ca) {c, CALL_STATUS_##st, ca, CALL_STATUS_##st, ca}
/* clang-format on */

static const struct response_row response_table[] = {
    /* CALLS.md section 4. */
    ROW(486, BUSY, 17),
    ROW(600, BUSY, 17),
    ROW(603, BUSY, 21),
    ROW(480, NO_ANSWER, 18),
    {408, CALL_STATUS_FAILED, 102, CALL_STATUS_NO_ANSWER, 102},
    ROW(404, FAILED, 1),
    ROW(485, FAILED, 1),
    ROW(604, FAILED, 1),
    ROW(484, FAILED, 28),
    ROW(401, FAILED, 21),
    ROW(403, FAILED, 21),
    ROW(407, FAILED, 21),
    ROW(488, FAILED, 88),
    ROW(606, FAILED, 88),
    ROW(500, FAILED, 41),
    ROW(503, FAILED, 41),
    ROW(502, FAILED, 38),
    ROW(504, FAILED, 102),
    /* The rest of RFC 3398 section 8.2.6.1 (487 has no mapping there). */
    ROW(400, FAILED, 41),
    ROW(402, FAILED, 21),
    ROW(405, FAILED, 63),
    ROW(406, FAILED, 79),
    ROW(410, FAILED, 22),
    ROW(413, FAILED, 127),
    ROW(414, FAILED, 127),
    ROW(415, FAILED, 79),
    ROW(416, FAILED, 127),
    ROW(420, FAILED, 127),
    ROW(421, FAILED, 127),
    ROW(423, FAILED, 127),
    ROW(481, FAILED, 41),
    ROW(482, FAILED, 25),
    ROW(483, FAILED, 25),
    ROW(487, FAILED, 127),
    ROW(501, FAILED, 79),
    ROW(505, FAILED, 127),
    ROW(513, FAILED, 127),
};

#undef ROW

#define BIT(s) (1u << (s))
#define ALIVE_AFTER_ANSWER                                                                         \
    (BIT(CALL_STATE_ANSWERED) | BIT(CALL_STATE_FALLBACK) | BIT(CALL_STATE_IN_PROGRESS))

/* The states in which each event may apply; handlers refine by direction
 * and flags. Anything else is ERR_CONFLICT. */
static const unsigned accept[] = {
    [CALLSM_EV_INVITE_SENT] = BIT(CALL_STATE_QUEUED),
    [CALLSM_EV_PROVISIONAL] = BIT(CALL_STATE_RINGING),
    [CALLSM_EV_FINAL_RESPONSE] = BIT(CALL_STATE_RINGING) | BIT(CALL_STATE_ENDING),
    [CALLSM_EV_ANSWERED] = BIT(CALL_STATE_RINGING) | BIT(CALL_STATE_ENDING),
    [CALLSM_EV_ACK] = BIT(CALL_STATE_CONFIRMING),
    [CALLSM_EV_CANCEL_RECEIVED] = BIT(CALL_STATE_RINGING) | BIT(CALL_STATE_CONFIRMING),
    [CALLSM_EV_BYE_RECEIVED] = ALIVE_AFTER_ANSWER | BIT(CALL_STATE_ENDING),
    [CALLSM_EV_ANSWER_RESULT] = BIT(CALL_STATE_ANSWERED),
    [CALLSM_EV_FALLBACK_RESULT] = BIT(CALL_STATE_FALLBACK),
    [CALLSM_EV_STREAM_ENDED] = BIT(CALL_STATE_IN_PROGRESS),
    [CALLSM_EV_LOCAL_HANGUP] = BIT(CALL_STATE_QUEUED) | BIT(CALL_STATE_RINGING) |
                               BIT(CALL_STATE_CONFIRMING) | ALIVE_AFTER_ANSWER,
    [CALLSM_EV_TIMEOUT] = BIT(CALL_STATE_QUEUED) | BIT(CALL_STATE_RINGING) |
                          BIT(CALL_STATE_CONFIRMING) | ALIVE_AFTER_ANSWER | BIT(CALL_STATE_ENDING),
    [CALLSM_EV_CLOSED] = BIT(CALL_STATE_ENDING),
    [CALLSM_EV_TICK] = ~BIT(CALL_STATE_ENDED),
};

#define N_EVENTS (sizeof(accept) / sizeof(accept[0]))

static void push(struct callsm_actions *out, enum callsm_action a)
{
    assert(out->n < CALLSM_ACTIONS_MAX);
    if (out->n < CALLSM_ACTIONS_MAX)
        out->v[out->n++] = a;
}

static int cause_or(int cause, int dflt)
{
    return cause >= 1 && cause <= 127 ? cause : dflt;
}

static void set_final(struct call_sm *sm, enum call_status status, int cause, int64_t now)
{
    sm->final_status = status;
    snprintf(sm->hangup_cause, sizeof(sm->hangup_cause), "%d", cause);
    sm->ended_at_ms = now;
}

/* ENDING or a direct end -> ENDED: the hangup webhook, then FREE. */
static void finish(struct call_sm *sm, struct callsm_actions *out)
{
    if (sm->stream_open) {
        push(out, CALLSM_ACT_CLOSE_STREAM);
        sm->stream_open = false;
    }
    sm->state = CALL_STATE_ENDED;
    sm->deadline_ms = CALLSM_NO_DEADLINE;
    sm->cancel_pending = false;
    if (sm->has_hangup_url)
        push(out, CALLSM_ACT_HANGUP_WEBHOOK);
    push(out, CALLSM_ACT_FREE);
}

/* An end that needs no more SIP from us. */
static void end_now(struct call_sm *sm, struct callsm_actions *out, enum call_status status,
                    int cause, int64_t now)
{
    set_final(sm, status, cause, now);
    finish(sm, out);
}

/* An end that needs our CANCEL (before the answer) or BYE (once a dialog
 * exists: after the answer, or after our 200 OK to an inbound INVITE). */
static void end_with(struct call_sm *sm, struct callsm_actions *out, enum call_status status,
                     int cause, int64_t now)
{
    bool dialog = sm->answered || sm->state == CALL_STATE_CONFIRMING;

    set_final(sm, status, cause, now);
    sm->cancel_pending = !dialog;
    push(out, dialog ? CALLSM_ACT_SEND_BYE : CALLSM_ACT_SEND_CANCEL);
    if (sm->stream_open) {
        push(out, CALLSM_ACT_CLOSE_STREAM);
        sm->stream_open = false;
    }
    sm->state = CALL_STATE_ENDING;
    sm->deadline_ms = now + CALLSM_CLOSE_GUARD_MS;
}

static void open_stream(struct call_sm *sm, struct callsm_actions *out)
{
    push(out, CALLSM_ACT_OPEN_STREAM);
    sm->stream_open = true;
    sm->state = CALL_STATE_IN_PROGRESS;
}

static enum err on_confirmed(struct call_sm *sm, struct callsm_actions *out);

static enum err on_answered(struct call_sm *sm, const struct callsm_event *ev,
                            struct callsm_actions *out)
{
    if (sm->state == CALL_STATE_ENDING) {
        /* A 200 OK that crossed our CANCEL: the dialog exists, close it. */
        if (!sm->cancel_pending)
            return ERR_CONFLICT;
        sm->cancel_pending = false;
        push(out, CALLSM_ACT_SEND_BYE);
        sm->deadline_ms = ev->now_ms + CALLSM_CLOSE_GUARD_MS;
        return ERR_OK;
    }
    sm->answered_at_ms = ev->now_ms;
    if (sm->direction == CALL_DIR_INBOUND) {
        /* Our 200 OK: nothing is sent to the customer until the caller's
         * ACK shows that the caller is there and got it (SIP.md section 1). */
        sm->state = CALL_STATE_CONFIRMING;
        sm->deadline_ms = ev->now_ms + CALLSM_ACK_TIMEOUT_MS;
        return ERR_OK;
    }
    return on_confirmed(sm, out);
}

/* The call is answered: the answer webhook, and the time limit from the
 * moment of the answer. */
static enum err on_confirmed(struct call_sm *sm, struct callsm_actions *out)
{
    sm->answered = true;
    sm->state = CALL_STATE_ANSWERED;
    sm->deadline_ms = sm->answered_at_ms + (int64_t)sm->call_time_limit_s * 1000;
    push(out, CALLSM_ACT_ANSWER_WEBHOOK);
    return ERR_OK;
}

static enum err on_final_response(struct call_sm *sm, const struct callsm_event *ev,
                                  struct callsm_actions *out)
{
    enum call_status status;
    int cause;

    if (ev->sip_code < 300)
        return on_answered(sm, ev, out);
    if (sm->state == CALL_STATE_ENDING) {
        /* The INVITE's answer to our CANCEL (487, or whatever won the race). */
        if (!sm->cancel_pending)
            return ERR_CONFLICT;
        finish(sm, out);
        return ERR_OK;
    }
    if (callsm_final_for_response(ev->sip_code, ev->cause, sm->ringing, &status, &cause) != ERR_OK)
        return ERR_INVALID;
    end_now(sm, out, status, cause, ev->now_ms);
    return ERR_OK;
}

static enum err on_result(struct call_sm *sm, const struct callsm_event *ev,
                          struct callsm_actions *out)
{
    if (ev->ok) {
        open_stream(sm, out);
    } else if (sm->state == CALL_STATE_ANSWERED && sm->has_fallback_url) {
        push(out, CALLSM_ACT_FALLBACK_WEBHOOK);
        sm->state = CALL_STATE_FALLBACK;
    } else {
        end_with(sm, out, CALL_STATUS_FAILED, CAUSE_TEMP_FAIL, ev->now_ms);
    }
    return ERR_OK;
}

static enum err on_tick(struct call_sm *sm, const struct callsm_event *ev,
                        struct callsm_actions *out)
{
    if (ev->now_ms < sm->deadline_ms)
        return ERR_OK;
    switch (sm->state) {
    case CALL_STATE_RINGING:
        end_with(sm, out, CALL_STATUS_NO_ANSWER, sm->ringing ? CAUSE_NO_ANSWER : CAUSE_NO_USER,
                 ev->now_ms);
        break;
    case CALL_STATE_CONFIRMING:
        /* No ACK in 64 * T1: the caller never got our answer. */
        end_with(sm, out, CALL_STATUS_FAILED, CAUSE_TIMER, ev->now_ms);
        break;
    case CALL_STATE_ANSWERED:
    case CALL_STATE_FALLBACK:
    case CALL_STATE_IN_PROGRESS:
        end_with(sm, out, CALL_STATUS_COMPLETED, CAUSE_NORMAL, ev->now_ms);
        break;
    case CALL_STATE_ENDING: finish(sm, out); break;
    case CALL_STATE_QUEUED:
    case CALL_STATE_ENDED: break;
    }
    return ERR_OK;
}

static enum err on_local_hangup(struct call_sm *sm, const struct callsm_event *ev,
                                struct callsm_actions *out)
{
    if (sm->state == CALL_STATE_QUEUED) {
        end_now(sm, out, CALL_STATUS_CANCELED, CAUSE_NORMAL, ev->now_ms);
    } else if (sm->answered) {
        end_with(sm, out, CALL_STATUS_COMPLETED, CAUSE_NORMAL, ev->now_ms);
    } else if (sm->direction == CALL_DIR_OUTBOUND || sm->state == CALL_STATE_CONFIRMING) {
        end_with(sm, out, CALL_STATUS_CANCELED, CAUSE_NORMAL, ev->now_ms);
    } else {
        push(out, CALLSM_ACT_SEND_REJECT);
        end_now(sm, out, CALL_STATUS_CANCELED, CAUSE_NORMAL, ev->now_ms);
    }
    return ERR_OK;
}

static enum err on_timeout(struct call_sm *sm, const struct callsm_event *ev,
                           struct callsm_actions *out)
{
    enum call_status status;
    int cause;

    switch (sm->state) {
    case CALL_STATE_QUEUED:
        end_now(sm, out, CALL_STATUS_FAILED, CAUSE_TIMER, ev->now_ms);
        return ERR_OK;
    case CALL_STATE_RINGING:
        /* RFC 3261 8.1.3.1: a transaction timeout is treated as a 408. */
        if (sm->direction != CALL_DIR_OUTBOUND)
            return ERR_CONFLICT;
        if (callsm_final_for_response(408, 0, sm->ringing, &status, &cause) != ERR_OK)
            return ERR_INTERNAL;
        end_now(sm, out, status, cause, ev->now_ms);
        return ERR_OK;
    case CALL_STATE_CONFIRMING:
        /* libre gave up retransmitting our 200 OK: the ACK never came. */
        end_with(sm, out, CALL_STATUS_FAILED, CAUSE_TIMER, ev->now_ms);
        return ERR_OK;
    case CALL_STATE_ANSWERED:
    case CALL_STATE_FALLBACK:
    case CALL_STATE_IN_PROGRESS:
        /* The dialog is dead (no ACK, no answer to a request): release it. */
        end_with(sm, out, CALL_STATUS_COMPLETED, CAUSE_TIMER, ev->now_ms);
        return ERR_OK;
    case CALL_STATE_ENDING: finish(sm, out); return ERR_OK;
    case CALL_STATE_ENDED: break;
    }
    return ERR_CONFLICT;
}

/* ERR_INVALID for fields the event type cannot carry. */
static enum err event_check(const struct callsm_event *ev)
{
    if ((unsigned)ev->type >= N_EVENTS)
        return ERR_INVALID;
    if (ev->type == CALLSM_EV_PROVISIONAL && (ev->sip_code < 100 || ev->sip_code > 199))
        return ERR_INVALID;
    if (ev->type == CALLSM_EV_FINAL_RESPONSE && (ev->sip_code < 200 || ev->sip_code > 699))
        return ERR_INVALID;
    return ERR_OK;
}

static enum err dispatch(struct call_sm *sm, const struct callsm_event *ev,
                         struct callsm_actions *out)
{
    bool outbound = sm->direction == CALL_DIR_OUTBOUND;

    switch (ev->type) {
    case CALLSM_EV_INVITE_SENT:
        if (!outbound)
            return ERR_CONFLICT;
        sm->started_at_ms = ev->now_ms;
        sm->state = CALL_STATE_RINGING;
        sm->deadline_ms = ev->now_ms + (int64_t)sm->ring_timeout_s * 1000;
        return ERR_OK;
    case CALLSM_EV_PROVISIONAL:
        if (!outbound)
            return ERR_CONFLICT;
        if ((ev->sip_code == 180 || ev->sip_code == 183) && !sm->ringing) {
            sm->ringing = true;
            if (sm->has_ring_url)
                push(out, CALLSM_ACT_RING_WEBHOOK);
        }
        return ERR_OK;
    case CALLSM_EV_FINAL_RESPONSE: return outbound ? on_final_response(sm, ev, out) : ERR_CONFLICT;
    case CALLSM_EV_ANSWERED:
        if (sm->state == CALL_STATE_ENDING && !outbound)
            return ERR_CONFLICT;
        return on_answered(sm, ev, out);
    case CALLSM_EV_ACK: return outbound ? ERR_CONFLICT : on_confirmed(sm, out);
    case CALLSM_EV_CANCEL_RECEIVED:
        if (outbound)
            return ERR_CONFLICT;
        end_now(sm, out, CALL_STATUS_CANCELED, cause_or(ev->cause, CAUSE_NORMAL), ev->now_ms);
        return ERR_OK;
    case CALLSM_EV_BYE_RECEIVED:
        if (sm->state == CALL_STATE_ENDING)
            finish(sm, out); /* BYEs crossed; the decided status stays */
        else
            end_now(sm, out, CALL_STATUS_COMPLETED, cause_or(ev->cause, CAUSE_NORMAL), ev->now_ms);
        return ERR_OK;
    case CALLSM_EV_ANSWER_RESULT:
    case CALLSM_EV_FALLBACK_RESULT: return on_result(sm, ev, out);
    case CALLSM_EV_STREAM_ENDED:
        if (!sm->stream_open)
            return ERR_CONFLICT;
        sm->stream_open = false;
        if (!ev->keep_call_alive)
            end_with(sm, out, CALL_STATUS_COMPLETED, CAUSE_NORMAL, ev->now_ms);
        return ERR_OK;
    case CALLSM_EV_LOCAL_HANGUP: return on_local_hangup(sm, ev, out);
    case CALLSM_EV_TIMEOUT: return on_timeout(sm, ev, out);
    case CALLSM_EV_CLOSED: finish(sm, out); return ERR_OK;
    case CALLSM_EV_TICK: return on_tick(sm, ev, out);
    }
    return ERR_INVALID;
}

enum err callsm_init(struct call_sm *sm, const struct callsm_config *cfg, int64_t now_ms)
{
    bool outbound;

    if (!sm || !cfg)
        return ERR_INVALID;
    if (cfg->direction != CALL_DIR_INBOUND && cfg->direction != CALL_DIR_OUTBOUND)
        return ERR_INVALID;
    if (cfg->ring_timeout_s < CALLSM_RING_TIMEOUT_MIN ||
        cfg->ring_timeout_s > CALLSM_RING_TIMEOUT_MAX)
        return ERR_INVALID;
    if (cfg->call_time_limit_s < CALLSM_TIME_LIMIT_MIN ||
        cfg->call_time_limit_s > CALLSM_TIME_LIMIT_MAX)
        return ERR_INVALID;
    outbound = cfg->direction == CALL_DIR_OUTBOUND;
    *sm = (struct call_sm){
        .direction = cfg->direction,
        .state = outbound ? CALL_STATE_QUEUED : CALL_STATE_RINGING,
        .final_status = outbound ? CALL_STATUS_QUEUED : CALL_STATUS_RINGING,
        .ring_timeout_s = cfg->ring_timeout_s,
        .call_time_limit_s = cfg->call_time_limit_s,
        .has_ring_url = outbound && cfg->has_ring_url,
        .has_fallback_url = cfg->has_fallback_url,
        .has_hangup_url = cfg->has_hangup_url,
        .started_at_ms = now_ms,
        .deadline_ms = CALLSM_NO_DEADLINE,
    };
    return ERR_OK;
}

enum err callsm_event_apply(struct call_sm *sm, const struct callsm_event *ev,
                            struct callsm_actions *out)
{
    enum err e;

    if (!out)
        return ERR_INVALID;
    out->n = 0;
    if (!sm || !ev)
        return ERR_INVALID;
    e = event_check(ev);
    if (e != ERR_OK)
        return e;
    if ((unsigned)sm->state > CALL_STATE_ENDED || !(accept[ev->type] & BIT(sm->state)))
        return ERR_CONFLICT;
    e = dispatch(sm, ev, out);
    if (e != ERR_OK)
        out->n = 0; /* handlers refuse before changing anything */
    return e;
}

enum call_status callsm_status(const struct call_sm *sm)
{
    switch (sm->state) {
    case CALL_STATE_QUEUED: return CALL_STATUS_QUEUED;
    case CALL_STATE_RINGING:
        if (sm->direction == CALL_DIR_OUTBOUND && !sm->ringing)
            return CALL_STATUS_QUEUED;
        return CALL_STATUS_RINGING;
    case CALL_STATE_CONFIRMING: return CALL_STATUS_RINGING;
    case CALL_STATE_ANSWERED:
    case CALL_STATE_FALLBACK:
    case CALL_STATE_IN_PROGRESS: return CALL_STATUS_IN_PROGRESS;
    case CALL_STATE_ENDING:
    case CALL_STATE_ENDED: break;
    }
    return sm->final_status;
}

int64_t callsm_deadline(const struct call_sm *sm)
{
    return sm->deadline_ms;
}

int64_t callsm_duration_s(const struct call_sm *sm)
{
    if (!sm->answered || sm->state < CALL_STATE_ENDING || sm->ended_at_ms < sm->answered_at_ms)
        return 0;
    return (sm->ended_at_ms - sm->answered_at_ms) / 1000;
}

enum err callsm_final_for_response(int sip_code, int reason_cause, bool had_provisional,
                                   enum call_status *status, int *cause)
{
    size_t i;

    if (sip_code < 300 || sip_code > 699)
        return ERR_INVALID;
    if (reason_cause == CAUSE_BUSY) {
        *status = CALL_STATUS_BUSY;
        *cause = CAUSE_BUSY;
        return ERR_OK;
    }
    for (i = 0; i < sizeof(response_table) / sizeof(response_table[0]); i++) {
        const struct response_row *r = &response_table[i];

        if (r->code != sip_code)
            continue;
        *status = (enum call_status)(had_provisional ? r->prov_status : r->status);
        *cause = had_provisional ? r->prov_cause : r->cause;
        return ERR_OK;
    }
    /* Unknown code: the carrier's own cause if it gave one, else the x00 of
     * its class (RFC 3261 8.1.3.2). */
    *status = CALL_STATUS_FAILED;
    if (reason_cause >= 1 && reason_cause <= 127) {
        *cause = reason_cause;
    } else if (sip_code >= 600) {
        *status = CALL_STATUS_BUSY;
        *cause = CAUSE_BUSY;
    } else if (sip_code >= 400) {
        *cause = CAUSE_TEMP_FAIL;
    } else {
        *cause = CAUSE_INTERWORKING;
    }
    return ERR_OK;
}

const char *callsm_state_name(enum call_state s)
{
    static const char *const names[] = {
        [CALL_STATE_QUEUED] = "QUEUED",         [CALL_STATE_RINGING] = "RINGING",
        [CALL_STATE_CONFIRMING] = "CONFIRMING", [CALL_STATE_ANSWERED] = "ANSWERED",
        [CALL_STATE_FALLBACK] = "FALLBACK",     [CALL_STATE_IN_PROGRESS] = "IN_PROGRESS",
        [CALL_STATE_ENDING] = "ENDING",         [CALL_STATE_ENDED] = "ENDED",
    };

    if ((unsigned)s >= sizeof(names) / sizeof(names[0]))
        return "";
    return names[s];
}
