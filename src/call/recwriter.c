/* recwriter: the call-record writer thread and its bounded queue (see
 * recwriter.h). The queue is a FIFO list of slots under one mutex; a slot
 * is in it at most once, so the list never holds more than the slots. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "call/recwriter.h"
#include "core/clock.h"
#include "core/log.h"

struct recw_slot {
    struct recw_slot *next; /* in the queue */
    struct store_call rec;  /* the queued write's record */
    bool create;            /* the queued write is a create */
    bool need_create;       /* the call's create was dropped: its next write makes it */
    bool has_then;          /* the queued write has a landed callback, with then_arg */
    void *then_arg;
    bool queued, busy, released;
};

struct recw {
    struct recw_config cfg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* work queued, or stop */
    struct recw_slot *head, *tail;
    unsigned used; /* slots not yet freed */
    size_t queued; /* slots in the queue */
    bool busy;     /* a write is in progress */
    bool stopping;
    int64_t stop_deadline_ms;
    struct store_conn *conn; /* the writer thread's own */
};

static void wait_until(struct recw *w, int64_t deadline_ms)
{
    int64_t left = deadline_ms - clock_mono_ms();
    struct timespec ts;

    if (left <= 0)
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += left / 1000;
    ts.tv_nsec += (long)(left % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    (void)pthread_cond_timedwait(&w->cv, &w->mu, &ts);
}

static enum err write_store(struct recw *w, const struct store_call *rec, bool create)
{
    enum err e;

    if (w->cfg.write)
        return w->cfg.write(w->cfg.ctx, rec, create);
    if (!w->conn) {
        e = store_conn_open(w->cfg.store, &w->conn);
        if (e != ERR_OK)
            return e == ERR_DB ? e : ERR_UNAVAILABLE;
    }
    return create ? w->conn->ops->call_create(w->conn, rec)
                  : w->conn->ops->call_update(w->conn, rec);
}

/* One write, tried again while the database is unavailable, until the
 * give-up deadline or, while stopping, the drain deadline. */
static enum err write_one(struct recw *w, const struct store_call *rec, bool create)
{
    int64_t give_up = clock_mono_ms() + w->cfg.give_up_ms, limit;
    int pause = w->cfg.backoff_min_ms, tries = 0;
    enum err e;

    for (;;) {
        e = write_store(w, rec, create);
        tries++;
        if (e == ERR_CONFLICT && create && tries > 1)
            e = ERR_OK; /* an earlier attempt that got no answer had landed */
        if (e != ERR_UNAVAILABLE) {
            if (e != ERR_OK)
                log_error("msg=\"call record not written\" call=%s status=%s op=%s err=%s",
                          rec->call_uuid, rec->status, create ? "create" : "update", err_str(e));
            else if (tries > 1)
                log_info("msg=\"call record written after the database came back\" call=%s "
                         "status=%s tries=%d",
                         rec->call_uuid, rec->status, tries);
            return e;
        }
        if (tries == 1)
            log_warn("msg=\"call record waits for the database\" call=%s status=%s", rec->call_uuid,
                     rec->status);
        pthread_mutex_lock(&w->mu);
        limit = give_up;
        if (w->stopping && w->stop_deadline_ms < limit)
            limit = w->stop_deadline_ms;
        if (clock_mono_ms() >= limit) {
            pthread_mutex_unlock(&w->mu);
            log_error("msg=\"call record write given up: database unavailable\" call=%s "
                      "status=%s op=%s tries=%d",
                      rec->call_uuid, rec->status, create ? "create" : "update", tries);
            return e;
        }
        wait_until(w, clock_mono_ms() + pause < limit ? clock_mono_ms() + pause : limit);
        pthread_mutex_unlock(&w->mu);
        pause = pause * 2 < w->cfg.backoff_max_ms ? pause * 2 : w->cfg.backoff_max_ms;
    }
}

static void slot_free_locked(struct recw *w, struct recw_slot *s)
{
    if (s->need_create)
        log_error("msg=\"call record never created\" call=%s", s->rec.call_uuid);
    free(s);
    w->used--;
}

static void landed(struct recw *w, bool then, void *arg)
{
    if (then && w->cfg.landed)
        w->cfg.landed(w->cfg.landed_ctx, arg);
}

static void *writer_main(void *arg)
{
    struct recw *w = arg;
    struct store_call rec;
    struct recw_slot *s;
    bool create, then;
    void *then_arg;
    enum err e;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stopping)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->head)
            break;
        if (w->stopping && clock_mono_ms() >= w->stop_deadline_ms) {
            log_error("msg=\"call records not written at shutdown\" left=%zu", w->queued);
            break;
        }
        s = w->head;
        w->head = s->next;
        if (!w->head)
            w->tail = NULL;
        w->queued--;
        s->next = NULL;
        s->queued = false;
        s->busy = true;
        w->busy = true;
        rec = s->rec;
        create = s->create || s->need_create;
        then = s->has_then;
        then_arg = s->then_arg;
        s->has_then = false;
        pthread_mutex_unlock(&w->mu);

        e = write_one(w, &rec, create);
        landed(w, then, then_arg);

        pthread_mutex_lock(&w->mu);
        s->busy = false;
        w->busy = false;
        if (create)
            s->need_create = e != ERR_OK;
        if (s->released && !s->queued)
            slot_free_locked(w, s);
    }
    /* Left in the queue at the deadline: released slots only. */
    while (w->head) {
        s = w->head;
        w->head = s->next;
        w->queued--;
        log_error("msg=\"call record not written\" call=%s status=%s", s->rec.call_uuid,
                  s->rec.status);
        s->queued = false;
        then = s->has_then;
        then_arg = s->then_arg;
        s->has_then = false;
        if (s->released)
            slot_free_locked(w, s);
        pthread_mutex_unlock(&w->mu);
        landed(w, then, then_arg);
        pthread_mutex_lock(&w->mu);
    }
    w->tail = NULL;
    pthread_mutex_unlock(&w->mu);
    store_conn_close(w->conn);
    w->conn = NULL;
    return NULL;
}

