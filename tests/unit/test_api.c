/* test_api: api_handle end to end without a socket. Each test gets a fresh
 * in-memory SQLite database with two organisations, their keys and some
 * inventory, then sends struct http_request records and asserts the status
 * and the exact response body of API.md sections 1-3. Expected JSON is
 * written out by hand here (never with the server's own writer); only the
 * random app_id and the clock-derived timestamps are read back from the
 * store. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/validate.h"
#include "auth/apikey.h"
#include "call/engine.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/rand.h"
#include "http/metrics.h"

#define N1 "+918000000001"
#define N2 "+918000000002"
#define N3 "+918000000003"
#define N9 "+918000000009" /* org 2's */
#define NO_APP "sfv_app_000000000000"

#define MSG_NOT_FOUND "{\"message\":\"Not found\"}"
#define MSG_METHOD "{\"message\":\"Method not allowed\"}"
#define MSG_UNAUTH "{\"message\":\"UnAuthorized, Please Provide Valid API Key\"}"
#define MSG_TOO_LARGE "{\"message\":\"Request body too large\"}"
#define MSG_INVALID "{\"message\":\"Invalid request body\"}"
#define MSG_APP_404 "{\"message\":\"SFVoPI app not found\"}"
#define MSG_LINK_APP_404 "{\"message\":\"App not found\"}"
#define MSG_NUM_UNKNOWN "{\"message\":\"VoIP number not found or does not belong to this org\"}"
#define MSG_NUM_TAKEN "{\"message\":\"VoIP number is already linked to another SFVoPI app\"}"
#define MSG_NOT_LINKED "{\"message\":\"Number not linked to this app\"}"
#define DELETED "{\"data\":{\"deleted\":true},\"message\":\"success\"}"

#define APP_BODY "{\"name\":\"My Voice App\",\"answer_url\":\"https://example.com/webhook/answer\"}"

#define EXPECT_MAX 16384

struct fx {
    struct store *s;
    struct store_conn *c;
    const struct store_ops *ops;
    struct api_worker *w;
    int64_t org1, org2;
    int64_t n1, n2, n3, n9;    /* inventory ids */
    char key1[APIKEY_LEN + 1]; /* org 1, user 67890 */
    char key2[APIKEY_LEN + 1]; /* org 2, no user */
    char revoked[APIKEY_LEN + 1];
    struct http_response resp;
    bool have_resp;
    char expect[EXPECT_MAX];
};

/* ---- fixture ---- */

static void add_key(struct fx *f, int64_t org, int64_t user, char *out, bool revoke)
{
    unsigned char hash[KEY_HASH_LEN];
    struct store_key k;
    int64_t id = 0;

    apikey_generate(out);
    apikey_hash(out, strlen(out), hash);
    memset(&k, 0, sizeof(k));
    k.org_id = org;
    k.user_id = user;
    apikey_prefix(out, k.prefix);
    k.created_at = clock_now_ms();
    assert_int_equal(f->ops->key_create(f->c, &k, hash, &id), ERR_OK);
    if (revoke)
        assert_int_equal(f->ops->key_revoke(f->c, id, clock_now_ms()), ERR_OK);
}

static int64_t add_number(struct fx *f, int64_t org, const char *e164, const char *provider)
{
    int64_t id = 0;

    assert_int_equal(f->ops->number_add(f->c, org, e164, provider, clock_now_ms(), &id), ERR_OK);
    return id;
}

static int setup(void **state)
{
    struct api_config cfg;
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    assert_int_equal(store_open("sqlite::memory:", &f->s), ERR_OK);
    assert_int_equal(store_conn_open(f->s, &f->c), ERR_OK);
    f->ops = f->c->ops;
    assert_int_equal(f->ops->org_create(f->c, "Org One", clock_now_ms(), &f->org1), ERR_OK);
    assert_int_equal(f->ops->org_create(f->c, "Org Two", clock_now_ms(), &f->org2), ERR_OK);
    add_key(f, f->org1, 67890, f->key1, false);
    add_key(f, f->org2, 0, f->key2, false);
    add_key(f, f->org1, 0, f->revoked, true);
    f->n1 = add_number(f, f->org1, N1, "exotel");
    f->n2 = add_number(f, f->org1, N2, "exotel");
    f->n3 = add_number(f, f->org1, N3, "plivo");
    f->n9 = add_number(f, f->org2, N9, "exotel");

    memset(&cfg, 0, sizeof(cfg));
    cfg.store = f->s;
    memcpy(cfg.default_cc, "91", 3);
    cfg.key_cache_ttl_ms = 0; /* every request sees the database as it is */
    f->w = api_worker_new(&cfg);
    assert_non_null(f->w);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    if (f->have_resp)
        http_response_release(&f->resp);
    api_worker_free(f->w);
    store_conn_close(f->c);
    store_free(f->s);
    free(f);
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    log_set_level(LOG_OFF);
    return rand_setup() == ERR_OK ? 0 : -1;
}

/* ---- requests ---- */

static void request_init(struct http_request *r, enum http_method m, const char *path,
                         const char *key, const char *body)
{
    memset(r, 0, sizeof(*r));
    r->method = m;
    r->path = path;
    r->path_len = strlen(path);
    r->api_key = key;
    r->api_key_len = key ? strlen(key) : 0;
    r->api_key_count = key ? 1 : 0;
    r->content_type = body ? "application/json" : NULL;
    r->content_length = -1;
    r->body = body;
    r->body_len = body ? strlen(body) : 0;
}

/* Runs a request; the answer stays in f->resp until the next one. */
static int send_req(struct fx *f, const struct http_request *r)
{
    if (f->have_resp)
        http_response_release(&f->resp);
    http_response_init(&f->resp);
    f->have_resp = true;
    api_handle(f->w, r, &f->resp);
    return f->resp.status;
}

static int req(struct fx *f, enum http_method m, const char *path, const char *key,
               const char *body)
{
    struct http_request r;

    request_init(&r, m, path, key, body);
    return send_req(f, &r);
}

static const char *body(const struct fx *f)
{
    return f->resp.body.data ? f->resp.body.data : "";
}

#define ASSERT_RESP(f, want_status, want_body)                                                     \
    do {                                                                                           \
        if ((f)->resp.status != (want_status) || strcmp(body(f), (want_body)) != 0)                \
            print_error("got %d %s\nwant %d %s\n", (f)->resp.status, body(f), (want_status),       \
                        (want_body));                                                              \
        assert_int_equal((f)->resp.status, (want_status));                                         \
        assert_string_equal(body(f), (want_body));                                                 \
    } while (0)

/* ---- expected JSON, written independently of the server's writer ---- */

static void fmt_str_or_null(char *out, size_t n, const char *s)
{
    if (s[0])
        snprintf(out, n, "\"%s\"", s);
    else
        snprintf(out, n, "null");
}

static void fmt_time_or_null(char *out, size_t n, int64_t ms)
{
    char ts[CLOCK_ISO_LEN + 1];

    if (!ms) {
        snprintf(out, n, "null");
        return;
    }
    clock_format_iso(ms, ts);
    snprintf(out, n, "\"%s\"", ts);
}

/* The app object of API.md section 2, every field, in order. */
static int fmt_app(char *out, size_t n, const struct store_app *a)
{
    char hangup[APP_URL_MAX + 3], fallback[APP_URL_MAX + 3], by[32], ca[32], ua[32];

    fmt_str_or_null(hangup, sizeof(hangup), a->hangup_url);
    fmt_str_or_null(fallback, sizeof(fallback), a->fallback_answer_url);
    if (a->created_by)
        snprintf(by, sizeof(by), "%lld", (long long)a->created_by);
    else
        snprintf(by, sizeof(by), "null");
    fmt_time_or_null(ca, sizeof(ca), a->created_at);
    fmt_time_or_null(ua, sizeof(ua), a->updated_at);
    return snprintf(out, n,
                    "{\"app_id\":\"%s\",\"org_id\":%lld,\"name\":\"%s\",\"answer_url\":\"%s\","
                    "\"answer_method\":\"%s\",\"hangup_url\":%s,\"hangup_method\":\"%s\","
                    "\"fallback_answer_url\":%s,\"fallback_answer_method\":\"%s\","
                    "\"status\":\"%s\",\"created_by\":%s,\"created_at\":%s,\"updated_at\":%s}",
                    a->app_id, (long long)a->org_id, a->name, a->answer_url, a->answer_method,
                    hangup, a->hangup_method, fallback, a->fallback_answer_method, a->status, by,
                    ca, ua);
}

