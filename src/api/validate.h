/* validate: the rules of API.md for request bodies and path parameters,
 * as pure functions over parsed JSON. Each validator fills a domain record
 * and, for a 400, names the rejected fields (the "errors" array). They
 * never touch the database. Thread-safe. */
#ifndef SFVOPI_API_VALIDATE_H
#define SFVOPI_API_VALIDATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "call/outbound.h"
#include "core/e164.h"
#include "core/fields.h"
#include "store/store.h"

/* True when s[0..len) is an absolute http or https URL with a host, at most
 * APP_URL_MAX bytes, without spaces or control characters. On false,
 * *reason says why. */
bool validate_url(const char *s, size_t len, const char **reason);

/* True when s has the app_id format: "sfv_app_" and 12 of [a-z0-9]. */
bool validate_app_id(const char *s);

/* Reads a create body into app (name, URLs, methods; status ACTIVE; ids
 * and timestamps untouched). ERR_INVALID with fe filled when any field
 * breaks a rule. */
enum err validate_app_create(json_t *body, struct store_app *app,
                             struct field_errors *fe) WARN_UNUSED;

/* Reads an update body into patch (only the fields present). ERR_INVALID
 * with fe filled when any present field breaks a rule. */
enum err validate_app_update(json_t *body, struct store_app_patch *patch,
                             struct field_errors *fe) WARN_UNUSED;

/* Reads a link body: voip_number, normalised with default_cc. */
enum err validate_link(json_t *body, const char *default_cc, char e164[E164_MAX],
                       struct field_errors *fe) WARN_UNUSED;

#define CALL_TIME_LIMIT_DEFAULT 14400
#define CALL_TIME_LIMIT_MAX 86400
#define RING_TIMEOUT_DEFAULT 60
#define RING_TIMEOUT_MAX 600

/* A POST /sfvopi/calls body (CALLS.md section 2), read but not yet joined
 * with the from-number's app. */
struct call_body {
    /* from and to normalised to E.164; the URLs ("" when absent) and
     * methods (upper case, POST when absent); the limits (defaults when
     * absent). org_id, app_id and the fallback are left empty. */
    struct engine_outbound req;
    bool hangup_method_set; /* the body named a hangup_method */
};

/* Reads a place-call body; numbers are normalised with default_cc. An
 * explicit null for ring_url or hangup_url is the same as leaving it out;
 * unknown fields are ignored. sip_headers (AGENT.md section 2) is an
 * object of at most XHEADERS_MAX string values, names passing
 * xheader_name_valid, none named (in any case) by
 * one of the operator's "Name: value" lines operator_headers[0..noperator)
 * (--sip-header), values passing xheader_value_valid. ERR_INVALID with fe
 * filled when any field breaks a rule. */
enum err validate_call_create(json_t *body, const char *default_cc,
                              const char *const *operator_headers, size_t noperator,
                              struct call_body *out, struct field_errors *fe) WARN_UNUSED;

/* True when s is a call_uuid (8-4-4-4-12 hexadecimal digits, either case)
 * or a request_uuid ("sfv_ob_req_" and 12 of [a-z0-9]). A call_uuid is
 * written into out in lower case, the form it is stored in; out has room
 * for either. */
bool validate_call_id(const char *s, char out[CALL_UUID_LEN + 1]);

#endif
