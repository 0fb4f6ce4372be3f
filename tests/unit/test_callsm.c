/* test_callsm: the call state machine (CALLS.md section 4): every row of the
 * status/cause table, the outbound and inbound lives of a call, timers,
 * webhook fallback, stream end, and events that do not fit the state. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "call/callsm.h"

#define END (-1) /* closes an expected action list */

static struct callsm_actions acts;

static struct callsm_config config(enum call_direction dir)
{
    return (struct callsm_config){
        .direction = dir,
        .ring_timeout_s = 30,
        .call_time_limit_s = 3600,
        .has_ring_url = true,
        .has_fallback_url = true,
        .has_hangup_url = true,
    };
}

static enum err send_ev(struct call_sm *sm, enum callsm_event_type type, int64_t now)
{
    struct callsm_event ev = {.type = type, .now_ms = now};

    return callsm_event_apply(sm, &ev, &acts);
}

static enum err send_code(struct call_sm *sm, enum callsm_event_type type, int code, int cause,
                          int64_t now)
{
    struct callsm_event ev = {.type = type, .now_ms = now, .sip_code = code, .cause = cause};

    return callsm_event_apply(sm, &ev, &acts);
}

static enum err send_ok(struct call_sm *sm, enum callsm_event_type type, bool ok, int64_t now)
{
    struct callsm_event ev = {.type = type, .now_ms = now, .ok = ok, .keep_call_alive = ok};

    return callsm_event_apply(sm, &ev, &acts);
}

/* acts must hold exactly the listed actions, in order, closed by END. */
static void expect_acts(int first, ...)
{
    va_list ap;
    size_t i = 0;
    int a = first;

    va_start(ap, first);
    while (a != END) {
        assert_true(i < acts.n);
        assert_int_equal(acts.v[i], a);
        i++;
        a = va_arg(ap, int);
    }
    va_end(ap);
    assert_int_equal(acts.n, i);
}

static void expect_final(const struct call_sm *sm, enum call_status status, const char *cause)
{
    assert_int_equal(callsm_status(sm), status);
    assert_string_equal(sm->hangup_cause, cause);
}

/* An outbound call at t=1000: INVITE sent, optionally a 180. */
static void outbound_ringing(struct call_sm *sm, const struct callsm_config *cfg, bool ring)
{
    assert_int_equal(callsm_init(sm, cfg, 500), ERR_OK);
    assert_int_equal(send_ev(sm, CALLSM_EV_INVITE_SENT, 1000), ERR_OK);
    expect_acts(END);
    if (ring) {
        assert_int_equal(send_code(sm, CALLSM_EV_PROVISIONAL, 180, 0, 2000), ERR_OK);
        expect_acts(cfg->has_ring_url ? CALLSM_ACT_RING_WEBHOOK : END, END);
    }
}

/* An outbound call answered at t=5000 whose answer webhook gave a stream. */
static void outbound_streaming(struct call_sm *sm, const struct callsm_config *cfg)
{
    outbound_ringing(sm, cfg, true);
    assert_int_equal(send_ev(sm, CALLSM_EV_ANSWERED, 5000), ERR_OK);
    expect_acts(CALLSM_ACT_ANSWER_WEBHOOK, END);
    assert_int_equal(send_ok(sm, CALLSM_EV_ANSWER_RESULT, true, 5100), ERR_OK);
    expect_acts(CALLSM_ACT_OPEN_STREAM, END);
    assert_int_equal(sm->state, CALL_STATE_IN_PROGRESS);
}

static void status_cause_table(void **state)
{
    static const struct {
        int code, reason;
        bool prov;
        enum call_status status;
        int cause;
    } rows[] = {
        {486, 0, false, CALL_STATUS_BUSY, 17},
        {600, 0, true, CALL_STATUS_BUSY, 17},
        {404, 17, false, CALL_STATUS_BUSY, 17}, /* any final with Reason cause 17 */
        {503, 17, true, CALL_STATUS_BUSY, 17},
        {603, 0, false, CALL_STATUS_BUSY, 21},
        {480, 0, false, CALL_STATUS_NO_ANSWER, 18},
        {480, 0, true, CALL_STATUS_NO_ANSWER, 18},
        {408, 0, true, CALL_STATUS_NO_ANSWER, 102},
        {408, 0, false, CALL_STATUS_FAILED, 102},
        {404, 0, false, CALL_STATUS_FAILED, 1},
        {485, 0, false, CALL_STATUS_FAILED, 1},
        {604, 0, false, CALL_STATUS_FAILED, 1},
        {484, 0, false, CALL_STATUS_FAILED, 28},
        {401, 0, false, CALL_STATUS_FAILED, 21},
        {403, 0, false, CALL_STATUS_FAILED, 21},
        {407, 0, false, CALL_STATUS_FAILED, 21},
        {488, 0, false, CALL_STATUS_FAILED, 88},
        {606, 0, false, CALL_STATUS_FAILED, 88},
        {500, 0, false, CALL_STATUS_FAILED, 41},
        {503, 0, true, CALL_STATUS_FAILED, 41},
        {502, 0, false, CALL_STATUS_FAILED, 38},
        {504, 0, false, CALL_STATUS_FAILED, 102},
        /* Listed codes keep the spec's cause whatever the Reason says. */
        {404, 34, false, CALL_STATUS_FAILED, 1},
        /* RFC 3398 rows beyond the spec. */
        {400, 0, false, CALL_STATUS_FAILED, 41},
        {405, 0, false, CALL_STATUS_FAILED, 63},
        {410, 0, false, CALL_STATUS_FAILED, 22},
        {482, 0, false, CALL_STATUS_FAILED, 25},
        {487, 0, false, CALL_STATUS_FAILED, 127},
        {501, 0, false, CALL_STATUS_FAILED, 79},
        /* Unknown codes: the Reason cause, else the class's x00. */
        {499, 34, false, CALL_STATUS_FAILED, 34},
        {499, 0, false, CALL_STATUS_FAILED, 41},
        {599, 0, true, CALL_STATUS_FAILED, 41},
        {699, 0, false, CALL_STATUS_BUSY, 17},
        {302, 0, false, CALL_STATUS_FAILED, 127},
        {699, 200, false, CALL_STATUS_BUSY, 17}, /* a cause out of range is none */
    };
    enum call_status st;
    int cause;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        st = CALL_STATUS_QUEUED;
        cause = -1;
        assert_int_equal(
            callsm_final_for_response(rows[i].code, rows[i].reason, rows[i].prov, &st, &cause),
            ERR_OK);
        if (st != rows[i].status || cause != rows[i].cause)
            print_error("row %zu: code %d\n", i, rows[i].code);
        assert_int_equal(st, rows[i].status);
        assert_int_equal(cause, rows[i].cause);
    }
    assert_int_equal(callsm_final_for_response(200, 0, false, &st, &cause), ERR_INVALID);
    assert_int_equal(callsm_final_for_response(299, 0, false, &st, &cause), ERR_INVALID);
    assert_int_equal(callsm_final_for_response(700, 0, false, &st, &cause), ERR_INVALID);
    assert_int_equal(callsm_final_for_response(-1, 17, false, &st, &cause), ERR_INVALID);
}

