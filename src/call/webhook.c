/* webhook: one list of payload fields per kind, written by one walker into
 * either a JSON object or a query string, so that POST and GET can never
 * disagree on which fields a payload has or in which order. */
#include "call/webhook.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "json/json.h"

int64_t webhook_duration(const struct store_call *c)
{
    if (!c->answered_at || c->ended_at <= c->answered_at)
        return 0;
    return (c->ended_at - c->answered_at) / 1000;
}

void webhook_jitter_ms(int64_t us, char out[WEBHOOK_JITTER_TEXT])
{
    long long ms, frac;

    if (us < 0)
        us = 0;
    ms = (long long)(us / 1000);
    frac = (long long)(us % 1000);
    /* The shortest exact decimal: no trailing zeros, no point for whole
     * milliseconds. */
    if (frac == 0)
        snprintf(out, WEBHOOK_JITTER_TEXT, "%lld", ms);
    else if (frac % 100 == 0)
        snprintf(out, WEBHOOK_JITTER_TEXT, "%lld.%01lld", ms, frac / 100);
    else if (frac % 10 == 0)
        snprintf(out, WEBHOOK_JITTER_TEXT, "%lld.%02lld", ms, frac / 10);
    else
        snprintf(out, WEBHOOK_JITTER_TEXT, "%lld.%03lld", ms, frac);
}

/* ---- one writer, two encodings ---- */

struct sink {
    bool query;
    bool first;
    struct jw w;     /* JSON: the writer (sticky error) */
    struct buf *out; /* query */
    enum err err;    /* query: the first error */
};

static const char hexdigits[] = "0123456789ABCDEF";

enum err webhook_pct_encode(const char *s, struct buf *out)
{
    enum err rc = ERR_OK;
    const char *run = s;

    for (; *s && rc == ERR_OK; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[3];

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~')
            continue;
        rc = buf_append(out, run, (size_t)(s - run));
        esc[0] = '%';
        esc[1] = hexdigits[c >> 4];
        esc[2] = hexdigits[c & 15];
        if (rc == ERR_OK)
            rc = buf_append(out, esc, 3);
        run = s + 1;
    }
    if (rc == ERR_OK)
        rc = buf_append(out, run, (size_t)(s - run));
    return rc;
}

static void sink_key(struct sink *k, const char *key)
{
    if (k->query) {
        if (k->err == ERR_OK && !k->first)
            k->err = buf_append_char(k->out, '&');
        if (k->err == ERR_OK)
            k->err = webhook_pct_encode(key, k->out);
        if (k->err == ERR_OK)
            k->err = buf_append_char(k->out, '=');
    } else {
        if (!k->first)
            jw_lit(&k->w, ",");
        jw_str(&k->w, key);
        jw_lit(&k->w, ":");
    }
    k->first = false;
}

static void sink_str(struct sink *k, const char *key, const char *value)
{
    sink_key(k, key);
    if (!k->query)
        jw_str(&k->w, value);
    else if (k->err == ERR_OK)
        k->err = webhook_pct_encode(value, k->out);
}

static void sink_i64(struct sink *k, const char *key, int64_t v)
{
    sink_key(k, key);
    if (!k->query)
        jw_i64(&k->w, v);
    else if (k->err == ERR_OK)
        k->err = buf_append_i64(k->out, v);
}

/* A number already written as JSON text. */
static void sink_num(struct sink *k, const char *key, const char *text)
{
    sink_key(k, key);
    if (!k->query)
        jw_raw(&k->w, text);
    else if (k->err == ERR_OK)
        k->err = buf_append_str(k->out, text);
}

static void sink_time(struct sink *k, const char *key, int64_t ms)
{
    char ts[CLOCK_ISO_LEN + 1];

    clock_format_iso(ms, ts);
    sink_str(k, key, ts);
}

/* The table of section 5, row by row. */
static enum err write_fields(enum webhook_kind kind, const struct store_call *c, struct sink *k)
{
    char jitter[WEBHOOK_JITTER_TEXT];
    enum call_direction dir;
    enum call_status st;
    const char *status;

