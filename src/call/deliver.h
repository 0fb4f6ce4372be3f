/* deliver: sends the webhooks of CALLS.md section 5 over HTTP(S) without
 * blocking, driven by an event loop it does not own (the loop owner watches
 * the fds and the one timer this module asks for, and calls back in). The
 * only module that sees libcurl. It never follows redirects, never turns TLS
 * verification off, never uses a proxy, and refuses to connect to an address
 * the section 5 rules forbid. It never logs a URL's query string or a payload. */
#ifndef SFVOPI_CALL_DELIVER_H
#define SFVOPI_CALL_DELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "call/webhook.h"
#include "core/err.h"
#include "core/whsig.h"

/* Payload and GET URL caps of one delivery: stored URLs are at most
 * APP_URL_MAX (2048) bytes and a payload's query string well under 2 KiB,
 * so these are hard stops, never reached by valid input. */
#define DELIVER_BODY_MAX 4096
#define DELIVER_URL_MAX 8192

/* One per event-loop thread. Not thread-safe: every function below must be
 * called from the thread that runs that loop. */
struct deliver;

/* What the loop owner supplies. Both functions are called synchronously
 * from inside deliver_send, deliver_cancel, deliver_on_fd, deliver_on_timer
 * and deliver_free; they must not call back into this module. */
struct deliver_hooks {
    void *ctx;
    /* Watch fd for readability and/or writability, replacing any previous
     * interest in fd; both false: stop watching fd (it may be closed right
     * after). When fd is ready, the loop calls deliver_on_fd. 0 ok, -1 on
     * error: the delivery using fd then fails with error "internal" (its
     * callback runs from the next deliver_on_fd or deliver_on_timer). */
    int (*fd_watch)(void *ctx, int fd, bool want_read, bool want_write);
    /* (Re)arm the single timer to fire once in ms milliseconds (0: as soon
     * as possible, but from the loop, not from inside this call); ms < 0:
     * cancel it. When it fires, the loop calls deliver_on_timer. */
    void (*timer_set)(void *ctx, long ms);
};

/* Initialises libcurl for the process. Call once from main before any
 * thread starts and before deliver_new (libcurl's global init is not
 * thread-safe). Later calls do nothing. ERR_INTERNAL if libcurl (or its TLS
 * library) cannot initialise. */
enum err deliver_global_init(void) WARN_UNUSED;

/* Makes a deliverer for the calling thread's loop. hooks is copied; version
 * is copied and sent as "User-Agent: sfvopi/<version>"; deny_private applies
 * --deny-private-urls (loopback and private addresses are refused too;
 * link-local ones always are). ERR_NOMEM, ERR_INTERNAL (libcurl). */
enum err deliver_new(const struct deliver_hooks *hooks, const char *version, bool deny_private,
                     struct deliver **out) WARN_UNUSED;

/* Aborts every delivery in flight without calling its callback, then frees
 * d. May call fd_watch to stop watching fds. Accepts NULL. Must not be
 * called from inside a deliver_done_cb. */
void deliver_free(struct deliver *d);

/* The loop calls this when a watched fd is ready (both flags false: the
 * loop does not know, libcurl finds out). Completed deliveries' callbacks
 * run from here, after libcurl has returned. */
void deliver_on_fd(struct deliver *d, int fd, bool readable, bool writable);

/* The loop calls this when the timer armed through timer_set fires.
 * Timeouts are detected here; callbacks run as for deliver_on_fd. */
void deliver_on_timer(struct deliver *d);

/* The outcome of one delivery. Every pointer is valid only during the
 * callback. */
struct deliver_result {
    bool ok;          /* an HTTP 200 came back in time with its whole body */
    long http_status; /* the response's status, 0 if none arrived */
    /* The response body when the request had want_body (else NULL, 0):
     * at most STREAM_BODY_MAX bytes, NUL-terminated (the NUL not counted).
     * A longer body makes ok false with error "body too large". */
    const char *body;
    size_t body_len;
    /* NULL when ok; else short static text, never customer data:
     * "timeout", "refused address", "resolve failed", "connect failed",
     * "tls", "no response", "http status", "body too large",
     * "transfer failed", "internal". */
    const char *error;
};

/* Called exactly once per delivery that was neither cancelled nor freed
 * with its deliverer. It may call deliver_send and deliver_cancel (for any
 * id; its own is already gone), not deliver_free. */
typedef void (*deliver_done_cb)(void *arg, const struct deliver_result *r);

struct deliver_request {
    const char *url; /* http:// or https://; the GET query is appended */
    bool post;       /* POST the JSON payload, else GET with the payload as query */
    enum webhook_kind kind;
    const struct store_call *call; /* the record; read during deliver_send only */
    const char *delivery_id;       /* X-Sfvopi-Delivery; read during deliver_send only */
    long timeout_ms;               /* the whole request, connect included; > 0 */
    bool want_body;                /* keep the response body for the callback */
    /* The org's signing secrets (AGENT.md section 4); NULL or none: no
     * X-Sfvopi-Signature. Read during deliver_send only: the header is
     * made there, over the POST body or the GET query string as sent, with
     * t the wall clock's seconds. */
    const struct whsig_keys *keys;
};

/* Starts one delivery and returns at once: the payload, URL and headers
 * are built and copied here, so req and everything it points to may go
 * away when this returns. cb(arg, result) runs exactly once later from
 * deliver_on_fd or deliver_on_timer, never from inside deliver_send,
 * unless the delivery is cancelled or d is freed first. *id (nonzero,
 * never reused by d) names it for deliver_cancel. On error no callback will
 * come: ERR_INVALID (not an http(s) URL, bad timeout, a payload or header
 * webhook.h refuses), ERR_TOO_LARGE (URL or payload over the caps above),
 * ERR_NOMEM, ERR_INTERNAL (libcurl). */
enum err deliver_send(struct deliver *d, const struct deliver_request *req, deliver_done_cb cb,
                      void *arg, uint64_t *id) WARN_UNUSED;

/* Aborts the delivery id; its callback will not run. Does nothing for an
 * unknown or finished id. O(pending). */
void deliver_cancel(struct deliver *d, uint64_t id);

/* Deliveries started and not yet finished or cancelled. */
size_t deliver_pending(const struct deliver *d);

#endif