/* The table through the machine: a final response ends the call at once
 * (no CANCEL: the INVITE transaction is over) with the hangup webhook. */
static void final_responses_end_the_call(void **state)
{
    struct callsm_config cfg = config(CALL_DIR_OUTBOUND);
    struct call_sm sm;

    (void)state;
    outbound_ringing(&sm, &cfg, false);
    assert_int_equal(send_code(&sm, CALLSM_EV_FINAL_RESPONSE, 486, 0, 3000), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);
    expect_final(&sm, CALL_STATUS_BUSY, "17");
    assert_int_equal(sm.state, CALL_STATE_ENDED);
    assert_int_equal(sm.ended_at_ms, 3000);
    assert_int_equal(callsm_duration_s(&sm), 0);

    outbound_ringing(&sm, &cfg, true);
    assert_int_equal(send_code(&sm, CALLSM_EV_FINAL_RESPONSE, 408, 0, 3000), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);
    expect_final(&sm, CALL_STATUS_NO_ANSWER, "102");

    outbound_ringing(&sm, &cfg, false);
    assert_int_equal(send_code(&sm, CALLSM_EV_FINAL_RESPONSE, 408, 0, 3000), ERR_OK);
    expect_final(&sm, CALL_STATUS_FAILED, "102");

    outbound_ringing(&sm, &cfg, true);
    assert_int_equal(send_code(&sm, CALLSM_EV_FINAL_RESPONSE, 500, 17, 3000), ERR_OK);
    expect_final(&sm, CALL_STATUS_BUSY, "17");

    /* A 2xx final response is the answer. */
    outbound_ringing(&sm, &cfg, true);
    assert_int_equal(send_code(&sm, CALLSM_EV_FINAL_RESPONSE, 200, 0, 3000), ERR_OK);
    expect_acts(CALLSM_ACT_ANSWER_WEBHOOK, END);
    assert_int_equal(sm.state, CALL_STATE_ANSWERED);
}

static void outbound_happy_path(void **state)
{
    struct callsm_config cfg = config(CALL_DIR_OUTBOUND);
    struct call_sm sm;

    (void)state;
    assert_int_equal(callsm_init(&sm, &cfg, 500), ERR_OK);
    assert_int_equal(sm.state, CALL_STATE_QUEUED);
    assert_int_equal(callsm_status(&sm), CALL_STATUS_QUEUED);
    assert_int_equal(send_ev(&sm, CALLSM_EV_INVITE_SENT, 1000), ERR_OK);
    expect_acts(END);
    assert_int_equal(sm.started_at_ms, 1000);
    assert_int_equal(callsm_status(&sm), CALL_STATUS_QUEUED); /* until a 180/183 */
    /* 100 Trying is no ringing. */
    assert_int_equal(send_code(&sm, CALLSM_EV_PROVISIONAL, 100, 0, 1100), ERR_OK);
    expect_acts(END);
    assert_false(sm.ringing);
    /* The first 180 fires the ring webhook; a later 183 or 180 does not. */
    assert_int_equal(send_code(&sm, CALLSM_EV_PROVISIONAL, 180, 0, 2000), ERR_OK);
    expect_acts(CALLSM_ACT_RING_WEBHOOK, END);
    assert_int_equal(callsm_status(&sm), CALL_STATUS_RINGING);
    assert_int_equal(send_code(&sm, CALLSM_EV_PROVISIONAL, 183, 0, 2500), ERR_OK);
    expect_acts(END);
    assert_int_equal(send_code(&sm, CALLSM_EV_PROVISIONAL, 180, 0, 2600), ERR_OK);
    expect_acts(END);

    assert_int_equal(send_ev(&sm, CALLSM_EV_ANSWERED, 5000), ERR_OK);
    expect_acts(CALLSM_ACT_ANSWER_WEBHOOK, END);
    assert_true(sm.answered);
    assert_int_equal(sm.answered_at_ms, 5000);
    assert_int_equal(callsm_status(&sm), CALL_STATUS_IN_PROGRESS);
    assert_int_equal(send_ok(&sm, CALLSM_EV_ANSWER_RESULT, true, 5200), ERR_OK);
    expect_acts(CALLSM_ACT_OPEN_STREAM, END);
    assert_true(sm.stream_open);

    assert_int_equal(send_ev(&sm, CALLSM_EV_BYE_RECEIVED, 65999), ERR_OK);
    expect_acts(CALLSM_ACT_CLOSE_STREAM, CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);
    expect_final(&sm, CALL_STATUS_COMPLETED, "16");
    assert_int_equal(sm.state, CALL_STATE_ENDED);
    assert_false(sm.stream_open);
    assert_int_equal(callsm_duration_s(&sm), 60);
    assert_int_equal(callsm_deadline(&sm), CALLSM_NO_DEADLINE);

    /* Nothing more: no second hangup webhook, whatever comes. */
    assert_int_equal(send_ev(&sm, CALLSM_EV_BYE_RECEIVED, 66000), ERR_CONFLICT);
    expect_acts(END);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TICK, 999999), ERR_CONFLICT);
    expect_acts(END);
    assert_int_equal(send_ev(&sm, CALLSM_EV_CLOSED, 999999), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_LOCAL_HANGUP, 999999), ERR_CONFLICT);
    expect_final(&sm, CALL_STATUS_COMPLETED, "16");
}