static int fmt_link(char *out, size_t n, const char *app_id, const char *e164, int64_t org,
                    int64_t created_at, int64_t updated_at)
{
    char ca[32], ua[32];

    fmt_time_or_null(ca, sizeof(ca), created_at);
    fmt_time_or_null(ua, sizeof(ua), updated_at);
    return snprintf(out, n,
                    "{\"app_id\":\"%s\",\"voip_number\":\"%s\",\"org_id\":%lld,"
                    "\"status\":\"ACTIVE\",\"created_at\":%s,\"updated_at\":%s}",
                    app_id, e164, (long long)org, ca, ua);
}

/* An app with the documented defaults and the fields of APP_BODY. */
static void default_app(struct store_app *a, int64_t org, int64_t created_by)
{
    memset(a, 0, sizeof(*a));
    a->org_id = org;
    snprintf(a->name, sizeof(a->name), "My Voice App");
    snprintf(a->answer_url, sizeof(a->answer_url), "https://example.com/webhook/answer");
    snprintf(a->answer_method, sizeof(a->answer_method), "POST");
    snprintf(a->hangup_method, sizeof(a->hangup_method), "POST");
    snprintf(a->fallback_answer_method, sizeof(a->fallback_answer_method), "POST");
    snprintf(a->status, sizeof(a->status), "ACTIVE");
    a->created_by = created_by;
}

/* Takes the app_id out of a success body ("data":{"app_id":"..."}). */
static void app_id_of_response(const struct fx *f, char out[APP_ID_LEN + 1])
{
    const char *p = strstr(body(f), "\"app_id\":\"");

    assert_non_null(p);
    p += strlen("\"app_id\":\"");
    memcpy(out, p, APP_ID_LEN);
    out[APP_ID_LEN] = '\0';
    assert_true(validate_app_id(out));
}

/* Copies the server-chosen values (id, timestamps) from the store into want. */
static void fill_from_store(struct fx *f, struct store_app *want, const char *app_id)
{
    struct store_app got;

    assert_int_equal(f->ops->app_get(f->c, want->org_id, app_id, &got), ERR_OK);
    memcpy(want->app_id, app_id, APP_ID_LEN + 1);
    want->created_at = got.created_at;
    want->updated_at = got.updated_at;
}

/* Asserts a 200 whose data is exactly the app want. */
static void assert_app_response(struct fx *f, const struct store_app *want)
{
    char app[8192];

    assert_true(fmt_app(app, sizeof(app), want) < (int)sizeof(app));
    snprintf(f->expect, sizeof(f->expect), "{\"data\":%s,\"message\":\"success\"}", app);
    ASSERT_RESP(f, 200, f->expect);
}

/* Creates an app with APP_BODY through the API; returns its id. */
static void create_app(struct fx *f, const char *key, char app_id[APP_ID_LEN + 1])
{
    assert_int_equal(req(f, HTTP_POST, "/sfvopi/apps", key, APP_BODY), 200);
    app_id_of_response(f, app_id);
}

/* Writes tmpl with its first "%s" replaced by app_id and its second by num. */
static void path_of(char *out, size_t n, const char *tmpl, const char *app_id, const char *num)
{
    const char *args[2] = {app_id, num ? num : ""};
    size_t o = 0, k;
    int used = 0;

    for (; *tmpl; tmpl++) {
        if (tmpl[0] == '%' && tmpl[1] == 's' && used < 2) {
            for (k = 0; args[used][k]; k++) {
                assert_true(o + 1 < n);
                out[o++] = args[used][k];
            }
            used++;
            tmpl++;
            continue;
        }
        assert_true(o + 1 < n);
        out[o++] = *tmpl;
    }
    out[o] = '\0';
}

/* ---- order of checks ---- */

static void test_unknown_path_404(void **state)
{
    static const char *const paths[] = {"/",
                                        "/sfvopi",
                                        "/sfvopi/apps/",
                                        "/sfvopi/app",
                                        "/SFVOPI/apps",
                                        "/superfone/apps",
                                        "/sfvopi/apps/x/numbers/y/z",
                                        "/sfvopi/apps//numbers",
                                        "/sfvopi/calls/x/y/z/w"};
    struct fx *f = *state;
    size_t i;

    for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        /* With a good key, a bad key and none: routing comes first. */
        req(f, HTTP_GET, paths[i], f->key1, NULL);
        ASSERT_RESP(f, 404, MSG_NOT_FOUND);
        assert_null(f->resp.allow);
        req(f, HTTP_POST, paths[i], "bad", "{");
        ASSERT_RESP(f, 404, MSG_NOT_FOUND);
        req(f, HTTP_DELETE, paths[i], NULL, NULL);
        ASSERT_RESP(f, 404, MSG_NOT_FOUND);
    }
}

static void test_wrong_method_405(void **state)
{
    static const struct {
        enum http_method m;
        const char *path;
        const char *allow;
    } cases[] = {
        {HTTP_PATCH, "/sfvopi/apps", "GET, POST"},
        {HTTP_DELETE, "/sfvopi/apps", "GET, POST"},
        {HTTP_PUT, "/superfone/sfvopi/apps", "GET, POST"},
        {HTTP_POST, "/sfvopi/apps/" NO_APP, "GET, PUT, DELETE"},
        {HTTP_PATCH, "/sfvopi/apps/" NO_APP, "GET, PUT, DELETE"},
        {HTTP_PUT, "/sfvopi/apps/" NO_APP "/numbers", "GET, POST"},
        {HTTP_DELETE, "/sfvopi/apps/" NO_APP "/numbers", "GET, POST"},
        {HTTP_GET, "/sfvopi/apps/" NO_APP "/numbers/" N1, "DELETE"},
        {HTTP_POST, "/sfvopi/apps/" NO_APP "/numbers/" N1, "DELETE"},
        {HTTP_POST, "/sfvopi/available-numbers", "GET"},
        {HTTP_OTHER, "/sfvopi/available-numbers", "GET"},
        {HTTP_HEAD, "/sfvopi/apps", "GET, POST"},
        {HTTP_OPTIONS, "/sfvopi/apps", "GET, POST"},
        {HTTP_POST, "/healthz", "GET"},
    };
    struct fx *f = *state;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* 405 comes before the key check: no key at all. */
        req(f, cases[i].m, cases[i].path, NULL, NULL);
        ASSERT_RESP(f, 405, MSG_METHOD);
        assert_non_null(f->resp.allow);
        assert_string_equal(f->resp.allow, cases[i].allow);
    }
}

static void test_unauthorized_401(void **state)
{
    struct fx *f = *state;
    char nul_key[APIKEY_LEN + 1];
    char spaced[APIKEY_LEN + 2];
    struct http_request r;

    /* Missing, empty, malformed, unknown, revoked, another form. */
    req(f, HTTP_GET, "/sfvopi/apps", NULL, NULL);
    ASSERT_RESP(f, 401, MSG_UNAUTH);
    req(f, HTTP_GET, "/sfvopi/apps", "", NULL);
    ASSERT_RESP(f, 401, MSG_UNAUTH);
    req(f, HTTP_GET, "/sfvopi/apps", "not-a-key", NULL);
    ASSERT_RESP(f, 401, MSG_UNAUTH);
    req(f, HTTP_GET, "/sfvopi/apps", "sfvk_abcdefghijklmnopqrstuvwxyz0123456789ABC", NULL);
    ASSERT_RESP(f, 401, MSG_UNAUTH);
    req(f, HTTP_GET, "/sfvopi/apps", f->revoked, NULL);
    ASSERT_RESP(f, 401, MSG_UNAUTH);
    snprintf(spaced, sizeof(spaced), "%s ", f->key1);
    req(f, HTTP_GET, "/sfvopi/apps", spaced, NULL);
    ASSERT_RESP(f, 401, MSG_UNAUTH);
    memcpy(nul_key, f->key1, sizeof(nul_key));
    nul_key[0] = 'S'; /* "Sfvk_" */
    req(f, HTTP_GET, "/sfvopi/apps", nul_key, NULL);
    ASSERT_RESP(f, 401, MSG_UNAUTH);
    /* A NUL inside the header value. */
    memcpy(nul_key, f->key1, sizeof(nul_key));
    nul_key[20] = '\0';
    request_init(&r, HTTP_GET, "/sfvopi/apps", nul_key, NULL);
    r.api_key_len = APIKEY_LEN;
    send_req(f, &r);
    ASSERT_RESP(f, 401, MSG_UNAUTH);
    /* Two X-API-Key headers, even with a valid key. */
    request_init(&r, HTTP_GET, "/sfvopi/apps", f->key1, NULL);
    r.api_key_count = 2;
    send_req(f, &r);
    ASSERT_RESP(f, 401, MSG_UNAUTH);
    assert_true(f->resp.org_id == 0);
}

