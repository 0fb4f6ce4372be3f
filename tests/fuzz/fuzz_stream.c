/* Fuzzes the answer reply parser (stream_parse) and the ws/wss URL rule.
 * On success the config must obey section 6 whatever the input: a ws or
 * wss URL that passes the URL rule again, a sample rate allowed for the
 * codec, a timeout in range. The raw input is also tried as a URL, and the
 * URL rule must agree with validate_url on the authority. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/validate.h"
#include "call/stream.h"

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
