/* stream: the answer reply's "stream" object, read field by field with the
 * rules of CALLS.md section 6, and the ULID-based streamId. Every present
 * field is checked even after a failure so that fe names all of them. */
#include "call/stream.h"

#include <jansson.h>
#include <string.h>
#include <strings.h>

#include "core/url.h"
#include "json/json.h"

static void add_error(struct field_errors *fe, const char *field, const char *reason)
{
    if (fe->n < FIELD_ERRORS_MAX) {
        fe->e[fe->n].field = field;
        fe->e[fe->n].reason = reason;
        fe->n++;
    }
}

bool stream_url_valid(const char *s, size_t len, const char **reason)
{
    return url_ws_valid(s, len, reason);
}

static const char *const codec_names[] = {"PCMA", "PCMU", "L16"};
static const char *const codec_types[] = {"audio/PCMA", "audio/PCMU", "audio/x-l16"};
static const char *const dir_names[] = {"INBOUND", "OUTBOUND", "BOTH"};

const char *stream_codec_name(enum stream_codec codec)
{
    return (unsigned)codec < 3 ? codec_names[codec] : "";
}

const char *stream_content_type(enum stream_codec codec)
{
    return (unsigned)codec < 3 ? codec_types[codec] : "";
}

const char *stream_direction_name(enum stream_direction dir)
{
    return (unsigned)dir < 3 ? dir_names[dir] : "";
}

/* Index of v's string among names[0..n), in any case; -1 when v is not a
 * string or matches none. Strings holding a NUL cannot match (lengths differ). */
static int match_enum(json_t *v, const char *const *names, int n)
{
    int i;

    if (!json_is_string(v))
        return -1;
    for (i = 0; i < n; i++) {
        if (json_string_length(v) == strlen(names[i]) &&
            strcasecmp(json_string_value(v), names[i]) == 0)
            return i;
    }
    return -1;
}

/* A present boolean field: true when v is a JSON boolean (stored in *out). */
static bool read_bool(json_t *v, const char *field, bool *out, struct field_errors *fe)
{
    if (!json_is_boolean(v)) {
        add_error(fe, field, "must be a boolean");
        return false;
    }
    *out = json_is_true(v);
    return true;
}

/* stream.custom_parameters: checked whole before anything is copied, so
 * that a bad one names a single field error. The keys come out in the
 * order they were received (jansson keeps insertion order). */
static void read_params(json_t *v, struct stream_config *cfg, struct field_errors *fe)
{
    const char *field = "stream.custom_parameters";
    const char *key;
    json_t *val;
    size_t n = 0;

    if (!json_is_object(v)) {
        add_error(fe, field, "must be an object");
        return;
    }
    if (json_object_size(v) > STREAM_PARAMS_MAX) {
        add_error(fe, field, "must have at most 16 values");
        return;
    }
    json_object_foreach(v, key, val)
    {
        size_t klen = strlen(key);

        if (klen == 0 || klen > STREAM_PARAM_KEY_MAX) {
            add_error(fe, field, "keys must be 1 to 64 bytes");
            return;
        }
        if (!json_is_string(val)) {
            add_error(fe, field, "values must be strings");
            return;
        }
        if (json_string_length(val) > STREAM_PARAM_VALUE_MAX ||
            strlen(json_string_value(val)) != json_string_length(val)) {
            add_error(fe, field, "values must be at most 512 bytes");
            return;
        }
    }
    json_object_foreach(v, key, val)
    {
        memcpy(cfg->params[n].key, key, strlen(key) + 1);
        memcpy(cfg->params[n].value, json_string_value(val), json_string_length(val) + 1);
        n++;
    }
    cfg->nparams = n;
}

enum err stream_parse(const char *body, size_t len, struct stream_config *out,
                      struct field_errors *fe)
{
    struct stream_config cfg;
    json_t *root = NULL, *stream, *v;
    const char *reason = NULL;
    bool codec_ok = true;
    enum err rc = ERR_INVALID;
    int i;

