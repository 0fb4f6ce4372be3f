/* bridge: a call's audio between RTP and the customer's WebSocket. The
 * engine's loop drives everything: one pacer for every bridge's 20 ms frames (absolute
 * times, so play-out keeps the engine's pace whatever the customer does),
 * RTP reports from the leg, and WebSocket events, which the hub's thread
 * only copies into the engine's queue. A late or stuck WebSocket costs its
 * own send queue, never the loop's time. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call/bridge.h"
#include "call/streammsg.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/rand.h"
#include "media/g711.h"
#include "media/playout.h"
#include "media/transcode.h"
#include "sip/sip.h"
#include "ws/ws.h"

#define FRAME_MS 20
#define PARTY_FRAME TRANSCODE_PARTY_FRAME
/* The play-out queue holds party audio (G.711, 8000 bytes a second). */
#define QUEUE_MAX ((size_t)PLAYOUT_MAX_SECONDS * 8000)
/* Behind by more than this (a stalled loop): skip ahead instead of
 * sending a burst. */
#define MAX_LAG_MS 100
/* Customers' messages waiting for the engine, over every stream: about a
 * second of playAudio at 500 calls. */
#define EVENTS_MAX 32768
#define CONNECT_TIMEOUT_MS 5000
/* sendDigits (AGENT.md 1), in 20 ms frames: 100 ms a key, 60 ms after
 * it, 500 ms for a w. */
#define DIGIT_FRAMES 5
#define DIGIT_GAP_FRAMES 3
#define PAUSE_FRAMES 25
#define DIGIT_END_REPEATS 3 /* RFC 4733 2.5.1.4: the end packet, three times */
/* Digits, hangups and checkpoints waiting behind queued audio. */
#define ACTIONS_MAX 32
/* Party audio is G.711: 8 bytes a millisecond. */
#define BYTES_PER_MS 8

/* What waits for the audio queued before it: a run of digits, the
 * hangup, or a checkpoint queued behind one of them with no audio in
 * between (a mark of the play-out queue would be reported before them). */
enum action_kind {
    ACTION_DIGITS,
    ACTION_HANGUP,
    ACTION_CHECKPOINT,
};

struct action {
    enum action_kind kind;
    uint64_t at;                         /* stream offset: due once the queue has played this far */
    char text[STREAMMSG_DIGITS_MAX + 1]; /* the digits, or the checkpoint's name */
};

_Static_assert(STREAMMSG_DIGITS_MAX == PLAYOUT_NAME_MAX, "one buffer holds digits and names");

/* Shared by a bridge and the WebSocket events in flight towards it, so an
 * event that arrives after the bridge is gone finds b == NULL. */
struct bridge_ref {
    atomic_int refs;
    struct bridge *b; /* engine thread only; NULL once closed */
    struct sip_queue *queue;
    int queue_id;
};

struct ws_msg {
    struct bridge_ref *ref;
    enum ws_event ev;
    int code;
    size_t len;
    char data[];
};

struct bridge {
    const struct bridge_env *env;
    struct stream_config sc;
    char stream_id[STREAM_ID_MAX];
    char call_uuid[64];
    struct xheaders sip; /* the inbound INVITE's X- headers, for start */
    const char *content_type;
    struct sip_leg *leg;
    struct sip_media media; /* as at the start: the codec of the queue and transcoders */
    struct bridge_ref *ref;
    struct ws_conn *ws;
    bool open;  /* start sent */
    bool ended; /* the stream is over; waiting for bridge_close */
    bridge_ended_cb ended_cb;
    void *arg;
    struct transcode in_tc;   /* party -> stream, the inbound track */
    struct transcode out_tc;  /* party -> stream, the outbound track */
    struct transcode play_tc; /* stream -> party, playAudio */
    struct playout q;
    struct dtmf_dedup dd;
    uint8_t acc[PARTY_FRAME]; /* party audio waiting for a whole 20 ms */
    size_t acc_len;
    struct bridge *pace_prev, *pace_next; /* env->pacer's list, while paced */
    bool paced;
    struct sip_timer *limit; /* stream_timeout */
    int64_t next_ms;
    int64_t start_ms;
    uint64_t chunk_in, chunk_out;
    uint64_t dropped;                   /* media messages the WebSocket could not take */
    struct action actions[ACTIONS_MAX]; /* ring, in the order they came */
    size_t action_head, nactions;
    char run[STREAMMSG_DIGITS_MAX + 1]; /* the digits being sent, "" when none */
    size_t run_pos;                     /* the character being sent */
    int run_frame;                      /* frames of it already sent */
    uint64_t clear_base;                /* the queue's played offset at the last clearAudio */
    bool rtp_failed;
    struct buf out;
};

