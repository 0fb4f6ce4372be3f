/* test_cli_args: cli_parse against CLI.md: global options before or after
 * the subcommand, options beating their environment variables, the
 * defaults, and exit code 2 (with a one-line reason) for every kind of bad
 * usage. The environment is a fake lookup table, never the real one. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#define ARGV_MAX (CLI_POS_MAX + 16)

/* ---- fake environment ---- */

static const char *const *fake_env; /* NULL-terminated name, value pairs */

static const char *env_lookup(const char *name)
{
    size_t i;

    for (i = 0; fake_env && fake_env[i]; i += 2) {
        if (strcmp(fake_env[i], name) == 0)
            return fake_env[i + 1];
    }
    return NULL;
}

static const char *const no_env[] = {NULL};

static int reset_env(void **state)
{
    (void)state;
    fake_env = no_env;
    return 0;
}

/* ---- running the parser ---- */

struct run {
    struct cli cli;
    char err[256];
    int rc;
};

/* Parses "sfvopi" followed by the NULL-terminated words. */
static int parse_words(struct run *r, const char *const *words)
{
    char *argv[ARGV_MAX];
    int argc = 0;

    argv[argc++] = (char *)"sfvopi";
    while (*words) {
        assert_true(argc < ARGV_MAX - 1);
        argv[argc++] = (char *)*words++;
    }
    argv[argc] = NULL;
    memset(r, 0, sizeof(*r));
    r->rc = cli_parse(argc, argv, env_lookup, &r->cli, r->err, sizeof(r->err));
    return r->rc;
}

#define PARSE(r, ...) parse_words((r), (const char *const[]){__VA_ARGS__, NULL})

/* Asserts exit code 2 with a reason that mentions what. */
static void assert_usage(const struct run *r, const char *what)
{
    assert_int_equal(r->rc, CLI_USAGE);
    assert_true(strlen(r->err) > 0);
    assert_null(strchr(r->err, '\n'));
    if (what && !strstr(r->err, what))
        fail_msg("reason '%s' does not mention '%s'", r->err, what);
}

/* ---- tests ---- */

static void test_defaults(void **state)
{
    struct run r;

    (void)state;
    assert_int_equal(PARSE(&r, "serve"), CLI_OK);
    assert_int_equal(r.cli.cmd, CMD_SERVE);
    assert_string_equal(r.cli.db, "sqlite:sfvopi.db");
    assert_string_equal(r.cli.default_cc, "91");
    assert_string_equal(r.cli.listen, "127.0.0.1:8080");
    assert_string_equal(r.cli.log_level, "info");
    assert_int_equal(r.cli.threads, 0);
    assert_false(r.cli.help);
    assert_false(r.cli.version);
    assert_int_equal(r.cli.nargs, 0);
    assert_string_equal(r.err, "");
}

static void test_drain_and_metrics_options(void **state)
{
    struct run r;

    (void)state;
    assert_int_equal(PARSE(&r, "serve"), CLI_OK);
    assert_int_equal(r.cli.drain_timeout_s, 30);
    assert_false(r.cli.metrics_public);
    assert_int_equal(PARSE(&r, "serve", "--drain-timeout", "0", "--metrics-public"), CLI_OK);
    assert_int_equal(r.cli.drain_timeout_s, 0);
    assert_true(r.cli.metrics_public);
    assert_int_equal(PARSE(&r, "serve", "--drain-timeout=86400"), CLI_OK);
    assert_int_equal(r.cli.drain_timeout_s, 86400);
    PARSE(&r, "serve", "--drain-timeout", "86401");
    assert_usage(&r, "--drain-timeout must be a whole number of seconds from 0 to 86400");
    PARSE(&r, "serve", "--drain-timeout", "-1");
    assert_usage(&r, "--drain-timeout");
    PARSE(&r, "serve", "--drain-timeout", "");
    assert_usage(&r, "--drain-timeout");
    PARSE(&r, "serve", "--metrics-public=yes");
    assert_usage(&r, "--metrics-public");
    PARSE(&r, "org", "list", "--drain-timeout", "5");
    assert_usage(&r, "does not apply");
}

static void test_every_subcommand(void **state)
{
    struct run r;

    (void)state;
    assert_int_equal(PARSE(&r, "demo"), CLI_OK);
    assert_int_equal(r.cli.cmd, CMD_DEMO);
    assert_int_equal(PARSE(&r, "org", "create", "--name", "Acme"), CLI_OK);
    assert_int_equal(r.cli.cmd, CMD_ORG_CREATE);
    assert_string_equal(r.cli.name, "Acme");
    assert_int_equal(PARSE(&r, "org", "list"), CLI_OK);
    assert_int_equal(r.cli.cmd, CMD_ORG_LIST);
    assert_int_equal(PARSE(&r, "key", "create", "--org", "7", "--user", "67890", "--name", "ci"),
                     CLI_OK);
    assert_int_equal(r.cli.cmd, CMD_KEY_CREATE);
    assert_true(r.cli.org == 7);
    assert_true(r.cli.user == 67890);
    assert_string_equal(r.cli.name, "ci");
    assert_int_equal(PARSE(&r, "key", "create", "--org", "7"), CLI_OK);
    assert_true(r.cli.user == 0);
    assert_null(r.cli.name);
    assert_int_equal(PARSE(&r, "key", "list", "--org", "7"), CLI_OK);
    assert_int_equal(r.cli.cmd, CMD_KEY_LIST);
    assert_int_equal(PARSE(&r, "key", "revoke", "12"), CLI_OK);
    assert_int_equal(r.cli.cmd, CMD_KEY_REVOKE);
    assert_int_equal(r.cli.nargs, 1);
    assert_string_equal(r.cli.args[0], "12");
    assert_int_equal(PARSE(&r, "number", "add", "--org", "3", "--provider", "exotel", "8000000001"),
                     CLI_OK);
    assert_int_equal(r.cli.cmd, CMD_NUMBER_ADD);
    assert_true(r.cli.org == 3);
    assert_string_equal(r.cli.provider, "exotel");
    assert_int_equal(PARSE(&r, "number", "list", "--org", "3"), CLI_OK);
    assert_int_equal(r.cli.cmd, CMD_NUMBER_LIST);
    assert_int_equal(PARSE(&r, "number", "remove", "+918000000001"), CLI_OK);
    assert_int_equal(r.cli.cmd, CMD_NUMBER_REMOVE);
    assert_string_equal(r.cli.args[0], "+918000000001");
    assert_int_equal(PARSE(&r, "number", "disable", "+918000000001"), CLI_OK);
    assert_int_equal(r.cli.cmd, CMD_NUMBER_DISABLE);
    assert_int_equal(PARSE(&r, "number", "enable", "+918000000001"), CLI_OK);
    assert_int_equal(r.cli.cmd, CMD_NUMBER_ENABLE);
}

