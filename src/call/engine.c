/* engine: one thread that runs every call. It routes inbound INVITEs by
 * the linked number, places the calls the API hands it, drives each call's
 * state machine (callsm) from SIP events, webhook results and timers,
 * sends the webhooks, and keeps each call's record up to date. It never
 * blocks on the network: SIP and RTP are libre's, webhooks go through
 * deliver's non-blocking transfers on the same loop. Nor does it wait for
 * the database: call records go through the record writer's queue
 * (recwriter) and routing look-ups to the router's thread, whose answers
 * come back through the loop's queue (SIP.md section 4). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call/bridge.h"
#include "call/callsm.h"
#include "call/cluster.h"
#include "call/deliver.h"
#include "call/engine.h"
#include "call/pace.h"
#include "call/recwriter.h"
#include "call/router.h"
#include "call/sigkeys.h"
#include "call/stream.h"
#include "call/streammsg.h"
#include "call/telemetry.h"
#include "call/webhook.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/rand.h"
#include "sip/sip.h"
#include "ws/ws.h"

#define INBOUND_TIME_LIMIT_S 14400
#define INBOUND_RING_TIMEOUT_S 60
#define ANSWER_TIMEOUT_MS 10000
#define NOTIFY_TIMEOUT_MS 5000
#define STOP_POLL_MS 20
#define DELIVERY_ALPHABET "0123456789abcdefghijklmnopqrstuvwxyz"
/* An inbound INVITE waits this long for its routing look-up, then gets 503
 * with Retry-After (SIP.md section 1). */
#define ROUTE_DEADLINE_MS 2000
#define ROUTE_RETRY_AFTER_S 5
/* Look-ups waiting at once: at the default --sip-invite-rate (200 a
 * second) this is the INVITEs of more than the 2 s deadline. */
#define ROUTE_QUEUE 512
/* Record slots beyond --max-calls: every live call holds one (so its
 * writes always fit) and an ended call holds its own until its final
 * record is taken. 1024 ended calls is some 50 s of stalled database at 20
 * short calls a second, for about 300 KB; past it new calls are refused
 * (inbound 503, outbound 500) while live calls go on. */
#define RECORD_BACKLOG 1024
/* Shutdown waits this long at most for the records still queued. */
#define RECORD_DRAIN_MS 10000

enum msg_id {
    MSG_PLACE,
    MSG_STOP,
    MSG_WS,          /* a WebSocket event for a bridge */
    MSG_APP_DELETED, /* data: the app_id, malloc'd */
    MSG_ROUTED,      /* data: a struct route_wait whose look-up is done */
    MSG_HANGUP,      /* data: a struct hangup_wait whose record has been written */
    MSG_DRAIN,       /* no new calls: OPTIONS answers 503 from now on */
    MSG_REAPED,      /* data: a malloc'd struct store_call a dead node left, now final */
    MSG_CALL_HANGUP, /* data: a call_uuid, malloc'd: end the call (AGENT.md section 3) */
};

struct call {
    struct engine *e;
    struct call *prev, *next;
    struct call_sm sm;
    struct sip_leg *leg;
    struct sip_timer *tmr;
    struct sip_timer *fail_tmr;   /* reports an answer webhook that could not be sent */
    struct sip_timer *answer_tmr; /* inbound: the end of --answer-delay */
    struct store_call rec;        /* also what the webhooks say */
    struct recw_slot *slot;       /* the record's place in the writer's queue */
    struct engine_outbound out;   /* URLs and methods (inbound: the app's) */
    char delivery_id[40];
    uint64_t answer_delivery; /* in flight when answer_busy */
    bool answer_busy;
    enum call_status last_status;
    bool last_answered;
    int64_t wall_offset;         /* wall ms minus monotonic ms */
    struct stream_config stream; /* the successful answer's */
    struct xheaders sip_headers; /* inbound: the INVITE's X- headers, for the stream's start */
    struct bridge *bridge;       /* while the audio stream runs */
    bool stream_end_pending;     /* the stream could not open: report it from the loop */
    /* The record exists in the database: an outbound call's is written by
     * the API request, an inbound call's create by the record writer. Until
     * then the answer webhook waits (answer_waits), so that a client that
     * reads the call when the webhook arrives finds it. */
    bool created;
    bool answer_waits, answer_waits_fallback;
    bool rtp_has_jitter; /* the record's rtp_jitter_us is an estimate */
};

struct engine {
    struct engine_config cfg;
    char default_cc[8], version[32];
    pthread_t thread;
    struct sip_queue *queue;
    struct sip_ep *ep;
    struct deliver *deliver;
    struct ws_hub *hub;
    struct bridge_env benv;
    struct sip_timer *deliver_tmr;
    struct sip_timer *stop_tmr;
    struct recw *recw;
    struct router *router;
    struct cluster *cluster;
    struct sigkeys *sigkeys; /* the orgs' signing secrets, in memory (AGENT.md section 4) */
    char node_id[NODE_ID_MAX + 1];
    struct route_wait *routing;  /* INVITEs waiting for their look-up */
    struct hangup_wait *hangups; /* hangup webhooks waiting for their record */
    /* Guards queue_open: the record writer tells the loop through the
     * queue, which is freed before the writer stops. */
    pthread_mutex_t hangup_mu;
    bool queue_open;
    struct call *calls;
    atomic_uint live;
    atomic_bool stopping;
    atomic_bool draining; /* no new calls; live ones go on */
    bool can_dial;
    int64_t stop_deadline_ms;
    /* Start-up handshake with engine_start. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started;
    enum err start_err;
    /* The pacer (AGENT.md section 6): its thread, and a kick when a call
     * is queued here. */
    pthread_t pacer;
    bool pacer_started, pace_kick, pace_stop;
    pthread_mutex_t pace_mu;
    pthread_cond_t pace_cv;
};

static enum err pacer_start(struct engine *e);
static void pacer_stop(struct engine *e);

/* A call's moments are kept on the monotonic clock; each call converts
 * them to wall time with one offset taken at its start, so that a moment
 * reads the same in every webhook and in the record. */
static int64_t wall_of(const struct call *c, int64_t mono_ms)
{
    return mono_ms + c->wall_offset;
}

static void uuid4(char out[CALL_UUID_LEN + 1])
{
    unsigned char b[16];
    static const char hex[] = "0123456789abcdef";
    int i, j = 0;

    rand_fill(b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[j++] = '-';
        out[j++] = hex[b[i] >> 4];
        out[j++] = hex[b[i] & 15];
    }
    out[j] = '\0';
}

/* The caller's user part arrives from sip/ already valid UTF-8 and cut
 * between characters to SIP_USER_MAX - 1 bytes; the record (which the
 * webhooks carry) holds it whole, so no copy below can cut it again. */
_Static_assert(CALL_PARTY_MAX + 1 >= SIP_USER_MAX, "a user part fits a call record");

static void copy_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

/* --- records --- */

/* Brings the record up to date with the state machine, in memory only.
 * The webhooks are built from the record, so it is refreshed before each
 * one as well as before each write. */
static void record_fill(struct call *c)
{
    enum call_status st = callsm_status(&c->sm);
    struct store_call *r = &c->rec;

    copy_str(r->status, sizeof(r->status), call_status_name(st));
    if (c->sm.state != CALL_STATE_QUEUED)
        r->started_at = wall_of(c, c->sm.started_at_ms);
    r->answered_at = c->sm.answered ? wall_of(c, c->sm.answered_at_ms) : 0;
    if (call_status_final(st)) {
        r->ended_at = wall_of(c, c->sm.ended_at_ms);
        r->duration = callsm_duration_s(&c->sm);
        copy_str(r->hangup_cause, sizeof(r->hangup_cause), c->sm.hangup_cause);
    }
}

/* Writes the record when its status or answer changed since the last
 * write, or always when force. */
static void record_sync(struct call *c, bool force)
{
    enum call_status st = callsm_status(&c->sm);
    struct store_call *r = &c->rec;

    if (!force && st == c->last_status && c->sm.answered == c->last_answered)
        return;
    c->last_status = st;
    c->last_answered = c->sm.answered;
    record_fill(c);
    recw_put(c->e->recw, c->slot, r, false);
}

/* --- hangup webhooks after their record --- */

/* A hangup webhook waits for the write of the final record it carries, so
 * that a client reading the call when the webhook arrives reads the same
 * thing. It keeps its own copy: the call may be freed meanwhile. */
struct hangup_wait {
    struct engine *e;
    struct hangup_wait *prev, *next;
    bool create; /* not a hangup: the record's create, which the answer webhook waits for */
    struct store_call rec;
    char url[APP_URL_MAX + 1];
    char method[METHOD_MAX + 1];
};

static void hangup_unlink(struct hangup_wait *h)
{
    if (h->prev)
        h->prev->next = h->next;
    else
        h->e->hangups = h->next;
    if (h->next)
        h->next->prev = h->prev;
}

