/* tls: certificates for libmicrohttpd's GnuTLS, swapped on reload. Each
 * load makes a generation (the chain and the key, parsed once); the current
 * one is published through an atomic pointer that the handshake callback
 * reads on any MHD thread. Old generations are kept until the credentials
 * are freed, since a session may still point into them.
 *
 * GnuTLS's certificate callback carries no user pointer, so each loaded
 * credential takes one of TLS_SLOTS process-wide slots, each with its own
 * callback function. */
#include "http/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One certificate chain with its key, as loaded from the files once. */
struct tls_gen {
    struct tls_gen *older; /* the generation this one replaced */
    gnutls_pcert_st pcert[TLS_CHAIN_MAX];
    unsigned npcert;
    gnutls_privkey_t key;
    char serial[TLS_SERIAL_TEXT];
    long long not_after;
};

struct tls_creds {
    int slot;
    char *cert_path, *key_path;
    _Atomic(struct tls_gen *) cur;
};

static pthread_mutex_t slots_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(struct tls_creds *) slots[TLS_SLOTS];

/* Hands out the current generation of the credentials in slot; the
 * arguments about the client's wishes are for client certificates and
 * unused on a server. */
static int retrieve(int slot, gnutls_pcert_st **pcert, unsigned int *pcert_length,
                    gnutls_privkey_t *privkey)
{
    struct tls_creds *c = atomic_load_explicit(&slots[slot], memory_order_acquire);
    struct tls_gen *g = c ? atomic_load_explicit(&c->cur, memory_order_acquire) : NULL;

    if (!g)
        return -1; /* the handshake fails; never the case while a server runs */
    *pcert = g->pcert;
    *pcert_length = g->npcert;
    *privkey = g->key;
    return 0;
}

static int retrieve0(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
                     const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                     gnutls_pcert_st **pcert, unsigned int *pcert_length, gnutls_privkey_t *privkey)
{
    (void)session;
    (void)req_ca_rdn;
    (void)nreqs;
    (void)pk_algos;
    (void)pk_algos_length;
    return retrieve(0, pcert, pcert_length, privkey);
}

static int retrieve1(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
                     const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                     gnutls_pcert_st **pcert, unsigned int *pcert_length, gnutls_privkey_t *privkey)
{
    (void)session;
    (void)req_ca_rdn;
    (void)nreqs;
    (void)pk_algos;
    (void)pk_algos_length;
    return retrieve(1, pcert, pcert_length, privkey);
}

static gnutls_certificate_retrieve_function2 *const callbacks[TLS_SLOTS] = {retrieve0, retrieve1};

/* Reads a whole file of at most TLS_FILE_MAX bytes into a new buffer
 * (NUL-terminated, *len without it). ERR_INVALID with why set otherwise. */
static enum err read_file(const char *path, const char *what, char **out, size_t *len, char *why,
                          size_t whysz)
{
    struct stat st;
    char *data = NULL;
    size_t n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        snprintf(why, whysz, "cannot read %s %s: %s", what, path, strerror(errno));
        return ERR_INVALID;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, whysz, "cannot read %s %s: not a regular file", what, path);
        goto out_fd;
    }
    if (st.st_size > TLS_FILE_MAX) {
        snprintf(why, whysz, "%s %s is larger than %d bytes", what, path, TLS_FILE_MAX);
        goto out_fd;
    }
    data = malloc((size_t)st.st_size + 1);
    if (!data) {
        snprintf(why, whysz, "out of memory reading %s %s", what, path);
        goto out_fd;
    }
    /* Read to the end, but never past the size checked above (a file
     * growing meanwhile is cut there). */
    while (n < (size_t)st.st_size) {
        ssize_t r = read(fd, data + n, (size_t)st.st_size - n);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, whysz, "cannot read %s %s: %s", what, path, strerror(errno));
            goto out_data;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    data[n] = '\0';
    *out = data;
    *len = n;
    return ERR_OK;

out_data:
    explicit_bzero(data, (size_t)st.st_size + 1);
    free(data);
out_fd:
    close(fd);
    return ERR_INVALID;
}

static void gen_free(struct tls_gen *g)
{
    unsigned i;

    if (!g)
        return;
    for (i = 0; i < g->npcert; i++)
        gnutls_pcert_deinit(&g->pcert[i]);
    if (g->key)
        gnutls_privkey_deinit(g->key);
    free(g);
}

/* True when the public halves of key and the certificate are the same. */
static bool key_matches(gnutls_privkey_t key, gnutls_pubkey_t cert_pub)
{
    gnutls_pubkey_t pub;
    unsigned char a[64], b[64];
    size_t alen = sizeof(a), blen = sizeof(b);
    bool same = false;

    if (gnutls_pubkey_init(&pub) < 0)
        return false;
    if (gnutls_pubkey_import_privkey(pub, key, 0, 0) == 0 &&
        gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, a, &alen) == 0 &&
        gnutls_pubkey_get_key_id(cert_pub, GNUTLS_KEYID_USE_SHA256, b, &blen) == 0)
        same = alen == blen && memcmp(a, b, alen) == 0;
    gnutls_pubkey_deinit(pub);
    return same;
}

/* The leaf certificate's serial (hex) and expiry, for the log. */
static void describe_leaf(struct tls_gen *g)
{
    gnutls_x509_crt_t crt;
    unsigned char serial[(TLS_SERIAL_TEXT - 1) / 2];
    size_t n = sizeof(serial), i;

    snprintf(g->serial, sizeof(g->serial), "-");
    g->not_after = 0;
    if (gnutls_x509_crt_init(&crt) < 0)
        return;
    if (gnutls_x509_crt_import(crt, &g->pcert[0].cert, GNUTLS_X509_FMT_DER) == 0) {
        if (gnutls_x509_crt_get_serial(crt, serial, &n) == 0) {
            for (i = 0; i < n; i++)
                snprintf(g->serial + 2 * i, sizeof(g->serial) - 2 * i, "%02x", serial[i]);
        }
        g->not_after = (long long)gnutls_x509_crt_get_expiration_time(crt);
    }
    gnutls_x509_crt_deinit(crt);
}

