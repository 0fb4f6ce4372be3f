/* streammsg: the audio stream's JSON, both ways. Outgoing messages are
 * written straight into a buffer (50 media messages a second per track
 * per call); incoming ones are read with jansson under the strict rules of
 * json/, their payload decoded by libsodium's constant-time base64. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "call/streammsg.h"
#include "json/json.h"

static void ignored(struct streammsg_in *out, const char *why)
{
    out->kind = STREAMMSG_IGNORED;
    out->why = why;
}

/* Standard base64, with or without padding; whitespace is not allowed. */
static bool b64_decode(const char *s, size_t n, uint8_t *out, size_t cap, size_t *out_n)
{
    const char *end = NULL;
    int variant =
        n % 4 == 0 ? sodium_base64_VARIANT_ORIGINAL : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;

    if (n == 0) {
        *out_n = 0;
        return true;
    }
    if (sodium_base642bin(out, cap, s, n, NULL, out_n, &end, variant) != 0)
        return false;
    return end == s + n;
}

/* Plivo's stream protocol names for our content types (AGENT.md 1). */
static const char *canonical_type(const char *ct)
{
    if (strcmp(ct, "audio/x-mulaw") == 0)
        return "audio/PCMU";
    if (strcmp(ct, "audio/x-alaw") == 0)
        return "audio/PCMA";
    return ct;
}

static bool digits_valid(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > STREAMMSG_DIGITS_MAX)
        return false;
    for (i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= '0' && c <= '9') || c == '*' || c == '#' || (c >= 'A' && c <= 'D') || c == 'w'))
            return false;
    }
    return true;
}

void streammsg_parse(const char *data, size_t len, uint8_t *audio, size_t audio_cap,
                     struct streammsg_in *out)
{
    json_t *root = NULL, *ev, *media, *ct, *rate, *payload, *name, *v;
    const char *e;

    memset(out, 0, sizeof(*out));
    out->audio = audio;
    if (len > STREAMMSG_IN_MAX) {
        ignored(out, "message too large");
        return;
    }
    if (js_parse_object(data, len, &root) != ERR_OK) {
        ignored(out, "not a JSON object");
        return;
    }
    ev = json_object_get(root, "event");
    if (!json_is_string(ev)) {
        ignored(out, "no event");
        goto out_root;
    }
    e = json_string_value(ev);
    if (strcmp(e, "playAudio") == 0) {
        const char *p;
        size_t plen;

        media = json_object_get(root, "media");
        ct = json_object_get(media, "contentType");
        rate = json_object_get(media, "sampleRate");
        payload = json_object_get(media, "payload");
        if (!json_is_object(media) || !json_is_string(ct) || !json_is_integer(rate) ||
            !json_is_string(payload)) {
            ignored(out, "playAudio without media contentType, sampleRate and payload");
            goto out_root;
        }
        if (json_string_length(ct) >= sizeof(out->content_type)) {
            ignored(out, "unknown contentType");
            goto out_root;
        }
        p = json_string_value(payload);
        plen = json_string_length(payload);
        if (!b64_decode(p, plen, audio, audio_cap, &out->audio_len)) {
            ignored(out, "payload is not base64 or too large");
            goto out_root;
        }
        snprintf(out->content_type, sizeof(out->content_type), "%s",
                 canonical_type(json_string_value(ct)));
        out->sample_rate = json_integer_value(rate);
        out->kind = STREAMMSG_PLAY;
    } else if (strcmp(e, "checkpoint") == 0) {
        name = json_object_get(root, "name");
        if (!json_is_string(name) || json_string_length(name) == 0 ||
            json_string_length(name) > PLAYOUT_NAME_MAX) {
            ignored(out, "checkpoint without a name of 1 to 64 bytes");
            goto out_root;
        }
        memcpy(out->name, json_string_value(name), json_string_length(name) + 1);
        out->kind = STREAMMSG_CHECKPOINT;
    } else if (strcmp(e, "clearAudio") == 0) {
        out->kind = STREAMMSG_CLEAR;
    } else if (strcmp(e, "hangup") == 0) {
        v = json_object_get(root, "afterPlayback");
        if (v && !json_is_boolean(v)) {
            ignored(out, "hangup with an afterPlayback that is not a boolean");
            goto out_root;
        }
        out->after_playback = json_is_true(v);
        out->kind = STREAMMSG_HANGUP;
    } else if (strcmp(e, "sendDigits") == 0) {
        v = json_object_get(root, "digits");
        if (!json_is_string(v) || !digits_valid(json_string_value(v), json_string_length(v))) {
            ignored(out, "sendDigits without 1 to 64 digits of 0-9 * # A-D w");
            goto out_root;
        }
        memcpy(out->digits, json_string_value(v), json_string_length(v) + 1);
        out->kind = STREAMMSG_DIGITS;
    } else {
        ignored(out, "unknown event");
    }
out_root:
    json_decref(root);
}

