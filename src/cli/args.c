/* args: argv parsing for every subcommand. One table names every option,
 * whether it takes a value and which subcommands accept it; global options
 * may stand anywhere. Values are checked here, so a malformed value is a
 * usage error (exit 2) before anything touches the database. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "core/e164.h"
#include "core/netaddr.h"
#include "core/parse.h"
#include "core/utf8.h"
#include "sip/sip.h"
#include "store/store.h"

enum opt_id {
    O_DB,
    O_CC,
    O_HELP,
    O_VERSION,
    O_LISTEN,
    O_THREADS,
    O_MAXCONN,
    O_IDLE,
    O_LOGLEVEL,
    O_RATE,
    O_METRICS,
    O_LOGFORMAT,
    O_ADMIN,
    O_BURST,
    O_NAME,
    O_ORG,
    O_USER,
    O_PROVIDER,
    O_SIP_LISTEN,
    O_SIP_TRUNK,
    O_RTP_PORTS,
    O_MEDIA_IP,
    O_DENY_PRIVATE,
    O_MAX_CALLS,
    O_ANSWER_DELAY,
    O_SIP_ALLOW,
    O_SIP_INVITE_RATE,
    O_RTP_LATCH,
    O_RTP_TIMEOUT,
    O_SIP_USER,
    O_SIP_PASSWORD_FILE,
    O_SIP_REGISTER,
    O_SIP_REGISTRAR,
    O_SIP_REGISTER_EXPIRES,
    O_SIP_FROM_DOMAIN,
    O_SIP_CALLER_ID,
    O_SIP_OUTBOUND_PROXY,
    O_SIP_HEADER,
    O_DNS_SERVER,
    O_SIP_TLS_CERT,
    O_SIP_TLS_KEY,
    O_SIP_TLS_CA,
    O_SRTP,
    O_SIP_ADVERTISE,
    O_TLS_CERT,
    O_TLS_KEY,
    O_ADMIN_TLS_CERT,
    O_ADMIN_TLS_KEY,
    O_TRUSTED_PROXY,
    O_METRICS_PUBLIC,
    O_DRAIN_TIMEOUT,
    O_NODE_ID,
};

#define GLOBAL 0xffffffffu
#define BIT(c) (1u << (c))

struct opt {
    const char *name;
    enum opt_id id;
    bool value;
    unsigned cmds;   /* BIT(cmd) of the subcommands that accept it */
    const char *env; /* the environment variable behind it, or NULL */
};

