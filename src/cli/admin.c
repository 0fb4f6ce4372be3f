/* admin: the operator subcommands (organisations, keys, inventory, demo)
 * and the usage texts. Each command opens the database (which applies
 * migrations), does one thing, and reports on stdout exactly what CLI.md
 * says. A key is printed once, by key create or demo, and never logged. */
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "auth/apikey.h"
#include "cli/cli.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/parse.h"
#include "core/whsig.h"
#include "store/store.h"

static const char overview[] =
    "usage: sfvopi [--db URL] [--default-country-code N] <command> [options]\n"
    "\n"
    "Self-hosted SFVoPI programmable-voice API server.\n"
    "\n"
    "commands:\n"
    "  serve [--listen HOST:PORT] [--threads N]   run the HTTP API\n"
    "  demo                                       set up a database to try (org, key, numbers)\n"
    "  org create --name NAME                     create an organisation; prints its id\n"
    "  org list                                   list organisations\n"
    "  key create --org ID [--user ID] [--name L] create an API key; prints it once\n"
    "  key list --org ID                          list an organisation's keys\n"
    "  key revoke KEY_ID                          revoke a key\n"
    "  number add --org ID --provider P NUMBER... add numbers to an organisation's inventory\n"
    "  number list --org ID                       list an organisation's inventory\n"
    "  number remove NUMBER                       remove an unlinked number from inventory\n"
    "  number disable NUMBER | enable NUMBER      set a number's inventory status\n"
    "  webhook-secret create --org ID             create a signing secret; prints it once\n"
    "  webhook-secret list --org ID               list an organisation's signing secrets\n"
    "  webhook-secret revoke SECRET_ID            revoke a signing secret\n"
    "\n"
    "global options (before or after the command):\n"
    "  --db URL                    sqlite:PATH or postgresql://... (a libpq URI)\n"
    "                              (default sqlite:sfvopi.db) [env SFVOPI_DB]\n"
    "  --default-country-code N    country code for 10-digit national numbers (default 91)\n"
    "                              [env SFVOPI_DEFAULT_CC]\n"
    "  -h, --help                  usage of a command\n"
    "  --version                   print the version\n"
    "\n"
    "exit codes: 0 success, 1 the operation failed, 2 bad usage.\n"
    "Run 'sfvopi <command> --help' for a command's options.\n";