/* "sfvopi --db URL serve" and "sfvopi serve --db URL" are the same. */
static void test_global_options_anywhere(void **state)
{
    struct run r;

    (void)state;
    assert_int_equal(PARSE(&r, "--db", "sqlite:a.db", "serve"), CLI_OK);
    assert_int_equal(r.cli.cmd, CMD_SERVE);
    assert_string_equal(r.cli.db, "sqlite:a.db");
    assert_int_equal(PARSE(&r, "serve", "--db", "sqlite:a.db"), CLI_OK);
    assert_int_equal(r.cli.cmd, CMD_SERVE);
    assert_string_equal(r.cli.db, "sqlite:a.db");
    /* Between the group and its subcommand, and among arguments. */
    assert_int_equal(PARSE(&r, "org", "--default-country-code", "44", "list"), CLI_OK);
    assert_int_equal(r.cli.cmd, CMD_ORG_LIST);
    assert_string_equal(r.cli.default_cc, "44");
    assert_int_equal(PARSE(&r, "number", "add", "8000000001", "--db", "sqlite:b.db", "--org", "1",
                           "8000000002", "--provider", "p", "8000000003"),
                     CLI_OK);
    assert_string_equal(r.cli.db, "sqlite:b.db");
    assert_int_equal(r.cli.nargs, 3);
    assert_string_equal(r.cli.args[0], "8000000001");
    assert_string_equal(r.cli.args[1], "8000000002");
    assert_string_equal(r.cli.args[2], "8000000003");
    /* Subcommand options before the subcommand word are fine too. */
    assert_int_equal(PARSE(&r, "--listen", "0.0.0.0:0", "serve"), CLI_OK);
    assert_string_equal(r.cli.listen, "0.0.0.0:0");
}

static void test_equals_form(void **state)
{
    struct run r;

    (void)state;
    assert_int_equal(PARSE(&r, "--db=sqlite:x.db", "serve", "--listen=127.0.0.1:0", "--threads=3",
                           "--default-country-code=1"),
                     CLI_OK);
    assert_string_equal(r.cli.db, "sqlite:x.db");
    assert_string_equal(r.cli.listen, "127.0.0.1:0");
    assert_int_equal(r.cli.threads, 3);
    assert_string_equal(r.cli.default_cc, "1");
    /* Only the first '=' splits. */
    assert_int_equal(PARSE(&r, "org", "create", "--name=a=b"), CLI_OK);
    assert_string_equal(r.cli.name, "a=b");
    /* A flag takes no value. */
    PARSE(&r, "serve", "--help=yes");
    assert_usage(&r, "--help");
}

static void test_env_and_precedence(void **state)
{
    static const char *const env[] = {"SFVOPI_DB",
                                      "sqlite:env.db",
                                      "SFVOPI_DEFAULT_CC",
                                      "44",
                                      "SFVOPI_LISTEN",
                                      "0.0.0.0:9000",
                                      "SFVOPI_LOG_LEVEL",
                                      "debug",
                                      NULL};
    struct run r;

    (void)state;
    fake_env = env;
    assert_int_equal(PARSE(&r, "serve"), CLI_OK);
    assert_string_equal(r.cli.db, "sqlite:env.db");
    assert_string_equal(r.cli.default_cc, "44");
    assert_string_equal(r.cli.listen, "0.0.0.0:9000");
    assert_string_equal(r.cli.log_level, "debug");

    /* An option beats its variable, wherever it stands. */
    assert_int_equal(PARSE(&r, "--db", "sqlite:opt.db", "serve", "--default-country-code", "1",
                           "--listen", "127.0.0.1:1", "--log-level", "warn"),
                     CLI_OK);
    assert_string_equal(r.cli.db, "sqlite:opt.db");
    assert_string_equal(r.cli.default_cc, "1");
    assert_string_equal(r.cli.listen, "127.0.0.1:1");
    assert_string_equal(r.cli.log_level, "warn");

    /* Admin commands see the same globals. */
    assert_int_equal(PARSE(&r, "org", "list"), CLI_OK);
    assert_string_equal(r.cli.db, "sqlite:env.db");
    assert_string_equal(r.cli.default_cc, "44");
}

/* An empty variable is as good as unset. */
static void test_empty_env(void **state)
{
    static const char *const env[] = {"SFVOPI_DB", "",  "SFVOPI_DEFAULT_CC", "", "SFVOPI_LISTEN",
                                      "",          NULL};
    struct run r;

    (void)state;
    fake_env = env;
    assert_int_equal(PARSE(&r, "serve"), CLI_OK);
    assert_string_equal(r.cli.db, "sqlite:sfvopi.db");
    assert_string_equal(r.cli.default_cc, "91");
    assert_string_equal(r.cli.listen, "127.0.0.1:8080");
}