static const struct opt opts[] = {
    {"--db", O_DB, true, GLOBAL, "SFVOPI_DB"},
    {"--default-country-code", O_CC, true, GLOBAL, "SFVOPI_DEFAULT_CC"},
    {"--help", O_HELP, false, GLOBAL, NULL},
    {"-h", O_HELP, false, GLOBAL, NULL},
    {"--version", O_VERSION, false, GLOBAL, NULL},
    {"--listen", O_LISTEN, true, BIT(CMD_SERVE) | BIT(CMD_DEMO), "SFVOPI_LISTEN"},
    {"--threads", O_THREADS, true, BIT(CMD_SERVE), "SFVOPI_THREADS"},
    {"--max-connections", O_MAXCONN, true, BIT(CMD_SERVE), "SFVOPI_MAX_CONNECTIONS"},
    {"--idle-timeout", O_IDLE, true, BIT(CMD_SERVE), "SFVOPI_IDLE_TIMEOUT"},
    {"--log-level", O_LOGLEVEL, true, BIT(CMD_SERVE), "SFVOPI_LOG_LEVEL"},
    {"--rate-limit", O_RATE, true, BIT(CMD_SERVE), "SFVOPI_RATE_LIMIT"},
    {"--rate-burst", O_BURST, true, BIT(CMD_SERVE), "SFVOPI_RATE_BURST"},
    {"--metrics", O_METRICS, true, BIT(CMD_SERVE), "SFVOPI_METRICS"},
    {"--log-format", O_LOGFORMAT, true, BIT(CMD_SERVE), "SFVOPI_LOG_FORMAT"},
    {"--admin-listen", O_ADMIN, true, BIT(CMD_SERVE), "SFVOPI_ADMIN_LISTEN"},
    {"--sip-listen", O_SIP_LISTEN, true, BIT(CMD_SERVE), "SFVOPI_SIP_LISTEN"},
    {"--sip-trunk", O_SIP_TRUNK, true, BIT(CMD_SERVE), "SFVOPI_SIP_TRUNK"},
    {"--rtp-ports", O_RTP_PORTS, true, BIT(CMD_SERVE), "SFVOPI_RTP_PORTS"},
    {"--media-ip", O_MEDIA_IP, true, BIT(CMD_SERVE), "SFVOPI_MEDIA_IP"},
    {"--deny-private-urls", O_DENY_PRIVATE, false, BIT(CMD_SERVE), "SFVOPI_DENY_PRIVATE_URLS"},
    {"--max-calls", O_MAX_CALLS, true, BIT(CMD_SERVE), "SFVOPI_MAX_CALLS"},
    {"--answer-delay", O_ANSWER_DELAY, true, BIT(CMD_SERVE), "SFVOPI_ANSWER_DELAY"},
    {"--sip-allow", O_SIP_ALLOW, true, BIT(CMD_SERVE), "SFVOPI_SIP_ALLOW"},
    {"--sip-invite-rate", O_SIP_INVITE_RATE, true, BIT(CMD_SERVE), "SFVOPI_SIP_INVITE_RATE"},
    {"--rtp-latch", O_RTP_LATCH, false, BIT(CMD_SERVE), "SFVOPI_RTP_LATCH"},
    {"--rtp-timeout", O_RTP_TIMEOUT, true, BIT(CMD_SERVE), "SFVOPI_RTP_TIMEOUT"},
    {"--sip-user", O_SIP_USER, true, BIT(CMD_SERVE), "SFVOPI_SIP_USER"},
    {"--sip-password-file", O_SIP_PASSWORD_FILE, true, BIT(CMD_SERVE), "SFVOPI_SIP_PASSWORD_FILE"},
    {"--sip-register", O_SIP_REGISTER, false, BIT(CMD_SERVE), "SFVOPI_SIP_REGISTER"},
    {"--sip-registrar", O_SIP_REGISTRAR, true, BIT(CMD_SERVE), "SFVOPI_SIP_REGISTRAR"},
    {"--sip-register-expires", O_SIP_REGISTER_EXPIRES, true, BIT(CMD_SERVE),
     "SFVOPI_SIP_REGISTER_EXPIRES"},
    {"--sip-from-domain", O_SIP_FROM_DOMAIN, true, BIT(CMD_SERVE), "SFVOPI_SIP_FROM_DOMAIN"},
    {"--sip-caller-id", O_SIP_CALLER_ID, true, BIT(CMD_SERVE), "SFVOPI_SIP_CALLER_ID"},
    {"--sip-outbound-proxy", O_SIP_OUTBOUND_PROXY, true, BIT(CMD_SERVE),
     "SFVOPI_SIP_OUTBOUND_PROXY"},
    {"--sip-header", O_SIP_HEADER, true, BIT(CMD_SERVE), "SFVOPI_SIP_HEADER"},
    {"--dns-server", O_DNS_SERVER, true, BIT(CMD_SERVE), "SFVOPI_DNS_SERVER"},
    {"--sip-tls-cert", O_SIP_TLS_CERT, true, BIT(CMD_SERVE), "SFVOPI_SIP_TLS_CERT"},
    {"--sip-tls-key", O_SIP_TLS_KEY, true, BIT(CMD_SERVE), "SFVOPI_SIP_TLS_KEY"},
    {"--sip-tls-ca", O_SIP_TLS_CA, true, BIT(CMD_SERVE), "SFVOPI_SIP_TLS_CA"},
    {"--srtp", O_SRTP, true, BIT(CMD_SERVE), "SFVOPI_SRTP"},
    {"--sip-advertise", O_SIP_ADVERTISE, true, BIT(CMD_SERVE), "SFVOPI_SIP_ADVERTISE"},
    {"--tls-cert", O_TLS_CERT, true, BIT(CMD_SERVE), "SFVOPI_TLS_CERT"},
    {"--tls-key", O_TLS_KEY, true, BIT(CMD_SERVE), "SFVOPI_TLS_KEY"},
    {"--admin-tls-cert", O_ADMIN_TLS_CERT, true, BIT(CMD_SERVE), "SFVOPI_ADMIN_TLS_CERT"},
    {"--admin-tls-key", O_ADMIN_TLS_KEY, true, BIT(CMD_SERVE), "SFVOPI_ADMIN_TLS_KEY"},
    {"--trusted-proxy", O_TRUSTED_PROXY, true, BIT(CMD_SERVE), "SFVOPI_TRUSTED_PROXY"},
    {"--metrics-public", O_METRICS_PUBLIC, false, BIT(CMD_SERVE), "SFVOPI_METRICS_PUBLIC"},
    {"--drain-timeout", O_DRAIN_TIMEOUT, true, BIT(CMD_SERVE), "SFVOPI_DRAIN_TIMEOUT"},
    {"--node-id", O_NODE_ID, true, BIT(CMD_SERVE), "SFVOPI_NODE_ID"},
    {"--name", O_NAME, true, BIT(CMD_ORG_CREATE) | BIT(CMD_KEY_CREATE), NULL},
    {"--org", O_ORG, true,
     BIT(CMD_KEY_CREATE) | BIT(CMD_KEY_LIST) | BIT(CMD_NUMBER_ADD) | BIT(CMD_NUMBER_LIST) |
         BIT(CMD_WHSEC_CREATE) | BIT(CMD_WHSEC_LIST),
     NULL},
    {"--user", O_USER, true, BIT(CMD_KEY_CREATE), NULL},
    {"--provider", O_PROVIDER, true, BIT(CMD_NUMBER_ADD), NULL},
};

struct cmd_def {
    enum cli_cmd cmd;
    const char *group; /* NULL for single-word commands */
    const char *word;
    int min_args, max_args;
    const char *arg; /* the positional argument's name, for messages */
};

