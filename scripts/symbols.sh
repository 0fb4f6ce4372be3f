#!/bin/sh
# Fails when a global symbol of ours (the library LIB, built) is also one
# that a shared library the program links (BIN's) exports: the dynamic
# linker would then bind that library's own calls to our function (libre's
# rand_bytes once called sfvopi's). Usage: symbols.sh LIB BIN
set -eu
lib=$1
bin=$2
ours=$(mktemp)
theirs=$(mktemp)
trap 'rm -f "$ours" "$theirs"' EXIT
nm -g --defined-only "$lib" 2>/dev/null | awk 'NF == 3 { print $3 }' | sort -u >"$ours"
for so in $(ldd "$bin" | awk '$3 ~ /^\// { print $3 }'); do
    nm -D --defined-only "$so" 2>/dev/null | awk 'NF == 3 { print $3 }' | sed 's/@.*//'
done | sort -u >"$theirs"
clash=$(comm -12 "$ours" "$theirs")
if [ -n "$clash" ]; then
    echo "lint: these functions of ours have the name of a linked library's export:" $clash >&2
    exit 1
fi
