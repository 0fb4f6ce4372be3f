/* cluster: heartbeats, the end of a dead node's calls, and commands
 * between nodes (see cluster.h). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "call/cluster.h"
#include "core/clock.h"
#include "core/log.h"

struct cluster {
    struct cluster_config cfg;
    char node_id[NODE_ID_MAX + 1];
    atomic_bool stopping;
    bool beat_started, cmd_started;
    pthread_t beat_thread, cmd_thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* wakes the heartbeat thread's wait at a stop */
};

bool cluster_shared(const struct store_conn *c)
{
    return c && strcmp(c->ops->name, "postgresql") == 0;
}

/* Waits ms unless a stop comes first; false when stopping. */
static bool nap(struct cluster *cl, int64_t ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&cl->mu);
    while (!atomic_load(&cl->stopping) &&
           pthread_cond_timedwait(&cl->cv, &cl->mu, &ts) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&cl->mu);
    return !atomic_load(&cl->stopping);
}

struct reap_ctx {
    struct cluster *cl;
    unsigned n;
};

static enum err on_reaped(void *ud, const struct store_call *call)
{
    struct reap_ctx *r = ud;

    r->n++;
    log_warn("msg=\"call of a node that died ended here\" call=%s owner=%s status=%s cause=%s",
             call->call_uuid, call->node_id[0] ? call->node_id : "-", call->status,
             call->hangup_cause);
    r->cl->cfg.reaped(r->cl->cfg.arg, call);
    return ERR_OK;
}

static enum err conn_get(struct cluster *cl, struct store_conn **c)
{
    if (*c)
        return ERR_OK;
    return store_conn_open(cl->cfg.store, c);
}

/* The heartbeat, and the judgement of the others while it is steady: the
 * writes of the last CLUSTER_DEAD_MS (by the database's clock) came without
 * a gap over CLUSTER_GAP_MS. After a stall of the database every node
 * finds its own gap and waits, meanwhile the others beat again. */
static void *beat_main(void *arg)
{
    struct cluster *cl = arg;
    struct store_conn *c = NULL;
    int64_t last_db = 0, steady_since = 0;
    bool judging = false;

    do {
        int64_t db_now = 0;
        enum err e = conn_get(cl, &c);

        if (e == ERR_OK)
            e = c->ops->node_beat(c, cl->node_id, &db_now);
        if (e != ERR_OK) {
            if (judging)
                log_warn("msg=\"heartbeat not written: not judging other nodes\" err=%s",
                         err_str(e));
            judging = false;
            continue;
        }
        if (!last_db || db_now - last_db > CLUSTER_GAP_MS)
            steady_since = db_now;
        last_db = db_now;
        if (db_now - steady_since < CLUSTER_DEAD_MS) {
            judging = false;
            continue;
        }
        if (!judging)
            log_info("msg=\"heartbeats steady: judging other nodes\" node=%s", cl->node_id);
        judging = true;
        {
            struct reap_ctx r = {cl, 0};

            e = c->ops->node_reap(c, cl->node_id, CLUSTER_DEAD_MS, false, clock_now_ms(), on_reaped,
                                  &r);
            if (e != ERR_OK)
                log_warn("msg=\"dead nodes' calls not checked\" err=%s", err_str(e));
        }
    } while (nap(cl, CLUSTER_BEAT_MS));
    store_conn_close(c);
    return NULL;
}

static enum err on_command(void *ud, const char *kind, const char *cmd_arg)
{
    struct cluster *cl = ud;

    log_debug("msg=\"command for this node\" kind=%s arg=%s", kind, cmd_arg);
    cl->cfg.command(cl->cfg.arg, kind, cmd_arg);
    return ERR_OK;
}

