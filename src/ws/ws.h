/* ws: the WebSocket client of the audio stream (CALLS.md section 7). One
 * hub owns one libwebsockets context and the one thread that services it;
 * any thread may open, feed, close and release connections through it.
 * It refuses the addresses of section 5 before any packet is sent, verifies
 * wss certificates, and never logs a URL's path or query. It knows nothing
 * about calls or JSON: it moves text messages, nothing else. */
#ifndef SFVOPI_WS_WS_H
#define SFVOPI_WS_WS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"
#include "core/whsig.h"

/* The largest text message delivered (fragments joined); a larger one is
 * dropped whole and logged at debug level. 1 MiB of payload plus room for
 * the JSON around base64 audio. */
#define WS_MESSAGE_MAX (1024 * 1024 + 64 * 1024)
/* Bytes of text one connection may hold queued for sending. */
#define WS_SENDQ_MAX (4 * 1024 * 1024)
/* What section 7 allows for the connect and the handshake. */
#define WS_CONNECT_TIMEOUT_MS 5000

/* One libwebsockets context and its service thread. */
struct ws_hub;
/* One client connection, created by ws_connect. */
struct ws_conn;

enum ws_event {
    WS_EV_OPEN,   /* the handshake completed */
    WS_EV_TEXT,   /* one complete text message */
    WS_EV_CLOSED, /* the last event of a connection */
};

/* An event of one connection, called on the hub's thread, never two at once
 * for one hub. WS_EV_TEXT: data[0..len) is one whole text message (not
 * NUL-terminated, valid only during the call); binary messages are never
 * delivered. WS_EV_CLOSED: code is the close code the peer sent (1005 when
 * its close frame had none), the code given to ws_close when sfvopi closed,
 * 1006 when an open connection dropped, or 0 when it never opened (bad
 * address, resolve, connect, TLS or handshake failure, timeout, ws_close
 * before open); data/len is a short static reason ("timeout", "refused
 * address", ...). Exactly one WS_EV_CLOSED ends every connection whose
 * handle is not released first, and nothing follows it.
 * The callback must not block (it stalls every connection of the hub): the
 * intended use is to copy and queue to another thread. It may call
 * ws_send_text, ws_close and ws_conn_release (even on its own connection)
 * and ws_connect, but never ws_hub_free. */
typedef void (*ws_event_cb)(void *arg, enum ws_event ev, const char *data, size_t len, int code);

/* Creates a hub and starts its thread. deny_private_urls: also refuse
 * loopback and private addresses (section 5; link-local is always
 * refused). Routes libwebsockets' own errors and warnings to the debug log
 * (a process-wide setting). Meant to be one per process: with
 * libwebsockets 4.1 and its global TLS init, hubs that exist at the same
 * time leak their client TLS state (the CA store, ~0.7 MB) when freed.
 * ERR_NOMEM, or ERR_INTERNAL when the context or the thread cannot be made.
 * Thread-safe. */
enum err ws_hub_new(bool deny_private_urls, struct ws_hub **out) WARN_UNUSED;

/* Sends a close frame (1000) on every open connection, drops the others,
 * waits at most about half a second for those frames to leave, stops and
 * joins the thread, and frees everything. No callback runs once it has
 * returned (and none after the thread has seen the stop). Every ws_conn of
 * the hub, released or not, is freed: the caller must not use any handle
 * afterwards, nor call any ws_ function on h concurrently. A resolver still
 * waiting on DNS keeps a small part of the hub alive until it returns,
 * without delaying this call. Accepts NULL. Not thread-safe; never from the
 * hub's callback. */
void ws_hub_free(struct ws_hub *h);

