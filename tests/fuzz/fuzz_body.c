/* Fuzzes the JSON body parser and every body validator (create app, update
 * app, link, place call with its sip_headers) and the URL rule. */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "api/validate.h"
#include "json/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct store_app app;
    struct store_app_patch patch;
    static const char *const operator_headers[] = {"X-Carrier-Token: secret"};
    static struct call_body call;
    size_t i;
    struct field_errors fe;
    char e164[E164_MAX];
    const char *reason;
    json_t *body = NULL;

    (void)validate_url((const char *)data, size, &reason);
    if (js_parse_object((const char *)data, size, &body) != ERR_OK)
        return 0;
    if (validate_app_create(body, &app, &fe) == ERR_OK &&
        (app.name[0] == '\0' || app.answer_url[0] == '\0'))
        __builtin_trap();
    if (validate_app_update(body, &patch, &fe) != ERR_OK && fe.n == 0)
        __builtin_trap();
    if (validate_link(body, "91", e164, &fe) == ERR_OK && e164[0] != '+')
        __builtin_trap();
    /* An accepted call's headers obey every rule, the operator's excluded. */
    if (validate_call_create(body, "91", operator_headers, 1, &call, &fe) == ERR_OK) {
        if (call.req.sip_headers.n > XHEADERS_MAX)
            __builtin_trap();
        for (i = 0; i < call.req.sip_headers.n; i++) {
            const struct xheader *h = &call.req.sip_headers.h[i];

            if (!xheader_name_valid(h->name, strlen(h->name)) ||
                !xheader_value_valid(h->value, strlen(h->value)) ||
                strcasecmp(h->name, "X-Carrier-Token") == 0)
                __builtin_trap();
        }
    } else if (fe.n == 0) {
        __builtin_trap();
    }
    json_decref(body);
    return 0;
}