static atomic_size_t in_flight;

size_t bridge_events_in_flight(void)
{
    return atomic_load(&in_flight);
}

static void ref_put(struct bridge_ref *ref)
{
    if (atomic_fetch_sub(&ref->refs, 1) == 1)
        free(ref);
}

/* The hub's thread: copy, queue, return. Customers' messages beyond
 * EVENTS_MAX waiting for the engine are dropped (a flood must not eat the
 * memory); opens and closes always go through. */
static void on_ws(void *arg, enum ws_event ev, const char *data, size_t len, int code)
{
    static atomic_uint_fast64_t dropped;
    struct bridge_ref *ref = arg;
    struct ws_msg *m;

    if (ev == WS_EV_TEXT && atomic_load(&in_flight) >= EVENTS_MAX) {
        uint_fast64_t n = atomic_fetch_add(&dropped, 1);

        if (n % 1000 == 0)
            log_error("msg=\"stream messages lost: the engine is behind\" lost=%llu",
                      (unsigned long long)n + 1);
        return;
    }
    m = malloc(sizeof(*m) + len + 1);
    if (!m) {
        log_error("msg=\"stream event lost: out of memory\"");
        return;
    }
    m->ref = ref;
    m->ev = ev;
    m->code = code;
    m->len = len;
    if (len)
        memcpy(m->data, data, len);
    m->data[len] = '\0';
    atomic_fetch_add(&ref->refs, 1);
    atomic_fetch_add(&in_flight, 1);
    if (sip_queue_push(ref->queue, ref->queue_id, m) != ERR_OK) {
        log_error("msg=\"stream event lost: out of memory\"");
        atomic_fetch_sub(&in_flight, 1);
        ref_put(ref);
        free(m);
    }
}

/* lazy: the message may wait for the next one to leave in the same write
 * (ws_send_text_lazy). */
static void send_out(struct bridge *b, bool lazy)
{
    enum err e = lazy ? ws_send_text_lazy(b->ws, b->out.data, b->out.len)
                      : ws_send_text(b->ws, b->out.data, b->out.len);

    if (e == ERR_TOO_LARGE && b->dropped++ % 50 == 0)
        log_warn("msg=\"stream send queue full, messages dropped\" call=%s dropped=%llu",
                 b->call_uuid, (unsigned long long)b->dropped);
    buf_reset(&b->out);
}

static void send_text(struct bridge *b)
{
    send_out(b, false);
}

static void send_media(struct bridge *b, struct transcode *tc, const uint8_t *party,
                       const char *track, uint64_t *chunk, bool lazy)
{
    uint8_t payload[TRANSCODE_STREAM_FRAME_MAX];
    size_t n;

    if (transcode_to_stream(tc, party, PARTY_FRAME, payload, sizeof(payload), &n) != ERR_OK)
        return;
    (*chunk)++;
    if (streammsg_media(&b->out, b->stream_id, payload, n, b->content_type, b->sc.sample_rate,
                        track, clock_mono_ms() - b->start_ms, *chunk) == ERR_OK)
        send_out(b, lazy);
    else
        buf_reset(&b->out);
}