enum err recw_start(const struct recw_config *cfg, struct recw **out)
{
    struct recw *w;
    pthread_condattr_t ca;
    sigset_t all, old;

    if (cfg->slots < 1 || (!cfg->store && !cfg->write))
        return ERR_INVALID;
    w = calloc(1, sizeof(*w));
    if (!w)
        return ERR_NOMEM;
    w->cfg = *cfg;
    if (w->cfg.backoff_min_ms <= 0)
        w->cfg.backoff_min_ms = 50;
    if (w->cfg.backoff_max_ms < w->cfg.backoff_min_ms)
        w->cfg.backoff_max_ms = w->cfg.backoff_min_ms > 2000 ? w->cfg.backoff_min_ms : 2000;
    if (w->cfg.give_up_ms <= 0)
        w->cfg.give_up_ms = RECW_GIVE_UP_MS;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    /* Signals are main's thread's. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return ERR_NOMEM;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    *out = w;
    return ERR_OK;
}

struct recw_slot *recw_reserve(struct recw *w)
{
    struct recw_slot *s = NULL;

    pthread_mutex_lock(&w->mu);
    if (w->used < w->cfg.slots && !w->stopping) {
        s = calloc(1, sizeof(*s));
        if (s)
            w->used++;
    }
    pthread_mutex_unlock(&w->mu);
    return s;
}

static void put(struct recw *w, struct recw_slot *s, const struct store_call *rec, bool create,
                bool then, void *then_arg)
{
    bool fire = false;
    void *fire_arg = NULL;

    pthread_mutex_lock(&w->mu);
    if (then) {
        /* One callback per queued write: an earlier one (never twice in
         * practice) is told at once rather than lost. */
        fire = s->has_then;
        fire_arg = s->then_arg;
        s->has_then = true;
        s->then_arg = then_arg;
    }
    s->rec = *rec;
    if (s->queued) {
        /* The earlier write has not been taken: this one replaces it. */
        s->create = s->create || create;
    } else {
        s->create = create;
        s->queued = true;
        if (w->tail)
            w->tail->next = s;
        else
            w->head = s;
        w->tail = s;
        w->queued++;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    landed(w, fire, fire_arg);
}

void recw_put(struct recw *w, struct recw_slot *s, const struct store_call *rec, bool create)
{
    put(w, s, rec, create, false, NULL);
}

void recw_put_then(struct recw *w, struct recw_slot *s, const struct store_call *rec, bool create,
                   void *arg)
{
    put(w, s, rec, create, true, arg);
}

void recw_release(struct recw *w, struct recw_slot *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&w->mu);
    s->released = true;
    if (!s->queued && !s->busy)
        slot_free_locked(w, s);
    pthread_mutex_unlock(&w->mu);
}

size_t recw_backlog(struct recw *w)
{
    size_t n;

    pthread_mutex_lock(&w->mu);
    n = w->queued + (w->busy ? 1 : 0);
    pthread_mutex_unlock(&w->mu);
    return n;
}

void recw_stop(struct recw *w, int drain_ms)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    w->stop_deadline_ms = clock_mono_ms() + (drain_ms > 0 ? drain_ms : 0);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    if (w->used)
        log_error("msg=\"call record slots still held at shutdown\" slots=%u", w->used);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
