/* addrclass: the address classes of addrclass.h. */
#include "core/addrclass.h"

#include <arpa/inet.h>
#include <string.h>

static enum addr_class classify4(const unsigned char a[4])
{
    if (a[0] == 127 || a[0] == 0)
        return ADDR_LOOPBACK;
    if (a[0] == 169 && a[1] == 254)
        return ADDR_LINK_LOCAL;
    if (a[0] == 10 || (a[0] == 172 && (a[1] & 0xf0) == 16) || (a[0] == 192 && a[1] == 168))
        return ADDR_PRIVATE;
    return ADDR_PUBLIC;
}

enum addr_class addr_classify_raw(int family, const unsigned char *a)
{
    static const unsigned char zero[16];
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b};

    if (family == 4)
        return classify4(a);
    if (family != 6)
        return ADDR_INVALID;
    /* ::, ::1 and the IPv4-compatible ::a.b.c.d all share 96 zero bits. */
    if (memcmp(a, zero, 15) == 0 && a[15] <= 1)
        return ADDR_LOOPBACK;
    if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0 || memcmp(a, zero, 12) == 0)
        return classify4(a + 12);
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
        return ADDR_LINK_LOCAL;
    if ((a[0] & 0xfe) == 0xfc)
        return ADDR_PRIVATE;
    return ADDR_PUBLIC;
}

enum addr_class addr_classify(const char *ip)
{
    char tmp[INET6_ADDRSTRLEN + 1];
    unsigned char a[16];
    size_t n = strlen(ip);

    if (n >= 2 && ip[0] == '[' && ip[n - 1] == ']') {
        ip++;
        n -= 2;
    }
    n = strcspn(ip, "%") < n ? strcspn(ip, "%") : n;
    if (n == 0 || n >= sizeof(tmp))
        return ADDR_INVALID;
    memcpy(tmp, ip, n);
    tmp[n] = '\0';
    if (inet_pton(AF_INET, tmp, a) == 1)
        return classify4(a);
    if (inet_pton(AF_INET6, tmp, a) == 1)
        return addr_classify_raw(6, a);
    return ADDR_INVALID;
}

bool addr_blocked(const char *ip)
{
    enum addr_class k = addr_classify(ip);

    return k == ADDR_LINK_LOCAL || k == ADDR_INVALID;
}

bool addr_private(const char *ip)
{
    return addr_classify(ip) != ADDR_PUBLIC;
}

bool addr_refused(const char *ip, bool deny_private)
{
    return deny_private ? addr_private(ip) : addr_blocked(ip);
}
