/* engine: the call engine of CALLS.md sections 2-5. One thread runs an
 * event loop that owns SIP, RTP, timers and webhook deliveries; other
 * threads (the HTTP workers) only hand it work through a queue. The
 * engine writes every call's record through its own store connection.
 * Without --sip-listen there is no engine at all (a NULL struct engine *),
 * and placing a call answers "calling is not configured". */
#ifndef SFVOPI_CALL_ENGINE_H
#define SFVOPI_CALL_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "call/outbound.h"
#include "core/e164.h"
#include "core/err.h"
#include "sip/sip.h"
#include "store/store.h"

struct engine_config {
    /* The carrier side: listen address, trunk, media ports, access,
     * credentials. Strings and the allowlist are borrowed and must outlive
     * the engine; the password may be wiped once engine_start returns. */
    struct sip_ep_config sip;
    bool deny_private_urls;
    unsigned max_calls;
    unsigned answer_delay_ms; /* inbound calls ring this long before the answer */
    struct store *store;      /* borrowed; must outlive the engine */
    const char *default_cc;
    const char *version; /* for User-Agent */
    const char *node_id; /* this node's name, written on the calls it owns (copied) */
};

struct engine;

/* Binds the SIP socket and starts the engine thread (and, with
 * sip.reg, the registration). ERR_INVALID for a bad address, trunk,
 * registrar, proxy or port range (logged), ERR_UNAVAILABLE when a socket
 * cannot be bound. */
enum err engine_start(const struct engine_config *cfg, struct engine **out) WARN_UNUSED;

/* Ends every live call (CANCEL before the answer, BYE after it) and the
 * registration (REGISTER with Expires: 0), waits at most grace_ms for
 * their SIP transactions and hangup webhooks, then stops the thread and
 * frees the engine. Accepts NULL. */
void engine_stop(struct engine *e, int grace_ms);

/* Thread-safe; called by HTTP workers on their own store connection.
 * Makes the call's ids, stores its record (status QUEUED) through c, then
 * hands the call to the engine thread, which sends the INVITE.
 * ERR_UNAVAILABLE with *why set (static text) when the call cannot be
 * placed: no trunk configured, too many calls, the engine stopping; the
 * record is then not stored. ERR_DB / ERR_UNAVAILABLE from the store with
 * *why "database error". */
enum err engine_call_place(struct engine *e, struct store_conn *c,
                           const struct engine_outbound *req,
                           char request_uuid[REQUEST_UUID_LEN + 1],
                           char call_uuid[CALL_UUID_LEN + 1], const char **why) WARN_UNUSED;

/* Thread-safe; e may be NULL (a node without calls). The app was deleted:
 * its calls not answered yet are cancelled (CANCELED "16") on this node
 * and, through c when the database is shared, on every other; answered
 * ones go on with the URLs they had. */
void engine_app_deleted(struct engine *e, struct store_conn *c, const char *app_id);

/* Thread-safe; e may be NULL. Ends call (AGENT.md section 3) on the node
 * that owns it: here, or through c a command for its owner. The call ends
 * COMPLETED "16" if answered, else CANCELED "16". ERR_CONFLICT when the
 * record is final already; ERR_UNAVAILABLE when no node can be told. */
enum err engine_call_hangup(struct engine *e, struct store_conn *c,
                            const struct store_call *call) WARN_UNUSED;

/* Thread-safe; idempotent. The node stops taking calls: new INVITEs and
 * OPTIONS are answered 503 and placing a call answers "node draining"
 * (ERR_UNAVAILABLE); live calls go on. engine_stop ends what is left.
 * Accepts NULL. */
void engine_drain(struct engine *e);
/* True once engine_drain was called. Thread-safe; accepts NULL. */
bool engine_draining(const struct engine *e);

/* Thread-safe; called by HTTP workers on their own store connection. An
 * outbound call of an app with caps (AGENT.md section 6): makes the call's
 * ids and stores it, waiting at the end of its app's queue, with req;
 * a pacer on some live node starts it when the caps allow. *position is its
 * place (1: next). ERR_RATE_LIMITED when APP_QUEUE_MAX calls already wait
 * (*position is then how many); ERR_UNAVAILABLE as engine_call_place
 * (calling not configured, draining, stopping) and from the store, with
 * *why set (static text). */
enum err engine_call_queue(struct engine *e, struct store_conn *c,
                           const struct engine_outbound *req,
                           char request_uuid[REQUEST_UUID_LEN + 1],
                           char call_uuid[CALL_UUID_LEN + 1], int64_t *position,
                           const char **why) WARN_UNUSED;

/* Thread-safe; e may be NULL (then no hangup webhook is sent). Ends
 * waiting calls CANCELED "16" with their hangup webhooks (sent from this
 * node): the one named call_uuid, else those of app_id (from non-NULL:
 * only those from that number). *cancelled (may be NULL) says whether any
 * call was ended. Of nodes racing, each call is ended once. Errors are
 * logged. */
void engine_queue_cancel(struct engine *e, struct store_conn *c, const char *call_uuid,
                         const char *app_id, const char *from, bool *cancelled);

/* Calls alive now (for metrics and tests). Thread-safe. */
unsigned engine_calls_live(const struct engine *e);

#endif
