/* http: helpers over the request and response records. */
#include "http/http.h"

#include <string.h>
#include <strings.h>

#include "core/rand.h"

enum http_method http_method_parse(const char *s)
{
    static const struct {
        const char *name;
        enum http_method m;
    } tab[] = {
        {"GET", HTTP_GET},         {"HEAD", HTTP_HEAD},     {"POST", HTTP_POST},
        {"PUT", HTTP_PUT},         {"DELETE", HTTP_DELETE}, {"PATCH", HTTP_PATCH},
        {"OPTIONS", HTTP_OPTIONS},
    };
    size_t i;

    for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
        if (strcmp(s, tab[i].name) == 0)
            return tab[i].m;
    }
    return HTTP_OTHER;
}

const char *http_method_name(enum http_method m)
{
    switch (m) {
    case HTTP_GET: return "GET";
    case HTTP_HEAD: return "HEAD";
    case HTTP_POST: return "POST";
    case HTTP_PUT: return "PUT";
    case HTTP_DELETE: return "DELETE";
    case HTTP_PATCH: return "PATCH";
    case HTTP_OPTIONS: return "OPTIONS";
    case HTTP_OTHER: break;
    }
    return "OTHER";
}

void http_response_init(struct http_response *r)
{
    r->status = 500;
    buf_init(&r->body, HTTP_RESPONSE_MAX);
    r->allow = NULL;
    r->request_id[0] = '\0';
    r->close = false;
    r->org_id = 0;
    r->route = "-";
    r->route_idx = 0;
    r->content_type = NULL;
    r->rate_set = false;
    r->rate_limit = r->rate_remaining = r->rate_reset = r->retry_after = 0;
    r->idem_replayed = false;
}

void http_response_release(struct http_response *r)
{
    buf_release(&r->body);
}

bool http_request_id_valid(const char *s)
{
    size_t i;

    for (i = 0; s[i]; i++) {
        char c = s[i];

        if (i >= HTTP_REQUEST_ID_MAX)
            return false;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return i > 0;
}

void http_response_set_request_id(struct http_response *r, const char *client_id)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[12];
    size_t i;

    if (client_id && http_request_id_valid(client_id)) {
        memcpy(r->request_id, client_id, strlen(client_id) + 1);
        return;
    }
    rand_fast_bytes(raw, sizeof(raw));
    for (i = 0; i < sizeof(raw); i++) {
        r->request_id[2 * i] = hex[raw[i] >> 4];
        r->request_id[2 * i + 1] = hex[raw[i] & 15];
    }
    r->request_id[2 * sizeof(raw)] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

enum err http_path_decode(const char *in, size_t len, char *out, size_t outsz, size_t *outlen)
{
    size_t i, o = 0;

    for (i = 0; i < len; i++) {
        char c = in[i];

        if (c == '%') {
            int hi, lo;

            if (len - i < 3)
                return ERR_INVALID;
            hi = hexval(in[i + 1]);
            lo = hexval(in[i + 2]);
            if (hi < 0 || lo < 0)
                return ERR_INVALID;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (o + 1 >= outsz)
            return ERR_TOO_LARGE;
        out[o++] = c;
    }
    out[o] = '\0';
    *outlen = o;
    return ERR_OK;
}

bool http_content_type_is_json(const char *ct)
{
    static const char json[] = "application/json";
    const size_t n = sizeof(json) - 1;

    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, json, n) != 0)
        return false;
    ct += n;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

void http_client_addr(const struct policy_ip *peer, const struct allowlist *trusted,
                      const char *const *xff, const size_t *xff_len, size_t n,
                      struct policy_ip *client)
{
    unsigned hops = 0;
    size_t h;

    *client = *peer;
    if (!trusted || !allowlist_match(trusted, peer))
        return;
    for (h = n; h-- > 0;) {
        const char *v = xff[h];
        size_t end = xff_len[h];

        while (end > 0) {
            size_t start = end, a, b;
            struct policy_ip ip;

            while (start > 0 && v[start - 1] != ',')
                start--;
            a = start;
            b = end;
            while (a < b && (v[a] == ' ' || v[a] == '\t'))
                a++;
            while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
                b--;
            if (b > a) {
                if (++hops > HTTP_XFF_HOPS_MAX || policy_ip_parse(v + a, b - a, &ip) != ERR_OK)
                    return;
                *client = ip;
                if (!allowlist_match(trusted, &ip))
                    return;
            }
            if (start == 0)
                break;
            end = start - 1;
        }
    }
}