/* The key is checked on every documented route, before the body and
 * before the app in the path is looked up. */
static void test_unauthorized_every_route(void **state)
{
    static const struct {
        enum http_method m;
        const char *path;
        const char *body;
    } cases[] = {
        {HTTP_POST, "/sfvopi/apps", "not json"},
        {HTTP_GET, "/sfvopi/apps", NULL},
        {HTTP_GET, "/sfvopi/apps/" NO_APP, NULL},
        {HTTP_PUT, "/sfvopi/apps/" NO_APP, "{\"name\":null}"},
        {HTTP_DELETE, "/sfvopi/apps/" NO_APP, NULL},
        {HTTP_POST, "/sfvopi/apps/" NO_APP "/numbers", "{}"},
        {HTTP_GET, "/sfvopi/apps/" NO_APP "/numbers", NULL},
        {HTTP_DELETE, "/sfvopi/apps/" NO_APP "/numbers/" N1, NULL},
        {HTTP_GET, "/sfvopi/available-numbers", NULL},
        {HTTP_GET, "/superfone/sfvopi/available-numbers", NULL},
    };
    struct fx *f = *state;
    struct http_request r;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        request_init(&r, cases[i].m, cases[i].path, f->revoked, cases[i].body);
        r.content_length = 1 << 20; /* 401 also beats 413 */
        send_req(f, &r);
        ASSERT_RESP(f, 401, MSG_UNAUTH);
    }
}

static void test_too_large_413(void **state)
{
    struct fx *f = *state;
    struct http_request r;

    /* Declared length over 64 KiB. */
    request_init(&r, HTTP_POST, "/sfvopi/apps", f->key1, APP_BODY);
    r.content_length = HTTP_BODY_MAX + 1;
    send_req(f, &r);
    ASSERT_RESP(f, 413, MSG_TOO_LARGE);
    /* Exactly 64 KiB declared is fine. */
    request_init(&r, HTTP_POST, "/sfvopi/apps", f->key1, APP_BODY);
    r.content_length = HTTP_BODY_MAX;
    assert_int_equal(send_req(f, &r), 200);
    /* More arrived than allowed. */
    request_init(&r, HTTP_POST, "/sfvopi/apps", f->key1, APP_BODY);
    r.body_too_large = true;
    send_req(f, &r);
    ASSERT_RESP(f, 413, MSG_TOO_LARGE);
    /* 413 comes before 400: an invalid body that is too large. */
    request_init(&r, HTTP_PUT, "/sfvopi/apps/" NO_APP, f->key1, "not json");
    r.content_length = HTTP_BODY_MAX * 2;
    send_req(f, &r);
    ASSERT_RESP(f, 413, MSG_TOO_LARGE);
    /* Every route, even one without a body. */
    request_init(&r, HTTP_GET, "/sfvopi/available-numbers", f->key1, NULL);
    r.content_length = HTTP_BODY_MAX + 1;
    send_req(f, &r);
    ASSERT_RESP(f, 413, MSG_TOO_LARGE);
    request_init(&r, HTTP_DELETE, "/sfvopi/apps/" NO_APP "/numbers/" N1, f->key1, NULL);
    r.body_too_large = true;
    send_req(f, &r);
    ASSERT_RESP(f, 413, MSG_TOO_LARGE);
}

/* The body limit is on bytes: 65536 bytes of valid JSON pass, 65537 fail. */
static void test_body_size_boundary(void **state)
{
    struct fx *f = *state;
    static const char head[] = "{\"name\":\"n\",\"answer_url\":\"http://a.com\",\"pad\":\"";
    char *big = malloc(HTTP_BODY_MAX + 2);
    size_t pad;

    assert_non_null(big);
    pad = HTTP_BODY_MAX - (sizeof(head) - 1) - 2;
    memcpy(big, head, sizeof(head) - 1);
    memset(big + sizeof(head) - 1, 'x', pad);
    memcpy(big + sizeof(head) - 1 + pad, "\"}", 3);
    assert_int_equal(strlen(big), HTTP_BODY_MAX);
    assert_int_equal(req(f, HTTP_POST, "/sfvopi/apps", f->key1, big), 200);

    memcpy(big + sizeof(head) - 1 + pad, "x\"}", 4);
    assert_int_equal(strlen(big), HTTP_BODY_MAX + 1);
    req(f, HTTP_POST, "/sfvopi/apps", f->key1, big);
    ASSERT_RESP(f, 413, MSG_TOO_LARGE);
    free(big);
}

static void test_invalid_body_400(void **state)
{
    static const char *const bodies[] = {
        "",
        "not json",
        "[]",
        "\"str\"",
        "42",
        "null",
        "{",
        "{}garbage",
        "{\"a\":1,\"a\":2}",
        "{\"name\":\"\\u0000\"}",
        "{\"name\":\"\xff\"}",
    };
    struct fx *f = *state;
    size_t i;

    for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        req(f, HTTP_POST, "/sfvopi/apps", f->key1, bodies[i]);
        ASSERT_RESP(f, 400, MSG_INVALID);
        req(f, HTTP_PUT, "/sfvopi/apps/" NO_APP, f->key1, bodies[i]);
        ASSERT_RESP(f, 400, MSG_INVALID);
        req(f, HTTP_POST, "/sfvopi/apps/" NO_APP "/numbers", f->key1, bodies[i]);
        ASSERT_RESP(f, 400, MSG_INVALID);
    }
    /* No body at all on a route that takes one. */
    req(f, HTTP_POST, "/sfvopi/apps", f->key1, NULL);
    ASSERT_RESP(f, 400, MSG_INVALID);
}

static void test_content_type(void **state)
{
    static const char *const bad[] = {"text/plain", "application/x-www-form-urlencoded",
                                      "application/jsonx", "text/json", ""};
    static const char *const good[] = {"application/json; charset=utf-8", "APPLICATION/JSON",
                                       "application/json;charset=UTF-8"};
    struct fx *f = *state;
    struct http_request r;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        request_init(&r, HTTP_POST, "/sfvopi/apps", f->key1, APP_BODY);
        r.content_type = bad[i];
        send_req(f, &r);
        ASSERT_RESP(f, 400, MSG_INVALID);
    }
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        request_init(&r, HTTP_POST, "/sfvopi/apps", f->key1, APP_BODY);
        r.content_type = good[i];
        assert_int_equal(send_req(f, &r), 200);
    }
    /* Without a Content-Type the body is read as JSON. */
    request_init(&r, HTTP_POST, "/sfvopi/apps", f->key1, APP_BODY);
    r.content_type = NULL;
    assert_int_equal(send_req(f, &r), 200);
}

/* ---- apps ---- */

static void test_app_create(void **state)
{
    struct fx *f = *state;
    struct store_app want;
    char app_id[APP_ID_LEN + 1];
    int64_t before = clock_now_ms(), after;

    create_app(f, f->key1, app_id);
    after = clock_now_ms();
    assert_string_equal(f->resp.route, "apps.create");
    assert_true(f->resp.org_id == f->org1);
    default_app(&want, f->org1, 67890);
    fill_from_store(f, &want, app_id);
    assert_true(want.created_at >= before && want.created_at <= after);
    assert_true(want.updated_at == 0);
    assert_app_response(f, &want);
}