/* G.711 from one law to the other, for a party that switched codec. */
static void recode(const uint8_t *in, size_t n, uint8_t *out, bool to_alaw)
{
    size_t i;

    for (i = 0; i < n; i++)
        out[i] = to_alaw ? g711_alaw_encode(g711_ulaw_decode(in[i]))
                         : g711_ulaw_encode(g711_alaw_decode(in[i]));
}

static bool track_wanted(const struct bridge *b, bool inbound)
{
    if (b->sc.direction == STREAM_DIR_BOTH)
        return true;
    return inbound ? b->sc.direction == STREAM_DIR_INBOUND : b->sc.direction == STREAM_DIR_OUTBOUND;
}

static struct action *action_at(struct bridge *b, size_t i)
{
    return &b->actions[(b->action_head + i) % ACTIONS_MAX];
}

static void action_pop(struct bridge *b)
{
    b->action_head = (b->action_head + 1) % ACTIONS_MAX;
    b->nactions--;
}

static enum err action_push(struct bridge *b, enum action_kind kind, const char *text)
{
    struct action *a;

    if (b->nactions == ACTIONS_MAX)
        return ERR_TOO_LARGE;
    a = action_at(b, b->nactions);
    a->kind = kind;
    a->at = playout_pushed(&b->q);
    snprintf(a->text, sizeof(a->text), "%s", text ? text : "");
    b->nactions++;
    return ERR_OK;
}

/* Customer audio sent to the party from the last clearAudio (or the
 * start) up to the stream offset at, in ms. */
static int64_t played_ms(const struct bridge *b, uint64_t at)
{
    return (int64_t)((at - b->clear_base) / BYTES_PER_MS);
}

static void send_played(struct bridge *b, const char *name, uint64_t at)
{
    if (streammsg_played(&b->out, b->stream_id, name, played_ms(b, at)) == ERR_OK)
        send_text(b);
    else
        buf_reset(&b->out);
}

static uint8_t digit_event(char c)
{
    if (c >= '0' && c <= '9')
        return (uint8_t)(c - '0');
    if (c == '*')
        return 10;
    if (c == '#')
        return 11;
    return (uint8_t)(12 + (c - 'A')); /* A-D; streammsg_parse let nothing else through */
}

/* One frame of the digits being sent: a telephone-event packet while a
 * key sounds (its end packet three times), else silence (frame holds
 * it). Returns true when the frame was an event, not audio. */
static bool run_step(struct bridge *b, const uint8_t *frame)
{
    char c = b->run[b->run_pos];
    int len = c == 'w' ? PAUSE_FRAMES : DIGIT_FRAMES + DIGIT_GAP_FRAMES;
    int k = b->run_frame, r;
    bool event = c != 'w' && k < DIGIT_FRAMES;
    enum err e = ERR_OK;

    if (event) {
        bool end = k == DIGIT_FRAMES - 1;
        uint16_t duration = (uint16_t)((k + 1) * PARTY_FRAME);

        for (r = 0; r < (end ? DIGIT_END_REPEATS : 1) && e == ERR_OK; r++)
            e = sip_leg_send_event(b->leg, digit_event(c), k == 0, end, duration,
                                   r == 0 ? PARTY_FRAME : 0);
        if (e != ERR_OK && !b->rtp_failed) {
            b->rtp_failed = true;
            log_warn("msg=\"digits not sent to the party\" call=%s", b->call_uuid);
        }
    } else if (sip_leg_send_audio(b->leg, frame, PARTY_FRAME) != ERR_OK && !b->rtp_failed) {
        b->rtp_failed = true;
        log_warn("msg=\"audio not sent to the party\" call=%s", b->call_uuid);
    }
    if (++b->run_frame == len) {
        b->run_frame = 0;
        b->run_pos++;
    }
    return event;
}