static void bye_with_reason_cause(void **state)
{
    struct callsm_config cfg = config(CALL_DIR_OUTBOUND);
    struct call_sm sm;

    (void)state;
    outbound_streaming(&sm, &cfg);
    assert_int_equal(send_code(&sm, CALLSM_EV_BYE_RECEIVED, 0, 31, 9000), ERR_OK);
    expect_acts(CALLSM_ACT_CLOSE_STREAM, CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);
    expect_final(&sm, CALL_STATUS_COMPLETED, "31");

    /* A cause out of 1-127 counts as none. */
    outbound_streaming(&sm, &cfg);
    assert_int_equal(send_code(&sm, CALLSM_EV_BYE_RECEIVED, 0, 500, 9000), ERR_OK);
    expect_final(&sm, CALL_STATUS_COMPLETED, "16");
    outbound_streaming(&sm, &cfg);
    assert_int_equal(send_code(&sm, CALLSM_EV_BYE_RECEIVED, 0, -3, 9000), ERR_OK);
    expect_final(&sm, CALL_STATUS_COMPLETED, "16");
}

static void ring_timeout(void **state)
{
    struct callsm_config cfg = config(CALL_DIR_OUTBOUND);
    struct call_sm sm;

    (void)state;
    /* No provisional: NO_ANSWER 18, CANCEL, then the 487 closes it. */
    outbound_ringing(&sm, &cfg, false);
    assert_int_equal(callsm_deadline(&sm), 1000 + 30 * 1000);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TICK, 30999), ERR_OK);
    expect_acts(END);
    assert_int_equal(sm.state, CALL_STATE_RINGING);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TICK, 31000), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_CANCEL, END);
    assert_int_equal(sm.state, CALL_STATE_ENDING);
    expect_final(&sm, CALL_STATUS_NO_ANSWER, "18");
    assert_true(call_status_final(callsm_status(&sm)));
    assert_int_equal(send_code(&sm, CALLSM_EV_FINAL_RESPONSE, 487, 0, 31050), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);
    expect_final(&sm, CALL_STATUS_NO_ANSWER, "18");
    assert_int_equal(sm.ended_at_ms, 31000);

    /* After a 180: NO_ANSWER 19; CLOSED ends it too. */
    outbound_ringing(&sm, &cfg, true);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TICK, 40000), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_CANCEL, END);
    expect_final(&sm, CALL_STATUS_NO_ANSWER, "19");
    assert_int_equal(send_ev(&sm, CALLSM_EV_CLOSED, 40100), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);
    expect_final(&sm, CALL_STATUS_NO_ANSWER, "19");
}

/* A 200 OK that crosses our CANCEL gets a BYE; the status stays. */
static void answer_crossing_cancel(void **state)
{
    struct callsm_config cfg = config(CALL_DIR_OUTBOUND);
    struct call_sm sm;

    (void)state;
    outbound_ringing(&sm, &cfg, true);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TICK, 31000), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_CANCEL, END);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ANSWERED, 31020), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_BYE, END);
    assert_false(sm.answered);
    assert_int_equal(callsm_deadline(&sm), 31020 + CALLSM_CLOSE_GUARD_MS);
    /* A second 200 (retransmission) changes nothing. */
    assert_int_equal(send_ev(&sm, CALLSM_EV_ANSWERED, 31030), ERR_CONFLICT);
    expect_acts(END);
    assert_int_equal(send_ev(&sm, CALLSM_EV_CLOSED, 31100), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);
    expect_final(&sm, CALL_STATUS_NO_ANSWER, "19");
}

static void transaction_timeout(void **state)
{
    struct callsm_config cfg = config(CALL_DIR_OUTBOUND);
    struct call_sm sm;

    (void)state;
    outbound_ringing(&sm, &cfg, false);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TIMEOUT, 33000), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);
    expect_final(&sm, CALL_STATUS_FAILED, "102");

    outbound_ringing(&sm, &cfg, true);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TIMEOUT, 33000), ERR_OK);
    expect_final(&sm, CALL_STATUS_NO_ANSWER, "102");

    /* Could not even send the INVITE. */
    assert_int_equal(callsm_init(&sm, &cfg, 0), ERR_OK);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TIMEOUT, 10), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);
    expect_final(&sm, CALL_STATUS_FAILED, "102");

    /* After the answer: BYE, COMPLETED 102; a timeout of the BYE ends it. */
    outbound_streaming(&sm, &cfg);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TIMEOUT, 9000), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_BYE, CALLSM_ACT_CLOSE_STREAM, END);
    expect_final(&sm, CALL_STATUS_COMPLETED, "102");
    assert_int_equal(send_ev(&sm, CALLSM_EV_TIMEOUT, 41000), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);
}

