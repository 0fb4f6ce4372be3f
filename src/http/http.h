/* http: the request and response records shared by the HTTP server and the
 * API layer, free of any server library. server.c fills a struct
 * http_request from the wire; the API layer answers into a struct
 * http_response. This seam lets tests and fuzzers drive the whole request
 * path without a socket. Records belong to one thread. */
#ifndef SFVOPI_HTTP_HTTP_H
#define SFVOPI_HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/netaddr.h"

#define HTTP_BODY_MAX (64 * 1024)     /* request bodies; larger is 413 */
#define HTTP_RESPONSE_MAX (64u << 20) /* response bodies */
#define HTTP_REQUEST_ID_MAX 128
#define HTTP_QUERY_MAX 16 /* query arguments kept per request */
/* X-Forwarded-For: the last this many header lines are kept, and at most
 * this many addresses are walked; a longer chain ends the walk there. */
#define HTTP_XFF_HEADERS_MAX 8
#define HTTP_XFF_HOPS_MAX 32

enum http_method {
    HTTP_OTHER,
    HTTP_GET,
    HTTP_HEAD,
    HTTP_POST,
    HTTP_PUT,
    HTTP_DELETE,
    HTTP_PATCH,
    HTTP_OPTIONS,
};

/* One query argument as sent: not percent-decoded ('+' may already have
 * become a space). value is NULL for an argument without '='. */
struct http_query_arg {
    const char *key;
    const char *value;
};

struct http_request {
    enum http_method method;
    const char *path; /* raw (not percent-decoded), without the query */
    size_t path_len;
    const char *api_key; /* X-API-Key, NULL when absent */
    size_t api_key_len;
    int api_key_count;        /* how many X-API-Key headers were sent */
    const char *content_type; /* NULL when absent */
    const char *request_id;   /* the client's X-Request-Id, NULL when absent */
    int64_t content_length;   /* -1 when not declared */
    const char *body;         /* complete body (phase 2 only) */
    size_t body_len;
    bool body_too_large; /* more than HTTP_BODY_MAX bytes arrived */
    /* The query arguments, in order; query_n counts them all, even those
     * past HTTP_QUERY_MAX, which are not kept. */
    struct http_query_arg query[HTTP_QUERY_MAX];
    int query_n;
    /* The connection's peer is a loopback address (127.0.0.0/8, ::1). */
    bool peer_loopback;
    /* The request carries an X-Forwarded-For or a Forwarded header: it
     * came through a proxy, whatever the peer. */
    bool forwarded;
    /* Idempotency-Key (AGENT.md section 5), as sent (NULL when absent),
     * and how many such headers were sent. */
    const char *idem_key;
    size_t idem_key_len;
    int idem_key_count;
};

struct http_response {
    int status;
    struct buf body;
    const char *allow; /* Allow header, static, or NULL */
    char request_id[HTTP_REQUEST_ID_MAX + 1];
    bool close;     /* ask the server to close the connection after it */
    int64_t org_id; /* for the access log; 0 when unauthenticated */
    /* X-RateLimit-* headers, when rate_set; Retry-After when retry_after. */
    bool rate_set;
    unsigned rate_limit, rate_remaining, rate_reset, retry_after;
    const char *route;        /* static route name for the access log */
    int route_idx;            /* index into api_route_names() for metrics; 0: unrouted */
    const char *content_type; /* static; NULL: application/json */
    /* The answer is a kept one, given again for an Idempotency-Key:
     * "Idempotent-Replayed: true". */
    bool idem_replayed;
};

/* Parses an HTTP method token (case-sensitive, as in RFC 9110). */
enum http_method http_method_parse(const char *s);
const char *http_method_name(enum http_method m);

void http_response_init(struct http_response *r);
void http_response_release(struct http_response *r);

/* True when s is an acceptable client request id: 1 to 128 characters of
 * [A-Za-z0-9._:-]. */
bool http_request_id_valid(const char *s);
/* Sets r->request_id to the client's id when valid, else a new random one. */
void http_response_set_request_id(struct http_response *r, const char *client_id);

/* Percent-decodes in[0..len) into out (outsz bytes including the NUL).
 * '+' is not special. ERR_INVALID for a malformed escape, ERR_TOO_LARGE when
 * out is too small. The result may contain NUL bytes: *outlen tells its
 * length. */
enum err http_path_decode(const char *in, size_t len, char *out, size_t outsz,
                          size_t *outlen) WARN_UNUSED;

/* The address of the client behind a request that arrived from peer. It is
 * peer itself unless trusted (the --trusted-proxy list; NULL: none) holds
 * peer; then the X-Forwarded-For values are walked from the right (xff[n-1]
 * is the last header line, xff_len[i] the length of xff[i], each a
 * comma-separated list of addresses) and the client is the first address
 * trusted does not hold. When every address is trusted, it is the
 * left-most one. An item that is not a bare IP address (a port, a name,
 * "unknown"), or one past the first HTTP_XFF_HOPS_MAX addresses, ends the
 * walk at the last address taken, so that what a client wrote beyond the
 * proxies is never believed. Empty items are skipped. Pure, thread-safe;
 * any bytes may be given. */
void http_client_addr(const struct policy_ip *peer, const struct allowlist *trusted,
                      const char *const *xff, const size_t *xff_len, size_t n,
                      struct policy_ip *client);

/* True when the Content-Type value names JSON: "application/json",
 * case-insensitive, optionally followed by parameters. */
bool http_content_type_is_json(const char *ct);

#endif