/* The actions due now, before this frame: checkpoints behind a finished
 * run are told, a run of digits starts. Returns true when the hangup is
 * due (the caller must then end the call and touch b no more); otherwise
 * *until is the offset the queue must stop at. */
static bool actions_due(struct bridge *b, uint64_t *until)
{
    *until = UINT64_MAX;
    while (!b->run[0] && b->nactions) {
        struct action *a = action_at(b, 0);

        if (a->at > playout_played(&b->q)) {
            *until = a->at;
            break;
        }
        switch (a->kind) {
        case ACTION_HANGUP: return true;
        case ACTION_CHECKPOINT: send_played(b, a->text, a->at); break;
        case ACTION_DIGITS:
            memcpy(b->run, a->text, sizeof(b->run));
            b->run_pos = 0;
            b->run_frame = 0;
            break;
        }
        action_pop(b);
    }
    return false;
}

/* One 20 ms frame to the party: queued audio or silence (or a key of the
 * digits being sent), then the checkpoints it completed. Returns true when
 * the customer's hangup is due instead: the caller ends the call. */
static bool send_frame(struct bridge *b)
{
    uint8_t frame[PARTY_FRAME];
    const char *done[PLAYOUT_MAX_CHECKPOINTS];
    uint64_t done_at[PLAYOUT_MAX_CHECKPOINTS];
    int ndone = 0, i;
    uint64_t until;
    struct sip_media now;
    uint8_t party[PARTY_FRAME];
    const uint8_t *out = frame;

    if (actions_due(b, &until))
        return true;
    sip_leg_media(b->leg, &now);
    if (b->run[0]) {
        memset(frame, b->media.alaw ? G711_ALAW_SILENCE : G711_ULAW_SILENCE, sizeof(frame));
        if (now.ready && now.alaw != b->media.alaw) {
            recode(frame, sizeof(frame), party, now.alaw);
            out = party;
        }
        (void)run_step(b, out);
    } else {
        playout_frame_until(&b->q, frame, sizeof(frame), until, done, done_at, &ndone);
        if (now.ready && now.alaw != b->media.alaw) {
            recode(frame, sizeof(frame), party, now.alaw);
            out = party;
        }
        if (sip_leg_send_audio(b->leg, out, sizeof(frame)) != ERR_OK && !b->rtp_failed) {
            b->rtp_failed = true; /* said once: the party's address is unusable */
            log_warn("msg=\"audio not sent to the party\" call=%s", b->call_uuid);
        }
    }
    /* Beside an inbound track, an outbound frame leaves with the next
     * inbound one (or the next outbound): one write carries both, and the
     * inbound frame, whose delay counts, is not held. */
    if (track_wanted(b, false))
        send_media(b, &b->out_tc, frame, "outbound", &b->chunk_out, track_wanted(b, true));
    for (i = 0; i < ndone; i++)
        send_played(b, done[i], done_at[i]);
    if (b->run[0] && !b->run[b->run_pos]) {
        if (streammsg_digits_sent(&b->out, b->stream_id, b->run) == ERR_OK)
            send_text(b);
        else
            buf_reset(&b->out);
        b->run[0] = '\0';
    }
    return false;
}

/* ---- the pacer: one timer for every bridge's 20 ms frames ----
 * Bridges wait in a list sorted by their next frame's time; the timer is
 * set for the first. A bridge that has sent its frames goes back 20 ms
 * later, which is at or near the end of the list, so putting it back costs
 * a step or two whatever the number of calls (a timer of its own per
 * bridge would be sorted into libre's one list of every timer, long ones
 * included, 50 times a second). Each bridge keeps its own phase, set when
 * its stream opened. */
struct bridge_pacer {
    struct sip_timer *tmr;
    struct bridge *head, *tail;
};

