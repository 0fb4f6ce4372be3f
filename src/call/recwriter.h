/* recwriter: writes call records off the engine's thread. One writer
 * thread with its own store connection takes writes from a bounded queue
 * in FIFO order, so that the thread that paces RTP never waits for the
 * database (SIP.md section 4).
 *
 * Each call holds a slot from the moment it is admitted until its last
 * write has been taken: recw_reserve refuses a new call when every slot is
 * taken, and a live call's writes always fit. A slot is queued at most once:
 * a write put while the call's previous one still waits replaces it (a
 * create stays a create), so the latest state always lands and one call's
 * writes land in the order they were put.
 *
 * A write that fails with ERR_UNAVAILABLE is tried again, with a growing
 * pause, until give_up_ms after its first attempt; then it is logged and
 * dropped. The call's next write carries its whole state (a create that
 * was dropped is made again by it); a record whose last write was dropped
 * keeps the state of its last write that landed. A create that meets
 * ERR_CONFLICT after an attempt that got no answer has landed. */
#ifndef SFVOPI_CALL_RECWRITER_H
#define SFVOPI_CALL_RECWRITER_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"
#include "store/store.h"

/* Writes one record; create: insert it, else update it. Runs on the
 * writer's thread. */
typedef enum err (*recw_write_fn)(void *ctx, const struct store_call *rec, bool create);

struct recw_config {
    unsigned slots; /* calls with a record in the writer's hands at once */
    /* The writes go to store through a connection of the writer's own;
     * or, when write is set, to write(ctx, ...) instead. */
    struct store *store;
    recw_write_fn write;
    void *ctx;
    int backoff_min_ms, backoff_max_ms; /* 0: 50 and 2000 */
    int give_up_ms;                     /* 0: RECW_GIVE_UP_MS */
    /* Called on the writer's thread once a write put with recw_put_then is
     * done: landed, or given up (also when shutdown leaves it unwritten).
     * ctx is landed_ctx; arg is recw_put_then's, never dereferenced here. */
    void (*landed)(void *ctx, void *arg);
    void *landed_ctx;
};

/* Long enough to outlast a database stall of tens of seconds, including
 * PostgreSQL round trips that each wait up to 8 s before failing. */
#define RECW_GIVE_UP_MS 60000

struct recw;
struct recw_slot;

enum err recw_start(const struct recw_config *cfg, struct recw **out) WARN_UNUSED;
/* Any thread. A slot for a new call; NULL when every slot is taken. */
struct recw_slot *recw_reserve(struct recw *w);
/* Any thread (one call's puts from one thread). Queues the call's record
 * (copied) without waiting; create for its first write. */
void recw_put(struct recw *w, struct recw_slot *s, const struct store_call *rec, bool create);
/* As recw_put, and cfg.landed(cfg.landed_ctx, arg) once this write (or a
 * later one of the call that replaced it before it was taken) is done. */
void recw_put_then(struct recw *w, struct recw_slot *s, const struct store_call *rec, bool create,
                   void *arg);
/* The call is gone: its slot is freed once its last write has been taken.
 * Accepts NULL. */
void recw_release(struct recw *w, struct recw_slot *s);
/* Writes queued or being written (for tests and logs). */
size_t recw_backlog(struct recw *w);
/* Writes what is queued, trying again failed writes until drain_ms from
 * now at most, then stops the thread and frees the writer. Writes left
 * are logged. Every slot must have been released. Accepts NULL. */
void recw_stop(struct recw *w, int drain_ms);

#endif
