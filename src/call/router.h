/* router: inbound routing look-ups (number -> app) off the engine's
 * thread. One thread with its own store connection answers them in
 * arrival order from a bounded queue of its own, so that a look-up never
 * waits behind call-record writes (recwriter) while the database stalls.
 * A look-up whose deadline has passed when its turn comes is not run. */
#ifndef SFVOPI_CALL_ROUTER_H
#define SFVOPI_CALL_ROUTER_H

#include <stdint.h>

#include "core/e164.h"
#include "core/err.h"
#include "store/store.h"

struct router_job {
    struct router_job *next; /* the router's */
    char to[E164_MAX];       /* the normalised called number */
    int64_t deadline_ms;     /* monotonic: not run after it */
    /* Set by the router: number_route's result, or ERR_UNAVAILABLE for a
     * look-up not run (deadline passed, router stopping). */
    enum err err;
    int64_t org_id;
    char number_status[STATUS_MAX + 1];
    struct store_app app;
};

/* Called on the router's thread with each job done; the job is the
 * caller's again. */
typedef void (*router_done_fn)(void *ctx, struct router_job *job);

struct router;

enum err router_start(struct store *s, unsigned max_jobs, router_done_fn done, void *ctx,
                      struct router **out) WARN_UNUSED;
/* Any thread. ERR_UNAVAILABLE when max_jobs are waiting already. */
enum err router_submit(struct router *r, struct router_job *job) WARN_UNUSED;
/* Stops the thread (a look-up in progress finishes first); jobs still
 * waiting are handed to done with ERR_UNAVAILABLE. Accepts NULL. */
void router_stop(struct router *r);

#endif