static void pace_unlink(struct bridge_pacer *p, struct bridge *b)
{
    if (!b->paced)
        return;
    if (b->pace_prev)
        b->pace_prev->pace_next = b->pace_next;
    else
        p->head = b->pace_next;
    if (b->pace_next)
        b->pace_next->pace_prev = b->pace_prev;
    else
        p->tail = b->pace_prev;
    b->pace_prev = b->pace_next = NULL;
    b->paced = false;
}

/* Sorted by next_ms, after the bridges due at the same time. */
static void pace_link(struct bridge_pacer *p, struct bridge *b)
{
    struct bridge *at = p->tail;

    while (at && at->next_ms > b->next_ms)
        at = at->pace_prev;
    b->pace_prev = at;
    b->pace_next = at ? at->pace_next : p->head;
    if (b->pace_next)
        b->pace_next->pace_prev = b;
    else
        p->tail = b;
    if (at)
        at->pace_next = b;
    else
        p->head = b;
    b->paced = true;
}

static void pace_arm(struct bridge_pacer *p, int64_t now)
{
    if (p->head)
        sip_timer_start(p->tmr, p->head->next_ms - now);
    else
        sip_timer_cancel(p->tmr);
}

/* Sends b's frames due by now. False when b is gone or has ended. */
static bool tick(struct bridge *b, int64_t now)
{
    int n = 0;

    if (now - b->next_ms > MAX_LAG_MS)
        b->next_ms = now; /* the loop stalled: resume, do not burst */
    while (b->next_ms <= now && n++ < 5) {
        if (send_frame(b)) {
            log_info("msg=\"call hung up from its stream\" call=%s", b->call_uuid);
            b->env->hangup(b->arg); /* may close b: last */
            return false;
        }
        b->next_ms += FRAME_MS;
    }
    return !b->ended;
}

static void on_pace(void *arg)
{
    struct bridge_pacer *p = arg;
    int64_t now = clock_mono_ms();
    struct bridge *b;

    /* Each pass moves the first bridge's next_ms forward or drops it, so
     * this ends; a bridge closed meanwhile has left the list. */
    while ((b = p->head) && b->next_ms <= now) {
        pace_unlink(p, b);
        if (tick(b, now))
            pace_link(p, b);
    }
    pace_arm(p, now);
}

static void pace_start(struct bridge *b)
{
    struct bridge_pacer *p = b->env->pacer;
    bool first;

    pace_link(p, b);
    first = p->head == b;
    if (first)
        pace_arm(p, clock_mono_ms());
}

static void pace_stop(struct bridge *b)
{
    pace_unlink(b->env->pacer, b);
}

enum err bridge_pacer_new(struct bridge_pacer **out)
{
    struct bridge_pacer *p = calloc(1, sizeof(*p));

    *out = NULL;
    if (!p)
        return ERR_NOMEM;
    p->tmr = sip_timer_new(on_pace, p);
    if (!p->tmr) {
        free(p);
        return ERR_NOMEM;
    }
    *out = p;
    return ERR_OK;
}

void bridge_pacer_free(struct bridge_pacer *p)
{
    if (!p)
        return;
    sip_timer_free(p->tmr);
    free(p);
}

static void end_stream(struct bridge *b, const char *why)
{
    if (b->ended)
        return;
    b->ended = true;
    pace_stop(b);
    sip_timer_cancel(b->limit);
    log_info("msg=\"stream ended\" call=%s stream=%s why=\"%s\"", b->call_uuid, b->stream_id, why);
    /* Last: the engine may close the bridge from inside. */
    b->ended_cb(b->arg);
}

static void on_limit(void *arg)
{
    struct bridge *b = arg;

    ws_close(b->ws, 1000);
    end_stream(b, "stream_timeout");
}

