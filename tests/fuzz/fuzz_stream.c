/* Fuzzes the answer reply parser (stream_parse) and the ws/wss URL rule.
 * On success the config must obey section 6 whatever the input: a ws or
 * wss URL that passes the URL rule again, a sample rate allowed for the
 * codec, a timeout in range, custom parameters within their caps that
 * the start message carries back as JSON, byte for byte. The raw input is
 * also tried as a URL, and the
 * URL rule must agree with validate_url on the authority. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/validate.h"
#include "call/stream.h"
#include "call/streammsg.h"
#include "json/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* For a short ws URL without a fragment, the authority rule must match
 * validate_url's on the same authority behind "http://". */
static void check_against_http(const char *s, size_t size)
{
    char http[512];
    const char *r1 = NULL, *r2 = NULL;
    size_t scheme, end;
    bool ws_ok, http_ok;

    if (size >= 5 && strncasecmp(s, "ws://", 5) == 0)
        scheme = 5;
    else if (size >= 6 && strncasecmp(s, "wss://", 6) == 0)
        scheme = 6;
    else
        return;
    if (size > 400 || memchr(s, '#', size))
        return;
    end = scheme;
    while (end < size && s[end] != '/' && s[end] != '?')
        end++;
    memcpy(http, "http://", 7);
    memcpy(http + 7, s + scheme, size - scheme);
    ws_ok = stream_url_valid(s, size, &r1);
    http_ok = validate_url(http, 7 + size - scheme, &r2);
    if (ws_ok != http_ok)
        __builtin_trap();
}

/* Accepted custom parameters are within their caps, and start carries
 * them back: the same keys with the same values, in the same order. */
static void check_params(const struct stream_config *cfg)
{
    static struct buf b;
    static bool init;
    json_t *root = NULL, *o, *v;
    const char *key;
    size_t i = 0;

    if (cfg->nparams > STREAM_PARAMS_MAX)
        __builtin_trap();
    for (i = 0; i < cfg->nparams; i++) {
        size_t kn = strnlen(cfg->params[i].key, sizeof(cfg->params[i].key));

        if (kn == 0 || kn > STREAM_PARAM_KEY_MAX ||
            strnlen(cfg->params[i].value, sizeof(cfg->params[i].value)) > STREAM_PARAM_VALUE_MAX)
            __builtin_trap();
    }
    if (!init) {
        buf_init(&b, 1 << 20);
        init = true;
    }
    buf_reset(&b);
    if (streammsg_start(&b, "SFV_STRM_BI_X", "c", "audio/PCMA", 8000, cfg->params, cfg->nparams,
                        NULL) != ERR_OK ||
        js_parse_object(b.data, b.len, &root) != ERR_OK)
        __builtin_trap();
    o = json_object_get(root, "customParameters");
    if (cfg->nparams == 0 ? o != NULL : json_object_size(o) != cfg->nparams)
        __builtin_trap();
    i = 0;
    json_object_foreach(o, key, v)
    {
        if (strcmp(key, cfg->params[i].key) != 0 ||
            strcmp(json_string_value(v), cfg->params[i].value) != 0)
            __builtin_trap();
        i++;
    }
    json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct stream_config cfg;
    struct field_errors fe;
    const char *reason = NULL;
    char id[STREAM_ID_MAX];
    unsigned char rnd[ULID_RANDOM_BYTES] = {0};
    size_t n;

    if (stream_url_valid(s, size, &reason)) {
        if (size < 6 || size > STREAM_URL_MAX)
            __builtin_trap();
    } else if (!reason || !reason[0]) {
        __builtin_trap();
    }
    check_against_http(s, size);

    if (stream_parse(s, size, &cfg, &fe) != ERR_OK) {
        if (fe.n < 1 || fe.n > FIELD_ERRORS_MAX || !fe.e[0].field || !fe.e[0].reason)
            __builtin_trap();
        return 0;
    }
    if (fe.n != 0)
        __builtin_trap();
    n = strnlen(cfg.url, sizeof(cfg.url));
    if (n == 0 || n > STREAM_URL_MAX ||
        (strncasecmp(cfg.url, "ws://", 5) != 0 && strncasecmp(cfg.url, "wss://", 6) != 0) ||
        !stream_url_valid(cfg.url, n, &reason))
        __builtin_trap();
    if (cfg.codec != STREAM_CODEC_PCMA && cfg.codec != STREAM_CODEC_PCMU &&
        cfg.codec != STREAM_CODEC_L16)
        __builtin_trap();
    if (!stream_rate_allowed(cfg.codec, cfg.sample_rate))
        __builtin_trap();
    if ((cfg.codec != STREAM_CODEC_L16) && cfg.sample_rate != 8000)
        __builtin_trap();
    if (cfg.direction != STREAM_DIR_INBOUND && cfg.direction != STREAM_DIR_OUTBOUND &&
        cfg.direction != STREAM_DIR_BOTH)
        __builtin_trap();
    if (cfg.stream_timeout < STREAM_TIMEOUT_MIN || cfg.stream_timeout > STREAM_TIMEOUT_MAX)
        __builtin_trap();
    check_params(&cfg);
    /* The streamId of what was accepted is well formed. */
    if (size >= ULID_RANDOM_BYTES)
        memcpy(rnd, data, ULID_RANDOM_BYTES);
    stream_id_make(id, cfg.direction, cfg.bidirectional, (int64_t)size * 1000003, rnd);
    n = strlen(id);
    if (strncmp(id, "SFV_STRM_", 9) != 0 || n < 12 + ULID_LEN || n > STREAM_ID_MAX - 1 ||
        strspn(id + n - ULID_LEN, "0123456789ABCDEFGHJKMNPQRSTVWXYZ") != ULID_LEN)
        __builtin_trap();
    return 0;
}