static void test_last_option_wins(void **state)
{
    struct run r;

    (void)state;
    assert_int_equal(PARSE(&r, "--db", "sqlite:1.db", "serve", "--db", "sqlite:2.db"), CLI_OK);
    assert_string_equal(r.cli.db, "sqlite:2.db");
}

static void test_unknown_option(void **state)
{
    struct run r;

    (void)state;
    PARSE(&r, "serve", "--bogus");
    assert_usage(&r, "--bogus");
    PARSE(&r, "--bogus", "serve");
    assert_usage(&r, "--bogus");
    PARSE(&r, "serve", "--bogus=1");
    assert_usage(&r, "--bogus");
    PARSE(&r, "serve", "-x");
    assert_usage(&r, "-x");
    PARSE(&r, "serve", "--DB", "sqlite:x");
    assert_usage(&r, "--DB");
    PARSE(&r, "serve", "--d", "sqlite:x"); /* no abbreviations */
    assert_usage(&r, "--d");
}

static void test_unknown_subcommand(void **state)
{
    struct run r;

    (void)state;
    PARSE(&r, "bogus");
    assert_usage(&r, "bogus");
    PARSE(&r, "org", "delete");
    assert_usage(&r, "delete");
    PARSE(&r, "key", "create2", "--org", "1");
    assert_usage(&r, "create2");
    PARSE(&r, "Serve");
    assert_usage(&r, "Serve");
    PARSE(&r, "create", "org");
    assert_usage(&r, "create");
    assert_int_equal(PARSE(&r, "--db", "sqlite:x"), CLI_USAGE); /* none at all */
    {
        char *argv[] = {(char *)"sfvopi", NULL};

        memset(&r, 0, sizeof(r));
        assert_int_equal(cli_parse(1, argv, env_lookup, &r.cli, r.err, sizeof(r.err)), CLI_USAGE);
        assert_true(strlen(r.err) > 0);
    }
}

/* A group alone is a usage error that names the group. */
static void test_group_only(void **state)
{
    static const char *const groups[] = {"org", "key", "number"};
    struct run r;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
        PARSE(&r, groups[i]);
        assert_usage(&r, groups[i]);
        assert_int_equal(r.cli.cmd, CMD_NONE);
        assert_non_null(r.cli.group);
        assert_string_equal(r.cli.group, groups[i]);
    }
}

static void test_missing_values(void **state)
{
    struct run r;

    (void)state;
    PARSE(&r, "serve", "--listen");
    assert_usage(&r, "--listen");
    PARSE(&r, "serve", "--db");
    assert_usage(&r, "--db");
    PARSE(&r, "org", "create", "--name");
    assert_usage(&r, "--name");
    PARSE(&r, "key", "list", "--org");
    assert_usage(&r, "--org");
    PARSE(&r, "serve", "--default-country-code");
    assert_usage(&r, "--default-country-code");
}

static void test_required_options(void **state)
{
    struct run r;

    (void)state;
    PARSE(&r, "org", "create");
    assert_usage(&r, "--name");
    PARSE(&r, "key", "create");
    assert_usage(&r, "--org");
    PARSE(&r, "key", "list");
    assert_usage(&r, "--org");
    PARSE(&r, "number", "list");
    assert_usage(&r, "--org");
    PARSE(&r, "number", "add", "--provider", "p", "8000000001");
    assert_usage(&r, "--org");
    PARSE(&r, "number", "add", "--org", "1", "8000000001");
    assert_usage(&r, "--provider");
}

static void test_missing_and_extra_arguments(void **state)
{
    struct run r;

    (void)state;
    PARSE(&r, "key", "revoke");
    assert_usage(&r, NULL);
    PARSE(&r, "key", "revoke", "1", "2");
    assert_usage(&r, "2");
    PARSE(&r, "number", "add", "--org", "1", "--provider", "p");
    assert_usage(&r, NULL);
    PARSE(&r, "number", "remove");
    assert_usage(&r, NULL);
    PARSE(&r, "number", "remove", "+918000000001", "+918000000002");
    assert_usage(&r, "+918000000002");
    PARSE(&r, "number", "disable");
    assert_usage(&r, NULL);
    PARSE(&r, "serve", "extra");
    assert_usage(&r, "extra");
    PARSE(&r, "org", "list", "x");
    assert_usage(&r, "x");
}

static void test_org_values(void **state)
{
    static const char *const bad[] = {
        "abc", "0", "-1", "1.5", "", " 1", "1x", "+1", "99999999999999999999"};
    struct run r;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        PARSE(&r, "key", "list", "--org", bad[i]);
        if (r.rc != CLI_USAGE)
            print_error("--org '%s'\n", bad[i]);
        assert_usage(&r, "--org");
    }
    PARSE(&r, "key", "create", "--org", "1", "--user", "abc");
    assert_usage(&r, "--user");
    PARSE(&r, "key", "create", "--org", "1", "--user", "0");
    assert_usage(&r, "--user");
    assert_int_equal(PARSE(&r, "key", "list", "--org", "9223372036854775807"), CLI_OK);
    assert_true(r.cli.org == INT64_MAX);
}

static void test_key_revoke_id(void **state)
{
    static const char *const bad[] = {"abc", "0", "-3", "1.0", "", "7a", "0x10"};
    struct run r;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        PARSE(&r, "key", "revoke", bad[i]);
        if (r.rc != CLI_USAGE)
            print_error("KEY_ID '%s'\n", bad[i]);
        assert_usage(&r, NULL);
    }
    assert_int_equal(PARSE(&r, "key", "revoke", "42"), CLI_OK);
    assert_string_equal(r.cli.args[0], "42");
}