/* The record writer's thread: the record of arg (a struct hangup_wait,
 * not touched here: the loop may have freed it) is written, or given up. */
static void on_record_landed(void *ctx, void *arg)
{
    struct engine *e = ctx;

    pthread_mutex_lock(&e->hangup_mu);
    if (e->queue_open && sip_queue_push(e->queue, MSG_HANGUP, arg) != ERR_OK)
        log_warn("msg=\"hangup webhook lost: engine queue full\"");
    pthread_mutex_unlock(&e->hangup_mu);
}

static void notify_done(void *arg, const struct deliver_result *r);

static void answer(struct call *c, bool fallback);

/* An inbound call's record has been created: the answer webhook that
 * waited for it goes (the call may have ended meanwhile). */
static void record_created(struct hangup_wait *h)
{
    struct call *c;

    hangup_unlink(h);
    for (c = h->e->calls; c; c = c->next) {
        if (strcmp(c->rec.call_uuid, h->rec.call_uuid) != 0)
            continue;
        c->created = true;
        if (c->answer_waits) {
            c->answer_waits = false;
            answer(c, c->answer_waits_fallback);
        }
        break;
    }
    free(h);
}

/* Sends the hangup webhook of a record that has been written. */
static void hangup_send(struct hangup_wait *h)
{
    struct deliver_request req = {
        .url = h->url,
        .post = strcmp(h->method, "GET") != 0,
        .kind = WEBHOOK_HANGUP,
        .call = &h->rec,
        .timeout_ms = NOTIFY_TIMEOUT_MS,
    };
    char delivery_id[40];
    struct whsig_keys keys;
    uint64_t id;
    enum err e;

    hangup_unlink(h);
    rand_string(delivery_id, 26, DELIVERY_ALPHABET);
    req.delivery_id = delivery_id;
    sigkeys_get(h->e->sigkeys, h->rec.org_id, &keys);
    req.keys = &keys;
    e = deliver_send(h->e->deliver, &req, notify_done, NULL, &id);
    whsig_keys_wipe(&keys);
    if (e != ERR_OK)
        log_warn("msg=\"webhook not sent\" call=%s kind=hangup err=%s", h->rec.call_uuid,
                 err_str(e));
    free(h);
}

/* --- the call list --- */

static void call_link(struct engine *e, struct call *c)
{
    c->next = e->calls;
    if (e->calls)
        e->calls->prev = c;
    e->calls = c;
}

/* Copies the party's RTP statistics so far into the record, which the
 * hangup webhook and the last write carry (SIP.md section 6). */
static void record_rtp(struct call *c)
{
    struct sip_rtp_stats st;

    if (!c->leg)
        return;
    sip_leg_rtp_stats(c->leg, &st);
    c->rec.rtp_packets_received = (int64_t)st.received;
    c->rec.rtp_packets_lost = (int64_t)st.lost;
    c->rec.rtp_jitter_us = st.jitter_us;
    c->rtp_has_jitter = st.has_jitter;
}

/* Ends the call's media and SIP dialog: the bridge first, since it sends on
 * the leg. libre finishes any BYE or CANCEL on its own. */
static void call_drop_leg(struct call *c)
{
    record_rtp(c);
    bridge_close(c->bridge);
    c->bridge = NULL;
    sip_leg_hangup(c->leg);
    c->leg = NULL;
}

static void call_free(struct call *c)
{
    struct engine *e = c->e;

    if (c->prev)
        c->prev->next = c->next;
    else if (e->calls == c)
        e->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->answer_busy)
        deliver_cancel(e->deliver, c->answer_delivery);
    call_drop_leg(c);
    telemetry_call_end(&c->rec, c->rtp_has_jitter);
    sip_timer_free(c->tmr);
    sip_timer_free(c->fail_tmr);
    sip_timer_free(c->answer_tmr);
    recw_release(e->recw, c->slot);
    atomic_fetch_sub(&e->live, 1);
    free(c);
}

/* --- events and actions --- */

static bool apply(struct call *c, const struct callsm_event *ev);

static void on_call_timer(void *arg)
{
    struct call *c = arg;
    struct callsm_event ev = {.type = CALLSM_EV_TICK, .now_ms = clock_mono_ms()};

    (void)apply(c, &ev);
}

static void arm_timer(struct call *c)
{
    int64_t d = callsm_deadline(&c->sm);

    if (d == CALLSM_NO_DEADLINE) {
        sip_timer_cancel(c->tmr);
        return;
    }
    d -= clock_mono_ms();
    sip_timer_start(c->tmr, d > 0 ? d : 0);
}

static bool method_post(const char *m)
{
    return strcmp(m, "GET") != 0;
}

static void notify_done(void *arg, const struct deliver_result *r)
{
    (void)arg;
    (void)r;
}

/* Ring and hangup: sent once, response ignored. */
static void notify(struct call *c, enum webhook_kind kind, const char *url, const char *method)
{
    struct deliver_request req = {
        .url = url,
        .post = method_post(method),
        .kind = kind,
        .call = &c->rec,
        .delivery_id = c->delivery_id,
        .timeout_ms = NOTIFY_TIMEOUT_MS,
    };
    char delivery_id[sizeof(c->delivery_id)];
    struct whsig_keys keys;
    uint64_t id;
    enum err e;

    /* Each ring or hangup delivery has its own id; only an answer request
     * and its fallback share one. */
    rand_string(delivery_id, 26, DELIVERY_ALPHABET);
    req.delivery_id = delivery_id;
    record_fill(c);
    sigkeys_get(c->e->sigkeys, c->rec.org_id, &keys);
    req.keys = &keys;
    e = deliver_send(c->e->deliver, &req, notify_done, NULL, &id);
    whsig_keys_wipe(&keys);
    if (e != ERR_OK)
        log_warn("msg=\"webhook not sent\" call=%s kind=%s err=%s", c->rec.call_uuid,
                 kind == WEBHOOK_RING ? "ring" : "hangup", err_str(e));
}

/* Writes the final record and sends the hangup webhook once it is written
 * (or its write given up): on_record_landed tells the loop. */
static void hangup_after_record(struct call *c)
{
    struct engine *e = c->e;
    struct hangup_wait *h = calloc(1, sizeof(*h));

    c->last_status = callsm_status(&c->sm);
    c->last_answered = c->sm.answered;
    record_fill(c);
    if (!h) {
        recw_put(e->recw, c->slot, &c->rec, false);
        notify(c, WEBHOOK_HANGUP, c->out.hangup_url, c->out.hangup_method);
        return;
    }
    h->e = e;
    h->rec = c->rec;
    copy_str(h->url, sizeof(h->url), c->out.hangup_url);
    copy_str(h->method, sizeof(h->method), c->out.hangup_method);
    h->next = e->hangups;
    if (e->hangups)
        e->hangups->prev = h;
    e->hangups = h;
    recw_put_then(e->recw, c->slot, &c->rec, false, h);
}

/* Queues an inbound call's first write; record_created learns when it is
 * done. Without memory for the note the call goes on as if it were. */
static void record_create(struct call *c)
{
    struct engine *e = c->e;
    struct hangup_wait *h = calloc(1, sizeof(*h));

    if (!h) {
        c->created = true;
        recw_put(e->recw, c->slot, &c->rec, true);
        return;
    }
    h->e = e;
    h->create = true;
    copy_str(h->rec.call_uuid, sizeof(h->rec.call_uuid), c->rec.call_uuid);
    h->next = e->hangups;
    if (e->hangups)
        e->hangups->prev = h;
    e->hangups = h;
    recw_put_then(e->recw, c->slot, &c->rec, true, h);
}

static void answer_done(void *arg, const struct deliver_result *r)
{
    struct call *c = arg;
    struct stream_config sc;
    struct field_errors fe = {0};
    struct callsm_event ev = {.now_ms = clock_mono_ms()};

    c->answer_busy = false;
    ev.type =
        c->sm.state == CALL_STATE_FALLBACK ? CALLSM_EV_FALLBACK_RESULT : CALLSM_EV_ANSWER_RESULT;
    ev.ok = r->ok && stream_parse(r->body, r->body_len, &sc, &fe) == ERR_OK;
    if (ev.ok)
        c->stream = sc;
    if (!ev.ok)
        log_info("msg=\"answer webhook failed\" call=%s which=%s why=\"%s\" status=%ld",
                 c->rec.call_uuid, ev.type == CALLSM_EV_FALLBACK_RESULT ? "fallback" : "answer",
                 r->ok ? "invalid stream" : (r->error ? r->error : "error"), r->http_status);
    (void)apply(c, &ev);
}

static void on_fail_timer(void *arg);
static void on_stream_ended(void *arg);
static void open_stream(struct call *c);

