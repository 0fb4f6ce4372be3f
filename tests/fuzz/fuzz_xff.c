/* Fuzzes the client address behind trusted proxies (http_client_addr) and
 * the address parser under it (policy_ip_parse). The input is the
 * X-Forwarded-For lines, split at '\n'; the first byte picks the peer. The
 * answer must be the peer, or an address that the input spells; from a
 * peer that is not a proxy, always the peer. */
#include <stdint.h>
#include <string.h>

#include "http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* True when the input holds text that parses to ip. */
static int spelled(const char *s, size_t n, const struct policy_ip *ip)
{
    size_t a, b;

    for (a = 0; a < n; a++) {
        for (b = a + 1; b <= n && b - a <= 64; b++) {
            struct policy_ip t;

            if (policy_ip_parse(s + a, b - a, &t) == ERR_OK && policy_ip_equal(&t, ip))
                return 1;
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const peers[] = {"127.0.0.1", "10.1.2.3", "::1", "203.0.113.1"};
    const char *xff[HTTP_XFF_HEADERS_MAX];
    size_t len[HTTP_XFF_HEADERS_MAX], n = 0, start = 1, i;
    const char *s = (const char *)data;
    struct allowlist trusted;
    struct policy_ip peer, client;
    const char *p;
    char why[160];

    if (size < 1 || size > 1024)
        return 0;
    if (allowlist_parse("127.0.0.0/8, 10.0.0.0/8, ::1", &trusted, why, sizeof(why)) != ERR_OK)
        __builtin_trap();
    p = peers[data[0] % 4];
    if (policy_ip_parse(p, strlen(p), &peer) != ERR_OK)
        __builtin_trap();
    for (i = 1; i <= size && n < HTTP_XFF_HEADERS_MAX; i++) {
        if (i == size || data[i] == '\n') {
            xff[n] = s + start;
            len[n++] = i - start;
            start = i + 1;
        }
    }
    http_client_addr(&peer, &trusted, xff, len, n, &client);
    if (!policy_ip_equal(&client, &peer)) {
        if (!allowlist_match(&trusted, &peer) || !spelled(s + 1, size - 1, &client))
            __builtin_trap();
    }
    http_client_addr(&peer, NULL, xff, len, n, &client);
    if (!policy_ip_equal(&client, &peer))
        __builtin_trap();
    return 0;
}