static const char serve_usage[] =
    "usage: sfvopi serve [--listen HOST:PORT] [--threads N] [options]\n"
    "\n"
    "Serves the SFVoPI HTTP API until SIGINT or SIGTERM, then finishes requests in flight\n"
    "(at most 10 s) and exits 0. Prints 'listening on HOST:PORT' on stderr once ready.\n"
    "With --sip-listen, SIGINT or SIGTERM first drains the node: new INVITEs and OPTIONS\n"
    "get 503, POST /sfvopi/calls 500 and /readyz 503, the rest of the API still answers,\n"
    "and live calls go on until they end or --drain-timeout passes (then they are hung\n"
    "up); the process exits as soon as no call is left. A second signal ends the drain.\n"
    "SIGHUP reloads the TLS certificates and keys from their files.\n"
    "Every option can also be set by its environment variable; an option beats it.\n"
    "\n"
    "options:\n"
    "  --listen HOST:PORT       address to listen on; port 0 picks a free port; IPv6 as\n"
    "                           [::1]:8080 (default 127.0.0.1:8080)          [SFVOPI_LISTEN]\n"
    "  --threads N              worker threads (default: number of cores)    [SFVOPI_THREADS]\n"
    "  --max-connections N      connections served at once; further ones wait in the\n"
    "                           listen queue until one closes\n"
    "                           (default 1024)                      [SFVOPI_MAX_CONNECTIONS]\n"
    "  --idle-timeout SECONDS   close a connection idle this long (default 30)\n"
    "                                                                 [SFVOPI_IDLE_TIMEOUT]\n"
    "  --rate-limit N           requests a second per API key, per node; 0 turns limiting off\n"
    "                           (default 100)                           [SFVOPI_RATE_LIMIT]\n"
    "  --rate-burst N           requests a key may make at once before the limit applies\n"
    "                           (default 200)                           [SFVOPI_RATE_BURST]\n"
    "  --metrics on|off         serve Prometheus metrics at GET /metrics (default on)\n"
    "                                                                      [SFVOPI_METRICS]\n"
    "  --metrics-public         answer GET /metrics on --listen to any client (default off:\n"
    "                           only to loopback clients whose request has no\n"
    "                           X-Forwarded-For or Forwarded header; others get 404)\n"
    "                                                               [SFVOPI_METRICS_PUBLIC]\n"
    "  --admin-listen HOST:PORT serve /metrics, /healthz and /readyz on this address instead\n"
    "                           to whoever reaches it (then /metrics is not on --listen;\n"
    "                           default off)                        [SFVOPI_ADMIN_LISTEN]\n"
    "  --tls-cert FILE          serve HTTPS (TLS 1.2 and 1.3) with this PEM certificate\n"
    "                           chain, server certificate first (default: plain HTTP)\n"
    "                                                                    [SFVOPI_TLS_CERT]\n"
    "  --tls-key FILE           the unencrypted PEM private key of --tls-cert (default none)\n"
    "                                                                     [SFVOPI_TLS_KEY]\n"
    "  --admin-tls-cert FILE    the same for --admin-listen (default: plain HTTP)\n"
    "                                                              [SFVOPI_ADMIN_TLS_CERT]\n"
    "  --admin-tls-key FILE     the key of --admin-tls-cert (default none)\n"
    "                                                               [SFVOPI_ADMIN_TLS_KEY]\n"
    "  --trusted-proxy LIST     proxies whose X-Forwarded-For names the client in the access\n"
    "                           log: IP addresses and CIDR blocks, comma-separated\n"
    "                           (default none: X-Forwarded-For is ignored)\n"
    "                                                                [SFVOPI_TRUSTED_PROXY]\n"
    "  --sip-listen LIST        SIP listeners for the carrier, comma-separated\n"
    "                           [udp:|tcp:|tls:]IP:PORT (udp when no scheme), e.g.\n"
    "                           udp:10.0.0.5:5060,tls:10.0.0.5:5061; calls are off without\n"
    "                           it (default off)                      [SFVOPI_SIP_LISTEN]\n"
    "  --sip-trunk URI          where outbound INVITEs go: sip:HOST[:PORT][;transport=udp|\n"
    "                           tcp|tls] or sips:HOST[:PORT] (default none: POST\n"
    "                           /sfvopi/calls answers 500)               [SFVOPI_SIP_TRUNK]\n"
    "  --rtp-ports LOW-HIGH     UDP ports for media (default 20000-20999)  [SFVOPI_RTP_PORTS]\n"
    "  --media-ip ADDR          address written into SDP (default: the --sip-listen address)\n"
    "                                                                     [SFVOPI_MEDIA_IP]\n"
    "  --deny-private-urls      never call webhooks on loopback or private addresses\n"
    "                           (default off; link-local is always refused)\n"
    "                                                            [SFVOPI_DENY_PRIVATE_URLS]\n"
    "  --max-calls N            concurrent calls; beyond it inbound gets 503 and outbound 500\n"
    "                           (default 500)                            [SFVOPI_MAX_CALLS]\n"
    "  --answer-delay MS        inbound calls ring this long (180 Ringing) before sfvopi\n"
    "                           answers them; the caller may cancel meanwhile (default 0)\n"
    "                                                                 [SFVOPI_ANSWER_DELAY]\n"
    "  --drain-timeout S        on SIGINT/SIGTERM live calls may go on this long, 0 to\n"
    "                           86400 seconds, before they are hung up; 0: at once\n"
    "                           (default 30)                        [SFVOPI_DRAIN_TIMEOUT]\n"
    "  --node-id ID             this node's name in a cluster on one PostgreSQL: written on\n"
    "                           every call it owns; 1-64 characters from A-Z a-z 0-9 . _ -\n"
    "                           (default: <hostname>-<random>, new at each start)\n"
    "                                                                     [SFVOPI_NODE_ID]\n"
    "\n"
    "carrier edge (SIP.md: who may send, trunk credentials, identity):\n"
    "  --sip-allow LIST         sources that may send SIP: 'any' or IP addresses and CIDR\n"
    "                           blocks, comma-separated; others get no answer at all\n"
    "                           (default: the addresses --sip-trunk, --sip-registrar and\n"
    "                           --sip-outbound-proxy resolve to; none: nothing allowed)\n"
    "                                                                   [SFVOPI_SIP_ALLOW]\n"
    "  --sip-invite-rate N      new INVITEs a second from one source, bursts of twice that;\n"
    "                           above it 503 with Retry-After: 1 (default 200)\n"
    "                                                             [SFVOPI_SIP_INVITE_RATE]\n"
    "  --rtp-latch              take a call's RTP from the source of its first packet and\n"
    "                           send there (carriers behind NAT); default off: RTP only\n"
    "                           from the address in the party's SDP       [SFVOPI_RTP_LATCH]\n"
    "  --rtp-timeout S          end a call (BYE, COMPLETED, cause 102) whose party sends\n"
    "                           no RTP for S seconds while not on hold; 0: never\n"
    "                           (default 60)                           [SFVOPI_RTP_TIMEOUT]\n"
    "  --sip-user USER          digest user for the trunk's 401/407 challenges and the\n"
    "                           registered user (default none)           [SFVOPI_SIP_USER]\n"
    "  --sip-password-file FILE the trunk password, the file's first line; or set it in\n"
    "                           SFVOPI_SIP_PASSWORD (never a flag)\n"
    "                           (default none)                  [SFVOPI_SIP_PASSWORD_FILE]\n"
    "  --sip-register           keep a registration (REGISTER) with the registrar, renewed\n"
    "                           before it expires, removed at shutdown (default off)\n"
    "                                                                [SFVOPI_SIP_REGISTER]\n"
    "  --sip-registrar URI      where to register, sip:HOST[:PORT] (default: --sip-trunk)\n"
    "                                                               [SFVOPI_SIP_REGISTRAR]\n"
    "  --sip-register-expires S registration lifetime asked for, in seconds (default 600)\n"
    "                                                        [SFVOPI_SIP_REGISTER_EXPIRES]\n"
    "  --sip-from-domain HOST   host of From on outbound INVITEs (default: the trunk host)\n"
    "                                                             [SFVOPI_SIP_FROM_DOMAIN]\n"
    "  --sip-caller-id MODE     from: the caller's number in From; pai: --sip-user in From\n"
    "                           and the number in P-Asserted-Identity (default from)\n"
    "                                                               [SFVOPI_SIP_CALLER_ID]\n"
    "  --sip-outbound-proxy URI send outbound requests through this proxy, sip:HOST[:PORT]\n"
    "                           (a pre-loaded Route; default none)\n"
    "                                                          [SFVOPI_SIP_OUTBOUND_PROXY]\n"
    "  --sip-header 'N: V'      a header added to every outbound INVITE; repeatable (the\n"
    "                           variable: one header a line; default none)\n"
    "                                                                  [SFVOPI_SIP_HEADER]\n"
    "  --dns-server IP[:PORT]   DNS servers for SIP names, comma-separated (default: those\n"
    "                           of /etc/resolv.conf)                  [SFVOPI_DNS_SERVER]\n"
    "\n"
    "transports, SRTP and NAT (SIP.md section 3):\n"
    "  --sip-tls-cert FILE      PEM certificate (chain) of the tls: listener (default none)\n"
    "                                                                 [SFVOPI_SIP_TLS_CERT]\n"
    "  --sip-tls-key FILE       PEM private key of the tls: listener (default none)\n"
    "                                                                  [SFVOPI_SIP_TLS_KEY]\n"
    "  --sip-tls-ca FILE        CAs that a TLS trunk's certificate is verified against\n"
    "                           (default: the system's)                [SFVOPI_SIP_TLS_CA]\n"
    "  --srtp MODE              off; offer: SRTP (SDES) when the party takes it; require:\n"
    "                           SRTP or no call (488 / FAILED 88). offer and require need\n"
    "                           a tls: listener and a TLS trunk (default off) [SFVOPI_SRTP]\n"
    "  --sip-advertise ADDR     public address written into Contact, Via and (unless\n"
    "                           --media-ip) SDP when sfvopi is behind NAT (default: the\n"
    "                           bound address)                     [SFVOPI_SIP_ADVERTISE]\n"
    "\n"
    "  --log-format FORMAT      text (key=value) or json, one line per event (default text)\n"
    "                                                                   [SFVOPI_LOG_FORMAT]\n"
    "  --log-level LEVEL        debug, info, warn, error or off (default info)\n"
    "                                                                    [SFVOPI_LOG_LEVEL]\n"
    "  --db URL                 sqlite:PATH or postgresql://... (a libpq URI)\n"
    "                           (default sqlite:sfvopi.db)                     [SFVOPI_DB]\n"
    "  --default-country-code N country code for 10-digit national numbers (default 91)\n"
    "                                                                   [SFVOPI_DEFAULT_CC]\n";