static void test_app_create_full_and_created_by_null(void **state)
{
    struct fx *f = *state;
    struct store_app want;
    char app_id[APP_ID_LEN + 1];

    req(f, HTTP_POST, "/superfone/sfvopi/apps", f->key2,
        "{\"name\":\"Caf\xc3\xa9\",\"answer_url\":\"http://a.com/answer\","
        "\"answer_method\":\"get\",\"hangup_url\":\"https://a.com/hangup\","
        "\"hangup_method\":\"Get\",\"fallback_answer_url\":\"https://b.com/fb\","
        "\"fallback_answer_method\":\"post\",\"status\":\"INACTIVE\",\"org_id\":1,"
        "\"app_id\":\"sfv_app_aaaaaaaaaaaa\",\"created_by\":5}");
    assert_int_equal(f->resp.status, 200);
    app_id_of_response(f, app_id);
    assert_string_not_equal(app_id, "sfv_app_aaaaaaaaaaaa");
    default_app(&want, f->org2, 0);
    snprintf(want.name, sizeof(want.name), "Caf\xc3\xa9");
    snprintf(want.answer_url, sizeof(want.answer_url), "http://a.com/answer");
    snprintf(want.answer_method, sizeof(want.answer_method), "GET");
    snprintf(want.hangup_url, sizeof(want.hangup_url), "https://a.com/hangup");
    snprintf(want.hangup_method, sizeof(want.hangup_method), "GET");
    snprintf(want.fallback_answer_url, sizeof(want.fallback_answer_url), "https://b.com/fb");
    fill_from_store(f, &want, app_id);
    assert_app_response(f, &want);
}

static void test_app_create_field_errors(void **state)
{
    struct fx *f = *state;

    req(f, HTTP_POST, "/sfvopi/apps", f->key1, "{}");
    ASSERT_RESP(f, 400,
                "{\"message\":\"Invalid request body\",\"errors\":["
                "{\"field\":\"name\",\"reason\":\"is required\"},"
                "{\"field\":\"answer_url\",\"reason\":\"is required\"}]}");
    req(f, HTTP_POST, "/sfvopi/apps", f->key1,
        "{\"name\":\"n\",\"answer_url\":\"ftp://x\",\"hangup_method\":\"PUT\"}");
    ASSERT_RESP(f, 400,
                "{\"message\":\"Invalid request body\",\"errors\":["
                "{\"field\":\"answer_url\",\"reason\":\"must be an absolute http or https URL\"},"
                "{\"field\":\"hangup_method\",\"reason\":\"must be POST or GET\"}]}");
    req(f, HTTP_POST, "/sfvopi/apps", f->key1, "{\"name\":5,\"answer_url\":\"http://a.com\"}");
    ASSERT_RESP(f, 400,
                "{\"message\":\"Invalid request body\",\"errors\":["
                "{\"field\":\"name\",\"reason\":\"must be a string\"}]}");
    /* Nothing was created. */
    req(f, HTTP_GET, "/sfvopi/apps", f->key1, NULL);
    ASSERT_RESP(f, 200, "{\"data\":[],\"message\":\"success\"}");
}

/* Names are escaped in the response exactly as JSON requires. */
static void test_app_name_escaping(void **state)
{
    struct fx *f = *state;

    req(f, HTTP_POST, "/sfvopi/apps", f->key1,
        "{\"name\":\"a \\\"q\\\" \\\\ \\t \\u0001 /\",\"answer_url\":\"http://a.com\"}");
    assert_int_equal(f->resp.status, 200);
    assert_non_null(strstr(body(f), ",\"name\":\"a \\\"q\\\" \\\\ \\t \\u0001 /\","));
}

static void test_app_get_list(void **state)
{
    struct fx *f = *state;
    struct store_app a1, a2;
    char id1[APP_ID_LEN + 1], id2[APP_ID_LEN + 1], path[128], j1[4096], j2[4096];

    req(f, HTTP_GET, "/sfvopi/apps", f->key1, NULL);
    ASSERT_RESP(f, 200, "{\"data\":[],\"message\":\"success\"}");

    create_app(f, f->key1, id1);
    create_app(f, f->key1, id2);
    default_app(&a1, f->org1, 67890);
    fill_from_store(f, &a1, id1);
    default_app(&a2, f->org1, 67890);
    fill_from_store(f, &a2, id2);

    path_of(path, sizeof(path), "/sfvopi/apps/%s", id1, NULL);
    req(f, HTTP_GET, path, f->key1, NULL);
    assert_app_response(f, &a1);
    assert_string_equal(f->resp.route, "apps.get");
    path_of(path, sizeof(path), "/superfone/sfvopi/apps/%s", id2, NULL);
    req(f, HTTP_GET, path, f->key1, NULL);
    assert_app_response(f, &a2);

    /* Newest first; equal times: most recently created first. */
    fmt_app(j1, sizeof(j1), &a1);
    fmt_app(j2, sizeof(j2), &a2);
    snprintf(f->expect, sizeof(f->expect), "{\"data\":[%s,%s],\"message\":\"success\"}", j2, j1);
    req(f, HTTP_GET, "/sfvopi/apps", f->key1, NULL);
    ASSERT_RESP(f, 200, f->expect);
    req(f, HTTP_GET, "/superfone/sfvopi/apps", f->key1, NULL);
    ASSERT_RESP(f, 200, f->expect);

    /* Unknown ids, and ids that cannot be app ids. */
    req(f, HTTP_GET, "/sfvopi/apps/" NO_APP, f->key1, NULL);
    ASSERT_RESP(f, 404, MSG_APP_404);
    req(f, HTTP_GET, "/sfvopi/apps/%zz", f->key1, NULL);
    ASSERT_RESP(f, 404, MSG_APP_404);
    req(f, HTTP_GET, "/sfvopi/apps/sfv_app_abc123xyz456abcdef", f->key1, NULL);
    ASSERT_RESP(f, 404, MSG_APP_404);
}

/* Another organisation's apps do not exist for the caller: 404, never 403. */
static void test_app_other_org(void **state)
{
    struct fx *f = *state;
    char id[APP_ID_LEN + 1], path[128];

    create_app(f, f->key1, id);
    path_of(path, sizeof(path), "/sfvopi/apps/%s", id, NULL);
    req(f, HTTP_GET, path, f->key2, NULL);
    ASSERT_RESP(f, 404, MSG_APP_404);
    req(f, HTTP_PUT, path, f->key2, "{\"name\":\"stolen\"}");
    ASSERT_RESP(f, 404, MSG_APP_404);
    req(f, HTTP_DELETE, path, f->key2, NULL);
    ASSERT_RESP(f, 404, MSG_APP_404);
    req(f, HTTP_GET, "/sfvopi/apps", f->key2, NULL);
    ASSERT_RESP(f, 200, "{\"data\":[],\"message\":\"success\"}");
    /* Still there, unchanged, for its owner. */
    req(f, HTTP_GET, path, f->key1, NULL);
    assert_int_equal(f->resp.status, 200);
    assert_non_null(strstr(body(f), "\"name\":\"My Voice App\""));
    assert_non_null(strstr(body(f), "\"updated_at\":null"));
}

