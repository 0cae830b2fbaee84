#!/bin/bash
# Entry point of the local PostgreSQL image: on an empty PGDATA, create the
# cluster for POSTGRES_USER with POSTGRES_PASSWORD, create POSTGRES_DB, run
# /docker-entrypoint-initdb.d/*.sql|*.sql.gz|*.sh, then start the server as
# the postgres account. Arguments starting with '-' are passed to postgres.
set -Eeuo pipefail

if [ "${1:0:1}" = '-' ]; then
    set -- postgres "$@"
fi

if [ "$1" != postgres ]; then
    exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

init_cluster() {
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set to create the database cluster}"
    local user=${POSTGRES_USER:-postgres}
    local db=${POSTGRES_DB:-$user}
    echo "creating the cluster in $PGDATA for user $user"
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words
    initdb --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --auth-local=trust --auth-host=scram-sha-256 ${POSTGRES_INITDB_ARGS:-}
    printf '\nhost all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"

    # A server on the socket only, so nothing connects before init is done.
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -p ${PGPORT:-5432}" start
    local psql=(psql -X -v ON_ERROR_STOP=1 --username "$user" --no-password)
    if [ "$db" != postgres ]; then
        "${psql[@]}" --dbname postgres --set db="$db" <<< 'CREATE DATABASE :"db";'
    fi
    local f
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh) echo "running $f"; # shellcheck disable=SC1090
                  . "$f" ;;
            *.sql) echo "running $f"; "${psql[@]}" --dbname "$db" -f "$f" ;;
            *.sql.gz) echo "running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$db" ;;
            *) [ -e "$f" ] && echo "ignoring $f" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
    echo "cluster ready"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    init_cluster
fi
exec "$@"
