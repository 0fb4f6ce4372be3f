#!/bin/sh
# Installs the Debian packages a goal needs, and only those that are missing.
# Usage: deps.sh build [test]
set -eu

pkgs_build="gcc make pkg-config libmicrohttpd-dev libgnutls28-dev libjansson-dev libsqlite3-dev libsodium-dev libpq-dev libcurl4-openssl-dev libre-dev libwebsockets-dev libspeexdsp-dev libssl-dev libsrtp2-dev"
pkgs_test="clang openssl nginx-light libclang-rt-14-dev libcmocka-dev python3 python3-pytest python3-requests curl postgresql sip-tester python3-websockets systemd kamailio nftables iproute2 baresip-core tcpdump"

want=""
for goal in "$@"; do
    case "$goal" in
    build) want="$want $pkgs_build" ;;
    test) want="$want $pkgs_test" ;;
    *) echo "deps.sh: unknown goal '$goal'" >&2; exit 2 ;;
    esac
done

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "Missing Debian packages:$missing" >&2
    echo "Install them as root: apt-get install -y$missing" >&2
    exit 1
fi
echo "Installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