static void test_app_update(void **state)
{
    struct fx *f = *state;
    struct store_app want;
    char id[APP_ID_LEN + 1], path[128];
    int64_t before;

    create_app(f, f->key1, id);
    path_of(path, sizeof(path), "/sfvopi/apps/%s", id, NULL);
    default_app(&want, f->org1, 67890);

    /* No known field: the app unchanged, updated_at still null. */
    req(f, HTTP_PUT, path, f->key1, "{\"unknown\":1}");
    fill_from_store(f, &want, id);
    assert_true(want.updated_at == 0);
    assert_app_response(f, &want);

    before = clock_now_ms();
    req(f, HTTP_PUT, path, f->key1,
        "{\"name\":\"Renamed\",\"status\":\"INACTIVE\",\"answer_method\":\"get\","
        "\"hangup_url\":\"http://h.com\"}");
    snprintf(want.name, sizeof(want.name), "Renamed");
    snprintf(want.status, sizeof(want.status), "INACTIVE");
    snprintf(want.answer_method, sizeof(want.answer_method), "GET");
    snprintf(want.hangup_url, sizeof(want.hangup_url), "http://h.com");
    fill_from_store(f, &want, id);
    assert_true(want.updated_at >= before);
    assert_app_response(f, &want);
    assert_string_equal(f->resp.route, "apps.update");

    /* null removes a URL; the response is the whole app. */
    req(f, HTTP_PUT, "/superfone/sfvopi/apps/", f->key1, "{}"); /* trailing slash */
    ASSERT_RESP(f, 404, MSG_NOT_FOUND);
    req(f, HTTP_PUT, path, f->key1, "{\"hangup_url\":null,\"status\":\"ACTIVE\"}");
    want.hangup_url[0] = '\0';
    snprintf(want.status, sizeof(want.status), "ACTIVE");
    fill_from_store(f, &want, id);
    assert_app_response(f, &want);
    req(f, HTTP_GET, path, f->key1, NULL);
    assert_app_response(f, &want);
}

static void test_app_update_errors(void **state)
{
    struct fx *f = *state;
    char id[APP_ID_LEN + 1], path[128];

    create_app(f, f->key1, id);
    path_of(path, sizeof(path), "/sfvopi/apps/%s", id, NULL);
    req(f, HTTP_PUT, path, f->key1, "{\"name\":null}");
    ASSERT_RESP(f, 400,
                "{\"message\":\"Invalid request body\",\"errors\":["
                "{\"field\":\"name\",\"reason\":\"must not be null\"}]}");
    req(f, HTTP_PUT, path, f->key1, "{\"status\":\"inactive\"}");
    ASSERT_RESP(f, 400,
                "{\"message\":\"Invalid request body\",\"errors\":["
                "{\"field\":\"status\",\"reason\":\"must be ACTIVE or INACTIVE\"}]}");
    /* A 400 changes nothing, even when other fields were valid. */
    req(f, HTTP_PUT, path, f->key1, "{\"name\":\"changed\",\"answer_url\":\"nope\"}");
    assert_int_equal(f->resp.status, 400);
    req(f, HTTP_GET, path, f->key1, NULL);
    assert_non_null(strstr(body(f), "\"name\":\"My Voice App\""));
    assert_non_null(strstr(body(f), "\"updated_at\":null"));
    /* 400 comes before 404. */
    req(f, HTTP_PUT, "/sfvopi/apps/" NO_APP, f->key1, "{\"name\":null}");
    assert_int_equal(f->resp.status, 400);
    req(f, HTTP_PUT, "/sfvopi/apps/" NO_APP, f->key1, "{\"name\":\"x\"}");
    ASSERT_RESP(f, 404, MSG_APP_404);
    req(f, HTTP_PUT, "/sfvopi/apps/" NO_APP, f->key1, "{}");
    ASSERT_RESP(f, 404, MSG_APP_404);
}

static void test_app_delete(void **state)
{
    struct fx *f = *state;
    char id[APP_ID_LEN + 1], path[128];

    create_app(f, f->key1, id);
    path_of(path, sizeof(path), "/sfvopi/apps/%s", id, NULL);
    req(f, HTTP_DELETE, path, f->key1, NULL);
    ASSERT_RESP(f, 200, DELETED);
    assert_string_equal(f->resp.route, "apps.delete");
    req(f, HTTP_GET, path, f->key1, NULL);
    ASSERT_RESP(f, 404, MSG_APP_404);
    req(f, HTTP_DELETE, path, f->key1, NULL);
    ASSERT_RESP(f, 404, MSG_APP_404);
    req(f, HTTP_PUT, path, f->key1, "{\"name\":\"x\"}");
    ASSERT_RESP(f, 404, MSG_APP_404);
    req(f, HTTP_GET, "/sfvopi/apps", f->key1, NULL);
    ASSERT_RESP(f, 200, "{\"data\":[],\"message\":\"success\"}");
}

/* ---- numbers ---- */

/* The link object's created_at, read back from the store. */
static int64_t link_created_at(struct fx *f, const char *app_id, const char *e164);

struct link_rows {
    const char *e164;
    int64_t created_at;
    int n;
};

static enum err find_link_cb(void *ud, const struct store_link *l)
{
    struct link_rows *x = ud;

    x->n++;
    if (strcmp(l->voip_number, x->e164) == 0)
        x->created_at = l->created_at;
    return ERR_OK;
}

static int64_t link_created_at(struct fx *f, const char *app_id, const char *e164)
{
    struct link_rows x = {e164, 0, 0};

    assert_int_equal(f->ops->link_list(f->c, f->org1, app_id, find_link_cb, &x), ERR_OK);
    assert_true(x.created_at != 0);
    return x.created_at;
}

static void test_link_list_unlink(void **state)
{
    struct fx *f = *state;
    char id[APP_ID_LEN + 1], path[160], l1[512], l2[512];
    int64_t t1, t2;

    create_app(f, f->key1, id);
    path_of(path, sizeof(path), "/sfvopi/apps/%s/numbers", id, NULL);

    req(f, HTTP_GET, path, f->key1, NULL);
    ASSERT_RESP(f, 200, "{\"data\":[],\"message\":\"success\"}");

    /* Link in a national form: stored and answered in E.164. */
    req(f, HTTP_POST, path, f->key1, "{\"voip_number\":\"08000000001\"}");
    t1 = link_created_at(f, id, N1);
    fmt_link(l1, sizeof(l1), id, N1, f->org1, t1, 0);
    snprintf(f->expect, sizeof(f->expect), "{\"data\":%s,\"message\":\"success\"}", l1);
    ASSERT_RESP(f, 200, f->expect);
    assert_string_equal(f->resp.route, "numbers.link");

    /* Again, same app: the existing link, unchanged. */
    req(f, HTTP_POST, path, f->key1, "{\"voip_number\":\"+91 80000-00001\"}");
    ASSERT_RESP(f, 200, f->expect);

    req(f, HTTP_POST, path, f->key1, "{\"voip_number\":\"" N2 "\"}");
    t2 = link_created_at(f, id, N2);
    fmt_link(l2, sizeof(l2), id, N2, f->org1, t2, 0);

    /* Newest first (ties: the later link first). */
    snprintf(f->expect, sizeof(f->expect), "{\"data\":[%s,%s],\"message\":\"success\"}", l2, l1);
    req(f, HTTP_GET, path, f->key1, NULL);
    ASSERT_RESP(f, 200, f->expect);
    assert_string_equal(f->resp.route, "numbers.list");

    /* Unlink with %2B: gone from the list, available again. */
    path_of(path, sizeof(path), "/sfvopi/apps/%s/numbers/%s", id, "%2B918000000001");
    req(f, HTTP_DELETE, path, f->key1, NULL);
    ASSERT_RESP(f, 200, DELETED);
    assert_string_equal(f->resp.route, "numbers.unlink");
    req(f, HTTP_DELETE, path, f->key1, NULL);
    ASSERT_RESP(f, 404, MSG_NOT_LINKED);
    path_of(path, sizeof(path), "/sfvopi/apps/%s/numbers", id, NULL);
    snprintf(f->expect, sizeof(f->expect), "{\"data\":[%s],\"message\":\"success\"}", l2);
    req(f, HTTP_GET, path, f->key1, NULL);
    ASSERT_RESP(f, 200, f->expect);
}

/* The path number: percent-decoded, raw '+' kept, a leading space read as
 * '+', then normalised. */
