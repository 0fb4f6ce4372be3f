/* main: argv and environment, signals, and wiring the server together.
 * No business logic lives here. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "call/deliver.h"
#include "call/engine.h"
#include "call/telemetry.h"
#include "cli/cli.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/netaddr.h"
#include "core/rand.h"
#include "http/metrics.h"
#include "http/server.h"
#include "http/tls.h"
#include "sip/sip.h"
#include "store/store.h"

#ifndef SFVOPI_VERSION
#define SFVOPI_VERSION "0.1.0"
#endif

#define SHUTDOWN_GRACE_MS 10000
#define DEFAULT_MAX_CONNECTIONS 1024
#define DEFAULT_IDLE_TIMEOUT_S 30

static const char *env_get(const char *name)
{
    return getenv(name);
}

/* The trunk password: never a flag (it would show in ps), never logged. */
static char sip_password[SIP_CRED_MAX + 1];

/* Takes SFVOPI_SIP_PASSWORD out of the environment before any thread
 * starts, so that nothing started later (or /proc/PID/environ) holds it. */
static int password_from_env(void)
{
    const char *v = getenv("SFVOPI_SIP_PASSWORD");

    if (!v || !*v)
        return CLI_OK;
    if (strlen(v) > SIP_CRED_MAX) {
        fprintf(stderr, "sfvopi: SFVOPI_SIP_PASSWORD is longer than %d bytes\n", SIP_CRED_MAX);
        return CLI_USAGE;
    }
    snprintf(sip_password, sizeof(sip_password), "%s", v);
    explicit_bzero((char *)v, strlen(v));
    unsetenv("SFVOPI_SIP_PASSWORD");
    return CLI_OK;
}

/* The password file's first line (a final newline is not part of it). */
static int password_from_file(const char *path)
{
    char buf[SIP_CRED_MAX + 3];
    struct stat st;
    size_t n;
    FILE *f = fopen(path, "r");

    if (!f) {
        fprintf(stderr, "sfvopi: cannot read --sip-password-file %s: %s\n", path, strerror(errno));
        return CLI_FAILED;
    }
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 0004))
        log_warn("msg=\"--sip-password-file is readable by every user: chmod 600 it\"");
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    if (n && buf[n - 1] == '\n')
        n--;
    if (n && buf[n - 1] == '\r')
        n--;
    if (n > SIP_CRED_MAX || memchr(buf, '\n', n) || memchr(buf, '\0', n)) {
        explicit_bzero(buf, sizeof(buf));
        fprintf(stderr, "sfvopi: --sip-password-file %s must hold one line of at most %d bytes\n",
                path, SIP_CRED_MAX);
        return CLI_FAILED;
    }
    memcpy(sip_password, buf, n);
    sip_password[n] = '\0';
    explicit_bzero(buf, sizeof(buf));
    return CLI_OK;
}

static void calls_metrics(struct metrics_calls *out)
{
    struct sip_stats st;

    sip_stats_get(&st);
    out->sip_denied = st.denied;
    out->rtp_dropped_source = st.rtp_dropped_source;
    out->srtp_dropped = st.srtp_dropped;
    out->srtp_replayed = st.srtp_replayed;
    out->sip_registered = st.registered;
    telemetry_read(out);
}

/* Loads one listener's certificate and key; a failure is one line on
 * stderr naming the files and the cause. */
static int tls_load(const char *cert, const char *key, const char *opts, struct tls_creds **out)
{
    char why[512];

    if (tls_creds_load(cert, key, out, why, sizeof(why)) != ERR_OK) {
        fprintf(stderr, "sfvopi: cannot use %s: %s\n", opts, why);
        return CLI_FAILED;
    }
    return CLI_OK;
}

/* SIGHUP: reads a listener's certificate and key files again. A failure
 * keeps the certificate in use and says why. Runs on the main thread, in
 * the signal loop, never in a signal handler. */
