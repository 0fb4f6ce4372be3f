/* pace: the queued request's text (see pace.h). Every string is copied
 * into its fixed field only when it fits; nothing here trusts the text. */
#include "call/pace.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The string fields of struct engine_outbound, by name. */
#define STR_FIELD(f)                                                                               \
    {                                                                                              \
#f, offsetof(struct engine_outbound, f), sizeof(((struct engine_outbound *)0)->f)          \
    }
static const struct {
    const char *name;
    size_t offset, size;
} str_fields[] = {
    STR_FIELD(app_id),
    STR_FIELD(from),
    STR_FIELD(to),
    STR_FIELD(answer_url),
    STR_FIELD(answer_method),
    STR_FIELD(ring_url),
    STR_FIELD(ring_method),
    STR_FIELD(hangup_url),
    STR_FIELD(hangup_method),
    STR_FIELD(fallback_url),
    STR_FIELD(fallback_method),
};
#undef STR_FIELD

enum err pace_req_encode(const struct engine_outbound *req, char *out, size_t cap)
{
    json_t *o = json_object(), *hs = json_array();
    enum err e = ERR_NOMEM;
    size_t i, n;

    if (!o || !hs)
        goto out_free;
    for (i = 0; i < sizeof(str_fields) / sizeof(str_fields[0]); i++) {
        const char *s = (const char *)req + str_fields[i].offset;

        if (json_object_set_new(o, str_fields[i].name, json_string(s)) != 0)
            goto out_free;
    }
    if (json_object_set_new(o, "org_id", json_integer(req->org_id)) != 0 ||
        json_object_set_new(o, "call_time_limit_s", json_integer(req->call_time_limit_s)) != 0 ||
        json_object_set_new(o, "ring_timeout_s", json_integer(req->ring_timeout_s)) != 0)
        goto out_free;
    for (i = 0; i < req->sip_headers.n && i < XHEADERS_MAX; i++) {
        const struct xheader *h = &req->sip_headers.h[i];

        if (json_array_append_new(hs, json_pack("[ss]", h->name, h->value)) != 0)
            goto out_free;
    }
    if (json_object_set(o, "sip_headers", hs) != 0)
        goto out_free;
    n = json_dumpb(o, out, cap, JSON_COMPACT);
    if (n == 0)
        goto out_free;
    e = ERR_TOO_LARGE;
    if (n >= cap)
        goto out_free;
    out[n] = '\0';
    e = ERR_OK;
out_free:
    json_decref(hs);
    json_decref(o);
    return e;
}

/* Copies the string v into dst (size bytes); false when v is not a
 * string, holds a NUL or does not fit. */
static bool copy_js(json_t *v, char *dst, size_t size)
{
    size_t len;

    if (!json_is_string(v))
        return false;
    len = json_string_length(v);
    if (len >= size || strlen(json_string_value(v)) != len)
        return false;
    memcpy(dst, json_string_value(v), len + 1);
    return true;
}

static bool get_str(json_t *o, const char *name, char *dst, size_t size)
{
    return copy_js(json_object_get(o, name), dst, size);
}

static bool get_uint(json_t *o, const char *name, json_int_t max, json_int_t *out)
{
    json_t *v = json_object_get(o, name);

    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
        return false;
    *out = json_integer_value(v);
    return true;
}

enum err pace_req_decode(const char *text, struct engine_outbound *req)
{
    json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, NULL), *hs;
    json_int_t org = 0, limit = 0, ring = 0;
    enum err e = ERR_INVALID;
    size_t i;

    memset(req, 0, sizeof(*req));
    if (!json_is_object(o))
        goto out_free;
    for (i = 0; i < sizeof(str_fields) / sizeof(str_fields[0]); i++) {
        if (!get_str(o, str_fields[i].name, (char *)req + str_fields[i].offset, str_fields[i].size))
            goto out_free;
    }
    if (!get_uint(o, "org_id", INT64_MAX, &org) ||
        !get_uint(o, "call_time_limit_s", 86400, &limit) ||
        !get_uint(o, "ring_timeout_s", 600, &ring))
        goto out_free;
    req->org_id = (int64_t)org;
    req->call_time_limit_s = (unsigned)limit;
    req->ring_timeout_s = (unsigned)ring;
    hs = json_object_get(o, "sip_headers");
    if (!json_is_array(hs) || json_array_size(hs) > XHEADERS_MAX)
        goto out_free;
    for (i = 0; i < json_array_size(hs); i++) {
        json_t *h = json_array_get(hs, i);
        struct xheader *x = &req->sip_headers.h[i];

        if (!json_is_array(h) || json_array_size(h) != 2 ||
            !copy_js(json_array_get(h, 0), x->name, sizeof(x->name)) ||
            !copy_js(json_array_get(h, 1), x->value, sizeof(x->value)) ||
            !xheader_name_valid(x->name, strlen(x->name)) ||
            !xheader_value_valid(x->value, strlen(x->value)))
            goto out_free;
        req->sip_headers.n = i + 1;
    }
    e = ERR_OK;
out_free:
    json_decref(o);
    return e;
}