static const struct cmd_def cmds[] = {
    {CMD_SERVE, NULL, "serve", 0, 0, NULL},
    {CMD_DEMO, NULL, "demo", 0, 0, NULL},
    {CMD_ORG_CREATE, "org", "create", 0, 0, NULL},
    {CMD_ORG_LIST, "org", "list", 0, 0, NULL},
    {CMD_KEY_CREATE, "key", "create", 0, 0, NULL},
    {CMD_KEY_LIST, "key", "list", 0, 0, NULL},
    {CMD_KEY_REVOKE, "key", "revoke", 1, 1, "KEY_ID"},
    {CMD_NUMBER_ADD, "number", "add", 1, CLI_POS_MAX, "NUMBER"},
    {CMD_NUMBER_LIST, "number", "list", 0, 0, NULL},
    {CMD_NUMBER_REMOVE, "number", "remove", 1, 1, "NUMBER"},
    {CMD_NUMBER_DISABLE, "number", "disable", 1, 1, "NUMBER"},
    {CMD_NUMBER_ENABLE, "number", "enable", 1, 1, "NUMBER"},
    {CMD_WHSEC_CREATE, "webhook-secret", "create", 0, 0, NULL},
    {CMD_WHSEC_LIST, "webhook-secret", "list", 0, 0, NULL},
    {CMD_WHSEC_REVOKE, "webhook-secret", "revoke", 1, 1, "SECRET_ID"},
};

static int usage_err(char *err, size_t errsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int usage_err(char *err, size_t errsz, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
    return CLI_USAGE;
}

static bool parse_uint(const char *s, int64_t min, int64_t max, int64_t *out)
{
    return parse_i64(s, min, max, out) == ERR_OK;
}

/* Names, providers and labels are printed in tab-separated lists, so they
 * must not hold control characters. */
static bool printable(const char *s, size_t max)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > max)
        return false;
    for (i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    }
    return true;
}

static const struct opt *find_opt(const char *name, size_t n)
{
    size_t i;

    for (i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        if (strlen(opts[i].name) == n && memcmp(opts[i].name, name, n) == 0)
            return &opts[i];
    }
    return NULL;
}

static bool ip_literal(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* HOST:PORT as the listeners take it, port from min_port; numeric_host: the
 * host must be an IP address (SIP binds to one exact address). */
static bool listen_ok(const char *s, int min_port, bool numeric_host)
{
    char host[256];
    int port;

    return parse_listen_addr(s, host, sizeof(host), &port) == ERR_OK && port >= min_port &&
           (!numeric_host || ip_literal(host));
}

/* A flag on the command line (value NULL); from the environment, a yes or
 * a no. */
static bool parse_flag(const char *value, bool *out)
{
    if (!value || !strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "on") ||
        !strcmp(value, "yes"))
        *out = true;
    else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "off") ||
             !strcmp(value, "no"))
        *out = false;
    else
        return false;
    return true;
}

/* A SIP user part as RFC 3261 writes it unescaped: letters, digits and the
 * marks and user-unreserved characters. */
static bool sip_user_ok(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > SIP_CRED_MAX)
        return false;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("-_.!~*'()&=+$,;?/", c)))
            return false;
    }
    return true;
}

/* A host name or an IP address (IPv6 in brackets), as a URI's host. */
static bool host_ok(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > 253)
        return false;
    if (s[0] == '[') {
        char in[64];

        if (n < 3 || n - 2 >= sizeof(in) || s[n - 1] != ']')
            return false;
        memcpy(in, s + 1, n - 2);
        in[n - 2] = '\0';
        return strchr(in, ':') && ip_literal(in);
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.'))
            return false;
    }
    return true;
}

/* "Name: value" for --sip-header: a token name that sfvopi does not write
 * itself, and a value of printable characters. */
static bool sip_header_ok(const char *s, const char **why)
{
    static const char *const ours[] = {
        "via",
        "from",
        "to",
        "call-id",
        "cseq",
        "contact",
        "max-forwards",
        "content-type",
        "content-length",
        "route",
        "record-route",
        "p-asserted-identity",
        "authorization",
        "proxy-authorization",
        "user-agent",
        "allow",
        "supported",
        "require",
        "expires",
        "v",
        "f",
        "t",
        "i",
        "m",
        "c",
        "l",
        "k",
    };
    const char *colon = strchr(s, ':');
    size_t n = colon ? (size_t)(colon - s) : 0, i;

    *why = "must be 'Name: value' with a header name of letters, digits and - . ! % * _ + ` ' ~";
    if (!colon || n == 0 || strlen(s) > CLI_SIP_HEADER_MAX)
        return false;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("-.!%*_+`'~", c)))
            return false;
    }
    for (i = n + 1; s[i]; i++) {
        if ((unsigned char)s[i] < 0x20 && s[i] != '\t')
            return false;
        if (s[i] == 0x7f)
            return false;
    }
    for (i = 0; i < sizeof(ours) / sizeof(ours[0]); i++) {
        if (strlen(ours[i]) == n && strncasecmp(s, ours[i], n) == 0) {
            *why = "names a header that sfvopi writes itself";
            return false;
        }
    }
    return true;
}

/* "IP[:PORT][,IP[:PORT]...]" (IPv6 with a port in brackets), up to four. */
static bool dns_servers_ok(const char *s)
{
    char one[80];
    int count = 0;

    while (*s) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        char host[64];
        int port;

        if (n == 0 || n >= sizeof(one) || ++count > 4)
            return false;
        memcpy(one, s, n);
        one[n] = '\0';
        if (!ip_literal(one) && !(parse_listen_addr(one, host, sizeof(host), &port) == ERR_OK &&
                                  port >= 1 && ip_literal(host)))
            return false;
        s = comma ? comma + 1 : s + n;
        if (comma && !*s)
            return false;
    }
    return count > 0;
}

struct seen {
    const struct opt *opt;
    const char *value;
};

