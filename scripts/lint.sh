#!/bin/sh
# House-style checks: banned calls, SQL built with printf, then cppcheck.
set -u
status=0
files=$(find src -name '*.c' -o -name '*.h' | sort)

banned='\<(sprintf|vsprintf|strcpy|strcat|strncpy|strtok|atoi|atol|atoll|gets|system|popen)[[:space:]]*\('
if grep -nE "$banned" $files; then
    echo "lint: banned function (use snprintf, memcpy with a checked length, parse_i64)" >&2
    status=1
fi
# SQL text must be constant: no printf-family call may build a statement.
if grep -nE 'printf[[:space:]]*\([^;]*"[[:space:]]*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP)\b' $files; then
    echo "lint: SQL built with printf; bind parameters instead" >&2
    status=1
fi
# Third-party headers belong to one module each.
for pair in "microhttpd.h:src/http/server.c" "sqlite3.h:src/store/db_sqlite.c" \
            "libpq-fe.h:src/store/db_pg.c" "curl/curl.h:src/call/deliver.c" \
            "libwebsockets.h:src/ws/ws.c" "speex/speex_resampler.h:src/media/resample.c" \
            "srtp2/srtp.h:src/sip/srtp.c" "gnutls/[a-z]+\.h:src/http/tls.c" \
            "openssl/[a-z0-9]+\.h:src/sip/sip.c" "re(_[a-z]+)?\.h:src/sip/[a-z_]+\.c"; do
    hdr=${pair%%:*}
    owner=${pair#*:}
    others=$(grep -lE "#include <$hdr>" $files | grep -vE "^$owner\$" || true)
    if [ -n "$others" ]; then
        echo "lint: <$hdr> may only be included by $owner, also in: $others" >&2
        status=1
    fi
done
# Modules depend one way (docs/ARCHITECTURE.md): each may include only the
# modules listed for it; api reaches call only through call/outbound.h.
for rule in "core:core" "media:core media" "ws:core ws" "sip:core sip" "json:core json" \
            "store:core store" "http:core http" "auth:core store auth" \
            "call:core media ws sip json store http call" \
            "api:core json store http auth api call/outbound.h" \
            "cli:core json store http auth sip call api cli"; do
    dir=${rule%%:*}
    allowed=${rule#*:}
    for inc in $(grep -ho '#include "[a-z_]*/[a-z_]*\.h"' src/$dir/*.c src/$dir/*.h 2>/dev/null |
                 sed 's/#include "//; s/"$//' | sort -u); do
        ok=0
        for a in $allowed; do
            case "$a" in
            *.h) [ "$inc" = "$a" ] && ok=1 ;;
            *) [ "${inc%%/*}" = "$a" ] && ok=1 ;;
            esac
        done
        if [ $ok = 0 ]; then
            echo "lint: src/$dir/ includes $inc, against the layering of docs/ARCHITECTURE.md" >&2
            status=1
        fi
    done
done
# A module's private headers stay inside it (tests may reach them).
for hdr in store/driver.h store/sql.h; do
    others=$(grep -l "#include \"$hdr\"" $files | grep -v "^src/${hdr%%/*}/" || true)
    if [ -n "$others" ]; then
        echo "lint: $hdr is private to src/${hdr%%/*}/, also included by: $others" >&2
        status=1
    fi
done
if command -v cppcheck >/dev/null 2>&1; then
    cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,portability \
        --inline-suppr -Isrc -D__GNUC__ src || status=1
else
    echo "lint: cppcheck not installed, skipped" >&2
fi
exit $status