static void *cmd_main(void *arg)
{
    struct cluster *cl = arg;
    struct store_conn *c = NULL;

    while (!atomic_load(&cl->stopping)) {
        bool woke = false;
        enum err e = conn_get(cl, &c);

        if (e == ERR_OK)
            e = c->ops->cmd_take(c, cl->node_id, CLUSTER_CMD_MAX_AGE_MS, on_command, cl);
        if (e == ERR_OK)
            e = c->ops->cmd_wait(c, 1000, &woke);
        if (e != ERR_OK && !nap(cl, 1000))
            break;
    }
    store_conn_close(c);
    return NULL;
}

/* SQLite: one server holds the file, so every call not final is one an
 * earlier run left behind. */
static void reap_at_start(struct cluster *cl, struct store_conn *c)
{
    struct reap_ctx r = {cl, 0};
    /* "*" names no node: the earlier run's calls are ended whatever their
     * owner, this node's name included. */
    enum err e = c->ops->node_reap(c, "*", 0, true, clock_now_ms(), on_reaped, &r);

    if (e != ERR_OK)
        log_error("msg=\"calls left alive by an earlier run not ended\" err=%s", err_str(e));
    else if (r.n)
        log_warn("msg=\"calls left alive by an earlier run ended\" calls=%u", r.n);
}

/* PostgreSQL: calls owned by this node's name before it has taken any are
 * those of an earlier run under the same --node-id, restarted before the
 * others judged it dead. */
static void reap_own_at_start(struct cluster *cl, struct store_conn *c)
{
    struct reap_ctx r = {cl, 0};
    enum err e = c->ops->node_reap(c, cl->node_id, -1, false, clock_now_ms(), on_reaped, &r);

    if (e != ERR_OK)
        log_error("msg=\"calls left alive by an earlier run of this node not ended\" err=%s",
                  err_str(e));
    else if (r.n)
        log_warn("msg=\"calls left alive by an earlier run of this node ended\" calls=%u", r.n);
}

enum err cluster_start(const struct cluster_config *cfg, struct cluster **out)
{
    struct cluster *cl = calloc(1, sizeof(*cl));
    struct store_conn *c = NULL;
    bool shared;
    enum err e;

    if (!cl)
        return ERR_NOMEM;
    cl->cfg = *cfg;
    snprintf(cl->node_id, sizeof(cl->node_id), "%s", cfg->node_id);
    cl->cfg.node_id = cl->node_id;
    pthread_mutex_init(&cl->mu, NULL);
    {
        pthread_condattr_t ca;

        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&cl->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    e = store_conn_open(cfg->store, &c);
    if (e != ERR_OK) {
        /* PostgreSQL may come later; SQLite opened already, so this is rare. */
        log_warn("msg=\"cluster: no database connection at start\" err=%s", err_str(e));
        shared = true;
    } else {
        shared = cluster_shared(c);
        if (!shared)
            reap_at_start(cl, c);
        else
            reap_own_at_start(cl, c);
        store_conn_close(c);
    }
    *out = cl;
    if (!shared)
        return ERR_OK;
    if (pthread_create(&cl->beat_thread, NULL, beat_main, cl) != 0)
        goto fail;
    cl->beat_started = true;
    if (pthread_create(&cl->cmd_thread, NULL, cmd_main, cl) != 0)
        goto fail;
    cl->cmd_started = true;
    log_info("msg=\"node joined the cluster\" node=%s", cl->node_id);
    return ERR_OK;
fail:
    cluster_stop(cl);
    *out = NULL;
    return ERR_UNAVAILABLE;
}

void cluster_signal_stop(struct cluster *cl)
{
    if (!cl)
        return;
    pthread_mutex_lock(&cl->mu);
    atomic_store(&cl->stopping, true);
    pthread_cond_broadcast(&cl->cv);
    pthread_mutex_unlock(&cl->mu);
}

void cluster_stop(struct cluster *cl)
{
    if (!cl)
        return;
    cluster_signal_stop(cl);
    if (cl->beat_started)
        pthread_join(cl->beat_thread, NULL);
    if (cl->cmd_started)
        pthread_join(cl->cmd_thread, NULL);
    pthread_cond_destroy(&cl->cv);
    pthread_mutex_destroy(&cl->mu);
    free(cl);
}
