#!/bin/sh
# The postgres service's health check (mounted into the container).
# Healthy once the real server answers on TCP: the image's init-time server
# listens on the socket only. Then, once per checkpointer start and after
# recovery, a configuration reload: PostgreSQL's checkpointer computes its first
# sleep while recovery (even a clean start's) is in progress, without
# archive_timeout, so for up to checkpoint_timeout after every start no WAL
# switch would be forced. Native mode does the same in prefectstack.health.
set -u
pg_isready -q -h 127.0.0.1 -p "$PGPORT" -U "$POSTGRES_USER" -d "$POSTGRES_DB" || exit 1

marker=/var/run/postgresql/.checkpointer-woken
sql() { psql -XtAq -h /var/run/postgresql -p "$PGPORT" -U "$POSTGRES_USER" -d "$POSTGRES_DB" -c "$1"; }
started=$(sql "SELECT backend_start FROM pg_stat_activity
               WHERE backend_type = 'checkpointer' AND NOT pg_is_in_recovery()") || exit 0
if [ -n "$started" ] && [ "$started" != "$(cat "$marker" 2>/dev/null)" ]; then
    sql "SELECT pg_reload_conf()" >/dev/null && echo "$started" > "$marker"
fi
exit 0
