/* cluster: this node among the others on one database (SIP.md section 5).
 * On PostgreSQL two threads, each with its own store connection: one
 * writes the node's heartbeat every 2 s and, while those writes have been
 * steady, ends the calls of nodes that died; the other takes the commands
 * other nodes left for this one, woken by LISTEN/NOTIFY and polling every
 * second for one a lost notification did not announce. On SQLite, where
 * one server holds the file, cluster_start ends the calls an earlier run
 * left alive and starts no thread. */
#ifndef SFVOPI_CALL_CLUSTER_H
#define SFVOPI_CALL_CLUSTER_H

#include <stdbool.h>

#include "core/err.h"
#include "store/store.h"

/* A node is dead when its heartbeat is older than this by the database's
 * clock; a node judges others only after its own heartbeats have been
 * written this long without a gap over CLUSTER_GAP_MS. */
#define CLUSTER_BEAT_MS 2000
#define CLUSTER_DEAD_MS 15000
#define CLUSTER_GAP_MS 5000
/* Commands older than this are dropped unread (the call is long over). */
#define CLUSTER_CMD_MAX_AGE_MS 60000

struct cluster_config {
    struct store *store; /* borrowed */
    const char *node_id; /* copied */
    void *arg;
    /* A call this node ended for a dead node (or, on SQLite, one an earlier
     * run left alive): its record is final already; the hangup webhook and
     * the BYE remain. Called from a cluster thread (from cluster_start on
     * SQLite). */
    void (*reaped)(void *arg, const struct store_call *call);
    /* A command another node (or this one) left for this node. Called from
     * a cluster thread. */
    void (*command)(void *arg, const char *kind, const char *cmd_arg);
};

struct cluster;

/* Starts the node's part in the cluster. ERR_NOMEM, or ERR_UNAVAILABLE when
 * a thread cannot start; a database that does not answer is not an error
 * here (the threads keep trying). */
enum err cluster_start(const struct cluster_config *cfg, struct cluster **out) WARN_UNUSED;
/* Asks the threads to stop, without waiting. Accepts NULL. */
void cluster_signal_stop(struct cluster *cl);
/* Stops the threads (at most about a second, or a database deadline) and
 * frees. Accepts NULL. */
void cluster_stop(struct cluster *cl);
/* True when the database is shared by nodes (PostgreSQL): commands for
 * other nodes go through it. */
bool cluster_shared(const struct store_conn *c);

#endif