/* webhook-secret create|list|revoke (AGENT.md section 4). */
static void test_webhook_secret(void **state)
{
    static const char *const bad[] = {"abc", "0", "", "7a", "1.0"};
    struct run r;
    size_t i;

    (void)state;
    assert_int_equal(PARSE(&r, "webhook-secret", "create", "--org", "3"), CLI_OK);
    assert_int_equal(r.cli.cmd, CMD_WHSEC_CREATE);
    assert_true(r.cli.org == 3);
    assert_int_equal(PARSE(&r, "webhook-secret", "list", "--org=4"), CLI_OK);
    assert_int_equal(r.cli.cmd, CMD_WHSEC_LIST);
    assert_true(r.cli.org == 4);
    assert_int_equal(PARSE(&r, "webhook-secret", "revoke", "9"), CLI_OK);
    assert_int_equal(r.cli.cmd, CMD_WHSEC_REVOKE);
    assert_string_equal(r.cli.args[0], "9");

    PARSE(&r, "webhook-secret", "create");
    assert_usage(&r, "missing --org");
    PARSE(&r, "webhook-secret", "list");
    assert_usage(&r, "missing --org");
    PARSE(&r, "webhook-secret", "revoke");
    assert_usage(&r, "missing SECRET_ID");
    PARSE(&r, "webhook-secret", "revoke", "1", "2");
    assert_usage(&r, "unexpected argument '2'");
    PARSE(&r, "webhook-secret", "revoke", "1", "--org", "2");
    assert_usage(&r, "does not apply");
    PARSE(&r, "webhook-secret", "create", "--org", "1", "--name", "x");
    assert_usage(&r, "does not apply");
    PARSE(&r, "webhook-secret");
    assert_usage(&r, "'webhook-secret' needs a subcommand");
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        PARSE(&r, "webhook-secret", "revoke", bad[i]);
        assert_usage(&r, "SECRET_ID must be a positive integer");
    }
}

/* An option that a subcommand does not take is bad usage. */
static void test_option_not_applicable(void **state)
{
    struct run r;

    (void)state;
    PARSE(&r, "org", "list", "--org", "1");
    assert_usage(&r, "--org");
    PARSE(&r, "org", "list", "--name", "x");
    assert_usage(&r, "--name");
    PARSE(&r, "serve", "--name", "x");
    assert_usage(&r, "--name");
    PARSE(&r, "serve", "--org", "1");
    assert_usage(&r, "--org");
    PARSE(&r, "key", "list", "--org", "1", "--provider", "p");
    assert_usage(&r, "--provider");
    PARSE(&r, "key", "list", "--org", "1", "--user", "3");
    assert_usage(&r, "--user");
    PARSE(&r, "--threads", "4", "org", "list");
    assert_usage(&r, "--threads");
    PARSE(&r, "number", "remove", "+918000000001", "--org", "1");
    assert_usage(&r, "--org");
    PARSE(&r, "key", "revoke", "1", "--listen", "127.0.0.1:1");
    assert_usage(&r, "--listen");
}

/* --help / -h anywhere: exit 0, whatever else is missing or wrong after the
 * subcommand was found. */
static void test_help(void **state)
{
    struct run r;

    (void)state;
    assert_int_equal(PARSE(&r, "--help"), CLI_OK);
    assert_true(r.cli.help);
    assert_int_equal(PARSE(&r, "-h"), CLI_OK);
    assert_true(r.cli.help);
    assert_int_equal(PARSE(&r, "serve", "--help"), CLI_OK);
    assert_true(r.cli.help);
    assert_int_equal(r.cli.cmd, CMD_SERVE);
    assert_int_equal(PARSE(&r, "-h", "serve"), CLI_OK);
    assert_int_equal(r.cli.cmd, CMD_SERVE);
    assert_true(r.cli.help);
    assert_int_equal(PARSE(&r, "key", "revoke", "-h"), CLI_OK); /* KEY_ID missing */
    assert_int_equal(r.cli.cmd, CMD_KEY_REVOKE);
    assert_true(r.cli.help);
    assert_int_equal(PARSE(&r, "number", "add", "--help"), CLI_OK); /* --org missing */
    assert_int_equal(r.cli.cmd, CMD_NUMBER_ADD);
    assert_int_equal(PARSE(&r, "key", "--help"), CLI_OK); /* the group's usage */
    assert_int_equal(r.cli.cmd, CMD_NONE);
    assert_string_equal(r.cli.group, "key");
    assert_true(r.cli.help);
    assert_int_equal(PARSE(&r, "org", "list", "--org", "abc", "--help"), CLI_OK);
    assert_true(r.cli.help);
    assert_int_equal(PARSE(&r, "--version"), CLI_OK);
    assert_true(r.cli.version);
}

static void test_default_country_code_values(void **state)
{
    static const char *const bad[] = {"999", "abc", "0", "+91", "9100", "28", " 91"};
    static const char *const good[] = {"1", "44", "91", "880"};
    struct run r;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        PARSE(&r, "serve", "--default-country-code", bad[i]);
        if (r.rc != CLI_USAGE)
            print_error("cc '%s'\n", bad[i]);
        assert_usage(&r, "--default-country-code");
    }
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(PARSE(&r, "org", "list", "--default-country-code", good[i]), CLI_OK);
        assert_string_equal(r.cli.default_cc, good[i]);
    }
}

static void test_default_country_code_env(void **state)
{
    static const char *const env[] = {"SFVOPI_DEFAULT_CC", "999", NULL};
    struct run r;

    (void)state;
    fake_env = env;
    PARSE(&r, "org", "list");
    assert_usage(&r, "999");
    /* A valid option overrides the bad variable. */
    assert_int_equal(PARSE(&r, "org", "list", "--default-country-code", "91"), CLI_OK);
    assert_string_equal(r.cli.default_cc, "91");
}