static void on_open(struct bridge *b)
{
    b->open = true;
    b->start_ms = clock_mono_ms();
    if (streammsg_start(&b->out, b->stream_id, b->call_uuid, b->content_type, b->sc.sample_rate,
                        b->sc.params, b->sc.nparams, &b->sip) == ERR_OK)
        send_text(b);
    else
        buf_reset(&b->out);
    log_info("msg=\"stream started\" call=%s stream=%s", b->call_uuid, b->stream_id);
    b->next_ms = b->start_ms;
    pace_start(b);
    sip_timer_start(b->limit, (int64_t)b->sc.stream_timeout * 1000);
}

/* clearAudio: drops the queued audio and every checkpoint waiting (in the
 * queue's marks or behind digits), tells what was played and dropped.
 * Digits and a hangup waiting stay: they become due at once. */
static void clear(struct bridge *b)
{
    const char *marks[PLAYOUT_MAX_CHECKPOINTS];
    uint64_t marks_at[PLAYOUT_MAX_CHECKPOINTS];
    const char *names[PLAYOUT_MAX_CHECKPOINTS + ACTIONS_MAX];
    struct action kept[ACTIONS_MAX] = {0};
    uint64_t played = playout_played(&b->q);
    int64_t played_total = played_ms(b, played);
    int64_t discarded = (int64_t)(playout_queued(&b->q) / BYTES_PER_MS);
    int nmarks = 0, nnames = 0, m = 0;
    size_t i, nkept = 0;

    /* Marks are in offset order and so are the actions; a mark at an
     * action's offset was queued before it. */
    playout_clear(&b->q, marks, marks_at, &nmarks);
    for (i = 0; i < b->nactions; i++) {
        struct action *a = action_at(b, i);

        if (a->kind != ACTION_CHECKPOINT) {
            kept[nkept++] = *a;
            continue;
        }
        for (; m < nmarks && marks_at[m] <= a->at; m++)
            names[nnames++] = marks[m];
        names[nnames++] = a->text;
    }
    for (; m < nmarks; m++)
        names[nnames++] = marks[m];
    transcode_from_stream_reset(&b->play_tc);
    if (streammsg_cleared(&b->out, b->stream_id, played_total, discarded, names, nnames) == ERR_OK)
        send_text(b);
    else
        buf_reset(&b->out);
    b->action_head = 0;
    b->nactions = nkept;
    memcpy(b->actions, kept, nkept * sizeof(kept[0]));
    b->clear_base = playout_played(&b->q);
}