struct usage_entry {
    enum cli_cmd cmd;
    const char *group;
    const char *text;
};

static const struct usage_entry usages[] = {
    {CMD_DEMO, NULL,
     "usage: sfvopi demo [--listen HOST:PORT]\n\n"
     "On a database with no organisation, creates organisation \"Demo\", an API key and the\n"
     "inventory numbers +918000000001 to +918000000005 (provider demo), and prints the key\n"
     "with a ready-to-paste curl line (for the address of --listen or SFVOPI_LISTEN).\n"
     "On a database already set up, says so and changes nothing.\n"},
    {CMD_ORG_CREATE, "org",
     "usage: sfvopi org create --name NAME\n\nCreates an organisation and prints its id.\n"},
    {CMD_ORG_LIST, "org",
     "usage: sfvopi org list\n\nPrints one organisation a line: ID<TAB>NAME.\n"},
    {CMD_KEY_CREATE, "key",
     "usage: sfvopi key create --org ID [--user USER_ID] [--name LABEL]\n\n"
     "Creates an API key for the organisation and prints it, once: only its hash is kept.\n"
     "--user becomes created_by of the apps created with the key.\n"},
    {CMD_KEY_LIST, "key",
     "usage: sfvopi key list --org ID\n\n"
     "Prints one key a line: KEY_ID<TAB>PREFIX<TAB>NAME<TAB>STATUS<TAB>CREATED_AT.\n"},
    {CMD_KEY_REVOKE, "key",
     "usage: sfvopi key revoke KEY_ID\n\n"
     "Revokes a key: it fails with 401 within 5 seconds on every server.\n"},
    {CMD_NUMBER_ADD, "number",
     "usage: sfvopi number add --org ID --provider NAME NUMBER...\n\n"
     "Adds numbers (normalised to E.164) to the organisation's inventory and prints each one\n"
     "added. A number that is invalid or already in an inventory is reported and skipped;\n"
     "the exit code is then 1.\n"},
    {CMD_NUMBER_LIST, "number",
     "usage: sfvopi number list --org ID\n\n"
     "Prints one number a line: ID<TAB>E164<TAB>PROVIDER<TAB>STATUS<TAB>LINKED_APP_ID or -.\n"},
    {CMD_NUMBER_REMOVE, "number",
     "usage: sfvopi number remove NUMBER\n\nRemoves a number that has no ACTIVE link.\n"},
    {CMD_NUMBER_DISABLE, "number",
     "usage: sfvopi number disable NUMBER\n\n"
     "Sets the inventory status INACTIVE: the number cannot be linked and is not available\n"
     "(existing links stay).\n"},
    {CMD_NUMBER_ENABLE, "number",
     "usage: sfvopi number enable NUMBER\n\nSets the inventory status ACTIVE again.\n"},
    {CMD_WHSEC_CREATE, "webhook-secret",
     "usage: sfvopi webhook-secret create --org ID\n\n"
     "Creates a signing secret for the organisation and prints it, once. From then on every\n"
     "webhook and stream connection carries X-Sfvopi-Signature (within a second on every\n"
     "server). An organisation has at most two active secrets, so that a new one can be\n"
     "rolled out before the old one is revoked.\n"},
    {CMD_WHSEC_LIST, "webhook-secret",
     "usage: sfvopi webhook-secret list --org ID\n\n"
     "Prints one active signing secret a line, oldest first:\n"
     "SECRET_ID<TAB>FIRST_12_CHARACTERS<TAB>CREATED_AT.\n"},
    {CMD_WHSEC_REVOKE, "webhook-secret",
     "usage: sfvopi webhook-secret revoke SECRET_ID\n\n"
     "Revokes a signing secret: it signs nothing more (within a second on every server).\n"},
};

