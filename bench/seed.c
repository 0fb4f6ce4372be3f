/* seed: fills a database for the benchmarks through the store interface,
 * in bulk transactions (not through HTTP).
 *
 *   seed --db URL --orgs N [--apps-per-org 20] [--links-per-app 10] [--free 100]
 *
 * Every organisation gets apps-per-org apps with links-per-app linked
 * numbers each; organisation 1 (the one the benchmarks use) also gets
 * `free` unlinked numbers and an API key. Prints shell assignments for the
 * benchmark script: KEY, ORG, APP (an app of org 1 with its links),
 * FREE_FIRST (the first free number) and the counts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/apikey.h"
#include "core/clock.h"
#include "core/parse.h"
#include "core/rand.h"
#include "store/store.h"

#define BATCH 20000

static int usage(void)
{
    fprintf(stderr, "usage: seed --db URL --orgs N [--apps-per-org N] [--links-per-app N] "
                    "[--free N]\n");
    return 2;
}

static int64_t arg_num(const char *v, int64_t max)
{
    int64_t n;

    if (!v || parse_i64(v, 0, max, &n) != ERR_OK) {
        fprintf(stderr, "seed: bad number '%s'\n", v ? v : "");
        exit(2);
    }
    return n;
}

/* Ends the current batch and opens the next one every BATCH operations. */
static void tick(struct store_conn *c, long *ops)
{
    if (++*ops % BATCH)
        return;
    if (c->ops->batch_end(c, true) != ERR_OK || c->ops->batch_begin(c) != ERR_OK) {
        fprintf(stderr, "seed: batch failed\n");
        exit(1);
    }
}

static void check(enum err e, const char *what)
{
    if (e != ERR_OK) {
        fprintf(stderr, "seed: %s failed: %s\n", what, err_str(e));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    const char *db = NULL;
    int64_t orgs = 0, apps_per = 20, links_per = 10, nfree = 100, o, a, l, id, org;
    struct store *s;
    struct store_conn *c;
    char key[APIKEY_LEN + 1], app_id[APP_ID_LEN + 1] = "", first_app[APP_ID_LEN + 1] = "";
    char e164[E164_MAX], free_first[E164_MAX] = "";
    int64_t serial = 0, t0 = clock_mono_ms();
    long ops = 0;
    int i;

    for (i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(argv[i], "--db") == 0 && v)
            db = v;
        else if (strcmp(argv[i], "--orgs") == 0)
            orgs = arg_num(v, 1000000);
        else if (strcmp(argv[i], "--apps-per-org") == 0)
            apps_per = arg_num(v, 100000);
        else if (strcmp(argv[i], "--links-per-app") == 0)
            links_per = arg_num(v, 1000);
        else if (strcmp(argv[i], "--free") == 0)
            nfree = arg_num(v, 1000000);
        else
            return usage();
        i++;
    }
    if (!db || orgs < 1 || apps_per < 1)
        return usage();
    if (rand_setup() != ERR_OK)
        return 1;
    check(store_open(db, &s), "open");
    check(store_conn_open(s, &c), "connect");
    check(c->ops->batch_begin(c), "batch");

    for (o = 1; o <= orgs; o++) {
        char name[32];

        snprintf(name, sizeof(name), "bench-%lld", (long long)o);
        check(c->ops->org_create(c, name, clock_now_ms(), &org), "org");
        if (o == 1) {
            unsigned char hash[KEY_HASH_LEN];
            struct store_key k = {0};

            apikey_generate(key);
            apikey_hash(key, APIKEY_LEN, hash);
            apikey_prefix(key, k.prefix);
            k.org_id = org;
            k.created_at = clock_now_ms();
            check(c->ops->key_create(c, &k, hash, &id), "key");
        }
        for (a = 0; a < apps_per; a++) {
            struct store_app app = {0};

            memcpy(app.app_id, APP_ID_PREFIX, strlen(APP_ID_PREFIX));
            rand_string(app.app_id + strlen(APP_ID_PREFIX), APP_ID_LEN - strlen(APP_ID_PREFIX),
                        RAND_ALNUM_LOWER);
            app.org_id = org;
            snprintf(app.name, sizeof(app.name), "Bench app %lld", (long long)a);
            snprintf(app.answer_url, sizeof(app.answer_url),
                     "https://agent.example.com/answer/%lld", (long long)a);
            memcpy(app.answer_method, "POST", 5);
            snprintf(app.hangup_url, sizeof(app.hangup_url), "https://agent.example.com/hangup");
            memcpy(app.hangup_method, "POST", 5);
            memcpy(app.fallback_answer_method, "POST", 5);
            memcpy(app.status, "ACTIVE", 7);
            app.created_at = clock_now_ms() - 1000 * (apps_per - a);
            check(c->ops->app_create(c, &app), "app");
            tick(c, &ops);
            memcpy(app_id, app.app_id, sizeof(app_id));
            if (o == 1 && a == 0)
                memcpy(first_app, app.app_id, sizeof(first_app));
            for (l = 0; l < links_per; l++) {
                struct store_link link;

                /* +91 7 then 9 digits: a valid Indian mobile range. */
                snprintf(e164, sizeof(e164), "+917%09lld", (long long)(serial++ % 1000000000));
                check(c->ops->number_add(c, org, e164, "bench", clock_now_ms(), &id), "number");
                check(c->ops->link_create(c, org, app_id, e164, clock_now_ms() + l, &link),
                      "link");
                tick(c, &ops);
                tick(c, &ops);
            }
        }
        if (o == 1) {
            for (l = 0; l < nfree; l++) {
                snprintf(e164, sizeof(e164), "+917%09lld", (long long)(serial++ % 1000000000));
                if (l == 0)
                    memcpy(free_first, e164, sizeof(free_first));
                check(c->ops->number_add(c, org, e164, "bench", clock_now_ms(), &id), "number");
                tick(c, &ops);
            }
        }
    }
    check(c->ops->batch_end(c, true), "commit");
    store_conn_close(c);
    store_free(s);
    printf("KEY=%s\nORG=1\nAPP=%s\nFREE_FIRST=%s\nNUMBERS=%lld\nAPPS=%lld\nSEED_MS=%lld\n", key,
           first_app, free_first, (long long)serial, (long long)(orgs * apps_per),
           (long long)(clock_mono_ms() - t0));
    return 0;
}