static void on_text(struct bridge *b, const char *data, size_t len)
{
    const struct bridge_env *env = b->env;
    struct streammsg_in in;
    struct sip_media now;
    size_t need, n, room;
    enum err e;

    if (!b->sc.bidirectional) {
        log_debug("msg=\"stream message ignored: not bidirectional\" call=%s", b->call_uuid);
        return;
    }
    streammsg_parse(data, len, env->scratch, STREAMMSG_AUDIO_MAX, &in);
    switch (in.kind) {
    case STREAMMSG_IGNORED:
        log_debug("msg=\"stream message ignored\" call=%s why=\"%s\"", b->call_uuid, in.why);
        break;
    case STREAMMSG_PLAY:
        if (strcmp(in.content_type, b->content_type) != 0 || in.sample_rate != b->sc.sample_rate) {
            log_debug("msg=\"playAudio dropped: not the stream's format\" call=%s", b->call_uuid);
            break;
        }
        need = transcode_from_stream_len(&b->play_tc, in.audio_len);
        if (need == SIZE_MAX || need > STREAMMSG_AUDIO_MAX ||
            transcode_from_stream(&b->play_tc, in.audio, in.audio_len, env->scratch2,
                                  STREAMMSG_AUDIO_MAX, &n) != ERR_OK) {
            log_info("msg=\"playAudio dropped\" call=%s", b->call_uuid);
            break;
        }
        /* The queue holds at most 60 s: what does not fit is dropped. */
        room = QUEUE_MAX - playout_queued(&b->q);
        if (n > room) {
            log_info("msg=\"playAudio cut: the queue holds at most 60 s\" call=%s dropped=%zu",
                     b->call_uuid, n - room);
            n = room;
        }
        if (playout_push(&b->q, env->scratch2, n) != ERR_OK)
            log_info("msg=\"playAudio dropped\" call=%s", b->call_uuid);
        break;
    case STREAMMSG_CHECKPOINT:
        /* Behind digits or a hangup with no audio in between: it waits
         * for them, in their queue. */
        if (b->nactions && action_at(b, b->nactions - 1)->at == playout_pushed(&b->q))
            e = action_push(b, ACTION_CHECKPOINT, in.name);
        else
            e = playout_checkpoint(&b->q, in.name);
        if (e != ERR_OK)
            log_info("msg=\"checkpoint dropped: too many pending\" call=%s", b->call_uuid);
        break;
    case STREAMMSG_CLEAR: clear(b); break;
    case STREAMMSG_HANGUP:
        if (!in.after_playback) {
            log_info("msg=\"call hung up from its stream\" call=%s", b->call_uuid);
            env->hangup(b->arg); /* may close b: last */
            return;
        }
        if (action_push(b, ACTION_HANGUP, NULL) != ERR_OK)
            log_info("msg=\"hangup dropped: too many pending\" call=%s", b->call_uuid);
        break;
    case STREAMMSG_DIGITS:
        sip_leg_media(b->leg, &now);
        if (!now.dtmf_send) {
            log_info("msg=\"sendDigits dropped: the party named no telephone-event\" call=%s",
                     b->call_uuid);
            break;
        }
        if (action_push(b, ACTION_DIGITS, in.digits) != ERR_OK)
            log_info("msg=\"sendDigits dropped: too many pending\" call=%s", b->call_uuid);
        break;
    }
}

void bridge_ws_message(void *data)
{
    struct ws_msg *m = data;
    struct bridge_ref *ref = m->ref;
    struct bridge *b = ref->b;

    if (b && !b->ended) {
        switch (m->ev) {
        case WS_EV_OPEN: on_open(b); break;
        case WS_EV_TEXT:
            if (b->open)
                on_text(b, m->data, m->len);
            break;
        case WS_EV_CLOSED:
            end_stream(b, m->code == 0      ? "could not connect"
                          : m->code == 1006 ? "dropped"
                                            : "closed by the customer");
            break;
        }
    }
    free(m);
    ref_put(ref);
    atomic_fetch_sub(&in_flight, 1);
}

void bridge_dtmf(struct bridge *b, char digit)
{
    if (!b->open || b->ended)
        return;
    if (streammsg_dtmf(&b->out, b->stream_id, digit) == ERR_OK)
        send_text(b);
    buf_reset(&b->out);
}

void bridge_rtp(struct bridge *b, int pt, uint32_t ts, const uint8_t *payload, size_t len)
{
    struct sip_media now;
    bool recoding;
    int i;

    if (!b->open || b->ended)
        return;
    sip_leg_media(b->leg, &now);
    if (!now.ready)
        return;
    for (i = 0; i < now.ndtmf; i++) {
        if (pt != now.dtmf_pt[i])
            continue;
        /* RFC 4733: event, E|R|volume, duration. The R bit means nothing. */
        if (len >= 4) {
            char digit;

            if (dtmf_dedup_feed(&b->dd, ts, payload[0], (payload[1] & 0x80) != 0, &digit) &&
                streammsg_dtmf(&b->out, b->stream_id, digit) == ERR_OK)
                send_text(b);
            buf_reset(&b->out);
        }
        return;
    }
    if (pt != now.audio_pt && pt != (now.alaw ? 8 : 0))
        return; /* an unknown payload type */
    if (!track_wanted(b, true))
        return;
    recoding = now.alaw != b->media.alaw;
    while (len) {
        size_t take = PARTY_FRAME - b->acc_len;

        if (take > len)
            take = len;
        if (recoding)
            recode(payload, take, b->acc + b->acc_len, b->media.alaw);
        else
            memcpy(b->acc + b->acc_len, payload, take);
        b->acc_len += take;
        payload += take;
        len -= take;
        if (b->acc_len == PARTY_FRAME) {
            send_media(b, &b->in_tc, b->acc, "inbound", &b->chunk_in, false);
            b->acc_len = 0;
        }
    }
}