static void test_unlink_path_forms(void **state)
{
    static const char *const forms[] = {"%2B918000000001",     "+918000000001", "%20918000000001",
                                        "918000000001",        "8000000001",    "08000000001",
                                        "%2B91%2080000-00001", "00918000000001"};
    struct fx *f = *state;
    char id[APP_ID_LEN + 1], path[160];
    size_t i;

    create_app(f, f->key1, id);
    for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        path_of(path, sizeof(path), "/sfvopi/apps/%s/numbers", id, NULL);
        assert_int_equal(req(f, HTTP_POST, path, f->key1, "{\"voip_number\":\"" N1 "\"}"), 200);
        path_of(path, sizeof(path), "/superfone/sfvopi/apps/%s/numbers/%s", id, forms[i]);
        req(f, HTTP_DELETE, path, f->key1, NULL);
        if (f->resp.status != 200)
            print_error("form '%s'\n", forms[i]);
        ASSERT_RESP(f, 200, DELETED);
    }
}

static void test_link_errors(void **state)
{
    struct fx *f = *state;
    char a[APP_ID_LEN + 1], b[APP_ID_LEN + 1], path[160];

    create_app(f, f->key1, a);
    create_app(f, f->key1, b);
    path_of(path, sizeof(path), "/sfvopi/apps/%s/numbers", a, NULL);

    req(f, HTTP_POST, path, f->key1, "{}");
    ASSERT_RESP(f, 400,
                "{\"message\":\"Invalid request body\",\"errors\":["
                "{\"field\":\"voip_number\",\"reason\":\"is required\"}]}");
    req(f, HTTP_POST, path, f->key1, "{\"voip_number\":918000000001}");
    ASSERT_RESP(f, 400,
                "{\"message\":\"Invalid request body\",\"errors\":["
                "{\"field\":\"voip_number\",\"reason\":\"must be a string\"}]}");
    req(f, HTTP_POST, path, f->key1, "{\"voip_number\":\"12345\"}");
    ASSERT_RESP(f, 400,
                "{\"message\":\"Invalid request body\",\"errors\":["
                "{\"field\":\"voip_number\",\"reason\":\"must be a valid phone number\"}]}");
    /* 400 before 404 for a missing app. */
    req(f, HTTP_POST, "/sfvopi/apps/" NO_APP "/numbers", f->key1, "{\"voip_number\":\"x\"}");
    assert_int_equal(f->resp.status, 400);
    req(f, HTTP_POST, "/sfvopi/apps/" NO_APP "/numbers", f->key1, "{\"voip_number\":\"" N1 "\"}");
    ASSERT_RESP(f, 404, MSG_LINK_APP_404);
    /* Not in the inventory, another org's, INACTIVE. */
    req(f, HTTP_POST, path, f->key1, "{\"voip_number\":\"+918000000077\"}");
    ASSERT_RESP(f, 400, MSG_NUM_UNKNOWN);
    req(f, HTTP_POST, path, f->key1, "{\"voip_number\":\"" N9 "\"}");
    ASSERT_RESP(f, 400, MSG_NUM_UNKNOWN);
    assert_int_equal(f->ops->number_set_status(f->c, N3, "INACTIVE"), ERR_OK);
    req(f, HTTP_POST, path, f->key1, "{\"voip_number\":\"" N3 "\"}");
    ASSERT_RESP(f, 400, MSG_NUM_UNKNOWN);
    /* Linked to another app. */
    assert_int_equal(req(f, HTTP_POST, path, f->key1, "{\"voip_number\":\"" N1 "\"}"), 200);
    path_of(path, sizeof(path), "/sfvopi/apps/%s/numbers", b, NULL);
    req(f, HTTP_POST, path, f->key1, "{\"voip_number\":\"" N1 "\"}");
    ASSERT_RESP(f, 409, MSG_NUM_TAKEN);
    /* Another org's key sees neither app. */
    req(f, HTTP_POST, path, f->key2, "{\"voip_number\":\"" N9 "\"}");
    ASSERT_RESP(f, 404, MSG_LINK_APP_404);
    req(f, HTTP_GET, path, f->key2, NULL);
    ASSERT_RESP(f, 404, MSG_LINK_APP_404);
    req(f, HTTP_GET, "/sfvopi/apps/" NO_APP "/numbers", f->key1, NULL);
    ASSERT_RESP(f, 404, MSG_LINK_APP_404);
}

static void test_unlink_errors(void **state)
{
    struct fx *f = *state;
    char a[APP_ID_LEN + 1], b[APP_ID_LEN + 1], path[160];

    create_app(f, f->key1, a);
    create_app(f, f->key1, b);
    path_of(path, sizeof(path), "/sfvopi/apps/%s/numbers", a, NULL);
    assert_int_equal(req(f, HTTP_POST, path, f->key1, "{\"voip_number\":\"" N1 "\"}"), 200);

    req(f, HTTP_DELETE, "/sfvopi/apps/" NO_APP "/numbers/" N1, f->key1, NULL);
    ASSERT_RESP(f, 404, MSG_LINK_APP_404);
    req(f, HTTP_DELETE, "/sfvopi/apps/%zz/numbers/" N1, f->key1, NULL);
    ASSERT_RESP(f, 404, MSG_LINK_APP_404);
    /* Linked, but to another app. */
    path_of(path, sizeof(path), "/sfvopi/apps/%s/numbers/%s", b, N1);
    req(f, HTTP_DELETE, path, f->key1, NULL);
    ASSERT_RESP(f, 404, MSG_NOT_LINKED);
    /* Not valid numbers: not linked. */
    path_of(path, sizeof(path), "/sfvopi/apps/%s/numbers/%s", a, "abc");
    req(f, HTTP_DELETE, path, f->key1, NULL);
    ASSERT_RESP(f, 404, MSG_NOT_LINKED);
    path_of(path, sizeof(path), "/sfvopi/apps/%s/numbers/%s", a, "%zz");
    req(f, HTTP_DELETE, path, f->key1, NULL);
    ASSERT_RESP(f, 404, MSG_NOT_LINKED);
    path_of(path, sizeof(path), "/sfvopi/apps/%s/numbers/%s", a, "%2B91800000%000001");
    req(f, HTTP_DELETE, path, f->key1, NULL);
    ASSERT_RESP(f, 404, MSG_NOT_LINKED);
    /* Another org. */
    path_of(path, sizeof(path), "/sfvopi/apps/%s/numbers/%s", a, N1);
    req(f, HTTP_DELETE, path, f->key2, NULL);
    ASSERT_RESP(f, 404, MSG_LINK_APP_404);
    /* The link survived all of that. */
    req(f, HTTP_DELETE, path, f->key1, NULL);
    ASSERT_RESP(f, 200, DELETED);
}

static void test_available_numbers(void **state)
{
    struct fx *f = *state;
    char id[APP_ID_LEN + 1], path[160];

    snprintf(f->expect, sizeof(f->expect),
             "{\"data\":[{\"id\":%lld,\"voip_number\":\"" N1 "\",\"provider\":\"exotel\","
             "\"status\":\"ACTIVE\"},{\"id\":%lld,\"voip_number\":\"" N2 "\",\"provider\":"
             "\"exotel\",\"status\":\"ACTIVE\"},{\"id\":%lld,\"voip_number\":\"" N3 "\","
             "\"provider\":\"plivo\",\"status\":\"ACTIVE\"}],\"message\":\"success\"}",
             (long long)f->n1, (long long)f->n2, (long long)f->n3);
    req(f, HTTP_GET, "/sfvopi/available-numbers", f->key1, NULL);
    ASSERT_RESP(f, 200, f->expect);
    assert_string_equal(f->resp.route, "numbers.available");
    req(f, HTTP_GET, "/superfone/sfvopi/available-numbers", f->key1, NULL);
    ASSERT_RESP(f, 200, f->expect);

    /* Linked and INACTIVE numbers are not available. */
    create_app(f, f->key1, id);
    path_of(path, sizeof(path), "/sfvopi/apps/%s/numbers", id, NULL);
    assert_int_equal(req(f, HTTP_POST, path, f->key1, "{\"voip_number\":\"" N2 "\"}"), 200);
    assert_int_equal(f->ops->number_set_status(f->c, N3, "INACTIVE"), ERR_OK);
    snprintf(f->expect, sizeof(f->expect),
             "{\"data\":[{\"id\":%lld,\"voip_number\":\"" N1 "\",\"provider\":\"exotel\","
             "\"status\":\"ACTIVE\"}],\"message\":\"success\"}",
             (long long)f->n1);
    req(f, HTTP_GET, "/sfvopi/available-numbers", f->key1, NULL);
    ASSERT_RESP(f, 200, f->expect);

    /* Deleting the app frees its numbers. */
    path_of(path, sizeof(path), "/sfvopi/apps/%s", id, NULL);
    assert_int_equal(req(f, HTTP_DELETE, path, f->key1, NULL), 200);
    snprintf(f->expect, sizeof(f->expect),
             "{\"data\":[{\"id\":%lld,\"voip_number\":\"" N1 "\",\"provider\":\"exotel\","
             "\"status\":\"ACTIVE\"},{\"id\":%lld,\"voip_number\":\"" N2 "\",\"provider\":"
             "\"exotel\",\"status\":\"ACTIVE\"}],\"message\":\"success\"}",
             (long long)f->n1, (long long)f->n2);
    req(f, HTTP_GET, "/sfvopi/available-numbers", f->key1, NULL);
    ASSERT_RESP(f, 200, f->expect);

    /* Each org sees its own. */
    snprintf(f->expect, sizeof(f->expect),
             "{\"data\":[{\"id\":%lld,\"voip_number\":\"" N9 "\",\"provider\":\"exotel\","
             "\"status\":\"ACTIVE\"}],\"message\":\"success\"}",
             (long long)f->n9);
    req(f, HTTP_GET, "/sfvopi/available-numbers", f->key2, NULL);
    ASSERT_RESP(f, 200, f->expect);
}