/* Every serve option has an environment variable (Beyond CLI.md), and the
 * option beats it. */
static void test_serve_env(void **state)
{
    static const char *const env[] = {"SFVOPI_THREADS", "3", "SFVOPI_IDLE_TIMEOUT", "7", NULL};
    static const char *const bad[] = {"SFVOPI_THREADS", "abc", NULL};
    struct run r;

    (void)state;
    fake_env = env;
    assert_int_equal(PARSE(&r, "serve"), CLI_OK);
    assert_int_equal(r.cli.threads, 3);
    assert_int_equal(r.cli.idle_timeout_s, 7);
    assert_int_equal(PARSE(&r, "serve", "--threads", "5"), CLI_OK);
    assert_int_equal(r.cli.threads, 5);
    assert_int_equal(r.cli.idle_timeout_s, 7);
    /* Serve's variables do not concern other subcommands. */
    fake_env = bad;
    assert_int_equal(PARSE(&r, "org", "list"), CLI_OK);
    /* A bad variable that is used is bad usage, naming the variable. */
    PARSE(&r, "serve");
    assert_usage(&r, "SFVOPI_THREADS");
}

/* The carrier edge's options (SIP.md sections 1 and 3). */
static void test_sip_edge_options(void **state)
{
    static const char *const env[] = {"SFVOPI_SIP_HEADER", "X-A: 1\r\nX-B: two words\n",
                                      "SFVOPI_RTP_LATCH", "yes", NULL};
    static const char *const pw[] = {"SFVOPI_SIP_PASSWORD", "x", NULL};
    struct run r;

    (void)state;
    /* Defaults. */
    assert_int_equal(PARSE(&r, "serve"), CLI_OK);
    assert_int_equal(r.cli.sip_invite_rate, 200);
    assert_int_equal(r.cli.sip_register_expires, 600);
    assert_null(r.cli.sip_allow);
    assert_false(r.cli.rtp_latch || r.cli.sip_register || r.cli.sip_caller_id_pai);
    assert_int_equal(r.cli.nsip_headers, 0);
    /* Values. */
    assert_int_equal(PARSE(&r, "serve", "--sip-allow", "192.0.2.0/24, any", "--sip-invite-rate",
                           "7", "--rtp-latch", "--sip-user", "acct+1", "--sip-register",
                           "--sip-registrar", "sip:reg.example.net", "--sip-register-expires", "90",
                           "--sip-caller-id", "pai", "--sip-from-domain", "[2001:db8::1]",
                           "--sip-header", "X-Telnyx-Token: abc", "--sip-header", "X-Two: 2",
                           "--dns-server", "127.0.0.1:5353,[::1]:53,192.0.2.53"),
                     CLI_OK);
    assert_string_equal(r.cli.sip_allow, "192.0.2.0/24, any");
    assert_int_equal(r.cli.sip_invite_rate, 7);
    assert_true(r.cli.rtp_latch && r.cli.sip_register && r.cli.sip_caller_id_pai);
    assert_string_equal(r.cli.sip_user, "acct+1");
    assert_int_equal(r.cli.sip_register_expires, 90);
    assert_int_equal(r.cli.nsip_headers, 2);
    assert_string_equal(r.cli.sip_headers[0], "X-Telnyx-Token: abc");
    assert_string_equal(r.cli.sip_headers[1], "X-Two: 2");
    /* The variable: one header a line (CR LF or LF), flags as yes/no. */
    fake_env = env;
    assert_int_equal(PARSE(&r, "serve"), CLI_OK);
    assert_int_equal(r.cli.nsip_headers, 2);
    assert_string_equal(r.cli.sip_headers[0], "X-A: 1");
    assert_string_equal(r.cli.sip_headers[1], "X-B: two words");
    assert_true(r.cli.rtp_latch);
    /* The option beats the variable, all of it. */
    assert_int_equal(PARSE(&r, "serve", "--sip-header", "X-C: 3"), CLI_OK);
    assert_int_equal(r.cli.nsip_headers, 1);
    assert_string_equal(r.cli.sip_headers[0], "X-C: 3");
    fake_env = no_env;
    /* Bad values and combinations. */
    PARSE(&r, "serve", "--sip-allow", "10.0.0.1/8");
    assert_usage(&r, "host bits");
    PARSE(&r, "serve", "--sip-header", "Via: SIP/2.0/UDP x");
    assert_usage(&r, "writes itself");
    PARSE(&r, "serve", "--sip-header", "X-Bad: a\x01b");
    assert_usage(&r, "Name: value");
    PARSE(&r, "serve", "--dns-server", "127.0.0.1:0");
    assert_usage(&r, "--dns-server");
    PARSE(&r, "serve", "--dns-server", "1.1.1.1,");
    assert_usage(&r, "--dns-server");
    PARSE(&r, "serve", "--sip-user", "a@b");
    assert_usage(&r, "--sip-user");
    PARSE(&r, "serve", "--sip-register", "--sip-user", "a");
    assert_usage(&r, "--sip-trunk or --sip-registrar");
    PARSE(&r, "serve", "--sip-caller-id", "pai");
    assert_usage(&r, "needs --sip-user");
    fake_env = pw;
    PARSE(&r, "serve", "--sip-password-file", "/run/secret");
    assert_usage(&r, "not both");
    fake_env = no_env;
}

