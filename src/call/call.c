/* call: one table of names per enum, so that a status or a direction is
 * spelled in exactly one place. */
#include "call/call.h"

#include <string.h>

static const char *const status_names[] = {
    [CALL_STATUS_QUEUED] = "QUEUED",           [CALL_STATUS_RINGING] = "RINGING",
    [CALL_STATUS_IN_PROGRESS] = "IN_PROGRESS", [CALL_STATUS_COMPLETED] = "COMPLETED",
    [CALL_STATUS_NO_ANSWER] = "NO_ANSWER",     [CALL_STATUS_BUSY] = "BUSY",
    [CALL_STATUS_CANCELED] = "CANCELED",       [CALL_STATUS_FAILED] = "FAILED",
};

static const char *const direction_names[] = {
    [CALL_DIR_INBOUND] = "INBOUND",
    [CALL_DIR_OUTBOUND] = "OUTBOUND",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const char *call_status_name(enum call_status s)
{
    return (unsigned)s < COUNT(status_names) ? status_names[s] : "";
}

enum err call_status_parse(const char *name, enum call_status *out)
{
    size_t i;

    for (i = 0; i < COUNT(status_names); i++) {
        if (strcmp(name, status_names[i]) == 0) {
            *out = (enum call_status)i;
            return ERR_OK;
        }
    }
    return ERR_INVALID;
}

bool call_status_final(enum call_status s)
{
    return s >= CALL_STATUS_COMPLETED && s <= CALL_STATUS_FAILED;
}

const char *call_direction_name(enum call_direction d)
{
    return (unsigned)d < COUNT(direction_names) ? direction_names[d] : "";
}

enum err call_direction_parse(const char *name, enum call_direction *out)
{
    size_t i;

    for (i = 0; i < COUNT(direction_names); i++) {
        if (strcmp(name, direction_names[i]) == 0) {
            *out = (enum call_direction)i;
            return ERR_OK;
        }
    }
    return ERR_INVALID;
}
