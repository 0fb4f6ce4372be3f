/* outbound: an outbound call as the API hands it to the engine, the one
 * type of the narrow interface between api/ and call/ (api.h holds the
 * function pointer that takes it). No functions. */
#ifndef SFVOPI_CALL_OUTBOUND_H
#define SFVOPI_CALL_OUTBOUND_H

#include <stdint.h>

#include "core/e164.h"
#include "core/xheaders.h"
#include "store/store.h"

/* An outbound call as POST /sfvopi/calls asks for it, validated and with
 * the from-number's app already looked up. Strings are NUL-terminated;
 * "" means not set. */
struct engine_outbound {
    int64_t org_id;
    char app_id[APP_ID_LEN + 1];
    char from[E164_MAX];
    char to[E164_MAX];
    char answer_url[APP_URL_MAX + 1];
    char answer_method[METHOD_MAX + 1];
    char ring_url[APP_URL_MAX + 1];
    char ring_method[METHOD_MAX + 1];
    char hangup_url[APP_URL_MAX + 1]; /* the request's, else the app's */
    char hangup_method[METHOD_MAX + 1];
    char fallback_url[APP_URL_MAX + 1]; /* the app's */
    char fallback_method[METHOD_MAX + 1];
    unsigned call_time_limit_s; /* 1-86400 */
    unsigned ring_timeout_s;    /* 1-600 */
    /* sip_headers: added to the INVITE after the operator's --sip-header
     * lines, none of which they name. */
    struct xheaders sip_headers;
};

#endif