/* Starts connecting to url (ws:// or wss://, checked with
 * url_ws_valid): resolves the host off the hub thread, refuses the whole
 * host when any address it resolves to is refused by section 5, tries its
 * addresses in getaddrinfo's order (at most 4) until one connects, sends
 * the URL's host (and port) as Host, and for wss uses it for SNI and the
 * certificate name check against the system CA store. The connect and the
 * handshake must finish within connect_timeout_ms of this call, else
 * WS_EV_CLOSED with code 0. Text may be queued with ws_send_text before the
 * connection opens; it is sent once it does. cb(arg, ...) reports the
 * events; arg is the caller's.
 * *out is the caller's handle until ws_conn_release, which must be called
 * exactly once (before ws_hub_free, or never); it is written before any
 * callback for it can run, so the callback may use it. ERR_INVALID for a
 * bad URL, a NULL cb or a timeout <= 0; ERR_NOMEM; ERR_UNAVAILABLE while
 * the hub is being freed. A refused or unresolvable host is not an error
 * here: it arrives as WS_EV_CLOSED code 0. Never blocks on the network.
 * Thread-safe, callable from the callback. */
enum err ws_connect(struct ws_hub *h, const char *url, int connect_timeout_ms, ws_event_cb cb,
                    void *arg, struct ws_conn **out) WARN_UNUSED;

/* ws_connect, with the upgrade request signed (AGENT.md section 4): when
 * keys holds a secret, the handshake carries X-Sfvopi-Signature over the
 * request target (path and "?query", exactly as on the request line), with
 * t the wall clock's seconds at this call. keys is read during this call
 * only (NULL or none: no header, as ws_connect); only the header value,
 * which holds no secret, is kept. ERR_INVALID also when keys cannot sign. */
enum err ws_connect_signed(struct ws_hub *h, const char *url, const struct whsig_keys *keys,
                           int connect_timeout_ms, ws_event_cb cb, void *arg,
                           struct ws_conn **out) WARN_UNUSED;

/* Queues data[0..len) (copied) as one text message, sent in order after
 * the ones queued before it. ERR_TOO_LARGE when the queue would exceed
 * WS_SENDQ_MAX bytes (the message is dropped, the connection goes on);
 * ERR_UNAVAILABLE once ws_close or ws_conn_release was called or the
 * connection has ended; ERR_INVALID for NULL data with len > 0; ERR_NOMEM.
 * The data is not checked for UTF-8. Never blocks on the network.
 * Thread-safe. */
enum err ws_send_text(struct ws_conn *c, const char *data, size_t len) WARN_UNUSED;

/* As ws_send_text, but the message may wait for the next one to go out in
 * the same write: it leaves with the next message queued on c, or at once
 * when it finds another lazy message still waiting (so one waits at most
 * until the next lazy one). For a steady stream that can ride along with
 * another, such as one track's frames beside the other's. */
enum err ws_send_text_lazy(struct ws_conn *c, const char *data, size_t len) WARN_UNUSED;

/* Closes c: once the queued text is sent, a close frame carrying code goes
 * out (a code RFC 6455 lets an endpoint send: 1000-1003, 1007-1014,
 * 3000-4999; anything else becomes 1000) and the peer's answer is awaited
 * (lws gives up after a few seconds). Before the connection opened it is
 * dropped at once instead (code 0; should the handshake win the race,
 * WS_EV_OPEN comes first and the close goes as for an open connection).
 * Exactly one WS_EV_CLOSED follows unless it was already delivered. Later
 * calls do nothing. Thread-safe, callable from the callback. */
void ws_close(struct ws_conn *c, int code);

/* Gives up the caller's handle. No callback for c runs after this returns:
 * from another thread it waits for a callback of c that is running right
 * now to return (so never call it holding a lock that the callback takes);
 * from c's own callback, or any callback of the hub, it returns at once and
 * nothing more is delivered for c. A connection still open is closed with
 * 1000 after its queued text; the hub frees c when its side is done too.
 * Accepts NULL. Thread-safe. */
void ws_conn_release(struct ws_conn *c);

/* The bytes queued for sending on the connection with the longest queue,
 * over every hub alive (0 without any). Thread-safe. */
size_t ws_sendq_max(void);

/* Test seam, not for product code: the getaddrinfo that resolver threads
 * call for host names (numeric hosts never reach it). Set it before any hub
 * exists and restore it after the last one is freed. */
struct addrinfo;
typedef int (*ws__getaddrinfo_fn)(const char *node, const char *service,
                                  const struct addrinfo *hints, struct addrinfo **res);
extern ws__getaddrinfo_fn ws__getaddrinfo;

#endif
