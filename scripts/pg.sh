#!/bin/sh
# A throwaway PostgreSQL 15 cluster for tests, in DIR, listening on 127.0.0.1 only
# (trust authentication, fsync off: never for real data).
#   pg.sh start DIR   initdb if DIR holds no cluster yet, start it, print its URL
#                     (postgresql://postgres@127.0.0.1:PORT/postgres) on stdout;
#                     a cluster already running is left as is; a stopped one
#                     starts again on its old port
#   pg.sh down DIR    stop the server, keep the cluster (start brings it back)
#   pg.sh stop DIR    stop the server and remove DIR; nothing to do is success
#   pg.sh url DIR     print the URL
# The port is the first free one from $SFVOPI_PG_PORT (default 55432). initdb
# refuses to run as root, so as root the cluster belongs to the postgres user.
set -eu

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
MARK=.sfvopi-pg
PORT_FIRST=${SFVOPI_PG_PORT:-55432}
PORT_TRIES=50

usage() {
    echo "usage: pg.sh start|down|stop|url DIR" >&2
    exit 2
}

[ $# -eq 2 ] || usage
cmd=$1
dir=$2
case "$dir" in
/*) ;;
*) dir=$(pwd)/$dir ;;
esac

as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

url() {
    echo "postgresql://postgres@127.0.0.1:$(cat "$dir/port")/postgres"
}

running() {
    [ -f "$dir/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" status -D "$dir/data" >/dev/null 2>&1
}

# Starts the server on $1; fails when the port is taken.
start_on() {
    as_pg "$PGBIN/pg_ctl" start -w -t 60 -D "$dir/data" -l "$dir/log" \
        -o "-p $1 -k $dir -c listen_addresses=127.0.0.1" >/dev/null 2>&1
}

cmd_start() {
    if [ ! -d "$dir" ]; then
        mkdir -p "$dir"
    fi
    if [ ! -f "$dir/$MARK" ]; then
        if [ -n "$(ls -A "$dir")" ]; then
            echo "pg.sh: $dir is not empty and holds no test cluster" >&2
            exit 1
        fi
        touch "$dir/$MARK"
    fi
    if [ "$(id -u)" = 0 ]; then
        chown postgres:postgres "$dir" "$dir/$MARK"
    fi
    chmod 700 "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C \
            --no-sync >"$dir/initdb.log" 2>&1 || {
            cat "$dir/initdb.log" >&2
            exit 1
        }
        cat >>"$dir/data/postgresql.conf" <<EOF
# sfvopi test cluster: throwaway, speed over durability.
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
shared_buffers = 32MB
log_min_messages = warning
EOF
    fi
    if running; then
        url
        return 0
    fi
    if [ -f "$dir/port" ]; then
        port=$(cat "$dir/port")
        start_on "$port" || {
            echo "pg.sh: cannot start the cluster again on port $port; log:" >&2
            tail -20 "$dir/log" >&2
            exit 1
        }
    else
        port=$PORT_FIRST
        i=0
        until start_on "$port"; do
            i=$((i + 1))
            if [ "$i" -ge "$PORT_TRIES" ]; then
                echo "pg.sh: no free port from $PORT_FIRST; log:" >&2
                tail -20 "$dir/log" >&2
                exit 1
            fi
            port=$((port + 1))
        done
        echo "$port" >"$dir/port"
    fi
    url
}

cmd_down() {
    [ -f "$dir/$MARK" ] || return 0
    if running; then
        as_pg "$PGBIN/pg_ctl" stop -w -t 30 -m fast -D "$dir/data" >/dev/null 2>&1 ||
            as_pg "$PGBIN/pg_ctl" stop -w -t 30 -m immediate -D "$dir/data" >/dev/null 2>&1
    fi
}

cmd_stop() {
    [ -d "$dir" ] || return 0
    if [ ! -f "$dir/$MARK" ]; then
        # Not ours (or never initialised): remove it only when empty.
        rmdir "$dir" 2>/dev/null || true
        return 0
    fi
    cmd_down
    rm -rf "$dir"
}

case "$cmd" in
start) cmd_start ;;
down) cmd_down ;;
stop) cmd_stop ;;
url)
    [ -f "$dir/port" ] || { echo "pg.sh: no cluster in $dir" >&2; exit 1; }
    url
    ;;
*) usage ;;
esac
