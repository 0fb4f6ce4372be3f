/* xheaders: the rules of an X- header name and value, kept apart from
 * both SIP and JSON so that the API refuses exactly what SIP would not
 * carry. */
#include "core/xheaders.h"

#include <string.h>
#include <strings.h>

bool xheader_name_valid(const char *s, size_t len)
{
    size_t i;

    if (len < 3 || len > XHEADER_NAME_MAX || s[0] != 'X' || s[1] != '-')
        return false;
    for (i = 2; i < len; i++) {
        char c = s[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return false;
    }
    return true;
}

bool xheader_value_valid(const char *s, size_t len)
{
    size_t i;

    if (len > XHEADER_VALUE_MAX)
        return false;
    for (i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    }
    return true;
}

bool xheaders_has(const struct xheaders *list, const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < list->n; i++) {
        if (strlen(list->h[i].name) == len && strncasecmp(list->h[i].name, name, len) == 0)
            return true;
    }
    return false;
}