    if (call_direction_parse(c->direction, &dir) != ERR_OK)
        return ERR_INVALID;
    switch (kind) {
    case WEBHOOK_RING:
        if (dir != CALL_DIR_OUTBOUND)
            return ERR_INVALID;
        status = call_status_name(CALL_STATUS_RINGING);
        break;
    case WEBHOOK_ANSWER: status = call_status_name(CALL_STATUS_IN_PROGRESS); break;
    case WEBHOOK_HANGUP:
        if (call_status_parse(c->status, &st) != ERR_OK || !call_status_final(st))
            return ERR_INVALID;
        status = call_status_name(st);
        break;
    default: return ERR_INVALID;
    }
    sink_str(k, "call_uuid", c->call_uuid);
    if (c->request_uuid[0])
        sink_str(k, "request_uuid", c->request_uuid);
    sink_str(k, "from", c->from);
    sink_str(k, "to", c->to);
    sink_str(k, "direction", call_direction_name(dir));
    sink_str(k, "call_status", status);
    if (kind != WEBHOOK_ANSWER)
        sink_time(k, "started_at", c->started_at);
    if (kind == WEBHOOK_ANSWER)
        sink_time(k, "answered_at", c->answered_at);
    if (kind == WEBHOOK_HANGUP) {
        if (c->answered_at)
            sink_time(k, "answer_at", c->answered_at);
        sink_time(k, "ended_at", c->ended_at);
        sink_i64(k, "duration", webhook_duration(c));
        sink_str(k, "hangup_cause", c->hangup_cause);
        /* The party's RTP (SIP.md section 6). */
        sink_i64(k, "rtp_packets_received", c->rtp_packets_received);
        sink_i64(k, "rtp_packets_lost", c->rtp_packets_lost);
        webhook_jitter_ms(c->rtp_jitter_us, jitter);
        sink_num(k, "rtp_jitter_ms", jitter);
    }
    return ERR_OK;
}

enum err webhook_body_json(enum webhook_kind kind, const struct store_call *c, struct buf *out)
{
    struct sink k = {.query = false, .first = true, .out = out, .err = ERR_OK};
    enum err rc;

    jw_init(&k.w, out);
    jw_lit(&k.w, "{");
    rc = write_fields(kind, c, &k);
    if (rc != ERR_OK)
        return rc;
    jw_lit(&k.w, "}");
    return jw_end(&k.w);
}

enum err webhook_query_string(enum webhook_kind kind, const struct store_call *c, struct buf *out)
{
    struct sink k = {.query = true, .first = true, .out = out, .err = ERR_OK};
    enum err rc;

    jw_init(&k.w, out);
    rc = write_fields(kind, c, &k);
    return rc != ERR_OK ? rc : k.err;
}

enum err webhook_get_url(const char *url, enum webhook_kind kind, const struct store_call *c,
                         struct buf *out)
{
    size_t n = strcspn(url, "#");
    const char *q = memchr(url, '?', n);
    enum err rc;

    rc = buf_append(out, url, n);
    if (rc == ERR_OK && !q)
        rc = buf_append_char(out, '?');
    else if (rc == ERR_OK && url[n - 1] != '?' && url[n - 1] != '&')
        rc = buf_append_char(out, '&');
    if (rc != ERR_OK)
        return rc;
    return webhook_query_string(kind, c, out);
}

/* ---- headers ---- */

/* A header value we send: 1..256 bytes of visible ASCII (no CR, LF, NUL). */
static bool header_value_ok(const char *s)
{
    size_t i;

    for (i = 0; s[i]; i++) {
        if (i >= 256 || (unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    }
    return i > 0;
}

enum err webhook_headers_make(bool post, const char *version, const struct store_call *c,
                              const char *delivery_id, struct webhook_headers *hs)
{
    size_t vlen = strlen(version);

    hs->n = 0;
    if (!header_value_ok(version) || vlen > sizeof(hs->user_agent) - sizeof("sfvopi/") ||
        !header_value_ok(c->call_uuid) || !header_value_ok(delivery_id))
        return ERR_INVALID;
    memcpy(hs->user_agent, "sfvopi/", 7);
    memcpy(hs->user_agent + 7, version, vlen + 1);
    hs->h[hs->n++] = (struct webhook_header){"User-Agent", hs->user_agent};
    if (post)
        hs->h[hs->n++] = (struct webhook_header){"Content-Type", "application/json"};
    hs->h[hs->n++] = (struct webhook_header){"X-Sfvopi-Call-Uuid", c->call_uuid};
    hs->h[hs->n++] = (struct webhook_header){"X-Sfvopi-Delivery", delivery_id};
    return ERR_OK;
}
