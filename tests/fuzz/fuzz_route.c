/* Fuzzes the router and the percent-decoder with arbitrary request paths. */
#include <stdint.h>
#include <string.h>

#include "api/route.h"
#include "http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct route_match m;
    char out[512];
    size_t n;

    if (route_match((const char *)data, size, &m) == ERR_OK) {
        /* Parameters are bounded and NUL-terminated whatever the input. */
        if (strlen(m.app_id) > APP_ID_LEN || m.number_len > E164_INPUT_MAX)
            __builtin_trap();
    } else if (m.id != ROUTE_NONE) {
        __builtin_trap();
    }
    if (http_path_decode((const char *)data, size, out, sizeof(out), &n) == ERR_OK &&
        n >= sizeof(out))
        __builtin_trap();
    return 0;
}
