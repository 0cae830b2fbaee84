#!/bin/sh
# pgBackRest's base backups, in both deployment modes (native: a supervised
# process; compose: the pgbackrest service on the postgres image). Waits for
# PostgreSQL, creates the stanza (a no-op once it exists), then every minute
# takes a full backup when the newest full one is older than
# FULL_BACKUP_SCHEDULE says, else a differential one when the newest backup is
# older than DIFF_BACKUP_SCHEDULE says (.env: PGBACKREST_FULL/DIFF_SCHEDULE, in
# BACKUP_SCHEDULE's forms, read as intervals); pgBackRest expires old ones
# (repo1-retention-full). pgBackRest's own options come from its environment
# (PGBACKREST_*, which is why this script's settings have other names) or its
# config file.
set -u
# PID 1 in its container, where SIGTERM has no default action: without the
# trap `docker stop` waits out the whole grace period. A backup in progress
# finishes first; the sleep between checks is waited on in the background so
# the trap runs at once.
sleeper=
trap 'kill $sleeper 2>/dev/null; exit 0' TERM INT
pause() {
    sleep "$1" &
    sleeper=$!
    wait "$sleeper"
}

: "${PGBACKREST_STANZA:?}" "${FULL_BACKUP_SCHEDULE:?}" "${DIFF_BACKUP_SCHEDULE:?}"
heartbeat=${SCHEDULER_HEARTBEAT:-/tmp/pgbackrest-scheduler.alive}
socket=${PGBACKREST_PG1_SOCKET_PATH:-/var/run/postgresql}
port=${PGBACKREST_PG1_PORT:-5432}

seconds() {
    case "$1" in
        @hourly) echo 3600 ;;
        @daily | @midnight) echo 86400 ;;
        @weekly) echo 604800 ;;
        @monthly) echo 2592000 ;;
        @yearly | @annually) echo 31536000 ;;
        "@every "*)
            rest=${1#@every } total=0 number=
            while [ -n "$rest" ]; do
                char=${rest%"${rest#?}"} rest=${rest#?}
                case $char in
                    [0-9]) number=$number$char ;;
                    h) total=$((total + number * 3600)) number= ;;
                    m) total=$((total + number * 60)) number= ;;
                    s) total=$((total + number)) number= ;;
                    *) return 1 ;;
                esac
            done
            echo "$total"
            ;;
        *) return 1 ;;
    esac
}

full_every=$(seconds "$FULL_BACKUP_SCHEDULE") || { echo "bad FULL_BACKUP_SCHEDULE" >&2; exit 2; }
diff_every=$(seconds "$DIFF_BACKUP_SCHEDULE") || { echo "bad DIFF_BACKUP_SCHEDULE" >&2; exit 2; }

until pg_isready -q -h "$socket" -p "$port"; do pause 2; done
until pgbackrest stanza-create; do
    echo "stanza-create failed; retrying in 30 s" >&2
    pause 30
done

# The stop time of the newest backup of a kind ("full" or any), 0 if none.
newest() {
    pgbackrest info --output=json | jq --arg kind "$1" \
        '[.[0].backup[]? | select($kind == "any" or .type == $kind) | .timestamp.stop] | max // 0'
}

while true; do
    touch "$heartbeat"
    now=$(date +%s)
    if full=$(newest full) && any=$(newest any); then
        if [ $((now - full)) -ge "$full_every" ]; then
            echo "$(date -u +%FT%TZ) full backup"
            pgbackrest backup --type=full || echo "full backup FAILED" >&2
        elif [ $((now - any)) -ge "$diff_every" ]; then
            echo "$(date -u +%FT%TZ) differential backup"
            pgbackrest backup --type=diff || echo "differential backup FAILED" >&2
        fi
    else
        echo "pgbackrest info FAILED" >&2
    fi
    pause "${SCHEDULER_CHECK_SECONDS:-60}"
done
