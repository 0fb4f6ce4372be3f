/* bridge: one call's audio stream (CALLS.md section 7) between the
 * party's RTP and the customer's WebSocket. Party audio becomes media
 * events; the customer's playAudio goes through a bounded play-out queue
 * to the party every 20 ms, paced by the engine's clock, with silence when
 * the queue is empty; checkpoints, clearAudio and DTMF as specified; and
 * AGENT.md's additions: hangup (at once or after the queued audio),
 * sendDigits (RFC 4733 towards the party, in the queue's order) and what
 * clearAudio and playedStream tell of the audio really played.
 * Engine thread only, except the WebSocket callback, which only copies the
 * event into the engine's queue. */
#ifndef SFVOPI_CALL_BRIDGE_H
#define SFVOPI_CALL_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "call/stream.h"
#include "core/err.h"
#include "core/whsig.h"
#include "core/xheaders.h"

struct sip_leg;
struct sip_queue;
struct ws_hub;
struct bridge_pacer;

/* What every bridge of one engine shares: engine thread only. */
struct bridge_env {
    struct ws_hub *hub;
    struct sip_queue *queue;    /* WebSocket events travel through it */
    int queue_id;               /* the message id they carry */
    uint8_t *scratch;           /* STREAMMSG_AUDIO_MAX bytes: one decoded playAudio */
    uint8_t *scratch2;          /* the same, converted to the party's codec */
    struct bridge_pacer *pacer; /* sends every bridge's frames on time */
    /* The customer's hangup event (AGENT.md 1) is due: called with the
     * bridge's arg; the engine ends the call, and may close the bridge
     * from inside. */
    void (*hangup)(void *arg);
};

struct bridge;

/* The one timer that paces the 20 ms frames of every bridge of an engine:
 * engine thread only; freed after the last bridge is closed. */
enum err bridge_pacer_new(struct bridge_pacer **out) WARN_UNUSED;
void bridge_pacer_free(struct bridge_pacer *p);

/* Called once when the stream has ended by itself: the WebSocket failed to
 * connect, was closed or dropped by the customer, or stream_timeout ran
 * out. The bridge is then inert; the engine frees it with bridge_close. */
typedef void (*bridge_ended_cb)(void *arg);

/* Opens the stream of sc for the call: connects to sc->url (5 s for the
 * connection and handshake), sends start on success, then media. start
 * carries sc's custom parameters and sip, the inbound INVITE's X- headers
 * (copied; NULL for none). keys (NULL or none: unsigned) sign the
 * WebSocket upgrade (AGENT.md section 4); they are read during this call
 * only. leg must have settled its media and stay valid
 * until bridge_close. ERR_INVALID when the leg's codec is unknown,
 * ERR_NOMEM, ERR_UNAVAILABLE when the connection cannot even be started. */
enum err bridge_open(const struct bridge_env *env, const struct stream_config *sc,
                     const struct whsig_keys *keys, const char *call_uuid,
                     const struct xheaders *sip, struct sip_leg *leg, bridge_ended_cb ended,
                     void *arg, struct bridge **out) WARN_UNUSED;

/* Closes the WebSocket with code 1000 (if open) and frees the bridge; no
 * ended callback afterwards. Accepts NULL. */
void bridge_close(struct bridge *b);

/* An RTP packet from the party (the leg's rtp report). The leg's codec
 * is read again for each: when the party switched codec mid-call, its
 * audio is recoded, and the stream's format stays as it began. */
void bridge_rtp(struct bridge *b, int pt, uint32_t ts, const uint8_t *payload, size_t len);

/* A key press the party sent in a SIP INFO request (the leg's dtmf
 * report): the stream's dtmf event, as for an RFC 4733 one. */
void bridge_dtmf(struct bridge *b, char digit);

/* A WebSocket event that came through env->queue: data is the message the
 * engine's queue handler received; it is consumed (freed) here, whether or
 * not its bridge still exists. */
void bridge_ws_message(void *data);

/* WebSocket events queued and not yet consumed by bridge_ws_message, over
 * every bridge: the engine drains them before it stops. Thread-safe. */
size_t bridge_events_in_flight(void);

#endif