static void answer(struct call *c, bool fallback)
{
    struct deliver_request req = {
        .url = fallback ? c->out.fallback_url : c->out.answer_url,
        .post = method_post(fallback ? c->out.fallback_method : c->out.answer_method),
        .kind = WEBHOOK_ANSWER,
        .call = &c->rec,
        .delivery_id = c->delivery_id,
        .timeout_ms = ANSWER_TIMEOUT_MS,
        .want_body = true,
    };
    struct whsig_keys keys;
    enum err e;

    record_fill(c);
    sigkeys_get(c->e->sigkeys, c->rec.org_id, &keys);
    req.keys = &keys;
    e = deliver_send(c->e->deliver, &req, answer_done, c, &c->answer_delivery);
    whsig_keys_wipe(&keys);
    if (e == ERR_OK) {
        c->answer_busy = true;
        return;
    }
    /* Reported from the loop like any other outcome, never from inside
     * apply, which is still using the call. */
    log_warn("msg=\"answer webhook not sent\" call=%s err=%s", c->rec.call_uuid, err_str(e));
    sip_timer_start(c->fail_tmr, 0);
}

static void on_fail_timer(void *arg)
{
    struct call *c = arg;
    struct deliver_result r = {.ok = false, .error = "not sent"};

    if (c->stream_end_pending) {
        c->stream_end_pending = false;
        on_stream_ended(c);
        return;
    }
    answer_done(c, &r);
}

static void on_stream_ended(void *arg)
{
    struct call *c = arg;
    struct callsm_event ev = {.type = CALLSM_EV_STREAM_ENDED,
                              .now_ms = clock_mono_ms(),
                              .keep_call_alive = c->stream.keep_call_alive};

    if (apply(c, &ev) && c->bridge) {
        /* Kept alive: the call goes on, silent, without its stream. */
        bridge_close(c->bridge);
        c->bridge = NULL;
    }
}

/* AGENT.md 1: the customer's hangup event (at once, or after the audio
 * queued before it) ends the call like the REST hangup. */
static void on_stream_hangup(void *arg)
{
    struct call *c = arg;
    struct callsm_event ev = {.type = CALLSM_EV_LOCAL_HANGUP, .now_ms = clock_mono_ms()};

    (void)apply(c, &ev);
}

static void open_stream(struct call *c)
{
    enum err e = ERR_UNAVAILABLE;
    struct whsig_keys keys;

    /* The secrets come from memory (sigkeys), never from the database: the
     * loop must not wait, and the audio must not wait for the loop. */
    sigkeys_get(c->e->sigkeys, c->rec.org_id, &keys);
    if (c->leg)
        e = bridge_open(&c->e->benv, &c->stream, &keys, c->rec.call_uuid, &c->sip_headers, c->leg,
                        on_stream_ended, c, &c->bridge);
    whsig_keys_wipe(&keys);
    if (e == ERR_OK)
        return;
    /* Counts as the stream ending at once (CALLS.md 7), told from the loop. */
    log_warn("msg=\"stream not opened\" call=%s err=%s", c->rec.call_uuid, err_str(e));
    c->stream_end_pending = true;
    sip_timer_start(c->fail_tmr, 0);
}

/* Applies one event and carries out the actions. Returns false when the
 * call has been freed. */
static bool apply(struct call *c, const struct callsm_event *ev)
{
    struct callsm_actions acts;
    enum err e = callsm_event_apply(&c->sm, ev, &acts);
    bool closed_needed = false;
    size_t i;

    if (e != ERR_OK) {
        log_debug("msg=\"call event ignored\" call=%s state=%s event=%d err=%s", c->rec.call_uuid,
                  callsm_state_name(c->sm.state), (int)ev->type, err_str(e));
        return true;
    }
    for (i = 0; i < acts.n; i++) {
        switch (acts.v[i]) {
        case CALLSM_ACT_RING_WEBHOOK:
            notify(c, WEBHOOK_RING, c->out.ring_url, c->out.ring_method);
            break;
        case CALLSM_ACT_SEND_CANCEL:
        case CALLSM_ACT_SEND_REJECT:
        case CALLSM_ACT_SEND_BYE:
            /* libre finishes the transaction on its own; the call need not wait. */
            call_drop_leg(c);
            closed_needed = true;
            break;
        case CALLSM_ACT_ANSWER_WEBHOOK:
        case CALLSM_ACT_FALLBACK_WEBHOOK:
            if (c->created) {
                answer(c, acts.v[i] == CALLSM_ACT_FALLBACK_WEBHOOK);
            } else {
                c->answer_waits = true;
                c->answer_waits_fallback = acts.v[i] == CALLSM_ACT_FALLBACK_WEBHOOK;
            }
            break;
        case CALLSM_ACT_OPEN_STREAM: open_stream(c); break;
        case CALLSM_ACT_CLOSE_STREAM:
            bridge_close(c->bridge);
            c->bridge = NULL;
            break;
        case CALLSM_ACT_HANGUP_WEBHOOK:
            record_rtp(c);
            hangup_after_record(c);
            break;
        case CALLSM_ACT_FREE:
            /* Always: the party's RTP statistics were taken when its leg
             * dropped, maybe after the final status was written. */
            record_sync(c, true);
            log_info("msg=\"call ended\" call=%s status=%s cause=%s", c->rec.call_uuid,
                     c->rec.status, c->sm.hangup_cause);
            call_free(c);
            return false;
        }
    }
    record_sync(c, false);
    if (closed_needed && c->sm.state == CALL_STATE_ENDING) {
        struct callsm_event cl = {.type = CALLSM_EV_CLOSED, .now_ms = clock_mono_ms()};

        return apply(c, &cl);
    }
    arm_timer(c);
    return true;
}

/* --- SIP reports --- */

static void on_leg_progress(void *arg, int code)
{
    struct callsm_event ev = {
        .type = CALLSM_EV_PROVISIONAL, .now_ms = clock_mono_ms(), .sip_code = code};

    (void)apply(arg, &ev);
}

/* Keeps the established dialog's identifiers in the record, so that
 * another node can send its BYE if this one dies (SIP.md section 5). */
static void record_dialog(struct call *c)
{
    struct sip_dialog_ids ids;
    struct store_dialog *d = &c->rec.dialog;

    if (!sip_leg_dialog_ids(c->leg, &ids)) {
        log_warn("msg=\"dialog identifiers not kept: no other node could end this call\" "
                 "call=%s",
                 c->rec.call_uuid);
        return;
    }
    copy_str(d->call_id, sizeof(d->call_id), ids.call_id);
    copy_str(d->local_uri, sizeof(d->local_uri), ids.local_uri);
    copy_str(d->local_tag, sizeof(d->local_tag), ids.local_tag);
    copy_str(d->remote_uri, sizeof(d->remote_uri), ids.remote_uri);
    copy_str(d->remote_tag, sizeof(d->remote_tag), ids.remote_tag);
    copy_str(d->remote_target, sizeof(d->remote_target), ids.remote_target);
    copy_str(d->route_set, sizeof(d->route_set), ids.route_set);
    d->next_cseq = ids.next_cseq;
}

static void on_leg_answered(void *arg)
{
    struct callsm_event ev = {.type = CALLSM_EV_ANSWERED, .now_ms = clock_mono_ms()};
    struct call *c = arg;

    record_dialog(c);
    if (apply(c, &ev))
        record_sync(c, true);
}

static void on_leg_confirmed(void *arg)
{
    struct callsm_event ev = {.type = CALLSM_EV_ACK, .now_ms = clock_mono_ms()};
    struct call *c = arg;

    log_info("msg=\"inbound call confirmed by the caller's ACK\" call=%s", c->rec.call_uuid);
    record_dialog(c);
    if (apply(c, &ev))
        record_sync(c, true);
}

static void on_leg_rtp(void *arg, int pt, uint32_t ts, bool marker, const uint8_t *payload,
                       size_t len)
{
    struct call *c = arg;

    (void)marker;
    if (c->bridge)
        bridge_rtp(c->bridge, pt, ts, payload, len);
}

static void on_leg_dtmf(void *arg, char digit)
{
    struct call *c = arg;

    if (c->bridge)
        bridge_dtmf(c->bridge, digit);
}

static void on_leg_closed(void *arg, int code, int cause, bool timeout)
{
    struct call *c = arg;
    struct callsm_event ev = {.now_ms = clock_mono_ms(), .cause = cause};

    call_drop_leg(c); /* the dialog is over already: this only frees */
    if (timeout)
        ev.type = CALLSM_EV_TIMEOUT;
    else if (code >= 300) {
        ev.type = CALLSM_EV_FINAL_RESPONSE;
        ev.sip_code = code;
    } else if (!c->sm.answered)
        ev.type = CALLSM_EV_CANCEL_RECEIVED;
    else
        ev.type = CALLSM_EV_BYE_RECEIVED;
    if (apply(c, &ev) && c->sm.state == CALL_STATE_ENDING) {
        struct callsm_event cl = {.type = CALLSM_EV_CLOSED, .now_ms = clock_mono_ms()};

        (void)apply(c, &cl);
    }
}