static void inbound_life_and_cancel(void **state)
{
    struct callsm_config cfg = config(CALL_DIR_INBOUND);
    struct call_sm sm;

    (void)state;
    assert_int_equal(callsm_init(&sm, &cfg, 700), ERR_OK);
    assert_int_equal(sm.state, CALL_STATE_RINGING);
    assert_int_equal(callsm_status(&sm), CALL_STATUS_RINGING);
    assert_int_equal(sm.started_at_ms, 700);
    assert_false(sm.has_ring_url); /* no ring webhook inbound */
    assert_int_equal(callsm_deadline(&sm), CALLSM_NO_DEADLINE);
    /* Outbound-only events do not apply. */
    assert_int_equal(send_ev(&sm, CALLSM_EV_INVITE_SENT, 800), ERR_CONFLICT);
    assert_int_equal(send_code(&sm, CALLSM_EV_PROVISIONAL, 180, 0, 800), ERR_CONFLICT);
    assert_int_equal(send_code(&sm, CALLSM_EV_FINAL_RESPONSE, 486, 0, 800), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TIMEOUT, 800), ERR_CONFLICT);
    expect_acts(END);
    /* CANCEL with a Reason cause. */
    assert_int_equal(send_code(&sm, CALLSM_EV_CANCEL_RECEIVED, 0, 31, 900), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);
    expect_final(&sm, CALL_STATUS_CANCELED, "31");
    assert_int_equal(sm.state, CALL_STATE_ENDED);

    /* CANCEL without: 16. */
    assert_int_equal(callsm_init(&sm, &cfg, 700), ERR_OK);
    assert_int_equal(send_ev(&sm, CALLSM_EV_CANCEL_RECEIVED, 900), ERR_OK);
    expect_final(&sm, CALL_STATUS_CANCELED, "16");

    /* Answered (our 200 OK, then the caller's ACK): the answer webhook,
     * then streaming; the time limit counts from the 200 OK. */
    assert_int_equal(callsm_init(&sm, &cfg, 700), ERR_OK);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ANSWERED, 750), ERR_OK);
    expect_acts(END);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ACK, 755), ERR_OK);
    expect_acts(CALLSM_ACT_ANSWER_WEBHOOK, END);
    assert_int_equal(sm.answered_at_ms, 750);
    assert_int_equal(callsm_deadline(&sm), 750 + 3600 * 1000);
    assert_int_equal(send_ev(&sm, CALLSM_EV_CANCEL_RECEIVED, 760), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ACK, 770), ERR_CONFLICT);
    assert_int_equal(send_ok(&sm, CALLSM_EV_ANSWER_RESULT, true, 800), ERR_OK);
    expect_acts(CALLSM_ACT_OPEN_STREAM, END);
    assert_int_equal(send_ev(&sm, CALLSM_EV_LOCAL_HANGUP, 10750), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_BYE, CALLSM_ACT_CLOSE_STREAM, END);
    expect_final(&sm, CALL_STATUS_COMPLETED, "16");
    /* The party's BYE crossing ours ends it; the status stays. */
    assert_int_equal(send_code(&sm, CALLSM_EV_BYE_RECEIVED, 0, 31, 10760), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);
    expect_final(&sm, CALL_STATUS_COMPLETED, "16");
    assert_int_equal(callsm_duration_s(&sm), 10);
}

/* SIP.md section 1: the answer webhook fires on the caller's ACK; a 200 OK
 * never acknowledged ends FAILED "102" with a BYE, unanswered, and nothing
 * but the hangup webhook reaches the customer. */
static void inbound_needs_ack(void **state)
{
    struct callsm_config cfg = config(CALL_DIR_INBOUND);
    struct call_sm sm;

    (void)state;
    assert_int_equal(callsm_init(&sm, &cfg, 1000), ERR_OK);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ANSWERED, 1200), ERR_OK);
    expect_acts(END);
    assert_int_equal(sm.state, CALL_STATE_CONFIRMING);
    assert_false(sm.answered);
    assert_int_equal(callsm_status(&sm), CALL_STATUS_RINGING);
    assert_int_equal(callsm_deadline(&sm), 1200 + CALLSM_ACK_TIMEOUT_MS);
    /* Nothing before the deadline. */
    assert_int_equal(send_ev(&sm, CALLSM_EV_TICK, 1200 + CALLSM_ACK_TIMEOUT_MS - 1), ERR_OK);
    expect_acts(END);
    /* No answer result, stream or BYE makes sense before the ACK. */
    assert_int_equal(send_ok(&sm, CALLSM_EV_ANSWER_RESULT, true, 1300), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_BYE_RECEIVED, 1300), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TICK, 1200 + CALLSM_ACK_TIMEOUT_MS), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_BYE, END);
    expect_final(&sm, CALL_STATUS_FAILED, "102");
    assert_int_equal(sm.state, CALL_STATE_ENDING);
    assert_int_equal(send_ev(&sm, CALLSM_EV_CLOSED, 1200 + CALLSM_ACK_TIMEOUT_MS + 10), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);
    expect_final(&sm, CALL_STATUS_FAILED, "102");
    assert_false(sm.answered);
    assert_int_equal(callsm_duration_s(&sm), 0);

    /* libre's own give-up (its transaction timeout) ends it the same way. */
    assert_int_equal(callsm_init(&sm, &cfg, 1000), ERR_OK);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ANSWERED, 1200), ERR_OK);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TIMEOUT, 33200), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_BYE, END);
    expect_final(&sm, CALL_STATUS_FAILED, "102");

    /* The caller's BYE before its ACK: it left before the call began. */
    assert_int_equal(callsm_init(&sm, &cfg, 1000), ERR_OK);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ANSWERED, 1200), ERR_OK);
    assert_int_equal(send_code(&sm, CALLSM_EV_CANCEL_RECEIVED, 0, 0, 1300), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);
    expect_final(&sm, CALL_STATUS_CANCELED, "16");
    assert_int_equal(callsm_duration_s(&sm), 0);

    /* Shutdown or app deletion before the ACK: our BYE, CANCELED 16. */
    assert_int_equal(callsm_init(&sm, &cfg, 1000), ERR_OK);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ANSWERED, 1200), ERR_OK);
    assert_int_equal(send_ev(&sm, CALLSM_EV_LOCAL_HANGUP, 1300), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_BYE, END);
    expect_final(&sm, CALL_STATUS_CANCELED, "16");

    /* Outbound calls have no ACK to wait for. */
    cfg = config(CALL_DIR_OUTBOUND);
    outbound_ringing(&sm, &cfg, true);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ACK, 2500), ERR_CONFLICT);
}

