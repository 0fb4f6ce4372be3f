/* server: the HTTP/1.1 server (libmicrohttpd, thread pool on epoll,
 * keep-alive and pipelining) in front of the API. It turns wire requests
 * into struct http_request, refuses ambiguous framing itself, enforces the
 * body cap while reading, and writes one access-log line per request
 * (with the client's address, from X-Forwarded-For only when the peer is a
 * trusted proxy). It speaks HTTPS when given TLS credentials.
 * server.c is the only file that includes microhttpd.h. */
#ifndef SFVOPI_HTTP_SERVER_H
#define SFVOPI_HTTP_SERVER_H

#include <stddef.h>

#include "api/api.h"
#include "core/err.h"
#include "core/netaddr.h"
#include "http/tls.h"

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
    struct api_config api;
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

/* Splits "HOST:PORT" or "[V6]:PORT" into host and port (port in 0..65535).
 * ERR_INVALID otherwise. Pure; exposed for tests. */
enum err server_parse_listen(const char *s, char *host, size_t hostsz, int *port) WARN_UNUSED;

#endif
