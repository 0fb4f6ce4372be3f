/* call: the words of CALLS.md section 1 that every module of call/ shares:
 * a call's direction and its public status, their names as the API,
 * webhooks and records spell them, and which statuses are final. The
 * store keeps them as that text and never sees these enums. Pure, no
 * state, thread-safe. */
#ifndef SFVOPI_CALL_CALL_H
#define SFVOPI_CALL_CALL_H

#include <stdbool.h>

#include "core/err.h"

enum call_direction {
    CALL_DIR_INBOUND,  /* a carrier sent us the call */
    CALL_DIR_OUTBOUND, /* placed through the API */
};

/* The call_status of section 1: three while alive, then one final. */
enum call_status {
    CALL_STATUS_QUEUED,
    CALL_STATUS_RINGING,
    CALL_STATUS_IN_PROGRESS,
    CALL_STATUS_COMPLETED,
    CALL_STATUS_NO_ANSWER,
    CALL_STATUS_BUSY,
    CALL_STATUS_CANCELED,
    CALL_STATUS_FAILED,
};

/* "QUEUED", "NO_ANSWER", ...: static; "" for an unknown value. */
const char *call_status_name(enum call_status s);
/* The status named name (exactly as call_status_name spells it).
 * ERR_INVALID for any other text; *out is then untouched. */
enum err call_status_parse(const char *name, enum call_status *out) WARN_UNUSED;
/* True for COMPLETED, NO_ANSWER, BUSY, CANCELED and FAILED. */
bool call_status_final(enum call_status s);
/* "INBOUND" or "OUTBOUND": static; "" for an unknown value. */
const char *call_direction_name(enum call_direction d);
/* The direction named name. ERR_INVALID for any other text; *out is then
 * untouched. */
enum err call_direction_parse(const char *name, enum call_direction *out) WARN_UNUSED;

#endif
