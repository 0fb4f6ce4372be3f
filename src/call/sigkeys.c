/* sigkeys: a sorted array of (org, secrets), replaced whole at each
 * refresh, so a reader copies under a short lock and signs without it.
 * The old array is wiped before it is freed. */
#include "call/sigkeys.h"

#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

struct entry {
    int64_t org_id;
    struct whsig_keys keys;
};

struct set {
    struct entry *v;
    size_t n, cap;
    size_t secrets;
    bool truncated;
};

struct sigkeys {
    struct store *store;
    struct store_conn *conn;
    pthread_t thread;
    pthread_mutex_t mu; /* guards cur, stop */
    pthread_cond_t cv;
    struct set cur;
    bool stop;
    bool failing; /* the last refresh failed (logged once until it works) */
};

static void set_free(struct set *s)
{
    if (s->v) {
        sodium_memzero(s->v, s->cap * sizeof(s->v[0]));
        free(s->v);
    }
    memset(s, 0, sizeof(*s));
}

/* Rows come by org ascending, newest first within one: a new org starts
 * an entry, and secrets past WHSIG_KEYS_MAX (never stored) are dropped. */
static enum err collect(void *ud, int64_t org_id, const char *secret)
{
    struct set *s = ud;
    struct entry *e;
    size_t len = strlen(secret);

    if (len == 0 || len > WHSIG_SECRET_LEN)
        return ERR_OK; /* not one of ours: never signs */
    if (!s->n || s->v[s->n - 1].org_id != org_id) {
        if (s->n == SIGKEYS_ORGS_MAX) {
            s->truncated = true;
            return ERR_OK;
        }
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 16;
            struct entry *v = calloc(cap, sizeof(*v));

            if (!v)
                return ERR_NOMEM;
            if (s->v) {
                memcpy(v, s->v, s->n * sizeof(*v));
                sodium_memzero(s->v, s->cap * sizeof(s->v[0]));
                free(s->v);
            }
            s->v = v;
            s->cap = cap;
        }
        s->v[s->n].org_id = org_id;
        s->n++;
    }
    e = &s->v[s->n - 1];
    if (e->keys.n < WHSIG_KEYS_MAX) {
        memcpy(e->keys.secret[e->keys.n++], secret, len + 1);
        s->secrets++;
    }
    return ERR_OK;
}

static bool set_equal(const struct set *a, const struct set *b)
{
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof(a->v[0])) == 0);
}

/* Reads the whole set and swaps it in. The connection is opened (again)
 * here, so a database that was down at start is picked up later. */
static void refresh(struct sigkeys *k)
{
    struct set next = {0}, old;
    enum err e = ERR_OK;
    bool changed;

    if (!k->conn)
        e = store_conn_open(k->store, &k->conn);
    if (e == ERR_OK)
        e = k->conn->ops->whsecret_active_all(k->conn, collect, &next);
    if (e != ERR_OK) {
        set_free(&next);
        if (!k->failing)
            log_warn("msg=\"signing secrets not read: the last ones read still sign\" err=%s",
                     err_str(e));
        k->failing = true;
        return;
    }
    if (k->failing)
        log_info("msg=\"signing secrets read again\"");
    k->failing = false;
    pthread_mutex_lock(&k->mu);
    changed = !set_equal(&k->cur, &next);
    old = k->cur;
    k->cur = next;
    pthread_mutex_unlock(&k->mu);
    set_free(&old);
    if (changed) {
        log_info("msg=\"signing secrets loaded\" orgs=%zu secrets=%zu", next.n, next.secrets);
        if (next.truncated)
            log_warn("msg=\"signing secrets of too many orgs: the rest are not signed\" max=%d",
                     SIGKEYS_ORGS_MAX);
    }
}

static void *sigkeys_main(void *arg)
{
    struct sigkeys *k = arg;
    struct timespec until;

    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += SIGKEYS_REFRESH_MS / 1000;
        until.tv_nsec += (long)(SIGKEYS_REFRESH_MS % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&k->mu);
        while (!k->stop && pthread_cond_timedwait(&k->cv, &k->mu, &until) == 0) {
        }
        if (k->stop) {
            pthread_mutex_unlock(&k->mu);
            break;
        }
        pthread_mutex_unlock(&k->mu);
        refresh(k);
    }
    return NULL;
}

enum err sigkeys_start(struct store *s, struct sigkeys **out)
{
    struct sigkeys *k = calloc(1, sizeof(*k));
    pthread_condattr_t ca;
    enum err e = ERR_UNAVAILABLE;

    *out = NULL;
    if (!k)
        return ERR_NOMEM;
    k->store = s;
    if (pthread_mutex_init(&k->mu, NULL) != 0)
        goto out_k;
    if (pthread_condattr_init(&ca) != 0)
        goto out_mu;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_cond_init(&k->cv, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        goto out_mu;
    }
    pthread_condattr_destroy(&ca);
    refresh(k);
    if (pthread_create(&k->thread, NULL, sigkeys_main, k) != 0)
        goto out_cv;
    *out = k;
    return ERR_OK;

out_cv:
    pthread_cond_destroy(&k->cv);
    store_conn_close(k->conn);
    set_free(&k->cur);
out_mu:
    pthread_mutex_destroy(&k->mu);
out_k:
    free(k);
    return e;
}

void sigkeys_stop(struct sigkeys *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&k->mu);
    k->stop = true;
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->thread, NULL);
    store_conn_close(k->conn);
    set_free(&k->cur);
    pthread_cond_destroy(&k->cv);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

void sigkeys_get(struct sigkeys *k, int64_t org_id, struct whsig_keys *out)
{
    size_t lo = 0, hi;

    memset(out, 0, sizeof(*out));
    if (!k)
        return;
    pthread_mutex_lock(&k->mu);
    hi = k->cur.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (k->cur.v[mid].org_id < org_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < k->cur.n && k->cur.v[lo].org_id == org_id)
        *out = k->cur.v[lo].keys;
    pthread_mutex_unlock(&k->mu);
}
