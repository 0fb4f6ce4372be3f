/* Fuzzes the JSON body parser and every body validator (create app, update
 * app, link) and the URL rule. */
#include <stdint.h>
#include <string.h>

#include "api/validate.h"
#include "json/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct store_app app;
    struct store_app_patch patch;
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
    json_decref(body);
    return 0;
}