static void tls_reload(struct tls_creds *c, const char *listener)
{
    char why[512], q[600], serial[TLS_SERIAL_TEXT], until[CLOCK_ISO_LEN + 1];
    long long not_after;

    if (!c)
        return;
    if (tls_creds_reload(c, why, sizeof(why)) != ERR_OK) {
        log_quote(q, sizeof(q), why, strlen(why));
        log_warn("msg=\"tls reload failed, the old certificate stays in use\" listener=%s "
                 "reason=%s",
                 listener, q);
        return;
    }
    tls_creds_describe(c, serial, &not_after);
    clock_format_iso((int64_t)not_after * 1000, until);
    log_info("msg=\"tls certificate reloaded\" listener=%s serial=%s not_after=%s", listener,
             serial, until);
}

/* How often the drain looks at the number of live calls. */
#define DRAIN_POLL_MS 50

/* SIGINT/SIGTERM with the call engine: the node takes no new calls and
 * waits, at most timeout_s, for the live ones to end; a second SIGINT or
 * SIGTERM ends the wait at once, SIGHUP still reloads the certificates.
 * The API keeps answering meanwhile. engine_stop then ends what is left. */
static void drain(struct engine *engine, const sigset_t *sigs, unsigned timeout_s,
                  struct tls_creds *tls, struct tls_creds *admin_tls)
{
    int64_t start = clock_mono_ms(), deadline = start + (int64_t)timeout_s * 1000;
    unsigned live;

    engine_drain(engine);
    log_info("msg=\"draining: no new calls, live calls go on\" calls=%u timeout_s=%u",
             engine_calls_live(engine), timeout_s);
    for (;;) {
        struct timespec ts;
        int64_t now = clock_mono_ms(), wait_ms;
        int sig;

        live = engine_calls_live(engine);
        if (live == 0) {
            log_info("msg=\"drain finished: no call left\" after_ms=%lld",
                     (long long)(now - start));
            return;
        }
        if (now >= deadline) {
            log_warn("msg=\"drain timed out, hanging up the calls left\" calls=%u", live);
            return;
        }
        wait_ms = deadline - now < DRAIN_POLL_MS ? deadline - now : DRAIN_POLL_MS;
        ts.tv_sec = (time_t)(wait_ms / 1000);
        ts.tv_nsec = (long)(wait_ms % 1000) * 1000000L;
        sig = sigtimedwait(sigs, NULL, &ts);
        if (sig == SIGHUP) {
            tls_reload(tls, "api");
            tls_reload(admin_tls, "admin");
        } else if (sig == SIGINT || sig == SIGTERM) {
            log_warn("msg=\"drain ended by a second signal, hanging up the calls left\" "
                     "signal=%d calls=%u",
                     sig, engine_calls_live(engine));
            return;
        }
    }
}

/* --node-id, else <hostname>-<random> (SIP.md section 5): the host name's
 * characters outside [A-Za-z0-9._-] become '-', and it is cut so that the
 * whole fits NODE_ID_MAX. */
