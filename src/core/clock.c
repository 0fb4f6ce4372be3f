/* clock: time sources and the ISO 8601 formatter. The formatter uses the
 * days-to-civil algorithm instead of gmtime_r so that it is allocation- and
 * lock-free on the response path. */
#include "core/clock.h"

#include <time.h>

int64_t clock_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_mono_ms(void)
{
    return clock_mono_ns() / 1000000;
}

int64_t clock_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

void clock_format_iso(int64_t ms, char out[CLOCK_ISO_LEN + 1])
{
    /* 0000-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z */
    const int64_t min_ms = -62167219200000LL, max_ms = 253402300799999LL;
    int64_t days, secs, z, era, doe, yoe, y, doy, mp, d, m;
    int msec, hh, mm, ss;

    if (ms < min_ms)
        ms = min_ms;
    if (ms > max_ms)
        ms = max_ms;
    days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
    secs = (ms - days * 86400000) / 1000;
    msec = (int)((ms - days * 86400000) % 1000);
    hh = (int)(secs / 3600);
    mm = (int)(secs / 60 % 60);
    ss = (int)(secs % 60);

    /* H. Hinnant, "chrono-Compatible Low-Level Date Algorithms". */
    z = days + 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;

    put2(out, (int)(y / 100));
    put2(out + 2, (int)(y % 100));
    out[4] = '-';
    put2(out + 5, (int)m);
    out[7] = '-';
    put2(out + 8, (int)d);
    out[10] = 'T';
    put2(out + 11, hh);
    out[13] = ':';
    put2(out + 14, mm);
    out[16] = ':';
    put2(out + 17, ss);
    out[19] = '.';
    out[20] = (char)('0' + msec / 100);
    put2(out + 21, msec % 100);
    out[23] = 'Z';
    out[24] = '\0';
}