static void engine_cancel(void **state)
{
    struct callsm_config out = config(CALL_DIR_OUTBOUND);
    struct callsm_config in = config(CALL_DIR_INBOUND);
    struct call_sm sm;

    (void)state;
    /* Outbound, ringing: CANCEL, CANCELED 16. */
    outbound_ringing(&sm, &out, true);
    assert_int_equal(send_ev(&sm, CALLSM_EV_LOCAL_HANGUP, 3000), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_CANCEL, END);
    expect_final(&sm, CALL_STATUS_CANCELED, "16");
    assert_int_equal(send_code(&sm, CALLSM_EV_FINAL_RESPONSE, 487, 0, 3050), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);

    /* Outbound, INVITE not sent yet: nothing to cancel on the wire. */
    assert_int_equal(callsm_init(&sm, &out, 0), ERR_OK);
    assert_int_equal(send_ev(&sm, CALLSM_EV_LOCAL_HANGUP, 5), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);
    expect_final(&sm, CALL_STATUS_CANCELED, "16");

    /* Inbound before our 200 OK: a final error response. */
    assert_int_equal(callsm_init(&sm, &in, 0), ERR_OK);
    assert_int_equal(send_ev(&sm, CALLSM_EV_LOCAL_HANGUP, 5), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_REJECT, CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);
    expect_final(&sm, CALL_STATUS_CANCELED, "16");

    /* After the answer it is a hangup: BYE, COMPLETED 16; the guard ends it. */
    outbound_streaming(&sm, &out);
    assert_int_equal(send_ev(&sm, CALLSM_EV_LOCAL_HANGUP, 8000), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_BYE, CALLSM_ACT_CLOSE_STREAM, END);
    expect_final(&sm, CALL_STATUS_COMPLETED, "16");
    assert_int_equal(callsm_deadline(&sm), 8000 + CALLSM_CLOSE_GUARD_MS);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TICK, 8000 + CALLSM_CLOSE_GUARD_MS - 1), ERR_OK);
    expect_acts(END);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TICK, 8000 + CALLSM_CLOSE_GUARD_MS), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);
    assert_int_equal(sm.state, CALL_STATE_ENDED);
}

static void answer_fails_fallback_ok(void **state)
{
    struct callsm_config cfg = config(CALL_DIR_OUTBOUND);
    struct call_sm sm;

    (void)state;
    outbound_ringing(&sm, &cfg, true);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ANSWERED, 5000), ERR_OK);
    assert_int_equal(send_ok(&sm, CALLSM_EV_ANSWER_RESULT, false, 15000), ERR_OK);
    expect_acts(CALLSM_ACT_FALLBACK_WEBHOOK, END);
    assert_int_equal(sm.state, CALL_STATE_FALLBACK);
    assert_int_equal(callsm_status(&sm), CALL_STATUS_IN_PROGRESS);
    /* The answer result cannot come twice. */
    assert_int_equal(send_ok(&sm, CALLSM_EV_ANSWER_RESULT, true, 15001), ERR_CONFLICT);
    expect_acts(END);
    assert_int_equal(send_ok(&sm, CALLSM_EV_FALLBACK_RESULT, true, 16000), ERR_OK);
    expect_acts(CALLSM_ACT_OPEN_STREAM, END);
    assert_int_equal(sm.state, CALL_STATE_IN_PROGRESS);
    assert_int_equal(send_ok(&sm, CALLSM_EV_FALLBACK_RESULT, true, 16001), ERR_CONFLICT);
}

static void answer_fails_no_fallback_url(void **state)
{
    struct callsm_config cfg = config(CALL_DIR_OUTBOUND);
    struct call_sm sm;

    (void)state;
    cfg.has_fallback_url = false;
    outbound_ringing(&sm, &cfg, true);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ANSWERED, 5000), ERR_OK);
    assert_int_equal(send_ok(&sm, CALLSM_EV_ANSWER_RESULT, false, 15000), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_BYE, END);
    expect_final(&sm, CALL_STATUS_FAILED, "41");
    assert_int_equal(sm.state, CALL_STATE_ENDING);
    assert_int_equal(send_ev(&sm, CALLSM_EV_CLOSED, 15100), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);
    expect_final(&sm, CALL_STATUS_FAILED, "41");
    assert_int_equal(callsm_duration_s(&sm), 10);
}