enum err streammsg_start(struct buf *out, const char *stream_id, const char *call_uuid,
                         const char *content_type, int sample_rate,
                         const struct stream_param *params, size_t nparams,
                         const struct xheaders *sip)
{
    struct jw w;
    size_t i;

    jw_init(&w, out);
    jw_lit(&w, "{\"event\":\"start\",\"streamId\":");
    jw_str(&w, stream_id);
    jw_lit(&w, ",\"callId\":");
    jw_str(&w, call_uuid);
    jw_lit(&w, ",\"mediaFormat\":{\"contentType\":");
    jw_str(&w, content_type);
    jw_lit(&w, ",\"sampleRate\":");
    jw_i64(&w, sample_rate);
    jw_lit(&w, "}");
    if (params && nparams) {
        jw_lit(&w, ",\"customParameters\":{");
        for (i = 0; i < nparams; i++) {
            if (i)
                jw_lit(&w, ",");
            jw_str(&w, params[i].key);
            jw_lit(&w, ":");
            jw_str(&w, params[i].value);
        }
        jw_lit(&w, "}");
    }
    if (sip && sip->n) {
        jw_lit(&w, ",\"sipHeaders\":{");
        for (i = 0; i < sip->n; i++) {
            if (i)
                jw_lit(&w, ",");
            jw_str(&w, sip->h[i].name);
            jw_lit(&w, ":");
            jw_str(&w, sip->h[i].value);
        }
        jw_lit(&w, "}");
    }
    jw_lit(&w, "}");
    return jw_end(&w);
}

enum err streammsg_media(struct buf *out, const char *stream_id, const uint8_t *audio, size_t n,
                         const char *content_type, int sample_rate, const char *track,
                         int64_t timestamp_ms, uint64_t chunk)
{
    struct jw w;
    size_t b64 = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char ts[24];
    enum err e;

    jw_init(&w, out);
    jw_lit(&w, "{\"event\":\"media\",\"streamId\":");
    jw_str(&w, stream_id);
    jw_lit(&w, ",\"media\":{\"payload\":\"");
    e = jw_end(&w);
    if (e != ERR_OK)
        return e;
    e = buf_reserve(out, b64);
    if (e != ERR_OK)
        return e;
    sodium_bin2base64(out->data + out->len, b64, audio, n, sodium_base64_VARIANT_ORIGINAL);
    out->len += b64 - 1; /* without the NUL */
    jw_lit(&w, "\",\"contentType\":");
    jw_str(&w, content_type);
    jw_lit(&w, ",\"sampleRate\":");
    jw_i64(&w, sample_rate);
    jw_lit(&w, ",\"track\":");
    jw_str(&w, track);
    jw_lit(&w, ",\"timestamp\":");
    snprintf(ts, sizeof(ts), "%lld", (long long)timestamp_ms);
    jw_str(&w, ts);
    jw_lit(&w, ",\"chunk\":");
    jw_i64(&w, (int64_t)chunk);
    jw_lit(&w, "}}");
    return jw_end(&w);
}

enum err streammsg_dtmf(struct buf *out, const char *stream_id, char digit)
{
    struct jw w;
    char d[2] = {digit, '\0'};

    jw_init(&w, out);
    jw_lit(&w, "{\"event\":\"dtmf\",\"streamId\":");
    jw_str(&w, stream_id);
    jw_lit(&w, ",\"dtmf\":{\"digit\":");
    jw_str(&w, d);
    jw_lit(&w, "}}");
    return jw_end(&w);
}

enum err streammsg_cleared(struct buf *out, const char *stream_id, int64_t played_ms,
                           int64_t discarded_ms, const char *const *names, int n)
{
    struct jw w;
    int i;

    jw_init(&w, out);
    jw_lit(&w, "{\"event\":\"clearedAudio\",\"streamId\":");
    jw_str(&w, stream_id);
    jw_lit(&w, ",\"playedMs\":");
    jw_i64(&w, played_ms);
    jw_lit(&w, ",\"discardedMs\":");
    jw_i64(&w, discarded_ms);
    jw_lit(&w, ",\"clearedCheckpoints\":[");
    for (i = 0; i < n; i++) {
        if (i)
            jw_lit(&w, ",");
        jw_str(&w, names[i]);
    }
    jw_lit(&w, "]}");
    return jw_end(&w);
}

enum err streammsg_played(struct buf *out, const char *stream_id, const char *name,
                          int64_t played_ms)
{
    struct jw w;

    jw_init(&w, out);
    jw_lit(&w, "{\"event\":\"playedStream\",\"streamId\":");
    jw_str(&w, stream_id);
    jw_lit(&w, ",\"name\":");
    jw_str(&w, name);
    jw_lit(&w, ",\"playedMs\":");
    jw_i64(&w, played_ms);
    jw_lit(&w, "}");
    return jw_end(&w);
}

enum err streammsg_digits_sent(struct buf *out, const char *stream_id, const char *digits)
{
    struct jw w;

    jw_init(&w, out);
    jw_lit(&w, "{\"event\":\"digitsSent\",\"streamId\":");
    jw_str(&w, stream_id);
    jw_lit(&w, ",\"digits\":");
    jw_str(&w, digits);
    jw_lit(&w, "}");
    return jw_end(&w);
}