void cli_usage(const struct cli *cli, FILE *f)
{
    size_t i;

    if (cli->cmd == CMD_SERVE) {
        fputs(serve_usage, f);
        return;
    }
    if (cli->cmd != CMD_NONE) {
        for (i = 0; i < sizeof(usages) / sizeof(usages[0]); i++) {
            if (usages[i].cmd == cli->cmd) {
                fputs(usages[i].text, f);
                return;
            }
        }
    }
    if (cli->group) {
        /* The first line (the usage line) of each command of the group. */
        for (i = 0; i < sizeof(usages) / sizeof(usages[0]); i++) {
            const char *t = usages[i].text;

            if (usages[i].group && strcmp(usages[i].group, cli->group) == 0)
                fprintf(f, "%.*s\n", (int)(strchr(t, '\n') - t), t);
        }
        fputs("Run 'sfvopi <command> <subcommand> --help' for details.\n", f);
        return;
    }
    fputs(overview, f);
}

/* Prints "sfvopi: <message>" on stderr. */
static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail(const char *fmt, ...)
{
    va_list ap;

    fputs("sfvopi: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_FAILED;
}

/* A database error names the backend's own cause (kept by log_hold), all on
 * the one error line. */
static int db_fail_as(const char *what, enum err e)
{
    char cause[300];

    if (log_held_cause(cause, sizeof(cause)))
        return fail("%s: %s: %s", what, err_str(e), cause);
    return fail("%s: %s", what, err_str(e));
}

static int db_fail(enum err e)
{
    return db_fail_as("database operation failed", e);
}

static int org_must_exist(struct store_conn *c, long long org)
{
    struct store_org o;
    enum err e = c->ops->org_get(c, org, &o);

    if (e == ERR_NOT_FOUND)
        return fail("org %lld does not exist", org);
    if (e != ERR_OK)
        return db_fail(e);
    return CLI_OK;
}

static enum err print_org(void *ud, const struct store_org *o)
{
    (void)ud;
    printf("%lld\t%s\n", (long long)o->id, o->name);
    return ERR_OK;
}

static enum err print_key(void *ud, const struct store_key *k)
{
    char ts[CLOCK_ISO_LEN + 1];

    (void)ud;
    clock_format_iso(k->created_at, ts);
    printf("%lld\t%s\t%s\t%s\t%s\n", (long long)k->id, k->prefix, k->name[0] ? k->name : "-",
           k->revoked ? "REVOKED" : "ACTIVE", ts);
    return ERR_OK;
}

static enum err print_number(void *ud, const struct store_number *n)
{
    (void)ud;
    printf("%lld\t%s\t%s\t%s\t%s\n", (long long)n->id, n->voip_number, n->provider, n->status,
           n->linked_app_id[0] ? n->linked_app_id : "-");
    return ERR_OK;
}

static enum err print_whsecret(void *ud, const struct store_whsecret *s)
{
    char ts[CLOCK_ISO_LEN + 1];

    (void)ud;
    clock_format_iso(s->created_at, ts);
    printf("%lld\t%s\t%s\n", (long long)s->id, s->shown, ts);
    return ERR_OK;
}

/* webhook-secret create|list|revoke (AGENT.md section 4). The secret is
 * printed once, here, and wiped; nothing else ever shows it whole. */
static int whsecret_cmd(struct store_conn *c, const struct cli *cli)
{
    char secret[WHSIG_SECRET_LEN + 1];
    int64_t id;
    enum err e;
    int rc;

    switch (cli->cmd) {
    case CMD_WHSEC_CREATE:
        rc = org_must_exist(c, cli->org);
        if (rc != CLI_OK)
            return rc;
        whsig_secret_generate(secret);
        e = c->ops->whsecret_create(c, cli->org, secret, clock_now_ms(), &id);
        if (e == ERR_OK)
            printf("%s\n", secret);
        sodium_memzero(secret, sizeof(secret));
        if (e == ERR_NOT_FOUND)
            return fail("org %lld does not exist", cli->org);
        if (e == ERR_CONFLICT)
            return fail("org %lld has %d active signing secrets already: revoke one first",
                        cli->org, WHSEC_ACTIVE_MAX);
        return e == ERR_OK ? CLI_OK : db_fail(e);
    case CMD_WHSEC_LIST:
        rc = org_must_exist(c, cli->org);
        if (rc != CLI_OK)
            return rc;
        e = c->ops->whsecret_list(c, cli->org, print_whsecret, NULL);
        return e == ERR_OK ? CLI_OK : db_fail(e);
    case CMD_WHSEC_REVOKE:
        if (parse_i64(cli->args[0], 1, INT64_MAX, &id) != ERR_OK)
            return CLI_USAGE; /* cli_parse already refused it */
        e = c->ops->whsecret_revoke(c, id, clock_now_ms());
        if (e == ERR_NOT_FOUND)
            return fail("webhook secret %lld does not exist", (long long)id);
        if (e == ERR_CONFLICT)
            return fail("webhook secret %lld is revoked already", (long long)id);
        return e == ERR_OK ? CLI_OK : db_fail(e);
    default: return CLI_USAGE;
    }
}

/* Creates a key for org and writes its plaintext into out. */
static enum err make_key(struct store_conn *c, long long org, long long user, const char *name,
                         char out[APIKEY_LEN + 1], int64_t *id)
{
    unsigned char hash[KEY_HASH_LEN];
    struct store_key k;

    memset(&k, 0, sizeof(k));
    apikey_generate(out);
    apikey_hash(out, APIKEY_LEN, hash);
    apikey_prefix(out, k.prefix);
    k.org_id = org;
    k.user_id = user;
    if (name)
        snprintf(k.name, sizeof(k.name), "%s", name);
    k.created_at = clock_now_ms();
    return c->ops->key_create(c, &k, hash, id);
}

static int number_add(struct store_conn *c, const struct cli *cli)
{
    int i, rc = CLI_OK;

    for (i = 0; i < cli->nargs; i++) {
        const char *raw = cli->args[i];
        char e164[E164_MAX];
        int64_t id;
        enum err e;

        if (e164_normalize(raw, strlen(raw), cli->default_cc, e164) != ERR_OK) {
            rc = fail("invalid number '%s'", raw);
            continue;
        }
        e = c->ops->number_add(c, cli->org, e164, cli->provider, clock_now_ms(), &id);
        if (e == ERR_CONFLICT) {
            rc = fail("number %s is already in an inventory", e164);
            continue;
        }
        if (e != ERR_OK)
            return db_fail(e);
        printf("%s\n", e164);
        fflush(stdout);
    }
    return rc;
}

/* remove, disable, enable: one NUMBER argument. */
static int number_change(struct store_conn *c, const struct cli *cli)
{
    const char *raw = cli->args[0];
    char e164[E164_MAX];
    enum err e;

    if (e164_normalize(raw, strlen(raw), cli->default_cc, e164) != ERR_OK)
        return fail("invalid number '%s'", raw);
    if (cli->cmd == CMD_NUMBER_REMOVE)
        e = c->ops->number_remove(c, e164);
    else
        e = c->ops->number_set_status(c, e164,
                                      cli->cmd == CMD_NUMBER_DISABLE ? "INACTIVE" : "ACTIVE");
    if (e == ERR_NOT_FOUND)
        return fail("number %s is not in any inventory", e164);
    if (e == ERR_CONFLICT)
        return fail("number %s is linked to an app; unlink it first", e164);
    if (e != ERR_OK)
        return db_fail(e);
    return CLI_OK;
}

static int demo(struct store_conn *c, const struct cli *cli)
{
    char key[APIKEY_LEN + 1];
    char e164[E164_MAX];
    int64_t n = 0, org = 0, key_id = 0, id;
    enum err e;
    int i;

    e = c->ops->org_count(c, &n);
    if (e != ERR_OK)
        return db_fail(e);
    if (n > 0) {
        printf("The database is already set up (%lld organisation%s); nothing was changed.\n"
               "Create a new key with: sfvopi --db %s key create --org ID\n",
               (long long)n, n == 1 ? "" : "s", cli->db);
        return CLI_OK;
    }
    e = c->ops->org_create(c, "Demo", clock_now_ms(), &org);
    if (e == ERR_OK)
        e = make_key(c, org, 0, "demo", key, &key_id);
    for (i = 1; e == ERR_OK && i <= 5; i++) {
        snprintf(e164, sizeof(e164), "+91800000000%d", i);
        e = c->ops->number_add(c, org, e164, "demo", clock_now_ms(), &id);
    }
    if (e != ERR_OK) {
        sodium_memzero(key, sizeof(key));
        return db_fail(e);
    }
    printf("Organisation \"Demo\" (id %lld) with numbers +918000000001 to +918000000005.\n"
           "API key (shown once, keep it):\n%s\n\n"
           "Try it:\n"
           "curl -s -H 'X-API-Key: %s' http://%s/sfvopi/available-numbers\n",
           (long long)org, key, key, cli->listen);
    sodium_memzero(key, sizeof(key));
    return CLI_OK;
}

int cli_run_admin(const struct cli *cli)
{
    struct store *s = NULL;
    struct store_conn *c = NULL;
    char key[APIKEY_LEN + 1];
    int64_t id;
    enum err e;
    int rc = CLI_OK;

    e = store_open(cli->db, &s);
    if (e == ERR_INVALID)
        return fail("cannot use database '%s': expected sqlite:PATH or postgresql://...", cli->db);
    if (e != ERR_OK)
        return db_fail_as("cannot open database", e);
    e = store_conn_open(s, &c);
    if (e != ERR_OK) {
        rc = db_fail_as("cannot open database", e);
        goto out_store;
    }

    switch (cli->cmd) {
    case CMD_ORG_CREATE:
        e = c->ops->org_create(c, cli->name, clock_now_ms(), &id);
        if (e != ERR_OK) {
            rc = db_fail(e);
            break;
        }
        printf("%lld\n", (long long)id);
        break;
    case CMD_ORG_LIST:
        e = c->ops->org_list(c, print_org, NULL);
        if (e != ERR_OK)
            rc = db_fail(e);
        break;
    case CMD_KEY_CREATE:
        rc = org_must_exist(c, cli->org);
        if (rc != CLI_OK)
            break;
        e = make_key(c, cli->org, cli->user, cli->name, key, &id);
        if (e == ERR_NOT_FOUND)
            rc = fail("org %lld does not exist", cli->org);
        else if (e != ERR_OK)
            rc = db_fail(e);
        else
            printf("%s\n", key);
        sodium_memzero(key, sizeof(key));
        break;
    case CMD_KEY_LIST:
        rc = org_must_exist(c, cli->org);
        if (rc != CLI_OK)
            break;
        e = c->ops->key_list(c, cli->org, print_key, NULL);
        if (e != ERR_OK)
            rc = db_fail(e);
        break;
    case CMD_KEY_REVOKE: {
        int64_t kid;

        if (parse_i64(cli->args[0], 1, INT64_MAX, &kid) != ERR_OK) {
            rc = CLI_USAGE; /* cli_parse already refused it */
            break;
        }
        e = c->ops->key_revoke(c, kid, clock_now_ms());
        if (e == ERR_NOT_FOUND)
            rc = fail("key %lld does not exist", (long long)kid);
        else if (e != ERR_OK)
            rc = db_fail(e);
        break;
    }
    case CMD_NUMBER_ADD:
        rc = org_must_exist(c, cli->org);
        if (rc == CLI_OK)
            rc = number_add(c, cli);
        break;
    case CMD_NUMBER_LIST:
        rc = org_must_exist(c, cli->org);
        if (rc != CLI_OK)
            break;
        e = c->ops->number_list(c, cli->org, print_number, NULL);
        if (e != ERR_OK)
            rc = db_fail(e);
        break;
    case CMD_NUMBER_REMOVE:
    case CMD_NUMBER_DISABLE:
    case CMD_NUMBER_ENABLE: rc = number_change(c, cli); break;
    case CMD_DEMO: rc = demo(c, cli); break;
    case CMD_WHSEC_CREATE:
    case CMD_WHSEC_LIST:
    case CMD_WHSEC_REVOKE: rc = whsecret_cmd(c, cli); break;
    case CMD_SERVE:
    case CMD_NONE: rc = CLI_USAGE; break;
    }
    if (fflush(stdout) != 0 && rc == CLI_OK)
        rc = fail("cannot write output");
    store_conn_close(c);
out_store:
    store_free(s);
    return rc;
}