static int apply(struct cli *c, const struct seen *s, char *err, size_t errsz)
{
    int64_t v;

    switch (s->opt->id) {
    case O_DB:
        if (!(strncmp(s->value, "sqlite:", 7) == 0 && s->value[7]) &&
            strncmp(s->value, "postgresql://", 13) != 0 &&
            strncmp(s->value, "postgres://", 11) != 0)
            return usage_err(err, errsz, "--db must be sqlite:PATH or postgresql://...");
        c->db = s->value;
        break;
    case O_CC: c->default_cc = s->value; break;
    case O_HELP: c->help = true; break;
    case O_VERSION: c->version = true; break;
    case O_LISTEN:
        if (!listen_ok(s->value, 0, false))
            return usage_err(err, errsz,
                             "--listen must be HOST:PORT, port 0 to 65535 (IPv6 as [::1]:8080)");
        c->listen = s->value;
        break;
    case O_THREADS:
        if (!parse_uint(s->value, 1, 1024, &v))
            return usage_err(err, errsz, "--threads must be a whole number from 1 to 1024");
        c->threads = (unsigned)v;
        break;
    case O_MAXCONN:
        if (!parse_uint(s->value, 1, 1000000, &v))
            return usage_err(err, errsz,
                             "--max-connections must be a whole number from 1 to 1000000");
        c->max_connections = (unsigned)v;
        break;
    case O_IDLE:
        if (!parse_uint(s->value, 1, 86400, &v))
            return usage_err(err, errsz,
                             "--idle-timeout must be a whole number of seconds from 1 to "
                             "86400");
        c->idle_timeout_s = (unsigned)v;
        break;
    case O_LOGLEVEL:
        if (strcmp(s->value, "debug") && strcmp(s->value, "info") && strcmp(s->value, "warn") &&
            strcmp(s->value, "error") && strcmp(s->value, "off"))
            return usage_err(err, errsz, "--log-level must be debug, info, warn, error or off");
        c->log_level = s->value;
        break;
    case O_RATE:
        if (!parse_uint(s->value, 0, 1000000, &v))
            return usage_err(err, errsz,
                             "--rate-limit must be a whole number of requests a second from 0 "
                             "(off) to 1000000");
        c->rate_limit = (unsigned)v;
        break;
    case O_METRICS:
        if (strcmp(s->value, "on") != 0 && strcmp(s->value, "off") != 0)
            return usage_err(err, errsz, "--metrics must be on or off");
        c->metrics_off = strcmp(s->value, "off") == 0;
        break;
    case O_ADMIN:
        if (!listen_ok(s->value, 0, false))
            return usage_err(err, errsz,
                             "--admin-listen must be HOST:PORT, port 0 to 65535 (IPv6 as "
                             "[::1]:9090)");
        c->admin_listen = s->value;
        break;
    case O_LOGFORMAT:
        if (strcmp(s->value, "text") != 0 && strcmp(s->value, "json") != 0)
            return usage_err(err, errsz, "--log-format must be text or json");
        c->log_json = strcmp(s->value, "json") == 0;
        break;
    case O_BURST:
        if (!parse_uint(s->value, 1, 1000000, &v))
            return usage_err(err, errsz, "--rate-burst must be a whole number from 1 to 1000000");
        c->rate_burst = (unsigned)v;
        break;
    case O_SIP_LISTEN: {
        struct listen_list l;
        char why[160];

        if (listen_list_parse(s->value, &l, why, sizeof(why)) != ERR_OK)
            return usage_err(err, errsz,
                             "--sip-listen must be a comma-separated list of "
                             "[udp:|tcp:|tls:]IP:PORT (IPv6 as [::1]:5060): the value %s",
                             why);
        c->sip_listen = s->value;
        c->sip_listen_tls = listen_list_has(&l, POLICY_TP_TLS);
        break;
    }
    case O_SIP_TRUNK: {
        enum policy_tp tp;

        if (!printable(s->value, 300) || policy_uri_transport(s->value, &tp) != ERR_OK)
            return usage_err(err, errsz,
                             "--sip-trunk must be a URI like sip:HOST[:PORT][;transport=udp|tcp|"
                             "tls] or sips:HOST[:PORT]");
        c->sip_trunk = s->value;
        c->sip_trunk_tls = tp == POLICY_TP_TLS;
        break;
    }
    case O_SIP_TLS_CERT:
    case O_SIP_TLS_KEY:
    case O_SIP_TLS_CA:
        if (!printable(s->value, 4096))
            return usage_err(err, errsz, "%s must be a file name", s->opt->name);
        if (s->opt->id == O_SIP_TLS_CERT)
            c->sip_tls_cert = s->value;
        else if (s->opt->id == O_SIP_TLS_KEY)
            c->sip_tls_key = s->value;
        else
            c->sip_tls_ca = s->value;
        break;
    case O_SRTP:
        if (!strcmp(s->value, "off"))
            c->srtp = CLI_SRTP_OFF;
        else if (!strcmp(s->value, "offer"))
            c->srtp = CLI_SRTP_OFFER;
        else if (!strcmp(s->value, "require"))
            c->srtp = CLI_SRTP_REQUIRE;
        else
            return usage_err(err, errsz, "--srtp must be off, offer or require");
        break;
    case O_SIP_ADVERTISE:
        if (!ip_literal(s->value))
            return usage_err(err, errsz,
                             "--sip-advertise must be an IP address (the public address of the "
                             "NAT in front of sfvopi)");
        c->sip_advertise = s->value;
        break;
    case O_RTP_PORTS: {
        const char *dash = strchr(s->value, '-');
        char lo[8];
        int64_t hi;

        if (!dash || dash == s->value || (size_t)(dash - s->value) >= sizeof(lo))
            return usage_err(err, errsz, "--rtp-ports must be LOW-HIGH, ports 1 to 65535");
        memcpy(lo, s->value, (size_t)(dash - s->value));
        lo[dash - s->value] = '\0';
        if (!parse_uint(lo, 1, 65535, &v) || !parse_uint(dash + 1, 1, 65535, &hi) || v > hi)
            return usage_err(err, errsz, "--rtp-ports must be LOW-HIGH, ports 1 to 65535");
        c->rtp_low = (int)v;
        c->rtp_high = (int)hi;
        break;
    }
    case O_MEDIA_IP:
        if (!ip_literal(s->value))
            return usage_err(err, errsz, "--media-ip must be an IP address");
        c->media_ip = s->value;
        break;
    case O_DENY_PRIVATE:
        if (!parse_flag(s->value, &c->deny_private_urls))
            return usage_err(err, errsz, "SFVOPI_DENY_PRIVATE_URLS must be 1 or 0");
        break;
    case O_RTP_LATCH:
        if (!parse_flag(s->value, &c->rtp_latch))
            return usage_err(err, errsz, "SFVOPI_RTP_LATCH must be 1 or 0");
        break;
    case O_SIP_REGISTER:
        if (!parse_flag(s->value, &c->sip_register))
            return usage_err(err, errsz, "SFVOPI_SIP_REGISTER must be 1 or 0");
        break;
    case O_SIP_ALLOW: {
        struct allowlist l;
        char why[160];

        if (allowlist_parse(s->value, &l, why, sizeof(why)) != ERR_OK)
            return usage_err(err, errsz,
                             "--sip-allow must be 'any' or a comma-separated list of IP "
                             "addresses and CIDR blocks: the value %s",
                             why);
        c->sip_allow = s->value;
        break;
    }
    case O_RTP_TIMEOUT:
        if (!parse_uint(s->value, 0, 86400, &v))
            return usage_err(err, errsz,
                             "--rtp-timeout must be a whole number of seconds from 0 (off) to "
                             "86400");
        c->rtp_timeout = (unsigned)v;
        break;
    case O_SIP_INVITE_RATE:
        if (!parse_uint(s->value, 1, 100000, &v))
            return usage_err(err, errsz,
                             "--sip-invite-rate must be a whole number of INVITEs a second from "
                             "1 to 100000");
        c->sip_invite_rate = (unsigned)v;
        break;
    case O_SIP_USER:
        if (!sip_user_ok(s->value))
            return usage_err(err, errsz,
                             "--sip-user must be 1 to %d characters of a SIP user part (letters, "
                             "digits and - _ . ! ~ * ' ( ) & = + $ , ; ? /)",
                             SIP_CRED_MAX);
        c->sip_user = s->value;
        break;
    case O_SIP_PASSWORD_FILE:
        if (!printable(s->value, 4096))
            return usage_err(err, errsz, "--sip-password-file must be a file name");
        c->sip_password_file = s->value;
        break;
    case O_SIP_REGISTRAR:
    case O_SIP_OUTBOUND_PROXY: {
        enum policy_tp tp;

        if (!printable(s->value, 300) || policy_uri_transport(s->value, &tp) != ERR_OK)
            return usage_err(err, errsz,
                             "%s must be a URI like sip:HOST[:PORT][;transport=udp|tcp|tls] or "
                             "sips:HOST[:PORT]",
                             s->opt->name);
        if (s->opt->id == O_SIP_REGISTRAR) {
            c->sip_registrar = s->value;
            c->sip_registrar_tls = tp == POLICY_TP_TLS;
        } else {
            c->sip_outbound_proxy = s->value;
            c->sip_proxy_tls = tp == POLICY_TP_TLS;
        }
        break;
    }
    case O_SIP_REGISTER_EXPIRES:
        if (!parse_uint(s->value, 1, 86400, &v))
            return usage_err(err, errsz,
                             "--sip-register-expires must be a whole number of seconds from 1 "
                             "to 86400");
        c->sip_register_expires = (unsigned)v;
        break;
    case O_SIP_FROM_DOMAIN:
        if (!host_ok(s->value))
            return usage_err(err, errsz,
                             "--sip-from-domain must be a host name or an IP address (IPv6 in "
                             "brackets)");
        c->sip_from_domain = s->value;
        break;
    case O_SIP_CALLER_ID:
        if (strcmp(s->value, "from") != 0 && strcmp(s->value, "pai") != 0)
            return usage_err(err, errsz, "--sip-caller-id must be from or pai");
        c->sip_caller_id_pai = strcmp(s->value, "pai") == 0;
        break;
    case O_SIP_HEADER: {
        /* Repeatable; the environment variable holds one header a line. */
        const char *p = s->value, *why;
        char line[CLI_SIP_HEADER_MAX + 1];

        while (*p) {
            const char *nl = strchr(p, '\n');
            size_t n = nl ? (size_t)(nl - p) : strlen(p);

            if (n && p[n - 1] == '\r')
                n--;
            if (n > CLI_SIP_HEADER_MAX || c->nsip_headers == CLI_SIP_HEADERS_MAX)
                return usage_err(err, errsz,
                                 "--sip-header: at most %d headers of at most %d bytes each",
                                 CLI_SIP_HEADERS_MAX, CLI_SIP_HEADER_MAX);
            memcpy(line, p, n);
            line[n] = '\0';
            if (n) {
                if (!sip_header_ok(line, &why))
                    return usage_err(err, errsz, "--sip-header '%.80s' %s", line, why);
                char *copy = c->sip_header_text[c->nsip_headers];

                memcpy(copy, line, n + 1);
                c->sip_headers[c->nsip_headers++] = copy;
            }
            p = nl ? nl + 1 : p + strlen(p);
        }
        break;
    }
    case O_DNS_SERVER:
        if (!dns_servers_ok(s->value))
            return usage_err(err, errsz,
                             "--dns-server must be up to four IP[:PORT], comma-separated (IPv6 "
                             "with a port as [::1]:53)");
        c->dns_server = s->value;
        break;
    case O_TLS_CERT:
    case O_TLS_KEY:
    case O_ADMIN_TLS_CERT:
    case O_ADMIN_TLS_KEY:
        if (!printable(s->value, 4096))
            return usage_err(err, errsz, "%s must be a file name", s->opt->name);
        if (s->opt->id == O_TLS_CERT)
            c->tls_cert = s->value;
        else if (s->opt->id == O_TLS_KEY)
            c->tls_key = s->value;
        else if (s->opt->id == O_ADMIN_TLS_CERT)
            c->admin_tls_cert = s->value;
        else
            c->admin_tls_key = s->value;
        break;
    case O_TRUSTED_PROXY: {
        struct allowlist l;
        char why[160];

        if (allowlist_parse(s->value, &l, why, sizeof(why)) != ERR_OK)
            return usage_err(err, errsz,
                             "--trusted-proxy must be a comma-separated list of IP addresses "
                             "and CIDR blocks: the value %s",
                             why);
        if (l.any)
            return usage_err(err, errsz,
                             "--trusted-proxy does not take 'any': name the proxies' addresses");
        c->trusted_proxy = s->value;
        break;
    }
    case O_METRICS_PUBLIC:
        if (!parse_flag(s->value, &c->metrics_public))
            return usage_err(err, errsz, "SFVOPI_METRICS_PUBLIC must be 1 or 0");
        break;
    case O_NODE_ID: {
        size_t n = strlen(s->value);

        if (n < 1 || n > NODE_ID_MAX ||
            strspn(s->value, "abcdefghijklmnopqrstuvwxyz"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n)
            return usage_err(err, errsz,
                             "--node-id must be 1 to %d characters from A-Z, a-z, 0-9, '.', '_' "
                             "and '-'",
                             NODE_ID_MAX);
        c->node_id = s->value;
        break;
    }
    case O_DRAIN_TIMEOUT:
        if (!parse_uint(s->value, 0, CLI_DRAIN_TIMEOUT_MAX, &v))
            return usage_err(err, errsz,
                             "--drain-timeout must be a whole number of seconds from 0 to %d",
                             CLI_DRAIN_TIMEOUT_MAX);
        c->drain_timeout_s = (unsigned)v;
        break;
    case O_MAX_CALLS:
        if (!parse_uint(s->value, 1, 100000, &v))
            return usage_err(err, errsz, "--max-calls must be a whole number from 1 to 100000");
        c->max_calls = (unsigned)v;
        break;
    case O_ANSWER_DELAY:
        if (!parse_uint(s->value, 0, 10000, &v))
            return usage_err(err, errsz,
                             "--answer-delay must be a whole number of milliseconds from 0 to "
                             "10000");
        c->answer_delay_ms = (unsigned)v;
        break;
    case O_NAME: c->name = s->value; break;
    case O_PROVIDER: c->provider = s->value; break;
    case O_ORG:
        if (!parse_uint(s->value, 1, INT64_MAX, &v))
            return usage_err(err, errsz, "--org must be a positive integer, not '%s'", s->value);
        c->org = v;
        break;
    case O_USER:
        if (!parse_uint(s->value, 1, INT64_MAX, &v))
            return usage_err(err, errsz, "--user must be a positive integer, not '%s'", s->value);
        c->user = v;
        break;
    }
    return CLI_OK;
}

/* The rules between the transport options (SIP.md section 3): TLS needs
 * its certificate and key; a TLS trunk, registrar or proxy needs a tls:
 * listener (libre starts client TLS on the listener's context); SDES keys
 * travel only on TLS, so --srtp offer/require needs a tls: listener and a
 * TLS trunk when a trunk is set. */
static int check_sip_tls(const struct cli *c, char *err, size_t errsz)
{
    if (!c->sip_tls_cert != !c->sip_tls_key)
        return usage_err(err, errsz, "--sip-tls-cert and --sip-tls-key go together");
    if (c->sip_listen_tls && !c->sip_tls_cert)
        return usage_err(err, errsz, "a tls: listener needs --sip-tls-cert and --sip-tls-key");
    if (c->sip_tls_cert && !c->sip_listen_tls)
        return usage_err(err, errsz, "--sip-tls-cert needs a tls: listener in --sip-listen");
    if ((c->sip_trunk_tls || c->sip_registrar_tls || c->sip_proxy_tls) && !c->sip_listen_tls)
        return usage_err(err, errsz,
                         "a TLS trunk, registrar or outbound proxy needs a tls: listener in "
                         "--sip-listen");
    if (c->sip_tls_ca && !c->sip_listen_tls)
        return usage_err(err, errsz, "--sip-tls-ca needs a tls: listener in --sip-listen");
    if (c->srtp != CLI_SRTP_OFF && !c->sip_listen_tls)
        return usage_err(err, errsz,
                         "--srtp %s needs a tls: listener: SDES keys must not travel in clear",
                         c->srtp == CLI_SRTP_OFFER ? "offer" : "require");
    if (c->srtp != CLI_SRTP_OFF && c->sip_trunk && !c->sip_trunk_tls)
        return usage_err(err, errsz,
                         "--srtp %s needs a TLS trunk (sips: or ;transport=tls): SDES keys must "
                         "not travel in clear",
                         c->srtp == CLI_SRTP_OFFER ? "offer" : "require");
    if ((c->sip_listen_tls || c->srtp != CLI_SRTP_OFF || c->sip_advertise) && !c->sip_listen)
        return usage_err(err, errsz, "the SIP transport options need --sip-listen");
    return CLI_OK;
}

static int check_required(struct cli *c, char *err, size_t errsz)
{
    int64_t v;

    switch (c->cmd) {
    case CMD_ORG_CREATE:
        if (!c->name)
            return usage_err(err, errsz, "missing --name");
        if (!printable(c->name, 200))
            return usage_err(err, errsz,
                             "--name must be 1 to 200 characters without control "
                             "characters");
        if (!utf8_valid(c->name, strlen(c->name)))
            return usage_err(err, errsz, "--name must be valid UTF-8 text");
        break;
    case CMD_KEY_CREATE:
        if (!c->org)
            return usage_err(err, errsz, "missing --org");
        if (c->name && !printable(c->name, 100))
            return usage_err(err, errsz,
                             "--name must be 1 to 100 characters without control "
                             "characters");
        if (c->name && !utf8_valid(c->name, strlen(c->name)))
            return usage_err(err, errsz, "--name must be valid UTF-8 text");
        break;
    case CMD_KEY_LIST:
    case CMD_NUMBER_LIST:
        if (!c->org)
            return usage_err(err, errsz, "missing --org");
        break;
    case CMD_NUMBER_ADD:
        if (!c->org)
            return usage_err(err, errsz, "missing --org");
        if (!c->provider)
            return usage_err(err, errsz, "missing --provider");
        if (!printable(c->provider, 64))
            return usage_err(err, errsz,
                             "--provider must be 1 to 64 characters without control "
                             "characters");
        if (!utf8_valid(c->provider, strlen(c->provider)))
            return usage_err(err, errsz, "--provider must be valid UTF-8 text");
        break;
    case CMD_KEY_REVOKE:
        if (!parse_uint(c->args[0], 1, INT64_MAX, &v))
            return usage_err(err, errsz, "KEY_ID must be a positive integer, not '%s'", c->args[0]);
        break;
    case CMD_WHSEC_CREATE:
    case CMD_WHSEC_LIST:
        if (!c->org)
            return usage_err(err, errsz, "missing --org");
        break;
    case CMD_WHSEC_REVOKE:
        if (!parse_uint(c->args[0], 1, INT64_MAX, &v))
            return usage_err(err, errsz, "SECRET_ID must be a positive integer, not '%s'",
                             c->args[0]);
        break;
    default: break;
    }
    if (c->default_cc && !e164_default_cc_valid(c->default_cc))
        return usage_err(err, errsz,
                         "--default-country-code must be an assigned country code, not '%s'",
                         c->default_cc);
    return CLI_OK;
}

/* True when the command line sets option id. */
static bool given(const struct seen *seen, int nseen, enum opt_id id)
{
    int i;

    for (i = 0; i < nseen; i++) {
        if (seen[i].opt->id == id)
            return true;
    }
    return false;
}

int cli_parse(int argc, char **argv, const char *(*env)(const char *), struct cli *c, char *err,
              size_t errsz)
{
    static struct seen seen[64];
    const char *pos[CLI_POS_MAX + 2];
    int npos = 0, nseen = 0, i, rc, first_arg;
    bool opts_done = false;
    size_t k;

    memset(c, 0, sizeof(*c));
    err[0] = '\0';
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (!opts_done && strcmp(a, "--") == 0) {
            opts_done = true;
            continue;
        }
        if (!opts_done && a[0] == '-' && a[1] != '\0') {
            const char *eq = strchr(a, '=');
            size_t n = eq ? (size_t)(eq - a) : strlen(a);
            const struct opt *o = find_opt(a, n);

            if (!o)
                return usage_err(err, errsz, "unknown option '%.*s'", (int)n, a);
            if (nseen == (int)(sizeof(seen) / sizeof(seen[0])))
                return usage_err(err, errsz, "too many options");
            seen[nseen].opt = o;
            seen[nseen].value = NULL;
            if (o->value) {
                if (eq)
                    seen[nseen].value = eq + 1;
                else if (i + 1 < argc)
                    seen[nseen].value = argv[++i];
                else
                    return usage_err(err, errsz, "option '%s' needs a value", o->name);
            } else if (eq) {
                return usage_err(err, errsz, "option '%s' takes no value", o->name);
            }
            nseen++;
            continue;
        }
        if (npos == CLI_POS_MAX + 2)
            return usage_err(err, errsz, "too many arguments");
        pos[npos++] = a;
    }

    /* The subcommand. */
    first_arg = 0;
    if (npos > 0) {
        for (k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
            const struct cmd_def *d = &cmds[k];

            if (!d->group && strcmp(pos[0], d->word) == 0) {
                c->cmd = d->cmd;
                first_arg = 1;
                break;
            }
            if (d->group && strcmp(pos[0], d->group) == 0) {
                c->group = d->group;
                if (npos > 1 && strcmp(pos[1], d->word) == 0) {
                    c->cmd = d->cmd;
                    first_arg = 2;
                    break;
                }
            }
        }
    }
    for (i = 0; i < nseen; i++) {
        if (seen[i].opt->id == O_HELP)
            c->help = true;
        if (seen[i].opt->id == O_VERSION)
            c->version = true;
    }
    if (c->help || c->version)
        return CLI_OK;
    if (npos == 0)
        return usage_err(err, errsz, "no subcommand given");
    if (c->cmd == CMD_NONE) {
        if (c->group && npos > 1)
            return usage_err(err, errsz, "unknown subcommand '%s %s'", c->group, pos[1]);
        if (c->group)
            return usage_err(err, errsz, "'%s' needs a subcommand", c->group);
        return usage_err(err, errsz, "unknown subcommand '%s'", pos[0]);
    }

    for (k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
        if (cmds[k].cmd != c->cmd)
            continue;
        c->nargs = npos - first_arg;
        if (c->nargs < cmds[k].min_args)
            return usage_err(err, errsz, "missing %s", cmds[k].arg ? cmds[k].arg : "argument");
        if (c->nargs > cmds[k].max_args)
            return usage_err(err, errsz, "unexpected argument '%s'",
                             pos[first_arg + cmds[k].max_args]);
    }
    for (i = 0; i < c->nargs; i++)
        c->args[i] = pos[first_arg + i];

    /* Defaults, then the environment, then options over it. */
    c->rate_limit = CLI_DEFAULT_RATE_LIMIT;
    c->rate_burst = CLI_DEFAULT_RATE_BURST;
    c->rtp_low = CLI_DEFAULT_RTP_LOW;
    c->rtp_high = CLI_DEFAULT_RTP_HIGH;
    c->max_calls = CLI_DEFAULT_MAX_CALLS;
    c->sip_invite_rate = CLI_DEFAULT_INVITE_RATE;
    c->rtp_timeout = CLI_DEFAULT_RTP_TIMEOUT;
    c->sip_register_expires = CLI_DEFAULT_REGISTER_EXPIRES;
    c->drain_timeout_s = CLI_DEFAULT_DRAIN_TIMEOUT;
    for (k = 0; k < sizeof(opts) / sizeof(opts[0]); k++) {
        struct seen from_env;

        if (!opts[k].env || !(opts[k].cmds & BIT(c->cmd)))
            continue;
        from_env.opt = &opts[k];
        from_env.value = env(opts[k].env);
        if (!from_env.value || !*from_env.value || given(seen, nseen, opts[k].id))
            continue; /* an option beats its variable, even a malformed one */
        rc = apply(c, &from_env, err, errsz);
        if (rc != CLI_OK) {
            size_t used = strlen(err);

            snprintf(err + used, errsz - used, " (from %s)", opts[k].env);
            return rc;
        }
    }
    for (i = 0; i < nseen; i++) {
        if (!(seen[i].opt->cmds & BIT(c->cmd)))
            return usage_err(err, errsz, "option '%s' does not apply to this subcommand",
                             seen[i].opt->name);
        rc = apply(c, &seen[i], err, errsz);
        if (rc != CLI_OK)
            return rc;
    }
    if (!c->db || !*c->db)
        c->db = "sqlite:sfvopi.db";
    if (!c->default_cc || !*c->default_cc)
        c->default_cc = "91";
    if (!c->listen || !*c->listen)
        c->listen = "127.0.0.1:8080";
    if (!c->log_level || !*c->log_level)
        c->log_level = "info";
    if (c->cmd == CMD_SERVE) {
        const char *pw = env("SFVOPI_SIP_PASSWORD");

        if (c->sip_password_file && pw && *pw)
            return usage_err(err, errsz,
                             "give the trunk password once: SFVOPI_SIP_PASSWORD or "
                             "--sip-password-file, not both");
        if (c->sip_register && !c->sip_user)
            return usage_err(err, errsz, "--sip-register needs --sip-user");
        if (c->sip_register && !c->sip_trunk && !c->sip_registrar)
            return usage_err(err, errsz, "--sip-register needs --sip-trunk or --sip-registrar");
        if (c->sip_caller_id_pai && !c->sip_user)
            return usage_err(err, errsz, "--sip-caller-id pai needs --sip-user");
        rc = check_sip_tls(c, err, errsz);
        if (rc != CLI_OK)
            return rc;
        if (!c->tls_cert != !c->tls_key)
            return usage_err(err, errsz, "%s",
                             c->tls_cert ? "--tls-cert needs --tls-key"
                                         : "--tls-key needs --tls-cert");
        if (!c->admin_tls_cert != !c->admin_tls_key)
            return usage_err(err, errsz, "%s",
                             c->admin_tls_cert ? "--admin-tls-cert needs --admin-tls-key"
                                               : "--admin-tls-key needs --admin-tls-cert");
        if (c->admin_tls_cert && !c->admin_listen)
            return usage_err(err, errsz,
                             "--admin-tls-cert and --admin-tls-key need --admin-listen");
    }
    return check_required(c, err, errsz);
}