/* Inbound: the ringing time is over; answer, unless the call has ended. */
static void on_answer_timer(void *arg)
{
    struct call *c = arg;
    struct callsm_event ev = {.now_ms = clock_mono_ms()};

    if (!c->leg || c->sm.state != CALL_STATE_RINGING)
        return;
    if (sip_leg_answer(c->leg) != ERR_OK) {
        log_warn("msg=\"inbound call not answered\" call=%s", c->rec.call_uuid);
        ev.type = CALLSM_EV_LOCAL_HANGUP;
    } else {
        ev.type = CALLSM_EV_ANSWERED;
    }
    (void)apply(c, &ev);
}

static struct call *call_new(struct engine *e)
{
    struct call *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->e = e;
    c->tmr = sip_timer_new(on_call_timer, c);
    c->fail_tmr = sip_timer_new(on_fail_timer, c);
    c->answer_tmr = sip_timer_new(on_answer_timer, c);
    if (!c->tmr || !c->fail_tmr || !c->answer_tmr) {
        sip_timer_free(c->tmr);
        sip_timer_free(c->fail_tmr);
        sip_timer_free(c->answer_tmr);
        free(c);
        return NULL;
    }
    telemetry_call_begin();
    c->last_status = CALL_STATUS_QUEUED;
    c->wall_offset = clock_now_ms() - clock_mono_ms();
    uuid4(c->rec.call_uuid);
    copy_str(c->rec.node_id, sizeof(c->rec.node_id), e->node_id);
    rand_string(c->delivery_id, 26, DELIVERY_ALPHABET);
    return c;
}

/* --- routing inbound INVITEs --- */

/* An inbound INVITE waiting for its routing look-up. */
struct route_wait {
    struct router_job job;
    struct engine *e;
    struct route_wait *prev, *next;
    struct sip_held *held;
    struct sip_timer *tmr; /* the look-up's deadline */
    bool answered;         /* 503 sent at the deadline: the look-up's result is dropped */
};

static void route_wait_free(struct route_wait *w)
{
    struct engine *e = w->e;

    if (w->prev)
        w->prev->next = w->next;
    else if (e->routing == w)
        e->routing = w->next;
    if (w->next)
        w->next->prev = w->prev;
    sip_timer_free(w->tmr);
    if (!w->answered)
        sip_held_finish(w->held, 503, 0);
    free(w);
}

static void on_route_deadline(void *arg)
{
    struct route_wait *w = arg;

    log_warn("msg=\"inbound call refused: routing look-up not answered in time\" to=%s "
             "timeout_ms=%d",
             w->job.to, ROUTE_DEADLINE_MS);
    w->answered = true;
    sip_held_finish(w->held, 503, ROUTE_RETRY_AFTER_S);
    w->held = NULL;
}

/* The router's thread: the answer goes to the loop. */
static void on_routed(void *ctx, struct router_job *job)
{
    struct engine *e = ctx;

    /* Not delivered only when the loop is gone: the wait is freed with it. */
    if (sip_queue_push(e->queue, MSG_ROUTED, job) != ERR_OK)
        log_error("msg=\"routing answer not told to the engine\" to=%s", job->to);
}

static int invite_routed(struct engine *e, struct sip_incoming *in, const struct router_job *j);

static void route_done(struct route_wait *w)
{
    struct sip_incoming *in;

    if (!w->answered) {
        in = sip_held_incoming(w->held);
        sip_held_finish(w->held, in ? invite_routed(w->e, in, &w->job) : 0, 0);
        w->answered = true;
    }
    route_wait_free(w);
}

/* An INVITE is held (100 Trying) while the router looks its number up. */
static int on_invite(void *arg, struct sip_incoming *in)
{
    struct engine *e = arg;
    const char *to_raw = sip_incoming_to(in);
    struct route_wait *w;

    if (atomic_load(&e->stopping) || atomic_load(&e->draining))
        return 503;
    w = calloc(1, sizeof(*w));
    if (!w)
        return 503;
    if (e164_normalize(to_raw, strlen(to_raw), e->default_cc, w->job.to) != ERR_OK) {
        free(w);
        return 404;
    }
    w->e = e;
    w->answered = true; /* until held */
    w->tmr = sip_timer_new(on_route_deadline, w);
    if (!w->tmr || sip_incoming_hold(e->ep, in, &w->held) != ERR_OK) {
        sip_timer_free(w->tmr);
        free(w);
        return 503;
    }
    w->answered = false;
    w->next = e->routing;
    if (e->routing)
        e->routing->prev = w;
    e->routing = w;
    w->job.deadline_ms = clock_mono_ms() + ROUTE_DEADLINE_MS;
    if (router_submit(e->router, &w->job) != ERR_OK) {
        log_warn("msg=\"inbound call refused: too many routing look-ups waiting\" max=%d",
                 ROUTE_QUEUE);
        route_wait_free(w); /* 503 */
        return 0;
    }
    sip_timer_start(w->tmr, ROUTE_DEADLINE_MS);
    return 0;
}

/* Decides a held INVITE with its look-up's answer: accepted (0) or the
 * status to refuse it with. */
static int invite_routed(struct engine *e, struct sip_incoming *in, const struct router_job *j)
{
    const char *from_raw = sip_incoming_from(in), *to = j->to, *nstatus = j->number_status;
    char from[E164_MAX];
    struct store_app app = j->app;
    struct callsm_config cfg = {0};
    struct callsm_event ev;
    struct call *c;
    int64_t org_id = j->org_id, now = clock_mono_ms();
    enum err err = j->err;

    if (atomic_load(&e->stopping))
        return 503;
    if (err == ERR_NOT_FOUND || (err == ERR_OK && (!app.app_id[0] || strcmp(nstatus, "ACTIVE"))))
        return 404;
    if (err != ERR_OK) {
        log_error("msg=\"inbound call not routed\" err=%s", err_str(err));
        return 503;
    }
    if (strcmp(app.status, "ACTIVE") != 0)
        return 480;
    if (atomic_fetch_add(&e->live, 1) >= e->cfg.max_calls) {
        atomic_fetch_sub(&e->live, 1);
        log_warn("msg=\"inbound call refused: --max-calls reached\" max=%u", e->cfg.max_calls);
        return 503;
    }
    c = call_new(e);
    if (!c) {
        atomic_fetch_sub(&e->live, 1);
        return 503;
    }
    cfg.direction = CALL_DIR_INBOUND;
    cfg.ring_timeout_s = INBOUND_RING_TIMEOUT_S;
    cfg.call_time_limit_s = INBOUND_TIME_LIMIT_S;
    cfg.has_fallback_url = app.fallback_answer_url[0] != '\0';
    cfg.has_hangup_url = app.hangup_url[0] != '\0';
    if (callsm_init(&c->sm, &cfg, now) != ERR_OK) {
        call_free(c);
        return 500;
    }
    c->rec.org_id = org_id;
    copy_str(c->rec.app_id, sizeof(c->rec.app_id), app.app_id);
    if (e164_normalize(from_raw, strlen(from_raw), e->default_cc, from) == ERR_OK)
        copy_str(c->rec.from, sizeof(c->rec.from), from);
    else
        copy_str(c->rec.from, sizeof(c->rec.from), from_raw);
    copy_str(c->rec.to, sizeof(c->rec.to), to);
    copy_str(c->rec.direction, sizeof(c->rec.direction), call_direction_name(CALL_DIR_INBOUND));
    copy_str(c->rec.status, sizeof(c->rec.status), call_status_name(CALL_STATUS_RINGING));
    c->last_status = CALL_STATUS_RINGING;
    c->rec.started_at = wall_of(c, now);
    c->rec.created_at = c->rec.started_at;
    copy_str(c->out.answer_url, sizeof(c->out.answer_url), app.answer_url);
    copy_str(c->out.answer_method, sizeof(c->out.answer_method), app.answer_method);
    copy_str(c->out.fallback_url, sizeof(c->out.fallback_url), app.fallback_answer_url);
    copy_str(c->out.fallback_method, sizeof(c->out.fallback_method), app.fallback_answer_method);
    copy_str(c->out.hangup_url, sizeof(c->out.hangup_url), app.hangup_url);
    copy_str(c->out.hangup_method, sizeof(c->out.hangup_method), app.hangup_method);
    copy_str(c->rec.hangup_url, sizeof(c->rec.hangup_url), app.hangup_url);
    copy_str(c->rec.hangup_method, sizeof(c->rec.hangup_method), app.hangup_method);
    c->sip_headers = *sip_incoming_xheaders(in);
    c->slot = recw_reserve(e->recw);
    if (!c->slot) {
        log_warn("msg=\"inbound call refused: call records are waiting for the database\"");
        call_free(c);
        return 503;
    }
    record_create(c);
    err = sip_leg_accept(e->ep, in, c, e->cfg.answer_delay_ms == 0, &c->leg);
    if (err != ERR_OK) {
        /* Refused (488 or 503): recorded as failed, no webhook. */
        c->rec.ended_at = clock_now_ms();
        copy_str(c->rec.status, sizeof(c->rec.status), call_status_name(CALL_STATUS_FAILED));
        copy_str(c->rec.hangup_cause, sizeof(c->rec.hangup_cause),
                 err == ERR_INVALID ? "88" : "41");
        recw_put(e->recw, c->slot, &c->rec, false);
        call_free(c);
        return err == ERR_INVALID ? 488 : 503;
    }
    call_link(e, c);
    if (e->cfg.answer_delay_ms) {
        /* Ringing: the caller may still CANCEL. */
        log_info("msg=\"inbound call ringing\" call=%s app=%s", c->rec.call_uuid, c->rec.app_id);
        sip_timer_start(c->answer_tmr, e->cfg.answer_delay_ms);
        arm_timer(c);
        return 0;
    }
    log_info("msg=\"inbound call answered, awaiting the ACK\" call=%s app=%s", c->rec.call_uuid,
             c->rec.app_id);
    ev = (struct callsm_event){.type = CALLSM_EV_ANSWERED, .now_ms = clock_mono_ms()};
    (void)apply(c, &ev);
    return 0;
}