/* A key revoked while the server runs stops working (TTL 0 here). */
static void test_revocation_takes_effect(void **state)
{
    struct fx *f = *state;
    unsigned char hash[KEY_HASH_LEN];
    struct store_key k;

    assert_int_equal(req(f, HTTP_GET, "/sfvopi/apps", f->key1, NULL), 200);
    apikey_hash(f->key1, strlen(f->key1), hash);
    assert_int_equal(f->ops->key_find(f->c, hash, &k), ERR_OK);
    assert_int_equal(f->ops->key_revoke(f->c, k.id, clock_now_ms()), ERR_OK);
    req(f, HTTP_GET, "/sfvopi/apps", f->key1, NULL);
    ASSERT_RESP(f, 401, MSG_UNAUTH);
}

/* ---- operational endpoints and envelope details ---- */

static void test_health(void **state)
{
    struct fx *f = *state;

    req(f, HTTP_GET, "/healthz", NULL, NULL);
    ASSERT_RESP(f, 200, "{\"status\":\"ok\"}");
    req(f, HTTP_GET, "/readyz", NULL, NULL);
    ASSERT_RESP(f, 200, "{\"status\":\"ready\"}");
    /* Metrics are off in this configuration. */
    req(f, HTTP_GET, "/metrics", NULL, NULL);
    ASSERT_RESP(f, 404, MSG_NOT_FOUND);
}

static bool fake_draining(const struct engine *e)
{
    return *(const bool *)e;
}

/* /metrics on the API listener: a loopback peer without proxy headers only,
 * else the unknown path's answer (any method); --metrics-public and the
 * admin listener serve everyone. A draining engine makes /readyz 503. */
static void test_metrics_visibility(void **state)
{
    struct fx *f = *state;
    struct api_worker *plain = f->w;
    struct api_config cfg;
    struct http_request r;
    bool draining = false;
    int pass;
    int names_n;
    const char *const *names = api_route_names(&names_n);

    metrics_init(names, names_n, "test");
    memset(&cfg, 0, sizeof(cfg));
    cfg.store = f->s;
    memcpy(cfg.default_cc, "91", 3);
    cfg.metrics = true;
    cfg.engine = (struct engine *)&draining;
    cfg.draining = fake_draining;
    for (pass = 0; pass < 3; pass++) {
        /* 0: the API listener; 1: --metrics-public; 2: the admin listener. */
        cfg.metrics_public = pass == 1;
        cfg.admin_only = pass == 2;
        f->w = api_worker_new(&cfg);
        assert_non_null(f->w);

        request_init(&r, HTTP_GET, "/metrics", NULL, NULL);
        r.peer_loopback = true;
        send_req(f, &r);
        assert_int_equal(f->resp.status, 200);

        request_init(&r, HTTP_GET, "/metrics", NULL, NULL);
        r.peer_loopback = false; /* another host */
        send_req(f, &r);
        if (pass == 0) {
            /* As unrouted as an unknown path, in logs and metrics too. */
            ASSERT_RESP(f, 404, MSG_NOT_FOUND);
            assert_int_equal(f->resp.route_idx, 0);
            assert_string_equal(f->resp.route, "-");
        } else {
            assert_int_equal(f->resp.status, 200);
        }

        request_init(&r, HTTP_POST, "/metrics", NULL, NULL);
        r.peer_loopback = true;
        r.forwarded = true; /* through a proxy on this host */
        send_req(f, &r);
        if (pass == 0) {
            ASSERT_RESP(f, 404, MSG_NOT_FOUND);
            assert_null(f->resp.allow);
        } else {
            ASSERT_RESP(f, 405, MSG_METHOD);
        }

        draining = false;
        req(f, HTTP_GET, "/readyz", NULL, NULL);
        ASSERT_RESP(f, 200, "{\"status\":\"ready\"}");
        draining = true;
        req(f, HTTP_GET, "/readyz", NULL, NULL);
        ASSERT_RESP(f, 503, "{\"status\":\"unavailable\"}");
        req(f, HTTP_GET, "/healthz", NULL, NULL);
        ASSERT_RESP(f, 200, "{\"status\":\"ok\"}");
        api_worker_free(f->w);
    }
    f->w = plain;
}

static void test_request_id(void **state)
{
    struct fx *f = *state;
    struct http_request r;
    size_t i;

    request_init(&r, HTTP_GET, "/nope", NULL, NULL);
    r.request_id = "trace-42.a:b_c";
    send_req(f, &r);
    assert_string_equal(f->resp.request_id, "trace-42.a:b_c");
    request_init(&r, HTTP_GET, "/sfvopi/apps", f->key1, NULL);
    r.request_id = "bad id";
    send_req(f, &r);
    assert_int_equal(strlen(f->resp.request_id), 24);
    for (i = 0; i < 24; i++)
        assert_non_null(strchr("0123456789abcdef", f->resp.request_id[i]));
    request_init(&r, HTTP_GET, "/sfvopi/apps", f->key1, NULL);
    send_req(f, &r);
    assert_int_equal(strlen(f->resp.request_id), 24);
}

/* ---- POST /sfvopi/calls through a stand-in engine ---- */

/* What the stand-in place_call saw, and what it answers. */
static struct {
    int calls;
    struct engine_outbound req;
    enum err result;
    const char *why;
} placed;

static enum err fake_place(struct engine *e, struct store_conn *c,
                           const struct engine_outbound *req, char *request_uuid, char *call_uuid,
                           const char **why)
{
    assert_non_null(e);
    assert_non_null(c);
    placed.calls++;
    placed.req = *req;
    if (placed.result != ERR_OK) {
        *why = placed.why;
        return placed.result;
    }
    memcpy(request_uuid, "sfv_ob_req_a8k3m2x9p1z0", REQUEST_UUID_LEN + 1);
    memcpy(call_uuid, "9b2f0c1e-4d5a-4b6c-8d7e-0f1a2b3c4d5e", CALL_UUID_LEN + 1);
    return ERR_OK;
}

/* A worker like the fixture's, with calling on (engine NULL: off). */
static struct api_worker *calling_worker(struct fx *f, struct engine *engine)
{
    struct api_config cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.store = f->s;
    memcpy(cfg.default_cc, "91", 3);
    cfg.engine = engine;
    cfg.place_call = fake_place;
    return api_worker_new(&cfg);
}