static void answer_and_fallback_fail(void **state)
{
    struct callsm_config cfg = config(CALL_DIR_INBOUND);
    struct call_sm sm;

    (void)state;
    assert_int_equal(callsm_init(&sm, &cfg, 0), ERR_OK);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ANSWERED, 100), ERR_OK);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ACK, 110), ERR_OK);
    assert_int_equal(send_ok(&sm, CALLSM_EV_ANSWER_RESULT, false, 10100), ERR_OK);
    expect_acts(CALLSM_ACT_FALLBACK_WEBHOOK, END);
    assert_int_equal(send_ok(&sm, CALLSM_EV_FALLBACK_RESULT, false, 20100), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_BYE, END);
    expect_final(&sm, CALL_STATUS_FAILED, "41");
    assert_int_equal(send_ev(&sm, CALLSM_EV_CLOSED, 20200), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);

    /* The party hangs up while we wait: COMPLETED; the late result is ignored. */
    assert_int_equal(callsm_init(&sm, &cfg, 0), ERR_OK);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ANSWERED, 100), ERR_OK);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ACK, 110), ERR_OK);
    assert_int_equal(send_ev(&sm, CALLSM_EV_BYE_RECEIVED, 3100), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);
    expect_final(&sm, CALL_STATUS_COMPLETED, "16");
    assert_int_equal(send_ok(&sm, CALLSM_EV_ANSWER_RESULT, true, 5000), ERR_CONFLICT);
    expect_acts(END);
}

static void call_time_limit(void **state)
{
    struct callsm_config cfg = config(CALL_DIR_OUTBOUND);
    struct call_sm sm;

    (void)state;
    cfg.call_time_limit_s = 90;
    outbound_streaming(&sm, &cfg);
    /* Counted from the answer (5000), not from the INVITE. */
    assert_int_equal(callsm_deadline(&sm), 5000 + 90 * 1000);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TICK, 94999), ERR_OK);
    expect_acts(END);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TICK, 95000), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_BYE, CALLSM_ACT_CLOSE_STREAM, END);
    expect_final(&sm, CALL_STATUS_COMPLETED, "16");
    assert_int_equal(callsm_duration_s(&sm), 90);
    /* The stream we closed cannot end again. */
    assert_int_equal(send_ev(&sm, CALLSM_EV_STREAM_ENDED, 95001), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_CLOSED, 95100), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);

    /* The limit also runs while the answer webhook is pending. */
    outbound_ringing(&sm, &cfg, true);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ANSWERED, 5000), ERR_OK);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TICK, 95000), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_BYE, END);
    expect_final(&sm, CALL_STATUS_COMPLETED, "16");
}

static void stream_ended(void **state)
{
    struct callsm_config cfg = config(CALL_DIR_OUTBOUND);
    struct callsm_event ev = {.type = CALLSM_EV_STREAM_ENDED};
    struct call_sm sm;

    (void)state;
    /* Without keep_call_alive: the call ends, no CLOSE_STREAM (it is gone). */
    outbound_streaming(&sm, &cfg);
    ev.now_ms = 7000;
    ev.keep_call_alive = false;
    assert_int_equal(callsm_event_apply(&sm, &ev, &acts), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_BYE, END);
    expect_final(&sm, CALL_STATUS_COMPLETED, "16");
    assert_int_equal(send_ev(&sm, CALLSM_EV_CLOSED, 7100), ERR_OK);
    expect_acts(CALLSM_ACT_HANGUP_WEBHOOK, CALLSM_ACT_FREE, END);

    /* With it: the call stays up, silent, until a hangup or the limit. */
    outbound_streaming(&sm, &cfg);
    ev.keep_call_alive = true;
    assert_int_equal(callsm_event_apply(&sm, &ev, &acts), ERR_OK);
    expect_acts(END);
    assert_int_equal(sm.state, CALL_STATE_IN_PROGRESS);
    assert_false(sm.stream_open);
    assert_int_equal(callsm_status(&sm), CALL_STATUS_IN_PROGRESS);
    assert_int_equal(callsm_event_apply(&sm, &ev, &acts), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TICK, 5000 + 3600 * 1000), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_BYE, END); /* no CLOSE_STREAM: none is open */
    expect_final(&sm, CALL_STATUS_COMPLETED, "16");
}