static void node_id_choose(const char *given, char out[NODE_ID_MAX + 1])
{
    char host[256] = "";
    char rnd[7];
    size_t i, n;

    if (given) {
        snprintf(out, NODE_ID_MAX + 1, "%s", given);
        return;
    }
    if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
        snprintf(host, sizeof(host), "node");
    n = strlen(host);
    if (n > NODE_ID_MAX - sizeof(rnd))
        n = NODE_ID_MAX - sizeof(rnd);
    for (i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", host[i]))
            host[i] = '-';
    host[n] = '\0';
    rand_string(rnd, 6, "abcdefghijklmnopqrstuvwxyz0123456789");
    rnd[6] = '\0';
    snprintf(out, NODE_ID_MAX + 1, "%s-%s", host, rnd);
}

static int serve(const struct cli *cli)
{
    char node_id[NODE_ID_MAX + 1];
    struct server_config cfg;
    struct api_config api_cfg, admin_api;
    struct server *srv = NULL;
    struct engine *engine = NULL;
    struct store *store = NULL;
    struct ratelimit *limiter = NULL;
    struct server *admin = NULL;
    struct tls_creds *tls = NULL, *admin_tls = NULL;
    static struct allowlist trusted;
    const char *const *names;
    int nnames;
    char bound[300], abound[300];
    sigset_t sigs;
    enum log_level level;
    long cores;
    int sig = 0;
    int rc = CLI_FAILED;
    int grace_ms = 0; /* a failed start-up has nothing in flight to wait for */
    enum err e;

    if (!log_level_parse(cli->log_level, &level))
        return CLI_USAGE; /* cli_parse checked it */
    log_set_level(level);
    log_set_format(cli->log_json ? LOG_JSON : LOG_TEXT);

    /* Block the stop and reload signals before any thread starts, so that
     * every thread inherits the mask and only sigwait below sees them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (cli->trusted_proxy) {
        char why[160];

        if (allowlist_parse(cli->trusted_proxy, &trusted, why, sizeof(why)) != ERR_OK)
            return CLI_USAGE; /* cli_parse checked it */
    }
    /* The files are read once here (and again on SIGHUP). */
    if (cli->tls_cert && tls_load(cli->tls_cert, cli->tls_key, "--tls-cert/--tls-key", &tls))
        goto out_tls;
    if (cli->admin_tls_cert && tls_load(cli->admin_tls_cert, cli->admin_tls_key,
                                        "--admin-tls-cert/--admin-tls-key", &admin_tls))
        goto out_tls;

    e = store_open(cli->db, &store);
    if (e == ERR_INVALID) {
        fprintf(stderr,
                "sfvopi: cannot use database '%s': expected sqlite:PATH or "
                "postgresql://...\n",
                cli->db);
        goto out_tls;
    }
    if (e != ERR_OK) {
        fprintf(stderr, "sfvopi: cannot open database: %s\n", err_str(e));
        goto out_tls;
    }
    {
        long holder = 0;

        /* SQLite: one server per file (SIP.md section 5). */
        e = store_hold(store, &holder);
        if (e == ERR_CONFLICT) {
            if (holder > 0)
                fprintf(stderr, "sfvopi: database %s is in use by another server (pid %ld)\n",
                        cli->db, holder);
            else
                fprintf(stderr, "sfvopi: database %s is in use by another server\n", cli->db);
            goto out_store;
        }
        if (e != ERR_OK) {
            fprintf(stderr, "sfvopi: cannot hold database %s: %s\n", cli->db, err_str(e));
            goto out_store;
        }
    }
    node_id_choose(cli->node_id, node_id);

    memset(&cfg, 0, sizeof(cfg));
    memset(&api_cfg, 0, sizeof(api_cfg));
    cfg.listen = cli->listen;
    cores = sysconf(_SC_NPROCESSORS_ONLN);
    cfg.threads = cli->threads ? cli->threads : (unsigned)(cores > 0 ? cores : 1);
    cfg.conn_limit = cli->max_connections ? cli->max_connections : DEFAULT_MAX_CONNECTIONS;
    cfg.conn_timeout_s = cli->idle_timeout_s ? cli->idle_timeout_s : DEFAULT_IDLE_TIMEOUT_S;
    cfg.tls = tls;
    cfg.trusted_proxy = cli->trusted_proxy ? &trusted : NULL;
    api_cfg.store = store;
    snprintf(api_cfg.default_cc, sizeof(api_cfg.default_cc), "%s", cli->default_cc);
    api_cfg.key_cache_ttl_ms = KEYCACHE_TTL_MS;
    if (cli->rate_limit) {
        limiter = ratelimit_new(cli->rate_limit, cli->rate_burst);
        if (!limiter) {
            fprintf(stderr, "sfvopi: out of memory\n");
            goto out_store;
        }
    }
    api_cfg.ratelimit = limiter;
    api_cfg.metrics = !cli->metrics_off && !cli->admin_listen;
    names = api_route_names(&nnames);
    metrics_init(names, nnames, SFVOPI_VERSION);

    if (cli->sip_listen) {
        static struct allowlist allow;
        char why[160];
        struct engine_config ecfg = {
            .sip =
                {
                    .listen = cli->sip_listen,
                    .trunk = cli->sip_trunk,
                    .rtp_low = cli->rtp_low,
                    .rtp_high = cli->rtp_high,
                    .media_ip = cli->media_ip,
                    .allow = NULL,
                    .invite_rate = cli->sip_invite_rate,
                    .rtp_latch = cli->rtp_latch,
                    .rtp_timeout = cli->rtp_timeout,
                    .user = cli->sip_user,
                    .password = sip_password,
                    .reg = cli->sip_register,
                    .registrar = cli->sip_registrar,
                    .reg_expires = cli->sip_register_expires,
                    .from_domain = cli->sip_from_domain,
                    .caller_id_pai = cli->sip_caller_id_pai,
                    .outbound_proxy = cli->sip_outbound_proxy,
                    .headers = cli->sip_headers,
                    .nheaders = (size_t)cli->nsip_headers,
                    .dns_server = cli->dns_server,
                    .tls_cert = cli->sip_tls_cert,
                    .tls_key = cli->sip_tls_key,
                    .tls_ca = cli->sip_tls_ca,
                    .srtp = cli->srtp == CLI_SRTP_REQUIRE ? SIP_SRTP_REQUIRE
                            : cli->srtp == CLI_SRTP_OFFER ? SIP_SRTP_OFFER
                                                          : SIP_SRTP_OFF,
                    .advertise = cli->sip_advertise,
                },
            .deny_private_urls = cli->deny_private_urls,
            .max_calls = cli->max_calls,
            .answer_delay_ms = cli->answer_delay_ms,
            .store = store,
            .default_cc = cli->default_cc,
            .version = SFVOPI_VERSION,
            .node_id = node_id,
        };

        if (cli->sip_allow) {
            if (allowlist_parse(cli->sip_allow, &allow, why, sizeof(why)) != ERR_OK) {
                rc = CLI_USAGE; /* cli_parse checked it */
                goto out_limiter;
            }
            ecfg.sip.allow = &allow;
        }
        if (cli->sip_password_file && password_from_file(cli->sip_password_file) != CLI_OK)
            goto out_limiter;
        e = engine_start(&ecfg, &engine);
        explicit_bzero(sip_password, sizeof(sip_password)); /* the engine has its copy */
        if (e != ERR_OK) {
            fprintf(stderr, "sfvopi: cannot start calls on %s: %s\n", cli->sip_listen,
                    e == ERR_INVALID ? "bad --sip-listen, --sip-trunk, --sip-registrar, "
                                       "--sip-outbound-proxy, --media-ip or --rtp-ports (see "
                                       "the log)"
                                     : "address unavailable");
            goto out_limiter;
        }
    }
    if (engine)
        metrics_set_calls(calls_metrics);
    api_cfg.engine = engine;
    api_cfg.place_call = engine ? engine_call_place : NULL;
    api_cfg.queue_call = engine ? engine_call_queue : NULL;
    api_cfg.queue_cancel = engine_queue_cancel;
    /* Both also serve a node without calls: commands go to the owners. */
    api_cfg.app_deleted = engine_app_deleted;
    api_cfg.hangup_call = engine_call_hangup;
    api_cfg.draining = engine ? engine_draining : NULL;
    api_cfg.metrics_public = cli->metrics_public;
    api_cfg.sip_headers = cli->sip_headers;
    api_cfg.nsip_headers = (size_t)cli->nsip_headers;
    api_server_app(&api_cfg, &cfg.app);

    e = server_start(&cfg, &srv, bound, sizeof(bound));
    if (e != ERR_OK) {
        fprintf(stderr, "sfvopi: cannot listen on %s: %s\n", cli->listen,
                e == ERR_INVALID ? "expected HOST:PORT" : "address unavailable");
        goto out_engine;
    }
    /* The API's address first: scripts wait for this exact line. */
    fprintf(stderr, "listening on %s\n", bound);
    if (engine)
        fprintf(stderr, "sip listening on %s (node %s)\n", cli->sip_listen, node_id);
    if (cli->admin_listen) {
        struct server_config acfg = cfg;

        acfg.listen = cli->admin_listen;
        acfg.threads = 1;
        acfg.conn_limit = 64;
        admin_api = api_cfg;
        admin_api.ratelimit = NULL;
        admin_api.metrics = !cli->metrics_off;
        admin_api.admin_only = true;
        api_server_app(&admin_api, &acfg.app);
        acfg.tls = admin_tls;
        e = server_start(&acfg, &admin, abound, sizeof(abound));
        if (e != ERR_OK) {
            fprintf(stderr, "sfvopi: cannot listen on %s: %s\n", cli->admin_listen,
                    e == ERR_INVALID ? "expected HOST:PORT" : "address unavailable");
            goto out_srv;
        }
        fprintf(stderr, "admin listening on %s\n", abound);
    }

    log_info("msg=started version=%s listen=%s threads=%u db=%s rate_limit=%u rate_burst=%u "
             "tls=%s admin_tls=%s trusted_proxy=%s",
             SFVOPI_VERSION, bound, cfg.threads,
             strncmp(cli->db, "sqlite:", 7) == 0 ? "sqlite" : "postgresql", cli->rate_limit,
             cli->rate_burst, tls ? "on" : "off", admin_tls ? "on" : "off",
             cli->trusted_proxy ? "on" : "off");

    /* SIGHUP reloads the certificates (plain HTTP has none: it is only
     * logged); SIGINT and SIGTERM stop. */
    for (;;) {
        while (sigwait(&sigs, &sig) != 0) {
        }
        if (sig != SIGHUP)
            break;
        if (!tls && !admin_tls)
            log_info("msg=\"SIGHUP: no TLS listener, nothing to reload\"");
        tls_reload(tls, "api");
        tls_reload(admin_tls, "admin");
    }
    log_info("msg=\"stopping\" signal=%d", sig);
    if (engine && cli->drain_timeout_s)
        drain(engine, &sigs, cli->drain_timeout_s, tls, admin_tls);
    rc = CLI_OK;
    grace_ms = SHUTDOWN_GRACE_MS;
    server_stop(admin, 0);
out_srv:
    server_stop(srv, grace_ms);
out_engine:
    /* No request can place a call any more: end the live ones, with their
     * hangup webhooks. */
    engine_stop(engine, grace_ms);
out_limiter:
    ratelimit_free(limiter);
out_store:
    store_free(store);
out_tls:
    tls_creds_free(tls);
    tls_creds_free(admin_tls);
    if (rc == CLI_OK)
        log_info("msg=stopped");
    return rc;
}

int main(int argc, char **argv)
{
    struct cli cli;
    char err[256];
    int rc;

    rc = cli_parse(argc, argv, env_get, &cli, err, sizeof(err));
    if (rc == CLI_OK && cli.cmd == CMD_SERVE && !cli.help && !cli.version)
        rc = password_from_env();
    if (rc != CLI_OK) {
        fprintf(stderr, "sfvopi: %s\n", err);
        cli_usage(&cli, stderr);
        return rc;
    }
    if (cli.version) {
        printf("sfvopi %s\n", SFVOPI_VERSION);
        return CLI_OK;
    }
    if (cli.help) {
        cli_usage(&cli, stdout);
        return CLI_OK;
    }
    if (rand_setup() != ERR_OK || deliver_global_init() != ERR_OK) {
        fprintf(stderr, "sfvopi: no source of secure randomness\n");
        return CLI_FAILED;
    }
    if (cli.cmd == CMD_SERVE)
        return serve(&cli);
    log_set_level(LOG_WARN);
    log_hold(true); /* a failure is told in one line, cause included */
    return cli_run_admin(&cli);
}