/* --rtp-timeout (SIP.md section 4): seconds, 60 by default, 0 turns it off. */
static void test_rtp_timeout_option(void **state)
{
    static const char *const env[] = {"SFVOPI_RTP_TIMEOUT", "5", NULL};
    struct run r;

    (void)state;
    assert_int_equal(PARSE(&r, "serve"), CLI_OK);
    assert_int_equal(r.cli.rtp_timeout, 60);
    assert_int_equal(PARSE(&r, "serve", "--rtp-timeout", "0"), CLI_OK);
    assert_int_equal(r.cli.rtp_timeout, 0);
    assert_int_equal(PARSE(&r, "serve", "--rtp-timeout", "2"), CLI_OK);
    assert_int_equal(r.cli.rtp_timeout, 2);
    fake_env = env;
    assert_int_equal(PARSE(&r, "serve"), CLI_OK);
    assert_int_equal(r.cli.rtp_timeout, 5);
    assert_int_equal(PARSE(&r, "serve", "--rtp-timeout", "7"), CLI_OK);
    assert_int_equal(r.cli.rtp_timeout, 7);
    fake_env = no_env;
    PARSE(&r, "serve", "--rtp-timeout", "-1");
    assert_usage(&r, "--rtp-timeout must be a whole number of seconds");
    PARSE(&r, "serve", "--rtp-timeout", "1.5");
    assert_usage(&r, "--rtp-timeout");
    PARSE(&r, "serve", "--rtp-timeout", "86401");
    assert_usage(&r, "--rtp-timeout");
    PARSE(&r, "serve", "--rtp-timeout", "");
    assert_usage(&r, "--rtp-timeout");
}

/* HTTPS and the trusted proxies: each certificate needs its key and the
 * other way round, the admin pair needs --admin-listen, and --trusted-proxy
 * is an address list without 'any'. */
static void test_tls_options(void **state)
{
    static const char *const env[] = {"SFVOPI_TLS_CERT",
                                      "/e/cert.pem",
                                      "SFVOPI_TLS_KEY",
                                      "/e/key.pem",
                                      "SFVOPI_ADMIN_LISTEN",
                                      "127.0.0.1:9090",
                                      "SFVOPI_ADMIN_TLS_CERT",
                                      "/e/acert.pem",
                                      "SFVOPI_ADMIN_TLS_KEY",
                                      "/e/akey.pem",
                                      "SFVOPI_TRUSTED_PROXY",
                                      "10.0.0.0/8,::1",
                                      NULL};
    static const char *const half_env[] = {"SFVOPI_TLS_KEY", "/e/key.pem", NULL};
    struct run r;

    (void)state;
    assert_int_equal(PARSE(&r, "serve"), CLI_OK);
    assert_null(r.cli.tls_cert);
    assert_null(r.cli.tls_key);
    assert_null(r.cli.admin_tls_cert);
    assert_null(r.cli.trusted_proxy);
    assert_int_equal(PARSE(&r, "serve", "--tls-cert", "c.pem", "--tls-key", "k.pem",
                           "--admin-listen", "127.0.0.1:0", "--admin-tls-cert", "ac.pem",
                           "--admin-tls-key", "ak.pem", "--trusted-proxy",
                           "127.0.0.1, 192.0.2.0/24"),
                     CLI_OK);
    assert_string_equal(r.cli.tls_cert, "c.pem");
    assert_string_equal(r.cli.tls_key, "k.pem");
    assert_string_equal(r.cli.admin_tls_cert, "ac.pem");
    assert_string_equal(r.cli.admin_tls_key, "ak.pem");
    assert_string_equal(r.cli.trusted_proxy, "127.0.0.1, 192.0.2.0/24");
    fake_env = env;
    assert_int_equal(PARSE(&r, "serve", "--tls-cert", "opt.pem"), CLI_OK);
    assert_string_equal(r.cli.tls_cert, "opt.pem");
    assert_string_equal(r.cli.tls_key, "/e/key.pem");
    assert_string_equal(r.cli.admin_tls_cert, "/e/acert.pem");
    assert_string_equal(r.cli.admin_tls_key, "/e/akey.pem");
    assert_string_equal(r.cli.trusted_proxy, "10.0.0.0/8,::1");
    /* One of a pair alone, from options or from the environment. */
    fake_env = no_env;
    PARSE(&r, "serve", "--tls-cert", "c.pem");
    assert_usage(&r, "--tls-cert needs --tls-key");
    PARSE(&r, "serve", "--tls-key", "k.pem");
    assert_usage(&r, "--tls-key needs --tls-cert");
    fake_env = half_env;
    PARSE(&r, "serve");
    assert_usage(&r, "--tls-key needs --tls-cert");
    fake_env = no_env;
    PARSE(&r, "serve", "--admin-listen", "127.0.0.1:0", "--admin-tls-cert", "c.pem");
    assert_usage(&r, "--admin-tls-cert needs --admin-tls-key");
    PARSE(&r, "serve", "--admin-listen", "127.0.0.1:0", "--admin-tls-key", "k.pem");
    assert_usage(&r, "--admin-tls-key needs --admin-tls-cert");
    PARSE(&r, "serve", "--admin-tls-cert", "c.pem", "--admin-tls-key", "k.pem");
    assert_usage(&r, "need --admin-listen");
    PARSE(&r, "serve", "--tls-cert", "", "--tls-key", "k.pem");
    assert_usage(&r, "--tls-cert must be a file name");
    PARSE(&r, "serve", "--tls-cert", "c.pem", "--tls-key", "k\x01.pem");
    assert_usage(&r, "--tls-key must be a file name");
    PARSE(&r, "org", "list", "--tls-cert", "c.pem");
    assert_usage(&r, "does not apply");
    /* The trusted proxies. */
    PARSE(&r, "serve", "--trusted-proxy", "any");
    assert_usage(&r, "does not take 'any'");
    PARSE(&r, "serve", "--trusted-proxy", "127.0.0.1,proxy.example");
    assert_usage(&r, "proxy.example");
    PARSE(&r, "serve", "--trusted-proxy", "10.0.0.1/8");
    assert_usage(&r, "host bits");
    PARSE(&r, "serve", "--trusted-proxy", "127.0.0.1,");
    assert_usage(&r, "empty item");
}