static void wrong_state_events_ignored(void **state)
{
    struct callsm_config cfg = config(CALL_DIR_OUTBOUND);
    struct callsm_event ev = {.type = CALLSM_EV_TICK};
    struct call_sm sm, before;

    (void)state;
    outbound_streaming(&sm, &cfg);
    memcpy(&before, &sm, sizeof(sm));
    acts.n = 99;
    assert_int_equal(send_code(&sm, CALLSM_EV_PROVISIONAL, 180, 0, 6000), ERR_CONFLICT);
    assert_int_equal(acts.n, 0);
    assert_int_equal(send_code(&sm, CALLSM_EV_FINAL_RESPONSE, 486, 0, 6000), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ANSWERED, 6000), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_INVITE_SENT, 6000), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_CANCEL_RECEIVED, 6000), ERR_CONFLICT);
    assert_int_equal(send_ok(&sm, CALLSM_EV_ANSWER_RESULT, false, 6000), ERR_CONFLICT);
    assert_int_equal(send_ok(&sm, CALLSM_EV_FALLBACK_RESULT, false, 6000), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_CLOSED, 6000), ERR_CONFLICT);
    /* Malformed events. */
    assert_int_equal(send_code(&sm, CALLSM_EV_PROVISIONAL, 200, 0, 6000), ERR_INVALID);
    assert_int_equal(send_code(&sm, CALLSM_EV_FINAL_RESPONSE, 700, 0, 6000), ERR_INVALID);
    assert_int_equal(send_code(&sm, CALLSM_EV_FINAL_RESPONSE, 180, 0, 6000), ERR_INVALID);
    assert_int_equal(send_ev(&sm, (enum callsm_event_type)77, 6000), ERR_INVALID);
    assert_int_equal(send_ev(&sm, (enum callsm_event_type) - 1, 6000), ERR_INVALID);
    assert_int_equal(callsm_event_apply(NULL, &ev, &acts), ERR_INVALID);
    assert_int_equal(callsm_event_apply(&sm, NULL, &acts), ERR_INVALID);
    assert_int_equal(callsm_event_apply(&sm, &ev, NULL), ERR_INVALID);
    expect_acts(END);
    assert_memory_equal(&sm, &before, sizeof(sm));

    /* Before the INVITE: only INVITE_SENT, LOCAL_HANGUP, TIMEOUT and TICK. */
    assert_int_equal(callsm_init(&sm, &cfg, 0), ERR_OK);
    memcpy(&before, &sm, sizeof(sm));
    assert_int_equal(send_code(&sm, CALLSM_EV_PROVISIONAL, 180, 0, 1), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ANSWERED, 1), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_BYE_RECEIVED, 1), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_STREAM_ENDED, 1), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TICK, INT64_MAX - 1), ERR_OK);
    expect_acts(END);
    assert_memory_equal(&sm, &before, sizeof(sm));

    /* Outbound ringing: a CANCEL or BYE from the callee is nonsense. */
    outbound_ringing(&sm, &cfg, true);
    memcpy(&before, &sm, sizeof(sm));
    assert_int_equal(send_ev(&sm, CALLSM_EV_CANCEL_RECEIVED, 3000), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_BYE_RECEIVED, 3000), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_STREAM_ENDED, 3000), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_CLOSED, 3000), ERR_CONFLICT);
    assert_memory_equal(&sm, &before, sizeof(sm));

    /* Ending with our BYE open: a second BYE-worthy event does nothing. */
    outbound_streaming(&sm, &cfg);
    assert_int_equal(send_ev(&sm, CALLSM_EV_LOCAL_HANGUP, 7000), ERR_OK);
    memcpy(&before, &sm, sizeof(sm));
    assert_int_equal(send_ev(&sm, CALLSM_EV_LOCAL_HANGUP, 7001), ERR_CONFLICT);
    assert_int_equal(send_code(&sm, CALLSM_EV_FINAL_RESPONSE, 487, 0, 7001), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ANSWERED, 7001), ERR_CONFLICT);
    assert_int_equal(send_ev(&sm, CALLSM_EV_STREAM_ENDED, 7001), ERR_CONFLICT);
    assert_memory_equal(&sm, &before, sizeof(sm));
}

static void deadlines(void **state)
{
    struct callsm_config cfg = config(CALL_DIR_OUTBOUND);
    struct call_sm sm;

    (void)state;
    cfg.ring_timeout_s = 600;
    cfg.call_time_limit_s = 86400;
    assert_int_equal(callsm_init(&sm, &cfg, 0), ERR_OK);
    assert_int_equal(callsm_deadline(&sm), CALLSM_NO_DEADLINE);
    assert_int_equal(send_ev(&sm, CALLSM_EV_INVITE_SENT, 1000), ERR_OK);
    assert_int_equal(callsm_deadline(&sm), 601000);
    /* A provisional does not move the ring timer. */
    assert_int_equal(send_code(&sm, CALLSM_EV_PROVISIONAL, 183, 0, 2000), ERR_OK);
    assert_int_equal(callsm_deadline(&sm), 601000);
    assert_int_equal(send_ev(&sm, CALLSM_EV_ANSWERED, 600999), ERR_OK);
    assert_int_equal(callsm_deadline(&sm), 600999 + 86400LL * 1000);
    /* The ring deadline has passed but no longer applies. */
    assert_int_equal(send_ev(&sm, CALLSM_EV_TICK, 601000), ERR_OK);
    expect_acts(END);
    assert_int_equal(sm.state, CALL_STATE_ANSWERED);
    assert_int_equal(send_ok(&sm, CALLSM_EV_ANSWER_RESULT, true, 601100), ERR_OK);
    assert_int_equal(callsm_deadline(&sm), 600999 + 86400LL * 1000);
    /* A late tick still fires once. */
    assert_int_equal(send_ev(&sm, CALLSM_EV_TICK, 600999 + 86400LL * 1000 + 5), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_BYE, CALLSM_ACT_CLOSE_STREAM, END);
    assert_int_equal(callsm_deadline(&sm), 600999 + 86400LL * 1000 + 5 + CALLSM_CLOSE_GUARD_MS);
    assert_int_equal(send_ev(&sm, CALLSM_EV_CLOSED, 600999 + 86400LL * 1000 + 50), ERR_OK);
    assert_int_equal(callsm_deadline(&sm), CALLSM_NO_DEADLINE);
    assert_int_equal(callsm_duration_s(&sm), 86400);
}

static void no_hangup_webhook_without_url(void **state)
{
    struct callsm_config cfg = config(CALL_DIR_OUTBOUND);
    struct call_sm sm;

    (void)state;
    cfg.has_hangup_url = false;
    cfg.has_ring_url = false;
    outbound_ringing(&sm, &cfg, true); /* checks: no ring webhook either */
    assert_int_equal(send_code(&sm, CALLSM_EV_FINAL_RESPONSE, 603, 0, 3000), ERR_OK);
    expect_acts(CALLSM_ACT_FREE, END);
    expect_final(&sm, CALL_STATUS_BUSY, "21");

    outbound_streaming(&sm, &cfg);
    assert_int_equal(send_ev(&sm, CALLSM_EV_BYE_RECEIVED, 9000), ERR_OK);
    expect_acts(CALLSM_ACT_CLOSE_STREAM, CALLSM_ACT_FREE, END);

    outbound_ringing(&sm, &cfg, false);
    assert_int_equal(send_ev(&sm, CALLSM_EV_TICK, 31000), ERR_OK);
    expect_acts(CALLSM_ACT_SEND_CANCEL, END);
    assert_int_equal(send_ev(&sm, CALLSM_EV_CLOSED, 31100), ERR_OK);
    expect_acts(CALLSM_ACT_FREE, END);
}

