/* cli: the command line of CLI.md. cli_parse turns argv and the
 * environment into a struct cli (pure, testable); cli_run_admin runs the
 * operator subcommands against the database. Output on stdout is part of
 * the contract; errors are one line on stderr. Not thread-safe (runs on
 * the main thread). */
#ifndef SFVOPI_CLI_CLI_H
#define SFVOPI_CLI_CLI_H

#include <stdbool.h>
#include <stdio.h>

#define CLI_POS_MAX 256
#define CLI_DEFAULT_RATE_LIMIT 100
#define CLI_DEFAULT_RATE_BURST 200
#define CLI_DEFAULT_RTP_LOW 20000
#define CLI_DEFAULT_RTP_HIGH 20999
#define CLI_DEFAULT_MAX_CALLS 500
#define CLI_DEFAULT_INVITE_RATE 200
#define CLI_DEFAULT_RTP_TIMEOUT 60 /* seconds */
#define CLI_DEFAULT_REGISTER_EXPIRES 600
#define CLI_DEFAULT_DRAIN_TIMEOUT 30
#define CLI_DRAIN_TIMEOUT_MAX 86400
/* --sip-header may be given this often. */
#define CLI_SIP_HEADERS_MAX 16
/* The longest --sip-header line, "Name: value". */
#define CLI_SIP_HEADER_MAX 512

/* --srtp */
enum cli_srtp { CLI_SRTP_OFF, CLI_SRTP_OFFER, CLI_SRTP_REQUIRE };

/* Exit codes. */
enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

enum cli_cmd {
    CMD_NONE,
    CMD_SERVE,
    CMD_ORG_CREATE,
    CMD_ORG_LIST,
    CMD_KEY_CREATE,
    CMD_KEY_LIST,
    CMD_KEY_REVOKE,
    CMD_NUMBER_ADD,
    CMD_NUMBER_LIST,
    CMD_NUMBER_REMOVE,
    CMD_NUMBER_DISABLE,
    CMD_NUMBER_ENABLE,
    CMD_DEMO,
    /* signing secrets (AGENT.md section 4) */
    CMD_WHSEC_CREATE,
    CMD_WHSEC_LIST,
    CMD_WHSEC_REVOKE,
};

struct cli {
    enum cli_cmd cmd;
    const char *group; /* "org", "key", "number" when only the group was named */
    bool help;
    bool version;
    /* Global options, after the environment was applied. */
    const char *db;
    const char *default_cc;
    /* serve */
    const char *listen;
    unsigned threads; /* 0: number of cores */
    unsigned max_connections;
    unsigned idle_timeout_s;
    const char *log_level;
    unsigned rate_limit; /* requests a second per key; 0: off */
    unsigned rate_burst;
    bool log_json;            /* --log-format json */
    bool metrics_off;         /* no GET /metrics at all */
    const char *admin_listen; /* NULL: /metrics on the API listener */
    bool metrics_public;      /* /metrics on --listen for any client, proxied or not */
    unsigned drain_timeout_s; /* live calls may go on this long after SIGTERM */
    const char *node_id;      /* --node-id; NULL: <hostname>-<random>, chosen at start */
    const char *sip_listen;   /* NULL: no call engine */
    const char *sip_trunk;    /* NULL: no outbound calls */
    int rtp_low, rtp_high;
    const char *media_ip; /* NULL: the SIP listen address */
    bool deny_private_urls;
    unsigned max_calls;
    unsigned answer_delay_ms;
    const char *sip_allow; /* NULL: the trunk's, registrar's and proxy's addresses */
    unsigned sip_invite_rate;
    bool rtp_latch;
    unsigned rtp_timeout; /* --rtp-timeout seconds; 0: off */
    const char *sip_user;
    const char *sip_password_file; /* the password itself only via SFVOPI_SIP_PASSWORD */
    bool sip_register;
    const char *sip_registrar;
    unsigned sip_register_expires;
    const char *sip_from_domain;
    bool sip_caller_id_pai;
    const char *sip_outbound_proxy;
    const char *sip_headers[CLI_SIP_HEADERS_MAX]; /* into sip_header_text */
    int nsip_headers;
    char sip_header_text[CLI_SIP_HEADERS_MAX][CLI_SIP_HEADER_MAX + 1];
    const char *dns_server;
    /* Transports (SIP.md section 3). */
    bool sip_listen_tls; /* --sip-listen has a tls: listener */
    bool sip_trunk_tls, sip_registrar_tls, sip_proxy_tls;
    const char *sip_tls_cert, *sip_tls_key, *sip_tls_ca;
    enum cli_srtp srtp;
    const char *sip_advertise; /* NULL: Contact, Via and SDP carry the bound address */
    /* HTTPS: both or neither of each pair (PEM files). */
    const char *tls_cert, *tls_key;
    const char *admin_tls_cert, *admin_tls_key;
    const char *trusted_proxy; /* NULL: X-Forwarded-For is ignored */
    /* admin */
    const char *name;
    const char *provider;
    long long org;  /* 0: not given */
    long long user; /* 0: not given */
    /* Arguments after the subcommand words. */
    const char *args[CLI_POS_MAX];
    int nargs;
};

/* Parses argv (global options anywhere) and env (getenv-like; options beat
 * variables). On CLI_USAGE, err holds a one-line reason. help/version are
 * not errors. */
int cli_parse(int argc, char **argv, const char *(*env)(const char *), struct cli *out, char *err,
              size_t errsz);

/* Writes the usage of cli->cmd (or of the group, or the overview). */
void cli_usage(const struct cli *cli, FILE *f);

/* Runs an operator subcommand (everything but serve). Returns an exit code. */
int cli_run_admin(const struct cli *cli);

#endif