/* "An option beats its environment variable" (CLI.md): a malformed
 * variable that an option overrides is never used, so it is no error. */
static void test_option_beats_bad_env(void **state)
{
    static const char *const env[] = {
        "SFVOPI_LOG_LEVEL", "verbose", "SFVOPI_THREADS", "many", "SFVOPI_DEFAULT_CC", "999", NULL};
    struct run r;

    (void)state;
    fake_env = env;
    PARSE(&r, "serve", "--log-level", "debug", "--threads", "2", "--default-country-code", "44");
    if (r.rc != CLI_OK)
        print_error("rc=%d err='%s'\n", r.rc, r.err);
    assert_int_equal(r.rc, CLI_OK);
    assert_string_equal(r.cli.log_level, "debug");
    assert_int_equal(r.cli.threads, 2);
    assert_string_equal(r.cli.default_cc, "44");
}

static void test_serve_values(void **state)
{
    struct run r;

    (void)state;
    assert_int_equal(
        PARSE(&r, "serve", "--threads", "1", "--max-connections", "10", "--idle-timeout", "5"),
        CLI_OK);
    assert_int_equal(r.cli.threads, 1);
    assert_int_equal(r.cli.max_connections, 10);
    assert_int_equal(r.cli.idle_timeout_s, 5);
    PARSE(&r, "serve", "--threads", "0");
    assert_usage(&r, "--threads");
    PARSE(&r, "serve", "--threads", "1025");
    assert_usage(&r, "--threads");
    PARSE(&r, "serve", "--threads", "four");
    assert_usage(&r, "--threads");
    PARSE(&r, "serve", "--idle-timeout", "0");
    assert_usage(&r, "--idle-timeout");
    PARSE(&r, "serve", "--max-connections", "-1");
    assert_usage(&r, "--max-connections");
}

static void test_names_and_providers(void **state)
{
    char long_name[300];
    struct run r;

    (void)state;
    PARSE(&r, "org", "create", "--name", "");
    assert_usage(&r, "--name");
    PARSE(&r, "org", "create", "--name", "tab\there");
    assert_usage(&r, "--name");
    memset(long_name, 'n', 201);
    long_name[201] = '\0';
    PARSE(&r, "org", "create", "--name", long_name);
    assert_usage(&r, "--name");
    long_name[200] = '\0';
    assert_int_equal(PARSE(&r, "org", "create", "--name", long_name), CLI_OK);
    PARSE(&r, "number", "add", "--org", "1", "--provider", "a\nb", "8000000001");
    assert_usage(&r, "--provider");
    PARSE(&r, "key", "create", "--org", "1", "--name", "");
    assert_usage(&r, "--name");
    assert_int_equal(PARSE(&r, "org", "create", "--name", "Caf\xc3\xa9 & Co"), CLI_OK);
    /* Text that is not UTF-8 never reaches the database, whichever backend. */
    PARSE(&r, "org", "create", "--name", "Caf\xe9");
    assert_usage(&r, "--name must be valid UTF-8");
    PARSE(&r, "org", "create", "--name", "\xc0\x80");
    assert_usage(&r, "--name must be valid UTF-8");
    PARSE(&r, "key", "create", "--org", "1", "--name", "k\xed\xa0\x80");
    assert_usage(&r, "--name must be valid UTF-8");
    assert_int_equal(PARSE(&r, "key", "create", "--org", "1", "--name", "\xf0\x9f\x94\x91"),
                     CLI_OK);
    PARSE(&r, "number", "add", "--org", "1", "--provider", "p\xc3(", "8000000001");
    assert_usage(&r, "--provider must be valid UTF-8");
    PARSE(&r, "number", "add", "--org", "1", "--provider", "\xf4\x90\x80\x80", "8000000001");
    assert_usage(&r, "--provider must be valid UTF-8");
    assert_int_equal(PARSE(&r, "number", "add", "--org", "1", "--provider",
                           "T\xc3\xa9l\xc3\xa9"
                           "com",
                           "8000000001"),
                     CLI_OK);
}

/* "number add" takes many numbers, in order, up to CLI_POS_MAX. */
static void test_number_add_many(void **state)
{
    static char nums[CLI_POS_MAX + 1][16];
    const char *words[CLI_POS_MAX + 16];
    struct run r;
    int i, n = 0;

    (void)state;
    words[n++] = "number";
    words[n++] = "add";
    words[n++] = "--org";
    words[n++] = "5";
    words[n++] = "--provider";
    words[n++] = "demo";
    for (i = 0; i < CLI_POS_MAX; i++) {
        snprintf(nums[i], sizeof(nums[i]), "+9180%08d", i);
        words[n++] = nums[i];
    }
    words[n] = NULL;
    assert_int_equal(parse_words(&r, words), CLI_OK);
    assert_int_equal(r.cli.nargs, CLI_POS_MAX);
    for (i = 0; i < CLI_POS_MAX; i++)
        assert_string_equal(r.cli.args[i], nums[i]);

    /* One more is refused, not written past the array. */
    snprintf(nums[CLI_POS_MAX], sizeof(nums[0]), "+9181%08d", 0);
    words[n++] = nums[CLI_POS_MAX];
    words[n] = NULL;
    parse_words(&r, words);
    assert_usage(&r, NULL);
}