static void place(struct engine *e, struct call *c)
{
    struct callsm_event ev = {.type = CALLSM_EV_INVITE_SENT};
    enum err err;

    call_link(e, c);
    if (atomic_load(&e->stopping))
        err = ERR_UNAVAILABLE;
    else
        err = sip_leg_dial(e->ep, c->rec.from, c->rec.to, &c->out.sip_headers, c, &c->leg);
    ev.now_ms = clock_mono_ms();
    if (!apply(c, &ev))
        return;
    if (err != ERR_OK) {
        /* Could not even send the INVITE: a local failure, cause 41. */
        struct callsm_event f = {
            .type = CALLSM_EV_FINAL_RESPONSE, .now_ms = clock_mono_ms(), .sip_code = 500};

        log_warn("msg=\"outbound call not placed\" call=%s err=%s", c->rec.call_uuid, err_str(err));
        (void)apply(c, &f);
        return;
    }
    log_info("msg=\"outbound call placed\" call=%s request=%s", c->rec.call_uuid,
             c->rec.request_uuid);
}

/* --- shutdown --- */

static void on_stop_tick(void *arg)
{
    struct engine *e = arg;

    /* Done when every call, webhook, stream event and un-REGISTER in
     * flight is. */
    if ((!e->calls && !e->hangups && deliver_pending(e->deliver) == 0 &&
         bridge_events_in_flight() == 0 && !sip_ep_unregistering(e->ep)) ||
        clock_mono_ms() >= e->stop_deadline_ms) {
        if (e->calls || deliver_pending(e->deliver))
            log_warn("msg=\"engine stopped before every call finished\" calls=%u webhooks=%zu",
                     atomic_load(&e->live), deliver_pending(e->deliver));
        sip_loop_stop();
        return;
    }
    sip_timer_start(e->stop_tmr, STOP_POLL_MS);
}

static void begin_stop(struct engine *e, int grace_ms)
{
    struct call *c, *next;

    cluster_signal_stop(e->cluster);
    atomic_store(&e->stopping, true);
    e->stop_deadline_ms = clock_mono_ms() + grace_ms;
    for (c = e->calls; c; c = next) {
        struct callsm_event ev = {.type = CALLSM_EV_LOCAL_HANGUP, .now_ms = clock_mono_ms()};

        next = c->next;
        (void)apply(c, &ev);
    }
    sip_ep_unregister(e->ep);
    sip_timer_start(e->stop_tmr, 0);
}

static void app_deleted(struct engine *e, const char *app_id)
{
    struct call *c, *next;

    for (c = e->calls; c; c = next) {
        struct callsm_event ev = {.type = CALLSM_EV_LOCAL_HANGUP, .now_ms = clock_mono_ms()};

        next = c->next;
        if (strcmp(c->rec.app_id, app_id) != 0 || c->sm.answered ||
            call_status_final(callsm_status(&c->sm)))
            continue;
        log_info("msg=\"call cancelled: its app was deleted\" call=%s", c->rec.call_uuid);
        (void)apply(c, &ev);
    }
}

/* A call of a dead node, ended here in the database: its hangup webhook,
 * and for an answered call the BYE that stops the carrier's billing. */
static void reaped(struct engine *e, struct store_call *rec)
{
    const struct store_dialog *d = &rec->dialog;

    if (rec->hangup_url[0]) {
        struct deliver_request req = {
            .url = rec->hangup_url,
            .post = method_post(rec->hangup_method),
            .kind = WEBHOOK_HANGUP,
            .call = rec,
            .timeout_ms = NOTIFY_TIMEOUT_MS,
        };
        char delivery_id[40];
        struct whsig_keys keys;
        uint64_t id;

        rand_string(delivery_id, 26, DELIVERY_ALPHABET);
        req.delivery_id = delivery_id;
        sigkeys_get(e->sigkeys, rec->org_id, &keys);
        req.keys = &keys;
        if (deliver_send(e->deliver, &req, notify_done, NULL, &id) != ERR_OK)
            log_warn("msg=\"webhook not sent\" call=%s kind=hangup", rec->call_uuid);
        whsig_keys_wipe(&keys);
    }
    if (rec->answered_at && d->next_cseq > 0) {
        struct sip_dialog_ids ids = {0};

        copy_str(ids.call_id, sizeof(ids.call_id), d->call_id);
        copy_str(ids.local_uri, sizeof(ids.local_uri), d->local_uri);
        copy_str(ids.local_tag, sizeof(ids.local_tag), d->local_tag);
        copy_str(ids.remote_uri, sizeof(ids.remote_uri), d->remote_uri);
        copy_str(ids.remote_tag, sizeof(ids.remote_tag), d->remote_tag);
        copy_str(ids.remote_target, sizeof(ids.remote_target), d->remote_target);
        copy_str(ids.route_set, sizeof(ids.route_set), d->route_set);
        ids.next_cseq = (uint32_t)d->next_cseq;
        if (sip_ep_bye(e->ep, &ids, 38) == ERR_OK)
            log_info("msg=\"BYE sent for a dead node's call\" call=%s", rec->call_uuid);
    } else if (rec->answered_at)
        log_warn("msg=\"no BYE for a dead node's answered call: its dialog was not stored\" "
                 "call=%s",
                 rec->call_uuid);
    free(rec);
}

/* AGENT.md section 3: the REST hangup reached the call's node. */
static void call_hangup(struct engine *e, const char *call_uuid)
{
    struct call *c;

    for (c = e->calls; c; c = c->next) {
        struct callsm_event ev = {.type = CALLSM_EV_LOCAL_HANGUP, .now_ms = clock_mono_ms()};

        if (strcmp(c->rec.call_uuid, call_uuid) != 0)
            continue;
        if (call_status_final(callsm_status(&c->sm)))
            return;
        log_info("msg=\"call hung up through the API\" call=%s", call_uuid);
        (void)apply(c, &ev);
        return;
    }
    log_info("msg=\"hangup for a call not live here\" call=%s", call_uuid);
}

static void on_queue(void *arg, int id, void *data)
{
    struct engine *e = arg;

    switch (id) {
    case MSG_PLACE: place(e, data); break;
    case MSG_STOP: begin_stop(e, (int)(intptr_t)data); break;
    case MSG_WS: bridge_ws_message(data); break;
    case MSG_APP_DELETED:
        app_deleted(e, data);
        free(data);
        break;
    case MSG_ROUTED: route_done(data); break;
    case MSG_HANGUP:
        if (((struct hangup_wait *)data)->create)
            record_created(data);
        else
            hangup_send(data);
        break;
    case MSG_DRAIN: sip_ep_drain(e->ep); break;
    case MSG_REAPED: reaped(e, data); break;
    case MSG_CALL_HANGUP:
        call_hangup(e, data);
        free(data);
        break;
    default: break;
    }
}

/* --- the cluster's reports, from its threads --- */

/* Queues onto the loop from another thread, unless the engine is past
 * taking it; false (and data not taken) then. */
static bool push_from_thread(struct engine *e, int id, void *data)
{
    bool ok;

    pthread_mutex_lock(&e->hangup_mu);
    ok = e->queue_open && sip_queue_push(e->queue, id, data) == ERR_OK;
    pthread_mutex_unlock(&e->hangup_mu);
    return ok;
}

static void on_cluster_reaped(void *arg, const struct store_call *call)
{
    struct engine *e = arg;
    struct store_call *copy = malloc(sizeof(*copy));

    if (copy)
        *copy = *call;
    if (!copy || !push_from_thread(e, MSG_REAPED, copy)) {
        log_error("msg=\"hangup webhook and BYE of a dead node's call not sent: engine busy or "
                  "stopping\" call=%s",
                  call->call_uuid);
        free(copy);
    }
}

