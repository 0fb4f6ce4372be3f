/* stream: the answer webhook's reply (CALLS.md section 6) read into a
 * stream_config, and the streamId of section 1. The reply is untrusted bytes
 * from the customer's server; this module only validates and decodes, it
 * never opens a socket nor reads a clock or a random source. Pure;
 * thread-safe (no shared state). */
#ifndef SFVOPI_CALL_STREAM_H
#define SFVOPI_CALL_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/fields.h"
#include "core/url.h"
#include "media/codec.h"

/* Larger replies are invalid before any parsing (API.md's body limit). */
#define STREAM_BODY_MAX (64 * 1024)
/* stream.url, in bytes. */
#define STREAM_URL_MAX URL_WS_MAX
#define STREAM_TIMEOUT_MIN 1
#define STREAM_TIMEOUT_MAX 86400
#define STREAM_TIMEOUT_DEFAULT 86400
#define STREAM_RATE_DEFAULT 8000
/* stream.custom_parameters (AGENT.md section 2): at most this many string
 * values, keys of 1 to 64 bytes, values of at most 512 bytes. */
#define STREAM_PARAMS_MAX 16
#define STREAM_PARAM_KEY_MAX 64
#define STREAM_PARAM_VALUE_MAX 512

/* A ULID: 26 Crockford base32 characters (48-bit ms timestamp, 80 random bits). */
#define ULID_LEN 26
#define ULID_RANDOM_BYTES 10
#define ULID_TIME_MAX 281474976710655LL /* 2^48 - 1 */
/* "SFV_STRM_OUT_" + ULID + NUL, the longest streamId. */
#define STREAM_ID_MAX (13 + ULID_LEN + 1)

enum stream_direction {
    STREAM_DIR_INBOUND,  /* the party's audio */
    STREAM_DIR_OUTBOUND, /* the audio sent to the party */
    STREAM_DIR_BOTH,
};

/* One custom parameter, UTF-8 text without NUL (the strict JSON reading
 * refuses U+0000). */
struct stream_param {
    char key[STREAM_PARAM_KEY_MAX + 1];
    char value[STREAM_PARAM_VALUE_MAX + 1];
};

struct stream_config {
    char url[STREAM_URL_MAX + 1]; /* ws:// or wss://, as sent (scheme case kept) */
    enum stream_codec codec;
    int sample_rate; /* Hz, allowed for codec */
    enum stream_direction direction;
    bool bidirectional;
    int stream_timeout; /* seconds, STREAM_TIMEOUT_MIN..MAX */
    bool keep_call_alive;
    /* custom_parameters, in the order received; nparams 0 when absent. */
    struct stream_param params[STREAM_PARAMS_MAX];
    size_t nparams;
};

/* True when s[0..len) (any bytes, need not be NUL-terminated) is a ws:// or
 * wss:// URL (scheme in any case) with a host, an optional port 1-65535, at
 * most STREAM_URL_MAX bytes, without spaces, control characters or a
 * fragment ('#', which RFC 6455 forbids). The authority follows the rule of
 * validate_url exactly. On false, *reason (static text) says why. */
bool stream_url_valid(const char *s, size_t len, const char **reason);

/* Parses body[0..len), the answer webhook's reply: a JSON object holding a
 * "stream" object whose fields follow section 6 (defaults applied, unknown
 * fields ignored). Enum values (codec, direction) are accepted in any case,
 * like the *_method fields of API.md, and stored as enums. A present field
 * of the wrong type, out of range, or null makes the reply invalid;
 * custom_parameters must be an object of at most STREAM_PARAMS_MAX string
 * values with keys of 1 to STREAM_PARAM_KEY_MAX bytes and values of at
 * most STREAM_PARAM_VALUE_MAX bytes ("stream.custom_parameters" otherwise).
 * ERR_INVALID when the body is over STREAM_BODY_MAX, is not a JSON object
 * (strict reading of js_parse_object: UTF-8, no U+0000, no duplicate keys),
 * or any rule is broken; fe then names each rejected field ("body",
 * "stream", "stream.url", "stream.codec", ...), fe->n is 0 on success.
 * *out is written only on success. */
enum err stream_parse(const char *body, size_t len, struct stream_config *out,
                      struct field_errors *fe) WARN_UNUSED;

/* "PCMA", "PCMU", "L16". Static. */
const char *stream_codec_name(enum stream_codec codec);
/* The media contentType of section 7: "audio/PCMA", "audio/PCMU", "audio/x-l16". Static. */
const char *stream_content_type(enum stream_codec codec);
/* "INBOUND", "OUTBOUND", "BOTH". Static. */
const char *stream_direction_name(enum stream_direction dir);

/* Writes the ULID of ms (milliseconds since the epoch, clamped to
 * 0..ULID_TIME_MAX) and rnd (80 random bits, big-endian) as 26 upper-case
 * Crockford base32 characters plus NUL. */
void ulid_encode(int64_t ms, const unsigned char rnd[ULID_RANDOM_BYTES], char out[ULID_LEN + 1]);

/* Writes the streamId "SFV_STRM_{BI|IN|OUT}_<ULID>" plus NUL: BI when
 * bidirectional, else IN for INBOUND and OUT for OUTBOUND and BOTH. The
 * caller supplies the clock (ms) and the randomness (rnd, from a CSPRNG). */
void stream_id_make(char out[STREAM_ID_MAX], enum stream_direction dir, bool bidirectional,
                    int64_t ms, const unsigned char rnd[ULID_RANDOM_BYTES]);

#endif