/* Reads and parses both files into a new generation. */
static enum err gen_load(const char *cert_path, const char *key_path, struct tls_gen **out,
                         char *why, size_t whysz)
{
    struct tls_gen *g;
    char *cert_pem = NULL, *key_pem = NULL;
    size_t cert_len = 0, key_len = 0;
    gnutls_datum_t d;
    unsigned n = TLS_CHAIN_MAX;
    enum err e;
    int rc;

    g = calloc(1, sizeof(*g));
    if (!g) {
        snprintf(why, whysz, "out of memory");
        return ERR_NOMEM;
    }
    e = read_file(cert_path, "certificate", &cert_pem, &cert_len, why, whysz);
    if (e != ERR_OK)
        goto out_gen;
    e = read_file(key_path, "key", &key_pem, &key_len, why, whysz);
    if (e != ERR_OK)
        goto out_cert;
    e = ERR_INVALID;
    d.data = (unsigned char *)cert_pem;
    d.size = (unsigned)cert_len;
    rc = gnutls_pcert_list_import_x509_raw(g->pcert, &n, &d, GNUTLS_X509_FMT_PEM, 0);
    if (rc == GNUTLS_E_SHORT_MEMORY_BUFFER) {
        snprintf(why, whysz, "certificate %s holds more than %d certificates", cert_path,
                 TLS_CHAIN_MAX);
        goto out_key;
    }
    if (rc < 0 || n == 0) {
        snprintf(why, whysz, "certificate %s holds no PEM certificate (%s)", cert_path,
                 gnutls_strerror(rc));
        goto out_key;
    }
    g->npcert = n;
    if (gnutls_privkey_init(&g->key) < 0) {
        snprintf(why, whysz, "out of memory");
        goto out_key;
    }
    d.data = (unsigned char *)key_pem;
    d.size = (unsigned)key_len;
    rc = gnutls_privkey_import_x509_raw(g->key, &d, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (rc < 0) {
        snprintf(why, whysz, "key %s holds no unencrypted PEM private key (%s)", key_path,
                 gnutls_strerror(rc));
        goto out_key;
    }
    if (!key_matches(g->key, g->pcert[0].pubkey)) {
        snprintf(why, whysz, "key %s does not belong to certificate %s", key_path, cert_path);
        goto out_key;
    }
    describe_leaf(g);
    e = ERR_OK;

out_key:
    explicit_bzero(key_pem, key_len);
    free(key_pem);
out_cert:
    free(cert_pem);
out_gen:
    if (e != ERR_OK)
        gen_free(g);
    else
        *out = g;
    return e;
}

enum err tls_creds_load(const char *cert_path, const char *key_path, struct tls_creds **out,
                        char *why, size_t whysz)
{
    struct tls_creds *c;
    struct tls_gen *g = NULL;
    enum err e;
    int i;

    c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(why, whysz, "out of memory");
        return ERR_NOMEM;
    }
    c->cert_path = strdup(cert_path);
    c->key_path = strdup(key_path);
    if (!c->cert_path || !c->key_path) {
        snprintf(why, whysz, "out of memory");
        e = ERR_NOMEM;
        goto out_creds;
    }
    e = gen_load(cert_path, key_path, &g, why, whysz);
    if (e != ERR_OK)
        goto out_creds;
    atomic_init(&c->cur, g);
    pthread_mutex_lock(&slots_mu);
    for (i = 0; i < TLS_SLOTS && atomic_load(&slots[i]); i++) {
    }
    if (i < TLS_SLOTS) {
        c->slot = i;
        atomic_store_explicit(&slots[i], c, memory_order_release);
    }
    pthread_mutex_unlock(&slots_mu);
    if (i == TLS_SLOTS) {
        snprintf(why, whysz, "more than %d listeners with TLS", TLS_SLOTS);
        e = ERR_UNAVAILABLE;
        goto out_gen;
    }
    *out = c;
    return ERR_OK;

out_gen:
    gen_free(g);
out_creds:
    free(c->cert_path);
    free(c->key_path);
    free(c);
    return e;
}

enum err tls_creds_reload(struct tls_creds *c, char *why, size_t whysz)
{
    struct tls_gen *g = NULL;
    enum err e;

    e = gen_load(c->cert_path, c->key_path, &g, why, whysz);
    if (e != ERR_OK)
        return e;
    g->older = atomic_load(&c->cur);
    atomic_store_explicit(&c->cur, g, memory_order_release);
    return ERR_OK;
}

tls_callback_fn tls_creds_callback(const struct tls_creds *c)
{
    return (tls_callback_fn)callbacks[c->slot];
}

void tls_creds_describe(const struct tls_creds *c, char serial[TLS_SERIAL_TEXT],
                        long long *not_after)
{
    const struct tls_gen *g = atomic_load(&((struct tls_creds *)c)->cur);

    snprintf(serial, TLS_SERIAL_TEXT, "%s", g->serial);
    *not_after = g->not_after;
}

void tls_creds_free(struct tls_creds *c)
{
    struct tls_gen *g, *older;

    if (!c)
        return;
    pthread_mutex_lock(&slots_mu);
    atomic_store(&slots[c->slot], NULL);
    pthread_mutex_unlock(&slots_mu);
    for (g = atomic_load(&c->cur); g; g = older) {
        older = g->older;
        gen_free(g);
    }
    free(c->cert_path);
    free(c->key_path);
    free(c);
}