static void on_cluster_command(void *arg, const char *kind, const char *cmd_arg)
{
    struct engine *e = arg;
    int id;
    char *copy;

    if (strcmp(kind, "hangup") == 0)
        id = MSG_CALL_HANGUP;
    else if (strcmp(kind, "app_deleted") == 0)
        id = MSG_APP_DELETED;
    else {
        log_warn("msg=\"unknown command for this node ignored\" kind=%s", kind);
        return;
    }
    copy = strdup(cmd_arg);
    if (!copy || !push_from_thread(e, id, copy)) {
        log_error("msg=\"command for this node dropped: engine busy or stopping\" kind=%s", kind);
        free(copy);
    }
}

/* --- deliver's hooks onto the loop --- */

static void on_deliver_fd(void *arg, int fd, bool readable, bool writable)
{
    struct engine *e = arg;

    deliver_on_fd(e->deliver, fd, readable, writable);
}

static int hook_fd_watch(void *ctx, int fd, bool want_read, bool want_write)
{
    return sip_fd_watch(fd, want_read, want_write, on_deliver_fd, ctx) == ERR_OK ? 0 : -1;
}

static void on_deliver_timer(void *arg)
{
    struct engine *e = arg;

    deliver_on_timer(e->deliver);
}

static void hook_timer_set(void *ctx, long ms)
{
    struct engine *e = ctx;

    if (ms < 0)
        sip_timer_cancel(e->deliver_tmr);
    else
        sip_timer_start(e->deliver_tmr, ms);
}

/* --- the thread --- */