static void config_validation(void **state)
{
    struct callsm_config cfg = config(CALL_DIR_OUTBOUND);
    struct call_sm sm, before;

    (void)state;
    memset(&sm, 0x5a, sizeof(sm));
    memcpy(&before, &sm, sizeof(sm));
    cfg.ring_timeout_s = 0;
    assert_int_equal(callsm_init(&sm, &cfg, 0), ERR_INVALID);
    cfg.ring_timeout_s = 601;
    assert_int_equal(callsm_init(&sm, &cfg, 0), ERR_INVALID);
    cfg.ring_timeout_s = 1;
    cfg.call_time_limit_s = 0;
    assert_int_equal(callsm_init(&sm, &cfg, 0), ERR_INVALID);
    cfg.call_time_limit_s = 86401;
    assert_int_equal(callsm_init(&sm, &cfg, 0), ERR_INVALID);
    cfg.call_time_limit_s = 1;
    cfg.direction = (enum call_direction)9;
    assert_int_equal(callsm_init(&sm, &cfg, 0), ERR_INVALID);
    assert_int_equal(callsm_init(NULL, &cfg, 0), ERR_INVALID);
    assert_int_equal(callsm_init(&sm, NULL, 0), ERR_INVALID);
    assert_memory_equal(&sm, &before, sizeof(sm));
    cfg.direction = CALL_DIR_INBOUND;
    assert_int_equal(callsm_init(&sm, &cfg, 0), ERR_OK);
    cfg.ring_timeout_s = 600;
    cfg.call_time_limit_s = 86400;
    assert_int_equal(callsm_init(&sm, &cfg, 0), ERR_OK);
}

static void names(void **state)
{
    (void)state;
    assert_string_equal(call_status_name(CALL_STATUS_QUEUED), "QUEUED");
    assert_string_equal(call_status_name(CALL_STATUS_RINGING), "RINGING");
    assert_string_equal(call_status_name(CALL_STATUS_IN_PROGRESS), "IN_PROGRESS");
    assert_string_equal(call_status_name(CALL_STATUS_COMPLETED), "COMPLETED");
    assert_string_equal(call_status_name(CALL_STATUS_NO_ANSWER), "NO_ANSWER");
    assert_string_equal(call_status_name(CALL_STATUS_BUSY), "BUSY");
    assert_string_equal(call_status_name(CALL_STATUS_CANCELED), "CANCELED");
    assert_string_equal(call_status_name(CALL_STATUS_FAILED), "FAILED");
    assert_string_equal(call_status_name((enum call_status)42), "");
    assert_string_equal(callsm_state_name(CALL_STATE_FALLBACK), "FALLBACK");
    assert_string_equal(callsm_state_name((enum call_state)42), "");
    assert_string_equal(call_direction_name(CALL_DIR_INBOUND), "INBOUND");
    assert_string_equal(call_direction_name(CALL_DIR_OUTBOUND), "OUTBOUND");
    assert_string_equal(call_direction_name((enum call_direction)42), "");
    assert_false(call_status_final(CALL_STATUS_IN_PROGRESS));
    assert_false(call_status_final(CALL_STATUS_QUEUED));
    assert_true(call_status_final(CALL_STATUS_COMPLETED));
    assert_true(call_status_final(CALL_STATUS_FAILED));
}

/* The records and webhooks carry statuses and directions as text: each
 * name reads back as its value, and nothing else reads at all. */
static void names_parse(void **state)
{
    enum call_status s, st = CALL_STATUS_BUSY;
    enum call_direction d = CALL_DIR_OUTBOUND;

    (void)state;
    for (s = CALL_STATUS_QUEUED; s <= CALL_STATUS_FAILED; s++) {
        enum call_status got = CALL_STATUS_QUEUED;

        assert_int_equal(call_status_parse(call_status_name(s), &got), ERR_OK);
        assert_int_equal(got, s);
    }
    assert_int_equal(call_status_parse("", &st), ERR_INVALID);
    assert_int_equal(call_status_parse("completed", &st), ERR_INVALID);
    assert_int_equal(call_status_parse("COMPLETED ", &st), ERR_INVALID);
    assert_int_equal(st, CALL_STATUS_BUSY);
    assert_int_equal(call_direction_parse("INBOUND", &d), ERR_OK);
    assert_int_equal(d, CALL_DIR_INBOUND);
    assert_int_equal(call_direction_parse("OUTBOUND", &d), ERR_OK);
    assert_int_equal(d, CALL_DIR_OUTBOUND);
    assert_int_equal(call_direction_parse("BOTH", &d), ERR_INVALID);
    assert_int_equal(d, CALL_DIR_OUTBOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(status_cause_table),
        cmocka_unit_test(final_responses_end_the_call),
        cmocka_unit_test(outbound_happy_path),
        cmocka_unit_test(bye_with_reason_cause),
        cmocka_unit_test(ring_timeout),
        cmocka_unit_test(answer_crossing_cancel),
        cmocka_unit_test(transaction_timeout),
        cmocka_unit_test(inbound_life_and_cancel),
        cmocka_unit_test(inbound_needs_ack),
        cmocka_unit_test(engine_cancel),
        cmocka_unit_test(answer_fails_fallback_ok),
        cmocka_unit_test(answer_fails_no_fallback_url),
        cmocka_unit_test(answer_and_fallback_fail),
        cmocka_unit_test(call_time_limit),
        cmocka_unit_test(stream_ended),
        cmocka_unit_test(wrong_state_events_ignored),
        cmocka_unit_test(deadlines),
        cmocka_unit_test(no_hangup_webhook_without_url),
        cmocka_unit_test(config_validation),
        cmocka_unit_test(names),
        cmocka_unit_test(names_parse),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
