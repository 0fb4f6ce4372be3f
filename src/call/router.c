/* router: the routing look-up thread (see router.h). */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>

#include "call/router.h"
#include "core/clock.h"
#include "core/log.h"

struct router {
    struct store *store;
    router_done_fn done;
    void *ctx;
    unsigned max_jobs, njobs;
    struct router_job *head, *tail;
    bool stopping;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void run_job(struct router *r, struct store_conn **conn, struct router_job *j)
{
    enum err e;

    j->err = ERR_UNAVAILABLE;
    if (clock_mono_ms() >= j->deadline_ms)
        return;
    if (!*conn) {
        e = store_conn_open(r->store, conn);
        if (e != ERR_OK) {
            j->err = e == ERR_DB ? e : ERR_UNAVAILABLE;
            return;
        }
    }
    j->err = (*conn)->ops->number_route(*conn, j->to, &j->org_id, j->number_status, &j->app);
}

static void *router_main(void *arg)
{
    struct router *r = arg;
    struct store_conn *conn = NULL;
    struct router_job *j;

    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->head && !r->stopping)
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->stopping)
            break;
        j = r->head;
        r->head = j->next;
        if (!r->head)
            r->tail = NULL;
        r->njobs--;
        pthread_mutex_unlock(&r->mu);
        j->next = NULL;
        run_job(r, &conn, j);
        r->done(r->ctx, j);
        pthread_mutex_lock(&r->mu);
    }
    while (r->head) {
        j = r->head;
        r->head = j->next;
        r->njobs--;
        j->next = NULL;
        j->err = ERR_UNAVAILABLE;
        r->done(r->ctx, j);
    }
    r->tail = NULL;
    pthread_mutex_unlock(&r->mu);
    store_conn_close(conn);
    return NULL;
}

enum err router_start(struct store *s, unsigned max_jobs, router_done_fn done, void *ctx,
                      struct router **out)
{
    struct router *r;
    sigset_t all, old;

    if (!s || !done || max_jobs < 1)
        return ERR_INVALID;
    r = calloc(1, sizeof(*r));
    if (!r)
        return ERR_NOMEM;
    r->store = s;
    r->done = done;
    r->ctx = ctx;
    r->max_jobs = max_jobs;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    /* Signals are main's thread's. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&r->thread, NULL, router_main, r) != 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_cond_destroy(&r->cv);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return ERR_NOMEM;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    *out = r;
    return ERR_OK;
}

enum err router_submit(struct router *r, struct router_job *job)
{
    enum err e = ERR_UNAVAILABLE;

    pthread_mutex_lock(&r->mu);
    if (!r->stopping && r->njobs < r->max_jobs) {
        job->next = NULL;
        if (r->tail)
            r->tail->next = job;
        else
            r->head = job;
        r->tail = job;
        r->njobs++;
        pthread_cond_signal(&r->cv);
        e = ERR_OK;
    }
    pthread_mutex_unlock(&r->mu);
    return e;
}

void router_stop(struct router *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
