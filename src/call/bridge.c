/* bridge: a call's audio between RTP and the customer's WebSocket. The
 * engine's loop drives everything: a 20 ms ticker (scheduled on absolute
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
#define CONNECT_TIMEOUT_MS 5000

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
    struct sip_timer *tick;
    struct sip_timer *limit; /* stream_timeout */
    int64_t next_ms;
    int64_t start_ms;
    uint64_t chunk_in, chunk_out;
    uint64_t dropped; /* media messages the WebSocket could not take */
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

/* The hub's thread: copy, queue, return. */
static void on_ws(void *arg, enum ws_event ev, const char *data, size_t len, int code)
{
    struct bridge_ref *ref = arg;
    struct ws_msg *m = malloc(sizeof(*m) + len + 1);

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
        log_error("msg=\"stream event lost: queue full\"");
        atomic_fetch_sub(&in_flight, 1);
        ref_put(ref);
        free(m);
    }
}

static void send_text(struct bridge *b)
{
    enum err e = ws_send_text(b->ws, b->out.data, b->out.len);

    if (e == ERR_TOO_LARGE && b->dropped++ % 50 == 0)
        log_warn("msg=\"stream send queue full, messages dropped\" call=%s dropped=%llu",
                 b->call_uuid, (unsigned long long)b->dropped);
    buf_reset(&b->out);
}

static void send_media(struct bridge *b, struct transcode *tc, const uint8_t *party,
                       const char *track, uint64_t *chunk)
{
    uint8_t payload[TRANSCODE_STREAM_FRAME_MAX];
    size_t n;

    if (transcode_to_stream(tc, party, PARTY_FRAME, payload, sizeof(payload), &n) != ERR_OK)
        return;
    (*chunk)++;
    if (streammsg_media(&b->out, b->stream_id, payload, n, b->content_type, b->sc.sample_rate,
                        track, clock_mono_ms() - b->start_ms, *chunk) == ERR_OK)
        send_text(b);
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

/* One 20 ms frame to the party: queued audio or silence, then the
 * checkpoints it completed. */
static void send_frame(struct bridge *b)
{
    uint8_t frame[PARTY_FRAME];
    const char *done[PLAYOUT_MAX_CHECKPOINTS];
    int ndone = 0, i;

    struct sip_media now;
    uint8_t party[PARTY_FRAME];
    const uint8_t *out = frame;

    playout_frame(&b->q, frame, sizeof(frame), done, &ndone);
    sip_leg_media(b->leg, &now);
    if (now.ready && now.alaw != b->media.alaw) {
        recode(frame, sizeof(frame), party, now.alaw);
        out = party;
    }
    if (sip_leg_send_audio(b->leg, out, sizeof(frame)) != ERR_OK && !b->rtp_failed) {
        b->rtp_failed = true; /* said once: the party's address is unusable */
        log_warn("msg=\"audio not sent to the party\" call=%s", b->call_uuid);
    }
    if (track_wanted(b, false))
        send_media(b, &b->out_tc, frame, "outbound", &b->chunk_out);
    for (i = 0; i < ndone; i++) {
        if (streammsg_played(&b->out, b->stream_id, done[i]) == ERR_OK)
            send_text(b);
        else
            buf_reset(&b->out);
    }
}

static void on_tick(void *arg)
{
    struct bridge *b = arg;
    int64_t now = clock_mono_ms();
    int n = 0;

    if (b->ended)
        return;
    if (now - b->next_ms > MAX_LAG_MS)
        b->next_ms = now; /* the loop stalled: resume, do not burst */
    while (b->next_ms <= now && n++ < 5) {
        send_frame(b);
        b->next_ms += FRAME_MS;
    }
    sip_timer_start(b->tick, b->next_ms - now);
}

static void end_stream(struct bridge *b, const char *why)
{
    if (b->ended)
        return;
    b->ended = true;
    sip_timer_cancel(b->tick);
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
    sip_timer_start(b->tick, 0);
    sip_timer_start(b->limit, (int64_t)b->sc.stream_timeout * 1000);
}

static void on_text(struct bridge *b, const char *data, size_t len)
{
    const struct bridge_env *env = b->env;
    struct streammsg_in in;
    const char *dropped[PLAYOUT_MAX_CHECKPOINTS];
    int ndropped = 0;
    size_t need, n, room;

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
        if (playout_checkpoint(&b->q, in.name) != ERR_OK)
            log_info("msg=\"checkpoint dropped: too many pending\" call=%s", b->call_uuid);
        break;
    case STREAMMSG_CLEAR:
        playout_clear(&b->q, dropped, &ndropped);
        transcode_from_stream_reset(&b->play_tc);
        if (streammsg_cleared(&b->out, b->stream_id) == ERR_OK)
            send_text(b);
        else
            buf_reset(&b->out);
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
            send_media(b, &b->in_tc, b->acc, "inbound", &b->chunk_in);
            b->acc_len = 0;
        }
    }
}

enum err bridge_open(const struct bridge_env *env, const struct stream_config *sc,
                     const char *call_uuid, const struct xheaders *sip, struct sip_leg *leg,
                     bridge_ended_cb ended, void *arg, struct bridge **out)
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
    b->tick = sip_timer_new(on_tick, b);
    b->limit = sip_timer_new(on_limit, b);
    b->ref = calloc(1, sizeof(*b->ref));
    if (!b->tick || !b->limit || !b->ref)
        goto out_timers;
    atomic_init(&b->ref->refs, 1);
    b->ref->b = b;
    b->ref->queue = env->queue;
    b->ref->queue_id = env->queue_id;
    e = ws_connect(env->hub, sc->url, CONNECT_TIMEOUT_MS, on_ws, b->ref, &b->ws);
    if (e != ERR_OK) {
        e = ERR_UNAVAILABLE;
        goto out_timers;
    }
    *out = b;
    return ERR_OK;

out_timers:
    free(b->ref);
    sip_timer_free(b->tick);
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
    sip_timer_free(b->tick);
    sip_timer_free(b->limit);
    transcode_release(&b->in_tc);
    transcode_release(&b->out_tc);
    transcode_release(&b->play_tc);
    playout_release(&b->q);
    buf_release(&b->out);
    free(b);
}