    fe->n = 0;
    if (len > STREAM_BODY_MAX) {
        add_error(fe, "body", "must be at most 65536 bytes");
        return ERR_INVALID;
    }
    if (js_parse_object(body, len, &root) != ERR_OK) {
        add_error(fe, "body", "must be a JSON object");
        return ERR_INVALID;
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.codec = STREAM_CODEC_PCMA;
    cfg.sample_rate = STREAM_RATE_DEFAULT;
    cfg.direction = STREAM_DIR_INBOUND;
    cfg.stream_timeout = STREAM_TIMEOUT_DEFAULT;

    stream = json_object_get(root, "stream");
    if (!stream) {
        add_error(fe, "stream", "is required");
        goto out_root;
    }
    if (!json_is_object(stream)) {
        add_error(fe, "stream", "must be an object");
        goto out_root;
    }

    v = json_object_get(stream, "url");
    if (!v) {
        add_error(fe, "stream.url", "is required");
    } else if (!json_is_string(v)) {
        add_error(fe, "stream.url", "must be a string");
    } else if (!stream_url_valid(json_string_value(v), json_string_length(v), &reason)) {
        add_error(fe, "stream.url", reason);
    } else {
        memcpy(cfg.url, json_string_value(v), json_string_length(v) + 1);
    }

    v = json_object_get(stream, "codec");
    if (v) {
        i = match_enum(v, codec_names, 3);
        if (i < 0) {
            add_error(fe, "stream.codec", "must be PCMA, PCMU or L16");
            codec_ok = false;
        } else {
            cfg.codec = (enum stream_codec)i;
        }
    }

    v = json_object_get(stream, "sample_rate");
    if (v) {
        if (!json_is_integer(v)) {
            add_error(fe, "stream.sample_rate", "must be an integer");
        } else if (codec_ok && !stream_rate_allowed(cfg.codec, json_integer_value(v))) {
            add_error(fe, "stream.sample_rate", "is not allowed for the codec");
        } else if (codec_ok) {
            cfg.sample_rate = (int)json_integer_value(v);
        }
    }

    v = json_object_get(stream, "direction");
    if (v) {
        i = match_enum(v, dir_names, 3);
        if (i < 0)
            add_error(fe, "stream.direction", "must be INBOUND, OUTBOUND or BOTH");
        else
            cfg.direction = (enum stream_direction)i;
    }

    v = json_object_get(stream, "bidirectional");
    if (v)
        (void)read_bool(v, "stream.bidirectional", &cfg.bidirectional, fe);

    v = json_object_get(stream, "stream_timeout");
    if (v) {
        if (!json_is_integer(v)) {
            add_error(fe, "stream.stream_timeout", "must be an integer");
        } else if (json_integer_value(v) < STREAM_TIMEOUT_MIN ||
                   json_integer_value(v) > STREAM_TIMEOUT_MAX) {
            add_error(fe, "stream.stream_timeout", "must be 1 to 86400");
        } else {
            cfg.stream_timeout = (int)json_integer_value(v);
        }
    }

    v = json_object_get(stream, "keep_call_alive");
    if (v)
        (void)read_bool(v, "stream.keep_call_alive", &cfg.keep_call_alive, fe);

    v = json_object_get(stream, "custom_parameters");
    if (v)
        read_params(v, &cfg, fe);

    if (fe->n == 0) {
        *out = cfg;
        rc = ERR_OK;
    }
out_root:
    json_decref(root);
    return rc;
}

/* Crockford's base32 alphabet: no I, L, O, U. */
static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* The 128 bits are written as 26 groups of 5 from the most significant end;
 * 26 * 5 = 130, so the first character carries only the top 3 bits, which
 * is why a 48-bit timestamp never starts above '7'. */
void ulid_encode(int64_t ms, const unsigned char rnd[ULID_RANDOM_BYTES], char out[ULID_LEN + 1])
{
    unsigned char bits[16];
    uint64_t t;
    int i;

    if (ms < 0)
        ms = 0;
    if (ms > ULID_TIME_MAX)
        ms = ULID_TIME_MAX;
    t = (uint64_t)ms;
    for (i = 0; i < 6; i++)
        bits[i] = (unsigned char)(t >> (8 * (5 - i)));
    memcpy(bits + 6, rnd, ULID_RANDOM_BYTES);
    for (i = 0; i < ULID_LEN; i++) {
        /* Character i holds bits [bit, bit + 5) of the 130-bit big-endian
         * number whose top 2 bits are zero. */
        int bit = i * 5 - 2;
        unsigned v = 0;
        int k;

        for (k = 0; k < 5; k++) {
            int b = bit + k;

            v <<= 1;
            if (b >= 0)
                v |= (bits[b / 8] >> (7 - b % 8)) & 1u;
        }
        out[i] = crockford[v];
    }
    out[ULID_LEN] = '\0';
}

void stream_id_make(char out[STREAM_ID_MAX], enum stream_direction dir, bool bidirectional,
                    int64_t ms, const unsigned char rnd[ULID_RANDOM_BYTES])
{
    const char *prefix;
    size_t n;

    if (bidirectional)
        prefix = "SFV_STRM_BI_";
    else if (dir == STREAM_DIR_INBOUND)
        prefix = "SFV_STRM_IN_";
    else
        prefix = "SFV_STRM_OUT_";
    n = strlen(prefix);
    memcpy(out, prefix, n);
    ulid_encode(ms, rnd, out + n);
}
