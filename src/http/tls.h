/* tls: the certificate and key of an HTTPS listener. They are read from PEM
 * files and handed to libmicrohttpd's TLS (GnuTLS) through its certificate
 * callback at every handshake, so that a reload swaps them for the
 * handshakes that follow while open connections keep their sessions. tls.c
 * is the only file that includes GnuTLS headers; it never logs or prints
 * key material. */
#ifndef SFVOPI_HTTP_TLS_H
#define SFVOPI_HTTP_TLS_H

#include <stddef.h>

#include "core/err.h"

/* The largest certificate or key file read. */
#define TLS_FILE_MAX (1 << 20)
/* Certificates in one chain file (the server's and its intermediates). */
#define TLS_CHAIN_MAX 16
/* Listeners with TLS in one process: the API's and the admin one. */
#define TLS_SLOTS 2
/* TLS 1.2 and 1.3 only: no SSL 3.0, TLS 1.0 or 1.1. */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
/* A certificate's serial as hex, NUL included (RFC 5280: at most 20 bytes). */
#define TLS_SERIAL_TEXT 48

struct tls_creds;

/* libmicrohttpd's MHD_OPTION_HTTPS_CERT_CALLBACK takes a GnuTLS callback
 * type; it is handed over as a generic function pointer so that no GnuTLS
 * type leaks out of tls.c. */
typedef void (*tls_callback_fn)(void);

/* Reads cert_path (PEM, the server certificate first, then any
 * intermediates) and key_path (an unencrypted PEM private key), checks that
 * the key belongs to the certificate, and returns credentials in *out.
 * The paths are copied. ERR_INVALID when a file cannot be read, holds no
 * usable PEM or the two do not match, ERR_UNAVAILABLE when TLS_SLOTS
 * credentials are already loaded, ERR_NOMEM; on any error why holds one
 * line naming the file and the cause, never the file's contents. Main
 * thread only. */
enum err tls_creds_load(const char *cert_path, const char *key_path, struct tls_creds **out,
                        char *why, size_t whysz) WARN_UNUSED;

/* Reads both files again; on success the new certificate is used by every
 * handshake from now on, while sessions already set up keep working. On
 * failure (the same errors as tls_creds_load) the credentials are
 * unchanged. Main thread only; safe while handshakes run on other threads.
 * The replaced certificates stay in memory until tls_creds_free, because a
 * session set up with them may still refer to them (a few KiB a reload). */
enum err tls_creds_reload(struct tls_creds *c, char *why, size_t whysz) WARN_UNUSED;

/* The callback to give libmicrohttpd as MHD_OPTION_HTTPS_CERT_CALLBACK;
 * it hands out c's current certificate. Valid until tls_creds_free. */
tls_callback_fn tls_creds_callback(const struct tls_creds *c);

/* The current certificate's serial number (hex) and its end of validity
 * (seconds since the epoch), for log lines. */
void tls_creds_describe(const struct tls_creds *c, char serial[TLS_SERIAL_TEXT],
                        long long *not_after);

/* Frees c and every certificate it held (NULL is fine). Only once no
 * server uses it any more. Main thread only. */
void tls_creds_free(struct tls_creds *c);

#endif
