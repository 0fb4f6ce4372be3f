/* server: the HTTP/1.1 server (libmicrohttpd, thread pool on epoll,
 * keep-alive and pipelining) in front of the API. It turns wire requests
 * into struct http_request, refuses ambiguous framing itself, enforces the
 * body cap while reading, and writes one access-log line per request
 * (with the client's address, from X-Forwarded-For only when the peer is a
 * trusted proxy). It speaks HTTPS when given TLS credentials.
 * server.c is the only file that includes microhttpd.h. */
#ifndef SFVOPI_HTTP_SERVER_H
#define SFVOPI_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"
#include "core/netaddr.h"
#include "http/http.h"
#include "http/tls.h"

/* The application the server answers with (the API; tests may give
 * another). The server knows it only through these functions: one worker
 * per pool thread, made lazily and freed when the thread ends, and per
 * request call_size bytes of the application's own state (zeroed, aligned
 * for any type), carried from begin to finish. */
struct server_app {
    void *arg; /* handed to worker_new */
    size_t call_size;
    /* A worker for the calling thread; NULL on allocation failure. */
    void *(*worker_new)(void *arg);
    void (*worker_free)(void *worker);
    /* On the headers: true when resp is the final answer (the body, if
     * any, is not needed), false when finish must follow. */
    bool (*begin)(void *worker, const struct http_request *req, void *call,
                  struct http_response *resp);
    /* With req->body complete (or req->body_too_large set). */
    void (*finish)(void *worker, const struct http_request *req, void *call,
                   struct http_response *resp);
};

struct server_config {
    const char *listen;      /* "HOST:PORT", "[::1]:PORT"; port 0 picks one */
    unsigned threads;        /* worker threads, >= 1 */
    unsigned conn_limit;     /* concurrent connections */
    unsigned conn_timeout_s; /* idle connection timeout */
    /* HTTPS with these credentials (owned by the caller, kept alive until
     * server_stop returns); NULL: plain HTTP. */
    struct tls_creds *tls;
    /* Peers whose X-Forwarded-For names the client in the access log
     * (owned by the caller, as long as the server runs); NULL: none. */
    const struct allowlist *trusted_proxy;
    struct server_app app;
};

struct server;

/* Binds, listens and starts the workers. On success *out is running and
 * bound[] holds the real "HOST:PORT". ERR_INVALID for a malformed listen
 * address, ERR_UNAVAILABLE when it cannot be bound (reason logged). */
enum err server_start(const struct server_config *cfg, struct server **out, char *bound,
                      size_t boundsz) WARN_UNUSED;

/* Stops accepting, lets requests in flight finish for at most grace_ms,
 * then closes every connection and frees the server. */
void server_stop(struct server *s, int grace_ms);

#endif