static void started(struct engine *e, enum err err)
{
    pthread_mutex_lock(&e->mu);
    e->started = true;
    e->start_err = err;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

/* The record writer and the router, each with its own connection. */
static enum err records_start(struct engine *e)
{
    struct recw_config rc = {.slots = e->cfg.max_calls + RECORD_BACKLOG,
                             .store = e->cfg.store,
                             .landed = on_record_landed,
                             .landed_ctx = e};
    enum err err = recw_start(&rc, &e->recw);

    if (err != ERR_OK)
        return err;
    err = router_start(e->cfg.store, ROUTE_QUEUE, on_routed, e, &e->router);
    if (err != ERR_OK) {
        recw_stop(e->recw, 0);
        e->recw = NULL;
    }
    return err;
}

/* Stops the router and refuses the INVITEs still waiting (503). */
static void routing_stop(struct engine *e)
{
    router_stop(e->router);
    e->router = NULL;
    while (e->routing)
        route_wait_free(e->routing);
}

static void *engine_main(void *arg)
{
    struct engine *e = arg;
    struct sip_ep_handlers h = {
        .arg = e,
        .invite = on_invite,
        .progress = on_leg_progress,
        .answered = on_leg_answered,
        .confirmed = on_leg_confirmed,
        .closed = on_leg_closed,
        .rtp = on_leg_rtp,
        .dtmf = on_leg_dtmf,
    };
    struct deliver_hooks dh = {.ctx = e, .fd_watch = hook_fd_watch, .timer_set = hook_timer_set};
    enum err err;

    err = sip_loop_init();
    if (err != ERR_OK) {
        started(e, err);
        return NULL;
    }
    pthread_mutex_init(&e->hangup_mu, NULL);
    err = records_start(e);
    if (err != ERR_OK)
        goto out_loop;
    err = ERR_NOMEM;
    e->deliver_tmr = sip_timer_new(on_deliver_timer, e);
    e->stop_tmr = sip_timer_new(on_stop_tick, e);
    if (!e->deliver_tmr || !e->stop_tmr)
        goto out_timers;
    err = deliver_new(&dh, e->version, e->cfg.deny_private_urls, &e->deliver);
    if (err != ERR_OK)
        goto out_timers;
    err = sip_queue_new(on_queue, e, &e->queue);
    if (err != ERR_OK)
        goto out_deliver;
    err = ws_hub_new(e->cfg.deny_private_urls, &e->hub);
    if (err != ERR_OK)
        goto out_queue;
    err = ERR_NOMEM;
    e->benv.hub = e->hub;
    e->benv.queue = e->queue;
    e->benv.queue_id = MSG_WS;
    e->benv.hangup = on_stream_hangup;
    e->benv.scratch = malloc(STREAMMSG_AUDIO_MAX);
    e->benv.scratch2 = malloc(STREAMMSG_AUDIO_MAX);
    if (!e->benv.scratch || !e->benv.scratch2 || bridge_pacer_new(&e->benv.pacer) != ERR_OK)
        goto out_hub;
    err = sip_ep_new(&e->cfg.sip, &h, &e->ep);
    if (err != ERR_OK)
        goto out_hub;
    e->can_dial = sip_ep_can_dial(e->ep);
    pthread_mutex_lock(&e->hangup_mu);
    e->queue_open = true;
    pthread_mutex_unlock(&e->hangup_mu);
    {
        struct cluster_config cc = {
            .store = e->cfg.store,
            .node_id = e->node_id,
            .arg = e,
            .reaped = on_cluster_reaped,
            .command = on_cluster_command,
        };

        err = cluster_start(&cc, &e->cluster);
        if (err != ERR_OK)
            goto out_ep;
    }
    if (pacer_start(e) != ERR_OK)
        log_error("msg=\"pacer not started: queued calls wait for another node\"");
    started(e, ERR_OK);

    sip_loop_run();

    pacer_stop(e);
    cluster_stop(e->cluster);
    e->cluster = NULL;
    routing_stop(e);
    while (e->calls)
        call_free(e->calls);
    err = ERR_OK;
out_ep:
    sip_ep_free(e->ep);
out_hub:
    ws_hub_free(e->hub);
    bridge_pacer_free(e->benv.pacer);
    free(e->benv.scratch);
    free(e->benv.scratch2);
out_queue:
    pthread_mutex_lock(&e->hangup_mu);
    e->queue_open = false;
    pthread_mutex_unlock(&e->hangup_mu);
    while (e->hangups) {
        struct hangup_wait *hw = e->hangups;

        log_warn("msg=\"hangup webhook not sent: engine stopped before its record was written\" "
                 "call=%s",
                 hw->rec.call_uuid);
        hangup_unlink(hw);
        free(hw);
    }
    sip_queue_free(e->queue);
    e->queue = NULL;
    /* The cluster's threads are stopped: what they queued is dropped. */
out_deliver:
    deliver_free(e->deliver);
out_timers:
    sip_timer_free(e->deliver_tmr);
    sip_timer_free(e->stop_tmr);
    routing_stop(e);
    recw_stop(e->recw, RECORD_DRAIN_MS);
out_loop:
    pthread_mutex_destroy(&e->hangup_mu);
    sip_loop_close();
    if (err != ERR_OK)
        started(e, err);
    return NULL;
}

enum err engine_start(const struct engine_config *cfg, struct engine **out)
{
    struct engine *e;
    sigset_t all, old;
    enum err err;

    if (!cfg->sip.listen || !cfg->store || cfg->sip.rtp_low < 1 || cfg->sip.rtp_high > 65535 ||
        cfg->sip.rtp_low > cfg->sip.rtp_high || cfg->max_calls < 1)
        return ERR_INVALID;
    e = calloc(1, sizeof(*e));
    if (!e)
        return ERR_NOMEM;
    e->cfg = *cfg;
    copy_str(e->node_id, sizeof(e->node_id), cfg->node_id ? cfg->node_id : "");
    e->cfg.node_id = e->node_id;
    copy_str(e->version, sizeof(e->version), cfg->version ? cfg->version : "0");
    copy_str(e->default_cc, sizeof(e->default_cc), cfg->default_cc ? cfg->default_cc : "91");
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    /* The engine thread takes no signals; main's thread handles them. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = sigkeys_start(cfg->store, &e->sigkeys);
    if (err != ERR_OK) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        free(e);
        return err;
    }
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        sigkeys_stop(e->sigkeys);
        free(e);
        return ERR_NOMEM;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_mutex_lock(&e->mu);
    while (!e->started)
        pthread_cond_wait(&e->cv, &e->mu);
    err = e->start_err;
    pthread_mutex_unlock(&e->mu);
    if (err != ERR_OK) {
        pthread_join(e->thread, NULL);
        sigkeys_stop(e->sigkeys);
        free(e);
        return err;
    }
    *out = e;
    return ERR_OK;
}

void engine_stop(struct engine *e, int grace_ms)
{
    if (!e)
        return;
    atomic_store(&e->stopping, true);
    if (sip_queue_push(e->queue, MSG_STOP, (void *)(intptr_t)grace_ms) != ERR_OK)
        log_error("msg=\"engine stop not queued\"");
    pthread_join(e->thread, NULL);
    sigkeys_stop(e->sigkeys);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

void engine_drain(struct engine *e)
{
    if (!e || atomic_exchange(&e->draining, true))
        return;
    if (sip_queue_push(e->queue, MSG_DRAIN, NULL) != ERR_OK)
        log_error("msg=\"drain not told to the SIP edge: OPTIONS still answers 200\"");
}

bool engine_draining(const struct engine *e)
{
    return e && atomic_load(&((struct engine *)e)->draining);
}

void engine_app_deleted(struct engine *e, struct store_conn *c, const char *app_id)
{
    /* Its waiting calls first, once, whichever node they were queued on. */
    engine_queue_cancel(e, c, NULL, app_id, NULL, NULL);
    if (e) {
        char *id = strdup(app_id);

        if (!id || sip_queue_push(e->queue, MSG_APP_DELETED, id) != ERR_OK) {
            log_error("msg=\"app deletion not told to the engine\" app=%s", app_id);
            free(id);
        }
    }
    /* Every live node, this one too (a second cancel finds nothing). */
    if (cluster_shared(c) &&
        c->ops->cmd_post(c, NULL, CLUSTER_DEAD_MS, "app_deleted", app_id) != ERR_OK)
        log_error("msg=\"app deletion not told to the other nodes: their ringing calls go on\" "
                  "app=%s",
                  app_id);
}

enum err engine_call_hangup(struct engine *e, struct store_conn *c, const struct store_call *call)
{
    enum call_status st;
    char *id;
    enum err err;

    if (call_status_parse(call->status, &st) != ERR_OK || call_status_final(st))
        return ERR_CONFLICT;
    /* A call waiting in a queue has no owner yet: it ends here, unless a
     * node claimed it meanwhile, which then owns it. */
    if (!call->node_id[0] && st == CALL_STATUS_QUEUED) {
        struct store_call now;
        bool cancelled = false;

        engine_queue_cancel(e, c, call->call_uuid, NULL, NULL, &cancelled);
        if (cancelled)
            return ERR_OK;
        err = c->ops->call_get(c, call->org_id, call->call_uuid, &now);
        if (err == ERR_OK && now.node_id[0])
            return engine_call_hangup(e, c, &now);
        if (err == ERR_OK && strcmp(now.status, "QUEUED") != 0)
            return ERR_CONFLICT;
    }
    if (e && (!cluster_shared(c) || strcmp(call->node_id, e->node_id) == 0)) {
        id = strdup(call->call_uuid);
        if (!id || sip_queue_push(e->queue, MSG_CALL_HANGUP, id) != ERR_OK) {
            free(id);
            return ERR_UNAVAILABLE;
        }
        return ERR_OK;
    }
    if (!cluster_shared(c))
        return ERR_UNAVAILABLE; /* no engine here, and no other node to tell */
    /* An owner that is dead has its call ended by the node that notices. */
    err = c->ops->cmd_post(c, call->node_id[0] ? call->node_id : NULL, CLUSTER_DEAD_MS, "hangup",
                           call->call_uuid);
    return err == ERR_OK ? ERR_OK : err;
}

unsigned engine_calls_live(const struct engine *e)
{
    return e ? atomic_load(&((struct engine *)e)->live) : 0;
}

/* The checks and the in-memory call of an outbound call about to start,
 * shared by a call placed at once and one a queue started: the call's
 * record (ids, parties, URLs) filled in from req, not stored yet. On an
 * error *why says why and nothing is left over. */
static enum err outbound_prepare(struct engine *e, const struct engine_outbound *req,
                                 struct call **out, const char **why)
{
    struct callsm_config cfg = {0};
    struct call *c;

    if (!e->can_dial) {
        *why = "calling is not configured";
        return ERR_UNAVAILABLE;
    }
    if (atomic_load(&e->draining)) {
        *why = "node draining";
        return ERR_UNAVAILABLE;
    }
    if (atomic_load(&e->stopping)) {
        *why = "the server is shutting down";
        return ERR_UNAVAILABLE;
    }
    if (atomic_fetch_add(&e->live, 1) >= e->cfg.max_calls) {
        atomic_fetch_sub(&e->live, 1);
        *why = "too many calls in progress";
        return ERR_UNAVAILABLE;
    }
    c = call_new(e);
    if (!c) {
        atomic_fetch_sub(&e->live, 1);
        *why = "out of memory";
        return ERR_NOMEM;
    }
    c->slot = recw_reserve(e->recw);
    if (!c->slot) {
        /* The call records already waiting for the database fill the queue. */
        call_free(c);
        *why = err_str(ERR_UNAVAILABLE);
        return ERR_UNAVAILABLE;
    }
    cfg.direction = CALL_DIR_OUTBOUND;
    cfg.ring_timeout_s = req->ring_timeout_s;
    cfg.call_time_limit_s = req->call_time_limit_s;
    cfg.has_ring_url = req->ring_url[0] != '\0';
    cfg.has_fallback_url = req->fallback_url[0] != '\0';
    cfg.has_hangup_url = req->hangup_url[0] != '\0';
    if (callsm_init(&c->sm, &cfg, clock_mono_ms()) != ERR_OK) {
        call_free(c);
        *why = "invalid limits";
        return ERR_INVALID;
    }
    c->out = *req;
    copy_str(c->rec.hangup_url, sizeof(c->rec.hangup_url), req->hangup_url);
    copy_str(c->rec.hangup_method, sizeof(c->rec.hangup_method), req->hangup_method);
    memcpy(c->rec.request_uuid, "sfv_ob_req_", 11);
    rand_string(c->rec.request_uuid + 11, 12, "abcdefghijklmnopqrstuvwxyz0123456789");
    c->rec.request_uuid[REQUEST_UUID_LEN] = '\0';
    c->rec.org_id = req->org_id;
    copy_str(c->rec.app_id, sizeof(c->rec.app_id), req->app_id);
    copy_str(c->rec.from, sizeof(c->rec.from), req->from);
    copy_str(c->rec.to, sizeof(c->rec.to), req->to);
    copy_str(c->rec.direction, sizeof(c->rec.direction), call_direction_name(CALL_DIR_OUTBOUND));
    copy_str(c->rec.status, sizeof(c->rec.status), call_status_name(CALL_STATUS_QUEUED));
    c->rec.created_at = clock_now_ms();
    *out = c;
    return ERR_OK;
}

/* Hands a stored call to the engine thread, which sends the INVITE; on
 * failure the record is closed FAILED "41" and the call freed. */
static enum err outbound_start(struct engine *e, struct store_conn *db, struct call *c,
                               const char **why)
{
    if (sip_queue_push(e->queue, MSG_PLACE, c) != ERR_OK) {
        /* Stored but never started: close the record honestly. */
        copy_str(c->rec.status, sizeof(c->rec.status), call_status_name(CALL_STATUS_FAILED));
        copy_str(c->rec.hangup_cause, sizeof(c->rec.hangup_cause), "41");
        c->rec.ended_at = clock_now_ms();
        (void)db->ops->call_update(db, &c->rec);
        call_free(c);
        *why = "engine unavailable";
        return ERR_UNAVAILABLE;
    }
    return ERR_OK;
}

enum err engine_call_place(struct engine *e, struct store_conn *db,
                           const struct engine_outbound *req,
                           char request_uuid[REQUEST_UUID_LEN + 1],
                           char call_uuid[CALL_UUID_LEN + 1], const char **why)
{
    struct call *c;
    enum err err;

    err = outbound_prepare(e, req, &c, why);
    if (err != ERR_OK)
        return err;
    err = db->ops->call_create(db, &c->rec);
    if (err != ERR_OK) {
        call_free(c);
        /* As every other route says it: busy or unreachable, else an error. */
        *why = err_str(err == ERR_UNAVAILABLE ? ERR_UNAVAILABLE : ERR_DB);
        return err;
    }
    c->created = true;
    copy_str(request_uuid, REQUEST_UUID_LEN + 1, c->rec.request_uuid);
    copy_str(call_uuid, CALL_UUID_LEN + 1, c->rec.call_uuid);
    return outbound_start(e, db, c, why);
}

/* --- outbound pacing (AGENT.md section 6) --- */

/* The pacer looks again this often while a queue waits on a cap (a call's
 * end, anywhere, frees a place) or idle for calls queued on other nodes;
 * a rate's next start time is waited for exactly. */
#define PACE_POLL_MS 100
#define PACE_IDLE_MS 1000
/* Apps looked at per round, and calls started per app per round. */
#define PACE_APPS_MAX 64
#define PACE_BURST_MAX 50

enum err engine_call_queue(struct engine *e, struct store_conn *db,
                           const struct engine_outbound *req,
                           char request_uuid[REQUEST_UUID_LEN + 1],
                           char call_uuid[CALL_UUID_LEN + 1], int64_t *position, const char **why)
{
    struct store_call *rec = calloc(1, sizeof(*rec));
    char *text = malloc(QUEUE_REQ_MAX + 1);
    enum err err = ERR_NOMEM;

    *position = 0;
    *why = "out of memory";
    if (!rec || !text)
        goto out_free;
    if (!e->can_dial || atomic_load(&e->stopping) || atomic_load(&e->draining)) {
        *why = !e->can_dial                ? "calling is not configured"
               : atomic_load(&e->draining) ? "node draining"
                                           : "the server is shutting down";
        err = ERR_UNAVAILABLE;
        goto out_free;
    }
    err = pace_req_encode(req, text, QUEUE_REQ_MAX + 1);
    if (err != ERR_OK) {
        *why = err_str(err);
        goto out_free;
    }
    uuid4(rec->call_uuid);
    memcpy(rec->request_uuid, "sfv_ob_req_", 11);
    rand_string(rec->request_uuid + 11, 12, "abcdefghijklmnopqrstuvwxyz0123456789");
    rec->request_uuid[REQUEST_UUID_LEN] = '\0';
    rec->org_id = req->org_id;
    copy_str(rec->app_id, sizeof(rec->app_id), req->app_id);
    copy_str(rec->from, sizeof(rec->from), req->from);
    copy_str(rec->to, sizeof(rec->to), req->to);
    copy_str(rec->hangup_url, sizeof(rec->hangup_url), req->hangup_url);
    copy_str(rec->hangup_method, sizeof(rec->hangup_method), req->hangup_method);
    rec->created_at = clock_now_ms();
    err = db->ops->call_enqueue(db, rec, text, APP_QUEUE_MAX, position);
    if (err == ERR_RATE_LIMITED) {
        *why = "Too many queued calls for this app";
        goto out_free;
    }
    if (err != ERR_OK) {
        *why = err_str(err == ERR_UNAVAILABLE ? ERR_UNAVAILABLE : ERR_DB);
        goto out_free;
    }
    copy_str(request_uuid, REQUEST_UUID_LEN + 1, rec->request_uuid);
    copy_str(call_uuid, CALL_UUID_LEN + 1, rec->call_uuid);
    log_info("msg=\"outbound call queued\" call=%s app=%s position=%lld", rec->call_uuid,
             rec->app_id, (long long)*position);
    pthread_mutex_lock(&e->pace_mu);
    e->pace_kick = true;
    pthread_cond_signal(&e->pace_cv);
    pthread_mutex_unlock(&e->pace_mu);
out_free:
    free(text);
    free(rec);
    return err;
}

/* A waiting call ended by a cancel (CANCELED "16"): its hangup webhook,
 * sent from this node as for a dead node's call (no dialog: no BYE). */
struct queue_cancel {
    struct engine *e;
    bool any;
};

static enum err on_queue_cancelled(void *ud, const struct store_call *call)
{
    struct queue_cancel *q = ud;
    struct engine *e = q->e;

    q->any = true;
    log_info("msg=\"queued call cancelled\" call=%s app=%s", call->call_uuid, call->app_id);
    if (!call->hangup_url[0])
        return ERR_OK; /* no webhook to send */
    if (e)
        on_cluster_reaped(e, call);
    else
        log_warn("msg=\"hangup webhook of a cancelled queued call not sent: no engine here\" "
                 "call=%s",
                 call->call_uuid);
    return ERR_OK;
}

void engine_queue_cancel(struct engine *e, struct store_conn *c, const char *call_uuid,
                         const char *app_id, const char *from, bool *cancelled)
{
    struct queue_cancel ctx = {e, false};
    enum err err;

    err = c->ops->call_queue_cancel(c, call_uuid, app_id, from, clock_now_ms(), on_queue_cancelled,
                                    &ctx);
    if (err != ERR_OK)
        log_error("msg=\"queued calls not cancelled\" app=%s err=%s", app_id ? app_id : "-",
                  err_str(err));
    if (cancelled)
        *cancelled = ctx.any;
}

/* Starts a call this node just claimed from a queue. A call that cannot
 * start (its request unreadable, the node full or stopping) ends FAILED
 * "41" with its hangup webhook, rather than waiting for ever. */
static void pace_start(struct engine *e, struct store_conn *db, const struct store_call *rec,
                       const char *text)
{
    struct engine_outbound *req = malloc(sizeof(*req));
    const char *why = "out of memory";
    struct store_call fail;
    struct call *c = NULL;
    enum err err = ERR_NOMEM;

    if (req) {
        err = pace_req_decode(text, req);
        why = "unreadable queued request";
    }
    if (err == ERR_OK)
        err = outbound_prepare(e, req, &c, &why);
    free(req);
    if (err == ERR_OK) {
        copy_str(c->rec.call_uuid, sizeof(c->rec.call_uuid), rec->call_uuid);
        copy_str(c->rec.request_uuid, sizeof(c->rec.request_uuid), rec->request_uuid);
        c->rec.created_at = rec->created_at;
        c->rec.seq = rec->seq;
        c->created = true;
        log_info("msg=\"queued call starting\" call=%s app=%s", rec->call_uuid, rec->app_id);
        (void)outbound_start(e, db, c, &why);
        return;
    }
    log_warn("msg=\"queued call not started\" call=%s why=\"%s\"", rec->call_uuid, why);
    fail = *rec;
    copy_str(fail.status, sizeof(fail.status), call_status_name(CALL_STATUS_FAILED));
    copy_str(fail.hangup_cause, sizeof(fail.hangup_cause), "41");
    fail.ended_at = clock_now_ms();
    if (db->ops->call_update(db, &fail) == ERR_OK)
        on_cluster_reaped(e, &fail);
}

/* One round: every app with waiting calls, each claimed call started,
 * until a cap holds the app back. Returns how long to wait before the
 * next round. */
static int64_t pace_round(struct engine *e, struct store_conn *db, char (*ids)[APP_ID_LEN + 1],
                          char *text)
{
    int64_t next = PACE_IDLE_MS;
    int n = 0, i, k;

    if (db->ops->pace_apps(db, ids, PACE_APPS_MAX, &n) != ERR_OK)
        return PACE_IDLE_MS;
    for (i = 0; i < n && !atomic_load(&e->stopping); i++) {
        for (k = 0; k < PACE_BURST_MAX; k++) {
            struct store_call rec;
            bool claimed = false;
            int64_t wait = -1;

            /* A full, draining or stopping node leaves the queue to the
             * others (or to its next run). */
            if (atomic_load(&e->draining) || atomic_load(&e->stopping) ||
                atomic_load(&e->live) >= e->cfg.max_calls) {
                next = next < PACE_POLL_MS ? next : PACE_POLL_MS;
                break;
            }
            if (db->ops->pace_claim(db, ids[i], e->node_id, &rec, text, QUEUE_REQ_MAX + 1, &claimed,
                                    &wait) != ERR_OK) {
                next = next < PACE_POLL_MS ? next : PACE_POLL_MS;
                break;
            }
            if (!claimed) {
                wait = wait > 0 && wait < PACE_POLL_MS ? wait : PACE_POLL_MS;
                next = next < wait ? next : wait;
                break;
            }
            pace_start(e, db, &rec, text);
        }
    }
    return next;
}

static void *pacer_main(void *arg)
{
    struct engine *e = arg;
    char(*ids)[APP_ID_LEN + 1] = calloc(PACE_APPS_MAX, sizeof(*ids));
    char *text = malloc(QUEUE_REQ_MAX + 1);
    struct store_conn *db = NULL;

    if (!ids || !text) {
        log_error("msg=\"pacer stopped: out of memory\"");
        goto out_free;
    }
    for (;;) {
        int64_t wait_ms = PACE_IDLE_MS;
        struct timespec ts;

        if (db || store_conn_open(e->cfg.store, &db) == ERR_OK)
            wait_ms = pace_round(e, db, ids, text);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += wait_ms / 1000;
        ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&e->pace_mu);
        while (!e->pace_stop && !e->pace_kick &&
               pthread_cond_timedwait(&e->pace_cv, &e->pace_mu, &ts) != ETIMEDOUT)
            ;
        e->pace_kick = false;
        if (e->pace_stop) {
            pthread_mutex_unlock(&e->pace_mu);
            break;
        }
        pthread_mutex_unlock(&e->pace_mu);
    }
out_free:
    store_conn_close(db);
    free(text);
    free(ids);
    return NULL;
}

static enum err pacer_start(struct engine *e)
{
    pthread_condattr_t ca;

    pthread_mutex_init(&e->pace_mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->pace_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&e->pacer, NULL, pacer_main, e) != 0)
        return ERR_NOMEM;
    e->pacer_started = true;
    return ERR_OK;
}

static void pacer_stop(struct engine *e)
{
    if (!e->pacer_started)
        return;
    pthread_mutex_lock(&e->pace_mu);
    e->pace_stop = true;
    pthread_cond_signal(&e->pace_cv);
    pthread_mutex_unlock(&e->pace_mu);
    pthread_join(e->pacer, NULL);
    e->pacer_started = false;
    pthread_cond_destroy(&e->pace_cv);
    pthread_mutex_destroy(&e->pace_mu);
}