/* After "--" everything is an argument, even what looks like an option. */
static void test_double_dash(void **state)
{
    struct run r;

    (void)state;
    assert_int_equal(
        PARSE(&r, "number", "add", "--org", "1", "--provider", "p", "--", "--db", "-5"), CLI_OK);
    assert_int_equal(r.cli.nargs, 2);
    assert_string_equal(r.cli.args[0], "--db");
    assert_string_equal(r.cli.args[1], "-5");
    assert_string_equal(r.cli.db, "sqlite:sfvopi.db");
}

static void test_sip_transport_options(void **state)
{
    static const char *const env[] = {"SFVOPI_SIP_LISTEN",
                                      "udp:10.0.0.5:5060,tls:10.0.0.5:5061",
                                      "SFVOPI_SIP_TLS_CERT",
                                      "/e/c.pem",
                                      "SFVOPI_SIP_TLS_KEY",
                                      "/e/k.pem",
                                      "SFVOPI_SRTP",
                                      "offer",
                                      "SFVOPI_SIP_TRUNK",
                                      "sips:carrier.example.net",
                                      "SFVOPI_SIP_ADVERTISE",
                                      "203.0.113.7",
                                      NULL};
    struct run r;

    (void)state;
    assert_int_equal(PARSE(&r, "serve", "--sip-listen", "127.0.0.1:5060"), CLI_OK);
    assert_int_equal(r.cli.srtp, CLI_SRTP_OFF);
    assert_false(r.cli.sip_listen_tls);
    assert_null(r.cli.sip_advertise);
    fake_env = env;
    assert_int_equal(PARSE(&r, "serve"), CLI_OK);
    assert_true(r.cli.sip_listen_tls);
    assert_true(r.cli.sip_trunk_tls);
    assert_int_equal(r.cli.srtp, CLI_SRTP_OFFER);
    assert_string_equal(r.cli.sip_tls_cert, "/e/c.pem");
    assert_string_equal(r.cli.sip_advertise, "203.0.113.7");
    assert_int_equal(PARSE(&r, "serve", "--srtp", "require", "--sip-trunk",
                           "sip:carrier.example.net:5061;transport=TLS", "--sip-tls-ca", "ca.pem"),
                     CLI_OK);
    assert_int_equal(r.cli.srtp, CLI_SRTP_REQUIRE);
    assert_true(r.cli.sip_trunk_tls);
    assert_string_equal(r.cli.sip_tls_ca, "ca.pem");
    /* SDES keys never travel in clear: a plain trunk under --srtp is refused. */
    PARSE(&r, "serve", "--sip-trunk", "sip:carrier.example.net;transport=tcp");
    assert_usage(&r, "--srtp offer needs a TLS trunk");
    fake_env = no_env;
    PARSE(&r, "serve", "--sip-listen", "127.0.0.1:5060", "--srtp", "require");
    assert_usage(&r, "--srtp require needs a tls: listener");
    PARSE(&r, "serve", "--sip-listen", "127.0.0.1:5060", "--srtp", "maybe");
    assert_usage(&r, "--srtp must be off, offer or require");
    PARSE(&r, "serve", "--sip-listen", "tls:127.0.0.1:5061");
    assert_usage(&r, "a tls: listener needs --sip-tls-cert and --sip-tls-key");
    PARSE(&r, "serve", "--sip-listen", "tls:127.0.0.1:5061", "--sip-tls-cert", "c.pem");
    assert_usage(&r, "--sip-tls-cert and --sip-tls-key go together");
    PARSE(&r, "serve", "--sip-listen", "127.0.0.1:5060", "--sip-tls-cert", "c.pem", "--sip-tls-key",
          "k.pem");
    assert_usage(&r, "--sip-tls-cert needs a tls: listener");
    PARSE(&r, "serve", "--sip-listen", "127.0.0.1:5060", "--sip-trunk", "sips:carrier.test");
    assert_usage(&r, "a TLS trunk, registrar or outbound proxy needs a tls: listener");
    PARSE(&r, "serve", "--sip-listen", "127.0.0.1:5060", "--sip-outbound-proxy",
          "sip:proxy.test;transport=tls");
    assert_usage(&r, "needs a tls: listener");
    PARSE(&r, "serve", "--sip-listen", "127.0.0.1:5060", "--sip-trunk",
          "sip:carrier.test;transport=sctp");
    assert_usage(&r, "--sip-trunk must be a URI like");
    PARSE(&r, "serve", "--sip-trunk", "sip:carrier.test", "--sip-advertise", "203.0.113.7");
    assert_usage(&r, "the SIP transport options need --sip-listen");
    PARSE(&r, "serve", "--sip-listen", "127.0.0.1:5060", "--sip-advertise", "nat.example");
    assert_usage(&r, "--sip-advertise must be an IP address");
    PARSE(&r, "serve", "--sip-listen", "udp:127.0.0.1:5060,,tcp:127.0.0.1:5060");
    assert_usage(&r, "empty item");
}

#define T(fn) cmocka_unit_test_setup(fn, reset_env)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_drain_and_metrics_options),
        T(test_every_subcommand),
        T(test_global_options_anywhere),
        T(test_equals_form),
        T(test_env_and_precedence),
        T(test_empty_env),
        T(test_last_option_wins),
        T(test_unknown_option),
        T(test_unknown_subcommand),
        T(test_group_only),
        T(test_missing_values),
        T(test_required_options),
        T(test_missing_and_extra_arguments),
        T(test_org_values),
        T(test_key_revoke_id),
        T(test_webhook_secret),
        T(test_option_not_applicable),
        T(test_help),
        T(test_default_country_code_values),
        T(test_default_country_code_env),
        T(test_serve_env),
        T(test_option_beats_bad_env),
        T(test_sip_edge_options),
        T(test_rtp_timeout_option),
        T(test_tls_options),
        T(test_sip_transport_options),
        T(test_serve_values),
        T(test_names_and_providers),
        T(test_number_add_many),
        T(test_double_dash),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