enum err bridge_open(const struct bridge_env *env, const struct stream_config *sc,
                     const struct whsig_keys *keys, const char *call_uuid,
                     const struct xheaders *sip, struct sip_leg *leg, bridge_ended_cb ended,
                     void *arg, struct bridge **out)
{
    struct bridge *b;
    unsigned char rnd[ULID_RANDOM_BYTES];
    enum party_codec pc;
    enum err e = ERR_NOMEM;

    b = calloc(1, sizeof(*b));
    if (!b)
        return ERR_NOMEM;
    b->env = env;
    b->sc = *sc;
    if (sip)
        b->sip = *sip;
    b->leg = leg;
    b->ended_cb = ended;
    b->arg = arg;
    snprintf(b->call_uuid, sizeof(b->call_uuid), "%s", call_uuid);
    b->content_type = stream_content_type(sc->codec);
    sip_leg_media(leg, &b->media);
    if (!b->media.ready) {
        free(b);
        return ERR_INVALID;
    }
    pc = b->media.alaw ? PARTY_CODEC_PCMA : PARTY_CODEC_PCMU;
    rand_fill(rnd, sizeof(rnd));
    stream_id_make(b->stream_id, sc->direction, sc->bidirectional, clock_now_ms(), rnd);
    buf_init(&b->out, 4 * 1024 * 1024);
    playout_init(&b->q, QUEUE_MAX, b->media.alaw ? G711_ALAW_SILENCE : G711_ULAW_SILENCE);
    dtmf_dedup_init(&b->dd);
    if (transcode_init(&b->in_tc, pc, sc->codec, sc->sample_rate) != ERR_OK)
        goto out_b;
    if (transcode_init(&b->out_tc, pc, sc->codec, sc->sample_rate) != ERR_OK)
        goto out_in;
    if (transcode_init(&b->play_tc, pc, sc->codec, sc->sample_rate) != ERR_OK)
        goto out_out;
    b->limit = sip_timer_new(on_limit, b);
    b->ref = calloc(1, sizeof(*b->ref));
    if (!b->limit || !b->ref)
        goto out_timers;
    atomic_init(&b->ref->refs, 1);
    b->ref->b = b;
    b->ref->queue = env->queue;
    b->ref->queue_id = env->queue_id;
    e = ws_connect_signed(env->hub, sc->url, keys, CONNECT_TIMEOUT_MS, on_ws, b->ref, &b->ws);
    if (e != ERR_OK) {
        e = ERR_UNAVAILABLE;
        goto out_timers;
    }
    *out = b;
    return ERR_OK;

out_timers:
    free(b->ref);
    sip_timer_free(b->limit);
    transcode_release(&b->play_tc);
out_out:
    transcode_release(&b->out_tc);
out_in:
    transcode_release(&b->in_tc);
out_b:
    playout_release(&b->q);
    buf_release(&b->out);
    free(b);
    return e;
}

void bridge_close(struct bridge *b)
{
    if (!b)
        return;
    b->ref->b = NULL;
    /* Closes with 1000 if still open; no callback of the hub runs for it
     * once this returns, and events already queued find ref->b NULL. */
    ws_conn_release(b->ws);
    ref_put(b->ref);
    pace_stop(b);
    sip_timer_free(b->limit);
    transcode_release(&b->in_tc);
    transcode_release(&b->out_tc);
    transcode_release(&b->play_tc);
    playout_release(&b->q);
    buf_release(&b->out);
    free(b);
}