static void add_linked_app(struct fx *f, const char *app_id, const char *hangup_url,
                           const char *status)
{
    struct store_app a;
    struct store_link l;

    memset(&a, 0, sizeof(a));
    snprintf(a.app_id, sizeof(a.app_id), "%s", app_id);
    a.org_id = f->org1;
    snprintf(a.name, sizeof(a.name), "calls");
    snprintf(a.answer_url, sizeof(a.answer_url), "https://example.com/answer");
    snprintf(a.answer_method, sizeof(a.answer_method), "POST");
    snprintf(a.hangup_url, sizeof(a.hangup_url), "%s", hangup_url);
    snprintf(a.hangup_method, sizeof(a.hangup_method), "GET");
    snprintf(a.fallback_answer_url, sizeof(a.fallback_answer_url), "https://example.com/fb");
    snprintf(a.fallback_answer_method, sizeof(a.fallback_answer_method), "GET");
    snprintf(a.status, sizeof(a.status), "%s", status);
    a.created_at = clock_now_ms();
    assert_int_equal(f->ops->app_create(f->c, &a), ERR_OK);
    assert_int_equal(f->ops->link_create(f->c, f->org1, app_id, N1, clock_now_ms(), &l), ERR_OK);
}

#define CALL_APP "sfv_app_ca11ca11ca11"
#define CALL_OK                                                                                    \
    "{\"data\":{\"request_uuid\":\"sfv_ob_req_a8k3m2x9p1z0\",\"call_uuid\":"                       \
    "\"9b2f0c1e-4d5a-4b6c-8d7e-0f1a2b3c4d5e\",\"status\":\"queued\"},\"message\":\"success\"}"

static void test_call_place(void **state)
{
    struct fx *f = *state;
    int engine_state = 0;
    struct api_worker *off = f->w;
    struct http_request r;

    add_linked_app(f, CALL_APP, "https://example.com/hangup", "ACTIVE");
    f->w = calling_worker(f, (struct engine *)&engine_state);
    assert_non_null(f->w);
    memset(&placed, 0, sizeof(placed));

    /* The app's hangup URL and method, its fallback; defaults. */
    request_init(
        &r, HTTP_POST, "/sfvopi/calls", f->key1,
        "{\"from\":\"8000000001\",\"to\":\"+14155550100\","
        "\"answer_url\":\"https://example.com/a\",\"ring_url\":\"https://example.com/r\"}");
    send_req(f, &r);
    ASSERT_RESP(f, 200, CALL_OK);
    assert_int_equal(placed.calls, 1);
    assert_true(placed.req.org_id == f->org1);
    assert_string_equal(placed.req.app_id, CALL_APP);
    assert_string_equal(placed.req.from, N1);
    assert_string_equal(placed.req.to, "+14155550100");
    assert_string_equal(placed.req.answer_url, "https://example.com/a");
    assert_string_equal(placed.req.answer_method, "POST");
    assert_string_equal(placed.req.ring_url, "https://example.com/r");
    assert_string_equal(placed.req.ring_method, "POST");
    assert_string_equal(placed.req.hangup_url, "https://example.com/hangup");
    assert_string_equal(placed.req.hangup_method, "GET");
    assert_string_equal(placed.req.fallback_url, "https://example.com/fb");
    assert_string_equal(placed.req.fallback_method, "GET");
    assert_int_equal(placed.req.call_time_limit_s, 14400);
    assert_int_equal(placed.req.ring_timeout_s, 60);

    /* The app's hangup URL with the body's method. */
    req(f, HTTP_POST, "/superfone/sfvopi/calls", f->key1,
        "{\"from\":\"+918000000001\",\"to\":\"8000000002\",\"answer_url\":\"https://e.x/a\","
        "\"hangup_method\":\"post\",\"call_time_limit\":5,\"ring_timeout\":7}");
    ASSERT_RESP(f, 200, CALL_OK);
    assert_string_equal(placed.req.to, N2);
    assert_string_equal(placed.req.hangup_url, "https://example.com/hangup");
    assert_string_equal(placed.req.hangup_method, "POST");
    assert_int_equal(placed.req.call_time_limit_s, 5);
    assert_int_equal(placed.req.ring_timeout_s, 7);

    /* The body's hangup URL: its method, else POST (not the app's GET). */
    req(f, HTTP_POST, "/sfvopi/calls", f->key1,
        "{\"from\":\"+918000000001\",\"to\":\"8000000002\",\"answer_url\":\"https://e.x/a\","
        "\"hangup_url\":\"https://e.x/h\"}");
    ASSERT_RESP(f, 200, CALL_OK);
    assert_string_equal(placed.req.hangup_url, "https://e.x/h");
    assert_string_equal(placed.req.hangup_method, "POST");

    /* The engine's refusal, in its words. */
    placed.result = ERR_UNAVAILABLE;
    placed.why = "too many calls";
    req(f, HTTP_POST, "/sfvopi/calls", f->key1,
        "{\"from\":\"+918000000001\",\"to\":\"8000000002\",\"answer_url\":\"https://e.x/a\"}");
    ASSERT_RESP(f, 500, "{\"message\":\"Failed to initiate outbound call: too many calls\"}");
    assert_int_equal(placed.calls, 4);

    /* Refused before the engine: another org's caller, a bad body. */
    req(f, HTTP_POST, "/sfvopi/calls", f->key2,
        "{\"from\":\"+918000000001\",\"to\":\"8000000002\",\"answer_url\":\"https://e.x/a\"}");
    ASSERT_RESP(f, 400,
                "{\"message\":\"VoIP number +918000000001 is not linked to any SFVoPI app\"}");
    req(f, HTTP_POST, "/sfvopi/calls", f->key1,
        "{\"from\":\"+918000000001\",\"to\":\"8000000002\",\"answer_url\":\"https://e.x/a\","
        "\"ring_timeout\":0}");
    assert_int_equal(f->resp.status, 400);
    assert_int_equal(placed.calls, 4);
    api_worker_free(f->w);

    /* A place_call without an engine is still off. */
    f->w = calling_worker(f, NULL);
    req(f, HTTP_POST, "/sfvopi/calls", f->key1,
        "{\"from\":\"+918000000001\",\"to\":\"8000000002\",\"answer_url\":\"https://e.x/a\"}");
    ASSERT_RESP(f, 500,
                "{\"message\":\"Failed to initiate outbound call: calling is not configured\"}");
    assert_int_equal(placed.calls, 4);
    api_worker_free(f->w);
    f->w = off;
}

/* A number linked to an app without a hangup URL: none is sent. */
static void test_call_place_no_hangup(void **state)
{
    struct fx *f = *state;
    int engine_state = 0;
    struct api_worker *off = f->w;

    add_linked_app(f, CALL_APP, "", "ACTIVE");
    f->w = calling_worker(f, (struct engine *)&engine_state);
    memset(&placed, 0, sizeof(placed));
    req(f, HTTP_POST, "/sfvopi/calls", f->key1,
        "{\"from\":\"+918000000001\",\"to\":\"8000000002\",\"answer_url\":\"https://e.x/a\","
        "\"hangup_method\":\"GET\"}");
    ASSERT_RESP(f, 200, CALL_OK);
    assert_string_equal(placed.req.hangup_url, "");
    assert_string_equal(placed.req.hangup_method, "GET");
    api_worker_free(f->w);
    f->w = off;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_unknown_path_404),
        T(test_wrong_method_405),
        T(test_unauthorized_401),
        T(test_unauthorized_every_route),
        T(test_too_large_413),
        T(test_body_size_boundary),
        T(test_invalid_body_400),
        T(test_content_type),
        T(test_app_create),
        T(test_app_create_full_and_created_by_null),
        T(test_app_create_field_errors),
        T(test_app_name_escaping),
        T(test_app_get_list),
        T(test_app_other_org),
        T(test_app_update),
        T(test_app_update_errors),
        T(test_app_delete),
        T(test_link_list_unlink),
        T(test_unlink_path_forms),
        T(test_link_errors),
        T(test_unlink_errors),
        T(test_available_numbers),
        T(test_revocation_takes_effect),
        T(test_health),
        T(test_request_id),
        T(test_metrics_visibility),
        T(test_call_place),
        T(test_call_place_no_hangup),
    };

    return cmocka_run_group_tests(tests, group_setup, NULL);
}
